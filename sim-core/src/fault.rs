//! Faults injected at chosen virtual times: node crashes and restarts, pauses, clock skew,
//! network changes, scenario annotations and stops.

use crate::actor::NodeId;
use crate::network::NetChange;
use crate::time::{duration_ns, format_ns, Time};
use std::fmt;
use std::time::Duration;

/// One fault or scenario command, applied by the simulator at its scheduled time.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The node stops: its actor, pending timers and queued events vanish; messages to it
    /// are dropped until it restarts.
    Crash(NodeId),
    /// A crashed node comes back: the protocol's restart constructor rebuilds its actor
    /// from the last durable state it saved with [`crate::Context::persist`].
    Restart(NodeId),
    /// The node handles nothing; its events queue up until it resumes.
    Pause(NodeId),
    Resume(NodeId),
    /// From now on the node's clock reads `offset + t * (1 + drift)`; see [`ClockSkew`].
    Skew {
        node: NodeId,
        skew: ClockSkew,
    },
    Network(NetChange),
    /// Test-only: the node adopts a Byzantine behaviour its protocol offers
    /// ([`crate::Actor::byzantine_behaviors`]), e.g. `equivocate`, `silent`, `mutate`;
    /// `correct` returns it to the protocol.
    Byzantine {
        node: NodeId,
        behavior: String,
    },
    /// Test-only, round-based Byzantine fuzzing: from now on, each message `node` sends
    /// while in round `round` to one of `to` is changed by one small step
    /// ([`crate::Actor::mutate_message`]) on its way.
    Mutate {
        node: NodeId,
        round: u64,
        to: Vec<NodeId>,
    },
    /// Ends every fault of the network and of rounds: heals every cut, cancels the
    /// round-triggered commands still waiting and the armed mutations, and restarts
    /// crashed nodes (where the protocol can) and resumes paused ones. Generated fault
    /// schedules end with it, so that termination is owed from then on even when the
    /// rounds their faults wait for never came.
    Settle,
    /// A label in the trace, such as a scenario phase.
    Annotate(String),
    /// Ends the run, as a deadline would.
    Stop,
}

impl Fault {
    /// The node a fault concerns; network-wide ones are attributed to node 0 in traces.
    pub fn node(&self) -> NodeId {
        match self {
            Fault::Crash(n) | Fault::Restart(n) | Fault::Pause(n) | Fault::Resume(n) => *n,
            Fault::Skew { node, .. }
            | Fault::Byzantine { node, .. }
            | Fault::Mutate { node, .. } => *node,
            Fault::Network(_) | Fault::Settle | Fault::Annotate(_) | Fault::Stop => NodeId(0),
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Crash(n) => write!(f, "crash {}", n.0),
            Fault::Restart(n) => write!(f, "restart {}", n.0),
            Fault::Pause(n) => write!(f, "pause {}", n.0),
            Fault::Resume(n) => write!(f, "resume {}", n.0),
            Fault::Skew { node, skew } => write!(f, "skew {} {skew}", node.0),
            Fault::Network(change) => write!(f, "{change}"),
            Fault::Byzantine { node, behavior } => write!(f, "byzantine {} {behavior}", node.0),
            Fault::Mutate { node, round, to } => {
                write!(f, "mutate {} round {round} ->", node.0)?;
                for (i, n) in to.iter().enumerate() {
                    write!(f, "{}{}", if i == 0 { " " } else { "," }, n.0)?;
                }
                Ok(())
            }
            Fault::Settle => f.write_str("settle"),
            Fault::Annotate(label) => write!(f, "annotate {label}"),
            Fault::Stop => f.write_str("stop"),
        }
    }
}

/// A node's clock error: a fixed offset and a rate error in parts per million.
///
/// ```
/// use rehearsal_sim_core::{ClockSkew, Time};
/// let fast = ClockSkew { offset_ns: 5_000_000, drift_ppm: 100_000 }; // +5 ms, 10 % fast
/// assert_eq!(fast.local(Time::from_secs(1)), Time::from_millis(1_105));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClockSkew {
    pub offset_ns: i64,
    pub drift_ppm: i64,
}

const PPM: i128 = 1_000_000;

impl ClockSkew {
    /// What the node's clock reads at true time `now` (never before zero).
    #[inline]
    pub fn local(&self, now: Time) -> Time {
        // The common case, no drift, stays off the 128-bit division of the hot path.
        if self.drift_ppm == 0 {
            return Time(now.as_nanos().saturating_add_signed(self.offset_ns));
        }
        let rate = PPM + i128::from(self.drift_ppm);
        let local = i128::from(now.as_nanos()) * rate / PPM + i128::from(self.offset_ns);
        Time(local.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// How much true time passes while the node's clock advances by `after`.
    #[inline]
    pub fn real_after(&self, after: Duration) -> Duration {
        if self.drift_ppm == 0 {
            return after;
        }
        // A clock cannot stop or run backwards: the rate is at least 1 ppm.
        let rate = (PPM + i128::from(self.drift_ppm)).max(1);
        let real = i128::from(duration_ns(after)) * PPM / rate;
        Duration::from_nanos(real.clamp(0, i128::from(u64::MAX)) as u64)
    }
}

impl fmt::Display for ClockSkew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.offset_ns < 0 { "-" } else { "+" };
        write!(
            f,
            "{sign}{} {:+}ppm",
            format_ns(self.offset_ns.unsigned_abs()),
            self.drift_ppm
        )
    }
}
