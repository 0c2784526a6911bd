//! Spectrum's invariants, checked over the outputs of a run.
//!
//! A client is *honest in round r* unless it announced a Byzantine behaviour
//! ([`Output::Byzantine`]) whose `from_round` is at most `r` (and did not return to
//! `correct` since). Servers and the publisher are trusted (they cannot turn Byzantine).
//!
//! - [`PublishedCorrect`] (I1, `published-correct`): every published channel equals the
//!   XOR (two servers) or group sum (`k` servers) of the messages of the honest writers
//!   to it that the servers accepted, zero if none: a rejected or forged write changes
//!   no channel.
//! - [`HonestAccepted`] (I2, `honest-accepted`): no server rejects an honest client's
//!   upload, write or cover. (An honest client may be *absent* from a round, not decided
//!   before the upload timeout, when the network kept its upload or a token away.)
//! - [`MaliciousRejected`] (I3, `malicious-rejected`): no server accepts an upload of a
//!   client in a round it is Byzantine in.
//! - [`ServersAgree`] (I4, `servers-agree`): all servers decide the same for every client
//!   in every round.
//! - [`ServerViewUniform`] (I5, `server-view-uniform`): in every round, what a server
//!   received from each honest client (distinct uploads and their encoded size) is the
//!   same for every honest client, writer or cover, whatever channel it writes to.
//! - [`Termination`] (`termination`): once faults heal, every round of every honest
//!   client completes within the configured bound of its first upload; at the end every
//!   honest client that was not cut off (down at the end, or named by a test with
//!   [`Termination::excusing`]) completed every round.

use super::config::Config;
use super::messages::Round;
use super::node::{Node, Output, View};
use crate::replicated::Check;
use rehearsal_sim_core::{EndReason, Invariant, NodeId, RunEnd, Time};
use std::collections::BTreeMap;
use std::time::Duration;

/// Which clients are honest in which rounds, from their [`Output::Byzantine`] outputs.
#[derive(Debug, Default, Clone)]
pub struct Honesty {
    /// Per client: (from_round, Byzantine?), in order.
    switches: BTreeMap<NodeId, Vec<(Round, bool)>>,
}

impl Honesty {
    /// Takes note of a switch; returns whether `output` was one.
    pub fn observe(&mut self, node: NodeId, output: &Output) -> bool {
        if let Output::Byzantine {
            behavior,
            from_round,
        } = output
        {
            self.switches
                .entry(node)
                .or_default()
                .push((*from_round, behavior != "correct"));
            true
        } else {
            false
        }
    }

    /// Whether `client` uploads honestly in `round`.
    pub fn honest(&self, client: NodeId, round: Round) -> bool {
        self.switches.get(&client).is_none_or(|switches| {
            switches
                .iter()
                .rev()
                .find(|(from, _)| *from <= round)
                .is_none_or(|(_, byzantine)| !byzantine)
        })
    }

    /// Whether `client` ever turned Byzantine.
    pub fn ever_byzantine(&self, client: NodeId) -> bool {
        self.switches
            .get(&client)
            .is_some_and(|s| s.iter().any(|(_, byzantine)| *byzantine))
    }
}

fn names(nodes: &[NodeId]) -> String {
    nodes
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// I1: every published channel is the combination of the accepted honest writers'
/// messages to it.
pub struct PublishedCorrect {
    config: Config,
    honesty: Honesty,
}

impl PublishedCorrect {
    pub fn new(config: &Config) -> Self {
        PublishedCorrect {
            config: config.clone(),
            honesty: Honesty::default(),
        }
    }
}

impl Invariant<Node> for PublishedCorrect {
    fn name(&self) -> &str {
        "published-correct"
    }

    fn on_output(&mut self, _node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if self.honesty.observe(_node, output) {
            return Ok(());
        }
        let Output::Published {
            round,
            accepted,
            channels,
            ..
        } = output
        else {
            return Ok(());
        };
        let honest: Vec<u32> = accepted
            .iter()
            .filter(|&&c| self.honesty.honest(c, *round))
            .filter_map(|&c| self.config.client_index(c))
            .collect();
        let expected = self.config.expected_channels(*round, &honest);
        if channels.len() != expected.len() {
            return Err(format!(
                "round {round} published {} channels, not {}",
                channels.len(),
                expected.len()
            ));
        }
        let wrong: Vec<String> = channels
            .iter()
            .zip(&expected)
            .enumerate()
            .filter(|(_, (got, want))| got != want)
            .map(|(j, (got, want))| {
                let writers: Vec<String> = honest
                    .iter()
                    .filter(|&&i| self.config.channel_of(i) == Some(j as u32))
                    .map(|&i| self.config.client_node(i).to_string())
                    .collect();
                format!(
                    "channel {j} is {got}, not {want} (accepted honest writers: {})",
                    if writers.is_empty() {
                        "none".to_string()
                    } else {
                        writers.join(", ")
                    }
                )
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("round {round}: {}", wrong.join("; ")))
        }
    }
}

/// I2: no server rejects an honest client.
pub struct HonestAccepted {
    honesty: Honesty,
}

impl HonestAccepted {
    pub fn new(_config: &Config) -> Self {
        HonestAccepted {
            honesty: Honesty::default(),
        }
    }
}

impl Invariant<Node> for HonestAccepted {
    fn name(&self) -> &str {
        "honest-accepted"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if self.honesty.observe(node, output) {
            return Ok(());
        }
        match output {
            Output::Decided {
                round, rejected, ..
            } => {
                let honest: Vec<NodeId> = rejected
                    .iter()
                    .copied()
                    .filter(|&c| self.honesty.honest(c, *round))
                    .collect();
                if honest.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "{node} rejected honest client(s) {} in round {round}",
                        names(&honest)
                    ))
                }
            }
            Output::Malformed {
                round,
                client,
                error,
            } if self.honesty.honest(*client, *round) => Err(format!(
                "{node} refused honest {client}'s upload of round {round} as malformed: {error}"
            )),
            _ => Ok(()),
        }
    }
}

