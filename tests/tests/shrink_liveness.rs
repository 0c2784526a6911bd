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

/// Records `args` (a `rehearsal sim` command line that must fail) into `dir/big.jsonl`:
/// its configuration, events and end time.
fn record(dir: &Path, args: &[&str]) -> (RunConfig, Vec<TraceEvent>, u64) {
    let big = dir.join("big.jsonl");
    let mut all = vec!["sim"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--trace", big.to_str().unwrap()]);
    let sim = cli(&all);
    assert_eq!(sim.status, 1, "{}{}", sim.stdout, sim.stderr);
    let trace = rehearsal_traces::read_trace(&big).unwrap();
    let config = serde_json::from_value(trace.header.config.clone()).unwrap();
    (config, trace.events, trace.footer.sim_time_ns)
}

/// Records the README's PBFT setting (2 clients x 40 requests, `hold.toml`) under the
/// example `scenario` with `mutant`, plus `extra` flags, into `dir/big.jsonl`.
fn record_readme_setting(
    dir: &Path,
    scenario: &str,
    mutant: &str,
    extra: &[&str],
) -> (RunConfig, Vec<TraceEvent>, u64) {
    let setting = rehearsal_tests::pbft_readme_setting(scenario);
    let mut args: Vec<&str> = setting.iter().map(String::as_str).collect();
    args.extend_from_slice(&["--mutant", mutant]);
    args.extend_from_slice(extra);
    record(dir, &args)
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
        follow: Some(follower_of(&run.trace, run.sim_time.as_nanos())),
        ..RunOptions::default()
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
    let (config, events, end) = record_readme_setting(
        &dir,
        "mutate.scenario",
        "no-watermarks",
        &["--duration", "70s"],
    );
    let limits = ShrinkLimits {
        runs_max: 60,
        time_max: std::time::Duration::from_secs(3600),
    };
    let shrunk = shrink(&config, &events, end, limits, &mut |_| {}).unwrap();
    assert!(shrunk.events_after < shrunk.events_before);
    assert_eq!(shrunk.genuine, Some(true));
    let min = &shrunk.run;
    assert!(min.violations[0].invariant == "termination", "{min:?}");

    // Following the minimal schedule, the mutant still fails the same way and the correct
    // protocol passes.
    let again = follow(min, Some("no-watermarks"));
    assert_eq!(again.violations, min.violations);
    let correct = follow(min, None);
    assert!(correct.violations.is_empty(), "{:?}", correct.violations);

    // The heal time reported is the last fault's.
    let healed = rehearsal_sim_core::Time(last_fault_ns(&min.trace));
    assert!(
        min.violations[0]
            .detail
            .contains(&format!("after faults healed at {healed}:")),
        "{} (last fault at {healed})",
        min.violations[0]
    );
}

#[test]
fn a_trace_whose_failure_is_not_reproduced_is_refused() {
    // A timed-Benaloh run fails `correct-sum`; a trace claiming it failed `termination`
    // (say, with another header) must not be shrunk into its `correct-sum` failure.
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_other_failure");
    let (config, mut events, end) = record(
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
    let refused = shrink(&config, &events, end, ShrinkLimits::default(), &mut |_| {}).unwrap_err();
    assert!(
        matches!(&refused, ShrinkError::OtherFailure { recorded, now }
            if recorded == "termination" && now.starts_with("correct-sum")),
        "{refused}"
    );
    let message = refused.to_string();
    assert!(message.contains("`termination`") && message.contains("correct-sum"));
}

/// Shrinks the README's setting of `mutant` (under `scenario`, with `seed`) with a runs
/// budget rather than a time limit, so that a slow machine finds the same run, and checks
/// that it ends at most 150 events long and still fails `agreement`, following its own
/// schedule exactly.
fn shrinks_to_at_most_150_events(name: &str, mutant: &str, scenario: &str, seed: &str) {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), name);
    let (config, events, end) = record_readme_setting(&dir, scenario, mutant, &["--seed", seed]);
    let limits = ShrinkLimits {
        runs_max: 20_000,
        time_max: std::time::Duration::from_secs(3600),
    };
    let shrunk = shrink(&config, &events, end, limits, &mut |_| {}).unwrap();
    assert!(!shrunk.limited);
    assert!(
        shrunk.events_after <= 150,
        "{} -> {} events",
        shrunk.events_before,
        shrunk.events_after
    );
    assert!(shrunk.run.violations[0].invariant == "agreement");
    // The shrunk run's drops are recorded as plain drop events; following the trace
    // imposes them again (as faults), or the run would not repeat.
    let forced = forced_drops_in(&shrunk.run.trace);
    assert!(!forced.is_empty(), "the shrinker forced no drops");
    assert_eq!(forced.len(), shrunk.drops_forced);
    let again = follow(&shrunk.run, Some(mutant));
    assert_eq!(again.follow.unwrap().forced_drops, forced.len() as u64);
    assert_eq!(again.trace, shrunk.run.trace);
}

