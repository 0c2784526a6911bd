//! Test-only: round-based Byzantine fuzzing (ByzzFuzz style) of HotStuff's messages.
//!
//! [`Mutate`] changes a message by one small step drawn from the fuzzer's random stream:
//!
//! - request: its number ±1, or another key;
//! - reply: view ±1, request number ±1, or result ±1;
//! - proposal: its block's view ±1, height ±1, another parent, or its batch with the last
//!   request dropped, the block hash recomputed each time as a real leader would; or the
//!   TC it carries dropped;
//! - vote: view ±1, or a vote for a made-up block;
//! - timeout: view ±1, or its highest QC replaced by the genesis one;
//! - new view (not signed): its TC dropped, or its highest QC replaced by the genesis one;
//! - fetch: a made-up block hash; blocks: one block dropped.
//!
//! `mutate` leaves signatures as they were; [`sign_again`] then signs the changed message
//! with the sender's own key, so receivers see a validly signed but wrong message. The
//! simulator's [`Node`](super::Node) does both in
//! [`Actor::mutate_message`](rehearsal_sim_core::Actor::mutate_message); the production
//! node never mutates.

use super::messages::{Block, Msg, Proposal, Qc, Timeout, Vote};
use crate::crypto::{Crypto, Digest};
use crate::pbft::messages::{Op, Reply, Request};
use crate::pbft::mutation::{nudge, stepped};
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{Mutate, NodeId, SimRng};
use std::sync::Arc;

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
                    let (Op::Get { key } | Op::Put { key, .. } | Op::Add { key, .. }) = &mut r.op;
                    let was = *key;
                    *key = if up { was.wrapping_add(1) } else { was.wrapping_sub(1) };
                    Some(format!("request key {was} -> {key}"))
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
            Msg::Proposal(p) => {
                let p = Arc::make_mut(p);
                let b = &p.block;
                let (mut view, mut height, mut parent, mut batch) =
                    (b.view, b.height, b.parent, Arc::clone(&b.batch));
                let change = match rng.random_range(0..5u32) {
                    0 if p.tc.is_some() => {
                        p.tc = None;
                        return Some(format!("proposal of view {view}: TC dropped"));
                    }
                    1 => {
                        height = nudge(height, up);
                        stepped("block height", b.height, up)
                    }
                    2 => {
                        parent = Digest(rng.random());
                        format!("block of view {view} with a made-up parent")
                    }
                    3 if !batch.is_empty() => {
                        let len = batch.len();
                        batch = Arc::from(&batch[..len - 1]);
                        format!("block of view {view}: batch of {len} -> {}", len - 1)
                    }
                    _ => {
                        view = nudge(view, up);
                        stepped("block view", b.view, up)
                    }
                };
                let block = Block::with_parent(view, height, parent, b.justify.clone(), batch);
                p.block = Arc::new(block);
                Some(change)
            }
            Msg::Vote(v) => {
                let v = Arc::make_mut(v);
                if rng.random_bool(0.5) {
                    let change = stepped("vote view", v.view, up);
                    v.view = nudge(v.view, up);
                    Some(change)
                } else {
                    v.block = Digest(rng.random());
                    Some(format!("vote of view {} for a made-up block", v.view))
                }
            }
            Msg::Timeout(t) | Msg::TimeoutAnswer(t) => {
                let t = Arc::make_mut(t);
                if t.high_qc.is_genesis() || rng.random_bool(0.5) {
                    let change = stepped("timeout view", t.view, up);
                    t.view = nudge(t.view, up);
                    Some(change)
                } else {
                    let was = t.high_qc.view;
                    t.high_qc = Qc::genesis();
                    Some(format!("timeout of view {}: high QC {was} -> genesis", t.view))
                }
            }
            Msg::NewView { high_qc, tc } => {
                if tc.is_some() && (high_qc.is_genesis() || rng.random_bool(0.5)) {
                    *tc = None;
                    Some("new view: TC dropped".into())
                } else if !high_qc.is_genesis() {
                    let was = high_qc.view;
                    *high_qc = Qc::genesis();
                    Some(format!("new view: high QC {was} -> genesis"))
                } else {
                    None
                }
            }
            Msg::Fetch { block } => {
                *block = Digest(rng.random());
                Some("fetch of a made-up block".into())
            }
            Msg::Blocks(blocks) => {
                if blocks.is_empty() {
                    return None;
                }
                let i = rng.random_range(0..blocks.len());
                let dropped = blocks.remove(i);
                Some(format!("blocks: the one of view {} dropped", dropped.view))
            }
        }
    }
}

