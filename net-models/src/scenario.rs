//! Scenario files: one timed command per line, in the spirit of Gumby's experiment
//! scenarios.
//!
//! ```text
//! # Split the cluster for a minute, then heal it.
//! @0      annotate start
//! @1:30   partition 0,1 | 2,3,4
//! @2:30   heal
//! @3:00   crash 2
//! @3:20.5 restart 2
//! @1:00:00 stop
//! ```
//!
//! A line is `@TIME COMMAND ARGS`, where `TIME` is `[[hh:]mm:]ss[.fraction]` of virtual
//! time; `#` starts a comment and blank lines are ignored. Lines may come in any order:
//! commands run in time order, and those at one time in file order. Commands:
//!
//! | command | meaning |
//! |---|---|
//! | `partition 0,1 \| 2,3` | only nodes within one group reach each other; unlisted nodes are isolated |
//! | `isolate N` | node N reaches no one and no one reaches it |
//! | `majority-minority [N,..]` | the listed minority (default: the last ⌊(n−1)/2⌋ nodes) is cut from the rest |
//! | `ring` | each node reaches only the majority of nodes around it on a ring |
//! | `bridge [N]` | two halves cut from each other, node N (default n/2) reaches both |
//! | `cut 0,1 -> 2` | one-way cut: messages from 0 and 1 to 2 are lost, replies still flow |
//! | `heal` | every cut is removed |
//! | `crash N`, `restart N` | the node stops (losing its timers), and comes back from its durable state |
//! | `pause N`, `resume N` | the node handles nothing meanwhile; its events queue up |
//! | `skew N OFFSET [DRIFT]` | the node's clock is off by OFFSET (`+5ms`, `-2s`) and runs DRIFT fast (`+100ppm`) |
//! | `set-loss P` | every link loses each message with probability P |
//! | `set-latency SPEC` | every link's latency, e.g. `normal:50ms,10ms` |
//! | `byzantine N BEHAVIOUR` | test-only: the node misbehaves as its protocol offers (`equivocate`, …) |
//! | `annotate TEXT` | a label in the trace |
//! | `stop` | the run ends here |
//! | `settle` | every cut heals, and round-triggered commands still waiting (and armed mutations) are cancelled |
//! | `twins N[,N]` | (`@0` only) each listed node runs as two instances with one identity: `N` and its twin `N'`, which partitions may separate |
//! | `leader N` | (`@round R` only) node N leads round R, for protocols that let the testbed choose |
//! | `mutate N -> R[,R]` | (`@round R` only) test-only: node N's messages of round R to the listed nodes change by one small step |
//!
//! Instead of a time, a line may wait for a round: `@round 5 partition 0,1 | 2,3` runs when
//! the first correct node enters round 5 (or a later one), `@round 5 all heal` when every
//! correct node has. Rounds are what each protocol reports (PBFT's and HotStuff's views).
//! With twins, `N'` names the twin of node N wherever a node is expected.
//!
//! Errors name the file, line and column, show the line, and say what was expected.

use crate::topology;
use rehearsal_sim_core::{ClockSkew, Fault, Latency, NetChange, NodeId, RoundWhen, Time};
use std::collections::BTreeMap;
use std::fmt;

/// One parsed command, with the line it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ScenarioEntry {
    pub at: Time,
    /// `@round R [all]`: the command waits for that round rather than for `at` (zero).
    pub round: Option<(u64, RoundWhen)>,
    pub fault: Fault,
    /// 1-based line number in the scenario text.
    pub line: usize,
}

/// A parsed scenario: its commands in the order they run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scenario {
    pub entries: Vec<ScenarioEntry>,
    /// Nodes that run as twins (`@0 twins 0`), in order: the k-th one's twin is endpoint
    /// `nodes + k`.
    pub twins: Vec<NodeId>,
    /// Who leads each round the scenario names a leader for (`@round 3 leader 1`).
    pub leaders: BTreeMap<u64, NodeId>,
}

impl Scenario {
    /// The endpoints a run of `nodes` nodes has with this scenario's twins.
    pub fn endpoints(&self, nodes: u32) -> u32 {
        nodes + self.twins.len() as u32
    }
}

/// The command words, for "expected one of" messages.
pub const COMMANDS: &[&str] = &[
    "partition",
    "isolate",
    "majority-minority",
    "ring",
    "bridge",
    "cut",
    "heal",
    "crash",
    "restart",
    "pause",
    "resume",
    "skew",
    "set-loss",
    "set-latency",
    "byzantine",
    "annotate",
    "stop",
    "settle",
    "twins",
    "leader",
    "mutate",
];

