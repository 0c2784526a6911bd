//! The simulator's event queue: events taken in order of (virtual time, tie-breaker).
//!
//! The ordering lives in a binary heap of small keys (time, tie-breaker, slot), and the
//! events themselves wait in a slab of slots, so that reordering the heap moves 24-byte
//! keys rather than whole events (a message travels inside its event). An event is moved
//! twice in its life, in and out of its slot, however many events are pending.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::time::Time;

/// Where an event waits, and when it is due.
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
    keys: BinaryHeap<Key>,
    slots: Vec<Option<E>>,
    /// Slots emptied and not yet reused.
    free: Vec<u32>,
}

impl<E> Default for EventQueue<E> {
    fn default() -> Self {
        EventQueue {
            keys: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<E> EventQueue<E> {
    #[inline]
    pub(crate) fn push(&mut self, time: Time, order: u64, event: E) {
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
        let key = self.keys.pop()?;
        let event = self.take(key.slot);
        Some((key.time, key.order, event))
    }

    #[inline]
    fn take(&mut self, slot: u32) -> E {
        let event = vacate(&mut self.slots, slot);
        self.free.push(slot);
        event
    }

    /// Hands every pending event to `each`, in no particular order, and leaves the queue
    /// empty.
    pub(crate) fn drain(&mut self, mut each: impl FnMut(Time, u64, E)) {
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

    #[test]
    fn events_come_out_by_time_then_tie_breaker_and_slots_are_reused() {
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
        // Five events, never more than four pending at once: four slots.
        assert_eq!(queue.slots.len(), 4);
    }

    #[test]
    fn draining_empties_the_queue_and_it_fills_again() {
        let mut queue = EventQueue::default();
        for i in 0..5u64 {
            queue.push(Time(i * 3 % 5), i, i);
        }
        let mut drained = Vec::new();
        queue.drain(|time, order, event| drained.push((time, order, event)));
        drained.sort_by_key(|e| e.2);
        assert_eq!(drained.len(), 5);
        assert_eq!(drained[4], (Time(2), 4, 4));
        assert_eq!(queue.keys.len(), 0);
        assert_eq!(queue.pop(), None);
        assert!(queue.slots.is_empty());
        queue.push(Time(1), 9, 9);
        assert_eq!(queue.pop(), Some((Time(1), 9, 9)));
    }
}
