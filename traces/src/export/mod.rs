//! Exporters: a run's events in the formats of outside tools.
//!
//! - [`chrome`]: Chrome trace / Perfetto JSON (one track per node, flows for messages);
//! - [`shiviz`]: a ShiViz log with proper vector clocks;
//! - [`mermaid`]: a Mermaid `sequenceDiagram`, bounded in size;
//! - [`dot`]: the happens-before graph, for Graphviz.
//!
//! Every exporter is a pure function of the events: the same events give the same bytes.
//! Events are taken in the order given, which for a trace read from a file is `seq` order.

pub mod chrome;
pub mod dot;
pub mod mermaid;
pub mod shiviz;

use rehearsal_sim_core::{EventKind, NodeId, TraceEvent};
use std::collections::BTreeMap;

/// How many nodes the events mention: one more than the highest node id found as an event's
/// node or as a message's sender or receiver; 0 for no events.
pub(crate) fn node_count(events: &[TraceEvent]) -> u32 {
    let mut max: Option<u32> = None;
    let mut see = |n: NodeId| max = Some(max.map_or(n.0, |m| m.max(n.0)));
    for e in events {
        see(e.node);
        match &e.kind {
            EventKind::Send { to, .. }
            | EventKind::Drop { to, .. }
            | EventKind::Corrupt { to, .. } => see(*to),
            EventKind::Deliver { from, .. } => see(*from),
            _ => {}
        }
    }
    max.map_or(0, |m| m + 1)
}

/// Where each message's send, deliveries, drops and corruption are, by message id (indices
/// into the event slice). A message can be delivered more than once (the network duplicated
/// it) and dropped more than once (a copy reached a crashed receiver).
#[derive(Debug, Default)]
pub(crate) struct Messages {
    pub send: BTreeMap<u64, usize>,
    pub delivers: BTreeMap<u64, Vec<usize>>,
    pub drops: BTreeMap<u64, Vec<usize>>,
    pub corrupt: BTreeMap<u64, usize>,
}

impl Messages {
    pub(crate) fn index(events: &[TraceEvent]) -> Self {
        let mut m = Messages::default();
        for (i, e) in events.iter().enumerate() {
            match &e.kind {
                EventKind::Send { id, .. } => {
                    m.send.entry(*id).or_insert(i);
                }
                EventKind::Deliver { id, .. } => m.delivers.entry(*id).or_default().push(i),
                EventKind::Drop { id, .. } => m.drops.entry(*id).or_default().push(i),
                EventKind::Corrupt { id, .. } => {
                    m.corrupt.entry(*id).or_insert(i);
                }
                _ => {}
            }
        }
        m
    }

    /// The summary of message `id` as sent, if the events hold its send.
    pub(crate) fn summary<'a>(&self, events: &'a [TraceEvent], id: u64) -> Option<&'a str> {
        let i = *self.send.get(&id)?;
        match &events[i].kind {
            EventKind::Send { msg, .. } => Some(msg),
            _ => None,
        }
    }

    /// The summary of message `id` as delivered: what it decoded to if it was corrupted in
    /// flight, else as sent.
    pub(crate) fn delivered_summary<'a>(
        &self,
        events: &'a [TraceEvent],
        id: u64,
    ) -> Option<&'a str> {
        if let Some(&i) = self.corrupt.get(&id) {
            if let EventKind::Corrupt { msg, .. } = &events[i].kind {
                return Some(msg);
            }
        }
        self.summary(events, id)
    }

    /// Whether message `id` was corrupted in flight.
    pub(crate) fn corrupted(&self, id: u64) -> bool {
        self.corrupt.contains_key(&id)
    }

    /// Where message `id`'s copies end, in event order: each delivery and each drop.
    pub(crate) fn ends(&self, id: u64) -> Vec<usize> {
        let mut ends: Vec<usize> = self
            .delivers
            .get(&id)
            .into_iter()
            .chain(self.drops.get(&id))
            .flatten()
            .copied()
            .collect();
        ends.sort_unstable();
        ends
    }

    /// Whether message `id` is neither delivered nor dropped in these events.
    pub(crate) fn in_flight(&self, id: u64) -> bool {
        !self.delivers.contains_key(&id) && !self.drops.contains_key(&id)
    }
}

