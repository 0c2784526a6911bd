//! Snapshots of what a person reads: a short Benaloh trace, rendered as text.

use rehearsal::{run, Protocol, RunConfig};
use rehearsal_traces::render_text;

#[test]
fn short_benaloh_trace_renders_as_a_readable_timeline() {
    let config = RunConfig {
        nodes: 3,
        latency: "uniform:1ms..5ms".parse().unwrap(),
        seed: 42,
        ..RunConfig::new(Protocol::of("benaloh"))
    };
    let summary = run(&config, true).unwrap();
    insta::assert_snapshot!(render_text(&summary.trace));
}
