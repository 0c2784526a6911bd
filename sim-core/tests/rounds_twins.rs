//! Rounds, twins, armed message mutations and coverage: round events in traces, round
//! triggers (first and all correct nodes), twins sharing one identity over separate
//! endpoints, round-based message mutation, coverage collection, and determinism of all
//! of them together.

use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{
    Actor, Admit, Context, Coverage, EndReason, EventKind, Fate, Fault, Invariant, NetChange,
    NetworkModel, NodeId, Packet, RoundWhen, RunReport, SimConfig, SimRng, SimpleNetwork,
    Simulation, Time,
};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
enum Kind {
    Ping,
    Pong,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Msg {
    kind: Kind,
    value: u64,
}

/// What a toy node does at one instant of its script.
#[derive(Debug, Clone)]
enum Step {
    Round(u64),
    /// A ping with this value to this node.
    Send(u32, u64),
    Output(u64),
}

/// A scripted node: at each `(ms, steps)` of its script (0: on start) it enters rounds,
/// sends pings and outputs values; it logs what it receives and who it is told it is, and
/// answers pings with pongs when `reply`. `TWINS` says whether its protocol offers the
/// `twin` behaviour.
struct Toy<const TWINS: bool = true> {
    script: Vec<(u64, Vec<Step>)>,
    reply: bool,
    round: u64,
    /// `cx.me()` in every handler.
    me_seen: Vec<NodeId>,
    /// (from, value, when) of every message.
    received: Vec<(NodeId, u64, Time)>,
    behavior: Option<String>,
}

impl<const TWINS: bool> Toy<TWINS> {
    fn new(script: Vec<(u64, Vec<Step>)>) -> Self {
        Toy {
            script,
            reply: false,
            round: 0,
            me_seen: Vec::new(),
            received: Vec::new(),
            behavior: None,
        }
    }

    fn run_steps(&mut self, steps: Vec<Step>, cx: &mut Context<Self>) {
        for step in steps {
            match step {
                Step::Round(r) => {
                    self.round = r;
                    cx.enter_round(r);
                }
                Step::Send(to, value) => cx.send(
                    NodeId(to),
                    Msg {
                        kind: Kind::Ping,
                        value,
                    },
                ),
                Step::Output(v) => cx.output(v),
            }
        }
    }

    /// Values received from `from`, in order.
    fn values_from(&self, from: u32) -> Vec<u64> {
        self.received
            .iter()
            .filter(|(f, _, _)| *f == NodeId(from))
            .map(|(_, v, _)| *v)
            .collect()
    }
}

impl<const TWINS: bool> Actor for Toy<TWINS> {
    type Msg = Msg;
    type Timer = usize;
    type Output = u64;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        self.me_seen.push(cx.me());
        for i in 0..self.script.len() {
            let (ms, steps) = self.script[i].clone();
            if ms == 0 {
                self.run_steps(steps, cx);
            } else {
                cx.set_timer(Duration::from_millis(ms), i);
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<Self>) {
        self.me_seen.push(cx.me());
        self.received.push((from, msg.value, cx.now()));
        if self.reply && msg.kind == Kind::Ping {
            cx.send(
                from,
                Msg {
                    kind: Kind::Pong,
                    value: msg.value,
                },
            );
        }
    }

    fn on_timer(&mut self, step: usize, cx: &mut Context<Self>) {
        self.me_seen.push(cx.me());
        let steps = self.script[step].1.clone();
        self.run_steps(steps, cx);
    }

    fn byzantine_behaviors() -> &'static [&'static str] {
        if TWINS {
            &["twin", "silent", "fuzzed"]
        } else {
            &["silent", "fuzzed"]
        }
    }

    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        if behavior != "correct" && !Self::byzantine_behaviors().contains(&behavior) {
            return Err(format!("no behaviour `{behavior}`"));
        }
        self.behavior = Some(behavior.to_string());
        Ok(())
    }

    /// Adds 1000 to a message's value; a zero value has nothing to change.
    fn mutate_message(&self, msg: &mut Msg, _rng: &mut SimRng) -> Option<String> {
        if msg.value == 0 {
            return None;
        }
        let before = msg.value;
        msg.value += 1000;
        Some(format!("value {before} -> {}", msg.value))
    }

    fn message_kind(msg: &Msg) -> &'static str {
        match msg.kind {
            Kind::Ping => "ping",
            Kind::Pong => "pong",
        }
    }

    fn abstract_state(&self) -> u64 {
        self.round * 7
    }
}

fn toy(script: Vec<(u64, Vec<Step>)>) -> Toy {
    Toy::new(script)
}

