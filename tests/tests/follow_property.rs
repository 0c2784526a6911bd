//! Property: following a run's own recording with the same code re-enacts it exactly —
//! every event, the digest and the outcome — whatever the swarm drew (loss, duplication,
//! reordering, cuts that hold or drop, pauses, crashes and restarts, skew, Byzantine
//! replicas), for every protocol, and with a mutant's violations too.
//!
//! Thousands more seeds: `cargo bench -p rehearsal-tests --bench follow`.

use rehearsal::run::{run_with, RunOptions};
use rehearsal::{swarm, Protocol, RunConfig};
use rehearsal_net_models::LinkMode;
use rehearsal_traces::{first_difference, ScheduleFollower};

/// A small swarm configuration of `protocol` for `seed`: quick, yet with room for every
/// kind of fault the swarm draws.
fn small(protocol: Protocol, seed: u64, mutant: Option<&str>) -> RunConfig {
    let mut base = RunConfig::new(protocol);
    base.seed = seed;
    base.mutant = mutant.map(str::to_string);
    match protocol {
        Protocol::Unreplicated => {
            base.clients = 2;
            base.requests = 4;
            base.duration_ns = 4_000_000_000;
        }
        Protocol::Benaloh => {
            base.nodes = 3;
            base.duration_ns = 4_000_000_000;
        }
        // Its phases run at 30 s, 45 s and 90 s.
        Protocol::BenalohTimed => {
            base.nodes = 3;
            base.duration_ns = 100_000_000_000;
        }
        Protocol::Pbft => {
            base.clients = 1;
            base.requests = 3;
            base.duration_ns = 4_000_000_000;
        }
    }
    swarm::draw(&base)
}

/// Records the run of `config`, follows the recording, and says how the two differ, if
/// they do.
fn departure(config: &RunConfig) -> Option<String> {
    let keep = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    let recorded = run_with(config, keep).expect("a valid configuration");
    let options = RunOptions {
        keep_trace: true,
        follow: Some(ScheduleFollower::from_events(&recorded.trace)),
        ..RunOptions::default()
    };
    let followed = run_with(config, options).expect("a valid configuration");
    if let Some(d) = first_difference(&recorded.trace, &followed.trace) {
        return Some(format!(
            "departs at event {}: recorded {:?}, now {:?}",
            d.index, d.recorded, d.replayed
        ));
    }
    if followed.digest != recorded.digest || followed.outcome != recorded.outcome {
        return Some(format!(
            "same events but recorded {} {}, now {} {}",
            recorded.outcome.as_str(),
            recorded.digest,
            followed.outcome.as_str(),
            followed.digest
        ));
    }
    None
}

/// What the swarm does not draw: damaged messages, a narrow link whose queue delays what
/// follows (lost messages too), and FIFO links on odd seeds.
fn harsher(mut config: RunConfig) -> RunConfig {
    let network = config.network.as_mut().expect("swarm draws a network");
    network.corrupt = 0.05;
    network.bandwidth = Some("2Mbit/s".parse().unwrap());
    if config.seed % 2 == 1 {
        network.mode = LinkMode::Fifo;
    }
    config
}

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
    check(Protocol::Unreplicated, 1..501, None);
}

#[test]
fn benaloh_swarm_runs_follow_their_own_recordings() {
    check(Protocol::Benaloh, 1..501, None);
}

#[test]
fn timed_benaloh_swarm_runs_follow_their_own_recordings() {
    check(Protocol::BenalohTimed, 1..501, None);
}

#[test]
fn pbft_swarm_runs_follow_their_own_recordings() {
    check(Protocol::Pbft, 1..501, None);
}

#[test]
fn swarm_runs_over_damaging_narrow_fifo_links_follow_their_own_recordings() {
    for protocol in [Protocol::Unreplicated, Protocol::Benaloh, Protocol::Pbft] {
        check_with(protocol, 1..101, None, harsher);
    }
}

/// Violations end runs early and take other paths (the termination check after faults).
#[test]
fn pbft_mutant_swarm_runs_follow_their_own_recordings() {
    check(Protocol::Pbft, 1..101, Some("no-commit"));
}

/// Long runs: many pauses' backlogs, holds across cuts and restarts along the way.
#[test]
fn long_pbft_swarm_runs_follow_their_own_recordings() {
    let mut departed = Vec::new();
    for seed in 1..21 {
        let mut base = RunConfig::new(Protocol::Pbft);
        base.seed = seed;
        base.duration_ns = 120_000_000_000;
        base.mutant = Some("no-commit".into());
        if let Some(how) = departure(&swarm::draw(&base)) {
            departed.push(format!("seed {seed}: {how}"));
        }
    }
    assert!(departed.is_empty(), "{}", departed.join("\n"));
}
