//! Schedules as values: a schedule is a list of choices (at each state, which of the
//! enabled steps to take), drawn and shrunk by proptest like any list of numbers, over a
//! protocol's [`Exploration`].
//!
//! [`check_schedules`] is the `cargo test` form: it draws schedules, and the first one
//! that breaks an invariant is shrunk (fewer steps, earlier choices) and reported with its
//! steps. [`find_schedule_failure`] returns it instead, for command lines and campaigns.
//! [`check_explore`] is the same for a breadth- or depth-first search.

use proptest::collection::vec;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use rehearsal_sim_core::explore::{Exploration, Found};
use std::cell::RefCell;

/// A failing schedule, shrunk: its choices, and the violation they lead to.
#[derive(Debug, Clone)]
pub struct ScheduleFailure {
    pub choices: Vec<u32>,
    pub found: Found,
    /// Schedules run before the first failure (shrinking not counted).
    pub schedules: u64,
}

impl std::fmt::Display for ScheduleFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "violation of {} at {}: {}",
            self.found.invariant, self.found.node, self.found.detail
        )?;
        writeln!(
            f,
            "after {} steps (schedule {} of the search, shrunk to choices {:?}):",
            self.found.steps.len(),
            self.schedules,
            self.choices
        )?;
        for (i, step) in self.found.steps.iter().enumerate() {
            writeln!(f, "  {:>3}. {step}", i + 1)?;
        }
        Ok(())
    }
}

/// Runs `cases` schedules drawn from `seed`, each at most the exploration's depth bound
/// long; the first that fails is shrunk and returned (and left as the exploration's
/// counterexample, so [`Exploration::record`] writes it).
pub fn find_schedule_failure(
    exploration: &mut dyn Exploration,
    cases: u32,
    seed: u64,
) -> Option<ScheduleFailure> {
    let mut runner = runner(cases, seed);
    let depth = exploration.bounds().depth_max as usize;
    let cell = RefCell::new(&mut *exploration);
    let drawn = RefCell::new(0u64);
    let shrinking = RefCell::new(false);
    let result = runner.run(&vec(0u32..256, 0..=depth), |choices| {
        if !*shrinking.borrow() {
            *drawn.borrow_mut() += 1;
        }
        match cell.borrow_mut().walk(&choices) {
            Some(found) => {
                *shrinking.borrow_mut() = true;
                Err(TestCaseError::fail(found.invariant))
            }
            None => Ok(()),
        }
    });
    let schedules = *drawn.borrow();
    match result {
        Err(TestError::Fail(_, choices)) => {
            // Walk the shrunk schedule again: it is then the exploration's counterexample.
            let found = exploration.walk(&choices)?;
            Some(ScheduleFailure {
                choices,
                found,
                schedules,
            })
        }
        _ => None,
    }
}

/// Draws `cases` schedules of `exploration` (`REHEARSAL_SEED` picks the draw, 1 by
/// default) and panics with the first failing one, shrunk, and its steps.
pub fn check_schedules(test: &str, cases: u32, mut exploration: Box<dyn Exploration>) {
    let seed = crate::check::seed_range(1).start().to_owned();
    if let Some(failure) = find_schedule_failure(exploration.as_mut(), cases, seed) {
        panic!("{test}: {failure}re-run it: REHEARSAL_SEED={seed} cargo test {test}");
    }
}

fn runner(cases: u32, seed: u64) -> TestRunner {
    let config = Config {
        cases,
        failure_persistence: None,
        max_shrink_iters: 4096,
        ..Config::default()
    };
    let mut key = [0u8; 32];
    key[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &key))
}

/// Explores `exploration` (its bounds say how: breadth- or depth-first, depth, drops,
/// timer firings) for at most `steps` steps, and panics with the first violation and its
/// path: the `cargo test` form of `rehearsal explore --strategy bfs|dfs` for any protocol
/// whose node is `Explorable`. Returns the figures of a clean search (whether it covered
/// every state within the bounds is `done`).
pub fn check_explore(
    test: &str,
    steps: u64,
    mut exploration: Box<dyn Exploration>,
) -> rehearsal_sim_core::explore::Stats {
    let stats = exploration.run(steps);
    if let Some(found) = exploration.found() {
        let mut text = format!(
            "{test}: violation of {} at {}: {}\nafter {} steps ({} distinct states searched):\n",
            found.invariant,
            found.node,
            found.detail,
            found.steps.len(),
            stats.states
        );
        for (i, step) in found.steps.iter().enumerate() {
            text += &format!("  {:>3}. {step}\n", i + 1);
        }
        panic!("{text}");
    }
    stats
}
