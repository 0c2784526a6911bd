//! The connection a node dials to each peer: a bounded queue of outgoing frames, and the
//! link that carries them (dial, handshake, established; redial with backoff).

use super::socket::{self, Interest, Readiness};
use super::{bump, Shared, TcpConfig};
use crate::wire::{Ack, ConnectionError, Hello, ACK_BYTES, FRAME_HEADER_BYTES, HELLO_BYTES};
use rehearsal_sim_core::NodeId;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

/// A send queue whose buffer grew past this keeps it only while it holds frames.
const SEND_BUFFER_BYTES_KEPT: usize = 1 << 20;

/// Frames waiting to be written to one peer, length prefixes included, in one contiguous
/// buffer so that one `write` takes as many as the socket accepts.
#[derive(Default)]
pub(super) struct SendQueue {
    /// The unwritten bytes are `bytes[start..]`.
    bytes: Vec<u8>,
    start: usize,
    /// Payload sizes of the frames in `bytes[start..]`, oldest first.
    frames: VecDeque<usize>,
    /// Bytes of the oldest frame already written.
    front_written: usize,
}

/// Frames and payload bytes one write completed.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Written {
    /// Bytes written, length prefixes included.
    pub bytes: usize,
    pub frames: u64,
    pub payload_bytes: u64,
    /// The socket took less than everything: wait until it is writable again.
    pub blocked: bool,
}

impl SendQueue {
    pub fn frames(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Appends one frame; the caller has checked its size and the queue's bound.
    pub fn push(&mut self, payload: &[u8]) {
        if self.start > 0 && self.start >= self.bytes.len() / 2 {
            // Keep the buffer from creeping forward: move the unwritten bytes to the front
            // once they are less than half of it (amortised O(1) per byte).
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes
            .extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.bytes.extend_from_slice(payload);
        self.frames.push_back(payload.len());
    }

    /// Writes as much as `stream` takes without blocking.
    pub fn write_to(&mut self, stream: &mut impl Write) -> io::Result<Written> {
        let mut written = Written::default();
        while self.start < self.bytes.len() {
            match stream.write(&self.bytes[self.start..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) => self.advance(count, &mut written),
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    written.blocked = true;
                    break;
                }
                Err(error) => return Err(error),
            }
        }
        if self.frames.is_empty() {
            self.clear();
        }
        Ok(written)
    }

    fn advance(&mut self, count: usize, written: &mut Written) {
        self.start += count;
        written.bytes += count;
        let mut left = count;
        while let Some(&payload) = self.frames.front() {
            let rest = FRAME_HEADER_BYTES + payload - self.front_written;
            if left < rest {
                self.front_written += left;
                return;
            }
            left -= rest;
            self.front_written = 0;
            self.frames.pop_front();
            written.frames += 1;
            written.payload_bytes += payload as u64;
        }
        debug_assert_eq!(left, 0, "wrote past the queued frames");
    }

    /// Drops the frame that was partly written when its connection failed (the next
    /// connection cannot carry its remainder); returns how many frames that was (0 or 1).
    pub fn drop_partial(&mut self) -> u64 {
        if self.front_written == 0 {
            return 0;
        }
        if let Some(payload) = self.frames.pop_front() {
            self.start += FRAME_HEADER_BYTES + payload - self.front_written;
        }
        self.front_written = 0;
        if self.frames.is_empty() {
            self.clear();
        }
        1
    }

    pub fn clear(&mut self) {
        self.bytes.clear();
        self.start = 0;
        self.frames.clear();
        self.front_written = 0;
        if self.bytes.capacity() > SEND_BUFFER_BYTES_KEPT {
            self.bytes.shrink_to(SEND_BUFFER_BYTES_KEPT);
        }
    }
}

/// The state of the connection to one peer.
pub(super) enum Link {
    /// No connection; dial at `retry_at`.
    Idle { retry_at: Instant },
    /// TCP connect in progress.
    Connecting {
        stream: TcpStream,
        deadline: Instant,
    },
    /// Connected; the hello goes out and the acknowledgement comes back.
    Handshaking {
        stream: TcpStream,
        hello: [u8; HELLO_BYTES],
        hello_sent: usize,
        ack: [u8; ACK_BYTES],
        ack_got: usize,
        deadline: Instant,
    },
    /// Carrying frames. `stalled_since` is when a write last found the socket full.
    Established {
        stream: TcpStream,
        stalled_since: Option<Instant>,
    },
}

/// A peer this node sends to.
pub(super) struct Peer {
    pub id: NodeId,
    pub addr: SocketAddr,
    pub link: Link,
    pub queue: SendQueue,
    backoff: Duration,
    failures_in_a_row: u64,
    /// Counts the sockets this peer has dialed, to tell a new one from an old one that
    /// happens to get the same descriptor number.
    socket_generation: u64,
    /// The socket (generation and descriptor) and interest the poller watches for this
    /// peer, if any.
    pub watched: Option<(u64, RawFd, Interest)>,
}

impl Peer {
    pub fn new(id: NodeId, addr: SocketAddr, config: &TcpConfig, now: Instant) -> Self {
        Peer {
            id,
            addr,
            link: Link::Idle { retry_at: now },
            queue: SendQueue::default(),
            backoff: config.reconnect_backoff_min,
            failures_in_a_row: 0,
            socket_generation: 0,
            watched: None,
        }
    }

