//! A PBFT replica: the normal case (pre-prepare, prepare, commit, execute, reply),
//! batching, checkpoints with garbage collection and watermarks, and the housekeeping
//! tick that drives retransmission, catch-up and view-change timers. View changes are in
//! [`super::view_change`], catch-up in [`super::catch_up`], Byzantine sends in
//! [`super::byzantine`].

use super::app::{KvStore, ReplyCache, Snapshot};
use super::log::Log;
use super::byzantine::Behavior;
use super::messages::{
    batch_digest, check_batch, check_binding, distinct_replicas, primary_of, Batch, Checkpoint,
    CommitCert, Msg, NewView, Phase, PrePrepare, PreparedCert, Quorums, Reply, Request, Seq, View,
    ViewChange, Vote,
};
use super::{
    Config, Execution, LoadReason, NodeWith, Output, TestSeam, Testing, Timer, REPLICAS_MAX,
};
use crate::crypto::{Crypto, Digest, Shared};
use rehearsal_sim_core::fingerprint::Cached;
use std::ops::DerefMut;
use rehearsal_sim_core::{Context, NodeId, Time};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// Messages of views this replica has not entered yet, kept until it does.
const FUTURE_MESSAGES_MAX: usize = 1024;
/// Uncommitted log entries whose messages one tick retransmits.
const RETRANSMIT_ENTRIES_MAX: usize = 16;
/// View-change timeouts stop doubling after this many consecutive view changes.
pub(super) const VIEW_CHANGE_DOUBLINGS_MAX: u32 = 6;

/// The parameters a replica runs with, resolved from [`Config`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Params {
    pub n: u32,
    pub f: u32,
    pub clients: u32,
    pub keys: u32,
    pub batch_max: usize,
    pub in_flight_max: u64,
    /// K.
    pub checkpoint_interval: u64,
    /// L.
    pub window: u64,
    pub tick: Duration,
    pub view_change_timeout: Duration,
}

/// One sequence number's state in the current view, and what survives view changes.
#[derive(Default, Clone, Serialize)]
pub(super) struct Entry {
    /// The pre-prepare accepted for this sequence number in the current view.
    pub pre_prepare: Option<Arc<PrePrepare>>,
    /// Prepares and commits of the current view, at most one per replica (bit masks).
    pub prepares: Vec<Vote>,
    pub prepare_mask: u128,
    pub commits: Vec<Vote>,
    pub commit_mask: u128,
    pub prepared: bool,
    pub sent_commit: bool,
    /// Survives view changes: the highest-view prepared certificate, for view changes.
    pub prepared_cert: Option<PreparedCert>,
    /// Survives view changes: the batch this sequence number is decided on (committed,
    /// or prepared under the `no-commit` mutant), with the commits that decided it.
    pub decided: Option<Arc<PrePrepare>>,
    pub commit_cert: Option<CommitCert>,
}

/// The log entry for `seq`, made empty if there is none, for writing (a shared one is
/// copied first).
pub(super) fn entry_mut(log: &mut Log<Arc<Cached<Entry>>>, seq: Seq) -> &mut Entry {
    Arc::make_mut(log.entry_or_default(seq))
        .deref_mut()
}

impl Entry {
    /// Forgets the messages of the previous view; keeps certificates and decisions.
    pub fn reset_for_new_view(&mut self) {
        self.pre_prepare = None;
        self.prepares.clear();
        self.prepare_mask = 0;
        self.commits.clear();
        self.commit_mask = 0;
        self.prepared = false;
        self.sent_commit = false;
    }

    fn matching(votes: &[Vote], digest: &Digest) -> usize {
        votes.iter().filter(|v| v.digest == *digest).count()
    }
}

/// Checkpoint messages received for one sequence number, one per replica.
#[derive(Default, Clone, Serialize)]
pub(super) struct CheckpointVotes {
    pub votes: Vec<Checkpoint>,
    pub mask: u128,
}

/// An ongoing view change.
#[derive(Debug, Clone, Copy, Serialize)]
pub(super) struct Changing {
    pub target: View,
    pub since: Time,
}

/// What a replica saves with `Context::persist`: its view, the view change it is in the
/// middle of, and its stable checkpoint.
#[derive(Serialize, Deserialize)]
pub(super) struct Durable {
    pub view: View,
    /// Our own view-change message while a view change lasts: its `new_view` is the view
    /// we are changing to. Saved whole, not just that view, because the others may need
    /// it again after we restart (it is what we resend until the new view comes), and a
    /// restarted replica cannot rebuild it: the prepared certificates it carries were in
    /// the log that the crash lost.
    pub view_change: Option<Arc<ViewChange>>,
    pub low: Seq,
    pub stable_digest: Digest,
    pub stable_proof: Vec<Checkpoint>,
    pub snapshot: Option<Arc<Snapshot>>,
}

/// A PBFT replica: its view, log, checkpoints, application state and timers. Build one
/// with [`super::actors`] (or [`Replica::restore`] after a crash); it runs inside
/// [`NodeWith::Replica`]. `S` is its [`TestSeam`]: [`Testing`] in the simulator (mutants,
/// Byzantine behaviours), [`Correct`](super::Correct) in the production node.
///
/// Its serde encoding (what it is, leaving out what never changes) is its fingerprint
/// for the explorer.
#[derive(Clone, Serialize)]
pub struct Replica<S: TestSeam = Testing> {
    #[serde(skip)]
    pub(super) me: NodeId,
    #[serde(skip)]
    pub(super) p: Params,
    #[serde(skip)]
    pub(super) q: Quorums,
    #[serde(skip)]
    pub(super) crypto: Crypto,

    // View.
    pub(super) view: View,
    pub(super) changing: Option<Changing>,
    /// Consecutive view changes without an execution: the timeout doubles with each.
    pub(super) view_changes_unproductive: u32,
    /// Per replica: the view change for the highest view it sent us.
    pub(super) latest_vc: Vec<Option<Arc<ViewChange>>>,
    /// The new-view message of the current view (none for view 0), forwarded to laggards.
    pub(super) new_view: Option<Arc<NewView>>,
    pub(super) future: VecDeque<(NodeId, Msg)>,

