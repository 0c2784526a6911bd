//! [`DpdkTransport`]: one node's endpoint on one DPDK port.

use super::eal::{unique_name, DpdkError, DpdkPort};
use super::frame::{FrameHeader, MacAddress, Malformed, FRAME_HEADER_BYTES};
use super::sys::{self, Mbuf, Pool};
use crate::transport::{SendError, Transport, TransportError};
use rehearsal_sim_core::NodeId;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// Default largest frame, in bytes, Ethernet header included and FCS excluded: a standard
/// 1500-byte MTU. Each frame then carries up to 1476 message bytes.
pub const DPDK_FRAME_BYTES_MAX_DEFAULT: usize = 1514;

/// Default largest message, in bytes (1 MiB): 711 frames of the default size.
pub const DPDK_MESSAGE_BYTES_MAX_DEFAULT: usize = 1 << 20;

/// Bytes of packet data in each buffer of a transport's pool: the largest frame it can
/// send or receive in one segment.
pub const MBUF_DATA_BYTES: usize = 2048;

/// Headroom DPDK reserves in front of the data of each buffer (`RTE_PKTMBUF_HEADROOM`).
const MBUF_HEADROOM_BYTES: usize = 128;

/// Descriptors asked for on the port's receive and transmit queues (the driver may round).
const QUEUE_DESCRIPTORS: u16 = 1024;

/// Settings of a [`DpdkTransport`].
#[derive(Debug, Clone)]
pub struct DpdkConfig {
    /// The nodes this endpoint sends to and accepts frames from, with the destination MAC
    /// of their frames. On a point-to-point link (a ring pair, memif, a cable) every peer
    /// is behind the one other end, and [`MacAddress::BROADCAST`] serves for all.
    pub peers: BTreeMap<NodeId, MacAddress>,
    /// Largest frame sent, in bytes, Ethernet header included (FCS excluded): from
    /// `FRAME_HEADER_BYTES + 1` to [`MBUF_DATA_BYTES`]. A message longer than
    /// `frame_bytes_max - FRAME_HEADER_BYTES` travels in several frames. Received frames
    /// may be as long as [`MBUF_DATA_BYTES`].
    pub frame_bytes_max: usize,
    /// Largest message sent or reassembled, in bytes; [`Transport::send`] refuses a longer
    /// one with [`SendError::FrameTooLarge`], and frames announcing one are dropped as
    /// [`DpdkStats::frames_bad_length`].
    pub message_bytes_max: usize,
    /// Bound of the transmit queue, in frames: frames queued by `send` that the port has
    /// not taken yet. A message whose frames do not all fit is refused whole with
    /// [`SendError::QueueFull`]. Must hold the largest message.
    pub tx_queue_frames_max: usize,
    /// Frames asked of the port per receive burst.
    pub rx_burst_frames: usize,
    /// Packet buffers in this endpoint's pool. They back queued frames, frames in flight
    /// in a ring, and received frames (for drivers that copy into local buffers).
    pub pool_mbufs: u32,
    /// How long [`Transport::wait`] sleeps between two looks at the port; zero spins
    /// (lowest latency, one busy core).
    pub wait_poll_interval: Duration,
}

impl DpdkConfig {
    /// Defaults, with `peers` all reached through [`MacAddress::BROADCAST`]: for
    /// point-to-point links.
    pub fn point_to_point(peers: impl IntoIterator<Item = NodeId>) -> Self {
        DpdkConfig {
            peers: peers
                .into_iter()
                .map(|peer| (peer, MacAddress::BROADCAST))
                .collect(),
            ..DpdkConfig::default()
        }
    }

    fn fragment_bytes_max(&self) -> usize {
        self.frame_bytes_max - FRAME_HEADER_BYTES
    }

