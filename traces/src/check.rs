//! The `cargo test` harness: run many seeds of a simulation, and turn a failure into a
//! trace, a shrunk trace and the commands that re-run it.
//!
//! A test file of a protocol's own crate, needing only `rehearsal-sim-core` and this
//! crate:
//!
//! ```
//! use rehearsal_sim_core::{Actor, Context, NodeId, SimConfig, SimpleNetwork, Simulation};
//! use rehearsal_traces::check::check_seeds;
//!
//! /// Node 0 sends 3 to node 1; each node sends back one less until 0.
//! struct Pinger;
//! impl Actor for Pinger {
//!     type Msg = u32;
//!     type Timer = ();
//!     type Output = u32;
//!     fn on_start(&mut self, cx: &mut Context<Self>) {
//!         if cx.me() == NodeId(0) {
//!             cx.send(NodeId(1), 3)
//!         }
//!     }
//!     fn on_message(&mut self, from: NodeId, n: u32, cx: &mut Context<Self>) {
//!         if n > 0 {
//!             cx.send(from, n - 1)
//!         }
//!     }
//!     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
//! }
//!
//! // In a test file, under #[test]:
//! check_seeds("ping_pong_survives_every_seed", 20, |seed| {
//!     Simulation::new(SimConfig::new(seed), vec![Pinger, Pinger], SimpleNetwork::default())
//! });
//! ```
//!
//! Environment: `REHEARSAL_SEED=S` runs seed S only; `REHEARSAL_SEEDS=K` runs K seeds
//! instead of the count in the code; `REHEARSAL_FOLLOW=FILE` re-runs the (shrunk) trace
//! FILE of this test by following its recorded schedule. Traces go to `target/rehearsal/`
//! (or `$CARGO_TARGET_DIR/rehearsal/`).

use crate::shrink::{follower_of, shrink, ShrinkLimits, Subject, Trial};
use crate::{read_trace, write_trace, Footer, Header, ScheduleFollower};
use rehearsal_sim_core::{
    Actor, NodeId, Outcome, RunReport, RunResult, Simulation, Time, TraceEvent, Violation,
};
use std::path::{Path, PathBuf};

impl<A: Actor> Trial for RunReport<A> {
    fn result(&self) -> &RunResult {
        &self.result
    }
    fn events(&self) -> &[TraceEvent] {
        &self.trace
    }
}

/// A failure found by [`find_failure`]: everything the test report shows.
#[derive(Debug, Clone)]
pub struct Failure {
    pub test: String,
    pub seed: u64,
    /// The first violation (or the first stalled node) of the failing run.
    pub problem: Violation,
    pub trace: PathBuf,
    pub events: u64,
    /// The shrunk trace, and its event count.
    pub shrunk: Option<(PathBuf, u64)>,
    /// The commands that re-run it.
    pub rerun: Vec<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{}: seed {} failed: {}",
            self.test, self.seed, self.problem
        )?;
        writeln!(
            f,
            "  trace:        {} ({} events)",
            self.trace.display(),
            self.events
        )?;
        if let Some((path, events)) = &self.shrunk {
            writeln!(f, "  shrunk trace: {} ({events} events)", path.display())?;
        }
        for line in &self.rerun {
            writeln!(f, "  {line}")?;
        }
        Ok(())
    }
}

/// Runs seeds of `build` (see the module docs for the environment variables) and panics
/// with a [`Failure`] report at the first that fails.
///
/// ```should_panic
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
/// use rehearsal_traces::check::check_seeds;
///
/// // Constant latency keeps the order on every seed.
/// check_seeds("constant_latency", 20, |seed| build(seed, "constant:5ms"));
/// // Jitter does not: this panics with the failing seed, its trace and how to re-run it.
/// check_seeds("jitter", 20, |seed| build(seed, "uniform:1ms..20ms"));
/// ```
pub fn check_seeds<A: Actor>(test: &str, seeds: u64, build: impl Fn(u64) -> Simulation<A>) {
    if let Some(failure) = find_failure(test, seeds, build) {
        panic!("{failure}");
    }
}

