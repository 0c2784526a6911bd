//! The scenario file as a nemesis on a real network: the commands that drive the
//! simulator's network and fault models, applied to a running cluster's hosts and
//! processes at their times.
//!
//! Two steps, so that everything that can be wrong with a scenario is found before a
//! cluster starts:
//!
//! 1. [`plan`] compiles a parsed [`Scenario`] and a description of the real cluster (per
//!    node: how to run a command on its host, its IPv4 address, its network interface)
//!    into a [`Plan`]: a timeline of [`Action`]s, one per scenario line, each a list of
//!    concrete [`Step`]s. It is pure: no command runs.
//! 2. A [`Nemesis`] runs the plan's actions when they fall due, records when each one was
//!    applied and what came of it ([`NemesisReport`], serialisable into the cluster's JSON
//!    report), and removes what it installed on the hosts at the end, when a step fails,
//!    and when it is dropped.
//!
//! What each command becomes:
//!
//! | command | on a real cluster |
//! |---|---|
//! | `partition`, `isolate`, `majority-minority`, `ring`, `bridge`, `cut`, `heal` | nftables rules in a table of our own, `inet rehearsal`, on the receiving node's host: its `input` chain drops the packets of each cut link by source and destination address |
//! | `set-loss P` | the same table drops each packet between two nodes with probability P (`numgen random`) |
//! | `set-latency SPEC` | `tc qdisc replace dev IF root netem delay …` on every node's interface |
//! | `crash N`, `restart N` | SIGKILL; the launcher starts the node again, from its state file |
//! | `pause N`, `resume N` | SIGSTOP, SIGCONT |
//! | `skew N OFFSET [DRIFT]` | the node runtime's clock for its actor ([`NodeControl::skew`]) |
//! | `annotate`, `stop`, `settle` | a timeline entry; the run ends; heal, resume the paused, restart the crashed |
//!
//! A cut link drops at the receiver, not the sender: to the sender it looks like a packet
//! lost on the wire (a drop in the sender's output chain would fail its `send` or
//! `connect` with `EPERM` instead). `heal` removes our table's rules, never anything else
//! of the host's firewall. The simulator's topology ([`Topology`]) decides which directed
//! links a command cuts, so a real run cuts exactly the links a simulated one does.
//!
//! Loss is an nftables rule rather than netem's `loss`: it then applies per link, between
//! the cluster's nodes only (an ssh session to the host keeps working at `set-loss 1`),
//! and it needs no netem in the kernel.
//!
//! Simulator-only commands (`byzantine`, `mutate`, `twins`, `leader`, `@round` triggers)
//! are refused with the file, line and command.

use rehearsal_net_models::scenario::Scenario;
use rehearsal_net_models::topology::Topology;
use rehearsal_sim_core::{ClockSkew, Fault, Latency, NetChange, NodeId, RoundWhen};
use serde::Serialize;
use std::collections::BTreeSet;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The nftables table every rule of ours lives in: removing it removes them all and
/// nothing else.
pub const NFT_TABLE: &str = "inet rehearsal";

/// Probability resolution of `set-loss` rules: `numgen random mod` this.
const LOSS_SCALE: u64 = 1_000_000;

/// netem's queue, in packets: far above its default of 1000, which a delayed fast link
/// fills (and then drops, which is not what `set-latency` asks for).
const NETEM_LIMIT_PACKETS: u32 = 100_000;

/// Longest a host command may take before it is killed and reported as failed: an ssh to
/// a host that stopped answering must not hang the run.
pub const HOST_COMMAND_TIMEOUT: Duration = Duration::from_secs(20);

// ---- The real cluster -------------------------------------------------------------------

/// How a command reaches a node's host.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostAccess {
    /// This machine: the command runs as is.
    Local,
    /// A command prefix that runs the rest of its arguments as a program, e.g.
    /// `["ip", "netns", "exec", "NS"]`.
    Exec(Vec<String>),
    /// An ssh command line up to and including the host, e.g. `["ssh", "-p", "2222",
    /// "node1"]`: ssh joins the remote words into one shell line, so each is quoted.
    Ssh(Vec<String>),
}

impl HostAccess {
    /// The command line that runs `argv` on this host.
    pub fn command_line(&self, argv: &[String]) -> Vec<String> {
        match self {
            HostAccess::Local => argv.to_vec(),
            HostAccess::Exec(prefix) => prefix.iter().chain(argv).cloned().collect(),
            HostAccess::Ssh(prefix) => {
                let remote: Vec<String> = argv.iter().map(|word| shell_quote(word)).collect();
                let mut line = prefix.clone();
                line.push("--".into());
                line.push(remote.join(" "));
                line
            }
        }
    }
}

impl fmt::Display for HostAccess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostAccess::Local => f.write_str("local"),
            HostAccess::Exec(prefix) | HostAccess::Ssh(prefix) => {
                f.write_str(&display_line(prefix))
            }
        }
    }
}

/// Where one node of the real cluster runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeSite {
    /// How commands reach its host (nodes with equal access share a host).
    pub host: HostAccess,
    /// The address its peers reach it at.
    pub address: Ipv4Addr,
    /// The network interface its traffic leaves its host by (netem's device).
    pub interface: String,
}

// ---- The plan ---------------------------------------------------------------------------

/// A signal the nemesis sends a node's process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Signal {
    /// SIGKILL: `crash`.
    Kill,
    /// SIGSTOP: `pause`.
    Stop,
    /// SIGCONT: `resume`.
    Cont,
}

impl Signal {
    /// The name `kill -s` takes: `KILL`, `STOP`, `CONT`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::Kill => "KILL",
            Signal::Stop => "STOP",
            Signal::Cont => "CONT",
        }
    }

    /// `kill -s NAME PID`: the command that sends this signal to process `pid` on a
    /// node's host (through [`HostAccess::command_line`]), for a launcher whose nodes run
    /// elsewhere.
    pub fn kill_argv(self, pid: u32) -> Vec<String> {
        vec![
            "kill".into(),
            "-s".into(),
            self.name().into(),
            pid.to_string(),
        ]
    }
}

/// What the nemesis installs on a host, to remove at the end.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Installed {
    /// Our nftables table on host `host`.
    Table { host: usize },
    /// Our netem qdisc on `interface` of host `host`.
    Qdisc { host: usize, interface: String },
}

/// A command run on one host.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCommand {
    /// Index into [`Plan::hosts`].
    pub host: usize,
    pub argv: Vec<String>,
    /// Fed to the command's standard input (nftables scripts).
    pub stdin: Option<String>,
    /// What it installs (to remove at the end) or removes.
    effect: Option<(Installed, bool)>,
}

