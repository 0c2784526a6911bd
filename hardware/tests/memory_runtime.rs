//! The node runtime over the in-memory transport.

mod common;

use common::{wait_until, Event, Msg, PingPong, RoundsInOrder, Tick, TEST_LIMIT};
use rehearsal_hardware::{
    check_invariants, decode_message, encode_message, load_state, MemoryHub, NodeRuntime,
    OutputRecord, RunStop, RuntimeConfig, Transport,
};
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{
    derive_rng, Actor, Context, Invariant, NodeId, SimConfig, SimpleNetwork, Simulation, Time,
};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const SERVER: NodeId = NodeId(0);
const CLIENT: NodeId = NodeId(1);

fn quiet() -> RuntimeConfig {
    RuntimeConfig {
        log_errors: false,
        ..RuntimeConfig::default()
    }
}

fn ping_pong_nodes(rounds: u64, retransmit: Duration) -> Vec<PingPong> {
    vec![
        PingPong::Server,
        PingPong::client(SERVER, rounds, retransmit),
    ]
}

/// Records every output the simulator reports, per node.
struct Recorder(Arc<Mutex<Vec<(NodeId, Event)>>>);
impl Invariant<PingPong> for Recorder {
    fn name(&self) -> &str {
        "recorder"
    }
    fn on_output(&mut self, node: NodeId, _now: Time, output: &Event) -> Result<(), String> {
        self.0.lock().unwrap().push((node, output.clone()));
        Ok(())
    }
}

fn values_of(outputs: &[OutputRecord<Event>], node: NodeId) -> Vec<Event> {
    outputs
        .iter()
        .filter(|record| record.node == node)
        .map(|record| record.value.clone())
        .collect()
}

#[test]
fn ping_pong_round_robin_matches_the_simulator() {
    let rounds = 50;
    let hub = MemoryHub::new(2);
    // One sink for both nodes: it sees their outputs in causal order.
    let merged = Arc::new(Mutex::new(Vec::new()));
    let mut nodes: Vec<_> = ping_pong_nodes(rounds, Duration::from_secs(30))
        .into_iter()
        .zip(hub.endpoints())
        .map(|(actor, endpoint)| {
            let merged = Arc::clone(&merged);
            NodeRuntime::new(actor, endpoint, quiet())
                .with_output_sink(move |record| merged.lock().unwrap().push(record))
        })
        .collect();
    let begun = Instant::now();
    let done = |nodes: &[NodeRuntime<PingPong, _>]| match nodes[1].actor() {
        PingPong::Client { round, timer, .. } => *round == rounds && timer.is_none(),
        PingPong::Server => unreachable!(),
    };
    while !done(&nodes) && begun.elapsed() < TEST_LIMIT {
        for node in &mut nodes {
            node.step().unwrap();
        }
    }
    let merged = merged.lock().unwrap().clone();
    let actors = ping_pong_nodes(rounds, Duration::from_secs(30));
    let mut invariant = RoundsInOrder::new(rounds, vec![CLIENT]);
    let violations = check_invariants(&merged, &actors, Time::ZERO, &mut [&mut invariant]);
    assert!(violations.is_empty(), "{violations:?}");

    // The same actors in the simulator produce the same outputs, node by node.
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let mut sim = Simulation::new(
        SimConfig::new(7),
        ping_pong_nodes(rounds, Duration::from_secs(30)),
        SimpleNetwork::default(),
    );
    sim.add_invariant(Recorder(Arc::clone(&recorded)));
    let report = sim.run();
    let simulated = recorded.lock().unwrap().clone();
    for (index, node) in nodes.iter().enumerate() {
        let id = NodeId(index as u32);
        let expected: Vec<Event> = simulated
            .iter()
            .filter(|(node, _)| *node == id)
            .map(|(_, event)| event.clone())
            .collect();
        assert_eq!(values_of(&merged, id), expected, "outputs of {id}");
        assert_eq!(
            node.stats().node.messages_sent,
            report.nodes[index].messages_sent
        );
        assert_eq!(
            node.stats().node.messages_received,
            report.nodes[index].messages_received
        );
        assert_eq!(node.stats().node.bytes_sent, report.nodes[index].bytes_sent);
    }
    let client = nodes[1].stats();
    assert_eq!(client.timers_set, rounds);
    assert_eq!(client.timers_cancelled, rounds);
    assert_eq!(client.node.timers_fired, 0);
    assert_eq!(nodes[1].timers_armed(), 0);
    assert_eq!(client.messages_undecodable, 0);
    assert_eq!(nodes[1].annotations()[0].label, "start");
}

