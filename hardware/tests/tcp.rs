//! The TCP transport, alone and under the node runtime, on 127.0.0.1 with ephemeral ports.

mod common;

use common::{raw, wait_until, Event, Msg, PingPong, RoundsInOrder, TEST_LIMIT};
use rehearsal_hardware::wire::{Ack, Hello, ACK_BYTES, WIRE_VERSION};
use rehearsal_hardware::{
    check_invariants, encode_message, NodeRuntime, OutputRecord, RunStop, RuntimeConfig, SendError,
    StopHandle, TcpConfig, TcpTransport, Transport, TransportError,
};
use rehearsal_sim_core::{NodeId, Time};
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const SERVER: NodeId = NodeId(0);
const CLIENT: NodeId = NodeId(1);
/// A node id the tests impersonate with raw sockets.
const RAW: NodeId = NodeId(2);

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// An address where nothing listens (port 1 is privileged, so no test can bind it).
fn nowhere() -> SocketAddr {
    "127.0.0.1:1".parse().unwrap()
}

fn config() -> TcpConfig {
    TcpConfig {
        reconnect_backoff_max: Duration::from_millis(100),
        ..TcpConfig::default()
    }
}

fn quiet() -> RuntimeConfig {
    RuntimeConfig {
        log_errors: false,
        ..RuntimeConfig::default()
    }
}

/// Starts one transport per node on 127.0.0.1, each knowing every other as a peer from
/// the start.
fn mesh(nodes: u32, config: &TcpConfig) -> Vec<TcpTransport> {
    let listeners: Vec<TcpListener> = (0..nodes)
        .map(|_| TcpListener::bind(loopback()).unwrap())
        .collect();
    let table: BTreeMap<NodeId, SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, listener)| (NodeId(i as u32), listener.local_addr().unwrap()))
        .collect();
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listener)| {
            TcpTransport::with_listener(NodeId(i as u32), listener, &table, config.clone()).unwrap()
        })
        .collect()
}

type Finished = (RunStop, NodeRuntime<PingPong, TcpTransport>);

/// Runs a node on its own thread, sending its outputs to `sink`, until stopped.
fn spawn_node(
    actor: PingPong,
    transport: TcpTransport,
    sink: mpsc::Sender<OutputRecord<Event>>,
) -> (StopHandle, JoinHandle<Finished>) {
    let node = NodeRuntime::new(actor, transport, quiet())
        .with_output_sink(move |record| drop(sink.send(record)));
    let stop = node.stop_handle();
    let thread = thread::spawn(move || {
        let mut node = node;
        let result = node.run_for(Duration::from_secs(120)).unwrap();
        (result, node)
    });
    (stop, thread)
}

/// Receives outputs until one satisfies `wanted`, keeping all of them in `seen`.
fn await_output(
    outputs: &Receiver<OutputRecord<Event>>,
    seen: &mut Vec<OutputRecord<Event>>,
    wanted: impl Fn(&OutputRecord<Event>) -> bool,
) {
    let deadline = Instant::now() + TEST_LIMIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let record = outputs
            .recv_timeout(left)
            .expect("the awaited output never came");
        let found = wanted(&record);
        seen.push(record);
        if found {
            return;
        }
    }
}

