//! Writing and reading trace files.
//!
//! Reading is strict: every line is checked field by field (type, presence, no unknown
//! fields), the events are checked against each other (sequence numbers, time order, every
//! message named by the `seq` of its own `send`), the footer is checked against the events,
//! and a checksum covers every byte of the file, the footer's own fields included. Input is
//! read one line at a time with a cap per line and on the whole file, so an endless or
//! binary input (`/dev/zero`, `/dev/urandom`) is refused after a bounded read.

use rehearsal_sim_core::{EventKind, NodeId, RunResult, Time, TimerId, TraceEvent, Violation};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::io::{BufRead, Write};
use std::path::Path;

pub const FORMAT_NAME: &str = "rehearsal-trace";
/// Version 3: the footer's digest is of the digest format version 3
/// ([`rehearsal_sim_core::DIGEST_FORMAT_VERSION`]: fixed-width records without sequence
/// numbers), so a version 2 trace's digest is not what this build computes for its run.
/// Version 2: the footer's checksum covers the footer's own fields (in version 1 it
/// covered only the lines before the footer, so the outcome could be edited unnoticed).
pub const FORMAT_VERSION: u32 = 3;

/// Why a trace of an older format version cannot be read, for the error that refuses it.
fn older_version_change(version: u64) -> &'static str {
    match version {
        0 | 1 => "its footer was outside the checksum",
        _ => "its footer's digest is of an older digest format, which a replay would not match",
    }
}

/// Longest line of a trace, in bytes. The header carries the whole run configuration (a
/// scenario file, a latency matrix of up to 1024 x 1024 entries), an output event a
/// protocol's value: far below this. A longer line is not read whole.
pub const TRACE_LINE_BYTES_MAX: usize = 32 << 20;
/// Largest trace file, in bytes: a run of about 20 million events.
pub const TRACE_FILE_BYTES_MAX: u64 = 4 << 30;
/// Node numbers in a trace are below this. Runs of the command line have at most 1024
/// nodes (the network model's limit); the bound keeps what reads a trace (a lane or a
/// track per node in the plot and the exporters) proportionate to a real run.
pub const TRACE_NODES_MAX: u32 = 1 << 16;
/// Most events in a trace (the simulator keeps a traced run's events in memory, so a real
/// trace is far smaller than what would exhaust it).
pub const TRACE_EVENTS_MAX: u64 = 20_000_000;

/// First line of a trace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub seed: u64,
    /// The full configuration of the run, enough to re-run it.
    pub config: serde_json::Value,
}

impl Header {
    pub fn new(seed: u64, config: serde_json::Value) -> Self {
        Header {
            format: FORMAT_NAME.to_string(),
            version: FORMAT_VERSION,
            seed,
            config,
        }
    }
}

/// Last line of a trace, written as `{"end": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Footer {
    pub outcome: String,
    pub violations: Vec<String>,
    pub events: u64,
    pub sim_time_ns: u64,
    pub digest: String,
    /// blake3 of every byte of the file before this line, then of the footer's other
    /// fields as compact JSON in this order (`{"outcome":..,"violations":..,"events":..,
    /// "sim_time_ns":..,"digest":..}`), so editing the footer breaks it too.
    pub checksum: String,
}

#[derive(Serialize)]
struct FooterLine<'a> {
    end: &'a Footer,
}

/// The footer without its checksum, as the checksum covers it: the compact JSON of its
/// fields in their written order. Re-serialized from the parsed values when reading, so
/// only a change of meaning (not of spacing) breaks the checksum.
#[derive(Serialize)]
struct FooterFields<'a> {
    outcome: &'a str,
    violations: &'a [String],
    events: u64,
    sim_time_ns: u64,
    digest: &'a str,
}

fn footer_fields_json(footer: &Footer) -> Vec<u8> {
    serde_json::to_vec(&FooterFields {
        outcome: &footer.outcome,
        violations: &footer.violations,
        events: footer.events,
        sim_time_ns: footer.sim_time_ns,
        digest: &footer.digest,
    })
    .expect("strings and numbers always serialize")
}

/// The checksum of a footer, given the hash of every line before it.
fn footer_checksum(mut lines: blake3::Hasher, footer: &Footer) -> String {
    lines.update(&footer_fields_json(footer));
    lines.finalize().to_hex().to_string()
}

impl Footer {
    /// The footer of a run's trace: its verdict, each violation in its printed form
    /// (`invariant: detail`), and its figures. The checksum is computed when it is written.
    pub fn of(result: &RunResult) -> Footer {
        Footer {
            outcome: result.outcome.as_str().to_string(),
            violations: result.violations.iter().map(ToString::to_string).collect(),
            events: result.events,
            sim_time_ns: result.sim_time.as_nanos(),
            digest: result.digest.0.clone(),
            checksum: String::new(),
        }
    }
}

/// A trace read back from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFile {
    pub header: Header,
    pub events: Vec<TraceEvent>,
    pub footer: Footer,
}

impl TraceFile {
    /// The recorded run's violations as data: each `violation` event, then for a stall
    /// each node the footer lists as waiting (found at the run's end). Reading the file
    /// checked that the footer lists exactly these.
    pub fn violations(&self) -> Vec<Violation> {
        let mut all = Violation::all_in(&self.events);
        let end = Time::from_nanos(self.footer.sim_time_ns);
        let stalls = self.footer.violations[all.len().min(self.footer.violations.len())..]
            .iter()
            .filter_map(|line| parse_stall(line, end));
        all.extend(stalls);
        all
    }
}

