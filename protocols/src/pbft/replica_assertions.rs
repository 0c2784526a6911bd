//! A replica's assertions on its own state stop a broken replica at once: each test
//! corrupts one replica's state the way a bug in its own code would (a log entry outside
//! the window, a vote counted twice) and expects the next step to panic. Byzantine input
//! cannot get there: messages are validated on arrival, so these states are reachable
//! only through a bug, or through these tests reaching into the replica.

use super::messages::{
    batch_digest, Batch, Checkpoint, CommitCert, NewView, Phase, PrePrepare, PreparedCert, Seq,
    ViewChange, Vote,
};
use super::replica::{entry_mut, Entry, Replica};
use super::{Config, Node};
use crate::crypto::{Crypto, Shared};
use rehearsal_sim_core::{derive_rng, Context, Effect, NodeId, SimRng, Time};
use std::sync::Arc;

/// Replica 1 of a 4-replica group (f = 1, watermark window (0, 64]), with every node's
/// keys to forge the others' messages and a context to call its handlers with.
struct Harness {
    keys: Vec<Crypto>,
    replica: Replica,
    rng: SimRng,
    next_timer: u64,
    effects: Vec<Effect<Node>>,
}

const ME: usize = 1;

impl Harness {
    fn new() -> Harness {
        let config = Config::default();
        let keys = Crypto::generate(config.crypto, config.key_seed, config.nodes());
        let own = Crypto::generate(config.crypto, config.key_seed, config.nodes()).swap_remove(ME);
        let replica = Replica::new(&config, own);
        Harness {
            keys,
            replica,
            rng: derive_rng(1, "node", ME as u64),
            next_timer: 0,
            effects: Vec::new(),
        }
    }

    /// Calls `step` on the replica with a fresh context.
    fn step<R>(&mut self, step: impl FnOnce(&mut Replica, &mut Context<Node>) -> R) -> R {
        self.effects.clear();
        let mut cx = Context::new(
            NodeId(ME as u32),
            Time::ZERO,
            &mut self.rng,
            &mut self.next_timer,
            &mut self.effects,
        );
        step(&mut self.replica, &mut cx)
    }

    /// The pre-prepare of view 0's primary (replica 0) for an empty batch at `seq`.
    fn pre_prepare(&self, seq: Seq) -> Arc<PrePrepare> {
        let empty: Batch = Arc::new([]);
        Arc::new(PrePrepare::signed(&self.keys[0], 0, seq, empty))
    }

    fn vote(&self, replica: usize, phase: Phase, pp: &PrePrepare) -> Vote {
        Vote::signed(&self.keys[replica], phase, pp.view, pp.seq, pp.digest)
    }

    /// Puts an entry at `seq` into the log that has prepared and sent its commit, with
    /// the commits of `voters` (in that order, repeats included).
    fn prepared_entry(&mut self, seq: Seq, voters: &[usize]) {
        let pp = self.pre_prepare(seq);
        let commits: Vec<Vote> = voters
            .iter()
            .map(|&r| self.vote(r, Phase::Commit, &pp))
            .collect();
        let entry = entry_mut(&mut self.replica.log, seq);
        entry.pre_prepare = Some(pp);
        entry.prepared = true;
        entry.sent_commit = true;
        entry.commit_mask = voters.iter().fold(0, |mask, &r| mask | 1 << r);
        entry.commits = commits;
    }

    /// Replica `replica`'s view change to view 1 from the initial checkpoint.
    fn view_change(&self, replica: usize, prepared: Vec<PreparedCert>) -> Arc<ViewChange> {
        let digest = self.replica.stable_digest;
        Arc::new(ViewChange::signed(
            &self.keys[replica],
            1,
            0,
            digest,
            Vec::new(),
            prepared,
        ))
    }

    fn checkpoint(&self, replica: usize, seq: Seq) -> Checkpoint {
        Checkpoint::signed(&self.keys[replica], seq, batch_digest(&[]))
    }