fn completed(seen: &[OutputRecord<Event>]) -> u64 {
    seen.iter()
        .filter_map(|record| match record.value {
            Event::Completed(n) => Some(n),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

#[test]
fn ping_pong_over_tcp() {
    let rounds = 300;
    let mut transports = mesh(2, &config()).into_iter();
    let (server_transport, client_transport) =
        (transports.next().unwrap(), transports.next().unwrap());
    let (sink, outputs) = mpsc::channel();
    let (server_stop, server) = spawn_node(PingPong::Server, server_transport, sink.clone());
    let (client_stop, client) = spawn_node(
        PingPong::client(SERVER, rounds, Duration::from_millis(500)),
        client_transport,
        sink,
    );
    let mut seen = Vec::new();
    await_output(&outputs, &mut seen, |r| r.value == Event::Completed(rounds));
    server_stop.stop();
    client_stop.stop();
    let (server_result, server) = server.join().unwrap();
    let (client_result, client) = client.join().unwrap();
    assert_eq!(server_result, RunStop::Stopped);
    assert_eq!(client_result, RunStop::Stopped);
    while let Ok(record) = outputs.try_recv() {
        seen.push(record);
    }

    let actors = [PingPong::Server];
    let mut invariant = RoundsInOrder::new(rounds, vec![CLIENT]);
    let violations = check_invariants(&seen, &actors, Time::ZERO, &mut [&mut invariant]);
    assert!(violations.is_empty(), "{violations:?}");

    let server_tcp = server.transport().stats();
    let client_tcp = client.transport().stats();
    assert!(client_tcp.frames_sent >= rounds, "{client_tcp:?}");
    assert!(server_tcp.frames_received >= rounds, "{server_tcp:?}");
    assert!(client_tcp.frames_received >= rounds, "{client_tcp:?}");
    // One connection carries both directions: the lower id (the server) dialed it.
    assert_eq!(server_tcp.outbound_connects, 1, "{server_tcp:?}");
    assert_eq!(client_tcp.outbound_connects, 0, "{client_tcp:?}");
    assert_eq!(client_tcp.inbound_handshakes, 1, "{client_tcp:?}");
    assert_eq!(server_tcp.inbound_accepted, 0, "{server_tcp:?}");
    assert_eq!(server_tcp.connections_failed, 0, "{server_tcp:?}");
    assert_eq!(
        client_tcp.inbound_rejected + client_tcp.connections_failed,
        0
    );
    assert_eq!(server.stats().messages_undecodable, 0);
    assert_eq!(
        server.stats().node.messages_received,
        server_tcp.frames_received
    );
}

#[test]
fn frames_keep_their_order_and_content_and_self_sends_arrive() {
    let mut transports = mesh(2, &config());
    let mut b = transports.pop().unwrap();
    let mut a = transports.pop().unwrap();
    let frames: Vec<Vec<u8>> = (0..200u32)
        .map(|i| match i {
            0 => Vec::new(),
            7 => vec![0xab; 1 << 20],
            _ => i.to_be_bytes().repeat(i as usize % 13 + 1),
        })
        .collect();
    for frame in &frames {
        a.send(NodeId(1), frame).unwrap();
    }
    a.send(NodeId(0), b"self").unwrap();
    a.flush().unwrap();

    // The transports have no threads: the sender dials, handshakes and writes what its
    // socket did not take while it is called, as a runtime calls it all the time.
    let mut got = Vec::new();
    assert!(wait_until(TEST_LIMIT, || {
        a.wait(Duration::from_millis(1)).unwrap();
        b.wait(Duration::from_millis(10)).unwrap();
        b.poll(64, &mut |from, bytes| got.push((from, bytes.to_vec())))
            .unwrap();
        got.len() >= frames.len()
    }));
    let expected: Vec<(NodeId, Vec<u8>)> = frames.iter().map(|f| (NodeId(0), f.clone())).collect();
    assert_eq!(got, expected);

    let mut mine = Vec::new();
    a.poll(8, &mut |from, bytes| mine.push((from, bytes.to_vec())))
        .unwrap();
    assert_eq!(mine, vec![(NodeId(0), b"self".to_vec())]);
    assert_eq!(b.stats().frames_received, frames.len() as u64);
    assert_eq!(b.monitor().connected_peers(), [NodeId(0)].into());
    assert_eq!(a.monitor().connected_peers(), [NodeId(1)].into());
    assert_eq!(
        (a.stats().outbound_connects, b.stats().inbound_handshakes),
        (1, 1)
    );
}

#[test]
fn a_peer_that_exits_with_frames_unread_is_a_reset_not_a_failure() {
    let mut transports = mesh(2, &config());
    let mut b = transports.pop().unwrap();
    let mut a = transports.pop().unwrap();
    // Connect, and let a frame through so both ends are established.
    a.send(NodeId(1), b"hello").unwrap();
    let mut got = 0;
    assert!(wait_until(TEST_LIMIT, || {
        a.wait(Duration::from_millis(1)).unwrap();
        b.wait(Duration::from_millis(5)).unwrap();
        b.poll(8, &mut |_, _| got += 1).unwrap();
        got == 1
    }));
    // Frames b never reads: whole in its socket's buffer when it goes away, which makes
    // its kernel answer with a reset.
    for i in 0..10u32 {
        a.send(NodeId(1), &i.to_be_bytes().repeat(25)).unwrap();
    }
    assert!(wait_until(TEST_LIMIT, || {
        a.wait(Duration::from_millis(1)).unwrap();
        a.stats().frames_sent == 11
    }));
    thread::sleep(Duration::from_millis(20));
    b.shutdown();
    assert!(wait_until(TEST_LIMIT, || {
        a.wait(Duration::from_millis(5)).unwrap();
        // Writing makes the reset show on a connection that only reads.
        let _ = a.send(NodeId(1), b"more");
        let stats = a.stats();
        stats.connections_reset + stats.connections_failed + stats.connections_closed > 0
    }));
    let stats = a.stats();
    assert_eq!(
        (
            stats.connections_reset,
            stats.connections_failed,
            stats.frames_lost
        ),
        (1, 0, 0),
        "{stats:?}"
    );
}

#[test]
fn sends_that_cannot_be_queued_are_refused_and_counted() {
    let config = TcpConfig {
        send_queue_frames_max: 4,
        frame_bytes_max: 1024,
        log_errors: false,
        ..config()
    };
    let mut transport = TcpTransport::bind(NodeId(0), loopback(), config.clone()).unwrap();
    transport.add_peer(NodeId(1), nowhere()).unwrap();
    assert!(matches!(
        transport.add_peer(NodeId(1), nowhere()),
        Err(TransportError::PeerExists(NodeId(1)))
    ));
    assert!(matches!(
        transport.add_peer(NodeId(0), nowhere()),
        Err(TransportError::OwnId(NodeId(0)))
    ));

    // Nobody listens at the peer's address: the queue fills and then drops.
    for _ in 0..4 {
        transport.send(NodeId(1), b"queued").unwrap();
    }
    for _ in 0..6 {
        assert_eq!(
            transport.send(NodeId(1), b"dropped"),
            Err(SendError::QueueFull(NodeId(1)))
        );
    }
    assert_eq!(transport.stats().frames_dropped_queue_full, 6);
    assert_eq!(
        transport.send(NodeId(5), b"x"),
        Err(SendError::UnknownPeer(NodeId(5)))
    );
    assert_eq!(
        transport.send(NodeId(1), &[0; 1025]),
        Err(SendError::FrameTooLarge {
            frame_bytes: 1025,
            frame_bytes_max: 1024
        })
    );
    let monitor = transport.monitor();
    assert!(wait_until(TEST_LIMIT, || {
        assert!(!transport.wait(Duration::from_millis(10)).unwrap());
        monitor.stats().outbound_connect_failures >= 2
    }));
    assert!(monitor.connected_peers().is_empty());
    let errors = monitor.recent_errors();
    // Redials with backoff are counted, but reported once.
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("cannot connect to n1"), "{errors:?}");

    // Shutting down is prompt even while a dial is backing off.
    let begun = Instant::now();
    drop(transport);
    assert!(begun.elapsed() < Duration::from_secs(5));

    let bad = TcpConfig {
        send_queue_frames_max: 0,
        ..config
    };
    assert!(matches!(
        TcpTransport::bind(NodeId(0), loopback(), bad),
        Err(TransportError::Config(_))
    ));
}

/// A raw socket that sent a hello as `from` (the transport answers it while it is called).
fn raw_hello(addr: SocketAddr, from: NodeId, to: NodeId) -> TcpStream {
    let mut stream = raw(addr);
    stream
        .write_all(
            &Hello {
                from,
                to,
                authenticated: false,
            }
            .encode(),
        )
        .unwrap();
    stream
}

/// A raw socket that completed a handshake as `from`.
fn raw_peer(addr: SocketAddr, from: NodeId, to: NodeId) -> TcpStream {
    let mut stream = raw_hello(addr, from, to);
    let mut ack = [0u8; ACK_BYTES];
    stream.read_exact(&mut ack).unwrap();
    assert_eq!(
        Ack::decode(&ack).unwrap(),
        Ack {
            from: to,
            authenticated: false
        }
    );
    stream
}

/// Asserts that the other side closes `stream` (without sending anything) within the read
/// timeout.
fn assert_closed(mut stream: TcpStream, what: &str) {
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("{what}: got {n} bytes instead of a close"),
        Err(error)
            if matches!(
                error.kind(),
                ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted | ErrorKind::BrokenPipe
            ) => {}
        Err(error) => panic!("{what}: connection not closed: {error}"),
    }
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

#[test]
fn malformed_connections_are_closed_and_the_node_keeps_serving() {
    let mut transports = mesh(2, &config()).into_iter();
    let (mut server_transport, client_transport) =
        (transports.next().unwrap(), transports.next().unwrap());
    server_transport.add_peer(RAW, nowhere()).unwrap();
    let server_addr = server_transport.local_addr();
    let monitor = server_transport.monitor();

    let (sink, outputs) = mpsc::channel();
    let (server_stop, server) = spawn_node(PingPong::Server, server_transport, sink.clone());
    let (client_stop, client) = spawn_node(
        PingPong::client(SERVER, u64::MAX, Duration::from_millis(200)),
        client_transport,
        sink,
    );
    let mut seen = Vec::new();
    await_output(&outputs, &mut seen, |r| r.value == Event::Completed(5));

    // Garbage instead of a handshake.
    let mut garbage = raw(server_addr);
    garbage.write_all(&[0x5a; 64]).unwrap();
    assert_closed(garbage, "garbage");

    // A handshake from a node that is not in the peer table.
    let mut unknown = raw(server_addr);
    unknown
        .write_all(
            &Hello {
                from: NodeId(99),
                to: SERVER,
                authenticated: false,
            }
            .encode(),
        )
        .unwrap();
    assert_closed(unknown, "unknown node id");

    // A handshake meant for another node.
    let mut misdirected = raw(server_addr);
    misdirected
        .write_all(
            &Hello {
                from: RAW,
                to: NodeId(5),
                authenticated: false,
            }
            .encode(),
        )
        .unwrap();
    assert_closed(misdirected, "wrong destination");

    // A handshake of another wire version.
    let mut hello = Hello {
        from: RAW,
        to: SERVER,
        authenticated: false,
    }
    .encode();
    hello[4..6].copy_from_slice(&(WIRE_VERSION + 7).to_be_bytes());
    let mut versioned = raw(server_addr);
    versioned.write_all(&hello).unwrap();
    assert_closed(versioned, "bad version");

    // A frame announcing 4 GiB.
    let mut oversized = raw_peer(server_addr, RAW, SERVER);
    oversized.write_all(&u32::MAX.to_be_bytes()).unwrap();
    assert_closed(oversized, "oversized frame");

    // A frame cut short by the end of the connection.
    let mut truncated = raw_peer(server_addr, RAW, SERVER);
    truncated.write_all(&100u32.to_be_bytes()).unwrap();
    truncated.write_all(&[1; 10]).unwrap();
    truncated.shutdown(Shutdown::Write).unwrap();
    assert_closed(truncated, "truncated frame");

    // A well-framed message that does not decode is dropped, and the connection stays
    // open: the next message on it is served.
    let mut sloppy = raw_peer(server_addr, RAW, SERVER);
    sloppy.write_all(&frame(&[0xff; 9])).unwrap();
    let mut ping = Vec::new();
    encode_message(&Msg::Ping(777_777), &mut ping).unwrap();
    sloppy.write_all(&frame(&ping)).unwrap();
    await_output(&outputs, &mut seen, |r| {
        r.node == SERVER && r.value == Event::Served(777_777)
    });

    // Meanwhile, and from now on, the good client is served.
    let before = completed(&seen);
    await_output(&outputs, &mut seen, |r| {
        r.value == Event::Completed(before + 20)
    });

    assert!(
        wait_until(TEST_LIMIT, || {
            let stats = monitor.stats();
            stats.inbound_rejected >= 4 && stats.connections_failed >= 2
        }),
        "{:?}",
        monitor.stats()
    );
    let stats = monitor.stats();
    assert_eq!(stats.inbound_rejected, 4, "{stats:?}");
    assert_eq!(stats.connections_failed, 2, "{stats:?}");
    assert_eq!(stats.frames_oversized, 1, "{stats:?}");
    assert_eq!(stats.frames_truncated, 1, "{stats:?}");
    let errors = monitor.recent_errors().join("\n");
    for expected in [
        "bad magic",
        "unknown node n99",
        "addressed to n5",
        &format!("wire version {}", WIRE_VERSION + 7),
        "exceeds the maximum",
        "got 14 of 104 bytes",
    ] {
        assert!(errors.contains(expected), "no {expected:?} in:\n{errors}");
    }
    assert!(monitor.connected_peers().contains(&CLIENT));
    drop(sloppy);

    server_stop.stop();
    client_stop.stop();
    let (_, server) = server.join().unwrap();
    let (_, client) = client.join().unwrap();
    assert_eq!(server.stats().messages_undecodable, 1);
    assert_eq!(client.stats().messages_undecodable, 0);
    while let Ok(record) = outputs.try_recv() {
        seen.push(record);
    }
    let mut invariant = RoundsInOrder::new(0, vec![]);
    let violations = check_invariants(
        &seen,
        &[PingPong::Server],
        Time::ZERO,
        &mut [&mut invariant],
    );
    assert!(violations.is_empty(), "{violations:?}");
}

/// Crashes a ping-pong server mid-run and restarts it on the same address; the client's
/// rounds go on, in order, over a new connection. Who dials it depends on the ids: the
/// lower one dials, the other waits.
fn restart_the_server(server_id: NodeId, client_id: NodeId) {
    let server_transport = TcpTransport::bind(server_id, loopback(), config()).unwrap();
    let server_addr = server_transport.local_addr();
    let mut client_transport = TcpTransport::bind(client_id, loopback(), config()).unwrap();
    let client_addr = client_transport.local_addr();
    client_transport.add_peer(server_id, server_addr).unwrap();
    let client_monitor = client_transport.monitor();
    let mut server_transport = server_transport;
    server_transport.add_peer(client_id, client_addr).unwrap();

    let (sink, outputs) = mpsc::channel();
    let (server_stop, server) = spawn_node(PingPong::Server, server_transport, sink.clone());
    let (client_stop, client) = spawn_node(
        PingPong::client(server_id, u64::MAX, Duration::from_millis(50)),
        client_transport,
        sink.clone(),
    );
    let mut seen = Vec::new();
    await_output(&outputs, &mut seen, |r| r.value == Event::Completed(10));

    // Crash the server: its runtime stops and its transport (listener, connections) goes.
    server_stop.stop();
    let (_, old_server) = server.join().unwrap();
    drop(old_server);
    assert!(
        wait_until(TEST_LIMIT, || client_monitor.connected_peers().is_empty()),
        "the client did not notice that the server went"
    );
    thread::sleep(Duration::from_millis(100));
    while let Ok(record) = outputs.try_recv() {
        seen.push(record);
    }
    let before = completed(&seen);

    // Restart it on the same address.
    let mut restarted = TcpTransport::bind(server_id, server_addr, config()).unwrap();
    restarted.add_peer(client_id, client_addr).unwrap();
    let restarted_monitor = restarted.monitor();
    let (server_stop, server) = spawn_node(PingPong::Server, restarted, sink);
    await_output(&outputs, &mut seen, |r| {
        r.value == Event::Completed(before + 10)
    });
    // Before the end of the test ends the connection again.
    let stats = client_monitor.stats();
    let restarted_stats = restarted_monitor.stats();
    server_stop.stop();
    client_stop.stop();
    server.join().unwrap();
    let (_, client) = client.join().unwrap();

    assert_eq!(
        stats.connections_closed + stats.connections_failed + stats.connections_reset,
        1,
        "{stats:?}"
    );
    if client_id < server_id {
        // The client dials: it noticed the end of the connection and redialed, failing
        // while the server was down.
        assert!(stats.outbound_connects >= 2, "{stats:?}");
        assert!(stats.outbound_connect_failures >= 1, "{stats:?}");
        assert_eq!(restarted_stats.inbound_handshakes, 1, "{restarted_stats:?}");
    } else {
        // The server dials: the restarted one dialed the client, which waited.
        assert_eq!(stats.outbound_connects, 0, "{stats:?}");
        assert_eq!(stats.inbound_handshakes, 2, "{stats:?}");
        assert_eq!(restarted_stats.outbound_connects, 1, "{restarted_stats:?}");
    }
    assert!(client.stats().node.timers_fired >= 1);
    let mut invariant = RoundsInOrder::new(before + 10, vec![client_id]);
    let violations = check_invariants(
        &seen,
        &[PingPong::Server],
        Time::ZERO,
        &mut [&mut invariant],
    );
    assert!(violations.is_empty(), "{violations:?}");
}

#[test]
fn a_restarted_server_redials_its_client() {
    restart_the_server(NodeId(0), NodeId(1));
}

#[test]
fn a_client_redials_a_restarted_server() {
    restart_the_server(NodeId(1), NodeId(0));
}

#[test]
fn a_newer_connection_replaces_the_older_and_no_complete_frame_is_lost() {
    let config = TcpConfig {
        log_errors: false,
        ..config()
    };
    let mut transport = TcpTransport::bind(SERVER, loopback(), config).unwrap();
    transport.add_peer(RAW, nowhere()).unwrap();
    let addr = transport.local_addr();
    let monitor = transport.monitor();

    // The first connection brings two frames and the start of a third.
    let mut first = raw_hello(addr, RAW, SERVER);
    let mut ack = [0u8; ACK_BYTES];
    assert!(wait_until(TEST_LIMIT, || {
        transport.wait(Duration::from_millis(1)).unwrap();
        monitor.connected_peers().contains(&RAW)
    }));
    first.read_exact(&mut ack).unwrap();
    let mut bytes = [frame(b"one"), frame(b"two")].concat();
    bytes.extend_from_slice(&frame(b"cut short")[..6]);
    first.write_all(&bytes).unwrap();
    // Read, not handed out yet.
    assert!(wait_until(TEST_LIMIT, || transport
        .wait(Duration::from_millis(1))
        .unwrap()));

    // The peer connects again (say, it restarted): the new connection takes over.
    let mut second = raw_hello(addr, RAW, SERVER);
    assert!(wait_until(TEST_LIMIT, || {
        transport.wait(Duration::from_millis(1)).unwrap();
        monitor.stats().inbound_handshakes == 2
    }));
    second.read_exact(&mut ack).unwrap();
    assert_eq!(
        Ack::decode(&ack).unwrap(),
        Ack {
            from: SERVER,
            authenticated: false
        }
    );
    second.write_all(&frame(b"three")).unwrap();
    assert_closed(first, "replaced connection");

    let mut got = Vec::new();
    assert!(wait_until(TEST_LIMIT, || {
        transport.wait(Duration::from_millis(1)).unwrap();
        transport
            .poll(8, &mut |from, bytes| got.push((from, bytes.to_vec())))
            .unwrap();
        got.len() >= 3
    }));
    let expected: Vec<(NodeId, Vec<u8>)> = [&b"one"[..], b"two", b"three"]
        .iter()
        .map(|payload| (RAW, payload.to_vec()))
        .collect();
    assert_eq!(got, expected);
    let stats = monitor.stats();
    assert_eq!(stats.connections_replaced, 1, "{stats:?}");
    assert_eq!(stats.frames_received, 3, "{stats:?}");
    assert_eq!(stats.frames_truncated, 1, "{stats:?}");

    // Frames go back on the newer connection.
    transport.send(RAW, b"back").unwrap();
    transport.flush().unwrap();
    let mut back = [0u8; 8];
    second.read_exact(&mut back).unwrap();
    assert_eq!(back.to_vec(), frame(b"back"));
}

#[test]
fn a_peer_table_configures_listening_and_dialing() {
    // Reserve two ports, then hand them to the transports through a peer table.
    let ports: Vec<SocketAddr> = (0..2)
        .map(|_| TcpListener::bind(loopback()).unwrap().local_addr().unwrap())
        .collect();
    let table: BTreeMap<NodeId, SocketAddr> = [(NodeId(0), ports[0]), (NodeId(1), ports[1])].into();
    let mut a = TcpTransport::from_peer_table(NodeId(0), &table, config()).unwrap();
    let mut b = TcpTransport::from_peer_table(NodeId(1), &table, config()).unwrap();
    assert_eq!(a.local_addr(), ports[0]);
    assert_eq!(a.peer_addr(NodeId(1)), Some(ports[1]));
    b.send(NodeId(0), b"hi").unwrap();
    b.flush().unwrap();
    let mut got = Vec::new();
    assert!(wait_until(TEST_LIMIT, || {
        b.wait(Duration::from_millis(1)).unwrap();
        a.wait(Duration::from_millis(10)).unwrap();
        a.poll(8, &mut |from, bytes| got.push((from, bytes.to_vec())))
            .unwrap();
        !got.is_empty()
    }));
    assert_eq!(got, vec![(NodeId(1), b"hi".to_vec())]);
    let missing: BTreeMap<NodeId, SocketAddr> = [(NodeId(1), ports[1])].into();
    assert!(matches!(
        TcpTransport::from_peer_table(NodeId(0), &missing, config()),
        Err(TransportError::Config(_))
    ));
}

/// Frames tagged with their index, to check order and content at the other end.
fn tagged(index: u32, bytes: usize) -> Vec<u8> {
    let mut frame = index.to_be_bytes().to_vec();
    frame.resize(bytes, (index % 251) as u8);
    frame
}

#[test]
fn a_slow_reader_gets_every_frame_in_order_while_the_rest_waits_queued() {
    let frames = 64u32;
    let frame_bytes = 512 << 10;
    let config = TcpConfig {
        send_queue_frames_max: frames as usize,
        log_errors: false,
        ..config()
    };
    let mut transports = mesh(2, &config);
    let mut b = transports.pop().unwrap();
    let mut a = transports.pop().unwrap();
    // Connect first, so that the flush below meets an established connection.
    a.send(NodeId(1), b"hello").unwrap();
    a.flush().unwrap();
    let mut got: Vec<Vec<u8>> = Vec::new();
    assert!(wait_until(TEST_LIMIT, || {
        a.wait(Duration::from_millis(1)).unwrap();
        b.wait(Duration::from_millis(1)).unwrap();
        b.poll(8, &mut |_, bytes| got.push(bytes.to_vec())).unwrap();
        !got.is_empty()
    }));
    assert_eq!(got, vec![b"hello".to_vec()]);
    got.clear();

    // 32 MiB at once: more than the two socket buffers of a loopback connection hold while
    // the reader reads nothing (by default Linux grows a send buffer to 4 MiB at most, and
    // a receive buffer only as its reader reads). The queue's bound refuses the frame
    // after them.
    for i in 0..frames {
        a.send(NodeId(1), &tagged(i, frame_bytes)).unwrap();
    }
    assert_eq!(
        a.send(NodeId(1), b"one too many"),
        Err(SendError::QueueFull(NodeId(1)))
    );
    a.flush().unwrap();
    let sent_by_flush = a.stats().frames_sent - 1;
    assert!(
        sent_by_flush < u64::from(frames),
        "the socket took all {sent_by_flush} frames at once"
    );

    // The reader takes two frames per call; the writer goes on as the socket drains.
    assert!(wait_until(TEST_LIMIT, || {
        a.wait(Duration::ZERO).unwrap();
        b.wait(Duration::from_millis(1)).unwrap();
        b.poll(2, &mut |_, bytes| got.push(bytes.to_vec())).unwrap();
        got.len() >= frames as usize
    }));
    assert_eq!(got.len(), frames as usize);
    for (i, frame) in got.iter().enumerate() {
        assert!(*frame == tagged(i as u32, frame_bytes), "frame {i} differs");
    }
    let stats = a.stats();
    assert_eq!(stats.frames_sent, u64::from(frames) + 1, "{stats:?}");
    assert_eq!(stats.frames_dropped_queue_full, 1, "{stats:?}");
    assert_eq!(stats.frames_lost + stats.connections_failed, 0, "{stats:?}");
    // The queue has room again.
    a.send(NodeId(1), b"room again").unwrap();
}

#[test]
fn a_peer_that_takes_nothing_is_disconnected_after_the_write_timeout() {
    // A raw peer that answers the handshake and then never reads.
    let listener = TcpListener::bind(loopback()).unwrap();
    let raw_addr = listener.local_addr().unwrap();
    let config = TcpConfig {
        write_timeout: Duration::from_millis(300),
        send_queue_frames_max: 16,
        log_errors: false,
        ..config()
    };
    let mut transport = TcpTransport::bind(SERVER, loopback(), config).unwrap();
    transport.add_peer(RAW, raw_addr).unwrap();
    let (mut stream, _) = listener.accept().unwrap();
    // The transport writes its hello only while it is called.
    stream
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let mut hello = [0u8; 14];
    let mut hello_got = 0;
    assert!(wait_until(TEST_LIMIT, || {
        transport.wait(Duration::from_millis(1)).unwrap();
        if let Ok(count) = stream.read(&mut hello[hello_got..]) {
            hello_got += count;
        }
        hello_got == hello.len()
    }));
    assert_eq!(
        Hello::decode(&hello).unwrap(),
        Hello {
            from: SERVER,
            to: RAW,
            authenticated: false,
        }
    );
    stream
        .write_all(
            &Ack {
                from: RAW,
                authenticated: false,
            }
            .encode(),
        )
        .unwrap();
    let monitor = transport.monitor();
    assert!(wait_until(TEST_LIMIT, || {
        transport.wait(Duration::from_millis(1)).unwrap();
        monitor.connected_peers().contains(&RAW)
    }));

    // Fill the socket buffers, then wait for the timeout to give up on the connection.
    let frame = vec![0u8; 1 << 20];
    assert!(wait_until(TEST_LIMIT, || {
        let _ = transport.send(RAW, &frame);
        transport.flush().unwrap();
        transport.wait(Duration::from_millis(5)).unwrap();
        monitor.stats().connections_failed >= 1
    }));
    assert!(monitor.connected_peers().is_empty());
    let errors = monitor.recent_errors().join("\n");
    assert!(errors.contains("took nothing"), "{errors}");
    drop(stream);
}

#[test]
fn many_peers_are_served_by_one_node_on_one_thread() {
    let clients = 40u32;
    let listeners: Vec<TcpListener> = (0..=clients)
        .map(|_| TcpListener::bind(loopback()).unwrap())
        .collect();
    let table: BTreeMap<NodeId, SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, listener)| (NodeId(i as u32), listener.local_addr().unwrap()))
        .collect();
    let quiet_config = TcpConfig {
        log_errors: false,
        ..config()
    };
    let mut listeners = listeners.into_iter();
    // The server knows every client; each client knows only the server.
    let mut server = TcpTransport::with_listener(
        SERVER,
        listeners.next().unwrap(),
        &table,
        quiet_config.clone(),
    )
    .unwrap();
    let mut nodes: Vec<TcpTransport> = listeners
        .enumerate()
        .map(|(i, listener)| {
            let me = NodeId(i as u32 + 1);
            let own: BTreeMap<NodeId, SocketAddr> =
                [(SERVER, table[&SERVER]), (me, table[&me])].into();
            TcpTransport::with_listener(me, listener, &own, quiet_config.clone()).unwrap()
        })
        .collect();
    for node in &mut nodes {
        let me = node.local_id();
        node.send(SERVER, &me.0.to_be_bytes()).unwrap();
        node.flush().unwrap();
    }

    // One thread drives everyone: the server echoes every frame to its sender.
    let mut answered: BTreeMap<NodeId, Vec<u8>> = BTreeMap::new();
    let mut requests = Vec::new();
    assert!(wait_until(TEST_LIMIT, || {
        server.wait(Duration::ZERO).unwrap();
        server
            .poll(16, &mut |from, bytes| requests.push((from, bytes.to_vec())))
            .unwrap();
        for (from, bytes) in requests.drain(..) {
            server.send(from, &bytes).unwrap();
        }
        server.flush().unwrap();
        for node in &mut nodes {
            node.wait(Duration::ZERO).unwrap();
            let me = node.local_id();
            node.poll(4, &mut |from, bytes| {
                assert_eq!(from, SERVER);
                answered.insert(me, bytes.to_vec());
            })
            .unwrap();
        }
        answered.len() == clients as usize
    }));
    for (node, answer) in &answered {
        assert_eq!(answer, &node.0.to_be_bytes());
    }
    let everyone: std::collections::BTreeSet<NodeId> = (1..=clients).map(NodeId).collect();
    assert_eq!(server.monitor().connected_peers(), everyone);
    let stats = server.stats();
    assert_eq!(stats.frames_received, u64::from(clients), "{stats:?}");
    assert_eq!(stats.frames_sent, u64::from(clients), "{stats:?}");
    assert_eq!(
        stats.inbound_rejected + stats.connections_failed,
        0,
        "{stats:?}"
    );
}

