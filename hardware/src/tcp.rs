//! A TCP transport on `std::net` and threads.
//!
//! Each node listens on one address and dials every peer in its peer table. Connections are
//! one-way (see [`crate::wire`]): the connection a node dials carries its frames to that
//! peer, and the connections it accepts carry frames to it. Per peer there is one writer
//! thread, fed by a bounded send queue, that dials, handshakes, writes frames in batches,
//! and reconnects with exponential backoff when the connection fails. Per accepted
//! connection there is one reader thread that checks the handshake and feeds frames into
//! one bounded receive queue, which [`Transport::poll`] drains.
//!
//! Nothing a remote party sends can stop the node: a bad handshake (wrong magic or version,
//! unknown node id, wrong destination), an oversized or truncated frame, or an i/o error
//! closes that one connection, is counted in [`TcpStats`] and logged, and the node goes on
//! serving everyone else. Node ids in handshakes are not authenticated: this transport is
//! for trusted networks.

use crate::transport::{SendError, Transport, TransportError};
use crate::wire::{self, Ack, ConnectionError, Hello, ACK_BYTES, HELLO_BYTES};
use rehearsal_sim_core::NodeId;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Default largest frame payload, in bytes (16 MiB).
pub const TCP_FRAME_BYTES_MAX_DEFAULT: u32 = 16 << 20;

/// How many recent connection errors a [`TcpTransport`] keeps for
/// [`TcpMonitor::recent_errors`].
pub const RECENT_ERRORS_MAX: usize = 256;

/// Frames a writer thread writes before it flushes the socket, at most.
const WRITE_BATCH_FRAMES_MAX: usize = 64;

/// Socket buffer size of readers and writers, in bytes.
const SOCKET_BUFFER_BYTES: usize = 64 << 10;

/// How often an idle writer checks that its connection is still open and that the
/// transport is not shutting down.
const WRITER_IDLE_TICK: Duration = Duration::from_millis(100);

/// Longest sleep between checks of the shutdown flag.
const SHUTDOWN_TICK: Duration = Duration::from_millis(10);

/// Settings of a [`TcpTransport`].
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Largest frame payload sent or accepted, in bytes. A larger outgoing frame is refused
    /// by [`Transport::send`]; a larger incoming length prefix closes the connection.
    pub frame_bytes_max: u32,
    /// Bound of each peer's send queue, in frames. When it is full (the peer is slow,
    /// unreachable or reconnecting), [`Transport::send`] drops the frame and returns
    /// [`SendError::QueueFull`], as a lossy network would; protocols retransmit.
    pub send_queue_frames_max: usize,
    /// Bound of the receive queue shared by all inbound connections, in frames. When it is
    /// full, readers stop reading, and TCP flow control slows the senders down.
    pub recv_queue_frames_max: usize,
    /// Inbound connections open at once, at most; more are closed at once.
    pub inbound_connections_max: usize,
    /// Time allowed to establish an outbound TCP connection.
    pub connect_timeout: Duration,
    /// Time allowed for either side of the handshake.
    pub handshake_timeout: Duration,
    /// Time a write may block before the connection counts as failed.
    pub write_timeout: Duration,
    /// First delay before redialing a peer after a failure.
    pub reconnect_backoff_min: Duration,
    /// Largest delay between redials; the delay doubles after each failure up to this.
    pub reconnect_backoff_max: Duration,
    /// Print connection errors to stderr (they are counted and kept either way).
    pub log_errors: bool,
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
            reconnect_backoff_min: Duration::from_millis(10),
            reconnect_backoff_max: Duration::from_secs(1),
            log_errors: true,
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
        if self.reconnect_backoff_min.is_zero()
            || self.reconnect_backoff_min > self.reconnect_backoff_max
        {
            return fail("need 0 < reconnect_backoff_min <= reconnect_backoff_max");
        }
        Ok(())
    }
}

