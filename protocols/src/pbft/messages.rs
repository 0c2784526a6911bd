//! PBFT's messages, what each signature covers, and the checks every receiver applies to
//! certificates (sets of signed messages that prove a step happened).
//!
//! Big parts are shared, not copied: a batch and a pre-prepare live behind `Arc`, so a
//! broadcast, a certificate and the log all point at one value.

use super::app::Snapshot;
use crate::crypto::{Crypto, Digest, Shared, Signature, Transcript};
use rehearsal_sim_core::NodeId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub type View = u64;
pub type Seq = u64;

/// One operation on the replicated key-value store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Returns the value of `key`.
    Get { key: u32 },
    /// Sets `key`; returns the previous value.
    Put { key: u32, value: u64 },
    /// Adds `delta` to `key` (wrapping); returns the new value.
    Add { key: u32, delta: u64 },
}

impl Op {
    fn write(&self, t: &mut Transcript) {
        match *self {
            Op::Get { key } => t.u32(0).u32(key).u64(0),
            Op::Put { key, value } => t.u32(1).u32(key).u64(value),
            Op::Add { key, delta } => t.u32(2).u32(key).u64(delta),
        };
    }
}

/// A client's request number `number` (1, 2, ... per client), signed by the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub client: NodeId,
    pub number: u64,
    pub op: Op,
    pub sig: Signature,
}

impl Request {
    fn transcript(client: NodeId, number: u64, op: &Op) -> Transcript {
        let mut t = Transcript::new(b"R");
        t.u32(client.0).u64(number);
        op.write(&mut t);
        t
    }

    pub fn signed(crypto: &Crypto, number: u64, op: Op) -> Request {
        let client = crypto.me();
        let sig = crypto.sign(Self::transcript(client, number, &op).as_bytes());
        Request {
            client,
            number,
            op,
            sig,
        }
    }

    pub fn verify(&self, crypto: &Crypto) -> bool {
        let t = Self::transcript(self.client, self.number, &self.op);
        crypto.verify(self.client, t.as_bytes(), &self.sig)
    }
}

/// The requests one sequence number orders, in execution order.
pub type Batch = Arc<[Request]>;

/// The digest a batch is ordered under: it covers every request's client, number and
/// operation (not the client signatures, which each replica checks separately).
pub fn batch_digest(batch: &[Request]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(b"batch");
    hasher.update(&(batch.len() as u64).to_le_bytes());
    for request in batch {
        hasher.update(Request::transcript(request.client, request.number, &request.op).as_bytes());
    }
    hasher.finalize().into()
}

/// The primary of `view` assigns `seq` to the batch with digest `digest`. Signed by the
/// primary over (view, seq, digest); the digest binds the batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PrePrepare {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
    pub batch: Batch,
    pub sig: Signature,
}

impl PrePrepare {
    /// The purpose (see [`Shared::verified`]) of a receiver's check of the whole message:
    /// signature, digest (bit 0 says whether the digest was checked) and the requests.
    pub const CHECKED_WHOLE: u8 = 0b10;

    fn transcript(view: View, seq: Seq, digest: &Digest) -> Transcript {
        let mut t = Transcript::new(b"P");
        t.u64(view).u64(seq).digest(digest);
        t
    }

    /// Signs a pre-prepare for `batch`, computing its digest.
    pub fn signed(crypto: &Crypto, view: View, seq: Seq, batch: Batch) -> PrePrepare {
        let digest = batch_digest(&batch);
        Self::signed_with_digest(crypto, view, seq, digest, batch)
    }

    /// Signs a pre-prepare claiming `digest` for `batch`, whether or not it matches (a
    /// Byzantine primary's tool).
    pub fn signed_with_digest(
        crypto: &Crypto,
        view: View,
        seq: Seq,
        digest: Digest,
        batch: Batch,
    ) -> PrePrepare {
        let sig = crypto.sign(Self::transcript(view, seq, &digest).as_bytes());
        PrePrepare {
            view,
            seq,
            digest,
            batch,
            sig,
        }
    }

    /// Whether the primary of `self.view` signed this.
    pub fn verify_signature(&self, crypto: &Crypto, n: u32) -> bool {
        let primary = primary_of(self.view, n);
        let t = Self::transcript(self.view, self.seq, &self.digest);
        crypto.verify(primary, t.as_bytes(), &self.sig)
    }

    /// Whether the digest is the digest of the batch.
    pub fn binds_batch(&self) -> bool {
        batch_digest(&self.batch) == self.digest
    }
}

/// Which phase a [`Vote`] belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    Prepare,
    Commit,
}

