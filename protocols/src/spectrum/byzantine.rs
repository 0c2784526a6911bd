//! Test-only Byzantine clients, switched on by a
//! [`Fault::Byzantine`](rehearsal_sim_core::Fault::Byzantine). A Byzantine client keeps
//! the round structure (one upload per server per round, re-sent until the round is
//! done) but forges what it uploads:
//!
//! - `unauthorised`: writes to a channel whose key it does not hold (the next channel
//!   after its own, or channel `index mod channels` for a cover client), in the strongest
//!   form: a cover with the bit flipped at that channel in the second server's key, the
//!   same correction word (a message of its choice) to every server, cover proofs. The
//!   seeds are equal, so the seed part of the audit matches and only the bit part
//!   catches it.
//! - `two-positions`: keys that differ at two channels: an authorised write to its own
//!   channel (or a cover) that also flips the bit at a second channel.
//! - `split-message`: different correction words to the servers, otherwise an authorised
//!   write (or a cover, for a client without a key): only the correction-word hash
//!   catches it.
//! - `garbage`: raw bytes in place of an upload: truncated bytes, a non-canonical scalar
//!   in the proof, or a well-formed upload with a channel missing, depending on the round
//!   and the server. Servers refuse each with a counted, annotated error.
//!
//! Every choice draws from the client's `cx.rng()`, so runs stay reproducible.

use super::config::{Config, Variant};
use super::embedding::encode_message;
use super::messages::{Msg, Round, UploadBody};
use super::multi::{self, MultiUpload};
use super::vdpf::{self, AccessKey, Upload};
use super::SpectrumError;
use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::Scalar;
use rehearsal_sim_core::{codec, SimRng};
use std::str::FromStr;
use std::sync::Arc;

/// How a Byzantine client forges its uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behavior {
    Unauthorised,
    TwoPositions,
    SplitMessage,
    Garbage,
}

/// ℓ, the group order, little-endian: the smallest non-canonical scalar encoding.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

