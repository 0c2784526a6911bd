//! `rehearsal bench`: figures, not pass/fail.

use crate::cli::{CliError, EXIT_FAILED, EXIT_OK};
use crate::config::{Protocol, RunConfig};
use crate::run::{run_with, RunOptions};
use rehearsal_sim_core::{Latency, Outcome};
use std::io::Write;

/// Unreplicated ping-pong: one client, one server, constant 10 ms latency, digest on and
/// no trace kept in memory; once over the minimal network model (latency and loss only)
/// and once over the default composable model of `net-models`, to show what it costs.
pub fn sim(round_trips: u64, json: bool, out: &mut dyn Write) -> Result<u8, CliError> {
    let config = RunConfig {
        clients: 1,
        requests: round_trips,
        latency: Latency::constant_ms(10),
        duration_ns: u64::MAX,
        ..RunConfig::new(Protocol::of("unreplicated"))
    };
    let mut figures = Vec::new();
    let mut ok = true;
    for (model, minimal) in [("default", false), ("minimal", true)] {
        let options = RunOptions {
            minimal_network: minimal,
            ..RunOptions::default()
        };
        let summary = run_with(&config, options).map_err(CliError::BadInput)?;
        ok &= summary.outcome == Outcome::Ok;
        let wall_s = summary.wall_time.as_secs_f64().max(1e-9);
        let messages = summary.messages_delivered;
        figures.push(serde_json::json!({
            "bench": "sim",
            "model": model,
            "workload": "unreplicated ping-pong, 1 client, 1 server, constant:10ms, trace digest on",
            "round_trips": round_trips,
            "messages": messages,
            "events": summary.events,
            "wall_time_ns": u64::try_from(summary.wall_time.as_nanos()).unwrap_or(u64::MAX),
            "messages_per_wall_second": (messages as f64 / wall_s).round(),
            "sim_seconds_per_wall_second": summary.sim_time.as_secs_f64() / wall_s,
            "outcome": summary.outcome.as_str(),
        }));
    }
    let rate = |f: &serde_json::Value| f["messages_per_wall_second"].as_f64().unwrap_or(0.0);
    let ratio = rate(&figures[0]) / rate(&figures[1]).max(1.0);
    if json {
        let all = serde_json::json!({
            "bench": "sim",
            "runs": figures,
            "default_over_minimal": (ratio * 1000.0).round() / 1000.0,
        });
        writeln!(out, "{all}")?;
    } else {
        writeln!(
            out,
            "bench sim: {round_trips} round trips ({} messages, {} events) per model",
            figures[0]["messages"], figures[0]["events"]
        )?;
        for f in &figures {
            writeln!(
                out,
                "  {:<8} model: {:>10.0} messages per wall-second, {:>7.0} sim seconds per wall-second, {:.3} s",
                f["model"].as_str().unwrap_or(""),
                rate(f),
                f["sim_seconds_per_wall_second"].as_f64().unwrap_or(0.0),
                f["wall_time_ns"].as_f64().unwrap_or(0.0) / 1e9
            )?;
        }
        writeln!(out, "  default / minimal: {:.1} %", ratio * 100.0)?;
    }
    // A benchmark of a broken run would measure nothing meaningful.
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}

/// PBFT in the simulator: committed requests per wall-second, closed-loop clients, no
/// network faults: the headline setting (4 replicas, 1 client, simulated signatures, no
/// batching), then with Ed25519, then with batching.
pub fn pbft(requests: u64, json: bool, out: &mut dyn Write) -> Result<u8, CliError> {
    let settings: [(&str, &str, u32, usize, u64); 4] = [
        ("sim crypto, 1 client, no batching", "sim", 1, 1, requests),
        (
            "real ed25519, 1 client, no batching",
            "real",
            1,
            1,
            (requests / 50).max(50),
        ),
        (
            "sim crypto, 16 clients, batches of 64",
            "sim",
            16,
            64,
            requests / 16,
        ),
        (
            "real ed25519, 16 clients, batches of 64",
            "real",
            16,
            64,
            (requests / 400).max(10),
        ),
    ];
    let mut figures = Vec::new();
    let mut ok = true;
    for (name, crypto, clients, batch, per_client) in settings {
        let config = RunConfig {
            nodes: 4,
            clients,
            requests: per_client.max(1),
            params: [
                ("crypto".to_string(), serde_json::Value::from(crypto)),
                ("batch".to_string(), serde_json::Value::from(batch)),
            ]
            .into_iter()
            .collect(),
            latency: Latency::constant_ms(10),
            duration_ns: u64::MAX,
            ..RunConfig::new(Protocol::of("pbft"))
        };
        let summary = run_with(&config, RunOptions::default()).map_err(CliError::BadInput)?;
        ok &= summary.outcome == Outcome::Ok;
        let completed = summary
            .protocol
            .as_ref()
            .and_then(|p| p["completed"].as_u64())
            .unwrap_or(0);
        let wall_s = summary.wall_time.as_secs_f64().max(1e-9);
        figures.push(serde_json::json!({
            "setting": name,
            "replicas": 4,
            "clients": clients,
            "batch": batch,
            "crypto": crypto,
            "committed_requests": completed,
            "wall_time_ns": u64::try_from(summary.wall_time.as_nanos()).unwrap_or(u64::MAX),
            "committed_requests_per_wall_second": (completed as f64 / wall_s).round(),
            "messages_delivered": summary.messages_delivered,
            "outcome": summary.outcome.as_str(),
        }));
    }
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "bench": "pbft", "runs": figures })
        )?;
    } else {
        writeln!(
            out,
            "bench pbft: 4 replicas, constant 10 ms links, every invariant checked"
        )?;
        for f in &figures {
            writeln!(
                out,
                "  {:<42} {:>9.0} committed requests per wall-second ({} requests in {:.3} s)",
                f["setting"].as_str().unwrap_or(""),
                f["committed_requests_per_wall_second"]
                    .as_f64()
                    .unwrap_or(0.0),
                f["committed_requests"],
                f["wall_time_ns"].as_f64().unwrap_or(0.0) / 1e9
            )?;
        }
    }
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}

/// The DPDK transport over an in-process ring pair: one-way messages per second.
#[cfg(feature = "dpdk")]
pub fn dpdk(
    messages: u64,
    payload_bytes: usize,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let report = rehearsal_hardware::dpdk::bench_ring_pair(messages, payload_bytes)
        .map_err(|e| CliError::BadInput(format!("bench dpdk: {e}")))?;
    if json {
        let text = serde_json::to_string(&report).map_err(|e| CliError::Io(e.into()))?;
        writeln!(out, "{text}")?;
    } else {
        writeln!(
            out,
            "dpdk ring pair: {} messages of {} B in {:.3} s: {:.2} M messages/s, {:.1} MB/s",
            report.messages,
            report.payload_bytes,
            report.seconds,
            report.messages_per_sec / 1e6,
            report.bytes_per_sec / 1e6
        )?;
    }
    Ok(EXIT_OK)
}

/// Without the `dpdk` feature there is no DPDK transport to measure.
#[cfg(not(feature = "dpdk"))]
pub fn dpdk(_: u64, _: usize, _: bool, _: &mut dyn Write) -> Result<u8, CliError> {
    Err(CliError::BadInput(
        "this rehearsal was built without DPDK: install libdpdk-dev and pkg-config, then run \
         `cargo run --release --features dpdk -- bench dpdk`"
            .into(),
    ))
}
