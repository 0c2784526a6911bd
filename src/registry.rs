//! The protocol registry: the one list of protocols the `rehearsal` program runs, and the
//! one place that turns a protocol's typed [`Protocol`](rehearsal_sim_core::protocol::Protocol)
//! implementation into what the commands need.
//!
//! Adding a protocol: implement `rehearsal_sim_core::protocol::Protocol` in its folder
//! under `protocols/src/`, and add one line to the `protocols!` list in
//! `protocols/src/lib.rs`. Nothing else in the program names a protocol.

use crate::cli::CliError;
use crate::cluster::{self, NodeArgs, Watch};
use crate::config::RunConfig;
use crate::run::{healed_at, net_bound, RunSummary};
use rehearsal_hardware::cluster::{ClusterConfig, NodeConfig};
use rehearsal_hardware::keys::cluster_node_keys;
use rehearsal_sim_core::protocol::{
    ByzantineRoom, KeyNeeds, KeySource, ParamDoc, Protocol as Spec, Role, Setting, SettingError,
    Sizes, Target, TimerKnob, Visitor,
};
use rehearsal_sim_core::{Actor, NetworkModel, NodeId, SimConfig, Violation};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::Write;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::LazyLock;

/// Every protocol the program runs, in the order help texts list them: those the
/// protocols crate registers (`rehearsal_protocols::visit_protocols`).
static PROTOCOLS: LazyLock<Vec<&'static dyn Registered>> = LazyLock::new(|| {
    struct Collect(Vec<&'static dyn Registered>);
    impl Visitor for Collect {
        fn visit<P: Spec>(&mut self) {
            // A unit value: leaking it costs nothing.
            self.0.push(Box::leak(Box::new(Entry::<P>::NEW)));
        }
    }
    let mut all = Collect(Vec::new());
    rehearsal_protocols::visit_protocols(&mut all);
    all.0
});

/// Parameters as given (run file, cluster file, `--param`), by name; only those set.
pub type ParamMap = serde_json::Map<String, serde_json::Value>;

/// A registered protocol, with its type forgotten: what the commands ask of it.
/// The protocols whose node implements `Explorable` (`rehearsal explore --strategy dfs|bfs`).
pub const EXPLORABLE: &[&str] = &["unreplicated", "benaloh", "pbft", "hotstuff", "spectrum"];

