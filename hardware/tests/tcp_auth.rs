//! Authenticated TCP: no node can join as another. A ping-pong server (node 0) and client
//! (node 1) run over authenticated connections while an impostor, a replayed handshake, a
//! tampered frame or a node whose key is not listed attacks them; each attack is refused
//! and counted, and the client's rounds go on completing through it.

mod common;

use common::{listen_on_loopback, raw, wait_until, Event, PingPong, TEST_LIMIT};
use rehearsal_hardware::keys::public_key_of;
use rehearsal_hardware::wire::{Hello, ACK_BYTES, HELLO_BYTES};
use rehearsal_hardware::{
    NodeRuntime, OutputRecord, RunStop, RuntimeConfig, StopHandle, TcpAuth, TcpConfig, TcpMonitor,
    TcpTransport, Transport,
};
use rehearsal_sim_core::protocol::{NodeKeys, PrivateKey};
use rehearsal_sim_core::NodeId;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const SERVER: NodeId = NodeId(0);
const CLIENT: NodeId = NodeId(1);

/// The dialer's handshake bytes: the hello and the first and last Noise messages.
const NOISE_1_BYTES: usize = 32;
const NOISE_2_BYTES: usize = 96;
const NOISE_3_BYTES: usize = 64;

/// The Ed25519 private key of node `i` of a test cluster (`salt` makes another cluster's).
fn private_key(i: u32, salt: u8) -> PrivateKey {
    let mut key = [salt; 32];
    key[..4].copy_from_slice(&i.to_be_bytes());
    PrivateKey(key)
}

/// Transport keys of `me` holding `private`, with `listed` as every node's listed key.
fn auth(me: NodeId, private: PrivateKey, listed: &[PrivateKey]) -> TcpAuth {
    let keys = NodeKeys {
        me,
        private,
        public: listed.iter().map(public_key_of).collect(),
    };
    TcpAuth::from_node_keys(&keys).unwrap()
}

/// The keys of nodes `0..nodes` of the test cluster.
fn cluster_keys(nodes: u32) -> Vec<PrivateKey> {
    (0..nodes).map(|i| private_key(i, 1)).collect()
}

fn config_for(auth: TcpAuth) -> TcpConfig {
    TcpConfig {
        reconnect_backoff_max: Duration::from_millis(100),
        log_errors: false,
        auth: Some(auth),
        ..TcpConfig::default()
    }
}

/// A node running on its own thread, with a monitor of its transport.
struct Node {
    stop: StopHandle,
    thread: JoinHandle<RunStop>,
    monitor: TcpMonitor,
}

fn spawn(
    actor: PingPong,
    transport: TcpTransport,
    sink: mpsc::Sender<OutputRecord<Event>>,
) -> Node {
    let monitor = transport.monitor();
    let config = RuntimeConfig {
        log_errors: false,
        ..RuntimeConfig::default()
    };
    let mut node =
        NodeRuntime::new(actor, transport, config).with_output_sink(move |r| drop(sink.send(r)));
    let stop = node.stop_handle();
    let thread = thread::spawn(move || node.run_for(Duration::from_secs(120)).unwrap());
    Node {
        stop,
        thread,
        monitor,
    }
}

impl Node {
    fn stop(self) {
        self.stop.stop();
        assert_eq!(self.thread.join().unwrap(), RunStop::Stopped);
    }
}

/// A server and a client over authenticated connections. The server reaches the client at
/// `client_seen_at(real address)` (a proxy, say); `nodes` keys are listed (nodes past 1
/// are the tests' to play).
struct Pair {
    server: Node,
    client: Node,
    outputs: Receiver<OutputRecord<Event>>,
    seen: Vec<OutputRecord<Event>>,
    table: BTreeMap<NodeId, SocketAddr>,
}

