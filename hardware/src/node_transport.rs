//! [`NodeTransport`]: what a node process needs of its transport besides moving frames
//! (where it is, whether it can reach its peers, its threads' errors, its final
//! counters), implemented by [`TcpTransport`] and, with the `dpdk` feature, by the DPDK
//! transport. `rehearsal node` runs any of them through this one trait.
//!
//! ```
//! use rehearsal_hardware::{NodeTransport, TcpConfig, TcpTransport, TransportKind};
//! use rehearsal_sim_core::NodeId;
//! use std::collections::BTreeMap;
//!
//! let peers = BTreeMap::from([(NodeId(0), "127.0.0.1:0".parse().unwrap())]);
//! let tcp = TcpTransport::from_peer_table(NodeId(0), &peers, TcpConfig::default()).unwrap();
//! assert_eq!(TcpTransport::KIND, TransportKind::Tcp);
//! assert!(tcp.describe().starts_with("listening on 127.0.0.1:"));
//! assert_eq!(tcp.whereabouts()[0].0, "address");
//! assert!(tcp.link_up());
//! let stats = tcp.finish();
//! assert_eq!(stats.outbound_connects, 0);
//! ```

use crate::{TcpMonitor, TcpStats, TcpTransport, Transport, TransportKind};
use serde::Serialize;
use std::io::Write;
use std::time::{Duration, Instant};

/// What a node's run needs of its transport besides moving messages: where it is, whether
/// it can reach its peers yet, the errors of its own threads, and its final counters.
pub trait NodeTransport: Transport + Sized {
    /// Which transport this is.
    const KIND: TransportKind;

    /// The transport's final counters.
    type Stats: Serialize;

    /// Where the node is, as `(field, value)` pairs of its `ready` line.
    fn whereabouts(&self) -> Vec<(&'static str, String)>;

    /// Where the node is, for people: `listening on 127.0.0.1:7000 (tcp)`.
    fn describe(&self) -> String;

    /// Whether the node can reach its peers now. TCP connects on demand, so it always can;
    /// a DPDK port can once its link is up (for memif: the other end's process is there).
    fn link_up(&self) -> bool {
        true
    }

    /// Copies the errors the transport's own threads met to `err`, from the caller's
    /// thread (which may hold the stderr lock).
    fn forward_errors(&self, _forwarder: &mut ErrorForwarder, _err: &mut dyn Write) {}

    /// Stops the transport and returns its final counters.
    fn finish(self) -> Self::Stats;
}

impl NodeTransport for TcpTransport {
    const KIND: TransportKind = TransportKind::Tcp;
    type Stats = TcpStats;

    fn whereabouts(&self) -> Vec<(&'static str, String)> {
        vec![("address", self.local_addr().to_string())]
    }

    fn describe(&self) -> String {
        format!("listening on {} (tcp)", self.local_addr())
    }

    fn forward_errors(&self, forwarder: &mut ErrorForwarder, err: &mut dyn Write) {
        forwarder.forward(&self.monitor(), err);
    }

    fn finish(self) -> TcpStats {
        let monitor = self.monitor();
        // Stop the connections' threads first, so the counters are final.
        drop(self);
        monitor.stats()
    }
}

#[cfg(feature = "dpdk")]
impl NodeTransport for crate::dpdk::DpdkTransport {
    const KIND: TransportKind = TransportKind::Dpdk;
    type Stats = crate::dpdk::DpdkStats;

    fn whereabouts(&self) -> Vec<(&'static str, String)> {
        vec![
            ("port", self.port().name().to_string()),
            ("mac", self.mac().to_string()),
        ]
    }

    fn describe(&self) -> String {
        format!(
            "on DPDK port {}, mac {} (dpdk)",
            self.port().name(),
            self.mac()
        )
    }

    fn link_up(&self) -> bool {
        crate::dpdk::DpdkTransport::link_up(self)
    }

    fn finish(self) -> crate::dpdk::DpdkStats {
        // Counted by this thread alone: final once the run is over.
        self.stats().clone()
    }
}

/// Copies a transport's connection errors to `err`, from the thread that owns `err`, at
/// most every [`ErrorForwarder::INTERVAL`] and [`ErrorForwarder::LINES_PER_CHECK_MAX`]
/// lines at a time.
#[derive(Debug, Default)]
pub struct ErrorForwarder {
    last_check: Option<Instant>,
    /// The last error printed, to find where the new ones start in the transport's
    /// bounded list of recent errors.
    last_printed: Option<String>,
}

impl ErrorForwarder {
    /// The shortest time between two looks at the transport's errors.
    pub const INTERVAL: Duration = Duration::from_millis(100);
    /// Most lines printed per look; the rest are counted.
    pub const LINES_PER_CHECK_MAX: usize = 20;

    /// Makes the next look happen whenever it comes (for the last one, after a run).
    pub fn look_next_time(&mut self) {
        self.last_check = None;
    }

    fn forward(&mut self, monitor: &TcpMonitor, err: &mut dyn Write) {
        if self
            .last_check
            .is_some_and(|at| at.elapsed() < Self::INTERVAL)
        {
            return;
        }
        self.last_check = Some(Instant::now());
        let errors = monitor.recent_errors();
        let new_from = match &self.last_printed {
            None => 0,
            Some(last) => errors.iter().rposition(|e| e == last).map_or(0, |i| i + 1),
        };
        let new = &errors[new_from..];
        for error in new.iter().take(Self::LINES_PER_CHECK_MAX) {
            let _ = writeln!(err, "tcp: {error}");
        }
        if new.len() > Self::LINES_PER_CHECK_MAX {
            let _ = writeln!(
                err,
                "tcp: ... and {} more",
                new.len() - Self::LINES_PER_CHECK_MAX
            );
        }
        if let Some(last) = new.last() {
            self.last_printed = Some(last.clone());
        }
    }
}
