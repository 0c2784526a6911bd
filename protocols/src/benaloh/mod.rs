//! Benaloh-style additive secret sharing and agreement on a sum, after the Gumby/Dispersy
//! workshop experiment.
//!
//! Each of n nodes holds a private value mod M. It splits the value into n random additive
//! shares mod M, keeps one and sends one to each peer (`Share`). Its *subset sum* is its kept
//! share plus every share it received; it broadcasts that (`SubsetSum`). The total of all n
//! subset sums is the sum of all private values mod M, which every node outputs.
//!
//! Two modes:
//! - [`Mode::Robust`]: each phase advances when what it needs has arrived, so the result is
//!   correct under any finite delay, reordering and duplication; and every share and
//!   subset sum is acknowledged and retransmitted until it is, so the run completes under
//!   any loss below 1 once the network heals. Retransmission backs off, doubling up to
//!   [`BACKOFF_DOUBLINGS_MAX`] times while no acknowledgement comes, and one period resends
//!   at most [`RETRANSMITS_PER_PERIOD_MAX`] messages, taking turns, so a node never floods
//!   a network that is down.
//! - [`Mode::Timed`]: faithful to the workshop's scenario file, phases fire on timers at
//!   fixed times (share at 30 s, subset sum at 45 s, output at 90 s) using whatever has
//!   arrived. Correct on a fast network; wrong when a message is slower than a phase gap.

use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{Actor, Context, EndReason, Invariant, NodeId, RunEnd, Time, TimerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

mod protocol;
pub use protocol::{Benaloh, BenalohTimed, Form, Params, Setup};

// ---- Messages -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// The sender's share for the receiver (the workshop's `local-share`).
    Share { value: u64 },
    /// The sender's subset sum (the workshop's `broadcast-share`).
    SubsetSum { value: u64 },
    /// Robust mode: the receiver's share arrived (sent for every copy, since an earlier
    /// acknowledgement may have been lost).
    ShareAck,
    /// Robust mode: the receiver's subset sum arrived.
    SubsetSumAck,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    Share,
    BroadcastSubsetSum,
    Output,
    /// Robust mode: resend what is not acknowledged yet.
    Retransmit,
}

/// Robust mode: the first retransmission comes this long after a send, unless
/// [`Node::retransmitting_after`] says otherwise (runners derive it from the network).
pub const RETRANSMIT_AFTER_DEFAULT: Duration = Duration::from_secs(1);
/// Robust mode: the retransmission period doubles while no acknowledgement arrives, at
/// most this many times (64 times the first period), and starts over at the first period
/// once one does: once a network heals, a node retries within that cap.
pub const BACKOFF_DOUBLINGS_MAX: u32 = 6;
/// Robust mode: messages one retransmission period resends at most. Those left over go
/// first in the next period, so every unacknowledged message gets its turn.
pub const RETRANSMITS_PER_PERIOD_MAX: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Output {
    /// The node's private value (the workshop prints it: "My secret value is 722").
    Secret { value: u64 },
    /// The node's computed sum of all private values ("My computed sum is 656").
    Total { value: u64 },
}

// ---- Configuration ----------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Robust,
    Timed {
        share_at: Duration,
        broadcast_at: Duration,
        output_at: Duration,
    },
}

impl Mode {
    /// The workshop's schedule: `@30 share_local`, `@45 share_subset_sum`,
    /// `@1:30 print_total_sum`.
    pub const WORKSHOP: Mode = Mode::Timed {
        share_at: Duration::from_secs(30),
        broadcast_at: Duration::from_secs(45),
        output_at: Duration::from_secs(90),
    };
}

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub nodes: u32,
    pub modulus: u64,
    pub mode: Mode,
}