#[test]
fn ping_pong_on_threads_checks_invariants_over_all_nodes() {
    let rounds = 200;
    let hub = MemoryHub::new(3);
    let (sink, outputs) = mpsc::channel();
    let epoch = Instant::now();
    let actors = vec![
        PingPong::Server,
        PingPong::client(SERVER, rounds, Duration::from_millis(500)),
        PingPong::client(SERVER, rounds, Duration::from_millis(500)),
    ];
    let mut stops = Vec::new();
    let mut threads = Vec::new();
    for (actor, endpoint) in actors.into_iter().zip(hub.endpoints()) {
        let sink = sink.clone();
        let config = RuntimeConfig {
            epoch: Some(epoch),
            ..quiet()
        };
        let mut node = NodeRuntime::new(actor, endpoint, config)
            .with_output_sink(move |record| drop(sink.send(record)));
        stops.push(node.stop_handle());
        threads.push(thread::spawn(move || {
            let stop = node.run_until(TEST_LIMIT, |node| match node.actor() {
                PingPong::Client { round, timer, .. } => *round == rounds && timer.is_none(),
                PingPong::Server => false,
            });
            (stop.unwrap(), node)
        }));
    }
    drop(sink);

    let mut merged = Vec::new();
    let mut completed = 0;
    let deadline = Instant::now() + TEST_LIMIT;
    while completed < 2 * rounds {
        let left = deadline.saturating_duration_since(Instant::now());
        let record = outputs.recv_timeout(left).expect("outputs stopped coming");
        if matches!(record.value, Event::Completed(_)) {
            completed += 1;
        }
        merged.push(record);
    }
    stops[0].stop();
    let mut finished = Vec::new();
    for thread in threads {
        finished.push(thread.join().unwrap());
    }
    assert_eq!(finished[0].0, RunStop::Stopped);
    assert_eq!(finished[1].0, RunStop::Done);
    assert_eq!(finished[2].0, RunStop::Done);

    // Each node's output times are monotonic, on the one epoch all nodes share.
    for node in 0..3 {
        let times: Vec<Time> = merged
            .iter()
            .filter(|record| record.node == NodeId(node))
            .map(|record| record.at)
            .collect();
        assert!(times.windows(2).all(|pair| pair[0] <= pair[1]));
        assert!(times
            .iter()
            .all(|&at| at <= Time::from_secs(TEST_LIMIT.as_secs())));
    }
    let actors: Vec<PingPong> = finished
        .into_iter()
        .map(|(_, node)| node.into_parts().0)
        .collect();
    let mut invariant = RoundsInOrder::new(rounds, vec![NodeId(1), NodeId(2)]);
    let violations = check_invariants(&merged, &actors, Time::ZERO, &mut [&mut invariant]);
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(invariant.served.values().sum::<u64>(), 2 * rounds);

    // An invariant that needs more rounds than were run fails at the end.
    let mut greedy = RoundsInOrder::new(rounds + 1, vec![NodeId(1)]);
    let violations = check_invariants(&merged, &actors, Time::ZERO, &mut [&mut greedy]);
    assert_eq!(violations.len(), 1);
    assert!(
        violations[0]
            .to_string()
            .starts_with("rounds-in-order: n1 completed"),
        "{violations:?}"
    );
}

/// Sets timers A (30ms), B (40ms, cancelled at once) and C (60ms); outputs each timer that
/// fires with the time it fired.
struct Timers {
    set_at: Time,
}

impl Actor for Timers {
    type Msg = ();
    type Timer = char;
    type Output = (char, Time);

    fn on_start(&mut self, cx: &mut Context<Self>) {
        self.set_at = cx.now();
        cx.set_timer(Duration::from_millis(30), 'A');
        let b = cx.set_timer(Duration::from_millis(40), 'B');
        cx.set_timer(Duration::from_millis(60), 'C');
        cx.cancel_timer(b);
        cx.cancel_timer(b); // cancelling twice does nothing
    }
    fn on_message(&mut self, _from: NodeId, _msg: (), _cx: &mut Context<Self>) {}
    fn on_timer(&mut self, timer: char, cx: &mut Context<Self>) {
        cx.output((timer, cx.now()));
    }
}

