//! `rehearsal explore` on Spectrum: the correct protocol is clean in every order of a small
//! run's deliveries (with a Byzantine client too), each mutant is caught by the invariant
//! that names what it breaks, and a counterexample becomes a trace that `replay`
//! reproduces.
//!
//! The runs are two servers (nodes 0 and 1), the publisher (node 2) and clients from node
//! 3, over 2 channels of 8 bytes: the state space depends on the clients, rounds and
//! timer firings, not on the channels' size, which only makes each step dearer.

use rehearsal::config::{Protocol, RunConfig};
use rehearsal_sim_core::explore::{Bounds, Exploration, Search, Stats};
use rehearsal_sim_core::NodeId;
use rehearsal_tests::{cli, explore_counterexample_replays, scratch_dir};
use rehearsal_traces::schedules::{check_explore, check_schedules};

/// More steps than any search here takes: each one ends by exhausting its bounds or at a
/// violation.
const STEPS: u64 = 10_000_000;

/// Spectrum with `clients` clients (each a writer) for `rounds` rounds over 2 channels of
/// 8 bytes.
fn spectrum(clients: u32, rounds: u64, mutant: Option<&str>) -> RunConfig {
    let mut config = RunConfig {
        clients,
        requests: rounds,
        mutant: mutant.map(str::to_string),
        ..RunConfig::new(Protocol::of("spectrum"))
    };
    config.params.insert("channels".into(), 2.into());
    config.params.insert("message_bytes".into(), 8.into());
    config
}

/// The same settings as `rehearsal explore` flags.
const FLAGS: [&str; 6] = [
    "--protocol",
    "spectrum",
    "--channels",
    "2",
    "--message-bytes",
    "8",
];

fn bounds(search: Search, timers: u32) -> Bounds {
    Bounds {
        search,
        timer_firings_max: timers,
        ..Bounds::default()
    }
}

fn exploration(
    config: &RunConfig,
    bounds: Bounds,
    byzantine: &[(NodeId, String)],
) -> Box<dyn Exploration> {
    config
        .protocol
        .explore(config, bounds, byzantine)
        .expect("spectrum explores")
}

/// Explores `config` to the end of its bounds; panics at a violation.
fn clean(test: &str, config: &RunConfig, bounds: Bounds, byzantine: &[(NodeId, String)]) -> Stats {
    let stats = check_explore(test, STEPS, exploration(config, bounds, byzantine));
    assert!(
        stats.done,
        "{test}: every state within the bounds: {stats:?}"
    );
    stats
}

#[test]
fn correct_spectrum_is_clean_in_every_order_and_both_searches_reach_the_same_states() {
    // Two rounds of one client; one round with one timer firing (a re-sent upload, an
    // early close leaving the client out, a re-sent accumulator).
    for (clients, rounds, timers, states_min) in [(1, 2, 0, 2_000), (1, 1, 1, 4_000)] {
        let c = spectrum(clients, rounds, None);
        let test = format!("{clients} client(s), {rounds} round(s), {timers} timer firing(s)");
        let bfs = clean(&test, &c, bounds(Search::Bfs, timers), &[]);
        let dfs = clean(&test, &c, bounds(Search::Dfs, timers), &[]);
        assert!(bfs.states > states_min, "{test}: {bfs:?}");
        assert_eq!(
            bfs.states, dfs.states,
            "{test}: the same space, searched two ways"
        );
    }
}

#[test]
fn the_reduction_skips_orders_of_spectrum_s_steps_never_states() {
    let c = spectrum(2, 1, None);
    let reduced = clean("reduced", &c, bounds(Search::Dfs, 0), &[]);
    let full = clean(
        "full",
        &c,
        Bounds {
            reduction: false,
            ..bounds(Search::Dfs, 0)
        },
        &[],
    );
    assert_eq!(full.states, reduced.states);
    // Steps are skipped; whether fewer are taken in all depends on the order the search
    // meets states in (a state met again with a smaller sleep set is expanded again for
    // what it skipped), and on this small space it can cost as much as it saves.
    assert!(
        reduced.slept > 0 && full.slept == 0,
        "{full:?} vs {reduced:?}"
    );
    assert!(reduced.states > 500, "{reduced:?}");
}

#[test]
fn correct_servers_reject_every_byzantine_client_in_every_order() {
    // Client n3 writes honestly, n4 forges: the audit must reject n4 and accept n3
    // whatever order the uploads, tokens and closes arrive in.
    let c = spectrum(2, 1, None);
    let behaviors = c.protocol.byzantine_behaviors();
    assert!(behaviors.len() >= 4, "{behaviors:?}");
    for &behavior in behaviors {
        let byzantine = [(NodeId(4), behavior.to_string())];
        let stats = clean(behavior, &c, bounds(Search::Bfs, 0), &byzantine);
        assert!(stats.states > 500, "{behavior}: {stats:?}");
    }
}