/// I3: no server accepts a Byzantine client's forged upload.
pub struct MaliciousRejected {
    honesty: Honesty,
}

impl MaliciousRejected {
    pub fn new(_config: &Config) -> Self {
        MaliciousRejected {
            honesty: Honesty::default(),
        }
    }
}

impl Invariant<Node> for MaliciousRejected {
    fn name(&self) -> &str {
        "malicious-rejected"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if self.honesty.observe(node, output) {
            return Ok(());
        }
        let Output::Decided {
            round, accepted, ..
        } = output
        else {
            return Ok(());
        };
        let forged: Vec<NodeId> = accepted
            .iter()
            .copied()
            .filter(|&c| !self.honesty.honest(c, *round))
            .collect();
        if forged.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{node} accepted the forged upload(s) of Byzantine client(s) {} in round {round}",
                names(&forged)
            ))
        }
    }
}

/// A server's decision on a round: (accepted, rejected).
type Decision = (Vec<NodeId>, Vec<NodeId>);

/// I4: every server decides the same for every client.
pub struct ServersAgree {
    /// Round -> (first server's decision, that server).
    decided: BTreeMap<Round, (Decision, NodeId)>,
}

impl ServersAgree {
    pub fn new(_config: &Config) -> Self {
        ServersAgree {
            decided: BTreeMap::new(),
        }
    }
}

impl Invariant<Node> for ServersAgree {
    fn name(&self) -> &str {
        "servers-agree"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        let Output::Decided {
            round,
            accepted,
            rejected,
            ..
        } = output
        else {
            return Ok(());
        };
        let mine = (accepted.clone(), rejected.clone());
        match self.decided.get(round) {
            None => {
                self.decided.insert(*round, (mine, node));
                Ok(())
            }
            Some((theirs, _)) if *theirs == mine => Ok(()),
            Some(((acc, rej), other)) => Err(format!(
                "round {round}: {node} accepted [{}] and rejected [{}], but {other} accepted [{}] and rejected [{}]",
                names(accepted),
                names(rejected),
                names(acc),
                names(rej)
            )),
        }
    }
}

/// I5: a server receives the same from every honest client, write or cover.
pub struct ServerViewUniform {
    honesty: Honesty,
}

impl ServerViewUniform {
    pub fn new(_config: &Config) -> Self {
        ServerViewUniform {
            honesty: Honesty::default(),
        }
    }
}

impl Invariant<Node> for ServerViewUniform {
    fn name(&self) -> &str {
        "server-view-uniform"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        if self.honesty.observe(node, output) {
            return Ok(());
        }
        let Output::Decided { round, views, .. } = output else {
            return Ok(());
        };
        let honest: Vec<&View> = views
            .iter()
            .filter(|v| self.honesty.honest(v.client, *round))
            .collect();
        let Some(first) = honest.first() else {
            return Ok(());
        };
        let odd: Vec<String> = honest
            .iter()
            .filter(|v| v.uploads != first.uploads || v.bytes != first.bytes || v.uploads != 1)
            .map(|v| format!("{}: {} upload(s) of {} bytes", v.client, v.uploads, v.bytes))
            .collect();
        if odd.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{node}'s view of round {round} tells honest clients apart: {} received {} upload of {} bytes, but {}",
                first.client,
                first.uploads,
                first.bytes,
                odd.join(", ")
            ))
        }
    }
}

