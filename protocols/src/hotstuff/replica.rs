//! A HotStuff replica: the paper's chained protocol (proposals, the safe-node rule, votes
//! to the next leader, `update` with its 2-chain lock and 3-chain commit), the
//! pacemaker (view timer, timeouts, timeout certificates, new-view synchronisation), block
//! fetching, execution and replies. See the [module](super) documentation for the whole.

use super::messages::{
    leader_of, view_after_tc, Block, Msg, Proposal, Qc, Tc, Timeout, View, Vote, TERM,
};
use super::{
    Behavior, Config, Execution, LoadReason, NodeWith, Output, TestSeam, Timer,
    VIEW_TIMEOUT_DOUBLINGS_MAX,
};
use crate::crypto::{Crypto, Digest, Signature};
use crate::pbft::app::{KvStore, ReplyCache};
use crate::pbft::messages::{Reply, Request};
use rehearsal_sim_core::{Context, NodeId, TimerId};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

/// Most blocks one answer to a fetch carries: the block asked for and its ancestors.
pub const FETCH_BLOCKS_MAX: usize = 32;

/// Committed blocks a replica keeps below its last committed one, to answer the fetches of
/// replicas that fell behind; older ones are dropped (every `PRUNE_EVERY` commits), which
/// bounds a long run's memory. A replica that falls further behind than this cannot catch
/// up: there is no state transfer yet, and it counts as one of the f faulty ones.
pub const BLOCKS_KEPT: u64 = 16_384;

/// How often (in committed blocks) old blocks are dropped.
const PRUNE_EVERY: u64 = 4_096;

/// Blocks kept at hand for lookups besides the tree (see `Replica::recent`).
const RECENT_BLOCKS: usize = 8;

/// How often (in committed blocks) a replica re-encodes the committed state it saves: the
/// safety state is saved with every vote, the committed state (block, store, replies) at
/// most this many blocks late. A replica that restarts from it commits the blocks since
/// again, fetched from the others (who keep `BLOCKS_KEPT` of them), as PBFT replicas
/// replay the log above their last checkpoint.
const SNAPSHOT_EVERY: u64 = 16;

/// How far below its highest QC a `stale-qc` leader forks.
const STALE_DEPTH: usize = 3;

///
/// Its serde encoding (what it is, leaving out what never changes in a run and what only
/// caches or saves it) is its fingerprint for the explorer.
#[derive(Clone, Serialize)]
pub struct Replica<S: TestSeam> {
    #[serde(skip)]
    crypto: Crypto,
    #[serde(skip)]
    n: u32,
    #[serde(skip)]
    f: u32,
    #[serde(skip)]
    batch_max: usize,
    #[serde(skip)]
    view_timeout: Duration,
    #[serde(skip)]
    seam: S,
    /// Leaders the testbed chose for some views ([`Config::leaders`]).
    #[serde(skip)]
    leaders: Arc<BTreeMap<View, NodeId>>,

    // What the safety rules rest on (saved before every vote).
    /// The view this replica is in.
    view: View,
    /// The highest view it voted in (or timed out of).
    last_voted: View,
    /// The QC of the block it is locked on.
    locked_qc: Qc,
    /// The highest QC it knows.
    high_qc: Qc,

    // The block tree.
    blocks: BTreeMap<Digest, Arc<Block>>,
    /// The blocks added last, newest first: nearly every lookup is of one of these (the
    /// tip and its few ancestors), and a scan of a handful beats the tree's key compares.
    #[serde(skip)]
    recent: Vec<Arc<Block>>,
    /// The last block it committed (and executed).
    committed: Arc<Block>,
    store: KvStore,
    replies: ReplyCache,

    // Leading.
    /// Votes it collects as the next view's leader, by (view, block).
    votes: BTreeMap<(View, Digest), Vec<(u32, Signature)>>,
    /// The highest view it proposed in.
    proposed: View,

    // The pacemaker.
    timeouts: BTreeMap<View, Vec<Arc<Timeout>>>,
    last_tc: Option<Arc<Tc>>,
    /// Consecutive timeouts without a commit: the view timer doubles with each.
    backoff: u32,
    #[serde(skip)]
    view_timer: Option<(View, TimerId)>,
    /// The re-send timer of the current view.
    #[serde(skip)]
    resend_timer: Option<(View, TimerId)>,
    /// Its latest proposal, its latest vote (with where it went), its latest timeout:
    /// re-sent while their view lasts, against loss.
    last_proposal: Option<Arc<Proposal>>,
    last_vote: Option<(NodeId, Vote)>,
    last_timeout: Option<Arc<Timeout>>,

    /// Client requests not executed yet, by (client, number).
    pending: BTreeMap<(u32, u64), Arc<Request>>,
    /// Blocks asked for and not received yet.
    requested: BTreeSet<Digest>,
    /// (view, block) of the certificates this replica checked already: a QC arrives in
    /// a proposal, then again in timeouts and new-view messages.
    #[serde(skip)]
    verified: BTreeSet<(View, Digest)>,
    /// Proposals waiting for an ancestor to arrive.
    stashed: Vec<(NodeId, Arc<Proposal>)>,
    /// Restarted from durable state: it says so when it starts.
    restored: bool,
    /// The lock moved since the durable state was last saved: saved before the event ends.
    unsaved_lock: bool,
    /// The committed state as last encoded ([`Snapshot`]), saved with each vote.
    #[serde(skip)]
    snapshot: Vec<u8>,
    /// The height of the committed block in `snapshot`.
    #[serde(skip)]
    snapshot_height: u64,
}

/// What a replica saves with `Context::persist` before every vote and timeout, and when its
/// lock moves; written from borrowed fields ([`DurableRef`]), read back owned. The
/// committed state rides along as the bytes of a [`Snapshot`], re-encoded only every
/// `SNAPSHOT_EVERY` commits.
#[derive(Deserialize)]
struct Durable {
    view: View,
    last_voted: View,
    locked_qc: Qc,
    high_qc: Qc,
    snapshot: Vec<u8>,
}

