//! `rehearsal node --transport dpdk` and `rehearsal cluster --transport dpdk`: node
//! processes joined by a memif link (shared memory, with a Unix socket in a scratch
//! directory for the control channel), each process with an EAL of its own.
//!
//! As in `tests/cluster.rs`, this test binary plays the `rehearsal` program: run with
//! `node ...` or `cluster ...` arguments it runs that command through the library functions
//! the `rehearsal` binary calls, so no other binary has to be built; run otherwise it runs
//! the tests below with a small harness of its own (`harness = false`). An argument that
//! is not a flag filters tests by name. Only built with the `dpdk` feature.
#![cfg(feature = "dpdk")]

use rehearsal::cluster::{self, ClusterArgs, NodeArgs, TransportArg};
use rehearsal::Protocol;
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use rehearsal_tests::process::{children_of, run_cluster, scratch_named, this_program};

// ---- Helpers ------------------------------------------------------------------------------

/// Generous for a loaded two-core machine, and finite.
const TEST_LIMIT: Duration = Duration::from_secs(120);

const REQUESTS: u64 = 200;

/// A cluster file of one unreplicated server and one client, the two ends of a memif link
/// whose socket file is in `dir`.
fn memif_cluster_file(dir: &Path, requests: Option<u64>) -> PathBuf {
    let socket = dir.join("memif.sock");
    let socket = socket.display();
    let params = match requests {
        Some(n) => format!("[params]\nrequests_per_client = {n}\n"),
        None => String::new(),
    };
    let text = format!(
        "protocol = \"unreplicated\"\nseed = 7\n{params}\
         [[node]]\nid = 0\nrole = \"server\"\n\
         dpdk = {{ port = \"net_memif0,role=server,socket={socket},socket-abstract=no\", mac = \"02:00:00:00:00:01\" }}\n\
         [[node]]\nid = 1\nrole = \"client\"\n\
         dpdk = {{ port = \"net_memif0,role=client,socket={socket},socket-abstract=no\", mac = \"02:00:00:00:00:02\" }}\n"
    );
    let file = dir.join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// A `rehearsal node` process of this test, its stdout read line by line on a thread.
/// Dropping it kills the process if it still runs, so a failing test leaves none behind.
struct NodeProcess {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    stderr: PathBuf,
}

impl NodeProcess {
    fn spawn(config: &Path, id: u32, extra: &[&str], stderr: PathBuf) -> NodeProcess {
        let mut child = Command::new(this_program())
            .args(["node", "--transport", "dpdk", "--config"])
            .arg(config)
            .args(["--id", &id.to_string()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProcess {
            stdin: child.stdin.take(),
            child,
            lines,
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// The next line on stdout; panics after `TEST_LIMIT`.
    fn next_line(&self) -> String {
        self.lines.recv_timeout(TEST_LIMIT).unwrap_or_else(|e| {
            panic!(
                "no line from node {} ({e}); stderr:\n{}",
                self.child.id(),
                self.log()
            )
        })
    }

    /// The next JSON line of event `event`, skipping other events and what is not JSON
    /// (DPDK 22.11 logs to stdout).
    fn event(&self, event: &str) -> Value {
        let deadline = Instant::now() + TEST_LIMIT;
        while Instant::now() < deadline {
            let line = self.next_line();
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                if value["event"] == event {
                    return value;
                }
            }
        }
        panic!("no `{event}` line; stderr:\n{}", self.log());
    }

    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{line}").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes stdin (which stops a controlled node), waits for the exit and returns it
    /// with the summary line.
    fn stop(&mut self) -> (ExitStatus, Value) {
        self.stdin = None;
        let summary = self.event("summary");
        (self.wait(), summary)
    }

    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + TEST_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not exit within {TEST_LIMIT:?}; stderr:\n{}",
                self.child.id(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What the nodes' EALs left in DPDK's runtime directories (root's, or the user's).
fn dpdk_runtime_files() -> BTreeSet<PathBuf> {
    let mut roots = vec![PathBuf::from("/var/run/dpdk"), PathBuf::from("/tmp/dpdk")];
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        roots.push(Path::new(&dir).join("dpdk"));
    }
    roots
        .iter()
        .filter_map(|root| std::fs::read_dir(root).ok())
        .flatten()
        .filter_map(|entry| entry.ok())
        .filter(|entry| {
            entry
                .file_name()
                .to_string_lossy()
                .starts_with("rehearsal-node")
        })
        .map(|entry| entry.path())
        .collect()
}

fn cluster_args(protocol: Protocol) -> ClusterArgs {
    ClusterArgs {
        protocol,
        transport: TransportArg::Dpdk,
        nodes: None,
        clients: 1,
        duration: TEST_LIMIT,
        requests: Some(REQUESTS),
        servers: None,
        rounds: None,
        channels: None,
        message_bytes: None,
        seed: 1,
        json: true,
        node_binary: Some(this_program()),
        keep: false,
        no_check: false,
        param: Vec::new(),
        crypto: None,
        batch: None,
        keys: None,
        testbed_keys: false,
        hosts: Default::default(),
    }
}

// ---- Tests --------------------------------------------------------------------------------

fn a_server_and_a_client_over_memif_answer_every_request() {
    let files_before = dpdk_runtime_files();
    let dir = scratch_named("dpdk", "memif-pair");
    let config = memif_cluster_file(&dir, Some(REQUESTS));
    let outputs = [dir.join("outputs-0.jsonl"), dir.join("outputs-1.jsonl")];
    let node = |id: u32| {
        let outputs = outputs[id as usize].to_str().unwrap();
        let extra = ["--controlled", "--outputs", outputs];
        NodeProcess::spawn(&config, id, &extra, dir.join(format!("node-{id}.log")))
    };
    // The client first: it waits for the server's memif socket before it is ready.
    let mut client = node(1);
    let mut server = node(0);
    let server_ready = server.event("ready");
    let client_ready = client.event("ready");
    assert_eq!(client_ready["transport"], "dpdk", "{client_ready}");
    // The memif ports take the MACs of the cluster file.
    assert_eq!(server_ready["mac"], "02:00:00:00:00:01", "{server_ready}");
    assert_eq!(client_ready["mac"], "02:00:00:00:00:02", "{client_ready}");
    server.send("start");
    client.send("start");
    client.event("done");

    // Clients stop first, as under `rehearsal cluster`.
    let (client_status, client_summary) = client.stop();
    let (server_status, server_summary) = server.stop();
    let logs = format!("client:\n{}\nserver:\n{}", client.log(), server.log());
    assert!(client_status.success(), "{client_summary}\n{logs}");
    assert!(server_status.success(), "{server_summary}\n{logs}");
    for summary in [&client_summary, &server_summary] {
        assert_eq!(summary["transport"], "dpdk", "{summary}");
        assert_eq!(summary["stop"], "stdin_closed", "{summary}");
        assert_eq!(summary["error"], Value::Null, "{summary}");
        assert!(summary["tcp"].is_null(), "{summary}");
        let dpdk = &summary["dpdk"];
        for dropped in [
            "frames_wrong_ethertype",
            "frames_short_header",
            "frames_bad_length",
            "frames_wrong_destination",
            "frames_unknown_source",
        ] {
            assert_eq!(dpdk[dropped], 0, "{dropped}: {summary}");
        }
        assert!(
            dpdk["messages_received"].as_u64().unwrap() >= REQUESTS,
            "{summary}"
        );
    }
    assert_eq!(client_summary["done"], true);
    assert_eq!(client_summary["requests_completed"], REQUESTS);
    assert!(client_summary["latency"]["p50_ns"].as_u64().unwrap() > 0);
    let executed = server_summary["requests_executed"].as_u64().unwrap();
    assert!(executed >= REQUESTS, "{server_summary}");

    // Every request was executed by the server and answered, once.
    let (checked, violations) =
        cluster::check_outputs(&config, &outputs).expect("the outputs read back");
    assert!(violations.is_empty(), "{violations:?}");
    assert_eq!(checked, executed + REQUESTS);

    assert!(children_of(std::process::id()).is_empty());
    assert_eq!(dpdk_runtime_files(), files_before, "EAL files left behind");
    drop((client, server));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn a_standalone_node_waits_for_its_peer_and_stops_on_sigterm() {
    let dir = scratch_named("dpdk", "standalone");
    let config = memif_cluster_file(&dir, None);
    let mut server = NodeProcess::spawn(&config, 0, &[], dir.join("node-0.log"));
    let first = server.next_line();
    assert!(
        first.starts_with("node 0 (server of unreplicated) on DPDK port net_memif")
            && first.contains("mac 02:00:00:00:00:01"),
        "{first}"
    );
    // Nobody at the other end of the link yet.
    let second = server.next_line();
    assert!(second.contains("waiting for the link"), "{second}");

    let mut client = NodeProcess::spawn(
        &config,
        1,
        // Long enough for the link to come up on a loaded machine (at 1 s it sometimes
        // did not: "the memif link did not come up within --duration").
        &["--duration", "5s", "--json"],
        dir.join("node-1.log"),
    );
    client.event("ready");
    let summary = client.event("summary");
    assert!(client.wait().success(), "{summary}\n{}", client.log());
    assert_eq!(summary["stop"], "duration");
    assert!(
        summary["requests_completed"].as_u64().unwrap() > 0,
        "{summary}"
    );
    // --duration bounds the whole run, the node's start and its wait for the link included.
    let elapsed_ns = summary["elapsed_ns"].as_u64().unwrap();
    assert!(elapsed_ns <= 6_000_000_000, "{summary}");

    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = server.wait();
    assert!(status.success(), "{}", server.log());
    let last = std::iter::from_fn(|| server.lines.recv_timeout(TEST_LIMIT).ok())
        .last()
        .unwrap();
    assert!(last.starts_with("node 0 (server) stopped after"), "{last}");
    assert!(
        last.contains("(signal)") && last.contains("requests executed"),
        "{last}"
    );
    drop((client, server));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn a_controlled_client_without_its_server_stops_at_the_end_of_stdin() {
    let dir = scratch_named("dpdk", "no-server");
    let config = memif_cluster_file(&dir, None);
    let mut client = NodeProcess::spawn(&config, 1, &["--controlled"], dir.join("node-1.log"));
    std::thread::sleep(Duration::from_millis(300));
    // The launcher went away before the server ever listened.
    client.stdin = None;
    let begun = Instant::now();
    let status = client.wait();
    assert!(begun.elapsed() < Duration::from_secs(10));
    assert_eq!(status.code(), Some(1), "{}", client.log());
    assert!(
        client
            .log()
            .contains("stopped while waiting for a memif server"),
        "{}",
        client.log()
    );
    drop(client);
    std::fs::remove_dir_all(&dir).unwrap();
}

fn rehearsal_cluster_over_dpdk_serves_one_client_and_checks_its_outputs() {
    let files_before = dpdk_runtime_files();
    let begun = Instant::now();
    let (status, report, stderr) = run_cluster(&cluster_args(Protocol::of("unreplicated")));
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["transport"], "dpdk");
    assert_eq!(report["requests"], REQUESTS);
    assert_eq!(report["invariants_checked"], true);
    let per_node = report["per_node"].as_array().unwrap();
    assert_eq!(per_node.len(), 2);
    let executed = per_node[0]["summary"]["requests_executed"]
        .as_u64()
        .unwrap();
    assert_eq!(report["outputs_checked"], executed + REQUESTS, "{report:#}");
    for node in per_node {
        assert_eq!(node["exit_status"], 0, "{node}");
    }
    assert!(
        begun.elapsed() < TEST_LIMIT,
        "the cluster waited for --duration"
    );
    assert!(children_of(std::process::id()).is_empty());
    assert_eq!(dpdk_runtime_files(), files_before, "EAL files left behind");
}

fn benaloh_peers_over_dpdk_agree_on_the_sum() {
    let args = ClusterArgs {
        nodes: Some(2),
        clients: 0,
        requests: None,
        ..cluster_args(Protocol::of("benaloh"))
    };
    let (status, report, stderr) = run_cluster(&args);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok");
    // A secret and a total per peer, checked by CorrectSum.
    assert_eq!(report["outputs_checked"], 4);
}

fn dpdk_clusters_beyond_one_memif_link_are_refused_before_dpdk_starts() {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let args = ClusterArgs {
        clients: 2,
        ..cluster_args(Protocol::of("unreplicated"))
    };
    let error = cluster::cluster(&args, &mut out, &mut err)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("two nodes joined by one memif link, not 3"),
        "{error}"
    );
    assert!(error.contains("use --transport tcp"), "{error}");

    let dir = scratch_named("dpdk", "refused");
    let config = memif_cluster_file(&dir, None);
    let text = std::fs::read_to_string(&config).unwrap();
    let node = |id| NodeArgs {
        config: config.clone(),
        id,
        transport: TransportArg::Dpdk,
        duration: None,
        outputs: None,
        json: false,
        controlled: false,
        state: None,
    };
    let third = "[[node]]\nid = 2\nrole = \"client\"\n\
                 dpdk = { port = \"net_memif1,role=client\", mac = \"02:00:00:00:00:03\" }\n";
    std::fs::write(&config, format!("{text}{third}")).unwrap();
    let error = cluster::node(&node(2), &mut out, &mut err)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("which joins exactly two nodes, but this cluster has 3"),
        "{error}"
    );

    std::fs::write(&config, text.replace("role=client", "role=server")).unwrap();
    let error = cluster::node(&node(1), &mut out, &mut err)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("both ends of the memif link are role=server"),
        "{error}"
    );

    let numbered = text.replacen(
        &format!(
            "\"net_memif0,role=server,socket={}/memif.sock,socket-abstract=no\"",
            dir.display()
        ),
        "0",
        1,
    );
    std::fs::write(&config, numbered).unwrap();
    let error = cluster::node(&node(0), &mut out, &mut err)
        .unwrap_err()
        .to_string();
    assert!(error.contains("port = 0: name the device"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `rehearsal bench dpdk`, in a process of its own (the EAL is initialised once per
/// process): the transport's rate, the raw baseline's and their ratio, as JSON and as text.
fn bench_dpdk_prints_the_transport_the_raw_baseline_and_their_ratio() {
    let bench = |extra: &[&str]| {
        let output = Command::new(this_program())
            .args([
                "bench",
                "dpdk",
                "--messages",
                "20000",
                "--payload-bytes",
                "100",
            ])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        stdout
    };

    let stdout = bench(&["--json"]);
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}"));
    assert_eq!(report["messages"], 20_000);
    assert_eq!(report["bytes"], 20_000 * 100);
    assert_eq!(report["raw"]["messages"], 20_000);
    assert_eq!(report["raw"]["frames"], 20_000);
    assert_eq!(report["raw"]["bytes"], 20_000 * 100);
    let rate = |value: &Value| value.as_f64().unwrap_or(0.0);
    let transport = rate(&report["messages_per_sec"]);
    let raw = rate(&report["raw"]["messages_per_sec"]);
    assert!(transport > 0.0 && raw > 0.0, "{report:#}");
    // serde_json's float parsing may be one unit in the last place off.
    let ratio = rate(&report["transport_over_raw"]);
    assert!(
        (ratio - transport / raw).abs() <= 1e-12 * ratio,
        "{report:#}"
    );

    let text = bench(&[]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with("dpdk ring pair: 20000 messages of 100 B in "),
        "{text}"
    );
    assert!(
        lines[1].starts_with("raw burst baseline: 20000 messages of 100 B in "),
        "{text}"
    );
    assert!(lines[2].starts_with("transport / raw: "), "{text}");
    let ratio: f64 = lines[2]["transport / raw: ".len()..]
        .split_whitespace()
        .next()
        .and_then(|figure| figure.parse().ok())
        .unwrap_or_else(|| panic!("no ratio in {text}"));
    assert!(ratio > 0.0, "{text}");
}

/// `bench all`'s dpdk step: two rows read from `bench dpdk`'s report, the ratio judged
/// against its target.
fn bench_all_reads_the_dpdk_rows_from_its_report() {
    let output = Command::new(this_program())
        .args(["bench", "all", "--quick", "--json", "--skip"])
        .arg("sim,pbft,hotstuff,scale,tcp,cluster")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let all: Value = serde_json::from_str(&stdout).unwrap();
    let report = &all["reports"]["dpdk"];
    assert_eq!(report["messages"], 200_000, "{all:#}");
    let rows = all["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{all:#}");
    assert_eq!(rows[0]["value"], report["messages_per_sec"]);
    assert_eq!(rows[1]["value"], report["transport_over_raw"]);
    assert_eq!(rows[1]["target"], ">= 0.250");
    let met = report["transport_over_raw"].as_f64().unwrap() >= 0.25;
    assert_eq!(rows[1]["met"], met, "{all:#}");
}

// ---- Harness ------------------------------------------------------------------------------

const TESTS: &[(&str, fn())] = &[
    (
        "a_server_and_a_client_over_memif_answer_every_request",
        a_server_and_a_client_over_memif_answer_every_request,
    ),
    (
        "a_standalone_node_waits_for_its_peer_and_stops_on_sigterm",
        a_standalone_node_waits_for_its_peer_and_stops_on_sigterm,
    ),
    (
        "a_controlled_client_without_its_server_stops_at_the_end_of_stdin",
        a_controlled_client_without_its_server_stops_at_the_end_of_stdin,
    ),
    (
        "rehearsal_cluster_over_dpdk_serves_one_client_and_checks_its_outputs",
        rehearsal_cluster_over_dpdk_serves_one_client_and_checks_its_outputs,
    ),
    (
        "benaloh_peers_over_dpdk_agree_on_the_sum",
        benaloh_peers_over_dpdk_agree_on_the_sum,
    ),
    (
        "dpdk_clusters_beyond_one_memif_link_are_refused_before_dpdk_starts",
        dpdk_clusters_beyond_one_memif_link_are_refused_before_dpdk_starts,
    ),
    (
        "bench_dpdk_prints_the_transport_the_raw_baseline_and_their_ratio",
        bench_dpdk_prints_the_transport_the_raw_baseline_and_their_ratio,
    ),
    (
        "bench_all_reads_the_dpdk_rows_from_its_report",
        bench_all_reads_the_dpdk_rows_from_its_report,
    ),
];

fn main() -> ExitCode {
    rehearsal_tests::process::main(TESTS)
}
