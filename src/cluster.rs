//! Real deployments: `rehearsal node` runs one node of a cluster file over TCP or DPDK,
//! `rehearsal cluster` launches a whole cluster of node processes on loopback (or, over
//! DPDK, two nodes joined by a memif link), measures it and checks the protocol's
//! invariants on what the nodes output, and `rehearsal bench tcp` measures what the node
//! runtime costs against plain `std::net` sockets.
//!
//! # Nodes over DPDK
//!
//! With the `dpdk` feature, `rehearsal node --transport dpdk` runs a node on the device its
//! `[[node]]` entry names in `dpdk = { port, mac, eal_args }` (see
//! [`rehearsal_hardware::cluster`]): it initialises DPDK's EAL for its process, creates or
//! finds the device, and sends to every other node of the file at that node's `mac`. It
//! waits for the port's link (for memif, the other end's process) before it starts its
//! actor, and otherwise behaves as over TCP: same `ready`, `done` and `summary` lines, same
//! `--controlled` protocol, signals and outputs file. `rehearsal cluster --transport dpdk`
//! launches two such nodes joined by a memif link in its working directory.
//!
//! # How the launcher talks to its nodes
//!
//! `rehearsal cluster` writes a cluster file with free loopback ports into a fresh working
//! directory and starts one `rehearsal node --controlled` process per node. A controlled
//! node:
//!
//! - prints one JSON object per line on stdout: `{"event":"ready",..}` once it listens,
//!   `{"event":"done",..}` when it reached its goal (a client finished its requests, a
//!   Benaloh peer output its total: its protocol's final output), and `{"event":"summary",..}` when it stops;
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
use crate::config::{ParamMap, Protocol};
use crate::registry::NodeRun;
use clap::Args;
use rehearsal_hardware::bench_tcp::{self, TcpBenchConfig, TcpBenchReport};
use rehearsal_hardware::cluster::{DpdkNode, MacAddr};
use rehearsal_hardware::{
    check_invariants, encode_message, ClusterConfig, LatencyHistogram, LatencySummary, NodeConfig,
    NodeRuntime, OutputRecord, Role, RunStop, RuntimeConfig, TcpConfig, TcpMonitor, TcpTransport,
    Transport, TransportKind,
};
use rehearsal_protocols::unreplicated;
use rehearsal_sim_core::protocol::{Sizes, Target};
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
    /// address (tcp) and dpdk = { port = "DEVICE", mac } (dpdk).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// This node's id in the cluster file.
    #[arg(long)]
    pub id: u32,
    /// Transport to run over.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    pub transport: TransportArg,
    /// Stop after this long (e.g. 30s), waits for the peer included [default: run until
    /// SIGINT or SIGTERM].
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
/// Over DPDK the cluster is two nodes joined by a memif link (`--clients 1` for
/// unreplicated, `--nodes 2` for benaloh).
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// Protocol to run (`rehearsal protocols` lists them).
    #[arg(long, value_parser = protocol_value_parser(), default_value = "unreplicated")]
    pub protocol: Protocol,
    /// Transport to run over.
    #[arg(long, value_enum, default_value_t = TransportArg::Tcp)]
    pub transport: TransportArg,
    /// Protocol nodes. unreplicated: the servers, which must be 1 (the one server is node
    /// 0; the clients are added on top, see --clients). benaloh: the peers, at least 2.
    /// pbft: the replicas, 3f+1 (nodes 0 to n-1; Ed25519 signatures).
    /// [default: 1 for unreplicated, 5 for benaloh, 4 for pbft]
    #[arg(long)]
    pub nodes: Option<u32>,
    /// Closed-loop client processes (unreplicated and pbft).
    #[arg(long, default_value_t = 4)]
    pub clients: u32,
    /// How long the clients run (unreplicated, pbft), or the longest wait for every
    /// peer's total (benaloh), e.g. 10s.
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
    /// A protocol parameter, written to the cluster file's `[params]` (repeatable;
    /// `rehearsal protocols` lists each protocol's).
    #[arg(long, value_name = "NAME=VALUE", value_parser = crate::cli::parse_param_arg)]
    pub param: Vec<(String, serde_json::Value)>,
    /// Shorthand for `--param crypto=...`: `real` (Ed25519) or `sim` (pbft) [default:
    /// real on real transports].
    #[arg(long, value_name = "real|sim")]
    pub crypto: Option<String>,
    /// Shorthand for `--param batch=N`: most requests per batch (pbft) [default: 1].
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
}