/// The type name at the start of a message summary (`Share` for `Share { value: 3 }`), or
/// `message` when it does not start with one.
pub(crate) fn msg_kind(summary: &str) -> &str {
    let end = summary
        .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(summary.len());
    let kind = summary[..end].trim_end_matches(':');
    if kind.is_empty() {
        "message"
    } else {
        kind
    }
}

/// Whether an event starts a handler invocation (the node reacts to something).
pub(crate) fn is_trigger(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Start | EventKind::Deliver { .. } | EventKind::Timer { .. }
    )
}

/// Whether an event can be caused by a handler: the simulator records those right after it.
fn is_effect(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Send { .. }
            | EventKind::Drop { .. }
            | EventKind::Corrupt { .. }
            | EventKind::Output { .. }
            | EventKind::Annotate { .. }
            | EventKind::Violation { .. }
            | EventKind::Round { .. }
    )
}

/// One handler invocation: a start, deliver or timer event and the events it caused (the
/// sends, drops, corruptions, outputs, annotations and violations that follow it at the same
/// node and time), or a lone event: a fault, or an effect that no handler event precedes.
#[derive(Debug)]
pub(crate) struct Invocation {
    /// Index of the start/deliver/timer event, `None` for a lone effect.
    pub trigger: Option<usize>,
    /// Indices of the events it caused, in order.
    pub effects: Vec<usize>,
}

/// Groups events into handler invocations. The simulator records a handler's effects right
/// after the event that ran it, so an effect belongs to the latest handler event when that one
/// is at the same node and time; faults, and any other effect (for instance a violation found
/// at the end of the run), stand alone.
pub(crate) fn invocations(events: &[TraceEvent]) -> Vec<Invocation> {
    let mut out: Vec<Invocation> = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if is_trigger(&e.kind) {
            out.push(Invocation {
                trigger: Some(i),
                effects: Vec::new(),
            });
            continue;
        }
        let joins = is_effect(&e.kind)
            && out
                .last()
                .and_then(|inv| inv.trigger)
                .is_some_and(|t| events[t].node == e.node && events[t].t == e.t);
        if joins {
            if let Some(last) = out.last_mut() {
                last.effects.push(i);
            }
        } else {
            out.push(Invocation {
                trigger: None,
                effects: vec![i],
            });
        }
    }
    out
}

/// One line saying what an event is, with the message summary for deliveries and drops.
///
/// ```text
/// deliver #2 from n0: Share { value: 1702610313 }
/// ```
pub(crate) fn describe(events: &[TraceEvent], messages: &Messages, e: &TraceEvent) -> String {
    match &e.kind {
        EventKind::Start => "start".to_string(),
        EventKind::Send { to, id, msg, .. } => format!("send #{id} to {to}: {msg}"),
        EventKind::Drop { to, id, reason } => match messages.summary(events, *id) {
            Some(msg) => format!("drop #{id} to {to} ({reason}): {msg}"),
            None => format!("drop #{id} to {to} ({reason})"),
        },
        EventKind::Corrupt { to, id, msg } => format!("corrupt #{id} to {to}, arrives as {msg}"),
        EventKind::Deliver { from, id } => {
            let how = if messages.corrupted(*id) {
                " (corrupted)"
            } else {
                ""
            };
            match messages.delivered_summary(events, *id) {
                Some(msg) => format!("deliver #{id} from {from}{how}: {msg}"),
                None => format!("deliver #{id} from {from}{how}"),
            }
        }
        EventKind::Timer { timer, .. } => format!("timer {timer}"),
        EventKind::Output { value } => format!("output {value}"),
        EventKind::Annotate { label } => format!("note {label}"),
        EventKind::Violation { invariant, detail } => {
            format!("VIOLATION {invariant}: {detail}")
        }
        EventKind::Fault { fault } => format!("FAULT {fault}"),
        EventKind::Round { round } => format!("round {round}"),
    }
}

/// `text` cut to at most `max` characters, with `…` marking a cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `text` on one line: every line break and tab becomes a space.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_kind_takes_the_leading_type_name() {
        assert_eq!(msg_kind("Share { value: 3 }"), "Share");
        assert_eq!(msg_kind("Ping(3)"), "Ping");
        assert_eq!(msg_kind("Vote"), "Vote");
        assert_eq!(msg_kind("pbft::Prepare { v: 1 }"), "pbft::Prepare");
        assert_eq!(msg_kind("(1, 2)"), "message");
    }

    #[test]
    fn shorten_cuts_on_characters() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "ab…");
        assert_eq!(shorten("ééé", 2), "é…");
    }
}
