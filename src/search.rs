//! Searches that know a protocol's rounds, run by run in the simulator: Twins, round-based
//! Byzantine fuzzing in the style of ByzzFuzz, and coverage-guided search over the same
//! fault schedules.
//!
//! Each strategy writes fault schedules as ordinary scenarios (`@round 3 cut 0,1 -> 2,3`,
//! `@0 twins 0`, `@round 2 mutate 1 -> 0,3`, ending with `@30s settle`), so the run a
//! search finds is an ordinary run: its trace replays, shrinks and exports like any other,
//! and its scenario can be read, edited and run again with `rehearsal sim --scenario`.
//!
//! - **Twins** (Bano et al., 2020): one replica runs as two instances with one identity
//!   and one set of keys. For each of `rounds` rounds the search picks a partition of the
//!   replicas and the twins into groups (preferring partitions with a group that holds a
//!   quorum; half the time the partition of the round before), and, when the protocol
//!   lets the testbed choose, the round's leader. Scenarios
//!   are sampled with the seed and deduplicated; every one runs with the same seed, so a
//!   scenario is its run.
//! - **ByzzFuzz** (Winter et al., 2023): within `rounds` rounds, `network_faults`
//!   partitions of the replicas, each for one round, and `process_faults` mutations of one
//!   faulty replica's messages of one round to a random subset of the others. Each
//!   schedule runs with a seed of its own.
//! - **Coverage-guided**: a corpus of such schedules (the ByzzFuzz space, with the seed,
//!   widened by what swarm mode draws: switches of the faulty replica to one of its
//!   protocol's Byzantine behaviours at a round, crashes of a replica for a round, and
//!   swarm's lossy, duplicating, reordering network of the seed), mutated (insert, delete or move a fault, perturb its
//!   groups, recipients or behaviour, perturb the delivery choices by reseeding, splice
//!   two schedules) and kept when its run reaches
//!   a coverage point no run reached before: an abstract protocol state
//!   ([`rehearsal_sim_core::Actor::abstract_state`]) or a happens-before summary (which
//!   kinds of message a node received before a send). The [`crate::corpus`] chooses
//!   between fresh draws and mutations by which has found new points lately, and favours
//!   parents whose runs reached rare points; half the children run with a seed of their
//!   own.
//!
//! Partitions are one-way cuts between groups of replicas (and twins) in both
//! directions: clients reach every replica throughout, as in the papers' models, where
//! faults are among the replicas.
//!
//! A search runs its schedules on [`Limits::jobs`] threads and makes the same runs
//! whatever their number: it draws a batch of schedules on the calling thread (of a size
//! that does not depend on the threads), runs the batch, and takes the results in order,
//! as one thread would, run by run.

use crate::config::{RunConfig, ScenarioSource};
use crate::corpus::{Corpus, Origin};
use crate::run::{run_with, RunOptions, RunSummary};
use rehearsal_sim_core::rand::seq::{IndexedRandom, SliceRandom};
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{derive_rng, Outcome, SimRng};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// The round-aware strategies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Twins,
    ByzzFuzz,
    Coverage,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Twins => "twins",
            Kind::ByzzFuzz => "byzzfuzz",
            Kind::Coverage => "coverage",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        match name {
            "twins" => Some(Kind::Twins),
            "byzzfuzz" => Some(Kind::ByzzFuzz),
            "coverage" => Some(Kind::Coverage),
            _ => None,
        }
    }
}

/// The bounds of the fault schedules a search draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Bounds {
    /// Faults strike in rounds `0..rounds`.
    pub rounds: u64,
    /// Partitions (ByzzFuzz and coverage-guided), each for one round; coverage-guided
    /// search may crash a replica for a round instead.
    pub network_faults: u32,
    /// Mutated rounds of the faulty replica's messages (ByzzFuzz and coverage-guided).
    pub process_faults: u32,
    /// Groups per partition (Twins).
    pub groups: u32,
    /// Virtual time at which every schedule settles (heals, and cancels the round faults
    /// still waiting): termination is owed from then on.
    pub settle_ns: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds {
            rounds: 8,
            network_faults: 2,
            process_faults: 2,
            groups: 2,
            settle_ns: 30_000_000_000,
        }
    }
}

/// One endpoint of a partition: a replica, or its twin (`N'`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    pub node: u32,
    pub twin: bool,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", self.node, if self.twin { "'" } else { "" })
    }
}

/// One command of a generated schedule.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// From round `round` on, the groups are cut from each other (both ways).
    Cut {
        round: u64,
        groups: Vec<Vec<Endpoint>>,
    },
    /// At round `round`, every cut heals.
    Heal { round: u64 },
    /// Node `node` leads round `round`.
    Leader { round: u64, node: u32 },
    /// Node `node`'s messages of round `round` to `to` are mutated.
    Mutate { round: u64, node: u32, to: Vec<u32> },
    /// At round `round` node `node` crashes, and restarts from its durable state at the
    /// next round (or when the schedule settles) (coverage-guided search only).
    Crash { round: u64, node: u32 },
    /// From round `round` on, node `node` runs one of its protocol's Byzantine behaviours
    /// (coverage-guided search only).
    Byzantine {
        round: u64,
        node: u32,
        behavior: &'static str,
    },
}

impl Step {
    pub fn round(&self) -> u64 {
        match self {
            Step::Cut { round, .. }
            | Step::Heal { round }
            | Step::Leader { round, .. }
            | Step::Mutate { round, .. }
            | Step::Byzantine { round, .. }
            | Step::Crash { round, .. } => *round,
        }
    }

