//! `rehearsal explore --strategy twins|byzzfuzz|coverage`: each catches a mutant, writes
//! the failing run as a trace that replays and a scenario that `sim --scenario` re-runs;
//! the correct protocols stay clean under the same searches (no false alarm from the
//! termination oracle after the schedule settles); a search is its seed's; bad flags are
//! refused with what is wrong.

use rehearsal_tests::{cli, scratch_dir, CliRun};
use std::path::Path;

/// `explore` of `protocol` (10 requests a client) with `strategy`, at most `runs` runs.
fn explore(
    protocol: &str,
    mutant: Option<&str>,
    strategy: &str,
    runs: u32,
    extra: &[&str],
) -> CliRun {
    let runs = runs.to_string();
    let mut args = vec![
        "explore",
        "--protocol",
        protocol,
        "--requests",
        "10",
        "--strategy",
        strategy,
        "--max-states",
        &runs,
        // The run count bounds the search, not the clock: the same runs on any machine.
        "--budget",
        "1h",
    ];
    if let Some(m) = mutant {
        args.extend_from_slice(&["--mutant", m]);
    }
    args.extend_from_slice(extra);
    cli(&args)
}

/// Checks a caught mutant: exit 1, the invariant named, a trace that replays identically
/// and fails, and a scenario beside it that `sim` re-runs to the same violation with the
/// command `explore` printed.
fn caught(protocol: &str, mutant: &str, strategy: &str, runs: u32, invariant: &str, dir: &Path) {
    let trace = dir.join(format!("{protocol}-{mutant}-{strategy}.jsonl"));
    let trace_arg = trace.to_str().unwrap();
    let run = explore(
        protocol,
        Some(mutant),
        strategy,
        runs,
        &["--trace", trace_arg, "--no-shrink"],
    );
    let what = format!("{protocol} {mutant} {strategy}");
    assert_eq!(run.status, 1, "{what}: {}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("FAILED at seed"),
        "{what}: {}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("  {invariant}: ")),
        "{what}: {}",
        run.stdout
    );
    let recorded = rehearsal_traces::read_trace(&trace).expect("an ordinary trace");
    assert_eq!(recorded.footer.outcome, "violation", "{what}");
    assert!(
        recorded.footer.violations[0].starts_with(invariant),
        "{what}"
    );
    let replay = cli(&["replay", trace_arg]);
    assert_eq!(replay.status, 1, "{what}: {}", replay.stdout);
    assert!(
        replay.stdout.contains("identical"),
        "{what}: {}",
        replay.stdout
    );
    // The scenario is beside the trace, and the printed command re-runs the run with it.
    let scenario = trace.with_extension("scenario");
    let text = std::fs::read_to_string(&scenario).expect("the scenario beside the trace");
    assert!(text.contains("@round "), "{what}: {text}");
    assert!(text.contains("settle"), "{what}: {text}");
    let command = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("re-run it: rehearsal "))
        .unwrap_or_else(|| panic!("{what}: no command in {}", run.stdout));
    assert!(
        command.contains(scenario.to_str().unwrap()),
        "{what}: {command}"
    );
    let words: Vec<&str> = command.split_whitespace().collect();
    let rerun = cli(&words);
    assert_eq!(rerun.status, 1, "{what}: {command}: {}", rerun.stdout);
    assert!(
        rerun.stdout.contains(&format!("  {invariant}: ")),
        "{what}: {}",
        rerun.stdout
    );
}

#[test]
fn twins_catch_a_pbft_primary_whose_twin_proposes_other_requests() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "search_twins");
    // Two correct instances of one primary order their requests each their own way; a
    // backup without watermark checks accepts what the two assign.
    caught("pbft", "no-watermarks", "twins", 20, "agreement", &dir);
}

#[test]
fn byzzfuzz_catches_pbft_mutants_with_mutated_messages_and_partitions() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "search_byzzfuzz");
    // A pre-prepare whose batch changed under the same digest.
    caught(
        "pbft",
        "no-digest-check",
        "byzzfuzz",
        200,
        "agreement",
        &dir,
    );
    // View changes without prepared certificates after a partition: requests never
    // complete once the schedule has settled.
    caught(
        "pbft",
        "forget-prepared",
        "byzzfuzz",
        50,
        "termination",
        &dir,
    );
}

#[test]
fn coverage_guided_search_catches_mutants_of_both_bft_protocols() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "search_coverage");
    caught("hotstuff", "no-lock", "coverage", 100, "in-order", &dir);
    caught(
        "pbft",
        "no-digest-check",
        "coverage",
        200,
        "agreement",
        &dir,
    );
}

#[test]
fn a_caught_run_is_shrunk_beside_its_trace_and_still_fails() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "search_shrink");
    let trace = dir.join("found.jsonl");
    let run = explore(
        "hotstuff",
        Some("no-lock"),
        "coverage",
        100,
        &["--trace", trace.to_str().unwrap(), "--shrink-time", "5s"],
    );
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let min = dir.join("found.min.jsonl");
    assert!(run.stdout.contains("shrunk trace: "), "{}", run.stdout);
    let replay = cli(&["replay", min.to_str().unwrap()]);
    assert_eq!(replay.status, 1, "{}", replay.stdout);
    assert!(
        replay
            .stdout
            .contains("exit 1: identical, but the run fails (violation)"),
        "{}",
        replay.stdout
    );
}

