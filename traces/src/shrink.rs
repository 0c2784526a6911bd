//! Shrinking a failing run to a minimal one that fails the same way.
//!
//! The shrinker works on a run's configuration and its recorded schedule. Every attempt
//! re-runs the protocol while following the best schedule found so far (see
//! [`follower_of`]), so the attempts do not re-draw the network from the seed and a
//! reduction found once stays found. The drops it imposed on earlier schedules are imposed
//! again as faults ([`Fate::FaultDrop`](rehearsal_sim_core::Fate::FaultDrop)), so liveness
//! checks count from the last of them. It first checks that the recording, re-enacted,
//! fails as recorded (the same invariant), and refuses otherwise. Then it tries:
//!
//! 1. the earliest deadline that still fails, first, so that every later attempt is
//!    cheaper (one that no longer fails stops there too);
//! 2. fewer client operations (clients, requests per client) and fewer nodes where the
//!    protocol allows, each at its floor first;
//! 3. fewer faults (scenario commands), by delta debugging;
//! 4. a plainer network: the recorded schedule only up to a cut, later messages arriving
//!    after their link's last recorded delay;
//! 5. deliveries turned into drops: whole links, then chunks of messages down to one;
//! 6. a shorter run (an earlier deadline).
//!
//! Steps 2 to 5 repeat while they make progress. A reduction is kept only if the run still
//! violates the same invariant (or stalls, for a stalled run). For a liveness failure of a
//! mutant, a reduction on which the correct protocol, following the same schedule, fails
//! too is not genuine: a genuine one is preferred to any other (see
//! [`Subject::reference`]). The minimal run is self-contained: its trace header marks it
//! as following its own recorded schedule, so `rehearsal replay` re-enacts it from the
//! file alone.

use crate::follow::FORCED_DROP_REASON;
use crate::{LinkMessage, ScheduleFollower};
use rehearsal_sim_core::{
    EndReason, EventKind, FailureKind, NodeId, Outcome, RunResult, Time, TraceEvent,
};
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A size or setting a shrinker may lower: clients, requests, nodes, a protocol timer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Knob {
    pub name: String,
    pub current: u64,
    /// The value that would make the run smallest (the fewest clients, the longest
    /// housekeeping period): the search goes from `current` towards it.
    pub target: u64,
    /// The value is a duration in nanoseconds (for messages).
    pub nanos: bool,
    /// Lowered only when shrinking a failure found during the run (a safety violation):
    /// a protocol timer changes how fast the protocol recovers, which a liveness failure
    /// depends on, but no safety property may.
    pub safety_only: bool,
}

impl Knob {
    /// A count (clients, requests, nodes).
    pub fn count(name: &str, current: u64, floor: u64) -> Knob {
        Knob {
            name: name.to_string(),
            current,
            target: floor.min(current),
            nanos: false,
            safety_only: false,
        }
    }

    fn show(&self, value: u64) -> String {
        if self.nanos {
            Time(value).to_string()
        } else {
            value.to_string()
        }
    }
}

/// What a shrinker can re-run and reduce: a built-in run configuration, or a simulation a
/// test builds (see [`crate::check`]).
pub trait Subject: Clone {
    /// What one run yields.
    type Run: Trial;
    /// Runs this subject following `schedule`; `None` if it cannot run as it is.
    fn run(&self, schedule: ScheduleFollower) -> Option<Self::Run>;
    /// Runs this subject with its network drawn from its seed, as a recording is made;
    /// `None` if it cannot.
    fn run_drawn(&self) -> Option<Self::Run> {
        None
    }
    /// The sizes and settings that may be lowered.
    fn knobs(&self) -> Vec<Knob> {
        Vec::new()
    }
    /// This subject with knob `name` set to `value`.
    fn with_knob(&self, _name: &str, _value: u64) -> Self {
        self.clone()
    }
    /// The faults that may be removed, by an id each (e.g. scenario line numbers).
    fn faults(&self) -> Vec<usize> {
        Vec::new()
    }
    /// This subject with only the faults in `keep`.
    fn keeping_faults(&self, _keep: &[usize]) -> Self {
        self.clone()
    }
    /// When each fault strikes, by its id, in virtual nanoseconds.
    fn fault_times(&self) -> Vec<(usize, u64)> {
        Vec::new()
    }
    /// This subject with fault `id` striking at `at_ns` instead.
    fn with_fault_at(&self, _id: usize, _at_ns: u64) -> Self {
        self.clone()
    }
    /// This subject with these timer firings, each named by node and timer id, put off
    /// by one period more (see
    /// [`Simulation::postpone_timers`](rehearsal_sim_core::Simulation::postpone_timers));
    /// `None` if it cannot put off timers.
    fn postponing(&self, _firings: &[(NodeId, u64)]) -> Option<Self> {
        None
    }
    /// The run's deadline, in virtual nanoseconds.
    fn deadline_ns(&self) -> u64;
    /// This subject with another deadline.
    fn with_deadline(&self, ns: u64) -> Self;
    /// When this subject runs a deliberately broken variant of its protocol (a mutant):
    /// the same subject with the correct protocol. A liveness failure (one found at the
    /// end of the run, or a stall) is genuine only if the correct protocol, following the
    /// same schedule, does not fail: otherwise the schedule itself starves the protocol
    /// and the mutant is not to blame.
    fn reference(&self) -> Option<Self> {
        None
    }
    /// The seed the subject's network and nodes draw from, if it can take another.
    fn seed(&self) -> Option<u64> {
        None
    }
    /// This subject drawing from another seed.
    fn with_seed(&self, _seed: u64) -> Self {
        self.clone()
    }
}

/// What the shrinker reads of one run: its result and its recorded events.
pub trait Trial {
    fn result(&self) -> &RunResult;
    fn events(&self) -> &[TraceEvent];
    /// When the run ended, in virtual nanoseconds.
    fn sim_time_ns(&self) -> u64 {
        self.result().sim_time.as_nanos()
    }
}

/// How many other seeds a shrink tries for its smallest configuration.
const RESEED_TRIES: u64 = 32;

/// The shortest protocol timer a shrink tries.
pub const TIMER_FLOOR_NS: u64 = 1_000_000;

