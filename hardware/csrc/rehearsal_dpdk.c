/*
 * C shim between Rust and DPDK for the `dpdk` feature of rehearsal-hardware.
 *
 * DPDK's fast-path calls (rte_eth_rx_burst, rte_eth_tx_burst, rte_pktmbuf_alloc,
 * rte_pktmbuf_append, rte_pktmbuf_mtod, rte_errno, ...) are static inline functions or
 * macros in its headers: they have no symbol to link against, so Rust reaches them through
 * the small exported functions below. Every function here is a thin wrapper; the decisions
 * (frame format, queue bounds, error reporting) live in hardware/src/dpdk/.
 *
 * Conventions: functions that can fail return a negative errno value (or NULL, with the
 * reason in rh_errno()), never print, and never abort.
 */

#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <rte_bus_vdev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

int rh_errno(void) { return rte_errno; }

/*
 * rte_eal_init pins the calling thread to the main lcore's CPU. The caller is an ordinary
 * thread of a Rust program (a test harness thread, the CLI's main thread) that must keep
 * running wherever the OS schedules it, so its affinity is put back afterwards.
 */
int rh_eal_init(int argc, char **argv, int remove_empty_runtime_dir) {
    cpu_set_t saved;
    int have_saved = pthread_getaffinity_np(pthread_self(), sizeof(saved), &saved) == 0;
    int ret = rte_eal_init(argc, argv);
    int err = rte_errno;
    if (have_saved) {
        pthread_setaffinity_np(pthread_self(), sizeof(saved), &saved);
    }
    if (ret < 0) {
        return err > 0 ? -err : -EINVAL;
    }
    /*
     * The EAL always creates a runtime directory (/var/run/dpdk/<file-prefix>), even when
     * it keeps nothing there (--no-shconf), and never removes it: without this, every
     * process would leave an empty directory behind. rmdir removes it only if empty.
     */
    if (remove_empty_runtime_dir) {
        (void)rmdir(rte_eal_get_runtime_dir());
    }
    return ret;
}

/*
 * Gives the calling thread an lcore id, so that mempool operations use a per-lcore cache.
 * Returns 1 if the thread already has one (the EAL main thread), 0 if it was registered
 * now, a negative errno value if none is free (the thread then works without a cache).
 */
int rh_thread_register(void) {
    if (rte_lcore_id() != LCORE_ID_ANY) {
        return 1;
    }
    if (rte_thread_register() != 0) {
        return rte_errno > 0 ? -rte_errno : -ENOMEM;
    }
    return 0;
}

void rh_thread_unregister(void) { rte_thread_unregister(); }

struct rte_mempool *rh_pool_create(const char *name, unsigned mbufs, unsigned cache,
                                   uint16_t data_room) {
    return rte_pktmbuf_pool_create(name, mbufs, cache, 0, data_room, (int)rte_socket_id());
}

int rh_pool_full(const struct rte_mempool *pool) { return rte_mempool_full(pool); }

void rh_pool_free(struct rte_mempool *pool) { rte_mempool_free(pool); }

/*
 * Two cross-connected ports: what port 0 transmits, port 1 receives, and back. Each ring
 * has exactly one producer (one port's tx queue 0) and one consumer (the other port's rx
 * queue 0), hence single-producer/single-consumer rings.
 */
int rh_ring_pair(const char *name, unsigned ring_size, uint16_t ports[2],
                 struct rte_ring *rings[2]) {
    char ring_name[RTE_RING_NAMESIZE];
    char port_name[RTE_ETH_NAME_MAX_LEN];
    int socket = (int)rte_socket_id();
    unsigned flags = RING_F_SP_ENQ | RING_F_SC_DEQ;

    snprintf(ring_name, sizeof(ring_name), "%s_ab", name);
    struct rte_ring *ab = rte_ring_create(ring_name, ring_size, socket, flags);
    if (ab == NULL) {
        return -rte_errno;
    }
    snprintf(ring_name, sizeof(ring_name), "%s_ba", name);
    struct rte_ring *ba = rte_ring_create(ring_name, ring_size, socket, flags);
    if (ba == NULL) {
        int err = rte_errno;
        rte_ring_free(ab);
        return -err;
    }

    snprintf(port_name, sizeof(port_name), "%s_a", name);
    int a = rte_eth_from_rings(port_name, &ba, 1, &ab, 1, (unsigned)socket);
    if (a < 0) {
        int err = rte_errno;
        rte_ring_free(ab);
        rte_ring_free(ba);
        return err > 0 ? -err : -EINVAL;
    }
    snprintf(port_name, sizeof(port_name), "%s_b", name);
    int b = rte_eth_from_rings(port_name, &ab, 1, &ba, 1, (unsigned)socket);
    if (b < 0) {
        int err = rte_errno;
        char device[RTE_ETH_NAME_MAX_LEN];
        if (rte_eth_dev_get_name_by_port((uint16_t)a, device) == 0) {
            rte_vdev_uninit(device);
        }
        rte_ring_free(ab);
        rte_ring_free(ba);
        return err > 0 ? -err : -EINVAL;
    }
    ports[0] = (uint16_t)a;
    ports[1] = (uint16_t)b;
    rings[0] = ab;
    rings[1] = ba;
    return 0;
}