/// One concrete thing an action does.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// A command on a host (nftables, tc).
    Host(HostCommand),
    /// A signal to a node's process, through [`NodeControl::signal`].
    Signal { node: NodeId, signal: Signal },
    /// The launcher starts the node again, through [`NodeControl::restart`].
    Restart(NodeId),
    /// The node's clock, through [`NodeControl::skew`].
    Skew { node: NodeId, skew: ClockSkew },
    /// Nothing to do: a label (`annotate`), or why a command does nothing here (as the
    /// simulator ignores `restart` of a running node).
    Note(String),
    /// The run ends.
    Stop,
}

/// What one scenario line does, and when.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// Offset from the cluster's start.
    pub at: Duration,
    /// 1-based line of the scenario file.
    pub line: usize,
    /// The command, as the simulator's trace prints it.
    pub command: String,
    pub steps: Vec<Step>,
}

/// A scenario compiled for one real cluster: see the [module](self) documentation.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The distinct hosts of the cluster's nodes, in order of first node.
    pub hosts: Vec<HostAccess>,
    /// Each node's host, as an index into `hosts`.
    pub node_hosts: Vec<usize>,
    pub actions: Vec<Action>,
}

/// Why a scenario cannot run on a real cluster. Names the file and line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}:{}: `{command}`: {why}", line.map_or("?".to_string(), |l| l.to_string()))]
pub struct PlanError {
    pub origin: String,
    /// `None` for what the parser keeps no line of (`twins`, `leader`).
    pub line: Option<usize>,
    pub command: String,
    pub why: String,
}

/// Compiles `scenario` (read from `origin`, for errors) for the real cluster whose node
/// `i` runs at `nodes[i]`.
///
/// ```
/// use rehearsal::cluster::nemesis::{plan, HostAccess, NodeSite, Step};
/// use std::net::Ipv4Addr;
/// let nodes: Vec<NodeSite> = (1..=3)
///     .map(|i| NodeSite {
///         host: HostAccess::Exec(vec!["ip".into(), "netns".into(), "exec".into(), format!("h{i}")]),
///         address: Ipv4Addr::new(10, 0, 0, i),
///         interface: "eth0".into(),
///     })
///     .collect();
/// let text = "@0 isolate 0\n@2s heal\n@3s pause 2\n";
/// let scenario = rehearsal_net_models::scenario::parse(text, "s", 3).unwrap();
/// let plan = plan(&scenario, "s", &nodes).unwrap();
/// assert_eq!(plan.actions.len(), 3);
/// // Isolating node 0 installs rules on all three hosts; healing removes them.
/// assert_eq!(plan.actions[0].steps.len(), 3);
/// assert!(matches!(plan.actions[2].steps[0], Step::Signal { .. }));
/// ```
pub fn plan(scenario: &Scenario, origin: &str, nodes: &[NodeSite]) -> Result<Plan, PlanError> {
    let error = |line: Option<usize>, command: String, why: String| PlanError {
        origin: origin.to_string(),
        line,
        command,
        why,
    };
    let simulator_only = "it only runs in the simulator (`rehearsal sim`), not on a real cluster";
    if !scenario.twins.is_empty() {
        let list: Vec<String> = scenario.twins.iter().map(|n| n.0.to_string()).collect();
        return Err(error(
            None,
            format!("twins {}", list.join(",")),
            format!("{simulator_only}: a real node cannot run as two instances"),
        ));
    }
    if let Some((round, node)) = scenario.leaders.iter().next() {
        return Err(error(
            None,
            format!("@round {round} leader {}", node.0),
            format!("{simulator_only}: a real run's protocol chooses its own leaders"),
        ));
    }
    let mut planner = Planner::new(nodes);
    let mut actions = Vec::with_capacity(scenario.entries.len());
    for entry in &scenario.entries {
        let command = match entry.round {
            Some((round, when)) => {
                let all = if when == RoundWhen::All { " all" } else { "" };
                format!("@round {round}{all} {}", entry.fault)
            }
            None => entry.fault.to_string(),
        };
        let fail = |why: String| error(Some(entry.line), command.clone(), why);
        if entry.round.is_some() {
            return Err(fail(format!(
                "{simulator_only}: a real run does not follow the protocol's rounds (write `@TIME` instead of `@round`)"
            )));
        }
        let steps = match &entry.fault {
            Fault::Byzantine { .. } | Fault::Mutate { .. } => {
                return Err(fail(format!(
                    "{simulator_only}: the node that runs on a real network is the correct one"
                )))
            }
            fault => planner.steps(fault).map_err(fail)?,
        };
        actions.push(Action {
            at: Duration::from_nanos(entry.at.as_nanos()),
            line: entry.line,
            command,
            steps,
        });
    }
    Ok(Plan {
        hosts: planner.hosts,
        node_hosts: planner.node_hosts,
        actions,
    })
}

/// The state a plan builds up line by line: what is cut, lost, delayed, down.
struct Planner<'a> {
    nodes: &'a [NodeSite],
    hosts: Vec<HostAccess>,
    node_hosts: Vec<usize>,
    topology: Topology,
    loss: f64,
    /// The nftables rules each host has now (empty: no table).
    rules: Vec<Vec<String>>,
    /// The (host, interface) pairs that have our qdisc now.
    qdiscs: BTreeSet<(usize, String)>,
    crashed: BTreeSet<NodeId>,
    paused: BTreeSet<NodeId>,
}

