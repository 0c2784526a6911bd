//! Run files: a whole `rehearsal sim` run described in one TOML file
//! (`rehearsal sim --config run.toml`).
//!
//! ```toml
//! protocol = "benaloh"
//! nodes = 5
//! seed = 7
//! seeds = 20
//! duration = "5m"
//! scenario = "partition.scenario"   # relative to this file
//!
//! [network]                         # as in a --net file
//! latency = "normal:100ms,20ms"
//! on_cut = "hold"
//! ```
//!
//! The network is either a `[network]` table (with `[[network.links]]` overrides) or
//! `net = "net.toml"`, a separate file. Command-line flags override the file. Errors name
//! the file, line and column and say what was expected.

use crate::config::Protocol;

use rehearsal_net_models::{line_column, NetConfig, NetConfigError};
use rehearsal_sim_core::Latency;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What a run file may say; every field is optional (flags and defaults fill the rest).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunFile {
    pub protocol: Option<Protocol>,
    pub nodes: Option<u32>,
    pub clients: Option<u32>,
    pub requests: Option<u64>,
    pub seed: Option<u64>,
    pub seeds: Option<u64>,
    /// Virtual-time deadline, e.g. `"10m"`.
    pub duration: Option<String>,
    pub latency: Option<Latency>,
    pub loss: Option<f64>,
    pub mutant: Option<String>,
    /// Shorthand for `[params] crypto = ...`.
    pub crypto: Option<String>,
    /// Shorthand for `[params] batch = ...`.
    pub batch: Option<usize>,
    /// The protocol's parameters (`rehearsal protocols` lists them).
    pub params: Option<toml::Table>,
    pub swarm: Option<bool>,
    /// A scenario file, relative to the run file.
    pub scenario: Option<PathBuf>,
    /// A network file, relative to the run file (or a `[network]` table instead).
    pub net: Option<PathBuf>,
    #[serde(skip)]
    pub network: Option<NetConfig>,
    /// The run file's directory, against which its paths resolve.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// Where each key's value is, as `file:line:column`, so that errors found after
    /// parsing (`nodes = 0` for this protocol) name the place.
    #[serde(skip)]
    pub positions: BTreeMap<String, String>,
}

/// Reads and checks a run file.
pub fn read(path: &Path) -> Result<RunFile, String> {
    let text = rehearsal_net_models::scenario::read_text_file(path)
        .map_err(|e| format!("cannot read run file `{}`: {e}", path.display()))?;
    parse(
        &text,
        &path.display().to_string(),
        path.parent().unwrap_or(Path::new(".")),
    )
}

