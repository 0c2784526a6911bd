//! Protocols written as plain [`rehearsal_sim_core::Actor`]s, each with the invariants a
//! run of it must satisfy. A protocol knows nothing of who runs it: the simulator and the
//! real transports drive the same values.
//!
//! Each protocol is one folder with its registry entry (an implementation of
//! [`rehearsal_sim_core::protocol::Protocol`]), registered by one line below: the line
//! declares the folder's module and adds its entries to [`visit_protocols`], through which
//! every runner learns of it.

mod closed_loop;
pub mod crypto;
mod named;
pub mod replicated;

/// Declares each protocol's module and lists its registry entries, in order.
macro_rules! protocols {
    ($($module:ident => [$($entry:ident),+]),+ $(,)?) => {
        $(pub mod $module;)+

        /// Shows `visitor` every registered protocol, in the order help texts list them.
        pub fn visit_protocols<V: rehearsal_sim_core::protocol::Visitor>(visitor: &mut V) {
            $($(visitor.visit::<$module::$entry>();)+)+
        }
    };
}

protocols! {
    unreplicated => [Unreplicated],
    benaloh => [Benaloh, BenalohTimed],
    pbft => [Pbft],
    hotstuff => [HotStuff],
    spectrum => [Spectrum],
}