/// Like [`check_seeds`], but returns the first failure instead of panicking (for tests
/// that expect one).
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
/// use rehearsal_traces::check::find_failure;
///
/// let failure = find_failure("jitter", 20, |seed| build(seed, "uniform:1ms..20ms"))
///     .expect("jitter reorders messages on some seed");
/// assert_eq!(failure.problem.invariant, "in-order");
/// assert_eq!(failure.problem.node, NodeId(1));
/// // The failing run's trace, and the shrunk one, are written for `rehearsal show`.
/// let (shrunk, events) = failure.shrunk.clone().expect("it shrinks");
/// assert!(shrunk.exists() && events <= failure.events);
/// ```
pub fn find_failure<A: Actor>(
    test: &str,
    seeds: u64,
    build: impl Fn(u64) -> Simulation<A>,
) -> Option<Failure> {
    if let Some(file) = env_follow() {
        return follow_trace_of_test(test, &file, &build);
    }
    for seed in seed_range(seeds) {
        let report = build(seed).run();
        if report.outcome == Outcome::Ok {
            continue;
        }
        let subject = SeededSimulation::new(&build, seed);
        let mut recorded = build(seed);
        recorded.keep_trace(true);
        let deadline = recorded.deadline();
        let recorded = recorded.run();
        let header = custom_header(test, seed, deadline.map(Time::as_nanos), false, false);
        return Some(report_failure(
            test,
            seed,
            &subject,
            &recorded,
            header,
            |subject: &SeededSimulation<'_, A>| {
                custom_header(test, seed, subject.deadline_ns, true, false)
            },
            |shrunk_path| {
                vec![
                    format!("re-run it:    REHEARSAL_SEED={seed} cargo test {test}"),
                    format!(
                        "follow the shrunk run: REHEARSAL_FOLLOW={} cargo test {test}",
                        shrunk_path.display()
                    ),
                ]
            },
        ));
    }
    None
}

/// The header of a trace a harness writes for `test`: what [`follow_trace_of_test`] needs
/// to re-run it (`retime`: see [`SeededSimulation::retiming`]).
pub(crate) fn custom_header(
    test: &str,
    seed: u64,
    deadline_ns: Option<u64>,
    follow: bool,
    retime: bool,
) -> Header {
    let mut config = serde_json::json!({
        "test": test,
        "seed": seed,
        "deadline_ns": deadline_ns,
        "follow_schedule": follow,
    });
    if retime {
        config["retime_schedule"] = true.into();
    }
    Header::new(seed, config)
}

/// Writes the failing run's trace, shrinks it, writes the shrunk trace, and says how to
/// re-run both: the common end of [`find_failure`] and of harnesses over other kinds of
/// [`Subject`]. `header` heads the recorded trace, `shrunk_header` the shrunk one (it
/// should mark the run as following its own schedule); `rerun` lists the commands that
/// re-run the failure, given the shrunk trace's path.
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
/// use rehearsal_traces::check::{report_failure, SeededSimulation};
/// use rehearsal_traces::Header;
///
/// // A harness of its own: seed 7 only, with its own trace headers and re-run command.
/// let jitter = |seed| build(seed, "uniform:1ms..40ms");
/// let seed = (7..).find(|&s| jitter(s).run().outcome != rehearsal_sim_core::Outcome::Ok).unwrap();
/// let mut recorded = jitter(seed);
/// recorded.keep_trace(true);
/// let recorded = recorded.run();
/// let header = |follow: bool| Header::new(seed, serde_json::json!({ "my-harness": seed, "follow_schedule": follow }));
/// let failure = report_failure(
///     "my_harness", seed, &SeededSimulation::new(&jitter, seed), &recorded, header(false),
///     |_| header(true),
///     |shrunk| vec![format!("look at it: rehearsal show {}", shrunk.display())],
/// );
/// assert!(failure.trace.exists());
/// assert!(failure.to_string().contains("look at it: rehearsal show"));
/// ```
pub fn report_failure<S: Subject>(
    test: &str,
    seed: u64,
    subject: &S,
    recorded: &S::Run,
    header: Header,
    shrunk_header: impl Fn(&S) -> Header,
    rerun: impl Fn(&Path) -> Vec<String>,
) -> Failure {
    let dir = trace_dir();
    let _ = std::fs::create_dir_all(&dir);
    let stem = format!("{}-seed-{seed}", file_safe(test));
    let trace = dir.join(format!("{stem}.jsonl"));
    let problem = problem_of(recorded.result());
    save(&trace, header, recorded);
    let shrunk_path = dir.join(format!("{stem}.min.jsonl"));
    let mut quiet = |_: &str| {};
    let limits = ShrinkLimits {
        runs_max: 2_000,
        time_max: std::time::Duration::from_secs(30),
    };
    let shrunk = shrink(
        subject,
        recorded.events(),
        recorded.sim_time_ns(),
        limits,
        &mut quiet,
    )
    .ok()
    .map(|s| {
        save(&shrunk_path, shrunk_header(&s.subject), &s.run);
        (shrunk_path.clone(), s.events_after)
    });
    Failure {
        test: test.to_string(),
        seed,
        problem,
        events: recorded.events().len() as u64,
        trace,
        rerun: rerun(&shrunk_path),
        shrunk,
    }
}

