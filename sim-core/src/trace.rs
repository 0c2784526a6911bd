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

/// The version of the digest format, which this describes. Trace files record a run's
/// digest in their footer, so the trace format's version changes with it.
///
/// The digest is the blake3 hash of one byte stream: a record per event, in the order the
/// events happen. A record is fixed-width fields, little-endian, then any byte strings:
///
/// | kind      | tag | fields after the head                                  |
/// |-----------|-----|--------------------------------------------------------|
/// | start     | 1   | -                                                      |
/// | send      | 2   | to: u32, message: bytes                                |
/// | drop      | 3   | id: u64, reason: bytes                                 |
/// | deliver   | 4   | from: u32, id: u64                                     |
/// | timer     | 5   | timer id: u64                                          |
/// | output    | 6   | value: bytes                                           |
/// | annotate  | 7   | label: bytes                                           |
/// | violation | 8   | invariant: bytes, detail: bytes                        |
/// | fault     | 9   | fault: bytes                                           |
/// | corrupt   | 10  | id: u64, damaged message: bytes                        |
/// | round     | 11  | round: u64                                             |
///
/// Every record starts with the same 13-byte head: tag (u8), node (u32: the sender of a
/// send, drop or corrupt, the receiver of a delivery), virtual time in nanoseconds (u64).
/// `bytes` is a length then the bytes: the length is a u32, or, for 2^32 - 1 bytes and
/// more, the u32 `0xFFFF_FFFF` then a u64. A message is its wire encoding
/// ([`crate::codec`], the bytes the network counts and a real runtime sends), encoded once
/// per send however many recipients share it; an output is the same encoding of the
/// value (for a value that cannot be encoded, the bytes written before the encoder failed;
/// an output's are then empty). An `id` names a message by its send event's sequence
/// number.
///
/// Sequence numbers are not written: a record's tag and lengths say where the next one
/// starts, so an event's number is its place in the stream, and the stream names the
/// whole run (every message's bytes, sender, recipient and times, every timer, output,
/// fault and violation, in order). The stream is hashed in batches of about 64 KiB;
/// blake3 gives the same hash however its input is split, so the digest is a function of
/// the stream alone.
///
/// Version 2 (before this one) covered the same fields but also wrote each record's
/// sequence number, and a send's recipient, a delivery's sender and every length as a
/// u64: digests of the two versions differ.
pub const DIGEST_FORMAT_VERSION: u32 = 3;

/// Bytes of a record's head: tag (u8), node (u32), time (u64).
const HEAD_BYTES: usize = 13;

/// Records are buffered until this many bytes wait, then hashed at once: blake3 hashes
/// a large input over several chunks in parallel (SIMD), many tiny inputs one by one.
const DIGEST_BATCH_BYTES: usize = 64 * 1024;

/// Feeds events to the digest (in the format of [`DIGEST_FORMAT_VERSION`]) and, when
/// asked, keeps them.
pub(crate) struct Recorder {
    hasher: blake3::Hasher,
    buffer: Vec<u8>,
    pub(crate) keep: bool,
    pub(crate) events: Vec<TraceEvent>,
    pub(crate) next_seq: u64,
}

/// A record's head.
#[inline(always)]
fn head(tag: u8, time: Time, node: NodeId) -> [u8; HEAD_BYTES] {
    let mut head = [0; HEAD_BYTES];
    head[0] = tag;
    head[1..5].copy_from_slice(&node.0.to_le_bytes());
    head[5..13].copy_from_slice(&time.as_nanos().to_le_bytes());
    head
}

/// The length of a byte string as the stream writes it, and how many of the 12 bytes that
/// takes: a u32, or from 2^32 - 1 on the u32 `0xFFFF_FFFF` then a u64.
#[inline(always)]
fn length_prefix(len: usize) -> ([u8; 12], usize) {
    let mut prefix = [0xFF; 12];
    match u32::try_from(len) {
        Ok(short) if short < u32::MAX => {
            prefix[..4].copy_from_slice(&short.to_le_bytes());
            (prefix, 4)
        }
        _ => {
            prefix[4..].copy_from_slice(&(len as u64).to_le_bytes());
            (prefix, 12)
        }
    }
}

impl Recorder {
    pub(crate) fn new(keep: bool) -> Self {
        Recorder {
            hasher: blake3::Hasher::new(),
            buffer: Vec::with_capacity(DIGEST_BATCH_BYTES + 1024),
            keep,
            events: Vec::new(),
            next_seq: 0,
        }
    }

