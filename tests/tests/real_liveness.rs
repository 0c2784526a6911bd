//! Liveness on real transports: a loopback cluster (`rehearsal cluster --scenario`) whose
//! leader is paused (SIGSTOP) goes on without it, as the simulator's does under the same
//! scenario, and the launcher's check of the outputs accepts what it did.
//!
//! PBFT's real-transport timers once allowed for 200 ms messages (5 s client
//! retransmission, 10 s view change): a primary paused for 5 s was simply waited for, and
//! its stuck request took the 5 s. HotStuff's leader change was checked in an order that
//! put a replica's timeout certificate before the timeouts of the others it names.
//!
//! As in `tests/cluster.rs`, this test binary plays the `rehearsal` program (run with
//! `node ...` or `cluster ...` arguments), and runs its tests one at a time otherwise.

use rehearsal::cluster::ClusterArgs;
use rehearsal_tests::process::{cluster_args_of, run_cluster, scratch_named};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `rehearsal cluster ARGS --json --keep`, its nodes played by this binary.
fn cluster_args(words: &[&str]) -> ClusterArgs {
    let mut args = cluster_args_of(words);
    args.keep = true;
    args
}

/// Every output line of every node of a kept cluster directory, as JSON.
fn outputs_of(directory: &Path) -> Vec<Value> {
    let mut outputs = Vec::new();
    for entry in std::fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("outputs-") && name.ends_with(".jsonl")) {
            continue;
        }
        for line in std::fs::read_to_string(&path).unwrap().lines() {
            outputs.push(serde_json::from_str(line).unwrap());
        }
    }
    outputs
}

