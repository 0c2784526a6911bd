//! `rehearsal node` and `rehearsal cluster` with real processes on loopback.
//!
//! `rehearsal cluster` launches node processes of the `rehearsal` program. Cargo does not
//! build that program for this package's tests, so this test binary plays it: run with
//! `node ...` or `cluster ...` arguments it runs that command (through the same library
//! functions the `rehearsal` binary calls); run otherwise it runs the tests below, with a
//! small harness of its own (`harness = false` in Cargo.toml) that prints the usual
//! `test result:` line. An argument that is not a flag filters tests by name.

use rehearsal::cluster::{self, ClusterArgs, NodeArgs, TransportArg};
use rehearsal::Protocol;
use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use rehearsal_tests::process::{children_of, run_cluster, scratch_named, this_program};

// ---- Helpers ------------------------------------------------------------------------------

/// Generous for a loaded two-core machine, and finite.
const TEST_LIMIT: Duration = Duration::from_secs(120);

fn cluster_args(protocol: Protocol) -> ClusterArgs {
    ClusterArgs {
        protocol,
        transport: TransportArg::Tcp,
        nodes: None,
        servers: None,
        clients: 2,
        duration: Duration::from_secs(2),
        requests: None,
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

/// Whether process `pid` still exists (and is not a zombie waiting to be reaped).
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

fn wait_with_limit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            panic!("process {} did not exit within {limit:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn node_summaries(report: &Value) -> Vec<&Value> {
    report["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| &node["summary"])
        .collect()
}

/// Rewrites an outputs file with `edit` applied to its first record for which it returns
/// true; whether one did.
fn tamper_first(file: &std::path::Path, mut edit: impl FnMut(&mut Value) -> bool) -> bool {
    let text = std::fs::read_to_string(file).unwrap();
    let mut tampered = false;
    let lines: Vec<String> = text
        .lines()
        .map(|line| {
            let mut record: Value = serde_json::from_str(line).unwrap();
            if !tampered {
                tampered = edit(&mut record);
            }
            record.to_string()
        })
        .collect();
    std::fs::write(file, lines.join("\n") + "\n").unwrap();
    tampered
}

// ---- Tests --------------------------------------------------------------------------------

fn unreplicated_cluster_serves_every_client_and_passes_its_invariant() {
    let (status, report, stderr) = run_cluster(&cluster_args(Protocol::of("unreplicated")));
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["invariants_checked"], true);
    assert_eq!(report["violations"].as_array().unwrap().len(), 0);
    let requests = report["requests"].as_u64().unwrap();
    assert!(requests > 0, "{report:#}");
    assert!(report["throughput_rps"].as_f64().unwrap() > 0.0);
    let latency = &report["latency"];
    assert_eq!(latency["count"], requests);
    assert!(latency["p50_ns"].as_u64().unwrap() > 0);
    assert!(latency["p50_ns"].as_u64() <= latency["p99_ns"].as_u64());
    // Every request a client completed was executed once by the server, and every output
    // of both sides was checked.
    let summaries = node_summaries(&report);
    assert_eq!(summaries.len(), 3);
    let executed = summaries[0]["requests_executed"].as_u64().unwrap();
    assert!(
        executed >= requests && executed <= requests + 2,
        "{report:#}"
    );
    assert_eq!(report["outputs_checked"], executed + requests);
    for (i, summary) in summaries.iter().enumerate().skip(1) {
        assert!(
            summary["requests_completed"].as_u64().unwrap() > 0,
            "client {i}: {report:#}"
        );
        assert_eq!(summary["stop"], "stdin_closed");
    }
    // The launch gave every node a key of its own, so its connections were authenticated
    // (though unreplicated signs nothing), and nothing failed authentication.
    for summary in &summaries {
        assert_eq!(summary["tcp_authenticated"], true, "{report:#}");
        assert_eq!(summary["tcp_auth_failures"], 0, "{report:#}");
    }
    for node in report["per_node"].as_array().unwrap() {
        assert_eq!(node["exit_status"], 0, "{node}");
    }
}

fn clients_with_a_request_budget_stop_the_cluster_when_done() {
    let args = ClusterArgs {
        requests: Some(40),
        clients: 3,
        duration: TEST_LIMIT,
        ..cluster_args(Protocol::of("unreplicated"))
    };
    let begun = Instant::now();
    let (status, report, stderr) = run_cluster(&args);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["requests"], 120);
    assert_eq!(report["outputs_checked"], 240);
    for summary in node_summaries(&report).iter().skip(1) {
        assert_eq!(summary["done"], true);
    }
    assert!(
        begun.elapsed() < TEST_LIMIT,
        "the cluster waited for --duration"
    );
}

fn benaloh_cluster_agrees_on_the_sum() {
    let args = ClusterArgs {
        nodes: Some(4),
        duration: TEST_LIMIT,
        ..cluster_args(Protocol::of("benaloh"))
    };
    let (status, report, stderr) = run_cluster(&args);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok");
    // A secret and a total per peer, checked by CorrectSum.
    assert_eq!(report["outputs_checked"], 8);
    for summary in node_summaries(&report) {
        assert_eq!(summary["done"], true);
    }
}

fn pbft_cluster_passes_its_safety_checks_and_a_tampered_result_is_caught() {
    replicated_cluster_passes_its_safety_checks_and_a_tampered_result_is_caught(Protocol::of(
        "pbft",
    ));
}

fn hotstuff_cluster_passes_its_safety_checks_and_a_tampered_result_is_caught() {
    replicated_cluster_passes_its_safety_checks_and_a_tampered_result_is_caught(Protocol::of(
        "hotstuff",
    ));
}

/// A replicated state machine (4 replicas, 2 clients with 10 requests each, fresh Ed25519
/// keys) completes every request and passes its safety checks; the same outputs with one
/// replica's result changed fail client consistency.
fn replicated_cluster_passes_its_safety_checks_and_a_tampered_result_is_caught(protocol: Protocol) {
    let args = ClusterArgs {
        nodes: Some(4),
        requests: Some(10),
        duration: TEST_LIMIT,
        keep: true,
        ..cluster_args(protocol)
    };
    let (status, report, stderr) = run_cluster(&args);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["invariants_checked"], true);
    assert_eq!(report["requests"], 20, "{report:#}");
    let roles: Vec<&Value> = report["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| &node["role"])
        .collect();
    assert_eq!(
        roles,
        ["replica", "replica", "replica", "replica", "client", "client"]
    );
    let summaries = node_summaries(&report);
    for summary in &summaries[4..] {
        assert_eq!(summary["done"], true);
        assert_eq!(summary["requests_completed"], 10);
    }
    // A client completes after f+1 = 2 matching replies: at least two replicas executed
    // every request.
    let caught_up = summaries[..4]
        .iter()
        .filter(|s| s["requests_executed"].as_u64() >= Some(20))
        .count();
    assert!(caught_up >= 2, "{report:#}");

    // The same outputs with one replica's result changed: client consistency fails.
    let dir = std::path::PathBuf::from(report["directory"].as_str().unwrap());
    let files: Vec<_> = (0..6)
        .map(|i| dir.join(format!("outputs-{i}.jsonl")))
        .collect();
    let (checked, violations) = cluster::check_outputs(&dir.join("cluster.toml"), &files).unwrap();
    assert_eq!(checked, report["outputs_checked"].as_u64().unwrap());
    assert!(violations.is_empty(), "{violations:?}");
    let tampered = tamper_first(&files[1], |record| {
        if record["value"]["event"] != "executed" {
            return false;
        }
        let requests = record["value"]["requests"].as_array_mut().unwrap();
        let Some(first) = requests.first_mut() else {
            return false;
        };
        let result = first["result"].as_u64().unwrap();
        first["result"] = (result + 1).into();
        true
    });
    assert!(tampered, "replica 1 executed nothing");
    let (_, violations) = cluster::check_outputs(&dir.join("cluster.toml"), &files).unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.invariant == "client-consistency"),
        "{violations:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Spectrum over TCP: 2 servers, the publisher and 4 clients (2 writers, 2 covers) run 3
/// rounds of 4 channels, every output passes I1-I5; one publication altered fails I1.
fn spectrum_cluster_publishes_every_round_and_a_tampered_channel_is_caught() {
    let args = ClusterArgs {
        servers: Some(2),
        clients: 4,
        rounds: Some(3),
        channels: Some(4),
        message_bytes: Some(64),
        param: vec![("writers".into(), 2.into())],
        duration: TEST_LIMIT,
        keep: true,
        ..cluster_args(Protocol::of("spectrum"))
    };
    let (status, report, stderr) = run_cluster(&args);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["invariants_checked"], true);
    assert_eq!(report["requests"], 12, "{report:#}");
    let roles: Vec<&Value> = report["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|node| &node["role"])
        .collect();
    assert_eq!(
        roles,
        [
            "server",
            "server",
            "publisher",
            "client",
            "client",
            "client",
            "client"
        ]
    );
    // The publisher counts the writes it published: 4 clients x 3 rounds.
    assert_eq!(
        node_summaries(&report)[2]["requests_executed"],
        12,
        "{report:#}"
    );

    let dir = std::path::PathBuf::from(report["directory"].as_str().unwrap());
    let files: Vec<_> = (0..7)
        .map(|i| dir.join(format!("outputs-{i}.jsonl")))
        .collect();
    let (checked, violations) = cluster::check_outputs(&dir.join("cluster.toml"), &files).unwrap();
    assert_eq!(checked, report["outputs_checked"].as_u64().unwrap());
    assert!(violations.is_empty(), "{violations:?}");
    // The publisher's first publication with one channel's digest changed.
    let tampered = tamper_first(&files[2], |record| {
        let Some(channels) = record["value"]["channels"].as_array_mut() else {
            return false;
        };
        channels[0] = channels[1].clone();
        true
    });
    assert!(tampered, "the publisher published nothing");
    let (_, violations) = cluster::check_outputs(&dir.join("cluster.toml"), &files).unwrap();
    assert!(
        violations
            .iter()
            .any(|v| v.invariant == "published-correct"),
        "{violations:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `bench all`'s transport steps, briefly: `bench tcp` and PBFT through `rehearsal cluster`
/// over TCP, each row read from its step's report.
fn bench_all_runs_the_tcp_and_cluster_steps() {
    let program = this_program();
    let run = rehearsal_tests::cli(&[
        "bench",
        "all",
        "--quick",
        "--skip",
        "sim,pbft,hotstuff,scale,dpdk",
        "--node-binary",
        program.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let all: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let cluster = &all["reports"]["cluster"];
    assert_eq!(cluster["outcome"], "ok", "{all}");
    assert_eq!(cluster["protocol"], "pbft", "{all}");
    assert!(cluster["requests"].as_u64().unwrap() > 0, "{all}");
    let rows = all["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{all}");
    assert_eq!(rows[0]["value"], all["reports"]["tcp"]["throughput_ratio"]);
    assert_eq!(rows[1]["value"], cluster["throughput_rps"]);
    assert_eq!(rows[1]["target"], ">= 10,000");
}

/// `bench spectrum`'s part (d), briefly: the public implementation's workload (50 clients,
/// 3 channels, 10 KiB) over TCP on loopback passes its checks and reports writes/s.
fn bench_spectrum_runs_the_public_workload_over_tcp() {
    let program = this_program();
    let run = rehearsal_tests::cli(&[
        "bench",
        "spectrum",
        "--max-bytes",
        "1000",
        "--reps",
        "1",
        // A round of 50 clients' 10 KiB uploads takes over 2 s in a debug build on a loaded
        // machine, and the test needs one.
        "--tcp-duration",
        "8s",
        "--node-binary",
        program.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let all: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let tcp = &all["tcp"];
    assert_eq!(tcp["outcome"], "ok", "{all}");
    assert_eq!(tcp["clients"], 50);
    assert_eq!(tcp["message_bytes"], 10 * 1024);
    assert!(tcp["writes"].as_u64().unwrap() > 0, "{all}");
    assert!(tcp["writes_per_second"].as_f64().unwrap() > 0.0, "{all}");
    assert!(tcp["latency_ns_p50"].as_u64().unwrap() > 0, "{all}");
}

fn a_node_that_dies_fails_the_launch_and_leaves_no_process() {
    let dir = scratch_named("test", "dying-node");
    // A "rehearsal" that prints that it is ready and then dies.
    let fake = dir.join("rehearsal");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho '{\"event\":\"ready\"}'\nsleep 0.2\nexit 3\n",
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let args = ClusterArgs {
        node_binary: Some(fake),
        duration: TEST_LIMIT,
        ..cluster_args(Protocol::of("unreplicated"))
    };
    let begun = Instant::now();
    let (status, report, _) = run_cluster(&args);
    assert_eq!(status, 1, "{report:#}");
    assert_eq!(report["outcome"], "failed");
    let failures = report["failures"].to_string();
    assert!(failures.contains("exited"), "{failures}");
    assert!(begun.elapsed() < TEST_LIMIT);
    assert!(children_of(std::process::id()).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

fn ctrl_c_stops_every_node_and_reports_what_ran() {
    let mut launcher = Command::new(this_program())
        .args(["cluster", "--clients", "2", "--duration", "10m", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = launcher.id();
    // The launcher installs its signal handler before it starts any node: once its three
    // nodes exist, a SIGINT is handled.
    let deadline = Instant::now() + TEST_LIMIT;
    let nodes = loop {
        let nodes = children_of(pid);
        if nodes.len() == 3 {
            break nodes;
        }
        assert!(Instant::now() < deadline, "the nodes did not start");
        assert!(
            launcher.try_wait().unwrap().is_none(),
            "the launcher exited"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let status = Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_with_limit(&mut launcher, TEST_LIMIT);
    let mut stdout = String::new();
    launcher
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    let mut stderr = String::new();
    launcher
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outcome"], "interrupted");
    for node in report["per_node"].as_array().unwrap() {
        assert_eq!(node["exit_status"], 0, "{node}");
        assert_eq!(node["summary"]["stop"], "stdin_closed", "{node}");
    }
    for node in nodes {
        assert!(!alive(node), "node process {node} outlived the launcher");
    }
}

fn a_standalone_node_runs_until_its_duration_and_prints_a_summary() {
    let dir = scratch_named("test", "standalone");
    let ports: Vec<u16> = (0..2)
        .map(|_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let file = dir.join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            "protocol = \"unreplicated\"\n\
             [[node]]\nid = 0\nrole = \"server\"\naddress = \"127.0.0.1:{}\"\n\
             [[node]]\nid = 1\nrole = \"client\"\naddress = \"127.0.0.1:{}\"\n",
            ports[0], ports[1]
        ),
    )
    .unwrap();
    let spawn = |id: &str, duration: &str| {
        Command::new(this_program())
            .args(["node", "--config"])
            .arg(&file)
            .args(["--id", id, "--duration", duration, "--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut server = spawn("0", "10m");
    // Start the client once the server listens, so its second of running is all service.
    let mut server_stdout = BufReader::new(server.stdout.take().unwrap());
    let mut ready = String::new();
    server_stdout.read_line(&mut ready).unwrap();
    assert!(ready.contains("\"ready\""), "{ready}");
    let mut client = spawn("1", "1s");
    let status = wait_with_limit(&mut client, TEST_LIMIT);
    assert!(status.success());
    let lines: Vec<Value> = BufReader::new(client.stdout.take().unwrap())
        .lines()
        .map(|line| serde_json::from_str(&line.unwrap()).unwrap())
        .collect();
    assert_eq!(lines[0]["event"], "ready");
    let summary = lines.last().unwrap();
    assert_eq!(summary["event"], "summary");
    assert_eq!(summary["stop"], "duration");
    assert!(
        summary["requests_completed"].as_u64().unwrap() > 0,
        "{summary}"
    );

    // SIGTERM stops a node cleanly, with its summary.
    let status = Command::new("kill")
        .args(["-TERM", &server.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = wait_with_limit(&mut server, TEST_LIMIT);
    assert!(status.success());
    let mut stdout = String::new();
    server_stdout.read_to_string(&mut stdout).unwrap();
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(summary["stop"], "signal");
    assert!(
        summary["requests_executed"].as_u64().unwrap() > 0,
        "{summary}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn node_rejects_a_bad_cluster_file_naming_the_place() {
    let dir = scratch_named("test", "bad-file");
    let file = dir.join("cluster.toml");
    std::fs::write(
        &file,
        "protocol = \"unreplicated\"\n[[node]]\nid = 0\nrole = \"server\"\naddress = \"127.0.0.1:1\"\n\
         [[node]]\nid = 1\nrole = \"server\"\naddress = \"127.0.0.1:2\"\n",
    )
    .unwrap();
    let args = NodeArgs {
        config: file.clone(),
        id: 0,
        transport: TransportArg::Tcp,
        duration: None,
        outputs: None,
        json: false,
        controlled: false,
        state: None,
    };
    let mut out = Vec::new();
    let mut err = Vec::new();
    let error = cluster::node(&args, &mut out, &mut err)
        .unwrap_err()
        .to_string();
    let expected = format!("{}:6:1: node 1: role `server` is wrong", file.display());
    assert!(error.starts_with(&expected), "{error}");

    let error = cluster::node(
        &NodeArgs {
            id: 9,
            ..args.clone()
        },
        &mut out,
        &mut err,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("there is no node 9"), "{error}");

    std::fs::write(
        &file,
        "protocol = \"unreplicated\"\n[[node]]\nid = 0\nrole = \"server\"\n",
    )
    .unwrap();
    let error = cluster::node(&args, &mut out, &mut err)
        .unwrap_err()
        .to_string();
    assert!(error.contains("node 0: has no `address`"), "{error}");
    let dpdk = NodeArgs {
        transport: TransportArg::Dpdk,
        ..args.clone()
    };
    let error = cluster::node(&dpdk, &mut out, &mut err)
        .unwrap_err()
        .to_string();
    assert!(error.contains("has no `dpdk` settings"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn cluster_rejects_bad_arguments_before_launching_anything() {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let cases: [(ClusterArgs, &str); 6] = [
        (
            ClusterArgs {
                nodes: Some(3),
                ..cluster_args(Protocol::of("unreplicated"))
            },
            "--nodes must be 1",
        ),
        (
            ClusterArgs {
                clients: 0,
                ..cluster_args(Protocol::of("unreplicated"))
            },
            "at least 1 client",
        ),
        (
            ClusterArgs {
                nodes: Some(1),
                ..cluster_args(Protocol::of("benaloh"))
            },
            "benaloh needs at least 2 nodes to share a secret, got --nodes 1",
        ),
        (
            ClusterArgs {
                transport: TransportArg::Dpdk,
                ..cluster_args(Protocol::of("unreplicated"))
            },
            "use --transport tcp",
        ),
        (
            ClusterArgs {
                nodes: Some(5),
                ..cluster_args(Protocol::of("pbft"))
            },
            "n = 3f+1",
        ),
        (
            ClusterArgs {
                clients: 0,
                ..cluster_args(Protocol::of("pbft"))
            },
            "pbft needs at least 1 client",
        ),
    ];
    for (args, expected) in cases {
        let error = cluster::cluster(&args, &mut out, &mut err)
            .unwrap_err()
            .to_string();
        assert!(error.contains(expected), "{error}");
    }
    assert!(children_of(std::process::id()).is_empty());
}

// ---- Harness ------------------------------------------------------------------------------

const TESTS: &[(&str, fn())] = &[
    (
        "unreplicated_cluster_serves_every_client_and_passes_its_invariant",
        unreplicated_cluster_serves_every_client_and_passes_its_invariant,
    ),
    (
        "clients_with_a_request_budget_stop_the_cluster_when_done",
        clients_with_a_request_budget_stop_the_cluster_when_done,
    ),
    (
        "benaloh_cluster_agrees_on_the_sum",
        benaloh_cluster_agrees_on_the_sum,
    ),
    (
        "pbft_cluster_passes_its_safety_checks_and_a_tampered_result_is_caught",
        pbft_cluster_passes_its_safety_checks_and_a_tampered_result_is_caught,
    ),
    (
        "hotstuff_cluster_passes_its_safety_checks_and_a_tampered_result_is_caught",
        hotstuff_cluster_passes_its_safety_checks_and_a_tampered_result_is_caught,
    ),
    (
        "spectrum_cluster_publishes_every_round_and_a_tampered_channel_is_caught",
        spectrum_cluster_publishes_every_round_and_a_tampered_channel_is_caught,
    ),
    (
        "bench_all_runs_the_tcp_and_cluster_steps",
        bench_all_runs_the_tcp_and_cluster_steps,
    ),
    (
        "bench_spectrum_runs_the_public_workload_over_tcp",
        bench_spectrum_runs_the_public_workload_over_tcp,
    ),
    (
        "a_node_that_dies_fails_the_launch_and_leaves_no_process",
        a_node_that_dies_fails_the_launch_and_leaves_no_process,
    ),
    (
        "ctrl_c_stops_every_node_and_reports_what_ran",
        ctrl_c_stops_every_node_and_reports_what_ran,
    ),
    (
        "a_standalone_node_runs_until_its_duration_and_prints_a_summary",
        a_standalone_node_runs_until_its_duration_and_prints_a_summary,
    ),
    (
        "node_rejects_a_bad_cluster_file_naming_the_place",
        node_rejects_a_bad_cluster_file_naming_the_place,
    ),
    (
        "cluster_rejects_bad_arguments_before_launching_anything",
        cluster_rejects_bad_arguments_before_launching_anything,
    ),
];

fn main() -> ExitCode {
    rehearsal_tests::process::main(TESTS)
}
