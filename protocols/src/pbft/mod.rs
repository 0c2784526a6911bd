//! PBFT, Practical Byzantine Fault Tolerance (Castro and Liskov, OSDI '99 and TOCS '02),
//! as Rehearsal actors: n = 3f+1 replicas order client requests so that every correct
//! replica executes the same sequence, despite up to f Byzantine replicas.
//!
//! Replicas are nodes `0..n`, clients nodes `n..n+clients`. The protocol, top-down:
//!
//! - **Normal case** ([`replica`]): a client sends its signed request to the primary of
//!   the current view (`view mod n`). The primary batches requests and assigns each batch
//!   a sequence number in a signed *pre-prepare*; backups accept it if it is in their
//!   view, within the watermarks, signed by the primary, and its digest binds the batch,
//!   then multicast a *prepare*. With the pre-prepare and 2f matching prepares a replica
//!   has *prepared* and multicasts a *commit*; with 2f+1 matching commits it has
//!   *committed*, and executes batches in sequence order, replying to each client. A
//!   client accepts a result once f+1 replicas reply with it.
//! - **Batching**: at most [`Config::batch_max`] requests per batch; with batching on, the
//!   primary keeps [`Config::batches_in_flight_max`] batches in flight and batches
//!   whatever queued meanwhile (adaptive batching).
//! - **Checkpoints** ([`replica`]): every K sequence numbers replicas multicast a digest of
//!   their state; 2f+1 matching ones make it *stable*, which moves the low watermark h,
//!   discards the log up to it, and bounds the sequence numbers accepted to (h, h+L].
//! - **View change** ([`view_change`]): a replica that knows of a client request (the
//!   client sent it to every replica, so it suspects the primary) and sees nothing
//!   execute for [`Config::view_change_timeout`] asks for view v+1 with its stable
//!   checkpoint and its prepared certificates; f+1 such requests pull the others along.
//!   The new primary collects 2f+1 and announces a *new view* whose pre-prepares
//!   re-propose every prepared batch and fill gaps with null batches. The timeout doubles
//!   with each view change that brings no progress.
//! - **Catch-up** ([`catch_up`]): a replica that fell behind (a partition, lost messages,
//!   a restart) fetches commit certificates, the current new-view message, or, past the
//!   others' stable checkpoint, the checkpointed state itself.
//! - **Clients** ([`client`]): closed-loop, one request outstanding; after a timeout a
//!   client retransmits to every replica, which forward it to the primary and start
//!   suspecting it. The timeout doubles with each retry, up to 8 times its first value.
//! - **Retransmission**: a replica whose execution stalls re-sends, every
//!   [`Config::tick`], its own messages for the sequence numbers it waits on and its
//!   checkpoints that are not stable yet, so lost messages cost time, not liveness.
//! - **Crash and restart** ([`restart`]): replicas save their view and stable checkpoint
//!   with `Context::persist`, and restart from them.
//!
//! Every message is checked on arrival (sender, view, watermarks, digest binding,
//! signatures); an invalid one is dropped and annotated in the trace, never a panic, so
//! corrupted messages that still decode are harmless. Authentication goes through
//! [`crate::crypto::Crypto`]: real Ed25519 or a fast simulated scheme.
//!
//! [`checks()`] lists the invariants a run must satisfy (see the [`mod@checks`] module):
//! agreement, validity, integrity, in-order execution, client-side consistency and
//! termination after healing. For the testbed's own tests, [`Mutant`] selects
//! deliberately broken variants that those invariants must catch, and
//! [`Actor::byzantine_behaviors`] offers `equivocate`, `silent` and `mutate` replicas.
//! Both enter through one seam ([`TestSeam`]): the simulator's [`Node`] has them, the
//! [`ProductionNode`] that runs over real transports is the correct protocol alone.
//!
//! ```
//! use rehearsal_protocols::pbft;
//! use rehearsal_sim_core::{Outcome, SimConfig, SimpleNetwork, Simulation};
//!
//! let config = pbft::Config { clients: 2, requests_per_client: 20, ..pbft::Config::default() };
//! let actors = pbft::actors(&config).unwrap();
//! let mut sim = Simulation::new(SimConfig::new(1), actors, SimpleNetwork::default());
//! for check in pbft::checks(&config) {
//!     sim.add_invariant(check);
//! }
//! let report = sim.run();
//! assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
//! assert_eq!(pbft::Summary::of(&report.actors).completed, 40);
//! ```

