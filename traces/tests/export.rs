//! The exporters and the plot, on real Benaloh traces (fixtures written by
//! `rehearsal sim --protocol benaloh --nodes 3 ...`, see `fixtures/README.md`) and on small
//! hand-built traces for what the simulator rarely does.

use rehearsal_sim_core::{EventKind, NodeId, TimerId, TraceEvent};
use rehearsal_traces::{
    chrome_trace, dot_graph, happens_before, mermaid_sequence, read_trace, render_svg, shiviz_log,
    HbEdge, PlotOptions, SHIVIZ_REGEX,
};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

fn fixture(name: &str) -> Vec<TraceEvent> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    read_trace(&path).unwrap_or_else(|e| panic!("{e}")).events
}

/// The clean run: every share and subset sum delivered, every node outputs the total.
fn benaloh3() -> Vec<TraceEvent> {
    fixture("benaloh3.jsonl")
}

/// With 10 % loss and a 40 ms deadline: three drops, retransmissions, and a violation at
/// the deadline (no node has the total).
fn benaloh3_loss() -> Vec<TraceEvent> {
    fixture("benaloh3-loss.jsonl")
}

/// The time-triggered original: phases at 30 s, 45 s and 90 s, driven by timers.
fn benaloh3_timed() -> Vec<TraceEvent> {
    fixture("benaloh3-timed.jsonl")
}

fn ev(seq: u64, t: u64, node: u32, kind: EventKind) -> TraceEvent {
    TraceEvent {
        seq,
        t,
        node: NodeId(node),
        kind,
    }
}

fn send(to: u32, id: u64, msg: &str) -> EventKind {
    EventKind::Send {
        to: NodeId(to),
        id,
        bytes: 4,
        msg: msg.into(),
    }
}

fn deliver(from: u32, id: u64) -> EventKind {
    EventKind::Deliver {
        from: NodeId(from),
        id,
    }
}

/// What the simulator does rarely or not yet in the fixtures: a duplicated message, a
/// corrupted one, a fault, a drop at a crashed receiver, a message in flight at the end, a
/// timer, and labels full of characters Mermaid and DOT cannot take as they are.
fn odd_trace() -> Vec<TraceEvent> {
    vec![
        ev(0, 0, 0, EventKind::Start),
        ev(1, 0, 0, send(1, 1, "Ping { n: 1 }")),
        ev(2, 0, 0, send(2, 2, "Ping { n: 2 }")),
        ev(
            3,
            0,
            0,
            EventKind::Corrupt {
                to: NodeId(2),
                id: 2,
                msg: "Ping { n: 3 }".into(),
            },
        ),
        ev(
            4,
            0,
            0,
            EventKind::Annotate {
                label: "a;b#c\n<d> \"e\" \\f".into(),
            },
        ),
        ev(5, 1_000, 1, deliver(0, 1)),
        ev(6, 1_000, 1, send(0, 6, "Pong")),
        ev(7, 1_500, 1, deliver(0, 1)),
        ev(8, 2_000, 2, deliver(0, 2)),
        ev(
            9,
            2_500,
            0,
            EventKind::Fault {
                fault: "crash 0".into(),
            },
        ),
        ev(
            10,
            3_000,
            1,
            EventKind::Drop {
                to: NodeId(0),
                id: 6,
                reason: "receiver crashed".into(),
            },
        ),
        ev(
            11,
            4_000,
            2,
            EventKind::Timer {
                timer_id: TimerId(0),
                timer: "Retry".into(),
            },
        ),
        ev(12, 4_000, 2, send(1, 12, "Ping { n: 4 }")),
        ev(
            13,
            4_000,
            2,
            EventKind::Output {
                value: serde_json::json!({"done": true}),
            },
        ),
        ev(
            14,
            4_000,
            2,
            EventKind::Violation {
                invariant: "agreement".into(),
                detail: "n2 disagrees; #1".into(),
            },
        ),
    ]
}

// ---------------------------------------------------------------- snapshots

