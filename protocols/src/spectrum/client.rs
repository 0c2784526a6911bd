//! Spectrum's clients. Each round a client sends every server one upload: a writer (a
//! client holding its channel's access key) writes that round's message to its channel,
//! any other client sends a cover, and no server can tell which. It re-sends the same
//! uploads until it learns the round is published, then starts the next round.

use super::byzantine::Behavior;
use super::config::{Config, Variant};
use super::embedding::encode_message;
use super::messages::{Msg, Round, UploadBody};
use super::multi;
use super::node::{NodeWith, Output, Timer};
use super::vdpf::{self, AccessKey};
use super::SpectrumError;
use rehearsal_sim_core::explore::Fingerprinter;
use rehearsal_sim_core::{Context, NodeId, SimRng, Time, TimerId};
use std::sync::Arc;

/// One round as a client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub round: Round,
    /// Whether the client uploaded for it (it skips rounds it fell behind on).
    pub uploaded: bool,
    pub submitted_at: Time,
    pub completed_at: Time,
}

/// The uploads of the round in progress.
#[derive(Clone)]
struct Sent {
    round: Round,
    msgs: Vec<Msg>,
    /// Which servers acknowledged their upload (by server index): only the others get it
    /// again.
    acked: Vec<bool>,
    at: Time,
    timer: TimerId,
}

#[derive(Clone)]
pub struct Client<const TESTING: bool> {
    index: u32,
    config: Config,
    /// Its channel and that channel's access key, if it is a writer.
    key: Option<(u32, AccessKey)>,
    /// The next round to complete.
    round: Round,
    sent: Option<Sent>,
    byzantine: Option<Behavior>,
    /// The switch to (or from) a Byzantine behaviour, still to be announced.
    announce: Option<Output>,
    completions: Vec<Completion>,
}

impl<const TESTING: bool> Client<TESTING> {
    pub fn new(config: &Config, me: NodeId) -> Self {
        let index = config.client_index(me).unwrap_or(0);
        let key = config
            .channel_of(index)
            .map(|channel| (channel, config.access_key(channel)));
        Client {
            index,
            config: config.clone(),
            key,
            round: 0,
            sent: None,
            byzantine: None,
            announce: None,
            completions: Vec::new(),
        }
    }

    /// Every round this client completed, in order.
    pub fn completions(&self) -> &[Completion] {
        &self.completions
    }

    /// The channel this client writes to, if it is a writer.
    pub fn channel(&self) -> Option<u32> {
        self.key.map(|(channel, _)| channel)
    }

    /// Feeds the explorer what decides this client's future: the round it is in, the
    /// uploads it re-sends and which servers acknowledged them, when it first sent them
    /// (its completion reports it), its Byzantine behaviour and a switch still to
    /// announce. Left out: `index`, `config` and `key`, constants of the run; the round
    /// of `sent`, always the client's round; the id of its resend timer, which only names
    /// the timer the explorer fingerprints with the node's armed timers; `completions`,
    /// the record of rounds done, which only the summary reads.
    pub(super) fn fingerprint(&self, h: &mut Fingerprinter) {
        let sent = self.sent.as_ref().map(|s| (&s.msgs, &s.acked, s.at));
        h.encoded(&(self.round, sent, &self.announce));
        h.value(&self.byzantine.map(Behavior::name));
    }

    pub(super) fn on_start(&mut self, cx: &mut Context<NodeWith<TESTING>>) {
        self.send_round(cx);
    }

    fn servers(&self) -> impl Iterator<Item = NodeId> {
        self.config.servers_ids()
    }

    /// Sends the uploads of the round in progress, once.
    fn send_round(&mut self, cx: &mut Context<NodeWith<TESTING>>) {
        self.announce(cx);
        if self.round >= self.config.rounds {
            return;
        }
        let round = self.round;
        let made = match self.byzantine {
            Some(behavior) if TESTING => {
                behavior.forge(&self.config, self.index, self.key, round, cx.rng())
            }
            _ => self.honest_uploads(round, cx.rng()),
        };
        let msgs = match made {
            Ok(msgs) => msgs,
            Err(e) => {
                // Only a configuration `validate` refuses gets here; the client sits the
                // round out (absent) and follows the others.
                cx.annotate(format!("no uploads for round {round}: {e}"));
                Vec::new()
            }
        };
        cx.output(Output::Submitted { round });
        for (server, msg) in self.servers().zip(&msgs) {
            cx.send(server, msg.clone());
        }
        let timer = cx.set_timer(self.config.retransmit, Timer::ClientResend { round });
        self.sent = Some(Sent {
            round,
            acked: vec![false; msgs.len()],
            msgs,
            at: cx.now(),
            timer,
        });
    }

