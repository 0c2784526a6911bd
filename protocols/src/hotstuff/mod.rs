//! Chained HotStuff (Yin, Malkhi, Reiter, Gueta, Abraham, PODC 2019) as Rehearsal actors:
//! n = 3f+1 replicas order client requests in a chain of blocks, despite up to f
//! Byzantine replicas, with a pacemaker that survives faulty leaders and partitions.
//!
//! Replicas are nodes `0..n`, clients nodes `n..n+clients`. The protocol, as the paper's
//! Algorithm 3 (chained HotStuff) and its event-driven form have it ([`replica`]):
//!
//! - **Blocks and certificates**: a block carries a batch of client requests, its parent's
//!   hash and a quorum certificate (QC: 2f+1 distinct signed votes) for its parent. The
//!   leader of view v (round-robin, `v mod n`) proposes a block extending its highest QC.
//! - **Voting** (`onReceiveProposal`): a replica votes for the leader's block of its
//!   current view if it has not voted in that view yet and the *safe-node* rule holds:
//!   the block extends the replica's locked block, or its QC is newer than the lock. The
//!   vote goes to the next view's leader, which forms the next QC from 2f+1 votes.
//! - **Locking and committing** (`update`): on a QC for block b'' (carried by a proposal,
//!   a timeout, or formed from votes), with b' = the block b'' certifies and b = the block
//!   b' certifies: the replica locks on b' (the 2-chain) if it is newer than its lock, and
//!   if b'', b', b are a chain of direct parents in consecutive views (the 3-chain),
//!   commits b and every ancestor not yet committed, and executes them in height order.
//! - **Pacemaker** ([`replica`]): a replica with work outstanding (a client request not
//!   executed, or a block not committed) times out of a view that makes no progress: it
//!   broadcasts a timeout carrying its highest QC and keeps re-sending it, the wait
//!   doubling each time (up to [`Config::view_timeout_max`]). 2f+1 timeouts of one view
//!   are a timeout certificate (TC) that moves every replica on to the next view; its
//!   leader proposes extending the highest QC the timeouts carry, with the TC attached.
//!   A replica moves to view v+1 when it votes in view v, or sees a QC or TC of view v.
//! - **Synchronisation**: every QC and TC a replica sees moves it forward; a replica that
//!   hears from an older view answers with its highest QC and TC (a *new-view* message),
//!   and one that lacks a block a certificate names fetches it and its ancestors.
//! - **Clients** ([`client`]): closed-loop, one signed request outstanding, sent to every
//!   replica (any of them may lead next); a result is accepted on f+1 matching signed
//!   replies. The application is PBFT's key-value store ([`crate::pbft::app`]).
//! - **Crash and restart** ([`restart`]): replicas save their view, the last view they
//!   voted in, their lock, their highest QC and their committed state with
//!   [`Context::persist`] before every vote, and restart from them.
//!
//! Every message is checked on arrival (sender, view, signatures, quorums of distinct
//! signers, hash and parent links); an invalid one is dropped and annotated in the trace,
//! never a panic. [`checks()`] lists the invariants ([`mod@checks`]): safety (the committed
//! chains of correct replicas are prefixes of one another), validity, integrity, in-order
//! execution, client consistency, termination after healing, and the two per-replica
//! facts the paper's proof rests on: the locked view never decreases, and votes are for
//! strictly increasing views. Mutants ([`Mutant`]) and Byzantine behaviours
//! ([`byzantine::Behavior`]) enter through one seam ([`TestSeam`]).
//!
//! ```
//! use rehearsal_protocols::hotstuff;
//! use rehearsal_sim_core::{Outcome, SimConfig, SimpleNetwork, Simulation};
//!
//! let config = hotstuff::Config { clients: 2, requests_per_client: 20, ..hotstuff::Config::default() };
//! let actors = hotstuff::actors(&config).unwrap();
//! let mut sim = Simulation::new(SimConfig::new(1), actors, SimpleNetwork::default());
//! for check in hotstuff::checks(&config) {
//!     sim.add_invariant(check);
//! }
//! let report = sim.run();
//! assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
//! assert_eq!(hotstuff::summary(&report.actors).completed, 40);
//! ```