pub trait Registered: Sync {
    fn name(&self) -> &'static str;
    fn about(&self) -> &'static str;
    fn has_clients(&self) -> bool;
    fn timer_names(&self) -> &'static [&'static str];
    fn nodes_default(&self) -> u32;
    fn params_doc(&self) -> &'static [ParamDoc];
    fn mutants(&self) -> &'static [(&'static str, &'static str)];
    fn byzantine_behaviors(&self) -> &'static [&'static str];
    fn roles_doc(&self) -> &'static str;
    fn role(&self, sizes: &Sizes, id: NodeId) -> Role;
    fn actors(&self, sizes: &Sizes) -> u32;
    fn check_sizes(&self, sizes: &Sizes) -> Result<(), SettingError>;
    fn nodes_for_servers(&self, servers: u32) -> Option<u32>;
    /// Checks parameters: known names, values of the right type, and the protocol's own
    /// rules for them.
    fn check_params(&self, params: &ParamMap, target: Target) -> Result<(), SettingError>;
    fn describe_sizes(&self, sizes: &Sizes) -> String;
    fn describe_params(&self, params: &ParamMap, target: Target) -> String;
    fn durable(&self) -> bool;
    fn byzantine_room(&self, sizes: &Sizes) -> Option<ByzantineRoom>;
    fn timers_postponable(&self) -> bool;
    fn real_refusal(&self) -> Option<&'static str>;
    /// The timers of a simulated run as it sets them, by name, in ns.
    fn timers(&self, config: &RunConfig) -> Result<Vec<(&'static str, u64)>, String>;
    /// The timers the shrinker tries to move.
    fn timer_knobs(&self, config: &RunConfig, floor_ns: u64) -> Result<Vec<TimerKnob>, String>;
    /// Runs `config` in the simulator.
    fn simulate(
        &self,
        config: &RunConfig,
        sim_config: SimConfig,
        network: Box<dyn NetworkModel>,
    ) -> Result<RunSummary, String>;
    /// A bounded exhaustive exploration of `config`'s run (`rehearsal explore`), with
    /// the nodes of `byzantine` switched to their behaviours from the start.
    fn explore(
        &self,
        config: &RunConfig,
        bounds: rehearsal_sim_core::explore::Bounds,
        byzantine: &[(NodeId, String)],
    ) -> Result<Box<dyn rehearsal_sim_core::explore::Exploration>, String>;
    /// The keys the nodes of `cluster` need (`rehearsal keygen`, `rehearsal cluster`).
    fn key_needs(&self, cluster: &ClusterConfig) -> Result<KeyNeeds, String>;
    /// Runs one node of a cluster over a real transport (`rehearsal node`).
    fn run_node(&self, node: NodeRun<'_>) -> Result<u8, CliError>;
    /// Checks the outputs files of a cluster run: the number of outputs read, and the
    /// violations found.
    fn check_outputs(
        &self,
        cluster: &ClusterConfig,
        files: &[PathBuf],
    ) -> Result<(u64, Vec<Violation>), String>;
}

/// What `rehearsal node` hands a protocol to run one node.
pub struct NodeRun<'a> {
    pub cluster: &'a ClusterConfig,
    pub entry: &'a NodeConfig,
    pub args: &'a NodeArgs,
    /// The durable state an earlier run of this node saved in its state file (`--state`),
    /// checked whole; `None` on a first start.
    pub durable: Option<Vec<u8>>,
    pub out: &'a mut dyn Write,
    pub err: &'a mut dyn Write,
}

/// A registered protocol `P`.
pub struct Entry<P>(PhantomData<fn() -> P>);

impl<P> Entry<P> {
    pub const NEW: Entry<P> = Entry(PhantomData);
}

/// Parameters as `P` types them. Unknown names are refused first, by name, so that the
/// error can point at the one at fault.
fn typed_params<P: Spec>(params: &ParamMap) -> Result<P::Params, SettingError> {
    let known = P::params_doc();
    for key in params.keys() {
        if !known.iter().any(|doc| doc.name == key) {
            let names: Vec<&str> = known.iter().map(|doc| doc.name).collect();
            let has = if names.is_empty() {
                "it has none".to_string()
            } else {
                format!("it has {}", names.join(", "))
            };
            return Err(SettingError::new(
                key.clone(),
                format!("{} has no parameter `{key}` ({has})", P::NAME),
            ));
        }
    }
    serde_json::from_value(serde_json::Value::Object(params.clone())).map_err(|e| {
        let key = params.keys().next().cloned().unwrap_or_default();
        SettingError::new(key, format!("{} parameters: {e}", P::NAME))
    })
}

fn sizes_of(config: &RunConfig) -> Sizes {
    Sizes {
        nodes: config.nodes,
        clients: config.clients,
        requests: Some(config.requests),
    }
}

/// The configuration `P` derives from a simulated run's settings.
fn sim_config_of<P: Spec>(config: &RunConfig) -> Result<P::Config, String> {
    let params = typed_params::<P>(&config.params).map_err(|e| e.rule)?;
    let sizes = sizes_of(config);
    P::configure(&Setting {
        target: Target::Simulator,
        sizes,
        params: &params,
        seed: config.seed,
        mutant: config.mutant.as_deref(),
        timers: &config.timers,
        network: Some(net_bound(&config.net_config())),
    })
}

