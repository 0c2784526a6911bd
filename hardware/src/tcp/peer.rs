//! Each peer's connection, which carries frames both ways: a bounded queue of outgoing
//! frames, a buffer of incoming ones, and the link (dialed: connect, handshake,
//! established, redial with backoff; or accepted: waiting, established).

use super::inbound::{End, FrameStatus, RecvBuffer};
use super::noise::{self, Dialing, FrameCipher, NOISE_2_BYTES};
use super::socket::{self, Readiness};
use super::{bump, Shared, TcpConfig};
use crate::syscalls::{Counted, Syscall};
use crate::wire::{Ack, ConnectionError, Hello, ACK_BYTES, FRAME_HEADER_BYTES};
use mio::net::TcpStream;
use rehearsal_sim_core::NodeId;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
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
    /// On an authenticated connection: the frames at the front of the queue, sealed for
    /// it. A frame leaves the queue once its sealed bytes are written; if the connection
    /// ends first, the frames not begun are sealed again for the next one.
    sealed: Sealed,
}

/// Frames sealed for the current connection, waiting to be written.
#[derive(Default)]
struct Sealed {
    /// The unwritten bytes are `bytes[start..]`.
    bytes: Vec<u8>,
    start: usize,
    /// Wire sizes of the sealed frames (length prefixes included), oldest first: they are
    /// the queue's first frames.
    frames: VecDeque<usize>,
    /// Bytes of the oldest sealed frame already written.
    front_written: usize,
    /// Bytes of the queue (length prefixes included) that the sealed frames hold.
    plain_bytes: usize,
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
        self.write_out(stream, false)
    }

    /// Writes the frames as they are queued, or, if `sealed`, as they are sealed, as much
    /// as `stream` takes without blocking.
    fn write_out(&mut self, stream: &mut impl Write, sealed: bool) -> io::Result<Written> {
        let mut written = Written::default();
        loop {
            let unwritten = if sealed {
                &self.sealed.bytes[self.sealed.start..]
            } else {
                &self.bytes[self.start..]
            };
            if unwritten.is_empty() {
                break;
            }
            match stream.write(unwritten) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(count) if sealed => self.advance_sealed(count, &mut written),
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

    /// Seals the queued frames not sealed yet with `cipher`, and writes as much of the
    /// sealed frames as `stream` takes without blocking.
    pub fn write_sealed(
        &mut self,
        stream: &mut impl Write,
        cipher: &mut FrameCipher,
    ) -> io::Result<Written> {
        debug_assert_eq!(self.front_written, 0, "a queue is written sealed or plain");
        let sealed = &mut self.sealed;
        if sealed.start > 0 && sealed.start >= sealed.bytes.len() / 2 {
            sealed.bytes.drain(..sealed.start);
            sealed.start = 0;
        }
        let mut at = self.start + sealed.plain_bytes;
        for &payload in self.frames.iter().skip(sealed.frames.len()) {
            let from = at + FRAME_HEADER_BYTES;
            let wire = cipher
                .seal(&self.bytes[from..from + payload], &mut sealed.bytes)
                .map_err(io::Error::other)?;
            sealed.frames.push_back(wire);
            sealed.plain_bytes += FRAME_HEADER_BYTES + payload;
            at = from + payload;
        }
        self.write_out(stream, true)
    }

    fn advance_sealed(&mut self, count: usize, written: &mut Written) {
        let sealed = &mut self.sealed;
        sealed.start += count;
        written.bytes += count;
        let mut left = count;
        while let Some(&wire) = sealed.frames.front() {
            let rest = wire - sealed.front_written;
            if left < rest {
                sealed.front_written += left;
                return;
            }
            left -= rest;
            sealed.front_written = 0;
            sealed.frames.pop_front();
            let payload = self.frames.pop_front().unwrap_or_default();
            self.start += FRAME_HEADER_BYTES + payload;
            sealed.plain_bytes -= FRAME_HEADER_BYTES + payload;
            written.frames += 1;
            written.payload_bytes += payload as u64;
        }
        debug_assert_eq!(left, 0, "wrote past the sealed frames");
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
        // What was sealed was for the connection that ended.
        let sealed = std::mem::take(&mut self.sealed);
        if sealed.front_written > 0 {
            if let Some(payload) = self.frames.pop_front() {
                self.start += FRAME_HEADER_BYTES + payload;
            }
            if self.frames.is_empty() {
                self.clear();
            }
            return 1;
        }
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
        let sealed = &mut self.sealed;
        sealed.bytes.clear();
        sealed.start = 0;
        sealed.frames.clear();
        sealed.front_written = 0;
        sealed.plain_bytes = 0;
        if sealed.bytes.capacity() > SEND_BUFFER_BYTES_KEPT {
            sealed.bytes.shrink_to(SEND_BUFFER_BYTES_KEPT);
        }
    }
}

/// The state of the connection with one peer.
pub(super) enum Link {
    /// No connection; this node dials at `retry_at`.
    Idle { retry_at: Instant },
    /// No connection; the peer dials (its id is the lower one).
    Waiting,
    /// TCP connect in progress.
    Connecting {
        stream: TcpStream,
        deadline: Instant,
    },
    /// Connected; the hello goes out and the acknowledgement comes back (and, if
    /// authenticated, the handshake's last message goes out).
    Handshaking {
        stream: TcpStream,
        handshake: Box<DialHandshake>,
        deadline: Instant,
    },
    /// Carrying frames both ways, sealed by `cipher` if authenticated. `stalled_since` is
    /// when a write last found the socket full.
    Established {
        stream: TcpStream,
        stalled_since: Option<Instant>,
        cipher: Option<FrameCipher>,
    },
}

/// How an established connection ended.
enum Loss {
    /// The peer closed it cleanly, between frames.
    Closed,
    /// A framing or i/o error, or a write timeout.
    Failed(ConnectionError),
    /// A newer connection of the same peer took its place.
    Replaced,
}

/// A peer, and the one connection that carries frames to and from it.
pub(super) struct Peer {
    pub id: NodeId,
    pub addr: SocketAddr,
    /// Whether this node dials the peer: the node with the lower id dials, the other waits
    /// for it, so that a pair needs one connection.
    dials: bool,
    pub link: Link,
    /// Frames waiting to be written.
    pub queue: SendQueue,
    /// Frames read and not yet handed out. Frames complete when a connection ends stay here
    /// until handed out; the start of a frame cut short is dropped. If authenticated,
    /// sealed frames only wait here until they are opened into `opened`.
    pub buf: RecvBuffer,
    /// If authenticated: frames opened, and not yet handed out.
    opened: RecvBuffer,
    /// Whether connections are authenticated (the transport has keys).
    authenticated: bool,
    /// Largest payload of a frame handed out, and largest frame on the wire (sealed, if
    /// authenticated), in bytes.
    frame_bytes_max: u32,
    wire_bytes_max: u32,
    /// How the remote end of the current connection finished, once read.
    end: Option<End>,
    backoff: Duration,
    failures_in_a_row: u64,
    /// What the socket may be ready for: what the poller reported since a read or write last
    /// found otherwise (the poller reports changes only).
    ready: Readiness,
    /// The socket is new and the poller does not know it yet under this peer's token.
    pub register: Option<Register>,
}

/// How the poller is to learn of a peer's new socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Register {
    /// A socket this node dialed: registered afresh.
    New,
    /// A connection accepted, registered under its accept sequence number until its
    /// handshake passed: registered again under the peer's token.
    Moved,
}

