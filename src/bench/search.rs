//! `rehearsal bench search`: for every mutant of every protocol and every search
//! strategy, the work and the wall time to the first violation, capped, with no
//! hand-written scenario (the default network, or swarm draws).

use crate::cli::{CliError, EXIT_OK};
use crate::config::{Protocol, RunConfig};
use rehearsal_sim_core::explore::{Bounds, Search};
use rehearsal_sim_core::scheduler::{Strategy, PCT_DEPTH_DEFAULT, PCT_STEPS_DEFAULT};
use rehearsal_sim_core::Outcome;
use std::io::Write;
use std::time::{Duration, Instant};

/// The strategies, in the order of the table's columns.
pub const STRATEGIES: &[&str] = &[
    "seeds",
    "random",
    "pct",
    "bfs",
    "dfs",
    "choices",
    "twins",
    "byzzfuzz",
    "coverage",
    "coverage-random",
];

/// What one strategy did against one mutant.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cell {
    pub protocol: &'static str,
    pub mutant: String,
    pub strategy: &'static str,
    /// Whether it found a violation within the cap.
    pub caught: bool,
    /// Runs (seeds), distinct states (bfs, dfs) or schedules (choices) to the first
    /// violation, or within the cap.
    pub work: u64,
    pub unit: &'static str,
    pub wall_ns: u64,
    /// The invariant it broke.
    pub invariant: Option<String>,
    /// Why the strategy does not apply, if it does not.
    pub skipped: Option<String>,
    /// Whether a state-space search stopped at the memory bound (half the machine's
    /// memory) before the cap.
    pub memory_bound: bool,
}

/// The sizes the state-space searches run: the protocol's default nodes, one client, two
/// requests (the smallest run with a second request, which some mutants need). Seeds run
/// the protocol's default sizes, as `rehearsal sim --swarm` does.
fn base(protocol: Protocol, mutant: &str) -> RunConfig {
    RunConfig {
        clients: 1,
        requests: 2,
        mutant: Some(mutant.to_string()),
        ..RunConfig::new(protocol)
    }
}

/// The bounds of each state-space strategy.
pub fn bounds(strategy: &str) -> Bounds {
    match strategy {
        "bfs" => Bounds {
            search: Search::Bfs,
            depth_max: 64,
            drops_max: 0,
            timer_firings_max: 2,
            reduction: true,
        },
        _ => Bounds {
            search: Search::Dfs,
            depth_max: 300,
            drops_max: 0,
            timer_firings_max: 8,
            reduction: true,
        },
    }
}

/// Runs one strategy against one mutant for at most `cap`.
pub fn cell(protocol: Protocol, mutant: &str, strategy: &'static str, cap: Duration) -> Cell {
    let started = Instant::now();
    let mut cell = Cell {
        protocol: protocol.name(),
        mutant: mutant.to_string(),
        strategy,
        caught: false,
        work: 0,
        unit: "runs",
        wall_ns: 0,
        invariant: None,
        skipped: None,
        memory_bound: false,
    };
    let config = base(protocol, mutant);
    match strategy {
        "seeds" | "random" | "pct" => {
            // Run by run: independent seeds, each drawing its network and faults, at the
            // protocol's default sizes; the order of ready events the seeded queue's
            // (seeds), random, or PCT's (depth 3, 1,000 steps).
            let order = match strategy {
                "random" => Strategy::Random { window_ns: 0 },
                "pct" => Strategy::Pct {
                    depth: PCT_DEPTH_DEFAULT,
                    steps: PCT_STEPS_DEFAULT,
                    window_ns: 0,
                },
                _ => Strategy::Default,
            };
            let mut seed = 1;
            while started.elapsed() < cap {
                let c = RunConfig {
                    seed,
                    swarm: true,
                    mutant: Some(mutant.to_string()),
                    strategy: order,
                    ..RunConfig::new(protocol)
                };
                // The network and fault schedule of this seed, as `sim --swarm` draws them.
                let c = crate::swarm::draw(&c);
                cell.work += 1;
                match crate::run::run(&c, false) {
                    Ok(s) if s.outcome != Outcome::Ok => {
                        cell.caught = true;
                        cell.invariant = s.violations.first().map(|v| v.invariant.clone());
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        cell.skipped = Some(e);
                        break;
                    }
                }
                seed += 1;
            }
        }
        "twins" | "byzzfuzz" | "coverage" | "coverage-random" => {
            // Round by round, at the protocol's default sizes, with the search's default
            // bounds (8 rounds; 2 partitions and 2 mutated rounds, or 2 groups a round).
            // `coverage-random`: the coverage-guided search's space without its feedback.
            let kind = crate::search::Kind::parse(strategy.trim_end_matches("-random"))
                .expect("a round-aware strategy");
            let config = RunConfig {
                mutant: Some(mutant.to_string()),
                ..RunConfig::new(protocol)
            };
            let bounds = crate::search::Bounds::default();
            let mut quiet = |_: &crate::search::Report| {};
            let limits = crate::search::Limits {
                feedback: strategy != "coverage-random",
                ..crate::search::Limits::budget(cap)
            };
            match crate::search::search(&config, kind, bounds, limits, &mut quiet) {
                Ok(report) => {
                    cell.work = report.runs;
                    if let Some((_, summary)) = &report.failing {
                        cell.caught = true;
                        cell.invariant = summary.violations.first().map(|v| v.invariant.clone());
                    }
                }
                Err(e) => cell.skipped = Some(e),
            }
        }
        _ => {
            cell.unit = if strategy == "choices" {
                "schedules"
            } else {
                "states"
            };
            let mut e = match protocol.explore(&config, bounds(strategy), &[]) {
                Ok(e) => e,
                Err(_) => {
                    cell.skipped = Some("not explorable".into());
                    cell.wall_ns = 0;
                    return cell;
                }
            };
            let mut chunk = 0u64;
            while started.elapsed() < cap {
                if strategy == "choices" {
                    let seed = 0x9e37_79b9_7f4a_7c15u64.wrapping_add(chunk);
                    chunk += 1;
                    match rehearsal_traces::schedules::find_schedule_failure(e.as_mut(), 64, seed) {
                        Some(f) => {
                            cell.work += f.schedules;
                            cell.caught = true;
                            cell.invariant = Some(f.found.invariant);
                            break;
                        }
                        None => cell.work += 64,
                    }
                } else {
                    if crate::memory::resident_bytes()
                        .is_some_and(|r| r > crate::memory::default_bound())
                    {
                        cell.memory_bound = true;
                        break;
                    }
                    let stats = e.run(4096);
                    cell.work = stats.states;
                    if let Some(found) = e.found() {
                        cell.caught = true;
                        cell.invariant = Some(found.invariant);
                        break;
                    }
                    if stats.done {
                        break;
                    }
                }
            }
            // Timed before the exploration's memory is given back.
            cell.wall_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            return cell;
        }
    }
    cell.wall_ns = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
    cell
}