pub mod app;
pub mod byzantine;
pub mod catch_up;
pub mod checks;
pub mod client;
pub mod log;
pub mod messages;
pub mod mutation;
mod protocol;
pub mod replica;
#[cfg(test)]
mod replica_assertions;
pub mod seam;
pub mod view_change;
pub use protocol::{Params, Pbft, LATENCY_MAX_REAL};

pub use crate::crypto::CryptoKind;
pub use byzantine::Behavior;
pub use checks::{
    checks, safety_checks, Agreement, Check, ClientConsistency, InOrderExecution, Integrity,
    Termination, Validity,
};
pub use client::{Client, Completion};
pub use messages::{Msg, Op, Seq, View};
pub use replica::Replica;
pub use seam::{Correct, TestSeam, Testing};

use crate::crypto::{Crypto, Digest, Verifier};
use crate::replicated::check_saved_state;
use rehearsal_sim_core::protocol::KeySource;
use rehearsal_sim_core::{Actor, Context, NodeId, Time};
use std::sync::Arc;
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::Duration;

// ---- Configuration ----------------------------------------------------------------------

/// A deliberately broken PBFT, for the testbed's own tests only: each must be caught by
/// an invariant under some fault setting (see `protocols/tests/pbft_mutants.rs`). Never
/// use one for anything but checking that Rehearsal finds the bug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mutant {
    /// The correct protocol.
    #[default]
    None,
    /// Backups do not check that a pre-prepare's digest is the digest of its batch.
    NoDigestCheck,
    /// Replicas execute as soon as a batch is prepared, skipping the commit phase.
    NoCommit,
    /// A batch commits with 2f matching commits instead of 2f+1.
    SmallCommitQuorum,
    /// View-change messages carry no prepared certificates, so the new primary forgets
    /// what may have committed.
    ForgetPrepared,
    /// Sequence numbers are not checked against the low and high watermarks.
    NoWatermarks,
}

impl Mutant {
    /// Every mutant, the correct protocol first.
    pub const ALL: [Mutant; 6] = [
        Mutant::None,
        Mutant::NoDigestCheck,
        Mutant::NoCommit,
        Mutant::SmallCommitQuorum,
        Mutant::ForgetPrepared,
        Mutant::NoWatermarks,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::None => "none",
            Mutant::NoDigestCheck => "no-digest-check",
            Mutant::NoCommit => "no-commit",
            Mutant::SmallCommitQuorum => "small-commit-quorum",
            Mutant::ForgetPrepared => "forget-prepared",
            Mutant::NoWatermarks => "no-watermarks",
        }
    }

    /// The names [`FromStr`] accepts, for help texts.
    pub fn names() -> Vec<&'static str> {
        Mutant::ALL.iter().map(|m| m.name()).collect()
    }
}

crate::named::display_by_name!(Mutant);

impl FromStr for Mutant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::named::parse_named(s, "PBFT mutant", &Mutant::ALL, Mutant::name, None)
    }
}

