//! One Spectrum deployment: who is in it, its channels and messages, its timers, and
//! everything every node derives from the run's seed (channel access keys, writers'
//! messages), so that a node built alone derives the same values as the simulator's.

use super::embedding;
use super::vdpf::AccessKey;
use crate::crypto::Digest;
use rehearsal_sim_core::{derive_rng, NodeId};
use serde::{Deserialize, Serialize};
use std::str::FromStr;
use std::time::Duration;

/// Most channels a deployment may have: a server's audit and evaluation are linear in it.
pub const CHANNELS_MAX: u32 = 65_536;
/// Longest message, in bytes (1 MiB).
pub const MESSAGE_BYTES_MAX: u32 = 1 << 20;
/// Most servers: each one adds a share to every client's upload.
pub const SERVERS_MAX: u32 = 16;
/// Most bytes of accumulators one round holds (channels × message bytes): a bound on the
/// memory a server and the publisher spend per round (256 MiB).
pub const ROUND_BYTES_MAX: u64 = 1 << 28;

/// A deliberately broken Spectrum server, for the testbed's own tests only: each must be
/// caught by an invariant under some setting (see `protocols/tests/spectrum_mutants.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mutant {
    /// The correct protocol.
    #[default]
    None,
    /// (a) A failed audit is logged, but the write is accumulated all the same.
    AccumulateFailedAudit,
    /// (b) The audit compares only the seed parts of the tokens.
    SeedOnlyAudit,
    /// (c) The audit skips the correction-word hash.
    NoCwHash,
    /// (d) A server accumulates each upload as it arrives, before the audit exchange has
    /// decided it.
    AccumulateBeforeAudit,
}

impl Mutant {
    /// Every mutant, the correct protocol first.
    pub const ALL: [Mutant; 5] = [
        Mutant::None,
        Mutant::AccumulateFailedAudit,
        Mutant::SeedOnlyAudit,
        Mutant::NoCwHash,
        Mutant::AccumulateBeforeAudit,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            Mutant::None => "none",
            Mutant::AccumulateFailedAudit => "accumulate-failed-audit",
            Mutant::SeedOnlyAudit => "seed-only-audit",
            Mutant::NoCwHash => "no-cw-hash",
            Mutant::AccumulateBeforeAudit => "accumulate-before-audit",
        }
    }

    /// What the mutant breaks, for help texts.
    pub const fn about(self) -> &'static str {
        match self {
            Mutant::None => "the correct protocol",
            Mutant::AccumulateFailedAudit => {
                "a failed audit is logged but the write is accumulated all the same"
            }
            Mutant::SeedOnlyAudit => "the audit compares only the seed parts of the tokens",
            Mutant::NoCwHash => "the audit skips the correction-word hash",
            Mutant::AccumulateBeforeAudit => {
                "servers accumulate each upload as it arrives, before the audit exchange decides it"
            }
        }
    }
}

crate::named::display_by_name!(Mutant);

impl FromStr for Mutant {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        crate::named::parse_named(s, "Spectrum mutant", &Mutant::ALL, Mutant::name, None)
    }
}

/// Why a configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("spectrum needs at least 2 servers and a publisher (3 nodes), got {0} server(s): use --servers 2")]
    TooFewServers(u32),
    #[error("spectrum supports at most {SERVERS_MAX} servers, got {0}")]
    TooManyServers(u32),
    #[error("spectrum needs at least one client")]
    NoClients,
    #[error("channels must be between 1 and {CHANNELS_MAX}, got {0}")]
    Channels(u32),
    #[error("message_bytes must be between 1 and {MESSAGE_BYTES_MAX}, got {0}")]
    MessageBytes(u32),
    #[error("{channels} channels of {message_bytes} bytes is more than {ROUND_BYTES_MAX} bytes per round: fewer channels or shorter messages")]
    RoundTooLarge { channels: u32, message_bytes: u32 },
    #[error("writers ({writers}) cannot exceed clients ({clients})")]
    TooManyWriters { writers: u32, clients: u32 },
    #[error("the {0} must be positive")]
    ZeroTimer(&'static str),
    #[error("the production Spectrum node runs the correct protocol only, not the `{0}` mutant: mutants run in the simulator")]
    MutantInProduction(Mutant),
    #[error("node {node} is not in a deployment of {nodes} nodes (servers, publisher and clients)")]
    NoSuchNode { node: NodeId, nodes: u32 },
}

