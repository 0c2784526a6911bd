//! The discrete-event simulator: one thread, one event queue ordered by (virtual time,
//! tie-breaker), every random choice drawn from streams derived from one master seed.

use crate::actor::{Actor, Context, Effect, NodeId, TimerId};
use crate::invariant::{EndReason, Invariant, RunEnd};
use crate::network::{Fate, NetworkModel, Packet};
use crate::rng::{derive_rng, SimRng};
use crate::stats::NodeStats;
use crate::time::Time;
use crate::trace::{self, summarize, Digest, EventKind, Recorder, TraceEvent};
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};

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
}

impl SimConfig {
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            deadline: None,
            keep_trace: false,
            events_max: 100_000_000,
        }
    }
}

/// The verdict of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// An invariant failed (a safety check, or a liveness check at the deadline).
    Violation,
    /// The run went quiet with work outstanding.
    Stalled,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Violation => "violation",
            Outcome::Stalled => "stalled",
        }
    }
}

/// Everything a run yields.
#[derive(Debug)]
pub struct RunReport<A: Actor> {
    pub seed: u64,
    pub outcome: Outcome,
    pub end: EndReason,
    /// `"invariant: detail"` for every failed check, in the order found.
    pub violations: Vec<String>,
    /// For a stall: what each waiting node said it waits for.
    pub waiting: Vec<(NodeId, String)>,
    pub sim_time: Time,
    /// Number of trace events (also the sequence number the next one would have had).
    pub events: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    pub nodes: Vec<NodeStats>,
    pub digest: Digest,
    /// The events, when [`SimConfig::keep_trace`] was set; empty otherwise.
    pub trace: Vec<TraceEvent>,
    /// The actors as the run left them.
    pub actors: Vec<A>,
}

enum Pending<A: Actor> {
    Start {
        node: NodeId,
    },
    Deliver {
        from: NodeId,
        to: NodeId,
        id: u64,
        msg: A::Msg,
    },
    Timer {
        node: NodeId,
        id: TimerId,
        timer: A::Timer,
    },
}

impl<A: Actor> Pending<A> {
    fn node(&self) -> NodeId {
        match self {
            Pending::Start { node } | Pending::Timer { node, .. } => *node,
            Pending::Deliver { to, .. } => *to,
        }
    }
}

struct Entry<A: Actor> {
    time: Time,
    /// Tie-breaker among events at one time: the order they were scheduled in.
    order: u64,
    event: Pending<A>,
}

impl<A: Actor> PartialEq for Entry<A> {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.order) == (other.time, other.order)
    }
}
impl<A: Actor> Eq for Entry<A> {}
impl<A: Actor> PartialOrd for Entry<A> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<A: Actor> Ord for Entry<A> {
    // BinaryHeap is a max-heap: reverse so the earliest (time, order) pops first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.order).cmp(&(self.time, self.order))
    }
}

/// Simulator-side state of one node.
struct NodeSlot {
    rng: SimRng,
    net_rng: SimRng,
    next_timer: u64,
    /// Timers set and neither fired nor cancelled.
    live_timers: BTreeSet<TimerId>,
    /// Modelled CPU: the node handles nothing before this time.
    busy_until: Time,
    stats: NodeStats,
}

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
    nodes: Vec<NodeSlot>,
    network: Box<dyn NetworkModel>,
    invariants: Vec<Box<dyn Invariant<A>>>,
    queue: BinaryHeap<Entry<A>>,
    next_order: u64,
    now: Time,
    effects: Vec<Effect<A>>,
    encode_buf: Vec<u8>,
    recorder: Recorder,
    violations: Vec<String>,
    messages_delivered: u64,
}

impl<A: Actor> Simulation<A> {
    /// A simulation of `actors`, node `i` being `actors[i]`.
    pub fn new(config: SimConfig, actors: Vec<A>, network: impl NetworkModel + 'static) -> Self {
        let nodes = (0..actors.len() as u64)
            .map(|i| NodeSlot {
                rng: derive_rng(config.seed, "node", i),
                net_rng: derive_rng(config.seed, "net", i),
                next_timer: 0,
                live_timers: BTreeSet::new(),
                busy_until: Time::ZERO,
                stats: NodeStats::default(),
            })
            .collect();
        let recorder = Recorder::new(config.keep_trace);
        Simulation {
            config,
            actors,
            nodes,
            network: Box::new(network),
            invariants: Vec::new(),
            queue: BinaryHeap::new(),
            next_order: 0,
            now: Time::ZERO,
            effects: Vec::new(),
            encode_buf: Vec::new(),
            recorder,
            violations: Vec::new(),
            messages_delivered: 0,
        }
    }

