//! Latency recording: an HDR histogram of nanoseconds that survives a trip through JSON, so
//! that the nodes of a cluster can each record their own and a launcher can merge them.

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// Largest latency recorded exactly, in nanoseconds (one hour); longer ones are clamped.
pub const LATENCY_NS_MAX: u64 = 3_600 * 1_000_000_000;

/// Significant decimal digits kept: values are exact to 0.1 %.
const SIGNIFICANT_DIGITS: u8 = 3;

/// A histogram of latencies in nanoseconds, from 1 ns to [`LATENCY_NS_MAX`], exact to
/// 0.1 %. Serializes as `{"buckets": [[value_ns, count], ...]}` (only the non-empty
/// buckets), which [`LatencyHistogram::merge`] can add up across processes.
///
/// ```
/// use rehearsal_hardware::LatencyHistogram;
/// use std::time::Duration;
///
/// let mut a = LatencyHistogram::new();
/// a.record(Duration::from_micros(10));
/// let mut b = LatencyHistogram::new();
/// b.record(Duration::from_micros(30));
/// let json = serde_json::to_string(&b).unwrap();
/// a.merge(&serde_json::from_str(&json).unwrap());
/// let summary = a.summary();
/// assert_eq!(summary.count, 2);
/// assert!(summary.p99_ns >= 29_000 && summary.p99_ns <= 30_100, "{summary:?}");
/// ```
#[derive(Clone)]
pub struct LatencyHistogram {
    histogram: Histogram<u64>,
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("summary", &self.summary())
            .finish()
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram::new()
    }
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram {
            histogram: Histogram::new_with_bounds(1, LATENCY_NS_MAX, SIGNIFICANT_DIGITS)
                .expect("constant bounds are valid"),
        }
    }

    /// Records one latency (clamped to 1 ns ..= [`LATENCY_NS_MAX`]).
    pub fn record(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.record_ns(ns);
    }

    /// Records one latency in nanoseconds (clamped to 1 ..= [`LATENCY_NS_MAX`]).
    pub fn record_ns(&mut self, ns: u64) {
        self.histogram
            .saturating_record(ns.clamp(1, LATENCY_NS_MAX));
    }

    /// Adds every latency of `other`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Latencies recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// Count, mean, extremes and percentiles.
    pub fn summary(&self) -> LatencySummary {
        let h = &self.histogram;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean_ns: h.mean().round() as u64,
            min_ns: h.min(),
            p50_ns: h.value_at_quantile(0.50),
            p90_ns: h.value_at_quantile(0.90),
            p99_ns: h.value_at_quantile(0.99),
            p999_ns: h.value_at_quantile(0.999),
            max_ns: h.max(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Buckets {
    /// `[value_ns, count]` of every non-empty bucket, in increasing value order.
    buckets: Vec<(u64, u64)>,
}

impl Serialize for LatencyHistogram {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let buckets = self
            .histogram
            .iter_recorded()
            .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
            .collect();
        Buckets { buckets }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let Buckets { buckets } = Buckets::deserialize(deserializer)?;
        let mut latencies = LatencyHistogram::new();
        for (value_ns, count) in buckets {
            latencies
                .histogram
                .saturating_record_n(value_ns.clamp(1, LATENCY_NS_MAX), count);
        }
        Ok(latencies)
    }
}

/// What a [`LatencyHistogram`] says, in nanoseconds. All zero when nothing was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Latencies recorded.
    pub count: u64,
    /// Their mean.
    pub mean_ns: u64,
    /// The smallest.
    pub min_ns: u64,
    /// Median.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// The largest.
    pub max_ns: u64,
}
