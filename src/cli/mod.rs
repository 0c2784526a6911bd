//! The `rehearsal` command line. [`run`] takes the arguments and the output streams, so
//! tests drive the real command in-process. The commands' work is in two parts: `sim` (a
//! run's configuration, the runs and their summaries) and `traces` (replay, shrink,
//! export, show, plot).

use crate::bench;
use crate::config::{Protocol, RunConfig};
use crate::run::{run as run_config, RunSummary};
use clap::{Args, Parser, Subcommand};
use rehearsal_sim_core::{duration_ns, format_ns, parse_duration, Latency, Outcome};
use rehearsal_traces::{first_difference, read_trace, render_text, write_trace, Footer, Header};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Exit status: every run was ok.
pub const EXIT_OK: u8 = 0;
/// Exit status: a run violated an invariant or stalled, or a replay diverged (a replay of
/// a failing run exits with it too, however faithful).
pub const EXIT_FAILED: u8 = 1;
/// Exit status: bad arguments or bad input.
pub const EXIT_BAD_INPUT: u8 = 2;

#[derive(Parser, Debug)]
#[command(
    name = "rehearsal",
    version,
    about = "Deterministic simulation testbed for distributed protocols",
    long_about = "Runs protocols written as plain actors in a seeded discrete-event simulator, \
                  checks their invariants, and replays any run from its seed or trace."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Search every order of message deliveries of one run, state by state (dfs, bfs,
    /// choices) or run by run (default, random, pct), and write the first violation as a
    /// trace, shrunk beside it.
    Explore(Box<ExploreArgs>),
    /// Simulate a protocol under a seeded network model and check its invariants.
    Sim(Box<SimArgs>),
    /// List every protocol with its parameters, roles, timers, mutants and Byzantine
    /// behaviours (the same as `rehearsal sim --protocol help`).
    Protocols,
    /// Re-run a recorded trace from its header and check that every event matches.
    ///
    /// Exits 0 only when the run is identical to the recording and its outcome is ok; 1
    /// when it departs from the recording or fails (a violation or a stall); 2 for bad
    /// input.
    Replay {
        /// A trace file written by `rehearsal sim --trace`.
        file: PathBuf,
        /// Re-enact the recorded schedule (which message arrives when, which are lost,
        /// when faults strike) instead of re-drawing it from the seed, so a recorded failure
        /// can be re-run against changed protocol code; reports where the new run departs.
        #[arg(long)]
        follow_trace: bool,
        /// With --follow-trace: run this deliberately broken variant of the protocol.
        #[arg(long, value_name = "NAME")]
        mutant: Option<String>,
    },
    /// Minimise a failing run: fewer operations, faults and deliveries, a shorter run,
    /// keeping only reductions that still fail the same way; writes the minimal trace.
    Shrink {
        /// A trace of a failing run, written by `rehearsal sim --trace`.
        file: PathBuf,
        /// Where to write the minimal trace.
        #[arg(short, long, value_name = "MIN.jsonl")]
        output: PathBuf,
        /// Stop searching after this much wall time (reading the trace included) and keep
        /// the best found; a re-run that would end past it is not started.
        #[arg(long, default_value = "60s", value_name = "T", value_parser = parse_duration_arg)]
        time_limit: u64,
        /// Stop searching after this many re-runs.
        #[arg(long, default_value_t = 100_000, value_name = "N")]
        runs_max: u64,
    },
    /// Convert a trace for another tool: chrome (Perfetto), shiviz, mermaid or dot.
    Export {
        /// A trace file written by `rehearsal sim --trace`.
        file: PathBuf,
        #[arg(long, value_enum)]
        format: ExportFormat,
        /// Where to write; standard output when absent.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Mermaid only: the most trace events drawn before the diagram is cut.
        #[arg(long, default_value_t = 200)]
        max_events: usize,
    },
    /// Print a trace as an aligned timeline, filtered by node, time window and kind.
    Show {
        /// A trace file written by `rehearsal sim --trace`.
        file: PathBuf,
        /// Only events at this node (repeat for several).
        #[arg(long, value_name = "N")]
        node: Vec<u32>,
        /// Only events at or after this virtual time, e.g. 1m30s or 90s.
        #[arg(long, value_name = "T", value_parser = parse_duration_arg)]
        from: Option<u64>,
        /// Only events at or before this virtual time.
        #[arg(long, value_name = "T", value_parser = parse_duration_arg)]
        to: Option<u64>,
        /// Only events of these kinds: start, send, deliver, drop, timer, output, annotate,
        /// violation, fault, corrupt (comma-separated).
        #[arg(long, value_delimiter = ',', value_name = "KIND")]
        kind: Vec<String>,
    },
    /// Draw a trace as a space-time diagram (SVG): a lane per node, arrows for messages.
    Plot {
        /// A trace file written by `rehearsal sim --trace`.
        file: PathBuf,
        #[arg(short, long, value_name = "FILE.svg")]
        output: PathBuf,
        /// Picture width in pixels, 300 to 20000.
        #[arg(long, default_value_t = 1200, value_parser = parse_width_arg)]
        width: u32,
    },
    /// Run one node of a cluster file over a real transport until stopped; print a summary.
    Node(crate::cluster::NodeArgs),
    /// Launch a cluster of node processes (on loopback, or on the hosts of a cluster file),
    /// measure it and check its invariants.
    Cluster(Box<crate::cluster::ClusterArgs>),
    /// Write fresh keys for a real cluster: one private key file per node, one public-key
    /// list.
    Keygen(keygen::KeygenArgs),
    /// Campaigns of many seeds split into shards (`sim --seeds K --shard I/N`), run as
    /// separate processes or on other machines.
    Campaign {
        #[command(subcommand)]
        what: CampaignCommand,
    },
    /// Measure the simulator's and the transports' speed.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
    },
}

