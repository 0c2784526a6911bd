//! Link bandwidth: how long a message takes to leave its sender, written as a rate such as
//! `100Mbit/s`, `1Gbit/s` or `10MB/s`.

#![warn(missing_docs)]

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The capacity of one link, in bits per second (at least 1).
///
/// Written and serialized as a spec string. Decimal prefixes are powers of 1000
/// (`kbit/s`, `Mbit/s`, `Gbit/s`, `Tbit/s`, `kB/s`, `MB/s`, `GB/s`, `TB/s`), binary ones powers
/// of 1024 (`Kibit/s`, `Mibit/s`, `Gibit/s`, `KiB/s`, `MiB/s`, `GiB/s`); `B` is a byte and `bit`
/// a bit, so `10MB/s` is `80Mbit/s`.
///
/// ```
/// use rehearsal_net_models::Bandwidth;
/// let link: Bandwidth = "10MB/s".parse().unwrap();
/// assert_eq!(link.bits_per_sec(), 80_000_000);
/// assert_eq!(link.to_string(), "80Mbit/s");
/// // 1,000 bytes at 80 Mbit/s take 100 microseconds to serialize.
/// assert_eq!(link.serialization_ns(1_000), 100_000);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bandwidth {
    bits_per_sec: u64,
}

impl Bandwidth {
    /// A bandwidth of `bits_per_sec` bits per second; `None` for zero, which would never
    /// deliver anything.
    pub const fn from_bits_per_sec(bits_per_sec: u64) -> Option<Bandwidth> {
        if bits_per_sec == 0 {
            None
        } else {
            Some(Bandwidth { bits_per_sec })
        }
    }

    /// The rate in bits per second (never zero).
    pub const fn bits_per_sec(self) -> u64 {
        self.bits_per_sec
    }

    /// Nanoseconds to put `bytes` bytes on the wire, rounded up so that a non-empty message
    /// always takes some time.
    #[inline]
    pub fn serialization_ns(self, bytes: usize) -> u64 {
        let bits = (bytes as u128) * 8;
        let ns = (bits * 1_000_000_000).div_ceil(u128::from(self.bits_per_sec));
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// Error from parsing a bandwidth spec; says what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BandwidthSpecError {
    /// Nothing was written.
    #[error("empty bandwidth: expected a rate such as 100Mbit/s, 1Gbit/s or 10MB/s")]
    Empty,
    /// The number part is missing or malformed.
    #[error("bandwidth `{0}` does not start with a non-negative number: expected e.g. 100Mbit/s")]
    BadNumber(String),
    /// The unit is missing or unknown.
    #[error("bandwidth `{text}` has unknown unit `{unit}`: expected {expected}")]
    UnknownUnit {
        /// The whole spec.
        text: String,
        /// The unit as written.
        unit: String,
        /// Hint naming the accepted units.
        expected: &'static str,
    },
    /// The rate is zero: nothing would ever be delivered.
    #[error("bandwidth `{0}` is zero: a link needs at least 1bit/s (omit `bandwidth` for an unlimited link)")]
    Zero(String),
    /// The rate does not fit in 64 bits of bits per second.
    #[error("bandwidth `{0}` is too large (at most about 18Ebit/s)")]
    TooLarge(String),
}

const UNITS_EXPECTED: &str =
    "bit/s, kbit/s, Mbit/s, Gbit/s, Tbit/s, B/s, kB/s, MB/s, GB/s, TB/s (or Kibit/s, Mibit/s, Gibit/s, KiB/s, MiB/s, GiB/s)";

/// Bits per second of one unit.
fn unit_scale(unit: &str) -> Option<u64> {
    const K: u64 = 1_000;
    const KI: u64 = 1_024;
    Some(match unit {
        "bit/s" | "bps" => 1,
        "kbit/s" | "Kbit/s" | "kbps" | "Kbps" => K,
        "Mbit/s" | "Mbps" => K * K,
        "Gbit/s" | "Gbps" => K * K * K,
        "Tbit/s" | "Tbps" => K * K * K * K,
        "Kibit/s" => KI,
        "Mibit/s" => KI * KI,
        "Gibit/s" => KI * KI * KI,
        "B/s" => 8,
        "kB/s" | "KB/s" => 8 * K,
        "MB/s" => 8 * K * K,
        "GB/s" => 8 * K * K * K,
        "TB/s" => 8 * K * K * K * K,
        "KiB/s" => 8 * KI,
        "MiB/s" => 8 * KI * KI,
        "GiB/s" => 8 * KI * KI * KI,
        _ => return None,
    })
}

impl FromStr for Bandwidth {
    type Err = BandwidthSpecError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err(BandwidthSpecError::Empty);
        }
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let unit = unit.trim_start();
        let bad_number = || BandwidthSpecError::BadNumber(text.to_string());
        let scale = match unit_scale(unit) {
            Some(scale) => scale,
            None => {
                // A unit without `/s` is the most common slip (`100Mbit`, `10MB`): say so.
                let expected = if unit.is_empty() || !unit.ends_with("/s") {
                    "a rate unit ending in /s, such as Mbit/s or MB/s"
                } else {
                    UNITS_EXPECTED
                };
                if number.is_empty() {
                    return Err(bad_number());
                }
                return Err(BandwidthSpecError::UnknownUnit {
                    text: text.to_string(),
                    unit: unit.to_string(),
                    expected,
                });
            }
        };
        // Integer and fraction apart, so `1.5Gbit/s` is exact without float rounding.
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        if (int_part.is_empty() && frac_part.is_empty()) || frac_part.contains('.') {
            return Err(bad_number());
        }
        let too_large = || BandwidthSpecError::TooLarge(text.to_string());
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| too_large())?
        };
        let mut bits = int.checked_mul(u128::from(scale)).ok_or_else(too_large)?;
        // The fraction, truncated below one bit per second; 18 digits are finer than that
        // for every unit and keep the product within 128 bits.
        let (mut fraction, mut denominator) = (0u128, 1u128);
        for digit in frac_part.bytes().take(18) {
            fraction = fraction * 10 + u128::from(digit - b'0');
            denominator *= 10;
        }
        bits += fraction * u128::from(scale) / denominator;
        let bits = u64::try_from(bits).map_err(|_| too_large())?;
        Bandwidth::from_bits_per_sec(bits).ok_or_else(|| BandwidthSpecError::Zero(text.to_string()))
    }
}

