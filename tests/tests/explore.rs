//! `rehearsal explore`: bounded exhaustive exploration of the same actors the simulator
//! runs, its verdicts, its counterexample traces and its errors.

use rehearsal::config::{Protocol, RunConfig};
use rehearsal_sim_core::explore::{Bounds, Search, Stats};
use rehearsal_tests::{cli, explore_counterexample_replays, scratch_dir};
use rehearsal_traces::read_trace;

fn config(protocol: &str, clients: u32, requests: u64, mutant: Option<&str>) -> RunConfig {
    RunConfig {
        clients,
        requests,
        mutant: mutant.map(str::to_string),
        ..RunConfig::new(Protocol::of(protocol))
    }
}

fn bounds(search: Search, timers: u32) -> Bounds {
    Bounds {
        search,
        timer_firings_max: timers,
        ..Bounds::default()
    }
}

#[test]
fn a_retransmission_that_executes_twice_is_found_by_both_searches() {
    let c = config("unreplicated", 2, 2, Some("execute-retransmissions"));
    for search in [Search::Bfs, Search::Dfs] {
        let mut e = c
            .protocol
            .explore(&c, bounds(search, 1), &[])
            .expect("unreplicated explores");
        let stats = e.run(1_000_000);
        assert!(stats.done, "{search:?}: {stats:?}");
        let found = e
            .found()
            .unwrap_or_else(|| panic!("{search:?} finds the double execution"));
        assert_eq!(found.invariant, "requests-answered");
        assert!(found.detail.contains("executed twice"), "{}", found.detail);
        if search == Search::Bfs {
            // Deliver the request, fire the retransmission timer, deliver the copy.
            assert_eq!(found.steps.len(), 3, "{:?}", found.steps);
            assert!(
                found.steps[1].contains("fires Retransmit"),
                "{:?}",
                found.steps
            );
        }
    }
}

#[test]
fn without_a_timer_firing_the_mutant_cannot_go_wrong_and_the_correct_server_never_does() {
    // No retransmission, no second execution: the whole space is explored, clean.
    let c = config("unreplicated", 2, 2, Some("execute-retransmissions"));
    let mut e = c
        .protocol
        .explore(&c, bounds(Search::Bfs, 0), &[])
        .expect("explores");
    let stats = e.run(1_000_000);
    assert!(
        stats.done && e.found().is_none(),
        "{stats:?} {:?}",
        e.found()
    );
    // The correct server with retransmissions allowed: clean too, and more states.
    let c = config("unreplicated", 2, 2, None);
    let mut e = c
        .protocol
        .explore(&c, bounds(Search::Bfs, 2), &[])
        .expect("explores");
    let more = e.run(1_000_000);
    assert!(more.done && e.found().is_none(), "{more:?} {:?}", e.found());
    assert!(more.states > stats.states, "{more:?} vs {stats:?}");
}

#[test]
fn correct_pbft_is_clean_within_a_small_bound_and_explores_the_same_states_twice() {
    let c = config("pbft", 1, 1, None);
    let b = Bounds {
        depth_max: 7,
        ..bounds(Search::Bfs, 0)
    };
    let mut first = c.protocol.explore(&c, b, &[]).expect("pbft explores");
    let stats = first.run(10_000_000);
    assert!(stats.done, "{stats:?}");
    assert!(first.found().is_none(), "{:?}", first.found());
    assert!(
        stats.states > 1_000,
        "a PBFT request has many orders: {stats:?}"
    );
    let mut again = c.protocol.explore(&c, b, &[]).expect("pbft explores");
    assert_eq!(
        again.run(10_000_000),
        stats,
        "same inputs, same exploration"
    );
    // The reduction skips orders, never states.
    let mut full = c
        .protocol
        .explore(
            &c,
            Bounds {
                reduction: false,
                ..b
            },
            &[],
        )
        .expect("pbft explores");
    let full_stats = full.run(100_000_000);
    assert!(full_stats.done);
    assert_eq!(full_stats.states, stats.states);
    assert!(
        full_stats.steps > stats.steps,
        "{full_stats:?} vs {stats:?}"
    );
    // Remembered handler calls stand for most steps, and change no state and no step.
    assert!(stats.recalled > stats.steps / 2, "{stats:?}");
    let mut calling = c.protocol.explore(&c, b, &[]).expect("pbft explores");
    calling.remember_transitions(false);
    let calling_stats = calling.run(10_000_000);
    assert_eq!(calling_stats.recalled, 0);
    assert_eq!(
        Stats {
            recalled: 0,
            ..stats
        },
        calling_stats
    );
}

