//! The only module of the DPDK transport with `unsafe` code: the C shim's functions
//! (`hardware/csrc/rehearsal_dpdk.c`) and safe owners of the raw DPDK objects.
//!
//! Ownership rules that the rest of the transport relies on:
//!
//! - An [`Mbuf`] owns one packet buffer: it is freed exactly once, by its drop, by
//!   [`free_front`], or by handing it to the driver in [`tx_burst`].
//! - A [`Pool`] is freed only when every buffer it lent out has come back (see
//!   [`Pool`]'s drop); until then it waits in a list of retired pools.
//! - A ring pair's rings are freed (and the buffers left in them) when both of its ports
//!   have been released ([`RingLink`]).

use std::ffi::{c_char, c_int, c_uint, CString};
use std::marker::PhantomData;
use std::ptr::{self, NonNull};
use std::sync::{Arc, Mutex};

#[repr(C)]
struct RteMbuf {
    _opaque: [u8; 0],
}

#[repr(C)]
struct RteMempool {
    _opaque: [u8; 0],
}

#[repr(C)]
struct RteRing {
    _opaque: [u8; 0],
}

extern "C" {
    fn rh_errno() -> c_int;
    fn rh_eal_init(argc: c_int, argv: *mut *mut c_char, remove_empty_runtime_dir: c_int) -> c_int;
    fn rh_thread_register() -> c_int;
    fn rh_thread_unregister();
    fn rh_pool_create(
        name: *const c_char,
        mbufs: c_uint,
        cache: c_uint,
        data_room: u16,
    ) -> *mut RteMempool;
    fn rh_pool_full(pool: *const RteMempool) -> c_int;
    fn rh_pool_free(pool: *mut RteMempool);
    fn rh_ring_pair(
        name: *const c_char,
        ring_size: c_uint,
        ports: *mut u16,
        rings: *mut *mut RteRing,
    ) -> c_int;
    fn rh_ring_drain_free(ring: *mut RteRing);
    fn rh_vdev_port(name: *const c_char, args: *const c_char, port: *mut u16) -> c_int;
    fn rh_port_by_name(name: *const c_char, port: *mut u16) -> c_int;
    fn rh_port_valid(port: u16) -> c_int;
    fn rh_port_start(
        port: u16,
        pool: *mut RteMempool,
        rx_desc: u16,
        tx_desc: u16,
        mac: *mut u8,
    ) -> c_int;
    fn rh_port_link_up(port: u16) -> c_int;
    fn rh_port_release(port: u16);
    fn rh_rx_burst(port: u16, mbufs: *mut *mut RteMbuf, count: u16) -> u16;
    fn rh_tx_burst(port: u16, mbufs: *mut *mut RteMbuf, count: u16) -> u16;
    fn rh_alloc(pool: *mut RteMempool) -> *mut RteMbuf;
    fn rh_alloc_bulk(pool: *mut RteMempool, mbufs: *mut *mut RteMbuf, count: c_uint) -> c_int;
    fn rh_free(mbuf: *mut RteMbuf);
    fn rh_free_bulk(mbufs: *mut *mut RteMbuf, count: c_uint);
    fn rh_append(mbuf: *mut RteMbuf, len: u16) -> *mut u8;
    fn rh_frame(
        mbuf: *const RteMbuf,
        scratch: *mut u8,
        scratch_len: u32,
        len: *mut u32,
    ) -> *const u8;
}

/// A failed DPDK call: its negative errno value, as the shim returns it.
pub(super) type Errno = i32;

/// `rte_errno` of the calling thread, for calls that report failure with NULL.
fn last_errno() -> Errno {
    // SAFETY: reads a thread-local integer; no preconditions.
    unsafe { rh_errno() }
}

