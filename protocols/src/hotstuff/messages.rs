//! HotStuff's messages: blocks, quorum certificates, votes, proposals, timeouts and
//! timeout certificates, what each signature covers, and the checks every receiver
//! applies before it believes one.
//!
//! A block, a proposal and a timeout live behind `Arc`: a broadcast, the block tree and
//! the certificates that cite them point at one value.

use crate::crypto::{Crypto, Digest, Shared, Signature, Transcript};
use crate::pbft::messages::{batch_digest, Batch, Reply, Request};
use rehearsal_sim_core::NodeId;
use serde::{Deserialize, Serialize};
use std::sync::{Arc, LazyLock};

pub type View = u64;

/// Views each leader holds in a row: the leader of view v is replica `(v / TERM) mod n`.
///
/// A leader holds several consecutive views because chained HotStuff commits a block only
/// on a 3-chain of consecutive views, whose last QC the next proposal reveals: with one
/// view per leader (`v mod n`), a single crashed replica in a group of four breaks every
/// such chain (its own view, and the view before, whose votes go to it), and nothing ever
/// commits. With terms of four views, a correct leader's term holds a whole 3-chain and
/// the proposal that reveals it; a TC skips what is left of a failed leader's term (see
/// [`view_after_tc`]).
pub const TERM: View = 4;

/// The leader of `view`: round-robin over the `n` replicas, [`TERM`] views each.
pub fn leader_of(view: View, n: u32) -> NodeId {
    NodeId(((view / TERM) % u64::from(n)) as u32)
}

/// The view a TC of `view` moves replicas to: the first view of the next leader's term,
/// so that the pacemaker skips a crashed or silent leader at once.
pub fn view_after_tc(view: View) -> View {
    (view / TERM + 1) * TERM
}

/// The hash of the genesis block, the root every chain grows from (view 0, height 0).
pub fn genesis_hash() -> Digest {
    // Asked for on every commit (by the in-order check too): hashed once per process.
    static GENESIS: LazyLock<Digest> = LazyLock::new(|| Digest::of(b"rehearsal hotstuff genesis"));
    *GENESIS
}

/// A quorum certificate: signed votes of distinct replicas for `block` in `view`. The
/// genesis certificate (view 0, the genesis block, no votes) is the one exception every
/// replica accepts without signatures.
///
/// Shared: a certificate is copied into blocks, locks and messages, never changed; and
/// it remembers the check that found it valid, so that in a simulation the replicas that
/// receive one certificate check its signatures once ([`Shared::verified`]).
pub type Qc = Shared<QcBody>;

/// What a [`Qc`] holds.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QcBody {
    pub view: View,
    pub block: Digest,
    /// (replica, its signature over the vote), in the order the leader received them.
    pub votes: Arc<[(u32, Signature)]>,
}

/// Printed as a `Qc` (trace labels name it so).
impl std::fmt::Debug for QcBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qc")
            .field("view", &self.view)
            .field("block", &self.block)
            .field("votes", &self.votes)
            .finish()
    }
}

impl Qc {
    /// The certificate of `block` in `view` by `votes`.
    pub fn of(view: View, block: Digest, votes: Arc<[(u32, Signature)]>) -> Qc {
        Shared::new(QcBody { view, block, votes })
    }

    pub fn genesis() -> Qc {
        Qc::of(0, genesis_hash(), Arc::from([]))
    }
}

impl QcBody {

    pub fn is_genesis(&self) -> bool {
        self.view == 0 && self.block == genesis_hash() && self.votes.is_empty()
    }

    /// Checks the certificate: the genesis one, or at least `quorum` votes of distinct
    /// replicas among `0..n`, each signed by its replica for this view and block.
    pub fn verify(&self, crypto: &Crypto, n: u32, quorum: usize) -> Result<(), String> {
        if self.view == 0 {
            return if self.is_genesis() {
                Ok(())
            } else {
                Err("a view-0 certificate that is not the genesis one".into())
            };
        }
        check_quorum(
            self.votes.iter().map(|(signer, _)| *signer),
            n,
            quorum,
            "votes",
        )?;
        let t = Vote::transcript(self.view, &self.block);
        for (signer, sig) in self.votes.iter() {
            if !crypto.verify(NodeId(*signer), t.as_bytes(), sig) {
                return Err(format!("the vote of n{signer} has a bad signature"));
            }
        }
        Ok(())
    }
}

