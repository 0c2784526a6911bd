//! Counts of the system calls a transport makes, by kind: what `bench tcp` divides by the
//! requests completed to tell how close to the wire each side runs.
//!
//! Counting is done by the code that makes the calls (the TCP transport, the benchmark's
//! echo), one count per call, whatever its outcome (a read that finds nothing, a wait
//! that times out, a write cut short by `EINTR` all count). Calls that set up a
//! connection (socket, connect, setsockopt, accept, shutdown, registering with the poller)
//! are counted as `other`, as many as Linux makes. Calls made on the side (reading the
//! clock, which Linux answers without entering the kernel; allocating memory; taking an
//! uncontended lock) are not counted.

use serde::Serialize;
use std::ops::{Add, Sub};
use std::sync::atomic::{AtomicU64, Ordering};

/// System calls made, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SyscallCounts {
    /// `read`, `readv`, `recv` on a connection.
    pub reads: u64,
    /// `write`, `writev`, `send` on a connection.
    pub writes: u64,
    /// Waits for readiness: `epoll_wait` (Linux), `kevent` (macOS and the BSDs).
    pub waits: u64,
    /// Everything else: `accept`, `socket`, `connect`, `setsockopt`, `shutdown`,
    /// registrations with the poller (`epoll_ctl`, `kevent`).
    pub other: u64,
}

impl SyscallCounts {
    /// Every call, of every kind.
    pub fn total(&self) -> u64 {
        self.reads + self.writes + self.waits + self.other
    }

    /// Each count divided by `by` (0 when `by` is 0): calls per request.
    pub fn per(&self, by: u64) -> SyscallRates {
        let rate = |count: u64| {
            if by == 0 {
                0.0
            } else {
                count as f64 / by as f64
            }
        };
        SyscallRates {
            reads: rate(self.reads),
            writes: rate(self.writes),
            waits: rate(self.waits),
            other: rate(self.other),
            total: rate(self.total()),
        }
    }
}

impl Add for SyscallCounts {
    type Output = SyscallCounts;
    fn add(self, other: SyscallCounts) -> SyscallCounts {
        SyscallCounts {
            reads: self.reads + other.reads,
            writes: self.writes + other.writes,
            waits: self.waits + other.waits,
            other: self.other + other.other,
        }
    }
}

/// The calls made between two readings: `later - earlier`, counter by counter.
impl Sub for SyscallCounts {
    type Output = SyscallCounts;
    fn sub(self, earlier: SyscallCounts) -> SyscallCounts {
        SyscallCounts {
            reads: self.reads.saturating_sub(earlier.reads),
            writes: self.writes.saturating_sub(earlier.writes),
            waits: self.waits.saturating_sub(earlier.waits),
            other: self.other.saturating_sub(earlier.other),
        }
    }
}

/// [`SyscallCounts`] per request (or per anything): see [`SyscallCounts::per`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SyscallRates {
    /// Reads per request.
    pub reads: f64,
    /// Writes per request.
    pub writes: f64,
    /// Waits per request.
    pub waits: f64,
    /// Other calls per request.
    pub other: f64,
    /// All calls per request.
    pub total: f64,
}

/// The kinds of [`SyscallCounts`], for [`SyscallCounter::count`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syscall {
    /// See [`SyscallCounts::reads`].
    Read,
    /// See [`SyscallCounts::writes`].
    Write,
    /// See [`SyscallCounts::waits`].
    Wait,
    /// See [`SyscallCounts::other`].
    Other,
}

/// Counts calls made on one thread, readable from any thread. Aligned to a cache line of
/// its own, so that the counters of threads side by side do not slow each other down.
#[derive(Debug, Default)]
#[repr(align(64))]
pub(crate) struct SyscallCounter {
    reads: AtomicU64,
    writes: AtomicU64,
    waits: AtomicU64,
    other: AtomicU64,
}

impl SyscallCounter {
    /// Counts one call of `kind`.
    pub fn count(&self, kind: Syscall) {
        let counter = match kind {
            Syscall::Read => &self.reads,
            Syscall::Write => &self.writes,
            Syscall::Wait => &self.waits,
            Syscall::Other => &self.other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn get(&self) -> SyscallCounts {
        SyscallCounts {
            reads: self.reads.load(Ordering::Relaxed),
            writes: self.writes.load(Ordering::Relaxed),
            waits: self.waits.load(Ordering::Relaxed),
            other: self.other.load(Ordering::Relaxed),
        }
    }
}

/// A reader or writer whose every `read` and `write` is counted as one system call (true
/// of a socket: `&TcpStream`, `&mut TcpStream`).
pub(crate) struct Counted<'a, S> {
    /// The socket.
    pub inner: S,
    /// Where its calls are counted.
    pub counter: &'a SyscallCounter,
}

impl<S: std::io::Read> std::io::Read for Counted<'_, S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.counter.count(Syscall::Read);
        self.inner.read(buf)
    }
}

impl<S: std::io::Write> std::io::Write for Counted<'_, S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.counter.count(Syscall::Write);
        self.inner.write(buf)
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.counter.count(Syscall::Write);
        self.inner.write_vectored(bufs)
    }

    /// A socket buffers nothing in user space: no system call.
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn every_read_and_write_call_counts_once_and_rates_divide_the_difference() {
        let counter = SyscallCounter::default();
        let mut source = Counted {
            inner: &b"abcdef"[..],
            counter: &counter,
        };
        let mut two = [0u8; 2];
        source.read_exact(&mut two).unwrap();
        source.read_exact(&mut two).unwrap();
        let mut sink = Counted {
            inner: Vec::new(),
            counter: &counter,
        };
        sink.write_all(b"xyz").unwrap();
        counter.count(Syscall::Wait);
        let before = counter.get();
        assert_eq!(
            before,
            SyscallCounts {
                reads: 2,
                writes: 1,
                waits: 1,
                other: 0
            }
        );
        counter.count(Syscall::Read);
        counter.count(Syscall::Other);
        counter.count(Syscall::Other);
        let window = counter.get() - before;
        assert_eq!(window.total(), 3);
        let rates = window.per(2);
        assert_eq!((rates.reads, rates.other, rates.total), (0.5, 1.0, 1.5));
        assert_eq!(window.per(0).total, 0.0);
    }
}