    /// The order of commands within one round: heal, then cuts, then the rest.
    fn rank(&self) -> u8 {
        match self {
            Step::Heal { .. } => 0,
            Step::Cut { .. } => 1,
            Step::Leader { .. } => 2,
            Step::Mutate { .. } => 3,
            Step::Byzantine { .. } => 4,
            Step::Crash { .. } => 5,
        }
    }
}

/// A fault schedule: the seed its run draws from, the replica that runs as twins, and
/// its commands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Schedule {
    pub seed: u64,
    pub twin: Option<u32>,
    pub steps: Vec<Step>,
    /// Whether the run's network is the one swarm mode draws from the seed (loss,
    /// duplication, reordering) rather than the configured one (coverage-guided search).
    pub noisy: bool,
}

impl Schedule {
    /// The schedule as a scenario: twins first, then the commands in round order (heals
    /// before cuts within a round), then the settling.
    pub fn scenario(&self, bounds: &Bounds) -> String {
        let mut steps: Vec<&Step> = self.steps.iter().collect();
        steps.sort_by_key(|s| (s.round(), s.rank()));
        let mut text = String::new();
        if let Some(twin) = self.twin {
            let _ = writeln!(text, "@0 twins {twin}");
        }
        let list = |nodes: &mut dyn Iterator<Item = String>| nodes.collect::<Vec<_>>().join(",");
        for step in steps {
            match step {
                Step::Cut { round, groups } => {
                    for (i, a) in groups.iter().enumerate() {
                        for (j, b) in groups.iter().enumerate() {
                            if i != j {
                                let _ = writeln!(
                                    text,
                                    "@round {round} cut {} -> {}",
                                    list(&mut a.iter().map(ToString::to_string)),
                                    list(&mut b.iter().map(ToString::to_string))
                                );
                            }
                        }
                    }
                }
                Step::Heal { round } => {
                    let _ = writeln!(text, "@round {round} heal");
                }
                Step::Leader { round, node } => {
                    let _ = writeln!(text, "@round {round} leader {node}");
                }
                Step::Mutate { round, node, to } => {
                    let _ = writeln!(
                        text,
                        "@round {round} mutate {node} -> {}",
                        list(&mut to.iter().map(ToString::to_string))
                    );
                }
                Step::Byzantine {
                    round,
                    node,
                    behavior,
                } => {
                    let _ = writeln!(text, "@round {round} byzantine {node} {behavior}");
                }
                Step::Crash { round, node } => {
                    let _ = writeln!(text, "@round {round} crash {node}");
                    let _ = writeln!(text, "@round {} restart {node}", round + 1);
                }
            }
        }
        let _ = writeln!(
            text,
            "@{}.{:09} settle",
            bounds.settle_ns / 1_000_000_000,
            bounds.settle_ns % 1_000_000_000
        );
        text
    }

    /// Partitions and crashes: what the environment does.
    fn network_faults(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Cut { .. } | Step::Crash { .. }))
            .count()
    }

    /// Mutated rounds and Byzantine switches: what the faulty replica does.
    fn process_faults(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Mutate { .. } | Step::Byzantine { .. }))
            .count()
    }

    fn byzantine(&self) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s, Step::Byzantine { .. }))
    }
}

/// The replicas a run's faults may concern, and how many may be faulty.
#[derive(Debug, Clone)]
pub struct Space {
    pub replicas: Vec<u32>,
    /// At most this many replicas are faulty (f).
    pub faulty_max: u32,
    /// Whether the protocol lets the testbed choose each round's leader.
    pub leaders: bool,
    /// Whether the protocol's nodes keep durable state, so that coverage-guided search may
    /// crash and restart them.
    pub crashes: bool,
    /// The protocol's own Byzantine behaviours, which coverage-guided search may switch
    /// the faulty replica to (not `twin` and `fuzzed`: the testbed switches those).
    pub behaviors: Vec<&'static str>,
    pub bounds: Bounds,
}

impl Space {
    /// The space of `config`'s run: its protocol's replicas (the nodes it lets turn
    /// Byzantine); an error when the protocol has no room for a faulty replica.
    pub fn of(config: &RunConfig, bounds: Bounds) -> Result<Space, String> {
        let room = config
            .protocol
            .byzantine_room(&config.sizes())
            .ok_or_else(|| {
                format!(
                    "protocol `{}` has no Byzantine replicas to fuzz or twin",
                    config.protocol.name()
                )
            })?;
        if room.max == 0 {
            return Err(format!(
                "{} replicas of `{}` tolerate no faulty replica: a search with faulty replicas needs at least 4",
                room.among,
                config.protocol.name(),
            ));
        }
        if bounds.rounds == 0 {
            return Err("--fault-rounds must be at least 1".into());
        }
        if bounds.groups < 2 {
            return Err("--groups must be at least 2".into());
        }
        Ok(Space {
            // `among` ends the range of nodes that may turn Byzantine.
            replicas: (room.first..room.among).collect(),
            faulty_max: room.max,
            leaders: true,
            crashes: config.protocol.durable(),
            behaviors: config
                .protocol
                .byzantine_behaviors()
                .iter()
                .copied()
                .filter(|&b| !rehearsal_sim_core::testbed_behavior(b))
                .collect(),
            bounds,
        })
    }

    /// Replicas in a quorum (2f+1 of 3f+1).
    fn quorum(&self) -> usize {
        self.replicas.len() - self.faulty_max as usize
    }

    fn round(&self, rng: &mut SimRng) -> u64 {
        rng.random_range(0..self.bounds.rounds)
    }

