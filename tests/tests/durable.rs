//! Durable state on real transports: `rehearsal node --state FILE` keeps a node's durable
//! state in FILE, replaced atomically, and a PBFT or HotStuff replica killed with SIGKILL in
//! the middle of a run restarts from it.
//!
//! Real processes on loopback: this binary plays `rehearsal` (see `cluster.rs`), and runs
//! its tests with the small harness of `rehearsal_tests::process` (`harness = false`).

use rehearsal::cluster::{self, NodeArgs, TransportArg};
use rehearsal_hardware::{load_state, save_state};
use rehearsal_sim_core::NodeId;
use rehearsal_tests::process::{main_with_ignored, scratch_named, this_program, IgnoredTest};
use serde_json::Value;
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

// ---- Helpers ------------------------------------------------------------------------------

/// Generous for a loaded two-core machine, and finite: every wait below is on a condition,
/// and this is only how long the condition may take.
const TEST_LIMIT: Duration = Duration::from_secs(180);

/// How often a wait looks at its condition.
const POLL: Duration = Duration::from_millis(50);

const REPLICAS: u32 = 4;
const CLIENT: u32 = 4;

/// A PBFT cluster file of 4 replicas and 1 client on loopback, on ports free a moment ago,
/// with testbed keys (derived from the seed: no key files to write).
fn pbft_cluster_file(dir: &Path) -> PathBuf {
    cluster_file(dir, "pbft")
}

/// A cluster file of `protocol` with 4 replicas and 1 client, as [`pbft_cluster_file`].
fn cluster_file(dir: &Path, protocol: &str) -> PathBuf {
    let mut text = format!("protocol = \"{protocol}\"\nseed = 1\nkeys = \"testbed\"\n");
    // Every listener is held until all ports are chosen, so no two nodes get one port.
    let listeners: Vec<std::net::TcpListener> = (0..=CLIENT)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    for (id, listener) in (0..=CLIENT).zip(&listeners) {
        let port = listener.local_addr().unwrap().port();
        let role = if id < REPLICAS { "replica" } else { "client" };
        text +=
            &format!("[[node]]\nid = {id}\nrole = \"{role}\"\naddress = \"127.0.0.1:{port}\"\n");
    }
    let file = dir.join("cluster.toml");
    std::fs::write(&file, text).unwrap();
    file
}

/// `rehearsal node` arguments for node `id` of `file`, running until stopped.
fn node_args(file: &Path, id: u32, state: Option<PathBuf>) -> NodeArgs {
    NodeArgs {
        config: file.to_path_buf(),
        id,
        transport: TransportArg::Tcp,
        duration: None,
        outputs: None,
        json: true,
        controlled: false,
        state,
    }
}

/// One `rehearsal node` process, its stdout lines read on a thread of their own (so that
/// a wait never blocks on a silent node).
struct NodeProcess {
    id: u32,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl NodeProcess {
    fn spawn(file: &Path, id: u32, state: Option<&Path>, outputs: &Path) -> NodeProcess {
        let mut command = Command::new(this_program());
        command
            .args(["node", "--config"])
            .arg(file)
            .args(["--id", &id.to_string(), "--json", "--outputs"])
            .arg(outputs)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(state) = state {
            command.arg("--state").arg(state);
        }
        let mut child = command.spawn().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        NodeProcess {
            id,
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for the node's `ready` line; panics with its stderr if it exits first.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + TEST_LIMIT;
        while Instant::now() < deadline {
            if let Ok(line) = self.lines.recv_timeout(POLL) {
                let ready = line.contains("\"event\":\"ready\"");
                self.seen.push(line);
                if ready {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                let stderr = self.stderr();
                panic!(
                    "node {} exited ({status}) before it was ready: {stderr}",
                    self.id
                );
            }
        }
        panic!("node {} not ready within {TEST_LIMIT:?}", self.id);
    }

    /// SIGKILL: the process dies between any two instructions, as in a power cut.
    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, then its summary line.
    fn stop(mut self) -> Value {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + TEST_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert!(status.success(), "node {}: {status}", self.id);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} did not stop within {TEST_LIMIT:?}",
                self.id
            );
            std::thread::sleep(POLL);
        }
        // The reader thread ends at the end of stdout, after the summary.
        self.seen.extend(self.lines.iter());
        let last = self.seen.last().cloned().unwrap_or_default();
        let summary: Value = serde_json::from_str(&last)
            .unwrap_or_else(|e| panic!("node {}: no summary ({e}): {:?}", self.id, self.seen));
        assert_eq!(summary["event"], "summary", "{summary}");
        summary
    }

