//! PBFT clients: closed-loop, one signed request outstanding at a time. A request goes to
//! the primary the client believes in; after a timeout it goes to every replica, with
//! exponential backoff. A result is accepted once f+1 replicas sent matching signed
//! replies, so at least one correct replica vouches for it.

use super::messages::{primary_of, Msg, Op, Reply, Request, View};
use super::{Config, NodeWith, Output, TestSeam, Timer};
use crate::crypto::Crypto;
use rehearsal_sim_core::{Context, NodeId, Time, TimerId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

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

pub struct Client {
    crypto: Crypto,
    n: u32,
    f: u32,
    keys: u32,
    key_seed: u64,
    requests_total: u64,
    retransmit_after: Duration,
    /// The view the latest accepted replies came from: where the primary is believed to be.
    view: View,
    completed: u64,
    outstanding: Option<Outstanding>,
    completions: Vec<Completion>,
}

struct Outstanding {
    request: Arc<Request>,
    submitted_at: Time,
    timer: TimerId,
    backoff: u32,
    /// One reply per replica: (replica, view, result).
    replies: Vec<(u32, View, u64)>,
}

/// What a client saves: how far it got.
#[derive(Serialize, Deserialize)]
struct Durable {
    completed: u64,
    view: View,
}

impl Client {
    pub fn new(config: &Config, crypto: Crypto) -> Self {
        Client {
            crypto,
            n: config.replicas(),
            f: config.f,
            keys: config.keys,
            key_seed: config.key_seed,
            requests_total: config.requests_per_client,
            retransmit_after: config.client_retransmit,
            view: 0,
            completed: 0,
            outstanding: None,
            completions: Vec::new(),
        }
    }

    /// A client rebuilt after a crash: it resumes after the last request it completed.
    pub fn restore(config: &Config, crypto: Crypto, durable: Option<&[u8]>) -> Self {
        let mut client = Client::new(config, crypto);
        if let Some(d) = durable.and_then(|b| rehearsal_sim_core::codec::decode::<Durable>(b).ok())
        {
            client.completed = d.completed.min(client.requests_total);
            client.view = d.view;
        }
        client
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }

    /// Every request this client completed since it (last) started.
    pub fn completions(&self) -> &[Completion] {
        &self.completions
    }

    /// The operation of request `number`: a pure function of the key seed, the client and
    /// the number, so a client that restarts sends the very same request again.
    pub fn op_for(&self, number: u64) -> Op {
        op_for(self.key_seed, self.crypto.me(), number, self.keys)
    }

    pub(super) fn on_start<S: TestSeam>(&mut self, cx: &mut Context<NodeWith<S>>) {
        self.send_next(cx);
    }

    fn send_next<S: TestSeam>(&mut self, cx: &mut Context<NodeWith<S>>) {
        if self.completed >= self.requests_total {
            return;
        }
        let number = self.completed + 1;
        let op = self.op_for(number);
        let request = Arc::new(Request::signed(&self.crypto, number, op));
        let timer = cx.set_timer(self.retransmit_after, Timer::Retransmit { number });
        cx.output(Output::Submitted { number, op });
        cx.send(
            primary_of(self.view, self.n),
            Msg::Request(Arc::clone(&request)),
        );
        self.outstanding = Some(Outstanding {
            request,
            submitted_at: cx.now(),
            timer,
            backoff: 0,
            replies: Vec::with_capacity(self.n as usize),
        });
    }

    pub(super) fn on_message<S: TestSeam>(
        &mut self,
        from: NodeId,
        msg: Msg,
        cx: &mut Context<NodeWith<S>>,
    ) {
        match msg {
            Msg::Reply(reply) => self.on_reply(from, reply, cx),
            other => cx.annotate(format!(
                "drop {} from {from}: clients take only replies",
                other.kind()
            )),
        }
    }

    fn on_reply<S: TestSeam>(
        &mut self,
        from: NodeId,
        reply: Arc<Reply>,
        cx: &mut Context<NodeWith<S>>,
    ) {
        if from.0 >= self.n || reply.replica != from.0 {
            cx.annotate(format!("drop reply from {from}: not a replica's own reply"));
            return;
        }
        let Some(out) = self.outstanding.as_mut() else {
            return; // a late reply to a completed request
        };
        if reply.number != out.request.number || out.replies.iter().any(|r| r.0 == from.0) {
            return; // for another request, or this replica already answered
        }
        if !reply.verify(&self.crypto, self.crypto.me()) {
            cx.annotate(format!("drop reply from {from}: bad signature"));
            return;
        }
        out.replies.push((from.0, reply.view, reply.result));
        let mut views: Vec<View> = out
            .replies
            .iter()
            .filter(|r| r.2 == reply.result)
            .map(|r| r.1)
            .collect();
        if views.len() <= self.f as usize {
            return;
        }
        // f+1 replicas vouch for this result. Believe the highest view that f+1 of them
        // reached, so a lying replica cannot send us to a primary of its choice.
        views.sort_unstable_by(|a, b| b.cmp(a));
        self.view = self.view.max(views[self.f as usize]);
        let out = self.outstanding.take().expect("checked above");
        cx.cancel_timer(out.timer);
        self.completed += 1;
        let completion = Completion {
            number: out.request.number,
            submitted_at: out.submitted_at,
            completed_at: cx.now(),
        };
        self.completions.push(completion);
        cx.output(Output::Completed {
            number: completion.number,
            op: out.request.op,
            result: reply.result,
            submitted_at: completion.submitted_at,
            completed_at: completion.completed_at,
        });
        let _ = cx.persist(&Durable {
            completed: self.completed,
            view: self.view,
        });
        self.send_next(cx);
    }

    pub(super) fn on_retransmit<S: TestSeam>(
        &mut self,
        number: u64,
        cx: &mut Context<NodeWith<S>>,
    ) {
        let Some(out) = self
            .outstanding
            .as_mut()
            .filter(|o| o.request.number == number)
        else {
            return;
        };
        out.backoff = (out.backoff + 1).min(BACKOFF_DOUBLINGS_MAX);
        let after = self.retransmit_after * (1 << out.backoff);
        out.timer = cx.set_timer(after, Timer::Retransmit { number });
        let replicas = (0..self.n).map(NodeId);
        cx.broadcast(replicas, Msg::Request(Arc::clone(&out.request)));
    }

    pub(super) fn waiting_for(&self) -> Option<String> {
        let out = self.outstanding.as_ref()?;
        Some(format!(
            "f+1 = {} matching replies to request {} ({} replies so far, {} of {} done)",
            self.f + 1,
            out.request.number,
            out.replies.len(),
            self.completed,
            self.requests_total
        ))
    }
}
