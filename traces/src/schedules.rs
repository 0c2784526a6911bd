//! Schedules as values: a schedule is a list of choices (at each state, which of the
//! enabled steps to take), drawn and shrunk by proptest like any list of numbers, over a
//! protocol's [`Exploration`].
//!
//! [`check_schedules`] is the `cargo test` form: it draws schedules, and the first one
//! that breaks an invariant is shrunk (fewer steps, earlier choices) and reported with its
//! steps. [`find_schedule_failure`] returns it instead, for command lines and campaigns.
//! [`check_explore`] is the same for a breadth- or depth-first search.
//!
//! Given the simulation of the same nodes, [`check_schedules_traced`] and
//! [`check_explore_traced`] also write the counterexample as a trace, shrink it, and
//! report both as [`check_seeds`](crate::check::check_seeds) reports a failing seed
//! ([`trace_counterexample`]).

use crate::check::{
    custom_header, env_follow, follow_trace_of_test, report_failure, Failure, SeededSimulation,
};
use crate::shrink::{follower_of, Subject};
use proptest::collection::vec;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use rehearsal_sim_core::explore::{Exploration, Found, Stats, STEP_NS};
use rehearsal_sim_core::{Actor, Simulation, Time};
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

/// Paths tried at most when a failing schedule's path is cut shorter.
pub const MINIMIZE_WALKS: usize = 4096;

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
            // Walk the shrunk schedule again: it is then the exploration's counterexample,
            // which is cut shorter still step by step (proptest shrinks the list of
            // choices, and a choice taken out changes what every later one picks: it
            // leaves long paths), and given as the choices that take the shorter path.
            exploration.walk(&choices)?;
            exploration.minimize(MINIMIZE_WALKS);
            let choices = exploration.choices().unwrap_or(choices);
            let found = exploration.found()?;
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
pub fn check_explore(test: &str, steps: u64, mut exploration: Box<dyn Exploration>) -> Stats {
    let stats = exploration.run(steps);
    if exploration.found().is_some() {
        panic!(
            "{test}: {}",
            explored_violation(&stats, exploration.as_ref())
        );
    }
    stats
}

/// The violation an exploration found and its path, as [`check_explore`] reports it.
fn explored_violation(stats: &Stats, exploration: &dyn Exploration) -> String {
    let Some(found) = exploration.found() else {
        return "no violation".into();
    };
    let mut text = format!(
        "violation of {} at {}: {}\nafter {} steps ({} distinct states searched):\n",
        found.invariant,
        found.node,
        found.detail,
        found.steps.len(),
        stats.states
    );
    for (i, step) in found.steps.iter().enumerate() {
        text += &format!("  {:>3}. {step}\n", i + 1);
    }
    text
}

/// Re-enacts `exploration`'s counterexample in the simulation `simulate` builds, writes
/// that run's trace under `target/rehearsal/` (as [`check_seeds`](crate::check::check_seeds)
/// does), shrinks it, and writes the shrunk trace beside it: the report, with the commands
/// that re-run it (`draw`: the `REHEARSAL_SEED` of a [`check_schedules_traced`] search, or
/// the simulation's seed). `simulate` builds the exploration's nodes, seed and invariants
/// (its network does not matter: the counterexample's schedule replaces it). An error
/// says why there is no trace: no counterexample, or a simulation that does not fail
/// along it.
pub fn trace_counterexample<A: Actor>(
    test: &str,
    draw: u64,
    exploration: &mut dyn Exploration,
    simulate: &dyn Fn() -> Simulation<A>,
) -> Result<Failure, String> {
    let found = exploration
        .found()
        .ok_or("the exploration has no counterexample")?;
    let events = exploration
        .record()
        .ok_or("the counterexample could not be walked again")?;
    let build = |_: u64| simulate();
    let seed = simulate().seed();
    let deadline_ns = simulate().deadline().map(Time::as_nanos);
    // One step every STEP_NS, a timer firing when it fell due: the simulation keeps to
    // those times, so timers that fired out of order fire so again.
    let subject = SeededSimulation::new(&build, seed).retiming();
    let end_ns = events.last().map_or(0, |e| e.t) + STEP_NS;
    let run = subject
        .run(follower_of(&events, end_ns))
        .ok_or("the simulation could not run")?;
    let failed = run.result.first_problem().map(|v| v.invariant.clone());
    if failed.as_deref() != Some(found.invariant.as_str()) {
        return Err(format!(
            "the simulation, following the counterexample, ended {} without `{}`: does `simulate` build the exploration's nodes, seed and invariants?",
            run.result.outcome.as_str(),
            found.invariant
        ));
    }
    let header = |deadline_ns| custom_header(test, seed, deadline_ns, true, true);
    Ok(report_failure(
        test,
        draw,
        &subject,
        &run,
        header(deadline_ns),
        |shrunk: &SeededSimulation<'_, A>| header(Some(shrunk.deadline_ns())),
        |shrunk_path| {
            vec![
                format!("re-run it:    REHEARSAL_SEED={draw} cargo test {test}"),
                format!(
                    "follow the shrunk run: REHEARSAL_FOLLOW={} cargo test {test}",
                    shrunk_path.display()
                ),
            ]
        },
    ))
}