impl Peer {
    pub fn new(me: NodeId, id: NodeId, addr: SocketAddr, config: &TcpConfig, now: Instant) -> Self {
        let dials = me < id;
        Peer {
            id,
            addr,
            dials,
            link: if dials {
                Link::Idle { retry_at: now }
            } else {
                Link::Waiting
            },
            queue: SendQueue::default(),
            buf: RecvBuffer::new(),
            opened: RecvBuffer::new(),
            authenticated: config.auth.is_some(),
            frame_bytes_max: config.frame_bytes_max,
            wire_bytes_max: config.wire_frame_bytes_max(),
            end: None,
            backoff: config.reconnect_backoff_min,
            failures_in_a_row: 0,
            ready: Readiness::default(),
            register: None,
        }
    }

    /// The peer's socket, if it has one.
    pub fn stream_mut(&mut self) -> Option<&mut TcpStream> {
        match &mut self.link {
            Link::Idle { .. } | Link::Waiting => None,
            Link::Connecting { stream, .. }
            | Link::Handshaking { stream, .. }
            | Link::Established { stream, .. } => Some(stream),
        }
    }

    /// Whether [`pump`](Peer::pump) has work without a word from the poller: the socket
    /// may have bytes to read that no complete frame holds back, or room for queued frames.
    pub fn pump_due(&self) -> bool {
        self.read_due()
            || (matches!(self.link, Link::Established { .. })
                && self.ready.writable
                && !self.queue.is_empty())
    }

