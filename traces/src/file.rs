//! Writing and reading trace files.

use rehearsal_sim_core::TraceEvent;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;

pub const FORMAT_NAME: &str = "rehearsal-trace";
pub const FORMAT_VERSION: u32 = 1;

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
    /// blake3 of every byte of the file before this line.
    pub checksum: String,
}

#[derive(Serialize, Deserialize)]
struct FooterLine {
    end: Footer,
}

/// A trace read back from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceFile {
    pub header: Header,
    pub events: Vec<TraceEvent>,
    pub footer: Footer,
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
    #[error("trace `{path}` is corrupt: the checksum in its footer (line {line}) does not match the lines before it")]
    Checksum { path: String, line: usize },
}

/// Writes a whole trace. `footer.checksum` is computed here; whatever it held is ignored.
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
    footer.checksum = checksum.finalize().to_hex().to_string();
    serde_json::to_writer(&mut line, &FooterLine { end: footer })?;
    line.push(b'\n');
    out.write_all(&line)?;
    out.flush()
}

/// Reads and checks a trace file.
pub fn read_trace(path: &Path) -> Result<TraceFile, TraceError> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|source| TraceError::Io {
        path: name.clone(),
        source,
    })?;
    read_trace_from(std::io::BufReader::new(file), &name)
}

/// Reads and checks a trace from any reader; `name` is used in error messages.
pub fn read_trace_from(mut input: impl BufRead, name: &str) -> Result<TraceFile, TraceError> {
    let path = name.to_string();
    let bad = |line: usize, problem: String| TraceError::Line {
        path: path.clone(),
        line,
        problem,
    };
    let mut checksum = blake3::Hasher::new();
    let mut header: Option<Header> = None;
    let mut events = Vec::new();
    let mut buf = Vec::new();
    let mut line_no = 0;
    loop {
        buf.clear();
        let read = input
            .read_until(b'\n', &mut buf)
            .map_err(|source| TraceError::Io {
                path: path.clone(),
                source,
            })?;
        if read == 0 {
            return Err(if line_no == 0 {
                TraceError::Empty { path }
            } else {
                TraceError::Truncated {
                    path,
                    lines: line_no,
                }
            });
        }
        line_no += 1;
        if buf.last() != Some(&b'\n') {
            // A last line without its newline was cut off mid-write.
            return Err(TraceError::Truncated {
                path,
                lines: line_no - 1,
            });
        }
        let text = std::str::from_utf8(&buf).map_err(|_| bad(line_no, "not valid UTF-8".into()))?;
        let Some(head) = &header else {
            let parsed: Header = serde_json::from_str(text).map_err(|e| {
                bad(
                    line_no,
                    format!("expected the trace header (format, version, seed, config): {e}"),
                )
            })?;
            if parsed.format != FORMAT_NAME {
                return Err(bad(
                    line_no,
                    format!("format is `{}`, expected `{FORMAT_NAME}`", parsed.format),
                ));
            }
            if parsed.version != FORMAT_VERSION {
                return Err(bad(
                    line_no,
                    format!("format version {} is not supported (this build reads version {FORMAT_VERSION})", parsed.version),
                ));
            }
            checksum.update(&buf);
            header = Some(parsed);
            continue;
        };
        if text.starts_with("{\"end\"") {
            let footer: FooterLine = serde_json::from_str(text)
                .map_err(|e| bad(line_no, format!("malformed `end` footer: {e}")))?;
            if footer.end.checksum != checksum.finalize().to_hex().as_str() {
                return Err(TraceError::Checksum {
                    path,
                    line: line_no,
                });
            }
            let mut rest = Vec::new();
            input
                .read_to_end(&mut rest)
                .map_err(|source| TraceError::Io {
                    path: path.clone(),
                    source,
                })?;
            if rest.iter().any(|b| !b.is_ascii_whitespace()) {
                return Err(bad(
                    line_no + 1,
                    "unexpected data after the `end` footer".into(),
                ));
            }
            if footer.end.events != events.len() as u64 {
                return Err(bad(
                    line_no,
                    format!(
                        "footer counts {} events but the file holds {}",
                        footer.end.events,
                        events.len()
                    ),
                ));
            }
            let header = head.clone();
            return Ok(TraceFile {
                header,
                events,
                footer: footer.end,
            });
        }
        let event: TraceEvent = serde_json::from_str(text)
            .map_err(|e| bad(line_no, format!("malformed event: {e}")))?;
        if event.seq != events.len() as u64 {
            return Err(bad(
                line_no,
                format!(
                    "event seq {} out of order, expected {}",
                    event.seq,
                    events.len()
                ),
            ));
        }
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
    use rehearsal_sim_core::{EventKind, NodeId};

    fn sample() -> Vec<u8> {
        let header = Header::new(7, serde_json::json!({"protocol": "test"}));
        let events = vec![
            TraceEvent {
                seq: 0,
                t: 0,
                node: NodeId(0),
                kind: EventKind::Start,
            },
            TraceEvent {
                seq: 1,
                t: 5,
                node: NodeId(0),
                kind: EventKind::Annotate {
                    label: "hello".into(),
                },
            },
        ];
        let footer = Footer {
            outcome: "ok".into(),
            violations: vec![],
            events: 2,
            sim_time_ns: 5,
            digest: "ab".into(),
            checksum: String::new(),
        };
        let mut out = Vec::new();
        write_trace(&mut out, &header, &events, &footer).unwrap();
        out
    }

    fn read(bytes: &[u8]) -> Result<TraceFile, TraceError> {
        read_trace_from(bytes, "t.jsonl")
    }

    #[test]
    fn written_trace_reads_back() {
        let file = read(&sample()).unwrap();
        assert_eq!(file.header.seed, 7);
        assert_eq!(file.events.len(), 2);
        assert_eq!(file.footer.digest, "ab");
    }

    #[test]
    fn truncated_trace_is_refused_with_where_it_stops() {
        let bytes = sample();
        for cut in [1, bytes.len() / 2, bytes.len() - 1] {
            let err = read(&bytes[..cut]).unwrap_err().to_string();
            assert!(err.contains("truncated"), "cut at {cut}: {err}");
        }
        assert!(read(b"").unwrap_err().to_string().contains("empty"));
    }

    #[test]
    fn edited_trace_fails_its_checksum() {
        let text = String::from_utf8(sample())
            .unwrap()
            .replace("hello", "hallo");
        let err = read(text.as_bytes()).unwrap_err().to_string();
        assert!(err.contains("corrupt") && err.contains("line 4"), "{err}");
    }

    #[test]
    fn garbage_line_names_its_line_number() {
        let mut text = String::from_utf8(sample()).unwrap();
        text.insert_str(text.find('\n').unwrap() + 1, "{not json\n");
        let err = read(text.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("line 2") && err.contains("malformed event"),
            "{err}"
        );
        let err = read(b"hello\n").unwrap_err().to_string();
        assert!(err.contains("line 1") && err.contains("header"), "{err}");
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
