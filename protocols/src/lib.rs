//! Protocols written as plain [`rehearsal_sim_core::Actor`]s, each with the invariants a
//! run of it must satisfy. A protocol knows nothing of who runs it: the simulator and the
//! real transports drive the same values.

pub mod benaloh;
pub mod crypto;
pub mod pbft;
pub mod unreplicated;
