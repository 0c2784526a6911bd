//! The discrete-event simulator: one thread, one event queue ordered by (virtual time,
//! tie-breaker), every random choice drawn from streams derived from one master seed.

use crate::actor::{Actor, Context, Effect, NodeId, TimerId};
use crate::codec;
use crate::fault::{ClockSkew, Fault};
use crate::invariant::{EndReason, Invariant, RunEnd};
use crate::network::{Admit, Fate, NetChange, NetworkModel, Packet};
use crate::outcome::{Outcome, RunResult, Violation};
use crate::queue::EventQueue;
use crate::rng::{derive_rng, SimRng};
use crate::scheduler::{Candidate, ChoiceKind, Scheduler, Strategy};
use crate::stats::NodeStats;
use crate::time::Time;
use crate::trace::{self, summarize, EventKind, Recorder, TraceEvent};
use rand::Rng;
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How one run is driven.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Master seed: every random choice of the run derives from it.
    pub seed: u64,
    /// Virtual time at which the run stops; `None` runs to quiescence.
    pub deadline: Option<Time>,
    /// Keep every trace event in memory (for trace files); the digest is always computed.
    pub keep_trace: bool,
    /// Bound on recorded events, so a livelocked protocol cannot run forever: the run stops
    /// before the first handler that starts once this many events are recorded.
    pub events_max: u64,
    /// Who makes the run's nondeterministic choices (see [`crate::scheduler`]); the
    /// default is the seeded run. [`Simulation::set_scheduler`] sets any other scheduler.
    pub strategy: Strategy,
    /// Collect what the run covers ([`crate::Coverage`]: abstract states, happens-before
    /// summaries, rounds) into [`RunResult::coverage`], for coverage-guided search.
    pub coverage: bool,
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            deadline: None,
            keep_trace: false,
            events_max: 100_000_000,
            strategy: Strategy::Default,
            coverage: false,
        }
    }
}

/// Everything a run yields: its [`RunResult`] (read through this report, as
/// `report.outcome`), the trace when it was kept, and the actors as the run left them.
#[derive(Debug)]
pub struct RunReport<A: Actor> {
    pub result: RunResult,
    /// The events, when [`SimConfig::keep_trace`] was set; empty otherwise.
    pub trace: Vec<TraceEvent>,
    /// The actors as the run left them.
    pub actors: Vec<A>,
}

/// A report reads as its result: `report.outcome`, `report.violations`.
impl<A: Actor> std::ops::Deref for RunReport<A> {
    type Target = RunResult;
    fn deref(&self) -> &RunResult {
        &self.result
    }
}

enum Pending<A: Actor> {
    Start {
        node: NodeId,
    },
    /// `bytes` is the encoded size; a u32 keeps queue entries small.
    Deliver {
        from: NodeId,
        to: NodeId,
        id: u64,
        bytes: u32,
        msg: A::Msg,
    },
    Timer {
        node: NodeId,
        id: TimerId,
        timer: A::Timer,
        /// How long after it was set it falls due, in real (unskewed) nanoseconds.
        after_ns: u64,
    },
    /// Boxed: faults are rare, and inline they would bloat every queue entry.
    Fault {
        fault: Box<Fault>,
    },
    /// A message that was waiting in a paused node's backlog when the node crashed: lost
    /// with the node, recorded as a `receiver crashed` drop when its turn comes (even if
    /// the node restarts in the meantime).
    Lost {
        from: NodeId,
        to: NodeId,
        id: u64,
    },
}

impl<A: Actor> Pending<A> {
    fn node(&self) -> NodeId {
        match self {
            Pending::Start { node } | Pending::Timer { node, .. } => *node,
            Pending::Deliver { to, .. } | Pending::Lost { to, .. } => *to,
            Pending::Fault { fault } => fault.node(),
        }
    }

    /// The event as a scheduler sees it (faults are never offered).
    fn choice(&self) -> ChoiceKind {
        match self {
            Pending::Start { .. } => ChoiceKind::Start,
            Pending::Deliver { from, id, .. } => ChoiceKind::Deliver {
                from: *from,
                id: *id,
            },
            Pending::Timer { id, .. } => ChoiceKind::Timer { id: *id },
            Pending::Lost { from, id, .. } => ChoiceKind::Lost {
                from: *from,
                id: *id,
            },
            Pending::Fault { .. } => unreachable!("faults are not the scheduler's to order"),
        }
    }
}

struct Entry<A: Actor> {
    time: Time,
    /// Tie-breaker among events at one time: the order the events were created in (a
    /// message when sent, a timer when set, a fault when scheduled). An event keeps it
    /// when it is queued again (it waited for a busy node, a paused node's backlog, or a
    /// cut to heal), so same-time order never depends on *when* an event was re-queued:
    /// a model that follows a recorded schedule delivers such a message straight at its
    /// recorded time, and the two runs still order it the same way among the others.
    order: u64,
    event: Pending<A>,
}

/// A node's timers set and neither fired nor cancelled, in increasing order of id. A node
/// has few at once and takes ids in increasing order, so a sorted vector adds at its end
/// and finds by bisection, without a tree's allocations.
#[derive(Default)]
struct LiveTimers(Vec<TimerId>);

impl LiveTimers {
    fn insert(&mut self, id: TimerId) {
        match self.0.last() {
            Some(&last) if last >= id => {
                if let Err(at) = self.0.binary_search(&id) {
                    self.0.insert(at, id);
                }
            }
            _ => self.0.push(id),
        }
    }

    fn remove(&mut self, id: TimerId) {
        if let Ok(at) = self.0.binary_search(&id) {
            self.0.remove(at);
        }
    }

