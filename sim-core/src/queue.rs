//! The simulator's event queue: events taken in order of (virtual time, tie-breaker).
//!
//! Most events arrive in order: with a constant latency every message is due a fixed
//! delay after the one sent before it, and a node's timers of one kind likewise. Such
//! events go to one of a few *lanes*, first-in first-out queues that each hold a sorted
//! run of events: taking and adding one costs the same however many events wait, and
//! the events sit next to each other in memory. An event that fits no lane (it is due
//! before the last event of every lane, as under random latencies) goes to a binary heap
//! of small keys (time, tie-breaker, slot) whose events wait in a slab of slots, so that
//! reordering the heap moves 24-byte keys rather than whole events. The earliest event
//! is the earliest of the lanes' first events and the heap's top.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};

use crate::time::Time;

/// Lanes of events that arrive in order (messages of one latency, timers of one length).
const LANES: usize = 4;

/// Where an event waits in the heap, and when it is due.
#[derive(Clone, Copy)]
struct Key {
    time: Time,
    order: u64,
    slot: u32,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        (self.time, self.order) == (other.time, other.order)
    }
}
impl Eq for Key {}
impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Key {
    // BinaryHeap is a max-heap: reversed, the earliest (time, order) comes out first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.time, other.order).cmp(&(self.time, self.order))
    }
}

/// Events by (time, order), earliest first; `order` breaks ties and is unique per event.
pub(crate) struct EventQueue<E> {
    /// Sorted runs: each lane's events are in (time, order) order, front first.
    lanes: [VecDeque<(Time, u64, E)>; LANES],
    /// The events that fit no lane.
    keys: BinaryHeap<Key>,
    slots: Vec<Option<E>>,
    /// Slots emptied and not yet reused.
    free: Vec<u32>,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            lanes: std::array::from_fn(|_| VecDeque::new()),
            keys: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<E> EventQueue<E> {
    #[inline]
    pub(crate) fn push(&mut self, time: Time, order: u64, event: E) {
        // The lane whose last event is the latest one due before this event keeps the
        // lanes' runs tight; an empty lane takes what fits no other.
        let mut fit: Option<(usize, (Time, u64))> = None;
        let mut empty = None;
        for (i, lane) in self.lanes.iter().enumerate() {
            match lane.back() {
                Some(&(t, o, _)) => {
                    if (t, o) < (time, order) && fit.is_none_or(|(_, best)| (t, o) > best) {
                        fit = Some((i, (t, o)));
                    }
                }
                None => {
                    if empty.is_none() {
                        empty = Some(i);
                    }
                }
            }
        }
        if let Some(i) = fit.map(|(i, _)| i).or(empty) {
            self.lanes[i].push_back((time, order, event));
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(event);
                slot
            }
            None => {
                let slot = u32::try_from(self.slots.len())
                    .expect("simulator limit: more than 4 billion events pending at once");
                self.slots.push(Some(event));
                slot
            }
        };
        self.keys.push(Key { time, order, slot });
    }

    /// The earliest event, with its time and tie-breaker.
    #[inline]
    pub(crate) fn pop(&mut self) -> Option<(Time, u64, E)> {
        let mut earliest = self.keys.peek().map(|k| (k.time, k.order));
        let mut lane = None;
        for (i, run) in self.lanes.iter().enumerate() {
            if let Some(&(t, o, _)) = run.front() {
                if earliest.is_none_or(|e| (t, o) < e) {
                    earliest = Some((t, o));
                    lane = Some(i);
                }
            }
        }
        if let Some(i) = lane {
            return self.lanes[i].pop_front();
        }
        let key = self.keys.pop()?;
        let event = vacate(&mut self.slots, key.slot);
        self.free.push(key.slot);
        Some((key.time, key.order, event))
    }

    /// Hands every pending event to `each`, in no particular order, and leaves the queue
    /// empty.
    pub(crate) fn drain(&mut self, mut each: impl FnMut(Time, u64, E)) {
        for lane in &mut self.lanes {
            for (time, order, event) in lane.drain(..) {
                each(time, order, event);
            }
        }
        for key in self.keys.drain() {
            each(key.time, key.order, vacate(&mut self.slots, key.slot));
        }
        self.slots.clear();
        self.free.clear();
    }
}

