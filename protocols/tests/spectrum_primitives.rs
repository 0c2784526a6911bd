//! Spectrum's primitives: the DPF publishes a write's message on its channel and nothing
//! elsewhere, covers publish nothing, the audit passes honest writes and covers and
//! refuses every forgery we know, each audit part catching a forgery no other part does;
//! and everything a server receives is refused, not panicked on, when malformed.

use curve25519_dalek::constants::RISTRETTO_BASEPOINT_POINT;
use curve25519_dalek::ristretto::RistrettoPoint;
use curve25519_dalek::traits::Identity;
use curve25519_dalek::Scalar;
use proptest::prelude::*;
use rehearsal_protocols::spectrum::canonical::{decode_point, decode_scalar, random_scalar};
use rehearsal_protocols::spectrum::dpf::{self, DpfKey};
use rehearsal_protocols::spectrum::embedding::{self, decode_message, encode_message};
use rehearsal_protocols::spectrum::multi::{self, Generators, MultiToken, MultiUpload};
use rehearsal_protocols::spectrum::prg;
use rehearsal_protocols::spectrum::vdpf::{self, AccessKey, AuditParts, ProofShare, Token, Upload};
use rehearsal_protocols::spectrum::SpectrumError;
use rehearsal_sim_core::{derive_rng, SimRng};

// ---- Helpers -----------------------------------------------------------------------------

fn rng(seed: u64) -> SimRng {
    derive_rng(seed, "spectrum primitives test", 0)
}

fn access_keys(channels: usize, rng: &mut SimRng) -> Vec<AccessKey> {
    (0..channels).map(|_| AccessKey::random(rng)).collect()
}

/// What the two servers publish for one key pair: the XOR of their evaluations.
fn published(keys: [&DpfKey; 2]) -> Vec<Vec<u8>> {
    let [a, b] = keys;
    dpf::combine(&a.eval().unwrap(), &b.eval().unwrap()).unwrap()
}

fn tokens(keys: &[AccessKey], message_bytes: usize, uploads: &[Upload; 2]) -> [Token; 2] {
    [
        vdpf::audit_token(keys, message_bytes, &uploads[0]).unwrap(),
        vdpf::audit_token(keys, message_bytes, &uploads[1]).unwrap(),
    ]
}

fn multi_published(
    uploads: &[MultiUpload],
    channels: usize,
    points: usize,
) -> Vec<Vec<RistrettoPoint>> {
    let generators = Generators::new(points);
    let accs: Vec<_> = uploads
        .iter()
        .map(|upload| {
            let mut acc = multi::new_accumulator(channels, points);
            upload.key.eval_into(&generators, &mut acc).unwrap();
            acc
        })
        .collect();
    multi::combine(&accs).unwrap()
}

fn multi_tokens(keys: &[AccessKey], points: usize, uploads: &[MultiUpload]) -> Vec<MultiToken> {
    uploads
        .iter()
        .map(|u| multi::audit_token(keys, points, u).unwrap())
        .collect()
}

/// A (channels, channel < channels) pair.
fn channel_of(channels_max: usize) -> impl Strategy<Value = (usize, usize)> {
    (1..=channels_max).prop_flat_map(|n| (Just(n), 0..n))
}

/// A (channels ≥ 2, channel, other channel ≠ channel) triple.
fn two_channels_of(channels_max: usize) -> impl Strategy<Value = (usize, usize, usize)> {
    (2..=channels_max)
        .prop_flat_map(|n| (Just(n), 0..n, 1..n))
        .prop_map(|(n, i, d)| (n, i, (i + d) % n))
}

const ALL: AuditParts = AuditParts::ALL;
const ONLY_SEED: AuditParts = AuditParts {
    bit: false,
    seed: true,
    cw_hash: false,
};

