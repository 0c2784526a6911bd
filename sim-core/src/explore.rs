//! Bounded exhaustive exploration of one protocol's actors: every order of message
//! deliveries, up to a bound of dropped messages and timer firings, searched depth-first or
//! breadth-first, with state fingerprints and sleep sets.
//!
//! The explorer runs the very actors the simulator and the real transports run, without
//! time: a state is every node's state, the messages in flight (a multiset) and the timers
//! armed. From a state, each of these is a step: deliver one message in flight, drop one
//! (while drops are left), fire one armed timer (while firings are left). Timers fire in
//! any order, whatever their durations: the explorer checks what an asynchronous network
//! allows, which is what the safety of a BFT protocol must survive. The explorer's clock
//! starts at zero and moves only when a timer fires, to the time it was due (a timer due
//! earlier that fires later fires late): deliveries take no time, and a protocol that
//! measures time (a tick that checks how long since progress) sees it pass as its
//! timers fire.
//!
//! **Fingerprints.** A protocol opts in by implementing [`Explorable`]: its node is
//! `Clone`, and feeds what determines its future into a hasher. Two states with the same
//! node fingerprints, the same messages in flight, the same armed timers (by value) and
//! the same budgets left are one state: the second is not explored again.
//!
//! **Reduction.** Steps at different nodes commute: a handler reads and writes its own
//! node's state, and adds to the multiset of messages in flight. The explorer keeps a
//! sleep set per state (Godefroid): after a step `t` has been explored from a state, every
//! later sibling's subtree skips `t` for as long as only steps at other nodes have been
//! taken, because that order leads to a state already reached. A state reached again with
//! a sleep set that is not a superset of the one it was explored with is explored again
//! for the steps it skipped then, so the reduction never loses a state.
//!
//! **Invariants.** Each output is checked as the simulator checks it, by the protocol's
//! invariants, against every output on the path that reached the state (a fresh set of
//! invariants is fed the path's outputs, then the new ones). A state from which nothing
//! can happen (no message in flight, no timer armed), reached without a drop, is also
//! given to the invariants' end-of-run checks. The path that reached a violation is the
//! counterexample; breadth-first search finds a shortest one.

use crate::actor::{Actor, Context, Effect, NodeId, TimerId};
use crate::invariant::{EndReason, Invariant, RunEnd};
use crate::rng::{derive_rng, SimRng};
use crate::time::Time;

pub use crate::fingerprint::Fingerprinter;
use std::collections::VecDeque;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

/// A node whose state the explorer can copy and compare.
pub trait Explorable: Actor + Clone {
    /// Feeds into `h` everything that decides what this node will do from now on: two
    /// nodes that feed the same values must behave alike from here on. Leaving something
    /// out merges states that differ (the search then misses what only one of them leads
    /// to); feeding something irrelevant (a counter no decision reads) only splits states.
    fn fingerprint(&self, h: &mut Fingerprinter);
}

/// How the state graph is searched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Search {
    /// Depth-first: little memory, deep paths soon.
    Dfs,
    /// Breadth-first: the first violation found has a shortest path.
    Bfs,
}

impl Search {
    pub fn name(self) -> &'static str {
        match self {
            Search::Dfs => "dfs",
            Search::Bfs => "bfs",
        }
    }
}

/// The bounds of one exploration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Bounds {
    pub search: Search,
    /// Steps along one path; states at this depth are counted, not expanded.
    pub depth_max: u32,
    /// Messages one path may drop.
    pub drops_max: u32,
    /// Timer firings one path may take.
    pub timer_firings_max: u32,
    /// Skip orders of steps at different nodes (sleep sets); off only to measure it.
    pub reduction: bool,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            search: Search::Bfs,
            depth_max: 64,
            drops_max: 0,
            timer_firings_max: 0,
            reduction: true,
        }
    }
}

/// One step of a path.
#[derive(Debug, Clone)]
pub enum Step<A: Actor> {
    Deliver {
        from: NodeId,
        to: NodeId,
        msg: A::Msg,
    },
    Drop {
        from: NodeId,
        to: NodeId,
        msg: A::Msg,
    },
    Fire {
        node: NodeId,
        id: TimerId,
        timer: A::Timer,
    },
}

impl<A: Actor> Step<A> {
    /// The node the step happens at (the receiver of a message).
    pub fn node(&self) -> NodeId {
        match self {
            Step::Deliver { to, .. } | Step::Drop { to, .. } => *to,
            Step::Fire { node, .. } => *node,
        }
    }
}

/// A violation and the steps from the initial state (every node started, in id order)
/// that lead to it.
#[derive(Debug, Clone)]
pub struct Counterexample<A: Actor> {
    pub invariant: String,
    pub node: NodeId,
    pub detail: String,
    pub steps: Vec<Step<A>>,
}

/// How far an exploration got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    /// Distinct states reached (the initial one included).
    pub states: u64,
    /// Steps taken (each a handler call, or a drop).
    pub steps: u64,
    /// States reached again, and not explored again.
    pub revisits: u64,
    /// Steps skipped by the reduction.
    pub slept: u64,
    /// Steps whose handler call was not made again: the same node, in the same state,
    /// handled the same message or timer at the same time before.
    pub recalled: u64,
    /// The deepest state reached.
    pub depth: u32,
    /// States left to expand (the DFS stack, the BFS frontier).
    pub pending: u64,
    /// Whether every state within the bounds has been explored.
    pub done: bool,
}

/// A message in flight, with its fingerprint (taken once, when it was sent).
struct Envelope<A: Actor> {
    from: NodeId,
    to: NodeId,
    msg: A::Msg,
    fp: u64,
}

/// One node: its actor, its random stream, its timers.
struct NodeState<A: Actor> {
    actor: A,
    rng: SimRng,
    next_timer: u64,
    /// Armed timers, in the order they were set.
    timers: Vec<Armed<A>>,
    fp: u64,
}

impl<A: Explorable> Clone for NodeState<A> {
    fn clone(&self) -> Self {
        NodeState {
            actor: self.actor.clone(),
            rng: self.rng.clone(),
            next_timer: self.next_timer,
            timers: self.timers.clone(),
            fp: self.fp,
        }
    }
}

impl<A: Explorable> NodeState<A> {
    fn refresh_fp(&mut self) {
        let mut h = Fingerprinter::default();
        self.actor.fingerprint(&mut h);
        h.write(&self.rng.get_seed());
        h.write_u128(self.rng.get_word_pos());
        for armed in &self.timers {
            h.write_u64(armed.fp);
            h.write_u64(armed.due_ns);
        }
        self.fp = h.finish();
    }
}

/// An armed timer.
struct Armed<A: Actor> {
    id: TimerId,
    timer: A::Timer,
    /// The fingerprint of the timer's value.
    fp: u64,
    /// Its duration, and when it is due on the explorer's clock (ns).
    after_ns: u64,
    due_ns: u64,
}

impl<A: Actor> Clone for Armed<A> {
    fn clone(&self) -> Self {
        Armed {
            id: self.id,
            timer: self.timer.clone(),
            fp: self.fp,
            after_ns: self.after_ns,
            due_ns: self.due_ns,
        }
    }
}

/// The outputs of a path, newest first, shared between the states along it.
struct Outputs<A: Actor> {
    node: NodeId,
    /// When it was output, on the explorer's clock.
    at: u64,
    output: A::Output,
    before: Option<Arc<Outputs<A>>>,
}

/// The path that reached a state, newest step first (breadth-first search keeps it per
/// state; depth-first search has its stack).
struct Path<A: Actor> {
    step: Step<A>,
    before: Option<Arc<Path<A>>>,
}

