//! Network and fault models for the Rehearsal simulator, and scenario files.
//!
//! The models plug into `rehearsal-sim-core`'s [`NetworkModel`](rehearsal_sim_core::NetworkModel)
//! and fault hooks; protocols do not change to run under them.
//!
//! - [`NetConfig`]: what links do to messages (latency distributions or a per-link matrix,
//!   loss, duplication, reordering, corruption, bandwidth, FIFO or unordered links, per-link
//!   overrides), read from TOML and serialized into trace headers.
//! - [`Network`]: the [`NetworkModel`](rehearsal_sim_core::NetworkModel) of a `NetConfig`.
//! - [`topology`]: who can reach whom, cuts and heals, and the named partition shapes.
//!
//! ```
//! use rehearsal_net_models::{NetConfig, Network};
//! use rehearsal_sim_core::{Actor, Context, NodeId, SimConfig, Simulation};
//!
//! struct Echo;
//! impl Actor for Echo {
//!     type Msg = u8;
//!     type Timer = ();
//!     type Output = ();
//!     fn on_start(&mut self, cx: &mut Context<Self>) {
//!         if cx.me() == NodeId(0) { cx.send(NodeId(1), 3); }
//!     }
//!     fn on_message(&mut self, from: NodeId, n: u8, cx: &mut Context<Self>) {
//!         if n > 0 { cx.send(from, n - 1); }
//!     }
//!     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
//! }
//!
//! let config: NetConfig = NetConfig::from_toml_str(
//!     "latency = \"uniform:1ms..5ms\"\nmode = \"fifo\"\n", "net.toml", ".".as_ref()).unwrap();
//! let network = Network::new(&config, 2).unwrap();
//! let report = Simulation::new(SimConfig::new(7), vec![Echo, Echo], network).run();
//! assert_eq!(report.messages_delivered, 4);
//! ```

mod bandwidth;
mod config;
mod matrix;
mod network;
pub mod scenario;
pub mod topology;

pub use bandwidth::{Bandwidth, BandwidthSpecError};
pub use config::{line_column, InFlight, LinkMode, LinkOverride, NetConfig, NetConfigError};
pub use matrix::{LatencyMatrix, MATRIX_MS_MAX};
pub use network::{Network, NODES_MAX};
pub use topology::Topology;
