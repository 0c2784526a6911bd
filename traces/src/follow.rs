//! Schedule-following replay: a network model that re-enacts the network decisions a trace
//! recorded — which message arrived when, which were lost, duplicated or damaged — instead
//! of drawing them from the seed.
//!
//! Messages are matched by link and content: the k-th message node A sends to node B that
//! reads as some text (its `msg` in the trace) gets the fate of the k-th message A sent to B
//! that read the same in the recording. So when the run changes (a retransmission fewer, an
//! extra message, a request less), every other message still meets its own recorded fate,
//! and a shrinker's drop stays on the message it chose. A message whose text the recording
//! does not have on its link is unscheduled (see below). Without labels (a run that keeps
//! no trace) messages are matched by link and order alone.
//!
//! Each message arrives (or is dropped on arrival) at the time the recording shows it
//! handled, even if it got there in a roundabout way (held across a cut until heal, waiting
//! in a paused node's backlog until resume, waiting for a busy node): the simulator orders
//! events at one instant by when they were created, not by when they were queued last, so
//! delivering such a message straight at its recorded time puts it in the same place among
//! that instant's events. Same code therefore re-enacts its own recording exactly.
//!
//! What the recording cannot say is re-enacted as closely as it allows: a message the new
//! code sends beyond those recorded on its link arrives after the link's last recorded
//! delay (or `fallback_delay_ns`); a damaged message is damaged again by the simulator
//! (from the seed and the message's id, so with changed code that shifts ids the damaged
//! bytes need not match).

use rehearsal_sim_core::{Admit, EventKind, Fate, NetChange, NetworkModel, Packet, SimRng, Time};
use rehearsal_sim_core::{NodeId, TimerId, TraceEvent};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::rc::Rc;
use std::sync::Mutex;

/// The drop reason for messages a shrinker turned from deliveries into drops.
pub const FORCED_DROP_REASON: &str = "shrink: dropped";

