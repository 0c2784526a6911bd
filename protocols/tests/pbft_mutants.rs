//! Deliberately broken PBFTs ([`Mutant`]) must be caught by the checks, under a fault
//! setting that the correct protocol survives on the very same seeds.
//!
//! | mutant                | fault setting                                                       | caught by    |
//! |-----------------------|---------------------------------------------------------------------|--------------|
//! | `no-digest-check`     | primary 0 equivocates from 300 ms                                   | agreement    |
//! | `no-commit`           | primary 0 equivocates from 300 ms; replica 3's messages take 5 s from 300 ms to 3 s | agreement |
//! | `small-commit-quorum` | the same                                                            | agreement    |
//! | `forget-prepared`     | primary 0 crashes at 700 ms                                         | termination  |
//! | `no-watermarks`       | primary 0 mutates its messages from 300 ms; K = 4, L = 8            | termination  |
//!
//! Every setting: 4 replicas, 2 clients of 40 requests, latency uniform in 1..20 ms, a
//! 120 s deadline, termination bound 60 s. Seeds 1..=10 are run for the mutant (the test
//! needs one caught; each is caught on most: see each test) and for the correct protocol
//! (all must pass).
//!
//! Why each is caught:
//! - `no-digest-check`: the equivocating primary sends some backups another batch under
//!   the digest it signed for the real one; they prepare and commit the digest and
//!   execute different batches.
//! - `no-commit` and `small-commit-quorum`: the slow replica 3 prepares (with a prepare
//!   from one backup) and executes — right away, or with its own commit and the Byzantine
//!   primary's — while nobody else could prepare, because 3's own prepare is slow to
//!   arrive. The view change that follows, without 3 (slow) and with the primary claiming
//!   nothing prepared, fills that sequence number with a null batch. The correct protocol
//!   needs 2f+1 commits, which cannot gather without a second prepared replica.
//! - `forget-prepared`: the new primary, knowing no prepared certificates, reuses the
//!   sequence numbers after the stable checkpoint; replicas that executed them already
//!   never execute the requests now assigned there, and clients wait for ever.
//! - `no-watermarks`: the mutating primary sends a pre-prepare 2^32 sequence numbers
//!   ahead; backups accept and prepare it, so every view change must cover 2^32 sequence
//!   numbers, which no primary can announce: the group never leaves the Byzantine view.
//!   With watermarks the pre-prepare is dropped and the view change succeeds.

mod pbft_common;

use pbft_common::*;
use rehearsal_protocols::pbft::{self, Config, Mutant, Termination};
use rehearsal_sim_core::{Fault, NodeId, Outcome, RunReport, Time};
use std::time::Duration;

const SEEDS: u64 = 10;

#[derive(Debug, Clone, Copy)]
enum Setting {
    /// Primary 0 turns `equivocate` at 300 ms.
    EquivocatingPrimary,
    /// The same, and replica 3's messages sent from 300 ms to 3 s take 5 s.
    EquivocatingPrimarySlowBackup,
    /// Primary 0 crashes at 700 ms.
    PrimaryCrash,
    /// Primary 0 turns `mutate` at 300 ms; checkpoints every 4, window 8.
    MutatingPrimary,
}

fn run(mutant: Mutant, setting: Setting, seed: u64) -> RunReport<pbft::Node> {
    let mut config = Config {
        clients: 2,
        requests_per_client: 40,
        mutant,
        ..Config::default()
    };
    let mut net = TestNet::new("uniform:1ms..20ms");
    let at = Time::from_millis(300);
    let turn = |behavior: &str| Fault::Byzantine {
        node: NodeId(0),
        behavior: behavior.into(),
    };
    let fault = match setting {
        Setting::EquivocatingPrimary => (at, turn("equivocate")),
        Setting::EquivocatingPrimarySlowBackup => {
            net = net.slow(3, at, Time::from_secs(3), "constant:5s");
            (at, turn("equivocate"))
        }
        Setting::PrimaryCrash => (Time::from_millis(700), Fault::Crash(NodeId(0))),
        Setting::MutatingPrimary => {
            config.checkpoint_interval = 4;
            config.watermark_window = 8;
            (at, turn("mutate"))
        }
    };
    let termination = Termination::new(&config).within(Duration::from_secs(60));
    let mut sim = simulation(
        &config,
        seed,
        net,
        Some(Duration::from_secs(120)),
        Some(termination),
    );
    sim.schedule_fault(fault.0, fault.1).unwrap();
    sim.run()
}

