//! The two socket facilities `std::net` lacks: a connect that does not block, and waiting on
//! many sockets at once ([`Poller`]: epoll on Linux, `poll(2)` elsewhere). Everything else
//! goes through `std::net`.

use crate::syscalls::{Syscall, SyscallCounter};
use std::io;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Longest single wait in [`Poller::wait`]; callers loop for longer ones.
const POLL_WAIT_MAX: Duration = Duration::from_secs(3600);

/// Starts connecting to `addr` without blocking. Returns the non-blocking socket and whether
/// it is connected already; if not, the outcome is known once the socket turns writable
/// (see [`connect_outcome`]).
pub(super) fn connect_nonblocking(
    addr: SocketAddr,
    syscalls: &SyscallCounter,
) -> io::Result<(TcpStream, bool)> {
    let domain = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    // socket, fcntl (elsewhere than on Linux), the non-blocking flag, connect.
    for _ in 0..if SOCKET_FLAGS != 0 { 3 } else { 4 } {
        syscalls.count(Syscall::Other);
    }
    // SAFETY: a plain system call; the result is checked before use.
    let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | SOCKET_FLAGS, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
    set_cloexec(fd)?;
    stream.set_nonblocking(true)?;
    let (storage, length) = sockaddr(addr);
    // SAFETY: `storage` holds a socket address of `length` bytes of the family of `fd`.
    let result = unsafe {
        libc::connect(
            fd,
            std::ptr::addr_of!(storage).cast::<libc::sockaddr>(),
            length,
        )
    };
    if result == 0 {
        return Ok((stream, true));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        // An interrupted non-blocking connect goes on in the background, like one in
        // progress.
        Some(libc::EINPROGRESS | libc::EINTR) => Ok((stream, false)),
        _ => Err(error),
    }
}

/// Whether a connect started by [`connect_nonblocking`] has completed: `Ok(true)` once it
/// is established, `Ok(false)` while it is still in progress, the error if it failed.
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
/// (Elsewhere than on Linux only keepalive, with the system's default timing, applies.)
pub(super) fn set_keepalive(
    stream: &TcpStream,
    idle: Duration,
    unacknowledged: Duration,
    syscalls: &SyscallCounter,
) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = stream.as_raw_fd();
    let set_int_option = |fd, level, name, value| {
        syscalls.count(Syscall::Other);
        set_int_option(fd, level, name, value)
    };
    set_int_option(fd, libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1)?;
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let idle_s = libc::c_int::try_from(idle.as_secs().max(1)).unwrap_or(libc::c_int::MAX);
        set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, idle_s)?;
        set_int_option(fd, libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, 1)?;
        set_int_option(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_KEEPCNT,
            KEEPALIVE_PROBES as libc::c_int,
        )?;
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
    let _ = (idle, unacknowledged);
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

#[cfg(any(target_os = "linux", target_os = "android"))]
const SOCKET_FLAGS: libc::c_int = libc::SOCK_CLOEXEC;
#[cfg(not(any(target_os = "linux", target_os = "android")))]
const SOCKET_FLAGS: libc::c_int = 0;

/// Keeps the socket out of child processes (`rehearsal cluster` spawns nodes). Linux sets
/// the flag atomically at creation; elsewhere it is set right after.
fn set_cloexec(fd: RawFd) -> io::Result<()> {
    if SOCKET_FLAGS != 0 {
        return Ok(());
    }
    // SAFETY: `fd` is open; F_SETFD takes an int argument.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero bytes are a valid value of these plain C structures.
    let mut storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let length = match addr {
        SocketAddr::V4(v4) => {
            // SAFETY: as above.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = v4.port().to_be();
            // The octets are in network order already.
            sin.sin_addr = libc::in_addr {
                s_addr: u32::from_ne_bytes(v4.ip().octets()),
            };
            // SAFETY: `sockaddr_storage` is larger than and aligned for every address type.
            unsafe {
                std::ptr::addr_of_mut!(storage)
                    .cast::<libc::sockaddr_in>()
                    .write(sin)
            };
            std::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            // SAFETY: as above.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = v6.port().to_be();
            sin6.sin6_flowinfo = v6.flowinfo();
            sin6.sin6_addr = libc::in6_addr {
                s6_addr: v6.ip().octets(),
            };
            sin6.sin6_scope_id = v6.scope_id();
            // SAFETY: as above.
            unsafe {
                std::ptr::addr_of_mut!(storage)
                    .cast::<libc::sockaddr_in6>()
                    .write(sin6);
            };
            std::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, length as libc::socklen_t)
}

/// What a socket is watched for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Interest {
    pub read: bool,
    pub write: bool,
}

