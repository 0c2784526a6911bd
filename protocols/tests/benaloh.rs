//! Benaloh: the robust mode acknowledges and retransmits, so it completes after any spell
//! of loss below 1; its retransmissions are bounded per period and stop once acknowledged;
//! the timed (workshop) mode sends each message once, as its schedule says.

use rehearsal_protocols::benaloh::{self, Config, Mode, Node, RETRANSMITS_PER_PERIOD_MAX};
use rehearsal_sim_core::{
    EndReason, Fault, Latency, NetChange, Outcome, RunReport, SimConfig, SimpleNetwork, Simulation,
    Time,
};
use std::time::Duration;

fn simulation(nodes: u32, mode: Mode, loss: f64, seed: u64, deadline: Time) -> Simulation<Node> {
    let config = Config {
        nodes,
        modulus: benaloh::MODULUS_DEFAULT,
        mode,
    };
    let actors: Vec<Node> = benaloh::actors(&config)
        .unwrap()
        .into_iter()
        .map(|n| n.retransmitting_after(Duration::from_millis(40)))
        .collect();
    let mut sim_config = SimConfig::new(seed);
    sim_config.deadline = Some(deadline);
    let network = SimpleNetwork {
        latency: Latency::constant_ms(10),
        loss,
    };
    let mut sim = Simulation::new(sim_config, actors, network);
    sim.add_invariant(benaloh::CorrectSum::new(&config));
    sim
}

fn totals(report: &RunReport<Node>) -> u64 {
    // Each node outputs its secret, then its total.
    report.nodes.iter().map(|n| n.outputs).sum::<u64>() / 2
}

#[test]
fn robust_benaloh_completes_once_ninety_percent_loss_heals() {
    for seed in 1..=20 {
        let mut sim = simulation(7, Mode::Robust, 0.9, seed, Time::from_secs(600));
        sim.schedule_fault(
            Time::from_secs(120),
            Fault::Network(NetChange::SetLoss { loss: 0.2 }),
        )
        .unwrap();
        let report = sim.run();
        assert_eq!(
            report.outcome,
            Outcome::Ok,
            "seed {seed}: {:?}",
            report.violations
        );
        assert_eq!(totals(&report), 7, "seed {seed}");
        // Retransmission stops once everything is acknowledged: the run goes quiet
        // long before its deadline.
        assert_eq!(report.end, EndReason::Quiescent, "seed {seed}");
        assert!(report.sim_time < Time::from_secs(300), "seed {seed}");
    }
}

#[test]
fn robust_benaloh_completes_under_ninety_percent_loss_that_never_heals() {
    let report = simulation(4, Mode::Robust, 0.9, 3, Time::from_secs(600)).run();
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
    assert_eq!(totals(&report), 4);
}

#[test]
fn one_retransmission_period_resends_a_bounded_number_of_messages() {
    // 70 nodes send 69 shares each, every one lost: each period may resend only part.
    let nodes = 70;
    let report = simulation(nodes, Mode::Robust, 1.0, 1, Time::from_secs(30)).run();
    assert_eq!(report.outcome, Outcome::Violation);
    assert!(report.violations[0]
        .detail
        .contains("at the deadline, n0 waits for shares from n1, n2"));
    for stats in &report.nodes {
        assert!(stats.timers_fired > 1);
        assert_eq!(
            stats.messages_sent,
            u64::from(nodes - 1) + RETRANSMITS_PER_PERIOD_MAX as u64 * stats.timers_fired
        );
    }
}

#[test]
fn timed_benaloh_sends_each_message_once_and_never_acknowledges() {
    let report = simulation(5, Mode::WORKSHOP, 0.0, 1, Time::from_secs(600)).run();
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
    // n-1 shares and n-1 subset sums per node, nothing else.
    assert_eq!(report.messages_sent, 5 * 4 * 2);
}
