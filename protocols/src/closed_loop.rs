//! The closed-loop client of a replicated service, as PBFT's and HotStuff's clients share
//! it: one signed request outstanding at a time, re-sent to every replica after a timeout
//! (the wait doubling on each retry, up to [`BACKOFF_DOUBLINGS_MAX`] times), and accepted
//! once f+1 replicas sent matching signed replies, so that at least one correct replica
//! vouches for it. A protocol's client wraps it with where a first request goes and what
//! the client saves.

use crate::crypto::Crypto;
use crate::pbft::client::{op_for, Completion, BACKOFF_DOUBLINGS_MAX};
use crate::pbft::messages::{Reply, Request, View};
use crate::pbft::Op;
use rehearsal_sim_core::{Actor, Context, NodeId, Time, TimerId};
use std::sync::Arc;
use std::time::Duration;

/// How a protocol's actor carries the client's requests, timer and outputs.
pub trait ClientActor: Actor {
    fn retransmit_timer(number: u64) -> Self::Timer;
    fn request(request: Arc<Request>) -> Self::Msg;
    fn submitted(number: u64, op: Op) -> Self::Output;
    fn completed(completion: Completion, op: Op, result: u64) -> Self::Output;
}

/// [`ClientActor`] for a protocol module's `NodeWith<S>` whose client timer, request
/// message and outputs are named as PBFT's and HotStuff's are (`Timer::Retransmit`,
/// `Msg::Request`, `Output::Submitted`, `Output::Completed`).
macro_rules! client_actor {
    () => {
        impl<S: TestSeam> $crate::closed_loop::ClientActor for NodeWith<S> {
            fn retransmit_timer(number: u64) -> Timer {
                Timer::Retransmit { number }
            }
            fn request(request: Arc<Request>) -> Msg {
                Msg::Request(request)
            }
            fn submitted(number: u64, op: Op) -> Output {
                Output::Submitted { number, op }
            }
            fn completed(completion: Completion, op: Op, result: u64) -> Output {
                Output::Completed {
                    number: completion.number,
                    op,
                    result,
                    submitted_at: completion.submitted_at,
                    completed_at: completion.completed_at,
                }
            }
        }
    };
}
pub(crate) use client_actor;

/// The sizes and timer a client takes from its protocol's configuration.
#[derive(Debug, Clone, Copy)]
pub struct ClientSettings {
    /// Replicas: nodes `0..n`.
    pub n: u32,
    pub f: u32,
    /// Keys of the store, and the seed its operations are drawn from ([`op_for`]).
    pub keys: u32,
    pub key_seed: u64,
    pub requests_total: u64,
    pub retransmit_after: Duration,
}

#[derive(Clone, serde::Serialize)]
pub struct ClosedLoop {
    #[serde(skip)]
    crypto: Crypto,
    #[serde(skip)]
    settings: ClientSettings,
    completed: u64,
    outstanding: Option<Outstanding>,
    completions: Vec<Completion>,
}

#[derive(Clone, serde::Serialize)]
struct Outstanding {
    request: Arc<Request>,
    submitted_at: Time,
    timer: TimerId,
    backoff: u32,
    /// One reply per replica: (replica, view, result).
    replies: Vec<(u32, View, u64)>,
}

impl ClosedLoop {
    pub fn new(crypto: Crypto, settings: ClientSettings) -> Self {
        ClosedLoop {
            crypto,
            settings,
            completed: 0,
            outstanding: None,
            completions: Vec::new(),
        }
    }

    /// Resumes after request `completed` (a restart from saved state).
    pub fn resume_after(&mut self, completed: u64) {
        self.completed = completed.min(self.settings.requests_total);
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
        let s = &self.settings;
        op_for(s.key_seed, self.crypto.me(), number, s.keys)
    }

    fn replicas(&self) -> impl Iterator<Item = NodeId> {
        (0..self.settings.n).map(NodeId)
    }

    /// Sends the next request, if any is left: to `to`, or to every replica.
    pub fn send_next<A: ClientActor>(&mut self, cx: &mut Context<A>, to: Option<NodeId>) {
        if self.completed >= self.settings.requests_total {
            return;
        }
        let number = self.completed + 1;
        let op = self.op_for(number);
        let request = Arc::new(Request::signed(&self.crypto, number, op));
        let timer = cx.set_timer(self.settings.retransmit_after, A::retransmit_timer(number));
        cx.output(A::submitted(number, op));
        match to {
            Some(node) => cx.send(node, A::request(Arc::clone(&request))),
            None => cx.broadcast(self.replicas(), A::request(Arc::clone(&request))),
        }
        self.outstanding = Some(Outstanding {
            request,
            submitted_at: cx.now(),
            timer,
            backoff: 0,
            replies: Vec::with_capacity(self.settings.n as usize),
        });
    }

    /// Takes a reply. When it completes the request (f+1 matching), the request's
    /// timer is cancelled and its completion output; the views of the matching replies
    /// are returned, highest first, and the caller saves its state and sends the next.
    pub fn on_reply<A: ClientActor>(
        &mut self,
        from: NodeId,
        reply: &Reply,
        cx: &mut Context<A>,
    ) -> Option<Vec<View>> {
        if from.0 >= self.settings.n || reply.replica != from.0 {
            cx.annotate(format!("drop reply from {from}: not a replica's own reply"));
            return None;
        }
        let out = self.outstanding.as_mut()?; // none: a late reply to a completed request
        if reply.number != out.request.number || out.replies.iter().any(|r| r.0 == from.0) {
            return None; // for another request, or this replica already answered
        }
        if !reply.verify(&self.crypto, self.crypto.me()) {
            cx.annotate(format!("drop reply from {from}: bad signature"));
            return None;
        }
        out.replies.push((from.0, reply.view, reply.result));
        let matching = out.replies.iter().filter(|r| r.2 == reply.result).count();
        if matching <= self.settings.f as usize {
            return None;
        }
        let mut views: Vec<View> = out
            .replies
            .iter()
            .filter(|r| r.2 == reply.result)
            .map(|r| r.1)
            .collect();
        views.sort_unstable_by(|a, b| b.cmp(a));
        let out = self.outstanding.take()?;
        cx.cancel_timer(out.timer);
        self.completed += 1;
        let completion = Completion {
            number: out.request.number,
            submitted_at: out.submitted_at,
            completed_at: cx.now(),
        };
        self.completions.push(completion);
        cx.output(A::completed(completion, out.request.op, reply.result));
        Some(views)
    }

    /// The retransmission timer of request `number` fired: to every replica again, and
    /// the next wait doubles.
    pub fn on_retransmit<A: ClientActor>(&mut self, number: u64, cx: &mut Context<A>) {
        let replicas: Vec<NodeId> = self.replicas().collect();
        let Some(out) = self
            .outstanding
            .as_mut()
            .filter(|o| o.request.number == number)
        else {
            return;
        };
        out.backoff = (out.backoff + 1).min(BACKOFF_DOUBLINGS_MAX);
        let after = self.settings.retransmit_after * (1 << out.backoff);
        out.timer = cx.set_timer(after, A::retransmit_timer(number));
        cx.broadcast(replicas, A::request(Arc::clone(&out.request)));
    }

    pub fn waiting_for(&self) -> Option<String> {
        let out = self.outstanding.as_ref()?;
        Some(format!(
            "f+1 = {} matching replies to request {} ({} replies so far, {} of {} done)",
            self.settings.f + 1,
            out.request.number,
            out.replies.len(),
            self.completed,
            self.settings.requests_total
        ))
    }
}
