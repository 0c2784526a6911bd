//! Checks shared by every replicated-state-machine protocol: closed-loop clients send
//! requests, replicas order and execute them on [`KvStore`], and a client accepts a result
//! once enough replicas vouch for it.
//!
//! A protocol takes part by implementing [`ReplicatedOutput`] for its output type: the
//! trait says which outputs are a client submitting or completing a request, a replica
//! executing requests at a position of its order (PBFT's sequence number, HotStuff's block
//! height), a replica's state jumping to a position (state transfer, restart), and a
//! replica announcing it turned Byzantine. The checks here read nothing else, so they
//! hold any protocol to the same contract:
//!
//! - [`Validity`]: every request a correct replica executes was sent by its client, with
//!   that operation.
//! - [`Integrity`]: no correct replica executes a request twice (or a client's requests
//!   out of order); once its state jumps, it counts from the requests that state lists.
//! - [`ClientConsistency`]: a client completes its requests in order and accepts only the
//!   result correct replicas computed; and those results are the ones a single sequential
//!   execution of the executed batches gives, in order of position (the check replays
//!   them on a store of its own).
//! - [`Termination`]: once faults heal, every request completes within a bound.
//!
//! What is specific to one protocol's order stays with that protocol: PBFT's agreement on
//! batches and checkpoints and its in-order execution of sequence numbers are in
//! [`pbft::checks`](mod@crate::pbft::checks), which uses [`Roles`] from here.
//!
//! "Correct replica" means a replica that has not announced itself Byzantine
//! ([`ReplicatedOutput::is_byzantine`], output before anything else once a
//! `Fault::Byzantine` switches it): safety checks ignore what faulty replicas report.
//! Crashed replicas are not faulty in this sense: what they output before crashing was
//! output by the protocol and must agree.
//!
//! Each check is generic over the actor `A` it watches (so that calling one directly, as
//! tests do, needs no annotation); a protocol names its own, e.g.
//! `pub type Validity = replicated::Validity<Node>;`, and builds them from a [`Group`].
//! Node ids follow one layout: replicas are nodes `0..replicas`, clients the next
//! `clients` ids.

use crate::pbft::app::KvStore;
use crate::pbft::{Execution, Op};
use rehearsal_sim_core::{Actor, EndReason, Invariant, NodeId, RunEnd, Time};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::time::Duration;

// ---- What a replicated protocol outputs ----------------------------------------------------

/// What the shared checks read from a replicated-state-machine protocol's outputs. Each
/// method answers for one kind of output and `None` (or `false`) for every other.
///
/// ```
/// use rehearsal_protocols::pbft::{Execution, Op};
/// use rehearsal_protocols::replicated::{Completed, ReplicatedOutput};
/// use rehearsal_sim_core::NodeId;
///
/// enum Output {
///     Submitted { number: u64, op: Op },
///     Committed { height: u64, requests: Vec<Execution> },
/// }
///
/// impl ReplicatedOutput for Output {
///     const POSITION: &'static str = "height";
///     fn submitted(&self) -> Option<(u64, Op)> {
///         match *self {
///             Output::Submitted { number, op } => Some((number, op)),
///             _ => None,
///         }
///     }
///     fn completed(&self) -> Option<Completed> {
///         None
///     }
///     fn executed(&self) -> Option<(u64, &[Execution])> {
///         match self {
///             Output::Committed { height, requests } => Some((*height, requests)),
///             _ => None,
///         }
///     }
///     fn state_loaded(&self) -> Option<(u64, &[(NodeId, u64)])> {
///         None
///     }
///     fn is_byzantine(&self) -> bool {
///         false
///     }
/// }
///
/// let put = Op::Put { key: 1, value: 7 };
/// assert_eq!(Output::Submitted { number: 1, op: put }.submitted(), Some((1, put)));
/// ```
pub trait ReplicatedOutput {
    /// What a position of the order is called in violation details: PBFT's "sequence",
    /// HotStuff's "height".
    const POSITION: &'static str;

    /// A client sent request `number` with `op` for the first time (retransmissions are
    /// not submissions).
    fn submitted(&self) -> Option<(u64, Op)>;

    /// A client accepted a result for one of its requests.
    fn completed(&self) -> Option<Completed>;