/// Counters of a [`TcpTransport`]. Frame and byte counts are payloads (no length prefix).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpStats {
    /// Inbound TCP connections accepted (before their handshake).
    pub inbound_accepted: u64,
    /// Inbound handshakes that succeeded.
    pub inbound_handshakes: u64,
    /// Inbound connections closed because of their handshake: bad magic or version,
    /// unknown node id, wrong destination, silence, or too many connections.
    pub inbound_rejected: u64,
    /// Established inbound connections closed by an error (oversized or truncated frame,
    /// i/o error).
    pub inbound_failed: u64,
    /// Established inbound connections the peer closed cleanly.
    pub inbound_closed: u64,
    /// Frames whose length prefix exceeded the maximum (their connection was closed).
    pub frames_oversized: u64,
    /// Frames cut short by the end of their connection.
    pub frames_truncated: u64,
    /// Outbound connections established (handshake acknowledged).
    pub outbound_connects: u64,
    /// Outbound dials or handshakes that failed.
    pub outbound_connect_failures: u64,
    /// Established outbound connections that failed (and were redialed).
    pub outbound_failures: u64,
    /// Frames written to sockets.
    pub frames_sent: u64,
    /// Payload bytes written to sockets.
    pub bytes_sent: u64,
    /// Frames received and queued for [`Transport::poll`].
    pub frames_received: u64,
    /// Payload bytes received.
    pub bytes_received: u64,
    /// Frames dropped by [`Transport::send`] because the peer's send queue was full.
    pub frames_dropped_queue_full: u64,
    /// Frames lost because their connection failed while writing them.
    pub frames_lost: u64,
}

