//! The happens-before graph of a run, as a [petgraph] graph and as Graphviz DOT.
//!
//! Its nodes are the events; its edges are program order (each event of a node to that node's
//! next event) and messages (each send to each delivery of that message). An event happens
//! before another exactly when a path leads from the first to the second.
//!
//! ```sh
//! dot -Tsvg hb.dot -o hb.svg
//! ```

use super::{describe, node_count, one_line, shorten, Messages};
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use rehearsal_sim_core::{format_ns, EventKind, NodeId, TraceEvent};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Longest event description in a DOT node label, in characters.
const LABEL_CHARS_MAX: usize = 60;

/// Why one event happens before another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HbEdge {
    /// The two events are consecutive events of one node.
    Program,
    /// The first sends message `id`, the second delivers it.
    Message {
        /// The message id (the `seq` of its send event).
        id: u64,
    },
}

/// The happens-before graph of `events`. Node `NodeIndex::new(i)` is `events[i]` (its weight
/// is `i`). A delivery whose send is not among the events has no message edge.
pub fn happens_before(events: &[TraceEvent]) -> DiGraph<usize, HbEdge> {
    let messages = Messages::index(events);
    let mut graph = DiGraph::with_capacity(events.len(), events.len() * 2);
    for i in 0..events.len() {
        graph.add_node(i);
    }
    let mut last: BTreeMap<NodeId, usize> = BTreeMap::new();
    for (i, e) in events.iter().enumerate() {
        if let Some(prev) = last.insert(e.node, i) {
            graph.add_edge(NodeIndex::new(prev), NodeIndex::new(i), HbEdge::Program);
        }
        if let EventKind::Deliver { id, .. } = &e.kind {
            if let Some(&send) = messages.send.get(id) {
                graph.add_edge(
                    NodeIndex::new(send),
                    NodeIndex::new(i),
                    HbEdge::Message { id: *id },
                );
            }
        }
    }
    graph
}

/// The happens-before graph of `events` as a Graphviz `digraph`: one cluster (column) per
/// node, one box per event labelled with its `seq`, virtual time and what happened, plain
/// edges for program order and blue edges, labelled with the message type, for messages.
/// Drops are red, violations filled red, faults orange hexagons, corruptions orange, outputs
/// green, annotations notes, timers yellow.
pub fn dot_graph(events: &[TraceEvent]) -> String {
    let messages = Messages::index(events);
    let graph = happens_before(events);
    let mut out = String::from("digraph happens_before {\n");
    out.push_str("  rankdir=TB;\n  newrank=true;\n");
    out.push_str(
        "  node [shape=box, style=\"rounded,filled\", fillcolor=white, fontname=\"Helvetica\", fontsize=10];\n",
    );
    out.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for n in 0..node_count(events) {
        let node = NodeId(n);
        let _ = writeln!(out, "  subgraph cluster_{node} {{");
        let _ = writeln!(out, "    label=\"{node}\";");
        out.push_str("    style=rounded;\n    color=gray70;\n");
        for (i, e) in events.iter().enumerate().filter(|(_, e)| e.node == node) {
            let what = shorten(&one_line(&describe(events, &messages, e)), LABEL_CHARS_MAX);
            let label = format!("#{} @{}\n{what}", e.seq, format_ns(e.t));
            let _ = writeln!(
                out,
                "    e{i} [label=\"{}\"{}];",
                escape(&label),
                style(&e.kind)
            );
        }
        out.push_str("  }\n");
    }
    for edge in graph.edge_references() {
        let (a, b) = (edge.source().index(), edge.target().index());
        match edge.weight() {
            HbEdge::Program => {
                let _ = writeln!(out, "  e{a} -> e{b} [color=gray40];");
            }
            HbEdge::Message { id } => {
                let kind = messages
                    .summary(events, *id)
                    .map_or("message", super::msg_kind);
                let _ = writeln!(
                    out,
                    "  e{a} -> e{b} [color=blue, fontcolor=blue, label=\"{}\"];",
                    escape(&format!("#{id} {kind}"))
                );
            }
        }
    }
    out.push_str("}\n");
    out
}

/// Attributes that set an event's box apart by kind.
fn style(kind: &EventKind) -> &'static str {
    match kind {
        EventKind::Start => ", shape=oval",
        EventKind::Send { .. } | EventKind::Deliver { .. } => "",
        EventKind::Drop { .. } => ", color=red, fontcolor=red, fillcolor=\"#ffe0e0\"",
        EventKind::Timer { .. } => ", fillcolor=\"#fff5c0\"",
        EventKind::Output { .. } => ", fillcolor=\"#ddf5dd\"",
        EventKind::Annotate { .. } | EventKind::Round { .. } => {
            ", shape=note, style=filled, fillcolor=\"#eeeeee\""
        }
        EventKind::Violation { .. } => ", color=red, fillcolor=red, fontcolor=white",
        EventKind::Corrupt { .. } => ", color=darkorange, fillcolor=\"#ffe8c0\"",
        EventKind::Fault { .. } => ", shape=hexagon, color=darkorange, fillcolor=\"#ffc060\"",
    }
}

/// A DOT double-quoted string's content: quotes and backslashes escaped, line breaks as
/// Graphviz's centred-line escape `\n`.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_keeps_dot_strings_closed() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
