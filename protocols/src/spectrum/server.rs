//! Spectrum's servers: each validates and audits every upload it receives, the leader
//! (server 0) gathers every server's token and decides each client once, closes the round
//! when every client is decided or at the upload timeout, and then every server
//! accumulates exactly the accepted writes and hands its accumulator to the publisher.
//!
//! Everything that can be lost is re-sent until answered: a follower re-sends its token
//! whenever the client re-sends its upload; the leader re-sends a close until the
//! follower acknowledges it; a server re-sends its accumulator until the publisher
//! confirms the round (directly, or by answering a re-sent accumulator of a published
//! round).

use super::config::{Config, Mutant, Variant};
use super::cost;
use super::dpf;
use super::messages::{Accumulator, AuditToken, Msg, Round, UploadBody};
use super::multi::{self, Generators};
use super::node::{NodeWith, Output, Timer, View};
use super::vdpf::{self, AccessKey, AuditParts};
use super::SpectrumError;
use rehearsal_sim_core::explore::Fingerprinter;
use rehearsal_sim_core::{codec, Context, NodeId, TimerId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// What a server holds of one client's upload in the open round.
#[derive(Clone)]
struct Received {
    /// The upload; `None` when it was malformed.
    body: Option<Arc<UploadBody>>,
    token: AuditToken,
    view: View,
}

/// The leader's state of the open round.
#[derive(Default, Clone)]
struct Leading {
    /// Set when the round opened at the leader (its first upload or token).
    timeout: Option<TimerId>,
    /// Per client, each server's token (by server index).
    tokens: BTreeMap<NodeId, Vec<Option<AuditToken>>>,
    /// Per client: accepted?
    decided: BTreeMap<NodeId, bool>,
}

/// A server's totals over the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerTotals {
    pub accepted: u64,
    pub rejected: u64,
    pub absent: u64,
    pub malformed: u64,
    pub rounds_closed: u64,
}

/// A server. Cloning one is cheap (the explorer copies a node before each step it takes
/// there): its constant tables are shared, uploads and accumulators are reference-counted.
#[derive(Clone)]
pub struct Server<const TESTING: bool> {
    me: NodeId,
    config: Config,
    access_keys: Arc<[AccessKey]>,
    generators: Option<Arc<Generators>>,
    /// The open round.
    round: Round,
    received: BTreeMap<NodeId, Received>,
    leading: Leading,
    /// Mutant `accumulate-before-audit`: every upload, accumulated as it arrives.
    early: Option<Acc>,
    /// Closes the leader sent and a follower has not acknowledged: round -> (message,
    /// followers still to acknowledge).
    unacked_closes: BTreeMap<Round, (Msg, BTreeSet<NodeId>)>,
    /// Accumulators the publisher has not confirmed, by round.
    unconfirmed: BTreeMap<Round, Msg>,
    /// Every round below this is known published.
    published_below: Round,
    resend_armed: bool,
    totals: ServerTotals,
}

/// A server's accumulator while it sums.
#[derive(Clone)]
enum Acc {
    TwoServer(Vec<Vec<u8>>),
    Multi(Vec<Vec<curve25519_dalek::ristretto::RistrettoPoint>>),
}

impl<const TESTING: bool> Server<TESTING> {
    pub fn new(config: &Config, me: NodeId) -> Self {
        let generators = (config.variant() == Variant::Multi)
            .then(|| Arc::new(Generators::new(config.message_points())));
        Server {
            me,
            config: config.clone(),
            access_keys: config.access_keys().into(),
            generators,
            round: 0,
            received: BTreeMap::new(),
            leading: Leading::default(),
            early: None,
            unacked_closes: BTreeMap::new(),
            unconfirmed: BTreeMap::new(),
            published_below: 0,
            resend_armed: false,
            totals: ServerTotals::default(),
        }
    }

    /// The mutant this server runs: always none in the production node.
    fn mutant(&self) -> Mutant {
        if TESTING {
            self.config.mutant
        } else {
            Mutant::None
        }
    }

    fn is_leader(&self) -> bool {
        self.me == self.config.leader()
    }

    /// The round this server is in (the next it will close).
    pub fn round(&self) -> Round {
        self.round
    }

    pub fn totals(&self) -> ServerTotals {
        self.totals
    }

