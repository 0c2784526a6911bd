//! ShiViz logs (<https://distributedclocks.github.io/shiviz/>): a run's events with their vector
//! clocks, for ShiViz's space-time view of who could have known what.
//!
//! Each event is a two-line record: a description, then the host and its vector clock.
//!
//! ```text
//! [10ms] deliver #2 from n0: Share { value: 1702610313 }
//! n1 {"n0":3,"n1":4}
//! ```
//!
//! The log starts with the two lines ShiViz reads from an uploaded file before the log
//! itself: the parsing regular expression [`SHIVIZ_REGEX`], then the multiple-executions
//! delimiter, empty since a trace is one execution. To paste the log into ShiViz's text box
//! instead, drop those two lines and give ShiViz the same regular expression.

use super::{describe, one_line, Messages};
use rehearsal_sim_core::{format_ns, EventKind, NodeId, TraceEvent};
use std::collections::BTreeMap;
use std::fmt::Write;

/// The regular expression ShiViz parses [`shiviz_log`]'s records with:
///
/// ```text
/// (?<event>.*)\n(?<host>\S*) (?<clock>{.*})
/// ```
///
/// `event` is the first line of a record (its virtual time and what happened), `host` the
/// node (`n0`, `n1`, …) and `clock` the vector clock as a JSON object from host to count.
pub const SHIVIZ_REGEX: &str = r"(?<event>.*)\n(?<host>\S*) (?<clock>{.*})";

/// A vector clock: how many events of each node happen before (or are) an event. Nodes
/// whose count is 0 are left out, as ShiViz wants.
pub type VectorClock = BTreeMap<NodeId, u64>;

/// The vector clock of every event, in the order given.
///
/// Every event counts as a local event of its node: it increments the node's own entry.
/// A delivery first merges (entry-wise maximum) the clock of the message's send event, when
/// the events hold that send.
pub fn vector_clocks(events: &[TraceEvent]) -> Vec<VectorClock> {
    let mut current: BTreeMap<NodeId, VectorClock> = BTreeMap::new();
    let mut at_send: BTreeMap<u64, VectorClock> = BTreeMap::new();
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        let mut clock = current.remove(&e.node).unwrap_or_default();
        if let EventKind::Deliver { id, .. } = &e.kind {
            if let Some(sent) = at_send.get(id) {
                for (&node, &count) in sent {
                    let entry = clock.entry(node).or_insert(0);
                    *entry = (*entry).max(count);
                }
            }
        }
        *clock.entry(e.node).or_insert(0) += 1;
        if let EventKind::Send { id, .. } = &e.kind {
            at_send.entry(*id).or_insert_with(|| clock.clone());
        }
        out.push(clock.clone());
        current.insert(e.node, clock);
    }
    out
}

/// A vector clock as ShiViz reads it: `{"n0":1,"n1":3}`.
pub fn clock_json(clock: &VectorClock) -> String {
    let entries: Vec<String> = clock
        .iter()
        .map(|(node, count)| format!("\"{node}\":{count}"))
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// The events as a ShiViz log, led by its parsing regular expression (see the [module
/// docs](self)).
pub fn shiviz_log(events: &[TraceEvent]) -> String {
    let messages = Messages::index(events);
    let clocks = vector_clocks(events);
    let mut out = String::new();
    out.push_str(SHIVIZ_REGEX);
    out.push_str("\n\n");
    for (e, clock) in events.iter().zip(&clocks) {
        let what = one_line(&describe(events, &messages, e));
        let _ = writeln!(out, "[{}] {what}", format_ns(e.t));
        let _ = writeln!(out, "{} {}", e.node, clock_json(clock));
    }
    out
}
