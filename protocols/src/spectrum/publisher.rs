//! Spectrum's publisher: combines the servers' accumulators of a round (XOR for two
//! servers, the group sum for `k`) and publishes every channel's content, then tells
//! servers and clients that the round is done. Rounds publish in order: a server sends
//! its accumulator of round `r + 1` only after round `r` is published (no client uploads
//! for `r + 1` before), so the publisher holds one round's accumulators at a time.

use super::config::{content_digest, points_digest, Config, Variant};
use super::canonical::decode_point;
use super::messages::{Accumulator, Msg, Round};
use super::node::{NodeWith, Output};
use crate::crypto::Digest;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::traits::Identity;
use rehearsal_sim_core::explore::Fingerprinter;
use rehearsal_sim_core::{Context, NodeId, Time};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One round as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    pub round: Round,
    pub at: Time,
    pub accepted: usize,
    /// Every channel's content digest.
    pub channels: Vec<Digest>,
}

#[derive(Clone)]
pub struct Publisher {
    config: Config,
    /// The next round to publish.
    next: Round,
    /// Per server, its accumulator of round `next` and the writes it accepted.
    accs: BTreeMap<NodeId, (Vec<NodeId>, Arc<Accumulator>)>,
    publications: Vec<Publication>,
}

impl Publisher {
    pub fn new(config: &Config) -> Self {
        Publisher {
            config: config.clone(),
            next: 0,
            accs: BTreeMap::new(),
            publications: Vec::new(),
        }
    }

    /// Every round published, in order.
    pub fn publications(&self) -> &[Publication] {
        &self.publications
    }

    /// Feeds the explorer what decides the publisher's future: the round it publishes
    /// next and the accumulators of it it holds. Left out: `config`, a constant of the
    /// run, and `publications`, the record of what it published, which only the summary
    /// reads.
    pub(super) fn fingerprint(&self, h: &mut Fingerprinter) {
        h.encoded(&(self.next, &self.accs));
    }

    pub(super) fn on_message<const T: bool>(
        &mut self,
        from: NodeId,
        msg: Msg,
        cx: &mut Context<NodeWith<T>>,
    ) {
        if let Msg::Poll { round } = msg {
            // A client whose round-done got lost: tell it again. A poll of a round not
            // published yet needs no answer (the round-done will come).
            if self.config.client_index(from).is_some() && round < self.next {
                cx.send(from, Msg::RoundDone { round });
            }
            return;
        }
        let Msg::Accumulator {
            round,
            accepted,
            acc,
        } = msg
        else {
            cx.annotate(format!(
                "drop {} from {from}: the publisher takes only accumulators",
                msg.kind()
            ));
            return;
        };
        if !self.config.is_server(from) {
            cx.annotate(format!("drop accumulator from {from}: not a server"));
            return;
        }
        if round < self.next {
            // Its confirmation was lost.
            cx.send(from, Msg::RoundDone { round });
            return;
        }
        if round > self.next {
            cx.annotate(format!(
                "drop accumulator of round {round} from {from}: round {} is not published yet",
                self.next
            ));
            return;
        }
        if let Err(e) = self.check_shape(&acc) {
            cx.annotate(format!("drop accumulator from {from}: {e}"));
            return;
        }
        self.accs.entry(from).or_insert((accepted, acc));
        if self.accs.len() == self.config.servers as usize {
            self.publish(cx);
        }
    }

    fn check_shape(&self, acc: &Accumulator) -> Result<(), String> {
        let channels = self.config.channels as usize;
        let ok = match (self.config.variant(), acc) {
            (Variant::TwoServer, Accumulator::TwoServer(slots)) => {
                slots.len() == channels
                    && slots
                        .iter()
                        .all(|s| s.len() == self.config.message_bytes as usize)
            }
            (Variant::Multi, Accumulator::Multi(slots)) => {
                slots.len() == channels
                    && slots.iter().all(|s| s.len() == self.config.message_points())
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err("its shape is not this deployment's".into())
        }
    }

    fn publish<const T: bool>(&mut self, cx: &mut Context<NodeWith<T>>) {
        let round = self.next;
        let accs = std::mem::take(&mut self.accs);
        let mut lists = accs.values().map(|(accepted, _)| accepted);
        let accepted = lists.next().cloned().unwrap_or_default();
        if lists.any(|other| *other != accepted) {
            cx.annotate(format!("round {round}: the servers accepted different writes"));
        }
        let (channels, nonzero) = match self.combine(accs.values().map(|(_, acc)| &**acc)) {
            Ok(published) => published,
            Err(e) => {
                cx.annotate(format!("round {round}: an accumulator did not combine: {e}"));
                (Vec::new(), Vec::new())
            }
        };
        cx.annotate(format!(
            "published round {round}: {} writes, {} non-empty channels",
            accepted.len(),
            nonzero.len()
        ));
        self.publications.push(Publication {
            round,
            at: cx.now(),
            accepted: accepted.len(),
            channels: channels.clone(),
        });
        cx.output(Output::Published {
            round,
            accepted,
            channels,
            nonzero,
        });
        let done = Msg::RoundDone { round };
        cx.broadcast(self.config.servers_ids(), done.clone());
        cx.broadcast(self.config.client_nodes(), done);
        self.next += 1;
    }

    /// Every channel's content digest and the non-empty channels.
    fn combine<'a>(
        &self,
        accs: impl Iterator<Item = &'a Accumulator>,
    ) -> Result<(Vec<Digest>, Vec<u32>), String> {
        let channels = self.config.channels as usize;
        match self.config.variant() {
            Variant::TwoServer => {
                let mut sum = vec![vec![0u8; self.config.message_bytes as usize]; channels];
                for acc in accs {
                    let Accumulator::TwoServer(slots) = acc else {
                        return Err("a k-server accumulator".into());
                    };
                    for (total, slot) in sum.iter_mut().zip(slots) {
                        for (t, b) in total.iter_mut().zip(slot) {
                            *t ^= b;
                        }
                    }
                }
                let nonzero = nonzero(sum.iter().map(|s| s.iter().any(|&b| b != 0)));
                Ok((sum.iter().map(|s| content_digest(s)).collect(), nonzero))
            }
            Variant::Multi => {
                let points = self.config.message_points();
                let mut sum = vec![vec![RistrettoPoint::identity(); points]; channels];
                for acc in accs {
                    let Accumulator::Multi(slots) = acc else {
                        return Err("a 2-server accumulator".into());
                    };
                    for (total, slot) in sum.iter_mut().zip(slots) {
                        for (t, bytes) in total.iter_mut().zip(slot) {
                            *t += decode_point("accumulator", *bytes).map_err(|e| e.to_string())?;
                        }
                    }
                }
                let identity = RistrettoPoint::identity();
                let nonzero = nonzero(sum.iter().map(|s| s.iter().any(|p| *p != identity)));
                Ok((sum.iter().map(|s| points_digest(s)).collect(), nonzero))
            }
        }
    }

    pub(super) fn waiting_for(&self) -> Option<String> {
        if self.accs.is_empty() {
            return None;
        }
        let missing: Vec<String> = self
            .config
            .servers_ids()
            .filter(|s| !self.accs.contains_key(s))
            .map(|s| s.to_string())
            .collect();
        Some(format!(
            "accumulators of round {} from {}",
            self.next,
            missing.join(", ")
        ))
    }
}

fn nonzero(flags: impl Iterator<Item = bool>) -> Vec<u32> {
    flags
        .enumerate()
        .filter(|(_, set)| *set)
        .map(|(i, _)| i as u32)
        .collect()
}
