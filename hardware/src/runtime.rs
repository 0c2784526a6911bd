//! The node runtime: drives one [`Actor`] over one [`Transport`] by the real clock.

use crate::state_file::save_state;
use crate::transport::{SendError, Transport, TransportError};
use rehearsal_sim_core::{
    derive_rng, duration_ns, Actor, ClockSkew, Context, Effect, EndReason, Invariant, NodeId,
    NodeStats, RunEnd, SimRng, Time, TimerId, Violation,
};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

// One codec for the simulator and every real runtime (`rehearsal_sim_core::codec`), so a
// frame on the wire holds exactly the bytes the simulator counts. Re-exported under the
// names this crate has always used.
pub use rehearsal_sim_core::codec::{
    decode as decode_message, encode_into as encode_message, DECODE_BYTES_MAX,
};

/// How a [`NodeRuntime`] runs.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// Master seed: the node's `cx.rng()` is `derive_rng(seed, "node", id)`, the stream the
    /// simulator gives the same node under the same seed.
    pub seed: u64,
    /// Received frames handled per [`NodeRuntime::step`], at most.
    pub frames_per_step_max: usize,
    /// Due timers fired per [`NodeRuntime::step`], at most (a timer re-armed with zero
    /// delay cannot starve the network).
    pub timers_per_step_max: usize,
    /// Longest single wait of [`NodeRuntime::run_until`] when idle: the latency with which
    /// it notices a [`StopHandle::stop`].
    pub idle_wait_max: Duration,
    /// Bound of the queue of messages a node sends to itself, in messages.
    pub loopback_messages_max: usize,
    /// Print annotations to stderr as they happen (they are collected either way).
    pub log_annotations: bool,
    /// Print undecodable and unencodable messages and refused sends to stderr (the first
    /// one, then at every power of two of the count); they are counted either way.
    pub log_errors: bool,
    /// The instant `now()` counts from. Nodes of one process that share an epoch have
    /// comparable output times; `None` means the runtime's creation.
    pub epoch: Option<Instant>,
    /// Where `cx.persist` writes the node's durable state (see [`save_state`]); `None`
    /// keeps it in memory only ([`NodeRuntime::persisted`]). A restarted node's state is
    /// read back with [`load_state`](crate::load_state), for whoever builds its actor.
    pub state_path: Option<PathBuf>,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            seed: 0,
            frames_per_step_max: 64,
            timers_per_step_max: 64,
            idle_wait_max: Duration::from_millis(10),
            loopback_messages_max: 65_536,
            log_annotations: false,
            log_errors: true,
            epoch: None,
            state_path: None,
        }
    }
}

/// Counters of one node runtime.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeStats {
    /// The counters the simulator keeps per node, with the same meaning: messages and
    /// bincode bytes sent and delivered, sends the network dropped (here: the transport
    /// refused), timers fired, outputs and annotations.
    pub node: NodeStats,
    /// Handler calls (`on_start`, `on_message`, `on_timer`).
    pub handler_calls: u64,
    /// Received frames that did not decode into a message; dropped.
    pub messages_undecodable: u64,
    /// Messages the actor sent that could not be encoded; dropped.
    pub messages_unencodable: u64,
    /// Sends dropped because the queue towards the peer (or the loopback queue) was full.
    pub sends_dropped_queue_full: u64,
    /// Sends dropped because the transport knows no such peer.
    pub sends_dropped_unknown_peer: u64,
    /// Sends dropped because the encoded message exceeds the transport's frame limit.
    pub sends_dropped_too_large: u64,
    /// Sends dropped because the transport was closed.
    pub sends_dropped_closed: u64,
    /// Timers set.
    pub timers_set: u64,
    /// Timers cancelled before they fired.
    pub timers_cancelled: u64,
    /// Durable states saved with `cx.persist`.
    pub states_persisted: u64,
    /// Durable states that could not be written to [`RuntimeConfig::state_path`].
    pub state_write_failures: u64,
}

/// One output of one node, as the simulator's invariants see it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct OutputRecord<O> {
    /// The node that produced it.
    pub node: NodeId,
    /// When its handler ran (monotonic time since the runtime's epoch).
    pub at: Time,
    /// The value passed to `cx.output`.
    pub value: O,
}

