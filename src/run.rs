//! Builds a simulation from a [`RunConfig`] and runs it, whatever the protocol.

use crate::config::{Protocol, RunConfig};
use rehearsal_net_models::{scenario, NetConfig, Network, NODES_MAX};
use rehearsal_protocols::{benaloh, pbft, unreplicated};
use rehearsal_sim_core::{
    Actor, Digest, EndReason, Invariant, Latency, NetworkModel, NodeStats, Outcome, SimConfig,
    SimpleNetwork, Simulation, Time, TraceEvent,
};
use rehearsal_sim_core::{NodeId, RestartFn};
use rehearsal_traces::{FollowStats, ScheduleFollower};
use std::time::{Duration, Instant};

/// What one run yields, the same for every protocol.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub config: RunConfig,
    pub outcome: Outcome,
    pub end: EndReason,
    pub violations: Vec<String>,
    pub events: u64,
    pub messages_sent: u64,
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    pub sim_time: Time,
    pub wall_time: Duration,
    pub digest: Digest,
    pub nodes: Vec<NodeStats>,
    /// Every event, when the run was asked to keep its trace.
    pub trace: Vec<TraceEvent>,
    /// When the run followed a recorded schedule: how closely it could.
    pub follow: Option<FollowStats>,
    /// Protocol figures (PBFT: completed requests, throughput, simulated latencies).
    pub protocol: Option<serde_json::Value>,
}

impl RunSummary {
    /// One JSON object, as `rehearsal sim --json` prints it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "protocol": self.config.protocol.name(),
            "seed": self.config.seed,
            "outcome": self.outcome.as_str(),
            "end": self.end,
            "violations": self.violations,
            "events": self.events,
            "messages_sent": self.messages_sent,
            "messages_delivered": self.messages_delivered,
            "messages_dropped": self.messages_dropped,
            "sim_time_ns": self.sim_time.as_nanos(),
            "wall_time_ns": u64::try_from(self.wall_time.as_nanos()).unwrap_or(u64::MAX),
            "trace_digest": self.digest.0,
            "nodes": self.nodes,
            "protocol_figures": self.protocol,
        })
    }
}

/// How to run a configuration, beyond what the configuration says.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Keep every event (for trace files and replay); the digest is computed either way.
    pub keep_trace: bool,
    /// Re-enact this recorded schedule instead of drawing network decisions from the seed.
    pub follow: Option<ScheduleFollower>,
    /// Use the minimal network model (latency and loss only), for comparisons.
    pub minimal_network: bool,
}

/// Runs one configuration. `keep_trace` keeps every event (for trace files and replay);
/// the digest is computed either way. Errors describe an invalid configuration.
pub fn run(config: &RunConfig, keep_trace: bool) -> Result<RunSummary, String> {
    run_with(
        config,
        RunOptions {
            keep_trace,
            ..RunOptions::default()
        },
    )
}