/// What is wrong with a scenario, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    /// The file name (or `<inline>`).
    pub origin: String,
    /// 1-based line and column (in characters) of the problem.
    pub line: usize,
    pub column: usize,
    /// How many characters the problem spans (at least 1), for the caret line.
    pub width: usize,
    /// The offending line, as written.
    pub source_line: String,
    pub message: String,
    /// What would have been accepted here.
    pub expected: Option<String>,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}:{}:{}: {}",
            self.origin, self.line, self.column, self.message
        )?;
        let gutter = self.line.to_string().len();
        let caret_pad: String = self
            .source_line
            .chars()
            .take(self.column.saturating_sub(1))
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        writeln!(f, "{:gutter$} |", "")?;
        writeln!(f, "{} | {}", self.line, self.source_line)?;
        write!(
            f,
            "{:gutter$} | {caret_pad}{}",
            "",
            "^".repeat(self.width.max(1))
        )?;
        if let Some(expected) = &self.expected {
            write!(f, "\n{:gutter$} = expected {expected}", "")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioError {}

/// Largest text input file (scenario, network, latency matrix, run file), in bytes: far
/// above any real one (a 1024 x 1024 latency matrix is about 8 MiB), and a bound on what a
/// wrong path (a log, a device such as `/dev/zero`) makes the reader hold.
pub const TEXT_FILE_BYTES_MAX: u64 = 16 << 20;

/// Reads a whole text input file of at most [`TEXT_FILE_BYTES_MAX`] bytes. The cap is
/// checked while reading, not only against the file's size (a device reports none), and
/// binary data (a NUL byte, bytes that are not UTF-8) is refused as soon as it is read.
/// The error is what is wrong, for the caller to prefix with what the file is and its name.
pub fn read_text_file(path: &std::path::Path) -> Result<String, String> {
    read_text_capped(path, TEXT_FILE_BYTES_MAX)
}

fn read_text_capped(path: &std::path::Path, max: u64) -> Result<String, String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let metadata = file.metadata().map_err(|e| e.to_string())?;
    if metadata.is_dir() {
        return Err("it is a directory".into());
    }
    if metadata.len() > max {
        return Err(format!(
            "it has {} bytes, more than the {max} a text input file may have",
            metadata.len()
        ));
    }
    let line_of = |bytes: &[u8], at: usize| bytes[..at].iter().filter(|&&b| b == b'\n').count() + 1;
    let mut bytes: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    // Bytes before this offset are known to be whole UTF-8 characters.
    let mut valid = 0;
    loop {
        let n = match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.to_string()),
        };
        if (bytes.len() + n) as u64 > max {
            return Err(format!(
                "it holds more than the {max} bytes a text input file may have (an endless input such as /dev/zero?)"
            ));
        }
        bytes.extend_from_slice(&chunk[..n]);
        // The first of a NUL byte and a byte that is not UTF-8, whichever comes first.
        let nul = bytes[bytes.len() - n..]
            .iter()
            .position(|&b| b == 0)
            .map(|at| bytes.len() - n + at);
        let invalid = match std::str::from_utf8(&bytes[valid..]) {
            Ok(_) => {
                valid = bytes.len();
                None
            }
            Err(e) if e.error_len().is_none() => {
                valid += e.valid_up_to();
                None
            }
            Err(e) => Some(valid + e.valid_up_to()),
        };
        match (nul, invalid) {
            (Some(at), invalid) if invalid.is_none_or(|i| at < i) => {
                return Err(format!(
                    "it holds binary data, not text (a NUL byte at line {}, byte {at})",
                    line_of(&bytes, at)
                ));
            }
            (_, Some(at)) => {
                return Err(format!(
                    "it is not UTF-8 text (an invalid byte at line {}, byte {at})",
                    line_of(&bytes, at)
                ));
            }
            _ => {}
        }
    }
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        format!("it is not UTF-8 text (it ends inside a character, byte {at})")
    })
}

