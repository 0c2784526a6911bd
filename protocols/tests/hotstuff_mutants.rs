//! Deliberately broken HotStuffs ([`Mutant`]) must be caught by the checks, under a fault
//! setting that the correct protocol survives on the very same seeds. The settings are the
//! README's (`examples/hotstuff/`), on this file's test network, with 2 clients of 30
//! requests so that they run quickly in debug builds:
//!
//! | mutant                   | fault setting                                                    | caught by         |
//! |--------------------------|------------------------------------------------------------------|-------------------|
//! | `no-safe-node`           | replica 1 turns `stale-qc` at 0                                  | in-order          |
//! | `no-lock`                | the same                                                         | in-order          |
//! | `vote-twice`             | replica 2 reboots every 61 ms from 200 ms to 3 s; half the messages duplicated | votes-increase |
//! | `non-consecutive-commit` | replica 1 turns `impatient` at 0; latency uniform in 1..20 ms; half the messages duplicated | agreement, in-order |
//! | `small-quorum`           | replica 1 turns `impatient` at 0; latency uniform in 1..20 ms    | agreement, in-order |
//! | `small-timeout-quorum`   | replica 1 crashes at 1 s                                         | timeout-quorum    |
//!
//! Why each is caught:
//! - `no-safe-node` and `no-lock`: the `stale-qc` leader proposes a block extending a QC
//!   three certificates below its highest. Correct replicas are locked above that fork
//!   point and refuse it; with the lock ignored (or never moved off genesis) they vote for
//!   it, certify the fork, and commit blocks that are not children of the ones they
//!   committed before.
//! - `vote-twice`: a replica saves its view and last vote before its vote leaves, so after
//!   a reboot it is in the view it voted in. A copy of that view's proposal still on its
//!   way then gets a second vote, which `votes-increase` sees.
//! - `non-consecutive-commit` and `small-quorum`: the `impatient` replica times out of
//!   every view it votes in, and the replicas that voted join it while the view's QC is
//!   still forming, so views end by timeout certificates and the chain has view gaps and
//!   competing branches. A 3-chain across a gap, or a QC from 2f votes (the Byzantine
//!   replica and one correct one), lets correct replicas commit conflicting blocks. A gap
//!   in a 3-chain with a competing branch certified in it is rare; duplicated messages
//!   make it less so.
//! - `small-timeout-quorum`: once the crashed replica's term comes, the others time out;
//!   the first two timeouts a replica holds make a certificate, and it moves on with
//!   f+1 = 2 of them, which `timeout-quorum` refuses (the pacemaker's guarantee that a
//!   TC's highest QC covers every correct lock needs 2f+1).

mod pbft_common;

use pbft_common::TestNet;
use rehearsal_protocols::hotstuff::{self, checks::checks_after, Config, Mutant, Node};
use rehearsal_sim_core::{Fault, NodeId, Outcome, RunReport, SimConfig, Simulation, Time};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setting {
    /// Replica 1 turns `stale-qc` at 0 (`examples/hotstuff/stale-qc.scenario`).
    StaleQcLeader,
    /// Replica 2 crashes and restarts at once every 61 ms from 200 ms to 3 s, half the
    /// messages are delivered twice (`reboots.scenario`, `duplicate.toml`).
    RebootsWithDuplicates,
    /// Replica 1 turns `impatient` at 0, latency uniform in 1..20 ms
    /// (`impatient.scenario`).
    ImpatientReplica,
    /// The same, with half the messages delivered twice (`impatient.scenario`,
    /// `duplicate.toml`).
    ImpatientWithDuplicates,
    /// Replica 1 crashes at 1 s (`leader-crash.scenario`).
    LeaderCrash,
}

/// Each mutant's setting and the invariants that may catch it.
const CASES: &[(Mutant, Setting, &[&str])] = &[
    (
        Mutant::NoSafeNode,
        Setting::StaleQcLeader,
        &["in-order", "agreement"],
    ),
    (
        Mutant::NoLock,
        Setting::StaleQcLeader,
        &["in-order", "agreement"],
    ),
    (
        Mutant::VoteTwice,
        Setting::RebootsWithDuplicates,
        &["votes-increase"],
    ),
    (
        Mutant::NonConsecutiveCommit,
        Setting::ImpatientWithDuplicates,
        &["agreement", "in-order"],
    ),
    (
        Mutant::SmallQuorum,
        Setting::ImpatientReplica,
        &["agreement", "in-order"],
    ),
    (
        Mutant::SmallTimeoutQuorum,
        Setting::LeaderCrash,
        &["timeout-quorum"],
    ),
];

/// Mutants no setting catches yet, and why (none now).
const UNCAUGHT: &[Mutant] = &[];