    // Log, checkpoints, watermarks.
    /// h, the low watermark: the last stable checkpoint.
    pub(super) low: Seq,
    pub(super) stable_digest: Digest,
    pub(super) stable_proof: Vec<Checkpoint>,
    /// Entries are shared until written (`entry_mut` copies a shared one): a copy of
    /// the replica, as the explorer makes at every step, copies no entry; and each
    /// remembers its fingerprint until written, so a step rehashes only what it changed.
    pub(super) log: Log<Arc<Cached<Entry>>>,
    pub(super) checkpoints: BTreeMap<Seq, CheckpointVotes>,
    /// Own state at each checkpoint above h, and at h (what state transfer ships). Left
    /// out of the fingerprint: the one at h is named by `stable_digest`, and those above
    /// follow from it and the batches decided in the log.
    #[serde(skip)]
    pub(super) snapshots: BTreeMap<Seq, Arc<Snapshot>>,

    // The primary's proposals.
    pub(super) next_seq: Seq,
    pub(super) queue: VecDeque<Arc<Request>>,
    /// Per client index: the highest request number queued or proposed in this view.
    pub(super) queued: Vec<u64>,

    // Execution.
    pub(super) last_executed: Seq,
    pub(super) store: KvStore,
    pub(super) replies: ReplyCache,

    // Liveness.
    /// Per client index: the highest request known and not yet executed, with its body
    /// when a client sent it to us (so we can propose it if we become primary).
    pub(super) pending: Vec<(u64, Option<Arc<Request>>)>,
    pub(super) pending_count: usize,
    pub(super) last_progress: Time,
    pub(super) tick_armed: bool,
    pub(super) executed_at_last_tick: Seq,
    /// Per replica: the highest sequence number and view seen in its signed messages.
    pub(super) claimed_seq: Vec<Seq>,
    pub(super) claimed_view: Vec<View>,

    /// Rebuilt after a crash: announce the state it restarted from, and catch up.
    pub(super) restarted: bool,

    /// Where mutants and Byzantine behaviour come in; nothing for the production node.
    #[serde(skip)]
    pub(super) seam: S,
}

/// Whether `bytes` decode as the durable state a replica saves.
pub(super) fn durable_decodes(bytes: &[u8]) -> bool {
    rehearsal_sim_core::codec::decode::<Durable>(bytes).is_ok()
}

impl<S: TestSeam> Replica<S> {
    pub fn new(config: &Config, crypto: Crypto) -> Self {
        let p = Params {
            n: config.replicas(),
            f: config.f,
            clients: config.clients,
            keys: config.keys,
            batch_max: config.batch_max,
            in_flight_max: config.in_flight_max(),
            checkpoint_interval: config.checkpoint_interval,
            window: config.watermark_window,
            tick: config.tick,
            view_change_timeout: config.view_change_timeout,
        };
        let seam = S::for_config(config);
        let q = Quorums {
            n: p.n,
            f: p.f,
            commit: seam.commit_quorum(p.f),
        };
        let n = p.n as usize;
        let clients = p.clients as usize;
        let store = KvStore::new(p.keys);
        let replies = ReplyCache::new(p.clients);
        let initial = Arc::new(Snapshot {
            store: store.clone(),
            replies: replies.clone(),
        });
        Replica {
            me: crypto.me(),
            p,
            q,
            crypto,
            view: 0,
            changing: None,
            view_changes_unproductive: 0,
            latest_vc: vec![None; n],
            new_view: None,
            future: VecDeque::new(),
            low: 0,
            stable_digest: initial.digest(),
            stable_proof: Vec::new(),
            log: Log::new(),
            checkpoints: BTreeMap::new(),
            snapshots: BTreeMap::from([(0, initial)]),
            next_seq: 1,
            queue: VecDeque::new(),
            queued: vec![0; clients],
            last_executed: 0,
            store,
            replies,
            pending: vec![(0, None); clients],
            pending_count: 0,
            last_progress: Time::ZERO,
            tick_armed: false,
            executed_at_last_tick: 0,
            claimed_seq: vec![0; n],
            claimed_view: vec![0; n],
            restarted: false,
            seam,
        }
    }

    /// A replica rebuilt after a crash from what it saved (or from scratch).
    pub fn restore(config: &Config, crypto: Crypto, durable: Option<&[u8]>) -> Self {
        let mut r = Self::new(config, crypto);
        r.restarted = true;
        let Some(d) = durable.and_then(|b| rehearsal_sim_core::codec::decode::<Durable>(b).ok())
        else {
            return r;
        };
        r.view = d.view;
        if let Some(snapshot) = d.snapshot.filter(|s| s.digest() == d.stable_digest) {
            r.low = d.low;
            r.stable_digest = d.stable_digest;
            r.stable_proof = d.stable_proof;
            r.store = snapshot.store.clone();
            r.replies = snapshot.replies.clone();
            r.last_executed = d.low;
            r.executed_at_last_tick = d.low;
            r.next_seq = d.low + 1;
            r.snapshots = BTreeMap::from([(d.low, snapshot)]);
            for (i, number) in r.replies.executed().collect::<Vec<_>>() {
                r.queued[i] = number;
            }
        } else if d.low > 0 {
            // The checkpoint is known stable, but this replica never had its state: it
            // starts from nothing and fetches that state from the others.
            r.low = d.low;
            r.stable_digest = d.stable_digest;
            r.stable_proof = d.stable_proof;
            r.next_seq = d.low + 1;
            r.snapshots.clear();
        }
        if let Some(vc) = d.view_change.filter(|vc| vc.new_view > d.view) {
            r.changing = Some(Changing {
                target: vc.new_view,
                since: Time::ZERO,
            });
            // What prepared here before the crash still prepared: keep the certificates,
            // so that a later view change of ours carries them too.
            for cert in vc.prepared.iter().filter(|c| c.pre_prepare.seq > r.low) {
                entry_mut(&mut r.log, cert.pre_prepare.seq).prepared_cert = Some(cert.clone());
            }
            r.latest_vc[r.me.index()] = Some(vc);
        }
        r
    }

    /// A coarse summary of this replica's state for coverage-guided search, below a high
    /// bit: bits 0-2 the view, capped at 7; bit 3 it is changing views; bit 4 it is the
    /// primary; bits 5-6 the stage of its latest log entry (0 none or votes only, 1
    /// pre-prepared, 2 prepared, 3 decided); bits 7-8 how many log entries it holds beyond
    /// what it executed (capped at 3); bit 9 it buffers messages of a later view; bit 10
    /// it holds the new-view message of its view; bits 11-12 view changes in a row that
    /// brought no progress (capped at 3); bit 13 it waits on client requests.
    pub fn abstract_state(&self) -> u64 {
        let stage = self.log.last_key_value().map_or(0, |(_, e)| {
            if e.decided.is_some() {
                3
            } else if e.prepared {
                2
            } else if e.pre_prepare.is_some() {
                1
            } else {
                0
            }
        });
        let in_flight = self.log.range(self.last_executed + 1..).count().min(3) as u64;
        let new_view = self.new_view.as_ref().is_some_and(|nv| nv.view == self.view);
        1 << 63
            | self.view.min(7)
            | u64::from(self.changing.is_some()) << 3
            | u64::from(self.is_primary()) << 4
            | stage << 5
            | in_flight << 7
            | u64::from(!self.future.is_empty()) << 9
            | u64::from(new_view) << 10
            | u64::from(self.view_changes_unproductive.min(3)) << 11
            | u64::from(self.pending_count > 0) << 13
    }

