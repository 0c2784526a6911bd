//! `cargo test` integration for the built-in protocols: [`check_config_seeds`] runs a
//! [`RunConfig`] per seed, and its traces also replay with `rehearsal replay`.
//!
//! The harness for a protocol's own simulations, [`check_seeds`], lives in the checking
//! library ([`rehearsal_traces::check`]), which a protocol's crate uses without this one;
//! it is re-exported here.

pub use rehearsal_traces::check::{
    check_seeds, find_failure, follow_trace_of_test, report_failure, Failure,
};

use crate::config::RunConfig;
use crate::run::run;
use rehearsal_sim_core::Outcome;
use rehearsal_traces::check::seed_range;
use rehearsal_traces::Header;

/// [`check_seeds`] for the built-in protocols, from a run configuration per seed; the
/// traces it writes also replay with `rehearsal replay`.
pub fn check_config_seeds(test: &str, seeds: u64, build: impl Fn(u64) -> RunConfig) {
    if let Some(failure) = find_config_failure(test, seeds, build) {
        panic!("{failure}");
    }
}

/// Like [`check_config_seeds`], but returns the first failure instead of panicking.
pub fn find_config_failure(
    test: &str,
    seeds: u64,
    build: impl Fn(u64) -> RunConfig,
) -> Option<Failure> {
    for seed in seed_range(seeds) {
        let config = build(seed);
        let summary = match run(&config, false) {
            Ok(s) => s,
            Err(e) => panic!("{test}: seed {seed}: invalid configuration: {e}"),
        };
        if summary.outcome == Outcome::Ok {
            continue;
        }
        let recorded = run(&config, true).expect("the configuration ran once already");
        let header = config_header(&config);
        return Some(report_failure(
            test,
            seed,
            &config,
            &recorded,
            header,
            |shrunk: &RunConfig| {
                let mut c = shrunk.clone();
                c.follow_schedule = true;
                config_header(&c)
            },
            |shrunk_path| {
                vec![
                    format!("re-run it:    REHEARSAL_SEED={seed} cargo test {test}"),
                    format!("replay it:    {}", config.command_line()),
                    format!(
                        "replay the shrunk run: rehearsal replay {}",
                        shrunk_path.display()
                    ),
                ]
            },
        ));
    }
    None
}

fn config_header(config: &RunConfig) -> Header {
    Header::new(
        config.seed,
        serde_json::to_value(config).expect("run configurations serialize"),
    )
}