/// One PBFT deployment: group size, workload, batching, checkpoints, timeouts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Faults tolerated; the group has n = 3f+1 replicas.
    pub f: u32,
    pub clients: u32,
    /// Requests each client sends, one at a time (closed loop).
    pub requests_per_client: u64,
    /// Most requests in one batch; 1 turns batching off.
    pub batch_max: usize,
    /// Batches the primary keeps in flight (proposed, not yet executed by it) before
    /// queueing; requests queued meanwhile go into the next batch. 0 picks: the whole
    /// watermark window without batching, 1 with batching (adaptive batching).
    pub batches_in_flight_max: u64,
    /// K: a checkpoint every this many sequence numbers.
    pub checkpoint_interval: u64,
    /// L: sequence numbers accepted above the low watermark; a multiple of K.
    pub watermark_window: u64,
    pub crypto: CryptoKind,
    /// Seed of every node's signing key and of the clients' operations.
    pub key_seed: u64,
    /// Keys of the replicated key-value store.
    pub keys: u32,
    /// A client retransmits (to every replica) after this, doubling on every retry up to
    /// [`Config::client_retransmit_max`].
    pub client_retransmit: Duration,
    /// Replicas' housekeeping period: retransmission of stuck messages, catch-up, and
    /// view-change timers are checked this often while there is work outstanding.
    pub tick: Duration,
    /// A backup suspects the primary when a known request has not executed for this
    /// long; doubles with each consecutive view change that brings no progress.
    pub view_change_timeout: Duration,
    /// The termination check's bound: once faults have healed, every request must
    /// complete within this. On a lossy network, raise it to what the protocol's timers
    /// need with [`Config::termination_bound_under_loss`] (the `rehearsal` runner does).
    pub termination_bound: Duration,
    /// Test-only: a deliberately broken variant.
    pub mutant: Mutant,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            f: 1,
            clients: 1,
            requests_per_client: 100,
            batch_max: 1,
            batches_in_flight_max: 0,
            checkpoint_interval: 16,
            watermark_window: 64,
            crypto: CryptoKind::Sim,
            key_seed: 0,
            keys: 8,
            client_retransmit: Duration::from_millis(500),
            tick: Duration::from_millis(100),
            view_change_timeout: Duration::from_secs(1),
            termination_bound: Duration::from_secs(60),
            mutant: Mutant::None,
        }
    }
}

/// The termination check's accepted chance of failing a correct run by bad luck, per
/// request, on a lossy network: see [`Config::client_attempts_under_loss`].
pub const TERMINATION_FALSE_ALARM: f64 = 1e-9;

/// A bound on [`Config::client_attempts_under_loss`], for losses just below 1.
const ATTEMPTS_MAX: u32 = 10_000;