/* Frees every mbuf left in `ring`, then the ring. Only once no port uses it. */
void rh_ring_drain_free(struct rte_ring *ring) {
    struct rte_mbuf *mbufs[64];
    unsigned got;
    while ((got = rte_ring_dequeue_burst(ring, (void **)mbufs, 64, NULL)) > 0) {
        rte_pktmbuf_free_bulk(mbufs, got);
    }
    rte_ring_free(ring);
}

int rh_vdev_port(const char *name, const char *args, uint16_t *port) {
    int ret = rte_vdev_init(name, args);
    if (ret < 0) {
        return ret;
    }
    ret = rte_eth_dev_get_port_by_name(name, port);
    if (ret < 0) {
        rte_vdev_uninit(name);
        return ret;
    }
    return 0;
}

int rh_port_by_name(const char *name, uint16_t *port) {
    return rte_eth_dev_get_port_by_name(name, port);
}

int rh_port_valid(uint16_t port) { return rte_eth_dev_is_valid_port(port); }

/* One rx and one tx queue, started, promiscuous where the driver supports it. */
int rh_port_start(uint16_t port, struct rte_mempool *pool, uint16_t rx_desc, uint16_t tx_desc,
                  uint8_t mac[6]) {
    struct rte_eth_conf conf;
    memset(&conf, 0, sizeof(conf));
    int ret = rte_eth_dev_configure(port, 1, 1, &conf);
    if (ret < 0) {
        return ret;
    }
    ret = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
    if (ret < 0) {
        return ret;
    }
    int socket = rte_eth_dev_socket_id(port);
    unsigned queue_socket = socket < 0 ? (unsigned)SOCKET_ID_ANY : (unsigned)socket;
    ret = rte_eth_rx_queue_setup(port, 0, rx_desc, queue_socket, NULL, pool);
    if (ret < 0) {
        return ret;
    }
    ret = rte_eth_tx_queue_setup(port, 0, tx_desc, queue_socket, NULL);
    if (ret < 0) {
        return ret;
    }
    ret = rte_eth_dev_start(port);
    if (ret < 0) {
        return ret;
    }
    /* Frames are filtered by the destination node id in their header, not by MAC. */
    (void)rte_eth_promiscuous_enable(port);
    struct rte_ether_addr address;
    ret = rte_eth_macaddr_get(port, &address);
    if (ret < 0) {
        memset(mac, 0, 6);
    } else {
        memcpy(mac, address.addr_bytes, 6);
    }
    return 0;
}

int rh_port_link_up(uint16_t port) {
    struct rte_eth_link link;
    memset(&link, 0, sizeof(link));
    if (rte_eth_link_get_nowait(port, &link) < 0) {
        return 0;
    }
    return link.link_status == RTE_ETH_LINK_UP;
}

/* Stops and closes the port, and removes its virtual device if it is one. */
void rh_port_release(uint16_t port) {
    char device[RTE_ETH_NAME_MAX_LEN];
    int named = rte_eth_dev_get_name_by_port(port, device) == 0;
    (void)rte_eth_dev_stop(port);
    (void)rte_eth_dev_close(port);
    if (named) {
        (void)rte_vdev_uninit(device);
    }
}

uint16_t rh_rx_burst(uint16_t port, struct rte_mbuf **mbufs, uint16_t count) {
    return rte_eth_rx_burst(port, 0, mbufs, count);
}

uint16_t rh_tx_burst(uint16_t port, struct rte_mbuf **mbufs, uint16_t count) {
    return rte_eth_tx_burst(port, 0, mbufs, count);
}

struct rte_mbuf *rh_alloc(struct rte_mempool *pool) { return rte_pktmbuf_alloc(pool); }

int rh_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned count) {
    return rte_pktmbuf_alloc_bulk(pool, mbufs, count);
}

void rh_free(struct rte_mbuf *mbuf) { rte_pktmbuf_free(mbuf); }

void rh_free_bulk(struct rte_mbuf **mbufs, unsigned count) {
    rte_pktmbuf_free_bulk(mbufs, count);
}

/* Appends `len` bytes to the packet and returns where they start, or NULL if no room. */
uint8_t *rh_append(struct rte_mbuf *mbuf, uint16_t len) {
    return (uint8_t *)rte_pktmbuf_append(mbuf, len);
}

/*
 * The whole packet as one contiguous run of bytes: the first segment's data in place, or,
 * for a packet chained over several segments, a copy into `scratch`. NULL if the packet
 * does not fit `scratch`. Its length goes to `*len`.
 */
const uint8_t *rh_frame(const struct rte_mbuf *mbuf, uint8_t *scratch, uint32_t scratch_len,
                        uint32_t *len) {
    uint32_t pkt_len = rte_pktmbuf_pkt_len(mbuf);
    *len = pkt_len;
    if (mbuf->nb_segs == 1) {
        return rte_pktmbuf_mtod(mbuf, const uint8_t *);
    }
    if (pkt_len > scratch_len) {
        return NULL;
    }
    return (const uint8_t *)rte_pktmbuf_read(mbuf, 0, pkt_len, scratch);
}
