//! The wire encoding of messages (bincode 2, standard configuration), shared by the
//! simulator and the real runtimes so that sizes and corruption behave alike.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Largest message a decoder accepts. Bounds the allocation a damaged or hostile length
/// prefix can ask for; it does not change the encoding.
pub const DECODE_BYTES_MAX: usize = 1 << 30;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<DECODE_BYTES_MAX>()
}

/// Appends the encoding of `value` to `buf`.
pub fn encode_into<T: Serialize>(
    value: &T,
    buf: &mut Vec<u8>,
) -> Result<(), bincode::error::EncodeError> {
    bincode::serde::encode_into_std_write(value, buf, config()).map(|_| ())
}

/// Decodes exactly one value from `bytes`: trailing bytes are an error, and no length
/// prefix can make it allocate more than [`DECODE_BYTES_MAX`].
///
/// ```
/// use rehearsal_sim_core::codec::{decode, encode_into};
/// let mut buf = Vec::new();
/// encode_into(&(7u32, "hi".to_string()), &mut buf).unwrap();
/// assert_eq!(decode::<(u32, String)>(&buf).unwrap(), (7, "hi".to_string()));
/// buf.push(0);
/// assert!(decode::<(u32, String)>(&buf).is_err());
/// ```
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let (value, used) =
        bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
    if used != bytes.len() {
        return Err(format!(
            "{} trailing bytes after the message",
            bytes.len() - used
        ));
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
        assert!(decode::<String>(&bytes).is_err());
    }
}
