//! The network-model hook of the simulator, and its default model: a latency distribution
//! and a loss probability. Richer models (partitions, duplication, bandwidth) plug into the
//! same trait from the `rehearsal-net-models` crate.

use crate::actor::{NodeId, TimerId};
use crate::rng::SimRng;
use crate::time::{duration_ns, format_ns, parse_duration, DurationError, Time};
use rand::Rng;
use rand_distr::{Distribution, LogNormal, Normal};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// What the network knows of one message as it leaves its sender.
#[derive(Debug, Clone, Copy)]
pub struct Packet {
    pub from: NodeId,
    pub to: NodeId,
    pub sent_at: Time,
    /// Size of the bincode encoding, as it would cross a real wire.
    pub bytes: usize,
}

/// What becomes of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Delivered after this many nanoseconds.
    Deliver { delay_ns: u64 },
    /// Delivered twice: after `delay_ns` and again after `copy_delay_ns`.
    Duplicate { delay_ns: u64, copy_delay_ns: u64 },
    /// Delivered after `delay_ns` with its encoded bytes damaged: the receiver decodes what
    /// arrives; if that fails the message is dropped, otherwise the altered message counts.
    Corrupt { delay_ns: u64 },
    /// Lost; the reason appears in the trace.
    Drop { reason: &'static str },
    /// Lost by a fault imposed on this one message (a shrinker's forced drop), not by the
    /// link's own loss: dropped like [`Fate::Drop`], and, like a scenario fault, it tells
    /// the invariants ([`Invariant::on_fault`](crate::Invariant::on_fault)) that the
    /// network was faulty until now, so liveness bounds run from here.
    FaultDrop { reason: &'static str },
}

/// Whether a message may reach its receiver now, asked at its delivery time (so a cut made
/// while a message is in flight applies to it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Deliver,
    Drop {
        reason: &'static str,
    },
    /// Kept until a later network change admits it (e.g. held across a partition until heal).
    Hold,
}

/// A change to the network during a run, from a scenario or swarm schedule.
#[derive(Debug, Clone, PartialEq)]
pub enum NetChange {
    /// Nodes can talk only within their group; nodes in no group are isolated from all.
    Partition {
        groups: Vec<Vec<NodeId>>,
    },
    /// Messages from any of `from` to any of `to` are cut; the reverse direction is not.
    CutOneWay {
        from: Vec<NodeId>,
        to: Vec<NodeId>,
    },
    /// Cuts each listed directed link `(from, to)` (a symmetric cut lists both directions);
    /// `shape` names what the cut is (`ring`, `bridge 2`) for traces.
    Cut {
        shape: String,
        links: Vec<(NodeId, NodeId)>,
    },
    /// Removes every cut.
    Heal,
    SetLoss {
        loss: f64,
    },
    SetLatency {
        latency: Latency,
    },
}

impl fmt::Display for NetChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |nodes: &[NodeId]| {
            nodes
                .iter()
                .map(|n| n.0.to_string())
                .collect::<Vec<_>>()
                .join(",")
        };
        match self {
            NetChange::Partition { groups } => {
                let groups: Vec<String> = groups.iter().map(|g| list(g)).collect();
                write!(f, "partition {}", groups.join(" | "))
            }
            NetChange::CutOneWay { from, to } => write!(f, "cut {} -> {}", list(from), list(to)),
            NetChange::Cut { shape, links } => {
                let links: Vec<String> = links
                    .iter()
                    .map(|(a, b)| format!("{}->{}", a.0, b.0))
                    .collect();
                write!(f, "{shape} (cut {})", links.join(","))
            }
            NetChange::Heal => f.write_str("heal"),
            NetChange::SetLoss { loss } => write!(f, "set-loss {loss}"),
            NetChange::SetLatency { latency } => write!(f, "set-latency {latency}"),
        }
    }
}

/// Decides the fate of every message. Randomness comes only from `rng`, the sender's
/// network stream, so a model is deterministic per seed.
pub trait NetworkModel {
    /// Called once per message as it leaves its sender.
    fn route(&mut self, packet: &Packet, rng: &mut SimRng) -> Fate;

    /// Called when a message is due, before it is delivered.
    fn admit(&mut self, _from: NodeId, _to: NodeId, _now: Time) -> Admit {
        Admit::Deliver
    }

    /// [`route`](NetworkModel::route) for the message that traces name `id` (the sequence
    /// number of its send event). The simulator calls this one; models that follow a
    /// recorded schedule override it, others keep the default.
    fn route_message(&mut self, _id: u64, packet: &Packet, rng: &mut SimRng) -> Fate {
        self.route(packet, rng)
    }

