//! Real deployments: `rehearsal node` runs one node of a cluster file over TCP or DPDK,
//! `rehearsal cluster` launches a whole cluster of node processes on loopback (or, over
//! DPDK, two nodes joined by a memif link), or the nodes of a cluster file on the hosts it
//! names (`--config`, through ssh or another launcher), measures it and checks the
//! protocol's invariants on what the nodes output, and `rehearsal bench tcp` measures what
//! the node runtime costs against plain `std::net` sockets (in [`crate::bench`]).
//!
//! One part per job: `node` runs a node, `dpdk_node` opens its DPDK device, `launch`
//! launches and drives a cluster's processes, `hosts` places nodes on their hosts (the
//! launcher, the files copied there and fetched back), `report` prints what a cluster run
//! measured, and `outputs` checks what its nodes output.
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
//! `rehearsal cluster` writes a cluster file with free loopback ports (and, for a protocol
//! whose nodes sign, fresh keys from `rehearsal keygen`'s code in `keys/`, unless `--keys`
//! or `--testbed-keys` says otherwise) into a fresh working
//! directory and starts one `rehearsal node --controlled --state FILE` process per node
//! (on its host, for a node of `--config` that names one). A controlled node:
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
use rehearsal_hardware::bench_tcp;
use rehearsal_hardware::cluster::{ClusterKeys, DpdkNode, MacAddr};
use rehearsal_hardware::keys;
use rehearsal_hardware::{
    check_invariants, load_state, ClockHandle, ClusterConfig, ErrorForwarder, LatencyHistogram,
    LatencySummary, NodeConfig, NodeRuntime, NodeTransport, OutputRecord, Role, RunStop,
    RuntimeConfig, TcpConfig, TcpTransport, TransportKind,
};
use rehearsal_sim_core::protocol::{KeyNeeds, Sizes, Target};
use rehearsal_sim_core::{duration_ns, parse_duration, Actor, Invariant, NodeId, Time, Violation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
    /// The cluster file (TOML): protocol, seed, keys (a `rehearsal keygen` directory, or
    /// "testbed"), and one [[node]] per node with id, role, address (tcp) and dpdk = {
    /// port = "DEVICE", mac } (dpdk).
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
    /// Keep the node's durable state in FILE: each state the protocol saves replaces it
    /// atomically (written beside it, synced, renamed). A FILE that exists at start holds
    /// the state of an earlier run of this node, which it restarts from.
    #[arg(long, value_name = "FILE")]
    pub state: Option<PathBuf>,
}

/// Launch a cluster of node processes, measure it and check its invariants: on loopback
/// (over DPDK, two nodes joined by a memif link: `--clients 1` for unreplicated, `--nodes
/// 2` for benaloh), or the nodes of a cluster file (`--config`), on the hosts it names.
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
    /// pbft and hotstuff: the replicas, 3f+1 (nodes 0 to n-1; Ed25519 signatures).
    /// spectrum: the servers and the publisher (see --servers).
    /// [default: 1 for unreplicated, 5 for benaloh, 4 for pbft and hotstuff, 3 for spectrum]
    #[arg(long, conflicts_with = "servers")]
    pub nodes: Option<u32>,
    /// Servers, for protocols whose nodes are servers and more (spectrum: K servers and a
    /// publisher, K+1 nodes).
    #[arg(long, value_name = "K")]
    pub servers: Option<u32>,
    /// Closed-loop client processes (unreplicated, pbft, hotstuff, spectrum).
    #[arg(long, default_value_t = 4)]
    pub clients: u32,
    /// How long the clients run (unreplicated, pbft, hotstuff), or the longest wait for every
    /// peer's total (benaloh), e.g. 10s.
    #[arg(long, default_value = "10s", value_parser = parse_duration_arg)]
    pub duration: Duration,
    /// Requests per client; a client that has sent them all stops early [default: as many
    /// as fit in --duration].
    #[arg(long, conflicts_with = "rounds")]
    pub requests: Option<u64>,
    /// Rounds per client (spectrum): its requests.
    #[arg(long, value_name = "R")]
    pub rounds: Option<u64>,
    /// Shorthand for `--param channels=N` (spectrum).
    #[arg(long, value_name = "N")]
    pub channels: Option<u64>,
    /// Shorthand for `--param message_bytes=N` (spectrum).
    #[arg(long, value_name = "N")]
    pub message_bytes: Option<u64>,
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
    /// Shorthand for `--param crypto=...`: `real` (Ed25519) or `sim` (pbft, hotstuff) [default:
    /// real on real transports].
    #[arg(long, value_name = "real|sim")]
    pub crypto: Option<String>,
    /// Shorthand for `--param batch=N`: most requests per batch (pbft, hotstuff) [default: 1].
    #[arg(long, value_name = "N")]
    pub batch: Option<usize>,
    /// The key directory (from `rehearsal keygen`) of a protocol whose nodes sign (pbft, hotstuff)
    /// [default: fresh keys in the working directory].
    #[arg(long, value_name = "DIR", conflicts_with = "testbed_keys")]
    pub keys: Option<PathBuf>,
    /// Derive every node's key from --seed, as the simulator does (testbeds only: anyone
    /// with the cluster file can sign as any node).
    #[arg(long)]
    pub testbed_keys: bool,
    /// A cluster file of the user's, and how to reach the hosts it names.
    #[command(flatten)]
    pub hosts: HostsArgs,
}

