//! `rehearsal replay --follow-trace`: re-enacting a recorded schedule reproduces the run
//! exactly when the code is unchanged, and reports where a changed protocol departs.

use rehearsal_tests::{cli, scratch_dir};

use rehearsal_tests::UNREPLICATED_LOSSY as LOSSY;

fn record(dir: &std::path::Path, name: &str, args: &[&str]) -> String {
    let path = dir.join(name);
    let path = path.to_str().unwrap().to_string();
    let mut all = vec!["sim"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--trace", &path]);
    let run = cli(&all);
    assert!(run.status <= 1, "{}{}", run.stdout, run.stderr);
    path
}

#[test]
fn following_an_unchanged_run_reproduces_every_event() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "follow_same");
    let lossy = record(&dir, "lossy.jsonl", LOSSY);
    let run = cli(&["replay", "--follow-trace", &lossy]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("identical: all"), "{}", run.stdout);
    assert!(
        run.stdout.contains("exit 0: identical, and the run is ok"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(", 0 unscheduled"), "{}", run.stdout);

    // A failing run follows to the same failure.
    let failing = record(
        &dir,
        "timed.jsonl",
        &[
            "--protocol",
            "benaloh-timed",
            "--latency",
            "uniform:1s..40s",
        ],
    );
    let run = cli(&["replay", "--follow-trace", &failing]);
    assert_eq!(run.status, 1, "{}", run.stdout);
    assert!(
        run.stdout
            .contains("exit 1: identical, but the run fails (violation)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("now violation"), "{}", run.stdout);
    assert!(run.stdout.contains("correct-sum"), "{}", run.stdout);
}

#[test]
fn a_changed_protocol_is_reported_where_it_departs() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "follow_mutant");
    let lossy = record(&dir, "lossy.jsonl", LOSSY);
    let run = cli(&[
        "replay",
        "--follow-trace",
        &lossy,
        "--mutant",
        "execute-retransmissions",
    ]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let text = &run.stdout;
    assert!(
        text.contains("departs from the recording at event"),
        "{text}"
    );
    // The recorded side shows the reply the real server sent; the mutant executes again.
    let recorded = text.lines().find(|l| l.contains("recorded:")).unwrap();
    let now = text.lines().find(|l| l.contains("now:")).unwrap();
    assert!(
        recorded.contains("send") && recorded.contains("Reply"),
        "{recorded}"
    );
    assert!(now.contains("executed"), "{now}");
    assert!(text.contains("executed twice"), "{text}");

    // A plain replay has no use for a mutant; an unknown mutant is named.
    let plain = cli(&["replay", &lossy, "--mutant", "execute-retransmissions"]);
    assert_eq!(plain.status, 2);
    assert!(
        plain.stderr.contains("needs --follow-trace"),
        "{}",
        plain.stderr
    );
    let unknown = cli(&["replay", "--follow-trace", &lossy, "--mutant", "nope"]);
    assert_eq!(unknown.status, 2);
    assert!(
        unknown
            .stderr
            .contains("unknown unreplicated mutant `nope`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn the_mutant_is_caught_from_the_seed_too() {
    // The same bug, found by plain simulation under loss; the correct server passes.
    let args = |mutant: bool| {
        let mut a = vec![
            "sim",
            "--protocol",
            "unreplicated",
            "--clients",
            "3",
            "--requests",
            "20",
            "--loss",
            "0.3",
            "--seeds",
            "5",
        ];
        if mutant {
            a.extend_from_slice(&["--mutant", "execute-retransmissions"]);
        }
        cli(&a)
    };
    let correct = args(false);
    assert_eq!(correct.status, 0, "{}", correct.stdout);
    let broken = args(true);
    assert_eq!(broken.status, 1, "{}", broken.stdout);
    assert!(
        broken.stdout.contains("5 runs: 0 ok, 5 violation"),
        "{}",
        broken.stdout
    );
}

mod same_code_follows_exactly {
    //! One test per way a message can reach its receiver later than the network delivered
    //! it, or be re-enacted otherwise than it was drawn: following the recording with the
    //! same code must reproduce every event of it.

    use rehearsal::config::ScenarioSource;
    use rehearsal::run::{run_with, RunOptions};
    use rehearsal::{Protocol, RunConfig};
    use rehearsal_net_models::{InFlight, NetConfig};
    use rehearsal_traces::{first_difference, ScheduleFollower};

    /// Records `config` for seeds 1..=`seeds`, follows each recording, and asserts each
    /// follow is identical; returns how many recordings had an event named `kind` with
    /// `detail` in it, so a test can show it exercised what it claims to.
    fn follows_exactly(config: &RunConfig, seeds: u64, needle: &str) -> usize {
        let mut exercised = 0;
        for seed in 1..=seeds {
            let config = RunConfig {
                seed,
                ..config.clone()
            };
            let keep = RunOptions {
                keep_trace: true,
                ..RunOptions::default()
            };
            let recorded = run_with(&config, keep).unwrap();
            let options = RunOptions {
                keep_trace: true,
                follow: Some(ScheduleFollower::from_events(&recorded.trace)),
                ..RunOptions::default()
            };
            let followed = run_with(&config, options).unwrap();
            if let Some(d) = first_difference(&recorded.trace, &followed.trace) {
                panic!(
                    "seed {seed}: departs at event {}:\n  recorded {:?}\n  now      {:?}",
                    d.index, d.recorded, d.replayed
                );
            }
            assert_eq!(followed.digest, recorded.digest, "seed {seed}");
            assert_eq!(followed.outcome, recorded.outcome, "seed {seed}");
            let text = format!("{:?}", recorded.trace);
            exercised += usize::from(text.contains(needle));
        }
        exercised
    }

    fn scenario(text: &str) -> Option<ScenarioSource> {
        Some(ScenarioSource {
            origin: "<test>".into(),
            text: text.into(),
        })
    }

    /// Clients whose requests reach the server in another order than they were sent.
    fn jittery_clients() -> RunConfig {
        let mut config = RunConfig::new(Protocol::of("unreplicated"));
        config.clients = 4;
        config.requests = 5;
        config.duration_ns = 20_000_000_000;
        config.network = Some(NetConfig {
            latency: "uniform:1ms..50ms".parse().unwrap(),
            ..NetConfig::default()
        });
        config
    }

    #[test]
    fn messages_held_across_a_cut_are_released_in_their_recorded_order() {
        let mut config = jittery_clients();
        config.network.as_mut().unwrap().on_cut = InFlight::Hold;
        config.scenario = scenario("@0.02 isolate 0\n@0.5 heal\n");
        let held = follows_exactly(&config, 20, "t: 500000000, node: n0, kind: Deliver");
        assert!(
            held >= 10,
            "only {held} runs delivered held messages at heal"
        );
    }

    #[test]
    fn a_paused_nodes_backlog_runs_in_its_recorded_order() {
        let mut config = jittery_clients();
        config.scenario = scenario("@0.02 pause 0\n@0.5 resume 0\n");
        let parked = follows_exactly(&config, 20, "t: 500000000, node: n0, kind: Deliver");
        assert!(
            parked >= 10,
            "only {parked} runs handled a backlog at resume"
        );
    }

    #[test]
    fn a_paused_nodes_backlog_lost_in_a_crash_is_dropped_in_its_recorded_order() {
        let mut config = RunConfig::new(Protocol::of("pbft"));
        config.clients = 3;
        config.requests = 3;
        config.duration_ns = 20_000_000_000;
        config.network = Some(NetConfig {
            latency: "uniform:1ms..50ms".parse().unwrap(),
            ..NetConfig::default()
        });
        config.scenario = scenario("@0.01 pause 1\n@0.3 crash 1\n@1 restart 1\n");
        let lost = follows_exactly(&config, 20, "reason: \"receiver crashed\"");
        assert!(lost >= 10, "only {lost} runs lost a backlog in the crash");
        // Back at once: the backlog is lost all the same, though the node is up when
        // its messages' turn comes.
        config.scenario = scenario("@0.01 pause 1\n@0.3 crash 1\n@0.3 restart 1\n");
        let lost = follows_exactly(&config, 20, "reason: \"receiver crashed\"");
        assert!(lost >= 10, "only {lost} runs lost a backlog in the crash");
    }

    #[test]
    fn damaged_messages_are_damaged_as_recorded() {
        let mut config = jittery_clients();
        config.network.as_mut().unwrap().corrupt = 0.3;
        let damaged = follows_exactly(&config, 20, "kind: Corrupt");
        assert!(
            damaged >= 10,
            "only {damaged} runs delivered damaged messages"
        );
    }

    #[test]
    fn duplicates_lost_on_arrival_are_lost_as_recorded() {
        let mut config = jittery_clients();
        config.network.as_mut().unwrap().duplicate = 0.3;
        // Copies that fall due while the server is cut off are dropped, their twins not.
        config.scenario = scenario("@0.03 isolate 0\n@0.06 heal\n@0.2 isolate 0\n@0.25 heal\n");
        let lost = follows_exactly(&config, 20, "reason: \"partition\"");
        assert!(lost >= 10, "only {lost} runs dropped messages on arrival");
    }
}