    /// `endpoints` split at random into `groups` nonempty groups, each sorted.
    fn split(&self, endpoints: &[Endpoint], groups: usize, rng: &mut SimRng) -> Vec<Vec<Endpoint>> {
        let groups = groups.clamp(2, endpoints.len().max(2));
        let mut shuffled = endpoints.to_vec();
        shuffled.shuffle(rng);
        let mut out: Vec<Vec<Endpoint>> = vec![Vec::new(); groups];
        // One endpoint in each group, the rest anywhere.
        for (i, e) in shuffled.into_iter().enumerate() {
            let g = if i < groups {
                i
            } else {
                rng.random_range(0..groups)
            };
            out[g].push(e);
        }
        for g in &mut out {
            g.sort();
        }
        out.sort();
        out
    }

    /// A Twins partition of the replicas and the twin: with probability 3/4 one with a
    /// group that holds a quorum of endpoints (when the draw finds one in a few tries).
    fn twins_partition(&self, endpoints: &[Endpoint], rng: &mut SimRng) -> Vec<Vec<Endpoint>> {
        let want_quorum = rng.random_bool(0.75);
        let mut groups = self.split(endpoints, self.bounds.groups as usize, rng);
        for _ in 0..16 {
            if !want_quorum || groups.iter().any(|g| g.len() >= self.quorum()) {
                break;
            }
            groups = self.split(endpoints, self.bounds.groups as usize, rng);
        }
        groups
    }

    /// A Twins scenario: per round a partition and (if the protocol lets us) a leader.
    pub fn twins(&self, seed: u64, rng: &mut SimRng) -> Schedule {
        let twin = *self.replicas.choose(rng).expect("a space has replicas");
        let mut endpoints: Vec<Endpoint> = self
            .replicas
            .iter()
            .map(|&node| Endpoint { node, twin: false })
            .collect();
        endpoints.push(Endpoint {
            node: twin,
            twin: true,
        });
        let mut steps = Vec::new();
        for round in 0..self.bounds.rounds {
            // Half the time a round keeps the partition of the round before: a fork needs
            // a side to hold for the rounds of a chain of certificates.
            let keep = round > 0 && rng.random_bool(0.5);
            if !keep {
                if round > 0 {
                    steps.push(Step::Heal { round });
                }
                steps.push(Step::Cut {
                    round,
                    groups: self.twins_partition(&endpoints, rng),
                });
            }
            if self.leaders {
                steps.push(Step::Leader {
                    round,
                    node: *self.replicas.choose(rng).expect("a space has replicas"),
                });
            }
        }
        steps.push(Step::Heal {
            round: self.bounds.rounds,
        });
        Schedule {
            seed,
            twin: Some(twin),
            steps,
            noisy: false,
        }
    }

    /// One ByzzFuzz network fault: a partition of the replicas for one round.
    fn network_fault(&self, rng: &mut SimRng) -> [Step; 2] {
        let round = self.round(rng);
        let endpoints: Vec<Endpoint> = self
            .replicas
            .iter()
            .map(|&node| Endpoint { node, twin: false })
            .collect();
        [
            Step::Cut {
                round,
                groups: self.split(&endpoints, 2, rng),
            },
            Step::Heal { round: round + 1 },
        ]
    }

    /// One ByzzFuzz process fault: `faulty`'s messages of one round to a nonempty random
    /// subset of the other replicas are mutated.
    fn process_fault(&self, faulty: u32, rng: &mut SimRng) -> Step {
        let others: Vec<u32> = self
            .replicas
            .iter()
            .copied()
            .filter(|&r| r != faulty)
            .collect();
        let mut to: Vec<u32> = others
            .iter()
            .copied()
            .filter(|_| rng.random_bool(0.5))
            .collect();
        if to.is_empty() {
            to.push(*others.choose(rng).expect("a space has two replicas"));
        }
        Step::Mutate {
            round: self.round(rng),
            node: faulty,
            to,
        }
    }

    /// The faulty replica of a schedule's process faults (one, as f >= 1 allows).
    fn faulty(schedule: &Schedule) -> Option<u32> {
        schedule.steps.iter().find_map(|s| match s {
            Step::Mutate { node, .. } | Step::Byzantine { node, .. } => Some(*node),
            _ => None,
        })
    }

    /// A switch of `faulty` to one of the protocol's Byzantine behaviours at a random
    /// round, if it offers any.
    fn byzantine_fault(&self, faulty: u32, rng: &mut SimRng) -> Option<Step> {
        let behavior = *self.behaviors.choose(rng)?;
        Some(Step::Byzantine {
            round: self.round(rng),
            node: faulty,
            behavior,
        })
    }

    /// A ByzzFuzz schedule: `network_faults` partitions and `process_faults` mutations of
    /// one faulty replica, at random rounds.
    pub fn byzzfuzz(&self, seed: u64, rng: &mut SimRng) -> Schedule {
        let mut steps = Vec::new();
        for _ in 0..self.bounds.network_faults {
            steps.extend(self.network_fault(rng));
        }
        let faulty = *self.replicas.choose(rng).expect("a space has replicas");
        for _ in 0..self.bounds.process_faults {
            steps.push(self.process_fault(faulty, rng));
        }
        Schedule {
            seed,
            twin: None,
            steps,
            noisy: false,
        }
    }

