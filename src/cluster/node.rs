//! `rehearsal node`: one node of a cluster file over TCP or DPDK.

use super::*;

// ---- rehearsal node -----------------------------------------------------------------------

/// How a node's run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum StopCause {
    /// SIGINT or SIGTERM.
    Signal,
    /// The end of stdin (controlled nodes).
    StdinClosed,
    /// `--duration` passed.
    Duration,
    /// The runtime failed.
    Failed,
}

/// The last line a node prints: what it did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct NodeSummary {
    pub(super) node: u32,
    pub(super) role: Role,
    pub(super) protocol: String,
    pub(super) stop: StopCause,
    /// From the start of the actor to the stop.
    pub(super) elapsed_ns: u64,
    pub(super) outputs: u64,
    pub(super) requests_completed: u64,
    pub(super) requests_executed: u64,
    /// Whether the node reached its goal (see `Watch`).
    pub(super) done: bool,
    /// Request latencies of a client; empty on other nodes.
    pub(super) latency: LatencySummary,
    pub(super) latency_histogram: LatencyHistogram,
    /// [`RuntimeStats`](rehearsal_hardware::RuntimeStats), as JSON.
    pub(super) runtime: serde_json::Value,
    /// The transport the node ran over.
    pub(super) transport: TransportKind,
    /// [`TcpStats`](rehearsal_hardware::TcpStats), as JSON (over TCP).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub(super) tcp: serde_json::Value,
    /// `DpdkStats` of the DPDK transport, as JSON (over DPDK).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub(super) dpdk: serde_json::Value,
    /// Why the node failed, if it did.
    pub(super) error: Option<String>,
}

/// What a node's output sink keeps.
pub(super) struct Observer<O> {
    watch: Watch<O>,
    outputs_file: Option<BufWriter<File>>,
    write_error: Option<io::Error>,
    outputs: u64,
    completions: u64,
    executions: u64,
    /// When the previous request of a closed-loop client completed (or the actor started):
    /// the next request leaves in the same handler, so the gap is that request's latency.
    last_completion: Time,
    latencies: LatencyHistogram,
    done: Arc<AtomicBool>,
}

