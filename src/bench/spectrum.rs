//! `rehearsal bench spectrum`: what a Spectrum server's work costs on this core. DPF
//! evaluation against the raw AES-128-CTR keystream it is built on, the audit of one
//! write, and a server's time per upload over a grid of channel counts and message sizes.
//! Timed here, in the command, with the wall clock; the workloads are the protocol
//! crate's [`Fixture`], which has no clock of its own.

use crate::cli::{CliError, EXIT_OK};
use rehearsal_protocols::spectrum::bench::Fixture;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

/// The evaluation-over-keystream ratio the issue asks of a DPF evaluation.
pub const EVAL_OVER_KEYSTREAM_TARGET: f64 = 0.8;

/// What the command measures; the defaults are the full grid.
#[derive(Debug, Clone)]
pub struct SpectrumBench {
    /// Channels and message bytes of the throughput figures (a).
    pub throughput_channels: usize,
    pub throughput_message_bytes: usize,
    /// Grid cells whose accumulator (channels × message bytes) exceeds this are skipped.
    pub max_bytes: usize,
    /// Timed repetitions per figure (the median is reported).
    pub reps: usize,
    /// How long the TCP workload (d) runs; zero skips it.
    pub tcp_duration: Duration,
    /// The program that runs the cluster's nodes (default: this one).
    pub node_binary: Option<std::path::PathBuf>,
}

impl Default for SpectrumBench {
    fn default() -> Self {
        SpectrumBench {
            throughput_channels: 1_000,
            throughput_message_bytes: 1_024,
            max_bytes: 1 << 30,
            reps: 5,
            tcp_duration: Duration::from_secs(10),
            node_binary: None,
        }
    }
}

/// The public implementation's example workload (its README: 50 clients, 3 channels,
/// 10 KiB messages, 2 servers), and what it reports for it: 4,362 queries per second on a
/// 16-vCPU c5.4xlarge, clients on a machine of their own.
const TCP_CLIENTS: u32 = 50;
const TCP_CHANNELS: u64 = 3;
const TCP_MESSAGE_BYTES: u64 = 10 * 1024;
const PUBLIC_WRITES_PER_SECOND: f64 = 4_362.0;
const PUBLIC_VCPUS: f64 = 16.0;

/// Channel counts and message sizes of the grid (c).
const GRID_CHANNELS: [usize; 4] = [1, 100, 1_000, 10_000];
const GRID_MESSAGE_BYTES: [usize; 3] = [1_000, 10_000, 100_000];

/// Each timed repetition runs the work at least this long (or once, if once is longer).
const REP_MIN: Duration = Duration::from_millis(40);

