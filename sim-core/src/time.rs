//! Virtual time: an integer count of nanoseconds since the start of a run.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// A point in virtual time, in nanoseconds since the run started.
///
/// ```
/// use rehearsal_sim_core::Time;
/// let t = Time::from_millis(1500);
/// assert_eq!(t.as_nanos(), 1_500_000_000);
/// assert_eq!(t.to_string(), "1.5s");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Time(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);
    pub const MAX: Time = Time(u64::MAX);

    pub const fn from_nanos(ns: u64) -> Time {
        Time(ns)
    }
    pub const fn from_micros(us: u64) -> Time {
        Time(us.saturating_mul(1_000))
    }
    pub const fn from_millis(ms: u64) -> Time {
        Time(ms.saturating_mul(1_000_000))
    }
    pub const fn from_secs(s: u64) -> Time {
        Time(s.saturating_mul(1_000_000_000))
    }
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
    /// `self + d`, saturating at [`Time::MAX`] so that a huge timer cannot wrap around.
    pub fn after(self, d: Duration) -> Time {
        Time(self.0.saturating_add(duration_ns(d)))
    }
    pub fn saturating_sub(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

/// A duration as whole nanoseconds, saturating at `u64::MAX` (about 584 years).
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl fmt::Display for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_ns(self.0))
    }
}

impl fmt::Debug for Time {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Time({})", format_ns(self.0))
    }
}

/// Formats nanoseconds with the largest unit that keeps the number readable, in the same
/// syntax that [`parse_duration`] reads back (`250us`, `10ms`, `1.5s`, `2m`).
pub fn format_ns(ns: u64) -> String {
    const UNITS: [(u64, &str); 5] = [
        (60_000_000_000, "m"),
        (1_000_000_000, "s"),
        (1_000_000, "ms"),
        (1_000, "us"),
        (1, "ns"),
    ];
    if ns == 0 {
        return "0s".to_string();
    }
    for (scale, unit) in UNITS {
        // Minutes only when whole: a decimal fraction of a minute reads badly.
        if ns >= scale && (unit != "m" || ns % scale == 0) {
            if ns % scale == 0 {
                return format!("{}{unit}", ns / scale);
            }
            // Exact decimal rendering: integer part, then the remainder without trailing zeros.
            let width = scale.ilog10() as usize;
            let frac = format!("{:0width$}", ns % scale, width = width);
            return format!("{}.{}{unit}", ns / scale, frac.trim_end_matches('0'));
        }
    }
    unreachable!("the last unit is 1ns")
}

/// Error from [`parse_duration`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: expected a number and a unit, such as 10ms")]
    Empty,
    #[error("duration `{0}` has no unit: write it as e.g. `{0}ms` or `{0}s` (units: ns, us, ms, s, m, h)")]
    MissingUnit(String),
    #[error("duration `{text}` has unknown unit `{unit}` (units: ns, us, ms, s, m, h)")]
    UnknownUnit { text: String, unit: String },
    #[error("duration `{0}` is not a non-negative number followed by a unit, such as 1.5s")]
    BadNumber(String),
    #[error("duration `{0}` is too large (at most about 584 years)")]
    TooLarge(String),
}

/// Parses a duration such as `250us`, `10ms`, `1.5s`, `2m`, `1h` or `0`.
///
/// ```
/// use rehearsal_sim_core::parse_duration;
/// assert_eq!(parse_duration("1.5s").unwrap().as_millis(), 1500);
/// assert!(parse_duration("10").is_err());
/// ```
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .ok_or_else(|| DurationError::MissingUnit(text.to_string()))?;
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit {
        "ns" => 1,
        "us" | "µs" => 1_000,
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" | "min" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => {
            return Err(DurationError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            })
        }
    };
    // Parse integer and fraction separately so `1.5s` is exact, with no float rounding.
    let (int_part, frac_part) = match number.split_once('.') {
        Some((i, f)) => (i, f),
        None => (number, ""),
    };
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return Err(DurationError::BadNumber(text.to_string()));
    }
    let int: u64 = if int_part.is_empty() {
        0
    } else {
        int_part
            .parse()
            .map_err(|_| DurationError::TooLarge(text.to_string()))?
    };
    let mut ns = int
        .checked_mul(scale)
        .ok_or_else(|| DurationError::TooLarge(text.to_string()))?;
    let mut place = scale;
    for digit in frac_part.bytes() {
        place /= 10;
        if place == 0 {
            break; // finer than a nanosecond: ignored
        }
        ns = ns
            .checked_add(u64::from(digit - b'0') * place)
            .ok_or_else(|| DurationError::TooLarge(text.to_string()))?;
    }
    Ok(Duration::from_nanos(ns))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        assert_eq!(parse_duration("250us").unwrap(), Duration::from_micros(250));
        assert_eq!(parse_duration("10ms").unwrap(), Duration::from_millis(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("7ns").unwrap(), Duration::from_nanos(7));
        assert_eq!(parse_duration(".5s").unwrap(), Duration::from_millis(500));
    }

    #[test]
    fn rejects_malformed_durations() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::MissingUnit(_))
        ));
        assert!(matches!(
            parse_duration("10parsecs"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("1.2.3s"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("ms"),
            Err(DurationError::BadNumber(_))
        ));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::MissingUnit(_)) | Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999s"),
            Err(DurationError::TooLarge(_))
        ));
    }

    #[test]
    fn format_round_trips_through_parse() {
        for ns in [
            1,
            999,
            1_000,
            250_000,
            10_000_000,
            1_500_000_000,
            120_000_000_000,
            1_234_567,
        ] {
            let text = format_ns(ns);
            assert_eq!(duration_ns(parse_duration(&text).unwrap()), ns, "{text}");
        }
    }
}
