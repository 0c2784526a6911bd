//! The DPDK transport in one process, over `rte_eth_from_rings` port pairs: a real DPDK
//! link whose two ends are two endpoints of this process.
//!
//! The EAL can be initialised once per process, so every test here shares one
//! initialisation ([`dpdk`]), and the tests run one at a time ([`serial`]) so that
//! their polling threads do not compete for the machine's cores.
#![cfg(feature = "dpdk")]

use rehearsal_hardware::dpdk::{
    bench_ring_pair, Dpdk, DpdkBenchError, DpdkConfig, DpdkError, DpdkTransport, EalConfig,
    FrameHeader, MacAddress, ETHERTYPE, FRAME_HEADER_BYTES,
};
use rehearsal_hardware::{
    check_invariants, NodeRuntime, OutputRecord, RunStop, RuntimeConfig, SendError, Transport,
};
use rehearsal_protocols::unreplicated::{self, Node, Output, RequestsAnswered};
use rehearsal_sim_core::{NodeId, Time};
use std::sync::{mpsc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

const ZERO: NodeId = NodeId(0);
const ONE: NodeId = NodeId(1);
const TEST_LIMIT: Duration = Duration::from_secs(60);

fn dpdk() -> &'static Dpdk {
    Dpdk::init(&EalConfig::default()).expect("DPDK's EAL initialises without hugepages or NICs")
}

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Node 0 and node 1 at the two ends of a new ring pair.
fn pair_with(config: impl Fn(NodeId) -> DpdkConfig) -> (DpdkTransport, DpdkTransport) {
    let (a, b) = dpdk().ring_pair().unwrap();
    (
        DpdkTransport::new(a, ZERO, config(ONE)).unwrap(),
        DpdkTransport::new(b, ONE, config(ZERO)).unwrap(),
    )
}

fn pair() -> (DpdkTransport, DpdkTransport) {
    pair_with(|peer| DpdkConfig::point_to_point([peer]))
}

/// What `endpoint` receives, as (sender, bytes): `expected` messages, then whatever else
/// arrives within a short while (so that a surplus shows up too).
fn receive(endpoint: &mut DpdkTransport, expected: usize) -> Vec<(NodeId, Vec<u8>)> {
    let mut got = Vec::new();
    let mut poll_until = |got: &mut Vec<_>, deadline: Instant, stop_at: usize| {
        while got.len() < stop_at && Instant::now() < deadline {
            endpoint.wait(Duration::from_millis(5)).unwrap();
            endpoint
                .poll(64, &mut |from, bytes| got.push((from, bytes.to_vec())))
                .unwrap();
        }
    };
    poll_until(&mut got, Instant::now() + TEST_LIMIT, expected);
    poll_until(
        &mut got,
        Instant::now() + Duration::from_millis(50),
        usize::MAX,
    );
    got
}

fn quiet() -> RuntimeConfig {
    RuntimeConfig {
        log_errors: false,
        ..RuntimeConfig::default()
    }
}

#[test]
fn unreplicated_runs_end_to_end_over_a_ring_pair() {
    let _serial = serial();
    let config = unreplicated::Config {
        clients: 1,
        requests_per_client: 500,
        retransmit_after: Duration::from_millis(200),
    };
    let (server_transport, client_transport) = pair();
    let mut actors = unreplicated::actors(&config).into_iter();
    let (server_actor, client_actor) = (actors.next().unwrap(), actors.next().unwrap());

    // One sink for both nodes: it sees their outputs in an order consistent with
    // causality, which is what the invariant needs.
    let (sink, outputs) = mpsc::channel::<OutputRecord<Output>>();
    let server_sink = sink.clone();
    let mut server = NodeRuntime::new(server_actor, server_transport, quiet())
        .with_output_sink(move |record| drop(server_sink.send(record)));
    let mut client = NodeRuntime::new(client_actor, client_transport, quiet())
        .with_output_sink(move |record| drop(sink.send(record)));
    let server_stop = server.stop_handle();
    let server = thread::spawn(move || {
        let stop = server.run_for(TEST_LIMIT).unwrap();
        (stop, server)
    });
    let requests = config.requests_per_client;
    let client = thread::spawn(move || {
        let stop = client
            .run_until(TEST_LIMIT, |node| match node.actor() {
                Node::Client(client) => client.completed() == requests,
                Node::Server(_) => unreachable!(),
            })
            .unwrap();
        (stop, client)
    });
    let (client_stop, client) = client.join().unwrap();
    server_stop.stop();
    let (server_stop, server) = server.join().unwrap();
    assert_eq!(client_stop, RunStop::Done);
    assert_eq!(server_stop, RunStop::Stopped);

    let seen: Vec<_> = outputs.try_iter().collect();
    let completed = seen
        .iter()
        .filter(|r| matches!(r.value, Output::Completed { .. }))
        .count();
    assert_eq!(completed as u64, requests);
    let actors = unreplicated::actors(&config);
    let mut invariant = RequestsAnswered::new(&config);
    let violations = check_invariants(&seen, &actors, Time::ZERO, &mut [&mut invariant]);
    assert!(violations.is_empty(), "{violations:?}");

    let server_dpdk = server.transport().stats();
    let client_dpdk = client.transport().stats();
    assert!(client_dpdk.frames_sent >= requests, "{client_dpdk:?}");
    assert!(server_dpdk.messages_received >= requests, "{server_dpdk:?}");
    assert_eq!(server_dpdk.frames_dropped(), 0, "{server_dpdk:?}");
    assert_eq!(client_dpdk.frames_dropped(), 0, "{client_dpdk:?}");
    assert_eq!(server.stats().messages_undecodable, 0);
    assert_eq!(client.stats().messages_undecodable, 0);
}