impl<'a> Planner<'a> {
    fn new(nodes: &'a [NodeSite]) -> Planner<'a> {
        let mut hosts: Vec<HostAccess> = Vec::new();
        let node_hosts = nodes
            .iter()
            .map(|site| match hosts.iter().position(|h| *h == site.host) {
                Some(index) => index,
                None => {
                    hosts.push(site.host.clone());
                    hosts.len() - 1
                }
            })
            .collect();
        Planner {
            nodes,
            rules: vec![Vec::new(); hosts.len()],
            hosts,
            node_hosts,
            topology: Topology::full(nodes.len()),
            loss: 0.0,
            qdiscs: BTreeSet::new(),
            crashed: BTreeSet::new(),
            paused: BTreeSet::new(),
        }
    }

    fn known(&self, node: NodeId) -> Result<(), String> {
        if node.index() < self.nodes.len() {
            Ok(())
        } else {
            Err(format!(
                "node {} is not in the cluster (nodes 0..{})",
                node.0,
                self.nodes.len()
            ))
        }
    }

    fn steps(&mut self, fault: &Fault) -> Result<Vec<Step>, String> {
        let node = fault.node();
        if !matches!(
            fault,
            Fault::Network(_) | Fault::Settle | Fault::Annotate(_) | Fault::Stop
        ) {
            self.known(node)?;
        }
        let steps = match fault {
            Fault::Network(NetChange::SetLatency { latency }) => self.latency(latency)?,
            Fault::Network(NetChange::SetLoss { loss }) => {
                if !(0.0..=1.0).contains(loss) {
                    return Err(format!("a loss probability is within 0..1, not {loss}"));
                }
                self.loss = *loss;
                self.filter_steps()?
            }
            Fault::Network(change) => {
                self.topology.apply(change)?;
                self.filter_steps()?
            }
            Fault::Crash(n) => {
                if self.crashed.contains(n) {
                    vec![Step::Note(format!(
                        "crash {} ignored: already crashed",
                        n.0
                    ))]
                } else {
                    self.crashed.insert(*n);
                    self.paused.remove(n);
                    vec![Step::Signal {
                        node: *n,
                        signal: Signal::Kill,
                    }]
                }
            }
            Fault::Restart(n) => {
                if self.crashed.remove(n) {
                    vec![Step::Restart(*n)]
                } else {
                    vec![Step::Note(format!("restart {} ignored: not crashed", n.0))]
                }
            }
            Fault::Pause(n) => {
                if self.crashed.contains(n) {
                    vec![Step::Note(format!("pause {} ignored: crashed", n.0))]
                } else if !self.paused.insert(*n) {
                    vec![Step::Note(format!("pause {} ignored: already paused", n.0))]
                } else {
                    vec![Step::Signal {
                        node: *n,
                        signal: Signal::Stop,
                    }]
                }
            }
            Fault::Resume(n) => {
                if self.paused.remove(n) {
                    vec![Step::Signal {
                        node: *n,
                        signal: Signal::Cont,
                    }]
                } else {
                    vec![Step::Note(format!("resume {} ignored: not paused", n.0))]
                }
            }
            Fault::Skew { node, skew } => vec![Step::Skew {
                node: *node,
                skew: *skew,
            }],
            Fault::Settle => {
                self.topology.heal();
                let mut steps = self.filter_steps()?;
                steps.extend(std::mem::take(&mut self.paused).into_iter().map(|node| {
                    Step::Signal {
                        node,
                        signal: Signal::Cont,
                    }
                }));
                steps.extend(
                    std::mem::take(&mut self.crashed)
                        .into_iter()
                        .map(Step::Restart),
                );
                steps
            }
            Fault::Annotate(label) => vec![Step::Note(label.clone())],
            Fault::Stop => vec![Step::Stop],
            Fault::Byzantine { .. } | Fault::Mutate { .. } => {
                unreachable!("simulator-only commands are refused by `plan`")
            }
        };
        Ok(steps)
    }

    /// The nftables commands that bring every host's table to the current cuts and loss:
    /// one per host whose rules changed.
    fn filter_steps(&mut self) -> Result<Vec<Step>, String> {
        let mut wanted: Vec<Vec<String>> = vec![Vec::new(); self.hosts.len()];
        let address = |n: NodeId| self.nodes[n.index()].address;
        let shared = |a: NodeId, b: NodeId| {
            format!(
                "nodes {} and {} share address {}: filters tell nodes apart by address, so each node needs an address of its own (e.g. one network namespace per node, or 127.0.0.N on loopback)",
                a.0,
                b.0,
                address(a)
            )
        };
        for (from, to) in self.topology.cut_links() {
            if from == to {
                continue;
            }
            if address(from) == address(to) {
                return Err(shared(from, to));
            }
            wanted[self.node_hosts[to.index()]].push(format!(
                "ip saddr {} ip daddr {} drop",
                address(from),
                address(to)
            ));
        }
        if self.loss > 0.0 {
            let below = (self.loss * LOSS_SCALE as f64).round() as u64;
            let nodes = self.nodes.len() as u32;
            for to in (0..nodes).map(NodeId) {
                for from in (0..nodes).map(NodeId).filter(|&from| from != to) {
                    if !self.topology.can_send(from, to) {
                        continue; // already dropped whole
                    }
                    if address(from) == address(to) {
                        return Err(shared(from, to));
                    }
                    let rule = if below >= LOSS_SCALE {
                        format!("ip saddr {} ip daddr {} drop", address(from), address(to))
                    } else {
                        format!(
                            "ip saddr {} ip daddr {} numgen random mod {LOSS_SCALE} < {below} drop",
                            address(from),
                            address(to)
                        )
                    };
                    wanted[self.node_hosts[to.index()]].push(rule);
                }
            }
        }
        let mut steps = Vec::new();
        for (host, rules) in wanted.into_iter().enumerate() {
            if rules == self.rules[host] {
                continue;
            }
            let installs = !rules.is_empty();
            steps.push(Step::Host(HostCommand {
                host,
                argv: vec!["nft".into(), "-f".into(), "-".into()],
                stdin: Some(nft_script(&rules)),
                effect: Some((Installed::Table { host }, installs)),
            }));
            self.rules[host] = rules;
        }
        Ok(steps)
    }

    /// netem on every node's interface, one command per distinct (host, interface).
    fn latency(&mut self, latency: &Latency) -> Result<Vec<Step>, String> {
        let delay = netem_delay(latency)?;
        let interfaces: BTreeSet<(usize, String)> = self
            .nodes
            .iter()
            .zip(&self.node_hosts)
            .map(|(site, &host)| (host, site.interface.clone()))
            .collect();
        let mut steps = Vec::new();
        for (host, interface) in interfaces {
            let installed = Installed::Qdisc {
                host,
                interface: interface.clone(),
            };
            let mut argv: Vec<String> = ["tc", "qdisc"].map(String::from).to_vec();
            match &delay {
                None if !self.qdiscs.contains(&(host, interface.clone())) => continue,
                None => {
                    argv.extend(["del", "dev", &interface, "root"].map(String::from));
                    self.qdiscs.remove(&(host, interface.clone()));
                    steps.push(Step::Host(HostCommand {
                        host,
                        argv,
                        stdin: None,
                        effect: Some((installed, false)),
                    }));
                }
                Some(delay) => {
                    argv.extend(["replace", "dev", &interface, "root", "netem"].map(String::from));
                    argv.extend(delay.iter().cloned());
                    argv.extend(["limit".into(), NETEM_LIMIT_PACKETS.to_string()]);
                    self.qdiscs.insert((host, interface.clone()));
                    steps.push(Step::Host(HostCommand {
                        host,
                        argv,
                        stdin: None,
                        effect: Some((installed, true)),
                    }));
                }
            }
        }
        Ok(steps)
    }
}

/// The nftables script that replaces our table with one holding `rules` in its input
/// chain (or removes it, for no rules), atomically: `nft -f` applies a file as one
/// transaction. The empty `table` line first makes the `delete` valid when there is no
/// table yet.
fn nft_script(rules: &[String]) -> String {
    let mut script = format!("table {NFT_TABLE} {{}}\ndelete table {NFT_TABLE}\n");
    if !rules.is_empty() {
        script.push_str(&format!(
            "table {NFT_TABLE} {{\n  chain input {{\n    type filter hook input priority -10; policy accept;\n"
        ));
        for rule in rules {
            script.push_str(&format!("    {rule}\n"));
        }
        script.push_str("  }\n}\n");
    }
    script
}

/// netem's arguments for a latency distribution (`None`: no delay at all, so no qdisc).
///
/// - `constant:D`: `delay D`;
/// - `uniform:LO..HI`: `delay MID JITTER` with no distribution table, which netem draws
///   uniformly from MID ± JITTER;
/// - `normal:MEAN,STD`: `delay MEAN STD distribution normal` (netem's table; like the
///   simulator it sends a negative draw at once);
/// - `lognormal`: netem has no log-normal table: an error.
///
/// Times go to netem in microseconds (netem's own unit in `tc`'s output).
fn netem_delay(latency: &Latency) -> Result<Option<Vec<String>>, String> {
    let us = |ns: u64| format!("{}us", ns.div_ceil(1_000));
    Ok(match *latency {
        Latency::Constant { ns: 0 } => None,
        Latency::Constant { ns } => Some(vec!["delay".into(), us(ns)]),
        Latency::Uniform { lo_ns, hi_ns } => {
            let mid = lo_ns + (hi_ns - lo_ns) / 2;
            Some(vec!["delay".into(), us(mid), us(hi_ns - mid)])
        }
        Latency::Normal { mean_ns, std_ns } => Some(vec![
            "delay".into(),
            us(mean_ns),
            us(std_ns),
            "distribution".into(),
            "normal".into(),
        ]),
        Latency::LogNormal { .. } => {
            return Err(
                "netem offers no log-normal distribution (it has normal, pareto and paretonormal tables): use `normal:MEAN,STD` or `uniform:LO..HI` for a real run".into(),
            )
        }
    })
}

// ---- Clock skew on a controlled node ---------------------------------------------------

/// The stdin line that tells a controlled node (`rehearsal node --controlled`) to skew its
/// actor's clock: `skew OFFSET_NS DRIFT_PPM`, e.g. `skew -2000000000 100`, for a launcher's
/// [`NodeControl::skew`] to write; [`parse_skew_line`] reads it back on the node's side.
pub fn skew_line(skew: ClockSkew) -> String {
    format!("skew {} {}", skew.offset_ns, skew.drift_ppm)
}

/// A [`skew_line`] read back: `None` if the line is not a `skew` line, an error naming
/// what is wrong if it is one but malformed.
///
/// ```
/// use rehearsal::cluster::nemesis::{parse_skew_line, skew_line};
/// use rehearsal_sim_core::ClockSkew;
/// let skew = ClockSkew { offset_ns: -5_000_000, drift_ppm: 100 };
/// assert_eq!(parse_skew_line(&skew_line(skew)), Some(Ok(skew)));
/// assert_eq!(parse_skew_line("start"), None);
/// ```
pub fn parse_skew_line(line: &str) -> Option<Result<ClockSkew, String>> {
    let mut words = line.split_whitespace();
    if words.next() != Some("skew") {
        return None;
    }
    let mut number = |what: &str| -> Result<i64, String> {
        let word = words
            .next()
            .ok_or_else(|| format!("`{line}`: missing the {what}"))?;
        word.parse()
            .map_err(|_| format!("`{line}`: the {what} `{word}` is not an integer"))
    };
    let parsed = (|| {
        let skew = ClockSkew {
            offset_ns: number("offset in nanoseconds")?,
            drift_ppm: number("drift in parts per million")?,
        };
        Ok(skew)
    })();
    Some(parsed.and_then(|skew| match words.next() {
        None => Ok(skew),
        Some(extra) => Err(format!("`{line}`: unexpected `{extra}` after the drift")),
    }))
}

// ---- Applying a plan --------------------------------------------------------------------

/// What the nemesis needs from whoever started the nodes' processes (the launcher): it
/// does not know how they were started or where.
pub trait NodeControl {
    /// Sends `signal` to node `node`'s process.
    fn signal(&mut self, node: NodeId, signal: Signal) -> io::Result<()>;
    /// Starts node `node` again (after a SIGKILL), from its durable state file.
    fn restart(&mut self, node: NodeId) -> io::Result<()>;
    /// Skews the clock node `node`'s actor reads (`ClockHandle::set_skew` in its runtime).
    fn skew(&mut self, node: NodeId, skew: ClockSkew) -> io::Result<()>;
}

/// What became of a host command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandOutcome {
    pub success: bool,
    /// It was killed for taking too long: what it was doing may have happened.
    pub timed_out: bool,
    /// Its standard error (or why it could not run, or that it timed out).
    pub stderr: String,
}

