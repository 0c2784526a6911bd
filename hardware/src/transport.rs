//! The [`Transport`] trait: how a node runtime moves opaque frames between nodes.

use rehearsal_sim_core::NodeId;
use std::io;
use std::time::Duration;

/// Moves opaque frames (encoded messages) between nodes. One value is one node's endpoint.
///
/// The contract is that of a lossy datagram network with per-peer FIFO order where the
/// medium provides it (TCP does; DPDK over one queue does): a frame accepted by
/// [`send`](Transport::send) may still be lost (a peer restarts, a queue overflows), but it
/// is never corrupted, duplicated or split. Protocols cope with loss by retransmitting, as
/// they do under the simulator's network models.
///
/// The shape is chosen so that a poll-mode transport (DPDK) and a socket transport (TCP)
/// both fit, and so that the runtime can batch:
///
/// - [`send`](Transport::send) copies the payload (into a send queue, or straight into a
///   packet buffer) and never blocks; [`flush`](Transport::flush) pushes out everything
///   queued since the last flush (one `rte_eth_tx_burst`). The runtime flushes once per
///   step, after it has handled a batch of events.
/// - [`poll`](Transport::poll) hands received frames to a callback that borrows them, so a
///   DPDK transport can pass a view into a packet buffer and free the buffer after the
///   callback returns, without copying.
/// - [`wait`](Transport::wait) blocks (or spins, for a poll-mode driver) until a frame may
///   be ready or the timeout passes; the runtime calls it only when idle.
///
/// A transport is used from one thread at a time; implementations may use threads inside.
/// The node runtime never asks a transport to send to its own id (it loops such messages
/// back itself), but implementations should accept it anyway.
pub trait Transport {
    /// The id of the node this endpoint belongs to.
    fn local_id(&self) -> NodeId;

    /// Queues `payload` for `to`, copying it. Never blocks.
    ///
    /// An error means the frame was not queued and is lost; it is not fatal to the
    /// transport, and the runtime counts it as a dropped message.
    fn send(&mut self, to: NodeId, payload: &[u8]) -> Result<(), SendError>;

    /// Pushes out everything queued by [`send`](Transport::send) since the last flush.
    /// Transports that send as they go need not override this.
    fn flush(&mut self) -> Result<(), TransportError> {
        Ok(())
    }

    /// Hands at most `frames_max` received frames to `deliver` as `(sender, payload)`,
    /// without blocking, and returns how many it handed over. The payload is borrowed only
    /// for the duration of the call.
    fn poll(
        &mut self,
        frames_max: usize,
        deliver: &mut dyn FnMut(NodeId, &[u8]),
    ) -> Result<usize, TransportError>;

    /// Waits until a frame may be ready to [`poll`](Transport::poll), or `timeout` passes.
    /// Returns whether a frame is ready; `false` after a timeout. Spurious `true` returns
    /// are allowed.
    fn wait(&mut self, timeout: Duration) -> Result<bool, TransportError>;
}

impl<T: Transport + ?Sized> Transport for Box<T> {
    fn local_id(&self) -> NodeId {
        (**self).local_id()
    }
    fn send(&mut self, to: NodeId, payload: &[u8]) -> Result<(), SendError> {
        (**self).send(to, payload)
    }
    fn flush(&mut self) -> Result<(), TransportError> {
        (**self).flush()
    }
    fn poll(
        &mut self,
        frames_max: usize,
        deliver: &mut dyn FnMut(NodeId, &[u8]),
    ) -> Result<usize, TransportError> {
        (**self).poll(frames_max, deliver)
    }
    fn wait(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        (**self).wait(timeout)
    }
}

/// Why one frame was not queued by [`Transport::send`]. The frame is lost; the transport
/// keeps working.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The transport has no route (no address, no endpoint) for this node.
    #[error("no route to {0}")]
    UnknownPeer(NodeId),
    /// The bounded send queue towards this node is full: the frame is dropped, as a lossy
    /// network would drop it.
    #[error("send queue to {0} is full")]
    QueueFull(NodeId),
    /// The frame is larger than the transport carries.
    #[error("frame of {frame_bytes} bytes exceeds the maximum of {frame_bytes_max} bytes")]
    FrameTooLarge {
        /// Size of the refused payload.
        frame_bytes: usize,
        /// The transport's limit.
        frame_bytes_max: usize,
    },
    /// The transport was shut down.
    #[error("transport is closed")]
    Closed,
}

/// A failure of the transport as a whole (not of one frame or one connection).
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// An operating-system call failed.
    #[error("{context}: {source}")]
    Io {
        /// What the transport was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// This node id is already configured as a peer.
    #[error("peer {0} is already configured")]
    PeerExists(NodeId),
    /// The node id is this endpoint's own id, which cannot be its own peer.
    #[error("{0} is this endpoint's own id")]
    OwnId(NodeId),
    /// The requested endpoint does not exist or was already handed out.
    #[error("endpoint {0} does not exist or was already taken")]
    NoEndpoint(NodeId),
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The transport was shut down.
    #[error("transport is closed")]
    Closed,
}

impl TransportError {
    /// An [`Io`](TransportError::Io) error with a description of what was being done.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        TransportError::Io {
            context: context.into(),
            source,
        }
    }
}