    /// A schedule to start coverage-guided search from: a ByzzFuzz schedule, in which half
    /// the time the faulty replica turns Byzantine in its protocol's own way at a random
    /// round instead of one of its mutated rounds, a third of the time a replica crashes
    /// for a round instead of one partition, and half the time the network is the one
    /// swarm mode draws from the seed.
    pub fn coverage_seed(&self, seed: u64, rng: &mut SimRng) -> Schedule {
        let mut schedule = self.byzzfuzz(seed, rng);
        schedule.noisy = rng.random_bool(0.5);
        // A third of the time a replica crashes for a round instead of one partition.
        if self.crashes && rng.random_ratio(1, 3) {
            if let Some(i) = schedule
                .steps
                .iter()
                .position(|s| matches!(s, Step::Cut { .. }))
            {
                let round = schedule.steps[i].round();
                schedule.steps.remove(i);
                if let Some(h) = schedule
                    .steps
                    .iter()
                    .position(|s| *s == Step::Heal { round: round + 1 })
                {
                    schedule.steps.remove(h);
                }
                schedule.steps.push(Step::Crash {
                    round,
                    node: *self.replicas.choose(rng).expect("replicas"),
                });
            }
        }
        if rng.random_bool(0.5) {
            if let Some(faulty) = Self::faulty(&schedule) {
                if let Some(switch) = self.byzantine_fault(faulty, rng) {
                    if let Some(i) = schedule
                        .steps
                        .iter()
                        .rposition(|s| matches!(s, Step::Mutate { .. }))
                    {
                        schedule.steps[i] = switch;
                    }
                }
            }
        }
        schedule.steps.sort_by_key(|s| (s.round(), s.rank()));
        schedule
    }

    /// A mutation of `parent` (1 to 3 operators), staying within the bounds; `other` is a
    /// second corpus entry to splice with.
    pub fn mutate(&self, parent: &Schedule, other: &Schedule, rng: &mut SimRng) -> Schedule {
        let mut child = parent.clone();
        for _ in 0..rng.random_range(1..=3) {
            match rng.random_range(0..7) {
                // Insert a fault.
                0 | 1 => {
                    if rng.random_bool(0.5)
                        && child.network_faults() < self.bounds.network_faults as usize
                    {
                        // One in three: a replica crashes for a round (where the
                        // protocol's nodes keep durable state) rather than a partition.
                        if self.crashes && rng.random_ratio(1, 3) {
                            child.steps.push(Step::Crash {
                                round: self.round(rng),
                                node: *self.replicas.choose(rng).expect("replicas"),
                            });
                        } else {
                            child.steps.extend(self.network_fault(rng));
                        }
                    } else if child.process_faults() < self.bounds.process_faults as usize {
                        let faulty = Self::faulty(&child)
                            .unwrap_or_else(|| *self.replicas.choose(rng).expect("replicas"));
                        // One in three: the faulty replica turns Byzantine in its
                        // protocol's own way (once per schedule) rather than having one
                        // round of its messages mutated.
                        let switch = (!child.byzantine() && rng.random_ratio(1, 3))
                            .then(|| self.byzantine_fault(faulty, rng))
                            .flatten();
                        child
                            .steps
                            .push(switch.unwrap_or_else(|| self.process_fault(faulty, rng)));
                    }
                }
                // Delete a fault (a cut with the heal that ends it).
                2 => {
                    let faults: Vec<usize> = (0..child.steps.len())
                        .filter(|&i| !matches!(child.steps[i], Step::Heal { .. }))
                        .collect();
                    if let Some(&i) = faults.choose(rng) {
                        let removed = child.steps.remove(i);
                        if let Step::Cut { round, .. } = removed {
                            if let Some(h) = child
                                .steps
                                .iter()
                                .position(|s| *s == Step::Heal { round: round + 1 })
                            {
                                child.steps.remove(h);
                            }
                        }
                    }
                }
                // Move a fault to another round.
                3 => {
                    let faults: Vec<usize> = (0..child.steps.len())
                        .filter(|&i| !matches!(child.steps[i], Step::Heal { .. }))
                        .collect();
                    if let Some(&i) = faults.choose(rng) {
                        let old = child.steps[i].round();
                        let new = if rng.random_bool(0.5) {
                            if rng.random_bool(0.5) {
                                old.saturating_sub(1)
                            } else {
                                (old + 1).min(self.bounds.rounds - 1)
                            }
                        } else {
                            self.round(rng)
                        };
                        match &mut child.steps[i] {
                            Step::Cut { round, .. } => {
                                *round = new;
                                if let Some(h) = child
                                    .steps
                                    .iter()
                                    .position(|s| *s == Step::Heal { round: old + 1 })
                                {
                                    child.steps[h] = Step::Heal { round: new + 1 };
                                }
                            }
                            Step::Mutate { round, .. }
                            | Step::Leader { round, .. }
                            | Step::Byzantine { round, .. }
                            | Step::Crash { round, .. } => *round = new,
                            Step::Heal { .. } => {}
                        }
                    }
                }
                // Perturb a fault: other groups, other recipients.
                4 => {
                    let faults: Vec<usize> = (0..child.steps.len())
                        .filter(|&i| !matches!(child.steps[i], Step::Heal { .. }))
                        .collect();
                    if let Some(&i) = faults.choose(rng) {
                        let round = child.steps[i].round();
                        child.steps[i] = match &child.steps[i] {
                            Step::Cut { .. } => {
                                let mut fresh = self.network_fault(rng);
                                if let Step::Cut { groups, .. } =
                                    std::mem::replace(&mut fresh[0], Step::Heal { round: 0 })
                                {
                                    Step::Cut { round, groups }
                                } else {
                                    unreachable!("a network fault starts with a cut")
                                }
                            }
                            Step::Mutate { node, .. } => {
                                let Step::Mutate { to, .. } = self.process_fault(*node, rng) else {
                                    unreachable!("a process fault is a mutation")
                                };
                                Step::Mutate {
                                    round,
                                    node: *node,
                                    to,
                                }
                            }
                            Step::Byzantine { node, behavior, .. } => {
                                match self.byzantine_fault(*node, rng) {
                                    Some(Step::Byzantine {
                                        behavior: other, ..
                                    }) => Step::Byzantine {
                                        round,
                                        node: *node,
                                        behavior: other,
                                    },
                                    _ => Step::Byzantine {
                                        round,
                                        node: *node,
                                        behavior,
                                    },
                                }
                            }
                            other => other.clone(),
                        };
                    }
                }
                // Perturb the delivery choices: the run's network draws another way, and
                // now and then the network itself changes (swarm's draw or the configured).
                5 => {
                    child.seed = rng.random();
                    if rng.random_ratio(1, 3) {
                        child.noisy = !child.noisy;
                    }
                }
                // Splice: this schedule's faults before a round, the other's from it on.
                _ => {
                    let cut = self.round(rng);
                    let faulty = Self::faulty(&child);
                    let mut steps: Vec<Step> = child
                        .steps
                        .iter()
                        .filter(|s| {
                            s.round() < cut || matches!(s, Step::Heal { round } if *round == cut)
                        })
                        .cloned()
                        .collect();
                    for s in &other.steps {
                        if s.round() >= cut && !steps.contains(s) {
                            let mut s = s.clone();
                            // One faulty replica: the spliced mutations are its, and it
                            // switches to a Byzantine behaviour at most once.
                            match (&mut s, faulty) {
                                (Step::Mutate { node, to, .. }, Some(f)) => {
                                    *node = f;
                                    to.retain(|&r| r != f);
                                    if to.is_empty() {
                                        continue;
                                    }
                                }
                                (Step::Byzantine { node, .. }, f) => {
                                    if steps.iter().any(|s| matches!(s, Step::Byzantine { .. })) {
                                        continue;
                                    }
                                    if let Some(f) = f {
                                        *node = f;
                                    }
                                }
                                _ => {}
                            }
                            steps.push(s);
                        }
                    }
                    child.steps = steps;
                    while child.network_faults() > self.bounds.network_faults as usize {
                        let i = child
                            .steps
                            .iter()
                            .rposition(|s| matches!(s, Step::Cut { .. } | Step::Crash { .. }))
                            .expect("counted");
                        child.steps.remove(i);
                    }
                    while child.process_faults() > self.bounds.process_faults as usize {
                        let i = child
                            .steps
                            .iter()
                            .rposition(|s| {
                                matches!(s, Step::Mutate { .. } | Step::Byzantine { .. })
                            })
                            .expect("counted");
                        child.steps.remove(i);
                    }
                }
            }
        }
        child.steps.sort_by_key(|s| (s.round(), s.rank()));
        child.steps.dedup();
        child
    }
}