/// Runs commands on hosts: [`ProcessShell`], or a fake in tests.
pub trait HostShell {
    fn run(&mut self, host: &HostAccess, argv: &[String], stdin: Option<&str>) -> CommandOutcome;
}

/// Runs host commands as child processes, killed after a timeout.
#[derive(Debug, Clone)]
pub struct ProcessShell {
    pub timeout: Duration,
}

impl Default for ProcessShell {
    fn default() -> Self {
        ProcessShell {
            timeout: HOST_COMMAND_TIMEOUT,
        }
    }
}

impl HostShell for ProcessShell {
    fn run(&mut self, host: &HostAccess, argv: &[String], stdin: Option<&str>) -> CommandOutcome {
        let line = host.command_line(argv);
        let failed = |stderr: String| CommandOutcome {
            success: false,
            timed_out: false,
            stderr,
        };
        let Some((program, args)) = line.split_first() else {
            return failed("empty command".into());
        };
        let mut child = match Command::new(program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(error) => return failed(format!("cannot run `{program}`: {error}")),
        };
        // Read stderr on the side: a command that fills the pipe must not block its own
        // exit past the timeout.
        let stderr_reader = child.stderr.take().map(|mut pipe| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        });
        if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
            let _ = pipe.write_all(text.as_bytes());
        }
        use wait_timeout::ChildExt;
        let status = child.wait_timeout(self.timeout);
        let timed_out = matches!(status, Ok(None));
        if timed_out {
            let _ = child.kill();
            let _ = child.wait();
        }
        let stderr = stderr_reader
            .and_then(|reader| reader.join().ok())
            .unwrap_or_default();
        match status {
            Ok(Some(status)) => CommandOutcome {
                success: status.success(),
                timed_out: false,
                stderr: if status.success() || !stderr.trim().is_empty() {
                    stderr
                } else {
                    format!("exited with {status}")
                },
            },
            Ok(None) => CommandOutcome {
                timed_out: true,
                ..failed(format!(
                    "did not finish within {:?} and was killed{}",
                    self.timeout,
                    if stderr.is_empty() {
                        String::new()
                    } else {
                        format!("; stderr: {stderr}")
                    }
                ))
            },
            Err(error) => failed(format!("cannot wait for it: {error}")),
        }
    }
}