    /// Waits for the node to exit by itself; its status, summary line and stderr.
    fn exited(mut self) -> (std::process::ExitStatus, Value, String) {
        let mut status = None;
        wait_for(&format!("node {} exits", self.id), || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        self.seen.extend(self.lines.iter());
        let last = self.seen.last().cloned().unwrap_or_default();
        let summary = serde_json::from_str(&last).unwrap_or(Value::Null);
        let stderr = self.stderr();
        (status.unwrap(), summary, stderr)
    }

    fn stderr(&mut self) -> String {
        let mut text = String::new();
        if let Some(mut stderr) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut stderr, &mut text);
        }
        text
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        // A failed test leaves no process behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts the replicas, each with its state file, then the client once they are ready;
/// returns them ready (a replica is `None` once killed).
fn launch(
    file: &Path,
    state: &dyn Fn(u32) -> PathBuf,
    outputs_of: &dyn Fn(u32) -> PathBuf,
) -> (Vec<Option<NodeProcess>>, NodeProcess) {
    let mut replicas: Vec<Option<NodeProcess>> = (0..REPLICAS)
        .map(|id| {
            Some(NodeProcess::spawn(
                file,
                id,
                Some(&state(id)),
                &outputs_of(id),
            ))
        })
        .collect();
    for replica in replicas.iter_mut().flatten() {
        replica.wait_ready();
    }
    let mut client = NodeProcess::spawn(file, CLIENT, None, &outputs_of(CLIENT));
    client.wait_ready();
    (replicas, client)
}

/// Waits until `condition` holds, for at most [`TEST_LIMIT`]; panics saying `what`.
fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TEST_LIMIT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what}: not within {TEST_LIMIT:?}"
        );
        std::thread::sleep(POLL);
    }
}

/// The state saved in `path` now (`None`: not yet).
fn saved(path: &Path) -> Option<Vec<u8>> {
    load_state(path).unwrap_or_else(|e| panic!("{e}"))
}

/// The outputs of a run that the checks below read. PBFT and HotStuff write them alike:
/// a replica's `executed` event (with its `requests`), its `state_loaded` (with each
/// client's latest `executed` request) and a client's `completed` (with its `number`).
enum Output {
    Executed { requests: Vec<(NodeId, u64)> },
    StateLoaded { executed: Vec<(NodeId, u64)> },
    Completed { number: u64 },
    Other,
}

/// Every output in the outputs files `files`.
fn outputs(files: &[PathBuf]) -> Vec<(NodeId, Output)> {
    let mut all = Vec::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines() {
            let line: Value = serde_json::from_str(line).unwrap();
            let node: NodeId = serde_json::from_value(line["node"].clone()).unwrap();
            let value = &line["value"];
            let pairs =
                |v: &Value| -> Vec<(NodeId, u64)> { serde_json::from_value(v.clone()).unwrap() };
            let output = match value["event"].as_str() {
                Some("executed") => Output::Executed {
                    requests: value["requests"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|e| {
                            let client: NodeId =
                                serde_json::from_value(e["client"].clone()).unwrap();
                            (client, e["number"].as_u64().unwrap())
                        })
                        .collect(),
                },
                Some("state_loaded") => Output::StateLoaded {
                    executed: pairs(&value["executed"]),
                },
                Some("completed") => Output::Completed {
                    number: value["number"].as_u64().unwrap(),
                },
                _ => Output::Other,
            };
            all.push((node, output));
        }
    }
    all
}

// ---- Tests --------------------------------------------------------------------------------

