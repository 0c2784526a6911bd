//! The TCP wire format: a handshake, then length-prefixed frames. All integers are
//! big-endian (network order).
//!
//! ```text
//! dialer -> acceptor   hello: magic "RHRS" | version u16 | from u32 | to u32   (14 bytes)
//! acceptor -> dialer   ack:   magic "RHRS" | version u16 | acceptor id u32     (10 bytes)
//! both ways            frame: length u32 | payload (length bytes), repeated
//! ```
//!
//! Two nodes share one connection, which carries frames both ways, so that TCP's
//! acknowledgements ride on the frames going back. The node with the lower id dials it;
//! the other waits for it. The dialer writes frames only once the acknowledgement came;
//! the acceptor writes them right after its acknowledgement. An acceptor takes a valid
//! hello from any known peer, and a newer connection of a peer replaces the older one.
//!
//! Authenticated connections (version [`WIRE_VERSION_AUTHENTICATED`]; see
//! [`TcpAuth`](crate::TcpAuth)) run a Noise `XX` handshake (`Noise_XX_25519_ChaChaPoly_SHA256`,
//! with the hello as its prologue) inside the same exchange, and seal every frame:
//!
//! ```text
//! dialer -> acceptor   hello (14 bytes) | Noise message 1: e                 (32 bytes)
//! acceptor -> dialer   ack (10 bytes)   | Noise message 2: e, ee, s, es      (96 bytes)
//! dialer -> acceptor   Noise message 3: s, se                                 (64 bytes)
//! both ways            frame: length u32 | sealed payload (length bytes), repeated
//! ```
//!
//! A sealed payload is the payload cut into chunks of at most 65,519 bytes, each one Noise
//! transport message (the chunk encrypted, then a 16-byte tag), so `length` is the
//! payload's size plus 16 bytes per chunk (an empty payload is one tag). The messages'
//! nonces count up on each connection, so a frame replayed, reordered, dropped or altered
//! fails its tag.

use rehearsal_sim_core::NodeId;
use std::io::{self, Read};

/// First bytes of every handshake.
pub const MAGIC: [u8; 4] = *b"RHRS";

/// Version of this wire format, unauthenticated; a handshake with a version other than
/// this one or [`WIRE_VERSION_AUTHENTICATED`] is refused.
pub const WIRE_VERSION: u16 = 2;

/// Version of this wire format with a Noise handshake and sealed frames (see the module
/// docs). A node speaks one of the two versions, and refuses the other.
pub const WIRE_VERSION_AUTHENTICATED: u16 = 3;

/// Size of [`Hello`] on the wire, in bytes.
pub const HELLO_BYTES: usize = 14;

/// Size of [`Ack`] on the wire, in bytes.
pub const ACK_BYTES: usize = 10;

/// Size of a frame's length prefix, in bytes.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Why a connection was closed: a handshake (accepted or dialed) that failed, or a frame
/// or i/o error on an established connection (either side's).
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// The handshake does not start with [`MAGIC`]: not a Rehearsal peer.
    #[error("bad magic {found:02x?} in handshake (expected {MAGIC:02x?})")]
    BadMagic {
        /// The four bytes received.
        found: [u8; 4],
    },
    /// The peer speaks another version of the wire format.
    #[error("wire version {found} in handshake (expected {WIRE_VERSION} or {WIRE_VERSION_AUTHENTICATED})")]
    BadVersion {
        /// The version received.
        found: u16,
    },
    /// One side authenticates its connections and the other does not: they were given
    /// different keys (a cluster file with `keys = "DIR"`, and one without).
    #[error(
        "{}: give every node of the cluster the same key directory",
        if *.peer_authenticates {
            "the peer authenticates its connections and this node has no keys"
        } else {
            "the peer does not authenticate its connections and this node requires it"
        }
    )]
    AuthenticationMismatch {
        /// Whether the peer spoke the authenticated version.
        peer_authenticates: bool,
    },
    /// A Noise handshake message failed: not made with the keys it claims (an impostor, a
    /// recorded handshake replayed, bytes altered on the way).
    #[error("authentication failed: {0}")]
    AuthenticationFailed(String),
    /// The remote end proved a static key other than the one listed for the node it
    /// claims to be.
    #[error("{node} proved a key other than the one listed for it: an impostor, or keys of another cluster")]
    WrongKey {
        /// The node the remote end claims to be.
        node: NodeId,
    },
    /// A frame on an authenticated connection failed its tag: altered, replayed, reordered
    /// or cut.
    #[error(
        "a frame of {frame_bytes} bytes failed authentication (altered, replayed or reordered)"
    )]
    FrameRejected {
        /// The frame's sealed length.
        frame_bytes: u64,
    },
    /// The handshake names a node that is not in the peer table (or this node itself).
    #[error("handshake from unknown node {0}")]
    UnknownPeer(NodeId),
    /// The handshake is addressed to another node: the dialer's peer table is wrong.
    #[error("handshake addressed to {to}, but this is {me}")]
    WrongDestination {
        /// The node the dialer meant to reach.
        to: NodeId,
        /// This node.
        me: NodeId,
    },
    /// The peer closed the connection or went silent during the handshake.
    #[error("handshake incomplete: {0}")]
    Handshake(io::Error),
    /// A frame's length prefix exceeds the configured maximum.
    #[error("frame of {frame_bytes} bytes exceeds the maximum of {frame_bytes_max} bytes")]
    FrameTooLarge {
        /// The announced length.
        frame_bytes: u64,
        /// The configured maximum.
        frame_bytes_max: u64,
    },
    /// The connection ended inside a frame.
    #[error("connection closed inside a frame: got {got_bytes} of {expected_bytes} bytes")]
    Truncated {
        /// Bytes of the frame (header included) received.
        got_bytes: u64,
        /// Bytes of the frame (header included) announced.
        expected_bytes: u64,
    },
    /// The node that answered an outbound handshake is not the one dialed.
    #[error("dialed {expected}, but {found} answered")]
    WrongPeer {
        /// The node the peer table names for the address.
        expected: NodeId,
        /// The node that answered.
        found: NodeId,
    },
    /// Too many inbound connections are open already.
    #[error("too many inbound connections (at most {0})")]
    TooManyConnections(usize),
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// The dialer's handshake: who it is and whom it means to reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The dialing node.
    pub from: NodeId,
    /// The node the dialer believes it is connecting to.
    pub to: NodeId,
    /// Whether the dialer authenticates ([`WIRE_VERSION_AUTHENTICATED`]).
    pub authenticated: bool,
}

