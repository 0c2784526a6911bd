//! Swarm mode (`rehearsal sim --swarm`): the seed also draws the network model and a fault
//! schedule, so many seeds explore many different environments, not one.
//!
//! What is drawn: loss (0 to 30 %), duplication, reordering, whether cuts hold or drop
//! messages, up to two partitions of random shape (split, isolate, majority/minority,
//! ring, bridge) each healed later, up to two pauses, up to two clock skews, crashes
//! with restarts for protocols whose nodes keep durable state, and up to f Byzantine
//! replicas for PBFT. Every fault happens in the
//! first half of the run, so the second half shows whether the protocol recovers.
//!
//! The draws become an ordinary network configuration and scenario text, recorded in the
//! run configuration (and so in the trace header): a swarm run replays from its trace alone.

use crate::config::{RunConfig, ScenarioSource};
use rehearsal_net_models::{InFlight, NetConfig};
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{derive_rng, format_ns, Latency, SimRng};
use std::fmt::Write;

/// Seed `seed` of `base`: with `--swarm` (and no scenario), its network and fault
/// schedule drawn from that seed, as `sim --seeds` runs each seed.
pub fn seeded(base: &RunConfig, seed: u64) -> RunConfig {
    let config = RunConfig {
        seed,
        ..base.clone()
    };
    if config.swarm && config.scenario.is_none() {
        draw(&config)
    } else {
        config
    }
}

/// The configuration `base` with its network and scenario drawn from its seed.
pub fn draw(base: &RunConfig) -> RunConfig {
    let mut rng = derive_rng(base.seed, "swarm", 0);
    let nodes = base.actors();
    let network = draw_network(base, &mut rng);
    let window = base.duration_ns / 2;
    let mut lines: Vec<(u64, String)> = Vec::new();
    for _ in 0..rng.random_range(0..=2u32) {
        let at = rng.random_range(0..window.max(1));
        let heal = at + rng.random_range(window / 20..=window / 4).max(1);
        lines.push((at, partition_shape(&mut rng, nodes)));
        lines.push((heal.min(window), "heal".into()));
    }
    // Up to two pauses; crashes with restarts where nodes keep durable state.
    let mut pairs = vec![("pause", "resume")];
    if base.protocol.durable() {
        pairs.push(("crash", "restart"));
    }
    for (stop, start) in pairs {
        for _ in 0..rng.random_range(0..=2u32) {
            let node = rng.random_range(0..nodes);
            let at = rng.random_range(0..window.max(1));
            let back = at + rng.random_range(window / 50..=window / 5).max(1);
            lines.push((at, format!("{stop} {node}")));
            lines.push((back.min(window), format!("{start} {node}")));
        }
    }
    // Byzantine replicas, for protocols that offer them: at most f, for good.
    // `twin` and `fuzzed` are the correct protocol, switched on by the testbed's own twins
    // and message mutations: nothing to draw.
    let behaviors: Vec<&str> = base
        .protocol
        .byzantine_behaviors()
        .iter()
        .copied()
        .filter(|&b| !rehearsal_sim_core::testbed_behavior(b))
        .collect();
    if let (Some(room), false) = (
        base.protocol.byzantine_room(&base.sizes()),
        behaviors.is_empty(),
    ) {
        for _ in 0..rng.random_range(0..=room.max) {
            let node = rng.random_range(room.first..room.among.max(room.first + 1));
            let behavior = behaviors[rng.random_range(0..behaviors.len())];
            let at = rng.random_range(0..window.max(1));
            lines.push((at, format!("byzantine {node} {behavior}")));
        }
    }
    for _ in 0..rng.random_range(0..=2u32) {
        let node = rng.random_range(0..nodes);
        let offset_ms: i64 = rng.random_range(-500..=500);
        let drift: i64 = rng.random_range(-200..=200);
        let at = rng.random_range(0..window.max(1));
        let sign = if offset_ms < 0 { "-" } else { "+" };
        lines.push((
            at,
            format!("skew {node} {sign}{}ms {drift:+}ppm", offset_ms.abs()),
        ));
    }
    lines.sort_by_key(|(at, _)| *at);
    let mut text = format!("# drawn by --swarm from seed {}\n", base.seed);
    for (at, command) in &lines {
        let _ = writeln!(text, "@{} {command}", scenario_time(*at));
    }
    RunConfig {
        network: Some(network),
        scenario: Some(ScenarioSource {
            origin: format!("<swarm seed {}>", base.seed),
            text,
        }),
        swarm: true,
        ..base.clone()
    }
}

