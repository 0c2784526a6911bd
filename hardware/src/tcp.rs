//! A TCP transport whose socket i/o runs on the thread that calls it.
//!
//! Each node listens on one address. Two nodes share one connection, which carries frames
//! both ways (see [`crate::wire`]): of each pair in the peer table, the node with the lower
//! id dials, with backoff and redials, and the other waits for it. Frames to a peer wait
//! in its send queue while there is no connection. Both nodes must have each other as
//! peers for frames to flow.
//!
//! There are no threads. Every socket is non-blocking and the node's own thread does all
//! the work inside the [`Transport`] calls, so a frame goes from one node's handler to the
//! other's with no hand-off between threads:
//!
//! - [`send`](Transport::send) appends the length-prefixed frame to the peer's bounded send
//!   queue (one buffer per peer);
//! - [`flush`](Transport::flush) writes each queue with one `write`, as much as the socket
//!   takes; the rest stays queued, in order, and goes out as the socket drains;
//! - [`poll`](Transport::poll) reads the readable connections into one buffer each, as much
//!   as each has while no complete frame is waiting, and hands complete frames to the
//!   callback straight from those buffers; as it hands them out it reads on, without
//!   asking the poller again;
//! - [`wait`](Transport::wait) blocks on the listener and every socket at once (`mio`: epoll
//!   on Linux, kqueue on macOS and the BSDs), and meanwhile accepts connections, runs
//!   handshakes, dials and redials peers (with exponential backoff), and writes what
//!   `flush` left over. The poller counts in milliseconds on Linux: a wait shorter than
//!   one (for a timer due sooner) lasts one.
//!
//! A transport therefore makes progress only while its owner calls it, as the node runtime
//! does all the time; a frame sent without any later `flush`, `poll` or `wait` may never
//! leave.
//!
//! Per round trip this costs, on each side, one `write`, one wait and one `read`: fewer
//! system calls than a blocking echo, which reads header and payload separately; and as a
//! reply travels on the request's connection, TCP acknowledges the request with it rather
//! than with a segment of its own.
//!
//! Nothing a remote party sends can stop the node: a bad handshake (wrong magic or version,
//! unknown node id, wrong destination, silence), an oversized or truncated frame, or an i/o
//! error closes that one connection, is counted in [`TcpStats`] and kept in
//! [`TcpMonitor::recent_errors`], and the node goes on serving everyone else. Frames
//! read before a connection's end are still handed out, and the start of one cut short is
//! dropped (counted); the frame a node was writing when its connection ended is lost
//! (counted), and the rest of its queue waits for the next connection. As on any TCP
//! connection that is reset, frames still in the kernel's buffers of a connection given
//! up (replaced by a newer one, or stuck past the write timeout) are lost. TCP keepalive
//! notices a peer that vanished without closing its connection.
//!
//! # Authentication
//!
//! With keys ([`TcpConfig::auth`], a [`TcpAuth`]: `rehearsal node` makes them from the
//! cluster file's key directory), every connection runs a Noise `XX` handshake inside the
//! hello and its acknowledgement (see [`crate::wire`]): each end proves that it holds the
//! static key listed for the node it claims to be, the acceptor only after the dialer's
//! last message, so neither an impostor (a wrong key, or a key listed for no node) nor a
//! recorded handshake replayed can take a node's place, not even for a moment: the real
//! connection stays. After it every frame is sealed (ChaCha20-Poly1305, a nonce counting up each
//! way), so a frame altered, replayed, reordered or injected fails its tag and closes its
//! connection (the dialer redials). Each refusal is counted ([`TcpStats::inbound_auth_failures`],
//! [`TcpStats::outbound_auth_failures`], [`TcpStats::frames_rejected`]) and logged, and the
//! node goes on serving its real peers. What it does not hide: who talks to whom, when,
//! and how much (frame sizes and timing), and the handshake's node ids; what it does not
//! stop: anyone on the path from delaying, cutting or resetting connections. Without keys
//! (the default) node ids in handshakes are not authenticated and frames are not
//! protected, which is for trusted networks only; a node with keys and one without refuse
//! each other's handshakes.

mod inbound;
mod noise;
mod peer;
mod socket;

pub use noise::TcpAuth;