// ---- PRG ---------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn prg_output_is_a_prefix_of_any_longer_output(seed in any::<[u8; 16]>(), short in 0usize..80, extra in 0usize..80) {
        let long = prg::expand(&seed, short + extra);
        prop_assert_eq!(&prg::expand(&seed, short)[..], &long[..short]);
    }

    #[test]
    fn prg_keystream_xored_twice_restores_the_buffer(seed in any::<[u8; 16]>(), data in prop::collection::vec(any::<u8>(), 1..100)) {
        let mut buf = data.clone();
        prg::xor_keystream(&seed, &mut buf);
        prop_assert_ne!(&buf, &data, "the keystream changed nothing");
        prg::xor_keystream(&seed, &mut buf);
        prop_assert_eq!(buf, data);
    }
}

// ---- Two-server DPF ------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn dpf_write_publishes_the_message_at_its_channel_and_zero_elsewhere(
        (channels, channel) in channel_of(8),
        message in prop::collection::vec(any::<u8>(), 0..64),
        seed in any::<u64>(),
    ) {
        let [a, b] = dpf::gen_write(channels, channel, &message, &mut rng(seed)).unwrap();
        let out = published([&a, &b]);
        for (j, slot) in out.iter().enumerate() {
            if j == channel {
                prop_assert_eq!(slot, &message);
            } else {
                prop_assert!(slot.iter().all(|&byte| byte == 0), "channel {} got {:?}", j, slot);
            }
        }
    }

    #[test]
    fn dpf_write_keys_differ_only_at_the_channel_in_seed_and_bit(
        (channels, channel) in channel_of(8),
        message in prop::collection::vec(any::<u8>(), 0..16),
        seed in any::<u64>(),
    ) {
        let [a, b] = dpf::gen_write(channels, channel, &message, &mut rng(seed)).unwrap();
        for j in 0..channels {
            prop_assert_eq!(a.seeds[j] != b.seeds[j], j == channel);
            prop_assert_eq!(a.bits[j] != b.bits[j], j == channel);
        }
        let expected_cw: Vec<u8> = prg::expand(&a.seeds[channel], message.len())
            .iter()
            .zip(prg::expand(&b.seeds[channel], message.len()))
            .zip(&message)
            .map(|((x, y), m)| x ^ y ^ m)
            .collect();
        prop_assert_eq!(&a.cw, &expected_cw);
        prop_assert_eq!(&b.cw, &expected_cw);
    }

    #[test]
    fn dpf_cover_publishes_zero_everywhere(channels in 1usize..8, message_bytes in 0usize..64, seed in any::<u64>()) {
        let [a, b] = dpf::gen_cover(channels, message_bytes, &mut rng(seed)).unwrap();
        prop_assert_eq!(&a, &b);
        for slot in published([&a, &b]) {
            prop_assert_eq!(slot, vec![0u8; message_bytes]);
        }
    }

    #[test]
    fn dpf_accumulators_publish_every_write_and_ignore_covers(
        (channels, first, second) in two_channels_of(6),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let writes = [
            dpf::gen_write(channels, first, b"first!", &mut rng).unwrap(),
            dpf::gen_write(channels, second, b"second", &mut rng).unwrap(),
            dpf::gen_cover(channels, 6, &mut rng).unwrap(),
        ];
        let mut acc_a = dpf::new_accumulator(channels, 6);
        let mut acc_b = dpf::new_accumulator(channels, 6);
        for [a, b] in &writes {
            a.eval_into(&mut acc_a).unwrap();
            b.eval_into(&mut acc_b).unwrap();
        }
        let out = dpf::combine(&acc_a, &acc_b).unwrap();
        prop_assert_eq!(&out[first], b"first!");
        prop_assert_eq!(&out[second], b"second");
        let others = (0..channels).filter(|&j| j != first && j != second);
        for j in others {
            prop_assert_eq!(&out[j], &[0u8; 6]);
        }
    }

    #[test]
    fn same_rng_seed_gives_the_same_uploads(
        (channels, channel) in channel_of(6),
        seed in any::<u64>(),
    ) {
        let mut keys_rng = rng(seed ^ 1);
        let keys = access_keys(channels, &mut keys_rng);
        let once = vdpf::gen_write(&keys[channel], channels, channel, b"m", &mut rng(seed)).unwrap();
        let again = vdpf::gen_write(&keys[channel], channels, channel, b"m", &mut rng(seed)).unwrap();
        prop_assert_eq!(&once, &again);
        let other = vdpf::gen_write(&keys[channel], channels, channel, b"m", &mut rng(seed.wrapping_add(1))).unwrap();
        prop_assert_ne!(&once, &other);
    }
}