    /// A replica executed these requests (those it actually ran, duplicates skipped) at
    /// `position` of its order. Positions run 1, 2, 3, ... with every one executed (an
    /// empty batch is still a position): [`ClientConsistency`] replays position p only
    /// once it has seen p-1.
    fn executed(&self) -> Option<(u64, &[Execution])>;

    /// A replica's state jumped to the state at `position` (state transfer or restart),
    /// in which each listed client's latest executed request is the one given.
    fn state_loaded(&self) -> Option<(u64, &[(NodeId, u64)])>;

    /// The replica announced it turned Byzantine; the checks ignore what it outputs from
    /// here on.
    fn is_byzantine(&self) -> bool;
}

/// A client accepted `result` for request `number` (with `op`), which it first sent at
/// `submitted_at` and accepted at `completed_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    pub number: u64,
    pub op: Op,
    pub result: u64,
    pub submitted_at: Time,
    pub completed_at: Time,
}

/// The group and workload the checks know of: how many replicas and clients there are
/// (replicas are nodes `0..replicas`, clients the next `clients` ids), what each client
/// sends, and the bounds the checks hold the run to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Group {
    /// n, the replicas.
    pub replicas: u32,
    pub clients: u32,
    /// Requests each client sends, one at a time.
    pub requests_per_client: u64,
    /// Keys of the replicated [`KvStore`].
    pub keys: u32,
    /// Once faults have healed, every request must complete within this.
    pub termination_bound: Duration,
}

/// Which nodes are replicas and clients, and which replicas turned Byzantine.
#[derive(Debug, Clone)]
pub struct Roles {
    n: u32,
    clients: u32,
    byzantine: BTreeSet<NodeId>,
}

impl Roles {
    pub fn new(group: &Group) -> Self {
        Roles {
            n: group.replicas,
            clients: group.clients,
            byzantine: BTreeSet::new(),
        }
    }

    /// Whether `output` comes from a correct replica; records Byzantine announcements.
    /// Feed it every output, so that no announcement goes unseen.
    pub fn correct_replica(&mut self, node: NodeId, output: &impl ReplicatedOutput) -> bool {
        if output.is_byzantine() {
            self.byzantine.insert(node);
            return false;
        }
        node.0 < self.n && !self.byzantine.contains(&node)
    }

    /// Client `node`'s index (0-based), or `None` for a node that is no client.
    pub fn client_index(&self, node: NodeId) -> Option<usize> {
        (node.0 >= self.n && node.0 - self.n < self.clients).then(|| (node.0 - self.n) as usize)
    }
}

/// The name of a position in `A`'s order, for violation details.
fn position<A: Actor>() -> &'static str
where
    A::Output: ReplicatedOutput,
{
    <A::Output as ReplicatedOutput>::POSITION
}

// ---- Validity ------------------------------------------------------------------------------

/// Every request a correct replica executes was sent by its client, with that operation.
pub struct Validity<A> {
    roles: Roles,
    /// Per client index: the operation of each request it submitted (request k at k-1).
    submitted: Vec<Vec<Op>>,
    /// The actor watched: a check owns none, and is `Send` whatever the actor.
    actor: PhantomData<fn() -> A>,
}

impl<A> Validity<A> {
    pub fn new(group: impl Into<Group>) -> Self {
        let group = group.into();
        Validity {
            roles: Roles::new(&group),
            submitted: vec![Vec::new(); group.clients as usize],
            actor: PhantomData,
        }
    }
}

