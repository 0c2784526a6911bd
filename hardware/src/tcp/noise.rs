//! Authentication of TCP connections: each node's static key, the Noise `XX` handshake
//! that proves both ends hold the keys listed for the node ids they claim, and the sealing
//! of every frame after it (the wire format is in [`crate::wire`]).
//!
//! The handshake binds the hello (both node ids and the wire version) as its prologue, so
//! a hello altered on the way fails it. The acceptor takes a connection only after the
//! dialer's third message, which needs the acceptor's fresh ephemeral key: a recorded
//! handshake replayed to it fails there, before it can replace anyone's connection.

use crate::transport::TransportError;
use crate::wire::ConnectionError;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rehearsal_sim_core::protocol::NodeKeys;
use rehearsal_sim_core::NodeId;
use snow::{Builder, HandshakeState, TransportState};
use std::collections::BTreeMap;
use std::fmt;

/// The Noise protocol every authenticated connection runs.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Size of a Noise authentication tag, in bytes.
const TAG_BYTES: usize = 16;

/// Largest Noise message, in bytes (the Noise specification's bound).
const NOISE_MESSAGE_BYTES_MAX: usize = 65_535;

/// Payload bytes one sealed chunk carries, at most.
const CHUNK_BYTES_MAX: usize = NOISE_MESSAGE_BYTES_MAX - TAG_BYTES;

/// The dialer's first handshake message (`e`), after its hello.
pub(super) const NOISE_1_BYTES: usize = 32;

/// The acceptor's handshake message (`e, ee, s, es` and an empty payload's tag), after its
/// acknowledgement.
pub(super) const NOISE_2_BYTES: usize = 32 + 32 + TAG_BYTES + TAG_BYTES;

/// The dialer's last handshake message (`s, se` and an empty payload's tag).
pub(super) const NOISE_3_BYTES: usize = 32 + TAG_BYTES + TAG_BYTES;

/// The keys that authenticate a [`TcpTransport`](crate::TcpTransport)'s connections: its
/// own X25519 static private key, and the static public key listed for every node.
///
/// [`from_node_keys`](TcpAuth::from_node_keys) takes them from the Ed25519 keys of
/// `rehearsal keygen`'s key files, by the standard conversion of an Ed25519 key pair to an
/// X25519 one (the private scalar is the first half of SHA-512 of the Ed25519 seed, and
/// the public key the Montgomery form of the Ed25519 point, as libsodium's
/// `crypto_sign_ed25519_*_to_curve25519` do), so that a key directory serves both the
/// protocols' signatures and the transport, and its public-key list is the list of
/// identities the transport accepts.
///
/// ```
/// use rehearsal_hardware::keys::public_key_of;
/// use rehearsal_hardware::TcpAuth;
/// use rehearsal_sim_core::protocol::{NodeKeys, PrivateKey};
/// use rehearsal_sim_core::NodeId;
///
/// let private: Vec<PrivateKey> = (0..2u8).map(|i| PrivateKey([i + 1; 32])).collect();
/// let public: Vec<[u8; 32]> = private.iter().map(public_key_of).collect();
/// let keys = NodeKeys { me: NodeId(0), private: private[0].clone(), public };
/// let auth = TcpAuth::from_node_keys(&keys).unwrap();
/// assert!(auth.knows(NodeId(1)) && !auth.knows(NodeId(2)));
/// ```
#[derive(Clone)]
pub struct TcpAuth {
    me: NodeId,
    private: [u8; 32],
    public: BTreeMap<NodeId, [u8; 32]>,
}

impl fmt::Debug for TcpAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the private key.
        f.debug_struct("TcpAuth")
            .field("me", &self.me)
            .field("listed_keys", &self.public.len())
            .finish_non_exhaustive()
    }
}

impl TcpAuth {
    /// Node `me`'s X25519 static private key and the X25519 static public key of every
    /// node (its own included). The private key is used as X25519 uses any (clamped).
    pub fn new(me: NodeId, private: [u8; 32], public: BTreeMap<NodeId, [u8; 32]>) -> Self {
        TcpAuth {
            me,
            private,
            public,
        }
    }