#[test]
fn the_counterexample_becomes_a_trace_that_replays() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_trace");
    let trace = dir.join("found.jsonl");
    let trace_arg = trace.to_str().expect("utf-8 path");
    let run = cli(&[
        "explore",
        "--protocol",
        "unreplicated",
        "--clients",
        "2",
        "--requests",
        "2",
        "--mutant",
        "execute-retransmissions",
        "--timers",
        "1",
        "--trace",
        trace_arg,
    ]);
    assert_eq!(
        run.status, 1,
        "a violation found: {}{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains("VIOLATION of requests-answered"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the simulator re-enacted the path"),
        "{}",
        run.stdout
    );
    let recorded = read_trace(&trace).expect("an ordinary trace");
    assert_eq!(recorded.footer.outcome, "violation");
    assert!(recorded.footer.violations[0].starts_with("requests-answered"));
    let replay = cli(&["replay", trace_arg]);
    assert!(replay.stdout.contains("identical"), "{}", replay.stdout);
    assert_eq!(
        replay.status, 1,
        "identical, and the run fails: {}",
        replay.stdout
    );
    let show = cli(&["show", trace_arg]);
    assert_eq!(show.status, 0, "{}", show.stderr);
    assert!(show.stdout.contains("VIOLATION"), "{}", show.stdout);
}

