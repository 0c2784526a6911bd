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
pub struct Shrunk {
    /// The minimal run: configuration (marked as following its own schedule) and events.
    pub run: RunSummary,
    /// What failed: an invariant name, or `stalled`.
    pub failure: String,
    pub events_before: u64,
    pub events_after: u64,
    /// Re-runs made.
    pub runs: u64,
    /// Messages turned from deliveries into drops.
    pub drops_forced: usize,
    /// Scenario commands removed.
    pub faults_removed: usize,
    /// Whether a limit stopped the search before it finished.
    pub limited: bool,
}

/// Why a run cannot be shrunk.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShrinkError {
    #[error("nothing to shrink: the run did not fail (outcome ok)")]
    NotFailing,
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

    /// Runs `config` following `schedule` with `drops` forced; the run if it still fails
    /// the same way.
    fn attempt(
        &mut self,
        config: &RunConfig,
        schedule: &[TraceEvent],
        drops: &[LinkMessage],
    ) -> Option<RunSummary> {
        if self.out_of_budget() {
            return None;
        }
        self.runs += 1;
        let mut follower = ScheduleFollower::from_events(schedule);
        follower.force_drops(drops.iter().copied());
        let options = RunOptions {
            keep_trace: true,
            follow: Some(follower),
        };
        let run = run_with(config, options).ok()?;
        (failure_of(run.outcome, run.end, &run.violations).as_deref() == Some(&self.failure))
            .then_some(run)
    }
}

/// Shrinks the failing run `config` whose recorded events are `events`. `progress` hears
/// a line per accepted reduction.
pub fn shrink(
    config: &RunConfig,
    events: &[TraceEvent],
    limits: ShrinkLimits,
    progress: &mut dyn FnMut(&str),
) -> Result<Shrunk, ShrinkError> {
    let mut search = Search {
        failure: String::new(),
        limits,
        started: Instant::now(),
        runs: 0,
        limited: false,
        progress,
    };
    // The starting point: the recording, re-enacted.
    let mut start_config = config.clone();
    start_config.follow_schedule = true;
    let first = run_with(
        &start_config,
        RunOptions {
            keep_trace: true,
            follow: Some(ScheduleFollower::from_events(events)),
        },
    )
    .map_err(ShrinkError::Config)?;
    search.failure = match failure_of(first.outcome, first.end, &first.violations) {
        Some(f) => f,
        None if events.is_empty() => return Err(ShrinkError::NotFailing),
        None => return Err(ShrinkError::NotReproduced(first.outcome.as_str().into())),
    };
    let events_before = first.events;
    let mut best = first;
    let mut drops_forced = 0;
    let mut faults_removed = 0;

    // Steps 1 to 3 enable each other (a dropped reply lets fewer clients fail): repeat
    // them while they make progress.
    for _round in 0..4 {
        let events_at_start = best.events;
        // 1. Fewer client operations and nodes: for each knob, the smallest value that fails.
        for knob in Knob::ALL {
            let current = knob.get(&best.config);
            let floor = knob.floor(&best.config);
            if current <= floor {
                continue;
            }
            // Binary search for the smallest failing value in floor..current.
            let (mut lo, mut hi) = (floor, current);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let mut trial = best.config.clone();
                knob.set(&mut trial, mid);
                match search.attempt(&trial, &best.trace, &[]) {
                    Some(run) => {
                        hi = mid;
                        best = run;
                    }
                    None => lo = mid + 1,
                }
                if search.limited {
                    break;
                }
            }
            if knob.get(&best.config) < current {
                (search.progress)(&format!(
                    "{}: {current} -> {} ({} events)",
                    knob.name(),
                    knob.get(&best.config),
                    best.events
                ));
            }
        }

        // 2. Fewer faults.
        if let Some(scenario) = best.config.scenario.clone() {
            let lines = scenario.command_lines();
            let kept = ddmin(&lines, &mut |keep: &[usize]| {
                let mut trial = best.config.clone();
                trial.scenario = Some(scenario.keeping(keep));
                match search.attempt(&trial, &best.trace, &[]) {
                    Some(run) => {
                        best = run;
                        true
                    }
                    None => false,
                }
            });
            faults_removed = lines.len() - kept.len();
            if faults_removed > 0 {
                (search.progress)(&format!(
                    "faults: {} -> {} ({} events)",
                    lines.len(),
                    kept.len(),
                    best.events
                ));
            }
        }

        // 3. Deliveries turned into drops: remove chunks of the delivered messages, halving
        //    the chunk size, keeping every removal that still fails.
        let mut chunk = ScheduleFollower::from_events(&best.trace)
            .delivered_messages()
            .len()
            / 2;
        while chunk >= 1 && !search.limited {
            let mut at = 0;
            loop {
                let delivered = ScheduleFollower::from_events(&best.trace).delivered_messages();
                if at >= delivered.len() || search.limited {
                    break;
                }
                let end = (at + chunk).min(delivered.len());
                match search.attempt(&best.config, &best.trace, &delivered[at..end]) {
                    Some(run) if run.events < best.events => {
                        drops_forced += end - at;
                        best = run;
                        (search.progress)(&format!(
                            "dropped {} more messages ({} events)",
                            end - at,
                            best.events
                        ));
                    }
                    _ => at = end,
                }
            }
            chunk /= 2;
        }

        if best.events >= events_at_start || search.limited {
            break;
        }
    }

    // 4. A shorter run: the earliest deadline that still fails.
    let (mut lo, mut hi) = (0, best.config.duration_ns);
    while lo < hi && !search.limited {
        let mid = lo + (hi - lo) / 2;
        let mut trial = best.config.clone();
        trial.duration_ns = mid;
        match search.attempt(&trial, &best.trace, &[]) {
            Some(run) => {
                hi = mid;
                best = run;
            }
            None => lo = mid + 1,
        }
    }

    Ok(Shrunk {
        events_after: best.events,
        failure: search.failure,
        events_before,
        runs: search.runs,
        drops_forced,
        faults_removed,
        limited: search.limited,
        run: best,
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

/// A size of the run the shrinker may lower.
#[derive(Debug, Clone, Copy)]
enum Knob {
    Clients,
    Requests,
    Nodes,
}

impl Knob {
    const ALL: [Knob; 3] = [Knob::Clients, Knob::Requests, Knob::Nodes];

    fn name(self) -> &'static str {
        match self {
            Knob::Clients => "clients",
            Knob::Requests => "requests per client",
            Knob::Nodes => "nodes",
        }
    }

    fn get(self, c: &RunConfig) -> u64 {
        match self {
            Knob::Clients => u64::from(c.clients),
            Knob::Requests => c.requests,
            Knob::Nodes => u64::from(c.nodes),
        }
    }

    fn set(self, c: &mut RunConfig, value: u64) {
        match self {
            Knob::Clients => c.clients = value as u32,
            Knob::Requests => c.requests = value,
            Knob::Nodes => c.nodes = value as u32,
        }
    }

    /// The smallest value the protocol runs with; the current value when the knob does not
    /// apply to the protocol.
    fn floor(self, c: &RunConfig) -> u64 {
        match (self, c.protocol) {
            (Knob::Clients | Knob::Requests, Protocol::Unreplicated) => 1,
            (Knob::Nodes, Protocol::Benaloh | Protocol::BenalohTimed) => 2,
            _ => self.get(c),
        }
    }
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
