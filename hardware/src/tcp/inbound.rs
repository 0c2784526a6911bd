//! The receive side: frames read into one buffer per peer (its connections' bytes in turn)
//! and handed to [`Transport::poll`](crate::Transport::poll) straight from it, without a
//! copy; and accepted connections during the acceptor's side of the handshake.

use super::noise::{Accepting, FrameCipher, TcpAuth, NOISE_1_BYTES, NOISE_2_BYTES, NOISE_3_BYTES};
use super::socket::Readiness;
use super::TcpConfig;
use crate::syscalls::{Counted, Syscall, SyscallCounter};
use crate::wire::{Ack, ConnectionError, Hello, ACK_BYTES, FRAME_HEADER_BYTES, HELLO_BYTES};
use mio::net::TcpStream;
use rehearsal_sim_core::NodeId;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::time::Instant;

/// Size of a peer's receive buffer, in bytes. A frame larger than this grows the
/// buffer as its bytes arrive (never ahead of them: an announced length costs nothing until
/// the bytes come), and the buffer shrinks back once the frame is handed out.
pub(super) const RECV_BUFFER_BYTES: usize = 64 << 10;

/// A read into less free space than this first moves the unread bytes to the front.
const READ_BYTES_MIN: usize = 4 << 10;

/// What the unread bytes of a connection start with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FrameStatus {
    /// A complete frame with a payload of this many bytes.
    Ready(usize),
    /// Part of a frame, or nothing.
    Incomplete,
    /// A length prefix above the maximum.
    TooLarge(u32),
}

/// Bytes read from one connection and not yet handed out: `bytes[start..end]`.
pub(super) struct RecvBuffer {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
}

impl RecvBuffer {
    /// An empty buffer that holds no memory until its first read (a node keeps one per
    /// peer, connected or not).
    pub fn new() -> Self {
        RecvBuffer {
            bytes: Vec::new(),
            start: 0,
            end: 0,
        }
    }

    pub fn unread(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    fn consume(&mut self, count: usize) {
        debug_assert!(count <= self.end - self.start);
        self.start += count;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.bytes.len() > RECV_BUFFER_BYTES {
                self.bytes.truncate(RECV_BUFFER_BYTES);
                self.bytes.shrink_to_fit();
            }
        }
    }

    pub fn status(&self, frame_bytes_max: u32) -> FrameStatus {
        let unread = self.unread();
        let Some(header) = unread.first_chunk::<FRAME_HEADER_BYTES>() else {
            return FrameStatus::Incomplete;
        };
        let length = u32::from_be_bytes(*header);
        if length > frame_bytes_max {
            return FrameStatus::TooLarge(length);
        }
        if unread.len() - FRAME_HEADER_BYTES >= length as usize {
            FrameStatus::Ready(length as usize)
        } else {
            FrameStatus::Incomplete
        }
    }

    /// The payload of the first frame, which [`status`](RecvBuffer::status) found
    /// complete with `payload_bytes`.
    pub fn payload(&self, payload_bytes: usize) -> &[u8] {
        let from = self.start + FRAME_HEADER_BYTES;
        &self.bytes[from..from + payload_bytes]
    }

    /// Room at the end for the payload of one more frame of `payload_bytes` (opened from a
    /// sealed one), which [`commit_frame`](RecvBuffer::commit_frame) then appends.
    pub fn frame_room(&mut self, payload_bytes: usize) -> &mut [u8] {
        let needed = FRAME_HEADER_BYTES + payload_bytes;
        if self.bytes.len() - self.end < needed && self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.bytes.len() - self.end < needed {
            self.bytes
                .resize((self.end + needed).max(RECV_BUFFER_BYTES), 0);
        }
        let from = self.end + FRAME_HEADER_BYTES;
        &mut self.bytes[from..from + payload_bytes]
    }

    /// Appends the frame whose payload [`frame_room`](RecvBuffer::frame_room) made room
    /// for and the caller wrote there; `payload_bytes` is at most a frame's maximum.
    pub fn commit_frame(&mut self, payload_bytes: usize) {
        let length = u32::try_from(payload_bytes).unwrap_or(u32::MAX);
        self.bytes[self.end..self.end + FRAME_HEADER_BYTES].copy_from_slice(&length.to_be_bytes());
        self.end += FRAME_HEADER_BYTES + payload_bytes;
    }

