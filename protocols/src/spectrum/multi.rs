//! The multi-server variant: `k ≥ 2` servers, a seed-homomorphic PRG over Ristretto
//! points, and keys additively shared among the servers.
//!
//! Messages are vectors of `L` points ([`super::embedding`] turns bytes into them). The
//! PRG maps a scalar seed to `G(s) = (s·P_1, …, s·P_L)` for fixed generators `P_l`
//! ([`Generators`], hashed to the curve from a label, so nobody knows relations between
//! them); it is seed-homomorphic, `G(a) + G(b) = G(a + b)`.
//!
//! A write of `m` to channel `i`: pick a random seed `σ`; share, for every channel `j`, a
//! bit `Σ_s bit_s[j] = [j = i]` and a seed `Σ_s seed_s[j] = [j = i]·σ` additively among
//! the servers (all shares uniformly random but the last); one correction word
//! `cw = m − G(σ)` for all. Server `s` evaluates channel `j` as
//! `G(seed_s[j]) + bit_s[j]·cw`; summed over servers that is
//! `G([j = i]·σ) + [j = i]·(m − G(σ))`, i.e. `m` at `i` and the identity elsewhere.
//! Any `k − 1` servers see uniformly random shares, so they learn nothing of `i` or `m`.
//!
//! The audit mirrors the two-server one ([`super::vdpf`]) with sums instead of
//! differences: server `s`'s token has a bit part `Σ_j bit_s[j]·k_j + proof_s.bit`, a
//! seed part `Σ_j seed_s[j]·k_j + proof_s.seed` and the hash of its correction word. The
//! proof shares sum to `−k_i` (bit) and `−σ·k_i` (seed), so honest tokens' parts sum to
//! zero; covers share the zero vector and proof shares that sum to zero. The write is
//! accepted iff all hashes are equal and both parts sum to zero over the servers
//! ([`check_audit`]); each part stops the forgery its two-server counterpart stops (a
//! reconstructed bit of 1, or a nonzero reconstructed seed, at a channel whose key one
//! lacks; different correction words, which make `Σ_s bit_s[j]·cw_s` nonzero where the
//! reconstructed bit is zero).
//!
//! ```
//! use rehearsal_protocols::spectrum::embedding::{decode_message, encode_message};
//! use rehearsal_protocols::spectrum::multi::{self, Generators};
//! use rehearsal_protocols::spectrum::vdpf::{AccessKey, AuditParts};
//! use rehearsal_sim_core::derive_rng;
//!
//! let mut rng = derive_rng(1, "doc", 0);
//! let keys: Vec<AccessKey> = (0..3).map(|_| AccessKey::random(&mut rng)).collect();
//! let message = encode_message(b"three servers").unwrap();
//! let uploads = multi::gen_write(3, &keys[1], 3, 1, &message, &mut rng).unwrap();
//! let tokens: Vec<_> = uploads.iter().map(|u| multi::audit_token(&keys, message.len(), u).unwrap()).collect();
//! assert!(multi::check_audit(&tokens, AuditParts::ALL));
//!
//! let generators = Generators::new(message.len());
//! let mut accs = vec![multi::new_accumulator(3, message.len()); 3];
//! for (upload, acc) in uploads.iter().zip(&mut accs) {
//!     upload.key.eval_into(&generators, acc).unwrap();
//! }
//! let published = multi::combine(&accs).unwrap();
//! assert_eq!(decode_message(&published[1]).unwrap(), b"three servers");
//! assert_eq!(decode_message(&published[0]).unwrap(), b"");
//! ```

use super::canonical::{self, field_decoder, random_scalar};
use super::dpf::{check_channels, check_message};
use super::vdpf::{AccessKey, AuditParts};
use super::SpectrumError;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::traits::Identity;
use curve25519_dalek::Scalar;
use rehearsal_sim_core::rand::CryptoRng;
use serde::{Deserialize, Serialize};

/// The generators `P_1, …, P_L` of the seed-homomorphic PRG.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generators {
    points: Vec<RistrettoPoint>,
}