/// With `REHEARSAL_FOLLOW=FILE`, re-runs that trace of `test` (see
/// [`follow_trace_of_test`]) and panics if it still fails; `false` when not asked to.
fn followed<A: Actor>(test: &str, simulate: &dyn Fn() -> Simulation<A>) -> bool {
    let Some(file) = env_follow() else {
        return false;
    };
    if let Some(failure) = follow_trace_of_test(test, &file, &|_| simulate()) {
        panic!("{failure}");
    }
    true
}

/// The panic of a traced check: the counterexample as the exploration saw it, then its
/// traces (or why there are none).
fn fail_traced<A: Actor>(
    test: &str,
    draw: u64,
    what: &str,
    exploration: &mut dyn Exploration,
    simulate: &dyn Fn() -> Simulation<A>,
) -> ! {
    match trace_counterexample(test, draw, exploration, simulate) {
        Ok(failure) => panic!("{test}: {what}{failure}"),
        Err(why) => panic!("{test}: {what}(no trace: {why})"),
    }
}

/// [`check_schedules`], and the failing schedule re-enacted in the simulation `simulate`
/// builds (the exploration's nodes, seed and invariants), written as a trace and shrunk
/// (see [`trace_counterexample`]). `REHEARSAL_FOLLOW=FILE` re-runs one of those traces
/// instead of drawing schedules.
///
/// ```should_panic
/// # use rehearsal_sim_core::{Actor, Context, Invariant, NodeId, SimConfig, SimpleNetwork, Simulation, Time};
/// # use rehearsal_sim_core::explore::{explorer, Bounds, Explorable, Fingerprinter, Search};
/// # #[derive(Clone)]
/// # struct Sender(Vec<u32>);
/// # impl Actor for Sender {
/// #     type Msg = u32; type Timer = (); type Output = u32;
/// #     fn on_start(&mut self, cx: &mut Context<Self>) { if cx.me() == NodeId(0) { for i in 1..=3 { cx.send(NodeId(1), i) } } }
/// #     fn on_message(&mut self, _: NodeId, i: u32, cx: &mut Context<Self>) { self.0.push(i); cx.output(i) }
/// #     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
/// # }
/// # impl Explorable for Sender { fn fingerprint(&self, h: &mut Fingerprinter) { h.value(&self.0) } }
/// # struct InOrder(u32);
/// # impl Invariant<Sender> for InOrder {
/// #     fn name(&self) -> &str { "in-order" }
/// #     fn on_output(&mut self, _: NodeId, _: Time, i: &u32) -> Result<(), String> {
/// #         if *i < self.0 { return Err(format!("{i} arrived after {}", self.0)) } self.0 = *i; Ok(())
/// #     }
/// # }
/// use rehearsal_traces::schedules::check_schedules_traced;
///
/// // Node 0 sends 1, 2, 3 to node 1; `in-order` fails when they arrive out of order.
/// let nodes = || vec![Sender(Vec::new()), Sender(Vec::new())];
/// let exploration = explorer(nodes(), 7, || vec![Box::new(InOrder(0)) as _], Bounds {
///     search: Search::Dfs, ..Bounds::default()
/// });
/// let simulate = || {
///     let mut sim = Simulation::new(SimConfig::new(7), nodes(), SimpleNetwork::default());
///     sim.add_invariant(InOrder(0));
///     sim
/// };
/// // Panics with the schedule, its trace under target/rehearsal/, the shrunk trace, and
/// // the commands that re-run them.
/// check_schedules_traced("in_order", 100, exploration, simulate);
/// ```
pub fn check_schedules_traced<A: Actor>(
    test: &str,
    cases: u32,
    mut exploration: Box<dyn Exploration>,
    simulate: impl Fn() -> Simulation<A>,
) {
    if followed(test, &simulate) {
        return;
    }
    let seed = crate::check::seed_range(1).start().to_owned();
    if let Some(failure) = find_schedule_failure(exploration.as_mut(), cases, seed) {
        fail_traced(
            test,
            seed,
            &failure.to_string(),
            exploration.as_mut(),
            &simulate,
        );
    }
}

/// [`check_explore`], and the violation's path re-enacted in the simulation `simulate`
/// builds, written as a trace and shrunk (see [`trace_counterexample`], and
/// [`check_schedules_traced`] for an example). `REHEARSAL_FOLLOW=FILE` re-runs one of
/// those traces instead of exploring (the figures returned are then of no search).
pub fn check_explore_traced<A: Actor>(
    test: &str,
    steps: u64,
    mut exploration: Box<dyn Exploration>,
    simulate: impl Fn() -> Simulation<A>,
) -> Stats {
    if followed(test, &simulate) {
        return exploration.stats();
    }
    let stats = exploration.run(steps);
    if exploration.found().is_some() {
        let what = explored_violation(&stats, exploration.as_ref());
        fail_traced(
            test,
            simulate().seed(),
            &what,
            exploration.as_mut(),
            &simulate,
        );
    }
    stats
}