impl Hello {
    /// The handshake as sent on the wire.
    pub fn encode(&self) -> [u8; HELLO_BYTES] {
        let mut bytes = [0; HELLO_BYTES];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4..6].copy_from_slice(&version(self.authenticated).to_be_bytes());
        bytes[6..10].copy_from_slice(&self.from.0.to_be_bytes());
        bytes[10..14].copy_from_slice(&self.to.0.to_be_bytes());
        bytes
    }

    /// Parses a handshake, checking magic and version.
    pub fn decode(bytes: &[u8; HELLO_BYTES]) -> Result<Hello, ConnectionError> {
        let authenticated = check_preamble(bytes)?;
        Ok(Hello {
            from: NodeId(u32_at(bytes, 6)),
            to: NodeId(u32_at(bytes, 10)),
            authenticated,
        })
    }
}

/// The acceptor's answer to a valid [`Hello`]: it names itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ack {
    /// The accepting node.
    pub from: NodeId,
    /// Whether the acceptor authenticates ([`WIRE_VERSION_AUTHENTICATED`]).
    pub authenticated: bool,
}

impl Ack {
    /// The answer as sent on the wire.
    pub fn encode(&self) -> [u8; ACK_BYTES] {
        let mut bytes = [0; ACK_BYTES];
        bytes[..4].copy_from_slice(&MAGIC);
        bytes[4..6].copy_from_slice(&version(self.authenticated).to_be_bytes());
        bytes[6..10].copy_from_slice(&self.from.0.to_be_bytes());
        bytes
    }

    /// Parses an answer, checking magic and version.
    pub fn decode(bytes: &[u8; ACK_BYTES]) -> Result<Ack, ConnectionError> {
        let authenticated = check_preamble(bytes)?;
        Ok(Ack {
            from: NodeId(u32_at(bytes, 6)),
            authenticated,
        })
    }
}

fn version(authenticated: bool) -> u16 {
    if authenticated {
        WIRE_VERSION_AUTHENTICATED
    } else {
        WIRE_VERSION
    }
}

/// Checks magic and version; returns whether the version is the authenticated one.
fn check_preamble(bytes: &[u8]) -> Result<bool, ConnectionError> {
    let mut found = [0; 4];
    found.copy_from_slice(&bytes[..4]);
    if found != MAGIC {
        return Err(ConnectionError::BadMagic { found });
    }
    match u16::from_be_bytes([bytes[4], bytes[5]]) {
        WIRE_VERSION => Ok(false),
        WIRE_VERSION_AUTHENTICATED => Ok(true),
        found => Err(ConnectionError::BadVersion { found }),
    }
}