/// Largest group: certificate checks keep one bit per replica in a `u128`.
pub const REPLICAS_MAX: u32 = 127;

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("PBFT needs n = 3f+1 replicas, and {0} is not of that form (4, 7, 10, ...)")]
    NotThreeFPlusOne(u32),
    #[error("PBFT needs f >= 1 (4 replicas at least)")]
    NoFaultTolerance,
    #[error("PBFT supports at most {REPLICAS_MAX} replicas (f <= 42), got f = {0}")]
    TooManyReplicas(u32),
    #[error("PBFT needs at least one client")]
    NoClients,
    #[error("the batch size must be at least 1")]
    EmptyBatch,
    #[error("the checkpoint interval must be at least 1")]
    NoCheckpoints,
    #[error("the watermark window ({window}) must be a positive multiple of the checkpoint interval ({interval})")]
    BadWindow { window: u64, interval: u64 },
    #[error("the key-value store needs at least one key")]
    NoKeys,
    #[error("the {0} must be positive")]
    ZeroTimeout(&'static str),
    #[error("the production PBFT node runs the correct protocol only, not the `{0}` mutant: mutants run in the simulator")]
    MutantInProduction(Mutant),
    #[error("node {node} is not in a group of {nodes} nodes (replicas and clients)")]
    NoSuchNode { node: NodeId, nodes: u32 },
    #[error(transparent)]
    Keys(#[from] crate::crypto::KeyError),
}

impl Config {
    /// A default configuration for `replicas` = 3f+1 replicas.
    pub fn with_replicas(replicas: u32) -> Result<Config, ConfigError> {
        if replicas < 4 {
            return Err(if replicas == 1 {
                ConfigError::NoFaultTolerance
            } else {
                ConfigError::NotThreeFPlusOne(replicas)
            });
        }
        if (replicas - 1) % 3 != 0 {
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
            return Err(ConfigError::NoFaultTolerance);
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
        if self.checkpoint_interval == 0 {
            return Err(ConfigError::NoCheckpoints);
        }
        if self.watermark_window == 0 || self.watermark_window % self.checkpoint_interval != 0 {
            return Err(ConfigError::BadWindow {
                window: self.watermark_window,
                interval: self.checkpoint_interval,
            });
        }
        if self.keys == 0 {
            return Err(ConfigError::NoKeys);
        }
        for (name, d) in [
            ("client retransmission timeout", self.client_retransmit),
            ("replica tick", self.tick),
            ("view-change timeout", self.view_change_timeout),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroTimeout(name));
            }
        }
        Ok(())
    }

    /// Scales the timeouts to a network whose one-way latency reaches `latency_max`: the
    /// defaults suit latencies up to about 20 ms; slower networks need proportionally
    /// longer timers, or clients retransmit and replicas change views needlessly (safe,
    /// but slow). Never shortens a timeout below its default.
    ///
    /// ```
    /// use rehearsal_protocols::pbft::Config;
    /// use std::time::Duration;
    /// let wan = Config::default().timeouts_for_latency(Duration::from_millis(200));
    /// assert_eq!(wan.view_change_timeout, Duration::from_secs(10));
    /// ```
    pub fn timeouts_for_latency(mut self, latency_max: Duration) -> Config {
        let defaults = Config::default();
        self.tick = defaults.tick.max(latency_max * 5);
        self.client_retransmit = defaults.client_retransmit.max(latency_max * 25);
        self.view_change_timeout = defaults.view_change_timeout.max(latency_max * 50);
        self.termination_bound = defaults.termination_bound.max(latency_max * 3_000);
        self
    }

    /// The longest a client waits between two retransmissions of a request: its backoff
    /// stops doubling there.
    pub fn client_retransmit_max(&self) -> Duration {
        self.client_retransmit * (1 << client::BACKOFF_DOUBLINGS_MAX)
    }

    /// The longest view-change timeout: it stops doubling there.
    pub fn view_change_timeout_max(&self) -> Duration {
        self.view_change_timeout * (1 << replica::VIEW_CHANGE_DOUBLINGS_MAX)
    }

    /// How many retransmissions of one request a client may need on a network that loses
    /// each message with probability `loss`, before the chance that fewer than f+1 correct
    /// replicas have answered it falls below [`TERMINATION_FALSE_ALARM`]. Each attempt
    /// reaches a given replica and brings its reply back with probability (1-loss)²,
    /// independently, and a client keeps the replies of earlier attempts; the request
    /// lacks f+1 replies after k attempts only if some f+1 of the 2f+1 correct replicas
    /// all failed k times, which has probability at most C(2f+1, f+1)·(1-(1-loss)²)^(k(f+1)).
    /// `None` when no number of attempts does (loss 1).
    pub fn client_attempts_under_loss(&self, loss: f64) -> Option<u32> {
        let fail = 1.0 - (1.0 - loss.clamp(0.0, 1.0)).powi(2);
        if fail <= 0.0 {
            return Some(1);
        }
        if fail >= 1.0 {
            return None;
        }
        let f = u64::from(self.f);
        // ln C(2f+1, f+1), summed to stay finite for large f.
        let ln_choose: f64 = (1..=f + 1).map(|i| ((f + i) as f64 / i as f64).ln()).sum();
        let k = (TERMINATION_FALSE_ALARM.ln() - ln_choose) / ((f + 1) as f64 * fail.ln());
        Some((k.ceil().max(1.0) as u32).min(ATTEMPTS_MAX))
    }

    /// Raises [`Config::termination_bound`] to what the protocol's own timers need once
    /// faults have healed on a network that loses `loss` of its messages: f view changes
    /// at the longest view-change timeout (f faulty primaries in a row, each suspected
    /// only after the timeout its replicas have backed off to), then the client's
    /// attempts ([`Config::client_attempts_under_loss`]) at its longest retransmission gap.
    /// Never lowers the bound; leaves it alone when nothing can get through (loss 1).
    ///
    /// ```
    /// use rehearsal_protocols::pbft::Config;
    /// use std::time::Duration;
    /// let lossless = Config::default().termination_bound_under_loss(0.0);
    /// // One view change at 64 s, one attempt 4 s later.
    /// assert_eq!(lossless.termination_bound, Duration::from_secs(68));
    /// let lossy = Config::default().termination_bound_under_loss(0.3);
    /// assert_eq!(lossy.termination_bound, Duration::from_secs(64 + 17 * 4));
    /// ```
    pub fn termination_bound_under_loss(mut self, loss: f64) -> Config {
        if let Some(attempts) = self.client_attempts_under_loss(loss) {
            let needed =
                self.view_change_timeout_max() * self.f + self.client_retransmit_max() * attempts;
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

    /// The node id of client `i` (0-based).
    pub fn client_id(&self, i: u32) -> NodeId {
        NodeId(self.replicas() + i)
    }

    pub fn is_replica(&self, node: NodeId) -> bool {
        node.0 < self.replicas()
    }

    /// The primary's in-flight bound once 0 ("pick") is resolved.
    pub fn in_flight_max(&self) -> u64 {
        match (self.batches_in_flight_max, self.batch_max) {
            (0, 1) => self.watermark_window,
            (0, _) => 1,
            (k, _) => k,
        }
    }
}

// ---- Outputs and timers -----------------------------------------------------------------

/// One request a replica executed, and its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Execution {
    pub client: NodeId,
    pub number: u64,
    pub op: Op,
    pub result: u64,
}

/// Why a replica's state jumped instead of advancing one batch at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoadReason {
    /// State transfer of a stable checkpoint from other replicas.
    Transfer,
    /// Restart from the durable state saved at the last stable checkpoint.
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
    /// A replica executed the batch at `seq`: `digest` is the digest of the batch it
    /// actually executed; `requests` are those it executed (duplicates are skipped).
    Executed {
        seq: Seq,
        view: View,
        digest: Digest,
        requests: Vec<Execution>,
    },
    /// A replica's state digest after executing through `seq`, a multiple of K.
    Checkpointed { seq: Seq, digest: Digest },
    /// A replica's state became the checkpoint at `seq`; `executed` lists each client's
    /// latest executed request in that state.
    StateLoaded {
        seq: Seq,
        digest: Digest,
        reason: LoadReason,
        executed: Vec<(NodeId, u64)>,
    },
    /// A replica entered view `view`.
    ViewEntered { view: View },
    /// This replica turned Byzantine: checks exclude it from "correct replicas" from here on.
    Byzantine { behavior: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// A replica's housekeeping tick.
    Tick,
    /// A client's retransmission of request `number`.
    Retransmit { number: u64 },
}

// ---- The actors -------------------------------------------------------------------------

/// A PBFT node, a replica or a client, whose replica has the [`TestSeam`] `S`. Use
/// [`Node`] in the simulator and [`ProductionNode`] over real transports.
#[derive(Clone)]
pub enum NodeWith<S: TestSeam> {
    Replica(Box<Replica<S>>),
    Client(Box<Client>),
}

// The explorer copies a simulated node, and tells its states apart by their encoding
// (everything but what never changes in a run: ids, sizes, keys, the seam).
crate::replicated::explorable_by_encoding!(NodeWith<Testing>);

/// The simulator's PBFT node: mutants ([`Config::mutant`]) and Byzantine behaviours
/// ([`Actor::set_byzantine`]) are available through its [`Testing`] seam.
pub type Node = NodeWith<Testing>;

/// The production PBFT node: the correct protocol, with no mutant switch and no Byzantine
/// behaviour compiled in (its seam, [`Correct`], answers with constants). Build it with
/// [`production_node`].
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

    /// Node `id` of `config`'s group, holding `crypto` (that node's keys).
    fn new(config: &Config, id: NodeId, crypto: Crypto) -> Self {
        if config.is_replica(id) {
            NodeWith::Replica(Box::new(Replica::new(config, crypto)))
        } else {
            NodeWith::Client(Box::new(Client::new(config, crypto)))
        }
    }
}

