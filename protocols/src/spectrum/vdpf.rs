//! The two-server verifiable DPF: proofs that bind a write to its channel's access key,
//! and the audit that checks them without learning the channel.
//!
//! Every channel `j` has an access key `k_j`, a scalar of the Ristretto group's prime
//! order ℓ; its owner holds it, and so do both servers (they are trusted not to collude,
//! not trusted with anonymity by themselves; see the module docs of [`super`] for the
//! whole argument). A client sends each server an [`Upload`]: its [`DpfKey`] and a
//! [`ProofShare`]. Each server computes a [`Token`] from its upload alone
//! ([`audit_token`]); the servers swap tokens; each accepts the write iff
//! [`Token::matches`] holds, and adds it to its accumulator only then.
//!
//! ```
//! use rehearsal_protocols::spectrum::vdpf::{audit_token, gen_write, AccessKey};
//! use rehearsal_sim_core::derive_rng;
//!
//! let mut rng = derive_rng(1, "doc", 0);
//! let keys: Vec<AccessKey> = (0..4).map(|_| AccessKey::random(&mut rng)).collect();
//! let [up_a, up_b] = gen_write(&keys[2], 4, 2, b"hi", &mut rng).unwrap();
//! let (token_a, token_b) = (audit_token(&keys, 2, &up_a).unwrap(), audit_token(&keys, 2, &up_b).unwrap());
//! assert!(token_a.matches(&token_b));
//!
//! // The owner of channel 1 cannot write to channel 2.
//! let [up_a, up_b] = gen_write(&keys[1], 4, 2, b"hi", &mut rng).unwrap();
//! let (token_a, token_b) = (audit_token(&keys, 2, &up_a).unwrap(), audit_token(&keys, 2, &up_b).unwrap());
//! assert!(!token_a.matches(&token_b));
//! ```

use super::canonical::{self, field_decoder, random_scalar};
use super::dpf::{self, check_channels, DpfKey};
use super::prg::Seed;
use super::SpectrumError;
use curve25519_dalek::Scalar;
use rehearsal_sim_core::rand::CryptoRng;
use serde::{Deserialize, Serialize};

/// A channel's access key: whoever knows it may write to the channel.
#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessKey(
    #[serde(
        serialize_with = "canonical::serialize_scalar",
        deserialize_with = "de_access_key"
    )]
    pub Scalar,
);
field_decoder!(de_access_key, deserialize_scalar -> Scalar, "AccessKey");

impl AccessKey {
    /// A fresh, uniformly random access key.
    pub fn random(rng: &mut (impl CryptoRng + ?Sized)) -> AccessKey {
        AccessKey(random_scalar(rng))
    }
}

impl std::fmt::Debug for AccessKey {
    // A secret: logs and traces show that it is there, not what it is.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessKey(..)")
    }
}

/// One server's share of a write's proof: a blinding for each field-element part of the
/// token. Alone, each is a uniformly random scalar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofShare {
    /// Blinds the bit part of the token.
    #[serde(
        serialize_with = "canonical::serialize_scalar",
        deserialize_with = "de_proof_bit"
    )]
    pub bit: Scalar,
    /// Blinds the seed part of the token.
    #[serde(
        serialize_with = "canonical::serialize_scalar",
        deserialize_with = "de_proof_seed"
    )]
    pub seed: Scalar,
}
field_decoder!(de_proof_bit, deserialize_scalar -> Scalar, "ProofShare.bit");
field_decoder!(de_proof_seed, deserialize_scalar -> Scalar, "ProofShare.seed");

/// What one client sends one server: its DPF key and its share of the proof.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Upload {
    /// The server's DPF key.
    pub key: DpfKey,
    /// The server's proof share.
    pub proof: ProofShare,
}

impl Upload {
    /// Checks the shape of an upload received from outside (see [`DpfKey::validate`]);
    /// its scalars were checked canonical when it was decoded.
    pub fn validate(&self, channels: usize, message_bytes: usize) -> Result<(), SpectrumError> {
        self.key.validate(channels, message_bytes)
    }
}