    /// Hashes the buffered records once a batch is full, and numbers the next event.
    #[inline(always)]
    fn next(&mut self) -> u64 {
        if self.buffer.len() >= DIGEST_BATCH_BYTES {
            self.flush();
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        seq
    }

    #[cold]
    #[inline(never)]
    fn flush(&mut self) {
        self.hasher.update(&self.buffer);
        self.buffer.clear();
        // A huge value encoded in place grew the buffer: give the memory back.
        if self.buffer.capacity() > 16 * DIGEST_BATCH_BYTES {
            self.buffer.shrink_to(DIGEST_BATCH_BYTES + 1024);
        }
    }

    /// Records an event whose record has no fields after its head (start), or whose
    /// fields the caller appends ([`Recorder::field`], [`Recorder::bytes`]); returns the
    /// event's sequence number.
    #[inline]
    pub(crate) fn begin(&mut self, tag: u8, time: Time, node: NodeId) -> u64 {
        self.fixed::<HEAD_BYTES>(tag, time, node, |_| {})
    }

    /// Records an event whose record is `N` bytes, all fixed: the head, then the fields
    /// `fields` fills in; one write to the batch.
    #[inline(always)]
    fn fixed<const N: usize>(
        &mut self,
        tag: u8,
        time: Time,
        node: NodeId,
        fields: impl FnOnce(&mut [u8]),
    ) -> u64 {
        let seq = self.next();
        let mut record = [0; N];
        record[..HEAD_BYTES].copy_from_slice(&head(tag, time, node));
        fields(&mut record[HEAD_BYTES..]);
        self.buffer.extend_from_slice(&record);
        seq
    }

    /// Records an event with one u64 field (timer, round).
    #[inline]
    pub(crate) fn event_u64(&mut self, tag: u8, time: Time, node: NodeId, value: u64) -> u64 {
        self.fixed::<{ HEAD_BYTES + 8 }>(tag, time, node, |f| {
            f.copy_from_slice(&value.to_le_bytes())
        })
    }

    /// Records the delivery of message `id` from `from` to `to`.
    #[inline]
    pub(crate) fn deliver(&mut self, time: Time, to: NodeId, from: NodeId, id: u64) -> u64 {
        self.fixed::<{ HEAD_BYTES + 12 }>(TAG_DELIVER, time, to, |f| {
            f[..4].copy_from_slice(&from.0.to_le_bytes());
            f[4..].copy_from_slice(&id.to_le_bytes());
        })
    }

    /// Records the send of the message encoded as `message` from `from` to `to`; returns
    /// the message's id.
    #[inline]
    pub(crate) fn send(&mut self, time: Time, from: NodeId, to: NodeId, message: &[u8]) -> u64 {
        let seq = match u32::try_from(message.len()) {
            // The head, the recipient and the length in one write: the usual case.
            Ok(len) if len < u32::MAX => {
                self.fixed::<{ HEAD_BYTES + 8 }>(TAG_SEND, time, from, |f| {
                    f[..4].copy_from_slice(&to.0.to_le_bytes());
                    f[4..].copy_from_slice(&len.to_le_bytes());
                })
            }
            _ => {
                let seq = self.fixed::<{ HEAD_BYTES + 4 }>(TAG_SEND, time, from, |f| {
                    f.copy_from_slice(&to.0.to_le_bytes())
                });
                self.length(message.len());
                seq
            }
        };
        self.payload(message);
        seq
    }

    /// Records an event with one byte string, which `encode` appends to the stream (it
    /// returns whether it could: if not, the string is empty). Writing in place spares
    /// the copy of an encoding made elsewhere.
    #[inline]
    pub(crate) fn event_encoded(
        &mut self,
        tag: u8,
        time: Time,
        node: NodeId,
        encode: impl FnOnce(&mut Vec<u8>) -> bool,
    ) -> u64 {
        // The length is written once the encoding is: zero until then.
        let seq = self.fixed::<{ HEAD_BYTES + 4 }>(tag, time, node, |_| {});
        let start = self.buffer.len();
        if !encode(&mut self.buffer) {
            self.buffer.truncate(start);
        }
        let (prefix, prefix_len) = length_prefix(self.buffer.len() - start);
        if prefix_len == 4 {
            self.buffer[start - 4..start].copy_from_slice(&prefix[..4]);
        } else {
            self.buffer
                .splice(start - 4..start, prefix[..prefix_len].iter().copied());
        }
        seq
    }

    /// Appends a u64 field to the record begun last.
    #[inline]
    pub(crate) fn field(&mut self, value: u64) {
        self.buffer.extend_from_slice(&value.to_le_bytes());
    }

    /// Appends a byte string to the record begun last: its length (a u32, or for 2^32 - 1
    /// and more the u32 `0xFFFF_FFFF` then a u64), then the bytes, so adjacent fields
    /// cannot run into each other.
    #[inline]
    pub(crate) fn bytes(&mut self, data: &[u8]) {
        self.length(data.len());
        self.payload(data);
    }

    /// Appends the length of a byte string.
    #[inline]
    fn length(&mut self, len: usize) {
        let (prefix, prefix_len) = length_prefix(len);
        self.buffer.extend_from_slice(&prefix[..prefix_len]);
    }

    /// Appends bytes to the stream: a small string joins the batch, a large one is hashed
    /// at once after the batch (the stream, and so the digest, is the same).
    #[inline]
    fn payload(&mut self, data: &[u8]) {
        if data.len() <= 4096 {
            self.buffer.extend_from_slice(data);
        } else {
            self.flush();
            self.hasher.update(data);
        }
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
        self.flush();
        Digest(self.hasher.finalize().to_hex().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream of the format's table, written field by field as the table says.
    fn spec_record(tag: u8, node: u32, t: u64, fields: &[&[u8]]) -> Vec<u8> {
        let mut out = vec![tag];
        out.extend_from_slice(&node.to_le_bytes());
        out.extend_from_slice(&t.to_le_bytes());
        for field in fields {
            out.extend_from_slice(field);
        }
        out
    }

    fn spec_bytes(data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_le_bytes().to_vec();
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn the_digest_is_blake3_of_the_documented_stream_however_it_is_batched() {
        // Enough events to fill several batches, with strings short and long (a long one
        // is hashed outside the batch), so batching cannot show in the digest.
        let long = vec![0xA5u8; 10_000];
        let mut recorder = Recorder::new(false);
        let mut stream = Vec::new();
        for i in 0..20_000u64 {
            let t = Time(i * 1_000);
            let node = NodeId((i % 7) as u32);
            let message: &[u8] = if i % 5_000 == 0 { &long } else { &[1, 2, 3] };
            assert_eq!(recorder.send(t, node, NodeId(3), message), 3 * i);
            stream.extend(spec_record(
                TAG_SEND,
                node.0,
                t.as_nanos(),
                &[&3u32.to_le_bytes(), &spec_bytes(message)],
            ));
            recorder.deliver(t, NodeId(3), node, 3 * i);
            stream.extend(spec_record(
                TAG_DELIVER,
                3,
                t.as_nanos(),
                &[&node.0.to_le_bytes(), &(3 * i).to_le_bytes()],
            ));
            recorder.event_u64(TAG_TIMER, t, node, i);
            stream.extend(spec_record(
                TAG_TIMER,
                node.0,
                t.as_nanos(),
                &[&i.to_le_bytes()],
            ));
        }
        recorder.event_encoded(TAG_OUTPUT, Time(8), NodeId(2), |buffer| {
            buffer.extend_from_slice(b"out");
            true
        });
        stream.extend(spec_record(TAG_OUTPUT, 2, 8, &[&spec_bytes(b"out")]));
        // A value that could not be encoded leaves an empty string.
        recorder.event_encoded(TAG_OUTPUT, Time(8), NodeId(2), |buffer| {
            buffer.extend_from_slice(b"half");
            false
        });
        stream.extend(spec_record(TAG_OUTPUT, 2, 8, &[&spec_bytes(b"")]));
        recorder.begin(TAG_DROP, Time(9), NodeId(1));
        recorder.field(42);
        recorder.bytes(b"lost");
        stream.extend(spec_record(
            TAG_DROP,
            1,
            9,
            &[&42u64.to_le_bytes(), &spec_bytes(b"lost")],
        ));
        assert!(stream.len() > 3 * DIGEST_BATCH_BYTES);
        assert_eq!(recorder.next_seq, 60_003);
        assert_eq!(
            recorder.finish().0,
            blake3::hash(&stream).to_hex().to_string()
        );
    }

    #[test]
    fn a_length_of_four_gib_or_more_is_escaped_to_a_u64() {
        let written = |len: usize| {
            let (prefix, prefix_len) = length_prefix(len);
            prefix[..prefix_len].to_vec()
        };
        assert_eq!(written(3), [3, 0, 0, 0]);
        assert_eq!(written(u32::MAX as usize - 1), [0xFE, 0xFF, 0xFF, 0xFF]);
        let escaped = |len: u64| {
            let mut out = vec![0xFF; 4];
            out.extend_from_slice(&len.to_le_bytes());
            out
        };
        assert_eq!(written(u32::MAX as usize), escaped(u64::from(u32::MAX)));
        assert_eq!(written(1 << 40), escaped(1 << 40));
    }
}
