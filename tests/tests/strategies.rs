//! Search strategies on the real protocols (`rehearsal sim --strategy random|pct`): a run
//! is its seed's and its strategy's, whatever tool reads it: replay, follow, shrink, show,
//! plot and export.

use rehearsal::config::{Protocol, RunConfig};
use rehearsal_sim_core::{EventKind, Strategy};
use rehearsal_tests::{cli, scratch_dir};

const RANDOM: Strategy = Strategy::Random { window_ns: 0 };
const PCT: Strategy = Strategy::Pct {
    depth: 3,
    steps: 1_000,
    window_ns: 0,
};

fn config(protocol: &str, seed: u64, strategy: Strategy) -> RunConfig {
    RunConfig {
        seed,
        clients: 2,
        requests: 10,
        strategy,
        ..RunConfig::new(Protocol::of(protocol))
    }
}

/// The receiver and sender of each delivery, in trace order.
fn deliveries(config: &RunConfig) -> Vec<(u32, u32)> {
    let run = rehearsal::run(config, true).unwrap();
    run.trace
        .iter()
        .filter_map(|e| match e.kind {
            EventKind::Deliver { from, .. } => Some((e.node.0, from.0)),
            _ => None,
        })
        .collect()
}

#[test]
fn random_and_pct_runs_of_pbft_and_hotstuff_are_their_seeds() {
    for protocol in ["pbft", "hotstuff"] {
        for strategy in [RANDOM, PCT] {
            for seed in [1, 2] {
                let run = |keep| rehearsal::run(&config(protocol, seed, strategy), keep).unwrap();
                let (a, b) = (run(false), run(true));
                assert_eq!(a.digest, b.digest, "{protocol} {strategy} seed {seed}");
                assert_eq!(a.outcome, rehearsal_sim_core::Outcome::Ok);
            }
        }
    }
}

#[test]
fn strategies_order_concurrent_messages_by_their_seed() {
    for protocol in ["pbft", "hotstuff"] {
        let default = deliveries(&config(protocol, 1, Strategy::Default));
        // Under the default strategy the seeds order every delivery alike (no loss,
        // constant latency): what differs below is the strategy's doing.
        assert_eq!(default, deliveries(&config(protocol, 2, Strategy::Default)));
        for strategy in [RANDOM, PCT] {
            let one = deliveries(&config(protocol, 1, strategy));
            let two = deliveries(&config(protocol, 2, strategy));
            assert_ne!(one, two, "{protocol} {strategy}");
            assert_ne!(one, default, "{protocol} {strategy}");
        }
    }
}

#[test]
fn the_default_strategy_is_left_out_of_traces_and_others_are_recorded() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "strategy_header");
    let plain = dir.join("plain.jsonl");
    let pct = dir.join("pct.jsonl");
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let base = ["sim", "--protocol", "pbft", "--requests", "5"];
    let run = cli(&[&base[..], &["--trace", &path(&plain)]].concat());
    assert_eq!(run.status, 0, "{}", run.stderr);
    let run = cli(&[
        &base[..],
        &[
            "--strategy",
            "pct",
            "--pct-depth",
            "2",
            "--pct-steps",
            "300",
        ],
        &["--window", "2ms", "--trace", &path(&pct)],
    ]
    .concat());
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(run
        .stdout
        .contains("strategy pct (depth 2, steps 300, window 2ms)"));
    let header = |p| rehearsal_traces::read_trace(p).unwrap().header.config;
    assert!(header(&plain).get("strategy").is_none());
    assert_eq!(
        header(&pct)["strategy"],
        serde_json::json!({"name": "pct", "depth": 2, "steps": 300, "window_ns": 2_000_000})
    );
}

