//! Spectrum's actors, one enum: servers, the publisher, clients. What they output, their
//! timers, and the one switch between the simulator's node (mutants and Byzantine clients
//! available) and the production node (the correct protocol alone).

use super::byzantine::Behavior;
use super::client::Client;
use super::config::{Config, ConfigError, Mutant};
use super::messages::{Msg, Round};
use super::publisher::Publisher;
use super::server::Server;
use crate::crypto::Digest;
use rehearsal_sim_core::explore::{Explorable, Fingerprinter};
use rehearsal_sim_core::{Actor, Context, NodeId, Time};
use serde::{Deserialize, Serialize};

/// What one server received from one client in a round: the server's whole view of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct View {
    pub client: NodeId,
    /// Distinct uploads received (re-sent copies of the first do not count): 1 for any
    /// correct client, write or cover.
    pub uploads: u32,
    /// The encoded size of the first upload message, as the wire carries it.
    pub bytes: u64,
}

/// What the checkers observe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Output {
    /// A client sent its uploads for `round` for the first time.
    Submitted { round: Round },
    /// A client learnt that `round` is published (`uploaded`: it had sent uploads for it;
    /// a client that fell behind completes the rounds it missed without).
    Completed {
        round: Round,
        uploaded: bool,
        submitted_at: Time,
        completed_at: Time,
    },
    /// A server refused a client's upload of `round` as malformed (`error` says why): the
    /// client is rejected.
    Malformed {
        round: Round,
        client: NodeId,
        error: String,
    },
    /// A server closed `round`: it accumulated exactly `accepted`; `rejected` failed the
    /// audit (or sent malformed uploads); `absent` were not decided before the upload
    /// timeout. `views` is what it received from each client.
    Decided {
        round: Round,
        accepted: Vec<NodeId>,
        rejected: Vec<NodeId>,
        absent: Vec<NodeId>,
        views: Vec<View>,
    },
    /// The publisher combined every server's accumulator of `round`: each channel's
    /// content as a digest ([`super::config::content_digest`] or
    /// [`super::config::points_digest`]), the writes the servers accepted, and the
    /// channels that are not empty.
    Published {
        round: Round,
        accepted: Vec<NodeId>,
        channels: Vec<Digest>,
        nonzero: Vec<u32>,
    },
    /// This client turned Byzantine (or back, with `correct`): its uploads from
    /// `from_round` on are forged as `behavior` says.
    Byzantine { behavior: String, from_round: Round },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// The leader closes `round` if it is still open.
    UploadTimeout { round: Round },
    /// A server re-sends what is unanswered: accumulators, closes.
    Resend,
    /// A client re-sends its uploads of `round` if it is still waiting for it.
    ClientResend { round: Round },
}

/// A Spectrum node. `TESTING` = true is the simulator's node (mutants and Byzantine
/// clients available); false is the production node, in which every mutant check and
/// Byzantine branch is compiled out (`if TESTING && ...`).
#[derive(Clone)]
pub enum NodeWith<const TESTING: bool> {
    Server(Box<Server<TESTING>>),
    Publisher(Box<Publisher>),
    Client(Box<Client<TESTING>>),
}

/// The simulator's node.
pub type Node = NodeWith<true>;
/// The node real transports run.
pub type ProductionNode = NodeWith<false>;

impl<const TESTING: bool> NodeWith<TESTING> {
    /// Node `id` of `config`'s deployment, built from the configuration alone.
    pub fn new(config: &Config, id: NodeId) -> Result<Self, ConfigError> {
        config.validate()?;
        if !TESTING && config.mutant != Mutant::None {
            return Err(ConfigError::MutantInProduction(config.mutant));
        }
        if id.0 >= config.nodes() {
            return Err(ConfigError::NoSuchNode {
                node: id,
                nodes: config.nodes(),
            });
        }
        Ok(if config.is_server(id) {
            NodeWith::Server(Box::new(Server::new(config, id)))
        } else if id == config.publisher() {
            NodeWith::Publisher(Box::new(Publisher::new(config)))
        } else {
            NodeWith::Client(Box::new(Client::new(config, id)))
        })
    }