#[test]
fn dpf_refuses_impossible_requests() {
    let mut rng = rng(1);
    assert_eq!(
        dpf::gen_write(0, 0, b"m", &mut rng),
        Err(SpectrumError::NoChannels)
    );
    assert_eq!(
        dpf::gen_write(3, 3, b"m", &mut rng),
        Err(SpectrumError::ChannelOutOfRange {
            channel: 3,
            channels: 3
        })
    );
    assert_eq!(
        dpf::gen_cover(0, 4, &mut rng),
        Err(SpectrumError::NoChannels)
    );
}

#[test]
fn malformed_keys_are_refused_and_leave_the_accumulator_untouched() {
    let mut rng = rng(2);
    let [key, _] = dpf::gen_write(4, 1, b"abcd", &mut rng).unwrap();
    assert_eq!(key.validate(4, 4), Ok(()));

    let mut truncated_seeds = key.clone();
    truncated_seeds.seeds.pop();
    let mut oversized_bits = key.clone();
    oversized_bits.bits.push(true);
    let mut long_cw = key.clone();
    long_cw.cw.push(0);
    let cases = [
        (
            truncated_seeds,
            SpectrumError::WrongChannelCount {
                field: "DpfKey.seeds",
                expected: 4,
                got: 3,
            },
        ),
        (
            oversized_bits,
            SpectrumError::WrongChannelCount {
                field: "DpfKey.bits",
                expected: 4,
                got: 5,
            },
        ),
        (
            long_cw,
            SpectrumError::WrongMessageLength {
                field: "DpfKey.cw",
                expected: 4,
                got: 5,
            },
        ),
    ];
    for (bad, error) in cases {
        assert_eq!(bad.validate(4, 4), Err(error.clone()));
        let mut acc = dpf::new_accumulator(4, 4);
        assert!(bad.eval_into(&mut acc).is_err(), "{error}");
        assert_eq!(
            acc,
            dpf::new_accumulator(4, 4),
            "a refused key changed the accumulator"
        );
    }

    // A good key and an accumulator of another shape.
    let mut acc = dpf::new_accumulator(5, 4);
    assert!(matches!(
        key.eval_into(&mut acc),
        Err(SpectrumError::WrongChannelCount { .. })
    ));
    let mut acc = dpf::new_accumulator(4, 3);
    assert!(matches!(
        key.eval_into(&mut acc),
        Err(SpectrumError::WrongMessageLength { .. })
    ));
}

// ---- Two-server audit: completeness ----------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn audit_accepts_honest_writes(
        (channels, channel) in channel_of(8),
        message in prop::collection::vec(any::<u8>(), 0..32),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let uploads = vdpf::gen_write(&keys[channel], channels, channel, &message, &mut rng).unwrap();
        prop_assert_eq!(vdpf::audit(&keys, message.len(), &uploads), Ok(true));
        prop_assert_eq!(&published([&uploads[0].key, &uploads[1].key])[channel], &message);
    }

    #[test]
    fn audit_accepts_covers(channels in 1usize..8, message_bytes in 0usize..32, seed in any::<u64>()) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let uploads = vdpf::gen_cover(channels, message_bytes, &mut rng).unwrap();
        prop_assert_eq!(vdpf::audit(&keys, message_bytes, &uploads), Ok(true));
    }
}

