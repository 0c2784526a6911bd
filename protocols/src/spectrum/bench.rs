//! Workloads for timing Spectrum's primitives (`rehearsal bench spectrum`): plain
//! functions over a prepared [`Fixture`], with no clock of their own. The caller times
//! one call and divides by [`Fixture::bytes_per_eval`] or by one write.
//!
//! ```
//! use rehearsal_protocols::spectrum::bench::Fixture;
//!
//! let mut fixture = Fixture::new(8, 64, 1).unwrap();
//! fixture.keystream(); // the floor: raw AES-128-CTR over 8 × 64 bytes
//! fixture.eval(); // one DPF key over the same bytes
//! assert!(fixture.audit()); // both tokens and their comparison
//! ```

use super::dpf::{self, DpfKey};
use super::vdpf::{self, AccessKey, Upload};
use super::SpectrumError;
use rehearsal_sim_core::derive_rng;

/// One honest write and an accumulator, prepared once and reused by every timed call.
#[derive(Debug, Clone)]
pub struct Fixture {
    access_keys: Vec<AccessKey>,
    uploads: [Upload; 2],
    acc: Vec<Vec<u8>>,
}

impl Fixture {
    /// A write of a `message_bytes`-byte message to a middle channel of `channels`,
    /// drawn from `seed`.
    pub fn new(channels: usize, message_bytes: usize, seed: u64) -> Result<Fixture, SpectrumError> {
        let mut rng = derive_rng(seed, "spectrum bench", 0);
        let access_keys: Vec<AccessKey> =
            (0..channels).map(|_| AccessKey::random(&mut rng)).collect();
        let channel = channels / 2;
        let key = access_keys.get(channel).ok_or(SpectrumError::NoChannels)?;
        let message = vec![0x5a; message_bytes];
        let uploads = vdpf::gen_write(key, channels, channel, &message, &mut rng)?;
        Ok(Fixture {
            access_keys,
            uploads,
            acc: dpf::new_accumulator(channels, message_bytes),
        })
    }

    /// Bytes one [`Fixture::eval`] (or [`Fixture::keystream`]) produces: channels ×
    /// message bytes.
    pub fn bytes_per_eval(&self) -> usize {
        self.acc.iter().map(Vec::len).sum()
    }

    /// The floor of evaluation: XORs one AES-128-CTR keystream per channel into the
    /// accumulator, with server A's seeds, and nothing else.
    pub fn keystream(&mut self) {
        for (slot, seed) in self.acc.iter_mut().zip(&self.uploads[0].key.seeds) {
            super::prg::xor_keystream(seed, slot);
        }
    }

    /// One server's evaluation of one key into the accumulator.
    pub fn eval(&mut self) {
        let key: &DpfKey = &self.uploads[0].key;
        // Shapes agree by construction.
        let evaluated = key.eval_into(&mut self.acc);
        debug_assert!(evaluated.is_ok());
    }

    /// One write's audit: both servers' tokens and their comparison (true: accepted).
    pub fn audit(&self) -> bool {
        let message_bytes = self.uploads[0].key.cw.len();
        matches!(
            vdpf::audit(&self.access_keys, message_bytes, &self.uploads),
            Ok(true)
        )
    }

    /// The accumulator, so a benchmark can keep the optimiser from discarding the work.
    pub fn accumulator(&self) -> &[Vec<u8>] {
        &self.acc
    }
}
