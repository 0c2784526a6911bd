//! Catch-up: a replica that fell behind (cut off by a partition, its messages lost, or
//! restarted) asks the others with a `Fetch` for what it misses, and they answer with
//! what proves itself: the new-view message of a later view, their stable checkpoint
//! (with 2f+1 checkpoint signatures) if the replica does not know it, with the state
//! itself when the replica has not executed that far, and commit certificates (a pre-prepare with 2f+1 matching commits) for the sequence
//! numbers after it.
//!
//! A replica fetches when its housekeeping tick finds it made no progress while f+1
//! other replicas' signed messages show they are further (so at least one correct replica
//! is), and at once when it learns of a stable checkpoint beyond its own execution.

use super::messages::{
    check_batch, check_committed, check_stable_proof, CommitCert, Fetch, FetchReply, Msg,
    StableCheckpoint,
};
use super::replica::{entry_mut, Replica};
use super::{NodeWith, TestSeam};
use rehearsal_sim_core::{Context, NodeId};
use std::sync::Arc;

impl<S: TestSeam> Replica<S> {
    pub(super) fn send_fetch(&mut self, cx: &mut Context<NodeWith<S>>) {
        let fetch = Fetch::signed(&self.crypto, self.view, self.low, self.last_executed + 1);
        self.multicast(cx, Msg::Fetch(Arc::new(fetch)));
    }

    pub(super) fn on_fetch(
        &mut self,
        from: NodeId,
        fetch: Arc<Fetch>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if !self.is_replica(from) || fetch.replica != from.0 || from == self.me {
            return self.drop_msg(cx, "fetch", from, "not the replica's own fetch");
        }
        if !fetch.verify(&self.crypto) {
            return self.drop_msg(cx, "fetch", from, "bad signature");
        }
        let new_view = if fetch.view < self.view && self.changing.is_none() {
            self.new_view.clone()
        } else {
            None
        };
        // Our stable checkpoint, if the asker does not know it: with the state itself if
        // the asker has not executed that far.
        let checkpoint =
            (self.low > fetch.low || fetch.next <= self.low).then(|| StableCheckpoint {
                seq: self.low,
                digest: self.stable_digest,
                proof: self.stable_proof.clone(),
                snapshot: if fetch.next <= self.low {
                    self.snapshots.get(&self.low).cloned()
                } else {
                    None
                },
            });
        let first = fetch.next.max(self.low + 1);
        // At most one window of certificates per answer: a bound on the reply's size.
        let certs: Vec<CommitCert> = self
            .log
            .range(first..)
            .filter_map(|(_, e)| e.commit_cert.clone())
            .take(self.p.window as usize)
            .collect();
        if new_view.is_none() && checkpoint.is_none() && certs.is_empty() {
            return;
        }
        let reply = FetchReply {
            new_view,
            checkpoint,
            certs,
        };
        self.send(cx, from, Msg::FetchReply(Arc::new(reply)));
    }

    pub(super) fn on_fetch_reply(
        &mut self,
        from: NodeId,
        reply: Arc<FetchReply>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if !self.is_replica(from) || from == self.me {
            return self.drop_msg(cx, "fetch-reply", from, "not from another replica");
        }
        if let Some(nv) = &reply.new_view {
            self.on_new_view(from, Arc::clone(nv), cx);
        }
        if let Some(checkpoint) = &reply.checkpoint {
            self.on_stable_checkpoint(from, checkpoint, cx);
        }
        for cert in &reply.certs {
            self.on_commit_cert(from, cert, cx);
        }
    }

    fn on_stable_checkpoint(
        &mut self,
        from: NodeId,
        c: &StableCheckpoint,
        cx: &mut Context<NodeWith<S>>,
    ) {
        let needs_state = c.seq > self.last_executed && c.snapshot.is_some();
        if c.seq <= self.low && !needs_state {
            return; // we know it already
        }
        if let Err(why) = check_stable_proof(c.seq, &c.digest, &c.proof, &self.crypto, &self.q) {
            return self.drop_msg(cx, "stable checkpoint", from, &why);
        }
        if let Some(snapshot) = c.snapshot.as_ref().filter(|_| c.seq > self.last_executed) {
            if snapshot.digest() != c.digest {
                return self.drop_msg(
                    cx,
                    "state transfer",
                    from,
                    "state does not match its checkpoint",
                );
            }
            if snapshot.replies.len() != self.p.clients as usize {
                return self.drop_msg(cx, "state transfer", from, "reply cache of the wrong size");
            }
            self.load_state(c.seq, Arc::clone(snapshot), cx);
        }
        if c.seq > self.low {
            self.make_stable(c.seq, c.digest, c.proof.clone(), cx);
        }
    }

    fn on_commit_cert(&mut self, from: NodeId, cert: &CommitCert, cx: &mut Context<NodeWith<S>>) {
        let seq = cert.pre_prepare.seq;
        if seq <= self.last_executed || !self.in_window(seq) {
            return;
        }
        if self.log.get(&seq).is_some_and(|e| e.decided.is_some()) {
            return;
        }
        if let Err(why) = check_committed(cert, &self.crypto, &self.q, self.seam.checks_digests()) {
            return self.drop_msg(cx, "commit certificate", from, &why);
        }
        if let Err(why) = check_batch(&cert.pre_prepare.batch, &self.crypto, |c| self.is_client(c), |r| {
            self.verified_request(r)
        })
        {
            return self.drop_msg(cx, "commit certificate", from, &why);
        }
        self.assert_commit_quorum(cert, "accepted");
        self.assert_within_watermarks(seq, "commits");
        let entry = entry_mut(&mut self.log, seq);
        entry.decided = Some(Arc::clone(&cert.pre_prepare));
        entry.commit_cert = Some(cert.clone());
        self.execute_ready(cx);
    }
}
