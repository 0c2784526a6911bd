//! Plain-text rendering of a trace: one aligned line per event.

use rehearsal_sim_core::{format_ns, EventKind, TraceEvent};
use std::fmt::Write;

/// Renders events as an aligned timeline: sequence number, virtual time, node, what happened.
///
/// ```text
///    3      10ms  n1  deliver  #0 from n0
/// ```
pub fn render_text(events: &[TraceEvent]) -> String {
    let mut out = String::new();
    for e in events {
        let what = match &e.kind {
            EventKind::Start => "start".to_string(),
            EventKind::Send { to, id, bytes, msg } => {
                format!("send     #{id} to {to} ({bytes} B) {msg}")
            }
            EventKind::Drop { to, id, reason } => format!("drop     #{id} to {to}: {reason}"),
            EventKind::Deliver { from, id } => format!("deliver  #{id} from {from}"),
            EventKind::Timer { timer_id, timer } => {
                format!("timer    {timer} (timer {})", timer_id.0)
            }
            EventKind::Output { value } => format!("output   {value}"),
            EventKind::Annotate { label } => format!("note     {label}"),
            EventKind::Violation { invariant, detail } => {
                format!("VIOLATION {invariant}: {detail}")
            }
            EventKind::Fault { fault } => format!("FAULT    {fault}"),
            EventKind::Corrupt { to, id, msg } => {
                format!("corrupt  #{id} to {to} arrives as {msg}")
            }
        };
        let _ = writeln!(
            out,
            "{:>5} {:>10}  {:<4} {what}",
            e.seq,
            format_ns(e.t),
            e.node.to_string()
        );
    }
    out
}
