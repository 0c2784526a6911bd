//! Plain-text rendering of a trace: one aligned line per event.

use rehearsal_sim_core::{format_ns, EventKind, NodeId, TraceEvent};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Renders events as an aligned timeline: sequence number, virtual time, node, what happened.
///
/// ```text
///    3      10ms  n1   deliver  #0 from n0
/// ```
pub fn render_text(events: &[TraceEvent]) -> String {
    render(events, &Filter::default(), false)
}

/// Which events [`render_timeline`] shows.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events at these nodes (all when empty).
    pub nodes: Vec<NodeId>,
    /// Only events at or after this virtual time (ns).
    pub from_ns: Option<u64>,
    /// Only events at or before this virtual time (ns).
    pub to_ns: Option<u64>,
    /// Only events of these kinds (`send`, `deliver`, ...; all when empty).
    pub kinds: Vec<String>,
}

impl Filter {
    /// Whether `event` passes the filter.
    pub fn keeps(&self, event: &TraceEvent) -> bool {
        (self.nodes.is_empty() || self.nodes.contains(&event.node))
            && self.from_ns.is_none_or(|t| event.t >= t)
            && self.to_ns.is_none_or(|t| event.t <= t)
            && (self.kinds.is_empty() || self.kinds.iter().any(|k| k == event.kind.name()))
    }
}

/// Renders the events that pass `filter` as an aligned timeline. Deliveries repeat the
/// summary of the message they deliver, so a filtered view still reads on its own.
pub fn render_timeline(events: &[TraceEvent], filter: &Filter) -> String {
    render(events, filter, true)
}

fn render(events: &[TraceEvent], filter: &Filter, deliveries_say_what: bool) -> String {
    let sent: BTreeMap<u64, &str> = events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Send { msg, .. } => Some((e.seq, msg.as_str())),
            _ => None,
        })
        .collect();
    let mut out = String::new();
    for e in events.iter().filter(|e| filter.keeps(e)) {
        let what = match &e.kind {
            EventKind::Start => "start".to_string(),
            EventKind::Send { to, id, bytes, msg } => {
                format!("send     #{id} to {to} ({bytes} B) {msg}")
            }
            EventKind::Drop { to, id, reason } => format!("drop     #{id} to {to}: {reason}"),
            EventKind::Deliver { from, id } => match sent.get(id) {
                Some(msg) if deliveries_say_what => {
                    format!("deliver  #{id} from {from} {msg}")
                }
                _ => format!("deliver  #{id} from {from}"),
            },
            EventKind::Timer { timer_id, timer } => {
                format!("timer    {timer} (timer {})", timer_id.0)
            }
            EventKind::Output { value } => format!("output   {value}"),
            EventKind::Annotate { label } => format!("note     {label}"),
            EventKind::Violation { invariant, detail } => {
                format!("VIOLATION {invariant}: {detail}")
            }
            EventKind::Fault { fault } => format!("FAULT    {fault}"),
            EventKind::Round { round } => format!("round    {round}"),
            EventKind::Corrupt { to, id, msg } => {
                format!("corrupt  #{id} to {to} arrives as {msg}")
            }
        };
        let _ = writeln!(
            out,
            "{:>5} {:>13}  {:<4} {what}",
            e.seq,
            format_ns(e.t),
            e.node.to_string()
        );
    }
    out
}
