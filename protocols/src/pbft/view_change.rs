//! View changes: a replica that suspects the primary multicasts a view-change message with
//! its stable checkpoint and prepared certificates; the primary of the new view collects
//! 2f+1 of them and multicasts a new-view message whose pre-prepares re-propose, for
//! every sequence number between the latest stable checkpoint and the highest prepared
//! one, the batch prepared in the highest view, or a null batch where none prepared.
//! Backups recompute those pre-prepares from the same view changes before accepting them.

use super::messages::{
    batch_digest, check_batch, check_pre_prepare, check_prepared, check_stable_proof, primary_of,
    Batch, Checkpoint, Msg, NewView, PrePrepare, Refusal, Seq, View, ViewChange,
};
use super::replica::{Changing, Replica};
use super::{NodeWith, Output, TestSeam};
use crate::crypto::Digest;
use rehearsal_sim_core::{Context, NodeId};
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a new view starts from, computed identically by the new primary and every backup.
pub(super) struct Plan {
    /// min-s: the latest stable checkpoint among the view changes, with its proof.
    pub min_s: Seq,
    pub stable_digest: Digest,
    pub stable_proof: Vec<Checkpoint>,
    /// For each sequence number in (min-s, max-s]: the batch to re-propose (with the
    /// digest it prepared under), or `None` for a null batch.
    pub slots: Vec<(Seq, Option<(Digest, Batch)>)>,
}

impl Plan {
    fn max_s(&self) -> Seq {
        self.slots.last().map_or(self.min_s, |s| s.0)
    }
}

impl<S: TestSeam> Replica<S> {
    /// Suspects the primary: stop taking part in the current view and ask for `target`.
    pub(super) fn start_view_change(&mut self, target: View, cx: &mut Context<NodeWith<S>>) {
        let current = self.changing.map_or(self.view, |c| c.target);
        if target <= current {
            return;
        }
        self.changing = Some(Changing {
            target,
            since: cx.now(),
        });
        self.view_changes_unproductive += 1;
        self.queue.clear();
        let prepared = if !self.seam.reports_prepared() {
            Vec::new()
        } else {
            self.log
                .range(self.low + 1..)
                .filter_map(|(_, e)| e.prepared_cert.clone())
                .collect()
        };
        for cert in &prepared {
            self.assert_prepared_quorum(cert, "asks for a new view with");
        }
        let vc = Arc::new(ViewChange::signed(
            &self.crypto,
            target,
            self.low,
            self.stable_digest,
            self.stable_proof.clone(),
            prepared,
        ));
        cx.annotate(format!(
            "view change to {target} ({} prepared certificates)",
            vc.prepared.len()
        ));
        self.latest_vc[self.me.index()] = Some(Arc::clone(&vc));
        self.multicast(cx, Msg::ViewChange(vc));
        self.save(cx);
        self.try_new_view(cx);
        self.arm_tick(cx);
    }

    /// View-change messages may be lost: repeat ours while the change lasts.
    pub(super) fn resend_view_change(&mut self, cx: &mut Context<NodeWith<S>>) {
        let Some(changing) = self.changing else {
            return;
        };
        if let Some(vc) = self.latest_vc[self.me.index()].clone() {
            if vc.new_view == changing.target {
                self.multicast(cx, Msg::ViewChange(vc));
            }
        }
        self.try_new_view(cx);
    }