impl ConnectionError {
    /// Whether the connection failed authentication (rather than framing or i/o).
    pub fn is_authentication(&self) -> bool {
        matches!(
            self,
            ConnectionError::AuthenticationFailed(_)
                | ConnectionError::WrongKey { .. }
                | ConnectionError::FrameRejected { .. }
        )
    }
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
}

/// Appends one frame (length prefix and payload) to `out`. The caller checks the length
/// against its maximum; a payload longer than `u32::MAX` bytes is refused here.
pub fn encode_frame(payload: &[u8], out: &mut Vec<u8>) -> Result<(), ConnectionError> {
    let length = u32::try_from(payload.len()).map_err(|_| ConnectionError::FrameTooLarge {
        frame_bytes: payload.len() as u64,
        frame_bytes_max: u64::from(u32::MAX),
    })?;
    out.reserve(FRAME_HEADER_BYTES + payload.len());
    out.extend_from_slice(&length.to_be_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// Reads one frame from `reader` into `payload` (replacing its contents). Returns
/// `Ok(false)` on a clean end of stream before the frame starts; a frame longer than
/// `frame_bytes_max` or cut short is an error.
pub fn read_frame(
    reader: &mut impl Read,
    frame_bytes_max: u32,
    payload: &mut Vec<u8>,
) -> Result<bool, ConnectionError> {
    let mut header = [0u8; FRAME_HEADER_BYTES];
    let got = read_full(reader, &mut header)?;
    if got == 0 {
        return Ok(false);
    }
    let length = u32::from_be_bytes(header);
    if got < FRAME_HEADER_BYTES {
        return Err(ConnectionError::Truncated {
            got_bytes: got as u64,
            expected_bytes: FRAME_HEADER_BYTES as u64,
        });
    }
    if length > frame_bytes_max {
        return Err(ConnectionError::FrameTooLarge {
            frame_bytes: u64::from(length),
            frame_bytes_max: u64::from(frame_bytes_max),
        });
    }
    // Grow the buffer as bytes arrive rather than trusting the announced length up front, so
    // a peer that announces a large frame and sends nothing costs no memory.
    payload.clear();
    reader
        .by_ref()
        .take(u64::from(length))
        .read_to_end(payload)?;
    if payload.len() < length as usize {
        return Err(ConnectionError::Truncated {
            got_bytes: (FRAME_HEADER_BYTES + payload.len()) as u64,
            expected_bytes: FRAME_HEADER_BYTES as u64 + u64::from(length),
        });
    }
    Ok(true)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_and_ack_round_trip() {
        for authenticated in [false, true] {
            let hello = Hello {
                from: NodeId(3),
                to: NodeId(70_000),
                authenticated,
            };
            assert_eq!(Hello::decode(&hello.encode()).ok(), Some(hello));
            let ack = Ack {
                from: NodeId(9),
                authenticated,
            };
            assert_eq!(Ack::decode(&ack.encode()).ok(), Some(ack));
        }
    }

    #[test]
    fn bad_magic_and_version_are_refused() {
        let mut bytes = Hello {
            from: NodeId(1),
            to: NodeId(2),
            authenticated: false,
        }
        .encode();
        bytes[5] = 99;
        assert!(matches!(
            Hello::decode(&bytes),
            Err(ConnectionError::BadVersion { found: 99 })
        ));
        bytes[0] = b'X';
        assert!(matches!(
            Hello::decode(&bytes),
            Err(ConnectionError::BadMagic { .. })
        ));
    }

    #[test]
    fn frames_round_trip_and_limits_hold() {
        let mut wire = Vec::new();
        encode_frame(b"abc", &mut wire).unwrap();
        encode_frame(b"", &mut wire).unwrap();
        let mut reader = &wire[..];
        let mut payload = Vec::new();
        assert!(read_frame(&mut reader, 16, &mut payload).unwrap());
        assert_eq!(payload, b"abc");
        assert!(read_frame(&mut reader, 16, &mut payload).unwrap());
        assert!(payload.is_empty());
        assert!(!read_frame(&mut reader, 16, &mut payload).unwrap());

        let mut reader = &wire[..];
        assert!(matches!(
            read_frame(&mut reader, 2, &mut payload),
            Err(ConnectionError::FrameTooLarge {
                frame_bytes: 3,
                frame_bytes_max: 2
            })
        ));
        let mut reader = &wire[..5];
        assert!(matches!(
            read_frame(&mut reader, 16, &mut payload),
            Err(ConnectionError::Truncated {
                got_bytes: 5,
                expected_bytes: 7
            })
        ));
        let mut reader = &wire[..2];
        assert!(matches!(
            read_frame(&mut reader, 16, &mut payload),
            Err(ConnectionError::Truncated {
                got_bytes: 2,
                expected_bytes: 4
            })
        ));
    }
}
