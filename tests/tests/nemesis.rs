//! The scenario file as a nemesis on a real network: each planned action's effect,
//! measured on a test network of Linux network namespaces (root, `ip`, `nft` and, for
//! latency, a kernel with netem; skipped with a reason otherwise), and signals on real
//! processes.
//!
//! The probes are this test binary itself, run inside a namespace with `ip netns exec`:
//! `probe-serve` listens on TCP (echo) and UDP (prints each datagram), `probe-tcp`
//! connects and times round trips, `probe-udp` sends datagrams. A drop is shown without
//! waiting for something not to happen: the datagram that must be dropped is sent first,
//! one that must arrive is sent after it on a path that reaches the same server, and the
//! server's log is read up to the second one.
//!
//! The test drives the nemesis's clock itself (`apply_due` with each action's time), so
//! no step depends on how fast the machine is.

#[cfg(target_os = "linux")]
mod linux {
    use rehearsal::cluster::nemesis::{
        plan, HostAccess, Nemesis, NodeControl, NodeSite, ProcessShell, Progress, Signal,
    };
    use rehearsal_hardware::netns::{NetnsError, TestNet};
    use rehearsal_sim_core::{ClockSkew, NodeId};
    use rehearsal_tests::skip;
    use std::io::{self, BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
    use std::process::{Child, Command, ExitCode, Stdio};
    use std::sync::mpsc::{self, Receiver};
    use std::time::{Duration, Instant};

    /// The port every probe server listens on (each namespace has its own ports).
    const PORT: u16 = 7500;

    /// Bound on anything that must happen (a connection, a datagram that must arrive).
    const LIMIT: Duration = Duration::from_secs(20);

    // ---- Probes (run inside a namespace) -----------------------------------------------------

    /// `probe-serve ADDR`: TCP echo and UDP log on ADDR:PORT; prints `ready`, then
    /// `udp PAYLOAD` per datagram; exits at the end of its stdin.
    pub fn probe_serve(address: &str) -> ExitCode {
        let at: SocketAddr = format!("{address}:{PORT}").parse().expect("an address");
        let listener = TcpListener::bind(at).expect("bind TCP");
        let udp = UdpSocket::bind(at).expect("bind UDP");
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut stream = stream;
                    let mut byte = [0u8; 1];
                    while stream.read_exact(&mut byte).is_ok() && stream.write_all(&byte).is_ok() {}
                });
            }
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            let stdout = io::stdout();
            while let Ok(n) = udp.recv(&mut buf) {
                let mut out = stdout.lock();
                let _ = writeln!(out, "udp {}", String::from_utf8_lossy(&buf[..n]));
                let _ = out.flush();
            }
        });
        println!("ready");
        let _ = io::stdout().flush();
        let _ = io::copy(&mut io::stdin(), &mut io::sink());
        ExitCode::SUCCESS
    }

    /// `probe-tcp ADDR TIMEOUT_MS ROUNDS`: connects, then times ROUNDS one-byte round trips;
    /// prints `rtt_us MIN` or `failed: WHY`.
    pub fn probe_tcp(address: &str, timeout_ms: &str, rounds: &str) -> ExitCode {
        let at: SocketAddr = format!("{address}:{PORT}").parse().expect("an address");
        let timeout = Duration::from_millis(timeout_ms.parse().expect("a timeout"));
        let rounds: u32 = rounds.parse().expect("rounds");
        let result = (|| -> io::Result<Duration> {
            let mut stream = TcpStream::connect_timeout(&at, timeout)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(LIMIT))?;
            let mut best = Duration::MAX;
            let mut byte = [7u8; 1];
            for _ in 0..rounds {
                let begun = Instant::now();
                stream.write_all(&byte)?;
                stream.read_exact(&mut byte)?;
                best = best.min(begun.elapsed());
            }
            Ok(best)
        })();
        match result {
            Ok(best) => {
                println!("rtt_us {}", best.as_micros());
                ExitCode::SUCCESS
            }
            Err(error) => {
                println!("failed: {error}");
                ExitCode::FAILURE
            }
        }
    }

    /// `probe-udp ADDR TOKEN COUNT`: sends COUNT datagrams `TOKEN`, 200 µs apart (so that the
    /// server's socket buffer never overflows, which would look like loss).
    pub fn probe_udp(address: &str, token: &str, count: &str) -> ExitCode {
        let at: SocketAddr = format!("{address}:{PORT}").parse().expect("an address");
        let socket = UdpSocket::bind("0.0.0.0:0").expect("bind");
        for _ in 0..count.parse::<u32>().expect("a count") {
            socket.send_to(token.as_bytes(), at).expect("send");
            std::thread::sleep(Duration::from_micros(200));
        }
        ExitCode::SUCCESS
    }

    // ---- The test network --------------------------------------------------------------------

    /// A probe server on each host, and what each prints.
    struct Probes<'a> {
        net: &'a TestNet,
        servers: Vec<Child>,
        logs: Vec<Receiver<String>>,
    }

    impl<'a> Probes<'a> {
        fn start(net: &'a TestNet) -> Probes<'a> {
            let mut servers = Vec::new();
            let mut logs = Vec::new();
            for host in 0..net.hosts() {
                let mut child =
                    in_host(net, host, &["probe-serve", &net.address(host).to_string()])
                        .stdin(Stdio::piped())
                        .stdout(Stdio::piped())
                        .spawn()
                        .expect("start a probe server");
                let (send, receive) = mpsc::channel();
                let stdout = child.stdout.take().expect("piped");
                std::thread::spawn(move || {
                    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                        if send.send(line).is_err() {
                            break;
                        }
                    }
                });
                assert_eq!(
                    receive.recv_timeout(LIMIT).as_deref(),
                    Ok("ready"),
                    "probe server of host {host}"
                );
                servers.push(child);
                logs.push(receive);
            }
            Probes { net, servers, logs }
        }

        /// A TCP connection from host `from` to host `to` and `rounds` round trips: the
        /// shortest, or why it failed.
        fn tcp(
            &self,
            from: usize,
            to: usize,
            timeout: Duration,
            rounds: u32,
        ) -> Result<Duration, String> {
            let output = in_host(
                self.net,
                from,
                &[
                    "probe-tcp",
                    &self.net.address(to).to_string(),
                    &timeout.as_millis().to_string(),
                    &rounds.to_string(),
                ],
            )
            .output()
            .expect("run probe-tcp");
            let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
            match text.strip_prefix("rtt_us ") {
                Some(us) => Ok(Duration::from_micros(us.parse().expect("microseconds"))),
                None => Err(format!("{text}{}", String::from_utf8_lossy(&output.stderr))),
            }
        }

        /// Sends `count` datagrams `token` from host `from` to host `to`.
        fn udp(&self, from: usize, to: usize, token: &str, count: u32) {
            let status = in_host(
                self.net,
                from,
                &[
                    "probe-udp",
                    &self.net.address(to).to_string(),
                    token,
                    &count.to_string(),
                ],
            )
            .status()
            .expect("run probe-udp");
            assert!(status.success());
        }

        /// The datagrams host `host` received up to and including the first `until`, by
        /// token (panics if `until` does not come).
        fn received_until(&self, host: usize, until: &str) -> Vec<String> {
            let deadline = Instant::now() + LIMIT;
            let mut seen = Vec::new();
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                match self.logs[host].recv_timeout(left) {
                    Ok(line) => {
                        let token = line.strip_prefix("udp ").unwrap_or(&line).to_string();
                        let done = token == until;
                        seen.push(token);
                        if done {
                            return seen;
                        }
                    }
                    Err(_) => panic!("host {host} never received `{until}`; it had {seen:?}"),
                }
            }
        }
    }

    impl Drop for Probes<'_> {
        fn drop(&mut self) {
            for server in &mut self.servers {
                drop(server.stdin.take());
                let _ = server.kill();
                let _ = server.wait();
            }
        }
    }

    /// This test binary, as a probe on host `host`.
    fn in_host(net: &TestNet, host: usize, args: &[&str]) -> Command {
        let prefix = net.exec_prefix(host);
        let mut command = Command::new(&prefix[0]);
        command
            .args(&prefix[1..])
            .arg(std::env::current_exe().expect("the test binary"))
            .args(args);
        command
    }

    /// A test network of `hosts` hosts with `nft`, or why a test must skip.
    fn network(tag: &str, hosts: usize) -> Result<TestNet, String> {
        if Command::new("nft").arg("--version").output().is_err() {
            return Err("nftables' `nft` is not installed (apt-get install nftables)".into());
        }
        match TestNet::create(tag, hosts) {
            Ok(net) => Ok(net),
            Err(NetnsError::Unavailable(why)) => Err(why),
            Err(error) => panic!("{error}"),
        }
    }

    /// Runs `body` on a fresh test network of `hosts` hosts with a probe server on each and a
    /// nemesis for scenario `text`, or skips test `test` (tagging the network `tag`).
    fn on_network(
        test: &str,
        tag: &str,
        hosts: usize,
        text: &str,
        body: impl FnOnce(&Probes<'_>, Nemesis),
    ) {
        let net = match network(tag, hosts) {
            Ok(net) => net,
            Err(why) => return skip(&format!("nemesis::{test}"), &why),
        };
        let probes = Probes::start(&net);
        body(&probes, nemesis_for(&net, text));
    }

    /// Node `i` on host `i` of the test network.
    fn sites(net: &TestNet) -> Vec<NodeSite> {
        (0..net.hosts())
            .map(|i| NodeSite {
                host: HostAccess::Exec(net.exec_prefix(i)),
                address: net.address(i),
                interface: net.interface(i).to_string(),
            })
            .collect()
    }

    fn nemesis_for(net: &TestNet, text: &str) -> Nemesis {
        let scenario =
            rehearsal_net_models::scenario::parse(text, "test.scenario", net.hosts() as u32)
                .expect("the scenario parses");
        let plan = plan(&scenario, "test.scenario", &sites(net)).expect("the scenario plans");
        Nemesis::new(plan, ProcessShell::default())
    }

    /// Whether host `host` has our nftables table.
    fn has_our_table(net: &TestNet, host: usize) -> bool {
        let mut prefix = net.exec_prefix(host);
        prefix.extend(["nft", "list", "tables"].map(String::from));
        let output = Command::new(&prefix[0])
            .args(&prefix[1..])
            .output()
            .expect("nft");
        String::from_utf8_lossy(&output.stdout).contains("inet rehearsal")
    }

    /// A launcher stand-in for network-only scenarios: no process faults.
    struct NoProcesses;

    impl NodeControl for NoProcesses {
        fn signal(&mut self, node: NodeId, _: Signal) -> io::Result<()> {
            panic!("no signal expected (node {})", node.0)
        }
        fn restart(&mut self, node: NodeId) -> io::Result<()> {
            panic!("no restart expected (node {})", node.0)
        }
        fn skew(&mut self, node: NodeId, _: ClockSkew) -> io::Result<()> {
            panic!("no skew expected (node {})", node.0)
        }
    }

    fn at(seconds: u64) -> Duration {
        Duration::from_secs(seconds)
    }

    // ---- Tests -------------------------------------------------------------------------------

    const SHORT: Duration = Duration::from_millis(1_000);

    /// `partition 0 | 1,2`: host 0 cannot connect to host 1 (nor 1 to 0), 1 and 2 still talk;
    /// after `heal`, 0 reaches 1 again and no table of ours is left.
    fn partition_cuts_tcp_between_the_sides_and_heal_restores_it() {
        on_network(
            "partition_cuts_tcp_between_the_sides_and_heal_restores_it",
            "nem_part",
            3,
            "@0 partition 0 | 1,2\n@1 heal\n",
            |probes, mut nemesis| {
                let net = probes.net;
                assert_eq!(
                    nemesis.apply_due(at(0), &mut NoProcesses),
                    Ok(Progress::Pending)
                );
                let cut = probes.tcp(0, 1, SHORT, 1);
                assert!(
                    cut.is_err(),
                    "0 connected to 1 across the partition: {cut:?}"
                );
                assert!(probes.tcp(1, 0, SHORT, 1).is_err(), "1 connected to 0");
                probes
                    .tcp(1, 2, LIMIT, 1)
                    .expect("1 reaches 2 within its side");
                probes
                    .tcp(2, 1, LIMIT, 1)
                    .expect("2 reaches 1 within its side");
                assert!((0..3).all(|host| has_our_table(net, host)));

                assert_eq!(
                    nemesis.apply_due(at(1), &mut NoProcesses),
                    Ok(Progress::Done)
                );
                probes
                    .tcp(0, 1, LIMIT, 1)
                    .expect("0 reaches 1 after the heal");
                assert!(
                    (0..3).all(|host| !has_our_table(net, host)),
                    "heal removes our tables"
                );
                let report = nemesis.finish(&mut NoProcesses);
                assert!(report.failure.is_none(), "{report:?}");
                assert_eq!(report.actions.len(), 2);
                assert!(report.actions.iter().all(|a| a.steps.iter().all(|s| s.ok)));
            },
        );
    }

    /// `cut 0 -> 1`: host 0's datagrams to host 1 are lost, host 1's to host 0 arrive; after
    /// `heal` host 0's arrive too.
    fn a_one_way_cut_drops_only_its_direction() {
        on_network(
            "a_one_way_cut_drops_only_its_direction",
            "nem_cut",
            3,
            "@0 cut 0 -> 1\n@1 heal\n",
            |probes, mut nemesis| {
                nemesis.apply_due(at(0), &mut NoProcesses).expect("cut");
                // Sent first: 0 -> 1 (cut); then 2 -> 1, which arrives after it would have.
                probes.udp(0, 1, "from-0-cut", 3);
                probes.udp(2, 1, "from-2", 1);
                let at_1 = probes.received_until(1, "from-2");
                assert_eq!(at_1, ["from-2"], "host 1 heard host 0 across the cut");
                // The other direction flows.
                probes.udp(1, 0, "from-1", 1);
                assert_eq!(probes.received_until(0, "from-1"), ["from-1"]);

                nemesis.apply_due(at(1), &mut NoProcesses).expect("heal");
                probes.udp(0, 1, "from-0-healed", 1);
                assert_eq!(probes.received_until(1, "from-0-healed"), ["from-0-healed"]);
                assert!(nemesis.finish(&mut NoProcesses).failure.is_none());
            },
        );
    }

    /// `set-loss 1` loses every datagram between nodes, `set-loss 0.5` about half of 400,
    /// `set-loss 0` none.
    fn set_loss_loses_that_share_of_packets() {
        on_network(
            "set_loss_loses_that_share_of_packets",
            "nem_loss",
            2,
            "@0 set-loss 1.0\n@1 set-loss 0.5\n@2 set-loss 0\n",
            |probes, mut nemesis| {
                let net = probes.net;
                nemesis.apply_due(at(0), &mut NoProcesses).expect("loss 1");
                probes.udp(0, 1, "all-lost", 50);
                nemesis
                    .apply_due(at(1), &mut NoProcesses)
                    .expect("loss 0.5");
                probes.udp(0, 1, "half-lost", 400);
                nemesis.apply_due(at(2), &mut NoProcesses).expect("loss 0");
                probes.udp(0, 1, "end", 1);
                let seen = probes.received_until(1, "end");
                let count = |token: &str| seen.iter().filter(|t| *t == token).count();
                let half = count("half-lost");
                println!(
                    "set-loss 1.0: {} of 50 arrived; set-loss 0.5: {half} of 400",
                    count("all-lost")
                );
                assert_eq!(count("all-lost"), 0);
                // Binomial(400, 0.5): mean 200, deviation 10; 120..280 is eight deviations either way.
                assert!(
                    (120..=280).contains(&half),
                    "{half} of 400 arrived at loss 0.5"
                );
                let report = nemesis.finish(&mut NoProcesses);
                assert!(report.failure.is_none(), "{report:?}");
                assert!(!has_our_table(net, 1));
            },
        );
    }

    /// `set-latency constant:50ms` delays each direction by 50 ms (netem on every sending
    /// interface): a TCP round trip between two hosts takes at least 100 ms, and well under
    /// 50 ms again once the run's end removed the qdiscs.
    fn set_latency_delays_round_trips_until_the_end() {
        on_network(
            "set_latency_delays_round_trips_until_the_end",
            "nem_lat",
            2,
            "@0 set-latency constant:50ms\n",
            |probes, mut nemesis| {
                let before = probes.tcp(0, 1, LIMIT, 5).expect("0 reaches 1");
                if let Err(error) = nemesis.apply_due(at(0), &mut NoProcesses) {
                    if error.why.contains("qdisc kind is unknown") {
                        return skip(
                            "nemesis::set_latency_delays_round_trips_until_the_end",
                            &format!(
                                "this kernel has no netem qdisc (CONFIG_NET_SCH_NETEM): {}",
                                error.why
                            ),
                        );
                    }
                    panic!("{error}");
                }
                let delayed = probes
                    .tcp(0, 1, LIMIT, 5)
                    .expect("0 reaches 1 with latency");
                let report = nemesis.finish(&mut NoProcesses);
                assert!(report.failure.is_none(), "{report:?}");
                assert_eq!(
                    report.cleanup.len(),
                    2,
                    "one qdisc per host removed: {report:?}"
                );
                let after = probes.tcp(0, 1, LIMIT, 5).expect("0 reaches 1 after");
                println!(
                    "TCP round trip, shortest of 5: before {before:?}, at 50 ms latency \
                     {delayed:?}, after {after:?}"
                );
                // netem holds each packet at least its delay: the shortest round trip is at least
                // both directions' 50 ms.
                assert!(delayed >= Duration::from_millis(100), "{delayed:?}");
                assert!(
                    after < Duration::from_millis(50),
                    "{after:?} after the cleanup"
                );
            },
        );
    }

    /// Real processes: `pause` stops one (state `T` in /proc), `resume` continues it, `crash`
    /// kills it with SIGKILL, `restart` asks the launcher, and the end resumes a node left
    /// paused. Needs no root: the processes are `sleep`s on this machine.
    fn pause_resume_and_crash_signal_real_processes() {
        let mut nodes = Sleepers::start(2);
        let text = "@0 pause 0\n@1 resume 0\n@2 crash 0\n@3 restart 0\n@4 pause 1\n";
        let scenario = rehearsal_net_models::scenario::parse(text, "t", 2).expect("parses");
        let sites: Vec<NodeSite> = (0..2)
            .map(|i| NodeSite {
                host: HostAccess::Local,
                address: std::net::Ipv4Addr::new(127, 0, 0, i + 1),
                interface: "lo".into(),
            })
            .collect();
        let plan = plan(&scenario, "t", &sites).expect("plans");
        let mut nemesis = Nemesis::new(plan, ProcessShell::default());
        nemesis.apply_due(at(0), &mut nodes).expect("pause");
        nodes.wait_for_state(0, 'T');
        nemesis.apply_due(at(1), &mut nodes).expect("resume");
        nodes.wait_for_state(0, 'S');
        nemesis.apply_due(at(2), &mut nodes).expect("crash");
        let status = nodes.children[0].wait().expect("reaped");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
        nemesis.apply_due(at(3), &mut nodes).expect("restart");
        assert_eq!(nodes.restarted, [NodeId(0)]);
        nemesis.apply_due(at(4), &mut nodes).expect("pause 1");
        nodes.wait_for_state(1, 'T');
        let report = nemesis.finish(&mut nodes);
        nodes.wait_for_state(1, 'S');
        let steps: Vec<&str> = report
            .actions
            .iter()
            .flat_map(|a| a.steps.iter().map(|s| s.what.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                "SIGSTOP node 0",
                "SIGCONT node 0",
                "SIGKILL node 0",
                "restart node 0",
                "SIGSTOP node 1"
            ]
        );
        assert_eq!(report.cleanup[0].what, "SIGCONT node 1");
    }

    /// `sleep` processes standing in for nodes, signalled with `kill -s`.
    struct Sleepers {
        children: Vec<Child>,
        restarted: Vec<NodeId>,
    }

    impl Sleepers {
        fn start(nodes: usize) -> Sleepers {
            let children = (0..nodes)
                .map(|_| Command::new("sleep").arg("600").spawn().expect("sleep"))
                .collect();
            Sleepers {
                children,
                restarted: Vec::new(),
            }
        }

        /// Waits until node `node`'s process is in state `state` (`T` stopped, `S` sleeping).
        fn wait_for_state(&self, node: usize, state: char) {
            let pid = self.children[node].id();
            let deadline = Instant::now() + LIMIT;
            loop {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
                // `PID (COMM) STATE ...`: the state follows the last `)`.
                let now = stat
                    .rsplit(')')
                    .next()
                    .and_then(|s| s.trim().chars().next());
                if now == Some(state) {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "process {pid} stayed in {now:?}, not {state}"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    impl NodeControl for Sleepers {
        fn signal(&mut self, node: NodeId, signal: Signal) -> io::Result<()> {
            let argv = signal.kill_argv(self.children[node.index()].id());
            let status = Command::new(&argv[0]).args(&argv[1..]).status()?;
            if status.success() {
                Ok(())
            } else {
                Err(io::Error::other(format!("{argv:?}: {status}")))
            }
        }
        fn restart(&mut self, node: NodeId) -> io::Result<()> {
            self.restarted.push(node);
            Ok(())
        }
        fn skew(&mut self, _: NodeId, _: ClockSkew) -> io::Result<()> {
            Ok(())
        }
    }

    impl Drop for Sleepers {
        fn drop(&mut self) {
            for child in &mut self.children {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    // ---- Harness -----------------------------------------------------------------------------

    pub const TESTS: &[(&str, fn())] = &[
        (
            "partition_cuts_tcp_between_the_sides_and_heal_restores_it",
            partition_cuts_tcp_between_the_sides_and_heal_restores_it,
        ),
        (
            "a_one_way_cut_drops_only_its_direction",
            a_one_way_cut_drops_only_its_direction,
        ),
        (
            "set_loss_loses_that_share_of_packets",
            set_loss_loses_that_share_of_packets,
        ),
        (
            "set_latency_delays_round_trips_until_the_end",
            set_latency_delays_round_trips_until_the_end,
        ),
        (
            "pause_resume_and_crash_signal_real_processes",
            pause_resume_and_crash_signal_real_processes,
        ),
    ];
}

fn main() -> std::process::ExitCode {
    #[cfg(target_os = "linux")]
    {
        use linux::{probe_serve, probe_tcp, probe_udp, TESTS};
        let args: Vec<String> = std::env::args().skip(1).collect();
        let arg = |i: usize| args.get(i).map(String::as_str).unwrap_or_default();
        match arg(0) {
            "probe-serve" => probe_serve(arg(1)),
            "probe-tcp" => probe_tcp(arg(1), arg(2), arg(3)),
            "probe-udp" => probe_udp(arg(1), arg(2), arg(3)),
            _ => rehearsal_tests::process::main(TESTS),
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        fn linux_only() {
            rehearsal_tests::skip(
                "nemesis",
                "network namespaces, nftables, netem and /proc are Linux only",
            );
        }
        rehearsal_tests::process::main(&[("nemesis_needs_linux", linux_only)])
    }
}
