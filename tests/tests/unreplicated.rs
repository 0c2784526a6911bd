//! Unreplicated request/reply: all requests complete, retransmission covers loss.

use rehearsal::{run, Protocol, RunConfig};
use rehearsal_sim_core::Outcome;

#[test]
fn lossless_network_completes_every_request_without_retransmission() {
    let config = RunConfig {
        clients: 4,
        requests: 200,
        ..RunConfig::new(Protocol::of("unreplicated"))
    };
    let report = run(&config, false).unwrap();
    assert_eq!(report.outcome, Outcome::Ok, "{:?}", report.violations);
    // One request and one reply per operation: no retransmission was needed.
    assert_eq!(report.messages_sent, 2 * 4 * 200);
    let server_executions = report.nodes[0].outputs;
    assert_eq!(server_executions, 800);
}

#[test]
fn clients_retransmit_through_loss_and_complete_all_requests() {
    for seed in 1..=10 {
        let config = RunConfig {
            seed,
            clients: 3,
            requests: 100,
            loss: 0.3,
            latency: "uniform:1ms..30ms".parse().unwrap(),
            ..RunConfig::new(Protocol::of("unreplicated"))
        };
        let report = run(&config, false).unwrap();
        assert_eq!(
            report.outcome,
            Outcome::Ok,
            "seed {seed}: {:?}",
            report.violations
        );
        assert!(report.messages_dropped > 0);
        // Every completion was checked against the server's single execution of it.
        let completions: u64 = report.nodes[1..].iter().map(|n| n.outputs).sum();
        assert_eq!(completions, 300);
        assert_eq!(
            report.nodes[0].outputs, 300,
            "a retransmitted request executed twice"
        );
    }
}

#[test]
fn a_deadline_before_completion_is_a_liveness_violation() {
    let config = RunConfig {
        requests: 1_000,
        duration_ns: 100_000_000,
        ..RunConfig::new(Protocol::of("unreplicated"))
    };
    let report = run(&config, false).unwrap();
    assert_eq!(report.outcome, Outcome::Violation);
    assert!(
        report.violations[0]
            .detail
            .contains("requests left incomplete"),
        "{:?}",
        report.violations
    );
}
