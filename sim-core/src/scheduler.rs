//! The scheduler: the one place where the simulator makes its nondeterministic choices.
//!
//! Two kinds of choice are the scheduler's: which of the events that are ready together
//! runs next, and what becomes of each message (its fate and delay, as the network model
//! drew them; the scheduler may override). The default scheduler takes neither: events run
//! in queue order (virtual time, then creation order) and every message meets the fate its
//! network drew, so a run under it is the seeded run, digest for digest.
//!
//! A scheduler that [controls the order](Scheduler::controls_order) is asked at every step
//! which ready event runs. An event is ready when it is due no later than the next instant
//! the engine can run something (or within [`Scheduler::window_ns`] of it). Each event then
//! runs at an instant of its own, `max(due, previous + 1 ns)`: the order the scheduler chose
//! is written in the trace's times, so the run replays, follows and shrinks like any other
//! (a follower re-enacts every recorded time). Faults are never candidates: they strike at
//! their own instants, and no controlled event shares a fault's instant.
//!
//! ```
//! use rehearsal_sim_core::scheduler::{Candidate, Scheduler};
//! use rehearsal_sim_core::{Actor, Context, NodeId, SimConfig, SimpleNetwork, Simulation};
//!
//! /// Node 0 sends one message to every other node at start.
//! struct Hello;
//! impl Actor for Hello {
//!     type Msg = u8;
//!     type Timer = ();
//!     type Output = u32;
//!     fn on_start(&mut self, cx: &mut Context<Self>) {
//!         if cx.me() == NodeId(0) {
//!             for to in 1..4 {
//!                 cx.send(NodeId(to), 0);
//!             }
//!         }
//!     }
//!     fn on_message(&mut self, _: NodeId, _: u8, cx: &mut Context<Self>) {
//!         cx.output(cx.me().0);
//!     }
//!     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
//! }
//!
//! /// Runs the ready event of the highest-numbered node first.
//! struct HighestFirst;
//! impl Scheduler for HighestFirst {
//!     fn controls_order(&self) -> bool {
//!         true
//!     }
//!     fn pick(&mut self, ready: &[Candidate]) -> usize {
//!         (0..ready.len()).max_by_key(|&i| (ready[i].node, std::cmp::Reverse(i))).unwrap_or(0)
//!     }
//! }
//!
//! let mut sim = Simulation::new(SimConfig::new(1), (0..4).map(|_| Hello).collect(), SimpleNetwork::default());
//! sim.set_scheduler(Box::new(HighestFirst)).keep_trace(true);
//! let report = sim.run();
//! // The three deliveries fell due together; they ran highest node first, 1 ns apart.
//! let outputs: Vec<(u64, u32)> = report.trace.iter().filter_map(|e| match &e.kind {
//!     rehearsal_sim_core::EventKind::Output { value } => Some((e.t, value.as_u64()? as u32)),
//!     _ => None,
//! }).collect();
//! assert_eq!(outputs.iter().map(|o| o.1).collect::<Vec<_>>(), [3, 2, 1]);
//! assert!(outputs.windows(2).all(|w| w[0].0 < w[1].0));
//! ```

use crate::actor::{NodeId, TimerId};
use crate::network::{Fate, Packet};
use crate::rng::{derive_rng, SimRng};
use crate::time::{format_ns, Time};
use rand::seq::SliceRandom;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// What a ready event is, as a scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChoiceKind {
    /// A node's start.
    Start,
    /// A message `id` from `from`, due at its receiver.
    Deliver { from: NodeId, id: u64 },
    /// A timer falling due.
    Timer { id: TimerId },
    /// A message `id` from `from` that was lost with its crashed receiver's backlog: running
    /// it records the drop.
    Lost { from: NodeId, id: u64 },
}

/// One event that is ready to run, offered to [`Scheduler::pick`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Candidate {
    /// The node the event runs at (a delivery's receiver).
    pub node: NodeId,
    pub kind: ChoiceKind,
    /// When it fell due (it runs then, or later if others run first).
    pub due: Time,
}