impl Generators {
    /// The first `message_points` generators: `P_l` is the Ristretto hash-to-group
    /// (Elligator, twice) of 64 bytes of BLAKE3-XOF output over a fixed label and `l`,
    /// so nobody knows a discrete-log relation between them.
    pub fn new(message_points: usize) -> Generators {
        let points = (0..message_points)
            .map(|index| {
                let mut hasher = blake3::Hasher::new_derive_key(
                    "rehearsal spectrum multi-server PRG generator v1",
                );
                hasher.update(&(index as u64).to_le_bytes());
                let mut uniform = [0u8; 64];
                hasher.finalize_xof().fill(&mut uniform);
                RistrettoPoint::from_uniform_bytes(&uniform)
            })
            .collect();
        Generators { points }
    }

    /// How many points a PRG output has.
    pub fn message_points(&self) -> usize {
        self.points.len()
    }

    /// `G(seed) = (seed·P_1, …, seed·P_L)`.
    pub fn expand(&self, seed: &Scalar) -> Vec<RistrettoPoint> {
        self.points
            .iter()
            .map(|generator| generator * seed)
            .collect()
    }
}

/// One server's additive share of a write or cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiKey {
    /// This server's share of each channel's seed.
    #[serde(
        serialize_with = "canonical::serialize_scalars",
        deserialize_with = "de_key_seeds"
    )]
    pub seeds: Vec<Scalar>,
    /// This server's share of each channel's bit.
    #[serde(
        serialize_with = "canonical::serialize_scalars",
        deserialize_with = "de_key_bits"
    )]
    pub bits: Vec<Scalar>,
    /// The correction word, the same for every server.
    #[serde(
        serialize_with = "canonical::serialize_points",
        deserialize_with = "de_key_cw"
    )]
    pub cw: Vec<RistrettoPoint>,
}
field_decoder!(de_key_seeds, deserialize_scalars -> Vec<Scalar>, "MultiKey.seeds");
field_decoder!(de_key_bits, deserialize_scalars -> Vec<Scalar>, "MultiKey.bits");
field_decoder!(de_key_cw, deserialize_points -> Vec<RistrettoPoint>, "MultiKey.cw");

impl MultiKey {
    /// Checks the shape of a key received from outside: `channels` seed and bit shares
    /// and a correction word of `message_points` points (its points were checked valid
    /// when it was decoded).
    pub fn validate(&self, channels: usize, message_points: usize) -> Result<(), SpectrumError> {
        check_channels("MultiKey.seeds", channels, self.seeds.len())?;
        check_channels("MultiKey.bits", channels, self.bits.len())?;
        check_message("MultiKey.cw", message_points, self.cw.len())
    }

    /// Adds this share's evaluation into `acc`: `acc[j] += G(seed[j]) + bit[j]·cw`.
    /// Refuses (leaving `acc` untouched) when shapes disagree.
    pub fn eval_into(
        &self,
        generators: &Generators,
        acc: &mut [Vec<RistrettoPoint>],
    ) -> Result<(), SpectrumError> {
        self.validate(acc.len(), generators.message_points())?;
        acc.iter().try_for_each(|slot| {
            check_message("accumulator slot", generators.message_points(), slot.len())
        })?;
        for ((slot, seed), bit) in acc.iter_mut().zip(&self.seeds).zip(&self.bits) {
            for ((sum, generator), cw) in slot.iter_mut().zip(&generators.points).zip(&self.cw) {
                *sum += generator * seed + cw * bit;
            }
        }
        Ok(())
    }
}

/// One server's share of a write's proof.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiProofShare {
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
field_decoder!(de_proof_bit, deserialize_scalar -> Scalar, "MultiProofShare.bit");
field_decoder!(de_proof_seed, deserialize_scalar -> Scalar, "MultiProofShare.seed");

/// What one client sends one server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiUpload {
    /// The server's key share.
    pub key: MultiKey,
    /// The server's proof share.
    pub proof: MultiProofShare,
}

impl MultiUpload {
    /// Checks the shape of an upload received from outside (see [`MultiKey::validate`]).
    pub fn validate(&self, channels: usize, message_points: usize) -> Result<(), SpectrumError> {
        self.key.validate(channels, message_points)
    }
}