/// Runs `rte_eal_init` with `args` (the first is the program name), then removes the
/// EAL's runtime directory if `remove_empty_runtime_dir` and it is empty. Must be called
/// at most once per process, before any other function of this module.
pub(super) fn eal_init(args: &[CString], remove_empty_runtime_dir: bool) -> Result<(), Errno> {
    // rte_eal_init may permute argv (getopt), so it gets its own array of pointers; the
    // strings stay owned by `args` and outlive the call. The EAL keeps no pointer into them
    // afterwards except for `--file-prefix` and similar values that it copies.
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr() as *mut c_char).collect();
    argv.push(ptr::null_mut());
    // SAFETY: argv is a NULL-terminated array of `args.len()` valid C strings that live
    // for the whole call; the caller guarantees a single call per process.
    let ret = unsafe {
        rh_eal_init(
            args.len() as c_int,
            argv.as_mut_ptr(),
            c_int::from(remove_empty_runtime_dir),
        )
    };
    if ret < 0 {
        Err(ret)
    } else {
        Ok(())
    }
}

/// Whether this thread was given an lcore id by [`register_thread`], and so must give it
/// back when it exits.
struct ThreadLcore {
    registered_here: bool,
}

impl Drop for ThreadLcore {
    fn drop(&mut self) {
        if self.registered_here {
            // SAFETY: the thread registered itself with rte_thread_register (the EAL is
            // initialised) and gives its lcore id back once, at thread exit.
            unsafe { rh_thread_unregister() }
        }
    }
}

thread_local! {
    static THREAD_LCORE: std::cell::OnceCell<ThreadLcore> = const { std::cell::OnceCell::new() };
}

/// Gives the calling thread an lcore id if it has none, once per thread, so that its
/// buffer allocations and frees go through a per-lcore mempool cache instead of the shared
/// ring. A thread that cannot get one (all ids taken) still works, only slower. Only call
/// after a successful [`eal_init`].
pub(super) fn register_thread() {
    // During thread teardown the thread-local may be gone: then there is nothing to do.
    let _ = THREAD_LCORE.try_with(|cell| {
        cell.get_or_init(|| {
            // SAFETY: the EAL is initialised (the caller's precondition); registering the
            // calling thread has no other precondition.
            let ret = unsafe { rh_thread_register() };
            ThreadLcore {
                registered_here: ret == 0,
            }
        });
    });
}

/// A pool of packet buffers (`rte_pktmbuf_pool_create`).
///
/// Dropping it does not free it at once: buffers it lent out may still sit in a peer's
/// queue or in a ring. It joins a list of retired pools, and a retired pool is freed at the
/// first sweep that finds all of its buffers back.
pub(super) struct Pool {
    raw: NonNull<RteMempool>,
}

// SAFETY: a DPDK mempool is safe to use from several threads at once (it is created with
// the default multi-producer/multi-consumer flags); `Pool` exposes nothing else.
unsafe impl Send for Pool {}
// SAFETY: as above: every operation on it is thread-safe.
unsafe impl Sync for Pool {}

static RETIRED_POOLS: Mutex<Vec<RetiredPool>> = Mutex::new(Vec::new());

struct RetiredPool(NonNull<RteMempool>);

// SAFETY: a retired pool is only touched under the RETIRED_POOLS lock, and mempools are
// thread-safe anyway.
unsafe impl Send for RetiredPool {}

impl Pool {
    /// Creates a pool of `mbufs` buffers of `data_room` bytes each (headroom included),
    /// with a per-lcore cache of `cache` buffers.
    pub(super) fn create(
        name: &str,
        mbufs: u32,
        cache: u32,
        data_room: u16,
    ) -> Result<Pool, Errno> {
        let name = CString::new(name).map_err(|_| -libc_einval())?;
        // SAFETY: `name` is a valid C string for the duration of the call; the EAL is
        // initialised (pools are only made through an initialised `Dpdk`).
        let raw = unsafe { rh_pool_create(name.as_ptr(), mbufs, cache, data_room) };
        NonNull::new(raw)
            .map(|raw| Pool { raw })
            .ok_or_else(|| -last_errno())
    }