/// Seconds per call of `work`, timed over enough calls to fill [`REP_MIN`].
fn seconds_per_call(mut work: impl FnMut()) -> f64 {
    work(); // warm: page in the accumulator, fill the caches
    let start = Instant::now();
    let mut calls = 0u64;
    while calls == 0 || start.elapsed() < REP_MIN {
        work();
        calls += 1;
    }
    start.elapsed().as_secs_f64() / calls as f64
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs the benchmark and prints its figures.
pub fn run(bench: &SpectrumBench, json: bool, out: &mut dyn Write) -> Result<u8, CliError> {
    let fixture_error = |e| CliError::BadInput(format!("bench spectrum: {e}"));
    let reps = bench.reps.max(1);

    // (a) Throughput: keystream and evaluation interleaved, so load hits both alike.
    let mut fixture = Fixture::new(bench.throughput_channels, bench.throughput_message_bytes, 1)
        .map_err(fixture_error)?;
    let bytes = fixture.bytes_per_eval() as f64;
    let (mut keystream, mut eval) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        keystream.push(bytes / seconds_per_call(|| fixture.keystream()));
        eval.push(bytes / seconds_per_call(|| fixture.eval()));
    }
    black_box(fixture.accumulator());
    let keystream_bps = median(keystream);
    let eval_bps = median(eval);
    let ratio = eval_bps / keystream_bps.max(1.0);

    // (b) The audit of one write, by channel count.
    let mut audits = Vec::new();
    for channels in [16, 100, 1_000] {
        let fixture = Fixture::new(channels, 1_024, 2).map_err(fixture_error)?;
        let mut accepted = true;
        let per = median(
            (0..reps)
                .map(|_| seconds_per_call(|| accepted &= black_box(fixture.audit())))
                .collect(),
        );
        if !accepted {
            return Err(CliError::BadInput(format!(
                "bench spectrum: the audit refused an honest write over {channels} channels"
            )));
        }
        audits.push(serde_json::json!({
            "channels": channels,
            "audit_ns_per_write": (per * 1e9).round(),
            "audit_ns_per_channel": (per * 1e9 / channels as f64 * 10.0).round() / 10.0,
        }));
    }

    // (c) A server's time per upload: its share's evaluation plus its audit token and the
    // comparison (the audit here computes both servers' tokens; a server computes one).
    let mut grid = Vec::new();
    for channels in GRID_CHANNELS {
        for message_bytes in GRID_MESSAGE_BYTES {
            let cell = channels * message_bytes;
            if cell > bench.max_bytes {
                continue;
            }
            let mut fixture = Fixture::new(channels, message_bytes, 3).map_err(fixture_error)?;
            let cell_reps = if cell >= 100_000_000 {
                reps.min(3)
            } else {
                reps
            };
            let eval = median(
                (0..cell_reps)
                    .map(|_| seconds_per_call(|| fixture.eval()))
                    .collect(),
            );
            let audit = median(
                (0..cell_reps)
                    .map(|_| {
                        seconds_per_call(|| {
                            black_box(fixture.audit());
                        })
                    })
                    .collect(),
            );
            black_box(fixture.accumulator());
            let per_upload = eval + audit / 2.0;
            grid.push(serde_json::json!({
                "channels": channels,
                "message_bytes": message_bytes,
                "eval_ns": (eval * 1e9).round(),
                "audit_ns": (audit / 2.0 * 1e9).round(),
                "server_ns_per_upload": (per_upload * 1e9).round(),
                "uploads_per_second": (1.0 / per_upload.max(1e-12)).round(),
            }));
        }
    }

    // (d) The public implementation's workload over TCP on loopback: every node a process
    // of its own, through the cluster launcher, invariants checked on the outputs.
    let tcp = if bench.tcp_duration.is_zero() {
        serde_json::Value::Null
    } else {
        tcp_workload(bench.tcp_duration, bench.node_binary.clone())?
    };

    let figures = serde_json::json!({
        "bench": "spectrum",
        "throughput": {
            "channels": bench.throughput_channels,
            "message_bytes": bench.throughput_message_bytes,
            "keystream_bytes_per_second": keystream_bps.round(),
            "eval_bytes_per_second": eval_bps.round(),
            "eval_over_keystream": (ratio * 1000.0).round() / 1000.0,
            "target": EVAL_OVER_KEYSTREAM_TARGET,
        },
        "audit": audits,
        "server_per_upload": grid,
        "tcp": tcp,
    });
    if json {
        writeln!(out, "{figures}")?;
    } else {
        writeln!(
            out,
            "bench spectrum: one core, AES-128-CTR PRG, two-server verifiable DPF (median of {reps})"
        )?;
        writeln!(
            out,
            "  (a) {} channels x {} B: keystream {:.2} GB/s, DPF evaluation {:.2} GB/s: ratio {:.3} ({} the target {EVAL_OVER_KEYSTREAM_TARGET})",
            bench.throughput_channels,
            bench.throughput_message_bytes,
            keystream_bps / 1e9,
            eval_bps / 1e9,
            ratio,
            if ratio >= EVAL_OVER_KEYSTREAM_TARGET { "meets" } else { "BELOW" }
        )?;
        for a in &audits {
            writeln!(
                out,
                "  (b) audit of one write over {:>5} channels: {:>9.1} us ({} ns per channel)",
                a["channels"],
                a["audit_ns_per_write"].as_f64().unwrap_or(0.0) / 1e3,
                a["audit_ns_per_channel"]
            )?;
        }
        writeln!(
            out,
            "  (c) a server's time per upload (its evaluation and its audit token); a round of C uploads costs C times this"
        )?;
        for g in &grid {
            writeln!(
                out,
                "      {:>6} channels x {:>7} B: {:>12.1} us  ({:.0} uploads/s)",
                g["channels"],
                g["message_bytes"],
                g["server_ns_per_upload"].as_f64().unwrap_or(0.0) / 1e3,
                g["uploads_per_second"].as_f64().unwrap_or(0.0)
            )?;
        }
    }
    if !json && !tcp.is_null() {
        writeln!(
            out,
            "  (d) over TCP on loopback, {} clients, {} channels x {} B, 2 servers and a publisher, all processes on this machine's {} cores: {:.0} writes/s ({:.0} per core; the public implementation: {PUBLIC_WRITES_PER_SECOND} on {PUBLIC_VCPUS} vCPUs, {:.0} per vCPU); round latency p50 {:.1} ms, p99 {:.1} ms; invariants {}",
            TCP_CLIENTS,
            TCP_CHANNELS,
            TCP_MESSAGE_BYTES,
            tcp["cores"],
            tcp["writes_per_second"].as_f64().unwrap_or(0.0),
            tcp["writes_per_second_per_core"].as_f64().unwrap_or(0.0),
            PUBLIC_WRITES_PER_SECOND / PUBLIC_VCPUS,
            tcp["latency_ns_p50"].as_f64().unwrap_or(0.0) / 1e6,
            tcp["latency_ns_p99"].as_f64().unwrap_or(0.0) / 1e6,
            tcp["outcome"].as_str().unwrap_or("?")
        )?;
    }
    // Figures, not a verdict: a loaded machine moves them (the text says when the ratio
    // is under its target).
    Ok(EXIT_OK)
}

