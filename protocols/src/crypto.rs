//! Authentication for Byzantine protocols: digests, and signatures behind one interface
//! with two schemes.
//!
//! - [`CryptoKind::Real`]: Ed25519 signatures (`ed25519-dalek`), as a deployment would use.
//! - [`CryptoKind::Sim`]: a keyed BLAKE3 MAC truncated to 128 bits, roughly a hundred
//!   times cheaper, for large simulations. It is unforgeable *inside the simulator*: each
//!   node's [`Crypto`] holds only its own key, and the keys of all nodes live in a shared
//!   [`Verifier`] that can check a tag but offers no way to make one. (Outside the
//!   simulator it is no signature at all: whoever holds the verifier could compute tags.)
//!
//! In the simulator (and a testbed) keys are derived from a seed, so a run is reproducible
//! and a restarted node gets its key back: [`Crypto::testbed`] derives one node's own key,
//! [`Crypto::testbed_verifier`] everybody's public keys. On a deployment a node holds its
//! own Ed25519 private key and the list of public keys, from key files
//! ([`Crypto::ed25519`]); the simulated scheme has no such form, since its verifier holds
//! every node's secret.
//!
//! ```
//! use rehearsal_protocols::crypto::{Crypto, CryptoKind};
//! use rehearsal_sim_core::NodeId;
//!
//! let nodes = Crypto::generate(CryptoKind::Sim, 7, 3);
//! let sig = nodes[1].sign(b"prepare v0 n1");
//! assert!(nodes[0].verify(NodeId(1), b"prepare v0 n1", &sig));
//! assert!(!nodes[0].verify(NodeId(2), b"prepare v0 n1", &sig)); // not node 2's
//! assert!(!nodes[0].verify(NodeId(1), b"prepare v0 n2", &sig)); // not this content
//! ```

use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use rehearsal_sim_core::protocol::KeySource;
use rehearsal_sim_core::NodeId;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Which signature scheme a run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CryptoKind {
    /// Ed25519: real, slow (tens of microseconds per signature check).
    Real,
    /// Keyed BLAKE3 MAC whose keys only the shared verifier holds: fast, and unforgeable
    /// by any actor inside the simulator.
    #[default]
    Sim,
}

impl CryptoKind {
    pub const NAMES: &'static [&'static str] = &["real", "sim"];
}

impl fmt::Display for CryptoKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CryptoKind::Real => "real",
            CryptoKind::Sim => "sim",
        })
    }
}

impl FromStr for CryptoKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "real" => Ok(CryptoKind::Real),
            "sim" => Ok(CryptoKind::Sim),
            other => Err(format!("unknown crypto `{other}`: expected real or sim")),
        }
    }
}

/// A collision-resistant digest (BLAKE3, 256 bits). Printed as its first 8 hex digits;
/// serialized as bytes (hex in human-readable formats such as trace JSON).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Digest(pub [u8; 32]);

/// The bytes' lexicographic order, compared eight bytes at a time: digests key the block
/// and certificate maps, and the derived order's `memcmp` call cost more than the rest of
/// a lookup.
impl Ord for Digest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        let word = |d: &Digest, i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&d.0[i * 8..i * 8 + 8]);
            u64::from_be_bytes(w)
        };
        (0..4)
            .map(|i| word(self, i).cmp(&word(other, i)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    }
}

