//! The cargo-test harness on a protocol of the user's own, written as the README shows:
//! passing seeds pass; a failing seed becomes a trace, a shrunk trace and the commands
//! that re-run it.

use rehearsal_sim_core::{Latency, Outcome, RunReport, SimConfig, SimpleNetwork, Simulation};
use rehearsal_tests::in_order::{InOrder, Sender};
use rehearsal_traces::check::{check_seeds, find_failure, follow_trace_of_test, SeededSimulation};
use rehearsal_traces::shrink::{shrink, ShrinkLimits, Subject, Trial};
use rehearsal_traces::ScheduleFollower;
use std::time::{Duration, Instant};

fn build(seed: u64, latency: Latency) -> Simulation<Sender> {
    let network = SimpleNetwork { latency, loss: 0.0 };
    let mut sim = Simulation::new(
        SimConfig::new(seed),
        vec![Sender::new(20), Sender::new(20)],
        network,
    );
    sim.add_invariant(InOrder::default());
    sim
}

#[test]
fn constant_latency_keeps_order_for_every_seed() {
    check_seeds("constant_latency_keeps_order_for_every_seed", 50, |seed| {
        build(seed, Latency::constant_ms(5))
    });
}

#[test]
fn jitter_breaks_the_order_and_the_failure_shrinks_to_two_messages() {
    let jitter = "uniform:1ms..20ms".parse().unwrap();
    let failure = find_failure("jitter_reorders", 10, |seed| build(seed, jitter))
        .expect("jitter must reorder something within 10 seeds");
    let report = failure.to_string();
    assert!(report.contains("in-order"), "{report}");
    assert!(
        report.contains(&format!(
            "REHEARSAL_SEED={} cargo test jitter_reorders",
            failure.seed
        )),
        "{report}"
    );
    assert!(report.contains("REHEARSAL_FOLLOW="), "{report}");
    let (shrunk, _) = failure.shrunk.clone().expect("it shrinks");
    // The minimal run: the two messages that crossed, everything else turned into drops.
    let min = rehearsal_traces::read_trace(&shrunk).unwrap();
    let delivered = min
        .events
        .iter()
        .filter(|e| e.kind.name() == "deliver")
        .count();
    assert_eq!(
        delivered,
        2,
        "{}",
        rehearsal_traces::render_text(&min.events)
    );
    assert_eq!(min.footer.outcome, "violation");

    // Following the shrunk trace re-runs exactly that failure.
    let again = follow_trace_of_test("jitter_reorders", &shrunk, &|seed| build(seed, jitter))
        .expect("the shrunk run still fails");
    assert_eq!(again.events, min.events.len() as u64);
    // The same violation, as data: the check, the node, the time and the detail.
    assert_eq!(again.problem, min.violations()[0]);
    assert_eq!(again.problem.to_string(), min.footer.violations[0]);

    // The CLI reads the trace, and says how to re-run a test's trace.
    let show = rehearsal_tests::cli(&["show", shrunk.to_str().unwrap()]);
    assert_eq!(show.status, 0);
    let replay = rehearsal_tests::cli(&["replay", shrunk.to_str().unwrap()]);
    assert_eq!(replay.status, 2);
    assert!(
        replay.stderr.contains("REHEARSAL_FOLLOW="),
        "{}",
        replay.stderr
    );
}

/// A simulation each of whose runs takes `run_wall` of wall time, as a large run's do.
#[derive(Clone)]
struct Slow<'b> {
    inner: SeededSimulation<'b, Sender>,
    run_wall: Duration,
}

impl Subject for Slow<'_> {
    type Run = RunReport<Sender>;
    fn run(&self, schedule: ScheduleFollower) -> Option<RunReport<Sender>> {
        std::thread::sleep(self.run_wall);
        self.inner.run(schedule)
    }
    fn deadline_ns(&self) -> u64 {
        self.inner.deadline_ns()
    }
    fn with_deadline(&self, ns: u64) -> Self {
        Slow {
            inner: self.inner.with_deadline(ns),
            run_wall: self.run_wall,
        }
    }
}

#[test]
fn a_shrink_starts_no_run_that_would_end_past_its_time_limit() {
    let jitter = |seed| build(seed, "uniform:1ms..20ms".parse().unwrap());
    let seed = (1..=50)
        .find(|&s| jitter(s).run().outcome != Outcome::Ok)
        .expect("jitter reorders the messages on some seed");
    let mut recorded = jitter(seed);
    recorded.keep_trace(true);
    let recorded = recorded.run();
    // Runs of 300 ms against 1.65 s: the sixth would start at 1.5 s and end at 1.8 s
    // (150 ms of slack for a loaded machine's slower runs).
    let subject = Slow {
        inner: SeededSimulation::new(&jitter, seed),
        run_wall: Duration::from_millis(300),
    };
    let limits = ShrinkLimits {
        runs_max: 1_000,
        time_max: Duration::from_millis(1_650),
    };
    let started = Instant::now();
    let shrunk = shrink(
        &subject,
        &recorded.trace,
        recorded.sim_time_ns(),
        limits.clone(),
        &mut |_| {},
    )
    .expect("it shrinks");
    let took = started.elapsed();
    assert!(shrunk.limited, "{} runs", shrunk.runs);
    assert!(shrunk.runs >= 4, "{} runs", shrunk.runs);
    assert!(took < limits.time_max, "{took:?} for {} runs", shrunk.runs);
}
