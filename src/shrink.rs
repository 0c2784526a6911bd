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

use crate::config::{Protocol, RunConfig};
use crate::run::{run_with, RunOptions, RunSummary};
use rehearsal_sim_core::{EndReason, EventKind, NodeId, Outcome, Time, TraceEvent};
use std::collections::{BTreeMap, BTreeSet};

/// What a shrinker can re-run and reduce: a built-in run configuration, or a simulation a
/// test builds (see [`crate::testing`]).
pub trait Subject: Clone {
    /// What one run yields.
    type Run: Trial;
    /// Runs this subject following `schedule`; `None` if it cannot run as it is.
    fn run(&self, schedule: ScheduleFollower) -> Option<Self::Run>;
    /// The sizes that may be lowered: name, current value, smallest value allowed.
    fn knobs(&self) -> Vec<(&'static str, u64, u64)> {
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
}

/// What the shrinker reads of one run.
pub trait Trial {
    fn outcome(&self) -> Outcome;
    fn end(&self) -> EndReason;
    fn violations(&self) -> &[String];
    fn events(&self) -> &[TraceEvent];
    /// The run's trace digest, in hex (for trace footers).
    fn digest_hex(&self) -> String;
    fn sim_time_ns(&self) -> u64;
}

impl Trial for RunSummary {
    fn outcome(&self) -> Outcome {
        self.outcome
    }
    fn end(&self) -> EndReason {
        self.end
    }
    fn violations(&self) -> &[String] {
        &self.violations
    }
    fn events(&self) -> &[TraceEvent] {
        &self.trace
    }
    fn digest_hex(&self) -> String {
        self.digest.0.clone()
    }
    fn sim_time_ns(&self) -> u64 {
        self.sim_time.as_nanos()
    }
}

impl Subject for RunConfig {
    type Run = RunSummary;

    fn run(&self, schedule: ScheduleFollower) -> Option<RunSummary> {
        let mut config = self.clone();
        config.follow_schedule = true;
        let options = RunOptions {
            keep_trace: true,
            follow: Some(schedule),
            minimal_network: false,
        };
        run_with(&config, options).ok()
    }

    fn knobs(&self) -> Vec<(&'static str, u64, u64)> {
        let mut knobs = Vec::new();
        match self.protocol {
            Protocol::Unreplicated => {
                knobs.push(("clients", u64::from(self.clients), 1));
                knobs.push(("requests per client", self.requests, 1));
            }
            Protocol::Benaloh | Protocol::BenalohTimed => {
                knobs.push(("nodes", u64::from(self.nodes), 2));
            }
            Protocol::Pbft => {
                knobs.push(("clients", u64::from(self.clients), 1));
                knobs.push(("requests per client", self.requests, 1));
            }
        }
        knobs
    }

    fn with_knob(&self, name: &str, value: u64) -> Self {
        let mut c = self.clone();
        match name {
            "clients" => c.clients = value as u32,
            "requests per client" => c.requests = value,
            "nodes" => c.nodes = value as u32,
            _ => {}
        }
        c
    }

    fn faults(&self) -> Vec<usize> {
        self.scenario
            .as_ref()
            .map(|s| s.command_lines())
            .unwrap_or_default()
    }

    fn keeping_faults(&self, keep: &[usize]) -> Self {
        let mut c = self.clone();
        c.scenario = self.scenario.as_ref().map(|s| s.keeping(keep));
        c
    }

    fn deadline_ns(&self) -> u64 {
        self.duration_ns
    }

    fn with_deadline(&self, ns: u64) -> Self {
        let mut c = self.clone();
        c.duration_ns = ns;
        c
    }

