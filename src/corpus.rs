//! The corpus of coverage-guided search: the schedules kept because their runs reached a
//! coverage point no run reached before, how many runs reached each point, and where the
//! next schedule comes from.
//!
//! Two sources feed a batch: fresh draws from the whole space (what random search makes)
//! and mutations of corpus entries. Each source is credited with the new coverage points
//! its recent runs reached, and a schedule comes from either in proportion to that yield,
//! never less than a quarter of the time from either: when the corpus stops paying, the
//! search drifts back towards random search rather than spending its runs on one region,
//! and at least a quarter of its runs are drawn as random search draws them.
//!
//! A parent is chosen by a power schedule in the style of AFLFast: an entry's weight grows
//! as the rarest point its run reached is rarer (reached by fewer runs), and shrinks with
//! every child it had that reached nothing new. Rare points are the edges of what the
//! search has explored; an entry whose children keep finding nothing is spent.

use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{Coverage, SimRng};
use std::collections::BTreeMap;

/// Entries drawn fresh before the corpus is mutated at all.
pub const SEEDS: usize = 8;

/// The least and the most of the schedules drawn fresh once the corpus is mutated.
pub const SHARE_MIN: f64 = 0.25;
pub const SHARE_MAX: f64 = 0.75;

/// Where a schedule came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Drawn afresh from the whole space.
    Fresh,
    /// A mutation of the corpus entry at this index.
    Mutated { parent: usize },
}

/// One source's recent yield: runs and new points, decayed so that recent runs count most.
#[derive(Debug, Clone, Copy, Default)]
struct Yield {
    runs: f64,
    points: f64,
}

impl Yield {
    /// Each run leaves this much of the weight of the runs before it.
    const DECAY: f64 = 0.99;

    fn add(&mut self, points: usize) {
        self.runs = self.runs * Self::DECAY + 1.0;
        self.points = self.points * Self::DECAY + points as f64;
    }

    /// New points per run, with one point in two runs assumed before any run.
    fn rate(&self) -> f64 {
        (self.points + 1.0) / (self.runs + 2.0)
    }
}

/// A kept schedule and what became of its children.
#[derive(Debug, Clone)]
struct Entry<S> {
    schedule: S,
    /// The points its run reached: abstract states, then happens-before summaries (tagged).
    points: Vec<u64>,
    /// Children drawn from it, and those that reached a new point.
    children: u32,
    productive: u32,
}

/// The corpus, with the counts that steer it.
#[derive(Debug, Clone)]
pub struct Corpus<S> {
    entries: Vec<Entry<S>>,
    /// Runs that reached each point (tagged as in [`Entry::points`]).
    hits: BTreeMap<u64, u32>,
    fresh: Yield,
    mutated: Yield,
    /// Each entry's weight as a parent, computed by [`Corpus::plan`] once per batch.
    weights: Vec<u64>,
    weight_total: u64,
}

impl<S> Default for Corpus<S> {
    fn default() -> Self {
        Corpus {
            entries: Vec::new(),
            hits: BTreeMap::new(),
            fresh: Yield::default(),
            mutated: Yield::default(),
            weights: Vec::new(),
            weight_total: 0,
        }
    }
}

/// A happens-before summary's key in the map of hits it shares with abstract states: a
/// fixed scramble, so that a summary and a state of the same value count apart (a rare
/// collision only merges two counts).
fn tag_happens_before(h: u64) -> u64 {
    h.rotate_left(1) ^ 0x5bd1_e995_5bd1_e995
}

