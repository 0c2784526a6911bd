//! Spectrum (Newman, Servan-Schreiber and Devadas, "Spectrum: High-bandwidth Anonymous
//! Broadcast", NSDI 2022): its cryptographic primitives as pure functions, and the
//! protocol as Rehearsal actors.
//!
//! Spectrum broadcasts on `n` channels of `L`-byte messages. Every client, in every round,
//! sends each server a share of a distributed point function (DPF): a *write* puts its
//! message on one channel, a *cover* puts nothing anywhere, and no server (short of all
//! of them colluding) can tell which, nor which channel. The servers add up every
//! client's shares and publish the sum. Because a malicious client could write garbage
//! everywhere, each write carries a proof that the servers *audit* together: it passes
//! iff the write touches one channel and the writer holds that channel's access key.
//! That is blind access control: the servers learn that a write is authorised, never
//! which channel it is for.
//!
//! - [`prg`]: the PRG `G`, AES-128 in counter mode.
//! - [`dpf`]: the two-server DPF: [`dpf::gen_write`], [`dpf::gen_cover`],
//!   [`dpf::DpfKey::eval_into`].
//! - [`vdpf`]: its proofs and audit ([`vdpf::gen_write`], [`vdpf::audit_token`],
//!   [`vdpf::Token::matches`]).
//! - [`multi`]: the `k`-server variant, over the Ristretto group, and [`embedding`] to put
//!   bytes into its group elements.
//! - [`canonical`]: the wire encodings of scalars and points, which refuse non-canonical
//!   bytes with a [`SpectrumError`] naming the field.
//! - [`bench`](mod@bench): workloads for timing the above.
//!
//! Randomness always comes from the caller's `CryptoRng` (in the simulator, the node's
//! seeded `Context::rng()`), so the same seed gives the same bytes.
//!
//! # The audit, and why it is sound
//!
//! Channel `j` has an access key `k_j`, a uniformly random scalar mod the Ristretto
//! group's prime order ℓ. The channel's owner holds it; the servers hold every channel's
//! (they must not collude to keep clients anonymous, and a server is not a client: here
//! the keys keep *clients* off channels that are not theirs).
//!
//! A two-server key pair `(A, B)` has, per channel, seeds `s_A[j], s_B[j]` (read as
//! scalars by an injective map, since 2^128 < ℓ) and bits `b_A[j], b_B[j]` (0 or 1), and
//! a correction word each. Write `Δb_j = b_A[j] − b_B[j]` and `Δs_j = s_A[j] − s_B[j]`.
//! Each server computes, from its own key and proof share `(π.bit, π.seed)` alone,
//!
//! ```text
//! token.bit  = Σ_j b[j]·k_j + π.bit
//! token.seed = Σ_j s[j]·k_j + π.seed
//! token.cw_hash = H(cw)
//! ```
//!
//! and the write is accepted iff the two tokens are equal in all three parts. Equality
//! of the first two parts says `Σ_j Δb_j·k_j = π_B.bit − π_A.bit` and
//! `Σ_j Δs_j·k_j = π_B.seed − π_A.seed`.
//!
//! - Completeness. An honest write to `i` has `Δb`, `Δs` zero except at `i`, and the
//!   writer, holding `k_i`, sets `π_B = π_A + (Δb_i·k_i, Δs_i·k_i)`. A cover has
//!   identical keys (all differences zero) and `π_A = π_B`.
//! - Soundness. A cheater picks the keys and both proof shares, but not the access keys
//!   it lacks: those are uniform and independent of its view. Let `J` be the channels
//!   where `Δb` or `Δs` is nonzero but the cheater has no key. If `J` is not empty, each
//!   equality above fixes a nonzero linear combination of unknown uniform `k_j` to a
//!   value the cheater chose, which holds with probability `1/ℓ ≈ 2^-252`. So an
//!   accepted pair differs only at channels the writer may write to. (A pair that
//!   differs nowhere writes nothing, whatever its proof.)
//! - Privacy. Each proof share is uniformly random on its own, and the tokens of an
//!   accepted write are equal, so exchanging them shows a server nothing it did not
//!   know; each key is uniformly random seeds and bits and a pseudorandom word.
//!
//! Each part is necessary; dropping it admits a forgery that only it would catch
//! (`protocols/tests/spectrum_primitives.rs` runs each):
//!
//! - *Bit part*: take a cover, flip the bit at a channel `i` one has no key for, and set
//!   the correction word to any message. Seeds stay equal (seed part matches) and both
//!   servers get the same word (hashes match); channel `i` publishes the word.
//! - *Seed part*: take a cover and change the seed at `i`. Bits and word match; channel
//!   `i` publishes `G(s) ⊕ G(s')`, jamming its owner.
//! - *Correction-word hash*: take a cover whose bit is set at `i` (the same in both keys)
//!   and send the servers different words `cw_A ≠ cw_B`. Seeds and bits are equal, so
//!   both field-element parts match; channel `i` publishes `cw_A ⊕ cw_B`. No other part
//!   involves the word, which is why it is hashed and compared.
//!
//! The multi-server variant ([`multi`]) is the same argument with sums over servers in
//! place of the difference of two, and group elements in place of bytes.
//!
//! # The protocol, as actors
//!
//! Nodes `0..k` are the servers (server 0 is the *leader* of the audit exchange), node
//! `k` is the publisher, and clients follow ([`node`]). Every node derives the channel
//! access keys and the writers' messages from the run's seed ([`Config`]), so a node built
//! alone on a real transport derives the same ones; the servers hold every channel's key
//! in plain, as the public implementation does. A round `r`:
//!
//! 1. **Upload** ([`client`]): each client sends every server `Upload { r, share }`: a
//!    writer (client `i < writers`, owner of channel `i mod channels`) writes that round's
//!    message, any other client a cover. Each server acknowledges the upload it holds
//!    (`UploadAck`); the client re-sends the same upload to the servers that have not,
//!    and once all have, polls the publisher (`Poll`) in case the round's end was lost.
//! 2. **Audit** ([`server`]): each server checks the upload's shape (a malformed one is a
//!    counted, annotated rejection: [`Output::Malformed`]), computes its audit token, and
//!    sends `Token { r, client, token }` to the leader (again whenever the upload comes
//!    again). The leader decides each client once it holds all `k` tokens: accepted iff
//!    the audit passes.
//! 3. **Close**: when every client is decided, or at the upload timeout (counted from the
//!    round's first upload or token at the leader), the leader sends
//!    `Close { r, accepted, rejected }` to the other servers (re-sent until acknowledged);
//!    undecided clients are *absent*. Every server then accumulates exactly the accepted
//!    uploads (it holds them: a server's token reached the leader only if it had the
//!    upload), outputs [`Output::Decided`], and sends its accumulator to the publisher
//!    (re-sent until the publisher confirms the round). A late upload of a closed,
//!    published round, or a poll of it, is answered with `RoundDone`.
//! 4. **Publish** ([`publisher`]): with all `k` accumulators, the publisher combines them,
//!    outputs every channel's content digest ([`Output::Published`]) and sends
//!    `RoundDone { r }` to servers and clients; clients then upload for `r + 1`.
//!
//! Rounds publish in order, so every buffer holds one round: uploads and tokens for
//! another round are dropped and annotated. Servers charge the simulator the CPU time
//! their audits and evaluations take ([`cost`]). [`mod@checks`] lists the invariants (I1–I5
//! and termination); [`byzantine`] the Byzantine clients; [`Mutant`] the deliberately
//! broken servers. The production node ([`ProductionNode`]) is the same code with every
//! mutant and Byzantine branch compiled out.
//!
//! ```
//! use rehearsal_protocols::spectrum::{self, Config};
//! use rehearsal_sim_core::{Outcome, SimConfig, SimpleNetwork, Simulation};
//!
//! let config = Config { clients: 4, rounds: 2, channels: 4, message_bytes: 32, ..Config::default() };
//! let actors = spectrum::actors(&config).unwrap();
//! let mut sim = Simulation::new(SimConfig::new(1), actors, SimpleNetwork::default());
//! for check in spectrum::checks(&config) {
//!     sim.add_invariant(check);
//! }
//! let report = sim.run();
//! assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
//! let summary = spectrum::summary(&report.actors);
//! assert_eq!((summary.rounds_published, summary.writes_accepted), (2, 8));
//! ```

