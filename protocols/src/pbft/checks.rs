//! PBFT's invariants, checked over the outputs of a run.
//!
//! "Correct replica" means a replica that has not announced itself Byzantine
//! ([`Output::Byzantine`], emitted by a replica before anything else once a
//! `Fault::Byzantine` switches it): safety checks ignore what faulty replicas report.
//! Crashed replicas are not faulty in this sense: what they output before crashing was
//! output by the protocol and must agree.
//!
//! - [`Agreement`]: no two correct replicas execute different batches at one sequence
//!   number, or reach different state digests at one checkpoint.
//! - [`Validity`]: every request a correct replica executes was sent by its client, with
//!   that operation.
//! - [`Integrity`]: no correct replica executes a request twice (or a client's requests
//!   out of order); a restart rolls a replica back to its checkpoint, and it counts from
//!   there.
//! - [`InOrderExecution`]: a correct replica executes sequence numbers one after another,
//!   except where it loads a checkpoint's state.
//! - [`ClientConsistency`]: a client completes its requests in order, and accepts only the
//!   result correct replicas computed; and those results are the ones a single sequential
//!   execution of the agreed batches gives (the check replays them on its own store).
//! - [`Termination`]: once faults heal (from `stable_from` on), every request completes
//!   within a bound; checked as requests complete and at the end of the run. Only
//!   meaningful when at most f replicas are faulty and the network heals.

use super::app::KvStore;
use super::messages::Seq;
use super::{Config, Execution, LoadReason, Node, Op, Output};
use crate::crypto::Digest;
use rehearsal_sim_core::{EndReason, Invariant, NodeId, RunEnd, Time};
use std::collections::btree_map::Entry as MapEntry;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Every check of a run, boxed, so a caller can add them in one loop:
/// `for check in pbft::checks(&config) { sim.add_invariant(check); }`.
pub struct Check(Box<dyn Invariant<Node>>);

impl Check {
    pub fn new(invariant: impl Invariant<Node> + 'static) -> Check {
        Check(Box::new(invariant))
    }
}

impl Invariant<Node> for Check {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn on_output(&mut self, node: NodeId, now: Time, output: &Output) -> Result<(), String> {
        self.0.on_output(node, now, output)
    }
    fn on_fault(&mut self, now: Time) {
        self.0.on_fault(now)
    }
    fn at_end(&mut self, end: &RunEnd<'_, Node>) -> Result<(), String> {
        self.0.at_end(end)
    }
}

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

/// Which nodes are replicas and which replicas turned Byzantine.
#[derive(Debug, Clone)]
struct Roles {
    n: u32,
    clients: u32,
    byzantine: BTreeSet<NodeId>,
}

impl Roles {
    fn new(config: &Config) -> Self {
        Roles {
            n: config.replicas(),
            clients: config.clients,
            byzantine: BTreeSet::new(),
        }
    }

    /// Whether `output` comes from a correct replica; records Byzantine announcements.
    fn correct_replica(&mut self, node: NodeId, output: &Output) -> bool {
        if let Output::Byzantine { .. } = output {
            self.byzantine.insert(node);
            return false;
        }
        node.0 < self.n && !self.byzantine.contains(&node)
    }

