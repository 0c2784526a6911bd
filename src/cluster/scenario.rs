//! `rehearsal cluster --scenario FILE`: the launcher's side of the [nemesis](super::nemesis).
//! It describes the running cluster to the planner (each node's host, address and
//! interface), and gives the nemesis its hands on the node processes ([`Control`]):
//! signals by the pid each node reports in its `ready` line, restarts through the same
//! launch as the first start (from the node's state file, with an outputs file of its
//! own), and clock skews through the node's stdin.

use super::hosts::Placement;
use super::launch::Processes;
use super::nemesis::{
    self, HostAccess, HostShell, Nemesis, NodeControl, NodeSite, ProcessShell, Signal,
};
use super::*;
use rehearsal_sim_core::{ClockSkew, Fault, NetChange};

/// Largest scenario file read, in bytes.
const SCENARIO_BYTES_MAX: u64 = 4 << 20;

/// How long a crashed node's process may take to be reaped after its SIGKILL.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// Reads, parses and plans the scenario `path` for the cluster `config`: every line that
/// cannot run for real is refused here, before a node starts.
pub(super) fn prepare(
    path: &Path,
    config: &ClusterConfig,
    placement: &Placement,
    transport: TransportKind,
    state_files: bool,
) -> Result<Nemesis, CliError> {
    let origin = path.display().to_string();
    let text = read_scenario(path).map_err(|e| bad(format!("--scenario {origin}: {e}")))?;
    let nodes = config.nodes.len() as u32;
    let scenario = rehearsal_net_models::scenario::parse(&text, &origin, nodes)
        .map_err(|e| bad(e.to_string()))?;
    let faults = || scenario.entries.iter().map(|entry| &entry.fault);
    if transport == TransportKind::Dpdk {
        if let Some(entry) = scenario
            .entries
            .iter()
            .find(|entry| matches!(entry.fault, Fault::Network(_)))
        {
            return Err(bad(format!(
                "{origin}:{}: `{}`: DPDK frames do not pass through the kernel's nftables and \
                 qdiscs, so a cluster over DPDK takes only crash, restart, pause, resume and \
                 skew from a scenario",
                entry.line, entry.fault
            )));
        }
    }
    if !state_files {
        if let Some(entry) = scenario
            .entries
            .iter()
            .find(|entry| matches!(entry.fault, Fault::Restart(_) | Fault::Settle))
        {
            return Err(bad(format!(
                "{origin}:{}: `{}` restarts nodes from their state files, which --no-state \
                 turns off",
                entry.line, entry.fault
            )));
        }
    }
    let latency = faults().any(|f| matches!(f, Fault::Network(NetChange::SetLatency { .. })));
    let sites = node_sites(config, placement, latency)?;
    let plan = nemesis::plan(&scenario, &origin, &sites).map_err(|e| bad(e.to_string()))?;
    Ok(Nemesis::new(plan, ProcessShell::default()))
}

fn read_scenario(path: &Path) -> io::Result<String> {
    let size = fs::metadata(path)?.len();
    if size > SCENARIO_BYTES_MAX {
        return Err(io::Error::other(format!(
            "{size} bytes, more than the {SCENARIO_BYTES_MAX} a scenario file may have"
        )));
    }
    fs::read_to_string(path)
}

/// How commands reach `node`'s host: here, or through the launcher's prefix (ssh quotes
/// the words it sends on).
fn host_access(node: &NodeConfig, placement: &Placement) -> HostAccess {
    match &node.host {
        None => HostAccess::Local,
        Some(host) => {
            let prefix = placement.launcher.prefix(host);
            let program = prefix.first().map(|p| Path::new(p).file_name());
            if program == Some(Some(std::ffi::OsStr::new("ssh"))) {
                HostAccess::Ssh(prefix)
            } else {
                HostAccess::Exec(prefix)
            }
        }
    }
}