    /// [`route_message`](NetworkModel::route_message) with the message's trace label (its
    /// `msg` text in the trace, when the run keeps a trace), for models that follow a
    /// recording and match messages by what they say. The simulator calls this one.
    fn route_labeled(
        &mut self,
        id: u64,
        packet: &Packet,
        _label: Option<&str>,
        rng: &mut SimRng,
    ) -> Fate {
        self.route_message(id, packet, rng)
    }

    /// [`admit`](NetworkModel::admit) for the message that traces name `id`.
    fn admit_message(&mut self, _id: u64, from: NodeId, to: NodeId, now: Time) -> Admit {
        self.admit(from, to, now)
    }

    /// Applies a change at virtual time `now`; `Err` says why this model cannot.
    fn apply(&mut self, change: &NetChange, _now: Time) -> Result<(), String> {
        Err(format!("this network model does not support `{change}`"))
    }

    /// Whether links deliver in the order messages were sent (TCP-like): a scheduler that
    /// picks the order of ready events then never runs a message before one sent earlier
    /// on its link.
    fn fifo(&self) -> bool {
        false
    }

    /// Whether this model re-times starts and timers ([`NetworkModel::start_at`],
    /// [`NetworkModel::timer_due`]); asked once, when the run starts. `false` (the
    /// default): the simulator does not ask those two, and spends nothing per timer.
    fn retimes(&self) -> bool {
        false
    }

    /// When node `node` starts: time 0, unless the model re-enacts a recording whose
    /// starts ran at other instants (a run under a scheduler that picks the order).
    fn start_at(&mut self, _node: NodeId) -> Time {
        Time::ZERO
    }

    /// When timer `id` of `node`, set to fall due at `due`, fires: at `due`, unless the
    /// model re-enacts a recording in which it fired later (a scheduler put it off).
    fn timer_due(&mut self, _node: NodeId, _id: TimerId, due: Time) -> Time {
        due
    }
}

impl<N: NetworkModel + ?Sized> NetworkModel for Box<N> {
    fn route(&mut self, packet: &Packet, rng: &mut SimRng) -> Fate {
        (**self).route(packet, rng)
    }
    fn admit(&mut self, from: NodeId, to: NodeId, now: Time) -> Admit {
        (**self).admit(from, to, now)
    }
    fn route_message(&mut self, id: u64, packet: &Packet, rng: &mut SimRng) -> Fate {
        (**self).route_message(id, packet, rng)
    }
    fn route_labeled(
        &mut self,
        id: u64,
        packet: &Packet,
        label: Option<&str>,
        rng: &mut SimRng,
    ) -> Fate {
        (**self).route_labeled(id, packet, label, rng)
    }
    fn admit_message(&mut self, id: u64, from: NodeId, to: NodeId, now: Time) -> Admit {
        (**self).admit_message(id, from, to, now)
    }
    fn apply(&mut self, change: &NetChange, now: Time) -> Result<(), String> {
        (**self).apply(change, now)
    }
    fn fifo(&self) -> bool {
        (**self).fifo()
    }
    fn retimes(&self) -> bool {
        (**self).retimes()
    }
    fn start_at(&mut self, node: NodeId) -> Time {
        (**self).start_at(node)
    }
    fn timer_due(&mut self, node: NodeId, id: TimerId, due: Time) -> Time {
        (**self).timer_due(node, id, due)
    }
}

/// A one-way latency distribution, written as a spec string:
/// `constant:10ms`, `uniform:1ms..40s`, `normal:50ms,10ms` (mean, standard deviation;
/// draws below zero become zero), `lognormal:50ms,20ms` (mean and standard deviation of the
/// log-normal itself: a long right tail, never negative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Latency {
    Constant { ns: u64 },
    Uniform { lo_ns: u64, hi_ns: u64 },
    Normal { mean_ns: u64, std_ns: u64 },
    LogNormal { mean_ns: u64, std_ns: u64 },
}

impl Latency {
    pub fn constant_ms(ms: u64) -> Latency {
        Latency::Constant { ns: ms * 1_000_000 }
    }

