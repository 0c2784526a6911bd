//! The one seam where test-only behaviour enters HotStuff: mutants and Byzantine replicas.
//!
//! A replica is generic over a [`TestSeam`] and asks it the few questions a mutant or a
//! Byzantine behaviour changes the answer to (how many votes make a QC? is the lock
//! honoured? is a second vote in one view refused?), and hands it every message it sends.
//! [`Correct`], zero-sized, answers with the protocol's constants and sends as asked: the
//! production node's actor has no mutant switch and no Byzantine branch. [`Testing`]
//! carries the run's [`Mutant`] and the replica's [`Behavior`], for the simulator.

use super::byzantine::Behavior;
use super::messages::Msg;
use super::{Config, Mutant, NodeWith, Output};
use crate::crypto::Crypto;
use rehearsal_sim_core::{Context, NodeId};

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Correct {}
    impl Sealed for super::Testing {}
}

/// What a replica asks about test-only behaviour. See the [module](self) documentation.
pub trait TestSeam: sealed::Sealed + Sized + 'static {
    /// The Byzantine behaviours a replica with this seam can be switched to.
    const BYZANTINE_BEHAVIORS: &'static [&'static str];

    /// Whether the replica's messages may be mutated by round-based Byzantine fuzzing
    /// ([`Actor::mutate_message`](rehearsal_sim_core::Actor::mutate_message)).
    const MUTATES_MESSAGES: bool;

    /// The seam of a replica of `config`'s group.
    fn for_config(config: &Config) -> Self;

    /// Votes that make a QC: 2f+1.
    fn qc_quorum(&self, f: u32) -> usize;

    /// Timeouts that make a TC: 2f+1.
    fn tc_quorum(&self, f: u32) -> usize;

    /// Whether a vote needs the safe-node rule (the block extends the lock, or its QC is
    /// newer than the lock).
    fn honours_lock(&self) -> bool;

    /// Whether the lock moves forward on 2-chains.
    fn updates_lock(&self) -> bool;

    /// Whether a replica refuses to vote in a view it already voted in.
    fn votes_once_per_view(&self) -> bool;

    /// Whether a commit needs the 3-chain's views to be consecutive.
    fn commit_needs_consecutive_views(&self) -> bool;

    /// Whether the replica proposes when it leads (a silent proposer does not).
    fn proposes(&self) -> bool;

    /// The replica's Byzantine behaviour, if any.
    fn byzantine(&self) -> Option<Behavior>;

    /// Sends `msg` from the replica holding `crypto` to each of `to`.
    fn send(&mut self, crypto: &Crypto, cx: &mut Context<NodeWith<Self>>, to: Vec<NodeId>, msg: Msg);

    /// Called first in every event a replica handles: a replica switched to a Byzantine
    /// behaviour says so in its outputs before anything else.
    fn announce(&mut self, cx: &mut Context<NodeWith<Self>>);

    /// Switches the replica to a Byzantine `behavior`, or back with `correct`.
    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String>;
}

/// The correct protocol, with nothing test-only in it: the seam of the production node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Correct;

impl TestSeam for Correct {
    const BYZANTINE_BEHAVIORS: &'static [&'static str] = &[];
    const MUTATES_MESSAGES: bool = false;

    #[inline]
    fn for_config(_config: &Config) -> Self {
        Correct
    }

    #[inline]
    fn qc_quorum(&self, f: u32) -> usize {
        2 * f as usize + 1
    }

    #[inline]
    fn tc_quorum(&self, f: u32) -> usize {
        2 * f as usize + 1
    }

    #[inline]
    fn honours_lock(&self) -> bool {
        true
    }

    #[inline]
    fn updates_lock(&self) -> bool {
        true
    }

    #[inline]
    fn votes_once_per_view(&self) -> bool {
        true
    }

    #[inline]
    fn commit_needs_consecutive_views(&self) -> bool {
        true
    }

    #[inline]
    fn proposes(&self) -> bool {
        true
    }

    #[inline]
    fn byzantine(&self) -> Option<Behavior> {
        None
    }

    #[inline]
    fn send(&mut self, _crypto: &Crypto, cx: &mut Context<NodeWith<Self>>, to: Vec<NodeId>, msg: Msg) {
        self.send_as(cx, to, msg);
    }

    #[inline]
    fn announce(&mut self, _cx: &mut Context<NodeWith<Self>>) {}

    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        Err(format!(
            "the production HotStuff node has no Byzantine behaviour (`{behavior}`): use the simulator's hotstuff::Node"
        ))
    }
}

