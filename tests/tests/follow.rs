//! `rehearsal replay --follow-trace`: re-enacting a recorded schedule reproduces the run
//! exactly when the code is unchanged, and reports where a changed protocol departs.

use rehearsal_tests::{cli, scratch_dir};

/// Loss, jitter and retransmissions: a schedule the seed alone would not survive.
const LOSSY: &[&str] = &[
    "--protocol",
    "unreplicated",
    "--clients",
    "3",
    "--requests",
    "20",
    "--loss",
    "0.3",
    "--latency",
    "uniform:1ms..30ms",
];

fn record(dir: &std::path::Path, name: &str, args: &[&str]) -> String {
    let path = dir.join(name);
    let path = path.to_str().unwrap().to_string();
    let mut all = vec!["sim"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--trace", &path]);
    let run = cli(&all);
    assert!(run.status <= 1, "{}{}", run.stdout, run.stderr);
    path
}

#[test]
fn following_an_unchanged_run_reproduces_every_event() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "follow_same");
    let lossy = record(&dir, "lossy.jsonl", LOSSY);
    let run = cli(&["replay", "--follow-trace", &lossy]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("identical: all"), "{}", run.stdout);
    assert!(run.stdout.contains(", 0 unscheduled"), "{}", run.stdout);

    // A failing run follows to the same failure.
    let failing = record(
        &dir,
        "timed.jsonl",
        &[
            "--protocol",
            "benaloh-timed",
            "--latency",
            "uniform:1s..40s",
        ],
    );
    let run = cli(&["replay", "--follow-trace", &failing]);
    assert_eq!(run.status, 0, "{}", run.stdout);
    assert!(run.stdout.contains("now violation"), "{}", run.stdout);
    assert!(run.stdout.contains("correct-sum"), "{}", run.stdout);
}

#[test]
fn a_changed_protocol_is_reported_where_it_departs() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "follow_mutant");
    let lossy = record(&dir, "lossy.jsonl", LOSSY);
    let run = cli(&[
        "replay",
        "--follow-trace",
        &lossy,
        "--mutant",
        "execute-retransmissions",
    ]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let text = &run.stdout;
    assert!(
        text.contains("departs from the recording at event"),
        "{text}"
    );
    // The recorded side shows the reply the real server sent; the mutant executes again.
    let recorded = text.lines().find(|l| l.contains("recorded:")).unwrap();
    let now = text.lines().find(|l| l.contains("now:")).unwrap();
    assert!(
        recorded.contains("send") && recorded.contains("Reply"),
        "{recorded}"
    );
    assert!(now.contains("executed"), "{now}");
    assert!(text.contains("executed twice"), "{text}");

    // A plain replay has no use for a mutant; an unknown mutant is named.
    let plain = cli(&["replay", &lossy, "--mutant", "execute-retransmissions"]);
    assert_eq!(plain.status, 2);
    assert!(
        plain.stderr.contains("needs --follow-trace"),
        "{}",
        plain.stderr
    );
    let unknown = cli(&["replay", "--follow-trace", &lossy, "--mutant", "nope"]);
    assert_eq!(unknown.status, 2);
    assert!(
        unknown.stderr.contains("no mutant `nope`"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn the_mutant_is_caught_from_the_seed_too() {
    // The same bug, found by plain simulation under loss; the correct server passes.
    let args = |mutant: bool| {
        let mut a = vec![
            "sim",
            "--protocol",
            "unreplicated",
            "--clients",
            "3",
            "--requests",
            "20",
            "--loss",
            "0.3",
            "--seeds",
            "5",
        ];
        if mutant {
            a.extend_from_slice(&["--mutant", "execute-retransmissions"]);
        }
        cli(&a)
    };
    let correct = args(false);
    assert_eq!(correct.status, 0, "{}", correct.stdout);
    let broken = args(true);
    assert_eq!(broken.status, 1, "{}", broken.stdout);
    assert!(
        broken.stdout.contains("5 runs: 0 ok, 5 violation"),
        "{}",
        broken.stdout
    );
}
