//! Benaloh: the robust protocol is correct under any latency; the workshop's timed version
//! is caught racing when delays exceed its phase gaps.

use proptest::prelude::*;
use rehearsal::testing::{check_config_seeds, find_config_failure};
use rehearsal::{run, Protocol, RunConfig};
use rehearsal_sim_core::{Latency, Outcome};
use rehearsal_tests::{cli, scratch_dir};

fn benaloh(protocol: Protocol, nodes: u32, seed: u64, latency: &str) -> RunConfig {
    RunConfig {
        nodes,
        seed,
        latency: latency.parse().unwrap(),
        ..RunConfig::new(protocol)
    }
}

#[test]
fn timed_benaloh_is_caught_under_slow_links_and_the_failure_replays() {
    let failing: Vec<u64> = (1..=100)
        .filter(|&seed| {
            run(
                &benaloh(Protocol::of("benaloh-timed"), 5, seed, "uniform:1s..40s"),
                false,
            )
            .unwrap()
            .outcome
                == Outcome::Violation
        })
        .collect();
    assert!(
        !failing.is_empty(),
        "no seed in 1..=100 exposed the timed race"
    );

    // The CLI finds the same failure, says how to replay it, and the replay reproduces it.
    let seed = failing[0].to_string();
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "timed_benaloh_replay");
    let trace = dir.join("failure.jsonl");
    let trace = trace.to_str().unwrap();
    let args = [
        "sim",
        "--protocol",
        "benaloh-timed",
        "--latency",
        "uniform:1s..40s",
        "--seed",
        &seed,
        "--trace",
        trace,
    ];
    let found = cli(&args);
    assert_eq!(found.status, 1, "{}", found.stdout);
    assert!(found.stdout.contains("correct-sum"), "{}", found.stdout);
    assert!(found.stdout.contains(&format!(
        "rehearsal sim --protocol benaloh-timed --nodes 5 --seed {seed}"
    )));
    // Exit 1: the replay is identical, and the run it re-enacts fails.
    let replay = cli(&["replay", trace]);
    assert_eq!(replay.status, 1, "{}{}", replay.stdout, replay.stderr);
    assert!(
        replay
            .stdout
            .contains("exit 1: identical, but the run fails (violation)"),
        "{}",
        replay.stdout
    );
    assert!(
        replay.stdout.contains("identical (outcome violation"),
        "{}",
        replay.stdout
    );
}

#[test]
fn timed_benaloh_passes_on_a_fast_network() {
    check_config_seeds("timed_benaloh_passes_on_a_fast_network", 20, |seed| {
        benaloh(Protocol::of("benaloh-timed"), 5, seed, "constant:10ms")
    });
}

#[test]
fn robust_benaloh_survives_the_latencies_that_break_the_timed_one() {
    check_config_seeds(
        "robust_benaloh_survives_the_latencies_that_break_the_timed_one",
        100,
        |seed| benaloh(Protocol::of("benaloh"), 5, seed, "uniform:1s..40s"),
    );
}

#[test]
fn the_cargo_test_harness_reports_a_timed_benaloh_failure_shrunk_with_its_commands() {
    let failure = find_config_failure("timed_benaloh_harness", 20, |seed| {
        benaloh(Protocol::of("benaloh-timed"), 6, seed, "uniform:1s..40s")
    })
    .expect("the timed race must be found within 20 seeds");
    let report = failure.to_string();
    assert!(report.contains("correct-sum"), "{report}");
    assert!(
        report.contains(&format!(
            "REHEARSAL_SEED={} cargo test timed_benaloh_harness",
            failure.seed
        )),
        "{report}"
    );
    assert!(failure.trace.ends_with(format!(
        "rehearsal/timed_benaloh_harness-seed-{}.jsonl",
        failure.seed
    )));
    let (shrunk, events) = failure.shrunk.clone().expect("the failure shrinks");
    assert!(events < failure.events, "{report}");
    // Both traces replay with the CLI: the original from its seed, the shrunk one from
    // its own schedule; both still fail.
    for trace in [&failure.trace, &shrunk] {
        let replay = cli(&["replay", trace.to_str().unwrap()]);
        assert_eq!(replay.status, 1, "{}{}", replay.stdout, replay.stderr);
        assert!(
            replay
                .stdout
                .contains("exit 1: identical, but the run fails (violation)"),
            "{}",
            replay.stdout
        );
    }
}

#[test]
fn benaloh_with_every_message_lost_reports_what_each_node_waits_for() {
    let config = RunConfig {
        loss: 1.0,
        ..benaloh(Protocol::of("benaloh"), 3, 1, "constant:10ms")
    };
    let report = run(&config, false).unwrap();
    // Robust nodes retransmit into the void until the deadline; the report still says
    // what each one waits for.
    assert_eq!(report.outcome, Outcome::Violation);
    let all: Vec<String> = report.violations.iter().map(|v| v.to_string()).collect();
    let all = all.join("\n");
    assert!(all.contains("no total from n0, n1, n2"), "{all}");
    assert!(
        all.contains("at the deadline, n0 waits for shares from n1, n2"),
        "{all}"
    );
}

/// Swarm mode draws loss, duplication, reordering, partitions, pauses and skews from each
/// seed: robust Benaloh completes under every draw once the faults are over.
#[test]
fn robust_benaloh_completes_under_every_swarm_draw() {
    for seed in 1..=300 {
        let base = RunConfig {
            seed,
            ..RunConfig::new(Protocol::of("benaloh"))
        };
        let config = rehearsal::swarm::draw(&base);
        let report = run(&config, false).unwrap();
        assert_eq!(
            report.outcome,
            Outcome::Ok,
            "swarm seed {seed} ({}): {:?}",
            rehearsal::swarm::describe(&config),
            report.violations
        );
    }
}

fn latency_strategy() -> impl Strategy<Value = Latency> {
    prop_oneof![
        (0u64..100_000_000).prop_map(|ns| Latency::Constant { ns }),
        (0u64..1_000_000_000, 0u64..60_000_000_000).prop_map(|(a, b)| Latency::Uniform {
            lo_ns: a.min(b),
            hi_ns: a.max(b)
        }),
        (0u64..1_000_000_000, 0u64..1_000_000_000)
            .prop_map(|(mean_ns, std_ns)| Latency::Normal { mean_ns, std_ns }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn robust_benaloh_is_correct_for_any_seed_size_and_latency(
        seed in any::<u64>(),
        nodes in 2u32..20,
        latency in latency_strategy(),
    ) {
        let config = RunConfig { seed, nodes, latency, ..RunConfig::new(Protocol::of("benaloh")) };
        let report = run(&config, false).unwrap();
        prop_assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
        // Every node's total was checked: n secrets + n totals.
        let outputs: u64 = report.nodes.iter().map(|n| n.outputs).sum();
        prop_assert_eq!(outputs, 2 * u64::from(nodes));
    }
}