/// Runs one configuration as `options` say.
pub fn run_with(config: &RunConfig, options: RunOptions) -> Result<RunSummary, String> {
    config.validate()?;
    if config.follow_schedule && options.follow.is_none() {
        return Err(
            "this run follows its own recorded schedule (a shrunk run): replay it from its trace file"
                .into(),
        );
    }
    let keep_trace = options.keep_trace;
    let follow_stats = options.follow.as_ref().map(|f| f.stats());
    let sim_config = SimConfig {
        seed: config.seed,
        deadline: Some(Time(config.duration_ns)),
        keep_trace,
        ..SimConfig::new(config.seed)
    };
    let network: Box<dyn NetworkModel> = match options.follow {
        Some(follower) => Box::new(follower),
        None if options.minimal_network => Box::new(SimpleNetwork {
            latency: config.latency,
            loss: config.loss,
        }),
        None => network_model(config)?,
    };
    let run = match config.protocol {
        Protocol::Unreplicated => {
            let proto = unreplicated::Config {
                clients: config.clients,
                requests_per_client: config.requests,
                retransmit_after: retransmit_after(&config.net_config()),
            };
            let mutant = config
                .mutant
                .as_deref()
                .map(str::parse::<unreplicated::Mutant>)
                .transpose()?;
            let rebuilt = proto.clone();
            let fresh = move |node: NodeId| {
                // A restarted node comes back empty: these protocols keep no durable state.
                let mut all = unreplicated::actors_with_mutant(&rebuilt, mutant);
                all.swap_remove(node.index())
            };
            let setup = Setup {
                actors: unreplicated::actors_with_mutant(&proto, mutant),
                invariants: vec![Box::new(unreplicated::RequestsAnswered::new(&proto))],
                restart: Some(Box::new(move |node, _| fresh(node))),
                summarize: None,
            };
            simulate(config, sim_config, network, setup)
        }
        Protocol::Benaloh | Protocol::BenalohTimed => {
            let mode = if config.protocol == Protocol::Benaloh {
                benaloh::Mode::Robust
            } else {
                benaloh::Mode::WORKSHOP
            };
            let proto = benaloh::Config {
                nodes: config.nodes,
                modulus: benaloh::MODULUS_DEFAULT,
                mode,
            };
            if let Some(mutant) = &config.mutant {
                return Err(format!(
                    "{} has no mutant `{mutant}`; it has none",
                    config.protocol
                ));
            }
            // Robust nodes retransmit until acknowledged; the first retry waits for a round
            // trip, as the unreplicated clients do.
            let after = retransmit_after(&config.net_config());
            let actors = benaloh::actors(&proto)
                .map_err(|e| e.to_string())?
                .into_iter()
                .map(|node| node.retransmitting_after(after))
                .collect();
            let setup = Setup {
                actors,
                invariants: vec![Box::new(benaloh::CorrectSum::new(&proto))],
                restart: None,
                summarize: None,
            };
            simulate(config, sim_config, network, setup)
        }
        Protocol::Pbft => {
            let proto = pbft_config(config)?;
            proto.validate().map_err(|e| e.to_string())?;
            // Termination is owed once the last fault is over: every request must then
            // complete within the bound.
            let healed = config
                .scenario
                .as_ref()
                .and_then(|s| scenario::parse(&s.text, &s.origin, config.actors()).ok())
                .and_then(|s| s.entries.last().map(|e| e.at))
                .unwrap_or(Time::ZERO);
            let mut invariants: Vec<Box<dyn Invariant<pbft::Node>>> = pbft::safety_checks(&proto)
                .into_iter()
                .map(|c| Box::new(c) as Box<dyn Invariant<pbft::Node>>)
                .collect();
            invariants.push(Box::new(
                pbft::Termination::new(&proto)
                    .after(healed)
                    .within(proto.termination_bound),
            ));
            let setup = Setup {
                actors: pbft::actors(&proto).map_err(|e| e.to_string())?,
                invariants,
                restart: Some(Box::new(pbft::restart(&proto))),
                summarize: Some(Box::new(|actors: &[pbft::Node]| {
                    serde_json::to_value(pbft::Summary::of(actors)).unwrap_or_default()
                })),
            };
            simulate(config, sim_config, network, setup)
        }
    }?;
    Ok(RunSummary {
        follow: follow_stats.map(|s| s.borrow().clone()),
        ..run
    })
}

/// What a protocol contributes to a run.
struct Setup<A: Actor> {
    actors: Vec<A>,
    invariants: Vec<Box<dyn Invariant<A>>>,
    /// Rebuilds a crashed node from its durable state, for `restart` faults.
    restart: Option<RestartFn<A>>,
    /// Protocol figures read from the actors a run leaves (throughput, latencies).
    summarize: Option<Summarize<A>>,
}

/// Reads protocol figures from the actors a run leaves.
type Summarize<A> = Box<dyn Fn(&[A]) -> serde_json::Value>;

/// The network model of a run: the composable model of `net-models`; for runs too large
/// for its per-link state, the minimal model when nothing but latency and loss is asked.
pub fn network_model(config: &RunConfig) -> Result<Box<dyn NetworkModel>, String> {
    let nodes = config.actors() as usize;
    if nodes > NODES_MAX && config.network.is_none() && config.scenario.is_none() {
        return Ok(Box::new(SimpleNetwork {
            latency: config.latency,
            loss: config.loss,
        }));
    }
    Network::new(&config.net_config(), nodes)
        .map(|n| Box::new(n) as Box<dyn NetworkModel>)
        .map_err(|e| format!("network: {e}"))
}

/// A bound on one-way latency under `network`: the worst link, with 4 deviations of
/// margin for unbounded distributions.
pub fn one_way_bound_ns(network: &NetConfig) -> u64 {
    let bound = |latency: &Latency| match *latency {
        Latency::Constant { ns } => ns,
        Latency::Uniform { hi_ns, .. } => hi_ns,
        Latency::Normal { mean_ns, std_ns } | Latency::LogNormal { mean_ns, std_ns } => {
            mean_ns.saturating_add(std_ns.saturating_mul(4))
        }
    };
    let mut one_way_ns = match &network.matrix {
        Some(matrix) => {
            let n = matrix.nodes();
            let worst = (0..n * n)
                .map(|i| matrix.get_ns(NodeId((i / n) as u32), NodeId((i % n) as u32)))
                .max()
                .unwrap_or(0);
            worst.saturating_add(network.jitter.as_ref().map_or(0, bound))
        }
        None => bound(&network.latency),
    };
    for link in &network.links {
        if let Some(latency) = &link.latency {
            one_way_ns = one_way_ns.max(bound(latency));
        }
    }
    one_way_ns
}