/// The actors of one run: replicas `0..n`, then clients `n..n+clients`. Each is built
/// as [`node`] builds it, around one verifier they share.
pub fn actors(config: &Config) -> Result<Vec<Node>, ConfigError> {
    config.validate()?;
    let verifier = Crypto::testbed_verifier(config.crypto, config.key_seed, config.nodes());
    Ok((0..config.nodes())
        .map(|i| {
            let id = NodeId(i);
            let crypto = Crypto::testbed(config.crypto, config.key_seed, id, Arc::clone(&verifier));
            Node::new(config, id, crypto)
        })
        .collect())
}

/// Node `id` of `config`'s group in the simulator: its own key derived from the run's
/// seed, and everybody's public keys.
pub fn node(config: &Config, id: NodeId) -> Result<Node, ConfigError> {
    config.validate()?;
    let crypto = testbed_crypto(config, id, None)?;
    Ok(Node::new(config, id, crypto))
}

/// Node `id`'s keys derived from the seed, with `verifier` if one was derived already.
fn testbed_crypto(
    config: &Config,
    id: NodeId,
    verifier: Option<&Arc<Verifier>>,
) -> Result<Crypto, ConfigError> {
    if id.0 >= config.nodes() {
        return Err(ConfigError::NoSuchNode {
            node: id,
            nodes: config.nodes(),
        });
    }
    let verifier = match verifier {
        Some(verifier) => Arc::clone(verifier),
        None => Crypto::testbed_verifier(config.crypto, config.key_seed, config.nodes()),
    };
    Ok(Crypto::testbed(config.crypto, config.key_seed, id, verifier))
}

