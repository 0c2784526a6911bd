//! PBFT simulation throughput: committed requests per wall-clock second.
//!
//! ```text
//! cargo run --release -p rehearsal-protocols --example pbft_bench
//! cargo run --release -p rehearsal-protocols --example pbft_bench -- sim 1 1 200000
//! ```
//!
//! Arguments (all optional): crypto (`sim` or `real`), clients, batch size, requests per
//! client, `checks` to run with every invariant.

#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // wall-clock timing of the run itself

use rehearsal_protocols::pbft::{self, Config, CryptoKind};
use rehearsal_sim_core::{Outcome, SimConfig, SimpleNetwork, Simulation};
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: &str| args.get(i).cloned().unwrap_or_else(|| default.to_string());
    let crypto: CryptoKind = arg(0, "sim").parse().expect("crypto: sim or real");
    let clients: u32 = arg(1, "1").parse().expect("clients");
    let batch_max: usize = arg(2, "1").parse().expect("batch size");
    let requests: u64 = arg(3, "100000").parse().expect("requests per client");
    let with_checks = arg(4, "") == "checks";
    let config = Config {
        clients,
        requests_per_client: requests,
        batch_max,
        crypto,
        ..Config::default()
    };
    let actors = pbft::actors(&config).expect("valid config");
    let mut sim = Simulation::new(SimConfig::new(1), actors, SimpleNetwork::default());
    if with_checks {
        for check in pbft::checks(&config) {
            sim.add_invariant(check);
        }
    }
    let started = Instant::now();
    let report = sim.run();
    let wall = started.elapsed();
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
    let summary = pbft::Summary::of(&report.actors);
    println!(
        "crypto={crypto} clients={clients} batch={batch_max} checks={with_checks}: {} requests in {:.2} s wall = {:.0} requests/s; {} events ({:.0}/s), {} messages; simulated {:.1} s, {:.0} requests/s, latency p50 {} ms p99 {} ms",
        summary.completed,
        wall.as_secs_f64(),
        summary.completed as f64 / wall.as_secs_f64(),
        report.events,
        report.events as f64 / wall.as_secs_f64(),
        report.messages_sent,
        report.sim_time.as_secs_f64(),
        summary.throughput_per_s,
        summary.latency_ns_p50 / 1_000_000,
        summary.latency_ns_p99 / 1_000_000,
    );
}
