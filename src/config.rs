//! The configuration of one simulated run: everything needed to re-run it, as recorded in
//! trace headers and rebuilt by `rehearsal replay`.

use rehearsal_net_models::{NetConfig, NetConfigError};
use rehearsal_sim_core::protocol::{SettingError, Sizes, Target};
use rehearsal_sim_core::{format_ns, Latency, Strategy};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

pub use crate::registry::{ParamMap, Protocol};

/// Parameters with a flag (`--crypto real`) and a run-file key (`crypto = "real"`) of
/// their own, as well as `--param NAME=VALUE` and `[params]`: the ones most protocols
/// with signatures and batches share.
pub const PARAM_SHORTHANDS: &[&str] = &["crypto", "batch"];

/// One simulated run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    pub protocol: Protocol,
    /// Protocol nodes (servers, replicas, peers): ids `0..nodes`.
    pub nodes: u32,
    /// Clients, for protocols that have them: ids after the nodes.
    pub clients: u32,
    /// Requests per client.
    pub requests: u64,
    pub seed: u64,
    /// Virtual-time deadline of the run.
    pub duration_ns: u64,
    pub latency: Latency,
    /// Probability that a message is lost.
    pub loss: f64,
    /// The full network model, when more than `latency` and `loss` is set (from `--net`,
    /// a run file or `--swarm`); it then takes precedence over those two.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<NetConfig>,
    /// The network and scenario were drawn from the seed by `--swarm` (recorded above, so
    /// the run replays without drawing again).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub swarm: bool,
    /// Where `network` was read from, for the command line that re-runs it (not recorded:
    /// traces carry the network itself).
    #[serde(skip)]
    pub net_origin: Option<String>,
    /// The run file the configuration came from, likewise.
    #[serde(skip)]
    pub config_origin: Option<String>,
    /// For each setting the run file gave (by its key there: `nodes`, `loss`, ...), where:
    /// `run.toml:3:9`. Errors found after parsing then name the place, as parse errors do;
    /// a setting without an entry came from a flag or a default.
    #[serde(skip)]
    pub file_positions: BTreeMap<String, String>,
    /// The protocol's parameters that were set (`--param NAME=VALUE`, a run file's
    /// `[params]`), by name; the others keep the protocol's defaults.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub params: ParamMap,
    /// Test-only: a deliberately broken variant of the protocol, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutant: Option<String>,
    /// Protocol timers set by hand (`--timer NAME=DURATION`, or by the shrinker), by name
    /// (see [`crate::registry::Registered::timer_names`]), in nanoseconds.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub timers: BTreeMap<String, u64>,
    /// Timer firings put off by one period each, as `(node, timer id)` (a timer listed k
    /// times is put off k times): how a shrunk safety failure drops housekeeping rounds it
    /// does not need. Set by `rehearsal shrink` only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub postponed_timers: Vec<(u32, u64)>,
    /// Nodes that run a Byzantine behaviour from the start, before they start (where a
    /// scenario's `@0 byzantine` switches a node that has started): how `explore
    /// --byzantine` has them, and so how its counterexamples re-enact and replay.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub byzantine_from_start: Vec<(u32, String)>,
    /// Timed faults and network changes (a scenario file's text, kept whole so a trace
    /// replays without the file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<ScenarioSource>,
    /// The run's network decisions are its own recorded events, not draws from the seed
    /// (a shrunk run): it replays only from its trace.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub follow_schedule: bool,
    /// With `follow_schedule`: its recording also says when each node started and each
    /// timer fired, and the run keeps to that (a counterexample of `rehearsal explore`,
    /// whose timers fire in an order their durations alone would not give).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retime_schedule: bool,
    /// Who picks the order of ready events (`--strategy`): the seeded run's queue order by
    /// default (then left out of traces), or a search strategy with its parameters, whose
    /// choices come from the seed too.
    #[serde(default, skip_serializing_if = "Strategy::is_default")]
    pub strategy: Strategy,
}

/// A scenario as written: where it came from and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioSource {
    /// The file it was read from (for error messages), or `<inline>`.
    pub origin: String,
    pub text: String,
}

impl ScenarioSource {
    /// The line numbers (1-based) that hold commands.
    pub fn command_lines(&self) -> Vec<usize> {
        self.text
            .lines()
            .enumerate()
            .filter(|(_, l)| {
                let l = l.trim_start();
                !l.is_empty() && !l.starts_with('#')
            })
            .map(|(i, _)| i + 1)
            .collect()
    }

    /// When each command line (1-based) runs, as written (`@TIME` at its start); lines
    /// whose time does not parse are left out.
    pub fn command_times(&self) -> Vec<(usize, u64)> {
        let lines: Vec<&str> = self.text.lines().collect();
        self.command_lines()
            .into_iter()
            .filter_map(|n| {
                let word = lines.get(n - 1)?.split_whitespace().next()?;
                let at =
                    rehearsal_net_models::scenario::parse_time(word.strip_prefix('@')?).ok()?;
                Some((n, at.as_nanos()))
            })
            .collect()
    }

