//! Real deployments: `rehearsal node` runs one node of a cluster file over TCP,
//! `rehearsal cluster` launches a whole cluster of node processes on loopback, measures it
//! and checks the protocol's invariants on what the nodes output, and `rehearsal bench tcp`
//! measures what the node runtime costs against plain `std::net` sockets.
//!
//! # How the launcher talks to its nodes
//!
//! `rehearsal cluster` writes a cluster file with free loopback ports into a fresh working
//! directory and starts one `rehearsal node --controlled` process per node. A controlled
//! node:
//!
//! - prints one JSON object per line on stdout: `{"event":"ready",..}` once it listens,
//!   `{"event":"done",..}` when it reached its goal (a client finished its requests, a
//!   Benaloh peer output its total), and `{"event":"summary",..}` when it stops;
//! - starts its actor when it reads the line `start` on stdin, and stops cleanly (summary,
//!   outputs flushed) at the end of stdin or on SIGTERM. It ignores SIGINT, so that a
//!   Ctrl-C in the terminal, which reaches the whole process group, lets the launcher shut
//!   the cluster down in order.
//!
//! Stopping at the end of stdin is what makes orphans impossible: however the launcher
//! ends (error, Ctrl-C, even SIGKILL), the pipes it holds close and every node stops. The
//! launcher itself stops clients before servers, waits for every process (killing one
//! that does not stop within a bound), and removes its working directory unless asked to
//! keep it.

use crate::cli::{CliError, EXIT_FAILED, EXIT_OK};
use crate::config::Protocol;
use clap::Args;
use rehearsal_hardware::bench_tcp::{self, TcpBenchConfig, TcpBenchReport};
use rehearsal_hardware::{
    check_invariants, encode_message, ClusterConfig, ClusterError, LatencyHistogram,
    LatencySummary, NodeConfig, NodeRuntime, OutputRecord, Role, RunStop, RuntimeConfig, TcpConfig,
    TcpMonitor, TcpTransport, TransportKind,
};
use rehearsal_protocols::{benaloh, unreplicated};
use rehearsal_sim_core::{duration_ns, parse_duration, Actor, Invariant, NodeId, Time};
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

// ---- Arguments --------------------------------------------------------------------------

/// The transports a node can run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TransportArg {
    /// TCP (length-prefixed frames, one connection per peer).
    Tcp,
    /// DPDK poll-mode drivers (needs a build with the `dpdk` feature).
    Dpdk,
}

impl TransportArg {
    fn kind(self) -> TransportKind {
        match self {
            TransportArg::Tcp => TransportKind::Tcp,
            TransportArg::Dpdk => TransportKind::Dpdk,
        }
    }
}

/// Run one node of a cluster file until SIGINT, SIGTERM or --duration; print a summary.
#[derive(Args, Debug, Clone)]
pub struct NodeArgs {
    /// The cluster file (TOML): protocol, seed, and one [[node]] per node with id, role,
    /// address (tcp) and dpdk = { port, mac } (dpdk).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// This node's id in the cluster file.
    #[arg(long)]
    pub id: u32,
    /// Transport to run over.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    pub transport: TransportArg,
    /// Stop after this long (e.g. 30s) [default: run until SIGINT or SIGTERM].
    #[arg(long, value_parser = parse_duration_arg)]
    pub duration: Option<Duration>,
    /// Write every output of the node to FILE, one JSON object per line.
    #[arg(long, value_name = "FILE")]
    pub outputs: Option<PathBuf>,
    /// Print JSON lines (ready, done, summary) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Run under `rehearsal cluster`: JSON lines on stdout, start at a `start` line on
    /// stdin, stop at the end of stdin or on SIGTERM, ignore SIGINT.
    #[arg(long)]
    pub controlled: bool,
}

/// Launch a cluster of node processes on loopback, measure it and check its invariants.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Protocol to run.
    #[arg(long, value_enum, default_value_t = Protocol::Unreplicated)]
    pub protocol: Protocol,
    /// Transport to run over.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    pub transport: TransportArg,
    /// Protocol nodes. unreplicated: the servers, which must be 1 (the one server is node
    /// 0; the clients are added on top, see --clients). benaloh: the peers, at least 2.
    /// [default: 1 for unreplicated, 5 for benaloh]
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Closed-loop client processes (unreplicated only).
    #[arg(long, default_value_t = 4)]
    pub clients: u32,
    /// How long the clients run (unreplicated), or the longest wait for every peer's
    /// total (benaloh), e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub duration: Duration,
    /// Requests per client; a client that has sent them all stops early [default: as many
    /// as fit in --duration].
    #[arg(long)]
    pub requests: Option<u64>,
    /// Master seed of the nodes' random streams.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The `rehearsal` program that runs the nodes [default: this program].
    #[arg(long, value_name = "PATH")]
    pub node_binary: Option<PathBuf>,
    /// Keep the working directory (cluster.toml, node logs, outputs) and print its path.
    #[arg(long)]
    pub keep: bool,
    /// Do not record outputs nor check the protocol's invariants (for pure throughput).
    #[arg(long)]
    pub no_check: bool,
}