/// Parses a scenario for a run of `nodes` nodes. `origin` names the source in errors.
pub fn parse(text: &str, origin: &str, nodes: u32) -> Result<Scenario, ScenarioError> {
    // Twins first: other lines may name them (`0'`) before their declaration.
    let mut twins: Vec<NodeId> = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let mut line = Line::new(raw, index + 1, origin, nodes, &[]);
        if line.words.get(1).is_some_and(|w| w.text == "twins") {
            for node in line.twins_line()? {
                if twins.contains(&node) {
                    return Err(line.error(
                        0,
                        raw.chars().count(),
                        format!("node {} already has a twin", node.0),
                        None,
                    ));
                }
                twins.push(node);
            }
        }
    }
    let mut scenario = Scenario {
        twins,
        ..Scenario::default()
    };
    for (index, raw) in text.lines().enumerate() {
        let mut line = Line::new(raw, index + 1, origin, nodes, &scenario.twins);
        if line.words.get(1).is_some_and(|w| w.text == "twins") {
            continue;
        }
        match line.parse()? {
            Some(Parsed::Entry(entry)) => scenario.entries.push(entry),
            Some(Parsed::Leader { round, node }) => match scenario.leaders.entry(round) {
                std::collections::btree_map::Entry::Vacant(slot) => {
                    slot.insert(node);
                }
                std::collections::btree_map::Entry::Occupied(earlier) => {
                    return Err(line.error(
                        0,
                        raw.chars().count(),
                        format!(
                            "round {round} has two leaders, {} and {}",
                            earlier.get().0,
                            node.0
                        ),
                        Some("one `@round R leader N` line per round"),
                    ));
                }
            },
            None => {}
        }
    }
    // Time order; one time keeps file order (a stable sort).
    scenario.entries.sort_by_key(|e: &ScenarioEntry| e.at);
    Ok(scenario)
}

/// What one line says.
enum Parsed {
    Entry(ScenarioEntry),
    Leader { round: u64, node: NodeId },
}

/// One word of a line: its text and its 0-based character column.
#[derive(Debug, Clone, Copy)]
struct Word<'a> {
    text: &'a str,
    column: usize,
}

struct Line<'a> {
    raw: &'a str,
    number: usize,
    origin: &'a str,
    /// Nodes, not counting twins.
    nodes: u32,
    /// Nodes that have twins, in order (`twins[k]`'s twin is endpoint `nodes + k`).
    twins: &'a [NodeId],
    /// The words of the line before any comment; `|`, `,` and `->` are words of their own.
    words: Vec<Word<'a>>,
    next: usize,
}

impl<'a> Line<'a> {
    fn new(raw: &'a str, number: usize, origin: &'a str, nodes: u32, twins: &'a [NodeId]) -> Self {
        let mut words = Vec::new();
        let mut start: Option<(usize, usize)> = None; // (byte, column)
        let mut column = 0;
        let chars: Vec<(usize, char)> = raw.char_indices().collect();
        let mut i = 0;
        let mut end_byte = raw.len();
        while i < chars.len() {
            let (byte, c) = chars[i];
            if c == '#' {
                end_byte = byte;
                break;
            }
            let arrow = c == '-' && chars.get(i + 1).map(|&(_, n)| n) == Some('>');
            let separator = c == '|' || c == ',' || arrow;
            if c.is_whitespace() || separator {
                if let Some((s, col)) = start.take() {
                    words.push(Word {
                        text: &raw[s..byte],
                        column: col,
                    });
                }
                if separator {
                    let len = if arrow { 2 } else { 1 };
                    words.push(Word {
                        text: &raw[byte..byte + len],
                        column,
                    });
                    i += len;
                    column += len;
                    continue;
                }
            } else if start.is_none() {
                start = Some((byte, column));
            }
            i += 1;
            column += 1;
        }
        if let Some((s, col)) = start {
            words.push(Word {
                text: &raw[s..end_byte],
                column: col,
            });
        }
        Line {
            raw,
            number,
            origin,
            nodes,
            twins,
            words,
            next: 0,
        }
    }

    fn error(
        &self,
        column: usize,
        width: usize,
        message: String,
        expected: Option<&str>,
    ) -> ScenarioError {
        ScenarioError {
            origin: self.origin.to_string(),
            line: self.number,
            column: column + 1,
            width: width.max(1),
            source_line: self.raw.to_string(),
            message,
            expected: expected.map(str::to_string),
        }
    }

    fn at_word(&self, word: Word<'_>, message: String, expected: Option<&str>) -> ScenarioError {
        self.error(word.column, word.text.chars().count(), message, expected)
    }

