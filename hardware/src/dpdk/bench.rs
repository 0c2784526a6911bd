//! The DPDK ring-pair benchmark: one-way messages through the [`Transport`] trait.

use super::eal::{Dpdk, DpdkError};
use super::transport::{DpdkConfig, DpdkTransport};
use crate::transport::{SendError, Transport};
use rehearsal_sim_core::NodeId;
use std::time::{Duration, Instant};

/// Messages sent before the clock starts, to warm caches and the pools.
const WARMUP_MESSAGES: u64 = 10_000;

/// Messages in flight at most (sent, not yet received): enough to fill a burst on both
/// sides, few enough to stay inside the rings.
const IN_FLIGHT_MAX: u64 = 512;

/// Frames the receiver examines per poll.
const POLL_FRAMES_MAX: usize = 256;

/// How long the benchmark waits without any message getting through before it fails.
const STALL_LIMIT: Duration = Duration::from_secs(5);

/// The result of [`bench_ring_pair`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DpdkBenchReport {
    /// What was measured, in words.
    pub setup: String,
    /// Messages timed (after the warm-up).
    pub messages: u64,
    /// Bytes of each message's payload.
    pub payload_bytes: usize,
    /// Frames each message takes on the link.
    pub frames_per_message: u64,
    /// Wall-clock seconds from the first timed send to the last timed receipt.
    pub seconds: f64,
    /// `messages / seconds`.
    pub messages_per_sec: f64,
    /// Payload bytes received in the timed part.
    pub bytes: u64,
    /// `bytes / seconds`.
    pub bytes_per_sec: f64,
}

/// Why [`bench_ring_pair`] failed.
#[derive(Debug, thiserror::Error)]
pub enum DpdkBenchError {
    /// DPDK could not be set up.
    #[error(transparent)]
    Dpdk(#[from] DpdkError),
    /// The transport refused a message for a reason other than a full queue.
    #[error("the transport refused a message: {0}")]
    Send(#[from] SendError),
    /// The transport failed as a whole.
    #[error("the transport failed: {0}")]
    Transport(#[from] crate::transport::TransportError),
    /// Messages stopped getting through.
    #[error("no message got through for {seconds} s ({received} of {expected} received)")]
    Stalled {
        /// Seconds without progress.
        seconds: u64,
        /// Messages received by then.
        received: u64,
        /// Messages expected.
        expected: u64,
    },
    /// A message arrived changed.
    #[error("a message arrived with {got} bytes instead of {expected}")]
    Corrupted {
        /// Its length.
        got: usize,
        /// The length sent.
        expected: usize,
    },
}

/// Sends `messages` one-way messages of `payload_bytes` bytes from one [`DpdkTransport`]
/// to another over a [`Dpdk::ring_pair`], through the [`Transport`] trait, and times them.
///
/// One thread drives both ends, as a node runtime would drive one: send up to a window of
/// messages (each copied into packet buffers), flush (`rte_eth_tx_burst`), poll the other
/// end (`rte_eth_rx_burst`, header checks, a callback per message, buffers freed), repeat.
/// So the figure is the per-message cost of both ends together on one core. Messages
/// larger than one frame are fragmented and reassembled as usual.
///
/// Uses the process's DPDK environment, initialising it with
/// [`EalConfig::default`](super::EalConfig::default) if there is none yet.
pub fn bench_ring_pair(
    messages: u64,
    payload_bytes: usize,
) -> Result<DpdkBenchReport, DpdkBenchError> {
    let dpdk = Dpdk::get_or_init_default()?;
    let (a, b) = dpdk.ring_pair()?;
    let config = |peer| DpdkConfig {
        wait_poll_interval: Duration::ZERO,
        ..DpdkConfig::point_to_point([NodeId(peer)])
    };
    let sender_config = config(1);
    let fragment_bytes = sender_config.frame_bytes_max - super::FRAME_HEADER_BYTES;
    let frames_per_message = payload_bytes.div_ceil(fragment_bytes).max(1) as u64;
    let mut sender = DpdkTransport::new(a, NodeId(0), sender_config)?;
    let mut receiver = DpdkTransport::new(b, NodeId(1), config(0))?;
    let payload: Vec<u8> = (0..payload_bytes).map(|i| i as u8).collect();

    run(&mut sender, &mut receiver, &payload, WARMUP_MESSAGES)?;
    let begun = Instant::now();
    let bytes = run(&mut sender, &mut receiver, &payload, messages)?;
    let seconds = begun.elapsed().as_secs_f64();
    Ok(DpdkBenchReport {
        setup: "DPDK ring pair (rte_eth_from_rings), one thread driving sender and receiver".into(),
        messages,
        payload_bytes,
        frames_per_message,
        seconds,
        messages_per_sec: messages as f64 / seconds,
        bytes,
        bytes_per_sec: bytes as f64 / seconds,
    })
}

/// Pushes `messages` messages from `sender` to `receiver`; returns the bytes received.
fn run(
    sender: &mut impl Transport,
    receiver: &mut impl Transport,
    payload: &[u8],
    messages: u64,
) -> Result<u64, DpdkBenchError> {
    let to = receiver.local_id();
    let mut sent = 0u64;
    let mut received = 0u64;
    let mut bytes = 0u64;
    let mut wrong_length = None;
    let mut last_progress = Instant::now();
    while received < messages {
        while sent < messages && sent - received < IN_FLIGHT_MAX {
            match sender.send(to, payload) {
                Ok(()) => sent += 1,
                Err(SendError::QueueFull(_)) => break,
                Err(error) => return Err(error.into()),
            }
        }
        sender.flush()?;
        let got = receiver.poll(POLL_FRAMES_MAX, &mut |_, message| {
            bytes += message.len() as u64;
            if message.len() != payload.len() {
                wrong_length = Some(message.len());
            }
        })?;
        if let Some(got) = wrong_length {
            return Err(DpdkBenchError::Corrupted {
                got,
                expected: payload.len(),
            });
        }
        if got > 0 {
            received += got as u64;
            last_progress = Instant::now();
        } else if last_progress.elapsed() > STALL_LIMIT {
            return Err(DpdkBenchError::Stalled {
                seconds: STALL_LIMIT.as_secs(),
                received,
                expected: messages,
            });
        }
    }
    Ok(bytes)
}
