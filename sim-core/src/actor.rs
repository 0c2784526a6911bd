//! The actor contract: sans-IO state machines that record their effects in a [`Context`].

use crate::rng::SimRng;
use crate::time::{duration_ns, Time};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::fmt::{self, Debug};
use std::time::Duration;

/// Identifies a node (an actor) within one run: `0..n`, in the order actors were added.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeId(pub u32);

impl NodeId {
    pub const fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}

/// Names one timer of one node, for [`Context::cancel_timer`]. Ids are never reused by a node.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TimerId(pub u64);

/// What a message must be to cross a network: cloned for broadcast, encoded (bincode) for
/// the wire and the trace digest, printed (Debug) for trace summaries.
pub trait Message: Clone + Debug + Serialize + DeserializeOwned + 'static {}
impl<T: Clone + Debug + Serialize + DeserializeOwned + 'static> Message for T {}

/// A protocol participant. Handlers are pure with respect to the outside world: they never
/// block, sleep, spawn, read a clock or touch a socket; they record effects in `cx`.
///
/// Roles of one protocol (clients, servers, replicas) share one `Msg` type; a protocol with
/// several roles implements `Actor` for an enum of them.
///
/// ```
/// use rehearsal_sim_core::{Actor, Context, NodeId};
///
/// /// Replies `n + 1` to every number it receives.
/// struct Incrementer;
/// impl Actor for Incrementer {
///     type Msg = u64;
///     type Timer = ();
///     type Output = u64;
///     fn on_start(&mut self, _cx: &mut Context<Self>) {}
///     fn on_message(&mut self, from: NodeId, n: u64, cx: &mut Context<Self>) {
///         cx.output(n);
///         cx.send(from, n + 1);
///     }
///     fn on_timer(&mut self, _timer: (), _cx: &mut Context<Self>) {}
/// }
/// ```
pub trait Actor: Sized + 'static {
    type Msg: Message;
    type Timer: Clone + Debug + PartialEq + 'static;
    /// What checkers observe: commits, decisions, published results.
    type Output: Clone + Debug + Serialize + 'static;

    fn on_start(&mut self, cx: &mut Context<Self>);
    fn on_message(&mut self, from: NodeId, msg: Self::Msg, cx: &mut Context<Self>);
    fn on_timer(&mut self, timer: Self::Timer, cx: &mut Context<Self>);

    /// What this node still waits for, if anything; asked when a run goes quiet with work
    /// outstanding, to explain the stall (e.g. `"shares from n2, n4"`).
    fn waiting_for(&self) -> Option<String> {
        None
    }

    /// Test-only: the Byzantine behaviours this protocol's nodes can be switched to by a
    /// [`Fault::Byzantine`](crate::Fault::Byzantine) (besides `correct`, which every
    /// protocol that offers any must accept).
    fn byzantine_behaviors() -> &'static [&'static str] {
        &[]
    }

    /// Test-only: whether this node may switch to `behavior` (one this protocol offers), asked
    /// when a scenario schedules the switch, so that naming a node that cannot (a client,
    /// say) is an error in the scenario rather than a failure of the run.
    fn can_turn_byzantine(&self, _behavior: &str) -> Result<(), String> {
        Ok(())
    }

    /// Test-only: switches this node to `behavior`, one of
    /// [`byzantine_behaviors`](Actor::byzantine_behaviors) or `correct`. An `Err` says why
    /// this node cannot (a client, say); the simulator reports it as a scenario error.
    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        Err(format!(
            "this protocol has no Byzantine behaviour `{behavior}`"
        ))
    }

    /// Test-only: changes `msg`, which this node is sending, by one small step (a view or
    /// sequence number ± 1, another digest, a dropped field), as round-based Byzantine
    /// fuzzing does to a faulty sender's messages, drawing any choice from `rng`; says what
    /// it changed, or `None` when this message has nothing to change. Protocols implement
    /// [`Mutate`] on their message type and forward to it, then sign the changed message
    /// again with this node's own key where it is signed: the sender is the faulty one, so
    /// its signature on what it changed is valid.
    ///
    /// Before its first message is mutated the simulator switches the node to the behaviour
    /// [`FUZZED`], which a protocol that mutates messages must offer: the node keeps running
    /// the correct protocol, but announces itself faulty, so that checks that trust what a
    /// correct node says of itself leave it out.
    fn mutate_message(&self, _msg: &mut Self::Msg, _rng: &mut SimRng) -> Option<String> {
        None
    }

    /// The kind of a message (`"prepare"`, `"vote"`), for coverage signals that summarise
    /// which kinds a node received before it sent; one kind for every message by default.
    fn message_kind(_msg: &Self::Msg) -> &'static str {
        "message"
    }

    /// A coarse summary of this node's state for coverage-guided search (role, view or a
    /// capped view, phase, whether it holds a certificate), packed into a number; `0` says
    /// there is none. Each distinct value a run reaches is one coverage point, so keep the
    /// summary coarse: a few thousand values per protocol at most, not one per
    /// request.
    fn abstract_state(&self) -> u64 {
        0
    }
}

/// Test-only: the Byzantine behaviour of a node whose messages round-based Byzantine
/// fuzzing mutates ([`Actor::mutate_message`]): the correct protocol, counted as faulty.
pub const FUZZED: &str = "fuzzed";

/// Test-only: the Byzantine behaviour of both instances of a twinned node
/// ([`Simulation::add_twin`](crate::Simulation::add_twin)): the correct protocol, counted
/// as faulty.
pub const TWIN: &str = "twin";