    fn contains(&self, id: TimerId) -> bool {
        self.0.binary_search(&id).is_ok()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Simulator-side state of one node.
struct NodeSlot<A: Actor> {
    rng: SimRng,
    net_rng: SimRng,
    next_timer: u64,
    /// Timers set and neither fired nor cancelled.
    live_timers: LiveTimers,
    /// Modelled CPU: the node handles nothing before this time.
    busy_until: Time,
    crashed: bool,
    paused: bool,
    /// Events that arrived while paused, in arrival order (each keeps its tie-breaker).
    parked: VecDeque<Entry<A>>,
    /// The last state the node saved with `Context::persist`: survives crashes.
    durable: Option<Vec<u8>>,
    skew: ClockSkew,
    stats: NodeStats,
    /// The round the node last reported ([`Context::enter_round`]), if any.
    round: Option<u64>,
    /// Byzantine (switched by a fault, from the start, or a twin): round triggers that wait
    /// for correct nodes do not wait for it.
    faulty: bool,
    /// Coverage only: the kinds of message received since the node last sent, one bit each.
    received_kinds: u64,
}

/// When a round-triggered scenario command fires (`@round R ...` / `@round R all ...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundWhen {
    /// When the first correct node enters round R (or a later one).
    First,
    /// When every correct node that reports rounds is in round R or later.
    All,
}

/// A scenario command waiting for a round.
struct RoundFault {
    round: u64,
    when: RoundWhen,
    fault: Fault,
    order: u64,
}

/// An armed message mutation ([`Fault::Mutate`]).
struct Mutation {
    node: NodeId,
    round: u64,
    to: Vec<NodeId>,
}

/// What a run covers so far ([`SimConfig::coverage`]).
#[derive(Default)]
struct CoverageState {
    states: BTreeSet<u64>,
    happens_before: BTreeSet<u64>,
    /// Message kinds in the order first seen: a kind's bit is its index (the 63rd and later
    /// share the last bit).
    kinds: BTreeMap<&'static str, u32>,
    rounds: u64,
}

impl CoverageState {
    fn kind_bit(&mut self, kind: &'static str) -> u32 {
        let next = self.kinds.len() as u32;
        (*self.kinds.entry(kind).or_insert(next)).min(57)
    }
}

/// Rebuilds a crashed node's actor from its last durable state.
pub type RestartFn<A> = Box<dyn FnMut(NodeId, Option<&[u8]>) -> A>;

/// A simulation of actors of type `A` over a network model.
///
/// ```
/// use rehearsal_sim_core::{Actor, Context, NodeId, Outcome, SimConfig, SimpleNetwork, Simulation};
///
/// struct Pinger { left: u32 }
/// impl Actor for Pinger {
///     type Msg = u32;
///     type Timer = ();
///     type Output = u32;
///     fn on_start(&mut self, cx: &mut Context<Self>) {
///         if cx.me() == NodeId(0) { cx.send(NodeId(1), self.left); }
///     }
///     fn on_message(&mut self, from: NodeId, n: u32, cx: &mut Context<Self>) {
///         cx.output(n);
///         if n > 0 { cx.send(from, n - 1); }
///     }
///     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
/// }
///
/// let actors = vec![Pinger { left: 3 }, Pinger { left: 3 }];
/// let report = Simulation::new(SimConfig::new(1), actors, SimpleNetwork::default()).run();
/// assert_eq!(report.outcome, Outcome::Ok);
/// assert_eq!(report.messages_delivered, 4);
/// ```
pub struct Simulation<A: Actor> {
    config: SimConfig,
    actors: Vec<A>,
    nodes: Vec<NodeSlot<A>>,
    network: Box<dyn NetworkModel>,
    invariants: Vec<Box<dyn Invariant<A>>>,
    restart: Option<RestartFn<A>>,
    queue: EventQueue<Pending<A>>,
    /// Deliveries the network holds back (e.g. across a partition) until a change.
    held: Vec<Entry<A>>,
    next_order: u64,
    now: Time,
    effects: Vec<Effect<A>>,
    encode_buf: Vec<u8>,
    /// Whether `encode_buf` holds the message being sent (`Some`), and whether it could
    /// be encoded; `None` when the next send must encode its message.
    encoded: Option<bool>,
    recorder: Recorder,
    violations: Vec<Violation>,
    stopped: bool,
    messages_delivered: u64,
    /// Timer firings to put off, by node and timer: how many more times each is due
    /// again one period later instead of firing (see [`Simulation::postpone_timers`]).
    postponed: BTreeMap<(NodeId, TimerId), u32>,
    /// The scheduler, when one other than the default was set (`None`: the engine's fast
    /// path, queue order and the network's fates).
    scheduler: Option<Box<dyn Scheduler>>,
    /// The network model re-times starts and timers (a follower of a recording whose
    /// scheduler picked the order): see [`NetworkModel::retimes`].
    retimes: bool,
    /// Per endpoint (index into `actors`), the node it is: itself, or for a twin the node
    /// it doubles ([`Simulation::add_twin`]).
    identity: Vec<NodeId>,
    /// Per node, its endpoints, when the run has twins (empty otherwise: each node is its
    /// own one endpoint).
    endpoints: Vec<Vec<NodeId>>,
    /// Scenario commands waiting for a round, in the order scheduled.
    round_faults: Vec<RoundFault>,
    /// Round-triggered commands that became due during a handler, applied after it.
    round_fired: Vec<(Fault, u64)>,
    mutations: Vec<Mutation>,
    mutate_rng: SimRng,
    coverage: Option<Box<CoverageState>>,
}

impl<A: Actor> Simulation<A> {
    /// A simulation of `actors`, node `i` being `actors[i]`; every node starts at time 0
    /// (unless the network model re-times starts, as a follower of a recording does).
    pub fn new(config: SimConfig, actors: Vec<A>, network: impl NetworkModel + 'static) -> Self {
        Self::with_boxed_network(config, actors, Box::new(network))
    }

    /// [`Simulation::new`] for a network model chosen at run time, already boxed (boxing it
    /// again would add an indirection to every message).
    pub fn with_boxed_network(
        config: SimConfig,
        actors: Vec<A>,
        network: Box<dyn NetworkModel>,
    ) -> Self {
        let nodes = (0..actors.len() as u64)
            .map(|i| NodeSlot {
                rng: derive_rng(config.seed, "node", i),
                net_rng: derive_rng(config.seed, "net", i),
                next_timer: 0,
                live_timers: LiveTimers::default(),
                busy_until: Time::ZERO,
                crashed: false,
                paused: false,
                parked: VecDeque::new(),
                durable: None,
                skew: ClockSkew::default(),
                stats: NodeStats::default(),
                round: None,
                faulty: false,
                received_kinds: 0,
            })
            .collect();
        let recorder = Recorder::new(config.keep_trace);
        let scheduler = config.strategy.scheduler(config.seed, actors.len());
        let starts = actors.len() as u64;
        let identity = (0..actors.len() as u32).map(NodeId).collect();
        let coverage = config.coverage.then(Box::default);
        let mutate_rng = derive_rng(config.seed, "mutate", 0);
        Simulation {
            identity,
            endpoints: Vec::new(),
            round_faults: Vec::new(),
            round_fired: Vec::new(),
            mutations: Vec::new(),
            mutate_rng,
            coverage,
            config,
            actors,
            nodes,
            network,
            invariants: Vec::new(),
            restart: None,
            queue: EventQueue::default(),
            held: Vec::new(),
            now: Time::ZERO,
            effects: Vec::new(),
            encode_buf: Vec::new(),
            encoded: None,
            recorder,
            violations: Vec::new(),
            stopped: false,
            messages_delivered: 0,
            postponed: BTreeMap::new(),
            scheduler,
            retimes: false,
            // Starts come first among time-0 events, so a fault at time 0 follows them:
            // they take the first tie-breakers, and are queued when the run starts (when
            // the network model that may re-time them is final).
            next_order: starts,
        }
    }

    /// Sets the scheduler (before the run starts), replacing the one the configuration's
    /// strategy built.
    pub fn set_scheduler(&mut self, scheduler: Box<dyn Scheduler>) -> &mut Self {
        self.scheduler = Some(scheduler);
        self
    }

    /// Adds an invariant checked during and at the end of the run.
    pub fn add_invariant(&mut self, invariant: impl Invariant<A> + 'static) -> &mut Self {
        self.invariants.push(Box::new(invariant));
        self
    }

    /// Puts off these timer firings (before the run starts): when timer `id` of `node`
    /// falls due, it does not fire but falls due again as long after as it was set for,
    /// once per time it is listed. Its handler does not run and no event is recorded, as
    /// if the node's clock had lagged; a periodic timer that re-arms itself in its handler
    /// thus loses one firing and keeps its later ones. For shrinking safety failures (no
    /// safety property may depend on when timers fire); liveness checks do not hear of it.
    pub fn postpone_timers(
        &mut self,
        firings: impl IntoIterator<Item = (NodeId, TimerId)>,
    ) -> &mut Self {
        for firing in firings {
            *self.postponed.entry(firing).or_insert(0) += 1;
        }
        self
    }

    /// Replaces the network model (before the run starts), e.g. with one that follows a
    /// recorded schedule.
    pub fn set_network(&mut self, network: impl NetworkModel + 'static) -> &mut Self {
        self.network = Box::new(network);
        self
    }

    /// Changes the deadline (before the run starts).
    pub fn set_deadline(&mut self, deadline: Option<Time>) -> &mut Self {
        self.config.deadline = deadline;
        self
    }

    /// The deadline the run will stop at, if any.
    pub fn deadline(&self) -> Option<Time> {
        self.config.deadline
    }

    /// Keeps every trace event in memory (before the run starts).
    pub fn keep_trace(&mut self, keep: bool) -> &mut Self {
        self.config.keep_trace = keep;
        self.recorder = Recorder::new(keep);
        self
    }

    /// The master seed of the run.
    pub fn seed(&self) -> u64 {
        self.config.seed
    }