/// The first violation of a failed run, or one naming its outcome if it listed none.
fn problem_of(result: &RunResult) -> Violation {
    result.first_problem().cloned().unwrap_or_else(|| {
        Violation::new(
            result.outcome.as_str(),
            NodeId(0),
            result.sim_time,
            "no check reported a violation",
        )
    })
}

fn save(path: &Path, header: Header, run: &impl Trial) {
    let footer = Footer::of(run.result());
    let written = std::fs::File::create(path).and_then(|file| {
        let mut w = std::io::BufWriter::new(file);
        write_trace(&mut w, &header, run.events(), &footer)
    });
    if let Err(e) = written {
        eprintln!("rehearsal: cannot write trace {}: {e}", path.display());
    }
}

/// A simulation a test builds from a seed, as the shrinker sees it: what [`shrink`]
/// reduces (its deadline, and the recorded schedule it follows) and [`report_failure`]
/// reports on (see their examples).
pub struct SeededSimulation<'b, A: Actor> {
    build: &'b dyn Fn(u64) -> Simulation<A>,
    seed: u64,
    deadline_ns: Option<u64>,
    retime: bool,
}

impl<'b, A: Actor> SeededSimulation<'b, A> {
    /// Seed `seed` of `build`, with the deadline `build` sets.
    pub fn new(build: &'b dyn Fn(u64) -> Simulation<A>, seed: u64) -> Self {
        SeededSimulation {
            build,
            seed,
            deadline_ns: None,
            retime: false,
        }
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// This simulation, following a schedule, keeps to the schedule's times of starts
    /// and timer firings too (see [`ScheduleFollower::retime_starts_and_timers`]): for
    /// schedules whose steps came in an order their times alone would not give, as an
    /// exploration's counterexample's do.
    pub fn retiming(self) -> Self {
        SeededSimulation {
            retime: true,
            ..self
        }
    }
}

impl<A: Actor> Clone for SeededSimulation<'_, A> {
    fn clone(&self) -> Self {
        SeededSimulation {
            build: self.build,
            seed: self.seed,
            deadline_ns: self.deadline_ns,
            retime: self.retime,
        }
    }
}

impl<A: Actor> Subject for SeededSimulation<'_, A> {
    type Run = RunReport<A>;

    fn run(&self, mut schedule: ScheduleFollower) -> Option<RunReport<A>> {
        if self.retime {
            schedule.retime_starts_and_timers();
        }
        let mut sim = (self.build)(self.seed);
        sim.set_network(schedule).keep_trace(true);
        if let Some(ns) = self.deadline_ns {
            sim.set_deadline(Some(Time(ns)));
        }
        Some(sim.run())
    }

    fn deadline_ns(&self) -> u64 {
        self.deadline_ns
            .or_else(|| (self.build)(self.seed).deadline().map(Time::as_nanos))
            // No deadline: the run ends at quiescence; search below a day of virtual time.
            .unwrap_or(86_400_000_000_000)
    }

    fn with_deadline(&self, ns: u64) -> Self {
        SeededSimulation {
            deadline_ns: Some(ns),
            ..self.clone()
        }
    }
}