/// Each mutant, the Byzantine behaviour of the run's one client (n3) that it needs to go
/// wrong (if any), the timer firings, and the invariant that catches it.
const CATCHES: &[(&str, Option<&str>, u32, &str)] = &[
    // The forgery fails the audit and is summed all the same: its channel publishes it.
    (
        "accumulate-failed-audit",
        Some("unauthorised"),
        0,
        "published-correct",
    ),
    // The forgery's seeds match, which is all this audit compares: accepted.
    (
        "seed-only-audit",
        Some("unauthorised"),
        0,
        "malicious-rejected",
    ),
    // Only the correction-word hash tells the split message apart: accepted.
    ("no-cw-hash", Some("split-message"), 0, "malicious-rejected"),
    // The upload timeout fires before the leader has decided the client, which is left
    // out of the round; its upload was summed on arrival and is published all the same.
    ("accumulate-before-audit", None, 1, "published-correct"),
];

#[test]
fn every_mutant_is_caught_by_both_searches() {
    let mutants: Vec<&str> = Protocol::of("spectrum")
        .mutants()
        .iter()
        .map(|(name, _)| *name)
        .collect();
    let listed: Vec<&str> = CATCHES.iter().map(|(mutant, ..)| *mutant).collect();
    assert_eq!(listed, mutants, "every mutant has its catch here");
    for &(mutant, behavior, timers, invariant) in CATCHES {
        let c = spectrum(1, 1, Some(mutant));
        let byzantine: Vec<(NodeId, String)> = behavior
            .map(|b| (NodeId(3), b.to_string()))
            .into_iter()
            .collect();
        for search in [Search::Bfs, Search::Dfs] {
            let mut e = exploration(&c, bounds(search, timers), &byzantine);
            let stats = e.run(STEPS);
            let found = e
                .found()
                .unwrap_or_else(|| panic!("{mutant}, {search:?}: not caught: {stats:?}"));
            assert_eq!(
                found.invariant, invariant,
                "{mutant}, {search:?}: {found:?}"
            );
            if search == Search::Bfs {
                // A round takes eight steps: two uploads, a token, a close, two
                // accumulators; a shortest counterexample needs no more.
                assert!(found.steps.len() <= 8, "{mutant}: {:?}", found.steps);
            }
        }
    }
}

#[test]
fn accumulating_before_the_audit_goes_wrong_only_when_a_client_is_left_out() {
    // Without a timer firing the leader decides every client and the early sums are the
    // accepted ones: clean, in every order of a round of two clients.
    let c = spectrum(2, 1, Some("accumulate-before-audit"));
    let stats = clean("no timeout", &c, bounds(Search::Bfs, 0), &[]);
    assert!(stats.states > 500, "{stats:?}");
}

#[test]
fn random_schedules_with_losses_and_timers_pass_correct_spectrum() {
    // Re-sent uploads, polls, re-sent closes and accumulators, late round-dones.
    let c = spectrum(2, 2, None);
    let b = Bounds {
        depth_max: 200,
        drops_max: 2,
        ..bounds(Search::Dfs, 6)
    };
    check_schedules("spectrum", 100, exploration(&c, b, &[]));
}

/// `explore`'s flags for one client's round under `mutant`, then `more`.
fn one_round<'a>(mutant: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut args = FLAGS.to_vec();
    args.extend_from_slice(&["--clients", "1", "--rounds", "1", "--mutant", mutant]);
    args.extend_from_slice(more);
    args
}

#[test]
fn a_counterexample_with_a_byzantine_client_is_a_trace_that_replays() {
    // The simulator re-enacts the path with the client Byzantine from the start, as the
    // explorer had it; the trace's configuration says so, and `replay` follows it.
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_spectrum_byzantine");
    for &(mutant, behavior, timers, invariant) in CATCHES {
        let Some(behavior) = behavior else { continue };
        let byzantine = format!("3:{behavior}");
        let timers = timers.to_string();
        let args = one_round(mutant, &["--byzantine", &byzantine, "--timers", &timers]);
        let trace = dir.join(format!("{mutant}.jsonl"));
        explore_counterexample_replays(&args, &trace, invariant);
    }
}

#[test]
fn a_counterexample_is_a_trace_that_replays_for_each_search() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_spectrum_trace");
    for strategy in ["bfs", "dfs", "choices"] {
        let args = one_round(
            "accumulate-before-audit",
            &["--timers", "1", "--strategy", strategy],
        );
        let trace = dir.join(format!("{strategy}.jsonl"));
        let run = explore_counterexample_replays(&args, &trace, "published-correct");
        assert!(run.stdout.contains("fires UploadTimeout"), "{}", run.stdout);
    }
}

#[test]
fn byzantine_servers_and_unknown_behaviours_are_refused_with_the_reason() {
    for (byzantine, expected) in [
        (
            "0:unauthorised",
            "servers are trusted not to collude; only clients can",
        ),
        (
            "2:garbage",
            "servers are trusted not to collude; only clients can",
        ),
        (
            "3:bogus",
            "no Byzantine behaviour `bogus` (it has: unauthorised",
        ),
        ("9:garbage", "the run has nodes n0 to n3"),
    ] {
        let mut args = vec!["explore"];
        args.extend_from_slice(&FLAGS);
        args.extend_from_slice(&["--clients", "1", "--byzantine", byzantine]);
        let run = cli(&args);
        assert_eq!(run.status, 2, "{byzantine}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expected), "{byzantine}: {}", run.stderr);
    }
}