impl Pair {
    fn start(
        nodes: u32,
        extra: &BTreeMap<NodeId, SocketAddr>,
        client_seen_at: impl FnOnce(SocketAddr) -> SocketAddr,
    ) -> Pair {
        let keys = cluster_keys(nodes);
        let server_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client_listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client_addr = client_listener.local_addr().unwrap();
        let mut table = extra.clone();
        table.insert(SERVER, server_listener.local_addr().unwrap());
        table.insert(CLIENT, client_addr);
        let mut server_table = table.clone();
        server_table.insert(CLIENT, client_seen_at(client_addr));
        let server = TcpTransport::with_listener(
            SERVER,
            server_listener,
            &server_table,
            config_for(auth(SERVER, keys[0].clone(), &keys)),
        )
        .unwrap();
        let client = TcpTransport::with_listener(
            CLIENT,
            client_listener,
            &table,
            config_for(auth(CLIENT, keys[1].clone(), &keys)),
        )
        .unwrap();
        let (sink, outputs) = mpsc::channel();
        let retransmit = Duration::from_millis(200);
        let server = spawn(PingPong::Server, server, sink.clone());
        let client = spawn(PingPong::client(SERVER, u64::MAX, retransmit), client, sink);
        Pair {
            server,
            client,
            outputs,
            seen: Vec::new(),
            table,
        }
    }

    /// Rounds the client completed so far.
    fn completed(&mut self) -> u64 {
        self.seen.extend(self.outputs.try_iter());
        self.seen
            .iter()
            .filter_map(|record| match record.value {
                Event::Completed(n) => Some(n),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    /// Waits until the client completed `more` rounds beyond those done now.
    fn await_rounds(&mut self, more: u64) {
        let target = self.completed() + more;
        let deadline = Instant::now() + TEST_LIMIT;
        while self.completed() < target {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.outputs.recv_timeout(left) {
                Ok(record) => self.seen.push(record),
                Err(_) => panic!(
                    "the client stalled at round {} (waiting for {target})",
                    self.completed()
                ),
            }
        }
    }

    fn stop(self) {
        self.client.stop();
        self.server.stop();
    }
}

/// Reads until the other side closes `stream`; panics if it does not within the read
/// timeout. Returns the bytes that came first.
fn read_to_close(stream: &mut TcpStream, what: &str) -> usize {
    let mut got = 0;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got += n,
            Err(error)
                if matches!(
                    error.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return got
            }
            Err(error) => panic!("{what}: connection not closed: {error}"),
        }
    }
}

/// A TCP relay to `target`: every connection made to it is forwarded, the dialer's bytes
/// of the first one recorded and, if `tamper_at` is set, one of them (at that offset)
/// flipped on the way.
struct Relay {
    addr: SocketAddr,
    recorded: Arc<Mutex<Vec<u8>>>,
}

fn relay(target: SocketAddr, tamper_at: Option<usize>) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let recorded = Arc::new(Mutex::new(Vec::new()));
    let record = Arc::clone(&recorded);
    thread::spawn(move || {
        for (index, dialer) in listener.incoming().enumerate() {
            let Ok(dialer) = dialer else { return };
            let Ok(upstream) = TcpStream::connect(target) else {
                continue;
            };
            let first = index == 0;
            let record = Arc::clone(&record);
            let (mut from, mut to) = (dialer.try_clone().unwrap(), upstream.try_clone().unwrap());
            thread::spawn(move || {
                let mut at = 0;
                let mut buf = [0u8; 4096];
                while let Ok(n) = from.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if first {
                        record.lock().unwrap().extend_from_slice(&buf[..n]);
                        if let Some(offset) = tamper_at.filter(|o| (at..at + n).contains(o)) {
                            buf[offset - at] ^= 0x01;
                        }
                    }
                    at += n;
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
            });
            let (mut from, mut to) = (upstream, dialer);
            thread::spawn(move || {
                let _ = std::io::copy(&mut from, &mut to);
                let _ = to.shutdown(Shutdown::Both);
                let _ = from.shutdown(Shutdown::Both);
            });
        }
    });
    Relay { addr, recorded }
}