    /// Drops the first frame, after its payload was handed out.
    pub fn pop_frame(&mut self, payload_bytes: usize) {
        self.consume(FRAME_HEADER_BYTES + payload_bytes);
    }

    /// Drops what follows the last complete frame (the start of a frame whose connection is
    /// gone), keeping the complete frames to be handed out. Returns the bytes dropped.
    pub fn drop_incomplete(&mut self, frame_bytes_max: u32) -> usize {
        let mut at = self.start;
        while let Some(header) = self.bytes[at..self.end].first_chunk::<FRAME_HEADER_BYTES>() {
            let length = u32::from_be_bytes(*header);
            let next = at + FRAME_HEADER_BYTES + length as usize;
            if length > frame_bytes_max || next > self.end {
                break;
            }
            at = next;
        }
        let dropped = self.end - at;
        self.end = at;
        self.consume(0);
        dropped
    }

    /// Takes over what `other` read and did not hand out, after this buffer's own bytes
    /// (a connection's first bytes, read during its handshake, joining its peer's buffer).
    pub fn absorb(&mut self, other: RecvBuffer) {
        if self.start == self.end {
            *self = other;
        } else {
            let unread = other.unread();
            self.bytes.truncate(self.end);
            self.bytes.extend_from_slice(unread);
            self.end = self.bytes.len();
            if self.bytes.len() < RECV_BUFFER_BYTES {
                self.bytes.resize(RECV_BUFFER_BYTES, 0);
            }
        }
    }

    /// The connection ended inside the frame that the unread bytes start.
    pub fn truncation(&self) -> ConnectionError {
        let unread = self.unread();
        let expected = match unread.first_chunk::<FRAME_HEADER_BYTES>() {
            Some(header) => FRAME_HEADER_BYTES as u64 + u64::from(u32::from_be_bytes(*header)),
            None => FRAME_HEADER_BYTES as u64,
        };
        ConnectionError::Truncated {
            got_bytes: unread.len() as u64,
            expected_bytes: expected,
        }
    }

    /// Reads from the non-blocking `stream` while it may have bytes (`*readable`) and the
    /// unread bytes start no complete frame (so that a peer whose frames are not handed out
    /// is slowed down by TCP flow control, and so that growing is for a frame in
    /// progress). Returns how the stream ended, if a read found out.
    pub fn read_frame(
        &mut self,
        stream: &mut impl Read,
        ready: &mut Readiness,
        frame_bytes_max: u32,
    ) -> Option<End> {
        self.read_while(stream, ready, |buf| {
            buf.status(frame_bytes_max) == FrameStatus::Incomplete
        })
    }

