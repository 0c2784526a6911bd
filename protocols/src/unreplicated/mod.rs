//! Unreplicated request/reply: closed-loop clients and one server. The baseline that every
//! replicated protocol is compared against.
//!
//! The server keeps a running sum: each request carries an operand and the reply carries
//! the sum after adding it. The server remembers each client's last request and reply, so
//! a retransmitted request is answered again instead of being executed twice.
//! Clients send one request at a time and retransmit it with exponential backoff until
//! the reply arrives.
//!
//! Test-only behaviour (the [`Mutant`]) enters through one seam, [`TestSeam`]: the
//! simulator's [`Node`] has it, the [`ProductionNode`] that runs over real transports is
//! the correct protocol alone.

use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{Actor, Context, Invariant, NodeId, RunEnd, Time, TimerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

mod protocol;
pub use protocol::{Params, Setup, Unreplicated, RETRANSMIT_AFTER_REAL};

// ---- Messages -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// Request number `request` of the sending client, adding `operand` to the sum.
    Request { request: u64, operand: u64 },
    /// The server's answer to request number `request`.
    Reply { request: u64, result: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    Retransmit { request: u64 },
}

/// What the checkers observe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Output {
    /// The server executed a request.
    Executed {
        client: NodeId,
        request: u64,
        operand: u64,
        result: u64,
    },
    /// A client accepted the reply to its request.
    Completed {
        request: u64,
        operand: u64,
        result: u64,
    },
}

// ---- Configuration ----------------------------------------------------------------------

/// The server is node 0; clients are nodes 1..=clients.
pub const SERVER: NodeId = NodeId(0);

#[derive(Debug, Clone)]
pub struct Config {
    pub clients: u32,
    /// Requests each client sends, one after the other.
    pub requests_per_client: u64,
    /// First retransmission timeout; it doubles on every retry up to 64 times this.
    pub retransmit_after: Duration,
}

/// Deliberately broken variants, for testing the testbed only: each is a bug the
/// simulator must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mutant {
    /// The server forgets its at-most-once table and executes every retransmitted request
    /// again. Caught by `requests-answered` ("executed twice") whenever a reply is lost or
    /// slow enough for the client to retransmit, e.g. under `--loss 0.3`.
    ExecuteRetransmissions,
}

impl Mutant {
    /// Every mutant, by name.
    pub const ALL: &'static [(&'static str, Mutant)] =
        &[("execute-retransmissions", Mutant::ExecuteRetransmissions)];
}

impl std::str::FromStr for Mutant {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        let named = |(n, _): (&'static str, Mutant)| n;
        crate::named::parse_named(name, "unreplicated mutant", Mutant::ALL, named, None)
            .map(|(_, m)| m)
    }
}

/// The actors of one run: the server, then the clients.
pub fn actors(config: &Config) -> Vec<Node> {
    actors_with_mutant(config, None)
}

/// The actors of one run with a deliberately broken server (test-only).
pub fn actors_with_mutant(config: &Config, mutant: Option<Mutant>) -> Vec<Node> {
    let server = Server {
        seam: Testing { mutant },
        ..Server::default()
    };
    let mut nodes = vec![Node::Server(server)];
    for _ in 0..config.clients {
        nodes.push(Node::Client(Client::new(
            config.requests_per_client,
            config.retransmit_after,
        )));
    }
    nodes
}

/// Node `id` of a run as the production node, for a real runtime: the server (node 0) or
/// a client (1..=clients); `None` for any other id.
///
/// ```
/// use rehearsal_protocols::unreplicated::{self, NodeWith, SERVER};
/// use rehearsal_sim_core::NodeId;
/// use std::time::Duration;
///
/// let config = unreplicated::Config {
///     clients: 2,
///     requests_per_client: 10,
///     retransmit_after: Duration::from_millis(100),
/// };
/// assert!(matches!(unreplicated::production_node(&config, SERVER), Some(NodeWith::Server(_))));
/// assert!(matches!(unreplicated::production_node(&config, NodeId(2)), Some(NodeWith::Client(_))));
/// assert!(unreplicated::production_node(&config, NodeId(3)).is_none());
/// ```
pub fn production_node(config: &Config, id: NodeId) -> Option<ProductionNode> {
    if id == SERVER {
        Some(NodeWith::Server(ServerWith::default()))
    } else if id.0 <= config.clients {
        Some(NodeWith::Client(Client::new(
            config.requests_per_client,
            config.retransmit_after,
        )))
    } else {
        None
    }
}

