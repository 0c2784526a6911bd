//! Seeded randomness: one ChaCha stream per component, all derived from one master seed.

use rand::SeedableRng;

/// The random generator of every simulated component.
pub type SimRng = rand_chacha::ChaCha8Rng;

/// Derives the stream of one component (`"node"`, `"net"`, ...) and index from the master
/// seed. Streams are independent: adding a node or a fault leaves the others' draws as
/// they were.
///
/// ```
/// use rand::Rng;
/// use rehearsal_sim_core::derive_rng;
/// let a: u64 = derive_rng(7, "node", 0).random();
/// let b: u64 = derive_rng(7, "node", 0).random();
/// let c: u64 = derive_rng(7, "node", 1).random();
/// assert_eq!(a, b);
/// assert_ne!(a, c);
/// ```
pub fn derive_rng(master_seed: u64, component: &str, index: u64) -> SimRng {
    let mut hasher = blake3::Hasher::new_derive_key("rehearsal 2026 component rng v1");
    hasher.update(&master_seed.to_le_bytes());
    hasher.update(&(component.len() as u64).to_le_bytes());
    hasher.update(component.as_bytes());
    hasher.update(&index.to_le_bytes());
    SimRng::from_seed(*hasher.finalize().as_bytes())
}
