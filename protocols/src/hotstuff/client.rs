//! HotStuff clients: closed-loop, one signed request outstanding at a time, sent to every
//! replica (leaders rotate with every view, so each replica keeps it until it executes);
//! re-sent after a timeout, the wait doubling on each retry (up to 8 times its first
//! value). A result is accepted once f+1 replicas sent matching signed replies, so at
//! least one correct replica vouches for it.

use super::messages::Msg;
use super::{Config, NodeWith, Output, TestSeam, Timer};
use crate::crypto::Crypto;
use crate::pbft::client::{op_for, Completion, BACKOFF_DOUBLINGS_MAX};
use crate::pbft::messages::{Reply, Request};
use crate::pbft::Op;
use rehearsal_sim_core::{Context, NodeId, Time, TimerId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;

pub struct Client {
    crypto: Crypto,
    n: u32,
    f: u32,
    keys: u32,
    key_seed: u64,
    requests_total: u64,
    retransmit_after: Duration,
    completed: u64,
    outstanding: Option<Outstanding>,
    completions: Vec<Completion>,
}

struct Outstanding {
    request: Arc<Request>,
    submitted_at: Time,
    timer: TimerId,
    backoff: u32,
    /// One reply per replica: (replica, result).
    replies: Vec<(u32, u64)>,
}

/// What a client saves: how far it got.
#[derive(Serialize, Deserialize)]
struct Durable {
    completed: u64,
}

impl Client {
    /// A client of `config`'s group holding `crypto`; with `durable` (what it saved
    /// before a crash), it resumes after the last request it completed.
    pub fn new(config: &Config, crypto: Crypto, durable: Option<&[u8]>) -> Self {
        let mut client = Client {
            crypto,
            n: config.replicas(),
            f: config.f,
            keys: config.keys,
            key_seed: config.key_seed,
            requests_total: config.requests_per_client,
            retransmit_after: config.client_retransmit,
            completed: 0,
            outstanding: None,
            completions: Vec::new(),
        };
        if let Some(d) = durable.and_then(|b| rehearsal_sim_core::codec::decode::<Durable>(b).ok())
        {
            client.completed = d.completed.min(client.requests_total);
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

    /// The operation of request `number` (see [`op_for`]).
    pub fn op_for(&self, number: u64) -> Op {
        op_for(self.key_seed, self.crypto.me(), number, self.keys)
    }

    pub(super) fn on_start<S: TestSeam>(&mut self, cx: &mut Context<NodeWith<S>>) {
        self.send_next(cx);
    }

    fn replicas(&self) -> impl Iterator<Item = NodeId> {
        (0..self.n).map(NodeId)
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
        cx.broadcast(self.replicas(), Msg::Request(Arc::clone(&request)));
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
            Msg::Reply(reply) => self.on_reply(from, &reply, cx),
            other => cx.annotate(format!(
                "drop {} from {from}: clients take only replies",
                other.kind()
            )),
        }
    }

    fn on_reply<S: TestSeam>(&mut self, from: NodeId, reply: &Reply, cx: &mut Context<NodeWith<S>>) {
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
        out.replies.push((from.0, reply.result));
        let matching = out.replies.iter().filter(|r| r.1 == reply.result).count();
        if matching <= self.f as usize {
            return;
        }
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
        });
        self.send_next(cx);
    }

    pub(super) fn on_retransmit<S: TestSeam>(&mut self, number: u64, cx: &mut Context<NodeWith<S>>) {
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
        let request = Arc::clone(&out.request);
        cx.broadcast(self.replicas(), Msg::Request(request));
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
