//! Soak test, not run by default: thousands of seeded random fault mixes, each with at
//! most f faulty replicas (crash, crash and restart, `equivocate`, `silent`, `mutate`),
//! an optional partition that heals, a replica whose messages crawl for a while, and
//! random loss, duplication and damage; every run
//! must stay safe, and complete every request within 120 s of the last fault healing.
//!
//! ```text
//! cargo test --release -p rehearsal-protocols --test pbft_soak -- --ignored --nocapture
//! PBFT_SOAK_START=3001 PBFT_SOAK_SEEDS=3000 cargo test --release ...   # another range
//! PBFT_SOAK_MUTANT=no-commit cargo test --release ...   # how often the mixes catch a mutant
//! ```
//!
//! A failing seed prints its configuration and faults; rerun it with the same seed.

mod pbft_common;

use pbft_common::*;
use rehearsal_protocols::pbft::{Config, Mutant, Termination};
use rehearsal_sim_core::rand::{Rng, SeedableRng};
use rehearsal_sim_core::{Fault, NodeId, Outcome, SimRng, Time};
use std::time::Duration;

/// The configuration, network, faults and healing time of one seed.
fn scenario(seed: u64) -> (Config, TestNet, Vec<(Time, Fault)>, Time) {
    let mut rng = SimRng::seed_from_u64(seed ^ 0xabcdef);
    let f = if rng.random_bool(0.25) { 2 } else { 1 };
    let n = 3 * f + 1;
    let config = Config {
        f,
        clients: rng.random_range(1..=4),
        requests_per_client: 30,
        batch_max: if rng.random_bool(0.5) {
            1
        } else {
            rng.random_range(2..=8)
        },
        checkpoint_interval: 4,
        watermark_window: 8 * rng.random_range(1..=2),
        ..Config::default()
    };
    let mut net = TestNet::new(
        ["constant:10ms", "uniform:1ms..30ms", "uniform:1ms..100ms"][rng.random_range(0..3)],
    );
    if rng.random_bool(0.5) {
        net = net.loss(rng.random_range(0.0..0.15));
    }
    if rng.random_bool(0.3) {
        net = net.duplicate(0.05);
    }
    if rng.random_bool(0.3) {
        net = net.corrupt(0.02);
    }
    // Sometimes one replica's messages crawl for a while: asynchrony, not a fault.
    let mut heal_at = Time::ZERO;
    if rng.random_bool(0.3) {
        let from = Time::from_millis(rng.random_range(0..2000));
        let until = from.after(Duration::from_millis(rng.random_range(100..4000)));
        net = net.slow(rng.random_range(0..n), from, until, "uniform:100ms..5s");
        heal_at = until.after(Duration::from_secs(5));
    }
    let mut faults = vec![];
    let mut faulty = std::collections::BTreeSet::new();
    for _ in 0..rng.random_range(0..=f) {
        let node = rng.random_range(0..n);
        if !faulty.insert(node) {
            continue;
        }
        let at = Time::from_millis(rng.random_range(0..3000));
        match rng.random_range(0..5) {
            0 => faults.push((at, Fault::Crash(NodeId(node)))),
            1 => {
                faults.push((at, Fault::Crash(NodeId(node))));
                let back = at.after(Duration::from_millis(rng.random_range(100..3000)));
                heal_at = heal_at.max(back);
                faults.push((back, Fault::Restart(NodeId(node))));
            }
            2 => faults.push((
                at,
                Fault::Byzantine {
                    node: NodeId(node),
                    behavior: "equivocate".into(),
                },
            )),
            3 => faults.push((
                at,
                Fault::Byzantine {
                    node: NodeId(node),
                    behavior: "silent".into(),
                },
            )),
            _ => faults.push((
                at,
                Fault::Byzantine {
                    node: NodeId(node),
                    behavior: "mutate".into(),
                },
            )),
        }
    }
    if rng.random_bool(0.4) {
        let node = rng.random_range(0..n);
        let at = Time::from_millis(rng.random_range(0..3000));
        let until = at.after(Duration::from_millis(rng.random_range(100..5000)));
        heal_at = heal_at.max(until);
        faults.push((at, isolate(&config, &[node])));
        faults.push((until, heal()));
    }
    (config, net, faults, heal_at)
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "soak test: minutes in debug builds; run with --release --ignored"]
fn random_fault_mixes_stay_safe_and_live() {
    let start = env("PBFT_SOAK_START", 1);
    let seeds = env("PBFT_SOAK_SEEDS", 3000);
    // With a mutant, count the seeds that catch it instead (swarm mode's catch rate).
    let mutant: Mutant = std::env::var("PBFT_SOAK_MUTANT")
        .map(|m| m.parse().expect("a mutant name"))
        .unwrap_or_default();
    let mut failed = Vec::new();
    for seed in start..start + seeds {
        let (mut config, net, faults, heal_at) = scenario(seed);
        config.mutant = mutant;
        let termination = Termination::new(&config)
            .after(heal_at)
            .within(Duration::from_secs(120));
        let mut sim = simulation(
            &config,
            seed,
            net.clone(),
            Some(Duration::from_secs(400)),
            Some(termination),
        );
        for (at, fault) in &faults {
            sim.schedule_fault(*at, fault.clone()).unwrap();
        }
        let report = sim.run();
        if report.outcome != Outcome::Ok && mutant != Mutant::None {
            failed.push(seed);
        } else if report.outcome != Outcome::Ok {
            println!(
                "seed {seed}: f = {}, batch {}, {} clients, L = {}, {net:?}, faults {:?}: {:?}",
                config.f,
                config.batch_max,
                config.clients,
                config.watermark_window,
                faults
                    .iter()
                    .map(|(t, f)| format!("{t} {f}"))
                    .collect::<Vec<_>>(),
                report.violations
            );
            failed.push(seed);
        }
    }
    if mutant != Mutant::None {
        println!(
            "{mutant}: caught on {} of {seeds} seeds, first {:?}",
            failed.len(),
            failed.first()
        );
        return;
    }
    assert!(
        failed.is_empty(),
        "{} of {seeds} seeds failed: {failed:?}",
        failed.len()
    );
}