#[test]
fn chrome_snapshot() {
    insta::assert_snapshot!("chrome_benaloh3", chrome_trace(&benaloh3()));
    insta::assert_snapshot!("chrome_benaloh3_loss", chrome_trace(&benaloh3_loss()));
}

#[test]
fn shiviz_snapshot() {
    insta::assert_snapshot!("shiviz_benaloh3", shiviz_log(&benaloh3()));
}

#[test]
fn mermaid_snapshot() {
    insta::assert_snapshot!("mermaid_benaloh3", mermaid_sequence(&benaloh3(), 1000));
    insta::assert_snapshot!(
        "mermaid_benaloh3_loss",
        mermaid_sequence(&benaloh3_loss(), 1000)
    );
    insta::assert_snapshot!("mermaid_odd", mermaid_sequence(&odd_trace(), 1000));
}

#[test]
fn dot_snapshot() {
    insta::assert_snapshot!("dot_benaloh3", dot_graph(&benaloh3()));
}

#[test]
fn plot_snapshot() {
    let options = PlotOptions {
        title: Some("benaloh, 3 nodes, 10 % loss".into()),
        ..PlotOptions::default()
    };
    insta::assert_snapshot!("plot_benaloh3_loss", render_svg(&benaloh3_loss(), &options));
}

// ---------------------------------------------------------------- Chrome / Perfetto

/// Flow starts and ends by (name, id), each with the (tid, ts) it sits at.
type Flows = BTreeMap<(String, u64), Vec<(u64, String)>>;

fn chrome_events(events: &[TraceEvent]) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&chrome_trace(events)).expect("valid JSON");
    assert_eq!(doc["displayTimeUnit"], "ns");
    doc["traceEvents"].as_array().expect("traceEvents").clone()
}

fn flows(trace_events: &[Value], ph: &str) -> Flows {
    let mut out = Flows::new();
    for e in trace_events.iter().filter(|e| e["ph"] == ph) {
        let key = (
            e["name"].as_str().unwrap().to_string(),
            e["id"].as_u64().unwrap(),
        );
        out.entry(key)
            .or_default()
            .push((e["tid"].as_u64().unwrap(), e["ts"].to_string()));
    }
    out
}

/// Checks that every flow start has exactly one finish, at a delivery or a drop of that
/// message on the finishing track at that time, and returns the number of flows.
fn check_flows(events: &[TraceEvent]) -> usize {
    let trace_events = chrome_events(events);
    let starts = flows(&trace_events, "s");
    let finishes = flows(&trace_events, "f");
    assert_eq!(
        starts.keys().collect::<Vec<_>>(),
        finishes.keys().collect::<Vec<_>>(),
        "every flow start has a finish and every finish a start"
    );
    for ((name, id), at) in &finishes {
        assert_eq!(at.len(), 1, "flow {name} #{id} finishes {} times", at.len());
        assert_eq!(starts[&(name.clone(), *id)].len(), 1, "flow {name} #{id}");
        let (tid, ts) = &at[0];
        let bound = trace_events.iter().any(|e| {
            e["tid"].as_u64() == Some(*tid)
                && &e["ts"].to_string() == ts
                && e["args"]["id"].as_u64() == Some(*id)
                && ((e["ph"] == "X" && e["name"].as_str().unwrap().starts_with("deliver"))
                    || (e["ph"] == "i" && e["name"].as_str().unwrap().starts_with("drop")))
        });
        assert!(
            bound,
            "flow {name} #{id} ends at neither a delivery nor a drop"
        );
    }
    for e in &trace_events {
        assert!(
            e["ph"].is_string() && e["pid"].is_u64() && e["tid"].is_u64(),
            "{e}"
        );
        if e["ph"] != "M" {
            assert!(e["ts"].is_number(), "{e}");
        }
        if e["ph"] == "i" {
            assert!(["t", "g"].contains(&e["s"].as_str().unwrap()), "{e}");
        }
    }
    starts.len()
}

