//! Runs that follow their own recording: the property test `follow_property` and the
//! `follow` bench share these.

use rehearsal::run::{run_with, RunOptions};
use rehearsal::{swarm, Protocol, RunConfig};
use rehearsal_net_models::LinkMode;
use rehearsal_traces::{first_difference, ScheduleFollower};

/// A small swarm configuration of `protocol` for `seed`: quick, yet with room for every
/// kind of fault the swarm draws.
pub fn small(protocol: Protocol, seed: u64, mutant: Option<&str>) -> RunConfig {
    let mut base = RunConfig::new(protocol);
    base.seed = seed;
    base.mutant = mutant.map(str::to_string);
    match protocol.name() {
        "unreplicated" => {
            base.clients = 2;
            base.requests = 4;
            base.duration_ns = 4_000_000_000;
        }
        "benaloh" => {
            base.nodes = 3;
            base.duration_ns = 4_000_000_000;
        }
        // Its phases run at 30 s, 45 s and 90 s.
        "benaloh-timed" => {
            base.nodes = 3;
            base.duration_ns = 100_000_000_000;
        }
        "pbft" => {
            base.clients = 1;
            base.requests = 3;
            base.duration_ns = 4_000_000_000;
        }
        // A protocol without a small setting of its own: two clients of four requests,
        // or its default nodes, in four seconds.
        _ => {
            base.clients = base.clients.min(2);
            base.requests = 4;
            base.duration_ns = 4_000_000_000;
        }
    }
    swarm::draw(&base)
}

/// Records the run of `config`, follows the recording, and says how the two differ, if
/// they do.
pub fn departure(config: &RunConfig) -> Option<String> {
    let keep = RunOptions {
        keep_trace: true,
        ..RunOptions::default()
    };
    let recorded = match run_with(config, keep) {
        Ok(run) => run,
        Err(e) => return Some(format!("cannot run: {e}")),
    };
    let options = RunOptions {
        keep_trace: true,
        follow: Some(ScheduleFollower::from_events(&recorded.trace)),
        ..RunOptions::default()
    };
    let followed = match run_with(config, options) {
        Ok(run) => run,
        Err(e) => return Some(format!("cannot follow: {e}")),
    };
    if let Some(d) = first_difference(&recorded.trace, &followed.trace) {
        return Some(format!(
            "departs at event {}: recorded {:?}, now {:?}",
            d.index, d.recorded, d.replayed
        ));
    }
    if followed.digest != recorded.digest || followed.outcome != recorded.outcome {
        return Some(format!(
            "same events but recorded {} {}, now {} {}",
            recorded.outcome.as_str(),
            recorded.digest,
            followed.outcome.as_str(),
            followed.digest
        ));
    }
    None
}

/// What the swarm does not draw: damaged messages, a narrow link whose queue delays what
/// follows (lost messages too), and FIFO links on odd seeds.
pub fn harsher(mut config: RunConfig) -> RunConfig {
    let network = config.network.as_mut().expect("swarm draws a network");
    network.corrupt = 0.05;
    network.bandwidth = Some("2Mbit/s".parse().unwrap());
    if config.seed % 2 == 1 {
        network.mode = LinkMode::Fifo;
    }
    config
}