/// One partition command of a random shape.
fn partition_shape(rng: &mut SimRng, nodes: u32) -> String {
    let node = rng.random_range(0..nodes);
    match rng.random_range(0..5u32) {
        0 if nodes >= 2 => {
            // A random split into two non-empty groups.
            let mut a = Vec::new();
            let mut b = Vec::new();
            for n in 0..nodes {
                if rng.random_bool(0.5) {
                    a.push(n)
                } else {
                    b.push(n)
                }
            }
            if a.is_empty() || b.is_empty() {
                return format!("isolate {node}");
            }
            let list = |g: &[u32]| g.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
            format!("partition {} | {}", list(&a), list(&b))
        }
        1 if nodes >= 3 => "majority-minority".into(),
        2 if nodes >= 3 => "ring".into(),
        3 if nodes >= 3 => "bridge".into(),
        _ => format!("isolate {node}"),
    }
}

/// Virtual nanoseconds as a scenario time: whole seconds and a fraction.
fn scenario_time(ns: u64) -> String {
    let (secs, frac) = (ns / 1_000_000_000, ns % 1_000_000_000);
    if frac == 0 {
        secs.to_string()
    } else {
        format!("{secs}.{frac:09}")
    }
}

/// A one-line account of what a swarm draw chose, for summaries.
pub fn describe(config: &RunConfig) -> String {
    let network = config.net_config();
    let faults: Vec<String> = config
        .scenario
        .as_ref()
        .map(|s| {
            s.text
                .lines()
                .filter(|l| l.starts_with('@'))
                .map(|l| {
                    let (at, command) = l[1..].split_once(' ').unwrap_or((l, ""));
                    let ns = rehearsal_net_models::scenario::parse_time(at)
                        .map(|t| format_ns(t.as_nanos()))
                        .unwrap_or_else(|_| at.to_string());
                    format!("{ns} {command}")
                })
                .collect()
        })
        .unwrap_or_default();
    let faults = if faults.is_empty() {
        "no faults".to_string()
    } else {
        faults.join("; ")
    };
    format!("swarm: {network}; {faults}")
}
/// The network of seed `base.seed` as swarm mode draws it (loss, duplication, reordering,
/// what cuts do with messages in flight), without its fault schedule.
pub fn network_of(base: &RunConfig) -> NetConfig {
    draw_network(base, &mut derive_rng(base.seed, "swarm", 0))
}

/// The first draws of [`draw`]: the network.
fn draw_network(base: &RunConfig, rng: &mut SimRng) -> NetConfig {
    let mut network = base.net_config();
    // Probabilities are rounded to a readable precision: they are printed and recorded.
    let round = |p: f64| (p * 1000.0).round() / 1000.0;
    network.loss = round(rng.random_range(0.0..0.30));
    network.duplicate = if rng.random_bool(0.5) {
        round(rng.random_range(0.0..0.05))
    } else {
        0.0
    };
    if rng.random_bool(0.5) {
        network.reorder = round(rng.random_range(0.0..0.2));
        let spread = network.latency.mean_ns().max(1_000_000).saturating_mul(2);
        network.reorder_delay = Latency::Uniform {
            lo_ns: 0,
            hi_ns: spread,
        };
    }
    network.on_cut = if rng.random_bool(0.5) {
        InFlight::Hold
    } else {
        InFlight::Drop
    };
    network
}