/// Runs the mutant and the correct protocol on seeds 1..=SEEDS; returns the seeds on
/// which the mutant was caught, after checking that `invariant` caught it and that the
/// correct protocol passed every seed.
fn caught(mutant: Mutant, setting: Setting, invariant: &str) -> Vec<u64> {
    let mut caught = Vec::new();
    for seed in 1..=SEEDS {
        let correct = run(Mutant::None, setting, seed);
        assert_eq!(
            correct.outcome,
            Outcome::Ok,
            "the correct protocol failed under {setting:?}, seed {seed}: {:?}",
            correct.violations
        );
        let broken = run(mutant, setting, seed);
        if broken.outcome != Outcome::Ok {
            assert!(
                broken.violations.iter().any(|v| v.invariant == invariant),
                "{mutant} under {setting:?}, seed {seed}: expected {invariant}, got {:?}",
                broken.violations
            );
            caught.push(seed);
        }
    }
    assert!(
        !caught.is_empty(),
        "{mutant} was not caught under {setting:?} in {SEEDS} seeds"
    );
    caught
}

#[test]
fn no_digest_check_is_caught_by_agreement_under_an_equivocating_primary() {
    let seeds = caught(
        Mutant::NoDigestCheck,
        Setting::EquivocatingPrimary,
        "agreement",
    );
    assert_eq!(seeds[0], 1, "caught on the first seed: {seeds:?}");
}

#[test]
fn no_commit_is_caught_by_agreement_under_an_equivocating_primary_and_a_slow_backup() {
    let seeds = caught(
        Mutant::NoCommit,
        Setting::EquivocatingPrimarySlowBackup,
        "agreement",
    );
    assert!(seeds[0] <= 2, "{seeds:?}");
}

#[test]
fn small_commit_quorum_is_caught_by_agreement_under_an_equivocating_primary_and_a_slow_backup() {
    let seeds = caught(
        Mutant::SmallCommitQuorum,
        Setting::EquivocatingPrimarySlowBackup,
        "agreement",
    );
    assert!(seeds[0] <= 2, "{seeds:?}");
}

#[test]
fn forget_prepared_is_caught_by_termination_after_a_primary_crash() {
    let seeds = caught(Mutant::ForgetPrepared, Setting::PrimaryCrash, "termination");
    assert_eq!(seeds[0], 1, "{seeds:?}");
}

#[test]
fn no_watermarks_is_caught_by_termination_under_a_mutating_primary() {
    let seeds = caught(
        Mutant::NoWatermarks,
        Setting::MutatingPrimary,
        "termination",
    );
    assert_eq!(seeds[0], 1, "{seeds:?}");
}

/// Not run by default: how often each mutant is caught over many seeds, and that the
/// correct protocol passes all of them. `PBFT_MUTANT_SEEDS` seeds (default 100):
///
/// ```text
/// cargo test --release -p rehearsal-protocols --test pbft_mutants -- --ignored --nocapture
/// ```
#[test]
#[ignore = "hundreds of runs per mutant; run with --release --ignored"]
fn catch_rates_over_many_seeds() {
    let seeds: u64 = std::env::var("PBFT_MUTANT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    let cases = [
        (Mutant::NoDigestCheck, Setting::EquivocatingPrimary),
        (Mutant::NoCommit, Setting::EquivocatingPrimarySlowBackup),
        (
            Mutant::SmallCommitQuorum,
            Setting::EquivocatingPrimarySlowBackup,
        ),
        (Mutant::ForgetPrepared, Setting::PrimaryCrash),
        (Mutant::NoWatermarks, Setting::MutatingPrimary),
    ];
    for (mutant, setting) in cases {
        let mut caught = Vec::new();
        let mut by = std::collections::BTreeMap::<String, u64>::new();
        for seed in 1..=seeds {
            let correct = run(Mutant::None, setting, seed);
            assert_eq!(
                correct.outcome,
                Outcome::Ok,
                "correct protocol, {setting:?}, seed {seed}: {:?}",
                correct.violations
            );
            let broken = run(mutant, setting, seed);
            if broken.outcome != Outcome::Ok {
                caught.push(seed);
                let name = broken.violations[0].invariant.clone();
                *by.entry(name).or_default() += 1;
            }
        }
        println!(
            "{mutant} under {setting:?}: caught on {} of {seeds} seeds (first: seed {:?}), by {by:?}",
            caught.len(),
            caught.first()
        );
    }
}