impl fmt::Display for Bandwidth {
    /// The largest unit that shows the rate as a whole number, so the text reads back exactly.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: [(u64, &str); 8] = [
            (1_000_000_000_000, "Tbit/s"),
            (1_000_000_000, "Gbit/s"),
            (8 << 30, "GiB/s"),
            (1_000_000, "Mbit/s"),
            (8 << 20, "MiB/s"),
            (1_000, "kbit/s"),
            (8 << 10, "KiB/s"),
            (1, "bit/s"),
        ];
        let bits = self.bits_per_sec;
        for (scale, unit) in SHOWN {
            if bits % scale == 0 {
                return write!(f, "{}{unit}", bits / scale);
            }
        }
        unreachable!("every rate is a whole number of bit/s")
    }
}

// Serialized as its spec string, like `Latency`, so configurations read like the CLI.
impl Serialize for Bandwidth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Bandwidth {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bits_and_bytes_with_decimal_and_binary_prefixes() {
        let bps = |s: &str| s.parse::<Bandwidth>().unwrap().bits_per_sec();
        assert_eq!(bps("100Mbit/s"), 100_000_000);
        assert_eq!(bps("1Gbit/s"), 1_000_000_000);
        assert_eq!(bps("10MB/s"), 80_000_000);
        assert_eq!(bps("1.5Gbit/s"), 1_500_000_000);
        assert_eq!(bps("2 KiB/s"), 16_384);
        assert_eq!(bps("56kbit/s"), 56_000);
        assert_eq!(bps("1bit/s"), 1);
        assert_eq!(bps(".5kbit/s"), 500);
    }

    #[test]
    fn display_reads_back_exactly() {
        for spec in [
            "100Mbit/s",
            "1Gbit/s",
            "10MiB/s",
            "3bit/s",
            "1500Mbit/s",
            "2KiB/s",
        ] {
            let parsed: Bandwidth = spec.parse().unwrap();
            assert_eq!(parsed.to_string(), spec);
            assert_eq!(parsed.to_string().parse::<Bandwidth>().unwrap(), parsed);
        }
        assert_eq!(
            "10MB/s".parse::<Bandwidth>().unwrap().to_string(),
            "80Mbit/s"
        );
    }

    #[test]
    fn malformed_rates_say_what_was_expected() {
        let err = |s: &str| s.parse::<Bandwidth>().unwrap_err().to_string();
        assert!(err("").contains("empty"));
        assert!(err("100Mb").contains("ending in /s"), "{}", err("100Mb"));
        assert!(err("100Mbit").contains("ending in /s"));
        assert!(err("100Xbit/s").contains("Mbit/s"));
        assert!(err("fast").contains("number"));
        assert!(err("0Mbit/s").contains("zero"));
        assert!(err("1.2.3Mbit/s").contains("number"));
        assert!(err("99999999999999999999999Tbit/s").contains("too large"));
    }

    #[test]
    fn serialization_delay_rounds_up() {
        let link = Bandwidth::from_bits_per_sec(3).unwrap();
        assert_eq!(link.serialization_ns(1), 2_666_666_667);
        assert_eq!(link.serialization_ns(0), 0);
        let gig: Bandwidth = "1Gbit/s".parse().unwrap();
        assert_eq!(gig.serialization_ns(1_500), 12_000);
    }
}