struct State<A: Actor> {
    nodes: Vec<Arc<NodeState<A>>>,
    /// Sorted by fingerprint (then sender and receiver): one order for one multiset.
    net: Vec<Arc<Envelope<A>>>,
    drops: u32,
    firings: u32,
    depth: u32,
    /// The explorer's clock (ns): it moves only when a timer fires, to when it was due.
    now: u64,
    outputs: Option<Arc<Outputs<A>>>,
    fp: u64,
}

impl<A: Actor> Clone for State<A> {
    fn clone(&self) -> Self {
        State {
            nodes: self.nodes.clone(),
            net: self.net.clone(),
            drops: self.drops,
            firings: self.firings,
            depth: self.depth,
            now: self.now,
            outputs: self.outputs.clone(),
            fp: self.fp,
        }
    }
}

impl<A: Actor> State<A> {
    fn refresh_fp(&mut self) {
        // Nodes in order; the multiset of messages as a sum of mixed fingerprints (no
        // order); the budgets spent (a state with more left can do more).
        let mut h = Fingerprinter::default();
        for node in &self.nodes {
            h.write_u64(node_fp(node));
        }
        let mut net: u64 = 0;
        for e in &self.net {
            net = net.wrapping_add(mix(e.fp ^ link(e.from, e.to)));
        }
        h.write_u64(net);
        h.write_u32(self.drops);
        h.write_u32(self.firings);
        h.write_u64(self.now);
        self.fp = h.finish();
    }
}

fn node_fp<A: Actor>(node: &NodeState<A>) -> u64 {
    node.fp
}

/// A link's part of an envelope's identity: the same message on another link is another
/// message in flight.
fn link(from: NodeId, to: NodeId) -> u64 {
    mix((u64::from(from.0) << 32 | u64::from(to.0)).wrapping_add(0x9e37_79b9_7f4a_7c15))
}

/// A bijective 64-bit mixer (SplitMix64's finaliser), so that sums of fingerprints do not
/// cancel in simple ways.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A step enabled at a state, by position in the state's tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    Deliver(usize),
    Drop(usize),
    Fire(usize, usize),
}

/// A step's identity across states (for sleep sets) and the node it happens at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tag {
    id: u64,
    node: u32,
}

/// A visited state: the depth and the sleep set it was expanded with.
struct Seen {
    depth: u32,
    sleep: Vec<Tag>,
}

/// Lookups only, never iterated: the order of a hash map's entries decides nothing here.
type Fingerprints = BuildHasherDefault<PassThrough>;

/// Fingerprints are hashes already: the map uses them as they are.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | u64::from(b);
        }
    }
    fn write_u64(&mut self, i: u64) {
        self.0 = i;
    }
}

#[allow(clippy::disallowed_types)] // keyed by fingerprint, never iterated (see `Fingerprints`)
type SeenMap = std::collections::HashMap<u64, Seen, Fingerprints>;

/// What a handler call did: the node's state after it, the messages it sent, its
/// outputs.
struct Transition<A: Actor> {
    node: Arc<NodeState<A>>,
    sends: Vec<Arc<Envelope<A>>>,
    outputs: Vec<(NodeId, A::Output)>,
}

/// Handler calls remembered, by [`transition_key`].
#[allow(clippy::disallowed_types)] // keyed by fingerprint, never iterated (see `Fingerprints`)
type TransitionMap<A> = std::collections::HashMap<u64, Transition<A>, Fingerprints>;

/// Transitions remembered at most; the memory is emptied when it is full (a bound on
/// memory, some hundreds of MB for PBFT's nodes; which calls are made again then depends
/// only on the search's own order). Breadth-first search of PBFT makes about 2,100
/// distinct calls in its first million states; a depth-first or random search makes
/// more, as it goes deeper.
const TRANSITIONS_MAX: usize = 1 << 18;

/// A handler call's identity: the node (which, and its fingerprint: nodes whose states
/// feed the same values are still different nodes), what it handles (a message's
/// fingerprint and sender, or a timer), and the time.
fn transition_key(me: NodeId, node: u64, what: u64, from: u32, now: u64) -> u64 {
    let mut h = Fingerprinter::default();
    h.write_u32(me.0);
    h.write_u64(node);
    h.write_u64(what);
    h.write_u32(from);
    h.write_u64(now);
    h.finish()
}

/// One copy of each distinct node state, by fingerprint.
#[allow(clippy::disallowed_types)] // keyed by fingerprint, never iterated (see `Fingerprints`)
type NodeMap<A> = std::collections::HashMap<u64, Arc<NodeState<A>>, Fingerprints>;

/// The invariants of a run, made afresh for each check.
pub type InvariantFactory<A> = Box<dyn Fn() -> Vec<Box<dyn Invariant<A>>>>;

/// A state waiting in the breadth-first queue: its sleep set and the path to it.
type Queued<A> = (State<A>, Vec<Tag>, Option<Arc<Path<A>>>);

/// What a recorded step sent and output.
type Recording<A> = (Vec<Sent>, Vec<(NodeId, <A as Actor>::Output)>);

/// One frame of the depth-first stack.
struct Frame<A: Actor> {
    state: State<A>,
    moves: Vec<(Move, Tag)>,
    next: usize,
    /// The sleep set: inherited, plus each sibling explored so far.
    sleep: Vec<Tag>,
    /// The step that led here (none for the initial state).
    via: Option<Step<A>>,
}

/// An exploration in progress: call [`Explorer::run`] until it reports done or a
/// counterexample (the caller decides how long: the explorer reads no clock).
pub struct Explorer<A: Explorable> {
    bounds: Bounds,
    invariants: InvariantFactory<A>,
    seen: SeenMap,
    /// The outcome of each handler call made so far, by the node's fingerprint, what it
    /// handled and the time: a node in one state handling one message does the same in
    /// every global state it is part of, so the call is made once.
    transitions: TransitionMap<A>,
    /// Whether `transitions` is used (see [`Explorer::remember_transitions`]).
    remember: bool,
    /// Breadth-first search only: the node states reached so far. A node's state recurs
    /// in many global states (the same deliveries to it, interleaved with others'), and
    /// the frontier holds them all: each distinct one is kept once.
    nodes_seen: NodeMap<A>,
    stack: Vec<Frame<A>>,
    queue: VecDeque<Queued<A>>,
    stats: Stats,
    found: Option<Counterexample<A>>,
    effects: Vec<Effect<A>>,
    /// The initial state, from which a counterexample is walked again to record it.
    root: Option<State<A>>,
    /// The initial state's sends, in the order the nodes made them.
    root_sends: Vec<Sent>,
    root_outputs: Vec<(NodeId, A::Output)>,
    /// While a counterexample is recorded: the sends and outputs of the last step.
    recording: Option<Recording<A>>,
}

/// What a step produced.
enum Applied<A: Actor> {
    Next(State<A>, Step<A>),
    Violation(Step<A>, String, NodeId, String),
}