/// A footer's stall line (`stall: n3 waits for a reply`) as data.
fn parse_stall(line: &str, end: Time) -> Option<Violation> {
    let rest = line.strip_prefix("stall: n")?;
    let (id, what) = rest.split_once(" waits for ")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let node = NodeId(id.parse().ok()?);
    Some(Violation::stall(node, end, what))
}

/// Why a trace file cannot be used. Every variant names the file and, where it applies, the line.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("cannot read trace `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("trace `{path}` is empty")]
    Empty { path: String },
    #[error("trace `{path}` line {line}: {problem}")]
    Line {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("trace `{path}` is truncated: it ends after line {lines} without its `end` footer")]
    Truncated { path: String, lines: usize },
    #[error("trace `{path}` line {line}: the file is corrupt: the checksum in this footer does not match the file (a line, or the footer itself, was changed after it was written)")]
    Checksum { path: String, line: usize },
    #[error("trace `{path}` is too large: {problem}")]
    TooLarge { path: String, problem: String },
}

/// Writes a whole trace. `footer.checksum` is computed here; whatever it held is ignored.
///
/// ```
/// # use rehearsal_sim_core::{Actor, Context, NodeId, SimConfig, SimpleNetwork, Simulation};
/// # struct Pinger;
/// # impl Actor for Pinger {
/// #     type Msg = u32; type Timer = (); type Output = u32;
/// #     fn on_start(&mut self, cx: &mut Context<Self>) { if cx.me() == NodeId(0) { cx.send(NodeId(1), 9) } }
/// #     fn on_message(&mut self, from: NodeId, n: u32, cx: &mut Context<Self>) { cx.output(n); if n > 0 { cx.send(from, n - 1) } }
/// #     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
/// # }
/// // Two nodes pass a counter back and forth over a jittery, lossy network.
/// let jittery = || SimpleNetwork { latency: "uniform:1ms..30ms".parse().unwrap(), loss: 0.1 };
/// let mut sim = Simulation::new(SimConfig::new(5), vec![Pinger, Pinger], jittery());
/// sim.keep_trace(true);
/// let recorded = sim.run();
/// use rehearsal_traces::{read_trace_from, write_trace, Footer, Header};
///
/// let mut file = Vec::new();
/// let header = Header::new(5, serde_json::json!({ "what": "ping-pong" }));
/// write_trace(&mut file, &header, &recorded.trace, &Footer::of(&recorded.result)).unwrap();
/// // Read back and checked (every line, the footer against the events, the checksum).
/// let trace = read_trace_from(&file[..], "ping.jsonl").unwrap();
/// assert_eq!(trace.events, recorded.trace);
/// assert_eq!(trace.violations(), recorded.violations);
/// // A changed byte is refused, naming the file and the line.
/// let mut edited = file.clone();
/// let at = edited.iter().position(|&b| b == b'9').unwrap();
/// edited[at] = b'8';
/// assert!(read_trace_from(&edited[..], "ping.jsonl").unwrap_err().to_string().contains("ping.jsonl"));
/// ```
pub fn write_trace(
    out: &mut impl Write,
    header: &Header,
    events: &[TraceEvent],
    footer: &Footer,
) -> std::io::Result<()> {
    let mut checksum = blake3::Hasher::new();
    let mut line = Vec::with_capacity(256);
    let mut emit = |line: &mut Vec<u8>, out: &mut dyn Write| -> std::io::Result<()> {
        line.push(b'\n');
        checksum.update(line);
        out.write_all(line)?;
        line.clear();
        Ok(())
    };
    serde_json::to_writer(&mut line, header)?;
    emit(&mut line, out)?;
    for event in events {
        serde_json::to_writer(&mut line, event)?;
        emit(&mut line, out)?;
    }
    let mut footer = footer.clone();
    footer.checksum = footer_checksum(checksum, &footer);
    serde_json::to_writer(&mut line, &FooterLine { end: &footer })?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Reads and checks a trace file.
pub fn read_trace(path: &Path) -> Result<TraceFile, TraceError> {
    let name = path.display().to_string();
    let io = |source| TraceError::Io {
        path: name.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let metadata = file.metadata().map_err(io)?;
    if metadata.is_dir() {
        return Err(io(std::io::Error::other("it is a directory")));
    }
    // A regular file's size is known: refuse it before reading. Devices and pipes
    // (`/dev/zero`) report no size; the reader's own caps stop them.
    if metadata.len() > TRACE_FILE_BYTES_MAX {
        return Err(TraceError::TooLarge {
            path: name,
            problem: format!(
                "it has {} bytes, more than the {} a trace may have",
                metadata.len(),
                TRACE_FILE_BYTES_MAX
            ),
        });
    }
    read_trace_from(std::io::BufReader::new(file), &name)
}

/// How reading one line ended.
enum LineEnd {
    /// A whole line, newline included, is in the buffer.
    Newline,
    /// The input ended; the buffer holds what came after the last newline (maybe nothing).
    Eof,
    /// The line is longer than the cap: the buffer holds its first bytes only.
    TooLong,
}

/// Reads one line into `buf` (cleared first), never holding more than `max` bytes of it.
/// `budget` is what the whole input may still hold; it shrinks by what is read.
fn read_line_capped(
    input: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
    budget: &mut u64,
) -> std::io::Result<Option<LineEnd>> {
    buf.clear();
    loop {
        let available = match input.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(Some(LineEnd::Eof));
        }
        let (take, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        let room = max - buf.len();
        let take_now = take.min(room + 1);
        if take_now as u64 > *budget {
            // The input holds more than the whole-file cap allows.
            return Ok(None);
        }
        *budget -= take_now as u64;
        if take_now > room {
            buf.extend_from_slice(&available[..room]);
            input.consume(take_now);
            return Ok(Some(LineEnd::TooLong));
        }
        buf.extend_from_slice(&available[..take_now]);
        input.consume(take_now);
        if done {
            return Ok(Some(LineEnd::Newline));
        }
    }
}

/// What a JSON value is, for error messages: its type and a short excerpt.
fn describe_value(value: &Value) -> String {
    let text = value.to_string();
    let excerpt = if text.chars().count() > 40 {
        format!("{}…", text.chars().take(40).collect::<String>())
    } else {
        text
    };
    let what = match value {
        Value::Null => return "null".to_string(),
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() => "an unsigned integer",
        Value::Number(n) if n.is_i64() => "a negative integer",
        Value::Number(_) => "a fractional number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    format!("{what} ({excerpt})")
}

/// The fields of one JSON object, taken one by one with their expected types; what is left
/// at the end is an unknown field.
struct Fields {
    map: Map<String, Value>,
    /// What the object is, for messages: "the header", "the `send` event".
    what: String,
}

impl Fields {
    fn new(value: Value, what: impl Into<String>) -> Result<Fields, String> {
        let what = what.into();
        match value {
            Value::Object(map) => Ok(Fields { map, what }),
            other => Err(format!(
                "{what} must be a JSON object, found {}",
                describe_value(&other)
            )),
        }
    }

    fn take(&mut self, name: &str) -> Result<Value, String> {
        self.map
            .remove(name)
            .ok_or_else(|| format!("{} has no `{name}` field", self.what))
    }

    fn wrong(&self, name: &str, value: &Value, expected: &str) -> String {
        format!(
            "field `{name}` of {} is {}, expected {expected}",
            self.what,
            describe_value(value)
        )
    }

    fn u64(&mut self, name: &str) -> Result<u64, String> {
        let value = self.take(name)?;
        value
            .as_u64()
            .ok_or_else(|| self.wrong(name, &value, "an unsigned integer"))
    }

    fn node(&mut self, name: &str) -> Result<NodeId, String> {
        let value = self.take(name)?;
        value
            .as_u64()
            .filter(|&n| n < u64::from(TRACE_NODES_MAX))
            .map(|n| NodeId(n as u32))
            .ok_or_else(|| {
                self.wrong(
                    name,
                    &value,
                    &format!("a node number, 0 to {}", TRACE_NODES_MAX - 1),
                )
            })
    }

    fn string(&mut self, name: &str) -> Result<String, String> {
        match self.take(name)? {
            Value::String(s) => Ok(s),
            other => Err(self.wrong(name, &other, "a string")),
        }
    }

    fn strings(&mut self, name: &str) -> Result<Vec<String>, String> {
        let value = self.take(name)?;
        let Value::Array(items) = value else {
            return Err(self.wrong(name, &value, "an array of strings"));
        };
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(s),
                other => Err(self.wrong(&format!("{name}[{i}]"), &other, "a string")),
            })
            .collect()
    }

    /// Refuses whatever fields were not taken.
    fn finish(self, expected: &str) -> Result<(), String> {
        match self.map.keys().next() {
            None => Ok(()),
            Some(extra) => Err(format!(
                "{} has an unknown field `{extra}` (its fields are {expected})",
                self.what
            )),
        }
    }
}

/// The kinds of event, as written in trace files, and the fields each has besides `seq`,
/// `t`, `node` and `kind`.
const KINDS: [(&str, &str); 11] = [
    ("start", "no others"),
    ("send", "to, id, bytes, msg"),
    ("drop", "to, id, reason"),
    ("deliver", "from, id"),
    ("timer", "timer_id, timer"),
    ("output", "value"),
    ("annotate", "label"),
    ("violation", "invariant, detail"),
    ("fault", "fault"),
    ("corrupt", "to, id, msg"),
    ("round", "round"),
];

fn kind_names() -> String {
    KINDS.map(|(k, _)| k).join(", ")
}

fn parse_header(value: Value) -> Result<Header, String> {
    let mut f = Fields::new(value, "the header")?;
    // Format and version first: a file of another kind or version is named as such
    // rather than as a malformed header.
    let format = f.string("format")?;
    if format != FORMAT_NAME {
        return Err(format!(
            "format is `{format}`, expected `{FORMAT_NAME}`: this is not a Rehearsal trace"
        ));
    }
    let version = f.u64("version")?;
    if version != u64::from(FORMAT_VERSION) {
        let why = if version < u64::from(FORMAT_VERSION) {
            format!(
                "trace format version {version} was written by an older Rehearsal ({}); this build reads version {FORMAT_VERSION} only. Record the run again with this build (`rehearsal sim ... --trace`; the header's `config` holds its settings)",
                older_version_change(version)
            )
        } else {
            format!(
                "trace format version {version} is newer than this build reads (version {FORMAT_VERSION}): use a newer Rehearsal"
            )
        };
        return Err(why);
    }
    let seed = f.u64("seed")?;
    let config = f.take("config")?;
    f.finish("format, version, seed, config")?;
    Ok(Header {
        format,
        version: FORMAT_VERSION,
        seed,
        config,
    })
}

fn parse_event(value: Value) -> Result<TraceEvent, String> {
    let mut f = Fields::new(value, "the event")?;
    let kind = match f.take("kind")? {
        Value::String(kind) => kind,
        other => {
            return Err(f.wrong(
                "kind",
                &other,
                &format!("a string, one of {}", kind_names()),
            ))
        }
    };
    let Some(&(name, others)) = KINDS.iter().find(|(k, _)| *k == kind) else {
        return Err(format!(
            "unknown event kind `{kind}`; expected one of {}",
            kind_names()
        ));
    };
    f.what = format!("the `{name}` event");
    let seq = f.u64("seq")?;
    let t = f.u64("t")?;
    let node = f.node("node")?;
    let kind = match name {
        "start" => EventKind::Start,
        "send" => EventKind::Send {
            to: f.node("to")?,
            id: f.u64("id")?,
            bytes: f.u64("bytes")?,
            msg: f.string("msg")?,
        },
        "drop" => EventKind::Drop {
            to: f.node("to")?,
            id: f.u64("id")?,
            reason: f.string("reason")?,
        },
        "deliver" => EventKind::Deliver {
            from: f.node("from")?,
            id: f.u64("id")?,
        },
        "timer" => EventKind::Timer {
            timer_id: TimerId(f.u64("timer_id")?),
            timer: f.string("timer")?,
        },
        "output" => EventKind::Output {
            value: f.take("value")?,
        },
        "annotate" => EventKind::Annotate {
            label: f.string("label")?,
        },
        "violation" => EventKind::Violation {
            invariant: f.string("invariant")?,
            detail: f.string("detail")?,
        },
        "fault" => EventKind::Fault {
            fault: f.string("fault")?,
        },
        "corrupt" => EventKind::Corrupt {
            to: f.node("to")?,
            id: f.u64("id")?,
            msg: f.string("msg")?,
        },
        "round" => EventKind::Round {
            round: f.u64("round")?,
        },
        _ => unreachable!("every name of KINDS is handled"),
    };
    f.finish(&format!("seq, t, node, kind and {others}"))?;
    Ok(TraceEvent { seq, t, node, kind })
}

fn parse_footer(value: Value) -> Result<Footer, String> {
    let mut line = Fields::new(value, "the footer line")?;
    let end = line.take("end")?;
    line.finish("only `end`")?;
    let mut f = Fields::new(end, "the footer")?;
    let footer = Footer {
        outcome: f.string("outcome")?,
        violations: f.strings("violations")?,
        events: f.u64("events")?,
        sim_time_ns: f.u64("sim_time_ns")?,
        digest: f.string("digest")?,
        checksum: f.string("checksum")?,
    };
    f.finish("outcome, violations, events, sim_time_ns, digest, checksum")?;
    Ok(footer)
}

/// Checks `event` (the next one, at index `events.len()`) against those before it: its
/// sequence number, its time, and the message it names.
fn check_event(event: &TraceEvent, events: &[TraceEvent]) -> Result<(), String> {
    let index = events.len() as u64;
    if event.seq != index {
        return Err(format!(
            "event seq {} out of order, expected {index}",
            event.seq
        ));
    }
    if let Some(last) = events.last() {
        if event.t < last.t {
            return Err(format!(
                "event at t {} ns is earlier than the event before it (t {} ns): virtual time never goes back",
                event.t, last.t
            ));
        }
    }
    let kind = event.kind.name();
    match &event.kind {
        EventKind::Send { id, .. } if *id != event.seq => Err(format!(
            "`send` event {} has id {id}: a message's id is the seq of its own send, so it must be {}{}",
            event.seq,
            event.seq,
            if *id < event.seq && matches!(events[*id as usize].kind, EventKind::Send { .. }) {
                format!(" (id {id} is already the message sent at line {})", id + 2)
            } else {
                String::new()
            }
        )),
        EventKind::Deliver { id, .. }
        | EventKind::Drop { id, .. }
        | EventKind::Corrupt { id, .. } => {
            let sent = (*id < index)
                .then(|| &events[*id as usize])
                .and_then(|e| match &e.kind {
                    EventKind::Send { to, .. } => Some((e.node, *to)),
                    _ => None,
                });
            let Some((from, to)) = sent else {
                return Err(format!(
                    "`{kind}` event {} names message {id}, but no earlier `send` event has that id",
                    event.seq
                ));
            };
            let (at, other) = match &event.kind {
                EventKind::Deliver { from: f, .. } => ((event.node, to), (*f, from)),
                EventKind::Drop { to: t, .. } | EventKind::Corrupt { to: t, .. } => {
                    ((event.node, from), (*t, to))
                }
                _ => unreachable!("matched above"),
            };
            if at.0 != at.1 || other.0 != other.1 {
                return Err(format!(
                    "`{kind}` event {} names message {id}, sent from node {} to node {} (line {}), but does not match its ends",
                    event.seq,
                    from.0,
                    to.0,
                    id + 2
                ));
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Checks the footer against the events: its count, its end time, its outcome and
/// violations (each `violation` event, in order, then only for a stall the `stall:` lines).
fn check_footer(footer: &Footer, events: &[TraceEvent]) -> Result<(), String> {
    if footer.events != events.len() as u64 {
        return Err(format!(
            "footer counts {} events but the file holds {}",
            footer.events,
            events.len()
        ));
    }
    if let Some(last) = events.last() {
        if footer.sim_time_ns < last.t {
            return Err(format!(
                "footer's sim_time_ns {} is before the last event (t {} ns)",
                footer.sim_time_ns, last.t
            ));
        }
    }
    if footer.digest.len() != 64
        || !footer
            .digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(format!(
            "footer's digest `{}` is not 64 lowercase hex digits",
            footer.digest
        ));
    }
    let found: Vec<String> = Violation::all_in(events)
        .iter()
        .map(ToString::to_string)
        .collect();
    let listed = footer.violations.len();
    if footer.violations.get(..found.len()) != Some(&found[..]) {
        let first = found
            .iter()
            .zip(&footer.violations)
            .position(|(a, b)| a != b)
            .unwrap_or(listed.min(found.len()));
        return Err(format!(
            "footer's violations do not match the file's {} `violation` events (they differ at entry {first})",
            found.len()
        ));
    }
    let extra = &footer.violations[found.len()..];
    match footer.outcome.as_str() {
        "ok" if listed > 0 => Err(format!(
            "footer's outcome is `ok` but it lists {listed} violations"
        )),
        "ok" => Ok(()),
        "violation" if found.is_empty() || !extra.is_empty() => Err(format!(
            "footer's outcome is `violation` but the file has {} `violation` events and the footer {} other entries",
            found.len(),
            extra.len()
        )),
        "violation" => Ok(()),
        "stalled" if listed == 0 => {
            Err("footer's outcome is `stalled` but it lists nothing the run waited for".into())
        }
        "stalled" => match extra
            .iter()
            .find(|v| parse_stall(v, Time::from_nanos(footer.sim_time_ns)).is_none())
        {
            Some(v) => Err(format!(
                "footer's violation `{v}` is neither a `violation` event nor a `stall: nN waits for ...` line"
            )),
            None => Ok(()),
        },
        other => Err(format!(
            "footer's outcome `{other}` is not one of ok, violation, stalled"
        )),
    }
}

/// Reads and checks a trace from any reader; `name` is used in error messages.
pub fn read_trace_from(mut input: impl BufRead, name: &str) -> Result<TraceFile, TraceError> {
    read_trace_capped(&mut input, name, TRACE_LINE_BYTES_MAX, TRACE_FILE_BYTES_MAX)
}

fn read_trace_capped(
    input: &mut impl BufRead,
    name: &str,
    line_max: usize,
    file_max: u64,
) -> Result<TraceFile, TraceError> {
    let path = name.to_string();
    let bad = |line: usize, problem: String| TraceError::Line {
        path: path.clone(),
        line,
        problem,
    };
    let too_large = |line: usize| {
        TraceError::TooLarge {
        path: path.clone(),
        problem: format!(
            "it holds more than the {file_max} bytes a trace may have (reached at line {line}): an endless input?"
        ),
    }
    };
    let mut budget = file_max;
    let mut checksum = blake3::Hasher::new();
    let mut header: Option<Header> = None;
    let mut events: Vec<TraceEvent> = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        let end = read_line_capped(input, &mut buf, line_max, &mut budget).map_err(|source| {
            TraceError::Io {
                path: path.clone(),
                source,
            }
        })?;
        let Some(end) = end else {
            return Err(too_large(line_no + 1));
        };
        match end {
            LineEnd::Eof if buf.is_empty() && line_no == 0 => {
                return Err(TraceError::Empty { path })
            }
            // A last line without its newline was cut off mid-write.
            LineEnd::Eof => {
                return Err(TraceError::Truncated {
                    path,
                    lines: line_no,
                })
            }
            LineEnd::TooLong => {
                return Err(bad(
                    line_no + 1,
                    format!(
                        "the line is longer than {line_max} bytes, the most a trace line may have (an endless input, or not a trace?)"
                    ),
                ))
            }
            LineEnd::Newline => {}
        }
        line_no += 1;
        let value: Value = serde_json::from_slice(&buf).map_err(|e| {
            let what = if std::str::from_utf8(&buf).is_err() {
                "not valid UTF-8 text".to_string()
            } else if header.is_none() {
                format!("expected the trace header (format, version, seed, config): {e}")
            } else {
                format!("not a JSON event or footer: {e}")
            };
            bad(line_no, what)
        })?;
        let Some(head) = &header else {
            header = Some(parse_header(value).map_err(|p| bad(line_no, p))?);
            checksum.update(&buf);
            continue;
        };
        if value.get("end").is_some() {
            let footer = parse_footer(value).map_err(|p| bad(line_no, p))?;
            if footer.checksum != footer_checksum(checksum.clone(), &footer) {
                return Err(TraceError::Checksum {
                    path,
                    line: line_no,
                });
            }
            check_footer(&footer, &events).map_err(|p| bad(line_no, p))?;
            // Only blank space may follow, read with the same caps.
            loop {
                let end =
                    read_line_capped(input, &mut buf, line_max, &mut budget).map_err(|source| {
                        TraceError::Io {
                            path: path.clone(),
                            source,
                        }
                    })?;
                let Some(end) = end else {
                    return Err(too_large(line_no + 1));
                };
                if buf.iter().any(|b| !b.is_ascii_whitespace()) {
                    return Err(bad(
                        line_no + 1,
                        "unexpected data after the `end` footer".into(),
                    ));
                }
                match end {
                    LineEnd::Newline => line_no += 1,
                    LineEnd::Eof | LineEnd::TooLong => break,
                }
            }
            return Ok(TraceFile {
                header: head.clone(),
                events,
                footer,
            });
        }
        if events.len() as u64 >= TRACE_EVENTS_MAX {
            return Err(TraceError::TooLarge {
                path,
                problem: format!(
                    "it holds more than the {TRACE_EVENTS_MAX} events a trace may have (line {line_no})"
                ),
            });
        }
        let event = parse_event(value).map_err(|p| bad(line_no, p))?;
        check_event(&event, &events).map_err(|p| bad(line_no, p))?;
        checksum.update(&buf);
        events.push(event);
    }
}

/// Where two event streams first differ.
#[derive(Debug, Clone, PartialEq)]
pub struct Divergence {
    pub index: usize,
    /// `None` when the recording ended first.
    pub recorded: Option<TraceEvent>,
    /// `None` when the new run ended first.
    pub replayed: Option<TraceEvent>,
}

/// The first event at which `replayed` departs from `recorded`, if any.
pub fn first_difference(recorded: &[TraceEvent], replayed: &[TraceEvent]) -> Option<Divergence> {
    let len = recorded.len().max(replayed.len());
    (0..len)
        .find(|&i| recorded.get(i) != replayed.get(i))
        .map(|index| Divergence {
            index,
            recorded: recorded.get(index).cloned(),
            replayed: replayed.get(index).cloned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_events::event;
    use std::io::Read;

    /// A small run with one message of every fate and one event of every kind.
    fn parts() -> (Header, Vec<TraceEvent>, Footer) {
        let header = Header::new(7, serde_json::json!({"protocol": "test"}));
        let events = vec![
            event(0, 0, 0, EventKind::Start),
            event(
                1,
                0,
                0,
                EventKind::Send {
                    to: NodeId(1),
                    id: 1,
                    bytes: 3,
                    msg: "Ping".into(),
                },
            ),
            event(
                2,
                0,
                0,
                EventKind::Drop {
                    to: NodeId(1),
                    id: 1,
                    reason: "loss".into(),
                },
            ),
            event(
                3,
                5,
                0,
                EventKind::Annotate {
                    label: "hello".into(),
                },
            ),
            event(
                4,
                5,
                1,
                EventKind::Send {
                    to: NodeId(0),
                    id: 4,
                    bytes: 3,
                    msg: "Pong".into(),
                },
            ),
            event(
                5,
                6,
                1,
                EventKind::Corrupt {
                    to: NodeId(0),
                    id: 4,
                    msg: "Pang".into(),
                },
            ),
            event(
                6,
                9,
                0,
                EventKind::Deliver {
                    from: NodeId(1),
                    id: 4,
                },
            ),
            event(
                7,
                9,
                0,
                EventKind::Timer {
                    timer_id: TimerId(3),
                    timer: "Tick".into(),
                },
            ),
            event(
                8,
                9,
                0,
                EventKind::Fault {
                    fault: "crash n1".into(),
                },
            ),
            event(
                9,
                9,
                0,
                EventKind::Output {
                    value: serde_json::json!({"total": 3}),
                },
            ),
            event(
                10,
                9,
                0,
                EventKind::Violation {
                    invariant: "sum".into(),
                    detail: "3 != 4".into(),
                },
            ),
        ];
        let footer = Footer {
            outcome: "violation".into(),
            violations: vec!["sum: 3 != 4".into()],
            events: 11,
            sim_time_ns: 10,
            digest: "ab".repeat(32),
            checksum: String::new(),
        };
        (header, events, footer)
    }

    fn write(header: &Header, events: &[TraceEvent], footer: &Footer) -> Vec<u8> {
        let mut out = Vec::new();
        write_trace(&mut out, header, events, footer).unwrap();
        out
    }

    fn sample() -> Vec<u8> {
        let (header, events, footer) = parts();
        write(&header, &events, &footer)
    }

    fn read(bytes: &[u8]) -> Result<TraceFile, TraceError> {
        read_trace_from(bytes, "t.jsonl")
    }

    fn error(bytes: &[u8]) -> String {
        read(bytes).unwrap_err().to_string()
    }

    /// The sample with line `line` (1-based) replaced.
    fn with_line(line: usize, text: &str) -> Vec<u8> {
        let sample = String::from_utf8(sample()).unwrap();
        let mut lines: Vec<&str> = sample.lines().collect();
        lines[line - 1] = text;
        (lines.join("\n") + "\n").into_bytes()
    }

    #[test]
    fn written_trace_reads_back() {
        let (header, events, mut footer) = parts();
        let file = read(&sample()).unwrap();
        assert_eq!(file.header, header);
        assert_eq!(file.events, events);
        footer.checksum = file.footer.checksum.clone();
        assert_eq!(file.footer, footer);
    }

    #[test]
    fn truncated_trace_is_refused_with_where_it_stops() {
        let bytes = sample();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            let err = error(&bytes[..cut]);
            assert!(err.contains("truncated"), "cut at {cut}: {err}");
        }
        assert!(error(b"").contains("empty"));
    }

    #[test]
    fn edited_trace_fails_its_checksum() {
        let text = String::from_utf8(sample())
            .unwrap()
            .replace("hello", "hallo");
        let err = error(text.as_bytes());
        assert!(err.contains("corrupt") && err.contains("line 13"), "{err}");
    }

    #[test]
    fn every_edit_of_the_footer_breaks_the_checksum() {
        let text = String::from_utf8(sample()).unwrap();
        let footer = text.lines().last().unwrap().to_string();
        let edits = [
            ("\"outcome\":\"violation\"", "\"outcome\":\"ok\""),
            ("\"violations\":[\"sum: 3 != 4\"]", "\"violations\":[]"),
            ("sum: 3 != 4", "sum: 3 != 5"),
            ("\"events\":11", "\"events\":12"),
            ("\"sim_time_ns\":10", "\"sim_time_ns\":11"),
            ("\"digest\":\"abab", "\"digest\":\"acab"),
        ];
        for (from, to) in edits {
            assert!(footer.contains(from), "{from} not in {footer}");
            let edited = text.replace(&footer, &footer.replace(from, to));
            let err = error(edited.as_bytes());
            assert!(
                err.contains("corrupt") && err.contains("line 13"),
                "{to}: {err}"
            );
        }
        // Spacing is not meaning: a re-indented footer still reads.
        let spaced = text.replace(&footer, &footer.replace(",\"", ", \""));
        read(spaced.as_bytes()).unwrap();
    }

    #[test]
    fn a_footer_that_disagrees_with_the_events_is_refused_even_with_a_fresh_checksum() {
        let (header, events, footer) = parts();
        type Edit = fn(&mut Footer);
        let cases: [(Edit, &str); 7] = [
            (|f| f.outcome = "ok".into(), "outcome is `ok`"),
            (
                |f| {
                    f.outcome = "ok".into();
                    f.violations.clear()
                },
                "do not match",
            ),
            (|f| f.violations[0] = "sum: other".into(), "do not match"),
            (|f| f.events = 3, "footer counts 3 events"),
            (|f| f.sim_time_ns = 2, "before the last event"),
            (|f| f.digest = "xyz".into(), "64 lowercase hex"),
            (|f| f.outcome = "fine".into(), "not one of ok"),
        ];
        for (edit, expected) in cases {
            let mut f = footer.clone();
            edit(&mut f);
            let err = error(&write(&header, &events, &f));
            assert!(
                err.contains(expected) && err.contains("line 13"),
                "{expected}: {err}"
            );
        }
        // A stall lists what nodes wait for after the violation events.
        let mut f = footer.clone();
        f.outcome = "stalled".into();
        f.violations.push("stall: n1 waits for x".into());
        let trace = read(&write(&header, &events, &f)).unwrap();
        // Read back as data: the violation event, then the waiting node at the run's end.
        let violations = trace.violations();
        let end = Time::from_nanos(f.sim_time_ns);
        assert_eq!(violations.len(), 2, "{violations:?}");
        assert_eq!(violations[0].invariant, "sum");
        assert_eq!(violations[1], Violation::stall(NodeId(1), end, "x"));
        let lines: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert_eq!(lines, f.violations);
        for bad in [
            "made up",
            "stall: waits for x",
            "stall: nx waits for x",
            "stall: n1 idles",
        ] {
            let mut g = f.clone();
            g.violations.push(bad.into());
            assert!(
                error(&write(&header, &events, &g)).contains("neither"),
                "{bad}"
            );
        }
    }

    #[test]
    fn every_field_of_every_event_must_have_its_type() {
        let text = String::from_utf8(sample()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (index, line) in lines[1..lines.len() - 1].iter().enumerate() {
            let line_no = index + 2;
            let Value::Object(fields) = serde_json::from_str::<Value>(line).unwrap() else {
                panic!("an event is an object");
            };
            for (name, value) in &fields {
                let wrong: Vec<Value> = match value {
                    Value::String(_) => vec![Value::from(5), Value::Null],
                    Value::Number(_) => vec![
                        Value::from("5"),
                        Value::from(-1),
                        Value::from(1.5),
                        Value::Bool(true),
                    ],
                    // Output values may be anything.
                    _ => continue,
                };
                for bad in wrong {
                    let mut edited = fields.clone();
                    edited.insert(name.clone(), bad.clone());
                    let err = error(&with_line(
                        line_no,
                        &serde_json::to_string(&edited).unwrap(),
                    ));
                    assert!(
                        err.contains(&format!("line {line_no}:"))
                            && (err.contains(&format!("field `{name}`"))
                                || (name == "kind" && err.contains("unknown event kind"))),
                        "{name} = {bad}: {err}"
                    );
                }
                let mut missing = fields.clone();
                missing.remove(name);
                let err = error(&with_line(
                    line_no,
                    &serde_json::to_string(&missing).unwrap(),
                ));
                assert!(
                    err.contains(&format!("line {line_no}:")) && err.contains(&format!("`{name}`")),
                    "without {name}: {err}"
                );
            }
            let mut extra = fields.clone();
            extra.insert("colour".into(), Value::from("red"));
            let err = error(&with_line(line_no, &serde_json::to_string(&extra).unwrap()));
            assert!(err.contains("unknown field `colour`"), "{err}");
        }
    }

    #[test]
    fn node_numbers_stay_within_what_a_run_can_have() {
        let (header, mut events, footer) = parts();
        events[3].node = NodeId(u32::MAX);
        let err = error(&write(&header, &events, &footer));
        assert!(
            err.contains("line 5:") && err.contains("field `node`") && err.contains("0 to 65535"),
            "{err}"
        );
        events[3].node = NodeId(TRACE_NODES_MAX - 1);
        read(&write(&header, &events, &footer)).unwrap();
    }

    #[test]
    fn a_number_as_kind_is_not_read_as_some_variant() {
        let err = error(&with_line(
            2,
            r#"{"seq":0,"t":0,"node":0,"kind":5,"value":1}"#,
        ));
        assert!(
            err.contains("line 2:") && err.contains("field `kind`") && err.contains("a string"),
            "{err}"
        );
        let err = error(&with_line(2, r#"{"seq":0,"t":0,"node":0,"kind":"jump"}"#));
        assert!(err.contains("unknown event kind `jump`"), "{err}");
    }

    #[test]
    fn messages_are_named_by_their_own_send() {
        let (header, events, footer) = parts();
        let rewrite = |i: usize, kind: EventKind| {
            let mut events = events.clone();
            events[i].kind = kind;
            error(&write(&header, &events, &footer))
        };
        // A second send reusing id 1.
        let err = rewrite(
            4,
            EventKind::Send {
                to: NodeId(0),
                id: 1,
                bytes: 3,
                msg: "Pong".into(),
            },
        );
        assert!(
            err.contains("line 6:") && err.contains("already the message sent at line 3"),
            "{err}"
        );
        let err = rewrite(
            6,
            EventKind::Deliver {
                from: NodeId(1),
                id: 99,
            },
        );
        assert!(
            err.contains("line 8:") && err.contains("no earlier `send`"),
            "{err}"
        );
        let err = rewrite(
            6,
            EventKind::Deliver {
                from: NodeId(0),
                id: 4,
            },
        );
        assert!(err.contains("does not match its ends"), "{err}");
        let err = rewrite(
            2,
            EventKind::Drop {
                to: NodeId(1),
                id: 0,
                reason: "loss".into(),
            },
        );
        assert!(
            err.contains("line 4:") && err.contains("no earlier `send`"),
            "{err}"
        );
    }

    #[test]
    fn time_and_sequence_only_go_forward() {
        let (header, mut events, footer) = parts();
        events[5].t = 1;
        let err = error(&write(&header, &events, &footer));
        assert!(
            err.contains("line 7:") && err.contains("earlier than"),
            "{err}"
        );
        let err = error(&with_line(3, r#"{"seq":7,"t":0,"node":0,"kind":"start"}"#));
        assert!(
            err.contains("line 3:") && err.contains("out of order"),
            "{err}"
        );
    }

    #[test]
    fn garbage_line_names_its_line_number() {
        let mut text = String::from_utf8(sample()).unwrap();
        text.insert_str(text.find('\n').unwrap() + 1, "{not json\n");
        let err = error(text.as_bytes());
        assert!(
            err.contains("line 2") && err.contains("not a JSON event"),
            "{err}"
        );
        let err = error(b"hello\n");
        assert!(err.contains("line 1") && err.contains("header"), "{err}");
        let err = error(&[0xff, 0xfe, b'\n']);
        assert!(err.contains("line 1") && err.contains("UTF-8"), "{err}");
        let err = error(b"{\"end\":{}}\n");
        assert!(
            err.contains("line 1") && err.contains("no `format`"),
            "{err}"
        );
    }

    #[test]
    fn old_and_unknown_versions_say_what_to_do() {
        // Version 1's footer was outside the checksum; version 2 differs in its digest
        // format only. Each is named, with the version this build reads and the remedy.
        for (version, why) in [(1, "outside the checksum"), (2, "older digest format")] {
            let header = format!(
                r#"{{"format":"rehearsal-trace","version":{version},"seed":1,"config":{{}}}}"#
            );
            let err = error(&with_line(1, &header));
            let older = format!("trace format version {version} was written by an older Rehearsal");
            for said in [
                "line 1",
                &older,
                why,
                "this build reads version 3 only",
                "Record the run again with this build (`rehearsal sim ... --trace`",
            ] {
                assert!(err.contains(said), "{said:?} in {err}");
            }
        }
        let new = with_line(
            1,
            r#"{"format":"rehearsal-trace","version":9,"seed":1,"config":{}}"#,
        );
        assert!(error(&new).contains("newer"));
        let other = with_line(1, r#"{"format":"pcap","version":3,"seed":1,"config":{}}"#);
        assert!(error(&other).contains("not a Rehearsal trace"));
    }

    #[test]
    fn endless_inputs_stop_at_the_caps() {
        // No newline at all: the line cap stops it after `line_max` bytes.
        let mut zeros = std::io::BufReader::new(std::io::repeat(0));
        let err = read_trace_capped(&mut zeros, "/dev/zero", 1 << 10, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("/dev/zero")
                && err.contains("line 1")
                && err.contains("longer than 1024 bytes"),
            "{err}"
        );
        // Endless blank lines after a whole trace: the file cap stops them.
        let whole = sample();
        let mut tail = std::io::BufReader::new(whole.as_slice().chain(std::io::repeat(b'\n')));
        let err = read_trace_capped(&mut tail, "t.jsonl", 1 << 10, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than the 1048576 bytes"), "{err}");
        // Endless well-formed events: the file cap stops them too.
        struct Events(u64, Vec<u8>);
        impl Read for Events {
            fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
                if self.1.is_empty() {
                    self.1 = format!(
                        "{{\"seq\":{},\"t\":0,\"node\":0,\"kind\":\"start\"}}\n",
                        self.0
                    )
                    .into_bytes();
                    self.0 += 1;
                }
                let n = out.len().min(self.1.len());
                out[..n].copy_from_slice(&self.1[..n]);
                self.1.drain(..n);
                Ok(n)
            }
        }
        let header = br#"{"format":"rehearsal-trace","version":3,"seed":1,"config":{}}"#.to_vec();
        let mut endless = std::io::BufReader::new(
            header
                .as_slice()
                .chain(&b"\n"[..])
                .chain(Events(0, Vec::new())),
        );
        let err = read_trace_capped(&mut endless, "gen", 1 << 10, 1 << 20)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gen") && err.contains("more than the 1048576 bytes"),
            "{err}"
        );
        // Within the real caps, a long line is refused without being read whole.
        let mut long =
            std::io::BufReader::new(std::io::repeat(b'x').take(TRACE_LINE_BYTES_MAX as u64 + 10));
        let err = read_trace_capped(&mut long, "big", TRACE_LINE_BYTES_MAX, TRACE_FILE_BYTES_MAX)
            .unwrap_err()
            .to_string();
        assert!(err.contains("longer than"), "{err}");
    }

    #[test]
    fn only_blank_space_may_follow_the_footer() {
        let mut bytes = sample();
        bytes.extend_from_slice(b"\n  \n");
        read(&bytes).unwrap();
        bytes.extend_from_slice(b"x");
        assert!(error(&bytes).contains("after the `end` footer"));
    }

    #[test]
    fn first_difference_finds_the_first_changed_or_missing_event() {
        let a = read(&sample()).unwrap().events;
        let mut b = a.clone();
        assert_eq!(first_difference(&a, &b), None);
        b[1].t = 6;
        assert_eq!(first_difference(&a, &b).unwrap().index, 1);
        assert_eq!(first_difference(&a, &a[..1]).unwrap().replayed, None);
    }
}