/// The sizes of a cluster for `P`: its protocol nodes (servers, replicas, peers, a
/// publisher) and its clients.
fn cluster_sizes<P: Spec>(cluster: &ClusterConfig, requests: Option<u64>) -> Sizes {
    let all = cluster.nodes.len() as u32;
    // The roles the protocol gives its own nodes (several for Spectrum: servers and a
    // publisher): a cluster's nodes with one of them are protocol nodes, the rest clients
    // (a node with a role of neither kind is then reported as a wrong client).
    let probe = Sizes {
        nodes: all,
        clients: 0,
        requests,
    };
    let node_roles: std::collections::BTreeSet<Role> = (0..all)
        .map(|id| P::role(&probe, NodeId(id)))
        .filter(|role| *role != Role::Client)
        .collect();
    let nodes = cluster
        .nodes
        .iter()
        .filter(|n| node_roles.contains(&n.role))
        .count() as u32;
    Sizes {
        nodes,
        clients: if P::CLIENTS { all - nodes } else { 0 },
        requests,
    }
}

/// A cluster file's `[params]`: the protocol's own, and the clients' request budget.
#[derive(Debug, Serialize, Deserialize)]
struct ClusterParams<T> {
    /// Requests per client; absent: unbounded (the client runs until stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests_per_client: Option<u64>,
    #[serde(flatten)]
    protocol: T,
}

impl<T: Default> Default for ClusterParams<T> {
    fn default() -> Self {
        ClusterParams {
            requests_per_client: None,
            protocol: T::default(),
        }
    }
}

/// Reads a cluster file's protocol setup for `P`, checking every node's role; with the
/// keys its nodes need.
fn cluster_config_of<P: Spec>(
    cluster: &ClusterConfig,
) -> Result<(P::Config, Sizes, KeyNeeds), String> {
    if let Some(refusal) = P::real_refusal() {
        return Err(cluster.error(refusal).to_string());
    }
    let params: ClusterParams<P::Params> = cluster.params().map_err(|e| e.to_string())?;
    if params.requests_per_client == Some(0) {
        return Err(cluster
            .error("[params] requests_per_client must be at least 1")
            .to_string());
    }
    if !P::CLIENTS && params.requests_per_client.is_some() {
        return Err(cluster
            .error(format!(
                "[params] requests_per_client: {} has no clients",
                P::NAME
            ))
            .to_string());
    }
    P::check_params(&params.protocol, Target::Real).map_err(|e| {
        cluster
            .error(format!("[params] {}: {}", e.key, e.rule))
            .to_string()
    })?;
    let sizes = cluster_sizes::<P>(cluster, params.requests_per_client);
    for node in &cluster.nodes {
        let expected = P::role(&sizes, node.id);
        if node.role != expected {
            return Err(cluster
                .node_error(
                    node,
                    format!(
                        "role `{}` is wrong for {} ({}): use role = \"{expected}\"",
                        node.role,
                        P::NAME,
                        P::roles_doc()
                    ),
                )
                .to_string());
        }
    }
    P::check_sizes(&sizes).map_err(|e| cluster.error(e.rule).to_string())?;
    let config = P::configure(&Setting {
        target: Target::Real,
        sizes,
        params: &params.protocol,
        seed: cluster.seed,
        mutant: None,
        timers: &Default::default(),
        network: None,
    })
    .map_err(|e| cluster.error(e).to_string())?;
    Ok((config, sizes, P::real_keys(&params.protocol, &sizes)))
}

/// The cluster file `[params]` a launch writes for `P`.
pub fn cluster_params_table(
    protocol: Protocol,
    requests: Option<u64>,
    params: &ParamMap,
) -> Result<toml::Table, String> {
    let mut table = toml::Table::new();
    if let (true, Some(requests)) = (protocol.has_clients(), requests) {
        table.insert(
            "requests_per_client".into(),
            toml::Value::Integer(i64::try_from(requests).unwrap_or(i64::MAX)),
        );
    }
    for (key, value) in params {
        let value = toml::Value::try_from(value).map_err(|e| format!("--param {key}: {e}"))?;
        table.insert(key.clone(), value);
    }
    Ok(table)
}