/// Whether the node holding `crypto` can sign `msg` again after a mutation: a message it
/// signs itself, or an unsigned one. A request a replica relays is its client's, and a vote
/// or timeout it passes on another replica's; a reply needs its client (`reply_to`).
pub fn can_sign_again(msg: &Msg, crypto: &Crypto, reply_to: Option<NodeId>) -> bool {
    let me = crypto.me();
    match msg {
        Msg::Request(r) => r.client == me,
        Msg::Reply(_) => reply_to.is_some(),
        Msg::Vote(v) => v.voter == me.0,
        Msg::Timeout(t) | Msg::TimeoutAnswer(t) => t.sender == me.0,
        // Signed by the leader of its view: the sender signs as the leader it claims to be.
        Msg::Proposal(_) | Msg::NewView { .. } | Msg::Fetch { .. } | Msg::Blocks(_) => true,
    }
}

/// Signs `msg`, changed by [`Mutate`], again with `crypto` (the sender's own key); a reply
/// is signed for `reply_to`, its client. Certificates inside keep their signatures.
pub fn sign_again(msg: &mut Msg, crypto: &Crypto, reply_to: Option<NodeId>) {
    match msg {
        Msg::Request(r) => *r = Arc::new(Request::signed(crypto, r.number, r.op)),
        Msg::Reply(r) => {
            if let Some(client) = reply_to {
                *r = Arc::new(Reply::signed(crypto, r.view, client, r.number, r.result));
            }
        }
        Msg::Proposal(p) => {
            *p = Arc::new(Proposal::signed(crypto, Arc::clone(&p.block), p.tc.clone()));
        }
        Msg::Vote(v) => *v = Arc::new(Vote::signed(crypto, v.view, v.block)),
        Msg::Timeout(t) | Msg::TimeoutAnswer(t) => {
            *t = Arc::new(Timeout::signed(crypto, t.view, t.high_qc.clone()))
        }
        Msg::NewView { .. } | Msg::Fetch { .. } | Msg::Blocks(_) => {}
    }
}

