//! Schedule-following replay over many swarm seeds: each run is recorded, then followed
//! with the same code, and must be re-enacted exactly (every event, the digest, the
//! outcome). Prints, per group, the seeds checked, the departures found and seeds per
//! second; exits 1 if any run departs.
//!
//! `cargo bench -p rehearsal-tests --bench follow [-- SEEDS [FIRST]]`: SEEDS per group
//! (default 10000; long PBFT runs take a fiftieth), from seed FIRST (default 1001, past the
//! seeds the property test `follow_property` checks).

use rehearsal::run::{run_with, RunOptions};
use rehearsal::{swarm, Protocol, RunConfig};
use rehearsal_net_models::LinkMode;
use rehearsal_traces::{first_difference, ScheduleFollower};
use std::time::Instant;

/// One group of runs: a name and the configuration of each seed.
struct Group {
    name: &'static str,
    seeds: u64,
    config: Box<dyn Fn(u64) -> RunConfig>,
}

fn small(protocol: Protocol, seed: u64) -> RunConfig {
    let mut base = RunConfig::new(protocol);
    base.seed = seed;
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
    base
}

fn harsher(mut config: RunConfig) -> RunConfig {
    let network = config.network.as_mut().expect("swarm draws a network");
    network.corrupt = 0.05;
    network.bandwidth = Some("2Mbit/s".parse().unwrap());
    if config.seed % 2 == 1 {
        network.mode = LinkMode::Fifo;
    }
    config
}

fn departure(config: &RunConfig) -> Option<String> {
    let keep = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    let recorded = match run_with(config, keep) {
        Ok(run) => run,
        Err(e) => return Some(format!("cannot run: {e}")),
    };
    let options = RunOptions {
        keep_trace: true,
        follow: Some(ScheduleFollower::from_events(&recorded.trace)),
        ..RunOptions::default()
    };
    let followed = match run_with(config, options) {
        Ok(run) => run,
        Err(e) => return Some(format!("cannot follow: {e}")),
    };
    if let Some(d) = first_difference(&recorded.trace, &followed.trace) {
        return Some(format!(
            "departs at event {}: recorded {:?}, now {:?}",
            d.index, d.recorded, d.replayed
        ));
    }
    (followed.digest != recorded.digest || followed.outcome != recorded.outcome)
        .then(|| format!("digest {} vs {}", recorded.digest, followed.digest))
}

fn main() {
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seeds = numbers.first().copied().unwrap_or(10_000);
    let first = numbers.get(1).copied().unwrap_or(1001);
    let swarm_of = |protocol: Protocol| {
        Box::new(move |seed| swarm::draw(&small(protocol, seed))) as Box<dyn Fn(u64) -> RunConfig>
    };
    let groups = [
        Group {
            name: "unreplicated",
            seeds,
            config: swarm_of(Protocol::Unreplicated),
        },
        Group {
            name: "benaloh",
            seeds,
            config: swarm_of(Protocol::Benaloh),
        },
        Group {
            name: "benaloh-timed",
            seeds,
            config: swarm_of(Protocol::BenalohTimed),
        },
        Group {
            name: "pbft",
            seeds,
            config: swarm_of(Protocol::Pbft),
        },
        Group {
            name: "pbft --mutant no-commit",
            seeds,
            config: Box::new(|seed| {
                let mut base = small(Protocol::Pbft, seed);
                base.mutant = Some("no-commit".into());
                swarm::draw(&base)
            }),
        },
        Group {
            name: "pbft --duration 2m --mutant no-commit",
            seeds: (seeds / 50).max(1),
            config: Box::new(|seed| {
                let mut base = RunConfig::new(Protocol::Pbft);
                base.seed = seed;
                base.duration_ns = 120_000_000_000;
                base.mutant = Some("no-commit".into());
                swarm::draw(&base)
            }),
        },
        Group {
            name: "unreplicated, corrupt+bandwidth+fifo",
            seeds,
            config: Box::new(|seed| harsher(swarm::draw(&small(Protocol::Unreplicated, seed)))),
        },
        Group {
            name: "pbft, corrupt+bandwidth+fifo",
            seeds,
            config: Box::new(|seed| harsher(swarm::draw(&small(Protocol::Pbft, seed)))),
        },
    ];
    let (mut checked, mut departed) = (0u64, 0u64);
    for group in &groups {
        let started = Instant::now();
        let mut found = Vec::new();
        for seed in first..first + group.seeds {
            if let Some(how) = departure(&(group.config)(seed)) {
                found.push(format!("seed {seed}: {how}"));
            }
        }
        let secs = started.elapsed().as_secs_f64();
        println!(
            "{:<40} {:>6} seeds checked, {:>4} depart, {:>8.1} seeds/s",
            group.name,
            group.seeds,
            found.len(),
            group.seeds as f64 / secs.max(1e-9)
        );
        for line in found.iter().take(3) {
            println!("  {line}");
        }
        checked += group.seeds;
        departed += found.len() as u64;
    }
    println!("total: {checked} seeds checked, {departed} depart");
    if departed > 0 {
        std::process::exit(1);
    }
}