/// Limits on the work a shrink may do.
#[derive(Debug, Clone)]
pub struct ShrinkLimits {
    /// Most re-runs.
    pub runs_max: u64,
    /// Most wall time; the best reduction so far is kept when it runs out. A re-run is
    /// not started when, taking as long as the last one did, it would end past it.
    pub time_max: Duration,
}

impl Default for ShrinkLimits {
    fn default() -> Self {
        ShrinkLimits {
            runs_max: 100_000,
            time_max: Duration::from_secs(60),
        }
    }
}

/// What a shrink found.
#[derive(Debug, Clone)]
pub struct Shrunk<S: Subject> {
    /// The minimal subject and its run (which follows its own recorded schedule).
    pub subject: S,
    pub run: S::Run,
    /// What failed: an invariant and when, or a stall.
    pub failure: FailureKind,
    pub events_before: u64,
    pub events_after: u64,
    /// Re-runs made.
    pub runs: u64,
    /// Messages turned from deliveries into drops.
    pub drops_forced: usize,
    /// Faults removed.
    pub faults_removed: usize,
    /// Whether a limit stopped the search before it finished.
    pub limited: bool,
    /// For a liveness failure of a mutant: whether the correct protocol passes following
    /// the minimal run's schedule (see [`Subject::reference`]); `None` when not checked.
    pub genuine: Option<bool>,
}

/// Why a run cannot be shrunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShrinkError {
    #[error("the run no longer fails when re-enacted from its trace (outcome {0}); was the trace made by another version?")]
    NotReproduced(String),
    /// The re-enacted run fails, but not as recorded: shrinking it would minimise another
    /// failure than the one the trace shows.
    #[error("the trace records a `{recorded}` failure, but re-enacted from its trace the run fails `{now}`; was the trace made by another version, or its header changed?")]
    OtherFailure { recorded: String, now: String },
    #[error("{0}")]
    Config(String),
}

/// The failure a recording shows: the invariant of its first violation event, or
/// `stalled` when it has none (a failing run without a violation stalled). The shrinker
/// checks that its first re-run fails this way before it shrinks anything.
pub fn recorded_failure(events: &[TraceEvent]) -> String {
    events
        .iter()
        .find_map(|e| match &e.kind {
            EventKind::Violation { invariant, .. } => Some(invariant.clone()),
            _ => None,
        })
        .unwrap_or_else(|| "stalled".into())
}

/// The messages of a recording that a shrinker turned into drops
/// ([`FORCED_DROP_REASON`]), named by link and index as a follower counts them.
pub fn forced_drops_in(events: &[TraceEvent]) -> Vec<LinkMessage> {
    let mut sent: BTreeMap<(NodeId, NodeId), u32> = BTreeMap::new();
    let mut by_id: BTreeMap<u64, LinkMessage> = BTreeMap::new();
    let mut forced = Vec::new();
    for e in events {
        match &e.kind {
            EventKind::Send { to, id, .. } => {
                let n = sent.entry((e.node, *to)).or_insert(0);
                by_id.insert(
                    *id,
                    LinkMessage {
                        from: e.node,
                        to: *to,
                        index: *n,
                    },
                );
                *n += 1;
            }
            EventKind::Drop { id, reason, .. } if reason == FORCED_DROP_REASON => {
                forced.extend(by_id.get(id).copied());
            }
            _ => {}
        }
    }
    forced
}

/// A follower of a recording that ended at `end_ns`, imposing the shrinker's drops again
/// as faults ([`Fate::FaultDrop`](rehearsal_sim_core::Fate::FaultDrop)), so that liveness
/// checks count from the last of them as they did when the recording was made. A plain
/// [`ScheduleFollower::from_events`] re-enacts them as ordinary losses, which the
/// invariants do not hear of.
///
/// Messages still in flight when the recording ended arrive just after its end (see
/// [`ScheduleFollower::from_recording`]): held forever they would be a loss nobody imposed
/// once an attempt runs longer than the recording.
///
/// ```
/// # use rehearsal_sim_core::{Actor, Context, NodeId, SimConfig, SimpleNetwork, Simulation};
/// # struct Pinger;
/// # impl Actor for Pinger {
/// #     type Msg = u32; type Timer = (); type Output = u32;
/// #     fn on_start(&mut self, cx: &mut Context<Self>) { if cx.me() == NodeId(0) { cx.send(NodeId(1), 9) } }
/// #     fn on_message(&mut self, from: NodeId, n: u32, cx: &mut Context<Self>) { cx.output(n); if n > 0 { cx.send(from, n - 1) } }
/// #     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
/// # }
/// // Two nodes pass a counter back and forth over a jittery, lossy network.
/// let jittery = || SimpleNetwork { latency: "uniform:1ms..30ms".parse().unwrap(), loss: 0.1 };
/// let mut sim = Simulation::new(SimConfig::new(5), vec![Pinger, Pinger], jittery());
/// sim.keep_trace(true);
/// let recorded = sim.run();
/// use rehearsal_traces::shrink::follower_of;
///
/// let follower = follower_of(&recorded.trace, recorded.sim_time.as_nanos());
/// let mut again = Simulation::new(SimConfig::new(5), vec![Pinger, Pinger], SimpleNetwork::default());
/// again.set_network(follower);
/// assert_eq!(again.run().digest, recorded.digest);
/// ```
pub fn follower_of(events: &[TraceEvent], end_ns: u64) -> ScheduleFollower {
    let mut follower = ScheduleFollower::from_recording(events, end_ns);
    follower.force_drops(forced_drops_in(events));
    follower
}