/// One mutation of `msg`, sent by the holder of `crypto` (a replica of a group of `n`
/// with `clients` clients), signed again with its key: what the simulator's HotStuff node
/// does in [`Actor::mutate_message`](rehearsal_sim_core::Actor::mutate_message). `None`,
/// with `msg` unchanged, when there is nothing this sender could change and sign.
pub fn mutate_signed(
    msg: &mut Msg,
    crypto: &Crypto,
    n: u32,
    clients: u32,
    rng: &mut SimRng,
) -> Option<String> {
    let reply_to = match &*msg {
        Msg::Reply(r) => (n..n + clients).map(NodeId).find(|&c| r.verify(crypto, c)),
        _ => None,
    };
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
    use crate::hotstuff::messages::Tc;
    use crate::hotstuff::{testbed_crypto, Config, Node, Timer};
    use rehearsal_sim_core::{derive_rng, Actor, Context, Effect, Time};

    fn crypto(config: &Config, id: u32) -> Crypto {
        testbed_crypto(config, NodeId(id)).unwrap()
    }

    /// One message of every kind, each sent (and signed where it is) by replica 1, the
    /// leader of views 4 to 7; replies are for client n4.
    fn samples(config: &Config) -> Vec<Msg> {
        let client = crypto(config, 4);
        let r1 = crypto(config, 1);
        let requests: Vec<Request> = (1..=2)
            .map(|number| Request::signed(&client, number, Op::Put { key: 1, value: number }))
            .collect();
        let parent = Block::new(4, 1, Qc::genesis(), Arc::from([]));
        let qc = Qc::of(
            4,
            parent.hash,
            (0..3)
                .map(|i| (i, Vote::signed(&crypto(config, i), 4, parent.hash).sig))
                .collect(),
        );
        let block = Arc::new(Block::new(5, 2, qc.clone(), Arc::from(requests.clone())));
        let tc = Arc::new(Tc {
            view: 3,
            timeouts: Vec::new(),
            high_qc: Qc::genesis(),
        });
        vec![
            Msg::Request(Arc::new(requests[0].clone())),
            Msg::Reply(Arc::new(Reply::signed(&r1, 5, NodeId(4), 1, 7))),
            Msg::Proposal(Arc::new(Proposal::signed(&r1, Arc::clone(&block), Some(Arc::clone(&tc))))),
            Msg::Vote(Arc::new(Vote::signed(&r1, 5, block.hash))),
            Msg::Timeout(Arc::new(Timeout::signed(&r1, 5, qc.clone()))),
            Msg::NewView {
                high_qc: qc,
                tc: Some(tc),
            },
            Msg::Fetch { block: block.hash },
            Msg::Blocks(vec![block, Arc::new(parent)]),
        ]
    }

    /// Whether `msg` carries a valid signature of the node holding `signer` (for a reply:
    /// for client n4), and a block's hash is its contents'.
    fn signed_by(msg: &Msg, signer: &Crypto) -> bool {
        let me = signer.me().0;
        match msg {
            Msg::Request(r) => r.verify(signer),
            Msg::Reply(r) => r.replica == me && r.verify(signer, NodeId(4)),
            Msg::Proposal(p) => {
                let again = Proposal::signed(signer, Arc::clone(&p.block), p.tc.clone());
                again.sig == p.sig && p.block.hash_is_right()
            }
            Msg::Vote(v) => v.voter == me && v.verify(signer),
            Msg::Timeout(t) | Msg::TimeoutAnswer(t) => t.sender == me && t.verify(signer),
            Msg::NewView { .. } | Msg::Fetch { .. } | Msg::Blocks(_) => true,
        }
    }

    #[test]
    fn every_mutation_changes_the_message_and_is_signed_again_by_its_sender() {
        let config = Config::default();
        let r1 = crypto(&config, 1);
        let client = crypto(&config, 4);
        for seed in 0..30 {
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
        let proposal = &samples(&config)[2];
        let changes: std::collections::BTreeSet<String> = (0..30)
            .filter_map(|seed| proposal.clone().mutate(&mut derive_rng(seed, "mutate", 0)))
            .collect();
        assert!(changes.len() >= 4, "{changes:?}");
    }

    #[test]
    fn messages_the_sender_cannot_sign_are_left_alone() {
        let config = Config::default();
        let r2 = crypto(&config, 2);
        let mut rng = derive_rng(1, "mutate", 0);
        let samples = samples(&config);
        // A client's request, or another replica's vote and timeout.
        for original in [&samples[0], &samples[3], &samples[4]] {
            let mut msg = original.clone();
            assert_eq!(mutate_signed(&mut msg, &r2, 4, 1, &mut rng), None);
            assert_eq!(&msg, original);
        }
        let production = crate::hotstuff::production_node(
            &config,
            NodeId(1),
            rehearsal_sim_core::protocol::KeySource::Testbed,
        )
        .unwrap();
        let mut msg = samples[3].clone();
        assert_eq!(production.mutate_message(&mut msg, &mut rng), None);
    }

    #[test]
    fn a_correct_replica_drops_mutated_messages_without_panicking() {
        let config = Config::default();
        let actors = crate::hotstuff::actors(&config).unwrap();
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
                    receiver.on_message(from, original.clone(), &mut cx);
                    receiver.on_message(from, msg.clone(), &mut cx);
                    receiver.on_timer(Timer::View { view: 5 }, &mut cx);
                }
            }
        }
    }
}