/// The nodes that output `event` at least once.
fn nodes_with(outputs: &[Value], event: &str) -> Vec<u64> {
    let mut nodes: Vec<u64> = outputs
        .iter()
        .filter(|o| o["value"]["event"] == event)
        .map(|o| o["node"].as_u64().unwrap())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// Runs `protocol` on loopback, 4 replicas and 1 client for 8 s, with node 0 (PBFT's
/// primary of view 0, HotStuff's first leader) paused from 1 s to 6 s. Checks what every
/// such run must show, and returns the report and the outputs.
fn paused_leader_run(protocol: &str) -> (Value, Vec<Value>) {
    let dir = scratch_named("real-liveness", protocol);
    let scenario = dir.join("pause.scenario");
    std::fs::write(&scenario, "@1s pause 0\n@6s resume 0\n").unwrap();
    let (status, report, stderr) = run_cluster(&cluster_args(&[
        "--protocol",
        protocol,
        "--clients",
        "1",
        "--duration",
        "8s",
        "--scenario",
        scenario.to_str().unwrap(),
    ]));
    let directory = PathBuf::from(report["directory"].as_str().unwrap_or_default());
    let outputs = outputs_of(&directory);
    let _ = std::fs::remove_dir_all(&directory);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok", "{report:#}\n{stderr}");
    assert_eq!(report["invariants_checked"], true, "{report:#}");
    assert!(
        report["violations"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    let actions = report["scenario"]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{report:#}");
    for action in actions {
        assert!(
            action["steps"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["ok"] == true),
            "{report:#}"
        );
    }
    // The request the paused leader held completes long before the leader resumes (5 s
    // later): the others moved on without it. With the old timers it took the full 5 s.
    let latency_max = report["latency"]["max_ns"].as_u64().unwrap();
    assert!(
        latency_max < 4_000_000_000,
        "the stuck request waited {latency_max} ns: {report:#}"
    );
    eprintln!(
        "{protocol}: {} requests, longest {:.2} s",
        report["requests"],
        latency_max as f64 / 1e9
    );
    (report, outputs)
}

fn pbft_replicas_change_view_while_their_primary_is_paused() {
    let (report, outputs) = paused_leader_run("pbft");
    // Every replica that was not paused entered view 1, while node 0 was stopped.
    let entered = nodes_with(&outputs, "view_entered");
    assert!(
        [1, 2, 3].iter().all(|n| entered.contains(n)),
        "replicas that entered a view: {entered:?}\n{report:#}"
    );
}

fn hotstuff_replicas_replace_their_paused_leader() {
    let (report, outputs) = paused_leader_run("hotstuff");
    // The others gave up on the paused leader's views and certified it: the outputs the
    // timeout-quorum check reads were there, and it passed them.
    let timed_out = nodes_with(&outputs, "timed_out");
    let certified = nodes_with(&outputs, "timeout_certified");
    assert!(
        [1, 2, 3]
            .iter()
            .all(|n| timed_out.contains(n) && certified.contains(n)),
        "timed out: {timed_out:?}, certified: {certified:?}\n{report:#}"
    );
}

/// The launcher's check (`rehearsal::cluster::check_outputs`) of HotStuff outputs in
/// which each replica's timeout certificate names the others, whose `timed_out` outputs
/// are in files read after its own: no violation. It reported "n1 moved on from view 32 on
/// a timeout certificate naming n2, n3, which never gave up on that view".
fn hotstuff_timeout_certificates_are_checked_after_the_timeouts_they_name() {
    let dir = scratch_named("real-liveness", "hotstuff-outputs");
    let mut text = "protocol = \"hotstuff\"\nseed = 1\nkeys = \"testbed\"\n".to_string();
    for id in 0..5 {
        let role = if id < 4 { "replica" } else { "client" };
        text += &format!(
            "[[node]]\nid = {id}\nrole = \"{role}\"\naddress = \"127.0.0.1:{}\"\n",
            7000 + id
        );
    }
    let config = dir.join("cluster.toml");
    std::fs::write(&config, text).unwrap();
    let mut files = Vec::new();
    for node in 1..4u32 {
        let mut signers: Vec<u32> = (1..4).collect();
        signers.rotate_left(node as usize - 1);
        let lines = [
            format!(r#"{{"node":{node},"at":1000,"value":{{"event":"timed_out","view":32}}}}"#),
            format!(
                r#"{{"node":{node},"at":2000,"value":{{"event":"timeout_certified","view":32,"signers":{signers:?}}}}}"#
            ),
        ];
        let path = dir.join(format!("outputs-{node}.jsonl"));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        files.push(path);
    }
    let (checked, violations) = rehearsal::cluster::check_outputs(&config, &files).unwrap();
    assert_eq!(checked, 6);
    let quorum: Vec<String> = violations
        .iter()
        .filter(|v| v.invariant == "timeout-quorum")
        .map(|v| v.to_string())
        .collect();
    assert!(quorum.is_empty(), "{quorum:#?}");
    // And a certificate naming a replica that never gave up on the view is still caught.
    let path = dir.join("outputs-1.jsonl");
    std::fs::write(
        &path,
        r#"{"node":1,"at":2000,"value":{"event":"timeout_certified","view":33,"signers":[1,2,3]}}"#,
    )
    .unwrap();
    let (_, violations) = rehearsal::cluster::check_outputs(&config, &[path]).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        violations
            .iter()
            .any(|v| v.invariant == "timeout-quorum" && v.detail.contains("naming n1, n2, n3")),
        "{violations:#?}"
    );
}

const TESTS: &[(&str, fn())] = &[
    (
        "hotstuff_timeout_certificates_are_checked_after_the_timeouts_they_name",
        hotstuff_timeout_certificates_are_checked_after_the_timeouts_they_name,
    ),
    (
        "pbft_replicas_change_view_while_their_primary_is_paused",
        pbft_replicas_change_view_while_their_primary_is_paused,
    ),
    (
        "hotstuff_replicas_replace_their_paused_leader",
        hotstuff_replicas_replace_their_paused_leader,
    ),
];

fn main() -> ExitCode {
    rehearsal_tests::process::main(TESTS)
}
