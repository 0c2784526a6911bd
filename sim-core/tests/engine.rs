//! The simulator engine: event order, timers, the CPU-cost model, how runs end.

use rehearsal_sim_core::{
    Actor, Context, EndReason, EventKind, Invariant, NodeId, Outcome, RunEnd, SimConfig,
    SimpleNetwork, Simulation, Time, TimerId, Violation,
};
use std::time::Duration;

/// A scriptable actor: what it does on start, and a log of what it saw.
#[derive(Default)]
struct Probe {
    script: Vec<Step>,
    seen: Vec<(Time, String)>,
    cancel_me: Option<TimerId>,
}

#[derive(Clone)]
enum Step {
    Send(u32, u64),
    Timer(u64, &'static str),
    TimerThenCancel(u64, &'static str),
    Charge(u64),
    Output(u64),
}

impl Actor for Probe {
    type Msg = u64;
    type Timer = &'static str;
    type Output = u64;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        for step in self.script.clone() {
            match step {
                Step::Send(to, v) => cx.send(NodeId(to), v),
                Step::Timer(ms, name) => {
                    cx.set_timer(Duration::from_millis(ms), name);
                }
                Step::TimerThenCancel(ms, name) => {
                    self.cancel_me = Some(cx.set_timer(Duration::from_millis(ms), name))
                }
                Step::Charge(ms) => cx.charge(Duration::from_millis(ms)),
                Step::Output(v) => cx.output(v),
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: u64, cx: &mut Context<Self>) {
        self.seen.push((cx.now(), format!("msg {msg} from {from}")));
        if msg == 100 {
            // Cancel the pending timer on receipt of the "cancel" message.
            if let Some(id) = self.cancel_me.take() {
                cx.cancel_timer(id);
            }
        }
    }

    fn on_timer(&mut self, timer: &'static str, cx: &mut Context<Self>) {
        self.seen.push((cx.now(), format!("timer {timer}")));
    }

    fn waiting_for(&self) -> Option<String> {
        self.script
            .iter()
            .any(|s| matches!(s, Step::Output(0)))
            .then(|| "nothing, ever".to_string())
    }
}

fn probe(script: Vec<Step>) -> Probe {
    Probe {
        script,
        ..Probe::default()
    }
}

fn run(actors: Vec<Probe>, config: SimConfig) -> rehearsal_sim_core::RunReport<Probe> {
    Simulation::new(config, actors, SimpleNetwork::default()).run()
}

#[test]
fn events_at_one_time_run_in_the_order_they_were_scheduled() {
    let sender = probe(vec![Step::Send(1, 1), Step::Send(1, 2), Step::Send(1, 3)]);
    let report = run(vec![sender, probe(vec![])], SimConfig::new(1));
    let seen: Vec<&str> = report.actors[1]
        .seen
        .iter()
        .map(|(_, s)| s.as_str())
        .collect();
    assert_eq!(seen, ["msg 1 from n0", "msg 2 from n0", "msg 3 from n0"]);
    assert!(report.actors[1]
        .seen
        .iter()
        .all(|(t, _)| *t == Time::from_millis(10)));
}

#[test]
fn timers_fire_at_their_time_and_cancelled_ones_never_fire() {
    // n1 sets a 50 ms timer and a 5 ms one; n0's message at 10 ms cancels the 50 ms timer.
    let canceller = probe(vec![Step::Send(1, 100)]);
    let target = probe(vec![
        Step::TimerThenCancel(50, "late"),
        Step::Timer(5, "early"),
    ]);
    let report = run(vec![canceller, target], SimConfig::new(1));
    let seen = &report.actors[1].seen;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0], (Time::from_millis(5), "timer early".to_string()));
    assert_eq!(
        seen[1],
        (Time::from_millis(10), "msg 100 from n0".to_string())
    );
    assert_eq!(report.nodes[1].timers_fired, 1);
    assert_eq!(report.end, EndReason::Quiescent);
    assert_eq!(
        report.sim_time,
        Time::from_millis(10),
        "the cancelled timer left no event behind"
    );
}

#[test]
fn charged_cpu_delays_sends_and_queues_later_events() {
    // n0 charges 30 ms then sends: the message leaves at 30 ms and arrives at 40 ms.
    // n1 charges 100 ms at start, so that message waits until n1 is free at 100 ms.
    let sender = probe(vec![Step::Charge(30), Step::Send(1, 7)]);
    let busy = probe(vec![Step::Charge(100)]);
    let report = run(vec![sender, busy], SimConfig::new(1));
    assert_eq!(
        report.actors[1].seen,
        vec![(Time::from_millis(100), "msg 7 from n0".to_string())]
    );
}

#[test]
fn a_deadline_ends_the_run_with_later_events_unrun() {
    let actors = vec![probe(vec![Step::Timer(10, "a"), Step::Timer(1_000, "b")])];
    let config = SimConfig {
        deadline: Some(Time::from_millis(500)),
        ..SimConfig::new(1)
    };
    let report = run(actors, config);
    assert_eq!(report.end, EndReason::Deadline);
    assert_eq!(report.sim_time, Time::from_millis(500));
    assert_eq!(report.actors[0].seen.len(), 1);
    assert_eq!(report.outcome, Outcome::Ok);
}

#[test]
fn the_event_bound_stops_a_run_that_would_never_end() {
    /// Bounces a message forever.
    struct Forever;
    impl Actor for Forever {
        type Msg = ();
        type Timer = ();
        type Output = ();
        fn on_start(&mut self, cx: &mut Context<Self>) {
            if cx.me() == NodeId(0) {
                cx.send(NodeId(1), ());
            }
        }
        fn on_message(&mut self, from: NodeId, _: (), cx: &mut Context<Self>) {
            cx.send(from, ());
        }
        fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
    }
    let config = SimConfig {
        events_max: 1_000,
        ..SimConfig::new(1)
    };
    let report = Simulation::new(config, vec![Forever, Forever], SimpleNetwork::default()).run();
    assert_eq!(report.end, EndReason::EventLimit);
    // Two starts and the first send make 3 events, then each bounce adds a delivery and a
    // send: counts run 3, 5, 7, ... The handler that reaches the bound finishes; no other
    // handler starts after it.
    assert_eq!(report.events, 1_001);
    let config = SimConfig {
        events_max: 999,
        ..SimConfig::new(1)
    };
    let report = Simulation::new(config, vec![Forever, Forever], SimpleNetwork::default()).run();
    assert_eq!(report.events, 999);
}

/// Outputs must be even; at the end, node 0 must have output something.
struct EvenOutputs;
impl Invariant<Probe> for EvenOutputs {
    fn name(&self) -> &str {
        "even"
    }
    fn on_output(&mut self, node: NodeId, _: Time, v: &u64) -> Result<(), String> {
        if v % 2 == 0 {
            Ok(())
        } else {
            Err(format!("{node} output odd {v}"))
        }
    }
    fn at_end(&mut self, end: &RunEnd<'_, Probe>) -> Result<(), String> {
        if end.actors[0]
            .script
            .iter()
            .any(|s| matches!(s, Step::Output(_)))
        {
            Ok(())
        } else {
            Err("n0 output nothing".into())
        }
    }
}

#[test]
fn a_safety_violation_stops_the_run_at_once_and_is_traced() {
    let actors = vec![probe(vec![
        Step::Output(2),
        Step::Output(3),
        Step::Timer(5, "after"),
    ])];
    let config = SimConfig {
        keep_trace: true,
        ..SimConfig::new(1)
    };
    let mut sim = Simulation::new(config, actors, SimpleNetwork::default());
    sim.add_invariant(EvenOutputs);
    let report = sim.run();
    assert_eq!(report.outcome, Outcome::Violation);
    assert_eq!(report.end, EndReason::Violation);
    // The violation is data: which check, which node, when, and what.
    let [v] = &report.violations[..] else {
        panic!("one violation expected: {:?}", report.violations)
    };
    assert_eq!(
        (v.invariant.as_str(), v.node, v.detail.as_str()),
        ("even", NodeId(0), "n0 output odd 3")
    );
    assert_eq!(v.time, report.sim_time);
    assert_eq!(v.to_string(), "even: n0 output odd 3");
    assert!(
        report.actors[0].seen.is_empty(),
        "the timer after the violation must not run"
    );
    let last = report.trace.last().unwrap();
    assert!(matches!(&last.kind, EventKind::Violation { invariant, .. } if invariant == "even"));
}

#[test]
fn quiet_with_work_outstanding_is_a_stall_that_says_what_nodes_wait_for() {
    // Output(0) makes the probe report that it waits; the end check on n0 fails too.
    let actors = vec![probe(vec![]), probe(vec![Step::Output(0)])];
    let mut sim = Simulation::new(SimConfig::new(1), actors, SimpleNetwork::default());
    sim.add_invariant(EvenOutputs);
    let report = sim.run();
    assert_eq!(report.outcome, Outcome::Stalled);
    let stalls: Vec<_> = report.stalls().collect();
    assert_eq!(
        stalls,
        [&Violation::stall(
            NodeId(1),
            report.sim_time,
            "nothing, ever"
        )]
    );
    assert_eq!(stalls[0].to_string(), "stall: n1 waits for nothing, ever");
    let lines: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    assert_eq!(
        lines,
        [
            "even: n0 output nothing",
            "stall: n1 waits for nothing, ever"
        ]
    );
}

#[test]
fn messages_to_unknown_nodes_are_dropped_not_panicked_on() {
    let actors = vec![probe(vec![Step::Send(9, 1)])];
    let config = SimConfig {
        keep_trace: true,
        ..SimConfig::new(1)
    };
    let report = run(actors, config);
    assert_eq!(report.messages_dropped, 1);
    assert!(report
        .trace
        .iter()
        .any(|e| matches!(&e.kind, EventKind::Drop { reason, .. } if reason == "no such node")));
}

#[test]
fn per_node_statistics_count_messages_bytes_and_outputs() {
    let actors = vec![
        probe(vec![Step::Send(1, 5), Step::Send(1, 300), Step::Output(4)]),
        probe(vec![]),
    ];
    let report = run(actors, SimConfig::new(1));
    let (n0, n1) = (&report.nodes[0], &report.nodes[1]);
    assert_eq!((n0.messages_sent, n1.messages_received), (2, 2));
    // bincode varint: 5 takes one byte, 300 takes three.
    assert_eq!((n0.bytes_sent, n1.bytes_received), (4, 4));
    assert_eq!(n0.outputs, 1);
    assert_eq!(report.messages_delivered, 2);
}

/// Node 1 works 10 ms on the message "busy" (arrives at 1 ms). Message "a" (sent first, due
/// at 6 ms) waits for it; "b" (sent at 2 ms, due at 11 ms, exactly when node 1 is free)
/// must not overtake "a": waiting for a busy node keeps an event's place in line.
#[test]
fn waiting_for_a_busy_node_does_not_let_later_events_overtake() {
    use rehearsal_sim_core::{Fate, NetworkModel, Packet, SimRng};

    struct ByContent;
    impl NetworkModel for ByContent {
        fn route(&mut self, p: &Packet, _: &mut SimRng) -> Fate {
            // Delays chosen per sender and time: busy 1 ms, a 6 ms, b 9 ms.
            let delay_ms = match (p.from.0, p.sent_at.as_nanos()) {
                (2, _) => 1,
                (0, 0) => 6,
                _ => 9,
            };
            Fate::Deliver {
                delay_ns: delay_ms * 1_000_000,
            }
        }
    }

    struct Node {
        seen: Vec<(u64, u64)>,
    }
    impl Actor for Node {
        type Msg = u64;
        type Timer = ();
        type Output = ();
        fn on_start(&mut self, cx: &mut Context<Self>) {
            match cx.me().0 {
                0 => {
                    cx.send(NodeId(1), 1); // "a"
                    cx.set_timer(Duration::from_millis(2), ());
                }
                2 => cx.send(NodeId(1), 0), // "busy"
                _ => {}
            }
        }
        fn on_message(&mut self, _: NodeId, m: u64, cx: &mut Context<Self>) {
            self.seen.push((cx.now().as_nanos() / 1_000_000, m));
            if m == 0 {
                cx.charge(Duration::from_millis(10));
            }
        }
        fn on_timer(&mut self, _: (), cx: &mut Context<Self>) {
            cx.send(NodeId(1), 2); // "b"
        }
    }

    let nodes = (0..3).map(|_| Node { seen: Vec::new() }).collect();
    let report = Simulation::new(SimConfig::new(1), nodes, ByContent).run();
    assert_eq!(report.actors[1].seen, vec![(1, 0), (11, 1), (11, 2)]);
}

/// Sends distinct messages to nodes 1 and 2 and back to itself: as broadcasts, or as the
/// same sends one by one.
struct Broadcaster {
    broadcast: bool,
    got: Vec<(NodeId, u64)>,
}

impl Actor for Broadcaster {
    type Msg = u64;
    type Timer = ();
    type Output = u64;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        if cx.me() != NodeId(0) {
            return;
        }
        let to = [NodeId(1), NodeId(2), NodeId(0)];
        for msg in [7u64, 300, 1 << 40] {
            if self.broadcast {
                cx.broadcast(to, msg);
            } else {
                for node in to {
                    cx.send(node, msg);
                }
            }
            cx.send(NodeId(1), msg + 1); // a different message between broadcasts
        }
    }

