//! Trace events built by hand, for this crate's unit tests.

use rehearsal_sim_core::{EventKind, NodeId, TraceEvent};

/// An event of `node` at virtual time `t`.
pub(crate) fn event(seq: u64, t: u64, node: u32, kind: EventKind) -> TraceEvent {
    TraceEvent {
        seq,
        t,
        node: NodeId(node),
        kind,
    }
}