/// Whether `bytes` decode as the durable state a replica saves.
pub(super) fn durable_decodes(bytes: &[u8]) -> bool {
    rehearsal_sim_core::codec::decode::<Durable>(bytes).is_ok()
}

/// [`Durable`] as it is written: the same fields, borrowed, so that saving copies nothing.
#[derive(Serialize)]
struct DurableRef<'a> {
    view: View,
    last_voted: View,
    locked_qc: &'a Qc,
    high_qc: &'a Qc,
    snapshot: EncodedBytes<'a>,
}

/// The committed state: the last committed block and the application after it.
#[derive(Deserialize)]
struct Snapshot {
    committed: Block,
    store: KvStore,
    replies: ReplyCache,
}

/// [`Snapshot`] as it is written.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    committed: &'a Block,
    store: &'a KvStore,
    replies: &'a ReplyCache,
}

/// Bytes written as one byte string (a length and a copy), which reads back as a
/// `Vec<u8>`.
struct EncodedBytes<'a>(&'a [u8]);

impl Serialize for EncodedBytes<'_> {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.serialize_bytes(self.0)
    }
}

impl<S: TestSeam> Replica<S> {
    /// A replica of `config`'s group holding `crypto`; with `durable` (what it saved
    /// before a crash), it resumes from there.
    pub fn new(config: &Config, crypto: Crypto, durable: Option<&[u8]>) -> Self {
        let genesis = Arc::new(Block::genesis());
        let mut replica = Replica {
            crypto,
            n: config.replicas(),
            f: config.f,
            batch_max: config.batch_max,
            view_timeout: config.view_timeout,
            seam: S::for_config(config),
            leaders: Arc::new(config.leaders.clone()),
            view: 1,
            last_voted: 0,
            locked_qc: Qc::genesis(),
            high_qc: Qc::genesis(),
            blocks: BTreeMap::from([(genesis.hash, Arc::clone(&genesis))]),
            recent: vec![Arc::clone(&genesis)],
            committed: genesis,
            store: KvStore::new(config.keys),
            replies: ReplyCache::new(config.clients),
            votes: BTreeMap::new(),
            proposed: 0,
            timeouts: BTreeMap::new(),
            last_tc: None,
            backoff: 0,
            view_timer: None,
            resend_timer: None,
            last_proposal: None,
            last_vote: None,
            last_timeout: None,
            pending: BTreeMap::new(),
            requested: BTreeSet::new(),
            verified: BTreeSet::new(),
            stashed: Vec::new(),
            restored: false,
            unsaved_lock: false,
            snapshot: Vec::new(),
            snapshot_height: 0,
        };
        if let Some(d) = durable.and_then(|b| rehearsal_sim_core::codec::decode::<Durable>(b).ok())
        {
            replica.view = d.view.max(1);
            replica.last_voted = d.last_voted;
            replica.locked_qc = d.locked_qc;
            replica.high_qc = d.high_qc;
            replica.restored = true;
            // Without a snapshot it starts from the genesis state and commits the whole
            // chain again: slower, never unsafe (its votes and lock are restored above).
            if let Ok(snapshot) = rehearsal_sim_core::codec::decode::<Snapshot>(&d.snapshot) {
                let committed = Arc::new(snapshot.committed);
                replica.blocks.insert(committed.hash, Arc::clone(&committed));
                replica.committed = committed;
                replica.store = snapshot.store;
                replica.replies = snapshot.replies;
            }
        }
        replica.take_snapshot();
        replica
    }

    // ---- Reading the state ---------------------------------------------------------------

    pub fn me(&self) -> NodeId {
        self.crypto.me()
    }

    pub fn view(&self) -> View {
        self.view
    }

    pub fn locked_qc(&self) -> &Qc {
        &self.locked_qc
    }

    pub fn high_qc(&self) -> &Qc {
        &self.high_qc
    }

    /// The height of the last block it committed.
    pub fn committed_height(&self) -> u64 {
        self.committed.height
    }

    pub fn store(&self) -> &KvStore {
        &self.store
    }

    /// Test-only: `msg`, which this replica sends, changed by one step and signed again
    /// with its key ([`super::mutation`]).
    pub(super) fn mutate_message(&self, msg: &mut Msg, rng: &mut rehearsal_sim_core::SimRng) -> Option<String> {
        let clients = self.replies.len() as u32;
        super::mutation::mutate_signed(msg, &self.crypto, self.n, clients, rng)
    }

    /// A coarse summary of this replica's state for coverage-guided search, below a high
    /// bit. Views grow with every block in chained HotStuff, so the summary says where the
    /// replica stands rather than which view it is in: bits 0-1 the view's place in its
    /// leader's term; bit 2 it leads this view; bit 3 it voted (or timed out) in this view;
    /// bits 4-5 how many views its highest QC lags behind the view before (0 when the
    /// chain is live, capped at 3); bits 6-7 how far its lock lags behind its highest QC
    /// (capped at 3); bit 8 it holds a lock (not the genesis QC); bit 9 it sent a timeout
    /// of this view; bits 10-11 its view timer's backoff (capped at 3); bit 12 it waits for
    /// fetched blocks; bit 13 it entered this view on a timeout certificate.
    pub(super) fn abstract_state(&self) -> u64 {
        let view = self.view;
        let timed_out = self.last_timeout.as_ref().is_some_and(|t| t.view == view);
        let qc_lag = view.saturating_sub(self.high_qc.view + 1).min(3);
        let lock_lag = self.high_qc.view.saturating_sub(self.locked_qc.view).min(3);
        let on_tc = self.last_tc.as_ref().is_some_and(|tc| tc.view + 1 >= view);
        1 << 63
            | (view % TERM)
            | u64::from(self.leader(view) == self.me()) << 2
            | u64::from(self.last_voted >= view) << 3
            | qc_lag << 4
            | lock_lag << 6
            | u64::from(!self.locked_qc.is_genesis()) << 8
            | u64::from(timed_out) << 9
            | u64::from(self.backoff.min(3)) << 10
            | u64::from(!self.requested.is_empty()) << 12
            | u64::from(on_tc) << 13
    }