    /// Reads from the non-blocking `stream` while it may have bytes (`ready.readable`) and
    /// `wanted` holds. Clears `readable` once a read finds the stream drained: it took fewer
    /// bytes than there was room for (the poller reports when more come; unless the stream's
    /// end was reported, which a next read returns), none yet, the stream's end, or an
    /// error. Returns how the stream ended, if a read found out.
    fn read_while(
        &mut self,
        stream: &mut impl Read,
        ready: &mut Readiness,
        wanted: impl Fn(&RecvBuffer) -> bool,
    ) -> Option<End> {
        while ready.readable && wanted(self) {
            let room = self.make_room();
            match stream.read(&mut self.bytes[self.end..]) {
                Ok(0) => {
                    ready.readable = false;
                    return Some(End::Closed);
                }
                Ok(count) => {
                    self.end += count;
                    ready.readable = count == room || ready.closed;
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => ready.readable = false,
                Err(error) => {
                    ready.readable = false;
                    return Some(End::Failed(error));
                }
            }
        }
        None
    }

    /// Reads once from `stream` into the free space, making room first.
    #[cfg(test)]
    fn read_from(&mut self, stream: &mut impl Read) -> io::Result<usize> {
        self.make_room();
        let count = stream.read(&mut self.bytes[self.end..])?;
        self.end += count;
        Ok(count)
    }

    /// Makes room at the end for a read; returns how many bytes there is room for. Only
    /// called while the unread bytes hold no complete frame (so growing is for a frame in
    /// progress, whose announced length is at most the maximum).
    fn make_room(&mut self) -> usize {
        if self.bytes.len() < RECV_BUFFER_BYTES {
            self.bytes.resize(RECV_BUFFER_BYTES, 0);
        }
        if self.bytes.len() - self.end < READ_BYTES_MIN && self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.bytes.len() {
            // Full of one frame in progress: grow towards its size, doubling, so memory
            // follows the bytes that actually arrived.
            let announced = match self.unread().first_chunk::<FRAME_HEADER_BYTES>() {
                Some(header) => FRAME_HEADER_BYTES + u32::from_be_bytes(*header) as usize,
                None => FRAME_HEADER_BYTES,
            };
            let grown = (self.bytes.len() * 2).min(announced).max(self.end + 1);
            self.bytes.resize(grown, 0);
        }
        self.bytes.len() - self.end
    }
}

/// What an acceptor checks a handshake against: this node, its peers, and its keys.
pub(super) struct Welcome<'a> {
    me: NodeId,
    peers: &'a BTreeMap<NodeId, usize>,
    auth: Option<&'a TcpAuth>,
}

impl<'a> Welcome<'a> {
    pub fn new(me: NodeId, peers: &'a BTreeMap<NodeId, usize>, config: &'a TcpConfig) -> Self {
        Welcome {
            me,
            peers,
            auth: config.auth.as_ref(),
        }
    }

    /// Whether `id` is a peer (this node is not its own).
    fn is_known(&self, id: NodeId) -> bool {
        id != self.me && self.peers.contains_key(&id)
    }
}

/// How the remote end of a connection finished. Noted when read, and acted on once the
/// frames that came before it have been handed out.
pub(super) enum End {
    /// End of stream.
    Closed,
    /// A read failed.
    Failed(io::Error),
}

/// A connection accepted and still in its handshake. Once the hello names a known peer
/// and the acknowledgement is written (and, if authenticated, the dialer's last Noise
/// message proved the key listed for that peer), the connection is handed to that peer's
/// [`Peer`](super::peer::Peer), which carries frames both ways on it.
pub(super) struct InboundConn {
    pub stream: TcpStream,
    /// The remote address, for error messages.
    pub remote: String,
    /// The peer, once its hello passed.
    pub peer: Option<NodeId>,
    /// When a handshake still missing counts as silence.
    pub handshake_deadline: Instant,
    /// The answer: the acknowledgement, and, if authenticated, the Noise message.
    ack: [u8; ACK_BYTES + NOISE_2_BYTES],
    ack_bytes: usize,
    /// If authenticated: the handshake waiting for the dialer's last message.
    accepting: Option<Accepting>,
    /// If authenticated: the frame cipher, once the dialer's last message passed.
    pub cipher: Option<FrameCipher>,
    /// Bytes at the end of `ack` not written yet.
    ack_unsent: usize,
    /// What was read: the hello, and anything the dialer sent after it.
    pub buf: RecvBuffer,
    end: Option<End>,
    /// Set when the handshake failed; the connection is then closed and removed.
    pub fate: Option<ConnectionError>,
    /// What the socket may be ready for: what the poller reported since a read or write
    /// last found otherwise.
    ready: Readiness,
}

impl InboundConn {
    pub fn new(stream: TcpStream, remote: String, handshake_deadline: Instant) -> Self {
        InboundConn {
            stream,
            remote,
            peer: None,
            handshake_deadline,
            ack: [0; ACK_BYTES + NOISE_2_BYTES],
            ack_bytes: ACK_BYTES,
            accepting: None,
            cipher: None,
            ack_unsent: 0,
            buf: RecvBuffer::new(),
            end: None,
            fate: None,
            ready: Readiness::BOTH,
        }
    }