    /// The column just after the last word (or the line's end), for "missing" errors.
    fn end_column(&self) -> usize {
        self.words
            .last()
            .map(|w| w.column + w.text.chars().count() + 1)
            .unwrap_or_else(|| self.raw.chars().count())
    }

    fn take(&mut self) -> Option<Word<'a>> {
        let word = self.words.get(self.next).copied();
        if word.is_some() {
            self.next += 1;
        }
        word
    }

    fn peek(&self) -> Option<Word<'a>> {
        self.words.get(self.next).copied()
    }

    fn need(&mut self, what: &str, expected: &str) -> Result<Word<'a>, ScenarioError> {
        match self.take() {
            Some(word) => Ok(word),
            None => Err(self.error(
                self.end_column(),
                1,
                format!("missing {what}"),
                Some(expected),
            )),
        }
    }

    fn finish(&mut self, command: &str) -> Result<(), ScenarioError> {
        match self.take() {
            None => Ok(()),
            Some(word) => Err(self.at_word(
                word,
                format!("unexpected `{}` after the `{command}` command", word.text),
                Some("the end of the line (or a # comment)"),
            )),
        }
    }

    /// Endpoints: nodes and twins.
    fn endpoints(&self) -> u32 {
        self.nodes + self.twins.len() as u32
    }

    /// A `@0 twins N[,N]` line: the nodes it twins.
    fn twins_line(&mut self) -> Result<Vec<NodeId>, ScenarioError> {
        let Some(first) = self.take() else {
            return Ok(Vec::new());
        };
        let at = first
            .text
            .strip_prefix('@')
            .and_then(|t| parse_time(t).ok());
        if at != Some(Time::ZERO) {
            return Err(self.at_word(
                first,
                "twins exist from the start: `twins` is a line at `@0`".into(),
                Some("`@0 twins N[,N]`"),
            ));
        }
        self.next += 1; // the command word
        let twins = self.node_list("nodes that run as twins")?;
        self.finish("twins")?;
        Ok(twins)
    }

    fn parse(&mut self) -> Result<Option<Parsed>, ScenarioError> {
        let Some(first) = self.take() else {
            return Ok(None);
        };
        if first.text == "@round" {
            return self.round_line(first).map(Some);
        }
        let Some(time_text) = first.text.strip_prefix('@') else {
            return Err(self.at_word(
                first,
                format!("a line must start with `@TIME`, found `{}`", first.text),
                Some("`@[[hh:]mm:]ss` such as `@90`, `@1:30` or `@1:02:03.5`, or `@250ms`"),
            ));
        };
        let at = parse_time(time_text).map_err(|why| {
            self.at_word(
                first,
                format!("bad time `{}`: {why}", first.text),
                Some("`@[[hh:]mm:]ss[.fraction]` such as `@90`, `@1:30` or `@1:02:03.5`, or a duration such as `@250ms`"),
            )
        })?;
        let command = self.need("command after the time", &commands_list())?;
        if matches!(command.text, "leader" | "mutate") {
            return Err(self.at_word(
                command,
                format!(
                    "`{}` names a round: write the line as `@round R {}`",
                    command.text, command.text
                ),
                Some("`@round 3 leader 1` or `@round 3 mutate 1 -> 0,2`"),
            ));
        }
        let fault = self.command(command)?;
        Ok(Some(Parsed::Entry(ScenarioEntry {
            at,
            round: None,
            fault,
            line: self.number,
        })))
    }

    /// `@round R [all|first] COMMAND`, after the `@round` word.
    fn round_line(&mut self, first: Word<'a>) -> Result<Parsed, ScenarioError> {
        let word = self.need(
            "round number after `@round`",
            "a round number, e.g. `@round 5`",
        )?;
        let round: u64 = word.text.parse().map_err(|_| {
            self.at_word(
                word,
                format!("`{}` is not a round number", word.text),
                Some("a round number, e.g. `@round 5 heal`"),
            )
        })?;
        let when = match self.peek().map(|w| w.text) {
            Some("all") => {
                self.next += 1;
                RoundWhen::All
            }
            Some("first") => {
                self.next += 1;
                RoundWhen::First
            }
            _ => RoundWhen::First,
        };
        let command = self.need("command after the round", &commands_list())?;
        match command.text {
            "leader" => {
                if when == RoundWhen::All {
                    return Err(self.at_word(
                        first,
                        "a leader is chosen per round: `all` does not apply".into(),
                        Some("`@round R leader N`"),
                    ));
                }
                let node = self.node("leader")?;
                if node.0 >= self.nodes {
                    return Err(self.at_word(
                        first,
                        "a twin leads as its node: name the node, not `N'`".into(),
                        None,
                    ));
                }
                self.finish("leader")?;
                Ok(Parsed::Leader { round, node })
            }
            "mutate" => {
                if when == RoundWhen::All {
                    return Err(self.at_word(
                        first,
                        "a mutation changes the node's messages of round R whenever it is in \
                         it: `all` does not apply"
                            .into(),
                        Some("`@round R mutate N -> R[,R]`"),
                    ));
                }
                let node = self.node("node whose messages are mutated")?;
                let arrow = self.need("`->`", "`->` between the sender and the receivers")?;
                if arrow.text != "->" {
                    return Err(self.at_word(
                        arrow,
                        format!("expected `->`, found `{}`", arrow.text),
                        Some("`@round R mutate N -> R[,R]`, e.g. `@round 3 mutate 1 -> 0,2`"),
                    ));
                }
                let to = self.node_list("nodes that receive the mutated messages")?;
                self.finish("mutate")?;
                // Armed from the start: it changes the node's messages of that round,
                // whenever the node is in it.
                Ok(Parsed::Entry(ScenarioEntry {
                    at: Time::ZERO,
                    round: None,
                    fault: Fault::Mutate { node, round, to },
                    line: self.number,
                }))
            }
            "twins" => Err(self.at_word(
                command,
                "twins exist from the start: `twins` is a line at `@0`".into(),
                Some("`@0 twins N[,N]`"),
            )),
            _ => {
                let fault = self.command(command)?;
                Ok(Parsed::Entry(ScenarioEntry {
                    at: Time::ZERO,
                    round: Some((round, when)),
                    fault,
                    line: self.number,
                }))
            }
        }
    }

    fn command(&mut self, command: Word<'a>) -> Result<Fault, ScenarioError> {
        let name = command.text;
        let fault = match name {
            "partition" => {
                let groups = self.groups()?;
                Fault::Network(NetChange::Partition { groups })
            }
            "isolate" => {
                let node = self.node("node to isolate")?;
                Fault::Network(topology::isolate(node, self.endpoints()))
            }
            "majority-minority" => {
                let minority = if self.peek().is_some() {
                    let start = self.peek().map(|w| w.column).unwrap_or(0);
                    let minority = self.node_list("minority")?;
                    if 2 * minority.len() >= self.endpoints() as usize {
                        return Err(self.error(
                            start,
                            self.end_column().saturating_sub(start),
                            format!(
                                "a minority of {} nodes out of {} is not a minority",
                                minority.len(),
                                self.endpoints()
                            ),
                            Some("fewer than half of the nodes"),
                        ));
                    }
                    Some(minority)
                } else {
                    None
                };
                Fault::Network(topology::majority_minority(
                    self.endpoints(),
                    minority.as_deref(),
                ))
            }
            "ring" => Fault::Network(topology::ring(self.endpoints())),
            "bridge" => {
                let middle = if self.peek().is_some() {
                    Some(self.node("bridge node")?)
                } else {
                    None
                };
                if self.nodes < 3 {
                    return Err(self.at_word(
                        command,
                        format!(
                            "a bridge needs at least 3 nodes, the run has {}",
                            self.nodes
                        ),
                        None,
                    ));
                }
                Fault::Network(topology::bridge(self.endpoints(), middle))
            }
            "cut" => {
                let from = self.node_list("sending nodes")?;
                let arrow = self.need("`->`", "`->` between the senders and the receivers")?;
                if arrow.text != "->" {
                    return Err(self.at_word(
                        arrow,
                        format!("expected `->`, found `{}`", arrow.text),
                        Some("`cut FROM -> TO`, e.g. `cut 0,1 -> 2`"),
                    ));
                }
                let to = self.node_list("receiving nodes")?;
                Fault::Network(NetChange::CutOneWay { from, to })
            }
            "heal" => Fault::Network(NetChange::Heal),
            "settle" => Fault::Settle,
            "crash" => Fault::Crash(self.node("node to crash")?),
            "restart" => Fault::Restart(self.node("node to restart")?),
            "pause" => Fault::Pause(self.node("node to pause")?),
            "resume" => Fault::Resume(self.node("node to resume")?),
            "skew" => {
                let node = self.node("node whose clock is skewed")?;
                let offset_word =
                    self.need("clock offset", "a signed duration such as `+5ms` or `-2s`")?;
                let offset_ns = parse_signed_duration(offset_word.text).map_err(|why| {
                    self.at_word(
                        offset_word,
                        format!("bad clock offset `{}`: {why}", offset_word.text),
                        Some("a signed duration such as `+5ms` or `-2s`"),
                    )
                })?;
                let drift_ppm = match self.take() {
                    None => 0,
                    Some(word) => parse_ppm(word.text).map_err(|why| {
                        self.at_word(
                            word,
                            format!("bad clock drift `{}`: {why}", word.text),
                            Some("a rate such as `+100ppm` or `-50ppm`"),
                        )
                    })?,
                };
                Fault::Skew {
                    node,
                    skew: ClockSkew {
                        offset_ns,
                        drift_ppm,
                    },
                }
            }
            "set-loss" => {
                let word = self.need("loss probability", "a probability between 0 and 1")?;
                let loss: f64 = word
                    .text
                    .parse()
                    .ok()
                    .filter(|p: &f64| (0.0..=1.0).contains(p))
                    .ok_or_else(|| {
                        self.at_word(
                            word,
                            format!("bad loss probability `{}`", word.text),
                            Some("a probability between 0 and 1, e.g. `0.1`"),
                        )
                    })?;
                Fault::Network(NetChange::SetLoss { loss })
            }
            "set-latency" => {
                let word = self.need(
                    "latency spec",
                    "constant:D, uniform:LO..HI, normal:MEAN,STD or lognormal:MEAN,STD",
                )?;
                // The spec contains `,` for normal: rejoin the words up to the line's end.
                let start = word.column;
                let mut spec = word.text.to_string();
                while let Some(next) = self.take() {
                    spec.push_str(next.text);
                }
                let latency: Latency = spec.parse().map_err(|e| {
                    self.error(
                        start,
                        spec.chars().count(),
                        format!("bad latency: {e}"),
                        Some("constant:D, uniform:LO..HI, normal:MEAN,STD or lognormal:MEAN,STD"),
                    )
                })?;
                Fault::Network(NetChange::SetLatency { latency })
            }
            "byzantine" => {
                let node = self.node("Byzantine node")?;
                let behavior = self.need(
                    "behaviour",
                    "a behaviour the protocol offers, e.g. `equivocate`, `silent`, `mutate` or `correct`",
                )?;
                Fault::Byzantine {
                    node,
                    behavior: behavior.text.to_string(),
                }
            }
            "annotate" => {
                // The rest of the line (before any comment), as written.
                let Some(first) = self.peek() else {
                    return Err(self.error(
                        self.end_column(),
                        1,
                        "missing the annotation text".into(),
                        Some("`annotate SOME TEXT`"),
                    ));
                };
                let last = *self.words.last().expect("peeked a word");
                let text: String = self
                    .raw
                    .chars()
                    .skip(first.column)
                    .take(last.column + last.text.chars().count() - first.column)
                    .collect();
                self.next = self.words.len();
                Fault::Annotate(text)
            }
            "stop" => Fault::Stop,
            _ => {
                let hint = suggestion(name)
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(self.at_word(
                    command,
                    format!("unknown command `{name}`{hint}"),
                    Some(&commands_list()),
                ));
            }
        };
        self.finish(name)?;
        Ok(fault)
    }

    fn node(&mut self, what: &str) -> Result<NodeId, ScenarioError> {
        let expected = format!("a node id from 0 to {}", self.nodes.saturating_sub(1));
        let word = self.need(what, &expected)?;
        self.node_word(word)
    }

    fn node_word(&self, word: Word<'_>) -> Result<NodeId, ScenarioError> {
        let expected = format!("a node id from 0 to {}", self.nodes.saturating_sub(1));
        if let Some(base) = word.text.strip_suffix('\'') {
            let id: u32 = base.parse().map_err(|_| {
                self.at_word(
                    word,
                    format!("`{}` is not a twin's name", word.text),
                    Some("`N'`, the twin of node N"),
                )
            })?;
            let Some(k) = self.twins.iter().position(|t| t.0 == id) else {
                return Err(self.at_word(
                    word,
                    format!("node {id} has no twin"),
                    Some(&format!("a node declared with `@0 twins {id}`")),
                ));
            };
            return Ok(NodeId(self.nodes + k as u32));
        }
        let id: u32 = word.text.parse().map_err(|_| {
            self.at_word(
                word,
                format!("`{}` is not a node id", word.text),
                Some(&expected),
            )
        })?;
        if id >= self.nodes {
            return Err(self.at_word(
                word,
                format!(
                    "node {id} does not exist: the run has nodes 0 to {}",
                    self.nodes.saturating_sub(1)
                ),
                Some(&expected),
            ));
        }
        Ok(NodeId(id))
    }

    /// `N[,N...]`, each node at most once.
    fn node_list(&mut self, what: &str) -> Result<Vec<NodeId>, ScenarioError> {
        let mut nodes: Vec<NodeId> = Vec::new();
        loop {
            let word = self.need(what, "a comma-separated list of node ids, e.g. `0,1,2`")?;
            let node = self.node_word(word)?;
            if nodes.contains(&node) {
                return Err(self.at_word(word, format!("node {} is listed twice", node.0), None));
            }
            nodes.push(node);
            match self.peek() {
                Some(w) if w.text == "," => {
                    self.next += 1;
                }
                _ => return Ok(nodes),
            }
        }
    }

    /// `G | G [| G...]`, each group a node list, no node in two groups.
    fn groups(&mut self) -> Result<Vec<Vec<NodeId>>, ScenarioError> {
        let mut groups: Vec<Vec<NodeId>> = Vec::new();
        loop {
            let start = self.next;
            let group = self.node_list("group of nodes")?;
            for (offset, node) in group.iter().enumerate() {
                if groups.iter().any(|g| g.contains(node)) {
                    // Each node word is followed by a comma word, hence the stride of 2.
                    let word = self.words[start + 2 * offset];
                    return Err(self.at_word(
                        word,
                        format!("node {} is in two groups", node.0),
                        Some("each node in at most one group"),
                    ));
                }
            }
            groups.push(group);
            match self.peek() {
                Some(w) if w.text == "|" => {
                    self.next += 1;
                }
                _ => break,
            }
        }
        if groups.len() < 2 {
            return Err(self.error(
                self.end_column(),
                1,
                "a partition needs at least two groups".into(),
                Some("groups separated by `|`, e.g. `partition 0,1 | 2,3`"),
            ));
        }
        Ok(groups)
    }
}