// ---- Two-server audit: soundness ----------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn audit_rejects_a_write_made_with_another_channels_key(
        (channels, channel, owned) in two_channels_of(8),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let uploads = vdpf::gen_write(&keys[owned], channels, channel, b"spam", &mut rng).unwrap();
        prop_assert_eq!(vdpf::audit(&keys, 4, &uploads), Ok(false));
    }

    #[test]
    fn audit_rejects_a_write_made_with_a_made_up_key(
        (channels, channel) in channel_of(8),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let guess = AccessKey::random(&mut rng);
        let uploads = vdpf::gen_write(&guess, channels, channel, b"spam", &mut rng).unwrap();
        prop_assert_eq!(vdpf::audit(&keys, 4, &uploads), Ok(false));
    }

    #[test]
    fn audit_rejects_keys_that_differ_nowhere_under_a_write_proof(
        (channels, channel) in channel_of(8),
        seed in any::<u64>(),
    ) {
        // A write proof over identical keys: the proof shares differ by the write's
        // difference, which the keys no longer make. (Identical keys with a cover proof
        // pass, and publish nothing.)
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let mut uploads = vdpf::gen_write(&keys[channel], channels, channel, b"m", &mut rng).unwrap();
        uploads[1].key = uploads[0].key.clone();
        prop_assert_eq!(vdpf::audit(&keys, 1, &uploads), Ok(false));
    }

    #[test]
    fn audit_rejects_keys_that_differ_at_a_second_channel(
        (channels, channel, other) in two_channels_of(8),
        change_seed in any::<bool>(),
        seed in any::<u64>(),
    ) {
        // The owner of `channel` writes there honestly and also touches `other`.
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let mut uploads = vdpf::gen_write(&keys[channel], channels, channel, b"m", &mut rng).unwrap();
        if change_seed {
            uploads[1].key.seeds[other][0] ^= 1;
        } else {
            uploads[1].key.bits[other] = !uploads[1].key.bits[other];
        }
        prop_assert_eq!(vdpf::audit(&keys, 1, &uploads), Ok(false));
    }

    #[test]
    fn audit_rejects_a_correction_word_changed_on_one_server(
        (channels, channel) in channel_of(8),
        byte in 0usize..8,
        flip in 1u8..=255,
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let mut uploads = vdpf::gen_write(&keys[channel], channels, channel, b"8 bytes!", &mut rng).unwrap();
        uploads[0].key.cw[byte] ^= flip;
        prop_assert_eq!(vdpf::audit(&keys, 8, &uploads), Ok(false));
    }
}

#[test]
fn audit_refuses_truncated_and_oversized_fields() {
    let mut rng = rng(3);
    let keys = access_keys(4, &mut rng);
    let uploads = vdpf::gen_write(&keys[2], 4, 2, b"abc", &mut rng).unwrap();
    let mut cases: Vec<Upload> = Vec::new();
    let mut bad = uploads[0].clone();
    bad.key.seeds.truncate(3);
    cases.push(bad);
    let mut bad = uploads[0].clone();
    bad.key.bits.push(false);
    cases.push(bad);
    let mut bad = uploads[0].clone();
    bad.key.cw.truncate(2);
    cases.push(bad);
    let mut bad = uploads[0].clone();
    bad.key.cw.push(0);
    cases.push(bad);
    for bad in &cases {
        assert!(bad.validate(4, 3).is_err());
        assert!(vdpf::audit_token(&keys, 3, bad).is_err());
    }
    // The same write, oversized consistently on both servers, is refused too.
    let mut both = uploads.clone();
    both[0].key.cw.push(7);
    both[1].key.cw.push(7);
    assert!(vdpf::audit(&keys, 3, &both).is_err());
    // And access keys for another channel count.
    assert!(vdpf::audit(&keys[..3], 3, &uploads).is_err());
    assert_eq!(vdpf::audit(&keys, 3, &uploads), Ok(true));
}

