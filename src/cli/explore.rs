//! `rehearsal explore`: bounded exhaustive exploration (`dfs`, `bfs`) of one run's actors,
//! with a progress line, a summary (or `--json`), and the first violation written as an
//! ordinary trace that `replay`, `show`, `plot`, `export` and `shrink` read, and shrunk
//! beside it (see [`super::counterexample`]).

use super::*;
use rehearsal_sim_core::explore::Search as Order;
use rehearsal_sim_core::explore::{Bounds, Exploration, Stats, STEP_NS};
use rehearsal_sim_core::NodeId;

#[derive(Args, Debug)]
pub(super) struct ExploreArgs {
    #[command(flatten)]
    run: SimArgs,
    /// Wall-clock time to search for, e.g. 60s, 5m.
    #[arg(long, default_value = "60s", value_name = "T", value_parser = parse_duration_arg)]
    budget: u64,
    /// Stop after this many distinct states (dfs, bfs) or runs (the run-by-run strategies:
    /// default, random, pct, twins, byzzfuzz, coverage): a fixed amount of work, e.g. to
    /// compare two builds or to make a search reproducible, even if the time budget is not
    /// spent.
    #[arg(long, value_name = "N")]
    max_states: Option<u64>,
    /// Most steps along one path (deliveries, drops, timer firings).
    #[arg(long, default_value_t = 64, value_name = "D")]
    depth: u32,
    /// Most messages one path may drop.
    #[arg(long, default_value_t = 0, value_name = "N")]
    drops: u32,
    /// Most timer firings along one path (timers fire in any order, whatever their
    /// durations).
    #[arg(long, default_value_t = 0, value_name = "N")]
    timers: u32,
    /// Node NODE runs Byzantine behaviour BEHAVIOUR from the start, e.g. `0:equivocate`
    /// (repeatable; `rehearsal protocols` lists each protocol's behaviours).
    #[arg(long, value_name = "NODE:BEHAVIOUR", value_parser = parse_byzantine)]
    byzantine: Vec<(NodeId, String)>,
    /// Explore every order of steps at different nodes too (no sleep sets): only to
    /// measure what the reduction saves.
    #[arg(long)]
    no_reduction: bool,
    /// Wall time to shrink the failing run's trace for; the shrunk trace goes beside it,
    /// `FILE.jsonl` -> `FILE.min.jsonl`.
    #[arg(long, default_value = "30s", value_name = "T", value_parser = parse_shrink_time, requires = "trace")]
    shrink_time: u64,
    /// Stop a state-space search once the process holds this much memory (bytes, or with
    /// K, M, G: e.g. 4G); by default half the machine's memory.
    #[arg(long, value_name = "SIZE", value_parser = crate::memory::parse_size)]
    max_memory: Option<u64>,
    /// Write the failing run's trace only, without shrinking it.
    #[arg(long, requires = "trace", conflicts_with = "shrink_time")]
    no_shrink: bool,
    /// `twins`, `byzzfuzz`, `coverage`: faults strike in rounds 0 to R-1.
    #[arg(long, default_value_t = 8, value_name = "R")]
    fault_rounds: u64,
    /// `byzzfuzz`, `coverage`: partitions of the replicas per schedule, each for one round
    /// (for `coverage`, some are crashes of a replica for a round).
    #[arg(long, default_value_t = 2, value_name = "D")]
    network_faults: u32,
    /// `byzzfuzz`, `coverage`: rounds of one faulty replica's messages mutated per schedule
    /// (for `coverage`, one may be a switch to a Byzantine behaviour of its protocol).
    #[arg(long, default_value_t = 2, value_name = "C")]
    process_faults: u32,
    /// `twins`: groups per round's partition.
    #[arg(long, default_value_t = 2, value_name = "G")]
    groups: u32,
    /// `twins`, `byzzfuzz`, `coverage`: when every schedule settles (heals, and cancels
    /// the round faults still waiting); termination is owed from then on.
    #[arg(long, default_value = "30s", value_name = "T", value_parser = parse_duration_arg)]
    settle: u64,
    /// `twins`, `byzzfuzz`, `coverage`: write the coverage reached over time as an SVG plot.
    #[arg(long, value_name = "FILE.svg")]
    coverage_plot: Option<PathBuf>,
    /// `twins`, `byzzfuzz`, `coverage`: run out the budget after a failing run (to measure
    /// coverage); the first failing run is reported.
    #[arg(long)]
    keep_going: bool,
    /// `coverage`: draw every schedule afresh from the same space, without keeping what
    /// reached something new (random search, to measure what the feedback adds).
    #[arg(long)]
    no_feedback: bool,
}