/// One annotation of one node.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Annotation {
    /// The node that made it.
    pub node: NodeId,
    /// When its handler ran.
    pub at: Time,
    /// The label passed to `cx.annotate`.
    pub label: String,
}

/// Why [`NodeRuntime::run_until`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStop {
    /// The caller's condition became true.
    Done,
    /// The time limit passed first.
    TimedOut,
    /// [`StopHandle::stop`] was called.
    Stopped,
    /// An invariant added with [`NodeRuntime::add_invariant`] failed on an output.
    Violation,
}

/// A failure that stops the runtime (a failed transport); lost or malformed messages are
/// not errors, they are counted in [`RuntimeStats`].
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The transport failed as a whole.
    #[error("transport failed: {0}")]
    Transport(#[from] TransportError),
}

/// Stops a [`NodeRuntime`] from another thread: `run_until` returns [`RunStop::Stopped`]
/// within about [`RuntimeConfig::idle_wait_max`] (or after the step in progress).
#[derive(Debug, Clone, Default)]
pub struct StopHandle {
    stopped: Arc<AtomicBool>,
}

impl StopHandle {
    /// Asks the runtime to stop. Stays in effect until [`StopHandle::reset`].
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Withdraws a stop, so the runtime can run again.
    pub fn reset(&self) {
        self.stopped.store(false, Ordering::SeqCst);
    }
}

/// Sets a [`NodeRuntime`]'s clock error from another thread (a nemesis's `skew N OFFSET
/// [DRIFT]`): from the node's next step on, its actor reads `skew.local(now)` through
/// `cx.now()` and its timers run by that clock, as [`Fault::Skew`] does in the simulator.
/// Only what the actor sees changes: the kernel's clock, output and annotation times (kept
/// true so that nodes' outputs merge in real order) and the transport are not skewed.
///
/// ```
/// use rehearsal_hardware::ClockHandle;
/// use rehearsal_sim_core::ClockSkew;
/// let clock = ClockHandle::default();
/// clock.set_skew(ClockSkew { offset_ns: -2_000_000_000, drift_ppm: 100 });
/// assert_eq!(clock.skew().drift_ppm, 100);
/// ```
///
/// [`Fault::Skew`]: rehearsal_sim_core::Fault::Skew
#[derive(Debug, Clone, Default)]
pub struct ClockHandle {
    shared: Arc<ClockShared>,
}

#[derive(Debug, Default)]
struct ClockShared {
    /// Set by `set_skew`, cleared by the runtime when it takes the new skew: the runtime's
    /// hot path reads one atomic flag, not the lock.
    changed: AtomicBool,
    skew: Mutex<ClockSkew>,
}

impl ClockHandle {
    /// The node's clock reads `skew.local(true time)` from its next step on (replacing any
    /// earlier skew, as in the simulator; `ClockSkew::default()` removes it).
    pub fn set_skew(&self, skew: ClockSkew) {
        *self
            .shared
            .skew
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = skew;
        self.shared.changed.store(true, Ordering::Release);
    }

