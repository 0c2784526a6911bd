//! Shrinking the built-in protocols' runs: a [`RunConfig`] as the shrinker's [`Subject`]
//! (its sizes, timers, faults, seed and mutant are what the shrinker may change). The
//! shrinker itself is the checking library's ([`rehearsal_traces::shrink`]), re-exported
//! here.

pub use rehearsal_traces::shrink::*;

use crate::config::RunConfig;
use crate::run::{run_with, RunOptions, RunSummary};
use rehearsal_sim_core::{NodeId, RunResult, TraceEvent};
use rehearsal_traces::ScheduleFollower;

impl Trial for RunSummary {
    fn result(&self) -> &RunResult {
        &self.result
    }
    fn events(&self) -> &[TraceEvent] {
        &self.trace
    }
}

impl RunConfig {
    /// The fewest nodes the protocol runs with, other sizes as they are.
    fn smallest_nodes(&self) -> Option<u32> {
        (1..=self.nodes).find(|&nodes| {
            self.protocol
                .check_sizes(&rehearsal_sim_core::protocol::Sizes {
                    nodes,
                    ..self.sizes()
                })
                .is_ok()
        })
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
            coverage: false,
        };
        run_with(&config, options).ok()
    }

    fn run_drawn(&self) -> Option<RunSummary> {
        let mut config = self.clone();
        config.follow_schedule = false;
        let options = RunOptions {
            keep_trace: true,
            follow: None,
            minimal_network: false,
            coverage: false,
        };
        run_with(&config, options).ok()
    }

    fn knobs(&self) -> Vec<Knob> {
        let mut knobs = Vec::new();
        // Sizes, down to the smallest the protocol runs with: fewer clients, fewer
        // requests each, fewer nodes.
        if self.protocol.has_clients() {
            knobs.push(Knob::count("clients", u64::from(self.clients), 1));
            knobs.push(Knob::count("requests per client", self.requests, 1));
        }
        if let Some(floor) = self.smallest_nodes() {
            if floor < self.nodes {
                knobs.push(Knob::count(
                    "nodes",
                    u64::from(self.nodes),
                    u64::from(floor),
                ));
            }
        }
        // Timers toward what the protocol says (shorter, mostly: a view change or
        // retransmission the failure needs comes sooner), for safety failures only.
        for timer in self
            .protocol
            .timer_knobs(self, TIMER_FLOOR_NS)
            .unwrap_or_default()
        {
            knobs.push(Knob {
                name: format!("timer {}", timer.name),
                current: timer.current_ns,
                target: timer.target_ns,
                nanos: true,
                safety_only: true,
            });
        }
        knobs
    }

    fn with_knob(&self, name: &str, value: u64) -> Self {
        let mut c = self.clone();
        match name {
            "clients" => c.clients = value as u32,
            "requests per client" => c.requests = value,
            "nodes" => c.nodes = value as u32,
            other => {
                if let Some(timer) = other.strip_prefix("timer ") {
                    c.timers.insert(timer.to_string(), value);
                }
            }
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

    fn fault_times(&self) -> Vec<(usize, u64)> {
        self.scenario
            .as_ref()
            .map(|s| s.command_times())
            .unwrap_or_default()
    }

    fn with_fault_at(&self, id: usize, at_ns: u64) -> Self {
        let mut c = self.clone();
        c.scenario = self.scenario.as_ref().map(|s| s.moving(id, at_ns));
        c
    }

    fn postponing(&self, firings: &[(NodeId, u64)]) -> Option<Self> {
        // A synchronous protocol's results depend on when its timers fire: putting them
        // off would be a fault, not a simplification.
        if !self.protocol.timers_postponable() {
            return None;
        }
        let mut c = self.clone();
        c.postponed_timers
            .extend(firings.iter().map(|&(node, id)| (node.0, id)));
        Some(c)
    }

    fn deadline_ns(&self) -> u64 {
        self.duration_ns
    }

    fn with_deadline(&self, ns: u64) -> Self {
        let mut c = self.clone();
        c.duration_ns = ns;
        c
    }

    fn seed(&self) -> Option<u64> {
        Some(self.seed)
    }

    fn with_seed(&self, seed: u64) -> Self {
        RunConfig {
            seed,
            ..self.clone()
        }
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
