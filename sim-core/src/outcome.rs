//! What a run yields, as data: its verdict, each violation found, and the figures every
//! consumer (the command line, the shrinker, the `cargo test` harness, JSON output) reads
//! from the one [`RunResult`] type.

use crate::actor::NodeId;
use crate::invariant::EndReason;
use crate::stats::NodeStats;
use crate::time::Time;
use crate::trace::{Digest, EventKind, TraceEvent};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The verdict of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// An invariant failed (a safety check, or a liveness check at the deadline).
    Violation,
    /// The run went quiet with work outstanding.
    Stalled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Violation => "violation",
            Outcome::Stalled => "stalled",
        }
    }
}

/// The name a stalled node's entry in [`RunResult::violations`] carries.
pub const STALL: &str = "stall";

/// One failed check of a run.
///
/// `node` is the node the check blames: the node whose output broke a safety invariant,
/// the node a scenario command failed on, the waiting node of a stall. Checks of the run as
/// a whole (liveness at the end, a network change a scenario could not apply) have no such
/// node and are attributed to node 0, as the trace records them.
///
/// ```
/// use rehearsal_sim_core::{NodeId, Time, Violation};
///
/// let v = Violation::new("agreement", NodeId(2), Time::from_millis(5), "n2 decided 7, n0 decided 6");
/// assert_eq!(v.to_string(), "agreement: n2 decided 7, n0 decided 6");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// The invariant's [`name`](crate::Invariant::name), `scenario` for a scenario command
    /// that failed, or [`STALL`] for a node still waiting when the run went quiet.
    pub invariant: String,
    pub node: NodeId,
    /// Virtual time at which it was found.
    #[serde(rename = "time_ns")]
    pub time: Time,
    /// The check's own description of what went wrong.
    pub detail: String,
}

impl Violation {
    pub fn new(
        invariant: impl Into<String>,
        node: NodeId,
        time: Time,
        detail: impl Into<String>,
    ) -> Violation {
        Violation {
            invariant: invariant.into(),
            node,
            time,
            detail: detail.into(),
        }
    }

    /// A node that still waited for `what` when the run went quiet at `time`.
    pub fn stall(node: NodeId, time: Time, what: &str) -> Violation {
        Violation::new(STALL, node, time, format!("{node} waits for {what}"))
    }

    /// Whether this entry is a stalled node rather than a failed invariant.
    pub fn is_stall(&self) -> bool {
        self.invariant == STALL
    }

    /// The `violation` events of a recording, as data (stalled nodes are not events: a
    /// trace's footer lists them).
    pub fn all_in(events: &[TraceEvent]) -> Vec<Violation> {
        events
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Violation { invariant, detail } => Some(Violation::new(
                    invariant.clone(),
                    e.node,
                    Time::from_nanos(e.t),
                    detail.clone(),
                )),
                _ => None,
            })
            .collect()
    }
}

/// `invariant: detail`, the form trace footers and reports print.
impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}

/// How a run failed, coarsely: what a shrinker keeps fixed while it reduces a failing run
/// (a wrong result must not shrink into a missing one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailureKind {
    /// The run went quiet with work outstanding.
    Stalled,
    /// `invariant` failed first; `at_end` when at the end of the run (a liveness check)
    /// rather than on an output during it.
    Violated { invariant: String, at_end: bool },
}

impl FailureKind {
    /// The failed invariant's name, or `stalled`.
    pub fn invariant(&self) -> &str {
        match self {
            FailureKind::Stalled => "stalled",
            FailureKind::Violated { invariant, .. } => invariant,
        }
    }
}

/// `stalled`, or `name (during the run)` / `name (at the end)`.
impl fmt::Display for FailureKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailureKind::Stalled => f.write_str("stalled"),
            FailureKind::Violated { invariant, at_end } => {
                let when = if *at_end {
                    "at the end"
                } else {
                    "during the run"
                };
                write!(f, "{invariant} ({when})")
            }
        }
    }
}

/// Everything a run yields but its trace and its actors: the one result type of the
/// simulator ([`RunReport`](crate::RunReport) holds one), the shrinker, the `cargo test`
/// harness and `--json` output. Serialized, its fields are named as `rehearsal sim --json`
/// prints them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    pub seed: u64,
    pub outcome: Outcome,
    pub end: EndReason,
    /// Every failed check, in the order found; for a stall, then one [`STALL`] entry per
    /// waiting node.
    pub violations: Vec<Violation>,
    /// Virtual time at which the run ended.
    #[serde(rename = "sim_time_ns")]
    pub sim_time: Time,
    /// Number of trace events (also the sequence number the next one would have had).
    pub events: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    pub nodes: Vec<NodeStats>,
    #[serde(rename = "trace_digest")]
    pub digest: Digest,
    /// What the run covered, when [`crate::SimConfig::coverage`] asked for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coverage: Option<Coverage>,
}

/// What one run covered, for coverage-guided search: each list sorted, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// The nonzero abstract states ([`crate::Actor::abstract_state`]) any node was in after
    /// one of its handlers.
    pub states: Vec<u64>,
    /// Happens-before summaries: for each send, the kind sent and the set of kinds the node
    /// received since it last sent ([`crate::Actor::message_kind`]), packed.
    pub happens_before: Vec<u64>,
    /// The highest round any node entered ([`crate::Context::enter_round`]).
    pub rounds: u64,
}

impl RunResult {
    /// How the run failed, or `None` when it passed.
    pub fn failure(&self) -> Option<FailureKind> {
        match self.outcome {
            Outcome::Ok => None,
            Outcome::Stalled => Some(FailureKind::Stalled),
            Outcome::Violation => Some(FailureKind::Violated {
                invariant: self
                    .violations
                    .first()
                    .map_or_else(|| "violation".to_string(), |v| v.invariant.clone()),
                at_end: self.end != EndReason::Violation,
            }),
        }
    }

    /// The first violation, or for a stall its first waiting node: the one line a report
    /// leads with.
    pub fn first_problem(&self) -> Option<&Violation> {
        self.violations.first()
    }

    /// The nodes still waiting when the run stalled, and what each waited for.
    pub fn stalls(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.is_stall())
    }
}
