//! Test-only Byzantine replicas, switched on by a
//! [`Fault::Byzantine`](rehearsal_sim_core::Fault::Byzantine). A Byzantine replica runs
//! the protocol as before, but every message it sends passes through its behaviour, which
//! the simulator's [`Testing`](super::Testing) seam holds (the production node's
//! [`Correct`](super::Correct) seam has none):
//!
//! - `silent`: sends nothing at all.
//! - `equivocate`: as primary, sends one pre-prepare to a random part of the backups and a
//!   conflicting one for the same sequence number to the rest (either another batch under
//!   its own digest, or another batch under the *same* digest), each properly signed, and
//!   backs each with its own commit; as any replica, votes for the real digest to some
//!   replicas and for a made-up one to the others.
//! - `mutate`: small-scope mutations in the style of ByzzFuzz: half of its messages get one
//!   of view ±1, sequence number ±1, another digest, or another result, re-signed with
//!   its own key; and one large-scope mutation, a pre-prepare whose sequence number jumps
//!   2^32 ahead (the sequence-number exhaustion attack that watermarks stop).
//! - `twin`: the correct protocol, unchanged. The simulator runs a node as two instances
//!   sharing one identity and keys (Twins) and switches both to it: each runs PBFT
//!   correctly, but together they equivocate, so the replica is announced as faulty.
//! - `fuzzed`: the correct protocol, unchanged, whose messages round-based Byzantine
//!   fuzzing mutates (`@round R mutate N -> ...`): the simulator switches the sender to it
//!   before the first mutation, so the replica is announced as faulty.
//!
//! Every choice draws from the replica's `cx.rng()`, so runs stay reproducible. The replica
//! announces the switch with [`Output::Byzantine`](super::Output::Byzantine) before anything else, so checks count
//! it as faulty from then on.

use super::messages::{
    batch_digest, primary_of, Batch, Checkpoint, Msg, Phase, PrePrepare, Reply, Request,
    ViewChange, Vote,
};
use super::Node;
use crate::crypto::{Crypto, Digest, Shared};
use rehearsal_sim_core::rand::seq::SliceRandom;
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{Context, NodeId};
use std::str::FromStr;
use std::sync::Arc;

/// How a Byzantine replica misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Equivocate,
    Silent,
    Mutate,
    /// One of two instances of one replica (Twins): correct on its own.
    Twin,
    /// Correct, but its messages are mutated by the simulator (round-based fuzzing).
    Fuzzed,
}

/// The share of a mutating replica's messages that it mutates.
const MUTATE_PROBABILITY: f64 = 0.5;
/// How far ahead a pre-prepare's sequence number jumps under the large-scope mutation.
const FAR_AHEAD: u64 = 1 << 32;

impl Behavior {
    pub const NAMES: &'static [&'static str] = &["equivocate", "silent", "mutate", "twin", "fuzzed"];

    const ALL: [Behavior; 5] = [
        Behavior::Equivocate,
        Behavior::Silent,
        Behavior::Mutate,
        Behavior::Twin,
        Behavior::Fuzzed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Behavior::Equivocate => "equivocate",
            Behavior::Silent => "silent",
            Behavior::Mutate => "mutate",
            Behavior::Twin => "twin",
            Behavior::Fuzzed => "fuzzed",
        }
    }
}

crate::named::display_by_name!(Behavior);

impl FromStr for Behavior {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let kind = "PBFT Byzantine behaviour";
        crate::named::parse_named(s, kind, &Behavior::ALL, Behavior::name, Some("correct"))
    }
}

impl Behavior {
    /// Sends `msg` to `to` the way this behaviour does, from the replica holding `crypto`
    /// in a group of `n`: the [`Testing`](super::Testing) seam's send once a scenario
    /// switched the replica.
    pub(super) fn send(
        self,
        crypto: &Crypto,
        n: u32,
        cx: &mut Context<Node>,
        to: Vec<NodeId>,
        msg: Msg,
    ) {
        match self {
            Behavior::Silent => {}
            Behavior::Twin | Behavior::Fuzzed => cx.broadcast(to, msg),
            Behavior::Equivocate => equivocate(crypto, n, cx, to, msg),
            Behavior::Mutate => {
                let msg = if cx.rng().random_bool(MUTATE_PROBABILITY) {
                    mutate(crypto, cx, msg, to.first().copied())
                } else {
                    msg
                };
                cx.broadcast(to, msg);
            }
        }
    }
}

