//! PBFT: the normal case, batching, checkpoints, authentication, crash and restart,
//! damaged messages, reproducibility, configuration, and the checks themselves.
//! Scenario tests across crates (view changes, partitions, loss, Byzantine replicas) are
//! in `tests/tests/pbft.rs`; mutants in `pbft_mutants.rs`.

mod pbft_common;

use pbft_common::*;
use rehearsal_protocols::crypto::Digest;
use rehearsal_protocols::pbft::{
    self, Agreement, ClientConsistency, Config, ConfigError, CryptoKind, Execution,
    InOrderExecution, Integrity, LoadReason, Mutant, Op, Output, Termination, Validity,
};
use rehearsal_sim_core::{
    EndReason, EventKind, Fault, Invariant, NodeId, Outcome, RunEnd, SimConfig, Simulation, Time,
};
use std::time::Duration;

#[test]
fn four_replicas_complete_every_request_without_faults() {
    let config = Config {
        clients: 2,
        requests_per_client: 50,
        ..Config::default()
    };
    let sim = simulation(
        &config,
        1,
        TestNet::new("constant:10ms"),
        None,
        Some(Termination::new(&config)),
    );
    let report = expect_ok(sim, "no faults");
    assert_eq!(
        report.end,
        EndReason::Quiescent,
        "nothing left to do: the run goes quiet"
    );
    assert_eq!(completed(&report), 100);
    for (executed, view) in replica_states(&report) {
        assert_eq!(view, 0);
        assert_eq!(
            executed, 100,
            "no batching: one sequence number per request"
        );
    }
    // Request, pre-prepare, prepares, commits, replies: 1 + 3 + 9 + 12 + 4 per request,
    // plus 3 checkpoint messages per replica every 16 sequence numbers.
    let checkpoints = 4 * 3 * (100 / 16);
    assert_eq!(report.messages_sent, 100 * 29 + checkpoints);
}

#[test]
fn batching_packs_what_queued_while_a_batch_was_in_flight() {
    let config = Config {
        clients: 8,
        requests_per_client: 25,
        batch_max: 16,
        ..Config::default()
    };
    let tally = Tally::default();
    let mut sim = simulation(
        &config,
        3,
        TestNet::new("uniform:1ms..20ms"),
        None,
        Some(Termination::new(&config)),
    );
    sim.add_invariant(tally.clone());
    let report = expect_ok(sim, "batching");
    assert_eq!(completed(&report), 200);
    let t = tally.get();
    let batches = t.executed[&NodeId(1)];
    assert!(
        batches < 100,
        "200 requests in {batches} batches: batching did not batch"
    );
    assert!(
        t.largest_batch > 1 && t.largest_batch <= 16,
        "largest batch {}",
        t.largest_batch
    );
    assert_eq!(t.requests_executed[&NodeId(1)], 200);
}

#[test]
fn checkpoints_move_the_watermarks_and_bound_the_log() {
    let config = Config {
        clients: 1,
        requests_per_client: 100,
        checkpoint_interval: 8,
        watermark_window: 16,
        ..Config::default()
    };
    let report = expect_ok(
        simulation(&config, 2, TestNet::new("uniform:1ms..10ms"), None, None),
        "checkpoints",
    );
    for r in report.actors.iter().filter_map(pbft::Node::as_replica) {
        assert_eq!(r.last_executed(), 100);
        assert_eq!(
            r.low_watermark(),
            96,
            "{}: the last checkpoint became stable",
            r.id()
        );
        assert!(
            r.log_len() <= 16,
            "{}: {} log entries kept",
            r.id(),
            r.log_len()
        );
    }
    let digests: Vec<Digest> = report
        .actors
        .iter()
        .filter_map(pbft::Node::as_replica)
        .map(|r| r.state_digest())
        .collect();
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "replica states differ: {digests:?}"
    );
}

#[test]
fn real_ed25519_signatures_work_end_to_end() {
    // Few requests: Ed25519 is slow in unoptimised test builds (about 0.3 s a request).
    let config = Config {
        clients: 1,
        requests_per_client: 4,
        crypto: CryptoKind::Real,
        ..Config::default()
    };
    let report = expect_ok(
        simulation(
            &config,
            4,
            TestNet::new("uniform:1ms..20ms"),
            None,
            Some(Termination::new(&config)),
        ),
        "real crypto",
    );
    assert_eq!(completed(&report), 4);
}