/// The default modulus: the prime 2^31 - 1, so sums of two residues fit in a `u64`.
pub const MODULUS_DEFAULT: u64 = (1 << 31) - 1;

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    TooFewNodes(u32),
    BadModulus(u64),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigError::TooFewNodes(n) => {
                write!(
                    f,
                    "benaloh needs at least 2 nodes to share a secret, got {n}"
                )
            }
            ConfigError::BadModulus(m) => {
                write!(f, "benaloh modulus must be between 2 and 2^32, got {m}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// The actors of one run, or why the configuration cannot run.
pub fn actors(config: &Config) -> Result<Vec<Node>, ConfigError> {
    if config.nodes < 2 {
        return Err(ConfigError::TooFewNodes(config.nodes));
    }
    // Residues below 2^32 keep every sum of two of them inside a u64.
    if !(2..=1 << 32).contains(&config.modulus) {
        return Err(ConfigError::BadModulus(config.modulus));
    }
    Ok((0..config.nodes).map(|_| Node::new(*config)).collect())
}

// ---- State ------------------------------------------------------------------------------

#[derive(Clone)]
pub struct Node {
    config: Config,
    /// Learnt at start; used to explain a stall.
    me: Option<NodeId>,
    secret: u64,
    /// The share of our own secret that we keep.
    kept_share: Option<u64>,
    /// Shares received, by sender: at most one counted per peer.
    shares: ByNode,
    /// Subset sums known, by node (ours included once broadcast).
    subset_sums: ByNode,
    broadcast_done: bool,
    total: Option<u64>,
    /// Robust mode: what is sent and not acknowledged yet, and when to resend it.
    unacked: Unacked,
}

/// Values by node, one at most per node: a dense table, since a node hears from every
/// peer (at a thousand nodes, a million entries across the run, four bytes each rather
/// than a tree's forty). Its values are residues below the modulus, at most 2^32, so four
/// bytes hold them. Iterates and hashes as a `BTreeMap<NodeId, u64>` would.
#[derive(Clone, Default)]
struct ByNode {
    values: Vec<u32>,
    /// The nodes whose value `values` holds.
    present: NodeSet,
}

impl ByNode {
    fn get(&self, node: NodeId) -> Option<u64> {
        self.present
            .contains(node)
            .then(|| u64::from(self.values[node.index()]))
    }

    /// Keeps `value` for `node` unless it has one already; says whether it was kept.
    fn insert(&mut self, node: NodeId, value: u64) -> bool {
        if !self.present.insert(node) {
            return false;
        }
        let i = node.index();
        if self.values.len() <= i {
            self.values.resize(i + 1, 0);
        }
        self.values[i] = u32::try_from(value).expect("a residue below a modulus of at most 2^32");
        true
    }

    /// Forgets `node`'s value and returns it.
    fn remove(&mut self, node: NodeId) -> Option<u64> {
        let value = self.get(node)?;
        self.present.remove(node);
        Some(value)
    }

    fn len(&self) -> usize {
        self.present.len()
    }

    fn is_empty(&self) -> bool {
        self.present.is_empty()
    }

    fn iter(&self) -> impl Iterator<Item = (NodeId, u64)> + '_ {
        self.present
            .iter()
            .map(|node| (node, u64::from(self.values[node.index()])))
    }

    fn values(&self) -> impl Iterator<Item = u64> + '_ {
        self.iter().map(|(_, v)| v)
    }
}

impl std::hash::Hash for ByNode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.len());
        for entry in self.iter() {
            entry.hash(state);
        }
    }
}

impl std::fmt::Debug for ByNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

/// Nodes, each at most once: one bit per node. Iterates and hashes as a
/// `BTreeSet<NodeId>` would.
#[derive(Clone, Default)]
struct NodeSet {
    words: Vec<u64>,
    len: usize,
}

impl NodeSet {
    fn contains(&self, node: NodeId) -> bool {
        let i = node.index();
        self.words
            .get(i / 64)
            .is_some_and(|word| word >> (i % 64) & 1 == 1)
    }

    /// Adds `node`; says whether it was new.
    fn insert(&mut self, node: NodeId) -> bool {
        if self.contains(node) {
            return false;
        }
        let i = node.index();
        if self.words.len() <= i / 64 {
            self.words.resize(i / 64 + 1, 0);
        }
        self.words[i / 64] |= 1 << (i % 64);
        self.len += 1;
        true
    }

    /// Takes `node` out; says whether it was in.
    fn remove(&mut self, node: NodeId) -> bool {
        if !self.contains(node) {
            return false;
        }
        let i = node.index();
        self.words[i / 64] &= !(1 << (i % 64));
        self.len -= 1;
        true
    }

    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The nodes in increasing order.
    fn iter(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.words.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                Some(NodeId(w as u32 * 64 + bit))
            })
        })
    }
}

