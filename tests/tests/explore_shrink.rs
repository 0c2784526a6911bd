//! `rehearsal explore` writes its first failing run as a trace and shrinks it: the minimal
//! trace goes beside the original (`FILE.jsonl` -> `FILE.min.jsonl`), both replay to the
//! same violation, and a shrink that cannot be made leaves the original and says why.

use rehearsal_tests::{cli, scratch_dir, CliRun};
use rehearsal_traces::read_trace;
use std::path::Path;

/// `rehearsal explore` of unreplicated's `execute-retransmissions` mutant (2 clients x 2
/// requests, one retransmission timer firing), plus `extra` flags.
fn explore_unreplicated(extra: &[&str]) -> CliRun {
    let mut args = vec![
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
    ];
    args.extend_from_slice(extra);
    cli(&args)
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The invariant a trace's run violated first.
fn invariant_of(path: &Path) -> String {
    let trace = read_trace(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let first = trace.footer.violations.first().cloned().unwrap_or_default();
    first.split(':').next().unwrap_or_default().to_string()
}

/// Replays `path`: it must be identical to its recording and fail with `invariant`.
fn assert_replays_to(path: &Path, invariant: &str) {
    let replay = cli(&["replay", text(path)]);
    assert_eq!(replay.status, 1, "{}{}", replay.stdout, replay.stderr);
    assert!(
        replay.stdout.contains("identical"),
        "{}: {}",
        path.display(),
        replay.stdout
    );
    assert!(
        replay.stdout.contains(&format!("  {invariant}: ")),
        "{}: {}",
        path.display(),
        replay.stdout
    );
}

/// Deliveries, drops and timer firings of a trace: the steps explore counts.
fn steps_of(path: &Path) -> usize {
    use rehearsal_sim_core::EventKind;
    read_trace(path)
        .expect("a trace")
        .events
        .iter()
        .filter(|e| {
            matches!(
                e.kind,
                EventKind::Deliver { .. } | EventKind::Drop { .. } | EventKind::Timer { .. }
            )
        })
        .count()
}

fn events_of(path: &Path) -> usize {
    read_trace(path).expect("a trace").events.len()
}

#[test]
fn a_depth_first_counterexample_is_shrunk_beside_its_trace_and_both_replay_the_violation() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_shrink_dfs");
    let trace = dir.join("found.jsonl");
    let shrunk = dir.join("found.min.jsonl");
    // Depth-first search's first path has detours; explore cuts them before it writes the
    // trace (a step at a time: what is left needs every step it has), so the shrinker
    // finds the path's trace no larger than it.
    let run = explore_unreplicated(&["--strategy", "dfs", "--trace", text(&trace)]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("VIOLATION of requests-answered"),
        "{}",
        run.stdout
    );
    assert!(
        events_of(&shrunk) <= events_of(&trace) && steps_of(&shrunk) <= steps_of(&trace),
        "shrunk {} events, {} steps; original {} events, {} steps",
        events_of(&shrunk),
        steps_of(&shrunk),
        events_of(&trace),
        steps_of(&trace)
    );
    for path in [&trace, &shrunk] {
        assert_eq!(invariant_of(path), "requests-answered");
        assert_replays_to(path, "requests-answered");
    }
    // The report names both traces, their sizes, and the commands that replay them; the
    // shrinker's progress went to stderr.
    for expected in [
        format!(
            "shrunk trace: {} ({} events, {} steps",
            shrunk.display(),
            events_of(&shrunk),
            steps_of(&shrunk)
        ),
        format!(
            "replay the shrunk run: rehearsal replay {}",
            shrunk.display()
        ),
        format!(
            "replay the original:   rehearsal replay {}",
            trace.display()
        ),
        "minimal run: ".to_string(),
    ] {
        assert!(run.stdout.contains(&expected), "{expected}\n{}", run.stdout);
    }
    assert!(
        run.stderr
            .contains(&format!("shrinking {}", trace.display())),
        "{}",
        run.stderr
    );
}

#[test]
fn json_gives_both_traces_and_their_sizes_before_and_after() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_shrink_json");
    let trace = dir.join("choices.jsonl");
    let run = explore_unreplicated(&["--strategy", "choices", "--trace", text(&trace), "--json"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.is_empty(),
        "--json shows no progress: {}",
        run.stderr
    );
    let v: serde_json::Value = serde_json::from_str(run.stdout.trim()).expect("one JSON object");
    assert_eq!(v["trace"], text(&trace));
    assert!(v["not_shrunk"].is_null(), "{v}");
    let shrunk = &v["shrunk"];
    let shrunk_path = Path::new(shrunk["trace"].as_str().expect("the shrunk trace's path"));
    assert_eq!(shrunk_path, dir.join("choices.min.jsonl"));
    assert_eq!(
        shrunk["replay"],
        format!("rehearsal replay {}", text(shrunk_path))
    );
    // The sizes are those of the files written.
    let (before, after) = (&shrunk["before"], &shrunk["after"]);
    assert_eq!(before, &v["trace_size"]);
    assert_eq!(before["events"].as_u64(), Some(events_of(&trace) as u64));
    assert_eq!(
        after["events"].as_u64(),
        Some(events_of(shrunk_path) as u64)
    );
    assert_eq!(before["steps"].as_u64(), Some(steps_of(&trace) as u64));
    assert_eq!(after["steps"].as_u64(), Some(steps_of(shrunk_path) as u64));
    assert!(
        after["events"].as_u64() < before["events"].as_u64(),
        "{shrunk}"
    );
    assert!(shrunk["runs"].as_u64().unwrap() > 1, "{shrunk}");
    assert_eq!(shrunk["limited"], false, "{shrunk}");
    assert!(
        shrunk["violation"]
            .as_str()
            .unwrap()
            .starts_with("requests-answered:"),
        "{shrunk}"
    );
    assert_replays_to(shrunk_path, "requests-answered");
}

#[test]
fn no_shrink_writes_the_trace_alone() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_no_shrink");
    let trace = dir.join("found.jsonl");
    let run = explore_unreplicated(&["--trace", text(&trace), "--no-shrink"]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(trace.exists());
    assert!(!dir.join("found.min.jsonl").exists());
    assert!(
        run.stdout
            .contains("not shrunk: --no-shrink; shrink it with `rehearsal shrink"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains(&format!("replay it: rehearsal replay {}", trace.display())),
        "{}",
        run.stdout
    );
    assert_replays_to(&trace, "requests-answered");
}

#[test]
fn a_run_by_run_counterexample_is_shrunk_too() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_shrink_runs");
    let trace = dir.join("lossy.jsonl");
    let shrunk = dir.join("lossy.min.jsonl");
    let run = cli(&[
        "explore",
        "--protocol",
        "unreplicated",
        "--clients",
        "3",
        "--requests",
        "10",
        "--loss",
        "0.2",
        "--mutant",
        "execute-retransmissions",
        "--strategy",
        "default",
        "--trace",
        text(&trace),
    ]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("FAILED at seed"), "{}", run.stdout);
    assert!(
        events_of(&shrunk) < events_of(&trace),
        "shrunk {} events, original {}",
        events_of(&shrunk),
        events_of(&trace)
    );
    for path in [&trace, &shrunk] {
        assert_replays_to(path, "requests-answered");
    }
}

#[test]
fn a_shrunk_trace_that_cannot_be_written_leaves_the_original_and_says_why() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_shrink_blocked");
    let trace = dir.join("found.jsonl");
    // A directory where the shrunk trace would go.
    std::fs::create_dir_all(dir.join("found.min.jsonl")).expect("a directory");
    let run = explore_unreplicated(&["--trace", text(&trace)]);
    assert_eq!(
        run.status, 1,
        "the violation decides: {}{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains("not shrunk: ") && run.stdout.contains("cannot create trace file"),
        "{}",
        run.stdout
    );
    assert_replays_to(&trace, "requests-answered");
}