impl<P: Spec> Registered for Entry<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }
    fn about(&self) -> &'static str {
        P::ABOUT
    }
    fn has_clients(&self) -> bool {
        P::CLIENTS
    }
    fn timer_names(&self) -> &'static [&'static str] {
        P::TIMERS
    }
    fn nodes_default(&self) -> u32 {
        P::nodes_default()
    }
    fn params_doc(&self) -> &'static [ParamDoc] {
        P::params_doc()
    }
    fn mutants(&self) -> &'static [(&'static str, &'static str)] {
        P::mutants()
    }
    fn byzantine_behaviors(&self) -> &'static [&'static str] {
        <P::Node as Actor>::byzantine_behaviors()
    }
    fn roles_doc(&self) -> &'static str {
        P::roles_doc()
    }
    fn role(&self, sizes: &Sizes, id: NodeId) -> Role {
        P::role(sizes, id)
    }
    fn actors(&self, sizes: &Sizes) -> u32 {
        P::actors(sizes)
    }
    fn check_sizes(&self, sizes: &Sizes) -> Result<(), SettingError> {
        P::check_sizes(sizes)
    }
    fn nodes_for_servers(&self, servers: u32) -> Option<u32> {
        P::nodes_for_servers(servers)
    }
    fn check_params(&self, params: &ParamMap, target: Target) -> Result<(), SettingError> {
        P::check_params(&typed_params::<P>(params)?, target)
    }
    fn describe_sizes(&self, sizes: &Sizes) -> String {
        P::describe_sizes(sizes)
    }
    fn describe_params(&self, params: &ParamMap, target: Target) -> String {
        typed_params::<P>(params)
            .map_or_else(|e| e.rule, |params| P::describe_params(&params, target))
    }
    fn durable(&self) -> bool {
        P::durable()
    }
    fn byzantine_room(&self, sizes: &Sizes) -> Option<ByzantineRoom> {
        P::byzantine_room(sizes)
    }
    fn timers_postponable(&self) -> bool {
        P::timers_postponable()
    }
    fn real_refusal(&self) -> Option<&'static str> {
        P::real_refusal()
    }
    fn timers(&self, config: &RunConfig) -> Result<Vec<(&'static str, u64)>, String> {
        Ok(P::timers(&sim_config_of::<P>(config)?))
    }
    fn timer_knobs(&self, config: &RunConfig, floor_ns: u64) -> Result<Vec<TimerKnob>, String> {
        Ok(P::timer_knobs(&sim_config_of::<P>(config)?, floor_ns))
    }

    fn simulate(
        &self,
        config: &RunConfig,
        sim_config: SimConfig,
        network: Box<dyn NetworkModel>,
    ) -> Result<RunSummary, String> {
        let mut proto = sim_config_of::<P>(config)?;
        let scenario = config.parsed_scenario()?;
        if let Some(scenario) = scenario.as_ref().filter(|s| !s.leaders.is_empty()) {
            P::choose_leaders(&mut proto, &scenario.leaders).map_err(|e| {
                let origin = config.scenario.as_ref().map_or("", |s| s.origin.as_str());
                format!("{origin}: `leader`: {e}")
            })?;
        }
        let nodes = P::nodes(&proto, &sizes_of(config))?;
        let twins = match &scenario {
            Some(scenario) => scenario
                .twins
                .iter()
                .map(|&of| P::node(&proto, of).map(|twin| (of, twin)))
                .collect::<Result<Vec<_>, _>>()?,
            None => Vec::new(),
        };
        let setup = crate::run::Setup {
            actors: nodes,
            invariants: P::invariants(&proto, healed_at(config)),
            restart: P::restart(&proto),
            summarize: Some(Box::new(move |actors: &[P::Node]| {
                P::summary(&proto, actors)
            })),
            scenario,
            twins,
        };
        crate::run::simulate(config, sim_config, network, setup)
    }

    fn explore(
        &self,
        config: &RunConfig,
        bounds: rehearsal_sim_core::explore::Bounds,
        byzantine: &[(NodeId, String)],
    ) -> Result<Box<dyn rehearsal_sim_core::explore::Exploration>, String> {
        let proto = sim_config_of::<P>(config)?;
        let mut nodes = P::nodes(&proto, &sizes_of(config))?;
        let offered = <P::Node as rehearsal_sim_core::Actor>::byzantine_behaviors();
        for (id, behavior) in byzantine {
            if !offered.contains(&behavior.as_str()) {
                return Err(format!(
                    "--byzantine {id}:{behavior}: `{}` has no Byzantine behaviour `{behavior}` (it has: {})",
                    P::NAME,
                    if offered.is_empty() { "none".to_string() } else { offered.join(", ") }
                ));
            }
            let count = nodes.len();
            let node = nodes.get_mut(id.index()).ok_or_else(|| {
                format!(
                    "--byzantine {id}:{behavior}: the run has nodes n0 to n{}",
                    count.saturating_sub(1)
                )
            })?;
            rehearsal_sim_core::Actor::can_turn_byzantine(&*node, behavior)
                .and_then(|()| rehearsal_sim_core::Actor::set_byzantine(node, behavior))
                .map_err(|e| format!("--byzantine {id}:{behavior}: {e}"))?;
        }
        P::exploration(&proto, nodes, config.seed, bounds).ok_or_else(|| {
            format!(
                "protocol `{}` cannot be explored state by state: its node does not implement `Explorable` \
                 (copyable, with a fingerprint), or the protocol declines (see `Protocol::exploration`); \
                 protocols that explore: {}",
                P::NAME,
                EXPLORABLE.join(", ")
            )
        })
    }

    fn key_needs(&self, cluster: &ClusterConfig) -> Result<KeyNeeds, String> {
        cluster_config_of::<P>(cluster).map(|(_, _, needs)| needs)
    }

    /// The node holds its own private key only: `cluster_node_keys` reads its own key
    /// file (and the public list), and the protocol builds it from those alone.
    fn run_node(&self, run: NodeRun<'_>) -> Result<u8, CliError> {
        let (proto, sizes, needs) =
            cluster_config_of::<P>(run.cluster).map_err(CliError::BadInput)?;
        let keys =
            cluster_node_keys(run.cluster, run.entry.id, needs).map_err(CliError::BadInput)?;
        let source = match &keys {
            Some(keys) => KeySource::Node(keys),
            None => KeySource::Testbed,
        };
        let actor = match run.durable.as_deref() {
            None => P::real_node(&proto, run.entry.id, source)
                .map_err(|e| CliError::BadInput(run.cluster.error(e).to_string()))?,
            // Back from the state an earlier run saved, as the simulator restarts a node;
            // a protocol that cannot do so refuses to start from nothing, which would
            // forget what the node promised before it stopped (its view, what it
            // prepared), and the file is left as it is.
            Some(durable) => {
                let path = run
                    .args
                    .state
                    .as_deref()
                    .unwrap_or(std::path::Path::new("?"));
                match P::real_restart(&proto, run.entry.id, source, durable) {
                    Ok(Some(actor)) => actor,
                    Ok(None) => {
                        return Err(CliError::BadInput(format!(
                            "{}: node {} saved durable state there in an earlier run, but {} \
                             cannot restart a node on a real transport from its durable state; \
                             the file is left as it is",
                            path.display(),
                            run.entry.id.0,
                            P::NAME
                        )))
                    }
                    Err(e) => {
                        return Err(CliError::BadInput(format!(
                            "{}: node {} cannot restart from it: {e}; the file is left as it is",
                            path.display(),
                            run.entry.id.0
                        )))
                    }
                }
            }
        };
        let watch = Watch {
            is_completion: P::is_completion,
            executions: P::executions,
            is_final: P::is_final,
            completions_goal: sizes.requests,
        };
        cluster::run_node_over(actor, watch, run)
    }

    fn check_outputs(
        &self,
        cluster: &ClusterConfig,
        files: &[PathBuf],
    ) -> Result<(u64, Vec<Violation>), String> {
        let (proto, sizes, _) = cluster_config_of::<P>(cluster)?;
        let mut outputs = cluster::read_outputs::<<P::Node as Actor>::Output>(files)?;
        // Stable: each node's outputs keep their order.
        outputs.sort_by_key(|record| P::causal_key(record.node, &record.value));
        let mut violations = Vec::new();
        for mut invariant in P::output_invariants(&proto) {
            violations.extend(cluster::run_invariant::<P::Node>(
                &outputs,
                invariant.as_mut(),
            ));
        }
        if P::CLIENTS {
            let end = outputs.iter().map(|r| r.at).max().unwrap_or_default();
            for client in sizes.nodes..sizes.nodes + sizes.clients {
                let completed = outputs
                    .iter()
                    .any(|r| r.node == NodeId(client) && P::is_completion(&r.value));
                if !completed {
                    violations.push(Violation::new(
                        "progress",
                        NodeId(client),
                        end,
                        format!("client {} completed no request", NodeId(client)),
                    ));
                }
            }
        }
        Ok((outputs.len() as u64, violations))
    }
}