#[derive(Default)]
struct Counters {
    inbound_accepted: AtomicU64,
    inbound_handshakes: AtomicU64,
    inbound_rejected: AtomicU64,
    inbound_failed: AtomicU64,
    inbound_closed: AtomicU64,
    frames_oversized: AtomicU64,
    frames_truncated: AtomicU64,
    outbound_connects: AtomicU64,
    outbound_connect_failures: AtomicU64,
    outbound_failures: AtomicU64,
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
    frames_dropped_queue_full: AtomicU64,
    frames_lost: AtomicU64,
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    fn snapshot(&self) -> TcpStats {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TcpStats {
            inbound_accepted: get(&self.inbound_accepted),
            inbound_handshakes: get(&self.inbound_handshakes),
            inbound_rejected: get(&self.inbound_rejected),
            inbound_failed: get(&self.inbound_failed),
            inbound_closed: get(&self.inbound_closed),
            frames_oversized: get(&self.frames_oversized),
            frames_truncated: get(&self.frames_truncated),
            outbound_connects: get(&self.outbound_connects),
            outbound_connect_failures: get(&self.outbound_connect_failures),
            outbound_failures: get(&self.outbound_failures),
            frames_sent: get(&self.frames_sent),
            bytes_sent: get(&self.bytes_sent),
            frames_received: get(&self.frames_received),
            bytes_received: get(&self.bytes_received),
            frames_dropped_queue_full: get(&self.frames_dropped_queue_full),
            frames_lost: get(&self.frames_lost),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // The guarded maps stay consistent at every await point, so a lock poisoned by a
    // panicking thread is taken over rather than propagated.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct InboundConn {
    /// The peer, once its handshake passed.
    peer: Option<NodeId>,
    /// A handle to shut the socket down from another thread.
    stream: TcpStream,
}

#[derive(Default)]
struct Inbound {
    next_id: u64,
    conns: BTreeMap<u64, InboundConn>,
    threads: Vec<JoinHandle<()>>,
}

/// State shared by the transport and its threads.
struct Shared {
    me: NodeId,
    config: TcpConfig,
    shutdown: AtomicBool,
    /// Node ids whose handshakes are accepted: the peer table.
    known: RwLock<BTreeSet<NodeId>>,
    inbound: Mutex<Inbound>,
    /// Established outbound connections, to report them and shut them down.
    outbound: Mutex<BTreeMap<NodeId, TcpStream>>,
    counters: Counters,
    errors: Mutex<VecDeque<String>>,
}

impl Shared {
    fn is_shutting_down(&self) -> bool {
        self.shutdown.load(Ordering::SeqCst)
    }

    fn log(&self, message: String) {
        if self.config.log_errors {
            eprintln!("rehearsal-hardware tcp {}: {message}", self.me);
        }
        let mut errors = lock(&self.errors);
        if errors.len() >= RECENT_ERRORS_MAX {
            errors.pop_front();
        }
        errors.push_back(message);
    }

    fn is_known(&self, id: NodeId) -> bool {
        id != self.me
            && self
                .known
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .contains(&id)
    }

    /// Sleeps for `duration`, waking early (returning `false`) if the transport shuts down.
    fn sleep(&self, duration: Duration) -> bool {
        let until = Instant::now() + duration;
        loop {
            if self.is_shutting_down() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            thread::sleep((until - now).min(SHUTDOWN_TICK));
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
        self.shared.counters.snapshot()
    }

    /// The most recent connection errors (at most [`RECENT_ERRORS_MAX`]), oldest first.
    pub fn recent_errors(&self) -> Vec<String> {
        lock(&self.shared.errors).iter().cloned().collect()
    }

    /// Peers this node currently has an established outbound connection to.
    pub fn connected_peers(&self) -> BTreeSet<NodeId> {
        lock(&self.shared.outbound).keys().copied().collect()
    }

    /// Peers with an established inbound connection to this node.
    pub fn inbound_peers(&self) -> BTreeSet<NodeId> {
        lock(&self.shared.inbound)
            .conns
            .values()
            .filter_map(|conn| conn.peer)
            .collect()
    }
}

struct Peer {
    addr: SocketAddr,
    queue: Option<SyncSender<Vec<u8>>>,
    writer: Option<JoinHandle<()>>,
}

type Frame = (NodeId, Vec<u8>);

/// A [`Transport`] over TCP: length-prefixed frames on one outbound connection per peer,
/// with reconnection, bounded queues and a frame size limit (see the module docs).
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
    shared: Arc<Shared>,
    /// `None` once shut down.
    inbox: Option<Receiver<Frame>>,
    /// Frames taken out of the inbox by `wait`, and frames sent to this node itself.
    stash: VecDeque<Frame>,
    peers: BTreeMap<NodeId, Peer>,
    acceptor: Option<JoinHandle<()>>,
}

impl TcpTransport {
    /// Listens on `listen` as node `me` (port 0 picks a free port; see
    /// [`local_addr`](TcpTransport::local_addr)), with no peers yet: add them with
    /// [`add_peer`](TcpTransport::add_peer). Until a peer is added its handshakes are
    /// refused (it retries with backoff); to know every peer from the first connection
    /// on, use [`from_peer_table`](TcpTransport::from_peer_table) or
    /// [`with_listener`](TcpTransport::with_listener).
    pub fn bind(me: NodeId, listen: SocketAddr, config: TcpConfig) -> Result<Self, TransportError> {
        let listener = TcpListener::bind(listen)
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
        let listener = TcpListener::bind(listen)
            .map_err(|error| TransportError::io(format!("cannot listen on {listen}"), error))?;
        TcpTransport::with_listener(me, listener, peers, config)
    }

    /// Node `me` serving on an already bound `listener`, with every entry of `peers` but
    /// `me` as a peer. Binding first lets a process pick free ports (port 0) for all its
    /// nodes, build the peer table from their addresses, and then start them.
    pub fn with_listener(
        me: NodeId,
        listener: TcpListener,
        peers: &BTreeMap<NodeId, SocketAddr>,
        config: TcpConfig,
    ) -> Result<Self, TransportError> {
        config.validate()?;
        let local_addr = listener
            .local_addr()
            .map_err(|error| TransportError::io("cannot read the listening address", error))?;
        let (inbox_tx, inbox) = mpsc::sync_channel(config.recv_queue_frames_max);
        let known = peers.keys().copied().filter(|&id| id != me).collect();
        let shared = Arc::new(Shared {
            me,
            config,
            shutdown: AtomicBool::new(false),
            known: RwLock::new(known),
            inbound: Mutex::new(Inbound::default()),
            outbound: Mutex::new(BTreeMap::new()),
            counters: Counters::default(),
            errors: Mutex::new(VecDeque::new()),
        });
        let acceptor_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("tcp-accept-{me}"))
            .spawn(move || accept_loop(&acceptor_shared, &listener, &inbox_tx))
            .map_err(|error| TransportError::io("cannot start the acceptor thread", error))?;
        let mut transport = TcpTransport {
            me,
            local_addr,
            shared,
            inbox: Some(inbox),
            stash: VecDeque::new(),
            peers: BTreeMap::new(),
            acceptor: Some(acceptor),
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
        self.peers.get(&id).map(|peer| peer.addr)
    }

    /// Adds a peer: its handshakes are accepted from now on, and a writer thread starts
    /// dialing `addr` (retrying with backoff until the peer is up).
    pub fn add_peer(&mut self, id: NodeId, addr: SocketAddr) -> Result<(), TransportError> {
        if id == self.me {
            return Err(TransportError::OwnId(id));
        }
        if self.peers.contains_key(&id) {
            return Err(TransportError::PeerExists(id));
        }
        if self.inbox.is_none() {
            return Err(TransportError::Closed);
        }
        let (queue, frames) = mpsc::sync_channel(self.shared.config.send_queue_frames_max);
        let shared = Arc::clone(&self.shared);
        let writer = thread::Builder::new()
            .name(format!("tcp-out-{}-{id}", self.me))
            .spawn(move || outbound_loop(&shared, id, addr, &frames))
            .map_err(|error| TransportError::io("cannot start a writer thread", error))?;
        self.shared
            .known
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id);
        self.peers.insert(
            id,
            Peer {
                addr,
                queue: Some(queue),
                writer: Some(writer),
            },
        );
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
        self.shared.counters.snapshot()
    }

    /// Closes every connection and stops every thread, waiting for them (at most about the
    /// connect or write timeout, for a thread caught in one). Frames still queued are lost.
    /// Called by `drop`; calling it twice does nothing.
    pub fn shutdown(&mut self) {
        if self.shared.shutdown.swap(true, Ordering::SeqCst) {
            return;
        }
        // Readers blocked on a full receive queue wake up when the queue goes away.
        self.inbox = None;
        self.stash.clear();
        for peer in self.peers.values_mut() {
            peer.queue = None;
        }
        // The acceptor blocks in `accept`: wake it with a connection of our own.
        let wake_ip = match self.local_addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let wake_addr = SocketAddr::new(wake_ip, self.local_addr.port());
        let _ = TcpStream::connect_timeout(&wake_addr, self.shared.config.connect_timeout);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
        let readers = {
            let mut inbound = lock(&self.shared.inbound);
            for conn in inbound.conns.values() {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
            std::mem::take(&mut inbound.threads)
        };
        for stream in lock(&self.shared.outbound).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for reader in readers {
            let _ = reader.join();
        }
        for peer in self.peers.values_mut() {
            if let Some(writer) = peer.writer.take() {
                let _ = writer.join();
            }
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

    /// Queues the frame on the peer's bounded send queue; if the queue is full the frame is
    /// dropped ([`SendError::QueueFull`]). A frame to this node itself is delivered to its
    /// own receive side without a socket.
    fn send(&mut self, to: NodeId, payload: &[u8]) -> Result<(), SendError> {
        let frame_bytes_max = self.shared.config.frame_bytes_max as usize;
        if payload.len() > frame_bytes_max {
            return Err(SendError::FrameTooLarge {
                frame_bytes: payload.len(),
                frame_bytes_max,
            });
        }
        if self.inbox.is_none() {
            return Err(SendError::Closed);
        }
        if to == self.me {
            if self.stash.len() >= self.shared.config.recv_queue_frames_max {
                return Err(SendError::QueueFull(to));
            }
            self.stash.push_back((to, payload.to_vec()));
            return Ok(());
        }
        let queue = self
            .peers
            .get(&to)
            .and_then(|peer| peer.queue.as_ref())
            .ok_or(SendError::UnknownPeer(to))?;
        let mut frame = Vec::new();
        wire::encode_frame(payload, &mut frame).map_err(|_| SendError::FrameTooLarge {
            frame_bytes: payload.len(),
            frame_bytes_max,
        })?;
        match queue.try_send(frame) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                bump(&self.shared.counters.frames_dropped_queue_full, 1);
                Err(SendError::QueueFull(to))
            }
            Err(TrySendError::Disconnected(_)) => Err(SendError::Closed),
        }
    }

    fn poll(
        &mut self,
        frames_max: usize,
        deliver: &mut dyn FnMut(NodeId, &[u8]),
    ) -> Result<usize, TransportError> {
        let inbox = self.inbox.as_ref().ok_or(TransportError::Closed)?;
        let mut count = 0;
        while count < frames_max {
            let (from, payload) = match self.stash.pop_front() {
                Some(frame) => frame,
                None => match inbox.try_recv() {
                    Ok(frame) => frame,
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return Err(TransportError::Closed),
                },
            };
            deliver(from, &payload);
            count += 1;
        }
        Ok(count)
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        if !self.stash.is_empty() {
            return Ok(true);
        }
        let inbox = self.inbox.as_ref().ok_or(TransportError::Closed)?;
        match inbox.recv_timeout(timeout) {
            Ok(frame) => {
                self.stash.push_back(frame);
                Ok(true)
            }
            Err(RecvTimeoutError::Timeout) => Ok(false),
            Err(RecvTimeoutError::Disconnected) => Err(TransportError::Closed),
        }
    }
}

// ---- Inbound side ---------------------------------------------------------------------

fn accept_loop(shared: &Arc<Shared>, listener: &TcpListener, inbox: &SyncSender<Frame>) {
    for incoming in listener.incoming() {
        if shared.is_shutting_down() {
            return;
        }
        match incoming {
            Ok(stream) => {
                bump(&shared.counters.inbound_accepted, 1);
                start_reader(shared, stream, inbox);
            }
            Err(error) => {
                // Usually transient (out of file descriptors, a connection reset before
                // accept): report and carry on, without spinning.
                shared.log(format!("accept failed: {error}"));
                shared.sleep(SHUTDOWN_TICK);
            }
        }
    }
}

fn start_reader(shared: &Arc<Shared>, stream: TcpStream, inbox: &SyncSender<Frame>) {
    let remote = stream.peer_addr().map_or_else(
        |_| "an unknown address".to_string(),
        |addr| addr.to_string(),
    );
    let mut inbound = lock(&shared.inbound);
    inbound.threads.retain(|thread| !thread.is_finished());
    if inbound.conns.len() >= shared.config.inbound_connections_max {
        drop(inbound);
        bump(&shared.counters.inbound_rejected, 1);
        let error = ConnectionError::TooManyConnections(shared.config.inbound_connections_max);
        shared.log(format!("closed inbound connection from {remote}: {error}"));
        return;
    }
    let handle = match stream.try_clone() {
        Ok(handle) => handle,
        Err(error) => {
            drop(inbound);
            shared.log(format!(
                "cannot serve inbound connection from {remote}: {error}"
            ));
            return;
        }
    };
    let id = inbound.next_id;
    inbound.next_id += 1;
    inbound.conns.insert(
        id,
        InboundConn {
            peer: None,
            stream: handle,
        },
    );
    let reader_shared = Arc::clone(shared);
    let reader_inbox = inbox.clone();
    let spawned = thread::Builder::new()
        .name(format!("tcp-in-{}", shared.me))
        .spawn(move || serve_inbound(&reader_shared, &stream, id, &remote, &reader_inbox));
    match spawned {
        Ok(thread) => inbound.threads.push(thread),
        Err(error) => {
            inbound.conns.remove(&id);
            drop(inbound);
            shared.log(format!("cannot start a reader thread: {error}"));
        }
    }
}

fn serve_inbound(
    shared: &Shared,
    stream: &TcpStream,
    id: u64,
    remote: &str,
    inbox: &SyncSender<Frame>,
) {
    let mut peer = None;
    let result = inbound_session(shared, stream, id, inbox, &mut peer);
    let still_registered = lock(&shared.inbound).conns.remove(&id).is_some();
    let _ = stream.shutdown(Shutdown::Both);
    if shared.is_shutting_down() {
        return;
    }
    let who = match peer {
        Some(peer) => format!("{peer} at {remote}"),
        None => remote.to_string(),
    };
    let error = match result {
        Ok(()) => {
            if peer.is_some() {
                bump(&shared.counters.inbound_closed, 1);
            }
            return;
        }
        // A newer connection from the same peer replaced this one: not an error.
        Err(_) if !still_registered => return,
        Err(error) => error,
    };
    let counters = &shared.counters;
    match &error {
        ConnectionError::FrameTooLarge { .. } => {
            bump(&counters.frames_oversized, 1);
            bump(&counters.inbound_failed, 1);
        }
        ConnectionError::Truncated { .. } => {
            bump(&counters.frames_truncated, 1);
            bump(&counters.inbound_failed, 1);
        }
        ConnectionError::Io(_) => bump(&counters.inbound_failed, 1),
        ConnectionError::BadMagic { .. }
        | ConnectionError::BadVersion { .. }
        | ConnectionError::UnknownPeer(_)
        | ConnectionError::WrongDestination { .. }
        | ConnectionError::WrongPeer { .. }
        | ConnectionError::Handshake(_)
        | ConnectionError::TooManyConnections(_) => bump(&counters.inbound_rejected, 1),
    }
    shared.log(format!("closed inbound connection from {who}: {error}"));
}

/// Checks the handshake, then moves frames into the receive queue until the connection
/// ends. `Ok` means a clean end (or the transport went away).
fn inbound_session(
    shared: &Shared,
    stream: &TcpStream,
    id: u64,
    inbox: &SyncSender<Frame>,
    peer: &mut Option<NodeId>,
) -> Result<(), ConnectionError> {
    let me = shared.me;
    let _ = stream.set_nodelay(true);
    stream.set_read_timeout(Some(shared.config.handshake_timeout))?;
    stream.set_write_timeout(Some(shared.config.handshake_timeout))?;
    let mut hello = [0u8; HELLO_BYTES];
    let mut reader = stream;
    reader
        .read_exact(&mut hello)
        .map_err(ConnectionError::Handshake)?;
    let hello = Hello::decode(&hello)?;
    if hello.to != me {
        return Err(ConnectionError::WrongDestination { to: hello.to, me });
    }
    if !shared.is_known(hello.from) {
        return Err(ConnectionError::UnknownPeer(hello.from));
    }
    let from = hello.from;
    *peer = Some(from);
    let mut writer = stream;
    writer
        .write_all(&Ack { from: me }.encode())
        .map_err(ConnectionError::Handshake)?;
    stream.set_read_timeout(None)?;
    {
        let mut inbound = lock(&shared.inbound);
        // A peer that reconnects replaces its older connection, which may be half-open.
        let older: Vec<u64> = inbound
            .conns
            .iter()
            .filter(|&(&other, conn)| other != id && conn.peer == Some(from))
            .map(|(&other, _)| other)
            .collect();
        for other in older {
            if let Some(conn) = inbound.conns.remove(&other) {
                let _ = conn.stream.shutdown(Shutdown::Both);
            }
        }
        match inbound.conns.get_mut(&id) {
            Some(conn) => conn.peer = Some(from),
            None => return Ok(()), // closed meanwhile
        }
    }
    bump(&shared.counters.inbound_handshakes, 1);

    let mut reader = BufReader::with_capacity(SOCKET_BUFFER_BYTES, stream);
    loop {
        let mut payload = Vec::new();
        if !wire::read_frame(&mut reader, shared.config.frame_bytes_max, &mut payload)? {
            return Ok(());
        }
        let payload_bytes = payload.len() as u64;
        if inbox.send((from, payload)).is_err() {
            return Ok(()); // the transport is gone
        }
        bump(&shared.counters.frames_received, 1);
        bump(&shared.counters.bytes_received, payload_bytes);
    }
}

// ---- Outbound side --------------------------------------------------------------------

/// How a connection's pumping ended.
enum PumpEnd {
    /// The transport is shutting down: stop.
    Shutdown,
    /// The connection failed; `frames_lost` frames went with it. Redial.
    Failed { error: io::Error, frames_lost: u64 },
}

fn outbound_loop(shared: &Shared, peer: NodeId, addr: SocketAddr, frames: &Receiver<Vec<u8>>) {
    let mut backoff = shared.config.reconnect_backoff_min;
    let mut failures_in_a_row: u64 = 0;
    while !shared.is_shutting_down() {
        let stream = match dial(shared, peer, addr) {
            Ok(stream) => stream,
            Err(error) => {
                bump(&shared.counters.outbound_connect_failures, 1);
                if failures_in_a_row == 0 {
                    shared.log(format!(
                        "cannot connect to {peer} at {addr}: {error}; retrying with backoff"
                    ));
                }
                failures_in_a_row += 1;
                if !shared.sleep(backoff) {
                    return;
                }
                backoff = (backoff * 2).min(shared.config.reconnect_backoff_max);
                continue;
            }
        };
        if failures_in_a_row > 0 {
            shared.log(format!(
                "connected to {peer} at {addr} after {failures_in_a_row} failed attempts"
            ));
        }
        failures_in_a_row = 0;
        backoff = shared.config.reconnect_backoff_min;
        bump(&shared.counters.outbound_connects, 1);
        if let Ok(handle) = stream.try_clone() {
            lock(&shared.outbound).insert(peer, handle);
        }
        let end = pump(shared, stream, frames);
        lock(&shared.outbound).remove(&peer);
        match end {
            PumpEnd::Shutdown => return,
            PumpEnd::Failed { error, frames_lost } => {
                if shared.is_shutting_down() {
                    return;
                }
                bump(&shared.counters.outbound_failures, 1);
                bump(&shared.counters.frames_lost, frames_lost);
                shared.log(format!(
                    "connection to {peer} at {addr} failed ({frames_lost} frames lost): {error}; \
                     reconnecting"
                ));
            }
        }
    }
}

/// Connects to `peer` and completes the handshake.
fn dial(shared: &Shared, peer: NodeId, addr: SocketAddr) -> Result<TcpStream, ConnectionError> {
    let config = &shared.config;
    let stream = TcpStream::connect_timeout(&addr, config.connect_timeout)?;
    let _ = stream.set_nodelay(true);
    stream.set_write_timeout(Some(config.handshake_timeout))?;
    stream.set_read_timeout(Some(config.handshake_timeout))?;
    let mut writer = &stream;
    writer.write_all(
        &Hello {
            from: shared.me,
            to: peer,
        }
        .encode(),
    )?;
    let mut ack = [0u8; ACK_BYTES];
    let mut reader = &stream;
    reader
        .read_exact(&mut ack)
        .map_err(ConnectionError::Handshake)?;
    let ack = Ack::decode(&ack)?;
    if ack.from != peer {
        return Err(ConnectionError::WrongPeer {
            expected: peer,
            found: ack.from,
        });
    }
    stream.set_write_timeout(Some(config.write_timeout))?;
    Ok(stream)
}

/// Writes queued frames to `stream` in batches until the connection fails or the transport
/// shuts down.
fn pump(shared: &Shared, stream: TcpStream, frames: &Receiver<Vec<u8>>) -> PumpEnd {
    let mut writer = BufWriter::with_capacity(SOCKET_BUFFER_BYTES, stream);
    loop {
        let first = match frames.recv_timeout(WRITER_IDLE_TICK) {
            Ok(frame) => frame,
            Err(RecvTimeoutError::Timeout) => {
                if shared.is_shutting_down() {
                    return PumpEnd::Shutdown;
                }
                if let Err(error) = check_open(writer.get_ref()) {
                    return PumpEnd::Failed {
                        error,
                        frames_lost: 0,
                    };
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return PumpEnd::Shutdown,
        };
        let mut batch_frames: u64 = 0;
        let mut batch_bytes: u64 = 0;
        let mut next = Some(first);
        while let Some(frame) = next.take() {
            batch_frames += 1;
            batch_bytes += (frame.len() - wire::FRAME_HEADER_BYTES) as u64;
            if let Err(error) = writer.write_all(&frame) {
                return PumpEnd::Failed {
                    error,
                    frames_lost: batch_frames,
                };
            }
            if batch_frames < WRITE_BATCH_FRAMES_MAX as u64 {
                next = frames.try_recv().ok();
            }
        }
        if let Err(error) = writer.flush() {
            return PumpEnd::Failed {
                error,
                frames_lost: batch_frames,
            };
        }
        bump(&shared.counters.frames_sent, batch_frames);
        bump(&shared.counters.bytes_sent, batch_bytes);
    }
}

/// Checks, without blocking, that the acceptor has not closed an idle connection (it never
/// sends anything after its handshake answer), so that a restarted peer is redialed before
/// the next frame is written into the dead connection.
fn check_open(stream: &TcpStream) -> io::Result<()> {
    stream.set_nonblocking(true)?;
    let mut probe = [0u8; 1];
    let result = stream.peek(&mut probe);
    stream.set_nonblocking(false)?;
    match result {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "the peer closed the connection",
        )),
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the peer sent data on a send-only connection",
        )),
        Err(error) if error.kind() == io::ErrorKind::WouldBlock => Ok(()),
        Err(error) => Err(error),
    }
}