    fn on_message(&mut self, from: NodeId, msg: u64, _: &mut Context<Self>) {
        self.got.push((from, msg));
    }

    fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
}

/// A broadcast is encoded once for all its recipients: the run, its trace and its digest
/// are those of the same messages sent one by one.
#[test]
fn a_broadcast_is_the_same_run_as_its_sends_one_by_one() {
    let run = |broadcast| {
        let actors = (0..3)
            .map(|_| Broadcaster {
                broadcast,
                got: Vec::new(),
            })
            .collect();
        let config = SimConfig {
            keep_trace: true,
            ..SimConfig::new(5)
        };
        Simulation::new(config, actors, SimpleNetwork::default()).run()
    };
    let (broadcast, one_by_one) = (run(true), run(false));
    assert_eq!(broadcast.digest, one_by_one.digest);
    let got = |r: &rehearsal_sim_core::RunReport<Broadcaster>| -> Vec<Vec<(NodeId, u64)>> {
        r.actors.iter().map(|a| a.got.clone()).collect()
    };
    assert_eq!(got(&broadcast), got(&one_by_one));
    assert_eq!(
        got(&broadcast)[1].iter().filter(|(_, m)| *m == 301).count(),
        1,
        "{:?}",
        got(&broadcast)
    );
    let sent = |r: &rehearsal_sim_core::RunReport<Broadcaster>| {
        r.trace
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Send { to, bytes, msg, .. } => Some((*to, *bytes, msg.clone())),
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(sent(&broadcast), sent(&one_by_one));
    assert_eq!(sent(&broadcast).len(), 12);
}

/// Node 0 sends its two messages to node 1 on start; node 1 notes what arrives, in order.
struct Sender {
    messages: Vec<Vec<u8>>,
    got: Vec<Vec<u8>>,
}

impl Actor for Sender {
    type Msg = Vec<u8>;
    type Timer = ();
    type Output = u64;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        for message in std::mem::take(&mut self.messages) {
            cx.send(NodeId(1), message);
        }
    }
    fn on_message(&mut self, _from: NodeId, msg: Vec<u8>, _cx: &mut Context<Self>) {
        self.got.push(msg);
    }
    fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
}