#[test]
fn messages_of_every_size_arrive_whole_and_in_order() {
    let _serial = serial();
    let (mut zero, mut one) = pair();
    let fragment = DpdkConfig::default().frame_bytes_max - FRAME_HEADER_BYTES;
    let sizes = [
        0,
        1,
        fragment - 1,
        fragment,
        fragment + 1,
        3 * fragment,
        100_000,
        DpdkConfig::default().message_bytes_max,
        17,
    ];
    let messages: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &size)| (0..size).map(|j| (i * 31 + j * 7) as u8).collect())
        .collect();
    for message in &messages {
        zero.send(ONE, message).unwrap();
        // The largest message fills the whole transmit queue: send each one at once.
        zero.flush().unwrap();
        let got = receive(&mut one, 1);
        assert_eq!(got.len(), 1, "a message of {} bytes", message.len());
        assert_eq!(got[0], (ZERO, message.clone()));
    }

    // Back the other way, and to itself.
    one.send(ZERO, b"back").unwrap();
    one.send(ONE, b"self").unwrap();
    one.flush().unwrap();
    assert_eq!(receive(&mut zero, 1), vec![(ONE, b"back".to_vec())]);
    assert_eq!(receive(&mut one, 1), vec![(ONE, b"self".to_vec())]);

    // What cannot be sent is refused, counted, and nothing leaves.
    let too_large = vec![0u8; DpdkConfig::default().message_bytes_max + 1];
    assert_eq!(
        zero.send(ONE, &too_large),
        Err(SendError::FrameTooLarge {
            frame_bytes: too_large.len(),
            frame_bytes_max: DpdkConfig::default().message_bytes_max,
        })
    );
    assert_eq!(
        zero.send(NodeId(9), b"x"),
        Err(SendError::UnknownPeer(NodeId(9)))
    );
    zero.flush().unwrap();
    assert!(receive(&mut one, 0).is_empty());
    let stats = zero.stats();
    assert_eq!(stats.sends_refused_too_large, 1);
    assert_eq!(stats.sends_refused_unknown_peer, 1);
    assert_eq!(stats.messages_sent, messages.len() as u64);
    assert_eq!(one.stats().messages_received, messages.len() as u64 + 1);
    assert_eq!(one.stats().frames_dropped(), 0);
    assert_eq!(one.stats().fragments_discarded, 0);
}

