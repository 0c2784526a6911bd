//! A replica's log: its entries by sequence number, as a `BTreeMap<Seq, V>` would hold
//! them (same order, same serialization), stored for the way PBFT uses them.
//!
//! Nearly every message looks up an entry a little above the low watermark, and the low
//! watermark only moves up. So the entries from a base sequence number on sit in a ring
//! indexed by their distance from it: a look-up is an index, not a tree search. A
//! sequence number far from the base (only a faulty or mutant replica lets one in, e.g.
//! without watermarks) goes to an ordinary map beside the ring, so no sequence number can
//! make the ring large.

use super::messages::Seq;
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, VecDeque};

/// How far above its base the ring holds entries: well beyond a watermark window (h, h+L]
/// and the checkpoints between two stable ones, well below what would waste memory.
const RING_SPAN: u64 = 4096;

/// Entries by sequence number; iterated, and serialized, in ascending order, exactly as a
/// `BTreeMap<Seq, V>` with the same entries.
#[derive(Clone)]
pub struct Log<V> {
    /// The sequence number of `ring[0]`.
    base: Seq,
    /// Entries `base..base + ring.len()`, `None` where there is none. Shorter than
    /// [`RING_SPAN`].
    ring: VecDeque<Option<V>>,
    /// Entries outside `base..base + RING_SPAN`, and none inside.
    far: BTreeMap<Seq, V>,
    /// Entries in `ring` and `far`.
    len: usize,
}

impl<V> Default for Log<V> {
    fn default() -> Self {
        Log {
            base: 0,
            ring: VecDeque::new(),
            far: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<V> Log<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many entries it holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// `seq`'s place in the ring, if the ring is where `seq` belongs.
    fn ring_index(&self, seq: Seq) -> Option<usize> {
        let offset = seq.checked_sub(self.base)?;
        (offset < RING_SPAN).then_some(offset as usize)
    }

    pub fn get(&self, seq: &Seq) -> Option<&V> {
        match self.ring_index(*seq) {
            Some(i) => self.ring.get(i).and_then(Option::as_ref),
            None => self.far.get(seq),
        }
    }

    pub fn get_mut(&mut self, seq: &Seq) -> Option<&mut V> {
        match self.ring_index(*seq) {
            Some(i) => self.ring.get_mut(i).and_then(Option::as_mut),
            None => self.far.get_mut(seq),
        }
    }

    /// The entry for `seq`, made with `V::default()` if there is none.
    pub fn entry_or_default(&mut self, seq: Seq) -> &mut V
    where
        V: Default,
    {
        if self.len == 0 {
            // Nothing to keep in place: the ring starts where the entries do.
            self.ring.clear();
            self.base = seq;
        }
        match self.ring_index(seq) {
            Some(i) => {
                if i >= self.ring.len() {
                    self.ring.resize_with(i + 1, || None);
                }
                let slot = &mut self.ring[i];
                if slot.is_none() {
                    self.len += 1;
                }
                slot.get_or_insert_with(V::default)
            }
            None => {
                let len = &mut self.len;
                self.far.entry(seq).or_insert_with(|| {
                    *len += 1;
                    V::default()
                })
            }
        }
    }

    /// The entries from `from.start` on, in ascending order.
    pub fn range(&self, from: std::ops::RangeFrom<Seq>) -> impl Iterator<Item = (Seq, &V)> + '_ {
        let start = from.start;
        // `far` holds nothing in `base..base + RING_SPAN`: what it holds below the ring
        // comes first, what it holds above comes last.
        let below = self
            .far
            .range(start..start.max(self.base))
            .map(|(&seq, v)| (seq, v));
        let skip = start.saturating_sub(self.base).min(self.ring.len() as u64) as usize;
        let base = self.base;
        let ring = self
            .ring
            .iter()
            .enumerate()
            .skip(skip)
            .filter_map(move |(i, v)| v.as_ref().map(|v| (base + i as u64, v)));
        let above = self
            .far
            .range(start.max(self.base)..)
            .map(|(&seq, v)| (seq, v));
        below.chain(ring).chain(above)
    }

    /// Every entry, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (Seq, &V)> + '_ {
        self.range(0..)
    }

    /// The entry with the highest sequence number.
    pub fn last_key_value(&self) -> Option<(Seq, &V)> {
        if let Some((&seq, v)) = self.far.last_key_value().filter(|(&s, _)| s >= self.base) {
            return Some((seq, v));
        }
        let base = self.base;
        let in_ring = self
            .ring
            .iter()
            .enumerate()
            .rev()
            .find_map(|(i, v)| v.as_ref().map(|v| (base + i as u64, v)));
        in_ring.or_else(|| self.far.last_key_value().map(|(&seq, v)| (seq, v)))
    }