    /// Adds an invariant that is already boxed.
    pub fn add_boxed_invariant(&mut self, invariant: Box<dyn Invariant<A>>) -> &mut Self {
        self.invariants.push(invariant);
        self
    }

    /// Sets how a crashed node is rebuilt on [`Fault::Restart`]: from its node id and the
    /// last state it saved with [`Context::persist`] (`None` if it saved nothing).
    pub fn on_restart(
        &mut self,
        rebuild: impl FnMut(NodeId, Option<&[u8]>) -> A + 'static,
    ) -> &mut Self {
        self.restart = Some(Box::new(rebuild));
        self
    }

    /// Whether [`Fault::Restart`] can be used: a restart constructor was given.
    pub fn can_restart(&self) -> bool {
        self.restart.is_some()
    }

    /// Node `node` runs Byzantine behaviour `behavior` (one of the protocol's, or
    /// `correct`) from the start: switched now, before the run starts it, where a
    /// scheduled [`Fault::Byzantine`] switches a node that has started. Call before
    /// [`Simulation::run`].
    pub fn byzantine_from_start(&mut self, node: NodeId, behavior: &str) -> Result<(), String> {
        let fault = Fault::Byzantine {
            node,
            behavior: behavior.to_string(),
        };
        if node.index() >= self.actors.len() {
            return Err(format!(
                "`{fault}` names node {}, but the run has nodes 0..{}",
                node.0,
                self.actors.len()
            ));
        }
        let offered = A::byzantine_behaviors();
        if behavior != "correct" && !offered.contains(&behavior) {
            return Err(format!(
                "`{fault}`: unknown behaviour `{behavior}`; this protocol offers correct{}{}",
                if offered.is_empty() { "" } else { ", " },
                offered.join(", ")
            ));
        }
        self.actors[node.index()]
            .set_byzantine(behavior)
            .map_err(|problem| format!("`{fault}`: {problem}"))?;
        self.nodes[node.index()].faulty = behavior != "correct";
        Ok(())
    }

    /// Adds a twin of node `of`: a second instance, `actor`, with the same identity and keys
    /// (the caller builds it as node `of`). The network treats it as an endpoint of its own,
    /// numbered after every node (the first twin is endpoint `n`, the next `n + 1`, ...), so
    /// a partition may put the two instances on opposite sides; every other node sees both
    /// as `of`, and a message to `of` goes to each instance the network lets it reach. Both
    /// instances switch to the protocol's `twin` behaviour (correct, but counted as faulty
    /// by its checks). Call before scheduling any fault; returns the twin's endpoint.
    pub fn add_twin(&mut self, of: NodeId, mut actor: A) -> Result<NodeId, String> {
        let nodes = self.endpoints_len_base();
        if of.index() >= nodes || self.identity[of.index()] != of {
            return Err(format!("twins {}: the run has nodes 0..{nodes}", of.0));
        }
        if self.next_order != self.actors.len() as u64 {
            return Err("twins are added before any fault is scheduled".into());
        }
        if !A::byzantine_behaviors().contains(&crate::TWIN) {
            return Err(format!(
                "twins {}: this protocol cannot run twins (it offers no `twin` behaviour)",
                of.0
            ));
        }
        actor
            .set_byzantine(crate::TWIN)
            .map_err(|problem| format!("twins {}: {problem}", of.0))?;
        self.actors[of.index()]
            .set_byzantine(crate::TWIN)
            .map_err(|problem| format!("twins {}: {problem}", of.0))?;
        if self.endpoints.is_empty() {
            self.endpoints = (0..nodes as u32).map(|n| vec![NodeId(n)]).collect();
        }
        let endpoint = NodeId(self.actors.len() as u32);
        self.endpoints[of.index()].push(endpoint);
        self.identity.push(of);
        self.nodes[of.index()].faulty = true;
        self.nodes.push(NodeSlot {
            rng: derive_rng(self.config.seed, "node", u64::from(endpoint.0)),
            net_rng: derive_rng(self.config.seed, "net", u64::from(endpoint.0)),
            next_timer: 0,
            live_timers: LiveTimers::default(),
            busy_until: Time::ZERO,
            crashed: false,
            paused: false,
            parked: VecDeque::new(),
            durable: None,
            skew: ClockSkew::default(),
            stats: NodeStats::default(),
            round: None,
            faulty: true,
            received_kinds: 0,
        });
        self.actors.push(actor);
        self.next_order += 1;
        Ok(endpoint)
    }

    /// How many nodes the run has, not counting twins.
    fn endpoints_len_base(&self) -> usize {
        if self.endpoints.is_empty() {
            self.actors.len()
        } else {
            self.endpoints.len()
        }
    }

    /// The node endpoint `e` is (itself, or the node a twin doubles).
    #[inline]
    fn identity(&self, e: NodeId) -> NodeId {
        self.identity.get(e.index()).copied().unwrap_or(e)
    }

    /// Schedules a fault for when a round is reached: when the first correct node enters
    /// round `round` or a later one, or when every correct node that reports rounds has
    /// ([`RoundWhen`]). Commands waiting for rounds apply in the order given, right after
    /// the handler that reached the round. One that never comes due never applies.
    pub fn schedule_round_fault(
        &mut self,
        round: u64,
        when: RoundWhen,
        fault: Fault,
    ) -> Result<(), String> {
        self.check_fault(&fault)?;
        let order = self.next_order;
        self.next_order += 1;
        self.round_faults.push(RoundFault {
            round,
            when,
            fault,
            order,
        });
        Ok(())
    }

    /// Schedules a fault at virtual time `at`. Faults at one time apply in the order given.
    pub fn schedule_fault(&mut self, at: Time, fault: Fault) -> Result<(), String> {
        self.check_fault(&fault)?;
        self.schedule(
            at,
            Pending::Fault {
                fault: Box::new(fault),
            },
        );
        Ok(())
    }

    /// Whether `fault` can apply to this run: the nodes it names exist, the behaviour it
    /// names is offered, the node it restarts can be rebuilt.
    fn check_fault(&self, fault: &Fault) -> Result<(), String> {
        let nodes = self.actors.len();
        if fault.node().index() >= nodes {
            return Err(format!(
                "`{fault}` names node {}, but the run has nodes 0..{}",
                fault.node().0,
                nodes
            ));
        }
        if let Fault::Network(NetChange::Partition { groups }) = fault {
            if let Some(n) = groups.iter().flatten().find(|n| n.index() >= nodes) {
                return Err(format!(
                    "`{fault}` names node {}, but the run has nodes 0..{nodes}",
                    n.0
                ));
            }
        }
        if let Fault::Network(NetChange::CutOneWay { from, to }) = fault {
            if let Some(n) = from.iter().chain(to).find(|n| n.index() >= nodes) {
                return Err(format!(
                    "`{fault}` names node {}, but the run has nodes 0..{nodes}",
                    n.0
                ));
            }
        }
        if let Fault::Network(NetChange::Cut { links, .. }) = fault {
            if let Some(n) = links
                .iter()
                .flat_map(|&(a, b)| [a, b])
                .find(|n| n.index() >= nodes)
            {
                return Err(format!(
                    "`{fault}` names node {}, but the run has nodes 0..{nodes}",
                    n.0
                ));
            }
        }
        if let Fault::Byzantine { node, behavior } = fault {
            let offered = A::byzantine_behaviors();
            if offered.is_empty() {
                return Err(format!(
                    "`{fault}`: this protocol has no Byzantine behaviours"
                ));
            }
            if behavior != "correct" && !offered.contains(&behavior.as_str()) {
                return Err(format!(
                    "`{fault}`: unknown behaviour `{behavior}`; this protocol offers correct, {}",
                    offered.join(", ")
                ));
            }
            self.actors[node.index()]
                .can_turn_byzantine(behavior)
                .map_err(|why| format!("`{fault}`: {why}"))?;
        }
        if let Fault::Restart(_) = fault {
            if self.restart.is_none() {
                return Err(format!(
                    "`{fault}`: this protocol has no restart constructor"
                ));
            }
        }
        if let Fault::Mutate { node, to, .. } = fault {
            if let Some(n) = to.iter().find(|n| n.index() >= nodes) {
                return Err(format!(
                    "`{fault}` names node {}, but the run has nodes 0..{nodes}",
                    n.0
                ));
            }
            if !A::byzantine_behaviors().contains(&crate::FUZZED) {
                return Err(format!(
                    "`{fault}`: this protocol's messages cannot be mutated (it offers no `{}` \
                     behaviour)",
                    crate::FUZZED
                ));
            }
            // Sends are matched by the sender's identity and the receiving node, so a
            // twin's endpoint would never match: refuse it rather than never apply.
            let base = self.endpoints_len_base();
            if let Some(n) = std::iter::once(node).chain(to).find(|n| n.index() >= base) {
                let of = self.identity(*n).0;
                return Err(format!(
                    "`{fault}` names endpoint {}, the twin of node {of}: a mutation covers \
                     every instance of a node; name node {of}",
                    n.0
                ));
            }
            if let Some(actor) = self.actors.get(node.index()) {
                actor
                    .can_turn_byzantine(crate::FUZZED)
                    .map_err(|why| format!("`{fault}`: {why}"))?;
            }
        }
        Ok(())
    }

