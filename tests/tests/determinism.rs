//! Same seed, same run: byte-identical traces and digests, in one process and across two.

use rehearsal::{run, Protocol, RunConfig};
use rehearsal_sim_core::Latency;
use rehearsal_tests::{cli, scratch_dir};
use std::path::Path;
use std::process::Command;

fn trace_bytes(dir: &Path, name: &str, args: &[&str]) -> Vec<u8> {
    let path = dir.join(name);
    let path_text = path.to_str().unwrap();
    let mut argv = vec!["sim"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--trace", path_text]);
    let run = cli(&argv);
    assert!(run.status <= 1, "{}", run.stderr);
    std::fs::read(&path).unwrap()
}

const JITTERY: &[&str] = &[
    "--protocol",
    "benaloh",
    "--nodes",
    "7",
    "--latency",
    "normal:50ms,30ms",
    "--seed",
    "11",
];

/// A search strategy's run: its choices come from the seed as well.
const PCT_PBFT: &[&str] = &[
    "--protocol",
    "pbft",
    "--requests",
    "15",
    "--swarm",
    "--strategy",
    "pct",
    "--window",
    "2ms",
    "--seed",
    "6",
];

#[test]
fn same_seed_gives_byte_identical_traces_in_one_process() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "same_seed_one_process");
    let a = trace_bytes(&dir, "a.jsonl", JITTERY);
    let b = trace_bytes(&dir, "b.jsonl", JITTERY);
    assert!(
        a.len() > 1_000,
        "trace too short to mean anything: {} bytes",
        a.len()
    );
    assert_eq!(a, b);
    let mut config = RunConfig::new(Protocol::of("unreplicated"));
    config.loss = 0.1;
    config.latency = "uniform:1ms..20ms".parse().unwrap();
    let first = run(&config, false).unwrap();
    let second = run(&config, false).unwrap();
    assert_eq!(first.digest, second.digest);
    assert_eq!(first.events, second.events);
}

/// Run by `same_seed_gives_byte_identical_traces_across_processes` in a child process.
#[test]
#[ignore = "helper: spawned by same_seed_gives_byte_identical_traces_across_processes"]
fn child_process_writes_trace() {
    let dir = std::env::var("REHEARSAL_CHILD_DIR").expect("set by the parent test");
    let name = std::env::var("REHEARSAL_CHILD_NAME").expect("set by the parent test");
    trace_bytes(Path::new(&dir), &name, JITTERY);
    trace_bytes(Path::new(&dir), &format!("pct-{name}"), PCT_PBFT);
}

#[test]
fn same_seed_gives_byte_identical_traces_across_processes() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "same_seed_two_processes");
    for name in ["p1.jsonl", "p2.jsonl"] {
        let status = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_process_writes_trace",
                "--exact",
                "--ignored",
                "--quiet",
            ])
            .env("REHEARSAL_CHILD_DIR", &dir)
            .env("REHEARSAL_CHILD_NAME", name)
            .output()
            .unwrap();
        assert!(
            status.status.success(),
            "{}",
            String::from_utf8_lossy(&status.stderr)
        );
    }
    let p1 = std::fs::read(dir.join("p1.jsonl")).unwrap();
    let p2 = std::fs::read(dir.join("p2.jsonl")).unwrap();
    assert!(p1.len() > 1_000);
    assert_eq!(p1, p2);
    // And the same as this process computes.
    assert_eq!(p1, trace_bytes(&dir, "here.jsonl", JITTERY));
    let p1 = std::fs::read(dir.join("pct-p1.jsonl")).unwrap();
    let p2 = std::fs::read(dir.join("pct-p2.jsonl")).unwrap();
    assert!(p1.len() > 1_000);
    assert_eq!(p1, p2);
    assert_eq!(p1, trace_bytes(&dir, "pct-here.jsonl", PCT_PBFT));
}

#[test]
fn different_seeds_give_different_traces_where_randomness_matters() {
    let mut config = RunConfig::new(Protocol::of("benaloh"));
    config.latency = Latency::Uniform {
        lo_ns: 1_000_000,
        hi_ns: 50_000_000,
    };
    let digests: std::collections::BTreeSet<String> = (1..=20)
        .map(|seed| {
            run(
                &RunConfig {
                    seed,
                    ..config.clone()
                },
                false,
            )
            .unwrap()
            .result
            .digest
            .0
        })
        .collect();
    assert_eq!(digests.len(), 20, "20 seeds must give 20 distinct runs");
}

#[test]
fn digest_is_the_same_whether_or_not_the_trace_is_kept() {
    let config = RunConfig {
        seed: 5,
        ..RunConfig::new(Protocol::of("benaloh-timed"))
    };
    let kept = run(&config, true).unwrap();
    let digest_only = run(&config, false).unwrap();
    assert_eq!(kept.digest, digest_only.digest);
    assert_eq!(kept.trace.len() as u64, kept.events);
    assert!(digest_only.trace.is_empty());
}

/// A trace of the previous format (version 2, whose digest is of the previous digest
/// format) is refused by every command that reads traces, with what to do about it.
#[test]
fn a_trace_of_the_previous_format_is_refused_with_what_to_do() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "previous_format");
    let current = String::from_utf8(trace_bytes(&dir, "now.jsonl", JITTERY)).unwrap();
    let (header, rest) = current.split_once('\n').unwrap();
    assert!(header.contains(r#""version":3,"#), "{header}");
    let old = dir.join("v2.jsonl");
    let old_header = header.replace(r#""version":3,"#, r#""version":2,"#);
    std::fs::write(&old, format!("{old_header}\n{rest}")).unwrap();
    let old = old.to_str().unwrap();
    for command in [vec!["replay", old], vec!["show", old]] {
        let run = cli(&command);
        assert_eq!(run.status, 2, "{command:?}: {}", run.stderr);
        for said in [
            "line 1",
            "trace format version 2 was written by an older Rehearsal",
            "older digest format",
            "this build reads version 3 only",
            "Record the run again with this build",
        ] {
            assert!(run.stderr.contains(said), "{command:?}: {}", run.stderr);
        }
    }
}
