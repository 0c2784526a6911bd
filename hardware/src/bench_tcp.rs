//! `rehearsal bench tcp`: what the node runtime costs over TCP on loopback, measured side by
//! side with a plain echo server and client written directly on `std::net`.
//!
//! Both sides run the same closed loop with the same number of clients: each client sends
//! one request, waits for its answer, and sends the next. The runtime side drives real
//! actors (the caller's: `rehearsal bench tcp` passes the unreplicated server and clients)
//! through [`NodeRuntime`] over [`TcpTransport`], one thread per node; the baseline echoes
//! length-prefixed frames of the same size with blocking sockets, one thread per client
//! and one per server connection. Each side warms up, then counts the requests completed
//! in a fixed window and records their latencies and the system calls each side's server
//! and clients made meanwhile (see [`SideSyscalls`]). The client threads of both sides run at
//! the same nice value ([`TcpBenchConfig::client_nice`]), so that the load generators do
//! not take the CPU from the servers.
//!
//! This module knows no protocol: the dependency rule keeps `hardware` below `protocols`.

use crate::latency::{LatencyHistogram, LatencySummary};
use crate::runtime::{NodeRuntime, OutputRecord, RuntimeConfig, RuntimeError, StopHandle};
use crate::syscalls::{Counted, Syscall, SyscallCounter, SyscallCounts, SyscallRates};
use crate::tcp::{TcpConfig, TcpTransport};
use crate::transport::TransportError;
use rehearsal_sim_core::{Actor, NodeId};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Clients one benchmark may run, at most (each is a thread, or several).
pub const BENCH_CLIENTS_MAX: u32 = 1_024;

/// Largest baseline message, in bytes.
pub const BENCH_MESSAGE_BYTES_MAX: usize = 1 << 20;

/// How a TCP benchmark runs.
#[derive(Debug, Clone, Serialize)]
pub struct TcpBenchConfig {
    /// Closed-loop clients on each side.
    pub clients: u32,
    /// Payload of one baseline request and reply, in bytes: the size of the runtime
    /// side's encoded request, so both sides move frames of the same size.
    pub message_bytes: usize,
    /// Time each side runs before the measurement window opens (connections are set up,
    /// caches warm).
    #[serde(rename = "warmup_ns", serialize_with = "as_ns")]
    pub warmup: Duration,
    /// Length of the measurement window of each side.
    #[serde(rename = "duration_ns", serialize_with = "as_ns")]
    pub duration: Duration,
    /// Nice value of the client threads of both sides (0 to [`BENCH_CLIENT_NICE_MAX`];
    /// Linux only; default [`BENCH_CLIENT_NICE_DEFAULT`]). Above 0, the load generators
    /// yield the CPU to the servers they share the machine with, as clients on other
    /// machines would. At 0, a woken client often takes the CPU from the runtime's one
    /// server thread (which goes on to the next ready connection rather than sleeping as
    /// a thread-per-connection server does), so the comparison then measures the
    /// scheduler as much as the runtime.
    pub client_nice: u8,
    /// Whether the runtime side's connections are authenticated and their frames sealed
    /// ([`TcpConfig::auth`], with fresh keys), as a cluster's are when its file names key
    /// files; the baseline's are plain either way.
    pub authenticated: bool,
}

/// Largest [`TcpBenchConfig::client_nice`].
pub const BENCH_CLIENT_NICE_MAX: u8 = 19;

/// Default [`TcpBenchConfig::client_nice`] (on Linux; 0 elsewhere).
pub const BENCH_CLIENT_NICE_DEFAULT: u8 = if cfg!(target_os = "linux") { 5 } else { 0 };

fn as_ns<S: serde::Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_u64(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
}

impl Default for TcpBenchConfig {
    fn default() -> Self {
        TcpBenchConfig {
            clients: 8,
            message_bytes: 8,
            warmup: Duration::from_millis(500),
            duration: Duration::from_secs(3),
            client_nice: BENCH_CLIENT_NICE_DEFAULT,
            authenticated: true,
        }
    }
}