// ---- The test seam ------------------------------------------------------------------------

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::Correct {}
    impl Sealed for super::Testing {}
}

/// The one seam where test-only behaviour enters the server: what it asks that a
/// [`Mutant`] changes the answer to. Sealed: [`Correct`] and [`Testing`] are the only two.
pub trait TestSeam: sealed::Sealed + Default + Sized + 'static {
    /// Whether a retransmitted request executes again (it must not: at most once).
    fn reexecutes_retransmissions(&self) -> bool;
}

/// The correct protocol, with nothing test-only in it: the seam of [`ProductionNode`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Correct;

impl TestSeam for Correct {
    #[inline]
    fn reexecutes_retransmissions(&self) -> bool {
        false
    }
}

/// The simulator's seam: the run's mutant, if any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Testing {
    pub mutant: Option<Mutant>,
}

impl TestSeam for Testing {
    fn reexecutes_retransmissions(&self) -> bool {
        self.mutant == Some(Mutant::ExecuteRetransmissions)
    }
}

// ---- State ------------------------------------------------------------------------------

/// An unreplicated node, the server or a client, whose server has the [`TestSeam`] `S`.
/// Use [`Node`] in the simulator and [`ProductionNode`] over real transports.
#[derive(Clone)]
pub enum NodeWith<S: TestSeam> {
    Server(ServerWith<S>),
    Client(Client),
}

/// The explorer copies a simulated node and tells its states apart by what changes in a
/// run (the server's sum and table, a client's progress and request in flight).
impl rehearsal_sim_core::explore::Explorable for NodeWith<Testing> {
    fn fingerprint(&self, h: &mut rehearsal_sim_core::explore::Fingerprinter) {
        match self {
            NodeWith::Server(s) => h.value(&(0u8, s.sum, &s.last_reply)),
            NodeWith::Client(c) => h.value(&(1u8, c.completed, &c.outstanding)),
        }
    }
}

/// The simulator's node: mutants are available through its [`Testing`] seam.
pub type Node = NodeWith<Testing>;

/// The production node: the correct protocol, with no mutant switch compiled in. Build
/// it with [`production_node`].
pub type ProductionNode = NodeWith<Correct>;

/// The server, with the [`TestSeam`] `S`.
#[derive(Default, Clone)]
pub struct ServerWith<S: TestSeam> {
    sum: u64,
    /// Per client: its latest executed request and the reply sent for it.
    last_reply: BTreeMap<NodeId, (u64, u64)>,
    /// Where a mutant comes in; nothing for the production server.
    seam: S,
}

/// The simulator's server.
pub type Server = ServerWith<Testing>;

#[derive(Clone)]
pub struct Client {
    requests_total: u64,
    retransmit_after: Duration,
    /// The request in flight: number, operand, current timer and backoff.
    outstanding: Option<Outstanding>,
    completed: u64,
}

#[derive(Clone, Hash)]
struct Outstanding {
    request: u64,
    operand: u64,
    timer: TimerId,
    backoff: u32,
}

/// Retransmission backoff stops doubling after this many retries.
const BACKOFF_DOUBLINGS_MAX: u32 = 6;

impl Client {
    pub fn new(requests_total: u64, retransmit_after: Duration) -> Self {
        Client {
            requests_total,
            retransmit_after,
            outstanding: None,
            completed: 0,
        }
    }

    pub fn completed(&self) -> u64 {
        self.completed
    }