/// Every link delivers in 1 ms.
fn net() -> SimpleNetwork {
    SimpleNetwork {
        latency: "constant:1ms".parse().unwrap(),
        loss: 0.0,
    }
}

fn traced(seed: u64) -> SimConfig {
    SimConfig {
        keep_trace: true,
        ..SimConfig::new(seed)
    }
}

/// A network of groups: a message is dropped at delivery when a partition puts its ends
/// in different groups. Each message takes 1 to 4 ms, drawn from the sender's stream.
#[derive(Default)]
struct Groups {
    groups: Option<Vec<Vec<NodeId>>>,
}

impl NetworkModel for Groups {
    fn route(&mut self, _p: &Packet, rng: &mut SimRng) -> Fate {
        Fate::Deliver {
            delay_ns: rng.random_range(1..=4u64) * 1_000_000,
        }
    }
    fn admit(&mut self, from: NodeId, to: NodeId, _now: Time) -> Admit {
        match &self.groups {
            Some(groups) if !groups.iter().any(|g| g.contains(&from) && g.contains(&to)) => {
                Admit::Drop {
                    reason: "partitioned",
                }
            }
            _ => Admit::Deliver,
        }
    }
    fn apply(&mut self, change: &NetChange, _now: Time) -> Result<(), String> {
        match change {
            NetChange::Partition { groups } => self.groups = Some(groups.clone()),
            NetChange::Heal => self.groups = None,
            other => return Err(format!("groups do not support `{other}`")),
        }
        Ok(())
    }
}

/// Records when invariants hear of faults, and which node each output came from.
#[derive(Clone, Default)]
struct Watch {
    faults: Rc<RefCell<Vec<Time>>>,
    outputs: Rc<RefCell<Vec<(NodeId, u64)>>>,
}

impl<const TWINS: bool> Invariant<Toy<TWINS>> for Watch {
    fn name(&self) -> &str {
        "watch"
    }
    fn on_output(&mut self, node: NodeId, _now: Time, output: &u64) -> Result<(), String> {
        self.outputs.borrow_mut().push((node, *output));
        Ok(())
    }
    fn on_fault(&mut self, now: Time) {
        self.faults.borrow_mut().push(now);
    }
}

fn ms(t: u64) -> Time {
    Time::from_millis(t)
}

/// The fault events of a trace: (label, time in ms, index in the trace).
fn fault_events<A: Actor>(report: &RunReport<A>) -> Vec<(String, u64, usize)> {
    report
        .trace
        .iter()
        .enumerate()
        .filter_map(|(i, e)| match &e.kind {
            EventKind::Fault { fault } => Some((fault.clone(), e.t / 1_000_000, i)),
            _ => None,
        })
        .collect()
}

/// The fault labels of a trace with their times in ms.
fn fault_times<A: Actor>(report: &RunReport<A>) -> Vec<(String, u64)> {
    fault_events(report)
        .into_iter()
        .map(|(label, t, _)| (label, t))
        .collect()
}

/// The round events of a trace: (node, time in ms, round).
fn round_events<A: Actor>(report: &RunReport<A>) -> Vec<(u32, u64, u64)> {
    report
        .trace
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Round { round } => Some((e.node.0, e.t / 1_000_000, round)),
            _ => None,
        })
        .collect()
}

fn note(label: &str) -> Fault {
    Fault::Annotate(label.into())
}

// ---- Rounds ------------------------------------------------------------------------------

#[test]
fn round_events_are_kept_only_when_the_round_changes_and_leave_the_digest_as_it_was() {
    let actors = || {
        vec![
            toy(vec![
                (0, vec![Step::Round(1)]),
                (10, vec![Step::Round(1)]),
                (20, vec![Step::Round(2), Step::Round(2)]),
                (30, vec![Step::Round(1)]),
            ]),
            toy(vec![(0, vec![Step::Round(1)]), (10, vec![Step::Round(1)])]),
        ]
    };
    let kept = Simulation::new(traced(3), actors(), net()).run();
    assert_eq!(
        round_events(&kept),
        vec![(0, 0, 1), (1, 0, 1), (0, 20, 2), (0, 30, 1)],
        "a round repeated is no event; a round left and entered again is"
    );
    assert_eq!(kept.events, kept.trace.len() as u64);

    let unkept = Simulation::new(SimConfig::new(3), actors(), net()).run();
    assert!(unkept.trace.is_empty());
    assert_eq!(unkept.digest, kept.digest);
    assert_eq!(unkept.events, kept.events);

    // Round events are part of the run's identity: entering another round changes it.
    let mut other = actors();
    other[1].script[1].1 = vec![Step::Round(4)];
    let changed = Simulation::new(SimConfig::new(3), other, net()).run();
    assert_eq!(changed.events, kept.events + 1);
    assert_ne!(changed.digest, kept.digest);
}

