//! Spectrum in the protocol registry.

use super::checks::{checks_after, safety_checks};
use super::config::{
    Config, Mutant, CHANNELS_MAX, MESSAGE_BYTES_MAX, ROUND_BYTES_MAX, SERVERS_MAX,
};
use super::node::{Node, NodeWith, Output, ProductionNode};
use super::{cost, summary};
use rehearsal_sim_core::protocol::{
    ByzantineRoom, KeyNeeds, KeySource, ParamDoc, ParamDuration, Protocol, Role, Setting,
    SettingError, Sizes, Target,
};
use rehearsal_sim_core::explore::{explorer, Bounds, Exploration};
use rehearsal_sim_core::{duration_ns, Invariant, NodeId, Time};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Spectrum: anonymous broadcast with verifiable DPFs, `k ≥ 2` servers, a publisher and
/// clients.
pub struct Spectrum;

/// Parameters of Spectrum (`[params]`, `--param NAME=VALUE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Params {
    /// Channels, each written by its key's holder.
    pub channels: u32,
    /// Bytes per message (and per channel).
    pub message_bytes: u32,
    /// The leader closes a round this long after it opened; default: scaled to the
    /// network (ten retransmission timeouts, at least 100 ms, plus the audits' CPU time).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload_timeout: Option<ParamDuration>,
    /// Clients holding a channel key (client i writes to channel i mod channels); default
    /// `min(clients, channels)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub writers: Option<u32>,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            channels: 16,
            message_bytes: 1024,
            upload_timeout: None,
            writers: None,
        }
    }
}

/// The retransmission timeout on real transports, whose latency is unknown.
const REAL_RETRANSMIT: Duration = Duration::from_millis(500);