#[test]
fn random_and_pct_runs_replay_follow_show_plot_and_export() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "strategy_tools");
    for (protocol, strategy) in [
        ("pbft", ["--strategy", "random", "--window", "3ms"]),
        ("hotstuff", ["--strategy", "pct", "--pct-depth", "3"]),
    ] {
        let trace = dir.join(format!("{protocol}.jsonl"));
        let trace = trace.to_str().unwrap();
        let sim = cli(&[
            &["sim", "--protocol", protocol, "--swarm", "--seed", "3"][..],
            &strategy[..],
            &["--requests", "20", "--trace", trace],
        ]
        .concat());
        assert!(sim.status <= 1, "{}", sim.stderr);
        let replay = cli(&["replay", trace]);
        assert!(
            replay.stdout.contains(": identical (outcome"),
            "{protocol}: {}",
            replay.stdout
        );
        let follow = cli(&["replay", "--follow-trace", trace]);
        assert!(
            follow.stdout.contains("\nidentical: all"),
            "{protocol}: {}",
            follow.stdout
        );
        assert_eq!(cli(&["show", trace, "--kind", "fault"]).status, 0);
        let svg = dir.join(format!("{protocol}.svg"));
        assert_eq!(cli(&["plot", trace, "-o", svg.to_str().unwrap()]).status, 0);
        for format in ["chrome", "shiviz", "mermaid", "dot"] {
            let export = cli(&["export", trace, "--format", format]);
            assert_eq!(export.status, 0, "{format}: {}", export.stderr);
            assert!(!export.stdout.is_empty());
        }
    }
}

#[test]
fn a_failing_pct_run_shrinks_to_a_trace_that_still_fails_and_replays() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "strategy_shrink");
    let big = dir.join("big.jsonl");
    let min = dir.join("min.jsonl");
    let (big, min) = (big.to_str().unwrap(), min.to_str().unwrap());
    // The first failing seed of 40 writes its trace.
    let sim = cli(&[
        "sim",
        "--protocol",
        "pbft",
        "--mutant",
        "no-commit",
        "--swarm",
        "--requests",
        "30",
        "--seeds",
        "40",
        "--strategy",
        "pct",
        "--trace",
        big,
    ]);
    assert_eq!(sim.status, 1, "pct catches no-commit: {}", sim.stdout);
    let replay = cli(&["replay", big]);
    assert!(replay.stdout.contains(": identical (outcome violation"));
    let shrink = cli(&["shrink", big, "-o", min, "--runs-max", "150"]);
    assert_eq!(shrink.status, 0, "{}{}", shrink.stdout, shrink.stderr);
    let replay = cli(&["replay", min]);
    assert_eq!(replay.status, 1);
    assert!(
        replay
            .stdout
            .contains("exit 1: identical, but the run fails (violation)"),
        "{}",
        replay.stdout
    );
    let before = rehearsal_traces::read_trace(big.as_ref()).unwrap();
    let after = rehearsal_traces::read_trace(min.as_ref()).unwrap();
    assert!(after.events.len() < before.events.len());
    assert_eq!(
        after.footer.violations[0].split(':').next(),
        before.footer.violations[0].split(':').next()
    );
}

#[test]
fn strategy_options_without_their_strategy_or_out_of_range_are_refused() {
    let cases: [(&[&str], &str); 7] = [
        (&["--strategy", "dfs"], "--strategy"),
        (
            &["--pct-depth", "2"],
            "--pct-depth is an option of --strategy pct",
        ),
        (
            &["--strategy", "random", "--pct-steps", "9"],
            "--pct-steps is an option of --strategy pct, but the strategy is random",
        ),
        (
            &["--window", "1ms"],
            "--window is an option of --strategy random or pct",
        ),
        (
            &["--strategy", "pct", "--pct-depth", "0"],
            "--pct-depth must be between 1 and 64",
        ),
        (
            &["--strategy", "pct", "--pct-steps", "0"],
            "--pct-steps must be at least 1",
        ),
        (
            &["--strategy", "pct", "--pct-depth", "9", "--pct-steps", "4"],
            "8 distinct change points among --pct-steps 4",
        ),
    ];
    for (args, needle) in cases {
        let run = cli(&[&["sim", "--protocol", "pbft"][..], args].concat());
        assert_eq!(run.status, 2, "{args:?}: {}", run.stdout);
        assert!(run.stderr.contains(needle), "{args:?}: {}", run.stderr);
        assert!(!run.stderr.contains("panicked"));
    }
}
