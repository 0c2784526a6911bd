//! The two-server distributed point function over `n` channels of `L`-byte messages.
//!
//! A write of message `m` to channel `i` is a pair of keys, one per server. Both hold a
//! seed and a bit per channel and one correction word `cw`; they are equal everywhere
//! except at channel `i`, where server B's key has a fresh seed and the opposite bit:
//!
//! ```text
//! cw = G(seed_A[i]) ⊕ G(seed_B[i]) ⊕ m
//! server s, channel j:  eval_s[j] = G(seed_s[j]) ⊕ (bit_s[j] ? cw : 0)
//! eval_A[j] ⊕ eval_B[j] = m at j = i (one bit set, seeds differ), 0 elsewhere (all equal)
//! ```
//!
//! Each key alone is uniformly random seeds and bits and a pseudorandom `cw`, so neither
//! server learns `i` or `m`. A client that does not write sends a *cover*: two identical
//! keys, which evaluate to zero on every channel. A server cannot tell the two apart; the
//! audit ([`super::vdpf`]) tells it whether the pair differs at exactly one channel the
//! client may write to.
//!
//! Servers add every client's evaluation into one accumulator per channel with
//! [`DpfKey::eval_into`], then XOR their two accumulators ([`combine`]) to publish.
//!
//! ```
//! use rehearsal_protocols::spectrum::dpf::{combine, gen_write, new_accumulator};
//! use rehearsal_sim_core::derive_rng;
//!
//! let mut rng = derive_rng(1, "doc", 0);
//! let [key_a, key_b] = gen_write(4, 2, b"hello", &mut rng).unwrap();
//! let (mut acc_a, mut acc_b) = (new_accumulator(4, 5), new_accumulator(4, 5));
//! key_a.eval_into(&mut acc_a).unwrap();
//! key_b.eval_into(&mut acc_b).unwrap();
//! let published = combine(&acc_a, &acc_b).unwrap();
//! assert_eq!(published[2], b"hello");
//! assert_eq!(published[0], [0u8; 5]);
//! ```

use super::prg::{self, Seed};
use super::SpectrumError;
use rehearsal_sim_core::rand::CryptoRng;
use serde::{Deserialize, Serialize};

/// One server's key of a write or cover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DpfKey {
    /// One PRG seed per channel.
    pub seeds: Vec<Seed>,
    /// One bit per channel: whether the correction word is XORed into the channel.
    pub bits: Vec<bool>,
    /// The correction word, one message long.
    pub cw: Vec<u8>,
}

impl DpfKey {
    /// Checks the shape of a key received from outside: `channels` seeds and bits and a
    /// correction word of `message_bytes` bytes. Everything else about a key is valid
    /// (any bytes are a seed); whether the pair is a legitimate write is the audit's
    /// question.
    pub fn validate(&self, channels: usize, message_bytes: usize) -> Result<(), SpectrumError> {
        check_channels("DpfKey.seeds", channels, self.seeds.len())?;
        check_channels("DpfKey.bits", channels, self.bits.len())?;
        check_message("DpfKey.cw", message_bytes, self.cw.len())
    }

    /// How many channels the key covers.
    pub fn channels(&self) -> usize {
        self.seeds.len()
    }

    /// XORs this key's evaluation into `acc`, one slot per channel:
    /// `acc[j] ^= G(seed[j]) ⊕ (bit[j] ? cw : 0)`. The keystream is XORed straight into
    /// the slot, so the cost is about that of the raw keystream.
    ///
    /// Refuses (and leaves `acc` untouched) when the key's shape and the accumulator's
    /// disagree.
    pub fn eval_into(&self, acc: &mut [Vec<u8>]) -> Result<(), SpectrumError> {
        check_accumulator(acc, self.channels(), self.cw.len())?;
        self.validate(acc.len(), self.cw.len())?;
        for ((slot, seed), &bit) in acc.iter_mut().zip(&self.seeds).zip(&self.bits) {
            prg::xor_keystream(seed, slot);
            if bit {
                xor_in_place(slot, &self.cw);
            }
        }
        Ok(())
    }

    /// This key's evaluation on every channel, in a fresh accumulator. Refuses a key
    /// whose seeds and bits disagree in length.
    pub fn eval(&self) -> Result<Vec<Vec<u8>>, SpectrumError> {
        let mut acc = new_accumulator(self.channels(), self.cw.len());
        self.eval_into(&mut acc)?;
        Ok(acc)
    }
}

