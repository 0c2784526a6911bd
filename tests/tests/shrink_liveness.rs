//! Shrinking keeps the failure it was given and makes it genuine: a shrunk liveness
//! failure of a mutant still fails with the mutant, the correct protocol following the
//! same schedule passes, and the heal time it reports is the last fault, the shrinker's
//! drops included. A shrunk PBFT agreement violation is short enough to read.

use rehearsal::config::RunConfig;
use rehearsal::run::{run_with, RunOptions, RunSummary};
use rehearsal::shrink::{follower_of, forced_drops_in, shrink, ShrinkError, ShrinkLimits};
use rehearsal_sim_core::{EventKind, TraceEvent};
use rehearsal_tests::{cli, scratch_dir};
use rehearsal_traces::follow::FORCED_DROP_REASON;
use std::path::Path;

fn example(name: &str) -> String {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pbft")
        .join(name);
    path.to_str().unwrap().to_string()
}

/// Records `args` (a `rehearsal sim` command line that must fail) into `dir/big.jsonl`.
fn record(dir: &Path, args: &[&str]) -> (RunConfig, Vec<TraceEvent>) {
    let big = dir.join("big.jsonl");
    let mut all = vec!["sim"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--trace", big.to_str().unwrap()]);
    let sim = cli(&all);
    assert_eq!(sim.status, 1, "{}{}", sim.stdout, sim.stderr);
    let trace = rehearsal_traces::read_trace(&big).unwrap();
    let config = serde_json::from_value(trace.header.config.clone()).unwrap();
    (config, trace.events)
}

/// Re-runs `run` following its own schedule (the shrinker's drops imposed again as
/// faults), with `mutant` in place of its own.
fn follow(run: &RunSummary, mutant: Option<&str>) -> RunSummary {
    let config = RunConfig {
        mutant: mutant.map(str::to_string),
        ..run.config.clone()
    };
    let options = RunOptions {
        keep_trace: true,
        follow: Some(follower_of(&run.trace)),
        minimal_network: false,
    };
    run_with(&config, options).unwrap()
}

/// When the last fault struck: the last scenario fault or drop the shrinker imposed.
fn last_fault_ns(events: &[TraceEvent]) -> u64 {
    events
        .iter()
        .filter(|e| match &e.kind {
            EventKind::Fault { .. } => true,
            EventKind::Drop { reason, .. } => reason == FORCED_DROP_REASON,
            _ => false,
        })
        .map(|e| e.t)
        .max()
        .unwrap_or(0)
}

#[test]
fn a_shrunk_no_watermarks_termination_failure_is_genuine() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_no_watermarks");
    // The README's setting, for 70 s of virtual time instead of 10 min (the requests the
    // mutant stalls are overdue from 60.3 s on), so that a debug build shrinks it quickly.
    let (config, events) = record(
        &dir,
        &[
            "--protocol",
            "pbft",
            "--clients",
            "2",
            "--requests",
            "40",
            "--net",
            &example("hold.toml"),
            "--scenario",
            &example("mutate.scenario"),
            "--mutant",
            "no-watermarks",
            "--duration",
            "70s",
        ],
    );
    let limits = ShrinkLimits {
        runs_max: 60,
        time_max: std::time::Duration::from_secs(3600),
    };
    let shrunk = shrink(&config, &events, limits, &mut |_| {}).unwrap();
    assert!(shrunk.events_after < shrunk.events_before);
    assert_eq!(shrunk.genuine, Some(true));
    let min = &shrunk.run;
    assert!(min.violations[0].starts_with("termination:"), "{min:?}");

    // Following the minimal schedule, the mutant still fails the same way and the correct
    // protocol passes.
    let again = follow(min, Some("no-watermarks"));
    assert_eq!(again.violations, min.violations);
    let correct = follow(min, None);
    assert!(correct.violations.is_empty(), "{:?}", correct.violations);

    // The heal time reported is the last fault's.
    let healed = rehearsal_sim_core::Time(last_fault_ns(&min.trace));
    assert!(
        min.violations[0].contains(&format!("after faults healed at {healed}:")),
        "{} (last fault at {healed})",
        min.violations[0]
    );
}

#[test]
fn forced_drops_are_faults_when_the_shrunk_trace_is_followed() {
    // A shrunk run's drops are recorded as plain drop events; following the trace must
    // impose them again as faults, or a liveness check counts from too early.
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_forced_faults");
    let (config, events) = record(
        &dir,
        &[
            "--protocol",
            "unreplicated",
            "--clients",
            "3",
            "--requests",
            "20",
            "--loss",
            "0.3",
            "--latency",
            "uniform:1ms..30ms",
            "--mutant",
            "execute-retransmissions",
        ],
    );
    let shrunk = shrink(&config, &events, ShrinkLimits::default(), &mut |_| {}).unwrap();
    let forced = forced_drops_in(&shrunk.run.trace);
    assert_eq!(forced.len(), shrunk.drops_forced.min(forced.len()));
    assert!(!forced.is_empty(), "the shrinker forced no drops");
    let again = follow(&shrunk.run, Some("execute-retransmissions"));
    assert_eq!(again.follow.unwrap().forced_drops, forced.len() as u64);
    assert_eq!(again.trace, shrunk.run.trace);
}

#[test]
fn a_trace_whose_failure_is_not_reproduced_is_refused() {
    // A timed-Benaloh run fails `correct-sum`; a trace claiming it failed `termination`
    // (say, with another header) must not be shrunk into its `correct-sum` failure.
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_other_failure");
    let (config, mut events) = record(
        &dir,
        &[
            "--protocol",
            "benaloh-timed",
            "--nodes",
            "8",
            "--latency",
            "uniform:1s..40s",
        ],
    );
    for e in &mut events {
        if let EventKind::Violation { invariant, .. } = &mut e.kind {
            *invariant = "termination".into();
        }
    }
    let refused = shrink(&config, &events, ShrinkLimits::default(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(&refused, ShrinkError::OtherFailure { recorded, now }
            if recorded == "termination" && now.starts_with("correct-sum")),
        "{refused}"
    );
    let message = refused.to_string();
    assert!(message.contains("`termination`") && message.contains("correct-sum"));
}

#[test]
fn a_no_digest_check_agreement_violation_shrinks_to_at_most_150_events() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_no_digest_check");
    let (config, events) = record(
        &dir,
        &[
            "--protocol",
            "pbft",
            "--clients",
            "2",
            "--requests",
            "40",
            "--net",
            &example("hold.toml"),
            "--scenario",
            &example("equivocate.scenario"),
            "--mutant",
            "no-digest-check",
        ],
    );
    // A runs budget rather than a time limit, so that a slow machine finds the same run.
    let limits = ShrinkLimits {
        runs_max: 5_000,
        time_max: std::time::Duration::from_secs(3600),
    };
    let shrunk = shrink(&config, &events, limits, &mut |_| {}).unwrap();
    assert!(!shrunk.limited);
    assert!(
        shrunk.events_after <= 150,
        "{} -> {} events",
        shrunk.events_before,
        shrunk.events_after
    );
    assert!(shrunk.run.violations[0].starts_with("agreement:"));
    assert_eq!(
        follow(&shrunk.run, Some("no-digest-check")).trace,
        shrunk.run.trace
    );
}
