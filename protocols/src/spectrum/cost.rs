//! The CPU time a server's DPF work takes, charged to the simulator with
//! [`Context::charge`](rehearsal_sim_core::Context::charge) so that a simulated round's
//! latency reflects the real cost and grows with channels and message size as the real
//! one does.
//!
//! The constants were measured on 2026-12-06 on the project's build machine (a 2-core
//! AMD EPYC VM, release build, AES-NI) with [`super::bench::Fixture`] and the `multi`
//! functions, by a throwaway timing loop over 16–1,024 channels and 1 B–16 KiB messages:
//!
//! | work (one server, one upload)     | measured                                        | constant |
//! |-----------------------------------|-------------------------------------------------|----------|
//! | 2-server evaluation               | 0.146–0.237 ns/byte (16 ch × 1 KiB: 3.9 µs; 256 ch × 4 KiB: 153 µs) | 0.15 ns/byte + 90 ns/channel (key schedule) |
//! | 2-server audit token              | 188–256 ns/channel (1-byte messages), +0.1 ns/byte of hashed word | 200 ns/channel + 0.1 ns/byte |
//! | k-server evaluation               | 59–63 µs per (channel, point)                   | 60 µs per (channel, point) |
//! | k-server audit token              | 24 µs (8 ch, 4 points), 164 µs (16 ch, 37 points) | 1 µs/channel + 4 µs/point (hash of compressed points) |
//!
//! Other machines differ by a constant factor; the shape (linear in channels × bytes for
//! evaluation, in channels for the audit) is what the simulation relies on.

use super::config::{Config, Variant};
use std::time::Duration;

/// Two-server evaluation: AES-128-CTR keystream XORed into the accumulator, per byte, in
/// picoseconds (0.15 ns).
pub const EVAL_PS_PER_BYTE: u64 = 150;
/// Two-server evaluation: the AES key schedule and bookkeeping, per channel.
pub const EVAL_NS_PER_CHANNEL: u64 = 90;
/// Two-server audit token: one scalar multiplication and addition per channel.
pub const AUDIT_NS_PER_CHANNEL: u64 = 200;
/// Two-server audit token: BLAKE3 of the correction word, per byte, in picoseconds.
pub const CW_HASH_PS_PER_BYTE: u64 = 100;
/// k-server evaluation: one scalar multiplication (and two additions) per channel and
/// message point.
pub const MULTI_EVAL_NS_PER_POINT: u64 = 60_000;
/// k-server audit token: two scalar multiplications per channel.
pub const MULTI_AUDIT_NS_PER_CHANNEL: u64 = 1_000;
/// k-server audit token: compressing and hashing the correction word, per point.
pub const MULTI_CW_HASH_NS_PER_POINT: u64 = 4_000;

/// One server's evaluation of one upload into its accumulator.
pub fn eval(config: &Config) -> Duration {
    let channels = u64::from(config.channels);
    let ns = match config.variant() {
        Variant::TwoServer => {
            channels * u64::from(config.message_bytes) * EVAL_PS_PER_BYTE / 1_000
                + channels * EVAL_NS_PER_CHANNEL
        }
        Variant::Multi => channels * config.message_points() as u64 * MULTI_EVAL_NS_PER_POINT,
    };
    Duration::from_nanos(ns)
}

/// One server's audit token for one upload.
pub fn audit(config: &Config) -> Duration {
    let channels = u64::from(config.channels);
    let ns = match config.variant() {
        Variant::TwoServer => {
            channels * AUDIT_NS_PER_CHANNEL
                + u64::from(config.message_bytes) * CW_HASH_PS_PER_BYTE / 1_000
        }
        Variant::Multi => {
            channels * MULTI_AUDIT_NS_PER_CHANNEL
                + config.message_points() as u64 * MULTI_CW_HASH_NS_PER_POINT
        }
    };
    Duration::from_nanos(ns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_grow_with_channels_and_message_size() {
        let base = Config::default();
        let more_channels = Config {
            channels: base.channels * 4,
            ..base.clone()
        };
        let longer = Config {
            message_bytes: base.message_bytes * 4,
            ..base.clone()
        };
        assert!(eval(&more_channels) > eval(&base) * 3);
        assert!(eval(&longer) > eval(&base) * 2);
        assert!(audit(&more_channels) > audit(&base) * 3);
        // 16 channels of 1 KiB: about 4 µs to evaluate, as measured.
        assert_eq!(eval(&base), Duration::from_nanos(16 * 1024 * 150 / 1000 + 16 * 90));
    }
}