#[test]
fn chrome_flows_link_each_send_to_its_delivery_or_drop() {
    // 24 messages, all delivered.
    assert_eq!(check_flows(&benaloh3()), 24);
    // 20 messages: 16 delivered, 3 dropped, 1 in flight at the deadline (no flow).
    assert_eq!(check_flows(&benaloh3_loss()), 19);
    assert_eq!(check_flows(&benaloh3_timed()), 12);
    // Ping 1 twice (a duplicate), Ping 2 corrupted, Pong dropped; Ping 4 still in flight.
    assert_eq!(check_flows(&odd_trace()), 4);
}

#[test]
fn chrome_has_a_named_track_per_node_and_marks_drops_and_violations() {
    let trace_events = chrome_events(&benaloh3_loss());
    let threads: Vec<(u64, &str)> = trace_events
        .iter()
        .filter(|e| e["ph"] == "M" && e["name"] == "thread_name")
        .map(|e| {
            (
                e["tid"].as_u64().unwrap(),
                e["args"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(threads, [(1, "n0"), (2, "n1"), (3, "n2")]);
    let handlers = trace_events
        .iter()
        .filter(|e| e["ph"] == "X" && e["cat"] == "handler")
        .count();
    // 3 starts, 16 deliveries and 2 retransmission timers: every send has its handler.
    assert_eq!(handlers, 21);
    let drops: Vec<&str> = trace_events
        .iter()
        .filter(|e| e["ph"] == "i" && e["name"].as_str().unwrap().starts_with("drop"))
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        drops,
        [
            "drop Share to n0 (loss)",
            "drop SubsetSum to n2 (loss)",
            "drop Share to n0 (loss)"
        ]
    );
    let violations: Vec<&str> = trace_events
        .iter()
        .filter(|e| e["cat"] == "violation")
        .map(|e| e["s"].as_str().unwrap())
        .collect();
    assert_eq!(violations, ["t", "g"]);
    // A handler's args list what it caused, the rounds it entered included.
    let start_n2 = trace_events
        .iter()
        .find(|e| e["ph"] == "X" && e["tid"] == 3 && e["name"] == "start")
        .unwrap();
    let caused = start_n2["args"]["caused"].as_array().unwrap();
    assert_eq!(caused.len(), 7, "{caused:?}");
    assert_eq!(caused[1], "round 0", "{caused:?}");
    assert_eq!(
        caused[3], "drop #17 to n0 (loss): Share { value: 79111799 }",
        "{caused:?}"
    );
}

#[test]
fn chrome_timestamps_are_exact_microseconds() {
    let trace_events = chrome_events(&odd_trace());
    let ts: Vec<String> = trace_events
        .iter()
        .filter(|e| e["ph"] == "X")
        .map(|e| e["ts"].to_string())
        .collect();
    assert_eq!(ts, ["0", "1", "1.5", "2", "4"]);
}

// ---------------------------------------------------------------- ShiViz

/// (description, host, clock) of each record of a ShiViz log.
fn shiviz_records(log: &str) -> Vec<(String, String, BTreeMap<String, u64>)> {
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some(SHIVIZ_REGEX));
    assert_eq!(lines.next(), Some(""), "no multiple-executions delimiter");
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest.len() % 2, 0, "two lines per record");
    rest.chunks(2)
        .map(|pair| {
            let (host, clock) = pair[1].split_once(' ').expect("host, space, clock");
            assert!(!host.is_empty() && !host.contains(char::is_whitespace));
            let clock: BTreeMap<String, u64> = serde_json::from_str(clock).expect("JSON clock");
            (pair[0].to_string(), host.to_string(), clock)
        })
        .collect()
}

fn check_clocks(events: &[TraceEvent]) {
    let records = shiviz_records(&shiviz_log(events));
    assert_eq!(records.len(), events.len());
    let mut last: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut at_send: BTreeMap<u64, BTreeMap<String, u64>> = BTreeMap::new();
    for (e, (what, host, clock)) in events.iter().zip(&records) {
        assert_eq!(host, &e.node.to_string());
        assert!(!what.is_empty());
        assert!(
            clock.values().all(|&c| c >= 1),
            "no zero entries: {clock:?}"
        );
        // Monotone per host, and the host's own entry counts its events one by one.
        let before = last.get(host).cloned().unwrap_or_default();
        for (node, &count) in &before {
            assert!(
                clock.get(node).copied().unwrap_or(0) >= count,
                "{host}: {clock:?}"
            );
        }
        assert_eq!(
            clock[host],
            before.get(host).copied().unwrap_or(0) + 1,
            "{host}: {clock:?}"
        );
        match &e.kind {
            EventKind::Send { id, .. } => {
                at_send.insert(*id, clock.clone());
            }
            EventKind::Deliver { id, .. } => {
                // The delivery's clock dominates (strictly) its send's.
                let sent = &at_send[id];
                for (node, &count) in sent {
                    assert!(clock.get(node).copied().unwrap_or(0) >= count, "#{id}");
                }
                assert_ne!(clock, sent);
            }
            _ => {}
        }
        last.insert(host.clone(), clock.clone());
    }
}

#[test]
fn shiviz_clocks_are_monotone_and_deliveries_dominate_sends() {
    check_clocks(&benaloh3());
    check_clocks(&benaloh3_loss());
    check_clocks(&benaloh3_timed());
    check_clocks(&odd_trace());
}

#[test]
fn shiviz_clocks_carry_knowledge_across_messages() {
    let records = shiviz_records(&shiviz_log(&benaloh3()));
    // n1's first delivery (seq 21, Share #3 from n0, sent as n0's 4th event) learns n0:4;
    // it is n1's 8th event.
    let (what, host, clock) = &records[21];
    assert!(what.starts_with("[10ms] deliver #3 from n0"), "{what}");
    assert_eq!(host, "n1");
    assert_eq!(clock.get("n0"), Some(&4));
    assert_eq!(clock.get("n1"), Some(&8));
    // Descriptions stay on one line.
    let records = shiviz_records(&shiviz_log(&odd_trace()));
    assert_eq!(records[4].0, "[0s] note a;b#c <d> \"e\" \\f");
}

// ---------------------------------------------------------------- Mermaid

/// A line of a Mermaid diagram with its entity codes taken out.
fn without_entities(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(at) = rest.find('#') {
        out.push_str(&rest[..at]);
        let tail = &rest[at + 1..];
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        assert!(
            digits > 0 && tail[digits..].starts_with(';'),
            "a bare # in {line:?}"
        );
        rest = &tail[digits + 1..];
    }
    out.push_str(rest);
    out
}

#[test]
fn mermaid_draws_every_delivery_and_drop() {
    let text = mermaid_sequence(&benaloh3_loss(), usize::MAX);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "sequenceDiagram");
    assert_eq!(
        &lines[1..4],
        [
            "    participant n0",
            "    participant n1",
            "    participant n2"
        ]
    );
    assert_eq!(text.matches("->>").count(), 16);
    assert_eq!(text.matches("-x").count(), 3);
    assert!(text.contains("    n1-xn2: #35;38 SubsetSum { value: 877231273 } (dropped: loss)"));
    assert!(text.contains("Note over n0: VIOLATION correct-sum: no total from n0, n1, n2"));
    assert!(!text.contains("truncated"));
}