impl Behavior {
    pub const NAMES: &'static [&'static str] =
        &["unauthorised", "two-positions", "split-message", "garbage"];

    const ALL: [Behavior; 4] = [
        Behavior::Unauthorised,
        Behavior::TwoPositions,
        Behavior::SplitMessage,
        Behavior::Garbage,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Behavior::Unauthorised => "unauthorised",
            Behavior::TwoPositions => "two-positions",
            Behavior::SplitMessage => "split-message",
            Behavior::Garbage => "garbage",
        }
    }

    /// The forged uploads of client `index` (holding `key`, its channel's, if a writer)
    /// for `round`: one message per server, in server order.
    pub fn forge(
        self,
        config: &Config,
        index: u32,
        key: Option<(u32, AccessKey)>,
        round: Round,
        rng: &mut SimRng,
    ) -> Result<Vec<Msg>, SpectrumError> {
        let channels = config.channels;
        // A channel it has no key for, and a second one.
        let foreign = match key {
            Some((own, _)) => (own + 1) % channels,
            None => index % channels,
        };
        let second = (foreign + 1) % channels;
        let forged = config.message(index ^ 0x8000_0000, round);
        if self == Behavior::Garbage {
            return garbage(config, round, rng);
        }
        let bodies: Vec<UploadBody> = match config.variant() {
            Variant::TwoServer => {
                let mb = config.message_bytes as usize;
                let c = channels as usize;
                let mut ups: [Upload; 2] = match (self, key) {
                    (Behavior::TwoPositions | Behavior::SplitMessage, Some((own, key))) => {
                        vdpf::gen_write(&key, c, own as usize, &config.message(index, round), rng)?
                    }
                    _ => vdpf::gen_cover(c, mb, rng)?,
                };
                match self {
                    Behavior::Unauthorised => {
                        let bit = &mut ups[1].key.bits[foreign as usize];
                        *bit = !*bit;
                        ups[0].key.cw.clone_from(&forged);
                        ups[1].key.cw = forged;
                    }
                    Behavior::TwoPositions => {
                        for channel in two_positions(key.is_some(), foreign, second) {
                            let bit = &mut ups[1].key.bits[channel as usize];
                            *bit = !*bit;
                        }
                    }
                    Behavior::SplitMessage => {
                        for (cw, m) in ups[1].key.cw.iter_mut().zip(&forged) {
                            *cw ^= m | 1;
                        }
                    }
                    Behavior::Garbage => {}
                }
                ups.into_iter().map(UploadBody::TwoServer).collect()
            }
            Variant::Multi => {
                let servers = config.servers as usize;
                let c = channels as usize;
                let points = config.message_points();
                let mut ups: Vec<MultiUpload> = match (self, key) {
                    (Behavior::TwoPositions | Behavior::SplitMessage, Some((own, key))) => {
                        let message = encode_message(&config.message(index, round))?;
                        multi::gen_write(servers, &key, c, own as usize, &message, rng)?
                    }
                    _ => multi::gen_cover(servers, c, points, rng)?,
                };
                match self {
                    Behavior::Unauthorised => {
                        ups[1].key.bits[foreign as usize] += Scalar::ONE;
                        let forged = encode_message(&forged)?;
                        for up in &mut ups {
                            up.key.cw.clone_from(&forged);
                        }
                    }
                    Behavior::TwoPositions => {
                        for channel in two_positions(key.is_some(), foreign, second) {
                            ups[1].key.bits[channel as usize] += Scalar::ONE;
                        }
                    }
                    Behavior::SplitMessage => {
                        ups[1].key.cw[0] += RISTRETTO_BASEPOINT_POINT;
                    }
                    Behavior::Garbage => {}
                }
                ups.into_iter().map(UploadBody::Multi).collect()
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
}

/// The channels a `two-positions` forgery changes beyond the write itself: one foreign
/// channel for a writer (whose write is the other position), two for a cover client.
fn two_positions(writer: bool, foreign: u32, second: u32) -> Vec<u32> {
    if writer || second == foreign {
        vec![foreign]
    } else {
        vec![foreign, second]
    }
}

/// Raw bytes for each server: a cover's encoding, damaged one of three ways.
fn garbage(config: &Config, round: Round, rng: &mut SimRng) -> Result<Vec<Msg>, SpectrumError> {
    let c = config.channels as usize;
    let bodies: Vec<UploadBody> = match config.variant() {
        Variant::TwoServer => vdpf::gen_cover(c, config.message_bytes as usize, rng)?
            .into_iter()
            .map(UploadBody::TwoServer)
            .collect(),
        Variant::Multi => {
            multi::gen_cover(config.servers as usize, c, config.message_points(), rng)?
                .into_iter()
                .map(UploadBody::Multi)
                .collect()
        }
    };
    Ok(bodies
        .into_iter()
        .enumerate()
        .map(|(server, mut body)| {
            let form = (round + server as u64) % 3;
            if form == 2 {
                // Well-formed, but a channel short.
                match &mut body {
                    UploadBody::TwoServer(up) => {
                        up.key.seeds.pop();
                    }
                    UploadBody::Multi(up) => {
                        up.key.seeds.pop();
                    }
                }
            }
            let mut bytes = Vec::new();
            // Every upload encodes; an empty frame is garbage too.
            let _ = codec::encode_into(&body, &mut bytes);
            match form {
                0 => bytes.truncate(bytes.len() / 2),
                1 => {
                    // The proof share ends the encoding: its bit part, then its seed part.
                    let at = bytes.len().saturating_sub(64);
                    if let Some(bit) = bytes.get_mut(at..at + 32) {
                        bit.copy_from_slice(&GROUP_ORDER);
                    }
                }
                _ => {}
            }
            Msg::RawUpload {
                round,
                bytes: Arc::new(bytes),
            }
        })
        .collect())
}

crate::named::display_by_name!(Behavior);

impl FromStr for Behavior {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let kind = "Spectrum Byzantine behaviour";
        crate::named::parse_named(s, kind, &Behavior::ALL, Behavior::name, Some("correct"))
    }
}