    fn send_next<S: TestSeam>(&mut self, cx: &mut Context<NodeWith<S>>) {
        if self.completed >= self.requests_total {
            return;
        }
        let request = self.completed + 1;
        let operand = cx.rng().random_range(0..1_000);
        let timer = cx.set_timer(self.retransmit_after, Timer::Retransmit { request });
        self.outstanding = Some(Outstanding {
            request,
            operand,
            timer,
            backoff: 0,
        });
        cx.send(SERVER, Msg::Request { request, operand });
    }

    fn on_reply<S: TestSeam>(&mut self, request: u64, result: u64, cx: &mut Context<NodeWith<S>>) {
        // A reply to anything but the request in flight is a late duplicate: ignore it.
        let Some(out) = self.outstanding.as_ref().filter(|o| o.request == request) else {
            return;
        };
        let operand = out.operand;
        cx.cancel_timer(out.timer);
        self.outstanding = None;
        self.completed += 1;
        cx.output(Output::Completed {
            request,
            operand,
            result,
        });
        self.send_next(cx);
    }

    fn on_retransmit<S: TestSeam>(&mut self, request: u64, cx: &mut Context<NodeWith<S>>) {
        let Some(out) = self.outstanding.as_mut().filter(|o| o.request == request) else {
            return;
        };
        out.backoff = (out.backoff + 1).min(BACKOFF_DOUBLINGS_MAX);
        let after = self.retransmit_after * (1 << out.backoff);
        out.timer = cx.set_timer(after, Timer::Retransmit { request });
        cx.send(
            SERVER,
            Msg::Request {
                request,
                operand: out.operand,
            },
        );
    }
}

impl<S: TestSeam> ServerWith<S> {
    fn on_request(
        &mut self,
        client: NodeId,
        request: u64,
        operand: u64,
        cx: &mut Context<NodeWith<S>>,
    ) {
        match self.last_reply.get(&client) {
            Some(&(last, result)) if last == request && !self.seam.reexecutes_retransmissions() => {
                // Retransmission of the latest request: answer again, do not re-execute.
                cx.send(client, Msg::Reply { request, result });
                return;
            }
            Some(&(last, _)) if last > request => return, // stale duplicate
            _ => {}
        }
        self.sum = self.sum.wrapping_add(operand);
        let result = self.sum;
        self.last_reply.insert(client, (request, result));
        cx.output(Output::Executed {
            client,
            request,
            operand,
            result,
        });
        cx.send(client, Msg::Reply { request, result });
    }
}

// ---- Handlers ---------------------------------------------------------------------------

impl<S: TestSeam> Actor for NodeWith<S> {
    type Msg = Msg;
    type Timer = Timer;
    type Output = Output;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        if let NodeWith::Client(client) = self {
            client.send_next(cx);
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<Self>) {
        match (self, msg) {
            (NodeWith::Server(server), Msg::Request { request, operand }) => {
                server.on_request(from, request, operand, cx)
            }
            (NodeWith::Client(client), Msg::Reply { request, result }) if from == SERVER => {
                client.on_reply(request, result, cx)
            }
            (_, msg) => cx.annotate(format!("ignored unexpected {msg:?} from {from}")),
        }
    }

    fn on_timer(&mut self, timer: Timer, cx: &mut Context<Self>) {
        match (self, timer) {
            (NodeWith::Client(client), Timer::Retransmit { request }) => {
                client.on_retransmit(request, cx)
            }
            (NodeWith::Server(_), _) => {}
        }
    }

    fn message_kind(msg: &Msg) -> &'static str {
        match msg {
            Msg::Request { .. } => "request",
            Msg::Reply { .. } => "reply",
        }
    }

    fn waiting_for(&self) -> Option<String> {
        match self {
            NodeWith::Client(c) if c.completed < c.requests_total => Some(format!(
                "the reply to request {} ({} of {} done)",
                c.completed + 1,
                c.completed,
                c.requests_total
            )),
            _ => None,
        }
    }
}

// ---- Invariants -------------------------------------------------------------------------

