//! HotStuff: the normal case, a crashed leader, a partitioned replica, loss, too many
//! crashes, seven replicas, Byzantine replicas, crash and restart, Ed25519, message
//! validation, and the checks themselves. Mutants are in `hotstuff_mutants.rs`.

mod pbft_common;

use pbft_common::TestNet;
use rehearsal_protocols::crypto::{Crypto, CryptoKind, Digest, Shared};
use rehearsal_protocols::hotstuff::checks::{
    Agreement, InOrderExecution, LockMonotonic, VotesIncrease,
};
use rehearsal_protocols::hotstuff::messages::{
    genesis_hash, leader_of, Block, Proposal, Qc, Tc, Timeout, Vote,
};
use rehearsal_protocols::hotstuff::{self, Config, Node, Output};
use rehearsal_sim_core::{
    EndReason, Fault, Invariant, NetChange, NodeId, Outcome, RunReport, SimConfig, Simulation, Time,
};
use std::sync::Arc;
use std::time::Duration;

/// A HotStuff run of `config` over `net`, with every check (termination counting from
/// `healed`), optionally with a deadline and faults.
fn run(
    config: &Config,
    seed: u64,
    net: TestNet,
    deadline: Option<Duration>,
    faults: &[(Time, Fault)],
    healed: Time,
) -> RunReport<Node> {
    let mut sim_config = SimConfig::new(seed);
    sim_config.deadline = deadline.map(|d| Time::ZERO.after(d));
    let mut sim = Simulation::new(sim_config, hotstuff::actors(config).unwrap(), net);
    for check in hotstuff::checks::checks_after(config, healed) {
        sim.add_invariant(check);
    }
    sim.on_restart(hotstuff::restart(config));
    for (at, fault) in faults {
        sim.schedule_fault(*at, fault.clone()).unwrap();
    }
    sim.run()
}

fn expect_ok(report: RunReport<Node>, what: &str) -> RunReport<Node> {
    assert_eq!(
        report.outcome,
        Outcome::Ok,
        "{what} (seed {}): {:?}",
        report.seed,
        report.violations
    );
    report
}

fn completed(report: &RunReport<Node>) -> u64 {
    hotstuff::summary(&report.actors).completed
}

/// Every replica in `replicas` holds the same store, committed as far as the others. The
/// leader that formed the last QC commits one more (empty) block than the others: no
/// proposal follows to reveal that QC, as nothing is left to commit.
fn assert_converged(report: &RunReport<Node>, replicas: &[u32]) {
    let states: Vec<_> = replicas
        .iter()
        .map(|&i| {
            let r = report.actors[i as usize].as_replica().unwrap();
            (r.committed_height(), r.store().clone())
        })
        .collect();
    let heights: Vec<u64> = states.iter().map(|s| s.0).collect();
    let (low, high) = (heights.iter().min().unwrap(), heights.iter().max().unwrap());
    assert!(
        states.windows(2).all(|w| w[0].1 == w[1].1) && high - low <= 1,
        "replicas {replicas:?} did not converge: heights {heights:?}"
    );
}

fn isolate(config: &Config, alone: &[u32]) -> Fault {
    let ids = |keep: bool| -> Vec<NodeId> {
        (0..config.nodes())
            .filter(|i| alone.contains(i) != keep)
            .map(NodeId)
            .collect()
    };
    Fault::Network(NetChange::Partition {
        groups: vec![ids(true), ids(false)],
    })
}

#[test]
fn four_replicas_complete_a_thousand_requests_without_faults() {
    let config = Config {
        clients: 4,
        requests_per_client: 250,
        ..Config::default()
    };
    let report = expect_ok(
        run(
            &config,
            1,
            TestNet::new("uniform:1ms..20ms"),
            None,
            &[],
            Time::ZERO,
        ),
        "no faults",
    );
    assert_eq!(
        report.end,
        EndReason::Quiescent,
        "nothing left to do: the run goes quiet"
    );
    assert_eq!(completed(&report), 1_000);
    assert_converged(&report, &[0, 1, 2, 3]);
    // One request per block at most (no batching); empty blocks carry the chain on while
    // blocks with requests wait for their 3-chain.
    let height = report.actors[0].as_replica().unwrap().committed_height();
    assert!(height >= 1_000, "height {height}");
}

