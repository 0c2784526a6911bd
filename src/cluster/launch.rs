//! `rehearsal cluster`: launching node processes, driving them and shutting them down.

use super::*;

// ---- rehearsal cluster --------------------------------------------------------------------

/// Processes one `rehearsal cluster` may launch, at most: each is a node with threads.
pub const CLUSTER_PROCESSES_MAX: u32 = 256;

/// Longest wait for every node to listen.
pub(super) const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for a group of nodes to stop after their stdin closed, before they are
/// killed.
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How often the launcher looks at signals and child processes while it waits.
pub(super) const LAUNCHER_TICK: Duration = Duration::from_millis(20);

/// A directory of the launcher's files, removed on drop unless kept.
pub(super) struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl WorkDir {
    fn create(keep: bool) -> io::Result<WorkDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!(
            "rehearsal-cluster-{}-{nanos:09}",
            std::process::id()
        ));
        fs::create_dir_all(&path)?;
        Ok(WorkDir { path, keep })
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}

/// What a node process said, as its stdout reader thread reports it.
pub(super) enum ChildEvent {
    Line(usize, String),
    /// The node closed its stdout (it is exiting).
    Closed(usize),
}

pub(super) struct NodeProcess {
    pub(super) id: NodeId,
    pub(super) role: Role,
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) log: PathBuf,
    pub(super) outputs: PathBuf,
    pub(super) ready: bool,
    pub(super) done: bool,
    pub(super) stdout_closed: bool,
    pub(super) summary: Option<NodeSummary>,
    pub(super) status: Option<ExitStatus>,
    /// Lines on stdout that were not events (reported on failure).
    pub(super) stray_lines: Vec<String>,
}

/// Every node process of a launch. Dropping it stops and reaps every process still
/// running: no error path of the launcher leaves an orphan.
pub(super) struct Processes {
    pub(super) nodes: Vec<NodeProcess>,
    pub(super) events: Receiver<ChildEvent>,
    pub(super) events_tx: Sender<ChildEvent>,
}

impl Processes {
    fn new() -> Processes {
        let (events_tx, events) = mpsc::channel();
        Processes {
            nodes: Vec::new(),
            events,
            events_tx,
        }
    }

