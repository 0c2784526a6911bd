//! HotStuff's invariants, checked over the outputs of a run.
//!
//! "Correct replica" means a replica that has not announced itself Byzantine
//! ([`Output::Byzantine`]): checks ignore what faulty replicas report. Crashed replicas
//! are not faulty in this sense.
//!
//! - [`Agreement`]: the committed chains of correct replicas are prefixes of one another:
//!   no two of them commit different blocks at one height.
//! - [`Validity`], [`Integrity`], [`ClientConsistency`], [`Termination`]: the checks every
//!   replicated state machine shares ([`crate::replicated`]), with the block height as the
//!   position of an execution.
//! - [`InOrderExecution`]: a correct replica commits its chain one height at a time, each
//!   block the child of the one before (except where it restarts from saved state).
//! - [`LockMonotonic`]: a correct replica's locked view never decreases.
//! - [`VotesIncrease`]: a correct replica votes for strictly increasing views (never
//!   twice in one view).
//! - [`TimeoutQuorum`]: a correct replica moves on by a timeout certificate only when it
//!   holds 2f+1 distinct replicas' timeouts, and every correct replica it names did give
//!   up on that view: the pacemaker's guarantee that the certificate's highest QC is as
//!   high as any correct replica's lock rests on that quorum.

use super::{Config, Execution, Node, Output, View};
use crate::crypto::Digest;
use crate::hotstuff::messages::genesis_hash;
use crate::replicated::{self, Group, ReplicatedOutput, Roles};
use rehearsal_sim_core::{Invariant, NodeId, Time};
use std::collections::btree_map::Entry;
use std::collections::BTreeMap;

pub type Validity = replicated::Validity<Node>;
pub type Integrity = replicated::Integrity<Node>;
pub type ClientConsistency = replicated::ClientConsistency<Node>;
pub type Termination = replicated::Termination<Node>;

impl From<&Config> for Group {
    fn from(config: &Config) -> Group {
        Group {
            replicas: config.replicas(),
            clients: config.clients,
            requests_per_client: config.requests_per_client,
            keys: config.keys,
            termination_bound: config.termination_bound,
        }
    }
}

impl ReplicatedOutput for Output {
    const POSITION: &'static str = "height";

    replicated::client_outputs!();

    fn executed(&self) -> Option<(u64, &[Execution])> {
        match self {
            Output::Executed {
                height, requests, ..
            } => Some((*height, requests)),
            _ => None,
        }
    }

    fn state_loaded(&self) -> Option<(u64, &[(NodeId, u64)])> {
        match self {
            Output::StateLoaded {
                height, executed, ..
            } => Some((*height, executed)),
            _ => None,
        }
    }

    fn is_byzantine(&self) -> bool {
        matches!(self, Output::Byzantine { .. })
    }
}

/// Every check of a run, boxed: see [`replicated::Check`].
pub type Check = replicated::Check<Node>;

/// The safety checks and the per-replica checks the paper's proof rests on.
pub fn safety_checks(config: &Config) -> Vec<Check> {
    vec![
        Check::new(Agreement::new(config)),
        Check::new(Validity::new(config)),
        Check::new(Integrity::new(config)),
        Check::new(InOrderExecution::new(config)),
        Check::new(ClientConsistency::new(config)),
        Check::new(LockMonotonic::new(config)),
        Check::new(VotesIncrease::new(config)),
        Check::new(TimeoutQuorum::new(config)),
    ]
}

/// Every check of a run without faults.
pub fn checks(config: &Config) -> Vec<Check> {
    checks_after(config, Time::ZERO)
}

/// Every check of a run whose faults are over at `healed`: termination counts from then.
pub fn checks_after(config: &Config, healed: Time) -> Vec<Check> {
    let mut all = safety_checks(config);
    all.push(Check::new(
        Termination::new(config)
            .after(healed)
            .within(config.termination_bound),
    ));
    all
}

/// No two correct replicas commit different blocks at one height.
pub struct Agreement {
    roles: Roles,
    /// Height -> (block, the first replica that committed it).
    committed: BTreeMap<u64, (Digest, NodeId)>,
}

impl Agreement {
    pub fn new(config: &Config) -> Agreement {
        Agreement {
            roles: Roles::new(&Group::from(config)),
            committed: BTreeMap::new(),
        }
    }
}

impl Invariant<Node> for Agreement {
    fn name(&self) -> &str {
        "agreement"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        let (height, block) = match output {
            Output::Executed { height, block, .. } => (*height, *block),
            Output::StateLoaded { height, block, .. } => (*height, *block),
            _ => return Ok(()),
        };
        match self.committed.entry(height) {
            Entry::Vacant(e) => {
                e.insert((block, node));
                Ok(())
            }
            Entry::Occupied(e) if e.get().0 == block => Ok(()),
            Entry::Occupied(e) => Err(format!(
                "{node} committed block {block} at height {height}, but {} committed block {} there",
                e.get().1,
                e.get().0
            )),
        }
    }
}