    pub(super) fn on_view_change(
        &mut self,
        from: NodeId,
        vc: Arc<ViewChange>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if !self.is_replica(from) || vc.replica != from.0 || from == self.me {
            return self.drop_msg(cx, "view-change", from, "not the replica's own view change");
        }
        if !vc.verify_signature(&self.crypto) {
            return self.drop_msg(cx, "view-change", from, "bad signature");
        }
        if vc.new_view <= self.view {
            // The sender is behind: the new-view message of our view brings it here.
            if self.changing.is_none() {
                if let Some(nv) = self.new_view.clone() {
                    self.send(cx, from, Msg::NewView(nv));
                }
            }
            return;
        }
        let known = self.latest_vc[from.index()]
            .as_ref()
            .map_or(0, |v| v.new_view);
        if vc.new_view <= known {
            return; // a retransmission, or older than what we hold
        }
        if let Err(why) = self.check_view_change(&vc) {
            return self.drop_msg(cx, "view-change", from, &why);
        }
        self.latest_vc[from.index()] = Some(vc);
        // f+1 replicas want a later view: at least one correct replica suspects the
        // primary, so join them rather than wait for our own timer.
        let current = self.changing.map_or(self.view, |c| c.target);
        let mut later: Vec<View> = self
            .latest_vc
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.me.index())
            .filter_map(|(_, vc)| vc.as_ref().map(|vc| vc.new_view))
            .filter(|&v| v > current)
            .collect();
        if later.len() > self.p.f as usize {
            later.sort_unstable_by(|a, b| b.cmp(a));
            let target = later[self.p.f as usize];
            self.start_view_change(target, cx);
        }
        self.try_new_view(cx);
    }

    /// Checks a view change's checkpoint proof and prepared certificates.
    fn check_view_change(&self, vc: &ViewChange) -> Result<(), Refusal> {
        check_stable_proof(
            vc.stable_seq,
            &vc.stable_digest,
            &vc.stable_proof,
            &self.crypto,
            &self.q,
        )?;
        let mut seen = std::collections::BTreeSet::new();
        for cert in &vc.prepared {
            let pp = &cert.pre_prepare;
            if pp.view >= vc.new_view {
                return Err(format!(
                    "prepared certificate of view {} is not older than view {}",
                    pp.view, vc.new_view
                ));
            }
            let in_window =
                pp.seq > vc.stable_seq && pp.seq <= vc.stable_seq.saturating_add(self.p.window);
            if self.seam.enforces_watermarks() && !in_window {
                return Err(format!(
                    "prepared certificate for {} outside ({}, {}]",
                    pp.seq,
                    vc.stable_seq,
                    vc.stable_seq.saturating_add(self.p.window)
                ));
            }
            if !seen.insert(pp.seq) {
                return Err(format!("two prepared certificates for {}", pp.seq));
            }
            check_prepared(cert, &self.crypto, &self.q, self.seam.checks_digests())?;
            check_batch(&pp.batch, &self.crypto, |c| self.is_client(c), |r| {
                self.verified_request(r)
            })?;
        }
        Ok(())
    }

    /// The new primary: with 2f+1 view changes for the view it leads, announce it.
    pub(super) fn try_new_view(&mut self, cx: &mut Context<NodeWith<S>>) {
        let Some(changing) = self.changing else {
            return;
        };
        if primary_of(changing.target, self.p.n) != self.me {
            return;
        }
        // Our own view change first, then the others' in replica order.
        let own = self.latest_vc[self.me.index()].clone();
        let vcs: Vec<Arc<ViewChange>> = own
            .into_iter()
            .chain(
                self.latest_vc
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != self.me.index())
                    .filter_map(|(_, vc)| vc.clone()),
            )
            .filter(|vc| vc.new_view == changing.target)
            .take(self.q.stable())
            .collect();
        if vcs.len() < self.q.stable() {
            return;
        }
        let plan = match self.plan(&vcs) {
            Ok(plan) => plan,
            Err(why) => {
                cx.annotate(format!("cannot announce view {}: {why}", changing.target));
                return;
            }
        };
        let pre_prepares = plan
            .slots
            .iter()
            .map(|(seq, slot)| {
                let (digest, batch) = match slot {
                    Some((digest, batch)) => (*digest, Arc::clone(batch)),
                    None => {
                        let empty: Batch = Arc::new([]);
                        (batch_digest(&empty), empty)
                    }
                };
                Arc::new(PrePrepare::signed_with_digest(
                    &self.crypto,
                    changing.target,
                    *seq,
                    digest,
                    batch,
                ))
            })
            .collect();
        let nv = Arc::new(NewView::signed(
            &self.crypto,
            changing.target,
            vcs,
            pre_prepares,
        ));
        self.multicast(cx, Msg::NewView(Arc::clone(&nv)));
        self.enter_new_view(nv, plan, cx);
    }

    /// Computes where a new view starts from its view changes.
    pub(super) fn plan(&self, vcs: &[Arc<ViewChange>]) -> Result<Plan, Refusal> {
        let best = vcs
            .iter()
            .max_by(|a, b| {
                a.stable_seq
                    .cmp(&b.stable_seq)
                    .then(b.replica.cmp(&a.replica))
            })
            .ok_or("no view changes")?;
        let min_s = best.stable_seq;
        // Per sequence number above min-s: the certificate of the highest view.
        let mut chosen: BTreeMap<Seq, &PrePrepare> = BTreeMap::new();
        for vc in vcs {
            for cert in &vc.prepared {
                // Others' certificates were checked on arrival (`check_view_change`).
                self.assert_prepared_quorum(cert, "plans a new view on");
                let pp = &*cert.pre_prepare;
                if pp.seq <= min_s {
                    continue;
                }
                match chosen.get(&pp.seq) {
                    Some(prev) if prev.view >= pp.view => {}
                    _ => {
                        chosen.insert(pp.seq, pp);
                    }
                }
            }
        }
        let max_s = chosen.keys().next_back().copied().unwrap_or(min_s);
        // Correct view changes keep max-s within L of min-s; this bound holds even when
        // the watermark checks are off (a mutant), so a view cannot ask for unbounded work.
        let slots_max = 4 * self.p.window;
        if max_s - min_s > slots_max {
            return Err(format!(
                "it would span sequence numbers {}..={max_s}, more than {slots_max}",
                min_s + 1
            ));
        }
        let slots = (min_s + 1..=max_s)
            .map(|seq| {
                let slot = chosen
                    .get(&seq)
                    .map(|pp| (pp.digest, Arc::clone(&pp.batch)));
                (seq, slot)
            })
            .collect();
        Ok(Plan {
            min_s,
            stable_digest: best.stable_digest,
            stable_proof: best.stable_proof.clone(),
            slots,
        })
    }

    pub(super) fn on_new_view(
        &mut self,
        from: NodeId,
        nv: Arc<NewView>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if !self.is_replica(from) {
            return self.drop_msg(cx, "new-view", from, "not from a replica");
        }
        // Once we asked for view `target` we may not take part in an earlier one.
        let floor = self
            .changing
            .map_or(self.view.saturating_add(1), |c| c.target);
        if nv.view < floor {
            return; // stale, or a retransmission of the view we are in
        }
        if !nv.verify_signature(&self.crypto, self.p.n) {
            return self.drop_msg(cx, "new-view", from, "bad signature");
        }
        match self.check_new_view(&nv) {
            Ok(plan) => self.enter_new_view(nv, plan, cx),
            Err(why) => self.drop_msg(cx, "new-view", from, &why),
        }
    }

    /// Checks the view changes a new view rests on and recomputes its pre-prepares.
    fn check_new_view(&self, nv: &NewView) -> Result<Plan, Refusal> {
        let mut seen = 0u128;
        for vc in &nv.view_changes {
            if vc.new_view != nv.view || vc.replica >= self.p.n || seen & (1 << vc.replica) != 0 {
                return Err(format!(
                    "view change of {} does not belong",
                    NodeId(vc.replica)
                ));
            }
            seen |= 1 << vc.replica;
            if !vc.verify_signature(&self.crypto) {
                return Err(format!(
                    "view change of {} has a bad signature",
                    NodeId(vc.replica)
                ));
            }
            self.check_view_change(vc)?;
        }
        if nv.view_changes.len() < self.q.stable() {
            return Err(format!(
                "rests on {} view changes, needs {}",
                nv.view_changes.len(),
                self.q.stable()
            ));
        }
        let plan = self.plan(&nv.view_changes)?;
        if plan.slots.len() != nv.pre_prepares.len() {
            return Err(format!(
                "{} pre-prepares where the view changes call for {}",
                nv.pre_prepares.len(),
                plan.slots.len()
            ));
        }
        let empty = batch_digest(&[]);
        for (pp, (seq, slot)) in nv.pre_prepares.iter().zip(&plan.slots) {
            let digest = slot.as_ref().map_or(empty, |s| s.0);
            if pp.view != nv.view || pp.seq != *seq || pp.digest != digest {
                return Err(format!(
                    "pre-prepare for {seq} is not the one the view changes call for"
                ));
            }
            check_pre_prepare(pp, &self.crypto, &self.q, self.seam.checks_digests())?;
            check_batch(&pp.batch, &self.crypto, |c| self.is_client(c), |r| {
                self.verified_request(r)
            })?;
        }
        Ok(plan)
    }

    /// Enters the view a valid new-view message announces.
    pub(super) fn enter_new_view(
        &mut self,
        nv: Arc<NewView>,
        plan: Plan,
        cx: &mut Context<NodeWith<S>>,
    ) {
        self.assert_new_view_quorum(&nv);
        let view = nv.view;
        self.view = view;
        cx.enter_round(view);
        self.changing = None;
        self.new_view = Some(Arc::clone(&nv));
        self.last_progress = cx.now();
        // Nothing may be proposed before the new view's own pre-prepares are in place.
        self.queue.clear();
        if plan.min_s > self.low {
            self.make_stable(
                plan.min_s,
                plan.stable_digest,
                plan.stable_proof.clone(),
                cx,
            );
        }
        let max_s = plan.max_s();
        // The previous view's messages are void; keep certificates and decisions, and
        // drop entries that hold nothing else.
        for entry in self.log.values_mut() {
            Arc::make_mut(entry).reset_for_new_view();
        }
        self.log.retain(|&seq, e| {
            e.decided.is_some() || e.prepared_cert.is_some() || (seq > plan.min_s && seq <= max_s)
        });
        self.next_seq = max_s.max(self.low) + 1;
        // Requests the new view's pre-prepares carry count as proposed.
        for (ci, q) in self.queued.iter_mut().enumerate() {
            *q = self.replies.get(ci).map_or(0, |e| e.0);
        }
        for pp in &nv.pre_prepares {
            for r in pp.batch.iter() {
                if self.is_client(r.client) {
                    let ci = self.client_index(r.client);
                    self.queued[ci] = self.queued[ci].max(r.number);
                }
            }
        }
        if primary_of(view, self.p.n) == self.me {
            // Propose what clients asked us for while we were a backup.
            for ci in 0..self.pending.len() {
                if let (number, Some(body)) = &self.pending[ci] {
                    if *number > self.queued[ci] {
                        self.queued[ci] = *number;
                        self.queue.push_back(Arc::clone(body));
                    }
                }
            }
        }
        self.save(cx);
        cx.output(Output::ViewEntered { view });
        cx.annotate(format!(
            "entered view {view}: primary {}, re-proposing {}..={max_s}",
            self.primary(),
            plan.min_s + 1
        ));
        for pp in &nv.pre_prepares {
            if pp.seq > self.low {
                self.accept_pre_prepare(Arc::clone(pp), cx);
            }
        }
        // Messages of this view that came before its new-view message.
        for (from, msg) in std::mem::take(&mut self.future) {
            self.dispatch(from, msg, cx);
        }
        self.try_propose(cx);
    }
}