    fn validate(&self, local: NodeId) -> Result<(), DpdkError> {
        let fail = |what: String| Err(DpdkError::Config(what));
        if self.peers.contains_key(&local) {
            return fail(format!("{local} is this endpoint's own id, not a peer"));
        }
        if !(FRAME_HEADER_BYTES < self.frame_bytes_max && self.frame_bytes_max <= MBUF_DATA_BYTES) {
            return fail(format!(
                "frame_bytes_max is {}; it must be more than {FRAME_HEADER_BYTES} and at most {MBUF_DATA_BYTES}",
                self.frame_bytes_max
            ));
        }
        if self.message_bytes_max > u32::MAX as usize {
            return fail(format!(
                "message_bytes_max {} exceeds {}",
                self.message_bytes_max,
                u32::MAX
            ));
        }
        if self.tx_queue_frames_max == 0 || self.rx_burst_frames == 0 {
            return fail("tx_queue_frames_max and rx_burst_frames must be at least 1".into());
        }
        let largest_message_frames = frames_for(self.message_bytes_max, self.fragment_bytes_max());
        if largest_message_frames > self.tx_queue_frames_max {
            return fail(format!(
                "a message of message_bytes_max = {} bytes needs {largest_message_frames} frames, \
                 more than tx_queue_frames_max = {}",
                self.message_bytes_max, self.tx_queue_frames_max
            ));
        }
        let needed =
            self.tx_queue_frames_max + self.rx_burst_frames + usize::from(QUEUE_DESCRIPTORS);
        if (self.pool_mbufs as usize) < needed {
            return fail(format!(
                "pool_mbufs is {}; it must be at least tx_queue_frames_max + rx_burst_frames + {QUEUE_DESCRIPTORS} = {needed}",
                self.pool_mbufs
            ));
        }
        Ok(())
    }
}

impl Default for DpdkConfig {
    /// No peers; standard MTU, 1 MiB messages, 1024 queued frames, bursts of 32, a pool of
    /// 4095 buffers, a 20 µs wait poll interval.
    fn default() -> Self {
        DpdkConfig {
            peers: BTreeMap::new(),
            frame_bytes_max: DPDK_FRAME_BYTES_MAX_DEFAULT,
            message_bytes_max: DPDK_MESSAGE_BYTES_MAX_DEFAULT,
            tx_queue_frames_max: 1024,
            rx_burst_frames: 32,
            pool_mbufs: 4095,
            wait_poll_interval: Duration::from_micros(20),
        }
    }
}

/// Makes a pool of `pool_mbufs` packet buffers for `port`, then configures and starts the
/// port with one receive and one transmit queue (receive buffers from that pool); returns
/// the pool and the port's MAC address. The pool must outlive the port's use: drop the
/// port first.
pub(super) fn start_port(
    port: &DpdkPort,
    pool_mbufs: u32,
) -> Result<(Pool, MacAddress), DpdkError> {
    let cache = (pool_mbufs / 8).clamp(32, 256);
    let data_room = (MBUF_DATA_BYTES + MBUF_HEADROOM_BYTES) as u16;
    let pool =
        Pool::create(&unique_name("rhp"), pool_mbufs, cache, data_room).map_err(|errno| {
            DpdkError::Port {
                action: format!(
                    "create a pool of {pool_mbufs} packet buffers for {}",
                    port.name()
                ),
                reason: sys::describe(errno),
            }
        })?;
    let mac = sys::port_start(port.id(), &pool, QUEUE_DESCRIPTORS, QUEUE_DESCRIPTORS).map_err(
        |errno| DpdkError::Port {
            action: format!("configure and start port {} ({})", port.id(), port.name()),
            reason: sys::describe(errno),
        },
    )?;
    Ok((pool, MacAddress(mac)))
}

/// Frames needed for a message of `message_bytes` (an empty message takes one frame).
fn frames_for(message_bytes: usize, fragment_bytes_max: usize) -> usize {
    message_bytes.div_ceil(fragment_bytes_max).max(1)
}