/// Delivers the message with the first id after `first_ns` and every other after
/// `others_ns`, so that swapping the two swaps the order of delivery.
struct TwoDelays {
    first_id: Option<u64>,
    first_ns: u64,
    others_ns: u64,
}

impl rehearsal_sim_core::NetworkModel for TwoDelays {
    fn route(
        &mut self,
        _: &rehearsal_sim_core::Packet,
        _: &mut rehearsal_sim_core::SimRng,
    ) -> rehearsal_sim_core::Fate {
        unreachable!("the simulator routes by message id")
    }
    fn route_message(
        &mut self,
        id: u64,
        _: &rehearsal_sim_core::Packet,
        _: &mut rehearsal_sim_core::SimRng,
    ) -> rehearsal_sim_core::Fate {
        let first = *self.first_id.get_or_insert(id) == id;
        rehearsal_sim_core::Fate::Deliver {
            delay_ns: if first { self.first_ns } else { self.others_ns },
        }
    }
}

fn two_messages(
    second: &[u8],
    first_ns: u64,
    others_ns: u64,
) -> rehearsal_sim_core::RunReport<Sender> {
    let actors = vec![
        Sender {
            messages: vec![b"hello".to_vec(), second.to_vec()],
            got: Vec::new(),
        },
        Sender {
            messages: Vec::new(),
            got: Vec::new(),
        },
    ];
    let network = TwoDelays {
        first_id: None,
        first_ns,
        others_ns,
    };
    Simulation::new(SimConfig::new(1), actors, network).run()
}