/// A correct replica commits one height at a time, each block the child of the last.
pub struct InOrderExecution {
    roles: Roles,
    /// Replica -> (height, block) of its last committed block.
    last: BTreeMap<NodeId, (u64, Digest)>,
}

impl InOrderExecution {
    pub fn new(config: &Config) -> InOrderExecution {
        InOrderExecution {
            roles: Roles::new(&Group::from(config)),
            last: BTreeMap::new(),
        }
    }
}

impl Invariant<Node> for InOrderExecution {
    fn name(&self) -> &str {
        "in-order"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        match output {
            Output::StateLoaded { height, block, .. } => {
                self.last.insert(node, (*height, *block));
                Ok(())
            }
            Output::Executed {
                height,
                block,
                parent,
                ..
            } => {
                let (last_height, last_block) =
                    self.last.get(&node).copied().unwrap_or((0, genesis_hash()));
                self.last.insert(node, (*height, *block));
                if *height != last_height + 1 {
                    return Err(format!(
                        "{node} committed height {height} after height {last_height}"
                    ));
                }
                if *parent != last_block {
                    return Err(format!(
                        "{node} committed block {block} at height {height}, whose parent {parent} is not the block {last_block} it committed at height {last_height}"
                    ));
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// A correct replica's locked view never decreases.
pub struct LockMonotonic {
    roles: Roles,
    locked: BTreeMap<NodeId, View>,
}

impl LockMonotonic {
    pub fn new(config: &Config) -> LockMonotonic {
        LockMonotonic {
            roles: Roles::new(&Group::from(config)),
            locked: BTreeMap::new(),
        }
    }
}

impl Invariant<Node> for LockMonotonic {
    fn name(&self) -> &str {
        "lock-monotonic"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        let Output::Locked { view, .. } = output else {
            return Ok(());
        };
        let before = self.locked.insert(node, *view).unwrap_or(0);
        if *view < before {
            return Err(format!(
                "{node} locked on view {view} after view {before}"
            ));
        }
        Ok(())
    }
}

/// A correct replica votes for strictly increasing views.
pub struct VotesIncrease {
    roles: Roles,
    voted: BTreeMap<NodeId, (View, Digest)>,
}

impl VotesIncrease {
    pub fn new(config: &Config) -> VotesIncrease {
        VotesIncrease {
            roles: Roles::new(&Group::from(config)),
            voted: BTreeMap::new(),
        }
    }
}

impl Invariant<Node> for VotesIncrease {
    fn name(&self) -> &str {
        "votes-increase"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        let Output::Voted { view, block } = output else {
            return Ok(());
        };
        match self.voted.insert(node, (*view, *block)) {
            Some((before, other)) if *view <= before => Err(format!(
                "{node} voted for {block} in view {view} after voting for {other} in view {before}"
            )),
            _ => Ok(()),
        }
    }
}

/// A timeout certificate holds 2f+1 distinct replicas' timeouts, and every correct replica
/// it names gave up on its view.
pub struct TimeoutQuorum {
    roles: Roles,
    quorum: usize,
    /// View -> the correct replicas that gave up on it.
    timed_out: BTreeMap<View, Vec<NodeId>>,
    /// Replicas that turned Byzantine (their timeouts need no output).
    byzantine: Vec<NodeId>,
}

impl TimeoutQuorum {
    pub fn new(config: &Config) -> TimeoutQuorum {
        TimeoutQuorum {
            roles: Roles::new(&Group::from(config)),
            quorum: config.quorum(),
            timed_out: BTreeMap::new(),
            byzantine: Vec::new(),
        }
    }
}

impl Invariant<Node> for TimeoutQuorum {
    fn name(&self) -> &str {
        "timeout-quorum"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if !self.roles.correct_replica(node, output) {
            if output.is_byzantine() {
                self.byzantine.push(node);
            }
            return Ok(());
        }
        match output {
            Output::TimedOut { view } => {
                self.timed_out.entry(*view).or_default().push(node);
                Ok(())
            }
            Output::TimeoutCertified { view, signers } => {
                let mut distinct = signers.clone();
                distinct.sort_unstable();
                distinct.dedup();
                if distinct.len() < self.quorum {
                    return Err(format!(
                        "{node} moved on from view {view} on a timeout certificate of {} timeouts ({}), fewer than 2f+1 = {}",
                        distinct.len(),
                        distinct.iter().map(|s| format!("n{s}")).collect::<Vec<_>>().join(", "),
                        self.quorum
                    ));
                }
                let gave_up = self.timed_out.get(view);
                let silent: Vec<String> = distinct
                    .iter()
                    .map(|&s| NodeId(s))
                    .filter(|s| !self.byzantine.contains(s))
                    .filter(|s| !gave_up.is_some_and(|g| g.contains(s)))
                    .map(|s| s.to_string())
                    .collect();
                if silent.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{node} moved on from view {view} on a timeout certificate naming {}, which never gave up on that view",
                        silent.join(", ")
                    ))
                }
            }
            _ => Ok(()),
        }
    }
}