impl ClusterArgs {
    /// The protocol parameters the flags set, by name.
    pub fn params(&self) -> ParamMap {
        let mut params: ParamMap = self.param.iter().cloned().collect();
        if let Some(crypto) = &self.crypto {
            params.insert("crypto".into(), crypto.clone().into());
        }
        if let Some(batch) = self.batch {
            params.insert("batch".into(), batch.into());
        }
        params
    }
}

/// `--protocol`'s values: every registered protocol.
fn protocol_value_parser() -> impl clap::builder::TypedValueParser<Value = Protocol> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Protocol::names()).map(|name| Protocol::of(&name))
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
    /// Nice value (0-19) of the client threads of both sides: above 0, the load
    /// generators yield the CPU to the servers sharing the machine with them (Linux;
    /// elsewhere only 0 runs)
    #[arg(long, default_value_t = bench_tcp::BENCH_CLIENT_NICE_DEFAULT, value_name = "N")]
    pub client_nice: u8,
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

/// Why `--transport dpdk` cannot run here: the cluster file's DPDK settings (device, MAC,
/// EAL arguments) are parsed and checked, but this build has no DPDK transport.
#[cfg(not(feature = "dpdk"))]
const DPDK_MISSING: &str = "this rehearsal was built without the dpdk feature: the dpdk \
                            transport is not available (use --transport tcp, or rebuild with \
                            `--features dpdk`)";

// ---- Protocols over real transports -------------------------------------------------------

/// What a node watches in its own outputs (from its protocol's registry entry).
pub(crate) struct Watch<O> {
    /// A client's output that completes a request.
    pub is_completion: fn(&O) -> bool,
    /// How many requests a server's output executes.
    pub executions: fn(&O) -> u64,
    /// An output after which the node has reached its goal.
    pub is_final: fn(&O) -> bool,
    /// Completions after which the node has reached its goal.
    pub completions_goal: Option<u64>,
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
    /// The transport the node ran over.
    transport: TransportKind,
    /// [`TcpStats`](rehearsal_hardware::TcpStats), as JSON (over TCP).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    tcp: serde_json::Value,
    /// `DpdkStats` of the DPDK transport, as JSON (over DPDK).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    dpdk: serde_json::Value,
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
        self.executions += (self.watch.executions)(&record.value);
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
    let protocol = Protocol::named(&cluster.protocol).map_err(|e| bad(cluster.error(e)))?;
    #[cfg(not(feature = "dpdk"))]
    if args.transport == TransportArg::Dpdk {
        return Err(bad(DPDK_MISSING));
    }
    protocol.run_node(NodeRun {
        cluster: &cluster,
        entry,
        args,
        out,
        err,
    })
}

/// Runs `actor` over the transport `--transport` names.
pub(crate) fn run_node_over<A>(
    actor: A,
    watch: Watch<A::Output>,
    run: NodeRun<'_>,
) -> Result<u8, CliError>
where
    A: Actor,
    A::Output: Serialize + Send + 'static,
{
    let NodeRun {
        cluster,
        entry,
        args,
        out,
        err,
    } = run;
    match args.transport {
        TransportArg::Tcp => {
            let open = |_: &mut dyn Write, _: &dyn Fn() -> bool| open_tcp(cluster, entry);
            run_node(actor, watch, open, cluster, entry, args, out, err)
        }
        #[cfg(feature = "dpdk")]
        TransportArg::Dpdk => {
            let deadline = args.duration.map(|limit| Instant::now() + limit);
            let open = |err: &mut dyn Write, stopped: &dyn Fn() -> bool| {
                dpdk_node::open(cluster, entry, err, stopped, deadline)
            };
            run_node(actor, watch, open, cluster, entry, args, out, err)
        }
        // Refused by `node` before the actor was built.
        #[cfg(not(feature = "dpdk"))]
        TransportArg::Dpdk => Err(bad(DPDK_MISSING)),
    }
}