pub mod bench;
pub mod byzantine;
pub mod canonical;
pub mod checks;
pub mod client;
pub mod config;
pub mod cost;
pub mod dpf;
pub mod embedding;
mod error;
pub mod messages;
pub mod multi;
pub mod node;
pub mod prg;
mod protocol;
pub mod publisher;
pub mod server;
pub mod vdpf;

pub use byzantine::Behavior;
pub use checks::{checks, checks_after, safety_checks};
pub use config::{Config, ConfigError, Mutant, Variant};
pub use error::SpectrumError;
pub use messages::Msg;
pub use node::{actors, Node, NodeWith, Output, ProductionNode, Timer, View};
pub use protocol::{default_upload_timeout, termination_bound, Params, Spectrum};

use serde::Serialize;

/// The figures of a Spectrum run, from the nodes it left.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// Rounds the publisher published.
    pub rounds_published: u64,
    /// Uploads (writes and covers) the servers accepted, over every round.
    pub writes_accepted: u64,
    /// Uploads the audit rejected (or servers refused as malformed).
    pub writes_rejected: u64,
    /// Clients left out of a round at the upload timeout.
    pub writes_absent: u64,
    /// Accepted uploads per second of virtual time, up to the last publication.
    pub writes_per_second: f64,
    /// Mean time from a client's first upload of a round to its learning the round is
    /// published, over the rounds clients uploaded for.
    pub round_latency_mean_ns: u64,
    /// Clients' completed rounds as the runner's request figures (`completed`,
    /// `throughput_per_s`, `latency_ns_p50`, ...): a round a client uploaded for is one
    /// request.
    #[serde(flatten)]
    pub clients: crate::pbft::Summary,
}