    /// One empty buffer, or `None` if the pool is exhausted.
    pub(super) fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is alive (we own it); allocation is thread-safe.
        let raw = unsafe { rh_alloc(self.raw.as_ptr()) };
        NonNull::new(raw).map(|raw| Mbuf {
            raw,
            _not_sync: PhantomData,
        })
    }

    /// Appends `count` empty buffers to `queue` in one call (`rte_pktmbuf_alloc_bulk`),
    /// all or none: returns `false`, leaving `queue` as it was, if the pool has fewer.
    pub(super) fn alloc_bulk(&self, queue: &mut Vec<Mbuf>, count: usize) -> bool {
        let Ok(count_c) = c_uint::try_from(count) else {
            return false;
        };
        queue.reserve(count);
        let len = queue.len();
        // SAFETY: the pool is alive (we own it) and allocation is thread-safe; the vector
        // has room for `count` more elements, which the call fills with non-null owned
        // buffers on success (laid out as `Mbuf`s: transparent `rte_mbuf *`) and leaves
        // unused on failure, so the length grows by `count` only on success.
        unsafe {
            let spare = (queue.as_mut_ptr() as *mut *mut RteMbuf).add(len);
            if rh_alloc_bulk(self.raw.as_ptr(), spare, count_c) != 0 {
                return false;
            }
            queue.set_len(len + count);
        }
        true
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let mut retired = RETIRED_POOLS.lock().unwrap_or_else(|e| e.into_inner());
        retired.push(RetiredPool(self.raw));
        sweep_pools(&mut retired);
    }
}

/// Frees every retired pool whose buffers have all come back.
fn sweep_pools(retired: &mut Vec<RetiredPool>) {
    retired.retain(|pool| {
        // SAFETY: a retired pool has not been freed yet (it leaves the list when it is).
        let full = unsafe { rh_pool_full(pool.0.as_ptr()) } != 0;
        if full {
            // SAFETY: every buffer is back in the pool, its owner dropped it, and no port
            // uses it any more (ports are released before their pool is dropped): nothing
            // can reach it after this.
            unsafe { rh_pool_free(pool.0.as_ptr()) };
        }
        !full
    });
}

fn sweep_retired_pools() {
    let mut retired = RETIRED_POOLS.lock().unwrap_or_else(|e| e.into_inner());
    sweep_pools(&mut retired);
}

/// One owned packet buffer. `repr(transparent)`, so that a `[Mbuf]` is the
/// `struct rte_mbuf **` array the burst functions take.
#[repr(transparent)]
pub(super) struct Mbuf {
    raw: NonNull<RteMbuf>,
    _not_sync: PhantomData<std::cell::Cell<()>>,
}

// SAFETY: an `Mbuf` is the only owner of its buffer; freeing it from another thread
// returns it to its (thread-safe) pool.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// Appends the concatenation of `parts` to the packet. Returns `false`, leaving the
    /// packet unchanged, if it does not fit the buffer's tailroom.
    pub(super) fn append(&mut self, parts: &[&[u8]]) -> bool {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        let Ok(total) = u16::try_from(total) else {
            return false;
        };
        // SAFETY: we own the buffer; rte_pktmbuf_append checks the tailroom and returns
        // NULL (changing nothing) when it is too small.
        let start = unsafe { rh_append(self.raw.as_ptr(), total) };
        if start.is_null() {
            return false;
        }
        let mut offset = 0;
        for part in parts {
            // SAFETY: `start` points to `total` writable bytes of our buffer, which no Rust
            // reference aliases; the parts add up to `total`, so every copy stays inside.
            unsafe { ptr::copy_nonoverlapping(part.as_ptr(), start.add(offset), part.len()) };
            offset += part.len();
        }
        true
    }

    /// The packet's bytes in one slice: in place if it has one segment, else copied into
    /// `scratch` (whose length bounds the frames that can be read). `None` if a chained
    /// packet is longer than `scratch`.
    pub(super) fn frame<'a>(&'a self, scratch: &'a mut [u8]) -> Option<&'a [u8]> {
        let mut len = 0u32;
        let scratch_len = u32::try_from(scratch.len()).unwrap_or(u32::MAX);
        // SAFETY: we own the buffer; `scratch` is writable for `scratch_len` bytes and the
        // shim writes at most that many.
        let data = unsafe {
            rh_frame(
                self.raw.as_ptr(),
                scratch.as_mut_ptr(),
                scratch_len,
                &mut len,
            )
        };
        if data.is_null() {
            return None;
        }
        // SAFETY: the shim returns either the packet's single segment, `len` bytes of the
        // buffer we own, or `scratch` filled with `len` bytes. Both live as long as the
        // borrows of `self` and `scratch`, during which nothing writes to them.
        Some(unsafe { std::slice::from_raw_parts(data, len as usize) })
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: we own the buffer and free it exactly once.
        unsafe { rh_free(self.raw.as_ptr()) }
    }
}