/// What became of one recorded message.
#[derive(Debug, Clone, PartialEq, Default)]
struct Recorded {
    /// The hash of its `msg` text.
    label: u64,
    /// When it was sent, in the recording.
    sent_ns: u64,
    /// Lost as it was sent (recorded right after its send).
    dropped: Option<&'static str>,
    /// Delivered damaged (the recording has its `corrupt` event).
    corrupt: bool,
    /// Each time a copy reached its receiver, in the recording's order: the time, and the
    /// drop reason if it was dropped there rather than delivered. Empty: the recording
    /// ended with the message in flight (or held), so it arrives after the recording's
    /// end, if that is known.
    arrivals: Vec<(u64, Option<&'static str>)>,
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
    /// Messages sent so far per link in the new run (for matching without labels).
    sent: BTreeMap<(NodeId, NodeId), u32>,
    /// The recorded messages not yet matched, by link and label hash, in recorded order.
    unmatched: BTreeMap<(NodeId, NodeId, u64), VecDeque<u32>>,
    /// What each copy of a new-run message meets when it falls due, by (message id,
    /// recorded time): `Some(reason)` to drop it, `None` to deliver it. Only for messages
    /// with a copy dropped on arrival.
    on_arrival: BTreeMap<(u64, u64), VecDeque<Option<&'static str>>>,
    forced: BTreeSet<LinkMessage>,
    /// Delay for unscheduled messages on links with no recorded delay.
    pub fallback_delay_ns: u64,
    last_delay: BTreeMap<(NodeId, NodeId), u64>,
    /// When the recording ended (its virtual time), if known: messages still in flight
    /// then arrive just after it. Unknown: they never arrive.
    end_ns: Option<u64>,
    stats: Rc<RefCell<FollowStats>>,
    /// Re-enact when each node started and each timer fired too (see
    /// [`ScheduleFollower::retime_starts_and_timers`]).
    retime: bool,
    /// When each node first started in the recording.
    starts: BTreeMap<NodeId, u64>,
    /// When each timer fired in the recording, by node and timer id.
    timers: BTreeMap<(NodeId, u64), u64>,
    /// The time of the recording's last event.
    last_ns: u64,
}

impl ScheduleFollower {
    /// A follower of the schedule recorded in `events` (the events of one trace).
    ///
    /// ```
    /// # use rehearsal_sim_core::{Actor, Context, NodeId, SimConfig, SimpleNetwork, Simulation};
    /// # struct Pinger;
    /// # impl Actor for Pinger {
    /// #     type Msg = u32; type Timer = (); type Output = u32;
    /// #     fn on_start(&mut self, cx: &mut Context<Self>) { if cx.me() == NodeId(0) { cx.send(NodeId(1), 9) } }
    /// #     fn on_message(&mut self, from: NodeId, n: u32, cx: &mut Context<Self>) { cx.output(n); if n > 0 { cx.send(from, n - 1) } }
    /// #     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
    /// # }
    /// // Two nodes pass a counter back and forth over a jittery, lossy network.
    /// let jittery = || SimpleNetwork { latency: "uniform:1ms..30ms".parse().unwrap(), loss: 0.1 };
    /// let mut sim = Simulation::new(SimConfig::new(5), vec![Pinger, Pinger], jittery());
    /// sim.keep_trace(true);
    /// let recorded = sim.run();
    /// use rehearsal_traces::ScheduleFollower;
    ///
    /// // Re-enacted from its events alone, on a network that decides nothing itself, the
    /// // run is the same run: every delay and loss comes from the recording.
    /// let mut again = Simulation::new(SimConfig::new(5), vec![Pinger, Pinger], SimpleNetwork::default());
    /// again.set_network(ScheduleFollower::from_events(&recorded.trace));
    /// assert_eq!(again.run().digest, recorded.digest);
    /// ```
    ///
    /// A send whose id an earlier send already has (only a hand-edited trace has one) is
    /// left out: the events that name the id cannot be told apart, so they go to the first
    /// send, and the later one's message is followed as unscheduled.
    pub fn from_events(events: &[TraceEvent]) -> Self {
        // Each send's id is its event's sequence number; index the fates by it.
        let mut by_id: BTreeMap<u64, (NodeId, NodeId, Recorded)> = BTreeMap::new();
        let mut order: Vec<u64> = Vec::new();
        // Send times, to tell drops decided at sending from drops on arrival.
        let mut sent_at: BTreeMap<u64, u64> = BTreeMap::new();
        // Drops recorded right after their send, at its time: decided as it was sent,
        // unless a copy of the same message arrives later (then it was a copy dropped on
        // arrival after no delay, which re-enacts alike).
        let mut at_send: BTreeSet<u64> = BTreeSet::new();
        let mut starts: BTreeMap<NodeId, u64> = BTreeMap::new();
        let mut timers: BTreeMap<(NodeId, u64), u64> = BTreeMap::new();
        for e in events {
            match &e.kind {
                EventKind::Start => {
                    starts.entry(e.node).or_insert(e.t);
                }
                EventKind::Timer { timer_id, .. } => {
                    timers.entry((e.node, timer_id.0)).or_insert(e.t);
                }
                EventKind::Send { to, id, .. } => {
                    if let std::collections::btree_map::Entry::Vacant(slot) = by_id.entry(*id) {
                        let label = match &e.kind {
                            EventKind::Send { msg, .. } => label_hash(msg),
                            _ => 0,
                        };
                        let fate = Recorded {
                            label,
                            sent_ns: e.t,
                            ..Recorded::default()
                        };
                        slot.insert((e.node, *to, fate));
                        order.push(*id);
                        sent_at.insert(*id, e.t);
                    }
                }
                EventKind::Drop { id, reason, .. } => {
                    if let Some((_, _, fate)) = by_id.get_mut(id) {
                        if fate.arrivals.is_empty()
                            && !fate.corrupt
                            && e.seq == id.wrapping_add(1)
                            && sent_at.get(id) == Some(&e.t)
                        {
                            at_send.insert(*id);
                        }
                        fate.arrivals.push((e.t, Some(intern(reason))));
                    }
                }
                EventKind::Corrupt { id, .. } => {
                    if let Some((_, _, fate)) = by_id.get_mut(id) {
                        fate.corrupt = true;
                    }
                }
                EventKind::Deliver { id, .. } => {
                    if let Some((_, _, fate)) = by_id.get_mut(id) {
                        fate.arrivals.push((e.t, None));
                    }
                }
                _ => {}
            }
        }
        let mut links: BTreeMap<(NodeId, NodeId), Vec<Recorded>> = BTreeMap::new();
        for id in order {
            let Some((from, to, mut fate)) = by_id.remove(&id) else {
                continue;
            };
            if at_send.contains(&id) && fate.arrivals.len() == 1 {
                fate.dropped = fate.arrivals.pop().and_then(|(_, reason)| reason);
            }
            links.entry((from, to)).or_default().push(fate);
        }
        let mut unmatched: BTreeMap<(NodeId, NodeId, u64), VecDeque<u32>> = BTreeMap::new();
        for (&(from, to), fates) in &links {
            for (index, fate) in fates.iter().enumerate() {
                unmatched
                    .entry((from, to, fate.label))
                    .or_default()
                    .push_back(index as u32);
            }
        }
        ScheduleFollower {
            links,
            sent: BTreeMap::new(),
            unmatched,
            on_arrival: BTreeMap::new(),
            forced: BTreeSet::new(),
            fallback_delay_ns: 1_000_000,
            last_delay: BTreeMap::new(),
            end_ns: None,
            stats: Rc::new(RefCell::new(FollowStats::default())),
            retime: false,
            starts,
            timers,
            last_ns: events.last().map_or(0, |e| e.t),
        }
    }