/// Makes the simulator's nondeterministic choices; see the module documentation.
///
/// Every method has the default scheduler's answer, so a strategy overrides only what it
/// decides.
pub trait Scheduler {
    /// Whether this scheduler picks the order of ready events. `false` (the default): the
    /// engine takes its queue order and never calls [`Scheduler::pick`].
    fn controls_order(&self) -> bool {
        false
    }

    /// How far past the next instant an event may be due and still be ready, in
    /// nanoseconds (0: only events due by then). A wider window lets the scheduler run a
    /// later message before earlier ones, as a network that delays the earlier ones would.
    fn window_ns(&self) -> u64 {
        0
    }

    /// Which of `ready` runs next (an index into it). `ready` is never empty and lists the
    /// events by when they fell due, then by when they were created.
    fn pick(&mut self, _ready: &[Candidate]) -> usize {
        0
    }

    /// The fate of message `id`, given the one the network model `drawn`.
    fn route(&mut self, _id: u64, _packet: &Packet, drawn: Fate) -> Fate {
        drawn
    }
}

/// Today's run: queue order, the network's fates. A simulation without a scheduler set
/// behaves exactly as one with this one.
#[derive(Debug, Clone, Copy, Default)]
pub struct DefaultScheduler;

impl Scheduler for DefaultScheduler {}

/// The search strategy of a run, as configurations and trace headers record it: enough to
/// build its scheduler again from the run's seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum Strategy {
    /// The seeded run: ties in queue order.
    #[default]
    Default,
    /// The seeded run with ties (and events within `window_ns` of each other) in random
    /// order.
    Random {
        #[serde(default)]
        window_ns: u64,
    },
    /// Probabilistic concurrency testing over the nodes: see [`Pct`].
    Pct {
        /// The bug depth it targets: `depth - 1` priority change points.
        depth: u32,
        /// The expected number of steps (dispatched events) of a run: change points fall
        /// in `1..=steps`.
        steps: u64,
        #[serde(default)]
        window_ns: u64,
    },
}

/// PCT's default depth.
pub const PCT_DEPTH_DEFAULT: u32 = 3;
/// PCT's default expected step count: about the events of a default PBFT run's first
/// requests, where the change points of a short bug must fall.
pub const PCT_STEPS_DEFAULT: u64 = 1_000;
/// The most change points a PCT run may have.
pub const PCT_DEPTH_MAX: u32 = 64;

impl Strategy {
    /// The strategy's name, as `--strategy` takes it.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Default => "default",
            Strategy::Random { .. } => "random",
            Strategy::Pct { .. } => "pct",
        }
    }

    /// Whether this is the default strategy (traces of default runs leave it out).
    pub fn is_default(&self) -> bool {
        *self == Strategy::Default
    }

    /// Checks the parameters; the error names the one at fault.
    pub fn validate(&self) -> Result<(), String> {
        if let Strategy::Pct { depth, steps, .. } = *self {
            if depth == 0 || depth > PCT_DEPTH_MAX {
                return Err(format!(
                    "--pct-depth must be between 1 and {PCT_DEPTH_MAX}, got {depth}"
                ));
            }
            if steps == 0 {
                return Err("--pct-steps must be at least 1, got 0".into());
            }
            if u64::from(depth - 1) > steps {
                return Err(format!(
                    "--pct-depth {depth} needs {} distinct change points among --pct-steps {steps}: give more steps or a smaller depth",
                    depth - 1
                ));
            }
        }
        Ok(())
    }

    /// The scheduler of a run with this strategy, seed and node count; `None` for the
    /// default (the engine's fast path). Its randomness is a stream of its own (`"scheduler"`),
    /// so choosing a strategy shifts no other stream's draws.
    pub fn scheduler(&self, seed: u64, nodes: usize) -> Option<Box<dyn Scheduler>> {
        let rng = || derive_rng(seed, "scheduler", 0);
        match *self {
            Strategy::Default => None,
            Strategy::Random { window_ns } => Some(Box::new(RandomScheduler {
                rng: rng(),
                window_ns,
            })),
            Strategy::Pct {
                depth,
                steps,
                window_ns,
            } => Some(Box::new(Pct::new(rng(), nodes, depth, steps, window_ns))),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let window = |ns: u64| {
            if ns == 0 {
                String::new()
            } else {
                format!(", window {}", format_ns(ns))
            }
        };
        match *self {
            Strategy::Default => f.write_str("default"),
            Strategy::Random { window_ns } => {
                write!(f, "random (ties shuffled{})", window(window_ns))
            }
            Strategy::Pct {
                depth,
                steps,
                window_ns,
            } => write!(f, "pct (depth {depth}, steps {steps}{})", window(window_ns)),
        }
    }
}

