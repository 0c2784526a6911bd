//! A protocol of a user's own, as the README's `cargo test` example writes one: node 0
//! sends the numbers 1..=n to node 1, which outputs them as they arrive, and the (wrong,
//! under jitter or in an asynchronous network) belief that they arrive in order.

use rehearsal_sim_core::explore::{Explorable, Fingerprinter};
use rehearsal_sim_core::{Actor, Context, Invariant, NodeId, Time};

/// Node 0 sends the numbers 1..=n to node 1, which outputs them as they arrive.
#[derive(Clone, Debug)]
pub struct Sender {
    pub n: u32,
    /// What node 1 got, in order.
    pub got: Vec<u32>,
}

impl Sender {
    pub fn new(n: u32) -> Sender {
        Sender { n, got: Vec::new() }
    }
}

impl Actor for Sender {
    type Msg = u32;
    type Timer = ();
    type Output = u32;
    fn on_start(&mut self, cx: &mut Context<Self>) {
        if cx.me() == NodeId(0) {
            for i in 1..=self.n {
                cx.send(NodeId(1), i);
            }
        }
    }
    fn on_message(&mut self, _from: NodeId, i: u32, cx: &mut Context<Self>) {
        self.got.push(i);
        cx.output(i);
    }
    fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
}

/// What node 1 got is all that decides its future (node 0 only sends at the start).
impl Explorable for Sender {
    fn fingerprint(&self, h: &mut Fingerprinter) {
        h.value(&self.got);
    }
}

/// The belief that messages arrive in the order sent.
#[derive(Default)]
pub struct InOrder {
    last: u32,
}

impl Invariant<Sender> for InOrder {
    fn name(&self) -> &str {
        "in-order"
    }
    fn on_output(&mut self, _: NodeId, _: Time, i: &u32) -> Result<(), String> {
        if *i < self.last {
            return Err(format!("{i} arrived after {}", self.last));
        }
        self.last = *i;
        Ok(())
    }
}