/// An all-zero accumulator: `channels` slots of `message_bytes` bytes.
pub fn new_accumulator(channels: usize, message_bytes: usize) -> Vec<Vec<u8>> {
    vec![vec![0u8; message_bytes]; channels]
}

/// The published channels: the XOR of the two servers' accumulators.
pub fn combine(acc_a: &[Vec<u8>], acc_b: &[Vec<u8>]) -> Result<Vec<Vec<u8>>, SpectrumError> {
    check_channels("accumulator", acc_a.len(), acc_b.len())?;
    acc_a
        .iter()
        .zip(acc_b)
        .map(|(a, b)| {
            check_message("accumulator slot", a.len(), b.len())?;
            let mut out = a.clone();
            xor_in_place(&mut out, b);
            Ok(out)
        })
        .collect()
}

/// The key pair that writes `message` to `channel` of `channels`.
pub fn gen_write(
    channels: usize,
    channel: usize,
    message: &[u8],
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<[DpfKey; 2], SpectrumError> {
    if channels == 0 {
        return Err(SpectrumError::NoChannels);
    }
    if channel >= channels {
        return Err(SpectrumError::ChannelOutOfRange { channel, channels });
    }
    let mut key_a = random_key(channels, Vec::new(), rng);
    let mut key_b = key_a.clone();
    // Equal seeds at the written channel would cancel `G` and publish `cw`, not `m`;
    // redraw (a 2^-128 event, so this loop runs once).
    while key_b.seeds[channel] == key_a.seeds[channel] {
        key_b.seeds[channel] = prg::random_seed(rng);
    }
    key_b.bits[channel] = !key_a.bits[channel];
    let mut cw = prg::expand(&key_a.seeds[channel], message.len());
    prg::xor_keystream(&key_b.seeds[channel], &mut cw);
    xor_in_place(&mut cw, message);
    key_a.cw.clone_from(&cw);
    key_b.cw = cw;
    Ok([key_a, key_b])
}

/// The key pair of a client that does not write: two identical keys of random seeds,
/// bits and correction word, so each looks like one half of a write.
pub fn gen_cover(
    channels: usize,
    message_bytes: usize,
    rng: &mut (impl CryptoRng + ?Sized),
) -> Result<[DpfKey; 2], SpectrumError> {
    if channels == 0 {
        return Err(SpectrumError::NoChannels);
    }
    let mut cw = vec![0u8; message_bytes];
    rng.fill_bytes(&mut cw);
    let key = random_key(channels, cw, rng);
    Ok([key.clone(), key])
}

fn random_key(channels: usize, cw: Vec<u8>, rng: &mut (impl CryptoRng + ?Sized)) -> DpfKey {
    let seeds: Vec<Seed> = (0..channels).map(|_| prg::random_seed(rng)).collect();
    let mut bit_bytes = vec![0u8; channels];
    rng.fill_bytes(&mut bit_bytes);
    let bits = bit_bytes.iter().map(|byte| byte & 1 == 1).collect();
    DpfKey { seeds, bits, cw }
}

/// `dst ^= src`, byte by byte (the compiler vectorises it); equal lengths.
pub(crate) fn xor_in_place(dst: &mut [u8], src: &[u8]) {
    debug_assert_eq!(dst.len(), src.len());
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

pub(crate) fn check_channels(
    field: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), SpectrumError> {
    if expected == got {
        Ok(())
    } else {
        Err(SpectrumError::WrongChannelCount {
            field,
            expected,
            got,
        })
    }
}

pub(crate) fn check_message(
    field: &'static str,
    expected: usize,
    got: usize,
) -> Result<(), SpectrumError> {
    if expected == got {
        Ok(())
    } else {
        Err(SpectrumError::WrongMessageLength {
            field,
            expected,
            got,
        })
    }
}

fn check_accumulator(
    acc: &[Vec<u8>],
    channels: usize,
    message_bytes: usize,
) -> Result<(), SpectrumError> {
    check_channels("accumulator", channels, acc.len())?;
    acc.iter()
        .try_for_each(|slot| check_message("accumulator slot", message_bytes, slot.len()))
}