impl<A: Explorable> Explorer<A> {
    /// An exploration from `actors` started in id order; node `i` draws from the stream
    /// `derive_rng(seed, "node", i)`, as in the simulator.
    pub fn new(actors: Vec<A>, seed: u64, invariants: InvariantFactory<A>, bounds: Bounds) -> Self {
        let mut explorer = Explorer {
            bounds,
            invariants,
            seen: SeenMap::default(),
            nodes_seen: NodeMap::default(),
            transitions: TransitionMap::default(),
            remember: true,
            stack: Vec::new(),
            queue: VecDeque::new(),
            stats: Stats::default(),
            found: None,
            effects: Vec::new(),
            root: None,
            root_sends: Vec::new(),
            root_outputs: Vec::new(),
            recording: None,
        };
        let mut state = State {
            nodes: Vec::with_capacity(actors.len()),
            net: Vec::new(),
            drops: 0,
            firings: 0,
            depth: 0,
            now: 0,
            outputs: None,
            fp: 0,
        };
        for (i, actor) in actors.into_iter().enumerate() {
            let mut node = NodeState {
                actor,
                rng: derive_rng(seed, "node", i as u64),
                next_timer: 0,
                timers: Vec::new(),
                fp: 0,
            };
            node.refresh_fp();
            state.nodes.push(Arc::new(node));
        }
        let mut start_outputs = Vec::new();
        for i in 0..state.nodes.len() {
            let me = NodeId(i as u32);
            let node = Arc::make_mut(&mut state.nodes[i]);
            let mut cx = Context::new(
                me,
                Time::ZERO,
                &mut node.rng,
                &mut node.next_timer,
                &mut explorer.effects,
            );
            node.actor.on_start(&mut cx);
            let mut effects = std::mem::take(&mut explorer.effects);
            apply_effects(
                &mut state,
                me,
                &mut effects,
                &mut start_outputs,
                Some(&mut explorer.root_sends),
            );
            explorer.effects = effects;
        }
        state.net.sort_by_key(|e| (e.fp, e.from, e.to));
        for n in &mut state.nodes {
            Arc::make_mut(n).refresh_fp();
        }
        state.refresh_fp();
        explorer.stats.states = 1;
        explorer.root_outputs = start_outputs.clone();
        if let Some((invariant, node, detail)) = explorer.check_outputs(&mut state, start_outputs) {
            explorer.found = Some(Counterexample {
                invariant,
                node,
                detail,
                steps: Vec::new(),
            });
            explorer.stats.done = true;
            return explorer;
        }
        explorer.root = Some(state.clone());
        explorer.seen.insert(
            state.fp,
            Seen {
                depth: 0,
                sleep: Vec::new(),
            },
        );
        match bounds.search {
            Search::Dfs => {
                let moves = explorer.moves(&state);
                explorer.stack.push(Frame {
                    state,
                    moves,
                    next: 0,
                    sleep: Vec::new(),
                    via: None,
                });
            }
            Search::Bfs => explorer.queue.push_back((state, Vec::new(), None)),
        }
        explorer
    }