impl TcpBenchConfig {
    /// Checks the bounds.
    pub fn validate(&self) -> Result<(), String> {
        if self.clients == 0 || self.clients > BENCH_CLIENTS_MAX {
            return Err(format!(
                "clients must be between 1 and {BENCH_CLIENTS_MAX}, got {}",
                self.clients
            ));
        }
        if self.message_bytes > BENCH_MESSAGE_BYTES_MAX {
            return Err(format!(
                "message size must be at most {BENCH_MESSAGE_BYTES_MAX} bytes, got {}",
                self.message_bytes
            ));
        }
        if self.duration.is_zero() {
            return Err("the measurement window must be longer than 0".into());
        }
        if self.client_nice > BENCH_CLIENT_NICE_MAX {
            return Err(format!(
                "client nice value must be between 0 and {BENCH_CLIENT_NICE_MAX}, got {}",
                self.client_nice
            ));
        }
        if self.client_nice > 0 && !cfg!(target_os = "linux") {
            return Err("a client nice value is supported on Linux only".into());
        }
        Ok(())
    }
}

/// The figures of one side.
#[derive(Debug, Clone, Serialize)]
pub struct SideReport {
    /// Requests completed inside the measurement window, all clients together.
    pub requests: u64,
    /// `requests` divided by the window's length.
    pub requests_per_second: f64,
    /// Latency of those requests (send to answer), in nanoseconds.
    pub latency: LatencySummary,
    /// The system calls the side made inside the window.
    pub syscalls: SideSyscalls,
}

/// The system calls one side made inside the measurement window, counted by the code
/// that makes them (see [`SyscallCounts`] for what counts): on the runtime side, every
/// call of each node's [`TcpTransport`] (the node runtime makes none of its own); on the
/// baseline side, every `read`, `write` and `accept` of the echo's sockets.
#[derive(Debug, Clone, Serialize)]
pub struct SideSyscalls {
    /// The server's calls (the runtime's server node; the baseline's echo threads).
    pub server: SyscallCounts,
    /// The clients' calls, all together.
    pub clients: SyscallCounts,
    /// `server` divided by the requests completed in the window.
    pub server_per_request: SyscallRates,
    /// `clients` divided by the requests completed in the window.
    pub clients_per_request: SyscallRates,
    /// `server + clients` divided by the requests completed in the window.
    pub per_request: SyscallRates,
}

impl SideSyscalls {
    fn new(server: SyscallCounts, clients: SyscallCounts, requests: u64) -> Self {
        SideSyscalls {
            server,
            clients,
            server_per_request: server.per(requests),
            clients_per_request: clients.per(requests),
            per_request: (server + clients).per(requests),
        }
    }
}