/// The event waiting in `slot`, leaving the slot empty.
#[inline]
fn vacate<E>(slots: &mut [Option<E>], slot: u32) -> E {
    slots[slot as usize]
        .take()
        .expect("simulator bug: a queued event's slot is empty")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;

    #[test]
    fn events_come_out_by_time_then_tie_breaker() {
        let mut queue = EventQueue::default();
        queue.push(Time(30), 0, "c");
        queue.push(Time(10), 5, "b");
        queue.push(Time(10), 2, "a");
        assert_eq!(queue.pop(), Some((Time(10), 2, "a")));
        queue.push(Time(20), 7, "d");
        queue.push(Time(10), 9, "e");
        let order: Vec<_> = std::iter::from_fn(|| queue.pop()).map(|e| e.2).collect();
        assert_eq!(order, ["b", "e", "d", "c"]);
        assert_eq!(queue.keys.len(), 0);
    }

    #[test]
    fn events_that_arrive_in_order_wait_in_lanes_and_the_rest_in_the_heap() {
        let mut queue = EventQueue::default();
        // Messages 10 after their send and timers 1000 after: two sorted runs.
        for i in 0..100u64 {
            queue.push(Time(i + 10), 2 * i, i);
            queue.push(Time(i + 1000), 2 * i + 1, i);
        }
        assert_eq!(queue.keys.len(), 0, "in-order events never reach the heap");
        assert_eq!(queue.lanes.iter().filter(|l| !l.is_empty()).count(), 2);
        // Four lanes of descending times: the fifth event that fits none goes to the heap.
        let mut queue = EventQueue::default();
        for i in 0..6u64 {
            queue.push(Time(100 - i), i, i);
        }
        assert_eq!(queue.keys.len(), 2);
        assert_eq!(queue.slots.len(), 2);
        let order: Vec<_> = std::iter::from_fn(|| queue.pop()).map(|e| e.2).collect();
        assert_eq!(order, [5, 4, 3, 2, 1, 0]);
        // The heap's slots are reused.
        queue.push(Time(1), 9, 9);
        queue.push(Time(0), 10, 10);
        queue.push(Time(0), 8, 8);
        queue.push(Time(0), 7, 7);
        queue.push(Time(0), 6, 6);
        queue.push(Time(0), 5, 5);
        assert_eq!(queue.slots.len(), 2);
    }

    #[test]
    fn draining_empties_the_queue_and_it_fills_again() {
        let mut queue = EventQueue::default();
        for i in 0..9u64 {
            queue.push(Time(100 - i), i, i);
        }
        assert_eq!(
            queue.keys.len(),
            5,
            "both the lanes and the heap hold events"
        );
        let mut drained = Vec::new();
        queue.drain(|time, order, event| drained.push((time, order, event)));
        drained.sort_by_key(|e| e.2);
        assert_eq!(drained.len(), 9);
        assert_eq!(drained[4], (Time(96), 4, 4));
        assert_eq!(queue.keys.len(), 0);
        assert_eq!(queue.pop(), None);
        assert!(queue.slots.is_empty());
        queue.push(Time(1), 9, 9);
        assert_eq!(queue.pop(), Some((Time(1), 9, 9)));
    }

    /// The queue against a plain binary heap of whole entries, as the simulator uses it:
    /// streams of events a constant delay ahead, events at random delays, bursts at one
    /// instant, and now and then an event queued again at the current instant with an
    /// old tie-breaker (below the last one taken).
    #[test]
    fn the_queue_takes_events_in_the_order_a_binary_heap_does() {
        for seed in 0..16u64 {
            let mut rng = crate::rng::derive_rng(seed, "queue test", 0);
            let mut queue = EventQueue::default();
            let mut heap = BinaryHeap::new();
            let mut now = 0u64;
            let mut next_order = 0u64;
            let mut old_orders: Vec<u64> = Vec::new();
            let (mut lanes_used, mut heap_used) = (false, false);
            for step in 0..6_000 {
                let filling = step / 1_500 % 2 == 0;
                let pushes = if filling && rng.random_ratio(1, 40) {
                    200
                } else {
                    rng.random_range(0..3)
                };
                for _ in 0..pushes {
                    let (time, order) = if !old_orders.is_empty() && rng.random_ratio(1, 10) {
                        (
                            now,
                            old_orders.swap_remove(rng.random_range(0..old_orders.len())),
                        )
                    } else {
                        let delay = match rng.random_range(0..6) {
                            0 => 0,
                            1 | 2 => 10_000_000,
                            3 => 1_000_000_000,
                            4 => rng.random_range(0..1_000),
                            _ => rng.random_range(0..u64::from(u32::MAX)),
                        };
                        next_order += 1;
                        (now + delay, next_order)
                    };
                    queue.push(Time(time), order, (time, order));
                    heap.push(Key {
                        time: Time(time),
                        order,
                        slot: 0,
                    });
                }
                for _ in 0..if filling { 1 } else { 8 } {
                    let taken = queue.pop();
                    let expected = heap.pop().map(|k| (k.time, k.order, (k.time.0, k.order)));
                    assert_eq!(taken, expected, "seed {seed}");
                    if let Some((time, order, _)) = taken {
                        now = time.0;
                        if rng.random_ratio(1, 3) {
                            old_orders.push(order);
                        }
                    }
                }
                lanes_used |= queue.lanes.iter().any(|l| l.len() > 10);
                heap_used |= queue.keys.len() > 10;
            }
            assert!(
                lanes_used && heap_used,
                "seed {seed}: lanes and heap both used"
            );
            while let Some(expected) = heap.pop() {
                let taken = queue.pop().map(|e| (e.0, e.1));
                assert_eq!(taken, Some((expected.time, expected.order)), "seed {seed}");
            }
            assert_eq!(queue.pop(), None);
        }
    }
}