impl std::hash::Hash for NodeSet {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_usize(self.len);
        for node in self.iter() {
            node.hash(state);
        }
    }
}

/// Robust mode: the shares and subset sum a node sent that no acknowledgement answered yet.
#[derive(Clone)]
struct Unacked {
    /// Per peer: the share sent to it (resent unchanged: a new share would break the sum).
    shares: ByNode,
    /// Peers that have not acknowledged our subset sum.
    subset_sum: NodeSet,
    retransmit_after: Duration,
    /// Doublings of the retransmission period so far.
    backoff: u32,
    /// The retransmission timer, while one is set; cancelled once everything is
    /// acknowledged, so a finished node goes quiet at once.
    timer: Option<TimerId>,
    /// An acknowledgement arrived since the last retransmission: the network works.
    acked_since_retransmit: bool,
    /// Where the next retransmission period starts in the list of unacknowledged messages.
    turn: usize,
}

impl Unacked {
    fn new() -> Self {
        Unacked {
            shares: ByNode::default(),
            subset_sum: NodeSet::default(),
            retransmit_after: RETRANSMIT_AFTER_DEFAULT,
            backoff: 0,
            timer: None,
            acked_since_retransmit: false,
            turn: 0,
        }
    }

    fn is_empty(&self) -> bool {
        self.shares.is_empty() && self.subset_sum.is_empty()
    }
}

impl Node {
    fn new(config: Config) -> Self {
        Node {
            config,
            me: None,
            secret: 0,
            kept_share: None,
            shares: ByNode::default(),
            subset_sums: ByNode::default(),
            broadcast_done: false,
            total: None,
            unacked: Unacked::new(),
        }
    }

    /// Robust mode: the first retransmission comes `after` a send (it should exceed a
    /// round trip, or messages are resent needlessly: harmless, but wasteful).
    pub fn retransmitting_after(mut self, after: Duration) -> Self {
        self.unacked.retransmit_after = after.max(Duration::from_nanos(1));
        self
    }

    fn add(&self, a: u64, b: u64) -> u64 {
        (a + b) % self.config.modulus
    }

    fn peers(&self, me: NodeId) -> impl Iterator<Item = NodeId> {
        (0..self.config.nodes).map(NodeId).filter(move |&n| n != me)
    }

    /// Splits the secret into n shares, keeps ours, sends one to each peer.
    fn share(&mut self, cx: &mut Context<Self>) {
        let m = self.config.modulus;
        let me = cx.me();
        let mut rest = self.secret;
        for peer in self.peers(me).collect::<Vec<_>>() {
            let share = cx.rng().random_range(0..m);
            rest = (rest + m - share) % m;
            cx.send(peer, Msg::Share { value: share });
            if self.robust() {
                self.unacked.shares.insert(peer, share);
            }
        }
        self.kept_share = Some(rest);
        cx.annotate("shares sent");
        cx.enter_round(self.phase());
        self.arm_retransmit(cx);
    }

    fn broadcast_subset_sum(&mut self, cx: &mut Context<Self>) {
        let kept = self.kept_share.unwrap_or(0);
        let subset = self.shares.values().fold(kept, |acc, s| self.add(acc, s));
        self.subset_sums.insert(cx.me(), subset);
        self.broadcast_done = true;
        cx.enter_round(self.phase());
        let peers: Vec<NodeId> = self.peers(cx.me()).collect();
        if self.robust() {
            for &peer in &peers {
                self.unacked.subset_sum.insert(peer);
            }
        }
        cx.broadcast(peers, Msg::SubsetSum { value: subset });
        cx.annotate(format!(
            "subset sum broadcast ({} of {} shares)",
            self.shares.len() + 1,
            self.config.nodes
        ));
        self.arm_retransmit(cx);
    }

    /// Robust mode: keep one retransmission timer running while anything is unacknowledged.
    fn arm_retransmit(&mut self, cx: &mut Context<Self>) {
        if !self.robust() || self.unacked.timer.is_some() || self.unacked.is_empty() {
            return;
        }
        let period = self.unacked.retransmit_after * (1 << self.unacked.backoff);
        self.unacked.timer = Some(cx.set_timer(period, Timer::Retransmit));
    }