#[test]
fn a_crashed_leader_is_skipped_by_the_pacemaker() {
    let config = Config {
        clients: 2,
        requests_per_client: 100,
        ..Config::default()
    };
    for seed in 1..=3 {
        // n1 leads views 4 to 7, n0 the first term: n1 crashes before its term comes.
        let crash = (Time::from_millis(30), Fault::Crash(NodeId(1)));
        let report = expect_ok(
            run(
                &config,
                seed,
                TestNet::new("uniform:1ms..20ms"),
                Some(Duration::from_secs(300)),
                &[crash],
                Time::from_millis(30),
            ),
            "crashed leader",
        );
        assert_eq!(completed(&report), 200, "seed {seed}");
        assert_converged(&report, &[0, 2, 3]);
        // The others moved on past many of n1's terms, each skipped by one TC.
        let view = report.actors[0].as_replica().unwrap().view();
        assert!(view > 16, "seed {seed}: only reached view {view}");
        assert_eq!(leader_of(4, 4), NodeId(1));
    }
}

#[test]
fn a_partitioned_replica_catches_up_after_heal() {
    let config = Config {
        clients: 2,
        requests_per_client: 150,
        ..Config::default()
    };
    for seed in 1..=3 {
        let heal_at = Time::from_secs(5);
        let faults = [
            (Time::from_secs(1), isolate(&config, &[3])),
            (heal_at, Fault::Network(NetChange::Heal)),
        ];
        let report = expect_ok(
            run(
                &config,
                seed,
                TestNet::new("uniform:1ms..20ms"),
                Some(Duration::from_secs(300)),
                &faults,
                heal_at,
            ),
            "partitioned replica",
        );
        assert_eq!(completed(&report), 300, "seed {seed}");
        // Cut off for 4 s, n3 fetched the blocks it missed and committed them.
        assert_converged(&report, &[0, 1, 2, 3]);
    }
}

#[test]
fn ten_percent_loss_still_completes_every_request() {
    let config = Config {
        clients: 2,
        requests_per_client: 50,
        ..Config::default()
    }
    .termination_bound_under_loss(0.1);
    for seed in 1..=5 {
        let report = expect_ok(
            run(
                &config,
                seed,
                TestNet::new("uniform:1ms..20ms").loss(0.1),
                Some(Duration::from_secs(600)),
                &[],
                Time::ZERO,
            ),
            "10% loss",
        );
        assert_eq!(completed(&report), 100, "seed {seed}");
    }
}

#[test]
fn f_plus_one_crashed_replicas_stop_progress_without_a_safety_violation() {
    let config = Config {
        clients: 2,
        requests_per_client: 100,
        ..Config::default()
    };
    let crashes = [
        (Time::from_secs(1), Fault::Crash(NodeId(2))),
        (Time::from_secs(1), Fault::Crash(NodeId(3))),
    ];
    let mut sim_config = SimConfig::new(1);
    sim_config.deadline = Some(Time::from_secs(60));
    let mut sim = Simulation::new(
        sim_config,
        hotstuff::actors(&config).unwrap(),
        TestNet::new("uniform:1ms..20ms"),
    );
    for check in hotstuff::safety_checks(&config) {
        sim.add_invariant(check);
    }
    for (at, fault) in crashes {
        sim.schedule_fault(at, fault).unwrap();
    }
    let report = expect_ok(sim.run(), "f+1 crashes");
    assert_eq!(
        report.end,
        EndReason::Deadline,
        "the survivors keep timing out"
    );
    let done = completed(&report);
    assert!(done > 0 && done < 200, "{done} requests completed");
    let heights: Vec<u64> = [0, 1]
        .iter()
        .map(|&i| report.actors[i].as_replica().unwrap().committed_height())
        .collect();
    assert!(heights.iter().all(|&h| h < 200), "{heights:?}");
}