// ---- Two-server audit: each token part is needed --------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// A client without channel i's key turns a cover into a write of its choice by
    /// flipping the bit at i: seeds stay equal, both servers get the same word. Only the
    /// bit part sees it; an audit comparing only the seed part lets it through.
    #[test]
    fn only_the_bit_part_catches_a_bit_flip_at_a_foreign_channel(
        (channels, channel) in channel_of(8),
        forged in prop::collection::vec(any::<u8>(), 1..16),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let mut uploads = vdpf::gen_cover(channels, forged.len(), &mut rng).unwrap();
        uploads[1].key.bits[channel] = !uploads[1].key.bits[channel];
        uploads[0].key.cw.clone_from(&forged);
        uploads[1].key.cw.clone_from(&forged);

        prop_assert_eq!(&published([&uploads[0].key, &uploads[1].key])[channel], &forged);
        let [a, b] = tokens(&keys, forged.len(), &uploads);
        prop_assert!(!a.matches(&b));
        prop_assert!(a.matches_parts(&b, AuditParts::WITHOUT_BIT));
        prop_assert!(a.matches_parts(&b, ONLY_SEED));
    }

    /// A client without channel i's key jams it by changing the seed at i: bits and word
    /// stay equal. Only the seed part sees it.
    #[test]
    fn only_the_seed_part_catches_a_seed_change_at_a_foreign_channel(
        (channels, channel) in channel_of(8),
        flip in 1u8..=255,
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let mut uploads = vdpf::gen_cover(channels, 16, &mut rng).unwrap();
        uploads[1].key.seeds[channel][0] ^= flip;

        prop_assert_ne!(&published([&uploads[0].key, &uploads[1].key])[channel], &vec![0u8; 16]);
        let [a, b] = tokens(&keys, 16, &uploads);
        prop_assert!(!a.matches(&b));
        prop_assert!(a.matches_parts(&b, AuditParts::WITHOUT_SEED));
    }

    /// A client with no key at all sends the servers different correction words over
    /// identical keys whose bit is set at i only: channel i publishes the words' XOR.
    /// Only the hash sees it; an audit that skips it lets it through.
    #[test]
    fn only_the_cw_hash_catches_different_words_on_the_two_servers(
        (channels, channel) in channel_of(8),
        forged in prop::collection::vec(any::<u8>(), 1..16).prop_filter("nonzero", |m| m.iter().any(|&b| b != 0)),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let mut uploads = vdpf::gen_cover(channels, forged.len(), &mut rng).unwrap();
        for upload in &mut uploads {
            upload.key.bits = (0..channels).map(|j| j == channel).collect();
        }
        for (cw, m) in uploads[1].key.cw.iter_mut().zip(&forged) {
            *cw ^= m;
        }

        let out = published([&uploads[0].key, &uploads[1].key]);
        prop_assert_eq!(&out[channel], &forged);
        let [a, b] = tokens(&keys, forged.len(), &uploads);
        prop_assert!(!a.matches(&b));
        prop_assert!(a.matches_parts(&b, AuditParts::WITHOUT_CW_HASH));
    }
}

// ---- Wire encoding ------------------------------------------------------------------------------

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    bincode::serde::encode_to_vec(value, bincode::config::standard()).unwrap()
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    bincode::serde::decode_from_slice(bytes, bincode::config::standard())
        .map(|(value, _)| value)
        .map_err(|error| error.to_string())
}

/// ℓ, the group order, little-endian: the smallest non-canonical scalar encoding.
const GROUP_ORDER: [u8; 32] = [
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
];

#[test]
fn uploads_and_tokens_round_trip_through_bincode() {
    let mut rng = rng(4);
    let keys = access_keys(3, &mut rng);
    let uploads = vdpf::gen_write(&keys[0], 3, 0, b"wire", &mut rng).unwrap();
    let token = vdpf::audit_token(&keys, 4, &uploads[0]).unwrap();
    assert_eq!(
        decode::<Upload>(&encode(&uploads[1])),
        Ok(uploads[1].clone())
    );
    assert_eq!(decode::<Token>(&encode(&token)), Ok(token));
    assert_eq!(decode::<AccessKey>(&encode(&keys[2])), Ok(keys[2]));
    let multi_uploads = multi::gen_cover(2, 2, 1, &mut rng).unwrap();
    assert_eq!(
        decode::<MultiUpload>(&encode(&multi_uploads[0])),
        Ok(multi_uploads[0].clone())
    );
}