fn equivocate(crypto: &Crypto, n: u32, cx: &mut Context<Node>, mut to: Vec<NodeId>, msg: Msg) {
    if to.len() < 2 {
        return cx.broadcast(to, msg);
    }
    to.shuffle(cx.rng());
    let split = cx.rng().random_range(1..to.len());
    let (honest, fooled) = to.split_at(split);
    match msg {
        Msg::PrePrepare(pp) if primary_of(pp.view, n) == crypto.me() => {
            let Some(other) = altered(&pp.batch) else {
                return cx.broadcast(to, Msg::PrePrepare(pp));
            };
            let bad = if cx.rng().random_bool(0.5) {
                // The same digest over another batch: only the digest check stops it.
                PrePrepare::signed_with_digest(crypto, pp.view, pp.seq, pp.digest, other)
            } else {
                PrePrepare::signed(crypto, pp.view, pp.seq, other)
            };
            let bad_digest = bad.digest;
            cx.broadcast(honest.iter().copied(), Msg::PrePrepare(pp.clone()));
            cx.broadcast(fooled.iter().copied(), Msg::PrePrepare(Shared::new(Arc::new(bad))));
            // Back each version with our own commit, to push both towards a quorum.
            let good = Vote::signed(crypto, Phase::Commit, pp.view, pp.seq, pp.digest);
            let evil = Vote::signed(crypto, Phase::Commit, pp.view, pp.seq, bad_digest);
            cx.broadcast(honest.iter().copied(), Msg::Commit(Shared::new(good)));
            cx.broadcast(fooled.iter().copied(), Msg::Commit(Shared::new(evil)));
        }
        Msg::Prepare(ref vote) | Msg::Commit(ref vote) => {
            let phase = if matches!(msg, Msg::Prepare(_)) {
                Phase::Prepare
            } else {
                Phase::Commit
            };
            let vote = vote.clone();
            let made_up = Digest(cx.rng().random());
            let other = Vote::signed(crypto, phase, vote.view, vote.seq, made_up);
            let wrap = |v| match phase {
                Phase::Prepare => Msg::Prepare(v),
                Phase::Commit => Msg::Commit(v),
            };
            cx.broadcast(honest.iter().copied(), wrap(vote));
            cx.broadcast(fooled.iter().copied(), wrap(Shared::new(other)));
        }
        Msg::ViewChange(vc) => {
            // Claim that nothing prepared here: the new primary must not rely on us.
            let forgetful = ViewChange::signed(
                crypto,
                vc.new_view,
                vc.stable_seq,
                vc.stable_digest,
                vc.stable_proof.clone(),
                Vec::new(),
            );
            cx.broadcast(to, Msg::ViewChange(Arc::new(forgetful)));
        }
        other => cx.broadcast(to, other),
    }
}

/// One small-scope mutation of `msg`, re-signed with this replica's own key.
/// `to` is the (first) receiver: a reply's signature names its client.
fn mutate(crypto: &Crypto, cx: &mut Context<Node>, msg: Msg, to: Option<NodeId>) -> Msg {
    let rng = cx.rng();
    let choice = rng.random_range(0..5u32);
    let nudge = |x: u64, up: bool| {
        if up {
            x.saturating_add(1)
        } else {
            x.saturating_sub(1)
        }
    };
    let up = rng.random_bool(0.5);
    let made_up = Digest(rng.random());
    match msg {
        Msg::PrePrepare(pp) => {
            let (mut view, mut seq, mut digest) = (pp.view, pp.seq, pp.digest);
            match choice {
                0 => view = nudge(view, up),
                1 | 2 => seq = nudge(seq, up),
                // The one large-scope mutation: a sequence number far ahead, the attack
                // that exhausts sequence numbers unless watermarks bound them.
                3 => seq = seq.saturating_add(FAR_AHEAD),
                _ => digest = made_up,
            }
            Msg::PrePrepare(Shared::new(Arc::new(PrePrepare::signed_with_digest(
                crypto,
                view,
                seq,
                digest,
                Arc::clone(&pp.batch),
            ))))
        }
        Msg::Prepare(ref v) | Msg::Commit(ref v) => {
            let phase = if matches!(msg, Msg::Prepare(_)) {
                Phase::Prepare
            } else {
                Phase::Commit
            };
            let (mut view, mut seq, mut digest) = (v.view, v.seq, v.digest);
            match choice {
                0 | 1 => view = nudge(view, up),
                2 | 3 => seq = nudge(seq, up),
                _ => digest = made_up,
            }
            let vote = Shared::new(Vote::signed(crypto, phase, view, seq, digest));
            match phase {
                Phase::Prepare => Msg::Prepare(vote),
                Phase::Commit => Msg::Commit(vote),
            }
        }
        Msg::Checkpoint(c) => {
            let checkpoint = if choice < 3 {
                Checkpoint::signed(crypto, nudge(c.seq, up), c.digest)
            } else {
                Checkpoint::signed(crypto, c.seq, made_up)
            };
            Msg::Checkpoint(Shared::new(checkpoint))
        }
        Msg::Reply(r) => {
            let Some(client) = to else {
                return Msg::Reply(r);
            };
            let (number, result) = if choice < 3 {
                (r.number, nudge(r.result, up))
            } else {
                (nudge(r.number, up), r.result)
            };
            Msg::Reply(Arc::new(Reply::signed(
                crypto, r.view, client, number, result,
            )))
        }
        Msg::ViewChange(vc) => Msg::ViewChange(Arc::new(ViewChange::signed(
            crypto,
            nudge(vc.new_view, up),
            vc.stable_seq,
            vc.stable_digest,
            vc.stable_proof.clone(),
            vc.prepared.clone(),
        ))),
        other => other,
    }
}

/// A batch that differs from `batch`: reversed if it has two requests or more, empty if it
/// has one; `None` for an empty batch, which has nothing to alter.
fn altered(batch: &Batch) -> Option<Batch> {
    match batch.len() {
        0 => None,
        1 => Some(Arc::new([])),
        _ => {
            let mut v: Vec<Request> = batch.to_vec();
            v.reverse();
            let other: Batch = v.into();
            (batch_digest(&other) != batch_digest(batch)).then_some(other)
        }
    }
}