    /// The socket to watch (generation and descriptor), and what for.
    pub fn interest(&self) -> Option<(u64, RawFd, Interest)> {
        let (stream, read, write) = match &self.link {
            Link::Idle { .. } => return None,
            Link::Connecting { stream, .. } => (stream, false, true),
            Link::Handshaking {
                stream, hello_sent, ..
            } => (stream, true, *hello_sent < HELLO_BYTES),
            // Reading an established link only notices its end: the acceptor never writes
            // after its acknowledgement. Writing waits only when the socket was full:
            // queued frames go out with the next flush.
            Link::Established {
                stream,
                stalled_since,
            } => (stream, true, stalled_since.is_some()),
        };
        Some((
            self.socket_generation,
            stream.as_raw_fd(),
            Interest { read, write },
        ))
    }

    /// The next instant at which [`on_time`](Peer::on_time) has something to do.
    pub fn deadline(&self, config: &TcpConfig) -> Option<Instant> {
        match &self.link {
            Link::Idle { retry_at } => Some(*retry_at),
            Link::Connecting { deadline, .. } | Link::Handshaking { deadline, .. } => {
                Some(*deadline)
            }
            Link::Established { stalled_since, .. } => {
                stalled_since.map(|since| since + config.write_timeout)
            }
        }
    }

    /// Dials when the backoff is over; gives up a dial, handshake or stalled write that
    /// took too long.
    pub fn on_time(&mut self, now: Instant, config: &TcpConfig, shared: &Shared) {
        match &self.link {
            Link::Idle { retry_at } if now >= *retry_at => self.dial(now, config, shared),
            Link::Connecting { deadline, .. } if now >= *deadline => {
                let error = io::Error::new(io::ErrorKind::TimedOut, "connect timed out");
                self.connect_failed(ConnectionError::Io(error), now, config, shared);
            }
            Link::Handshaking { deadline, .. } if now >= *deadline => {
                let error = io::Error::new(io::ErrorKind::TimedOut, "no acknowledgement in time");
                self.connect_failed(ConnectionError::Handshake(error), now, config, shared);
            }
            Link::Established {
                stalled_since: Some(since),
                ..
            } if now >= *since + config.write_timeout => {
                let error = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer took nothing for {:?}", config.write_timeout),
                );
                self.failed(error, now, shared);
            }
            _ => {}
        }
    }

    fn dial(&mut self, now: Instant, config: &TcpConfig, shared: &Shared) {
        self.socket_generation += 1;
        match socket::connect_nonblocking(self.addr) {
            Ok((stream, true)) => self.start_handshake(stream, now, config, shared),
            Ok((stream, false)) => {
                self.link = Link::Connecting {
                    stream,
                    deadline: now + config.connect_timeout,
                };
            }
            Err(error) => self.connect_failed(ConnectionError::Io(error), now, config, shared),
        }
    }