/// That `signers` are at least `quorum` distinct replicas of `0..n`.
fn check_quorum(
    signers: impl Iterator<Item = u32>,
    n: u32,
    quorum: usize,
    what: &str,
) -> Result<(), String> {
    let mut seen: u128 = 0;
    let mut count = 0;
    for signer in signers {
        if signer >= n {
            return Err(format!("{what} from n{signer}, which is not a replica"));
        }
        let bit = 1u128 << signer;
        if seen & bit != 0 {
            return Err(format!("two {what} from n{signer}"));
        }
        seen |= bit;
        count += 1;
    }
    if count < quorum {
        return Err(format!("{count} {what}, fewer than the quorum of {quorum}"));
    }
    Ok(())
}

/// A block: a batch of client requests, its parent's hash, its height on the chain (the
/// parent's plus one), the view it was proposed in and the certificate it justifies itself
/// with. Honest leaders extend the block their certificate certifies (`parent ==
/// justify.block`), and receivers insist on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub view: View,
    pub height: u64,
    pub parent: Digest,
    pub justify: Qc,
    pub batch: Batch,
    /// The hash of the fields above; receivers recompute it ([`Block::hash_is_right`]).
    pub hash: Digest,
}

impl Block {
    pub fn new(view: View, height: u64, justify: Qc, batch: Batch) -> Block {
        let parent = justify.block;
        Block::with_parent(view, height, parent, justify, batch)
    }

    /// A block whose parent is given apart from its certificate (a Byzantine leader's tool:
    /// honest ones use [`Block::new`]).
    pub fn with_parent(view: View, height: u64, parent: Digest, justify: Qc, batch: Batch) -> Block {
        let hash = Block::compute_hash(view, height, &parent, &justify, &batch);
        Block {
            view,
            height,
            parent,
            justify,
            batch,
            hash,
        }
    }

    /// The genesis block: view 0, height 0, no requests.
    pub fn genesis() -> Block {
        let batch: Batch = Arc::from(Vec::new());
        Block {
            view: 0,
            height: 0,
            parent: Digest([0; 32]),
            justify: Qc::genesis(),
            batch,
            hash: genesis_hash(),
        }
    }

    fn compute_hash(view: View, height: u64, parent: &Digest, justify: &Qc, batch: &[Request]) -> Digest {
        // Deriving the key from the context string costs a compression of its own: derive
        // it once and start each block's hash from a copy. Most blocks are empty (they
        // carry the chain forward): the empty batch's digest is computed once too.
        static BLOCK_HASHER: LazyLock<blake3::Hasher> =
            LazyLock::new(|| blake3::Hasher::new_derive_key("rehearsal 2026 hotstuff block v1"));
        static EMPTY_BATCH: LazyLock<Digest> = LazyLock::new(|| batch_digest(&[]));
        let batch = if batch.is_empty() {
            *EMPTY_BATCH
        } else {
            batch_digest(batch)
        };
        // One update of the whole record: blake3's per-call bookkeeping costs more than
        // compressing these few bytes.
        let mut record = [0u8; 120];
        record[0..8].copy_from_slice(&view.to_le_bytes());
        record[8..16].copy_from_slice(&height.to_le_bytes());
        record[16..48].copy_from_slice(&parent.0);
        record[48..56].copy_from_slice(&justify.view.to_le_bytes());
        record[56..88].copy_from_slice(&justify.block.0);
        record[88..120].copy_from_slice(&batch.0);
        let mut hasher = BLOCK_HASHER.clone();
        hasher.update(&record);
        hasher.finalize().into()
    }

    /// Whether `hash` is the hash of the block's contents.
    pub fn hash_is_right(&self) -> bool {
        self.hash == Block::compute_hash(self.view, self.height, &self.parent, &self.justify, &self.batch)
    }
}

/// A replica's vote for `block` in `view`, sent to the leader of the next view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub view: View,
    pub block: Digest,
    pub voter: u32,
    pub sig: Signature,
}

impl Vote {
    fn transcript(view: View, block: &Digest) -> Transcript {
        let mut t = Transcript::new(b"hotstuff vote");
        t.u64(view).digest(block);
        t
    }

    pub fn signed(crypto: &Crypto, view: View, block: Digest) -> Vote {
        Vote {
            view,
            block,
            voter: crypto.me().0,
            sig: crypto.sign(Self::transcript(view, &block).as_bytes()),
        }
    }

    pub fn verify(&self, crypto: &Crypto) -> bool {
        let t = Self::transcript(self.view, &self.block);
        crypto.verify(NodeId(self.voter), t.as_bytes(), &self.sig)
    }
}

/// The leader of `block.view` proposes `block`; after views that timed out, `tc` proves
/// that the view before it ended (the block's certificate is then older than that view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub block: Arc<Block>,
    pub tc: Option<Arc<Tc>>,
    /// The leader's signature over the block's hash and view.
    pub sig: Signature,
}

