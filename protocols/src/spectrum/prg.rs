//! The pseudorandom generator of the two-server DPF: AES-128 in counter mode.
//!
//! `G(seed)` is the AES-128-CTR keystream under key `seed`, counter starting at zero
//! (128-bit big-endian counter). Spending a fresh key per seed is what lets one seed name
//! a whole channel's worth of pseudorandom bytes: only the key schedule is paid per
//! channel, the rest runs at AES-NI keystream speed (the `aes` crate detects it at run
//! time and falls back to a constant-time software AES).
//!
//! ```
//! use rehearsal_protocols::spectrum::prg::{expand, xor_keystream};
//!
//! let seed = [7u8; 16];
//! let mut buf = vec![0u8; 40];
//! xor_keystream(&seed, &mut buf); // XOR into zeros: the keystream itself
//! assert_eq!(buf, expand(&seed, 40));
//! assert_eq!(expand(&seed, 16), expand(&seed, 40)[..16]); // a prefix of a longer output
//! ```

use ctr::cipher::{KeyIvInit, StreamCipher};
use rehearsal_sim_core::rand::CryptoRng;

/// A PRG seed: one AES-128 key.
pub type Seed = [u8; SEED_BYTES];

/// Bytes in a [`Seed`].
pub const SEED_BYTES: usize = 16;

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

/// The initial counter block: zero. Fixed, because each seed is used as a key once per
/// message slot (a seed that keyed two different streams would need distinct counters).
const COUNTER_START: [u8; 16] = [0u8; 16];

/// XORs `G(seed)`'s first `buf.len()` bytes into `buf`, in place. This is the whole cost
/// of evaluating one channel of a DPF key, so servers call it directly on their
/// accumulator instead of expanding into a temporary buffer.
pub fn xor_keystream(seed: &Seed, buf: &mut [u8]) {
    let mut cipher = Aes128Ctr::new(seed.into(), &COUNTER_START.into());
    // A message slot is far below the 2^132-byte keystream, so this cannot run out.
    cipher.apply_keystream(buf);
}

/// `G(seed)` truncated to `len_bytes` bytes.
pub fn expand(seed: &Seed, len_bytes: usize) -> Vec<u8> {
    let mut out = vec![0u8; len_bytes];
    xor_keystream(seed, &mut out);
    out
}

/// A uniformly random seed.
pub fn random_seed(rng: &mut (impl CryptoRng + ?Sized)) -> Seed {
    let mut seed = [0u8; SEED_BYTES];
    rng.fill_bytes(&mut seed);
    seed
}

#[cfg(test)]
mod tests {
    use super::*;

    /// NIST SP 800-38A, F.5.1 (CTR-AES128.Encrypt), first block: the PRG is AES-CTR and
    /// not merely something deterministic.
    #[test]
    fn keystream_matches_nist_ctr_vector() {
        let key: Seed = [
            0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf,
            0x4f, 0x3c,
        ];
        let counter = [
            0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd,
            0xfe, 0xff,
        ];
        let mut block = [
            0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93,
            0x17, 0x2a,
        ];
        let mut cipher = Aes128Ctr::new(&key.into(), &counter.into());
        cipher.apply_keystream(&mut block);
        assert_eq!(
            block,
            [
                0x87, 0x4d, 0x61, 0x91, 0xb6, 0x20, 0xe3, 0x26, 0x1b, 0xef, 0x68, 0x64, 0x99, 0x0d,
                0xb6, 0xce
            ]
        );
    }

    #[test]
    fn different_seeds_give_different_streams() {
        assert_ne!(expand(&[0u8; 16], 32), expand(&[1u8; 16], 32));
    }
}