    /// The transport keys of a node that holds `keys` (its own Ed25519 private key and
    /// every node's Ed25519 public key, node `i`'s at index `i`), converted to X25519 (see
    /// the type's docs). Refused: a listed key that is not an Ed25519 public key, or a
    /// private key that is not the one listed for the node.
    pub fn from_node_keys(keys: &NodeKeys) -> Result<Self, TransportError> {
        let signing = SigningKey::from_bytes(&keys.private.0);
        let mut public = BTreeMap::new();
        for (i, key) in keys.public.iter().enumerate() {
            let id = NodeId(u32::try_from(i).map_err(|_| {
                TransportError::Config("more listed keys than node ids".to_string())
            })?);
            let verifying = VerifyingKey::from_bytes(key).map_err(|_| {
                TransportError::Config(format!("{id}'s listed key is not an Ed25519 public key"))
            })?;
            public.insert(id, verifying.to_montgomery().to_bytes());
        }
        let own = signing.verifying_key().to_montgomery().to_bytes();
        if public.get(&keys.me) != Some(&own) {
            return Err(TransportError::Config(format!(
                "{}'s private key is not the one listed for it",
                keys.me
            )));
        }
        Ok(TcpAuth::new(keys.me, signing.to_scalar_bytes(), public))
    }

    /// The node these keys are for.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Whether a static key is listed for `id`.
    pub fn knows(&self, id: NodeId) -> bool {
        self.public.contains_key(&id)
    }

    fn builder<'a>(&'a self, prologue: &'a [u8]) -> Result<Builder<'a>, ConnectionError> {
        let params = NOISE_PARAMS.parse().map_err(noise_error)?;
        Builder::new(params)
            .local_private_key(&self.private)
            .and_then(|builder| builder.prologue(prologue))
            .map_err(noise_error)
    }

    /// Checks that the remote static key a handshake proved is the one listed for `node`.
    fn check_remote(&self, state: &HandshakeState, node: NodeId) -> Result<(), ConnectionError> {
        match (state.get_remote_static(), self.public.get(&node)) {
            (Some(proved), Some(listed)) if proved == listed.as_slice() => Ok(()),
            _ => Err(ConnectionError::WrongKey { node }),
        }
    }
}

fn noise_error(error: snow::Error) -> ConnectionError {
    ConnectionError::AuthenticationFailed(error.to_string())
}

/// The dialer's side of the handshake, between its first message and its last.
pub(super) struct Dialing {
    state: Box<HandshakeState>,
}

impl Dialing {
    /// Starts the handshake of a connection whose hello is `hello`: returns the state and
    /// the first message.
    pub fn start(
        auth: &TcpAuth,
        hello: &[u8],
    ) -> Result<(Dialing, [u8; NOISE_1_BYTES]), ConnectionError> {
        let mut state = auth
            .builder(hello)?
            .build_initiator()
            .map_err(noise_error)?;
        // Room for a tag, as snow asks, though the first message has none (no key yet).
        let mut room = [0; NOISE_1_BYTES + TAG_BYTES];
        let written = state.write_message(&[], &mut room).map_err(noise_error)?;
        if written != NOISE_1_BYTES {
            return Err(ConnectionError::AuthenticationFailed(format!(
                "the first handshake message took {written} bytes"
            )));
        }
        let mut message = [0; NOISE_1_BYTES];
        message.copy_from_slice(&room[..NOISE_1_BYTES]);
        let state = Box::new(state);
        Ok((Dialing { state }, message))
    }

    /// Takes the acceptor's message, checks that it proved the key listed for `peer`, and
    /// returns the last message and the connection's frame cipher.
    pub fn finish(
        mut self,
        auth: &TcpAuth,
        peer: NodeId,
        message: &[u8],
    ) -> Result<([u8; NOISE_3_BYTES], FrameCipher), ConnectionError> {
        self.state
            .read_message(message, &mut [0; NOISE_2_BYTES])
            .map_err(noise_error)?;
        auth.check_remote(&self.state, peer)?;
        let mut last = [0; NOISE_3_BYTES];
        let written = self
            .state
            .write_message(&[], &mut last)
            .map_err(noise_error)?;
        debug_assert_eq!(written, NOISE_3_BYTES);
        let transport = self.state.into_transport_mode().map_err(noise_error)?;
        Ok((last, FrameCipher(Box::new(transport))))
    }
}

