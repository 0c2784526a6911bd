//! Test-only: round-based Byzantine fuzzing (ByzzFuzz style) of PBFT's messages.
//!
//! [`Mutate`] changes a message by one small step drawn from the fuzzer's random stream:
//!
//! - request: its number ±1, or another operation (another key);
//! - pre-prepare: its view ±1, its sequence number ±1, or another batch (the last request
//!   dropped, the digest recomputed as a real primary would, or left as it was, a field
//!   dropped) or, for an empty batch, a made-up digest;
//! - prepare and commit: view ±1, sequence number ±1, or a made-up digest;
//! - reply: view ±1, request number ±1, or result ±1;
//! - checkpoint: sequence number ±1, or a made-up state digest;
//! - view change: its new view ±1, or one prepared certificate dropped;
//! - new view: its view ±1, one view change dropped, or one pre-prepare dropped;
//! - fetch: view ±1, low watermark ±1, or next sequence number ±1;
//! - fetch reply (not signed): one commit certificate, the checkpoint or the new view
//!   dropped.
//!
//! `mutate` leaves signatures as they were; [`sign_again`] then signs the changed message
//! with the sender's own key, so receivers see a validly signed but wrong message and it
//! reaches the protocol's checks instead of being dropped as forged. The simulator's
//! [`Node`](super::Node) does both in
//! [`Actor::mutate_message`](rehearsal_sim_core::Actor::mutate_message); the production
//! node never mutates.

use super::messages::{
    batch_digest, Checkpoint, Fetch, Msg, NewView, Op, Phase, PrePrepare, Reply, Request,
    ViewChange, Vote,
};
use crate::crypto::{Crypto, Digest, Shared};
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{Mutate, NodeId, SimRng};
use std::sync::Arc;

/// `x` one step up or down, as `up` says; always a different value (up from 0, down
/// from the largest).
pub(crate) fn nudge(x: u64, up: bool) -> u64 {
    if (up && x < u64::MAX) || x == 0 {
        x + 1
    } else {
        x - 1
    }
}

/// Describes a ±1 step of `what` from `from`.
pub(crate) fn stepped(what: &str, from: u64, up: bool) -> String {
    format!("{what} {from} -> {}", nudge(from, up))
}

