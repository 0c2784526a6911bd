//! Real runtime for Rehearsal actors: the same, unmodified actors that run in the simulator
//! run here over real transports, driven by the real clock.
//!
//! - [`Transport`]: moves opaque frames between nodes; implemented by [`MemoryTransport`]
//!   (in one process, for tests) and [`TcpTransport`] (length-prefixed frames over TCP);
//!   shaped so that a DPDK poll-mode transport fits too.
//! - [`NodeRuntime`]: drives any [`Actor`](rehearsal_sim_core::Actor) over any transport:
//!   decodes incoming frames with bincode, calls the handlers with the simulator's
//!   [`Context`](rehearsal_sim_core::Context), applies their effects, and fires timers by
//!   the monotonic clock.
//! - [`NodeTransport`]: what a node process needs of its transport besides moving frames
//!   (where it is, its link, its threads' errors, its final counters).
//! - [`wire`]: the TCP handshake and frame format.
//! - [`keys`]: a cluster's key files (one private key per node, one public-key list).
//! - [`netns`] (Linux): a test network of namespaces on one bridge, one per "host".
//! - [`save_state`] and [`load_state`]: a node's durable state file, replaced atomically
//!   and checked when read back.
//!
//! ```
//! use rehearsal_hardware::{MemoryHub, NodeRuntime, RunStop, RuntimeConfig};
//! use rehearsal_sim_core::{Actor, Context, NodeId};
//! use std::time::Duration;
//!
//! /// Node 0 counts down to node 1, which echoes every number back decremented.
//! struct Countdown;
//! impl Actor for Countdown {
//!     type Msg = u32;
//!     type Timer = ();
//!     type Output = u32;
//!     fn on_start(&mut self, cx: &mut Context<Self>) {
//!         if cx.me() == NodeId(0) {
//!             cx.send(NodeId(1), 5);
//!         }
//!     }
//!     fn on_message(&mut self, from: NodeId, n: u32, cx: &mut Context<Self>) {
//!         cx.output(n);
//!         if n > 0 {
//!             cx.send(from, n - 1);
//!         }
//!     }
//!     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
//! }
//!
//! let hub = MemoryHub::new(2);
//! let mut nodes: Vec<_> = hub
//!     .endpoints()
//!     .into_iter()
//!     .map(|endpoint| NodeRuntime::new(Countdown, endpoint, RuntimeConfig::default()))
//!     .collect();
//! // Drive both nodes from one thread, round-robin, until node 0 has seen the 0.
//! for _ in 0..1000 {
//!     for node in &mut nodes {
//!         node.step().unwrap();
//!     }
//!     if nodes[0].outputs().iter().any(|o| o.value == 0) {
//!         break;
//!     }
//! }
//! let seen: Vec<u32> = nodes[0].outputs().iter().map(|o| o.value).collect();
//! assert_eq!(seen, vec![4, 2, 0]);
//! ```

#![warn(missing_docs)]

#[cfg(feature = "dpdk")]
pub mod dpdk;
mod memory;
mod node_transport;
mod runtime;
mod state_file;
mod syscalls;
mod tcp;
mod transport;
pub mod wire;
// Cluster files, latency histograms and the TCP benchmark (`rehearsal node`, `cluster`,
// `bench tcp`).
pub mod bench_tcp;
pub mod cluster;
pub mod keys;
mod latency;
// Test networks of network namespaces (`tests/hosts.rs`, the nemesis); Linux only.
#[cfg(target_os = "linux")]
pub mod netns;

pub use cluster::{ClusterConfig, ClusterError, NodeConfig, Role, TransportKind};
pub use latency::{LatencyHistogram, LatencySummary, LATENCY_NS_MAX};
pub use memory::{
    MemoryHub, MemoryTransport, MEMORY_FRAME_BYTES_MAX_DEFAULT, MEMORY_QUEUE_FRAMES_MAX_DEFAULT,
};
pub use node_transport::{ErrorForwarder, NodeTransport};
pub use runtime::{
    check_invariants, decode_message, encode_message, Annotation, ClockHandle, NodeRuntime,
    OutputRecord, RunStop, RuntimeConfig, RuntimeError, RuntimeStats, StopHandle, DECODE_BYTES_MAX,
};
pub use state_file::{load_state, save_state, StateFileError};
pub use syscalls::{SyscallCounts, SyscallRates};
pub use tcp::{
    TcpAuth, TcpConfig, TcpMonitor, TcpStats, TcpTransport, RECENT_ERRORS_MAX,
    TCP_FRAME_BYTES_MAX_DEFAULT,
};
pub use transport::{SendError, Transport, TransportError};