#[test]
fn damaged_and_duplicated_messages_are_dropped_never_fatal() {
    let config = Config {
        clients: 2,
        requests_per_client: 30,
        ..Config::default()
    };
    let mut dropped_for_bad_signatures = 0;
    for seed in 1..=8 {
        let net = TestNet::new("uniform:1ms..20ms")
            .corrupt(0.05)
            .duplicate(0.05);
        let report = run_keeping_trace(&config, seed, net);
        assert_eq!(
            report.outcome,
            Outcome::Ok,
            "seed {seed}: {:?}",
            report.violations
        );
        assert_eq!(completed(&report), 60, "seed {seed}");
        dropped_for_bad_signatures += report
            .trace
            .iter()
            .filter(|e| matches!(&e.kind, EventKind::Annotate { label } if label.starts_with("drop") && label.contains("bad")))
            .count();
    }
    assert!(
        dropped_for_bad_signatures > 0,
        "damage must have been noticed and annotated"
    );
}

fn run_keeping_trace(
    config: &Config,
    seed: u64,
    net: TestNet,
) -> rehearsal_sim_core::RunReport<pbft::Node> {
    let mut sim_config = SimConfig::new(seed);
    sim_config.keep_trace = true;
    sim_config.deadline = Some(Time::from_secs(300));
    let mut sim = Simulation::new(sim_config, pbft::actors(config).unwrap(), net);
    for check in pbft::checks(config) {
        sim.add_invariant(check);
    }
    sim.run()
}

/// Two clients of 60 requests; replica `node` crashes at `crash_ms` and restarts at
/// `restart_ms`. The run must pass every check and complete every request.
fn crash_and_restart(
    seed: u64,
    node: u32,
    crash_ms: u64,
    restart_ms: u64,
    what: &str,
) -> (rehearsal_sim_core::RunReport<pbft::Node>, Tally) {
    let config = Config {
        clients: 2,
        requests_per_client: 60,
        ..Config::default()
    };
    let tally = Tally::default();
    let mut sim = simulation(
        &config,
        seed,
        TestNet::new("uniform:1ms..20ms"),
        Some(Duration::from_secs(120)),
        Some(Termination::new(&config)),
    );
    sim.add_invariant(tally.clone());
    sim.schedule_fault(Time::from_millis(crash_ms), Fault::Crash(NodeId(node)))
        .unwrap();
    sim.schedule_fault(Time::from_millis(restart_ms), Fault::Restart(NodeId(node)))
        .unwrap();
    let report = expect_ok(sim, what);
    assert_eq!(completed(&report), 120);
    (report, tally)
}

#[test]
fn a_restarted_backup_reloads_its_checkpoint_and_catches_up() {
    let (report, tally) = crash_and_restart(5, 2, 1500, 2500, "restart");
    assert_eq!(
        tally.get().restarts.get(&NodeId(2)),
        Some(&1),
        "restarted from durable state"
    );
    let states = replica_states(&report);
    assert!(
        states.iter().all(|s| s.0 == states[0].0),
        "all caught up: {states:?}"
    );
}

#[test]
fn a_restarted_primary_rejoins_after_the_view_change_it_caused() {
    let (report, _) = crash_and_restart(6, 0, 1000, 4000, "primary restart");
    let states = replica_states(&report);
    assert!(
        states.iter().all(|s| *s == states[1]),
        "the old primary caught up, view and all: {states:?}"
    );
    assert!(states[1].1 >= 1);
}

/// The primary crashes for good, and backup n3 starts the view change with its messages
/// lost (its outgoing links are cut), then crashes and restarts while the change lasts.
/// The other two backups hold only each other's view changes: the new view needs n3's,
/// so the restarted n3 must send it again from what it saved (swarm seed 3848 found a
/// replica that restored the view it was changing to but had nothing to resend).
#[test]
fn a_replica_restarted_during_a_view_change_sends_its_view_change_again() {
    let config = Config {
        clients: 1,
        requests_per_client: 40,
        ..Config::default()
    };
    let tally = Tally::default();
    let mut sim = simulation(
        &config,
        7,
        TestNet::new("constant:10ms"),
        Some(Duration::from_secs(120)),
        Some(Termination::new(&config)),
    );
    sim.add_invariant(tally.clone());
    let everyone: Vec<NodeId> = (0..config.nodes()).map(NodeId).collect();
    let faults = [
        (1_000, Fault::Crash(NodeId(0))),
        (
            1_000,
            Fault::Network(rehearsal_sim_core::NetChange::CutOneWay {
                from: vec![NodeId(3)],
                to: everyone,
            }),
        ),
        (5_000, Fault::Crash(NodeId(3))),
        (5_000, heal()),
        (6_000, Fault::Restart(NodeId(3))),
    ];
    for (at_ms, fault) in faults {
        sim.schedule_fault(Time::from_millis(at_ms), fault).unwrap();
    }
    let report = expect_ok(sim, "restart during a view change");
    assert_eq!(completed(&report), 40);
    let tally = tally.get();
    assert_eq!(tally.restarts.get(&NodeId(3)), Some(&1));
    assert!(
        tally.highest_view.get(&NodeId(1)).is_some_and(|&v| v >= 1),
        "the view change completed: {:?}",
        tally.highest_view
    );
}

