//! PBFT clients: closed-loop, one signed request outstanding at a time. A request goes to
//! the primary the client believes in; after a timeout it goes to every replica, with
//! exponential backoff. A result is accepted once f+1 replicas sent matching signed
//! replies, so at least one correct replica vouches for it.

use super::messages::{primary_of, Msg, Op, Reply, Request, View};
use super::{Config, NodeWith, Output, TestSeam, Timer};
use crate::closed_loop::{ClientSettings, ClosedLoop};
use crate::crypto::Crypto;
use rehearsal_sim_core::{Context, NodeId, Time};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One completed request, for throughput and latency figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Completion {
    pub number: u64,
    pub submitted_at: Time,
    pub completed_at: Time,
}

/// Retransmission backoff stops doubling after this many retries: a client then retries
/// every 8 base timeouts (4 s by default). Backoff spares the replicas during a long
/// outage, but once it heals a request waits for the client's next retry, so the gap is
/// capped low enough that a lossy network gets many retries within the termination bound
/// (see [`Config::termination_bound_under_loss`]).
pub const BACKOFF_DOUBLINGS_MAX: u32 = 3;

/// The operation of `client`'s request `number` on a store of `keys` keys: a pure
/// function of its arguments (closed-loop clients of every protocol draw from it), so a
/// client that restarts sends the very same request again.
pub fn op_for(key_seed: u64, client: NodeId, number: u64, keys: u32) -> Op {
    let mut hasher = blake3::Hasher::new_derive_key("rehearsal 2026 pbft client ops v1");
    hasher.update(&key_seed.to_le_bytes());
    hasher.update(&client.0.to_le_bytes());
    hasher.update(&number.to_le_bytes());
    let bytes = hasher.finalize();
    let word = |i: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes.as_bytes()[i * 8..i * 8 + 8]);
        u64::from_le_bytes(w)
    };
    let key = (word(0) % u64::from(keys)) as u32;
    let value = word(1) % 1_000;
    match word(2) % 3 {
        0 => Op::Get { key },
        1 => Op::Put { key, value },
        _ => Op::Add { key, delta: value },
    }
}

#[derive(Clone, Serialize)]
pub struct Client {
    core: ClosedLoop,
    #[serde(skip)]
    n: u32,
    #[serde(skip)]
    f: u32,
    /// The view the latest accepted replies came from: where the primary is believed to be.
    view: View,
}

/// What a client saves: how far it got.
#[derive(Serialize, Deserialize)]
struct Durable {
    completed: u64,
    view: View,
}

/// Whether `bytes` decode as the durable state a client saves.
pub(super) fn durable_decodes(bytes: &[u8]) -> bool {
    rehearsal_sim_core::codec::decode::<Durable>(bytes).is_ok()
}

impl Client {
    pub fn new(config: &Config, crypto: Crypto) -> Self {
        let settings = ClientSettings {
            n: config.replicas(),
            f: config.f,
            keys: config.keys,
            key_seed: config.key_seed,
            requests_total: config.requests_per_client,
            retransmit_after: config.client_retransmit,
        };
        Client {
            core: ClosedLoop::new(crypto, settings),
            n: settings.n,
            f: settings.f,
            view: 0,
        }
    }

    /// A client rebuilt after a crash: it resumes after the last request it completed.
    pub fn restore(config: &Config, crypto: Crypto, durable: Option<&[u8]>) -> Self {
        let mut client = Client::new(config, crypto);
        if let Some(d) = durable.and_then(|b| rehearsal_sim_core::codec::decode::<Durable>(b).ok())
        {
            client.core.resume_after(d.completed);
            client.view = d.view;
        }
        client
    }

    pub fn completed(&self) -> u64 {
        self.core.completed()
    }

    /// Every request this client completed since it (last) started.
    pub fn completions(&self) -> &[Completion] {
        self.core.completions()
    }

    /// The operation of request `number` (see [`op_for`]).
    pub fn op_for(&self, number: u64) -> Op {
        self.core.op_for(number)
    }

    pub(super) fn on_start<S: TestSeam>(&mut self, cx: &mut Context<NodeWith<S>>) {
        self.send_next(cx);
    }

    /// A first request goes to the primary the client believes in.
    fn send_next<S: TestSeam>(&mut self, cx: &mut Context<NodeWith<S>>) {
        let primary = primary_of(self.view, self.n);
        self.core.send_next(cx, Some(primary));
    }

    pub(super) fn on_message<S: TestSeam>(
        &mut self,
        from: NodeId,
        msg: Msg,
        cx: &mut Context<NodeWith<S>>,
    ) {
        match msg {
            Msg::Reply(reply) => self.on_reply(from, &reply, cx),
            other => cx.annotate(format!(
                "drop {} from {from}: clients take only replies",
                other.kind()
            )),
        }
    }

    fn on_reply<S: TestSeam>(&mut self, from: NodeId, reply: &Reply, cx: &mut Context<NodeWith<S>>) {
        let Some(views) = self.core.on_reply(from, reply, cx) else {
            return;
        };
        // f+1 replicas vouch for this result. Believe the highest view that f+1 of them
        // reached, so a lying replica cannot send us to a primary of its choice.
        if let Some(&vouched) = views.get(self.f as usize) {
            self.view = self.view.max(vouched);
        }
        let _ = cx.persist(&Durable {
            completed: self.core.completed(),
            view: self.view,
        });
        self.send_next(cx);
    }

    pub(super) fn on_retransmit<S: TestSeam>(
        &mut self,
        number: u64,
        cx: &mut Context<NodeWith<S>>,
    ) {
        self.core.on_retransmit(number, cx);
    }

    pub(super) fn waiting_for(&self) -> Option<String> {
        self.core.waiting_for()
    }
}

crate::closed_loop::client_actor!();
