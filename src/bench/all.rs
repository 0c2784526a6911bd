//! `rehearsal bench all`: the performance table in one go.
//!
//! Runs the benchmarks one after the other in this process (`bench sim`, `bench pbft`,
//! `bench hotstuff`, `bench scale`, `bench tcp`, PBFT through `rehearsal cluster` over
//! TCP, and `bench dpdk` in a build with DPDK), reads each one's JSON, and prints one row
//! per figure beside its target, so a reader can compare two builds on one machine in one
//! sitting. Every step also keeps its whole JSON report in `--json`'s output.

use super::scale::{self, ScaleBench};
use crate::cli::{CliError, EXIT_FAILED, EXIT_OK};
use crate::cluster::{BenchTcpArgs, ClusterArgs, TransportArg};
use crate::config::Protocol;
use serde_json::{json, Value};
use std::io::Write;
use std::time::Duration;

/// The steps of `bench all`, in the order they run.
pub const STEPS: &[&str] = &["sim", "pbft", "hotstuff", "scale", "tcp", "cluster", "dpdk"];

/// What `bench all` runs.
#[derive(Debug, Clone, Default)]
pub struct AllBench {
    /// Small sizes and short windows: a smoke run of every step, whose figures are noisy.
    pub quick: bool,
    /// Steps to leave out (names of [`STEPS`]).
    pub skip: Vec<String>,
    /// The `rehearsal` program that runs the cluster's nodes [default: this program].
    pub node_binary: Option<std::path::PathBuf>,
}

/// One line of the table.
#[derive(Debug, serde::Serialize)]
struct Row {
    figure: String,
    value: Option<f64>,
    unit: &'static str,
    /// The target, in words (`None`: a figure shown for comparison, with no target).
    target: Option<String>,
    met: Option<bool>,
}

/// A target a figure must reach.
#[derive(Clone, Copy)]
enum Goal {
    AtLeast(f64),
    AtMost(f64),
    None,
}

impl Row {
    fn new(figure: impl Into<String>, value: Option<f64>, unit: &'static str, goal: Goal) -> Row {
        let (target, met) = match goal {
            Goal::AtLeast(t) => (Some(format!(">= {}", number(t))), value.map(|v| v >= t)),
            Goal::AtMost(t) => (Some(format!("<= {}", number(t))), value.map(|v| v <= t)),
            Goal::None => (None, None),
        };
        Row {
            figure: figure.into(),
            value,
            unit,
            target,
            met,
        }
    }
}

