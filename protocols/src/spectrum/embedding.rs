//! An injective encoding of bytes into Ristretto points, for the messages of the
//! multi-server variant ([`super::multi`]), whose channels carry group elements.
//!
//! A message is cut into chunks of [`CHUNK_BYTES`] bytes; each chunk becomes one point
//! whose 32-byte encoding is
//!
//! ```text
//! byte 0: 2·(t mod 128)   byte 1: chunk length   bytes 2..30: chunk, zero-padded
//! byte 30: t / 128        byte 31: 0
//! ```
//!
//! for the smallest counter `t < 2^15` that makes the bytes a valid Ristretto encoding
//! (about one attempt in four is; byte 0 even and byte 31 zero keep the field
//! element canonical and non-negative, as Ristretto requires). Ristretto encodings are
//! canonical, so distinct byte strings are distinct points, and the chunk is read back
//! from the point's encoding whatever `t` was: encoding is injective, decoding its
//! inverse. The identity point (all-zero bytes) is the empty chunk, so a channel nobody
//! wrote to decodes to the empty message.
//!
//! ```
//! use rehearsal_protocols::spectrum::embedding::{decode_message, encode_message};
//!
//! let points = encode_message(b"anonymous broadcast, in points").unwrap();
//! assert_eq!(points.len(), 2); // 30 bytes: two chunks
//! assert_eq!(decode_message(&points).unwrap(), b"anonymous broadcast, in points");
//! ```

use super::SpectrumError;
use curve25519_dalek::ristretto::{CompressedRistretto, RistrettoPoint};

/// Message bytes per point.
pub const CHUNK_BYTES: usize = 28;

/// Counters tried per chunk before giving up: with one attempt in four succeeding, the
/// odds that all fail are about (3/4)^32768 ≈ 2^-13600.
const COUNTER_LIMIT: u32 = 1 << 15;

const LENGTH_AT: usize = 1;
const DATA_AT: usize = 2;
const COUNTER_HIGH_AT: usize = DATA_AT + CHUNK_BYTES;

/// How many points a message of `message_bytes` bytes takes (at least one).
pub fn points_for_bytes(message_bytes: usize) -> usize {
    message_bytes.div_ceil(CHUNK_BYTES).max(1)
}

/// The point encoding one chunk of at most [`CHUNK_BYTES`] bytes (`chunk_index` names it
/// in the error).
pub fn encode_chunk(chunk: &[u8], chunk_index: usize) -> Result<RistrettoPoint, SpectrumError> {
    if chunk.len() > CHUNK_BYTES {
        return Err(SpectrumError::WrongMessageLength {
            field: "message chunk",
            expected: CHUNK_BYTES,
            got: chunk.len(),
        });
    }
    let mut bytes = [0u8; 32];
    // Fits: CHUNK_BYTES < 256.
    bytes[LENGTH_AT] = chunk.len() as u8;
    bytes[DATA_AT..DATA_AT + chunk.len()].copy_from_slice(chunk);
    for counter in 0..COUNTER_LIMIT {
        bytes[0] = ((counter & 0x7f) as u8) << 1;
        bytes[COUNTER_HIGH_AT] = (counter >> 7) as u8;
        if let Some(point) = CompressedRistretto(bytes).decompress() {
            return Ok(point);
        }
    }
    Err(SpectrumError::Unencodable { chunk: chunk_index })
}

/// The chunk `point` encodes, or `None` if it encodes none.
pub fn decode_chunk(point: &RistrettoPoint) -> Option<Vec<u8>> {
    let bytes = point.compress().to_bytes();
    let len = usize::from(bytes[LENGTH_AT]);
    let padding_clean = len <= CHUNK_BYTES
        && bytes[DATA_AT + len..COUNTER_HIGH_AT]
            .iter()
            .all(|&b| b == 0)
        && bytes[31] == 0;
    // The counter's high byte goes up to 2^15 / 128 = 256 values: any byte is allowed.
    padding_clean.then(|| bytes[DATA_AT..DATA_AT + len].to_vec())
}

/// The points encoding `message`, one per chunk (one point for the empty message).
pub fn encode_message(message: &[u8]) -> Result<Vec<RistrettoPoint>, SpectrumError> {
    if message.is_empty() {
        return Ok(vec![encode_chunk(&[], 0)?]);
    }
    message
        .chunks(CHUNK_BYTES)
        .enumerate()
        .map(|(index, chunk)| encode_chunk(chunk, index))
        .collect()
}

/// The message `points` encode: their chunks, concatenated.
pub fn decode_message(points: &[RistrettoPoint]) -> Result<Vec<u8>, SpectrumError> {
    let mut message = Vec::with_capacity(points.len() * CHUNK_BYTES);
    for (index, point) in points.iter().enumerate() {
        let chunk = decode_chunk(point).ok_or(SpectrumError::NotAMessage { point: index })?;
        message.extend_from_slice(&chunk);
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use curve25519_dalek::traits::Identity;

    #[test]
    fn identity_is_the_empty_chunk() {
        assert_eq!(encode_chunk(&[], 0).unwrap(), RistrettoPoint::identity());
        assert_eq!(decode_chunk(&RistrettoPoint::identity()), Some(Vec::new()));
    }

    #[test]
    fn oversized_chunk_is_refused() {
        assert!(matches!(
            encode_chunk(&[0u8; CHUNK_BYTES + 1], 3),
            Err(SpectrumError::WrongMessageLength { got: 29, .. })
        ));
    }
}
