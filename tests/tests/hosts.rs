//! Several hosts: `rehearsal cluster --config FILE` runs the nodes of a cluster file on the
//! hosts its `[[node]]` entries name, through a launcher (ssh by default), and
//! `--print-commands` prints each node's command for a launcher of the user's own.
//!
//! The hosts here are network namespaces of this machine (`rehearsal_hardware::netns`),
//! one per node, each with its own address on one bridge: nodes reach each other over a
//! real (virtual) Ethernet, over TCP and over DPDK's `af_packet` port, launched with `ip
//! netns exec {host}` or with ssh to an sshd in each namespace. Those tests need root (and
//! sshd, and the `dpdk` feature); without them they print `SKIPPED: ...` and return.
//! The tests without a namespace use the launcher `env REHEARSAL_TEST_HOST={host}`, which
//! runs each "host"'s commands here: the copy, launch, fetch and clean-up steps are the
//! same.
//!
//! As in `tests/cluster.rs`, this test binary plays the `rehearsal` program (run with
//! `node ...` or `cluster ...` arguments), and runs its tests one at a time otherwise.

use rehearsal_hardware::keys;
use rehearsal_tests::process::{
    children_of, cluster_args_of as cluster_args, run_cluster, scratch_named, this_program,
};
use rehearsal_tests::skip;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

// ---- Helpers ------------------------------------------------------------------------------

/// The launcher that runs a "host"'s commands on this machine.
const LOCAL_LAUNCHER: &str = "env REHEARSAL_TEST_HOST={host}";

/// One `[[node]]` of a test's cluster file.
struct Node<'a> {
    role: &'a str,
    address: Option<String>,
    dpdk: Option<(String, String)>,
    host: Option<String>,
}

