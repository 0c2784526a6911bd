//! Scenario syntax for rounds, twins, leaders and mutations: good lines parse to the
//! entries they name, mistakes are refused with errors that name line and column, and no
//! round-flavoured input makes the parser panic.

use proptest::prelude::*;
use rehearsal_net_models::scenario::{parse, Scenario, ScenarioEntry, ScenarioError};
use rehearsal_sim_core::{Fault, NetChange, NodeId, RoundWhen, Time};
use std::collections::BTreeMap;

/// Five nodes, 0 to 4.
const NODES: u32 = 5;

fn ok(text: &str) -> Scenario {
    parse(text, "rounds.scenario", NODES).unwrap_or_else(|e| panic!("{e}"))
}

fn err(text: &str) -> ScenarioError {
    parse(text, "rounds.scenario", NODES).expect_err("must be refused")
}

fn entry(at: Time, round: Option<(u64, RoundWhen)>, fault: Fault, line: usize) -> ScenarioEntry {
    ScenarioEntry {
        at,
        round,
        fault,
        line,
    }
}

#[test]
fn round_twin_leader_and_mutate_lines_parse_to_their_entries() {
    let n = NodeId;
    let scenario = ok("\
@0 twins 0,2
@round 3 partition 0,1 | 2,3,4,0',2'
@round 4 all heal
@round 4 first crash 0'   # the twin of node 0
@round 2 leader 1
@1.5 isolate 2'
@round 5 leader 0
@round 3 mutate 1 -> 0,2
");
    // Twins are endpoints after the nodes: 0' is 5, 2' is 6.
    assert_eq!(scenario.twins, vec![n(0), n(2)]);
    assert_eq!(scenario.endpoints(NODES), 7);
    assert_eq!(scenario.leaders, BTreeMap::from([(2, n(1)), (5, n(0))]));
    let partition = NetChange::Partition {
        groups: vec![vec![n(0), n(1)], vec![n(2), n(3), n(4), n(5), n(6)]],
    };
    let isolate_twin = NetChange::Partition {
        groups: vec![vec![n(6)], (0..6).map(n).collect()],
    };
    assert_eq!(
        scenario.entries,
        vec![
            // Round-triggered lines wait for their round, not a time (at zero, file order)...
            entry(
                Time::ZERO,
                Some((3, RoundWhen::First)),
                Fault::Network(partition),
                2
            ),
            entry(
                Time::ZERO,
                Some((4, RoundWhen::All)),
                Fault::Network(NetChange::Heal),
                3
            ),
            entry(
                Time::ZERO,
                Some((4, RoundWhen::First)),
                Fault::Crash(n(5)),
                4
            ),
            // ...a mutation is armed from the start for its round...
            entry(
                Time::ZERO,
                None,
                Fault::Mutate {
                    node: n(1),
                    round: 3,
                    to: vec![n(0), n(2)],
                },
                8
            ),
            // ...and timed lines run at their time, over every endpoint.
            entry(
                Time::from_millis(1_500),
                None,
                Fault::Network(isolate_twin),
                6
            ),
        ]
    );
}

#[test]
fn twins_may_be_declared_on_several_lines_and_named_before_their_declaration() {
    let scenario = ok("@1 crash 1'\n@0 twins 3\n@0 twins 1\n@2 restart 3'\n");
    // In declaration order: 3' is endpoint 5, 1' is endpoint 6.
    assert_eq!(scenario.twins, vec![NodeId(3), NodeId(1)]);
    let faults: Vec<(Time, Fault, usize)> = scenario
        .entries
        .into_iter()
        .map(|e| (e.at, e.fault, e.line))
        .collect();
    assert_eq!(
        faults,
        vec![
            (Time::from_secs(1), Fault::Crash(NodeId(6)), 1),
            (Time::from_secs(2), Fault::Restart(NodeId(5)), 4),
        ]
    );
    // Without twins, no endpoints beyond the nodes.
    assert_eq!(ok("@round 1 heal").endpoints(NODES), NODES);
    // `@0` may be written in any form of zero.
    assert_eq!(ok("@0:00.0 twins 4").twins, vec![NodeId(4)]);
}

/// Line, column, message and what was expected, of the error `text` gets.
fn where_and_what(text: &str) -> (usize, usize, String, Option<String>) {
    let e = err(text);
    // The rendered error leads with file, line and column.
    let shown = e.to_string();
    let head = format!("rounds.scenario:{}:{}: {}", e.line, e.column, e.message);
    assert!(shown.starts_with(&head), "{shown}");
    (e.line, e.column, e.message, e.expected)
}

#[test]
fn a_round_that_is_not_a_number_is_named_where_it_is() {
    let (line, column, message, expected) = where_and_what("@0 heal\n@round x heal");
    assert_eq!((line, column), (2, 8));
    assert_eq!(message, "`x` is not a round number");
    assert_eq!(
        expected.as_deref(),
        Some("a round number, e.g. `@round 5 heal`")
    );

    let (line, column, message, _) = where_and_what("@round -1 heal");
    assert_eq!(
        (line, column, message.as_str()),
        (1, 8, "`-1` is not a round number")
    );

    let (line, column, message, _) = where_and_what("@round");
    assert_eq!((line, column), (1, 8));
    assert_eq!(message, "missing round number after `@round`");

    let (_, column, message, _) = where_and_what("@round 3");
    assert_eq!(column, 10);
    assert_eq!(message, "missing command after the round");

    let (_, column, message, _) = where_and_what("@round 3 all first heal");
    assert_eq!(column, 14);
    assert!(message.starts_with("unknown command `first`"), "{message}");
}

#[test]
fn leader_and_mutate_need_a_round() {
    let (line, column, message, expected) = where_and_what("@0 heal\n@3 leader 1");
    assert_eq!((line, column), (2, 4));
    assert_eq!(
        message,
        "`leader` names a round: write the line as `@round R leader`"
    );
    assert!(expected.unwrap().contains("@round 3 leader 1"));

    let (line, column, message, _) = where_and_what("@1:30 mutate 1 -> 2");
    assert_eq!((line, column), (1, 7));
    assert_eq!(
        message,
        "`mutate` names a round: write the line as `@round R mutate`"
    );
}

#[test]
fn twins_are_declared_at_zero_only() {
    let (line, column, message, expected) = where_and_what("@0 heal\n@5 twins 0");
    assert_eq!((line, column), (2, 1));
    assert_eq!(
        message,
        "twins exist from the start: `twins` is a line at `@0`"
    );
    assert_eq!(expected.as_deref(), Some("`@0 twins N[,N]`"));

    let (line, column, message, _) = where_and_what("@round 2 twins 0");
    assert_eq!((line, column), (1, 10));
    assert_eq!(
        message,
        "twins exist from the start: `twins` is a line at `@0`"
    );

    let (line, column, message, _) = where_and_what("@0 twins 1\n@0 twins 2,1");
    assert_eq!((line, column), (2, 1));
    assert_eq!(message, "node 1 already has a twin");

    let (_, column, message, _) = where_and_what("@0 twins 7");
    assert_eq!(column, 10);
    assert_eq!(message, "node 7 does not exist: the run has nodes 0 to 4");
}

#[test]
fn a_twin_named_without_twins_is_refused_at_its_word() {
    let (line, column, message, expected) = where_and_what("@1 crash 3'");
    assert_eq!((line, column), (1, 10));
    assert_eq!(message, "node 3 has no twin");
    assert_eq!(
        expected.as_deref(),
        Some("a node declared with `@0 twins 3`")
    );

    // Another node's twin does not make one for node 3.
    let (line, column, message, _) = where_and_what("@0 twins 1\n@round 2 partition 0,1' | 2,3'");
    assert_eq!((line, column), (2, 29));
    assert_eq!(message, "node 3 has no twin");

    let (_, column, message, _) = where_and_what("@0 twins 1\n@1 crash x'");
    assert_eq!(column, 10);
    assert_eq!(message, "`x'` is not a twin's name");
}

#[test]
fn a_round_has_at_most_one_leader() {
    let (line, column, message, expected) =
        where_and_what("@round 2 leader 1\n@round 3 leader 1\n@round 2 leader 3");
    assert_eq!((line, column), (3, 1));
    assert_eq!(message, "round 2 has two leaders, 1 and 3");
    assert_eq!(
        expected.as_deref(),
        Some("one `@round R leader N` line per round")
    );

    let (_, _, message, _) = where_and_what("@round 2 all leader 1");
    assert_eq!(
        message,
        "a leader is chosen per round: `all` does not apply"
    );

    let (_, _, message, _) = where_and_what("@0 twins 1\n@round 2 leader 1'");
    assert_eq!(message, "a twin leads as its node: name the node, not `N'`");
}

#[test]
fn mutate_needs_an_arrow_between_sender_and_receivers() {
    let (line, column, message, expected) = where_and_what("@round 3 mutate 1 0,2");
    assert_eq!((line, column), (1, 19));
    assert_eq!(message, "expected `->`, found `0`");
    assert!(expected.unwrap().contains("@round 3 mutate 1 -> 0,2"));

    let (_, column, message, _) = where_and_what("@round 3 mutate 1");
    assert_eq!(column, 19);
    assert_eq!(message, "missing `->`");

    let (_, column, message, _) = where_and_what("@round 3 mutate 1 ->");
    assert_eq!(column, 22);
    assert_eq!(message, "missing nodes that receive the mutated messages");

    let (_, column, message, _) = where_and_what("@round 3 mutate 1 -> 0,0");
    assert_eq!(column, 24);
    assert_eq!(message, "node 0 is listed twice");
}

#[test]
fn mutate_refuses_all_as_leader_does() {
    // A mutation covers the node's messages of round R whenever it is in it: `all` (when
    // every correct node is in round R) would be silently ignored.
    let (line, column, message, expected) = where_and_what("@0 heal\n@round 3 all mutate 1 -> 2");
    assert_eq!((line, column), (2, 1));
    assert_eq!(
        message,
        "a mutation changes the node's messages of round R whenever it is in it: `all` does not apply"
    );
    assert_eq!(expected.as_deref(), Some("`@round R mutate N -> R[,R]`"));
    // `first`, the default, is accepted.
    let scenario = ok("@round 3 first mutate 1 -> 2");
    assert_eq!(
        scenario.entries[0].fault,
        Fault::Mutate {
            node: NodeId(1),
            round: 3,
            to: vec![NodeId(2)]
        }
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn round_and_twin_lines_never_make_the_parser_panic(
        lines in proptest::collection::vec(
            (
                prop::sample::select(vec!["@0", "@round", "@round 3", "@round 2 all", "@1", "@"]),
                prop::sample::select(vec![
                    "twins", "leader", "mutate", "partition", "crash", "isolate", "heal",
                    "all", "first", "majority-minority", "bridge", "cut",
                ]),
                "[ 0-9,|>'a-z-]{0,16}",
            ),
            0..8,
        )
    ) {
        let text: String = lines
            .iter()
            .map(|(at, c, a)| format!("{at} {c} {a}\n"))
            .collect();
        match parse(&text, "fuzz", 4) {
            Ok(scenario) => {
                let endpoints = scenario.endpoints(4);
                // Every node a parsed command names is an endpoint of the run.
                for entry in &scenario.entries {
                    prop_assert!(entry.fault.node().0 < endpoints, "{:?}", entry.fault);
                }
                prop_assert!(scenario.leaders.values().all(|n| n.0 < 4));
            }
            Err(e) => {
                prop_assert!(e.line >= 1 && e.line <= lines.len());
                prop_assert!(e.column >= 1);
                prop_assert!(!e.to_string().is_empty());
            }
        }
    }
}