    /// Draws one latency. A constant latency draws nothing from `rng`.
    pub fn sample(&self, rng: &mut SimRng) -> u64 {
        match *self {
            Latency::Constant { ns } => ns,
            Latency::Uniform { lo_ns, hi_ns } => rng.random_range(lo_ns..=hi_ns),
            Latency::Normal { mean_ns, std_ns } => {
                // Validated at construction: std is finite and non-negative.
                let normal = Normal::new(mean_ns as f64, std_ns as f64)
                    .expect("normal latency parameters validated when parsed");
                let draw: f64 = normal.sample(rng);
                if draw <= 0.0 {
                    0
                } else {
                    draw.min(u64::MAX as f64) as u64
                }
            }
            Latency::LogNormal { mean_ns, std_ns } => {
                if mean_ns == 0 {
                    return 0;
                }
                // The underlying normal's parameters, from the log-normal's mean m and
                // deviation s: sigma^2 = ln(1 + s^2/m^2), mu = ln m - sigma^2 / 2.
                let (m, s) = (mean_ns as f64, std_ns as f64);
                let sigma2 = (1.0 + (s * s) / (m * m)).ln();
                let lognormal = LogNormal::new(m.ln() - sigma2 / 2.0, sigma2.sqrt())
                    .expect("log-normal latency parameters validated when parsed");
                let draw: f64 = lognormal.sample(rng);
                draw.min(u64::MAX as f64) as u64
            }
        }
    }

    /// The mean of the distribution, in nanoseconds.
    pub fn mean_ns(&self) -> u64 {
        match *self {
            Latency::Constant { ns } => ns,
            Latency::Uniform { lo_ns, hi_ns } => lo_ns + (hi_ns - lo_ns) / 2,
            Latency::Normal { mean_ns, .. } | Latency::LogNormal { mean_ns, .. } => mean_ns,
        }
    }
}

/// Error from parsing a latency spec; says which part is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LatencySpecError {
    #[error(
        "latency spec `{0}` has no kind: expected constant:D, uniform:LO..HI, normal:MEAN,STD or lognormal:MEAN,STD"
    )]
    NoKind(String),
    #[error(
        "latency spec `{spec}` has unknown kind `{kind}`: expected constant, uniform, normal or lognormal"
    )]
    UnknownKind { spec: String, kind: String },
    #[error("latency spec `{spec}`: {expected}")]
    Shape {
        spec: String,
        expected: &'static str,
    },
    #[error("latency spec `{spec}`: {source}")]
    Duration { spec: String, source: DurationError },
    #[error("latency spec `{spec}`: the lower bound {lo} exceeds the upper bound {hi}")]
    Inverted {
        spec: String,
        lo: String,
        hi: String,
    },
}

impl FromStr for Latency {
    type Err = LatencySpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let spec = spec.trim();
        let (kind, args) = spec
            .split_once(':')
            .ok_or_else(|| LatencySpecError::NoKind(spec.to_string()))?;
        let dur = |text: &str| {
            parse_duration(text)
                .map(duration_ns)
                .map_err(|source| LatencySpecError::Duration {
                    spec: spec.to_string(),
                    source,
                })
        };
        let shape = |expected| LatencySpecError::Shape {
            spec: spec.to_string(),
            expected,
        };
        match kind {
            "constant" => Ok(Latency::Constant { ns: dur(args)? }),
            "uniform" => {
                let (lo, hi) = args
                    .split_once("..")
                    .ok_or_else(|| shape("uniform takes LO..HI, e.g. uniform:1ms..40s"))?;
                let (lo_ns, hi_ns) = (dur(lo)?, dur(hi)?);
                if lo_ns > hi_ns {
                    return Err(LatencySpecError::Inverted {
                        spec: spec.to_string(),
                        lo: lo.to_string(),
                        hi: hi.to_string(),
                    });
                }
                Ok(Latency::Uniform { lo_ns, hi_ns })
            }
            "normal" => {
                let (mean, std) = args
                    .split_once(',')
                    .ok_or_else(|| shape("normal takes MEAN,STD, e.g. normal:50ms,10ms"))?;
                Ok(Latency::Normal {
                    mean_ns: dur(mean)?,
                    std_ns: dur(std)?,
                })
            }
            "lognormal" => {
                let (mean, std) = args
                    .split_once(',')
                    .ok_or_else(|| shape("lognormal takes MEAN,STD, e.g. lognormal:50ms,20ms"))?;
                Ok(Latency::LogNormal {
                    mean_ns: dur(mean)?,
                    std_ns: dur(std)?,
                })
            }
            other => Err(LatencySpecError::UnknownKind {
                spec: spec.to_string(),
                kind: other.to_string(),
            }),
        }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Latency::Constant { ns } => write!(f, "constant:{}", format_ns(ns)),
            Latency::Uniform { lo_ns, hi_ns } => {
                write!(f, "uniform:{}..{}", format_ns(lo_ns), format_ns(hi_ns))
            }
            Latency::Normal { mean_ns, std_ns } => {
                write!(f, "normal:{},{}", format_ns(mean_ns), format_ns(std_ns))
            }
            Latency::LogNormal { mean_ns, std_ns } => {
                write!(f, "lognormal:{},{}", format_ns(mean_ns), format_ns(std_ns))
            }
        }
    }
}