#[test]
fn timers_fire_in_order_on_time_and_cancelled_ones_never() {
    let hub = MemoryHub::new(1);
    let endpoint = hub.endpoint(NodeId(0)).unwrap();
    let mut node = NodeRuntime::new(Timers { set_at: Time::ZERO }, endpoint, quiet());
    let begun = Instant::now();
    let stop = node
        .run_until(TEST_LIMIT, |node| node.outputs().len() >= 2)
        .unwrap();
    assert_eq!(stop, RunStop::Done);
    assert!(begun.elapsed() >= Duration::from_millis(60));
    // Long enough for B to have fired, had it not been cancelled.
    assert_eq!(
        node.run_for(Duration::from_millis(100)).unwrap(),
        RunStop::TimedOut
    );
    let set_at = node.actor().set_at;
    let fired: Vec<(char, Time)> = node.outputs().iter().map(|o| o.value).collect();
    assert_eq!(fired.len(), 2, "{fired:?}");
    assert_eq!(fired[0].0, 'A');
    assert_eq!(fired[1].0, 'C');
    assert!(fired[0].1 >= set_at.after(Duration::from_millis(30)));
    assert!(fired[1].1 >= set_at.after(Duration::from_millis(60)));
    let stats = node.stats();
    assert_eq!(stats.timers_set, 3);
    assert_eq!(stats.timers_cancelled, 1);
    assert_eq!(stats.node.timers_fired, 2);
    assert_eq!(node.timers_armed(), 0);
}

/// A skewed clock (set through the handle another thread holds, as a controlled node's
/// control line does): the actor reads an hour ahead and a clock running at half speed, so
/// its 100 ms timer takes 200 ms of true time; outputs keep true times.
#[test]
fn a_skewed_clock_is_what_the_actor_reads_and_times_its_timers_by() {
    let hub = MemoryHub::new(1);
    let endpoint = hub.endpoint(NodeId(0)).unwrap();
    let mut node = NodeRuntime::new(Timers { set_at: Time::ZERO }, endpoint, quiet());
    let skew = rehearsal_sim_core::ClockSkew {
        offset_ns: 3_600_000_000_000,
        drift_ppm: -500_000,
    };
    node.clock_handle().set_skew(skew);
    let stop = node
        .run_until(TEST_LIMIT, |node| node.outputs().len() >= 2)
        .unwrap();
    assert_eq!(stop, RunStop::Done);
    let set_at = node.actor().set_at;
    assert!(set_at >= Time::from_secs(3_600), "the actor read {set_at}");
    let fired: Vec<&OutputRecord<(char, Time)>> = node.outputs().iter().collect();
    assert_eq!((fired[0].value.0, fired[1].value.0), ('A', 'C'));
    // The actor's clock advanced by at least the 60 ms it asked for...
    assert!(fired[1].value.1 >= set_at.after(Duration::from_millis(60)));
    // ...which took at least twice that of true time: the output times are true, and
    // an unskewed runtime would fire C after 60 ms.
    assert!(fired[1].at < Time::from_secs(3_600), "{}", fired[1].at);
    assert!(
        fired[1].at >= Time::from_millis(120),
        "C fired at true {} (unskewed: 60ms)",
        fired[1].at
    );
    assert_eq!(node.actor_now().as_nanos() / 1_000_000_000, 3_600);
    // Removing the skew gives the true clock back.
    node.set_clock_skew(rehearsal_sim_core::ClockSkew::default());
    assert!(node.actor_now() < Time::from_secs(3_600));

    // A handle made before the runtime (by a control thread that starts first).
    let clock = rehearsal_hardware::ClockHandle::default();
    clock.set_skew(skew);
    let endpoint = MemoryHub::new(1).endpoint(NodeId(0)).unwrap();
    let mut node =
        NodeRuntime::new(Timers { set_at: Time::ZERO }, endpoint, quiet()).with_clock_handle(clock);
    node.step().unwrap();
    assert!(node.actor().set_at >= Time::from_secs(3_600));
}