/// What `rehearsal bench tcp` reports.
#[derive(Debug, Clone, Serialize)]
pub struct TcpBenchReport {
    /// Always `"tcp"`.
    pub bench: &'static str,
    /// What ran.
    pub workload: String,
    /// How it ran.
    pub config: TcpBenchConfig,
    /// The node runtime with real actors over [`TcpTransport`].
    pub runtime: SideReport,
    /// Plain `std::net` echo.
    pub baseline: SideReport,
    /// `runtime.requests_per_second / baseline.requests_per_second`.
    pub throughput_ratio: f64,
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The configuration is out of bounds.
    #[error("invalid benchmark configuration: {0}")]
    Config(String),
    /// Setting up sockets or threads failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A transport could not start.
    #[error("transport: {0}")]
    Transport(#[from] TransportError),
    /// A node runtime failed.
    #[error("node runtime: {0}")]
    Runtime(#[from] RuntimeError),
    /// A benchmark thread panicked.
    #[error("a benchmark thread panicked")]
    Panicked,
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> BenchError {
    let context = context.into();
    move |source| BenchError::Io { context, source }
}

/// Runs both sides, runtime first, and compares them. `actors[0]` is the server, the rest
/// are closed-loop clients (as many as `config.clients`); `is_completion` tells which of a
/// client's outputs completes a request.
pub fn run<A>(
    workload: impl Into<String>,
    actors: Vec<A>,
    is_completion: fn(&A::Output) -> bool,
    config: &TcpBenchConfig,
) -> Result<TcpBenchReport, BenchError>
where
    A: Actor + Send + 'static,
    A::Msg: Send,
    A::Timer: Send,
    A::Output: Send,
{
    config.validate().map_err(BenchError::Config)?;
    if actors.len() != config.clients as usize + 1 {
        return Err(BenchError::Config(format!(
            "{} actors for 1 server and {} clients",
            actors.len(),
            config.clients
        )));
    }
    let runtime = runtime_side(actors, is_completion, config)?;
    let baseline = baseline_side(config)?;
    let throughput_ratio = if baseline.requests_per_second > 0.0 {
        runtime.requests_per_second / baseline.requests_per_second
    } else {
        0.0
    };
    Ok(TcpBenchReport {
        bench: "tcp",
        workload: workload.into(),
        config: config.clone(),
        runtime,
        baseline,
        throughput_ratio,
    })
}

/// Counts one client's completions inside the window and records their latencies.
#[derive(Default)]
struct Recorder {
    /// When the previous completion happened (ns since the shared epoch): in a closed loop
    /// the next request leaves in the same handler, so the gap to the next completion is
    /// that request's latency.
    last_ns: Option<u64>,
    requests: u64,
    latencies: LatencyHistogram,
}

impl Recorder {
    fn complete(&mut self, at_ns: u64, window_ns: (u64, u64)) {
        if let Some(last_ns) = self.last_ns {
            // The request counts if it started and ended inside the window.
            if last_ns >= window_ns.0 && at_ns < window_ns.1 {
                self.requests += 1;
                self.latencies.record_ns(at_ns - last_ns);
            }
        }
        self.last_ns = Some(at_ns);
    }
}

/// What one side's server and clients made of system calls inside the window.
#[derive(Default)]
struct WindowSyscalls {
    server: SyscallCounts,
    clients: SyscallCounts,
}

fn side_report(recorders: &[Recorder], window: Duration, syscalls: WindowSyscalls) -> SideReport {
    let mut latencies = LatencyHistogram::new();
    let mut requests = 0;
    for recorder in recorders {
        requests += recorder.requests;
        latencies.merge(&recorder.latencies);
    }
    SideReport {
        requests,
        requests_per_second: requests as f64 / window.as_secs_f64(),
        latency: latencies.summary(),
        syscalls: SideSyscalls::new(syscalls.server, syscalls.clients, requests),
    }
}

/// Reads the server's counts (the first) and the clients' (the rest, summed) at the
/// window's start and at its end, and returns the difference.
fn count_window(
    epoch: Instant,
    config: &TcpBenchConfig,
    read: impl Fn() -> Vec<SyscallCounts>,
) -> WindowSyscalls {
    let split = |counts: Vec<SyscallCounts>| {
        let mut counts = counts.into_iter();
        let server = counts.next().unwrap_or_default();
        let clients = counts.fold(SyscallCounts::default(), |sum, count| sum + count);
        (server, clients)
    };
    sleep_until(epoch + config.warmup);
    let (server_before, clients_before) = split(read());
    sleep_until(epoch + config.warmup + config.duration);
    let (server_after, clients_after) = split(read());
    WindowSyscalls {
        server: server_after - server_before,
        clients: clients_after - clients_before,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn window_ns(config: &TcpBenchConfig) -> (u64, u64) {
    let start = u64::try_from(config.warmup.as_nanos()).unwrap_or(u64::MAX);
    let length = u64::try_from(config.duration.as_nanos()).unwrap_or(u64::MAX);
    (start, start.saturating_add(length))
}

type NodeThread = JoinHandle<Result<(), BenchError>>;

fn runtime_side<A>(
    actors: Vec<A>,
    is_completion: fn(&A::Output) -> bool,
    config: &TcpBenchConfig,
) -> Result<SideReport, BenchError>
where
    A: Actor + Send + 'static,
    A::Msg: Send,
    A::Timer: Send,
    A::Output: Send,
{
    // Bind every listener first, so the peer table is complete before any node starts.
    let listeners = (0..actors.len())
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_error("cannot listen on 127.0.0.1"))?;
    let table: BTreeMap<NodeId, SocketAddr> = listeners
        .iter()
        .enumerate()
        .map(|(i, listener)| Ok((NodeId(i as u32), listener.local_addr()?)))
        .collect::<Result<_, io::Error>>()
        .map_err(io_error("cannot read a listening address"))?;
    let mut auths = if config.authenticated {
        crate::keys::fresh_tcp_auth(table.len())?
            .into_iter()
            .map(Some)
            .collect()
    } else {
        vec![None; table.len()]
    };
    let epoch = Instant::now();
    let window = window_ns(config);
    let mut recorders = Vec::new();
    let mut monitors = Vec::new();
    let mut stops: Vec<StopHandle> = Vec::new();
    let mut threads: Vec<NodeThread> = Vec::new();
    for (i, (actor, listener)) in actors.into_iter().zip(listeners).enumerate() {
        // Nothing on these threads prints: a caller may hold the stderr lock meanwhile.
        let tcp_config = TcpConfig {
            log_errors: false,
            auth: auths[i].take(),
            ..TcpConfig::default()
        };
        let transport =
            TcpTransport::with_listener(NodeId(i as u32), listener, &table, tcp_config)?;
        monitors.push(transport.monitor());
        let runtime_config = RuntimeConfig {
            epoch: Some(epoch),
            log_errors: false,
            ..RuntimeConfig::default()
        };
        let recorder = Arc::new(Mutex::new(Recorder::default()));
        let sink_recorder = Arc::clone(&recorder);
        let node = NodeRuntime::new(actor, transport, runtime_config).with_output_sink(
            move |record: OutputRecord<A::Output>| {
                if is_completion(&record.value) {
                    lock(&sink_recorder).complete(record.at.as_nanos(), window);
                }
            },
        );
        stops.push(node.stop_handle());
        recorders.push(recorder);
        let (is_client, client_nice) = (i > 0, config.client_nice);
        let thread = thread::Builder::new()
            .name(format!("bench-node-{i}"))
            .spawn(move || {
                if is_client {
                    lower_priority(client_nice)
                        .map_err(io_error("cannot lower a client's priority"))?;
                }
                let mut node = node;
                // The stop handle ends the run; the limit only bounds a forgotten one.
                node.run_for(Duration::from_secs(24 * 3600))
                    .map(drop)
                    .map_err(BenchError::Runtime)
            })
            .map_err(io_error("cannot start a node thread"))?;
        threads.push(thread);
    }
    let syscalls = count_window(epoch, config, || {
        monitors
            .iter()
            .map(|monitor| monitor.stats().syscalls)
            .collect()
    });
    for stop in &stops {
        stop.stop();
    }
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(())) => {}
            Ok(Err(error)) => failure = failure.or(Some(error)),
            Err(_) => failure = failure.or(Some(BenchError::Panicked)),
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let recorders: Vec<Recorder> = recorders
        .into_iter()
        .map(|recorder| std::mem::take(&mut *lock(&recorder)))
        .collect();
    Ok(side_report(&recorders, config.duration, syscalls))
}

/// Sets the calling thread's nice value (0 leaves it alone). On Linux the nice value
/// belongs to the thread, not the process, and raising it needs no privilege.
fn lower_priority(nice: u8) -> io::Result<()> {
    if nice == 0 {
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        // SAFETY: a plain system call on the calling thread (who = 0); the result is
        // checked.
        if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, libc::c_int::from(nice)) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "per-thread nice values need Linux",
    ))
}

fn sleep_until(deadline: Instant) {
    let now = Instant::now();
    if deadline > now {
        thread::sleep(deadline - now);
    }
}

// ---- The plain std::net baseline --------------------------------------------------------

/// One socket of the echo, whose calls are counted.
type EchoStream<'a> = Counted<'a, &'a TcpStream>;

/// Reads one length-prefixed frame into `payload`; `Ok(false)` at a clean end of stream.
fn read_echo_frame(stream: &mut EchoStream, payload: &mut Vec<u8>) -> io::Result<bool> {
    let mut header = [0u8; 4];
    match stream.read_exact(&mut header) {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(false),
        Err(error) => return Err(error),
    }
    let length = u32::from_be_bytes(header) as usize;
    if length > BENCH_MESSAGE_BYTES_MAX {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "echo frame too large",
        ));
    }
    payload.resize(length, 0);
    stream.read_exact(payload)?;
    Ok(true)
}

