//! Fault hooks of the engine: crash, restart from durable state, pause, skew, stop,
//! network changes with held messages, duplicated and corrupted messages.

use rehearsal_sim_core::{
    Actor, Admit, ClockSkew, Context, EndReason, EventKind, Fate, Fault, NetChange, NetworkModel,
    NodeId, Packet, SimConfig, SimRng, SimpleNetwork, Simulation, Time,
};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Node 0 sends `seq` to node 1 every 10 ms (a 10 ms timer), 10 times. Node 1 counts what
/// it receives, saves the count as durable state and outputs it.
struct Ticker {
    count: u64,
    restarted_from: Option<u64>,
    seen_now: Vec<Time>,
}

impl Ticker {
    fn new() -> Self {
        Ticker {
            count: 0,
            restarted_from: None,
            seen_now: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Tick(u64);

impl Actor for Ticker {
    type Msg = Tick;
    type Timer = ();
    type Output = u64;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        self.seen_now.push(cx.now());
        if cx.me() == NodeId(0) {
            cx.set_timer(Duration::from_millis(10), ());
        }
    }

    fn on_message(&mut self, _from: NodeId, _msg: Tick, cx: &mut Context<Self>) {
        self.count += 1;
        self.seen_now.push(cx.now());
        cx.persist(&self.count).unwrap();
        cx.output(self.count);
    }

    fn on_timer(&mut self, _: (), cx: &mut Context<Self>) {
        self.count += 1;
        self.seen_now.push(cx.now());
        cx.send(NodeId(1), Tick(self.count));
        if self.count < 10 {
            cx.set_timer(Duration::from_millis(10), ());
        }
    }
}

fn sim(keep: bool) -> Simulation<Ticker> {
    let config = SimConfig {
        keep_trace: keep,
        ..SimConfig::new(1)
    };
    let net = SimpleNetwork {
        latency: "constant:1ms".parse().unwrap(),
        loss: 0.0,
    };
    let mut sim = Simulation::new(config, vec![Ticker::new(), Ticker::new()], net);
    sim.on_restart(|_, durable| {
        let saved: Option<u64> = durable.map(|b| {
            bincode::serde::decode_from_slice(b, bincode::config::standard())
                .unwrap()
                .0
        });
        Ticker {
            count: saved.unwrap_or(0),
            restarted_from: saved,
            seen_now: Vec::new(),
        }
    });
    sim
}

#[test]
fn a_crashed_node_misses_messages_and_restarts_from_its_durable_state() {
    // Ticks are sent at 10, 20, ..., 100 ms and arrive 1 ms later.
    let mut s = sim(true);
    s.schedule_fault(Time::from_millis(35), Fault::Crash(NodeId(1)))
        .unwrap();
    s.schedule_fault(Time::from_millis(65), Fault::Restart(NodeId(1)))
        .unwrap();
    let report = s.run();
    // Received ticks 1-3 before the crash, lost 4-6 (at 41, 51, 61 ms), got 7-10 after.
    let n1 = &report.actors[1];
    assert_eq!(n1.restarted_from, Some(3));
    assert_eq!(n1.count, 3 + 4);
    let dropped: Vec<&EventKind> = report
        .trace
        .iter()
        .map(|e| &e.kind)
        .filter(|k| matches!(k, EventKind::Drop { reason, .. } if reason == "receiver crashed"))
        .collect();
    assert_eq!(dropped.len(), 3);
    assert_eq!(report.messages_dropped, 3);
}

#[test]
fn a_crashed_node_loses_its_timers() {
    let mut s = sim(false);
    s.schedule_fault(Time::from_millis(25), Fault::Crash(NodeId(0)))
        .unwrap();
    let report = s.run();
    assert_eq!(
        report.actors[0].count, 2,
        "the sender's timer died with it at 25 ms"
    );
    assert_eq!(report.actors[1].count, 2);
    assert_eq!(report.end, EndReason::Quiescent);
}

#[test]
fn restart_needs_a_restart_constructor_and_faults_must_name_real_nodes() {
    let net = SimpleNetwork::default();
    let mut plain = Simulation::new(SimConfig::new(1), vec![Ticker::new(), Ticker::new()], net);
    assert!(!plain.can_restart());
    let err = plain
        .schedule_fault(Time::ZERO, Fault::Restart(NodeId(1)))
        .unwrap_err();
    assert!(err.contains("no restart constructor"), "{err}");
    let err = plain
        .schedule_fault(Time::ZERO, Fault::Crash(NodeId(7)))
        .unwrap_err();
    assert!(err.contains("node 7") && err.contains("0..2"), "{err}");
    let partition = Fault::Network(NetChange::Partition {
        groups: vec![vec![NodeId(0)], vec![NodeId(5)]],
    });
    assert!(plain.schedule_fault(Time::ZERO, partition).is_err());
}

#[test]
fn a_paused_node_queues_its_events_and_handles_them_in_order_on_resume() {
    let mut s = sim(false);
    s.schedule_fault(Time::from_millis(15), Fault::Pause(NodeId(1)))
        .unwrap();
    s.schedule_fault(Time::from_millis(50), Fault::Resume(NodeId(1)))
        .unwrap();
    let report = s.run();
    let n1 = &report.actors[1];
    assert_eq!(n1.count, 10, "nothing is lost by a pause");
    // Ticks 2, 3, 4 (due at 21, 31, 41 ms) are all handled at 50 ms.
    let at_resume = n1
        .seen_now
        .iter()
        .filter(|t| **t == Time::from_millis(50))
        .count();
    assert_eq!(at_resume, 3, "{:?}", n1.seen_now);
}

#[test]
fn a_paused_nodes_backlog_is_lost_in_a_crash_even_if_it_restarts_at_once() {
    let mut s = sim(true);
    s.schedule_fault(Time::from_millis(15), Fault::Pause(NodeId(1)))
        .unwrap();
    s.schedule_fault(Time::from_millis(50), Fault::Crash(NodeId(1)))
        .unwrap();
    s.schedule_fault(Time::from_millis(50), Fault::Restart(NodeId(1)))
        .unwrap();
    let report = s.run();
    // Ticks 2, 3, 4 (due at 21, 31, 41 ms) waited in the backlog: dropped at the crash,
    // after the restart's start (the crash and restart come first at their instant).
    let at_crash: Vec<String> = report
        .trace
        .iter()
        .filter(|e| e.t == 50_000_000)
        .map(|e| match &e.kind {
            EventKind::Drop { id, reason, .. } => format!("drop {id} {reason}"),
            other => format!("{other:?}").split(' ').next().unwrap().to_string(),
        })
        .collect();
    let ids: Vec<u64> = report
        .trace
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Send { id, .. } if (20_000_000..50_000_000).contains(&e.t) => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
    let drops: Vec<String> = ids
        .iter()
        .map(|id| format!("drop {id} receiver crashed"))
        .collect();
    let mut expected = vec!["Fault".to_string(), "Fault".into(), "Start".into()];
    expected.extend(drops);
    assert_eq!(at_crash[..expected.len()], expected[..], "{at_crash:?}");
    // Only ticks 5..=10 reach the restarted node (the first tick's count was saved).
    assert_eq!(report.actors[1].count, 1 + 6);
}

#[test]
fn skew_and_drift_show_through_now_and_stretch_timers() {
    let mut s = sim(false);
    // Node 0's clock: +1 s and 2x fast from t=0 (applied just after the starts).
    let skew = ClockSkew {
        offset_ns: 1_000_000_000,
        drift_ppm: 1_000_000,
    };
    s.schedule_fault(
        Time::ZERO,
        Fault::Skew {
            node: NodeId(0),
            skew,
        },
    )
    .unwrap();
    let report = s.run();
    let n0 = &report.actors[0];
    // Start ran before the skew: it read 0 and set its first 10 ms timer on the true clock.
    assert_eq!(n0.seen_now[0], Time::ZERO);
    // That timer fires at true 10 ms, when the skewed clock reads 1 s + 2 * 10 ms.
    assert_eq!(n0.seen_now[1], Time::from_millis(1_020));
    // The next 10 ms (local) timer takes 5 ms of true time: true 15 ms, local 1.03 s.
    assert_eq!(n0.seen_now[2], Time::from_millis(1_030));
    // Node 1 is unskewed: the ticks arrive 1 ms after true 10 and 15 ms.
    assert_eq!(
        report.actors[1].seen_now[1..3],
        [Time::from_millis(11), Time::from_millis(16)]
    );
}

#[test]
fn stop_ends_the_run_like_a_deadline() {
    let mut s = sim(false);
    s.schedule_fault(Time::from_millis(42), Fault::Stop)
        .unwrap();
    let report = s.run();
    assert_eq!(report.end, EndReason::Stopped);
    assert_eq!(report.sim_time, Time::from_millis(42));
    assert_eq!(report.actors[1].count, 4);
}

/// A two-node network with one switchable link 0 -> 1 that holds or drops while cut, and
/// that duplicates or corrupts every message when told to.
struct Switch {
    cut: bool,
    hold: bool,
    mode: &'static str,
}

impl NetworkModel for Switch {
    fn route(&mut self, _p: &Packet, _rng: &mut SimRng) -> Fate {
        match self.mode {
            "duplicate" => Fate::Duplicate {
                delay_ns: 1_000_000,
                copy_delay_ns: 3_000_000,
            },
            "corrupt" => Fate::Corrupt {
                delay_ns: 1_000_000,
            },
            _ => Fate::Deliver {
                delay_ns: 1_000_000,
            },
        }
    }
    fn admit(&mut self, from: NodeId, _to: NodeId, _now: Time) -> Admit {
        match (self.cut && from == NodeId(0), self.hold) {
            (false, _) => Admit::Deliver,
            (true, true) => Admit::Hold,
            (true, false) => Admit::Drop {
                reason: "partition",
            },
        }
    }
    fn apply(&mut self, change: &NetChange, _now: Time) -> Result<(), String> {
        self.cut = !matches!(change, NetChange::Heal);
        Ok(())
    }
}

fn switched(hold: bool, mode: &'static str) -> Simulation<Ticker> {
    let config = SimConfig {
        keep_trace: true,
        ..SimConfig::new(9)
    };
    let net = Switch {
        cut: false,
        hold,
        mode,
    };
    let mut sim = Simulation::new(config, vec![Ticker::new(), Ticker::new()], net);
    let cut = NetChange::CutOneWay {
        from: vec![NodeId(0)],
        to: vec![NodeId(1)],
    };
    sim.schedule_fault(Time::from_millis(15), Fault::Network(cut))
        .unwrap();
    sim.schedule_fault(Time::from_millis(45), Fault::Network(NetChange::Heal))
        .unwrap();
    sim
}

#[test]
fn messages_across_a_cut_are_dropped_or_held_until_heal_as_the_model_says() {
    // Ticks due at 21, 31, 41 ms cross the cut.
    let dropped = switched(false, "deliver").run();
    assert_eq!(dropped.actors[1].count, 7);
    assert_eq!(dropped.messages_dropped, 3);
    let held = switched(true, "deliver").run();
    assert_eq!(held.actors[1].count, 10);
    assert_eq!(held.messages_dropped, 0);
    let released_at_heal = held.actors[1]
        .seen_now
        .iter()
        .filter(|t| **t == Time::from_millis(45))
        .count();
    assert_eq!(released_at_heal, 3);
    let faults: Vec<String> = held
        .trace
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Fault { fault } => Some(fault.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(faults, ["cut 0 -> 1", "heal"]);
}

#[test]
fn duplicated_messages_arrive_twice_with_the_same_id() {
    let report = switched(false, "duplicate").run();
    let delivered_ids: Vec<u64> = report
        .trace
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Deliver { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    // Ticks leave at 10, 20, ..., 100 ms with copies due 1 ms and 3 ms later; the cut
    // (15 to 45 ms, drop mode) takes both copies of the ticks sent at 20, 30 and 40 ms.
    assert_eq!(report.messages_sent, 10);
    assert_eq!(report.messages_dropped, 6);
    assert_eq!(delivered_ids.len(), 14);
    let distinct: std::collections::BTreeSet<u64> = delivered_ids.iter().copied().collect();
    assert_eq!(distinct.len(), 7);
    assert!(distinct
        .iter()
        .all(|id| delivered_ids.iter().filter(|d| *d == id).count() == 2));
}

#[test]
fn corrupted_messages_are_delivered_altered_or_dropped_as_undecodable() {
    let report = switched(false, "corrupt").run();
    let corrupt = report
        .trace
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Corrupt { .. }))
        .count();
    let undecodable = report
        .trace
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Drop { reason, .. } if reason == "corrupted: undecodable"))
        .count();
    assert_eq!(
        corrupt + undecodable,
        10,
        "every message was damaged one way or the other"
    );
    assert!(
        corrupt > 0,
        "a one-byte varint tick often still decodes (to another number)"
    );
    // Same seed, same damage.
    assert_eq!(switched(false, "corrupt").run().digest, report.digest);
}