/// One step as it was applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StepRecord {
    /// The command line (host commands, with their standard input after a newline), or
    /// what was asked of the launcher (`SIGSTOP node 1`, `restart node 1`, `skew ...`).
    pub what: String,
    /// Where a host command ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub ok: bool,
    /// Why it failed: the command's stderr, or the launcher's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One action as it was applied.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppliedAction {
    pub line: usize,
    pub command: String,
    /// When the scenario asked for it, from the cluster's start.
    pub planned_ns: u64,
    /// When it began, from the cluster's start (a real run is late by the time the
    /// previous actions and the machine took).
    pub applied_ns: u64,
    /// How long its steps took.
    pub took_ns: u64,
    pub steps: Vec<StepRecord>,
}

/// Everything a nemesis did, for the cluster's report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NemesisReport {
    pub actions: Vec<AppliedAction>,
    /// What it removed at the end (our nftables tables and qdiscs) and the nodes it
    /// resumed.
    pub cleanup: Vec<StepRecord>,
    /// The scenario's `stop` ended the run.
    pub stopped: bool,
    /// The first failure: the line, its command, the step and why. The run stopped there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// A step of the scenario failed: the nemesis cleaned up and the run must stop.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scenario line {line} (`{command}`): `{what}`{} failed: {why}", host.as_ref().map(|h| format!(" on {h}")).unwrap_or_default())]
pub struct NemesisError {
    pub line: usize,
    pub command: String,
    pub what: String,
    pub host: Option<String>,
    pub why: String,
}

/// Where a [`Nemesis`] stands after applying what was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// More actions are to come ([`Nemesis::next_due`]).
    Pending,
    /// Every action ran.
    Done,
    /// The scenario's `stop` ran: the cluster should stop now.
    Stop,
}

/// Applies a [`Plan`] to a running cluster: see the [module](self) documentation.
///
/// Call [`apply_due`](Nemesis::apply_due) with the time since the cluster started whenever
/// [`next_due`](Nemesis::next_due) has passed (or use [`run`](Nemesis::run)), then
/// [`finish`](Nemesis::finish). Dropping it unfinished still removes its rules and qdiscs.
pub struct Nemesis<S: HostShell = ProcessShell> {
    plan: Plan,
    shell: S,
    next: usize,
    installed: BTreeSet<Installed>,
    /// Nodes it stopped and has not resumed: resumed at the end, so the launcher can stop
    /// them.
    paused: BTreeSet<NodeId>,
    report: NemesisReport,
    cleaned: bool,
}

impl<S: HostShell> fmt::Debug for Nemesis<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nemesis")
            .field("next", &self.next)
            .field("actions", &self.plan.actions.len())
            .finish_non_exhaustive()
    }
}

impl<S: HostShell> Nemesis<S> {
    pub fn new(plan: Plan, shell: S) -> Self {
        Nemesis {
            plan,
            shell,
            next: 0,
            installed: BTreeSet::new(),
            paused: BTreeSet::new(),
            report: NemesisReport::default(),
            cleaned: false,
        }
    }

    /// When the next action falls due, from the cluster's start (`None`: none left).
    pub fn next_due(&self) -> Option<Duration> {
        if self.report.stopped || self.report.failure.is_some() {
            return None;
        }
        self.plan.actions.get(self.next).map(|action| action.at)
    }

    /// What it did so far.
    pub fn report(&self) -> &NemesisReport {
        &self.report
    }

    /// Applies every action due by `elapsed` (time since the cluster's start), in order.
    /// A step that fails is recorded, everything installed is removed, and the error
    /// returned: the caller stops the cluster.
    pub fn apply_due(
        &mut self,
        elapsed: Duration,
        control: &mut dyn NodeControl,
    ) -> Result<Progress, NemesisError> {
        while let Some(due) = self.next_due() {
            if due > elapsed {
                return Ok(Progress::Pending);
            }
            let action = self.plan.actions[self.next].clone();
            self.next += 1;
            let begun = Instant::now();
            let mut record = AppliedAction {
                line: action.line,
                command: action.command.clone(),
                planned_ns: duration_ns(action.at),
                applied_ns: duration_ns(elapsed),
                took_ns: 0,
                steps: Vec::new(),
            };
            let mut failed = None;
            for step in &action.steps {
                let step_record = self.step(step, control);
                let ok = step_record.ok;
                record.steps.push(step_record);
                if !ok {
                    failed = record.steps.last().cloned();
                    break;
                }
                if matches!(step, Step::Stop) {
                    self.report.stopped = true;
                }
            }
            record.took_ns = duration_ns(begun.elapsed());
            self.report.actions.push(record);
            if let Some(step) = failed {
                let error = NemesisError {
                    line: action.line,
                    command: action.command,
                    what: step.what,
                    host: step.host,
                    why: step.error.unwrap_or_default(),
                };
                self.report.failure = Some(error.to_string());
                self.clean_up(Some(control));
                return Err(error);
            }
            if self.report.stopped {
                return Ok(Progress::Stop);
            }
        }
        Ok(Progress::Done)
    }

    /// Applies the plan by the wall clock from `start` (the cluster's start) until every
    /// action ran, `stop` ran, or `keep_going` says no (checked at least every 50 ms).
    pub fn run(
        &mut self,
        start: Instant,
        control: &mut dyn NodeControl,
        mut keep_going: impl FnMut() -> bool,
    ) -> Result<Progress, NemesisError> {
        const POLL: Duration = Duration::from_millis(50);
        loop {
            let progress = self.apply_due(start.elapsed(), control)?;
            if progress != Progress::Pending || !keep_going() {
                return Ok(progress);
            }
            if let Some(due) = self.next_due() {
                std::thread::sleep(due.saturating_sub(start.elapsed()).min(POLL));
            }
        }
    }

    /// Removes our tables and qdiscs and resumes the nodes it paused; returns the report.
    pub fn finish(mut self, control: &mut dyn NodeControl) -> NemesisReport {
        self.clean_up(Some(control));
        std::mem::take(&mut self.report)
    }