impl Protocol for Spectrum {
    const NAME: &'static str = "spectrum";
    const ABOUT: &'static str =
        "Spectrum anonymous broadcast (NSDI 2022): clients write to channels through verifiable DPFs audited by k >= 2 servers, a publisher combines them";
    const CLIENTS: bool = true;
    const TIMERS: &'static [&'static str] = &["upload-timeout", "retransmit"];
    type Params = Params;
    type Config = Config;
    type Node = Node;
    type RealNode = ProductionNode;

    fn params_doc() -> &'static [ParamDoc] {
        &[
            ParamDoc {
                name: "channels",
                values: "N",
                default: "16",
                about: "channels (1 to 65536)",
            },
            ParamDoc {
                name: "message_bytes",
                values: "N",
                default: "1024",
                about: "bytes per message and channel (1 to 1 MiB; channels x bytes at most 256 MiB)",
            },
            ParamDoc {
                name: "upload_timeout",
                values: "DURATION",
                default: "scaled to the network",
                about: "the leader closes a round this long after it opened, leaving out undecided clients",
            },
            ParamDoc {
                name: "writers",
                values: "N",
                default: "min(clients, channels)",
                about: "clients holding a channel key (client i writes to channel i mod channels); the rest send covers",
            },
        ]
    }

    fn check_params(params: &Params, _target: Target) -> Result<(), SettingError> {
        if params.channels == 0 || params.channels > CHANNELS_MAX {
            return Err(SettingError::new(
                "channels",
                format!("channels must be between 1 and {CHANNELS_MAX}"),
            ));
        }
        if params.message_bytes == 0 || params.message_bytes > MESSAGE_BYTES_MAX {
            return Err(SettingError::new(
                "message_bytes",
                format!("message_bytes must be between 1 and {MESSAGE_BYTES_MAX}"),
            ));
        }
        if u64::from(params.channels) * u64::from(params.message_bytes) > ROUND_BYTES_MAX {
            return Err(SettingError::new(
                "message_bytes",
                format!("channels x message_bytes must be at most {ROUND_BYTES_MAX} bytes"),
            ));
        }
        Ok(())
    }

    fn nodes_default() -> u32 {
        3
    }

    fn nodes_for_servers(servers: u32) -> Option<u32> {
        Some(servers.saturating_add(1))
    }

    fn check_sizes(sizes: &Sizes) -> Result<(), SettingError> {
        if sizes.nodes < 3 {
            return Err(SettingError::new(
                "nodes",
                "spectrum needs at least 2 servers and a publisher: --servers 2",
            ));
        }
        if sizes.nodes - 1 > SERVERS_MAX {
            return Err(SettingError::new(
                "nodes",
                format!("spectrum supports at most {SERVERS_MAX} servers"),
            ));
        }
        if sizes.clients == 0 {
            return Err(SettingError::new("clients", "spectrum needs at least 1 client"));
        }
        Ok(())
    }

    fn describe_sizes(sizes: &Sizes) -> String {
        let servers = sizes.nodes.saturating_sub(1);
        match sizes.requests {
            Some(rounds) => format!(
                "{servers} servers and a publisher, {} clients x {rounds} rounds",
                sizes.clients
            ),
            None => format!("{servers} servers and a publisher, {} clients", sizes.clients),
        }
    }

    fn describe_params(params: &Params, _target: Target) -> String {
        format!(
            "{} channels of {} bytes",
            params.channels, params.message_bytes
        )
    }

    /// Servers and the publisher are `server`s (cluster files count them together as the
    /// protocol's nodes), clients `client`s.
    fn role(sizes: &Sizes, id: NodeId) -> Role {
        if id.0 + 1 < sizes.nodes {
            Role::Server
        } else if id.0 + 1 == sizes.nodes {
            Role::Publisher
        } else {
            Role::Client
        }
    }

    fn roles_doc() -> &'static str {
        "its servers are nodes 0 to k-1 (server 0 leads the audit exchange), its publisher node k, its clients the rest"
    }

    fn mutants() -> &'static [(&'static str, &'static str)] {
        const MUTANTS: [(&str, &str); 4] = [
            (Mutant::AccumulateFailedAudit.name(), Mutant::AccumulateFailedAudit.about()),
            (Mutant::SeedOnlyAudit.name(), Mutant::SeedOnlyAudit.about()),
            (Mutant::NoCwHash.name(), Mutant::NoCwHash.about()),
            (Mutant::AccumulateBeforeAudit.name(), Mutant::AccumulateBeforeAudit.about()),
        ];
        &MUTANTS
    }

    /// Sizes, parameters and mutant; timers scaled to the network's latency bound (or set
    /// by hand), and the termination bound those timers need.
    fn configure(setting: &Setting<'_, Params>) -> Result<Config, String> {
        let params = setting.params;
        Self::check_params(params, setting.target).map_err(|e| e.rule)?;
        Self::check_sizes(&setting.sizes).map_err(|e| e.rule)?;
        let mutant = match setting.mutant {
            Some(name) => name.parse::<Mutant>()?,
            None => Mutant::None,
        };
        if setting.target == Target::Real && mutant != Mutant::None {
            return Err(format!(
                "mutants run in the simulator only, not on real transports (`{mutant}`)"
            ));
        }
        let retransmit = match setting.network {
            Some(network) => network.retransmit_after(),
            None => REAL_RETRANSMIT,
        };
        let mut config = Config {
            servers: setting.sizes.nodes - 1,
            clients: setting.sizes.clients,
            rounds: setting.sizes.requests.unwrap_or(u64::MAX),
            channels: params.channels,
            message_bytes: params.message_bytes,
            writers: params.writers,
            seed: setting.seed,
            retransmit,
            mutant,
            ..Config::default()
        };
        config.upload_timeout = match params.upload_timeout {
            Some(d) => d.0,
            None => default_upload_timeout(&config),
        };
        for (name, &ns) in setting.timers {
            let slot = match name.as_str() {
                "upload-timeout" => &mut config.upload_timeout,
                "retransmit" => &mut config.retransmit,
                other => return Err(format!("spectrum has no timer `{other}`")),
            };
            *slot = Duration::from_nanos(ns);
        }
        config.termination_bound = termination_bound(&config);
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    fn node(config: &Config, id: NodeId) -> Result<Node, String> {
        Node::new(config, id).map_err(|e| e.to_string())
    }

    /// The channel access keys derive from the cluster's seed, as in the simulator.
    fn real_keys(_params: &Params, _sizes: &Sizes) -> KeyNeeds {
        KeyNeeds::TestbedOnly(
            "channel access keys are derived from the run's seed, so anyone holding the cluster file can write to any channel; the servers hold every channel's key in plain, as the public Spectrum implementation does",
        )
    }

    /// Only the correct protocol runs on real transports: a mutant is refused. Keys come
    /// from the seed whatever `keys` says (see [`Spectrum::real_keys`]).
    fn real_node(config: &Config, id: NodeId, _keys: KeySource<'_>) -> Result<ProductionNode, String> {
        NodeWith::new(config, id).map_err(|e| e.to_string())
    }

    fn invariants(config: &Config, healed: Time) -> Vec<Box<dyn Invariant<Node>>> {
        checks_after(config, healed)
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn Invariant<Node>>)
            .collect()
    }

    /// Every order of deliveries of the run's own sizes, checked by every invariant
    /// (termination's end-of-run check at the states where nothing is left to happen).
    /// The sizes are the run's, not smaller ones: a counterexample is re-enacted by the
    /// simulator at the run's sizes. Keep them small (one or two clients, one or two
    /// rounds, a few channels of a few bytes): each client adds an upload per server to
    /// every round's orders, and every message is fingerprinted whole, so channels times
    /// message bytes sets the cost of a step. The explorer's depth bound keeps the space
    /// finite whatever the rounds.
    fn exploration(config: &Config, nodes: Vec<Node>, seed: u64, bounds: Bounds) -> Option<Box<dyn Exploration>> {
        let config = config.clone();
        Some(explorer(nodes, seed, move || Self::invariants(&config, Time::ZERO), bounds))
    }

    /// Up to three Byzantine clients (servers are trusted not to collude).
    fn byzantine_room(sizes: &Sizes) -> Option<ByzantineRoom> {
        Some(ByzantineRoom {
            max: sizes.clients.min(3),
            first: sizes.nodes,
            among: sizes.nodes.saturating_add(sizes.clients),
        })
    }

    fn timers(config: &Config) -> Vec<(&'static str, u64)> {
        vec![
            ("upload-timeout", duration_ns(config.upload_timeout)),
            ("retransmit", duration_ns(config.retransmit)),
        ]
    }

    fn summary(_config: &Config, nodes: &[Node]) -> Option<serde_json::Value> {
        Some(serde_json::to_value(summary(nodes)).unwrap_or_default())
    }

    fn is_completion(output: &Output) -> bool {
        matches!(output, Output::Completed { .. })
    }

    /// The writes a published round carries.
    fn executions(output: &Output) -> u64 {
        match output {
            Output::Published { accepted, .. } => accepted.len() as u64,
            _ => 0,
        }
    }

    /// Round first; within a round: switches to Byzantine, uploads and refusals, servers'
    /// decisions, the publication, clients' completions.
    fn causal_key(node: NodeId, output: &Output) -> [u64; 3] {
        let (round, phase) = match output {
            Output::Byzantine { from_round, .. } => (*from_round, 0),
            Output::Submitted { round } => (*round, 1),
            Output::Malformed { round, .. } => (*round, 2),
            Output::Decided { round, .. } => (*round, 3),
            Output::Published { round, .. } => (*round, 4),
            Output::Completed { round, .. } => (*round, 5),
        };
        [round, phase, u64::from(node.0)]
    }

    fn output_invariants(config: &Config) -> Vec<Box<dyn Invariant<Node>>> {
        safety_checks(config)
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn Invariant<Node>>)
            .collect()
    }
}

/// Ten retransmission timeouts (at least 100 ms), plus four times the CPU time the leader
/// spends auditing every client's upload: time for a client's upload and the tokens to
/// arrive despite a few losses, and for a loaded leader to get to them.
pub fn default_upload_timeout(config: &Config) -> Duration {
    let network = (config.retransmit * 10).max(Duration::from_millis(100));
    network + cost::audit(config) * config.clients.saturating_mul(4)
}

/// How long a round may take once faults heal: four upload timeouts, two hundred
/// retransmissions (a chain of re-sent closes, accumulators and round-dones under heavy
/// loss), and four times every server's CPU time for a round; at least 60 s.
pub fn termination_bound(config: &Config) -> Duration {
    let cpu = (cost::audit(config) + cost::eval(config)) * config.clients.saturating_mul(4);
    (config.upload_timeout * 4 + config.retransmit * 200 + cpu).max(Duration::from_secs(60))
}