/// A 4-replica PBFT cluster whose replicas keep their state files: after a run every
/// replica's file holds a whole state (header, length and checksum agree), no temporary
/// file is left beside it, and the run passes its safety checks.
fn pbft_replicas_keep_their_durable_state_in_their_state_files() {
    let dir = scratch_named("durable", "files");
    let file = pbft_cluster_file(&dir);
    let state = |id: u32| dir.join(format!("node-{id}.state"));
    let outputs_of = |id: u32| dir.join(format!("node-{id}.outputs"));
    let mut replicas: Vec<NodeProcess> = (0..REPLICAS)
        .map(|id| NodeProcess::spawn(&file, id, Some(&state(id)), &outputs_of(id)))
        .collect();
    for replica in &mut replicas {
        replica.wait_ready();
    }
    let mut client = NodeProcess::spawn(&file, CLIENT, None, &outputs_of(CLIENT));
    client.wait_ready();
    // Every replica saves its state at each stable checkpoint: wait for two of them, so
    // that each file has been replaced at least once.
    let mut first = vec![None; REPLICAS as usize];
    wait_for("every replica saves its state twice", || {
        (0..REPLICAS).all(|id| match (&first[id as usize], saved(&state(id))) {
            (None, now) => {
                first[id as usize] = now;
                false
            }
            (Some(before), Some(now)) => *before != now,
            (Some(_), None) => panic!("node {id}'s state file disappeared"),
        })
    });
    let client_summary = client.stop();
    let mut executed = 0;
    for replica in replicas {
        executed += replica.stop()["requests_executed"].as_u64().unwrap();
    }
    assert!(
        client_summary["requests_completed"].as_u64().unwrap() > 0,
        "{client_summary}"
    );
    assert!(executed > 0);
    for id in 0..REPLICAS {
        assert!(
            saved(&state(id)).is_some_and(|s| !s.is_empty()),
            "node {id}"
        );
        assert!(!dir.join(format!("node-{id}.state.tmp")).exists());
    }
    let files: Vec<PathBuf> = (0..=CLIENT).map(outputs_of).collect();
    let (checked, violations) = cluster::check_outputs(&file, &files).unwrap();
    assert!(checked > 0);
    assert!(violations.is_empty(), "{violations:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A state file that is torn, corrupt or not a state file at all stops the node before
/// it opens anything, with an error that names the file; nothing panics. So does a whole
/// one that holds another kind of node's state.
fn a_damaged_state_file_stops_the_node_naming_the_file() {
    let dir = scratch_named("durable", "damaged");
    let file = pbft_cluster_file(&dir);
    let path = dir.join("node-1.state");
    save_state(&path, &[5u8; 64]).unwrap();
    let whole = std::fs::read(&path).unwrap();
    let mut flipped = whole.clone();
    flipped[whole.len() - 1] ^= 0x80;
    for (damage, bytes, expected) in [
        ("truncated", whole[..whole.len() - 10].to_vec(), "truncated"),
        ("cut in its header", whole[..20].to_vec(), "truncated"),
        ("flipped bit", flipped, "corrupt"),
        (
            "foreign",
            b"view = 3\n".to_vec(),
            "not a durable state file",
        ),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let error = cluster::node(&node_args(&file, 1, Some(path.clone())), &mut out, &mut err)
            .expect_err(damage)
            .to_string();
        assert!(
            error.contains(&path.display().to_string()) && error.contains(expected),
            "{damage}: {error}"
        );
        // Left as it was, for whoever looks into it.
        assert_eq!(std::fs::read(&path).unwrap(), bytes, "{damage}");
    }

    // A whole file whose state is not a replica's is not thrown away either: the node
    // refuses to start from nothing over it (it would forget its promises).
    save_state(&path, &[5u8; 64]).unwrap();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let error = cluster::node(&node_args(&file, 1, Some(path.clone())), &mut out, &mut err)
        .expect_err("a node over a saved state")
        .to_string();
    assert!(
        error.contains(&path.display().to_string())
            && error.contains("cannot restart from it")
            && error.contains("not a PBFT replica's durable state"),
        "{error}"
    );
    assert_eq!(load_state(&path).unwrap().unwrap(), [5u8; 64]);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A replica whose state cannot be written (its directory does not exist) stops after the
/// first state it fails to save, with an error that says so; the others go on.
fn a_replica_that_cannot_write_its_state_stops_saying_why() {
    let dir = scratch_named("durable", "unwritable");
    let file = pbft_cluster_file(&dir);
    let outputs_of = |id: u32| dir.join(format!("node-{id}.outputs"));
    let unwritable = dir.join("no-such-directory").join("node-3.state");
    let mut replicas: Vec<NodeProcess> = (0..REPLICAS)
        .map(|id| {
            let state = if id == 3 {
                unwritable.clone()
            } else {
                dir.join(format!("node-{id}.state"))
            };
            NodeProcess::spawn(&file, id, Some(&state), &outputs_of(id))
        })
        .collect();
    for replica in &mut replicas {
        replica.wait_ready();
    }
    let mut client = NodeProcess::spawn(&file, CLIENT, None, &outputs_of(CLIENT));
    client.wait_ready();
    let failing = replicas.pop().unwrap();
    let (status, summary, stderr) = failing.exited();
    assert_eq!(status.code(), Some(1), "{summary}\n{stderr}");
    assert_eq!(summary["stop"], "failed", "{summary}");
    let error = summary["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("cannot save its durable state") && error.contains("node-3.state"),
        "{summary}"
    );
    assert!(stderr.contains("cannot save durable state"), "{stderr}");
    // The other three are a quorum (f = 1): they still commit.
    let witness = dir.join("node-2.state");
    let before = saved(&witness);
    wait_for("the others commit without it", || saved(&witness) != before);
    client.stop();
    for replica in replicas {
        replica.stop();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A backup replica killed with SIGKILL in the middle of a run restarts from its state
/// file: the cluster's safety checks hold on every node's outputs (the restarted
/// replica's before and after the crash included), every request the client had an
/// acknowledgement for is in the executed history, and the restarted replica executes
/// requests after its restart (it caught up).
fn a_sigkilled_backup_restarts_from_its_state_file_and_catches_up() {
    let dir = scratch_named("durable", "restart");
    let file = pbft_cluster_file(&dir);
    let victim = 1; // a backup: the primary of view 0 is replica 0
    let state = |id: u32| dir.join(format!("node-{id}.state"));
    let outputs_of = |id: u32| dir.join(format!("node-{id}.outputs"));
    let restarted_outputs = dir.join(format!("node-{victim}.restarted.outputs"));
    let (mut replicas, client) = launch(&file, &state, &outputs_of);

    // In the middle of the run: once the victim has saved a stable checkpoint.
    wait_for("the victim saves a stable checkpoint", || {
        saved(&state(victim)).is_some()
    });
    replicas[victim as usize].take().unwrap().kill();
    let at_kill = saved(&state(victim)).expect("a SIGKILL leaves the last saved state whole");
    // The others go on without it (f = 1): a later checkpoint becomes stable.
    let witness = 2;
    let witness_before = saved(&state(witness));
    wait_for("the cluster commits while the victim is down", || {
        saved(&state(witness)) != witness_before
    });

    let mut restarted = NodeProcess::spawn(&file, victim, Some(&state(victim)), &restarted_outputs);
    restarted.wait_ready();
    // It catches up: it saves a checkpoint later than the one it restarted from.
    wait_for("the restarted replica saves a later checkpoint", || {
        saved(&state(victim)).is_some_and(|now| now != at_kill)
    });

    let restarted = vec![(victim, restarted, restarted_outputs)];
    stop_and_check(&file, &outputs_of, client, restarted, replicas);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The primary is killed with SIGKILL, and a backup too while the others change view; both
/// restart from their state files: the safety checks hold, no acknowledged request is
/// lost, and both restarted replicas execute requests after their restart.
fn a_replica_sigkilled_during_a_view_change_restarts_from_its_state_file() {
    let dir = scratch_named("durable", "view-change");
    let file = pbft_cluster_file(&dir);
    let primary = 0; // of view 0
    let backup = 2;
    let witness = 3;
    let state = |id: u32| dir.join(format!("node-{id}.state"));
    let outputs_of = |id: u32| dir.join(format!("node-{id}.outputs"));
    let restarted_outputs = |id: u32| dir.join(format!("node-{id}.restarted.outputs"));
    let (mut replicas, client) = launch(&file, &state, &outputs_of);
    wait_for("the backup saves a stable checkpoint", || {
        saved(&state(backup)).is_some()
    });

    replicas[primary as usize].take().unwrap().kill();
    // Without a primary no new checkpoint becomes stable, so the backup's next save is (but
    // for a checkpoint already under way) the view change it starts at its timeout.
    let before = saved(&state(backup));
    wait_for("the backup starts a view change", || {
        saved(&state(backup)) != before
    });
    replicas[backup as usize].take().unwrap().kill();

    let back: Vec<(u32, NodeProcess)> = [backup, primary]
        .into_iter()
        .map(|id| {
            let mut node = NodeProcess::spawn(&file, id, Some(&state(id)), &restarted_outputs(id));
            node.wait_ready();
            (id, node)
        })
        .collect();
    // The view change completes and the new view commits: the witness, which never
    // crashed, saves a later checkpoint, and so does each restarted replica.
    let at_restart: Vec<Option<Vec<u8>>> = [witness, backup, primary]
        .into_iter()
        .map(|id| saved(&state(id)))
        .collect();
    wait_for(
        "the new view commits and the restarted replicas catch up",
        || {
            [witness, backup, primary]
                .into_iter()
                .zip(&at_restart)
                .all(|(id, then)| saved(&state(id)) != *then)
        },
    );

    let restarted = back
        .into_iter()
        .map(|(id, node)| (id, node, restarted_outputs(id)))
        .collect();
    stop_and_check(&file, &outputs_of, client, restarted, replicas);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A HotStuff replica killed with SIGKILL in the middle of a run restarts from its state
/// file (its view, last vote, lock, highest QC and committed state): the safety checks
/// hold on every node's outputs, no acknowledged request is lost, and the restarted
/// replica commits and executes blocks after its restart. Leaders rotate every view, so
/// the victim leads views before and after its crash.
fn a_sigkilled_hotstuff_replica_restarts_from_its_state_file_and_catches_up() {
    let dir = scratch_named("durable", "hotstuff");
    let file = cluster_file(&dir, "hotstuff");
    let victim = 2;
    let witness = 3;
    let state = |id: u32| dir.join(format!("node-{id}.state"));
    let outputs_of = |id: u32| dir.join(format!("node-{id}.outputs"));
    let restarted_outputs = dir.join(format!("node-{victim}.restarted.outputs"));
    let (mut replicas, client) = launch(&file, &state, &outputs_of);

    // A replica saves before every vote: once the victim has voted, kill it.
    wait_for("the victim votes", || saved(&state(victim)).is_some());
    replicas[victim as usize].take().unwrap().kill();
    let at_kill = saved(&state(victim)).expect("a SIGKILL leaves the last saved state whole");
    let witness_before = saved(&state(witness));
    wait_for("the others vote on while the victim is down", || {
        saved(&state(witness)) != witness_before
    });

    let mut restarted = NodeProcess::spawn(&file, victim, Some(&state(victim)), &restarted_outputs);
    restarted.wait_ready();
    // It catches up: it votes again, in later views than the one it saved last. A block
    // is committed by the third of three consecutive views that certify it, so after four
    // votes of its own the restarted replica has committed (and executed) a block it
    // voted for, which `check_run` checks in its outputs.
    let mut seen = at_kill;
    let mut votes = 0;
    wait_for("the restarted replica votes in four later views", || {
        if let Some(now) = saved(&state(victim)).filter(|now| *now != seen) {
            seen = now;
            votes += 1;
        }
        votes >= 4
    });
    let restarted = vec![(victim, restarted, restarted_outputs)];
    stop_and_check(&file, &outputs_of, client, restarted, replicas);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A replica killed with SIGKILL and started again from its state file.
struct Restart {
    id: u32,
    /// Its outputs file before the kill (torn by it, perhaps).
    outputs_before: PathBuf,
    /// Its outputs file after the restart.
    outputs_after: PathBuf,
    /// The summary of its run after the restart.
    summary: Value,
}

/// Stops the client, then the `restarted` replicas (each with its outputs file since its
/// restart) and the other `replicas`, and checks the run ([`check_run`]).
fn stop_and_check(
    file: &Path,
    outputs_of: &dyn Fn(u32) -> PathBuf,
    client: NodeProcess,
    restarted: Vec<(u32, NodeProcess, PathBuf)>,
    replicas: Vec<Option<NodeProcess>>,
) {
    let client_summary = client.stop();
    let restarts: Vec<Restart> = restarted
        .into_iter()
        .map(|(id, node, outputs_after)| Restart {
            id,
            outputs_before: outputs_of(id),
            outputs_after,
            summary: node.stop(),
        })
        .collect();
    for replica in replicas.into_iter().flatten() {
        replica.stop();
    }
    check_run(file, outputs_of, &client_summary, &restarts);
}

/// The checks of a run with restarts: safety on every node's outputs (each restarted
/// replica's before and after its crash included), every request the client had an
/// acknowledgement for in the executed history, and each restarted replica executing
/// requests after its restart.
fn check_run(
    file: &Path,
    outputs_of: &dyn Fn(u32) -> PathBuf,
    client_summary: &Value,
    restarts: &[Restart],
) {
    assert!(
        client_summary["requests_completed"].as_u64().unwrap() > 0,
        "{client_summary}"
    );
    let mut files: Vec<PathBuf> = (0..=CLIENT).map(outputs_of).collect();
    for restart in restarts {
        // A SIGKILL loses the part of the outputs file not yet written out, which may end
        // inside a line: keep its whole lines (outputs are a report, not the node's state).
        let torn = std::fs::read(&restart.outputs_before).unwrap_or_default();
        let whole_lines = torn
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |at| at + 1);
        std::fs::write(&restart.outputs_before, &torn[..whole_lines]).unwrap();
        files.push(restart.outputs_after.clone());
    }

    // Safety, on every outputs file of the run.
    let (checked, violations) = cluster::check_outputs(file, &files).unwrap();
    assert!(checked > 0);
    assert!(violations.is_empty(), "{violations:?}");

    // No acknowledged request lost: each is executed by some replica, one at a time or
    // inside a checkpoint's state that some replica loaded.
    let all = outputs(&files);
    let mut executed: BTreeSet<(NodeId, u64)> = BTreeSet::new();
    let mut latest_loaded: Vec<(NodeId, u64)> = Vec::new();
    for (_, output) in &all {
        match output {
            Output::Executed { requests } => executed.extend(requests),
            Output::StateLoaded { executed: latest } => latest_loaded.extend(latest),
            _ => {}
        }
    }
    let acknowledged: Vec<u64> = all
        .iter()
        .filter_map(|(node, output)| match output {
            Output::Completed { number } if *node == NodeId(CLIENT) => Some(*number),
            _ => None,
        })
        .collect();
    assert!(!acknowledged.is_empty());
    for number in &acknowledged {
        let in_history = executed.contains(&(NodeId(CLIENT), *number))
            || latest_loaded
                .iter()
                .any(|&(client, latest)| client == NodeId(CLIENT) && latest >= *number);
        assert!(
            in_history,
            "acknowledged request {number} is in no executed history"
        );
    }

    // Caught up: after its restart each replica executed requests of its own.
    for restart in restarts {
        let executions = outputs(std::slice::from_ref(&restart.outputs_after))
            .iter()
            .filter(|(_, output)| matches!(output, Output::Executed { .. }))
            .count();
        assert!(
            executions > 0 && restart.summary["requests_executed"].as_u64().unwrap() > 0,
            "node {}: {}",
            restart.id,
            restart.summary
        );
    }
}

const TESTS: &[(&str, fn())] = &[
    (
        "pbft_replicas_keep_their_durable_state_in_their_state_files",
        pbft_replicas_keep_their_durable_state_in_their_state_files,
    ),
    (
        "a_damaged_state_file_stops_the_node_naming_the_file",
        a_damaged_state_file_stops_the_node_naming_the_file,
    ),
    (
        "a_replica_that_cannot_write_its_state_stops_saying_why",
        a_replica_that_cannot_write_its_state_stops_saying_why,
    ),
    (
        "a_sigkilled_backup_restarts_from_its_state_file_and_catches_up",
        a_sigkilled_backup_restarts_from_its_state_file_and_catches_up,
    ),
    (
        "a_replica_sigkilled_during_a_view_change_restarts_from_its_state_file",
        a_replica_sigkilled_during_a_view_change_restarts_from_its_state_file,
    ),
    (
        "a_sigkilled_hotstuff_replica_restarts_from_its_state_file_and_catches_up",
        a_sigkilled_hotstuff_replica_restarts_from_its_state_file_and_catches_up,
    ),
];

/// None: every test above runs.
const IGNORED: &[IgnoredTest<'static>] = &[];

fn main() -> ExitCode {
    main_with_ignored(TESTS, IGNORED)
}