/// `rehearsal bench tcp` through its library function, for when the command line is not at
/// hand: `cargo test --release -p rehearsal-hardware --test tcp -- --ignored --nocapture
/// bench`. `BENCH_TCP_CLIENTS` lists the client counts (default `1,8`); one JSON report
/// per count is printed.
#[test]
#[ignore = "a benchmark: run it in release mode"]
fn bench_unreplicated_against_a_std_net_echo() {
    use rehearsal_hardware::bench_tcp::{self, TcpBenchConfig};
    use rehearsal_protocols::unreplicated;

    let counts = std::env::var("BENCH_TCP_CLIENTS").unwrap_or_else(|_| "1,8".into());
    for clients in counts.split(',').map(|n| n.trim().parse::<u32>().unwrap()) {
        let proto = unreplicated::Config {
            clients,
            requests_per_client: u64::MAX,
            retransmit_after: Duration::from_millis(500),
        };
        let mut sample = Vec::new();
        encode_message(
            &unreplicated::Msg::Request {
                request: 100_000,
                operand: 500,
            },
            &mut sample,
        )
        .unwrap();
        let config = TcpBenchConfig {
            clients,
            message_bytes: sample.len(),
            ..TcpBenchConfig::default()
        };
        let report = bench_tcp::run(
            "unreplicated",
            unreplicated::actors(&proto),
            |o| matches!(o, unreplicated::Output::Completed { .. }),
            &config,
        )
        .unwrap();
        println!("{}", serde_json::to_string(&report).unwrap());
    }
}