#[test]
fn seven_replicas_tolerate_two_crashes_including_a_leader() {
    let config = Config {
        clients: 3,
        requests_per_client: 60,
        ..Config::with_replicas(7).unwrap()
    };
    assert_eq!(config.f, 2);
    for seed in 1..=3 {
        let crashes = [
            (Time::from_millis(500), Fault::Crash(NodeId(1))),
            (Time::from_millis(500), Fault::Crash(NodeId(5))),
        ];
        let report = expect_ok(
            run(
                &config,
                seed,
                TestNet::new("uniform:1ms..20ms"),
                Some(Duration::from_secs(300)),
                &crashes,
                Time::from_millis(500),
            ),
            "seven replicas, two crashes",
        );
        assert_eq!(completed(&report), 180, "seed {seed}");
        assert_converged(&report, &[0, 2, 3, 4, 6]);
    }
}

#[test]
fn every_byzantine_behaviour_of_a_leader_or_a_replica_leaves_the_correct_protocol_safe_and_live() {
    let config = Config {
        clients: 2,
        requests_per_client: 40,
        ..Config::default()
    };
    for behavior in hotstuff::Behavior::NAMES {
        // n0 leads the first term, n2 a later one.
        for (node, seed) in [(0, 1), (0, 2), (2, 3), (2, 4)] {
            let turn = (
                Time::ZERO,
                Fault::Byzantine {
                    node: NodeId(node),
                    behavior: behavior.to_string(),
                },
            );
            let report = run(
                &config,
                seed,
                TestNet::new("uniform:1ms..20ms"),
                Some(Duration::from_secs(600)),
                &[turn],
                Time::ZERO,
            );
            assert_eq!(
                report.outcome,
                Outcome::Ok,
                "{behavior} n{node}, seed {seed}: {:?}",
                report.violations
            );
            assert_eq!(completed(&report), 80, "{behavior} n{node}, seed {seed}");
        }
    }
}

#[test]
fn an_equivocating_leader_sends_conflicting_proposals_and_safety_holds() {
    let config = Config {
        clients: 3,
        requests_per_client: 30,
        batch_max: 4,
        ..Config::default()
    };
    let mut conflicting = 0;
    for seed in 1..=5 {
        let turn = (
            Time::ZERO,
            Fault::Byzantine {
                node: NodeId(0),
                behavior: "equivocate".into(),
            },
        );
        let mut sim_config = SimConfig::new(seed);
        sim_config.keep_trace = true;
        sim_config.deadline = Some(Time::from_secs(600));
        let mut sim = Simulation::new(
            sim_config,
            hotstuff::actors(&config).unwrap(),
            TestNet::new("uniform:1ms..20ms"),
        );
        for check in hotstuff::checks(&config) {
            sim.add_invariant(check);
        }
        sim.schedule_fault(turn.0, turn.1).unwrap();
        let report = expect_ok(sim.run(), "equivocating leader");
        assert_eq!(completed(&report), 90);
        // Correct replicas voted for two different blocks in one view: the attack reached
        // them (each voted once, for whichever came first).
        let mut voted: std::collections::BTreeMap<u64, std::collections::BTreeSet<String>> =
            Default::default();
        for e in &report.trace {
            if let rehearsal_sim_core::EventKind::Output { value } = &e.kind {
                if value["event"] == "voted" && e.node != NodeId(0) {
                    let view = value["view"].as_u64().unwrap();
                    voted
                        .entry(view)
                        .or_default()
                        .insert(value["block"].to_string());
                }
            }
        }
        conflicting += voted.values().filter(|blocks| blocks.len() > 1).count();
    }
    assert!(conflicting > 0, "the equivocating leader never equivocated");
}

