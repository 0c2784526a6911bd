//! The protocol registry's contract: what a protocol tells every runner about itself.
//!
//! A protocol implements [`Protocol`] once, on a unit struct, and is registered by one
//! line in the runner's list. The simulator, the shrinker, swarm mode, the node runtime
//! over TCP and DPDK, the cluster launcher and the help text all learn from this trait
//! alone: its name, its typed [`Protocol::Params`], its sizes and roles, how to build
//! each node, its invariants, mutants and Byzantine behaviours, and how to read its
//! outputs. No runner matches on a protocol's name.
//!
//! ```
//! use rehearsal_sim_core::protocol::{KeySource, NoParams, Protocol, Setting, Sizes, SettingError};
//! use rehearsal_sim_core::{Actor, Context, Invariant, NodeId, Time};
//!
//! /// Node 0 counts down from 3 with node 1.
//! #[derive(Clone)]
//! pub struct Pinger;
//! impl Actor for Pinger {
//!     type Msg = u32;
//!     type Timer = ();
//!     type Output = u32;
//!     fn on_start(&mut self, cx: &mut Context<Self>) {
//!         if cx.me() == NodeId(0) {
//!             cx.send(NodeId(1), 3)
//!         }
//!     }
//!     fn on_message(&mut self, from: NodeId, n: u32, cx: &mut Context<Self>) {
//!         cx.output(n);
//!         if n > 0 {
//!             cx.send(from, n - 1)
//!         }
//!     }
//!     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
//! }
//!
//! pub struct PingPong;
//! impl Protocol for PingPong {
//!     const NAME: &'static str = "ping-pong";
//!     const ABOUT: &'static str = "two nodes count down together";
//!     type Params = NoParams;
//!     type Config = ();
//!     type Node = Pinger;
//!     type RealNode = Pinger;
//!     fn nodes_default() -> u32 {
//!         2
//!     }
//!     fn check_sizes(sizes: &Sizes) -> Result<(), SettingError> {
//!         match sizes.nodes {
//!             2 => Ok(()),
//!             _ => Err(SettingError::new("nodes", "ping-pong runs exactly 2 nodes")),
//!         }
//!     }
//!     fn configure(_: &Setting<'_, NoParams>) -> Result<(), String> {
//!         Ok(())
//!     }
//!     fn node(_: &(), _: NodeId) -> Result<Pinger, String> {
//!         Ok(Pinger)
//!     }
//!     // Pinger signs nothing: it needs no keys, whatever their source.
//!     fn real_node(_: &(), _: NodeId, _: KeySource<'_>) -> Result<Pinger, String> {
//!         Ok(Pinger)
//!     }
//!     fn invariants(_: &(), _healed: Time) -> Vec<Box<dyn Invariant<Pinger>>> {
//!         Vec::new()
//!     }
//!     /// Each count comes after the one before it.
//!     fn causal_key(_node: NodeId, n: &u32) -> [u64; 3] {
//!         [u64::from(u32::MAX - n), 0, 0]
//!     }
//!     fn output_invariants(_: &()) -> Vec<Box<dyn Invariant<Pinger>>> {
//!         Vec::new()
//!     }
//! }
//!
//! let sizes = Sizes { nodes: 2, clients: 0, requests: None };
//! assert!(PingPong::check_sizes(&sizes).is_ok());
//! assert_eq!(PingPong::actors(&sizes), 2);
//! ```

use crate::{Actor, Invariant, NodeId, RestartFn, Time};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Who runs the protocol: the simulator, or real transports (`rehearsal node`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Simulator,
    Real,
}

/// Who is in a run: protocol nodes (servers, replicas, peers), clients, and each client's
/// request budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sizes {
    /// Protocol nodes: ids `0..nodes`.
    pub nodes: u32,
    /// Clients: ids `nodes..nodes + clients` (protocols without clients have none).
    pub clients: u32,
    /// Requests per client; `None`: unbounded (a real client runs until stopped).
    pub requests: Option<u64>,
}