impl PartialOrd for Digest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Digest {
    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Digest {
        Digest(*blake3::hash(bytes).as_bytes())
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl From<blake3::Hash> for Digest {
    fn from(hash: blake3::Hash) -> Self {
        Digest(*hash.as_bytes())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0[..4] {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A signature (or, for [`CryptoKind::Sim`], a tag) over some bytes by one node.
/// Serialized as its bytes (16 for a MAC, 64 for Ed25519), hex in human-readable formats.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    /// Keyed BLAKE3, truncated to 128 bits.
    Mac([u8; 16]),
    /// Ed25519: R and s.
    Ed25519([u8; 32], [u8; 32]),
}

impl Signature {
    /// Writes the signature's bytes into `out` and returns how many (16 or 64).
    fn to_bytes(self, out: &mut [u8; 64]) -> usize {
        match self {
            Signature::Mac(tag) => {
                out[..16].copy_from_slice(&tag);
                16
            }
            Signature::Ed25519(r, s) => {
                out[..32].copy_from_slice(&r);
                out[32..].copy_from_slice(&s);
                64
            }
        }
    }

    fn from_bytes(bytes: &[u8]) -> Option<Signature> {
        match bytes.len() {
            16 => {
                let mut tag = [0u8; 16];
                tag.copy_from_slice(bytes);
                Some(Signature::Mac(tag))
            }
            64 => {
                let (mut r, mut s) = ([0u8; 32], [0u8; 32]);
                r.copy_from_slice(&bytes[..32]);
                s.copy_from_slice(&bytes[32..]);
                Some(Signature::Ed25519(r, s))
            }
            _ => None,
        }
    }
}

// Both types serialize as one byte string (a length and a copy: far cheaper than serde's
// element-by-element arrays), or as hex where a human reads them.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Visits a byte string given as bytes, a sequence of bytes, or a hex string.
struct BytesVisitor;

impl<'de> serde::de::Visitor<'de> for BytesVisitor {
    type Value = Vec<u8>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes or a hex string")
    }

    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
        Ok(v.to_vec())
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Vec<u8>, E> {
        unhex(v).ok_or_else(|| E::custom("not a hex string"))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
        let mut out = Vec::new();
        while let Some(b) = seq.next_element::<u8>()? {
            if out.len() >= 64 {
                return Err(serde::de::Error::custom("too many bytes"));
            }
            out.push(b);
        }
        Ok(out)
    }
}

fn deserialize_bytes<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
    if d.is_human_readable() {
        d.deserialize_str(BytesVisitor)
    } else {
        d.deserialize_bytes(BytesVisitor)
    }
}

impl Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if s.is_human_readable() {
            s.serialize_str(&hex(&self.0))
        } else {
            s.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = deserialize_bytes(d)?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| serde::de::Error::custom("a digest has 32 bytes"))?;
        Ok(Digest(array))
    }
}

