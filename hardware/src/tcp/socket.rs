//! What the transport needs of sockets beyond reading and writing them: a connect that does
//! not block ([`connect`], [`connect_outcome`]), keepalive options ([`set_keepalive`]), and
//! the readiness the poller reports ([`Readiness`]).
//!
//! Sockets and the poller are `mio`'s: epoll on Linux, kqueue on macOS and the BSDs. Every
//! socket is registered once, for reading and writing both, and the poller is
//! edge-triggered: it reports that a socket turned readable or writable, not that it still
//! is. So each connection keeps what it was told (see [`Readiness`]) until a read or write
//! finds otherwise, and nothing is registered again while a connection lives.

use crate::syscalls::{Syscall, SyscallCounter};
use mio::net::TcpStream;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

/// Starts connecting to `addr` without blocking. The outcome is known once the socket turns
/// writable (see [`connect_outcome`]).
pub(super) fn connect(addr: SocketAddr, syscalls: &SyscallCounter) -> io::Result<TcpStream> {
    // socket (non-blocking and close-on-exec from the start on Linux) and connect.
    syscalls.count(Syscall::Other);
    syscalls.count(Syscall::Other);
    TcpStream::connect(addr)
}

/// Whether a connect started by [`connect`] has completed: `Ok(true)` once it is
/// established, `Ok(false)` while it is still in progress, the error if it failed.
pub(super) fn connect_outcome(stream: &TcpStream, syscalls: &SyscallCounter) -> io::Result<bool> {
    syscalls.count(Syscall::Other);
    if let Some(error) = stream.take_error()? {
        return Err(error);
    }
    syscalls.count(Syscall::Other);
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(error) => Err(error),
    }
}

/// Keepalive probes sent, one a second, before an unanswered peer counts as gone.
pub(super) const KEEPALIVE_PROBES: u32 = 3;

/// Makes the kernel notice a peer that vanished without a word (a crashed host, a lost
/// FIN), which the next read then reports:
///
/// - TCP keepalive: after `idle` without traffic the kernel probes the peer every second,
///   and ends the connection after [`KEEPALIVE_PROBES`] unanswered probes, or at once when
///   the peer answers with a reset (it restarted and forgot the connection);
/// - a user timeout (Linux): data written but unacknowledged for `unacknowledged` ends the
///   connection too, rather than after the many minutes of TCP's own retransmissions.
///
/// (macOS has keepalive with this timing, and no user timeout; elsewhere only keepalive,
/// with the system's default timing, applies.)
pub(super) fn set_keepalive(
    stream: &impl AsRawFd,
    idle: Duration,
    unacknowledged: Duration,
    syscalls: &SyscallCounter,
) -> io::Result<()> {
    let fd = stream.as_raw_fd();
    let set_int_option = |fd, level, name, value| {
        syscalls.count(Syscall::Other);
        set_int_option(fd, level, name, value)
    };
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    {
        // macOS names the idle time TCP_KEEPALIVE.
        #[cfg(target_vendor = "apple")]
        const KEEPIDLE: libc::c_int = libc::TCP_KEEPALIVE;
        #[cfg(not(target_vendor = "apple"))]
        const KEEPIDLE: libc::c_int = libc::TCP_KEEPIDLE;
        let idle_s = libc::c_int::try_from(idle.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
        set_int_option(fd, libc::IPPROTO_TCP, KEEPIDLE, idle_s)?;
        set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 1)?;
        set_int_option(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPCNT,
            KEEPALIVE_PROBES as libc::c_int,
        )?;
    }
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let unacknowledged_ms =
            libc::c_int::try_from(unacknowledged.as_millis().max(1)).unwrap_or(libc::c_int::MAX);
        set_int_option(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            unacknowledged_ms,
        )?;
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = unacknowledged;
    #[cfg(not(any(target_os = "linux", target_os = "android", target_vendor = "apple")))]
    let _ = (idle, KEEPALIVE_PROBES);
    Ok(())
}

fn set_int_option(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `fd` is open; the option value is a c_int that outlives the call.
    let done = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What the poller reported a socket turned ready for. Errors and hang-ups count as both,
/// so that the owner's next read or write finds out what happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Readiness {
    pub readable: bool,
    pub writable: bool,
    /// The peer's end of the stream (or an error) has come: reading goes on until it is
    /// read, even after a read that did not fill the buffer (which otherwise means that
    /// everything was read), because no further event will announce it.
    pub closed: bool,
}

impl Readiness {
    /// Ready for both: what a socket is taken to be when it is new, so that the first read
    /// and write find out, rather than waiting for an event that may have passed already.
    pub const BOTH: Readiness = Readiness {
        readable: true,
        writable: true,
        closed: false,
    };

    pub fn of(event: &mio::event::Event) -> Readiness {
        let failed = event.is_error();
        Readiness {
            readable: failed || event.is_readable() || event.is_read_closed(),
            writable: failed || event.is_writable() || event.is_write_closed(),
            closed: failed || event.is_read_closed(),
        }
    }

    /// Adds what an event reported to what was known.
    pub fn merge(&mut self, reported: Readiness) {
        self.readable |= reported.readable;
        self.writable |= reported.writable;
        self.closed |= reported.closed;
    }

    pub fn any(self) -> bool {
        self.readable || self.writable
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    fn int_option(stream: &TcpStream, level: libc::c_int, name: libc::c_int) -> libc::c_int {
        let mut value: libc::c_int = -1;
        let mut length = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: the socket is open; value and length outlive the call.
        let done = unsafe {
            libc::getsockopt(
                stream.as_raw_fd(),
                level,
                name,
                std::ptr::addr_of_mut!(value).cast(),
                &mut length,
            )
        };
        assert_eq!(done, 0, "{}", io::Error::last_os_error());
        value
    }

    #[test]
    fn keepalive_is_on_with_the_idle_time_asked_for() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let stream = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        assert_eq!(int_option(&stream, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 0);
        let syscalls = SyscallCounter::default();
        set_keepalive(
            &stream,
            Duration::from_secs(7),
            Duration::from_millis(2500),
            &syscalls,
        )
        .unwrap();
        assert_eq!(syscalls.get().other, 5);
        assert_eq!(int_option(&stream, libc::SOL_SOCKET, libc::SO_KEEPALIVE), 1);
        assert_eq!(
            int_option(&stream, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE),
            7
        );
        assert_eq!(
            int_option(&stream, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL),
            1
        );
        assert_eq!(
            int_option(&stream, libc::IPPROTO_TCP, libc::TCP_KEEPCNT),
            KEEPALIVE_PROBES as libc::c_int
        );
        assert_eq!(
            int_option(&stream, libc::IPPROTO_TCP, libc::TCP_USER_TIMEOUT),
            2500
        );
    }
}