/// A size or parameter a protocol cannot run with: which one (`nodes`, `clients`,
/// `crypto`, ...), the rule it breaks, and a hint to print after the value given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingError {
    pub key: String,
    pub rule: String,
    pub hint: Option<String>,
}

impl SettingError {
    pub fn new(key: impl Into<String>, rule: impl Into<String>) -> SettingError {
        SettingError {
            key: key.into(),
            rule: rule.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> SettingError {
        self.hint = Some(hint.into());
        self
    }
}

/// What a node does in its protocol, as cluster files name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The server of a client/server protocol (unreplicated).
    Server,
    /// A client, sending requests.
    Client,
    /// A replica of a replicated service (PBFT, HotStuff).
    Replica,
    /// A participant among equals (Benaloh).
    Peer,
    /// The node that combines servers' results and announces them (Spectrum).
    Publisher,
}

impl Role {
    /// The role's name as written in cluster files.
    pub fn name(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
            Role::Replica => "replica",
            Role::Peer => "peer",
            Role::Publisher => "publisher",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the network of a simulated run allows: the protocol scales its timers to it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetBound {
    /// The slowest a message may take on the worst link, in nanoseconds.
    pub one_way_ns_max: u64,
    /// The chance that a message is lost on the worst link.
    pub loss_worst: f64,
}

impl NetBound {
    /// A retransmission timeout comfortably above the round trip this network allows, so
    /// a lossless network sees no needless retransmissions: four one-way bounds, at least
    /// 1 ms.
    pub fn retransmit_after(&self) -> Duration {
        Duration::from_nanos(self.one_way_ns_max.saturating_mul(4).max(1_000_000))
    }
}

/// Everything a runner tells a protocol when it configures a run.
#[derive(Debug, Clone, Copy)]
pub struct Setting<'a, P> {
    pub target: Target,
    pub sizes: Sizes,
    pub params: &'a P,
    /// The run's seed (keys derived from it, in a testbed).
    pub seed: u64,
    /// Test-only: a deliberately broken variant, by name (one of [`Protocol::mutants`]).
    pub mutant: Option<&'a str>,
    /// Timers set by hand, by name (one of [`Protocol::TIMERS`]), in nanoseconds.
    pub timers: &'a BTreeMap<String, u64>,
    /// The simulated network's bounds; `None` on real transports.
    pub network: Option<NetBound>,
}

/// Which keys a protocol's nodes hold on real transports ([`Protocol::real_keys`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyNeeds {
    /// None: the protocol signs nothing.
    None,
    /// Nodes `0..holders` each sign with an Ed25519 key of their own: each holds its own
    /// private key and every holder's public key ([`NodeKeys`]), as `rehearsal keygen`
    /// writes them.
    Ed25519 {
        /// How many nodes hold keys: ids `0..holders`.
        holders: u32,
    },
    /// Only keys derived from the run's seed work (why, in words): for example a
    /// simulated signature scheme whose verifier holds every node's secret.
    TestbedOnly(&'static str),
}

/// A 32-byte private key, which never prints and is overwritten when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct PrivateKey(pub [u8; 32]);

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PrivateKey(..)")
    }
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        self.0 = [0; 32];
        // Seen as read, so that the compiler keeps the wipe of a value about to die.
        std::hint::black_box(&self.0);
    }
}

/// One node's key material on a real run, from key files: its own private key and the
/// public keys of every key holder, and nothing of any other node's private key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeKeys {
    /// The node these keys are for.
    pub me: NodeId,
    /// Its own Ed25519 private key (the 32-byte seed of RFC 8032).
    pub private: PrivateKey,
    /// The Ed25519 public key of node `i` at index `i`, for every holder `0..holders` of
    /// [`KeyNeeds::Ed25519`].
    pub public: Vec<[u8; 32]>,
}

/// Where a real node's keys come from ([`Protocol::real_node`]).
#[derive(Debug, Clone, Copy)]
pub enum KeySource<'a> {
    /// Derived from the run's seed, as in the simulator: anyone with the cluster file can
    /// compute every node's private key, so this is for testbeds only (the cluster file's
    /// `keys = "testbed"`).
    Testbed,
    /// The node's own keys, read from key files.
    Node(&'a NodeKeys),
}