/// What a search does between runs: how often it reports.
pub trait Progress {
    /// Called after every run.
    fn ran(&mut self, report: &Report);
}

impl<F: FnMut(&Report)> Progress for F {
    fn ran(&mut self, report: &Report) {
        self(report)
    }
}

/// Coverage reached after so many runs, at so much wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Sample {
    pub wall_ns: u64,
    pub runs: u64,
    pub states: u64,
    pub happens_before: u64,
}

/// Where a search stands, and what it found.
#[derive(Debug, Default)]
pub struct Report {
    /// Runs made (distinct scenarios, for Twins).
    pub runs: u64,
    /// Scenarios drawn again and skipped (Twins).
    pub duplicates: u64,
    /// Distinct abstract states and happens-before summaries over every run.
    pub states: BTreeSet<u64>,
    pub happens_before: BTreeSet<u64>,
    /// Schedules the coverage-guided search keeps.
    pub corpus: usize,
    /// Coverage over time: one sample when a run adds a point, and the last.
    pub samples: Vec<Sample>,
    /// The first failing run, with its schedule.
    pub failing: Option<(RunConfig, RunSummary)>,
    pub wall: Duration,
    /// The run that took longest, and how long: a search that slows down says why.
    pub slowest: Option<(Duration, RunConfig)>,
}

impl Report {
    /// Adds what `run` covered; says whether it reached a point no run reached before.
    pub fn add_coverage(&mut self, run: &RunSummary) -> bool {
        let mut new = false;
        if let Some(coverage) = &run.result.coverage {
            for &s in &coverage.states {
                new |= self.states.insert(s);
            }
            for &h in &coverage.happens_before {
                new |= self.happens_before.insert(h);
            }
        }
        new
    }
}

/// The configuration of `base` that runs `schedule`.
pub fn config_for(base: &RunConfig, schedule: &Schedule, kind: Kind, bounds: &Bounds) -> RunConfig {
    let mut config = RunConfig {
        seed: schedule.seed,
        scenario: Some(ScenarioSource {
            origin: format!("<{} schedule>", kind.name()),
            text: schedule.scenario(bounds),
        }),
        ..base.clone()
    };
    if schedule.noisy {
        config.network = Some(crate::swarm::network_of(&config));
        config.net_origin = Some(format!("<swarm network of seed {}>", schedule.seed));
    }
    config
}

/// How long a search runs, and how.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall time to search for.
    pub budget: Duration,
    /// Most runs.
    pub runs_max: u64,
    /// Run out the budget after a failing run (to measure coverage).
    pub keep_going: bool,
    /// Coverage-guided search keeps and mutates the schedules that reach something new;
    /// without feedback it draws every schedule afresh from the same space: random
    /// search, to measure what the feedback adds.
    pub feedback: bool,
    /// Threads the runs go on. A search bounded by runs makes the same runs and reports
    /// the same coverage and the same first failure whatever the number: schedules are
    /// drawn in batches of a size of their own ([`BATCH_FEEDBACK`], [`BATCH_BLIND`]), and
    /// each batch's results are taken in order, as one thread takes them.
    pub jobs: usize,
}