fn run(mutant: Mutant, setting: Setting, seed: u64) -> RunReport<Node> {
    let config = Config {
        clients: 2,
        requests_per_client: 30,
        mutant,
        ..Config::default()
    };
    let byzantine = |behavior: &str| Fault::Byzantine {
        node: NodeId(1),
        behavior: behavior.into(),
    };
    let mut faults = Vec::new();
    let net = match setting {
        Setting::StaleQcLeader => {
            faults.push((Time::ZERO, byzantine("stale-qc")));
            TestNet::new("constant:10ms")
        }
        Setting::RebootsWithDuplicates => {
            let mut at_ms = 200;
            while at_ms < 3_000 {
                let at = Time::from_millis(at_ms);
                faults.push((at, Fault::Crash(NodeId(2))));
                faults.push((at, Fault::Restart(NodeId(2))));
                at_ms += 61;
            }
            TestNet::new("uniform:1ms..20ms").duplicate(0.5)
        }
        Setting::ImpatientReplica => {
            faults.push((Time::ZERO, byzantine("impatient")));
            TestNet::new("uniform:1ms..20ms")
        }
        Setting::ImpatientWithDuplicates => {
            faults.push((Time::ZERO, byzantine("impatient")));
            TestNet::new("uniform:1ms..20ms").duplicate(0.5)
        }
        Setting::LeaderCrash => {
            faults.push((Time::from_secs(1), Fault::Crash(NodeId(1))));
            TestNet::new("uniform:1ms..20ms")
        }
    };
    let healed = faults.last().map_or(Time::ZERO, |(at, _)| *at);
    let mut sim_config = SimConfig::new(seed);
    sim_config.deadline = Some(Time::ZERO.after(Duration::from_secs(600)));
    let actors = hotstuff::actors(&config).expect("valid config");
    let mut sim = Simulation::new(sim_config, actors, net);
    for check in checks_after(&config, healed) {
        sim.add_invariant(check);
    }
    sim.on_restart(hotstuff::restart(&config));
    for (at, fault) in faults {
        sim.schedule_fault(at, fault)
            .expect("a fault the simulator takes");
    }
    sim.run()
}

/// Runs the mutant and the correct protocol on seeds 1..=seeds; returns the seeds on
/// which the mutant was caught, after checking that one of `invariants` caught it and
/// that the correct protocol passed every seed.
fn caught(mutant: Mutant, setting: Setting, invariants: &[&str], seeds: u64) -> Vec<u64> {
    let mut caught = Vec::new();
    for seed in 1..=seeds {
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
                broken
                    .violations
                    .iter()
                    .any(|v| invariants.contains(&v.invariant.as_str())),
                "{mutant} under {setting:?}, seed {seed}: expected one of {invariants:?}, got {:?}",
                broken.violations
            );
            caught.push(seed);
        }
    }
    assert!(
        !caught.is_empty(),
        "{mutant} was not caught under {setting:?} in {seeds} seeds"
    );
    caught
}

fn case(mutant: Mutant) -> (Setting, &'static [&'static str]) {
    CASES
        .iter()
        .find(|(m, _, _)| *m == mutant)
        .map(|&(_, setting, invariants)| (setting, invariants))
        .expect("every mutant with a setting is in CASES")
}

#[test]
fn no_safe_node_is_caught_by_in_order_under_a_stale_qc_leader() {
    let (setting, invariants) = case(Mutant::NoSafeNode);
    let seeds = caught(Mutant::NoSafeNode, setting, invariants, 3);
    assert_eq!(seeds, [1, 2, 3], "caught on every seed");
}

#[test]
fn no_lock_is_caught_by_in_order_under_a_stale_qc_leader() {
    let (setting, invariants) = case(Mutant::NoLock);
    let seeds = caught(Mutant::NoLock, setting, invariants, 3);
    assert_eq!(seeds, [1, 2, 3], "caught on every seed");
}

#[test]
fn vote_twice_is_caught_by_votes_increase_when_a_replica_reboots_under_duplication() {
    let (setting, invariants) = case(Mutant::VoteTwice);
    let seeds = caught(Mutant::VoteTwice, setting, invariants, 3);
    assert_eq!(seeds[0], 1, "{seeds:?}");
}

#[test]
fn non_consecutive_commit_is_caught_under_an_impatient_replica_with_duplicates() {
    let (setting, invariants) = case(Mutant::NonConsecutiveCommit);
    // Caught on 1 of seeds 1..=150, seed 3 (none of 1..=1000 without duplicates).
    let seeds = caught(Mutant::NonConsecutiveCommit, setting, invariants, 3);
    assert_eq!(seeds, [3], "{seeds:?}");
}

#[test]
fn small_quorum_is_caught_under_an_impatient_replica() {
    let (setting, invariants) = case(Mutant::SmallQuorum);
    // Caught on 3 of seeds 1..=150, first on seed 19.
    let seeds = caught(Mutant::SmallQuorum, setting, invariants, 19);
    assert_eq!(seeds, [19], "{seeds:?}");
}

#[test]
fn small_timeout_quorum_is_caught_by_timeout_quorum_when_a_leader_crashes() {
    let (setting, invariants) = case(Mutant::SmallTimeoutQuorum);
    let seeds = caught(Mutant::SmallTimeoutQuorum, setting, invariants, 3);
    assert_eq!(seeds, [1, 2, 3], "caught on every seed");
}

#[test]
fn every_mutant_has_a_setting_or_says_why_not() {
    for mutant in Mutant::ALL {
        if mutant == Mutant::None {
            continue;
        }
        let with_setting = CASES.iter().filter(|(m, _, _)| *m == mutant).count();
        let uncaught = UNCAUGHT.contains(&mutant);
        assert!(
            with_setting + usize::from(uncaught) == 1,
            "{mutant}: give it one setting in CASES (and a test), or list it in UNCAUGHT"
        );
    }
}

/// Not run by default: how often each mutant is caught over many seeds, and that the
/// correct protocol passes all of them. `HOTSTUFF_MUTANT_SEEDS` seeds (default 100):
///
/// ```text
/// cargo test --release -p rehearsal-protocols --test hotstuff_mutants -- --ignored --nocapture
/// ```
#[test]
#[ignore = "hundreds of runs per mutant; run with --release --ignored"]
fn catch_rates_over_many_seeds() {
    let seeds: u64 = std::env::var("HOTSTUFF_MUTANT_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100);
    for &(mutant, setting, _) in CASES {
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
