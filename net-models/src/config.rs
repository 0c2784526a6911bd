//! The network configuration: what every link does to messages, read from TOML files or
//! built in code, and serialized into trace headers so a run replays from its trace alone.
//!
//! A TOML file, every key optional (defaults shown where they exist):
//!
//! ```toml
//! latency = "normal:50ms,10ms"    # one-way; constant, uniform, normal or lognormal
//! loss = 0.01                     # probability that a message is lost
//! duplicate = 0.001               # probability that it arrives twice
//! reorder = 0.05                  # probability of an extra delay drawn from reorder_delay
//! reorder_delay = "uniform:0s..20ms"
//! corrupt = 0.0001                # probability that its encoded bytes are damaged
//! bandwidth = "100Mbit/s"         # per link; none means unlimited
//! mode = "fifo"                   # "unordered" (UDP-like, default) or "fifo" (TCP-like)
//! on_cut = "hold"                 # messages in flight across a new cut: "drop" or "hold"
//! # matrix_csv = "geo.csv"        # per-link one-way latencies (ms), instead of `latency`
//! # jitter = "normal:0s,2ms"      # added to every matrix entry
//!
//! [[links]]                       # overrides, applied in order, later ones win
//! from = [0]                      # omitted: every node
//! to = [3, 4]
//! symmetric = true                # also 3,4 -> 0
//! latency = "constant:80ms"
//! loss = 0.1
//! ```

#![warn(missing_docs)]

use crate::bandwidth::Bandwidth;
use crate::matrix::LatencyMatrix;
use rehearsal_sim_core::{Latency, NodeId};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// Whether a link keeps the order of its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkMode {
    /// UDP-like: every message draws its own delay, so later messages may overtake earlier
    /// ones.
    #[default]
    Unordered,
    /// TCP-like: a message never arrives before one sent earlier on the same link (it waits
    /// behind it, as TCP's head-of-line blocking does). FIFO orders what arrives; it does not
    /// retransmit what is lost.
    Fifo,
}

/// What happens to a message that is in flight when a cut separates its sender from its
/// receiver (a message *sent* across an existing cut is always dropped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InFlight {
    /// Lost, with reason `partition`.
    #[default]
    Drop,
    /// Held by the network and delivered when the link heals (as TCP would retransmit):
    /// both messages in flight when the cut appears and those sent across it.
    Hold,
}

/// Settings for a set of links that differ from the network-wide ones: every link from a
/// node of `from` to a node of `to` (and back, if `symmetric`). Overrides apply in order;
/// a later one wins for the settings it names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkOverride {
    /// Senders; `None` means every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Vec<NodeId>>,
    /// Receivers; `None` means every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<NodeId>>,
    /// Also applies to the reverse links, `to -> from`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub symmetric: bool,
    /// Latency of these links (replaces a matrix entry and its jitter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Latency>,
    /// Loss probability of these links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Duplication probability of these links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duplicate: Option<f64>,
    /// Probability of an extra (reordering) delay on these links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reorder: Option<f64>,
    /// Corruption probability of these links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub corrupt: Option<f64>,
    /// Bandwidth of each of these links.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
}

impl LinkOverride {
    /// Whether this override concerns the directed link `from -> to`.
    pub fn applies_to(&self, from: NodeId, to: NodeId) -> bool {
        let has = |set: &Option<Vec<NodeId>>, node| set.as_ref().is_none_or(|s| s.contains(&node));
        (has(&self.from, from) && has(&self.to, to))
            || (self.symmetric && has(&self.from, to) && has(&self.to, from))
    }

    fn sets_nothing(&self) -> bool {
        self.latency.is_none()
            && self.loss.is_none()
            && self.duplicate.is_none()
            && self.reorder.is_none()
            && self.corrupt.is_none()
            && self.bandwidth.is_none()
    }
}