/// Calls `transport` until `done` holds (or the test limit passes).
fn drive(transport: &mut TcpTransport, mut done: impl FnMut(&mut TcpTransport) -> bool) -> bool {
    wait_until(TEST_LIMIT, || {
        transport.wait(Duration::from_millis(1)).unwrap();
        transport.poll(usize::MAX, &mut |_, _| {}).unwrap();
        done(transport)
    })
}

#[test]
fn an_impostor_with_the_wrong_key_is_refused_and_the_real_connection_stays() {
    let mut pair = Pair::start(2, &BTreeMap::new(), |addr| addr);
    pair.await_rounds(20);
    let before = pair.client.monitor.stats();
    assert_eq!(before.inbound_handshakes, 1);

    // An impostor claims to be node 0, with a key of its own: it dials the client as the
    // real node 0 does.
    let keys = cluster_keys(2);
    let mut listed = keys.clone();
    listed[0] = private_key(0, 2);
    let mut impostor = TcpTransport::with_listener(
        SERVER,
        TcpListener::bind("127.0.0.1:0").unwrap(),
        &pair.table,
        config_for(auth(SERVER, listed[0].clone(), &listed)),
    )
    .unwrap();
    let client = pair.client.monitor.clone();
    assert!(drive(&mut impostor, |_| client
        .stats()
        .inbound_auth_failures
        >= 2));
    drop(impostor);
    // A plain (unauthenticated) hello claiming node 0 is refused as well.
    let mut plain = raw(pair.table[&CLIENT]);
    let hello = Hello {
        from: SERVER,
        to: CLIENT,
        authenticated: false,
    };
    plain.write_all(&hello.encode()).unwrap();
    assert_eq!(read_to_close(&mut plain, "plain hello"), 0);

    pair.await_rounds(20);
    let after = pair.client.monitor.stats();
    assert!(after.inbound_auth_failures >= 2, "{after:?}");
    assert!(after.inbound_rejected > after.inbound_auth_failures);
    // The impostor never took the real node 0's place.
    assert_eq!(after.inbound_handshakes, 1, "{after:?}");
    assert_eq!(after.connections_replaced, 0, "{after:?}");
    let errors = pair.client.monitor.recent_errors().join("\n");
    assert!(
        errors.contains("n0 proved a key other than the one listed for it"),
        "{errors}"
    );
    assert!(
        errors.contains("has no keys") || errors.contains("requires it"),
        "{errors}"
    );
    pair.stop();
}

#[test]
fn a_replayed_handshake_is_refused_and_the_real_connection_stays() {
    let mut recorded = None;
    let mut pair = Pair::start(2, &BTreeMap::new(), |client| {
        let relay = relay(client, None);
        recorded = Some(relay.recorded);
        relay.addr
    });
    pair.await_rounds(20);
    let recorded = recorded.unwrap().lock().unwrap().clone();
    let opening = HELLO_BYTES + NOISE_1_BYTES;
    let handshake = opening + NOISE_3_BYTES;
    assert!(
        recorded.len() > handshake,
        "{} bytes recorded",
        recorded.len()
    );

    // The real node 0's handshake and first frames, sent again on a new connection: the
    // client answers the opening, and refuses the last message, which answered another
    // ephemeral key.
    let mut replay = raw(pair.table[&CLIENT]);
    replay.write_all(&recorded[..opening]).unwrap();
    let mut answer = [0u8; ACK_BYTES + NOISE_2_BYTES];
    replay.read_exact(&mut answer).unwrap();
    replay.write_all(&recorded[opening..]).unwrap();
    assert_eq!(read_to_close(&mut replay, "replay"), 0);

    // And garbage in place of the last message.
    let mut garbage = raw(pair.table[&CLIENT]);
    garbage.write_all(&recorded[..opening]).unwrap();
    garbage.read_exact(&mut answer).unwrap();
    garbage.write_all(&[0x5a; NOISE_3_BYTES]).unwrap();
    assert_eq!(read_to_close(&mut garbage, "garbage"), 0);

    pair.await_rounds(20);
    let stats = pair.client.monitor.stats();
    assert_eq!(stats.inbound_auth_failures, 2, "{stats:?}");
    assert_eq!(stats.inbound_handshakes, 1, "{stats:?}");
    assert_eq!(stats.connections_replaced, 0, "{stats:?}");
    pair.stop();
}