/// Parses run-file text from `origin` (named in errors); paths resolve against `base_dir`.
pub fn parse(text: &str, origin: &str, base_dir: &Path) -> Result<RunFile, String> {
    let (run_part, network_part) = split_network(text);
    let mut file: RunFile = toml::from_str(&run_part).map_err(|e| {
        let (line, column) = line_column(&run_part, e.span().map_or(0, |s| s.start));
        let message = e.message().trim_end().replace('\n', "; ");
        format!("{origin}:{line}:{column}: {message}")
    })?;
    file.base_dir = base_dir.to_path_buf();
    let mut positions = BTreeMap::new();
    if let Ok(table) = toml::de::DeTable::parse(&run_part) {
        for (key, value) in table.get_ref().iter() {
            let (line, column) = line_column(&run_part, value.span().start);
            positions.insert(
                key.get_ref().to_string(),
                format!("{origin}:{line}:{column}"),
            );
            // A parameter's place is kept under its own name, as the shorthands' are.
            if key.get_ref() == "params" {
                if let Some(params) = value.get_ref().as_table() {
                    for (name, value) in params.iter() {
                        let (line, column) = line_column(&run_part, value.span().start);
                        positions.insert(
                            name.get_ref().to_string(),
                            format!("{origin}:{line}:{column}"),
                        );
                    }
                }
            }
        }
    }
    let in_params = |name: &str| file.params.as_ref().is_some_and(|p| p.contains_key(name));
    for (shorthand, given) in [
        ("crypto", file.crypto.is_some()),
        ("batch", file.batch.is_some()),
    ] {
        if given && in_params(shorthand) {
            return Err(format!(
                "{}: `{shorthand}` is given twice, at the top and in [params]: give it once",
                positions.get(shorthand).map_or(origin, String::as_str)
            ));
        }
    }
    let at = |key: &str| {
        positions
            .get(key)
            .map_or(String::new(), |p| format!("{p}: "))
    };
    if let Some(network_text) = network_part {
        if let Some(net) = &file.net {
            return Err(format!(
                "{}both `net = \"{}\"` and a [network] table: give the network one way",
                at("net"),
                net.display()
            ));
        }
        let network = NetConfig::from_toml_str(&network_text, origin, base_dir)
            .map_err(|e: NetConfigError| e.to_string())?;
        file.network = Some(network);
    }
    if let Some(net) = &file.net {
        let path = base_dir.join(net);
        let network = NetConfig::from_toml_file(&path).map_err(|e| match e {
            // The file named by `net = "..."` cannot be read: say where it is named.
            NetConfigError::Read { .. } => format!("{}{e}", at("net")),
            other => other.to_string(),
        })?;
        file.network = Some(network);
    }
    file.positions = positions;
    Ok(file)
}

impl RunFile {
    /// The protocol parameters the file sets, shorthands (`crypto`, `batch`) included.
    pub fn param_map(&self) -> Result<crate::config::ParamMap, String> {
        let mut map = crate::config::ParamMap::new();
        for (name, value) in self.params.iter().flatten() {
            let value = serde_json::to_value(value)
                .map_err(|e| format!("{}: [params] {name}: {e}", self.origin()))?;
            map.insert(name.clone(), value);
        }
        if let Some(crypto) = &self.crypto {
            map.insert("crypto".into(), crypto.clone().into());
        }
        if let Some(batch) = self.batch {
            map.insert("batch".into(), batch.into());
        }
        Ok(map)
    }

    fn origin(&self) -> String {
        self.positions
            .values()
            .next()
            .and_then(|p| p.split(':').next())
            .unwrap_or("run file")
            .to_string()
    }

    /// The scenario file's path, resolved against the run file's directory.
    pub fn scenario_path(&self) -> Option<PathBuf> {
        self.scenario.as_ref().map(|s| self.base_dir.join(s))
    }
}

/// Splits the text into the run part and the `[network]` part, each with the other's lines
/// blanked, so that line numbers in errors stay those of the file. In the network part,
/// `[[network.links]]` headers become `[[links]]`.
fn split_network(text: &str) -> (String, Option<String>) {
    let mut run = Vec::new();
    let mut network = Vec::new();
    let mut in_network = false;
    let mut any = false;
    for line in text.split('\n') {
        let header = line.trim_start();
        if header.starts_with('[') {
            let name = header
                .trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim();
            in_network = name == "network" || name.starts_with("network.");
            if in_network {
                any = true;
                run.push(String::new());
                network.push(if name == "network" {
                    String::new()
                } else {
                    line.replacen("network.", "", 1)
                });
                continue;
            }
        }
        if in_network {
            run.push(String::new());
            network.push(line.to_string());
        } else {
            run.push(line.to_string());
            network.push(String::new());
        }
    }
    (run.join("\n"), any.then(|| network.join("\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_table_is_split_out_keeping_line_numbers() {
        let text = "protocol = \"benaloh\"\n[network]\nloss = 0.1\n[[network.links]]\nfrom = [0]\nloss = 0.5\n";
        let (run, network) = split_network(text);
        assert_eq!(run.lines().count(), text.lines().count());
        let network = network.unwrap();
        assert!(network.contains("[[links]]"));
        assert_eq!(network.lines().nth(2), Some("loss = 0.1"));
        assert!(!run.contains("loss"));
    }
}