/// Frees the first `count` buffers of `queue` in one call, keeping the rest in order.
pub(super) fn free_front(queue: &mut Vec<Mbuf>, count: usize) {
    let count = count.min(queue.len());
    if count == 0 {
        return;
    }
    let base = queue.as_mut_ptr() as *mut *mut RteMbuf;
    // SAFETY: `Mbuf` is a transparent non-null `rte_mbuf *`, so the first `count` elements
    // are a valid array of owned buffers; they are freed here once, and then forgotten by
    // moving the tail over them and shortening the vector without running their drops.
    unsafe {
        rh_free_bulk(base, count as c_uint);
        let rest = queue.len() - count;
        ptr::copy(queue.as_ptr().add(count), queue.as_mut_ptr(), rest);
        queue.set_len(rest);
    }
}

/// Sends as many buffers from the front of `queue` as `port` accepts now (one
/// `rte_eth_tx_burst`, repeated while it makes progress), removes them from `queue` (the
/// driver owns them now), and returns how many left.
pub(super) fn tx_burst(port: u16, queue: &mut Vec<Mbuf>) -> usize {
    let mut sent = 0;
    while sent < queue.len() {
        let count = (queue.len() - sent).min(u16::MAX as usize) as u16;
        // SAFETY: elements `sent..sent + count` are owned buffers laid out as an
        // `rte_mbuf *` array (transparent `Mbuf`); the driver takes ownership of the ones
        // it accepts, which are then forgotten below, and leaves the others to us.
        let accepted = unsafe {
            rh_tx_burst(
                port,
                (queue.as_mut_ptr() as *mut *mut RteMbuf).add(sent),
                count,
            )
        };
        if accepted == 0 {
            break;
        }
        sent += accepted as usize;
    }
    if sent > 0 {
        let rest = queue.len() - sent;
        // SAFETY: the first `sent` buffers now belong to the driver: moving the tail over
        // them and shortening the vector forgets them without freeing.
        unsafe {
            ptr::copy(queue.as_ptr().add(sent), queue.as_mut_ptr(), rest);
            queue.set_len(rest);
        }
    }
    sent
}

/// Receives up to `count` packets from `port`, appending them to `queue`; returns how many.
pub(super) fn rx_burst(port: u16, queue: &mut Vec<Mbuf>, count: usize) -> usize {
    let count = count.min(u16::MAX as usize);
    queue.reserve(count);
    let len = queue.len();
    // SAFETY: the vector has room for `count` more elements; the driver writes at most
    // `count` non-null buffer pointers, which it hands over to us, and we extend the
    // length by exactly the number written.
    unsafe {
        let spare = (queue.as_mut_ptr() as *mut *mut RteMbuf).add(len);
        let got = rh_rx_burst(port, spare, count as u16) as usize;
        queue.set_len(len + got);
        got
    }
}

/// The rings of a ring pair, freed with the buffers left in them once both ports are
/// released (each port holds an `Arc` of it).
#[derive(Debug)]
pub(super) struct RingLink {
    rings: [NonNull<RteRing>; 2],
}

// SAFETY: the rings are only touched in drop, when no port uses them any more.
unsafe impl Send for RingLink {}
// SAFETY: as above: no method uses the rings.
unsafe impl Sync for RingLink {}