    /// A write of this round's message to its channel, or a cover.
    fn honest_uploads(&self, round: Round, rng: &mut SimRng) -> Result<Vec<Msg>, SpectrumError> {
        let c = self.config.channels as usize;
        let bodies: Vec<UploadBody> = match (self.config.variant(), self.key) {
            (Variant::TwoServer, Some((channel, key))) => {
                let message = self.config.message(self.index, round);
                vdpf::gen_write(&key, c, channel as usize, &message, rng)?
                    .into_iter()
                    .map(UploadBody::TwoServer)
                    .collect()
            }
            (Variant::TwoServer, None) => {
                vdpf::gen_cover(c, self.config.message_bytes as usize, rng)?
                    .into_iter()
                    .map(UploadBody::TwoServer)
                    .collect()
            }
            (Variant::Multi, Some((channel, key))) => {
                let message = encode_message(&self.config.message(self.index, round))?;
                let servers = self.config.servers as usize;
                multi::gen_write(servers, &key, c, channel as usize, &message, rng)?
                    .into_iter()
                    .map(UploadBody::Multi)
                    .collect()
            }
            (Variant::Multi, None) => {
                let servers = self.config.servers as usize;
                multi::gen_cover(servers, c, self.config.message_points(), rng)?
                    .into_iter()
                    .map(UploadBody::Multi)
                    .collect()
            }
        };
        Ok(bodies
            .into_iter()
            .map(|body| Msg::Upload {
                round,
                body: Arc::new(body),
            })
            .collect())
    }

    pub(super) fn on_message(
        &mut self,
        from: NodeId,
        msg: Msg,
        cx: &mut Context<NodeWith<TESTING>>,
    ) {
        self.announce(cx);
        if let Msg::UploadAck { round } = msg {
            let server = self.servers().position(|s| s == from);
            match (server, self.sent.as_mut().filter(|s| s.round == round)) {
                (Some(i), Some(sent)) => {
                    if let Some(acked) = sent.acked.get_mut(i) {
                        *acked = true;
                    }
                }
                (None, _) => cx.annotate(format!("drop upload ack from {from}: not a server")),
                (Some(_), None) => {} // a late copy
            }
            return;
        }
        let Msg::RoundDone { round } = msg else {
            cx.annotate(format!(
                "drop {} from {from}: clients take only round-done and upload acks",
                msg.kind()
            ));
            return;
        };
        if !self.config.is_server(from) && from != self.config.publisher() {
            cx.annotate(format!("drop round-done from {from}: not a server or the publisher"));
            return;
        }
        if round < self.round || self.round >= self.config.rounds {
            return; // a late copy
        }
        // Rounds publish in order: every round up to `round` is done.
        let now = cx.now();
        let last = round.min(self.config.rounds - 1);
        let sent = self.sent.take();
        if let Some(sent) = &sent {
            cx.cancel_timer(sent.timer);
        }
        for done in self.round..=last {
            let uploaded = sent.as_ref().filter(|s| s.round == done);
            let completion = Completion {
                round: done,
                uploaded: uploaded.is_some(),
                submitted_at: uploaded.map_or(now, |s| s.at),
                completed_at: now,
            };
            self.completions.push(completion);
            cx.output(Output::Completed {
                round: done,
                uploaded: completion.uploaded,
                submitted_at: completion.submitted_at,
                completed_at: now,
            });
        }
        self.round = last + 1;
        self.send_round(cx);
    }

    pub(super) fn on_resend(&mut self, round: Round, cx: &mut Context<NodeWith<TESTING>>) {
        self.announce(cx);
        let servers: Vec<NodeId> = self.servers().collect();
        let publisher = self.config.publisher();
        let Some(sent) = self.sent.as_mut().filter(|s| s.round == round) else {
            return;
        };
        let mut resent = false;
        for ((server, msg), acked) in servers.into_iter().zip(&sent.msgs).zip(&sent.acked) {
            if !acked {
                cx.send(server, msg.clone());
                resent = true;
            }
        }
        if !resent {
            // Every server holds its upload: only the round-done may have been lost.
            cx.send(publisher, Msg::Poll { round });
        }
        sent.timer = cx.set_timer(self.config.retransmit, Timer::ClientResend { round });
    }

    fn announce(&mut self, cx: &mut Context<NodeWith<TESTING>>) {
        if let Some(output) = self.announce.take() {
            cx.annotate(format!("switched: {output:?}"));
            cx.output(output);
        }
    }

    /// Forges uploads from the next round it has not uploaded for (`correct`: returns to
    /// honest uploads from then on).
    pub(super) fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        self.byzantine = if behavior == "correct" {
            None
        } else {
            Some(behavior.parse()?)
        };
        let from_round = match &self.sent {
            Some(sent) if sent.round == self.round => self.round + 1,
            _ => self.round,
        };
        self.announce = Some(Output::Byzantine {
            behavior: behavior.to_string(),
            from_round,
        });
        Ok(())
    }

    pub(super) fn waiting_for(&self) -> Option<String> {
        (self.round < self.config.rounds).then(|| {
            format!(
                "round {} to be published ({} of {} rounds done)",
                self.round,
                self.completions.len(),
                self.config.rounds
            )
        })
    }
}