#[test]
fn runs_are_reproducible_from_their_seed() {
    let config = Config {
        clients: 3,
        requests_per_client: 20,
        batch_max: 4,
        ..Config::default()
    };
    let digest = |seed| {
        let mut sim = simulation(
            &config,
            seed,
            TestNet::new("uniform:1ms..20ms").loss(0.05),
            Some(Duration::from_secs(120)),
            None,
        );
        sim.schedule_fault(
            Time::from_millis(400),
            Fault::Byzantine {
                node: NodeId(0),
                behavior: "mutate".into(),
            },
        )
        .unwrap();
        sim.run().result.digest
    };
    assert_eq!(digest(11), digest(11));
    assert_ne!(digest(11), digest(12));
}

#[test]
fn invalid_configurations_say_what_is_wrong() {
    assert_eq!(
        Config::with_replicas(5).unwrap_err(),
        ConfigError::NotThreeFPlusOne(5)
    );
    assert_eq!(
        Config::with_replicas(1).unwrap_err(),
        ConfigError::NoFaultTolerance
    );
    assert_eq!(Config::with_replicas(7).unwrap().f, 2);
    let bad = Config {
        watermark_window: 20,
        checkpoint_interval: 8,
        ..Config::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("multiple of the checkpoint interval"));
    assert!(pbft::actors(&Config {
        clients: 0,
        ..Config::default()
    })
    .is_err());
    assert!(pbft::actors(&Config {
        batch_max: 0,
        ..Config::default()
    })
    .is_err());
}

#[test]
fn mutants_and_crypto_kinds_parse_from_their_names() {
    for m in Mutant::ALL {
        assert_eq!(m.name().parse::<Mutant>().unwrap(), m);
        assert_eq!(m.to_string(), m.name());
    }
    assert_eq!(Mutant::names().len(), 6);
    assert!("no-such"
        .parse::<Mutant>()
        .unwrap_err()
        .contains("no-digest-check"));
    assert_eq!("real".parse::<CryptoKind>().unwrap(), CryptoKind::Real);
    assert_eq!("sim".parse::<CryptoKind>().unwrap(), CryptoKind::Sim);
    assert!("rsa".parse::<CryptoKind>().is_err());
}

#[test]
fn clients_cannot_be_made_byzantine_and_behaviours_are_listed() {
    use rehearsal_sim_core::Actor;
    assert_eq!(
        pbft::Node::byzantine_behaviors(),
        &["equivocate", "silent", "mutate", "twin", "fuzzed"]
    );
    let config = Config::default();
    let mut sim = simulation(&config, 1, TestNet::new("constant:10ms"), None, None);
    let err = sim
        .schedule_fault(
            Time::ZERO,
            Fault::Byzantine {
                node: NodeId(0),
                behavior: "lie".into(),
            },
        )
        .unwrap_err();
    assert!(err.contains("unknown behaviour"), "{err}");
    // A client is refused when the fault is scheduled, before anything runs.
    let err = sim
        .schedule_fault(
            Time::ZERO,
            Fault::Byzantine {
                node: NodeId(4),
                behavior: "silent".into(),
            },
        )
        .unwrap_err();
    assert!(err.contains("PBFT client and cannot be Byzantine"), "{err}");
}

#[test]
fn the_summary_reports_throughput_and_latency() {
    let config = Config {
        clients: 2,
        requests_per_client: 20,
        ..Config::default()
    };
    let report = expect_ok(
        simulation(&config, 1, TestNet::new("constant:10ms"), None, None),
        "summary",
    );
    let s = pbft::Summary::of(&report.actors);
    assert_eq!(s.completed, 40);
    // Request, pre-prepare, prepare, commit, reply: five 10 ms hops.
    assert_eq!(s.latency_ns_p50, 50_000_000);
    assert_eq!(s.latency_ns_max, 50_000_000);
    assert!(
        s.throughput_per_s > 39.0 && s.throughput_per_s < 41.0,
        "{}",
        s.throughput_per_s
    );
}