    /// Re-enacts when each node started and when each timer fired as well, not only when
    /// each message arrived: for a recording whose scheduler picked the order of ready
    /// events (`--strategy random` or `pct`), which put some starts and timers off past
    /// their due times. A timer the recording does not show firing though it fell due
    /// before the recording's end (its scheduler ran what cancelled it first) falls due
    /// just after the end (or the last event, if the end is not known); one the recording shows firing before the new run sets it due
    /// fires when due.
    ///
    /// Events without starts (a schedule of messages alone, as a shrinker cuts one) say
    /// nothing of when timers fired: then starts and timers keep their own times.
    pub fn retime_starts_and_timers(&mut self) -> &mut Self {
        self.retime = !self.starts.is_empty();
        self
    }

    /// A follower of a recording that ended at virtual time `end_ns` (a trace footer's
    /// `sim_time_ns`): the messages still in flight then arrive just after it, as the
    /// recording allows, rather than never (which would be a loss nobody imposed, once a
    /// changed run goes on longer than the recording did).
    ///
    /// ```
    /// # use rehearsal_sim_core::{Actor, Context, NodeId, SimConfig, SimpleNetwork, Simulation};
    /// # struct Pinger;
    /// # impl Actor for Pinger {
    /// #     type Msg = u32; type Timer = (); type Output = u32;
    /// #     fn on_start(&mut self, cx: &mut Context<Self>) { if cx.me() == NodeId(0) { cx.send(NodeId(1), 9) } }
    /// #     fn on_message(&mut self, from: NodeId, n: u32, cx: &mut Context<Self>) { cx.output(n); if n > 0 { cx.send(from, n - 1) } }
    /// #     fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
    /// # }
    /// // Two nodes pass a counter back and forth over a jittery, lossy network.
    /// let jittery = || SimpleNetwork { latency: "uniform:1ms..30ms".parse().unwrap(), loss: 0.1 };
    /// let mut sim = Simulation::new(SimConfig::new(5), vec![Pinger, Pinger], jittery());
    /// sim.keep_trace(true);
    /// let recorded = sim.run();
    /// use rehearsal_traces::ScheduleFollower;
    ///
    /// // A run cut short at 40 ms follows the recording; what was in flight at its end
    /// // arrives just after it.
    /// let follower = ScheduleFollower::from_recording(&recorded.trace, recorded.sim_time.as_nanos());
    /// let mut again = Simulation::new(SimConfig::new(5), vec![Pinger, Pinger], jittery());
    /// again.set_network(follower).keep_trace(true);
    /// again.set_deadline(Some(rehearsal_sim_core::Time::from_millis(40)));
    /// let cut = again.run();
    /// assert!(cut.trace.len() <= recorded.trace.len());
    /// assert_eq!(cut.trace[..], recorded.trace[..cut.trace.len()]);
    /// ```
    pub fn from_recording(events: &[TraceEvent], end_ns: u64) -> Self {
        let mut follower = Self::from_events(events);
        follower.end_ns = Some(end_ns);
        follower
    }