impl Limits {
    /// `budget` of wall time, stopping at the first failing run, with feedback, on one
    /// thread.
    pub fn budget(budget: Duration) -> Limits {
        Limits {
            budget,
            runs_max: u64::MAX,
            keep_going: false,
            feedback: true,
            jobs: 1,
        }
    }
}

/// Schedules coverage-guided search draws from one state of its corpus: it draws a batch,
/// runs it, and only then keeps what reached something new. A smaller batch follows the
/// feedback more closely; a larger one leaves threads idle less often (at a batch's end,
/// while its last runs finish). The size does not depend on the number of threads, so
/// neither do the runs.
pub const BATCH_FEEDBACK: usize = 16;

/// Most times coverage-guided search mutates a parent again when the child is a schedule
/// it drew before.
const MUTATE_AGAIN_MAX: usize = 4;

/// Schedules drawn at once by the searches whose draws do not depend on the runs (Twins,
/// ByzzFuzz, coverage-guided search without feedback): they make the same runs whatever
/// the batch, which bounds only how far they draw ahead and how often threads wait for a
/// batch's last run.
pub const BATCH_BLIND: usize = 64;

/// Where a search's drawing stands: its random stream, the next schedule's seed offset,
/// and the duplicate scenarios drawn so far (Twins).
#[derive(Clone)]
struct Drawing {
    rng: SimRng,
    trial: u64,
    duplicates: u64,
}

/// A schedule drawn, its run's configuration, and the drawing as it stood just after it
/// (to draw again from there).
struct Drawn {
    schedule: Schedule,
    origin: Origin,
    config: RunConfig,
    key: u64,
    after: Drawing,
}

/// Searches `base`'s runs with strategy `kind` within `limits`, stopping at the first
/// failing run unless `limits.keep_going`. Draws from `base.seed`; runs on `limits.jobs`
/// threads, with the same result whatever their number.
pub fn search(
    base: &RunConfig,
    kind: Kind,
    bounds: Bounds,
    limits: Limits,
    progress: &mut dyn Progress,
) -> Result<Report, String> {
    let Limits {
        budget,
        runs_max,
        keep_going,
        feedback,
        jobs,
    } = limits;
    let mut space = Space::of(base, bounds)?;
    // The behaviours the testbed switches nodes to: twins run `twin`, mutated senders
    // `fuzzed`. A protocol without them cannot be searched this way.
    let needed = match kind {
        Kind::Twins => rehearsal_sim_core::TWIN,
        Kind::ByzzFuzz | Kind::Coverage => rehearsal_sim_core::FUZZED,
    };
    if !base.protocol.byzantine_behaviors().contains(&needed) {
        return Err(format!(
            "protocol `{}` offers no `{needed}` behaviour, which --strategy {} needs ({})",
            base.protocol.name(),
            kind.name(),
            if kind == Kind::Twins {
                "two correct instances of one node, counted as faulty"
            } else {
                "a node whose messages are mutated, counted as faulty"
            }
        ));
    }
    if base.scenario.is_some() {
        return Err(format!(
            "--strategy {} writes its own scenarios: --scenario does not apply",
            kind.name()
        ));
    }
    let started = Instant::now();
    let mut drawing = Drawing {
        rng: derive_rng(base.seed, kind.name(), 0),
        trial: 0,
        duplicates: 0,
    };
    let mut report = Report::default();
    let mut seen: BTreeSet<u64> = BTreeSet::new();
    let mut corpus: Corpus<Schedule> = Corpus::default();
    // Every schedule drawn so far (coverage-guided search).
    let mut made: BTreeSet<u64> = BTreeSet::new();
    let batch_max = if kind == Kind::Coverage && feedback {
        BATCH_FEEDBACK
    } else {
        BATCH_BLIND
    };
    // A Twins space this small is spent: stop rather than spin.
    let mut spent = false;
    let mut stopped = false;
    while !stopped && !spent && report.runs < runs_max && started.elapsed() < budget {
        let want = usize::try_from(runs_max - report.runs).map_or(batch_max, |w| w.min(batch_max));
        let mut batch: Vec<Drawn> = Vec::with_capacity(want);
        corpus.plan();
        while batch.len() < want {
            let seed = base.seed.wrapping_add(drawing.trial);
            drawing.trial += 1;
            let rng = &mut drawing.rng;
            let mut origin = Origin::Fresh;
            let schedule = match kind {
                Kind::Twins => space.twins(base.seed, rng),
                Kind::ByzzFuzz => space.byzzfuzz(seed, rng),
                Kind::Coverage if !feedback => space.coverage_seed(seed, rng),
                Kind::Coverage => {
                    origin = corpus.origin(rng);
                    match origin {
                        Origin::Fresh => space.coverage_seed(seed, rng),
                        Origin::Mutated { parent } => {
                            let other = rng.random_range(0..corpus.len());
                            let mut child =
                                space.mutate(corpus.schedule(parent), corpus.schedule(other), rng);
                            // A child that is a run already made (or drawn) teaches
                            // nothing: mutate again, a few times at most.
                            for _ in 0..MUTATE_AGAIN_MAX {
                                if !made.contains(&fingerprint(&child)) {
                                    break;
                                }
                                child = space.mutate(
                                    corpus.schedule(parent),
                                    corpus.schedule(other),
                                    rng,
                                );
                            }
                            // Half the children run with a seed of their own, so that the
                            // corpus steers the faults while the delivery choices vary as a
                            // fresh draw's do; the other half keep the parent's run up to
                            // where their faults differ.
                            if rng.random_bool(0.5) {
                                child.seed = rng.random();
                            }
                            child
                        }
                    }
                }
            };
            let key = fingerprint(&schedule);
            if kind == Kind::Coverage {
                made.insert(key);
            }
            if kind == Kind::Twins && !seen.insert(key) {
                drawing.duplicates += 1;
                // Runs made and runs drawn: the same count whatever the threads.
                let distinct = report.runs + batch.len() as u64;
                if drawing.duplicates > 1000 + 10 * distinct {
                    spent = true;
                    break;
                }
                continue;
            }
            let config = config_for(base, &schedule, kind, &bounds);
            batch.push(Drawn {
                schedule,
                origin,
                config,
                key,
                after: drawing.clone(),
            });
        }
        let mut taken = 0;
        let mut redraw = None;
        let mut trouble = None;
        crate::parallel::ordered(
            batch.len() as u64,
            jobs,
            |i| {
                let run_started = Instant::now();
                let options = RunOptions {
                    coverage: true,
                    ..RunOptions::default()
                };
                let ran = run_with(&batch[i as usize].config, options);
                (ran, run_started.elapsed())
            },
            |i, (ran, took)| {
                let drawn = &batch[i as usize];
                taken += 1;
                let summary = match ran {
                    Ok(summary) => summary,
                    // The protocol does not let the testbed choose leaders: draw again
                    // without them from just after this schedule, as if the rest of the
                    // batch had not been drawn.
                    Err(e) if space.leaders && e.contains("does not let the testbed choose") => {
                        space.leaders = false;
                        redraw = Some(i as usize);
                        return false;
                    }
                    Err(e) => {
                        trouble = Some(e);
                        return false;
                    }
                };
                report.runs += 1;
                report.duplicates = drawn.after.duplicates;
                if report.slowest.as_ref().is_none_or(|(t, _)| took > *t) {
                    report.slowest = Some((took, drawn.config.clone()));
                }
                let states_before = report.states.len();
                let happens_before_before = report.happens_before.len();
                let new = report.add_coverage(&summary);
                let new_states = report.states.len() - states_before;
                let new_happens_before = report.happens_before.len() - happens_before_before;
                let new_state = new_states > 0;
                let elapsed = started.elapsed();
                if new || report.runs == 1 {
                    report.samples.push(sample(&report, elapsed));
                }
                if kind == Kind::Coverage && feedback {
                    // A schedule that reached a new abstract state is kept; one that
                    // reached only a new happens-before summary, a quarter of the time:
                    // those come by the thousand and would crowd the states out of the
                    // corpus.
                    let keep = new && (new_state || drawing.rng.random_ratio(1, 4));
                    corpus.ran(
                        drawn.origin,
                        &drawn.schedule,
                        summary.result.coverage.as_ref(),
                        new_states,
                        new_happens_before,
                        keep,
                    );
                }
                report.corpus = corpus.len();
                let failed = summary.result.outcome != Outcome::Ok;
                if failed && report.failing.is_none() {
                    report.failing = Some((drawn.config.clone(), summary));
                }
                progress.ran(&report);
                if failed && !keep_going {
                    stopped = true;
                    return false;
                }
                started.elapsed() < budget
            },
        );
        if let Some(e) = trouble {
            return Err(e);
        }
        if let Some(i) = redraw {
            // Only Twins names leaders, and its results draw nothing from the stream.
            for later in &batch[i + 1..] {
                seen.remove(&later.key);
            }
            drawing = batch.swap_remove(i).after;
            spent = false;
        } else if taken == batch.len() {
            // The duplicates drawn after the batch's last schedule, before the space was
            // spent, count too.
            report.duplicates = drawing.duplicates;
        }
    }
    report.wall = started.elapsed();
    report.samples.push(sample(&report, report.wall));
    Ok(report)
}