use crate::syscalls::{Syscall, SyscallCounter, SyscallCounts};
use crate::transport::{SendError, Transport, TransportError};
use crate::wire::ConnectionError;
use inbound::{FrameStatus, InboundConn, Welcome};
use mio::net::TcpListener;
use mio::{Events, Interest, Poll, Token};
use peer::{Peer, Register};
use rehearsal_sim_core::NodeId;
use socket::Readiness;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::{Shutdown, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Default largest frame payload, in bytes (16 MiB).
pub const TCP_FRAME_BYTES_MAX_DEFAULT: u32 = 16 << 20;

/// How many recent connection errors a [`TcpTransport`] keeps for
/// [`TcpMonitor::recent_errors`].
pub const RECENT_ERRORS_MAX: usize = 256;

/// Connections accepted per pass over the sockets, at most, so that a flood of connects
/// cannot starve the established connections.
const ACCEPTS_PER_TURN_MAX: usize = 64;

/// How long accepting pauses after `accept` failed (say, out of file descriptors): the
/// listener stays readable meanwhile, and retrying at once would spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(10);

/// [`Transport::poll`] hands out what is buffered without looking at the sockets again if
/// they were looked at less than this ago. This saves the runtime's loop one wait of the
/// poller per message: after handling a batch it polls once more, finds nothing, and waits,
/// which looks anyway. A node that never runs out of work, and so never waits, still
/// looks this often.
const LOOK_AGAIN_AFTER: Duration = Duration::from_micros(50);

/// Longest wait when the caller asks for an unbounded one.
const WAIT_MAX: Duration = Duration::from_secs(3600);

/// Settings of a [`TcpTransport`].
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Largest frame payload sent or accepted, in bytes. A larger outgoing frame is refused
    /// by [`Transport::send`]; a larger incoming length prefix closes the connection.
    pub frame_bytes_max: u32,
    /// Bound of each peer's send queue, in frames. Frames wait there while the peer is
    /// being dialed, reconnecting, or reading more slowly than this node writes. When it is
    /// full, [`Transport::send`] drops the frame and returns [`SendError::QueueFull`], as a
    /// lossy network would; protocols retransmit.
    pub send_queue_frames_max: usize,
    /// Bound of the queue of frames this node sends to itself, in frames. (Frames from
    /// peers wait in the kernel: a connection is read only once the frames read from it
    /// before were handed to [`Transport::poll`], so TCP flow control slows down the
    /// senders a node cannot keep up with.)
    pub recv_queue_frames_max: usize,
    /// Accepted connections still in their handshake, at most; more are closed at once.
    /// (Once its handshake passes, a connection belongs to its peer, which keeps one.)
    pub inbound_connections_max: usize,
    /// Time allowed to establish an outbound TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for either side of the handshake.
    pub handshake_timeout: Duration,
    /// Time a peer may leave this node's writes stuck (its socket full, nothing taken; or,
    /// on Linux, bytes written and not acknowledged) before the connection counts as
    /// failed (the dialing side then redials, the other waits to be dialed again).
    pub write_timeout: Duration,
    /// Time a connection may be silent before TCP keepalive probes its peer (at least
    /// 1 s; then a probe a second, given up after 3 unanswered). This notices a peer that
    /// vanished without closing its connection, so that the dialing side redials and the
    /// waiting side is not left waiting behind a dead connection.
    pub keepalive_idle: Duration,
    /// First delay before redialing a peer after a failed dial.
    pub reconnect_backoff_min: Duration,
    /// Largest delay between redials; the delay doubles after each failure up to this.
    pub reconnect_backoff_max: Duration,
    /// Print connection errors to stderr, from the thread that calls the transport (they
    /// are counted and kept either way).
    pub log_errors: bool,
    /// The keys that authenticate every connection and seal every frame (see
    /// [`TcpAuth`]); `None` (the default): unauthenticated, for
    /// trusted networks only. Every peer needs a listed key.
    pub auth: Option<TcpAuth>,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            frame_bytes_max: TCP_FRAME_BYTES_MAX_DEFAULT,
            send_queue_frames_max: 4096,
            recv_queue_frames_max: 65_536,
            inbound_connections_max: 1024,
            connect_timeout: Duration::from_secs(1),
            handshake_timeout: Duration::from_secs(2),
            write_timeout: Duration::from_secs(10),
            keepalive_idle: Duration::from_secs(5),
            reconnect_backoff_min: Duration::from_millis(10),
            reconnect_backoff_max: Duration::from_secs(1),
            log_errors: true,
            auth: None,
        }
    }
}

impl TcpConfig {
    fn validate(&self) -> Result<(), TransportError> {
        let fail = |what: &str| Err(TransportError::Config(what.to_string()));
        if self.send_queue_frames_max == 0 {
            return fail("send_queue_frames_max must be at least 1");
        }
        if self.recv_queue_frames_max == 0 {
            return fail("recv_queue_frames_max must be at least 1");
        }
        if self.inbound_connections_max == 0 {
            return fail("inbound_connections_max must be at least 1");
        }
        if self.connect_timeout.is_zero()
            || self.handshake_timeout.is_zero()
            || self.write_timeout.is_zero()
        {
            return fail("timeouts must be positive");
        }
        if self.keepalive_idle < Duration::from_secs(1) {
            return fail("keepalive_idle must be at least 1 s");
        }
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_min > self.reconnect_backoff_max
        {
            return fail("need 0 < reconnect_backoff_min <= reconnect_backoff_max");
        }
        if self.auth.is_some()
            && u32::try_from(noise::sealed_bytes(self.frame_bytes_max as usize)).is_err()
        {
            return fail("frame_bytes_max is too large for authenticated frames (sealed, they need a 32-bit length)");
        }
        Ok(())
    }

    /// Largest frame on the wire, in bytes: [`frame_bytes_max`](TcpConfig::frame_bytes_max)
    /// sealed, on authenticated connections.
    fn wire_frame_bytes_max(&self) -> u32 {
        match self.auth {
            None => self.frame_bytes_max,
            Some(_) => u32::try_from(noise::sealed_bytes(self.frame_bytes_max as usize))
                .unwrap_or(u32::MAX),
        }
    }
}