/// A figure as the table prints it: thousands separated, at most 3 significant decimals.
fn number(v: f64) -> String {
    if v.abs() >= 1000.0 {
        let digits = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        format!("{}{grouped}", if v < 0.0 { "-" } else { "" })
    } else if v.abs() >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// Runs one step's benchmark into a buffer and parses its JSON report.
fn step_json(
    name: &str,
    bench: impl FnOnce(&mut dyn Write) -> Result<u8, CliError>,
) -> Result<(Value, bool), CliError> {
    let mut report = Vec::new();
    let status = bench(&mut report)?;
    let value = serde_json::from_slice(&report).map_err(|e| {
        CliError::BadInput(format!(
            "bench all: the {name} step's report is not JSON ({e}): {}",
            String::from_utf8_lossy(&report)
        ))
    })?;
    Ok((value, status == EXIT_OK))
}

/// A step's report, or, when the step could not run, nothing (its rows read "not
/// measured") and the reason noted: one step's failure loses no other figure.
fn settle(
    failures: &mut Vec<String>,
    name: &str,
    result: Result<(Value, bool), CliError>,
) -> (Value, bool) {
    result.unwrap_or_else(|error| {
        failures.push(format!("the {name} step failed: {error}"));
        (Value::Null, false)
    })
}

fn f(value: &Value) -> Option<f64> {
    value.as_f64()
}

/// Runs every step not skipped and prints the table (or one JSON object).
pub fn run(
    bench: &AllBench,
    json: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    for name in &bench.skip {
        if !STEPS.contains(&name.as_str()) {
            return Err(CliError::BadInput(format!(
                "--skip {name}: no such step (the steps: {})",
                STEPS.join(", ")
            )));
        }
    }
    let runs = |step: &str| !bench.skip.iter().any(|s| s == step);
    let quick = bench.quick;
    let mut rows = Vec::new();
    let mut reports = serde_json::Map::new();
    let mut ok = true;
    let mut failures = Vec::new();
    let note = |err: &mut dyn Write, step: &str| writeln!(err, "bench all: {step} ...");

    if runs("sim") {
        note(err, "sim")?;
        let round_trips = if quick { 50_000 } else { 1_000_000 };
        let (report, good) = settle(
            &mut failures,
            "sim",
            step_json("sim", |o| super::sim(round_trips, true, o)),
        );
        ok &= good;
        rows.push(Row::new(
            "sim ping-pong: delivered messages per wall-second",
            f(&report["runs"][0]["messages_per_wall_second"]),
            "msg/s",
            Goal::AtLeast(8e6),
        ));
        reports.insert("sim".into(), report);
    }
    for protocol in ["pbft", "hotstuff"] {
        if !runs(protocol) {
            continue;
        }
        note(err, protocol)?;
        let requests = if quick { 2_000 } else { 100_000 };
        let (report, good) = settle(
            &mut failures,
            protocol,
            step_json(protocol, |o| {
                super::replicated(Protocol::of(protocol), requests, true, o)
            }),
        );
        ok &= good;
        // The order of `bench pbft`'s settings, and PBFT's targets.
        let goals = [
            Goal::AtLeast(120_000.0),
            Goal::AtLeast(1_500.0),
            Goal::AtLeast(400_000.0),
            Goal::None,
        ];
        for (run, goal) in report["runs"].as_array().into_iter().flatten().zip(goals) {
            rows.push(Row::new(
                format!(
                    "{protocol}, {}: committed req/s",
                    run["setting"].as_str().unwrap_or("?")
                ),
                f(&run["committed_requests_per_wall_second"]),
                "req/s",
                if protocol == "pbft" { goal } else { Goal::None },
            ));
        }
        reports.insert(protocol.into(), report);
    }
    if runs("scale") {
        note(err, "scale")?;
        let settings = if quick {
            ScaleBench {
                pbft_nodes: vec![4, 16],
                benaloh_nodes: vec![30, 60],
                pbft_messages: 20_000,
            }
        } else {
            ScaleBench::default()
        };
        let (report, good) = settle(
            &mut failures,
            "scale",
            step_json("scale", |o| scale::run(&settings, true, o, err)),
        );
        ok &= good;
        let runs = report["runs"].as_array().cloned().unwrap_or_default();
        for run in &runs {
            let protocol = run["protocol"].as_str().unwrap_or("?");
            rows.push(Row::new(
                format!("{protocol}, n = {}: wall time per message", run["nodes"]),
                f(&run["ns_per_message"]),
                "ns",
                if protocol == "pbft" {
                    Goal::AtMost(400.0)
                } else {
                    Goal::None
                },
            ));
        }
        if let Some(largest) = runs.iter().rfind(|r| r["protocol"] == "pbft") {
            rows.push(Row::new(
                format!(
                    "pbft, n = {}: wall time per committed request",
                    largest["nodes"]
                ),
                f(&largest["wall_ns_per_committed_request"]).map(|ns| ns / 1e6),
                "ms",
                Goal::None,
            ));
        }
        let benaloh: Vec<&Value> = runs.iter().filter(|r| r["protocol"] == "benaloh").collect();
        if let (Some(first), Some(last)) = (benaloh.first(), benaloh.last()) {
            rows.push(Row::new(
                format!(
                    "benaloh: cost per message at n = {} over n = {} (flat: 1)",
                    last["nodes"], first["nodes"]
                ),
                f(&last["ns_per_message"])
                    .zip(f(&first["ns_per_message"]))
                    .map(|(l, s)| l / s.max(1e-9)),
                "x",
                Goal::AtMost(1.1),
            ));
            rows.push(Row::new(
                format!("benaloh, n = {}: peak resident memory", last["nodes"]),
                f(&last["peak_resident_bytes"]).map(|b| b / f64::from(1 << 20)),
                "MiB",
                Goal::AtMost(100.0),
            ));
        }
        reports.insert("scale".into(), report);
    }
    if runs("tcp") {
        note(err, "tcp")?;
        let args = BenchTcpArgs {
            clients: 8,
            duration: Duration::from_secs(if quick { 1 } else { 3 }),
            warmup: Duration::from_millis(if quick { 200 } else { 500 }),
            client_nice: rehearsal_hardware::bench_tcp::BENCH_CLIENT_NICE_DEFAULT,
            unauthenticated: false,
            json: true,
        };
        let (report, good) = settle(
            &mut failures,
            "tcp",
            step_json("tcp", |o| super::tcp(&args, o, err)),
        );
        ok &= good;
        rows.push(Row::new(
            "tcp: authenticated runtime throughput / std echo",
            f(&report["throughput_ratio"]),
            "x",
            Goal::AtLeast(0.8),
        ));
        reports.insert("tcp".into(), report);
    }
    if runs("cluster") {
        note(err, "cluster")?;
        let args = ClusterArgs {
            protocol: Protocol::of("pbft"),
            transport: TransportArg::Tcp,
            nodes: Some(4),
            servers: None,
            clients: 16,
            // Quick: long enough for 4 replica processes to start and commit on a loaded
            // machine.
            duration: Duration::from_secs(if quick { 4 } else { 10 }),
            requests: None,
            rounds: None,
            seed: 1,
            json: true,
            node_binary: bench.node_binary.clone(),
            keep: false,
            no_check: false,
            param: Vec::new(),
            crypto: Some("real".into()),
            batch: Some(64),
            channels: None,
            message_bytes: None,
            keys: None,
            testbed_keys: true,
            // Throughput as before state files: no sync to disk per saved state.
            hosts: crate::cluster::HostsArgs {
                no_state: true,
                ..Default::default()
            },
        };
        let mut log = Vec::new();
        let (report, good) = settle(
            &mut failures,
            "cluster",
            step_json("cluster", |o| crate::cluster::cluster(&args, o, &mut log)),
        );
        if !good {
            err.write_all(&log)?;
        }
        ok &= good;
        rows.push(Row::new(
            "pbft cluster over TCP, Ed25519, 16 clients, batches of 64: req/s",
            f(&report["throughput_rps"]),
            "req/s",
            Goal::AtLeast(10_000.0),
        ));
        reports.insert("cluster".into(), report);
    }
    if runs("dpdk") && cfg!(feature = "dpdk") {
        note(err, "dpdk")?;
        let messages = if quick { 200_000 } else { 10_000_000 };
        let (report, good) = settle(
            &mut failures,
            "dpdk",
            step_json("dpdk", |o| super::dpdk(messages, 64, true, o)),
        );
        ok &= good;
        rows.push(Row::new(
            "dpdk ring pair, 64-byte messages through the Transport trait: msg/s",
            f(&report["messages_per_sec"]),
            "msg/s",
            Goal::None,
        ));
        rows.push(Row::new(
            "dpdk: Transport trait rate / raw shim rate",
            f(&report["transport_over_raw"]),
            "x",
            Goal::AtLeast(0.25),
        ));
        reports.insert("dpdk".into(), report);
    } else if runs("dpdk") {
        writeln!(
            err,
            "bench all: dpdk skipped: this rehearsal was built without the dpdk feature"
        )?;
    }

    for failure in &failures {
        writeln!(err, "bench all: {failure}")?;
    }
    if json {
        writeln!(
            out,
            "{}",
            json!({
                "bench": "all",
                "quick": quick,
                "rows": rows,
                "reports": reports,
                "failed_steps": failures,
            })
        )?;
    } else {
        write_table(&rows, quick, out)?;
    }
    // A benchmark of a broken run would measure nothing meaningful.
    Ok(if ok { EXIT_OK } else { EXIT_FAILED })
}

fn write_table(rows: &[Row], quick: bool, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(
        out,
        "bench all{}: figure, measured, target",
        if quick {
            " --quick (small sizes: smoke figures, not the table's)"
        } else {
            ""
        }
    )?;
    let width = rows.iter().map(|r| r.figure.len()).max().unwrap_or(0);
    for row in rows {
        let value = row.value.map_or_else(
            || "not measured".into(),
            |v| format!("{} {}", number(v), row.unit),
        );
        let target = match (&row.target, row.met) {
            (Some(t), Some(true)) => format!("{t} (met)"),
            (Some(t), Some(false)) => format!("{t} (not met)"),
            (Some(t), None) => t.clone(),
            (None, _) => String::new(),
        };
        writeln!(out, "  {:<width$}  {value:>18}  {target}", row.figure)?;
    }
    let (met, with_target) = rows.iter().fold((0, 0), |(m, t), r| match r.met {
        Some(true) => (m + 1, t + 1),
        Some(false) => (m, t + 1),
        None => (m, t),
    });
    writeln!(out, "  {met} of {with_target} targets met")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_print_grouped_and_targets_judge_both_ways() {
        assert_eq!(number(8_123_456.4), "8,123,456");
        assert_eq!(number(-1234.0), "-1,234");
        assert_eq!(number(999.94), "1000");
        assert_eq!(number(400.0), "400");
        assert_eq!(number(20.74), "20.7");
        assert_eq!(number(0.8125), "0.812");
        let row = Row::new("x", Some(0.7), "x", Goal::AtLeast(0.8));
        assert_eq!(
            (row.target.as_deref(), row.met),
            (Some(">= 0.800"), Some(false))
        );
        let row = Row::new("x", Some(350.0), "ns", Goal::AtMost(400.0));
        assert_eq!(row.met, Some(true));
        assert_eq!(Row::new("x", None, "ns", Goal::AtMost(1.0)).met, None);
        assert_eq!(Row::new("x", Some(1.0), "ns", Goal::None).target, None);
    }
}