#[test]
fn non_canonical_scalars_are_refused_naming_the_field() {
    assert_eq!(
        decode_scalar("ProofShare.bit", GROUP_ORDER),
        Err(SpectrumError::NonCanonicalScalar {
            field: "ProofShare.bit"
        })
    );
    let mut below = GROUP_ORDER;
    below[0] -= 1;
    assert_eq!(decode_scalar("x", below), Ok(-Scalar::ONE));

    let share = ProofShare {
        bit: Scalar::ONE,
        seed: Scalar::ONE,
    };
    let bytes = encode(&share);
    assert_eq!(bytes.len(), 64, "two 32-byte scalars");
    let mut bad_bit = bytes.clone();
    bad_bit[..32].copy_from_slice(&GROUP_ORDER);
    let error = decode::<ProofShare>(&bad_bit).unwrap_err();
    assert!(
        error.contains("ProofShare.bit") && error.contains("canonical"),
        "{error}"
    );
    let mut bad_seed = bytes.clone();
    bad_seed[32..].copy_from_slice(&[0xff; 32]);
    let error = decode::<ProofShare>(&bad_seed).unwrap_err();
    assert!(error.contains("ProofShare.seed"), "{error}");

    let token = Token {
        bit: Scalar::ONE,
        seed: Scalar::ONE,
        cw_hash: [0; 32],
    };
    let mut bad_token = encode(&token);
    bad_token[32..64].copy_from_slice(&GROUP_ORDER);
    let error = decode::<Token>(&bad_token).unwrap_err();
    assert!(error.contains("Token.seed"), "{error}");
}

#[test]
fn invalid_points_are_refused_naming_the_field() {
    // All-ones is not a canonical field element, so no point encodes to it.
    assert_eq!(
        decode_point("MultiKey.cw", [0xff; 32]),
        Err(SpectrumError::InvalidPoint {
            field: "MultiKey.cw"
        })
    );
    let mut rng = rng(5);
    let [upload, _] =
        <[MultiUpload; 2]>::try_from(multi::gen_cover(2, 1, 1, &mut rng).unwrap()).unwrap();
    let bytes = encode(&upload);
    let cw = upload.key.cw[0].compress().to_bytes();
    let at = bytes.windows(32).position(|window| window == cw).unwrap();
    let mut bad = bytes.clone();
    bad[at..at + 32].copy_from_slice(&[0xff; 32]);
    let error = decode::<MultiUpload>(&bad).unwrap_err();
    assert!(error.contains("MultiKey.cw"), "{error}");
}

// ---- Multi-server: embedding and PRG ---------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn embedding_round_trips(message in prop::collection::vec(any::<u8>(), 0..90)) {
        let points = encode_message(&message).unwrap();
        prop_assert_eq!(points.len(), embedding::points_for_bytes(message.len()));
        prop_assert_eq!(decode_message(&points).unwrap(), message);
    }

    #[test]
    fn embedding_is_injective(
        a in prop::collection::vec(any::<u8>(), 0..60),
        b in prop::collection::vec(any::<u8>(), 0..60),
    ) {
        prop_assume!(a != b);
        prop_assert_ne!(encode_message(&a).unwrap(), encode_message(&b).unwrap());
    }

    #[test]
    fn multi_prg_is_seed_homomorphic(seed in any::<u64>(), points in 1usize..4) {
        let mut rng = rng(seed);
        let (x, y) = (random_scalar(&mut rng), random_scalar(&mut rng));
        let generators = Generators::new(points);
        let sum: Vec<RistrettoPoint> =
            generators.expand(&x).iter().zip(generators.expand(&y)).map(|(p, q)| p + q).collect();
        prop_assert_eq!(sum, generators.expand(&(x + y)));
        prop_assert_ne!(generators.expand(&x), generators.expand(&y));
    }
}