/// The figures of a run: the publisher's rounds, the leader's decisions, the clients'
/// round latencies.
pub fn summary<const T: bool>(nodes: &[NodeWith<T>]) -> Summary {
    let (mut rounds_published, mut writes_per_second) = (0, 0.0);
    if let Some(publisher) = nodes.iter().find_map(NodeWith::as_publisher) {
        let publications = publisher.publications();
        rounds_published = publications.len() as u64;
        if let Some(last) = publications.last() {
            let accepted: usize = publications.iter().map(|p| p.accepted).sum();
            let secs = last.at.as_secs_f64();
            if secs > 0.0 {
                writes_per_second = accepted as f64 / secs;
            }
        }
    }
    let totals = nodes
        .first()
        .and_then(NodeWith::as_server)
        .map(|leader| leader.totals())
        .unwrap_or_default();
    let completions: Vec<crate::pbft::client::Completion> = nodes
        .iter()
        .filter_map(NodeWith::as_client)
        .flat_map(|c| c.completions().iter())
        .filter(|c| c.uploaded)
        .map(|c| crate::pbft::client::Completion {
            number: c.round + 1,
            submitted_at: c.submitted_at,
            completed_at: c.completed_at,
        })
        .collect();
    let latency_total: u64 = completions
        .iter()
        .map(|c| rehearsal_sim_core::duration_ns(c.completed_at.saturating_sub(c.submitted_at)))
        .sum();
    Summary {
        rounds_published,
        writes_accepted: totals.accepted,
        writes_rejected: totals.rejected,
        writes_absent: totals.absent,
        writes_per_second,
        round_latency_mean_ns: latency_total.checked_div(completions.len() as u64).unwrap_or(0),
        clients: crate::pbft::Summary::of_completions(completions.iter()),
    }
}
