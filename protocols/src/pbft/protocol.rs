//! PBFT in the protocol registry.

use super::{
    actors, production_node, production_restart, restart, safety_checks, Config, CryptoKind, Mutant, Node, Output,
    ProductionNode, Summary, Termination,
};
use rehearsal_sim_core::protocol::{
    ByzantineRoom, KeyNeeds, KeySource, NetBound, ParamDoc, ParamDuration, Protocol, Role, Setting,
    SettingError, Sizes, Target, TimerKnob,
};
use rehearsal_sim_core::explore::{explorer, Bounds, Exploration};
use rehearsal_sim_core::{duration_ns, Invariant, NodeId, RestartFn, Time};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// PBFT: n = 3f+1 replicas and closed-loop clients, with checkpoints, view changes and
/// catch-up.
pub struct Pbft;

/// Parameters of PBFT.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The signature scheme: `sim` or `real` (Ed25519).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crypto: Option<String>,
    /// Most requests per batch; 1 turns batching off.
    #[serde(default, skip_serializing_if = "Option::is_none", alias = "batch_max")]
    pub batch: Option<usize>,
    /// The slowest a message may take, from its sending to the end of its handling, that
    /// the timers must allow for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_max: Option<ParamDuration>,
}

/// PBFT's timers on real transports allow for messages that take up to this long, from
/// their sending to the end of their handling: the simulator's own timers (a 100 ms tick,
/// 500 ms client retransmission and a 1 s view-change timeout), so that a real cluster
/// recovers from a failed primary as the simulator does, about 1.5 s after it went silent.
///
/// It was 200 ms (a 1 s tick, 5 s client retransmission, 10 s view change), after a
/// collapse on a busy 2-core machine in a debug build: rounds longer than the tick,
/// every tick retransmitting, each duplicate costing a signature check, backups deposing
/// a correct primary, 4 of 20 requests in 120 s. That assumed a view change "only delays
/// the recovery from a failed primary, which no cluster run provokes"; `rehearsal cluster
/// --scenario` provokes it, and those timers made a real cluster sit out a 5 s pause of
/// its primary (its client's first retransmission came 5 s late, and the view change
/// would have come 10 s after that) where the simulator changed view after 1.5 s. The
/// collapse no longer shows on that machine (load 5 to 7 on 2 cores, debug build, 20 s,
/// 1 and 16 clients: no view change, 1349 and 1372 requests, latency at most 1.2 s); a
/// slower network or machine sets `latency_max` (`--param latency_max=200ms`).
pub const LATENCY_MAX_REAL: Duration = Duration::from_millis(20);

impl Params {
    /// The slowest a message may take, which the timers allow for: as set, else the
    /// network's worst link in the simulator, else [`LATENCY_MAX_REAL`] on real transports.
    pub fn latency_max_on(&self, network: Option<NetBound>) -> Duration {
        match (self.latency_max, network) {
            (Some(latency), _) => latency.0,
            (None, Some(network)) => Duration::from_nanos(network.one_way_ns_max),
            (None, None) => LATENCY_MAX_REAL,
        }
    }

    /// The signature scheme `target` runs: `sim` in the simulator (fast, unforgeable
    /// inside it), `real` (Ed25519) on real transports, unless set.
    pub fn crypto_for(&self, target: Target) -> Result<CryptoKind, String> {
        match (&self.crypto, target) {
            (Some(text), _) => text.parse(),
            (None, Target::Simulator) => Ok(CryptoKind::Sim),
            (None, Target::Real) => Ok(CryptoKind::Real),
        }
    }
}