/// Node `id` of `config`'s group as the production node, for a real runtime: the correct
/// protocol only, so the configuration may not name a mutant. Its keys come from `keys`:
/// its own Ed25519 key and everybody's public keys from key files, or, in a testbed, from
/// the seed (the only source the simulated scheme, `crypto = "sim"`, has).
///
/// ```
/// use rehearsal_protocols::pbft::{self, Config};
/// use rehearsal_sim_core::protocol::KeySource;
/// use rehearsal_sim_core::NodeId;
///
/// let replica = pbft::production_node(&Config::default(), NodeId(0), KeySource::Testbed).unwrap();
/// assert!(replica.as_replica().is_some());
/// let broken = Config { mutant: pbft::Mutant::NoCommit, ..Config::default() };
/// assert!(pbft::production_node(&broken, NodeId(0), KeySource::Testbed).is_err());
/// ```
pub fn production_node(
    config: &Config,
    id: NodeId,
    keys: KeySource<'_>,
) -> Result<ProductionNode, ConfigError> {
    Ok(ProductionNode::new(config, id, production_crypto(config, id, keys)?))
}

/// Node `id`'s keys for a real deployment of `config`, which must be valid and correct.
fn production_crypto(config: &Config, id: NodeId, keys: KeySource<'_>) -> Result<Crypto, ConfigError> {
    config.validate()?;
    if config.mutant != Mutant::None {
        return Err(ConfigError::MutantInProduction(config.mutant));
    }
    Crypto::for_real_node(config.crypto, config.nodes(), id, keys, || {
        testbed_crypto(config, id, None)
    })
}

/// Node `id` for a real deployment, restarted from the durable state an earlier run of it
/// saved: as [`restart`] brings a node back in the simulator (a replica with its view and
/// stable checkpoint, catching up from the others; a client after its last completed
/// request). A state that does not decode as this node's is refused, not ignored: starting
/// from nothing would forget what the node promised before it stopped.
pub fn production_restart(
    config: &Config,
    id: NodeId,
    keys: KeySource<'_>,
    durable: &[u8],
) -> Result<ProductionNode, String> {
    let crypto = production_crypto(config, id, keys).map_err(|e| e.to_string())?;
    if config.is_replica(id) {
        check_saved_state("PBFT", "replica", durable, replica::durable_decodes(durable))?;
        Ok(NodeWith::Replica(Box::new(Replica::restore(config, crypto, Some(durable)))))
    } else {
        check_saved_state("PBFT", "client", durable, client::durable_decodes(durable))?;
        Ok(NodeWith::Client(Box::new(Client::restore(config, crypto, Some(durable)))))
    }
}