#[test]
fn retransmission_timers_recover_lost_messages() {
    // The server's queue holds nothing at first: the ping is refused (counted as dropped by
    // the client's runtime) and the client's retransmit timer must recover it.
    let hub = MemoryHub::with_limits(2, 1, 1024);
    let mut server = NodeRuntime::new(PingPong::Server, hub.endpoint(SERVER).unwrap(), quiet());
    let mut client = NodeRuntime::new(
        PingPong::client(SERVER, 3, Duration::from_millis(20)),
        hub.endpoint(CLIENT).unwrap(),
        quiet(),
    );
    // Fill the server's queue so that the first ping is lost.
    hub.inject(NodeId(9), SERVER, b"filler").unwrap();
    client.step().unwrap();
    assert_eq!(client.stats().sends_dropped_queue_full, 1);
    assert_eq!(client.stats().node.messages_dropped, 1);
    let begun = Instant::now();
    while client.outputs().len() < 3 && begun.elapsed() < TEST_LIMIT {
        server.step().unwrap();
        client.step().unwrap();
        client.wait(Duration::from_millis(1)).unwrap();
    }
    let completed: Vec<Event> = client.outputs().iter().map(|o| o.value.clone()).collect();
    assert_eq!(
        completed,
        vec![
            Event::Completed(1),
            Event::Completed(2),
            Event::Completed(3)
        ]
    );
    assert!(client.stats().node.timers_fired >= 1);
    assert!(client
        .annotations()
        .iter()
        .any(|a| a.label == "retransmit 1"));
    assert_eq!(server.stats().messages_undecodable, 1); // the filler
}

#[test]
fn undecodable_messages_are_counted_and_dropped() {
    let hub = MemoryHub::new(2);
    let mut server = NodeRuntime::new(PingPong::Server, hub.endpoint(SERVER).unwrap(), quiet());
    let mut peer = hub.endpoint(CLIENT).unwrap();
    server.step().unwrap();

    let mut valid = Vec::new();
    encode_message(&Msg::Ping(5), &mut valid).unwrap();
    let mut trailing = valid.clone();
    trailing.push(0);
    // A note "of 2^50 bytes": decoding must refuse it, not try to allocate it.
    let mut huge_string = vec![2u8, 253];
    huge_string.extend_from_slice(&(1u64 << 50).to_le_bytes());
    let garbage: [&[u8]; 5] = [&[0xff; 9], &[], &trailing, &huge_string, &[7, 1, 2, 3]];
    for bytes in garbage {
        peer.send(SERVER, bytes).unwrap();
    }
    peer.send(SERVER, &valid).unwrap();
    let begun = Instant::now();
    while server.outputs().is_empty() && begun.elapsed() < TEST_LIMIT {
        server.step().unwrap();
    }
    assert_eq!(server.stats().messages_undecodable, 5);
    assert_eq!(server.stats().node.messages_received, 1);
    assert_eq!(server.outputs()[0].value, Event::Served(5));

    // The server answered the one valid ping.
    let mut received = Vec::new();
    assert!(wait_until(TEST_LIMIT, || {
        peer.poll(16, &mut |from, bytes| received.push((from, bytes.to_vec())))
            .unwrap();
        !received.is_empty()
    }));
    let mut pong = Vec::new();
    encode_message(&Msg::Pong(5), &mut pong).unwrap();
    assert_eq!(received, vec![(SERVER, pong)]);
}

/// Sends what its script says on start, then outputs every message it receives.
struct Script(Vec<(NodeId, Msg)>);