    fn spawn(
        &mut self,
        binary: &Path,
        dir: &Path,
        config: &Path,
        node: &NodeConfig,
        transport: TransportKind,
        record_outputs: bool,
    ) -> io::Result<()> {
        let index = self.nodes.len();
        let log = dir.join(format!("node-{}.log", node.id.0));
        let outputs = dir.join(format!("outputs-{}.jsonl", node.id.0));
        let mut command = Command::new(binary);
        command
            .arg("node")
            .arg("--config")
            .arg(config)
            .arg("--id")
            .arg(node.id.0.to_string())
            .arg("--transport")
            .arg(transport.name())
            .arg("--controlled");
        if record_outputs {
            command.arg("--outputs").arg(&outputs);
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(File::create(&log)?)
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        self.nodes.push(NodeProcess {
            id: node.id,
            role: node.role,
            child,
            stdin,
            log,
            outputs,
            ready: false,
            done: false,
            stdout_closed: false,
            summary: None,
            status: None,
            stray_lines: Vec::new(),
        });
        if let Some(stdout) = stdout {
            let tx = self.events_tx.clone();
            thread::Builder::new()
                .name(format!("cluster-node-{}", node.id.0))
                .spawn(move || {
                    for line in BufReader::new(stdout).lines() {
                        let Ok(line) = line else { break };
                        if tx.send(ChildEvent::Line(index, line)).is_err() {
                            return;
                        }
                    }
                    let _ = tx.send(ChildEvent::Closed(index));
                })?;
        }
        Ok(())
    }

    /// Handles the events that arrive within `timeout`. Returns a failure if a node
    /// exited or closed its stdout while it was expected to run.
    fn pump(&mut self, timeout: Duration) {
        let mut next = self.events.recv_timeout(timeout).ok();
        while let Some(event) = next.take() {
            match event {
                ChildEvent::Line(i, line) => self.on_line(i, line),
                ChildEvent::Closed(i) => self.nodes[i].stdout_closed = true,
            }
            next = self.events.try_recv().ok();
        }
        for node in &mut self.nodes {
            if node.status.is_none() {
                if let Ok(Some(status)) = node.child.try_wait() {
                    node.status = Some(status);
                }
            }
        }
    }

    fn on_line(&mut self, i: usize, line: String) {
        let node = &mut self.nodes[i];
        let value: Option<serde_json::Value> = serde_json::from_str(&line).ok();
        match value
            .as_ref()
            .and_then(|v| v.get("event"))
            .and_then(|e| e.as_str())
        {
            Some("ready") => node.ready = true,
            Some("done") => node.done = true,
            Some("summary") => {
                match value.and_then(|v| serde_json::from_value::<NodeSummary>(v).ok()) {
                    Some(summary) => node.summary = Some(summary),
                    None => node.stray_lines.push(line),
                }
            }
            _ => {
                if node.stray_lines.len() < 20 {
                    node.stray_lines.push(line);
                }
            }
        }
    }

    /// A node that ended (exited or closed its stdout) while it should run.
    fn ended_early(&self, indices: &[usize]) -> Option<usize> {
        indices.iter().copied().find(|&i| {
            let node = &self.nodes[i];
            node.status.is_some() || node.stdout_closed
        })
    }

    fn send_start(&mut self, indices: &[usize]) -> Result<(), String> {
        for &i in indices {
            let node = &mut self.nodes[i];
            let written = match &mut node.stdin {
                Some(stdin) => stdin.write_all(b"start\n").and_then(|()| stdin.flush()),
                None => Err(io::ErrorKind::BrokenPipe.into()),
            };
            written.map_err(|e| format!("cannot start node {}: {e}", node.id.0))?;
        }
        Ok(())
    }

    /// Closes the stdin of the nodes at `indices`, waits up to `timeout` for them to exit
    /// (reading their summaries meanwhile), kills those that do not, and reaps them all.
    /// Returns the ids of the nodes that had to be killed.
    fn stop(&mut self, indices: &[usize], timeout: Duration) -> Vec<NodeId> {
        for &i in indices {
            self.nodes[i].stdin = None;
        }
        let deadline = Instant::now() + timeout;
        loop {
            // Wait for the exit and for the end of stdout, so the summary is read.
            let all_over = indices.iter().all(|&i| {
                let node = &self.nodes[i];
                node.status.is_some() && node.stdout_closed
            });
            if all_over || Instant::now() >= deadline {
                break;
            }
            self.pump(LAUNCHER_TICK);
        }
        let mut killed = Vec::new();
        for &i in indices {
            let node = &mut self.nodes[i];
            if node.status.is_none() {
                let _ = node.child.kill();
                killed.push(node.id);
                node.status = node.child.wait().ok();
            }
        }
        // Summaries printed just before the exit may still be in the channel.
        self.pump(Duration::ZERO);
        killed
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        let running: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| self.nodes[i].status.is_none())
            .collect();
        if !running.is_empty() {
            self.stop(&running, Duration::from_secs(5));
        }
    }
}

/// The last lines of a node's log, for an error report.
pub(super) fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Finds the `rehearsal` program to launch nodes with.
pub(super) fn node_binary(args: &ClusterArgs) -> Result<PathBuf, CliError> {
    if let Some(path) = &args.node_binary {
        if !path.is_file() {
            return Err(bad(format!(
                "--node-binary `{}` is not a file",
                path.display()
            )));
        }
        return Ok(path.clone());
    }
    let exe = std::env::current_exe()
        .map_err(|e| bad(format!("cannot find this program to launch nodes: {e}")))?;
    let name = exe.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if name != "rehearsal" {
        return Err(bad(format!(
            "this program is `{}`, not `rehearsal`: name the program that runs the nodes with --node-binary",
            exe.display()
        )));
    }
    Ok(exe)
}

