//! The network models inside real simulations: partitions drop exactly the messages that
//! cross them, FIFO links keep order where unordered ones do not, and held messages arrive
//! after the heal while dropped ones never do.

use rehearsal_net_models::{InFlight, LinkMode, NetConfig, Network};
use rehearsal_sim_core::{
    Actor, Context, EventKind, Fault, NetChange, NodeId, Outcome, SimConfig, Simulation, Time,
};
use std::time::Duration;

/// Every `interval`, sends the next sequence number to each of `targets`, `rounds` times;
/// records what it receives: per sender, (sequence number, arrival time).
struct Chatter {
    targets: Vec<NodeId>,
    interval: Duration,
    rounds: u32,
    sent: u32,
    received: Vec<Vec<(u32, Time)>>,
}

impl Chatter {
    fn all_to_all(nodes: u32, interval: Duration, rounds: u32) -> Vec<Chatter> {
        (0..nodes)
            .map(|me| Chatter {
                targets: (0..nodes).filter(|&n| n != me).map(NodeId).collect(),
                interval,
                rounds,
                sent: 0,
                received: vec![Vec::new(); nodes as usize],
            })
            .collect()
    }
}

impl Actor for Chatter {
    type Msg = u32;
    type Timer = ();
    type Output = ();

    fn on_start(&mut self, cx: &mut Context<Self>) {
        if !self.targets.is_empty() {
            cx.set_timer(self.interval, ());
        }
    }

    fn on_message(&mut self, from: NodeId, seq: u32, cx: &mut Context<Self>) {
        self.received[from.index()].push((seq, cx.now()));
    }

    fn on_timer(&mut self, _: (), cx: &mut Context<Self>) {
        cx.broadcast(self.targets.iter().copied(), self.sent);
        self.sent += 1;
        if self.sent < self.rounds {
            cx.set_timer(self.interval, ());
        }
    }
}

fn network(config: &NetConfig, nodes: u32) -> Network {
    Network::new(config, nodes as usize).unwrap()
}

