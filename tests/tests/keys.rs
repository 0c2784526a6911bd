//! Per-node keys on real transports: `rehearsal keygen` writes one private key file per
//! node and a public-key list, a PBFT cluster runs over TCP on them, a node whose private
//! key does not match its listed public key is refused, and keys derived from the seed
//! still work when asked for. Like `cluster.rs`, this binary plays the `rehearsal`
//! program its clusters launch (`harness = false`).

use rehearsal::cluster::{self, ClusterArgs, NodeArgs, TransportArg};
use rehearsal::Protocol;
use rehearsal_tests::process::{run_cluster, scratch_named, this_program};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

/// A small PBFT cluster: 4 replicas, 1 client, 3 requests.
fn pbft_args() -> ClusterArgs {
    replicated_args(Protocol::of("pbft"))
}

/// A small cluster of a replicated state machine: 4 replicas, 1 client, 3 requests.
fn replicated_args(protocol: Protocol) -> ClusterArgs {
    ClusterArgs {
        protocol,
        transport: TransportArg::Tcp,
        nodes: Some(4),
        clients: 1,
        duration: Duration::from_secs(120),
        requests: Some(3),
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

/// `rehearsal keygen ARGS...`: its status and what it printed.
fn keygen(args: &[&str]) -> (u8, String, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let argv = ["rehearsal", "keygen"].iter().chain(args);
    let status = rehearsal::cli::run(argv.map(|a| a.to_string()), &mut out, &mut err);
    (
        status,
        String::from_utf8_lossy(&out).into_owned(),
        String::from_utf8_lossy(&err).into_owned(),
    )
}

fn path_arg(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 scratch path")
}

/// A PBFT cluster file of 4 replicas and 1 client on loopback, with `extra` at the top.
/// The ports are below the system's ephemeral range (32768 and up on Linux), from which
/// the other cluster tests' sockets take theirs: a fixed port inside it could be a
/// socket's source port still open when a node here must listen on it (seen in CI:
/// "Address already in use").
fn pbft_cluster_file(dir: &Path, extra: &str) -> PathBuf {
    let mut text = format!("protocol = \"pbft\"\n{extra}\n");
    for id in 0..5 {
        let role = if id < 4 { "replica" } else { "client" };
        text += &format!(
            "[[node]]\nid = {id}\nrole = \"{role}\"\naddress = \"127.0.0.1:{}\"\n",
            27000 + id
        );
    }
    let file = dir.join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `rehearsal node --id ID` on `file`: the error it refuses to start with.
fn node_refusal(file: &Path, id: u32) -> String {
    let args = NodeArgs {
        config: file.to_path_buf(),
        id,
        transport: TransportArg::Tcp,
        duration: Some(Duration::from_millis(1)),
        outputs: None,
        json: true,
        controlled: false,
        state: None,
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    match cluster::node(&args, &mut out, &mut err) {
        Err(error) => error.to_string(),
        Ok(status) => panic!(
            "node {id} ran (status {status}):\n{}\n{}",
            String::from_utf8_lossy(&out),
            String::from_utf8_lossy(&err)
        ),
    }
}

// ---- Tests --------------------------------------------------------------------------------

fn keygen_keys_run_a_pbft_cluster_over_tcp() {
    let dir = scratch_named("keys", "cluster");
    let keys = dir.join("keys");
    let file = pbft_cluster_file(&dir, "");
    let (status, out, err) = keygen(&["--config", path_arg(&file), "--out", path_arg(&keys)]);
    assert_eq!(status, 0, "{out}{err}");
    assert!(out.contains("wrote 5 private keys"), "{out}");
    for id in 0..5 {
        assert!(keys.join(format!("node-{id}.key")).is_file());
    }
    let args = ClusterArgs {
        keys: Some(keys.clone()),
        ..pbft_args()
    };
    let (status, report, stderr) = run_cluster(&args);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["requests"], 3, "{report:#}");
    assert_eq!(report["invariants_checked"], true);
    // The same keys authenticated every node's TCP connections.
    for node in report["per_node"].as_array().unwrap() {
        assert_eq!(node["summary"]["tcp_authenticated"], true, "{report:#}");
    }

    // A key directory that holds only node 2's private key (and the list) serves node 2:
    // no node needs another's private key. Node 3 finds none.
    let own = dir.join("node-2-only");
    std::fs::create_dir(&own).unwrap();
    std::fs::copy(keys.join("node-2.key"), own.join("node-2.key")).unwrap();
    std::fs::copy(keys.join("public-keys.txt"), own.join("public-keys.txt")).unwrap();
    let file = pbft_cluster_file(&dir, "keys = \"node-2-only\"");
    let error = node_refusal(&file, 3);
    assert!(
        error.contains("node-2-only/node-3.key: cannot read the private key file"),
        "{error}"
    );
    let mut out = Vec::new();
    let mut err = Vec::new();
    let args = NodeArgs {
        config: file,
        id: 2,
        transport: TransportArg::Tcp,
        duration: Some(Duration::from_millis(200)),
        outputs: None,
        json: true,
        controlled: false,
        state: None,
    };
    let status = cluster::node(&args, &mut out, &mut err).unwrap();
    let out = String::from_utf8_lossy(&out);
    assert_eq!(status, 0, "{out}\n{}", String::from_utf8_lossy(&err));
    assert!(out.contains("\"event\":\"summary\""), "{out}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn a_node_whose_private_key_does_not_match_its_public_key_is_refused() {
    let dir = scratch_named("keys", "mismatch");
    let (keys, other) = (dir.join("keys"), dir.join("other"));
    for to in [&keys, &other] {
        let (status, out, err) = keygen(&["--count", "5", "--out", path_arg(to)]);
        assert_eq!(status, 0, "{out}{err}");
    }
    std::fs::remove_file(keys.join("node-1.key")).unwrap();
    std::fs::copy(other.join("node-1.key"), keys.join("node-1.key")).unwrap();
    let file = pbft_cluster_file(&dir, "keys = \"keys\"");
    let error = node_refusal(&file, 1);
    let expected = format!(
        "{}:3: node 1's public key does not match its private key in {}",
        keys.join("public-keys.txt").display(),
        keys.join("node-1.key").display()
    );
    assert!(
        error.starts_with(&expected),
        "{error}\nexpected: {expected}"
    );

    // Without `keys`, a PBFT node says how to make them.
    let file = pbft_cluster_file(&dir, "");
    let error = node_refusal(&file, 0);
    assert!(error.contains("run `rehearsal keygen --config"), "{error}");
    assert!(error.contains("keys = \"testbed\""), "{error}");
    // The simulated signatures have no key files.
    let file = pbft_cluster_file(&dir, "keys = \"keys\"\n[params]\ncrypto = \"sim\"");
    let error = node_refusal(&file, 0);
    assert!(error.contains("key files cannot serve it"), "{error}");
    // keygen refuses what it cannot serve, and never overwrites.
    let (status, _, err) = keygen(&[
        "--config",
        path_arg(&file),
        "--out",
        path_arg(&dir.join("k")),
    ]);
    assert_eq!(status, 2);
    assert!(err.contains("crypto = \"sim\""), "{err}");
    let (status, _, err) = keygen(&["--count", "5", "--out", path_arg(&keys)]);
    assert_eq!(status, 2);
    assert!(err.contains("already exists"), "{err}");
    let (status, _, err) = keygen(&["--out", path_arg(&keys)]);
    assert_eq!(status, 2);
    assert!(err.contains("--config"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn testbed_keys_derived_from_the_seed_still_run_a_pbft_cluster() {
    let args = ClusterArgs {
        testbed_keys: true,
        hosts: Default::default(),
        keep: true,
        ..pbft_args()
    };
    let (status, report, stderr) = run_cluster(&args);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["requests"], 3, "{report:#}");
    let dir = PathBuf::from(report["directory"].as_str().unwrap());
    let text = std::fs::read_to_string(dir.join("cluster.toml")).unwrap();
    assert!(text.contains("keys = \"testbed\""), "{text}");
    assert!(!dir.join("keys").exists());
    // Keys anyone with the file can derive would authenticate nothing: the connections
    // are plain.
    for node in report["per_node"].as_array().unwrap() {
        assert_eq!(node["summary"]["tcp_authenticated"], false, "{report:#}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// HotStuff's nodes sign as PBFT's do: on the key files `keygen` writes, and with
/// simulated signatures on keys derived from the seed.
fn hotstuff_clusters_run_on_keygen_keys_and_on_testbed_keys() {
    let dir = scratch_named("keys", "hotstuff");
    let keys = dir.join("keys");
    let (status, out, err) = keygen(&["--count", "5", "--out", path_arg(&keys)]);
    assert_eq!(status, 0, "{out}{err}");
    let args = ClusterArgs {
        keys: Some(keys),
        ..replicated_args(Protocol::of("hotstuff"))
    };
    let (status, report, stderr) = run_cluster(&args);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok");
    assert_eq!(report["requests"], 3, "{report:#}");
    assert_eq!(report["invariants_checked"], true);

    let args = ClusterArgs {
        crypto: Some("sim".into()),
        keep: true,
        ..replicated_args(Protocol::of("hotstuff"))
    };
    let (status, report, stderr) = run_cluster(&args);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["requests"], 3, "{report:#}");
    assert_eq!(report["invariants_checked"], true);
    let run = PathBuf::from(report["directory"].as_str().unwrap());
    let text = std::fs::read_to_string(run.join("cluster.toml")).unwrap();
    assert!(text.contains("keys = \"testbed\""), "{text}");
    std::fs::remove_dir_all(&run).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- Harness ------------------------------------------------------------------------------

const TESTS: &[(&str, fn())] = &[
    (
        "keygen_keys_run_a_pbft_cluster_over_tcp",
        keygen_keys_run_a_pbft_cluster_over_tcp,
    ),
    (
        "a_node_whose_private_key_does_not_match_its_public_key_is_refused",
        a_node_whose_private_key_does_not_match_its_public_key_is_refused,
    ),
    (
        "testbed_keys_derived_from_the_seed_still_run_a_pbft_cluster",
        testbed_keys_derived_from_the_seed_still_run_a_pbft_cluster,
    ),
    (
        "hotstuff_clusters_run_on_keygen_keys_and_on_testbed_keys",
        hotstuff_clusters_run_on_keygen_keys_and_on_testbed_keys,
    ),
];

fn main() -> ExitCode {
    rehearsal_tests::process::main(TESTS)
}