    /// Adds an invariant checked during and at the end of the run.
    pub fn add_invariant(&mut self, invariant: impl Invariant<A> + 'static) -> &mut Self {
        self.invariants.push(Box::new(invariant));
        self
    }

    pub fn actors(&self) -> &[A] {
        &self.actors
    }

    fn schedule(&mut self, time: Time, event: Pending<A>) {
        let order = self.next_order;
        self.next_order += 1;
        self.queue.push(Entry { time, order, event });
    }

    /// Runs to quiescence, the deadline, the event bound, or the first safety violation.
    pub fn run(mut self) -> RunReport<A> {
        for i in 0..self.actors.len() {
            self.schedule(
                Time::ZERO,
                Pending::Start {
                    node: NodeId(i as u32),
                },
            );
        }
        let end = self.event_loop();
        self.finish(end)
    }

    fn event_loop(&mut self) -> EndReason {
        loop {
            if !self.violations.is_empty() {
                return EndReason::Violation;
            }
            if self.recorder.next_seq >= self.config.events_max {
                return EndReason::EventLimit;
            }
            let Some(entry) = self.queue.pop() else {
                return EndReason::Quiescent;
            };
            if let Pending::Timer { node, id, .. } = &entry.event {
                if !self.nodes[node.index()].live_timers.contains(id) {
                    continue; // cancelled: not an event, and it moves no clock
                }
            }
            if let Some(deadline) = self.config.deadline {
                if entry.time > deadline {
                    self.now = deadline;
                    return EndReason::Deadline;
                }
            }
            let node = entry.event.node();
            let busy_until = self.nodes[node.index()].busy_until;
            if entry.time < busy_until {
                // The node is still working on an earlier event: this one waits its turn.
                self.schedule(busy_until, entry.event);
                continue;
            }
            self.now = entry.time;
            self.dispatch(entry.event);
        }
    }

    fn dispatch(&mut self, event: Pending<A>) {
        let now = self.now;
        let (node, effects_start) = match event {
            Pending::Start { node } => {
                let seq = self.recorder.begin(trace::TAG_START, now, node);
                if self.recorder.keep {
                    self.recorder.keep_event(seq, now, node, EventKind::Start);
                }
                (node, Handler::<A>::Start)
            }
            Pending::Deliver { from, to, id, msg } => {
                let seq = self.recorder.begin(trace::TAG_DELIVER, now, to);
                self.recorder.field(u64::from(from.0));
                self.recorder.field(id);
                if self.recorder.keep {
                    self.recorder
                        .keep_event(seq, now, to, EventKind::Deliver { from, id });
                }
                self.messages_delivered += 1;
                let stats = &mut self.nodes[to.index()].stats;
                stats.messages_received += 1;
                (to, Handler::Message(from, msg))
            }
            Pending::Timer { node, id, timer } => {
                self.nodes[node.index()].live_timers.remove(&id);
                let seq = self.recorder.begin(trace::TAG_TIMER, now, node);
                self.recorder.field(id.0);
                if self.recorder.keep {
                    let kind = EventKind::Timer {
                        timer_id: id,
                        timer: summarize(format!("{timer:?}")),
                    };
                    self.recorder.keep_event(seq, now, node, kind);
                }
                self.nodes[node.index()].stats.timers_fired += 1;
                (node, Handler::Timer(timer))
            }
        };
        let slot = &mut self.nodes[node.index()];
        let actor = &mut self.actors[node.index()];
        let mut cx = Context::new(
            node,
            now,
            &mut slot.rng,
            &mut slot.next_timer,
            &mut self.effects,
        );
        match effects_start {
            Handler::Start => actor.on_start(&mut cx),
            Handler::Message(from, msg) => actor.on_message(from, msg, &mut cx),
            Handler::Timer(timer) => actor.on_timer(timer, &mut cx),
        }
        let charged = cx.charged();
        let departs = now.after(charged);
        slot.busy_until = departs;
        self.apply_effects(node, departs);
    }