    pub fn as_server(&self) -> Option<&Server<TESTING>> {
        match self {
            NodeWith::Server(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_publisher(&self) -> Option<&Publisher> {
        match self {
            NodeWith::Publisher(p) => Some(p),
            _ => None,
        }
    }

    pub fn as_client(&self) -> Option<&Client<TESTING>> {
        match self {
            NodeWith::Client(c) => Some(c),
            _ => None,
        }
    }
}

/// The explorer copies a simulated node and tells its states apart by what each role
/// feeds it (see [`Server`], [`Publisher`] and [`Client`]'s `fingerprint`s for what they
/// leave out, and why).
impl Explorable for Node {
    fn fingerprint(&self, h: &mut Fingerprinter) {
        match self {
            NodeWith::Server(s) => {
                h.value(&0u8);
                s.fingerprint(h);
            }
            NodeWith::Publisher(p) => {
                h.value(&1u8);
                p.fingerprint(h);
            }
            NodeWith::Client(c) => {
                h.value(&2u8);
                c.fingerprint(h);
            }
        }
    }
}

/// Every node of `config`'s deployment, in id order (the simulator's).
pub fn actors(config: &Config) -> Result<Vec<Node>, ConfigError> {
    (0..config.nodes())
        .map(|id| Node::new(config, NodeId(id)))
        .collect()
}

impl<const TESTING: bool> Actor for NodeWith<TESTING> {
    type Msg = Msg;
    type Timer = Timer;
    type Output = Output;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        match self {
            NodeWith::Client(c) => c.on_start(cx),
            // A server's round is the broadcast round it is in (the next it will close):
            // it reports each as it opens. Clients and the publisher follow the servers.
            NodeWith::Server(s) => cx.enter_round(s.round()),
            NodeWith::Publisher(_) => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<Self>) {
        match self {
            NodeWith::Server(s) => s.on_message(from, msg, cx),
            NodeWith::Publisher(p) => p.on_message(from, msg, cx),
            NodeWith::Client(c) => c.on_message(from, msg, cx),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Self>) {
        match (self, timer) {
            (NodeWith::Server(s), Timer::UploadTimeout { round }) => s.on_upload_timeout(round, cx),
            (NodeWith::Server(s), Timer::Resend) => s.on_resend(cx),
            (NodeWith::Client(c), Timer::ClientResend { round }) => c.on_resend(round, cx),
            (_, timer) => cx.annotate(format!("ignored foreign timer {timer:?}")),
        }
    }

    fn message_kind(msg: &Msg) -> &'static str {
        msg.kind()
    }

    fn waiting_for(&self) -> Option<String> {
        match self {
            NodeWith::Server(s) => s.waiting_for(),
            NodeWith::Publisher(p) => p.waiting_for(),
            NodeWith::Client(c) => c.waiting_for(),
        }
    }

    fn byzantine_behaviors() -> &'static [&'static str] {
        if TESTING {
            Behavior::NAMES
        } else {
            &[]
        }
    }

    fn can_turn_byzantine(&self, behavior: &str) -> Result<(), String> {
        match self {
            NodeWith::Client(_) if TESTING => Ok(()),
            NodeWith::Client(_) => Err(format!(
                "the production Spectrum node has no Byzantine behaviour (`{behavior}`): use the simulator's spectrum::Node"
            )),
            NodeWith::Server(_) | NodeWith::Publisher(_) => Err(format!(
                "that node is a Spectrum server or the publisher and cannot be Byzantine (`{behavior}`): servers are trusted not to collude; only clients can"
            )),
        }
    }

    fn set_byzantine(&mut self, behavior: &str) -> Result<(), String> {
        self.can_turn_byzantine(behavior)?;
        match self {
            NodeWith::Client(c) => c.set_byzantine(behavior),
            NodeWith::Server(_) | NodeWith::Publisher(_) => {
                Err(format!("only Spectrum clients can be Byzantine (`{behavior}`)"))
            }
        }
    }
}