/// `events` with the shrinker's drops turned back into deliveries, each after the delay
/// of the last message delivered before it on its link (1 ms if none was).
fn without_forced_drops(events: &[TraceEvent]) -> Vec<TraceEvent> {
    let mut sent: BTreeMap<u64, (NodeId, NodeId, u64)> = BTreeMap::new();
    let mut delay: BTreeMap<(NodeId, NodeId), u64> = BTreeMap::new();
    let mut out = Vec::with_capacity(events.len());
    for e in events {
        match &e.kind {
            EventKind::Send { to, id, .. } => {
                sent.insert(*id, (e.node, *to, e.t));
            }
            EventKind::Deliver { id, .. } => {
                if let Some(&(from, to, at)) = sent.get(id) {
                    delay.insert((from, to), e.t.saturating_sub(at));
                }
            }
            EventKind::Drop { id, reason, .. } if reason == FORCED_DROP_REASON => {
                if let Some(&(from, to, at)) = sent.get(id) {
                    let after = delay.get(&(from, to)).copied().unwrap_or(1_000_000);
                    out.push(TraceEvent {
                        t: at.saturating_add(after),
                        node: to,
                        kind: EventKind::Deliver { from, id: *id },
                        ..e.clone()
                    });
                    continue;
                }
            }
            _ => {}
        }
        out.push(e.clone());
    }
    out
}

/// The part of a recording a follower needs to re-enact its network up to `cut_ns`: the
/// messages sent before then, with their fates. Later messages are unscheduled: they
/// arrive after their link's last recorded delay, a plainer network than the recorded one.
fn schedule_before(events: &[TraceEvent], cut_ns: u64) -> Vec<TraceEvent> {
    let mut kept: BTreeSet<u64> = BTreeSet::new();
    events
        .iter()
        .filter(|e| match &e.kind {
            EventKind::Send { id, .. } if e.t < cut_ns => {
                kept.insert(*id);
                true
            }
            EventKind::Send { .. } => false,
            EventKind::Deliver { id, .. }
            | EventKind::Drop { id, .. }
            | EventKind::Corrupt { id, .. } => kept.contains(id),
            _ => false,
        })
        .cloned()
        .collect()
}

struct Search<'p, S: Subject> {
    failure: Option<FailureKind>,
    /// Whether candidates are checked against the correct protocol (liveness failures of
    /// a mutant).
    check_reference: bool,
    /// The failure is found during the run (a safety violation), not at its end.
    safety: bool,
    limits: ShrinkLimits,
    started: Instant,
    runs: u64,
    /// How long the last re-run took: the next is expected to take as long.
    last_run: Duration,
    limited: bool,
    /// The reduced configurations already tried on other seeds (see [`leap`]).
    reseeded: Vec<Vec<String>>,
    /// The first run found on another seed (the first chain changes the fewest timers),
    /// as it was found: a fresh start for the chains, which may reduce it further than the
    /// chain that found it did.
    landing: Option<Best<S>>,
    progress: &'p mut dyn FnMut(&str),
}

impl<S: Subject> Search<'_, S> {
    /// Whether a limit is reached. A run cannot be stopped once it has started, so the
    /// next is not started when, taking as long as the last did, it would end past the
    /// time limit (a large run's re-runs take seconds each).
    fn out_of_budget(&mut self) -> bool {
        if self.runs >= self.limits.runs_max
            || self.started.elapsed() + self.last_run >= self.limits.time_max
        {
            self.limited = true;
        }
        self.limited
    }

    /// One re-run (`run`), counted and timed.
    fn timed<R>(&mut self, run: impl FnOnce() -> R) -> R {
        self.runs += 1;
        let started = Instant::now();
        let result = run();
        self.last_run = started.elapsed();
        result
    }

    /// Runs `subject` following `schedule` (with the drops a shrink imposed on it imposed
    /// again) and with `drops` forced too; the run if it still fails the same way.
    fn attempt(
        &mut self,
        subject: &S,
        schedule: &[TraceEvent],
        end_ns: u64,
        drops: &[LinkMessage],
    ) -> Option<Best<S>> {
        if self.out_of_budget() {
            return None;
        }
        let mut follower = follower_of(schedule, end_ns);
        follower.force_drops(drops.iter().copied());
        let run = self.timed(|| subject.run(follower))?;
        self.keep_if_failing(subject, run)
    }

    /// `run` of `subject` as a candidate, if it fails the same way.
    fn keep_if_failing(&mut self, subject: &S, run: S::Run) -> Option<Best<S>> {
        if run.result().failure() != self.failure {
            return None;
        }
        // Checking it against the correct protocol is a run of its own: a candidate the
        // budget cannot check is not taken.
        if self.check_reference && self.out_of_budget() {
            return None;
        }
        let genuine = self.genuine(subject, &run);
        Some(Best {
            subject: subject.clone(),
            run: Rc::new(run),
            genuine,
        })
    }

    /// Runs `changed` (a reduced configuration of `best`'s subject) following `best`'s
    /// schedule; if that no longer fails the same way, following it without the drops the
    /// shrink imposed (they were chosen for the old configuration, and land on other
    /// messages in the new one). The run if either fails the same way and beats `best`
    /// (`strict`: only if it is smaller).
    fn attempt_changed(&mut self, changed: &S, best: &Best<S>, strict: bool) -> Option<Best<S>> {
        let end = best.run.sim_time_ns();
        let schedule = best.run.events();
        if let Some(found) = self
            .attempt(changed, schedule, end, &[])
            .filter(|found| better(found, best, strict))
        {
            return Some(found);
        }
        if !forced_drops_in(schedule).is_empty() {
            if let Some(found) = self
                .attempt(changed, &without_forced_drops(schedule), end, &[])
                .filter(|found| better(found, best, strict))
            {
                return Some(found);
            }
        }
        // Last, the network drawn from the seed, as the original failure was found: a
        // reduced configuration often fails there too, where no recorded schedule fits it.
        if self.out_of_budget() {
            return None;
        }
        let run = self.timed(|| changed.run_drawn())?;
        self.keep_if_failing(changed, run)
            .filter(|found| better(found, best, strict))
    }

    /// Whether the correct protocol passes following `run`'s schedule (true when there is
    /// nothing to check).
    fn genuine(&mut self, subject: &S, run: &S::Run) -> bool {
        if !self.check_reference {
            return true;
        }
        let Some(reference) = subject.reference() else {
            return true;
        };
        let follower = follower_of(run.events(), run.sim_time_ns());
        self.timed(|| reference.run(follower))
            .is_some_and(|r| r.result().outcome == Outcome::Ok)
    }
}

/// The best reduction so far: a subject, its run, and whether its failure is genuine.
struct Best<S: Subject> {
    subject: S,
    /// Shared: a reduction pass starts from a copy of the best so far.
    run: Rc<S::Run>,
    genuine: bool,
}