    fn step(&mut self, step: &Step, control: &mut dyn NodeControl) -> StepRecord {
        let launcher = |what: String, result: io::Result<()>| StepRecord {
            what,
            host: None,
            ok: result.is_ok(),
            error: result.err().map(|e| e.to_string()),
        };
        match step {
            Step::Host(command) => self.host_command(command),
            Step::Signal { node, signal } => {
                let result = control.signal(*node, *signal);
                if result.is_ok() {
                    match signal {
                        Signal::Stop => self.paused.insert(*node),
                        Signal::Cont | Signal::Kill => self.paused.remove(node),
                    };
                }
                launcher(format!("SIG{} node {}", signal.name(), node.0), result)
            }
            Step::Restart(node) => {
                launcher(format!("restart node {}", node.0), control.restart(*node))
            }
            Step::Skew { node, skew } => launcher(
                format!("skew node {} {skew}", node.0),
                control.skew(*node, *skew),
            ),
            Step::Note(text) => launcher(text.clone(), Ok(())),
            Step::Stop => launcher("stop".into(), Ok(())),
        }
    }

    fn host_command(&mut self, command: &HostCommand) -> StepRecord {
        let host = &self.plan.hosts[command.host];
        let outcome = self
            .shell
            .run(host, &command.argv, command.stdin.as_deref());
        if let Some((installed, installs)) = &command.effect {
            // A command that timed out (an ssh to a host that stopped answering) may have
            // installed it: removed at the end as if it had. One that failed did not.
            if (*installs && outcome.success) || outcome.timed_out {
                self.installed.insert(installed.clone());
            } else if outcome.success {
                self.installed.remove(installed);
            }
        }
        let mut what = display_line(&command.argv);
        if let Some(stdin) = &command.stdin {
            what.push_str(" <<EOF\n");
            what.push_str(stdin);
            what.push_str("EOF");
        }
        StepRecord {
            what,
            host: Some(host.to_string()),
            ok: outcome.success,
            error: (!outcome.success).then(|| outcome.stderr.trim_end().to_string()),
        }
    }

    /// Removes what it installed, and resumes what it paused (given the launcher).
    fn clean_up(&mut self, control: Option<&mut dyn NodeControl>) {
        if let Some(control) = control {
            for node in std::mem::take(&mut self.paused) {
                let result = control.signal(node, Signal::Cont);
                self.report.cleanup.push(StepRecord {
                    what: format!("SIGCONT node {}", node.0),
                    host: None,
                    ok: result.is_ok(),
                    error: result.err().map(|e| e.to_string()),
                });
            }
        }
        if self.cleaned {
            return;
        }
        self.cleaned = true;
        for installed in std::mem::take(&mut self.installed) {
            let (host, argv, stdin) = match &installed {
                Installed::Table { host } => (
                    *host,
                    vec!["nft".into(), "-f".into(), "-".into()],
                    Some(nft_script(&[])),
                ),
                Installed::Qdisc { host, interface } => (
                    *host,
                    ["tc", "qdisc", "del", "dev", interface, "root"]
                        .map(String::from)
                        .to_vec(),
                    None,
                ),
            };
            let record = self.host_command(&HostCommand {
                host,
                argv,
                stdin,
                effect: None,
            });
            if !record.ok && self.report.failure.is_none() {
                self.report.failure = Some(format!(
                    "cleanup: `{}` on {} failed: {}",
                    record.what,
                    record.host.as_deref().unwrap_or("?"),
                    record.error.as_deref().unwrap_or("")
                ));
            }
            self.report.cleanup.push(record);
        }
    }
}

impl<S: HostShell> Drop for Nemesis<S> {
    fn drop(&mut self) {
        self.clean_up(None);
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// A word as a POSIX shell reads it back unchanged.
fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// A command line as a user would type it.
fn display_line(argv: &[String]) -> String {
    argv.iter()
        .map(|word| shell_quote(word))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rehearsal_net_models::scenario::parse;

    /// Node `i` alone on host `hi` (a namespace), at 10.0.0.(i+1).
    fn sites(nodes: u8) -> Vec<NodeSite> {
        (0..nodes)
            .map(|i| NodeSite {
                host: HostAccess::Exec(vec!["ns".into(), format!("h{i}")]),
                address: Ipv4Addr::new(10, 0, 0, i + 1),
                interface: "eth0".into(),
            })
            .collect()
    }

    fn plan_of(text: &str, nodes: u8) -> Result<Plan, PlanError> {
        let scenario = parse(text, "t.scenario", u32::from(nodes)).expect("parses");
        plan(&scenario, "t.scenario", &sites(nodes))
    }

    /// The rules each host's table holds after `action`, by host (host commands only).
    fn rules(action: &Action) -> Vec<(usize, Vec<String>)> {
        action
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::Host(HostCommand {
                    host,
                    stdin: Some(script),
                    ..
                }) => Some((
                    *host,
                    script
                        .lines()
                        .filter(|l| l.contains("saddr"))
                        .map(|l| l.trim().to_string())
                        .collect(),
                )),
                _ => None,
            })
            .collect()
    }

    fn drop_rule(from: u8, to: u8) -> String {
        format!(
            "ip saddr 10.0.0.{} ip daddr 10.0.0.{} drop",
            from + 1,
            to + 1
        )
    }

    #[test]
    fn a_partition_drops_each_cut_link_at_its_receiver_and_heal_removes_the_tables() {
        let plan = plan_of("@0 partition 0 | 1,2\n@1 heal\n", 3).unwrap();
        assert_eq!(plan.hosts.len(), 3);
        let cut = rules(&plan.actions[0]);
        assert_eq!(
            cut,
            vec![
                (0, vec![drop_rule(1, 0), drop_rule(2, 0)]),
                (1, vec![drop_rule(0, 1)]),
                (2, vec![drop_rule(0, 2)]),
            ]
        );
        // Heal: every host's table goes, and the script deletes our table only.
        let healed = &plan.actions[1];
        assert_eq!(rules(healed), vec![(0, vec![]), (1, vec![]), (2, vec![])]);
        let Step::Host(command) = &healed.steps[0] else {
            panic!("{healed:?}")
        };
        assert_eq!(
            command.stdin.as_deref(),
            Some("table inet rehearsal {}\ndelete table inet rehearsal\n")
        );
        assert_eq!((healed.line, healed.at), (2, Duration::from_secs(1)));
    }

    #[test]
    fn a_one_way_cut_drops_only_that_direction_and_shapes_resolve_as_in_the_simulator() {
        let plan = plan_of("@0 cut 0 -> 1\n@1 heal\n@2 ring\n", 5).unwrap();
        assert_eq!(rules(&plan.actions[0]), vec![(1, vec![drop_rule(0, 1)])]);
        // A ring of 5 cuts the links the simulator's topology cuts, each at its receiver.
        let mut topology = Topology::full(5);
        topology
            .apply(&rehearsal_net_models::topology::ring(5))
            .unwrap();
        let mut expected: Vec<(usize, Vec<String>)> = (0..5).map(|h| (h, Vec::new())).collect();
        for (from, to) in topology.cut_links() {
            expected[to.index()]
                .1
                .push(drop_rule(from.0 as u8, to.0 as u8));
        }
        expected.retain(|(_, rules)| !rules.is_empty());
        assert!(!expected.is_empty());
        assert_eq!(rules(&plan.actions[2]), expected);
    }