/// Three nodes start in round 1; node 0 enters round 2 at 10 ms (and sends), node 1
/// jumps to round 3 at 20 ms, node 2 enters round 2 at 30 ms.
fn staggered() -> Vec<Toy> {
    vec![
        toy(vec![
            (0, vec![Step::Round(1)]),
            (10, vec![Step::Round(2), Step::Send(1, 5)]),
        ]),
        toy(vec![(0, vec![Step::Round(1)]), (20, vec![Step::Round(3)])]),
        toy(vec![(0, vec![Step::Round(1)]), (30, vec![Step::Round(2)])]),
    ]
}

#[test]
fn first_and_all_triggers_fire_right_after_the_handler_that_reaches_the_round() {
    let mut sim = Simulation::new(traced(1), staggered(), net());
    sim.schedule_round_fault(2, RoundWhen::All, note("all-2"))
        .unwrap();
    sim.schedule_round_fault(2, RoundWhen::First, note("first-2"))
        .unwrap();
    sim.schedule_round_fault(3, RoundWhen::First, note("first-3"))
        .unwrap();
    sim.schedule_round_fault(3, RoundWhen::All, note("all-3"))
        .unwrap();
    let report = sim.run();
    let faults = fault_events(&report);
    assert_eq!(
        fault_times(&report),
        vec![
            ("annotate first-2".to_string(), 10),
            ("annotate first-3".to_string(), 20),
            ("annotate all-2".to_string(), 30),
        ],
        "round 3 is never reached by node 2: `all-3` never fires"
    );
    // Right after the whole handler: node 0's send at 10 ms comes before the command.
    let before = &report.trace[faults[0].2 - 1];
    assert_eq!(before.node, NodeId(0));
    assert!(
        matches!(before.kind, EventKind::Send { .. }),
        "{:?}",
        before.kind
    );
    assert!(matches!(
        report.trace[faults[0].2 - 2].kind,
        EventKind::Round { round: 2 }
    ));
    // Node 1's jump to round 3 counts as reaching round 2 "or later" for `all`.
    let before_all = &report.trace[faults[2].2 - 1];
    assert_eq!(
        (before_all.node, &before_all.kind),
        (NodeId(2), &EventKind::Round { round: 2 })
    );
}

#[test]
fn a_trigger_that_never_comes_due_never_fires() {
    let watch = Watch::default();
    let mut sim = Simulation::new(traced(1), staggered(), net());
    sim.add_invariant(watch.clone());
    sim.schedule_round_fault(4, RoundWhen::First, Fault::Crash(NodeId(1)))
        .unwrap();
    sim.schedule_round_fault(3, RoundWhen::All, Fault::Crash(NodeId(1)))
        .unwrap();
    let report = sim.run();
    assert_eq!(report.end, EndReason::Quiescent);
    assert!(fault_events(&report).is_empty());
    assert!(watch.faults.borrow().is_empty());
    // Node 1 was never crashed: it received node 0's message at 11 ms.
    assert_eq!(report.actors[1].values_from(0), vec![5]);
}

/// Node `i` enters round 2 at `at[i]` ms (never when `None`), all start in round 1.
fn entering_round_2(at: &[Option<u64>]) -> Vec<Toy> {
    at.iter()
        .map(|t| {
            let mut script = vec![(0, vec![Step::Round(1)])];
            if let Some(t) = t {
                script.push((*t, vec![Step::Round(2)]));
            }
            toy(script)
        })
        .collect()
}

fn triggers_of(mut sim: Simulation<Toy>) -> Vec<(String, u64)> {
    sim.schedule_round_fault(2, RoundWhen::First, note("first"))
        .unwrap();
    sim.schedule_round_fault(2, RoundWhen::All, note("all"))
        .unwrap();
    fault_times(&sim.run())
}

fn fired(list: &[(&str, u64)]) -> Vec<(String, u64)> {
    list.iter()
        .map(|(l, t)| (format!("annotate {l}"), *t))
        .collect()
}