/// Which DPF the deployment runs: the two-server [`super::vdpf`], or the `k`-server
/// [`super::multi`] for `k ≥ 3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Variant {
    TwoServer,
    Multi,
}

/// One Spectrum deployment. Nodes `0..servers` are the servers (server 0 leads the audit
/// exchange), node `servers` is the publisher, and clients follow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// Servers, `k ≥ 2`.
    pub servers: u32,
    /// Clients: writers and cover clients.
    pub clients: u32,
    /// Rounds every client takes part in.
    pub rounds: u64,
    /// Channels, each `message_bytes` long.
    pub channels: u32,
    pub message_bytes: u32,
    /// Clients `0..writers` (counted among clients) own channel `i mod channels` and write
    /// every round; the others send covers. `None`: `min(clients, channels)`.
    pub writers: Option<u32>,
    /// The run's seed: channel access keys and writers' messages derive from it.
    pub seed: u64,
    /// The leader closes a round this long after it opened (its first upload or token),
    /// leaving out the clients it has not decided yet.
    pub upload_timeout: Duration,
    /// Anything unanswered is re-sent after this (no backoff: the bound stays linear).
    pub retransmit: Duration,
    /// The termination check's bound: once faults heal, every round of every client
    /// completes within this of its first upload.
    pub termination_bound: Duration,
    /// Test-only: a deliberately broken variant.
    pub mutant: Mutant,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            servers: 2,
            clients: 4,
            rounds: 3,
            channels: 16,
            message_bytes: 1024,
            writers: None,
            seed: 0,
            upload_timeout: Duration::from_secs(1),
            retransmit: Duration::from_millis(100),
            termination_bound: Duration::from_secs(60),
            mutant: Mutant::None,
        }
    }
}

