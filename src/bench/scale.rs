//! `rehearsal bench scale`: what one delivered message costs as a protocol grows.
//!
//! PBFT sends about 2n² messages per committed request and Benaloh n² per sum, so a
//! simulator whose cost per message grows with n (a queue that slows as it fills, a
//! broadcast encoded once per recipient, votes recounted on every vote) gets slower than
//! the protocol's own growth. This bench runs each protocol at several sizes with about the
//! same number of delivered messages each, and prints the wall time per delivered message,
//! the wall time per committed request (PBFT) and the process's peak resident memory
//! during each run.

use crate::cli::{CliError, EXIT_FAILED, EXIT_OK};
use crate::config::{Protocol, RunConfig};
use crate::memory;
use crate::run::{run_with, RunOptions};
use rehearsal_sim_core::{Latency, Outcome};
use std::io::Write;

/// What `bench scale` runs.
#[derive(Debug, Clone)]
pub struct ScaleBench {
    /// PBFT replica counts (3f+1 each).
    pub pbft_nodes: Vec<u32>,
    /// Benaloh peer counts.
    pub benaloh_nodes: Vec<u32>,
    /// Messages each PBFT size aims at (its requests are chosen to deliver about this many).
    pub pbft_messages: u64,
}

impl Default for ScaleBench {
    fn default() -> Self {
        ScaleBench {
            pbft_nodes: vec![4, 16, 31, 64],
            benaloh_nodes: vec![200, 500, 1000],
            pbft_messages: 1_000_000,
        }
    }
}

/// One run's figures.
fn figures(
    protocol: &str,
    nodes: u32,
    config: &RunConfig,
) -> Result<(serde_json::Value, bool), CliError> {
    let before = memory::resident_bytes();
    let peak_reset = memory::reset_peak();
    let summary = run_with(config, RunOptions::default()).map_err(CliError::BadInput)?;
    let peak = memory::peak_bytes().filter(|_| peak_reset);
    let messages = summary.messages_delivered;
    let wall_ns = u64::try_from(summary.wall_time.as_nanos()).unwrap_or(u64::MAX);
    let completed = summary
        .protocol
        .as_ref()
        .and_then(|p| p["completed"].as_u64());
    let mut row = serde_json::json!({
        "protocol": protocol,
        "nodes": nodes,
        "clients": config.clients,
        "requests_per_client": config.requests,
        "messages_delivered": messages,
        "events": summary.events,
        "wall_time_ns": wall_ns,
        "ns_per_message": (wall_ns as f64 / messages.max(1) as f64 * 10.0).round() / 10.0,
        "resident_before_bytes": before,
        "peak_resident_bytes": peak,
        "outcome": summary.outcome.as_str(),
    });
    if let Some(completed) = completed {
        row["committed_requests"] = completed.into();
        row["wall_ns_per_committed_request"] = (wall_ns / completed.max(1)).into();
    }
    Ok((row, summary.outcome == Outcome::Ok))
}

/// Runs every size of [`ScaleBench`] and prints the table (or one JSON object).
pub fn run(
    bench: &ScaleBench,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let mut rows = Vec::new();
    let mut ok = true;
    for &n in &bench.pbft_nodes {
        // About 2n² + 4n messages per request with one client and no batching.
        let per_request = 2 * u64::from(n) * u64::from(n) + 4 * u64::from(n);
        let config = RunConfig {
            nodes: n,
            clients: 1,
            requests: (bench.pbft_messages / per_request).max(20),
            params: [
                ("crypto".to_string(), serde_json::Value::from("sim")),
                ("batch".to_string(), serde_json::Value::from(1)),
            ]
            .into_iter()
            .collect(),
            latency: Latency::constant_ms(10),
            duration_ns: u64::MAX,
            ..RunConfig::new(Protocol::of("pbft"))
        };
        writeln!(err, "bench scale: pbft, {n} replicas ...")?;
        let (row, good) = figures("pbft", n, &config)?;
        ok &= good;
        rows.push(row);
    }
    for &n in &bench.benaloh_nodes {
        let config = RunConfig {
            nodes: n,
            latency: Latency::constant_ms(10),
            duration_ns: u64::MAX,
            ..RunConfig::new(Protocol::of("benaloh"))
        };
        writeln!(err, "bench scale: benaloh, {n} peers ...")?;
        let (row, good) = figures("benaloh", n, &config)?;
        ok &= good;
        rows.push(row);
    }
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "bench": "scale", "runs": rows })
        )?;
    } else {
        writeln!(
            out,
            "bench scale: wall time per delivered message as the protocol grows (constant 10 ms links; pbft: 1 client, simulated signatures, no batching)"
        )?;
        for row in &rows {
            let per_request = row["wall_ns_per_committed_request"]
                .as_u64()
                .map(|ns| format!(", {:.2} ms per committed request", ns as f64 / 1e6))
                .unwrap_or_default();
            let peak = row["peak_resident_bytes"]
                .as_u64()
                .map(|b| format!(", peak {:.0} MiB", b as f64 / (1 << 20) as f64))
                .unwrap_or_default();
            writeln!(
                out,
                "  {:<8} n = {:>4}: {:>6.0} ns per message ({} messages in {:.3} s){per_request}{peak}",
                row["protocol"].as_str().unwrap_or(""),
                row["nodes"],
                row["ns_per_message"].as_f64().unwrap_or(0.0),
                row["messages_delivered"],
                row["wall_time_ns"].as_f64().unwrap_or(0.0) / 1e9,
            )?;
        }
    }
    // A benchmark of a broken run would measure nothing meaningful.
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}
