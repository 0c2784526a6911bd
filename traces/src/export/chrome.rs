//! Chrome trace / Perfetto JSON: open the file in <https://ui.perfetto.dev> or
//! `chrome://tracing`.
//!
//! The output is the "JSON object format" of the Trace Event Format: an object whose
//! `traceEvents` array holds, one per line:
//!
//! - metadata (`"ph":"M"`): one process `rehearsal` (pid 1) with one thread per node, named
//!   `n0`, `n1`, … and sorted by node id. A node's thread id is its node id **plus one**:
//!   Perfetto refuses thread-scoped instant events on thread id 0;
//! - one complete event (`"ph":"X"`, category `handler`) per handler invocation, that is per
//!   `start`, `deliver` and `timer` event. Its name is `start`, `deliver Share from n0` or
//!   `timer Tick`. Its args hold the event's `seq`, its virtual time `t_ns`, the message or
//!   timer, and `caused`: one line per event the handler caused (sends, drops, outputs,
//!   annotations, rounds entered, violations at the same node and time right after it).
//!   The trace does not record how long a handler ran, so the duration is 0;
//! - one flow per message whose fate the trace holds: a flow start (`"ph":"s"`) at the
//!   sending handler and a flow end (`"ph":"f"`, `"bp":"e"`) at the delivering handler, or at
//!   the drop. Both are named `message`, in category `handler`, with `id` = the message id.
//!   A message the network duplicated has one flow per copy; the second is named
//!   `message copy 2`, and so on (Perfetto tells flows apart by id, category and name);
//! - a thread-scoped instant (`"ph":"i"`, `"s":"t"`) for each drop (name `drop Share to n2
//!   (loss)`, category `handler`), output (category `output`), annotation (category
//!   `annotate`), fault and corruption in flight (category `fault`); a violation is both a
//!   thread-scoped instant on its node and a global one (`"s":"g"`) across every track, named
//!   `VIOLATION <invariant>`, category `violation`. Faults that concern no single node (a
//!   network change) are on `n0`, where the simulator records them.
//!
//! Timestamps (`ts`) are in microseconds, written as exact decimals of the virtual time in
//! nanoseconds; `displayTimeUnit` is `ns`.

use super::{describe, invocations, msg_kind, node_count, shorten, Messages};
use rehearsal_sim_core::{EventKind, NodeId, TraceEvent};
use std::collections::BTreeMap;
use std::io::Write;

/// Process id of every track.
const PID: u32 = 1;

/// Longest event name; the full text stays in the args.
const NAME_CHARS_MAX: usize = 80;

/// The events as a Chrome trace / Perfetto JSON document (see the [module docs](self)).
pub fn chrome_trace(events: &[TraceEvent]) -> String {
    let mut out = Vec::new();
    write_chrome_trace(events, &mut out).expect("writing to a Vec cannot fail");
    String::from_utf8(out).expect("the writer writes UTF-8")
}

