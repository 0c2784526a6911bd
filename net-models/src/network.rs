//! The composable network model: every directed link has its own latency, loss,
//! duplication, reordering, corruption and bandwidth, and the links form a topology that
//! scenarios cut and heal.

#![warn(missing_docs)]

use crate::config::{InFlight, LinkMode, NetConfig, NetConfigError};
use crate::topology::Topology;
use crate::Bandwidth;
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{
    Admit, Fate, Latency, NetChange, NetworkModel, NodeId, Packet, SimRng, Time,
};
use std::fmt;

/// Largest run a [`Network`] models: its per-link state grows with the square of the nodes.
pub const NODES_MAX: usize = 1024;

/// How many of the latest distinct link settings a new link is compared with.
const PROFILES_SEARCHED: usize = 8;

/// Marks a link that is not on the fast path.
const SLOW: u64 = u64::MAX;

/// The settings of a directed link. Links with the same settings share one (with
/// constant latencies, every link does): a thousand nodes have a million links.
#[derive(Debug, Clone, PartialEq)]
struct Link {
    /// Fixed part of the latency (a matrix entry), added to each draw of `latency`.
    latency_base_ns: u64,
    latency: Latency,
    loss: f64,
    duplicate: f64,
    reorder: f64,
    corrupt: f64,
    bandwidth: Option<Bandwidth>,
}

/// What a link remembers between messages, kept only with a bandwidth or in FIFO mode.
#[derive(Debug, Clone, Copy, Default)]
struct LinkState {
    /// With a bandwidth: when the link has finished sending everything given to it so far.
    busy_until_ns: u64,
    /// In FIFO mode: the latest arrival time scheduled on this link.
    last_arrival_ns: u64,
}

impl Link {
    /// The delay of every message, if this link does nothing but a constant latency.
    fn constant_delay_ns(&self) -> Option<u64> {
        let Latency::Constant { ns } = self.latency else {
            return None;
        };
        let plain = self.loss == 0.0
            && self.duplicate == 0.0
            && self.reorder == 0.0
            && self.corrupt == 0.0
            && self.bandwidth.is_none();
        plain.then(|| self.latency_base_ns.saturating_add(ns))
    }
}

/// The network model of [`NetConfig`], plugged into the simulator as its
/// [`NetworkModel`].
///
/// Per message, in this order (randomness only for what is on, from the sender's network
/// stream, so turning one feature on leaves the others' draws as they were until it fires):
///
/// 1. a cut link drops the message (`partition`), unless cuts hold messages (`on_cut = hold`);
/// 2. loss: one draw if the link's loss is above zero; a lost message has still occupied
///    the link's bandwidth, as it would on a real wire;
/// 3. bandwidth: the message leaves when the link has sent everything before it, after
///    `bytes * 8 / bandwidth`;
/// 4. latency: the matrix entry plus one draw of its jitter, or one draw of the link's
///    latency (none for a constant);
/// 5. reorder: one draw if above zero; if it fires, one draw of `reorder_delay` added;
/// 6. FIFO mode: not before the previous arrival on the link;
/// 7. corruption: one draw if above zero (the simulator then damages the bytes with more
///    draws from the same stream);
/// 8. duplication: one draw if above zero; if it fires, the copy draws its own latency (in
///    FIFO mode it arrives no earlier than the original).
///
/// A link with only a constant latency takes a fast path that draws nothing.
///
/// ```
/// use rehearsal_net_models::{NetConfig, Network};
/// use rehearsal_sim_core::{derive_rng, Fate, NetworkModel, NodeId, Packet, Time};
/// let mut net = Network::new(&NetConfig::default(), 2).unwrap();
/// let packet = Packet { from: NodeId(0), to: NodeId(1), sent_at: Time::ZERO, bytes: 100 };
/// let fate = net.route(&packet, &mut derive_rng(1, "net", 0));
/// assert_eq!(fate, Fate::Deliver { delay_ns: 10_000_000 });
/// ```
#[derive(Clone)]
pub struct Network {
    nodes: usize,
    /// Per link (`from * nodes + to`): the delay if the link is on the fast path, else
    /// [`SLOW`]. Apart from the settings so the fast path reads 8 bytes per link. Empty
    /// while every link is alike and none is cut: then `uniform_delay_ns` says it.
    fast_delay_ns: Vec<u64>,
    /// Every link's fast-path delay (or [`SLOW`]) while `fast_delay_ns` is empty.
    uniform_delay_ns: u64,
    /// The distinct link settings; `link_of[from * nodes + to]` says which a link has.
    profiles: Vec<Link>,
    /// Empty when there is one set of settings (every link has the first).
    link_of: Vec<u32>,
    /// Per link, when some link has a bandwidth or the links are FIFO; else empty.
    state: Vec<LinkState>,
    topology: Topology,
    fifo: bool,
    on_cut: InFlight,
    reorder_delay: Latency,
    config: NetConfig,
}

