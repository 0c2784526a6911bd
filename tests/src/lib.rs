//! Shared helpers of Rehearsal's cross-crate tests.

pub mod follow;
pub mod in_order;
pub mod process;

use std::path::PathBuf;

/// What one in-process run of the `rehearsal` command printed and returned.
#[derive(Debug)]
pub struct CliRun {
    pub status: u8,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `rehearsal` command line in-process, e.g. `cli(&["sim", "--seed", "3"])`.
pub fn cli(args: &[&str]) -> CliRun {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = std::iter::once("rehearsal").chain(args.iter().copied());
    let status = rehearsal::cli::run(argv, &mut out, &mut err);
    CliRun {
        status,
        stdout: String::from_utf8_lossy(&out).into_owned(),
        stderr: String::from_utf8_lossy(&err).into_owned(),
    }
}

/// A fresh scratch directory for one test: pass `env!("CARGO_TARGET_TMPDIR")`.
pub fn scratch_dir(target_tmp: &str, test: &str) -> PathBuf {
    let dir = PathBuf::from(target_tmp).join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// Runs `rehearsal explore ARGS --trace TRACE` and checks that it found a violation of
/// `invariant`, that the simulator re-enacted the path into an ordinary trace that shows
/// that violation, and that `rehearsal replay` reproduces the trace identically (and fails
/// as it did). Returns what `explore` printed, for further checks.
pub fn explore_counterexample_replays(
    args: &[&str],
    trace: &std::path::Path,
    invariant: &str,
) -> CliRun {
    let trace_arg = trace.to_str().expect("a UTF-8 path");
    let mut explore: Vec<&str> = vec!["explore"];
    explore.extend_from_slice(args);
    explore.extend_from_slice(&["--trace", trace_arg]);
    let run = cli(&explore);
    assert_eq!(
        run.status, 1,
        "{args:?} finds a violation: {}{}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains(&format!("VIOLATION of {invariant}")),
        "{args:?}: {}",
        run.stdout
    );
    assert!(
        run.stdout.contains("the simulator re-enacted the path"),
        "{args:?}: {}{}",
        run.stdout,
        run.stderr
    );
    let recorded = rehearsal_traces::read_trace(trace).expect("an ordinary trace");
    assert_eq!(recorded.footer.outcome, "violation", "{args:?}");
    assert!(
        recorded.footer.violations[0].starts_with(invariant),
        "{args:?}: {:?}",
        recorded.footer.violations
    );
    let replay = cli(&["replay", trace_arg]);
    assert!(
        replay.stdout.contains("identical"),
        "{args:?}: {}",
        replay.stdout
    );
    assert_eq!(
        replay.status, 1,
        "identical, and the run fails: {}",
        replay.stdout
    );
    run
}

/// Says that test `test` cannot run on this machine, and why (it needs root, or a package
/// it cannot get): call it, then return from the test. It prints `SKIPPED: <test>: <why>`
/// straight to stderr, not through `eprintln!`, which libtest captures and shows only for
/// failing tests; `.ci/run` lists these lines in its summary and does not count the test
/// as passed.
pub fn skip(test: &str, why: &str) {
    use std::io::Write;
    let line = format!("SKIPPED: {test}: {why}\n");
    // One write, so that tests running in parallel do not interleave their lines.
    let _ = std::io::stderr().write_all(line.as_bytes());
}

/// The path of `examples/pbft/NAME`.
pub fn pbft_example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pbft")
        .join(name);
    path.to_str().unwrap_or_default().to_string()
}

/// The `rehearsal sim` flags of the README's PBFT mutant setting: 2 clients x 40 requests
/// over `examples/pbft/hold.toml`, under `examples/pbft/SCENARIO`.
pub fn pbft_readme_setting(scenario: &str) -> Vec<String> {
    [
        "--protocol",
        "pbft",
        "--clients",
        "2",
        "--requests",
        "40",
        "--net",
        &pbft_example("hold.toml"),
        "--scenario",
        &pbft_example(scenario),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The `rehearsal sim` flags of the README's lossy unreplicated run: loss, jitter and
/// retransmissions, a schedule the seed alone would not survive.
pub const UNREPLICATED_LOSSY: &[&str] = &[
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
];