#[test]
fn a_shrink_cut_short_by_its_time_limit_says_so_and_is_no_larger() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "explore_shrink_limited");
    let trace = dir.join("found.jsonl");
    let shrunk = dir.join("found.min.jsonl");
    // A millisecond: the shrinker re-enacts the run, and stops soon after.
    let run = explore_unreplicated(&[
        "--strategy",
        "dfs",
        "--trace",
        text(&trace),
        "--shrink-time",
        "1ms",
    ]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("stopped at a limit"), "{}", run.stdout);
    assert!(events_of(&shrunk) <= events_of(&trace));
    assert_replays_to(&shrunk, "requests-answered");
}

#[test]
fn shrink_flags_that_cannot_apply_are_refused() {
    let with_trace = ["--trace", "x.jsonl"];
    for (flags, expected) in [
        (&["--no-shrink"][..], "--trace"),
        (&["--shrink-time", "5s"][..], "--trace"),
        (
            &["--shrink-time", "0s"][..],
            "--no-shrink writes the trace unshrunk",
        ),
        (&["--shrink-time", "soon"][..], "--shrink-time"),
        (
            &["--shrink-time", "5s", "--no-shrink"][..],
            "cannot be used with",
        ),
    ] {
        let mut args = vec!["explore", "--protocol", "unreplicated"];
        if expected != "--trace" {
            args.extend_from_slice(&with_trace);
        }
        args.extend_from_slice(flags);
        let run = cli(&args);
        assert_eq!(run.status, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(expected), "{args:?}: {}", run.stderr);
        assert!(!Path::new("x.jsonl").exists(), "{args:?} wrote a trace");
    }
}