    fn start_handshake(
        &mut self,
        stream: TcpStream,
        now: Instant,
        config: &TcpConfig,
        shared: &Shared,
    ) {
        let _ = stream.set_nodelay(true);
        let hello = Hello {
            from: shared.me,
            to: self.id,
        };
        self.link = Link::Handshaking {
            stream,
            hello: hello.encode(),
            hello_sent: 0,
            ack: [0; ACK_BYTES],
            ack_got: 0,
            deadline: now + config.handshake_timeout,
        };
        let ready = Readiness {
            readable: false,
            writable: true,
        };
        self.on_ready(ready, now, config, shared);
    }

    /// Acts on what the last wait found the socket ready for.
    pub fn on_ready(
        &mut self,
        ready: Readiness,
        now: Instant,
        config: &TcpConfig,
        shared: &Shared,
    ) {
        if !ready.any() {
            return;
        }
        match &mut self.link {
            Link::Idle { .. } => {}
            Link::Connecting { stream, .. } => match socket::connect_outcome(stream) {
                Ok(false) => {}
                Ok(true) => {
                    let Link::Connecting { stream, .. } =
                        std::mem::replace(&mut self.link, Link::Idle { retry_at: now })
                    else {
                        unreachable!("matched above")
                    };
                    self.start_handshake(stream, now, config, shared);
                }
                Err(error) => self.connect_failed(ConnectionError::Io(error), now, config, shared),
            },
            Link::Handshaking {
                stream,
                hello,
                hello_sent,
                ack,
                ack_got,
                ..
            } => match handshake_step(stream, hello, hello_sent, ack, ack_got, self.id) {
                Ok(false) => {}
                Ok(true) => {
                    let Link::Handshaking { stream, .. } =
                        std::mem::replace(&mut self.link, Link::Idle { retry_at: now })
                    else {
                        unreachable!("matched above")
                    };
                    self.established(stream, now, shared);
                }
                Err(error) => self.connect_failed(error, now, config, shared),
            },
            Link::Established { stream, .. } => {
                if ready.readable {
                    if let Err(error) = check_open(stream) {
                        self.failed(error, now, shared);
                        return;
                    }
                }
                if ready.writable {
                    self.write(now, shared);
                }
            }
        }
    }

    fn established(&mut self, stream: TcpStream, now: Instant, shared: &Shared) {
        if self.failures_in_a_row > 0 {
            shared.log(format!(
                "connected to {} at {} after {} failed attempts",
                self.id, self.addr, self.failures_in_a_row
            ));
        }
        self.failures_in_a_row = 0;
        bump(&shared.counters.outbound_connects, 1);
        shared.set_connected(self.id, true);
        self.link = Link::Established {
            stream,
            stalled_since: None,
        };
        self.write(now, shared);
    }

    /// Writes queued frames, as many as the socket takes.
    pub fn write(&mut self, now: Instant, shared: &Shared) {
        let Link::Established {
            stream,
            stalled_since,
        } = &mut self.link
        else {
            return;
        };
        if self.queue.is_empty() {
            *stalled_since = None;
            return;
        }
        match self.queue.write_to(stream) {
            Ok(written) => {
                if written.frames > 0 {
                    bump(&shared.counters.frames_sent, written.frames);
                    bump(&shared.counters.bytes_sent, written.payload_bytes);
                }
                if !written.blocked {
                    *stalled_since = None;
                } else if written.bytes > 0 || stalled_since.is_none() {
                    // Progress restarts the clock of the write timeout.
                    *stalled_since = Some(now);
                }
            }
            Err(error) => self.failed(error, now, shared),
        }
    }