    /// Whether handler calls are remembered and not made again (on by default). Off,
    /// every step calls its handler: the same states and steps, slower; for checking the
    /// explorer.
    pub fn remember_transitions(&mut self, on: bool) -> &mut Self {
        self.remember = on;
        self.transitions.clear();
        self
    }

    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        stats.pending = match self.bounds.search {
            Search::Dfs => self.stack.len() as u64,
            Search::Bfs => self.queue.len() as u64,
        };
        stats
    }

    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// The violation found, if any.
    pub fn counterexample(&self) -> Option<&Counterexample<A>> {
        self.found.as_ref()
    }

    /// Takes at most `steps` more steps; returns the statistics after them.
    pub fn run(&mut self, steps: u64) -> Stats {
        let until = self.stats.steps.saturating_add(steps);
        while !self.stats.done && self.stats.steps < until {
            match self.bounds.search {
                Search::Dfs => self.dfs_step(),
                Search::Bfs => self.bfs_step(),
            }
        }
        self.stats()
    }

    /// The steps enabled at `state`, in one canonical order, with their tags.
    fn moves(&self, state: &State<A>) -> Vec<(Move, Tag)> {
        let mut moves = Vec::new();
        let distinct = |i: usize| {
            i == 0 || {
                let (a, b) = (&state.net[i - 1], &state.net[i]);
                a.fp != b.fp || a.from != b.from || a.to != b.to
            }
        };
        for i in 0..state.net.len() {
            if distinct(i) {
                let e = &state.net[i];
                let id = mix(e.fp ^ (u64::from(e.from.0) << 32 | u64::from(e.to.0)));
                moves.push((Move::Deliver(i), Tag { id, node: e.to.0 }));
            }
        }
        if state.drops < self.bounds.drops_max {
            for i in 0..state.net.len() {
                if distinct(i) {
                    let e = &state.net[i];
                    let id = mix(mix(e.fp ^ (u64::from(e.from.0) << 32 | u64::from(e.to.0))) ^ 1);
                    moves.push((Move::Drop(i), Tag { id, node: e.to.0 }));
                }
            }
        }
        if state.firings < self.bounds.timer_firings_max {
            for (n, node) in state.nodes.iter().enumerate() {
                for (t, armed) in node.timers.iter().enumerate() {
                    let tag = mix(mix(armed.fp ^ armed.id.0) ^ (2 + ((n as u64) << 8)));
                    moves.push((
                        Move::Fire(n, t),
                        Tag {
                            id: tag,
                            node: n as u32,
                        },
                    ));
                }
            }
        }
        moves
    }

    /// Follows one schedule from the initial state: at each state, choice `c` takes the
    /// enabled step `c mod k` of the `k` there are (in the canonical order the searches
    /// use; the bounds on drops, firings and depth hold). The walk ends when the choices
    /// run out, nothing is enabled, or a violation is found: then it is the explorer's
    /// counterexample (as [`Explorer::counterexample`] and [`Explorer::record`] give it)
    /// and is returned. A failing schedule's choices therefore shrink like any list of
    /// numbers (fewer steps, earlier choices), which is what `choices` searches rely on.
    pub fn walk(&mut self, choices: &[u32]) -> Option<&Counterexample<A>> {
        let mut state = self.root.clone()?;
        let mut steps = Vec::new();
        for &choice in choices {
            if state.depth >= self.bounds.depth_max {
                break;
            }
            let moves = self.moves(&state);
            if moves.is_empty() {
                break;
            }
            let (mv, _) = moves[choice as usize % moves.len()];
            match self.apply(&state, mv) {
                Applied::Violation(step, invariant, node, detail) => {
                    steps.push(step);
                    self.found = Some(Counterexample {
                        invariant,
                        node,
                        detail,
                        steps,
                    });
                    return self.found.as_ref();
                }
                Applied::Next(next, step) => {
                    if self.admit(next.fp, next.depth, Vec::new()).is_some() {
                        // A state no walk reached before: counted as the searches count.
                    }
                    steps.push(step);
                    state = next;
                }
            }
        }
        None
    }

    /// Takes one step from `state`.
    fn apply(&mut self, state: &State<A>, mv: Move) -> Applied<A> {
        let mut next = state.clone();
        next.depth += 1;
        self.stats.steps += 1;
        let mut outputs = Vec::new();
        let step = match mv {
            Move::Drop(i) => {
                let e = next.net.remove(i);
                next.drops += 1;
                Step::Drop {
                    from: e.from,
                    to: e.to,
                    msg: e.msg.clone(),
                }
            }
            Move::Deliver(i) => {
                let e = next.net.remove(i);
                let to = e.to;
                let key = transition_key(to, next.nodes[to.index()].fp, e.fp, e.from.0, next.now);
                if !self.recall(key, &mut next, to, &mut outputs) {
                    let sent_before = next.net.len();
                    let node = Arc::make_mut(&mut next.nodes[to.index()]);
                    let mut cx = Context::new(
                        to,
                        Time::from_nanos(next.now),
                        &mut node.rng,
                        &mut node.next_timer,
                        &mut self.effects,
                    );
                    node.actor.on_message(e.from, e.msg.clone(), &mut cx);
                    self.finish_handler(key, &mut next, to, sent_before, &mut outputs);
                }
                Step::Deliver {
                    from: e.from,
                    to,
                    msg: e.msg.clone(),
                }
            }
            Move::Fire(n, t) => {
                let me = NodeId(n as u32);
                let armed = &next.nodes[n].timers[t];
                let (id, timer) = (armed.id, armed.timer.clone());
                next.firings += 1;
                // Time moves on to when the timer is due (a timer due earlier that fires
                // later fires late: allowed, as a busy machine allows it).
                next.now = next.now.max(armed.due_ns);
                // The timer's place in the node's list names it (the node's fingerprint
                // covers the list, in order).
                let key = transition_key(me, next.nodes[n].fp, !(t as u64), u32::MAX, next.now);
                if !self.recall(key, &mut next, me, &mut outputs) {
                    let sent_before = next.net.len();
                    let node = Arc::make_mut(&mut next.nodes[n]);
                    node.timers.remove(t);
                    let mut cx = Context::new(
                        me,
                        Time::from_nanos(next.now),
                        &mut node.rng,
                        &mut node.next_timer,
                        &mut self.effects,
                    );
                    node.actor.on_timer(timer.clone(), &mut cx);
                    self.finish_handler(key, &mut next, me, sent_before, &mut outputs);
                }
                Step::Fire {
                    node: me,
                    id,
                    timer,
                }
            }
        };
        next.net.sort_by_key(|e| (e.fp, e.from, e.to));
        next.refresh_fp();
        if let Some((_, recorded)) = self.recording.as_mut() {
            recorded.extend(outputs.iter().cloned());
        }
        match self.check_outputs(&mut next, outputs) {
            Some((invariant, node, detail)) => Applied::Violation(step, invariant, node, detail),
            None => Applied::Next(next, step),
        }
    }

    /// A handler has run at `me`: applies its effects to `next`, fingerprints the node,
    /// and remembers the transition under `key` (the sends are those `next.net` gained
    /// after `sent_before`).
    fn finish_handler(
        &mut self,
        key: u64,
        next: &mut State<A>,
        me: NodeId,
        sent_before: usize,
        outputs: &mut Vec<(NodeId, A::Output)>,
    ) {
        let mut effects = std::mem::take(&mut self.effects);
        let sends = self.recording.as_mut().map(|(sends, _)| sends);
        apply_effects(next, me, &mut effects, outputs, sends);
        self.effects = effects;
        Arc::make_mut(&mut next.nodes[me.index()]).refresh_fp();
        self.share(&mut next.nodes[me.index()]);
        if self.recording.is_some() || !self.remember {
            return;
        }
        if self.transitions.len() >= TRANSITIONS_MAX {
            self.transitions.clear();
        }
        self.transitions.insert(
            key,
            Transition {
                node: Arc::clone(&next.nodes[me.index()]),
                sends: next.net[sent_before..].to_vec(),
                outputs: outputs.clone(),
            },
        );
    }

    /// Takes a step's outcome at `me` from the transitions met before, if this one (the
    /// node's state, what it handles, the time) was among them; returns whether it was.
    /// Not while a path is recorded: its sends are named as they are made.
    fn recall(
        &mut self,
        key: u64,
        next: &mut State<A>,
        me: NodeId,
        outputs: &mut Vec<(NodeId, A::Output)>,
    ) -> bool {
        if self.recording.is_some() {
            return false;
        }
        let Some(known) = self.transitions.get(&key) else {
            return false;
        };
        next.nodes[me.index()] = Arc::clone(&known.node);
        next.net.extend(known.sends.iter().cloned());
        outputs.extend(known.outputs.iter().cloned());
        self.stats.recalled += 1;
        true
    }

    /// Breadth-first search: replaces a node state just made by the copy of it kept
    /// before, if there is one, and else keeps it.
    fn share(&mut self, node: &mut Arc<NodeState<A>>) {
        if self.bounds.search != Search::Bfs {
            return;
        }
        match self.nodes_seen.entry(node.fp) {
            std::collections::hash_map::Entry::Occupied(kept) => *node = Arc::clone(kept.get()),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(Arc::clone(node));
            }
        }
    }

    /// Adds `new` outputs to the state's path and checks them (with the path's earlier
    /// outputs, by fresh invariants); at a final state, also the end-of-run checks.
    fn check_outputs(
        &self,
        state: &mut State<A>,
        new: Vec<(NodeId, A::Output)>,
    ) -> Option<(String, NodeId, String)> {
        let end = state.net.is_empty()
            && state.drops == 0
            && state.nodes.iter().all(|n| n.timers.is_empty());
        if new.is_empty() && !end {
            return None;
        }
        let mut earlier = Vec::new();
        let mut link = state.outputs.as_deref();
        while let Some(l) = link {
            earlier.push((l.node, l.at, &l.output));
            link = l.before.as_deref();
        }
        earlier.reverse();
        let mut invariants = (self.invariants)();
        let now = state.now;
        for (node, at, output) in earlier
            .iter()
            .map(|(n, at, o)| (*n, *at, *o))
            .chain(new.iter().map(|(n, o)| (*n, now, o)))
        {
            for inv in &mut invariants {
                if let Err(detail) = inv.on_output(node, Time::from_nanos(at), output) {
                    return Some((inv.name().to_string(), node, detail));
                }
            }
        }
        for (node, output) in new {
            state.outputs = Some(Arc::new(Outputs {
                node,
                at: now,
                output,
                before: state.outputs.take(),
            }));
        }
        if end {
            let actors: Vec<A> = state.nodes.iter().map(|n| n.actor.clone()).collect();
            let run_end = RunEnd {
                now: Time::from_nanos(now),
                reason: EndReason::Quiescent,
                actors: &actors,
                crashed: &[],
            };
            for inv in &mut invariants {
                if let Err(detail) = inv.at_end(&run_end) {
                    return Some((inv.name().to_string(), NodeId(0), detail));
                }
            }
        }
        None
    }

    /// Whether a state reached with `sleep` at `depth` is to be expanded, and with which
    /// sleep set; records it as seen.
    fn admit(&mut self, fp: u64, depth: u32, sleep: Vec<Tag>) -> Option<Vec<Tag>> {
        match self.seen.get_mut(&fp) {
            None => {
                self.stats.states += 1;
                self.stats.depth = self.stats.depth.max(depth);
                self.seen.insert(
                    fp,
                    Seen {
                        depth,
                        sleep: sleep.clone(),
                    },
                );
                Some(sleep)
            }
            Some(seen) => {
                // Explored before with a sleep set that skipped no more than this one, and
                // from no deeper: nothing new below.
                let covered = seen.sleep.iter().all(|t| sleep.contains(t));
                if covered && seen.depth <= depth {
                    self.stats.revisits += 1;
                    return None;
                }
                let sleep: Vec<Tag> = if covered {
                    sleep
                } else {
                    sleep
                        .into_iter()
                        .filter(|t| seen.sleep.contains(t))
                        .collect()
                };
                seen.sleep = sleep.clone();
                seen.depth = seen.depth.min(depth);
                Some(sleep)
            }
        }
    }

    /// The sleep set a child reached by `tag` inherits from `sleep`.
    fn child_sleep(&self, sleep: &[Tag], tag: Tag) -> Vec<Tag> {
        if !self.bounds.reduction {
            return Vec::new();
        }
        sleep
            .iter()
            .copied()
            .filter(|t| t.node != tag.node)
            .collect()
    }

    fn dfs_step(&mut self) {
        let Some(top) = self.stack.last_mut() else {
            self.stats.done = true;
            return;
        };
        let Some(&(mv, tag)) = top.moves.get(top.next) else {
            self.stack.pop();
            return;
        };
        top.next += 1;
        if self.bounds.reduction && top.sleep.contains(&tag) {
            self.stats.slept += 1;
            return;
        }
        let state = top.state.clone();
        let sleep = top.sleep.clone();
        let child_sleep = self.child_sleep(&sleep, tag);
        if self.bounds.reduction {
            if let Some(top) = self.stack.last_mut() {
                top.sleep.push(tag);
            }
        }
        match self.apply(&state, mv) {
            Applied::Violation(step, invariant, node, detail) => {
                let mut steps: Vec<Step<A>> =
                    self.stack.iter().filter_map(|f| f.via.clone()).collect();
                steps.push(step);
                self.found = Some(Counterexample {
                    invariant,
                    node,
                    detail,
                    steps,
                });
                self.stats.done = true;
            }
            Applied::Next(next, step) => {
                if let Some(sleep) = self.admit(next.fp, next.depth, child_sleep) {
                    if next.depth < self.bounds.depth_max {
                        let moves = self.moves(&next);
                        self.stack.push(Frame {
                            state: next,
                            moves,
                            next: 0,
                            sleep,
                            via: Some(step),
                        });
                    }
                }
            }
        }
    }

    fn bfs_step(&mut self) {
        let Some((state, mut sleep, path)) = self.queue.pop_front() else {
            self.stats.done = true;
            return;
        };
        if state.depth >= self.bounds.depth_max {
            return;
        }
        for (mv, tag) in self.moves(&state) {
            if self.bounds.reduction && sleep.contains(&tag) {
                self.stats.slept += 1;
                continue;
            }
            let child_sleep = self.child_sleep(&sleep, tag);
            if self.bounds.reduction {
                sleep.push(tag);
            }
            match self.apply(&state, mv) {
                Applied::Violation(step, invariant, node, detail) => {
                    let mut steps = vec![step];
                    let mut link = path.as_deref();
                    while let Some(l) = link {
                        steps.push(l.step.clone());
                        link = l.before.as_deref();
                    }
                    steps.reverse();
                    self.found = Some(Counterexample {
                        invariant,
                        node,
                        detail,
                        steps,
                    });
                    self.stats.done = true;
                    return;
                }
                Applied::Next(next, step) => {
                    if let Some(child_sleep) = self.admit(next.fp, next.depth, child_sleep) {
                        let path = Some(Arc::new(Path {
                            step,
                            before: path.clone(),
                        }));
                        self.queue.push_back((next, child_sleep, path));
                    }
                }
            }
        }
    }
}