/// A protocol of the registry, by name: what run configurations, traces and flags hold.
#[derive(Clone, Copy)]
pub struct Protocol(&'static dyn Registered);

impl Protocol {
    /// The registered protocol called `name`; the error lists those there are.
    pub fn named(name: &str) -> Result<Protocol, String> {
        PROTOCOLS
            .iter()
            .find(|p| p.name() == name)
            .map(|&p| Protocol(p))
            .ok_or_else(|| {
                format!(
                    "unknown protocol `{name}`: expected one of {} (`rehearsal protocols` lists them)",
                    Protocol::names().join(", ")
                )
            })
    }

    /// Every registered protocol.
    pub fn all() -> impl Iterator<Item = Protocol> {
        PROTOCOLS.iter().map(|&p| Protocol(p))
    }

    /// Every registered protocol's name.
    pub fn names() -> Vec<&'static str> {
        PROTOCOLS.iter().map(|p| p.name()).collect()
    }

    /// The protocol a literal names, for tests and examples.
    ///
    /// # Panics
    /// When no protocol has that name.
    pub fn of(name: &str) -> Protocol {
        Protocol::named(name).unwrap_or_else(|e| panic!("{e}"))
    }
}

impl std::ops::Deref for Protocol {
    type Target = dyn Registered;
    fn deref(&self) -> &Self::Target {
        self.0
    }
}