impl Actor for Script {
    type Msg = Msg;
    type Timer = ();
    type Output = (NodeId, Msg);
    fn on_start(&mut self, cx: &mut Context<Self>) {
        for (to, msg) in self.0.drain(..) {
            cx.send(to, msg);
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<Self>) {
        cx.output((from, msg));
    }
    fn on_timer(&mut self, _timer: (), _cx: &mut Context<Self>) {}
}

#[test]
fn refused_sends_are_counted_as_drops_and_self_sends_loop_back() {
    let hub = MemoryHub::with_limits(2, 3, 64);
    let mut script = vec![
        (NodeId(0), Msg::Note("to myself".into())),
        (NodeId(9), Msg::Ping(1)),
        (NodeId(1), Msg::Note("x".repeat(100))),
    ];
    script.extend((0..5).map(|n| (NodeId(1), Msg::Ping(n))));
    let mut node = NodeRuntime::new(Script(script), hub.endpoint(NodeId(0)).unwrap(), quiet());
    let stop = node
        .run_until(TEST_LIMIT, |node| !node.outputs().is_empty())
        .unwrap();
    assert_eq!(stop, RunStop::Done);
    assert_eq!(
        node.outputs()[0].value,
        (NodeId(0), Msg::Note("to myself".into()))
    );
    let stats = node.stats();
    assert_eq!(stats.node.messages_sent, 8);
    assert_eq!(stats.sends_dropped_unknown_peer, 1);
    assert_eq!(stats.sends_dropped_too_large, 1);
    assert_eq!(stats.sends_dropped_queue_full, 2);
    assert_eq!(stats.node.messages_dropped, 4);
    assert_eq!(hub.queued_frames(NodeId(1)), 3);
}

#[test]
fn the_node_rng_is_the_simulators_stream() {
    struct Draw;
    impl Actor for Draw {
        type Msg = ();
        type Timer = ();
        type Output = u64;
        fn on_start(&mut self, cx: &mut Context<Self>) {
            let value = cx.rng().random();
            cx.output(value);
        }
        fn on_message(&mut self, _: NodeId, _: (), _: &mut Context<Self>) {}
        fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
    }
    let hub = MemoryHub::new(4);
    let config = RuntimeConfig {
        seed: 42,
        ..quiet()
    };
    let mut node = NodeRuntime::new(Draw, hub.endpoint(NodeId(3)).unwrap(), config);
    node.step().unwrap();
    let expected: u64 = derive_rng(42, "node", 3).random();
    assert_eq!(node.outputs()[0].value, expected);
}

#[test]
fn the_stop_handle_stops_a_running_node() {
    let hub = MemoryHub::new(1);
    let node = NodeRuntime::new(PingPong::Server, hub.endpoint(NodeId(0)).unwrap(), quiet());
    let stop = node.stop_handle();
    let runner = thread::spawn(move || {
        let mut node = node;
        let begun = Instant::now();
        let result = node.run_for(Duration::from_secs(60)).unwrap();
        (result, begun.elapsed())
    });
    thread::sleep(Duration::from_millis(50));
    stop.stop();
    let (result, elapsed) = runner.join().unwrap();
    assert_eq!(result, RunStop::Stopped);
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn a_violated_invariant_stops_the_run() {
    /// Fails as soon as round 3 completes.
    struct NoThirdRound;
    impl Invariant<PingPong> for NoThirdRound {
        fn name(&self) -> &str {
            "no-third-round"
        }
        fn on_output(&mut self, _: NodeId, _: Time, output: &Event) -> Result<(), String> {
            match output {
                Event::Completed(3) => Err("round 3 completed".into()),
                _ => Ok(()),
            }
        }
    }
    let hub = MemoryHub::new(2);
    let mut server = NodeRuntime::new(PingPong::Server, hub.endpoint(SERVER).unwrap(), quiet());
    let mut client = NodeRuntime::new(
        PingPong::client(SERVER, 10, Duration::from_secs(30)),
        hub.endpoint(CLIENT).unwrap(),
        quiet(),
    );
    client.add_invariant(NoThirdRound);
    let server_stop = server.stop_handle();
    let server_thread = thread::spawn(move || server.run_for(TEST_LIMIT).unwrap());
    let stop = client.run_for(TEST_LIMIT).unwrap();
    server_stop.stop();
    assert_eq!(server_thread.join().unwrap(), RunStop::Stopped);
    assert_eq!(stop, RunStop::Violation);
    let [v] = client.violations() else {
        panic!("one violation expected: {:?}", client.violations())
    };
    assert_eq!(
        (v.invariant.as_str(), v.node, v.detail.as_str()),
        ("no-third-round", client.me(), "round 3 completed")
    );
    assert_eq!(client.outputs().len(), 3);
}

#[test]
fn memory_endpoints_wait_and_refuse_what_they_cannot_carry() {
    let hub = MemoryHub::with_limits(2, 2, 8);
    let mut a = hub.endpoint(NodeId(0)).unwrap();
    let mut b = hub.endpoint(NodeId(1)).unwrap();
    assert!(
        hub.endpoint(NodeId(0)).is_err(),
        "an endpoint is handed out once"
    );
    assert!(hub.endpoint(NodeId(2)).is_err());

    // Waiting times out when nothing comes...
    let begun = Instant::now();
    assert!(!b.wait(Duration::from_millis(30)).unwrap());
    assert!(begun.elapsed() >= Duration::from_millis(30));
    // ...and wakes up when a frame arrives from another thread.
    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        a.send(NodeId(1), b"one").unwrap();
        a
    });
    assert!(b.wait(TEST_LIMIT).unwrap());
    let mut a = sender.join().unwrap();