fn commands_list() -> String {
    format!("a command: {}", COMMANDS.join(", "))
}

/// The command closest to a misspelt one, if any is close.
fn suggestion(word: &str) -> Option<&'static str> {
    COMMANDS
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|&(d, c)| d <= 2.max(c.len() / 4))
        .min()
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let here = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != cb)).min(row[j] + 1).min(here + 1);
            prev = here;
        }
    }
    row[b.len()]
}

/// `[[hh:]mm:]ss[.fraction]`, or a duration with its unit (`250ms`, `1.5s`, `2m`, as
/// `--duration` takes them), into virtual time.
pub fn parse_time(text: &str) -> Result<Time, String> {
    if text.is_empty() {
        return Err("no time after `@`".into());
    }
    if !text.contains(':') && text.bytes().any(|b| b.is_ascii_alphabetic()) {
        let duration = rehearsal_sim_core::parse_duration(text).map_err(|e| e.to_string())?;
        return Ok(Time(rehearsal_sim_core::duration_ns(duration)));
    }
    let (whole, fraction) = match text.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (text, None),
    };
    let parts: Vec<&str> = whole.split(':').collect();
    if parts.len() > 3 {
        return Err("at most hours:minutes:seconds".into());
    }
    let mut total: u64 = 0;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("`{part}` is not a whole number"));
        }
        let value: u64 = part.parse().map_err(|_| format!("`{part}` is too large"))?;
        // Minutes and seconds after the first field are below 60.
        if i > 0 && value >= 60 {
            return Err(format!("`{part}` must be below 60"));
        }
        total = total
            .checked_mul(60)
            .and_then(|t| t.checked_add(value))
            .ok_or("the time is too large")?;
    }
    let mut nanos = total
        .checked_mul(1_000_000_000)
        .ok_or("the time is too large")?;
    if let Some(fraction) = fraction {
        if fraction.is_empty()
            || fraction.len() > 9
            || !fraction.bytes().all(|b| b.is_ascii_digit())
        {
            return Err("the fraction of a second takes 1 to 9 digits".into());
        }
        let scaled: u64 = fraction.parse::<u64>().map_err(|e| e.to_string())?
            * 10u64.pow(9 - fraction.len() as u32);
        nanos = nanos.checked_add(scaled).ok_or("the time is too large")?;
    }
    Ok(Time(nanos))
}