    #[test]
    fn loss_is_a_random_drop_per_link_and_a_second_identical_command_changes_nothing() {
        let plan = plan_of("@0 set-loss 0.25\n@1 set-loss 0.25\n@2 set-loss 0\n", 2).unwrap();
        let lossy = |from: u8, to: u8| {
            format!(
                "ip saddr 10.0.0.{} ip daddr 10.0.0.{} numgen random mod 1000000 < 250000 drop",
                from + 1,
                to + 1
            )
        };
        assert_eq!(
            rules(&plan.actions[0]),
            vec![(0, vec![lossy(1, 0)]), (1, vec![lossy(0, 1)])]
        );
        assert!(plan.actions[1].steps.is_empty());
        assert_eq!(rules(&plan.actions[2]), vec![(0, vec![]), (1, vec![])]);
    }

    #[test]
    fn latency_becomes_netem_on_every_interface_and_a_lognormal_names_its_line() {
        let text = "@0 set-latency constant:50ms\n@1 set-latency uniform:10ms..30ms\n\
                    @2 set-latency normal:50ms,5ms\n@3 set-latency constant:0ms\n";
        let plan = plan_of(text, 2).unwrap();
        let argv = |action: usize| -> Vec<String> {
            match &plan.actions[action].steps[0] {
                Step::Host(command) => command.argv.clone(),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(plan.actions[0].steps.len(), 2, "one qdisc per host");
        assert_eq!(
            argv(0).join(" "),
            "tc qdisc replace dev eth0 root netem delay 50000us limit 100000"
        );
        assert!(argv(1).join(" ").contains("delay 20000us 10000us limit"));
        assert!(argv(2)
            .join(" ")
            .contains("delay 50000us 5000us distribution normal"));
        assert_eq!(argv(3).join(" "), "tc qdisc del dev eth0 root");

        let error = plan_of("@0 annotate a\n@5 set-latency lognormal:50ms,20ms\n", 2)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("t.scenario:2: `set-latency lognormal"),
            "{error}"
        );
        assert!(error.contains("no log-normal"), "{error}");
    }

    #[test]
    fn simulator_only_commands_are_refused_with_their_line() {
        let cases = [
            (
                "@0 annotate x\n@1 byzantine 1 equivocate\n",
                "t.scenario:2: `byzantine 1",
            ),
            (
                "@round 3 all isolate 1\n",
                "t.scenario:1: `@round 3 all partition 1 | 0,2,3`",
            ),
            ("@round 3 mutate 1 -> 0,2\n", "t.scenario:1: `mutate 1"),
            ("@0 twins 1\n", "t.scenario:?: `twins 1`"),
            ("@round 2 leader 1\n", "t.scenario:?: `@round 2 leader 1`"),
        ];
        for (text, start) in cases {
            let error = plan_of(text, 4).unwrap_err().to_string();
            assert!(error.starts_with(start), "{text:?}: {error}");
            assert!(error.contains("only runs in the simulator"), "{error}");
        }
    }

    #[test]
    fn nodes_that_share_an_address_cannot_be_cut_apart() {
        let scenario = parse("@0 isolate 1\n", "t", 2).unwrap();
        let mut nodes = sites(2);
        nodes[1].address = nodes[0].address;
        let error = plan(&scenario, "t", &nodes).unwrap_err().to_string();
        assert!(error.contains("share address 10.0.0.1"), "{error}");
    }

    #[test]
    fn process_faults_follow_the_simulators_rules_and_settle_undoes_them() {
        let text = "@0 restart 1\n@1 crash 1\n@2 pause 2\n@3 pause 1\n@4 isolate 0\n@5 settle\n\
                    @6 skew 0 +5ms\n@7 stop\n";
        let plan = plan_of(text, 3).unwrap();
        let steps: Vec<&[Step]> = plan.actions.iter().map(|a| a.steps.as_slice()).collect();
        assert!(matches!(steps[0], [Step::Note(n)] if n.contains("not crashed")));
        assert_eq!(
            steps[1],
            [Step::Signal {
                node: NodeId(1),
                signal: Signal::Kill
            }]
        );
        assert!(matches!(steps[3], [Step::Note(n)] if n.contains("crashed")));
        // Settle: the cuts go, node 2 resumes, node 1 restarts.
        let settle = steps[5];
        assert_eq!(settle.len(), 3 + 2, "{settle:?}");
        assert_eq!(
            settle[3],
            Step::Signal {
                node: NodeId(2),
                signal: Signal::Cont
            }
        );
        assert_eq!(settle[4], Step::Restart(NodeId(1)));
        assert!(matches!(
            steps[6][0],
            Step::Skew {
                node: NodeId(0),
                ..
            }
        ));
        assert_eq!(steps[7], [Step::Stop]);
    }

    #[test]
    fn skew_lines_round_trip_and_malformed_ones_are_named() {
        let skew = ClockSkew {
            offset_ns: 3_600_000_000_000,
            drift_ppm: -500_000,
        };
        assert_eq!(skew_line(skew), "skew 3600000000000 -500000");
        assert_eq!(parse_skew_line(&skew_line(skew)), Some(Ok(skew)));
        assert_eq!(parse_skew_line("start"), None);
        let error = parse_skew_line("skew 5ms").unwrap().unwrap_err();
        assert!(error.contains("offset in nanoseconds `5ms`"), "{error}");
        let error = parse_skew_line("skew 5").unwrap().unwrap_err();
        assert!(error.contains("missing the drift"), "{error}");
        assert!(parse_skew_line("skew 1 2 3").unwrap().is_err());
    }

    #[test]
    fn host_commands_report_their_stderr_and_are_killed_when_they_hang() {
        let argv = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        let mut shell = ProcessShell {
            timeout: Duration::from_millis(300),
        };
        let failed = shell.run(
            &HostAccess::Local,
            &argv(&["sh", "-c", "cat >&2; exit 3"]),
            Some("Error: no such table\n"),
        );
        assert!(!failed.success && !failed.timed_out);
        assert_eq!(failed.stderr, "Error: no such table\n");
        let begun = Instant::now();
        let hung = shell.run(&HostAccess::Local, &argv(&["sleep", "30"]), None);
        assert!(hung.timed_out && !hung.success, "{hung:?}");
        assert!(begun.elapsed() < Duration::from_secs(10));
        let missing = shell.run(&HostAccess::Local, &argv(&["no-such-program-here"]), None);
        assert!(missing
            .stderr
            .starts_with("cannot run `no-such-program-here`"));
        let ok = shell.run(&HostAccess::Exec(argv(&["env"])), &argv(&["true"]), None);
        assert!(ok.success, "{ok:?}");
    }

    #[test]
    fn ssh_hosts_get_each_remote_word_quoted() {
        let ssh = HostAccess::Ssh(vec!["ssh".into(), "node1".into()]);
        let line = ssh.command_line(&["nft".into(), "-f".into(), "it's here".into()]);
        assert_eq!(line, ["ssh", "node1", "--", r"nft -f 'it'\''s here'"]);
    }

    /// Records commands; fails those whose line contains `fail_on`.
    #[derive(Default)]
    struct FakeShell {
        ran: Vec<String>,
        fail_on: Option<&'static str>,
    }

    impl HostShell for &mut FakeShell {
        fn run(
            &mut self,
            host: &HostAccess,
            argv: &[String],
            stdin: Option<&str>,
        ) -> CommandOutcome {
            let line = format!("{host}: {} {}", argv.join(" "), stdin.unwrap_or(""));
            let fail = self.fail_on.is_some_and(|f| line.contains(f));
            self.ran.push(line);
            CommandOutcome {
                success: !fail,
                timed_out: false,
                stderr: if fail {
                    "Error: boom".into()
                } else {
                    String::new()
                },
            }
        }
    }

    #[derive(Default)]
    struct FakeControl(Vec<String>);

    impl NodeControl for FakeControl {
        fn signal(&mut self, node: NodeId, signal: Signal) -> io::Result<()> {
            self.0.push(format!("{} {}", signal.name(), node.0));
            Ok(())
        }
        fn restart(&mut self, node: NodeId) -> io::Result<()> {
            self.0.push(format!("restart {}", node.0));
            Ok(())
        }
        fn skew(&mut self, node: NodeId, _skew: ClockSkew) -> io::Result<()> {
            Err(io::Error::other(format!("node {} has no clock", node.0)))
        }
    }

    #[test]
    fn actions_run_when_due_and_the_end_removes_what_was_installed() {
        let plan = plan_of(
            "@0 cut 0 -> 1\n@1 pause 0\n@2 set-latency constant:1ms\n",
            2,
        )
        .unwrap();
        let mut shell = FakeShell::default();
        let mut control = FakeControl::default();
        let mut nemesis = Nemesis::new(plan, &mut shell);
        assert_eq!(nemesis.next_due(), Some(Duration::ZERO));
        let progress = nemesis.apply_due(Duration::from_millis(1500), &mut control);
        assert_eq!(progress, Ok(Progress::Pending));
        assert_eq!(nemesis.next_due(), Some(Duration::from_secs(2)));
        assert_eq!(control.0, ["STOP 0"]);
        assert_eq!(
            nemesis.apply_due(Duration::from_secs(2), &mut control),
            Ok(Progress::Done)
        );
        let report = nemesis.finish(&mut control);
        assert_eq!(report.actions.len(), 3);
        assert_eq!(report.actions[1].applied_ns, 1_500_000_000);
        assert_eq!(report.actions[1].planned_ns, 1_000_000_000);
        assert!(report.failure.is_none(), "{report:?}");
        // The end resumed node 0 and removed the table of host 1 and both qdiscs.
        assert_eq!(control.0, ["STOP 0", "CONT 0"]);
        let cleanup: Vec<&str> = report.cleanup.iter().map(|s| s.what.as_str()).collect();
        assert_eq!(cleanup.len(), 4, "{cleanup:?}");
        assert!(cleanup[1].starts_with("nft -f - <<EOF\ntable inet rehearsal {}\ndelete table"));
        assert_eq!(report.cleanup[1].host.as_deref(), Some("ns h1"));
        assert!(cleanup[2..]
            .iter()
            .all(|c| *c == "tc qdisc del dev eth0 root"));
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"applied_ns\":1500000000"), "{json}");
    }

    #[test]
    fn a_failed_command_stops_the_nemesis_and_still_cleans_up() {
        let plan = plan_of("@0 isolate 0\n@1 set-latency constant:1ms\n@2 heal\n", 2).unwrap();
        let mut shell = FakeShell {
            fail_on: Some("netem"),
            ..FakeShell::default()
        };
        let mut control = FakeControl::default();
        let mut nemesis = Nemesis::new(plan, &mut shell);
        let error = nemesis
            .apply_due(Duration::from_secs(5), &mut control)
            .unwrap_err();
        assert_eq!(error.line, 2);
        let text = error.to_string();
        assert!(
            text.contains("tc qdisc replace dev eth0 root netem"),
            "{text}"
        );
        assert!(text.contains("on ns h0 failed: Error: boom"), "{text}");
        assert_eq!(nemesis.next_due(), None, "nothing runs after a failure");
        drop(nemesis);
        // Both tables went; the qdisc that failed to install is not removed.
        let removals: Vec<&String> = shell.ran.iter().skip(3).collect();
        assert_eq!(removals.len(), 2, "{:?}", shell.ran);
        assert!(removals
            .iter()
            .all(|r| r.contains("delete table inet rehearsal")));
    }

    #[test]
    fn run_applies_each_action_no_earlier_than_its_time_and_stops_at_stop() {
        let text = "@0 annotate a\n@100ms annotate b\n@200ms stop\n@300ms annotate c\n";
        let plan = plan_of(text, 1).unwrap();
        let mut shell = FakeShell::default();
        let mut nemesis = Nemesis::new(plan, &mut shell);
        let start = Instant::now();
        let progress = nemesis.run(start, &mut FakeControl::default(), || true);
        assert_eq!(progress, Ok(Progress::Stop));
        assert!(start.elapsed() >= Duration::from_millis(200));
        let report = nemesis.report();
        assert!(report.stopped);
        assert_eq!(report.actions.len(), 3, "`annotate c` comes after the stop");
        for action in &report.actions {
            assert!(action.applied_ns >= action.planned_ns, "{action:?}");
        }
        assert_eq!(report.actions[1].steps[0].what, "b");
    }

    #[test]
    fn a_launcher_error_is_reported_with_its_line() {
        let plan = plan_of("@0 skew 1 +5ms\n", 2).unwrap();
        let mut shell = FakeShell::default();
        let mut nemesis = Nemesis::new(plan, &mut shell);
        let error = nemesis
            .apply_due(Duration::ZERO, &mut FakeControl::default())
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "scenario line 1 (`skew 1 +5ms +0ppm`): `skew node 1 +5ms +0ppm` failed: node 1 has no clock"
        );
        assert!(nemesis.report().failure.is_some());
    }
}