/// Virtual time between two steps of a recorded counterexample: short enough that a
/// protocol's timers (milliseconds and more) do not fire during a path of thousands of
/// steps when the simulator follows the recording.
pub const STEP_NS: u64 = 1_000;

impl<A: Explorable> Explorer<A> {
    /// The counterexample's steps as trace events (the nodes start at time 0, in id
    /// order; each step comes `STEP_NS` after the one before, or, for a timer firing, when
    /// the timer is due if that is later): sends, deliveries, drops, timer firings, outputs
    /// and the violation. The simulator's schedule follower
    /// re-enacts the message fates of such a recording.
    pub fn record(&mut self) -> Option<Vec<crate::trace::TraceEvent>> {
        use crate::trace::{summarize, EventKind, TraceEvent};
        let found = self.found.clone()?;
        let mut state = self.root.clone()?;
        let mut events: Vec<TraceEvent> = Vec::new();
        // Each message in flight names the sequence number of its send event.
        // Envelopes are told apart by identity; each one named is held here, so that its
        // address is never reused by a later envelope while the path is walked.
        let mut ids: Vec<(Arc<Envelope<A>>, u64)> = Vec::new();
        for i in 0..state.nodes.len() {
            push_event(&mut events, 0, NodeId(i as u32), EventKind::Start);
        }
        let sends = self.root_sends.clone();
        name_sends(&mut events, &mut ids, &state, sends, 0);
        for (node, value) in self.root_outputs.clone() {
            push_event(
                &mut events,
                0,
                node,
                EventKind::Output {
                    value: output_json(&value),
                },
            );
        }
        // When each armed timer is due, as the simulator fires it (no clock skew here).
        let mut due: Vec<(NodeId, TimerId, u64)> = Vec::new();
        note_timers(&mut due, &state, 0);
        let mut t = 0;
        for step in &found.steps {
            let mv = self.move_of(&state, step)?;
            t += STEP_NS;
            if let Move::Fire(n, ti) = mv {
                // A firing happens when the timer is due: the simulator fires it then.
                let id = state.nodes[n].timers[ti].id;
                if let Some((_, _, at)) = due
                    .iter()
                    .find(|(node, i, _)| node.index() == n && *i == id)
                {
                    t = t.max(*at);
                }
            }
            match mv {
                Move::Deliver(i) | Move::Drop(i) => {
                    let e = &state.net[i];
                    let id = ids
                        .iter()
                        .find(|(p, _)| Arc::ptr_eq(p, e))
                        .map_or(u64::MAX, |(_, id)| *id);
                    let kind = if matches!(mv, Move::Drop(_)) {
                        EventKind::Drop {
                            to: e.to,
                            id,
                            reason: DROP_REASON.into(),
                        }
                    } else {
                        EventKind::Deliver { from: e.from, id }
                    };
                    push_event(&mut events, t, e.to, kind);
                }
                Move::Fire(n, ti) => {
                    let armed = &state.nodes[n].timers[ti];
                    let kind = EventKind::Timer {
                        timer_id: armed.id,
                        timer: summarize(format!("{:?}", armed.timer)),
                    };
                    push_event(&mut events, t, NodeId(n as u32), kind);
                }
            }
            self.recording = Some((Vec::new(), Vec::new()));
            let stats = self.stats;
            let applied = self.apply(&state, mv);
            self.stats = stats;
            let (sends, outputs) = self.recording.take().unwrap_or_default();
            let next = match applied {
                Applied::Next(next, _) => next,
                Applied::Violation(..) => state.clone(),
            };
            name_sends(&mut events, &mut ids, &next, sends, t);
            for (node, value) in outputs {
                push_event(
                    &mut events,
                    t,
                    node,
                    EventKind::Output {
                        value: output_json(&value),
                    },
                );
            }
            note_timers(&mut due, &next, t);
            state = next;
        }
        push_event(
            &mut events,
            t,
            found.node,
            EventKind::Violation {
                invariant: found.invariant.clone(),
                detail: found.detail.clone(),
            },
        );
        Some(events)
    }

    /// Shortens the counterexample: takes out steps (runs of them, then single ones), and
    /// keeps each cut after which the same invariant still breaks, following the
    /// remaining steps by what they are (a message by its link and fingerprint, a timer
    /// by its value), so a step that only a cut step made possible is left out too. At
    /// most `walks` paths are tried; returns the steps taken out. The searches' figures
    /// do not count these walks.
    pub fn minimize(&mut self, walks: usize) -> usize {
        let Some(found) = self.found.clone() else {
            return 0;
        };
        let stats = self.stats;
        let before = found.steps.len();
        let mut best = found;
        let mut tried = 0;
        let mut chunk = (best.steps.len() / 2).max(1);
        loop {
            let mut cut_any = false;
            let mut i = 0;
            while i < best.steps.len() && tried < walks {
                let end = (i + chunk).min(best.steps.len());
                let candidate: Vec<Step<A>> = best.steps[..i]
                    .iter()
                    .chain(&best.steps[end..])
                    .cloned()
                    .collect();
                tried += 1;
                match self.follow(&candidate) {
                    Some(c)
                        if c.invariant == best.invariant && c.steps.len() < best.steps.len() =>
                    {
                        best = c;
                        cut_any = true;
                    }
                    _ => i += chunk,
                }
            }
            if tried >= walks || (chunk == 1 && !cut_any) {
                break;
            }
            if !cut_any {
                chunk = (chunk / 2).max(1);
            }
        }
        self.stats = stats;
        let cut = before - best.steps.len();
        self.found = Some(best);
        cut
    }