/// A prepare or commit: replica `replica` accepts (view, seq, digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub view: View,
    pub seq: Seq,
    pub digest: Digest,
    pub replica: u32,
    pub sig: Signature,
}

impl Vote {
    fn transcript(phase: Phase, view: View, seq: Seq, digest: &Digest, replica: u32) -> Transcript {
        let tag: &[u8] = match phase {
            Phase::Prepare => b"p",
            Phase::Commit => b"c",
        };
        let mut t = Transcript::new(tag);
        t.u64(view).u64(seq).digest(digest).u32(replica);
        t
    }

    pub fn signed(crypto: &Crypto, phase: Phase, view: View, seq: Seq, digest: Digest) -> Vote {
        let replica = crypto.me().0;
        let sig = crypto.sign(Self::transcript(phase, view, seq, &digest, replica).as_bytes());
        Vote {
            view,
            seq,
            digest,
            replica,
            sig,
        }
    }

    pub fn verify(&self, crypto: &Crypto, phase: Phase) -> bool {
        let t = Self::transcript(phase, self.view, self.seq, &self.digest, self.replica);
        crypto.verify(NodeId(self.replica), t.as_bytes(), &self.sig)
    }
}

/// A replica's answer to a client's request, signed for that client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    pub view: View,
    pub number: u64,
    pub result: u64,
    pub replica: u32,
    pub sig: Signature,
}

impl Reply {
    fn transcript(
        view: View,
        client: NodeId,
        number: u64,
        result: u64,
        replica: u32,
    ) -> Transcript {
        let mut t = Transcript::new(b"Y");
        t.u64(view)
            .u32(client.0)
            .u64(number)
            .u64(result)
            .u32(replica);
        t
    }

    pub fn signed(crypto: &Crypto, view: View, client: NodeId, number: u64, result: u64) -> Reply {
        let replica = crypto.me().0;
        let t = Self::transcript(view, client, number, result, replica);
        Reply {
            view,
            number,
            result,
            replica,
            sig: crypto.sign(t.as_bytes()),
        }
    }

    /// Whether `self.replica` signed this reply for `client`.
    pub fn verify(&self, crypto: &Crypto, client: NodeId) -> bool {
        let t = Self::transcript(self.view, client, self.number, self.result, self.replica);
        crypto.verify(NodeId(self.replica), t.as_bytes(), &self.sig)
    }
}

/// Replica `replica` executed through `seq` and its state then had digest `digest`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: Seq,
    pub digest: Digest,
    pub replica: u32,
    pub sig: Signature,
}

impl Checkpoint {
    fn transcript(seq: Seq, digest: &Digest, replica: u32) -> Transcript {
        let mut t = Transcript::new(b"K");
        t.u64(seq).digest(digest).u32(replica);
        t
    }

    pub fn signed(crypto: &Crypto, seq: Seq, digest: Digest) -> Checkpoint {
        let replica = crypto.me().0;
        let sig = crypto.sign(Self::transcript(seq, &digest, replica).as_bytes());
        Checkpoint {
            seq,
            digest,
            replica,
            sig,
        }
    }

    pub fn verify(&self, crypto: &Crypto) -> bool {
        let t = Self::transcript(self.seq, &self.digest, self.replica);
        crypto.verify(NodeId(self.replica), t.as_bytes(), &self.sig)
    }
}

/// Proof that a request prepared: its pre-prepare and 2f matching prepares from
/// distinct backups of that view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedCert {
    pub pre_prepare: Arc<PrePrepare>,
    pub prepares: Vec<Vote>,
}

/// Proof that a request committed: its pre-prepare and 2f+1 matching commits from
/// distinct replicas. What a lagging replica is sent to catch up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitCert {
    pub pre_prepare: Arc<PrePrepare>,
    pub commits: Vec<Vote>,
}

/// Replica `replica` asks to move to view `new_view`, carrying its last stable checkpoint
/// (with its proof) and a prepared certificate for every sequence number above it that
/// prepared at this replica (the one of the highest view).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    pub new_view: View,
    pub stable_seq: Seq,
    pub stable_digest: Digest,
    /// 2f+1 checkpoint messages for (stable_seq, stable_digest); empty for sequence 0.
    pub stable_proof: Vec<Checkpoint>,
    pub prepared: Vec<PreparedCert>,
    pub replica: u32,
    pub sig: Signature,
}

