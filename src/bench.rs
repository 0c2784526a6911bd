//! `rehearsal bench`: figures, not pass/fail.

pub mod all;
pub mod coverage;
pub mod scale;
pub mod search;
pub mod spectrum;

use crate::cli::{CliError, EXIT_FAILED, EXIT_OK};
use crate::cluster::{bad, short_ns, BenchTcpArgs};
use crate::config::{Protocol, RunConfig};
use crate::run::{run_with, RunOptions};
use rehearsal_hardware::bench_tcp::{self, TcpBenchConfig, TcpBenchReport};
use rehearsal_hardware::encode_message;
use rehearsal_protocols::unreplicated;
use rehearsal_sim_core::{duration_ns, NodeId};
use rehearsal_sim_core::{Latency, Outcome};
use std::io::{self, Write};

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

/// A replicated state machine of the registry (`pbft`, `hotstuff`) in the simulator:
/// committed requests per wall-second and messages per committed request, closed-loop
/// clients, constant 10 ms links, no faults, every invariant checked: the headline
/// setting (4 replicas, 1 client, simulated signatures, no batching), then with Ed25519,
/// then 16 clients with batches of 64, with each crypto. The protocol takes PBFT's
/// parameters `crypto` and `batch`.
pub fn replicated(
    protocol: Protocol,
    requests: u64,
    json: bool,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
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
            ..RunConfig::new(protocol)
        };
        let summary = run_with(&config, RunOptions::default()).map_err(CliError::BadInput)?;
        ok &= summary.outcome == Outcome::Ok;
        let completed = summary
            .protocol
            .as_ref()
            .and_then(|p| p["completed"].as_u64())
            .unwrap_or(0);
        let wall_s = summary.wall_time.as_secs_f64().max(1e-9);
        let per_request = summary.messages_delivered as f64 / completed.max(1) as f64;
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
            "messages_per_committed_request": (per_request * 100.0).round() / 100.0,
            "outcome": summary.outcome.as_str(),
        }));
    }
    if json {
        writeln!(
            out,
            "{}",
            serde_json::json!({ "bench": protocol.name(), "runs": figures })
        )?;
    } else {
        writeln!(
            out,
            "bench {protocol}: 4 replicas, constant 10 ms links, every invariant checked"
        )?;
        for f in &figures {
            writeln!(
                out,
                "  {:<42} {:>9.0} committed requests per wall-second, {:>6.2} messages per request ({} requests in {:.3} s)",
                f["setting"].as_str().unwrap_or(""),
                f["committed_requests_per_wall_second"]
                    .as_f64()
                    .unwrap_or(0.0),
                f["messages_per_committed_request"].as_f64().unwrap_or(0.0),
                f["committed_requests"],
                f["wall_time_ns"].as_f64().unwrap_or(0.0) / 1e9
            )?;
        }
    }
    // A benchmark of a broken run would measure nothing meaningful.
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}

/// The DPDK transport over an in-process ring pair: one-way messages per second, beside
/// the same messages through the bare burst calls (the raw baseline) and their ratio.
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
        let raw = &report.raw;
        writeln!(
            out,
            "raw burst baseline: {} messages of {} B in {:.3} s: {:.2} M messages/s, {:.1} MB/s",
            raw.messages,
            report.payload_bytes,
            raw.seconds,
            raw.messages_per_sec / 1e6,
            raw.bytes_per_sec / 1e6
        )?;
        writeln!(
            out,
            "transport / raw: {:.2} (interleaved in one run, same ring pair kind, payload, \
             window and bursts)",
            report.transport_over_raw
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

/// Unreplicated closed-loop clients through the node runtime over TCP on loopback, side by
/// side with a plain `std::net` echo of the same message size and client count.
pub fn tcp(args: &BenchTcpArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, CliError> {
    let proto = unreplicated::Config {
        clients: args.clients,
        requests_per_client: u64::MAX,
        retransmit_after: unreplicated::RETRANSMIT_AFTER_REAL,
    };
    // The baseline moves frames as large as a typical request of the runtime side: a
    // request number in the hundreds of thousands and an operand below 1000.
    let mut sample = Vec::new();
    encode_message(
        &unreplicated::Msg::Request {
            request: 100_000,
            operand: 500,
        },
        &mut sample,
    )
    .map_err(|e| bad(format!("cannot encode a request: {e}")))?;
    let config = TcpBenchConfig {
        clients: args.clients,
        message_bytes: sample.len(),
        warmup: args.warmup,
        duration: args.duration,
        client_nice: args.client_nice,
        authenticated: !args.unauthenticated,
    };
    config.validate().map_err(bad)?;
    let workload = format!(
        "unreplicated closed loop, {} clients, 1 server, TCP on 127.0.0.1 ({}), {}-byte \
         requests; baseline: std::net blocking echo, thread per connection",
        args.clients,
        if args.unauthenticated {
            "unauthenticated"
        } else {
            "authenticated, frames sealed"
        },
        sample.len()
    );
    let report = match bench_tcp::run(
        workload,
        // The production nodes: the correct protocol, as `rehearsal node` runs it.
        (0..=proto.clients)
            .filter_map(|i| unreplicated::production_node(&proto, NodeId(i)))
            .collect::<Vec<_>>(),
        |o| matches!(o, unreplicated::Output::Completed { .. }),
        &config,
    ) {
        Ok(report) => report,
        Err(error) => {
            writeln!(err, "error: bench tcp: {error}")?;
            return Ok(EXIT_FAILED);
        }
    };
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).map_err(io::Error::from)?
        )?;
    } else {
        write_bench_tcp(&report, out)?;
    }
    // A run in which the runtime completed nothing measured nothing.
    Ok(
        if report.runtime.requests > 0 && report.baseline.requests > 0 {
            EXIT_OK
        } else {
            EXIT_FAILED
        },
    )
}

fn write_bench_tcp(r: &TcpBenchReport, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "bench tcp: {}", r.workload)?;
    writeln!(
        out,
        "  window {} after {} warm-up, per side{}",
        short_ns(duration_ns(r.config.duration)),
        short_ns(duration_ns(r.config.warmup)),
        match r.config.client_nice {
            0 => String::new(),
            nice => format!("; client threads of both sides at nice {nice}"),
        }
    )?;
    for (name, side) in [("runtime ", &r.runtime), ("baseline", &r.baseline)] {
        writeln!(
            out,
            "  {name}  {:>10.0} req/s   p50 {:>8}  p99 {:>8}  p99.9 {:>8}",
            side.requests_per_second,
            short_ns(side.latency.p50_ns),
            short_ns(side.latency.p99_ns),
            short_ns(side.latency.p999_ns)
        )?;
    }
    writeln!(
        out,
        "  runtime / baseline throughput: {:.1} %",
        r.throughput_ratio * 100.0
    )?;
    writeln!(
        out,
        "  system calls per request    total   reads  writes   waits   other"
    )?;
    for (name, side) in [("runtime ", &r.runtime), ("baseline", &r.baseline)] {
        let s = &side.syscalls;
        for (part, rates) in [
            ("server ", &s.server_per_request),
            ("clients", &s.clients_per_request),
            ("total  ", &s.per_request),
        ] {
            writeln!(
                out,
                "    {name}  {part}       {:>6.2}  {:>6.2}  {:>6.2}  {:>6.2}  {:>6.2}",
                rates.total, rates.reads, rates.writes, rates.waits, rates.other
            )?;
        }
    }
    Ok(())
}
