//! The `rehearsal` command-line program, as a library: run configurations, the protocol
//! registry that turns one into a simulation, and the command line itself.

pub mod bench;
pub mod campaign;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod corpus;
pub mod memory;
pub mod parallel;
pub mod registry;
pub mod run;
pub mod runfile;
pub mod search;
pub mod shrink;
pub mod swarm;
pub mod testing;

pub use config::{Protocol, RunConfig};
pub use run::{run, RunSummary};