impl Mutate for Msg {
    fn mutate(&mut self, rng: &mut SimRng) -> Option<String> {
        let up = rng.random_bool(0.5);
        match self {
            Msg::Request(r) => {
                let r = Arc::make_mut(r);
                if rng.random_bool(0.5) {
                    let change = stepped("request number", r.number, up);
                    r.number = nudge(r.number, up);
                    Some(change)
                } else {
                    let (key, other) = match &mut r.op {
                        Op::Get { key } | Op::Put { key, .. } | Op::Add { key, .. } => {
                            let was = *key;
                            *key = if up { was.wrapping_add(1) } else { was.wrapping_sub(1) };
                            (was, *key)
                        }
                    };
                    Some(format!("request key {key} -> {other}"))
                }
            }
            Msg::PrePrepare(pp) => {
                let pp = Arc::make_mut(Shared::make_mut(pp));
                match rng.random_range(0..4u32) {
                    0 => {
                        let change = stepped("pre-prepare view", pp.view, up);
                        pp.view = nudge(pp.view, up);
                        Some(change)
                    }
                    1 => {
                        let change = stepped("pre-prepare seq", pp.seq, up);
                        pp.seq = nudge(pp.seq, up);
                        Some(change)
                    }
                    3 if !pp.batch.is_empty() => {
                        let len = pp.batch.len();
                        pp.batch = Arc::from(&pp.batch[..len - 1]);
                        Some(format!(
                            "pre-prepare {}: batch of {len} -> {}, its digest left as it was",
                            pp.seq,
                            len - 1
                        ))
                    }
                    _ if pp.batch.is_empty() => {
                        pp.digest = Digest(rng.random());
                        Some(format!("pre-prepare {} with a made-up digest", pp.seq))
                    }
                    _ => {
                        let len = pp.batch.len();
                        pp.batch = Arc::from(&pp.batch[..len - 1]);
                        pp.digest = batch_digest(&pp.batch);
                        Some(format!(
                            "pre-prepare {}: batch of {len} -> {}",
                            pp.seq,
                            len - 1
                        ))
                    }
                }
            }
            Msg::Prepare(v) | Msg::Commit(v) => {
                let v = Shared::make_mut(v);
                match rng.random_range(0..3u32) {
                    0 => {
                        let change = stepped("vote view", v.view, up);
                        v.view = nudge(v.view, up);
                        Some(change)
                    }
                    1 => {
                        let change = stepped("vote seq", v.seq, up);
                        v.seq = nudge(v.seq, up);
                        Some(change)
                    }
                    _ => {
                        v.digest = Digest(rng.random());
                        Some(format!("vote for {} with a made-up digest", v.seq))
                    }
                }
            }
            Msg::Reply(r) => {
                let r = Arc::make_mut(r);
                let (what, field) = match rng.random_range(0..3u32) {
                    0 => ("reply view", &mut r.view),
                    1 => ("reply number", &mut r.number),
                    _ => ("reply result", &mut r.result),
                };
                let change = stepped(what, *field, up);
                *field = nudge(*field, up);
                Some(change)
            }
            Msg::Checkpoint(c) => {
                let c = Shared::make_mut(c);
                if rng.random_bool(0.5) {
                    let change = stepped("checkpoint seq", c.seq, up);
                    c.seq = nudge(c.seq, up);
                    Some(change)
                } else {
                    c.digest = Digest(rng.random());
                    Some(format!("checkpoint {} with a made-up digest", c.seq))
                }
            }
            Msg::ViewChange(vc) => {
                let vc = Arc::make_mut(vc);
                if vc.prepared.is_empty() || rng.random_bool(0.5) {
                    let change = stepped("view change to", vc.new_view, up);
                    vc.new_view = nudge(vc.new_view, up);
                    Some(change)
                } else {
                    let i = rng.random_range(0..vc.prepared.len());
                    let seq = vc.prepared.remove(i).pre_prepare.seq;
                    Some(format!(
                        "view change to {}: prepared certificate for {seq} dropped",
                        vc.new_view
                    ))
                }
            }
            Msg::NewView(nv) => {
                let nv = Arc::make_mut(nv);
                match rng.random_range(0..3u32) {
                    1 if !nv.view_changes.is_empty() => {
                        let i = rng.random_range(0..nv.view_changes.len());
                        let from = nv.view_changes.remove(i).replica;
                        Some(format!("new view {}: view change of n{from} dropped", nv.view))
                    }
                    2 if !nv.pre_prepares.is_empty() => {
                        let i = rng.random_range(0..nv.pre_prepares.len());
                        let seq = nv.pre_prepares.remove(i).seq;
                        Some(format!("new view {}: pre-prepare {seq} dropped", nv.view))
                    }
                    _ => {
                        let change = stepped("new view", nv.view, up);
                        nv.view = nudge(nv.view, up);
                        Some(change)
                    }
                }
            }
            Msg::Fetch(f) => {
                let f = Arc::make_mut(f);
                let (what, field) = match rng.random_range(0..3u32) {
                    0 => ("fetch view", &mut f.view),
                    1 => ("fetch low", &mut f.low),
                    _ => ("fetch next", &mut f.next),
                };
                let change = stepped(what, *field, up);
                *field = nudge(*field, up);
                Some(change)
            }
            Msg::FetchReply(r) => {
                let r = Arc::make_mut(r);
                let mut parts = Vec::with_capacity(3);
                if !r.certs.is_empty() {
                    parts.push(0);
                }
                if r.checkpoint.is_some() {
                    parts.push(1);
                }
                if r.new_view.is_some() {
                    parts.push(2);
                }
                if parts.is_empty() {
                    return None;
                }
                match parts[rng.random_range(0..parts.len())] {
                    0 => {
                        let i = rng.random_range(0..r.certs.len());
                        let seq = r.certs.remove(i).pre_prepare.seq;
                        Some(format!("fetch reply: commit certificate for {seq} dropped"))
                    }
                    1 => {
                        r.checkpoint = None;
                        Some("fetch reply: checkpoint dropped".into())
                    }
                    _ => {
                        r.new_view = None;
                        Some("fetch reply: new view dropped".into())
                    }
                }
            }
        }
    }
}