/// Runs the TCP workload through `rehearsal cluster` and reads its report.
fn tcp_workload(
    duration: Duration,
    node_binary: Option<std::path::PathBuf>,
) -> Result<serde_json::Value, CliError> {
    use crate::cluster::{ClusterArgs, TransportArg};
    use crate::config::Protocol;
    let args = ClusterArgs {
        protocol: Protocol::of("spectrum"),
        transport: TransportArg::Tcp,
        nodes: None,
        servers: Some(2),
        clients: TCP_CLIENTS,
        duration,
        requests: None,
        rounds: None,
        seed: 1,
        json: true,
        node_binary,
        keep: false,
        no_check: false,
        param: Vec::new(),
        crypto: None,
        batch: None,
        channels: Some(TCP_CHANNELS),
        message_bytes: Some(TCP_MESSAGE_BYTES),
        keys: None,
        testbed_keys: false,
        // Throughput as before state files: no sync to disk per saved state.
        hosts: crate::cluster::HostsArgs {
            no_state: true,
            ..Default::default()
        },
    };
    let (mut report, mut log) = (Vec::new(), Vec::new());
    crate::cluster::cluster(&args, &mut report, &mut log)?;
    let report: serde_json::Value = serde_json::from_slice(&report).map_err(|e| {
        CliError::BadInput(format!(
            "bench spectrum: the cluster's report is not JSON ({e}): {}",
            String::from_utf8_lossy(&log)
        ))
    })?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let writes = report["throughput_rps"].as_f64().unwrap_or(0.0);
    Ok(serde_json::json!({
        "clients": TCP_CLIENTS,
        "channels": TCP_CHANNELS,
        "message_bytes": TCP_MESSAGE_BYTES,
        "duration_ns": u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
        "cores": cores,
        "writes": report["requests"],
        "writes_per_second": writes.round(),
        "writes_per_second_per_core": (writes / cores as f64).round(),
        "latency_ns_p50": report["latency"]["p50_ns"],
        "latency_ns_p99": report["latency"]["p99_ns"],
        "outcome": report["outcome"],
        "public_implementation": {
            "writes_per_second": PUBLIC_WRITES_PER_SECOND,
            "vcpus": PUBLIC_VCPUS,
            "writes_per_second_per_vcpu": (PUBLIC_WRITES_PER_SECOND / PUBLIC_VCPUS).round(),
        },
    }))
}