#[test]
fn a_replica_restarted_from_its_saved_state_catches_up_and_never_votes_twice() {
    let config = Config {
        clients: 2,
        requests_per_client: 100,
        ..Config::default()
    };
    for seed in 1..=3 {
        let faults = [
            (Time::from_secs(2), Fault::Crash(NodeId(2))),
            (Time::from_secs(4), Fault::Restart(NodeId(2))),
        ];
        let report = expect_ok(
            run(
                &config,
                seed,
                TestNet::new("uniform:1ms..20ms"),
                Some(Duration::from_secs(300)),
                &faults,
                Time::from_secs(4),
            ),
            "restart",
        );
        assert_eq!(completed(&report), 200, "seed {seed}");
        assert_converged(&report, &[0, 1, 2, 3]);
    }
}

#[test]
fn ed25519_signatures_run_the_same_protocol() {
    let config = Config {
        clients: 1,
        requests_per_client: 10,
        crypto: CryptoKind::Real,
        ..Config::default()
    };
    let report = expect_ok(
        run(
            &config,
            1,
            TestNet::new("constant:5ms"),
            None,
            &[],
            Time::ZERO,
        ),
        "ed25519",
    );
    assert_eq!(completed(&report), 10);
}

#[test]
fn same_seed_same_run_and_other_seeds_other_runs() {
    let config = Config {
        clients: 2,
        requests_per_client: 20,
        ..Config::default()
    };
    let digest = |seed| {
        run(
            &config,
            seed,
            TestNet::new("uniform:1ms..20ms").loss(0.05),
            Some(Duration::from_secs(300)),
            &[],
            Time::ZERO,
        )
        .result
        .digest
    };
    assert_eq!(digest(7), digest(7));
    assert_ne!(digest(7), digest(8));
}

// ---- Validation of messages -------------------------------------------------------------

fn keys() -> Vec<Crypto> {
    Crypto::generate(CryptoKind::Sim, 3, 4)
}

fn qc_of(keys: &[Crypto], view: u64, block: Digest, signers: &[usize]) -> Qc {
    Qc::of(
        view,
        block,
        signers
            .iter()
            .map(|&i| {
                let v = Vote::signed(&keys[i], view, block);
                (v.voter, v.sig)
            })
            .collect(),
    )
}

fn genuine_check(qc: &hotstuff::messages::QcBody, crypto: &Crypto) -> bool {
    qc.verify(crypto, 4, 3).is_ok()
}

#[test]
fn a_qc_needs_a_quorum_of_distinct_valid_signers() {
    let keys = keys();
    let block = Digest::of(b"b");
    assert!(qc_of(&keys, 5, block, &[0, 1, 2])
        .verify(&keys[3], 4, 3)
        .is_ok());
    let err = |qc: Qc| qc.verify(&keys[3], 4, 3).unwrap_err();
    assert!(err(qc_of(&keys, 5, block, &[0, 1])).contains("fewer than the quorum"));
    assert!(err(qc_of(&keys, 5, block, &[0, 1, 1])).contains("two votes from n1"));
    // A certificate found valid remembers it (replicas share it in a simulation); a copy
    // changed afterwards does not.
    let genuine = qc_of(&keys, 5, block, &[0, 1, 2]);
    let check = |qc: &hotstuff::messages::QcBody| genuine_check(qc, &keys[3]);
    assert!(genuine.verified(&keys[3], 3, check));
    let mut forged = genuine.clone();
    Shared::make_mut(&mut forged).block = Digest::of(b"other");
    assert!(!forged.verified(&keys[3], 3, check));
    assert!(genuine.verified(&keys[3], 3, |_| unreachable!("remembered")));
    assert!(err(forged).contains("bad signature"));
    let mut stranger = qc_of(&keys, 5, block, &[0, 1, 2]);
    let mut votes = stranger.votes.to_vec();
    votes[0].0 = 9;
    Shared::make_mut(&mut stranger).votes = votes.into();
    assert!(err(stranger).contains("not a replica"));
    let mut fake_genesis = Qc::genesis();
    Shared::make_mut(&mut fake_genesis).block = block;
    assert!(err(fake_genesis).contains("genesis"));
    assert!(Qc::genesis().verify(&keys[0], 4, 3).is_ok());
}