#[test]
fn malformed_frames_are_counted_and_dropped() {
    let _serial = serial();
    let (mut zero, mut one) = pair();
    let mac = zero.mac();
    let good = |dst: NodeId, src: NodeId, payload: &[u8]| {
        let header = FrameHeader {
            src,
            dst,
            message_id: 77,
            message_bytes: payload.len() as u32,
            fragment_offset: 0,
            fragment_bytes: payload.len() as u16,
        };
        let mut frame = header.encode(MacAddress::BROADCAST, mac).to_vec();
        frame.extend_from_slice(payload);
        frame
    };
    let valid = good(ONE, ZERO, b"valid");

    let mut wrong_ethertype = valid.clone();
    wrong_ethertype[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let too_short_for_ethernet = valid[..10].to_vec();
    let short_header = valid[..FRAME_HEADER_BYTES - 4].to_vec();
    let mut bad_length = valid.clone();
    bad_length.truncate(FRAME_HEADER_BYTES + 2); // announces 5 bytes, carries 2
    let mut past_message_end = valid.clone();
    past_message_end[30..34].copy_from_slice(&3u32.to_be_bytes()); // message of 3 bytes
    let mut other_version = valid.clone();
    other_version[14] = 9;
    let wrong_destination = good(NodeId(5), ZERO, b"not for one");
    let unknown_source = good(ONE, NodeId(6), b"from a stranger");

    for frame in [
        &wrong_ethertype,
        &too_short_for_ethernet,
        &short_header,
        &bad_length,
        &past_message_end,
        &other_version,
        &wrong_destination,
        &unknown_source,
        &valid,
    ] {
        zero.send_raw_frame(frame).unwrap();
    }
    // And a message sent the ordinary way still arrives after all of them.
    zero.send(ONE, b"after").unwrap();
    zero.flush().unwrap();
    assert_eq!(zero.stats().frames_sent, 10);

    let got = receive(&mut one, 2);
    assert_eq!(
        got,
        vec![(ZERO, b"valid".to_vec()), (ZERO, b"after".to_vec())]
    );
    let stats = one.stats();
    assert_eq!(stats.frames_received, 10);
    assert_eq!(stats.frames_wrong_ethertype, 1, "{stats:?}");
    assert_eq!(stats.frames_short_header, 2, "{stats:?}");
    assert_eq!(stats.frames_bad_length, 2, "{stats:?}");
    assert_eq!(stats.frames_unsupported_version, 1, "{stats:?}");
    assert_eq!(stats.frames_wrong_destination, 1, "{stats:?}");
    assert_eq!(stats.frames_unknown_source, 1, "{stats:?}");
    assert_eq!(stats.frames_dropped(), 8);
    assert_eq!(stats.messages_received, 2);
}

#[test]
fn a_lost_fragment_abandons_only_its_message() {
    let _serial = serial();
    let (mut zero, mut one) = pair();
    let mac = zero.mac();
    let fragment = |message_id: u32, message: &[u8], offset: usize, len: usize| {
        let header = FrameHeader {
            src: ZERO,
            dst: ONE,
            message_id,
            message_bytes: message.len() as u32,
            fragment_offset: offset as u32,
            fragment_bytes: len as u16,
        };
        let mut frame = header.encode(MacAddress::BROADCAST, mac).to_vec();
        frame.extend_from_slice(&message[offset..offset + len]);
        frame
    };
    let first: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
    let second: Vec<u8> = (0..300u32).map(|i| (i * 3) as u8).collect();
    // The first message loses its middle fragment; the second arrives whole.
    for frame in [
        fragment(1, &first, 0, 100),
        fragment(1, &first, 200, 100),
        fragment(2, &second, 0, 100),
        fragment(2, &second, 100, 100),
        fragment(2, &second, 200, 100),
    ] {
        zero.send_raw_frame(&frame).unwrap();
    }
    // A message cut short by the start of the next one is abandoned too.
    zero.send_raw_frame(&fragment(3, &first, 0, 100)).unwrap();
    zero.send(ONE, b"next").unwrap();
    zero.flush().unwrap();

    let got = receive(&mut one, 2);
    assert_eq!(got, vec![(ZERO, second), (ZERO, b"next".to_vec())]);
    let stats = one.stats();
    // Message 1: the two fragments that came; message 3: its one fragment.
    assert_eq!(stats.fragments_discarded, 3, "{stats:?}");
    assert_eq!(stats.frames_dropped(), 0, "{stats:?}");
}

#[test]
fn a_receiver_that_does_not_poll_makes_sends_refused_not_blocked() {
    let _serial = serial();
    let (mut zero, mut one) = pair_with(|peer| DpdkConfig {
        tx_queue_frames_max: 64,
        message_bytes_max: 16 * 1024,
        ..DpdkConfig::point_to_point([peer])
    });
    // Fill the ring towards `one` and then the transmit queue, without `one` polling.
    let mut accepted = 0u32;
    let mut refused = 0;
    for i in 0..5000u32 {
        match zero.send(ONE, &i.to_be_bytes()) {
            Ok(()) => accepted += 1,
            Err(SendError::QueueFull(to)) => {
                assert_eq!(to, ONE);
                refused += 1;
            }
            Err(other) => panic!("unexpected {other}"),
        }
        zero.flush().unwrap();
    }
    assert!(refused > 0);
    assert_eq!(zero.tx_queue_frames(), 64);
    assert_eq!(zero.stats().sends_refused_queue_full, refused);
    // A message whose frames do not all fit is refused whole.
    assert_eq!(
        zero.send(ONE, &vec![1u8; 4000]),
        Err(SendError::QueueFull(ONE))
    );

    // Once `one` drains the ring, the queued frames follow, in order, with no gap.
    let mut got = Vec::new();
    let deadline = Instant::now() + TEST_LIMIT;
    while got.len() < accepted as usize && Instant::now() < deadline {
        one.poll(256, &mut |_, bytes| {
            got.push(u32::from_be_bytes(bytes.try_into().unwrap()))
        })
        .unwrap();
        zero.flush().unwrap();
    }
    let expected: Vec<u32> = (0..accepted).collect();
    assert_eq!(got, expected);
    assert_eq!(zero.tx_queue_frames(), 0);
}

#[test]
fn the_eal_is_initialised_once_per_process() {
    let _serial = serial();
    let dpdk = dpdk();
    assert!(std::ptr::eq(dpdk, Dpdk::get().unwrap()));
    assert!(std::ptr::eq(dpdk, Dpdk::get_or_init_default().unwrap()));
    let other = EalConfig::without_hardware("another-prefix");
    match Dpdk::init(&other) {
        Err(DpdkError::EalArgsMismatch { active, requested }) => {
            assert_eq!(active, EalConfig::default().args);
            assert_eq!(requested, other.args);
        }
        result => panic!("expected a refusal, got {result:?}"),
    }
}

#[test]
fn invalid_configurations_are_refused_with_the_reason() {
    let _serial = serial();
    let config_error = |config: DpdkConfig| {
        let (a, _b) = dpdk().ring_pair().unwrap();
        match DpdkTransport::new(a, ZERO, config) {
            Err(DpdkError::Config(reason)) => reason,
            other => panic!("expected a configuration error, got {other:?}"),
        }
    };
    let reason = config_error(DpdkConfig {
        frame_bytes_max: 9000,
        ..DpdkConfig::point_to_point([ONE])
    });
    assert!(reason.contains("frame_bytes_max"), "{reason}");
    let reason = config_error(DpdkConfig::point_to_point([ZERO]));
    assert!(reason.contains("own id"), "{reason}");
    let reason = config_error(DpdkConfig {
        tx_queue_frames_max: 10,
        ..DpdkConfig::point_to_point([ONE])
    });
    assert!(reason.contains("tx_queue_frames_max"), "{reason}");
    assert_eq!(ETHERTYPE, 0x88B5);
}

#[test]
fn the_ring_pair_benchmark_reports_what_it_measured() {
    let _serial = serial();
    dpdk();
    let report = bench_ring_pair(20_000, 3000).unwrap();
    assert_eq!(report.messages, 20_000);
    assert_eq!(report.payload_bytes, 3000);
    assert_eq!(report.frames_per_message, 3);
    assert_eq!(report.bytes, 20_000 * 3000);
    assert!(
        report.seconds > 0.0 && report.messages_per_sec > 0.0,
        "{report:?}"
    );
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["messages"], 20_000);
}