/// One server's audit token. Parts as in [`super::vdpf::Token`], each needed for the
/// same reason; the servers accept iff [`check_audit`] holds over all their tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiToken {
    /// `Σ_j bit_s[j]·k_j + proof_s.bit`: sums to zero over the servers iff the
    /// reconstructed bits are nonzero only where the writer knows the key.
    #[serde(
        serialize_with = "canonical::serialize_scalar",
        deserialize_with = "de_token_bit"
    )]
    pub bit: Scalar,
    /// `Σ_j seed_s[j]·k_j + proof_s.seed`: sums to zero iff the reconstructed seeds are
    /// nonzero only where the writer knows the key.
    #[serde(
        serialize_with = "canonical::serialize_scalar",
        deserialize_with = "de_token_seed"
    )]
    pub seed: Scalar,
    /// BLAKE3 of the correction word: all equal iff every server got the same word.
    pub cw_hash: [u8; 32],
}
field_decoder!(de_token_bit, deserialize_scalar -> Scalar, "MultiToken.bit");
field_decoder!(de_token_seed, deserialize_scalar -> Scalar, "MultiToken.seed");

/// The domain-separated hash of a correction word (its points' canonical encodings).
pub fn cw_hash(cw: &[RistrettoPoint]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new_derive_key("rehearsal spectrum multi-server cw hash v1");
    for point in cw {
        hasher.update(point.compress().as_bytes());
    }
    *hasher.finalize().as_bytes()
}

/// The server's token for `upload`, given every channel's access key in channel order
/// and the deployment's message length in points. Refuses an upload of the wrong shape
/// ([`MultiUpload::validate`]), so a write the audit accepts always evaluates.
pub fn audit_token(
    access_keys: &[AccessKey],
    message_points: usize,
    upload: &MultiUpload,
) -> Result<MultiToken, SpectrumError> {
    upload.validate(access_keys.len(), message_points)?;
    let key = &upload.key;
    let mut bit = upload.proof.bit;
    let mut seed = upload.proof.seed;
    for ((access, key_seed), key_bit) in access_keys.iter().zip(&key.seeds).zip(&key.bits) {
        bit += key_bit * access.0;
        seed += key_seed * access.0;
    }
    Ok(MultiToken {
        bit,
        seed,
        cw_hash: cw_hash(&key.cw),
    })
}

/// The audit's verdict over every server's token: with [`AuditParts::ALL`], all hashes
/// equal and both field-element parts summing to zero. Fewer than two tokens are refused.
pub fn check_audit(tokens: &[MultiToken], parts: AuditParts) -> bool {
    let Some(first) = tokens.first() else {
        return false;
    };
    if tokens.len() < 2 {
        return false;
    }
    let bit_sum: Scalar = tokens.iter().map(|token| token.bit).sum();
    let seed_sum: Scalar = tokens.iter().map(|token| token.seed).sum();
    (!parts.bit || bit_sum == Scalar::ZERO)
        && (!parts.seed || seed_sum == Scalar::ZERO)
        && (!parts.cw_hash || tokens.iter().all(|token| token.cw_hash == first.cw_hash))
}

/// An all-identity accumulator: `channels` slots of `message_points` points.
pub fn new_accumulator(channels: usize, message_points: usize) -> Vec<Vec<RistrettoPoint>> {
    vec![vec![RistrettoPoint::identity(); message_points]; channels]
}

/// The published channels: the sum of every server's accumulator.
pub fn combine(
    accs: &[Vec<Vec<RistrettoPoint>>],
) -> Result<Vec<Vec<RistrettoPoint>>, SpectrumError> {
    let Some((first, rest)) = accs.split_first() else {
        return Err(SpectrumError::TooFewServers { servers: 0 });
    };
    let mut sum = first.clone();
    for acc in rest {
        check_channels("accumulator", sum.len(), acc.len())?;
        for (total, slot) in sum.iter_mut().zip(acc) {
            check_message("accumulator slot", total.len(), slot.len())?;
            for (t, point) in total.iter_mut().zip(slot) {
                *t += point;
            }
        }
    }
    Ok(sum)
}

