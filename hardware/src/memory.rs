//! An in-memory transport: a hub connecting endpoints in one process, for tests.

use crate::transport::{SendError, Transport, TransportError};
use rehearsal_sim_core::NodeId;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Default bound of each endpoint's receive queue, in frames.
pub const MEMORY_QUEUE_FRAMES_MAX_DEFAULT: usize = 65_536;

/// Default largest frame a memory endpoint accepts, in bytes (as for TCP: 16 MiB).
pub const MEMORY_FRAME_BYTES_MAX_DEFAULT: usize = 16 << 20;

/// One endpoint's receive queue.
struct Mailbox {
    frames: Mutex<VecDeque<(NodeId, Vec<u8>)>>,
    arrived: Condvar,
}

struct Hub {
    mailboxes: Vec<Mailbox>,
    taken: Mutex<Vec<bool>>,
    queue_frames_max: usize,
    frame_bytes_max: usize,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding a queue lock cannot leave a VecDeque half-updated in a way that
    // matters here, so a poisoned lock is simply taken over.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    fn deliver(&self, from: NodeId, to: NodeId, payload: &[u8]) -> Result<(), SendError> {
        if payload.len() > self.frame_bytes_max {
            return Err(SendError::FrameTooLarge {
                frame_bytes: payload.len(),
                frame_bytes_max: self.frame_bytes_max,
            });
        }
        let mailbox = self
            .mailboxes
            .get(to.index())
            .ok_or(SendError::UnknownPeer(to))?;
        let mut frames = lock(&mailbox.frames);
        if frames.len() >= self.queue_frames_max {
            return Err(SendError::QueueFull(to));
        }
        frames.push_back((from, payload.to_vec()));
        drop(frames);
        mailbox.arrived.notify_all();
        Ok(())
    }
}

/// Connects nodes `0..node_count` of one process through bounded in-memory queues.
///
/// Frames between two endpoints arrive in the order sent, and are never lost unless the
/// receiver's queue is full (then [`Transport::send`] returns [`SendError::QueueFull`]).
/// Endpoints are `Send`, so each can be driven from its own thread.
///
/// ```
/// use rehearsal_hardware::{MemoryHub, Transport};
/// use rehearsal_sim_core::NodeId;
/// use std::time::Duration;
///
/// let hub = MemoryHub::new(2);
/// let mut a = hub.endpoint(NodeId(0)).unwrap();
/// let mut b = hub.endpoint(NodeId(1)).unwrap();
/// a.send(NodeId(1), b"hello").unwrap();
/// assert!(b.wait(Duration::from_secs(1)).unwrap());
/// let mut got = Vec::new();
/// b.poll(16, &mut |from, bytes| got.push((from, bytes.to_vec()))).unwrap();
/// assert_eq!(got, vec![(NodeId(0), b"hello".to_vec())]);
/// ```
#[derive(Clone)]
pub struct MemoryHub {
    hub: Arc<Hub>,
}

impl MemoryHub {
    /// A hub for nodes `0..node_count`, with the default limits.
    pub fn new(node_count: u32) -> Self {
        Self::with_limits(
            node_count,
            MEMORY_QUEUE_FRAMES_MAX_DEFAULT,
            MEMORY_FRAME_BYTES_MAX_DEFAULT,
        )
    }

    /// A hub for nodes `0..node_count` whose receive queues hold at most `queue_frames_max`
    /// frames each and which carries frames of at most `frame_bytes_max` bytes.
    pub fn with_limits(node_count: u32, queue_frames_max: usize, frame_bytes_max: usize) -> Self {
        let mailboxes = (0..node_count)
            .map(|_| Mailbox {
                frames: Mutex::new(VecDeque::new()),
                arrived: Condvar::new(),
            })
            .collect();
        MemoryHub {
            hub: Arc::new(Hub {
                mailboxes,
                taken: Mutex::new(vec![false; node_count as usize]),
                queue_frames_max,
                frame_bytes_max,
            }),
        }
    }

    /// Number of nodes the hub connects.
    pub fn node_count(&self) -> u32 {
        self.hub.mailboxes.len() as u32
    }

    /// The endpoint of node `id`. Each endpoint can be taken once.
    pub fn endpoint(&self, id: NodeId) -> Result<MemoryTransport, TransportError> {
        let mut taken = lock(&self.hub.taken);
        match taken.get_mut(id.index()) {
            Some(slot) if !*slot => {
                *slot = true;
                Ok(MemoryTransport {
                    me: id,
                    hub: Arc::clone(&self.hub),
                    scratch: VecDeque::new(),
                })
            }
            _ => Err(TransportError::NoEndpoint(id)),
        }
    }

    /// The endpoints of every node not yet taken, in id order.
    pub fn endpoints(&self) -> Vec<MemoryTransport> {
        (0..self.node_count())
            .filter_map(|i| self.endpoint(NodeId(i)).ok())
            .collect()
    }

    /// Puts a raw frame into `to`'s queue as if `from` had sent it, whether or not `from`
    /// is a node of this hub: for tests that feed a node garbage or forged senders.
    pub fn inject(&self, from: NodeId, to: NodeId, payload: &[u8]) -> Result<(), SendError> {
        self.hub.deliver(from, to, payload)
    }

    /// Frames waiting in `id`'s receive queue (0 for an unknown id).
    pub fn queued_frames(&self, id: NodeId) -> usize {
        self.hub
            .mailboxes
            .get(id.index())
            .map_or(0, |mailbox| lock(&mailbox.frames).len())
    }
}

/// One node's endpoint of a [`MemoryHub`].
pub struct MemoryTransport {
    me: NodeId,
    hub: Arc<Hub>,
    /// Frames taken from the mailbox and not yet handed over (reused between polls).
    scratch: VecDeque<(NodeId, Vec<u8>)>,
}

impl MemoryTransport {
    fn mailbox(&self) -> &Mailbox {
        // `me` was checked against the hub's size when the endpoint was created.
        &self.hub.mailboxes[self.me.index()]
    }
}

impl Transport for MemoryTransport {
    fn local_id(&self) -> NodeId {
        self.me
    }

    fn send(&mut self, to: NodeId, payload: &[u8]) -> Result<(), SendError> {
        self.hub.deliver(self.me, to, payload)
    }

    fn poll(
        &mut self,
        frames_max: usize,
        deliver: &mut dyn FnMut(NodeId, &[u8]),
    ) -> Result<usize, TransportError> {
        {
            let mut frames = lock(&self.hub.mailboxes[self.me.index()].frames);
            let take = frames.len().min(frames_max);
            self.scratch.extend(frames.drain(..take));
        }
        // The callback runs without the lock held, so it may send to this very node.
        let count = self.scratch.len();
        for (from, payload) in self.scratch.drain(..) {
            deliver(from, &payload);
        }
        Ok(count)
    }

    fn wait(&mut self, timeout: Duration) -> Result<bool, TransportError> {
        let mailbox = self.mailbox();
        let frames = lock(&mailbox.frames);
        let (frames, _timed_out) = mailbox
            .arrived
            .wait_timeout_while(frames, timeout, |frames| frames.is_empty())
            .unwrap_or_else(PoisonError::into_inner);
        Ok(!frames.is_empty())
    }
}
