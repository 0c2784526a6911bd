//! The scheduler seam: the default scheduler is today's run, a scheduler that picks the
//! order runs every event at an instant of its own, and PCT's priorities decide the order.

use rehearsal_sim_core::scheduler::{Candidate, DefaultScheduler, Pct, Scheduler, Strategy};
use rehearsal_sim_core::{
    derive_rng, Actor, Context, EventKind, Fate, Fault, NodeId, Packet, SimConfig, SimpleNetwork,
    Simulation, Time, TraceEvent,
};
use std::time::Duration;

/// Every node greets every other node at start and again on a timer; each greeting
/// received is an output. Many deliveries fall due together (constant latency).
struct Gossip {
    nodes: u32,
    rounds: u32,
}

impl Actor for Gossip {
    type Msg = u32;
    type Timer = ();
    type Output = u32;
    fn on_start(&mut self, cx: &mut Context<Self>) {
        self.greet(cx);
    }
    fn on_message(&mut self, from: NodeId, round: u32, cx: &mut Context<Self>) {
        cx.output(from.0 * 1000 + round);
    }
    fn on_timer(&mut self, _: (), cx: &mut Context<Self>) {
        self.greet(cx);
    }
}

impl Gossip {
    fn greet(&mut self, cx: &mut Context<Self>) {
        if self.rounds == 0 {
            return;
        }
        self.rounds -= 1;
        for to in 0..self.nodes {
            if to != cx.me().0 {
                cx.send(NodeId(to), self.rounds);
            }
        }
        cx.set_timer(Duration::from_millis(15), ());
    }
}

fn gossip(seed: u64, strategy: Strategy) -> Simulation<Gossip> {
    let nodes = 5;
    let actors = (0..nodes).map(|_| Gossip { nodes, rounds: 4 }).collect();
    let config = SimConfig {
        keep_trace: true,
        strategy,
        ..SimConfig::new(seed)
    };
    Simulation::new(config, actors, SimpleNetwork::default())
}

/// The nodes that received each delivery, in trace order.
fn receivers(trace: &[TraceEvent]) -> Vec<u32> {
    trace
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Deliver { .. }))
        .map(|e| e.node.0)
        .collect()
}

#[test]
fn an_explicit_default_scheduler_is_the_run_without_one() {
    for seed in 1..=5 {
        let plain = gossip(seed, Strategy::Default).run();
        let mut explicit = gossip(seed, Strategy::Default);
        explicit.set_scheduler(Box::new(DefaultScheduler));
        let explicit = explicit.run();
        assert_eq!(explicit.trace, plain.trace, "seed {seed}");
        assert_eq!(explicit.digest, plain.digest, "seed {seed}");
    }
}

#[test]
fn controlled_runs_give_every_event_an_instant_of_its_own() {
    for strategy in [
        Strategy::Random { window_ns: 0 },
        Strategy::Pct {
            depth: 3,
            steps: 50,
            window_ns: 2_000_000,
        },
    ] {
        let report = gossip(7, strategy).run();
        // Sends and outputs happen inside a handler, at its instant; every handler (start,
        // delivery, timer) runs at an instant no other handler shares.
        let handlers: Vec<u64> = report
            .trace
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::Start | EventKind::Deliver { .. } | EventKind::Timer { .. }
                )
            })
            .map(|e| e.t)
            .collect();
        assert!(
            handlers.len() > 80,
            "{strategy}: {} handlers",
            handlers.len()
        );
        assert!(
            handlers.windows(2).all(|w| w[0] < w[1]),
            "{strategy}: handler instants repeat or go back"
        );
    }
}

#[test]
fn random_order_is_the_seeds_and_differs_between_seeds() {
    let random = Strategy::Random { window_ns: 0 };
    let a = gossip(3, random).run();
    let again = gossip(3, random).run();
    assert_eq!(a.trace, again.trace);
    assert_eq!(a.digest, again.digest);
    let default = gossip(3, Strategy::Default).run();
    assert_ne!(receivers(&a.trace), receivers(&default.trace));
    let b = gossip(4, random).run();
    assert_ne!(receivers(&a.trace), receivers(&b.trace));
    // The same messages arrive, in another order.
    let sorted = |mut v: Vec<u32>| {
        v.sort_unstable();
        v
    };
    assert_eq!(
        sorted(receivers(&a.trace)),
        sorted(receivers(&default.trace))
    );
}