/// Unreplicated over TCP through the node runtime, against a plain std::net echo.
#[derive(Args, Debug, Clone)]
pub struct BenchTcpArgs {
    /// Closed-loop clients on each side.
    #[arg(long, default_value_t = 8)]
    pub clients: u32,
    /// Measurement window of each side.
    #[arg(long, default_value = "3s", value_parser = parse_duration_arg)]
    pub duration: Duration,
    /// Warm-up before each window.
    #[arg(long, default_value = "500ms", value_parser = parse_duration_arg)]
    pub warmup: Duration,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn bad(error: impl ToString) -> CliError {
    CliError::BadInput(error.to_string())
}

/// Why `--transport dpdk` cannot run here: the cluster file's DPDK settings (port, MAC,
/// EAL arguments) are parsed and checked, but nodes are not yet started over DPDK.
#[cfg(not(feature = "dpdk"))]
const DPDK_MISSING: &str = "this rehearsal was built without the dpdk feature: the dpdk \
                            transport is not available (use --transport tcp, or rebuild with \
                            `--features dpdk`)";
#[cfg(feature = "dpdk")]
const DPDK_MISSING: &str = "nodes over the dpdk transport are not supported by `rehearsal node` \
                            and `rehearsal cluster` yet (the cluster file's dpdk settings are \
                            valid): use --transport tcp, or `rehearsal bench dpdk`";

// ---- Protocols over real transports -------------------------------------------------------

/// Parameters of unreplicated in a cluster file's `[params]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnreplicatedParams {
    /// Requests per client; absent: unbounded (the client runs until stopped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    requests_per_client: Option<u64>,
    /// First retransmission timeout, e.g. "200ms".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retransmit_after: Option<String>,
}

/// Parameters of Benaloh in a cluster file's `[params]`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct BenalohParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modulus: Option<u64>,
}

/// Retransmission timeout of unreplicated clients over TCP: far above a loopback round
/// trip even on a loaded machine, so a retransmission means a lost connection.
const RETRANSMIT_AFTER_DEFAULT: Duration = Duration::from_millis(500);

/// A protocol of a cluster file, with its parameters.
enum Setup {
    Unreplicated(unreplicated::Config),
    Benaloh(benaloh::Config),
}

impl Setup {
    /// Reads the protocol and its parameters, and checks every node's role.
    fn of(cluster: &ClusterConfig) -> Result<Setup, ClusterError> {
        let protocol =
            <Protocol as clap::ValueEnum>::from_str(&cluster.protocol, false).map_err(|_| {
                cluster.error(format!(
                    "protocol `{}` cannot run on real transports: use unreplicated or benaloh",
                    cluster.protocol
                ))
            })?;
        match protocol {
            Protocol::Unreplicated => {
                let params: UnreplicatedParams = cluster.params()?;
                let retransmit_after = match &params.retransmit_after {
                    None => RETRANSMIT_AFTER_DEFAULT,
                    Some(text) => parse_duration(text)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .ok_or_else(|| {
                            cluster.error(format!(
                                "[params] retransmit_after = {text:?} is not a positive duration such as \"200ms\""
                            ))
                        })?,
                };
                for node in &cluster.nodes {
                    let expected = if node.id == unreplicated::SERVER {
                        Role::Server
                    } else {
                        Role::Client
                    };
                    if node.role != expected {
                        return Err(cluster.node_error(
                            node,
                            format!(
                                "role `{}` is wrong for unreplicated, whose node 0 is the server and every other node a client: use role = \"{expected}\"",
                                node.role
                            ),
                        ));
                    }
                }
                Ok(Setup::Unreplicated(unreplicated::Config {
                    clients: cluster.nodes.len() as u32 - 1,
                    requests_per_client: params.requests_per_client.unwrap_or(u64::MAX),
                    retransmit_after,
                }))
            }
            Protocol::Benaloh => {
                let params: BenalohParams = cluster.params()?;
                if let Some(node) = cluster.nodes.iter().find(|n| n.role != Role::Peer) {
                    return Err(cluster.node_error(
                        node,
                        format!(
                            "role `{}` is wrong for benaloh, whose nodes are all equals: use role = \"peer\"",
                            node.role
                        ),
                    ));
                }
                let config = benaloh::Config {
                    nodes: cluster.nodes.len() as u32,
                    modulus: params.modulus.unwrap_or(benaloh::MODULUS_DEFAULT),
                    mode: benaloh::Mode::Robust,
                };
                benaloh::actors(&config).map_err(|e| cluster.error(e.to_string()))?;
                Ok(Setup::Benaloh(config))
            }
            Protocol::BenalohTimed => Err(cluster.error(
                "protocol `benaloh-timed` is the simulator's racy 90-second workshop schedule; \
                 use benaloh (robust) on real transports",
            )),
            Protocol::Pbft => Err(cluster.error(
                "protocol `pbft` runs in the simulator only for now; clusters run unreplicated or benaloh",
            )),
        }
    }
}

/// What a node watches in its own outputs.
struct Watch<O> {
    /// A client's output that completes a request.
    is_completion: fn(&O) -> bool,
    /// A server's output that executes a request.
    is_execution: fn(&O) -> bool,
    /// An output after which the node has reached its goal.
    is_final: fn(&O) -> bool,
    /// Completions after which the node has reached its goal.
    completions_goal: Option<u64>,
}

fn unreplicated_watch(config: &unreplicated::Config) -> Watch<unreplicated::Output> {
    Watch {
        is_completion: |o| matches!(o, unreplicated::Output::Completed { .. }),
        is_execution: |o| matches!(o, unreplicated::Output::Executed { .. }),
        is_final: |_| false,
        completions_goal: (config.requests_per_client != u64::MAX)
            .then_some(config.requests_per_client),
    }
}

fn benaloh_watch() -> Watch<benaloh::Output> {
    Watch {
        is_completion: |_| false,
        is_execution: |_| false,
        is_final: |o| matches!(o, benaloh::Output::Total { .. }),
        completions_goal: None,
    }
}

// ---- rehearsal node -----------------------------------------------------------------------

/// How a node's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StopCause {
    /// SIGINT or SIGTERM.
    Signal,
    /// The end of stdin (controlled nodes).
    StdinClosed,
    /// `--duration` passed.
    Duration,
    /// The runtime failed.
    Failed,
}