#[test]
fn a_tampered_frame_closes_its_connection_is_counted_and_the_dialer_reconnects() {
    // The first connection's first frame from the server (a pong) has one bit flipped,
    // past the handshake.
    let handshake = HELLO_BYTES + NOISE_1_BYTES + NOISE_3_BYTES;
    let mut pair = Pair::start(2, &BTreeMap::new(), |client| {
        relay(client, Some(handshake + 10)).addr
    });
    pair.await_rounds(20);
    let stats = pair.client.monitor.stats();
    assert_eq!(stats.frames_rejected, 1, "{stats:?}");
    assert_eq!(stats.connections_failed, 1, "{stats:?}");
    // The server redialed: a second handshake, through the relay, untouched.
    assert_eq!(stats.inbound_handshakes, 2, "{stats:?}");
    let errors = pair.client.monitor.recent_errors().join("\n");
    assert!(errors.contains("failed authentication"), "{errors}");
    pair.stop();
}

#[test]
fn a_node_whose_key_is_not_listed_is_refused_by_the_node_that_dials_it() {
    // Node 2's slot is taken by a process with a key the file does not list: the server,
    // which dials every higher id, must refuse it, and go on serving the client.
    let keys = cluster_keys(3);
    let stranger_listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let stranger_addr = stranger_listener.local_addr().unwrap();
    let extra: BTreeMap<NodeId, SocketAddr> = [(NodeId(2), stranger_addr)].into();
    let mut pair = Pair::start(3, &extra, |addr| addr);
    let mut listed = keys.clone();
    listed[2] = private_key(2, 9);
    let mut stranger = TcpTransport::with_listener(
        NodeId(2),
        stranger_listener,
        &pair.table,
        config_for(auth(NodeId(2), listed[2].clone(), &listed)),
    )
    .unwrap();
    let server = pair.server.monitor.clone();
    assert!(drive(&mut stranger, |_| server
        .stats()
        .outbound_auth_failures
        >= 2));
    pair.await_rounds(20);
    let stats = server.stats();
    assert!(stats.outbound_auth_failures >= 2, "{stats:?}");
    assert!(!server.connected_peers().contains(&NodeId(2)));
    assert!(server.connected_peers().contains(&CLIENT));
    let errors = server.recent_errors().join("\n");
    assert!(
        errors.contains("n2 proved a key other than the one listed for it"),
        "{errors}"
    );
    // The stranger, for its part, never got node 0's frames.
    assert_eq!(stranger.stats().frames_received, 0);
    drop(stranger);
    pair.stop();
}