pub mod byzantine;
pub mod checks;
pub mod client;
pub mod messages;
pub mod mutation;
mod protocol;
pub mod replica;
pub mod seam;

pub use crate::crypto::CryptoKind;
pub use crate::pbft::{Execution, Op};
pub use byzantine::Behavior;
pub use checks::{checks, safety_checks, Check};
pub use client::Client;
pub use messages::{Msg, View};
pub use protocol::{HotStuff, Params};
pub use replica::Replica;
pub use seam::{Correct, TestSeam, Testing};

use crate::crypto::{Crypto, Digest};
use crate::replicated::check_saved_state;
use rehearsal_sim_core::protocol::KeySource;
use rehearsal_sim_core::{Actor, Context, NodeId, Time};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::Duration;

// ---- Configuration ----------------------------------------------------------------------

/// A deliberately broken HotStuff, for the testbed's own tests only: each must be caught
/// by an invariant under some setting (see `protocols/tests/hotstuff_mutants.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mutant {
    /// The correct protocol.
    #[default]
    None,
    /// Commit on a 3-chain without checking that its views are consecutive.
    NonConsecutiveCommit,
    /// Vote without the safe-node rule: the lock is ignored.
    NoSafeNode,
    /// A QC is formed from 2f votes instead of 2f+1.
    SmallQuorum,
    /// No check that the replica already voted in the view.
    VoteTwice,
    /// A timeout certificate is formed from f+1 timeouts instead of 2f+1.
    SmallTimeoutQuorum,
    /// The lock is never updated.
    NoLock,
}

impl Mutant {
    /// Every mutant, the correct protocol first.
    pub const ALL: [Mutant; 7] = [
        Mutant::None,
        Mutant::NonConsecutiveCommit,
        Mutant::NoSafeNode,
        Mutant::SmallQuorum,
        Mutant::VoteTwice,
        Mutant::SmallTimeoutQuorum,
        Mutant::NoLock,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Mutant::None => "none",
            Mutant::NonConsecutiveCommit => "non-consecutive-commit",
            Mutant::NoSafeNode => "no-safe-node",
            Mutant::SmallQuorum => "small-quorum",
            Mutant::VoteTwice => "vote-twice",
            Mutant::SmallTimeoutQuorum => "small-timeout-quorum",
            Mutant::NoLock => "no-lock",
        }
    }

    /// What the mutant breaks, for help texts.
    pub const fn about(self) -> &'static str {
        match self {
            Mutant::None => "the correct protocol",
            Mutant::NonConsecutiveCommit => {
                "commit on a 3-chain without checking that its views are consecutive"
            }
            Mutant::NoSafeNode => "vote without the safe-node rule (the lock is ignored)",
            Mutant::SmallQuorum => "a QC is formed from 2f votes",
            Mutant::VoteTwice => "no check that the view was already voted in",
            Mutant::SmallTimeoutQuorum => "a timeout certificate is formed from f+1 timeouts",
            Mutant::NoLock => "the lock is never updated",
        }
    }
}

crate::named::display_by_name!(Mutant);

impl FromStr for Mutant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::named::parse_named(s, "HotStuff mutant", &Mutant::ALL, Mutant::name, None)
    }
}