    assert_eq!(
        a.send(NodeId(1), b"123456789"),
        Err(rehearsal_hardware::SendError::FrameTooLarge {
            frame_bytes: 9,
            frame_bytes_max: 8
        })
    );
    assert_eq!(
        a.send(NodeId(5), b"x"),
        Err(rehearsal_hardware::SendError::UnknownPeer(NodeId(5)))
    );
    a.send(NodeId(1), b"two").unwrap();
    assert_eq!(
        a.send(NodeId(1), b"three"),
        Err(rehearsal_hardware::SendError::QueueFull(NodeId(1)))
    );
    let mut got = Vec::new();
    assert_eq!(
        b.poll(1, &mut |from, bytes| got.push((from, bytes.to_vec())))
            .unwrap(),
        1
    );
    assert_eq!(
        b.poll(9, &mut |from, bytes| got.push((from, bytes.to_vec())))
            .unwrap(),
        1
    );
    assert_eq!(
        got,
        vec![(NodeId(0), b"one".to_vec()), (NodeId(0), b"two".to_vec())]
    );
    let _ = Tick::Retransmit(0); // shared test types
}

/// Counts the pings it serves, saving the count durably before each answer.
struct DurableCounter {
    served: u64,
}

impl DurableCounter {
    /// The restart constructor: resumes from the saved count.
    fn restart(state: Option<&[u8]>) -> Self {
        let served = state.map_or(0, |bytes| decode_message::<u64>(bytes).unwrap());
        DurableCounter { served }
    }
}

impl Actor for DurableCounter {
    type Msg = Msg;
    type Timer = ();
    type Output = u64;
    fn on_start(&mut self, _cx: &mut Context<Self>) {}
    fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<Self>) {
        if let Msg::Ping(n) = msg {
            self.served += 1;
            cx.persist(&self.served).unwrap();
            cx.output(self.served);
            cx.send(from, Msg::Pong(n));
        }
    }
    fn on_timer(&mut self, _timer: (), _cx: &mut Context<Self>) {}
}

fn ping_bytes(n: u64) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_message(&Msg::Ping(n), &mut bytes).unwrap();
    bytes
}

#[test]
fn durable_state_is_saved_and_survives_a_restart() {
    let directory = std::env::temp_dir().join(format!("rehearsal-hardware-{}", std::process::id()));
    std::fs::create_dir_all(&directory).unwrap();
    let path = directory.join("n0.state");
    let config = RuntimeConfig {
        state_path: Some(path.clone()),
        ..quiet()
    };
    assert_eq!(load_state(&path).unwrap(), None);

    let hub = MemoryHub::new(2);
    let mut peer = hub.endpoint(CLIENT).unwrap();
    let mut node = NodeRuntime::new(
        DurableCounter::restart(None),
        hub.endpoint(SERVER).unwrap(),
        config.clone(),
    );
    for n in 1..=3 {
        peer.send(SERVER, &ping_bytes(n)).unwrap();
    }
    let stop = node
        .run_until(TEST_LIMIT, |node| node.outputs().len() == 3)
        .unwrap();
    assert_eq!(stop, RunStop::Done);
    assert_eq!(node.stats().states_persisted, 3);
    assert_eq!(node.stats().state_write_failures, 0);
    let saved = load_state(&path).unwrap().unwrap();
    assert_eq!(node.persisted(), Some(&saved[..]));
    assert_eq!(decode_message::<u64>(&saved).unwrap(), 3);
    assert!(!directory.join("n0.state.tmp").exists());

    // The node crashes; its successor is rebuilt from the saved state.
    let (_, endpoint) = node.into_parts();
    let mut node = NodeRuntime::new(
        DurableCounter::restart(load_state(&path).unwrap().as_deref()),
        endpoint,
        config,
    );
    peer.send(SERVER, &ping_bytes(4)).unwrap();
    node.run_until(TEST_LIMIT, |node| !node.outputs().is_empty())
        .unwrap();
    assert_eq!(node.outputs()[0].value, 4);
    assert_eq!(
        decode_message::<u64>(&load_state(&path).unwrap().unwrap()).unwrap(),
        4
    );
    std::fs::remove_dir_all(&directory).unwrap();

    // A state that cannot be written is counted; the node keeps serving.
    let config = RuntimeConfig {
        state_path: Some(directory.join("missing").join("n0.state")),
        ..quiet()
    };
    let (_, endpoint) = node.into_parts();
    let mut node = NodeRuntime::new(DurableCounter::restart(None), endpoint, config);
    peer.send(SERVER, &ping_bytes(5)).unwrap();
    node.run_until(TEST_LIMIT, |node| !node.outputs().is_empty())
        .unwrap();
    assert_eq!(node.stats().state_write_failures, 1);
    assert_eq!(
        node.persisted().map(|s| decode_message::<u64>(s).unwrap()),
        Some(1)
    );
    let mut pongs = 0;
    peer.poll(16, &mut |_, _| pongs += 1).unwrap();
    assert_eq!(pongs, 5);
}
