//! Mermaid sequence diagrams (<https://mermaid.js.org/syntax/sequenceDiagram.html>), to read
//! a short run in a Markdown page or an issue.
//!
//! ```text
//! sequenceDiagram
//!     participant n0
//!     participant n1
//!     n0->>n1: #35;2 Share { value: 1702610313 }
//!     n1-xn2: #35;8 Share { value: 342882302 } (dropped: loss)
//!     Note over n1: subset sum broadcast (3 of 3 shares)
//! ```
//!
//! Every node is a participant. A delivered message is an arrow from sender to receiver,
//! placed where it is delivered (dotted, `-->>`, when it was corrupted in flight, labelled
//! with what it decoded to); a dropped one is an arrow ending in a cross (`-x`), placed where
//! it is dropped; one still in flight when the run ends is an open arrow (`-)`) placed where
//! it is sent. Timers, outputs and annotations are notes over their node; a violation is a
//! note on a red background, a fault one on an orange background. Starts and sends are not
//! drawn of themselves.

use super::{describe, node_count, one_line, shorten, Messages};
use rehearsal_sim_core::{EventKind, NodeId, TraceEvent};
use std::fmt::Write;

/// Longest label, in characters, before escaping.
const LABEL_CHARS_MAX: usize = 80;

/// Background of violation notes.
const VIOLATION_RGB: &str = "rgb(255, 215, 215)";

/// Background of fault notes.
const FAULT_RGB: &str = "rgb(255, 236, 200)";

/// The first `max_events` events as a Mermaid `sequenceDiagram` (see the [module
/// docs](self)). When there are more, the diagram ends with a note over every participant:
/// `truncated after N of M events`. The participants are those of the whole trace.
pub fn mermaid_sequence(events: &[TraceEvent], max_events: usize) -> String {
    let messages = Messages::index(events);
    let nodes = node_count(events);
    let mut out = String::from("sequenceDiagram\n");
    for n in 0..nodes {
        let _ = writeln!(out, "    participant {}", NodeId(n));
    }
    let shown = events.len().min(max_events);
    for e in &events[..shown] {
        let node = e.node;
        match &e.kind {
            EventKind::Start => {}
            EventKind::Send { to, id, msg, .. } => {
                if messages.in_flight(*id) {
                    let label = format!("#{id} {msg} (in flight at the end)");
                    let _ = writeln!(out, "    {node}-){to}: {}", label_text(&label));
                }
            }
            EventKind::Deliver { from, id } => {
                let mut label = match messages.delivered_summary(events, *id) {
                    Some(msg) => format!("#{id} {msg}"),
                    None => format!("#{id}"),
                };
                let arrow = if messages.corrupted(*id) {
                    label.push_str(" (corrupted)");
                    "-->>"
                } else {
                    "->>"
                };
                let _ = writeln!(out, "    {from}{arrow}{node}: {}", label_text(&label));
            }
            EventKind::Drop { to, id, reason } => {
                let label = match messages.summary(events, *id) {
                    Some(msg) => format!("#{id} {msg} (dropped: {reason})"),
                    None => format!("#{id} (dropped: {reason})"),
                };
                let _ = writeln!(out, "    {node}-x{to}: {}", label_text(&label));
            }
            EventKind::Timer { .. }
            | EventKind::Output { .. }
            | EventKind::Annotate { .. }
            | EventKind::Round { .. } => {
                let text = match &e.kind {
                    EventKind::Annotate { label } => label.clone(),
                    _ => describe(events, &messages, e),
                };
                let _ = writeln!(out, "    Note over {node}: {}", label_text(&text));
            }
            EventKind::Violation { .. } | EventKind::Fault { .. } => {
                let rgb = if matches!(e.kind, EventKind::Fault { .. }) {
                    FAULT_RGB
                } else {
                    VIOLATION_RGB
                };
                let text = describe(events, &messages, e);
                let _ = writeln!(out, "    rect {rgb}");
                let _ = writeln!(out, "    Note over {node}: {}", label_text(&text));
                let _ = writeln!(out, "    end");
            }
            // Shown on the delivery arrow.
            EventKind::Corrupt { .. } => {}
        }
    }
    if shown < events.len() {
        let over = if nodes > 1 {
            format!("{},{}", NodeId(0), NodeId(nodes - 1))
        } else {
            NodeId(0).to_string()
        };
        let _ = writeln!(
            out,
            "    Note over {over}: truncated after {shown} of {} events",
            events.len()
        );
    }
    out
}

/// `text` shortened, on one line, with what Mermaid cannot take in a message or note
/// written as its entity code: `#` ends a label and starts an entity, `;` ends a statement,
/// `<` and `>` would be read as HTML.
fn label_text(text: &str) -> String {
    let text = one_line(&shorten(text, LABEL_CHARS_MAX));
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '#' => out.push_str("#35;"),
            ';' => out.push_str("#59;"),
            '<' => out.push_str("#60;"),
            '>' => out.push_str("#62;"),
            c => out.push(c),
        }
    }
    out.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_escape_what_mermaid_cannot_take() {
        assert_eq!(label_text("a;b#c\nd<e>"), "a#59;b#35;c d#60;e#62;");
    }
}