/// Today's run with ready events in random order: each step runs a ready event chosen
/// uniformly.
#[derive(Debug)]
pub struct RandomScheduler {
    rng: SimRng,
    window_ns: u64,
}

impl Scheduler for RandomScheduler {
    fn controls_order(&self) -> bool {
        true
    }
    fn window_ns(&self) -> u64 {
        self.window_ns
    }
    fn pick(&mut self, ready: &[Candidate]) -> usize {
        if ready.len() == 1 {
            // Nothing to choose: draw nothing, so a run's draws are its real choices.
            0
        } else {
            self.rng.random_range(0..ready.len())
        }
    }
}

/// Probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi and Nagarakatte,
/// ASPLOS 2010) over the nodes of a run.
///
/// Each node gets a distinct random priority among `depth..depth + n`; `depth - 1`
/// distinct change points are drawn among the steps `1..=steps`, the i-th drawn (i from 1)
/// carrying the priority `i`, below every initial one. At each step the ready event of the
/// node with the highest priority runs (a delivery belongs to its receiver; a timer or a
/// start to its node); the earliest due first among that node's. At a change point, the
/// node about to run has its priority lowered to the change point's, and the choice is made
/// again: the node is preempted there.
///
/// The guarantee: if a bug shows in some order of `k` steps among `n` nodes and needs `d`
/// ordering constraints to hold (its depth), a run with `depth >= d` and `steps >= k`
/// finds it with probability at least `1 / (n * k^(d - 1))`.
#[derive(Debug)]
pub struct Pct {
    /// The priority of each node, by id; higher runs first.
    priority: Vec<u64>,
    /// The change points still to come: step -> the priority it sets.
    change_points: BTreeMap<u64, u64>,
    step: u64,
    window_ns: u64,
}

impl Pct {
    /// A PCT scheduler over `nodes` nodes; `rng` draws its priorities and change points.
    pub fn new(mut rng: SimRng, nodes: usize, depth: u32, steps: u64, window_ns: u64) -> Pct {
        assert!(depth >= 1, "PCT needs a depth of at least 1");
        let changes = u64::from(depth - 1);
        assert!(changes <= steps, "PCT needs a step per change point");
        let mut priority: Vec<u64> = (0..nodes as u64).map(|i| i + u64::from(depth)).collect();
        priority.shuffle(&mut rng);
        // d - 1 distinct steps in 1..=steps, in the order drawn (a few: rejection is cheap).
        let mut change_points = BTreeMap::new();
        let mut next_priority = 1;
        while (change_points.len() as u64) < changes {
            let step = rng.random_range(1..=steps);
            if let std::collections::btree_map::Entry::Vacant(slot) = change_points.entry(step) {
                slot.insert(next_priority);
                next_priority += 1;
            }
        }
        Pct {
            priority,
            change_points,
            step: 0,
            window_ns,
        }
    }

    /// The index of the ready event of the highest-priority node (its earliest).
    fn highest(&self, ready: &[Candidate]) -> usize {
        let mut best = 0;
        for (i, c) in ready.iter().enumerate().skip(1) {
            if self.priority_of(c.node) > self.priority_of(ready[best].node) {
                best = i;
            }
        }
        best
    }