    fn apply_effects(&mut self, node: NodeId, departs: Time) {
        let mut effects = std::mem::take(&mut self.effects);
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { to, msg } => self.send(node, to, msg, departs),
                Effect::SetTimer { id, after, timer } => {
                    self.nodes[node.index()].live_timers.insert(id);
                    let at = self.now.after(after);
                    self.schedule(at, Pending::Timer { node, id, timer });
                }
                Effect::CancelTimer { id } => {
                    self.nodes[node.index()].live_timers.remove(&id);
                }
                Effect::Output(value) => self.output(node, value),
                Effect::Annotate(label) => {
                    let seq = self.recorder.begin(trace::TAG_ANNOTATE, self.now, node);
                    self.recorder.bytes(label.as_bytes());
                    self.nodes[node.index()].stats.annotations += 1;
                    if self.recorder.keep {
                        self.recorder.keep_event(
                            seq,
                            self.now,
                            node,
                            EventKind::Annotate { label },
                        );
                    }
                }
            }
        }
        self.effects = effects;
    }

    fn send(&mut self, from: NodeId, to: NodeId, msg: A::Msg, departs: Time) {
        self.encode_buf.clear();
        let encoded = bincode::serde::encode_into_std_write(
            &msg,
            &mut self.encode_buf,
            bincode::config::standard(),
        );
        let bytes = self.encode_buf.len() as u64;
        let id = self.recorder.begin(trace::TAG_SEND, self.now, from);
        self.recorder.field(u64::from(to.0));
        self.recorder.bytes(&self.encode_buf);
        if self.recorder.keep {
            let kind = EventKind::Send {
                to,
                id,
                bytes,
                msg: summarize(format!("{msg:?}")),
            };
            self.recorder.keep_event(id, self.now, from, kind);
        }
        let stats = &mut self.nodes[from.index()].stats;
        stats.messages_sent += 1;
        stats.bytes_sent += bytes;

        let fate = if encoded.is_err() {
            Fate::Drop {
                reason: "message cannot be encoded",
            }
        } else if to.index() >= self.actors.len() {
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
            self.network
                .route(&packet, &mut self.nodes[from.index()].net_rng)
        };
        match fate {
            Fate::Deliver { delay_ns } => {
                self.nodes[to.index()].stats.bytes_received += bytes;
                let at = Time(departs.as_nanos().saturating_add(delay_ns));
                self.schedule(at, Pending::Deliver { from, to, id, msg });
            }
            Fate::Drop { reason } => {
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
        }
    }

    fn output(&mut self, node: NodeId, value: A::Output) {
        self.encode_buf.clear();
        // An output that cannot be encoded still counts; its digest record is then empty.
        let _ = bincode::serde::encode_into_std_write(
            &value,
            &mut self.encode_buf,
            bincode::config::standard(),
        );
        let seq = self.recorder.begin(trace::TAG_OUTPUT, self.now, node);
        self.recorder.bytes(&self.encode_buf);
        self.nodes[node.index()].stats.outputs += 1;
        if self.recorder.keep {
            let json = serde_json::to_value(&value)
                .unwrap_or_else(|_| serde_json::Value::String(format!("{value:?}")));
            self.recorder
                .keep_event(seq, self.now, node, EventKind::Output { value: json });
        }
        let now = self.now;
        let mut found = Vec::new();
        for invariant in &mut self.invariants {
            if let Err(detail) = invariant.on_output(node, now, &value) {
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
        self.violations.push(format!("{invariant}: {detail}"));
        if self.recorder.keep {
            self.recorder.keep_event(
                seq,
                self.now,
                node,
                EventKind::Violation { invariant, detail },
            );
        }
    }

    fn finish(mut self, end: EndReason) -> RunReport<A> {
        let mut outcome = if self.violations.is_empty() {
            Outcome::Ok
        } else {
            Outcome::Violation
        };
        let mut waiting = Vec::new();
        if matches!(
            end,
            EndReason::Quiescent | EndReason::Deadline | EndReason::EventLimit
        ) {
            let run_end = RunEnd {
                now: self.now,
                reason: end,
                actors: &self.actors,
            };
            let mut failed = Vec::new();
            for invariant in &mut self.invariants {
                if let Err(detail) = invariant.at_end(&run_end) {
                    failed.push((invariant.name().to_string(), detail));
                }
            }
            waiting = self
                .actors
                .iter()
                .enumerate()
                .filter_map(|(i, a)| a.waiting_for().map(|w| (NodeId(i as u32), w)))
                .collect();
            // Events are attributed to node 0 when no single node is at fault.
            for (name, detail) in failed {
                self.violation(NodeId(0), name, detail);
            }
            if end == EndReason::Quiescent && (!self.violations.is_empty() || !waiting.is_empty()) {
                outcome = Outcome::Stalled;
                for (node, what) in &waiting {
                    self.violations
                        .push(format!("stall: {node} waits for {what}"));
                }
            } else if !self.violations.is_empty() {
                outcome = Outcome::Violation;
            }
        }
        let digest = self.recorder.finish();
        let nodes: Vec<NodeStats> = self.nodes.into_iter().map(|n| n.stats).collect();
        RunReport {
            seed: self.config.seed,
            outcome,
            end,
            messages_sent: nodes.iter().map(|n| n.messages_sent).sum(),
            messages_dropped: nodes.iter().map(|n| n.messages_dropped).sum(),
            messages_delivered: self.messages_delivered,
            violations: self.violations,
            waiting,
            sim_time: self.now,
            events: self.recorder.next_seq,
            nodes,
            digest,
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