    pub fn actors(&self) -> &[A] {
        &self.actors
    }

    fn schedule(&mut self, time: Time, event: Pending<A>) {
        let order = self.next_order;
        self.next_order += 1;
        self.queue.push(time, order, event);
    }

    /// Runs to quiescence, the deadline, the event bound, a stop, or the first safety
    /// violation.
    pub fn run(mut self) -> RunReport<A> {
        self.retimes = self.network.retimes();
        for i in 0..self.actors.len() {
            let node = NodeId(i as u32);
            let time = if self.retimes {
                self.network.start_at(node)
            } else {
                Time::ZERO
            };
            let event = Pending::Start { node };
            self.queue.push(time, i as u64, event);
        }
        let controlled = self.scheduler.as_ref().is_some_and(|s| s.controls_order());
        let end = if controlled {
            self.controlled_loop()
        } else {
            self.event_loop()
        };
        self.finish(end)
    }

    /// The default loop: events in queue order.
    fn event_loop(&mut self) -> EndReason {
        loop {
            if !self.violations.is_empty() {
                return EndReason::Violation;
            }
            if self.stopped {
                return EndReason::Stopped;
            }
            if self.recorder.next_seq >= self.config.events_max {
                return EndReason::EventLimit;
            }
            let Some((time, order, event)) = self.queue.pop() else {
                return EndReason::Quiescent;
            };
            let entry = Entry { time, order, event };
            if let Pending::Timer { node, id, .. } = &entry.event {
                if !self.nodes[node.index()].live_timers.contains(*id) {
                    continue; // cancelled: not an event, and it moves no clock
                }
            }
            if let Some(deadline) = self.config.deadline {
                if entry.time > deadline {
                    self.now = deadline;
                    return EndReason::Deadline;
                }
            }
            let put_off = if self.postponed.is_empty() {
                None
            } else {
                self.put_off(&entry)
            };
            if let Some(at) = put_off {
                self.schedule(at, entry.event);
                continue;
            }
            // The engine's own invariant: virtual time never goes backwards. A broken
            // queue or scheduler stops the run here rather than reporting a wrong result.
            assert!(
                entry.time >= self.now,
                "simulator bug: an event due at {} was taken after {}",
                entry.time,
                self.now
            );
            if let Pending::Fault { fault } = entry.event {
                self.now = entry.time;
                self.apply_fault(*fault, entry.order);
                continue;
            }
            let slot = &self.nodes[entry.event.node().index()];
            if entry.time < slot.busy_until {
                // The node is still working on an earlier event: this one waits its turn.
                // Keep the original tie-breaker: an event that waited for a busy node
                // still comes before those scheduled after it (FIFO links stay FIFO).
                let busy_until = slot.busy_until;
                self.queue.push(busy_until, entry.order, entry.event);
                continue;
            }
            self.now = entry.time;
            self.dispatch(entry);
        }
    }

    /// The loop of a scheduler that picks the order (see [`crate::scheduler`]): each step
    /// gathers the events due by the next instant (`previous + 1 ns`, or the earliest due
    /// if later; plus the scheduler's window), lets the scheduler pick one, and runs it at
    /// `max(due, that instant)`, so that every event has an instant of its own and the
    /// trace's times record the order. Faults strike at their own instants, first at a
    /// tie, and no picked event shares a fault's instant.
    // Kept out of line: the default loop is the hot path, and inlining this one beside it
    // made the compiler take the heap's pop and `dispatch` out of line there.
    #[inline(never)]
    fn controlled_loop(&mut self) -> EndReason {
        let window_ns = self.scheduler.as_ref().map_or(0, |s| s.window_ns());
        let fifo = self.network.fifo();
        let deadline = self.config.deadline;
        // Faults, in the order they strike; every other event not yet ready, by (due,
        // tie-breaker). Whatever the engine queues (sends, timers, a fault's consequences)
        // moves from its heap to these at each step: the heap's `pop` then has one caller,
        // the default loop, where it stays inlined.
        let mut faults: VecDeque<Entry<A>> = VecDeque::new();
        let mut pending: BTreeMap<(Time, u64), Entry<A>> = BTreeMap::new();
        // Events ready to run, in no particular order (sorted before each pick).
        let mut ready: Vec<Entry<A>> = Vec::new();
        let mut candidates: Vec<Candidate> = Vec::new();
        // What is offered to the scheduler (indices into `ready`), and, on FIFO links,
        // which message comes first on its link: buffers kept across steps.
        let mut offered: Vec<usize> = Vec::new();
        let mut first_on_link: Vec<bool> = Vec::new();
        let mut by_order: Vec<(u64, usize)> = Vec::new();
        let mut links: BTreeSet<(NodeId, NodeId)> = BTreeSet::new();
        let mut last: Option<Time> = None;
        loop {
            if !self.violations.is_empty() {
                return EndReason::Violation;
            }
            if self.stopped {
                return EndReason::Stopped;
            }
            if self.recorder.next_seq >= self.config.events_max {
                return EndReason::EventLimit;
            }
            self.queue.drain(|time, order, event| {
                let entry = Entry { time, order, event };
                if let Pending::Fault { .. } = entry.event {
                    let at =
                        faults.partition_point(|f| (f.time, f.order) < (entry.time, entry.order));
                    faults.insert(at, entry);
                } else {
                    let key = (entry.time, entry.order);
                    let clash = pending.insert(key, entry);
                    assert!(clash.is_none(), "simulator bug: two events share {key:?}");
                }
            });
            // Timers cancelled since they became ready are not events.
            let nodes = &self.nodes;
            ready.retain(|e| match &e.event {
                Pending::Timer { node, id, .. } => nodes[node.index()].live_timers.contains(*id),
                _ => true,
            });
            let earliest = ready
                .iter()
                .map(|e| e.time)
                .chain(pending.first_key_value().map(|(&(t, _), _)| t))
                .min();
            let next = earliest.map(|t| match last {
                Some(last) => t.max(Time(last.as_nanos().saturating_add(1))),
                None => t,
            });
            if let Some(fault_at) = faults.front().map(|f| f.time) {
                if next.is_none_or(|next| fault_at <= next) {
                    if deadline.is_some_and(|d| fault_at > d) {
                        self.now = deadline.unwrap_or(fault_at);
                        return EndReason::Deadline;
                    }
                    assert!(
                        fault_at >= self.now,
                        "simulator bug: a fault due at {fault_at} was taken after {}",
                        self.now
                    );
                    let Some(Entry {
                        order,
                        event: Pending::Fault { fault },
                        ..
                    }) = faults.pop_front()
                    else {
                        unreachable!("only faults are kept apart")
                    };
                    self.now = fault_at;
                    last = Some(fault_at);
                    self.apply_fault(*fault, order);
                    continue;
                }
            }
            let Some(next) = next else {
                return EndReason::Quiescent;
            };
            if let Some(deadline) = deadline {
                if next > deadline {
                    self.now = deadline;
                    return EndReason::Deadline;
                }
            }
            // Gather what is due by the window's end: before the next fault, by the deadline.
            let mut limit = next.as_nanos().saturating_add(window_ns);
            if let Some(fault) = faults.front() {
                limit = limit.min(fault.time.as_nanos().saturating_sub(1));
            }
            if let Some(deadline) = deadline {
                limit = limit.min(deadline.as_nanos());
            }
            while pending
                .first_key_value()
                .is_some_and(|(&(t, _), _)| t.as_nanos() <= limit)
            {
                let Some((_, entry)) = pending.pop_first() else {
                    break;
                };
                if let Pending::Timer { node, id, .. } = &entry.event {
                    if !self.nodes[node.index()].live_timers.contains(*id) {
                        continue; // cancelled
                    }
                }
                if let Some(at) = self.put_off(&entry) {
                    self.schedule(at, entry.event);
                    continue;
                }
                ready.push(entry);
            }
            // An event for a node still busy with an earlier one waits its turn, keeping
            // its tie-breaker (as in the default loop).
            let mut i = 0;
            while i < ready.len() {
                let busy_until = self.nodes[ready[i].event.node().index()].busy_until;
                if ready[i].time.max(next) < busy_until {
                    let entry = ready.swap_remove(i);
                    pending.insert(
                        (busy_until, entry.order),
                        Entry {
                            time: busy_until,
                            ..entry
                        },
                    );
                } else {
                    i += 1;
                }
            }
            if ready.is_empty() {
                continue;
            }
            ready.sort_unstable_by_key(|e| (e.time, e.order));
            // On FIFO links a message runs only after those sent before it on its link.
            offered.clear();
            if fifo {
                by_order.clear();
                by_order.extend(ready.iter().enumerate().map(|(i, e)| (e.order, i)));
                by_order.sort_unstable();
                links.clear();
                first_on_link.clear();
                first_on_link.resize(ready.len(), true);
                for &(_, i) in &by_order {
                    if let Pending::Deliver { from, to, .. } = ready[i].event {
                        first_on_link[i] = links.insert((from, to));
                    }
                }
                offered.extend((0..ready.len()).filter(|&i| first_on_link[i]));
            } else {
                offered.extend(0..ready.len());
            }
            candidates.clear();
            candidates.extend(offered.iter().map(|&i| Candidate {
                node: ready[i].event.node(),
                kind: ready[i].event.choice(),
                due: ready[i].time,
            }));
            let scheduler = self
                .scheduler
                .as_mut()
                .expect("a controlled loop has a scheduler");
            let picked = scheduler.pick(&candidates);
            assert!(
                picked < candidates.len(),
                "scheduler bug: picked event {picked} of {} ready",
                candidates.len()
            );
            let entry = ready.remove(offered[picked]);
            let at = entry.time.max(next);
            assert!(
                at >= self.now,
                "simulator bug: an event due at {at} was taken after {}",
                self.now
            );
            self.now = at;
            last = Some(at);
            self.dispatch(entry);
        }
    }

