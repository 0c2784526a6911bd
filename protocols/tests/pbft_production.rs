//! The production node ([`pbft::ProductionNode`]: the correct protocol behind the
//! `Correct` seam, with no mutant switch and no Byzantine behaviour compiled in) runs a
//! simulation to the same end as the simulator's node: every request completes, the
//! safety checks hold, and the run is the very same run, event for event.

mod pbft_common;

use pbft_common::TestNet;
use rehearsal_protocols::pbft::{self, Check, Config, Output, ProductionNode};
use rehearsal_sim_core::protocol::KeySource;
use rehearsal_sim_core::{
    Actor, EndReason, Fault, Invariant, NodeId, Outcome, RunReport, SimConfig, Simulation, Time,
};

/// PBFT's safety checks (written for the simulator's node) over the production node's
/// outputs: the checks look at outputs only, which both nodes share.
struct SafetyOf(Vec<Check>);

impl Invariant<ProductionNode> for SafetyOf {
    fn name(&self) -> &str {
        "pbft-safety"
    }

    fn on_output(&mut self, node: NodeId, now: Time, output: &Output) -> Result<(), String> {
        for check in &mut self.0 {
            check
                .on_output(node, now, output)
                .map_err(|e| format!("{}: {e}", Invariant::<pbft::Node>::name(check)))?;
        }
        Ok(())
    }

    fn on_fault(&mut self, now: Time) {
        for check in &mut self.0 {
            Invariant::<pbft::Node>::on_fault(check, now);
        }
    }
}

fn config() -> Config {
    Config {
        clients: 2,
        requests_per_client: 40,
        ..Config::default()
    }
}

/// Seed 7 on a lossy network, with a primary crash at 700 ms: retransmission, a view
/// change and catch-up all run.
fn run<A: Actor>(actors: Vec<A>, invariants: Vec<Box<dyn Invariant<A>>>) -> RunReport<A> {
    let mut sim = Simulation::new(
        SimConfig::new(7),
        actors,
        TestNet::new("uniform:1ms..20ms").loss(0.05),
    );
    for invariant in invariants {
        sim.add_boxed_invariant(invariant);
    }
    sim.schedule_fault(Time::from_millis(700), Fault::Crash(NodeId(0)))
        .unwrap();
    sim.set_deadline(Some(Time::from_secs(600)));
    sim.run()
}

#[test]
fn the_production_node_completes_every_request_as_the_simulators_node_does() {
    let config = config();
    let production: Vec<ProductionNode> = (0..config.nodes())
        .map(|i| pbft::production_node(&config, NodeId(i), KeySource::Testbed).unwrap())
        .collect();
    let safety: Box<dyn Invariant<ProductionNode>> =
        Box::new(SafetyOf(pbft::safety_checks(&config)));
    let report = run(production, vec![safety]);
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
    assert_eq!(report.end, EndReason::Quiescent);
    assert_eq!(pbft::Summary::of(&report.actors).completed, 80);
    assert!(
        report
            .actors
            .iter()
            .filter_map(ProductionNode::as_replica)
            .any(|r| r.view() > 0),
        "the primary's crash should have forced a view change"
    );

    // The simulator's node, under every check, runs the very same run: the seam changes
    // nothing of what the correct protocol does.
    let checks = pbft::checks(&config)
        .into_iter()
        .map(|c| Box::new(c) as Box<dyn Invariant<pbft::Node>>)
        .collect();
    let simulated = run(pbft::actors(&config).unwrap(), checks);
    assert_eq!(simulated.outcome, Outcome::Ok, "{:?}", simulated.violations);
    assert_eq!(simulated.events, report.events);
    assert_eq!(simulated.digest, report.digest);
}

#[test]
fn the_production_node_offers_no_byzantine_behaviour_and_refuses_a_mutant() {
    assert!(<ProductionNode as Actor>::byzantine_behaviors().is_empty());
    let mut replica = pbft::production_node(&config(), NodeId(1), KeySource::Testbed).unwrap();
    assert!(replica.set_byzantine("equivocate").is_err());
    let broken = Config {
        mutant: pbft::Mutant::SmallCommitQuorum,
        ..config()
    };
    assert_eq!(
        pbft::production_node(&broken, NodeId(1), KeySource::Testbed).err(),
        Some(pbft::ConfigError::MutantInProduction(
            pbft::Mutant::SmallCommitQuorum
        ))
    );
    assert!(pbft::production_node(&config(), NodeId(6), KeySource::Testbed).is_err());
}