// ---- The checks, on hand-made outputs ------------------------------------------------------

fn executed(seq: u64, digest: u8, requests: Vec<Execution>) -> Output {
    Output::Executed {
        seq,
        view: 0,
        digest: Digest([digest; 32]),
        requests,
    }
}

fn exec(client: u32, number: u64, op: Op, result: u64) -> Execution {
    Execution {
        client: NodeId(client),
        number,
        op,
        result,
    }
}

const PUT: Op = Op::Put { key: 0, value: 7 };
const GET: Op = Op::Get { key: 0 };

#[test]
fn agreement_flags_two_batches_at_one_sequence_number_but_ignores_byzantine_replicas() {
    let config = Config::default();
    let mut check = Agreement::new(&config);
    let t = Time::ZERO;
    assert!(check
        .on_output(NodeId(1), t, &executed(1, 1, vec![]))
        .is_ok());
    assert!(check
        .on_output(NodeId(2), t, &executed(1, 1, vec![]))
        .is_ok());
    let byzantine = Output::Byzantine {
        behavior: "mutate".into(),
    };
    assert!(check.on_output(NodeId(3), t, &byzantine).is_ok());
    assert!(
        check
            .on_output(NodeId(3), t, &executed(1, 9, vec![]))
            .is_ok(),
        "n3 is faulty"
    );
    let err = check
        .on_output(NodeId(0), t, &executed(1, 2, vec![]))
        .unwrap_err();
    assert!(err.contains("sequence 1"), "{err}");
    let state = |d| Output::Checkpointed {
        seq: 16,
        digest: Digest([d; 32]),
    };
    assert!(check.on_output(NodeId(1), t, &state(4)).is_ok());
    assert!(check.on_output(NodeId(2), t, &state(5)).is_err());
}

#[test]
fn validity_flags_a_request_no_client_sent() {
    let config = Config::default(); // client n4
    let mut check = Validity::new(&config);
    let t = Time::ZERO;
    check
        .on_output(NodeId(4), t, &Output::Submitted { number: 1, op: PUT })
        .unwrap();
    assert!(check
        .on_output(NodeId(1), t, &executed(1, 1, vec![exec(4, 1, PUT, 0)]))
        .is_ok());
    assert!(
        check
            .on_output(NodeId(1), t, &executed(2, 1, vec![exec(4, 1, GET, 0)]))
            .is_err(),
        "other op"
    );
    assert!(
        check
            .on_output(NodeId(1), t, &executed(2, 1, vec![exec(4, 2, PUT, 0)]))
            .is_err(),
        "not sent yet"
    );
    assert!(
        check
            .on_output(NodeId(1), t, &executed(2, 1, vec![exec(2, 1, PUT, 0)]))
            .is_err(),
        "n2 is no client"
    );
}

#[test]
fn integrity_flags_a_request_executed_twice_unless_the_replica_restarted() {
    let config = Config::default();
    let mut check = Integrity::new(&config);
    let t = Time::ZERO;
    let once = executed(1, 1, vec![exec(4, 1, PUT, 0)]);
    check.on_output(NodeId(1), t, &once).unwrap();
    assert!(check.on_output(NodeId(1), t, &once).is_err());
    let restart = Output::StateLoaded {
        seq: 0,
        digest: Digest::default(),
        reason: LoadReason::Restart,
        executed: vec![],
    };
    check.on_output(NodeId(1), t, &restart).unwrap();
    assert!(
        check.on_output(NodeId(1), t, &once).is_ok(),
        "rolled back: executes it again"
    );
}

#[test]
fn in_order_execution_flags_a_gap_but_not_a_state_transfer() {
    let config = Config::default();
    let mut check = InOrderExecution::new(&config);
    let t = Time::ZERO;
    check
        .on_output(NodeId(1), t, &executed(1, 1, vec![]))
        .unwrap();
    assert!(check
        .on_output(NodeId(1), t, &executed(3, 1, vec![]))
        .is_err());
    let transfer = Output::StateLoaded {
        seq: 32,
        digest: Digest::default(),
        reason: LoadReason::Transfer,
        executed: vec![],
    };
    check.on_output(NodeId(2), t, &transfer).unwrap();
    check
        .on_output(NodeId(2), t, &executed(33, 1, vec![]))
        .unwrap();
    assert!(
        check.on_output(NodeId(2), t, &transfer).is_err(),
        "state transfer backwards"
    );
}