/// One HotStuff deployment: group size, workload, batching and timers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Faults tolerated; the group has n = 3f+1 replicas.
    pub f: u32,
    pub clients: u32,
    /// Requests each client sends, one at a time (closed loop).
    pub requests_per_client: u64,
    /// Most requests in one block.
    pub batch_max: usize,
    pub crypto: CryptoKind,
    /// Seed of the testbed keys and of the clients' operations.
    pub key_seed: u64,
    /// Keys of the replicated key-value store.
    pub keys: u32,
    /// A client re-sends its request after this, doubling on each retry (up to 8 times).
    pub client_retransmit: Duration,
    /// How long a replica with work outstanding waits in a view before it times out;
    /// doubles with each timeout that brings no progress.
    pub view_timeout: Duration,
    /// The termination check's bound: once faults have healed, every request completes
    /// within this.
    pub termination_bound: Duration,
    /// Test-only: a deliberately broken variant.
    pub mutant: Mutant,
    /// Test-only: the leader of each view listed, chosen by the testbed (Twins' generator,
    /// a scenario's `@round R leader N`); other views keep the round-robin [`messages::leader_of`].
    pub leaders: BTreeMap<View, NodeId>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            f: 1,
            clients: 1,
            requests_per_client: 100,
            batch_max: 1,
            crypto: CryptoKind::Sim,
            key_seed: 0,
            keys: 8,
            client_retransmit: Duration::from_millis(500),
            view_timeout: Duration::from_millis(500),
            termination_bound: Duration::from_secs(60),
            mutant: Mutant::None,
            leaders: BTreeMap::new(),
        }
    }
}

/// Largest group: certificate checks keep one bit per replica in a `u128`.
pub const REPLICAS_MAX: u32 = 127;

/// The view timeout stops doubling after this many timeouts without progress.
pub const VIEW_TIMEOUT_DOUBLINGS_MAX: u32 = 6;

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("HotStuff needs n = 3f+1 replicas, and {0} is not of that form (4, 7, 10, ...)")]
    NotThreeFPlusOne(u32),
    #[error("HotStuff supports at most {REPLICAS_MAX} replicas (f <= 42), got f = {0}")]
    TooManyReplicas(u32),
    #[error("HotStuff needs at least one client")]
    NoClients,
    #[error("the batch size must be at least 1")]
    EmptyBatch,
    #[error("the key-value store needs at least one key")]
    NoKeys,
    #[error("the {0} must be positive")]
    ZeroTimeout(&'static str),
    #[error("the production HotStuff node runs the correct protocol only, not the `{0}` mutant: mutants run in the simulator")]
    MutantInProduction(Mutant),
    #[error("node {node} is not in a group of {nodes} nodes (replicas and clients)")]
    NoSuchNode { node: NodeId, nodes: u32 },
    #[error(transparent)]
    Keys(#[from] crate::crypto::KeyError),
}

impl Config {
    /// A default configuration for `replicas` = 3f+1 replicas.
    pub fn with_replicas(replicas: u32) -> Result<Config, ConfigError> {
        if replicas < 4 || (replicas - 1) % 3 != 0 {
            return Err(ConfigError::NotThreeFPlusOne(replicas));
        }
        let config = Config {
            f: (replicas - 1) / 3,
            ..Config::default()
        };
        config.validate()?;
        Ok(config)
    }

    /// Says what is wrong with the configuration, if anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.f == 0 {
            return Err(ConfigError::NotThreeFPlusOne(1));
        }
        if self.f > (REPLICAS_MAX - 1) / 3 {
            return Err(ConfigError::TooManyReplicas(self.f));
        }
        if self.clients == 0 {
            return Err(ConfigError::NoClients);
        }
        if self.batch_max == 0 {
            return Err(ConfigError::EmptyBatch);
        }
        if self.keys == 0 {
            return Err(ConfigError::NoKeys);
        }
        for (name, d) in [
            ("client retransmission timeout", self.client_retransmit),
            ("view timeout", self.view_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroTimeout(name));
            }
        }
        Ok(())
    }

    /// Scales the timers to a network whose one-way latency reaches `latency_max` (the
    /// defaults suit up to about 20 ms); never shortens one below its default.
    pub fn timeouts_for_latency(mut self, latency_max: Duration) -> Config {
        let defaults = Config::default();
        self.client_retransmit = defaults.client_retransmit.max(latency_max * 25);
        self.view_timeout = defaults.view_timeout.max(latency_max * 25);
        self.termination_bound = defaults.termination_bound.max(latency_max * 3_000);
        self
    }

    /// The longest view timeout: it stops doubling there.
    pub fn view_timeout_max(&self) -> Duration {
        self.view_timeout * (1 << VIEW_TIMEOUT_DOUBLINGS_MAX)
    }

    /// Raises [`Config::termination_bound`] to what the timers need once faults have
    /// healed on a network that loses `loss` of its messages: f faulty leaders in a row at
    /// the longest view timeout, then the client's retransmissions (as PBFT's clients need
    /// them, see [`crate::pbft::Config::client_attempts_under_loss`]), each followed by
    /// the three views a block needs to commit at the longest view timeout.
    pub fn termination_bound_under_loss(mut self, loss: f64) -> Config {
        let pbft = crate::pbft::Config {
            f: self.f,
            ..crate::pbft::Config::default()
        };
        if let Some(attempts) = pbft.client_attempts_under_loss(loss) {
            let client_max = self.client_retransmit * (1 << crate::pbft::client::BACKOFF_DOUBLINGS_MAX);
            let needed = self.view_timeout_max() * (self.f + 3)
                + (client_max + self.view_timeout_max() * 3) * attempts;
            self.termination_bound = self.termination_bound.max(needed);
        }
        self
    }

    /// n = 3f+1.
    pub fn replicas(&self) -> u32 {
        3 * self.f + 1
    }

    /// Replicas and clients.
    pub fn nodes(&self) -> u32 {
        self.replicas() + self.clients
    }

    pub fn is_replica(&self, node: NodeId) -> bool {
        node.0 < self.replicas()
    }

    /// 2f+1: votes in a QC, timeouts in a TC.
    pub fn quorum(&self) -> usize {
        2 * self.f as usize + 1
    }
}