    /// Feeds the explorer what decides this server's future: the open round, each
    /// client's upload as received (its body and what the wire carried), the leader's
    /// tokens, the closes and accumulators still unanswered, and how far publication has
    /// got. Left out, because they decide nothing new:
    /// - `me`, `config`, `access_keys`, `generators`: constants of the run;
    /// - each upload's `token`: the audit token of its body under the access keys
    ///   (`Malformed` when there is no body), so a function of the body;
    /// - the leader's `decided`: a client is decided once every server's token for it is
    ///   in, by the audit over those tokens, so a function of `tokens`;
    /// - `early` (mutant `accumulate-before-audit`): the sum of the evaluations of the
    ///   bodies received this round, in whatever order they came;
    /// - the leader's `timeout` and `resend_armed`: whether an upload timeout or a resend
    ///   timer is armed here, which the explorer fingerprints with the node's armed
    ///   timers (neither timer is ever cancelled but by the close that clears `timeout`);
    /// - `totals`: counters only the summary reads.
    pub(super) fn fingerprint(&self, h: &mut Fingerprinter) {
        h.encoded(&(self.round, self.published_below, self.received.len()));
        for (client, received) in &self.received {
            h.encoded(&(client, &received.body, &received.view));
        }
        h.encoded(&self.leading.tokens);
        h.encoded(&self.unacked_closes);
        h.encoded(&self.unconfirmed);
    }