    fn reference(&self) -> Option<Self> {
        match self.mutant.as_deref() {
            None | Some("none") => None,
            Some(_) => Some(RunConfig {
                mutant: None,
                ..self.clone()
            }),
        }
    }
}
use rehearsal_traces::follow::FORCED_DROP_REASON;
use rehearsal_traces::{LinkMessage, ScheduleFollower};
use std::time::{Duration, Instant};

/// Limits on the work a shrink may do.
#[derive(Debug, Clone)]
pub struct ShrinkLimits {
    /// Most re-runs.
    pub runs_max: u64,
    /// Most wall time; the best reduction so far is kept when it runs out.
    pub time_max: Duration,
}

impl Default for ShrinkLimits {
    fn default() -> Self {
        ShrinkLimits {
            runs_max: 5_000,
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
    /// What failed: an invariant name and when, or `stalled`.
    pub failure: String,
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

/// What failed in a run: the first violated invariant's name and whether it failed during
/// the run (a safety check on an output) or at its end (a liveness check), or `stalled`.
/// A shrink keeps only runs that fail the same way: a wrong result must not shrink into a
/// missing one.
pub fn failure_of(outcome: Outcome, end: EndReason, violations: &[String]) -> Option<String> {
    match outcome {
        Outcome::Ok => None,
        Outcome::Stalled => Some("stalled".into()),
        Outcome::Violation => {
            let invariant = violations
                .first()
                .map(|v| invariant_of(v).to_string())
                .unwrap_or_else(|| "violation".into());
            let when = if end == EndReason::Violation {
                "during the run"
            } else {
                "at the end"
            };
            Some(format!("{invariant} ({when})"))
        }
    }
}

/// The invariant a violation line (`invariant: detail`) or failure names.
fn invariant_of(failure: &str) -> &str {
    failure.split([':', '(']).next().unwrap_or(failure).trim()
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

/// A follower of a recording that imposes the shrinker's drops again as faults
/// ([`Fate::FaultDrop`](rehearsal_sim_core::Fate::FaultDrop)), so that liveness checks
/// count from the last of them as they did when the recording was made. A plain
/// [`ScheduleFollower::from_events`] re-enacts them as ordinary losses, which the
/// invariants do not hear of.
///
/// Messages still in flight when the recording ended are left out of the schedule when
/// nothing after them on their link was recorded: a follower would hold them forever (a
/// loss nobody imposed), while left out they arrive after their link's last delay.
pub fn follower_of(events: &[TraceEvent]) -> ScheduleFollower {
    let schedule = without_trailing_in_flight(events);
    let mut follower = ScheduleFollower::from_events(&schedule);
    follower.force_drops(forced_drops_in(events));
    follower
}

/// `events` without the sends that never met their fate and come after the last send of
/// their link that did (so no other message's index on the link moves).
fn without_trailing_in_flight(events: &[TraceEvent]) -> Vec<TraceEvent> {
    let mut fated: BTreeSet<u64> = BTreeSet::new();
    for e in events {
        match &e.kind {
            EventKind::Deliver { id, .. }
            | EventKind::Drop { id, .. }
            | EventKind::Corrupt { id, .. } => {
                fated.insert(*id);
            }
            _ => {}
        }
    }
    // The last send with a fate, per link.
    let mut last_fated: BTreeMap<(NodeId, NodeId), u64> = BTreeMap::new();
    for e in events {
        if let EventKind::Send { to, id, .. } = &e.kind {
            if fated.contains(id) {
                last_fated.insert((e.node, *to), *id);
            }
        }
    }
    events
        .iter()
        .filter(|e| match &e.kind {
            EventKind::Send { to, id, .. } => {
                fated.contains(id) || last_fated.get(&(e.node, *to)).is_some_and(|&l| *id < l)
            }
            _ => true,
        })
        .cloned()
        .collect()
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

struct Search<'p> {
    failure: String,
    /// Whether candidates are checked against the correct protocol (liveness failures of
    /// a mutant).
    check_reference: bool,
    limits: ShrinkLimits,
    started: Instant,
    runs: u64,
    limited: bool,
    progress: &'p mut dyn FnMut(&str),
}

impl Search<'_> {
    fn out_of_budget(&mut self) -> bool {
        if self.runs >= self.limits.runs_max || self.started.elapsed() >= self.limits.time_max {
            self.limited = true;
        }
        self.limited
    }

    /// Runs `subject` following `schedule` (with the drops a shrink imposed on it imposed
    /// again) and with `drops` forced too; the run if it still fails the same way.
    fn attempt<S: Subject>(
        &mut self,
        subject: &S,
        schedule: &[TraceEvent],
        drops: &[LinkMessage],
    ) -> Option<Best<S>> {
        if self.out_of_budget() {
            return None;
        }
        self.runs += 1;
        let mut follower = follower_of(schedule);
        follower.force_drops(drops.iter().copied());
        let run = subject.run(follower)?;
        if failure_of(run.outcome(), run.end(), run.violations()).as_deref() != Some(&self.failure)
        {
            return None;
        }
        let genuine = self.genuine(subject, &run);
        Some(Best {
            subject: subject.clone(),
            run,
            genuine,
        })
    }

    /// Whether the correct protocol passes following `run`'s schedule (true when there is
    /// nothing to check).
    fn genuine<S: Subject>(&mut self, subject: &S, run: &S::Run) -> bool {
        if !self.check_reference {
            return true;
        }
        let Some(reference) = subject.reference() else {
            return true;
        };
        self.runs += 1;
        reference
            .run(follower_of(run.events()))
            .is_some_and(|r| r.outcome() == Outcome::Ok)
    }
}

/// The best reduction so far: a subject, its run, and whether its failure is genuine.
struct Best<S: Subject> {
    subject: S,
    run: S::Run,
    genuine: bool,
}

fn size<S: Subject>(best: &Best<S>) -> usize {
    best.run.events().len()
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
pub fn shrink<S: Subject>(
    subject: &S,
    events: &[TraceEvent],
    limits: ShrinkLimits,
    progress: &mut dyn FnMut(&str),
) -> Result<Shrunk<S>, ShrinkError> {
    let mut search = Search {
        failure: String::new(),
        check_reference: false,
        limits,
        started: Instant::now(),
        runs: 0,
        limited: false,
        progress,
    };
    // The starting point: the recording, re-enacted.
    search.runs += 1;
    let first = subject
        .run(follower_of(events))
        .ok_or_else(|| ShrinkError::Config("the recorded run cannot be re-run".into()))?;
    search.failure = match failure_of(first.outcome(), first.end(), first.violations()) {
        Some(f) => f,
        None => return Err(ShrinkError::NotReproduced(first.outcome().as_str().into())),
    };
    let recorded = recorded_failure(events);
    if invariant_of(&search.failure) != recorded {
        return Err(ShrinkError::OtherFailure {
            recorded,
            now: first
                .violations()
                .first()
                .cloned()
                .unwrap_or_else(|| search.failure.clone()),
        });
    }
    let events_before = events.len() as u64;
    // Safety failures cannot be the schedule's doing (no network makes correct replicas
    // disagree); liveness failures can.
    search.check_reference = first.end() != EndReason::Violation && subject.reference().is_some();
    let genuine = search.genuine(subject, &first);
    let mut best = Best {
        subject: subject.clone(),
        run: first,
        genuine,
    };
    let mut drops_forced = 0;
    let mut faults_removed = 0;

    // The earliest deadline that still fails, first: every later attempt then ends there
    // at the latest, so one that no longer fails costs no more than the failure did
    // (rather than running on to the original deadline).
    shorten(&mut search, &mut best);

    // The steps enable each other (a dropped reply lets fewer clients fail): repeat them
    // while they make progress.
    for _round in 0..8 {
        let events_at_start = size(&best);
        fewer_operations(&mut search, &mut best);
        faults_removed += fewer_faults(&mut search, &mut best);
        plainer_network(&mut search, &mut best);
        drops_forced += more_drops(&mut search, &mut best);
        if size(&best) >= events_at_start || search.limited {
            break;
        }
    }
    shorten(&mut search, &mut best);

    Ok(Shrunk {
        events_after: size(&best) as u64,
        failure: search.failure,
        events_before,
        runs: search.runs,
        drops_forced,
        faults_removed,
        limited: search.limited,
        genuine: search.check_reference.then_some(best.genuine),
        subject: best.subject,
        run: best.run,
    })
}

/// Fewer client operations and nodes: for each knob, the smallest value that fails (its
/// floor first, then by bisection), keeping only runs no larger than the best.
fn fewer_operations<S: Subject>(search: &mut Search<'_>, best: &mut Best<S>) {
    for (name, current, floor) in best.subject.knobs() {
        let accept = |search: &mut Search<'_>, best: &mut Best<S>, value: u64| {
            let schedule = best.run.events().to_vec();
            match search.attempt(&best.subject.with_knob(name, value), &schedule, &[]) {
                Some(found) if better(&found, best, false) => {
                    *best = found;
                    true
                }
                _ => false,
            }
        };
        let mut lowest = current;
        if floor < current && accept(search, best, floor) {
            lowest = floor;
        } else {
            let (mut lo, mut hi) = (floor.saturating_add(1), current);
            while lo < hi && !search.limited {
                let mid = lo + (hi - lo) / 2;
                if accept(search, best, mid) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            lowest = lowest.min(hi);
        }
        if lowest < current {
            (search.progress)(&format!(
                "{name}: {current} -> {lowest} ({} events)",
                size(best)
            ));
        }
    }
}

/// Fewer faults (scenario commands), by delta debugging; how many were removed.
fn fewer_faults<S: Subject>(search: &mut Search<'_>, best: &mut Best<S>) -> usize {
    let faults = best.subject.faults();
    if faults.is_empty() {
        return 0;
    }
    let base = best.subject.clone();
    let kept = ddmin(&faults, &mut |keep: &[usize]| {
        let schedule = best.run.events().to_vec();
        match search.attempt(&base.keeping_faults(keep), &schedule, &[]) {
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
fn plainer_network<S: Subject>(search: &mut Search<'_>, best: &mut Best<S>) {
    let end = best.run.sim_time_ns();
    for eighths in 0..8u64 {
        if search.limited {
            return;
        }
        let cut = end / 8 * eighths;
        let schedule = schedule_before(best.run.events(), cut);
        if let Some(found) = search
            .attempt(&best.subject, &schedule, &[])
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
/// the delivered messages, halving the chunk size; a removal is kept if the run still
/// fails and is smaller. How many messages were turned into drops.
fn more_drops<S: Subject>(search: &mut Search<'_>, best: &mut Best<S>) -> usize {
    let mut forced = 0;
    let mut try_drop = |search: &mut Search<'_>, best: &mut Best<S>, drops: &[LinkMessage]| {
        let schedule = best.run.events().to_vec();
        match search
            .attempt(&best.subject, &schedule, drops)
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
    let delivered = |best: &Best<S>| follower_of(best.run.events()).delivered_messages();

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

    // Chunks, down to single messages.
    let mut chunk = delivered(best).len() / 2;
    while chunk >= 1 && !search.limited {
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

/// A shorter run: the earliest deadline that still fails.
fn shorten<S: Subject>(search: &mut Search<'_>, best: &mut Best<S>) {
    let (mut lo, mut hi) = (0, best.subject.deadline_ns());
    let before = hi;
    while lo < hi && !search.limited {
        let mid = lo + (hi - lo) / 2;
        let schedule = best.run.events().to_vec();
        match search
            .attempt(&best.subject.with_deadline(mid), &schedule, &[])
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