/// Counters of a [`DpdkTransport`]. Message byte counts are payloads (no headers).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DpdkStats {
    /// Messages accepted by `send` (to other nodes and to itself).
    pub messages_sent: u64,
    /// Bytes of the messages accepted by `send`.
    pub bytes_sent: u64,
    /// Frames the port took for transmission.
    pub frames_sent: u64,
    /// Messages handed to `poll`'s callback.
    pub messages_received: u64,
    /// Bytes of the messages handed to `poll`'s callback.
    pub bytes_received: u64,
    /// Frames taken from the port, well-formed or not.
    pub frames_received: u64,
    /// Sends refused because their frames did not fit the transmit queue, or the pool had
    /// no buffers left.
    pub sends_refused_queue_full: u64,
    /// Sends refused because the message exceeds [`DpdkConfig::message_bytes_max`].
    pub sends_refused_too_large: u64,
    /// Sends refused because the destination is not in [`DpdkConfig::peers`].
    pub sends_refused_unknown_peer: u64,
    /// Frames dropped: not the Rehearsal ethertype.
    pub frames_wrong_ethertype: u64,
    /// Frames dropped: too short for the Ethernet or the Rehearsal header.
    pub frames_short_header: u64,
    /// Frames dropped: a Rehearsal frame of another version.
    pub frames_unsupported_version: u64,
    /// Frames dropped: inconsistent lengths, a message longer than
    /// [`DpdkConfig::message_bytes_max`], or a frame longer than [`MBUF_DATA_BYTES`].
    pub frames_bad_length: u64,
    /// Frames dropped: addressed to another node id.
    pub frames_wrong_destination: u64,
    /// Frames dropped: from a node id that is not in [`DpdkConfig::peers`].
    pub frames_unknown_source: u64,
    /// Well-formed fragments thrown away because their message could not be completed: a
    /// fragment was lost, so the fragments before it (and those after it, until the next
    /// message begins) are useless.
    pub fragments_discarded: u64,
}

impl DpdkStats {
    /// Received frames dropped as malformed or misaddressed (every `frames_*` counter but
    /// `frames_sent` and `frames_received`).
    pub fn frames_dropped(&self) -> u64 {
        self.frames_wrong_ethertype
            + self.frames_short_header
            + self.frames_unsupported_version
            + self.frames_bad_length
            + self.frames_wrong_destination
            + self.frames_unknown_source
    }
}

/// Reassembly buffers larger than this are given back to the allocator after their
/// message; smaller ones are kept for the peer's next fragmented message.
const REASSEMBLY_KEEP_BYTES_MAX: usize = 64 << 10;

/// The message being reassembled from one peer's fragments, if any (`fragments > 0`).
struct Partial {
    message_id: u32,
    message_bytes: u32,
    bytes: Vec<u8>,
    /// Fragments received of the message in progress; 0 when there is none.
    fragments: u64,
}

impl Partial {
    fn idle() -> Self {
        Partial {
            message_id: 0,
            message_bytes: 0,
            bytes: Vec::new(),
            fragments: 0,
        }
    }

    /// Forgets the message in progress, keeping a small buffer for the next one.
    fn reset(&mut self) {
        self.fragments = 0;
        self.bytes.clear();
        if self.bytes.capacity() > REASSEMBLY_KEEP_BYTES_MAX {
            self.bytes = Vec::new();
        }
    }
}

/// One node's endpoint on one DPDK port (queue 0 in each direction), with its own pool of
/// packet buffers. See the [module documentation](super) for the frame format, the
/// fragmentation and the queue-full behaviour.
pub struct DpdkTransport {
    local: NodeId,
    config: DpdkConfig,
    mac: MacAddress,
    next_message_id: u32,
    /// Frames queued by `send`, oldest first, not yet taken by the port.
    tx_queue: Vec<Mbuf>,
    /// Frames taken from the port and not yet examined, oldest first.
    rx_queue: Vec<Mbuf>,
    /// Messages to itself, which never touch the port.
    loopback: VecDeque<Vec<u8>>,
    /// Per peer, the message being reassembled.
    partials: BTreeMap<NodeId, Partial>,
    /// Where a frame chained over several buffers is made contiguous.
    scratch: Vec<u8>,
    stats: DpdkStats,
    // The port is released before the pool is dropped (fields drop in order), so that
    // the driver has given back every buffer of the pool it held.
    port: DpdkPort,
    pool: Pool,
}

