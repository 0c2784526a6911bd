//! Per-node statistics of a run.

use serde::{Deserialize, Serialize};

/// Counters for one node. Bytes are bincode-encoded message sizes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStats {
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// Messages this node sent that the network dropped.
    pub messages_dropped: u64,
    pub timers_fired: u64,
    pub outputs: u64,
    pub annotations: u64,
}