#[test]
fn the_raw_baseline_moves_the_same_messages_in_the_same_run() {
    let _serial = serial();
    dpdk();
    // Three frames per message, the last one short: every frame length is checked.
    let report = bench_ring_pair(20_001, 3000).unwrap();
    let raw = &report.raw;
    assert_eq!(raw.messages, report.messages);
    assert_eq!(raw.frames, 20_001 * 3);
    assert_eq!(raw.bytes, report.bytes);
    assert_eq!(raw.bytes, 20_001 * 3000);
    assert!(raw.seconds > 0.0 && raw.messages_per_sec > 0.0, "{raw:?}");
    assert_eq!(raw.messages_per_sec, 20_001.0 / raw.seconds);
    assert_eq!(raw.bytes_per_sec, raw.bytes as f64 / raw.seconds);
    assert_eq!(
        report.transport_over_raw,
        report.messages_per_sec / raw.messages_per_sec
    );
    assert!(report.setup.contains("interleaved"), "{}", report.setup);

    // One frame per message, the usual case, and an empty message (one empty frame).
    for payload_bytes in [64, 0] {
        let report = bench_ring_pair(5_000, payload_bytes).unwrap();
        assert_eq!(report.raw.frames, 5_000, "{report:?}");
        assert_eq!(report.raw.bytes, 5_000 * payload_bytes as u64);
        assert_eq!(report.raw.bytes, report.bytes);
    }

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["raw"]["messages"], 20_001);
    assert_eq!(json["raw"]["frames"], 60_003);
    assert!(json["transport_over_raw"].as_f64().unwrap() > 0.0, "{json}");
    // The fields from before the baseline are still there.
    for field in [
        "setup",
        "messages",
        "payload_bytes",
        "frames_per_message",
        "seconds",
    ] {
        assert!(json.get(field).is_some(), "{field} missing from {json}");
    }

    assert!(matches!(
        bench_ring_pair(0, 64),
        Err(DpdkBenchError::NoMessages)
    ));
    let too_large = DpdkConfig::default().message_bytes_max + 1;
    assert!(matches!(
        bench_ring_pair(1, too_large),
        Err(DpdkBenchError::Send(SendError::FrameTooLarge { frame_bytes, .. })) if frame_bytes == too_large
    ));
}