#[test]
fn a_search_stops_at_its_memory_bound_and_says_so() {
    // Breadth-first search keeps its frontier; random schedules keep what they met too
    // (each distinct state, each handler call).
    for strategy in ["bfs", "choices"] {
        let run = cli(&[
            "explore",
            "--protocol",
            "pbft",
            "--clients",
            "1",
            "--requests",
            "2",
            "--strategy",
            strategy,
            "--budget",
            "60s",
            "--max-memory",
            "64M",
            "--json",
        ]);
        assert_eq!(run.status, 0, "{strategy}: {}{}", run.stdout, run.stderr);
        let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("json");
        assert_eq!(v["outcome"], "memory", "{strategy}: {v}");
        assert!(
            v["wall_time_ns"]
                .as_u64()
                .is_some_and(|ns| ns < 60_000_000_000),
            "{strategy}: {v}"
        );
    }
    let bad = cli(&["explore", "--protocol", "pbft", "--max-memory", "lots"]);
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("`lots` is not a size"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_counterexample_with_a_byzantine_primary_is_a_trace_that_replays() {
    // PBFT's equivocating primary, under the mutant that skips the digest check: the
    // simulator re-enacts the path with the primary Byzantine from the start.
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_byzantine");
    let trace = dir.join("pbft.jsonl");
    explore_counterexample_replays(
        &[
            "--protocol",
            "pbft",
            "--clients",
            "1",
            "--requests",
            "2",
            "--mutant",
            "no-digest-check",
            "--byzantine",
            "0:equivocate",
            "--strategy",
            "choices",
            "--timers",
            "4",
            "--depth",
            "200",
        ],
        &trace,
        "agreement",
    );
}

#[test]
fn json_reports_the_search_and_its_verdict() {
    let run = cli(&[
        "explore",
        "--protocol",
        "unreplicated",
        "--clients",
        "1",
        "--requests",
        "2",
        "--strategy",
        "dfs",
        "--timers",
        "1",
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    assert_eq!(v["protocol"], "unreplicated");
    assert_eq!(v["strategy"], "dfs");
    assert_eq!(v["outcome"], "exhausted");
    assert!(v["stats"]["states"].as_u64().unwrap() > 1);
    assert!(v["violation"].is_null());
}

#[test]
fn flags_that_do_not_apply_and_protocols_that_cannot_be_explored_are_refused() {
    for (args, expected) in [
        (
            vec!["explore", "--protocol", "pbft", "--swarm"],
            "--swarm does not apply",
        ),
        (
            vec!["explore", "--protocol", "pbft", "--seeds", "3"],
            "--seeds does not apply",
        ),
        (
            vec!["explore", "--protocol", "pbft", "--depth", "0"],
            "--depth must be at least 1",
        ),
        (
            vec!["explore", "--protocol", "benaloh-timed"],
            "protocol `benaloh-timed` cannot be explored",
        ),
        (
            vec!["explore", "--protocol", "pbft", "--strategy", "sideways"],
            "sideways",
        ),
    ] {
        let run = cli(&args);
        assert_eq!(run.status, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn the_list_of_explorable_protocols_is_the_registry_s() {
    for protocol in Protocol::all() {
        let c = RunConfig::new(protocol);
        let explorable = protocol.explore(&c, Bounds::default(), &[]).is_ok();
        assert_eq!(
            explorable,
            rehearsal::registry::EXPLORABLE.contains(&protocol.name()),
            "{}",
            protocol.name()
        );
    }
}

#[test]
fn hotstuff_s_small_timeout_quorum_is_found_in_four_steps() {
    // Two view timers fire (or one, and the join rule adds the leader's own timeout):
    // f+1 timeouts make a certificate under the mutant.
    let c = config("hotstuff", 1, 1, Some("small-timeout-quorum"));
    let mut e = c
        .protocol
        .explore(&c, bounds(Search::Bfs, 2), &[])
        .expect("hotstuff explores");
    let stats = e.run(10_000_000);
    let found = e.found().unwrap_or_else(|| panic!("found: {stats:?}"));
    assert_eq!(found.invariant, "timeout-quorum");
    assert!(found.steps.len() <= 4, "{:?}", found.steps);
    // The correct protocol, at the depth the counterexample needed: clean.
    let c = config("hotstuff", 1, 1, None);
    let b = Bounds {
        depth_max: 5,
        ..bounds(Search::Bfs, 2)
    };
    let mut e = c.protocol.explore(&c, b, &[]).expect("hotstuff explores");
    let stats = e.run(10_000_000);
    assert!(
        stats.done && e.found().is_none(),
        "{stats:?} {:?}",
        e.found()
    );
}

mod choices {
    use super::*;
    use rehearsal_traces::schedules::{check_schedules, find_schedule_failure};

    #[test]
    fn random_schedules_find_the_mutants_and_shrink_the_failing_one() {
        for (protocol, mutant, invariant) in [
            (
                "unreplicated",
                "execute-retransmissions",
                "requests-answered",
            ),
            ("hotstuff", "small-timeout-quorum", "timeout-quorum"),
        ] {
            let c = config(protocol, 2, 1, Some(mutant));
            let mut e = c
                .protocol
                .explore(&c, bounds(Search::Dfs, 2), &[])
                .expect("explores");
            let failure = find_schedule_failure(e.as_mut(), 200, 7)
                .unwrap_or_else(|| panic!("{protocol} {mutant}: no failing schedule"));
            assert_eq!(failure.found.invariant, invariant);
            // The shrunk schedule fails on its own, and is the exploration's counterexample.
            assert!(failure.choices.len() <= 64, "{:?}", failure.choices);
            let again = e
                .walk(&failure.choices)
                .expect("the shrunk schedule fails again");
            assert_eq!(again, failure.found);
            assert!(e.record().is_some());
        }
    }

    #[test]
    fn the_same_seed_draws_the_same_schedules() {
        let c = config("hotstuff", 2, 1, Some("small-timeout-quorum"));
        let run = |seed| {
            let mut e = c
                .protocol
                .explore(&c, bounds(Search::Dfs, 2), &[])
                .expect("explores");
            let failure = find_schedule_failure(e.as_mut(), 200, seed).expect("found");
            (failure.choices, failure.found, failure.schedules)
        };
        assert_eq!(run(3), run(3));
    }

    #[test]
    fn correct_protocols_pass_random_schedules() {
        for protocol in ["unreplicated", "pbft", "hotstuff"] {
            let c = config(protocol, 1, 2, None);
            let e = c
                .protocol
                .explore(&c, bounds(Search::Dfs, 2), &[])
                .expect("explores");
            check_schedules(protocol, 100, e);
        }
    }

    #[test]
    #[should_panic(expected = "violation of requests-answered")]
    fn check_schedules_fails_a_test_with_the_shrunk_schedule() {
        let c = config("unreplicated", 2, 1, Some("execute-retransmissions"));
        let e = c
            .protocol
            .explore(&c, bounds(Search::Dfs, 1), &[])
            .expect("explores");
        check_schedules("double execution", 100, e);
    }

    #[test]
    fn the_command_line_reports_schedules_and_the_shrunk_choices() {
        let run = cli(&[
            "explore",
            "--protocol",
            "hotstuff",
            "--clients",
            "1",
            "--requests",
            "1",
            "--mutant",
            "small-timeout-quorum",
            "--timers",
            "2",
            "--strategy",
            "choices",
            "--json",
        ]);
        assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
        let v: serde_json::Value =
            serde_json::from_str(run.stdout.trim()).expect("one JSON object");
        assert_eq!(v["strategy"], "choices");
        assert_eq!(v["outcome"], "violation");
        assert!(v["schedules"].as_u64().unwrap() >= 1);
        assert!(v["choices"].as_array().is_some_and(|c| !c.is_empty()));
        assert_eq!(v["violation"]["invariant"], "timeout-quorum");
    }
}

#[test]
fn time_passes_as_timers_fire_so_pbft_reaches_a_view_change() {
    // PBFT's tick measures how long a request has waited: with the explorer's clock moving
    // as timers fire, a view change happens, and a mutant that forgets prepared
    // certificates across it breaks agreement.
    use rehearsal_traces::schedules::find_schedule_failure;
    let c = config("pbft", 1, 2, Some("forget-prepared"));
    let b = Bounds {
        depth_max: 300,
        ..bounds(Search::Dfs, 8)
    };
    let mut e = c.protocol.explore(&c, b, &[]).expect("pbft explores");
    // The seed `rehearsal explore --seed 1` draws its first 64 schedules from.
    let failure =
        find_schedule_failure(e.as_mut(), 512, 0x9e37_79b9_7f4a_7c15).expect("a failing schedule");
    assert_eq!(failure.found.invariant, "agreement", "{failure}");
    assert!(
        failure.found.steps.iter().any(|s| s.contains("ViewChange")),
        "{failure}"
    );
}

#[test]
fn bench_search_prints_the_work_to_the_first_catch_per_strategy() {
    let run = cli(&[
        "bench",
        "search",
        "--cap",
        "2s",
        "--protocol",
        "unreplicated",
        "--strategy",
        "bfs",
        "--strategy",
        "choices",
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    let cells = v["cells"].as_array().expect("cells");
    assert_eq!(cells.len(), 2, "one mutant, two strategies: {cells:?}");
    for c in cells {
        assert_eq!(c["mutant"], "execute-retransmissions");
        assert_eq!(c["caught"], true, "{c}");
        assert_eq!(c["invariant"], "requests-answered");
    }
    let bad = cli(&["bench", "search", "--strategy", "telepathy"]);
    assert_eq!(bad.status, 2);
    assert!(
        bad.stderr.contains("unknown strategy `telepathy`"),
        "{}",
        bad.stderr
    );
}

#[test]
fn explore_runs_seeds_under_pct_with_swarm_draws_until_one_fails() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_pct");
    let trace = dir.join("pct.jsonl");
    let trace_arg = trace.to_str().expect("utf-8 path");
    let args = [
        "explore",
        "--protocol",
        "pbft",
        "--mutant",
        "no-commit",
        "--strategy",
        "pct",
        "--swarm",
        "--requests",
        "20",
        "--budget",
        "120s",
        "--trace",
        trace_arg,
        // The shrink is explore_shrink.rs's subject; time-limited, it differs run to run.
        "--no-shrink",
        "--json",
    ];
    let run = cli(&args);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    assert_eq!(v["outcome"], "violation");
    assert!(v["strategy"].as_str().unwrap().starts_with("pct"), "{v}");
    let seed = v["seed"].as_u64().expect("the failing seed");
    assert_eq!(v["runs"].as_u64(), Some(seed), "seeds from 1, one run each");
    // The same search again stops at the same seed; its trace replays.
    let mut again: serde_json::Value =
        serde_json::from_str(cli(&args).stdout.trim()).expect("one JSON object");
    let mut first = v.clone();
    for x in [&mut again, &mut first] {
        x["wall_time_ns"] = serde_json::Value::Null;
    }
    assert_eq!(again, first);
    let replay = cli(&["replay", trace_arg]);
    assert!(replay.stdout.contains("identical"), "{}", replay.stdout);
    // Flags of the state-space searches do not apply to runs.
    let bad = cli(&[
        "explore",
        "--protocol",
        "pbft",
        "--strategy",
        "random",
        "--timers",
        "2",
    ]);
    assert_eq!(bad.status, 2);
    assert!(
        bad.stderr.contains("--timers does not apply"),
        "{}",
        bad.stderr
    );
}

#[test]
fn a_counterexample_whose_timers_fire_out_of_order_replays_from_its_trace() {
    // The path fires PBFT's timers in an order their durations alone would not give; the
    // trace keeps to the recorded firing times, so the simulator re-enacts it exactly.
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_retime");
    let trace = dir.join("vc.jsonl");
    let trace_arg = trace.to_str().expect("utf-8 path");
    let run = cli(&[
        "explore",
        "--protocol",
        "pbft",
        "--clients",
        "1",
        "--requests",
        "2",
        "--mutant",
        "forget-prepared",
        "--timers",
        "8",
        "--depth",
        "300",
        "--strategy",
        "choices",
        // Not every path re-enacts (see the README's explore section: a handler that
        // compares elapsed time exactly at a timeout's boundary can decide otherwise in
        // the simulator, whose deliveries are a microsecond apart); this seed's does.
        "--seed",
        "3",
        "--trace",
        trace_arg,
        "--no-shrink",
    ]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("the simulator re-enacted the path"),
        "{}",
        run.stdout
    );
    let recorded = read_trace(&trace).expect("a trace");
    assert!(
        recorded.footer.violations[0].starts_with("agreement"),
        "{:?}",
        recorded.footer
    );
    let replay = cli(&["replay", trace_arg]);
    assert!(replay.stdout.contains("identical"), "{}", replay.stdout);
    assert_eq!(replay.status, 1);
}

#[test]
fn check_explore_is_the_cargo_test_form_of_a_state_space_search() {
    use rehearsal_traces::schedules::check_explore;
    let c = config("unreplicated", 2, 1, None);
    let e = c
        .protocol
        .explore(&c, bounds(Search::Bfs, 1), &[])
        .expect("explores");
    let stats = check_explore("clean", 1_000_000, e);
    assert!(stats.done && stats.states > 1, "{stats:?}");
    let c = config("unreplicated", 2, 1, Some("execute-retransmissions"));
    let e = c
        .protocol
        .explore(&c, bounds(Search::Bfs, 1), &[])
        .expect("explores");
    let failed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        check_explore("double", 1_000_000, e);
    }));
    let message = failed.expect_err("the mutant fails the check");
    let text = message.downcast_ref::<String>().expect("a message");
    assert!(
        text.contains("violation of requests-answered") && text.contains("fires Retransmit"),
        "{text}"
    );
}

#[test]
fn a_recorded_path_delivers_each_message_once_on_its_own_link() {
    // Every delivery names a send on the same link, and no send is delivered twice: the
    // recording is what the simulator's follower re-enacts, so a message named wrong
    // would send the re-enactment elsewhere.
    use rehearsal_sim_core::EventKind;
    use rehearsal_traces::schedules::find_schedule_failure;
    let c = config("pbft", 1, 2, Some("forget-prepared"));
    let b = Bounds {
        depth_max: 300,
        ..bounds(Search::Dfs, 8)
    };
    let mut e = c.protocol.explore(&c, b, &[]).expect("pbft explores");
    find_schedule_failure(e.as_mut(), 512, 0x9e37_79b9_7f4a_7c15).expect("a failing schedule");
    let events = e.record().expect("a recording");
    let mut delivered = std::collections::BTreeSet::new();
    let mut deliveries = 0;
    for event in &events {
        if let EventKind::Deliver { from, id } = &event.kind {
            deliveries += 1;
            let send = events
                .iter()
                .find(|s| s.seq == *id)
                .expect("the send it names");
            match &send.kind {
                EventKind::Send { to, .. } => {
                    assert_eq!(
                        (send.node, *to),
                        (*from, event.node),
                        "{event:?} names {send:?}"
                    )
                }
                other => panic!("{event:?} names {other:?}"),
            }
            assert!(delivered.insert(*id), "message {id} delivered twice");
        }
    }
    assert!(deliveries > 20, "{deliveries}");
}