/// Counters of a [`TcpTransport`]. Frame and byte counts are payloads (no length prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpStats {
    /// Whether the connections are authenticated and their frames sealed
    /// ([`TcpConfig::auth`]).
    pub authenticated: bool,
    /// Inbound TCP connections accepted (before their handshake).
    pub inbound_accepted: u64,
    /// Inbound handshakes that succeeded.
    pub inbound_handshakes: u64,
    /// Inbound connections closed because of their handshake: bad magic or version,
    /// unknown node id, wrong destination, failed authentication, silence, or too many
    /// connections.
    pub inbound_rejected: u64,
    /// Inbound handshakes that failed authentication (of `inbound_rejected`): the dialer
    /// did not prove the key listed for the node it claimed (an impostor, a key listed for
    /// no node, a recorded handshake replayed, bytes altered on the way).
    pub inbound_auth_failures: u64,
    /// Outbound handshakes that failed authentication (of `outbound_connect_failures`):
    /// the node that answered did not prove the key listed for the node dialed.
    pub outbound_auth_failures: u64,
    /// Frames on authenticated connections that failed their tag (altered, replayed,
    /// reordered or injected); each closed its connection (counted in
    /// `connections_failed`).
    pub frames_rejected: u64,
    /// Frames whose length prefix exceeded the maximum (their connection was closed).
    pub frames_oversized: u64,
    /// Frames cut short by the end of their connection (the bytes of them that arrived
    /// are dropped).
    pub frames_truncated: u64,
    /// Outbound connections established (handshake acknowledged).
    pub outbound_connects: u64,
    /// Outbound dials or handshakes that failed.
    pub outbound_connect_failures: u64,
    /// Established connections (dialed or accepted) closed by an error: an oversized or
    /// truncated frame, an i/o error, or a peer that took nothing for the write timeout.
    pub connections_failed: u64,
    /// Established connections the peer reset with no frame of either side cut short: it
    /// exited or crashed with frames of ours unread (a cluster's shutdown, a crash), not a
    /// failure of the link or of framing.
    pub connections_reset: u64,
    /// Established connections the peer closed cleanly, between frames.
    pub connections_closed: u64,
    /// Established connections replaced by a newer one of the same peer (it restarted, or
    /// its end of the old one broke unnoticed here).
    pub connections_replaced: u64,
    /// Frames written to sockets.
    pub frames_sent: u64,
    /// Payload bytes written to sockets.
    pub bytes_sent: u64,
    /// Frames received from peers and handed to [`Transport::poll`]'s callback.
    pub frames_received: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Frames dropped by [`Transport::send`] because the peer's send queue was full.
    pub frames_dropped_queue_full: u64,
    /// Frames lost because their connection ended (failed, closed or replaced) while
    /// writing them (a frame partly written; frames queued behind it wait for the next
    /// connection).
    pub frames_lost: u64,
    /// System calls this transport made, by kind (see [`SyscallCounts`]).
    pub syscalls: SyscallCounts,
}

#[derive(Default)]
struct Counters {
    inbound_accepted: AtomicU64,
    inbound_handshakes: AtomicU64,
    inbound_rejected: AtomicU64,
    inbound_auth_failures: AtomicU64,
    outbound_auth_failures: AtomicU64,
    frames_rejected: AtomicU64,
    frames_oversized: AtomicU64,
    frames_truncated: AtomicU64,
    outbound_connects: AtomicU64,
    outbound_connect_failures: AtomicU64,
    connections_failed: AtomicU64,
    connections_reset: AtomicU64,
    connections_closed: AtomicU64,
    connections_replaced: AtomicU64,
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    frames_dropped_queue_full: AtomicU64,
    frames_lost: AtomicU64,
    syscalls: SyscallCounter,
}