impl Serialize for Signature {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut buf = [0u8; 64];
        let len = self.to_bytes(&mut buf);
        if s.is_human_readable() {
            s.serialize_str(&hex(&buf[..len]))
        } else {
            s.serialize_bytes(&buf[..len])
        }
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let bytes = deserialize_bytes(d)?;
        Signature::from_bytes(&bytes)
            .ok_or_else(|| serde::de::Error::custom("a signature has 16 or 64 bytes"))
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (scheme, head) = match self {
            Signature::Mac(tag) => ("mac", &tag[..3]),
            Signature::Ed25519(r, _) => ("ed25519", &r[..3]),
        };
        write!(f, "{scheme}:")?;
        for b in head {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// One node's signing key: only its own.
#[derive(Clone)]
enum SigningSecret {
    Mac([u8; 32]),
    Ed25519(Box<SigningKey>),
}

/// Checks any node's signatures; shared by all nodes of a run. It holds every node's
/// verification key (for the simulated scheme: the MAC keys themselves) and deliberately
/// has no method that produces a signature.
///
/// An Ed25519 signature it found valid is remembered (a few thousand, the latest win),
/// with its signer and the bytes signed: the same signature over the same bytes checked
/// again (a multicast message reaching each of its receivers, in a simulation where they
/// share this verifier) is known valid after comparing them, without the cryptography.
/// Only checks that succeeded are remembered, so nothing is accepted that a check would
/// refuse. (The simulated scheme's MAC is recomputed faster than it is looked up.)
pub struct Verifier {
    keys: VerifierKeys,
    checked: std::sync::Mutex<Vec<Option<Checked>>>,
    /// This verifier among the process's (from 1): what a [`Shared`] message remembers.
    id: u64,
}

/// The next [`Verifier::id`].
static NEXT_VERIFIER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// A signature found valid, in its slot of [`Verifier::checked`].
struct Checked {
    signer: NodeId,
    sig: Signature,
    bytes: Vec<u8>,
}

/// Slots of remembered signatures (a power of two).
const CHECKED_SLOTS: usize = 4096;

/// The slot of a signature: its first bytes, which are as good as random.
fn slot_of(sig: &Signature) -> usize {
    let head = match sig {
        Signature::Mac(tag) => &tag[..8],
        Signature::Ed25519(r, _) => &r[..8],
    };
    let mut word = [0u8; 8];
    word.copy_from_slice(head);
    (u64::from_le_bytes(word) as usize) & (CHECKED_SLOTS - 1)
}

enum VerifierKeys {
    Mac(Vec<[u8; 32]>),
    Ed25519(Vec<VerifyingKey>),
}

impl Verifier {
    fn new(keys: VerifierKeys) -> Verifier {
        Verifier {
            keys,
            checked: std::sync::Mutex::new(Vec::new()),
            id: NEXT_VERIFIER.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// Whether `sig` is `signer`'s signature over `bytes`. Unknown signers, and
    /// signatures of the other scheme, are invalid.
    pub fn verify(&self, signer: NodeId, bytes: &[u8], sig: &Signature) -> bool {
        if let VerifierKeys::Mac(_) = self.keys {
            // A MAC is recomputed faster than it is looked up.
            return self.check(signer, bytes, sig);
        }
        let slot = slot_of(sig);
        // A poisoned lock only loses the memory of checks: check again.
        if let Ok(checked) = self.checked.lock() {
            if let Some(Some(known)) = checked.get(slot) {
                if known.signer == signer && known.sig == *sig && known.bytes == bytes {
                    return true;
                }
            }
        }
        let valid = self.check(signer, bytes, sig);
        if valid {
            if let Ok(mut checked) = self.checked.lock() {
                if checked.is_empty() {
                    checked.resize_with(CHECKED_SLOTS, || None);
                }
                match &mut checked[slot] {
                    Some(known) => {
                        known.signer = signer;
                        known.sig = *sig;
                        known.bytes.clear();
                        known.bytes.extend_from_slice(bytes);
                    }
                    empty => {
                        *empty = Some(Checked {
                            signer,
                            sig: *sig,
                            bytes: bytes.to_vec(),
                        })
                    }
                }
            }
        }
        valid
    }

    /// The cryptographic check.
    fn check(&self, signer: NodeId, bytes: &[u8], sig: &Signature) -> bool {
        match (&self.keys, sig) {
            (VerifierKeys::Mac(keys), Signature::Mac(tag)) => match keys.get(signer.index()) {
                Some(key) => mac(key, bytes) == *tag,
                None => false,
            },
            (VerifierKeys::Ed25519(keys), Signature::Ed25519(r, s)) => {
                let Some(key) = keys.get(signer.index()) else {
                    return false;
                };
                let mut raw = [0u8; 64];
                raw[..32].copy_from_slice(r);
                raw[32..].copy_from_slice(s);
                key.verify(bytes, &ed25519_dalek::Signature::from_bytes(&raw))
                    .is_ok()
            }
            _ => false,
        }
    }

    /// How many nodes have keys.
    pub fn nodes(&self) -> usize {
        match &self.keys {
            VerifierKeys::Mac(keys) => keys.len(),
            VerifierKeys::Ed25519(keys) => keys.len(),
        }
    }
}

fn mac(key: &[u8; 32], bytes: &[u8]) -> [u8; 16] {
    let full = blake3::keyed_hash(key, bytes);
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&full.as_bytes()[..16]);
    tag
}

/// Why key material given to [`Crypto::ed25519`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the public key listed for node {0} is not an Ed25519 public key")]
    NotAPublicKey(NodeId),
    #[error("no public key is listed for node {node} (the list has {listed})")]
    NoPublicKey { node: NodeId, listed: usize },
    #[error("node {0}'s private key does not match the public key listed for it")]
    Mismatch(NodeId),
    #[error("crypto = \"sim\" has no key files: its verifier holds every node's secret, so only keys derived from the seed work (keys = \"testbed\"); use crypto = \"real\" (Ed25519) with key files")]
    SimCryptoWithKeyFiles,
    #[error("the keys given are node {given}'s, not node {node}'s")]
    KeysOfAnotherNode { node: NodeId, given: NodeId },
    #[error("{listed} public keys are listed, but the group has {nodes} nodes (replicas and clients), each of which signs")]
    PublicKeysCount { listed: usize, nodes: u32 },
}

/// One node's view of authentication: its own signing key and the shared verifier.
/// Cloned only with the node that holds it (the explorer copies nodes).
#[derive(Clone)]
pub struct Crypto {
    me: NodeId,
    secret: SigningSecret,
    verifier: Arc<Verifier>,
}

impl Crypto {
    /// The keys of nodes `0..nodes` for one run, derived from `seed`: entry `i` signs as
    /// node `i`. The same kind, seed and count always give the same keys. (Each node is
    /// built as [`Crypto::testbed`] builds it, around one shared verifier.)
    pub fn generate(kind: CryptoKind, seed: u64, nodes: u32) -> Vec<Crypto> {
        let verifier = Crypto::testbed_verifier(kind, seed, nodes);
        (0..nodes)
            .map(|i| Crypto::testbed(kind, seed, NodeId(i), Arc::clone(&verifier)))
            .collect()
    }

    /// The verifier of nodes `0..nodes`, whose keys derive from `seed`: every node's
    /// public key (for the simulated scheme, its MAC key).
    pub fn testbed_verifier(kind: CryptoKind, seed: u64, nodes: u32) -> Arc<Verifier> {
        let secrets = (0..nodes).map(|i| derive_key(kind, seed, i));
        let keys = match kind {
            CryptoKind::Sim => VerifierKeys::Mac(secrets.collect()),
            CryptoKind::Real => VerifierKeys::Ed25519(
                secrets
                    .map(|s| SigningKey::from_bytes(&s).verifying_key())
                    .collect(),
            ),
        };
        Arc::new(Verifier::new(keys))
    }

    /// Node `me`'s own key, derived from `seed`, with `verifier` (from
    /// [`Crypto::testbed_verifier`] for the same kind and seed) to check the others': the
    /// simulator's keys, and a testbed's on real transports.
    pub fn testbed(kind: CryptoKind, seed: u64, me: NodeId, verifier: Arc<Verifier>) -> Crypto {
        let secret = derive_key(kind, seed, me.0);
        Crypto {
            me,
            secret: match kind {
                CryptoKind::Sim => SigningSecret::Mac(secret),
                CryptoKind::Real => {
                    SigningSecret::Ed25519(Box::new(SigningKey::from_bytes(&secret)))
                }
            },
            verifier,
        }
    }

    /// Node `me`'s Ed25519 keys as key files give them: its own private key (the 32-byte
    /// seed of RFC 8032) and every node's public key, node `i`'s at index `i`. Refused:
    /// a public key that is not a curve point, and a private key whose public key is not
    /// the one listed for `me`.
    pub fn ed25519(
        me: NodeId,
        private: &[u8; 32],
        public: &[[u8; 32]],
    ) -> Result<Crypto, KeyError> {
        let keys = public
            .iter()
            .enumerate()
            .map(|(i, bytes)| {
                VerifyingKey::from_bytes(bytes)
                    .map_err(|_| KeyError::NotAPublicKey(NodeId(i as u32)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let secret = SigningKey::from_bytes(private);
        match keys.get(me.index()) {
            None => {
                return Err(KeyError::NoPublicKey {
                    node: me,
                    listed: keys.len(),
                })
            }
            Some(listed) if *listed != secret.verifying_key() => {
                return Err(KeyError::Mismatch(me))
            }
            Some(_) => {}
        }
        Ok(Crypto {
            me,
            secret: SigningSecret::Ed25519(Box::new(secret)),
            verifier: Arc::new(Verifier::new(VerifierKeys::Ed25519(keys))),
        })
    }

    /// A real node's keys: its key files (`keys`), or in a testbed those `testbed` derives
    /// from the seed.
    pub(crate) fn for_real_node<E: From<KeyError>>(
        kind: CryptoKind,
        nodes: u32,
        id: NodeId,
        keys: KeySource<'_>,
        testbed: impl FnOnce() -> Result<Crypto, E>,
    ) -> Result<Crypto, E> {
        match keys {
            KeySource::Testbed => testbed(),
            KeySource::Node(keys) => Ok(Crypto::from_node_keys(kind, nodes, id, keys)?),
        }
    }

    /// Node `id`'s keys as a real node reads them from key files
    /// ([`NodeKeys`](rehearsal_sim_core::protocol::NodeKeys)): its own
    /// private key and the public keys of all `nodes` nodes of its group, for the signature
    /// scheme `kind`. Refused: simulated signatures (they have no key files), another
    /// node's keys, a list of another size, and what [`Crypto::ed25519`] refuses.
    pub fn from_node_keys(
        kind: CryptoKind,
        nodes: u32,
        id: NodeId,
        keys: &rehearsal_sim_core::protocol::NodeKeys,
    ) -> Result<Crypto, KeyError> {
        if kind == CryptoKind::Sim {
            return Err(KeyError::SimCryptoWithKeyFiles);
        }
        if keys.me != id {
            return Err(KeyError::KeysOfAnotherNode {
                node: id,
                given: keys.me,
            });
        }
        if keys.public.len() != nodes as usize {
            return Err(KeyError::PublicKeysCount {
                listed: keys.public.len(),
                nodes,
            });
        }
        Crypto::ed25519(id, &keys.private.0, &keys.public)
    }

    /// The node whose key this is.
    pub fn me(&self) -> NodeId {
        self.me
    }

    pub fn kind(&self) -> CryptoKind {
        match self.secret {
            SigningSecret::Mac(_) => CryptoKind::Sim,
            SigningSecret::Ed25519(_) => CryptoKind::Real,
        }
    }

    /// Signs `bytes` as this node.
    pub fn sign(&self, bytes: &[u8]) -> Signature {
        match &self.secret {
            SigningSecret::Mac(key) => Signature::Mac(mac(key, bytes)),
            SigningSecret::Ed25519(key) => {
                let raw = key.sign(bytes).to_bytes();
                let (mut r, mut s) = ([0u8; 32], [0u8; 32]);
                r.copy_from_slice(&raw[..32]);
                s.copy_from_slice(&raw[32..]);
                Signature::Ed25519(r, s)
            }
        }
    }

    /// Whether `sig` is `signer`'s signature over `bytes`.
    pub fn verify(&self, signer: NodeId, bytes: &[u8], sig: &Signature) -> bool {
        self.verifier.verify(signer, bytes, sig)
    }

    /// The shared verifier, for code that checks but never signs.
    pub fn verifier(&self) -> &Arc<Verifier> {
        &self.verifier
    }
}

impl fmt::Debug for Crypto {
    // Never prints key material.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Crypto({}, {})", self.me, self.kind())
    }
}

fn derive_key(kind: CryptoKind, seed: u64, node: u32) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("rehearsal 2026 crypto signing key v1");
    hasher.update(kind.to_string().as_bytes());
    hasher.update(&seed.to_le_bytes());
    hasher.update(&node.to_le_bytes());
    *hasher.finalize().as_bytes()
}

/// A fixed-capacity byte buffer for the canonical bytes a signature covers: built on the
/// stack, so signing a vote allocates nothing. Fields are fixed-width little-endian.
pub struct Transcript {
    buf: [u8; Transcript::CAPACITY],
    len: usize,
}

impl Transcript {
    pub const CAPACITY: usize = 128;

    /// A transcript starting with a domain tag, so that bytes signed for one message kind
    /// never verify as another.
    pub fn new(tag: &[u8]) -> Self {
        let mut t = Transcript {
            buf: [0; Self::CAPACITY],
            len: 0,
        };
        t.bytes(tag);
        t
    }

    /// Appends `data`. Panics past [`Transcript::CAPACITY`]: transcripts have a fixed
    /// layout per message kind, so an overflow is a programming error, not an input error.
    pub fn bytes(&mut self, data: &[u8]) -> &mut Self {
        self.buf[self.len..self.len + data.len()].copy_from_slice(data);
        self.len += data.len();
        self
    }

    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }

    pub fn digest(&mut self, d: &Digest) -> &mut Self {
        self.bytes(&d.0)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

/// A signed message shared by every node it is sent to (as an [`Arc`] is), which remembers
/// the verifier that found its signatures valid and for what purpose.
///
/// In a simulation the receivers of a multicast share one message and one verifier, so
/// the first receiver's check answers for the others: [`Shared::verified`] runs the check
/// once per verifier and purpose, and a later call with the same pair is answered from
/// memory. Only a check that succeeded is remembered, the value cannot change behind a
/// `Shared` (changing it through [`Shared::make_mut`] forgets the check, as a clone that
/// is changed does), and a check for another purpose or by another verifier runs afresh:
/// so nothing is accepted that the check would refuse. Over a real transport every node
/// decodes its own copy, which starts unchecked.
///
/// Serialized, compared and printed as the value itself.
pub struct Shared<T>(Arc<SharedValue<T>>);

struct SharedValue<T> {
    value: T,
    /// `verifier id << 8 | purpose` of the check that found `value` valid, or 0.
    valid: std::sync::atomic::AtomicU64,
}

impl<T> Shared<T> {
    /// A new, unchecked message.
    pub fn new(value: T) -> Shared<T> {
        Shared(Arc::new(SharedValue {
            value,
            valid: std::sync::atomic::AtomicU64::new(0),
        }))
    }

    /// Whether `check` holds for the value, as checked with `crypto`'s verifier for
    /// `purpose` (which names everything the check depends on besides the value and the
    /// verifier, e.g. a vote's phase). Runs `check` unless it already succeeded on this
    /// value for the same verifier and purpose.
    pub fn verified(&self, crypto: &Crypto, purpose: u8, check: impl FnOnce(&T) -> bool) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let key = crypto.verifier.id << 8 | u64::from(purpose);
        if self.0.valid.load(Relaxed) == key {
            return true;
        }
        let valid = check(&self.0.value);
        if valid {
            self.0.valid.store(key, Relaxed);
        }
        valid
    }

    /// Whether a check of the value for `purpose` by `crypto`'s verifier succeeded
    /// already (see [`Shared::verified`]): for a receiver that checks a message in steps,
    /// to skip them all.
    pub fn known_valid(&self, crypto: &Crypto, purpose: u8) -> bool {
        let key = crypto.verifier.id << 8 | u64::from(purpose);
        self.0.valid.load(std::sync::atomic::Ordering::Relaxed) == key
    }

    /// The value, for changing: copied first if other holders share it; either way it is
    /// unchecked afterwards.
    pub fn make_mut(this: &mut Shared<T>) -> &mut T
    where
        T: Clone,
    {
        let shared = Arc::make_mut(&mut this.0);
        *shared.valid.get_mut() = 0;
        &mut shared.value
    }
}

impl<T: Clone> Clone for SharedValue<T> {
    /// A copy starts unchecked (it is about to be changed: [`Shared::make_mut`]).
    fn clone(&self) -> Self {
        SharedValue {
            value: self.value.clone(),
            valid: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl<T> Clone for Shared<T> {
    fn clone(&self) -> Self {
        Shared(Arc::clone(&self.0))
    }
}

impl<T> std::ops::Deref for Shared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.value
    }
}

impl<T> From<T> for Shared<T> {
    fn from(value: T) -> Shared<T> {
        Shared::new(value)
    }
}

impl<T: fmt::Debug> fmt::Debug for Shared<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.value.fmt(f)
    }
}

impl<T: PartialEq> PartialEq for Shared<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.value == other.0.value
    }
}

impl<T: Eq> Eq for Shared<T> {}

impl<T: Serialize> Serialize for Shared<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.value.serialize(serializer)
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Shared<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Shared::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verifier remembers the signatures it found valid; what it remembers must never
    /// let through what a check would refuse: the same signature over other bytes, claimed
    /// by another signer, or a forgery checked before or after the genuine one.
    #[test]
    fn a_remembered_signature_is_valid_only_for_its_signer_and_bytes() {
        for kind in [CryptoKind::Sim, CryptoKind::Real] {
            let nodes = Crypto::generate(kind, 5, 3);
            let (a, b) = (&nodes[0], &nodes[1]);
            let sig = a.sign(b"hello");
            let forged = b.sign(b"hello");
            for _ in 0..3 {
                assert!(b.verify(a.me(), b"hello", &sig), "{kind}");
                assert!(!b.verify(a.me(), b"hellp", &sig), "{kind}: other bytes");
                assert!(!b.verify(b.me(), b"hello", &sig), "{kind}: another signer");
                assert!(
                    !b.verify(a.me(), b"hello", &forged),
                    "{kind}: another's signature"
                );
                assert!(
                    !b.verify(NodeId(9), b"hello", &sig),
                    "{kind}: an unknown signer"
                );
            }
            // Many signatures: slots are reused, and each is still checked right.
            for i in 0..10_000u32 {
                let bytes = i.to_le_bytes();
                let sig = a.sign(&bytes);
                assert!(b.verify(a.me(), &bytes, &sig));
                assert!(!b.verify(a.me(), &(i + 1).to_le_bytes(), &sig));
                if kind == CryptoKind::Real && i == 50 {
                    break; // Ed25519 signing is slow in debug builds
                }
            }
        }
    }