/// `rehearsal cluster` on a cluster file of the user's, whose nodes may run on other hosts.
#[derive(Args, Debug, Clone, Default)]
pub struct HostsArgs {
    /// Run the nodes of this cluster file (protocol, seed, keys, `[params]`, and each node's
    /// role, address and host) instead of a cluster on loopback; the flags that the file
    /// fixes cannot be given with it. A node with `host = "..."` runs on that host, through
    /// --launcher; the others run here.
    #[arg(
        long = "config",
        value_name = "FILE",
        conflicts_with_all = [
            "protocol", "nodes", "servers", "clients", "requests", "rounds", "channels",
            "message_bytes", "seed", "param", "crypto", "batch", "keys", "testbed_keys",
        ]
    )]
    pub config: Option<PathBuf>,
    /// How to run a command on a node's host: words separated by spaces, `{host}` replaced
    /// by the node's `host`, the command's words appended [default: ssh -o BatchMode=yes
    /// {host}]. The cluster file, key files and outputs travel through it too (`install`,
    /// `cat` and `rm` of the host's coreutils).
    #[arg(long, value_name = "TEMPLATE", requires = "config")]
    pub launcher: Option<String>,
    /// The directory on the hosts that holds each host's cluster file, keys and outputs,
    /// in DIR/HOST [default: a fresh /tmp/rehearsal-node-...; the launcher removes what it
    /// wrote after the run, unless --keep].
    #[arg(long, value_name = "DIR", requires = "config")]
    pub remote_dir: Option<String>,
    /// Keep the nodes' state files (`state-ID.bin`) in DIR, here for local nodes and on the
    /// host for the others, so that a later run with the same DIR restarts every node from
    /// its state [default: in the working directory, gone after the run].
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<String>,
    /// Give the nodes no state file: their durable state lives in memory only, and saving
    /// it costs nothing (a PBFT client saves after every reply, each save synced to disk),
    /// for throughput runs.
    #[arg(long, conflicts_with = "state_dir")]
    pub no_state: bool,
    /// Print the command that runs each node (the host, a tab, and the `rehearsal node`
    /// command line; `-` for a node without a host) for a launcher of your own, and exit.
    /// Paths on the hosts: --remote-dir, by default the cluster file's own directory.
    #[arg(long, requires = "config")]
    pub print_commands: bool,
    /// Drive the running cluster with a scenario file, as `sim --scenario` drives a
    /// simulation: cuts and loss through nftables, latency through tc netem, crash,
    /// restart, pause and resume through signals and state files, skew through the node's
    /// clock, each line at its time from the start (needs root on the hosts; nodes that
    /// are cut apart need addresses of their own: --config with one host or address per
    /// node). The report gives each line's planned and applied times.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Draw the run as a space-time diagram (SVG) in FILE, as `rehearsal plot` draws a
    /// simulated one: each node's outputs on its lane and the scenario's lines where they
    /// were applied, on one time axis from the start. Times are each host's clock, so
    /// nodes on hosts whose clocks disagree are drawn as far apart as the clocks are; a
    /// real run records no messages, so none are drawn.
    #[arg(long, value_name = "FILE.svg", conflicts_with = "no_check")]
    pub plot: Option<PathBuf>,
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
        if let Some(channels) = self.channels {
            params.insert("channels".into(), channels.into());
        }
        if let Some(bytes) = self.message_bytes {
            params.insert("message_bytes".into(), bytes.into());
        }
        params
    }

    /// Requests per client: `--requests`, or `--rounds` for a protocol that counts rounds.
    pub fn requests(&self) -> Option<u64> {
        self.requests.or(self.rounds)
    }

    /// The node count: `--nodes`, or what `--servers` means for the protocol.
    pub fn nodes(&self) -> Result<Option<u32>, CliError> {
        match self.servers {
            None => Ok(self.nodes),
            Some(servers) => self
                .protocol
                .nodes_for_servers(servers)
                .map(Some)
                .ok_or_else(|| {
                    bad(format!(
                        "--servers: {} has no servers to count apart from its nodes; use --nodes",
                        self.protocol
                    ))
                }),
        }
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
    /// Run the runtime side's connections unauthenticated (by default they are
    /// authenticated and their frames sealed, with fresh keys, as a cluster with key files
    /// runs)
    #[arg(long)]
    pub unauthenticated: bool,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    pub json: bool,
}

fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

pub(crate) fn bad(error: impl ToString) -> CliError {
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

#[cfg(feature = "dpdk")]
mod dpdk_node;
mod hosts;
mod launch;
pub mod nemesis;
mod node;
mod outputs;
mod plot;
mod report;
mod scenario;

pub use hosts::DEFAULT_LAUNCHER;
pub use launch::{cluster, CLUSTER_PROCESSES_MAX};
pub use node::node;
pub(crate) use node::run_node_over;
pub use outputs::check_outputs;
pub(crate) use outputs::{read_outputs, run_invariant};
pub(crate) use report::short_ns;
// Each part sees the others' items through its `use super::*`.
#[allow(unused_imports)]
use {hosts::*, launch::*, node::*, outputs::*, report::*};