impl<S> Corpus<S> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The schedule of entry `i`.
    pub fn schedule(&self, i: usize) -> &S {
        &self.entries[i].schedule
    }

    /// The share of schedules drawn fresh: in proportion to the fresh draws' recent yield
    /// against the mutations', between a quarter and three quarters.
    pub fn fresh_share(&self) -> f64 {
        let fresh = self.fresh.rate();
        let mutated = self.mutated.rate();
        (fresh / (fresh + mutated)).clamp(SHARE_MIN, SHARE_MAX)
    }

    /// Weighs the entries as parents for the next batch: an entry weighs inversely to the
    /// runs that reached the rarest point its own run reached, divided by one plus its
    /// children that reached nothing new.
    pub fn plan(&mut self) {
        self.weights.clear();
        self.weight_total = 0;
        for entry in &self.entries {
            let rarest = entry
                .points
                .iter()
                .map(|p| self.hits.get(p).copied().unwrap_or(1))
                .min()
                .unwrap_or(1)
                .max(1);
            let spent = u64::from(entry.children - entry.productive);
            let weight = ((1u64 << 24) / (u64::from(rarest) * (1 + spent))).max(1);
            self.weights.push(weight);
            self.weight_total += weight;
        }
    }

    /// Where the next schedule comes from: fresh while the corpus is small, then fresh or a
    /// mutation of a parent chosen by weight ([`Corpus::plan`]).
    pub fn origin(&self, rng: &mut SimRng) -> Origin {
        if self.entries.len() < SEEDS
            || self.weight_total == 0
            || rng.random_bool(self.fresh_share())
        {
            return Origin::Fresh;
        }
        let mut pick = rng.random_range(0..self.weight_total);
        for (parent, &weight) in self.weights.iter().enumerate() {
            if pick < weight {
                return Origin::Mutated { parent };
            }
            pick -= weight;
        }
        unreachable!("a pick below the total weight falls on an entry")
    }

    /// Records a run of a schedule from `origin` that reached `coverage`, of which
    /// `new_states` abstract states and `new_happens_before` summaries no run reached
    /// before; keeps the schedule when `keep`.
    pub fn ran(
        &mut self,
        origin: Origin,
        schedule: &S,
        coverage: Option<&Coverage>,
        new_states: usize,
        new_happens_before: usize,
        keep: bool,
    ) where
        S: Clone,
    {
        let points: Vec<u64> = coverage
            .map(|c| {
                c.states
                    .iter()
                    .copied()
                    .chain(c.happens_before.iter().copied().map(tag_happens_before))
                    .collect()
            })
            .unwrap_or_default();
        for &p in &points {
            *self.hits.entry(p).or_insert(0) += 1;
        }
        // A new state counts as much as four new summaries: summaries come by the thousand.
        let gain = 4 * new_states + new_happens_before;
        match origin {
            Origin::Fresh => self.fresh.add(gain),
            Origin::Mutated { parent } => {
                self.mutated.add(gain);
                let entry = &mut self.entries[parent];
                entry.children += 1;
                entry.productive += u32::from(gain > 0);
            }
        }
        if keep {
            self.entries.push(Entry {
                schedule: schedule.clone(),
                points,
                children: 0,
                productive: 0,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehearsal_sim_core::derive_rng;

    /// Records a run from `origin` that reached `states`, `new` of them for the first
    /// time, and is not kept.
    fn ran(corpus: &mut Corpus<u64>, origin: Origin, states: &[u64], new: usize) {
        let coverage = Coverage {
            states: states.to_vec(),
            ..Coverage::default()
        };
        corpus.ran(origin, &0, Some(&coverage), new, 0, false);
    }

    /// A corpus of `SEEDS` entries, entry `i` reaching state `i` and the common state 1000.
    fn seeded() -> Corpus<u64> {
        let mut corpus = Corpus::default();
        for i in 0..SEEDS as u64 {
            let coverage = Coverage {
                states: vec![i, 1000],
                ..Coverage::default()
            };
            corpus.ran(Origin::Fresh, &i, Some(&coverage), 1, 0, true);
        }
        corpus
    }

    const CHILD: Origin = Origin::Mutated { parent: 0 };

    #[test]
    fn the_share_of_fresh_draws_follows_which_source_finds_new_points() {
        let mut corpus = seeded();
        // Mutations keep finding new states, fresh draws nothing: mostly mutations.
        for i in 0..200 {
            ran(&mut corpus, CHILD, &[2000 + i], 1);
            ran(&mut corpus, Origin::Fresh, &[1000], 0);
        }
        assert_eq!(corpus.fresh_share(), SHARE_MIN);
        // Then the corpus is spent and fresh draws pay: mostly fresh draws.
        for i in 0..400 {
            ran(&mut corpus, CHILD, &[1000], 0);
            ran(&mut corpus, Origin::Fresh, &[5000 + i], 1);
        }
        assert_eq!(corpus.fresh_share(), SHARE_MAX);
    }

    /// How often each entry is drawn as a parent, over many draws.
    fn parents(corpus: &mut Corpus<u64>) -> Vec<u32> {
        corpus.plan();
        let mut rng = derive_rng(1, "corpus", 0);
        let mut picked = vec![0u32; corpus.len()];
        for _ in 0..4000 {
            if let Origin::Mutated { parent } = corpus.origin(&mut rng) {
                picked[parent] += 1;
            }
        }
        picked
    }

    /// Whether entry `one` was picked more than `times` as often as every other entry.
    fn dominates(picked: &[u32], one: usize, times: u32) -> bool {
        (0..picked.len()).all(|i| i == one || picked[one] > times * picked[i])
    }

    #[test]
    fn a_parent_whose_run_reached_a_rare_point_is_mutated_more_often() {
        let mut corpus = seeded();
        // Many runs reach the states of every entry but 3's: its own state stays rare.
        for _ in 0..50 {
            ran(&mut corpus, Origin::Fresh, &[0, 1, 2, 4, 5, 6, 7, 1000], 0);
        }
        let picked = parents(&mut corpus);
        assert!(dominates(&picked, 3, 10), "{picked:?}");
    }

    #[test]
    fn a_parent_whose_children_reach_nothing_new_is_mutated_less_often() {
        let mut corpus = seeded();
        for _ in 0..20 {
            ran(&mut corpus, Origin::Mutated { parent: 5 }, &[1000], 0);
        }
        let picked = parents(&mut corpus);
        let spent = picked[5];
        assert!(
            (0..picked.len()).all(|i| i == 5 || picked[i] > 5 * spent),
            "{picked:?}"
        );
    }

    #[test]
    fn a_small_corpus_draws_fresh() {
        let mut corpus = seeded();
        corpus.entries.pop();
        corpus.plan();
        let mut rng = derive_rng(1, "corpus", 0);
        assert!((0..100).all(|_| corpus.origin(&mut rng) == Origin::Fresh));
    }
}
