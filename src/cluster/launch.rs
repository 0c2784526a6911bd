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
    /// The node's host, if it runs on one.
    pub(super) host: Option<String>,
    /// "node ID", or "node ID on host H (through `LAUNCHER`)": the node in messages.
    pub(super) name: String,
    /// Its outputs file on its host, fetched into `outputs` after the run.
    pub(super) remote_outputs: Option<String>,
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
    /// Its process id on its host, from its `ready` line (where a nemesis signals it).
    pub(super) pid: Option<u32>,
    /// Its host's clock (ns since 1970) at the instant its outputs' times count from.
    pub(super) epoch_unix_ns: Option<u64>,
    /// Killed by the scenario's `crash`: its end is no failure, and a later process of
    /// the same node (its `restart`) takes its place.
    pub(super) crashed: bool,
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

    /// Starts node `node` with the command `words` (its own `rehearsal node`, or a
    /// launcher's prefix and the node's command on its host); `incarnation` counts its
    /// restarts by a scenario, each with a log and outputs file of its own.
    pub(super) fn spawn(
        &mut self,
        words: &[String],
        dir: &Path,
        node: &NodeConfig,
        name: String,
        remote_outputs: Option<String>,
        incarnation: u32,
    ) -> io::Result<()> {
        let index = self.nodes.len();
        let log = dir.join(incarnation_file("node", node.id, incarnation, "log"));
        let outputs = dir.join(incarnation_file("outputs", node.id, incarnation, "jsonl"));
        let mut command = Command::new(&words[0]);
        command.args(&words[1..]);
        if node.host.is_some() {
            // A process group of its own: a Ctrl-C in the terminal would kill ssh at once,
            // cutting the node off from the orderly shutdown the launcher runs.
            use std::os::unix::process::CommandExt;
            command.process_group(0);
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
            host: node.host.clone(),
            name,
            remote_outputs,
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
            pid: None,
            epoch_unix_ns: None,
            crashed: false,
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
    pub(super) fn pump(&mut self, timeout: Duration) {
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
            Some("ready") => {
                node.ready = true;
                let field = |name: &str| value.as_ref()?.get(name)?.as_u64();
                node.pid = field("pid").and_then(|p| u32::try_from(p).ok());
                node.epoch_unix_ns = field("epoch_unix_ns");
            }
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

    /// A node that ended (exited or closed its stdout) while it should run: not one a
    /// scenario crashed.
    pub(super) fn ended_early(&self, indices: &[usize]) -> Option<usize> {
        indices.iter().copied().find(|&i| {
            let node = &self.nodes[i];
            !node.crashed && (node.status.is_some() || node.stdout_closed)
        })
    }

    /// The processes not crashed by a scenario: (servers, clients), by index.
    pub(super) fn live_by_role(&self) -> (Vec<usize>, Vec<usize>) {
        (0..self.nodes.len())
            .filter(|&i| !self.nodes[i].crashed)
            .partition(|&i| self.nodes[i].role != Role::Client)
    }

    pub(super) fn send_start(&mut self, indices: &[usize]) -> Result<(), String> {
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

/// The machine's clock, in ns since 1970.
pub(super) fn unix_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, duration_ns)
}

fn report_scenario(report: &Option<nemesis::NemesisReport>) -> &[nemesis::AppliedAction] {
    report.as_ref().map_or(&[], |r| &r.actions)
}

/// `STEM-ID.EXT` for a node's first process, `STEM-ID.restart-K.EXT` for its K-th restart.
pub(super) fn incarnation_file(stem: &str, id: NodeId, incarnation: u32, ext: &str) -> String {
    match incarnation {
        0 => format!("{stem}-{}.{ext}", id.0),
        k => format!("{stem}-{}.restart-{k}.{ext}", id.0),
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

/// A cluster file of the user's (`--config`), loaded and checked for a launch.
pub(super) struct UserCluster {
    pub(super) path: PathBuf,
    pub(super) config: ClusterConfig,
    pub(super) protocol: Protocol,
    pub(super) nodes: u32,
    pub(super) clients: u32,
    /// The file's `requests_per_client`.
    pub(super) requests: Option<u64>,
}

/// Loads and checks the user's cluster file `path` for a launch over `--transport`: the
/// protocol, the roles and sizes, the parameters, what the transport needs of every node.
pub(super) fn user_cluster(args: &ClusterArgs, path: &Path) -> Result<UserCluster, CliError> {
    let config = ClusterConfig::load(path).map_err(bad)?;
    let protocol = Protocol::named(&config.protocol).map_err(|e| bad(config.error(e)))?;
    if let Some(refusal) = protocol.real_refusal() {
        return Err(bad(config.error(refusal)));
    }
    config.check_transport(args.transport.kind()).map_err(bad)?;
    // Reads the file's setup as the nodes will: roles, sizes and [params].
    protocol.key_needs(&config).map_err(bad)?;
    let count = config.nodes.len() as u32;
    if count > CLUSTER_PROCESSES_MAX {
        return Err(bad(config.error(format!(
            "{count} nodes: `rehearsal cluster` launches at most {CLUSTER_PROCESSES_MAX}"
        ))));
    }
    if args.duration.is_zero() {
        return Err(bad("--duration must be longer than 0"));
    }
    let clients = config.ids_with_role(Role::Client).len() as u32;
    let requests = config
        .params
        .get("requests_per_client")
        .and_then(toml::Value::as_integer)
        .and_then(|n| u64::try_from(n).ok());
    // The launcher writes the file again elsewhere: its key directory must not depend on
    // where the file was.
    let config = match &config.keys {
        ClusterKeys::Dir(dir) => {
            let absolute = std::path::absolute(dir)
                .map_err(|e| bad(format!("{}: keys {}: {e}", config.origin, dir.display())))?;
            config.clone().with_keys(ClusterKeys::Dir(absolute))
        }
        _ => config,
    };
    Ok(UserCluster {
        path: path.to_path_buf(),
        nodes: count - clients,
        clients,
        requests,
        protocol,
        config,
    })
}

/// Where the nodes of a launch run and keep their files, from the flags.
pub(super) fn placement(
    args: &ClusterArgs,
    user: Option<&UserCluster>,
) -> Result<Placement, CliError> {
    let hosts = &args.hosts;
    let launcher = Launcher::parse(hosts.launcher.as_deref().unwrap_or(DEFAULT_LAUNCHER))?;
    let remote_binary = match &args.node_binary {
        Some(path) => path.to_str().unwrap_or_default().to_string(),
        None => "rehearsal".to_string(),
    };
    let remote_dir_ours = hosts.remote_dir.is_none() && !hosts.print_commands;
    let remote_dir = match (&hosts.remote_dir, user) {
        (Some(dir), _) => dir.clone(),
        // What --print-commands names: the cluster file where it is, on every host.
        (None, Some(user)) if hosts.print_commands => {
            let file = std::path::absolute(&user.path)?;
            file.parent()
                .map(|dir| dir.display().to_string())
                .unwrap_or_else(|| "/".into())
        }
        (None, _) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            format!("/tmp/rehearsal-node-{}-{nanos:09}", std::process::id())
        }
    };
    let remote_hosts = user.is_some_and(|u| u.config.nodes.iter().any(|n| n.host.is_some()));
    if remote_hosts && !hosts.print_commands {
        check_host_path("--node-binary", &remote_binary)?;
        check_host_path("--remote-dir", &remote_dir)?;
        if let Some(dir) = &hosts.state_dir {
            check_host_path("--state-dir", dir)?;
        }
    }
    let mut placement = Placement {
        launcher,
        remote_binary,
        remote_dir,
        remote_dir_ours,
        host_dirs: BTreeMap::new(),
        state_dir: hosts.state_dir.clone(),
    };
    if let (Some(user), false) = (user, hosts.print_commands) {
        placement.assign_host_dirs(&user.config);
    }
    Ok(placement)
}

/// `--print-commands`: for each node, its host (`-` for none), a tab, and the command that
/// runs it standalone, with its paths on that host.
pub(super) fn print_commands(
    args: &ClusterArgs,
    user: &UserCluster,
    placement: &Placement,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let config_path = if args.hosts.remote_dir.is_some() {
        format!(
            "{}/cluster.toml",
            placement.remote_dir.trim_end_matches('/')
        )
    } else {
        std::path::absolute(&user.path)?.display().to_string()
    };
    for node in &user.config.nodes {
        let outputs = format!(
            "{}/outputs-{}.jsonl",
            placement.remote_dir.trim_end_matches('/'),
            node.id.0
        );
        let state = placement.state_file(node, Path::new(&placement.remote_dir));
        let words = node_command(
            &placement.remote_binary,
            &config_path,
            node,
            args.transport.kind(),
            Some(&outputs),
            (!args.hosts.no_state)
                .then(|| state.display().to_string())
                .as_deref(),
            false,
        );
        let line: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
        writeln!(
            out,
            "{}\t{}",
            node.host.as_deref().unwrap_or("-"),
            line.join(" ")
        )?;
    }
    Ok(EXIT_OK)
}

/// `word` as a POSIX shell reads it back: as it is if it is plain, else in single quotes.
pub(super) fn shell_quote(word: &str) -> String {
    if shell_safe(word) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// The remote directories of a launch, removed from their hosts when dropped (after the
/// nodes stopped: declare it before the processes) unless kept.
pub(super) struct RemoteDirs<'a> {
    pub(super) placement: &'a Placement,
    /// Each host that got files, once.
    pub(super) hosts: Vec<String>,
    pub(super) keep: bool,
    /// Failures to remove, reported by the launcher.
    pub(super) warnings: Vec<String>,
}

impl RemoteDirs<'_> {
    fn remove(&mut self) {
        if self.keep {
            return;
        }
        let hosts = std::mem::take(&mut self.hosts);
        let placement = self.placement;
        // Every host at once. A directory of the launcher's own naming goes whole (hosts
        // that share a file system then remove one directory, which is harmless: what one
        // removes, the others skip); in one the user named, only the hosts' directories.
        let results: Vec<(String, String, Result<(), String>)> = thread::scope(|scope| {
            let jobs: Vec<_> = hosts
                .into_iter()
                .map(|host| {
                    let dir = if placement.remote_dir_ours {
                        placement.remote_dir.clone()
                    } else {
                        placement.host_dir(&host).to_string()
                    };
                    let job = {
                        let (host, dir) = (host.clone(), dir.clone());
                        scope.spawn(move || remove_on_host(&placement.launcher, &host, &dir))
                    };
                    (host, dir, job)
                })
                .collect();
            jobs.into_iter()
                .map(|(host, dir, job)| {
                    let result = job
                        .join()
                        .unwrap_or_else(|_| Err("the removing thread panicked".into()));
                    (host, dir, result)
                })
                .collect()
        });
        for (host, dir, result) in results {
            if let Err(e) = result {
                self.warnings.push(format!(
                    "cannot remove {dir} on {}: {e}",
                    placement.launcher.describe(&host)
                ));
            }
        }
    }
}

impl Drop for RemoteDirs<'_> {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Copies each host's files through the launcher, hosts in parallel: the cluster file
/// (its keys at `keys/` beside it), the public-key list and the private keys of that
/// host's nodes only. An error names the host and its nodes.
pub(super) fn stage_hosts(
    config: &ClusterConfig,
    placement: &Placement,
    hosts: &BTreeMap<String, Vec<NodeId>>,
) -> Vec<String> {
    let key_dir = match &config.keys {
        ClusterKeys::Dir(dir) => Some(keys::KeyDir::new(dir.clone())),
        _ => None,
    };
    let host_config = match key_dir {
        Some(_) => config
            .clone()
            .with_keys(ClusterKeys::Dir(PathBuf::from("keys"))),
        None => config.clone(),
    };
    let text = host_config.to_toml().into_bytes();
    let read = |path: &Path| {
        fs::read(path).map_err(|e| format!("cannot read `{}` to copy it: {e}", path.display()))
    };
    let mut failures = Vec::new();
    thread::scope(|scope| {
        let jobs: Vec<_> = hosts
            .iter()
            .map(|(host, ids)| {
                let text = text.clone();
                let key_dir = key_dir.as_ref();
                let job = scope.spawn(move || -> Result<(), String> {
                    let mut dirs = Vec::new();
                    let mut files = vec![HostFile {
                        path: placement.on_host(host, "cluster.toml"),
                        bytes: text,
                        private: false,
                    }];
                    if let Some(key_dir) = key_dir {
                        files.push(HostFile {
                            path: placement
                                .on_host(host, &format!("keys/{}", keys::PUBLIC_KEYS_FILE)),
                            bytes: read(&key_dir.public_keys_path())?,
                            private: false,
                        });
                        for &id in ids {
                            files.push(HostFile {
                                path: placement
                                    .on_host(host, &format!("keys/{}", keys::private_key_file(id))),
                                bytes: read(&key_dir.private_key_path(id))?,
                                private: true,
                            });
                        }
                    }
                    if let Some(state_dir) = &placement.state_dir {
                        dirs.push(state_dir.clone());
                    }
                    stage_host(&placement.launcher, host, &dirs, &files)
                });
                (host, ids, job)
            })
            .collect();
        for (host, ids, job) in jobs {
            let result = job
                .join()
                .unwrap_or_else(|_| Err("the copying thread panicked".into()));
            if let Err(e) = result {
                let nodes: Vec<String> = ids.iter().map(|id| id.0.to_string()).collect();
                failures.push(format!(
                    "cannot copy the cluster's files to {} for node{} {}: {e}",
                    placement.launcher.describe(host),
                    if ids.len() == 1 { "" } else { "s" },
                    nodes.join(", ")
                ));
            }
        }
    });
    failures
}

/// Launches a cluster of node processes (on loopback, or the nodes of `--config` on their
/// hosts), runs it for `--duration` (clients) or until every peer is done (Benaloh), stops
/// it, and reports throughput, latency and the protocol's invariants. Exit status 0 if
/// every node ran and stopped cleanly and the invariants hold, 1 otherwise (or on Ctrl-C),
/// 2 for bad arguments.
pub fn cluster(
    args: &ClusterArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    #[cfg(not(feature = "dpdk"))]
    if args.transport == TransportArg::Dpdk {
        return Err(bad(DPDK_MISSING));
    }
    let user = match &args.hosts.config {
        Some(path) => Some(user_cluster(args, path)?),
        None => None,
    };
    let placement = placement(args, user.as_ref())?;
    if args.hosts.print_commands {
        let Some(user) = &user else {
            return Err(bad(
                "--print-commands needs the cluster file: give --config FILE",
            ));
        };
        return print_commands(args, user, &placement, out);
    }
    let (protocol, nodes, clients, requests) = match &user {
        Some(user) => (user.protocol, user.nodes, user.clients, user.requests),
        None => {
            let (nodes, clients) = check_cluster_args(args)?;
            (args.protocol, nodes, clients, args.requests())
        }
    };
    let any_local = user
        .as_ref()
        .is_none_or(|user| user.config.nodes.iter().any(|n| n.host.is_none()));
    let binary = if any_local {
        Some(node_binary(args)?)
    } else {
        None
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let _signals = Signals::install(&interrupted, false)?;
    let dir = WorkDir::create(args.keep)?;
    let config = match user {
        Some(user) => user.config,
        None => {
            let config = launch_config(args, nodes, clients, &dir.path)?;
            with_launch_keys(args, config, &dir.path)?
        }
    };
    let config_path = dir.path.join("cluster.toml");
    fs::write(&config_path, config.to_toml())?;
    if let (Some(state_dir), true) = (&placement.state_dir, any_local) {
        fs::create_dir_all(state_dir).map_err(|e| bad(format!("--state-dir {state_dir}: {e}")))?;
    }

    let mut failures: Vec<String> = Vec::new();
    let mut by_host: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    for node in &config.nodes {
        if let Some(host) = &node.host {
            by_host.entry(host.clone()).or_default().push(node.id);
        }
    }
    // Declared before the processes, so dropped after them: the directories go once every
    // node stopped.
    let mut remote = RemoteDirs {
        placement: &placement,
        hosts: by_host.keys().cloned().collect(),
        keep: args.keep,
        warnings: Vec::new(),
    };
    failures.extend(stage_hosts(&config, &placement, &by_host));

    let record_outputs = !args.no_check;
    let state = !args.hosts.no_state;
    let mut nemesis = match &args.hosts.scenario {
        Some(path) if failures.is_empty() => Some(scenario::prepare(
            path,
            &config,
            &placement,
            args.transport.kind(),
            state,
        )?),
        _ => None,
    };
    // Starts a process of `node` (its `incarnation`-th restart, from 0).
    let launch = |processes: &mut Processes, node: &NodeConfig, incarnation: u32| {
        let state = state.then(|| placement.state_file(node, &dir.path).display().to_string());
        let outputs_name = incarnation_file("outputs", node.id, incarnation, "jsonl");
        let (words, name, remote_outputs) = match &node.host {
            None => {
                let binary = binary.as_ref().expect("a local node's binary was found");
                let outputs = dir.path.join(&outputs_name);
                let words = node_command(
                    &binary.display().to_string(),
                    &config_path.display().to_string(),
                    node,
                    args.transport.kind(),
                    record_outputs
                        .then(|| outputs.display().to_string())
                        .as_deref(),
                    state.as_deref(),
                    true,
                );
                (words, format!("node {}", node.id.0), None)
            }
            Some(host) => {
                let outputs = placement.on_host(host, &outputs_name);
                let mut words = placement.launcher.prefix(host);
                words.extend(node_command(
                    &placement.remote_binary,
                    &placement.on_host(host, "cluster.toml"),
                    node,
                    args.transport.kind(),
                    record_outputs.then_some(outputs.as_str()),
                    state.as_deref(),
                    true,
                ));
                let name = format!(
                    "node {} on {}",
                    node.id.0,
                    placement.launcher.describe(host)
                );
                (words, name, record_outputs.then_some(outputs))
            }
        };
        let name = match incarnation {
            0 => name,
            k => format!("{name} (restart {k})"),
        };
        processes
            .spawn(&words, &dir.path, node, name, remote_outputs, incarnation)
            .map_err(|e| format!("cannot launch `{}`: {e}", words.join(" ")))
    };
    let mut processes = Processes::new();
    for node in config.nodes.iter().filter(|_| failures.is_empty()) {
        launch(&mut processes, node, 0).map_err(bad)?;
    }
    let all: Vec<usize> = (0..processes.nodes.len()).collect();
    let (servers, clients_idx): (Vec<usize>, Vec<usize>) = all
        .iter()
        .partition(|&&i| processes.nodes[i].role != Role::Client);

    // Phase 1: every node listens.
    let deadline = Instant::now() + READY_TIMEOUT;
    while failures.is_empty() && !processes.nodes.iter().all(|n| n.ready) {
        if interrupted.load(Ordering::SeqCst) {
            break;
        }
        if let Some(i) = processes.ended_early(&all) {
            // Its exit status, if it has one yet (the end of stdout may come first).
            let deadline = Instant::now() + Duration::from_secs(1);
            while processes.nodes[i].status.is_none() && Instant::now() < deadline {
                processes.pump(LAUNCHER_TICK);
            }
            let node = &processes.nodes[i];
            let status = node.status.map(|s| format!(" ({s})")).unwrap_or_default();
            failures.push(format!(
                "{} exited before it was ready{status}{}",
                node.name,
                last_words(&node.log)
            ));
            break;
        }
        if Instant::now() >= deadline {
            let waiting: Vec<&str> = processes
                .nodes
                .iter()
                .filter(|n| !n.ready)
                .map(|n| n.name.as_str())
                .collect();
            failures.push(format!(
                "the nodes were not all listening after {READY_TIMEOUT:?} (waiting for {})",
                waiting.join(", ")
            ));
            break;
        }
        processes.pump(LAUNCHER_TICK);
    }

    // Phase 2: start everyone at once and let them run.
    let mut started_at = None;
    let mut started_unix_ns = 0;
    if failures.is_empty() && !interrupted.load(Ordering::SeqCst) {
        let order: Vec<usize> = servers.iter().chain(&clients_idx).copied().collect();
        match processes.send_start(&order) {
            Ok(()) => {
                started_at = Some(Instant::now());
                started_unix_ns = unix_ns();
            }
            Err(e) => failures.push(e),
        }
    }
    let mut scenario_report = None;
    if let Some(start) = started_at {
        let with_clients = protocol.has_clients();
        let stop_when_done = requests.is_some() || !with_clients;
        loop {
            if interrupted.load(Ordering::SeqCst) {
                break;
            }
            // The scenario's lines that are due (a restart waits for its node's `ready`).
            if let Some(nemesis) = nemesis.as_mut() {
                if nemesis.next_due().is_some_and(|due| due <= start.elapsed()) {
                    let mut control = scenario::Control::new(
                        &mut processes,
                        &config,
                        &placement,
                        &launch,
                        &interrupted,
                    );
                    match nemesis.apply_due(start.elapsed(), &mut control) {
                        Ok(nemesis::Progress::Stop) => break,
                        Ok(_) => {}
                        Err(e) => {
                            failures.push(format!("scenario: {e}"));
                            break;
                        }
                    }
                }
            }
            let every: Vec<usize> = (0..processes.nodes.len()).collect();
            if let Some(i) = processes.ended_early(&every) {
                failures.push(format!(
                    "{} exited while the cluster ran",
                    processes.nodes[i].name
                ));
                break;
            }
            // Done when the goal nodes are, and the scenario has nothing left to apply.
            let (live_servers, live_clients) = processes.live_by_role();
            let goal_nodes = if with_clients {
                live_clients
            } else {
                [live_servers, live_clients].concat()
            };
            let scenario_over = nemesis.as_ref().is_none_or(|n| n.next_due().is_none());
            if stop_when_done
                && scenario_over
                && goal_nodes.iter().all(|&i| processes.nodes[i].done)
            {
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

    // The scenario's cleanup: our nftables tables and qdiscs go, paused nodes resume.
    if let Some(nemesis) = nemesis.take() {
        let mut control =
            scenario::Control::new(&mut processes, &config, &placement, &launch, &interrupted);
        scenario_report = Some(nemesis.finish(&mut control));
    }

    // Phase 3: stop clients first (so servers see no half-finished requests), then the rest.
    let (servers, clients_idx) = processes.live_by_role();
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
    for node in processes.nodes.iter().filter(|n| !n.crashed) {
        let clean = node.status.is_some_and(|s| s.success());
        if !clean || node.summary.is_none() {
            let mut failure = match node.status {
                Some(status) if !status.success() => {
                    format!("{} exited with {status}", node.name)
                }
                _ => format!("{} printed no summary", node.name),
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

    // Phase 4: the invariants, on what the nodes output (fetched from their hosts).
    let mut violations = Vec::new();
    let mut outputs_checked = 0;
    let mut check =
        record_outputs && failures.is_empty() && !was_interrupted && started_at.is_some();
    if check {
        let fetch_failures = fetch_outputs(&processes, &placement);
        check = fetch_failures.is_empty();
        failures.extend(fetch_failures);
    }
    if check {
        // A crashed node's outputs file may end inside a line: keep its whole lines.
        for node in processes.nodes.iter().filter(|n| n.crashed) {
            if let Err(e) = scenario::keep_whole_lines(&node.outputs) {
                failures.push(format!("the outputs of {}: {e}", node.name));
            }
        }
        let files: Vec<PathBuf> = processes.nodes.iter().map(|n| n.outputs.clone()).collect();
        match protocol.check_outputs(&config, &files) {
            Ok((count, found)) => {
                outputs_checked = count;
                violations = found;
            }
            Err(e) => failures.push(e),
        }
    }
    remote.remove();
    for warning in &remote.warnings {
        writeln!(err, "warning: {warning}")?;
    }

    let mut report = cluster_report(
        args,
        protocol,
        nodes,
        clients,
        &processes,
        failures,
        violations,
        check,
        outputs_checked,
        was_interrupted,
        args.keep.then(|| dir.path.clone()),
        (args.keep && !by_host.is_empty()).then(|| placement.remote_dir.clone()),
    );
    if let (Some(path), true) = (&args.hosts.plot, check) {
        let svg = plot::real_run_svg(
            &processes,
            report_scenario(&scenario_report),
            started_unix_ns,
            &config,
        );
        if let Err(e) = svg.and_then(|svg| fs::write(path, svg).map_err(|e| e.to_string())) {
            report
                .failures
                .push(format!("--plot {}: {e}", path.display()));
            report.outcome = "failed";
        }
    }
    report.scenario = scenario_report;
    if report
        .scenario
        .as_ref()
        .is_some_and(|r| r.failure.is_some())
        && report.outcome == "ok"
    {
        report.outcome = "failed";
    }
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

/// Fetches the outputs file of every node that ran on a host into the working directory,
/// all at once; the failures name the node and its host.
fn fetch_outputs(processes: &Processes, placement: &Placement) -> Vec<String> {
    thread::scope(|scope| {
        let jobs: Vec<_> = processes
            .nodes
            .iter()
            .filter_map(|node| Some((node, node.host.as_ref()?, node.remote_outputs.as_ref()?)))
            .map(|(node, host, path)| {
                let job = scope.spawn(move || {
                    fetch_from_host(&placement.launcher, host, path).and_then(|bytes| {
                        fs::write(&node.outputs, bytes)
                            .map_err(|e| format!("cannot write `{}`: {e}", node.outputs.display()))
                    })
                });
                (node, job)
            })
            .collect();
        jobs.into_iter()
            .filter_map(|(node, job)| {
                let result = job
                    .join()
                    .unwrap_or_else(|_| Err("the fetching thread panicked".into()));
                let error = result.err()?;
                Some(format!(
                    "cannot fetch the outputs of {}: {error}",
                    node.name
                ))
            })
            .collect()
    })
}

/// The last line a node (or its launcher) wrote to its log, for a one-line failure: the
/// reason a node ended early is usually there (`rehearsal: command not found`, `ssh:
/// connect to host ...`, the node's own error).
fn last_words(path: &Path) -> String {
    let tail = log_tail(path, 1);
    let tail = tail.trim();
    if tail.is_empty() {
        return String::new();
    }
    let cut: String = tail.chars().take(300).collect();
    format!(": {cut}")
}