fn size<S: Subject>(best: &Best<S>) -> usize {
    best.run.events().len()
}

impl<S: Subject> Clone for Best<S> {
    fn clone(&self) -> Self {
        Best {
            subject: self.subject.clone(),
            run: Rc::clone(&self.run),
            genuine: self.genuine,
        }
    }
}

/// Whether `found` replaces `best`: a genuine failure beats one that is not; otherwise the
/// smaller run wins (`strict`: only if strictly smaller).
fn better<S: Subject>(found: &Best<S>, best: &Best<S>, strict: bool) -> bool {
    match (found.genuine, best.genuine) {
        (true, false) => true,
        (false, true) => false,
        _ if strict => size(found) < size(best),
        _ => size(found) <= size(best),
    }
}

/// Shrinks the failing run of `subject` whose recorded events are `events`. `progress`
/// hears a line per accepted reduction.
///
/// The recording's failure (its first violation's invariant, see [`recorded_failure`]) is
/// the one shrunk: if the first re-run fails otherwise, the shrink is refused.
///
/// ```
/// # use rehearsal_sim_core::{Actor, Context, Invariant, NodeId, SimConfig, SimpleNetwork, Simulation, Time};
/// # struct Sender;
/// # impl Actor for Sender {
/// #     type Msg = u32; type Timer = (); type Output = u32;
/// #     fn on_start(&mut self, cx: &mut Context<Self>) { if cx.me() == NodeId(0) { for i in 1..=5 { cx.send(NodeId(1), i) } } }
/// #     fn on_message(&mut self, _: NodeId, i: u32, cx: &mut Context<Self>) { cx.output(i) }
/// #     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
/// # }
/// # struct InOrder(u32);
/// # impl Invariant<Sender> for InOrder {
/// #     fn name(&self) -> &str { "in-order" }
/// #     fn on_output(&mut self, _: NodeId, _: Time, i: &u32) -> Result<(), String> {
/// #         if *i < self.0 { return Err(format!("{i} arrived after {}", self.0)) } self.0 = *i; Ok(())
/// #     }
/// # }
/// // Node 0 sends 1..=5 to node 1; `in-order` fails when they arrive out of order.
/// fn build(seed: u64, jitter: &str) -> Simulation<Sender> {
///     let network = SimpleNetwork { latency: jitter.parse().unwrap(), loss: 0.0 };
///     let mut sim = Simulation::new(SimConfig::new(seed), vec![Sender, Sender], network);
///     sim.add_invariant(InOrder(0));
///     sim
/// }
/// use rehearsal_traces::check::SeededSimulation;
/// use rehearsal_traces::shrink::{shrink, ShrinkLimits, Trial};
///
/// let jitter = |seed| build(seed, "uniform:1ms..20ms");
/// let seed = (1..=20).find(|&s| jitter(s).run().outcome != rehearsal_sim_core::Outcome::Ok).unwrap();
/// let mut recorded = jitter(seed);
/// recorded.keep_trace(true);
/// let recorded = recorded.run();
///
/// let subject = SeededSimulation::new(&jitter, seed);
/// let shrunk = shrink(&subject, &recorded.trace, recorded.sim_time_ns(), ShrinkLimits::default(), &mut |line| eprintln!("{line}")).unwrap();
/// assert_eq!(shrunk.failure.invariant(), "in-order");
/// assert!(shrunk.events_after <= shrunk.events_before);
/// ```
pub fn shrink<S: Subject>(
    subject: &S,
    events: &[TraceEvent],
    end_ns: u64,
    limits: ShrinkLimits,
    progress: &mut dyn FnMut(&str),
) -> Result<Shrunk<S>, ShrinkError> {
    let mut search = Search {
        failure: None,
        check_reference: false,
        safety: false,
        limits,
        started: Instant::now(),
        runs: 0,
        last_run: Duration::ZERO,
        limited: false,
        reseeded: Vec::new(),
        landing: None,
        progress,
    };
    // The starting point: the recording, re-enacted.
    let first = search
        .timed(|| subject.run(follower_of(events, end_ns)))
        .ok_or_else(|| ShrinkError::Config("the recorded run cannot be re-run".into()))?;
    let failure = first
        .result()
        .failure()
        .ok_or_else(|| ShrinkError::NotReproduced(first.result().outcome.as_str().into()))?;
    let recorded = recorded_failure(events);
    if failure.invariant() != recorded {
        return Err(ShrinkError::OtherFailure {
            recorded,
            now: first
                .result()
                .first_problem()
                .map_or_else(|| failure.to_string(), ToString::to_string),
        });
    }
    search.failure = Some(failure);
    let events_before = events.len() as u64;
    // Safety failures cannot be the schedule's doing (no network makes correct replicas
    // disagree); liveness failures can.
    search.safety = first.result().end == EndReason::Violation;
    search.check_reference = !search.safety && subject.reference().is_some();
    let genuine = search.genuine(subject, &first);
    let mut best = Best {
        subject: subject.clone(),
        run: Rc::new(first),
        genuine,
    };
    let faults_before = subject.faults().len();

    // The earliest deadline that still fails, first: every later attempt then ends there
    // at the latest, so one that no longer fails costs no more than the failure did
    // (rather than running on to the original deadline).
    shorten(&mut search, &mut best);

    // Greedy reduction gets stuck in different places depending on what it changes first.
    // Protocol timers change the run the most, so they come in last, each pass going on
    // from the smallest run so far; with budget left it starts again from here changing
    // them first, and keeps the smallest run found. The chains run again from the smallest
    // run they found, while that gets smaller (a leap onto another seed's network, say,
    // leaves a small run that every chain can then work on), at most three times.
    let mut start = best;
    // A smaller configuration first: the fewest operations and nodes, with the faults
    // moved earlier, on the recorded schedule or another seed's network (see
    // [`on_other_seeds`]). A run that fails there is a fresh recording of a smaller
    // configuration, and the chains start from it.
    if start
        .subject
        .knobs()
        .iter()
        .any(|k| !k.nanos && k.current > k.target)
    {
        for all_at_zero in [false, true] {
            let (subject, changed) = jumped(&start.subject, &|_| false, all_at_zero, 0);
            let found = match search.attempt_changed(&subject, &start, false) {
                Some(found) => Some((None, found)),
                None => on_other_seeds(&mut search, &start, &subject, &changed)
                    .map(|(seed, found)| (Some(seed), found)),
            };
            if let Some((seed, found)) = found {
                (search.progress)(&format!(
                    "first, {}{} ({} events)",
                    seed.map_or(String::new(), |s| format!("on the network of seed {s}: ")),
                    changed.join(", "),
                    size(&found)
                ));
                start = found;
                break;
            }
        }
    }
    // The timers the last chain's last pass changed: the polishing passes change them too.
    let mut last = Timers::Untouched;
    let mut best_so_far: Option<Best<S>> = None;
    for _ in 0..3 {
        // Each chain: whether faults are removed after the other cheap steps rather than
        // before (removing a cut early can close the way to a smaller run through it), whether
        // it leaps (see [`leap`]), and the timers each of its passes may change. The chains run
        // in this order while the budget lasts.
        let timers_change = start.subject.knobs().iter().any(|k| k.nanos)
            || start.subject.postponing(&[]).is_some();
        let timer_chains: &[&[Timers]] = if search.safety && timers_change {
            &[
                &[Timers::Untouched, Timers::Shorter, Timers::All],
                &[Timers::All, Timers::Untouched],
                &[Timers::Shorter, Timers::All],
            ]
        } else {
            &[&[Timers::Untouched]]
        };
        let orders: &[bool] = if start.subject.faults().is_empty() {
            &[false]
        } else {
            &[false, true]
        };
        let mut chains: Vec<(bool, bool, &[Timers])> = Vec::new();
        for leaps in [true, false] {
            for &timers in timer_chains {
                for &faults_last in orders {
                    chains.push((faults_last, leaps, timers));
                }
            }
        }
        last = chains
            .last()
            .and_then(|c| c.2.last().copied())
            .unwrap_or(Timers::Untouched);
        let mut overall: Option<Best<S>> = None;
        for &(faults_last, leaps, chain) in &chains {
            let mut candidate = start.clone();
            if let Some(so_far) = &overall {
                if search.limited {
                    break;
                }
                (search.progress)(&format!(
                    "again from {} events (smallest so far {} events)",
                    size(&start),
                    size(so_far)
                ));
            }
            for &timers in chain.iter() {
                if search.limited {
                    break;
                }
                if timer_chains.len() > 1 {
                    (search.progress)(&format!("{}:", timers.describe()));
                }
                reduce(&mut search, &mut candidate, timers, faults_last, leaps);
            }
            if overall
                .as_ref()
                .is_none_or(|so_far| better(&candidate, so_far, true))
            {
                overall = Some(candidate);
            }
            // A leap onto another seed's network: the other chains start from there.
            if search.landing.is_some() {
                break;
            }
        }
        let found = overall.unwrap_or_else(|| start.clone());
        let again = (size(&found) < size(&start) || search.landing.is_some()) && !search.limited;
        if best_so_far
            .as_ref()
            .is_none_or(|so_far| better(&found, so_far, true))
        {
            best_so_far = Some(found.clone());
        }
        if !again {
            break;
        }
        // From where a leap onto another seed's network landed, if it did (the run as it
        // was found, before the chain that found it went on with it), else from the
        // smallest run.
        start = search.landing.take().unwrap_or(found);
        (search.progress)(&format!("chains again from {} events:", size(&start)));
    }
    drop(start);
    let mut best = best_so_far.unwrap_or_else(|| unreachable!("every round keeps its best"));
    // With budget left, every step again from the smallest run, in each order, while that
    // still helps.
    let mut polishing = true;
    while polishing && !search.limited {
        let before = size(&best);
        (search.progress)(&format!("again from the smallest, {} events:", before));
        for faults_last in [false, true] {
            reduce(&mut search, &mut best, last, faults_last, true);
        }
        polishing = size(&best) < before;
    }
    // The last copies of runs other than the best (whose run is taken below).
    search.landing = None;
    let drops_forced = forced_drops_in(best.run.events()).len();
    let faults_removed = faults_before.saturating_sub(best.subject.faults().len());

    Ok(Shrunk {
        events_after: size(&best) as u64,
        failure: search
            .failure
            .unwrap_or_else(|| unreachable!("set before the search")),
        events_before,
        runs: search.runs,
        drops_forced,
        faults_removed,
        limited: search.limited,
        genuine: search.check_reference.then_some(best.genuine),
        subject: best.subject,
        run: Rc::try_unwrap(best.run)
            .unwrap_or_else(|_| unreachable!("the other copies of the best run are dropped")),
    })
}