/// The simulator's seam: the run's [`Mutant`] and this replica's Byzantine behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Testing {
    mutant: Mutant,
    byzantine: Option<Behavior>,
    /// The switch to `byzantine` is still to be announced.
    announce_byzantine: bool,
    /// Replicas in the group: a Byzantine replica may send to all of them.
    replicas: u32,
}

impl Testing {
    /// A correct replica that runs `mutant`'s broken variant of the protocol.
    pub fn new(mutant: Mutant) -> Testing {
        Testing {
            mutant,
            byzantine: None,
            announce_byzantine: false,
            replicas: super::Config::default().replicas(),
        }
    }

    pub fn mutant(&self) -> Mutant {
        self.mutant
    }
}

impl TestSeam for Testing {
    const BYZANTINE_BEHAVIORS: &'static [&'static str] = Behavior::NAMES;
    const MUTATES_MESSAGES: bool = true;

    fn for_config(config: &Config) -> Self {
        Testing {
            replicas: config.replicas(),
            ..Testing::new(config.mutant)
        }
    }

    fn qc_quorum(&self, f: u32) -> usize {
        match self.mutant {
            Mutant::SmallQuorum => 2 * f as usize,
            _ => 2 * f as usize + 1,
        }
    }

    fn tc_quorum(&self, f: u32) -> usize {
        match self.mutant {
            Mutant::SmallTimeoutQuorum => f as usize + 1,
            _ => 2 * f as usize + 1,
        }
    }

    fn honours_lock(&self) -> bool {
        self.mutant != Mutant::NoSafeNode && self.byzantine != Some(Behavior::Amnesia)
    }

    fn updates_lock(&self) -> bool {
        self.mutant != Mutant::NoLock
    }

    fn votes_once_per_view(&self) -> bool {
        self.mutant != Mutant::VoteTwice && self.byzantine != Some(Behavior::DoubleVote)
    }

    fn commit_needs_consecutive_views(&self) -> bool {
        self.mutant != Mutant::NonConsecutiveCommit
    }

    fn proposes(&self) -> bool {
        self.byzantine != Some(Behavior::SilentProposer)
    }

    fn byzantine(&self) -> Option<Behavior> {
        self.byzantine
    }

    fn send(&mut self, crypto: &Crypto, cx: &mut Context<NodeWith<Self>>, to: Vec<NodeId>, msg: Msg) {
        match self.byzantine {
            None | Some(Behavior::Twin | Behavior::Fuzzed) => Correct.send_as(cx, to, msg),
            Some(behavior) => behavior.send(self.replicas, crypto, cx, to, msg),
        }
    }

    fn announce(&mut self, cx: &mut Context<NodeWith<Self>>) {
        if self.announce_byzantine {
            self.announce_byzantine = false;
            if let Some(b) = self.byzantine {
                cx.output(Output::Byzantine {
                    behavior: b.name().to_string(),
                });
                cx.annotate(format!("turned Byzantine: {b}"));
            }
        }
    }

    /// `correct` returns to the protocol (checks keep counting the replica as faulty: its
    /// state may no longer be a correct replica's).
    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        if behavior == "correct" {
            self.byzantine = None;
            return Ok(());
        }
        self.byzantine = Some(behavior.parse()?);
        self.announce_byzantine = true;
        Ok(())
    }
}

impl Correct {
    /// Sends as the correct protocol does, from any seam's replica.
    pub(super) fn send_as<S: TestSeam>(self, cx: &mut Context<NodeWith<S>>, to: Vec<NodeId>, msg: Msg) {
        if let [one] = to[..] {
            cx.send(one, msg);
        } else {
            cx.broadcast(to, msg);
        }
    }
}