/// Whether `behavior` is one the testbed itself switches nodes to ([`TWIN`], [`FUZZED`]),
/// rather than a misbehaviour for scenarios and swarm mode to draw.
pub fn testbed_behavior(behavior: &str) -> bool {
    behavior == TWIN || behavior == FUZZED
}

/// Test-only: how a protocol's message changes by one small step under round-based
/// Byzantine fuzzing (see [`Actor::mutate_message`]).
pub trait Mutate {
    /// Changes `self` by one small step drawn from `rng` and says what changed, or returns
    /// `None` (leaving `self` as it was) when there is nothing to change.
    fn mutate(&mut self, rng: &mut SimRng) -> Option<String>;
}

/// One effect recorded by a handler, applied by the runtime after the handler returns.
#[derive(Debug, Clone)]
pub enum Effect<A: Actor> {
    Send {
        to: NodeId,
        msg: A::Msg,
        /// A later copy of a broadcast: the same message as the `Send` just before it
        /// (the simulator encodes it once for all its recipients).
        copy: bool,
    },
    SetTimer {
        id: TimerId,
        after: Duration,
        timer: A::Timer,
    },
    CancelTimer {
        id: TimerId,
    },
    Output(A::Output),
    Annotate(String),
    /// Durable state (bincode bytes) that survives a crash, handed to the restart constructor.
    Persist(Vec<u8>),
    /// The node entered this round (view), see [`Context::enter_round`].
    Round(u64),
}

/// The one context type every runtime hands to handlers. Effects are buffered and applied
/// by the runtime when the handler returns, so a runtime may batch them.
pub struct Context<'a, A: Actor> {
    me: NodeId,
    now: Time,
    rng: &'a mut SimRng,
    next_timer: &'a mut u64,
    effects: &'a mut Vec<Effect<A>>,
    charged_ns: u64,
}

impl<'a, A: Actor> Context<'a, A> {
    /// For runtimes: a context for one handler call of node `me` at time `now`.
    /// `next_timer` is the node's timer-id counter; `effects` should be empty.
    pub fn new(
        me: NodeId,
        now: Time,
        rng: &'a mut SimRng,
        next_timer: &'a mut u64,
        effects: &'a mut Vec<Effect<A>>,
    ) -> Self {
        Context {
            me,
            now,
            rng,
            next_timer,
            effects,
            charged_ns: 0,
        }
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Virtual time in the simulator, monotonic time on hardware.
    pub fn now(&self) -> Time {
        self.now
    }

    /// This node's random stream: seeded per node in the simulator.
    pub fn rng(&mut self) -> &mut SimRng {
        self.rng
    }

    pub fn send(&mut self, to: NodeId, msg: A::Msg) {
        self.effects.push(Effect::Send {
            to,
            msg,
            copy: false,
        });
    }

    /// Sends a copy of `msg` to each of `to`, in order.
    pub fn broadcast(&mut self, to: impl IntoIterator<Item = NodeId>, msg: A::Msg) {
        for (i, node) in to.into_iter().enumerate() {
            self.effects.push(Effect::Send {
                to: node,
                msg: msg.clone(),
                copy: i > 0,
            });
        }
    }

    /// Fires `timer` after `after` unless cancelled first.
    pub fn set_timer(&mut self, after: Duration, timer: A::Timer) -> TimerId {
        let id = TimerId(*self.next_timer);
        *self.next_timer += 1;
        self.effects.push(Effect::SetTimer { id, after, timer });
        id
    }

    /// Cancels a timer; cancelling one that already fired or was cancelled does nothing.
    pub fn cancel_timer(&mut self, id: TimerId) {
        self.effects.push(Effect::CancelTimer { id });
    }

    /// Reports a value to the run's checkers (commit, decide, publish).
    pub fn output(&mut self, value: A::Output) {
        self.effects.push(Effect::Output(value));
    }

    /// Marks a point of interest in the trace (a phase change, a decision).
    pub fn annotate(&mut self, label: impl Into<String>) {
        self.effects.push(Effect::Annotate(label.into()));
    }

    /// Saves `state` as this node's durable state (like an fsync'd file): after a crash,
    /// the protocol's restart constructor receives the last state saved. Replaces any
    /// earlier state. A state that cannot be encoded is not saved and the error returned.
    pub fn persist<S: Serialize>(&mut self, state: &S) -> Result<(), bincode::error::EncodeError> {
        // Most durable states are small but not tiny: start past the first few doublings.
        let mut bytes = Vec::with_capacity(512);
        crate::codec::encode_into(state, &mut bytes)?;
        self.effects.push(Effect::Persist(bytes));
        Ok(())
    }

    /// Reports that this node is now in round (view) `round`: the trace records it when it
    /// changes, and scenarios may trigger on it (`@round 5 partition 0,1 | 2,3`). Report the
    /// first round in `on_start`, and each later one as the node moves to it.
    pub fn enter_round(&mut self, round: u64) {
        self.effects.push(Effect::Round(round));
    }

    /// Models CPU cost: in the simulator the node stays busy this much longer and its sends
    /// leave after it; a no-op on hardware.
    pub fn charge(&mut self, cost: Duration) {
        self.charged_ns = self.charged_ns.saturating_add(duration_ns(cost));
    }

    /// For runtimes: the CPU cost charged during this handler call.
    pub fn charged(&self) -> Duration {
        Duration::from_nanos(self.charged_ns)
    }
}
