//! Trace events as the simulator records them, and the digest over the event stream.
//!
//! The digest is computed over a compact binary encoding of every event (including the
//! bincode bytes of each message and output), whether or not the events are kept, so a
//! run's identity is cheap to check. Kept events carry readable summaries instead.

use crate::actor::{NodeId, TimerId};
use crate::time::Time;
use serde::{Deserialize, Serialize};

/// One event of a run, as written to a trace file (one JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub seq: u64,
    /// Virtual time in nanoseconds.
    pub t: u64,
    pub node: NodeId,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. Messages are named by `id`, the sequence number of their `send` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    Start,
    Send {
        to: NodeId,
        id: u64,
        bytes: u64,
        msg: String,
    },
    Drop {
        to: NodeId,
        id: u64,
        reason: String,
    },
    Deliver {
        from: NodeId,
        id: u64,
    },
    Timer {
        timer_id: TimerId,
        timer: String,
    },
    Output {
        value: serde_json::Value,
    },
    Annotate {
        label: String,
    },
    Violation {
        invariant: String,
        detail: String,
    },
    /// A fault or scenario command took effect.
    Fault {
        fault: String,
    },
    /// Message `id` was damaged in flight and decoded as `msg`.
    Corrupt {
        to: NodeId,
        id: u64,
        msg: String,
    },
    /// The node entered round (view) `round` ([`crate::Context::enter_round`]).
    Round {
        round: u64,
    },
}

impl EventKind {
    /// The `kind` tag as written in trace files.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Start => "start",
            EventKind::Send { .. } => "send",
            EventKind::Drop { .. } => "drop",
            EventKind::Deliver { .. } => "deliver",
            EventKind::Timer { .. } => "timer",
            EventKind::Output { .. } => "output",
            EventKind::Annotate { .. } => "annotate",
            EventKind::Violation { .. } => "violation",
            EventKind::Fault { .. } => "fault",
            EventKind::Corrupt { .. } => "corrupt",
            EventKind::Round { .. } => "round",
        }
    }
}

/// Longest message summary kept in a trace; longer ones are cut with `…`.
pub const SUMMARY_CHARS_MAX: usize = 160;

/// Shortens a Debug rendering for a trace line.
pub fn summarize(debug: String) -> String {
    if debug.len() <= SUMMARY_CHARS_MAX {
        return debug;
    }
    let mut cut = SUMMARY_CHARS_MAX;
    while !debug.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}…", &debug[..cut])
}

/// The digest of a run's event stream, as lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(pub String);

impl std::fmt::Display for Digest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

// Digest record tags; part of the digest format, so never renumber them.
pub(crate) const TAG_START: u8 = 1;
pub(crate) const TAG_SEND: u8 = 2;
pub(crate) const TAG_DROP: u8 = 3;
pub(crate) const TAG_DELIVER: u8 = 4;
pub(crate) const TAG_TIMER: u8 = 5;
pub(crate) const TAG_OUTPUT: u8 = 6;
pub(crate) const TAG_ANNOTATE: u8 = 7;
pub(crate) const TAG_VIOLATION: u8 = 8;
pub(crate) const TAG_FAULT: u8 = 9;
pub(crate) const TAG_CORRUPT: u8 = 10;
pub(crate) const TAG_ROUND: u8 = 11;

/// Bytes buffered before they are fed to blake3: large updates use its SIMD paths.
const DIGEST_BUFFER_BYTES: usize = 64 * 1024;

/// Feeds events to the digest and, when asked, keeps them.
pub(crate) struct Recorder {
    hasher: blake3::Hasher,
    buffer: Vec<u8>,
    pub(crate) keep: bool,
    pub(crate) events: Vec<TraceEvent>,
    pub(crate) next_seq: u64,
}

impl Recorder {
    pub(crate) fn new(keep: bool) -> Self {
        Recorder {
            hasher: blake3::Hasher::new(),
            buffer: Vec::with_capacity(DIGEST_BUFFER_BYTES + 1024),
            keep,
            events: Vec::new(),
            next_seq: 0,
        }
    }

    /// Starts the digest record of a new event and returns its sequence number; the caller
    /// appends the kind's fields with [`Recorder::field`] / [`Recorder::bytes`].
    #[inline]
    pub(crate) fn begin(&mut self, tag: u8, time: Time, node: NodeId) -> u64 {
        if self.buffer.len() >= DIGEST_BUFFER_BYTES {
            self.hasher.update(&self.buffer);
            self.buffer.clear();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.buffer.push(tag);
        self.buffer.extend_from_slice(&seq.to_le_bytes());
        self.buffer
            .extend_from_slice(&time.as_nanos().to_le_bytes());
        self.buffer.extend_from_slice(&node.0.to_le_bytes());
        seq
    }

    #[inline]
    pub(crate) fn field(&mut self, value: u64) {
        self.buffer.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends length-prefixed bytes, so adjacent fields cannot run into each other.
    #[inline]
    pub(crate) fn bytes(&mut self, data: &[u8]) {
        self.field(data.len() as u64);
        self.buffer.extend_from_slice(data);
    }

    pub(crate) fn keep_event(&mut self, seq: u64, time: Time, node: NodeId, kind: EventKind) {
        self.events.push(TraceEvent {
            seq,
            t: time.as_nanos(),
            node,
            kind,
        });
    }

    pub(crate) fn finish(&mut self) -> Digest {
        self.hasher.update(&self.buffer);
        self.buffer.clear();
        Digest(self.hasher.finalize().to_hex().to_string())
    }
}