fn cluster_file(
    dir: &Path,
    protocol: &str,
    params: &str,
    keys: Option<&str>,
    nodes: &[Node<'_>],
) -> PathBuf {
    let mut text = format!("protocol = \"{protocol}\"\nseed = 3\n");
    if let Some(keys) = keys {
        text += &format!("keys = \"{keys}\"\n");
    }
    text += &format!("[params]\n{params}\n");
    for (id, node) in nodes.iter().enumerate() {
        text += &format!("[[node]]\nid = {id}\nrole = \"{}\"\n", node.role);
        if let Some(address) = &node.address {
            text += &format!("address = \"{address}\"\n");
        }
        if let Some((port, mac)) = &node.dpdk {
            text += &format!("dpdk = {{ port = \"{port}\", mac = \"{mac}\" }}\n");
        }
        if let Some(host) = &node.host {
            text += &format!("host = \"{host}\"\n");
        }
    }
    let path = dir.join("cluster.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Nodes over TCP on free loopback ports, with these roles and hosts.
fn loopback_nodes(nodes: &[(&'static str, Option<&str>)]) -> Vec<Node<'static>> {
    loopback_addresses(nodes.len())
        .into_iter()
        .zip(nodes)
        .map(|(address, &(role, host))| Node {
            role,
            address: Some(address),
            dpdk: None,
            host: host.map(String::from),
        })
        .collect()
}

/// An unreplicated cluster file on loopback (`requests_per_client` if given), with these
/// roles and hosts.
fn unreplicated_file(
    dir: &Path,
    requests: Option<u64>,
    nodes: &[(&'static str, Option<&str>)],
) -> PathBuf {
    let params = requests
        .map(|n| format!("requests_per_client = {n}"))
        .unwrap_or_default();
    cluster_file(dir, "unreplicated", &params, None, &loopback_nodes(nodes))
}

/// Free loopback ports for `n` nodes.
fn loopback_addresses(n: usize) -> Vec<String> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect()
}

fn failures_of(report: &Value) -> Vec<String> {
    report["failures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

/// What a cluster run must show when it went well: every client's requests completed,
/// the invariants checked on every node's outputs, nothing failed.
fn assert_clean_run(report: &Value, stderr: &str, requests: u64) {
    assert_eq!(report["outcome"], "ok", "{report:#}\n{stderr}");
    assert_eq!(report["invariants_checked"], true, "{report:#}");
    assert!(
        report["violations"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert_eq!(report["requests"], requests, "{report:#}");
    assert!(
        report["outputs_checked"].as_u64().unwrap() >= requests,
        "{report:#}"
    );
}

/// Namespaces for a test, or the reason it skips.
#[cfg(target_os = "linux")]
fn test_net(test: &str, tag: &str, hosts: usize) -> Option<rehearsal_hardware::netns::TestNet> {
    use rehearsal_hardware::netns::{NetnsError, TestNet};
    match TestNet::create(tag, hosts) {
        Ok(net) => Some(net),
        Err(NetnsError::Unavailable(why)) => {
            skip(test, &why);
            None
        }
        Err(error) => panic!("{test}: {error}"),
    }
}

/// Network namespaces are Linux's.
#[cfg(not(target_os = "linux"))]
fn test_net(test: &str, _tag: &str, _hosts: usize) -> Option<FakeNet> {
    skip(test, "network namespaces are Linux's");
    None
}

/// What the namespace tests use of a test network, elsewhere than on Linux (never built).
#[cfg(not(target_os = "linux"))]
struct FakeNet;

#[cfg(not(target_os = "linux"))]
#[allow(dead_code)]
impl FakeNet {
    fn address(&self, _: usize) -> std::net::Ipv4Addr {
        unreachable!()
    }
    fn namespace(&self, _: usize) -> &str {
        unreachable!()
    }
    fn interface(&self, _: usize) -> &str {
        unreachable!()
    }
    fn mac(&self, _: usize) -> String {
        unreachable!()
    }
    fn exec_prefix(&self, _: usize) -> Vec<String> {
        unreachable!()
    }
}

/// The processes still in a namespace (`ip netns pids`).
fn pids_in(namespace: &str) -> String {
    let output = Command::new("ip")
        .args(["netns", "pids", namespace])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A PBFT cluster of 4 replicas and 1 client, one per host, on TCP port 7000 of each
/// host's address, with a key directory `keys` beside the file.
fn pbft_on_hosts(dir: &Path, addresses: &[String], hosts: &[String], requests: u64) -> PathBuf {
    keys::generate(&dir.join("keys"), 5).unwrap();
    let nodes: Vec<Node<'_>> = (0..5)
        .map(|i| Node {
            role: if i < 4 { "replica" } else { "client" },
            address: Some(format!("{}:7000", addresses[i])),
            dpdk: None,
            host: Some(hosts[i].clone()),
        })
        .collect();
    cluster_file(
        dir,
        "pbft",
        &format!("requests_per_client = {requests}"),
        Some("keys"),
        &nodes,
    )
}

// ---- Without namespaces -------------------------------------------------------------------

fn print_commands_give_each_node_its_host_and_command() {
    let dir = scratch_named("hosts", "print");
    let file = unreplicated_file(
        &dir,
        None,
        &[
            ("server", Some("alice@10.0.0.5")),
            ("client", Some("bob@10.0.0.6")),
            ("client", None),
        ],
    );
    let file_text = file.to_str().unwrap();
    let run = rehearsal_tests::cli(&["cluster", "--config", file_text, "--print-commands"]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let dir_text = dir.to_str().unwrap();
    let expected: Vec<String> = [("alice@10.0.0.5", 0), ("bob@10.0.0.6", 1), ("-", 2)]
        .iter()
        .map(|(host, id)| {
            format!(
                "{host}\trehearsal node --config {file_text} --id {id} --transport tcp --json \
                 --outputs {dir_text}/outputs-{id}.jsonl --state {dir_text}/state-{id}.bin"
            )
        })
        .collect();
    assert_eq!(run.stdout.lines().collect::<Vec<_>>(), expected);

    // Paths of the user's choosing.
    let mut words = vec!["cluster", "--config", file_text, "--print-commands"];
    words.extend([
        "--remote-dir",
        "/srv/r",
        "--node-binary",
        "/opt/bin/rehearsal",
    ]);
    words.extend(["--state-dir", "/var/lib/r"]);
    let run = rehearsal_tests::cli(&[&words[..], &["--transport", "dpdk"]].concat());
    // Over DPDK every node needs its `dpdk` settings: the file has none.
    assert_eq!(run.status, 2, "{}", run.stdout);
    assert!(
        run.stderr.contains("node 0: has no `dpdk` settings"),
        "{}",
        run.stderr
    );
    let run = rehearsal_tests::cli(&words);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let first = run.stdout.lines().next().unwrap();
    assert_eq!(
        first,
        "alice@10.0.0.5\t/opt/bin/rehearsal node --config /srv/r/cluster.toml --id 0 --transport \
         tcp --json --outputs /srv/r/outputs-0.jsonl --state /var/lib/r/state-0.bin"
    );
    // Without state files.
    let run = rehearsal_tests::cli(&[
        "cluster",
        "--config",
        file_text,
        "--print-commands",
        "--no-state",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.lines().all(|line| !line.contains("--state")),
        "{}",
        run.stdout
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn flags_the_cluster_file_fixes_and_bad_hosts_or_launchers_are_refused() {
    let dir = scratch_named("hosts", "refusals");
    let file = unreplicated_file(&dir, Some(5), &[("server", Some("a")), ("client", None)]);
    let file_text = file.to_str().unwrap();
    for flag in [
        &["--nodes", "4"][..],
        &["--protocol", "pbft"],
        &["--seed", "9"],
        &["--param", "x=1"],
        &["--testbed-keys"],
    ] {
        let mut words = vec!["cluster", "--config", file_text];
        words.extend_from_slice(flag);
        let run = rehearsal_tests::cli(&words);
        assert_eq!(run.status, 2, "{flag:?}: {}", run.stdout);
        assert!(
            run.stderr.contains("--config")
                && run.stderr.contains(flag[0])
                && run.stderr.contains("cannot be used with"),
            "{flag:?}: {}",
            run.stderr
        );
    }
    for flag in ["--launcher", "--remote-dir"] {
        let run = rehearsal_tests::cli(&["cluster", flag, "x"]);
        assert_eq!(run.status, 2);
        assert!(run.stderr.contains("--config"), "{flag}: {}", run.stderr);
    }
    let run = rehearsal_tests::cli(&["cluster", "--config", file_text, "--launcher", "ssh"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("--launcher `ssh` has no {host}"),
        "{}",
        run.stderr
    );
    let run = rehearsal_tests::cli(&["cluster", "--config", file_text, "--remote-dir", "/tmp/a b"]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains("--remote-dir `/tmp/a b`"),
        "{}",
        run.stderr
    );

    let bad = std::fs::read_to_string(&file)
        .unwrap()
        .replace("host = \"a\"", "host = \"-oProxyCommand=x\"");
    std::fs::write(&file, bad).unwrap();
    let run = rehearsal_tests::cli(&["cluster", "--config", file_text]);
    assert_eq!(run.status, 2);
    assert!(
        run.stderr.contains(&format!(
            "{file_text}:5:1: node 0: host: `-oProxyCommand=x` starts with `-`"
        )),
        "{}",
        run.stderr
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Nodes on two "hosts" (here, through `env`): the files are copied to the remote
/// directory, the nodes run, their outputs come back and are checked, and the remote
/// directory is removed (kept with --keep).
fn nodes_on_hosts_get_their_files_and_send_their_outputs_back() {
    let dir = scratch_named("hosts", "local-launcher");
    let file = unreplicated_file(
        &dir,
        Some(30),
        &[
            ("server", Some("alpha")),
            ("client", Some("beta")),
            ("client", None),
        ],
    );
    let remote = dir.join("remote");
    let state = dir.join("state");
    let words = [
        "--config",
        file.to_str().unwrap(),
        "--launcher",
        LOCAL_LAUNCHER,
        "--remote-dir",
        remote.to_str().unwrap(),
        "--state-dir",
        state.to_str().unwrap(),
        "--duration",
        "30s",
    ];
    let (status, report, stderr) = run_cluster(&cluster_args(&words));
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_clean_run(&report, &stderr, 60);
    let hosts: Vec<&Value> = report["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["host"])
        .collect();
    assert_eq!(
        hosts,
        [&Value::from("alpha"), &Value::from("beta"), &Value::Null]
    );
    // The hosts' directories go; the directory the user named stays.
    assert!(remote.is_dir() && std::fs::read_dir(&remote).unwrap().next().is_none());
    assert!(state.is_dir(), "--state-dir stays");

    let mut kept = cluster_args(&words);
    kept.keep = true;
    let (status, report, stderr) = run_cluster(&kept);
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["remote_directory"], remote.to_str().unwrap());
    // Each host's files in a directory of its own.
    for name in [
        "alpha/cluster.toml",
        "alpha/outputs-0.jsonl",
        "beta/cluster.toml",
        "beta/outputs-1.jsonl",
    ] {
        assert!(remote.join(name).is_file(), "{name} kept");
    }
    // The fetched outputs are the node's own.
    let fetched = Path::new(report["directory"].as_str().unwrap()).join("outputs-1.jsonl");
    let original = std::fs::read(remote.join("beta/outputs-1.jsonl")).unwrap();
    assert!(!original.is_empty());
    assert_eq!(std::fs::read(&fetched).unwrap(), original);
    std::fs::remove_dir_all(report["directory"].as_str().unwrap()).unwrap();
    assert!(children_of(std::process::id()).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A launcher that fails, and a node program missing on its host: the run fails at once,
/// naming the node and its host, and leaves no process behind.
fn a_failing_launcher_names_the_node_and_its_host() {
    let dir = scratch_named("hosts", "failing-launcher");
    let file = unreplicated_file(
        &dir,
        Some(5),
        &[("server", Some("alpha")), ("client", Some("beta"))],
    );
    let file_text = file.to_str().unwrap();
    let began = Instant::now();
    let (status, report, _) = run_cluster(&cluster_args(&[
        "--config",
        file_text,
        "--launcher",
        "false {host}",
    ]));
    assert_eq!(status, 1, "{report:#}");
    let failures = failures_of(&report);
    assert!(
        failures.iter().any(|f| f.starts_with("cannot copy the cluster's files to host alpha (through `false alpha`) for node 0: `false alpha install -D -m 644 /dev/stdin ")),
        "{failures:#?}"
    );
    assert!(
        failures
            .iter()
            .any(|f| f.contains("host beta") && f.contains("node 1")),
        "{failures:#?}"
    );
    assert!(
        began.elapsed() < Duration::from_secs(20),
        "{:?}",
        began.elapsed()
    );

    let mut args = cluster_args(&["--config", file_text, "--launcher", LOCAL_LAUNCHER]);
    args.node_binary = Some(PathBuf::from("/no/such/rehearsal"));
    let (status, report, _) = run_cluster(&args);
    assert_eq!(status, 1, "{report:#}");
    let failures = failures_of(&report);
    assert!(
        failures[0].starts_with("node 0 on host alpha (through `env REHEARSAL_TEST_HOST=alpha`) exited before it was ready (exit status: 127)")
            || failures[0].starts_with("node 1 on host beta (through `env REHEARSAL_TEST_HOST=beta`) exited before it was ready (exit status: 127)"),
        "{failures:#?}"
    );
    assert!(failures[0].contains("/no/such/rehearsal"), "{failures:#?}");
    assert!(
        began.elapsed() < Duration::from_secs(40),
        "{:?}",
        began.elapsed()
    );
    assert!(children_of(std::process::id()).is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

// ---- In network namespaces ----------------------------------------------------------------

/// PBFT, 4 replicas and 1 client, each in a namespace of its own (its own address),
/// launched with `ip netns exec {host}`; state files in --state-dir.
fn pbft_over_tcp_with_one_node_per_namespace() {
    let test = "hosts::pbft_over_tcp_with_one_node_per_namespace";
    let Some(net) = test_net(test, "hosts_tcp", 5) else {
        return;
    };
    let dir = scratch_named("hosts", "netns-tcp");
    let addresses: Vec<String> = (0..5).map(|i| net.address(i).to_string()).collect();
    let hosts: Vec<String> = (0..5).map(|i| net.namespace(i).to_string()).collect();
    let file = pbft_on_hosts(&dir, &addresses, &hosts, 20);
    let state = dir.join("state");
    let began = Instant::now();
    let (status, report, stderr) = run_cluster(&cluster_args(&[
        "--config",
        file.to_str().unwrap(),
        "--launcher",
        "ip netns exec {host}",
        "--state-dir",
        state.to_str().unwrap(),
        "--duration",
        "60s",
    ]));
    let took = began.elapsed();
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_clean_run(&report, &stderr, 20);
    for (i, node) in report["per_node"].as_array().unwrap().iter().enumerate() {
        assert_eq!(node["host"], hosts[i].as_str());
        // Authenticated connections, with the keys copied to each host.
        assert_eq!(node["summary"]["tcp_authenticated"], true, "{node}");
    }
    // The client saves its progress after every reply.
    assert!(
        state.join("state-4.bin").is_file(),
        "the client's state file"
    );
    for host in &hosts {
        assert_eq!(pids_in(host), "", "a process is left in {host}");
    }
    assert!(children_of(std::process::id()).is_empty());
    eprintln!("{test}: {took:?} for 20 requests");
    drop(net);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The launcher killed with SIGKILL in the middle of a run: the nodes in the namespaces
/// see their stdin close and stop; none is left behind.
fn a_killed_launcher_leaves_no_node_on_its_hosts() {
    let test = "hosts::a_killed_launcher_leaves_no_node_on_its_hosts";
    let Some(net) = test_net(test, "hosts_kill", 3) else {
        return;
    };
    let dir = scratch_named("hosts", "netns-kill");
    let nodes: Vec<Node<'_>> = (0..3)
        .map(|i| Node {
            role: if i == 0 { "server" } else { "client" },
            address: Some(format!("{}:7000", net.address(i))),
            dpdk: None,
            host: Some(net.namespace(i).to_string()),
        })
        .collect();
    // No request budget: the clients run until the launcher stops them.
    let file = cluster_file(&dir, "unreplicated", "", None, &nodes);
    let remote = dir.join("remote");
    let mut launcher = Command::new(this_program())
        .args([
            "cluster",
            "--config",
            file.to_str().unwrap(),
            "--launcher",
            "ip netns exec {host}",
        ])
        .args([
            "--duration",
            "120s",
            "--json",
            "--remote-dir",
            remote.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let namespaces: Vec<String> = (0..3).map(|i| net.namespace(i).to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while namespaces.iter().any(|ns| pids_in(ns).is_empty()) {
        assert!(Instant::now() < deadline, "the nodes did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let them run a moment, then kill the launcher outright.
    std::thread::sleep(Duration::from_millis(500));
    launcher.kill().unwrap();
    launcher.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while namespaces.iter().any(|ns| !pids_in(ns).is_empty()) {
        assert!(
            Instant::now() < deadline,
            "nodes left: {:?}",
            namespaces.iter().map(|ns| pids_in(ns)).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // A launcher killed outright cannot remove its working directory: the test does.
    let prefix = format!("rehearsal-cluster-{}-", launcher.id());
    for entry in std::fs::read_dir(std::env::temp_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
    drop(net);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// sshd started in each namespace, with a host key and an authorized key made here; the
/// launcher itself runs in a sixth namespace and reaches the hosts with ssh.
fn pbft_over_ssh_with_one_sshd_per_namespace() {
    let test = "hosts::pbft_over_ssh_with_one_sshd_per_namespace";
    let sshd = Path::new("/usr/sbin/sshd");
    let have = |program: &str| Command::new(program).arg("-V").output().is_ok();
    if !sshd.is_file() || !have("ssh") || !have("ssh-keygen") {
        skip(test, "needs openssh-server and openssh-client (apt-get install openssh-server openssh-client)");
        return;
    }
    let Some(net) = test_net(test, "hosts_ssh", 6) else {
        return;
    };
    let dir = scratch_named("hosts", "netns-ssh");
    let keygen = |path: &Path| {
        let status = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(path)
            .status()
            .unwrap();
        assert!(status.success());
    };
    let host_key = dir.join("host_key");
    let user_key = dir.join("user_key");
    keygen(&host_key);
    keygen(&user_key);
    std::fs::copy(dir.join("user_key.pub"), dir.join("authorized_keys")).unwrap();
    // sshd's privilege separation directory, which its service would make.
    std::fs::create_dir_all("/run/sshd").unwrap();
    let mut daemons = Vec::new();
    for i in 0..5 {
        let config = dir.join(format!("sshd-{i}.conf"));
        std::fs::write(
            &config,
            format!(
                "ListenAddress {}:22\nHostKey {}\nAuthorizedKeysFile {}\nPidFile none\n\
                 StrictModes no\nUsePAM no\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\n",
                net.address(i),
                host_key.display(),
                dir.join("authorized_keys").display()
            ),
        )
        .unwrap();
        let mut words = net.exec_prefix(i);
        words.extend(
            [
                sshd.to_str().unwrap(),
                "-D",
                "-e",
                "-f",
                config.to_str().unwrap(),
            ]
            .map(String::from),
        );
        let log = std::fs::File::create(dir.join(format!("sshd-{i}.log"))).unwrap();
        let child = Command::new(&words[0])
            .args(&words[1..])
            .stdin(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        daemons.push(KillOnDrop(child));
    }
    let ssh_config = dir.join("ssh_config");
    std::fs::write(
        &ssh_config,
        format!(
            "Host *\n  IdentityFile {}\n  IdentitiesOnly yes\n  UserKnownHostsFile {}\n  \
             StrictHostKeyChecking accept-new\n  ConnectTimeout 10\n  LogLevel ERROR\n",
            user_key.display(),
            dir.join("known_hosts").display()
        ),
    )
    .unwrap();
    let launcher = format!("ssh -F {} -o BatchMode=yes {{host}}", ssh_config.display());
    let hosts: Vec<String> = (0..5).map(|i| format!("root@{}", net.address(i))).collect();
    // Every sshd answers before the cluster starts.
    let control = net.exec_prefix(5);
    for host in &hosts {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let mut words = control.clone();
            words.extend(
                launcher
                    .replace("{host}", host)
                    .split(' ')
                    .map(String::from),
            );
            words.push("true".into());
            let output = Command::new(&words[0]).args(&words[1..]).output().unwrap();
            if output.status.success() {
                break;
            }
            if Instant::now() >= deadline {
                let logs: String = (0..5)
                    .map(|i| {
                        std::fs::read_to_string(dir.join(format!("sshd-{i}.log")))
                            .unwrap_or_default()
                    })
                    .collect();
                panic!(
                    "ssh {host}: {}\nsshd logs:\n{logs}",
                    String::from_utf8_lossy(&output.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let addresses: Vec<String> = (0..5).map(|i| net.address(i).to_string()).collect();
    let file = pbft_on_hosts(&dir, &addresses, &hosts, 20);
    // The launcher runs in the sixth namespace, as `rehearsal cluster` on another machine.
    let mut words = control.clone();
    words.extend(
        [
            this_program().to_str().unwrap(),
            "cluster",
            "--config",
            file.to_str().unwrap(),
            "--launcher",
            &launcher,
            "--node-binary",
            this_program().to_str().unwrap(),
            "--duration",
            "60s",
            "--json",
        ]
        .map(String::from),
    );
    let began = Instant::now();
    let output = Command::new(&words[0]).args(&words[1..]).output().unwrap();
    let took = began.elapsed();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert!(output.status.success(), "{report:#}\n{stderr}");
    assert_clean_run(&report, &stderr, 20);
    for (i, node) in report["per_node"].as_array().unwrap().iter().enumerate() {
        assert_eq!(node["host"], hosts[i].as_str());
    }
    // ssh left no node behind (the sshd are the only processes in the namespaces).
    drop(daemons);
    for i in 0..6 {
        assert_eq!(
            pids_in(net.namespace(i)),
            "",
            "a process is left in host {i}"
        );
    }
    eprintln!("{test}: {took:?} for 20 requests");
    drop(net);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Kills (and reaps) a helper process of a test when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Nodes with these roles, one per namespace of `net`, on DPDK `af_packet` ports bound to
/// the namespaces' veths (`mac` = the veth's).
#[cfg(target_os = "linux")]
fn af_packet_nodes(
    net: &rehearsal_hardware::netns::TestNet,
    roles: &[&'static str],
) -> Vec<Node<'static>> {
    roles
        .iter()
        .enumerate()
        .map(|(i, &role)| Node {
            role,
            address: None,
            dpdk: Some((
                format!("net_af_packet0,iface={}", net.interface(i)),
                net.mac(i),
            )),
            host: Some(net.namespace(i).to_string()),
        })
        .collect()
}

/// Runs `file` over DPDK with one node per namespace of `net`, launched with `ip netns
/// exec`, and checks that it ran clean with `requests` completed and left no process.
#[cfg(target_os = "linux")]
fn run_over_dpdk(test: &str, net: &rehearsal_hardware::netns::TestNet, file: &Path, requests: u64) {
    let began = Instant::now();
    let (status, report, stderr) = run_cluster(&cluster_args(&[
        "--config",
        file.to_str().unwrap(),
        "--transport",
        "dpdk",
        "--launcher",
        "ip netns exec {host}",
        "--duration",
        "60s",
    ]));
    let took = began.elapsed();
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_clean_run(&report, &stderr, requests);
    assert_eq!(report["transport"], "dpdk");
    for i in 0..net.hosts() {
        assert_eq!(
            pids_in(net.namespace(i)),
            "",
            "a process is left in host {i}"
        );
    }
    eprintln!("{test}: {took:?} for {requests} requests");
}

/// An unreplicated server and two clients, each in its namespace, over DPDK `af_packet`.
fn unreplicated_over_dpdk_af_packet_with_one_node_per_namespace() {
    let test = "hosts::unreplicated_over_dpdk_af_packet_with_one_node_per_namespace";
    if !cfg!(feature = "dpdk") {
        skip(test, "needs the dpdk feature (cargo test --features dpdk)");
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let Some(net) = test_net(test, "hosts_dpdk", 3) else {
            return;
        };
        let dir = scratch_named("hosts", "netns-dpdk");
        let nodes = af_packet_nodes(&net, &["server", "client", "client"]);
        let file = cluster_file(
            &dir,
            "unreplicated",
            "requests_per_client = 100",
            None,
            &nodes,
        );
        run_over_dpdk(test, &net, &file, 200);
        drop(net);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

/// PBFT, 4 replicas and 1 client, each in its namespace, over DPDK `af_packet`, with key
/// files for its signatures (DPDK frames themselves are not authenticated).
fn pbft_over_dpdk_af_packet_with_one_node_per_namespace() {
    let test = "hosts::pbft_over_dpdk_af_packet_with_one_node_per_namespace";
    if !cfg!(feature = "dpdk") {
        skip(test, "needs the dpdk feature (cargo test --features dpdk)");
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let Some(net) = test_net(test, "hosts_dpdk_pbft", 5) else {
            return;
        };
        let dir = scratch_named("hosts", "netns-dpdk-pbft");
        keys::generate(&dir.join("keys"), 5).unwrap();
        let nodes = af_packet_nodes(
            &net,
            &["replica", "replica", "replica", "replica", "client"],
        );
        let file = cluster_file(
            &dir,
            "pbft",
            "requests_per_client = 20",
            Some("keys"),
            &nodes,
        );
        run_over_dpdk(test, &net, &file, 20);
        drop(net);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

// ---- --scenario: the scenario file as a nemesis ------------------------------------------

/// The scenario's lines as the report gives them: (line, command, planned, applied, ok).
fn scenario_actions(report: &Value) -> Vec<(u64, String, u64, u64, bool)> {
    report["scenario"]["actions"]
        .as_array()
        .unwrap_or_else(|| panic!("no scenario in the report: {report:#}"))
        .iter()
        .map(|a| {
            let ok = a["steps"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["ok"] == true);
            (
                a["line"].as_u64().unwrap(),
                a["command"].as_str().unwrap().to_string(),
                a["planned_ns"].as_u64().unwrap(),
                a["applied_ns"].as_u64().unwrap(),
                ok,
            )
        })
        .collect()
}

/// A PBFT cluster on loopback driven by a scenario of process faults: a backup crashed
/// with SIGKILL and restarted from its state file, another paused and resumed, a third's
/// clock skewed. The run passes its safety checks on every process's outputs (the crashed
/// one's included), the restarted process executes requests, and each line was applied
/// at or after its time, in order.
fn a_scenario_crashes_restarts_pauses_and_skews_nodes_of_a_loopback_cluster() {
    let dir = scratch_named("hosts", "scenario-loopback");
    let scenario = dir.join("faults.scenario");
    std::fs::write(
        &scenario,
        "@1s crash 2\n@2.5s restart 2\n@3s pause 1\n@3.5s resume 1\n@4s skew 3 +50ms\n",
    )
    .unwrap();
    let plot = dir.join("run.svg");
    let (status, report, stderr) = run_cluster(&cluster_args(&[
        "--protocol",
        "pbft",
        "--clients",
        "2",
        "--crypto",
        "sim",
        "--duration",
        "6s",
        "--scenario",
        scenario.to_str().unwrap(),
        "--plot",
        plot.to_str().unwrap(),
    ]));
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok", "{report:#}\n{stderr}");
    assert_eq!(report["invariants_checked"], true, "{report:#}");
    assert!(
        report["violations"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(report["requests"].as_u64().unwrap() > 0, "{report:#}");
    let actions = scenario_actions(&report);
    let commands: Vec<&str> = actions.iter().map(|a| a.1.as_str()).collect();
    assert_eq!(
        commands,
        [
            "crash 2",
            "restart 2",
            "pause 1",
            "resume 1",
            "skew 3 +50ms +0ppm"
        ],
        "{report:#}"
    );
    let mut last_applied = 0;
    for (line, command, planned, applied, ok) in &actions {
        assert!(ok, "line {line} `{command}` failed: {report:#}");
        assert!(applied >= planned && *applied >= last_applied, "{report:#}");
        last_applied = *applied;
    }
    // Node 2 ran twice: killed by SIGKILL, then restarted, and the restart executed.
    let runs: Vec<&Value> = report["per_node"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["node"] == 2)
        .collect();
    assert_eq!(runs.len(), 2, "{report:#}");
    assert_eq!(runs[0]["signal"], 9, "{report:#}");
    assert!(
        runs[1]["summary"]["requests_executed"].as_u64().unwrap() > 0,
        "{report:#}"
    );
    // The space-time diagram: a mark for every output checked (the crashed process's
    // included) and for every scenario line, where it was applied.
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    let output_marks = svg
        .match_indices("<title>")
        .filter(|(at, _)| {
            svg[*at..]
                .split("</title>")
                .next()
                .unwrap()
                .contains("output")
        })
        .count() as u64;
    assert_eq!(output_marks, report["outputs_checked"].as_u64().unwrap());
    for line in [
        "line 1: crash 2",
        "line 2: restart 2",
        "line 5: skew 3 +50ms",
    ] {
        assert!(svg.contains(line), "no mark for `{line}`");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// What a scenario cannot do on a real cluster is refused before any node starts, naming
/// the file and line: a simulator-only command, a cut between nodes that share an
/// address (a cluster on loopback), a restart without state files, a missing file.
fn scenarios_a_real_cluster_cannot_run_are_refused_before_it_starts() {
    let dir = scratch_named("hosts", "scenario-refused");
    for (name, text, flags, expected) in [
        ("byzantine", "@1s byzantine 1 equivocate\n", &[][..], ":1"),
        (
            "cut",
            "@0 annotate x\n@1s partition 0 | 1,2,3\n",
            &[][..],
            ":2",
        ),
        (
            "no-state",
            "@1s crash 1\n@2s restart 1\n",
            &["--no-state"][..],
            ":2",
        ),
    ] {
        let scenario = dir.join(format!("{name}.scenario"));
        std::fs::write(&scenario, text).unwrap();
        let mut words = vec![
            "--protocol",
            "pbft",
            "--duration",
            "5s",
            "--scenario",
            scenario.to_str().unwrap(),
        ];
        words.extend(flags);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let began = Instant::now();
        let error = rehearsal::cluster::cluster(&cluster_args(&words), &mut out, &mut err)
            .expect_err(name)
            .to_string();
        let origin = format!("{}{expected}", scenario.display());
        assert!(error.contains(&origin), "{name}: {error}");
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "{name}: no node should start"
        );
    }
    let missing = dir.join("missing.scenario");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let error = rehearsal::cluster::cluster(
        &cluster_args(&["--scenario", missing.to_str().unwrap()]),
        &mut out,
        &mut err,
    )
    .expect_err("a missing scenario file")
    .to_string();
    assert!(error.contains(missing.to_str().unwrap()), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The README's scenario on a real network: a PBFT cluster, one node per namespace, whose
/// primary (replica 0) is isolated by nftables rules at 1 s and healed at 4 s. The others
/// change view and go on; the run passes its safety checks; both lines were applied on
/// every host they concern, and no table of ours is left on any host.
fn pbft_primary_isolated_then_healed_in_namespaces() {
    let test = "hosts::pbft_primary_isolated_then_healed_in_namespaces";
    if !Command::new("nft")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        skip(test, "needs `nft` (nftables)");
        return;
    }
    let Some(net) = test_net(test, "hosts_nemesis", 5) else {
        return;
    };
    let dir = scratch_named("hosts", "scenario-netns");
    let addresses: Vec<String> = (0..5).map(|i| net.address(i).to_string()).collect();
    let hosts: Vec<String> = (0..5).map(|i| net.namespace(i).to_string()).collect();
    let file = pbft_on_hosts(&dir, &addresses, &hosts, 1_000_000);
    let scenario = dir.join("isolate.scenario");
    std::fs::write(&scenario, "@1s isolate 0\n@4s heal\n").unwrap();
    let (status, report, stderr) = run_cluster(&cluster_args(&[
        "--config",
        file.to_str().unwrap(),
        "--launcher",
        "ip netns exec {host}",
        "--duration",
        "8s",
        "--scenario",
        scenario.to_str().unwrap(),
    ]));
    assert_eq!(status, 0, "{report:#}\n{stderr}");
    assert_eq!(report["outcome"], "ok", "{report:#}\n{stderr}");
    assert!(
        report["violations"].as_array().unwrap().is_empty(),
        "{report:#}"
    );
    assert!(report["requests"].as_u64().unwrap() > 0, "{report:#}");
    let actions = scenario_actions(&report);
    assert_eq!(actions.len(), 2, "{report:#}");
    assert!(actions.iter().all(|a| a.4), "{report:#}");
    // (`isolate 0` is the partition that puts node 0 alone.)
    assert_eq!(actions[0].1, "partition 0 | 1,2,3,4", "{report:#}");
    assert_eq!(actions[1].1, "heal", "{report:#}");
    // Isolating node 0 installs rules on every host (each drops what comes from or goes
    // to node 0 at its input).
    let steps = report["scenario"]["actions"][0]["steps"]
        .as_array()
        .unwrap();
    assert!(steps.len() >= 5, "{report:#}");
    for host in &hosts {
        let tables = Command::new("ip")
            .args(["netns", "exec", host, "nft", "list", "tables"])
            .output()
            .unwrap();
        let tables = String::from_utf8_lossy(&tables.stdout);
        assert!(!tables.contains("rehearsal"), "{host}: {tables}");
    }
    eprintln!(
        "{test}: {} requests, isolate applied at {} ns, heal at {} ns",
        report["requests"], actions[0].3, actions[1].3
    );
    drop(net);
    std::fs::remove_dir_all(&dir).unwrap();
}

const TESTS: &[(&str, fn())] = &[
    (
        "print_commands_give_each_node_its_host_and_command",
        print_commands_give_each_node_its_host_and_command,
    ),
    (
        "flags_the_cluster_file_fixes_and_bad_hosts_or_launchers_are_refused",
        flags_the_cluster_file_fixes_and_bad_hosts_or_launchers_are_refused,
    ),
    (
        "nodes_on_hosts_get_their_files_and_send_their_outputs_back",
        nodes_on_hosts_get_their_files_and_send_their_outputs_back,
    ),
    (
        "a_failing_launcher_names_the_node_and_its_host",
        a_failing_launcher_names_the_node_and_its_host,
    ),
    (
        "pbft_over_tcp_with_one_node_per_namespace",
        pbft_over_tcp_with_one_node_per_namespace,
    ),
    (
        "a_killed_launcher_leaves_no_node_on_its_hosts",
        a_killed_launcher_leaves_no_node_on_its_hosts,
    ),
    (
        "pbft_over_ssh_with_one_sshd_per_namespace",
        pbft_over_ssh_with_one_sshd_per_namespace,
    ),
    (
        "unreplicated_over_dpdk_af_packet_with_one_node_per_namespace",
        unreplicated_over_dpdk_af_packet_with_one_node_per_namespace,
    ),
    (
        "pbft_over_dpdk_af_packet_with_one_node_per_namespace",
        pbft_over_dpdk_af_packet_with_one_node_per_namespace,
    ),
    (
        "a_scenario_crashes_restarts_pauses_and_skews_nodes_of_a_loopback_cluster",
        a_scenario_crashes_restarts_pauses_and_skews_nodes_of_a_loopback_cluster,
    ),
    (
        "scenarios_a_real_cluster_cannot_run_are_refused_before_it_starts",
        scenarios_a_real_cluster_cannot_run_are_refused_before_it_starts,
    ),
    (
        "pbft_primary_isolated_then_healed_in_namespaces",
        pbft_primary_isolated_then_healed_in_namespaces,
    ),
];

fn main() -> ExitCode {
    rehearsal_tests::process::main(TESTS)
}