impl ViewChange {
    /// The signed content is large; the signature covers a digest of it.
    fn content_digest(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"V");
        hasher.update(&self.new_view.to_le_bytes());
        hasher.update(&self.stable_seq.to_le_bytes());
        hasher.update(&self.stable_digest.0);
        hasher.update(&self.replica.to_le_bytes());
        hasher.update(&(self.stable_proof.len() as u64).to_le_bytes());
        for c in &self.stable_proof {
            hasher.update(&c.replica.to_le_bytes());
        }
        hasher.update(&(self.prepared.len() as u64).to_le_bytes());
        for cert in &self.prepared {
            let pp = &cert.pre_prepare;
            hasher.update(&pp.view.to_le_bytes());
            hasher.update(&pp.seq.to_le_bytes());
            hasher.update(&pp.digest.0);
            for p in &cert.prepares {
                hasher.update(&p.replica.to_le_bytes());
            }
        }
        hasher.finalize().into()
    }

    #[allow(clippy::too_many_arguments)]
    pub fn signed(
        crypto: &Crypto,
        new_view: View,
        stable_seq: Seq,
        stable_digest: Digest,
        stable_proof: Vec<Checkpoint>,
        prepared: Vec<PreparedCert>,
    ) -> ViewChange {
        let mut vc = ViewChange {
            new_view,
            stable_seq,
            stable_digest,
            stable_proof,
            prepared,
            replica: crypto.me().0,
            sig: Signature::Mac([0; 16]),
        };
        vc.sig = crypto.sign(&vc.content_digest().0);
        vc
    }

    pub fn verify_signature(&self, crypto: &Crypto) -> bool {
        crypto.verify(NodeId(self.replica), &self.content_digest().0, &self.sig)
    }
}

/// The new primary's announcement of view `view`: the 2f+1 view changes it is based on,
/// and the pre-prepares it derived from them (null batches for gaps).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    pub view: View,
    pub view_changes: Vec<Arc<ViewChange>>,
    pub pre_prepares: Vec<Arc<PrePrepare>>,
    pub sig: Signature,
}

impl NewView {
    fn content_digest(view: View, vcs: &[Arc<ViewChange>], pps: &[Arc<PrePrepare>]) -> Digest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"N");
        hasher.update(&view.to_le_bytes());
        for vc in vcs {
            hasher.update(&vc.content_digest().0);
        }
        for pp in pps {
            hasher.update(&pp.seq.to_le_bytes());
            hasher.update(&pp.digest.0);
        }
        hasher.finalize().into()
    }

    pub fn signed(
        crypto: &Crypto,
        view: View,
        view_changes: Vec<Arc<ViewChange>>,
        pre_prepares: Vec<Arc<PrePrepare>>,
    ) -> NewView {
        let digest = Self::content_digest(view, &view_changes, &pre_prepares);
        NewView {
            view,
            view_changes,
            pre_prepares,
            sig: crypto.sign(&digest.0),
        }
    }

    pub fn verify_signature(&self, crypto: &Crypto, n: u32) -> bool {
        let digest = Self::content_digest(self.view, &self.view_changes, &self.pre_prepares);
        crypto.verify(primary_of(self.view, n), &digest.0, &self.sig)
    }
}

/// A stable checkpoint with the proof that it is (2f+1 checkpoint messages), and the
/// state itself when the receiver needs it (state transfer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StableCheckpoint {
    pub seq: Seq,
    pub digest: Digest,
    pub proof: Vec<Checkpoint>,
    pub snapshot: Option<Arc<Snapshot>>,
}

/// "I am at view `view`, my last stable checkpoint is `low`, and I need sequence numbers
/// from `next` on."
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fetch {
    pub view: View,
    pub low: Seq,
    pub next: Seq,
    pub replica: u32,
    pub sig: Signature,
}

impl Fetch {
    fn transcript(view: View, low: Seq, next: Seq, replica: u32) -> Transcript {
        let mut t = Transcript::new(b"F");
        t.u64(view).u64(low).u64(next).u32(replica);
        t
    }

    pub fn signed(crypto: &Crypto, view: View, low: Seq, next: Seq) -> Fetch {
        let replica = crypto.me().0;
        Fetch {
            view,
            low,
            next,
            replica,
            sig: crypto.sign(Self::transcript(view, low, next, replica).as_bytes()),
        }
    }

    pub fn verify(&self, crypto: &Crypto) -> bool {
        let t = Self::transcript(self.view, self.low, self.next, self.replica);
        crypto.verify(NodeId(self.replica), t.as_bytes(), &self.sig)
    }
}

/// What a replica knows that a lagging one asked for. Every part proves itself (a signed
/// new view, a checkpoint proof, commit certificates), so the container is not signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchReply {
    pub new_view: Option<Arc<NewView>>,
    pub checkpoint: Option<StableCheckpoint>,
    pub certs: Vec<CommitCert>,
}

