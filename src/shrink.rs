//! Shrinking a failing run to a minimal one that fails the same way.
//!
//! The shrinker works on a run's configuration and its recorded schedule. Every attempt
//! re-runs the protocol while following the best schedule found so far (see
//! [`ScheduleFollower`]), so the attempts do not re-draw the network from the seed and a
//! reduction found once stays found. It tries, in order:
//!
//! 1. fewer client operations (clients, requests per client) and fewer nodes where the
//!    protocol allows;
//! 2. fewer faults (scenario commands), by delta debugging;
//! 3. deliveries turned into drops, by delta debugging over the delivered messages;
//! 4. a shorter run (an earlier deadline).
//!
//! A reduction is kept only if the run still violates the same invariant (or stalls, for a
//! stalled run). The minimal run is self-contained: its trace header marks it as following
//! its own recorded schedule, so `rehearsal replay` re-enacts it from the file alone.

use crate::config::{Protocol, RunConfig};
use crate::run::{run_with, RunOptions, RunSummary};
use rehearsal_sim_core::{EndReason, Outcome, TraceEvent};

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
}
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
}

/// Why a run cannot be shrunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShrinkError {
    #[error("the run no longer fails when re-enacted from its trace (outcome {0}); was the trace made by another version?")]
    NotReproduced(String),
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
                .map(|v| v.split(':').next().unwrap_or(v).to_string())
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

struct Search<'p> {
    failure: String,
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

    /// Runs `subject` following `schedule` with `drops` forced; the run if it still
    /// fails the same way.
    fn attempt<S: Subject>(
        &mut self,
        subject: &S,
        schedule: &[TraceEvent],
        drops: &[LinkMessage],
    ) -> Option<(S, S::Run)> {
        if self.out_of_budget() {
            return None;
        }
        self.runs += 1;
        let mut follower = ScheduleFollower::from_events(schedule);
        follower.force_drops(drops.iter().copied());
        let run = subject.run(follower)?;
        (failure_of(run.outcome(), run.end(), run.violations()).as_deref() == Some(&self.failure))
            .then(|| (subject.clone(), run))
    }
}

/// Shrinks the failing run of `subject` whose recorded events are `events`. `progress`
/// hears a line per accepted reduction.
pub fn shrink<S: Subject>(
    subject: &S,
    events: &[TraceEvent],
    limits: ShrinkLimits,
    progress: &mut dyn FnMut(&str),
) -> Result<Shrunk<S>, ShrinkError> {
    let mut search = Search {
        failure: String::new(),
        limits,
        started: Instant::now(),
        runs: 0,
        limited: false,
        progress,
    };
    // The starting point: the recording, re-enacted.
    let first = subject
        .run(ScheduleFollower::from_events(events))
        .ok_or_else(|| ShrinkError::Config("the recorded run cannot be re-run".into()))?;
    search.failure = match failure_of(first.outcome(), first.end(), first.violations()) {
        Some(f) => f,
        None => return Err(ShrinkError::NotReproduced(first.outcome().as_str().into())),
    };
    let events_before = first.events().len() as u64;
    let mut best: (S, S::Run) = (subject.clone(), first);
    let size = |b: &(S, S::Run)| b.1.events().len();
    let mut drops_forced = 0;
    let mut faults_removed = 0;

    // Steps 1 to 3 enable each other (a dropped reply lets fewer clients fail): repeat
    // them while they make progress.
    for _round in 0..4 {
        let events_at_start = size(&best);

        // 1. Fewer client operations and nodes: for each knob, the smallest that fails.
        for (name, current, floor) in best.0.knobs() {
            let (mut lo, mut hi) = (floor, current);
            while lo < hi && !search.limited {
                let mid = lo + (hi - lo) / 2;
                match search.attempt(&best.0.with_knob(name, mid), best.1.events(), &[]) {
                    Some(found) => {
                        hi = mid;
                        best = found;
                    }
                    None => lo = mid + 1,
                }
            }
            if hi < current {
                (search.progress)(&format!(
                    "{name}: {current} -> {hi} ({} events)",
                    size(&best)
                ));
            }
        }

        // 2. Fewer faults, by delta debugging.
        let faults = best.0.faults();
        if !faults.is_empty() {
            let base = best.0.clone();
            let kept = ddmin(&faults, &mut |keep: &[usize]| match search.attempt(
                &base.keeping_faults(keep),
                best.1.events(),
                &[],
            ) {
                Some(found) => {
                    best = found;
                    true
                }
                None => false,
            });
            if kept.len() < faults.len() {
                faults_removed += faults.len() - kept.len();
                (search.progress)(&format!(
                    "faults: {} -> {} ({} events)",
                    faults.len(),
                    kept.len(),
                    size(&best)
                ));
            }
        }

        // 3. Deliveries turned into drops: remove chunks of the delivered messages,
        //    halving the chunk size, keeping every removal that still fails.
        let mut chunk = ScheduleFollower::from_events(best.1.events())
            .delivered_messages()
            .len()
            / 2;
        while chunk >= 1 && !search.limited {
            let mut at = 0;
            loop {
                let delivered = ScheduleFollower::from_events(best.1.events()).delivered_messages();
                if at >= delivered.len() || search.limited {
                    break;
                }
                let end = (at + chunk).min(delivered.len());
                let smaller = search
                    .attempt(&best.0, best.1.events(), &delivered[at..end])
                    .filter(|found| size(found) < size(&best));
                match smaller {
                    Some(found) => {
                        drops_forced += end - at;
                        best = found;
                        (search.progress)(&format!(
                            "dropped {} more messages ({} events)",
                            end - at,
                            size(&best)
                        ));
                    }
                    None => at = end,
                }
            }
            chunk /= 2;
        }
        if size(&best) >= events_at_start || search.limited {
            break;
        }
    }

    // 4. A shorter run: the earliest deadline that still fails.
    let (mut lo, mut hi) = (0, best.0.deadline_ns());
    while lo < hi && !search.limited {
        let mid = lo + (hi - lo) / 2;
        match search.attempt(&best.0.with_deadline(mid), best.1.events(), &[]) {
            Some(found) => {
                hi = mid;
                best = found;
            }
            None => lo = mid + 1,
        }
    }

    Ok(Shrunk {
        events_after: size(&best) as u64,
        failure: search.failure,
        events_before,
        runs: search.runs,
        drops_forced,
        faults_removed,
        limited: search.limited,
        subject: best.0,
        run: best.1,
    })
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