    /// Robust mode: an acknowledgement from `from` of what `acked` says.
    fn on_ack(&mut self, from: NodeId, acked: Msg, cx: &mut Context<Self>) {
        let fresh = match acked {
            Msg::ShareAck => self.unacked.shares.remove(from).is_some(),
            _ => self.unacked.subset_sum.remove(from),
        };
        self.unacked.acked_since_retransmit |= fresh;
        if self.unacked.is_empty() {
            if let Some(timer) = self.unacked.timer.take() {
                cx.cancel_timer(timer);
            }
        }
    }

    /// Robust mode: resend up to [`RETRANSMITS_PER_PERIOD_MAX`] unacknowledged messages,
    /// taking turns with those left over last time; back off if nothing was acknowledged
    /// since the last period, start over from the first period if something was.
    fn retransmit(&mut self, cx: &mut Context<Self>) {
        self.unacked.timer = None;
        // Our subset sum is known from the moment it is broadcast, before anyone owes us
        // an acknowledgement of it.
        let own_sum = self.subset_sums.get(cx.me());
        assert!(
            own_sum.is_some() || self.unacked.subset_sum.is_empty(),
            "a subset sum awaits acknowledgement before it was computed"
        );
        let pending: Vec<(NodeId, Msg)> = self
            .unacked
            .shares
            .iter()
            .map(|(peer, value)| (peer, Msg::Share { value }))
            .chain(
                self.unacked
                    .subset_sum
                    .iter()
                    .filter_map(|peer| own_sum.map(|value| (peer, Msg::SubsetSum { value }))),
            )
            .collect();
        if pending.is_empty() {
            return;
        }
        let start = self.unacked.turn % pending.len();
        let count = pending.len().min(RETRANSMITS_PER_PERIOD_MAX);
        for (peer, msg) in pending.iter().cycle().skip(start).take(count) {
            cx.send(*peer, msg.clone());
        }
        self.unacked.turn = start + count;
        self.unacked.backoff = if self.unacked.acked_since_retransmit {
            0
        } else {
            (self.unacked.backoff + 1).min(BACKOFF_DOUBLINGS_MAX)
        };
        self.unacked.acked_since_retransmit = false;
        self.arm_retransmit(cx);
    }

    fn output_total(&mut self, cx: &mut Context<Self>) {
        let total = self
            .subset_sums
            .values()
            .fold(0, |acc, s| self.add(acc, s));
        self.total = Some(total);
        cx.output(Output::Total { value: total });
        cx.enter_round(self.phase());
    }

    /// The phase this node is in, its round for traces and round-triggered scenarios:
    /// 0 before it shares its secret, 1 once it sent its shares, 2 once it broadcast its
    /// subset sum, 3 once it output the total.
    pub fn phase(&self) -> u64 {
        if self.total.is_some() {
            3
        } else if self.broadcast_done {
            2
        } else if self.kept_share.is_some() {
            1
        } else {
            0
        }
    }

    /// Robust mode: advance every phase whose inputs are complete.
    fn advance(&mut self, cx: &mut Context<Self>) {
        let n = self.config.nodes as usize;
        if !self.broadcast_done && self.kept_share.is_some() && self.shares.len() == n - 1 {
            self.broadcast_subset_sum(cx);
        }
        if self.broadcast_done && self.total.is_none() && self.subset_sums.len() == n {
            self.output_total(cx);
        }
    }

    fn robust(&self) -> bool {
        self.config.mode == Mode::Robust
    }
}

// ---- Handlers ---------------------------------------------------------------------------

/// The explorer copies a node and tells its states apart by what changes in a run (the
/// configuration and the retransmission timer's id do not decide anything new).
impl rehearsal_sim_core::explore::Explorable for Node {
    fn fingerprint(&self, h: &mut rehearsal_sim_core::explore::Fingerprinter) {
        let u = &self.unacked;
        h.value(&(
            self.me,
            self.secret,
            self.kept_share,
            &self.shares,
            &self.subset_sums,
            self.broadcast_done,
            self.total,
        ));
        h.value(&(&u.shares, &u.subset_sum, u.backoff, u.timer.is_some(), u.acked_since_retransmit, u.turn));
    }
}