#[test]
fn mermaid_truncation_says_how_much_is_left_out() {
    let events = benaloh3();
    let text = mermaid_sequence(&events, 10);
    assert!(
        text.ends_with("    Note over n0,n2: truncated after 10 of 75 events\n"),
        "{text}"
    );
    // Every participant is still declared.
    assert!(text.contains("participant n2"));
    // Nothing past event 10 is drawn: the first delivery is event 21.
    assert!(!text.contains("->>"));
    let whole = mermaid_sequence(&events, events.len());
    assert!(!whole.contains("truncated"));
    assert_eq!(whole.matches("->>").count(), 24);
    assert!(mermaid_sequence(&events, 0).ends_with("truncated after 0 of 75 events\n"));
}

#[test]
fn mermaid_labels_carry_no_character_mermaid_cannot_take() {
    let text = mermaid_sequence(&odd_trace(), usize::MAX);
    for line in text.lines().skip(1) {
        let Some((_, label)) = line.split_once(": ") else {
            continue;
        };
        let bare = without_entities(label);
        assert!(!bare.contains([';', '<', '>']), "{line:?}");
    }
    assert!(text.contains("Note over n0: a#59;b#35;c #60;d#62; \"e\" \\f"));
    // Ping 1 arrives twice; Ping 2 corrupted, as it decoded; Pong dropped at a crashed
    // receiver; Ping 4 still in flight.
    assert_eq!(text.matches("n0->>n1: #35;1 Ping { n: 1 }").count(), 2);
    assert!(text.contains("n0-->>n2: #35;2 Ping { n: 3 } (corrupted)"));
    assert!(text.contains("n1-xn0: #35;6 Pong (dropped: receiver crashed)"));
    assert!(text.contains("n2-)n1: #35;12 Ping { n: 4 } (in flight at the end)"));
    assert!(text.contains("Note over n0: FAULT crash 0"));
}