    /// When timer `entry`, if it is to be put off (see `postpone_timers`), falls due again:
    /// one period later; after its last put-off, when the network model says (a follower
    /// re-times the firing from its recording).
    fn put_off(&mut self, entry: &Entry<A>) -> Option<Time> {
        let Pending::Timer {
            node, id, after_ns, ..
        } = &entry.event
        else {
            return None;
        };
        let left = self.postponed.get_mut(&(*node, *id)).filter(|l| **l > 0)?;
        *left -= 1;
        let last = *left == 0;
        let at = Time(entry.time.as_nanos().saturating_add((*after_ns).max(1)));
        Some(if last && self.retimes {
            self.network.timer_due(*node, *id, at)
        } else {
            at
        })
    }

    // Inlined into both loops: out of line, the default loop pays a call and a copy of the
    // entry per event.
    #[inline(always)]
    fn dispatch(&mut self, entry: Entry<A>) {
        let now = self.now;
        if let Pending::Lost { from, to, id } = entry.event {
            return self.drop_message(from, to, id, "receiver crashed");
        }
        if self.nodes[entry.event.node().index()].crashed {
            if let Pending::Deliver { from, to, id, .. } = entry.event {
                self.drop_message(from, to, id, "receiver crashed");
            }
            return; // a crashed node's own start and timers are gone with it
        }
        if let Pending::Deliver { from, to, id, .. } = entry.event {
            match self.network.admit_message(id, from, to, now) {
                Admit::Deliver => {}
                Admit::Drop { reason } => return self.drop_message(from, to, id, reason),
                Admit::Hold => return self.held.push(entry),
            }
        }
        self.handle(entry);
    }

    /// Runs one handler of a live node (or parks the event if the node is paused).
    fn handle(&mut self, entry: Entry<A>) {
        let now = self.now;
        let node = entry.event.node();
        let slot = &mut self.nodes[node.index()];
        if slot.paused {
            slot.parked.push_back(entry);
            return;
        }
        let handler = match entry.event {
            Pending::Start { node } => {
                let seq = self.recorder.begin(trace::TAG_START, now, node);
                if self.recorder.keep {
                    self.recorder.keep_event(seq, now, node, EventKind::Start);
                }
                Handler::<A>::Start
            }
            Pending::Deliver {
                from,
                to,
                id,
                bytes,
                msg,
            } => {
                // Only a message that was sent is delivered: its id is its send event's.
                assert!(
                    id < self.recorder.next_seq,
                    "simulator bug: message #{id} delivered to n{} before it was sent",
                    to.0
                );
                let seq = self.recorder.deliver(now, to, from, id);
                if self.recorder.keep {
                    self.recorder
                        .keep_event(seq, now, to, EventKind::Deliver { from, id });
                }
                self.messages_delivered += 1;
                let stats = &mut self.nodes[to.index()].stats;
                stats.messages_received += 1;
                stats.bytes_received += u64::from(bytes);
                if let Some(coverage) = self.coverage.as_mut() {
                    let bit = coverage.kind_bit(A::message_kind(&msg));
                    self.nodes[to.index()].received_kinds |= 1 << bit;
                }
                Handler::Message(self.identity(from), msg)
            }
            Pending::Timer {
                node, id, timer, ..
            } => {
                self.nodes[node.index()].live_timers.remove(id);
                let seq = self.recorder.event_u64(trace::TAG_TIMER, now, node, id.0);
                if self.recorder.keep {
                    let kind = EventKind::Timer {
                        timer_id: id,
                        timer: summarize(format!("{timer:?}")),
                    };
                    self.recorder.keep_event(seq, now, node, kind);
                }
                self.nodes[node.index()].stats.timers_fired += 1;
                Handler::Timer(timer)
            }
            Pending::Fault { .. } | Pending::Lost { .. } => {
                unreachable!("faults are applied by the event loop, lost messages by dispatch")
            }
        };
        let me = self.identity(node);
        let slot = &mut self.nodes[node.index()];
        let actor = &mut self.actors[node.index()];
        let local_now = slot.skew.local(now);
        let mut cx = Context::new(
            me,
            local_now,
            &mut slot.rng,
            &mut slot.next_timer,
            &mut self.effects,
        );
        match handler {
            Handler::Start => actor.on_start(&mut cx),
            Handler::Message(from, msg) => actor.on_message(from, msg, &mut cx),
            Handler::Timer(timer) => actor.on_timer(timer, &mut cx),
        }
        let departs = now.after(cx.charged());
        slot.busy_until = departs;
        if let Some(coverage) = self.coverage.as_mut() {
            let state = actor.abstract_state();
            if state != 0 {
                coverage.states.insert(state);
            }
            let sent_before = slot.stats.messages_sent;
            self.apply_effects(node, departs);
            let slot = &mut self.nodes[node.index()];
            if slot.stats.messages_sent != sent_before {
                slot.received_kinds = 0;
            }
        } else {
            self.apply_effects(node, departs);
        }
        if !self.round_fired.is_empty() {
            self.apply_round_faults();
        }
    }