/// The acceptor's side of the handshake, between its answer and the dialer's last
/// message.
pub(super) struct Accepting {
    state: Box<HandshakeState>,
    peer: NodeId,
}

impl Accepting {
    /// Answers the first message of a dialer whose hello, `hello`, claims to be `peer`:
    /// returns the state and the answer.
    pub fn answer(
        auth: &TcpAuth,
        hello: &[u8],
        peer: NodeId,
        first: &[u8],
    ) -> Result<(Accepting, [u8; NOISE_2_BYTES]), ConnectionError> {
        let mut state = auth
            .builder(hello)?
            .build_responder()
            .map_err(noise_error)?;
        state
            .read_message(first, &mut [0; NOISE_1_BYTES])
            .map_err(noise_error)?;
        let mut answer = [0; NOISE_2_BYTES];
        let written = state.write_message(&[], &mut answer).map_err(noise_error)?;
        debug_assert_eq!(written, NOISE_2_BYTES);
        let state = Box::new(state);
        Ok((Accepting { state, peer }, answer))
    }

    /// Takes the dialer's last message and checks that it proved the key listed for the
    /// node its hello named; returns the connection's frame cipher.
    pub fn finish(mut self, auth: &TcpAuth, last: &[u8]) -> Result<FrameCipher, ConnectionError> {
        self.state
            .read_message(last, &mut [0; NOISE_3_BYTES])
            .map_err(noise_error)?;
        auth.check_remote(&self.state, self.peer)?;
        let transport = self.state.into_transport_mode().map_err(noise_error)?;
        Ok(FrameCipher(Box::new(transport)))
    }
}

/// Seals and opens the frames of one authenticated connection (its Noise transport state:
/// a key and a counting nonce each way).
pub(super) struct FrameCipher(Box<TransportState>);

/// The sealed size of a payload of `payload_bytes`: 16 bytes more per chunk.
pub(super) fn sealed_bytes(payload_bytes: usize) -> usize {
    let chunks = payload_bytes.div_ceil(CHUNK_BYTES_MAX).max(1);
    payload_bytes + chunks * TAG_BYTES
}

/// The payload size of a sealed payload of `sealed_bytes`, if a sealed payload can have
/// that size (each chunk but the last is a full Noise message, the last at least a tag).
pub(super) fn opened_bytes(sealed_bytes: usize) -> Option<usize> {
    let chunks = sealed_bytes.div_ceil(NOISE_MESSAGE_BYTES_MAX);
    let last = sealed_bytes.checked_sub(chunks.checked_sub(1)? * NOISE_MESSAGE_BYTES_MAX)?;
    if last < TAG_BYTES {
        return None;
    }
    Some(sealed_bytes - chunks * TAG_BYTES)
}

impl FrameCipher {
    /// Appends the frame of `payload` to `out`: its sealed length, then the sealed chunks.
    /// Returns the frame's size on the wire. Fails only if the sealed payload does not fit
    /// a length prefix or the nonces ran out (2^64 frames).
    pub fn seal(&mut self, payload: &[u8], out: &mut Vec<u8>) -> Result<usize, ConnectionError> {
        let sealed = sealed_bytes(payload.len());
        let length = u32::try_from(sealed).map_err(|_| ConnectionError::FrameTooLarge {
            frame_bytes: sealed as u64,
            frame_bytes_max: u64::from(u32::MAX),
        })?;
        let header = crate::wire::FRAME_HEADER_BYTES;
        let from = out.len();
        out.resize(from + header + sealed, 0);
        out[from..from + header].copy_from_slice(&length.to_be_bytes());
        let mut at = from + header;
        let mut chunks = payload.chunks(CHUNK_BYTES_MAX);
        // An empty payload is one chunk: its tag.
        let first: &[u8] = chunks.next().unwrap_or_default();
        for chunk in std::iter::once(first).chain(chunks) {
            let written = self
                .0
                .write_message(chunk, &mut out[at..at + chunk.len() + TAG_BYTES])
                .map_err(noise_error)?;
            at += written;
        }
        debug_assert_eq!(at, out.len());
        Ok(header + sealed)
    }