/// Builds the cluster of a launch: the nodes on free loopback ports, or, over DPDK, the
/// two ends of a memif link whose socket is in `dir`.
pub(super) fn launch_config(
    args: &ClusterArgs,
    nodes: u32,
    clients: u32,
    dir: &Path,
) -> Result<ClusterConfig, CliError> {
    let count = nodes + clients;
    let protocol = args.protocol.name();
    let params =
        crate::registry::cluster_params_table(args.protocol, args.requests(), &args.params())
            .map_err(bad)?;
    let sizes = Sizes {
        nodes,
        clients,
        requests: args.requests(),
    };
    let role = |i: u32| args.protocol.role(&sizes, NodeId(i));
    if args.transport == TransportArg::Dpdk {
        let node_configs = memif_pair(dir)?
            .into_iter()
            .zip(0..)
            .map(|(settings, i)| NodeConfig::dpdk(NodeId(i), role(i), settings))
            .collect();
        return ClusterConfig::new("cluster.toml", protocol, args.seed, params, node_configs)
            .map_err(bad);
    }
    // Ask the system for free ports, all at once so none repeats; the nodes bind them a
    // moment later (another program could take one meanwhile: the node then fails to
    // listen, and the launch fails with its message).
    let listeners = (0..count)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<io::Result<Vec<_>>>()?;
    let addresses = listeners
        .iter()
        .map(TcpListener::local_addr)
        .collect::<io::Result<Vec<SocketAddr>>>()?;
    drop(listeners);
    let node_configs = addresses
        .into_iter()
        .enumerate()
        .map(|(i, address)| NodeConfig::tcp(NodeId(i as u32), role(i as u32), address))
        .collect();
    ClusterConfig::new("cluster.toml", protocol, args.seed, params, node_configs).map_err(bad)
}

/// The cluster of a launch with its nodes' keys: the directory `--keys` names, keys
/// derived from the seed with `--testbed-keys` (or for signatures that have no other keys,
/// such as pbft's `crypto = "sim"`), or else fresh keys for every node written to
/// `dir/keys`. Key files also authenticate the TCP connections, so a launch over TCP has
/// them whether or not its protocol's nodes sign.
pub(super) fn with_launch_keys(
    args: &ClusterArgs,
    config: ClusterConfig,
    dir: &Path,
) -> Result<ClusterConfig, CliError> {
    let needs = args.protocol.key_needs(&config).map_err(bad)?;
    let nodes = u32::try_from(config.nodes.len()).unwrap_or(u32::MAX);
    let needs = match needs {
        KeyNeeds::None if args.transport == TransportArg::Tcp && !args.testbed_keys => {
            KeyNeeds::Ed25519 { holders: nodes }
        }
        KeyNeeds::Ed25519 { holders } => KeyNeeds::Ed25519 {
            holders: holders.max(nodes),
        },
        needs => needs,
    };
    let keys = match (needs, &args.keys) {
        (KeyNeeds::None, _) => return Ok(config),
        (_, None) if args.testbed_keys => ClusterKeys::Testbed,
        (KeyNeeds::TestbedOnly(_), None) => ClusterKeys::Testbed,
        (KeyNeeds::TestbedOnly(why), Some(_)) => {
            return Err(bad(format!("--keys: {why}; key files cannot serve it")))
        }
        (KeyNeeds::Ed25519 { .. }, Some(given)) => ClusterKeys::Dir(
            std::path::absolute(given)
                .map_err(|e| bad(format!("--keys {}: {e}", given.display())))?,
        ),
        (KeyNeeds::Ed25519 { holders }, None) => {
            let fresh = dir.join("keys");
            keys::generate(&fresh, holders).map_err(bad)?;
            ClusterKeys::Dir(fresh)
        }
    };
    Ok(config.with_keys(keys))
}

/// Longest path of a Unix socket (`sun_path`, its final NUL excluded).
pub(super) const UNIX_SOCKET_PATH_BYTES_MAX: usize = 107;

/// The DPDK settings of a launch's two nodes: the ends of one memif link, whose socket
/// file is in the working directory (removed with it), with the default EAL arguments.
pub(super) fn memif_pair(dir: &Path) -> Result<[DpdkNode; 2], CliError> {
    let socket = dir.join("memif.sock");
    let socket = socket
        .to_str()
        .filter(|path| path.len() <= UNIX_SOCKET_PATH_BYTES_MAX && !path.contains(','))
        .ok_or_else(|| {
            bad(format!(
                "the memif socket path `{}` is not UTF-8, contains a comma or is longer than \
                 {UNIX_SOCKET_PATH_BYTES_MAX} bytes: set TMPDIR to a short directory",
                socket.display()
            ))
        })?;
    let end = |role: &str, mac: [u8; 6]| -> Result<DpdkNode, CliError> {
        let spec = format!("net_memif0,role={role},id=0,socket={socket},socket-abstract=no");
        Ok(DpdkNode {
            port: spec.parse().map_err(bad)?,
            mac: MacAddr(mac),
            eal_args: Vec::new(),
        })
    };
    Ok([
        end("server", [0x02, 0, 0, 0, 0, 0x01])?,
        end("client", [0x02, 0, 0, 0, 0, 0x02])?,
    ])
}

