//! The replicated application: a small key-value store of `u64` values, plus the reply
//! cache PBFT keeps beside it (each client's latest executed request and its result), so
//! that replies carry real, order-dependent results.

use super::messages::Op;
use crate::crypto::Digest;
use serde::{Deserialize, Serialize};

/// The key-value store. Keys are `0..keys`; an operation on a larger key wraps around, so
/// every operation that decodes has a defined result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvStore {
    values: Vec<u64>,
}

impl KvStore {
    pub fn new(keys: u32) -> Self {
        KvStore {
            values: vec![0; keys.max(1) as usize],
        }
    }

    /// Applies `op` and returns its result.
    pub fn apply(&mut self, op: &Op) -> u64 {
        let len = self.values.len();
        if len == 0 {
            return 0; // only a decoded, never a constructed, store can be empty
        }
        let slot = |key: u32| key as usize % len;
        match *op {
            Op::Get { key } => self.values[slot(key)],
            Op::Put { key, value } => std::mem::replace(&mut self.values[slot(key)], value),
            Op::Add { key, delta } => {
                let v = &mut self.values[slot(key)];
                *v = v.wrapping_add(delta);
                *v
            }
        }
    }
}

/// Per client (by index `client - n`): the latest executed request number and its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyCache {
    entries: Vec<(u64, u64)>,
}

impl ReplyCache {
    pub fn new(clients: u32) -> Self {
        ReplyCache {
            entries: vec![(0, 0); clients as usize],
        }
    }

    /// The latest executed request of client index `i` and its result, if any.
    pub fn get(&self, i: usize) -> Option<(u64, u64)> {
        self.entries.get(i).copied()
    }

    pub fn set(&mut self, i: usize, number: u64, result: u64) {
        if let Some(e) = self.entries.get_mut(i) {
            *e = (number, result);
        }
    }

    /// (client index, latest executed number) for every client that executed something.
    pub fn executed(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.0 > 0)
            .map(|(i, e)| (i, e.0))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// A replica's whole application state at a checkpoint: what state transfer ships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub store: KvStore,
    pub replies: ReplyCache,
}

impl Snapshot {
    /// The digest checkpoints agree on.
    pub fn digest(&self) -> Digest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"snapshot");
        hasher.update(&(self.store.values.len() as u64).to_le_bytes());
        for v in &self.store.values {
            hasher.update(&v.to_le_bytes());
        }
        hasher.update(&(self.replies.entries.len() as u64).to_le_bytes());
        for (number, result) in &self.replies.entries {
            hasher.update(&number.to_le_bytes());
            hasher.update(&result.to_le_bytes());
        }
        hasher.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_depend_on_order() {
        let mut a = KvStore::new(2);
        let mut b = KvStore::new(2);
        let put = Op::Put { key: 1, value: 5 };
        let add = Op::Add { key: 1, delta: 2 };
        assert_eq!((a.apply(&put), a.apply(&add)), (0, 7));
        assert_eq!((b.apply(&add), b.apply(&put)), (2, 2));
        assert_eq!(a.apply(&Op::Get { key: 3 }), 7, "key 3 wraps to key 1");
    }
}