/// Adds to a counter. Only the transport's thread writes the counters; the atomics let a
/// [`TcpMonitor`] read them from another thread.
fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self, authenticated: bool) -> TcpStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TcpStats {
            authenticated,
            inbound_accepted: get(&self.inbound_accepted),
            inbound_handshakes: get(&self.inbound_handshakes),
            inbound_rejected: get(&self.inbound_rejected),
            inbound_auth_failures: get(&self.inbound_auth_failures),
            outbound_auth_failures: get(&self.outbound_auth_failures),
            frames_rejected: get(&self.frames_rejected),
            frames_oversized: get(&self.frames_oversized),
            frames_truncated: get(&self.frames_truncated),
            outbound_connects: get(&self.outbound_connects),
            outbound_connect_failures: get(&self.outbound_connect_failures),
            connections_failed: get(&self.connections_failed),
            connections_reset: get(&self.connections_reset),
            connections_closed: get(&self.connections_closed),
            connections_replaced: get(&self.connections_replaced),
            frames_sent: get(&self.frames_sent),
            bytes_sent: get(&self.bytes_sent),
            frames_received: get(&self.frames_received),
            bytes_received: get(&self.bytes_received),
            frames_dropped_queue_full: get(&self.frames_dropped_queue_full),
            frames_lost: get(&self.frames_lost),
            syscalls: self.syscalls.get(),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded values stay consistent at every point a panic could occur, so a lock
    // poisoned by a panicking thread is taken over rather than propagated.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a [`TcpMonitor`] can see from another thread. The transport's thread writes it when
/// something changes (a connection comes or goes, an error happens), never per frame.
struct Shared {
    me: NodeId,
    log_errors: bool,
    authenticated: bool,
    counters: Counters,
    errors: Mutex<VecDeque<String>>,
    /// Peers with an established connection.
    connected: Mutex<BTreeSet<NodeId>>,
}

impl Shared {
    fn log(&self, message: String) {
        if self.log_errors {
            eprintln!("rehearsal-hardware tcp {}: {message}", self.me);
        }
        let mut errors = lock(&self.errors);
        if errors.len() >= RECENT_ERRORS_MAX {
            errors.pop_front();
        }
        errors.push_back(message);
    }

    fn set_connected(&self, peer: NodeId, connected: bool) {
        let mut peers = lock(&self.connected);
        if connected {
            peers.insert(peer);
        } else {
            peers.remove(&peer);
        }
    }
}

/// Watches a [`TcpTransport`] from any thread (for example while a runtime that owns the
/// transport runs in another one).
#[derive(Clone)]
pub struct TcpMonitor {
    shared: Arc<Shared>,
}

impl TcpMonitor {
    /// The counters so far.
    pub fn stats(&self) -> TcpStats {
        self.shared.counters.snapshot(self.shared.authenticated)
    }

    /// The most recent connection errors (at most [`RECENT_ERRORS_MAX`]), oldest first.
    pub fn recent_errors(&self) -> Vec<String> {
        lock(&self.shared.errors).iter().cloned().collect()
    }

    /// Peers this node currently has an established connection with (dialed or
    /// accepted).
    pub fn connected_peers(&self) -> BTreeSet<NodeId> {
        lock(&self.shared.connected).clone()
    }
}

/// Poller token of the listener; peers are `PEER_TOKEN | index`; inbound connections are
/// their accept sequence number (below `PEER_TOKEN`).
const LISTENER_TOKEN: Token = Token(usize::MAX);
const PEER_TOKEN: usize = 1 << (usize::BITS - 2);

/// Events one wait collects, at most; the rest are reported by the next one.
const EVENTS_PER_WAIT_MAX: usize = 256;

/// What every socket is registered for, once: reading and writing both.
const INTEREST: Interest = Interest::READABLE.add(Interest::WRITABLE);

/// A [`Transport`] over TCP: length-prefixed frames on one connection per peer, carrying
/// both directions, with reconnection, bounded queues and a frame size limit, all driven by
/// the calling thread (see the module docs).
///
/// ```no_run
/// use rehearsal_hardware::{TcpConfig, TcpTransport};
/// use rehearsal_sim_core::NodeId;
/// use std::collections::BTreeMap;
///
/// let peers: BTreeMap<NodeId, std::net::SocketAddr> = [
///     (NodeId(0), "127.0.0.1:7000".parse().unwrap()),
///     (NodeId(1), "127.0.0.1:7001".parse().unwrap()),
/// ]
/// .into();
/// let transport = TcpTransport::from_peer_table(NodeId(0), &peers, TcpConfig::default())?;
/// # Ok::<(), rehearsal_hardware::TransportError>(())
/// ```
pub struct TcpTransport {
    me: NodeId,
    local_addr: SocketAddr,
    config: TcpConfig,
    shared: Arc<Shared>,
    poll: Poll,
    events: Events,
    /// What the last wait found ready, by token (kept to reuse its allocation).
    ready: Vec<(Token, Readiness)>,
    /// `None` once shut down.
    listener: Option<TcpListener>,
    /// Connections may be waiting to be accepted: the poller said so, and no `accept` has
    /// found none since.
    listener_ready: bool,
    /// Set while accepting pauses after a failed `accept`.
    accept_paused_until: Option<Instant>,
    peers: Vec<Peer>,
    peer_index: BTreeMap<NodeId, usize>,
    /// Peers whose empty send queue got a frame since the last flush (indices into
    /// `peers`).
    unflushed: Vec<usize>,
    /// Accepted connections by accept sequence number (their poller token).
    inbound: BTreeMap<usize, InboundConn>,
    next_inbound_seq: usize,
    /// Some inbound connection has its fate decided and waits to be removed.
    reap_due: bool,
    /// Frames this node sent to itself.
    loopback: VecDeque<Vec<u8>>,
    /// When `wait` or `poll` last looked at the sockets.
    looked_at: Option<Instant>,
    /// Where the next `poll` starts handing out frames (an index into `peers`), for
    /// fairness among peers.
    deliver_from: usize,
    closed: bool,
}

impl TcpTransport {
    /// Listens on `listen` as node `me` (port 0 picks a free port; see
    /// [`local_addr`](TcpTransport::local_addr)), with no peers yet: add them with
    /// [`add_peer`](TcpTransport::add_peer). Until a peer is added its handshakes are
    /// refused (it retries with backoff, if it is the one that dials); to know every peer
    /// from the first connection on, use [`from_peer_table`](TcpTransport::from_peer_table) or
    /// [`with_listener`](TcpTransport::with_listener).
    pub fn bind(me: NodeId, listen: SocketAddr, config: TcpConfig) -> Result<Self, TransportError> {
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|error| TransportError::io(format!("cannot listen on {listen}"), error))?;
        TcpTransport::with_listener(me, listener, &BTreeMap::new(), config)
    }

    /// Node `me` of a peer table: listens on `peers[me]` and adds every other entry as a
    /// peer.
    pub fn from_peer_table(
        me: NodeId,
        peers: &BTreeMap<NodeId, SocketAddr>,
        config: TcpConfig,
    ) -> Result<Self, TransportError> {
        let listen = *peers.get(&me).ok_or_else(|| {
            TransportError::Config(format!("the peer table has no address for {me}"))
        })?;
        let listener = std::net::TcpListener::bind(listen)
            .map_err(|error| TransportError::io(format!("cannot listen on {listen}"), error))?;
        TcpTransport::with_listener(me, listener, peers, config)
    }

    /// Node `me` serving on an already bound `listener`, with every entry of `peers` but
    /// `me` as a peer. Binding first lets a process pick free ports (port 0) for all its
    /// nodes, build the peer table from their addresses, and then start them.
    pub fn with_listener(
        me: NodeId,
        listener: std::net::TcpListener,
        peers: &BTreeMap<NodeId, SocketAddr>,
        config: TcpConfig,
    ) -> Result<Self, TransportError> {
        config.validate()?;
        if let Some(auth) = config.auth.as_ref().filter(|auth| auth.me() != me) {
            return Err(TransportError::Config(format!(
                "the keys are {}'s, and this is {me}",
                auth.me()
            )));
        }
        let local_addr = listener
            .local_addr()
            .map_err(|error| TransportError::io("cannot read the listening address", error))?;
        listener
            .set_nonblocking(true)
            .map_err(|error| TransportError::io("cannot configure the listener", error))?;
        let mut listener = TcpListener::from_std(listener);
        let poll =
            Poll::new().map_err(|error| TransportError::io("cannot create a poller", error))?;
        poll.registry()
            .register(&mut listener, LISTENER_TOKEN, Interest::READABLE)
            .map_err(|error| TransportError::io("cannot watch the listener", error))?;
        let shared = Arc::new(Shared {
            me,
            log_errors: config.log_errors,
            authenticated: config.auth.is_some(),
            counters: Counters::default(),
            errors: Mutex::new(VecDeque::new()),
            connected: Mutex::new(BTreeSet::new()),
        });
        // The listener's non-blocking flag, the poller and the listener's registration,
        // made above.
        for _ in 0..3 {
            shared.counters.syscalls.count(Syscall::Other);
        }
        let mut transport = TcpTransport {
            me,
            local_addr,
            config,
            shared,
            poll,
            events: Events::with_capacity(EVENTS_PER_WAIT_MAX),
            ready: Vec::new(),
            listener: Some(listener),
            // Connections that came before the registration may wait already.
            listener_ready: true,
            accept_paused_until: None,
            peers: Vec::new(),
            peer_index: BTreeMap::new(),
            unflushed: Vec::new(),
            inbound: BTreeMap::new(),
            next_inbound_seq: 0,
            reap_due: false,
            loopback: VecDeque::new(),
            looked_at: None,
            deliver_from: 0,
            closed: false,
        };
        for (&id, &addr) in peers {
            if id != me {
                transport.add_peer(id, addr)?;
            }
        }
        Ok(transport)
    }

    /// The address this node listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address of a peer, if configured.
    pub fn peer_addr(&self, id: NodeId) -> Option<SocketAddr> {
        self.peer_index.get(&id).map(|&i| self.peers[i].addr)
    }

    /// Adds a peer: its handshakes are accepted from now on, and if its id is above this
    /// node's, dialing `addr` starts at once (it goes on, with backoff, while the transport
    /// is called, until the peer is up). A peer with a lower id dials this node instead.
    pub fn add_peer(&mut self, id: NodeId, addr: SocketAddr) -> Result<(), TransportError> {
        if id == self.me {
            return Err(TransportError::OwnId(id));
        }
        if self.peer_index.contains_key(&id) {
            return Err(TransportError::PeerExists(id));
        }
        if self.closed {
            return Err(TransportError::Closed);
        }
        if let Some(auth) = &self.config.auth {
            if !auth.knows(id) {
                return Err(TransportError::Config(format!(
                    "no key is listed for peer {id}: authenticated connections need every \
                     peer's key"
                )));
            }
        }
        let now = Instant::now();
        let mut peer = Peer::new(self.me, id, addr, &self.config, now);
        peer.on_time(now, &self.config, &self.shared);
        self.peer_index.insert(id, self.peers.len());
        self.peers.push(peer);
        Ok(())
    }

    /// A handle to watch this transport's counters and connections from any thread.
    pub fn monitor(&self) -> TcpMonitor {
        TcpMonitor {
            shared: Arc::clone(&self.shared),
        }
    }

    /// The counters so far.
    pub fn stats(&self) -> TcpStats {
        self.shared.counters.snapshot(self.shared.authenticated)
    }

    /// Closes the listener and every connection. Frames still queued are lost. Called by
    /// `drop`; calling it twice does nothing.
    pub fn shutdown(&mut self) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.listener = None;
        for (_, conn) in std::mem::take(&mut self.inbound) {
            self.shared.counters.syscalls.count(Syscall::Other);
            let _ = conn.stream.shutdown(Shutdown::Both);
        }
        let now = Instant::now();
        for peer in &mut self.peers {
            peer.close(now);
        }
        self.unflushed.clear();
        self.loopback.clear();
        lock(&self.shared.connected).clear();
    }

    /// Whether a frame is ready to be handed out by `poll`.
    fn frames_ready(&self) -> bool {
        !self.loopback.is_empty() || self.peers.iter().any(Peer::has_frame)
    }

    /// One pass over the sockets: runs what is due, waits at most `timeout` for a socket to
    /// be ready, then accepts, advances dials and handshakes, reads and writes. Returns the
    /// time after the wait.
    fn turn(&mut self, timeout: Duration) -> Result<Instant, TransportError> {
        let now = Instant::now();
        let mut timeout = match self.next_deadline() {
            Some(deadline) => timeout.min(deadline.saturating_duration_since(now)),
            None => timeout,
        };
        self.register_peers(now);
        if self.pump_due() {
            // The poller reports changes only: what is known to be ready goes first.
            timeout = Duration::ZERO;
        }
        self.shared.counters.syscalls.count(Syscall::Wait);
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            // A signal ended the wait early, with nothing ready.
            Err(error) if error.kind() == io::ErrorKind::Interrupted => self.events.clear(),
            Err(error) => return Err(TransportError::io("cannot wait for the sockets", error)),
        }
        let mut ready = std::mem::take(&mut self.ready);
        ready.clear();
        ready.extend(
            self.events
                .iter()
                .map(|event| (event.token(), Readiness::of(event))),
        );
        let now = if timeout.is_zero() {
            now
        } else {
            Instant::now()
        };
        self.service(&ready, now);
        // Deadlines after what the wait found: after a stall of this thread, a handshake
        // whose answer has arrived meanwhile completes rather than times out.
        self.on_time(now);
        self.ready = ready;
        self.looked_at = Some(now);
        Ok(now)
    }

    /// Whether a socket is known to be ready for work that waits: connections to accept,
    /// bytes to read, room for queued frames.
    fn pump_due(&self) -> bool {
        (self.listener_ready && self.accept_paused_until.is_none() && self.listener.is_some())
            || self.peers.iter().any(Peer::pump_due)
    }

    /// Dials peers whose backoff is over, and gives up dials, handshakes and writes that
    /// took too long.
    fn on_time(&mut self, now: Instant) {
        if self.accept_paused_until.is_some_and(|until| now >= until) {
            self.accept_paused_until = None;
        }
        for peer in &mut self.peers {
            peer.on_time(now, &self.config, &self.shared);
        }
        let welcome = Welcome::new(self.me, &self.peer_index, &self.config);
        for conn in self.inbound.values_mut() {
            if now >= conn.handshake_deadline {
                // Fails it (silence), unless the handshake completed meanwhile.
                conn.handshake(&welcome, now, &self.shared.counters.syscalls);
                self.reap_due |= conn.fate.is_some();
            }
        }
        self.reap();
    }

    /// The next instant at which [`on_time`](TcpTransport::on_time) has something to do.
    fn next_deadline(&self) -> Option<Instant> {
        let peers = self
            .peers
            .iter()
            .filter_map(|peer| peer.deadline(&self.config));
        let handshakes = self.inbound.values().map(|conn| conn.handshake_deadline);
        peers
            .chain(handshakes)
            .chain(self.accept_paused_until)
            .min()
    }

    /// Registers the peers' new sockets with the poller, under their peers' tokens. A socket
    /// the poller refuses fails as if an i/o call on it had.
    fn register_peers(&mut self, now: Instant) {
        let registry = self.poll.registry();
        let syscalls = &self.shared.counters.syscalls;
        for (i, peer) in self.peers.iter_mut().enumerate() {
            let Some(how) = peer.register.take() else {
                continue;
            };
            let Some(stream) = peer.stream_mut() else {
                continue;
            };
            let token = Token(PEER_TOKEN | i);
            syscalls.count(Syscall::Other);
            let registered = match how {
                Register::New => registry.register(stream, token, INTEREST),
                Register::Moved => registry.reregister(stream, token, INTEREST),
            };
            if let Err(error) = registered {
                peer.socket_failed(error, now, &self.config, &self.shared);
            }
        }
    }

    /// Acts on what the last wait found ready.
    fn service(&mut self, events: &[(Token, Readiness)], now: Instant) {
        let mut handshaken = Vec::new();
        for &(token, ready) in events {
            if token == LISTENER_TOKEN {
                self.listener_ready = true;
            } else if token.0 & PEER_TOKEN != 0 {
                if let Some(peer) = self.peers.get_mut(token.0 & !PEER_TOKEN) {
                    peer.on_ready(ready, now, &self.config, &self.shared);
                }
            } else {
                self.serve_inbound(token.0, ready, now, &mut handshaken);
            }
        }
        if self.listener_ready && self.accept_paused_until.is_none() {
            self.accept(now, &mut handshaken);
        }
        // Sockets the poller said nothing new of may still be ready: a frame handed out since
        // lets reading go on.
        for peer in &mut self.peers {
            if peer.pump_due() {
                peer.pump(now, &self.shared);
            }
        }
        self.hand_over(&handshaken, now);
        self.reap();
    }

    /// Advances the handshake of an accepted connection: reads the hello, writes the
    /// acknowledgement. Notes the connection in `handshaken` once both are done.
    fn serve_inbound(
        &mut self,
        seq: usize,
        ready: Readiness,
        now: Instant,
        handshaken: &mut Vec<usize>,
    ) {
        let Some(conn) = self.inbound.get_mut(&seq) else {
            return;
        };
        let syscalls = &self.shared.counters.syscalls;
        conn.on_ready(ready, syscalls);
        let welcome = Welcome::new(self.me, &self.peer_index, &self.config);
        conn.handshake(&welcome, now, syscalls);
        if conn.fate.is_some() {
            self.reap_due = true;
            return;
        }
        if conn.complete().is_some() {
            handshaken.push(seq);
        }
    }

    /// Accepts pending connections, and reads the handshakes that came with them.
    fn accept(&mut self, now: Instant, handshaken: &mut Vec<usize>) {
        for _ in 0..ACCEPTS_PER_TURN_MAX {
            let Some(listener) = &self.listener else {
                return;
            };
            let syscalls = &self.shared.counters.syscalls;
            syscalls.count(Syscall::Other);
            // Accepted sockets are non-blocking and kept from child processes already.
            let (mut stream, remote) = match listener.accept() {
                Ok(accepted) => accepted,
                Err(error) => match error.kind() {
                    io::ErrorKind::WouldBlock => {
                        self.listener_ready = false;
                        return;
                    }
                    io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted => continue,
                    _ => {
                        // Usually transient (out of file descriptors): report, and pause
                        // rather than spin on a listener that stays readable.
                        self.shared.log(format!("accept failed: {error}"));
                        self.accept_paused_until = Some(now + ACCEPT_PAUSE);
                        return;
                    }
                },
            };
            bump(&self.shared.counters.inbound_accepted, 1);
            if self.inbound.len() >= self.config.inbound_connections_max {
                bump(&self.shared.counters.inbound_rejected, 1);
                let error =
                    ConnectionError::TooManyConnections(self.config.inbound_connections_max);
                self.shared
                    .log(format!("closed inbound connection from {remote}: {error}"));
                continue;
            }
            syscalls.count(Syscall::Other);
            let _ = stream.set_nodelay(true);
            let seq = self.next_inbound_seq;
            let set_up = socket::set_keepalive(
                &stream,
                self.config.keepalive_idle,
                self.config.write_timeout,
                syscalls,
            )
            .and_then(|()| {
                syscalls.count(Syscall::Other);
                self.poll
                    .registry()
                    .register(&mut stream, Token(seq), INTEREST)
            });
            if let Err(error) = set_up {
                self.shared.log(format!(
                    "cannot serve inbound connection from {remote}: {error}"
                ));
                continue;
            }
            self.next_inbound_seq = (seq + 1) % PEER_TOKEN;
            let deadline = now + self.config.handshake_timeout;
            let conn = InboundConn::new(stream, remote.to_string(), deadline);
            self.inbound.insert(seq, conn);
            // The hello often follows the connect at once: read it in this pass.
            self.serve_inbound(seq, Readiness::BOTH, now, handshaken);
        }
    }

    /// Hands the connections whose handshake completed to their peers, each replacing the
    /// peer's connection or dial, if any (a peer that reconnects replaces its older
    /// connection, which may be half-open).
    fn hand_over(&mut self, handshaken: &[usize], now: Instant) {
        for &seq in handshaken {
            // Its socket leaves the poller when it closes, or is registered again under its
            // peer's token.
            let Some(mut conn) = self.inbound.remove(&seq) else {
                continue;
            };
            let Some(&i) = conn.complete().and_then(|from| self.peer_index.get(&from)) else {
                continue;
            };
            bump(&self.shared.counters.inbound_handshakes, 1);
            let cipher = conn.cipher.take();
            let peer = &mut self.peers[i];
            peer.accepted(conn.stream, conn.buf, cipher, now, &self.shared);
        }
    }

    /// Removes the accepted connections whose handshake failed, counting and reporting why.
    fn reap(&mut self) {
        if !std::mem::take(&mut self.reap_due) {
            return;
        }
        let doomed: Vec<usize> = self
            .inbound
            .iter()
            .filter(|(_, conn)| conn.fate.is_some())
            .map(|(&seq, _)| seq)
            .collect();
        for seq in doomed {
            let Some(mut conn) = self.inbound.remove(&seq) else {
                continue;
            };
            // Closing the socket takes it out of the poller.
            self.shared.counters.syscalls.count(Syscall::Other);
            let _ = conn.stream.shutdown(Shutdown::Both);
            bump(&self.shared.counters.inbound_rejected, 1);
            let Some(error) = conn.fate.take() else {
                continue;
            };
            if error.is_authentication() {
                bump(&self.shared.counters.inbound_auth_failures, 1);
            }
            let who = match conn.peer {
                Some(peer) => format!("{peer} at {}", conn.remote),
                None => conn.remote.clone(),
            };
            self.shared
                .log(format!("closed inbound connection from {who}: {error}"));
        }
    }

    /// Hands out at most `frames_max` buffered frames, taking peers in turn.
    fn deliver_buffered(
        &mut self,
        frames_max: usize,
        deliver: &mut dyn FnMut(NodeId, &[u8]),
    ) -> usize {
        let count = self.peers.len();
        if count == 0 || frames_max == 0 {
            return 0;
        }
        let first = self.deliver_from % count;
        let now = Instant::now();
        let mut handed = Handed::default();
        for i in (first..count).chain(0..first) {
            handed.take(&mut self.peers[i], frames_max, now, &self.shared, deliver);
            if handed.frames == frames_max {
                break;
            }
        }
        // The next call starts one peer further on.
        self.deliver_from = first + 1;
        if handed.frames > 0 {
            bump(&self.shared.counters.frames_received, handed.frames as u64);
            bump(&self.shared.counters.bytes_received, handed.payload_bytes);
        }
        handed.frames
    }

    /// Writes the queues filled since the last flush.
    fn write_unflushed(&mut self) {
        if self.unflushed.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut unflushed = std::mem::take(&mut self.unflushed);
        for &i in &unflushed {
            self.peers[i].write(now, &self.shared);
        }
        unflushed.clear();
        self.unflushed = unflushed;
    }
}