// ---------------------------------------------------------------- DOT

fn program_order_edges(events: &[TraceEvent]) -> usize {
    let mut per_node: BTreeMap<NodeId, usize> = BTreeMap::new();
    for e in events {
        *per_node.entry(e.node).or_default() += 1;
    }
    per_node.values().map(|n| n - 1).sum()
}

fn deliveries(events: &[TraceEvent]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Deliver { .. }))
        .count()
}

#[test]
fn dot_has_one_edge_per_delivery_plus_program_order() {
    for events in [benaloh3(), benaloh3_loss(), benaloh3_timed(), odd_trace()] {
        let text = dot_graph(&events);
        assert!(text.starts_with("digraph happens_before {\n") && text.ends_with("}\n"));
        let edges: Vec<&str> = text.lines().filter(|l| l.contains(" -> ")).collect();
        let messages = edges.iter().filter(|l| l.contains("color=blue")).count();
        assert_eq!(messages, deliveries(&events));
        assert_eq!(edges.len() - messages, program_order_edges(&events));
        // One box per event, in one cluster per node.
        let boxes = text.lines().filter(|l| l.contains("[label=")).count();
        assert_eq!(boxes, events.len());
        assert_eq!(text.matches("subgraph cluster_").count(), 3);
        // Quotes inside labels are escaped: every label line has an even number of
        // unescaped quotes.
        for line in text.lines() {
            let unescaped = line.replace("\\\\", "").replace("\\\"", "");
            assert_eq!(unescaped.matches('"').count() % 2, 0, "{line}");
        }
    }
}

#[test]
fn happens_before_graph_is_acyclic_and_typed() {
    let events = benaloh3();
    let graph = happens_before(&events);
    assert_eq!(graph.node_count(), events.len());
    assert!(!petgraph::algo::is_cyclic_directed(&graph));
    let messages = graph
        .edge_weights()
        .filter(|w| matches!(w, HbEdge::Message { .. }))
        .count();
    assert_eq!(messages, 24);
    assert_eq!(graph.edge_count() - messages, program_order_edges(&events));
    // Event weights are indices into the events.
    assert!(graph.node_indices().all(|i| graph[i] == i.index()));
    // The first delivery (Share #3 at n1, event 21) happens after n0's start.
    assert!(petgraph::algo::has_path_connecting(
        &graph,
        0.into(),
        21.into(),
        None
    ));
    assert!(!petgraph::algo::has_path_connecting(
        &graph,
        21.into(),
        0.into(),
        None
    ));
}

// ---------------------------------------------------------------- plot

