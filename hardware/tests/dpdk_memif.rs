//! The DPDK transport between two processes over `net_memif` (shared memory, with a Unix
//! socket for the control channel): the unreplicated protocol, server here, client in a
//! second process.
//!
//! The second process is this test binary again, running this same test with
//! [`CHILD_ENV`] set: each process has its own EAL (distinct `--file-prefix`).
#![cfg(feature = "dpdk")]

use rehearsal_hardware::dpdk::{Dpdk, DpdkConfig, DpdkTransport, EalConfig, MemifRole};
use rehearsal_hardware::{check_invariants, NodeRuntime, OutputRecord, RunStop, RuntimeConfig};
use rehearsal_protocols::unreplicated::{self, Node, Output, RequestsAnswered, SERVER};
use rehearsal_sim_core::{NodeId, Time};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const TEST_NAME: &str = "unreplicated_runs_across_two_processes_over_memif";
/// Set in the child: the directory holding the memif socket and the child's results.
const CHILD_ENV: &str = "REHEARSAL_DPDK_MEMIF_CHILD_DIR";
const CLIENT: NodeId = NodeId(1);
const REQUESTS: u64 = 300;
const TEST_LIMIT: Duration = Duration::from_secs(60);

fn config() -> unreplicated::Config {
    unreplicated::Config {
        clients: 1,
        requests_per_client: REQUESTS,
        retransmit_after: Duration::from_millis(200),
    }
}

fn quiet() -> RuntimeConfig {
    RuntimeConfig {
        log_errors: false,
        ..RuntimeConfig::default()
    }
}

fn request_of(output: &Output) -> u64 {
    match output {
        Output::Executed { request, .. } | Output::Completed { request, .. } => *request,
    }
}

#[test]
fn unreplicated_runs_across_two_processes_over_memif() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        client_process(Path::new(&dir));
        return;
    }
    let dir = scratch_dir();
    let socket = dir.join("memif.sock");
    let dpdk = Dpdk::init(&EalConfig::without_hardware(&format!(
        "rehearsal-memif-server-{}",
        std::process::id()
    )))
    .unwrap();
    let port = dpdk.memif_port(MemifRole::Server, &socket).unwrap();
    let transport = DpdkTransport::new(port, SERVER, DpdkConfig::point_to_point([CLIENT])).unwrap();
    let mut actors = unreplicated::actors(&config()).into_iter();
    let mut server = NodeRuntime::new(actors.next().unwrap(), transport, quiet());
    let stop = server.stop_handle();
    let server = thread::spawn(move || {
        let result = server.run_for(TEST_LIMIT * 2).unwrap();
        (result, server)
    });

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([TEST_NAME, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the test binary starts again as the client process");
    let begun = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if begun.elapsed() > TEST_LIMIT + Duration::from_secs(30) {
            let _ = child.kill();
            break None;
        }
        thread::sleep(Duration::from_millis(20));
    };
    stop.stop();
    let (server_result, server) = server.join().unwrap();
    let output = child.wait_with_output().unwrap();
    let child_log = format!(
        "client process stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "the client process failed ({status:?})\n{child_log}"
    );
    assert_eq!(server_result, RunStop::Stopped);

    // Each request is executed by the server before the client completes it, and the
    // client sends the next only then: ordering by (request, executed first) is causal.
    let mut outputs: Vec<OutputRecord<Output>> = server.outputs().to_vec();
    let results = std::fs::File::open(dir.join("client-outputs.jsonl")).unwrap();
    for line in BufReader::new(results).lines() {
        let value: Output = serde_json::from_str(&line.unwrap()).unwrap();
        outputs.push(OutputRecord {
            node: CLIENT,
            at: Time::ZERO,
            value,
        });
    }
    outputs.sort_by_key(|r| {
        (
            request_of(&r.value),
            matches!(r.value, Output::Completed { .. }),
        )
    });
    let completed = outputs
        .iter()
        .filter(|r| matches!(r.value, Output::Completed { .. }))
        .count();
    assert_eq!(completed as u64, REQUESTS, "{child_log}");
    let actors = unreplicated::actors(&config());
    let mut invariant = RequestsAnswered::new(&config());
    let violations = check_invariants(&outputs, &actors, Time::ZERO, &mut [&mut invariant]);
    assert!(violations.is_empty(), "{violations:?}\n{child_log}");

    let stats = server.transport().stats();
    assert!(stats.messages_received >= REQUESTS, "{stats:?}");
    assert_eq!(stats.frames_dropped(), 0, "{stats:?}");
    assert_eq!(server.stats().messages_undecodable, 0);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The client process: connects to the server's memif socket, runs the client until it
/// has completed every request, and writes its outputs to `dir`.
fn client_process(dir: &Path) {
    let dpdk = Dpdk::init(&EalConfig::without_hardware(&format!(
        "rehearsal-memif-client-{}",
        std::process::id()
    )))
    .unwrap();
    let port = dpdk
        .memif_port(MemifRole::Client, &dir.join("memif.sock"))
        .unwrap();
    let transport = DpdkTransport::new(port, CLIENT, DpdkConfig::point_to_point([SERVER])).unwrap();
    assert!(
        transport.wait_for_link(Duration::from_secs(20)),
        "the memif link to the server never came up"
    );
    let mut actors = unreplicated::actors(&config()).into_iter().skip(1);
    let mut client = NodeRuntime::new(actors.next().unwrap(), transport, quiet());
    let stop = client
        .run_until(TEST_LIMIT, |node| match node.actor() {
            Node::Client(client) => client.completed() == REQUESTS,
            Node::Server(_) => unreachable!(),
        })
        .unwrap();
    assert_eq!(stop, RunStop::Done);
    let stats = client.transport().stats();
    assert_eq!(stats.frames_dropped(), 0, "{stats:?}");
    let mut results = std::fs::File::create(dir.join("client-outputs.jsonl")).unwrap();
    for record in client.outputs() {
        writeln!(results, "{}", serde_json::to_string(&record.value).unwrap()).unwrap();
    }
    results.sync_all().unwrap();
}

fn scratch_dir() -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!(
        "rehearsal-dpdk-memif-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