impl Actor for Node {
    type Msg = Msg;
    type Timer = Timer;
    type Output = Output;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        self.me = Some(cx.me());
        self.secret = cx.rng().random_range(0..self.config.modulus);
        cx.output(Output::Secret { value: self.secret });
        cx.enter_round(self.phase());
        match self.config.mode {
            Mode::Robust => {
                self.share(cx);
                self.advance(cx);
            }
            Mode::Timed {
                share_at,
                broadcast_at,
                output_at,
            } => {
                cx.set_timer(share_at, Timer::Share);
                cx.set_timer(broadcast_at, Timer::BroadcastSubsetSum);
                cx.set_timer(output_at, Timer::Output);
            }
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<Self>) {
        if from.0 >= self.config.nodes || from == cx.me() {
            cx.annotate(format!("ignored {msg:?} from {from}, not a peer"));
            return;
        }
        // At most one share and one subset sum count per peer: duplicates are ignored,
        // but acknowledged again (the first acknowledgement may have been lost).
        let fresh = match msg {
            Msg::Share { value } => {
                if self.robust() {
                    cx.send(from, Msg::ShareAck);
                }
                self.shares.insert(from, value % self.config.modulus)
            }
            Msg::SubsetSum { value } => {
                if self.robust() {
                    cx.send(from, Msg::SubsetSumAck);
                }
                self.subset_sums.insert(from, value % self.config.modulus)
            }
            ack @ (Msg::ShareAck | Msg::SubsetSumAck) => {
                self.on_ack(from, ack, cx);
                false
            }
        };
        if fresh && self.robust() {
            self.advance(cx);
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Self>) {
        match timer {
            Timer::Share => self.share(cx),
            Timer::BroadcastSubsetSum => self.broadcast_subset_sum(cx),
            Timer::Output => self.output_total(cx),
            Timer::Retransmit => self.retransmit(cx),
        }
    }

    fn message_kind(msg: &Msg) -> &'static str {
        match msg {
            Msg::Share { .. } => "share",
            Msg::SubsetSum { .. } => "subset-sum",
            Msg::ShareAck => "share-ack",
            Msg::SubsetSumAck => "subset-sum-ack",
        }
    }

    /// The phase ([`Node::phase`]) and whether the node is in robust mode, above a high
    /// bit: eight values in all.
    fn abstract_state(&self) -> u64 {
        1 << 63 | u64::from(self.robust()) << 2 | self.phase()
    }

    fn waiting_for(&self) -> Option<String> {
        if self.total.is_some() {
            return None;
        }
        let me = self.me?;
        let (what, have) = if self.broadcast_done {
            ("subset sums", &self.subset_sums)
        } else {
            ("shares", &self.shares)
        };
        let missing: Vec<String> = self
            .peers(me)
            .filter(|&p| have.get(p).is_none())
            .map(|p| p.to_string())
            .collect();
        Some(format!("{what} from {}", missing.join(", ")))
    }
}

// ---- Invariants -------------------------------------------------------------------------

/// Every node outputs exactly one total, and it equals the sum of all private values mod M.
pub struct CorrectSum {
    nodes: u32,
    modulus: u64,
    secrets: BTreeMap<NodeId, u64>,
    totals: BTreeMap<NodeId, u64>,
}

impl CorrectSum {
    pub fn new(config: &Config) -> Self {
        CorrectSum {
            nodes: config.nodes,
            modulus: config.modulus,
            secrets: BTreeMap::new(),
            totals: BTreeMap::new(),
        }
    }

    fn expected(&self) -> Option<u64> {
        (self.secrets.len() == self.nodes as usize).then(|| {
            self.secrets
                .values()
                .fold(0, |acc, &s| (acc + s) % self.modulus)
        })
    }
}