    fn priority_of(&self, node: NodeId) -> u64 {
        self.priority.get(node.index()).copied().unwrap_or(0)
    }

    /// The priority of each node, by id (for tests and reports).
    pub fn priorities(&self) -> &[u64] {
        &self.priority
    }
}

impl Scheduler for Pct {
    fn controls_order(&self) -> bool {
        true
    }
    fn window_ns(&self) -> u64 {
        self.window_ns
    }
    fn pick(&mut self, ready: &[Candidate]) -> usize {
        self.step += 1;
        let mut chosen = self.highest(ready);
        if let Some(low) = self.change_points.remove(&self.step) {
            if let Some(p) = self.priority.get_mut(ready[chosen].node.index()) {
                *p = low;
            }
            chosen = self.highest(ready);
        }
        chosen
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deliver(node: u32, due: u64) -> Candidate {
        Candidate {
            node: NodeId(node),
            kind: ChoiceKind::Deliver {
                from: NodeId(0),
                id: 0,
            },
            due: Time(due),
        }
    }

    #[test]
    fn pct_priorities_are_distinct_and_above_every_change_point() {
        for seed in 0..50 {
            let pct = Pct::new(derive_rng(seed, "scheduler", 0), 7, 4, 100, 0);
            let mut p = pct.priorities().to_vec();
            p.sort_unstable();
            assert_eq!(p, (4..11).collect::<Vec<u64>>(), "seed {seed}");
            assert_eq!(pct.change_points.len(), 3);
            assert!(pct.change_points.keys().all(|s| (1..=100).contains(s)));
            let mut lows: Vec<u64> = pct.change_points.values().copied().collect();
            lows.sort_unstable();
            assert_eq!(lows, [1, 2, 3]);
        }
    }

    #[test]
    fn pct_runs_the_highest_priority_node_first_and_demotes_it_at_a_change_point() {
        let mut pct = Pct::new(derive_rng(3, "scheduler", 0), 3, 2, 2, 0);
        // Pin the draw: node 2 highest, then 0, then 1; the change point at step 2.
        pct.priority = vec![3, 2, 4];
        pct.change_points = BTreeMap::from([(2, 1)]);
        let ready = [deliver(0, 5), deliver(1, 5), deliver(2, 9), deliver(2, 7)];
        // Step 1: node 2's first-listed event, though it fell due last.
        assert_eq!(pct.pick(&ready), 2);
        // Step 2 is the change point: node 2 drops below all, node 0 runs.
        assert_eq!(pct.pick(&ready), 0);
        assert_eq!(pct.priorities(), &[3, 2, 1]);
        // From then on node 2 runs only when nothing else is ready.
        assert_eq!(pct.pick(&[deliver(2, 1), deliver(1, 2)]), 1);
        assert_eq!(pct.pick(&[deliver(2, 1)]), 0);
    }

    #[test]
    fn strategies_check_their_parameters() {
        let pct = |depth, steps| Strategy::Pct {
            depth,
            steps,
            window_ns: 0,
        };
        assert!(pct(3, 2).validate().is_ok());
        assert!(pct(0, 10).validate().unwrap_err().contains("--pct-depth"));
        assert!(pct(4, 2).validate().unwrap_err().contains("--pct-steps 2"));
        assert!(pct(2, 0).validate().unwrap_err().contains("--pct-steps"));
        assert!(Strategy::Random { window_ns: 5 }.validate().is_ok());
    }

    #[test]
    fn strategies_round_trip_through_json() {
        for s in [
            Strategy::Default,
            Strategy::Random { window_ns: 0 },
            Strategy::Pct {
                depth: 3,
                steps: 500,
                window_ns: 1_000_000,
            },
        ] {
            let json = serde_json::to_string(&s).unwrap();
            assert_eq!(
                serde_json::from_str::<Strategy>(&json).unwrap(),
                s,
                "{json}"
            );
        }
        let unknown = serde_json::from_str::<Strategy>(r#"{"name":"dfs"}"#);
        assert!(unknown.unwrap_err().to_string().contains("dfs"));
    }
}