/// What the network does to messages: composable per link.
///
/// Every link starts from the network-wide settings; a [`LatencyMatrix`] (plus `jitter`)
/// replaces `latency` per link; then each of `links` overrides what it names.
///
/// ```
/// use rehearsal_net_models::{LinkMode, NetConfig};
/// let config = NetConfig::from_toml_str(
///     "latency = \"normal:50ms,10ms\"\nloss = 0.01\nmode = \"fifo\"\n",
///     "net.toml",
///     std::path::Path::new("."),
/// )
/// .unwrap();
/// assert_eq!(config.mode, LinkMode::Fifo);
/// assert_eq!(config.to_string(), "latency normal:50ms,10ms, loss 0.01, fifo, cut: drop");
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetConfig {
    /// One-way latency of every link without a matrix entry or override.
    pub latency: Latency,
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message arrives twice (the copy draws its own latency).
    pub duplicate: f64,
    /// Probability that a message is delayed by an extra draw of `reorder_delay`, which lets
    /// later messages overtake it on an unordered link.
    pub reorder: f64,
    /// The extra delay of a reordered message.
    pub reorder_delay: Latency,
    /// Probability that a message's encoded bytes are damaged (the receiver decodes what
    /// arrives; undecodable messages are dropped by the simulator).
    pub corrupt: f64,
    /// Capacity of every link; `None` is unlimited (no serialization delay, no queueing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth: Option<Bandwidth>,
    /// Whether links keep message order.
    pub mode: LinkMode,
    /// What becomes of messages in flight across a new cut.
    pub on_cut: InFlight,
    /// Per-link one-way latencies, replacing `latency` (in TOML: `matrix_csv = "file.csv"`,
    /// or inline rows of milliseconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matrix: Option<LatencyMatrix>,
    /// Added to every matrix entry, drawn per message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<Latency>,
    /// Per-link overrides, applied in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkOverride>,
    /// The text this configuration was read from, so that checks made later, against the
    /// run's size ([`NetConfig::validate`]), still name the file, line and column. Not part
    /// of the configuration: never serialized, and ignored by `==`.
    #[serde(skip)]
    pub source: SourceText,
}

/// The origin (file name) and text a [`NetConfig`] was read from, if it was read.
#[derive(Debug, Clone, Default)]
pub struct SourceText(Option<std::sync::Arc<(String, String)>>);

impl SourceText {
    /// The text `text` of the file `origin`.
    pub fn new(origin: &str, text: &str) -> SourceText {
        SourceText(Some(std::sync::Arc::new((
            origin.to_string(),
            text.to_string(),
        ))))
    }
}

impl PartialEq for SourceText {
    /// Where a configuration came from is not what it says: two equal settings are equal.
    fn eq(&self, _: &SourceText) -> bool {
        true
    }
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            latency: Latency::constant_ms(10),
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Latency::Uniform {
                lo_ns: 0,
                hi_ns: 20_000_000,
            },
            corrupt: 0.0,
            bandwidth: None,
            mode: LinkMode::Unordered,
            on_cut: InFlight::Drop,
            matrix: None,
            jitter: None,
            links: Vec::new(),
            source: SourceText::default(),
        }
    }
}

/// Error from loading or checking a network configuration (or a latency matrix file).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetConfigError {
    /// A file could not be read.
    #[error("{file}: cannot read: {problem}")]
    Read {
        /// The file as named.
        file: String,
        /// What the operating system said.
        problem: String,
    },
    /// Something at a known place in a file is wrong.
    #[error("{file}:{line}:{column}: {message}")]
    At {
        /// The file (or origin name) the text came from.
        file: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong, and what was expected.
        message: String,
    },
    /// The configuration does not fit the run (e.g. a matrix of the wrong size).
    #[error("network configuration: {message}")]
    Invalid {
        /// What is wrong, and what was expected.
        message: String,
    },
}

/// One step of the path to a value in the configuration: a key or an array index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Key(&'static str),
    Index(usize),
}

