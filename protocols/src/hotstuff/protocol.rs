//! HotStuff in the protocol registry.

use super::{
    actors, checks, production_node, production_restart, restart, safety_checks, summary, Config, Mutant, Node,
    Output, ProductionNode,
};
use crate::crypto::CryptoKind;
use rehearsal_sim_core::protocol::{
    ByzantineRoom, KeyNeeds, KeySource, ParamDoc, Protocol, Role, Setting, SettingError, Sizes,
    Target, TimerKnob,
};
use rehearsal_sim_core::explore::{explorer, Bounds, Exploration};
use rehearsal_sim_core::{duration_ns, Invariant, NodeId, RestartFn, Time};
use std::collections::BTreeMap;
use std::time::Duration;

/// Chained HotStuff: n = 3f+1 replicas and closed-loop clients, with a pacemaker.
pub struct HotStuff;

/// Parameters of HotStuff: PBFT's (`crypto`, `batch`, `latency_max`), with the same
/// meanings and defaults.
pub type Params = crate::pbft::Params;

impl Protocol for HotStuff {
    const NAME: &'static str = "hotstuff";
    const ABOUT: &'static str =
        "chained HotStuff: n = 3f+1 replicas and closed-loop clients, with a pacemaker (view timer, timeout certificates)";
    const CLIENTS: bool = true;
    const TIMERS: &'static [&'static str] = &["client-retransmit", "view"];
    type Params = Params;
    type Config = Config;
    type Node = Node;
    type RealNode = ProductionNode;

    fn params_doc() -> &'static [ParamDoc] {
        <crate::pbft::Pbft as Protocol>::params_doc()
    }

    fn check_params(params: &Params, target: Target) -> Result<(), SettingError> {
        <crate::pbft::Pbft as Protocol>::check_params(params, target)
    }

    fn nodes_default() -> u32 {
        4
    }

    fn check_sizes(sizes: &Sizes) -> Result<(), SettingError> {
        if let Err(e) = Config::with_replicas(sizes.nodes) {
            return Err(SettingError::new("nodes", e.to_string()));
        }
        if sizes.clients == 0 {
            return Err(SettingError::new("clients", "hotstuff needs at least 1 client"));
        }
        Ok(())
    }

    fn describe_sizes(sizes: &Sizes) -> String {
        <crate::pbft::Pbft as Protocol>::describe_sizes(sizes)
    }

    fn describe_params(params: &Params, target: Target) -> String {
        <crate::pbft::Pbft as Protocol>::describe_params(params, target)
    }

    fn role(sizes: &Sizes, id: NodeId) -> Role {
        <crate::pbft::Pbft as Protocol>::role(sizes, id)
    }

    fn roles_doc() -> &'static str {
        "its replicas are nodes 0 to n-1 and its clients the rest"
    }

    fn mutants() -> &'static [(&'static str, &'static str)] {
        const MUTANTS: [(&str, &str); 6] = [
            (Mutant::NonConsecutiveCommit.name(), Mutant::NonConsecutiveCommit.about()),
            (Mutant::NoSafeNode.name(), Mutant::NoSafeNode.about()),
            (Mutant::SmallQuorum.name(), Mutant::SmallQuorum.about()),
            (Mutant::VoteTwice.name(), Mutant::VoteTwice.about()),
            (Mutant::SmallTimeoutQuorum.name(), Mutant::SmallTimeoutQuorum.about()),
            (Mutant::NoLock.name(), Mutant::NoLock.about()),
        ];
        &MUTANTS
    }

    /// Sizes, crypto and mutant; timers scaled to the network's latency, then set by hand,
    /// and the termination bound those timers need on its network.
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
                "view" => &mut config.view_timeout,
                other => return Err(format!("hotstuff has no timer `{other}`")),
            };
            *slot = Duration::from_nanos(ns);
        }
        if let Some(network) = setting.network {
            config = config.termination_bound_under_loss(network.loss_worst);
        }
        config.validate().map_err(|e| e.to_string())?;
        Ok(config)
    }

    /// The leader of each listed view (a round is a view); the others keep the rotation.
    fn choose_leaders(config: &mut Config, leaders: &BTreeMap<u64, NodeId>) -> Result<(), String> {
        let n = config.replicas();
        if let Some((view, node)) = leaders.iter().find(|(_, node)| node.0 >= n) {
            return Err(format!(
                "the leader of round {view} is node {}, but hotstuff's replicas are 0..{n}",
                node.0
            ));
        }
        config.leaders.extend(leaders);
        Ok(())
    }

    fn node(config: &Config, id: NodeId) -> Result<Node, String> {
        super::node(config, id).map_err(|e| e.to_string())
    }

    /// Every node, around one shared verifier.
    fn nodes(config: &Config, _sizes: &Sizes) -> Result<Vec<Node>, String> {
        actors(config).map_err(|e| e.to_string())
    }

    /// Every node signs, replicas and clients (their requests).
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

    /// Only the correct protocol runs on real transports: a mutant is refused.
    fn real_node(config: &Config, id: NodeId, keys: KeySource<'_>) -> Result<ProductionNode, String> {
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

    /// Safety, the per-replica checks, and termination once the last fault is over.
    fn invariants(config: &Config, healed: Time) -> Vec<Box<dyn Invariant<Node>>> {
        checks::checks_after(config, healed)
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn Invariant<Node>>)
            .collect()
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
            ("view", duration_ns(config.view_timeout)),
        ]
    }

    /// Shorter timers: a timeout or retransmission the failure needs comes sooner.
    fn timer_knobs(config: &Config, floor_ns: u64) -> Vec<TimerKnob> {
        Self::timers(config)
            .into_iter()
            .map(|(name, current_ns)| TimerKnob {
                name,
                current_ns,
                target_ns: floor_ns.min(current_ns),
            })
            .collect()
    }

    fn summary(_config: &Config, nodes: &[Node]) -> Option<serde_json::Value> {
        Some(serde_json::to_value(summary(nodes)).unwrap_or_default())
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

    /// Every client's submissions, then every replica's timeouts, then every replica's
    /// other outputs (each in its own order), then every client's completions. A timeout
    /// certificate names other replicas' timeouts, so their `timed_out` outputs go before
    /// it: grouped by node, a certificate of n1 naming n2 came before n2's `timed_out`
    /// (and the timeout-quorum check failed a correct run whose leader was paused). Only
    /// that check reads `timed_out`, and it asks whether a replica gave up on the view, not
    /// when: a certificate formed before a replica named in it gave up still passes here.
    fn causal_key(node: NodeId, output: &Output) -> [u64; 3] {
        let phase = match output {
            Output::Submitted { .. } => 0,
            Output::TimedOut { .. } => 1,
            Output::Completed { .. } => 3,
            _ => 2,
        };
        [phase, u64::from(node.0), 0]
    }

    /// The safety and per-replica checks; not termination (its bound is in virtual time).
    fn output_invariants(config: &Config) -> Vec<Box<dyn Invariant<Node>>> {
        safety_checks(config)
            .into_iter()
            .map(|c| Box::new(c) as Box<dyn Invariant<Node>>)
            .collect()
    }
}
