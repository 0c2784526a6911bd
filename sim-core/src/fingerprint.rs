//! State fingerprints for the explorer: a 64-bit hasher with fixed keys (the same state
//! hashes alike in every run), and a serde serializer that feeds a value's plain bytes
//! straight into it.
//!
//! The serializer writes what bincode would, less its compactions: integers at their full
//! width, little-endian; a length before every sequence, map, string and byte string;
//! an index for every enum variant; a tag for every option. Like bincode's, the encoding
//! of a type without `skip_serializing_if` fields is unambiguous (two values of it that
//! feed the same bytes are equal), and no byte is written that a value does not decide. It never allocates, and a byte costs a copy into a
//! buffer, where bincode's writer would cost a call (a state's fingerprint is taken at
//! every step of an exploration: this is the explorer's inner loop).

use serde::ser::{self, Serialize};
use std::hash::{Hash, Hasher};
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The hasher node and message fingerprints are fed to. Writes are gathered in a buffer;
/// each full buffer is hashed (XXH3) with the hash of those before it as its seed.
#[derive(Clone)]
pub struct Fingerprinter {
    chain: u64,
    buf: [u8; FP_BUF],
    len: usize,
}

const FP_BUF: usize = 512;

impl Default for Fingerprinter {
    fn default() -> Self {
        Fingerprinter {
            chain: 0,
            buf: [0; FP_BUF],
            len: 0,
        }
    }
}

impl Fingerprinter {
    /// Feeds a value's serde encoding (see the module's documentation), for state that is
    /// `Serialize` but not `Hash`.
    pub fn encoded<T: Serialize + ?Sized>(&mut self, value: &T) {
        // Plain data always serializes; what a value that cannot fed so far still counts.
        let _ = value.serialize(FpSerializer(self));
    }

    /// Feeds a value by its `Hash` implementation.
    pub fn value<T: Hash + ?Sized>(&mut self, value: &T) {
        value.hash(self);
    }

    #[inline]
    fn put(&mut self, bytes: &[u8]) {
        if self.len + bytes.len() > FP_BUF {
            self.flush();
            if bytes.len() > FP_BUF {
                self.chain = xxh3_64_with_seed(bytes, self.chain);
                return;
            }
        }
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    #[inline]
    fn put_byte(&mut self, byte: u8) {
        if self.len == FP_BUF {
            self.flush();
        }
        self.buf[self.len] = byte;
        self.len += 1;
    }

    #[inline]
    fn put_len(&mut self, len: usize) {
        self.put(&(len as u64).to_le_bytes());
    }

    #[cold]
    fn flush(&mut self) {
        self.chain = xxh3_64_with_seed(&self.buf[..self.len], self.chain);
        self.len = 0;
    }
}

impl Hasher for Fingerprinter {
    fn finish(&self) -> u64 {
        xxh3_64_with_seed(&self.buf[..self.len], self.chain)
    }
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        self.put(bytes);
    }
}

/// What the serializer reports when a value's own `Serialize` fails.
#[derive(Debug)]
pub struct FpError(String);

impl std::fmt::Display for FpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for FpError {}

impl ser::Error for FpError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        FpError(msg.to_string())
    }
}

/// Serializes into a [`Fingerprinter`].
struct FpSerializer<'a>(&'a mut Fingerprinter);

impl FpSerializer<'_> {
    /// A collection's length comes first. serde's derives and the standard collections
    /// always give it (as bincode requires too).
    fn length(self, len: Option<usize>, what: &str) -> Result<Self, FpError> {
        match len {
            Some(len) => {
                self.0.put_len(len);
                Ok(self)
            }
            None => Err(FpError(format!(
                "a {what} of unknown length has no fingerprint"
            ))),
        }
    }
}

macro_rules! put_le {
    ($($method:ident: $ty:ty),*) => {
        $(
            #[inline]
            fn $method(self, v: $ty) -> Result<(), FpError> {
                self.0.put(&v.to_le_bytes());
                Ok(())
            }
        )*
    };
}

impl<'a> ser::Serializer for FpSerializer<'a> {
    type Ok = ();
    type Error = FpError;
    type SerializeSeq = Self;
    type SerializeTuple = Self;
    type SerializeTupleStruct = Self;
    type SerializeTupleVariant = Self;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Self;

    put_le!(
        serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
        serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128,
        serialize_f32: f32, serialize_f64: f64
    );