/// `servers` uniformly random scalars summing to `total`.
fn share(total: Scalar, servers: usize, rng: &mut (impl CryptoRng + ?Sized)) -> Vec<Scalar> {
    let mut shares: Vec<Scalar> = (1..servers).map(|_| random_scalar(rng)).collect();
    let rest: Scalar = shares.iter().sum();
    shares.push(total - rest);
    shares
}

/// Key shares and proof shares for reconstructed bits `[j = channel]` and seeds
/// `[j = channel]·sigma` (`channel` = `None`: all zero, a cover), with proof totals
/// `proof_bit` and `proof_seed`.
fn build(
    servers: usize,
    channels: usize,
    written: Option<(usize, Scalar)>,
    cw: Vec<RistrettoPoint>,
    proof_bit: Scalar,
    proof_seed: Scalar,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Vec<MultiUpload> {
    let mut uploads: Vec<MultiUpload> = (0..servers)
        .map(|_| MultiUpload {
            key: MultiKey {
                seeds: Vec::with_capacity(channels),
                bits: Vec::with_capacity(channels),
                cw: cw.clone(),
            },
            proof: MultiProofShare {
                bit: Scalar::ZERO,
                seed: Scalar::ZERO,
            },
        })
        .collect();
    for j in 0..channels {
        let (bit, seed) = match written {
            Some((channel, sigma)) if channel == j => (Scalar::ONE, sigma),
            _ => (Scalar::ZERO, Scalar::ZERO),
        };
        for ((upload, bit_share), seed_share) in uploads
            .iter_mut()
            .zip(share(bit, servers, rng))
            .zip(share(seed, servers, rng))
        {
            upload.key.bits.push(bit_share);
            upload.key.seeds.push(seed_share);
        }
    }
    for ((upload, bit), seed) in uploads
        .iter_mut()
        .zip(share(proof_bit, servers, rng))
        .zip(share(proof_seed, servers, rng))
    {
        upload.proof = MultiProofShare { bit, seed };
    }
    uploads
}

/// A write of `message` (points) to `channel` of `channels`, authorised by `access_key`,
/// shared among `servers` servers: one upload per server, in server order.
pub fn gen_write(
    servers: usize,
    access_key: &AccessKey,
    channels: usize,
    channel: usize,
    message: &[RistrettoPoint],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<Vec<MultiUpload>, SpectrumError> {
    check_shape(servers, channels)?;
    if channel >= channels {
        return Err(SpectrumError::ChannelOutOfRange { channel, channels });
    }
    let sigma = random_scalar(rng);
    let generators = Generators::new(message.len());
    let cw = message
        .iter()
        .zip(generators.expand(&sigma))
        .map(|(m, g)| m - g)
        .collect();
    let written = Some((channel, sigma));
    Ok(build(
        servers,
        channels,
        written,
        cw,
        -access_key.0,
        -(sigma * access_key.0),
        rng,
    ))
}

/// A cover shared among `servers` servers: all-zero bits and seeds, a random correction
/// word (so it looks like a write's), proof shares summing to zero.
pub fn gen_cover(
    servers: usize,
    channels: usize,
    message_points: usize,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<Vec<MultiUpload>, SpectrumError> {
    check_shape(servers, channels)?;
    let cw = (0..message_points)
        .map(|_| {
            let mut uniform = [0u8; 64];
            rng.fill_bytes(&mut uniform);
            RistrettoPoint::from_uniform_bytes(&uniform)
        })
        .collect();
    Ok(build(
        servers,
        channels,
        None,
        cw,
        Scalar::ZERO,
        Scalar::ZERO,
        rng,
    ))
}

fn check_shape(servers: usize, channels: usize) -> Result<(), SpectrumError> {
    if servers < 2 {
        return Err(SpectrumError::TooFewServers { servers });
    }
    if channels == 0 {
        return Err(SpectrumError::NoChannels);
    }
    Ok(())
}
