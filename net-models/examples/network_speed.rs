//! How much the composable network model costs against `SimpleNetwork`, on the workload of
//! `rehearsal bench sim`: unreplicated request/reply, one client and one server, constant
//! 10 ms latency, trace digest on, no trace kept.
//!
//! ```text
//! cargo run --release -p rehearsal-net-models --example network_speed [-- ROUND_TRIPS [REPEATS]]
//! ```
//!
//! Runs each model `REPEATS` times (default 3), alternating, and reports the best of each.

// A benchmark measures wall time; simulated code never does (see clippy.toml).
#![allow(clippy::disallowed_types, clippy::disallowed_methods)]

use rehearsal_net_models::{LinkMode, NetConfig, Network};
use rehearsal_protocols::unreplicated;
use rehearsal_sim_core::{NetworkModel, Outcome, SimConfig, SimpleNetwork, Simulation};
use std::time::{Duration, Instant};

fn run(round_trips: u64, network: impl NetworkModel + 'static) -> (Duration, u64) {
    let proto = unreplicated::Config {
        clients: 1,
        requests_per_client: round_trips,
        retransmit_after: Duration::from_millis(100),
    };
    let mut sim = Simulation::new(SimConfig::new(1), unreplicated::actors(&proto), network);
    sim.add_invariant(unreplicated::RequestsAnswered::new(&proto));
    let start = Instant::now();
    let report = sim.run();
    let wall = start.elapsed();
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
    (wall, report.messages_delivered)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let round_trips: u64 = args
        .next()
        .map_or(1_000_000, |a| a.parse().expect("ROUND_TRIPS"));
    let repeats: u32 = args.next().map_or(3, |a| a.parse().expect("REPEATS"));
    // Every feature that costs nothing in randomness but takes the slow path, plus a drawn
    // latency: what a realistic configuration pays per message.
    let slow_path = NetConfig {
        latency: "normal:10ms,1ms".parse().expect("latency spec"),
        bandwidth: "1Gbit/s".parse().ok(),
        mode: LinkMode::Fifo,
        ..NetConfig::default()
    };
    let (mut simple_best, mut network_best, mut slow_best) =
        (Duration::MAX, Duration::MAX, Duration::MAX);
    let mut messages = 0;
    for _ in 0..repeats {
        let (wall, delivered) = run(round_trips, SimpleNetwork::default());
        simple_best = simple_best.min(wall);
        messages = delivered;
        let network = Network::new(&NetConfig::default(), 2).expect("default configuration");
        let (wall, delivered) = run(round_trips, network);
        assert_eq!(delivered, messages, "both models deliver the same messages");
        network_best = network_best.min(wall);
        let network = Network::new(&slow_path, 2).expect("slow-path configuration");
        let (wall, delivered) = run(round_trips, network);
        assert_eq!(delivered, messages, "both models deliver the same messages");
        slow_best = slow_best.min(wall);
    }
    let rate = |wall: Duration| messages as f64 / wall.as_secs_f64();
    println!("{round_trips} round trips, {messages} messages, best of {repeats}:");
    println!(
        "  SimpleNetwork            {:>8.3} s  {:>12.0} messages/s",
        simple_best.as_secs_f64(),
        rate(simple_best)
    );
    println!(
        "  Network (default config) {:>8.3} s  {:>12.0} messages/s",
        network_best.as_secs_f64(),
        rate(network_best)
    );
    println!(
        "  Network ({slow_path})\n                           {:>8.3} s  {:>12.0} messages/s",
        slow_best.as_secs_f64(),
        rate(slow_best)
    );
    println!(
        "  throughput relative to SimpleNetwork: default Network {:.1} %, slow path {:.1} %",
        100.0 * rate(network_best) / rate(simple_best),
        100.0 * rate(slow_best) / rate(simple_best)
    );
}