    /// The skew set last.
    pub fn skew(&self) -> ClockSkew {
        *self
            .shared
            .skew
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The new skew, if one was set since the last call.
    fn take_change(&self) -> Option<ClockSkew> {
        if self.shared.changed.swap(false, Ordering::Acquire) {
            Some(self.skew())
        } else {
            None
        }
    }
}

/// Receives every output of a node, in place of collecting them.
type OutputSink<O> = Box<dyn FnMut(OutputRecord<O>) + Send>;

enum Event<A: Actor> {
    Start,
    Message(NodeId, A::Msg),
    Timer(A::Timer),
}

/// Drives one [`Actor`] over one [`Transport`]: the hardware counterpart of the simulator.
///
/// Each [`step`](NodeRuntime::step) calls `on_start` (the first time), fires due timers,
/// decodes received frames into `A::Msg` and calls `on_message`, then flushes the
/// transport. Handlers get the same [`Context`] as in the simulator, with `now()` the
/// monotonic time since the epoch; `cx.charge()` is ignored. After each handler its
/// effects are applied:
///
/// - `Output` goes to the output sink if one is set, else is collected
///   ([`outputs`](NodeRuntime::outputs)), and is checked by the invariants added with
///   [`add_invariant`](NodeRuntime::add_invariant); `Annotate` is collected (and printed if
///   [`RuntimeConfig::log_annotations`]). Outputs and annotations of a handler are applied
///   before its messages leave, so that a sink shared by several nodes of one process sees
///   outputs in an order consistent with causality.
/// - `SetTimer`/`CancelTimer` arm and disarm timers on the real clock.
/// - `Persist` replaces the node's durable state, kept in memory
///   ([`persisted`](NodeRuntime::persisted)) and, if [`RuntimeConfig::state_path`] is set,
///   written to disk and synced before any message of the same handler leaves (as a
///   protocol that fsyncs before it replies expects).
/// - `Send` encodes the message with bincode and hands it to the transport; messages to
///   the node itself are looped back without the transport. A send the transport refuses
///   (queue full, unknown peer, too large) is dropped and counted, like a lost packet.
///
/// A received frame that does not decode into `A::Msg` is counted
/// ([`RuntimeStats::messages_undecodable`]) and dropped; nothing a peer sends can make the
/// runtime panic.
pub struct NodeRuntime<A: Actor, T: Transport> {
    me: NodeId,
    actor: A,
    transport: T,
    config: RuntimeConfig,
    epoch: Instant,
    rng: SimRng,
    next_timer: u64,
    started: bool,
    effects: Vec<Effect<A>>,
    outbox: Vec<(NodeId, A::Msg)>,
    encode_buf: Vec<u8>,
    /// Decoded messages waiting for their handler.
    inbox: VecDeque<(NodeId, A::Msg)>,
    /// Encoded messages this node sent to itself.
    loopback: VecDeque<Vec<u8>>,
    /// Armed timers by (deadline, id): the timer wheel.
    timers: BTreeMap<(Time, TimerId), A::Timer>,
    /// Deadline of each armed timer, to cancel by id.
    timer_deadlines: BTreeMap<TimerId, Time>,
    /// The last durable state saved.
    persisted: Option<Vec<u8>>,
    outputs: Vec<OutputRecord<A::Output>>,
    output_sink: Option<OutputSink<A::Output>>,
    annotations: Vec<Annotation>,
    invariants: Vec<Box<dyn Invariant<A> + Send>>,
    violations: Vec<Violation>,
    stats: RuntimeStats,
    stop: StopHandle,
    /// The clock error the actor sees (see [`ClockHandle`]), taken from `clock` at each step.
    skew: ClockSkew,
    clock: ClockHandle,
}

impl<A: Actor, T: Transport> fmt::Debug for NodeRuntime<A, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeRuntime")
            .field("me", &self.me)
            .field("started", &self.started)
            .field("timers_armed", &self.timers.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<A: Actor, T: Transport> NodeRuntime<A, T> {
    /// A runtime for `actor` as node `transport.local_id()`. Nothing runs until the first
    /// [`step`](NodeRuntime::step) (or `run_until`), which calls `on_start`.
    pub fn new(actor: A, transport: T, config: RuntimeConfig) -> Self {
        let me = transport.local_id();
        let epoch = config.epoch.unwrap_or_else(Instant::now);
        NodeRuntime {
            me,
            actor,
            transport,
            rng: derive_rng(config.seed, "node", u64::from(me.0)),
            config,
            epoch,
            next_timer: 0,
            started: false,
            effects: Vec::new(),
            outbox: Vec::new(),
            encode_buf: Vec::new(),
            inbox: VecDeque::new(),
            loopback: VecDeque::new(),
            timers: BTreeMap::new(),
            timer_deadlines: BTreeMap::new(),
            persisted: None,
            outputs: Vec::new(),
            output_sink: None,
            annotations: Vec::new(),
            invariants: Vec::new(),
            violations: Vec::new(),
            stats: RuntimeStats::default(),
            stop: StopHandle::default(),
            skew: ClockSkew::default(),
            clock: ClockHandle::default(),
        }
    }

    /// Sends every output to `sink` instead of collecting it in
    /// [`outputs`](NodeRuntime::outputs) (for long runs, or to merge the outputs of several
    /// nodes, e.g. through a channel).
    pub fn with_output_sink(
        mut self,
        sink: impl FnMut(OutputRecord<A::Output>) + Send + 'static,
    ) -> Self {
        self.output_sink = Some(Box::new(sink));
        self
    }

    /// Adds a safety invariant, fed this node's outputs as they appear (as the simulator
    /// feeds it every node's). A violation is recorded in
    /// [`violations`](NodeRuntime::violations) and makes `run_until` return
    /// [`RunStop::Violation`]. For invariants over several nodes, collect their outputs
    /// and use [`check_invariants`].
    pub fn add_invariant(&mut self, invariant: impl Invariant<A> + Send + 'static) -> &mut Self {
        self.invariants.push(Box::new(invariant));
        self
    }

    /// This node's id.
    pub fn me(&self) -> NodeId {
        self.me
    }

    /// Monotonic time since the epoch: what handlers see as `cx.now()` unless the node's
    /// clock is skewed ([`actor_now`](NodeRuntime::actor_now)); outputs and annotations
    /// carry this time.
    pub fn now(&self) -> Time {
        Time(duration_ns(self.epoch.elapsed()))
    }

    /// What the actor's clock reads now: [`now`](NodeRuntime::now) through the skew set
    /// with [`ClockHandle::set_skew`] or [`set_clock_skew`](NodeRuntime::set_clock_skew).
    pub fn actor_now(&self) -> Time {
        self.skew.local(self.now())
    }

    /// Skews the actor's clock from now on (see [`ClockHandle`]).
    pub fn set_clock_skew(&mut self, skew: ClockSkew) {
        self.clock.set_skew(skew);
        self.skew = skew;
        let _ = self.clock.take_change();
    }

    /// A handle that skews this node's clock from another thread (the thread that reads a
    /// controlled node's control lines).
    pub fn clock_handle(&self) -> ClockHandle {
        self.clock.clone()
    }

    /// Takes its clock skew from `clock` (made before the runtime, e.g. for a control
    /// thread that starts first); a skew already set on it applies from the first step.
    pub fn with_clock_handle(mut self, clock: ClockHandle) -> Self {
        self.clock = clock;
        self.clock.shared.changed.store(true, Ordering::Release);
        self
    }

    /// The actor, as the handlers left it.
    pub fn actor(&self) -> &A {
        &self.actor
    }

    /// The actor, mutably (between steps).
    pub fn actor_mut(&mut self) -> &mut A {
        &mut self.actor
    }

    /// The transport.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The transport, mutably.
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// Takes the runtime apart.
    pub fn into_parts(self) -> (A, T) {
        (self.actor, self.transport)
    }

    /// Counters so far.
    pub fn stats(&self) -> &RuntimeStats {
        &self.stats
    }

    /// Outputs collected so far (none if an output sink is set).
    pub fn outputs(&self) -> &[OutputRecord<A::Output>] {
        &self.outputs
    }

    /// Removes and returns the outputs collected so far.
    pub fn take_outputs(&mut self) -> Vec<OutputRecord<A::Output>> {
        std::mem::take(&mut self.outputs)
    }

    /// Annotations collected so far.
    pub fn annotations(&self) -> &[Annotation] {
        &self.annotations
    }

    /// Removes and returns the annotations collected so far.
    pub fn take_annotations(&mut self) -> Vec<Annotation> {
        std::mem::take(&mut self.annotations)
    }

    /// Every failed invariant check, in the order found (`{v}` prints `invariant: detail`).
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// The last durable state the actor saved with `cx.persist` in this run, if any.
    pub fn persisted(&self) -> Option<&[u8]> {
        self.persisted.as_deref()
    }

    /// Number of timers armed and neither fired nor cancelled.
    pub fn timers_armed(&self) -> usize {
        self.timers.len()
    }

    /// Whether `on_start` has run.
    pub fn is_started(&self) -> bool {
        self.started
    }

    /// A handle that stops [`run_until`](NodeRuntime::run_until) from another thread.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Does one round of work without blocking: `on_start` the first time, then due timers
    /// (at most [`RuntimeConfig::timers_per_step_max`]), messages the node sent itself, and
    /// received frames (at most [`RuntimeConfig::frames_per_step_max`]); then flushes the
    /// transport. Returns the number of handler calls made, plus the number of undecodable
    /// frames dropped (0 means there was nothing to do).
    pub fn step(&mut self) -> Result<usize, RuntimeError> {
        let mut work = 0;
        if let Some(skew) = self.clock.take_change() {
            self.skew = skew;
        }
        if !self.started {
            self.started = true;
            self.dispatch(Event::Start);
            work += 1;
        }

        let due_by = self.now();
        for _ in 0..self.config.timers_per_step_max {
            let Some(entry) = self.timers.first_entry() else {
                break;
            };
            if entry.key().0 > due_by {
                break;
            }
            let ((_, id), timer) = entry.remove_entry();
            self.timer_deadlines.remove(&id);
            self.stats.node.timers_fired += 1;
            self.dispatch(Event::Timer(timer));
            work += 1;
        }

        let undecodable_before = self.stats.messages_undecodable;
        let loopback_count = self.loopback.len().min(self.config.frames_per_step_max);
        for _ in 0..loopback_count {
            if let Some(bytes) = self.loopback.pop_front() {
                self.receive(self.me, &bytes);
            }
        }
        let frames_max = self.config.frames_per_step_max;
        let me = self.me;
        let log_errors = self.config.log_errors;
        let inbox = &mut self.inbox;
        let stats = &mut self.stats;
        self.transport.poll(frames_max, &mut |from, bytes| {
            receive_into(me, log_errors, inbox, stats, from, bytes);
        })?;
        work += (self.stats.messages_undecodable - undecodable_before) as usize;

        while let Some((from, msg)) = self.inbox.pop_front() {
            self.dispatch(Event::Message(from, msg));
            work += 1;
        }
        self.transport.flush()?;
        Ok(work)
    }

    /// Blocks until there may be work for [`step`](NodeRuntime::step): a frame arrives, a
    /// timer falls due, or `timeout` passes. Returns at once if work is pending.
    pub fn wait(&mut self, timeout: Duration) -> Result<(), RuntimeError> {
        if !self.started || !self.loopback.is_empty() || !self.inbox.is_empty() {
            return Ok(());
        }
        let mut timeout = timeout;
        if let Some(&(deadline, _)) = self.timers.keys().next() {
            timeout = timeout.min(deadline.saturating_sub(self.now()));
        }
        if timeout.is_zero() {
            return Ok(());
        }
        self.transport.wait(timeout)?;
        Ok(())
    }

    /// Runs until `done(self)` holds, `limit` (wall-clock time from the call) passes, the
    /// [`StopHandle`] is used, or an invariant fails, whichever comes first. `done` is
    /// checked before the first step and after every step.
    pub fn run_until(
        &mut self,
        limit: Duration,
        mut done: impl FnMut(&Self) -> bool,
    ) -> Result<RunStop, RuntimeError> {
        let begun = Instant::now();
        loop {
            if self.stop.is_stopped() {
                return Ok(RunStop::Stopped);
            }
            if !self.violations.is_empty() {
                return Ok(RunStop::Violation);
            }
            if done(self) {
                return Ok(RunStop::Done);
            }
            let elapsed = begun.elapsed();
            if elapsed >= limit {
                return Ok(RunStop::TimedOut);
            }
            if self.step()? == 0 {
                self.wait((limit - elapsed).min(self.config.idle_wait_max))?;
            }
        }
    }

    /// Runs for `duration`, or until stopped or an invariant fails.
    pub fn run_for(&mut self, duration: Duration) -> Result<RunStop, RuntimeError> {
        self.run_until(duration, |_| false)
    }

    /// Asks every invariant for its end-of-run verdict on this node alone, as the simulator
    /// does when a run reaches its deadline; returns the new violations (also recorded).
    /// For invariants over several nodes use [`check_invariants`].
    pub fn finish_invariants(&mut self) -> Vec<Violation> {
        let now = self.now();
        let end = RunEnd {
            now,
            reason: EndReason::Deadline,
            actors: std::slice::from_ref(&self.actor),
            crashed: &[],
        };
        let mut found = Vec::new();
        for invariant in &mut self.invariants {
            if let Err(detail) = invariant.at_end(&end) {
                found.push(Violation::new(invariant.name(), self.me, now, detail));
            }
        }
        self.violations.extend(found.iter().cloned());
        found
    }

    fn receive(&mut self, from: NodeId, bytes: &[u8]) {
        receive_into(
            self.me,
            self.config.log_errors,
            &mut self.inbox,
            &mut self.stats,
            from,
            bytes,
        );
    }

    fn dispatch(&mut self, event: Event<A>) {
        let now = self.now();
        self.effects.clear();
        let mut cx = Context::new(
            self.me,
            self.skew.local(now),
            &mut self.rng,
            &mut self.next_timer,
            &mut self.effects,
        );
        match event {
            Event::Start => self.actor.on_start(&mut cx),
            Event::Message(from, msg) => self.actor.on_message(from, msg, &mut cx),
            Event::Timer(timer) => self.actor.on_timer(timer, &mut cx),
        }
        // `cx.charged()` is deliberately ignored: modelled CPU cost is a no-op on hardware.
        self.stats.handler_calls += 1;
        self.apply_effects(now);
    }

    fn apply_effects(&mut self, now: Time) {
        let mut effects = std::mem::take(&mut self.effects);
        let mut outbox = std::mem::take(&mut self.outbox);
        for effect in effects.drain(..) {
            match effect {
                Effect::Send { to, msg, .. } => outbox.push((to, msg)),
                Effect::SetTimer { id, after, timer } => {
                    // `after` is measured by the node's own (possibly skewed) clock.
                    let deadline = now.after(self.skew.real_after(after));
                    self.timers.insert((deadline, id), timer);
                    self.timer_deadlines.insert(id, deadline);
                    self.stats.timers_set += 1;
                }
                Effect::CancelTimer { id } => {
                    if let Some(deadline) = self.timer_deadlines.remove(&id) {
                        self.timers.remove(&(deadline, id));
                        self.stats.timers_cancelled += 1;
                    }
                }
                Effect::Output(value) => self.output(now, value),
                Effect::Persist(state) => self.persist(state),
                // Rounds drive the simulator's round-triggered scenario commands; a real
                // run's nemesis acts on time only.
                Effect::Round(_) => {}
                Effect::Annotate(label) => {
                    self.stats.node.annotations += 1;
                    if self.config.log_annotations {
                        eprintln!("[{}] {} annotate: {label}", now, self.me);
                    }
                    self.annotations.push(Annotation {
                        node: self.me,
                        at: now,
                        label,
                    });
                }
            }
        }
        for (to, msg) in outbox.drain(..) {
            self.send(to, &msg);
        }
        self.effects = effects;
        self.outbox = outbox;
    }

    fn output(&mut self, now: Time, value: A::Output) {
        self.stats.node.outputs += 1;
        let mut found = Vec::new();
        for invariant in &mut self.invariants {
            if let Err(detail) = invariant.on_output(self.me, now, &value) {
                found.push(Violation::new(invariant.name(), self.me, now, detail));
            }
        }
        if self.config.log_errors {
            for violation in &found {
                eprintln!("[{now}] {} invariant violated: {violation}", self.me);
            }
        }
        self.violations.extend(found);
        let record = OutputRecord {
            node: self.me,
            at: now,
            value,
        };
        match &mut self.output_sink {
            Some(sink) => sink(record),
            None => self.outputs.push(record),
        }
    }

    fn persist(&mut self, state: Vec<u8>) {
        self.stats.states_persisted += 1;
        if let Some(path) = &self.config.state_path {
            if let Err(error) = save_state(path, &state) {
                self.stats.state_write_failures += 1;
                if self.config.log_errors {
                    eprintln!(
                        "{}: cannot save durable state to {}: {error}",
                        self.me,
                        path.display()
                    );
                }
            }
        }
        self.persisted = Some(state);
    }

    fn send(&mut self, to: NodeId, msg: &A::Msg) {
        self.encode_buf.clear();
        if let Err(error) = encode_message(msg, &mut self.encode_buf) {
            self.stats.messages_unencodable += 1;
            if self.config.log_errors && self.stats.messages_unencodable.is_power_of_two() {
                eprintln!(
                    "{}: message to {to} cannot be encoded ({} so far): {error}",
                    self.me, self.stats.messages_unencodable
                );
            }
            return;
        }
        let frame_bytes = self.encode_buf.len() as u64;
        self.stats.node.messages_sent += 1;
        self.stats.node.bytes_sent += frame_bytes;
        let result = if to == self.me {
            if self.loopback.len() >= self.config.loopback_messages_max {
                Err(SendError::QueueFull(to))
            } else {
                self.loopback.push_back(self.encode_buf.clone());
                Ok(())
            }
        } else {
            self.transport.send(to, &self.encode_buf)
        };
        if let Err(error) = result {
            self.stats.node.messages_dropped += 1;
            let counter = match error {
                SendError::QueueFull(_) => &mut self.stats.sends_dropped_queue_full,
                SendError::UnknownPeer(_) => &mut self.stats.sends_dropped_unknown_peer,
                SendError::FrameTooLarge { .. } => &mut self.stats.sends_dropped_too_large,
                SendError::Closed => &mut self.stats.sends_dropped_closed,
            };
            *counter += 1;
            if self.config.log_errors && counter.is_power_of_two() {
                eprintln!(
                    "{}: message to {to} dropped ({} so far of this kind): {error}",
                    self.me, *counter
                );
            }
        }
    }
}

fn receive_into<M: serde::de::DeserializeOwned>(
    me: NodeId,
    log_errors: bool,
    inbox: &mut VecDeque<(NodeId, M)>,
    stats: &mut RuntimeStats,
    from: NodeId,
    bytes: &[u8],
) {
    match decode_message::<M>(bytes) {
        Ok(msg) => {
            stats.node.messages_received += 1;
            stats.node.bytes_received += bytes.len() as u64;
            inbox.push_back((from, msg));
        }
        Err(error) => {
            stats.messages_undecodable += 1;
            if log_errors && stats.messages_undecodable.is_power_of_two() {
                eprintln!(
                    "{me}: dropped an undecodable {}-byte message from {from} ({} so far): {error}",
                    bytes.len(),
                    stats.messages_undecodable
                );
            }
        }
    }
}

/// Feeds `outputs` (of any number of nodes, in the order given) to `invariants` as the
/// simulator would, then asks each for its end-of-run verdict with `actors` as the final
/// states. Returns `"invariant: detail"` for every failure.
///
/// The order matters for invariants like "a reply follows its request": give the outputs
/// in an order consistent with causality, such as the arrival order in one sink shared by
/// every node of the process (see [`NodeRuntime::with_output_sink`]), or sorted by
/// [`OutputRecord::at`] when the nodes share one [`RuntimeConfig::epoch`].
pub fn check_invariants<A: Actor>(
    outputs: &[OutputRecord<A::Output>],
    actors: &[A],
    end_time: Time,
    invariants: &mut [&mut dyn Invariant<A>],
) -> Vec<Violation> {
    let mut found = Vec::new();
    for record in outputs {
        for invariant in invariants.iter_mut() {
            if let Err(detail) = invariant.on_output(record.node, record.at, &record.value) {
                found.push(Violation::new(
                    invariant.name(),
                    record.node,
                    record.at,
                    detail,
                ));
            }
        }
    }
    let end = RunEnd {
        now: end_time,
        reason: EndReason::Deadline,
        actors,
        crashed: &[],
    };
    // End-of-run checks concern the whole run: attributed to node 0, as the simulator does.
    for invariant in invariants.iter_mut() {
        if let Err(detail) = invariant.at_end(&end) {
            found.push(Violation::new(
                invariant.name(),
                NodeId(0),
                end_time,
                detail,
            ));
        }
    }
    found
}