#[test]
fn a_partition_drops_exactly_the_messages_that_cross_it() {
    let (nodes, rounds) = (5u32, 50u32);
    let actors = Chatter::all_to_all(nodes, Duration::from_millis(1), rounds);
    let mut config = SimConfig::new(21);
    config.keep_trace = true;
    let mut sim = Simulation::new(config, actors, network(&NetConfig::default(), nodes));
    let groups = vec![
        vec![NodeId(0), NodeId(1)],
        vec![NodeId(2), NodeId(3), NodeId(4)],
    ];
    sim.schedule_fault(Time::ZERO, Fault::Network(NetChange::Partition { groups }))
        .unwrap();
    let report = sim.run();
    assert_eq!(report.outcome, Outcome::Ok);

    let group = |n: usize| usize::from(n >= 2);
    let mut crossing = 0;
    for (to, actor) in report.actors.iter().enumerate() {
        for (from, got) in actor.received.iter().enumerate() {
            if from == to {
                continue;
            }
            if group(from) == group(to) {
                let seqs: Vec<u32> = got.iter().map(|&(s, _)| s).collect();
                assert_eq!(seqs, (0..rounds).collect::<Vec<_>>(), "{from}->{to}");
            } else {
                assert!(got.is_empty(), "{from}->{to} crossed the partition");
                crossing += rounds as u64;
            }
        }
    }
    assert_eq!(report.messages_dropped, crossing);
    assert_eq!(report.messages_delivered + crossing, report.messages_sent);
    let drops: Vec<&str> = report
        .trace
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Drop { reason, .. } => Some(reason.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(drops.len() as u64, crossing);
    assert!(drops.iter().all(|&r| r == "partition"));
}

#[test]
fn a_partition_in_mid_run_also_catches_messages_in_flight_across_it() {
    let (nodes, rounds) = (4u32, 100u32);
    let actors = Chatter::all_to_all(nodes, Duration::from_millis(1), rounds);
    let config = NetConfig {
        latency: "uniform:1ms..30ms".parse().unwrap(),
        ..NetConfig::default()
    };
    let mut sim = Simulation::new(SimConfig::new(22), actors, network(&config, nodes));
    let groups = vec![vec![NodeId(0)], vec![NodeId(1), NodeId(2), NodeId(3)]];
    let at = Time::from_micros(40_500);
    sim.schedule_fault(at, Fault::Network(NetChange::Partition { groups }))
        .unwrap();
    let report = sim.run();
    for (to, actor) in report.actors.iter().enumerate() {
        for (from, got) in actor.received.iter().enumerate() {
            let crosses = from != to && (from == 0 || to == 0);
            if from == to {
                continue;
            }
            if crosses {
                assert!(
                    got.iter().all(|&(_, t)| t < at),
                    "{from}->{to} after the cut"
                );
            } else {
                assert_eq!(got.len() as u32, rounds, "{from}->{to} lost messages");
            }
        }
    }
    assert_eq!(
        report.messages_delivered + report.messages_dropped,
        report.messages_sent
    );
    assert!(report.messages_dropped > 0);
}

/// Per directed link, whether the receiver saw the sequence numbers in sending order.
fn links_in_order(actors: &[Chatter]) -> Vec<bool> {
    actors
        .iter()
        .flat_map(|a| &a.received)
        .filter(|got| !got.is_empty())
        .map(|got| got.windows(2).all(|w| w[0].0 <= w[1].0))
        .collect()
}

#[test]
fn fifo_links_never_reorder_and_unordered_ones_do_under_the_same_jitter() {
    let (nodes, rounds) = (3u32, 2_000u32);
    let jittery = NetConfig {
        latency: "uniform:0s..50ms".parse().unwrap(),
        reorder: 0.1,
        duplicate: 0.05,
        ..NetConfig::default()
    };
    let run = |mode| {
        let config = NetConfig {
            mode,
            ..jittery.clone()
        };
        let actors = Chatter::all_to_all(nodes, Duration::from_micros(100), rounds);
        Simulation::new(SimConfig::new(23), actors, network(&config, nodes)).run()
    };
    let fifo = run(LinkMode::Fifo);
    assert_eq!(fifo.outcome, Outcome::Ok);
    let in_order = links_in_order(&fifo.actors);
    assert_eq!(in_order.len(), 6);
    assert!(in_order.iter().all(|&ok| ok), "a FIFO link reordered");
    for actor in &fifo.actors {
        for got in actor.received.iter().filter(|g| !g.is_empty()) {
            assert!(
                got.len() >= rounds as usize,
                "FIFO with no loss delivers everything"
            );
        }
    }

    let unordered = run(LinkMode::Unordered);
    assert!(
        links_in_order(&unordered.actors).iter().all(|&ok| !ok),
        "every unordered link should reorder some of 2,000 jittered messages"
    );
}

/// Node 0 sends sequence number `i` to node 1 at `i` ms, for i in 0..100, at a constant
/// 10 ms latency; the link 0 -> 1 is cut from 30.5 ms to 60.5 ms.
fn cut_and_heal(on_cut: InFlight) -> Vec<(u32, Time)> {
    let sender = Chatter {
        targets: vec![NodeId(1)],
        interval: Duration::from_millis(1),
        rounds: 100,
        sent: 0,
        received: vec![Vec::new(); 2],
    };
    let receiver = Chatter {
        targets: vec![],
        interval: Duration::from_millis(1),
        rounds: 0,
        sent: 0,
        received: vec![Vec::new(); 2],
    };
    let config = NetConfig {
        on_cut,
        ..NetConfig::default()
    };
    let mut sim = Simulation::new(
        SimConfig::new(24),
        vec![sender, receiver],
        network(&config, 2),
    );
    let cut = NetChange::Cut {
        shape: "test".into(),
        links: vec![(NodeId(0), NodeId(1))],
    };
    sim.schedule_fault(Time::from_micros(30_500), Fault::Network(cut))
        .unwrap();
    sim.schedule_fault(Time::from_micros(60_500), Fault::Network(NetChange::Heal))
        .unwrap();
    let report = sim.run();
    assert_eq!(report.outcome, Outcome::Ok);
    report.actors[1].received[0].clone()
}

#[test]
fn messages_held_across_a_cut_arrive_at_the_heal_and_dropped_ones_never() {
    // The timer fires first at 1 ms, so sequence number i leaves at (i + 1) ms and arrives
    // 10 ms later. In flight at the cut (30.5 ms): those sent at 21..=30 ms, i = 20..=29.
    // Sent while cut (31..=60 ms): i = 30..=59, dropped; or, held, sent anyway: those due
    // before the heal (i <= 49) wait for it, the later ones arrive on time.
    let arrival = |i: u32| Time::from_millis(u64::from(i) + 11);
    let healed = Time::from_micros(60_500);

    let dropped = cut_and_heal(InFlight::Drop);
    let expected: Vec<(u32, Time)> = (0..20).chain(60..100).map(|i| (i, arrival(i))).collect();
    assert_eq!(dropped, expected);

    let held = cut_and_heal(InFlight::Hold);
    let expected: Vec<(u32, Time)> = (0..20)
        .map(|i| (i, arrival(i)))
        .chain((20..50).map(|i| (i, healed)))
        .chain((50..100).map(|i| (i, arrival(i))))
        .collect();
    assert_eq!(held, expected);
}

#[test]
fn the_same_seed_replays_the_same_run_and_another_seed_does_not() {
    let config = NetConfig {
        latency: "lognormal:5ms,3ms".parse().unwrap(),
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.1,
        corrupt: 0.01,
        bandwidth: "10Mbit/s".parse().ok(),
        ..NetConfig::default()
    };
    let run = |seed| {
        let actors = Chatter::all_to_all(4, Duration::from_millis(1), 200);
        Simulation::new(SimConfig::new(seed), actors, network(&config, 4)).run()
    };
    let (a, b, c) = (run(31), run(31), run(32));
    assert_eq!(a.digest, b.digest);
    assert_eq!(a.messages_dropped, b.messages_dropped);
    assert_ne!(a.digest, c.digest);
}