pub(super) fn check_cluster_args(args: &ClusterArgs) -> Result<(u32, u32), CliError> {
    let protocol = args.protocol;
    if let Some(refusal) = protocol.real_refusal() {
        return Err(bad(refusal));
    }
    let nodes = args.nodes()?.unwrap_or(protocol.nodes_default());
    let clients = if protocol.has_clients() {
        args.clients
    } else {
        0
    };
    let sizes = Sizes {
        nodes,
        clients,
        requests: args.requests(),
    };
    protocol.check_sizes(&sizes).map_err(|e| {
        let value = if e.key == "clients" { clients } else { nodes };
        bad(format!(
            "{}, got --{} {value}{}",
            e.rule,
            e.key,
            e.hint.as_deref().unwrap_or("")
        ))
    })?;
    if protocol.has_clients() && args.requests() == Some(0) {
        return Err(bad("--requests must be at least 1"));
    }
    protocol
        .check_params(&args.params(), Target::Real)
        .map_err(|e| bad(format!("--param {}: {}", e.key, e.rule)))?;
    if nodes.saturating_add(clients) > CLUSTER_PROCESSES_MAX {
        return Err(bad(format!(
            "at most {CLUSTER_PROCESSES_MAX} node processes per cluster, asked for {}",
            nodes.saturating_add(clients)
        )));
    }
    if args.duration.is_zero() {
        return Err(bad("--duration must be longer than 0"));
    }
    if args.transport == TransportArg::Dpdk && nodes + clients != 2 {
        // The smallest cluster of the protocol: its default nodes (3f+1 = 4 replicas for
        // the BFT protocols) and one client.
        let smallest = protocol.nodes_default() + u32::from(protocol.has_clients());
        let needs = if smallest > 2 {
            format!(" ({protocol} needs {smallest} at least)")
        } else {
            String::new()
        };
        return Err(bad(format!(
            "over dpdk, `rehearsal cluster` runs two nodes joined by one memif link, not {}: use \
             --clients 1 (unreplicated) or --nodes 2 (benaloh), or use --transport tcp for more \
             nodes{needs}",
            nodes + clients
        )));
    }
    Ok((nodes, clients))
}