// ---- Outputs and timers -----------------------------------------------------------------

/// Why a replica's committed state jumped instead of growing one block at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadReason {
    /// Restart from the durable state saved with its last vote or commit.
    Restart,
}

/// What the checkers observe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Output {
    /// A client sent request `number` for the first time.
    Submitted { number: u64, op: Op },
    /// A client accepted `result` for request `number` (f+1 matching replies).
    Completed {
        number: u64,
        op: Op,
        result: u64,
        submitted_at: Time,
        completed_at: Time,
    },
    /// A replica committed the block at `height` of its chain (proposed in `view`, child
    /// of `parent`) and executed `requests` of it (duplicates are skipped).
    Executed {
        height: u64,
        view: View,
        block: Digest,
        parent: Digest,
        requests: Vec<Execution>,
    },
    /// A replica voted for `block` in `view`.
    Voted { view: View, block: Digest },
    /// A replica's lock moved to the QC of `view`, certifying `block`.
    Locked { view: View, block: Digest },
    /// A replica gave up on `view` and signed a timeout for it.
    TimedOut { view: View },
    /// A replica moved on from `view` on a timeout certificate signed by `signers`.
    TimeoutCertified { view: View, signers: Vec<u32> },
    /// A replica's committed state became the block at `height`; `executed` lists each
    /// client's latest executed request in that state.
    StateLoaded {
        height: u64,
        block: Digest,
        reason: LoadReason,
        executed: Vec<(NodeId, u64)>,
    },
    /// This replica turned Byzantine: checks exclude it from "correct replicas" from here on.
    Byzantine { behavior: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// A replica's view timer: it times out of `view` (or re-sends its timeout for it).
    View { view: View },
    /// A replica re-sends, while it stays in `view`, what the view waits on: its
    /// proposal as leader, its vote for the view before, its timeout.
    Resend { view: View },
    /// A client's retransmission of request `number`.
    Retransmit { number: u64 },
}

// ---- The actors -------------------------------------------------------------------------

/// A HotStuff node, a replica or a client, whose replica has the [`TestSeam`] `S`. Use
/// [`Node`] in the simulator and [`ProductionNode`] over real transports.
#[derive(Clone)]
pub enum NodeWith<S: TestSeam> {
    Replica(Box<Replica<S>>),
    Client(Box<Client>),
}

// The explorer copies a simulated node and tells its states apart by their encoding
// (leaving out ids, sizes, keys, the seam, caches and timer ids).
crate::replicated::explorable_by_encoding!(NodeWith<Testing>);

/// The simulator's HotStuff node: mutants and Byzantine behaviours are available through
/// its [`Testing`] seam.
pub type Node = NodeWith<Testing>;