    /// Applies the round-triggered commands that came due in the last handler, in the
    /// order they were scheduled.
    #[cold]
    #[inline(never)]
    fn apply_round_faults(&mut self) {
        for (fault, order) in std::mem::take(&mut self.round_fired) {
            self.apply_fault(fault, order);
        }
    }

    /// Records that endpoint `node` entered `round`, and sets due the commands waiting for
    /// it.
    #[cold]
    #[inline(never)]
    fn enter_round(&mut self, node: NodeId, round: u64) {
        let slot = &mut self.nodes[node.index()];
        if slot.round == Some(round) {
            return;
        }
        slot.round = Some(round);
        let seq = self
            .recorder
            .event_u64(trace::TAG_ROUND, self.now, node, round);
        if self.recorder.keep {
            self.recorder
                .keep_event(seq, self.now, node, EventKind::Round { round });
        }
        if let Some(coverage) = self.coverage.as_mut() {
            coverage.rounds = coverage.rounds.max(round);
        }
        if self.round_faults.is_empty() {
            return;
        }
        let nodes = &self.nodes;
        let correct = || nodes.iter().filter(|n| !n.faulty);
        let mut i = 0;
        while i < self.round_faults.len() {
            let waiting = &self.round_faults[i];
            let due = match waiting.when {
                RoundWhen::First => correct().any(|n| n.round.is_some_and(|r| r >= waiting.round)),
                RoundWhen::All => {
                    correct().any(|n| n.round.is_some())
                        && correct().all(|n| n.round.is_none_or(|r| r >= waiting.round))
                }
            };
            if due {
                let RoundFault { fault, order, .. } = self.round_faults.remove(i);
                self.round_fired.push((fault, order));
            } else {
                i += 1;
            }
        }
    }