impl PartialEq for Protocol {
    fn eq(&self, other: &Protocol) -> bool {
        self.0.name() == other.0.name()
    }
}

impl Eq for Protocol {}

impl fmt::Debug for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name())
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(name: &str) -> Result<Protocol, String> {
        Protocol::named(name)
    }
}

impl Serialize for Protocol {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.0.name())
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Protocol::named(&name).map_err(serde::de::Error::custom)
    }
}

/// `rehearsal protocols`: every protocol with its parameters, roles, timers, mutants and
/// Byzantine behaviours, from the registry.
pub fn write_protocols(out: &mut dyn Write) -> std::io::Result<()> {
    for (i, p) in Protocol::all().enumerate() {
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}: {}", p.name(), p.about())?;
        writeln!(
            out,
            "  nodes: {} by default; {}{}",
            p.nodes_default(),
            p.roles_doc(),
            if p.has_clients() {
                " (--clients, --requests)"
            } else {
                ""
            }
        )?;
        if p.params_doc().is_empty() {
            writeln!(out, "  params: none")?;
        } else {
            writeln!(
                out,
                "  params (--param NAME=VALUE, [params] in run and cluster files):"
            )?;
            for doc in p.params_doc() {
                writeln!(
                    out,
                    "    {}={}: {} [default: {}]",
                    doc.name, doc.values, doc.about, doc.default
                )?;
            }
        }
        if !p.timer_names().is_empty() {
            writeln!(
                out,
                "  timers (--timer NAME=DURATION): {}",
                p.timer_names().join(", ")
            )?;
        }
        if p.mutants().is_empty() {
            writeln!(out, "  mutants: none")?;
        } else {
            writeln!(out, "  mutants (--mutant NAME, test-only):")?;
            for (name, about) in p.mutants() {
                writeln!(out, "    {name}: {about}")?;
            }
        }
        let behaviors = p.byzantine_behaviors();
        if behaviors.is_empty() {
            writeln!(out, "  byzantine behaviours: none")?;
        } else {
            writeln!(
                out,
                "  byzantine behaviours (scenario `byzantine NODE BEHAVIOUR`): {}",
                behaviors.join(", ")
            )?;
        }
        let mut swarm = vec!["partitions", "pauses", "clock skew"];
        if p.durable() {
            swarm.push("crashes and restarts");
        }
        let byzantine = p.byzantine_room(&Sizes {
            nodes: p.nodes_default(),
            clients: 1,
            requests: Some(1),
        });
        if let Some(room) = byzantine {
            swarm.push(if room.first == 0 {
                "Byzantine nodes (at most f)"
            } else {
                "Byzantine clients"
            });
        }
        writeln!(out, "  swarm mode draws: {}", swarm.join(", "))?;
        match p.real_refusal() {
            None => writeln!(out, "  real transports: yes")?,
            Some(why) => writeln!(out, "  real transports: no ({why})")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehearsal_protocols::{pbft, unreplicated};
    use std::time::Duration;

    /// A PBFT cluster file of 4 replicas and 1 client, with `params` as its `[params]`.
    fn pbft_file(params: &str) -> String {
        let mut text = format!("protocol = \"pbft\"\n[params]\n{params}\n");
        for id in 0..5 {
            let role = if id < 4 { "replica" } else { "client" };
            text += &format!(
                "[[node]]\nid = {id}\nrole = \"{role}\"\naddress = \"127.0.0.1:{}\"\n",
                7000 + id
            );
        }
        text
    }

    fn pbft_setup(params: &str) -> Result<pbft::Config, String> {
        let cluster =
            ClusterConfig::parse(&pbft_file(params), "c.toml").map_err(|e| e.to_string())?;
        cluster_config_of::<pbft::Pbft>(&cluster).map(|(config, _, _)| config)
    }

    #[test]
    fn pbft_on_real_transports_has_the_simulators_timers_and_ed25519() {
        // A real cluster changes view after a silent primary as soon as the simulator does
        // (`pbft::LATENCY_MAX_REAL` tells why it no longer allows for 200 ms).
        let config = pbft_setup("").unwrap();
        let sim = pbft::Config::default();
        assert_eq!(config.tick, sim.tick);
        assert_eq!(config.client_retransmit, Duration::from_millis(500));
        assert_eq!(config.client_retransmit, sim.client_retransmit);
        assert_eq!(config.view_change_timeout, Duration::from_secs(1));
        assert_eq!(config.view_change_timeout, sim.view_change_timeout);
        assert_eq!(config.crypto, pbft::CryptoKind::Real);
        assert_eq!(config.requests_per_client, u64::MAX);
        let config = pbft_setup(
            "latency_max = \"1s\"\nbatch_max = 8\ncrypto = \"sim\"\nrequests_per_client = 3",
        )
        .unwrap();
        assert_eq!(config.tick, Duration::from_secs(5));
        assert_eq!(config.view_change_timeout, Duration::from_secs(50));
        assert_eq!(config.batch_max, 8);
        assert_eq!(config.crypto, pbft::CryptoKind::Sim);
        assert_eq!(config.requests_per_client, 3);
    }

    #[test]
    fn bad_cluster_parameters_are_reported_at_their_line() {
        // The `[params]` table's line: the protocol's parameters are read beside the
        // clients' budget, which hides the value's own place from the TOML reader.
        let error = pbft_setup("latency_max = \"fast\"").unwrap_err();
        assert!(error.starts_with("c.toml:2:"), "{error}");
        assert!(
            error.contains("\"fast\" is not a positive duration such as \"200ms\""),
            "{error}"
        );
        let error = pbft_setup("crypto = \"rsa\"").unwrap_err();
        assert!(error.contains("crypto must be `sim` or `real`"), "{error}");
        let text = "protocol = \"unreplicated\"\n[params]\nretransmit_after = \"0s\"\n\
                    [[node]]\nid = 0\nrole = \"server\"\naddress = \"127.0.0.1:7000\"\n\
                    [[node]]\nid = 1\nrole = \"client\"\naddress = \"127.0.0.1:7001\"\n";
        let cluster = ClusterConfig::parse(text, "u.toml").unwrap();
        let error = cluster_config_of::<unreplicated::Unreplicated>(&cluster).unwrap_err();
        assert!(error.starts_with("u.toml:2:"), "{error}");
        assert!(
            error.contains("\"0s\" is not a positive duration"),
            "{error}"
        );
    }

    #[test]
    fn a_wrong_role_names_the_node_and_the_rule() {
        let text = pbft_file("").replace("role = \"client\"", "role = \"peer\"");
        let cluster = ClusterConfig::parse(&text, "c.toml").unwrap();
        let error = cluster_config_of::<pbft::Pbft>(&cluster).unwrap_err();
        assert!(error.contains("role `peer` is wrong for pbft"), "{error}");
        assert!(error.contains("use role = \"client\""), "{error}");
    }

    #[test]
    fn the_launcher_writes_parameters_that_its_nodes_read_back() {
        let params: ParamMap = [
            ("crypto".to_string(), serde_json::Value::from("sim")),
            ("batch".to_string(), serde_json::Value::from(4)),
            ("latency_max".to_string(), serde_json::Value::from("250ms")),
        ]
        .into_iter()
        .collect();
        let table = cluster_params_table(Protocol::of("pbft"), Some(7), &params).unwrap();
        let text = pbft_file(&toml::to_string(&table).unwrap());
        let cluster = ClusterConfig::parse(&text, "c.toml").unwrap();
        let (config, sizes, _) = cluster_config_of::<pbft::Pbft>(&cluster).unwrap();
        assert_eq!(sizes.requests, Some(7));
        assert_eq!(config.batch_max, 4);
        assert_eq!(config.crypto, pbft::CryptoKind::Sim);
        // 250 ms allowed per message: five of them per tick, as 20 ms gives a 100 ms tick.
        assert_eq!(config.tick, Duration::from_millis(1250));
    }

    #[test]
    fn every_protocol_is_listed_once_with_its_mutants_and_behaviours() {
        let names = Protocol::names();
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        let mut text = Vec::new();
        write_protocols(&mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        for p in Protocol::all() {
            assert!(
                text.contains(&format!("{}: {}", p.name(), p.about())),
                "{text}"
            );
            for (mutant, _) in p.mutants() {
                assert!(text.contains(mutant), "{mutant} missing:\n{text}");
            }
            for behavior in p.byzantine_behaviors() {
                assert!(text.contains(behavior), "{behavior} missing:\n{text}");
            }
            for doc in p.params_doc() {
                assert!(
                    text.contains(&format!("{}={}", doc.name, doc.values)),
                    "{text}"
                );
            }
        }
        assert!(Protocol::named("raft")
            .unwrap_err()
            .contains("expected one of"));
    }

    #[test]
    fn parameters_a_protocol_does_not_have_are_refused_by_name() {
        let params: ParamMap = [("crypto".to_string(), serde_json::Value::from("real"))]
            .into_iter()
            .collect();
        let error = Protocol::of("benaloh")
            .check_params(&params, Target::Simulator)
            .unwrap_err();
        assert_eq!(error.key, "crypto");
        assert!(
            error
                .rule
                .contains("benaloh has no parameter `crypto` (it has modulus)"),
            "{}",
            error.rule
        );
        let params: ParamMap = [("batch".to_string(), serde_json::Value::from("many"))]
            .into_iter()
            .collect();
        let error = Protocol::of("pbft")
            .check_params(&params, Target::Simulator)
            .unwrap_err();
        assert!(error.rule.contains("pbft parameters"), "{}", error.rule);
    }
}