    /// The counterexample's path as a schedule of choices (see [`Explorer::walk`]): at
    /// each state, the index of its step among those enabled there. Walking them takes
    /// the same path.
    pub fn choices(&mut self) -> Option<Vec<u32>> {
        let steps = self.found.as_ref()?.steps.clone();
        let mut state = self.root.clone()?;
        let stats = self.stats;
        let mut choices = Vec::with_capacity(steps.len());
        for step in &steps {
            let mv = self.move_of(&state, step)?;
            let moves = self.moves(&state);
            let index = moves.iter().position(|(m, _)| *m == mv)?;
            choices.push(index as u32);
            match self.apply(&state, mv) {
                Applied::Next(next, _) => state = next,
                Applied::Violation(..) => break,
            }
        }
        self.stats = stats;
        Some(choices)
    }

    /// Takes `steps` from the initial state, each that is enabled when its turn comes (and
    /// within the depth bound); the counterexample, if a violation comes.
    fn follow(&mut self, steps: &[Step<A>]) -> Option<Counterexample<A>> {
        let mut state = self.root.clone()?;
        let mut taken = Vec::new();
        for step in steps {
            if state.depth >= self.bounds.depth_max {
                break;
            }
            let Some(mv) = self.move_like(&state, step) else {
                continue;
            };
            match self.apply(&state, mv) {
                Applied::Violation(step, invariant, node, detail) => {
                    taken.push(step);
                    return Some(Counterexample {
                        invariant,
                        node,
                        detail,
                        steps: taken,
                    });
                }
                Applied::Next(next, step) => {
                    taken.push(step);
                    state = next;
                }
            }
        }
        None
    }

    /// The move at `state` that takes `step`, or failing that a timer firing like it (the
    /// same timer value at the same node, under another id: ids count the timers a node
    /// set, which a cut step can change).
    fn move_like(&self, state: &State<A>, step: &Step<A>) -> Option<Move> {
        self.move_of(state, step).or_else(|| match step {
            Step::Fire { node, timer, .. } => fire_where(state, *node, |a| a.timer == *timer),
            _ => None,
        })
    }

    /// The move at `state` that takes `step`.
    fn move_of(&self, state: &State<A>, step: &Step<A>) -> Option<Move> {
        match step {
            Step::Deliver { from, to, msg } | Step::Drop { from, to, msg } => {
                let mut h = Fingerprinter::default();
                h.encoded(msg);
                let fp = h.finish();
                let i = state
                    .net
                    .iter()
                    .position(|e| e.from == *from && e.to == *to && e.fp == fp)?;
                Some(if matches!(step, Step::Drop { .. }) {
                    Move::Drop(i)
                } else {
                    Move::Deliver(i)
                })
            }
            Step::Fire { node, id, .. } => fire_where(state, *node, |a| a.id == *id),
        }
    }
}

/// The firing of the first timer armed at `node` that `pick` picks.
fn fire_where<A: Actor>(
    state: &State<A>,
    node: NodeId,
    pick: impl Fn(&Armed<A>) -> bool,
) -> Option<Move> {
    let t = state
        .nodes
        .get(node.index())?
        .timers
        .iter()
        .position(pick)?;
    Some(Move::Fire(node.index(), t))
}

/// A violation found, in words: what a command line or a test reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Found {
    pub invariant: String,
    pub node: NodeId,
    pub detail: String,
    /// The path, one line per step (`n1 -> n0: Prepare(..)`, `drop n1 -> n0: ..`,
    /// `n2 fires Tick`).
    pub steps: Vec<String>,
}

/// An exploration of some protocol, its node type hidden: what the command line drives.
pub trait Exploration {
    /// Takes at most `steps` more steps (see [`Explorer::run`]).
    fn run(&mut self, steps: u64) -> Stats;
    fn stats(&self) -> Stats;
    fn bounds(&self) -> Bounds;
    /// The violation found, if any.
    fn found(&self) -> Option<Found>;
    /// The counterexample as trace events (see [`Explorer::record`]).
    fn record(&mut self) -> Option<Vec<crate::trace::TraceEvent>>;
    /// Follows one schedule of choices (see [`Explorer::walk`]); the violation, if any.
    fn walk(&mut self, choices: &[u32]) -> Option<Found>;
    /// See [`Explorer::remember_transitions`].
    fn remember_transitions(&mut self, on: bool);
    /// See [`Explorer::minimize`].
    fn minimize(&mut self, walks: usize) -> usize;
    /// See [`Explorer::choices`].
    fn choices(&mut self) -> Option<Vec<u32>>;
}

impl<A: Explorable> Exploration for Explorer<A> {
    fn run(&mut self, steps: u64) -> Stats {
        Explorer::run(self, steps)
    }
    fn stats(&self) -> Stats {
        Explorer::stats(self)
    }
    fn bounds(&self) -> Bounds {
        self.bounds
    }
    fn found(&self) -> Option<Found> {
        let c = self.found.as_ref()?;
        let steps = c
            .steps
            .iter()
            .map(|step| match step {
                Step::Deliver { from, to, msg } => {
                    format!(
                        "{from} -> {to}: {}",
                        crate::trace::summarize(format!("{msg:?}"))
                    )
                }
                Step::Drop { from, to, msg } => {
                    format!(
                        "drop {from} -> {to}: {}",
                        crate::trace::summarize(format!("{msg:?}"))
                    )
                }
                Step::Fire { node, timer, .. } => format!("{node} fires {timer:?}"),
            })
            .collect();
        Some(Found {
            invariant: c.invariant.clone(),
            node: c.node,
            detail: c.detail.clone(),
            steps,
        })
    }
    fn record(&mut self) -> Option<Vec<crate::trace::TraceEvent>> {
        Explorer::record(self)
    }
    fn remember_transitions(&mut self, on: bool) {
        Explorer::remember_transitions(self, on);
    }
    fn minimize(&mut self, walks: usize) -> usize {
        Explorer::minimize(self, walks)
    }
    fn choices(&mut self) -> Option<Vec<u32>> {
        Explorer::choices(self)
    }
    fn walk(&mut self, choices: &[u32]) -> Option<Found> {
        Explorer::walk(self, choices)?;
        self.found()
    }
}

/// An exploration of `nodes` (started in id order, node `i` drawing from the stream
/// `derive_rng(seed, "node", i)`), checked by the invariants `invariants` makes.
pub fn explorer<A: Explorable>(
    nodes: Vec<A>,
    seed: u64,
    invariants: impl Fn() -> Vec<Box<dyn Invariant<A>>> + 'static,
    bounds: Bounds,
) -> Box<dyn Exploration> {
    Box::new(Explorer::new(nodes, seed, Box::new(invariants), bounds))
}

/// The reason a recorded counterexample gives for a message the explorer dropped.
pub const DROP_REASON: &str = "explore: dropped";

/// Notes when each timer armed in `state` and not noted yet is due, if set at `t`.
fn note_timers<A: Actor>(due: &mut Vec<(NodeId, TimerId, u64)>, state: &State<A>, t: u64) {
    for (n, node) in state.nodes.iter().enumerate() {
        for armed in &node.timers {
            let node_id = NodeId(n as u32);
            if !due.iter().any(|(m, i, _)| *m == node_id && *i == armed.id) {
                due.push((node_id, armed.id, t.saturating_add(armed.after_ns)));
            }
        }
    }
}

fn push_event(
    events: &mut Vec<crate::trace::TraceEvent>,
    t: u64,
    node: NodeId,
    kind: crate::trace::EventKind,
) {
    let seq = events.len() as u64;
    events.push(crate::trace::TraceEvent { seq, t, node, kind });
}