/// A problem with one value of a configuration, and where that value is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Problem {
    path: Vec<Step>,
    /// Names the offending key itself; the path locates it.
    message: String,
}

impl Problem {
    fn new(path: Vec<Step>, message: String) -> Problem {
        Problem { path, message }
    }

    /// The message, prefixed with the table it is about when that is not the top level.
    fn describe(&self) -> String {
        let table = match self.path.last() {
            Some(Step::Key(_)) => &self.path[..self.path.len() - 1],
            _ => &self.path[..],
        };
        if table.is_empty() {
            self.message.clone()
        } else {
            format!("{}: {}", path_text(table), self.message)
        }
    }
}

fn path_text(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Step::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

/// The keys of the top-level table of a TOML file (`matrix_csv` is resolved on loading).
const FILE_KEYS: [&str; 13] = [
    "latency",
    "loss",
    "duplicate",
    "reorder",
    "reorder_delay",
    "corrupt",
    "bandwidth",
    "mode",
    "on_cut",
    "matrix",
    "matrix_csv",
    "jitter",
    "links",
];

/// The keys of one `[[links]]` table.
const LINK_KEYS: [&str; 9] = [
    "from",
    "to",
    "symmetric",
    "latency",
    "loss",
    "duplicate",
    "reorder",
    "corrupt",
    "bandwidth",
];

fn check_probability(path: Vec<Step>, name: &str, p: f64) -> Result<(), Problem> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(Problem::new(
            path,
            format!("{name} must be a probability within 0..=1, got {p}"),
        ))
    }
}

impl NetConfig {
    /// Checks the configuration for a run of `nodes` nodes: probabilities within 0..=1, a
    /// matrix of `nodes × nodes`, jitter only with a matrix, and overrides that name existing
    /// nodes and change something.
    /// A configuration read from a file names the file, line and column of the value at
    /// fault (for a matrix read from `matrix_csv`, that key).
    pub fn validate(&self, nodes: usize) -> Result<(), NetConfigError> {
        self.check(Some(nodes)).map_err(|p| self.locate_problem(p))
    }

    /// The error for `problem`, at its place in the source text when there is one that
    /// holds the value (a value set afterwards, by a flag, has no place in the file).
    fn locate_problem(&self, problem: Problem) -> NetConfigError {
        let invalid = |problem: &Problem| NetConfigError::Invalid {
            message: problem.describe(),
        };
        let Some(source) = &self.source.0 else {
            return invalid(&problem);
        };
        let (origin, text) = &**source;
        let Ok(root) = DeTable::parse(text) else {
            return invalid(&problem);
        };
        let table = root.get_ref();
        let mut path = problem.path.clone();
        if path.first() == Some(&Step::Key("matrix")) && table.get("matrix").is_none() {
            path = vec![Step::Key("matrix_csv")];
        }
        let Some(Step::Key(first)) = path.first() else {
            return invalid(&problem);
        };
        if table.get(*first).is_none() {
            return invalid(&problem);
        }
        let span = locate(table, &path).unwrap_or(0..0);
        let (line, column) = line_column(text, span.start);
        NetConfigError::At {
            file: origin.clone(),
            line,
            column,
            message: problem.describe(),
        }
    }