impl Network {
    /// The model of `config` for a run of `nodes` nodes; checks the configuration first
    /// ([`NetConfig::validate`]).
    pub fn new(config: &NetConfig, nodes: usize) -> Result<Network, NetConfigError> {
        if nodes > NODES_MAX {
            return Err(NetConfigError::Invalid {
                message: format!(
                    "the network model handles at most {NODES_MAX} nodes, the run has {nodes}"
                ),
            });
        }
        config.validate(nodes)?;
        let mut profiles: Vec<Link> = Vec::new();
        let mut link_of = Vec::with_capacity(nodes * nodes);
        for from in 0..nodes as u32 {
            for to in 0..nodes as u32 {
                let (from, to) = (NodeId(from), NodeId(to));
                let (latency_base_ns, latency) = match &config.matrix {
                    Some(matrix) => (
                        matrix.get_ns(from, to),
                        config.jitter.unwrap_or(Latency::Constant { ns: 0 }),
                    ),
                    None => (0, config.latency),
                };
                let mut link = Link {
                    latency_base_ns,
                    latency,
                    loss: config.loss,
                    duplicate: config.duplicate,
                    reorder: config.reorder,
                    corrupt: config.corrupt,
                    bandwidth: config.bandwidth,
                };
                for rule in config.links.iter().filter(|r| r.applies_to(from, to)) {
                    if let Some(latency) = rule.latency {
                        link.latency_base_ns = 0;
                        link.latency = latency;
                    }
                    link.loss = rule.loss.unwrap_or(link.loss);
                    link.duplicate = rule.duplicate.unwrap_or(link.duplicate);
                    link.reorder = rule.reorder.unwrap_or(link.reorder);
                    link.corrupt = rule.corrupt.unwrap_or(link.corrupt);
                    link.bandwidth = rule.bandwidth.or(link.bandwidth);
                }
                // Settings come in runs (a row of a matrix, the links a rule covers):
                // the last few distinct ones are enough to share almost all of them.
                let recent = profiles.len().saturating_sub(PROFILES_SEARCHED);
                let profile = match profiles[recent..].iter().rposition(|p| *p == link) {
                    Some(at) => recent + at,
                    None => {
                        profiles.push(link);
                        profiles.len() - 1
                    }
                };
                link_of.push(u32::try_from(profile).expect("at most NODES_MAX^2 links"));
            }
        }
        if profiles.len() == 1 {
            link_of = Vec::new();
        }
        let fifo = config.mode == LinkMode::Fifo;
        let stateful = fifo || profiles.iter().any(|p| p.bandwidth.is_some());
        let mut network = Network {
            nodes,
            fast_delay_ns: Vec::new(),
            uniform_delay_ns: SLOW,
            profiles,
            link_of,
            state: if stateful {
                vec![LinkState::default(); nodes * nodes]
            } else {
                Vec::new()
            },
            topology: Topology::full(nodes),
            fifo,
            on_cut: config.on_cut,
            reorder_delay: config.reorder_delay,
            config: config.clone(),
        };
        network.refresh_fast_path();
        Ok(network)
    }

    /// The configuration this model was built from (changes applied since are not in it).
    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    /// Which links work now.
    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The number of nodes.
    pub fn nodes(&self) -> usize {
        self.nodes
    }