/// The last line a node prints: what it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeSummary {
    node: u32,
    role: Role,
    protocol: String,
    stop: StopCause,
    /// From the start of the actor to the stop.
    elapsed_ns: u64,
    outputs: u64,
    requests_completed: u64,
    requests_executed: u64,
    /// Whether the node reached its goal (see `Watch`).
    done: bool,
    /// Request latencies of a client; empty on other nodes.
    latency: LatencySummary,
    latency_histogram: LatencyHistogram,
    /// [`RuntimeStats`](rehearsal_hardware::RuntimeStats), as JSON.
    runtime: serde_json::Value,
    /// [`TcpStats`](rehearsal_hardware::TcpStats), as JSON.
    tcp: serde_json::Value,
    /// Why the node failed, if it did.
    error: Option<String>,
}

/// What a node's output sink keeps.
struct Observer<O> {
    watch: Watch<O>,
    outputs_file: Option<BufWriter<File>>,
    write_error: Option<io::Error>,
    outputs: u64,
    completions: u64,
    executions: u64,
    /// When the previous request of a closed-loop client completed (or the actor started):
    /// the next request leaves in the same handler, so the gap is that request's latency.
    last_completion: Time,
    latencies: LatencyHistogram,
    done: Arc<AtomicBool>,
}

impl<O: Serialize> Observer<O> {
    fn observe(&mut self, record: &OutputRecord<O>) {
        self.outputs += 1;
        if let Some(file) = &mut self.outputs_file {
            let written = serde_json::to_writer(&mut *file, record)
                .map_err(io::Error::from)
                .and_then(|()| file.write_all(b"\n"));
            if let Err(error) = written {
                self.write_error.get_or_insert(error);
                self.outputs_file = None;
            }
        }
        if (self.watch.is_completion)(&record.value) {
            self.completions += 1;
            self.latencies
                .record_ns(record.at.0.saturating_sub(self.last_completion.0));
            self.last_completion = record.at;
            if Some(self.completions) == self.watch.completions_goal {
                self.done.store(true, Ordering::SeqCst);
            }
        }
        if (self.watch.is_execution)(&record.value) {
            self.executions += 1;
        }
        if (self.watch.is_final)(&record.value) {
            self.done.store(true, Ordering::SeqCst);
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Signal handlers installed for one command, removed when it returns (so that a library
/// caller, such as a test, gets its process's handlers back).
struct Signals {
    ids: Vec<signal_hook::SigId>,
}

impl Signals {
    /// `stop` is raised by SIGTERM, and by SIGINT unless `ignore_interrupt` (then SIGINT
    /// does nothing).
    fn install(stop: &Arc<AtomicBool>, ignore_interrupt: bool) -> io::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut ids = vec![signal_hook::flag::register(SIGTERM, Arc::clone(stop))?];
        let interrupt = if ignore_interrupt {
            Arc::new(AtomicBool::new(false))
        } else {
            Arc::clone(stop)
        };
        ids.push(signal_hook::flag::register(SIGINT, interrupt)?);
        Ok(Signals { ids })
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Runs one node of a cluster file until it is stopped; prints a summary. Exit status 0
/// after a clean stop, 1 if the node failed, 2 for a bad cluster file or arguments.
pub fn node(args: &NodeArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, CliError> {
    let cluster = ClusterConfig::load(&args.config).map_err(bad)?;
    let me = NodeId(args.id);
    let entry = cluster.node(me).ok_or_else(|| {
        bad(format!(
            "{}: there is no node {} (the file's ids are 0 to {})",
            cluster.origin,
            args.id,
            cluster.nodes.len() - 1
        ))
    })?;
    cluster
        .check_transport(args.transport.kind())
        .map_err(bad)?;
    let setup = Setup::of(&cluster).map_err(bad)?;
    if args.transport == TransportArg::Dpdk {
        return Err(bad(DPDK_MISSING));
    }
    match setup {
        Setup::Unreplicated(config) => {
            let actor = if me == unreplicated::SERVER {
                unreplicated::Node::Server(unreplicated::Server::default())
            } else {
                unreplicated::Node::Client(unreplicated::Client::new(
                    config.requests_per_client,
                    config.retransmit_after,
                ))
            };
            run_node(
                actor,
                unreplicated_watch(&config),
                &cluster,
                entry,
                args,
                out,
                err,
            )
        }
        Setup::Benaloh(config) => {
            let actor = benaloh::actors(&config)
                .map_err(bad)?
                .swap_remove(me.0 as usize);
            run_node(actor, benaloh_watch(), &cluster, entry, args, out, err)
        }
    }
}

/// What the stdin of a controlled node says.
enum Control {
    Start,
    Closed,
}

/// Reads a controlled node's stdin on a thread of its own: `start` lines, then the end.
fn watch_stdin() -> Receiver<Control> {
    let (tx, rx) = mpsc::channel();
    let spawned = thread::Builder::new()
        .name("node-stdin".into())
        .spawn(move || {
            let stdin = io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(line) if line.trim() == "start" => {
                        let _ = tx.send(Control::Start);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(Control::Closed);
        });
    if spawned.is_err() {
        // Without a reader the node could never be stopped through stdin: stop it now.
        let (tx, rx) = mpsc::channel();
        let _ = tx.send(Control::Closed);
        return rx;
    }
    rx
}

fn run_node<A>(
    actor: A,
    watch: Watch<A::Output>,
    cluster: &ClusterConfig,
    entry: &NodeConfig,
    args: &NodeArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError>
where
    A: Actor,
    A::Output: Serialize + Send + 'static,
{
    let json = args.json || args.controlled;
    let me = entry.id;
    let outputs_file = match &args.outputs {
        None => None,
        Some(path) => Some(BufWriter::new(File::create(path).map_err(|e| {
            bad(format!(
                "cannot create outputs file `{}`: {e}",
                path.display()
            ))
        })?)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let _signals = Signals::install(&stop, args.controlled)?;
    let table = cluster.tcp_peer_table().map_err(bad)?;
    // The transport's threads must not print: the caller may hold the stderr lock for the
    // whole command (the `rehearsal` binary does). Its errors are forwarded to `err` from
    // this thread instead.
    let tcp_config = TcpConfig {
        log_errors: false,
        ..TcpConfig::default()
    };
    let transport = match TcpTransport::from_peer_table(me, &table, tcp_config) {
        Ok(transport) => transport,
        Err(error) => {
            writeln!(err, "error: node {}: {error}", me.0)?;
            return Ok(EXIT_FAILED);
        }
    };
    let address = transport.local_addr();
    let monitor = transport.monitor();
    let done = Arc::new(AtomicBool::new(false));
    let observer = Arc::new(Mutex::new(Observer {
        watch,
        outputs_file,
        write_error: None,
        outputs: 0,
        completions: 0,
        executions: 0,
        last_completion: Time::ZERO,
        latencies: LatencyHistogram::new(),
        done: Arc::clone(&done),
    }));
    let sink_observer = Arc::clone(&observer);
    let runtime_config = RuntimeConfig {
        seed: cluster.seed,
        ..RuntimeConfig::default()
    };
    let mut runtime = NodeRuntime::new(actor, transport, runtime_config)
        .with_output_sink(move |record| lock(&sink_observer).observe(&record));

    if json {
        let ready = serde_json::json!({"event": "ready", "node": me.0, "address": address});
        writeln!(out, "{ready}")?;
    } else {
        writeln!(
            out,
            "node {} ({} of {}) listening on {address} (tcp); stop it with Ctrl-C",
            me.0, entry.role, cluster.protocol
        )?;
    }
    out.flush()?;

    let stdin_closed = Arc::new(AtomicBool::new(false));
    if args.controlled {
        let control = watch_stdin();
        loop {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            match control.recv_timeout(Duration::from_millis(20)) {
                Ok(Control::Start) => break,
                Ok(Control::Closed) | Err(RecvTimeoutError::Disconnected) => {
                    stdin_closed.store(true, Ordering::SeqCst);
                    break;
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        // After the start, the end of stdin stops the node.
        let stdin_closed = Arc::clone(&stdin_closed);
        thread::Builder::new()
            .name("node-stdin-end".into())
            .spawn(move || {
                while let Ok(message) = control.recv() {
                    if matches!(message, Control::Closed) {
                        break;
                    }
                }
                stdin_closed.store(true, Ordering::SeqCst);
            })?;
    }

    let started = runtime.now();
    lock(&observer).last_completion = started;
    let limit = args
        .duration
        .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
    let mut done_reported = false;
    let mut report_error = None;
    let mut forwarder = ErrorForwarder::default();
    let result = runtime.run_until(limit, |_| {
        forwarder.forward(&monitor, err);
        if !done_reported && done.load(Ordering::Relaxed) {
            done_reported = true;
            if json {
                let line = serde_json::json!({"event": "done", "node": me.0});
                report_error = writeln!(out, "{line}").and_then(|()| out.flush()).err();
            }
        }
        stop.load(Ordering::Relaxed) || stdin_closed.load(Ordering::Relaxed)
    });
    let elapsed_ns = runtime.now().0.saturating_sub(started.0);
    let (stop_cause, error) = match result {
        Ok(RunStop::TimedOut) => (StopCause::Duration, None),
        Ok(_) if stop.load(Ordering::SeqCst) => (StopCause::Signal, None),
        Ok(_) => (StopCause::StdinClosed, None),
        Err(error) => (StopCause::Failed, Some(format!("node {}: {error}", me.0))),
    };
    forwarder.last_check = None;
    forwarder.forward(&monitor, err);
    let runtime_stats = runtime.stats().clone();
    // Stop the transport before reporting, so its counters are final.
    drop(runtime);
    let mut observer = lock(&observer);
    let mut error = error;
    if let Some(file) = &mut observer.outputs_file {
        if let Err(e) = file.flush() {
            observer.write_error.get_or_insert(e);
        }
    }
    if let Some(e) = observer.write_error.take() {
        error.get_or_insert(format!("node {}: cannot write its outputs: {e}", me.0));
    }
    let summary = NodeSummary {
        node: me.0,
        role: entry.role,
        protocol: cluster.protocol.clone(),
        stop: stop_cause,
        elapsed_ns,
        outputs: observer.outputs,
        requests_completed: observer.completions,
        requests_executed: observer.executions,
        done: done.load(Ordering::SeqCst),
        latency: if observer.completions > 0 {
            observer.latencies.summary()
        } else {
            LatencySummary::default()
        },
        latency_histogram: std::mem::take(&mut observer.latencies),
        runtime: serde_json::to_value(&runtime_stats).map_err(io::Error::from)?,
        tcp: serde_json::to_value(monitor.stats()).map_err(io::Error::from)?,
        error: error.clone(),
    };
    if json {
        let mut line = serde_json::to_value(&summary).map_err(io::Error::from)?;
        line["event"] = "summary".into();
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "{}", describe_node(&summary))?;
    }
    out.flush()?;
    if let Some(error) = report_error {
        return Err(error.into());
    }
    if let Some(error) = &error {
        writeln!(err, "error: {error}")?;
        return Ok(EXIT_FAILED);
    }
    Ok(EXIT_OK)
}

/// Copies the transport's connection errors to `err`, from the thread that owns `err`.
#[derive(Default)]
struct ErrorForwarder {
    last_check: Option<Instant>,
    /// The last error printed, to find where the new ones start in the transport's
    /// bounded list of recent errors.
    last_printed: Option<String>,
}

impl ErrorForwarder {
    const INTERVAL: Duration = Duration::from_millis(100);
    const LINES_PER_CHECK_MAX: usize = 20;

    fn forward(&mut self, monitor: &TcpMonitor, err: &mut dyn Write) {
        if self
            .last_check
            .is_some_and(|at| at.elapsed() < Self::INTERVAL)
        {
            return;
        }
        self.last_check = Some(Instant::now());
        let errors = monitor.recent_errors();
        let new_from = match &self.last_printed {
            None => 0,
            Some(last) => errors.iter().rposition(|e| e == last).map_or(0, |i| i + 1),
        };
        let new = &errors[new_from..];
        for error in new.iter().take(Self::LINES_PER_CHECK_MAX) {
            let _ = writeln!(err, "tcp: {error}");
        }
        if new.len() > Self::LINES_PER_CHECK_MAX {
            let _ = writeln!(
                err,
                "tcp: ... and {} more",
                new.len() - Self::LINES_PER_CHECK_MAX
            );
        }
        if let Some(last) = new.last() {
            self.last_printed = Some(last.clone());
        }
    }
}

fn describe_node(s: &NodeSummary) -> String {
    let mut text = format!(
        "node {} ({}) stopped after {} ({}): {} outputs",
        s.node,
        s.role,
        short_ns(s.elapsed_ns),
        match s.stop {
            StopCause::Signal => "signal",
            StopCause::StdinClosed => "end of stdin",
            StopCause::Duration => "--duration",
            StopCause::Failed => "failed",
        },
        s.outputs
    );
    if s.requests_completed > 0 {
        text += &format!(
            ", {} requests completed ({:.0} req/s), latency p50 {} p99 {}",
            s.requests_completed,
            per_second(s.requests_completed, s.elapsed_ns),
            short_ns(s.latency.p50_ns),
            short_ns(s.latency.p99_ns)
        );
    }
    if s.requests_executed > 0 {
        text += &format!(", {} requests executed", s.requests_executed);
    }
    text += &format!(
        "; {} messages sent, {} received, {} dropped",
        counter(&s.runtime, &["node", "messages_sent"]),
        counter(&s.runtime, &["node", "messages_received"]),
        counter(&s.runtime, &["node", "messages_dropped"])
    );
    text
}

/// A counter inside a node's statistics (0 if absent).
fn counter(stats: &serde_json::Value, path: &[&str]) -> u64 {
    path.iter()
        .try_fold(stats, |value, key| value.get(key))
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0)
}

fn per_second(count: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        count as f64 * 1e9 / ns as f64
    }
}

/// Nanoseconds with three significant digits: `85.3us`, `1.27ms`, `2.5s`.
fn short_ns(ns: u64) -> String {
    let (value, unit) = match ns {
        0..1_000 => return format!("{ns}ns"),
        1_000..1_000_000 => (ns as f64 / 1e3, "us"),
        1_000_000..1_000_000_000 => (ns as f64 / 1e6, "ms"),
        _ => (ns as f64 / 1e9, "s"),
    };
    let decimals = if value >= 100.0 {
        0
    } else if value >= 10.0 {
        1
    } else {
        2
    };
    format!("{value:.decimals$}{unit}")
}

// ---- rehearsal cluster --------------------------------------------------------------------

/// Processes one `rehearsal cluster` may launch, at most: each is a node with threads.
pub const CLUSTER_PROCESSES_MAX: u32 = 256;

/// Longest wait for every node to listen.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Longest wait for a group of nodes to stop after their stdin closed, before they are
/// killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// How often the launcher looks at signals and child processes while it waits.
const LAUNCHER_TICK: Duration = Duration::from_millis(20);

/// The figures of one cluster run, as `--json` prints them.
#[derive(Debug, Serialize)]
struct ClusterReport {
    protocol: String,
    transport: String,
    nodes: u32,
    clients: u32,
    duration_ns: u64,
    /// `ok`, `failed` (a node failed or an invariant does not hold) or `interrupted`.
    outcome: &'static str,
    failures: Vec<String>,
    /// Every client's completed requests.
    requests: u64,
    /// The sum of the clients' rates (each client's requests over its own running time).
    throughput_rps: f64,
    latency: LatencySummary,
    /// Whether the invariants were checked, and on how many outputs.
    invariants_checked: bool,
    outputs_checked: u64,
    violations: Vec<String>,
    per_node: Vec<NodeReport>,
    /// The working directory, when kept.
    #[serde(skip_serializing_if = "Option::is_none")]
    directory: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct NodeReport {
    node: u32,
    role: Role,
    /// The exit code; `None` if the node was ended by a signal (see `signal`).
    exit_status: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signal: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<NodeSummaryBrief>,
}

/// A node's summary without its histogram.
#[derive(Debug, Serialize)]
struct NodeSummaryBrief {
    stop: StopCause,
    elapsed_ns: u64,
    outputs: u64,
    requests_completed: u64,
    requests_executed: u64,
    requests_per_second: f64,
    done: bool,
    latency: LatencySummary,
    messages_sent: u64,
    messages_received: u64,
    messages_dropped: u64,
    tcp_frames_lost: u64,
    tcp_connection_failures: u64,
}

impl From<&NodeSummary> for NodeSummaryBrief {
    fn from(s: &NodeSummary) -> Self {
        NodeSummaryBrief {
            stop: s.stop,
            elapsed_ns: s.elapsed_ns,
            outputs: s.outputs,
            requests_completed: s.requests_completed,
            requests_executed: s.requests_executed,
            requests_per_second: per_second(s.requests_completed, s.elapsed_ns),
            done: s.done,
            latency: s.latency,
            messages_sent: counter(&s.runtime, &["node", "messages_sent"]),
            messages_received: counter(&s.runtime, &["node", "messages_received"]),
            messages_dropped: counter(&s.runtime, &["node", "messages_dropped"]),
            tcp_frames_lost: counter(&s.tcp, &["frames_lost"]),
            tcp_connection_failures: counter(&s.tcp, &["outbound_failures"])
                + counter(&s.tcp, &["inbound_failed"]),
        }
    }
}

/// A directory of the launcher's files, removed on drop unless kept.
struct WorkDir {
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
enum ChildEvent {
    Line(usize, String),
    /// The node closed its stdout (it is exiting).
    Closed(usize),
}

struct NodeProcess {
    id: NodeId,
    role: Role,
    child: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
    outputs: PathBuf,
    ready: bool,
    done: bool,
    stdout_closed: bool,
    summary: Option<NodeSummary>,
    status: Option<ExitStatus>,
    /// Lines on stdout that were not events (reported on failure).
    stray_lines: Vec<String>,
}

/// Every node process of a launch. Dropping it stops and reaps every process still
/// running: no error path of the launcher leaves an orphan.
struct Processes {
    nodes: Vec<NodeProcess>,
    events: Receiver<ChildEvent>,
    events_tx: Sender<ChildEvent>,
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
            .arg("tcp")
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
fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Finds the `rehearsal` program to launch nodes with.
fn node_binary(args: &ClusterArgs) -> Result<PathBuf, CliError> {
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

/// Builds the cluster of a launch: the nodes on free loopback ports.
fn launch_config(args: &ClusterArgs, nodes: u32, clients: u32) -> Result<ClusterConfig, CliError> {
    let count = nodes + clients;
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
    let (protocol, params) = match args.protocol {
        Protocol::Unreplicated => {
            let params = UnreplicatedParams {
                requests_per_client: args.requests,
                retransmit_after: None,
            };
            ("unreplicated", toml::Table::try_from(params).map_err(bad)?)
        }
        _ => ("benaloh", toml::Table::new()),
    };
    let role = |i: u32| match args.protocol {
        Protocol::Unreplicated if i == 0 => Role::Server,
        Protocol::Unreplicated => Role::Client,
        _ => Role::Peer,
    };
    let node_configs = addresses
        .into_iter()
        .enumerate()
        .map(|(i, address)| NodeConfig::tcp(NodeId(i as u32), role(i as u32), address))
        .collect();
    ClusterConfig::new("cluster.toml", protocol, args.seed, params, node_configs).map_err(bad)
}

fn check_cluster_args(args: &ClusterArgs) -> Result<(u32, u32), CliError> {
    let nodes = args.nodes.unwrap_or(args.protocol.nodes_default());
    let clients = match args.protocol {
        Protocol::Unreplicated => {
            if nodes != 1 {
                return Err(bad(format!(
                    "unreplicated has exactly one server: --nodes must be 1, got {nodes} (use --clients for more client processes)"
                )));
            }
            if args.clients == 0 {
                return Err(bad("unreplicated needs at least 1 client (--clients)"));
            }
            if args.requests == Some(0) {
                return Err(bad("--requests must be at least 1"));
            }
            args.clients
        }
        Protocol::Benaloh => {
            if nodes < 2 {
                return Err(bad(format!(
                    "benaloh needs at least 2 peers to share a secret, got --nodes {nodes}"
                )));
            }
            0
        }
        Protocol::BenalohTimed => {
            return Err(bad(
                "benaloh-timed is the simulator's racy 90-second workshop schedule; run benaloh (robust) on a cluster",
            ))
        }
        Protocol::Pbft => {
            return Err(bad(
                "pbft runs in the simulator only for now; clusters run unreplicated or benaloh",
            ))
        }
    };
    if nodes.saturating_add(clients) > CLUSTER_PROCESSES_MAX {
        return Err(bad(format!(
            "at most {CLUSTER_PROCESSES_MAX} node processes per cluster, asked for {}",
            nodes.saturating_add(clients)
        )));
    }
    if args.duration.is_zero() {
        return Err(bad("--duration must be longer than 0"));
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
    let (nodes, clients) = check_cluster_args(args)?;
    if args.transport == TransportArg::Dpdk {
        return Err(bad(DPDK_MISSING));
    }
    let binary = node_binary(args)?;
    let interrupted = Arc::new(AtomicBool::new(false));
    let _signals = Signals::install(&interrupted, false)?;
    let dir = WorkDir::create(args.keep)?;
    let config = launch_config(args, nodes, clients)?;
    let config_path = dir.path.join("cluster.toml");
    fs::write(&config_path, config.to_toml())?;

    let mut processes = Processes::new();
    let mut failures: Vec<String> = Vec::new();
    for node in &config.nodes {
        if let Err(e) = processes.spawn(&binary, &dir.path, &config_path, node, !args.no_check) {
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
        let goal_nodes: &[usize] = match args.protocol {
            Protocol::Unreplicated => &clients_idx,
            _ => &all,
        };
        let stop_when_done = args.requests.is_some() || args.protocol != Protocol::Unreplicated;
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
                if args.protocol != Protocol::Unreplicated {
                    failures.push(format!(
                        "not every peer output its total within {}",
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
        let result = match args.protocol {
            Protocol::Unreplicated => check_unreplicated(&files, clients, args.requests),
            _ => check_benaloh(&files, nodes, benaloh::MODULUS_DEFAULT),
        };
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

#[allow(clippy::too_many_arguments)]
fn cluster_report(
    args: &ClusterArgs,
    nodes: u32,
    clients: u32,
    processes: &Processes,
    failures: Vec<String>,
    violations: Vec<String>,
    invariants_checked: bool,
    outputs_checked: u64,
    interrupted: bool,
    directory: Option<PathBuf>,
) -> ClusterReport {
    let mut latencies = LatencyHistogram::new();
    let mut requests = 0;
    let mut throughput_rps = 0.0;
    for node in &processes.nodes {
        if let Some(summary) = &node.summary {
            if summary.requests_completed > 0 {
                requests += summary.requests_completed;
                throughput_rps += per_second(summary.requests_completed, summary.elapsed_ns);
                latencies.merge(&summary.latency_histogram);
            }
        }
    }
    let outcome = if interrupted {
        "interrupted"
    } else if failures.is_empty() && violations.is_empty() {
        "ok"
    } else {
        "failed"
    };
    ClusterReport {
        protocol: args.protocol.name().to_string(),
        transport: "tcp".into(),
        nodes,
        clients,
        duration_ns: duration_ns(args.duration),
        outcome,
        failures,
        requests,
        throughput_rps,
        latency: latencies.summary(),
        invariants_checked,
        outputs_checked,
        violations,
        per_node: processes
            .nodes
            .iter()
            .map(|node| NodeReport {
                node: node.id.0,
                role: node.role,
                exit_status: node.status.and_then(|s| s.code()),
                signal: node.status.and_then(|s| {
                    use std::os::unix::process::ExitStatusExt;
                    s.signal()
                }),
                summary: node.summary.as_ref().map(NodeSummaryBrief::from),
            })
            .collect(),
        directory,
    }
}

fn write_cluster_table(r: &ClusterReport, out: &mut dyn Write) -> io::Result<()> {
    let size = if r.protocol == "unreplicated" {
        format!("1 server, {} clients", r.clients)
    } else {
        format!("{} peers", r.nodes)
    };
    writeln!(
        out,
        "{} over {} · {size} · {} · {}",
        r.protocol,
        r.transport,
        short_ns(r.duration_ns),
        r.outcome
    )?;
    if r.requests > 0 {
        writeln!(
            out,
            "throughput  {:.0} req/s ({} requests)",
            r.throughput_rps, r.requests
        )?;
        let l = &r.latency;
        writeln!(
            out,
            "latency     p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            short_ns(l.p50_ns),
            short_ns(l.p90_ns),
            short_ns(l.p99_ns),
            short_ns(l.p999_ns),
            short_ns(l.max_ns)
        )?;
    }
    writeln!(
        out,
        "{:<5} {:<7} {:>10} {:>10} {:>9} {:>9} {:>11} {:>11} {:>8}",
        "node", "role", "requests", "req/s", "p50", "p99", "msgs sent", "msgs recv", "dropped"
    )?;
    for node in &r.per_node {
        match &node.summary {
            Some(s) => writeln!(
                out,
                "{:<5} {:<7} {:>10} {:>10.0} {:>9} {:>9} {:>11} {:>11} {:>8}",
                node.node,
                node.role.name(),
                s.requests_completed.max(s.requests_executed),
                per_second(s.requests_completed.max(s.requests_executed), s.elapsed_ns),
                if s.latency.count > 0 {
                    short_ns(s.latency.p50_ns)
                } else {
                    "-".into()
                },
                if s.latency.count > 0 {
                    short_ns(s.latency.p99_ns)
                } else {
                    "-".into()
                },
                s.messages_sent,
                s.messages_received,
                s.messages_dropped
            )?,
            None => writeln!(
                out,
                "{:<5} {:<7} (no summary; {})",
                node.node,
                node.role.name(),
                match (node.exit_status, node.signal) {
                    (Some(code), _) => format!("exit status {code}"),
                    (None, Some(signal)) => format!("killed by signal {signal}"),
                    (None, None) => "still running".into(),
                }
            )?,
        }
    }
    if r.invariants_checked {
        if r.violations.is_empty() {
            writeln!(
                out,
                "invariants  ok ({} outputs checked)",
                r.outputs_checked
            )?;
        } else {
            writeln!(out, "invariants  VIOLATED:")?;
            for v in r.violations.iter().take(10) {
                writeln!(out, "  {v}")?;
            }
        }
    } else {
        writeln!(out, "invariants  not checked")?;
    }
    for failure in &r.failures {
        writeln!(out, "failure: {failure}")?;
    }
    if let Some(dir) = &r.directory {
        writeln!(out, "files kept in {}", dir.display())?;
    }
    Ok(())
}

// ---- Checking a cluster's outputs ---------------------------------------------------------

/// One line of a node's outputs file.
#[derive(Deserialize)]
struct OutputLine<V> {
    node: NodeId,
    at: Time,
    value: V,
}

/// Reads every outputs file; a missing file (a node that output nothing) reads as empty.
fn read_outputs<V: serde::de::DeserializeOwned>(
    files: &[PathBuf],
) -> Result<Vec<OutputLine<V>>, String> {
    let mut lines = Vec::new();
    for path in files {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
        };
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            let parsed = serde_json::from_str(&line).map_err(|e| {
                format!(
                    "`{}` line {}: not an output: {e}",
                    path.display(),
                    number + 1
                )
            })?;
            lines.push(parsed);
        }
    }
    Ok(lines)
}

/// Checks [`unreplicated::RequestsAnswered`] on the outputs of a cluster run. The nodes'
/// clocks are not comparable, so the outputs are put in the one order causality allows
/// in a closed loop: per client, request by request, the server's execution before the
/// client's completion. With no request limit, every client must have completed at least
/// one request.
fn check_unreplicated(
    files: &[PathBuf],
    clients: u32,
    requests: Option<u64>,
) -> Result<(u64, Vec<String>), String> {
    let lines: Vec<OutputLine<unreplicated::Output>> = read_outputs(files)?;
    let mut records: Vec<(NodeId, u64, u8, OutputRecord<unreplicated::Output>)> = lines
        .into_iter()
        .map(|line| {
            let (client, request, kind) = match line.value {
                unreplicated::Output::Executed {
                    client, request, ..
                } => (client, request, 0),
                unreplicated::Output::Completed { request, .. } => (line.node, request, 1),
            };
            let record = OutputRecord {
                node: line.node,
                at: line.at,
                value: line.value,
            };
            (client, request, kind, record)
        })
        .collect();
    // A stable sort keeps a request executed twice as two adjacent executions, which the
    // invariant reports.
    records.sort_by_key(|(client, request, kind, _)| (*client, *request, *kind));
    let outputs: Vec<OutputRecord<unreplicated::Output>> = records
        .into_iter()
        .map(|(_, _, _, record)| record)
        .collect();
    let config = unreplicated::Config {
        clients,
        requests_per_client: requests.unwrap_or(1),
        retransmit_after: RETRANSMIT_AFTER_DEFAULT,
    };
    let mut invariant = unreplicated::RequestsAnswered::new(&config);
    let violations = run_invariant::<unreplicated::Node>(&outputs, &mut invariant);
    Ok((outputs.len() as u64, violations))
}

/// Checks [`benaloh::CorrectSum`] on the outputs of a cluster run: every private value
/// is announced at a node's start, before any share leaves it, so every `Secret` comes
/// before every `Total`.
fn check_benaloh(
    files: &[PathBuf],
    nodes: u32,
    modulus: u64,
) -> Result<(u64, Vec<String>), String> {
    let lines: Vec<OutputLine<benaloh::Output>> = read_outputs(files)?;
    let mut outputs: Vec<(u8, OutputRecord<benaloh::Output>)> = lines
        .into_iter()
        .map(|line| {
            let kind = match line.value {
                benaloh::Output::Secret { .. } => 0,
                benaloh::Output::Total { .. } => 1,
            };
            let record = OutputRecord {
                node: line.node,
                at: line.at,
                value: line.value,
            };
            (kind, record)
        })
        .collect();
    outputs.sort_by_key(|(kind, record)| (*kind, record.node));
    let outputs: Vec<OutputRecord<benaloh::Output>> =
        outputs.into_iter().map(|(_, record)| record).collect();
    let config = benaloh::Config {
        nodes,
        modulus,
        mode: benaloh::Mode::Robust,
    };
    let mut invariant = benaloh::CorrectSum::new(&config);
    let violations = run_invariant::<benaloh::Node>(&outputs, &mut invariant);
    Ok((outputs.len() as u64, violations))
}

fn run_invariant<A: Actor>(
    outputs: &[OutputRecord<A::Output>],
    invariant: &mut dyn Invariant<A>,
) -> Vec<String> {
    let end = outputs.iter().map(|r| r.at).max().unwrap_or(Time::ZERO);
    check_invariants::<A>(outputs, &[], end, &mut [invariant])
}

// ---- rehearsal bench tcp ------------------------------------------------------------------

/// Unreplicated closed-loop clients through the node runtime over TCP on loopback, side by
/// side with a plain `std::net` echo of the same message size and client count.
pub fn bench_tcp(
    args: &BenchTcpArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let proto = unreplicated::Config {
        clients: args.clients,
        requests_per_client: u64::MAX,
        retransmit_after: RETRANSMIT_AFTER_DEFAULT,
    };
    // The baseline moves frames as large as a typical request of the runtime side: a
    // request number in the hundreds of thousands and an operand below 1000.
    let mut sample = Vec::new();
    encode_message(
        &unreplicated::Msg::Request {
            request: 100_000,
            operand: 500,
        },
        &mut sample,
    )
    .map_err(|e| bad(format!("cannot encode a request: {e}")))?;
    let config = TcpBenchConfig {
        clients: args.clients,
        message_bytes: sample.len(),
        warmup: args.warmup,
        duration: args.duration,
    };
    config.validate().map_err(bad)?;
    let workload = format!(
        "unreplicated closed loop, {} clients, 1 server, TCP on 127.0.0.1, {}-byte requests; \
         baseline: std::net blocking echo, thread per connection",
        args.clients,
        sample.len()
    );
    let report = match bench_tcp::run(
        workload,
        unreplicated::actors(&proto),
        |o| matches!(o, unreplicated::Output::Completed { .. }),
        &config,
    ) {
        Ok(report) => report,
        Err(error) => {
            writeln!(err, "error: bench tcp: {error}")?;
            return Ok(EXIT_FAILED);
        }
    };
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&report).map_err(io::Error::from)?
        )?;
    } else {
        write_bench_tcp(&report, out)?;
    }
    // A run in which the runtime completed nothing measured nothing.
    Ok(
        if report.runtime.requests > 0 && report.baseline.requests > 0 {
            EXIT_OK
        } else {
            EXIT_FAILED
        },
    )
}

fn write_bench_tcp(r: &TcpBenchReport, out: &mut dyn Write) -> io::Result<()> {
    writeln!(out, "bench tcp: {}", r.workload)?;
    writeln!(
        out,
        "  window {} after {} warm-up, per side",
        short_ns(duration_ns(r.config.duration)),
        short_ns(duration_ns(r.config.warmup))
    )?;
    for (name, side) in [("runtime ", &r.runtime), ("baseline", &r.baseline)] {
        writeln!(
            out,
            "  {name}  {:>10.0} req/s   p50 {:>8}  p99 {:>8}  p99.9 {:>8}",
            side.requests_per_second,
            short_ns(side.latency.p50_ns),
            short_ns(side.latency.p99_ns),
            short_ns(side.latency.p999_ns)
        )?;
    }
    writeln!(
        out,
        "  runtime / baseline throughput: {:.1} %",
        r.throughput_ratio * 100.0
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_durations_keep_three_digits() {
        assert_eq!(short_ns(0), "0ns");
        assert_eq!(short_ns(999), "999ns");
        assert_eq!(short_ns(85_321), "85.3us");
        assert_eq!(short_ns(1_234_567), "1.23ms");
        assert_eq!(short_ns(2_500_000_000), "2.50s");
        assert_eq!(short_ns(123_456_789), "123ms");
    }
}