#[test]
fn keys_must_list_every_peer_and_belong_to_the_node() {
    let keys = cluster_keys(2);
    let table: BTreeMap<NodeId, SocketAddr> = [
        (SERVER, "127.0.0.1:1".parse().unwrap()),
        (CLIENT, "127.0.0.1:1".parse().unwrap()),
        (NodeId(2), "127.0.0.1:1".parse().unwrap()),
    ]
    .into();
    let listener = || TcpListener::bind("127.0.0.1:0").unwrap();
    let error = TcpTransport::with_listener(
        SERVER,
        listener(),
        &table,
        config_for(auth(SERVER, keys[0].clone(), &keys)),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("no key is listed for peer n2"), "{error}");
    let error = TcpTransport::with_listener(
        CLIENT,
        listener(),
        &BTreeMap::new(),
        config_for(auth(SERVER, keys[0].clone(), &keys)),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(error.contains("the keys are n0's"), "{error}");
    let keys = NodeKeys {
        me: SERVER,
        private: keys[1].clone(),
        public: keys.iter().map(public_key_of).collect(),
    };
    assert!(TcpAuth::from_node_keys(&keys).is_err());
}

#[test]
fn sealed_frames_of_every_size_arrive_whole_and_in_order_both_ways() {
    let keys = cluster_keys(2);
    let (listeners, table) = listen_on_loopback(2);
    let mut nodes: Vec<TcpTransport> = listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            let me = NodeId(i as u32);
            let config = config_for(auth(me, keys[i].clone(), &keys));
            TcpTransport::with_listener(me, listener, &table, config).unwrap()
        })
        .collect();
    // Sizes around one Noise message (65,519 payload bytes) and several of them.
    let sizes = [0, 1, 65_519, 65_520, 200_000, 5];
    let payload = |size: usize| -> Vec<u8> { (0..size).map(|i| (i % 251) as u8).collect() };
    for (from, to) in [(0, 1), (1, 0)] {
        for &size in &sizes {
            nodes[from].send(NodeId(to as u32), &payload(size)).unwrap();
        }
        nodes[from].flush().unwrap();
        let mut got: Vec<Vec<u8>> = Vec::new();
        assert!(wait_until(TEST_LIMIT, || {
            for node in nodes.iter_mut() {
                node.wait(Duration::from_millis(1)).unwrap();
            }
            nodes[to]
                .poll(usize::MAX, &mut |_, frame| got.push(frame.to_vec()))
                .unwrap();
            got.len() == sizes.len()
        }));
        for (frame, &size) in got.iter().zip(&sizes) {
            assert!(
                frame == &payload(size),
                "a frame of {size} bytes arrived altered"
            );
        }
    }
    let stats = nodes[1].stats();
    assert_eq!(stats.frames_received, sizes.len() as u64);
    assert_eq!(stats.frames_rejected, 0);
}