impl Proposal {
    fn transcript(block: &Block) -> Transcript {
        let mut t = Transcript::new(b"hotstuff proposal");
        t.u64(block.view).digest(&block.hash);
        t
    }

    pub fn signed(crypto: &Crypto, block: Arc<Block>, tc: Option<Arc<Tc>>) -> Proposal {
        let sig = crypto.sign(Self::transcript(&block).as_bytes());
        Proposal { block, tc, sig }
    }

    /// Whether the leader of the block's view signed it.
    pub fn signed_by_leader(&self, crypto: &Crypto, n: u32) -> bool {
        let t = Self::transcript(&self.block);
        crypto.verify(leader_of(self.block.view, n), t.as_bytes(), &self.sig)
    }
}

/// A replica gave up on `view`: it carries the replica's highest certificate, so the next
/// leader learns of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeout {
    pub view: View,
    pub high_qc: Qc,
    pub sender: u32,
    /// Over (view, high_qc.view).
    pub sig: Signature,
}

impl Timeout {
    fn transcript(view: View, high_qc_view: View) -> Transcript {
        let mut t = Transcript::new(b"hotstuff timeout");
        t.u64(view).u64(high_qc_view);
        t
    }

    pub fn signed(crypto: &Crypto, view: View, high_qc: Qc) -> Timeout {
        let sig = crypto.sign(Self::transcript(view, high_qc.view).as_bytes());
        Timeout {
            view,
            high_qc,
            sender: crypto.me().0,
            sig,
        }
    }

    /// Whether the sender signed it (its certificate is checked apart).
    pub fn verify(&self, crypto: &Crypto) -> bool {
        let t = Self::transcript(self.view, self.high_qc.view);
        crypto.verify(NodeId(self.sender), t.as_bytes(), &self.sig)
    }
}

/// A timeout certificate: timeouts of distinct replicas for `view`, each signed with the
/// view of its sender's highest certificate; `high_qc` is the highest of those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tc {
    pub view: View,
    /// (replica, the view of its highest certificate, its signature).
    pub timeouts: Vec<(u32, View, Signature)>,
    pub high_qc: Qc,
}

impl Tc {
    /// Checks the certificate: at least `quorum` timeouts of distinct replicas, each
    /// signed, and `high_qc` a valid certificate of the highest view they name.
    pub fn verify(&self, crypto: &Crypto, n: u32, quorum: usize, qc_quorum: usize) -> Result<(), String> {
        check_quorum(
            self.timeouts.iter().map(|t| t.0),
            n,
            quorum,
            "timeouts",
        )?;
        for (sender, high, sig) in &self.timeouts {
            let t = Timeout::transcript(self.view, *high);
            if !crypto.verify(NodeId(*sender), t.as_bytes(), sig) {
                return Err(format!("the timeout of n{sender} has a bad signature"));
            }
        }
        let highest = self.timeouts.iter().map(|t| t.1).max().unwrap_or(0);
        if self.high_qc.view != highest {
            return Err(format!(
                "its certificate is of view {}, but the highest its timeouts name is {highest}",
                self.high_qc.view
            ));
        }
        self.high_qc
            .verify(crypto, n, qc_quorum)
            .map_err(|e| format!("its certificate: {e}"))
    }
}

/// Every message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// A client's signed request, to every replica.
    Request(Arc<Request>),
    /// A replica's signed result of a request it executed, to its client.
    Reply(Arc<Reply>),
    Proposal(Arc<Proposal>),
    Vote(Arc<Vote>),
    Timeout(Arc<Timeout>),
    /// A replica's timeout of a view it had already left, sent back to a replica that
    /// timed out of that view, so that the ones still there can form a TC. It is never
    /// answered in turn: two replicas past the view would otherwise answer each other
    /// for ever.
    TimeoutAnswer(Arc<Timeout>),
    /// A replica's highest QC and the latest TC it knows: sent to the next view's leader
    /// when a TC moves the replica on, and to a replica still timing out of an older view.
    NewView { high_qc: Qc, tc: Option<Arc<Tc>> },
    /// Asks for the block with this hash (an ancestor the asker lacks).
    Fetch { block: Digest },
    /// Blocks the asker lacked, each checked against its hash.
    Blocks(Vec<Arc<Block>>),
}

impl Msg {
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Request(_) => "request",
            Msg::Reply(_) => "reply",
            Msg::Proposal(_) => "proposal",
            Msg::Vote(_) => "vote",
            Msg::Timeout(_) => "timeout",
            Msg::TimeoutAnswer(_) => "timeout-answer",
            Msg::NewView { .. } => "new-view",
            Msg::Fetch { .. } => "fetch",
            Msg::Blocks(_) => "blocks",
        }
    }
}