fn parse_signed_duration(text: &str) -> Result<i64, String> {
    let (negative, rest) = match text.as_bytes().first() {
        Some(b'+') => (false, &text[1..]),
        Some(b'-') => (true, &text[1..]),
        _ => (false, text),
    };
    let d = rehearsal_sim_core::parse_duration(rest).map_err(|e| e.to_string())?;
    let ns = i64::try_from(rehearsal_sim_core::duration_ns(d))
        .map_err(|_| "the offset is too large".to_string())?;
    Ok(if negative { -ns } else { ns })
}

fn parse_ppm(text: &str) -> Result<i64, String> {
    let number = text
        .strip_suffix("ppm")
        .ok_or("the drift needs the unit `ppm`")?;
    let number = number.strip_prefix('+').unwrap_or(number);
    let ppm: i64 = number
        .parse()
        .map_err(|_| format!("`{number}` is not a whole number"))?;
    if ppm <= -1_000_000 || ppm > 1_000_000 {
        return Err(
            "the drift must be above -1000000ppm (a stopped clock) and at most +1000000ppm".into(),
        );
    }
    Ok(ppm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_files_are_read_within_their_cap() {
        let dir = std::env::temp_dir().join(format!("scenario-read-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ok.scenario");
        std::fs::write(&file, "@0 heal\n").unwrap();
        assert_eq!(read_text_capped(&file, 8).unwrap(), "@0 heal\n");
        let err = read_text_capped(&file, 7).unwrap_err();
        assert!(err.contains("has 8 bytes, more than the 7"), "{err}");
        std::fs::write(&file, b"ok\nb\xffd\n").unwrap();
        let err = read_text_capped(&file, 100).unwrap_err();
        assert!(
            err.contains("not UTF-8") && err.contains("line 2, byte 4"),
            "{err}"
        );
        std::fs::write(&file, "a\0").unwrap();
        assert!(read_text_capped(&file, 100)
            .unwrap_err()
            .contains("NUL byte at line 1, byte 1"));
        assert!(read_text_capped(&dir, 100)
            .unwrap_err()
            .contains("directory"));
        std::fs::remove_dir_all(&dir).unwrap();
        // Devices have no size: the cap holds while reading.
        if std::path::Path::new("/dev/zero").exists() {
            let err = read_text_file("/dev/zero".as_ref()).unwrap_err();
            assert!(err.contains("NUL byte at line 1, byte 0"), "{err}");
            let err = read_text_file("/dev/urandom".as_ref()).unwrap_err();
            assert!(err.contains("NUL") || err.contains("not UTF-8"), "{err}");
        }
        // A text file that reports no size (as /proc files do) is stopped by the cap too.
        if std::path::Path::new("/proc/self/status").exists() {
            let err = read_text_capped("/proc/self/status".as_ref(), 10).unwrap_err();
            assert!(err.contains("more than the 10 bytes"), "{err}");
        }
    }

    #[test]
    fn times_parse_in_each_form() {
        assert_eq!(parse_time("90").unwrap(), Time::from_secs(90));
        assert_eq!(parse_time("1:30").unwrap(), Time::from_secs(90));
        assert_eq!(parse_time("1:00:05").unwrap(), Time::from_secs(3605));
        assert_eq!(parse_time("2.5").unwrap(), Time::from_millis(2500));
        assert!(parse_time("1:60").is_err());
        assert!(parse_time("1:2:3:4").is_err());
        assert!(parse_time("").is_err());
        assert!(parse_time("1.").is_err());
        // A duration with its unit, as --duration takes it.
        assert_eq!(parse_time("250ms").unwrap(), Time::from_millis(250));
        assert_eq!(parse_time("0.02s").unwrap(), Time::from_millis(20));
        assert_eq!(parse_time("2m").unwrap(), Time::from_secs(120));
        assert!(parse_time("5parsecs").is_err());
    }

    #[test]
    fn misspelt_commands_get_a_suggestion() {
        assert_eq!(suggestion("partiton"), Some("partition"));
        assert_eq!(suggestion("crahs"), Some("crash"));
        assert_eq!(suggestion("xyzzy"), None);
    }
}