#[test]
fn correct_pbft_and_hotstuff_stay_clean_under_every_round_strategy() {
    // Each schedule settles at 30 s of virtual time (heals, restarts, cancels its round
    // faults): from then on every request must complete, so a false termination alarm
    // would fail these runs as surely as a safety violation.
    for protocol in ["pbft", "hotstuff"] {
        for strategy in ["twins", "byzzfuzz", "coverage"] {
            let run = explore(protocol, None, strategy, 40, &["--keep-going"]);
            assert_eq!(
                run.status, 0,
                "{protocol} {strategy}: {}{}",
                run.stdout, run.stderr
            );
            assert!(
                run.stdout.contains("no failure within the budget"),
                "{protocol} {strategy}: {}",
                run.stdout
            );
            assert!(
                run.stdout.contains(&format!("{strategy}: 40 runs")),
                "{protocol} {strategy}: {}",
                run.stdout
            );
        }
    }
}

#[test]
fn a_search_is_its_seed_and_reports_coverage_as_json_and_svg() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "search_json");
    let svg = dir.join("coverage.svg");
    let json = |seed: &str, plot: bool| {
        let mut extra = vec!["--json", "--seed", seed, "--keep-going"];
        if plot {
            extra.extend_from_slice(&["--coverage-plot", svg.to_str().unwrap()]);
        }
        let run = explore("pbft", None, "coverage", 30, &extra);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        let mut value: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
        // Wall times differ from run to run; what the search did does not.
        for sample in value["coverage"].as_array_mut().unwrap() {
            sample.as_object_mut().unwrap().remove("wall_ns");
        }
        // Which run was slowest is the clock's say too; whichever it is, it comes with
        // what re-runs it: its seed, its scenario and its network (null: the configured).
        let slowest = &value["slowest_run"];
        assert!(slowest["seed"].is_u64(), "{slowest}");
        assert!(slowest["scenario"].is_string(), "{slowest}");
        let network = slowest
            .get("network")
            .unwrap_or_else(|| panic!("no network: {slowest}"));
        assert!(
            network.is_null() || network["latency"].is_string(),
            "{slowest}"
        );
        for key in ["wall_time_ns", "runs_per_second", "slowest_run"] {
            value.as_object_mut().unwrap().remove(key);
        }
        value
    };
    let a = json("5", true);
    assert_eq!(a, json("5", false), "the same seed, the same search");
    assert_ne!(a, json("6", false), "another seed, another search");
    assert_eq!(a["strategy"], "coverage");
    assert_eq!(a["runs"], 30);
    assert_eq!(a["outcome"], "budget");
    assert!(a["abstract_states"].as_u64().unwrap() > 10, "{a}");
    assert!(a["happens_before"].as_u64().unwrap() > 10, "{a}");
    assert!(a["corpus"].as_u64().unwrap() >= 1, "{a}");
    let samples = a["coverage"].as_array().unwrap();
    let states: Vec<u64> = samples
        .iter()
        .map(|s| s["states"].as_u64().unwrap())
        .collect();
    assert!(
        states.windows(2).all(|w| w[0] <= w[1]),
        "coverage only grows: {states:?}"
    );
    let plot = std::fs::read_to_string(&svg).unwrap();
    assert!(plot.starts_with("<svg"), "{plot}");
    assert!(
        plot.contains("<polyline") || plot.contains("<path"),
        "a curve: {plot}"
    );
}

#[test]
fn round_strategies_refuse_what_does_not_apply_and_say_why() {
    let cases: [(&[&str], &str); 7] = [
        (
            &["--protocol", "unreplicated", "--strategy", "twins"],
            "no Byzantine replicas to fuzz or twin",
        ),
        (
            &["--protocol", "spectrum", "--strategy", "byzzfuzz"],
            "protocol `spectrum` offers no `fuzzed` behaviour, which --strategy byzzfuzz needs",
        ),
        (
            &[
                "--protocol",
                "pbft",
                "--strategy",
                "byzzfuzz",
                "--no-feedback",
            ],
            "--no-feedback is an option of --strategy coverage",
        ),
        (
            &["--protocol", "pbft", "--strategy", "dfs", "--keep-going"],
            "--keep-going is an option of --strategy twins, byzzfuzz or coverage",
        ),
        (
            &[
                "--protocol",
                "pbft",
                "--strategy",
                "coverage",
                "--fault-rounds",
                "0",
            ],
            "--fault-rounds must be at least 1",
        ),
        (
            &["--protocol", "pbft", "--strategy", "twins", "--groups", "1"],
            "--groups must be at least 2",
        ),
        (
            &["--protocol", "hotstuff", "--strategy", "twins", "--swarm"],
            "--swarm does not apply to --strategy twins",
        ),
    ];
    for (args, needle) in cases {
        let run = cli(&[&["explore", "--budget", "1s"][..], args].concat());
        assert_eq!(run.status, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    }
}