/// One parameter of a protocol's [`Protocol::Params`], for help texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDoc {
    pub name: &'static str,
    /// What it takes, e.g. `sim|real` or `N`.
    pub values: &'static str,
    pub default: &'static str,
    pub about: &'static str,
}

/// A timer the shrinker may move: its value as the run sets it, and the value it tries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimerKnob {
    pub name: &'static str,
    pub current_ns: u64,
    pub target_ns: u64,
}

/// Byzantine nodes swarm mode may draw: at most `max` of them, among ids `first..among`
/// (replicas for a BFT protocol, clients for one whose servers are trusted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByzantineRoom {
    pub max: u32,
    pub first: u32,
    pub among: u32,
}

/// A protocol, as every runner sees it. Implement it on a unit struct in the protocol's
/// folder and add one line to the registry.
///
/// The simulator builds every node with [`Protocol::node`] (or [`Protocol::nodes`]) from
/// the [`Protocol::Config`] that [`Protocol::configure`] derived from the run's setting;
/// real transports build one node per process with [`Protocol::real_node`]. Either way a
/// node is built from its own id, the shared configuration and its own keys (and, on
/// restart, its own durable state), never by building every node and keeping one.
pub trait Protocol: 'static {
    /// The name run files, cluster files and `--protocol` use.
    const NAME: &'static str;
    /// One line for `rehearsal protocols`.
    const ABOUT: &'static str;
    /// Whether the protocol has closed-loop clients (ids after the protocol nodes).
    const CLIENTS: bool = false;
    /// The timers a run may set by name (`--timer NAME=DURATION`).
    const TIMERS: &'static [&'static str] = &[];

    /// Protocol parameters beyond the sizes, as run files (`[params]`), cluster files
    /// (`[params]`) and `--param NAME=VALUE` give them. Deny unknown fields.
    type Params: Serialize + DeserializeOwned + Default + Clone + fmt::Debug + 'static;
    /// Everything the protocol derived from a setting, shared by all its nodes.
    type Config: Clone + 'static;
    /// The node the simulator runs (with its test hooks: mutants, Byzantine behaviours).
    /// Its outputs cross threads and files on real runs.
    type Node: Actor<Output: Send + DeserializeOwned>;
    /// The node real transports run: the correct protocol only, no test hook compiled in
    /// (often the same type as `Node` for protocols without test hooks).
    type RealNode: Actor<Output = <Self::Node as Actor>::Output>;

    /// The parameters, for help texts.
    fn params_doc() -> &'static [ParamDoc] {
        &[]
    }

    /// Checks parameters that deserialized; `target` says who will run them.
    fn check_params(_params: &Self::Params, _target: Target) -> Result<(), SettingError> {
        Ok(())
    }

    /// The default count of protocol nodes.
    fn nodes_default() -> u32;

    /// Checks the sizes; the error names the size at fault.
    fn check_sizes(sizes: &Sizes) -> Result<(), SettingError>;

    /// The protocol nodes of a run with `servers` servers, for protocols whose nodes are
    /// servers and something more (Spectrum: the servers and a publisher), so that
    /// `--servers K` says what a user means; `None`: the protocol has no such notion
    /// (`--nodes` it is).
    fn nodes_for_servers(_servers: u32) -> Option<u32> {
        None
    }

    /// How many actors a run of these sizes has.
    fn actors(sizes: &Sizes) -> u32 {
        if Self::CLIENTS {
            sizes.nodes.saturating_add(sizes.clients)
        } else {
            sizes.nodes
        }
    }

    /// The sizes in words (`4 replicas (f = 1), 4 clients x 100 requests`).
    fn describe_sizes(sizes: &Sizes) -> String {
        match (Self::CLIENTS, sizes.requests) {
            (true, Some(requests)) => format!(
                "{} nodes, {} clients x {requests} requests",
                sizes.nodes, sizes.clients
            ),
            (true, None) => format!("{} nodes, {} clients", sizes.nodes, sizes.clients),
            (false, _) => format!("{} nodes", sizes.nodes),
        }
    }

    /// The parameters in words, for a run's description (empty: none worth saying).
    fn describe_params(_params: &Self::Params, _target: Target) -> String {
        String::new()
    }

    /// The role of node `id`.
    fn role(sizes: &Sizes, id: NodeId) -> Role {
        if Self::CLIENTS && id.0 >= sizes.nodes {
            Role::Client
        } else {
            Role::Peer
        }
    }

    /// The rule [`Protocol::role`] follows, in words, for errors about cluster files.
    fn roles_doc() -> &'static str {
        "every node is a peer"
    }

    /// Test-only mutants: `(name, what is broken)`.
    fn mutants() -> &'static [(&'static str, &'static str)] {
        &[]
    }

    /// Derives the shared configuration of a run. Errors say what is wrong.
    fn configure(setting: &Setting<'_, Self::Params>) -> Result<Self::Config, String>;

    /// Builds node `id` from the configuration.
    fn node(config: &Self::Config, id: NodeId) -> Result<Self::Node, String>;

    /// Test-only: makes replica `leaders[round]` lead each round listed (a scenario's
    /// `@round R leader N`, as Twins' generator picks them); unlisted rounds keep the
    /// protocol's own rotation. The default refuses: the protocol does not let the testbed
    /// choose its leaders.
    fn choose_leaders(
        _config: &mut Self::Config,
        _leaders: &BTreeMap<u64, NodeId>,
    ) -> Result<(), String> {
        Err(format!(
            "protocol `{}` does not let the testbed choose its leaders",
            Self::NAME
        ))
    }

    /// Builds every node of a run, in id order.
    fn nodes(config: &Self::Config, sizes: &Sizes) -> Result<Vec<Self::Node>, String> {
        (0..Self::actors(sizes))
            .map(|id| Self::node(config, NodeId(id)))
            .collect()
    }

    /// The invariants a simulated run must satisfy; termination is owed from `healed` on,
    /// when the last scheduled fault is over.
    fn invariants(config: &Self::Config, healed: Time) -> Vec<Box<dyn Invariant<Self::Node>>>;

    /// A bounded exhaustive exploration (see [`crate::explore`]) of a run of `config`
    /// from `nodes`, checked by [`Protocol::invariants`]; `None`: this protocol's node is
    /// not [`Explorable`](crate::explore::Explorable). A protocol whose node is opts in
    /// with one line: `Some(crate::explore::explorer(nodes, seed, invariants, bounds))`.
    fn exploration(
        _config: &Self::Config,
        _nodes: Vec<Self::Node>,
        _seed: u64,
        _bounds: crate::explore::Bounds,
    ) -> Option<Box<dyn crate::explore::Exploration>> {
        None
    }

    /// Rebuilds a crashed node from its durable state, for `restart` faults; `None`: the
    /// protocol does not come back from a crash.
    fn restart(_config: &Self::Config) -> Option<RestartFn<Self::Node>> {
        None
    }

    /// Whether a node keeps durable state, so that swarm mode may crash and restart it.
    fn durable() -> bool {
        false
    }

    /// The Byzantine nodes swarm mode may draw (behaviours from
    /// [`Actor::byzantine_behaviors`]); `None`: none.
    fn byzantine_room(_sizes: &Sizes) -> Option<ByzantineRoom> {
        None
    }

    /// Whether putting a timer firing off is a simplification (the shrinker's
    /// `postpone`), not a fault: false for protocols whose results depend on when their
    /// timers fire.
    fn timers_postponable() -> bool {
        true
    }

    /// The timers as a run of `config` sets them, by [`Protocol::TIMERS`] name, in ns.
    fn timers(_config: &Self::Config) -> Vec<(&'static str, u64)> {
        Vec::new()
    }

    /// The timers the shrinker tries to move, and where to: by default each toward
    /// `floor_ns` (a failure that needs a timeout then comes sooner).
    fn timer_knobs(config: &Self::Config, floor_ns: u64) -> Vec<TimerKnob> {
        Self::timers(config)
            .into_iter()
            .map(|(name, current_ns)| TimerKnob {
                name,
                current_ns,
                target_ns: floor_ns.min(current_ns),
            })
            .collect()
    }

    /// Protocol figures read from the nodes a simulated run leaves (throughput, latency).
    fn summary(_config: &Self::Config, _nodes: &[Self::Node]) -> Option<serde_json::Value> {
        None
    }

    // ---- real transports --------------------------------------------------------------

    /// Why the protocol cannot run on real transports, if it cannot.
    fn real_refusal() -> Option<&'static str> {
        None
    }

    /// The keys this protocol's nodes hold on real transports, for these parameters and
    /// sizes (`rehearsal keygen` writes them; `rehearsal node` reads a node's own).
    fn real_keys(_params: &Self::Params, _sizes: &Sizes) -> KeyNeeds {
        KeyNeeds::None
    }

    /// Builds node `id` for a real transport: only its own state, and only its own private
    /// key. `keys` says where that key comes from: files ([`KeySource::Node`], as
    /// [`Protocol::real_keys`] asked for them) or the seed ([`KeySource::Testbed`]). A
    /// protocol without keys ignores it.
    fn real_node(
        config: &Self::Config,
        id: NodeId,
        keys: KeySource<'_>,
    ) -> Result<Self::RealNode, String>;

    /// Node `id` on a real transport, rebuilt from the durable state an earlier run of it
    /// saved with [`Context::persist`](crate::Context::persist) (its state file), as
    /// [`Protocol::restart`] rebuilds a crashed node in the simulator. `Ok(None)`: this
    /// protocol cannot restart a real node (the default); `Err`: the state is not one this
    /// node saves, or as [`Protocol::real_node`].
    fn real_restart(
        _config: &Self::Config,
        _id: NodeId,
        _keys: KeySource<'_>,
        _durable: &[u8],
    ) -> Result<Option<Self::RealNode>, String> {
        Ok(None)
    }

    /// A client's output that completes one of its requests.
    fn is_completion(_output: &<Self::Node as Actor>::Output) -> bool {
        false
    }

    /// How many requests a node's output executes (a server's or replica's figure).
    fn executions(_output: &<Self::Node as Actor>::Output) -> u64 {
        0
    }

    /// An output after which a node without clients has reached its goal. A cluster of a
    /// protocol without clients runs until every node has output one (or fails at its
    /// time limit), so such a protocol defines it to run on real transports.
    fn is_final(_output: &<Self::Node as Actor>::Output) -> bool {
        false
    }

    /// Where an output of `node` goes in the one order causality allows for the outputs
    /// of a real run, whose nodes' clocks are not comparable: outputs are sorted by this
    /// key, stably (each node's outputs keep their order).
    fn causal_key(node: NodeId, output: &<Self::Node as Actor>::Output) -> [u64; 3];

    /// The invariants a real run's outputs must satisfy, checked after the run in
    /// [`Protocol::causal_key`] order (no termination: its bounds are in virtual time).
    fn output_invariants(config: &Self::Config) -> Vec<Box<dyn Invariant<Self::Node>>>;
}

/// What learns of every registered protocol, one type at a time (the protocols crate's
/// `visit_protocols` calls it once per protocol, in order).
pub trait Visitor {
    fn visit<P: Protocol>(&mut self);
}

/// A positive duration in a parameter table, written as text such as `"200ms"`; a bad one
/// is reported where the table is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamDuration(pub Duration);

impl Serialize for ParamDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{}ns", crate::duration_ns(self.0)))
    }
}

impl<'de> Deserialize<'de> for ParamDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::parse_duration(&text)
            .ok()
            .filter(|d| !d.is_zero())
            .map(ParamDuration)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{text:?} is not a positive duration such as \"200ms\""
                ))
            })
    }
}

/// The parameters of a protocol that has none: an empty table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}
