//! Runs independent pieces of work (one simulation per seed) on several threads and hands
//! their results back in order, so that what a command prints, the failures it reports and
//! the traces it writes are the same whatever the number of threads.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Condvar, Mutex};

/// The number of threads to use when the user did not say: one per core.
pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, NonZeroUsize::get)
}

/// Parses `--jobs`: a positive number of threads.
pub fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("the number of jobs must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a number of jobs (e.g. 4)")),
    }
}

/// Calls `work(i)` for `i` in `0..count` on `jobs` threads and `emit(i, result)` on the
/// calling thread in order of `i`, as a plain loop would. Once `emit` returns `false` no
/// more work starts and nothing more is emitted (work already started is finished and
/// dropped). Threads run at most a few items ahead of the one emitted next, so the results
/// held back stay few.
pub fn ordered<T, W, E>(count: u64, jobs: usize, work: W, mut emit: E)
where
    T: Send,
    W: Fn(u64) -> T + Sync,
    E: FnMut(u64, T) -> bool,
{
    let jobs = jobs.max(1);
    if jobs == 1 || count <= 1 {
        for i in 0..count {
            if !emit(i, work(i)) {
                return;
            }
        }
        return;
    }
    let ahead = 4 * jobs as u64;
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    // The index emitted next: a thread waits before starting work too far past it.
    let emitted = Mutex::new(0u64);
    let moved = Condvar::new();
    std::thread::scope(|scope| {
        let (sender, results) = mpsc::channel::<(u64, T)>();
        for _ in 0..jobs.min(usize::try_from(count).unwrap_or(usize::MAX)) {
            let sender = sender.clone();
            let (next, stop, emitted, moved, work) = (&next, &stop, &emitted, &moved, &work);
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    return;
                }
                {
                    let mut at = emitted.lock().unwrap_or_else(|e| e.into_inner());
                    while i >= *at + ahead && !stop.load(Ordering::Relaxed) {
                        at = moved.wait(at).unwrap_or_else(|e| e.into_inner());
                    }
                }
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if sender.send((i, work(i))).is_err() {
                    return;
                }
            });
        }
        drop(sender);
        let mut held: BTreeMap<u64, T> = BTreeMap::new();
        let mut want = 0u64;
        let mut go_on = true;
        for (i, result) in results.iter() {
            if !go_on {
                continue;
            }
            held.insert(i, result);
            while let Some(result) = held.remove(&want) {
                go_on = emit(want, result);
                want += 1;
                if !go_on {
                    held.clear();
                    break;
                }
            }
            if !go_on {
                stop.store(true, Ordering::Relaxed);
            }
            *emitted.lock().unwrap_or_else(|e| e.into_inner()) = want;
            moved.notify_all();
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_order_whatever_the_threads() {
        for jobs in [1, 2, 3, 8] {
            let mut seen = Vec::new();
            ordered(
                200,
                jobs,
                |i| {
                    // Uneven work, so that threads finish out of order.
                    let spin = (i * 7919) % 97 * 1000;
                    let noise = (0..spin).fold(0u64, |a, b| a.wrapping_mul(31).wrapping_add(b));
                    (i * 3, std::hint::black_box(noise))
                },
                |i, (tripled, _)| {
                    assert_eq!(tripled, i * 3);
                    seen.push(i);
                    true
                },
            );
            assert_eq!(seen, (0..200).collect::<Vec<_>>(), "{jobs} jobs");
        }
    }

    #[test]
    fn emitting_stops_at_the_first_refusal() {
        for jobs in [1, 4] {
            let mut seen = Vec::new();
            let started = AtomicU64::new(0);
            ordered(
                10_000,
                jobs,
                |i| {
                    started.fetch_add(1, Ordering::Relaxed);
                    i * 2
                },
                |i, doubled| {
                    assert_eq!(doubled, i * 2);
                    seen.push(i);
                    i < 10
                },
            );
            assert_eq!(seen, (0..=10).collect::<Vec<_>>(), "{jobs} jobs");
            // Threads run only a few items ahead: the rest never start.
            assert!(
                started.load(Ordering::Relaxed) <= 11 + 4 * 4 + 4,
                "{jobs} jobs started {}",
                started.load(Ordering::Relaxed)
            );
        }
    }
}
