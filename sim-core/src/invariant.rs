//! Invariant hooks: safety checked as outputs appear, liveness checked when a run ends.

use crate::actor::{Actor, NodeId};
use crate::time::Time;

/// Why a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// No event left: every node is idle and no message or timer is pending.
    Quiescent,
    /// The configured virtual-time deadline passed.
    Deadline,
    /// The configured event bound was reached (a bound on runaway runs).
    EventLimit,
    /// A safety invariant failed and the run stopped at once.
    Violation,
    /// A scenario's `stop` command ended the run.
    Stopped,
}

/// What an end-of-run check sees.
pub struct RunEnd<'a, A: Actor> {
    pub now: Time,
    pub reason: EndReason,
    pub actors: &'a [A],
    /// Nodes down when the run ended (crashed and not restarted): a liveness check owes
    /// them nothing. Always empty on real transports, where a node that died ends the run.
    pub crashed: &'a [NodeId],
}

/// A property of a protocol, fed every output as it appears and asked once more at the end.
///
/// Return `Err(description)` to report a violation; the description should name the nodes
/// and values involved.
pub trait Invariant<A: Actor> {
    fn name(&self) -> &str;

    /// Safety: called for every output, in order. A violation stops the run.
    fn on_output(&mut self, _node: NodeId, _now: Time, _output: &A::Output) -> Result<(), String> {
        Ok(())
    }

    /// A fault struck at `now`: a scheduled fault (crash, restart, pause, partition, skew,
    /// Byzantine switch, network change) or a fault imposed on one message
    /// ([`Fate::FaultDrop`](crate::Fate::FaultDrop)). Liveness properties owed "once the
    /// faults are over" count from the last one; annotations and `stop` are not faults.
    fn on_fault(&mut self, _now: Time) {}

    /// Liveness and end state: called once when the run ends other than by a violation.
    fn at_end(&mut self, _end: &RunEnd<'_, A>) -> Result<(), String> {
        Ok(())
    }
}