    /// Enters view 1 (led by this replica) on the view changes of `replicas`.
    fn enter_view_1(&mut self, replicas: &[usize]) {
        let vcs: Vec<Arc<ViewChange>> = replicas
            .iter()
            .map(|&r| self.view_change(r, Vec::new()))
            .collect();
        let plan = self.replica.plan(&vcs).expect("an empty plan");
        let nv = Arc::new(NewView::signed(&self.keys[ME], 1, vcs, Vec::new()));
        self.step(|r, cx| r.enter_new_view(nv, plan, cx));
    }
}

// ---- The intact paths -----------------------------------------------------------------

#[test]
fn an_intact_replica_prepares_commits_and_executes() {
    let mut h = Harness::new();
    let pp = h.pre_prepare(1);
    let prepares = vec![
        h.vote(2, Phase::Prepare, &pp),
        h.vote(3, Phase::Prepare, &pp),
    ];
    let commits = vec![h.vote(0, Phase::Commit, &pp), h.vote(2, Phase::Commit, &pp)];
    let entry: &mut Entry = entry_mut(&mut h.replica.log, 1);
    entry.pre_prepare = Some(pp);
    entry.prepares = prepares;
    entry.prepare_mask = 0b1100;
    entry.commits = commits;
    entry.commit_mask = 0b0101;
    h.step(|r, cx| r.advance(1, cx));
    // Its own commit completes the quorum of 2f+1 = 3.
    assert_eq!(h.replica.last_executed(), 1);
    assert!(h.replica.log[&1].commit_cert.is_some());
}

#[test]
fn an_intact_replica_makes_a_checkpoint_stable_and_enters_a_new_view() {
    let mut h = Harness::new();
    let proof: Vec<Checkpoint> = [0, 2, 3].iter().map(|&r| h.checkpoint(r, 16)).collect();
    h.step(|r, cx| r.make_stable(16, batch_digest(&[]), proof, cx));
    assert_eq!(h.replica.low_watermark(), 16);

    let mut h = Harness::new();
    h.enter_view_1(&[0, 2, 3]);
    assert_eq!(h.replica.view(), 1);
}

// ---- Watermarks -------------------------------------------------------------------------

#[test]
#[should_panic(expected = "commits sequence 100 outside its watermarks (0, 64]")]
fn committing_above_the_high_watermark_stops_the_replica() {
    let mut h = Harness::new();
    // A log entry no handler would have made: it lies above h + L = 64.
    h.prepared_entry(100, &[0, 2, 3]);
    h.step(|r, cx| r.advance(100, cx));
}

#[test]
#[should_panic(expected = "executes sequence 1 outside its watermarks (10, 74]")]
fn executing_at_or_below_the_low_watermark_stops_the_replica() {
    let mut h = Harness::new();
    let pp = h.pre_prepare(1);
    entry_mut(&mut h.replica.log, 1).decided = Some(pp);
    // The window moved without discarding the log entries it covers.
    h.replica.low = 10;
    h.step(|r, cx| r.execute_ready(cx));
}

// ---- Certificates of distinct signers ------------------------------------------------------

#[test]
#[should_panic(
    expected = "formed a prepared certificate for sequence 1 with prepares from 1 distinct backups, needs 2"
)]
fn a_prepared_certificate_counting_one_backup_twice_stops_the_replica() {
    let mut h = Harness::new();
    let pp = h.pre_prepare(1);
    let prepare = h.vote(2, Phase::Prepare, &pp);
    let entry = entry_mut(&mut h.replica.log, 1);
    entry.pre_prepare = Some(pp);
    // Replica 2's prepare recorded twice: the one-vote-per-replica mask was bypassed.
    entry.prepares = vec![prepare, prepare];
    entry.prepare_mask = 1 << 2;
    h.step(|r, cx| r.advance(1, cx));
}

#[test]
#[should_panic(
    expected = "formed a commit certificate for sequence 1 with commits from 1 distinct replicas, needs 3"
)]
fn a_commit_certificate_counting_one_replica_three_times_stops_the_replica() {
    let mut h = Harness::new();
    h.prepared_entry(1, &[2, 2, 2]);
    h.step(|r, cx| r.advance(1, cx));
}

