//! Spectrum through the `rehearsal` runner: swarm mode (loss, duplication, reordering,
//! partitions, pauses, clock skew and Byzantine clients drawn from each seed) keeps every
//! published channel right and every round closing; a swarm run replays from its trace
//! alone; a mutant's failure shrinks, replays and follows.

use rehearsal::config::{Protocol, RunConfig};
use rehearsal::run::run;
use rehearsal_sim_core::Outcome;
use rehearsal_tests::{cli, scratch_dir};

fn spectrum(seed: u64, servers: u32, clients: u32) -> RunConfig {
    RunConfig {
        seed,
        nodes: servers + 1,
        clients,
        requests: 3,
        params: [
            ("channels".to_string(), serde_json::Value::from(4)),
            ("message_bytes".to_string(), serde_json::Value::from(64)),
        ]
        .into_iter()
        .collect(),
        ..RunConfig::new(Protocol::of("spectrum"))
    }
}

#[test]
fn swarm_draws_of_faults_and_byzantine_clients_leave_spectrum_correct_and_live() {
    let mut byzantine = 0;
    let mut partitions = 0;
    for (servers, clients, seeds) in [(2, 6, 1..=60), (3, 4, 61..=70)] {
        for seed in seeds {
            let config = rehearsal::swarm::draw(&spectrum(seed, servers, clients));
            let drawn = rehearsal::swarm::describe(&config);
            byzantine += usize::from(drawn.contains("byzantine"));
            partitions += usize::from(drawn.contains("heal"));
            let report = run(&config, false).unwrap();
            assert_eq!(
                report.outcome,
                Outcome::Ok,
                "swarm seed {seed}, {servers} servers ({drawn}): {:?}",
                report.violations
            );
        }
    }
    // The draws did exercise what the test claims.
    assert!(byzantine >= 10, "{byzantine} draws had a Byzantine client");
    assert!(partitions >= 10, "{partitions} draws cut the network");
}

#[test]
fn a_swarm_run_replays_identically_from_its_trace() {
    let config = rehearsal::swarm::draw(&spectrum(7, 2, 6));
    let first = run(&config, true).unwrap();
    let again = run(&config, true).unwrap();
    assert_eq!(first.digest, again.digest);
    assert_eq!(first.trace, again.trace);
}

#[test]
fn a_spectrum_mutant_failure_shrinks_replays_and_follows() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "shrink_spectrum");
    let big = dir.join("big.jsonl");
    let min = dir.join("min.jsonl");
    let (big, min) = (big.to_str().unwrap(), min.to_str().unwrap());
    let example =
        |name: &str| format!("{}/../examples/spectrum/{name}", env!("CARGO_MANIFEST_DIR"));
    let (config, scenario) = (example("mutants.toml"), example("unauthorised.scenario"));
    let sim = cli(&[
        "sim",
        "--config",
        &config,
        "--seeds",
        "1",
        "--scenario",
        &scenario,
        "--mutant",
        "seed-only-audit",
        "--trace",
        big,
    ]);
    assert_eq!(sim.status, 1, "{}{}", sim.stdout, sim.stderr);
    assert!(
        sim.stdout.contains("malicious-rejected") || sim.stdout.contains("published-correct"),
        "{}",
        sim.stdout
    );

    let shrink = cli(&["shrink", big, "-o", min, "--runs-max", "300"]);
    assert_eq!(shrink.status, 0, "{}{}", shrink.stdout, shrink.stderr);
    for replay in [
        cli(&["replay", min]),
        cli(&["replay", "--follow-trace", big]),
    ] {
        assert_eq!(replay.status, 1, "{}{}", replay.stdout, replay.stderr);
        assert!(replay.stdout.contains("identical"), "{}", replay.stdout);
    }
    // The correct protocol under the same setting: no violation.
    let correct = cli(&[
        "sim",
        "--config",
        &config,
        "--seeds",
        "1",
        "--scenario",
        &scenario,
    ]);
    assert_eq!(correct.status, 0, "{}{}", correct.stdout, correct.stderr);
}

#[test]
fn the_cli_takes_spectrum_sizes_and_says_what_a_flag_does_not_fit() {
    let run = cli(&[
        "sim",
        "--protocol",
        "spectrum",
        "--servers",
        "2",
        "--channels",
        "4",
        "--message-bytes",
        "128",
        "--clients",
        "6",
        "--rounds",
        "2",
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    let figures = &summary["protocol_figures"];
    assert_eq!(figures["rounds_published"], 2, "{summary}");
    assert_eq!(figures["writes_accepted"], 12, "{summary}");
    assert_eq!(summary["nodes"].as_array().unwrap().len(), 9, "{summary}");

    let pbft = cli(&["sim", "--protocol", "pbft", "--servers", "3"]);
    assert_eq!(pbft.status, 2);
    assert!(pbft.stderr.contains("use --nodes"), "{}", pbft.stderr);
    let one = cli(&["sim", "--protocol", "spectrum", "--servers", "1"]);
    assert_eq!(one.status, 2);
    assert!(one.stderr.contains("at least 2 servers"), "{}", one.stderr);
}

#[test]
fn a_client_crashed_for_good_is_owed_nothing_and_the_others_finish() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "spectrum_crash");
    let scenario = dir.join("crash.scenario");
    // Client node 5 dies during the first round and never comes back.
    std::fs::write(&scenario, "@0.02 crash 5\n").unwrap();
    let run = cli(&[
        "sim",
        "--protocol",
        "spectrum",
        "--clients",
        "4",
        "--rounds",
        "3",
        "--scenario",
        scenario.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let summary: serde_json::Value =
        serde_json::from_str(run.stdout.lines().next().unwrap()).unwrap();
    let figures = &summary["protocol_figures"];
    assert_eq!(figures["rounds_published"], 3, "{summary}");
    // Its later rounds are absent; the three others completed all three rounds.
    assert_eq!(figures["writes_absent"], 2, "{summary}");
    assert_eq!(figures["completed"], 9, "{summary}");
}