    /// Every entry, for writing, in no particular order.
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> + '_ {
        self.ring.iter_mut().flatten().chain(self.far.values_mut())
    }

    /// Keeps the entries for which `keep` holds (it sees each once, in no particular
    /// order).
    pub fn retain(&mut self, mut keep: impl FnMut(&Seq, &mut V) -> bool) {
        let base = self.base;
        for (i, slot) in self.ring.iter_mut().enumerate() {
            if let Some(v) = slot {
                if !keep(&(base + i as u64), v) {
                    *slot = None;
                }
            }
        }
        self.far.retain(|seq, v| keep(seq, v));
        self.len = self.ring.iter().flatten().count() + self.far.len();
    }

    /// Discards every entry below `seq` (what a stable checkpoint covers), and moves the
    /// ring up to start there.
    pub fn remove_below(&mut self, seq: Seq) {
        let kept = self.far.split_off(&seq);
        self.len -= self.far.len();
        self.far = kept;
        if seq <= self.base {
            return;
        }
        let gone = (seq - self.base).min(self.ring.len() as u64) as usize;
        self.len -= self.ring.drain(..gone).flatten().count();
        self.base = seq;
        // What `far` held within the ring's new span moves into the ring.
        let beyond = self.far.split_off(&seq.saturating_add(RING_SPAN));
        let moving = std::mem::replace(&mut self.far, beyond);
        for (seq, v) in moving {
            let i = (seq - self.base) as usize;
            if i >= self.ring.len() {
                self.ring.resize_with(i + 1, || None);
            }
            self.ring[i] = Some(v);
        }
    }
}

impl<V> std::ops::Index<&Seq> for Log<V> {
    type Output = V;
    fn index(&self, seq: &Seq) -> &V {
        self.get(seq).expect("no log entry for this sequence number")
    }
}

/// Serialized as the `BTreeMap<Seq, V>` of its entries is: a map of its length, then each
/// entry in ascending order.
impl<V: Serialize> Serialize for Log<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.len))?;
        for (seq, v) in self.iter() {
            map.serialize_entry(&seq, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehearsal_sim_core::fingerprint::Fingerprinter;
    use rehearsal_sim_core::rand::{Rng, SeedableRng};

    fn fingerprint<T: Serialize>(value: &T) -> u64 {
        let mut h = Fingerprinter::default();
        h.encoded(value);
        std::hash::Hasher::finish(&h)
    }

    fn same(log: &Log<u32>, map: &BTreeMap<Seq, u32>, from: Seq) {
        let listed: Vec<(Seq, u32)> = log.iter().map(|(s, v)| (s, *v)).collect();
        let expected: Vec<(Seq, u32)> = map.iter().map(|(s, v)| (*s, *v)).collect();
        assert_eq!(listed, expected);
        assert_eq!(log.len(), map.len());
        let ranged: Vec<(Seq, u32)> = log.range(from..).map(|(s, v)| (s, *v)).collect();
        let expected: Vec<(Seq, u32)> = map.range(from..).map(|(s, v)| (*s, *v)).collect();
        assert_eq!(ranged, expected, "from {from}");
        assert_eq!(
            log.last_key_value().map(|(s, v)| (s, *v)),
            map.last_key_value().map(|(s, v)| (*s, *v))
        );
        assert_eq!(log.get(&from), map.get(&from));
        assert_eq!(fingerprint(log), fingerprint(map));
        let (mut a, mut b) = (Vec::new(), Vec::new());
        rehearsal_sim_core::codec::encode_into(log, &mut a).unwrap();
        rehearsal_sim_core::codec::encode_into(map, &mut b).unwrap();
        assert_eq!(a, b);
    }

    /// The log holds, lists and serializes exactly what a `BTreeMap` given the same
    /// operations holds: sequence numbers near its base, far above and below it (a mutant
    /// without watermarks), across discards that move the base past far entries.
    #[test]
    fn the_log_behaves_as_a_btree_map_of_its_entries() {
        let mut rng = rehearsal_sim_core::SimRng::seed_from_u64(7);
        for round in 0..50 {
            let mut log = Log::<u32>::new();
            let mut map = BTreeMap::<Seq, u32>::new();
            let mut low: Seq = rng.random_range(0..100);
            for step in 0..300 {
                let pick: u32 = rng.random_range(0..100);
                let seq = match rng.random_range(0..10) {
                    0 => low.saturating_sub(rng.random_range(0..50)),
                    1 => low + rng.random_range(0..3 * RING_SPAN),
                    2 => rng.random_range(0..u64::MAX),
                    _ => low + rng.random_range(0..80),
                };
                match pick {
                    0..=59 => {
                        let v = log.entry_or_default(seq);
                        *v += step;
                        *map.entry(seq).or_default() += step;
                    }
                    60..=69 => {
                        if let (Some(a), Some(b)) = (log.get_mut(&seq), map.get_mut(&seq)) {
                            *a += 1;
                            *b += 1;
                        }
                    }
                    70..=79 => {
                        low += rng.random_range(0..40);
                        if rng.random_bool(0.05) {
                            low += RING_SPAN + rng.random_range(0..RING_SPAN);
                        }
                        log.remove_below(low);
                        map = map.split_off(&low);
                    }
                    80..=84 => {
                        let m = rng.random_range(2..5u32);
                        log.retain(|s, v| (*s as u32 ^ *v) % m != 0);
                        map.retain(|s, v| (*s as u32 ^ *v) % m != 0);
                    }
                    85..=89 => {
                        log.values_mut().for_each(|v| *v = v.wrapping_mul(3));
                        map.values_mut().for_each(|v| *v = v.wrapping_mul(3));
                    }
                    _ => {}
                }
                same(&log, &map, seq);
                same(&log, &map, low);
                assert_eq!(log.is_empty(), map.is_empty(), "round {round} step {step}");
            }
        }
    }
}
