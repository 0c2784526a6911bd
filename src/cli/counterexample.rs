//! The first failing run `rehearsal explore` finds, written as a trace and shrunk: the
//! trace at the `--trace` path, the minimal one beside it (`STEM.min.jsonl`, as the
//! `cargo test` harness names its shrunk traces), and what each holds.

use super::*;
use rehearsal_sim_core::{EventKind, TraceEvent};

/// Whether and how long explore shrinks the trace it writes.
#[derive(Debug, Clone, Copy)]
pub(super) struct ShrinkPlan {
    /// Wall time the shrinker may take; `None`: `--no-shrink`.
    pub(super) time: Option<std::time::Duration>,
    /// No progress lines (`--json`).
    pub(super) quiet: bool,
}

/// A run's size: its events, and its steps as explore counts them (deliveries, drops and
/// timer firings).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub(super) struct RunSize {
    events: u64,
    steps: u64,
    deliveries: u64,
    drops: u64,
    timer_firings: u64,
}

impl RunSize {
    pub(super) fn of(events: &[TraceEvent]) -> RunSize {
        let count =
            |kind: fn(&EventKind) -> bool| events.iter().filter(|e| kind(&e.kind)).count() as u64;
        let deliveries = count(|k| matches!(k, EventKind::Deliver { .. }));
        let drops = count(|k| matches!(k, EventKind::Drop { .. }));
        let timer_firings = count(|k| matches!(k, EventKind::Timer { .. }));
        RunSize {
            events: events.len() as u64,
            steps: deliveries + drops + timer_firings,
            deliveries,
            drops,
            timer_firings,
        }
    }
}

impl std::fmt::Display for RunSize {
    /// `222 events, 83 steps: 75 deliveries, 8 timer firings` (kinds that did not happen
    /// left out).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kinds: Vec<String> = [
            (self.deliveries, "delivery", "deliveries"),
            (self.drops, "drop", "drops"),
            (self.timer_firings, "timer firing", "timer firings"),
        ]
        .iter()
        .filter(|(n, _, _)| *n > 0)
        .map(|&(n, one, many)| format!("{n} {}", if n == 1 { one } else { many }))
        .collect();
        write!(f, "{} events, {} steps", self.events, self.steps)?;
        if !kinds.is_empty() {
            write!(f, ": {}", kinds.join(", "))?;
        }
        Ok(())
    }
}

/// The first failing run as explore wrote it.
pub(super) struct Written {
    trace: PathBuf,
    /// How the run was made, e.g. `the simulator re-enacted the path: violation`.
    origin: Option<String>,
    size: RunSize,
    /// The shrunk trace and its size, or why there is none.
    shrunk: Result<(ShrunkTrace, RunSize), String>,
    /// The configuration the run had (what the minimal run's is compared with).
    config: RunConfig,
}

/// Where the shrunk trace of `trace` goes: `found.jsonl` -> `found.min.jsonl` (any other
/// name gets `.min.jsonl` added).
pub(super) fn shrunk_path(trace: &Path) -> PathBuf {
    let name = trace
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".jsonl").unwrap_or(&name);
    trace.with_file_name(format!("{stem}.min.jsonl"))
}