#[test]
fn a_tc_must_name_its_highest_qc_and_carry_it() {
    let keys = keys();
    let qc = qc_of(&keys, 2, Digest::of(b"b"), &[0, 1, 2]);
    let timeouts: Vec<Arc<Timeout>> = (0..3)
        .map(|i| {
            Arc::new(Timeout::signed(
                &keys[i],
                4,
                if i == 0 { qc.clone() } else { Qc::genesis() },
            ))
        })
        .collect();
    assert!(timeouts.iter().all(|t| t.verify(&keys[3])));
    let tc = Tc {
        view: 4,
        timeouts: timeouts
            .iter()
            .map(|t| (t.sender, t.high_qc.view, t.sig))
            .collect(),
        high_qc: qc,
    };
    assert!(tc.verify(&keys[3], 4, 3, 3).is_ok());
    let lower = Tc {
        high_qc: Qc::genesis(),
        ..tc.clone()
    };
    assert!(lower
        .verify(&keys[3], 4, 3, 3)
        .unwrap_err()
        .contains("highest"));
    let small = Tc {
        timeouts: tc.timeouts[..2].to_vec(),
        ..tc.clone()
    };
    assert!(small
        .verify(&keys[3], 4, 3, 3)
        .unwrap_err()
        .contains("fewer than the quorum"));
}

#[test]
fn a_block_hash_binds_its_contents_and_a_proposal_its_leader() {
    let keys = keys();
    let block = Block::new(4, 1, Qc::genesis(), Arc::from(Vec::new()));
    assert!(block.hash_is_right());
    assert_eq!(block.parent, genesis_hash());
    let mut changed = block.clone();
    changed.height = 2;
    assert!(!changed.hash_is_right());
    // View 4 is n1's: n1's signature is the leader's, n0's is not.
    let proposal = Proposal::signed(&keys[1], Arc::new(block.clone()), None);
    assert!(proposal.signed_by_leader(&keys[3], 4));
    let forged = Proposal::signed(&keys[0], Arc::new(block), None);
    assert!(!forged.signed_by_leader(&keys[3], 4));
}

// ---- The checks ---------------------------------------------------------------------------

fn executed(height: u64, block: Digest, parent: Digest) -> Output {
    Output::Executed {
        height,
        view: height,
        block,
        parent,
        requests: Vec::new(),
    }
}

#[test]
fn the_per_replica_checks_catch_a_lock_going_back_and_a_second_vote_in_a_view() {
    let config = Config::default();
    let t = Time::ZERO;
    let b = Digest::of(b"b");
    let mut lock = LockMonotonic::new(&config);
    assert!(lock
        .on_output(NodeId(1), t, &Output::Locked { view: 5, block: b })
        .is_ok());
    assert!(lock
        .on_output(NodeId(2), t, &Output::Locked { view: 3, block: b })
        .is_ok());
    let err = lock
        .on_output(NodeId(1), t, &Output::Locked { view: 4, block: b })
        .unwrap_err();
    assert!(err.contains("n1 locked on view 4 after view 5"), "{err}");

    let mut votes = VotesIncrease::new(&config);
    assert!(votes
        .on_output(NodeId(1), t, &Output::Voted { view: 5, block: b })
        .is_ok());
    let err = votes
        .on_output(
            NodeId(1),
            t,
            &Output::Voted {
                view: 5,
                block: Digest::of(b"c"),
            },
        )
        .unwrap_err();
    assert!(err.contains("in view 5 after voting"), "{err}");
    // A Byzantine replica's votes do not count.
    let byzantine = Output::Byzantine {
        behavior: "double-vote".into(),
    };
    assert!(votes.on_output(NodeId(2), t, &byzantine).is_ok());
    assert!(votes
        .on_output(NodeId(2), t, &Output::Voted { view: 1, block: b })
        .is_ok());
    assert!(votes
        .on_output(NodeId(2), t, &Output::Voted { view: 1, block: b })
        .is_ok());
}

