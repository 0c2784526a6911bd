//! Checking a cluster's outputs against its protocol's invariants.

use super::*;

// ---- Checking a cluster's outputs ---------------------------------------------------------

/// One line of a node's outputs file.
#[derive(Deserialize)]
pub(super) struct OutputLine<V> {
    node: NodeId,
    at: Time,
    value: V,
}

/// Reads every outputs file; a missing file (a node that output nothing) reads as empty.
pub(crate) fn read_outputs<V: serde::de::DeserializeOwned>(
    files: &[PathBuf],
) -> Result<Vec<OutputRecord<V>>, String> {
    let mut lines = Vec::new();
    for path in files {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
        };
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            let parsed: OutputLine<V> = serde_json::from_str(&line).map_err(|e| {
                format!(
                    "`{}` line {}: not an output: {e}",
                    path.display(),
                    number + 1
                )
            })?;
            let OutputLine { node, at, value } = parsed;
            lines.push(OutputRecord { node, at, value });
        }
    }
    Ok(lines)
}

/// Checks the outputs files of a run of the cluster file `path` against its protocol's
/// invariants (a missing file reads as empty): the number of outputs checked, and the
/// violations found.
pub fn check_outputs(path: &Path, files: &[PathBuf]) -> Result<(u64, Vec<Violation>), String> {
    let cluster = ClusterConfig::load(path).map_err(|e| e.to_string())?;
    let protocol = Protocol::named(&cluster.protocol).map_err(|e| cluster.error(e).to_string())?;
    protocol.check_outputs(&cluster, files)
}

pub(crate) fn run_invariant<A: Actor>(
    outputs: &[OutputRecord<A::Output>],
    invariant: &mut dyn Invariant<A>,
) -> Vec<Violation> {
    let end = outputs.iter().map(|r| r.at).max().unwrap_or(Time::ZERO);
    check_invariants::<A>(outputs, &[], end, &mut [invariant])
}
