//! Property: following a run's own recording with the same code re-enacts it exactly —
//! every event, the digest and the outcome — whatever the swarm drew (loss, duplication,
//! reordering, cuts that hold or drop, pauses, crashes and restarts, skew, Byzantine
//! replicas), for every protocol, and with a mutant's violations too.
//!
//! Thousands more seeds: `cargo bench -p rehearsal-tests --bench follow`.

use rehearsal::{swarm, Protocol, RunConfig};
use rehearsal_tests::follow::{departure, harsher, small};

fn check(protocol: Protocol, seeds: std::ops::Range<u64>, mutant: Option<&str>) {
    check_with(protocol, seeds, mutant, |c| c)
}

fn check_with(
    protocol: Protocol,
    seeds: std::ops::Range<u64>,
    mutant: Option<&str>,
    adjust: impl Fn(RunConfig) -> RunConfig,
) {
    let mut departed = Vec::new();
    for seed in seeds.clone() {
        if let Some(how) = departure(&adjust(small(protocol, seed, mutant))) {
            departed.push(format!("seed {seed}: {how}"));
        }
    }
    assert!(
        departed.is_empty(),
        "{protocol} (mutant {mutant:?}): {} of {} seeds depart from their own recording; first:\n{}",
        departed.len(),
        seeds.end - seeds.start,
        departed[..departed.len().min(3)].join("\n")
    );
}

#[test]
fn unreplicated_swarm_runs_follow_their_own_recordings() {
    check(Protocol::of("unreplicated"), 1..501, None);
}

#[test]
fn benaloh_swarm_runs_follow_their_own_recordings() {
    check(Protocol::of("benaloh"), 1..501, None);
}

#[test]
fn timed_benaloh_swarm_runs_follow_their_own_recordings() {
    check(Protocol::of("benaloh-timed"), 1..501, None);
}

#[test]
fn pbft_swarm_runs_follow_their_own_recordings() {
    check(Protocol::of("pbft"), 1..501, None);
}

#[test]
fn swarm_runs_over_damaging_narrow_fifo_links_follow_their_own_recordings() {
    for protocol in [
        Protocol::of("unreplicated"),
        Protocol::of("benaloh"),
        Protocol::of("pbft"),
    ] {
        check_with(protocol, 1..101, None, harsher);
    }
}

/// Runs whose scheduler picked the order (`--strategy random` or `pct`) re-enact it from
/// their recorded times: deliveries, timer firings and starts.
#[test]
fn swarm_runs_under_search_strategies_follow_their_own_recordings() {
    use rehearsal_sim_core::Strategy;
    let strategy = |seed: u64| match seed % 4 {
        0 => Strategy::Random { window_ns: 0 },
        1 => Strategy::Pct {
            depth: 3,
            steps: 100,
            window_ns: 0,
        },
        2 => Strategy::Random {
            window_ns: 3_000_000,
        },
        _ => Strategy::Pct {
            depth: 2,
            steps: 300,
            window_ns: 2_000_000,
        },
    };
    for name in Protocol::names() {
        let protocol = Protocol::of(name);
        check_with(protocol, 1..61, None, |c| RunConfig {
            strategy: strategy(c.seed),
            ..harsher(c)
        });
    }
    check_with(Protocol::of("pbft"), 1..61, Some("no-commit"), |c| {
        RunConfig {
            strategy: strategy(c.seed),
            ..c
        }
    });
}

/// Violations end runs early and take other paths (the termination check after faults).
#[test]
fn pbft_mutant_swarm_runs_follow_their_own_recordings() {
    check(Protocol::of("pbft"), 1..101, Some("no-commit"));
}

/// Long runs: many pauses' backlogs, holds across cuts and restarts along the way.
#[test]
fn long_pbft_swarm_runs_follow_their_own_recordings() {
    let mut departed = Vec::new();
    for seed in 1..21 {
        let mut base = RunConfig::new(Protocol::of("pbft"));
        base.seed = seed;
        base.duration_ns = 120_000_000_000;
        base.mutant = Some("no-commit".into());
        if let Some(how) = departure(&swarm::draw(&base)) {
            departed.push(format!("seed {seed}: {how}"));
        }
    }
    assert!(departed.is_empty(), "{}", departed.join("\n"));
}
