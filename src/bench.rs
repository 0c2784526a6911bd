//! `rehearsal bench`: figures, not pass/fail.

use crate::cli::{CliError, EXIT_FAILED, EXIT_OK};
use crate::config::{Protocol, RunConfig};
use crate::run::run;
use rehearsal_sim_core::{Latency, Outcome};
use std::io::Write;

/// Unreplicated ping-pong: one client, one server, constant 10 ms latency, digest on and
/// no trace kept in memory.
pub fn sim(round_trips: u64, json: bool, out: &mut dyn Write) -> Result<u8, CliError> {
    let config = RunConfig {
        clients: 1,
        requests: round_trips,
        latency: Latency::constant_ms(10),
        duration_ns: u64::MAX,
        ..RunConfig::new(Protocol::Unreplicated)
    };
    let summary = run(&config, false).map_err(CliError::BadInput)?;
    let wall_s = summary.wall_time.as_secs_f64().max(1e-9);
    let messages = summary.messages_delivered;
    let figures = serde_json::json!({
        "bench": "sim",
        "workload": "unreplicated ping-pong, 1 client, 1 server, constant:10ms, trace digest on",
        "round_trips": round_trips,
        "messages": messages,
        "events": summary.events,
        "wall_time_ns": u64::try_from(summary.wall_time.as_nanos()).unwrap_or(u64::MAX),
        "messages_per_wall_second": (messages as f64 / wall_s).round(),
        "sim_seconds_per_wall_second": summary.sim_time.as_secs_f64() / wall_s,
        "outcome": summary.outcome.as_str(),
    });
    if json {
        writeln!(out, "{figures}")?;
    } else {
        writeln!(
            out,
            "bench sim: {round_trips} round trips, {messages} messages delivered, {} events",
            summary.events
        )?;
        writeln!(out, "  wall time                 {:.3} s", wall_s)?;
        writeln!(
            out,
            "  messages per wall-second  {:.0}",
            messages as f64 / wall_s
        )?;
        writeln!(
            out,
            "  sim seconds per wall-sec  {:.0}",
            summary.sim_time.as_secs_f64() / wall_s
        )?;
    }
    // A benchmark of a broken run would measure nothing meaningful.
    Ok(if summary.outcome == Outcome::Ok {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
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
