//! Shared by the PBFT test files (`protocols/tests/pbft*.rs` and, through `#[path]`,
//! `tests/tests/pbft*.rs`): a small test-only network model with partitions, loss, random
//! latency, duplication and corruption, and helpers to run PBFT with its checks.
//!
//! The network model stands in until `rehearsal-net-models` has partition-aware models.

#![allow(dead_code)]

use rehearsal_protocols::pbft::{self, Node};
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{
    Admit, Fate, Fault, Latency, NetChange, NetworkModel, NodeId, Packet, RunReport, SimConfig,
    SimRng, Simulation, Time,
};
use std::time::Duration;

/// Latency drawn from a distribution; each message lost with probability `loss`,
/// duplicated with `duplicate`, corrupted with `corrupt`. `Partition` cuts every link
/// between groups (nodes in no group are cut from all), both at send time and at delivery
/// time (messages in flight across a new cut are lost); `Heal` removes the cut.
#[derive(Debug, Clone)]
pub struct TestNet {
    pub latency: Latency,
    pub loss: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    groups: Option<Vec<Vec<NodeId>>>,
    cuts: Vec<(NodeId, NodeId)>,
    /// Messages this node sends within [from, until) take this long instead.
    slow: Option<Slow>,
}

#[derive(Debug, Clone)]
struct Slow {
    node: NodeId,
    from: Time,
    until: Time,
    latency: Latency,
}

impl TestNet {
    pub fn new(latency: &str) -> Self {
        TestNet {
            latency: latency.parse().expect("latency spec"),
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            groups: None,
            cuts: Vec::new(),
            slow: None,
        }
    }

    /// Messages `node` sends between `from` and `until` take `latency` (a spec string).
    pub fn slow(mut self, node: u32, from: Time, until: Time, latency: &str) -> Self {
        self.slow = Some(Slow {
            node: NodeId(node),
            from,
            until,
            latency: latency.parse().expect("latency spec"),
        });
        self
    }

    pub fn loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }

    pub fn duplicate(mut self, p: f64) -> Self {
        self.duplicate = p;
        self
    }

    pub fn corrupt(mut self, p: f64) -> Self {
        self.corrupt = p;
        self
    }

    fn cut(&self, from: NodeId, to: NodeId) -> bool {
        if from == to {
            return false;
        }
        if self.cuts.contains(&(from, to)) {
            return true;
        }
        match &self.groups {
            None => false,
            Some(groups) => !groups.iter().any(|g| g.contains(&from) && g.contains(&to)),
        }
    }
}

impl NetworkModel for TestNet {
    fn route(&mut self, packet: &Packet, rng: &mut SimRng) -> Fate {
        if self.cut(packet.from, packet.to) {
            return Fate::Drop {
                reason: "partition",
            };
        }
        if self.loss > 0.0 && rng.random_bool(self.loss) {
            return Fate::Drop { reason: "loss" };
        }
        let delay_ns = match &self.slow {
            Some(s)
                if s.node == packet.from
                    && packet.sent_at >= s.from
                    && packet.sent_at < s.until =>
            {
                s.latency.sample(rng)
            }
            _ => self.latency.sample(rng),
        };
        if self.corrupt > 0.0 && rng.random_bool(self.corrupt) {
            return Fate::Corrupt { delay_ns };
        }
        if self.duplicate > 0.0 && rng.random_bool(self.duplicate) {
            let copy_delay_ns = self.latency.sample(rng);
            return Fate::Duplicate {
                delay_ns,
                copy_delay_ns,
            };
        }
        Fate::Deliver { delay_ns }
    }

    fn admit(&mut self, from: NodeId, to: NodeId, _now: Time) -> Admit {
        if self.cut(from, to) {
            Admit::Drop {
                reason: "partition",
            }
        } else {
            Admit::Deliver
        }
    }

    fn apply(&mut self, change: &NetChange, _now: Time) -> Result<(), String> {
        match change {
            NetChange::Partition { groups } => self.groups = Some(groups.clone()),
            NetChange::CutOneWay { from, to } => {
                for &a in from {
                    for &b in to {
                        self.cuts.push((a, b));
                    }
                }
            }
            NetChange::Cut { links, .. } => self.cuts.extend(links.iter().copied()),
            NetChange::Heal => {
                self.groups = None;
                self.cuts.clear();
            }
            NetChange::SetLoss { loss } => self.loss = *loss,
            NetChange::SetLatency { latency } => self.latency = *latency,
        }
        Ok(())
    }
}