/// What a node's run needs of its transport besides moving messages: where it is, whether
/// it can reach its peers yet, the errors of its own threads, and its final counters.
trait NodeTransport: Transport + Sized {
    /// Which transport this is.
    const KIND: TransportKind;

    /// Where the node is, as fields of its `ready` line.
    fn whereabouts(&self) -> serde_json::Map<String, serde_json::Value>;

    /// Where the node is, for people: `listening on 127.0.0.1:7000 (tcp)`.
    fn describe(&self) -> String;

    /// Whether the node can reach its peers now. TCP connects on demand, so it always can;
    /// a DPDK port can once its link is up (for memif: the other end's process is there).
    fn link_up(&self) -> bool {
        true
    }

    /// Copies the errors the transport's own threads met to `err`, from the caller's
    /// thread (which may hold the stderr lock).
    fn forward_errors(&self, _forwarder: &mut ErrorForwarder, _err: &mut dyn Write) {}

    /// Stops the transport and returns its final counters, as JSON.
    fn finish(self) -> serde_json::Value;
}

impl NodeTransport for TcpTransport {
    const KIND: TransportKind = TransportKind::Tcp;

    fn whereabouts(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = serde_json::Map::new();
        fields.insert("address".into(), self.local_addr().to_string().into());
        fields
    }

    fn describe(&self) -> String {
        format!("listening on {} (tcp)", self.local_addr())
    }

    fn forward_errors(&self, forwarder: &mut ErrorForwarder, err: &mut dyn Write) {
        forwarder.forward(&self.monitor(), err);
    }

    fn finish(self) -> serde_json::Value {
        let monitor = self.monitor();
        // Stop the connections' threads first, so the counters are final.
        drop(self);
        serde_json::to_value(monitor.stats()).unwrap_or_default()
    }
}

fn open_tcp(cluster: &ClusterConfig, entry: &NodeConfig) -> Result<TcpTransport, String> {
    let table = cluster.tcp_peer_table().map_err(|e| e.to_string())?;
    // The transport's threads must not print: the caller may hold the stderr lock for the
    // whole command (the `rehearsal` binary does). Its errors are forwarded to `err` from
    // the node's thread instead.
    let tcp_config = TcpConfig {
        log_errors: false,
        ..TcpConfig::default()
    };
    TcpTransport::from_peer_table(entry.id, &table, tcp_config).map_err(|e| e.to_string())
}

/// Reads a controlled node's stdin on a thread of its own: sends `()` for every `start`
/// line, and raises `closed` at the end of stdin (the channel then disconnects).
fn watch_stdin(closed: &Arc<AtomicBool>) -> Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let at_end = Arc::clone(closed);
    let spawned = thread::Builder::new()
        .name("node-stdin".into())
        .spawn(move || {
            let stdin = io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(line) if line.trim() == "start" => {
                        let _ = tx.send(());
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            at_end.store(true, Ordering::SeqCst);
        });
    if spawned.is_err() {
        // Without a reader the node could never be stopped through stdin: stop it now.
        closed.store(true, Ordering::SeqCst);
    }
    rx
}