    /// Recomputes which links take the fast path: after any change to links or topology.
    fn refresh_fast_path(&mut self) {
        // FIFO needs its bookkeeping even at constant latency: a node's modelled CPU
        // time can make a later message depart before an earlier one.
        let fast = |link: &Link| link.constant_delay_ns().filter(|_| !self.fifo);
        if self.link_of.is_empty() && self.topology.is_whole() {
            self.uniform_delay_ns = self.profiles.first().and_then(fast).unwrap_or(SLOW);
            self.fast_delay_ns = Vec::new();
            return;
        }
        let mut delays = std::mem::take(&mut self.fast_delay_ns);
        delays.resize(self.nodes * self.nodes, SLOW);
        for (i, delay) in delays.iter_mut().enumerate() {
            let from = NodeId((i / self.nodes) as u32);
            let to = NodeId((i % self.nodes) as u32);
            *delay = match fast(self.link(i)) {
                Some(ns) if self.topology.can_send(from, to) => ns,
                _ => SLOW,
            };
        }
        self.fast_delay_ns = delays;
    }

    /// The settings of link `index` (`from * nodes + to`).
    fn link(&self, index: usize) -> &Link {
        let profile = self.link_of.get(index).map_or(0, |&p| p as usize);
        &self.profiles[profile]
    }

    /// Everything but the fast path; see the type's documentation for the order.
    #[inline(never)]
    fn route_slow(&mut self, index: usize, packet: &Packet, rng: &mut SimRng) -> Fate {
        // Across a cut, a message is lost, or (hold) sent anyway and held when it falls due
        // until the link heals, as a TCP connection would retransmit it.
        if self.on_cut == InFlight::Drop && !self.topology.can_send(packet.from, packet.to) {
            return Fate::Drop {
                reason: "partition",
            };
        }
        // The settings alone are borrowed: the link's state changes below.
        let link = &self.profiles[self.link_of.get(index).map_or(0, |&p| p as usize)];
        let sent_ns = packet.sent_at.as_nanos();
        let lost = link.loss > 0.0 && rng.random_bool(link.loss);
        let departs_ns = match link.bandwidth {
            Some(bandwidth) => {
                let state = &mut self.state[index];
                let start_ns = sent_ns.max(state.busy_until_ns);
                let done_ns = start_ns.saturating_add(bandwidth.serialization_ns(packet.bytes));
                state.busy_until_ns = done_ns;
                done_ns
            }
            None => sent_ns,
        };
        if lost {
            return Fate::Drop { reason: "loss" };
        }
        let propagation_ns = link
            .latency_base_ns
            .saturating_add(link.latency.sample(rng));
        let mut arrives_ns = departs_ns.saturating_add(propagation_ns);
        if link.reorder > 0.0 && rng.random_bool(link.reorder) {
            arrives_ns = arrives_ns.saturating_add(self.reorder_delay.sample(rng));
        }
        if self.fifo {
            let state = &mut self.state[index];
            arrives_ns = arrives_ns.max(state.last_arrival_ns);
            state.last_arrival_ns = arrives_ns;
        }
        let delay_ns = arrives_ns - sent_ns;
        if link.corrupt > 0.0 && rng.random_bool(link.corrupt) {
            return Fate::Corrupt { delay_ns };
        }
        if link.duplicate > 0.0 && rng.random_bool(link.duplicate) {
            let copy_propagation_ns = link
                .latency_base_ns
                .saturating_add(link.latency.sample(rng));
            let mut copy_arrives_ns = departs_ns.saturating_add(copy_propagation_ns);
            if self.fifo {
                // The copy keeps its place behind the original, and later messages behind it.
                copy_arrives_ns = copy_arrives_ns.max(arrives_ns);
                self.state[index].last_arrival_ns = copy_arrives_ns;
            }
            return Fate::Duplicate {
                delay_ns,
                copy_delay_ns: copy_arrives_ns - sent_ns,
            };
        }
        Fate::Deliver { delay_ns }
    }

    fn set_every_link(&mut self, set: impl Fn(&mut Link)) {
        self.profiles.iter_mut().for_each(set);
        self.refresh_fast_path();
    }
}

impl NetworkModel for Network {
    fn fifo(&self) -> bool {
        self.fifo
    }

    #[inline]
    fn route(&mut self, packet: &Packet, rng: &mut SimRng) -> Fate {
        let (from, to) = (packet.from.index(), packet.to.index());
        if from >= self.nodes || to >= self.nodes {
            return Fate::Drop {
                reason: "no such node",
            };
        }
        let index = from * self.nodes + to;
        let fast = match self.fast_delay_ns.get(index) {
            Some(&delay) => delay,
            None => self.uniform_delay_ns,
        };
        if fast != SLOW {
            return Fate::Deliver { delay_ns: fast };
        }
        self.route_slow(index, packet, rng)
    }