// Serialized as its spec string, so configurations and trace headers read like the CLI.
impl Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The default network: every link draws its latency from one distribution and loses each
/// message independently with probability `loss`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SimpleNetwork {
    pub latency: Latency,
    pub loss: f64,
}

impl Default for SimpleNetwork {
    fn default() -> Self {
        SimpleNetwork {
            latency: Latency::constant_ms(10),
            loss: 0.0,
        }
    }
}

impl NetworkModel for SimpleNetwork {
    fn route(&mut self, _packet: &Packet, rng: &mut SimRng) -> Fate {
        // Draw loss only when there is loss, so a lossless run spends no randomness on it.
        if self.loss > 0.0 && rng.random_bool(self.loss.min(1.0)) {
            return Fate::Drop { reason: "loss" };
        }
        Fate::Deliver {
            delay_ns: self.latency.sample(rng),
        }
    }

    fn apply(&mut self, change: &NetChange, _now: Time) -> Result<(), String> {
        match *change {
            NetChange::SetLoss { loss } => self.loss = loss,
            NetChange::SetLatency { latency } => self.latency = latency,
            _ => {
                return Err(format!(
                    "the simple network has no topology: `{change}` needs a partition-aware model"
                ))
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::derive_rng;

    #[test]
    fn latency_specs_round_trip() {
        for spec in [
            "constant:10ms",
            "uniform:1ms..40s",
            "normal:50ms,10ms",
            "lognormal:50ms,20ms",
            "constant:0s",
        ] {
            let parsed: Latency = spec.parse().unwrap();
            assert_eq!(parsed.to_string(), spec);
        }
        assert_eq!(
            "uniform:1ms..40s".parse::<Latency>().unwrap(),
            Latency::Uniform {
                lo_ns: 1_000_000,
                hi_ns: 40_000_000_000
            }
        );
    }

    #[test]
    fn malformed_latency_specs_say_what_is_wrong() {
        let err = |s: &str| s.parse::<Latency>().unwrap_err().to_string();
        assert!(err("10ms").contains("no kind"));
        assert!(err("gaussian:1ms").contains("unknown kind `gaussian`"));
        assert!(err("uniform:1ms").contains("LO..HI"));
        assert!(err("uniform:5s..1s").contains("exceeds"));
        assert!(err("normal:50ms").contains("MEAN,STD"));
        assert!(err("constant:10").contains("no unit"));
    }

    #[test]
    fn uniform_draws_stay_in_bounds_and_normal_never_goes_negative() {
        let mut rng = derive_rng(1, "test", 0);
        let uniform = Latency::Uniform { lo_ns: 5, hi_ns: 9 };
        let normal = Latency::Normal {
            mean_ns: 10,
            std_ns: 100,
        };
        let mut saw_zero = false;
        for _ in 0..10_000 {
            let u = uniform.sample(&mut rng);
            assert!((5..=9).contains(&u));
            saw_zero |= normal.sample(&mut rng) == 0;
        }
        assert!(
            saw_zero,
            "a wide normal around 10ns must clip some draws at zero"
        );
    }

    #[test]
    fn lognormal_draws_have_the_mean_and_deviation_asked_for() {
        let mut rng = derive_rng(5, "test", 0);
        let latency: Latency = "lognormal:50ms,20ms".parse().unwrap();
        let draws: Vec<f64> = (0..100_000)
            .map(|_| latency.sample(&mut rng) as f64 / 1e6)
            .collect();
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 50.0).abs() < 0.5, "mean {mean} ms");
        assert!(
            (var.sqrt() - 20.0).abs() < 0.5,
            "deviation {} ms",
            var.sqrt()
        );
        assert!(draws.iter().all(|&d| d >= 0.0));
    }

    #[test]
    fn loss_drops_about_the_given_fraction() {
        let mut net = SimpleNetwork {
            latency: Latency::constant_ms(1),
            loss: 0.25,
        };
        let mut rng = derive_rng(3, "net", 0);
        let packet = Packet {
            from: NodeId(0),
            to: NodeId(1),
            sent_at: Time::ZERO,
            bytes: 1,
        };
        let dropped = (0..40_000)
            .filter(|_| matches!(net.route(&packet, &mut rng), Fate::Drop { .. }))
            .count();
        let rate = dropped as f64 / 40_000.0;
        assert!((rate - 0.25).abs() < 0.01, "loss rate {rate}");
    }
}