    /// Whether to read when the socket is readable: until the hello (and the first Noise
    /// message) is complete, and, if authenticated, the last Noise message.
    pub fn wants_read(&self) -> bool {
        self.fate.is_none() && self.end.is_none() && self.buf.unread().len() < self.bytes_wanted()
    }

    /// Bytes the handshake waits for at the start of what is read: the hello (with the
    /// first Noise message, if authenticated), or the dialer's last message once it
    /// passed (0 if there is none).
    fn bytes_wanted(&self) -> usize {
        match (self.peer, &self.accepting) {
            (None, _) if self.ack_bytes > ACK_BYTES => HELLO_BYTES + NOISE_1_BYTES,
            (None, _) => HELLO_BYTES,
            (Some(_), Some(_)) => NOISE_3_BYTES,
            (Some(_), None) => 0,
        }
    }

    pub fn wants_write(&self) -> bool {
        self.fate.is_none() && self.ack_unsent > 0
    }

    /// The handshake passed and its acknowledgement is out: the connection goes to its
    /// peer.
    pub fn complete(&self) -> Option<NodeId> {
        match self.peer {
            Some(peer)
                if self.fate.is_none() && self.ack_unsent == 0 && self.accepting.is_none() =>
            {
                Some(peer)
            }
            _ => None,
        }
    }

    /// Acts on what the poller reported: writes what is left of the acknowledgement, reads
    /// what came of the hello.
    pub fn on_ready(&mut self, ready: Readiness, syscalls: &SyscallCounter) {
        self.ready.merge(ready);
        if self.ready.writable && self.wants_write() {
            self.write_ack(syscalls);
        }
        if self.wants_read() {
            let wanted = self.bytes_wanted();
            let end = self.buf.read_while(
                &mut Counted {
                    inner: &mut self.stream,
                    counter: syscalls,
                },
                &mut self.ready,
                |buf| buf.unread().len() < wanted,
            );
            self.end = end;
        }
    }

    /// Writes what is left of the handshake answer.
    pub fn write_ack(&mut self, syscalls: &SyscallCounter) {
        while self.ack_unsent > 0 {
            let from = self.ack_bytes - self.ack_unsent;
            syscalls.count(Syscall::Write);
            match self.stream.write(&self.ack[from..self.ack_bytes]) {
                Ok(0) => {
                    let error = io::Error::from(io::ErrorKind::WriteZero);
                    self.fate = Some(ConnectionError::Handshake(error));
                    return;
                }
                Ok(count) => self.ack_unsent -= count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                    self.ready.writable = false;
                    return;
                }
                Err(error) => {
                    self.fate = Some(ConnectionError::Handshake(error));
                    return;
                }
            }
        }
    }

    /// Checks the hello once it has arrived and answers it; if authenticated, checks the
    /// dialer's last message once it has arrived. Sets the fate when it failed, or when
    /// the connection ended or fell silent before the handshake completed.
    pub fn handshake(&mut self, welcome: &Welcome<'_>, now: Instant, syscalls: &SyscallCounter) {
        if self.fate.is_some() {
            return;
        }
        let auth = welcome.auth;
        if self.peer.is_none() {
            self.ack_bytes = ACK_BYTES + if auth.is_some() { NOISE_2_BYTES } else { 0 };
            match self.check_hello(welcome) {
                Ok(false) => {}
                Ok(true) => self.write_ack(syscalls),
                Err(error) => {
                    self.fate = Some(error);
                    return;
                }
            }
        }
        if let (Some(auth), Some(_)) = (auth, &self.accepting) {
            if let Some(last) = self.buf.unread().get(..NOISE_3_BYTES) {
                let accepting = self.accepting.take();
                match accepting.map(|accepting| accepting.finish(auth, last)) {
                    Some(Ok(cipher)) => {
                        self.cipher = Some(cipher);
                        self.buf.consume(NOISE_3_BYTES);
                    }
                    Some(Err(error)) => {
                        self.fate = Some(error);
                        return;
                    }
                    None => {}
                }
            }
        }
        if self.complete().is_some() {
            return;
        }
        // Still waiting: for the hello, for the dialer to take the answer, or for its last
        // message.
        let error = match self.end.take() {
            Some(end) => end.into_error(),
            None if now >= self.handshake_deadline => {
                let what = if self.peer.is_none() {
                    "no handshake in time"
                } else {
                    "the dialer did not complete the handshake in time"
                };
                io::Error::new(io::ErrorKind::TimedOut, what)
            }
            None => return,
        };
        self.fate = Some(ConnectionError::Handshake(error));
    }

    /// Checks the hello (and, if authenticated, answers the first Noise message) once
    /// enough has arrived: `Ok(true)` when the answer is ready to write.
    fn check_hello(&mut self, welcome: &Welcome<'_>) -> Result<bool, ConnectionError> {
        let (me, auth) = (welcome.me, welcome.auth);
        let unread = self.buf.unread();
        let Some(hello_bytes) = unread.first_chunk::<HELLO_BYTES>() else {
            return Ok(false);
        };
        let hello = Hello::decode(hello_bytes)?;
        if hello.authenticated != auth.is_some() {
            return Err(ConnectionError::AuthenticationMismatch {
                peer_authenticates: hello.authenticated,
            });
        }
        if hello.to != me {
            return Err(ConnectionError::WrongDestination { to: hello.to, me });
        }
        if !welcome.is_known(hello.from) {
            return Err(ConnectionError::UnknownPeer(hello.from));
        }
        let mut answer = [0; ACK_BYTES + NOISE_2_BYTES];
        answer[..ACK_BYTES].copy_from_slice(
            &Ack {
                from: me,
                authenticated: auth.is_some(),
            }
            .encode(),
        );
        let mut consumed = HELLO_BYTES;
        if let Some(auth) = auth {
            let Some(first) = unread.get(HELLO_BYTES..HELLO_BYTES + NOISE_1_BYTES) else {
                return Ok(false);
            };
            let (accepting, message) = Accepting::answer(auth, hello_bytes, hello.from, first)?;
            answer[ACK_BYTES..].copy_from_slice(&message);
            self.accepting = Some(accepting);
            consumed += NOISE_1_BYTES;
        }
        self.buf.consume(consumed);
        self.peer = Some(hello.from);
        self.ack = answer;
        self.ack_unsent = self.ack_bytes;
        Ok(true)
    }
}