#[test]
fn pct_of_depth_one_runs_the_highest_priority_nodes_deliveries_first() {
    for seed in 1..=10 {
        // A window wide enough that the whole first wave (sent at 0 to 4 ns) is ready at once.
        let pct = Pct::new(derive_rng(seed, "test", 0), 5, 1, 1, 1_000_000);
        let priority = pct.priorities().to_vec();
        let mut sim = gossip(seed, Strategy::Default);
        sim.set_scheduler(Box::new(pct));
        let report = sim.run();
        // The first wave: every node's greeting falls due at 10 ms, 20 deliveries in all.
        // Each receiver gets its 4 in a row, receivers by falling priority.
        let first_wave: Vec<u32> = receivers(&report.trace).into_iter().take(20).collect();
        let mut expected: Vec<u32> = (0..5).flat_map(|n| [n; 4]).collect();
        expected.sort_by_key(|&n| std::cmp::Reverse(priority[n as usize]));
        assert_eq!(first_wave, expected, "seed {seed}, priorities {priority:?}");
    }
}

#[test]
fn pct_change_points_preempt_the_running_node() {
    // Depth 2 with its one change point at step 1 demotes the first node to run: it runs
    // last in every wave from then on; without it, first.
    let top_of = |pct: &Pct| {
        let p = pct.priorities();
        (0..p.len()).max_by_key(|&i| p[i]).unwrap_or(0) as u32
    };
    let pct = Pct::new(derive_rng(9, "test", 0), 5, 2, 1, 1_000_000);
    let top = top_of(&pct);
    let mut sim = gossip(9, Strategy::Default);
    sim.set_scheduler(Box::new(pct));
    let report = sim.run();
    let starts: Vec<u32> = report
        .trace
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Start))
        .map(|e| e.node.0)
        .collect();
    assert_eq!(starts.len(), 5);
    assert_eq!(starts[4], top, "the demoted node starts last: {starts:?}");
    let first_wave: Vec<u32> = receivers(&report.trace).into_iter().take(20).collect();
    assert_eq!(&first_wave[16..], &[top; 4], "{first_wave:?}");
}

/// Drops every message to node 1, whatever the network drew.
struct Deafen;

impl Scheduler for Deafen {
    fn route(&mut self, _id: u64, packet: &Packet, drawn: Fate) -> Fate {
        if packet.to == NodeId(1) {
            Fate::Drop { reason: "deafened" }
        } else {
            drawn
        }
    }
}

#[test]
fn a_scheduler_may_override_a_messages_fate() {
    let mut sim = gossip(2, Strategy::Default);
    sim.set_scheduler(Box::new(Deafen));
    let report = sim.run();
    assert!(receivers(&report.trace).iter().all(|&n| n != 1));
    let deafened = report
        .trace
        .iter()
        .filter(|e| matches!(&e.kind, EventKind::Drop { reason, .. } if reason == "deafened"))
        .count();
    assert_eq!(deafened, 16, "4 senders x 4 rounds");
}

/// Picks the last ready event: the latest due.
struct Last;

impl Scheduler for Last {
    fn controls_order(&self) -> bool {
        true
    }
    fn window_ns(&self) -> u64 {
        20_000_000
    }
    fn pick(&mut self, ready: &[Candidate]) -> usize {
        ready.len() - 1
    }
}

#[test]
fn no_picked_event_runs_at_or_past_a_fault_it_did_not_wait_for() {
    let mut sim = gossip(5, Strategy::Default);
    sim.set_scheduler(Box::new(Last));
    sim.schedule_fault(Time::from_millis(10), Fault::Crash(NodeId(2)))
        .unwrap();
    sim.schedule_fault(Time::from_millis(31), Fault::Pause(NodeId(3)))
        .unwrap();
    let report = sim.run();
    let fault_times: Vec<u64> = report
        .trace
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Fault { .. }))
        .map(|e| e.t)
        .collect();
    assert_eq!(fault_times, [10_000_000, 31_000_000]);
    // Nothing else happens at a fault's instant, and time never goes back.
    for e in &report.trace {
        if !matches!(e.kind, EventKind::Fault { .. }) {
            assert!(
                !fault_times.contains(&e.t),
                "{e:?} shares a fault's instant"
            );
        }
    }
    assert!(report.trace.windows(2).all(|w| w[0].t <= w[1].t));
    // Node 2 crashed at 10 ms, before the first wave reached it: it received nothing.
    assert!(receivers(&report.trace).iter().all(|&n| n != 2));
}
