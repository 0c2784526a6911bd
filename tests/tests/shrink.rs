//! `rehearsal shrink`: a failing run becomes a smaller one that fails the same way, and
//! `rehearsal replay` confirms the minimal trace still fails.

use rehearsal_tests::{cli, scratch_dir};

fn events_in(path: &str) -> usize {
    rehearsal_traces::read_trace(std::path::Path::new(path))
        .unwrap()
        .events
        .len()
}

/// The original and the minimal trace's paths in `dir`.
fn paths(dir: &std::path::Path) -> (String, String) {
    let at = |name: &str| dir.join(name).to_str().unwrap().to_string();
    (at("big.jsonl"), at("min.jsonl"))
}

fn footer(path: &str) -> rehearsal_traces::Footer {
    rehearsal_traces::read_trace(std::path::Path::new(path))
        .unwrap()
        .footer
}

#[test]
fn a_failing_timed_benaloh_run_shrinks_and_still_fails() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_benaloh");
    let (big, min) = paths(&dir);
    let (big, min) = (big.as_str(), min.as_str());
    let sim = cli(&[
        "sim",
        "--protocol",
        "benaloh-timed",
        "--nodes",
        "8",
        "--latency",
        "uniform:1s..40s",
        "--trace",
        big,
    ]);
    assert_eq!(sim.status, 1, "{}", sim.stdout);

    let shrink = cli(&["shrink", big, "-o", min]);
    assert_eq!(shrink.status, 0, "{}{}", shrink.stdout, shrink.stderr);
    assert!(
        shrink.stdout.contains("rehearsal replay"),
        "{}",
        shrink.stdout
    );
    let (before, after) = (events_in(big), events_in(min));
    assert!(after * 4 < before, "{before} -> {after} events");
    // The same failure: a wrong total, not a missing one.
    let f = footer(min);
    assert_eq!(f.outcome, "violation");
    assert!(f.violations[0].contains("correct-sum") && f.violations[0].contains("output total"));

    // Replay re-enacts the minimal run from the file alone, and it still fails.
    let replay = cli(&["replay", min]);
    assert_eq!(replay.status, 1, "{}{}", replay.stdout, replay.stderr);
    assert!(
        replay
            .stdout
            .contains("exit 1: identical, but the run fails (violation)"),
        "{}",
        replay.stdout
    );
    assert!(replay.stdout.contains("now violation"), "{}", replay.stdout);
    // Every trace tool reads it.
    assert_eq!(cli(&["show", min]).status, 0);
}

#[test]
fn a_broken_server_shrinks_to_one_client_and_few_requests() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_mutant");
    let (big, min) = paths(&dir);
    let (big, min) = (big.as_str(), min.as_str());
    let sim = cli(&[
        "sim",
        "--protocol",
        "unreplicated",
        "--clients",
        "4",
        "--requests",
        "50",
        "--loss",
        "0.3",
        "--mutant",
        "execute-retransmissions",
        "--trace",
        big,
    ]);
    assert_eq!(sim.status, 1, "{}", sim.stdout);
    let shrink = cli(&["shrink", big, "-o", min]);
    assert_eq!(shrink.status, 0, "{}{}", shrink.stdout, shrink.stderr);
    let trace = rehearsal_traces::read_trace(std::path::Path::new(min)).unwrap();
    let config = &trace.header.config;
    assert_eq!(config["clients"], 1, "{config}");
    assert!(config["requests"].as_u64().unwrap() <= 3, "{config}");
    assert!(trace.footer.violations[0].contains("executed twice"));
    assert!(events_in(min) * 3 < events_in(big));
    let replay = cli(&["replay", min]);
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
fn a_run_that_did_not_fail_is_refused() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_ok");
    let ok = dir.join("ok.jsonl");
    let ok = ok.to_str().unwrap();
    assert_eq!(cli(&["sim", "--trace", ok]).status, 0);
    let run = cli(&["shrink", ok, "-o", dir.join("min.jsonl").to_str().unwrap()]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("nothing to shrink"), "{}", run.stderr);
}

/// HotStuff's failures shrink, replay and follow like every protocol's: a leader forking
/// off a stale QC against replicas that never lock (`no-lock`) breaks the chain.
#[test]
fn a_hotstuff_mutant_failure_shrinks_replays_and_follows() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_hotstuff");
    let (big, min) = paths(&dir);
    let (big, min) = (big.as_str(), min.as_str());
    let scenario = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/hotstuff/stale-qc.scenario"
    );
    let sim = cli(&[
        "sim",
        "--protocol",
        "hotstuff",
        "--mutant",
        "no-lock",
        "--scenario",
        scenario,
        "--clients",
        "1",
        "--requests",
        "20",
        "--trace",
        big,
    ]);
    assert_eq!(sim.status, 1, "{}", sim.stdout);
    assert!(sim.stdout.contains("in-order"), "{}", sim.stdout);

    let shrink = cli(&["shrink", big, "-o", min, "--runs-max", "300"]);
    assert_eq!(shrink.status, 0, "{}{}", shrink.stdout, shrink.stderr);
    let (before, after) = (events_in(big), events_in(min));
    assert!(after < before, "{before} -> {after} events");
    let f = footer(min);
    assert!(
        f.violations[0].starts_with("in-order:"),
        "{:?}",
        f.violations
    );

    for replay in [
        cli(&["replay", min]),
        cli(&["replay", "--follow-trace", big]),
    ] {
        assert_eq!(replay.status, 1, "{}{}", replay.stdout, replay.stderr);
        assert!(replay.stdout.contains("identical"), "{}", replay.stdout);
    }
    let svg = dir.join("min.svg");
    let plot = cli(&["plot", min, "-o", svg.to_str().unwrap()]);
    assert_eq!(plot.status, 0, "{}", plot.stderr);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
}