impl End {
    fn into_error(self) -> io::Error {
        match self {
            End::Closed => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the connection closed during the handshake",
            ),
            End::Failed(error) => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffer_with(bytes: &[u8]) -> RecvBuffer {
        let mut buf = RecvBuffer::new();
        let mut reader = bytes;
        while !reader.is_empty() {
            buf.read_from(&mut reader).unwrap();
        }
        buf
    }

    #[test]
    fn frames_are_found_and_handed_out_in_order() {
        let mut wire = Vec::new();
        crate::wire::encode_frame(b"abc", &mut wire).unwrap();
        crate::wire::encode_frame(b"", &mut wire).unwrap();
        wire.extend_from_slice(&[0, 0]);
        let mut buf = buffer_with(&wire);
        assert_eq!(buf.status(16), FrameStatus::Ready(3));
        assert_eq!(buf.payload(3), b"abc");
        buf.pop_frame(3);
        assert_eq!(buf.status(16), FrameStatus::Ready(0));
        buf.pop_frame(0);
        assert_eq!(buf.status(16), FrameStatus::Incomplete);
        assert!(matches!(
            buf.truncation(),
            ConnectionError::Truncated {
                got_bytes: 2,
                expected_bytes: 4
            }
        ));
        assert_eq!(buffer_with(&wire).status(2), FrameStatus::TooLarge(3));
    }

    #[test]
    fn a_lost_connection_keeps_its_complete_frames_and_the_next_one_follows_them() {
        let mut wire = Vec::new();
        crate::wire::encode_frame(b"abc", &mut wire).unwrap();
        crate::wire::encode_frame(b"de", &mut wire).unwrap();
        wire.extend_from_slice(&[0, 0, 0, 9, 1, 2]);
        let mut buf = buffer_with(&wire);
        buf.pop_frame(3);
        assert_eq!(buf.drop_incomplete(16), 6);
        assert_eq!(buf.drop_incomplete(16), 0);

        let mut next = Vec::new();
        crate::wire::encode_frame(b"f", &mut next).unwrap();
        buf.absorb(buffer_with(&next));
        assert_eq!(buf.status(16), FrameStatus::Ready(2));
        assert_eq!(buf.payload(2), b"de");
        buf.pop_frame(2);
        assert_eq!(buf.status(16), FrameStatus::Ready(1));
        assert_eq!(buf.payload(1), b"f");
        buf.pop_frame(1);
        assert!(buf.unread().is_empty());

        // Past an oversized length prefix nothing counts as a frame.
        let mut buf = buffer_with(&[0, 0, 0, 99, 1]);
        assert_eq!(buf.drop_incomplete(16), 5);
        buf.absorb(buffer_with(&next));
        assert_eq!(buf.payload(1), b"f");
    }

    #[test]
    fn reading_stops_at_a_short_read_unless_the_end_was_reported() {
        let mut wire = Vec::new();
        crate::wire::encode_frame(b"abc", &mut wire).unwrap();
        let partial = &wire[..5];
        // A read that does not fill the buffer took everything there was: the poller
        // reports more when it comes.
        let mut buf = RecvBuffer::new();
        let mut ready = Readiness::BOTH;
        assert!(buf.read_frame(&mut &partial[..], &mut ready, 16).is_none());
        assert!(!ready.readable);
        assert_eq!(buf.unread(), partial);
        // But an end reported with the bytes comes with no event of its own: it is read.
        let mut buf = RecvBuffer::new();
        let mut ready = Readiness {
            closed: true,
            ..Readiness::BOTH
        };
        let end = buf.read_frame(&mut &partial[..], &mut ready, 16);
        assert!(matches!(end, Some(End::Closed)));
        assert!(!ready.readable);
        assert!(matches!(
            buf.truncation(),
            ConnectionError::Truncated {
                got_bytes: 5,
                expected_bytes: 7
            }
        ));
        // A complete frame stops reading until it is handed out.
        let mut buf = RecvBuffer::new();
        let mut ready = Readiness::BOTH;
        wire.extend_from_slice(&wire.clone());
        let mut reader = &wire[..];
        assert!(buf.read_frame(&mut reader, &mut ready, 16).is_none());
        assert_eq!(buf.status(16), FrameStatus::Ready(3));
    }

    #[test]
    fn a_buffer_takes_memory_at_its_first_read() {
        let mut buf = RecvBuffer::new();
        assert_eq!(buf.bytes.capacity(), 0);
        assert_eq!(buf.status(16), FrameStatus::Incomplete);
        assert_eq!(buf.drop_incomplete(16), 0);
        let mut wire = Vec::new();
        crate::wire::encode_frame(b"abc", &mut wire).unwrap();
        buf.read_from(&mut &wire[..]).unwrap();
        assert_eq!(buf.bytes.len(), RECV_BUFFER_BYTES);
        assert_eq!(buf.payload(3), b"abc");
    }

    #[test]
    fn a_large_frame_grows_the_buffer_as_it_arrives_and_it_shrinks_after() {
        let payload = vec![7u8; 5 * RECV_BUFFER_BYTES];
        let mut wire = Vec::new();
        crate::wire::encode_frame(&payload, &mut wire).unwrap();
        let mut buf = RecvBuffer::new();
        let mut reader = &wire[..RECV_BUFFER_BYTES + 10];
        while !reader.is_empty() {
            buf.read_from(&mut reader).unwrap();
        }
        // Grown by doubling for the bytes that came, not to the announced size.
        assert_eq!(buf.bytes.len(), 2 * RECV_BUFFER_BYTES);
        let mut reader = &wire[RECV_BUFFER_BYTES + 10..];
        while !reader.is_empty() {
            buf.read_from(&mut reader).unwrap();
        }
        assert_eq!(buf.status(u32::MAX), FrameStatus::Ready(payload.len()));
        assert_eq!(buf.payload(payload.len()), &payload[..]);
        buf.pop_frame(payload.len());
        assert_eq!(buf.bytes.len(), RECV_BUFFER_BYTES);
    }
}