/// Which protocol timers a reduction pass may change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timers {
    /// Shorter timeouts and a longer housekeeping period.
    All,
    /// Shorter timeouts only.
    Shorter,
    /// None.
    Untouched,
}

impl Timers {
    fn allows(self, knob: &Knob) -> bool {
        match self {
            _ if !knob.nanos => true,
            Timers::All => true,
            Timers::Shorter => knob.target < knob.current,
            Timers::Untouched => false,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Timers::All => "changing every protocol timer",
            Timers::Shorter => "only shortening protocol timers",
            Timers::Untouched => "leaving protocol timers alone",
        }
    }
}

/// One greedy reduction of `best`: the steps enable each other (a dropped reply lets fewer
/// clients fail), so they repeat while they make progress; then the earliest deadline.
fn reduce<S: Subject>(
    search: &mut Search<'_, S>,
    best: &mut Best<S>,
    timers: Timers,
    faults_last: bool,
    leaps: bool,
) {
    for round in 0..8 {
        let events_at_start = size(best);
        // The cheap steps (a few re-runs each) until they stop helping, so that the
        // costly ones (a re-run per chunk of firings or messages) work on a smaller run.
        for _ in 0..8 {
            let before = size(best);
            if leaps {
                leap(search, best, timers);
            }
            if !faults_last {
                fewer_faults(search, best);
            }
            earlier_faults(search, best);
            fewer_operations(search, best, timers);
            if faults_last {
                fewer_faults(search, best);
            }
            plainer_network(search, best);
            if size(best) >= before || search.limited {
                break;
            }
        }
        if search.safety && timers != Timers::Untouched {
            fewer_firings(search, best);
        }
        // Coarse on the first round, while the run is large: single messages only once the
        // other steps have had another go.
        more_drops(search, best, if round == 0 { 32 } else { 1 });
        if size(best) >= events_at_start || search.limited {
            break;
        }
    }
    shorten(search, best);
}