#[test]
fn client_consistency_flags_results_no_sequential_execution_gives() {
    let config = Config::default();
    let t = Time::ZERO;
    let completed = |number, op, result| Output::Completed {
        number,
        op,
        result,
        submitted_at: t,
        completed_at: t,
    };
    // A result no correct replica computed.
    let mut check = ClientConsistency::new(&config);
    assert!(check
        .on_output(NodeId(4), t, &completed(1, PUT, 0))
        .is_err());
    // Replicas agree with each other but not with executing the batches in order: put 7
    // then get must give 7.
    let mut check = ClientConsistency::new(&config);
    check
        .on_output(NodeId(1), t, &executed(1, 1, vec![exec(4, 1, PUT, 0)]))
        .unwrap();
    check
        .on_output(NodeId(4), t, &completed(1, PUT, 0))
        .unwrap();
    assert!(check
        .on_output(NodeId(1), t, &executed(2, 1, vec![exec(4, 2, GET, 0)]))
        .is_err());
    // A client accepting what correct replicas did not compute.
    let mut check = ClientConsistency::new(&config);
    check
        .on_output(NodeId(1), t, &executed(1, 1, vec![exec(4, 1, PUT, 0)]))
        .unwrap();
    assert!(check
        .on_output(NodeId(4), t, &completed(1, PUT, 3))
        .is_err());
}

#[test]
fn termination_flags_requests_outstanding_past_the_bound() {
    let config = Config {
        requests_per_client: 2,
        ..Config::default()
    };
    let end = |now| RunEnd::<pbft::Node> {
        now,
        reason: EndReason::Deadline,
        actors: &[],
        crashed: &[],
    };
    let mut check = Termination::new(&config)
        .after(Time::from_secs(10))
        .within(Duration::from_secs(5));
    check
        .on_output(
            NodeId(4),
            Time::from_secs(1),
            &Output::Submitted { number: 1, op: PUT },
        )
        .unwrap();
    assert!(
        check.at_end(&end(Time::from_secs(14))).is_ok(),
        "not due before 10 s + 5 s"
    );
    let err = check.at_end(&end(Time::from_secs(15))).unwrap_err();
    assert!(err.contains("completed 0 of 2"), "{err}");
    let late = Output::Completed {
        number: 1,
        op: PUT,
        result: 0,
        submitted_at: Time::from_secs(1),
        completed_at: Time::from_secs(16),
    };
    assert!(check
        .on_output(NodeId(4), Time::from_secs(16), &late)
        .is_err());
}

#[test]
fn timeouts_scaled_to_a_slow_network_survive_a_primary_crash() {
    let config = Config {
        clients: 2,
        requests_per_client: 20,
        ..Config::default()
    }
    .timeouts_for_latency(Duration::from_millis(400));
    let mut sim = simulation(
        &config,
        7,
        TestNet::new("uniform:10ms..400ms"),
        Some(Duration::from_secs(600)),
        Some(Termination::new(&config)),
    );
    sim.schedule_fault(Time::from_secs(3), Fault::Crash(NodeId(0)))
        .unwrap();
    let report = expect_ok(sim, "slow network");
    assert_eq!(completed(&report), 40);
    let views: Vec<u64> = replica_states(&report)[1..].iter().map(|s| s.1).collect();
    assert_eq!(views, vec![1, 1, 1], "one view change, no spurious ones");
}

/// The termination bound covers the client's retries at its capped backoff: more loss
/// needs more attempts, none suffice when nothing gets through, and the bound never
/// drops below the configured one.
#[test]
fn the_termination_bound_grows_with_loss_from_the_capped_backoff() {
    let config = Config::default();
    assert_eq!(config.client_retransmit_max(), Duration::from_secs(4));
    assert_eq!(config.view_change_timeout_max(), Duration::from_secs(64));
    let attempts: Vec<u32> = [0.0, 0.1, 0.26, 0.3, 0.9]
        .iter()
        .map(|&loss| config.client_attempts_under_loss(loss).unwrap())
        .collect();
    assert!(attempts.windows(2).all(|w| w[0] < w[1]), "{attempts:?}");
    assert_eq!(attempts[0], 1);
    assert_eq!(config.client_attempts_under_loss(1.0), None);
    let lossy = config.clone().termination_bound_under_loss(0.26);
    assert_eq!(
        lossy.termination_bound,
        Duration::from_secs(64) + Duration::from_secs(4) * attempts[2]
    );
    let hopeless = config.clone().termination_bound_under_loss(1.0);
    assert_eq!(hopeless.termination_bound, config.termination_bound);
}
