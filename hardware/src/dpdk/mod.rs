//! A DPDK transport (cargo feature `dpdk`): Rehearsal messages in raw L2 frames on a DPDK
//! poll-mode port, with no kernel on the data path.
//!
//! # Building
//!
//! The feature needs DPDK's development files (Debian/Ubuntu: `apt-get install -y
//! libdpdk-dev pkg-config`; tested with DPDK 22.11). The build script compiles a small C
//! shim (`hardware/csrc/rehearsal_dpdk.c`, for DPDK's `static inline` fast-path calls) with
//! the flags of `pkg-config --cflags libdpdk`, and links DPDK dynamically, plus the ring
//! driver for [`Dpdk::ring_pair`]. Other drivers (`net_memif`, `net_af_packet`, NICs) are
//! plugins the EAL loads at run time. Without the feature nothing of this is built.
//!
//! # Setting up
//!
//! 1. [`Dpdk::init`] initialises DPDK's environment abstraction layer (EAL) with an
//!    [`EalConfig`], **once per process** (a DPDK limitation): later calls with the same
//!    arguments return the same [`Dpdk`]; [`Dpdk::get_or_init_default`] takes whatever
//!    the process has.
//! 2. A [`DpdkPort`] comes from [`Dpdk::ring_pair`] (two ports joined by rings, in one
//!    process: tests, benchmarks), [`Dpdk::memif_port`] (shared memory between two
//!    processes), [`Dpdk::vdev_port`] (any virtual device, e.g. `net_af_packet0` with
//!    `iface=veth0`), or [`Dpdk::probed_port`] (a NIC the EAL probed).
//! 3. [`DpdkTransport::new`] starts the port as one node's endpoint, with a
//!    [`DpdkConfig`] naming its peers; it implements [`Transport`](crate::Transport), so a
//!    [`NodeRuntime`](crate::NodeRuntime) drives any actor over it.
//!
//! # EAL arguments
//!
//! [`EalConfig::default`] is [`EAL_ARGS_WITHOUT_HARDWARE`] (`--no-huge -m 256 --no-pci
//! --no-shconf --no-telemetry --log-level=error`) plus `--file-prefix=rehearsal-<pid>` and
//! `--lcores=0@(<the CPUs the process may use>)`: ordinary memory, no NIC, no root-only
//! setup, nothing left in `/var/run`, and a single lcore that may run anywhere (so no idle
//! worker thread per core); enough for ring pairs, memif and af_packet. For a NIC, pass
//! the usual arguments with [`EalConfig::from_args`] (hugepages, `-a <pci address>`,
//! `-l <cores>`). The EAL pins the thread that initialises it to its core; Rehearsal
//! restores that thread's affinity, so the process keeps running wherever the OS puts it.
//!
//! # Frames and addressing
//!
//! Each frame is an Ethernet header with ethertype [`ETHERTYPE`] (0x88B5, IEEE 802 local
//! experimental), a 24-byte Rehearsal header (version, fragment length, source and
//! destination node ids, message id, message length, fragment offset; layout in
//! [`FrameHeader`]) and the message bytes. The destination MAC of a peer's frames comes
//! from [`DpdkConfig::peers`] (on point-to-point links, broadcast for everyone:
//! [`DpdkConfig::point_to_point`]); the source MAC is the port's. Ports run promiscuous,
//! and a frame is for this endpoint if the destination node id in its header is this
//! endpoint's id; the sender is the source node id in the header. Nothing of a frame is
//! authenticated (unlike the TCP transport's with [`TcpAuth`](crate::TcpAuth)): anyone
//! who can put frames on the link can send as any node, and alter, replay or drop
//! frames, so DPDK links must be trusted networks.
//!
//! Every received frame is checked; a frame with another ethertype, too short for the
//! headers, of another version, with inconsistent lengths, for another node or from a node
//! that is not a peer is dropped and counted in [`DpdkStats`] (`frames_wrong_ethertype`,
//! `frames_short_header`, `frames_unsupported_version`, `frames_bad_length`,
//! `frames_wrong_destination`, `frames_unknown_source`). Nothing a frame contains can stop
//! the endpoint or make it allocate more than [`DpdkConfig::message_bytes_max`] per peer.
//!
//! # Messages larger than a frame: fragmented and reassembled
//!
//! A message longer than `frame_bytes_max - FRAME_HEADER_BYTES` bytes (1476 with the
//! default 1514-byte frames) is **fragmented** into as many frames as it needs and
//! **reassembled** by the receiver, up to [`DpdkConfig::message_bytes_max`] (1 MiB by
//! default); a longer message is refused by `send` with
//! [`SendError::FrameTooLarge`](crate::SendError::FrameTooLarge). Protocols whose batches
//! or certificates outgrow one frame (PBFT, HotStuff, Spectrum) thus run unchanged.
//!
//! One queue per direction keeps a sender's frames in order, so reassembly needs only one
//! message in progress per peer, filled front to back: a fragment that does not continue
//! it (another message id, a gap) shows that a fragment was lost, and that message is
//! abandoned (`fragments_discarded`), as a lossy network loses a datagram. Protocols
//! retransmit, as under the simulator. A message's fragments are queued all or none.
//!
//! # When queues are full
//!
//! `send` copies the message into packet buffers on a transmit queue bounded by
//! [`DpdkConfig::tx_queue_frames_max`]; if its frames do not all fit, or the pool is out of
//! buffers, the whole message is refused with
//! [`SendError::QueueFull`](crate::SendError::QueueFull) (the runtime counts it as
//! dropped). `flush` hands the queue to the port with `rte_eth_tx_burst`; frames the port
//! has no room for (its ring is full because the receiver is slow, a memif peer is not
//! connected yet) stay queued in order and go at the next `flush` or `wait`. Nothing ever
//! blocks: a receiver that does not keep up makes its senders refuse messages, like a
//! congested network drops them.
//!
//! # Threads
//!
//! An endpoint is used by one thread at a time (it is `Send`, not `Sync`). Each thread that
//! uses one is registered with DPDK as a non-EAL lcore on first use, so that buffer
//! allocation goes through a per-core cache.
//!
//! # Example
//!
//! ```
//! use rehearsal_hardware::dpdk::{Dpdk, DpdkConfig, DpdkTransport, EalConfig};
//! use rehearsal_hardware::Transport;
//! use rehearsal_sim_core::NodeId;
//!
//! let dpdk = Dpdk::init(&EalConfig::default())?;
//! let (a, b) = dpdk.ring_pair()?;
//! let mut zero = DpdkTransport::new(a, NodeId(0), DpdkConfig::point_to_point([NodeId(1)]))?;
//! let mut one = DpdkTransport::new(b, NodeId(1), DpdkConfig::point_to_point([NodeId(0)]))?;
//! zero.send(NodeId(1), b"hello").unwrap();
//! zero.send(NodeId(1), &vec![7u8; 5000]).unwrap(); // four frames
//! zero.flush()?;
//! let mut got = Vec::new();
//! one.poll(64, &mut |from, bytes| got.push((from, bytes.len())))?;
//! assert_eq!(got, vec![(NodeId(0), 5), (NodeId(0), 5000)]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![deny(unsafe_code)]

mod bench;
mod eal;
mod frame;
#[allow(unsafe_code)]
mod sys;
mod transport;

pub use bench::{bench_ring_pair, DpdkBenchError, DpdkBenchReport, DpdkRawBaseline};
pub use eal::{
    Dpdk, DpdkError, DpdkPort, EalConfig, MemifRole, EAL_ARGS_WITHOUT_HARDWARE, RING_PAIR_SLOTS,
};
pub use frame::{
    FrameHeader, MacAddress, Malformed, ETHERNET_HEADER_BYTES, ETHERTYPE, FRAME_HEADER_BYTES,
    FRAME_VERSION,
};
pub use transport::{
    DpdkConfig, DpdkStats, DpdkTransport, DPDK_FRAME_BYTES_MAX_DEFAULT,
    DPDK_MESSAGE_BYTES_MAX_DEFAULT, MBUF_DATA_BYTES,
};
