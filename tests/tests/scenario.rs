//! Scenario files: every command parses to the fault it names, typical mistakes give
//! errors that name file, line and column (snapshotted), and no input makes the parser
//! panic.

use proptest::prelude::*;
use rehearsal_net_models::scenario::{parse, ScenarioError};
use rehearsal_sim_core::{ClockSkew, Fault, Latency, NetChange, NodeId, Time};

fn ok(text: &str) -> Vec<(Time, Fault)> {
    parse(text, "test.scenario", 5)
        .unwrap_or_else(|e| panic!("{e}"))
        .entries
        .into_iter()
        .map(|e| (e.at, e.fault))
        .collect()
}

fn err(text: &str) -> String {
    let e: ScenarioError = parse(text, "run.scenario", 5).expect_err("must be refused");
    e.to_string()
}

#[test]
fn every_command_parses_to_its_fault() {
    let got = ok("
# a comment line
@0 annotate phase one   # trailing comment
@1:30 partition 0,1 | 2, 3,4
@2:00 heal
@2:10 isolate 3
@2:20 majority-minority
@2:30 majority-minority 0,1
@2:40 cut 0,1 -> 2
@3 crash 2
@4 restart 2
@5 pause 1
@6 resume 1
@7 skew 1 +5ms +100ppm
@8 skew 2 -2s
@9 set-loss 0.25
@10 set-latency normal:50ms, 10ms
@11 byzantine 0 equivocate
@1:00:00.5 stop
");
    let n = NodeId;
    let expected = vec![
        (Time::ZERO, Fault::Annotate("phase one".into())),
        (Time::from_secs(3), Fault::Crash(n(2))),
        (Time::from_secs(4), Fault::Restart(n(2))),
        (Time::from_secs(5), Fault::Pause(n(1))),
        (Time::from_secs(6), Fault::Resume(n(1))),
        (
            Time::from_secs(7),
            Fault::Skew {
                node: n(1),
                skew: ClockSkew {
                    offset_ns: 5_000_000,
                    drift_ppm: 100,
                },
            },
        ),
        (
            Time::from_secs(8),
            Fault::Skew {
                node: n(2),
                skew: ClockSkew {
                    offset_ns: -2_000_000_000,
                    drift_ppm: 0,
                },
            },
        ),
        (
            Time::from_secs(9),
            Fault::Network(NetChange::SetLoss { loss: 0.25 }),
        ),
        (
            Time::from_secs(10),
            Fault::Network(NetChange::SetLatency {
                latency: "normal:50ms,10ms".parse::<Latency>().unwrap(),
            }),
        ),
        (
            Time::from_secs(11),
            Fault::Byzantine {
                node: n(0),
                behavior: "equivocate".into(),
            },
        ),
        (
            Time::from_secs(90),
            Fault::Network(NetChange::Partition {
                groups: vec![vec![n(0), n(1)], vec![n(2), n(3), n(4)]],
            }),
        ),
        (Time::from_secs(120), Fault::Network(NetChange::Heal)),
    ];
    assert_eq!(&got[..expected.len()], &expected[..]);
    let rest: Vec<String> = got[expected.len()..]
        .iter()
        .map(|(t, f)| format!("{} {f}", t.as_nanos()))
        .collect();
    assert_eq!(
        rest,
        [
            "130000000000 partition 3 | 0,1,2,4",
            "140000000000 partition 0,1,2 | 3,4",
            "150000000000 partition 2,3,4 | 0,1",
            "160000000000 cut 0,1 -> 2",
            "3600500000000 stop",
        ]
    );
}

#[test]
fn commands_at_one_time_keep_file_order() {
    let got = ok("@5 crash 1\n@1 crash 2\n@5 restart 1\n@5 crash 3\n");
    let order: Vec<String> = got.iter().map(|(_, f)| f.to_string()).collect();
    assert_eq!(order, ["crash 2", "crash 1", "restart 1", "crash 3"]);
}

#[test]
fn shapes_name_themselves_in_traces() {
    let got = ok("@1 ring\n@2 bridge\n@3 bridge 1\n");
    let text: Vec<String> = got.iter().map(|(_, f)| f.to_string()).collect();
    assert!(text[0].starts_with("ring (cut "), "{}", text[0]);
    assert!(text[1].starts_with("bridge 2 (cut "), "{}", text[1]);
    assert!(text[2].starts_with("bridge 1 (cut "), "{}", text[2]);
}

#[test]
fn typical_mistakes_are_named_with_file_line_and_column() {
    let cases = [
        ("no_at", "crash 1"),
        ("bad_time", "@1:75 crash 1"),
        (
            "misspelt_command",
            "@0 annotate start\n@1:30 partiton 0,1 | 2,3",
        ),
        ("unknown_command", "@3 explode 2"),
        ("missing_node", "@3 crash"),
        ("node_out_of_range", "@3 crash 7"),
        ("not_a_node", "@3 pause one"),
        ("one_group", "@3 partition 0,1,2"),
        ("node_in_two_groups", "@3 partition 0,1 | 1,2"),
        ("cut_without_arrow", "@3 cut 0,1 2"),
        ("trailing_words", "@3 heal now please"),
        ("bad_loss", "@3 set-loss 1.5"),
        ("bad_latency", "@3 set-latency normal:50ms"),
        ("bad_skew", "@3 skew 1 5 +10ppm"),
        ("bad_drift", "@3 skew 1 +5ms 10"),
        ("big_minority", "@3 majority-minority 0,1,2"),
        ("empty_annotation", "@3 annotate   # nothing"),
    ];
    let mut all = String::new();
    for (name, text) in cases {
        all += &format!("--- {name}\n{}\n\n", err(text));
    }
    insta::assert_snapshot!(all);
}

#[test]
fn errors_point_at_the_right_line_and_column() {
    let e = parse("\n\n@1 crash 1\n@2   restart x\n", "f.scn", 3).unwrap_err();
    assert_eq!((e.origin.as_str(), e.line, e.column), ("f.scn", 4, 14));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse(&text, "fuzz", 4);
    }

    #[test]
    fn scenario_like_text_never_panics(
        lines in proptest::collection::vec(
            (
                "@[0-9:.]{0,8}",
                prop::sample::select(vec![
                    "partition", "isolate", "majority-minority", "ring", "bridge", "cut",
                    "heal", "crash", "restart", "pause", "resume", "skew", "set-loss",
                    "set-latency", "byzantine", "annotate", "stop", "x",
                ]),
                "[ 0-9,|>a-z:.+-]{0,20}",
            ),
            0..8,
        )
    ) {
        let text: String = lines
            .iter()
            .map(|(t, c, a)| format!("{t} {c} {a}\n"))
            .collect();
        if let Err(e) = parse(&text, "fuzz", 4) {
            // Errors always point inside the text.
            prop_assert!(e.line >= 1 && e.line <= lines.len());
            prop_assert!(!e.to_string().is_empty());
        }
    }
}