#[test]
fn agreement_and_in_order_catch_conflicting_and_broken_chains() {
    let config = Config::default();
    let t = Time::ZERO;
    let (a, b, c) = (Digest::of(b"a"), Digest::of(b"b"), Digest::of(b"c"));
    let mut agreement = Agreement::new(&config);
    assert!(agreement
        .on_output(NodeId(0), t, &executed(1, a, genesis_hash()))
        .is_ok());
    assert!(agreement
        .on_output(NodeId(1), t, &executed(1, a, genesis_hash()))
        .is_ok());
    let err = agreement
        .on_output(NodeId(2), t, &executed(1, b, genesis_hash()))
        .unwrap_err();
    assert!(err.contains("at height 1"), "{err}");

    let mut order = InOrderExecution::new(&config);
    assert!(order
        .on_output(NodeId(0), t, &executed(1, a, genesis_hash()))
        .is_ok());
    let err = order
        .on_output(NodeId(0), t, &executed(2, c, b))
        .unwrap_err();
    assert!(err.contains("whose parent"), "{err}");
    let err = order
        .on_output(NodeId(1), t, &executed(2, b, a))
        .unwrap_err();
    assert!(err.contains("height 2 after height 0"), "{err}");
}

#[test]
fn damaged_and_duplicated_messages_are_dropped_and_annotated_never_fatal() {
    let config = Config {
        clients: 2,
        requests_per_client: 30,
        ..Config::default()
    };
    let mut annotated = 0;
    for seed in 1..=8 {
        let mut sim_config = SimConfig::new(seed);
        sim_config.keep_trace = true;
        sim_config.deadline = Some(Time::from_secs(600));
        let net = TestNet::new("uniform:1ms..20ms")
            .corrupt(0.05)
            .duplicate(0.05);
        let mut sim = Simulation::new(sim_config, hotstuff::actors(&config).unwrap(), net);
        for check in hotstuff::checks(&config) {
            sim.add_invariant(check);
        }
        let report = expect_ok(sim.run(), "damaged messages");
        assert_eq!(completed(&report), 60, "seed {seed}");
        annotated += report
            .trace
            .iter()
            .filter(|e| {
                matches!(&e.kind, rehearsal_sim_core::EventKind::Annotate { label }
                    if label.starts_with("drop") && (label.contains("bad") || label.contains("hash") || label.contains("QC")))
            })
            .count();
    }
    assert!(annotated > 0, "damage must have been noticed and annotated");
}

#[test]
fn timeout_quorum_needs_2f_plus_1_replicas_that_did_give_up() {
    use rehearsal_protocols::hotstuff::checks::TimeoutQuorum;
    let config = Config::default();
    let t = Time::ZERO;
    let certified = |signers: Vec<u32>| Output::TimeoutCertified { view: 8, signers };
    let mut check = TimeoutQuorum::new(&config);
    for node in [0, 2, 3] {
        assert!(check
            .on_output(NodeId(node), t, &Output::TimedOut { view: 8 })
            .is_ok());
    }
    assert!(check
        .on_output(NodeId(2), t, &certified(vec![0, 2, 3]))
        .is_ok());
    let err = check
        .on_output(NodeId(3), t, &certified(vec![0, 2, 2]))
        .unwrap_err();
    assert!(
        err.contains("2 timeouts (n0, n2), fewer than 2f+1 = 3"),
        "{err}"
    );
    let err = check
        .on_output(NodeId(0), t, &certified(vec![0, 1, 2]))
        .unwrap_err();
    assert!(err.contains("naming n1, which never gave up"), "{err}");
    // A Byzantine replica signs what it likes.
    let byzantine = Output::Byzantine {
        behavior: "silent".into(),
    };
    assert!(check.on_output(NodeId(1), t, &byzantine).is_ok());
    assert!(check
        .on_output(NodeId(0), t, &certified(vec![0, 1, 2]))
        .is_ok());
}