/// One server's audit token for one upload. The servers exchange tokens and accept the
/// write iff they match in all three parts; each part stops a different forgery, and
/// dropping any one of them lets that forgery through:
///
/// - `bit` = Σ_j bit_j·k_j + proof.bit. Equal iff the bit vectors differ only where the
///   writer knows the key (the proofs absorb `±k_i` at the one channel `i` it owns).
///   Protects against flipping the bit at a channel one has no key for while keeping
///   the seeds equal: that publishes the correction word, chosen freely, on someone
///   else's channel, and the seed part cannot see it.
/// - `seed` = Σ_j seed_j·k_j + proof.seed, a seed read as a 128-bit scalar (injective).
///   Equal iff the seeds differ only where the writer knows the key. Protects against
///   changing the seed at a channel one has no key for while keeping the bits equal:
///   that XORs `G(s) ⊕ G(s')` into it, jamming it, and the bit part cannot see it.
/// - `cw_hash` = BLAKE3 of the correction word. Equal iff both servers got the same
///   word. Protects against sending the servers different correction words with
///   otherwise identical keys (a cover): every channel whose bit is set in both keys
///   then publishes `cw_A ⊕ cw_B`, and neither field-element part involves the word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Token {
    /// Σ_j bit_j·k_j + proof.bit.
    #[serde(
        serialize_with = "canonical::serialize_scalar",
        deserialize_with = "de_token_bit"
    )]
    pub bit: Scalar,
    /// Σ_j seed_j·k_j + proof.seed.
    #[serde(
        serialize_with = "canonical::serialize_scalar",
        deserialize_with = "de_token_seed"
    )]
    pub seed: Scalar,
    /// BLAKE3 (derive-key mode, Spectrum's context) of the correction word.
    pub cw_hash: [u8; 32],
}
field_decoder!(de_token_bit, deserialize_scalar -> Scalar, "Token.bit");
field_decoder!(de_token_seed, deserialize_scalar -> Scalar, "Token.seed");

/// Which parts of the tokens an audit compares. Only [`AuditParts::ALL`] is sound; the
/// others exist so tests (and mutants) can show what each part is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditParts {
    /// Compare the bit parts.
    pub bit: bool,
    /// Compare the seed parts.
    pub seed: bool,
    /// Compare the correction-word hashes.
    pub cw_hash: bool,
}

impl AuditParts {
    /// The sound audit: every part.
    pub const ALL: AuditParts = AuditParts {
        bit: true,
        seed: true,
        cw_hash: true,
    };

    /// Every part but the bit part.
    pub const WITHOUT_BIT: AuditParts = AuditParts {
        bit: false,
        ..AuditParts::ALL
    };
    /// Every part but the seed part.
    pub const WITHOUT_SEED: AuditParts = AuditParts {
        seed: false,
        ..AuditParts::ALL
    };
    /// Every part but the correction-word hash.
    pub const WITHOUT_CW_HASH: AuditParts = AuditParts {
        cw_hash: false,
        ..AuditParts::ALL
    };
}

impl Token {
    /// The audit's verdict: whether the two servers' tokens agree in every part.
    pub fn matches(&self, other: &Token) -> bool {
        self.matches_parts(other, AuditParts::ALL)
    }

    /// Whether the tokens agree in the parts `parts` selects (all selected: [`matches`]).
    ///
    /// [`matches`]: Token::matches
    pub fn matches_parts(&self, other: &Token, parts: AuditParts) -> bool {
        (!parts.bit || self.bit == other.bit)
            && (!parts.seed || self.seed == other.seed)
            && (!parts.cw_hash || self.cw_hash == other.cw_hash)
    }
}

/// A bit as a field element: 0 or 1.
pub fn bit_scalar(bit: bool) -> Scalar {
    Scalar::from(u8::from(bit))
}

/// A seed as a field element: its 16 bytes read as a little-endian integer. Below
/// 2^128 < ℓ, so distinct seeds are distinct scalars and no seed change can hide.
pub fn seed_scalar(seed: &Seed) -> Scalar {
    let mut wide = [0u8; 32];
    wide[..seed.len()].copy_from_slice(seed);
    Scalar::from_bytes_mod_order(wide)
}

/// The domain-separated hash of a correction word.
pub fn cw_hash(cw: &[u8]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("rehearsal spectrum 2-server cw hash v1");
    hasher.update(cw);
    *hasher.finalize().as_bytes()
}