#[test]
#[should_panic(
    expected = "makes checkpoint 16 stable on checkpoints from 1 distinct replicas, needs 3"
)]
fn a_checkpoint_proof_counting_one_replica_three_times_stops_the_replica() {
    let mut h = Harness::new();
    let proof = vec![h.checkpoint(2, 16); 3];
    h.step(|r, cx| r.make_stable(16, batch_digest(&[]), proof, cx));
}

#[test]
#[should_panic(expected = "enters view 1 on view changes from 2 distinct replicas, needs 3")]
fn a_new_view_on_a_repeated_view_change_stops_the_replica() {
    let mut h = Harness::new();
    h.enter_view_1(&[0, 2, 2]);
}

#[test]
#[should_panic(
    expected = "plans a new view on a prepared certificate for sequence 1 with prepares from 1 distinct backups, needs 2"
)]
fn planning_on_a_prepared_certificate_counting_one_backup_twice_stops_the_replica() {
    let h = Harness::new();
    let pp = h.pre_prepare(1);
    let prepare = h.vote(2, Phase::Prepare, &pp);
    let cert = PreparedCert {
        pre_prepare: pp,
        prepares: vec![prepare, prepare],
    };
    let vcs = vec![
        h.view_change(0, vec![cert]),
        h.view_change(2, Vec::new()),
        h.view_change(3, Vec::new()),
    ];
    let _ = h.replica.plan(&vcs);
}

#[test]
#[should_panic(
    expected = "accepted a commit certificate for sequence 1 with commits from 2 distinct replicas, needs 3"
)]
fn an_accepted_commit_certificate_short_of_a_quorum_stops_the_replica() {
    let h = Harness::new();
    let pp = h.pre_prepare(1);
    let cert = CommitCert {
        commits: vec![h.vote(0, Phase::Commit, &pp), h.vote(2, Phase::Commit, &pp)],
        pre_prepare: pp,
    };
    // Validation (`check_committed`) refuses this certificate; the assertion is the
    // second line of defence should validation ever let one through.
    h.replica.assert_commit_quorum(&cert, "accepted");
}

// ---- Checked once ----------------------------------------------------------------------

/// A backup checks a client's signature once: a batch request identical to one it checked
/// on arrival and holds pending is taken as it is, while one that differs in anything (a
/// Byzantine primary's forgery of the same client and number) is checked, and refused.
#[test]
fn a_batch_request_skips_its_signature_check_only_if_it_is_the_one_checked_on_arrival() {
    use super::messages::{Msg, Op, Request};
    let mut h = Harness::new();
    let client = h.replica.p.n as usize; // the first client's node
    let request = Request::signed(&h.keys[client], 1, Op::Put { key: 7, value: 1 });
    let from = NodeId(client as u32);
    h.step(|r, cx| r.on_message(from, Msg::Request(Arc::new(request.clone())), cx));
    assert!(h.replica.verified_request(&request), "held pending after its check");
    // The forgery: another operation under the same client, number and signature.
    let forged = Request {
        op: Op::Put { key: 7, value: 1_000 },
        ..request.clone()
    };
    assert!(!h.replica.verified_request(&forged));
    let batch = |r: &Request| -> Batch { Arc::new([r.clone()]) };
    let bad = Arc::new(PrePrepare::signed(&h.keys[0], 0, 1, batch(&forged)));
    h.step(|r, cx| r.on_message(NodeId(0), Msg::PrePrepare(Shared::new(bad)), cx));
    assert!(
        h.replica.log.get(&1).is_none_or(|e| e.pre_prepare.is_none()),
        "a forged request in a batch is refused"
    );
    let good = Arc::new(PrePrepare::signed(&h.keys[0], 0, 1, batch(&request)));
    h.step(|r, cx| r.on_message(NodeId(0), Msg::PrePrepare(Shared::new(good)), cx));
    assert!(
        h.replica.log[&1].pre_prepare.is_some(),
        "the request it checked is accepted"
    );
}