/// The production HotStuff node: the correct protocol alone.
pub type ProductionNode = NodeWith<Correct>;

impl<S: TestSeam> NodeWith<S> {
    pub fn as_replica(&self) -> Option<&Replica<S>> {
        match self {
            NodeWith::Replica(r) => Some(r),
            NodeWith::Client(_) => None,
        }
    }

    pub fn as_client(&self) -> Option<&Client> {
        match self {
            NodeWith::Client(c) => Some(c),
            NodeWith::Replica(_) => None,
        }
    }

    fn new(config: &Config, crypto: Crypto, durable: Option<&[u8]>) -> Self {
        if config.is_replica(crypto.me()) {
            NodeWith::Replica(Box::new(Replica::new(config, crypto, durable)))
        } else {
            NodeWith::Client(Box::new(Client::new(config, crypto, durable)))
        }
    }
}

/// The actors of one run: replicas `0..n`, then clients `n..n+clients`, around one shared
/// verifier of the testbed keys.
pub fn actors(config: &Config) -> Result<Vec<Node>, ConfigError> {
    config.validate()?;
    Ok(Crypto::generate(config.crypto, config.key_seed, config.nodes())
        .into_iter()
        .map(|crypto| Node::new(config, crypto, None))
        .collect())
}

/// Node `id` alone, with its own testbed key and everybody's public keys.
pub fn node(config: &Config, id: NodeId) -> Result<Node, ConfigError> {
    config.validate()?;
    let crypto = testbed_crypto(config, id)?;
    Ok(Node::new(config, crypto, None))
}

fn testbed_crypto(config: &Config, id: NodeId) -> Result<Crypto, ConfigError> {
    if id.0 >= config.nodes() {
        return Err(ConfigError::NoSuchNode {
            node: id,
            nodes: config.nodes(),
        });
    }
    let verifier = Crypto::testbed_verifier(config.crypto, config.key_seed, config.nodes());
    Ok(Crypto::testbed(config.crypto, config.key_seed, id, verifier))
}

/// Node `id` as the production node, for a real runtime: the correct protocol only, with
/// the keys `keys` gives it.
pub fn production_node(
    config: &Config,
    id: NodeId,
    keys: KeySource<'_>,
) -> Result<ProductionNode, ConfigError> {
    Ok(ProductionNode::new(config, production_crypto(config, id, keys)?, None))
}

/// Node `id`'s keys for a real deployment of `config`, which must be valid and correct.
fn production_crypto(config: &Config, id: NodeId, keys: KeySource<'_>) -> Result<Crypto, ConfigError> {
    config.validate()?;
    if config.mutant != Mutant::None {
        return Err(ConfigError::MutantInProduction(config.mutant));
    }
    Crypto::for_real_node(config.crypto, config.nodes(), id, keys, || {
        testbed_crypto(config, id)
    })
}

/// Node `id` for a real deployment, restarted from the durable state an earlier run of it
/// saved: as [`restart`] brings a node back in the simulator (a replica with its view, the
/// last view it voted in, its lock, its highest QC and its committed state, catching up
/// from the others; a client after its last completed request). A state that does not
/// decode as this node's is refused, not ignored: a replica starting from nothing could
/// vote twice in a view it already voted in.
///
/// ```
/// use rehearsal_protocols::hotstuff::{self, Config};
/// use rehearsal_sim_core::protocol::KeySource;
/// use rehearsal_sim_core::NodeId;
///
/// let restarted = hotstuff::production_restart(&Config::default(), NodeId(0), KeySource::Testbed, b"junk");
/// let Err(error) = restarted else { panic!("a replica restarted from junk") };
/// assert!(error.contains("not a HotStuff replica's durable state"), "{error}");
/// ```
pub fn production_restart(
    config: &Config,
    id: NodeId,
    keys: KeySource<'_>,
    durable: &[u8],
) -> Result<ProductionNode, String> {
    let crypto = production_crypto(config, id, keys).map_err(|e| e.to_string())?;
    if config.is_replica(id) {
        check_saved_state("HotStuff", "replica", durable, replica::durable_decodes(durable))?;
    } else {
        check_saved_state("HotStuff", "client", durable, client::durable_decodes(durable))?;
    }
    Ok(ProductionNode::new(config, crypto, Some(durable)))
}

