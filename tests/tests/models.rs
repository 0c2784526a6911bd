//! Network models, scenarios, run files and swarm mode through the command line.

use proptest::prelude::*;
use rehearsal::{run, Protocol, RunConfig};
use rehearsal_sim_core::Outcome;
use rehearsal_tests::{cli, scratch_dir};
use std::path::PathBuf;

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name);
    path.to_str().unwrap().to_string()
}

#[test]
fn under_a_partition_and_heal_timed_benaloh_fails_and_robust_benaloh_succeeds() {
    let run_file = example("partition-run.toml");
    let robust = cli(&["sim", "--config", &run_file]);
    assert_eq!(robust.status, 0, "{}{}", robust.stdout, robust.stderr);
    assert!(
        robust.stdout.contains("20 runs: 20 ok"),
        "{}",
        robust.stdout
    );
    assert!(robust.stdout.contains("scenario"), "{}", robust.stdout);

    // The failure's trace goes to a scratch directory, not the working directory.
    let trace = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "partition-timed").join("seed.jsonl");
    let trace = trace.to_str().unwrap();
    let timed = cli(&[
        "sim",
        "--config",
        &run_file,
        "--protocol",
        "benaloh-timed",
        "--trace",
        trace,
    ]);
    assert_eq!(timed.status, 1, "{}{}", timed.stdout, timed.stderr);
    assert!(timed.stdout.contains("correct-sum"), "{}", timed.stdout);
    // The printed command re-runs the failure.
    let command = timed
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("rehearsal sim --config"))
        .expect("a replay command")
        .trim()
        .to_string();
    let args: Vec<&str> = command.split_whitespace().skip(1).collect();
    let again = cli(&args);
    assert_eq!(
        again.status, 1,
        "{command}: {}{}",
        again.stdout, again.stderr
    );
    assert!(command.contains(trace), "{command}");
    assert!(std::fs::metadata(trace).is_ok_and(|m| m.len() > 0));
}

#[test]
fn robust_benaloh_with_200_nodes_completes() {
    let config = RunConfig {
        nodes: 200,
        latency: "uniform:1ms..50ms".parse().unwrap(),
        ..RunConfig::new(Protocol::of("benaloh"))
    };
    let report = run(&config, false).unwrap();
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
    // Every share and subset sum, and an acknowledgement of each; no retries without loss.
    assert_eq!(report.messages_delivered, 4 * 200 * 199);
    let totals: u64 = report.nodes.iter().map(|n| n.outputs).sum();
    assert_eq!(totals, 400, "a secret and a total per node");
}

#[test]
fn a_network_file_runs_deterministically_and_bad_ones_name_the_place() {
    let wan = example("wan.toml");
    let args = [
        "sim",
        "--protocol",
        "unreplicated",
        "--clients",
        "2",
        "--requests",
        "30",
        "--net",
        &wan,
        "--json",
    ];
    let first = cli(&args);
    assert_eq!(first.status, 0, "{}{}", first.stdout, first.stderr);
    assert_eq!(
        digest(&cli(&args).stdout),
        digest(&first.stdout),
        "same seed, same run"
    );
    let mut other = args.to_vec();
    other.extend_from_slice(&["--seed", "2"]);
    assert_ne!(digest(&cli(&other).stdout), digest(&first.stdout));
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "bad_net");
    let bad = dir.join("net.toml");
    std::fs::write(&bad, "latency = \"constant:10ms\"\nlsos = 0.1\n").unwrap();
    let run = cli(&["sim", "--net", bad.to_str().unwrap()]);
    assert_eq!(run.status, 2);
    assert!(run.stderr.contains("net.toml:2:1"), "{}", run.stderr);
    assert!(run.stderr.contains("did you mean `loss`"), "{}", run.stderr);
}

/// The trace digest of a JSON summary.
fn digest(json: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    v["trace_digest"].as_str().unwrap().to_string()
}