#[test]
fn byzantine_nodes_do_not_count_as_correct_for_round_triggers() {
    // Control: all correct. Node 2 never gets to round 2, so `all` never fires.
    let sim = Simulation::new(
        traced(1),
        entering_round_2(&[Some(5), Some(10), None]),
        net(),
    );
    assert_eq!(triggers_of(sim), fired(&[("first", 5)]));

    // Node 0, Byzantine from the start, gets there first: `first` waits for node 1.
    let mut sim = Simulation::new(
        traced(1),
        entering_round_2(&[Some(5), Some(10), Some(20)]),
        net(),
    );
    sim.byzantine_from_start(NodeId(0), "silent").unwrap();
    assert_eq!(triggers_of(sim), fired(&[("first", 10), ("all", 20)]));

    // Node 2, the laggard, is Byzantine from the start: `all` does not wait for it.
    let mut sim = Simulation::new(
        traced(1),
        entering_round_2(&[Some(5), Some(10), None]),
        net(),
    );
    sim.byzantine_from_start(NodeId(2), "silent").unwrap();
    assert_eq!(triggers_of(sim), fired(&[("first", 5), ("all", 10)]));

    // Switched by a scheduled fault at 7 ms: the same.
    let mut sim = Simulation::new(
        traced(1),
        entering_round_2(&[Some(5), Some(10), None]),
        net(),
    );
    let switch = Fault::Byzantine {
        node: NodeId(2),
        behavior: "silent".into(),
    };
    sim.schedule_fault(ms(7), switch).unwrap();
    let fired_at = triggers_of(sim);
    assert_eq!(
        fired_at,
        vec![
            ("annotate first".to_string(), 5),
            ("byzantine 2 silent".to_string(), 7),
            ("annotate all".to_string(), 10)
        ]
    );

    // A node whose messages a mutation changes is faulty from when it is armed.
    let mut sim = Simulation::new(
        traced(1),
        entering_round_2(&[Some(5), Some(10), None]),
        net(),
    );
    let mutate = Fault::Mutate {
        node: NodeId(2),
        round: 9,
        to: vec![NodeId(0)],
    };
    sim.schedule_fault(Time::ZERO, mutate).unwrap();
    assert_eq!(
        triggers_of(sim),
        vec![
            ("mutate 2 round 9 -> 0".to_string(), 0),
            ("annotate first".to_string(), 5),
            ("annotate all".to_string(), 10)
        ]
    );
}

#[test]
fn twins_do_not_count_as_correct_for_round_triggers() {
    // Node 0 and its twin (endpoint 3) reach round 2 first; node 1 at 10 ms, node 2 never.
    let mut sim = Simulation::new(
        traced(1),
        entering_round_2(&[Some(6), Some(10), Some(20)]),
        net(),
    );
    let twin = toy(vec![(0, vec![Step::Round(1)]), (5, vec![Step::Round(2)])]);
    assert_eq!(sim.add_twin(NodeId(0), twin), Ok(NodeId(3)));
    assert_eq!(triggers_of(sim), fired(&[("first", 10), ("all", 20)]));

    // The twins lag: `all` does not wait for them.
    let mut sim = Simulation::new(
        traced(1),
        entering_round_2(&[None, Some(10), Some(20)]),
        net(),
    );
    sim.add_twin(NodeId(0), toy(vec![(0, vec![Step::Round(1)])]))
        .unwrap();
    assert_eq!(triggers_of(sim), fired(&[("first", 10), ("all", 20)]));
}

// ---- Twins -------------------------------------------------------------------------------

/// Three nodes and a twin of node 0 (endpoint 3): node 1 pings node 0 at 5 ms; node 0 and
/// its twin each ping node 1 at 5 ms (9 and 8); the twin outputs 42.
fn twinned(network: impl NetworkModel + 'static) -> Simulation<Toy> {
    let actors = vec![
        toy(vec![(5, vec![Step::Send(1, 9)])]),
        toy(vec![(5, vec![Step::Send(0, 7)])]),
        toy(vec![]),
    ];
    let mut sim = Simulation::new(traced(4), actors, network);
    let twin = toy(vec![(5, vec![Step::Send(1, 8), Step::Output(42)])]);
    assert_eq!(sim.add_twin(NodeId(0), twin), Ok(NodeId(3)));
    sim
}