    /// Whether the socket may have bytes to read that no complete frame holds back.
    pub fn read_due(&self) -> bool {
        matches!(self.link, Link::Established { .. })
            && self.ready.readable
            && self.end.is_none()
            && self.buf.status(self.wire_bytes_max) == FrameStatus::Incomplete
            && (!self.authenticated || !self.has_frame())
    }

    /// Where frames are handed out from: the frames read, or, if authenticated, the frames
    /// opened.
    pub fn inbox(&mut self) -> &mut RecvBuffer {
        if self.authenticated {
            &mut self.opened
        } else {
            &mut self.buf
        }
    }

    /// What the first frame to hand out is.
    pub fn inbox_status(&self) -> FrameStatus {
        let inbox = if self.authenticated {
            &self.opened
        } else {
            &self.buf
        };
        inbox.status(self.frame_bytes_max)
    }

    /// The poller could not take the peer's socket: it fails as if an i/o call had.
    pub fn socket_failed(
        &mut self,
        error: io::Error,
        now: Instant,
        config: &TcpConfig,
        shared: &Shared,
    ) {
        let error = ConnectionError::Io(error);
        match self.link {
            Link::Idle { .. } | Link::Waiting => {}
            Link::Connecting { .. } | Link::Handshaking { .. } => {
                self.connect_failed(error, now, config, shared)
            }
            Link::Established { .. } => self.lost(Loss::Failed(error), now, shared),
        }
    }

    /// The next instant at which [`on_time`](Peer::on_time) has something to do.
    pub fn deadline(&self, config: &TcpConfig) -> Option<Instant> {
        match &self.link {
            Link::Idle { retry_at } => Some(*retry_at),
            Link::Waiting => None,
            Link::Connecting { deadline, .. } | Link::Handshaking { deadline, .. } => {
                Some(*deadline)
            }
            Link::Established { stalled_since, .. } => {
                stalled_since.map(|since| since + config.write_timeout)
            }
        }
    }

