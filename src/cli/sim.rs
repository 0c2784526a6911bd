//! `rehearsal sim`: a run's configuration from its run file and flags, the runs, and what
//! they print.

use super::*;
use rehearsal_sim_core::scheduler::{PCT_DEPTH_DEFAULT, PCT_STEPS_DEFAULT};
use rehearsal_sim_core::Strategy;

/// The run a `sim` command describes (file, then flags, then defaults) and its seed count.
pub(super) fn sim_config(args: &SimArgs) -> Result<(RunConfig, u64), CliError> {
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
    if let Some(channels) = args.channels {
        flag_params.push(("channels".into(), channels.into()));
    }
    if let Some(bytes) = args.message_bytes {
        flag_params.push(("message_bytes".into(), bytes.into()));
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
    if let Some(servers) = args.servers {
        config.nodes = config.protocol.nodes_for_servers(servers).ok_or_else(|| {
            CliError::BadInput(format!(
                "--servers: {} has no servers to count apart from its nodes; use --nodes",
                config.protocol
            ))
        })?;
    }
    config.clients = args.clients.or(file.clients).unwrap_or(config.clients);
    config.requests = args
        .requests
        .or(args.rounds)
        .or(file.requests)
        .unwrap_or(config.requests);
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
    config.strategy = strategy(args)?;
    let seeds = args.seeds.or(file.seeds).unwrap_or(1);
    Ok((config, seeds))
}

/// The strategy `--strategy` and its options describe; an option given without its
/// strategy is an error that says which strategy it needs.
fn strategy(args: &SimArgs) -> Result<Strategy, CliError> {
    let name = args.strategy.as_deref().unwrap_or("default");
    let without = |flag: &str, strategies: &str| {
        CliError::BadInput(format!(
            "{flag} is an option of --strategy {strategies}, but the strategy is {name}: add --strategy {strategies}"
        ))
    };
    if name != "pct" {
        if args.pct_depth.is_some() {
            return Err(without("--pct-depth", "pct"));
        }
        if args.pct_steps.is_some() {
            return Err(without("--pct-steps", "pct"));
        }
    }
    let window_ns = args.window.unwrap_or(0);
    let strategy = match name {
        "default" => {
            if args.window.is_some() {
                return Err(without("--window", "random or pct"));
            }
            Strategy::Default
        }
        "random" => Strategy::Random { window_ns },
        "pct" => Strategy::Pct {
            depth: args.pct_depth.unwrap_or(PCT_DEPTH_DEFAULT),
            steps: args.pct_steps.unwrap_or(PCT_STEPS_DEFAULT),
            window_ns,
        },
        "bfs" | "dfs" | "choices" => {
            return Err(CliError::BadInput(format!(
                "--strategy {name} searches state by state, not run by run: use `rehearsal explore --strategy {name}`"
            )))
        }
        "twins" | "byzzfuzz" | "coverage" => {
            return Err(CliError::BadInput(format!(
                "--strategy {name} searches over fault schedules, each run its own: use `rehearsal explore --strategy {name}`"
            )))
        }
        other => {
            return Err(CliError::BadInput(format!(
                "--strategy `{other}` is not a strategy; expected default, random or pct"
            )))
        }
    };
    strategy.validate().map_err(CliError::BadInput)?;
    Ok(strategy)
}

pub(super) fn sim(args: SimArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, CliError> {
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
    // The last seed must exist.
    base.seed.checked_add(seeds - 1).ok_or_else(|| {
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
    if let Some(text) = &args.shard {
        let shard = crate::campaign::Shard::parse(text, &|k| std::env::var(k).ok())
            .map_err(CliError::BadInput)?;
        return sim_shard(&args, &base, seeds, shard, out, err);
    }
    if !args.json {
        writeln!(out, "{}", describe(&base))?;
    }
    let progress = progress_bar(seeds);
    let mut failed: Vec<RunSummary> = Vec::new();
    let mut first: Option<RunSummary> = None;
    // A single run keeps its trace directly; across many seeds only a chosen run is re-run
    // with its trace kept (same seed, same events).
    let keep = args.trace.is_some() && seeds == 1;
    let counts = run_seeds(
        &base,
        seeds,
        |i| i,
        args.jobs,
        keep,
        &progress,
        |summary| {
            if args.json {
                writeln!(out, "{}", summary.to_json())?;
            } else if seeds <= 20 || summary.outcome != Outcome::Ok {
                progress.suspend(|| {
                    writeln!(out, "{}", describe_run(&summary))?;
                    if seeds == 1 {
                        out.write_all(node_table(&summary.nodes).as_bytes())?;
                    }
                    Ok::<(), std::io::Error>(())
                })?;
            }
            if summary.outcome != Outcome::Ok && failed.len() < 1_000 {
                failed.push(summary.clone());
            }
            first.get_or_insert(summary);
            Ok(())
        },
    )?;
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

/// Runs `count` seeds of `base` on `jobs` threads (one per core by default), the i-th at
/// `base.seed + offset(i)`, and hands each run to `each` in seed order, ticking `progress`
/// (with the failures so far); returns the tally by outcome. Stops at the first error.
fn run_seeds(
    base: &RunConfig,
    count: u64,
    offset: impl Fn(u64) -> u64 + Sync,
    jobs: Option<usize>,
    keep_trace: bool,
    progress: &indicatif::ProgressBar,
    mut each: impl FnMut(RunSummary) -> Result<(), CliError>,
) -> Result<[u64; 3], CliError> {
    let mut counts = [0u64; 3];
    let mut trouble: Option<CliError> = None;
    crate::parallel::ordered(
        count,
        jobs.unwrap_or_else(crate::parallel::default_jobs),
        |i| {
            let config = crate::swarm::seeded(base, base.seed + offset(i));
            run_config(&config, keep_trace)
        },
        |_, summary| {
            let summary = match summary {
                Ok(summary) => summary,
                Err(e) => {
                    trouble = Some(CliError::BadInput(e));
                    return false;
                }
            };
            counts[summary.outcome as usize] += 1;
            if summary.outcome != Outcome::Ok {
                let failures =
                    counts[Outcome::Violation as usize] + counts[Outcome::Stalled as usize];
                progress.set_message(format!("{failures} failing"));
            }
            progress.inc(1);
            match each(summary) {
                Ok(()) => true,
                Err(e) => {
                    trouble = Some(e);
                    false
                }
            }
        },
    );
    match trouble {
        Some(e) => {
            progress.finish_and_clear();
            Err(e)
        }
        None => Ok(counts),
    }
}

/// `sim --shard I/N`: the shard's seeds, one campaign line each on `out`; the
/// description and the tally on `err`. The first failing seed's trace is written with
/// --trace.
fn sim_shard(
    args: &SimArgs,
    base: &RunConfig,
    seeds: u64,
    shard: crate::campaign::Shard,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    writeln!(
        err,
        "{}\nshard {}/{}: {} of seeds {}..={}",
        describe(base),
        shard.index,
        shard.count,
        shard.len(seeds),
        base.seed,
        base.seed + (seeds - 1)
    )?;
    let runs = shard.len(seeds);
    let progress = progress_bar(runs);
    let mut first_failing: Option<RunConfig> = None;
    let hash = crate::campaign::config_hash(base);
    let offset = |i| shard.offset(i);
    let counts = run_seeds(base, runs, offset, args.jobs, false, &progress, |summary| {
        let line = crate::campaign::Line::of(&summary, base, &hash, seeds, shard);
        let line = serde_json::to_string(&line).expect("a campaign line serializes");
        writeln!(out, "{line}")?;
        if summary.outcome != Outcome::Ok {
            first_failing.get_or_insert(summary.config);
        }
        Ok(())
    })?;
    writeln!(
        err,
        "shard {}/{}: {} runs: {} ok, {} violation, {} stalled",
        shard.index,
        shard.count,
        runs,
        counts[Outcome::Ok as usize],
        counts[Outcome::Violation as usize],
        counts[Outcome::Stalled as usize]
    )?;
    if let (Some(path), Some(config)) = (&args.trace, &first_failing) {
        save_trace(path, &run_config(config, true).map_err(CliError::BadInput)?)?;
        writeln!(
            err,
            "trace of seed {} written to {}",
            config.seed,
            path.display()
        )?;
    }
    Ok(if first_failing.is_none() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}

pub(super) fn read_scenario(path: &Path) -> Result<crate::config::ScenarioSource, CliError> {
    let text = rehearsal_net_models::scenario::read_text_file(path).map_err(|e| {
        CliError::BadInput(format!("cannot read scenario `{}`: {e}", path.display()))
    })?;
    Ok(crate::config::ScenarioSource {
        origin: path.display().to_string(),
        text,
    })
}

pub(super) fn progress_bar(total: u64) -> indicatif::ProgressBar {
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
            "{bar:40} {pos}/{len} seeds  {per_sec}  {msg}  {elapsed} (eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

pub(super) fn shell_word(path: &Path) -> String {
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

pub(super) fn describe(config: &RunConfig) -> String {
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
    if !config.strategy.is_default() {
        text += &format!(" · strategy {}", config.strategy);
    }
    if let Some(mutant) = &config.mutant {
        text += &format!(" · MUTANT {mutant}");
    }
    text
}

pub(super) fn describe_run(s: &RunSummary) -> String {
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
        // A protocol whose clients complete rounds rather than requests says so.
        let unit = if figures.get("rounds_published").is_some() {
            "client rounds"
        } else {
            "requests"
        };
        line += &format!(
            "\n  completed {} {unit}, {:.0} per simulated second; latency p50 {:.1}ms p90 {:.1}ms p99 {:.1}ms max {:.1}ms",
            figures["completed"],
            figures["throughput_per_s"].as_f64().unwrap_or(0.0),
            ms("latency_ns_p50"),
            ms("latency_ns_p90"),
            ms("latency_ns_p99"),
            ms("latency_ns_max")
        );
        if let Some(rounds) = figures.get("rounds_published") {
            line += &format!(
                "\n  published {rounds} rounds: {} writes accepted, {} rejected, {} absent",
                figures["writes_accepted"], figures["writes_rejected"], figures["writes_absent"]
            );
        }
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
pub(super) const NODE_ROWS_MAX: usize = 24;

/// The per-node summary of one run: messages and bytes in and out, drops, timers, outputs
/// and annotations.
pub(super) fn node_table(nodes: &[rehearsal_sim_core::NodeStats]) -> String {
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

pub(super) fn save_trace(path: &Path, summary: &RunSummary) -> Result<(), CliError> {
    let header = Header::new(
        summary.config.seed,
        serde_json::to_value(&summary.config).map_err(|e| CliError::Io(e.into()))?,
    );
    let footer = Footer::of(&summary.result);
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