    /// This replica's id.
    pub fn id(&self) -> NodeId {
        self.me
    }

    pub fn view(&self) -> View {
        self.view
    }

    /// Whether a view change is under way.
    pub fn changing_view(&self) -> bool {
        self.changing.is_some()
    }

    pub fn last_executed(&self) -> Seq {
        self.last_executed
    }

    /// The low watermark: the last stable checkpoint.
    pub fn low_watermark(&self) -> Seq {
        self.low
    }

    /// Log entries held (at most about one watermark window once checkpoints are stable).
    pub fn log_len(&self) -> usize {
        self.log.len()
    }

    /// The digest of the current application state (store and reply cache).
    pub fn state_digest(&self) -> Digest {
        Snapshot {
            store: self.store.clone(),
            replies: self.replies.clone(),
        }
        .digest()
    }

    pub fn byzantine(&self) -> Option<Behavior> {
        self.seam.byzantine()
    }

    /// Switches to a Byzantine `behavior` (or back, with `correct`), if the seam has any.
    pub(super) fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        self.seam.set_byzantine(behavior)
    }

    // ---- Roles and helpers --------------------------------------------------------------

    pub(super) fn primary(&self) -> NodeId {
        primary_of(self.view, self.p.n)
    }

    pub(super) fn is_primary(&self) -> bool {
        self.primary() == self.me
    }

    pub(super) fn is_replica(&self, node: NodeId) -> bool {
        node.0 < self.p.n
    }

    pub(super) fn is_client(&self, node: NodeId) -> bool {
        node.0 >= self.p.n && node.0 - self.p.n < self.p.clients
    }

    pub(super) fn client_index(&self, client: NodeId) -> usize {
        (client.0 - self.p.n) as usize
    }

    pub(super) fn others(&self) -> impl Iterator<Item = NodeId> + 'static {
        let me = self.me;
        (0..self.p.n).map(NodeId).filter(move |&r| r != me)
    }

    /// The high watermark H = h + L.
    pub(super) fn high(&self) -> Seq {
        self.low.saturating_add(self.p.window)
    }

    /// Whether `seq` lies within the watermarks (always, under the `no-watermarks` mutant).
    pub(super) fn in_window(&self, seq: Seq) -> bool {
        !self.seam.enforces_watermarks() || (seq > self.low && seq <= self.high())
    }

    pub(super) fn drop_msg(
        &self,
        cx: &mut Context<NodeWith<S>>,
        kind: &str,
        from: NodeId,
        why: &str,
    ) {
        cx.annotate(format!("drop {kind} from {from}: {why}"));
    }

    pub(super) fn view_change_timeout(&self) -> Duration {
        let doublings = self
            .view_changes_unproductive
            .saturating_sub(1)
            .min(VIEW_CHANGE_DOUBLINGS_MAX);
        self.p.view_change_timeout * (1 << doublings)
    }

    /// Records what a replica's signed message says it has reached.
    pub(super) fn note_claim(&mut self, replica: u32, view: View, seq: Seq) {
        if let Some(s) = self.claimed_seq.get_mut(replica as usize) {
            *s = (*s).max(seq);
        }
        if let Some(v) = self.claimed_view.get_mut(replica as usize) {
            *v = (*v).max(view);
        }
    }

    /// The (f+1)-th highest value among the other replicas' claims: at least one correct
    /// replica has reached it.
    pub(super) fn vouched(&self, claims: &[u64]) -> u64 {
        // On the stack: this runs after most events (`has_work`), and a valid group has at
        // most `REPLICAS_MAX` replicas.
        let mut stack = [0u64; REPLICAS_MAX as usize];
        let mut heap = Vec::new();
        let room: &mut [u64] = if claims.len() <= stack.len() {
            &mut stack
        } else {
            heap.resize(claims.len(), 0);
            &mut heap
        };
        let mut len = 0;
        for (i, &claim) in claims.iter().enumerate() {
            if i as u32 != self.me.0 {
                room[len] = claim;
                len += 1;
            }
        }
        let others = &mut room[..len];
        let rank = self.p.f as usize;
        if rank >= others.len() {
            return 0;
        }
        // The value at `rank` in descending order.
        *others.select_nth_unstable_by(rank, |a, b| b.cmp(a)).1
    }

    // ---- Own invariants -----------------------------------------------------------------
    //
    // What this replica's own state must satisfy whatever the network delivers. Messages
    // are validated on arrival (an invalid one is dropped and annotated, never a panic),
    // so a failed assertion here is a bug in this code, not a Byzantine peer's doing: it
    // stops the run at once instead of letting a broken replica report a wrong result.

    /// A sequence number this replica decides (commits) or executes lies within its
    /// watermarks: entries enter the log only inside (h, h+L], the window only moves up,
    /// and a stable checkpoint discards everything at or below it.
    pub(super) fn assert_within_watermarks(&self, seq: Seq, what: &str) {
        // The `no-watermarks` mutant accepts messages and certificates for any sequence
        // number, so it decides outside the window by design: the testbed's invariant
        // checkers must catch that mutant, not a panic here.
        if !self.seam.enforces_watermarks() {
            return;
        }
        assert!(
            seq > self.low && seq <= self.high(),
            "PBFT replica bug: {} {what} sequence {seq} outside its watermarks ({}, {}]",
            self.me,
            self.low,
            self.high()
        );
    }

    /// A prepared certificate this replica formed or relies on holds 2f prepares that
    /// match its pre-prepare, from distinct backups (the primary does not prepare).
    pub(super) fn assert_prepared_quorum(&self, cert: &PreparedCert, what: &str) {
        let pp = &cert.pre_prepare;
        let primary = primary_of(pp.view, self.p.n).0;
        let signers = distinct_replicas(
            cert.prepares
                .iter()
                .filter(|v| v.view == pp.view && v.seq == pp.seq && v.digest == pp.digest)
                .map(|v| v.replica)
                .filter(|&r| r != primary),
            self.p.n,
        );
        assert!(
            signers >= self.q.prepared(),
            "PBFT replica bug: {} {what} a prepared certificate for sequence {} with prepares from {signers} distinct backups, needs {}",
            self.me,
            pp.seq,
            self.q.prepared()
        );
    }

    /// A commit certificate this replica formed or accepted holds a commit quorum of
    /// matching commits from distinct replicas. The quorum is the one in force: 2f+1, or
    /// 2f under the `small-commit-quorum` mutant, whose too-small quorum is for the
    /// invariant checkers to catch; what this asserts is that no replica counts twice.
    pub(super) fn assert_commit_quorum(&self, cert: &CommitCert, what: &str) {
        let pp = &cert.pre_prepare;
        let signers = distinct_replicas(
            cert.commits
                .iter()
                .filter(|v| v.view == pp.view && v.seq == pp.seq && v.digest == pp.digest)
                .map(|v| v.replica),
            self.p.n,
        );
        assert!(
            signers >= self.q.commit,
            "PBFT replica bug: {} {what} a commit certificate for sequence {} with commits from {signers} distinct replicas, needs {}",
            self.me,
            pp.seq,
            self.q.commit
        );
    }

    /// A checkpoint this replica makes stable is proven by 2f+1 matching checkpoint
    /// messages from distinct replicas.
    pub(super) fn assert_stable_quorum(&self, seq: Seq, digest: &Digest, proof: &[Checkpoint]) {
        let signers = distinct_replicas(
            proof
                .iter()
                .filter(|c| c.seq == seq && c.digest == *digest)
                .map(|c| c.replica),
            self.p.n,
        );
        assert!(
            signers >= self.q.stable(),
            "PBFT replica bug: {} makes checkpoint {seq} stable on checkpoints from {signers} distinct replicas, needs {}",
            self.me,
            self.q.stable()
        );
    }

    /// A new view this replica enters (as its primary or a backup) rests on 2f+1 view
    /// changes for that view from distinct replicas.
    pub(super) fn assert_new_view_quorum(&self, nv: &NewView) {
        let signers = distinct_replicas(
            nv.view_changes
                .iter()
                .filter(|vc| vc.new_view == nv.view)
                .map(|vc| vc.replica),
            self.p.n,
        );
        assert!(
            signers >= self.q.stable(),
            "PBFT replica bug: {} enters view {} on view changes from {signers} distinct replicas, needs {}",
            self.me,
            nv.view,
            self.q.stable()
        );
    }

    // ---- Sending ------------------------------------------------------------------------

    /// Sends to one node, through the seam (a Byzantine behaviour's, in a test).
    pub(super) fn send(&mut self, cx: &mut Context<NodeWith<S>>, to: NodeId, msg: Msg) {
        self.seam.send(&self.crypto, self.p.n, cx, to, msg);
    }

    /// Sends to every other replica, through the seam (a Byzantine behaviour's, in a test).
    pub(super) fn multicast(&mut self, cx: &mut Context<NodeWith<S>>, msg: Msg) {
        let others = self.others();
        self.seam.multicast(&self.crypto, self.p.n, cx, others, msg);
    }

    /// Saves the view and the stable checkpoint (with its state, if this replica has it):
    /// called whenever either changes.
    pub(super) fn save(&self, cx: &mut Context<NodeWith<S>>) {
        let durable = Durable {
            view: self.view,
            view_change: self.changing.and_then(|c| {
                self.latest_vc[self.me.index()]
                    .clone()
                    .filter(|vc| vc.new_view == c.target)
            }),
            low: self.low,
            stable_digest: self.stable_digest,
            stable_proof: self.stable_proof.clone(),
            snapshot: self.snapshots.get(&self.low).cloned(),
        };
        if let Err(e) = cx.persist(&durable) {
            cx.annotate(format!("could not save durable state: {e}"));
        }
    }

    // ---- Handlers -----------------------------------------------------------------------

    pub(super) fn on_start(&mut self, cx: &mut Context<NodeWith<S>>) {
        cx.enter_round(self.view);
        self.last_progress = cx.now();
        if let Some(c) = self.changing.as_mut() {
            c.since = cx.now();
        }
        if self.restarted {
            // Say where this replica's state now stands (checks count from there), and
            // ask the others what happened meanwhile.
            let executed = self.executed_table();
            cx.output(Output::StateLoaded {
                seq: self.last_executed,
                digest: self.state_digest(),
                reason: LoadReason::Restart,
                executed,
            });
            self.send_fetch(cx);
            self.arm_tick(cx);
        }
    }

    pub(super) fn executed_table(&self) -> Vec<(NodeId, u64)> {
        self.replies
            .executed()
            .map(|(i, number)| (NodeId(self.p.n + i as u32), number))
            .collect()
    }

    pub(super) fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<NodeWith<S>>) {
        self.seam.announce(cx);
        self.dispatch(from, msg, cx);
        self.after_event(cx);
    }

    pub(super) fn dispatch(&mut self, from: NodeId, msg: Msg, cx: &mut Context<NodeWith<S>>) {
        match msg {
            Msg::Request(request) => self.on_request(from, request, cx),
            Msg::PrePrepare(pp) => self.on_pre_prepare(from, pp, cx),
            Msg::Prepare(vote) => self.on_vote(from, Phase::Prepare, vote, cx),
            Msg::Commit(vote) => self.on_vote(from, Phase::Commit, vote, cx),
            Msg::Checkpoint(c) => self.on_checkpoint(from, c, cx),
            Msg::ViewChange(vc) => self.on_view_change(from, vc, cx),
            Msg::NewView(nv) => self.on_new_view(from, nv, cx),
            Msg::Fetch(f) => self.on_fetch(from, f, cx),
            Msg::FetchReply(r) => self.on_fetch_reply(from, r, cx),
            Msg::Reply(_) => self.drop_msg(cx, "reply", from, "replicas take no replies"),
        }
    }

    /// After every event: keep the housekeeping tick running while there is work.
    fn after_event(&mut self, cx: &mut Context<NodeWith<S>>) {
        if !self.tick_armed && self.has_work() {
            self.arm_tick(cx);
        }
    }

    pub(super) fn arm_tick(&mut self, cx: &mut Context<NodeWith<S>>) {
        if !self.tick_armed {
            self.tick_armed = true;
            cx.set_timer(self.p.tick, Timer::Tick);
        }
    }

    fn has_work(&self) -> bool {
        self.changing.is_some()
            || self.pending_count > 0
            || !self.queue.is_empty()
            // Entries holding only stray votes (a faulty replica's) are not work.
            || self
                .log
                .range(self.last_executed + 1..)
                .any(|(_, e)| e.pre_prepare.is_some() || e.decided.is_some())
            || self.vouched(&self.claimed_seq) > self.last_executed
            || self.vouched(&self.claimed_view) > self.view
    }

    // ---- Requests -----------------------------------------------------------------------

    fn on_request(&mut self, from: NodeId, request: Arc<Request>, cx: &mut Context<NodeWith<S>>) {
        if !self.is_client(request.client) {
            return self.drop_msg(cx, "request", from, "not from a client");
        }
        if !self.is_replica(from) && from != request.client {
            return self.drop_msg(cx, "request", from, "sent on behalf of another client");
        }
        if !request.verify(&self.crypto) {
            return self.drop_msg(cx, "request", from, "bad client signature");
        }
        let ci = self.client_index(request.client);
        let (last, result) = self.replies.get(ci).unwrap_or((0, 0));
        if request.number <= last {
            if request.number == last && from == request.client {
                // The client missed our reply: send it again, do not execute again.
                self.reply(cx, request.client, last, result);
            }
            return;
        }
        // Every replica, the primary included, suspects the current view once a request it
        // knows of waits too long: a primary whose proposals cannot commit (its backups
        // moved to another view while it was cut off, say) must give way too.
        self.note_pending(ci, request.number, Some(Arc::clone(&request)), cx.now());
        if self.changing.is_none() && self.is_primary() {
            if request.number > self.queued[ci] {
                self.queued[ci] = request.number;
                self.queue.push_back(request);
                self.try_propose(cx);
            }
            return;
        }
        // A backup: the client suspects the primary. Relay the request to it.
        if from == request.client && self.changing.is_none() {
            let primary = self.primary();
            self.send(cx, primary, Msg::Request(request));
        }
    }

    /// Records that request `number` of client `ci` waits to execute (with its body, to
    /// propose it should this replica become primary).
    /// Whether `request` is the very request (signature included) this replica checked
    /// when its client sent it and still holds pending: its signature need not be checked
    /// again in a batch.
    pub(super) fn verified_request(&self, request: &Request) -> bool {
        let ci = self.client_index(request.client);
        self.pending
            .get(ci)
            .is_some_and(|(number, body)| *number == request.number && body.as_deref() == Some(request))
    }

    pub(super) fn note_pending(
        &mut self,
        ci: usize,
        number: u64,
        body: Option<Arc<Request>>,
        now: Time,
    ) {
        let executed = self.replies.get(ci).map_or(0, |e| e.0);
        if number <= executed || ci >= self.pending.len() {
            return;
        }
        // A slot is either empty (0) or holds a request above the executed one: executing
        // or loading state empties every slot it covers.
        if self.pending[ci].0 == 0 {
            if self.pending_count == 0 {
                // The view-change timer measures from when there is something to wait for.
                self.last_progress = now;
            }
            self.pending_count += 1;
        }
        let slot = &mut self.pending[ci];
        if number > slot.0 {
            *slot = (number, body);
        } else if number == slot.0 && slot.1.is_none() {
            slot.1 = body;
        }
    }

    /// The primary assigns sequence numbers to queued requests while the in-flight bound
    /// and the high watermark allow.
    pub(super) fn try_propose(&mut self, cx: &mut Context<NodeWith<S>>) {
        while self.changing.is_none() && self.is_primary() && !self.queue.is_empty() {
            let in_flight = (self.next_seq - 1).saturating_sub(self.last_executed);
            if in_flight >= self.p.in_flight_max || !self.in_window(self.next_seq) {
                return;
            }
            let mut batch = Vec::with_capacity(self.queue.len().min(self.p.batch_max));
            while batch.len() < self.p.batch_max {
                // A primary may order its queued requests as it likes. Two instances of
                // one replica (Twins) pick at random, each from its own stream, as two
                // machines would differ: otherwise twins with the same inputs would always
                // propose alike, and never equivocate.
                if self.seam.byzantine() == Some(Behavior::Twin) && self.queue.len() > 1 {
                    use rehearsal_sim_core::rand::Rng;
                    let pick = cx.rng().random_range(0..self.queue.len());
                    self.queue.swap(0, pick);
                }
                let Some(request) = self.queue.pop_front() else {
                    break;
                };
                let ci = self.client_index(request.client);
                if self.replies.get(ci).is_some_and(|e| e.0 >= request.number) {
                    continue; // executed meanwhile (through another view's proposal)
                }
                batch.push(Arc::unwrap_or_clone(request));
            }
            if batch.is_empty() {
                continue;
            }
            let seq = self.next_seq;
            self.next_seq += 1;
            let batch: Batch = batch.into();
            let pp = Arc::new(PrePrepare::signed(&self.crypto, self.view, seq, batch));
            let entry = entry_mut(&mut self.log, seq);
            entry.pre_prepare = Some(Arc::clone(&pp));
            self.multicast(cx, Msg::PrePrepare(Shared::new(pp)));
            self.advance(seq, cx);
        }
    }

    // ---- Pre-prepare, prepare, commit ---------------------------------------------------

    fn on_pre_prepare(
        &mut self,
        from: NodeId,
        pp: Shared<Arc<PrePrepare>>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if from != primary_of(pp.view, self.p.n) {
            return self.drop_msg(cx, "pre-prepare", from, "not from the primary of its view");
        }
        // Another backup sharing this message found all of it valid (signature, digest
        // and requests): the checks below would pass, so they are skipped.
        let purpose = PrePrepare::CHECKED_WHOLE | u8::from(self.seam.checks_digests());
        let known_valid = pp.known_valid(&self.crypto, purpose);
        if !known_valid && !pp.verify_signature(&self.crypto, self.p.n) {
            return self.drop_msg(cx, "pre-prepare", from, "bad signature");
        }
        self.note_claim(from.0, pp.view, pp.seq);
        if !self.in_current_view(from, pp.view, || Msg::PrePrepare(pp.clone()), cx) {
            return;
        }
        if from == self.me {
            return;
        }
        if !self.in_window(pp.seq) {
            let why = format!(
                "sequence {} outside watermarks ({}, {}]",
                pp.seq,
                self.low,
                self.high()
            );
            return self.drop_msg(cx, "pre-prepare", from, &why);
        }
        if let Some(existing) = self.log.get(&pp.seq).and_then(|e| e.pre_prepare.as_ref()) {
            if existing.digest != pp.digest {
                let why = format!(
                    "conflicts with the accepted pre-prepare for {} in view {}",
                    pp.seq, pp.view
                );
                return self.drop_msg(cx, "pre-prepare", from, &why);
            }
            return; // a retransmission of what we accepted
        }
        if !known_valid {
            // Its signature was checked on arrival: check that its digest binds its batch,
            // and its requests. Remembered only if all of it holds.
            let mut refusal = None;
            pp.verified(&self.crypto, purpose, |pp| {
                let checked = check_binding(pp, self.seam.checks_digests()).and_then(|()| {
                    check_batch(&pp.batch, &self.crypto, |c| self.is_client(c), |r| {
                        self.verified_request(r)
                    })
                });
                refusal = checked.err();
                refusal.is_none()
            });
            if let Some(why) = refusal {
                return self.drop_msg(cx, "pre-prepare", from, &why);
            }
        }
        self.accept_pre_prepare(Arc::clone(&pp), cx);
    }

    /// Accepts a valid pre-prepare of the current view: log it, prepare it.
    pub(super) fn accept_pre_prepare(
        &mut self,
        pp: Arc<PrePrepare>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        // Requests learnt from a pre-prepare do not start the view-change timer: only a
        // client's retransmission to every replica (the client suspects the primary) does.
        // A backup cut off by a partition then does not start a view change on its own,
        // which would leave it outside the others' view until their next view change.
        let seq = pp.seq;
        let entry = entry_mut(&mut self.log, seq);
        entry.pre_prepare = Some(Arc::clone(&pp));
        if primary_of(pp.view, self.p.n) != self.me {
            let vote = Vote::signed(&self.crypto, Phase::Prepare, pp.view, seq, pp.digest);
            Self::record_vote(entry, Phase::Prepare, vote, self.p.n as usize);
            self.multicast(cx, Msg::Prepare(Shared::new(vote)));
        }
        self.advance(seq, cx);
    }

    /// Whether a normal-case message of `view` can be processed now; messages of later
    /// views wait until this replica enters them, earlier ones are dropped.
    fn in_current_view(
        &mut self,
        from: NodeId,
        view: View,
        msg: impl FnOnce() -> Msg,
        cx: &mut Context<NodeWith<S>>,
    ) -> bool {
        if view == self.view && self.changing.is_none() {
            return true;
        }
        let msg = msg();
        if view > self.view {
            if self.future.len() < FUTURE_MESSAGES_MAX {
                self.future.push_back((from, msg));
            } else {
                self.drop_msg(cx, msg.kind(), from, "too many messages of future views");
            }
            return false;
        }
        let why = if view < self.view {
            format!("stale view {view} (in view {})", self.view)
        } else {
            format!("view {view} is being changed")
        };
        self.drop_msg(cx, msg.kind(), from, &why);
        false
    }

    /// Records `vote` unless its replica already voted in this phase. The first vote
    /// makes room for one from each of the `voters` replicas: growing the list vote by
    /// vote would copy it several times in a large group.
    fn record_vote(entry: &mut Entry, phase: Phase, vote: Vote, voters: usize) -> bool {
        let bit = 1u128 << vote.replica;
        let (votes, mask) = match phase {
            Phase::Prepare => (&mut entry.prepares, &mut entry.prepare_mask),
            Phase::Commit => (&mut entry.commits, &mut entry.commit_mask),
        };
        if *mask & bit != 0 {
            return false;
        }
        *mask |= bit;
        if votes.capacity() == 0 {
            votes.reserve_exact(voters);
        }
        votes.push(vote);
        true
    }

    fn on_vote(
        &mut self,
        from: NodeId,
        phase: Phase,
        vote: Shared<Vote>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        let kind = match phase {
            Phase::Prepare => "prepare",
            Phase::Commit => "commit",
        };
        if !self.is_replica(from) || vote.replica != from.0 {
            return self.drop_msg(cx, kind, from, "not the voter's own vote");
        }
        if phase == Phase::Prepare && from == primary_of(vote.view, self.p.n) {
            return self.drop_msg(cx, kind, from, "the primary does not prepare");
        }
        if !vote.verified(&self.crypto, phase as u8, |v| v.verify(&self.crypto, phase)) {
            return self.drop_msg(cx, kind, from, "bad signature");
        }
        self.note_claim(from.0, vote.view, vote.seq);
        let msg = || match phase {
            Phase::Prepare => Msg::Prepare(vote.clone()),
            Phase::Commit => Msg::Commit(vote.clone()),
        };
        if !self.in_current_view(from, vote.view, msg, cx) {
            return;
        }
        if !self.in_window(vote.seq) {
            if vote.seq > self.last_executed {
                let why = format!(
                    "sequence {} outside watermarks ({}, {}]",
                    vote.seq,
                    self.low,
                    self.high()
                );
                self.drop_msg(cx, kind, from, &why);
            }
            return; // a late vote for something garbage-collected: nothing to do
        }
        let entry = entry_mut(&mut self.log, vote.seq);
        if Self::record_vote(entry, phase, *vote, self.p.n as usize) {
            self.advance(vote.seq, cx);
        }
    }

    /// Moves one sequence number forward: prepared, committed, executed.
    ///
    /// Most calls complete nothing (a vote short of a quorum, or one past it): those look
    /// the entry up once and write nothing, so a shared entry is not copied. Each step
    /// that does complete (prepared, own commit sent, committed) happens once per entry
    /// and looks it up again after the assertions and sends, which need the whole replica.
    pub(super) fn advance(&mut self, seq: Seq, cx: &mut Context<NodeWith<S>>) {
        let Some(mut entry) = self.log.get_mut(&seq) else {
            return;
        };
        // The pre-prepare itself is taken (a reference count changed) only by a step that
        // completes.
        let Some((view, digest)) = entry.pre_prepare.as_ref().map(|pp| (pp.view, pp.digest))
        else {
            return;
        };
        if !entry.prepared {
            // The primary's pre-prepare stands for its vote; prepares come from backups.
            // Too few votes of any digest is the common case: no need to count them.
            let quorum = self.q.prepared();
            if entry.prepares.len() < quorum || Entry::matching(&entry.prepares, &digest) < quorum {
                return;
            }
            self.form_prepared(seq);
            entry = self.log.get_mut(&seq).expect("present above");
        }
        if !entry.sent_commit {
            let voters = self.p.n as usize;
            let writable = Arc::make_mut(entry);
            writable.sent_commit = true;
            let vote = Vote::signed(&self.crypto, Phase::Commit, view, seq, digest);
            Self::record_vote(writable, Phase::Commit, vote, voters);
            self.multicast(cx, Msg::Commit(Shared::new(vote)));
            entry = self.log.get_mut(&seq).expect("present above");
        }
        let quorum = self.q.commit;
        if entry.commit_cert.is_none()
            && entry.commits.len() >= quorum
            && Entry::matching(&entry.commits, &digest) >= quorum
        {
            let pp = entry.pre_prepare.clone().expect("present above");
            let mut commits = Vec::with_capacity(entry.commits.len());
            commits.extend(entry.commits.iter().filter(|v| v.digest == digest).copied());
            let cert = CommitCert {
                pre_prepare: Arc::clone(&pp),
                commits,
            };
            self.assert_commit_quorum(&cert, "formed");
            self.assert_within_watermarks(seq, "commits");
            let entry = entry_mut(&mut self.log, seq);
            entry.commit_cert = Some(cert);
            if entry.decided.is_none() {
                entry.decided = Some(pp);
            }
        }
        self.execute_ready(cx);
    }

    /// Entry `seq` has its pre-prepare `pp` and 2f matching prepares: it is prepared, with
    /// a prepared certificate (and decided, under the `no-commit` mutant).
    fn form_prepared(&mut self, seq: Seq) {
        let quorum = self.q.prepared();
        let entry = entry_mut(&mut self.log, seq);
        let pp = entry.pre_prepare.clone().expect("advance checked it");
        let primary = primary_of(pp.view, self.p.n);
        entry.prepared = true;
        let mut prepares = Vec::with_capacity(quorum);
        prepares.extend(
            entry
                .prepares
                .iter()
                .filter(|v| v.digest == pp.digest && NodeId(v.replica) != primary)
                .take(quorum)
                .copied(),
        );
        let decide = self.seam.decides_when_prepared() && entry.decided.is_none();
        let cert = PreparedCert {
            pre_prepare: Arc::clone(&pp),
            prepares,
        };
        self.assert_prepared_quorum(&cert, "formed");
        if decide {
            self.assert_within_watermarks(seq, "decides");
        }
        let entry = entry_mut(&mut self.log, seq);
        entry.prepared_cert = Some(cert);
        if decide {
            entry.decided = Some(pp);
        }
    }

    // ---- Execution ----------------------------------------------------------------------

    /// Executes decided batches in sequence order, as far as they go.
    pub(super) fn execute_ready(&mut self, cx: &mut Context<NodeWith<S>>) {
        let mut progressed = false;
        loop {
            let seq = self.last_executed + 1;
            let Some(pp) = self.log.get(&seq).and_then(|e| e.decided.clone()) else {
                break;
            };
            self.execute(seq, &pp, cx);
            progressed = true;
        }
        if progressed {
            self.last_progress = cx.now();
            self.view_changes_unproductive = 0;
            self.try_propose(cx);
        }
    }

    fn execute(&mut self, seq: Seq, pp: &PrePrepare, cx: &mut Context<NodeWith<S>>) {
        self.assert_within_watermarks(seq, "executes");
        let mut executed = Vec::with_capacity(pp.batch.len());
        for request in pp.batch.iter() {
            if !self.is_client(request.client) {
                continue; // unreachable for checked batches; never index out of range
            }
            let ci = self.client_index(request.client);
            let (last, cached) = self.replies.get(ci).unwrap_or((0, 0));
            if request.number > last {
                let result = self.store.apply(&request.op);
                self.replies.set(ci, request.number, result);
                executed.push(Execution {
                    client: request.client,
                    number: request.number,
                    op: request.op,
                    result,
                });
                self.reply(cx, request.client, request.number, result);
            } else if request.number == last {
                self.reply(cx, request.client, last, cached);
            }
            if self.pending[ci].0 != 0 && self.pending[ci].0 <= request.number.max(last) {
                self.pending[ci] = (0, None);
                self.pending_count -= 1;
            }
        }
        self.last_executed = seq;
        // With the digest checked on arrival the claimed digest is the batch's; without
        // (the `no-digest-check` mutant) report what was really executed.
        let digest = if self.seam.checks_digests() {
            pp.digest
        } else {
            batch_digest(&pp.batch)
        };
        cx.output(Output::Executed {
            seq,
            view: pp.view,
            digest,
            requests: executed,
        });
        if seq % self.p.checkpoint_interval == 0 {
            self.take_checkpoint(seq, cx);
        }
    }

    pub(super) fn reply(
        &mut self,
        cx: &mut Context<NodeWith<S>>,
        client: NodeId,
        number: u64,
        result: u64,
    ) {
        let reply = Reply::signed(&self.crypto, self.view, client, number, result);
        self.send(cx, client, Msg::Reply(Arc::new(reply)));
    }

    // ---- Checkpoints and garbage collection ---------------------------------------------

    fn take_checkpoint(&mut self, seq: Seq, cx: &mut Context<NodeWith<S>>) {
        let snapshot = Arc::new(Snapshot {
            store: self.store.clone(),
            replies: self.replies.clone(),
        });
        let digest = snapshot.digest();
        self.snapshots.insert(seq, snapshot);
        cx.output(Output::Checkpointed { seq, digest });
        let checkpoint = Checkpoint::signed(&self.crypto, seq, digest);
        self.multicast(cx, Msg::Checkpoint(Shared::new(checkpoint)));
        self.record_checkpoint(checkpoint, cx);
    }

    fn on_checkpoint(
        &mut self,
        from: NodeId,
        c: Shared<Checkpoint>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if !self.is_replica(from) || c.replica != from.0 {
            return self.drop_msg(cx, "checkpoint", from, "not the replica's own checkpoint");
        }
        if c.seq % self.p.checkpoint_interval != 0 || c.seq == 0 {
            return self.drop_msg(cx, "checkpoint", from, "not at a checkpoint interval");
        }
        if !c.verified(&self.crypto, 0, |c| c.verify(&self.crypto)) {
            return self.drop_msg(cx, "checkpoint", from, "bad signature");
        }
        self.note_claim(from.0, 0, c.seq);
        self.record_checkpoint(*c, cx);
    }

    fn record_checkpoint(&mut self, c: Checkpoint, cx: &mut Context<NodeWith<S>>) {
        // Far-future checkpoints only count as evidence that we fell behind; storing them
        // would let one replica fill our memory.
        if c.seq <= self.low || c.seq > self.high().saturating_add(self.p.window) {
            return;
        }
        let votes = self.checkpoints.entry(c.seq).or_default();
        let bit = 1u128 << c.replica;
        if votes.mask & bit != 0 {
            return;
        }
        votes.mask |= bit;
        votes.votes.push(c);
        // Count first: the proof is collected only once there is a quorum.
        let matching = votes.votes.iter().filter(|v| v.digest == c.digest).count();
        if matching >= self.q.stable() {
            let mut proof = Vec::with_capacity(matching);
            proof.extend(votes.votes.iter().filter(|v| v.digest == c.digest).copied());
            self.make_stable(c.seq, c.digest, proof, cx);
        }
    }

    /// A checkpoint became stable: move the low watermark and discard what it covers.
    pub(super) fn make_stable(
        &mut self,
        seq: Seq,
        digest: Digest,
        proof: Vec<Checkpoint>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if seq <= self.low {
            return;
        }
        self.assert_stable_quorum(seq, &digest, &proof);
        if let Some(own) = self.snapshots.get(&seq) {
            if own.digest() != digest {
                // Only a faulty replica (or a mutant) gets here; the checks report it.
                cx.annotate(format!(
                    "my state at checkpoint {seq} differs from the stable one"
                ));
                self.snapshots.remove(&seq);
            }
        }
        self.low = seq;
        self.stable_digest = digest;
        self.stable_proof = proof;
        self.log.remove_below(seq + 1);
        self.checkpoints = self.checkpoints.split_off(&(seq + 1));
        self.snapshots = self.snapshots.split_off(&seq);
        if self.next_seq <= seq {
            self.next_seq = seq + 1;
        }
        self.save(cx);
        if self.last_executed < seq {
            // The others moved on without us: fetch the state at the stable checkpoint.
            self.send_fetch(cx);
        }
        self.try_propose(cx);
    }

    // ---- Housekeeping -------------------------------------------------------------------

    pub(super) fn on_tick(&mut self, cx: &mut Context<NodeWith<S>>) {
        self.seam.announce(cx);
        self.tick_armed = false;
        let now = cx.now();
        let stalled = self.last_executed == self.executed_at_last_tick;
        self.executed_at_last_tick = self.last_executed;
        match self.changing {
            Some(changing) => {
                // A view change for a later view supports this one too: its sender has
                // left every earlier view.
                let supporters = self
                    .latest_vc
                    .iter()
                    .flatten()
                    .filter(|vc| vc.new_view >= changing.target)
                    .count();
                // As in PBFT, the timer that moves on to the next view runs only once
                // 2f+1 replicas want this one; until then, keep asking.
                if supporters >= self.q.stable()
                    && now.saturating_sub(changing.since) >= self.view_change_timeout()
                {
                    self.start_view_change(changing.target.saturating_add(1), cx);
                } else {
                    self.resend_view_change(cx);
                }
            }
            None => {
                if self.pending_count > 0
                    && now.saturating_sub(self.last_progress) >= self.view_change_timeout()
                {
                    cx.annotate(format!(
                        "suspect primary {} of view {}: no request executed for {:?}",
                        self.primary(),
                        self.view,
                        now.saturating_sub(self.last_progress)
                    ));
                    self.start_view_change(self.view.saturating_add(1), cx);
                } else if stalled {
                    self.retransmit(cx);
                }
            }
        }
        if stalled
            && (self.vouched(&self.claimed_seq) > self.last_executed
                || self.vouched(&self.claimed_view) > self.view)
        {
            self.send_fetch(cx);
        }
        if self.has_work() {
            self.arm_tick(cx);
        }
    }

    /// Re-sends this replica's messages for the first uncommitted log entries and its
    /// checkpoints that are not stable yet, in case they were lost.
    fn retransmit(&mut self, cx: &mut Context<NodeWith<S>>) {
        let mut out = Vec::new();
        for (_, entry) in self
            .log
            .range(self.last_executed + 1..)
            .filter(|(_, e)| e.commit_cert.is_none())
            .take(RETRANSMIT_ENTRIES_MAX)
        {
            let Some(pp) = &entry.pre_prepare else {
                continue;
            };
            if self.is_primary() {
                out.push(Msg::PrePrepare(Shared::new(Arc::clone(pp))));
            }
            for vote in entry.prepares.iter().filter(|v| v.replica == self.me.0) {
                out.push(Msg::Prepare(Shared::new(*vote)));
            }
            for vote in entry.commits.iter().filter(|v| v.replica == self.me.0) {
                out.push(Msg::Commit(Shared::new(*vote)));
            }
        }
        // Our checkpoints that are not stable yet: lost checkpoint messages would otherwise
        // hold the watermarks back for good.
        for votes in self.checkpoints.values() {
            for c in votes.votes.iter().filter(|c| c.replica == self.me.0) {
                out.push(Msg::Checkpoint(Shared::new(*c)));
            }
        }
        for msg in out {
            self.multicast(cx, msg);
        }
    }

    pub(super) fn waiting_for(&self) -> Option<String> {
        if let Some(c) = self.changing {
            return Some(format!(
                "a new view {} (have view changes from {} replicas)",
                c.target,
                self.latest_vc
                    .iter()
                    .flatten()
                    .filter(|vc| vc.new_view == c.target)
                    .count()
            ));
        }
        let next = self.last_executed + 1;
        if let Some((entry, pp)) = self
            .log
            .get(&next)
            .and_then(|e| e.pre_prepare.as_ref().map(|pp| (e, pp)))
        {
            return Some(format!(
                "sequence {next} in view {}: {} of {} prepares, {} of {} commits",
                self.view,
                Entry::matching(&entry.prepares, &pp.digest),
                self.q.prepared(),
                Entry::matching(&entry.commits, &pp.digest),
                self.q.commit
            ));
        }
        let vouched = self.vouched(&self.claimed_seq);
        if vouched > self.last_executed {
            return Some(format!(
                "catching up from sequence {next} to {vouched}, which f+1 replicas reached"
            ));
        }
        if self.pending_count > 0 {
            return Some(format!(
                "{} pending requests to be ordered by primary {}",
                self.pending_count,
                self.primary()
            ));
        }
        None
    }

    /// Installs the state at a stable checkpoint (state transfer or a new view's
    /// checkpoint), discarding everything it covers.
    pub(super) fn load_state(
        &mut self,
        seq: Seq,
        snapshot: Arc<Snapshot>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        self.store = snapshot.store.clone();
        self.replies = snapshot.replies.clone();
        self.last_executed = seq;
        self.last_progress = cx.now();
        self.snapshots.insert(seq, Arc::clone(&snapshot));
        // Pending requests the state already covers are done.
        for ci in 0..self.pending.len() {
            let executed = self.replies.get(ci).map_or(0, |e| e.0);
            if self.pending[ci].0 != 0 && self.pending[ci].0 <= executed {
                self.pending[ci] = (0, None);
                self.pending_count -= 1;
            }
            self.queued[ci] = self.queued[ci].max(executed);
        }
        let executed = self.executed_table();
        cx.output(Output::StateLoaded {
            seq,
            digest: snapshot.digest(),
            reason: LoadReason::Transfer,
            executed,
        });
        cx.annotate(format!("state transfer: now at checkpoint {seq}"));
        self.execute_ready(cx);
    }
}