    /// The leader of `view`: the testbed's choice if it made one, else round-robin.
    fn leader(&self, view: View) -> NodeId {
        match self.leaders.get(&view) {
            Some(&chosen) => chosen,
            None => leader_of(view, self.n),
        }
    }

    fn others(&self) -> Vec<NodeId> {
        let me = self.me();
        (0..self.n).map(NodeId).filter(|&r| r != me).collect()
    }

    fn is_client(&self, node: NodeId) -> bool {
        node.0 >= self.n && ((node.0 - self.n) as usize) < self.replies.len()
    }

    fn client_index(&self, client: NodeId) -> usize {
        (client.0 - self.n) as usize
    }

    fn send(&mut self, cx: &mut Context<NodeWith<S>>, to: Vec<NodeId>, msg: Msg) {
        if !to.is_empty() {
            self.seam.send(&self.crypto, cx, to, msg);
        }
    }

    fn drop_msg(&self, cx: &mut Context<NodeWith<S>>, what: &str, from: NodeId, why: &str) {
        cx.annotate(format!("drop {what} from {from}: {why}"));
    }

    // ---- Events ----------------------------------------------------------------------------

    pub(super) fn on_start(&mut self, cx: &mut Context<NodeWith<S>>) {
        cx.enter_round(self.view);
        if self.restored {
            cx.output(Output::StateLoaded {
                height: self.committed.height,
                block: self.committed.hash,
                reason: LoadReason::Restart,
                executed: self
                    .replies
                    .executed()
                    .map(|(i, number)| (NodeId(self.n + i as u32), number))
                    .collect(),
            });
            // Tell the others where it is, so that one of them answers with newer
            // certificates if it fell behind.
            let others = self.others();
            let msg = Msg::NewView {
                high_qc: self.high_qc.clone(),
                tc: self.last_tc.clone(),
            };
            self.send(cx, others.clone(), msg);
            // The block of its highest QC went with the crash (only the committed one is
            // saved): any of the others has it.
            if !self.has_block(&self.high_qc.block) {
                self.requested.insert(self.high_qc.block);
                let fetch = Msg::Fetch {
                    block: self.high_qc.block,
                };
                self.send(cx, others, fetch);
            }
        }
        self.arm_view_timer(cx);
    }