impl Config {
    /// Says what is wrong with the configuration, if anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.servers < 2 {
            return Err(ConfigError::TooFewServers(self.servers));
        }
        if self.servers > SERVERS_MAX {
            return Err(ConfigError::TooManyServers(self.servers));
        }
        if self.clients == 0 {
            return Err(ConfigError::NoClients);
        }
        if self.channels == 0 || self.channels > CHANNELS_MAX {
            return Err(ConfigError::Channels(self.channels));
        }
        if self.message_bytes == 0 || self.message_bytes > MESSAGE_BYTES_MAX {
            return Err(ConfigError::MessageBytes(self.message_bytes));
        }
        if u64::from(self.channels) * u64::from(self.message_bytes) > ROUND_BYTES_MAX {
            return Err(ConfigError::RoundTooLarge {
                channels: self.channels,
                message_bytes: self.message_bytes,
            });
        }
        if let Some(writers) = self.writers {
            if writers > self.clients {
                return Err(ConfigError::TooManyWriters {
                    writers,
                    clients: self.clients,
                });
            }
        }
        for (name, d) in [
            ("upload timeout", self.upload_timeout),
            ("retransmission timeout", self.retransmit),
        ] {
            if d.is_zero() {
                return Err(ConfigError::ZeroTimer(name));
            }
        }
        Ok(())
    }

    pub fn variant(&self) -> Variant {
        if self.servers == 2 {
            Variant::TwoServer
        } else {
            Variant::Multi
        }
    }

    /// Servers, the publisher and clients.
    pub fn nodes(&self) -> u32 {
        self.servers + 1 + self.clients
    }

    pub fn publisher(&self) -> NodeId {
        NodeId(self.servers)
    }

    /// The server that gathers the tokens, decides and closes rounds.
    pub fn leader(&self) -> NodeId {
        NodeId(0)
    }

    pub fn is_server(&self, node: NodeId) -> bool {
        node.0 < self.servers
    }

    pub fn servers_ids(&self) -> impl Iterator<Item = NodeId> {
        (0..self.servers).map(NodeId)
    }

    /// The node of client `index` (0-based among clients).
    pub fn client_node(&self, index: u32) -> NodeId {
        NodeId(self.servers + 1 + index)
    }

    /// The client index (0-based) of `node`, if it is a client.
    pub fn client_index(&self, node: NodeId) -> Option<u32> {
        let first = self.servers + 1;
        (node.0 >= first && node.0 < first + self.clients).then(|| node.0 - first)
    }

    pub fn client_nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        (0..self.clients).map(|i| self.client_node(i))
    }

    /// How many clients write: `writers`, or `min(clients, channels)`.
    pub fn writers(&self) -> u32 {
        self.writers
            .unwrap_or_else(|| self.clients.min(self.channels))
    }

    /// The channel client `index` owns and writes to every round, if it is a writer.
    pub fn channel_of(&self, index: u32) -> Option<u32> {
        (index < self.writers()).then(|| index % self.channels)
    }

    /// Channel `channel`'s access key, from the run's seed: one stream per channel, so a
    /// writer derives its own key without the others'.
    pub fn access_key(&self, channel: u32) -> AccessKey {
        AccessKey::random(&mut derive_rng(
            self.seed,
            "spectrum channel keys",
            u64::from(channel),
        ))
    }

    /// Every channel's access key, in channel order (what a server holds).
    pub fn access_keys(&self) -> Vec<AccessKey> {
        (0..self.channels).map(|c| self.access_key(c)).collect()
    }

    /// The message client `index` writes in `round`: `message_bytes` bytes, a function of
    /// the seed, the client and the round, so checks recompute it from the configuration.
    pub fn message(&self, index: u32, round: u64) -> Vec<u8> {
        let mut hasher = blake3::Hasher::new_derive_key("rehearsal spectrum writer message v1");
        hasher.update(&self.seed.to_le_bytes());
        hasher.update(&index.to_le_bytes());
        hasher.update(&round.to_le_bytes());
        let mut message = vec![0u8; self.message_bytes as usize];
        hasher.finalize_xof().fill(&mut message);
        message
    }

    /// Group elements per message in the multi-server variant.
    pub fn message_points(&self) -> usize {
        embedding::points_for_bytes(self.message_bytes as usize)
    }

    /// What channel `channel` must publish in `round` when `accepted` (client indices)
    /// were accepted: the XOR (two servers) or group sum (`k` servers) of the accepted
    /// writers' messages to it, as the digest the publisher outputs ([`content_digest`],
    /// [`points_digest`]).
    pub fn expected_channels(&self, round: u64, accepted: &[u32]) -> Vec<Digest> {
        match self.variant() {
            Variant::TwoServer => {
                let mut channels =
                    vec![vec![0u8; self.message_bytes as usize]; self.channels as usize];
                for &index in accepted {
                    if let Some(channel) = self.channel_of(index) {
                        let message = self.message(index, round);
                        for (c, m) in channels[channel as usize].iter_mut().zip(&message) {
                            *c ^= m;
                        }
                    }
                }
                channels.iter().map(|c| content_digest(c)).collect()
            }
            Variant::Multi => {
                let points = self.message_points();
                let mut channels = super::multi::new_accumulator(self.channels as usize, points);
                for &index in accepted {
                    if let Some(channel) = self.channel_of(index) {
                        // A writer's message always encodes (see `embedding`).
                        if let Ok(encoded) = embedding::encode_message(&self.message(index, round)) {
                            for (sum, p) in channels[channel as usize].iter_mut().zip(&encoded) {
                                *sum += p;
                            }
                        }
                    }
                }
                channels.iter().map(|c| points_digest(c)).collect()
            }
        }
    }
}

/// The digest of one published channel's bytes (two-server variant).
pub fn content_digest(bytes: &[u8]) -> Digest {
    Digest::of(bytes)
}

/// The digest of one published channel's group elements (multi-server variant): of their
/// canonical encodings, in order.
pub fn points_digest(points: &[curve25519_dalek::ristretto::RistrettoPoint]) -> Digest {
    let mut hasher = blake3::Hasher::new();
    for p in points {
        hasher.update(p.compress().as_bytes());
    }
    Digest(*hasher.finalize().as_bytes())
}
