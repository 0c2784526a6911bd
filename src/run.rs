//! Builds a simulation from a [`RunConfig`] and runs it, whatever the protocol.

use crate::config::RunConfig;
use rehearsal_net_models::{scenario, NetConfig, Network, NODES_MAX};
use rehearsal_sim_core::protocol::NetBound;
use rehearsal_sim_core::{
    Actor, Invariant, Latency, NetworkModel, RunResult, SimConfig, SimpleNetwork, Simulation,
    Strategy, Time, TraceEvent,
};
use rehearsal_sim_core::{NodeId, RestartFn};
use rehearsal_traces::{FollowStats, ScheduleFollower};
use std::time::{Duration, Instant};

/// What one run yields, the same for every protocol: the simulator's [`RunResult`] (read
/// through the summary, as `summary.outcome`) and what the command line adds to it.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub config: RunConfig,
    pub result: RunResult,
    pub wall_time: Duration,
    /// Every event, when the run was asked to keep its trace.
    pub trace: Vec<TraceEvent>,
    /// When the run followed a recorded schedule: how closely it could.
    pub follow: Option<FollowStats>,
    /// Protocol figures (PBFT: completed requests, throughput, simulated latencies).
    pub protocol: Option<serde_json::Value>,
}

/// A summary reads as its result: `summary.outcome`, `summary.violations`.
impl std::ops::Deref for RunSummary {
    type Target = RunResult;
    fn deref(&self) -> &RunResult {
        &self.result
    }
}

impl RunSummary {
    /// One JSON object, as `rehearsal sim --json` prints it: the [`RunResult`]'s fields
    /// (violations as `{invariant, node, time_ns, detail}`), then the protocol's name, the
    /// wall time and the protocol's figures.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::to_value(&self.result).expect("a run result serializes");
        let fields = json.as_object_mut().expect("a run result is an object");
        fields.insert("protocol".into(), self.config.protocol.name().into());
        fields.insert(
            "wall_time_ns".into(),
            u64::try_from(self.wall_time.as_nanos())
                .unwrap_or(u64::MAX)
                .into(),
        );
        fields.insert(
            "protocol_figures".into(),
            self.protocol.clone().unwrap_or(serde_json::Value::Null),
        );
        json
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
    /// Collect what the run covers (`RunResult::coverage`), for coverage-guided search.
    pub coverage: bool,
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
    // A followed run re-enacts the recorded order through the recorded times (every event
    // of a run whose scheduler picked the order has an instant of its own): its events run
    // in queue order, and its starts and timers are re-timed from the recording too.
    let strategy = match options.follow {
        Some(_) => Strategy::Default,
        None => config.strategy,
    };
    let sim_config = SimConfig {
        seed: config.seed,
        deadline: Some(Time(config.duration_ns)),
        keep_trace,
        strategy,
        coverage: options.coverage,
        ..SimConfig::new(config.seed)
    };
    let network: Box<dyn NetworkModel> = match options.follow {
        Some(mut follower) => {
            if !config.strategy.is_default() || config.retime_schedule {
                follower.retime_starts_and_timers();
            }
            Box::new(follower)
        }
        None if options.minimal_network => Box::new(SimpleNetwork {
            latency: config.latency,
            loss: config.loss,
        }),
        None => network_model(config)?,
    };
    let run = config.protocol.simulate(config, sim_config, network)?;
    Ok(RunSummary {
        follow: follow_stats.map(|s| s.borrow().clone()),
        ..run
    })
}

/// What a protocol contributes to a run.
pub(crate) struct Setup<A: Actor> {
    pub actors: Vec<A>,
    pub invariants: Vec<Box<dyn Invariant<A>>>,
    /// Rebuilds a crashed node from its durable state, for `restart` faults.
    pub restart: Option<RestartFn<A>>,
    /// Protocol figures read from the actors a run leaves (throughput, latencies).
    pub summarize: Option<Summarize<A>>,
    /// The run's scenario, parsed.
    pub scenario: Option<scenario::Scenario>,
    /// The second instance of each node the scenario twins, built as that node.
    pub twins: Vec<(NodeId, A)>,
}

/// Reads protocol figures from the actors a run leaves.
type Summarize<A> = Box<dyn Fn(&[A]) -> Option<serde_json::Value>>;

/// The network model of a run: the composable model of `net-models`; for runs too large
/// for its per-link state, the minimal model when nothing but latency and loss is asked.
pub fn network_model(config: &RunConfig) -> Result<Box<dyn NetworkModel>, String> {
    let nodes = config.endpoints() as usize;
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

/// What the protocol is told of the network of a run: its worst link's latency and loss.
pub fn net_bound(network: &NetConfig) -> NetBound {
    NetBound {
        one_way_ns_max: one_way_bound_ns(network),
        loss_worst: worst_loss(network),
    }
}

/// When the last scheduled fault is over: termination is owed from then on (every
/// request must then complete within its bound).
pub fn healed_at(config: &RunConfig) -> Time {
    config
        .scenario
        .as_ref()
        .and_then(|s| scenario::parse(&s.text, &s.origin, config.actors()).ok())
        .and_then(|s| s.entries.last().map(|e| e.at))
        .unwrap_or(Time::ZERO)
}

pub(crate) fn simulate<A: Actor>(
    config: &RunConfig,
    sim_config: SimConfig,
    network: Box<dyn NetworkModel>,
    setup: Setup<A>,
) -> Result<RunSummary, String> {
    let mut sim = Simulation::with_boxed_network(sim_config, setup.actors, network);
    for invariant in setup.invariants {
        sim.add_boxed_invariant(invariant);
    }
    if let Some(restart) = setup.restart {
        sim.on_restart(restart);
    }
    if let (Some(source), Some(scenario)) = (&config.scenario, setup.scenario) {
        for (of, twin) in setup.twins {
            sim.add_twin(of, twin)
                .map_err(|e| format!("{}: {e}", source.origin))?;
        }
        for entry in scenario.entries {
            let scheduled = match entry.round {
                Some((round, when)) => sim.schedule_round_fault(round, when, entry.fault),
                None => sim.schedule_fault(entry.at, entry.fault),
            };
            scheduled.map_err(|e| format!("{}:{}: {e}", source.origin, entry.line))?;
        }
    }
    for (node, behavior) in &config.byzantine_from_start {
        sim.byzantine_from_start(NodeId(*node), behavior)
            .map_err(|e| format!("byzantine_from_start: {e}"))?;
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
    let protocol = setup.summarize.and_then(|f| f(&report.actors));
    Ok(RunSummary {
        config: config.clone(),
        result: report.result,
        wall_time,
        trace: report.trace,
        follow: None,
        protocol,
    })
}