/// What one [`Transport::poll`] handed out so far.
#[derive(Default)]
struct Handed {
    frames: usize,
    payload_bytes: u64,
}

impl Handed {
    /// Hands out the frames buffered for one peer, up to the call's bound; then ends its
    /// connection if what follows them is its end or a bad frame.
    fn take(
        &mut self,
        peer: &mut Peer,
        frames_max: usize,
        now: Instant,
        shared: &Shared,
        deliver: &mut dyn FnMut(NodeId, &[u8]),
    ) {
        let mut took = false;
        while self.frames < frames_max {
            let FrameStatus::Ready(length) = peer.inbox_status() else {
                if peer.read_due() {
                    // The frames read are handed out and the socket has more: read them
                    // now, without asking the poller.
                    peer.pump(now, shared);
                    if peer.has_frame() {
                        continue;
                    }
                }
                break;
            };
            let id = peer.id;
            let inbox = peer.inbox();
            deliver(id, inbox.payload(length));
            inbox.pop_frame(length);
            self.frames += 1;
            self.payload_bytes += length as u64;
            took = true;
        }
        if took {
            peer.settle(now, shared);
        }
    }
}

impl Drop for TcpTransport {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Transport for TcpTransport {
    fn local_id(&self) -> NodeId {
        self.me
    }

