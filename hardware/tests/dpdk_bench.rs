//! Measures the DPDK ring-pair benchmark (the transport and its raw baseline); ignored by default (run it in release mode):
//!
//! ```text
//! cargo test --release -p rehearsal-hardware --features dpdk --test dpdk_bench -- --ignored --nocapture
//! ```
//!
//! `REHEARSAL_BENCH_MESSAGES` and `REHEARSAL_BENCH_PAYLOAD_BYTES` override the defaults
//! (10 million messages of 64 bytes).
#![cfg(feature = "dpdk")]

use rehearsal_hardware::dpdk::bench_ring_pair;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[test]
#[ignore = "a measurement, not a check: run it in release mode with --ignored"]
fn ring_pair_one_way_messages_per_second() {
    let messages = env_or("REHEARSAL_BENCH_MESSAGES", 10_000_000u64);
    let payload_bytes = env_or("REHEARSAL_BENCH_PAYLOAD_BYTES", 64usize);
    let report = bench_ring_pair(messages, payload_bytes).unwrap();
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
    println!(
        "{:.2} million messages/s of {payload_bytes} bytes through the Transport trait, \
         {:.2} million raw: {:.2} of the raw rate",
        report.messages_per_sec / 1e6,
        report.raw.messages_per_sec / 1e6,
        report.transport_over_raw
    );
}
