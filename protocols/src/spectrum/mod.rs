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
//!
//! Randomness always comes from the caller's `CryptoRng` (in the simulator, the node's
//! seeded `Context::rng()`), so the same seed gives the same bytes.

pub mod dpf;
mod error;
pub mod prg;

pub use error::SpectrumError;
