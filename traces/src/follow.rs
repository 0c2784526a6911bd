//! Schedule-following replay: a network model that re-enacts the network decisions a trace
//! recorded — which message arrived when, which were lost, duplicated or damaged — instead
//! of drawing them from the seed.
//!
//! Messages are matched by link and order: the k-th message node A sends to node B in the
//! new run gets the fate of the k-th message A sent to B in the recording. So when protocol
//! code changes (an extra message, a different payload), the rest of the schedule still
//! lines up, and the new run can be compared with the recording event by event.
//!
//! What the recording cannot say is re-enacted as closely as it allows: a message the new
//! code sends beyond those recorded on its link arrives after the link's last recorded
//! delay (or `fallback_delay_ns`); a corrupted message is damaged again by the simulator
//! (the damaged bytes need not match); a message held across a partition arrives at the
//! time it arrived in the recording.

use rehearsal_sim_core::{Admit, EventKind, Fate, NetChange, NetworkModel, Packet, SimRng, Time};
use rehearsal_sim_core::{NodeId, TraceEvent};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Mutex;

/// The drop reason for messages a shrinker turned from deliveries into drops.
pub const FORCED_DROP_REASON: &str = "shrink: dropped";

/// What became of one recorded message.
#[derive(Debug, Clone, PartialEq)]
enum Recorded {
    /// Lost as it was sent.
    Dropped { reason: &'static str },
    /// Arrived (at one or two absolute times), possibly damaged; or reached its due time
    /// and was then dropped there (`dropped_at_arrival`).
    Arrived {
        at: Vec<u64>,
        corrupt: bool,
        dropped_at_arrival: Option<&'static str>,
    },
    /// Sent, but the recording ended before it arrived.
    InFlight,
}

/// Counters of a follow run, readable after the simulation took the model.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FollowStats {
    /// Messages whose fate came from the recording.
    pub followed: u64,
    /// Messages the recording had no entry for (new code sent more on that link).
    pub unscheduled: u64,
    /// Recorded deliveries turned into drops on request.
    pub forced_drops: u64,
}

/// Identifies one message of a recording: the `index`-th message `from` sent to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LinkMessage {
    pub from: NodeId,
    pub to: NodeId,
    pub index: u32,
}

/// A network model that follows a recorded schedule; see the module documentation.
#[derive(Debug)]
pub struct ScheduleFollower {
    links: BTreeMap<(NodeId, NodeId), Vec<Recorded>>,
    /// Messages sent so far per link in the new run.
    sent: BTreeMap<(NodeId, NodeId), u32>,
    /// New-run message id → drop reason to apply when it falls due.
    drop_on_arrival: BTreeMap<u64, &'static str>,
    forced: BTreeSet<LinkMessage>,
    /// Delay for unscheduled messages on links with no recorded delay.
    pub fallback_delay_ns: u64,
    last_delay: BTreeMap<(NodeId, NodeId), u64>,
    stats: Rc<RefCell<FollowStats>>,
}

impl ScheduleFollower {
    /// A follower of the schedule recorded in `events` (the events of one trace).
    pub fn from_events(events: &[TraceEvent]) -> Self {
        // Each send's id is its event's sequence number; index the fates by it.
        let mut by_id: BTreeMap<u64, (NodeId, NodeId, Recorded)> = BTreeMap::new();
        let mut order: Vec<u64> = Vec::new();
        for e in events {
            match &e.kind {
                EventKind::Send { to, id, .. } => {
                    by_id.insert(*id, (e.node, *to, Recorded::InFlight));
                    order.push(*id);
                }
                EventKind::Drop { id, reason, .. } => {
                    if let Some((_, _, fate)) = by_id.get_mut(id) {
                        let reason = intern(reason);
                        // A drop recorded right after its send was decided at sending time.
                        *fate = match &*fate {
                            Recorded::InFlight if e.seq == id + 1 => Recorded::Dropped { reason },
                            Recorded::InFlight => Recorded::Arrived {
                                at: vec![e.t],
                                corrupt: false,
                                dropped_at_arrival: Some(reason),
                            },
                            Recorded::Arrived {
                                at,
                                corrupt: true,
                                dropped_at_arrival: None,
                            } if at.is_empty() => Recorded::Arrived {
                                at: vec![e.t],
                                corrupt: true,
                                dropped_at_arrival: Some(reason),
                            },
                            other => other.clone(),
                        };
                    }
                }
                EventKind::Corrupt { id, .. } => {
                    if let Some((_, _, fate)) = by_id.get_mut(id) {
                        *fate = Recorded::Arrived {
                            at: Vec::new(),
                            corrupt: true,
                            dropped_at_arrival: None,
                        };
                    }
                }
                EventKind::Deliver { id, .. } => {
                    if let Some((_, _, fate)) = by_id.get_mut(id) {
                        match fate {
                            Recorded::InFlight => {
                                *fate = Recorded::Arrived {
                                    at: vec![e.t],
                                    corrupt: false,
                                    dropped_at_arrival: None,
                                }
                            }
                            Recorded::Arrived { at, .. } => at.push(e.t),
                            Recorded::Dropped { .. } => {}
                        }
                    }
                }
                _ => {}
            }
        }
        let mut links: BTreeMap<(NodeId, NodeId), Vec<Recorded>> = BTreeMap::new();
        for id in order {
            let (from, to, fate) = by_id.remove(&id).expect("indexed above");
            links.entry((from, to)).or_default().push(fate);
        }
        ScheduleFollower {
            links,
            sent: BTreeMap::new(),
            drop_on_arrival: BTreeMap::new(),
            forced: BTreeSet::new(),
            fallback_delay_ns: 1_000_000,
            last_delay: BTreeMap::new(),
            stats: Rc::new(RefCell::new(FollowStats::default())),
        }
    }