/// Writes header and payload with one system call, as the runtime's writer batches them.
fn write_echo_frame(
    stream: &mut EchoStream,
    frame: &mut Vec<u8>,
    payload_len: usize,
) -> io::Result<()> {
    frame.truncate(4);
    frame[..4].copy_from_slice(&(payload_len as u32).to_be_bytes());
    frame.resize(4 + payload_len, 0x5a);
    stream.write_all(frame)
}

fn echo_connection(stream: TcpStream, syscalls: &SyscallCounter) {
    syscalls.count(Syscall::Other);
    let _ = stream.set_nodelay(true);
    let mut stream = Counted {
        inner: &stream,
        counter: syscalls,
    };
    let mut payload = Vec::new();
    let mut frame = vec![0u8; 4];
    while let Ok(true) = read_echo_frame(&mut stream, &mut payload) {
        frame.truncate(4);
        frame.extend_from_slice(&payload);
        frame[..4].copy_from_slice(&(payload.len() as u32).to_be_bytes());
        if stream.write_all(&frame).is_err() {
            return;
        }
    }
}

fn baseline_side(config: &TcpBenchConfig) -> Result<SideReport, BenchError> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(io_error("cannot listen on 127.0.0.1"))?;
    let server_addr = listener
        .local_addr()
        .map_err(io_error("cannot read the listening address"))?;
    let clients = config.clients as usize;
    let stop = Arc::new(AtomicBool::new(false));
    // Non-blocking accepts, so that the acceptor notices the end of the run even if a
    // client never connected.
    listener
        .set_nonblocking(true)
        .map_err(io_error("cannot configure the echo listener"))?;
    let server_stop = Arc::clone(&stop);
    // One counter per thread: the acceptor's, then each connection's.
    let server_syscalls: Vec<Arc<SyscallCounter>> = (0..=clients).map(|_| Arc::default()).collect();
    let client_syscalls: Vec<Arc<SyscallCounter>> = (0..clients).map(|_| Arc::default()).collect();
    let acceptor_syscalls = server_syscalls.clone();
    let server = thread::Builder::new()
        .name("bench-echo-accept".into())
        .spawn(move || {
            let mut connections = Vec::new();
            let accepts = &acceptor_syscalls[0];
            while connections.len() < clients && !server_stop.load(Ordering::Relaxed) {
                accepts.count(Syscall::Other);
                let stream = match listener.accept() {
                    Ok((stream, _)) => stream,
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    Err(_) => break,
                };
                // The blocking flag, and the duplicate descriptor of the handle.
                accepts.count(Syscall::Other);
                accepts.count(Syscall::Other);
                if stream.set_nonblocking(false).is_err() {
                    break;
                }
                let Ok(handle) = stream.try_clone() else {
                    break;
                };
                let syscalls = Arc::clone(&acceptor_syscalls[connections.len() + 1]);
                match thread::Builder::new()
                    .name("bench-echo-serve".into())
                    .spawn(move || echo_connection(stream, &syscalls))
                {
                    Ok(thread) => connections.push((handle, thread)),
                    Err(_) => break,
                }
            }
            connections
        })
        .map_err(io_error("cannot start the echo server"))?;

    let epoch = Instant::now();
    let window = window_ns(config);
    let mut threads = Vec::new();
    for (i, syscalls) in client_syscalls.iter().enumerate() {
        let stop = Arc::clone(&stop);
        let message_bytes = config.message_bytes;
        let client_nice = config.client_nice;
        let syscalls = Arc::clone(syscalls);
        let thread = thread::Builder::new()
            .name(format!("bench-echo-client-{i}"))
            .spawn(move || -> io::Result<Recorder> {
                lower_priority(client_nice)?;
                // socket, connect, and the no-delay option.
                for _ in 0..3 {
                    syscalls.count(Syscall::Other);
                }
                let stream = TcpStream::connect(server_addr)?;
                stream.set_nodelay(true)?;
                let mut stream = Counted {
                    inner: &stream,
                    counter: &syscalls,
                };
                let mut recorder = Recorder::default();
                let mut frame = vec![0u8; 4];
                let mut reply = Vec::new();
                recorder.last_ns = None;
                while !stop.load(Ordering::Relaxed) {
                    let sent_ns = duration_ns(epoch.elapsed());
                    write_echo_frame(&mut stream, &mut frame, message_bytes)?;
                    if !read_echo_frame(&mut stream, &mut reply)? {
                        return Err(io::ErrorKind::UnexpectedEof.into());
                    }
                    // As on the runtime side: a request counts if it started and ended
                    // inside the window.
                    recorder.last_ns = Some(sent_ns);
                    recorder.complete(duration_ns(epoch.elapsed()), window);
                }
                let _ = stream.inner.shutdown(Shutdown::Both);
                Ok(recorder)
            })
            .map_err(io_error("cannot start an echo client"))?;
        threads.push(thread);
    }
    let syscalls = count_window(epoch, config, || {
        let server = server_syscalls
            .iter()
            .fold(SyscallCounts::default(), |sum, counter| sum + counter.get());
        let clients = client_syscalls.iter().map(|counter| counter.get());
        std::iter::once(server).chain(clients).collect()
    });
    stop.store(true, Ordering::Relaxed);
    let mut recorders = Vec::new();
    let mut failure = None;
    for thread in threads {
        match thread.join() {
            Ok(Ok(recorder)) => recorders.push(recorder),
            Ok(Err(error)) => {
                failure = failure.or(Some(BenchError::Io {
                    context: "echo client".into(),
                    source: error,
                }))
            }
            Err(_) => failure = failure.or(Some(BenchError::Panicked)),
        }
    }
    // The clients closed their connections, so every server thread sees the end of its
    // stream and returns.
    if let Ok(connections) = server.join() {
        for (handle, thread) in connections {
            let _ = handle.shutdown(Shutdown::Both);
            let _ = thread.join();
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    Ok(side_report(&recorders, config.duration, syscalls))
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