/// Writes `run` (a failing run, `origin` saying how it was made) to `path`, then shrinks
/// it as `plan` says and writes the minimal run beside it. A shrink that fails or is
/// refused leaves the trace as it is and says why; only failing to write the trace is an
/// error.
pub(super) fn write_and_shrink(
    run: &RunSummary,
    path: &Path,
    origin: Option<String>,
    plan: ShrinkPlan,
    err: &mut dyn Write,
) -> Result<Written, CliError> {
    save_trace(path, run)?;
    let size = RunSize::of(&run.trace);
    let output = shrunk_path(path);
    let shrunk = match plan.time {
        None => Err(format!(
            "--no-shrink; shrink it with `rehearsal shrink {} -o {}`",
            shell_word(path),
            shell_word(&output)
        )),
        Some(time) => {
            let limits = crate::shrink::ShrinkLimits {
                time_max: time,
                ..crate::shrink::ShrinkLimits::default()
            };
            if !plan.quiet {
                writeln!(
                    err,
                    "shrinking {} ({size}), for at most {} (--shrink-time):",
                    path.display(),
                    format_ns(duration_ns(time))
                )?;
            }
            let mut quiet = |_: &str| {};
            let mut lines = progress_lines(err);
            let progress: &mut dyn FnMut(&str) = if plan.quiet { &mut quiet } else { &mut lines };
            shrink_to_file(
                &run.config,
                &run.trace,
                run.sim_time.as_nanos(),
                &output,
                limits,
                progress,
            )
            .map(|shrunk| {
                let after = RunSize::of(&shrunk.result.run.trace);
                (shrunk, after)
            })
            .map_err(|e| format!("the shrinker could not shrink it: {e}"))
        }
    };
    Ok(Written {
        trace: path.to_path_buf(),
        origin,
        size,
        shrunk,
        config: run.config.clone(),
    })
}

impl Written {
    /// The lines of the text report: the traces, their sizes, and the commands that
    /// replay them.
    pub(super) fn lines(&self) -> Vec<String> {
        let origin = self
            .origin
            .as_ref()
            .map_or(String::new(), |o| format!("{o}; "));
        let mut lines = vec![format!(
            "trace: {} ({origin}{})",
            self.trace.display(),
            self.size
        )];
        let replay_original = format!("rehearsal replay {}", shell_word(&self.trace));
        match &self.shrunk {
            Ok((shrunk, after)) => {
                lines.push(format!(
                    "shrunk trace: {} ({after}; {} re-runs in {:.2} s{})",
                    shrunk.path.display(),
                    shrunk.result.runs,
                    shrunk.wall.as_secs_f64(),
                    if shrunk.result.limited {
                        ", stopped at a limit"
                    } else {
                        ""
                    }
                ));
                lines.extend(shrunk.minimal_run(&self.config));
                lines.push(format!(
                    "replay the shrunk run: rehearsal replay {}",
                    shell_word(&shrunk.path)
                ));
                lines.push(format!("replay the original:   {replay_original}"));
            }
            Err(why) => {
                lines.push(format!("not shrunk: {why}"));
                lines.push(format!("replay it: {replay_original}"));
            }
        }
        lines
    }

    /// The JSON report's fields of the traces: `trace`, `trace_size`, `replay`, and
    /// `shrunk` (the shrunk trace, its size before and after, the shrinker's work) or
    /// `not_shrunk` (why not).
    pub(super) fn json(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut fields = serde_json::Map::new();
        fields.insert("trace".into(), self.trace.display().to_string().into());
        fields.insert("trace_size".into(), serde_json::json!(self.size));
        fields.insert(
            "replay".into(),
            format!("rehearsal replay {}", shell_word(&self.trace)).into(),
        );
        let (shrunk, not_shrunk) = match &self.shrunk {
            Ok((shrunk, after)) => (
                serde_json::json!({
                    "trace": shrunk.path.display().to_string(),
                    "replay": format!("rehearsal replay {}", shell_word(&shrunk.path)),
                    "before": self.size,
                    "after": after,
                    "runs": shrunk.result.runs,
                    "wall_time_ns": u64::try_from(shrunk.wall.as_nanos()).unwrap_or(u64::MAX),
                    "limited": shrunk.result.limited,
                    "violation": shrunk.still_fails(),
                    "minimal_run": shrunk.minimal_run(&self.config),
                }),
                serde_json::Value::Null,
            ),
            Err(why) => (serde_json::Value::Null, why.clone().into()),
        };
        fields.insert("shrunk".into(), shrunk);
        fields.insert("not_shrunk".into(), not_shrunk);
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shrunk_trace_goes_beside_the_trace_as_the_harness_names_it() {
        assert_eq!(
            shrunk_path(Path::new("out/found.jsonl")),
            Path::new("out/found.min.jsonl")
        );
        assert_eq!(
            shrunk_path(Path::new("found.trace")),
            Path::new("found.trace.min.jsonl")
        );
    }
}