/// The restart constructor for [`Simulation::on_restart`](rehearsal_sim_core::Simulation::on_restart):
/// a replica comes back with the view and stable checkpoint it saved with
/// [`Context::persist`] and catches up from the others; a client resumes after its last
/// completed request. A restarted replica has lost the messages it sent since its last
/// checkpoint, so until it has caught up it counts as one of the f faulty replicas. Each
/// restarted node gets its own key back (derived from the seed), beside the public keys
/// derived at the first restart.
pub fn restart(config: &Config) -> impl FnMut(NodeId, Option<&[u8]>) -> Node + 'static {
    let config = config.clone();
    let mut verifier: Option<Arc<Verifier>> = None;
    move |id, durable| {
        let verifier = verifier.get_or_insert_with(|| {
            Crypto::testbed_verifier(config.crypto, config.key_seed, config.nodes())
        });
        let crypto = testbed_crypto(&config, id, Some(verifier))
            .expect("restart of a node outside the configuration");
        if config.is_replica(id) {
            NodeWith::Replica(Box::new(Replica::restore(&config, crypto, durable)))
        } else {
            NodeWith::Client(Box::new(Client::restore(&config, crypto, durable)))
        }
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
            (NodeWith::Replica(r), Timer::Tick) => r.on_tick(cx),
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
            NodeWith::Replica(r) => mutation::mutate_signed(msg, &r.crypto, r.p.n, r.p.clients, rng),
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
                "that node is a PBFT client and cannot be Byzantine (`{behavior}`): only replicas 0..n can"
            )),
        }
    }

    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        match self {
            NodeWith::Replica(r) => r.set_byzantine(behavior),
            NodeWith::Client(_) => Err(format!(
                "PBFT clients cannot be Byzantine (`{behavior}`): only replicas 0..n can"
            )),
        }
    }
}

// ---- Run summaries ------------------------------------------------------------------------

/// Client-side figures of a run, read from the actors it left: how many requests
/// completed, throughput and simulated latencies (virtual time, in nanoseconds).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub completed: u64,
    /// First submission to last completion.
    pub span_ns: u64,
    /// Completed requests per second of virtual time.
    pub throughput_per_s: f64,
    pub latency_ns_p50: u64,
    pub latency_ns_p90: u64,
    pub latency_ns_p99: u64,
    pub latency_ns_max: u64,
}

impl Summary {
    pub fn of<S: TestSeam>(actors: &[NodeWith<S>]) -> Summary {
        Summary::of_completions(
            actors
                .iter()
                .filter_map(NodeWith::as_client)
                .flat_map(|c| c.completions()),
        )
    }

    /// The figures of these completed requests (any protocol's closed-loop clients).
    pub fn of_completions<'a>(completions: impl Iterator<Item = &'a Completion>) -> Summary {
        let completions: Vec<&Completion> = completions.collect();
        let mut latencies: Vec<u64> = completions
            .iter()
            .map(|c| {
                c.completed_at
                    .as_nanos()
                    .saturating_sub(c.submitted_at.as_nanos())
            })
            .collect();
        latencies.sort_unstable();
        // Nearest-rank percentile.
        let pick = |q: f64| -> u64 {
            if latencies.is_empty() {
                return 0;
            }
            let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len());
            latencies[i - 1]
        };
        let first = completions.iter().map(|c| c.submitted_at).min();
        let last = completions.iter().map(|c| c.completed_at).max();
        let span_ns = match (first, last) {
            (Some(a), Some(b)) => b.as_nanos().saturating_sub(a.as_nanos()),
            _ => 0,
        };
        let completed = completions.len() as u64;
        Summary {
            completed,
            span_ns,
            throughput_per_s: if span_ns == 0 {
                0.0
            } else {
                completed as f64 * 1e9 / span_ns as f64
            },
            latency_ns_p50: pick(0.5),
            latency_ns_p90: pick(0.9),
            latency_ns_p99: pick(0.99),
            latency_ns_max: latencies.last().copied().unwrap_or(0),
        }
    }
}