    fn client_index(&self, node: NodeId) -> Option<usize> {
        (node.0 >= self.n && node.0 - self.n < self.clients).then(|| (node.0 - self.n) as usize)
    }
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
            roles: Roles::new(config),
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

// ---- Validity ------------------------------------------------------------------------------

/// Every request a correct replica executes was sent by its client, with that operation.
pub struct Validity {
    roles: Roles,
    /// Per client index: the operation of each request it submitted (request k at k-1).
    submitted: Vec<Vec<Op>>,
}

impl Validity {
    pub fn new(config: &Config) -> Self {
        Validity {
            roles: Roles::new(config),
            submitted: vec![Vec::new(); config.clients as usize],
        }
    }
}

impl Invariant<Node> for Validity {
    fn name(&self) -> &str {
        "validity"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if let Output::Submitted { number, op } = *output {
            let Some(ci) = self.roles.client_index(node) else {
                return Err(format!("{node} submitted a request but is no client"));
            };
            let sent = &mut self.submitted[ci];
            return match number {
                k if k == sent.len() as u64 + 1 => {
                    sent.push(op);
                    Ok(())
                }
                k if k >= 1 && k <= sent.len() as u64 && sent[k as usize - 1] == op => Ok(()),
                k => Err(format!(
                    "{node} submitted request {k} ({op:?}) after {} requests",
                    sent.len()
                )),
            };
        }
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        if let Output::Executed { seq, requests, .. } = output {
            for e in requests {
                let sent = self
                    .roles
                    .client_index(e.client)
                    .and_then(|ci| self.submitted[ci].get((e.number as usize).wrapping_sub(1)));
                if sent != Some(&e.op) {
                    return Err(format!(
                        "{node} executed request {} of {} ({:?}) at sequence {seq}, which that client never sent",
                        e.number, e.client, e.op
                    ));
                }
            }
        }
        Ok(())
    }
}

// ---- Integrity -----------------------------------------------------------------------------

/// No correct replica executes a request twice, or a client's requests out of order.
pub struct Integrity {
    roles: Roles,
    /// Per (replica, client): the latest request executed.
    last: BTreeMap<(NodeId, NodeId), u64>,
}

impl Integrity {
    pub fn new(config: &Config) -> Self {
        Integrity {
            roles: Roles::new(config),
            last: BTreeMap::new(),
        }
    }
}

impl Invariant<Node> for Integrity {
    fn name(&self) -> &str {
        "integrity"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        match output {
            Output::Executed { seq, requests, .. } => {
                for e in requests {
                    let last = self.last.entry((node, e.client)).or_insert(0);
                    if e.number <= *last {
                        return Err(format!(
                            "{node} executed request {} of {} at sequence {seq} after executing its request {}",
                            e.number, e.client, *last
                        ));
                    }
                    *last = e.number;
                }
            }
            Output::StateLoaded { executed, .. } => {
                // The replica's state is now the checkpoint's: count from its reply cache.
                self.last = std::mem::take(&mut self.last)
                    .into_iter()
                    .filter(|((r, _), _)| *r != node)
                    .collect();
                for &(client, number) in executed {
                    self.last.insert((node, client), number);
                }
            }
            _ => {}
        }
        Ok(())
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
            roles: Roles::new(config),
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

// ---- Client-side consistency -----------------------------------------------------------------

/// Clients accept only results correct replicas computed, in request order, and those
/// results are the ones one sequential execution of the agreed batches gives.
pub struct ClientConsistency {
    roles: Roles,
    /// (client, request) -> (result, sequence, replica) as first reported by a correct replica.
    results: BTreeMap<(NodeId, u64), (u64, Seq, NodeId)>,
    completed: BTreeMap<NodeId, u64>,
    /// The reference execution: batches in sequence order on a store of its own.
    reference: KvStore,
    replayed: Seq,
    agreed: BTreeMap<Seq, Vec<Execution>>,
}

impl ClientConsistency {
    pub fn new(config: &Config) -> Self {
        ClientConsistency {
            roles: Roles::new(config),
            results: BTreeMap::new(),
            completed: BTreeMap::new(),
            reference: KvStore::new(config.keys),
            replayed: 0,
            agreed: BTreeMap::new(),
        }
    }

    fn replay(&mut self) -> Result<(), String> {
        while let Some(batch) = self.agreed.remove(&(self.replayed + 1)) {
            self.replayed += 1;
            for e in batch {
                let expected = self.reference.apply(&e.op);
                if expected != e.result {
                    return Err(format!(
                        "request {} of {} at sequence {} gave {}, but executing the agreed batches in order gives {expected}",
                        e.number, e.client, self.replayed, e.result
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Invariant<Node> for ClientConsistency {
    fn name(&self) -> &str {
        "client-consistency"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if let Output::Completed { number, result, .. } = *output {
            let done = self.completed.entry(node).or_insert(0);
            if number != *done + 1 {
                return Err(format!(
                    "{node} completed request {number} after request {done}"
                ));
            }
            *done = number;
            return match self.results.get(&(node, number)) {
                None => Err(format!(
                    "{node} accepted result {result} for request {number}, which no correct replica executed"
                )),
                Some(&(r, seq, by)) if r != result => Err(format!(
                    "{node} accepted result {result} for request {number}, but correct replica {by} computed {r} at sequence {seq}"
                )),
                Some(_) => Ok(()),
            };
        }
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        if let Output::Executed { seq, requests, .. } = output {
            for e in requests {
                match self.results.entry((e.client, e.number)) {
                    MapEntry::Vacant(v) => {
                        v.insert((e.result, *seq, node));
                    }
                    MapEntry::Occupied(o) if o.get().0 != e.result => {
                        let (r, s, by) = *o.get();
                        return Err(format!(
                            "{node} computed {} for request {} of {} at sequence {seq}, but {by} computed {r} at sequence {s}",
                            e.result, e.number, e.client
                        ));
                    }
                    MapEntry::Occupied(_) => {}
                }
            }
            if *seq > self.replayed {
                self.agreed.entry(*seq).or_insert_with(|| requests.clone());
                self.replay()?;
            }
        }
        Ok(())
    }
}

// ---- Termination -----------------------------------------------------------------------------

/// Once faults heal (at `stable_from`), every request completes within `bound`: checked
/// when each request completes, and at the end for those still outstanding (a run that
/// stops before a request's bound has passed does not count against it, unless it went
/// quiet).
pub struct Termination {
    roles: Roles,
    requests_per_client: u64,
    stable_from: Time,
    bound: Duration,
    /// Per client: the request in flight and when it was first sent.
    outstanding: BTreeMap<NodeId, (u64, Time)>,
    completed: BTreeMap<NodeId, u64>,
}

impl Termination {
    /// Requests must complete within [`Config::termination_bound`] from time 0 on.
    pub fn new(config: &Config) -> Self {
        Termination {
            roles: Roles::new(config),
            requests_per_client: config.requests_per_client,
            stable_from: Time::ZERO,
            bound: config.termination_bound,
            outstanding: BTreeMap::new(),
            completed: BTreeMap::new(),
        }
    }

    /// Faults last until `healed`: the bound runs from then for requests sent before.
    pub fn after(mut self, healed: Time) -> Self {
        self.stable_from = healed;
        self
    }

    /// Replaces the bound.
    pub fn within(mut self, bound: Duration) -> Self {
        self.bound = bound;
        self
    }

    fn due(&self, submitted: Time) -> Time {
        submitted.max(self.stable_from).after(self.bound)
    }
}

impl Invariant<Node> for Termination {
    fn name(&self) -> &str {
        "termination"
    }

    fn on_fault(&mut self, now: Time) {
        // The bound runs from the last fault, whether a scenario's or one a shrinker
        // imposed on a message: a request the faults held up is owed nothing before then.
        self.stable_from = self.stable_from.max(now);
    }

    fn on_output(&mut self, node: NodeId, now: Time, output: &Output) -> Result<(), String> {
        match *output {
            Output::Submitted { number, .. } => {
                self.outstanding.insert(node, (number, now));
            }
            Output::Completed {
                number,
                submitted_at,
                completed_at,
                ..
            } => {
                self.outstanding.remove(&node);
                *self.completed.entry(node).or_insert(0) += 1;
                if completed_at > self.due(submitted_at) {
                    return Err(format!(
                        "{node}'s request {number} took {:?}, more than the bound of {:?} after faults healed at {}",
                        completed_at.saturating_sub(submitted_at.max(self.stable_from)),
                        self.bound,
                        self.stable_from
                    ));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn at_end(&mut self, end: &RunEnd<'_, Node>) -> Result<(), String> {
        let mut late = Vec::new();
        for i in 0..self.roles.clients {
            let client = NodeId(self.roles.n + i);
            let done = self.completed.get(&client).copied().unwrap_or(0);
            if done >= self.requests_per_client {
                continue;
            }
            let overdue = match self.outstanding.get(&client) {
                Some(&(_, submitted)) => end.now >= self.due(submitted),
                None => true,
            };
            if overdue || end.reason == EndReason::Quiescent {
                late.push(format!(
                    "{client} completed {done} of {} requests",
                    self.requests_per_client
                ));
            }
        }
        if late.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "requests did not complete within {:?} after faults healed at {}: {}",
                self.bound,
                self.stable_from,
                late.join(", ")
            ))
        }
    }
}