#[test]
fn embedding_refuses_points_that_encode_no_chunk() {
    // The first multiple of the base point whose encoding has a nonzero last byte.
    let point = (1u64..)
        .map(|k| RISTRETTO_BASEPOINT_POINT * Scalar::from(k))
        .find(|p| p.compress().to_bytes()[31] != 0)
        .unwrap();
    let message = encode_message(b"ok").unwrap();
    assert_eq!(
        decode_message(&[message[0], point]),
        Err(SpectrumError::NotAMessage { point: 1 })
    );
}

#[test]
fn generators_are_distinct_and_fixed() {
    let generators = Generators::new(3).expand(&Scalar::ONE);
    assert_ne!(generators[0], generators[1]);
    assert_ne!(generators[1], generators[2]);
    assert_eq!(Generators::new(2).expand(&Scalar::ONE), generators[..2]);
}

// ---- Multi-server: DPF and audit ---------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(12))]

    #[test]
    fn multi_write_publishes_the_message_at_its_channel_and_identity_elsewhere(
        servers in 2usize..5,
        (channels, channel) in channel_of(4),
        message in prop::collection::vec(any::<u8>(), 0..40),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let points = encode_message(&message).unwrap();
        let uploads = multi::gen_write(servers, &keys[channel], channels, channel, &points, &mut rng).unwrap();
        prop_assert_eq!(uploads.len(), servers);
        let out = multi_published(&uploads, channels, points.len());
        for (j, slot) in out.iter().enumerate() {
            if j == channel {
                prop_assert_eq!(decode_message(slot).unwrap(), message.clone());
            } else {
                prop_assert!(slot.iter().all(|p| *p == RistrettoPoint::identity()));
            }
        }
        let tokens = multi_tokens(&keys, points.len(), &uploads);
        prop_assert!(multi::check_audit(&tokens, ALL));
    }

    #[test]
    fn multi_cover_publishes_identity_and_passes_the_audit(
        servers in 2usize..5,
        channels in 1usize..4,
        points in 1usize..3,
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let uploads = multi::gen_cover(servers, channels, points, &mut rng).unwrap();
        for slot in multi_published(&uploads, channels, points) {
            prop_assert!(slot.iter().all(|p| *p == RistrettoPoint::identity()));
        }
        prop_assert!(multi::check_audit(&multi_tokens(&keys, points, &uploads), ALL));
    }

    #[test]
    fn multi_audit_rejects_a_write_with_another_channels_key(
        servers in 2usize..4,
        (channels, channel, owned) in two_channels_of(4),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let points = encode_message(b"spam").unwrap();
        let uploads = multi::gen_write(servers, &keys[owned], channels, channel, &points, &mut rng).unwrap();
        prop_assert!(!multi::check_audit(&multi_tokens(&keys, 1, &uploads), ALL));
    }

    #[test]
    fn multi_audit_rejects_a_second_channel_or_a_proof_not_summing_to_zero(
        servers in 2usize..4,
        (channels, channel, other) in two_channels_of(4),
        server in 0usize..4,
        which in 0u8..4,
        seed in any::<u64>(),
    ) {
        let server = server % servers;
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let points = encode_message(b"m").unwrap();
        let mut uploads = multi::gen_write(servers, &keys[channel], channels, channel, &points, &mut rng).unwrap();
        let delta = random_scalar(&mut rng);
        let upload = &mut uploads[server];
        match which {
            0 => upload.key.bits[other] += Scalar::ONE,
            1 => upload.key.seeds[other] += delta,
            2 => upload.proof.bit += delta,
            _ => upload.proof.seed += delta,
        }
        prop_assert!(!multi::check_audit(&multi_tokens(&keys, 1, &uploads), ALL));
    }

    /// The multi-server forgeries, one per token part, each caught by that part alone.
    #[test]
    fn multi_each_token_part_catches_a_forgery_no_other_part_does(
        servers in 2usize..4,
        (channels, channel) in channel_of(3),
        seed in any::<u64>(),
    ) {
        let mut rng = rng(seed);
        let keys = access_keys(channels, &mut rng);
        let forged = encode_message(b"forged").unwrap();
        let cover = multi::gen_cover(servers, channels, 1, &mut rng).unwrap();

        // Bit part: reconstructed bit 1 at a foreign channel, word = forged message.
        let mut uploads = cover.clone();
        uploads[0].key.bits[channel] += Scalar::ONE;
        for upload in &mut uploads {
            upload.key.cw.clone_from(&forged);
        }
        prop_assert_eq!(&multi_published(&uploads, channels, 1)[channel], &forged);
        let tokens = multi_tokens(&keys, 1, &uploads);
        prop_assert!(!multi::check_audit(&tokens, ALL));
        prop_assert!(multi::check_audit(&tokens, AuditParts::WITHOUT_BIT));

        // Seed part: reconstructed seed nonzero at a foreign channel.
        let mut uploads = cover.clone();
        uploads[0].key.seeds[channel] += random_scalar(&mut rng);
        prop_assert_ne!(multi_published(&uploads, channels, 1)[channel][0], RistrettoPoint::identity());
        let tokens = multi_tokens(&keys, 1, &uploads);
        prop_assert!(!multi::check_audit(&tokens, ALL));
        prop_assert!(multi::check_audit(&tokens, AuditParts::WITHOUT_SEED));

        // Correction-word hash: server 0's word differs by d; its bit share b at the
        // channel publishes b·d there, so d = forged / b writes the forged message.
        let mut uploads = cover.clone();
        let bit_share = uploads[0].key.bits[channel];
        prop_assume!(bit_share != Scalar::ZERO);
        uploads[0].key.cw[0] += forged[0] * bit_share.invert();
        prop_assert_eq!(&multi_published(&uploads, channels, 1)[channel], &forged);
        let tokens = multi_tokens(&keys, 1, &uploads);
        prop_assert!(!multi::check_audit(&tokens, ALL));
        prop_assert!(multi::check_audit(&tokens, AuditParts::WITHOUT_CW_HASH));
    }
}

