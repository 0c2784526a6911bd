//! What a cluster run reports: per-node summaries and the cluster's table and JSON.

use super::*;

pub(super) fn describe_node(s: &NodeSummary) -> String {
    let mut text = format!(
        "node {} ({}) stopped after {} ({}): {} outputs",
        s.node,
        s.role,
        short_ns(s.elapsed_ns),
        match s.stop {
            StopCause::Signal => "signal",
            StopCause::StdinClosed => "end of stdin",
            StopCause::Duration => "--duration",
            StopCause::Failed => "failed",
        },
        s.outputs
    );
    if s.requests_completed > 0 {
        text += &format!(
            ", {} requests completed ({:.0} req/s), latency p50 {} p99 {}",
            s.requests_completed,
            per_second(s.requests_completed, s.elapsed_ns),
            short_ns(s.latency.p50_ns),
            short_ns(s.latency.p99_ns)
        );
    }
    if s.requests_executed > 0 {
        text += &format!(", {} requests executed", s.requests_executed);
    }
    text += &format!(
        "; {} messages sent, {} received, {} dropped",
        counter(&s.runtime, &["node", "messages_sent"]),
        counter(&s.runtime, &["node", "messages_received"]),
        counter(&s.runtime, &["node", "messages_dropped"])
    );
    text
}

/// A counter inside a node's statistics (0 if absent).
pub(super) fn counter(stats: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(stats, |value, key| value.get(key))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

pub(super) fn per_second(count: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / ns as f64
    }
}

/// Nanoseconds with three significant digits: `85.3us`, `1.27ms`, `2.5s`.
pub(crate) fn short_ns(ns: u64) -> String {
    let (value, unit) = match ns {
        0..1_000 => return format!("{ns}ns"),
        1_000..1_000_000 => (ns as f64 / 1e3, "us"),
        1_000_000..1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}{unit}")
}

/// The figures of one cluster run, as `--json` prints them.
#[derive(Debug, Serialize)]
pub(super) struct ClusterReport {
    pub(super) protocol: String,
    pub(super) transport: String,
    pub(super) nodes: u32,
    pub(super) clients: u32,
    pub(super) duration_ns: u64,
    /// `ok`, `failed` (a node failed or an invariant does not hold) or `interrupted`.
    pub(super) outcome: &'static str,
    pub(super) failures: Vec<String>,
    /// Every client's completed requests.
    pub(super) requests: u64,
    /// The sum of the clients' rates (each client's requests over its own running time).
    pub(super) throughput_rps: f64,
    pub(super) latency: LatencySummary,
    /// Whether the invariants were checked, and on how many outputs.
    pub(super) invariants_checked: bool,
    pub(super) outputs_checked: u64,
    pub(super) violations: Vec<Violation>,
    pub(super) per_node: Vec<NodeReport>,
    /// The working directory, when kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) directory: Option<PathBuf>,
    /// The directory on the hosts (cluster file, keys, outputs), when kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) remote_directory: Option<String>,
    /// What `--scenario` did: each line's planned and applied times, its commands and
    /// their outcomes, and the cleanup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(super) scenario: Option<super::nemesis::NemesisReport>,
}

#[derive(Debug, Serialize)]
pub(super) struct NodeReport {
    node: u32,
    role: Role,
    /// The host it ran on (`None`: the launcher's).
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    /// The exit code; `None` if the node was ended by a signal (see `signal`).
    exit_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<NodeSummaryBrief>,
}

/// A node's summary without its histogram.
#[derive(Debug, Serialize)]
pub(super) struct NodeSummaryBrief {
    stop: StopCause,
    elapsed_ns: u64,
    outputs: u64,
    requests_completed: u64,
    requests_executed: u64,
    requests_per_second: f64,
    done: bool,
    latency: LatencySummary,
    messages_sent: u64,
    messages_received: u64,
    messages_dropped: u64,
    tcp_frames_lost: u64,
    tcp_connection_failures: u64,
    tcp_connection_resets: u64,
    /// Whether its TCP connections were authenticated (the cluster file named key files).
    tcp_authenticated: bool,
    /// Handshakes and frames refused for failing authentication, both ways.
    tcp_auth_failures: u64,
}