/// The checking library, for a protocol of the user's own: a counterexample of a
/// schedule search or an exploration is also a trace and a shrunk trace.
mod library {
    use rehearsal_sim_core::explore::{explorer, Bounds, Search};
    use rehearsal_sim_core::{SimConfig, SimpleNetwork, Simulation};
    use rehearsal_tests::in_order::{InOrder, Sender};
    use rehearsal_traces::check::follow_trace_of_test;
    use rehearsal_traces::read_trace;
    use rehearsal_traces::schedules::{check_explore_traced, check_schedules_traced};
    use std::path::PathBuf;

    const SEED: u64 = 5;

    /// Node 0 sends 1..=4 to node 1.
    fn nodes() -> Vec<Sender> {
        vec![Sender::new(4), Sender::new(4)]
    }

    fn exploration(search: Search) -> Box<dyn rehearsal_sim_core::explore::Exploration> {
        let bounds = Bounds {
            search,
            ..Bounds::default()
        };
        explorer(
            nodes(),
            SEED,
            || vec![Box::new(InOrder::default()) as _],
            bounds,
        )
    }

    /// The simulation of the exploration's nodes, seed and invariant.
    fn simulate() -> Simulation<Sender> {
        let mut sim = Simulation::new(SimConfig::new(SEED), nodes(), SimpleNetwork::default());
        sim.add_invariant(InOrder::default());
        sim
    }

    /// What `check` panicked with.
    fn panic_of(check: impl FnOnce()) -> String {
        let payload = std::panic::catch_unwind(std::panic::AssertUnwindSafe(check))
            .expect_err("the check fails");
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default()
    }

    /// The path a report line `  LABEL PATH (N events)` names.
    fn path_after(report: &str, label: &str) -> PathBuf {
        let line = report
            .lines()
            .find_map(|l| l.trim_start().strip_prefix(label))
            .unwrap_or_else(|| panic!("no `{label}` in:\n{report}"));
        let path = line.trim_start().split(" (").next().unwrap_or_default();
        PathBuf::from(path)
    }

    /// The report names a trace and a shrunk trace that both show `in-order` failing,
    /// the shrunk one no longer, and following the shrunk one fails the same way.
    fn assert_traced(test: &str, report: &str) {
        let trace = path_after(report, "trace:");
        let shrunk = path_after(report, "shrunk trace:");
        assert_eq!(shrunk, trace.with_extension("min.jsonl"), "{report}");
        let (trace_file, shrunk_file) = (read_trace(&trace).unwrap(), read_trace(&shrunk).unwrap());
        for file in [&trace_file, &shrunk_file] {
            assert!(
                file.footer.violations[0].starts_with("in-order:"),
                "{report}"
            );
        }
        assert!(shrunk_file.events.len() <= trace_file.events.len());
        let again = follow_trace_of_test(test, &shrunk, &|_| simulate())
            .expect("the shrunk run, followed, still fails");
        assert_eq!(again.problem.invariant, "in-order");
        assert!(
            report.contains(&format!(
                "REHEARSAL_FOLLOW={} cargo test {test}",
                shrunk.display()
            )),
            "{report}"
        );
    }

    #[test]
    fn a_failing_schedule_becomes_a_trace_and_a_shrunk_trace() {
        let test = "explore_shrink_library_schedules";
        let report =
            panic_of(|| check_schedules_traced(test, 100, exploration(Search::Dfs), simulate));
        assert!(report.contains("violation of in-order"), "{report}");
        assert!(report.contains("shrunk to choices"), "{report}");
        assert_traced(test, &report);
    }

    #[test]
    fn a_breadth_first_violation_becomes_a_trace_and_a_shrunk_trace() {
        let test = "explore_shrink_library_bfs";
        let report = panic_of(|| {
            check_explore_traced(test, 10_000, exploration(Search::Bfs), simulate);
        });
        assert!(report.contains("distinct states searched"), "{report}");
        assert_traced(test, &report);
    }

    #[test]
    fn a_simulation_that_is_not_the_exploration_s_gives_no_trace_and_says_why() {
        // Without the invariant, the simulation does not fail along the path.
        let report = panic_of(|| {
            check_explore_traced(
                "explore_shrink_library_mismatch",
                10_000,
                exploration(Search::Bfs),
                || Simulation::new(SimConfig::new(SEED), nodes(), SimpleNetwork::default()),
            );
        });
        assert!(report.contains("violation of in-order"), "{report}");
        assert!(
            report.contains("no trace: the simulation, following the counterexample, ended ok without `in-order`"),
            "{report}"
        );
    }

    #[test]
    fn a_search_without_a_violation_returns_its_figures() {
        // No invariant: nothing fails, and the whole space within the bounds is searched.
        let bounds = Bounds {
            search: Search::Bfs,
            ..Bounds::default()
        };
        let nothing = explorer(nodes(), SEED, Vec::new, bounds);
        let stats = check_explore_traced("explore_shrink_library_clean", 10_000, nothing, || {
            Simulation::new(SimConfig::new(SEED), nodes(), SimpleNetwork::default())
        });
        assert!(stats.done && stats.states > 1, "{stats:?}");
    }
}
