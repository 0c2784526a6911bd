//! Canonical wire encodings of scalars and Ristretto points, and their serde adapters.
//!
//! A scalar is 32 little-endian bytes whose value is below the group order ℓ; a point is
//! its 32-byte compressed Ristretto encoding. Decoding refuses anything else with a
//! [`SpectrumError`] that names the field, so a value in memory always has exactly one
//! encoding (a hash of a token or key then has one value, too). Through serde (e.g.
//! bincode) the same refusal becomes the decoder's error, whose message is the
//! [`SpectrumError`]'s.

use super::SpectrumError;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};
use curve25519_dalek::Scalar;
use rehearsal_sim_core::rand::CryptoRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decodes the canonical encoding of a scalar, naming `field` if it is not one.
pub fn decode_scalar(field: &'static str, bytes: [u8; 32]) -> Result<Scalar, SpectrumError> {
    Option::<Scalar>::from(Scalar::from_canonical_bytes(bytes))
        .ok_or(SpectrumError::NonCanonicalScalar { field })
}

/// Decodes a compressed Ristretto point, naming `field` if it is not one.
pub fn decode_point(field: &'static str, bytes: [u8; 32]) -> Result<RistrettoPoint, SpectrumError> {
    CompressedRistretto(bytes)
        .decompress()
        .ok_or(SpectrumError::InvalidPoint { field })
}

/// A uniformly random scalar. Drawn as 64 bytes reduced mod ℓ (bias below 2^-128), which
/// needs only `fill_bytes` and so avoids mixing `rand_core` 0.6 (curve25519-dalek's) with
/// the workspace's 0.9.
pub fn random_scalar(rng: &mut (impl CryptoRng + ?Sized)) -> Scalar {
    let mut wide = [0u8; 64];
    rng.fill_bytes(&mut wide);
    Scalar::from_bytes_mod_order_wide(&wide)
}

// ---- serde adapters -------------------------------------------------------------------
// Each field gets a one-line `deserialize_with` function (macro below) so the error names
// it; serde offers no other way to pass a field's name to a shared decoder.

pub(crate) fn serialize_scalar<S: Serializer>(
    value: &Scalar,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    value.to_bytes().serialize(serializer)
}

pub(crate) fn deserialize_scalar<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &'static str,
) -> Result<Scalar, D::Error> {
    let bytes = <[u8; 32]>::deserialize(deserializer)?;
    decode_scalar(field, bytes).map_err(serde::de::Error::custom)
}

pub(crate) fn serialize_scalars<S: Serializer>(
    values: &[Scalar],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(Scalar::to_bytes))
}

pub(crate) fn deserialize_scalars<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &'static str,
) -> Result<Vec<Scalar>, D::Error> {
    let raw = Vec::<[u8; 32]>::deserialize(deserializer)?;
    raw.into_iter()
        .map(|bytes| decode_scalar(field, bytes).map_err(serde::de::Error::custom))
        .collect()
}

pub(crate) fn serialize_points<S: Serializer>(
    values: &[RistrettoPoint],
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(values.iter().map(|point| point.compress().to_bytes()))
}

pub(crate) fn deserialize_points<'de, D: Deserializer<'de>>(
    deserializer: D,
    field: &'static str,
) -> Result<Vec<RistrettoPoint>, D::Error> {
    let raw = Vec::<[u8; 32]>::deserialize(deserializer)?;
    raw.into_iter()
        .map(|bytes| decode_point(field, bytes).map_err(serde::de::Error::custom))
        .collect()
}

/// Declares `fn $name(deserializer) -> Result<$ty, _>` decoding one named field with one
/// of the decoders above, for `#[serde(deserialize_with = "...")]`.
macro_rules! field_decoder {
    ($name:ident, $decode:ident -> $ty:ty, $field:literal) => {
        fn $name<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<$ty, D::Error> {
            crate::spectrum::canonical::$decode(deserializer, $field)
        }
    };
}
pub(crate) use field_decoder;