impl From<&NodeSummary> for NodeSummaryBrief {
    fn from(s: &NodeSummary) -> Self {
        NodeSummaryBrief {
            stop: s.stop,
            elapsed_ns: s.elapsed_ns,
            outputs: s.outputs,
            requests_completed: s.requests_completed,
            requests_executed: s.requests_executed,
            requests_per_second: per_second(s.requests_completed, s.elapsed_ns),
            done: s.done,
            latency: s.latency,
            messages_sent: counter(&s.runtime, &["node", "messages_sent"]),
            messages_received: counter(&s.runtime, &["node", "messages_received"]),
            messages_dropped: counter(&s.runtime, &["node", "messages_dropped"]),
            tcp_frames_lost: counter(&s.tcp, &["frames_lost"]),
            tcp_connection_failures: counter(&s.tcp, &["connections_failed"]),
            tcp_connection_resets: counter(&s.tcp, &["connections_reset"]),
            tcp_authenticated: s.tcp["authenticated"].as_bool().unwrap_or(false),
            tcp_auth_failures: [
                "inbound_auth_failures",
                "outbound_auth_failures",
                "frames_rejected",
            ]
            .into_iter()
            .map(|name| counter(&s.tcp, &[name]))
            .sum(),
        }
    }
}
#[allow(clippy::too_many_arguments)]
pub(super) fn cluster_report(
    args: &ClusterArgs,
    protocol: Protocol,
    nodes: u32,
    clients: u32,
    processes: &Processes,
    failures: Vec<String>,
    violations: Vec<Violation>,
    invariants_checked: bool,
    outputs_checked: u64,
    interrupted: bool,
    directory: Option<PathBuf>,
    remote_directory: Option<String>,
) -> ClusterReport {
    let mut latencies = LatencyHistogram::new();
    let mut requests = 0;
    let mut throughput_rps = 0.0;
    for node in &processes.nodes {
        if let Some(summary) = &node.summary {
            if summary.requests_completed > 0 {
                requests += summary.requests_completed;
                throughput_rps += per_second(summary.requests_completed, summary.elapsed_ns);
                latencies.merge(&summary.latency_histogram);
            }
        }
    }
    let outcome = if interrupted {
        "interrupted"
    } else if failures.is_empty() && violations.is_empty() {
        "ok"
    } else {
        "failed"
    };
    ClusterReport {
        protocol: protocol.name().to_string(),
        transport: args.transport.kind().name().into(),
        nodes,
        clients,
        duration_ns: duration_ns(args.duration),
        outcome,
        failures,
        requests,
        throughput_rps,
        latency: latencies.summary(),
        invariants_checked,
        outputs_checked,
        violations,
        per_node: processes
            .nodes
            .iter()
            .map(|node| NodeReport {
                node: node.id.0,
                role: node.role,
                host: node.host.clone(),
                exit_status: node.status.and_then(|s| s.code()),
                signal: node.status.and_then(|s| {
                    use std::os::unix::process::ExitStatusExt;
                    s.signal()
                }),
                summary: node.summary.as_ref().map(NodeSummaryBrief::from),
            })
            .collect(),
        directory,
        remote_directory,
        scenario: None,
    }
}