/// Records when invariants hear of faults.
struct FaultTimes(std::rc::Rc<std::cell::RefCell<Vec<Time>>>);
impl rehearsal_sim_core::Invariant<Ticker> for FaultTimes {
    fn name(&self) -> &str {
        "fault-times"
    }
    fn on_fault(&mut self, now: Time) {
        self.0.borrow_mut().push(now);
    }
}

/// Drops the third message it routes as an imposed fault, delivers the rest in 1 ms.
struct ImposeThird(u32);
impl NetworkModel for ImposeThird {
    fn route(&mut self, _: &Packet, _: &mut SimRng) -> Fate {
        self.0 += 1;
        if self.0 == 3 {
            Fate::FaultDrop { reason: "imposed" }
        } else {
            Fate::Deliver {
                delay_ns: 1_000_000,
            }
        }
    }
}

#[test]
fn invariants_hear_of_scheduled_faults_and_imposed_drops_but_not_of_annotations() {
    let times = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let config = SimConfig {
        keep_trace: true,
        ..SimConfig::new(1)
    };
    let mut sim = Simulation::new(config, vec![Ticker::new(), Ticker::new()], ImposeThird(0));
    sim.add_invariant(FaultTimes(times.clone()));
    sim.schedule_fault(Time(5_000_000), Fault::Pause(NodeId(1)))
        .unwrap();
    sim.schedule_fault(Time(6_000_000), Fault::Annotate("note".into()))
        .unwrap();
    sim.schedule_fault(Time(7_000_000), Fault::Resume(NodeId(1)))
        .unwrap();
    let report = sim.run();
    // The pause, the resume, and the third tick (sent at 30 ms) dropped by the network.
    assert_eq!(
        *times.borrow(),
        vec![Time(5_000_000), Time(7_000_000), Time(30_000_000)]
    );
    let drops = report
        .trace
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Drop { reason, .. } if reason == "imposed"))
        .count();
    assert_eq!(drops, 1);
}

