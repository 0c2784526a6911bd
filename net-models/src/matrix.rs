//! Per-link latency matrices: one-way latencies between every pair of nodes, as measured
//! between data centres, read from a CSV file of milliseconds.

#![warn(missing_docs)]

use crate::config::NetConfigError;
use rehearsal_sim_core::NodeId;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Largest latency a matrix entry may hold, in milliseconds (about 31 years): keeps every
/// sum of an entry, jitter and queueing far from overflowing 64-bit nanoseconds.
pub const MATRIX_MS_MAX: f64 = 1e12;

/// One-way latencies, `nodes × nodes`: entry `(from, to)` is the time a message from `from`
/// takes to reach `to`. Not necessarily symmetric.
///
/// Serialized as rows of milliseconds (`[[0.0, 30.5], [31.0, 0.0]]`), so a configuration
/// holds the values themselves and a run replays from its trace without the CSV file.
///
/// ```
/// use rehearsal_net_models::LatencyMatrix;
/// use rehearsal_sim_core::NodeId;
/// let csv = "# from \\ to: eu, us\n0, 40\n42.5, 0\n";
/// let matrix = LatencyMatrix::from_csv_str(csv, "geo.csv").unwrap();
/// assert_eq!(matrix.nodes(), 2);
/// assert_eq!(matrix.get_ns(NodeId(1), NodeId(0)), 42_500_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatencyMatrix {
    nodes: usize,
    /// Row-major: `ns[from * nodes + to]`.
    ns: Vec<u64>,
}

/// Why a number cannot be a matrix entry, phrased as what was expected.
fn entry_ns(ms: f64) -> Result<u64, String> {
    if !ms.is_finite() || ms < 0.0 {
        return Err(format!(
            "expected a non-negative number of milliseconds, got {ms}"
        ));
    }
    if ms > MATRIX_MS_MAX {
        return Err(format!(
            "expected at most {MATRIX_MS_MAX} milliseconds, got {ms}"
        ));
    }
    Ok((ms * 1e6).round() as u64)
}

impl LatencyMatrix {
    /// A matrix from rows of milliseconds; every row must have one entry per row.
    pub fn from_rows_ms(rows: &[Vec<f64>]) -> Result<LatencyMatrix, String> {
        let nodes = rows.len();
        if nodes == 0 {
            return Err("the latency matrix is empty: expected n rows of n latencies".into());
        }
        let mut ns = Vec::with_capacity(nodes * nodes);
        for (r, row) in rows.iter().enumerate() {
            if row.len() != nodes {
                return Err(format!(
                    "row {} of the latency matrix has {} {}, expected {nodes} (the matrix has {nodes} rows)",
                    r + 1,
                    row.len(),
                    if row.len() == 1 { "entry" } else { "entries" }
                ));
            }
            for (c, &ms) in row.iter().enumerate() {
                let entry = entry_ns(ms)
                    .map_err(|e| format!("latency matrix row {}, column {}: {e}", r + 1, c + 1))?;
                ns.push(entry);
            }
        }
        Ok(LatencyMatrix { nodes, ns })
    }

    /// A matrix of `nodes × nodes` nanosecond entries in row-major order; `None` if `ns`
    /// does not have `nodes * nodes` entries or `nodes` is zero.
    pub fn from_ns(nodes: usize, ns: Vec<u64>) -> Option<LatencyMatrix> {
        (nodes > 0 && nodes.checked_mul(nodes) == Some(ns.len()))
            .then_some(LatencyMatrix { nodes, ns })
    }

    /// The number of nodes (rows, and columns).
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// The one-way latency from `from` to `to`, in nanoseconds.
    ///
    /// Panics if either node is outside the matrix ([`crate::NetConfig::validate`] checks
    /// the size against the run).
    pub fn get_ns(&self, from: NodeId, to: NodeId) -> u64 {
        assert!(
            from.index() < self.nodes && to.index() < self.nodes,
            "link {from}->{to} is outside a {0}x{0} latency matrix",
            self.nodes
        );
        self.ns[from.index() * self.nodes + to.index()]
    }

    /// The rows in milliseconds, as serialized.
    pub fn rows_ms(&self) -> Vec<Vec<f64>> {
        self.ns
            .chunks(self.nodes)
            .map(|row| row.iter().map(|&ns| ns as f64 / 1e6).collect())
            .collect()
    }

    /// Reads a CSV file: see [`LatencyMatrix::from_csv_str`].
    pub fn from_csv_file(path: &Path) -> Result<LatencyMatrix, NetConfigError> {
        let file = path.display().to_string();
        let text =
            crate::scenario::read_text_file(path).map_err(|problem| NetConfigError::Read {
                file: file.clone(),
                problem,
            })?;
        LatencyMatrix::from_csv_str(&text, &file)
    }