    /// Turns these recorded messages into drops (for shrinking).
    pub fn force_drops(&mut self, messages: impl IntoIterator<Item = LinkMessage>) {
        self.forced.extend(messages);
    }

    /// Every recorded message that arrived at least once: the candidates a shrinker may
    /// turn into drops.
    pub fn delivered_messages(&self) -> Vec<LinkMessage> {
        let mut out = Vec::new();
        for (&(from, to), fates) in &self.links {
            for (index, fate) in fates.iter().enumerate() {
                if let Recorded::Arrived {
                    dropped_at_arrival: None,
                    ..
                } = fate
                {
                    out.push(LinkMessage {
                        from,
                        to,
                        index: index as u32,
                    });
                }
            }
        }
        out
    }

    /// A handle on the counters, to read after the simulation has taken the model.
    pub fn stats(&self) -> Rc<RefCell<FollowStats>> {
        Rc::clone(&self.stats)
    }
}

impl NetworkModel for ScheduleFollower {
    fn route(&mut self, packet: &Packet, _rng: &mut SimRng) -> Fate {
        // Only reached if a simulator calls `route` directly: follow without an id.
        self.route_message(u64::MAX, packet, _rng)
    }

    fn route_message(&mut self, id: u64, packet: &Packet, _rng: &mut SimRng) -> Fate {
        let link = (packet.from, packet.to);
        let index = {
            let n = self.sent.entry(link).or_insert(0);
            *n += 1;
            *n - 1
        };
        let departs = packet.sent_at.as_nanos();
        let key = LinkMessage {
            from: packet.from,
            to: packet.to,
            index,
        };
        let recorded = self
            .links
            .get(&link)
            .and_then(|fates| fates.get(index as usize));
        let mut stats = self.stats.borrow_mut();
        let Some(recorded) = recorded else {
            stats.unscheduled += 1;
            let delay = self
                .last_delay
                .get(&link)
                .copied()
                .unwrap_or(self.fallback_delay_ns);
            return Fate::Deliver { delay_ns: delay };
        };
        if self.forced.contains(&key) {
            stats.forced_drops += 1;
            return Fate::FaultDrop {
                reason: FORCED_DROP_REASON,
            };
        }
        stats.followed += 1;
        match recorded {
            Recorded::Dropped { reason } => Fate::Drop { reason },
            Recorded::InFlight => Fate::Deliver {
                // Past the end of the recording: it never arrives within the run.
                delay_ns: u64::MAX / 4,
            },
            Recorded::Arrived {
                at,
                corrupt,
                dropped_at_arrival,
            } => {
                let delay = |t: u64| t.saturating_sub(departs);
                let first = at.first().map_or(0, |&t| delay(t));
                self.last_delay.insert(link, first);
                if let Some(reason) = dropped_at_arrival {
                    if *reason != "receiver crashed" {
                        self.drop_on_arrival.insert(id, reason);
                    }
                }
                if *corrupt {
                    return Fate::Corrupt { delay_ns: first };
                }
                match at.as_slice() {
                    [_, second, ..] => Fate::Duplicate {
                        delay_ns: first,
                        copy_delay_ns: delay(*second),
                    },
                    _ => Fate::Deliver { delay_ns: first },
                }
            }
        }
    }

    fn admit_message(&mut self, id: u64, _from: NodeId, _to: NodeId, _now: Time) -> Admit {
        match self.drop_on_arrival.remove(&id) {
            Some(reason) => Admit::Drop { reason },
            None => Admit::Deliver,
        }
    }

    fn apply(&mut self, _change: &NetChange, _now: Time) -> Result<(), String> {
        // The recording already holds every consequence of network changes.
        Ok(())
    }
}

/// Drop reasons are `&'static str` in the engine; those read from a trace are interned
/// once per process (there are only a handful of distinct reasons).
fn intern(reason: &str) -> &'static str {
    static KNOWN: Mutex<BTreeSet<&'static str>> = Mutex::new(BTreeSet::new());
    let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&r) = known.get(reason) {
        return r;
    }
    let leaked: &'static str = Box::leak(reason.to_string().into_boxed_str());
    known.insert(leaked);
    leaked
}