impl<O: Serialize> Observer<O> {
    fn observe(&mut self, record: &OutputRecord<O>) {
        self.outputs += 1;
        if let Some(file) = &mut self.outputs_file {
            let written = serde_json::to_writer(&mut *file, record)
                .map_err(io::Error::from)
                .and_then(|()| file.write_all(b"\n"));
            if let Err(error) = written {
                self.write_error.get_or_insert(error);
                self.outputs_file = None;
            }
        }
        if (self.watch.is_completion)(&record.value) {
            self.completions += 1;
            self.latencies
                .record_ns(record.at.0.saturating_sub(self.last_completion.0));
            self.last_completion = record.at;
            if Some(self.completions) == self.watch.completions_goal {
                self.done.store(true, Ordering::SeqCst);
            }
        }
        self.executions += (self.watch.executions)(&record.value);
        if (self.watch.is_final)(&record.value) {
            self.done.store(true, Ordering::SeqCst);
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Signal handlers installed for one command, removed when it returns (so that a library
/// caller, such as a test, gets its process's handlers back).
pub(super) struct Signals {
    ids: Vec<signal_hook::SigId>,
}

impl Signals {
    /// `stop` is raised by SIGTERM, and by SIGINT unless `ignore_interrupt` (then SIGINT
    /// does nothing).
    pub(super) fn install(stop: &Arc<AtomicBool>, ignore_interrupt: bool) -> io::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut ids = vec![signal_hook::flag::register(SIGTERM, Arc::clone(stop))?];
        let interrupt = if ignore_interrupt {
            Arc::new(AtomicBool::new(false))
        } else {
            Arc::clone(stop)
        };
        ids.push(signal_hook::flag::register(SIGINT, interrupt)?);
        Ok(Signals { ids })
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// Runs one node of a cluster file until it is stopped; prints a summary. Exit status 0
/// after a clean stop, 1 if the node failed, 2 for a bad cluster file or arguments.
pub fn node(args: &NodeArgs, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, CliError> {
    let cluster = ClusterConfig::load(&args.config).map_err(bad)?;
    let me = NodeId(args.id);
    let entry = cluster.node(me).ok_or_else(|| {
        bad(format!(
            "{}: there is no node {} (the file's ids are 0 to {})",
            cluster.origin,
            args.id,
            cluster.nodes.len() - 1
        ))
    })?;
    cluster
        .check_transport(args.transport.kind())
        .map_err(bad)?;
    let protocol = Protocol::named(&cluster.protocol).map_err(|e| bad(cluster.error(e)))?;
    #[cfg(not(feature = "dpdk"))]
    if args.transport == TransportArg::Dpdk {
        return Err(bad(DPDK_MISSING));
    }
    // Read before anything opens: a state file that is torn, corrupt or unreadable stops
    // the node at once, naming the file, rather than letting it start from nothing.
    let durable = match &args.state {
        Some(path) => load_state(path).map_err(bad)?,
        None => None,
    };
    protocol.run_node(NodeRun {
        cluster: &cluster,
        entry,
        args,
        durable,
        out,
        err,
    })
}

/// Runs `actor` over the transport `--transport` names.
pub(crate) fn run_node_over<A>(
    actor: A,
    watch: Watch<A::Output>,
    run: NodeRun<'_>,
) -> Result<u8, CliError>
where
    A: Actor,
    A::Output: Serialize + Send + 'static,
{
    let NodeRun {
        cluster,
        entry,
        args,
        out,
        err,
        ..
    } = run;
    match args.transport {
        TransportArg::Tcp => {
            let open = |_: &mut dyn Write, _: &dyn Fn() -> bool| open_tcp(cluster, entry);
            run_node(actor, watch, open, cluster, entry, args, out, err)
        }
        #[cfg(feature = "dpdk")]
        TransportArg::Dpdk => {
            let deadline = args.duration.map(|limit| Instant::now() + limit);
            let open = |err: &mut dyn Write, stopped: &dyn Fn() -> bool| {
                dpdk_node::open(cluster, entry, err, stopped, deadline)
            };
            run_node(actor, watch, open, cluster, entry, args, out, err)
        }
        // Refused by `node` before the actor was built.
        #[cfg(not(feature = "dpdk"))]
        TransportArg::Dpdk => Err(bad(DPDK_MISSING)),
    }
}

pub(super) fn open_tcp(
    cluster: &ClusterConfig,
    entry: &NodeConfig,
) -> Result<TcpTransport, String> {
    let table = cluster.tcp_peer_table().map_err(|e| e.to_string())?;
    // The transport's threads must not print: the caller may hold the stderr lock for the
    // whole command (the `rehearsal` binary does). Its errors are forwarded to `err` from
    // the node's thread instead.
    let tcp_config = TcpConfig {
        log_errors: false,
        auth: keys::cluster_tcp_auth(cluster, entry.id)?,
        ..TcpConfig::default()
    };
    TcpTransport::from_peer_table(entry.id, &table, tcp_config).map_err(|e| e.to_string())
}

/// Reads a controlled node's stdin on a thread of its own: sends `()` for every `start`
/// line, and raises `closed` at the end of stdin (the channel then disconnects).
pub(super) fn watch_stdin(closed: &Arc<AtomicBool>, clock: ClockHandle) -> Receiver<()> {
    let (tx, rx) = mpsc::channel();
    let at_end = Arc::clone(closed);
    let spawned = thread::Builder::new()
        .name("node-stdin".into())
        .spawn(move || {
            let stdin = io::stdin();
            for line in stdin.lock().lines() {
                match line {
                    Ok(line) if line.trim() == "start" => {
                        let _ = tx.send(());
                    }
                    // The launcher's nemesis skews the clock the actor reads.
                    Ok(line) => match super::nemesis::parse_skew_line(&line) {
                        Some(Ok(skew)) => clock.set_skew(skew),
                        Some(Err(e)) => eprintln!("ignored control line: {e}"),
                        None => {}
                    },
                    Err(_) => break,
                }
            }
            at_end.store(true, Ordering::SeqCst);
        });
    if spawned.is_err() {
        // Without a reader the node could never be stopped through stdin: stop it now.
        closed.store(true, Ordering::SeqCst);
    }
    rx
}

/// The environment variable that makes a node print its annotations to stderr.
const ANNOTATE_ENV: &str = "REHEARSAL_ANNOTATE";

/// Runs one node over the transport `open` makes (after the outputs file and the signal
/// handlers are set up; `open` may wait while its second argument, "stopped by a signal
/// or the end of stdin", is false): the `ready` line, the controlled start, the wait for
/// the link, the run, and the summary.
#[allow(clippy::too_many_arguments)]
pub(super) fn run_node<A, T>(
    actor: A,
    watch: Watch<A::Output>,
    open: impl FnOnce(&mut dyn Write, &dyn Fn() -> bool) -> Result<T, String>,
    cluster: &ClusterConfig,
    entry: &NodeConfig,
    args: &NodeArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, CliError>
where
    A: Actor,
    A::Output: Serialize + Send + 'static,
    T: NodeTransport,
{
    let json = args.json || args.controlled;
    let me = entry.id;
    let outputs_file = match &args.outputs {
        None => None,
        Some(path) => Some(BufWriter::new(File::create(path).map_err(|e| {
            bad(format!(
                "cannot create outputs file `{}`: {e}",
                path.display()
            ))
        })?)),
    };
    let stop = Arc::new(AtomicBool::new(false));
    let _signals = Signals::install(&stop, args.controlled)?;
    // A controlled node heeds the end of its stdin from the start, so that it stops even
    // while its transport opens (a memif client waits for its server).
    let stdin_closed = Arc::new(AtomicBool::new(false));
    let clock = ClockHandle::default();
    let control = args
        .controlled
        .then(|| watch_stdin(&stdin_closed, clock.clone()));
    let stopped = || stop.load(Ordering::Relaxed) || stdin_closed.load(Ordering::Relaxed);
    // --duration counts from here (from `start` under --controlled): waits for the peer
    // included.
    let mut begun = Instant::now();
    let transport = match open(err, &stopped) {
        Ok(transport) => transport,
        Err(error) => {
            writeln!(err, "error: node {}: {error}", me.0)?;
            return Ok(EXIT_FAILED);
        }
    };
    let whereabouts = transport.whereabouts();
    let description = transport.describe();
    let done = Arc::new(AtomicBool::new(false));
    let observer = Arc::new(Mutex::new(Observer {
        watch,
        outputs_file,
        write_error: None,
        outputs: 0,
        completions: 0,
        executions: 0,
        last_completion: Time::ZERO,
        latencies: LatencyHistogram::new(),
        done: Arc::clone(&done),
    }));
    let sink_observer = Arc::clone(&observer);
    // The instant the outputs' times count from, and the machine's clock then: the
    // launcher lines up the outputs of nodes on one machine (or on hosts whose clocks
    // agree) for `cluster --plot`.
    let epoch = Instant::now();
    let epoch_unix_ns = super::launch::unix_ns();
    let runtime_config = RuntimeConfig {
        seed: cluster.seed,
        state_path: args.state.clone(),
        epoch: Some(epoch),
        // `REHEARSAL_ANNOTATE=1` prints the actor's annotations (`cx.annotate`: why it
        // dropped a message, suspects its primary, ...) to stderr, which `rehearsal
        // cluster` keeps in each node's log; the launcher's nodes inherit it.
        log_annotations: std::env::var_os(ANNOTATE_ENV).is_some_and(|v| v != "0"),
        ..RuntimeConfig::default()
    };
    let mut runtime = NodeRuntime::new(actor, transport, runtime_config)
        .with_clock_handle(clock)
        .with_output_sink(move |record| lock(&sink_observer).observe(&record));

    if json {
        let mut ready = serde_json::Map::new();
        ready.insert("event".into(), "ready".into());
        ready.insert("node".into(), me.0.into());
        // Where the launcher's nemesis sends its signals (`pause`, `crash`), on any host.
        ready.insert("pid".into(), std::process::id().into());
        ready.insert("epoch_unix_ns".into(), epoch_unix_ns.into());
        ready.insert("transport".into(), T::KIND.name().into());
        ready.extend(
            whereabouts
                .into_iter()
                .map(|(field, value)| (field.to_string(), value.into())),
        );
        writeln!(out, "{}", serde_json::Value::Object(ready))?;
    } else {
        writeln!(
            out,
            "node {} ({} of {}) {description}; stop it with Ctrl-C",
            me.0, entry.role, cluster.protocol
        )?;
    }
    out.flush()?;

    if let Some(control) = control {
        // Wait for `start`; after it, the end of stdin (`stdin_closed`) stops the node.
        while !stopped() {
            match control.recv_timeout(Duration::from_millis(20)) {
                Ok(()) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        begun = Instant::now();
    }

    let duration = args
        .duration
        .unwrap_or(Duration::from_secs(100 * 365 * 24 * 3600));
    let left = || duration.saturating_sub(begun.elapsed());
    // Messages sent before the link is up would wait in a bounded queue, and the first
    // request's latency would include the peer's start: start the actor once it is up.
    wait_for_link(runtime.transport(), left(), &stopped, || {
        if json {
            Ok(())
        } else {
            writeln!(
                out,
                "node {}: waiting for the link to come up (is the other node running?)",
                me.0
            )
            .and_then(|()| out.flush())
        }
    })?;
    let limit = left();

    let started = runtime.now();
    lock(&observer).last_completion = started;
    let mut done_reported = false;
    let mut report_error = None;
    let mut forwarder = ErrorForwarder::default();
    let result = runtime.run_until(limit, |node| {
        node.transport().forward_errors(&mut forwarder, err);
        if !done_reported && done.load(Ordering::Relaxed) {
            done_reported = true;
            if json {
                let line = serde_json::json!({"event": "done", "node": me.0});
                report_error = writeln!(out, "{line}").and_then(|()| out.flush()).err();
            }
        }
        // A node whose state can no longer be made durable stops: going on would promise
        // (in the messages it sends) what a crash could take back.
        stopped() || node.stats().state_write_failures > 0
    });
    let elapsed_ns = runtime.now().0.saturating_sub(started.0);
    let state_lost = runtime.stats().state_write_failures > 0;
    let (stop_cause, error) = match result {
        Ok(_) if state_lost => (
            StopCause::Failed,
            Some(format!(
                "node {}: cannot save its durable state to {}",
                me.0,
                args.state.as_deref().unwrap_or(Path::new("?")).display()
            )),
        ),
        Ok(RunStop::TimedOut) => (StopCause::Duration, None),
        Ok(_) if stop.load(Ordering::SeqCst) => (StopCause::Signal, None),
        Ok(_) => (StopCause::StdinClosed, None),
        Err(error) => (StopCause::Failed, Some(format!("node {}: {error}", me.0))),
    };
    forwarder.look_next_time();
    runtime.transport().forward_errors(&mut forwarder, err);
    let runtime_stats = runtime.stats().clone();
    // Stop the transport before reporting, so its counters are final.
    let (_, transport) = runtime.into_parts();
    let transport_stats = serde_json::to_value(transport.finish()).unwrap_or_default();
    let mut observer = lock(&observer);
    let mut error = error;
    if let Some(file) = &mut observer.outputs_file {
        if let Err(e) = file.flush() {
            observer.write_error.get_or_insert(e);
        }
    }
    if let Some(e) = observer.write_error.take() {
        error.get_or_insert(format!("node {}: cannot write its outputs: {e}", me.0));
    }
    let (tcp, dpdk) = match T::KIND {
        TransportKind::Tcp => (transport_stats, serde_json::Value::Null),
        TransportKind::Dpdk => (serde_json::Value::Null, transport_stats),
    };
    let summary = NodeSummary {
        node: me.0,
        role: entry.role,
        protocol: cluster.protocol.clone(),
        stop: stop_cause,
        elapsed_ns,
        outputs: observer.outputs,
        requests_completed: observer.completions,
        requests_executed: observer.executions,
        done: done.load(Ordering::SeqCst),
        latency: if observer.completions > 0 {
            observer.latencies.summary()
        } else {
            LatencySummary::default()
        },
        latency_histogram: std::mem::take(&mut observer.latencies),
        runtime: serde_json::to_value(&runtime_stats).map_err(io::Error::from)?,
        transport: T::KIND,
        tcp,
        dpdk,
        error: error.clone(),
    };
    if json {
        let mut line = serde_json::to_value(&summary).map_err(io::Error::from)?;
        line["event"] = "summary".into();
        writeln!(out, "{line}")?;
    } else {
        writeln!(out, "{}", describe_node(&summary))?;
    }
    out.flush()?;
    if let Some(error) = report_error {
        return Err(error.into());
    }
    if let Some(error) = &error {
        writeln!(err, "error: {error}")?;
        return Ok(EXIT_FAILED);
    }
    Ok(EXIT_OK)
}

/// How often a node looks at its link while it waits for it.
pub(super) const LINK_POLL: Duration = Duration::from_millis(5);

/// How long a node waits for its link before it says it is waiting.
pub(super) const LINK_NOTICE_AFTER: Duration = Duration::from_secs(2);

/// Waits until `transport`'s link is up, `stopped()` holds or `limit` passes; calls
/// `notice` once if the wait lasts longer than [`LINK_NOTICE_AFTER`].
pub(super) fn wait_for_link<T: NodeTransport>(
    transport: &T,
    limit: Duration,
    stopped: &dyn Fn() -> bool,
    mut notice: impl FnMut() -> io::Result<()>,
) -> io::Result<()> {
    let begun = Instant::now();
    let mut noticed = false;
    while !transport.link_up() && !stopped() && begun.elapsed() < limit {
        if !noticed && begun.elapsed() >= LINK_NOTICE_AFTER {
            noticed = true;
            notice()?;
        }
        thread::sleep(LINK_POLL);
    }
    Ok(())
}
