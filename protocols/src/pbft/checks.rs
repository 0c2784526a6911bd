//! PBFT's invariants, checked over the outputs of a run.
//!
//! "Correct replica" means a replica that has not announced itself Byzantine
//! ([`Output::Byzantine`], emitted by a replica before anything else once a
//! `Fault::Byzantine` switches it): safety checks ignore what faulty replicas report.
//! Crashed replicas are not faulty in this sense: what they output before crashing was
//! output by the protocol and must agree.
//!
//! PBFT's own order:
//!
//! - [`Agreement`]: no two correct replicas execute different batches at one sequence
//!   number, or reach different state digests at one checkpoint.
//! - [`InOrderExecution`]: a correct replica executes sequence numbers one after another,
//!   except where it loads a checkpoint's state.
//!
//! The checks every replicated state machine shares, from [`crate::replicated`] (PBFT's
//! [`Output`] implements [`ReplicatedOutput`]; a position of the order is a sequence
//! number, and a restart or state transfer loads a checkpoint's state):
//!
//! - [`Validity`]: every request a correct replica executes was sent by its client, with
//!   that operation.
//! - [`Integrity`]: no correct replica executes a request twice (or a client's requests
//!   out of order); a restart rolls a replica back to its checkpoint, and it counts from
//!   there.
//! - [`ClientConsistency`]: a client completes its requests in order, and accepts only the
//!   result correct replicas computed; and those results are the ones a single sequential
//!   execution of the agreed batches gives (the check replays them on its own store).
//! - [`Termination`]: once faults heal (from `stable_from` on), every request completes
//!   within a bound; checked as requests complete and at the end of the run. Only
//!   meaningful when at most f replicas are faulty and the network heals.

use super::messages::Seq;
use super::{Config, Execution, LoadReason, Node, Output};
use crate::crypto::Digest;
use crate::replicated::{self, Group, ReplicatedOutput, Roles};
use rehearsal_sim_core::{Invariant, NodeId, Time};
use std::collections::btree_map::Entry as MapEntry;
use std::collections::BTreeMap;

/// Every request a correct replica executes was sent by its client, with that operation:
/// [`replicated::Validity`] watching PBFT's [`Node`].
pub type Validity = replicated::Validity<Node>;

/// No correct replica executes a request twice, or a client's requests out of order:
/// [`replicated::Integrity`] watching PBFT's [`Node`].
pub type Integrity = replicated::Integrity<Node>;

/// Clients accept only results correct replicas computed, in request order, and those
/// results are the ones one sequential execution of the agreed batches gives:
/// [`replicated::ClientConsistency`] watching PBFT's [`Node`].
pub type ClientConsistency = replicated::ClientConsistency<Node>;

/// Once faults heal, every request completes within [`Config::termination_bound`]:
/// [`replicated::Termination`] watching PBFT's [`Node`].
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
    const POSITION: &'static str = "sequence";

    replicated::client_outputs!();

    fn executed(&self) -> Option<(Seq, &[Execution])> {
        match self {
            Output::Executed { seq, requests, .. } => Some((*seq, requests)),
            _ => None,
        }
    }

    fn state_loaded(&self) -> Option<(Seq, &[(NodeId, u64)])> {
        match self {
            Output::StateLoaded { seq, executed, .. } => Some((*seq, executed)),
            _ => None,
        }
    }

    fn is_byzantine(&self) -> bool {
        matches!(self, Output::Byzantine { .. })
    }
}

/// Every check of a run, boxed: see [`replicated::Check`].
pub type Check = replicated::Check<Node>;

/// The safety checks: agreement, validity, integrity, in-order execution and
/// client-side consistency.
pub fn safety_checks(config: &Config) -> Vec<Check> {
    vec![
        Check::new(Agreement::new(config)),
        Check::new(Validity::new(config)),
        Check::new(Integrity::new(config)),
        Check::new(InOrderExecution::new(config)),
        Check::new(ClientConsistency::new(config)),
    ]
}

/// The safety checks and termination (every request completes within
/// [`Config::termination_bound`] of its submission). For runs with faults that heal, use
/// [`safety_checks`] and add [`Termination::new`]`(config).after(heal_time)`.
pub fn checks(config: &Config) -> Vec<Check> {
    let mut all = safety_checks(config);
    all.push(Check::new(Termination::new(config)));
    all
}

// ---- Agreement -----------------------------------------------------------------------------

/// No two correct replicas execute different batches at one sequence number, nor reach
/// different states at one checkpoint.
pub struct Agreement {
    roles: Roles,
    executed: BTreeMap<Seq, (Digest, NodeId)>,
    checkpoints: BTreeMap<Seq, (Digest, NodeId)>,
}

impl Agreement {
    pub fn new(config: &Config) -> Self {
        Agreement {
            roles: Roles::new(&Group::from(config)),
            executed: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
        }
    }
}

fn agree(
    map: &mut BTreeMap<Seq, (Digest, NodeId)>,
    seq: Seq,
    digest: Digest,
    node: NodeId,
    what: &str,
) -> Result<(), String> {
    match map.entry(seq) {
        MapEntry::Vacant(v) => {
            v.insert((digest, node));
            Ok(())
        }
        MapEntry::Occupied(o) if o.get().0 == digest => Ok(()),
        MapEntry::Occupied(o) => Err(format!(
            "{} {what} {} at sequence {seq}, but {node} {what} {digest}",
            o.get().1,
            o.get().0
        )),
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
        match output {
            Output::Executed { seq, digest, .. } => {
                agree(&mut self.executed, *seq, *digest, node, "executed batch")
            }
            Output::Checkpointed { seq, digest } | Output::StateLoaded { seq, digest, .. } => {
                agree(&mut self.checkpoints, *seq, *digest, node, "has state")
            }
            _ => Ok(()),
        }
    }
}

// ---- In-order execution --------------------------------------------------------------------

/// A correct replica executes sequence numbers one after another (or loads a checkpoint).
pub struct InOrderExecution {
    roles: Roles,
    last: BTreeMap<NodeId, Seq>,
}

impl InOrderExecution {
    pub fn new(config: &Config) -> Self {
        InOrderExecution {
            roles: Roles::new(&Group::from(config)),
            last: BTreeMap::new(),
        }
    }
}

impl Invariant<Node> for InOrderExecution {
    fn name(&self) -> &str {
        "in-order-execution"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        let last = self.last.entry(node).or_insert(0);
        match *output {
            Output::Executed { seq, .. } => {
                if seq != *last + 1 {
                    return Err(format!(
                        "{node} executed sequence {seq} right after sequence {}",
                        *last
                    ));
                }
                *last = seq;
            }
            Output::StateLoaded { seq, reason, .. } => {
                if reason == LoadReason::Transfer && seq <= *last {
                    return Err(format!(
                        "{node} transferred state back to checkpoint {seq} after executing {}",
                        *last
                    ));
                }
                *last = seq;
            }
            _ => {}
        }
        Ok(())
    }
}