/// The digest names the run: one byte more or less in one message, or the same messages
/// delivered in the other order, is another digest, though every count is the same.
#[test]
fn one_changed_byte_or_a_swapped_delivery_order_changes_the_digest() {
    let base = two_messages(b"world", 10_000_000, 20_000_000);
    assert_eq!(
        base.digest,
        two_messages(b"world", 10_000_000, 20_000_000).digest
    );
    assert_eq!(base.actors[1].got, [b"hello".to_vec(), b"world".to_vec()]);

    let changed = two_messages(b"worle", 10_000_000, 20_000_000);
    let swapped = two_messages(b"world", 20_000_000, 10_000_000);
    assert_eq!(
        swapped.actors[1].got,
        [b"world".to_vec(), b"hello".to_vec()]
    );
    for other in [&changed, &swapped] {
        assert_eq!(
            (other.events, other.messages_delivered, other.sim_time),
            (base.events, base.messages_delivered, base.sim_time)
        );
        assert_eq!(other.nodes[0].bytes_sent, base.nodes[0].bytes_sent);
    }
    assert_ne!(changed.digest, base.digest, "a changed byte");
    assert_ne!(swapped.digest, base.digest, "a swapped delivery order");
    assert_ne!(changed.digest, swapped.digest);
}

/// The digest format is part of the trace format: a run's digest changes only with
/// `DIGEST_FORMAT_VERSION` (and the trace format version with it), never by accident.
#[test]
fn the_digest_of_a_fixed_run_is_pinned_to_its_format_version() {
    assert_eq!(rehearsal_sim_core::DIGEST_FORMAT_VERSION, 3);
    assert_eq!(
        two_messages(b"world", 10_000_000, 20_000_000).digest.0,
        "faedab815c36138dd905f8001a5c4719ff0f5e65ce2f3e73002277746514890f",
        "the digest format changed: bump DIGEST_FORMAT_VERSION (sim-core/src/trace.rs) and \
         the trace FORMAT_VERSION (traces/src/file.rs), then pin the new digest here"
    );
}