    /// The first problem; with `nodes`, also the checks that depend on the run's size.
    fn check(&self, nodes: Option<usize>) -> Result<(), Problem> {
        let top = |key| vec![Step::Key(key)];
        check_probability(top("loss"), "loss", self.loss)?;
        check_probability(top("duplicate"), "duplicate", self.duplicate)?;
        check_probability(top("reorder"), "reorder", self.reorder)?;
        check_probability(top("corrupt"), "corrupt", self.corrupt)?;
        if self.jitter.is_some() && self.matrix.is_none() {
            return Err(Problem::new(
                top("jitter"),
                "jitter is added to the entries of a latency matrix, and there is none: set matrix_csv, or give latency a distribution".into(),
            ));
        }
        if let (Some(matrix), Some(nodes)) = (&self.matrix, nodes) {
            if matrix.nodes() != nodes {
                let m = matrix.nodes();
                return Err(Problem::new(
                    top("matrix"),
                    format!("the latency matrix is {m}x{m} but the run has {nodes} nodes: expected one row and one column per node"),
                ));
            }
        }
        for (i, link) in self.links.iter().enumerate() {
            let at = |key| vec![Step::Key("links"), Step::Index(i), Step::Key(key)];
            let probabilities = [
                ("loss", link.loss),
                ("duplicate", link.duplicate),
                ("reorder", link.reorder),
                ("corrupt", link.corrupt),
            ];
            for (name, p) in probabilities {
                if let Some(p) = p {
                    check_probability(at(name), name, p)?;
                }
            }
            for (name, set) in [("from", &link.from), ("to", &link.to)] {
                let Some(set) = set else { continue };
                if set.is_empty() {
                    return Err(Problem::new(
                        at(name),
                        format!("{name} lists no node: omit it to mean every node"),
                    ));
                }
                if let Some(nodes) = nodes {
                    if let Some(bad) = set.iter().find(|n| n.index() >= nodes) {
                        return Err(Problem::new(
                            at(name),
                            format!(
                                "{name} names node {}, but the run has nodes 0..{nodes}",
                                bad.0
                            ),
                        ));
                    }
                }
            }
            if link.sets_nothing() {
                return Err(Problem::new(
                    vec![Step::Key("links"), Step::Index(i)],
                    "changes nothing: set latency, loss, duplicate, reorder, corrupt or bandwidth"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Reads a TOML file; a `matrix_csv` path in it is relative to the file's directory.
    pub fn from_toml_file(path: &Path) -> Result<NetConfig, NetConfigError> {
        let file = path.display().to_string();
        let text =
            crate::scenario::read_text_file(path).map_err(|problem| NetConfigError::Read {
                file: file.clone(),
                problem,
            })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        NetConfig::from_toml_str(&text, &file, base_dir)
    }

    /// Parses TOML text that came from `origin` (named in errors); a `matrix_csv` path is
    /// resolved against `base_dir` and replaced by the matrix it holds. Checks everything
    /// that does not depend on the run's size (see [`NetConfig::validate`] for the rest).
    /// Errors name `origin:line:column` and say what was expected.
    pub fn from_toml_str(
        text: &str,
        origin: &str,
        base_dir: &Path,
    ) -> Result<NetConfig, NetConfigError> {
        let at = |span: Range<usize>, message: String| {
            let (line, column) = line_column(text, span.start);
            NetConfigError::At {
                file: origin.to_string(),
                line,
                column,
                message,
            }
        };
        let mut root = DeTable::parse(text).map_err(|e| {
            at(
                e.span().unwrap_or(0..0),
                e.message().trim_end().replace('\n', "; "),
            )
        })?;
        check_keys(root.get_ref(), &FILE_KEYS, "").map_err(|(span, message)| at(span, message))?;
        if let Some(links) = root.get_ref().get("links") {
            if let DeValue::Array(tables) = links.get_ref() {
                for (i, table) in tables.iter().enumerate() {
                    if let DeValue::Table(table) = table.get_ref() {
                        check_keys(table, &LINK_KEYS, &format!("links[{i}]: "))
                            .map_err(|(span, message)| at(span, message))?;
                    }
                }
            }
        }
        let csv = root.get_mut().remove("matrix_csv");
        let document = root.clone();
        let mut config =
            NetConfig::deserialize(toml::de::Deserializer::from(root)).map_err(|e| {
                let span = e.span().unwrap_or(0..0);
                let message = e.message().trim_end().to_string();
                let Some(mut path) = value_path(document.get_ref(), &span) else {
                    return at(span, message);
                };
                // `bandwidth `x` has...` names its key already: then name only the table.
                if let Some(Step::Key(key)) = path.last() {
                    if message.starts_with(key) {
                        path.pop();
                    }
                }
                if path.is_empty() {
                    at(span, message)
                } else {
                    at(span, format!("{}: {message}", path_text(&path)))
                }
            })?;
        let table = document.get_ref();
        if let Some(csv) = csv {
            let csv_span = csv.span();
            let DeValue::String(name) = csv.get_ref() else {
                return Err(at(
                    csv_span,
                    "matrix_csv must be a string: the path of a CSV file of latencies in milliseconds, relative to this file".into(),
                ));
            };
            if config.matrix.is_some() {
                return Err(at(
                    csv_span,
                    "matrix and matrix_csv are both set: give the matrix one way".into(),
                ));
            }
            let path = base_dir.join(name.as_ref());
            config.matrix = Some(LatencyMatrix::from_csv_file(&path).map_err(|e| match e {
                NetConfigError::Read { file, problem } => at(
                    csv_span.clone(),
                    format!("cannot read matrix_csv `{file}`: {problem}"),
                ),
                other => other,
            })?);
        }
        // The default latency is allowed beside a matrix: a serialized configuration (a
        // trace header) always has a latency, and must read back.
        if config.matrix.is_some() && config.latency != NetConfig::default().latency {
            if let Some(latency) = table.get("latency") {
                return Err(at(
                    latency.span(),
                    "latency and a latency matrix are both set: the matrix gives every link's latency (put variation in jitter)".into(),
                ));
            }
        }
        config.check(None).map_err(|problem| {
            let span = locate(table, &problem.path).unwrap_or(0..0);
            at(span, problem.describe())
        })?;
        config.source = SourceText::new(origin, text);
        Ok(config)
    }
}

/// Refuses keys outside `known`, naming the closest known one when there is one.
fn check_keys(
    table: &DeTable<'_>,
    known: &[&str],
    prefix: &str,
) -> Result<(), (Range<usize>, String)> {
    for (key, _) in table.iter() {
        let key_text: &str = key.get_ref();
        if known.contains(&key_text) {
            continue;
        }
        let hint = known
            .iter()
            .map(|k| (edit_distance(k, key_text), *k))
            .filter(|&(d, _)| d <= 2)
            .min()
            .map(|(_, k)| format!(" (did you mean `{k}`?)"))
            .unwrap_or_default();
        return Err((
            key.span(),
            format!(
                "{prefix}unknown key `{key_text}`{hint}: expected one of {}",
                known.join(", ")
            ),
        ));
    }
    Ok(())
}

/// Levenshtein distance, for "did you mean" hints on short keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, &cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The span of the value at `path`, or of the deepest table on the way that exists.
fn locate(table: &DeTable<'_>, path: &[Step]) -> Option<Range<usize>> {
    let (Step::Key(first), rest) = path.split_first()? else {
        return None;
    };
    let mut value: &Spanned<DeValue<'_>> = table.get(*first)?;
    for step in rest {
        let next = match (step, value.get_ref()) {
            (Step::Key(key), DeValue::Table(t)) => t.get(*key),
            (Step::Index(i), DeValue::Array(a)) => a.get(*i),
            _ => None,
        };
        match next {
            Some(next) => value = next,
            None => break,
        }
    }
    Some(value.span())
}

/// The path (`links[1].loss`) of the value whose span is `span`, for deserialization errors,
/// which know where but not which key. Only keys this crate knows are named.
fn value_path(table: &DeTable<'_>, span: &Range<usize>) -> Option<Vec<Step>> {
    fn known(key: &str) -> Option<&'static str> {
        FILE_KEYS
            .iter()
            .chain(&LINK_KEYS)
            .copied()
            .find(|k| *k == key)
    }
    fn search(value: &Spanned<DeValue<'_>>, span: &Range<usize>, path: &mut Vec<Step>) -> bool {
        if value.span() == *span {
            return true;
        }
        // No pruning by span: a table of an array of tables spans only its header.
        match value.get_ref() {
            DeValue::Table(t) => search_table(t, span, path),
            DeValue::Array(a) => a.iter().enumerate().any(|(i, child)| {
                path.push(Step::Index(i));
                search(child, span, path) || {
                    path.pop();
                    false
                }
            }),
            _ => false,
        }
    }
    fn search_table(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<Step>) -> bool {
        table.iter().any(|(key, child)| {
            let Some(key) = known(key.get_ref()) else {
                return false;
            };
            path.push(Step::Key(key));
            search(child, span, path) || {
                path.pop();
                false
            }
        })
    }
    let mut path = Vec::new();
    search_table(table, span, &mut path).then_some(path)
}

/// 1-based line and character column of byte offset `at` in `text`.
pub fn line_column(text: &str, at: usize) -> (usize, usize) {
    let mut at = at.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    let before = &text[..at];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    (line, before[line_start..].chars().count() + 1)
}

impl fmt::Display for NetConfig {
    /// A one-line summary for the command line: latency, then only the settings that are on.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.matrix, &self.jitter) {
            (Some(m), Some(jitter)) => {
                write!(f, "latency matrix {0}x{0} + jitter {jitter}", m.nodes())?
            }
            (Some(m), None) => write!(f, "latency matrix {0}x{0}", m.nodes())?,
            (None, _) => write!(f, "latency {}", self.latency)?,
        }
        if self.loss > 0.0 {
            write!(f, ", loss {}", self.loss)?;
        }
        if self.duplicate > 0.0 {
            write!(f, ", duplicate {}", self.duplicate)?;
        }
        if self.reorder > 0.0 {
            write!(f, ", reorder {} by {}", self.reorder, self.reorder_delay)?;
        }
        if self.corrupt > 0.0 {
            write!(f, ", corrupt {}", self.corrupt)?;
        }
        if let Some(bandwidth) = self.bandwidth {
            write!(f, ", bandwidth {bandwidth}")?;
        }
        let mode = match self.mode {
            LinkMode::Unordered => "unordered",
            LinkMode::Fifo => "fifo",
        };
        let on_cut = match self.on_cut {
            InFlight::Drop => "drop",
            InFlight::Hold => "hold",
        };
        write!(f, ", {mode}, cut: {on_cut}")?;
        match self.links.len() {
            0 => Ok(()),
            1 => write!(f, ", 1 link override"),
            n => write!(f, ", {n} link overrides"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(line_column(text, text.find('2').unwrap()), (2, 6));
        assert_eq!(line_column(text, 999), (3, 1));
    }

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("loss", "lsos"), 2);
        assert_eq!(edit_distance("loss", "los"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn the_key_lists_match_the_serialized_fields() {
        // Every field set, so that serialization skips none of them.
        let link = LinkOverride {
            from: Some(vec![NodeId(0)]),
            to: Some(vec![NodeId(1)]),
            symmetric: true,
            latency: Some(Latency::constant_ms(1)),
            loss: Some(0.1),
            duplicate: Some(0.1),
            reorder: Some(0.1),
            corrupt: Some(0.1),
            bandwidth: "1Mbit/s".parse().ok(),
        };
        let config = NetConfig {
            bandwidth: "1Mbit/s".parse().ok(),
            matrix: LatencyMatrix::from_ns(1, vec![0]),
            jitter: Some(Latency::constant_ms(1)),
            links: vec![link],
            ..NetConfig::default()
        };
        let json = toml::Table::try_from(&config).unwrap();
        let mut keys: Vec<&str> = json.keys().map(String::as_str).collect();
        keys.push("matrix_csv");
        keys.sort_unstable();
        let mut expected = FILE_KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let link = json["links"].as_array().unwrap()[0].as_table().unwrap();
        let mut keys: Vec<&str> = link.keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = LINK_KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
    }
}