/// `from` after a jump, and what the jump changed (empty: nothing): every size goes to its
/// target, but for `keep` sixteenths of the way from there to its current value; the
/// protocol timers `timer_allowed` lets go to their targets; the faults move all by the
/// time of the first, or all to time 0.
fn jumped<S: Subject>(
    from: &S,
    timer_allowed: &dyn Fn(&Knob) -> bool,
    all_at_zero: bool,
    keep: u64,
) -> (S, Vec<String>) {
    let mut subject = from.clone();
    let mut changed: Vec<String> = Vec::new();
    for knob in from.knobs() {
        let allowed = !knob.nanos || timer_allowed(&knob);
        let value = if knob.nanos || knob.target > knob.current {
            knob.target
        } else {
            knob.target + (knob.current - knob.target) * keep / 16
        };
        if allowed && value != knob.current {
            subject = subject.with_knob(&knob.name, value);
            changed.push(format!(
                "{} {} -> {}",
                knob.name,
                knob.show(knob.current),
                knob.show(value)
            ));
        }
    }
    let times = from.fault_times();
    let first = times.iter().map(|&(_, at)| at).min().unwrap_or(0);
    let mut moved = false;
    for (id, at) in times {
        let to = if all_at_zero { 0 } else { at - first };
        if to != at {
            subject = subject.with_fault_at(id, to);
            moved = true;
        }
    }
    if moved {
        changed.push(if all_at_zero {
            "every fault at 0s".to_string()
        } else {
            format!("every fault {} earlier", Time(first))
        });
    }
    (subject, changed)
}

/// `subject` (a reduced configuration of `best`'s, described by `changed`) with its
/// network and nodes drawn from the next [`RESEED_TRIES`] seeds after its own, in order (so
/// a shrink stays reproducible), once per description: the seed and run of the first that
/// fails the same way, and is genuine if `best` is.
fn on_other_seeds<S: Subject>(
    search: &mut Search<'_, S>,
    best: &Best<S>,
    subject: &S,
    changed: &[String],
) -> Option<(u64, Best<S>)> {
    let seed = subject.seed()?;
    if changed.is_empty() || search.reseeded.iter().any(|c| c == changed) {
        return None;
    }
    search.reseeded.push(changed.to_vec());
    for k in 1..=RESEED_TRIES {
        if search.out_of_budget() {
            return None;
        }
        let other = seed.wrapping_add(k);
        let candidate = subject.with_seed(other);
        let run = search.timed(|| candidate.run_drawn())?;
        if let Some(found) = search.keep_if_failing(&candidate, run) {
            if found.genuine >= best.genuine {
                return Some((other, found));
            }
        }
    }
    None
}

/// Every size at its smallest and the faults earlier at once: one re-run each that, when
/// it still fails, skips steps that one at a time would fail (a fault moved earlier may
/// need fewer requests, and fewer requests an earlier fault). The faults move all by the
/// time of the first (so a cut and its heal stay as far apart), or all to time 0; the
/// timers, as `timers` allows, go to their targets too, or stay. When none of those fails,
/// the smallest configurations are tried on the networks of a few other seeds.
fn leap<S: Subject>(search: &mut Search<'_, S>, best: &mut Best<S>, timers: Timers) {
    let safety = search.safety;
    let timer_allowed = |knob: &Knob| timers.allows(knob) && (!knob.safety_only || safety);
    let jump = |best: &Best<S>, with_timers: bool, all_at_zero: bool, keep: u64| {
        let allowed = |knob: &Knob| with_timers && timer_allowed(knob);
        jumped(&best.subject, &allowed, all_at_zero, keep)
    };
    let mut tried: Vec<Vec<String>> = Vec::new();
    // The smallest configurations tried, for other seeds below.
    let mut smallest: Vec<(S, Vec<String>)> = Vec::new();
    for (with_timers, all_at_zero, keep) in [
        (true, false, 0),
        (false, false, 0),
        (false, true, 0),
        (false, false, 1),
        (false, false, 4),
    ] {
        if search.limited || (with_timers && timers == Timers::Untouched) {
            continue;
        }
        let (subject, changed) = jump(best, with_timers, all_at_zero, keep);
        if keep == 0 && !changed.is_empty() && !tried.contains(&changed) {
            smallest.push((subject.clone(), changed.clone()));
        }
        // Nothing, or one change alone (the single steps try those), or a repeat.
        if changed.len() < 2 || tried.contains(&changed) {
            continue;
        }
        tried.push(changed.clone());
        if let Some(found) = search.attempt_changed(&subject, best, true) {
            *best = found;
            (search.progress)(&format!(
                "at once: {} ({} events)",
                changed.join(", "),
                size(best)
            ));
            return;
        }
    }
    // Other networks: a smallest configuration that fits no recorded schedule, and does
    // not fail on its own seed's network, may fail on another seed's. A run found there
    // replaces the best if it is smaller; if it is not, but has fewer operations or nodes
    // than the best, it is a landing: the next round of chains starts from it (see
    // [`shrink`]), as from a fresh recording of a smaller configuration.
    let fewer_operations = best
        .subject
        .knobs()
        .iter()
        .any(|k| !k.nanos && k.current > k.target);
    for (subject, changed) in smallest {
        if search.limited {
            return;
        }
        let Some((seed, found)) = on_other_seeds(search, best, &subject, &changed) else {
            continue;
        };
        let smaller = better(&found, best, true);
        if !smaller && !fewer_operations {
            continue;
        }
        if search.landing.is_none() {
            search.landing = Some(found.clone());
            if !smaller {
                (search.progress)(&format!(
                    "on the network of seed {seed}: {} ({} events; the next round starts there)",
                    changed.join(", "),
                    size(&found)
                ));
                return;
            }
        }
        if smaller {
            *best = found;
            (search.progress)(&format!(
                "at once, on the network of seed {seed}: {} ({} events)",
                changed.join(", "),
                size(best)
            ));
            return;
        }
    }
    // Time compressed: every protocol timer and every fault time scaled down together, so
    // that what the timers and faults did in order they still do, sooner.
    if !safety || timers == Timers::Untouched {
        return;
    }
    for divisor in [2u64, 4, 8] {
        if search.limited {
            return;
        }
        let mut subject = best.subject.clone();
        let mut scaled = 0;
        for knob in best.subject.knobs() {
            if knob.nanos && knob.current / divisor > 0 {
                subject = subject.with_knob(&knob.name, knob.current / divisor);
                scaled += 1;
            }
        }
        for (id, at) in best.subject.fault_times() {
            if at > 0 {
                subject = subject.with_fault_at(id, at / divisor);
                scaled += 1;
            }
        }
        if scaled < 2 {
            return;
        }
        if let Some(found) = search.attempt_changed(&subject, best, true) {
            *best = found;
            (search.progress)(&format!(
                "at once: every timer and fault time divided by {divisor} ({} events)",
                size(best)
            ));
            return;
        }
    }
}