    /// A dial or handshake failed: retry after the backoff, which doubles.
    fn connect_failed(
        &mut self,
        error: ConnectionError,
        now: Instant,
        config: &TcpConfig,
        shared: &Shared,
    ) {
        bump(&shared.counters.outbound_connect_failures, 1);
        if self.failures_in_a_row == 0 {
            shared.log(format!(
                "cannot connect to {} at {}: {error}; retrying with backoff",
                self.id, self.addr
            ));
        }
        self.failures_in_a_row += 1;
        self.link = Link::Idle {
            retry_at: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(config.reconnect_backoff_max);
    }

    /// An established connection failed: redial at once.
    fn failed(&mut self, error: io::Error, now: Instant, shared: &Shared) {
        let frames_lost = self.queue.drop_partial();
        self.link = Link::Idle { retry_at: now };
        shared.set_connected(self.id, false);
        bump(&shared.counters.outbound_failures, 1);
        bump(&shared.counters.frames_lost, frames_lost);
        shared.log(format!(
            "connection to {} at {} failed ({frames_lost} frames lost): {error}; reconnecting",
            self.id, self.addr
        ));
    }

    /// Closes the connection and forgets queued frames (the transport shuts down).
    pub fn close(&mut self, now: Instant) {
        self.link = Link::Idle { retry_at: now };
        self.queue.clear();
    }
}

/// Sends what is left of the hello and reads what has come of the acknowledgement.
/// `Ok(true)` once the acknowledgement is complete and names the peer dialed.
fn handshake_step(
    stream: &mut TcpStream,
    hello: &[u8; HELLO_BYTES],
    hello_sent: &mut usize,
    ack: &mut [u8; ACK_BYTES],
    ack_got: &mut usize,
    peer: NodeId,
) -> Result<bool, ConnectionError> {
    while *hello_sent < HELLO_BYTES {
        match stream.write(&hello[*hello_sent..]) {
            Ok(0) => return Err(ConnectionError::Io(io::ErrorKind::WriteZero.into())),
            Ok(count) => *hello_sent += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) => return Err(ConnectionError::Io(error)),
        }
    }
    while *ack_got < ACK_BYTES {
        match stream.read(&mut ack[*ack_got..]) {
            Ok(0) => {
                let error = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the peer closed the connection during the handshake",
                );
                return Err(ConnectionError::Handshake(error));
            }
            Ok(count) => *ack_got += count,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(error) => return Err(ConnectionError::Handshake(error)),
        }
    }
    let ack = Ack::decode(ack)?;
    if ack.from != peer {
        return Err(ConnectionError::WrongPeer {
            expected: peer,
            found: ack.from,
        });
    }
    Ok(true)
}

/// Checks, on an established link that polled readable, that the acceptor has not closed
/// it (it never sends anything after its acknowledgement), so that a restarted peer is
/// redialed before the next frame goes into a dead connection.
fn check_open(stream: &mut TcpStream) -> io::Result<()> {
    let mut probe = [0u8; 1];
    match stream.read(&mut probe) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the peer closed the connection",
        )),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer sent data on a send-only connection",
        )),
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            Ok(())
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes at most `budget` bytes per write, then blocks.
    struct Trickle {
        taken: Vec<u8>,
        budget: usize,
    }

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.budget == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let count = buf.len().min(self.budget);
            self.budget -= count;
            self.taken.extend_from_slice(&buf[..count]);
            Ok(count)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn partial_writes_keep_the_rest_queued_in_order() {
        let mut queue = SendQueue::default();
        queue.push(b"abc");
        queue.push(b"defgh");
        let mut sink = Trickle {
            taken: Vec::new(),
            budget: 9,
        };
        let written = queue.write_to(&mut sink).unwrap();
        assert!(written.blocked);
        assert_eq!((written.frames, written.payload_bytes), (1, 3));
        assert_eq!(queue.frames(), 1);
        queue.push(b"i");
        sink.budget = 100;
        let written = queue.write_to(&mut sink).unwrap();
        assert!(!written.blocked);
        assert_eq!((written.frames, written.payload_bytes), (2, 6));
        assert!(queue.is_empty());
        let mut expected = Vec::new();
        for payload in [&b"abc"[..], b"defgh", b"i"] {
            crate::wire::encode_frame(payload, &mut expected).unwrap();
        }
        assert_eq!(sink.taken, expected);
    }

    #[test]
    fn a_partly_written_frame_is_dropped_when_its_connection_fails() {
        let mut queue = SendQueue::default();
        queue.push(b"abcdef");
        queue.push(b"next");
        let mut sink = Trickle {
            taken: Vec::new(),
            budget: 5,
        };
        queue.write_to(&mut sink).unwrap();
        assert_eq!(queue.drop_partial(), 1);
        assert_eq!(queue.drop_partial(), 0);
        sink.taken.clear();
        sink.budget = 100;
        queue.write_to(&mut sink).unwrap();
        let mut expected = Vec::new();
        crate::wire::encode_frame(b"next", &mut expected).unwrap();
        assert_eq!(sink.taken, expected);
    }
}