/// The restart constructor: a replica comes back with the view, vote, lock, highest QC
/// and committed state it saved with [`Context::persist`] and catches up from the others;
/// a client resumes after its last completed request.
pub fn restart(config: &Config) -> impl FnMut(NodeId, Option<&[u8]>) -> Node + 'static {
    let config = config.clone();
    let mut verifier = None;
    move |id, durable| {
        let verifier = verifier
            .get_or_insert_with(|| {
                Crypto::testbed_verifier(config.crypto, config.key_seed, config.nodes())
            })
            .clone();
        let crypto = Crypto::testbed(config.crypto, config.key_seed, id, verifier);
        Node::new(&config, crypto, durable)
    }
}

impl<S: TestSeam> Actor for NodeWith<S> {
    type Msg = Msg;
    type Timer = Timer;
    type Output = Output;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        match self {
            NodeWith::Replica(r) => r.on_start(cx),
            NodeWith::Client(c) => c.on_start(cx),
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<Self>) {
        match self {
            NodeWith::Replica(r) => r.on_message(from, msg, cx),
            NodeWith::Client(c) => c.on_message(from, msg, cx),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Self>) {
        match (self, timer) {
            (NodeWith::Replica(r), Timer::View { view }) => r.on_view_timer(view, cx),
            (NodeWith::Replica(r), Timer::Resend { view }) => r.on_resend_timer(view, cx),
            (NodeWith::Client(c), Timer::Retransmit { number }) => c.on_retransmit(number, cx),
            (_, timer) => cx.annotate(format!("ignored foreign timer {timer:?}")),
        }
    }

    fn message_kind(msg: &Msg) -> &'static str {
        msg.kind()
    }

    /// A replica's summary of its state for coverage-guided search; every client is one
    /// state.
    fn abstract_state(&self) -> u64 {
        match self {
            NodeWith::Replica(r) => r.abstract_state(),
            NodeWith::Client(_) => 1 << 63 | 1 << 62,
        }
    }

    /// A replica's message changed by one step and signed again with its own key (see
    /// [`mutation`]); clients and the production node never mutate.
    fn mutate_message(&self, msg: &mut Msg, rng: &mut rehearsal_sim_core::SimRng) -> Option<String> {
        if !S::MUTATES_MESSAGES {
            return None;
        }
        match self {
            NodeWith::Replica(r) => r.mutate_message(msg, rng),
            NodeWith::Client(_) => None,
        }
    }

    fn waiting_for(&self) -> Option<String> {
        match self {
            NodeWith::Replica(r) => r.waiting_for(),
            NodeWith::Client(c) => c.waiting_for(),
        }
    }

    fn byzantine_behaviors() -> &'static [&'static str] {
        S::BYZANTINE_BEHAVIORS
    }

    fn can_turn_byzantine(&self, behavior: &str) -> Result<(), String> {
        match self {
            NodeWith::Replica(_) => Ok(()),
            NodeWith::Client(_) => Err(format!(
                "that node is a HotStuff client and cannot be Byzantine (`{behavior}`): only replicas 0..n can"
            )),
        }
    }

    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        match self {
            NodeWith::Replica(r) => r.set_byzantine(behavior),
            NodeWith::Client(_) => Err(format!(
                "HotStuff clients cannot be Byzantine (`{behavior}`): only replicas 0..n can"
            )),
        }
    }
}

// ---- Run summaries ----------------------------------------------------------------------

/// Client-side figures of a run: completed requests, throughput, simulated latencies.
pub type Summary = crate::pbft::Summary;

/// The figures of a HotStuff run, from the actors it left.
pub fn summary<S: TestSeam>(actors: &[NodeWith<S>]) -> Summary {
    Summary::of_completions(
        actors
            .iter()
            .filter_map(NodeWith::as_client)
            .flat_map(|c| c.completions().iter()),
    )
}