impl ExploreArgs {
    fn shrink_plan(&self) -> ShrinkPlan {
        ShrinkPlan {
            time: (!self.no_shrink).then(|| std::time::Duration::from_nanos(self.shrink_time)),
            quiet: self.run.json,
        }
    }
}

/// `--shrink-time`: a duration above zero (`--no-shrink` says not to shrink).
fn parse_shrink_time(text: &str) -> Result<u64, String> {
    match parse_duration_arg(text)? {
        0 => Err("a shrink needs some time; --no-shrink writes the trace unshrunk".into()),
        ns => Ok(ns),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ExploreStrategy {
    Bfs,
    Dfs,
    Choices,
    /// Run by run, in the simulator: seeds from --seed on, each run's order of ready
    /// events picked by `sim`'s strategy (default, random or pct).
    Runs,
}

impl ExploreStrategy {
    fn name(self) -> &'static str {
        match self {
            ExploreStrategy::Bfs => "bfs",
            ExploreStrategy::Dfs => "dfs",
            ExploreStrategy::Choices => "choices",
            ExploreStrategy::Runs => "runs",
        }
    }
}

/// Schedules a `choices` search draws between two looks at the clock.
const SCHEDULES_PER_CHUNK: u32 = 64;

fn parse_byzantine(text: &str) -> Result<(NodeId, String), String> {
    let (node, behavior) = text
        .split_once(':')
        .ok_or_else(|| format!("`{text}` is not NODE:BEHAVIOUR, e.g. 0:equivocate"))?;
    let node = node.trim().trim_start_matches('n');
    let id = node
        .parse::<u32>()
        .map_err(|_| format!("`{node}` in `{text}` is not a node number"))?;
    if behavior.trim().is_empty() {
        return Err(format!("`{text}` names no behaviour"));
    }
    Ok((NodeId(id), behavior.trim().to_string()))
}

/// Steps between two looks at the clock.
const CHUNK: u64 = 4_096;

pub(super) fn explore(
    args: ExploreArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    if args.run.shard.is_some() {
        return Err(CliError::BadInput(
            "explore: --shard splits the seeds of `rehearsal sim --seeds K` into a campaign; \
             a search is not sharded"
                .into(),
        ));
    }
    // Any strategy but the state-space ones (bfs, the default, dfs, choices) runs seed by
    // seed, or schedule by schedule (the round-aware ones: twins, byzzfuzz, coverage).
    let strategy = args.run.strategy.as_deref();
    let run_by_run = !matches!(strategy, None | Some("bfs" | "dfs" | "choices"));
    if args.run.jobs.is_some() && !run_by_run {
        return Err(CliError::BadInput(format!(
            "explore: --jobs runs seeds on several threads for the run-by-run strategies \
             (default, random, pct, twins, byzzfuzz, coverage); --strategy {} searches the state \
             space on one thread (each step depends on the states seen before)",
            args.run.strategy.as_deref().unwrap_or("bfs")
        )));
    }
    if let Some(kind) = args
        .run
        .strategy
        .as_deref()
        .and_then(crate::search::Kind::parse)
    {
        return explore_rounds(&args, kind, out, err);
    }
    let round_only = [
        ("--coverage-plot", args.coverage_plot.is_some()),
        ("--keep-going", args.keep_going),
        ("--no-feedback", args.no_feedback),
    ];
    if let Some((flag, _)) = round_only.iter().find(|(_, given)| *given) {
        return Err(CliError::BadInput(format!(
            "explore: {flag} is an option of --strategy twins, byzzfuzz or coverage"
        )));
    }
    let strategy = match args.run.strategy.as_deref().unwrap_or("bfs") {
        "bfs" => ExploreStrategy::Bfs,
        "dfs" => ExploreStrategy::Dfs,
        "choices" => ExploreStrategy::Choices,
        _ => ExploreStrategy::Runs,
    };
    if strategy == ExploreStrategy::Runs {
        return explore_runs(&args, out, err);
    }
    let run = &args.run;
    let refused = [
        ("--seeds", run.seeds.is_some()),
        ("--swarm", run.swarm),
        ("--scenario", run.scenario.is_some()),
        ("--net", run.net.is_some()),
        ("--loss", run.loss.is_some()),
        ("--window", run.window.is_some()),
    ];
    if let Some((flag, _)) = refused.iter().find(|(_, given)| *given) {
        return Err(CliError::BadInput(format!(
            "explore: {flag} does not apply to --strategy {}: it searches every order of deliveries itself, \
             with no network model, fault schedule or second seed (`--drops` and `--timers` bound \
             the losses and timer firings it tries; --strategy random or pct search run by run)",
            strategy.name()
        )));
    }
    if args.depth == 0 {
        return Err(CliError::BadInput(
            "explore: --depth must be at least 1".into(),
        ));
    }
    // The run's configuration without the state-space strategy, which `sim` does not take.
    let mut plain = args.run.clone();
    plain.strategy = None;
    let (config, _) = sim_config(&plain)?;
    let bounds = Bounds {
        search: match strategy {
            ExploreStrategy::Bfs => Order::Bfs,
            ExploreStrategy::Dfs | ExploreStrategy::Choices | ExploreStrategy::Runs => Order::Dfs,
        },
        depth_max: args.depth,
        drops_max: args.drops,
        timer_firings_max: args.timers,
        reduction: !args.no_reduction,
    };
    let mut exploration = config
        .protocol
        .explore(&config, bounds, &args.byzantine)
        .map_err(|e| CliError::BadInput(format!("explore: {e}")))?;
    let started = std::time::Instant::now();
    let budget = std::time::Duration::from_nanos(args.budget);
    let bar = progress_line(run.json);
    let mut stats = exploration.stats();
    let states_max = args.max_states.unwrap_or(u64::MAX);
    let mut schedules = 0u64;
    let mut choices = None;
    // The seen set (and, breadth-first, the frontier) grows with every state.
    let memory_bound = args.max_memory.unwrap_or_else(crate::memory::default_bound);
    let mut memory_stop = None;
    let over_memory = |stop: &mut Option<(u64, u64)>| {
        let over = crate::memory::resident_bytes().filter(|&r| r > memory_bound);
        *stop = over.map(|resident| (resident, memory_bound));
        stop.is_some()
    };
    if strategy == ExploreStrategy::Choices {
        let mut chunk = 0u64;
        while stats.states < states_max
            && started.elapsed() < budget
            && !over_memory(&mut memory_stop)
        {
            // Each chunk draws from its own seed: the search is the same whatever the
            // machine's speed, only cut at a different chunk.
            let seed = config
                .seed
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .wrapping_add(chunk);
            let failure = rehearsal_traces::schedules::find_schedule_failure(
                exploration.as_mut(),
                SCHEDULES_PER_CHUNK,
                seed,
            );
            chunk += 1;
            stats = exploration.stats();
            match failure {
                Some(f) => {
                    schedules += f.schedules;
                    choices = Some(f.choices);
                    break;
                }
                None => schedules += u64::from(SCHEDULES_PER_CHUNK),
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{schedules} schedules ({:.0}/s), {} distinct states, {} steps, depth {}",
                schedules as f64 / secs,
                stats.states,
                stats.steps,
                stats.depth
            ));
        }
    }
    while strategy != ExploreStrategy::Choices
        && !stats.done
        && stats.states < states_max
        && started.elapsed() < budget
        && !over_memory(&mut memory_stop)
    {
        stats = exploration.run(CHUNK);
        let secs = started.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(format!(
            "{} states ({:.0}/s), {} steps, depth {}, {} pending",
            stats.states,
            stats.states as f64 / secs,
            stats.steps,
            stats.depth,
            stats.pending
        ));
    }
    bar.finish_and_clear();
    let wall = started.elapsed();
    if strategy == ExploreStrategy::Dfs && exploration.found().is_some() {
        // Depth-first search reports the first path it took, with the detours it made;
        // breadth-first search's is a shortest one already, and `choices` cut theirs.
        exploration.minimize(rehearsal_traces::schedules::MINIMIZE_WALKS);
    }
    let found = exploration.found();
    let mut written = None;
    if let (Some(_), Some(path)) = (&found, &run.trace) {
        written = Some(write_counterexample(
            &config,
            &args.byzantine,
            exploration.as_mut(),
            path,
            args.shrink_plan(),
            err,
        )?);
    }
    let search = Search {
        strategy: strategy.name(),
        schedules,
        choices,
        memory_stop,
    };
    report(
        &config,
        bounds,
        &search,
        stats,
        wall,
        found.as_ref(),
        written.as_ref(),
        run.json,
        out,
    )?;
    // The seen states (and the frontier) can be millions of allocations.
    super::drop_or_leave_to_exit(exploration);
    Ok(if found.is_some() {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

/// `--strategy default|random|pct`: runs from --seed on, in the simulator, each with the
/// strategy's order of ready events (and `--swarm`'s draws if asked), until one fails or
/// the budget is spent; the failing run's trace is written as `sim` writes one, and shrunk.
fn explore_runs(
    args: &ExploreArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let refused = [
        ("--seeds", args.run.seeds.is_some()),
        ("--drops", args.drops != 0),
        ("--timers", args.timers != 0),
        ("--no-reduction", args.no_reduction),
        ("--byzantine", !args.byzantine.is_empty()),
    ];
    if let Some((flag, _)) = refused.iter().find(|(_, given)| *given) {
        return Err(CliError::BadInput(format!(
            "explore: {flag} does not apply to a search run by run (--strategy default, random or pct): \
             the runs draw from their seeds (--budget bounds them; --swarm draws faults and \
             Byzantine nodes too)"
        )));
    }
    let (base, _) = sim_config(&args.run)?;
    let started = std::time::Instant::now();
    let budget = std::time::Duration::from_nanos(args.budget);
    let bar = progress_line(args.run.json);
    let mut runs = 0u64;
    let mut failing = None;
    let mut trouble = None;
    let jobs = args.run.jobs.unwrap_or_else(crate::parallel::default_jobs);
    // Seeds run on every core, and are taken in order: the first failing seed is the
    // one a single thread finds, and with --max-states the same runs are made.
    crate::parallel::ordered(
        args.max_states.unwrap_or(u64::MAX),
        jobs,
        |i| {
            // With --swarm, this seed's network and fault schedule, as `sim` draws them.
            let config = crate::swarm::seeded(&base, base.seed.wrapping_add(i));
            run_config(&config, false).map(|summary| (config, summary))
        },
        |i, ran| {
            let (config, summary) = match ran {
                Ok(ran) => ran,
                Err(e) => {
                    trouble = Some(CliError::BadInput(e));
                    return false;
                }
            };
            runs += 1;
            if summary.outcome != Outcome::Ok {
                failing = Some((config, summary));
                return false;
            }
            let secs = started.elapsed().as_secs_f64().max(1e-9);
            bar.set_message(format!(
                "{runs} runs ({:.0}/s), seed {}",
                runs as f64 / secs,
                base.seed.wrapping_add(i + 1)
            ));
            started.elapsed() < budget
        },
    );
    if let Some(e) = trouble {
        bar.finish_and_clear();
        return Err(e);
    }
    bar.finish_and_clear();
    let wall = started.elapsed();
    let name = base.strategy.to_string();
    let mut written = None;
    if let (Some((config, _)), Some(path)) = (&failing, &args.run.trace) {
        let recorded = run_config(config, true).map_err(CliError::BadInput)?;
        written = Some(write_and_shrink(
            &recorded,
            path,
            None,
            args.shrink_plan(),
            err,
        )?);
    }
    if args.run.json {
        let mut value = serde_json::json!({
            "protocol": base.protocol.name(),
            "mutant": base.mutant,
            "strategy": name,
            "runs": runs,
            "wall_time_ns": u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
            "outcome": if failing.is_some() { "violation" } else { "budget" },
            "seed": failing.as_ref().map(|(c, _)| c.seed),
            "violations": failing.as_ref().map(|(_, s)| s.violations.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "command": failing.as_ref().map(|(c, _)| c.command_line()),
        });
        with_traces(&mut value, written.as_ref().ok_or(""));
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "explore {}, {name}: {runs} runs from seed {} in {:.2} s ({:.0} runs/s)",
            subject(&base),
            base.seed,
            wall.as_secs_f64(),
            runs as f64 / wall.as_secs_f64().max(1e-9)
        )?;
        match &failing {
            Some((config, summary)) => {
                write_failure(out, config, summary)?;
                writeln!(out, "re-run it: {}", config.command_line())?;
                write_traces(out, written.as_ref().ok_or(NO_TRACE))?;
            }
            None => writeln!(out, "no failure within the budget")?,
        }
    }
    Ok(if failing.is_some() {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

/// `--strategy twins|byzzfuzz|coverage`: fault schedules over the protocol's rounds, run by
/// run in the simulator (see [`crate::search`]), until one fails or the budget is spent; the
/// failing run's scenario is written beside its trace, which is shrunk as `sim` shrinks one.
fn explore_rounds(
    args: &ExploreArgs,
    kind: crate::search::Kind,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    let refused = [
        ("--seeds", args.run.seeds.is_some()),
        ("--swarm", args.run.swarm),
        ("--scenario", args.run.scenario.is_some()),
        ("--drops", args.drops != 0),
        ("--timers", args.timers != 0),
        ("--no-reduction", args.no_reduction),
        ("--byzantine", !args.byzantine.is_empty()),
    ];
    if let Some((flag, _)) = refused.iter().find(|(_, given)| *given) {
        return Err(CliError::BadInput(format!(
            "explore: {flag} does not apply to --strategy {}: it writes each run's fault schedule itself \
             (--fault-rounds, --network-faults, --process-faults, --groups and --settle bound it)",
            kind.name()
        )));
    }
    if args.no_feedback && kind != crate::search::Kind::Coverage {
        return Err(CliError::BadInput(format!(
            "explore: --no-feedback is an option of --strategy coverage, but the strategy is {}",
            kind.name()
        )));
    }
    let mut plain = args.run.clone();
    plain.strategy = None;
    let (base, _) = sim_config(&plain)?;
    let bounds = crate::search::Bounds {
        rounds: args.fault_rounds,
        network_faults: args.network_faults,
        process_faults: args.process_faults,
        groups: args.groups,
        settle_ns: args.settle,
    };
    let budget = std::time::Duration::from_nanos(args.budget);
    let bar = progress_line(args.run.json);
    let started = std::time::Instant::now();
    let mut shown = started;
    let mut progress = |r: &crate::search::Report| {
        if shown.elapsed() < std::time::Duration::from_millis(100) {
            return;
        }
        shown = std::time::Instant::now();
        bar.set_message(format!(
            "{} runs ({:.0}/s), {} abstract states, {} happens-before summaries{}",
            r.runs,
            r.runs as f64 / started.elapsed().as_secs_f64().max(1e-9),
            r.states.len(),
            r.happens_before.len(),
            if kind == crate::search::Kind::Coverage {
                format!(", corpus {}", r.corpus)
            } else {
                String::new()
            }
        ));
    };
    let limits = crate::search::Limits {
        budget,
        runs_max: args.max_states.unwrap_or(u64::MAX),
        keep_going: args.keep_going,
        feedback: !args.no_feedback,
        // Schedules run on every core, and their results are taken in order: with
        // --max-states the same runs are made, and the same first failure found.
        jobs: args.run.jobs.unwrap_or_else(crate::parallel::default_jobs),
    };
    let report = crate::search::search(&base, kind, bounds, limits, &mut progress)
        .map_err(|e| CliError::BadInput(format!("explore: {e}")))?;
    bar.finish_and_clear();
    if let Some(path) = &args.coverage_plot {
        let title = format!(
            "{}: coverage of --strategy {} over {:.0} s",
            subject(&base),
            kind.name(),
            report.wall.as_secs_f64()
        );
        let svg = crate::search::coverage_svg(&title, &[(kind.name(), &report.samples)]);
        std::fs::write(path, svg)
            .map_err(|e| CliError::BadInput(format!("cannot write {}: {e}", path.display())))?;
    }
    // The failing run's scenario goes beside its trace, where the re-run command names it.
    let mut failing = report.failing.clone();
    let mut written = None;
    if let (Some((config, _)), Some(path)) = (&mut failing, &args.run.trace) {
        let scenario_path = path.with_extension("scenario");
        if let Some(scenario) = &mut config.scenario {
            std::fs::write(&scenario_path, &scenario.text).map_err(|e| {
                CliError::BadInput(format!("cannot write {}: {e}", scenario_path.display()))
            })?;
            scenario.origin = scenario_path.display().to_string();
        }
        // A schedule on swarm's network of its seed: the network goes beside it too, so
        // that the command printed re-runs the run.
        if let (Some(network), true) = (
            &config.network,
            config
                .net_origin
                .as_deref()
                .is_some_and(|o| o.starts_with('<')),
        ) {
            let net_path = path.with_extension("net.toml");
            let text = toml::to_string(network)
                .map_err(|e| CliError::BadInput(format!("cannot write the network: {e}")))?;
            std::fs::write(&net_path, text).map_err(|e| {
                CliError::BadInput(format!("cannot write {}: {e}", net_path.display()))
            })?;
            config.net_origin = Some(net_path.display().to_string());
        }
        let recorded = run_config(config, true).map_err(CliError::BadInput)?;
        written = Some(write_and_shrink(
            &recorded,
            path,
            None,
            args.shrink_plan(),
            err,
        )?);
    }
    let runs_per_s = report.runs as f64 / report.wall.as_secs_f64().max(1e-9);
    if args.run.json {
        let mut value = serde_json::json!({
            "protocol": base.protocol.name(),
            "mutant": base.mutant,
            "strategy": kind.name(),
            "bounds": bounds,
            "runs": report.runs,
            "duplicates": report.duplicates,
            "runs_per_second": runs_per_s.round(),
            "abstract_states": report.states.len(),
            "happens_before": report.happens_before.len(),
            "corpus": (kind == crate::search::Kind::Coverage).then_some(report.corpus),
            "coverage": report.samples,
            "wall_time_ns": u64::try_from(report.wall.as_nanos()).unwrap_or(u64::MAX),
            "slowest_run": report.slowest.as_ref().map(|(t, c)| serde_json::json!({
                "wall_time_ns": u64::try_from(t.as_nanos()).unwrap_or(u64::MAX),
                "seed": c.seed,
                "scenario": c.scenario.as_ref().map(|s| s.text.clone()),
                // The network swarm drew for the schedule, when it was not the configured
                // one: with the seed and the scenario, what re-runs it.
                "network": c.network.as_ref().map(|n| serde_json::to_value(n).unwrap_or_default()),
            })),
            "outcome": if failing.is_some() { "violation" } else { "budget" },
            "seed": failing.as_ref().map(|(c, _)| c.seed),
            "scenario": failing.as_ref().and_then(|(c, _)| c.scenario.as_ref().map(|s| s.text.clone())),
            "violations": failing.as_ref().map(|(_, s)| s.violations.iter().map(ToString::to_string).collect::<Vec<_>>()),
            "command": failing.as_ref().filter(|_| args.run.trace.is_some()).map(|(c, _)| c.command_line()),
        });
        with_traces(&mut value, written.as_ref().ok_or(""));
        writeln!(out, "{value}")?;
    } else {
        writeln!(
            out,
            "explore {}, {}: {} runs{} from seed {} in {:.2} s ({:.0} runs/s); rounds {}, {}",
            subject(&base),
            kind.name(),
            report.runs,
            if report.duplicates > 0 {
                format!(" ({} duplicate scenarios skipped)", report.duplicates)
            } else {
                String::new()
            },
            base.seed,
            report.wall.as_secs_f64(),
            runs_per_s,
            bounds.rounds,
            match kind {
                crate::search::Kind::Twins => format!("{} groups per partition", bounds.groups),
                _ => format!(
                    "{} network faults, {} process faults per schedule",
                    bounds.network_faults, bounds.process_faults
                ),
            }
        )?;
        writeln!(
            out,
            "coverage: {} abstract states, {} happens-before summaries{}",
            report.states.len(),
            report.happens_before.len(),
            if kind == crate::search::Kind::Coverage {
                format!(" (corpus of {} schedules)", report.corpus)
            } else {
                String::new()
            }
        )?;
        // A run that took a good part of the budget (and a second at least) is worth
        // knowing of, and re-running.
        if let Some((took, config)) = report.slowest.as_ref().filter(|(t, _)| {
            report.runs > 1 && *t >= std::time::Duration::from_secs(1) && *t * 10 > report.wall
        }) {
            writeln!(
                out,
                "slowest run: {:.2} s of the {:.2} s, seed {} (--json gives its scenario and network)",
                took.as_secs_f64(),
                report.wall.as_secs_f64(),
                config.seed
            )?;
        }
        match &failing {
            Some((config, summary)) => {
                write_failure(out, config, summary)?;
                match &args.run.trace {
                    Some(_) => writeln!(out, "re-run it: {}", config.command_line())?,
                    None => {
                        writeln!(out, "its scenario (--trace FILE writes it beside the trace, FILE.scenario):")?;
                        for line in config.scenario.iter().flat_map(|s| s.text.lines()) {
                            writeln!(out, "  {line}")?;
                        }
                        if let Some(origin) =
                            config.net_origin.as_deref().filter(|o| o.starts_with('<'))
                        {
                            writeln!(
                                out,
                                "its network: {} (--trace FILE writes it as FILE.net.toml)",
                                origin.trim_matches(['<', '>'])
                            )?;
                        }
                    }
                }
                write_traces(out, written.as_ref().ok_or(NO_TRACE))?;
            }
            None => writeln!(out, "no failure within the budget")?,
        }
    }
    Ok(if failing.is_some() {
        EXIT_FAILED
    } else {
        EXIT_OK
    })
}

/// A spinner with the search's figures on stderr (hidden with `--json` or when stderr is
/// not a terminal).
fn progress_line(json: bool) -> indicatif::ProgressBar {
    if json {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::stderr());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} explore {elapsed}: {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// What the report says when no trace was asked for.
const NO_TRACE: &str = "(--trace FILE writes it as a trace, and shrinks it)";

/// The text report's lines on the traces written, or the note saying why there are none.
fn write_traces(out: &mut dyn Write, traced: Result<&Written, &str>) -> Result<(), CliError> {
    match traced {
        Ok(written) => {
            for line in written.lines() {
                writeln!(out, "{line}")?;
            }
        }
        Err(note) => writeln!(out, "{note}")?,
    }
    Ok(())
}

/// The JSON report's fields on the traces written (see [`Written::json`]); with none,
/// `trace` and `shrunk` are null and `not_written` says why (null when no trace was asked
/// for).
fn with_traces(value: &mut serde_json::Value, traced: Result<&Written, &str>) {
    let Some(fields) = value.as_object_mut() else {
        return;
    };
    match traced {
        Ok(written) => fields.extend(written.json()),
        Err(note) => {
            fields.insert("trace".into(), serde_json::Value::Null);
            fields.insert("shrunk".into(), serde_json::Value::Null);
            let note = (!note.is_empty()).then(|| note.to_string());
            fields.insert("not_written".into(), note.into());
        }
    }
}

/// Re-enacts the counterexample in the simulator (its recording's message fates, one
/// step every `STEP_NS`), writes that run's trace and shrinks it (as `plan` says); what
/// it wrote, or why it wrote nothing.
fn write_counterexample(
    config: &RunConfig,
    byzantine: &[(NodeId, String)],
    exploration: &mut dyn Exploration,
    path: &Path,
    plan: ShrinkPlan,
    err: &mut dyn Write,
) -> Result<Result<Written, String>, CliError> {
    let events = exploration.record().ok_or_else(|| {
        CliError::BadInput("explore: the counterexample could not be walked again".into())
    })?;
    let end_ns = events.last().map_or(0, |e| e.t) + STEP_NS;
    let follower = rehearsal_traces::ScheduleFollower::from_recording(&events, end_ns);
    let mut followed = config.clone();
    followed.follow_schedule = true;
    followed.retime_schedule = true;
    // The explorer's Byzantine nodes behave so from the start; the trace's configuration
    // says so too, and `replay` and `shrink` do the same.
    followed.byzantine_from_start = byzantine
        .iter()
        .map(|(node, behaviour)| (node.0, behaviour.clone()))
        .collect();
    let options = crate::run::RunOptions {
        keep_trace: true,
        follow: Some(follower),
        minimal_network: false,
        coverage: false,
    };
    let summary = crate::run::run_with(&followed, options).map_err(CliError::BadInput)?;
    let want = exploration.found().map(|f| f.invariant).unwrap_or_default();
    let reproduced = summary.violations.iter().any(|v| v.invariant == want);
    if reproduced {
        let origin = format!(
            "the simulator re-enacted the path: {}",
            summary.outcome.as_str()
        );
        return write_and_shrink(&summary, path, Some(origin), plan, err).map(Ok);
    }
    // The simulator did not reach the violation along the recorded fates (a path that
    // needs a timer to fire before its time does): say so rather than write a trace that
    // does not show the violation.
    writeln!(
        err,
        "explore: the simulator's run along the path ended {} without `{want}`",
        summary.outcome.as_str()
    )?;
    if let Some(departure) = departure(&events, &summary.trace) {
        writeln!(err, "explore: {departure}")?;
    }
    Ok(Err(
        "no trace written: the simulator did not re-enact this path (where it departs is \
        said above); the steps above are the counterexample"
            .to_string(),
    ))
}

/// What a search was, beside its bounds and figures.
struct Search {
    strategy: &'static str,
    /// Schedules a `choices` search ran.
    schedules: u64,
    /// The failing schedule a `choices` search shrank to.
    choices: Option<Vec<u32>>,
    /// The memory held, and the bound, when the search stopped at it.
    memory_stop: Option<(u64, u64)>,
}

/// Where the simulator's run first did something other than the path's next step (a
/// delivery, drop or timer firing: at another time, node or sender), in words.
fn departure(
    path: &[rehearsal_sim_core::TraceEvent],
    run: &[rehearsal_sim_core::TraceEvent],
) -> Option<String> {
    use rehearsal_sim_core::EventKind;
    let steps = |events: &[rehearsal_sim_core::TraceEvent]| -> Vec<(u64, NodeId, String)> {
        events
            .iter()
            .filter_map(|e| {
                let what = match &e.kind {
                    EventKind::Deliver { from, .. } => format!("delivery from {from}"),
                    EventKind::Drop { .. } => "drop".to_string(),
                    EventKind::Timer { timer_id, timer } => {
                        format!("timer {} ({timer})", timer_id.0)
                    }
                    _ => return None,
                };
                Some((e.t, e.node, what))
            })
            .collect()
    };
    let (want, got) = (steps(path), steps(run));
    let k = (0..want.len().max(got.len())).find(|&i| want.get(i) != got.get(i))?;
    let show = |x: Option<&(u64, NodeId, String)>| {
        x.map_or("nothing".to_string(), |(t, n, what)| {
            format!("{what} at {n}, {}", format_ns(*t))
        })
    };
    Some(format!(
        "the simulator departs from the path at step {}: the path has {}, the simulator {}",
        k + 1,
        show(want.get(k)),
        show(got.get(k))
    ))
}

#[allow(clippy::too_many_arguments)]
fn report(
    config: &RunConfig,
    bounds: Bounds,
    search: &Search,
    stats: Stats,
    wall: std::time::Duration,
    found: Option<&rehearsal_sim_core::explore::Found>,
    written: Option<&Result<Written, String>>,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let secs = wall.as_secs_f64().max(1e-9);
    let traced = match written {
        Some(Ok(written)) => Ok(written),
        Some(Err(note)) => Err(note.as_str()),
        None if json => Err(""),
        None => Err(NO_TRACE),
    };
    if json {
        let mut value = serde_json::json!({
            "protocol": config.protocol.name(),
            "mutant": config.mutant,
            "strategy": search.strategy,
            "schedules": (search.strategy == "choices").then_some(search.schedules),
            "choices": search.choices,
            "bounds": bounds,
            "stats": stats,
            "wall_time_ns": u64::try_from(wall.as_nanos()).unwrap_or(u64::MAX),
            "states_per_second": (stats.states as f64 / secs).round(),
            "outcome": if found.is_some() { "violation" } else if stats.done { "exhausted" } else if search.memory_stop.is_some() { "memory" } else { "budget" },
            "violation": found,
        });
        with_traces(&mut value, traced);
        writeln!(out, "{value}")?;
        return Ok(());
    }
    let what = subject(config);
    if search.strategy == "choices" {
        writeln!(
            out,
            "explore {what}, choices: {} schedules, {} distinct states, {} steps, depth {} of {}, in {:.2} s ({:.0} schedules/s)",
            search.schedules,
            stats.states,
            stats.steps,
            stats.depth,
            bounds.depth_max,
            secs,
            search.schedules as f64 / secs
        )?;
    } else {
        writeln!(
        out,
        "explore {what}, {}: {} distinct states, {} steps ({} revisits, {} skipped by the reduction), depth {} of {}, in {:.2} s ({:.0} states/s)",
        search.strategy,
        stats.states,
        stats.steps,
        stats.revisits,
        stats.slept,
        stats.depth,
        bounds.depth_max,
        secs,
        stats.states as f64 / secs
    )?;
    }
    match found {
        Some(f) => {
            writeln!(out, "VIOLATION of {} at {}: {}", f.invariant, f.node, f.detail)?;
            match &search.choices {
                Some(choices) => writeln!(out, "after {} steps (the schedule shrunk to choices {choices:?}):", f.steps.len())?,
                None => writeln!(out, "after {} steps:", f.steps.len())?,
            }
            for (i, step) in f.steps.iter().enumerate() {
                writeln!(out, "  {:>3}. {step}", i + 1)?;
            }
            write_traces(out, traced)?;
        }
        None if stats.done && search.strategy != "choices" => writeln!(
            out,
            "no violation: every state within the bounds explored (depth {}, drops {}, timer firings {})",
            bounds.depth_max, bounds.drops_max, bounds.timer_firings_max
        )?,
        None if search.strategy == "choices" => writeln!(
            out,
            "no violation in {} schedules{}",
            search.schedules,
            search.memory_stop.map_or(String::new(), |(resident, bound)| format!(
                " (stopped at the memory bound: {} held, --max-memory {})",
                crate::memory::format_size(resident),
                crate::memory::format_size(bound)
            ))
        )?,
        None => match search.memory_stop {
            Some((resident, bound)) => writeln!(
                out,
                "no violation found before the memory bound: {} held, --max-memory {}; {} states still pending \
                 (depth-first search holds one path, not a frontier; a lower --depth or fewer requests make fewer states)",
                crate::memory::format_size(resident),
                crate::memory::format_size(bound),
                stats.pending
            )?,
            None => writeln!(
                out,
                "no violation found within the budget; {} states still pending",
                stats.pending
            )?,
        },
    }
    Ok(())
}

/// The first lines of a failure's report: its seed, outcome and violations.
fn write_failure(
    out: &mut dyn std::io::Write,
    config: &RunConfig,
    summary: &crate::run::RunSummary,
) -> std::io::Result<()> {
    writeln!(
        out,
        "FAILED at seed {} ({})",
        config.seed,
        summary.outcome.as_str()
    )?;
    for v in &summary.violations {
        writeln!(out, "  {v}")?;
    }
    Ok(())
}

/// What a search explores: the protocol, and its mutant if any (`pbft (mutant no-commit)`).
fn subject(config: &RunConfig) -> String {
    match &config.mutant {
        Some(m) => format!("{} (mutant {m})", config.protocol.name()),
        None => config.protocol.name().to_string(),
    }
}