/// Fewer client operations and nodes: for each knob, the smallest value that fails (its
/// floor first, then by bisection), keeping only runs no larger than the best.
fn fewer_operations<S: Subject>(search: &mut Search<'_, S>, best: &mut Best<S>, timers: Timers) {
    for knob in best.subject.knobs() {
        if (knob.safety_only && !search.safety)
            || knob.target == knob.current
            || !timers.allows(&knob)
        {
            continue;
        }
        let (current, target) = (knob.current, knob.target);
        // The value `step` away from `current` towards `target`.
        let value = |step: u64| {
            if target < current {
                current - step
            } else {
                current + step
            }
        };
        let accept = |search: &mut Search<'_, S>, best: &mut Best<S>, step: u64| {
            let subject = best.subject.with_knob(&knob.name, value(step));
            // A count may stay as large (fewer clients is simpler in itself); a duration
            // must make the run smaller.
            match search.attempt_changed(&subject, best, knob.nanos) {
                Some(found) => {
                    *best = found;
                    true
                }
                None => false,
            }
        };
        // The furthest step that fails: all the way first, then by bisection between the
        // furthest found and the nearest known not to.
        let whole = current.abs_diff(target);
        let mut reached = 0;
        if accept(search, best, whole) {
            reached = whole;
        } else {
            let mut refused = whole;
            // A duration is found to within a 64th of the way.
            let close = if knob.nanos { (whole / 64).max(1) } else { 1 };
            while refused - reached > close && !search.limited {
                let mid = reached + (refused - reached) / 2;
                if accept(search, best, mid) {
                    reached = mid;
                } else {
                    refused = mid;
                }
            }
        }
        if reached > 0 {
            (search.progress)(&format!(
                "{}: {} -> {} ({} events)",
                knob.name,
                knob.show(current),
                knob.show(value(reached)),
                size(best)
            ));
        }
    }
}

/// Faults that strike earlier: for each fault, the earliest time that still fails (time 0
/// first, then by bisection), so that the run reaches its failure without the fault-free
/// stretch before it.
fn earlier_faults<S: Subject>(search: &mut Search<'_, S>, best: &mut Best<S>) {
    for (id, at) in best.subject.fault_times() {
        if at == 0 || search.limited {
            continue;
        }
        let accept = |search: &mut Search<'_, S>, best: &mut Best<S>, value: u64| {
            let subject = best.subject.with_fault_at(id, value);
            match search.attempt_changed(&subject, best, false) {
                Some(found) => {
                    *best = found;
                    true
                }
                None => false,
            }
        };
        let mut earliest = at;
        if accept(search, best, 0) {
            earliest = 0;
        } else {
            let (mut lo, mut hi) = (1, at);
            while lo < hi && hi - lo >= (at / 16).max(1) && !search.limited {
                let mid = lo + (hi - lo) / 2;
                if accept(search, best, mid) {
                    hi = mid;
                    earliest = mid;
                } else {
                    lo = mid + 1;
                }
            }
        }
        if earliest < at {
            (search.progress)(&format!(
                "fault on line {id}: {} -> {} ({} events)",
                Time(at),
                Time(earliest),
                size(best)
            ));
        }
    }
}

/// Fewer faults (scenario commands), by delta debugging; how many were removed.
fn fewer_faults<S: Subject>(search: &mut Search<'_, S>, best: &mut Best<S>) -> usize {
    let faults = best.subject.faults();
    if faults.is_empty() {
        return 0;
    }
    let base = best.subject.clone();
    let kept = ddmin(&faults, &mut |keep: &[usize]| {
        let schedule = best.run.events().to_vec();
        let end = best.run.sim_time_ns();
        match search.attempt(&base.keeping_faults(keep), &schedule, end, &[]) {
            Some(found) if better(&found, best, false) => {
                *best = found;
                true
            }
            _ => false,
        }
    });
    if kept.len() < faults.len() {
        (search.progress)(&format!(
            "faults: {} -> {} ({} events)",
            faults.len(),
            kept.len(),
            size(best)
        ));
    }
    faults.len() - kept.len()
}

/// A plainer network: the recorded schedule only up to a cut, every later message
/// arriving after its link's last delay. The earliest cut whose run is smaller wins.
fn plainer_network<S: Subject>(search: &mut Search<'_, S>, best: &mut Best<S>) {
    let end = best.run.sim_time_ns();
    for eighths in 0..8u64 {
        if search.limited {
            return;
        }
        let cut = end / 8 * eighths;
        let schedule = schedule_before(best.run.events(), cut);
        if let Some(found) = search
            .attempt(&best.subject, &schedule, best.run.sim_time_ns(), &[])
            .filter(|found| better(found, best, true))
        {
            *best = found;
            (search.progress)(&format!(
                "the recorded network up to {}, a plain one after ({} events)",
                Time(cut),
                size(best)
            ));
            return;
        }
    }
}