    /// The same scenario with command line `line` (1-based) moved to `at_ns`.
    pub fn moving(&self, line: usize, at_ns: u64) -> ScenarioSource {
        let text = self
            .text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if i + 1 != line {
                    return l.to_string();
                }
                let body = l.trim_start();
                let rest = body.find(char::is_whitespace).map_or("", |at| &body[at..]);
                format!(
                    "@{}.{:09}{rest}",
                    at_ns / 1_000_000_000,
                    at_ns % 1_000_000_000
                )
            })
            .collect::<Vec<_>>()
            .join("\n");
        ScenarioSource {
            origin: self.origin.clone(),
            text: text + "\n",
        }
    }

    /// The same scenario with only the command lines in `keep`; the others are commented
    /// out (so line numbers stay those of the original).
    pub fn keeping(&self, keep: &[usize]) -> ScenarioSource {
        let commands = self.command_lines();
        let text = self
            .text
            .lines()
            .enumerate()
            .map(|(i, l)| {
                if commands.contains(&(i + 1)) && !keep.contains(&(i + 1)) {
                    format!("# removed by shrink: {l}")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        ScenarioSource {
            origin: self.origin.clone(),
            text: text + "\n",
        }
    }
}

/// The default deadline: long enough for the timed Benaloh's 90 s schedule under slow links.
pub const DURATION_DEFAULT_NS: u64 = 10 * 60 * 1_000_000_000;

impl RunConfig {
    pub fn new(protocol: Protocol) -> Self {
        RunConfig {
            protocol,
            nodes: protocol.nodes_default(),
            clients: 4,
            requests: 100,
            seed: 1,
            duration_ns: DURATION_DEFAULT_NS,
            latency: Latency::constant_ms(10),
            loss: 0.0,
            network: None,
            swarm: false,
            net_origin: None,
            config_origin: None,
            file_positions: BTreeMap::new(),
            params: ParamMap::new(),
            mutant: None,
            timers: BTreeMap::new(),
            postponed_timers: Vec::new(),
            byzantine_from_start: Vec::new(),
            scenario: None,
            follow_schedule: false,
            retime_schedule: false,
            strategy: Strategy::Default,
        }
    }

    /// The network model of the run.
    pub fn net_config(&self) -> NetConfig {
        self.network.clone().unwrap_or_else(|| NetConfig {
            latency: self.latency,
            loss: self.loss,
            ..NetConfig::default()
        })
    }

    /// Who is in the run.
    pub fn sizes(&self) -> Sizes {
        Sizes {
            nodes: self.nodes,
            clients: self.clients,
            requests: Some(self.requests),
        }
    }

    /// How many actors (nodes, not counting twins) the run has.
    pub fn actors(&self) -> u32 {
        self.protocol.actors(&self.sizes())
    }

    /// The scenario, parsed for this run's nodes (`None` without one); errors name the
    /// file, line and column.
    pub fn parsed_scenario(
        &self,
    ) -> Result<Option<rehearsal_net_models::scenario::Scenario>, String> {
        self.scenario
            .as_ref()
            .map(|s| {
                rehearsal_net_models::scenario::parse(&s.text, &s.origin, self.actors())
                    .map_err(|e| e.to_string())
            })
            .transpose()
    }

    /// How many endpoints the network sees: the actors and their twins (a scenario's
    /// `@0 twins N`).
    pub fn endpoints(&self) -> u32 {
        match self.parsed_scenario() {
            Ok(Some(scenario)) => scenario.endpoints(self.actors()),
            _ => self.actors(),
        }
    }

    /// Checks what the protocols cannot check for themselves. A setting from a run file is
    /// named by its place there (`run.toml:2:9: ... got nodes = 0`), one from a flag by the
    /// flag (`got --nodes 0`).
    pub fn validate(&self) -> Result<(), String> {
        // Where the error is, as a prefix, and how the value was given.
        let at = |key: &str| {
            self.file_positions
                .get(key)
                .map_or(String::new(), |p| format!("{p}: "))
        };
        let given = |key: &str, value: &dyn fmt::Display| match self.file_positions.get(key) {
            Some(_) => format!("{key} = {value}"),
            None => format!("--{key} {value}"),
        };
        // Before the network: a --loss flag or run-file `loss` overrides the network's loss,
        // so an error about it belongs to where it was given, not to the network file.
        if !(0.0..=1.0).contains(&self.loss) || self.loss.is_nan() {
            return Err(format!(
                "{}loss must be a probability between 0 and 1, got {}",
                at("loss"),
                given("loss", &self.loss)
            ));
        }
        if let Some(network) = &self.network {
            network
                .validate(self.actors() as usize)
                .map_err(|e| match e {
                    // Already names its file, line and column.
                    NetConfigError::At { .. } => e.to_string(),
                    other => format!("network: {other}"),
                })?;
        }
        let setting_error = |e: SettingError, value: &dyn fmt::Display| {
            format!(
                "{}{}, got {}{}",
                at(&e.key),
                e.rule,
                given(&e.key, value),
                e.hint.as_deref().unwrap_or("")
            )
        };
        if let Err(e) = self.protocol.check_sizes(&self.sizes()) {
            let value = match e.key.as_str() {
                "nodes" => self.nodes.to_string(),
                "clients" => self.clients.to_string(),
                _ => self.requests.to_string(),
            };
            return Err(setting_error(e, &value));
        }
        if let Err(e) = self.protocol.check_params(&self.params, Target::Simulator) {
            return Err(match self.params.get(&e.key) {
                Some(value) => {
                    let value = ParamText(value);
                    let given = match self.file_positions.get(&e.key) {
                        Some(_) => format!("{} = {value}", e.key),
                        None if PARAM_SHORTHANDS.contains(&e.key.as_str()) => {
                            format!("--{} {value}", e.key)
                        }
                        None => format!("--param {}={value}", e.key),
                    };
                    format!(
                        "{}{}, got {given}{}",
                        at(&e.key),
                        e.rule,
                        e.hint.as_deref().unwrap_or("")
                    )
                }
                None => format!("{}{}", at(&e.key), e.rule),
            });
        }
        let names = self.protocol.timer_names();
        for (name, &ns) in &self.timers {
            if names.is_empty() {
                return Err(format!(
                    "--timer: {} has no timers to set (got `{name}`)",
                    self.protocol
                ));
            }
            if !names.contains(&name.as_str()) {
                return Err(format!(
                    "--timer: {} has no timer `{name}`; expected one of {}",
                    self.protocol,
                    names.join(", ")
                ));
            }
            if ns == 0 {
                return Err(format!("--timer {name}: the duration must be above 0"));
            }
        }
        if let Some(&(node, id)) = self
            .postponed_timers
            .iter()
            .find(|&&(node, _)| node >= self.actors())
        {
            return Err(format!(
                "postponed_timers names timer {id} of node {node}, but the run has nodes 0..{}",
                self.actors()
            ));
        }
        self.strategy.validate()?;
        // Bound everything: a run this large would not fit in memory anyway.
        const NODES_MAX: u32 = 100_000;
        for (key, value) in [("nodes", self.nodes), ("clients", self.clients)] {
            if value > NODES_MAX {
                return Err(format!(
                    "{}at most {NODES_MAX} nodes and {NODES_MAX} clients per run, got {}",
                    at(key),
                    given(key, &value)
                ));
            }
        }
        Ok(())
    }

    /// The command line that runs exactly this configuration again.
    pub fn command_line(&self) -> String {
        let mut cmd = "rehearsal sim".to_string();
        if let Some(file) = &self.config_origin {
            // The run file supplies the network and scenario; the flags below override
            // everything else it says, so they are given in full.
            cmd += &format!(" --config {file}");
        }
        cmd += &format!(" --protocol {} --nodes {}", self.protocol, self.nodes);
        if self.protocol.has_clients() {
            cmd += &format!(" --clients {} --requests {}", self.clients, self.requests);
        }
        for (name, value) in &self.params {
            let value = ParamText(value);
            if PARAM_SHORTHANDS.contains(&name.as_str()) {
                cmd += &format!(" --{name} {value}");
            } else {
                cmd += &format!(" --param {name}={value}");
            }
        }
        cmd += &format!(
            " --seed {} --duration {}",
            self.seed,
            format_ns(self.duration_ns)
        );
        match (&self.net_origin, &self.config_origin) {
            (Some(net), _) => cmd += &format!(" --net {net}"),
            (None, Some(_)) => {}
            (None, None) => cmd += &format!(" --latency {} --loss {}", self.latency, self.loss),
        }
        if self.swarm {
            // The seed draws the same network and faults again.
            cmd += " --swarm";
        } else if let (Some(scenario), None) = (&self.scenario, &self.config_origin) {
            cmd += &format!(" --scenario {}", scenario.origin);
        }
        for (name, &ns) in &self.timers {
            cmd += &format!(" --timer {name}={}", format_ns(ns));
        }
        if let Some(mutant) = &self.mutant {
            cmd += &format!(" --mutant {mutant}");
        }
        match self.strategy {
            Strategy::Default => {}
            Strategy::Random { window_ns } => {
                cmd += " --strategy random";
                if window_ns > 0 {
                    cmd += &format!(" --window {}", format_ns(window_ns));
                }
            }
            Strategy::Pct {
                depth,
                steps,
                window_ns,
            } => {
                cmd += &format!(" --strategy pct --pct-depth {depth} --pct-steps {steps}");
                if window_ns > 0 {
                    cmd += &format!(" --window {}", format_ns(window_ns));
                }
            }
        }
        cmd
    }
}

/// A parameter's value as written on a command line: text bare, anything else as JSON.
pub struct ParamText<'a>(pub &'a serde_json::Value);

impl fmt::Display for ParamText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            serde_json::Value::String(text) => f.write_str(text),
            other => write!(f, "{other}"),
        }
    }
}