    /// Parses CSV text: `n` lines of `n` comma-separated non-negative numbers of
    /// milliseconds (line = sender, column = receiver). Blank lines and `#` comments (whole
    /// lines, or the rest of a line) are ignored. Errors name `origin`, the line and the
    /// column, and say what was expected.
    pub fn from_csv_str(text: &str, origin: &str) -> Result<LatencyMatrix, NetConfigError> {
        let at = |line: usize, column: usize, message: String| NetConfigError::At {
            file: origin.to_string(),
            line,
            column,
            message,
        };
        let mut nodes = 0usize;
        let mut ns: Vec<u64> = Vec::new();
        let mut rows = 0usize;
        let mut last_line = 0usize;
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            last_line = line;
            let content = raw.split('#').next().unwrap_or("");
            if content.trim().is_empty() {
                continue;
            }
            if rows > 0 && rows == nodes {
                return Err(at(
                    line,
                    1,
                    format!(
                        "found row {} but the first row has {nodes} entries, so the matrix has {nodes} rows",
                        rows + 1
                    ),
                ));
            }
            let mut entries = 0usize;
            // Columns count characters (1-based) from the start of the line.
            let mut cell_start = 0usize;
            for cell in content.split(',') {
                let leading = cell.len() - cell.trim_start().len();
                let column = content[..cell_start + leading].chars().count() + 1;
                cell_start += cell.len() + 1;
                let cell = cell.trim();
                if rows > 0 && entries == nodes {
                    return Err(at(
                        line,
                        column,
                        format!(
                            "row {} has more than {nodes} entries: expected one per node, as in the first row",
                            rows + 1
                        ),
                    ));
                }
                if cell.is_empty() {
                    return Err(at(
                        line,
                        column,
                        "expected a number of milliseconds, found an empty cell".into(),
                    ));
                }
                let ms: f64 = cell.parse().map_err(|_| {
                    at(
                        line,
                        column,
                        format!("expected a non-negative number of milliseconds, got `{cell}`"),
                    )
                })?;
                let entry = entry_ns(ms).map_err(|e| at(line, column, e))?;
                ns.push(entry);
                entries += 1;
            }
            if rows == 0 {
                nodes = entries;
                ns.reserve(
                    nodes
                        .saturating_mul(nodes)
                        .saturating_sub(ns.len())
                        .min(1 << 20),
                );
            } else if entries < nodes {
                let column = content.trim_end().chars().count() + 1;
                return Err(at(
                    line,
                    column,
                    format!(
                        "row {} has {entries} {}, expected {nodes} (one per node, as in the first row)",
                        rows + 1,
                        if entries == 1 { "entry" } else { "entries" }
                    ),
                ));
            }
            rows += 1;
        }
        if rows == 0 {
            return Err(at(
                last_line.max(1),
                1,
                "no rows: expected n lines of n comma-separated latencies in milliseconds".into(),
            ));
        }
        if rows < nodes {
            return Err(at(
                last_line + 1,
                1,
                format!("expected {nodes} rows (the first row has {nodes} entries), found {rows}"),
            ));
        }
        Ok(LatencyMatrix { nodes, ns })
    }
}

impl Serialize for LatencyMatrix {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.rows_ms().serialize(s)
    }
}

impl<'de> Deserialize<'de> for LatencyMatrix {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let rows = Vec::<Vec<f64>>::deserialize(d)?;
        LatencyMatrix::from_rows_ms(&rows).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_blank_lines_and_spaces_are_ignored() {
        let csv = "# geo\n\n 0 , 10.5 ,20 # to n2\n10,0,5\r\n\n20,5,0\n# end\n";
        let m = LatencyMatrix::from_csv_str(csv, "g.csv").unwrap();
        assert_eq!(m.nodes(), 3);
        assert_eq!(m.get_ns(NodeId(0), NodeId(1)), 10_500_000);
        assert_eq!(m.get_ns(NodeId(2), NodeId(1)), 5_000_000);
    }

    #[test]
    fn rows_in_milliseconds_round_trip() {
        let m = LatencyMatrix::from_rows_ms(&[vec![0.0, 30.25], vec![31.000001, 0.0]]).unwrap();
        assert_eq!(m.get_ns(NodeId(1), NodeId(0)), 31_000_001);
        assert_eq!(LatencyMatrix::from_rows_ms(&m.rows_ms()).unwrap(), m);
    }

    #[test]
    fn bad_rows_are_refused_with_what_was_expected() {
        assert!(LatencyMatrix::from_rows_ms(&[]).is_err());
        let err = LatencyMatrix::from_rows_ms(&[vec![0.0, 1.0], vec![1.0]]).unwrap_err();
        assert!(err.contains("row 2") && err.contains("expected 2"), "{err}");
        let err = LatencyMatrix::from_rows_ms(&[vec![-1.0]]).unwrap_err();
        assert!(err.contains("non-negative"), "{err}");
    }
}
