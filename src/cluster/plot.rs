//! `rehearsal cluster --plot FILE.svg`: a real run on the simulator's space-time diagram
//! ([`rehearsal_traces::render_svg`]). Each node process reports, in its `ready` line, its
//! host's clock at the instant its outputs' times count from; an output's place on the
//! time axis is that clock plus its time, less the launcher's clock when it started the
//! nodes. On one machine (network namespaces included) that is one clock; across hosts it
//! is as good as their clocks agree. A real run records no messages, so the diagram has
//! each process's start, its outputs, and the scenario's lines where they were applied.

use super::launch::Processes;
use super::nemesis::AppliedAction;
use super::*;
use rehearsal_sim_core::{EventKind, TraceEvent};
use rehearsal_traces::{render_svg, PlotOptions};

/// The SVG of a real run: every process's outputs file (as the launcher collected them),
/// the scenario's applied lines, on one axis from `started_unix_ns`.
pub(super) fn real_run_svg(
    processes: &Processes,
    scenario: &[AppliedAction],
    started_unix_ns: u64,
    config: &ClusterConfig,
) -> Result<String, String> {
    let mut events: Vec<TraceEvent> = Vec::new();
    let event = |t: u64, node: NodeId, kind: EventKind| TraceEvent {
        seq: 0,
        t,
        node,
        kind,
    };
    for process in &processes.nodes {
        let epoch = process.epoch_unix_ns.ok_or_else(|| {
            format!(
                "{} did not report its clock (an older `rehearsal node`?)",
                process.name
            )
        })?;
        // Before the start (a restart's epoch is later): never before the axis.
        let offset = |at: u64| (epoch + at).saturating_sub(started_unix_ns);
        events.push(event(offset(0), process.id, EventKind::Start));
        let text = match fs::read_to_string(&process.outputs) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("{}: {e}", process.outputs.display())),
        };
        for (number, line) in text.lines().enumerate() {
            let record: serde_json::Value = serde_json::from_str(line)
                .map_err(|e| format!("{}:{}: {e}", process.outputs.display(), number + 1))?;
            let at = record["at"].as_u64().ok_or_else(|| {
                format!("{}:{}: no `at` time", process.outputs.display(), number + 1)
            })?;
            events.push(event(
                offset(at),
                process.id,
                EventKind::Output {
                    value: record["value"].clone(),
                },
            ));
        }
    }
    for action in scenario {
        events.push(event(
            action.applied_ns,
            node_of(&action.command),
            EventKind::Fault {
                fault: format!("line {}: {}", action.line, action.command),
            },
        ));
    }
    // In time order, each process's events in the order it wrote them.
    events.sort_by_key(|e| e.t);
    for (seq, event) in events.iter_mut().enumerate() {
        event.seq = seq as u64;
    }
    let options = PlotOptions {
        title: Some(format!(
            "{} over a real network: {} nodes, outputs and scenario lines by each host's clock",
            config.protocol,
            config.nodes.len()
        )),
        ..PlotOptions::default()
    };
    Ok(render_svg(&events, &options))
}

/// The node a scenario command names (`crash 2`, `skew 3 +5ms`), or node 0 for commands
/// of the whole network, as simulated traces attribute them.
fn node_of(command: &str) -> NodeId {
    let mut words = command.split_whitespace();
    match words.next() {
        Some("crash" | "restart" | "pause" | "resume" | "skew") => {
            NodeId(words.next().and_then(|w| w.parse().ok()).unwrap_or(0))
        }
        _ => NodeId(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_name_their_node_and_network_ones_go_to_node_0() {
        assert_eq!(node_of("crash 2"), NodeId(2));
        assert_eq!(node_of("skew 3 +50ms +0ppm"), NodeId(3));
        assert_eq!(node_of("partition 0 | 1,2,3"), NodeId(0));
        assert_eq!(node_of("heal"), NodeId(0));
    }
}
