//! The receive side: frames read into one buffer per peer (its connections' bytes in turn)
//! and handed to [`Transport::poll`](crate::Transport::poll) straight from it, without a
//! copy; and accepted connections during the acceptor's side of the handshake.

use super::socket::Interest;
use crate::syscalls::{Counted, Syscall, SyscallCounter};
use crate::wire::{Ack, ConnectionError, Hello, ACK_BYTES, FRAME_HEADER_BYTES, HELLO_BYTES};
use rehearsal_sim_core::NodeId;
use std::io::{self, Read, Write};
use std::net::TcpStream;
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

    /// Reads once from a non-blocking `stream` (see [`read_from`](RecvBuffer::read_from)).
    /// Returns how the stream ended, if this read found its end or failed; nothing if it
    /// read bytes or there were none yet.
    pub fn read_once(&mut self, stream: &mut impl Read) -> Option<End> {
        match self.read_from(stream) {
            Ok(0) => Some(End::Closed),
            Ok(_) => None,
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                None
            }
            Err(error) => Some(End::Failed(error)),
        }
    }

    /// Reads once from `stream` into the free space, making room first. Only called while
    /// the unread bytes hold no complete frame (so growing is for a frame in progress, whose
    /// announced length is at most the maximum).
    pub fn read_from(&mut self, stream: &mut impl Read) -> io::Result<usize> {
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
        let count = stream.read(&mut self.bytes[self.end..])?;
        self.end += count;
        Ok(count)
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
/// and the acknowledgement is written, the connection is handed to that peer's
/// [`Peer`](super::peer::Peer), which carries frames both ways on it.
pub(super) struct InboundConn {
    pub stream: TcpStream,
    /// The remote address, for error messages.
    pub remote: String,
    /// The peer, once its hello passed.
    pub peer: Option<NodeId>,
    /// When a handshake still missing counts as silence.
    pub handshake_deadline: Instant,
    ack: [u8; ACK_BYTES],
    /// Bytes at the end of `ack` not written yet.
    ack_unsent: usize,
    /// What was read: the hello, and anything the dialer sent after it.
    pub buf: RecvBuffer,
    end: Option<End>,
    /// Set when the handshake failed; the connection is then closed and removed.
    pub fate: Option<ConnectionError>,
    /// What the poller watches it for, once registered.
    pub watched: Option<Interest>,
}

impl InboundConn {
    pub fn new(stream: TcpStream, remote: String, handshake_deadline: Instant) -> Self {
        InboundConn {
            stream,
            remote,
            peer: None,
            handshake_deadline,
            ack: [0; ACK_BYTES],
            ack_unsent: 0,
            buf: RecvBuffer::new(),
            end: None,
            fate: None,
            watched: None,
        }
    }

    /// Whether to read when the socket is readable: until the hello is complete.
    pub fn wants_read(&self) -> bool {
        self.fate.is_none()
            && self.end.is_none()
            && self.peer.is_none()
            && self.buf.unread().len() < HELLO_BYTES
    }

    pub fn wants_write(&self) -> bool {
        self.fate.is_none() && self.ack_unsent > 0
    }

    /// What to watch the socket for: reading (the hello, or the connection's end), and
    /// writing while the acknowledgement is not out.
    pub fn interest(&self) -> Interest {
        Interest {
            read: true,
            write: self.wants_write(),
        }
    }

    /// The handshake passed and its acknowledgement is out: the connection goes to its
    /// peer.
    pub fn complete(&self) -> Option<NodeId> {
        match self.peer {
            Some(peer) if self.fate.is_none() && self.ack_unsent == 0 => Some(peer),
            _ => None,
        }
    }

    /// Reads once; notes the end of the stream or a failure.
    pub fn read(&mut self, syscalls: &SyscallCounter) {
        self.end = self.buf.read_once(&mut Counted {
            inner: &mut self.stream,
            counter: syscalls,
        });
    }

    /// Writes what is left of the handshake answer.
    pub fn write_ack(&mut self, syscalls: &SyscallCounter) {
        while self.ack_unsent > 0 {
            let from = ACK_BYTES - self.ack_unsent;
            syscalls.count(Syscall::Write);
            match self.stream.write(&self.ack[from..]) {
                Ok(0) => {
                    let error = io::Error::from(io::ErrorKind::WriteZero);
                    self.fate = Some(ConnectionError::Handshake(error));
                    return;
                }
                Ok(count) => self.ack_unsent -= count,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) => {
                    self.fate = Some(ConnectionError::Handshake(error));
                    return;
                }
            }
        }
    }

    /// Checks the hello once it has arrived and answers it. Sets the fate when it failed,
    /// or when the connection ended or fell silent before the handshake completed.
    pub fn handshake(
        &mut self,
        me: NodeId,
        now: Instant,
        is_known: impl Fn(NodeId) -> bool,
        syscalls: &SyscallCounter,
    ) {
        if self.fate.is_some() {
            return;
        }
        if self.peer.is_some() {
            if self.ack_unsent > 0 {
                // Only the acknowledgement is missing: the dialer must take it in time.
                if let Some(end) = self.end.take() {
                    self.fate = Some(ConnectionError::Handshake(end.into_error()));
                } else if now >= self.handshake_deadline {
                    let error =
                        io::Error::new(io::ErrorKind::TimedOut, "the dialer took no answer");
                    self.fate = Some(ConnectionError::Handshake(error));
                }
            }
            return;
        }
        let Some(hello) = self.buf.unread().first_chunk::<HELLO_BYTES>() else {
            let error = match self.end.take() {
                Some(end) => end.into_error(),
                None if now >= self.handshake_deadline => {
                    io::Error::new(io::ErrorKind::TimedOut, "no handshake in time")
                }
                None => return,
            };
            self.fate = Some(ConnectionError::Handshake(error));
            return;
        };
        let checked = Hello::decode(hello).and_then(|hello| {
            if hello.to != me {
                Err(ConnectionError::WrongDestination { to: hello.to, me })
            } else if !is_known(hello.from) {
                Err(ConnectionError::UnknownPeer(hello.from))
            } else {
                Ok(hello.from)
            }
        });
        match checked {
            Ok(from) => {
                self.buf.consume(HELLO_BYTES);
                self.peer = Some(from);
                self.ack = Ack { from: me }.encode();
                self.ack_unsent = ACK_BYTES;
                self.write_ack(syscalls);
            }
            Err(error) => self.fate = Some(error),
        }
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