#[test]
fn a_message_to_a_twinned_node_reaches_both_instances_which_share_its_identity() {
    let watch = Watch::default();
    let mut sim = twinned(net());
    sim.add_invariant(watch.clone());
    let report = sim.run();
    assert_eq!(report.actors.len(), 4);
    let (node0, twin) = (&report.actors[0], &report.actors[3]);
    assert_eq!(node0.received, vec![(NodeId(1), 7, ms(6))]);
    assert_eq!(twin.received, vec![(NodeId(1), 7, ms(6))]);
    // Node 1 hears from both instances as node 0.
    let mut from_0 = report.actors[1].values_from(0);
    from_0.sort_unstable();
    assert_eq!(from_0, vec![8, 9]);
    assert_eq!(report.actors[1].received.len(), 2);
    // Both are told they are node 0, and both run the `twin` behaviour.
    assert!(twin.me_seen.iter().all(|&me| me == NodeId(0)));
    assert_eq!(twin.me_seen.len(), 3, "start, timer, message");
    assert_eq!(node0.behavior.as_deref(), Some("twin"));
    assert_eq!(twin.behavior.as_deref(), Some("twin"));
    assert_eq!(report.actors[1].behavior, None);
    // The send to node 0 went to each endpoint as a send of its own.
    let sends: Vec<(NodeId, NodeId)> = report
        .trace
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Send { to, .. } if e.node == NodeId(1) => Some((e.node, to)),
            _ => None,
        })
        .collect();
    assert_eq!(sends, vec![(NodeId(1), NodeId(0)), (NodeId(1), NodeId(3))]);
    assert_eq!(report.nodes[1].messages_sent, 2);
    assert_eq!(report.messages_delivered, 4);
    // The twin's output reaches invariants as node 0's.
    assert_eq!(*watch.outputs.borrow(), vec![(NodeId(0), 42)]);
}

#[test]
fn a_partition_may_separate_a_node_from_its_twin() {
    // The twin is cut off from everyone: only node 0 gets node 1's ping, and the twin's
    // ping to node 1 is lost.
    let mut sim = twinned(Groups::default());
    let apart = vec![vec![NodeId(0), NodeId(1), NodeId(2)], vec![NodeId(3)]];
    sim.schedule_fault(
        ms(1),
        Fault::Network(NetChange::Partition { groups: apart }),
    )
    .unwrap();
    let report = sim.run();
    assert_eq!(report.actors[0].values_from(1), vec![7]);
    assert!(report.actors[3].received.is_empty());
    assert_eq!(report.actors[1].values_from(0), vec![9]);
    let mut dropped: Vec<(NodeId, NodeId)> = report
        .trace
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Drop { to, reason, .. } if reason == "partitioned" => Some((e.node, *to)),
            _ => None,
        })
        .collect();
    dropped.sort_unstable();
    assert_eq!(
        dropped,
        vec![(NodeId(1), NodeId(3)), (NodeId(3), NodeId(1))]
    );

    // The other way round: node 1 is with the twin, node 0 with node 2.
    let mut sim = twinned(Groups::default());
    let apart = vec![vec![NodeId(1), NodeId(3)], vec![NodeId(0), NodeId(2)]];
    sim.schedule_fault(
        ms(1),
        Fault::Network(NetChange::Partition { groups: apart }),
    )
    .unwrap();
    let report = sim.run();
    assert!(report.actors[0].received.is_empty());
    assert_eq!(report.actors[3].values_from(1), vec![7]);
    assert_eq!(report.actors[1].values_from(0), vec![8]);
}

#[test]
fn add_twin_refuses_protocols_without_twins_late_calls_and_unknown_nodes() {
    let plain: Vec<Toy<false>> = vec![Toy::new(vec![]), Toy::new(vec![])];
    let mut sim = Simulation::new(SimConfig::new(1), plain, net());
    let err = sim.add_twin(NodeId(0), Toy::new(vec![])).unwrap_err();
    assert!(err.contains("no `twin` behaviour"), "{err}");

    let mut sim = Simulation::new(SimConfig::new(1), vec![toy(vec![]), toy(vec![])], net());
    let err = sim.add_twin(NodeId(2), toy(vec![])).unwrap_err();
    assert!(err.contains("nodes 0..2"), "{err}");
    assert_eq!(sim.add_twin(NodeId(1), toy(vec![])), Ok(NodeId(2)));
    // A twin's endpoint is not a node that can have a twin; the next twin comes after it.
    let err = sim.add_twin(NodeId(2), toy(vec![])).unwrap_err();
    assert!(err.contains("nodes 0..2"), "{err}");
    assert_eq!(sim.add_twin(NodeId(0), toy(vec![])), Ok(NodeId(3)));
    // Faults may name the twins' endpoints.
    sim.schedule_fault(ms(1), Fault::Crash(NodeId(3))).unwrap();
    let err = sim.add_twin(NodeId(0), toy(vec![])).unwrap_err();
    assert!(err.contains("before any fault is scheduled"), "{err}");

    let mut sim = Simulation::new(SimConfig::new(1), vec![toy(vec![]), toy(vec![])], net());
    sim.schedule_round_fault(1, RoundWhen::All, note("x"))
        .unwrap();
    let err = sim.add_twin(NodeId(0), toy(vec![])).unwrap_err();
    assert!(err.contains("before any fault is scheduled"), "{err}");
    assert_eq!(sim.actors().len(), 2, "a refused twin is not added");
}

