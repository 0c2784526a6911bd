//! The trace commands: `replay` (with `--follow-trace`), `shrink`, `export`, `show` and
//! `plot`.

use super::*;

pub(super) fn replay(
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
pub(super) fn replay_verdict(
    identical: bool,
    outcome: Outcome,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
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
pub(super) fn one_event(event: &Option<rehearsal_sim_core::TraceEvent>) -> String {
    event
        .as_ref()
        .map_or("(no event: the run ended)".to_string(), |e| {
            render_text(std::slice::from_ref(e)).trim_end().to_string()
        })
}

/// Re-runs `config` against the schedule recorded in `recorded` and reports the first
/// point where the new run departs from the recording.
pub(super) fn follow_trace(
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
        coverage: false,
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

pub(super) fn trace_config(
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

pub(super) fn shrink(
    path: &Path,
    output: &Path,
    time_limit_ns: u64,
    runs_max: u64,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError> {
    // The time limit counts reading the trace too (seconds, for a large one); writing
    // the minimal trace comes after it.
    let started = std::time::Instant::now();
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
        time_max: std::time::Duration::from_nanos(time_limit_ns).saturating_sub(started.elapsed()),
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
    let shrunk = shrink_to_file(
        &config,
        &recorded.events,
        recorded.footer.sim_time_ns,
        output,
        limits,
        &mut progress_lines(err),
    )
    .map_err(|e| match e {
        ShrinkFailed::Shrink(e) => {
            CliError::BadInput(format!("cannot shrink `{}`: {e}", path.display()))
        }
        ShrinkFailed::Write(e) => e,
    })?;
    writeln!(
        out,
        "{} events -> {} events ({} re-runs{}); still fails: {}",
        shrunk.result.events_before,
        shrunk.result.events_after,
        shrunk.result.runs,
        if shrunk.result.limited {
            ", stopped at a limit"
        } else {
            ""
        },
        shrunk.still_fails()
    )?;
    for line in shrunk.minimal_run(&config) {
        writeln!(out, "{line}")?;
    }
    writeln!(
        out,
        "wrote {}; check it with:\n  rehearsal replay {}",
        output.display(),
        shell_word(output)
    )?;
    Ok(EXIT_OK)
}

/// A shrinker's progress as `rehearsal shrink` shows it: a line on `err` per reduction
/// kept.
pub(super) fn progress_lines(err: &mut dyn Write) -> impl FnMut(&str) + '_ {
    move |line: &str| {
        let _ = writeln!(err, "  {line}");
    }
}

/// A failing run shrunk, and its minimal trace written.
pub(super) struct ShrunkTrace {
    pub(super) path: PathBuf,
    pub(super) result: crate::shrink::Shrunk<RunConfig>,
    pub(super) wall: std::time::Duration,
}

/// Why [`shrink_to_file`] wrote no minimal trace.
pub(super) enum ShrinkFailed {
    /// The shrinker refused the run (it does not fail as recorded when re-enacted, say).
    Shrink(crate::shrink::ShrinkError),
    /// The minimal trace could not be written.
    Write(CliError),
}

impl std::fmt::Display for ShrinkFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShrinkFailed::Shrink(e) => e.fmt(f),
            ShrinkFailed::Write(e) => e.fmt(f),
        }
    }
}

/// Shrinks the failing run of `config` whose recorded events are `events` (ending at
/// `end_ns`), within `limits`, and writes the minimal run's trace to `output`; `progress`
/// hears a line per reduction kept.
pub(super) fn shrink_to_file(
    config: &RunConfig,
    events: &[rehearsal_sim_core::TraceEvent],
    end_ns: u64,
    output: &Path,
    limits: crate::shrink::ShrinkLimits,
    progress: &mut dyn FnMut(&str),
) -> Result<ShrunkTrace, ShrinkFailed> {
    let started = std::time::Instant::now();
    let result = crate::shrink::shrink(config, events, end_ns, limits, progress)
        .map_err(ShrinkFailed::Shrink)?;
    save_trace(output, &result.run).map_err(ShrinkFailed::Write)?;
    Ok(ShrunkTrace {
        path: output.to_path_buf(),
        result,
        wall: started.elapsed(),
    })
}

impl ShrunkTrace {
    /// How the minimal run still fails.
    pub(super) fn still_fails(&self) -> String {
        self.result
            .run
            .first_problem()
            .map_or_else(|| self.result.failure.to_string(), ToString::to_string)
    }

    /// What the minimal run kept and changed of `original`'s configuration, in lines: the
    /// `minimal run: ...` line, and a warning when the correct protocol fails its schedule
    /// too.
    pub(super) fn minimal_run(&self, original: &RunConfig) -> Vec<String> {
        let shrunk = &self.result;
        let c = &shrunk.run.config;
        let mut kept = vec![format!("deadline {}", format_ns(c.duration_ns))];
        kept.push(c.protocol.describe_sizes(&c.sizes()));
        kept.extend(timer_changes(c));
        if c.seed != original.seed {
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
        let mut lines = vec![format!("minimal run: {}", kept.join(", "))];
        if shrunk.genuine == Some(false) {
            lines.push(
                "warning: the correct protocol fails this schedule too; the failure may be the schedule's, not the mutant's"
                    .to_string(),
            );
        }
        lines
    }
}

/// What a run changes of its protocol's timers, for summaries: timers set by hand, and
/// timer firings put off.
pub(super) fn timer_changes(config: &RunConfig) -> Vec<String> {
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

pub(super) fn read_events(path: &Path) -> Result<Vec<rehearsal_sim_core::TraceEvent>, CliError> {
    read_trace(path)
        .map(|t| t.events)
        .map_err(|e| CliError::BadInput(e.to_string()))
}

pub(super) fn write_output(
    path: Option<&Path>,
    text: &str,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    match path {
        None => out.write_all(text.as_bytes())?,
        Some(path) => std::fs::write(path, text)
            .map_err(|e| CliError::BadInput(format!("cannot write `{}`: {e}", path.display())))?,
    }
    Ok(())
}

pub(super) fn export(
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

pub(super) const EVENT_KINDS: &[&str] = &[
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

pub(super) fn show(
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

pub(super) fn plot(
    path: &Path,
    output: &Path,
    width: u32,
    out: &mut dyn Write,
) -> Result<u8, CliError> {
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