    pub(super) fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<NodeWith<S>>) {
        self.seam.announce(cx);
        match msg {
            Msg::Request(request) => self.on_request(from, request, cx),
            Msg::Proposal(proposal) => self.on_proposal(from, proposal, cx),
            Msg::Vote(vote) => self.on_vote(from, &vote, cx),
            Msg::Timeout(timeout) => self.on_timeout_msg(from, timeout, true, cx),
            Msg::TimeoutAnswer(timeout) => self.on_timeout_msg(from, timeout, false, cx),
            Msg::NewView { high_qc, tc } => self.on_new_view(from, high_qc, tc, cx),
            Msg::Fetch { block } => self.on_fetch(from, block, cx),
            Msg::Blocks(blocks) => self.on_blocks(from, blocks, cx),
            Msg::Reply(_) => self.drop_msg(cx, "reply", from, "replicas take no replies"),
        }
        self.save_lock(cx);
        self.arm_view_timer(cx);
    }

    fn on_request(&mut self, from: NodeId, request: Arc<Request>, cx: &mut Context<NodeWith<S>>) {
        if !self.is_client(request.client) {
            return self.drop_msg(cx, "request", from, "not from a client");
        }
        if from != request.client {
            return self.drop_msg(cx, "request", from, "sent on behalf of another client");
        }
        if !request.verify(&self.crypto) {
            return self.drop_msg(cx, "request", from, "bad client signature");
        }
        let (last, result) = self.replies.get(self.client_index(from)).unwrap_or((0, 0));
        if request.number <= last {
            if request.number == last {
                // The client missed our reply: send it again, do not execute again.
                self.reply(cx, from, self.committed.view, last, result);
            }
            return;
        }
        self.pending.insert((from.0, request.number), request);
        self.propose_if_leader(cx);
    }

    /// The paper's `onReceiveProposal`: check the proposal, bring its certificates in
    /// (`update`), and vote if the safe-node rule allows.
    fn on_proposal(&mut self, from: NodeId, proposal: Arc<Proposal>, cx: &mut Context<NodeWith<S>>) {
        let block = &proposal.block;
        if from != self.leader(block.view) {
            return self.drop_msg(cx, "proposal", from, "not the leader of its view");
        }
        // Its own proposal, a leader made right: nothing to check.
        if from != self.me() {
            if let Err(why) = self.check_proposal(&proposal) {
                return self.drop_msg(cx, "proposal", from, &why);
            }
        }
        if let Some(tc) = &proposal.tc {
            self.process_tc(Arc::clone(tc), cx);
        }
        self.process_qc(&block.justify, from, cx);
        let Some(parent) = self.block(&block.parent).cloned() else {
            self.fetch(cx, from, block.parent);
            self.stashed.push((from, proposal));
            return;
        };
        if block.height != parent.height + 1 {
            return self.drop_msg(cx, "proposal", from, "its height is not its parent's plus one");
        }
        if let Err(why) = self.check_requests(&block.batch) {
            return self.drop_msg(cx, "proposal", from, &why);
        }
        let block = Arc::clone(block);
        self.add_block(Arc::clone(&block));
        // The parent is here now: its certificate's chain can lock and commit.
        self.update(&block.justify.clone(), from, cx);
        self.vote_if_safe(&block, cx);
    }

    /// What is checked of a proposal before anything of it is believed.
    fn check_proposal(&mut self, proposal: &Proposal) -> Result<(), String> {
        let block = &proposal.block;
        if !proposal.signed_by_leader(&self.crypto, self.n) {
            return Err("bad leader signature".into());
        }
        if !block.hash_is_right() {
            return Err("its hash is not the hash of its contents".into());
        }
        if block.parent != block.justify.block {
            return Err("it does not extend the block its QC certifies".into());
        }
        if block.view <= block.justify.view {
            return Err("its view is not above its QC's".into());
        }
        if block.height == 0 {
            return Err("height 0 is the genesis block's".into());
        }
        self.check_qc(&block.justify)
            .map_err(|e| format!("its QC: {e}"))?;
        if let Some(tc) = &proposal.tc {
            self.check_tc(tc)?;
            if view_after_tc(tc.view) != block.view {
                return Err(format!(
                    "its TC is of view {}, which moves on to view {}, not {}",
                    tc.view,
                    view_after_tc(tc.view),
                    block.view
                ));
            }
        }
        Ok(())
    }

    /// Checks a QC, once per (view, block): one that certifies what an already checked QC
    /// does claims nothing new.
    fn check_qc(&mut self, qc: &Qc) -> Result<(), String> {
        if self.verified.contains(&(qc.view, qc.block)) {
            return Ok(());
        }
        let quorum = self.seam.qc_quorum(self.f);
        // What the check depends on besides the certificate and the verifier: the quorum
        // (`n` is the verifier's). A quorum too large to name is checked every time.
        match u8::try_from(quorum) {
            Ok(purpose) => {
                let mut why = None;
                let valid = qc.verified(&self.crypto, purpose, |qc| {
                    why = qc.verify(&self.crypto, self.n, quorum).err();
                    why.is_none()
                });
                if !valid {
                    return Err(why.unwrap_or_default());
                }
            }
            Err(_) => qc.verify(&self.crypto, self.n, quorum)?,
        }
        self.verified.insert((qc.view, qc.block));
        Ok(())
    }

    fn check_tc(&self, tc: &Tc) -> Result<(), String> {
        tc.verify(
            &self.crypto,
            self.n,
            self.seam.tc_quorum(self.f),
            self.seam.qc_quorum(self.f),
        )
        .map_err(|e| format!("its TC: {e}"))
    }

    /// Every request of a batch must come from a client, signed by it; a request this
    /// replica already holds (checked when it arrived) is not checked again.
    fn check_requests(&self, batch: &[Request]) -> Result<(), String> {
        for request in batch {
            if !self.is_client(request.client) {
                return Err(format!("a request of {}, which is not a client", request.client));
            }
            let known = self
                .pending
                .get(&(request.client.0, request.number))
                .is_some_and(|r| **r == *request);
            if !known && !request.verify(&self.crypto) {
                return Err(format!(
                    "request {} of {} has a bad signature",
                    request.number, request.client
                ));
            }
        }
        Ok(())
    }

    /// Votes for `block` if it is of this replica's view, the replica has not voted in that
    /// view, and the safe-node rule holds; then moves on to the next view.
    fn vote_if_safe(&mut self, block: &Arc<Block>, cx: &mut Context<NodeWith<S>>) {
        if block.view != self.view {
            return cx.annotate(format!(
                "no vote for {} of view {}: this replica is in view {}",
                block.hash, block.view, self.view
            ));
        }
        if self.seam.votes_once_per_view() && block.view <= self.last_voted {
            return cx.annotate(format!(
                "no vote for {} of view {}: already voted in view {}",
                block.hash, block.view, self.last_voted
            ));
        }
        if self.seam.honours_lock() && !self.safe_node(block) {
            return cx.annotate(format!(
                "no vote for {}: it neither extends the locked block {} nor has a QC newer than view {}",
                block.hash, self.locked_qc.block, self.locked_qc.view
            ));
        }
        self.last_voted = self.last_voted.max(block.view);
        // Saved before the vote leaves: a restarted replica never votes twice in a view.
        self.persist(cx);
        cx.output(Output::Voted {
            view: block.view,
            block: block.hash,
        });
        let vote = Vote::signed(&self.crypto, block.view, block.hash);
        let next = self.leader(block.view + 1);
        self.last_vote = Some((next, vote.clone()));
        self.advance_to(block.view + 1, cx);
        if next == self.me() {
            self.on_vote(next, &vote, cx);
        } else {
            self.send(cx, vec![next], Msg::Vote(Arc::new(vote)));
        }
    }

    /// The paper's `safeNode`: the block extends the locked block (safety), or its QC is
    /// newer than the lock (liveness).
    fn safe_node(&self, block: &Block) -> bool {
        block.justify.view > self.locked_qc.view || self.extends(block, &self.locked_qc.block)
    }

    /// The block with this hash, if this replica has it.
    fn block(&self, hash: &Digest) -> Option<&Arc<Block>> {
        self.recent
            .iter()
            .find(|b| b.hash == *hash)
            .or_else(|| self.blocks.get(hash))
    }

    fn has_block(&self, hash: &Digest) -> bool {
        self.block(hash).is_some()
    }

    /// Adds a block to the tree (a block already there stays as it is).
    fn add_block(&mut self, block: Arc<Block>) {
        if let std::collections::btree_map::Entry::Vacant(slot) = self.blocks.entry(block.hash) {
            slot.insert(Arc::clone(&block));
            self.recent.insert(0, block);
            self.recent.truncate(RECENT_BLOCKS);
        }
    }

    /// Whether `block` descends from the block `ancestor` (or is it).
    fn extends(&self, block: &Block, ancestor: &Digest) -> bool {
        let Some(target) = self.block(ancestor) else {
            return false;
        };
        let mut current = block;
        while current.height > target.height {
            match self.block(&current.parent) {
                Some(parent) => current = parent,
                None => return false,
            }
        }
        current.hash == *ancestor
    }

    fn on_vote(&mut self, from: NodeId, vote: &Vote, cx: &mut Context<NodeWith<S>>) {
        if vote.voter != from.0 || from.0 >= self.n {
            return self.drop_msg(cx, "vote", from, "not a replica's own vote");
        }
        if self.leader(vote.view + 1) != self.me() {
            return self.drop_msg(cx, "vote", from, "this replica does not lead the next view");
        }
        if vote.view < self.high_qc.view {
            return; // a QC of that view or a later one is formed already
        }
        // Its own vote it signed a moment ago (and a Byzantine replica's own code may
        // do as it likes): only the others' are checked.
        if from != self.me() && !vote.verify(&self.crypto) {
            return self.drop_msg(cx, "vote", from, "bad signature");
        }
        let quorum = self.seam.qc_quorum(self.f);
        let votes = self.votes.entry((vote.view, vote.block)).or_default();
        if votes.iter().any(|(voter, _)| *voter == vote.voter) || votes.len() >= quorum {
            return;
        }
        votes.push((vote.voter, vote.sig));
        if votes.len() == quorum {
            let qc = Qc::of(vote.view, vote.block, Arc::from(votes.as_slice()));
            self.process_qc(&qc, from, cx);
        }
    }

    /// A replica gave up on a view: collect its timeout, learn its QC, and form a TC from
    /// 2f+1 of them. One that times out of an older view hears where the others are.
    /// A replica's timeout; `answer` says whether it may be answered (not an answer itself).
    fn on_timeout_msg(
        &mut self,
        from: NodeId,
        timeout: Arc<Timeout>,
        answer: bool,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if timeout.sender != from.0 || from.0 >= self.n {
            return self.drop_msg(cx, "timeout", from, "not a replica's own timeout");
        }
        if !timeout.verify(&self.crypto) {
            return self.drop_msg(cx, "timeout", from, "bad signature");
        }
        if let Err(e) = self.check_qc(&timeout.high_qc) {
            return self.drop_msg(cx, "timeout", from, &format!("its QC: {e}"));
        }
        self.process_qc(&timeout.high_qc, from, cx);
        let view = timeout.view;
        if view < self.entry_view() {
            if !answer {
                // An answer to a timeout that crossed this replica's certificate.
                return;
            }
            // It is behind: a certificate this replica holds moves it past that view.
            let msg = Msg::NewView {
                high_qc: self.high_qc.clone(),
                tc: self.last_tc.clone(),
            };
            return self.send(cx, vec![from], msg);
        }
        if view < self.view {
            // This replica left that view by voting in it, and no certificate of it formed:
            // it gives up on it too, so that the ones still there can form a TC. (A lone
            // Byzantine replica can collect these and end a view that has its votes, as the
            // `impatient` behaviour does; waiting for f+1 timeouts first would stop that.)
            // An answer is not answered: the sender is past that view as well.
            if answer {
                cx.output(Output::TimedOut { view });
                let mine = Arc::new(Timeout::signed(&self.crypto, view, self.high_qc.clone()));
                self.send(cx, vec![from], Msg::TimeoutAnswer(Arc::clone(&mine)));
                self.collect_timeout(mine, cx);
            }
        }
        self.collect_timeout(timeout, cx);
    }

    /// The latest view the certificates this replica holds let a replica enter: the view
    /// after its highest QC, or the view its latest TC moves on to.
    fn entry_view(&self) -> View {
        let tc = self.last_tc.as_ref().map_or(0, |tc| view_after_tc(tc.view));
        (self.high_qc.view + 1).max(tc)
    }

    /// Adds a checked timeout of a view not certified yet; 2f+1 of one view make a TC.
    fn collect_timeout(&mut self, timeout: Arc<Timeout>, cx: &mut Context<NodeWith<S>>) {
        let view = timeout.view;
        let collected = self.timeouts.entry(view).or_default();
        if collected.iter().any(|t| t.sender == timeout.sender) {
            return;
        }
        collected.push(timeout);
        let count = collected.len();
        // f+1 timeouts: at least one correct replica gave up on this view; join them, so
        // that a TC forms even where this replica's own timer is later.
        if count > self.f as usize && view == self.view && self.last_voted < view {
            self.time_out(cx);
        }
        // Joining may have formed the TC and moved on already.
        let Some(collected) = self.timeouts.get(&view) else {
            return;
        };
        if collected.len() >= self.seam.tc_quorum(self.f) && view >= self.entry_view() {
            let high_qc = collected
                .iter()
                .map(|t| &t.high_qc)
                .max_by_key(|qc| qc.view)
                .cloned()
                .unwrap_or_else(Qc::genesis);
            let tc = Tc {
                view,
                timeouts: collected
                    .iter()
                    .map(|t| (t.sender, t.high_qc.view, t.sig))
                    .collect(),
                high_qc,
            };
            self.process_tc(Arc::new(tc), cx);
        }
    }

    fn on_new_view(
        &mut self,
        from: NodeId,
        high_qc: Qc,
        tc: Option<Arc<Tc>>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if from.0 >= self.n {
            return self.drop_msg(cx, "new-view", from, "not from a replica");
        }
        if let Err(e) = self.check_qc(&high_qc) {
            return self.drop_msg(cx, "new-view", from, &format!("its QC: {e}"));
        }
        self.process_qc(&high_qc, from, cx);
        if let Some(tc) = tc {
            match self.check_tc(&tc) {
                Ok(()) => self.process_tc(tc, cx),
                Err(e) => self.drop_msg(cx, "new-view", from, &e),
            }
        }
        // A replica that just restarted, or lags: tell it what we know if it is behind us.
        if high_qc.view < self.high_qc.view {
            let msg = Msg::NewView {
                high_qc: self.high_qc.clone(),
                tc: self.last_tc.clone(),
            };
            self.send(cx, vec![from], msg);
        }
    }

    fn on_fetch(&mut self, from: NodeId, hash: Digest, cx: &mut Context<NodeWith<S>>) {
        if from.0 >= self.n {
            return self.drop_msg(cx, "fetch", from, "not from a replica");
        }
        let mut found = Vec::new();
        let mut next = self.block(&hash);
        while let Some(block) = next {
            if block.height == 0 || found.len() == FETCH_BLOCKS_MAX {
                break;
            }
            found.push(Arc::clone(block));
            next = self.block(&block.parent);
        }
        if !found.is_empty() {
            self.send(cx, vec![from], Msg::Blocks(found));
        }
    }

    /// Blocks this replica asked for: each must be one it asked for, or the parent of one
    /// it took from the same answer, and hash right.
    fn on_blocks(&mut self, from: NodeId, blocks: Vec<Arc<Block>>, cx: &mut Context<NodeWith<S>>) {
        let mut expected: Option<Digest> = None;
        let mut took = false;
        for block in blocks {
            let asked = self.requested.contains(&block.hash) || expected == Some(block.hash);
            if !asked || !block.hash_is_right() {
                self.drop_msg(cx, "block", from, "not asked for, or its hash is wrong");
                break;
            }
            self.requested.remove(&block.hash);
            expected = Some(block.parent);
            if block.height > 0 {
                self.add_block(block);
                took = true;
            }
        }
        if !took {
            return;
        }
        // Still missing further down? Ask the same replica.
        if let Some(missing) = expected.filter(|p| !self.has_block(p)) {
            self.fetch(cx, from, missing);
        }
        let stashed = std::mem::take(&mut self.stashed);
        for (sender, proposal) in stashed {
            self.on_proposal(sender, proposal, cx);
        }
        let high = self.high_qc.clone();
        self.update(&high, from, cx);
        self.propose_if_leader(cx);
    }

    fn fetch(&mut self, cx: &mut Context<NodeWith<S>>, from: NodeId, hash: Digest) {
        if from == self.me() || from.0 >= self.n {
            return;
        }
        // Asked again on every occasion: the answer may have been lost.
        self.requested.insert(hash);
        self.send(cx, vec![from], Msg::Fetch { block: hash });
    }

    // ---- Certificates: the paper's `update` --------------------------------------------

    /// A valid QC: it may be the highest yet, it moves the replica to the view after it,
    /// and its chain may lock and commit. A block it names that this replica lacks is
    /// fetched from `from`.
    fn process_qc(&mut self, qc: &Qc, from: NodeId, cx: &mut Context<NodeWith<S>>) {
        if qc.view > self.high_qc.view {
            self.high_qc = qc.clone();
            // A view succeeded: the network delivers again, the view timer starts over.
            self.backoff = 0;
        }
        self.advance_to(qc.view + 1, cx);
        self.update(qc, from, cx);
        self.propose_if_leader(cx);
    }

    /// `update(b*)` for the block b* that carries `qc`: with b'' the block `qc` certifies,
    /// b' the block b'' certifies and b the block b' certifies, lock on b' (a 2-chain), and
    /// commit b if b'', b', b are direct parents in consecutive views (a 3-chain).
    fn update(&mut self, qc: &Qc, from: NodeId, cx: &mut Context<NodeWith<S>>) {
        let Some(b2) = self.block(&qc.block).cloned() else {
            return self.fetch(cx, from, qc.block);
        };
        let Some(b1) = self.block(&b2.justify.block).cloned() else {
            return self.fetch(cx, from, b2.justify.block);
        };
        if self.seam.updates_lock() && b2.justify.view > self.locked_qc.view {
            self.locked_qc = b2.justify.clone();
            self.unsaved_lock = true;
            cx.output(Output::Locked {
                view: self.locked_qc.view,
                block: self.locked_qc.block,
            });
        }
        let Some(b0) = self.block(&b1.justify.block).cloned() else {
            return self.fetch(cx, from, b1.justify.block);
        };
        let direct = b2.parent == b1.hash && b1.parent == b0.hash;
        let consecutive = b2.view == b1.view + 1 && b1.view == b0.view + 1;
        if direct && (consecutive || !self.seam.commit_needs_consecutive_views()) {
            self.commit(&b0, from, cx);
        }
    }

    /// A valid TC newer than any this replica knows: it moves on to the view after, and
    /// passes the TC on to the others (each replica does so once per TC).
    fn process_tc(&mut self, tc: Arc<Tc>, cx: &mut Context<NodeWith<S>>) {
        if self.last_tc.as_ref().is_some_and(|known| known.view >= tc.view) {
            return;
        }
        if tc.high_qc.view > self.high_qc.view {
            self.high_qc = tc.high_qc.clone();
        }
        cx.output(Output::TimeoutCertified {
            view: tc.view,
            signers: tc.timeouts.iter().map(|t| t.0).collect(),
        });
        self.last_tc = Some(Arc::clone(&tc));
        self.advance_to(view_after_tc(tc.view), cx);
        self.prune_timeouts();
        let others = self.others();
        let msg = Msg::NewView {
            high_qc: self.high_qc.clone(),
            tc: Some(tc),
        };
        self.send(cx, others, msg);
        self.propose_if_leader(cx);
    }

    /// Timeouts of views a certificate already ended are of no more use.
    fn prune_timeouts(&mut self) {
        let keep_from = self.entry_view();
        if self.timeouts.first_key_value().is_some_and(|(first, _)| *first < keep_from) {
            self.timeouts = self.timeouts.split_off(&keep_from);
        }
    }

    /// Enters `view` if it is later than the replica's: a new view timer, and what is
    /// kept for older views goes.
    fn advance_to(&mut self, view: View, cx: &mut Context<NodeWith<S>>) {
        if view <= self.view {
            return;
        }
        self.view = view;
        cx.enter_round(view);
        for (_, timer) in [self.view_timer.take(), self.resend_timer.take()]
            .into_iter()
            .flatten()
        {
            cx.cancel_timer(timer);
        }
        self.prune_timeouts();
        // Split only when there is something to drop: a split builds a new tree.
        let keep_from = (self.high_qc.view, Digest([0; 32]));
        if self.verified.first().is_some_and(|first| *first < keep_from) {
            self.verified = self.verified.split_off(&keep_from);
        }
        if self.votes.first_key_value().is_some_and(|(first, _)| *first < keep_from) {
            self.votes = self.votes.split_off(&keep_from);
        }
    }

    // ---- Committing and executing --------------------------------------------------------

    /// Commits `block` and every ancestor above the last committed block, in height order.
    fn commit(&mut self, block: &Arc<Block>, from: NodeId, cx: &mut Context<NodeWith<S>>) {
        if block.height <= self.committed.height {
            return;
        }
        let mut chain = vec![Arc::clone(block)];
        while let Some(lowest) = chain.last() {
            if lowest.height <= self.committed.height + 1 {
                break;
            }
            match self.block(&lowest.parent) {
                Some(parent) => chain.push(Arc::clone(parent)),
                None => {
                    let missing = lowest.parent;
                    return self.fetch(cx, from, missing);
                }
            }
        }
        for block in chain.into_iter().rev() {
            self.execute(&block, cx);
        }
        self.backoff = 0;
        if self.committed.height >= self.snapshot_height + SNAPSHOT_EVERY {
            self.take_snapshot();
        }
        if self.committed.height % PRUNE_EVERY == 0 && self.committed.height > BLOCKS_KEPT {
            let floor = self.committed.height - BLOCKS_KEPT;
            self.blocks.retain(|_, b| b.height >= floor || b.height == 0);
        }
        // Saved with the next vote or timeout (the state safety rests on is saved before
        // each of them): a replica that crashes before then restarts from an earlier
        // committed state, and commits these blocks again from the others' chain.
    }

    /// Encodes the committed state for the saves to come.
    fn take_snapshot(&mut self) {
        let snapshot = SnapshotRef {
            committed: &self.committed,
            store: &self.store,
            replies: &self.replies,
        };
        self.snapshot.clear();
        // Encoding plain data into a vector cannot fail; were it to, the empty snapshot
        // makes a restart begin from the genesis state, which is safe (see `new`).
        if rehearsal_sim_core::codec::encode_into(&snapshot, &mut self.snapshot).is_err() {
            self.snapshot.clear();
        }
        self.snapshot_height = self.committed.height;
    }

    fn execute(&mut self, block: &Arc<Block>, cx: &mut Context<NodeWith<S>>) {
        let mut executed = Vec::with_capacity(block.batch.len());
        for request in block.batch.iter() {
            let ci = self.client_index(request.client);
            let last = self.replies.get(ci).map_or(0, |(number, _)| number);
            self.pending.remove(&(request.client.0, request.number));
            if request.number <= last {
                continue; // executed already, in an earlier block
            }
            let result = self.store.apply(&request.op);
            self.replies.set(ci, request.number, result);
            executed.push(Execution {
                client: request.client,
                number: request.number,
                op: request.op,
                result,
            });
        }
        cx.output(Output::Executed {
            height: block.height,
            view: block.view,
            block: block.hash,
            parent: block.parent,
            requests: executed.clone(),
        });
        self.committed = Arc::clone(block);
        for e in executed {
            self.reply(cx, e.client, block.view, e.number, e.result);
        }
    }

    fn reply(&mut self, cx: &mut Context<NodeWith<S>>, client: NodeId, view: View, number: u64, result: u64) {
        let reply = Reply::signed(&self.crypto, view, client, number, result);
        self.send(cx, vec![client], Msg::Reply(Arc::new(reply)));
    }

    /// Saves a lock that moved in this event and was not saved with a vote: a replica
    /// never comes back from a crash locked lower than it was.
    fn save_lock(&mut self, cx: &mut Context<NodeWith<S>>) {
        if self.unsaved_lock {
            self.persist(cx);
        }
    }

    fn persist(&mut self, cx: &mut Context<NodeWith<S>>) {
        self.unsaved_lock = false;
        let durable = DurableRef {
            view: self.view,
            last_voted: self.last_voted,
            locked_qc: &self.locked_qc,
            high_qc: &self.high_qc,
            snapshot: EncodedBytes(&self.snapshot),
        };
        if let Err(e) = cx.persist(&durable) {
            cx.annotate(format!("cannot save the durable state: {e}"));
        }
    }

    // ---- Leading -------------------------------------------------------------------------

    /// As the leader of its view, proposes once: a block extending the highest QC, if that
    /// QC is of the view before (or a TC of that view says it ended), and if there is work:
    /// requests to order, or blocks with requests still to commit.
    fn propose_if_leader(&mut self, cx: &mut Context<NodeWith<S>>) {
        let view = self.view;
        if self.leader(view) != self.me() || self.proposed >= view || !self.seam.proposes() {
            return;
        }
        let stale = self.seam.byzantine() == Some(Behavior::StaleQc);
        let tc = self.last_tc.clone().filter(|tc| view_after_tc(tc.view) == view);
        if self.high_qc.view + 1 != view && tc.is_none() && !stale {
            return; // wait for the QC of the view before, or a TC of it
        }
        let justify = if stale {
            self.stale_qc()
        } else {
            self.high_qc.clone()
        };
        let Some(parent) = self.block(&justify.block).cloned() else {
            return; // fetched when the QC came in; proposed when the block arrives
        };
        let in_flight = self.uncommitted_requests(&parent);
        let candidates = self
            .pending
            .values()
            .filter(|r| !in_flight.contains(&(r.client.0, r.number)));
        // A leader may batch any of its pending requests. Two instances of one replica
        // (Twins) pick theirs at random, each from its own stream, as two machines'
        // mempools would differ: otherwise twins with the same inputs would always propose
        // the same block, and never equivocate.
        let batch: Vec<Request> = if self.seam.byzantine() == Some(Behavior::Twin) {
            use rehearsal_sim_core::rand::seq::SliceRandom;
            let mut shuffled: Vec<&Arc<Request>> = candidates.collect();
            shuffled.shuffle(cx.rng());
            shuffled.into_iter().take(self.batch_max).map(|r| (**r).clone()).collect()
        } else {
            candidates.take(self.batch_max).map(|r| (**r).clone()).collect()
        };
        // This proposal lets the others commit up to two blocks below its parent (the
        // leader may have committed those already): it is worth making while any of those
        // three carries requests.
        let others_commit = self.chain_down(&parent, 3).any(|b| !b.batch.is_empty());
        if batch.is_empty() && in_flight.is_empty() && !others_commit {
            return; // nothing to order, nothing to commit
        }
        self.proposed = view;
        let block = Arc::new(Block::new(view, parent.height + 1, justify, Arc::from(batch)));
        let proposal = Arc::new(Proposal::signed(&self.crypto, block, tc));
        self.last_proposal = Some(Arc::clone(&proposal));
        let others = self.others();
        self.send(cx, others, Msg::Proposal(Arc::clone(&proposal)));
        let me = self.me();
        self.on_proposal(me, proposal, cx);
    }

    /// `tip` and its ancestors, at most `count` blocks, above the genesis block.
    fn chain_down<'a>(&'a self, tip: &'a Block, count: usize) -> impl Iterator<Item = &'a Block> {
        std::iter::successors(Some(tip), |b| self.block(&b.parent).map(|p| &**p))
            .take_while(|b| b.height > 0)
            .take(count)
    }

    /// The requests in the blocks from `tip` down to the last committed one.
    fn uncommitted_requests(&self, tip: &Block) -> BTreeSet<(u32, u64)> {
        let mut found = BTreeSet::new();
        let mut next = Some(tip);
        while let Some(block) = next.filter(|b| b.height > self.committed.height) {
            found.extend(block.batch.iter().map(|r| (r.client.0, r.number)));
            next = self.block(&block.parent).map(|b| &**b);
        }
        found
    }

    /// A `stale-qc` leader's certificate: a few certified blocks below its highest.
    fn stale_qc(&self) -> Qc {
        let mut qc = self.high_qc.clone();
        for _ in 0..STALE_DEPTH {
            match self.block(&qc.block) {
                Some(b) if b.height > 0 => qc = b.justify.clone(),
                _ => break,
            }
        }
        qc
    }

    // ---- The pacemaker -------------------------------------------------------------------

    /// Whether the replica has work outstanding: a request not executed, or a block with
    /// requests not committed.
    fn has_work(&self) -> bool {
        if !self.pending.is_empty() {
            return true;
        }
        match self.block(&self.high_qc.block) {
            Some(tip) => !self.uncommitted_requests(tip).is_empty(),
            None => true, // a block it is fetching
        }
    }

    /// Sets the view timer (and the re-send timer) for the current view if there is work
    /// and none is set.
    fn arm_view_timer(&mut self, cx: &mut Context<NodeWith<S>>) {
        if !self.has_work() {
            return;
        }
        if self.view_timer.is_none_or(|(v, _)| v != self.view) {
            let after = self.view_timeout * (1 << self.backoff.min(VIEW_TIMEOUT_DOUBLINGS_MAX));
            let timer = cx.set_timer(after, Timer::View { view: self.view });
            self.view_timer = Some((self.view, timer));
        }
        if self.resend_timer.is_none_or(|(v, _)| v != self.view) {
            let timer = cx.set_timer(self.view_timeout / 2, Timer::Resend { view: self.view });
            self.resend_timer = Some((self.view, timer));
        }
    }

    /// Re-sends what the current view waits on from this replica: its proposal if it leads
    /// the view, its vote if it moved here by voting, its timeout if it gave up on the view.
    pub(super) fn on_resend_timer(&mut self, view: View, cx: &mut Context<NodeWith<S>>) {
        self.seam.announce(cx);
        if self.resend_timer.is_some_and(|(v, _)| v == view) {
            self.resend_timer = None;
        }
        if view != self.view || !self.has_work() {
            return;
        }
        if let Some(proposal) = self.last_proposal.clone().filter(|p| p.block.view == view) {
            let others = self.others();
            self.send(cx, others, Msg::Proposal(proposal));
        }
        if let Some((to, vote)) = self.last_vote.clone().filter(|(_, v)| v.view + 1 == view) {
            if to != self.me() {
                self.send(cx, vec![to], Msg::Vote(Arc::new(vote)));
            }
        }
        if let Some(timeout) = self.last_timeout.clone().filter(|t| t.view == view) {
            let others = self.others();
            self.send(cx, others, Msg::Timeout(timeout));
        }
        // Blocks asked for and still missing (the question or the answer was lost): ask
        // everyone this time.
        let missing: Vec<Digest> = self.requested.iter().copied().collect();
        for block in missing {
            let others = self.others();
            self.send(cx, others, Msg::Fetch { block });
        }
        self.arm_view_timer(cx);
    }

    pub(super) fn on_view_timer(&mut self, view: View, cx: &mut Context<NodeWith<S>>) {
        self.seam.announce(cx);
        if self.view_timer.is_some_and(|(v, _)| v == view) {
            self.view_timer = None;
        }
        if view == self.view && self.has_work() {
            self.time_out(cx);
            self.backoff = (self.backoff + 1).min(VIEW_TIMEOUT_DOUBLINGS_MAX);
        }
        self.arm_view_timer(cx);
    }

    /// Gives up on the current view: no more votes in it, and a timeout with the highest
    /// QC to every replica (itself included). Sent again while the view lasts.
    fn time_out(&mut self, cx: &mut Context<NodeWith<S>>) {
        let view = self.view;
        if self.last_voted < view {
            self.last_voted = view;
            self.persist(cx);
        }
        if self.last_timeout.as_ref().is_none_or(|t| t.view != view) {
            cx.output(Output::TimedOut { view });
        }
        cx.annotate(format!("timeout of view {view}"));
        let timeout = Arc::new(Timeout::signed(&self.crypto, view, self.high_qc.clone()));
        self.last_timeout = Some(Arc::clone(&timeout));
        let others = self.others();
        self.send(cx, others, Msg::Timeout(Arc::clone(&timeout)));
        let me = self.me();
        self.on_timeout_msg(me, timeout, false, cx);
    }

    pub(super) fn waiting_for(&self) -> Option<String> {
        if !self.has_work() {
            return None;
        }
        Some(format!(
            "view {}: {} requests to order, committed up to height {} (highest QC of view {}, locked on view {})",
            self.view,
            self.pending.len(),
            self.committed.height,
            self.high_qc.view,
            self.locked_qc.view
        ))
    }

    pub(super) fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        self.seam.set_byzantine(behavior)
    }
}