/// What a socket is ready for. Errors and hang-ups count as both, so that the owner's next
/// read or write finds out what happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Readiness {
    pub readable: bool,
    pub writable: bool,
}

impl Readiness {
    pub fn any(self) -> bool {
        self.readable || self.writable
    }
}

/// Events one wait reports, at most; the rest are reported by the next one (the poller is
/// level-triggered, so nothing is lost).
#[cfg(any(target_os = "linux", target_os = "android"))]
const EVENTS_PER_WAIT_MAX: usize = 256;

/// Waits on many sockets at once, level-triggered. Each socket is registered under a token
/// of the caller's choosing, and registrations change only when what a socket waits for
/// changes, so that a wait costs the same however many idle connections there are.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(super) struct Poller {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

#[cfg(any(target_os = "linux", target_os = "android"))]
impl Poller {
    pub fn new() -> io::Result<Poller> {
        // SAFETY: a plain system call; the result is checked before use.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Poller {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            epoll: unsafe { OwnedFd::from_raw_fd(fd) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS_PER_WAIT_MAX],
        })
    }

    fn control(
        &self,
        op: libc::c_int,
        fd: RawFd,
        token: u64,
        interest: Interest,
        syscalls: &SyscallCounter,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        syscalls.count(Syscall::Other);
        let mut bits = 0;
        if interest.read {
            bits |= libc::EPOLLIN;
        }
        if interest.write {
            bits |= libc::EPOLLOUT;
        }
        let mut event = libc::epoll_event {
            events: bits as u32,
            u64: token,
        };
        // SAFETY: both descriptors are open; `event` outlives the call.
        if unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Watches the open socket `fd` for `interest` under `token`. `was` is what this same
    /// socket was watched for until now, if it was.
    pub fn watch(
        &mut self,
        token: u64,
        fd: RawFd,
        interest: Interest,
        was: Option<Interest>,
        syscalls: &SyscallCounter,
    ) -> io::Result<()> {
        match was {
            Some(was) if was == interest => Ok(()),
            Some(_) => self.control(libc::EPOLL_CTL_MOD, fd, token, interest, syscalls),
            None => self.control(libc::EPOLL_CTL_ADD, fd, token, interest, syscalls),
        }
    }

    /// Stops watching `token`'s socket `fd`. `open`: the socket is still open (a closed one
    /// left the poller by itself, and its number may belong to another socket by now).
    pub fn unwatch(&mut self, _token: u64, fd: RawFd, open: bool, syscalls: &SyscallCounter) {
        if open {
            let _ = self.control(libc::EPOLL_CTL_DEL, fd, 0, Interest::default(), syscalls);
        }
    }

    /// Blocks until a watched socket is ready or `timeout` passes (zero: just looks), and
    /// appends `(token, readiness)` of the ready ones to `ready`. A signal ends the wait
    /// early with nothing ready.
    pub fn wait(
        &mut self,
        timeout: Duration,
        ready: &mut Vec<(u64, Readiness)>,
        syscalls: &SyscallCounter,
    ) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        let epoll = self.epoll.as_raw_fd();
        let timeout = timeout.min(POLL_WAIT_MAX);
        let capacity = self.events.len() as libc::c_int;
        let events = self.events.as_mut_ptr();
        let count = if timeout < Duration::from_millis(1) && !timeout.is_zero() {
            // epoll_wait counts in milliseconds: wait for the epoll descriptor itself to
            // turn readable with ppoll, which counts in nanoseconds, then collect.
            let mut watch = libc::pollfd {
                fd: epoll,
                events: libc::POLLIN,
                revents: 0,
            };
            let spec = libc::timespec {
                tv_sec: 0,
                tv_nsec: timeout.subsec_nanos() as libc::c_long,
            };
            syscalls.count(Syscall::Wait);
            // SAFETY: one initialised entry; no signal mask is passed.
            let waited = unsafe { libc::ppoll(&mut watch, 1, &spec, std::ptr::null()) };
            if waited <= 0 {
                waited
            } else {
                syscalls.count(Syscall::Wait);
                // SAFETY: `events` has room for `capacity` entries.
                unsafe { libc::epoll_wait(epoll, events, capacity, 0) }
            }
        } else {
            // Whole milliseconds, rounded down: an early return only makes the caller wait
            // again for the rest.
            let ms = timeout.as_millis() as libc::c_int;
            syscalls.count(Syscall::Wait);
            // SAFETY: `events` has room for `capacity` entries.
            unsafe { libc::epoll_wait(epoll, events, capacity, ms) }
        };
        if count < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(error);
        }
        for event in &self.events[..count as usize] {
            // Copies: the structure is packed on some targets.
            let (bits, token) = (event.events, event.u64);
            let failed = bits & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0;
            ready.push((
                token,
                Readiness {
                    readable: failed || bits & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0,
                    writable: failed || bits & libc::EPOLLOUT as u32 != 0,
                },
            ));
        }
        Ok(())
    }
}

