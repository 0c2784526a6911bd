//! Network and fault models for the Rehearsal simulator, and scenario files.
//!
//! The models plug into `rehearsal-sim-core`'s [`NetworkModel`](rehearsal_sim_core::NetworkModel)
//! and fault hooks; protocols do not change to run under them.

pub mod scenario;