    /// Whether a frame is ready to be handed out.
    pub fn has_frame(&self) -> bool {
        matches!(self.inbox_status(), FrameStatus::Ready(_))
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
                self.lost(Loss::Failed(ConnectionError::Io(error)), now, shared);
            }
            _ => {}
        }
    }

    fn dial(&mut self, now: Instant, config: &TcpConfig, shared: &Shared) {
        match socket::connect(self.addr, &shared.counters.syscalls) {
            Ok(stream) => {
                self.link = Link::Connecting {
                    stream,
                    deadline: now + config.connect_timeout,
                };
                self.register = Some(Register::New);
                self.ready = Readiness::default();
                // A connect on loopback is often complete at once: find out now.
                self.on_ready(Readiness::BOTH, now, config, shared);
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
        let syscalls = &shared.counters.syscalls;
        syscalls.count(Syscall::Other);
        let _ = stream.set_nodelay(true);
        if let Err(error) = socket::set_keepalive(
            &stream,
            config.keepalive_idle,
            config.write_timeout,
            syscalls,
        ) {
            self.connect_failed(ConnectionError::Io(error), now, config, shared);
            return;
        }
        let hello = Hello {
            from: shared.me,
            to: self.id,
            authenticated: config.auth.is_some(),
        };
        let handshake = match DialHandshake::new(hello, config) {
            Ok(handshake) => handshake,
            Err(error) => {
                self.connect_failed(error, now, config, shared);
                return;
            }
        };
        self.link = Link::Handshaking {
            stream,
            handshake: Box::new(handshake),
            deadline: now + config.handshake_timeout,
        };
        let ready = Readiness {
            writable: true,
            ..Readiness::default()
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
        self.ready.merge(ready);
        match &mut self.link {
            Link::Idle { .. } | Link::Waiting => {}
            Link::Connecting { stream, .. } => {
                match socket::connect_outcome(stream, &shared.counters.syscalls) {
                    Ok(false) => {}
                    Ok(true) => {
                        let Link::Connecting { stream, .. } =
                            std::mem::replace(&mut self.link, Link::Idle { retry_at: now })
                        else {
                            unreachable!("matched above")
                        };
                        self.start_handshake(stream, now, config, shared);
                    }
                    Err(error) => {
                        self.connect_failed(ConnectionError::Io(error), now, config, shared)
                    }
                }
            }
            Link::Handshaking {
                stream, handshake, ..
            } => match handshake.step(
                &mut Counted {
                    inner: &mut *stream,
                    counter: &shared.counters.syscalls,
                },
                self.id,
                config,
            ) {
                Ok(false) => {}
                Ok(true) => {
                    let Link::Handshaking {
                        stream, handshake, ..
                    } = std::mem::replace(&mut self.link, Link::Idle { retry_at: now })
                    else {
                        unreachable!("matched above")
                    };
                    if self.failures_in_a_row > 0 {
                        shared.log(format!(
                            "connected to {} at {} after {} failed attempts",
                            self.id, self.addr, self.failures_in_a_row
                        ));
                    }
                    self.failures_in_a_row = 0;
                    self.backoff = config.reconnect_backoff_min;
                    bump(&shared.counters.outbound_connects, 1);
                    self.established(stream, handshake.cipher, now, shared);
                }
                Err(error) => self.connect_failed(error, now, config, shared),
            },
            Link::Established { .. } => self.pump(now, shared),
        }
    }

    /// Reads what the socket has, while no complete frame holds reading back, and writes
    /// what is queued, while the socket takes it; then ends the connection if what was read
    /// ends it. Only where the socket may be ready: no call finds nothing to do twice.
    pub fn pump(&mut self, now: Instant, shared: &Shared) {
        // Opened frames not handed out hold reading back, as complete frames read do.
        let held = self.authenticated && self.has_frame();
        let Link::Established { stream, .. } = &mut self.link else {
            return;
        };
        if self.end.is_none() && !held {
            self.end = self.buf.read_frame(
                &mut Counted {
                    inner: &mut *stream,
                    counter: &shared.counters.syscalls,
                },
                &mut self.ready,
                self.wire_bytes_max,
            );
        }
        if let Err(error) = self.open_sealed() {
            bump(&shared.counters.frames_rejected, 1);
            self.lost(Loss::Failed(error), now, shared);
            return;
        }
        self.write(now, shared);
        self.settle(now, shared);
    }

    /// On an authenticated connection, opens the complete sealed frames read into
    /// `opened`. Fails at the first frame that fails its tag.
    fn open_sealed(&mut self) -> Result<(), ConnectionError> {
        let Link::Established {
            cipher: Some(cipher),
            ..
        } = &mut self.link
        else {
            return Ok(());
        };
        while let FrameStatus::Ready(sealed) = self.buf.status(self.wire_bytes_max) {
            let rejected = ConnectionError::FrameRejected {
                frame_bytes: sealed as u64,
            };
            let payload = noise::opened_bytes(sealed)
                .filter(|&payload| payload <= self.frame_bytes_max as usize)
                .ok_or(rejected)?;
            let room = self.opened.frame_room(payload);
            cipher.open(self.buf.payload(sealed), room)?;
            self.opened.commit_frame(payload);
            self.buf.pop_frame(sealed);
        }
        Ok(())
    }

    /// Takes a connection the peer dialed, whose handshake passed (`buf` holds what came
    /// after its hello). It replaces the current connection or dial, if any.
    pub fn accepted(
        &mut self,
        stream: TcpStream,
        buf: RecvBuffer,
        cipher: Option<FrameCipher>,
        now: Instant,
        shared: &Shared,
    ) {
        if matches!(self.link, Link::Established { .. }) {
            self.lost(Loss::Replaced, now, shared);
        }
        self.buf.absorb(buf);
        self.register = Some(Register::Moved);
        self.established(stream, cipher, now, shared);
    }

    fn established(
        &mut self,
        stream: TcpStream,
        cipher: Option<FrameCipher>,
        now: Instant,
        shared: &Shared,
    ) {
        debug_assert_eq!(cipher.is_some(), self.authenticated);
        shared.set_connected(self.id, true);
        self.end = None;
        self.link = Link::Established {
            stream,
            stalled_since: None,
            cipher,
        };
        // Bytes may have come after the handshake already, and an event of the poller may
        // have passed: read and write until the socket says otherwise.
        self.ready = Readiness::BOTH;
        self.pump(now, shared);
    }

    /// Writes queued frames, as many as the socket takes; a write that fails ends the
    /// connection.
    pub fn write(&mut self, now: Instant, shared: &Shared) {
        if let Err(error) = self.write_queued(now, shared) {
            self.lost(Loss::Failed(ConnectionError::Io(error)), now, shared);
        }
    }

    fn write_queued(&mut self, now: Instant, shared: &Shared) -> io::Result<()> {
        let Link::Established {
            stream,
            stalled_since,
            cipher,
        } = &mut self.link
        else {
            return Ok(());
        };
        if self.queue.is_empty() {
            *stalled_since = None;
            return Ok(());
        }
        if !self.ready.writable {
            // Full since the last write: the poller says when it has room again.
            return Ok(());
        }
        let mut stream = Counted {
            inner: &mut *stream,
            counter: &shared.counters.syscalls,
        };
        let written = match cipher {
            Some(cipher) => self.queue.write_sealed(&mut stream, cipher)?,
            None => self.queue.write_to(&mut stream)?,
        };
        if written.frames > 0 {
            bump(&shared.counters.frames_sent, written.frames);
            bump(&shared.counters.bytes_sent, written.payload_bytes);
        }
        self.ready.writable = !written.blocked;
        if !written.blocked {
            *stalled_since = None;
        } else if written.bytes > 0 || stalled_since.is_none() {
            // Progress restarts the clock of the write timeout.
            *stalled_since = Some(now);
        }
        Ok(())
    }

    /// Ends an established connection whose unread bytes start no complete frame: closed
    /// if its end came, failed if the next frame is too large or cut short.
    pub fn settle(&mut self, now: Instant, shared: &Shared) {
        if !matches!(self.link, Link::Established { .. }) {
            return;
        }
        let wire_bytes_max = self.wire_bytes_max;
        let loss = match self.buf.status(wire_bytes_max) {
            FrameStatus::Ready(_) => return,
            FrameStatus::TooLarge(length) => {
                bump(&shared.counters.frames_oversized, 1);
                Loss::Failed(ConnectionError::FrameTooLarge {
                    frame_bytes: u64::from(length),
                    frame_bytes_max: u64::from(wire_bytes_max),
                })
            }
            FrameStatus::Incomplete => match self.end.take() {
                None => return,
                Some(End::Failed(error)) => Loss::Failed(ConnectionError::Io(error)),
                Some(End::Closed) if self.buf.unread().is_empty() => Loss::Closed,
                Some(End::Closed) => Loss::Failed(self.buf.truncation()),
            },
        };
        self.lost(loss, now, shared);
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
        if error.is_authentication() {
            bump(&shared.counters.outbound_auth_failures, 1);
            // Every time: an impostor is news, not a retry of the same failure.
            shared.log(format!(
                "refused {} at {}: {error}; retrying with backoff",
                self.id, self.addr
            ));
        } else if self.failures_in_a_row == 0 {
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

    /// The established connection is gone: the dialer redials at once, the other side
    /// waits to be dialed again. Queued frames wait for the next connection, but for one
    /// partly written (its remainder cannot go on another connection); complete frames read
    /// stay to be handed out, and the start of one cut short is dropped.
    fn lost(&mut self, loss: Loss, now: Instant, shared: &Shared) {
        let frames_lost = self.queue.drop_partial();
        let oversized = matches!(
            loss,
            Loss::Failed(
                ConnectionError::FrameTooLarge { .. } | ConnectionError::FrameRejected { .. }
            )
        );
        let dropped = if self.authenticated {
            // Sealed bytes of the connection that ended cannot be opened on the next one:
            // what is left is an incomplete frame, or frames after one rejected.
            let unread = self.buf.unread().len();
            self.buf = RecvBuffer::new();
            unread
        } else {
            self.buf.drop_incomplete(self.wire_bytes_max)
        };
        let truncated = dropped > 0 && !oversized;
        if truncated {
            // The start of a frame whose connection ended: its rest will not come.
            bump(&shared.counters.frames_truncated, 1);
        }
        // A reset that cut no frame short, either way: the peer went away with frames of
        // ours unread (it exited or crashed). Counted apart from failures, so that a
        // cluster's shutdown does not read as broken links.
        let reset = matches!(
            &loss,
            Loss::Failed(ConnectionError::Io(error))
                if matches!(error.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe)
        ) && frames_lost == 0
            && !truncated;
        self.end = None;
        self.link = if self.dials {
            Link::Idle { retry_at: now }
        } else {
            Link::Waiting
        };
        shared.set_connected(self.id, false);
        let counters = &shared.counters;
        bump(&counters.frames_lost, frames_lost);
        let error = match loss {
            Loss::Closed => {
                bump(&counters.connections_closed, 1);
                return;
            }
            Loss::Replaced => {
                bump(&counters.connections_replaced, 1);
                return;
            }
            Loss::Failed(error) => error,
        };
        if reset {
            bump(&counters.connections_reset, 1);
        } else {
            bump(&counters.connections_failed, 1);
        }
        let next = if self.dials {
            "redialing"
        } else {
            "waiting for it to redial"
        };
        let what = if reset {
            "was reset by the peer (it exited or crashed; no frame lost)".to_string()
        } else {
            format!("failed ({frames_lost} frames lost)")
        };
        shared.log(format!(
            "connection with {} at {} {what}: {error}; {next}",
            self.id, self.addr
        ));
    }

    /// Closes the connection and forgets queued and unread frames (the transport shuts
    /// down).
    pub fn close(&mut self, now: Instant) {
        self.link = Link::Idle { retry_at: now };
        self.register = None;
        self.queue.clear();
        self.buf = RecvBuffer::new();
        self.opened = RecvBuffer::new();
        self.end = None;
    }
}

/// The dialer's side of the handshake: the hello (and the first Noise message) goes out,
/// the acknowledgement (and the acceptor's Noise message) comes back, and, if
/// authenticated, the last Noise message goes out.
pub(super) struct DialHandshake {
    /// What to write, and how much of it is written.
    out: Vec<u8>,
    sent: usize,
    /// The answer expected, and how much of it came.
    answer: [u8; ACK_BYTES + NOISE_2_BYTES],
    answer_bytes: usize,
    got: usize,
    noise: Option<Dialing>,
    /// The answer came and was checked: what is left to write is the last message.
    answered: bool,
    /// The authenticated connection's frame cipher, once the answer is checked.
    pub cipher: Option<FrameCipher>,
}

impl DialHandshake {
    fn new(hello: Hello, config: &TcpConfig) -> Result<Self, ConnectionError> {
        let hello = hello.encode();
        let mut out = hello.to_vec();
        let noise = match &config.auth {
            None => None,
            Some(auth) => {
                let (dialing, first) = Dialing::start(auth, &hello)?;
                out.extend_from_slice(&first);
                Some(dialing)
            }
        };
        Ok(DialHandshake {
            out,
            sent: 0,
            answer: [0; ACK_BYTES + NOISE_2_BYTES],
            answer_bytes: ACK_BYTES + if noise.is_some() { NOISE_2_BYTES } else { 0 },
            got: 0,
            noise,
            answered: false,
            cipher: None,
        })
    }

    /// Writes what is left to write and reads what has come of the answer. `Ok(true)` once
    /// the answer names the peer dialed (and proved its listed key) and all is written.
    fn step(
        &mut self,
        stream: &mut (impl Read + Write),
        peer: NodeId,
        config: &TcpConfig,
    ) -> Result<bool, ConnectionError> {
        loop {
            while self.sent < self.out.len() {
                match stream.write(&self.out[self.sent..]) {
                    Ok(0) => return Err(ConnectionError::Io(io::ErrorKind::WriteZero.into())),
                    Ok(count) => self.sent += count,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(error) => return Err(ConnectionError::Io(error)),
                }
            }
            if self.answered {
                return Ok(true);
            }
            // Exactly the answer: what follows it is frames, read once established.
            while self.got < self.answer_bytes {
                match stream.read(&mut self.answer[self.got..self.answer_bytes]) {
                    Ok(0) => {
                        let error = io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "the peer closed the connection during the handshake",
                        );
                        return Err(ConnectionError::Handshake(error));
                    }
                    Ok(count) => self.got += count,
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                    Err(error) => return Err(ConnectionError::Handshake(error)),
                }
            }
            self.check_answer(peer, config)?;
        }
    }

    /// Checks the complete answer; if authenticated, makes the last message the thing to
    /// write.
    fn check_answer(&mut self, peer: NodeId, config: &TcpConfig) -> Result<(), ConnectionError> {
        self.answered = true;
        let (ack, rest) = self.answer.split_at(ACK_BYTES);
        let ack = Ack::decode(ack.try_into().unwrap_or(&[0; ACK_BYTES]))?;
        if ack.authenticated != config.auth.is_some() {
            return Err(ConnectionError::AuthenticationMismatch {
                peer_authenticates: ack.authenticated,
            });
        }
        if ack.from != peer {
            return Err(ConnectionError::WrongPeer {
                expected: peer,
                found: ack.from,
            });
        }
        if let (Some(dialing), Some(auth)) = (self.noise.take(), &config.auth) {
            let (last, cipher) = dialing.finish(auth, peer, &rest[..NOISE_2_BYTES])?;
            self.out.clear();
            self.out.extend_from_slice(&last);
            self.sent = 0;
            self.cipher = Some(cipher);
        }
        Ok(())
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