/// Runs one node over the transport `open` makes (after the outputs file and the signal
/// handlers are set up; `open` may wait while its second argument, "stopped by a signal
/// or the end of stdin", is false): the `ready` line, the controlled start, the wait for
/// the link, the run, and the summary.
#[allow(clippy::too_many_arguments)]
fn run_node<A, T>(
    actor: A,
    watch: Watch<A::Output>,
    open: impl FnOnce(&mut dyn Write, &dyn Fn() -> bool) -> Result<T, String>,
    cluster: &ClusterConfig,
    entry: &NodeConfig,
    args: &NodeArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError>
where
    A: Actor,
    A::Output: Serialize + Send + 'static,
    T: NodeTransport,
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
    // A controlled node heeds the end of its stdin from the start, so that it stops even
    // while its transport opens (a memif client waits for its server).
    let stdin_closed = Arc::new(AtomicBool::new(false));
    let control = args.controlled.then(|| watch_stdin(&stdin_closed));
    let stopped = || stop.load(Ordering::Relaxed) || stdin_closed.load(Ordering::Relaxed);
    // --duration counts from here (from `start` under --controlled): waits for the peer
    // included.
    let mut begun = Instant::now();
    let transport = match open(err, &stopped) {
        Ok(transport) => transport,
        Err(error) => {
            writeln!(err, "error: node {}: {error}", me.0)?;
            return Ok(EXIT_FAILED);
        }
    };
    let whereabouts = transport.whereabouts();
    let description = transport.describe();
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
        let mut ready = serde_json::Map::new();
        ready.insert("event".into(), "ready".into());
        ready.insert("node".into(), me.0.into());
        ready.insert("transport".into(), T::KIND.name().into());
        ready.extend(whereabouts);
        writeln!(out, "{}", serde_json::Value::Object(ready))?;
    } else {
        writeln!(
            out,
            "node {} ({} of {}) {description}; stop it with Ctrl-C",
            me.0, entry.role, cluster.protocol
        )?;
    }
    out.flush()?;

    if let Some(control) = control {
        // Wait for `start`; after it, the end of stdin (`stdin_closed`) stops the node.
        while !stopped() {
            match control.recv_timeout(Duration::from_millis(20)) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        begun = Instant::now();
    }

    let duration = args
        .duration
        .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
    let left = || duration.saturating_sub(begun.elapsed());
    // Messages sent before the link is up would wait in a bounded queue, and the first
    // request's latency would include the peer's start: start the actor once it is up.
    wait_for_link(runtime.transport(), left(), &stopped, || {
        if json {
            Ok(())
        } else {
            writeln!(
                out,
                "node {}: waiting for the link to come up (is the other node running?)",
                me.0
            )
            .and_then(|()| out.flush())
        }
    })?;
    let limit = left();

    let started = runtime.now();
    lock(&observer).last_completion = started;
    let mut done_reported = false;
    let mut report_error = None;
    let mut forwarder = ErrorForwarder::default();
    let result = runtime.run_until(limit, |node| {
        node.transport().forward_errors(&mut forwarder, err);
        if !done_reported && done.load(Ordering::Relaxed) {
            done_reported = true;
            if json {
                let line = serde_json::json!({"event": "done", "node": me.0});
                report_error = writeln!(out, "{line}").and_then(|()| out.flush()).err();
            }
        }
        stopped()
    });
    let elapsed_ns = runtime.now().0.saturating_sub(started.0);
    let (stop_cause, error) = match result {
        Ok(RunStop::TimedOut) => (StopCause::Duration, None),
        Ok(_) if stop.load(Ordering::SeqCst) => (StopCause::Signal, None),
        Ok(_) => (StopCause::StdinClosed, None),
        Err(error) => (StopCause::Failed, Some(format!("node {}: {error}", me.0))),
    };
    forwarder.last_check = None;
    runtime.transport().forward_errors(&mut forwarder, err);
    let runtime_stats = runtime.stats().clone();
    // Stop the transport before reporting, so its counters are final.
    let (_, transport) = runtime.into_parts();
    let transport_stats = transport.finish();
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
    let (tcp, dpdk) = match T::KIND {
        TransportKind::Tcp => (transport_stats, serde_json::Value::Null),
        TransportKind::Dpdk => (serde_json::Value::Null, transport_stats),
    };
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
        transport: T::KIND,
        tcp,
        dpdk,
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

/// How often a node looks at its link while it waits for it.
const LINK_POLL: Duration = Duration::from_millis(5);

/// How long a node waits for its link before it says it is waiting.
const LINK_NOTICE_AFTER: Duration = Duration::from_secs(2);

/// Waits until `transport`'s link is up, `stopped()` holds or `limit` passes; calls
/// `notice` once if the wait lasts longer than [`LINK_NOTICE_AFTER`].
fn wait_for_link<T: NodeTransport>(
    transport: &T,
    limit: Duration,
    stopped: &dyn Fn() -> bool,
    mut notice: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    let begun = Instant::now();
    let mut noticed = false;
    while !transport.link_up() && !stopped() && begun.elapsed() < limit {
        if !noticed && begun.elapsed() >= LINK_NOTICE_AFTER {
            noticed = true;
            notice()?;
        }
        thread::sleep(LINK_POLL);
    }
    Ok(())
}

/// Nodes over DPDK: opening a node's device as its endpoint.
#[cfg(feature = "dpdk")]
mod dpdk_node {
    use super::NodeTransport;
    use rehearsal_hardware::cluster::{DpdkDevice, DpdkNode};
    use rehearsal_hardware::dpdk::{
        Dpdk, DpdkConfig, DpdkError, DpdkPort, DpdkTransport, EalConfig, MacAddress,
    };
    use rehearsal_hardware::{ClusterConfig, NodeConfig, TransportKind};
    use std::io::Write;
    use std::path::Path;
    use std::time::{Duration, Instant};

    impl NodeTransport for DpdkTransport {
        const KIND: TransportKind = TransportKind::Dpdk;

        fn whereabouts(&self) -> serde_json::Map<String, serde_json::Value> {
            let mut fields = serde_json::Map::new();
            fields.insert("port".into(), self.port().name().into());
            fields.insert("mac".into(), self.mac().to_string().into());
            fields
        }

        fn describe(&self) -> String {
            format!(
                "on DPDK port {}, mac {} (dpdk)",
                self.port().name(),
                self.mac()
            )
        }

        fn link_up(&self) -> bool {
            DpdkTransport::link_up(self)
        }

        fn finish(self) -> serde_json::Value {
            // Counted by this thread alone: final once the run is over.
            let stats = serde_json::to_value(self.stats()).unwrap_or_default();
            drop(self);
            stats
        }
    }

    /// Opens node `entry`'s DPDK device as its endpoint: initialises the EAL of this
    /// process, creates the device (or finds it among those the EAL probed), and starts it
    /// with every other node of the cluster as a peer, reached at that node's MAC.
    ///
    /// A memif client's port cannot start before its server listens, and is refused until
    /// the server's port has started: the node waits for the server's socket, and starts
    /// over if the link does not come up, until `stopped()` or `deadline`.
    pub(super) fn open(
        cluster: &ClusterConfig,
        entry: &NodeConfig,
        err: &mut dyn Write,
        stopped: &dyn Fn() -> bool,
        deadline: Option<Instant>,
    ) -> Result<DpdkTransport, String> {
        let settings = entry.dpdk.as_ref().ok_or_else(|| {
            cluster
                .node_error(entry, "has no `dpdk` settings")
                .to_string()
        })?;
        let eal = eal_config(entry, settings);
        let dpdk = Dpdk::init(&eal).map_err(|error| {
            if settings.eal_args.is_empty() {
                error.to_string()
            } else {
                format!(
                    "{error} (a node's eal_args replace the default EAL arguments: on a \
                     machine without hugepages or NIC, start them with --no-huge -m 256 \
                     --no-pci --no-shconf, or leave eal_args out)"
                )
            }
        })?;
        let peers = cluster
            .dpdk_peer_table()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(id, _)| *id != entry.id)
            .map(|(id, mac)| (id, MacAddress(mac.0)))
            .collect();
        let config = DpdkConfig {
            peers,
            ..DpdkConfig::default()
        };
        let device = &settings.port;
        let memif_client = device.is_memif() && device.arg("role") == Some("client");
        let mut attempt = 0;
        let transport = loop {
            attempt += 1;
            if memif_client {
                wait_for_memif_server(device, entry, err, stopped, deadline)?;
            }
            let port = open_port(dpdk, settings)?;
            let transport =
                DpdkTransport::new(port, entry.id, config.clone()).map_err(|e| e.to_string())?;
            // A memif server refuses clients until its port has started, a moment after
            // its socket appears, and the driver never tries again: a client whose link
            // does not come up starts over with a new port.
            if !memif_client || handshake_done(&transport, stopped, deadline)? {
                break transport;
            }
            drop(transport);
            let socket = device.arg("socket").unwrap_or("its default socket");
            if attempt == MEMIF_CONNECT_ATTEMPTS_MAX {
                return Err(format!(
                    "the memif server at {socket} did not take this client in \
                     {MEMIF_CONNECT_ATTEMPTS_MAX} attempts: is another client connected to it, \
                     or are its id and secret other than this one's?"
                ));
            }
            if attempt == 1 {
                let _ = writeln!(
                    err,
                    "node {}: the memif server at {socket} has not taken this client yet; \
                     connecting again",
                    entry.id.0
                );
            }
        };
        if transport.mac().0 != settings.mac.0 {
            // Frames carry node ids and ports run promiscuous, so a point-to-point link
            // works anyway; a switch would not deliver the peers' frames.
            let _ = writeln!(
                err,
                "warning: node {}: port {} has MAC {}, but the cluster file gives the node mac = \
                 \"{}\", where its peers send its frames: set mac to the port's",
                entry.id.0,
                transport.port().name(),
                transport.mac(),
                settings.mac
            );
        }
        Ok(transport)
    }

    /// How long a memif client gives the handshake with its server (milliseconds when the
    /// server is ready) before it starts over.
    const MEMIF_HANDSHAKE_WAIT: Duration = Duration::from_secs(1);

    /// Attempts of a memif client to be taken by its server, at most.
    const MEMIF_CONNECT_ATTEMPTS_MAX: u32 = 30;

    /// Waits up to [`MEMIF_HANDSHAKE_WAIT`] for `transport`'s link; fails if `stopped()`
    /// or `deadline` passes.
    fn handshake_done(
        transport: &DpdkTransport,
        stopped: &dyn Fn() -> bool,
        deadline: Option<Instant>,
    ) -> Result<bool, String> {
        let begun = Instant::now();
        while begun.elapsed() < MEMIF_HANDSHAKE_WAIT {
            if transport.link_up() {
                return Ok(true);
            }
            if stopped() {
                return Err("stopped while connecting to the memif server".into());
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err("the memif link did not come up within --duration".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(transport.link_up())
    }

    /// How often a memif client looks for its server's socket.
    const MEMIF_SERVER_POLL: Duration = Duration::from_millis(20);

    /// How long a memif client lets a server whose socket it has just seen start its port
    /// before it connects (it is refused before, and has to start over).
    const MEMIF_SERVER_GRACE: Duration = Duration::from_millis(100);

    /// How long a memif client waits for its server before it says it is waiting.
    const MEMIF_SERVER_NOTICE_AFTER: Duration = Duration::from_secs(2);

    /// If `device` (a memif client) has a `socket`, waits until a server listens there.
    fn wait_for_memif_server(
        device: &DpdkDevice,
        entry: &NodeConfig,
        err: &mut dyn Write,
        stopped: &dyn Fn() -> bool,
        deadline: Option<Instant>,
    ) -> Result<(), String> {
        let Some(socket) = device.arg("socket") else {
            return Ok(());
        };
        let begun = Instant::now();
        let mut noticed = false;
        let mut waited = false;
        while !unix_socket_listening(socket) {
            waited = true;
            if stopped() {
                return Err(format!(
                    "stopped while waiting for a memif server at {socket}"
                ));
            }
            if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                return Err(format!(
                    "no memif server listened at {socket} within --duration"
                ));
            }
            if !noticed && begun.elapsed() >= MEMIF_SERVER_NOTICE_AFTER {
                noticed = true;
                let _ = writeln!(
                    err,
                    "node {}: waiting for a memif server at {socket} (is the other node running?)",
                    entry.id.0
                );
            }
            std::thread::sleep(MEMIF_SERVER_POLL);
        }
        if waited {
            std::thread::sleep(MEMIF_SERVER_GRACE);
        }
        Ok(())
    }

    /// Whether a Unix socket listens at `path`, as a file or in the abstract namespace
    /// (memif's default), as `/proc/net/unix` lists them. Says yes if that list cannot be
    /// read, so that the caller tries to connect rather than waits forever.
    fn unix_socket_listening(path: &str) -> bool {
        /// `__SO_ACCEPTCON` in the Flags column: the socket listens.
        const LISTENING: u32 = 0x0001_0000;
        let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
            return true;
        };
        table.lines().skip(1).any(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields
                .get(3)
                .and_then(|flags| u32::from_str_radix(flags, 16).ok())
                .is_some_and(|flags| flags & LISTENING != 0);
            let here = fields
                .get(7)
                .is_some_and(|p| *p == path || p.strip_prefix('@') == Some(path));
            listening && here
        })
    }

    /// The node's EAL arguments: its `eal_args`, or, without them, arguments that need no
    /// hugepages and no NIC, with a file prefix of this process's own (several nodes run
    /// on one machine; nothing is left in DPDK's runtime directory).
    fn eal_config(entry: &NodeConfig, settings: &DpdkNode) -> EalConfig {
        if settings.eal_args.is_empty() {
            EalConfig::without_hardware(&format!(
                "rehearsal-node{}-{}",
                entry.id.0,
                std::process::id()
            ))
        } else {
            let program = std::iter::once("rehearsal".to_string());
            EalConfig::from_args(program.chain(settings.eal_args.iter().cloned()))
        }
    }

    /// Creates the virtual device the node's `port` names, or, if it gives no driver
    /// arguments, takes the device of that name the EAL probed (a NIC, a `--vdev` of
    /// `eal_args`).
    fn open_port(dpdk: &'static Dpdk, settings: &DpdkNode) -> Result<DpdkPort, String> {
        let device = &settings.port;
        if device.args().is_empty() {
            if let Ok(port) = dpdk.probed_port(device.name()) {
                return Ok(port);
            }
        }
        dpdk.vdev_port(device.name(), &vdev_args(device, settings))
            .map_err(|error| describe_vdev_error(device, error))
    }

    /// The driver arguments the device is created with: as written, plus, for a memif
    /// port, the node's MAC (both ends of a link otherwise get the driver's default, one
    /// and the same multicast address).
    fn vdev_args(device: &DpdkDevice, settings: &DpdkNode) -> String {
        let mut args = device.args().to_string();
        if device.is_memif() && device.arg("mac").is_none() {
            if !args.is_empty() {
                args.push(',');
            }
            args.push_str(&format!("mac={}", settings.mac));
        }
        args
    }

    fn describe_vdev_error(device: &DpdkDevice, error: DpdkError) -> String {
        let mut text = if device.args().is_empty() {
            format!(
                "`{device}` is neither a device the EAL probed (a NIC allowed with -a in \
                 eal_args, a --vdev there) nor a virtual device that could be created: {error}"
            )
        } else {
            error.to_string()
        };
        // A memif server that was killed leaves its socket file behind, and the next one
        // cannot listen there.
        let stale_socket = device.is_memif()
            && device.arg("role").unwrap_or("server") == "server"
            && device.arg("socket-abstract") == Some("no")
            && device
                .arg("socket")
                .is_some_and(|path| Path::new(path).exists());
        if stale_socket {
            text += " (the memif socket file exists already: if no other node serves it, \
                     it was left by an earlier run; remove it)";
        }
        text
    }
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
            tcp_connection_failures: counter(&s.tcp, &["connections_failed"]),
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

/// Builds the cluster of a launch: the nodes on free loopback ports, or, over DPDK, the
/// two ends of a memif link whose socket is in `dir`.
fn launch_config(
    args: &ClusterArgs,
    nodes: u32,
    clients: u32,
    dir: &Path,
) -> Result<ClusterConfig, CliError> {
    let count = nodes + clients;
    let protocol = args.protocol.name();
    let params =
        crate::registry::cluster_params_table(args.protocol, args.requests, &args.params())
            .map_err(bad)?;
    let sizes = Sizes {
        nodes,
        clients,
        requests: args.requests,
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

/// Longest path of a Unix socket (`sun_path`, its final NUL excluded).
const UNIX_SOCKET_PATH_BYTES_MAX: usize = 107;

/// The DPDK settings of a launch's two nodes: the ends of one memif link, whose socket
/// file is in the working directory (removed with it), with the default EAL arguments.
fn memif_pair(dir: &Path) -> Result<[DpdkNode; 2], CliError> {
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

fn check_cluster_args(args: &ClusterArgs) -> Result<(u32, u32), CliError> {
    let protocol = args.protocol;
    if let Some(refusal) = protocol.real_refusal() {
        return Err(bad(refusal));
    }
    let nodes = args.nodes.unwrap_or(protocol.nodes_default());
    let clients = if protocol.has_clients() {
        args.clients
    } else {
        0
    };
    let sizes = Sizes {
        nodes,
        clients,
        requests: args.requests,
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
    if protocol.has_clients() && args.requests == Some(0) {
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
        return Err(bad(format!(
            "over dpdk, `rehearsal cluster` runs two nodes joined by one memif link, not {}: use \
             --clients 1 (unreplicated) or --nodes 2 (benaloh), or use --transport tcp for more \
             nodes (pbft needs 5 at least)",
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
        let stop_when_done = args.requests.is_some() || !with_clients;
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
        transport: args.transport.kind().name().into(),
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
    let size = match r.protocol.as_str() {
        "unreplicated" => format!("1 server, {} clients", r.clients),
        "pbft" => format!("{} replicas, {} clients", r.nodes, r.clients),
        _ => format!("{} peers", r.nodes),
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
pub(crate) fn read_outputs<V: serde::de::DeserializeOwned>(
    files: &[PathBuf],
) -> Result<Vec<OutputRecord<V>>, String> {
    let mut lines = Vec::new();
    for path in files {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(format!("cannot read `{}`: {e}", path.display())),
        };
        for (number, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
            let parsed: OutputLine<V> = serde_json::from_str(&line).map_err(|e| {
                format!(
                    "`{}` line {}: not an output: {e}",
                    path.display(),
                    number + 1
                )
            })?;
            let OutputLine { node, at, value } = parsed;
            lines.push(OutputRecord { node, at, value });
        }
    }
    Ok(lines)
}

/// Checks the outputs files of a run of the cluster file `path` against its protocol's
/// invariants (a missing file reads as empty): the number of outputs checked, and the
/// violations found.
pub fn check_outputs(path: &Path, files: &[PathBuf]) -> Result<(u64, Vec<String>), String> {
    let cluster = ClusterConfig::load(path).map_err(|e| e.to_string())?;
    let protocol = Protocol::named(&cluster.protocol).map_err(|e| cluster.error(e).to_string())?;
    protocol.check_outputs(&cluster, files)
}

pub(crate) fn run_invariant<A: Actor>(
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
        retransmit_after: unreplicated::RETRANSMIT_AFTER_REAL,
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
        client_nice: args.client_nice,
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
        // The production nodes: the correct protocol, as `rehearsal node` runs it.
        (0..=proto.clients)
            .filter_map(|i| unreplicated::production_node(&proto, NodeId(i)))
            .collect::<Vec<_>>(),
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
        "  window {} after {} warm-up, per side{}",
        short_ns(duration_ns(r.config.duration)),
        short_ns(duration_ns(r.config.warmup)),
        match r.config.client_nice {
            0 => String::new(),
            nice => format!("; client threads of both sides at nice {nice}"),
        }
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
