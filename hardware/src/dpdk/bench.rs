//! The DPDK ring-pair benchmark: one-way messages through the [`Transport`] trait, and
//! the same messages through the bare burst calls, as the baseline it is measured against.

use super::eal::{Dpdk, DpdkError, DpdkPort};
use super::frame::{FrameHeader, MacAddress, FRAME_HEADER_BYTES};
use super::sys::{self, Mbuf, Pool};
use super::transport::{start_port, DpdkConfig, DpdkTransport};
use crate::transport::{SendError, Transport};
use rehearsal_sim_core::NodeId;
use std::ops::Range;
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

/// The timed messages are split into this many rounds, each running the transport and
/// the raw baseline one after the other (which goes first alternates), so that both see
/// the same machine: on a shared machine, a burst of load from elsewhere would otherwise
/// fall on one of the two only.
const ROUNDS: u64 = 10;

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
    /// The same messages through the bare burst calls, in the same run.
    pub raw: DpdkRawBaseline,
    /// `messages_per_sec / raw.messages_per_sec`: the share of the raw rate the
    /// [`Transport`] trait keeps.
    pub transport_over_raw: f64,
}

/// The raw baseline of [`bench_ring_pair`]: the transport's messages, frame for frame,
/// through `rte_pktmbuf_alloc_bulk`, `rte_eth_tx_burst`, `rte_eth_rx_burst` and
/// `rte_pktmbuf_free_bulk` alone.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DpdkRawBaseline {
    /// What was measured, in words.
    pub setup: String,
    /// Messages timed (after the warm-up); each is `frames_per_message` frames.
    pub messages: u64,
    /// Frames received in the timed part.
    pub frames: u64,
    /// Wall-clock seconds of the timed part.
    pub seconds: f64,
    /// `messages / seconds`.
    pub messages_per_sec: f64,
    /// Payload bytes received in the timed part (frame lengths less the headers).
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
    /// A frame of the raw baseline arrived changed.
    #[error("a frame of the raw baseline arrived with {got} bytes instead of {expected}")]
    RawFrameCorrupted {
        /// Its length (0 if it was chained over several buffers).
        got: usize,
        /// The length sent.
        expected: usize,
    },
    /// Nothing to measure.
    #[error("the benchmark needs at least one message")]
    NoMessages,
}