impl Invariant<Node> for CorrectSum {
    fn name(&self) -> &str {
        "correct-sum"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        match *output {
            Output::Secret { value } => {
                if self.secrets.insert(node, value).is_some() {
                    return Err(format!("{node} announced its private value twice"));
                }
            }
            Output::Total { value } => {
                if self.totals.insert(node, value).is_some() {
                    return Err(format!("{node} output a total twice"));
                }
                // Every node announces its value at start, before any total can exist.
                let Some(expected) = self.expected() else {
                    return Err(format!(
                        "{node} output a total before every node had a private value"
                    ));
                };
                if value != expected {
                    return Err(format!(
                        "{node} output total {value}, but the private values sum to {expected} mod {}",
                        self.modulus
                    ));
                }
            }
        }
        Ok(())
    }

    fn at_end(&mut self, end: &RunEnd<'_, Node>) -> Result<(), String> {
        let silent: Vec<NodeId> = (0..self.nodes)
            .map(NodeId)
            .filter(|n| !self.totals.contains_key(n))
            .collect();
        if silent.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = silent.iter().map(NodeId::to_string).collect();
        let mut report = format!("no total from {}", names.join(", "));
        // A run that went quiet gets a stall report of what each node waits for; one that
        // ran into its deadline (robust nodes retransmit into a network that stays down)
        // gets the same account here.
        if end.reason != EndReason::Quiescent {
            let waiting: Vec<String> = silent
                .iter()
                .filter_map(|&n| {
                    let what = end.actors.get(n.index())?.waiting_for()?;
                    Some(format!("{n} waits for {what}"))
                })
                .collect();
            let when = match end.reason {
                EndReason::Deadline => "at the deadline",
                EndReason::EventLimit => "at the event limit",
                _ => "at the end",
            };
            if !waiting.is_empty() {
                let _ = write!(report, "; {when}, {}", waiting.join("; "));
            }
        }
        Err(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{Hash, Hasher};

    fn hash_of(value: &impl Hash) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        value.hash(&mut h);
        h.finish()
    }

    #[test]
    fn values_by_node_keep_the_first_value_and_read_as_a_sorted_map() {
        let mut table = ByNode::default();
        let mut map = BTreeMap::new();
        for (node, value) in [(70, 5), (3, 9), (70, 6), (0, 1), (130, 2)] {
            let kept = table.insert(NodeId(node), value);
            assert_eq!(kept, !map.contains_key(&NodeId(node)), "node {node}");
            map.entry(NodeId(node)).or_insert(value);
        }
        assert_eq!(table.len(), 4);
        assert_eq!(table.get(NodeId(70)), Some(5));
        assert_eq!(table.get(NodeId(4)), None);
        assert_eq!(table.get(NodeId(500)), None);
        let entries: Vec<(NodeId, u64)> = map.iter().map(|(&k, &v)| (k, v)).collect();
        assert_eq!(table.iter().collect::<Vec<_>>(), entries);
        // The explorer's fingerprints are those of the map it replaces.
        assert_eq!(hash_of(&table), hash_of(&map));
        assert_eq!(format!("{table:?}"), format!("{map:?}"));
        // Removing, as acknowledgements do.
        assert_eq!(table.remove(NodeId(70)), Some(5));
        assert_eq!(table.remove(NodeId(70)), None);
        map.remove(&NodeId(70));
        assert_eq!(table.len(), 3);
        assert_eq!(hash_of(&table), hash_of(&map));
        assert!(table.insert(NodeId(70), 8), "a removed node's value is kept again");
    }

    #[test]
    fn a_set_of_nodes_reads_and_hashes_as_a_sorted_set() {
        let mut nodes = NodeSet::default();
        let mut set = std::collections::BTreeSet::new();
        for node in [9, 2, 200, 9, 64] {
            assert_eq!(nodes.insert(NodeId(node)), set.insert(NodeId(node)));
        }
        assert!(nodes.remove(NodeId(2)) && set.remove(&NodeId(2)));
        assert!(!nodes.remove(NodeId(2)));
        assert_eq!(nodes.iter().collect::<Vec<_>>(), set.iter().copied().collect::<Vec<_>>());
        assert_eq!(hash_of(&nodes), hash_of(&set));
        for node in [9, 200, 64] {
            nodes.remove(NodeId(node));
        }
        assert!(nodes.is_empty());
    }
}