/// How many nodes of each role ran, in the order the roles first appear (`4 replicas, 2
/// clients`): from the registry's roles, so that no protocol is named here.
fn size_by_role(nodes: &[NodeReport]) -> String {
    let mut counts: Vec<(Role, usize)> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    // A node a scenario restarted has a row per process, and counts once.
    for node in nodes.iter().filter(|node| seen.insert(node.node)) {
        match counts.iter_mut().find(|(role, _)| *role == node.role) {
            Some((_, count)) => *count += 1,
            None => counts.push((node.role, 1)),
        }
    }
    counts
        .iter()
        .map(|(role, count)| {
            let plural = if *count == 1 { "" } else { "s" };
            format!("{count} {role}{plural}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn write_cluster_table(r: &ClusterReport, out: &mut dyn Write) -> io::Result<()> {
    let size = size_by_role(&r.per_node);
    writeln!(
        out,
        "{} over {} · {size} · {} · {}",
        r.protocol,
        r.transport,
        short_ns(r.duration_ns),
        r.outcome
    )?;
    if r.requests > 0 {
        writeln!(
            out,
            "throughput  {:.0} req/s ({} requests)",
            r.throughput_rps, r.requests
        )?;
        let l = &r.latency;
        writeln!(
            out,
            "latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            short_ns(l.p50_ns),
            short_ns(l.p90_ns),
            short_ns(l.p99_ns),
            short_ns(l.p999_ns),
            short_ns(l.max_ns)
        )?;
    }
    writeln!(
        out,
        "{:<5} {:<7} {:>10} {:>10} {:>9} {:>9} {:>11} {:>11} {:>8}",
        "node", "role", "requests", "req/s", "p50", "p99", "msgs sent", "msgs recv", "dropped"
    )?;
    for node in &r.per_node {
        match &node.summary {
            Some(s) => writeln!(
                out,
                "{:<5} {:<7} {:>10} {:>10.0} {:>9} {:>9} {:>11} {:>11} {:>8}",
                node.node,
                node.role.name(),
                s.requests_completed.max(s.requests_executed),
                per_second(s.requests_completed.max(s.requests_executed), s.elapsed_ns),
                if s.latency.count > 0 {
                    short_ns(s.latency.p50_ns)
                } else {
                    "-".into()
                },
                if s.latency.count > 0 {
                    short_ns(s.latency.p99_ns)
                } else {
                    "-".into()
                },
                s.messages_sent,
                s.messages_received,
                s.messages_dropped
            )?,
            None => writeln!(
                out,
                "{:<5} {:<7} (no summary; {})",
                node.node,
                node.role.name(),
                match (node.exit_status, node.signal) {
                    (Some(code), _) => format!("exit status {code}"),
                    (None, Some(signal)) => format!("killed by signal {signal}"),
                    (None, None) => "still running".into(),
                }
            )?,
        }
    }
    if r.invariants_checked {
        if r.violations.is_empty() {
            writeln!(
                out,
                "invariants  ok ({} outputs checked)",
                r.outputs_checked
            )?;
        } else {
            writeln!(out, "invariants  VIOLATED:")?;
            for v in r.violations.iter().take(10) {
                writeln!(out, "  {v}")?;
            }
        }
    } else {
        writeln!(out, "invariants  not checked")?;
    }
    if let Some(scenario) = &r.scenario {
        writeln!(out, "scenario    line  planned   applied   command")?;
        for action in &scenario.actions {
            let failed = action.steps.iter().any(|step| !step.ok);
            writeln!(
                out,
                "            {:>4}  {:<8}  {:<8}  {}{}",
                action.line,
                short_ns(action.planned_ns),
                short_ns(action.applied_ns),
                action.command,
                if failed { "  (FAILED)" } else { "" }
            )?;
        }
        if let Some(failure) = &scenario.failure {
            writeln!(out, "scenario failed: {failure}")?;
        }
    }
    for failure in &r.failures {
        writeln!(out, "failure: {failure}")?;
    }
    if let Some(dir) = &r.directory {
        writeln!(out, "files kept in {}", dir.display())?;
    }
    if let Some(dir) = &r.remote_directory {
        writeln!(out, "files kept on the hosts in {dir}")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_keep_three_digits() {
        assert_eq!(short_ns(0), "0ns");
        assert_eq!(short_ns(999), "999ns");
        assert_eq!(short_ns(85_321), "85.3us");
        assert_eq!(short_ns(1_234_567), "1.23ms");
        assert_eq!(short_ns(2_500_000_000), "2.50s");
        assert_eq!(short_ns(123_456_789), "123ms");
    }
}
