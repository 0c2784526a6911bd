//! The README's `cargo test` example, verbatim but for these lines and `should_panic`
//! (`tests/tests/readme.rs` checks that): it must compile with the checking library alone,
//! and fail the way the README shows.

// tests/order.rs; dev-dependencies: rehearsal-sim-core and rehearsal-traces.
use rehearsal_sim_core::{
    Actor, Context, Invariant, NodeId, SimConfig, SimpleNetwork, Simulation, Time,
};
use rehearsal_traces::check::check_seeds;

/// Node 0 sends 1..=20 to node 1, which outputs them as they arrive.
struct Sender;
impl Actor for Sender {
    type Msg = u32;
    type Timer = ();
    type Output = u32;
    fn on_start(&mut self, cx: &mut Context<Self>) {
        if cx.me() == NodeId(0) {
            for i in 1..=20 {
                cx.send(NodeId(1), i);
            }
        }
    }
    fn on_message(&mut self, _from: NodeId, i: u32, cx: &mut Context<Self>) {
        cx.output(i);
    }
    fn on_timer(&mut self, _: (), _: &mut Context<Self>) {}
}

struct InOrder(u32);
impl Invariant<Sender> for InOrder {
    fn name(&self) -> &str {
        "in-order"
    }
    fn on_output(&mut self, _: NodeId, _: Time, i: &u32) -> Result<(), String> {
        if *i < self.0 {
            return Err(format!("{i} arrived after {}", self.0));
        }
        self.0 = *i;
        Ok(())
    }
}

#[test]
#[should_panic(expected = "messages_arrive_in_order: seed 1 failed: in-order: 18 arrived after 19")]
fn messages_arrive_in_order() {
    check_seeds("messages_arrive_in_order", 100, |seed| {
        let network = SimpleNetwork {
            latency: "uniform:1ms..20ms".parse().unwrap(),
            loss: 0.0,
        };
        let mut sim = Simulation::new(SimConfig::new(seed), vec![Sender, Sender], network);
        sim.add_invariant(InOrder(0));
        sim
    });
}