/// Deliveries turned into drops: first every delivery of a link at once, then chunks of
/// the delivered messages, halving the chunk size down to a `parts_max`-th of them; a
/// removal is kept if the run still fails and is smaller. How many messages were turned into drops.
fn more_drops<S: Subject>(
    search: &mut Search<'_, S>,
    best: &mut Best<S>,
    parts_max: usize,
) -> usize {
    let mut forced = 0;
    let mut try_drop = |search: &mut Search<'_, S>, best: &mut Best<S>, drops: &[LinkMessage]| {
        let schedule = best.run.events().to_vec();
        match search
            .attempt(&best.subject, &schedule, best.run.sim_time_ns(), drops)
            .filter(|found| better(found, best, true))
        {
            Some(found) => {
                *best = found;
                forced += drops.len();
                (search.progress)(&format!(
                    "dropped {} more messages ({} events)",
                    drops.len(),
                    size(best)
                ));
                true
            }
            None => false,
        }
    };
    let delivered =
        |best: &Best<S>| ScheduleFollower::from_events(best.run.events()).delivered_messages();

    // Whole links.
    let links: BTreeSet<(NodeId, NodeId)> =
        delivered(best).iter().map(|m| (m.from, m.to)).collect();
    for (from, to) in links {
        if search.limited {
            break;
        }
        let on_link: Vec<LinkMessage> = delivered(best)
            .into_iter()
            .filter(|m| (m.from, m.to) == (from, to))
            .collect();
        if !on_link.is_empty() {
            try_drop(search, best, &on_link);
        }
    }

    // Chunks, down to single messages (or to a `parts_max`-th of the messages).
    let mut chunk = delivered(best).len() / 2;
    let finest = (delivered(best).len() / parts_max.max(1)).max(1);
    while chunk >= finest && !search.limited {
        let mut at = 0;
        loop {
            let messages = delivered(best);
            if at >= messages.len() || search.limited {
                break;
            }
            let end = (at + chunk).min(messages.len());
            if !try_drop(search, best, &messages[at..end]) {
                at = end;
            }
        }
        chunk /= 2;
    }
    forced
}

/// Timer firings put off by a period (safety failures only: no safety property may depend
/// on when a node's timers fire): housekeeping rounds whose retransmissions the failure
/// does not need. Chunks of the run's firings, halving the chunk size; a chunk is kept
/// if the run still fails and is smaller.
fn fewer_firings<S: Subject>(search: &mut Search<'_, S>, best: &mut Best<S>) {
    let firings = |best: &Best<S>| -> Vec<(NodeId, u64)> {
        best.run
            .events()
            .iter()
            .filter_map(|e| match &e.kind {
                EventKind::Timer { timer_id, .. } => Some((e.node, timer_id.0)),
                _ => None,
            })
            .collect()
    };
    let before = size(best);
    let mut put_off = 0;
    let mut chunk = firings(best).len().div_ceil(2);
    while chunk >= 1 && !search.limited {
        let mut at = 0;
        loop {
            let all = firings(best);
            if at >= all.len() || search.limited {
                break;
            }
            let end = (at + chunk).min(all.len());
            let Some(changed) = best.subject.postponing(&all[at..end]) else {
                return;
            };
            match search.attempt_changed(&changed, best, true) {
                Some(found) => {
                    *best = found;
                    put_off += end - at;
                }
                None => at = end,
            }
        }
        chunk /= 2;
    }
    if size(best) < before {
        (search.progress)(&format!(
            "put off {put_off} timer firings ({} events)",
            size(best)
        ));
    }
}

/// A shorter run: the earliest deadline that still fails.
fn shorten<S: Subject>(search: &mut Search<'_, S>, best: &mut Best<S>) {
    let (mut lo, mut hi) = (0, best.subject.deadline_ns());
    let before = hi;
    while lo < hi && !search.limited {
        let mid = lo + (hi - lo) / 2;
        let schedule = best.run.events().to_vec();
        match search
            .attempt(
                &best.subject.with_deadline(mid),
                &schedule,
                best.run.sim_time_ns(),
                &[],
            )
            .filter(|found| better(found, best, false))
        {
            Some(found) => {
                hi = mid;
                *best = found;
            }
            None => lo = mid + 1,
        }
    }
    if hi < before {
        (search.progress)(&format!(
            "deadline: {} -> {} ({} events)",
            Time(before),
            Time(hi),
            size(best)
        ));
    }
}

/// Delta debugging (ddmin) over `items`: a smallest-found subset for which `fails` holds,
/// given that it holds for all of them. `fails` receives the subset to keep.
fn ddmin(items: &[usize], fails: &mut dyn FnMut(&[usize]) -> bool) -> Vec<usize> {
    let mut current: Vec<usize> = items.to_vec();
    let mut parts = 2;
    while current.len() >= 2 || (current.len() == 1 && parts <= 2) {
        if current.len() == 1 {
            // Try without the last one.
            if fails(&[]) {
                current.clear();
            }
            break;
        }
        let size = current.len().div_ceil(parts);
        let chunks: Vec<Vec<usize>> = current.chunks(size).map(<[usize]>::to_vec).collect();
        let mut reduced = false;
        // Try each complement (drop one chunk).
        for i in 0..chunks.len() {
            let complement: Vec<usize> = chunks
                .iter()
                .enumerate()
                .filter(|&(j, _)| j != i)
                .flat_map(|(_, c)| c.iter().copied())
                .collect();
            if fails(&complement) {
                current = complement;
                parts = (parts - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if parts >= current.len() {
                break;
            }
            parts = (parts * 2).min(current.len());
        }
    }
    current
}

#[cfg(test)]
mod tests {
    use super::ddmin;

    #[test]
    fn ddmin_finds_the_pair_that_fails() {
        let items: Vec<usize> = (0..32).collect();
        let mut calls = 0;
        let kept = ddmin(&items, &mut |keep| {
            calls += 1;
            keep.contains(&5) && keep.contains(&23)
        });
        assert_eq!(kept, vec![5, 23]);
        assert!(calls < 100, "{calls} calls");
    }

    #[test]
    fn ddmin_can_remove_everything() {
        let items: Vec<usize> = (0..5).collect();
        assert!(ddmin(&items, &mut |_| true).is_empty());
    }
}