impl std::fmt::Debug for DpdkTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkTransport")
            .field("local", &self.local)
            .field("port", &self.port)
            .field("mac", &self.mac)
            .field("tx_queue_frames", &self.tx_queue.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl DpdkTransport {
    /// Starts `port` with one receive and one transmit queue and a pool of buffers of its
    /// own, as node `local`.
    pub fn new(port: DpdkPort, local: NodeId, config: DpdkConfig) -> Result<Self, DpdkError> {
        config.validate(local)?;
        sys::register_thread();
        let (pool, mac) = start_port(&port, config.pool_mbufs)?;
        Ok(DpdkTransport {
            local,
            mac,
            next_message_id: 0,
            tx_queue: Vec::with_capacity(config.tx_queue_frames_max),
            rx_queue: Vec::with_capacity(config.rx_burst_frames),
            loopback: VecDeque::new(),
            partials: BTreeMap::new(),
            scratch: vec![0; MBUF_DATA_BYTES],
            stats: DpdkStats::default(),
            config,
            port,
            pool,
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> &DpdkStats {
        &self.stats
    }

    /// The port's MAC address, the source address of every frame sent.
    pub fn mac(&self) -> MacAddress {
        self.mac
    }

    /// The port this endpoint runs on.
    pub fn port(&self) -> &DpdkPort {
        &self.port
    }

    /// Frames queued and not yet taken by the port.
    pub fn tx_queue_frames(&self) -> usize {
        self.tx_queue.len()
    }

    /// Whether the port's link is up (for memif: the other end is connected).
    pub fn link_up(&self) -> bool {
        sys::port_link_up(self.port.id())
    }

    /// Waits until the link is up or `timeout` passes; returns whether it is up.
    pub fn wait_for_link(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.link_up() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// Queues `frame` as it is, Ethernet header and all, behind the frames already queued:
    /// for tools and tests that need frames this transport would never make (malformed,
    /// misaddressed, other protocols). It leaves at the next flush.
    pub fn send_raw_frame(&mut self, frame: &[u8]) -> Result<(), SendError> {
        sys::register_thread();
        if frame.len() > MBUF_DATA_BYTES {
            return Err(SendError::FrameTooLarge {
                frame_bytes: frame.len(),
                frame_bytes_max: MBUF_DATA_BYTES,
            });
        }
        if self.tx_queue.len() >= self.config.tx_queue_frames_max {
            return Err(SendError::QueueFull(self.local));
        }
        let mut mbuf = self.pool.alloc().ok_or(SendError::QueueFull(self.local))?;
        if !mbuf.append(&[frame]) {
            return Err(SendError::FrameTooLarge {
                frame_bytes: frame.len(),
                frame_bytes_max: MBUF_DATA_BYTES,
            });
        }
        self.tx_queue.push(mbuf);
        Ok(())
    }

    /// Hands queued frames to the port, as many as it takes now.
    fn transmit(&mut self) {
        if !self.tx_queue.is_empty() {
            let sent = sys::tx_burst(self.port.id(), &mut self.tx_queue);
            self.stats.frames_sent += sent as u64;
        }
    }

    fn send_to_peer(&mut self, to: NodeId, payload: &[u8]) -> Result<(), SendError> {
        let Some(&dst_mac) = self.config.peers.get(&to) else {
            self.stats.sends_refused_unknown_peer += 1;
            return Err(SendError::UnknownPeer(to));
        };
        if payload.len() > self.config.message_bytes_max {
            self.stats.sends_refused_too_large += 1;
            return Err(SendError::FrameTooLarge {
                frame_bytes: payload.len(),
                frame_bytes_max: self.config.message_bytes_max,
            });
        }
        let fragment_bytes_max = self.config.fragment_bytes_max();
        let frames = frames_for(payload.len(), fragment_bytes_max);
        if self.tx_queue.len() + frames > self.config.tx_queue_frames_max {
            self.stats.sends_refused_queue_full += 1;
            return Err(SendError::QueueFull(to));
        }
        let queued_before = self.tx_queue.len();
        let mut header = FrameHeader {
            src: self.local,
            dst: to,
            message_id: self.next_message_id,
            // Fits: message_bytes_max <= u32::MAX (validated).
            message_bytes: payload.len() as u32,
            fragment_offset: 0,
            fragment_bytes: 0,
        };
        let mut fragments = payload.chunks(fragment_bytes_max);
        for _ in 0..frames {
            let chunk = fragments.next().unwrap_or(&[]);
            header.fragment_bytes = chunk.len() as u16;
            let bytes = header.encode(dst_mac, self.mac);
            let Some(mut mbuf) = self.pool.alloc() else {
                // All or nothing: a message missing a fragment is useless to the peer.
                self.tx_queue.truncate(queued_before);
                self.stats.sends_refused_queue_full += 1;
                return Err(SendError::QueueFull(to));
            };
            if !mbuf.append(&[&bytes, chunk]) {
                // Cannot happen, as frame_bytes_max <= MBUF_DATA_BYTES (validated); if it
                // did, refusing beats sending a message with a hole in it.
                self.tx_queue.truncate(queued_before);
                return Err(SendError::FrameTooLarge {
                    frame_bytes: bytes.len() + chunk.len(),
                    frame_bytes_max: self.config.frame_bytes_max,
                });
            }
            self.tx_queue.push(mbuf);
            header.fragment_offset += chunk.len() as u32;
        }
        self.next_message_id = self.next_message_id.wrapping_add(1);
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        Ok(())
    }
}

/// What the receive path needs, borrowed apart from the queues it walks.
struct Receiver<'a> {
    local: NodeId,
    config: &'a DpdkConfig,
    partials: &'a mut BTreeMap<NodeId, Partial>,
    stats: &'a mut DpdkStats,
}

impl Receiver<'_> {
    /// Checks one frame and feeds it to reassembly; hands a completed message to
    /// `deliver` and returns whether it did.
    fn frame(&mut self, frame: Option<&[u8]>, deliver: &mut dyn FnMut(NodeId, &[u8])) -> bool {
        self.stats.frames_received += 1;
        let Some(frame) = frame else {
            // Chained over several buffers and longer than any frame we accept.
            self.stats.frames_bad_length += 1;
            return false;
        };
        let (header, fragment) = match FrameHeader::parse(frame) {
            Ok(parsed) => parsed,
            Err(malformed) => {
                *match malformed {
                    Malformed::ShortHeader => &mut self.stats.frames_short_header,
                    Malformed::WrongEthertype => &mut self.stats.frames_wrong_ethertype,
                    Malformed::UnsupportedVersion => &mut self.stats.frames_unsupported_version,
                    Malformed::BadLength => &mut self.stats.frames_bad_length,
                } += 1;
                return false;
            }
        };
        if header.dst != self.local {
            self.stats.frames_wrong_destination += 1;
            return false;
        }
        if !self.config.peers.contains_key(&header.src) {
            self.stats.frames_unknown_source += 1;
            return false;
        }
        if header.message_bytes as usize > self.config.message_bytes_max {
            self.stats.frames_bad_length += 1;
            return false;
        }
        self.reassemble(header, fragment, deliver)
    }

    /// Frames of one sender arrive in the order sent (one queue per direction), so a
    /// message's fragments come in order, and a fragment that does not continue the
    /// message in progress means a fragment was lost: that message is abandoned.
    fn reassemble(
        &mut self,
        header: FrameHeader,
        fragment: &[u8],
        deliver: &mut dyn FnMut(NodeId, &[u8]),
    ) -> bool {
        let src = header.src;
        let stats = &mut *self.stats;
        if header.fragment_offset == 0 {
            if let Some(partial) = self.partials.get_mut(&src) {
                stats.fragments_discarded += partial.fragments;
                partial.reset();
            }
            if fragment.len() == header.message_bytes as usize {
                delivered(stats, src, fragment, deliver);
                return true;
            }
            let partial = self.partials.entry(src).or_insert_with(Partial::idle);
            partial.message_id = header.message_id;
            partial.message_bytes = header.message_bytes;
            partial.bytes.reserve_exact(header.message_bytes as usize);
            partial.bytes.extend_from_slice(fragment);
            partial.fragments = 1;
            return false;
        }
        let Some(partial) = self.partials.get_mut(&src) else {
            stats.fragments_discarded += 1;
            return false;
        };
        let continues = partial.fragments > 0
            && partial.message_id == header.message_id
            && partial.message_bytes == header.message_bytes
            && partial.bytes.len() == header.fragment_offset as usize;
        if !continues {
            stats.fragments_discarded += 1 + partial.fragments;
            partial.reset();
            return false;
        }
        partial.bytes.extend_from_slice(fragment);
        partial.fragments += 1;
        if partial.bytes.len() < partial.message_bytes as usize {
            return false;
        }
        delivered(stats, src, &partial.bytes, deliver);
        partial.reset();
        true
    }
}

fn delivered(
    stats: &mut DpdkStats,
    src: NodeId,
    message: &[u8],
    deliver: &mut dyn FnMut(NodeId, &[u8]),
) {
    stats.messages_received += 1;
    stats.bytes_received += message.len() as u64;
    deliver(src, message);
}

impl Transport for DpdkTransport {
    fn local_id(&self) -> NodeId {
        self.local
    }

    /// Copies `payload` into as many frames as it needs, queued for the next
    /// [`flush`](Transport::flush). Refuses the whole message with
    /// [`SendError::QueueFull`] if its frames do not fit the transmit queue or the pool.
    fn send(&mut self, to: NodeId, payload: &[u8]) -> Result<(), SendError> {
        sys::register_thread();
        if to != self.local {
            return self.send_to_peer(to, payload);
        }
        if payload.len() > self.config.message_bytes_max {
            self.stats.sends_refused_too_large += 1;
            return Err(SendError::FrameTooLarge {
                frame_bytes: payload.len(),
                frame_bytes_max: self.config.message_bytes_max,
            });
        }
        if self.loopback.len() >= self.config.tx_queue_frames_max {
            self.stats.sends_refused_queue_full += 1;
            return Err(SendError::QueueFull(to));
        }
        self.loopback.push_back(payload.to_vec());
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += payload.len() as u64;
        Ok(())
    }

    /// Hands the queued frames to the port (`rte_eth_tx_burst`, repeated while the port
    /// takes some). Frames the port has no room for stay queued, in order, for the next
    /// flush or [`wait`](Transport::wait).
    fn flush(&mut self) -> Result<(), TransportError> {
        sys::register_thread();
        self.transmit();
        Ok(())
    }

    /// Examines at most `frames_max` received frames (one `rte_eth_rx_burst` per
    /// [`DpdkConfig::rx_burst_frames`]), after any messages to itself, handing each
    /// message completed by them to `deliver` with a view into the packet buffer (or the
    /// reassembly buffer), then frees the buffers.
    fn poll(
        &mut self,
        frames_max: usize,
        deliver: &mut dyn FnMut(NodeId, &[u8]),
    ) -> Result<usize, TransportError> {
        sys::register_thread();
        let mut handed = 0;
        while handed < frames_max {
            let Some(message) = self.loopback.pop_front() else {
                break;
            };
            self.stats.messages_received += 1;
            self.stats.bytes_received += message.len() as u64;
            deliver(self.local, &message);
            handed += 1;
        }
        let mut receiver = Receiver {
            local: self.local,
            config: &self.config,
            partials: &mut self.partials,
            stats: &mut self.stats,
        };
        // Each message takes at least one frame, so examining at most the rest of the
        // budget hands over at most `frames_max` messages in all.
        let budget = frames_max - handed;
        let mut examined = 0;
        while examined < budget {
            if self.rx_queue.is_empty() {
                let want = self.config.rx_burst_frames.min(budget - examined);
                if sys::rx_burst(self.port.id(), &mut self.rx_queue, want) == 0 {
                    break;
                }
            }
            let take = self.rx_queue.len().min(budget - examined);
            for mbuf in &self.rx_queue[..take] {
                if receiver.frame(mbuf.frame(&mut self.scratch), deliver) {
                    handed += 1;
                }
            }
            examined += take;
            sys::free_front(&mut self.rx_queue, take);
        }
        Ok(handed)
    }

    /// Polls the port (and retries queued frames) every
    /// [`DpdkConfig::wait_poll_interval`] until a frame arrives or `timeout` passes; a
    /// frame that arrives is kept for the next [`poll`](Transport::poll).
    fn wait(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        sys::register_thread();
        let begun = Instant::now();
        loop {
            if !self.loopback.is_empty() || !self.rx_queue.is_empty() {
                return Ok(true);
            }
            self.transmit();
            if sys::rx_burst(
                self.port.id(),
                &mut self.rx_queue,
                self.config.rx_burst_frames,
            ) > 0
            {
                return Ok(true);
            }
            let elapsed = begun.elapsed();
            if elapsed >= timeout {
                return Ok(false);
            }
            if self.config.wait_poll_interval.is_zero() {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(self.config.wait_poll_interval.min(timeout - elapsed));
            }
        }
    }
}

impl Drop for DpdkTransport {
    fn drop(&mut self) {
        sys::register_thread();
        // Queued and received frames go back to their pools before the port is released
        // and the pool retired (the fields, in that order, after this).
        let queued = self.tx_queue.len();
        sys::free_front(&mut self.tx_queue, queued);
        let received = self.rx_queue.len();
        sys::free_front(&mut self.rx_queue, received);
    }
}