/// Whether the node holding `crypto` can sign `msg` again after a mutation: it is a
/// message this node signs itself (or an unsigned one). A request a replica forwards is
/// its client's, and a new view or pre-prepare are the primary's, which a replica that
/// relays them cannot sign; a reply needs its client (`reply_to`).
pub fn can_sign_again(msg: &Msg, crypto: &Crypto, reply_to: Option<NodeId>) -> bool {
    let me = crypto.me();
    match msg {
        Msg::Request(r) => r.client == me,
        Msg::Reply(_) => reply_to.is_some(),
        Msg::Prepare(v) | Msg::Commit(v) => v.replica == me.0,
        Msg::Checkpoint(c) => c.replica == me.0,
        Msg::ViewChange(vc) => vc.replica == me.0,
        Msg::Fetch(f) => f.replica == me.0,
        // Signed by the primary of their view: whoever sends one signs it again, as the
        // primary it claims to be (a backup's signature will not verify, as for any
        // replica that forges a primary's message).
        Msg::PrePrepare(_) | Msg::NewView(_) | Msg::FetchReply(_) => true,
    }
}

/// Signs `msg`, changed by [`Mutate`], again with `crypto` (the sender's own key); a reply
/// is signed for `reply_to`, its client. Nested messages (the pre-prepares of a new view,
/// the certificates in a view change or a fetch reply) keep their original signatures.
pub fn sign_again(msg: &mut Msg, crypto: &Crypto, reply_to: Option<NodeId>) {
    match msg {
        Msg::Request(r) => *r = Arc::new(Request::signed(crypto, r.number, r.op)),
        Msg::PrePrepare(pp) => {
            // The digest as the mutation left it: recomputed for a changed batch, made up
            // otherwise.
            *pp = Shared::new(Arc::new(PrePrepare::signed_with_digest(
                crypto,
                pp.view,
                pp.seq,
                pp.digest,
                Arc::clone(&pp.batch),
            )));
        }
        Msg::Prepare(v) => *v = Shared::new(Vote::signed(crypto, Phase::Prepare, v.view, v.seq, v.digest)),
        Msg::Commit(v) => *v = Shared::new(Vote::signed(crypto, Phase::Commit, v.view, v.seq, v.digest)),
        Msg::Reply(r) => {
            if let Some(client) = reply_to {
                *r = Arc::new(Reply::signed(crypto, r.view, client, r.number, r.result));
            }
        }
        Msg::Checkpoint(c) => *c = Shared::new(Checkpoint::signed(crypto, c.seq, c.digest)),
        Msg::ViewChange(vc) => {
            *vc = Arc::new(ViewChange::signed(
                crypto,
                vc.new_view,
                vc.stable_seq,
                vc.stable_digest,
                vc.stable_proof.clone(),
                vc.prepared.clone(),
            ));
        }
        Msg::NewView(nv) => {
            *nv = Arc::new(NewView::signed(
                crypto,
                nv.view,
                nv.view_changes.clone(),
                nv.pre_prepares.clone(),
            ));
        }
        Msg::Fetch(f) => *f = Arc::new(Fetch::signed(crypto, f.view, f.low, f.next)),
        Msg::FetchReply(_) => {}
    }
}

/// The client a reply from the holder of `crypto` is for: the one among `clients` whose
/// signature check it passes (a reply names its client only in what its signature covers).
pub fn reply_client(
    msg: &Msg,
    crypto: &Crypto,
    clients: impl IntoIterator<Item = NodeId>,
) -> Option<NodeId> {
    let Msg::Reply(r) = msg else {
        return None;
    };
    clients.into_iter().find(|&c| r.verify(crypto, c))
}

