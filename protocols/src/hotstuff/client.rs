//! HotStuff clients: closed-loop, one signed request outstanding at a time, sent to every
//! replica (leaders rotate with every view, so each replica keeps it until it executes);
//! re-sent after a timeout, the wait doubling on each retry (up to 8 times its first
//! value). A result is accepted once f+1 replicas sent matching signed replies, so at
//! least one correct replica vouches for it.

use super::messages::Msg;
use super::{Config, NodeWith, Output, TestSeam, Timer};
use crate::closed_loop::{ClientSettings, ClosedLoop};
use crate::crypto::Crypto;
use crate::pbft::client::Completion;
use crate::pbft::messages::Request;
use crate::pbft::Op;
use rehearsal_sim_core::{Context, NodeId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

#[derive(Clone, Serialize)]
pub struct Client {
    core: ClosedLoop,
}

/// What a client saves: how far it got.
#[derive(Serialize, Deserialize)]
struct Durable {
    completed: u64,
}

/// Whether `bytes` decode as the durable state a client saves.
pub(super) fn durable_decodes(bytes: &[u8]) -> bool {
    rehearsal_sim_core::codec::decode::<Durable>(bytes).is_ok()
}

impl Client {
    /// A client of `config`'s group holding `crypto`; with `durable` (what it saved
    /// before a crash), it resumes after the last request it completed.
    pub fn new(config: &Config, crypto: Crypto, durable: Option<&[u8]>) -> Self {
        let settings = ClientSettings {
            n: config.replicas(),
            f: config.f,
            keys: config.keys,
            key_seed: config.key_seed,
            requests_total: config.requests_per_client,
            retransmit_after: config.client_retransmit,
        };
        let mut core = ClosedLoop::new(crypto, settings);
        if let Some(d) = durable.and_then(|b| rehearsal_sim_core::codec::decode::<Durable>(b).ok())
        {
            core.resume_after(d.completed);
        }
        Client { core }
    }

    pub fn completed(&self) -> u64 {
        self.core.completed()
    }

    /// Every request this client completed since it (last) started.
    pub fn completions(&self) -> &[Completion] {
        self.core.completions()
    }

    /// The operation of request `number` (see [`op_for`](crate::pbft::client::op_for)).
    pub fn op_for(&self, number: u64) -> Op {
        self.core.op_for(number)
    }

    /// Every request goes to every replica: leaders rotate.
    pub(super) fn on_start<S: TestSeam>(&mut self, cx: &mut Context<NodeWith<S>>) {
        self.core.send_next(cx, None);
    }

    pub(super) fn on_message<S: TestSeam>(
        &mut self,
        from: NodeId,
        msg: Msg,
        cx: &mut Context<NodeWith<S>>,
    ) {
        let Msg::Reply(reply) = msg else {
            return cx.annotate(format!(
                "drop {} from {from}: clients take only replies",
                msg.kind()
            ));
        };
        if self.core.on_reply(from, &reply, cx).is_some() {
            let _ = cx.persist(&Durable {
                completed: self.core.completed(),
            });
            self.core.send_next(cx, None);
        }
    }

    pub(super) fn on_retransmit<S: TestSeam>(&mut self, number: u64, cx: &mut Context<NodeWith<S>>) {
        self.core.on_retransmit(number, cx);
    }

    pub(super) fn waiting_for(&self) -> Option<String> {
        self.core.waiting_for()
    }
}

crate::closed_loop::client_actor!();
