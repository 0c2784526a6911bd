//! Test-only Byzantine replicas, switched on by a
//! [`Fault::Byzantine`](rehearsal_sim_core::Fault::Byzantine). A Byzantine replica runs
//! the protocol as before, except where its behaviour says otherwise:
//!
//! - `equivocate`: as leader, proposes two conflicting blocks for its view (the same
//!   parent and certificate, other requests), each properly signed: one to a random part
//!   of the replicas and the other to the rest, and to some of each part the other one too.
//! - `double-vote`: votes for every proposal it receives, even in a view it already voted
//!   in, and with every vote also signs one for a made-up block of the same view.
//! - `amnesia`: forgets its lock when it votes: it votes for any proposal of a view it has
//!   not voted in.
//! - `silent-proposer`: never proposes when it leads; otherwise correct.
//! - `stale-qc`: as leader, proposes a fork: a block extending an older certified block
//!   (three certificates below its highest) rather than its highest QC.
//! - `silent`: sends nothing at all.
//! - `impatient`: gives up on every view it votes in at once: with each vote it sends every
//!   replica a timeout of that view (carrying the genesis QC), as if its timer had fired.
//! - `twin`: the correct protocol, unchanged. The simulator runs a node as two instances
//!   sharing one identity and keys (Twins) and switches both to it: each runs HotStuff
//!   correctly, but together they may propose or vote twice in a view, so the replica is
//!   announced as faulty.
//! - `fuzzed`: the correct protocol, unchanged, whose messages round-based Byzantine
//!   fuzzing mutates (`@round R mutate N -> ...`): the simulator switches the sender to it
//!   before the first mutation, so the replica is announced as faulty.
//!
//! Every choice draws from the replica's `cx.rng()`, so runs stay reproducible. The replica
//! announces the switch with [`Output::Byzantine`](super::Output::Byzantine) before anything
//! else, so checks count it as faulty from then on.

use super::messages::{Block, Msg, Proposal, Qc, Timeout, Vote};
use crate::crypto::{Crypto, Digest};
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{Context, NodeId};
use std::str::FromStr;
use std::sync::Arc;

/// How a Byzantine replica misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Equivocate,
    DoubleVote,
    Amnesia,
    SilentProposer,
    StaleQc,
    Silent,
    Impatient,
    /// One of two instances of one replica (Twins): correct on its own.
    Twin,
    /// Correct, but its messages are mutated by the simulator (round-based fuzzing).
    Fuzzed,
}

impl Behavior {
    pub const NAMES: &'static [&'static str] = &[
        "equivocate",
        "double-vote",
        "amnesia",
        "silent-proposer",
        "stale-qc",
        "silent",
        "impatient",
        "twin",
        "fuzzed",
    ];

    const ALL: [Behavior; 9] = [
        Behavior::Equivocate,
        Behavior::DoubleVote,
        Behavior::Amnesia,
        Behavior::SilentProposer,
        Behavior::StaleQc,
        Behavior::Silent,
        Behavior::Impatient,
        Behavior::Twin,
        Behavior::Fuzzed,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Behavior::Equivocate => "equivocate",
            Behavior::DoubleVote => "double-vote",
            Behavior::Amnesia => "amnesia",
            Behavior::SilentProposer => "silent-proposer",
            Behavior::StaleQc => "stale-qc",
            Behavior::Silent => "silent",
            Behavior::Impatient => "impatient",
            Behavior::Twin => "twin",
            Behavior::Fuzzed => "fuzzed",
        }
    }

    /// Sends `msg` to `to` as this behaviour does, from a replica of a group of `replicas`.
    pub(super) fn send<S: super::TestSeam>(
        self,
        replicas: u32,
        crypto: &Crypto,
        cx: &mut Context<super::NodeWith<S>>,
        to: Vec<NodeId>,
        msg: Msg,
    ) {
        match (self, msg) {
            (Behavior::Silent, _) => {}
            (Behavior::Equivocate, Msg::Proposal(p)) => equivocate(crypto, cx, to, &p),
            (Behavior::DoubleVote, Msg::Vote(vote)) => {
                let mut made_up = [0u8; 32];
                cx.rng().fill(&mut made_up);
                let other = Vote::signed(crypto, vote.view, Digest(made_up));
                cx.broadcast(to.clone(), Msg::Vote(vote));
                cx.broadcast(to, Msg::Vote(Arc::new(other)));
            }
            (Behavior::Impatient, Msg::Vote(vote)) => {
                // The timeout goes to every replica, wherever the vote goes.
                let timeout = Timeout::signed(crypto, vote.view, Qc::genesis());
                cx.broadcast(to, Msg::Vote(vote));
                let me = crypto.me();
                let others: Vec<NodeId> = (0..replicas).map(NodeId).filter(|&r| r != me).collect();
                cx.broadcast(others, Msg::Timeout(Arc::new(timeout)));
            }
            (_, msg) => cx.broadcast(to, msg),
        }
    }
}

/// Two conflicting proposals for one view: each recipient gets one of them, and about
/// half of them then the other too.
fn equivocate<S: super::TestSeam>(
    crypto: &Crypto,
    cx: &mut Context<super::NodeWith<S>>,
    to: Vec<NodeId>,
    real: &Arc<Proposal>,
) {
    let block = &real.block;
    if block.batch.is_empty() {
        // Nothing to vary: an empty block has only one form.
        cx.broadcast(to, Msg::Proposal(Arc::clone(real)));
        return;
    }
    let mut requests = block.batch.to_vec();
    if requests.len() == 1 {
        requests.clear();
    } else {
        requests.reverse();
    }
    let other_block = Block::with_parent(
        block.view,
        block.height,
        block.parent,
        block.justify.clone(),
        Arc::from(requests),
    );
    let other = Arc::new(Proposal::signed(crypto, Arc::new(other_block), real.tc.clone()));
    for node in to {
        let (first, second) = if cx.rng().random_bool(0.5) {
            (real, &other)
        } else {
            (&other, real)
        };
        cx.send(node, Msg::Proposal(Arc::clone(first)));
        if cx.rng().random_bool(0.5) {
            cx.send(node, Msg::Proposal(Arc::clone(second)));
        }
    }
}

crate::named::display_by_name!(Behavior);

impl FromStr for Behavior {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let kind = "HotStuff Byzantine behaviour";
        crate::named::parse_named(s, kind, &Behavior::ALL, Behavior::name, Some("correct"))
    }
}