#[derive(Subcommand, Debug)]
enum CampaignCommand {
    /// Merge the campaign lines of shards into one summary: the runs, the failing seeds
    /// with the command that re-runs each, and any seed no shard reported. Exits 1 when a
    /// seed failed or is missing.
    Merge {
        /// Files of campaign lines (the standard output of `sim --shard`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum ExportFormat {
    Chrome,
    Shiviz,
    Mermaid,
    Dot,
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// The performance table in one go: sim, pbft, hotstuff, scale, tcp, a PBFT cluster
    /// over TCP and dpdk (in a build with it), each figure beside its target.
    All(AllBenchArgs),
    /// Wall time per delivered message as PBFT (4 to 64 replicas) and Benaloh (200 to
    /// 1,000 peers) grow, with the peak resident memory of each run.
    Scale(ScaleBenchArgs),
    /// PBFT in the simulator: committed requests per wall-second and messages per
    /// committed request (sim and real crypto, with and without batching).
    Pbft(ReplicatedBenchArgs),
    /// Chained HotStuff in the simulator, as `bench pbft` measures PBFT.
    Hotstuff(ReplicatedBenchArgs),
    /// Spectrum's server work on one core: DPF evaluation against the raw AES-128-CTR
    /// keystream, the audit of one write, and a server's time per upload over a grid of
    /// channel counts (1 to 10,000) and message sizes (1 KB to 100 KB).
    Spectrum(SpectrumBenchArgs),
    /// Every mutant of every protocol against every search strategy: the work and wall
    /// time to the first violation, capped.
    Search(SearchBenchArgs),
    /// Coverage-guided search against random search (the same round-based fault schedules
    /// without feedback) and swarm seeds, at the same budget, on PBFT and HotStuff:
    /// distinct abstract states and happens-before summaries, with an SVG plot of their
    /// growth.
    Coverage(CoverageBenchArgs),
    /// Unreplicated over TCP through the node runtime, against a plain std::net echo.
    Tcp(crate::cluster::BenchTcpArgs),
    /// DPDK ring pair in one process: one-way messages through the Transport trait, one
    /// thread driving both ends, beside the same messages through the bare burst calls
    /// (the raw baseline) in the same run, and their ratio (needs a build with
    /// `--features dpdk`).
    Dpdk {
        /// Messages to send.
        #[arg(long, default_value_t = 10_000_000)]
        messages: u64,
        /// Payload bytes per message.
        #[arg(long, default_value_t = 64)]
        payload_bytes: usize,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Unreplicated ping-pong: 1 client, 1 server, constant latency; messages per wall-second.
    Sim {
        /// Round trips (each is two delivered messages).
        #[arg(long, default_value_t = 1_000_000)]
        round_trips: u64,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
}

/// What `bench all` takes.
#[derive(Args, Debug)]
struct AllBenchArgs {
    /// Small sizes and short windows: every step runs, in about a minute, with noisy
    /// figures.
    #[arg(long)]
    quick: bool,
    /// Leave out steps (repeatable, or comma-separated): sim, pbft, hotstuff, scale, tcp,
    /// cluster, dpdk.
    #[arg(long, value_name = "STEP", value_delimiter = ',')]
    skip: Vec<String>,
    /// The `rehearsal` program that runs the cluster step's nodes [default: this program].
    #[arg(long, value_name = "PATH")]
    node_binary: Option<std::path::PathBuf>,
    /// Print one JSON object (the rows and every step's whole report) instead of a table.
    #[arg(long)]
    json: bool,
}

/// What `bench scale` takes.
#[derive(Args, Debug)]
struct ScaleBenchArgs {
    /// PBFT replica counts, comma-separated (3f+1 each).
    #[arg(long, value_delimiter = ',', default_value = "4,16,31,64")]
    pbft_nodes: Vec<u32>,
    /// Benaloh peer counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "200,500,1000")]
    benaloh_nodes: Vec<u32>,
    /// Delivered messages each PBFT size aims at.
    #[arg(long, default_value_t = 1_000_000)]
    pbft_messages: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// What `bench spectrum` takes.
#[derive(Args, Debug)]
struct SpectrumBenchArgs {
    /// Skip grid cells whose accumulator (channels x message bytes) is larger than this
    /// [default: the whole grid, up to 10,000 channels x 100 KB = 1 GB].
    #[arg(long, value_name = "BYTES")]
    max_bytes: Option<usize>,
    /// Timed repetitions per figure; the median is reported.
    #[arg(long, default_value_t = 5)]
    reps: usize,
    /// How long the TCP workload runs (the public implementation's: 50 clients, 3
    /// channels, 10 KiB messages, over loopback); 0s skips it.
    #[arg(long, default_value = "10s", value_parser = parse_std_duration_arg)]
    tcp_duration: std::time::Duration,
    /// The `rehearsal` program that runs the TCP workload's nodes [default: this program].
    #[arg(long, value_name = "PATH")]
    node_binary: Option<std::path::PathBuf>,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

/// What `bench pbft` and `bench hotstuff` take.
#[derive(Args, Debug)]
struct SearchBenchArgs {
    /// The most each strategy spends on one mutant.
    #[arg(long, default_value = "60s", value_parser = parse_std_duration_arg)]
    cap: std::time::Duration,
    /// Only these protocols (repeatable).
    #[arg(long, value_name = "NAME")]
    protocol: Vec<String>,
    /// Only these strategies (repeatable): seeds, random, pct, bfs, dfs, choices, twins,
    /// byzzfuzz, coverage, coverage-random (the coverage-guided search's space without its
    /// feedback).
    #[arg(long, value_name = "NAME")]
    strategy: Vec<String>,
    #[arg(long)]
    json: bool,
}

/// What `bench coverage` takes.
#[derive(Args, Debug)]
struct CoverageBenchArgs {
    /// How long each search runs on each protocol.
    #[arg(long, default_value = "60s", value_parser = parse_std_duration_arg)]
    budget: std::time::Duration,
    /// Only these protocols (repeatable) [default: pbft and hotstuff].
    #[arg(long, value_name = "NAME")]
    protocol: Vec<String>,
    /// The seed every search draws from.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the plots to this directory, as coverage-PROTOCOL.svg.
    #[arg(long, value_name = "DIR")]
    plots: Option<std::path::PathBuf>,
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ReplicatedBenchArgs {
    /// Requests of the headline setting (the others scale from it).
    #[arg(long, default_value_t = 100_000)]
    requests: u64,
    /// Print one JSON object instead of a summary.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct SimArgs {
    /// A run file (TOML) describing the whole run; flags given here override it.
    #[arg(long, value_name = "RUN.toml")]
    config: Option<PathBuf>,
    /// Protocol to run [default: benaloh]; `help` lists every protocol with its
    /// parameters, roles, timers, mutants and Byzantine behaviours.
    #[arg(long, value_parser = protocol_value_parser())]
    protocol: Option<String>,
    /// Protocol nodes (servers, replicas, peers) [default: the protocol's, e.g. 5 for
    /// benaloh, 1 server for unreplicated, 4 replicas for pbft].
    #[arg(long)]
    nodes: Option<u32>,
    /// Clients, for protocols that have them [default: 4].
    #[arg(long)]
    clients: Option<u32>,
    /// Requests per client [default: 100].
    #[arg(long, conflicts_with = "rounds")]
    requests: Option<u64>,
    /// Servers, for protocols whose nodes are servers and more (spectrum: the servers and
    /// a publisher); sets the node count.
    #[arg(long, value_name = "K", conflicts_with = "nodes")]
    servers: Option<u32>,
    /// Rounds each client takes part in (spectrum): its requests.
    #[arg(long, value_name = "R")]
    rounds: Option<u64>,
    /// Shorthand for `--param channels=N` (spectrum).
    #[arg(long, value_name = "N")]
    channels: Option<u64>,
    /// Shorthand for `--param message_bytes=N` (spectrum).
    #[arg(long, value_name = "N")]
    message_bytes: Option<u64>,
    /// Master seed; every random choice of the run derives from it [default: 1].
    #[arg(long)]
    seed: Option<u64>,
    /// Run seeds S, S+1, ..., S+K-1 and report the failing ones [default: 1].
    #[arg(long, value_name = "K")]
    seeds: Option<u64>,
    /// Virtual-time deadline, e.g. 90s, 2m [default: 10m].
    #[arg(long, value_parser = parse_duration_arg)]
    duration: Option<u64>,
    /// One-way latency: constant:10ms, uniform:1ms..40s, normal:50ms,10ms or
    /// lognormal:50ms,20ms [default: constant:10ms].
    #[arg(long, value_name = "SPEC", value_parser = parse_latency_arg)]
    latency: Option<Latency>,
    /// Probability that a message is lost, 0 to 1 [default: 0].
    #[arg(long, value_name = "P")]
    loss: Option<f64>,
    /// The network model: a TOML file (latency or a latency matrix, loss, duplication,
    /// reordering, corruption, bandwidth, FIFO links, what cuts do; see the README).
    #[arg(long, value_name = "NET.toml")]
    net: Option<PathBuf>,
    /// Timed faults and network changes: a scenario file, one `@TIME COMMAND` per line.
    #[arg(long, value_name = "FILE")]
    scenario: Option<PathBuf>,
    /// Draw the network model and a fault schedule from each seed too (recorded in the
    /// trace, so a failure replays from its trace alone).
    #[arg(long)]
    swarm: bool,
    /// A protocol parameter (repeatable); `--protocol help` lists each protocol's.
    #[arg(long, value_name = "NAME=VALUE", value_parser = parse_param_arg)]
    param: Vec<(String, serde_json::Value)>,
    /// Shorthand for `--param crypto=...`: signatures, `sim` (fast, unforgeable inside
    /// the simulator) or `real` (Ed25519) [default: sim] (pbft).
    #[arg(long, value_name = "real|sim")]
    crypto: Option<String>,
    /// Shorthand for `--param batch=N`: most requests per batch; 1 turns batching off
    /// [default: 1] (pbft).
    #[arg(long, value_name = "N")]
    batch: Option<usize>,
    /// Test-only: run a deliberately broken variant of the protocol (see the README).
    #[arg(long, value_name = "NAME")]
    mutant: Option<String>,
    /// Set a protocol timer, e.g. `view-change=200ms` (repeatable; `--protocol help` lists
    /// each protocol's) [default: scaled to the network's latency].
    #[arg(long, value_name = "NAME=DURATION", value_parser = parse_timer_arg)]
    timer: Vec<(String, u64)>,
    /// Who picks the order of events that are ready together: `default` (the seeded run),
    /// `random` (ready events in random order) or `pct` (probabilistic concurrency
    /// testing: node priorities with change points) [default: default]. `rehearsal
    /// explore` also takes `bfs`, `dfs` and `choices` (state by state) [default there: bfs],
    /// and `twins`, `byzzfuzz` and `coverage` (fault schedules over the protocol's rounds).
    #[arg(long, value_name = "NAME", value_parser = ["default", "random", "pct", "bfs", "dfs", "choices", "twins", "byzzfuzz", "coverage"])]
    strategy: Option<String>,
    /// With --strategy pct: the bug depth targeted, 1 to 64 (depth - 1 priority change
    /// points) [default: 3].
    #[arg(long, value_name = "D")]
    pct_depth: Option<u32>,
    /// With --strategy pct: the expected number of steps (events) of a run; change points
    /// fall among the first K [default: 1000].
    #[arg(long, value_name = "K")]
    pct_steps: Option<u64>,
    /// With --strategy random or pct: events due within this long of the next instant are
    /// ready too, so a later message may run before earlier ones, e.g. 2ms [default: 0s].
    #[arg(long, value_name = "T", value_parser = parse_duration_arg)]
    window: Option<u64>,
    /// Write the trace (JSON Lines) of the run, or with --seeds of the first failing run
    /// (`explore`: of the first violation, and its shrunk trace beside it).
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Print one JSON object per run on stdout.
    #[arg(long)]
    json: bool,
    /// Threads to run seeds on (--seeds; `explore` run by run, and its schedules with
    /// --strategy twins, byzzfuzz or coverage) [default: one per core]; the output is the
    /// same whatever the number.
    #[arg(long, value_name = "N", value_parser = crate::parallel::parse_jobs)]
    jobs: Option<usize>,
    /// Run only shard I of N of the --seeds (the seeds at offsets I, I+N, I+2N, ...),
    /// writing one campaign line (JSON) per seed on stdout for `rehearsal campaign
    /// merge`; `auto` reads the shard from a Slurm job array or a Kubernetes Indexed Job.
    #[arg(long, value_name = "I/N|auto")]
    shard: Option<String>,
}

/// `--protocol`'s values: every registered protocol, and `help`.
fn protocol_value_parser() -> clap::builder::PossibleValuesParser {
    let mut names = Protocol::names();
    names.push("help");
    clap::builder::PossibleValuesParser::new(names)
}

/// `--param NAME=VALUE`: the value as TOML reads it (`4`, `true`, `"x"`), bare text
/// otherwise (`real`, `200ms`).
pub(crate) fn parse_param_arg(text: &str) -> Result<(String, serde_json::Value), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("expected NAME=VALUE, got `{text}`"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("expected NAME=VALUE, got `{text}`"));
    }
    let value = value.trim();
    let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or_else(|| serde_json::Value::String(value.to_string()));
    Ok((name.to_string(), parsed))
}

/// A duration that may be zero (`0s` turns something off).
fn parse_std_duration_arg(text: &str) -> Result<std::time::Duration, String> {
    parse_duration(text).map_err(|e| e.to_string())
}

fn parse_duration_arg(text: &str) -> Result<u64, String> {
    parse_duration(text)
        .map(duration_ns)
        .map_err(|e| e.to_string())
}

fn parse_timer_arg(text: &str) -> Result<(String, u64), String> {
    let Some((name, duration)) = text.split_once('=') else {
        return Err(format!(
            "expected NAME=DURATION such as `view-change=200ms`, got `{text}`"
        ));
    };
    let ns = parse_duration_arg(duration)?;
    Ok((name.trim().to_string(), ns))
}

fn parse_width_arg(text: &str) -> Result<u32, String> {
    use rehearsal_traces::plot::{WIDTH_MAX, WIDTH_MIN};
    match text.parse::<u64>() {
        Ok(w) if (u64::from(WIDTH_MIN)..=u64::from(WIDTH_MAX)).contains(&w) => Ok(w as u32),
        Ok(w) => Err(format!(
            "{w} pixels is outside {WIDTH_MIN} to {WIDTH_MAX}, the widths a plot may have"
        )),
        Err(_) => Err(format!(
            "expected a whole number of pixels, {WIDTH_MIN} to {WIDTH_MAX}"
        )),
    }
}

fn parse_latency_arg(text: &str) -> Result<Latency, String> {
    text.parse::<Latency>().map_err(|e| e.to_string())
}

/// Whether the process ends when [`run`] returns: see [`exits_after_run`].
static EXITS_AFTER_RUN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Says that the process ends as soon as [`run`] returns (the `rehearsal` program's
/// `main` says so; a test calling [`run`] does not): a command may then leave its largest
/// structures, such as an exploration's millions of states, for the operating system to
/// take back at exit at once, rather than free them one by one (seconds, after a large
/// search) before the process can end.
pub fn exits_after_run() {
    EXITS_AFTER_RUN.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Drops `value`, or leaves it to the process's exit when [`exits_after_run`] was called.
pub(crate) fn drop_or_leave_to_exit<T>(value: T) {
    if EXITS_AFTER_RUN.load(std::sync::atomic::Ordering::Relaxed) {
        std::mem::forget(value);
    } else {
        drop(value);
    }
}

/// Runs the command line `args` (program name first), writing to `out` and `err`, and
/// returns the exit status.
pub fn run(
    args: impl IntoIterator<Item = impl Into<OsString> + Clone>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let status = if e.use_stderr() {
                EXIT_BAD_INPUT
            } else {
                EXIT_OK
            };
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                err.write_all(text.as_bytes())
            } else {
                out.write_all(text.as_bytes())
            };
            return status;
        }
    };
    let result = match cli.command {
        Command::Sim(args) => sim(*args, out, err),
        Command::Explore(args) => explore(*args, out, err),
        Command::Campaign {
            what: CampaignCommand::Merge { files, json },
        } => campaign_merge(&files, json, out),
        Command::Protocols => crate::registry::write_protocols(out)
            .map(|()| EXIT_OK)
            .map_err(CliError::from),
        Command::Replay {
            file,
            follow_trace,
            mutant,
        } => replay(&file, follow_trace, mutant, out),
        Command::Export {
            file,
            format,
            output,
            max_events,
        } => export(&file, format, output.as_deref(), max_events, out),
        Command::Shrink {
            file,
            output,
            time_limit,
            runs_max,
        } => shrink(&file, &output, time_limit, runs_max, out, err),
        Command::Show {
            file,
            node,
            from,
            to,
            kind,
        } => show(&file, node, from, to, kind, out),
        Command::Plot {
            file,
            output,
            width,
        } => plot(&file, &output, width, out),
        Command::Node(args) => crate::cluster::node(&args, out, err),
        Command::Cluster(args) => crate::cluster::cluster(&args, out, err),
        Command::Keygen(args) => keygen::keygen(&args, out),
        Command::Bench {
            what: BenchCommand::Tcp(args),
        } => crate::bench::tcp(&args, out, err),
        Command::Bench {
            what: BenchCommand::Spectrum(args),
        } => {
            let defaults = bench::spectrum::SpectrumBench::default();
            let settings = bench::spectrum::SpectrumBench {
                max_bytes: args.max_bytes.unwrap_or(defaults.max_bytes),
                reps: args.reps,
                tcp_duration: args.tcp_duration,
                node_binary: args.node_binary,
                ..defaults
            };
            bench::spectrum::run(&settings, args.json, out)
        }
        Command::Bench {
            what: BenchCommand::All(args),
        } => {
            let settings = bench::all::AllBench {
                quick: args.quick,
                skip: args.skip,
                node_binary: args.node_binary,
            };
            bench::all::run(&settings, args.json, out, err)
        }
        Command::Bench {
            what: BenchCommand::Scale(args),
        } => {
            let settings = bench::scale::ScaleBench {
                pbft_nodes: args.pbft_nodes,
                benaloh_nodes: args.benaloh_nodes,
                pbft_messages: args.pbft_messages,
            };
            bench::scale::run(&settings, args.json, out, err)
        }
        Command::Bench {
            what: BenchCommand::Sim { round_trips, json },
        } => bench::sim(round_trips, json, out),
        Command::Bench {
            what: BenchCommand::Pbft(args),
        } => bench::replicated(Protocol::of("pbft"), args.requests, args.json, out),
        Command::Bench {
            what: BenchCommand::Search(args),
        } => bench::search::run(
            args.cap,
            &args.protocol,
            &args.strategy,
            args.json,
            out,
            err,
        ),
        Command::Bench {
            what: BenchCommand::Coverage(args),
        } => bench::coverage::run(
            args.budget,
            &args.protocol,
            args.seed,
            args.plots.as_deref(),
            args.json,
            out,
            err,
        ),
        Command::Bench {
            what: BenchCommand::Hotstuff(args),
        } => bench::replicated(Protocol::of("hotstuff"), args.requests, args.json, out),
        Command::Bench {
            what:
                BenchCommand::Dpdk {
                    messages,
                    payload_bytes,
                    json,
                },
        } => bench::dpdk(messages, payload_bytes, json, out),
    };
    match result {
        Ok(status) => status,
        Err(CliError::BadInput(message)) => {
            let _ = writeln!(err, "error: {message}");
            EXIT_BAD_INPUT
        }
        Err(CliError::Io(e)) => {
            let _ = writeln!(err, "error: {e}");
            EXIT_BAD_INPUT
        }
    }
}

/// Errors that end a command with exit status 2.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

mod counterexample;
mod explore;
pub mod keygen;
mod sim;
mod traces;

// Each part sees the others' items through its `use super::*`.
#[allow(unused_imports)]
use {counterexample::*, explore::*, sim::*, traces::*};

/// `rehearsal campaign merge FILES...`.
fn campaign_merge(files: &[PathBuf], json: bool, out: &mut dyn Write) -> Result<u8, CliError> {
    let mut texts = Vec::new();
    for path in files {
        let text = std::fs::read_to_string(path).map_err(|e| {
            CliError::BadInput(format!(
                "cannot read campaign file `{}`: {e}",
                path.display()
            ))
        })?;
        texts.push((path.display().to_string(), text));
    }
    let summary = crate::campaign::merge(&texts).map_err(CliError::BadInput)?;
    if json {
        writeln!(
            out,
            "{}",
            serde_json::to_string(&summary).expect("a summary serializes")
        )?;
    } else {
        let last = summary.first_seed as u128 + summary.seeds as u128 - 1;
        writeln!(
            out,
            "campaign: {} (configuration {}, commit {}), seeds {}..={last} from {} files",
            summary.protocol,
            summary.config_hash,
            summary.commit,
            summary.first_seed,
            files.len()
        )?;
        writeln!(
            out,
            "{} runs: {} ok, {} violation, {} stalled; {} s of runs",
            summary.runs,
            summary.ok,
            summary.violation,
            summary.stalled,
            format_secs(summary.run_time_ns)
        )?;
        if !summary.missing.is_empty() {
            let shown: Vec<String> = summary
                .missing
                .iter()
                .take(20)
                .map(u64::to_string)
                .collect();
            let more = if summary.missing.len() > 20 {
                ", ..."
            } else {
                ""
            };
            writeln!(
                out,
                "missing: {} seeds no file reports: {}{more}",
                summary.missing.len(),
                shown.join(", ")
            )?;
        }
        for failure in summary.failing.iter().take(50) {
            writeln!(out, "seed {} {}:", failure.seed, failure.outcome)?;
            for v in failure.violations.iter().take(3) {
                writeln!(out, "  {v}")?;
            }
            writeln!(
                out,
                "  re-run it: {} --trace seed-{}.jsonl",
                failure.command, failure.seed
            )?;
        }
        if summary.failing.len() > 50 {
            writeln!(
                out,
                "... and {} more failing seeds (--json lists them all)",
                summary.failing.len() - 50
            )?;
        }
    }
    Ok(
        if summary.failing.is_empty() && summary.missing.is_empty() {
            EXIT_OK
        } else {
            EXIT_FAILED
        },
    )
}

fn format_secs(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1e9)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    #[test]
    fn a_command_run_in_a_process_that_goes_on_frees_what_it_built() {
        // Tests call `run` without `exits_after_run`: nothing may be left behind.
        let value = Rc::new(());
        super::drop_or_leave_to_exit(Rc::clone(&value));
        assert_eq!(Rc::strong_count(&value), 1, "the copy was dropped");
    }
}