fn output_json<T: serde::Serialize + std::fmt::Debug>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_else(|_| serde_json::Value::String(format!("{value:?}")))
}

/// Writes the send events of `sends` (made in this order) and names the envelopes of
/// `state` they became.
fn name_sends<A: Actor>(
    events: &mut Vec<crate::trace::TraceEvent>,
    ids: &mut Vec<(Arc<Envelope<A>>, u64)>,
    state: &State<A>,
    sends: Vec<Sent>,
    t: u64,
) {
    for sent in sends {
        let id = events.len() as u64;
        let envelope = state.net.iter().find(|e| {
            e.from == sent.from
                && e.to == sent.to
                && e.fp == sent.fp
                && !ids.iter().any(|(named, _)| Arc::ptr_eq(named, e))
        });
        if let Some(e) = envelope {
            ids.push((Arc::clone(e), id));
        }
        push_event(
            events,
            t,
            sent.from,
            crate::trace::EventKind::Send {
                to: sent.to,
                id,
                bytes: sent.bytes,
                msg: sent.label,
            },
        );
    }
}

/// A message as the trace shows its send.
#[derive(Debug, Clone)]
struct Sent {
    from: NodeId,
    to: NodeId,
    fp: u64,
    label: String,
    bytes: u64,
}

/// Applies a handler's effects to `state`: sends join the messages in flight, timers are
/// armed and cancelled, outputs are collected; annotations and saves mean nothing here.
fn apply_effects<A: Explorable>(
    state: &mut State<A>,
    me: NodeId,
    effects: &mut Vec<Effect<A>>,
    outputs: &mut Vec<(NodeId, A::Output)>,
    mut sends: Option<&mut Vec<Sent>>,
) {
    let nodes = state.nodes.len();
    for effect in effects.drain(..) {
        match effect {
            Effect::Send { to, msg, .. } => {
                if to.index() >= nodes {
                    continue; // no such node: lost, as the simulator loses it
                }
                // Encoded straight into the hasher: no copy of the message per send.
                let mut h = Fingerprinter::default();
                h.encoded(&msg);
                let fp = h.finish();
                if let Some(sends) = sends.as_deref_mut() {
                    sends.push(Sent {
                        from: me,
                        to,
                        fp,
                        label: crate::trace::summarize(format!("{msg:?}")),
                        bytes: crate::codec::encoded_len(&msg).unwrap_or(0) as u64,
                    });
                }
                state.net.push(Arc::new(Envelope {
                    from: me,
                    to,
                    msg,
                    fp,
                }));
            }
            Effect::SetTimer { id, timer, after } => {
                let fp = {
                    let mut h = Fingerprinter::default();
                    h.write(format!("{timer:?}").as_bytes());
                    h.finish()
                };
                let after_ns = crate::time::duration_ns(after);
                let due_ns = state.now.saturating_add(after_ns);
                Arc::make_mut(&mut state.nodes[me.index()])
                    .timers
                    .push(Armed {
                        id,
                        timer,
                        fp,
                        after_ns,
                        due_ns,
                    });
            }
            Effect::CancelTimer { id } => {
                Arc::make_mut(&mut state.nodes[me.index()])
                    .timers
                    .retain(|armed| armed.id != id);
            }
            Effect::Output(value) => outputs.push((me, value)),
            Effect::Annotate(_) | Effect::Persist(_) | Effect::Round(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};
    use std::time::Duration;

    /// A toy: nodes `1..` each send their id to node 0 when they start, and (with
    /// `timer`) node 0 arms a timer when it starts. Node 0 outputs each message it gets
    /// and `Fired` when its timer fires.
    #[derive(Clone, Debug)]
    struct Toy {
        got: Vec<u32>,
        timer: bool,
        /// Senders send to node `to` instead of node 0 when set (sender i to node i + 3).
        spread: bool,
    }

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum Out {
        Got(u32),
        Fired,
    }

    impl Actor for Toy {
        type Msg = u32;
        type Timer = ();
        type Output = Out;
        fn on_start(&mut self, cx: &mut Context<Self>) {
            let me = cx.me().0;
            if me == 0 && self.timer {
                cx.set_timer(Duration::from_secs(1), ());
            }
            if (1..=3).contains(&me) {
                let to = if self.spread {
                    NodeId(me + 3)
                } else {
                    NodeId(0)
                };
                cx.send(to, me);
            }
        }
        fn on_message(&mut self, _from: NodeId, msg: u32, cx: &mut Context<Self>) {
            self.got.push(msg);
            cx.output(Out::Got(msg));
        }
        fn on_timer(&mut self, _timer: (), cx: &mut Context<Self>) {
            cx.output(Out::Fired);
        }
    }

    impl Explorable for Toy {
        fn fingerprint(&self, h: &mut Fingerprinter) {
            h.value(&self.got);
        }
    }

    /// Fails when node 0 gets `second` before `first`, or (with `no_fire`) when a timer fires.
    struct Order {
        first: u32,
        second: u32,
        seen_first: bool,
        no_fire: bool,
    }

    impl Invariant<Toy> for Order {
        fn name(&self) -> &str {
            "order"
        }
        fn on_output(&mut self, _node: NodeId, _now: Time, output: &Out) -> Result<(), String> {
            match *output {
                Out::Got(m) if m == self.first => self.seen_first = true,
                Out::Got(m) if m == self.second && !self.seen_first => {
                    return Err(format!("{} before {}", self.second, self.first))
                }
                Out::Fired if self.no_fire => return Err("fired".into()),
                _ => {}
            }
            Ok(())
        }
    }

    fn toys(n: usize, timer: bool, spread: bool) -> Vec<Toy> {
        (0..n)
            .map(|_| Toy {
                got: Vec::new(),
                timer,
                spread,
            })
            .collect()
    }

    fn order(first: u32, second: u32, no_fire: bool) -> InvariantFactory<Toy> {
        Box::new(move || {
            vec![Box::new(Order {
                first,
                second,
                seen_first: false,
                no_fire,
            }) as Box<dyn Invariant<Toy>>]
        })
    }

    fn none() -> InvariantFactory<Toy> {
        Box::new(Vec::new)
    }

    fn bounds(search: Search) -> Bounds {
        Bounds {
            search,
            ..Bounds::default()
        }
    }

    fn explore(actors: Vec<Toy>, inv: InvariantFactory<Toy>, b: Bounds) -> Explorer<Toy> {
        let mut e = Explorer::new(actors, 1, inv, b);
        let stats = e.run(1_000_000);
        assert!(
            stats.done,
            "a toy this small is explored to the end: {stats:?}"
        );
        e
    }

    #[test]
    fn remembered_transitions_change_no_state_and_no_step() {
        for search in [Search::Dfs, Search::Bfs] {
            for (n, timer, spread, drops) in [
                (4, false, false, 0),
                (7, true, true, 1),
                (4, true, false, 2),
            ] {
                let b = Bounds {
                    drops_max: drops,
                    timer_firings_max: 1,
                    ..bounds(search)
                };
                let with = explore(toys(n, timer, spread), none(), b);
                let mut without = Explorer::new(toys(n, timer, spread), 1, none(), b);
                without.remember_transitions(false);
                without.run(1_000_000);
                let (a, b) = (with.stats(), without.stats());
                assert_eq!(b.recalled, 0);
                assert_eq!(
                    Stats { recalled: 0, ..a },
                    b,
                    "{search:?} {n} {timer} {spread} {drops}"
                );
            }
        }
        // Three messages to three nodes, in every order (no reduction): each node's
        // handling of its message is the same whichever others came first.
        let e = explore(
            toys(7, false, true),
            none(),
            Bounds {
                reduction: false,
                ..bounds(Search::Dfs)
            },
        );
        assert!(e.stats().recalled > 0, "{:?}", e.stats());
    }

    /// Node 0 sends the same message to nodes 1 and 2 when it starts; each outputs its
    /// own id when it gets it. Their states feed nothing to their fingerprints.
    #[derive(Clone, Debug)]
    struct Echo;

    impl Actor for Echo {
        type Msg = u32;
        type Timer = ();
        type Output = u32;
        fn on_start(&mut self, cx: &mut Context<Self>) {
            if cx.me() == NodeId(0) {
                cx.send(NodeId(1), 7);
                cx.send(NodeId(2), 7);
            }
        }
        fn on_message(&mut self, _from: NodeId, _msg: u32, cx: &mut Context<Self>) {
            let me = cx.me().0;
            cx.output(me);
        }
        fn on_timer(&mut self, _timer: (), _cx: &mut Context<Self>) {}
    }

    impl Explorable for Echo {
        fn fingerprint(&self, _h: &mut Fingerprinter) {}
    }

    /// Each node outputs its own id, once.
    #[derive(Default)]
    struct OwnId(Vec<u32>);

    impl Invariant<Echo> for OwnId {
        fn name(&self) -> &str {
            "own-id"
        }
        fn on_output(&mut self, node: NodeId, _now: Time, output: &u32) -> Result<(), String> {
            if *output != node.0 || self.0.contains(output) {
                return Err(format!(
                    "node {} output {output}, after {:?}",
                    node.0, self.0
                ));
            }
            self.0.push(*output);
            Ok(())
        }
    }

    #[test]
    fn one_message_on_two_links_is_two_messages_in_flight() {
        // The state where node 1's copy is delivered and the one where node 2's is differ
        // only in which copy is still in flight: four states, not three.
        for search in [Search::Dfs, Search::Bfs] {
            let inv: InvariantFactory<Echo> = Box::new(|| vec![Box::new(OwnId::default()) as _]);
            let mut e = Explorer::new(vec![Echo, Echo, Echo], 1, inv, bounds(search));
            let stats = e.run(1_000);
            assert!(stats.done && stats.states == 4, "{stats:?}");
            assert!(
                e.counterexample().is_none(),
                "{:?}",
                e.counterexample().map(|c| &c.detail)
            );
        }
    }

    #[test]
    fn a_counterexample_is_cut_to_the_steps_it_needs_and_its_choices_take_that_path() {
        // 3 before 1 breaks the order; a path that delivers 2 first has a step too many.
        let mut e = Explorer::new(
            toys(4, false, false),
            1,
            order(1, 3, false),
            bounds(Search::Dfs),
        );
        let long = (0..3u32)
            .flat_map(|a| (0..2u32).map(move |b| [a, b]))
            .find(|choices| {
                e.walk(choices)
                    .is_some_and(|c| c.steps.len() == 2 && c.steps[0].node() == NodeId(0))
            })
            .expect("a two-step path: 2, then 3");
        e.walk(&long).expect("fails again");
        let steps = e.stats().steps;
        assert_eq!(e.minimize(100), 1);
        assert_eq!(e.stats().steps, steps, "the cuts' walks are not counted");
        let found = e.counterexample().expect("still a counterexample");
        assert!(
            matches!(found.steps.as_slice(), [Step::Deliver { from, msg: 3, .. }] if *from == NodeId(3)),
            "{:?}",
            found.steps
        );
        let choices = e.choices().expect("choices");
        assert_eq!(choices.len(), 1);
        let again = e.walk(&choices).expect("the choices fail");
        assert!(matches!(
            again.steps.as_slice(),
            [Step::Deliver { msg: 3, .. }]
        ));
    }

    #[test]
    fn every_order_of_deliveries_to_one_node_is_a_state() {
        // Node 0's log is an ordered prefix of some of 1, 2, 3: 1 + 3 + 6 + 6 states.
        for search in [Search::Dfs, Search::Bfs] {
            let e = explore(toys(4, false, false), none(), bounds(search));
            assert_eq!(e.stats().states, 16, "{search:?}");
            assert!(e.counterexample().is_none());
        }
    }

    #[test]
    fn independent_deliveries_are_explored_once_per_state() {
        // Three messages to three different nodes: 2^3 states either way; the reduction
        // takes fewer steps to reach them all.
        let full = explore(
            toys(7, false, true),
            none(),
            Bounds {
                reduction: false,
                ..bounds(Search::Dfs)
            },
        );
        for search in [Search::Dfs, Search::Bfs] {
            let reduced = explore(toys(7, false, true), none(), bounds(search));
            assert_eq!(reduced.stats().states, 8, "{search:?}");
            assert_eq!(full.stats().states, 8);
            assert!(
                reduced.stats().steps < full.stats().steps,
                "{search:?}: {} steps with the reduction, {} without",
                reduced.stats().steps,
                full.stats().steps
            );
        }
    }

    #[test]
    fn a_bad_order_is_found_and_bfs_gives_a_shortest_path() {
        for search in [Search::Dfs, Search::Bfs] {
            let e = explore(toys(4, false, false), order(1, 3, false), bounds(search));
            let found = e.counterexample().expect("3 can arrive before 1");
            assert_eq!(found.invariant, "order");
            assert_eq!(found.detail, "3 before 1");
            let last = found.steps.last().expect("a step");
            assert!(
                matches!(last, Step::Deliver { from, to, msg: 3 } if *from == NodeId(3) && *to == NodeId(0))
            );
            if search == Search::Bfs {
                assert_eq!(found.steps.len(), 1, "{:?}", found.steps);
            }
        }
    }

    #[test]
    fn timers_fire_only_within_their_bound() {
        let quiet = explore(toys(4, true, false), order(0, 0, true), bounds(Search::Bfs));
        assert!(
            quiet.counterexample().is_none(),
            "no firing allowed, none happens"
        );
        let e = explore(
            toys(4, true, false),
            order(0, 0, true),
            Bounds {
                timer_firings_max: 1,
                ..bounds(Search::Bfs)
            },
        );
        let found = e.counterexample().expect("the timer fires");
        assert!(matches!(found.steps.as_slice(), [Step::Fire { node, .. }] if *node == NodeId(0)));
    }

    #[test]
    fn drops_add_the_states_where_a_message_is_lost() {
        // One sender: in flight, or delivered, or (with a drop allowed) dropped.
        let two = explore(toys(2, false, false), none(), bounds(Search::Dfs));
        assert_eq!(two.stats().states, 2);
        let three = explore(
            toys(2, false, false),
            none(),
            Bounds {
                drops_max: 1,
                ..bounds(Search::Dfs)
            },
        );
        assert_eq!(three.stats().states, 3);
    }

    #[test]
    fn the_depth_bound_stops_expansion() {
        let e = explore(
            toys(4, false, false),
            none(),
            Bounds {
                depth_max: 1,
                ..bounds(Search::Bfs)
            },
        );
        assert_eq!(
            e.stats().states,
            4,
            "the initial state and one delivery each"
        );
        assert_eq!(e.stats().depth, 1);
    }

    #[test]
    fn same_inputs_same_exploration() {
        let a = explore(
            toys(7, true, true),
            none(),
            Bounds {
                timer_firings_max: 1,
                drops_max: 1,
                ..bounds(Search::Dfs)
            },
        );
        let b = explore(
            toys(7, true, true),
            none(),
            Bounds {
                timer_firings_max: 1,
                drops_max: 1,
                ..bounds(Search::Dfs)
            },
        );
        assert_eq!(a.stats(), b.stats());
    }
}