    /// Appends the frame to the peer's bounded send queue, for the next
    /// [`flush`](Transport::flush); if the queue is full the frame is dropped
    /// ([`SendError::QueueFull`]). A frame to this node itself goes to its own receive side
    /// without a socket.
    fn send(&mut self, to: NodeId, payload: &[u8]) -> Result<(), SendError> {
        let frame_bytes_max = self.config.frame_bytes_max as usize;
        if payload.len() > frame_bytes_max {
            return Err(SendError::FrameTooLarge {
                frame_bytes: payload.len(),
                frame_bytes_max,
            });
        }
        if self.closed {
            return Err(SendError::Closed);
        }
        if to == self.me {
            if self.loopback.len() >= self.config.recv_queue_frames_max {
                return Err(SendError::QueueFull(to));
            }
            self.loopback.push_back(payload.to_vec());
            return Ok(());
        }
        let &i = self.peer_index.get(&to).ok_or(SendError::UnknownPeer(to))?;
        let queue = &mut self.peers[i].queue;
        if queue.frames() >= self.config.send_queue_frames_max {
            bump(&self.shared.counters.frames_dropped_queue_full, 1);
            return Err(SendError::QueueFull(to));
        }
        if queue.is_empty() {
            self.unflushed.push(i);
        }
        queue.push(payload);
        Ok(())
    }

