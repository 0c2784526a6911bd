// Deliberately breaks every determinism rule: `.ci/run` checks that clippy, with the
// configuration of sim-core and protocols, refuses each of these lines.
pub fn breaks_the_rules() -> usize {
    let map: std::collections::HashMap<u8, u8> = Default::default();
    let set: std::collections::HashSet<u8> = Default::default();
    let _clock = std::time::Instant::now();
    let _wall = std::time::SystemTime::now();
    let _thread = std::thread::spawn(|| ());
    map.len() + set.len()
}