fn check_svg(svg: &str) {
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    assert!(svg.ends_with("</svg>\n"));
    for bad in ["NaN", "inf", "--"] {
        assert!(!svg.contains(bad), "{bad} in the SVG");
    }
    assert_eq!(svg.matches("<g").count(), svg.matches("</g>").count());
}

#[test]
fn plot_shows_lanes_messages_drops_and_violations() {
    let svg = render_svg(&benaloh3_loss(), &PlotOptions::default());
    check_svg(&svg);
    for lane in ["n0", "n1", "n2"] {
        assert!(
            svg.contains(&format!("font-weight=\"bold\">{lane}</text>")),
            "{lane}"
        );
    }
    // 16 delivered messages with arrowheads (and one in the legend for each of the 4
    // kinds: Share, ShareAck, SubsetSum, SubsetSumAck), 3 drops with crosses.
    assert_eq!(svg.matches("marker-end=\"url(#arrow-").count() - 4, 16);
    assert_eq!(svg.matches("stroke-dasharray=\"3,2\"").count(), 3 + 1);
    assert!(svg.contains(">violation: correct-sum</text>"));
    assert!(svg.contains(">dropped</text>") && svg.contains(">Share</text>"));
    assert!(svg.contains(">20ms</text>"), "tick labels");
    assert!(!svg.contains("idle time left out"));
}

#[test]
fn plot_compresses_long_idle_gaps() {
    let events = benaloh3_timed();
    let compressed = render_svg(&events, &PlotOptions::default());
    check_svg(&compressed);
    // 0 s → 30 s, 30.01 s → 45 s, 45.01 s → 90 s.
    assert_eq!(compressed.matches("without events").count(), 3);
    assert!(compressed.contains(">+30s</text>"));
    assert!(compressed.contains("idle time left out"));
    assert!(compressed.contains(">timer</text>"));
    let linear = render_svg(
        &events,
        &PlotOptions {
            compress_gaps: false,
            ..PlotOptions::default()
        },
    );
    check_svg(&linear);
    assert!(!linear.contains("without events"));
}

#[test]
fn plot_handles_degenerate_traces() {
    check_svg(&render_svg(&[], &PlotOptions::default()));
    assert!(render_svg(&[], &PlotOptions::default()).contains("no events"));
    let one = [ev(0, 5, 0, EventKind::Start)];
    check_svg(&render_svg(&one, &PlotOptions::default()));
    // Everything at one instant, including a message with zero latency.
    let instant = [
        ev(0, 0, 0, EventKind::Start),
        ev(1, 0, 0, send(1, 1, "Hi")),
        ev(2, 0, 1, deliver(0, 1)),
        ev(3, 0, 1, send(1, 3, "Self")),
        ev(4, 0, 1, deliver(1, 3)),
    ];
    let svg = render_svg(&instant, &PlotOptions::default());
    check_svg(&svg);
    assert_eq!(
        svg.matches("stroke-opacity=\"0.85\"").count(),
        2,
        "two arrows"
    );
    let tiny = PlotOptions {
        width: 10,
        ..PlotOptions::default()
    };
    check_svg(&render_svg(&benaloh3(), &tiny));
    let svg = render_svg(&odd_trace(), &PlotOptions::default());
    check_svg(&svg);
    for legend in [
        "fault",
        "corrupted in flight",
        "in flight at the end",
        "timer",
    ] {
        assert!(svg.contains(&format!(">{legend}</text>")), "{legend}");
    }
    // Text is escaped.
    assert!(svg.contains("a;b#c &lt;d&gt; &quot;e&quot;"));
}

#[test]
fn exports_are_deterministic() {
    let events = benaloh3_loss();
    let options = PlotOptions::default();
    assert_eq!(chrome_trace(&events), chrome_trace(&events.clone()));
    assert_eq!(shiviz_log(&events), shiviz_log(&events.clone()));
    assert_eq!(dot_graph(&events), dot_graph(&events.clone()));
    assert_eq!(
        render_svg(&events, &options),
        render_svg(&events.clone(), &options)
    );
}
