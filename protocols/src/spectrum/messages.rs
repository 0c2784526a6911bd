//! What Spectrum's nodes send one another, in the order a round uses them.

use super::multi::{MultiToken, MultiUpload};
use super::vdpf::{self, Upload};
use rehearsal_sim_core::NodeId;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Rounds count from 0.
pub type Round = u64;

/// One client's upload to one server: the share of the DPF the deployment runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum UploadBody {
    /// Two servers: a [`vdpf::Upload`].
    TwoServer(Upload),
    /// `k ≥ 3` servers: a [`MultiUpload`].
    Multi(MultiUpload),
}

/// One server's audit token for one client's upload, or its refusal of the upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditToken {
    TwoServer(vdpf::Token),
    Multi(MultiToken),
    /// The server refused the upload as malformed (undecodable, wrong shape, the other
    /// variant's share): the write is rejected whatever the other tokens say.
    Malformed,
}

/// One server's accumulator for a round: every accepted write's evaluation, summed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Accumulator {
    /// XOR of evaluations: one slot of message bytes per channel.
    TwoServer(Vec<Vec<u8>>),
    /// Sum of evaluations: per channel, the compressed encodings of its group elements.
    Multi(Vec<Vec<[u8; 32]>>),
}

/// Every message of the protocol.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Msg {
    /// Client → each server: its upload for `round`, re-sent unchanged until the round is
    /// done.
    Upload { round: Round, body: Arc<UploadBody> },
    /// Client → server: bytes that claim to be an [`UploadBody`], decoded by the server.
    /// Only a Byzantine client sends them (`garbage`); a server that cannot decode them
    /// rejects the client, counted and annotated.
    RawUpload { round: Round, bytes: Arc<Vec<u8>> },
    /// Server → leader (server 0): its audit token for `client`'s upload of `round`;
    /// re-sent whenever the client re-sends its upload.
    Token {
        round: Round,
        client: NodeId,
        token: AuditToken,
    },
    /// Leader → other servers: `round` is closed; accumulate exactly `accepted`. Clients
    /// in neither list are absent (not decided before the upload timeout). Re-sent until
    /// acknowledged.
    Close {
        round: Round,
        accepted: Vec<NodeId>,
        rejected: Vec<NodeId>,
    },
    /// Server → leader: it applied the close of `round`.
    CloseAck { round: Round },
    /// Server → publisher: its accumulator of `round` and the writes in it; re-sent until
    /// the publisher confirms the round.
    Accumulator {
        round: Round,
        accepted: Vec<NodeId>,
        acc: Arc<Accumulator>,
    },
    /// Publisher → servers and clients (and server → client, for a late upload; publisher
    /// → client, for a poll): `round` is published.
    RoundDone { round: Round },
    /// Server → client: it holds the client's upload of `round` (so the client stops
    /// re-sending it there).
    UploadAck { round: Round },
    /// Client → publisher: its uploads are all acknowledged and `round` is still not done
    /// here; answered with a round-done if the round is published (the one that was sent
    /// got lost).
    Poll { round: Round },
}

impl Msg {
    /// The message's kind, for annotations.
    pub fn kind(&self) -> &'static str {
        match self {
            Msg::Upload { .. } => "upload",
            Msg::RawUpload { .. } => "raw upload",
            Msg::Token { .. } => "token",
            Msg::Close { .. } => "close",
            Msg::CloseAck { .. } => "close ack",
            Msg::Accumulator { .. } => "accumulator",
            Msg::RoundDone { .. } => "round done",
            Msg::UploadAck { .. } => "upload ack",
            Msg::Poll { .. } => "poll",
        }
    }
}