#[test]
fn multi_refuses_bad_shapes_and_lone_tokens() {
    let mut rng = rng(6);
    let keys = access_keys(3, &mut rng);
    let points = encode_message(b"m").unwrap();
    assert_eq!(
        multi::gen_write(1, &keys[0], 3, 0, &points, &mut rng),
        Err(SpectrumError::TooFewServers { servers: 1 })
    );
    assert_eq!(
        multi::gen_write(2, &keys[0], 3, 3, &points, &mut rng),
        Err(SpectrumError::ChannelOutOfRange {
            channel: 3,
            channels: 3
        })
    );
    assert_eq!(
        multi::gen_cover(2, 0, 1, &mut rng),
        Err(SpectrumError::NoChannels)
    );

    let uploads = multi::gen_write(2, &keys[1], 3, 1, &points, &mut rng).unwrap();
    let mut short = uploads[0].clone();
    short.key.seeds.pop();
    let mut long_cw = uploads[0].clone();
    long_cw.key.cw.push(RistrettoPoint::identity());
    for bad in [&short, &long_cw] {
        assert!(bad.validate(3, 1).is_err());
        assert!(multi::audit_token(&keys, 1, bad).is_err());
        let mut acc = multi::new_accumulator(3, 1);
        assert!(bad.key.eval_into(&Generators::new(1), &mut acc).is_err());
        assert_eq!(acc, multi::new_accumulator(3, 1));
    }

    let tokens = multi_tokens(&keys, 1, &uploads);
    assert!(multi::check_audit(&tokens, ALL));
    assert!(
        !multi::check_audit(&tokens[..1], ALL),
        "one token is no audit"
    );
    assert!(!multi::check_audit(&[], ALL));
}
