//! PBFT through the command line: the mutants are caught under their documented fault
//! settings within a few seeds, and the correct protocol passes the same seeds; swarm
//! mode (crashes, restarts, Byzantine replicas, partitions, loss) finds nothing wrong with
//! the correct protocol; the figures are reported.

use rehearsal_tests::cli;
use std::path::PathBuf;

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/pbft")
        .join(name);
    path.to_str().unwrap().to_string()
}

/// `rehearsal sim --protocol pbft` under `scenario` for seeds 1..=10, with `mutant`.
fn run(scenario: &str, mutant: Option<&str>) -> rehearsal_tests::CliRun {
    let setting = rehearsal_tests::pbft_readme_setting(scenario);
    let mut args = vec!["sim"];
    args.extend(setting.iter().map(String::as_str));
    args.extend_from_slice(&["--seeds", "10", "--duration", "2m"]);
    if let Some(m) = mutant {
        args.extend_from_slice(&["--mutant", m]);
    }
    cli(&args)
}

/// The mutant table of the README: each is caught; the correct protocol passes.
const MUTANTS: &[(&str, &str, &str)] = &[
    ("no-digest-check", "equivocate.scenario", "agreement"),
    ("no-commit", "equivocate-slow-backup.scenario", "agreement"),
    (
        "small-commit-quorum",
        "equivocate-slow-backup.scenario",
        "agreement",
    ),
    ("forget-prepared", "primary-crash.scenario", "termination"),
    ("no-watermarks", "mutate.scenario", "termination"),
];

#[test]
fn every_mutant_is_caught_and_the_correct_protocol_passes_the_same_seeds() {
    let mut checked = std::collections::BTreeSet::new();
    for &(mutant, scenario, invariant) in MUTANTS {
        let broken = run(scenario, Some(mutant));
        assert_eq!(broken.status, 1, "{mutant} not caught: {}", broken.stdout);
        assert!(
            broken.stdout.contains(invariant),
            "{mutant}: expected {invariant}: {}",
            broken.stdout
        );
        if checked.insert(scenario) {
            let correct = run(scenario, None);
            assert_eq!(
                correct.status, 0,
                "correct pbft under {scenario}: {}",
                correct.stdout
            );
            assert!(
                correct.stdout.contains("10 runs: 10 ok"),
                "{}",
                correct.stdout
            );
        }
    }
}

#[test]
fn swarm_finds_the_correct_protocol_safe_and_live() {
    let run = cli(&[
        "sim",
        "--protocol",
        "pbft",
        "--clients",
        "2",
        "--requests",
        "20",
        "--swarm",
        "--seeds",
        "40",
    ]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert!(run.stdout.contains("40 runs: 40 ok"), "{}", run.stdout);
}

#[test]
fn a_run_reports_throughput_and_latency_percentiles() {
    let run = cli(&[
        "sim",
        "--protocol",
        "pbft",
        "--clients",
        "2",
        "--requests",
        "50",
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let figures = &json["protocol_figures"];
    assert_eq!(figures["completed"], 100);
    assert!(figures["throughput_per_s"].as_f64().unwrap() > 0.0);
    let p50 = figures["latency_ns_p50"].as_u64().unwrap();
    let p99 = figures["latency_ns_p99"].as_u64().unwrap();
    // Three message delays of 10 ms at least (request, pre-prepare... reply).
    assert!(p50 >= 30_000_000 && p50 <= p99, "{figures}");

    for (args, needle) in [
        (vec!["--nodes", "5"], "3f+1"),
        (vec!["--crypto", "rsa"], "`sim` or `real`"),
        (vec!["--mutant", "nope"], "unknown PBFT mutant"),
        (vec!["--batch", "0"], "at least 1"),
    ] {
        let mut all = vec!["sim", "--protocol", "pbft"];
        all.extend(args);
        let bad = cli(&all);
        assert_eq!(bad.status, 2, "{all:?}");
        assert!(bad.stderr.contains(needle), "{all:?}: {}", bad.stderr);
    }
}

#[test]
fn a_scenario_that_makes_a_client_byzantine_is_a_scenario_error() {
    let dir = std::env::temp_dir().join(format!("rehearsal-bzclient-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("client.scenario");
    // Nodes 0..4 are the replicas; node 5 is a client.
    std::fs::write(
        &scenario,
        "# a client cannot misbehave\n@0 byzantine 5 silent\n",
    )
    .unwrap();
    let run = cli(&[
        "sim",
        "--protocol",
        "pbft",
        "--scenario",
        scenario.to_str().unwrap(),
    ]);
    assert_eq!(run.status, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("client.scenario:2") && run.stderr.contains("PBFT client"),
        "{}",
        run.stderr
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn protocol_timers_are_set_by_name_and_bad_ones_are_refused() {
    // A shorter view-change timeout: a crashed primary is replaced sooner.
    let crash = example("primary-crash.scenario");
    let view_change_at = |timer: Option<&str>| -> String {
        let mut args = vec![
            "sim",
            "--protocol",
            "pbft",
            "--clients",
            "1",
            "--requests",
            "20",
            "--scenario",
            &crash,
            "--json",
        ];
        if let Some(t) = timer {
            args.extend_from_slice(&["--timer", t]);
        }
        let run = cli(&args);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
        json["sim_time_ns"].to_string()
    };
    let default = view_change_at(None);
    let short = view_change_at(Some("view-change=200ms"));
    assert!(
        short.parse::<u64>().unwrap() < default.parse::<u64>().unwrap(),
        "200 ms view change ends at {short} ns, the default at {default} ns"
    );
    for (timer, error) in [
        (
            "nope=1s",
            "pbft has no timer `nope`; expected one of client-retransmit, tick, view-change",
        ),
        ("tick=0s", "--timer tick: the duration must be above 0"),
        ("tick", "expected NAME=DURATION"),
    ] {
        let run = cli(&["sim", "--protocol", "pbft", "--timer", timer]);
        assert_eq!(run.status, 2, "{timer}: {}", run.stdout);
        assert!(run.stderr.contains(error), "{timer}: {}", run.stderr);
    }
    let run = cli(&["sim", "--protocol", "benaloh", "--timer", "tick=1s"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("benaloh has no timers to set"),
        "{}",
        run.stderr
    );
}