impl Protocol for Pbft {
    const NAME: &'static str = "pbft";
    const ABOUT: &'static str =
        "PBFT: n = 3f+1 replicas and closed-loop clients, with checkpoints, view changes and catch-up";
    const CLIENTS: bool = true;
    const TIMERS: &'static [&'static str] = &["client-retransmit", "tick", "view-change"];
    type Params = Params;
    type Config = Config;
    type Node = Node;
    type RealNode = ProductionNode;

    fn params_doc() -> &'static [ParamDoc] {
        &[
            ParamDoc {
                name: "crypto",
                values: "sim|real",
                default: "sim in the simulator, real on real transports",
                about: "signatures: keyed BLAKE3 unforgeable inside the simulator, or Ed25519",
            },
            ParamDoc {
                name: "batch",
                values: "N",
                default: "1",
                about: "most requests per batch (1: no batching)",
            },
            ParamDoc {
                name: "latency_max",
                values: "DURATION",
                default: "the network's worst link in the simulator, 20ms on real transports",
                about: "the slowest a message may take, which the timers allow for",
            },
        ]
    }

    fn check_params(params: &Params, target: Target) -> Result<(), SettingError> {
        params
            .crypto_for(target)
            .map_err(|_| SettingError::new("crypto", "crypto must be `sim` or `real`"))?;
        if params.batch == Some(0) {
            return Err(SettingError::new(
                "batch",
                "the batch size must be at least 1",
            ));
        }
        Ok(())
    }

    fn nodes_default() -> u32 {
        4
    }

    fn check_sizes(sizes: &Sizes) -> Result<(), SettingError> {
        if sizes.nodes < 4 || sizes.nodes % 3 != 1 {
            return Err(SettingError::new(
                "nodes",
                "pbft needs n = 3f+1 replicas (4, 7, 10, ...)",
            ));
        }
        if let Err(e) = Config::with_replicas(sizes.nodes) {
            return Err(SettingError::new("nodes", e.to_string()));
        }
        if sizes.clients == 0 {
            return Err(SettingError::new("clients", "pbft needs at least 1 client"));
        }
        Ok(())
    }

    fn describe_sizes(sizes: &Sizes) -> String {
        let clients = match sizes.requests {
            Some(requests) => format!("{} clients x {requests} requests", sizes.clients),
            None => format!("{} clients", sizes.clients),
        };
        format!(
            "{} replicas (f = {}), {clients}",
            sizes.nodes,
            sizes.nodes.saturating_sub(1) / 3
        )
    }

    fn describe_params(params: &Params, target: Target) -> String {
        let crypto = params
            .crypto_for(target)
            .map_or_else(|e| e, |c| c.to_string());
        format!("{crypto} crypto, batch {}", params.batch.unwrap_or(1))
    }

    fn role(sizes: &Sizes, id: NodeId) -> Role {
        if id.0 < sizes.nodes {
            Role::Replica
        } else {
            Role::Client
        }
    }

    fn roles_doc() -> &'static str {
        "its replicas are nodes 0 to n-1 and its clients the rest"
    }

    fn mutants() -> &'static [(&'static str, &'static str)] {
        &[
            (
                "no-digest-check",
                "backups do not check that a pre-prepare's digest is the digest of its batch",
            ),
            (
                "no-commit",
                "replicas execute as soon as a batch is prepared, skipping the commit phase",
            ),
            (
                "small-commit-quorum",
                "a batch commits with 2f matching commits instead of 2f+1",
            ),
            (
                "forget-prepared",
                "view-change messages carry no prepared certificates",
            ),
            (
                "no-watermarks",
                "sequence numbers are not checked against the watermarks",
            ),
        ]
    }

    /// Sizes, crypto and mutant; timeouts scaled to the network's latency, then the timers
    /// set by hand, and the termination bound those timers need on its network.
    fn configure(setting: &Setting<'_, Params>) -> Result<Config, String> {
        let params = setting.params;
        let mut config = Config::with_replicas(setting.sizes.nodes).map_err(|e| e.to_string())?;
        config.clients = setting.sizes.clients;
        config.requests_per_client = setting.sizes.requests.unwrap_or(u64::MAX);
        config.batch_max = params.batch.unwrap_or(1);
        config.crypto = params.crypto_for(setting.target)?;
        config.key_seed = setting.seed;
        if let Some(mutant) = setting.mutant {
            config.mutant = mutant.parse::<Mutant>()?;
        }
        let latency_max = params.latency_max_on(setting.network);
        let mut config = config.timeouts_for_latency(latency_max);
        for (name, &ns) in setting.timers {
            let slot = match name.as_str() {
                "client-retransmit" => &mut config.client_retransmit,
                "tick" => &mut config.tick,
                "view-change" => &mut config.view_change_timeout,
                other => return Err(format!("pbft has no timer `{other}`")),
            };
            *slot = Duration::from_nanos(ns);
        }
        // The bound follows the timers as set.
        if let Some(network) = setting.network {
            config = config.termination_bound_under_loss(network.loss_worst);
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// Node `id` alone: its own key derived from the seed, and everybody's public keys.
    fn node(config: &Config, id: NodeId) -> Result<Node, String> {
        super::node(config, id).map_err(|e| e.to_string())
    }

    /// Every node, each built as [`Pbft::node`] builds it, around one shared verifier (the
    /// public keys are derived once, not once per node).
    fn nodes(config: &Config, _sizes: &Sizes) -> Result<Vec<Node>, String> {
        actors(config).map_err(|e| e.to_string())
    }

    /// Every node signs, replicas and clients (their requests): each holds an Ed25519
    /// key. The simulated scheme has only keys derived from the seed.
    fn real_keys(params: &Params, sizes: &Sizes) -> KeyNeeds {
        match params.crypto_for(Target::Real) {
            Ok(CryptoKind::Sim) => KeyNeeds::TestbedOnly(
                "crypto = \"sim\" is a MAC whose verifier holds every node's secret: only keys \
                 derived from the seed work, so its nodes run on testbed keys",
            ),
            _ => KeyNeeds::Ed25519 {
                holders: Self::actors(sizes),
            },
        }
    }

    /// Only the correct protocol runs on real transports: a mutant is refused. The node
    /// holds its own private key only.
    fn real_node(
        config: &Config,
        id: NodeId,
        keys: KeySource<'_>,
    ) -> Result<ProductionNode, String> {
        production_node(config, id, keys).map_err(|e| e.to_string())
    }

    fn real_restart(
        config: &Config,
        id: NodeId,
        keys: KeySource<'_>,
        durable: &[u8],
    ) -> Result<Option<ProductionNode>, String> {
        production_restart(config, id, keys, durable).map(Some)
    }

    /// Safety, and termination once the last fault is over: every request must then
    /// complete within the bound.
    fn invariants(config: &Config, healed: Time) -> Vec<Box<dyn Invariant<Node>>> {
        let mut invariants: Vec<Box<dyn Invariant<Node>>> = safety_checks(config)
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn Invariant<Node>>)
            .collect();
        invariants.push(Box::new(
            Termination::new(config)
                .after(healed)
                .within(config.termination_bound),
        ));
        invariants
    }

    fn restart(config: &Config) -> Option<RestartFn<Node>> {
        Some(Box::new(restart(config)))
    }

    fn exploration(config: &Config, nodes: Vec<Node>, seed: u64, bounds: Bounds) -> Option<Box<dyn Exploration>> {
        let config = config.clone();
        Some(explorer(nodes, seed, move || Self::invariants(&config, Time::ZERO), bounds))
    }

    fn durable() -> bool {
        true
    }

    fn byzantine_room(sizes: &Sizes) -> Option<ByzantineRoom> {
        Some(ByzantineRoom {
            max: sizes.nodes.saturating_sub(1) / 3,
            first: 0,
            among: sizes.nodes,
        })
    }

    fn timers(config: &Config) -> Vec<(&'static str, u64)> {
        vec![
            ("client-retransmit", duration_ns(config.client_retransmit)),
            ("tick", duration_ns(config.tick)),
            ("view-change", duration_ns(config.view_change_timeout)),
        ]
    }

    /// Shorter timers: a view change or retransmission the failure needs comes sooner. A
    /// longer housekeeping period (`tick`): fewer rounds of retransmissions, up to one per
    /// view-change timeout.
    fn timer_knobs(config: &Config, floor_ns: u64) -> Vec<TimerKnob> {
        let view_change = duration_ns(config.view_change_timeout);
        Self::timers(config)
            .into_iter()
            .map(|(name, current_ns)| TimerKnob {
                name,
                current_ns,
                target_ns: if name == "tick" {
                    view_change.max(current_ns)
                } else {
                    floor_ns.min(current_ns)
                },
            })
            .collect()
    }

    fn summary(_config: &Config, nodes: &[Node]) -> Option<serde_json::Value> {
        Some(serde_json::to_value(Summary::of(nodes)).unwrap_or_default())
    }

    fn is_completion(output: &Output) -> bool {
        matches!(output, Output::Completed { .. })
    }

    fn executions(output: &Output) -> u64 {
        match output {
            Output::Executed { requests, .. } => requests.len() as u64,
            _ => 0,
        }
    }

    /// Every client's submissions (in its own order), then every replica's outputs (each
    /// in its own order), then every client's completions: a request is submitted before
    /// any replica executes it, and completes after f+1 replicas did.
    fn causal_key(node: NodeId, output: &Output) -> [u64; 3] {
        let phase = match output {
            Output::Submitted { .. } => 0,
            Output::Completed { .. } => 2,
            _ => 1,
        };
        [phase, u64::from(node.0), 0]
    }

    /// Agreement, validity, integrity, in-order execution, client consistency; not
    /// termination (its bound is in virtual time).
    fn output_invariants(config: &Config) -> Vec<Box<dyn Invariant<Node>>> {
        safety_checks(config)
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn Invariant<Node>>)
            .collect()
    }
}