// ---- Mutations ---------------------------------------------------------------------------

/// Node 0 in round 1 pings node 1 (1, then 0) and node 2 (2) at 10 ms and node 1 (11) at
/// 17 ms; in round 2 (from 20 ms) it pings node 1 (3) and node 2 (4). Node 1, in round 1,
/// pings node 2 (5) and node 0 (6) at 10 ms.
fn mutation_run(armed_at: Time) -> (RunReport<Toy>, Vec<Time>) {
    let actors = vec![
        toy(vec![
            (0, vec![Step::Round(1)]),
            (
                10,
                vec![Step::Send(1, 1), Step::Send(1, 0), Step::Send(2, 2)],
            ),
            (17, vec![Step::Send(1, 11)]),
            (20, vec![Step::Round(2), Step::Send(1, 3), Step::Send(2, 4)]),
        ]),
        toy(vec![
            (0, vec![Step::Round(1)]),
            (10, vec![Step::Send(2, 5), Step::Send(0, 6)]),
        ]),
        toy(vec![(0, vec![Step::Round(1)])]),
    ];
    let watch = Watch::default();
    let mut sim = Simulation::new(traced(2), actors, net());
    sim.add_invariant(watch.clone());
    let mutate = Fault::Mutate {
        node: NodeId(0),
        round: 1,
        to: vec![NodeId(1)],
    };
    sim.schedule_fault(armed_at, mutate).unwrap();
    let report = sim.run();
    let faults = watch.faults.borrow().clone();
    (report, faults)
}