    /// A message due on a link that is cut now is dropped (`partition`) or held until the
    /// link heals, as [`NetConfig::on_cut`] says.
    #[inline]
    fn admit(&mut self, from: NodeId, to: NodeId, _now: Time) -> Admit {
        if self.topology.is_whole() || self.topology.can_send(from, to) {
            return Admit::Deliver;
        }
        match self.on_cut {
            InFlight::Drop => Admit::Drop {
                reason: "partition",
            },
            InFlight::Hold => Admit::Hold,
        }
    }

    /// Cuts accumulate until `Heal`, which restores every link. `SetLoss` and `SetLatency`
    /// set every link, overriding the matrix and per-link overrides of the configuration
    /// (a scenario's `set-latency` means "from now on, the network's latency is this");
    /// `Heal` does not undo them.
    fn apply(&mut self, change: &NetChange, _now: Time) -> Result<(), String> {
        match *change {
            NetChange::SetLoss { loss } => {
                if !(0.0..=1.0).contains(&loss) {
                    return Err(format!(
                        "`{change}`: loss must be a probability within 0..=1, got {loss}"
                    ));
                }
                self.set_every_link(|link| link.loss = loss);
            }
            NetChange::SetLatency { latency } => self.set_every_link(|link| {
                link.latency_base_ns = 0;
                link.latency = latency;
            }),
            _ => {
                self.topology.apply(change)?;
                self.refresh_fast_path();
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Network")
            .field("nodes", &self.nodes)
            .field("config", &self.config.to_string())
            .field("cut_links", &self.topology.cut_links().len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LinkOverride;

    #[test]
    fn links_with_the_same_settings_share_them_and_keep_state_only_when_needed() {
        // A thousand nodes, every link alike: one set of settings, no per-link state.
        let net = Network::new(&NetConfig::default(), 1000).unwrap();
        assert_eq!(net.profiles.len(), 1);
        assert!(
            net.link_of.is_empty(),
            "one set of settings needs no table of links"
        );
        assert!(
            net.fast_delay_ns.is_empty(),
            "nor a table of fast-path delays"
        );
        assert!(net.state.is_empty());
        // A cut needs per-link delays while it lasts; healed, the links are alike again.
        let mut net = Network::new(&NetConfig::default(), 3).unwrap();
        let mut rng = rehearsal_sim_core::derive_rng(1, "net", 0);
        let packet = |from, to| Packet {
            from: NodeId(from),
            to: NodeId(to),
            sent_at: Time::ZERO,
            bytes: 10,
        };
        let partition = NetChange::Partition {
            groups: vec![vec![NodeId(0), NodeId(1)], vec![NodeId(2)]],
        };
        net.apply(&partition, Time::ZERO).unwrap();
        assert_eq!(net.fast_delay_ns.len(), 9);
        let delivered = Fate::Deliver {
            delay_ns: 10_000_000,
        };
        assert_eq!(net.route(&packet(0, 1), &mut rng), delivered);
        assert_ne!(net.route(&packet(0, 2), &mut rng), delivered);
        net.apply(&NetChange::Heal, Time::ZERO).unwrap();
        assert!(net.fast_delay_ns.is_empty());
        assert_eq!(net.route(&packet(0, 2), &mut rng), delivered);
        // One override on the links into node 0: two sets, shared by row.
        let config = NetConfig {
            links: vec![LinkOverride {
                to: Some(vec![NodeId(0)]),
                loss: Some(0.5),
                ..LinkOverride::default()
            }],
            ..NetConfig::default()
        };
        let net = Network::new(&config, 50).unwrap();
        assert_eq!(net.profiles.len(), 2);
        assert_eq!(net.profiles[net.link_of[50] as usize].loss, 0.5);
        assert_eq!(net.profiles[net.link_of[51] as usize].loss, 0.0);
        // FIFO links remember their last arrival: state for every link.
        let config = NetConfig {
            mode: LinkMode::Fifo,
            ..NetConfig::default()
        };
        assert_eq!(Network::new(&config, 50).unwrap().state.len(), 2500);
    }
}