#[test]
fn a_no_digest_check_agreement_violation_shrinks_to_at_most_150_events() {
    shrinks_to_at_most_150_events(
        "shrink_no_digest_check",
        "no-digest-check",
        "equivocate.scenario",
        "1",
    );
}

#[test]
fn a_no_commit_agreement_violation_shrinks_to_at_most_150_events() {
    // About 18,000 re-runs: the whole search, in a minute of a debug build.
    shrinks_to_at_most_150_events(
        "shrink_no_commit",
        "no-commit",
        "equivocate-slow-backup.scenario",
        "2",
    );
}

#[test]
fn a_small_commit_quorum_agreement_violation_shrinks_to_at_most_150_events() {
    // Seed 2 fails only at sequence 6, after the equivocating primary's random split of
    // the backups has come out right; no recorded schedule fits one request, and the
    // shrink gets there through another seed's network (about 14,000 re-runs).
    shrinks_to_at_most_150_events(
        "shrink_small_commit_quorum",
        "small-commit-quorum",
        "equivocate-slow-backup.scenario",
        "2",
    );
}

#[test]
fn a_shrunk_forget_prepared_termination_failure_is_genuine_for_the_replay_command() {
    // The issue's own check, through the command line: shrink the README's setting (for
    // 70 s of virtual time: the requests are overdue from 68.7 s on), then follow the
    // minimal trace with the mutant (it fails as recorded) and with the correct protocol
    // (it passes).
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_forget_prepared");
    let (_, _, _) = record_readme_setting(
        &dir,
        "primary-crash.scenario",
        "forget-prepared",
        &["--duration", "70s"],
    );
    let big = dir.join("big.jsonl");
    let min = dir.join("min.jsonl");
    let (big, min) = (big.to_str().unwrap(), min.to_str().unwrap());
    let shrunk = cli(&["shrink", big, "-o", min, "--runs-max", "60"]);
    assert_eq!(shrunk.status, 0, "{}{}", shrunk.stdout, shrunk.stderr);
    assert!(
        !shrunk.stdout.contains("warning"),
        "the correct protocol fails the minimal schedule too:\n{}",
        shrunk.stdout
    );
    // Exit 1: the re-enactment is identical, and fails `termination` again.
    let with_mutant = cli(&["replay", "--follow-trace", min]);
    assert_eq!(with_mutant.status, 1, "{}", with_mutant.stdout);
    assert!(
        with_mutant
            .stdout
            .contains("exit 1: identical, but the run fails (violation)"),
        "{}",
        with_mutant.stdout
    );
    assert!(
        with_mutant
            .stdout
            .contains("recorded outcome violation, now violation")
            && with_mutant.stdout.contains("termination:"),
        "{}",
        with_mutant.stdout
    );
    // Exit 1: the correct protocol departs from the recording, and passes.
    let correct = cli(&["replay", "--follow-trace", min, "--mutant", "none"]);
    assert_eq!(correct.status, 1, "{}{}", correct.stdout, correct.stderr);
    assert!(
        correct
            .stdout
            .contains("recorded outcome violation, now ok")
            && correct
                .stdout
                .contains("exit 1: the run departs from the recording (its outcome is ok)"),
        "{}",
        correct.stdout
    );
}

#[test]
fn a_failure_with_messages_still_held_when_it_struck_is_re_enacted_for_shrinking() {
    // The violation strikes at the heal, while messages held across the cut are still on
    // their way: re-enacting the recording must keep them in flight rather than deliver
    // them early, or the shrink refuses a same-binary trace as not reproduced.
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_held_at_the_end");
    let scenario = dir.join("slow-backup.scenario");
    std::fs::write(
        &scenario,
        "@0 byzantine 0 equivocate\n@0 isolate 3\n@3 heal\n",
    )
    .unwrap();
    let (config, events, end) = record(
        &dir,
        &[
            "--protocol",
            "pbft",
            "--clients",
            "1",
            "--requests",
            "1",
            "--net",
            &example("hold.toml"),
            "--scenario",
            scenario.to_str().unwrap(),
            "--mutant",
            "small-commit-quorum",
            "--seed",
            "4",
        ],
    );
    let in_flight = events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Send { .. }))
        .count()
        - events
            .iter()
            .filter(|e| matches!(e.kind, EventKind::Deliver { .. } | EventKind::Drop { .. }))
            .count();
    assert!(in_flight > 0, "no message was in flight at the end");
    let limits = ShrinkLimits {
        runs_max: 5,
        time_max: std::time::Duration::from_secs(3600),
    };
    let shrunk = shrink(&config, &events, end, limits, &mut |_| {});
    assert!(shrunk.is_ok(), "{:?}", shrunk.err());
}