#[test]
fn an_unreplicated_cluster_answers_every_request_while_an_impostor_keeps_dialing() {
    use rehearsal_hardware::check_invariants;
    use rehearsal_protocols::unreplicated;
    use rehearsal_sim_core::Invariant;

    let config = unreplicated::Config {
        clients: 2,
        requests_per_client: 300,
        retransmit_after: Duration::from_millis(500),
    };
    let total = u64::from(config.clients) * config.requests_per_client;
    let actors = unreplicated::actors(&config);
    let keys = cluster_keys(actors.len() as u32);
    let (listeners, table) = listen_on_loopback(actors.len());
    let epoch = Instant::now();
    let (sink, outputs) = mpsc::channel();
    let mut nodes = Vec::new();
    for (i, (actor, listener)) in actors.into_iter().zip(listeners).enumerate() {
        let me = NodeId(i as u32);
        let transport = TcpTransport::with_listener(
            me,
            listener,
            &table,
            config_for(auth(me, keys[i].clone(), &keys)),
        )
        .unwrap();
        let monitor = transport.monitor();
        let runtime = RuntimeConfig {
            epoch: Some(epoch),
            log_errors: false,
            ..RuntimeConfig::default()
        };
        let sink = sink.clone();
        let mut node = NodeRuntime::new(actor, transport, runtime)
            .with_output_sink(move |record| drop(sink.send(record)));
        let stop = node.stop_handle();
        let thread = thread::spawn(move || {
            let stop = node.run_for(Duration::from_secs(120)).unwrap();
            (stop, node.into_parts().0)
        });
        nodes.push((stop, thread, monitor));
    }
    // An impostor claiming to be the server dials both clients, again and again, for the
    // whole run (its own key, listed for nobody).
    let mut listed = keys.clone();
    listed[0] = private_key(0, 3);
    let mut impostor = TcpTransport::with_listener(
        SERVER,
        TcpListener::bind("127.0.0.1:0").unwrap(),
        &table,
        config_for(auth(SERVER, listed[0].clone(), &listed)),
    )
    .unwrap();
    let mut seen: Vec<OutputRecord<unreplicated::Output>> = Vec::new();
    let completed = |seen: &[OutputRecord<unreplicated::Output>]| {
        seen.iter()
            .filter(|r| matches!(r.value, unreplicated::Output::Completed { .. }))
            .count() as u64
    };
    let deadline = Instant::now() + TEST_LIMIT;
    while completed(&seen) < total {
        assert!(
            Instant::now() < deadline,
            "{} of {total} answered",
            completed(&seen)
        );
        impostor.wait(Duration::from_millis(2)).unwrap();
        seen.extend(outputs.try_iter());
    }
    drop(impostor);
    let mut finals = Vec::new();
    for (stop, thread, monitor) in nodes {
        stop.stop();
        let (run_stop, actor) = thread.join().unwrap();
        assert_eq!(run_stop, RunStop::Stopped);
        finals.push((actor, monitor.stats()));
    }
    seen.extend(outputs.try_iter());
    // Every request was answered, correctly, and executed once.
    let actors: Vec<_> = finals.iter().map(|(actor, _)| actor.clone()).collect();
    let end = seen.iter().map(|r| r.at).max().unwrap_or_default();
    let mut invariant = unreplicated::RequestsAnswered::new(&config);
    let invariants: &mut [&mut dyn Invariant<unreplicated::Node>] = &mut [&mut invariant];
    let violations = check_invariants(&seen, &actors, end, invariants);
    assert!(violations.is_empty(), "{violations:?}");
    // Each client refused the impostor, and its real connections (one from each node of
    // a lower id, which dials it) were never replaced.
    for (i, (_, stats)) in finals.iter().enumerate().skip(1) {
        assert!(stats.inbound_auth_failures >= 1, "{stats:?}");
        assert_eq!(stats.connections_replaced, 0, "{stats:?}");
        assert_eq!(stats.inbound_handshakes, i as u64, "{stats:?}");
    }
}

#[test]
fn a_listener_that_answers_garbage_is_refused_by_the_dialer_without_harm() {
    // Something listens at node 1's address and answers every hello with a well-formed
    // acknowledgement and garbage in place of the Noise message, or with a short answer
    // and a close.
    let keys = cluster_keys(2);
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap();
    thread::spawn(move || {
        for (index, stream) in fake.incoming().enumerate() {
            let Ok(mut stream) = stream else { return };
            let mut opening = [0u8; HELLO_BYTES + NOISE_1_BYTES];
            if stream.read_exact(&mut opening).is_err() {
                continue;
            }
            let ack = rehearsal_hardware::wire::Ack {
                from: CLIENT,
                authenticated: true,
            };
            let mut answer = ack.encode().to_vec();
            if index % 2 == 0 {
                answer.extend_from_slice(&[0xa5; NOISE_2_BYTES]);
            } else {
                answer.extend_from_slice(&[0xa5; 7]);
            }
            let _ = stream.write_all(&answer);
            let _ = stream.shutdown(Shutdown::Both);
        }
    });
    let table: BTreeMap<NodeId, SocketAddr> = [
        (SERVER, "127.0.0.1:1".parse().unwrap()),
        (CLIENT, fake_addr),
    ]
    .into();
    let mut server = TcpTransport::with_listener(
        SERVER,
        TcpListener::bind("127.0.0.1:0").unwrap(),
        &table,
        config_for(auth(SERVER, keys[0].clone(), &keys)),
    )
    .unwrap();
    assert!(drive(&mut server, |server| {
        let stats = server.stats();
        stats.outbound_auth_failures >= 2 && stats.outbound_connect_failures >= 4
    }));
    let stats = server.stats();
    assert_eq!(stats.outbound_connects, 0, "{stats:?}");
    assert!(server.monitor().connected_peers().is_empty());
}