/// The planner's view of the cluster: each node's host, IPv4 address and (for
/// `set-latency`) the interface its traffic to the next node leaves by, which `ip route
/// get` on its host names.
fn node_sites(
    config: &ClusterConfig,
    placement: &Placement,
    interfaces: bool,
) -> Result<Vec<NodeSite>, CliError> {
    let mut sites = Vec::with_capacity(config.nodes.len());
    for node in &config.nodes {
        let address = match node.address.map(|a| a.ip()) {
            Some(std::net::IpAddr::V4(ip)) => ip,
            Some(other) => {
                return Err(bad(format!(
                    "--scenario: node {}'s address {other} is not IPv4 (the nemesis's \
                     nftables rules are written for IPv4)",
                    node.id.0
                )))
            }
            None => {
                return Err(bad(format!(
                    "--scenario: node {} has no address in the cluster file",
                    node.id.0
                )))
            }
        };
        sites.push(NodeSite {
            host: host_access(node, placement),
            address,
            interface: String::new(),
        });
    }
    if interfaces {
        let n = sites.len();
        for i in 0..n {
            let peer = sites[(i + 1) % n].address;
            let argv: Vec<String> = ["ip", "-o", "-4", "route", "get"]
                .iter()
                .map(|w| w.to_string())
                .chain([peer.to_string()])
                .collect();
            let device = output_of(&sites[i].host, &argv).and_then(|output| {
                output
                    .split_whitespace()
                    .skip_while(|word| *word != "dev")
                    .nth(1)
                    .map(str::to_string)
                    .ok_or_else(|| format!("no `dev` in `{}`", output.trim()))
            });
            match device {
                Ok(device) => sites[i].interface = device,
                Err(why) => {
                    return Err(bad(format!(
                        "--scenario: cannot find node {i}'s interface towards {peer} for \
                         set-latency (`{}` on {}): {why}",
                        argv.join(" "),
                        sites[i].host,
                    )))
                }
            }
        }
    }
    Ok(sites)
}

/// The standard output of `argv` run on `host`, within [`nemesis::HOST_COMMAND_TIMEOUT`].
fn output_of(host: &HostAccess, argv: &[String]) -> Result<String, String> {
    use wait_timeout::ChildExt;
    let line = host.command_line(argv);
    let (program, args) = line.split_first().ok_or("empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    let pipes = (child.stdout.take(), child.stderr.take());
    let reader = thread::spawn(move || {
        use std::io::Read;
        let (mut out, mut err) = (String::new(), String::new());
        if let Some(mut pipe) = pipes.0 {
            let _ = pipe.read_to_string(&mut out);
        }
        if let Some(mut pipe) = pipes.1 {
            let _ = pipe.read_to_string(&mut err);
        }
        (out, err)
    });
    let status = match child.wait_timeout(nemesis::HOST_COMMAND_TIMEOUT) {
        Ok(Some(status)) => status,
        Ok(None) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "did not finish within {:?}",
                nemesis::HOST_COMMAND_TIMEOUT
            ));
        }
        Err(e) => return Err(format!("cannot wait for it: {e}")),
    };
    let (out, err) = reader.join().unwrap_or_default();
    if status.success() {
        Ok(out)
    } else {
        Err(format!("{status}: {}", err.trim()))
    }
}

/// The nemesis's hands on the node processes of a `rehearsal cluster` run.
pub(super) struct Control<'a, L>
where
    L: Fn(&mut Processes, &NodeConfig, u32) -> Result<(), String>,
{
    pub(super) processes: &'a mut Processes,
    pub(super) config: &'a ClusterConfig,
    pub(super) placement: &'a Placement,
    /// Starts a process of a node: its restart number, from 0.
    pub(super) launch: &'a L,
    pub(super) interrupted: &'a AtomicBool,
}