/// The coverage `report` holds, `elapsed` into its search.
pub fn sample(report: &Report, elapsed: Duration) -> Sample {
    Sample {
        wall_ns: u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX),
        runs: report.runs,
        states: report.states.len() as u64,
        happens_before: report.happens_before.len() as u64,
    }
}

/// A schedule's identity for deduplication.
fn fingerprint(schedule: &Schedule) -> u64 {
    use std::hash::{Hash, Hasher};
    // A fixed hasher: the same schedules are duplicates in every process.
    let mut hasher = std::hash::DefaultHasher::new();
    schedule.hash(&mut hasher);
    hasher.finish()
}

/// An SVG plot of coverage over wall time: one line per search, distinct abstract states
/// (solid) and happens-before summaries (dashed), each on its own scale.
pub fn coverage_svg(title: &str, curves: &[(&str, &[Sample])]) -> String {
    const W: f64 = 720.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 60.0;
    const TOP: f64 = 40.0;
    // A legend line per curve below the axis label: the plot grows to hold them.
    let legend = 14.0 * curves.len() as f64;
    let bottom = 44.0 + legend;
    let h = 284.0 + legend;
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let t_max = curves
        .iter()
        .flat_map(|(_, s)| s.iter().map(|s| s.wall_ns))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let s_max = curves
        .iter()
        .flat_map(|(_, s)| s.iter().map(|s| s.states))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let h_max = curves
        .iter()
        .flat_map(|(_, s)| s.iter().map(|s| s.happens_before))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let x = |ns: u64| LEFT + (ns as f64 / t_max) * (W - LEFT - RIGHT);
    let y = |v: u64, max: f64| TOP + (1.0 - v as f64 / max) * (h - TOP - bottom);
    let mut svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" viewBox="0 0 {W} {h}" font-family="Helvetica, Arial, sans-serif" font-size="11">
<rect width="{W}" height="{h}" fill="white"/>
<text x="{LEFT}" y="20" font-size="13">{}</text>
<line x1="{LEFT}" y1="{}" x2="{}" y2="{}" stroke="black"/>
<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{}" stroke="black"/>
<line x1="{}" y1="{TOP}" x2="{}" y2="{}" stroke="black"/>
<text x="{}" y="{}" text-anchor="middle">wall time (s), 0 to {:.0}</text>
<text x="12" y="{}" transform="rotate(-90 12 {})" text-anchor="middle">abstract states (solid), 0 to {s_max:.0}</text>
<text x="{}" y="{}" transform="rotate(90 {} {})" text-anchor="middle">happens-before summaries (dashed), 0 to {h_max:.0}</text>
"##,
        escape(title),
        h - bottom,
        W - RIGHT,
        h - bottom,
        h - bottom,
        W - RIGHT,
        W - RIGHT,
        h - bottom,
        (LEFT + W - RIGHT) / 2.0,
        h - bottom + 20.0,
        t_max / 1e9,
        (TOP + h - bottom) / 2.0,
        (TOP + h - bottom) / 2.0,
        W - 15.0,
        (TOP + h - bottom) / 2.0,
        W - 15.0,
        (TOP + h - bottom) / 2.0,
    );
    for (i, (name, samples)) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        for (dash, pick, max) in [
            ("", (|s: &Sample| s.states) as fn(&Sample) -> u64, s_max),
            (
                " stroke-dasharray=\"5 3\"",
                |s: &Sample| s.happens_before,
                h_max,
            ),
        ] {
            // A step line: coverage holds until the next sample.
            let mut points = String::new();
            let mut last: Option<u64> = None;
            for s in samples.iter() {
                if let Some(v) = last {
                    let _ = write!(points, "{:.1},{:.1} ", x(s.wall_ns), y(v, max));
                }
                let _ = write!(points, "{:.1},{:.1} ", x(s.wall_ns), y(pick(s), max));
                last = Some(pick(s));
            }
            let _ = writeln!(
                svg,
                r#"<polyline fill="none" stroke="{color}" stroke-width="1.5"{dash} points="{}"/>"#,
                points.trim_end()
            );
        }
        let last = samples.last().copied().unwrap_or(Sample {
            wall_ns: 0,
            runs: 0,
            states: 0,
            happens_before: 0,
        });
        let _ = writeln!(
            svg,
            r#"<text x="{LEFT}" y="{:.0}" fill="{color}">{}: {} states, {} happens-before summaries, {} runs</text>"#,
            h - bottom + 36.0 + 14.0 * i as f64,
            escape(name),
            last.states,
            last.happens_before,
            last.runs
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Protocol;

    /// PBFT with one client of two requests, in short runs: the schedules settle at 5 s
    /// and the runs end at 20 s (a stuck twin keeps timing out until the run ends).
    fn short_pbft(seed: u64) -> (RunConfig, Bounds) {
        let config = RunConfig {
            clients: 1,
            requests: 2,
            seed,
            duration_ns: 20_000_000_000,
            ..RunConfig::new(Protocol::named("pbft").expect("pbft is registered"))
        };
        let bounds = Bounds {
            settle_ns: 5_000_000_000,
            ..Bounds::default()
        };
        (config, bounds)
    }

    /// What a search did and found, without what the clock says.
    fn outcome(report: &Report) -> impl PartialEq + std::fmt::Debug {
        let samples: Vec<(u64, u64, u64)> = report
            .samples
            .iter()
            .map(|s| (s.runs, s.states, s.happens_before))
            .collect();
        let failing = report.failing.as_ref().map(|(config, summary)| {
            let scenario = config.scenario.as_ref().map(|s| s.text.clone());
            (config.seed, scenario, summary.result.digest.clone())
        });
        (
            report.runs,
            report.duplicates,
            report.states.clone(),
            report.happens_before.clone(),
            report.corpus,
            samples,
            failing,
        )
    }

    /// A Twins search of `base` for at most `runs_max` runs on `jobs` threads.
    fn twins(base: &RunConfig, bounds: Bounds, runs_max: u64, jobs: usize) -> Report {
        let limits = Limits {
            runs_max,
            keep_going: true,
            jobs,
            ..Limits::budget(Duration::from_secs(3600))
        };
        search(base, Kind::Twins, bounds, limits, &mut |_: &Report| {}).expect("a search")
    }

    #[test]
    fn twins_draw_again_without_leaders_where_the_protocol_elects_its_own() {
        // PBFT does not let the testbed choose its primaries: the first schedule, which
        // names leaders, is refused, and the rest of its batch (running on other threads
        // meanwhile) is drawn again without them.
        let (base, bounds) = short_pbft(3);
        let one = twins(&base, bounds, 20, 1);
        let three = twins(&base, bounds, 20, 3);
        assert_eq!(one.runs, 20);
        assert_eq!(outcome(&one), outcome(&three));
        for report in [&one, &three] {
            let (_, config) = report.slowest.as_ref().expect("a slowest run");
            let scenario = &config.scenario.as_ref().expect("a scenario").text;
            assert!(scenario.contains("@0 twins "), "{scenario}");
            assert!(!scenario.contains("leader"), "{scenario}");
        }
    }

    #[test]
    fn a_spent_twins_space_stops_at_the_same_run_whatever_the_threads() {
        // One round of one partition: 60 distinct scenarios (a twin among 4 replicas, 15
        // partitions of 5 endpoints in two groups), then only duplicates.
        let (base, bounds) = short_pbft(1);
        let bounds = Bounds {
            rounds: 1,
            ..bounds
        };
        let one = twins(&base, bounds, 10_000, 1);
        let three = twins(&base, bounds, 10_000, 3);
        assert_eq!(one.runs, 60);
        assert!(one.duplicates > 1000 + 10 * 60, "{}", one.duplicates);
        assert_eq!(outcome(&one), outcome(&three));
    }
}
