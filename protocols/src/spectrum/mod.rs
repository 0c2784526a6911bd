//! Spectrum's cryptographic primitives (Newman, Servan-Schreiber and Devadas, "Spectrum:
//! High-bandwidth Anonymous Broadcast", NSDI 2022), as pure functions: no actors yet.
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

pub mod bench;
pub mod canonical;
pub mod dpf;
pub mod embedding;
mod error;
pub mod multi;
pub mod prg;
pub mod vdpf;

pub use error::SpectrumError;