/// The server's token for `upload`, given every channel's access key in channel order
/// and the deployment's message length. Refuses an upload of the wrong shape
/// ([`Upload::validate`]), so a write the audit accepts always evaluates.
pub fn audit_token(
    access_keys: &[AccessKey],
    message_bytes: usize,
    upload: &Upload,
) -> Result<Token, SpectrumError> {
    upload.validate(access_keys.len(), message_bytes)?;
    let key = &upload.key;
    let mut bit = upload.proof.bit;
    let mut seed = upload.proof.seed;
    for ((access, key_seed), &key_bit) in access_keys.iter().zip(&key.seeds).zip(&key.bits) {
        // A bit is 0 or 1: adding the key is its product, and far cheaper than multiplying.
        if key_bit {
            bit += access.0;
        }
        seed += seed_scalar(key_seed) * access.0;
    }
    Ok(Token {
        bit,
        seed,
        cw_hash: cw_hash(&key.cw),
    })
}

/// Both servers' audit in one call (tests, benchmarks): computes both tokens and
/// compares them. A deployment computes each token on its own server.
pub fn audit(
    access_keys: &[AccessKey],
    message_bytes: usize,
    uploads: &[Upload; 2],
) -> Result<bool, SpectrumError> {
    let token_a = audit_token(access_keys, message_bytes, &uploads[0])?;
    let token_b = audit_token(access_keys, message_bytes, &uploads[1])?;
    Ok(token_a.matches(&token_b))
}

/// The proof shares for a key pair that writes to `channel`, made with that channel's
/// `access_key`. They make the tokens match iff the pair differs at `channel` only (and
/// `access_key` is the channel's): share B is share A plus the difference the keys make
/// to each part at `channel`, so the tokens' difference cancels.
pub fn gen_proofs(
    access_key: &AccessKey,
    channel: usize,
    keys: &[DpfKey; 2],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<[ProofShare; 2], SpectrumError> {
    let [key_a, key_b] = keys;
    let channels = key_a.channels();
    check_channels("DpfKey.seeds", channels, key_b.seeds.len())?;
    key_a.validate(channels, key_a.cw.len())?;
    key_b.validate(channels, key_a.cw.len())?;
    if channel >= channels {
        return Err(SpectrumError::ChannelOutOfRange { channel, channels });
    }
    let bit_delta = bit_scalar(key_a.bits[channel]) - bit_scalar(key_b.bits[channel]);
    let seed_delta = seed_scalar(&key_a.seeds[channel]) - seed_scalar(&key_b.seeds[channel]);
    let share_a = ProofShare {
        bit: random_scalar(rng),
        seed: random_scalar(rng),
    };
    let share_b = ProofShare {
        bit: share_a.bit + bit_delta * access_key.0,
        seed: share_a.seed + seed_delta * access_key.0,
    };
    Ok([share_a, share_b])
}

/// The proof shares of a cover (identical keys): one random share, twice, so that each
/// looks like a write's share and the tokens match.
pub fn gen_cover_proofs(rng: &mut (impl CryptoRng + ?Sized)) -> [ProofShare; 2] {
    let share = ProofShare {
        bit: random_scalar(rng),
        seed: random_scalar(rng),
    };
    [share, share]
}

/// A write of `message` to `channel` of `channels`, authorised by `access_key`: the
/// DPF key pair ([`dpf::gen_write`]) and its proofs, as the two servers' uploads.
pub fn gen_write(
    access_key: &AccessKey,
    channels: usize,
    channel: usize,
    message: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<[Upload; 2], SpectrumError> {
    let keys = dpf::gen_write(channels, channel, message, rng)?;
    let [proof_a, proof_b] = gen_proofs(access_key, channel, &keys, rng)?;
    let [key_a, key_b] = keys;
    Ok([
        Upload {
            key: key_a,
            proof: proof_a,
        },
        Upload {
            key: key_b,
            proof: proof_b,
        },
    ])
}

/// A cover: identical DPF keys ([`dpf::gen_cover`]) with cover proofs.
pub fn gen_cover(
    channels: usize,
    message_bytes: usize,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<[Upload; 2], SpectrumError> {
    let [key_a, key_b] = dpf::gen_cover(channels, message_bytes, rng)?;
    let [proof_a, proof_b] = gen_cover_proofs(rng);
    Ok([
        Upload {
            key: key_a,
            proof: proof_a,
        },
        Upload {
            key: key_b,
            proof: proof_b,
        },
    ])
}