impl<'a, L> Control<'a, L>
where
    L: Fn(&mut Processes, &NodeConfig, u32) -> Result<(), String>,
{
    pub(super) fn new(
        processes: &'a mut Processes,
        config: &'a ClusterConfig,
        placement: &'a Placement,
        launch: &'a L,
        interrupted: &'a AtomicBool,
    ) -> Self {
        Control {
            processes,
            config,
            placement,
            launch,
            interrupted,
        }
    }

    /// The index of `node`'s process now (the latest, unless crashed).
    fn current(&self, node: NodeId) -> io::Result<usize> {
        self.processes
            .nodes
            .iter()
            .rposition(|p| p.id == node && !p.crashed)
            .ok_or_else(|| io::Error::other(format!("node {} is not running", node.0)))
    }

    fn node_config(&self, node: NodeId) -> io::Result<&NodeConfig> {
        self.config
            .nodes
            .iter()
            .find(|n| n.id == node)
            .ok_or_else(|| io::Error::other(format!("no node {} in the cluster file", node.0)))
    }
}

impl<L> NodeControl for Control<'_, L>
where
    L: Fn(&mut Processes, &NodeConfig, u32) -> Result<(), String>,
{
    fn signal(&mut self, node: NodeId, signal: Signal) -> io::Result<()> {
        let index = self.current(node)?;
        let process = &self.processes.nodes[index];
        let pid = process.pid.ok_or_else(|| {
            io::Error::other(format!("{} has not reported its process id", process.name))
        })?;
        let host = host_access(self.node_config(node)?, self.placement);
        let outcome = ProcessShell::default().run(&host, &signal.kill_argv(pid), None);
        if !outcome.success {
            return Err(io::Error::other(outcome.stderr.trim().to_string()));
        }
        if signal == Signal::Kill {
            let process = &mut self.processes.nodes[index];
            process.crashed = true;
            // Its pipes close with it: stdin too, so that nothing waits on it.
            process.stdin = None;
            let deadline = Instant::now() + KILL_WAIT;
            while self.processes.nodes[index].status.is_none() && Instant::now() < deadline {
                self.processes.pump(LAUNCHER_TICK);
            }
        }
        Ok(())
    }

    fn restart(&mut self, node: NodeId) -> io::Result<()> {
        let incarnation = self.processes.nodes.iter().filter(|p| p.id == node).count() as u32;
        let entry = self.node_config(node)?.clone();
        (self.launch)(self.processes, &entry, incarnation).map_err(io::Error::other)?;
        let index = self.processes.nodes.len() - 1;
        let deadline = Instant::now() + READY_TIMEOUT;
        while !self.processes.nodes[index].ready {
            if self.interrupted.load(Ordering::SeqCst) {
                return Err(io::Error::other("interrupted"));
            }
            if self.processes.ended_early(&[index]).is_some() {
                let process = &self.processes.nodes[index];
                return Err(io::Error::other(format!(
                    "{} exited before it was ready: see {}",
                    process.name,
                    process.log.display()
                )));
            }
            if Instant::now() >= deadline {
                return Err(io::Error::other(format!(
                    "node {} was not listening {READY_TIMEOUT:?} after its restart",
                    node.0
                )));
            }
            self.processes.pump(LAUNCHER_TICK);
        }
        self.processes
            .send_start(&[index])
            .map_err(io::Error::other)
    }

    fn skew(&mut self, node: NodeId, skew: ClockSkew) -> io::Result<()> {
        let index = self.current(node)?;
        let process = &mut self.processes.nodes[index];
        let stdin = process
            .stdin
            .as_mut()
            .ok_or_else(|| io::Error::other(format!("{}'s stdin is closed", process.name)))?;
        writeln!(stdin, "{}", nemesis::skew_line(skew))?;
        stdin.flush()
    }
}

/// Cuts `path` after its last newline: what a SIGKILL left half-written goes.
pub(super) fn keep_whole_lines(path: &Path) -> io::Result<()> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let whole = bytes
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |at| at + 1);
    if whole < bytes.len() {
        fs::write(path, &bytes[..whole])?;
    }
    Ok(())
}
