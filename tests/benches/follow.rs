//! Schedule-following replay over many swarm seeds: each run is recorded, then followed
//! with the same code, and must be re-enacted exactly (every event, the digest, the
//! outcome). Prints, per group, the seeds checked, the departures found and seeds per
//! second; exits 1 if any run departs.
//!
//! `cargo bench -p rehearsal-tests --bench follow [-- SEEDS [FIRST]]`: SEEDS per group
//! (default 10000; long PBFT runs take a fiftieth), from seed FIRST (default 1001, past the
//! seeds the property test `follow_property` checks).

use rehearsal::{swarm, Protocol, RunConfig};
use rehearsal_tests::follow::{departure, harsher, small};
use std::time::Instant;

/// One group of runs: a name and the configuration of each seed.
struct Group {
    name: &'static str,
    seeds: u64,
    config: Box<dyn Fn(u64) -> RunConfig>,
}

fn main() {
    let numbers: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seeds = numbers.first().copied().unwrap_or(10_000);
    let first = numbers.get(1).copied().unwrap_or(1001);
    let swarm_of = |protocol: Protocol| {
        Box::new(move |seed| small(protocol, seed, None)) as Box<dyn Fn(u64) -> RunConfig>
    };
    let groups = [
        Group {
            name: "unreplicated",
            seeds,
            config: swarm_of(Protocol::of("unreplicated")),
        },
        Group {
            name: "benaloh",
            seeds,
            config: swarm_of(Protocol::of("benaloh")),
        },
        Group {
            name: "benaloh-timed",
            seeds,
            config: swarm_of(Protocol::of("benaloh-timed")),
        },
        Group {
            name: "pbft",
            seeds,
            config: swarm_of(Protocol::of("pbft")),
        },
        Group {
            name: "pbft --mutant no-commit",
            seeds,
            config: Box::new(|seed| small(Protocol::of("pbft"), seed, Some("no-commit"))),
        },
        Group {
            name: "pbft --duration 2m --mutant no-commit",
            seeds: (seeds / 50).max(1),
            config: Box::new(|seed| {
                let mut base = RunConfig::new(Protocol::of("pbft"));
                base.seed = seed;
                base.duration_ns = 120_000_000_000;
                base.mutant = Some("no-commit".into());
                swarm::draw(&base)
            }),
        },
        Group {
            name: "unreplicated, corrupt+bandwidth+fifo",
            seeds,
            config: Box::new(|seed| harsher(small(Protocol::of("unreplicated"), seed, None))),
        },
        Group {
            name: "pbft, corrupt+bandwidth+fifo",
            seeds,
            config: Box::new(|seed| harsher(small(Protocol::of("pbft"), seed, None))),
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
