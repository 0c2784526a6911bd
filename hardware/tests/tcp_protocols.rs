//! Same code, same checks: the protocols' own actors run over TCP on 127.0.0.1, one thread
//! per node, and their outputs must satisfy the same invariants the simulator checks.

mod common;

use common::TEST_LIMIT;
use rehearsal_hardware::{
    check_invariants, NodeRuntime, OutputRecord, RunStop, RuntimeConfig, TcpConfig, TcpTransport,
};
use rehearsal_protocols::{benaloh, unreplicated};
use rehearsal_sim_core::{Actor, Invariant, NodeId};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// The nodes of one run, each on its own thread, their outputs merged in one channel.
struct Cluster<A: Actor> {
    stops: Vec<rehearsal_hardware::StopHandle>,
    threads: Vec<thread::JoinHandle<(RunStop, A)>>,
    outputs: mpsc::Receiver<OutputRecord<A::Output>>,
    seen: Vec<OutputRecord<A::Output>>,
}

impl<A> Cluster<A>
where
    A: Actor + Send + 'static,
    A::Msg: Send,
    A::Timer: Send,
    A::Output: Send,
{
    /// Starts `actors[i]` as node i, on ephemeral ports of 127.0.0.1.
    fn start(actors: Vec<A>, seed: u64) -> Self {
        let (listeners, table) = common::listen_on_loopback(actors.len());
        // One epoch for every node: output times are comparable, as in one simulation.
        let epoch = Instant::now();
        let (sink, outputs) = mpsc::channel();
        let mut stops = Vec::new();
        let mut threads = Vec::new();
        for (i, (actor, listener)) in actors.into_iter().zip(listeners).enumerate() {
            let transport = TcpTransport::with_listener(
                NodeId(i as u32),
                listener,
                &table,
                TcpConfig::default(),
            )
            .unwrap();
            let config = RuntimeConfig {
                seed,
                epoch: Some(epoch),
                ..RuntimeConfig::default()
            };
            let sink = sink.clone();
            let node = NodeRuntime::new(actor, transport, config)
                .with_output_sink(move |record| drop(sink.send(record)));
            stops.push(node.stop_handle());
            threads.push(thread::spawn(move || {
                let mut node = node;
                // Stopped by the test; the limit only bounds a test that forgets to.
                let stop = node.run_for(Duration::from_secs(300)).unwrap();
                (stop, node.into_parts().0)
            }));
        }
        Cluster {
            stops,
            threads,
            outputs,
            seen: Vec::new(),
        }
    }

    /// Collects outputs until `enough(all outputs so far)` holds; panics after the test
    /// limit.
    fn await_outputs(&mut self, enough: impl Fn(&[OutputRecord<A::Output>]) -> bool) {
        let deadline = Instant::now() + TEST_LIMIT;
        while !enough(&self.seen) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.outputs.recv_timeout(left) {
                Ok(record) => self.seen.push(record),
                Err(_) => panic!(
                    "the awaited outputs did not come within {TEST_LIMIT:?} ({} outputs seen)",
                    self.seen.len()
                ),
            }
        }
    }

    /// Stops every node; returns every output and the actors' final states.
    fn stop(mut self) -> (Vec<OutputRecord<A::Output>>, Vec<A>) {
        for stop in &self.stops {
            stop.stop();
        }
        let actors: Vec<A> = self
            .threads
            .into_iter()
            .map(|thread| {
                let (stop, actor) = thread.join().unwrap();
                assert_eq!(stop, RunStop::Stopped);
                actor
            })
            .collect();
        self.seen.extend(self.outputs.try_iter());
        (self.seen, actors)
    }
}

fn check<A: Actor>(
    outputs: &[OutputRecord<A::Output>],
    actors: &[A],
    invariant: &mut dyn Invariant<A>,
) -> Vec<rehearsal_sim_core::Violation> {
    let end = outputs.iter().map(|r| r.at).max().unwrap_or_default();
    check_invariants(outputs, actors, end, &mut [invariant])
}

#[test]
fn unreplicated_over_tcp_answers_every_request() {
    let config = unreplicated::Config {
        clients: 3,
        requests_per_client: 200,
        // Far above a loopback round trip, even on a loaded machine: retransmissions are
        // allowed (the invariant copes) but should not be needed.
        retransmit_after: Duration::from_millis(500),
    };
    let total = u64::from(config.clients) * config.requests_per_client;
    let mut cluster = Cluster::start(unreplicated::actors(&config), 7);
    cluster.await_outputs(|seen| {
        seen.iter()
            .filter(|r| matches!(r.value, unreplicated::Output::Completed { .. }))
            .count() as u64
            >= total
    });
    let (outputs, actors) = cluster.stop();

    let mut invariant = unreplicated::RequestsAnswered::new(&config);
    let violations = check(&outputs, &actors, &mut invariant);
    assert!(violations.is_empty(), "{violations:?}");
    let executed = outputs
        .iter()
        .filter(|r| r.node == unreplicated::SERVER)
        .count() as u64;
    assert_eq!(executed, total, "every request executes exactly once");
}

#[test]
fn a_broken_reply_over_tcp_is_caught_by_the_same_invariant() {
    // The check is not vacuous: the outputs of a real run, with one completion's result
    // altered, fail it.
    let config = unreplicated::Config {
        clients: 1,
        requests_per_client: 20,
        retransmit_after: Duration::from_millis(500),
    };
    let mut cluster = Cluster::start(unreplicated::actors(&config), 3);
    cluster.await_outputs(|seen| {
        seen.iter()
            .any(|r| matches!(r.value, unreplicated::Output::Completed { request: 20, .. }))
    });
    let (mut outputs, actors) = cluster.stop();
    let victim = outputs
        .iter_mut()
        .find(|r| matches!(r.value, unreplicated::Output::Completed { request: 10, .. }))
        .unwrap();
    if let unreplicated::Output::Completed { result, .. } = &mut victim.value {
        *result += 1;
    }
    let mut invariant = unreplicated::RequestsAnswered::new(&config);
    let violations = check(&outputs, &actors, &mut invariant);
    assert!(
        violations
            .iter()
            .any(|v| v.detail.contains("accepted result")),
        "{violations:?}"
    );
}

#[test]
fn benaloh_over_tcp_agrees_on_the_correct_sum() {
    let config = benaloh::Config {
        nodes: 5,
        modulus: benaloh::MODULUS_DEFAULT,
        mode: benaloh::Mode::Robust,
    };
    let mut cluster = Cluster::start(benaloh::actors(&config).unwrap(), 11);
    cluster.await_outputs(|seen| {
        seen.iter()
            .filter(|r| matches!(r.value, benaloh::Output::Total { .. }))
            .count()
            >= config.nodes as usize
    });
    let (outputs, actors) = cluster.stop();

    let mut invariant = benaloh::CorrectSum::new(&config);
    let violations = check(&outputs, &actors, &mut invariant);
    assert!(violations.is_empty(), "{violations:?}");
    // Every node announced its secret and output one total, and the totals agree.
    let totals: Vec<u64> = outputs
        .iter()
        .filter_map(|r| match r.value {
            benaloh::Output::Total { value } => Some(value),
            _ => None,
        })
        .collect();
    assert_eq!(totals.len(), 5);
    assert!(totals.windows(2).all(|w| w[0] == w[1]), "{totals:?}");
}
