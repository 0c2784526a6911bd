//! Rounds, twins and round-based message mutation for PBFT and HotStuff: replicas report
//! their views, a twin replica runs the correct protocol but counts as faulty, and armed
//! mutations of a faulty sender's messages leave the correct replicas safe.

mod pbft_common;

use pbft_common::TestNet;
use rehearsal_protocols::{hotstuff, pbft};
use rehearsal_sim_core::{
    Actor, EventKind, Fault, NodeId, Outcome, RunReport, SimConfig, Simulation, Time,
};
use std::time::Duration;

fn pbft_sim(config: &pbft::Config, seed: u64, coverage: bool) -> Simulation<pbft::Node> {
    let mut sim_config = SimConfig::new(seed);
    sim_config.keep_trace = true;
    sim_config.coverage = coverage;
    sim_config.deadline = Some(Time::ZERO.after(Duration::from_secs(300)));
    let actors = pbft::actors(config).unwrap();
    let mut sim = Simulation::new(sim_config, actors, TestNet::new("uniform:1ms..10ms"));
    for check in pbft::checks(config) {
        sim.add_invariant(check);
    }
    sim
}

fn hotstuff_sim(
    config: &hotstuff::Config,
    seed: u64,
    coverage: bool,
) -> Simulation<hotstuff::Node> {
    let mut sim_config = SimConfig::new(seed);
    sim_config.keep_trace = true;
    sim_config.coverage = coverage;
    sim_config.deadline = Some(Time::ZERO.after(Duration::from_secs(300)));
    let actors = hotstuff::actors(config).unwrap();
    let mut sim = Simulation::new(sim_config, actors, TestNet::new("uniform:1ms..10ms"));
    for check in hotstuff::checks(config) {
        sim.add_invariant(check);
    }
    sim
}

/// Each node's rounds, in the order it entered them.
fn rounds<A: Actor>(report: &RunReport<A>, node: u32) -> Vec<u64> {
    report
        .trace
        .iter()
        .filter(|e| e.node == NodeId(node))
        .filter_map(|e| match e.kind {
            EventKind::Round { round } => Some(round),
            _ => None,
        })
        .collect()
}

fn ok<A: Actor>(report: &RunReport<A>, what: &str) {
    assert_eq!(
        report.outcome,
        Outcome::Ok,
        "{what}: {:?}",
        report.violations
    );
}

#[test]
fn pbft_replicas_report_view_zero_then_each_view_they_enter() {
    let config = pbft::Config {
        requests_per_client: 10,
        ..pbft::Config::default()
    };
    let mut sim = pbft_sim(&config, 1, false);
    // The primary of view 0 crashes: the others change to view 1.
    sim.schedule_fault(
        Time::ZERO.after(Duration::from_millis(50)),
        Fault::Crash(NodeId(0)),
    )
    .unwrap();
    let report = sim.run();
    ok(&report, "primary crash");
    for replica in 1..4 {
        assert_eq!(rounds(&report, replica), [0, 1], "n{replica}");
    }
    // Clients are not participants: no rounds.
    assert!(rounds(&report, 4).is_empty());
}

#[test]
fn hotstuff_replicas_report_their_views_as_they_move_on() {
    let config = hotstuff::Config {
        requests_per_client: 10,
        ..hotstuff::Config::default()
    };
    let report = hotstuff_sim(&config, 1, true).run();
    ok(&report, "no faults");
    for replica in 0..4 {
        let seen = rounds(&report, replica);
        assert_eq!(seen.first(), Some(&1), "n{replica}: {seen:?}");
        assert!(seen.windows(2).all(|w| w[0] < w[1]), "n{replica}: {seen:?}");
        assert_eq!(
            seen.last(),
            Some(&report.actors[replica as usize].as_replica().unwrap().view())
        );
    }
    let coverage = report.coverage.as_ref().unwrap();
    assert!(coverage.rounds > 10, "{coverage:?}");
    assert!(coverage.states.len() > 4, "{coverage:?}");
    assert!(coverage.happens_before.len() > 4, "{coverage:?}");
}

#[test]
fn a_round_triggered_partition_fires_when_pbft_enters_view_one() {
    let config = pbft::Config {
        requests_per_client: 10,
        ..pbft::Config::default()
    };
    let mut sim = pbft_sim(&config, 2, false);
    sim.schedule_fault(
        Time::ZERO.after(Duration::from_millis(50)),
        Fault::Crash(NodeId(0)),
    )
    .unwrap();
    sim.schedule_round_fault(
        1,
        rehearsal_sim_core::RoundWhen::First,
        Fault::Annotate("view one".into()),
    )
    .unwrap();
    let report = sim.run();
    ok(&report, "round trigger");
    assert!(report
        .trace
        .iter()
        .any(|e| format!("{:?}", e.kind).contains("view one")));
}

