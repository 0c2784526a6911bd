//! The `rehearsal` command line. [`run`] takes the arguments and the output streams, so
//! tests drive the real command in-process.

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
        /// Stop searching after this much wall time and keep the best found.
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
    /// Launch a cluster of node processes on loopback, measure it and check its invariants.
    Cluster(crate::cluster::ClusterArgs),
    /// Measure the simulator's and the transports' speed.
    Bench {
        #[command(subcommand)]
        what: BenchCommand,
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
    /// PBFT in the simulator: committed requests per wall-second (sim and real crypto,
    /// with and without batching).
    Pbft {
        /// Requests of the headline setting (the others scale from it).
        #[arg(long, default_value_t = 100_000)]
        requests: u64,
        /// Print one JSON object instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Unreplicated over TCP through the node runtime, against a plain std::net echo.
    Tcp(crate::cluster::BenchTcpArgs),
    /// DPDK ring pair in one process: one-way messages through the Transport trait, one
    /// thread driving both ends (needs a build with `--features dpdk`).
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

#[derive(Args, Debug)]
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
    #[arg(long)]
    requests: Option<u64>,
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
    /// Write the trace (JSON Lines) of the run, or with --seeds of the first failing run.
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
    /// Print one JSON object per run on stdout.
    #[arg(long)]
    json: bool,
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

/// The run a `sim` command describes (file, then flags, then defaults) and its seed count.
fn sim_config(args: &SimArgs) -> Result<(RunConfig, u64), CliError> {
    let file = match &args.config {
        Some(path) => crate::runfile::read(path).map_err(CliError::BadInput)?,
        None => crate::runfile::RunFile::default(),
    };
    let protocol = match &args.protocol {
        Some(name) => Protocol::named(name).map_err(CliError::BadInput)?,
        None => file.protocol.unwrap_or_else(|| Protocol::of("benaloh")),
    };
    let mut config = RunConfig::new(protocol);
    config.config_origin = args.config.as_deref().map(shell_word);
    // The settings the run file gives and no flag overrides: errors about them name their
    // place in the file.
    let flags = [
        ("nodes", args.nodes.is_some()),
        ("clients", args.clients.is_some()),
        ("requests", args.requests.is_some()),
        ("seed", args.seed.is_some()),
        ("seeds", args.seeds.is_some()),
        ("duration", args.duration.is_some()),
        ("latency", args.latency.is_some()),
        ("loss", args.loss.is_some()),
        ("crypto", args.crypto.is_some()),
        ("batch", args.batch.is_some()),
        ("mutant", args.mutant.is_some()),
        ("scenario", args.scenario.is_some()),
        ("net", args.net.is_some()),
    ];
    for (key, flag) in flags {
        if let (false, Some(at)) = (flag, file.positions.get(key)) {
            config.file_positions.insert(key.to_string(), at.clone());
        }
    }
    // Parameters: the file's, then the flags'; a flag drops the file's place.
    config.params = file.param_map().map_err(CliError::BadInput)?;
    for name in config.params.keys() {
        if let Some(at) = file.positions.get(name) {
            config.file_positions.insert(name.clone(), at.clone());
        }
    }
    let mut flag_params = args.param.clone();
    if let Some(crypto) = &args.crypto {
        flag_params.push(("crypto".into(), crypto.clone().into()));
    }
    if let Some(batch) = args.batch {
        flag_params.push(("batch".into(), batch.into()));
    }
    for (name, value) in flag_params {
        config.file_positions.remove(&name);
        config.params.insert(name, value);
    }
    let at = |key: &str| {
        config
            .file_positions
            .get(key)
            .map_or(String::new(), |p| format!("{p}: "))
    };
    config.nodes = args.nodes.or(file.nodes).unwrap_or(config.nodes);
    config.clients = args.clients.or(file.clients).unwrap_or(config.clients);
    config.requests = args.requests.or(file.requests).unwrap_or(config.requests);
    config.seed = args.seed.or(file.seed).unwrap_or(config.seed);
    if let Some(text) = &file.duration {
        config.duration_ns = parse_duration_arg(text)
            .map_err(|e| CliError::BadInput(format!("{}duration: {e}", at("duration"))))?;
    }
    config.duration_ns = args.duration.unwrap_or(config.duration_ns);
    config.mutant = args.mutant.clone().or(file.mutant.clone());
    config.timers = args.timer.iter().cloned().collect();
    config.swarm = args.swarm || file.swarm.unwrap_or(false);
    // The network: a --net file, else the run file's; --latency and --loss override either.
    let network = match &args.net {
        Some(path) => {
            config.net_origin = Some(shell_word(path));
            Some(
                rehearsal_net_models::NetConfig::from_toml_file(path)
                    .map_err(|e| CliError::BadInput(e.to_string()))?,
            )
        }
        None => {
            config.net_origin = file
                .net
                .as_ref()
                .map(|n| shell_word(&file.base_dir.join(n)));
            file.network.clone()
        }
    };
    let latency = args.latency.or(file.latency);
    let loss = args.loss.or(file.loss);
    match network {
        Some(mut network) => {
            if let Some(latency) = latency {
                network.latency = latency;
            }
            if let Some(loss) = loss {
                network.loss = loss;
            }
            config.latency = network.latency;
            config.loss = network.loss;
            config.network = Some(network);
        }
        None => {
            config.latency = latency.unwrap_or(config.latency);
            config.loss = loss.unwrap_or(config.loss);
        }
    }
    let scenario = args.scenario.clone().or_else(|| file.scenario_path());
    if let Some(path) = scenario {
        if config.swarm {
            return Err(CliError::BadInput(
                "--swarm draws its own fault schedule: leave out --scenario".into(),
            ));
        }
        let from_file = at("scenario");
        config.scenario = Some(read_scenario(&path).map_err(|e| match e {
            // A scenario named in the run file: say where it is named.
            CliError::BadInput(message) => CliError::BadInput(format!("{from_file}{message}")),
            other => other,
        })?);
    }
    let seeds = args.seeds.or(file.seeds).unwrap_or(1);
    Ok((config, seeds))
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
        Command::Bench {
            what: BenchCommand::Tcp(args),
        } => crate::bench::tcp(&args, out, err),
        Command::Bench {
            what: BenchCommand::Sim { round_trips, json },
        } => bench::sim(round_trips, json, out),
        Command::Bench {
            what: BenchCommand::Pbft { requests, json },
        } => bench::pbft(requests, json, out),
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

fn sim(args: SimArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, CliError> {
    if args.protocol.as_deref() == Some("help") {
        crate::registry::write_protocols(out)?;
        return Ok(EXIT_OK);
    }
    let (base, seeds) = sim_config(&args)?;
    base.validate().map_err(CliError::BadInput)?;
    // A run-file value is named by its place and key, a flag's by the flag.
    let at = |key: &str| {
        base.file_positions
            .get(key)
            .map_or(String::new(), |p| format!("{p}: "))
    };
    let given = |key: &str, value: u64| match base.file_positions.get(key) {
        Some(_) => format!("{key} = {value}"),
        None => format!("--{key} {value}"),
    };
    if seeds == 0 {
        return Err(CliError::BadInput(format!(
            "{}the seed count must be at least 1, got {}",
            at("seeds"),
            given("seeds", seeds)
        )));
    }
    if let Some(scenario) = &base.scenario {
        // Check the scenario once, before any run, against the run's size.
        rehearsal_net_models::scenario::parse(&scenario.text, &scenario.origin, base.actors())
            .map_err(|e| CliError::BadInput(e.to_string()))?;
    }
    let last_seed = base.seed.checked_add(seeds - 1).ok_or_else(|| {
        let place = if base.file_positions.contains_key("seeds") {
            at("seeds")
        } else {
            at("seed")
        };
        CliError::BadInput(format!(
            "{place}{} with {} runs past the largest seed, {}",
            given("seed", base.seed),
            given("seeds", seeds),
            u64::MAX
        ))
    })?;
    if !args.json {
        writeln!(out, "{}", describe(&base))?;
    }
    let progress = progress_bar(seeds);
    let mut failed: Vec<RunSummary> = Vec::new();
    let mut first: Option<RunSummary> = None;
    let mut counts = [0u64; 3];
    for seed in base.seed..=last_seed {
        let config = RunConfig {
            seed,
            ..base.clone()
        };
        let config = if config.swarm && config.scenario.is_none() {
            crate::swarm::draw(&config)
        } else {
            config
        };
        // A single run keeps its trace directly; across many seeds only a chosen run is
        // re-run with its trace kept (same seed, same events).
        let keep = args.trace.is_some() && seeds == 1;
        let summary = run_config(&config, keep).map_err(CliError::BadInput)?;
        counts[summary.outcome as usize] += 1;
        if args.json {
            writeln!(out, "{}", summary.to_json())?;
        } else if seeds <= 20 || summary.outcome != Outcome::Ok {
            progress.suspend(|| writeln!(out, "{}", describe_run(&summary)))?;
            if seeds == 1 {
                out.write_all(node_table(&summary.nodes).as_bytes())?;
            }
        }
        progress.inc(1);
        if summary.outcome != Outcome::Ok && failed.len() < 1_000 {
            failed.push(summary.clone());
        }
        if first.is_none() {
            first = Some(summary);
        }
    }
    progress.finish_and_clear();
    let first = first.expect("at least one seed ran");
    if let Some(path) = &args.trace {
        let chosen = failed.first().unwrap_or(&first);
        let summary = if chosen.trace.is_empty() {
            run_config(&chosen.config, true).map_err(CliError::BadInput)?
        } else {
            chosen.clone()
        };
        save_trace(path, &summary)?;
        if !args.json {
            writeln!(
                out,
                "trace of seed {} written to {}",
                summary.config.seed,
                path.display()
            )?;
        }
    }
    if !args.json {
        if seeds > 1 {
            writeln!(
                out,
                "{} runs: {} ok, {} violation, {} stalled",
                seeds,
                counts[Outcome::Ok as usize],
                counts[Outcome::Violation as usize],
                counts[Outcome::Stalled as usize]
            )?;
            if !failed.is_empty() {
                let seeds: Vec<String> = failed
                    .iter()
                    .take(50)
                    .map(|s| s.config.seed.to_string())
                    .collect();
                let more = if failed.len() > 50 { ", ..." } else { "" };
                writeln!(out, "failing seeds: {}{more}", seeds.join(", "))?;
            }
        }
        if let Some(failure) = failed.first() {
            writeln!(out, "first failure, seed {}:", failure.config.seed)?;
            for v in failure.violations.iter().take(10) {
                writeln!(out, "  {v}")?;
            }
            let trace_file = args
                .trace
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("seed-{}.jsonl", failure.config.seed)));
            writeln!(
                out,
                "replay it with:\n  {} --trace {}",
                failure.config.command_line(),
                shell_word(&trace_file)
            )?;
            writeln!(out, "  rehearsal replay {}", shell_word(&trace_file))?;
        }
    }
    let _ = err.flush();
    Ok(if failed.is_empty() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

fn read_scenario(path: &Path) -> Result<crate::config::ScenarioSource, CliError> {
    let text = rehearsal_net_models::scenario::read_text_file(path).map_err(|e| {
        CliError::BadInput(format!("cannot read scenario `{}`: {e}", path.display()))
    })?;
    Ok(crate::config::ScenarioSource {
        origin: path.display().to_string(),
        text,
    })
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    // Hidden unless stderr is a terminal and the work is long enough to wait for.
    if total < 50 {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::with_draw_target(
        Some(total),
        indicatif::ProgressDrawTarget::stderr(),
    );
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} seeds  {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    {
        text
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

fn describe(config: &RunConfig) -> String {
    let mut size = config.protocol.describe_sizes(&config.sizes());
    let params = config.protocol.describe_params(
        &config.params,
        rehearsal_sim_core::protocol::Target::Simulator,
    );
    if !params.is_empty() {
        size = format!("{size}, {params}");
    }
    let network = match &config.network {
        Some(network) => format!("network {network}"),
        None => format!("latency {} · loss {}", config.latency, config.loss),
    };
    let mut text = format!(
        "{} · {size} · {network} · deadline {}",
        config.protocol,
        format_ns(config.duration_ns)
    );
    if let Some(scenario) = &config.scenario {
        text += &format!(
            " · scenario {} ({} commands)",
            scenario.origin,
            scenario.command_lines().len()
        );
    }
    if config.swarm {
        text += " · swarm: network and faults drawn from each seed";
    }
    for part in timer_changes(config) {
        text += &format!(" · {part}");
    }
    if let Some(mutant) = &config.mutant {
        text += &format!(" · MUTANT {mutant}");
    }
    text
}

fn describe_run(s: &RunSummary) -> String {
    let mut line = format!(
        "seed {:<6} {:<9} events {:<8} delivered {:<8} dropped {:<6} sim {:<9} wall {:.2}ms  digest {}",
        s.config.seed,
        s.outcome.as_str(),
        s.events,
        s.messages_delivered,
        s.messages_dropped,
        s.sim_time.to_string(),
        s.wall_time.as_secs_f64() * 1e3,
        &s.digest.0[..16],
    );
    if let Some(figures) = &s.protocol {
        let ms = |key: &str| figures[key].as_f64().unwrap_or(0.0) / 1e6;
        line += &format!(
            "\n  completed {} requests, {:.0} per simulated second; latency p50 {:.1}ms p90 {:.1}ms p99 {:.1}ms max {:.1}ms",
            figures["completed"],
            figures["throughput_per_s"].as_f64().unwrap_or(0.0),
            ms("latency_ns_p50"),
            ms("latency_ns_p90"),
            ms("latency_ns_p99"),
            ms("latency_ns_max")
        );
    }
    if s.config.swarm {
        line += &format!("\n  {}", crate::swarm::describe(&s.config));
    }
    if let Some(v) = s.violations.first() {
        line += &format!("\n  {v}");
    }
    line
}

/// Rows shown before the per-node table is cut short.
const NODE_ROWS_MAX: usize = 24;

/// The per-node summary of one run: messages and bytes in and out, drops, timers, outputs
/// and annotations.
fn node_table(nodes: &[rehearsal_sim_core::NodeStats]) -> String {
    let mut table = format!(
        "  {:<6} {:>9} {:>11} {:>9} {:>11} {:>8} {:>7} {:>8} {:>6}\n",
        "node",
        "msgs out",
        "bytes out",
        "msgs in",
        "bytes in",
        "dropped",
        "timers",
        "outputs",
        "notes"
    );
    let row = |name: String, n: &rehearsal_sim_core::NodeStats| {
        format!(
            "  {:<6} {:>9} {:>11} {:>9} {:>11} {:>8} {:>7} {:>8} {:>6}\n",
            name,
            n.messages_sent,
            n.bytes_sent,
            n.messages_received,
            n.bytes_received,
            n.messages_dropped,
            n.timers_fired,
            n.outputs,
            n.annotations
        )
    };
    for (i, n) in nodes.iter().enumerate().take(NODE_ROWS_MAX) {
        table += &row(format!("n{i}"), n);
    }
    if nodes.len() > NODE_ROWS_MAX {
        table += &format!(
            "  ... {} more nodes (--json lists every node)\n",
            nodes.len() - NODE_ROWS_MAX
        );
    }
    if nodes.len() > 1 {
        let total = nodes
            .iter()
            .fold(rehearsal_sim_core::NodeStats::default(), |mut t, n| {
                t.messages_sent += n.messages_sent;
                t.bytes_sent += n.bytes_sent;
                t.messages_received += n.messages_received;
                t.bytes_received += n.bytes_received;
                t.messages_dropped += n.messages_dropped;
                t.timers_fired += n.timers_fired;
                t.outputs += n.outputs;
                t.annotations += n.annotations;
                t
            });
        table += &row("total".into(), &total);
    }
    table
}

fn save_trace(path: &Path, summary: &RunSummary) -> Result<(), CliError> {
    let header = Header::new(
        summary.config.seed,
        serde_json::to_value(&summary.config).map_err(|e| CliError::Io(e.into()))?,
    );
    let footer = Footer {
        outcome: summary.outcome.as_str().to_string(),
        violations: summary.violations.clone(),
        events: summary.events,
        sim_time_ns: summary.sim_time.as_nanos(),
        digest: summary.digest.0.clone(),
        checksum: String::new(),
    };
    let file = std::fs::File::create(path).map_err(|e| {
        CliError::BadInput(format!(
            "cannot create trace file `{}`: {e}",
            path.display()
        ))
    })?;
    let mut writer = std::io::BufWriter::new(file);
    write_trace(&mut writer, &header, &summary.trace, &footer).map_err(|e| {
        CliError::BadInput(format!("cannot write trace file `{}`: {e}", path.display()))
    })
}

fn replay(
    path: &Path,
    follow: bool,
    mutant: Option<String>,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    if mutant.is_some() && !follow {
        return Err(CliError::BadInput(
            "--mutant needs --follow-trace: a plain replay re-runs the recorded configuration"
                .into(),
        ));
    }
    let recorded = read_trace(path).map_err(|e| CliError::BadInput(e.to_string()))?;
    let mut config = trace_config(path, &recorded)?;
    // A shrunk run's schedule is its own recorded events: it replays by following them.
    let follow = follow || config.follow_schedule;
    if follow {
        if mutant.is_some() {
            config.mutant = mutant;
        }
        return follow_trace(path, &config, &recorded, out);
    }
    let replayed = run_config(&config, true)
        .map_err(|e| CliError::BadInput(format!("trace `{}` line 1: {e}", path.display())))?;
    if let Some(d) = first_difference(&recorded.events, &replayed.trace) {
        writeln!(
            out,
            "replay of {} diverges at event {} (line {}):",
            path.display(),
            d.index,
            d.index + 2
        )?;
        writeln!(out, "  recorded: {}", one_event(&d.recorded))?;
        writeln!(out, "  replayed: {}", one_event(&d.replayed))?;
        return Ok(EXIT_FAILED);
    }
    if replayed.digest.0 != recorded.footer.digest
        || replayed.outcome.as_str() != recorded.footer.outcome
    {
        writeln!(
            out,
            "replay of {} matches every event but not the footer: recorded {} digest {}, replayed {} digest {}",
            path.display(),
            recorded.footer.outcome,
            recorded.footer.digest,
            replayed.outcome.as_str(),
            replayed.digest
        )?;
        return Ok(EXIT_FAILED);
    }
    writeln!(
        out,
        "replayed {} events of {}: identical (outcome {}, digest {})",
        replayed.events,
        path.display(),
        replayed.outcome.as_str(),
        replayed.digest
    )?;
    for v in &replayed.violations {
        writeln!(out, "  {v}")?;
    }
    replay_verdict(true, replayed.outcome, out)
}

/// A replay's exit status, and the line that says why: 0 only for a run identical to its
/// recording whose outcome is `ok`; 1 when it departs, or fails (a violation or a stall),
/// so that a script can ask whether a fix removes a recorded failure.
fn replay_verdict(identical: bool, outcome: Outcome, out: &mut dyn Write) -> Result<u8, CliError> {
    let fails = outcome != Outcome::Ok;
    let line = match (identical, fails) {
        (true, false) => "exit 0: identical, and the run is ok".to_string(),
        (true, true) => format!(
            "exit 1: identical, but the run fails ({})",
            outcome.as_str()
        ),
        (false, false) => {
            "exit 1: the run departs from the recording (its outcome is ok)".to_string()
        }
        (false, true) => format!(
            "exit 1: the run departs from the recording, and fails ({})",
            outcome.as_str()
        ),
    };
    writeln!(out, "{line}")?;
    Ok(if identical && !fails {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

/// One event as a timeline line, or what its absence means.
fn one_event(event: &Option<rehearsal_sim_core::TraceEvent>) -> String {
    event
        .as_ref()
        .map_or("(no event: the run ended)".to_string(), |e| {
            render_text(std::slice::from_ref(e)).trim_end().to_string()
        })
}

/// Re-runs `config` against the schedule recorded in `recorded` and reports the first
/// point where the new run departs from the recording.
fn follow_trace(
    path: &Path,
    config: &RunConfig,
    recorded: &rehearsal_traces::TraceFile,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let follower = rehearsal_traces::ScheduleFollower::from_recording(
        &recorded.events,
        recorded.footer.sim_time_ns,
    );
    let options = crate::run::RunOptions {
        keep_trace: true,
        follow: Some(follower),
        minimal_network: false,
    };
    let now = crate::run::run_with(config, options)
        .map_err(|e| CliError::BadInput(format!("trace `{}` line 1: {e}", path.display())))?;
    let stats = now.follow.clone().unwrap_or_default();
    let what = match &config.mutant {
        Some(m) => format!("mutant `{m}`"),
        None => "the current code".to_string(),
    };
    writeln!(
        out,
        "followed the schedule of {} with {what}: {} messages re-enacted, {} unscheduled",
        path.display(),
        stats.followed,
        stats.unscheduled
    )?;
    let identical = match first_difference(&recorded.events, &now.trace) {
        None => {
            writeln!(
                out,
                "identical: all {} events match (outcome {}, digest {})",
                now.events,
                now.outcome.as_str(),
                now.digest
            )?;
            true
        }
        Some(d) => {
            writeln!(
                out,
                "departs from the recording at event {} (trace line {}):",
                d.index,
                d.index + 2
            )?;
            writeln!(out, "  recorded: {}", one_event(&d.recorded))?;
            writeln!(out, "  now:      {}", one_event(&d.replayed))?;
            false
        }
    };
    writeln!(
        out,
        "recorded outcome {}, now {}",
        recorded.footer.outcome,
        now.outcome.as_str()
    )?;
    for v in &now.violations {
        writeln!(out, "  {v}")?;
    }
    replay_verdict(identical, now.outcome, out)
}

fn trace_config(
    path: &Path,
    recorded: &rehearsal_traces::TraceFile,
) -> Result<RunConfig, CliError> {
    if let Some(test) = recorded.header.config["test"].as_str() {
        return Err(CliError::BadInput(format!(
            "trace `{}` was written by the cargo test `{test}` (its protocol is the test's own): re-run it there with\n  REHEARSAL_FOLLOW={} cargo test {test}",
            path.display(),
            shell_word(path)
        )));
    }
    let config: RunConfig =
        serde_json::from_value(recorded.header.config.clone()).map_err(|e| {
            CliError::BadInput(format!(
                "trace `{}` line 1: the header's config is not a run configuration: {e}",
                path.display()
            ))
        })?;
    if config.seed != recorded.header.seed {
        return Err(CliError::BadInput(format!(
            "trace `{}` line 1: header seed {} disagrees with config seed {}",
            path.display(),
            recorded.header.seed,
            config.seed
        )));
    }
    Ok(config)
}

fn shrink(
    path: &Path,
    output: &Path,
    time_limit_ns: u64,
    runs_max: u64,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let recorded = read_trace(path).map_err(|e| CliError::BadInput(e.to_string()))?;
    let config = trace_config(path, &recorded)?;
    if recorded.footer.outcome == "ok" {
        return Err(CliError::BadInput(format!(
            "`{}` records a run that did not fail: there is nothing to shrink",
            path.display()
        )));
    }
    let limits = crate::shrink::ShrinkLimits {
        runs_max,
        time_max: std::time::Duration::from_nanos(time_limit_ns),
    };
    writeln!(
        out,
        "shrinking {} ({} events, {})",
        path.display(),
        recorded.events.len(),
        recorded
            .footer
            .violations
            .first()
            .map_or(recorded.footer.outcome.as_str(), |v| v.as_str())
    )?;
    let mut progress = |line: &str| {
        let _ = writeln!(err, "  {line}");
    };
    let shrunk = crate::shrink::shrink(
        &config,
        &recorded.events,
        recorded.footer.sim_time_ns,
        limits,
        &mut progress,
    )
    .map_err(|e| CliError::BadInput(format!("cannot shrink `{}`: {e}", path.display())))?;
    save_trace(output, &shrunk.run)?;
    let c = &shrunk.run.config;
    writeln!(
        out,
        "{} events -> {} events ({} re-runs{}); still fails: {}",
        shrunk.events_before,
        shrunk.events_after,
        shrunk.runs,
        if shrunk.limited {
            ", stopped at a limit"
        } else {
            ""
        },
        shrunk
            .run
            .violations
            .first()
            .map_or(shrunk.failure.as_str(), |v| v.as_str())
    )?;
    let mut kept = vec![format!("deadline {}", format_ns(c.duration_ns))];
    kept.push(c.protocol.describe_sizes(&c.sizes()));
    kept.extend(timer_changes(c));
    if c.seed != config.seed {
        kept.push(format!("seed {} (another network)", c.seed));
    }
    if shrunk.drops_forced > 0 {
        kept.push(format!(
            "{} deliveries turned into drops",
            shrunk.drops_forced
        ));
    }
    if shrunk.faults_removed > 0 {
        kept.push(format!("{} faults removed", shrunk.faults_removed));
    }
    writeln!(out, "minimal run: {}", kept.join(", "))?;
    if shrunk.genuine == Some(false) {
        writeln!(
            out,
            "warning: the correct protocol fails this schedule too; the failure may be the schedule's, not the mutant's"
        )?;
    }
    writeln!(
        out,
        "wrote {}; check it with:\n  rehearsal replay {}",
        output.display(),
        shell_word(output)
    )?;
    Ok(EXIT_OK)
}

/// What a run changes of its protocol's timers, for summaries: timers set by hand, and
/// timer firings put off.
fn timer_changes(config: &RunConfig) -> Vec<String> {
    let mut parts = Vec::new();
    if !config.timers.is_empty() {
        let timers: Vec<String> = config
            .timers
            .iter()
            .map(|(name, &ns)| format!("{name}={}", format_ns(ns)))
            .collect();
        parts.push(format!("timers {}", timers.join(" ")));
    }
    if !config.postponed_timers.is_empty() {
        parts.push(format!(
            "{} timer firings put off",
            config.postponed_timers.len()
        ));
    }
    parts
}

fn read_events(path: &Path) -> Result<Vec<rehearsal_sim_core::TraceEvent>, CliError> {
    read_trace(path)
        .map(|t| t.events)
        .map_err(|e| CliError::BadInput(e.to_string()))
}

fn write_output(path: Option<&Path>, text: &str, out: &mut dyn Write) -> Result<(), CliError> {
    match path {
        None => out.write_all(text.as_bytes())?,
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CliError::BadInput(format!("cannot write `{}`: {e}", path.display())))?,
    }
    Ok(())
}

fn export(
    path: &Path,
    format: ExportFormat,
    output: Option<&Path>,
    max_events: usize,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    let events = read_events(path)?;
    let text = match format {
        ExportFormat::Chrome => rehearsal_traces::chrome_trace(&events),
        ExportFormat::Shiviz => rehearsal_traces::shiviz_log(&events),
        ExportFormat::Mermaid => rehearsal_traces::mermaid_sequence(&events, max_events),
        ExportFormat::Dot => rehearsal_traces::dot_graph(&events),
    };
    write_output(output, &text, out)?;
    Ok(EXIT_OK)
}

const EVENT_KINDS: &[&str] = &[
    "start",
    "send",
    "deliver",
    "drop",
    "timer",
    "output",
    "annotate",
    "violation",
    "fault",
    "corrupt",
];

fn show(
    path: &Path,
    nodes: Vec<u32>,
    from_ns: Option<u64>,
    to_ns: Option<u64>,
    kinds: Vec<String>,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
    if let Some(bad) = kinds.iter().find(|k| !EVENT_KINDS.contains(&k.as_str())) {
        return Err(CliError::BadInput(format!(
            "--kind `{bad}` is not an event kind; expected one of {}",
            EVENT_KINDS.join(", ")
        )));
    }
    if let (Some(from), Some(to)) = (from_ns, to_ns) {
        if from > to {
            return Err(CliError::BadInput(format!(
                "--from {} is after --to {}",
                format_ns(from),
                format_ns(to)
            )));
        }
    }
    let trace = read_trace(path).map_err(|e| CliError::BadInput(e.to_string()))?;
    let present: std::collections::BTreeSet<u32> = trace.events.iter().map(|e| e.node.0).collect();
    if let Some(bad) = nodes.iter().find(|n| !present.contains(n)) {
        return Err(CliError::BadInput(format!(
            "--node {bad}: the trace has no events at node {bad} (its nodes: {})",
            present
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let filter = rehearsal_traces::Filter {
        nodes: nodes.into_iter().map(rehearsal_sim_core::NodeId).collect(),
        from_ns,
        to_ns,
        kinds,
    };
    let shown = trace.events.iter().filter(|e| filter.keeps(e)).count();
    writeln!(
        out,
        "{}: seed {}, outcome {}, {} events ({shown} shown)",
        path.display(),
        trace.header.seed,
        trace.footer.outcome,
        trace.events.len()
    )?;
    out.write_all(rehearsal_traces::render_timeline(&trace.events, &filter).as_bytes())?;
    for v in &trace.footer.violations {
        writeln!(out, "violation: {v}")?;
    }
    Ok(EXIT_OK)
}

fn plot(path: &Path, output: &Path, width: u32, out: &mut dyn Write) -> Result<u8, CliError> {
    let events = read_events(path)?;
    let options = rehearsal_traces::PlotOptions {
        width,
        title: Some(path.display().to_string()),
        ..rehearsal_traces::PlotOptions::default()
    };
    write_output(
        Some(output),
        &rehearsal_traces::render_svg(&events, &options),
        out,
    )?;
    writeln!(out, "wrote {} ({} events)", output.display(), events.len())?;
    Ok(EXIT_OK)
}