impl<A: Actor> Invariant<A> for Validity<A>
where
    A::Output: ReplicatedOutput,
{
    fn name(&self) -> &str {
        "validity"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &A::Output) -> Result<(), String> {
        if let Some((number, op)) = output.submitted() {
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
        if let Some((at, requests)) = output.executed() {
            for e in requests {
                let sent = self
                    .roles
                    .client_index(e.client)
                    .and_then(|ci| self.submitted[ci].get((e.number as usize).wrapping_sub(1)));
                if sent != Some(&e.op) {
                    return Err(format!(
                        "{node} executed request {} of {} ({:?}) at {} {at}, which that client never sent",
                        e.number,
                        e.client,
                        e.op,
                        position::<A>()
                    ));
                }
            }
        }
        Ok(())
    }
}

// ---- Integrity -----------------------------------------------------------------------------

/// No correct replica executes a request twice, or a client's requests out of order.
pub struct Integrity<A> {
    roles: Roles,
    /// Per (replica, client): the latest request executed.
    last: BTreeMap<(NodeId, NodeId), u64>,
    /// The actor watched: a check owns none, and is `Send` whatever the actor.
    actor: PhantomData<fn() -> A>,
}

impl<A> Integrity<A> {
    pub fn new(group: impl Into<Group>) -> Self {
        Integrity {
            roles: Roles::new(&group.into()),
            last: BTreeMap::new(),
            actor: PhantomData,
        }
    }
}

impl<A: Actor> Invariant<A> for Integrity<A>
where
    A::Output: ReplicatedOutput,
{
    fn name(&self) -> &str {
        "integrity"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &A::Output) -> Result<(), String> {
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        if let Some((at, requests)) = output.executed() {
            for e in requests {
                let last = self.last.entry((node, e.client)).or_insert(0);
                if e.number <= *last {
                    return Err(format!(
                        "{node} executed request {} of {} at {} {at} after executing its request {}",
                        e.number,
                        e.client,
                        position::<A>(),
                        *last
                    ));
                }
                *last = e.number;
            }
        } else if let Some((_, executed)) = output.state_loaded() {
            // The replica's state is now the loaded one: count from what that state lists.
            self.last.retain(|(r, _), _| *r != node);
            for &(client, number) in executed {
                self.last.insert((node, client), number);
            }
        }
        Ok(())
    }
}

// ---- Client-side consistency -----------------------------------------------------------------

/// Clients accept only results correct replicas computed, in request order, and those
/// results are the ones one sequential execution of the executed batches gives.
pub struct ClientConsistency<A> {
    roles: Roles,
    /// (client, request) -> (result, position, replica) as first reported by a correct
    /// replica.
    results: Results,
    completed: BTreeMap<NodeId, u64>,
    /// The reference execution: batches in order of position on a store of its own.
    reference: KvStore,
    replayed: u64,
    agreed: BTreeMap<u64, Vec<Execution>>,
    /// The actor watched: a check owns none, and is `Send` whatever the actor.
    actor: PhantomData<fn() -> A>,
}

/// Results by (client, request number). Clients number their requests 1, 2, 3, ...: a
/// vector per client holds them by number, so a lookup is an index, not a walk down a
/// tree as large as the run (every request of every client). A number far beyond what a
/// client has sent so far (only a broken replica reports one) goes to a map instead, so
/// no report can make the vector huge.
#[derive(Default)]
struct Results {
    by_client: BTreeMap<NodeId, Vec<Option<ResultSeen>>>,
    far: BTreeMap<(NodeId, u64), ResultSeen>,
}

/// (result, position, replica) of a request's first execution by a correct replica.
type ResultSeen = (u64, u64, NodeId);

/// How far past a client's highest number so far a number may be and still be held in
/// its vector.
const RESULTS_SLACK: u64 = 1 << 16;

impl Results {
    fn get(&self, client: NodeId, number: u64) -> Option<ResultSeen> {
        let slot = number.checked_sub(1).and_then(|i| usize::try_from(i).ok());
        self.by_client
            .get(&client)
            .and_then(|v| slot.and_then(|i| v.get(i).copied().flatten()))
            .or_else(|| self.far.get(&(client, number)).copied())
    }

    /// The first result recorded for the request, or `None` after recording `seen` as it.
    fn first_or_insert(
        &mut self,
        client: NodeId,
        number: u64,
        seen: ResultSeen,
    ) -> Option<ResultSeen> {
        if let Some(first) = self.get(client, number) {
            return Some(first);
        }
        let slots = self.by_client.entry(client).or_default();
        match number.checked_sub(1).and_then(|i| usize::try_from(i).ok()) {
            Some(i) if (i as u64) < slots.len() as u64 + RESULTS_SLACK => {
                if slots.len() <= i {
                    slots.resize(i + 1, None);
                }
                slots[i] = Some(seen);
            }
            _ => {
                self.far.insert((client, number), seen);
            }
        }
        None
    }
}

impl<A> ClientConsistency<A> {
    pub fn new(group: impl Into<Group>) -> Self {
        let group = group.into();
        ClientConsistency {
            roles: Roles::new(&group),
            results: Results::default(),
            completed: BTreeMap::new(),
            reference: KvStore::new(group.keys),
            replayed: 0,
            agreed: BTreeMap::new(),
            actor: PhantomData,
        }
    }
}

impl<A: Actor> ClientConsistency<A>
where
    A::Output: ReplicatedOutput,
{
    fn replay(&mut self) -> Result<(), String> {
        while let Some(batch) = self.agreed.remove(&(self.replayed + 1)) {
            self.replayed += 1;
            for e in batch {
                let expected = self.reference.apply(&e.op);
                if expected != e.result {
                    return Err(format!(
                        "request {} of {} at {} {} gave {}, but executing the agreed batches in order gives {expected}",
                        e.number,
                        e.client,
                        position::<A>(),
                        self.replayed,
                        e.result
                    ));
                }
            }
        }
        Ok(())
    }
}

impl<A: Actor> Invariant<A> for ClientConsistency<A>
where
    A::Output: ReplicatedOutput,
{
    fn name(&self) -> &str {
        "client-consistency"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &A::Output) -> Result<(), String> {
        if let Some(Completed { number, result, .. }) = output.completed() {
            let done = self.completed.entry(node).or_insert(0);
            if number != *done + 1 {
                return Err(format!(
                    "{node} completed request {number} after request {done}"
                ));
            }
            *done = number;
            return match self.results.get(node, number) {
                None => Err(format!(
                    "{node} accepted result {result} for request {number}, which no correct replica executed"
                )),
                Some((r, at, by)) if r != result => Err(format!(
                    "{node} accepted result {result} for request {number}, but correct replica {by} computed {r} at {} {at}",
                    position::<A>()
                )),
                Some(_) => Ok(()),
            };
        }
        if !self.roles.correct_replica(node, output) {
            return Ok(());
        }
        if let Some((at, requests)) = output.executed() {
            for e in requests {
                match self
                    .results
                    .first_or_insert(e.client, e.number, (e.result, at, node))
                {
                    Some((r, first_at, by)) if r != e.result => {
                        let noun = position::<A>();
                        return Err(format!(
                            "{node} computed {} for request {} of {} at {noun} {at}, but {by} computed {r} at {noun} {first_at}",
                            e.result, e.number, e.client
                        ));
                    }
                    _ => {}
                }
            }
            if at > self.replayed {
                self.agreed.entry(at).or_insert_with(|| requests.to_vec());
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
/// quiet). Only meaningful when at most f replicas are faulty and the network heals.
pub struct Termination<A> {
    roles: Roles,
    requests_per_client: u64,
    stable_from: Time,
    bound: Duration,
    /// Per client: the request in flight and when it was first sent.
    outstanding: BTreeMap<NodeId, (u64, Time)>,
    completed: BTreeMap<NodeId, u64>,
    /// The actor watched: a check owns none, and is `Send` whatever the actor.
    actor: PhantomData<fn() -> A>,
}

impl<A> Termination<A> {
    /// Requests must complete within [`Group::termination_bound`] from time 0 on.
    pub fn new(group: impl Into<Group>) -> Self {
        let group = group.into();
        Termination {
            roles: Roles::new(&group),
            requests_per_client: group.requests_per_client,
            stable_from: Time::ZERO,
            bound: group.termination_bound,
            outstanding: BTreeMap::new(),
            completed: BTreeMap::new(),
            actor: PhantomData,
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

impl<A: Actor> Invariant<A> for Termination<A>
where
    A::Output: ReplicatedOutput,
{
    fn name(&self) -> &str {
        "termination"
    }

    fn on_fault(&mut self, now: Time) {
        // The bound runs from the last fault, whether a scenario's or one a shrinker
        // imposed on a message: a request the faults held up is owed nothing before then.
        self.stable_from = self.stable_from.max(now);
    }

    fn on_output(&mut self, node: NodeId, now: Time, output: &A::Output) -> Result<(), String> {
        if let Some((number, _)) = output.submitted() {
            self.outstanding.insert(node, (number, now));
        } else if let Some(done) = output.completed() {
            self.outstanding.remove(&node);
            *self.completed.entry(node).or_insert(0) += 1;
            if done.completed_at > self.due(done.submitted_at) {
                return Err(format!(
                    "{node}'s request {} took {:?}, more than the bound of {:?} after faults healed at {}",
                    done.number,
                    done.completed_at
                        .saturating_sub(done.submitted_at.max(self.stable_from)),
                    self.bound,
                    self.stable_from
                ));
            }
        }
        Ok(())
    }

    fn at_end(&mut self, end: &RunEnd<'_, A>) -> Result<(), String> {
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

/// Every check of a run of actor `A`, boxed, so a caller can add a protocol's checks in
/// one loop: `for check in pbft::checks(&config) { sim.add_invariant(check); }`.
pub struct Check<A: Actor>(Box<dyn Invariant<A>>);

impl<A: Actor> Check<A> {
    pub fn new(invariant: impl Invariant<A> + 'static) -> Self {
        Check(Box::new(invariant))
    }
}

impl<A: Actor> Invariant<A> for Check<A> {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn on_output(&mut self, node: NodeId, now: Time, output: &A::Output) -> Result<(), String> {
        self.0.on_output(node, now, output)
    }
    fn on_fault(&mut self, now: Time) {
        self.0.on_fault(now)
    }
    fn at_end(&mut self, end: &RunEnd<'_, A>) -> Result<(), String> {
        self.0.at_end(end)
    }
}

/// [`ReplicatedOutput::submitted`] and [`ReplicatedOutput::completed`] for an output enum
/// whose clients report `Submitted { number, op }` and `Completed { number, op, result,
/// submitted_at, completed_at }`, as PBFT's and HotStuff's do.
macro_rules! client_outputs {
    () => {
        fn submitted(&self) -> Option<(u64, $crate::pbft::Op)> {
            match *self {
                Self::Submitted { number, op } => Some((number, op)),
                _ => None,
            }
        }

        fn completed(&self) -> Option<$crate::replicated::Completed> {
            match *self {
                Self::Completed {
                    number,
                    op,
                    result,
                    submitted_at,
                    completed_at,
                } => Some($crate::replicated::Completed {
                    number,
                    op,
                    result,
                    submitted_at,
                    completed_at,
                }),
                _ => None,
            }
        }
    };
}
pub(crate) use client_outputs;

/// `Explorable` for a replicated protocol's simulated node, an enum of
/// `Replica(Box<..>)` and `Client(Box<..>)` whose both sides are `Serialize` (leaving out
/// what never changes in a run): the explorer tells states apart by that encoding.
macro_rules! explorable_by_encoding {
    ($node:ty) => {
        impl rehearsal_sim_core::explore::Explorable for $node {
            fn fingerprint(&self, h: &mut rehearsal_sim_core::explore::Fingerprinter) {
                use std::hash::Hasher;
                match self {
                    Self::Replica(r) => {
                        h.write_u8(0);
                        h.encoded(&**r);
                    }
                    Self::Client(c) => {
                        h.write_u8(1);
                        h.encoded(&**c);
                    }
                }
            }
        }
    };
}
pub(crate) use explorable_by_encoding;

/// Refuses to restart a real node of `protocol` in `role` from a saved state that does not
/// decode as that role's (`decodes`): starting from nothing instead would forget what the
/// node promised before it stopped.
pub(crate) fn check_saved_state(
    protocol: &str,
    role: &str,
    durable: &[u8],
    decodes: bool,
) -> Result<(), String> {
    if decodes {
        Ok(())
    } else {
        Err(format!(
            "the saved state ({} bytes) is not a {protocol} {role}'s durable state",
            durable.len()
        ))
    }
}

#[cfg(test)]
mod tests {
    //! The shared checks over a protocol that is not PBFT: a fake whose outputs number
    //! positions as heights, so nothing here leans on PBFT's types beyond the application's.

    use super::*;
    use rehearsal_sim_core::Context;

    /// A stand-in protocol's outputs, one variant per thing the checks read.
    #[derive(Debug, Clone, Serialize)]
    enum Fake {
        Submitted(u64, Op),
        Completed(Completed),
        Committed(u64, Vec<Execution>),
        Restarted(u64, Vec<(NodeId, u64)>),
        Traitor,
    }

    impl ReplicatedOutput for Fake {
        const POSITION: &'static str = "height";
        fn submitted(&self) -> Option<(u64, Op)> {
            match *self {
                Fake::Submitted(number, op) => Some((number, op)),
                _ => None,
            }
        }
        fn completed(&self) -> Option<Completed> {
            match *self {
                Fake::Completed(done) => Some(done),
                _ => None,
            }
        }
        fn executed(&self) -> Option<(u64, &[Execution])> {
            match self {
                Fake::Committed(height, requests) => Some((*height, requests)),
                _ => None,
            }
        }
        fn state_loaded(&self) -> Option<(u64, &[(NodeId, u64)])> {
            match self {
                Fake::Restarted(height, executed) => Some((*height, executed)),
                _ => None,
            }
        }
        fn is_byzantine(&self) -> bool {
            matches!(self, Fake::Traitor)
        }
    }

    /// The actor the checks watch; it never runs.
    struct Replica;

    impl Actor for Replica {
        type Msg = ();
        type Timer = ();
        type Output = Fake;
        fn on_start(&mut self, _cx: &mut Context<Self>) {}
        fn on_message(&mut self, _from: NodeId, _msg: (), _cx: &mut Context<Self>) {}
        fn on_timer(&mut self, _timer: (), _cx: &mut Context<Self>) {}
    }

    /// Four replicas (n0..n3) and one client (n4) sending two requests.
    const GROUP: Group = Group {
        replicas: 4,
        clients: 1,
        requests_per_client: 2,
        keys: 8,
        termination_bound: Duration::from_secs(5),
    };
    const CLIENT: NodeId = NodeId(4);
    const PUT: Op = Op::Put { key: 1, value: 7 };
    const GET: Op = Op::Get { key: 1 };
    const T: Time = Time::ZERO;

    fn commit(height: u64, requests: &[(u64, Op, u64)]) -> Fake {
        let requests = requests
            .iter()
            .map(|&(number, op, result)| Execution {
                client: CLIENT,
                number,
                op,
                result,
            })
            .collect();
        Fake::Committed(height, requests)
    }

    fn completed(number: u64, op: Op, result: u64, completed_at: Time) -> Fake {
        Fake::Completed(Completed {
            number,
            op,
            result,
            submitted_at: T,
            completed_at,
        })
    }

    /// Feeds `outputs` (node, output) to `check` and returns the first violation.
    fn first_violation(
        check: &mut impl Invariant<Replica>,
        outputs: &[(u32, Fake)],
    ) -> Option<String> {
        outputs
            .iter()
            .find_map(|(node, output)| check.on_output(NodeId(*node), T, output).err())
    }

    #[test]
    fn validity_flags_an_executed_request_its_client_never_submitted() {
        let mut check = Validity::<Replica>::new(GROUP);
        let honest = [(4, Fake::Submitted(1, PUT)), (0, commit(1, &[(1, PUT, 0)]))];
        assert_eq!(first_violation(&mut check, &honest), None);
        let err = first_violation(&mut check, &[(1, commit(2, &[(2, GET, 7)]))]).unwrap();
        assert_eq!(
            err,
            "n1 executed request 2 of n4 (Get { key: 1 }) at height 2, which that client never sent"
        );
        // What a replica that turned Byzantine executes is its own business.
        let traitor = [(2, Fake::Traitor), (2, commit(2, &[(2, GET, 7)]))];
        assert_eq!(first_violation(&mut check, &traitor), None);
    }

    #[test]
    fn integrity_flags_a_request_executed_twice_until_the_replica_restarts() {
        let mut check = Integrity::<Replica>::new(GROUP);
        let once = commit(1, &[(1, PUT, 0)]);
        assert_eq!(first_violation(&mut check, &[(0, once.clone())]), None);
        let err = first_violation(&mut check, &[(0, commit(2, &[(1, PUT, 7)]))]).unwrap();
        assert_eq!(
            err,
            "n0 executed request 1 of n4 at height 2 after executing its request 1"
        );
        // Restarted from the state before any request: executing request 1 again is fine.
        let again = [(0, Fake::Restarted(0, vec![])), (0, once)];
        assert_eq!(first_violation(&mut check, &again), None);
    }

    #[test]
    fn client_consistency_flags_a_result_the_sequential_replay_does_not_give() {
        // Every correct replica agrees that get after put 7 gave 0, and the client accepts
        // 0: only replaying the executed batches in order shows the put was lost.
        let mut check = ClientConsistency::<Replica>::new(GROUP);
        let outputs = [
            (0, commit(1, &[(1, PUT, 0)])),
            (4, completed(1, PUT, 0, T)),
            (1, commit(2, &[(2, GET, 0)])),
        ];
        let err = first_violation(&mut check, &outputs).unwrap();
        assert_eq!(
            err,
            "request 2 of n4 at height 2 gave 0, but executing the agreed batches in order gives 7"
        );
        // The same batches with the right result pass, whichever order heights arrive in.
        let mut check = ClientConsistency::<Replica>::new(GROUP);
        let outputs = [
            (1, commit(2, &[(2, GET, 7)])),
            (0, commit(1, &[(1, PUT, 0)])),
            (4, completed(1, PUT, 0, T)),
            (4, completed(2, GET, 7, T)),
        ];
        assert_eq!(first_violation(&mut check, &outputs), None);
    }

    #[test]
    fn client_consistency_flags_a_client_accepting_what_no_correct_replica_computed() {
        let mut check = ClientConsistency::<Replica>::new(GROUP);
        let outputs = [(0, commit(1, &[(1, PUT, 0)])), (4, completed(1, PUT, 3, T))];
        let err = first_violation(&mut check, &outputs).unwrap();
        assert_eq!(
            err,
            "n4 accepted result 3 for request 1, but correct replica n0 computed 0 at height 1"
        );
    }

    #[test]
    fn client_consistency_flags_replicas_computing_different_results_for_one_request() {
        let mut check = ClientConsistency::<Replica>::new(GROUP);
        let outputs = [
            (0, commit(1, &[(1, PUT, 0)])),
            (1, commit(1, &[(1, PUT, 5)])),
        ];
        let err = first_violation(&mut check, &outputs).unwrap();
        assert_eq!(
            err,
            "n1 computed 5 for request 1 of n4 at height 1, but n0 computed 0 at height 1"
        );
    }

    #[test]
    fn results_are_held_by_number_and_a_far_off_number_does_not_grow_the_store() {
        let mut results = Results::default();
        let seen = |r| (r, 1, NodeId(0));
        assert_eq!(results.first_or_insert(CLIENT, 2, seen(20)), None);
        assert_eq!(results.first_or_insert(CLIENT, 2, seen(99)), Some(seen(20)));
        assert_eq!(results.get(CLIENT, 1), None);
        assert_eq!(results.get(CLIENT, 2), Some(seen(20)));
        // Number 0 and a number far beyond any sent so far go to the map, not the vector.
        for number in [0, u64::MAX, 1 << 40] {
            assert_eq!(results.first_or_insert(CLIENT, number, seen(number)), None);
            assert_eq!(results.get(CLIENT, number), Some(seen(number)));
        }
        assert_eq!(results.by_client[&CLIENT].len(), 2);
        assert_eq!(results.far.len(), 3);
    }

    #[test]
    fn termination_fires_once_the_bound_has_passed_and_not_before() {
        let end = |secs| RunEnd::<Replica> {
            now: Time::from_secs(secs),
            reason: EndReason::Deadline,
            actors: &[],
            crashed: &[],
        };
        let mut check = Termination::<Replica>::new(GROUP);
        check
            .on_output(CLIENT, T, &Fake::Submitted(1, PUT))
            .unwrap();
        assert_eq!(check.at_end(&end(4)), Ok(()), "not due before 5 s");
        assert_eq!(
            check.at_end(&end(5)).unwrap_err(),
            "requests did not complete within 5s after faults healed at 0s: n4 completed 0 of 2 requests"
        );
        let late = completed(1, PUT, 0, Time::from_secs(6));
        let err = check.on_output(CLIENT, T, &late).unwrap_err();
        assert!(err.starts_with("n4's request 1 took 6s"), "{err}");
    }
}