/// Node ids `ids`.
pub fn nodes(ids: impl IntoIterator<Item = u32>) -> Vec<NodeId> {
    ids.into_iter().map(NodeId).collect()
}

/// A partition of a PBFT deployment: `alone` is cut off; every other replica and every
/// client stay together.
pub fn isolate(config: &pbft::Config, alone: &[u32]) -> Fault {
    let rest: Vec<NodeId> = (0..config.nodes())
        .filter(|i| !alone.contains(i))
        .map(NodeId)
        .collect();
    Fault::Network(NetChange::Partition {
        groups: vec![rest, nodes(alone.iter().copied())],
    })
}

pub fn heal() -> Fault {
    Fault::Network(NetChange::Heal)
}

/// A PBFT simulation with `checks` added (safety checks plus `termination`, if given).
pub fn simulation(
    config: &pbft::Config,
    seed: u64,
    net: TestNet,
    deadline: Option<Duration>,
    termination: Option<pbft::Termination>,
) -> Simulation<Node> {
    let mut sim_config = SimConfig::new(seed);
    sim_config.deadline = deadline.map(|d| Time::ZERO.after(d));
    let actors = pbft::actors(config).expect("valid config");
    let mut sim = Simulation::new(sim_config, actors, net);
    for check in pbft::safety_checks(config) {
        sim.add_invariant(check);
    }
    if let Some(t) = termination {
        sim.add_invariant(t);
    }
    sim.on_restart(pbft::restart(config));
    sim
}

/// Runs and returns the report; panics with the violations and the seed if `expect_ok`
/// and the run was not ok.
pub fn expect_ok(sim: Simulation<Node>, what: &str) -> RunReport<Node> {
    let report = sim.run();
    assert_eq!(
        report.outcome,
        rehearsal_sim_core::Outcome::Ok,
        "{what}, seed {}: {:?}",
        report.seed,
        report.violations
    );
    report
}

/// Requests completed by all clients.
pub fn completed(report: &RunReport<Node>) -> u64 {
    report
        .actors
        .iter()
        .filter_map(Node::as_client)
        .map(|c| c.completed())
        .sum()
}

/// Per replica: (last executed, view).
pub fn replica_states(report: &RunReport<Node>) -> Vec<(u64, u64)> {
    report
        .actors
        .iter()
        .filter_map(Node::as_replica)
        .map(|r| (r.last_executed(), r.view()))
        .collect()
}

/// What a run's outputs said, per node: an invariant that only records, shared with the
/// test through `Rc` so it can be read after the run.
#[derive(Clone, Default)]
pub struct Tally(std::rc::Rc<std::cell::RefCell<TallyInner>>);

#[derive(Default, Debug)]
pub struct TallyInner {
    pub executed: std::collections::BTreeMap<NodeId, u64>,
    pub requests_executed: std::collections::BTreeMap<NodeId, u64>,
    pub state_transfers: std::collections::BTreeMap<NodeId, u64>,
    pub restarts: std::collections::BTreeMap<NodeId, u64>,
    pub highest_view: std::collections::BTreeMap<NodeId, u64>,
    pub byzantine: std::collections::BTreeSet<NodeId>,
    pub largest_batch: usize,
}

impl Tally {
    pub fn get(&self) -> std::cell::Ref<'_, TallyInner> {
        self.0.borrow()
    }
}

impl rehearsal_sim_core::Invariant<Node> for Tally {
    fn name(&self) -> &str {
        "tally"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &pbft::Output) -> Result<(), String> {
        let mut t = self.0.borrow_mut();
        match output {
            pbft::Output::Executed { requests, .. } => {
                *t.executed.entry(node).or_default() += 1;
                *t.requests_executed.entry(node).or_default() += requests.len() as u64;
                t.largest_batch = t.largest_batch.max(requests.len());
            }
            pbft::Output::StateLoaded { reason, .. } => {
                let map = match reason {
                    pbft::LoadReason::Transfer => &mut t.state_transfers,
                    pbft::LoadReason::Restart => &mut t.restarts,
                };
                *map.entry(node).or_default() += 1;
            }
            pbft::Output::ViewEntered { view } => {
                let v = t.highest_view.entry(node).or_default();
                *v = (*v).max(*view);
            }
            pbft::Output::Byzantine { .. } => {
                t.byzantine.insert(node);
            }
            _ => {}
        }
        Ok(())
    }
}