/// The whole table: every mutant of the protocols named (all when none is), by every
/// strategy named (all when none is), each capped at `cap`; a line per cell on `progress`
/// as it completes.
pub fn run(
    cap: Duration,
    protocols: &[String],
    strategies: &[String],
    json: bool,
    out: &mut dyn Write,
    progress: &mut dyn Write,
) -> Result<u8, CliError> {
    for name in protocols {
        Protocol::named(name).map_err(|e| CliError::BadInput(format!("bench search: {e}")))?;
    }
    for s in strategies {
        if !STRATEGIES.contains(&s.as_str()) {
            return Err(CliError::BadInput(format!(
                "bench search: unknown strategy `{s}`: expected one of {}",
                STRATEGIES.join(", ")
            )));
        }
    }
    let chosen: Vec<&'static str> = STRATEGIES
        .iter()
        .copied()
        .filter(|s| strategies.is_empty() || strategies.iter().any(|t| t == s))
        .collect();
    let mut cells = Vec::new();
    for protocol in Protocol::all() {
        if !protocols.is_empty() && !protocols.iter().any(|p| p == protocol.name()) {
            continue;
        }
        for (mutant, _) in protocol.mutants() {
            for &strategy in &chosen {
                let c = cell(protocol, mutant, strategy, cap);
                writeln!(
                    progress,
                    "bench search: {} {} {}: {}",
                    c.protocol,
                    c.mutant,
                    c.strategy,
                    describe(&c)
                )?;
                cells.push(c);
            }
        }
    }
    if json {
        let value = serde_json::json!({
            "bench": "search",
            "cap_ns": u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX),
            "sizes": "seeds, twins, byzzfuzz, coverage: the protocol's defaults; bfs, dfs, choices: default nodes, 1 client, 2 requests",
            "round_bounds": crate::search::Bounds::default(),
            "bounds": { "bfs": bounds("bfs"), "dfs": bounds("dfs"), "choices": bounds("choices") },
            "cells": cells,
        });
        writeln!(out, "{value}")?;
        return Ok(EXIT_OK);
    }
    writeln!(
        out,
        "bench search: work and wall time to the first violation, capped at {:.0} s, no scenario (seeds: swarm draws)",
        cap.as_secs_f64()
    )?;
    write!(out, "{:<42}", "protocol mutant")?;
    for s in &chosen {
        write!(out, " {s:<28}")?;
    }
    writeln!(out)?;
    let mut rows: Vec<(&str, String)> = Vec::new();
    for c in &cells {
        if !rows.iter().any(|(p, m)| *p == c.protocol && *m == c.mutant) {
            rows.push((c.protocol, c.mutant.clone()));
        }
    }
    for (protocol, mutant) in rows {
        write!(out, "{:<42}", format!("{protocol} {mutant}"))?;
        for s in &chosen {
            let text = cells
                .iter()
                .find(|c| c.protocol == protocol && c.mutant == mutant && c.strategy == *s)
                .map_or_else(String::new, describe);
            write!(out, " {text:<28}")?;
        }
        writeln!(out)?;
    }
    Ok(EXIT_OK)
}

fn describe(c: &Cell) -> String {
    if let Some(why) = &c.skipped {
        return format!("n/a ({why})");
    }
    let secs = c.wall_ns as f64 / 1e9;
    if c.caught {
        format!("{} {} {:.2} s", c.work, c.unit, secs)
    } else if c.memory_bound {
        format!("- ({} {}, memory bound at {:.0} s)", c.work, c.unit, secs)
    } else {
        format!("- ({} {} {:.0} s)", c.work, c.unit, secs)
    }
}