    fn apply_effects(&mut self, node: NodeId, departs: Time) {
        let mut effects = std::mem::take(&mut self.effects);
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { to, msg, copy } => self.send_to(node, to, msg, departs, copy),
                Effect::SetTimer { id, after, timer } => {
                    let slot = &mut self.nodes[node.index()];
                    slot.live_timers.insert(id);
                    // `after` is measured by the node's own (possibly skewed) clock.
                    let real_after = slot.skew.real_after(after);
                    let due = self.now.after(real_after);
                    let at = if self.retimes {
                        self.retimed_timer(node, id, due)
                    } else {
                        due
                    };
                    let after_ns = crate::time::duration_ns(real_after);
                    self.schedule(
                        at,
                        Pending::Timer {
                            node,
                            id,
                            timer,
                            after_ns,
                        },
                    );
                }
                Effect::CancelTimer { id } => {
                    self.nodes[node.index()].live_timers.remove(id);
                }
                Effect::Output(value) => self.output(node, value),
                Effect::Annotate(label) => {
                    self.nodes[node.index()].stats.annotations += 1;
                    self.annotate(node, label);
                }
                Effect::Persist(state) => self.nodes[node.index()].durable = Some(state),
                Effect::Round(round) => self.enter_round(node, round),
            }
        }
        self.effects = effects;
    }

    /// When a timer set now to fall due at `due` fires, as the network model re-times it
    /// (see [`NetworkModel::retimes`]). Out of line: only runs that follow a controlled
    /// recording come here, and the handler path stays as small as without it.
    #[cold]
    #[inline(never)]
    fn retimed_timer(&mut self, node: NodeId, id: TimerId, due: Time) -> Time {
        // A timer to be put off is re-timed when it is put off for the last time.
        if self
            .postponed
            .get(&(node, id))
            .is_some_and(|left| *left > 0)
        {
            due
        } else {
            self.network.timer_due(node, id, due)
        }
    }

    fn annotate(&mut self, node: NodeId, label: String) {
        let seq = self.recorder.begin(trace::TAG_ANNOTATE, self.now, node);
        self.recorder.bytes(label.as_bytes());
        if self.recorder.keep {
            self.recorder
                .keep_event(seq, self.now, node, EventKind::Annotate { label });
        }
    }

    /// Sends from endpoint `from` to node `to`: to each of its endpoints when it has twins,
    /// after any armed mutation has changed the message.
    #[inline(always)]
    /// `copy`: the same message as the one sent just before (a broadcast's later copy).
    fn send_to(&mut self, from: NodeId, to: NodeId, mut msg: A::Msg, departs: Time, copy: bool) {
        // A mutation may change any copy: each is encoded then.
        let copy = copy && self.mutations.is_empty();
        if !copy {
            self.encoded = None;
            if !self.mutations.is_empty() {
                self.mutate(from, to, &mut msg);
            }
        }
        if let Some(coverage) = self.coverage.as_mut() {
            let bit = coverage.kind_bit(A::message_kind(&msg));
            let received = self.nodes[from.index()].received_kinds;
            coverage
                .happens_before
                .insert((u64::from(bit) << 58) | (received & ((1 << 58) - 1)));
        }
        if self.endpoints.is_empty() {
            return self.send(from, to, msg, departs, true);
        }
        if to.index() >= self.endpoints.len() {
            // Not a node (a twin's endpoint is not a node either): dropped as unknown.
            return self.send(from, to, msg, departs, false);
        }
        let count = self.endpoints[to.index()].len();
        for i in 0..count {
            let endpoint = self.endpoints[to.index()][i];
            if i + 1 == count {
                return self.send(from, endpoint, msg, departs, true);
            }
            self.send(from, endpoint, msg.clone(), departs, true);
        }
    }

    /// Changes `msg` if an armed mutation covers it: sent by its node in its round to one
    /// of its recipients. A change is annotated on the sender and counts as a fault.
    #[cold]
    #[inline(never)]
    fn mutate(&mut self, from: NodeId, to: NodeId, msg: &mut A::Msg) {
        let sender = self.identity(from);
        let Some(round) = self.nodes[from.index()].round else {
            return;
        };
        let armed = self
            .mutations
            .iter()
            .any(|m| m.node == sender && m.round == round && m.to.contains(&to));
        if !armed {
            return;
        }
        if let Some(change) = self.actors[from.index()].mutate_message(msg, &mut self.mutate_rng) {
            self.annotate(
                from,
                format!("mutated (to n{}, round {round}): {change}", to.0),
            );
            self.fault_struck();
        }
    }

    /// Sends from endpoint `from` to endpoint `to` (a node that does not exist when not
    /// `known`).
    fn send(&mut self, from: NodeId, to: NodeId, msg: A::Msg, departs: Time, known: bool) {
        // A broadcast's copies (and a node's twins) share one encoding.
        if self.encoded.is_none() {
            self.encode_buf.clear();
            self.encoded = Some(codec::encode_into(&msg, &mut self.encode_buf).is_ok());
        }
        let encoded = self.encoded == Some(true);
        let bytes = self.encode_buf.len() as u64;
        let id = self.recorder.send(self.now, from, to, &self.encode_buf);
        // The trace's text of the message, also shown to the network model (a follower
        // matches messages by it); kept as the send event once the model has routed it.
        let label = self.recorder.keep.then(|| summarize(format!("{msg:?}")));
        let stats = &mut self.nodes[from.index()].stats;
        stats.messages_sent += 1;
        stats.bytes_sent += bytes;

        let fate = if !encoded {
            Fate::Drop {
                reason: "message cannot be encoded",
            }
        } else if !known || to.index() >= self.actors.len() {
            Fate::Drop {
                reason: "no such node",
            }
        } else {
            let packet = Packet {
                from,
                to,
                sent_at: departs,
                bytes: bytes as usize,
            };
            let drawn = self.network.route_labeled(
                id,
                &packet,
                label.as_deref(),
                &mut self.nodes[from.index()].net_rng,
            );
            match self.scheduler.as_mut() {
                Some(scheduler) => scheduler.route(id, &packet, drawn),
                None => drawn,
            }
        };
        if let Some(label) = label {
            let kind = EventKind::Send {
                to,
                id,
                bytes,
                msg: label,
            };
            self.recorder.keep_event(id, self.now, from, kind);
        }
        let at = |delay_ns: u64| Time(departs.as_nanos().saturating_add(delay_ns));
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        match fate {
            Fate::Deliver { delay_ns } => self.schedule(
                at(delay_ns),
                Pending::Deliver {
                    from,
                    to,
                    id,
                    bytes,
                    msg,
                },
            ),
            Fate::Duplicate {
                delay_ns,
                copy_delay_ns,
            } => {
                let copy = msg.clone();
                self.schedule(
                    at(delay_ns),
                    Pending::Deliver {
                        from,
                        to,
                        id,
                        bytes,
                        msg,
                    },
                );
                self.schedule(
                    at(copy_delay_ns),
                    Pending::Deliver {
                        from,
                        to,
                        id,
                        bytes,
                        msg: copy,
                    },
                );
            }
            Fate::Corrupt { delay_ns } => match self.corrupt(from, to, id) {
                Some(msg) => self.schedule(
                    at(delay_ns),
                    Pending::Deliver {
                        from,
                        to,
                        id,
                        bytes,
                        msg,
                    },
                ),
                None => self.drop_message(from, to, id, "corrupted: undecodable"),
            },
            Fate::Drop { reason } => self.drop_message(from, to, id, reason),
            Fate::FaultDrop { reason } => {
                self.drop_message(from, to, id, reason);
                self.fault_struck();
            }
        }
    }

    /// Damages the encoded message in `encode_buf` (1 to 3 bytes) and decodes what is left,
    /// as a receiver would. The damage comes from a stream of this message's own (seed and
    /// message id), not from the sender's network stream: it is the same whichever network
    /// model decided the corruption, so a model that follows a recorded schedule (and draws
    /// nothing) damages the message exactly as the recording did.
    fn corrupt(&mut self, from: NodeId, to: NodeId, id: u64) -> Option<A::Msg> {
        let rng = &mut derive_rng(self.config.seed, "corrupt", id);
        self.encoded = None; // the buffer is damaged below
        if self.encode_buf.is_empty() {
            return None;
        }
        for _ in 0..rng.random_range(1..=3) {
            let at = rng.random_range(0..self.encode_buf.len());
            self.encode_buf[at] ^= rng.random_range(1..=255u8);
        }
        let decoded: Option<A::Msg> = codec::decode(&self.encode_buf).ok();
        if let Some(msg) = &decoded {
            let seq = self.recorder.begin(trace::TAG_CORRUPT, self.now, from);
            self.recorder.field(id);
            self.recorder.bytes(&self.encode_buf);
            if self.recorder.keep {
                let kind = EventKind::Corrupt {
                    to,
                    id,
                    msg: summarize(format!("{msg:?}")),
                };
                self.recorder.keep_event(seq, self.now, from, kind);
            }
        }
        decoded
    }

    fn drop_message(&mut self, from: NodeId, to: NodeId, id: u64, reason: &'static str) {
        let seq = self.recorder.begin(trace::TAG_DROP, self.now, from);
        self.recorder.field(id);
        self.recorder.bytes(reason.as_bytes());
        self.nodes[from.index()].stats.messages_dropped += 1;
        if self.recorder.keep {
            let kind = EventKind::Drop {
                to,
                id,
                reason: reason.to_string(),
            };
            self.recorder.keep_event(seq, self.now, from, kind);
        }
    }

    /// Applies `fault`, whose queue tie-breaker is `order` (a restart's start takes it).
    fn apply_fault(&mut self, fault: Fault, order: u64) {
        let node = fault.node();
        let label = fault.to_string();
        let seq = self.recorder.begin(trace::TAG_FAULT, self.now, node);
        self.recorder.bytes(label.as_bytes());
        if self.recorder.keep {
            self.recorder
                .keep_event(seq, self.now, node, EventKind::Fault { fault: label });
        }
        let now = self.now;
        if !matches!(fault, Fault::Annotate(_) | Fault::Stop) {
            self.fault_struck();
        }
        match fault {
            Fault::Crash(n) => {
                let slot = &mut self.nodes[n.index()];
                slot.crashed = true;
                slot.paused = false;
                slot.live_timers.clear();
                slot.busy_until = now;
                // The backlog is lost with the node. Its messages are dropped when their
                // turn comes at this instant, not here: ordered like messages that arrive
                // at a crashed node, which a model following a recorded schedule (that
                // never saw the pause) reproduces.
                for entry in std::mem::take(&mut slot.parked) {
                    if let Pending::Deliver { from, to, id, .. } = entry.event {
                        self.queue
                            .push(now, entry.order, Pending::Lost { from, to, id });
                    }
                }
            }
            Fault::Restart(n) => {
                if !self.nodes[n.index()].crashed {
                    return self.annotate(n, format!("restart {} ignored: not crashed", n.0));
                }
                let Some(rebuild) = self.restart.as_mut() else {
                    return self.annotate(n, "restart ignored: no restart constructor".into());
                };
                let slot = &mut self.nodes[n.index()];
                self.actors[n.index()] = rebuild(n, slot.durable.as_deref());
                slot.crashed = false;
                // Its messages are still mutated: the rebuilt node announces itself faulty
                // again, as it did before the crash.
                if self.mutations.iter().any(|m| m.node == n) {
                    if let Err(problem) = self.actors[n.index()].set_byzantine(crate::FUZZED) {
                        self.violation(n, "scenario".into(), problem);
                    }
                }
                self.handle(Entry {
                    time: now,
                    order,
                    event: Pending::Start { node: n },
                });
            }
            Fault::Pause(n) => self.nodes[n.index()].paused = true,
            Fault::Resume(n) => {
                let slot = &mut self.nodes[n.index()];
                slot.paused = false;
                // Everything that queued up runs now, each event with its own tie-breaker
                // (in the order the events were created, which is the order they arrived
                // on any one FIFO link).
                for entry in std::mem::take(&mut slot.parked) {
                    self.queue.push(now, entry.order, entry.event);
                }
            }
            Fault::Skew { node, skew } => self.nodes[node.index()].skew = skew,
            Fault::Network(change) => match self.network.apply(&change, now) {
                Ok(()) => self.release_held(),
                Err(problem) => self.violation(NodeId(0), "scenario".into(), problem),
            },
            Fault::Byzantine { node, behavior } => {
                match self.actors[node.index()].set_byzantine(&behavior) {
                    Ok(()) => self.nodes[node.index()].faulty = behavior != "correct",
                    Err(problem) => self.violation(node, "scenario".into(), problem),
                }
            }
            Fault::Mutate { node, round, to } => {
                if !self.nodes[node.index()].faulty {
                    match self.actors[node.index()].set_byzantine(crate::FUZZED) {
                        Ok(()) => self.nodes[node.index()].faulty = true,
                        Err(problem) => return self.violation(node, "scenario".into(), problem),
                    }
                }
                self.mutations.push(Mutation { node, round, to });
            }
            Fault::Settle => {
                self.round_faults.clear();
                self.mutations.clear();
                match self.network.apply(&NetChange::Heal, now) {
                    Ok(()) => self.release_held(),
                    Err(problem) => self.violation(NodeId(0), "scenario".into(), problem),
                }
                // Nodes a round fault crashed or paused come back (each as its own fault
                // in the trace), so that every correct node is up from here on.
                for n in 0..self.endpoints_len_base() {
                    let node = NodeId(n as u32);
                    if self.nodes[n].crashed && self.restart.is_some() {
                        self.apply_fault(Fault::Restart(node), order);
                    } else if self.nodes[n].paused {
                        self.apply_fault(Fault::Resume(node), order);
                    }
                }
            }
            Fault::Annotate(_) => {}
            Fault::Stop => self.stopped = true,
        }
    }

    /// Tells every invariant that a fault struck now (see [`Invariant::on_fault`]).
    fn fault_struck(&mut self) {
        let now = self.now;
        for invariant in &mut self.invariants {
            invariant.on_fault(now);
        }
    }

    /// After a network change, queues what the network was holding again at this instant
    /// (each message with its own tie-breaker); the network then admits, drops or holds
    /// each one again as its turn comes.
    fn release_held(&mut self) {
        let now = self.now;
        for entry in std::mem::take(&mut self.held) {
            self.queue.push(now, entry.order, entry.event);
        }
    }

    fn output(&mut self, node: NodeId, value: A::Output) {
        // An output that cannot be encoded still counts; its digest record is then empty.
        let seq = self
            .recorder
            .event_encoded(trace::TAG_OUTPUT, self.now, node, |buffer| {
                codec::encode_into(&value, buffer).is_ok()
            });
        self.nodes[node.index()].stats.outputs += 1;
        if self.recorder.keep {
            let json = serde_json::to_value(&value)
                .unwrap_or_else(|_| serde_json::Value::String(format!("{value:?}")));
            self.recorder
                .keep_event(seq, self.now, node, EventKind::Output { value: json });
        }
        let now = self.now;
        let mut found = Vec::new();
        let me = self.identity(node);
        for invariant in &mut self.invariants {
            if let Err(detail) = invariant.on_output(me, now, &value) {
                found.push((invariant.name().to_string(), detail));
            }
        }
        for (name, detail) in found {
            self.violation(node, name, detail);
        }
    }

    fn violation(&mut self, node: NodeId, invariant: String, detail: String) {
        let seq = self.recorder.begin(trace::TAG_VIOLATION, self.now, node);
        self.recorder.bytes(invariant.as_bytes());
        self.recorder.bytes(detail.as_bytes());
        if self.recorder.keep {
            self.recorder.keep_event(
                seq,
                self.now,
                node,
                EventKind::Violation {
                    invariant: invariant.clone(),
                    detail: detail.clone(),
                },
            );
        }
        self.violations
            .push(Violation::new(invariant, node, self.now, detail));
    }

    fn finish(mut self, end: EndReason) -> RunReport<A> {
        let mut outcome = if self.violations.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Violation
        };
        if end != EndReason::Violation {
            let crashed: Vec<NodeId> = (0..self.nodes.len())
                .filter(|&i| self.nodes[i].crashed)
                .map(|i| NodeId(i as u32))
                .collect();
            let run_end = RunEnd {
                now: self.now,
                reason: end,
                actors: &self.actors,
                crashed: &crashed,
            };
            let mut failed = Vec::new();
            for invariant in &mut self.invariants {
                if let Err(detail) = invariant.at_end(&run_end) {
                    failed.push((invariant.name().to_string(), detail));
                }
            }
            let waiting: Vec<(NodeId, String)> = self
                .actors
                .iter()
                .enumerate()
                .filter(|(i, _)| !self.nodes[*i].crashed)
                .filter_map(|(i, a)| a.waiting_for().map(|w| (NodeId(i as u32), w)))
                .collect();
            // End-of-run failures are attributed to node 0: no single node is at fault.
            for (name, detail) in failed {
                self.violation(NodeId(0), name, detail);
            }
            if end == EndReason::Quiescent && (!self.violations.is_empty() || !waiting.is_empty()) {
                outcome = Outcome::Stalled;
                for (node, what) in &waiting {
                    self.violations
                        .push(Violation::stall(*node, self.now, what));
                }
            } else if !self.violations.is_empty() {
                outcome = Outcome::Violation;
            }
        }
        let digest = self.recorder.finish();
        let nodes: Vec<NodeStats> = self.nodes.into_iter().map(|n| n.stats).collect();
        RunReport {
            result: RunResult {
                seed: self.config.seed,
                outcome,
                end,
                messages_sent: nodes.iter().map(|n| n.messages_sent).sum(),
                messages_dropped: nodes.iter().map(|n| n.messages_dropped).sum(),
                messages_delivered: self.messages_delivered,
                violations: self.violations,
                sim_time: self.now,
                events: self.recorder.next_seq,
                nodes,
                digest,
                coverage: self.coverage.map(|c| crate::outcome::Coverage {
                    states: c.states.into_iter().collect(),
                    happens_before: c.happens_before.into_iter().collect(),
                    rounds: c.rounds,
                }),
            },
            trace: std::mem::take(&mut self.recorder.events),
            actors: self.actors,
        }
    }
}