    /// Opens a sealed payload into `out`, which has room for exactly its
    /// [`opened_bytes`]. Fails if any chunk fails its tag.
    pub fn open(&mut self, sealed: &[u8], out: &mut [u8]) -> Result<(), ConnectionError> {
        let rejected = || ConnectionError::FrameRejected {
            frame_bytes: sealed.len() as u64,
        };
        // An empty frame would open to an empty payload without a tag: refused, as is any
        // size no sealed payload has.
        if opened_bytes(sealed.len()) != Some(out.len()) {
            return Err(rejected());
        }
        let mut at = 0;
        for chunk in sealed.chunks(NOISE_MESSAGE_BYTES_MAX) {
            let room = chunk.len().checked_sub(TAG_BYTES).ok_or_else(rejected)?;
            let target = out.get_mut(at..at + room).ok_or_else(rejected)?;
            self.0.read_message(chunk, target).map_err(|_| rejected())?;
            at += room;
        }
        if at != out.len() {
            return Err(rejected());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::public_key_of;
    use rehearsal_sim_core::protocol::PrivateKey;

    fn auths(count: u8) -> Vec<TcpAuth> {
        let private: Vec<PrivateKey> = (0..count).map(|i| PrivateKey([i + 7; 32])).collect();
        let public: Vec<[u8; 32]> = private.iter().map(public_key_of).collect();
        (0..count)
            .map(|i| {
                let keys = NodeKeys {
                    me: NodeId(u32::from(i)),
                    private: private[usize::from(i)].clone(),
                    public: public.clone(),
                };
                TcpAuth::from_node_keys(&keys).unwrap()
            })
            .collect()
    }

    /// A handshake between `dialer` claiming `claimed` and `acceptor` (`auth` of each).
    fn handshake(
        dialer: &TcpAuth,
        acceptor: &TcpAuth,
        claimed: NodeId,
    ) -> Result<(FrameCipher, FrameCipher), ConnectionError> {
        let hello = b"hello";
        let (dialing, first) = Dialing::start(dialer, hello)?;
        let (accepting, answer) = Accepting::answer(acceptor, hello, claimed, &first)?;
        let (last, dialer_cipher) = dialing.finish(dialer, acceptor.me(), &answer)?;
        let acceptor_cipher = accepting.finish(acceptor, &last)?;
        Ok((dialer_cipher, acceptor_cipher))
    }

    #[test]
    fn sealed_sizes_invert() {
        for payload in [
            0,
            1,
            100,
            CHUNK_BYTES_MAX - 1,
            CHUNK_BYTES_MAX,
            CHUNK_BYTES_MAX + 1,
        ]
        .into_iter()
        .chain([2 * CHUNK_BYTES_MAX, 2 * CHUNK_BYTES_MAX + 5, 1 << 20])
        {
            assert_eq!(
                opened_bytes(sealed_bytes(payload)),
                Some(payload),
                "{payload}"
            );
        }
        for impossible in [0, 15, NOISE_MESSAGE_BYTES_MAX + 15] {
            assert_eq!(opened_bytes(impossible), None, "{impossible}");
        }
    }

    #[test]
    fn frames_of_every_size_round_trip_and_an_altered_or_replayed_one_is_rejected() {
        let keys = auths(2);
        let (mut sender, mut receiver) = handshake(&keys[0], &keys[1], NodeId(0)).unwrap();
        let mut wire = Vec::new();
        let payloads: Vec<Vec<u8>> = [0, 5, CHUNK_BYTES_MAX, 3 * CHUNK_BYTES_MAX + 9]
            .iter()
            .map(|&n| (0..n).map(|i| i as u8).collect())
            .collect();
        for payload in &payloads {
            wire.clear();
            let length = sender.seal(payload, &mut wire).unwrap();
            assert_eq!(length, wire.len());
            let sealed = &wire[4..];
            let mut opened = vec![0; opened_bytes(sealed.len()).unwrap()];
            receiver.open(sealed, &mut opened).unwrap();
            assert_eq!(&opened, payload);
            // The same frame again: its nonce is spent.
            assert!(receiver.open(sealed, &mut opened).is_err());
        }
        let (mut sender, mut receiver) = handshake(&keys[0], &keys[1], NodeId(0)).unwrap();
        for payload in &payloads {
            wire.clear();
            sender.seal(payload, &mut wire).unwrap();
            let mut opened = vec![0; payload.len()];
            receiver.open(&wire[4..], &mut opened).unwrap();
            assert_eq!(&opened, payload);
        }
        wire.clear();
        sender.seal(b"abc", &mut wire).unwrap();
        wire[6] ^= 1;
        let mut opened = [0; 3];
        assert!(matches!(
            receiver.open(&wire[4..], &mut opened),
            Err(ConnectionError::FrameRejected { frame_bytes: 19 })
        ));
    }

    #[test]
    fn garbage_of_any_length_is_rejected_without_a_panic() {
        let keys = auths(2);
        let (_, mut receiver) = handshake(&keys[0], &keys[1], NodeId(0)).unwrap();
        let lengths = (0..64)
            .chain(NOISE_MESSAGE_BYTES_MAX - 2..NOISE_MESSAGE_BYTES_MAX + 20)
            .chain([2 * NOISE_MESSAGE_BYTES_MAX + 16]);
        for length in lengths {
            let garbage: Vec<u8> = (0..length).map(|i| (i * 7 + 3) as u8).collect();
            let opened = opened_bytes(length).unwrap_or(0);
            for room in [opened, opened + 1, opened.saturating_sub(1)] {
                let mut out = vec![0; room];
                assert!(
                    receiver.open(&garbage, &mut out).is_err(),
                    "{length}, {room}"
                );
            }
        }
        // And handshake messages of the wrong size or content.
        let hello = b"hello";
        for length in [0, 31, 32, 33, 96, 200] {
            let garbage = vec![0x5au8; length];
            let answered = Accepting::answer(&keys[1], hello, NodeId(0), &garbage);
            if let Ok((accepting, _)) = answered {
                assert!(accepting.finish(&keys[1], &garbage).is_err());
            }
            let (dialing, _) = Dialing::start(&keys[0], hello).unwrap();
            assert!(dialing.finish(&keys[0], NodeId(1), &garbage).is_err());
        }
    }

    #[test]
    fn a_wrong_key_or_a_replayed_handshake_fails() {
        let keys = auths(3);
        // Node 2 claims to be node 0: it cannot prove node 0's key.
        assert!(matches!(
            handshake(&keys[2], &keys[1], NodeId(0)),
            Err(ConnectionError::WrongKey { node: NodeId(0) })
        ));
        // The acceptor is checked too: node 1 answers where node 2 was dialed.
        let hello = b"hello";
        let (dialing, first) = Dialing::start(&keys[0], hello).unwrap();
        let (_, answer) = Accepting::answer(&keys[1], hello, NodeId(0), &first).unwrap();
        assert!(matches!(
            dialing.finish(&keys[0], NodeId(2), &answer),
            Err(ConnectionError::WrongKey { node: NodeId(2) })
        ));
        // A recorded first and last message, replayed: the acceptor's new ephemeral key
        // makes the last one fail.
        let (dialing, first) = Dialing::start(&keys[0], hello).unwrap();
        let (accepting, answer) = Accepting::answer(&keys[1], hello, NodeId(0), &first).unwrap();
        let (last, _) = dialing.finish(&keys[0], NodeId(1), &answer).unwrap();
        accepting.finish(&keys[1], &last).unwrap();
        let (replayed, _) = Accepting::answer(&keys[1], hello, NodeId(0), &first).unwrap();
        assert!(matches!(
            replayed.finish(&keys[1], &last),
            Err(ConnectionError::AuthenticationFailed(_))
        ));
        // Another prologue (an altered hello) fails too.
        let (dialing, first) = Dialing::start(&keys[0], hello).unwrap();
        let (_, answer) = Accepting::answer(&keys[1], b"hellO", NodeId(0), &first).unwrap();
        assert!(dialing.finish(&keys[0], NodeId(1), &answer).is_err());
    }
}
