//! Test actors and helpers shared by the hardware tests.
#![allow(dead_code)] // each test file uses a different subset

use rehearsal_sim_core::{Actor, Context, Invariant, NodeId, RunEnd, Time, TimerId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// Messages of the ping-pong protocol.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Msg {
    Ping(u64),
    Pong(u64),
    Note(String),
}

/// What the ping-pong nodes report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Event {
    /// The server answered ping `n`.
    Served(u64),
    /// The client got the pong of round `n`, completing it.
    Completed(u64),
    /// A node received a note.
    Noted(String),
}

/// Timers of the ping-pong protocol.
#[derive(Clone, Debug, PartialEq)]
pub enum Tick {
    Retransmit(u64),
}

/// A client pings the server for rounds `1..=rounds`, one at a time, re-sending the ping
/// of the current round every `retransmit` until its pong arrives. The server echoes every
/// ping as a pong.
pub enum PingPong {
    Client {
        server: NodeId,
        rounds: u64,
        retransmit: Duration,
        round: u64,
        timer: Option<TimerId>,
    },
    Server,
}

impl PingPong {
    pub fn client(server: NodeId, rounds: u64, retransmit: Duration) -> Self {
        PingPong::Client {
            server,
            rounds,
            retransmit,
            round: 0,
            timer: None,
        }
    }

    fn begin_round(&mut self, cx: &mut Context<Self>) {
        if let PingPong::Client {
            server,
            rounds,
            retransmit,
            round,
            timer,
        } = self
        {
            if *round < *rounds {
                *round += 1;
                cx.send(*server, Msg::Ping(*round));
                *timer = Some(cx.set_timer(*retransmit, Tick::Retransmit(*round)));
            }
        }
    }
}

impl Actor for PingPong {
    type Msg = Msg;
    type Timer = Tick;
    type Output = Event;

    fn on_start(&mut self, cx: &mut Context<Self>) {
        cx.annotate("start");
        self.begin_round(cx);
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, cx: &mut Context<Self>) {
        match (&mut *self, msg) {
            (PingPong::Server, Msg::Ping(n)) => {
                cx.output(Event::Served(n));
                cx.send(from, Msg::Pong(n));
            }
            (PingPong::Client { round, timer, .. }, Msg::Pong(n)) if n == *round => {
                if let Some(id) = timer.take() {
                    cx.cancel_timer(id);
                }
                cx.output(Event::Completed(n));
                self.begin_round(cx);
            }
            (_, Msg::Note(text)) => cx.output(Event::Noted(text)),
            _ => {} // a stale pong, or a ping to a client
        }
    }

    fn on_timer(&mut self, tick: Tick, cx: &mut Context<Self>) {
        if let PingPong::Client {
            server,
            retransmit,
            round,
            timer,
            ..
        } = self
        {
            let Tick::Retransmit(n) = tick;
            if n == *round {
                cx.annotate(format!("retransmit {n}"));
                cx.send(*server, Msg::Ping(n));
                *timer = Some(cx.set_timer(*retransmit, Tick::Retransmit(n)));
            }
        }
    }
}

/// Clients complete their rounds in order, each only after the server served it; at the
/// end every client completed `rounds` rounds.
pub struct RoundsInOrder {
    pub rounds: u64,
    pub clients: Vec<NodeId>,
    pub served: BTreeMap<u64, u64>,
    pub completed: BTreeMap<NodeId, u64>,
}

impl RoundsInOrder {
    pub fn new(rounds: u64, clients: Vec<NodeId>) -> Self {
        RoundsInOrder {
            rounds,
            clients,
            served: BTreeMap::new(),
            completed: BTreeMap::new(),
        }
    }
}

impl Invariant<PingPong> for RoundsInOrder {
    fn name(&self) -> &str {
        "rounds-in-order"
    }

    fn on_output(&mut self, node: NodeId, _now: Time, output: &Event) -> Result<(), String> {
        match output {
            Event::Served(n) => *self.served.entry(*n).or_insert(0) += 1,
            Event::Completed(n) => {
                if !self.served.contains_key(n) {
                    return Err(format!("{node} completed round {n} before it was served"));
                }
                let done = self.completed.entry(node).or_insert(0);
                if *n != *done + 1 {
                    return Err(format!("{node} completed round {n} after round {done}"));
                }
                *done = *n;
            }
            Event::Noted(_) => {}
        }
        Ok(())
    }

    fn at_end(&mut self, _end: &RunEnd<'_, PingPong>) -> Result<(), String> {
        for client in &self.clients {
            let done = self.completed.get(client).copied().unwrap_or(0);
            if done < self.rounds {
                return Err(format!(
                    "{client} completed {done} of {} rounds",
                    self.rounds
                ));
            }
        }
        Ok(())
    }
}

/// Polls `condition` every millisecond until it holds or `limit` passes; returns whether it
/// held.
pub fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let begun = Instant::now();
    loop {
        if condition() {
            return true;
        }
        if begun.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A bound on every test's waits: generous for a loaded two-core machine, finite.
pub const TEST_LIMIT: Duration = Duration::from_secs(20);

/// Connects a raw socket to `addr` with a 5-second read timeout.
pub fn raw(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
}

/// Listeners for nodes `0..nodes` on ephemeral ports of 127.0.0.1, and their peer table.
pub fn listen_on_loopback(nodes: usize) -> (Vec<TcpListener>, BTreeMap<NodeId, SocketAddr>) {
    let listeners: Vec<TcpListener> = (0..nodes)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let table = listeners
        .iter()
        .enumerate()
        .map(|(i, listener)| (NodeId(i as u32), listener.local_addr().unwrap()))
        .collect();
    (listeners, table)
}