/// The chance that a message is lost on the network's worst link, counting a damaged
/// message as lost (receivers drop it).
pub fn worst_loss(network: &NetConfig) -> f64 {
    let lost = |loss: f64, corrupt: f64| 1.0 - (1.0 - loss) * (1.0 - corrupt);
    network
        .links
        .iter()
        .map(|link| {
            lost(
                link.loss.unwrap_or(network.loss),
                link.corrupt.unwrap_or(network.corrupt),
            )
        })
        .fold(lost(network.loss, network.corrupt), f64::max)
}

/// A client retransmission timeout comfortably above the round trip the network allows,
/// so a lossless network sees no needless retransmissions.
pub fn retransmit_after(network: &NetConfig) -> Duration {
    Duration::from_nanos(one_way_bound_ns(network).saturating_mul(4).max(1_000_000))
}

fn simulate<A: Actor>(
    config: &RunConfig,
    sim_config: SimConfig,
    network: Box<dyn NetworkModel>,
    setup: Setup<A>,
) -> Result<RunSummary, String> {
    let nodes = setup.actors.len() as u32;
    let mut sim = Simulation::with_boxed_network(sim_config, setup.actors, network);
    for invariant in setup.invariants {
        sim.add_boxed_invariant(invariant);
    }
    if let Some(restart) = setup.restart {
        sim.on_restart(restart);
    }
    if let Some(source) = &config.scenario {
        let scenario =
            scenario::parse(&source.text, &source.origin, nodes).map_err(|e| e.to_string())?;
        for entry in scenario.entries {
            sim.schedule_fault(entry.at, entry.fault)
                .map_err(|e| format!("{}:{}: {e}", source.origin, entry.line))?;
        }
    }
    sim.postpone_timers(
        config
            .postponed_timers
            .iter()
            .map(|&(node, id)| (NodeId(node), rehearsal_sim_core::TimerId(id))),
    );
    let started = Instant::now();
    let report = sim.run();
    let wall_time = started.elapsed();
    let protocol = setup.summarize.map(|f| f(&report.actors));
    Ok(RunSummary {
        config: config.clone(),
        outcome: report.outcome,
        end: report.end,
        violations: report.violations,
        events: report.events,
        messages_sent: report.messages_sent,
        messages_delivered: report.messages_delivered,
        messages_dropped: report.messages_dropped,
        sim_time: report.sim_time,
        wall_time,
        digest: report.digest,
        nodes: report.nodes,
        trace: report.trace,
        follow: None,
        protocol,
    })
}

/// The PBFT configuration `config` runs: its sizes, crypto and mutant, timeouts scaled to
/// the network's latency, then the timers it sets by hand, and the termination bound those
/// timers need on its network.
pub fn pbft_config(config: &RunConfig) -> Result<pbft::Config, String> {
    let mut proto = pbft::Config::with_replicas(config.nodes).map_err(|e| e.to_string())?;
    proto.clients = config.clients;
    proto.requests_per_client = config.requests;
    proto.batch_max = config.batch;
    proto.crypto = config.crypto.parse()?;
    proto.key_seed = config.seed;
    if let Some(mutant) = &config.mutant {
        proto.mutant = mutant.parse()?;
    }
    let net = config.net_config();
    let mut proto = proto.timeouts_for_latency(Duration::from_nanos(one_way_bound_ns(&net)));
    for (name, &ns) in &config.timers {
        let slot = match name.as_str() {
            "client-retransmit" => &mut proto.client_retransmit,
            "tick" => &mut proto.tick,
            "view-change" => &mut proto.view_change_timeout,
            other => return Err(format!("pbft has no timer `{other}`")),
        };
        *slot = Duration::from_nanos(ns);
    }
    // The bound follows the timers as set.
    Ok(proto.termination_bound_under_loss(worst_loss(&net)))
}

/// The timers of a PBFT run as it runs them (see [`pbft_config`]), by the names
/// `--timer` takes, in nanoseconds.
pub fn pbft_timers(config: &RunConfig) -> Result<Vec<(&'static str, u64)>, String> {
    let proto = pbft_config(config)?;
    Ok(vec![
        (
            "client-retransmit",
            rehearsal_sim_core::duration_ns(proto.client_retransmit),
        ),
        ("tick", rehearsal_sim_core::duration_ns(proto.tick)),
        (
            "view-change",
            rehearsal_sim_core::duration_ns(proto.view_change_timeout),
        ),
    ])
}