/// Every message of the protocol, clients' and replicas'. Every variant is a pointer, so a
/// message is two words wherever the simulator queues, copies or clones it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    Request(Arc<Request>),
    /// Shared by its receivers, so the first backup's check of the whole pre-prepare
    /// (signature, digest, the requests' signatures) answers for the others.
    PrePrepare(Shared<Arc<PrePrepare>>),
    Prepare(Shared<Vote>),
    Commit(Shared<Vote>),
    Reply(Arc<Reply>),
    Checkpoint(Shared<Checkpoint>),
    ViewChange(Arc<ViewChange>),
    NewView(Arc<NewView>),
    Fetch(Arc<Fetch>),
    FetchReply(Arc<FetchReply>),
}

impl Msg {
    /// A short name for trace annotations.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Request(_) => "request",
            Msg::PrePrepare(_) => "pre-prepare",
            Msg::Prepare(_) => "prepare",
            Msg::Commit(_) => "commit",
            Msg::Reply(_) => "reply",
            Msg::Checkpoint(_) => "checkpoint",
            Msg::ViewChange(_) => "view-change",
            Msg::NewView(_) => "new-view",
            Msg::Fetch(_) => "fetch",
            Msg::FetchReply(_) => "fetch-reply",
        }
    }
}

/// The primary of `view` among `n` replicas.
pub fn primary_of(view: View, n: u32) -> NodeId {
    NodeId((view % u64::from(n)) as u32)
}

// ---- Certificate checks -------------------------------------------------------------------

/// The parameters certificate checks need: the group size and the quorum rules in force.
#[derive(Debug, Clone, Copy)]
pub struct Quorums {
    pub n: u32,
    pub f: u32,
    /// Matching commits that commit a request: 2f+1 (2f under the `small-commit-quorum`
    /// mutant: the replica's [`TestSeam`](super::TestSeam) decides).
    pub commit: usize,
}

impl Quorums {
    pub fn prepared(&self) -> usize {
        2 * self.f as usize
    }
    pub fn stable(&self) -> usize {
        2 * self.f as usize + 1
    }
    pub fn weak(&self) -> usize {
        self.f as usize + 1
    }
}

/// Why a certificate or message was refused: goes into the trace annotation.
pub type Refusal = String;

/// Checks that every request of a batch is a client's and carries its signature.
pub fn check_batch(
    batch: &[Request],
    crypto: &Crypto,
    is_client: impl Fn(NodeId) -> bool,
    verified: impl Fn(&Request) -> bool,
) -> Result<(), Refusal> {
    for request in batch {
        if !is_client(request.client) {
            return Err(format!(
                "batch holds a request from {}, not a client",
                request.client
            ));
        }
        if !verified(request) && !request.verify(crypto) {
            return Err(format!(
                "batch holds request {} of {} with a bad client signature",
                request.number, request.client
            ));
        }
    }
    Ok(())
}

/// Checks a pre-prepare's signature and, if `check_digest` (the replica's
/// [`TestSeam`](super::TestSeam) says; always for the correct protocol), that its digest
/// binds its batch. Not its batch's requests.
pub fn check_pre_prepare(
    pp: &PrePrepare,
    crypto: &Crypto,
    q: &Quorums,
    check_digest: bool,
) -> Result<(), Refusal> {
    if !pp.verify_signature(crypto, q.n) {
        return Err("bad signature".into());
    }
    check_binding(pp, check_digest)
}

/// If `check_digest`, that a pre-prepare's digest binds its batch: [`check_pre_prepare`]
/// for one whose signature was checked already.
pub fn check_binding(pp: &PrePrepare, check_digest: bool) -> Result<(), Refusal> {
    if check_digest && !pp.binds_batch() {
        return Err(format!("digest {} does not match its batch", pp.digest));
    }
    Ok(())
}

/// How many distinct replicas of a group of `n` are among `replicas`: what a quorum
/// counts, where one replica's repeated message counts once. For the replica's
/// assertions on its own certificates (validation of others' uses [`check_prepared`],
/// [`check_committed`] and [`check_stable_proof`], which also verify signatures).
pub(super) fn distinct_replicas(replicas: impl IntoIterator<Item = u32>, n: u32) -> usize {
    let mut seen = 0u128;
    for replica in replicas.into_iter().filter(|&r| r < n) {
        seen |= 1 << replica;
    }
    seen.count_ones() as usize
}