/// Every accepted reply answers its own request (same client, number and operand, and the
/// result the server computed for it); no request executes twice; clients complete their
/// requests in order; at the end, every client completed all its requests.
///
/// Clients are closed-loop, so per client only the latest executed request needs keeping:
/// memory stays proportional to the number of clients, not of requests.
pub struct RequestsAnswered {
    requests_per_client: u64,
    clients: u32,
    /// Per client: the latest executed request, as (number, operand, result).
    executed: BTreeMap<NodeId, (u64, u64, u64)>,
    /// Per client: requests completed.
    completed: BTreeMap<NodeId, u64>,
}

impl RequestsAnswered {
    pub fn new(config: &Config) -> Self {
        RequestsAnswered {
            requests_per_client: config.requests_per_client,
            clients: config.clients,
            executed: BTreeMap::new(),
            completed: BTreeMap::new(),
        }
    }
}

impl Invariant<Node> for RequestsAnswered {
    fn name(&self) -> &str {
        "requests-answered"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Output) -> Result<(), String> {
        match *output {
            Output::Executed {
                client,
                request,
                operand,
                result,
            } => {
                if let Some(&(last, _, _)) = self.executed.get(&client) {
                    if request <= last {
                        return Err(format!(
                            "request {request} of {client} executed after request {last}: executed twice or out of order"
                        ));
                    }
                }
                self.executed.insert(client, (request, operand, result));
            }
            Output::Completed {
                request,
                operand,
                result,
            } => {
                match self.executed.get(&node) {
                    Some(&(last, op, res)) if last == request => {
                        if (op, res) != (operand, result) {
                            return Err(format!(
                                "{node} accepted result {result} for request {request} (operand {operand}), \
                                 but the server executed operand {op} with result {res}"
                            ));
                        }
                    }
                    _ => {
                        return Err(format!(
                            "{node} accepted a reply to request {request}, which is not the server's latest execution for it"
                        ))
                    }
                }
                let done = self.completed.entry(node).or_insert(0);
                if request != *done + 1 {
                    return Err(format!(
                        "{node} completed request {request} after request {done}"
                    ));
                }
                *done = request;
            }
        }
        Ok(())
    }

    fn at_end(&mut self, _end: &RunEnd<'_, Node>) -> Result<(), String> {
        let unfinished: Vec<String> = (1..=self.clients)
            .map(NodeId)
            .filter_map(|c| {
                let done = self.completed.get(&c).copied().unwrap_or(0);
                (done < self.requests_per_client)
                    .then(|| format!("{c} completed {done} of {}", self.requests_per_client))
            })
            .collect();
        if unfinished.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "requests left incomplete: {}",
                unfinished.join(", ")
            ))
        }
    }
}

#[cfg(test)]
mod production {
    //! The production node (behind the `Correct` seam) runs the very run the simulator's
    //! node does when no mutant is set.

    use super::*;
    use rehearsal_sim_core::{Latency, Outcome, SimConfig, SimpleNetwork, Simulation};

    fn config() -> Config {
        Config {
            clients: 3,
            requests_per_client: 20,
            retransmit_after: Duration::from_millis(50),
        }
    }

    fn network() -> SimpleNetwork {
        SimpleNetwork {
            latency: Latency::Constant { ns: 10_000_000 },
            loss: 0.3,
        }
    }

    #[test]
    fn the_production_node_runs_as_the_simulators_node_without_a_mutant() {
        let config = config();
        let production: Vec<ProductionNode> = (0..=config.clients)
            .map(|i| production_node(&config, NodeId(i)).expect("a node of the run"))
            .collect();
        let report = Simulation::new(SimConfig::new(3), production, network()).run();
        let completed: u64 = report
            .actors
            .iter()
            .map(|node| match node {
                NodeWith::Client(c) => c.completed(),
                NodeWith::Server(_) => 0,
            })
            .sum();
        assert_eq!(completed, 60);

        let mut simulated = Simulation::new(SimConfig::new(3), actors(&config), network());
        simulated.add_invariant(RequestsAnswered::new(&config));
        let simulated = simulated.run();
        assert_eq!(simulated.outcome, Outcome::Ok, "{:?}", simulated.violations);
        assert_eq!(simulated.digest, report.digest);
    }
}