/// Waits on many sockets at once with `poll(2)`, rebuilding its set for every wait (the
/// portable fallback: the cost of a wait grows with the number of sockets).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
#[derive(Default)]
pub(super) struct Poller {
    watched: std::collections::BTreeMap<u64, (RawFd, Interest)>,
    fds: Vec<libc::pollfd>,
    tokens: Vec<u64>,
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
impl Poller {
    pub fn new() -> io::Result<Poller> {
        Ok(Poller::default())
    }

    /// Watches the open socket `fd` for `interest` under `token`.
    pub fn watch(
        &mut self,
        token: u64,
        fd: RawFd,
        interest: Interest,
        _was: Option<Interest>,
        _syscalls: &SyscallCounter,
    ) -> io::Result<()> {
        self.watched.insert(token, (fd, interest));
        Ok(())
    }

    /// Stops watching `token`'s socket.
    pub fn unwatch(&mut self, token: u64, _fd: RawFd, _open: bool, _syscalls: &SyscallCounter) {
        self.watched.remove(&token);
    }

    /// Blocks until a watched socket is ready or `timeout` passes (zero: just looks), and
    /// appends `(token, readiness)` of the ready ones to `ready`. A signal ends the wait
    /// early with nothing ready.
    pub fn wait(
        &mut self,
        timeout: Duration,
        ready: &mut Vec<(u64, Readiness)>,
        syscalls: &SyscallCounter,
    ) -> io::Result<()> {
        self.fds.clear();
        self.tokens.clear();
        for (&token, &(fd, interest)) in &self.watched {
            let mut events = 0;
            if interest.read {
                events |= libc::POLLIN;
            }
            if interest.write {
                events |= libc::POLLOUT;
            }
            self.fds.push(libc::pollfd {
                fd,
                events,
                revents: 0,
            });
            self.tokens.push(token);
        }
        // Round up, so that a short wait does not turn into a busy loop.
        let ms = timeout.min(POLL_WAIT_MAX).as_nanos().div_ceil(1_000_000) as libc::c_int;
        syscalls.count(Syscall::Wait);
        // SAFETY: `fds` holds as many initialised entries as passed.
        let count =
            unsafe { libc::poll(self.fds.as_mut_ptr(), self.fds.len() as libc::nfds_t, ms) };
        if count < 0 {
            let error = io::Error::last_os_error();
            if error.kind() == io::ErrorKind::Interrupted {
                return Ok(());
            }
            return Err(error);
        }
        for (fd, &token) in self.fds.iter().zip(&self.tokens) {
            let revents = fd.revents;
            if revents == 0 {
                continue;
            }
            let failed = revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0;
            ready.push((
                token,
                Readiness {
                    readable: failed || revents & libc::POLLIN != 0,
                    writable: failed || revents & libc::POLLOUT != 0,
                },
            ));
        }
        Ok(())
    }
}

#[cfg(all(test, any(target_os = "linux", target_os = "android")))]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::os::fd::AsRawFd;

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