    /// Turns these recorded messages into drops (for shrinking).
    pub fn force_drops(&mut self, messages: impl IntoIterator<Item = LinkMessage>) {
        self.forced.extend(messages);
    }

    /// Every recorded message that was delivered at least once: the candidates a shrinker
    /// may turn into drops.
    pub fn delivered_messages(&self) -> Vec<LinkMessage> {
        let mut out = Vec::new();
        for (&(from, to), fates) in &self.links {
            for (index, fate) in fates.iter().enumerate() {
                if fate.arrivals.iter().any(|(_, dropped)| dropped.is_none()) {
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

/// The delay of a message that never arrives within the run (the recording ended with it
/// in flight).
const NEVER_NS: u64 = u64::MAX / 4;

impl NetworkModel for ScheduleFollower {
    fn route(&mut self, packet: &Packet, _rng: &mut SimRng) -> Fate {
        // Only reached if a simulator calls `route` directly: follow without an id.
        self.route_message(u64::MAX, packet, _rng)
    }

    fn route_message(&mut self, id: u64, packet: &Packet, rng: &mut SimRng) -> Fate {
        self.route_labeled(id, packet, None, rng)
    }

    fn route_labeled(
        &mut self,
        id: u64,
        packet: &Packet,
        label: Option<&str>,
        _rng: &mut SimRng,
    ) -> Fate {
        let link = (packet.from, packet.to);
        let index = match label {
            // The first recorded message on this link that read the same and is not yet
            // matched; none: past anything recorded (unscheduled).
            Some(label) => self
                .unmatched
                .get_mut(&(packet.from, packet.to, label_hash(label)))
                .and_then(VecDeque::pop_front)
                .unwrap_or(u32::MAX),
            None => {
                let n = self.sent.entry(link).or_insert(0);
                *n += 1;
                *n - 1
            }
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
        if let Some(reason) = recorded.dropped {
            // A shrinker's forced drop was a fault when recorded: it stays one, so the
            // invariants hear of it as they did.
            if reason == FORCED_DROP_REASON {
                return Fate::FaultDrop { reason };
            }
            return Fate::Drop { reason };
        }
        // A copy arrives at its recorded time, but never after a longer delay than the
        // recording gave it: when changed code sends this link's k-th message earlier than
        // the recording did, it keeps its recorded delay rather than waiting for the
        // recorded arrival (a delay no network model drew). Same code sends it at the
        // recorded time, so both agree.
        let recorded_delay = |t: u64| t.saturating_sub(recorded.sent_ns);
        let delay = |t: u64| t.saturating_sub(departs).min(recorded_delay(t));
        let (first, second) = match recorded.arrivals.as_slice() {
            [] => match self.end_ns {
                Some(end) => (delay(end.saturating_add(1)), None),
                None => (NEVER_NS, None),
            },
            [(t, _)] => (delay(*t), None),
            [(t, _), (u, _), ..] => (delay(*t), Some(delay(*u))),
        };
        if !recorded.arrivals.is_empty() {
            self.last_delay.insert(link, first);
        }
        if recorded
            .arrivals
            .iter()
            .any(|(_, dropped)| dropped.is_some())
        {
            // Both copies of a duplicate are queued as the message is sent, so the one
            // handled first here is the one recorded first.
            for &(t, dropped) in recorded.arrivals.iter().take(2) {
                self.on_arrival
                    .entry((id, t))
                    .or_default()
                    .push_back(dropped);
            }
        }
        if recorded.corrupt {
            return Fate::Corrupt { delay_ns: first };
        }
        match second {
            Some(copy_delay_ns) => Fate::Duplicate {
                delay_ns: first,
                copy_delay_ns,
            },
            None => Fate::Deliver { delay_ns: first },
        }
    }

    fn admit_message(&mut self, id: u64, _from: NodeId, _to: NodeId, now: Time) -> Admit {
        // The copy due now; if the new run (changed code) handles it at another time than
        // recorded, the earliest copy still expected.
        let key = if self.on_arrival.contains_key(&(id, now.as_nanos())) {
            (id, now.as_nanos())
        } else {
            match self.on_arrival.range((id, 0)..=(id, u64::MAX)).next() {
                Some((&key, _)) => key,
                None => return Admit::Deliver,
            }
        };
        let Some(copies) = self.on_arrival.get_mut(&key) else {
            return Admit::Deliver;
        };
        let dropped = copies.pop_front().flatten();
        if copies.is_empty() {
            self.on_arrival.remove(&key);
        }
        match dropped {
            Some(reason) => Admit::Drop { reason },
            None => Admit::Deliver,
        }
    }

    fn apply(&mut self, _change: &NetChange, _now: Time) -> Result<(), String> {
        // The recording already holds every consequence of network changes.
        Ok(())
    }

    fn retimes(&self) -> bool {
        self.retime
    }

    fn start_at(&mut self, node: NodeId) -> Time {
        match self.starts.get(&node) {
            Some(&t) if self.retime => Time(t),
            _ => Time::ZERO,
        }
    }

    fn timer_due(&mut self, node: NodeId, id: TimerId, due: Time) -> Time {
        if !self.retime {
            return due;
        }
        // The recording's end, or its last event when the end is not known.
        let end = self.end_ns.unwrap_or(self.last_ns).max(self.last_ns);
        match self.timers.get(&(node, id.0)) {
            Some(&t) if t >= due.as_nanos() => Time(t),
            // Due within the recording, yet it never fired: the scheduler ran what cancelled
            // it first (at or after its due time). Firing it when due would fire it before
            // that; like a message in flight at the end, it falls due just after the end.
            None if due.as_nanos() <= end => Time(end.saturating_add(1)),
            _ => due,
        }
    }
}

/// A message's `msg` text, hashed (FNV-1a: the same in every process).
fn label_hash(label: &str) -> u64 {
    label.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_events::event;
    use rehearsal_sim_core::derive_rng;

    fn send(seq: u64, t: u64, from: u32, to: u32) -> TraceEvent {
        let kind = EventKind::Send {
            to: NodeId(to),
            id: seq,
            bytes: 1,
            msg: "m".into(),
        };
        event(seq, t, from, kind)
    }
    fn deliver(seq: u64, t: u64, id: u64, from: u32, to: u32) -> TraceEvent {
        let kind = EventKind::Deliver {
            from: NodeId(from),
            id,
        };
        event(seq, t, to, kind)
    }
    fn drop(seq: u64, t: u64, id: u64, from: u32, to: u32, reason: &str) -> TraceEvent {
        let kind = EventKind::Drop {
            to: NodeId(to),
            id,
            reason: reason.into(),
        };
        event(seq, t, from, kind)
    }
    /// The fate the follower gives the next message from n0 to n1, sent at `t` as `id`.
    fn route(follower: &mut ScheduleFollower, id: u64, t: u64) -> Fate {
        let packet = Packet {
            from: NodeId(0),
            to: NodeId(1),
            sent_at: Time(t),
            bytes: 1,
        };
        follower.route_message(id, &packet, &mut derive_rng(0, "test", 0))
    }
    /// A send from n0 to n1 that reads `msg`.
    fn send_text(seq: u64, t: u64, msg: &str) -> TraceEvent {
        let kind = EventKind::Send {
            to: NodeId(1),
            id: seq,
            bytes: 1,
            msg: msg.into(),
        };
        event(seq, t, 0, kind)
    }
    /// [`route`] for a message that reads `msg`.
    fn route_text(follower: &mut ScheduleFollower, id: u64, t: u64, msg: &str) -> Fate {
        let packet = Packet {
            from: NodeId(0),
            to: NodeId(1),
            sent_at: Time(t),
            bytes: 1,
        };
        follower.route_labeled(id, &packet, Some(msg), &mut derive_rng(0, "test", 0))
    }
    fn admit(follower: &mut ScheduleFollower, id: u64, t: u64) -> Admit {
        follower.admit_message(id, NodeId(0), NodeId(1), Time(t))
    }

    #[test]
    fn messages_meet_the_fate_of_the_recorded_message_that_reads_the_same() {
        // Recorded on n0 -> n1: a (delivered after 5), b (lost), a again (after 7).
        let events = [
            send_text(0, 0, "a"),
            deliver(1, 5, 0, 0, 1),
            send_text(2, 10, "b"),
            drop(3, 10, 2, 0, 1, "loss"),
            send_text(4, 20, "a"),
            deliver(5, 27, 4, 0, 1),
        ];
        let mut follower = ScheduleFollower::from_events(&events);
        // The new run skips b: the second a still gets the second a's fate, not b's.
        assert_eq!(
            route_text(&mut follower, 0, 0, "a"),
            Fate::Deliver { delay_ns: 5 }
        );
        assert_eq!(
            route_text(&mut follower, 1, 20, "a"),
            Fate::Deliver { delay_ns: 7 }
        );
        // Text the recording does not have on the link: after the link's last delay.
        assert_eq!(
            route_text(&mut follower, 2, 30, "c"),
            Fate::Deliver { delay_ns: 7 }
        );
        // b, sent late, is still lost.
        assert_eq!(
            route_text(&mut follower, 3, 40, "b"),
            Fate::Drop { reason: "loss" }
        );
        let stats = follower.stats().borrow().clone();
        assert_eq!((stats.followed, stats.unscheduled), (3, 1));
    }

    #[test]
    fn a_message_sent_earlier_than_recorded_keeps_its_recorded_delay() {
        // Recorded: sent at 100, arrived at 110. Sent at 0 now, it arrives at 10, not 110
        // (a 110 ns delay no network drew); sent at 105, it arrives at 110 as recorded.
        let events = [send(0, 100, 0, 1), deliver(1, 110, 0, 0, 1)];
        let mut early = ScheduleFollower::from_events(&events);
        assert_eq!(route(&mut early, 0, 0), Fate::Deliver { delay_ns: 10 });
        let mut late = ScheduleFollower::from_events(&events);
        assert_eq!(route(&mut late, 0, 105), Fate::Deliver { delay_ns: 5 });
    }

    #[test]
    fn a_message_in_flight_when_the_recording_ended_arrives_just_after_its_end() {
        let events = [send(0, 100, 0, 1)];
        let mut ended = ScheduleFollower::from_recording(&events, 500);
        assert_eq!(route(&mut ended, 0, 100), Fate::Deliver { delay_ns: 401 });
        // Without the end, it never arrives.
        let mut open = ScheduleFollower::from_events(&events);
        assert_eq!(
            route(&mut open, 0, 100),
            Fate::Deliver { delay_ns: NEVER_NS }
        );
    }

    #[test]
    fn sends_sharing_an_id_do_not_panic_and_the_first_keeps_the_id() {
        let events = [
            send(0, 0, 0, 1),
            send(0, 5, 0, 1),
            deliver(1, 10, 0, 0, 1),
            send(2, 20, 0, 1),
            drop(3, 20, 2, 0, 1, "loss"),
        ];
        let mut follower = ScheduleFollower::from_events(&events);
        assert_eq!(route(&mut follower, 0, 0), Fate::Deliver { delay_ns: 10 });
        // The later send of id 0 is left out: the message sent at 20 is the second one.
        assert_eq!(route(&mut follower, 2, 20), Fate::Drop { reason: "loss" });
        assert_eq!(follower.stats().borrow().followed, 2);
    }

    #[test]
    fn each_copy_of_a_duplicate_meets_its_own_recorded_fate() {
        // Copy one delivered, copy two dropped when it fell due across a cut: the old
        // reading kept only the delivery, and the copy arrived.
        let events = [
            send(0, 0, 0, 1),
            deliver(1, 10, 0, 0, 1),
            drop(2, 30, 0, 0, 1, "partition"),
        ];
        let mut follower = ScheduleFollower::from_events(&events);
        let fate = route(&mut follower, 0, 0);
        let duplicate = Fate::Duplicate {
            delay_ns: 10,
            copy_delay_ns: 30,
        };
        assert_eq!(fate, duplicate);
        assert_eq!(admit(&mut follower, 0, 10), Admit::Deliver);
        let partition = Admit::Drop {
            reason: "partition",
        };
        assert_eq!(admit(&mut follower, 0, 30), partition);

        // Copy one dropped on arrival right after its send (no delay, nothing between),
        // copy two delivered: the drop was not decided at sending.
        let events = [
            send(0, 0, 0, 1),
            drop(1, 0, 0, 0, 1, "partition"),
            deliver(2, 40, 0, 0, 1),
        ];
        let mut follower = ScheduleFollower::from_events(&events);
        let duplicate = Fate::Duplicate {
            delay_ns: 0,
            copy_delay_ns: 40,
        };
        assert_eq!(route(&mut follower, 0, 0), duplicate);
        assert_eq!(admit(&mut follower, 0, 0), partition);
        assert_eq!(admit(&mut follower, 0, 40), Admit::Deliver);
    }

    #[test]
    fn a_drop_right_after_the_send_but_later_happened_on_arrival() {
        // Nothing else happened for 10 ns: the drop is the next event, yet on arrival.
        let events = [send(0, 0, 0, 1), drop(1, 10, 0, 0, 1, "receiver crashed")];
        let mut follower = ScheduleFollower::from_events(&events);
        assert_eq!(route(&mut follower, 0, 0), Fate::Deliver { delay_ns: 10 });
        let crashed = Admit::Drop {
            reason: "receiver crashed",
        };
        assert_eq!(admit(&mut follower, 0, 10), crashed);
        // At its send's time it was decided at sending.
        let events = [send(0, 0, 0, 1), drop(1, 0, 0, 0, 1, "loss")];
        let mut follower = ScheduleFollower::from_events(&events);
        assert_eq!(route(&mut follower, 0, 0), Fate::Drop { reason: "loss" });
    }

    #[test]
    fn a_forced_drop_stays_a_fault() {
        // So the invariants hear of it when a shrunk trace is followed, as they did when
        // the shrinker forced it.
        let events = [send(0, 0, 0, 1), drop(1, 0, 0, 0, 1, FORCED_DROP_REASON)];
        let mut follower = ScheduleFollower::from_events(&events);
        let forced = Fate::FaultDrop {
            reason: FORCED_DROP_REASON,
        };
        assert_eq!(route(&mut follower, 0, 0), forced);
    }

    #[test]
    fn a_damaged_message_in_flight_at_the_end_stays_in_flight() {
        let corrupt = EventKind::Corrupt {
            to: NodeId(1),
            id: 0,
            msg: "m".into(),
        };
        let events = [send(0, 5, 0, 1), event(1, 5, 0, corrupt)];
        let mut follower = ScheduleFollower::from_events(&events);
        let fate = route(&mut follower, 0, 5);
        assert_eq!(fate, Fate::Corrupt { delay_ns: NEVER_NS });
    }

    /// Each node charges a random CPU cost per message and keeps gossiping, so messages
    /// and timers often wait for a busy node (no protocol charges CPU yet).
    struct Busy {
        peers: u32,
        left: u32,
    }

    impl rehearsal_sim_core::Actor for Busy {
        type Msg = u32;
        type Timer = ();
        type Output = u32;
        fn on_start(&mut self, cx: &mut rehearsal_sim_core::Context<Self>) {
            cx.set_timer(std::time::Duration::from_millis(3), ());
        }
        fn on_message(&mut self, _: NodeId, n: u32, cx: &mut rehearsal_sim_core::Context<Self>) {
            use rehearsal_sim_core::rand::Rng;
            let cost = cx.rng().random_range(0..4_000_000u64);
            cx.charge(std::time::Duration::from_nanos(cost));
            cx.output(n);
            if self.left > 0 {
                self.left -= 1;
                let to = cx.rng().random_range(0..self.peers);
                cx.send(NodeId(to), n + 1);
            }
        }
        fn on_timer(&mut self, _: (), cx: &mut rehearsal_sim_core::Context<Self>) {
            use rehearsal_sim_core::rand::Rng;
            if self.left > 0 {
                let to = cx.rng().random_range(0..self.peers);
                cx.send(NodeId(to), 0);
                cx.set_timer(std::time::Duration::from_millis(3), ());
            }
        }
    }

    #[test]
    fn busy_paused_and_crashed_nodes_re_enact_their_recording_exactly() {
        re_enacts_busy_paused_and_crashed_nodes(rehearsal_sim_core::Strategy::Default);
    }

    #[test]
    fn runs_whose_scheduler_picked_the_order_re_enact_exactly() {
        use rehearsal_sim_core::Strategy;
        for strategy in [
            Strategy::Random { window_ns: 0 },
            Strategy::Random {
                window_ns: 2_000_000,
            },
            Strategy::Pct {
                depth: 3,
                steps: 200,
                window_ns: 0,
            },
            Strategy::Pct {
                depth: 2,
                steps: 100,
                window_ns: 1_000_000,
            },
        ] {
            re_enacts_busy_paused_and_crashed_nodes(strategy);
        }
    }

    /// Records runs under `strategy` with busy, paused, crashed and restarted nodes, and
    /// follows each recording with the default scheduler: the same events, event for event.
    fn re_enacts_busy_paused_and_crashed_nodes(strategy: rehearsal_sim_core::Strategy) {
        use rehearsal_sim_core::{Fault, SimConfig, SimpleNetwork, Simulation};
        let build = |seed: u64, strategy| {
            let actors = (0..4).map(|_| Busy { peers: 4, left: 40 }).collect();
            let net = SimpleNetwork {
                latency: "uniform:0ms..3ms".parse().unwrap(),
                loss: 0.1,
            };
            let config = SimConfig {
                keep_trace: true,
                strategy,
                ..SimConfig::new(seed)
            };
            let mut sim = Simulation::new(config, actors, net);
            sim.on_restart(|_, _| Busy { peers: 4, left: 10 });
            for (ms, fault) in [
                (10, Fault::Pause(NodeId(1))),
                (30, Fault::Resume(NodeId(1))),
                (40, Fault::Pause(NodeId(2))),
                (50, Fault::Crash(NodeId(2))),
                (70, Fault::Restart(NodeId(2))),
            ] {
                sim.schedule_fault(Time::from_millis(ms), fault).unwrap();
            }
            sim
        };
        let mut waited = 0;
        for seed in 1..=30 {
            let recorded = build(seed, strategy).run();
            let mut follow = build(seed, rehearsal_sim_core::Strategy::Default);
            let mut follower =
                ScheduleFollower::from_recording(&recorded.trace, recorded.sim_time.as_nanos());
            if !strategy.is_default() {
                follower.retime_starts_and_timers();
            }
            follow.set_network(follower);
            let followed = follow.run();
            let departs = crate::first_difference(&recorded.trace, &followed.trace);
            assert!(departs.is_none(), "{strategy}, seed {seed}: {departs:?}");
            assert_eq!(followed.digest, recorded.digest, "{strategy}, seed {seed}");
            // Deliveries handled later than any draw of the latency allows waited.
            let sent: BTreeMap<u64, u64> = recorded
                .trace
                .iter()
                .filter_map(|e| match e.kind {
                    EventKind::Send { id, .. } => Some((id, e.t)),
                    _ => None,
                })
                .collect();
            waited += recorded
                .trace
                .iter()
                .filter(|e| match e.kind {
                    EventKind::Deliver { id, .. } => e.t > sent[&id] + 7_000_000,
                    _ => false,
                })
                .count();
        }
        assert!(
            waited > 30,
            "{strategy}: only {waited} deliveries waited for their node"
        );
    }
}
