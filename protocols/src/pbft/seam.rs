//! The one seam where test-only behaviour enters PBFT: mutants and Byzantine replicas.
//!
//! A replica is generic over a [`TestSeam`] and asks it the few questions a mutant changes
//! the answer to (how many commits commit? are digests checked? are watermarks
//! enforced?), and hands it every message it sends. Two seams exist:
//!
//! - [`Correct`], zero-sized: every answer is the protocol's, a constant the compiler
//!   folds away, and a send is a send. [`ProductionNode`](super::ProductionNode) uses it:
//!   the actor that runs over TCP has no mutant switch and no Byzantine branch in it.
//! - [`Testing`]: carries the [`Mutant`] of the run and the replica's Byzantine
//!   [`Behavior`], if a scenario switched one on. [`Node`](super::Node), the simulator's
//!   actor, uses it, so mutants and Byzantine behaviours stay available to the CLI,
//!   scenarios and swarm mode.
//!
//! The trait is sealed: these two are the only seams.

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

    /// Matching commits that commit a batch: 2f+1.
    fn commit_quorum(&self, f: u32) -> usize;

    /// Whether a pre-prepare must carry the digest of its batch.
    fn checks_digests(&self) -> bool;

    /// Whether sequence numbers are checked against the low and high watermarks.
    fn enforces_watermarks(&self) -> bool;

    /// Whether a batch is decided as soon as it prepared, skipping the commit phase.
    fn decides_when_prepared(&self) -> bool;

    /// Whether a view-change message carries the replica's prepared certificates.
    fn reports_prepared(&self) -> bool;

    /// Sends `msg` from the replica holding `crypto` (of a group of `n`) to `to`.
    fn send(
        &mut self,
        crypto: &Crypto,
        n: u32,
        cx: &mut Context<NodeWith<Self>>,
        to: NodeId,
        msg: Msg,
    );

    /// Sends `msg` to every replica in `to` (the others of the group).
    fn multicast(
        &mut self,
        crypto: &Crypto,
        n: u32,
        cx: &mut Context<NodeWith<Self>>,
        to: impl Iterator<Item = NodeId>,
        msg: Msg,
    );

    /// Called first in every event a replica handles: a replica switched to a Byzantine
    /// behaviour says so in its outputs before anything else.
    fn announce(&mut self, cx: &mut Context<NodeWith<Self>>);

    /// Switches the replica to a Byzantine `behavior`, or back with `correct`.
    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String>;

    /// The replica's Byzantine behaviour, if any.
    fn byzantine(&self) -> Option<Behavior>;
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
    fn commit_quorum(&self, f: u32) -> usize {
        2 * f as usize + 1
    }

    #[inline]
    fn checks_digests(&self) -> bool {
        true
    }

    #[inline]
    fn enforces_watermarks(&self) -> bool {
        true
    }

    #[inline]
    fn decides_when_prepared(&self) -> bool {
        false
    }

    #[inline]
    fn reports_prepared(&self) -> bool {
        true
    }

    #[inline]
    fn send(
        &mut self,
        _crypto: &Crypto,
        _n: u32,
        cx: &mut Context<NodeWith<Self>>,
        to: NodeId,
        msg: Msg,
    ) {
        cx.send(to, msg);
    }

    #[inline]
    fn multicast(
        &mut self,
        _crypto: &Crypto,
        _n: u32,
        cx: &mut Context<NodeWith<Self>>,
        to: impl Iterator<Item = NodeId>,
        msg: Msg,
    ) {
        cx.broadcast(to, msg);
    }

    #[inline]
    fn announce(&mut self, _cx: &mut Context<NodeWith<Self>>) {}

    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        Err(format!(
            "the production PBFT node has no Byzantine behaviour (`{behavior}`): use the simulator's pbft::Node"
        ))
    }

    #[inline]
    fn byzantine(&self) -> Option<Behavior> {
        None
    }
}

/// The simulator's seam: the run's [`Mutant`] and this replica's Byzantine behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Testing {
    mutant: Mutant,
    byzantine: Option<Behavior>,
    /// The switch to `byzantine` is still to be announced.
    announce_byzantine: bool,
}

impl Testing {
    /// A correct replica that runs `mutant`'s broken variant of the protocol.
    pub fn new(mutant: Mutant) -> Testing {
        Testing {
            mutant,
            byzantine: None,
            announce_byzantine: false,
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
        Testing::new(config.mutant)
    }

    fn commit_quorum(&self, f: u32) -> usize {
        if self.mutant == Mutant::SmallCommitQuorum {
            2 * f as usize
        } else {
            2 * f as usize + 1
        }
    }

    fn checks_digests(&self) -> bool {
        self.mutant != Mutant::NoDigestCheck
    }

    fn enforces_watermarks(&self) -> bool {
        self.mutant != Mutant::NoWatermarks
    }

    fn decides_when_prepared(&self) -> bool {
        self.mutant == Mutant::NoCommit
    }

    fn reports_prepared(&self) -> bool {
        self.mutant != Mutant::ForgetPrepared
    }

    fn send(
        &mut self,
        crypto: &Crypto,
        n: u32,
        cx: &mut Context<NodeWith<Self>>,
        to: NodeId,
        msg: Msg,
    ) {
        match self.byzantine {
            None | Some(Behavior::Twin | Behavior::Fuzzed) => cx.send(to, msg),
            Some(behavior) => behavior.send(crypto, n, cx, vec![to], msg),
        }
    }

    fn multicast(
        &mut self,
        crypto: &Crypto,
        n: u32,
        cx: &mut Context<NodeWith<Self>>,
        to: impl Iterator<Item = NodeId>,
        msg: Msg,
    ) {
        match self.byzantine {
            None | Some(Behavior::Twin | Behavior::Fuzzed) => cx.broadcast(to, msg),
            Some(behavior) => behavior.send(crypto, n, cx, to.collect(), msg),
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

    fn byzantine(&self) -> Option<Behavior> {
        self.byzantine
    }
}