#[test]
fn a_postponed_timer_firing_is_put_off_by_one_period_and_later_ones_keep_their_times() {
    // Node 0's ticks fire at 10, 20, ..., 100 ms, timer ids 0..10. Putting off the firing
    // of timer 2 (due at 30 ms) twice: it fires at 50 ms instead, with no event at 30 or
    // 40 ms; its handler then arms the next tick, which fires at 60 ms.
    let fired = |report: &rehearsal_sim_core::RunReport<Ticker>| -> Vec<(u64, u64)> {
        report
            .trace
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Timer { timer_id, .. } if e.node == NodeId(0) => {
                    Some((e.t / 1_000_000, timer_id.0))
                }
                _ => None,
            })
            .collect()
    };
    let plain = sim(true).run();
    assert_eq!(
        fired(&plain)[..4],
        [(10, 0), (20, 1), (30, 2), (40, 3)],
        "{:?}",
        fired(&plain)
    );
    let mut put_off = sim(true);
    let timer = rehearsal_sim_core::TimerId(2);
    put_off.postpone_timers([(NodeId(0), timer), (NodeId(0), timer)]);
    let report = put_off.run();
    assert_eq!(
        fired(&report)[..4],
        [(10, 0), (20, 1), (50, 2), (60, 3)],
        "{:?}",
        fired(&report)
    );
    // Every tick still fires once: ten in all, the last 20 ms later.
    assert_eq!(fired(&report).len(), 10);
    assert_eq!(fired(&report).last(), Some(&(120, 9)));
}