/// Counts distinct valid votes of `phase` matching (view, seq, digest) by replicas allowed
/// by `voter_ok`.
fn count_votes(
    votes: &[Vote],
    phase: Phase,
    pp: &PrePrepare,
    crypto: &Crypto,
    n: u32,
    voter_ok: impl Fn(u32) -> bool,
) -> usize {
    let mut seen = 0u128;
    let mut count = 0;
    for v in votes {
        if v.replica >= n || !voter_ok(v.replica) || seen & (1 << v.replica) != 0 {
            continue;
        }
        if v.view != pp.view || v.seq != pp.seq || v.digest != pp.digest || !v.verify(crypto, phase)
        {
            continue;
        }
        seen |= 1 << v.replica;
        count += 1;
    }
    count
}

/// Checks a prepared certificate: a valid pre-prepare and 2f prepares from distinct
/// backups (not the primary) of its view. `check_digest` as for [`check_pre_prepare`].
pub fn check_prepared(
    cert: &PreparedCert,
    crypto: &Crypto,
    q: &Quorums,
    check_digest: bool,
) -> Result<(), Refusal> {
    let pp = &cert.pre_prepare;
    check_pre_prepare(pp, crypto, q, check_digest)
        .map_err(|e| format!("prepared certificate for {}: pre-prepare {e}", pp.seq))?;
    let primary = primary_of(pp.view, q.n).0;
    let count = count_votes(&cert.prepares, Phase::Prepare, pp, crypto, q.n, |r| {
        r != primary
    });
    if count < q.prepared() {
        return Err(format!(
            "prepared certificate for {} has {count} valid prepares, needs {}",
            pp.seq,
            q.prepared()
        ));
    }
    Ok(())
}

/// Checks a commit certificate: a valid pre-prepare and a commit quorum of matching
/// commits. `check_digest` as for [`check_pre_prepare`].
pub fn check_committed(
    cert: &CommitCert,
    crypto: &Crypto,
    q: &Quorums,
    check_digest: bool,
) -> Result<(), Refusal> {
    let pp = &cert.pre_prepare;
    check_pre_prepare(pp, crypto, q, check_digest)
        .map_err(|e| format!("commit certificate for {}: pre-prepare {e}", pp.seq))?;
    let count = count_votes(&cert.commits, Phase::Commit, pp, crypto, q.n, |_| true);
    if count < q.commit {
        return Err(format!(
            "commit certificate for {} has {count} valid commits, needs {}",
            pp.seq, q.commit
        ));
    }
    Ok(())
}

/// Checks that `proof` holds 2f+1 valid checkpoint messages from distinct replicas for
/// (seq, digest). Sequence 0 (the initial state) needs no proof.
pub fn check_stable_proof(
    seq: Seq,
    digest: &Digest,
    proof: &[Checkpoint],
    crypto: &Crypto,
    q: &Quorums,
) -> Result<(), Refusal> {
    if seq == 0 {
        return Ok(());
    }
    let mut seen = 0u128;
    let mut count = 0;
    for c in proof {
        if c.replica >= q.n || seen & (1 << c.replica) != 0 {
            continue;
        }
        if c.seq != seq || c.digest != *digest || !c.verify(crypto) {
            continue;
        }
        seen |= 1 << c.replica;
        count += 1;
    }
    if count < q.stable() {
        return Err(format!(
            "checkpoint proof for {seq} has {count} valid checkpoints, needs {}",
            q.stable()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::CryptoKind;

    /// A pre-prepare travels in a [`Shared`] (so its receivers share one check of it): its
    /// encoding, printing and comparison must be those of the plain `Arc<PrePrepare>` it
    /// replaced, which trace digests, bytes counted per node and the explorer's
    /// fingerprints were computed from.
    #[test]
    fn a_shared_pre_prepare_encodes_and_prints_as_the_plain_one_did() {
        /// `Msg` as it was, up to its pre-prepare variant.
        #[derive(Debug, Serialize)]
        enum Before {
            #[allow(dead_code)]
            Request(Arc<Request>),
            PrePrepare(Arc<PrePrepare>),
        }
        let keys = Crypto::generate(CryptoKind::Sim, 3, 5);
        let request = Request::signed(&keys[4], 1, Op::Put { key: 2, value: 9 });
        let pp = Arc::new(PrePrepare::signed(&keys[0], 0, 1, Arc::new([request])));
        let now = Msg::PrePrepare(Shared::new(Arc::clone(&pp)));
        let before = Before::PrePrepare(Arc::clone(&pp));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        rehearsal_sim_core::codec::encode_into(&now, &mut a).unwrap();
        rehearsal_sim_core::codec::encode_into(&before, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(format!("{now:?}"), format!("{before:?}"));
        let decoded: Msg = rehearsal_sim_core::codec::decode(&a).unwrap();
        assert_eq!(decoded, now);
    }
}