#[test]
fn a_pbft_twin_runs_the_correct_protocol_and_the_checks_ignore_it() {
    let config = pbft::Config {
        clients: 2,
        requests_per_client: 20,
        ..pbft::Config::default()
    };
    for seed in 1..4 {
        let mut sim = pbft_sim(&config, seed, false);
        let twin = pbft::node(&config, NodeId(2)).unwrap();
        sim.add_twin(NodeId(2), twin).unwrap();
        let report = sim.run();
        ok(&report, "twin of n2");
        assert_eq!(pbft::Summary::of(&report.actors).completed, 40);
        // Both instances announce themselves as faulty, then run the protocol.
        let twin_end = report.actors.len() - 1;
        for i in [2, twin_end] {
            let replica = report.actors[i].as_replica().unwrap();
            assert_eq!(replica.byzantine(), Some(pbft::Behavior::Twin));
            assert!(replica.last_executed() > 0, "instance {i} executed nothing");
        }
    }
}

#[test]
fn a_pbft_twin_primary_is_safe() {
    // Twins of the primary propose different batches under one identity: the correct
    // replicas must stay in agreement (and the checks ignore the twins' own commits).
    let config = pbft::Config {
        clients: 3,
        requests_per_client: 10,
        ..pbft::Config::default()
    };
    for seed in 1..6 {
        let mut sim = pbft_sim(&config, seed, false);
        sim.add_twin(NodeId(0), pbft::node(&config, NodeId(0)).unwrap())
            .unwrap();
        ok(&sim.run(), "twin primary");
    }
}

#[test]
fn a_hotstuff_twin_leader_is_safe_and_ignored_by_the_checks() {
    let config = hotstuff::Config {
        clients: 2,
        requests_per_client: 20,
        ..hotstuff::Config::default()
    };
    for seed in 1..6 {
        let mut sim = hotstuff_sim(&config, seed, false);
        sim.add_twin(NodeId(1), hotstuff::node(&config, NodeId(1)).unwrap())
            .unwrap();
        let report = sim.run();
        ok(&report, "twin of n1");
        assert_eq!(hotstuff::summary(&report.actors).completed, 40);
        let byzantine = report
            .trace
            .iter()
            .filter(|e| format!("{:?}", e.kind).contains("turned Byzantine: twin"))
            .count();
        assert_eq!(byzantine, 2, "both instances announce it");
    }
}

#[test]
fn armed_mutations_of_a_pbft_primary_leave_the_correct_replicas_safe_and_live() {
    let config = pbft::Config {
        clients: 2,
        requests_per_client: 20,
        ..pbft::Config::default()
    };
    let mut mutated = 0;
    for seed in 1..6 {
        let mut sim = pbft_sim(&config, seed, false);
        for round in 0..3 {
            sim.schedule_fault(
                Time::ZERO,
                Fault::Mutate {
                    node: NodeId(round as u32),
                    round,
                    to: vec![NodeId(1), NodeId(2), NodeId(3), NodeId(0)],
                },
            )
            .unwrap();
        }
        let report = sim.run();
        ok(&report, "mutating primaries");
        mutated += report
            .trace
            .iter()
            .filter(|e| format!("{:?}", e.kind).contains("mutated"))
            .count();
        assert_eq!(pbft::Summary::of(&report.actors).completed, 40);
    }
    assert!(mutated > 10, "{mutated}");
}

#[test]
fn armed_mutations_of_a_hotstuff_leader_leave_the_correct_replicas_safe_and_live() {
    let config = hotstuff::Config {
        clients: 2,
        requests_per_client: 20,
        ..hotstuff::Config::default()
    };
    let mut mutated = 0;
    for seed in 1..6 {
        let mut sim = hotstuff_sim(&config, seed, false);
        for round in 4..12 {
            sim.schedule_fault(
                Time::ZERO,
                Fault::Mutate {
                    node: NodeId(1),
                    round,
                    to: vec![NodeId(0), NodeId(2), NodeId(3)],
                },
            )
            .unwrap();
        }
        let report = sim.run();
        ok(&report, "mutating leader");
        mutated += report
            .trace
            .iter()
            .filter(|e| format!("{:?}", e.kind).contains("mutated"))
            .count();
        assert_eq!(hotstuff::summary(&report.actors).completed, 40);
    }
    assert!(mutated > 10, "{mutated}");
}

#[test]
fn mutated_runs_are_the_same_for_the_same_seed() {
    let config = hotstuff::Config {
        requests_per_client: 10,
        ..hotstuff::Config::default()
    };
    let digest = || {
        let mut sim = hotstuff_sim(&config, 7, true);
        sim.schedule_fault(
            Time::ZERO,
            Fault::Mutate {
                node: NodeId(1),
                round: 4,
                to: vec![NodeId(0), NodeId(2), NodeId(3)],
            },
        )
        .unwrap();
        let report = sim.run();
        (report.digest.clone(), report.coverage.clone())
    };
    assert_eq!(digest(), digest());
}
