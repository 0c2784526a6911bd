//! The wire encoding of messages (bincode 2, standard configuration), shared by the
//! simulator and the real runtimes so that sizes and corruption behave alike: a frame the
//! node runtime sends over TCP holds exactly the bytes the simulator counts and corrupts.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a value could not be encoded (bincode's own error: a serializer failure, or a
/// value bincode cannot represent).
pub use bincode::error::EncodeError;

/// Upper bound on the memory one decoded value may claim, in bytes (1 GiB).
///
/// Incoming bytes are untrusted: without a bound, a forged length prefix inside a message
/// (a `String` "of 2^50 bytes") would make the decoder try to allocate that much and abort
/// the process. The bound is bincode's decode limit, which counts the in-memory size of
/// what is decoded; it changes nothing in the encoding. A legitimate message decodes to at
/// most about 16 times its encoded size, so the bound covers every frame the real
/// runtime's default 16 MiB frame limit admits.
pub const DECODE_BYTES_MAX: usize = 1 << 30;

/// Why bytes did not decode to exactly one value.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The bytes are not an encoding of the expected type (truncated, damaged, or a length
    /// prefix above [`DECODE_BYTES_MAX`]).
    #[error(transparent)]
    Malformed(#[from] bincode::error::DecodeError),
    /// A whole value decoded, but bytes were left over: the frame holds more than one
    /// message, or a damaged one that happens to parse.
    #[error("{bytes_trailing} trailing bytes after a {bytes_read}-byte message")]
    TrailingBytes {
        /// Bytes the value took.
        bytes_read: usize,
        /// Bytes left after it.
        bytes_trailing: usize,
    },
}

fn config() -> impl bincode::config::Config {
    // The limit only bounds decoding: encoding with this configuration writes the same
    // bytes as `bincode::config::standard()`.
    bincode::config::standard().with_limit::<DECODE_BYTES_MAX>()
}

/// Appends the encoding of `value` to `buf` (which is not cleared first, so a runtime can
/// reuse one buffer for every send).
pub fn encode_into<T: Serialize>(value: &T, buf: &mut Vec<u8>) -> Result<(), EncodeError> {
    bincode::serde::encode_into_writer(value, VecWriter(buf), config())
}

/// The length of `value`'s encoding, counted without writing it anywhere.
///
/// ```
/// use rehearsal_sim_core::codec::{encode_into, encoded_len};
/// let mut buf = Vec::new();
/// encode_into(&(7u32, "hi".to_string()), &mut buf).unwrap();
/// assert_eq!(encoded_len(&(7u32, "hi".to_string())).unwrap(), buf.len());
/// ```
/// Encodes `value` into `writer` (the bytes [`encode_into`] would append to a vector).
pub fn encode_to<T: Serialize, W: bincode::enc::write::Writer>(
    value: &T,
    writer: W,
) -> Result<(), EncodeError> {
    bincode::serde::encode_into_writer(value, writer, config())
}

pub fn encoded_len<T: Serialize>(value: &T) -> Result<usize, EncodeError> {
    let mut count = CountWriter(0);
    bincode::serde::encode_into_writer(value, &mut count, config())?;
    Ok(count.0)
}

/// Counts what it is given.
struct CountWriter(usize);

impl bincode::enc::write::Writer for CountWriter {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0 += bytes.len();
        Ok(())
    }
}

/// Appends to a vector. bincode's `std::io::Write` adapter costs a byte count and an
/// error conversion on every write, and an encoding is mostly one- and two-byte writes:
/// this writer is an `extend_from_slice`, and writes the same bytes.
struct VecWriter<'a>(&'a mut Vec<u8>);

impl bincode::enc::write::Writer for VecWriter<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> Result<(), EncodeError> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Decodes exactly one value from `bytes`: trailing bytes are an error, and no length
/// prefix can make it allocate more than [`DECODE_BYTES_MAX`].
///
/// ```
/// use rehearsal_sim_core::codec::{decode, encode_into, DecodeError};
/// let mut buf = Vec::new();
/// encode_into(&(7u32, "hi".to_string()), &mut buf).unwrap();
/// assert_eq!(decode::<(u32, String)>(&buf).unwrap(), (7, "hi".to_string()));
/// buf.push(0);
/// assert!(matches!(
///     decode::<(u32, String)>(&buf),
///     Err(DecodeError::TrailingBytes { bytes_read: 4, bytes_trailing: 1 })
/// ));
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    let (value, bytes_read) = bincode::serde::decode_from_slice(bytes, config())?;
    if bytes_read != bytes.len() {
        return Err(DecodeError::TrailingBytes {
            bytes_read,
            bytes_trailing: bytes.len() - bytes_read,
        });
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_length_prefix_is_refused_without_allocating_it() {
        // Varint 0xFD + u64: a String claiming 2^60 bytes.
        let mut bytes = vec![0xFD];
        bytes.extend_from_slice(&(1u64 << 60).to_le_bytes());
        assert!(matches!(
            decode::<String>(&bytes),
            Err(DecodeError::Malformed(_))
        ));
    }

    #[test]
    fn the_decode_limit_leaves_the_encoding_unchanged() {
        // The wire format is bincode's standard configuration: the decode bound must not
        // change one byte of what the simulator counts and the runtime sends.
        let value = (u64::MAX, "a message".to_string(), vec![1u32, 300, 70_000]);
        let mut ours = Vec::new();
        encode_into(&value, &mut ours).unwrap();
        let plain = bincode::serde::encode_to_vec(&value, bincode::config::standard()).unwrap();
        assert_eq!(ours, plain);
    }
}