/// Writes the events as a Chrome trace / Perfetto JSON document (see the [module
/// docs](self)), one trace event per line.
pub fn write_chrome_trace(events: &[TraceEvent], out: &mut impl Write) -> std::io::Result<()> {
    let lines = trace_event_lines(events);
    out.write_all(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[\n")?;
    for (i, line) in lines.iter().enumerate() {
        out.write_all(line.as_bytes())?;
        out.write_all(if i + 1 < lines.len() { b",\n" } else { b"\n" })?;
    }
    out.write_all(b"]}\n")?;
    out.flush()
}

/// One JSON object, written with its keys in the order given.
struct Obj(String);

impl Obj {
    fn new() -> Self {
        Obj(String::from("{"))
    }

    fn raw(mut self, key: &str, json: &str) -> Self {
        if self.0.len() > 1 {
            self.0.push(',');
        }
        self.0.push_str(&json_str(key));
        self.0.push(':');
        self.0.push_str(json);
        self
    }

    fn str(self, key: &str, value: &str) -> Self {
        self.raw(key, &json_str(value))
    }

    fn num(self, key: &str, value: u64) -> Self {
        self.raw(key, &value.to_string())
    }

    fn done(mut self) -> String {
        self.0.push('}');
        self.0
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("a string always serializes")
}

/// Nanoseconds as an exact decimal number of microseconds.
fn micros(ns: u64) -> String {
    let (whole, frac) = (ns / 1000, ns % 1000);
    if frac == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:03}")
            .trim_end_matches('0')
            .to_string()
    }
}

fn tid(node: NodeId) -> u64 {
    u64::from(node.0) + 1
}

/// The common head of an event on a node's track.
fn on_track(ph: &str, name: &str, cat: &str, e: &TraceEvent) -> Obj {
    Obj::new()
        .str("ph", ph)
        .str("name", &shorten(name, NAME_CHARS_MAX))
        .str("cat", cat)
        .raw("ts", &micros(e.t))
        .num("pid", u64::from(PID))
        .num("tid", tid(e.node))
}

/// The name of the flow of the `k`-th copy (from 0) of a message: Perfetto tells flows apart
/// by id, category and name.
fn flow_name(k: usize) -> String {
    match k {
        0 => "message".to_string(),
        k => format!("message copy {}", k + 1),
    }
}

fn flow(ph: &str, name: &str, id: u64, e: &TraceEvent) -> String {
    let obj = Obj::new()
        .str("ph", ph)
        .str("name", name)
        .str("cat", "handler")
        .num("id", id)
        .raw("ts", &micros(e.t))
        .num("pid", u64::from(PID))
        .num("tid", tid(e.node));
    if ph == "f" {
        obj.str("bp", "e").done()
    } else {
        obj.done()
    }
}

fn args_head(e: &TraceEvent) -> Obj {
    Obj::new().num("seq", e.seq).num("t_ns", e.t)
}

fn trace_event_lines(events: &[TraceEvent]) -> Vec<String> {
    let messages = Messages::index(events);
    // One flow per copy of a message that ends (is delivered or dropped) after its send, keyed
    // by the index of the event it starts at and of the event it ends at.
    let mut starts: BTreeMap<usize, Vec<(u64, String)>> = BTreeMap::new();
    let mut ends: BTreeMap<usize, Vec<(u64, String)>> = BTreeMap::new();
    for (&id, &send) in &messages.send {
        let copies = messages.ends(id).into_iter().filter(|&end| end > send);
        for (k, end) in copies.enumerate() {
            let name = flow_name(k);
            starts.entry(send).or_default().push((id, name.clone()));
            ends.entry(end).or_default().push((id, name));
        }
    }
    let flows = |ph: &str, at: &BTreeMap<usize, Vec<(u64, String)>>, i: usize| -> Vec<String> {
        at.get(&i)
            .into_iter()
            .flatten()
            .map(|(id, name)| flow(ph, name, *id, &events[i]))
            .collect()
    };

    let mut lines = Vec::new();
    lines.push(
        Obj::new()
            .str("ph", "M")
            .str("name", "process_name")
            .num("pid", u64::from(PID))
            .num("tid", 1)
            .raw("args", &Obj::new().str("name", "rehearsal").done())
            .done(),
    );
    for n in 0..node_count(events) {
        let node = NodeId(n);
        for (name, args) in [
            (
                "thread_name",
                Obj::new().str("name", &node.to_string()).done(),
            ),
            (
                "thread_sort_index",
                Obj::new().num("sort_index", u64::from(n)).done(),
            ),
        ] {
            lines.push(
                Obj::new()
                    .str("ph", "M")
                    .str("name", name)
                    .num("pid", u64::from(PID))
                    .num("tid", tid(node))
                    .raw("args", &args)
                    .done(),
            );
        }
    }

    for inv in invocations(events) {
        if let Some(t) = inv.trigger {
            let e = &events[t];
            let caused: Vec<String> = inv
                .effects
                .iter()
                .map(|&i| json_str(&describe(events, &messages, &events[i])))
                .collect();
            let caused = format!("[{}]", caused.join(","));
            let (name, args) = match &e.kind {
                EventKind::Deliver { from, id } => {
                    let msg = messages.delivered_summary(events, *id);
                    let kind = msg.map_or("message", msg_kind);
                    let mut args = args_head(e).num("id", *id).str("from", &from.to_string());
                    if let Some(msg) = msg {
                        args = args.str("msg", msg);
                    }
                    if messages.corrupted(*id) {
                        args = args.raw("corrupted", "true");
                    }
                    (format!("deliver {kind} from {from}"), args)
                }
                EventKind::Timer { timer_id, timer } => (
                    format!("timer {}", msg_kind(timer)),
                    args_head(e).str("timer", timer).num("timer_id", timer_id.0),
                ),
                _ => ("start".to_string(), args_head(e)),
            };
            lines.push(
                on_track("X", &name, "handler", e)
                    .num("dur", 0)
                    .raw("args", &args.raw("caused", &caused).done())
                    .done(),
            );
            // Flows bind to the slice on top of the track, so they come right after it.
            for &i in &inv.effects {
                lines.extend(flows("s", &starts, i));
            }
            lines.extend(flows("f", &ends, t));
        }
        for &i in &inv.effects {
            let e = &events[i];
            match &e.kind {
                EventKind::Send { to, id, bytes, msg } if inv.trigger.is_none() => {
                    // A send that no handler event precedes gets a slice of its own.
                    let args = args_head(e)
                        .num("id", *id)
                        .str("to", &to.to_string())
                        .num("bytes", *bytes)
                        .str("msg", msg);
                    lines.push(
                        on_track(
                            "X",
                            &format!("send {} to {to}", msg_kind(msg)),
                            "handler",
                            e,
                        )
                        .num("dur", 0)
                        .raw("args", &args.done())
                        .done(),
                    );
                    lines.extend(flows("s", &starts, i));
                }
                EventKind::Drop { to, id, reason } => {
                    let msg = messages.summary(events, *id);
                    let mut args = args_head(e)
                        .num("id", *id)
                        .str("to", &to.to_string())
                        .str("reason", reason);
                    if let Some(msg) = msg {
                        args = args.str("msg", msg);
                    }
                    let kind = msg.map_or("message", msg_kind);
                    lines.push(
                        on_track(
                            "i",
                            &format!("drop {kind} to {to} ({reason})"),
                            "handler",
                            e,
                        )
                        .str("s", "t")
                        .raw("args", &args.done())
                        .done(),
                    );
                    lines.extend(flows("f", &ends, i));
                }
                EventKind::Output { value } => {
                    let args = args_head(e).raw("value", &value.to_string());
                    lines.push(
                        on_track("i", &format!("output {value}"), "output", e)
                            .str("s", "t")
                            .raw("args", &args.done())
                            .done(),
                    );
                }
                EventKind::Annotate { label } => {
                    let args = args_head(e).str("label", label);
                    lines.push(
                        on_track("i", label, "annotate", e)
                            .str("s", "t")
                            .raw("args", &args.done())
                            .done(),
                    );
                }
                EventKind::Violation { invariant, detail } => {
                    let args = args_head(e)
                        .str("node", &e.node.to_string())
                        .str("invariant", invariant)
                        .str("detail", detail)
                        .done();
                    let name = format!("VIOLATION {invariant}");
                    for scope in ["t", "g"] {
                        lines.push(
                            on_track("i", &name, "violation", e)
                                .str("s", scope)
                                .raw("args", &args)
                                .done(),
                        );
                    }
                }
                EventKind::Corrupt { to, id, msg } => {
                    let args = args_head(e)
                        .num("id", *id)
                        .str("to", &to.to_string())
                        .str("msg", msg);
                    let name = format!("corrupt {} to {to}", msg_kind(msg));
                    lines.push(
                        on_track("i", &name, "fault", e)
                            .str("s", "t")
                            .raw("args", &args.done())
                            .done(),
                    );
                }
                EventKind::Fault { fault } => {
                    let args = args_head(e).str("fault", fault);
                    lines.push(
                        on_track("i", &format!("FAULT {fault}"), "fault", e)
                            .str("s", "t")
                            .raw("args", &args.done())
                            .done(),
                    );
                }
                _ => {}
            }
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn micros_are_exact() {
        assert_eq!(micros(0), "0");
        assert_eq!(micros(10_000_000), "10000");
        assert_eq!(micros(1_234), "1.234");
        assert_eq!(micros(1_200), "1.2");
        assert_eq!(micros(5), "0.005");
    }

    #[test]
    fn no_events_is_still_a_valid_document() {
        let doc: serde_json::Value = serde_json::from_str(&chrome_trace(&[])).unwrap();
        assert_eq!(doc["traceEvents"].as_array().unwrap().len(), 1);
    }
}