#[test]
fn swarm_draws_per_seed_prints_what_it_drew_and_replays_from_the_trace_alone() {
    let args = [
        "sim",
        "--protocol",
        "unreplicated",
        "--clients",
        "3",
        "--requests",
        "20",
        "--swarm",
        "--seeds",
        "10",
        "--duration",
        "2m",
    ];
    let found = cli(&args);
    assert_eq!(
        found.status, 0,
        "retransmitting clients survive every draw: {}",
        found.stdout
    );
    let draws: Vec<&str> = found
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("swarm:"))
        .collect();
    assert_eq!(draws.len(), 10);
    let distinct: std::collections::BTreeSet<&&str> = draws.iter().collect();
    assert!(
        distinct.len() >= 9,
        "seeds draw different environments: {draws:#?}"
    );
    let same = cli(&args);
    let again: Vec<&str> = same
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with("swarm:"))
        .collect();
    assert_eq!(draws, again, "the same seed draws the same environment");

    // Timed Benaloh sends each message once: swarm finds loss breaking it, and the trace
    // alone (which records the drawn network and faults) replays the failure.
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "swarm_replay");
    let trace = dir.join("swarm.jsonl");
    let trace = trace.to_str().unwrap();
    let failing = cli(&[
        "sim",
        "--protocol",
        "benaloh-timed",
        "--swarm",
        "--seeds",
        "10",
        "--trace",
        trace,
    ]);
    assert_eq!(failing.status, 1, "{}", failing.stdout);
    let header: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(trace)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["config"]["swarm"], true);
    assert!(header["config"]["network"]["loss"].as_f64().unwrap() > 0.0);
    assert!(header["config"]["scenario"]["text"]
        .as_str()
        .unwrap()
        .contains("drawn by --swarm"));
    let replay = cli(&["replay", trace]);
    assert_eq!(replay.status, 1, "{}{}", replay.stdout, replay.stderr);
    assert!(
        replay
            .stdout
            .contains("exit 1: identical, but the run fails (violation)"),
        "{}",
        replay.stdout
    );
}

#[test]
fn run_file_and_scenario_mistakes_exit_2_naming_file_line_and_column() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "run_file_errors");
    let cases = [
        ("unknown_key", "protocol = \"benaloh\"\nnodse = 5\n"),
        ("bad_protocol", "protocol = \"pbfft\"\n"),
        ("bad_latency", "seed = 3\nlatency = \"normal:5ms\"\n"),
        (
            "network_bad_loss",
            "protocol = \"benaloh\"\n\n[network]\nlatency = \"constant:1ms\"\nloss = 1.5\n",
        ),
        ("net_twice", "net = \"x.toml\"\n[network]\nloss = 0.1\n"),
        ("missing_scenario", "scenario = \"nowhere.scenario\"\n"),
        ("bad_scenario", "scenario = \"bad.scenario\"\n"),
        (
            "scenario_node_out_of_range",
            "nodes = 3\nscenario = \"far.scenario\"\n",
        ),
    ];
    std::fs::write(dir.join("bad.scenario"), "@0 annotate ok\n@1:3o crash 1\n").unwrap();
    std::fs::write(dir.join("far.scenario"), "@5 crash 4\n").unwrap();
    let mut all = String::new();
    for (name, text) in cases {
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, text).unwrap();
        let run = cli(&["sim", "--config", path.to_str().unwrap()]);
        assert_eq!(run.status, 2, "{name}: {}{}", run.stdout, run.stderr);
        let message = run.stderr.replace(dir.to_str().unwrap(), "DIR");
        all += &format!("--- {name}\n{message}\n");
    }
    insta::assert_snapshot!(all);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    #[test]
    fn random_run_files_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = rehearsal::runfile::parse(&text, "fuzz.toml", std::path::Path::new("."));
    }

    #[test]
    fn run_file_like_text_never_panics(
        lines in proptest::collection::vec(
            (
                prop::sample::select(vec![
                    "protocol", "nodes", "seed", "duration", "latency", "loss", "scenario",
                    "[network]", "[[network.links]]", "mode", "on_cut", "x",
                ]),
                "[ =\"0-9a-z:.,\\[\\]-]{0,16}",
            ),
            0..8,
        )
    ) {
        let text: String = lines.iter().map(|(k, v)| format!("{k}{v}\n")).collect();
        let _ = rehearsal::runfile::parse(&text, "fuzz.toml", std::path::Path::new("."));
    }
}