enum Handler<A: Actor> {
    Start,
    Message(NodeId, A::Msg),
    Timer(A::Timer),
}

#[cfg(test)]
mod engine_assertions {
    //! The engine's own invariants stop a broken run at once: each test breaks the
    //! engine's state the way a scheduler bug would, and expects the run to panic.

    use super::*;
    use crate::{Actor, Context, Latency, NodeId, SimpleNetwork};

    /// Sends one message to node 1 on start.
    struct Ping;

    impl Actor for Ping {
        type Msg = u64;
        type Timer = ();
        type Output = u64;

        fn on_start(&mut self, cx: &mut Context<Self>) {
            cx.send(NodeId(1), 7);
        }
        fn on_message(&mut self, _from: NodeId, _msg: u64, _cx: &mut Context<Self>) {}
        fn on_timer(&mut self, _timer: (), _cx: &mut Context<Self>) {}
    }

    fn two_pings() -> Simulation<Ping> {
        let network = SimpleNetwork {
            latency: Latency::Constant { ns: 1_000_000 },
            loss: 0.0,
        };
        Simulation::new(SimConfig::new(1), vec![Ping, Ping], network)
    }

    #[test]
    fn an_intact_engine_runs_to_the_end() {
        assert_eq!(two_pings().run().end, EndReason::Quiescent);
    }

    #[test]
    #[should_panic(expected = "simulator bug: an event due at")]
    fn an_event_due_before_the_current_time_stops_the_run() {
        let mut sim = two_pings();
        sim.now = Time(5_000_000);
        sim.run();
    }

    #[test]
    #[should_panic(expected = "delivered to n1 before it was sent")]
    fn a_delivery_of_a_message_never_sent_stops_the_run() {
        let mut sim = two_pings();
        sim.schedule(
            Time(1),
            Pending::Deliver {
                from: NodeId(0),
                to: NodeId(1),
                id: 1_000,
                bytes: 8,
                msg: 7,
            },
        );
        sim.run();
    }
}

#[cfg(test)]
mod live_timers {
    use super::*;

    #[test]
    fn live_timers_are_a_set_of_ids() {
        let mut timers = LiveTimers::default();
        let mut model = BTreeSet::new();
        // Ids in increasing order (the common case), then out of order and repeated.
        for id in [1, 2, 5, 9, 3, 5, 0, 12, 7] {
            timers.insert(TimerId(id));
            model.insert(TimerId(id));
        }
        for id in [5, 5, 12, 4, 0] {
            timers.remove(TimerId(id));
            model.remove(&TimerId(id));
        }
        for id in 0..14 {
            assert_eq!(
                timers.contains(TimerId(id)),
                model.contains(&TimerId(id)),
                "{id}"
            );
        }
        assert_eq!(timers.0, model.iter().copied().collect::<Vec<_>>());
        timers.clear();
        assert!(!timers.contains(TimerId(1)));
    }
}