/// Sends `messages` one-way messages of `payload_bytes` bytes from one [`DpdkTransport`]
/// to another over a [`Dpdk::ring_pair`], through the [`Transport`] trait, and times them;
/// then, in the same run, the same messages over a second ring pair through the bare burst
/// calls (the [`DpdkRawBaseline`]), and compares the two.
///
/// One thread drives both ends, as a node runtime would drive one: send up to a window of
/// messages (each copied into packet buffers), flush (`rte_eth_tx_burst`), poll the other
/// end (`rte_eth_rx_burst`, header checks, a callback per message, buffers freed), repeat.
/// So the figure is the per-message cost of both ends together on one core. Messages
/// larger than one frame are fragmented and reassembled as usual.
///
/// The raw baseline does what is left of that without the transport: the same frames
/// (same lengths, same payload bytes copied in), the same window of messages in flight,
/// the same transmit-queue bound and the same bursts, but buffers allocated and freed in
/// bulk, each frame's header copied from one encoded per fragment position at the start
/// instead of encoded per message, and on receipt only each frame's length read and
/// checked: no header parsing, no peer lookup, no reassembly, no callback.
///
/// Both warm up first; then the timed messages run in 10 rounds, the transport and the
/// baseline one after the other in each (alternating which goes first), and each side's
/// time is the sum of its rounds.
///
/// Uses the process's DPDK environment, initialising it with
/// [`EalConfig::default`](super::EalConfig::default) if there is none yet.
pub fn bench_ring_pair(
    messages: u64,
    payload_bytes: usize,
) -> Result<DpdkBenchReport, DpdkBenchError> {
    if messages == 0 {
        return Err(DpdkBenchError::NoMessages);
    }
    let dpdk = Dpdk::get_or_init_default()?;
    let (a, b) = dpdk.ring_pair()?;
    let config = |peer| DpdkConfig {
        wait_poll_interval: Duration::ZERO,
        ..DpdkConfig::point_to_point([NodeId(peer)])
    };
    let sender_config = config(1);
    if payload_bytes > sender_config.message_bytes_max {
        return Err(DpdkBenchError::Send(SendError::FrameTooLarge {
            frame_bytes: payload_bytes,
            frame_bytes_max: sender_config.message_bytes_max,
        }));
    }
    let fragment_bytes = sender_config.frame_bytes_max - FRAME_HEADER_BYTES;
    let tx_queue_frames_max = sender_config.tx_queue_frames_max;
    let rx_burst_frames = sender_config.rx_burst_frames;
    let pool_mbufs = sender_config.pool_mbufs;
    let mut sender = DpdkTransport::new(a, NodeId(0), sender_config)?;
    let mut receiver = DpdkTransport::new(b, NodeId(1), config(0))?;
    let payload: Vec<u8> = (0..payload_bytes).map(|i| i as u8).collect();
    let (c, d) = dpdk.ring_pair()?;
    let mut raw = RawLink::new(
        c,
        d,
        pool_mbufs,
        RawShape::of(payload_bytes, fragment_bytes),
        tx_queue_frames_max,
        rx_burst_frames,
    )?;
    let frames_per_message = raw.shape.fragments.len() as u64;

    run(&mut sender, &mut receiver, &payload, WARMUP_MESSAGES)?;
    raw.run(&payload, WARMUP_MESSAGES)?;
    let mut seconds = 0.0;
    let mut bytes = 0;
    let mut raw_seconds = 0.0;
    let mut raw_bytes = 0;
    for round in 0..ROUNDS {
        let count = messages / ROUNDS + u64::from(round < messages % ROUNDS);
        // The transport goes first in even rounds, the baseline in odd ones.
        for transport_turn in [round % 2 == 0, round % 2 != 0] {
            let begun = Instant::now();
            if transport_turn {
                bytes += run(&mut sender, &mut receiver, &payload, count)?;
                seconds += begun.elapsed().as_secs_f64();
            } else {
                raw_bytes += raw.run(&payload, count)?;
                raw_seconds += begun.elapsed().as_secs_f64();
            }
        }
    }
    let messages_per_sec = messages as f64 / seconds;
    let raw_messages_per_sec = messages as f64 / raw_seconds;
    Ok(DpdkBenchReport {
        setup: format!(
            "DPDK ring pair (rte_eth_from_rings), one thread driving sender and receiver; \
             the raw baseline on a second ring pair in the same process, interleaved with \
             the transport in {ROUNDS} rounds"
        ),
        messages,
        payload_bytes,
        frames_per_message,
        seconds,
        messages_per_sec,
        bytes,
        bytes_per_sec: bytes as f64 / seconds,
        raw: DpdkRawBaseline {
            setup: format!(
                "rte_pktmbuf_alloc_bulk, header ({FRAME_HEADER_BYTES} bytes, encoded once per \
                 fragment position) and payload copied in, rte_eth_tx_burst, \
                 rte_eth_rx_burst, frame length checked, rte_pktmbuf_free_bulk; no Transport \
                 trait"
            ),
            messages,
            frames: messages * frames_per_message,
            seconds: raw_seconds,
            messages_per_sec: raw_messages_per_sec,
            bytes: raw_bytes,
            bytes_per_sec: raw_bytes as f64 / raw_seconds,
        },
        transport_over_raw: messages_per_sec / raw_messages_per_sec,
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
    let mut stall = StallWatch::new();
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
        received += got as u64;
        stall.check(got > 0, received, messages)?;
    }
    Ok(bytes)
}

/// Fails a run in which nothing got through for [`STALL_LIMIT`].
struct StallWatch {
    last_progress: Instant,
}

impl StallWatch {
    fn new() -> Self {
        StallWatch {
            last_progress: Instant::now(),
        }
    }

    /// Notes whether the last turn moved anything; an error if nothing has moved for
    /// [`STALL_LIMIT`], with the messages `received` by then of the `expected`.
    fn check(&mut self, moved: bool, received: u64, expected: u64) -> Result<(), DpdkBenchError> {
        if moved {
            self.last_progress = Instant::now();
        } else if self.last_progress.elapsed() > STALL_LIMIT {
            return Err(DpdkBenchError::Stalled {
                seconds: STALL_LIMIT.as_secs(),
                received,
                expected,
            });
        }
        Ok(())
    }
}

/// The frames of one message in the raw baseline: per fragment, the header it carries
/// and the range of the payload after it, exactly as the transport splits a message.
struct RawShape {
    fragments: Vec<([u8; FRAME_HEADER_BYTES], Range<usize>)>,
}

impl RawShape {
    fn of(payload_bytes: usize, fragment_bytes: usize) -> Self {
        let mut fragments = Vec::new();
        let mut offset = 0;
        // An empty message still takes one (empty) frame.
        while offset < payload_bytes || fragments.is_empty() {
            let end = (offset + fragment_bytes).min(payload_bytes);
            let header = FrameHeader {
                src: NodeId(0),
                dst: NodeId(1),
                message_id: 0,
                message_bytes: payload_bytes as u32,
                fragment_offset: offset as u32,
                fragment_bytes: (end - offset) as u16,
            };
            fragments.push((
                header.encode(MacAddress::BROADCAST, MacAddress::default()),
                offset..end,
            ));
            offset = end;
        }
        RawShape { fragments }
    }
}

/// One end of the raw baseline: a started port with its own pool, as a transport has, and
/// the buffers on their way through it.
struct RawEnd {
    /// Frames made and not yet taken by the port (sender), or received and not yet freed
    /// (receiver).
    queue: Vec<Mbuf>,
    // The port is released before the pool is dropped (fields drop in order).
    port: DpdkPort,
    pool: Pool,
}

impl RawEnd {
    fn new(port: DpdkPort, pool_mbufs: u32, queue_frames: usize) -> Result<Self, DpdkError> {
        let (pool, _mac) = start_port(&port, pool_mbufs)?;
        Ok(RawEnd {
            queue: Vec::with_capacity(queue_frames),
            port,
            pool,
        })
    }
}

impl Drop for RawEnd {
    fn drop(&mut self) {
        // Buffers go back to their pool before the port is released and the pool retired.
        let queued = self.queue.len();
        sys::free_front(&mut self.queue, queued);
    }
}

/// The raw baseline's ring pair: frames sent from one end to the other with the burst
/// calls alone.
struct RawLink {
    sender: RawEnd,
    receiver: RawEnd,
    shape: RawShape,
    tx_queue_frames_max: usize,
    rx_burst_frames: usize,
    /// Where the fragment position of the next frame made, and of the next frame
    /// received, is kept from one run to the next.
    next_sent: usize,
    next_received: usize,
    scratch: Vec<u8>,
}

impl RawLink {
    fn new(
        a: DpdkPort,
        b: DpdkPort,
        pool_mbufs: u32,
        shape: RawShape,
        tx_queue_frames_max: usize,
        rx_burst_frames: usize,
    ) -> Result<Self, DpdkError> {
        sys::register_thread();
        Ok(RawLink {
            sender: RawEnd::new(a, pool_mbufs, tx_queue_frames_max)?,
            receiver: RawEnd::new(b, pool_mbufs, rx_burst_frames)?,
            shape,
            tx_queue_frames_max,
            rx_burst_frames,
            next_sent: 0,
            next_received: 0,
            scratch: vec![0; super::MBUF_DATA_BYTES],
        })
    }

    /// Pushes `messages` messages' frames from the sender to the receiver, with at most
    /// [`IN_FLIGHT_MAX`] messages' frames sent and not yet received; returns the payload
    /// bytes received.
    fn run(&mut self, payload: &[u8], messages: u64) -> Result<u64, DpdkBenchError> {
        sys::register_thread();
        let fragments = &self.shape.fragments;
        let frames_per_message = fragments.len() as u64;
        let frames = messages * frames_per_message;
        let in_flight_max = IN_FLIGHT_MAX * frames_per_message;
        let mut sent = 0u64;
        let mut received = 0u64;
        let mut bytes = 0u64;
        let mut stall = StallWatch::new();
        while received < frames {
            // Make frames in bursts of buffers while the window and the queue allow.
            loop {
                let room = (frames - sent)
                    .min(in_flight_max - (sent - received))
                    .min((self.tx_queue_frames_max - self.sender.queue.len()) as u64)
                    .min(self.rx_burst_frames as u64) as usize;
                let made = self.sender.queue.len();
                if room == 0 || !self.sender.pool.alloc_bulk(&mut self.sender.queue, room) {
                    break;
                }
                for mbuf in &mut self.sender.queue[made..] {
                    let (header, range) = &fragments[self.next_sent];
                    if !mbuf.append(&[header, &payload[range.clone()]]) {
                        // Cannot happen: a frame is at most the transport's largest, which
                        // fits a buffer.
                        return Err(DpdkBenchError::RawFrameCorrupted {
                            got: 0,
                            expected: header.len() + range.len(),
                        });
                    }
                    self.next_sent += 1;
                    if self.next_sent == fragments.len() {
                        self.next_sent = 0;
                    }
                }
                sent += room as u64;
            }
            sys::tx_burst(self.sender.port.id(), &mut self.sender.queue);

            // Receive bursts until the port is empty or a poll's worth of frames is seen.
            let mut examined = 0;
            while examined < POLL_FRAMES_MAX {
                let want = self.rx_burst_frames.min(POLL_FRAMES_MAX - examined);
                let got = sys::rx_burst(self.receiver.port.id(), &mut self.receiver.queue, want);
                if got == 0 {
                    break;
                }
                for mbuf in &self.receiver.queue {
                    let range = &fragments[self.next_received].1;
                    let expected = FRAME_HEADER_BYTES + range.len();
                    let got = mbuf.frame(&mut self.scratch).map_or(0, <[u8]>::len);
                    if got != expected {
                        return Err(DpdkBenchError::RawFrameCorrupted { got, expected });
                    }
                    bytes += range.len() as u64;
                    self.next_received += 1;
                    if self.next_received == fragments.len() {
                        self.next_received = 0;
                    }
                }
                sys::free_front(&mut self.receiver.queue, got);
                examined += got;
            }
            received += examined as u64;
            stall.check(examined > 0, received / frames_per_message, messages)?;
        }
        Ok(bytes)
    }
}