    pub(super) fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<NodeWith<TESTING>>) {
        match msg {
            Msg::Upload { round, body } => {
                if self.check_upload(from, round, "upload", cx) {
                    cx.send(from, Msg::UploadAck { round });
                    let bytes = self.upload_size(
                        from,
                        &Msg::Upload {
                            round,
                            body: Arc::clone(&body),
                        },
                    );
                    self.on_upload(from, Ok(body), bytes, cx);
                }
            }
            Msg::RawUpload { round, bytes } => {
                if self.check_upload(from, round, "raw upload", cx) {
                    cx.send(from, Msg::UploadAck { round });
                    let size = self.upload_size(
                        from,
                        &Msg::RawUpload {
                            round,
                            bytes: Arc::clone(&bytes),
                        },
                    );
                    let body = codec::decode::<UploadBody>(&bytes)
                        .map(Arc::new)
                        .map_err(|e| format!("undecodable upload: {e}"));
                    self.on_upload(from, body, size, cx);
                }
            }
            Msg::Token {
                round,
                client,
                token,
            } => self.on_token(from, round, client, token, cx),
            Msg::Close {
                round,
                accepted,
                rejected,
            } => self.on_close(from, round, accepted, rejected, cx),
            Msg::CloseAck { round } => self.on_close_ack(from, round),
            Msg::RoundDone { round } if from == self.config.publisher() => {
                self.published_below = self.published_below.max(round + 1);
                self.unconfirmed.retain(|&r, _| r > round);
            }
            other => cx.annotate(format!(
                "drop {} from {from}: not for a server from that node",
                other.kind()
            )),
        }
    }

    /// The encoded size of a client's first upload of the round, as the network carried
    /// it (what I5 compares); its copies are not looked at again (0).
    fn upload_size(&self, client: NodeId, msg: &Msg) -> u64 {
        if self.received.contains_key(&client) {
            return 0;
        }
        // Every message encodes; a failure would show as a size no other upload has.
        codec::encoded_len(msg).map_or(0, |n| n as u64)
    }

    /// Whether an upload of `round` from `from` is for the open round; answers or
    /// annotates it otherwise.
    fn check_upload(
        &mut self,
        from: NodeId,
        round: Round,
        kind: &str,
        cx: &mut Context<NodeWith<TESTING>>,
    ) -> bool {
        if self.config.client_index(from).is_none() {
            cx.annotate(format!("drop {kind} from {from}: not a client"));
            return false;
        }
        if round < self.round {
            if round < self.published_below {
                // Its round-done was lost: say it again.
                cx.send(from, Msg::RoundDone { round });
            } else {
                // Too late for the round, which closed without it; acknowledged so the
                // client waits for the publication instead of re-sending.
                cx.annotate(format!(
                    "drop {kind} from {from}: round {round} is closed, not yet published"
                ));
                cx.send(from, Msg::UploadAck { round });
            }
            return false;
        }
        if round > self.round || round >= self.config.rounds {
            // Bounded: only the open round is kept.
            cx.annotate(format!(
                "drop {kind} from {from}: round {round} is not the open round {}",
                self.round
            ));
            return false;
        }
        true
    }

    fn on_upload(
        &mut self,
        client: NodeId,
        body: Result<Arc<UploadBody>, String>,
        bytes: u64,
        cx: &mut Context<NodeWith<TESTING>>,
    ) {
        if let Some(known) = self.received.get_mut(&client) {
            // A re-sent copy (or a different second upload, which is ignored: the first
            // one is the one audited and accumulated).
            let token = known.token;
            if !self.is_leader() {
                cx.send(
                    self.config.leader(),
                    Msg::Token {
                        round: self.round,
                        client,
                        token,
                    },
                );
            }
            return;
        }
        let round = self.round;
        let audited = body.and_then(|body| match self.audit_token(&body, cx) {
            Ok(token) => Ok((body, token)),
            Err(e) => Err(e.to_string()),
        });
        let (body, token) = match audited {
            Ok((body, token)) => (Some(body), token),
            Err(error) => {
                self.totals.malformed += 1;
                cx.annotate(format!("malformed upload from {client} in round {round}: {error}"));
                cx.output(Output::Malformed {
                    round,
                    client,
                    error,
                });
                (None, AuditToken::Malformed)
            }
        };
        if TESTING && self.mutant() == Mutant::AccumulateBeforeAudit {
            if let Some(body) = &body {
                let mut acc = self.early.take().unwrap_or_else(|| self.new_acc());
                self.accumulate(&mut acc, client, body, cx);
                self.early = Some(acc);
            }
        }
        self.received.insert(
            client,
            Received {
                body,
                token,
                view: View {
                    client,
                    uploads: 1,
                    bytes,
                },
            },
        );
        if self.is_leader() {
            let me = self.me.index();
            self.record_token(me, client, token, cx);
        } else {
            cx.send(
                self.config.leader(),
                Msg::Token {
                    round,
                    client,
                    token,
                },
            );
        }
    }

    /// This server's token for an upload, charging the audit's cost; an error for a
    /// malformed one.
    fn audit_token(
        &self,
        body: &UploadBody,
        cx: &mut Context<NodeWith<TESTING>>,
    ) -> Result<AuditToken, SpectrumError> {
        let message_bytes = self.config.message_bytes as usize;
        match (self.config.variant(), body) {
            (Variant::TwoServer, UploadBody::TwoServer(upload)) => {
                let token = vdpf::audit_token(&self.access_keys, message_bytes, upload)?;
                cx.charge(cost::audit(&self.config));
                Ok(AuditToken::TwoServer(token))
            }
            (Variant::Multi, UploadBody::Multi(upload)) => {
                let token =
                    multi::audit_token(&self.access_keys, self.config.message_points(), upload)?;
                cx.charge(cost::audit(&self.config));
                Ok(AuditToken::Multi(token))
            }
            (Variant::TwoServer, UploadBody::Multi(_)) => Err(SpectrumError::WrongVariant {
                expected: "2-server",
                got: "k-server",
            }),
            (Variant::Multi, UploadBody::TwoServer(_)) => Err(SpectrumError::WrongVariant {
                expected: "k-server",
                got: "2-server",
            }),
        }
    }

    // ---- The leader ------------------------------------------------------------------

    fn on_token(
        &mut self,
        from: NodeId,
        round: Round,
        client: NodeId,
        token: AuditToken,
        cx: &mut Context<NodeWith<TESTING>>,
    ) {
        if !self.is_leader() || !self.config.is_server(from) || from == self.me {
            cx.annotate(format!("drop token from {from}: tokens go from servers to the leader"));
            return;
        }
        if self.config.client_index(client).is_none() {
            cx.annotate(format!("drop token from {from}: {client} is not a client"));
            return;
        }
        if round < self.round {
            // The follower is still in that round: its close was lost.
            if let Some((close, pending)) = self.unacked_closes.get(&round) {
                if pending.contains(&from) {
                    cx.send(from, close.clone());
                }
            }
            return;
        }
        if round > self.round {
            cx.annotate(format!(
                "drop token from {from}: round {round} is ahead of the open round {}",
                self.round
            ));
            return;
        }
        self.record_token(from.index(), client, token, cx);
    }

    fn record_token(
        &mut self,
        server: usize,
        client: NodeId,
        token: AuditToken,
        cx: &mut Context<NodeWith<TESTING>>,
    ) {
        if self.leading.timeout.is_none() {
            let round = self.round;
            self.leading.timeout =
                Some(cx.set_timer(self.config.upload_timeout, Timer::UploadTimeout { round }));
        }
        let servers = self.config.servers as usize;
        let slots = self
            .leading
            .tokens
            .entry(client)
            .or_insert_with(|| vec![None; servers]);
        if slots[server].is_none() {
            slots[server] = Some(token);
        }
        if self.leading.decided.contains_key(&client) {
            return;
        }
        let tokens: Option<Vec<AuditToken>> = slots.iter().copied().collect();
        let Some(tokens) = tokens else {
            return;
        };
        let accepted = self.audit(&tokens);
        if !accepted {
            cx.annotate(format!("audit of {client} failed in round {}", self.round));
        }
        self.leading.decided.insert(client, accepted);
        if self.leading.decided.len() == self.config.clients as usize {
            self.close(cx);
        }
    }

    /// The audit's verdict over every server's token for one upload.
    fn audit(&self, tokens: &[AuditToken]) -> bool {
        let parts = match self.mutant() {
            Mutant::SeedOnlyAudit if TESTING => AuditParts {
                bit: false,
                seed: true,
                cw_hash: false,
            },
            Mutant::NoCwHash if TESTING => AuditParts::WITHOUT_CW_HASH,
            _ => AuditParts::ALL,
        };
        match tokens {
            [AuditToken::TwoServer(a), AuditToken::TwoServer(b)] => a.matches_parts(b, parts),
            _ => {
                let multi: Option<Vec<multi::MultiToken>> = tokens
                    .iter()
                    .map(|t| match t {
                        AuditToken::Multi(t) => Some(*t),
                        _ => None,
                    })
                    .collect();
                multi.is_some_and(|tokens| multi::check_audit(&tokens, parts))
            }
        }
    }

    pub(super) fn on_upload_timeout(&mut self, round: Round, cx: &mut Context<NodeWith<TESTING>>) {
        if self.is_leader() && round == self.round {
            cx.annotate(format!(
                "upload timeout of round {round}: {} of {} clients decided",
                self.leading.decided.len(),
                self.config.clients
            ));
            self.close(cx);
        }
    }

    /// Closes the open round: tells the followers, then applies the close here.
    fn close(&mut self, cx: &mut Context<NodeWith<TESTING>>) {
        let round = self.round;
        if let Some(timer) = self.leading.timeout.take() {
            cx.cancel_timer(timer);
        }
        let with = |verdict: bool| -> Vec<NodeId> {
            self.leading
                .decided
                .iter()
                .filter(|(_, &ok)| ok == verdict)
                .map(|(&c, _)| c)
                .collect()
        };
        let (accepted, rejected) = (with(true), with(false));
        let close = Msg::Close {
            round,
            accepted: accepted.clone(),
            rejected: rejected.clone(),
        };
        let followers: BTreeSet<NodeId> =
            self.config.servers_ids().filter(|&s| s != self.me).collect();
        cx.broadcast(followers.iter().copied(), close.clone());
        self.unacked_closes.insert(round, (close, followers));
        self.apply_close(accepted, rejected, cx);
    }

    fn on_close_ack(&mut self, from: NodeId, round: Round) {
        if let Some((_, pending)) = self.unacked_closes.get_mut(&round) {
            pending.remove(&from);
            if pending.is_empty() {
                self.unacked_closes.remove(&round);
            }
        }
    }

    // ---- Every server ------------------------------------------------------------------

    fn on_close(
        &mut self,
        from: NodeId,
        round: Round,
        accepted: Vec<NodeId>,
        rejected: Vec<NodeId>,
        cx: &mut Context<NodeWith<TESTING>>,
    ) {
        if from != self.config.leader() || self.is_leader() {
            cx.annotate(format!("drop close from {from}: closes come from the leader"));
            return;
        }
        if round > self.round {
            cx.annotate(format!(
                "drop close of round {round} from {from}: ahead of the open round {}",
                self.round
            ));
            return;
        }
        if round == self.round {
            self.apply_close(accepted, rejected, cx);
        }
        cx.send(from, Msg::CloseAck { round });
    }

    /// Accumulates the accepted writes of the open round, reports the round, sends the
    /// accumulator to the publisher and opens the next round.
    fn apply_close(
        &mut self,
        accepted: Vec<NodeId>,
        rejected: Vec<NodeId>,
        cx: &mut Context<NodeWith<TESTING>>,
    ) {
        let round = self.round;
        let acc = match self.mutant() {
            Mutant::AccumulateBeforeAudit if TESTING => {
                self.early.take().unwrap_or_else(|| self.new_acc())
            }
            _ => {
                let mut acc = self.new_acc();
                let mut summed: Vec<NodeId> = accepted.clone();
                if TESTING && self.mutant() == Mutant::AccumulateFailedAudit {
                    summed.extend(rejected.iter().copied());
                }
                for client in summed {
                    match self.received.get(&client).and_then(|r| r.body.clone()) {
                        Some(body) => self.accumulate(&mut acc, client, &body, cx),
                        None if accepted.contains(&client) => cx.annotate(format!(
                            "round {round}: accepted {client}'s upload is not here"
                        )),
                        None => {}
                    }
                }
                acc
            }
        };
        let absent: Vec<NodeId> = self
            .config
            .client_nodes()
            .filter(|c| !accepted.contains(c) && !rejected.contains(c))
            .collect();
        self.totals.accepted += accepted.len() as u64;
        self.totals.rejected += rejected.len() as u64;
        self.totals.absent += absent.len() as u64;
        self.totals.rounds_closed += 1;
        let views = self.received.values().map(|r| r.view).collect();
        cx.annotate(format!(
            "round {round} closed: {} accepted, {} rejected, {} absent",
            accepted.len(),
            rejected.len(),
            absent.len()
        ));
        cx.output(Output::Decided {
            round,
            accepted: accepted.clone(),
            rejected,
            absent,
            views,
        });
        let msg = Msg::Accumulator {
            round,
            accepted,
            acc: Arc::new(self.finish(acc)),
        };
        cx.send(self.config.publisher(), msg.clone());
        self.unconfirmed.insert(round, msg);
        self.arm_resend(cx);
        self.round += 1;
        cx.enter_round(self.round);
        self.received.clear();
        self.leading = Leading::default();
        self.early = None;
    }

    fn new_acc(&self) -> Acc {
        let channels = self.config.channels as usize;
        match self.config.variant() {
            Variant::TwoServer => {
                Acc::TwoServer(dpf::new_accumulator(channels, self.config.message_bytes as usize))
            }
            Variant::Multi => {
                Acc::Multi(multi::new_accumulator(channels, self.config.message_points()))
            }
        }
    }

    /// Adds one upload's evaluation, charging its cost. An upload that got this far was
    /// validated when audited, so it evaluates; a refusal is annotated all the same.
    fn accumulate(
        &self,
        acc: &mut Acc,
        client: NodeId,
        body: &UploadBody,
        cx: &mut Context<NodeWith<TESTING>>,
    ) {
        let evaluated = match (acc, body) {
            (Acc::TwoServer(acc), UploadBody::TwoServer(upload)) => upload.key.eval_into(acc),
            (Acc::Multi(acc), UploadBody::Multi(upload)) => match &self.generators {
                Some(generators) => upload.key.eval_into(generators, acc),
                None => Err(SpectrumError::WrongVariant {
                    expected: "2-server",
                    got: "k-server",
                }),
            },
            _ => Err(SpectrumError::WrongVariant {
                expected: "this",
                got: "the other variant's",
            }),
        };
        cx.charge(cost::eval(&self.config));
        if let Err(e) = evaluated {
            cx.annotate(format!("{client}'s upload did not evaluate: {e}"));
        }
    }

    fn finish(&self, acc: Acc) -> Accumulator {
        match acc {
            Acc::TwoServer(acc) => Accumulator::TwoServer(acc),
            Acc::Multi(acc) => Accumulator::Multi(
                acc.iter()
                    .map(|slot| slot.iter().map(|p| p.compress().to_bytes()).collect())
                    .collect(),
            ),
        }
    }

    fn arm_resend(&mut self, cx: &mut Context<NodeWith<TESTING>>) {
        if !self.resend_armed {
            self.resend_armed = true;
            cx.set_timer(self.config.retransmit, Timer::Resend);
        }
    }

    pub(super) fn on_resend(&mut self, cx: &mut Context<NodeWith<TESTING>>) {
        self.resend_armed = false;
        for msg in self.unconfirmed.values() {
            cx.send(self.config.publisher(), msg.clone());
        }
        for (close, pending) in self.unacked_closes.values() {
            cx.broadcast(pending.iter().copied(), close.clone());
        }
        if !self.unconfirmed.is_empty() || !self.unacked_closes.is_empty() {
            self.arm_resend(cx);
        }
    }

    pub(super) fn waiting_for(&self) -> Option<String> {
        if let Some(round) = self.unconfirmed.keys().next() {
            return Some(format!("the publisher's confirmation of round {round}"));
        }
        if let Some((round, (_, pending))) = self.unacked_closes.iter().next() {
            let pending: Vec<String> = pending.iter().map(|s| s.to_string()).collect();
            return Some(format!(
                "acknowledgements of the close of round {round} from {}",
                pending.join(", ")
            ));
        }
        if self.is_leader() && self.leading.timeout.is_some() {
            return Some(format!(
                "decisions on round {}: {} of {} clients decided",
                self.round,
                self.leading.decided.len(),
                self.config.clients
            ));
        }
        None
    }
}