    /// Writes every queue filled since the last flush, as much as each socket takes
    /// without blocking; what it does not take goes out during later calls, in order.
    /// Queues of peers still being dialed go out once their connection is up.
    fn flush(&mut self) -> Result<(), TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        self.write_unflushed();
        Ok(())
    }

    fn poll(
        &mut self,
        frames_max: usize,
        deliver: &mut dyn FnMut(NodeId, &[u8]),
    ) -> Result<usize, TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        let mut count = 0;
        while count < frames_max {
            let Some(frame) = self.loopback.pop_front() else {
                break;
            };
            deliver(self.me, &frame);
            count += 1;
        }
        if count < frames_max {
            let stale = self
                .looked_at
                .is_none_or(|at| at.elapsed() >= LOOK_AGAIN_AFTER);
            if stale {
                self.turn(Duration::ZERO)?;
            }
            count += self.deliver_buffered(frames_max - count, deliver);
        }
        Ok(count)
    }

    /// Services the sockets (accepts, handshakes, dials, writes left over by `flush`, reads)
    /// until a frame is ready or `timeout` passes.
    fn wait(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        if self.closed {
            return Err(TransportError::Closed);
        }
        self.write_unflushed();
        let timeout = timeout.min(WAIT_MAX);
        let deadline = Instant::now() + timeout;
        let mut left = timeout;
        loop {
            let ready = self.frames_ready();
            let now = self.turn(if ready { Duration::ZERO } else { left })?;
            if ready || self.frames_ready() {
                return Ok(true);
            }
            left = deadline.saturating_duration_since(now);
            if left.is_zero() {
                return Ok(false);
            }
        }
    }
}