/// One mutation of `msg`, sent by the holder of `crypto` (a replica of a group of `n`
/// with `clients` clients), signed again with its key: what the simulator's PBFT node
/// does in [`Actor::mutate_message`](rehearsal_sim_core::Actor::mutate_message). `None`,
/// with `msg` unchanged, when there is nothing this sender could change and sign.
pub fn mutate_signed(
    msg: &mut Msg,
    crypto: &Crypto,
    n: u32,
    clients: u32,
    rng: &mut SimRng,
) -> Option<String> {
    let reply_to = reply_client(msg, crypto, (n..n + clients).map(NodeId));
    if !can_sign_again(msg, crypto, reply_to) {
        return None;
    }
    let change = msg.mutate(rng)?;
    sign_again(msg, crypto, reply_to);
    Some(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pbft::messages::{CommitCert, FetchReply, PreparedCert};
    use crate::pbft::{testbed_crypto, Config, Node, Timer};
    use rehearsal_sim_core::{derive_rng, Actor, Context, Effect, Time};

    fn crypto(config: &Config, id: u32) -> Crypto {
        testbed_crypto(config, NodeId(id), None).unwrap()
    }

    /// One message of every kind, each sent (and signed where it is) by replica 1, the
    /// primary of view 1; replies are for client n4.
    fn samples(config: &Config) -> Vec<Msg> {
        let client = crypto(config, 4);
        let r1 = crypto(config, 1);
        let requests: Vec<Request> = (1..=2)
            .map(|number| Request::signed(&client, number, Op::Put { key: 1, value: number }))
            .collect();
        let pp = Arc::new(PrePrepare::signed(&r1, 1, 3, Arc::from(requests.clone())));
        let vote = |phase| Shared::new(Vote::signed(&r1, phase, 1, 3, pp.digest));
        let vc = Arc::new(ViewChange::signed(
            &r1,
            1,
            0,
            Digest([0; 32]),
            Vec::new(),
            vec![PreparedCert {
                pre_prepare: Arc::clone(&pp),
                prepares: Vec::new(),
            }],
        ));
        let nv = Arc::new(NewView::signed(&r1, 1, vec![Arc::clone(&vc)], vec![Arc::clone(&pp)]));
        vec![
            Msg::Request(Arc::new(requests[0].clone())),
            Msg::PrePrepare(Shared::new(Arc::clone(&pp))),
            Msg::Prepare(vote(Phase::Prepare)),
            Msg::Commit(vote(Phase::Commit)),
            Msg::Reply(Arc::new(Reply::signed(&r1, 1, NodeId(4), 1, 7))),
            Msg::Checkpoint(Shared::new(Checkpoint::signed(&r1, 16, Digest([5; 32])))),
            Msg::ViewChange(vc),
            Msg::NewView(Arc::clone(&nv)),
            Msg::Fetch(Arc::new(Fetch::signed(&r1, 1, 0, 1))),
            Msg::FetchReply(Arc::new(FetchReply {
                new_view: Some(nv),
                checkpoint: None,
                certs: vec![CommitCert {
                    pre_prepare: pp,
                    commits: Vec::new(),
                }],
            })),
        ]
    }

    /// Whether `msg` carries a valid signature of the node holding `signer` (for a reply:
    /// for client n4).
    fn signed_by(msg: &Msg, signer: &Crypto) -> bool {
        let me = signer.me().0;
        match msg {
            Msg::Request(r) => r.verify(signer),
            Msg::PrePrepare(pp) => {
                let again =
                    PrePrepare::signed_with_digest(signer, pp.view, pp.seq, pp.digest, Arc::clone(&pp.batch));
                again.sig == pp.sig
            }
            Msg::Prepare(v) => v.replica == me && v.verify(signer, Phase::Prepare),
            Msg::Commit(v) => v.replica == me && v.verify(signer, Phase::Commit),
            Msg::Reply(r) => r.replica == me && r.verify(signer, NodeId(4)),
            Msg::Checkpoint(c) => c.replica == me && c.verify(signer),
            Msg::ViewChange(vc) => vc.replica == me && vc.verify_signature(signer),
            Msg::NewView(nv) => {
                let again =
                    NewView::signed(signer, nv.view, nv.view_changes.clone(), nv.pre_prepares.clone());
                again.sig == nv.sig
            }
            Msg::Fetch(f) => f.replica == me && f.verify(signer),
            Msg::FetchReply(_) => true,
        }
    }

    #[test]
    fn every_mutation_changes_the_message_and_is_signed_again_by_its_sender() {
        let config = Config::default();
        let r1 = crypto(&config, 1);
        let client = crypto(&config, 4);
        for seed in 0..20 {
            for original in samples(&config) {
                let sender = if matches!(original, Msg::Request(_)) { &client } else { &r1 };
                let mut rng = derive_rng(seed, "mutate", 0);
                let mut msg = original.clone();
                let change = mutate_signed(&mut msg, sender, config.replicas(), config.clients, &mut rng);
                let change = change.unwrap_or_else(|| panic!("nothing changed in {}", original.kind()));
                assert_ne!(msg, original, "{change}");
                assert_eq!(msg.kind(), original.kind(), "{change}");
                assert!(signed_by(&msg, sender), "{} after `{change}` is not validly signed", msg.kind());
            }
        }
    }

    #[test]
    fn a_mutation_is_the_same_for_the_same_seed() {
        let config = Config::default();
        let r1 = crypto(&config, 1);
        for original in samples(&config).into_iter().skip(1) {
            let once = |seed| {
                let mut msg = original.clone();
                let mut rng = derive_rng(seed, "mutate", 0);
                let change = mutate_signed(&mut msg, &r1, config.replicas(), config.clients, &mut rng);
                (msg, change)
            };
            assert_eq!(once(3), once(3));
        }
        // And the seed matters: across seeds, a vote gets more than one mutation.
        let vote = &samples(&config)[2];
        let changes: std::collections::BTreeSet<String> = (0..20)
            .filter_map(|seed| vote.clone().mutate(&mut derive_rng(seed, "mutate", 0)))
            .collect();
        assert!(changes.len() > 1, "{changes:?}");
    }

    #[test]
    fn messages_the_sender_cannot_sign_are_left_alone() {
        let config = Config::default();
        let r2 = crypto(&config, 2);
        let mut rng = derive_rng(1, "mutate", 0);
        // A replica forwarding a client's request, or relaying another replica's vote.
        for original in [&samples(&config)[0], &samples(&config)[2]] {
            let mut msg = original.clone();
            assert_eq!(mutate_signed(&mut msg, &r2, 4, 1, &mut rng), None);
            assert_eq!(&msg, original);
        }
        // The production node never mutates.
        let mut production = crate::pbft::production_node(
            &config,
            NodeId(1),
            rehearsal_sim_core::protocol::KeySource::Testbed,
        )
        .unwrap();
        let mut msg = samples(&config)[2].clone();
        assert_eq!(production.mutate_message(&mut msg, &mut rng), None);
        production.on_start(&mut Context::new(
            NodeId(1),
            Time::ZERO,
            &mut rng,
            &mut 0,
            &mut Vec::new(),
        ));
    }

    #[test]
    fn a_correct_replica_drops_mutated_messages_without_panicking() {
        let config = Config::default();
        let actors = crate::pbft::actors(&config).unwrap();
        let sender = &actors[1];
        for seed in 0..30 {
            for original in samples(&config) {
                let mut msg = original.clone();
                let mut rng = derive_rng(seed, "mutate", 0);
                let from = if matches!(original, Msg::Request(_)) { NodeId(4) } else { NodeId(1) };
                if from == NodeId(1) {
                    sender.mutate_message(&mut msg, &mut rng);
                }
                for to in [0, 2, 3] {
                    let mut receiver: Node = actors[to].clone();
                    let mut effects: Vec<Effect<Node>> = Vec::new();
                    let mut next_timer = 0;
                    let mut cx = Context::new(NodeId(to as u32), Time::ZERO, &mut rng, &mut next_timer, &mut effects);
                    receiver.on_start(&mut cx);
                    receiver.on_message(from, msg.clone(), &mut cx);
                    receiver.on_timer(Timer::Tick, &mut cx);
                }
            }
        }
    }
}