/// Re-runs a trace that [`check_seeds`] wrote for `test` by following its recorded
/// schedule (what `REHEARSAL_FOLLOW=FILE` does); the failure, if it still fails.
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
/// use rehearsal_traces::check::{find_failure, follow_trace_of_test};
///
/// let jitter = |seed| build(seed, "uniform:1ms..20ms");
/// let failure = find_failure("follow_example", 20, jitter).unwrap();
/// let (shrunk, _) = failure.shrunk.unwrap();
/// // The shrunk run, followed from its trace, fails the same way.
/// let again = follow_trace_of_test("follow_example", &shrunk, &jitter).unwrap();
/// assert_eq!(again.problem.invariant, "in-order");
/// ```
pub fn follow_trace_of_test<A: Actor>(
    test: &str,
    file: &Path,
    build: &dyn Fn(u64) -> Simulation<A>,
) -> Option<Failure> {
    let recorded = read_trace(file).unwrap_or_else(|e| panic!("REHEARSAL_FOLLOW: {e}"));
    let config = &recorded.header.config;
    if config["test"] != test {
        panic!(
            "REHEARSAL_FOLLOW={}: the trace is of test {}, not `{test}`",
            file.display(),
            config["test"]
        );
    }
    let seed = recorded.header.seed;
    let subject = SeededSimulation {
        build,
        seed,
        deadline_ns: config["deadline_ns"].as_u64(),
        retime: config["retime_schedule"].as_bool().unwrap_or(false),
    };
    // The shrinker's drops are faults again, as when the trace was written.
    let run = subject.run(follower_of(&recorded.events, recorded.footer.sim_time_ns))?;
    run.failure()?;
    Some(Failure {
        test: test.to_string(),
        seed,
        problem: problem_of(&run),
        trace: file.to_path_buf(),
        events: run.trace.len() as u64,
        shrunk: None,
        rerun: vec![format!(
            "re-run it:    REHEARSAL_FOLLOW={} cargo test {test}",
            file.display()
        )],
    })
}

/// The trace `REHEARSAL_FOLLOW` names, if set: a harness then follows it instead of
/// running seeds.
///
/// ```
/// use rehearsal_traces::check::env_follow;
///
/// if let Some(trace) = env_follow() {
///     println!("following {}", trace.display());
/// }
/// ```
pub fn env_follow() -> Option<PathBuf> {
    std::env::var_os("REHEARSAL_FOLLOW").map(PathBuf::from)
}

/// The seeds a harness runs: `REHEARSAL_SEED=S` alone, else `1..=REHEARSAL_SEEDS` (default
/// `seeds`). A variable that is not a whole number fails the test, naming it.
///
/// ```
/// use rehearsal_traces::check::seed_range;
///
/// let seeds = seed_range(100);
/// match (std::env::var("REHEARSAL_SEED"), std::env::var("REHEARSAL_SEEDS")) {
///     (Ok(seed), _) => assert_eq!(seeds, seed.parse().unwrap()..=seed.parse().unwrap()),
///     (_, Ok(count)) => assert_eq!(seeds, 1..=count.parse::<u64>().unwrap().max(1)),
///     _ => assert_eq!(seeds, 1..=100),
/// }
/// ```
pub fn seed_range(seeds: u64) -> std::ops::RangeInclusive<u64> {
    let var = |name: &str| {
        std::env::var(name).ok().map(|v| {
            v.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("{name}={v} is not a whole number"))
        })
    };
    if let Some(seed) = var("REHEARSAL_SEED") {
        return seed..=seed;
    }
    1..=var("REHEARSAL_SEEDS").unwrap_or(seeds).max(1)
}

/// `target/rehearsal/` of the build running this test (or `$CARGO_TARGET_DIR/rehearsal`);
/// outside a cargo target directory (a doctest, a copied binary), `rehearsal/` in the
/// system's temporary directory.
fn trace_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir).join("rehearsal");
    }
    // A test binary lives in target/<profile>/deps/.
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            let deps = exe.parent()?;
            (deps.file_name()? == "deps").then(|| deps.parent()?.parent().map(Path::to_path_buf))?
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("rehearsal")
}

fn file_safe(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}