/// Once faults heal, every round of every honest client completes within a bound.
pub struct Termination {
    honesty: Honesty,
    clients: Vec<NodeId>,
    rounds: Round,
    bound: Duration,
    stable_from: Time,
    excused: Vec<NodeId>,
    /// Per client: the round in flight and when it was first uploaded.
    outstanding: BTreeMap<NodeId, (Round, Time)>,
    completed: BTreeMap<NodeId, u64>,
}

impl Termination {
    pub fn new(config: &Config) -> Self {
        Termination {
            honesty: Honesty::default(),
            clients: config.client_nodes().collect(),
            rounds: config.rounds,
            bound: config.termination_bound,
            stable_from: Time::ZERO,
            excused: Vec::new(),
            outstanding: BTreeMap::new(),
            completed: BTreeMap::new(),
        }
    }

    /// Faults last until `healed`: the bound runs from then for rounds begun before.
    pub fn after(mut self, healed: Time) -> Self {
        self.stable_from = healed;
        self
    }

    /// Clients cut off for good (crashed, or partitioned until the end): nothing is owed
    /// to them.
    pub fn excusing(mut self, clients: &[NodeId]) -> Self {
        self.excused.extend_from_slice(clients);
        self
    }

    fn due(&self, submitted: Time) -> Time {
        submitted.max(self.stable_from).after(self.bound)
    }
}

impl Invariant<Node> for Termination {
    fn name(&self) -> &str {
        "termination"
    }

    fn on_fault(&mut self, now: Time) {
        self.stable_from = self.stable_from.max(now);
    }

    fn on_output(&mut self, node: NodeId, now: Time, output: &Output) -> Result<(), String> {
        if self.honesty.observe(node, output) {
            return Ok(());
        }
        match output {
            Output::Submitted { round } => {
                self.outstanding.insert(node, (*round, now));
                Ok(())
            }
            Output::Completed {
                round,
                submitted_at,
                completed_at,
                ..
            } => {
                self.outstanding.remove(&node);
                *self.completed.entry(node).or_insert(0) += 1;
                if self.honesty.ever_byzantine(node) || *completed_at <= self.due(*submitted_at) {
                    return Ok(());
                }
                Err(format!(
                    "{node}'s round {round} took {:?}, more than the bound of {:?} after faults healed at {}",
                    completed_at.saturating_sub((*submitted_at).max(self.stable_from)),
                    self.bound,
                    self.stable_from
                ))
            }
            _ => Ok(()),
        }
    }

    fn at_end(&mut self, end: &RunEnd<'_, Node>) -> Result<(), String> {
        let late: Vec<String> = self
            .clients
            .iter()
            .filter(|c| {
                !self.excused.contains(c)
                    && !end.crashed.contains(c)
                    && !self.honesty.ever_byzantine(**c)
            })
            .filter_map(|c| {
                let done = self.completed.get(c).copied().unwrap_or(0);
                if done >= self.rounds {
                    return None;
                }
                let overdue = match self.outstanding.get(c) {
                    Some(&(_, submitted)) => end.now >= self.due(submitted),
                    None => true,
                };
                (overdue || end.reason == EndReason::Quiescent)
                    .then(|| format!("{c} completed {done} of {} rounds", self.rounds))
            })
            .collect();
        if late.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "rounds did not complete within {:?} after faults healed at {}: {}",
                self.bound,
                self.stable_from,
                late.join(", ")
            ))
        }
    }
}

/// The checks a real run's outputs must satisfy: I1–I5 (not termination, whose bound is
/// in virtual time).
pub fn safety_checks(config: &Config) -> Vec<Check<Node>> {
    vec![
        Check::new(PublishedCorrect::new(config)),
        Check::new(HonestAccepted::new(config)),
        Check::new(MaliciousRejected::new(config)),
        Check::new(ServersAgree::new(config)),
        Check::new(ServerViewUniform::new(config)),
    ]
}

/// Every check of a run without faults.
pub fn checks(config: &Config) -> Vec<Check<Node>> {
    checks_after(config, Time::ZERO)
}

/// Every check of a run whose faults are over at `healed`.
pub fn checks_after(config: &Config, healed: Time) -> Vec<Check<Node>> {
    let mut all = safety_checks(config);
    all.push(Check::new(Termination::new(config).after(healed)));
    all
}

/// Every check, owing nothing to the `excused` clients (cut off for good).
pub fn checks_excusing(config: &Config, healed: Time, excused: &[NodeId]) -> Vec<Check<Node>> {
    let mut all = safety_checks(config);
    all.push(Check::new(
        Termination::new(config).after(healed).excusing(excused),
    ));
    all
}