    #[inline]
    fn serialize_bool(self, v: bool) -> Result<(), FpError> {
        self.0.put_byte(u8::from(v));
        Ok(())
    }
    #[inline]
    fn serialize_i8(self, v: i8) -> Result<(), FpError> {
        self.0.put_byte(v as u8);
        Ok(())
    }
    #[inline]
    fn serialize_u8(self, v: u8) -> Result<(), FpError> {
        self.0.put_byte(v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), FpError> {
        self.serialize_u32(u32::from(v))
    }
    fn serialize_str(self, v: &str) -> Result<(), FpError> {
        self.serialize_bytes(v.as_bytes())
    }
    #[inline]
    fn serialize_bytes(self, v: &[u8]) -> Result<(), FpError> {
        self.0.put_len(v.len());
        self.0.put(v);
        Ok(())
    }
    #[inline]
    fn serialize_none(self) -> Result<(), FpError> {
        self.0.put_byte(0);
        Ok(())
    }
    #[inline]
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), FpError> {
        self.0.put_byte(1);
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), FpError> {
        Ok(())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), FpError> {
        Ok(())
    }
    #[inline]
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
    ) -> Result<(), FpError> {
        self.serialize_u32(index)
    }
    #[inline]
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), FpError> {
        value.serialize(self)
    }
    #[inline]
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        value: &T,
    ) -> Result<(), FpError> {
        self.0.put(&index.to_le_bytes());
        value.serialize(self)
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Self, FpError> {
        self.length(len, "sequence")
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self, FpError> {
        Ok(self)
    }
    fn serialize_tuple_struct(self, _name: &'static str, _len: usize) -> Result<Self, FpError> {
        Ok(self)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, FpError> {
        self.0.put(&index.to_le_bytes());
        Ok(self)
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Self, FpError> {
        self.length(len, "map")
    }
    fn serialize_struct(self, _name: &'static str, _len: usize) -> Result<Self, FpError> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self, FpError> {
        self.0.put(&index.to_le_bytes());
        Ok(self)
    }
    fn is_human_readable(&self) -> bool {
        false
    }
}

macro_rules! compound {
    ($($trait:ident: $method:ident),*) => {
        $(
            impl<'a> ser::$trait for FpSerializer<'a> {
                type Ok = ();
                type Error = FpError;
                #[inline]
                fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FpError> {
                    value.serialize(FpSerializer(&mut *self.0))
                }
                fn end(self) -> Result<(), FpError> {
                    Ok(())
                }
            }
        )*
    };
}

compound!(
    SerializeSeq: serialize_element,
    SerializeTuple: serialize_element,
    SerializeTupleStruct: serialize_field,
    SerializeTupleVariant: serialize_field
);

impl<'a> ser::SerializeMap for FpSerializer<'a> {
    type Ok = ();
    type Error = FpError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), FpError> {
        key.serialize(FpSerializer(&mut *self.0))
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), FpError> {
        value.serialize(FpSerializer(&mut *self.0))
    }
    fn end(self) -> Result<(), FpError> {
        Ok(())
    }
}

macro_rules! fields {
    ($($trait:ident),*) => {
        $(
            impl<'a> ser::$trait for FpSerializer<'a> {
                type Ok = ();
                type Error = FpError;
                #[inline]
                fn serialize_field<T: Serialize + ?Sized>(
                    &mut self,
                    _key: &'static str,
                    value: &T,
                ) -> Result<(), FpError> {
                    value.serialize(FpSerializer(&mut *self.0))
                }
                fn end(self) -> Result<(), FpError> {
                    Ok(())
                }
            }
        )*
    };
}

fields!(SerializeStruct, SerializeStructVariant);

/// A part of a node's state that remembers its fingerprint until it is written: a node
/// whose state is a collection of such parts (a log of entries) hashes only the parts a
/// step changed. Reading goes through `Deref`; writing through `DerefMut` forgets the
/// fingerprint.
///
/// It serializes as its fingerprint (the hash of its value's encoding, see
/// [`Fingerprinter::encoded`]): it is for state that is serialized only to be
/// fingerprinted.
#[derive(Default)]
pub struct Cached<T> {
    value: T,
    /// The fingerprint, or 0 when not known (a value whose fingerprint is 0 is hashed
    /// each time: slower, never wrong).
    fp: std::sync::atomic::AtomicU64,
}

impl<T> Cached<T> {
    pub fn new(value: T) -> Self {
        Cached {
            value,
            fp: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl<T: Serialize> Cached<T> {
    /// The value's fingerprint, hashed now if it was written since it was last taken.
    pub fn fingerprint(&self) -> u64 {
        use std::sync::atomic::Ordering::Relaxed;
        match self.fp.load(Relaxed) {
            0 => {
                let mut h = Fingerprinter::default();
                h.encoded(&self.value);
                let fp = h.finish();
                self.fp.store(fp, Relaxed);
                fp
            }
            fp => fp,
        }
    }
}

impl<T: Clone> Clone for Cached<T> {
    fn clone(&self) -> Self {
        use std::sync::atomic::Ordering::Relaxed;
        Cached {
            value: self.value.clone(),
            fp: std::sync::atomic::AtomicU64::new(self.fp.load(Relaxed)),
        }
    }
}

impl<T> std::ops::Deref for Cached<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> std::ops::DerefMut for Cached<T> {
    fn deref_mut(&mut self) -> &mut T {
        *self.fp.get_mut() = 0;
        &mut self.value
    }
}

impl<T: Serialize> Serialize for Cached<T> {
    fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp<T: Serialize>(value: &T) -> u64 {
        let mut h = Fingerprinter::default();
        h.encoded(value);
        h.finish()
    }

    #[test]
    fn equal_values_feed_equal_fingerprints_and_lengths_are_told_apart() {
        assert_eq!(fp(&(vec![1u8, 2], 3u32)), fp(&(vec![1u8, 2], 3u32)));
        // The same bytes split differently between two sequences.
        assert_ne!(
            fp(&(vec![1u8, 2], vec![3u8])),
            fp(&(vec![1u8], vec![2u8, 3]))
        );
        assert_ne!(fp(&Some(0u8)), fp(&None::<u8>));
        assert_ne!(fp(&"ab".to_string()), fp(&"ba".to_string()));
        // Longer than the buffer, and differing only at the end.
        let long: Vec<u64> = (0..1000).collect();
        let mut other = long.clone();
        *other.last_mut().unwrap() += 1;
        assert_ne!(fp(&long), fp(&other));
        assert_eq!(fp(&long), fp(&long.clone()));
    }

    #[test]
    fn a_cached_value_forgets_its_fingerprint_when_written() {
        let mut cached = Cached::new(vec![1u32, 2]);
        let before = cached.fingerprint();
        assert_eq!(before, fp(&vec![1u32, 2]));
        let copy = cached.clone();
        cached.push(3);
        assert_eq!(cached.fingerprint(), fp(&vec![1u32, 2, 3]));
        assert_ne!(cached.fingerprint(), before);
        assert_eq!(copy.fingerprint(), before);
    }
}
