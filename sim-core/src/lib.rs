//! The core of Rehearsal: the actor contract every protocol is written against, and the
//! deterministic discrete-event simulator that runs those actors under seeded network
//! models, checks their invariants and records a trace of every run.
//!
//! Determinism rules hold in this crate (see `clippy.toml`): no wall clock, no threads, no
//! unseeded randomness, no iteration over randomly ordered maps.

mod actor;
pub mod codec;
pub mod explore;
mod fault;
pub mod fingerprint;
mod invariant;
mod network;
mod outcome;
pub mod protocol;
mod queue;
mod rng;
pub mod scheduler;
mod sim;
mod stats;
mod time;
pub mod trace;

pub use actor::{
    testbed_behavior, Actor, Context, Effect, Message, Mutate, NodeId, TimerId, FUZZED, TWIN,
};
pub use fault::{ClockSkew, Fault};
pub use invariant::{EndReason, Invariant, RunEnd};
pub use network::{
    Admit, Fate, Latency, LatencySpecError, NetChange, NetworkModel, Packet, SimpleNetwork,
};
pub use outcome::{Coverage, FailureKind, Outcome, RunResult, Violation, STALL};
pub use rng::{derive_rng, SimRng};
pub use scheduler::{Scheduler, Strategy};
pub use sim::{RestartFn, RoundWhen, RunReport, SimConfig, Simulation};
pub use stats::NodeStats;
pub use time::{duration_ns, format_ns, parse_duration, DurationError, Time};
pub use trace::{Digest, EventKind, TraceEvent, DIGEST_FORMAT_VERSION};

/// Re-exported so protocols draw from [`SimRng`] with the same `rand` version.
pub use rand;