/// Launches a cluster of node processes on loopback, runs it for `--duration` (clients)
/// or until every peer is done (Benaloh), stops it, and reports throughput, latency and
/// the protocol's invariants. Exit status 0 if every node ran and stopped cleanly and the
/// invariants hold, 1 otherwise (or on Ctrl-C), 2 for bad arguments.
pub fn cluster(
    args: &ClusterArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    #[cfg(not(feature = "dpdk"))]
    if args.transport == TransportArg::Dpdk {
        return Err(bad(DPDK_MISSING));
    }
    let (nodes, clients) = check_cluster_args(args)?;
    let binary = node_binary(args)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let _signals = Signals::install(&interrupted, false)?;
    let dir = WorkDir::create(args.keep)?;
    let config = launch_config(args, nodes, clients, &dir.path)?;
    let config = with_launch_keys(args, config, &dir.path)?;
    let config_path = dir.path.join("cluster.toml");
    fs::write(&config_path, config.to_toml())?;

    let mut processes = Processes::new();
    let mut failures: Vec<String> = Vec::new();
    for node in &config.nodes {
        let spawned = processes.spawn(
            &binary,
            &dir.path,
            &config_path,
            node,
            args.transport.kind(),
            !args.no_check,
        );
        if let Err(e) = spawned {
            return Err(bad(format!(
                "cannot launch `{} node`: {e}",
                binary.display()
            )));
        }
    }
    let all: Vec<usize> = (0..processes.nodes.len()).collect();
    let (servers, clients_idx): (Vec<usize>, Vec<usize>) = all
        .iter()
        .partition(|&&i| processes.nodes[i].role != Role::Client);

    // Phase 1: every node listens.
    let deadline = Instant::now() + READY_TIMEOUT;
    while !processes.nodes.iter().all(|n| n.ready) {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        if let Some(i) = processes.ended_early(&all) {
            failures.push(format!(
                "node {} exited before it was ready",
                processes.nodes[i].id.0
            ));
            break;
        }
        if Instant::now() >= deadline {
            failures.push(format!(
                "the nodes were not all listening after {READY_TIMEOUT:?}"
            ));
            break;
        }
        processes.pump(LAUNCHER_TICK);
    }

    // Phase 2: start everyone at once and let them run.
    let mut started_at = None;
    if failures.is_empty() && !interrupted.load(Ordering::SeqCst) {
        let order: Vec<usize> = servers.iter().chain(&clients_idx).copied().collect();
        match processes.send_start(&order) {
            Ok(()) => started_at = Some(Instant::now()),
            Err(e) => failures.push(e),
        }
    }
    if let Some(start) = started_at {
        let with_clients = args.protocol.has_clients();
        let goal_nodes: &[usize] = if with_clients { &clients_idx } else { &all };
        let stop_when_done = args.requests().is_some() || !with_clients;
        loop {
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            if let Some(i) = processes.ended_early(&all) {
                failures.push(format!(
                    "node {} exited while the cluster ran",
                    processes.nodes[i].id.0
                ));
                break;
            }
            if stop_when_done && goal_nodes.iter().all(|&i| processes.nodes[i].done) {
                break;
            }
            let left = args.duration.saturating_sub(start.elapsed());
            if left.is_zero() {
                if !with_clients {
                    failures.push(format!(
                        "not every node reached its goal (the output its protocol calls final, e.g. a Benaloh total) within {}",
                        short_ns(duration_ns(args.duration))
                    ));
                }
                break;
            }
            processes.pump(left.min(LAUNCHER_TICK));
        }
    }

    // Phase 3: stop clients first (so servers see no half-finished requests), then the rest.
    for (group, what) in [(&clients_idx, "client"), (&servers, "node")] {
        let killed = processes.stop(group, STOP_TIMEOUT);
        for id in killed {
            failures.push(format!(
                "{what} {} did not stop within {STOP_TIMEOUT:?} and was killed",
                id.0
            ));
        }
    }
    let was_interrupted = interrupted.load(Ordering::SeqCst);
    for node in &processes.nodes {
        let clean = node.status.is_some_and(|s| s.success());
        if !clean || node.summary.is_none() {
            let mut failure = match node.status {
                Some(status) if !status.success() => {
                    format!("node {} exited with {status}", node.id.0)
                }
                _ => format!("node {} printed no summary", node.id.0),
            };
            if let Some(error) = node.summary.as_ref().and_then(|s| s.error.clone()) {
                failure += &format!(": {error}");
            }
            // Nodes that never got to run are not worth a failure of their own when the
            // launch was interrupted or another node failed first.
            if started_at.is_some() || (!was_interrupted && failures.is_empty()) {
                failures.push(failure);
                let tail = log_tail(&node.log, 10);
                if !tail.is_empty() {
                    writeln!(
                        err,
                        "node {} log ({}):\n{tail}",
                        node.id.0,
                        node.log.display()
                    )?;
                }
                for line in &node.stray_lines {
                    writeln!(err, "node {} printed: {line}", node.id.0)?;
                }
            }
        }
    }

    // Phase 4: the invariants, on what the nodes output.
    let mut violations = Vec::new();
    let mut outputs_checked = 0;
    let check = !args.no_check && failures.is_empty() && !was_interrupted && started_at.is_some();
    if check {
        let files: Vec<PathBuf> = processes.nodes.iter().map(|n| n.outputs.clone()).collect();
        let result = args.protocol.check_outputs(&config, &files);
        match result {
            Ok((count, found)) => {
                outputs_checked = count;
                violations = found;
            }
            Err(e) => failures.push(e),
        }
    }

    let report = cluster_report(
        args,
        nodes,
        clients,
        &processes,
        failures,
        violations,
        check,
        outputs_checked,
        was_interrupted,
        args.keep.then(|| dir.path.clone()),
    );
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).map_err(io::Error::from)?
        )?;
    } else {
        write_cluster_table(&report, out)?;
    }
    Ok(if report.outcome == "ok" {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}
