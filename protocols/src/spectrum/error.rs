//! Why a Spectrum value a server received (or a request to build one) is refused.

/// Why a key, proof, token, message or accumulator is refused. Every check a server makes
/// on what a client sent ends here rather than in a panic: the values come from outside.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpectrumError {
    /// A per-channel vector has the wrong length for this deployment.
    #[error("{field} covers {got} channels, but there are {expected}")]
    WrongChannelCount {
        /// Which value, e.g. `DpfKey.seeds`.
        field: &'static str,
        /// The deployment's channel count.
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// A message-sized value (correction word, accumulator slot) has the wrong length.
    #[error("{field} is {got} long, but messages are {expected} long")]
    WrongMessageLength {
        /// Which value, e.g. `DpfKey.cw`.
        field: &'static str,
        /// The deployment's message length (bytes, or group elements in [`super::multi`]).
        expected: usize,
        /// The length received.
        got: usize,
    },
    /// 32 bytes that are not the canonical encoding of a scalar (not reduced mod ℓ).
    /// Accepting them would give one scalar two encodings, and a hash of the encoding
    /// two values.
    #[error("{field} is not a canonical scalar encoding (its value is not below the group order)")]
    NonCanonicalScalar {
        /// Which value, e.g. `ProofShare.bit`.
        field: &'static str,
    },
    /// 32 bytes that are not the encoding of a Ristretto point.
    #[error("{field} is not the encoding of a Ristretto point")]
    InvalidPoint {
        /// Which value, e.g. `MultiKey.cw`.
        field: &'static str,
    },
    /// A write to a channel that does not exist.
    #[error("channel {channel} does not exist: there are {channels} channels")]
    ChannelOutOfRange {
        /// The channel asked for.
        channel: usize,
        /// How many channels there are.
        channels: usize,
    },
    /// A deployment without channels has nothing to write to.
    #[error("Spectrum needs at least one channel")]
    NoChannels,
    /// The multi-server variant secret-shares among at least two servers.
    #[error("the multi-server variant needs at least 2 servers, got {servers}")]
    TooFewServers {
        /// The server count asked for.
        servers: usize,
    },
    /// A message bytes → group elements encoding found no valid point for one chunk
    /// (each attempt succeeds with probability about 1/4 and 2^15 are tried, so this does
    /// not happen in practice; it is an error rather than a panic all the same).
    #[error("chunk {chunk} of the message has no Ristretto point encoding")]
    Unencodable {
        /// Which 28-byte chunk.
        chunk: usize,
    },
    /// A group element that no message chunk encodes to (e.g. a sum of honest writes'
    /// elements, after a collision, or a forged write).
    #[error("group element {point} of the message is not the encoding of a chunk")]
    NotAMessage {
        /// Which element.
        point: usize,
    },
    /// An upload for the other DPF variant: a `k`-server share sent to a two-server
    /// deployment, or the reverse.
    #[error("a {got} upload sent to a {expected} deployment")]
    WrongVariant {
        /// The deployment's variant, e.g. `2-server`.
        expected: &'static str,
        /// The upload's.
        got: &'static str,
    },
}
