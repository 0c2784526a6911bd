//! `rehearsal bench coverage`: coverage-guided search against random search at the same
//! budget, on the protocols with rounds: distinct abstract states and happens-before
//! summaries over wall time, as a table and as an SVG plot per protocol.
//!
//! The searches compared, each for the whole budget, one after the other in one sitting:
//!
//! - `coverage`: coverage-guided search over round-based fault schedules (`explore
//!   --strategy coverage`);
//! - `random`: the same space of schedules, each drawn afresh, without feedback (`explore
//!   --strategy coverage --no-feedback`): the blind search coverage guidance must beat;
//! - `seeds`: independent seeds with swarm draws (`sim --swarm`), what a user ran before
//!   round-aware search, for context.

use crate::cli::{CliError, EXIT_OK};
use crate::config::{Protocol, RunConfig};
use crate::run::{run_with, RunOptions};
use crate::search::{sample, search, Bounds, Kind, Limits, Report, Sample};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// The protocols compared when none is named.
pub const PROTOCOLS: &[&str] = &["pbft", "hotstuff"];

/// One search's coverage within the budget.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Curve {
    pub protocol: &'static str,
    pub search: &'static str,
    pub runs: u64,
    pub states: u64,
    pub happens_before: u64,
    /// Coverage over wall time.
    pub samples: Vec<Sample>,
}

/// Independent swarm seeds for `budget`, with coverage collected.
fn seeds(base: &RunConfig, budget: Duration) -> Result<Report, CliError> {
    let started = Instant::now();
    let mut report = Report::default();
    let mut seed = base.seed;
    while started.elapsed() < budget {
        let config = crate::swarm::draw(&RunConfig {
            seed,
            swarm: true,
            ..base.clone()
        });
        seed += 1;
        let options = RunOptions {
            coverage: true,
            ..RunOptions::default()
        };
        let summary = run_with(&config, options).map_err(CliError::BadInput)?;
        report.runs += 1;
        if report.add_coverage(&summary) || report.runs == 1 {
            report.samples.push(sample(&report, started.elapsed()));
        }
    }
    report.wall = started.elapsed();
    report.samples.push(sample(&report, report.wall));
    Ok(report)
}

/// Runs the comparison on `protocols` (PBFT and HotStuff when none is named), each
/// search for `budget`, from `seed`; writes `DIR/coverage-PROTOCOL.svg` when `plots` names
/// a directory; a line per search on `progress` as it completes.
pub fn run(
    budget: Duration,
    protocols: &[String],
    seed: u64,
    plots: Option<&Path>,
    json: bool,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<u8, CliError> {
    let names: Vec<String> = if protocols.is_empty() {
        PROTOCOLS.iter().map(|p| p.to_string()).collect()
    } else {
        protocols.to_vec()
    };
    let mut chosen = Vec::new();
    for name in &names {
        let protocol = Protocol::named(name)
            .map_err(|e| CliError::BadInput(format!("bench coverage: {e}")))?;
        let base = RunConfig {
            seed,
            ..RunConfig::new(protocol)
        };
        // Refuse a protocol without rounds and faulty replicas before spending the budget.
        crate::search::Space::of(&base, Bounds::default())
            .map_err(|e| CliError::BadInput(format!("bench coverage: {e}")))?;
        chosen.push((protocol, base));
    }
    if let Some(dir) = plots {
        std::fs::create_dir_all(dir).map_err(|e| {
            CliError::BadInput(format!(
                "bench coverage: cannot create {}: {e}",
                dir.display()
            ))
        })?;
    }
    let mut curves = Vec::new();
    for (protocol, base) in &chosen {
        let mut mine = Vec::new();
        for name in ["coverage", "random", "seeds"] {
            let mut quiet = |_: &Report| {};
            let report = match name {
                "coverage" | "random" => {
                    let limits = Limits {
                        keep_going: true,
                        feedback: name == "coverage",
                        ..Limits::budget(budget)
                    };
                    search(base, Kind::Coverage, Bounds::default(), limits, &mut quiet)
                }
                _ => seeds(base, budget).map_err(|e| e.to_string()),
            }
            .map_err(|e| CliError::BadInput(format!("bench coverage: {e}")))?;
            let curve = Curve {
                protocol: protocol.name(),
                search: name,
                runs: report.runs,
                states: report.states.len() as u64,
                happens_before: report.happens_before.len() as u64,
                samples: report.samples,
            };
            writeln!(
                progress,
                "bench coverage: {} {name}: {} runs, {} abstract states, {} happens-before summaries",
                curve.protocol, curve.runs, curve.states, curve.happens_before
            )?;
            mine.push(curve);
        }
        if let Some(dir) = plots {
            let path = dir.join(format!("coverage-{}.svg", protocol.name()));
            let title = format!(
                "{}: coverage-guided vs random search, {:.0} s each",
                protocol.name(),
                budget.as_secs_f64()
            );
            let lines: Vec<(&str, &[Sample])> = mine
                .iter()
                .map(|c| (c.search, c.samples.as_slice()))
                .collect();
            std::fs::write(&path, crate::search::coverage_svg(&title, &lines)).map_err(|e| {
                CliError::BadInput(format!(
                    "bench coverage: cannot write {}: {e}",
                    path.display()
                ))
            })?;
            writeln!(progress, "bench coverage: wrote {}", path.display())?;
        }
        curves.extend(mine);
    }
    let ratio = |protocol: &str, pick: fn(&Curve) -> u64| {
        let of = |s: &str| {
            curves
                .iter()
                .find(|c| c.protocol == protocol && c.search == s)
                .map_or(0, pick)
        };
        of("coverage") as f64 / of("random").max(1) as f64
    };
    if json {
        let value = serde_json::json!({
            "bench": "coverage",
            "budget_ns": u64::try_from(budget.as_nanos()).unwrap_or(u64::MAX),
            "seed": seed,
            "bounds": Bounds::default(),
            "curves": curves,
            "ratios": chosen.iter().map(|(p, _)| serde_json::json!({
                "protocol": p.name(),
                "states": ratio(p.name(), |c| c.states),
                "happens_before": ratio(p.name(), |c| c.happens_before),
            })).collect::<Vec<_>>(),
        });
        writeln!(out, "{value}")?;
        return Ok(EXIT_OK);
    }
    writeln!(
        out,
        "bench coverage: distinct coverage points within {:.0} s per search (random: the same schedules without feedback; seeds: sim --swarm)",
        budget.as_secs_f64()
    )?;
    writeln!(
        out,
        "{:<10} {:<9} {:>8} {:>16} {:>24}",
        "protocol", "search", "runs", "abstract states", "happens-before summaries"
    )?;
    for c in &curves {
        writeln!(
            out,
            "{:<10} {:<9} {:>8} {:>16} {:>24}",
            c.protocol, c.search, c.runs, c.states, c.happens_before
        )?;
    }
    for (p, _) in &chosen {
        writeln!(
            out,
            "{}: coverage-guided / random: {:.2}x abstract states, {:.2}x happens-before summaries",
            p.name(),
            ratio(p.name(), |c| c.states),
            ratio(p.name(), |c| c.happens_before)
        )?;
    }
    Ok(EXIT_OK)
}