    /// A shared message's check is answered from memory only for the verifier and purpose
    /// it succeeded for, and never once the value changed.
    #[test]
    fn a_shared_message_remembers_only_a_successful_check_for_its_verifier_and_purpose() {
        let nodes = Crypto::generate(CryptoKind::Sim, 5, 2);
        let other_run = Crypto::generate(CryptoKind::Sim, 5, 2);
        let (a, b) = (&nodes[0], &nodes[1]);
        let signed = |bytes: &[u8]| (bytes.to_vec(), a.sign(bytes));
        fn check<'a>(
            c: &'a Crypto,
            calls: &'a std::cell::Cell<u32>,
        ) -> impl FnOnce(&(Vec<u8>, Signature)) -> bool + 'a {
            move |(bytes, sig)| {
                calls.set(calls.get() + 1);
                c.verify(NodeId(0), bytes, sig)
            }
        }
        let calls = std::cell::Cell::new(0);
        let message = Shared::new(signed(b"vote"));
        let copy = message.clone(); // another receiver's copy of a multicast
        assert!(message.verified(b, 1, check(b, &calls)));
        assert!(copy.verified(a, 1, check(a, &calls)), "same verifier");
        assert_eq!(calls.get(), 1, "the second receiver's check was remembered");
        assert!(copy.verified(b, 2, check(b, &calls)));
        assert_eq!(calls.get(), 2, "another purpose is checked afresh");
        assert!(copy.verified(&other_run[1], 2, check(&other_run[1], &calls)));
        assert_eq!(calls.get(), 3, "another verifier checks afresh");

        // A change forgets the check, in the changed copy; the others keep theirs.
        let mut changed = copy.clone();
        Shared::make_mut(&mut changed).0 = b"vots".to_vec();
        assert!(
            !changed.verified(b, 2, check(b, &calls)),
            "a changed value is refused"
        );
        assert_eq!(calls.get(), 4);
        // (It remembers the latest successful check.)
        assert!(copy.verified(&other_run[1], 2, check(&other_run[1], &calls)));
        assert_eq!(calls.get(), 4, "the unchanged copy still remembers");
        let mut alone = Shared::new(signed(b"vote"));
        assert!(alone.verified(b, 1, check(b, &calls)));
        Shared::make_mut(&mut alone).0 = b"vots".to_vec(); // not shared: changed in place
        assert!(!alone.verified(b, 1, check(b, &calls)));
        assert_eq!(calls.get(), 6);

        // A failed check is not remembered: it runs again.
        let forged = Shared::new((b"vote".to_vec(), b.sign(b"vote")));
        assert!(!forged.verified(b, 1, check(b, &calls)));
        assert!(!forged.verified(b, 1, check(b, &calls)));
        assert_eq!(calls.get(), 8);

        // Serialized, compared and printed as the value.
        let plain = signed(b"vote");
        assert_eq!(*message, plain);
        assert_eq!(format!("{message:?}"), format!("{plain:?}"));
        let (mut x, mut y) = (Vec::new(), Vec::new());
        rehearsal_sim_core::codec::encode_into(&message, &mut x).unwrap();
        rehearsal_sim_core::codec::encode_into(&plain, &mut y).unwrap();
        assert_eq!(x, y);
    }

    #[test]
    fn digests_order_as_their_bytes_do() {
        // Pairs that differ in each eight-byte word, at its first and last byte, both ways.
        let mut digests = vec![Digest([0; 32]), Digest([0xff; 32])];
        for i in 0..32 {
            for v in [1u8, 0x80, 0xff] {
                let mut d = [0x40u8; 32];
                d[i] = v;
                digests.push(Digest(d));
            }
        }
        for a in &digests {
            for b in &digests {
                assert_eq!(a.cmp(b), a.0.cmp(&b.0), "{:?} vs {:?}", a.0, b.0);
            }
        }
    }

    #[test]
    fn both_schemes_accept_their_own_signatures_and_nothing_else() {
        for kind in [CryptoKind::Sim, CryptoKind::Real] {
            let nodes = Crypto::generate(kind, 1, 4);
            let sig = nodes[2].sign(b"hello");
            assert!(nodes[0].verify(NodeId(2), b"hello", &sig), "{kind}");
            assert!(!nodes[0].verify(NodeId(3), b"hello", &sig), "{kind}");
            assert!(!nodes[0].verify(NodeId(2), b"hellO", &sig), "{kind}");
            assert!(!nodes[0].verify(NodeId(9), b"hello", &sig), "{kind}");
        }
    }

    #[test]
    fn keys_depend_on_the_seed_and_schemes_do_not_mix() {
        let a = Crypto::generate(CryptoKind::Sim, 1, 2);
        let b = Crypto::generate(CryptoKind::Sim, 2, 2);
        let again = Crypto::generate(CryptoKind::Sim, 1, 2);
        let sig = a[0].sign(b"m");
        assert!(again[1].verify(NodeId(0), b"m", &sig));
        assert!(!b[1].verify(NodeId(0), b"m", &sig));
        let real = Crypto::generate(CryptoKind::Real, 1, 2);
        assert!(!real[1].verify(NodeId(0), b"m", &sig));
        assert!(!a[1].verify(NodeId(0), b"m", &real[0].sign(b"m")));
    }

    #[test]
    fn digests_and_signatures_round_trip_through_both_encodings() {
        let nodes = Crypto::generate(CryptoKind::Real, 1, 1);
        let sims = Crypto::generate(CryptoKind::Sim, 1, 1);
        let value = (Digest::of(b"x"), nodes[0].sign(b"y"), sims[0].sign(b"z"));
        let mut buf = Vec::new();
        rehearsal_sim_core::codec::encode_into(&value, &mut buf).unwrap();
        assert_eq!(buf.len(), 33 + 65 + 17, "length-prefixed bytes");
        let back: (Digest, Signature, Signature) = rehearsal_sim_core::codec::decode(&buf).unwrap();
        assert_eq!(back, value);
        let json = serde_json::to_string(&value.0).unwrap();
        assert_eq!(json.len(), 66, "hex in JSON: {json}");
        let back: Digest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, value.0);
    }

    #[test]
    fn a_node_built_alone_signs_as_it_does_among_all() {
        for kind in [CryptoKind::Sim, CryptoKind::Real] {
            let all = Crypto::generate(kind, 5, 4);
            let alone = Crypto::testbed(kind, 5, NodeId(2), Crypto::testbed_verifier(kind, 5, 4));
            assert_eq!(alone.sign(b"m"), all[2].sign(b"m"), "{kind}");
            assert!(alone.verify(NodeId(3), b"m", &all[3].sign(b"m")), "{kind}");
        }
    }

    #[test]
    fn key_files_give_a_node_its_own_key_and_a_mismatch_is_refused() {
        let public: Vec<[u8; 32]> = (0..3)
            .map(|i| {
                SigningKey::from_bytes(&derive_key(CryptoKind::Real, 9, i))
                    .verifying_key()
                    .to_bytes()
            })
            .collect();
        let own = derive_key(CryptoKind::Real, 9, 1);
        let node = Crypto::ed25519(NodeId(1), &own, &public).unwrap();
        let testbed = Crypto::generate(CryptoKind::Real, 9, 3);
        assert!(testbed[0].verify(NodeId(1), b"m", &node.sign(b"m")));
        assert!(node.verify(NodeId(2), b"m", &testbed[2].sign(b"m")));
        assert_eq!(
            Crypto::ed25519(NodeId(2), &own, &public).unwrap_err(),
            KeyError::Mismatch(NodeId(2))
        );
        assert_eq!(
            Crypto::ed25519(NodeId(3), &own, &public).unwrap_err(),
            KeyError::NoPublicKey {
                node: NodeId(3),
                listed: 3
            }
        );
        let mut bad = public.clone();
        bad[0] = NOT_A_POINT;
        assert_eq!(
            Crypto::ed25519(NodeId(1), &own, &bad).unwrap_err(),
            KeyError::NotAPublicKey(NodeId(0))
        );
    }

    /// 32 bytes that decode to no point of the curve.
    const NOT_A_POINT: [u8; 32] = [
        2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ];

    #[test]
    fn transcripts_separate_domains() {
        let nodes = Crypto::generate(CryptoKind::Sim, 3, 1);
        let mut prepare = Transcript::new(b"prepare");
        prepare.u64(1).u64(2);
        let mut commit = Transcript::new(b"commit");
        commit.u64(1).u64(2);
        let sig = nodes[0].sign(prepare.as_bytes());
        assert!(!nodes[0].verify(NodeId(0), commit.as_bytes(), &sig));
    }
}