fn annotations<A: Actor>(report: &RunReport<A>) -> Vec<(NodeId, u64, String)> {
    report
        .trace
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Annotate { label } => Some((e.node, e.t / 1_000_000, label.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn a_mutation_changes_only_the_named_senders_messages_of_its_round_to_its_receivers() {
    let (report, faults) = mutation_run(Time::ZERO);
    let n = &report.actors;
    // Round 1 to node 1: changed (but the zero, which has nothing to change).
    assert_eq!(n[1].values_from(0), vec![1001, 0, 1011, 3]);
    // Round 1 to node 2, not a listed receiver; round 2: unchanged.
    assert_eq!(n[2].values_from(0), vec![2, 4]);
    // Another sender: unchanged.
    assert_eq!(n[2].values_from(1), vec![5]);
    assert_eq!(n[0].values_from(1), vec![6]);
    assert_eq!(
        annotations(&report),
        vec![
            (
                NodeId(0),
                10,
                "mutated (to n1, round 1): value 1 -> 1001".to_string()
            ),
            (
                NodeId(0),
                17,
                "mutated (to n1, round 1): value 11 -> 1011".to_string()
            ),
        ]
    );
    // Invariants hear of the mutation's arming and of each change, not of the zero.
    assert_eq!(faults, vec![Time::ZERO, ms(10), ms(17)]);
}

#[test]
fn a_mutation_is_armed_from_when_it_applies() {
    let (report, faults) = mutation_run(ms(15));
    assert_eq!(report.actors[1].values_from(0), vec![1, 0, 1011, 3]);
    assert_eq!(faults, vec![ms(15), ms(17)]);
    assert_eq!(annotations(&report).len(), 1);
}

#[test]
fn a_mutation_must_name_nodes_not_twin_endpoints() {
    // Sends are matched by the sender's identity and the receiver node: a mutation naming
    // a twin's endpoint would never apply, so it is refused rather than ignored.
    for (node, to) in [(3, 1), (1, 3)] {
        let mut sim = twinned(net());
        let mutate = Fault::Mutate {
            node: NodeId(node),
            round: 0,
            to: vec![NodeId(to)],
        };
        let err = sim.schedule_fault(Time::ZERO, mutate.clone()).unwrap_err();
        assert!(err.contains("twin"), "{err}");
        let err = sim
            .schedule_round_fault(1, RoundWhen::First, mutate)
            .unwrap_err();
        assert!(err.contains("twin"), "{err}");
    }
}

#[test]
fn a_mutation_of_a_twinned_node_changes_the_messages_of_both_instances() {
    // Both instances ping node 1 in round 0 (they report no round: round 0 is not `None`,
    // so they enter it).
    let actors = vec![
        toy(vec![(0, vec![Step::Round(0)]), (5, vec![Step::Send(1, 9)])]),
        toy(vec![]),
    ];
    let mut sim = Simulation::new(traced(4), actors, net());
    let twin = toy(vec![(0, vec![Step::Round(0)]), (5, vec![Step::Send(1, 8)])]);
    sim.add_twin(NodeId(0), twin).unwrap();
    let mutate = Fault::Mutate {
        node: NodeId(0),
        round: 0,
        to: vec![NodeId(1)],
    };
    sim.schedule_fault(Time::ZERO, mutate).unwrap();
    let report = sim.run();
    let mut got = report.actors[1].values_from(0);
    got.sort_unstable();
    assert_eq!(got, vec![1008, 1009]);
    let on: Vec<NodeId> = annotations(&report).iter().map(|a| a.0).collect();
    assert_eq!(on, vec![NodeId(0), NodeId(2)], "annotated on each sender");
}

// ---- Coverage ----------------------------------------------------------------------------

/// Node 0 goes through rounds 3, 1, 2, pinging node 1, node 2, then node 1 again; node 1
/// (round 1) answers pings with pongs; node 2 reports no round (abstract state 0), answers
/// nothing, and pings node 0 at 15 ms.
fn ping_pong(coverage: bool) -> RunReport<Toy> {
    let mut responder = toy(vec![(0, vec![Step::Round(1)])]);
    responder.reply = true;
    let actors = vec![
        toy(vec![
            (0, vec![Step::Round(3), Step::Send(1, 1)]),
            (10, vec![Step::Round(1), Step::Send(2, 2)]),
            (20, vec![Step::Round(2), Step::Send(1, 3)]),
        ]),
        responder,
        toy(vec![(15, vec![Step::Send(0, 4)])]),
    ];
    let config = SimConfig {
        coverage,
        ..traced(5)
    };
    Simulation::new(config, actors, net()).run()
}

#[test]
fn coverage_is_collected_only_when_asked_sorted_and_without_repeats() {
    let without = ping_pong(false);
    assert_eq!(without.coverage, None);
    let with = ping_pong(true);
    assert_eq!(
        with.digest, without.digest,
        "coverage does not change the run"
    );
    let coverage = with.coverage.clone().expect("asked for");
    // States 21 (round 3), 7 (round 1, reached by two nodes), 14 (round 2); node 2's zero
    // is no state.
    assert_eq!(coverage.states, vec![7, 14, 21]);
    // Kinds by first sight: ping is bit 0, pong bit 1; a summary is (kind sent << 58) |
    // kinds received since the node last sent. Node 0: its first ping follows nothing (0),
    // its ping at 10 ms a pong (2), its ping at 20 ms only node 2's ping (1: the pong
    // before its last send no longer counts). Node 1's pongs each follow one ping (twice).
    // Node 2's ping follows node 0's (1).
    let pong_after_ping = (1 << 58) | 1;
    assert_eq!(coverage.happens_before, vec![0, 1, 2, pong_after_ping]);
    assert_eq!(coverage.rounds, 3);
    assert_eq!(
        coverage,
        Coverage {
            states: vec![7, 14, 21],
            happens_before: vec![0, 1, 2, pong_after_ping],
            rounds: 3
        }
    );
}

// ---- Determinism -------------------------------------------------------------------------

/// Everything at once: twins of nodes 0 and 2, round triggers that partition and heal,
/// a mutation, pings answered with pongs over links of random latency, coverage.
fn everything(seed: u64, keep_trace: bool) -> RunReport<Toy> {
    let pinger = |offset: u64| {
        let mut t = toy(vec![
            (0, vec![Step::Round(1)]),
            (
                5 + offset,
                vec![Step::Send(1, 10 + offset), Step::Send(3, 20)],
            ),
            (
                15 + offset,
                vec![Step::Round(2), Step::Send(0, 30 + offset)],
            ),
            (
                25 + offset,
                vec![Step::Round(3), Step::Send(2, 40), Step::Output(offset)],
            ),
        ]);
        t.reply = true;
        t
    };
    let actors = (0..4).map(pinger).collect();
    let config = SimConfig {
        keep_trace,
        coverage: true,
        ..SimConfig::new(seed)
    };
    let mut sim = Simulation::new(config, actors, Groups::default());
    sim.add_twin(NodeId(0), pinger(7)).unwrap();
    sim.add_twin(NodeId(2), pinger(9)).unwrap();
    let split = vec![
        vec![NodeId(0), NodeId(1), NodeId(5)],
        vec![NodeId(2), NodeId(3), NodeId(4)],
    ];
    sim.schedule_round_fault(
        2,
        RoundWhen::First,
        Fault::Network(NetChange::Partition { groups: split }),
    )
    .unwrap();
    sim.schedule_round_fault(3, RoundWhen::All, Fault::Network(NetChange::Heal))
        .unwrap();
    let mutate = Fault::Mutate {
        node: NodeId(1),
        round: 2,
        to: vec![NodeId(0), NodeId(2)],
    };
    sim.schedule_fault(Time::ZERO, mutate).unwrap();
    sim.run()
}

#[test]
fn the_same_seed_gives_the_same_run_with_rounds_twins_mutations_and_coverage() {
    let a = everything(7, true);
    let b = everything(7, true);
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.trace, b.trace);
    assert_eq!(a.coverage, b.coverage);
    assert_eq!(everything(7, false).digest, a.digest);
    // The run did what it says: both round commands fired, mutations happened, and
    // coverage saw every round.
    let labels: Vec<String> = fault_times(&a).into_iter().map(|(l, _)| l).collect();
    assert!(
        labels.iter().any(|l| l.starts_with("partition")),
        "{labels:?}"
    );
    assert!(labels.iter().any(|l| l == "heal"), "{labels:?}");
    assert!(annotations(&a)
        .iter()
        .any(|(_, _, l)| l.starts_with("mutated")));
    assert_eq!(a.coverage.as_ref().map(|c| c.rounds), Some(3));
    // Another seed draws other latencies: another run.
    assert_ne!(everything(8, false).digest, a.digest);
}

#[test]
fn a_mutated_sender_turns_fuzzed_and_stays_so_across_a_restart() {
    let (report, _) = mutation_run(Time::ZERO);
    assert_eq!(report.actors[0].behavior.as_deref(), Some("fuzzed"));
    assert_eq!(report.actors[1].behavior, None, "only the sender is faulty");
    // A crash and restart rebuilds the node; its messages are still mutated, so the
    // rebuilt node is switched to `fuzzed` again.
    let actors = vec![toy(vec![(0, vec![Step::Round(1)])]), toy(vec![])];
    let mut sim = Simulation::new(traced(1), actors, net());
    sim.on_restart(|_, _| toy(vec![]));
    let mutate = Fault::Mutate {
        node: NodeId(0),
        round: 1,
        to: vec![NodeId(1)],
    };
    sim.schedule_fault(Time::ZERO, mutate).unwrap();
    sim.schedule_fault(Time::from_millis(5), Fault::Crash(NodeId(0)))
        .unwrap();
    sim.schedule_fault(Time::from_millis(6), Fault::Restart(NodeId(0)))
        .unwrap();
    let report = sim.run();
    assert_eq!(report.actors[0].behavior.as_deref(), Some("fuzzed"));
}

/// A node of a protocol that offers no `fuzzed` behaviour (nor any other).
struct Plain;

impl Actor for Plain {
    type Msg = Msg;
    type Timer = usize;
    type Output = u64;
    fn on_start(&mut self, _cx: &mut Context<Self>) {}
    fn on_message(&mut self, _from: NodeId, _msg: Msg, _cx: &mut Context<Self>) {}
    fn on_timer(&mut self, _timer: usize, _cx: &mut Context<Self>) {}
}

#[test]
fn a_protocol_without_the_fuzzed_behaviour_refuses_mutations_by_name() {
    let mut sim = Simulation::new(traced(1), vec![Plain, Plain], net());
    let mutate = Fault::Mutate {
        node: NodeId(0),
        round: 1,
        to: vec![NodeId(1)],
    };
    let err = sim.schedule_fault(Time::ZERO, mutate).unwrap_err();
    assert!(
        err.contains(
            "this protocol's messages cannot be mutated (it offers no `fuzzed` behaviour)"
        ),
        "{err}"
    );
}

#[test]
fn settle_heals_restarts_crashed_nodes_and_resumes_paused_ones() {
    let actors = vec![toy(vec![]), toy(vec![]), toy(vec![])];
    let mut sim = Simulation::new(traced(1), actors, net());
    sim.on_restart(|_, _| toy(vec![]));
    let at = Time::from_millis;
    sim.schedule_fault(at(2), Fault::Crash(NodeId(1))).unwrap();
    sim.schedule_fault(at(2), Fault::Pause(NodeId(2))).unwrap();
    sim.schedule_fault(at(4), Fault::Settle).unwrap();
    let report = sim.run();
    let faults: Vec<(String, u64)> = fault_events(&report)
        .into_iter()
        .map(|(f, t, _)| (f, t))
        .collect();
    assert_eq!(
        faults,
        vec![
            ("crash 1".to_string(), 2),
            ("pause 2".to_string(), 2),
            ("settle".to_string(), 4),
            ("restart 1".to_string(), 4),
            ("resume 2".to_string(), 4),
        ]
    );
}