impl Drop for RingLink {
    fn drop(&mut self) {
        for ring in self.rings {
            // SAFETY: both ports using the ring were released (they hold this link and
            // drop it after releasing), so nothing else enqueues to or dequeues from it.
            unsafe { rh_ring_drain_free(ring.as_ptr()) };
        }
        // The buffers just freed may have been the last ones a retired pool waited for.
        sweep_retired_pools();
    }
}

/// Creates two ports joined by a pair of rings of `ring_size` slots (a power of two):
/// what one transmits, the other receives.
pub(super) fn ring_pair(name: &str, ring_size: u32) -> Result<(u16, u16, Arc<RingLink>), Errno> {
    let name = CString::new(name).map_err(|_| -libc_einval())?;
    let mut ports = [0u16; 2];
    let mut rings = [ptr::null_mut(); 2];
    // SAFETY: `name` is a valid C string; `ports` and `rings` have room for two entries.
    let ret = unsafe {
        rh_ring_pair(
            name.as_ptr(),
            ring_size,
            ports.as_mut_ptr(),
            rings.as_mut_ptr(),
        )
    };
    if ret < 0 {
        return Err(ret);
    }
    match (NonNull::new(rings[0]), NonNull::new(rings[1])) {
        (Some(a), Some(b)) => Ok((ports[0], ports[1], Arc::new(RingLink { rings: [a, b] }))),
        _ => Err(-libc_einval()),
    }
}

/// Creates the virtual device `name` with driver arguments `args` and returns its port.
pub(super) fn vdev_port(name: &str, args: &str) -> Result<u16, Errno> {
    let name = CString::new(name).map_err(|_| -libc_einval())?;
    let args = CString::new(args).map_err(|_| -libc_einval())?;
    let mut port = 0u16;
    // SAFETY: both strings are valid C strings for the call; `port` is writable.
    let ret = unsafe { rh_vdev_port(name.as_ptr(), args.as_ptr(), &mut port) };
    if ret < 0 {
        Err(ret)
    } else {
        Ok(port)
    }
}

/// The port of the probed device `name` (a PCI address, or a `--vdev` given to the EAL).
pub(super) fn port_by_name(name: &str) -> Result<u16, Errno> {
    let name = CString::new(name).map_err(|_| -libc_einval())?;
    let mut port = 0u16;
    // SAFETY: `name` is a valid C string for the call; `port` is writable.
    let ret = unsafe { rh_port_by_name(name.as_ptr(), &mut port) };
    if ret < 0 {
        Err(ret)
    } else {
        Ok(port)
    }
}

/// Whether `port` is a port id that exists.
pub(super) fn port_valid(port: u16) -> bool {
    // SAFETY: only reads the port table.
    unsafe { rh_port_valid(port) != 0 }
}

/// Configures `port` with one rx and one tx queue (receive buffers from `pool`) and starts
/// it; returns its MAC address.
pub(super) fn port_start(
    port: u16,
    pool: &Pool,
    rx_desc: u16,
    tx_desc: u16,
) -> Result<[u8; 6], Errno> {
    let mut mac = [0u8; 6];
    // SAFETY: the port exists and is not started; the pool outlives the port (the
    // transport releases the port before dropping the pool); `mac` has 6 writable bytes.
    let ret = unsafe { rh_port_start(port, pool.raw.as_ptr(), rx_desc, tx_desc, mac.as_mut_ptr()) };
    if ret < 0 {
        Err(ret)
    } else {
        Ok(mac)
    }
}

/// Whether the port's link is up now (a memif peer is connected).
pub(super) fn port_link_up(port: u16) -> bool {
    // SAFETY: only queries the port's status.
    unsafe { rh_port_link_up(port) != 0 }
}

/// Stops and closes `port` and removes its virtual device, if it is one.
pub(super) fn port_release(port: u16) {
    // SAFETY: the caller owns the port and uses it no more.
    unsafe { rh_port_release(port) }
}

fn libc_einval() -> Errno {
    22 // EINVAL on Linux
}

/// Describes a negative errno value returned by DPDK.
pub(super) fn describe(errno: Errno) -> String {
    std::io::Error::from_raw_os_error(errno.abs()).to_string()
}
