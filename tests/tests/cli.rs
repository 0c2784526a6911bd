//! The `rehearsal` command line: defaults, JSON output, exit statuses, and bad input.

use rehearsal_tests::{cli, scratch_dir};
use rehearsal_traces::{read_trace, write_trace};

#[test]
fn default_sim_runs_benaloh_and_prints_a_readable_summary() {
    let run = cli(&["sim"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("benaloh · 5 nodes"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("seed 1") && run.stdout.contains(" ok "),
        "{}",
        run.stdout
    );
}

#[test]
fn json_output_has_one_object_per_run_with_the_documented_fields() {
    let run = cli(&[
        "sim",
        "--protocol",
        "unreplicated",
        "--seeds",
        "3",
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let lines: Vec<serde_json::Value> = run
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (i, line) in lines.iter().enumerate() {
        for field in [
            "protocol",
            "seed",
            "outcome",
            "violations",
            "events",
            "messages_delivered",
            "sim_time_ns",
            "wall_time_ns",
            "trace_digest",
        ] {
            assert!(line.get(field).is_some(), "missing {field} in {line}");
        }
        assert_eq!(line["seed"], i as u64 + 1);
        assert_eq!(line["outcome"], "ok");
        assert_eq!(line["protocol"], "unreplicated");
    }
}

#[test]
fn many_seeds_report_the_failing_ones_and_the_command_that_replays_the_first() {
    let run = cli(&[
        "sim",
        "--protocol",
        "benaloh-timed",
        "--latency",
        "uniform:1s..40s",
        "--seeds",
        "30",
    ]);
    assert_eq!(run.status, 1);
    assert!(run.stdout.contains("30 runs:"), "{}", run.stdout);
    assert!(run.stdout.contains("failing seeds: "), "{}", run.stdout);
    let replay_line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("rehearsal sim "))
        .expect("replay command");
    // The printed command, run as printed, reproduces the failure.
    let words: Vec<&str> = replay_line.split_whitespace().skip(1).collect();
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "printed_replay_command");
    let trace = dir.join("t.jsonl");
    let mut words: Vec<&str> = words
        .iter()
        .take_while(|w| **w != "--trace")
        .copied()
        .collect();
    words.extend(["--trace", trace.to_str().unwrap()]);
    let again = cli(&words);
    assert_eq!(again.status, 1, "{}", again.stdout);
    // The failing seed's trace replays identically, and fails again: exit 1.
    let replay = cli(&["replay", trace.to_str().unwrap()]);
    assert_eq!(replay.status, 1, "{}", replay.stdout);
    assert!(
        replay
            .stdout
            .contains("exit 1: identical, but the run fails (violation)"),
        "{}",
        replay.stdout
    );
}

fn assert_bad_input(args: &[&str], needle: &str) {
    let run = cli(args);
    assert_eq!(
        run.status, 2,
        "{args:?} should exit 2; stdout: {} stderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        run.stderr.contains(needle),
        "{args:?}: expected `{needle}` in: {}",
        run.stderr
    );
}

#[test]
fn bad_arguments_exit_2_with_a_message_naming_the_problem() {
    assert_bad_input(&["sim", "--protocol", "paxos"], "invalid value 'paxos'");
    assert_bad_input(&["sim", "--nodes", "1"], "at least 2 nodes");
    assert_bad_input(
        &["sim", "--protocol", "benaloh-timed", "--nodes", "0"],
        "at least 2 nodes",
    );
    assert_bad_input(
        &["sim", "--latency", "gaussian:5ms"],
        "unknown kind `gaussian`",
    );
    assert_bad_input(&["sim", "--latency", "uniform:5s"], "LO..HI");
    assert_bad_input(&["sim", "--latency", "constant:10"], "no unit");
    assert_bad_input(&["sim", "--duration", "soon"], "duration");
    assert_bad_input(&["sim", "--loss", "1.5"], "loss must be a probability");
    assert_bad_input(&["sim", "--seeds", "0"], "at least 1, got --seeds 0");
    assert_bad_input(
        &["sim", "--protocol", "unreplicated", "--nodes", "3"],
        "exactly one server",
    );
    assert_bad_input(&["frobnicate"], "unrecognized subcommand");
}

#[test]
fn bad_trace_files_exit_2_naming_file_and_line() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "bad_traces");
    let good = dir.join("good.jsonl");
    assert_eq!(cli(&["sim", "--trace", good.to_str().unwrap()]).status, 0);
    let bytes = std::fs::read(&good).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();

    assert_bad_input(
        &["replay", dir.join("missing.jsonl").to_str().unwrap()],
        "cannot read trace",
    );

    let truncated = dir.join("truncated.jsonl");
    std::fs::write(&truncated, &bytes[..bytes.len() * 2 / 3]).unwrap();
    assert_bad_input(&["replay", truncated.to_str().unwrap()], "is truncated");

    let corrupt = dir.join("corrupt.jsonl");
    std::fs::write(&corrupt, text.replacen("\"deliver\"", "\"delivre\"", 1)).unwrap();
    assert_bad_input(
        &["replay", corrupt.to_str().unwrap()],
        "unknown event kind `delivre`",
    );

    let edited = dir.join("edited.jsonl");
    std::fs::write(
        &edited,
        text.replacen("Share { value: ", "Share { value: 1", 1),
    )
    .unwrap();
    assert_bad_input(&["replay", edited.to_str().unwrap()], "is corrupt");

    let binary = dir.join("binary.jsonl");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, b'\n']).unwrap();
    assert_bad_input(&["replay", binary.to_str().unwrap()], "line 1");

    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, b"").unwrap();
    assert_bad_input(&["replay", empty.to_str().unwrap()], "is empty");
}

#[test]
fn a_trace_header_that_is_not_a_run_configuration_exits_2() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "bad_header_config");
    let good = dir.join("good.jsonl");
    assert_eq!(cli(&["sim", "--trace", good.to_str().unwrap()]).status, 0);
    let mut trace = read_trace(&good).unwrap();
    trace.header.config["protocol"] = serde_json::json!("raft");
    let bad = dir.join("bad.jsonl");
    write_trace(
        &mut std::fs::File::create(&bad).unwrap(),
        &trace.header,
        &trace.events,
        &trace.footer,
    )
    .unwrap();
    assert_bad_input(
        &["replay", bad.to_str().unwrap()],
        "not a run configuration",
    );
}

#[test]
fn replay_reports_the_first_event_that_differs() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "replay_divergence");
    let good = dir.join("good.jsonl");
    assert_eq!(
        cli(&[
            "sim",
            "--latency",
            "uniform:1ms..9ms",
            "--trace",
            good.to_str().unwrap()
        ])
        .status,
        0
    );
    // A well-formed trace whose events no longer match what its header produces.
    let mut trace = read_trace(&good).unwrap();
    trace.header.config["latency"] = serde_json::json!("uniform:1ms..10ms");
    let changed = dir.join("changed.jsonl");
    write_trace(
        &mut std::fs::File::create(&changed).unwrap(),
        &trace.header,
        &trace.events,
        &trace.footer,
    )
    .unwrap();
    let run = cli(&["replay", changed.to_str().unwrap()]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("diverges at event"), "{}", run.stdout);
    assert!(
        run.stdout.contains("recorded:") && run.stdout.contains("replayed:"),
        "{}",
        run.stdout
    );
}

#[test]
fn bench_sim_prints_its_figures_as_json() {
    let run = cli(&["bench", "sim", "--round-trips", "1000", "--json"]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let all: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let runs = all["runs"].as_array().unwrap();
    let models: Vec<&str> = runs.iter().map(|r| r["model"].as_str().unwrap()).collect();
    assert_eq!(models, ["default", "minimal"]);
    for figures in runs {
        assert_eq!(figures["messages"], 2000);
        assert!(figures["wall_time_ns"].as_u64().unwrap() > 0);
        assert!(figures["messages_per_wall_second"].as_f64().unwrap() > 0.0);
        assert!(figures["sim_seconds_per_wall_second"].as_f64().unwrap() > 0.0);
    }
    assert!(all["default_over_minimal"].as_f64().unwrap() > 0.0);
}

#[test]
fn bench_scale_prints_the_cost_per_message_at_each_size() {
    let run = cli(&[
        "bench",
        "scale",
        "--pbft-nodes",
        "4,7",
        "--benaloh-nodes",
        "10,20",
        "--pbft-messages",
        "3000",
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let all: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(all["bench"], "scale");
    let runs = all["runs"].as_array().unwrap();
    let sizes: Vec<(&str, u64)> = runs
        .iter()
        .map(|r| {
            (
                r["protocol"].as_str().unwrap(),
                r["nodes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sizes,
        [("pbft", 4), ("pbft", 7), ("benaloh", 10), ("benaloh", 20)]
    );
    for run in runs {
        assert_eq!(run["outcome"], "ok", "{run}");
        let messages = run["messages_delivered"].as_u64().unwrap();
        let wall = run["wall_time_ns"].as_f64().unwrap();
        let per_message = run["ns_per_message"].as_f64().unwrap();
        assert!((per_message - wall / messages as f64).abs() <= 0.1, "{run}");
        if cfg!(target_os = "linux") {
            assert!(run["peak_resident_bytes"].as_u64().unwrap() > 0, "{run}");
        }
    }
    // Benaloh sends every peer's share to every other peer: n² grows 4x from 10 to 20.
    let benaloh = |i: usize| runs[i]["messages_delivered"].as_u64().unwrap();
    assert!(benaloh(3) >= 3 * benaloh(2), "{all}");
    // PBFT's requests are chosen so each size delivers about as many messages.
    for pbft in &runs[..2] {
        assert!(pbft["committed_requests"].as_u64().unwrap() >= 20, "{pbft}");
        assert!(pbft["wall_ns_per_committed_request"].as_u64().unwrap() > 0);
    }
}

#[test]
fn bench_all_prints_each_figure_beside_its_target() {
    let run = cli(&[
        "bench",
        "all",
        "--quick",
        "--skip",
        "pbft,hotstuff,tcp,cluster,dpdk",
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let all: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(all["bench"], "all");
    // Each step keeps its whole report, and the rows read their figures from it.
    let reports = all["reports"].as_object().unwrap();
    assert_eq!(reports.keys().collect::<Vec<_>>(), ["scale", "sim"]);
    let rows = all["rows"].as_array().unwrap();
    let row = |start: &str| {
        rows.iter()
            .find(|r| r["figure"].as_str().unwrap().starts_with(start))
            .unwrap_or_else(|| panic!("no row {start}: {all}"))
    };
    let sim = row("sim ping-pong");
    assert_eq!(
        sim["value"],
        reports["sim"]["runs"][0]["messages_per_wall_second"]
    );
    assert_eq!(sim["target"], ">= 8,000,000");
    let met = sim["value"].as_f64().unwrap() >= 8e6;
    assert_eq!(sim["met"], met);
    let pbft4 = row("pbft, n = 4: wall time per message");
    assert_eq!(
        pbft4["value"],
        reports["scale"]["runs"][0]["ns_per_message"]
    );
    assert_eq!(pbft4["target"], "<= 400");
    assert!(
        row("benaloh, n = 60: peak resident memory")["value"]
            .as_f64()
            .unwrap()
            > 0.0
    );
    assert!(rows
        .iter()
        .all(|r| !r["figure"].as_str().unwrap().starts_with("tcp")));

    let text = cli(&[
        "bench",
        "all",
        "--quick",
        "--skip",
        "pbft,hotstuff,scale,tcp,cluster,dpdk",
    ]);
    assert_eq!(text.status, 0, "{}", text.stderr);
    assert!(text.stdout.contains("sim ping-pong"), "{}", text.stdout);
    assert!(text.stdout.contains("targets met"), "{}", text.stdout);
    assert!(
        text.stderr.contains("bench all: sim ..."),
        "{}",
        text.stderr
    );

    // A step that cannot run (here the cluster: this test program cannot be a node)
    // loses no other figure: its rows read "not measured" and the run fails.
    let run = cli(&[
        "bench",
        "all",
        "--quick",
        "--skip",
        "pbft,hotstuff,scale,tcp,dpdk",
        "--json",
    ]);
    assert_eq!(run.status, 1, "{}{}", run.stdout, run.stderr);
    let all: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    let failed = all["failed_steps"].as_array().unwrap();
    assert_eq!(failed.len(), 1, "{all}");
    assert!(
        failed[0]
            .as_str()
            .unwrap()
            .starts_with("the cluster step failed: "),
        "{all}"
    );
    assert!(
        run.stderr.contains("bench all: the cluster step failed"),
        "{}",
        run.stderr
    );
    let rows = all["rows"].as_array().unwrap();
    assert!(rows[0]["value"].as_f64().unwrap() > 0.0, "{all}");
    assert!(rows[1]["value"].is_null(), "{all}");
    assert!(rows[1]["figure"]
        .as_str()
        .unwrap()
        .starts_with("pbft cluster"));

    let bad = cli(&["bench", "all", "--skip", "telepathy"]);
    assert_eq!(bad.status, 2, "{}", bad.stderr);
    assert!(
        bad.stderr.contains("--skip telepathy: no such step"),
        "{}",
        bad.stderr
    );
}

#[test]
fn bench_pbft_and_hotstuff_print_the_same_figures_as_json() {
    for protocol in ["pbft", "hotstuff"] {
        let run = cli(&["bench", protocol, "--requests", "100", "--json"]);
        assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
        let all: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
        assert_eq!(all["bench"], protocol);
        let runs = all["runs"].as_array().unwrap();
        assert_eq!(runs.len(), 4, "{all}");
        for figures in runs {
            assert_eq!(figures["outcome"], "ok", "{figures}");
            let committed = figures["committed_requests"].as_u64().unwrap();
            assert!(committed > 0, "{figures}");
            assert!(
                figures["committed_requests_per_wall_second"]
                    .as_f64()
                    .unwrap()
                    > 0.0
            );
            // Every committed request costs at least the client's request to each
            // replica and f+1 replies.
            let per_request = figures["messages_per_committed_request"].as_f64().unwrap();
            assert!(per_request >= 1.0, "{figures}");
        }
        assert_eq!(runs[0]["committed_requests"], 100);
    }
}

#[test]
fn bench_spectrum_prints_throughput_audit_and_grid_as_json() {
    let run = cli(&[
        "bench",
        "spectrum",
        "--max-bytes",
        "100000",
        "--reps",
        "1",
        "--tcp-duration",
        "0s",
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let all: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(all["bench"], "spectrum");
    // The TCP workload (tests/tests/cluster.rs runs it) was skipped as asked.
    assert!(all["tcp"].is_null(), "{all}");
    let throughput = &all["throughput"];
    let keystream = throughput["keystream_bytes_per_second"].as_f64().unwrap();
    let eval = throughput["eval_bytes_per_second"].as_f64().unwrap();
    assert!(keystream > 0.0 && eval > 0.0, "{all}");
    let ratio = throughput["eval_over_keystream"].as_f64().unwrap();
    assert!((ratio - eval / keystream).abs() < 0.01, "{all}");
    let audits = all["audit"].as_array().unwrap();
    assert_eq!(audits.len(), 3, "{all}");
    for audit in audits {
        assert!(audit["audit_ns_per_write"].as_f64().unwrap() > 0.0, "{all}");
    }
    // Only the cells of at most 100,000 bytes: 1 channel x 1, 10, 100 KB; 100 x 1 KB.
    let cells: Vec<(u64, u64)> = all["server_per_upload"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["channels"].as_u64().unwrap(),
                c["message_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(cells, [(1, 1_000), (1, 10_000), (1, 100_000), (100, 1_000)]);
}

#[test]
fn bench_tcp_runs_both_sides_briefly_and_refuses_a_bad_nice_value() {
    let run = cli(&[
        "bench",
        "tcp",
        "--clients",
        "2",
        "--warmup",
        "100ms",
        "--duration",
        "300ms",
        "--json",
    ]);
    assert_eq!(run.status, 0, "{}{}", run.stdout, run.stderr);
    let report: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["config"]["clients"], 2);
    let nice = if cfg!(target_os = "linux") { 5 } else { 0 };
    assert_eq!(report["config"]["client_nice"], nice);
    for side in ["runtime", "baseline"] {
        assert!(report[side]["requests"].as_u64().unwrap() > 0, "{report}");
        assert!(
            report[side]["latency"]["p50_ns"].as_u64().unwrap() > 0,
            "{report}"
        );
    }
    // Every request and every reply is written once and read at least once, by the server
    // and by its client, on both sides (the window's edges cut a request or two short).
    for side in ["runtime", "baseline"] {
        let syscalls = &report[side]["syscalls"];
        for part in ["server_per_request", "clients_per_request"] {
            for kind in ["reads", "writes"] {
                let rate = syscalls[part][kind].as_f64().unwrap();
                assert!(rate > 0.9, "{side} {part} {kind}: {report}");
            }
        }
        let total = syscalls["per_request"]["total"].as_f64().unwrap();
        assert!(total >= 3.6, "{side}: {report}");
    }
    // The blocking echo never waits for readiness: its reads block.
    assert_eq!(report["baseline"]["syscalls"]["server"]["waits"], 0);
    let ratio = report["throughput_ratio"].as_f64().unwrap();
    let runtime = report["runtime"]["requests_per_second"].as_f64().unwrap();
    let baseline = report["baseline"]["requests_per_second"].as_f64().unwrap();
    assert!((ratio - runtime / baseline).abs() < 1e-9, "{report}");

    let bad = cli(&["bench", "tcp", "--client-nice", "20"]);
    assert_eq!(bad.status, 2, "{}{}", bad.stdout, bad.stderr);
    assert!(
        bad.stderr.contains("nice value must be between 0 and 19"),
        "{}",
        bad.stderr
    );
}

#[test]
fn export_and_plot_turn_a_trace_into_each_format() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "export_and_plot");
    let trace = dir.join("t.jsonl");
    let trace = trace.to_str().unwrap();
    assert_eq!(cli(&["sim", "--nodes", "3", "--trace", trace]).status, 0);
    let chrome = cli(&["export", trace, "--format", "chrome"]);
    assert_eq!(chrome.status, 0, "{}", chrome.stderr);
    let json: serde_json::Value = serde_json::from_str(&chrome.stdout).unwrap();
    assert!(json["traceEvents"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));
    let mermaid = cli(&["export", trace, "--format", "mermaid", "--max-events", "5"]);
    assert!(mermaid.stdout.starts_with("sequenceDiagram") && mermaid.stdout.contains("truncated"));
    let dot = dir.join("hb.dot");
    assert_eq!(
        cli(&[
            "export",
            trace,
            "--format",
            "dot",
            "-o",
            dot.to_str().unwrap()
        ])
        .status,
        0
    );
    assert!(std::fs::read_to_string(&dot)
        .unwrap()
        .starts_with("digraph"));
    assert!(cli(&["export", trace, "--format", "shiviz"])
        .stdout
        .contains("(?<event>"));
    let svg = dir.join("t.svg");
    let plot = cli(&["plot", trace, "-o", svg.to_str().unwrap()]);
    assert_eq!(plot.status, 0, "{}", plot.stderr);
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    assert_bad_input(
        &[
            "export",
            dir.join("none.jsonl").to_str().unwrap(),
            "--format",
            "dot",
        ],
        "cannot read trace",
    );
    assert_bad_input(&["export", trace, "--format", "pdf"], "invalid value 'pdf'");
}

#[test]
fn graphviz_accepts_the_dot_export() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "graphviz_dot");
    let trace = dir.join("t.jsonl");
    let trace = trace.to_str().unwrap();
    assert_eq!(cli(&["sim", "--nodes", "4", "--trace", trace]).status, 0);
    let dot = dir.join("hb.dot");
    let export = cli(&[
        "export",
        trace,
        "--format",
        "dot",
        "-o",
        dot.to_str().unwrap(),
    ]);
    assert_eq!(export.status, 0, "{}", export.stderr);
    // .ci/run installs graphviz; a machine without it cannot run this check.
    let svg = dir.join("hb.svg");
    let result = std::process::Command::new("dot")
        .arg("-Tsvg")
        .arg(&dot)
        .arg("-o")
        .arg(&svg)
        .output()
        .expect("Graphviz `dot` must be installed (apt-get install graphviz; .ci/run does it)");
    assert!(
        result.status.success(),
        "dot refused the export: {}",
        String::from_utf8_lossy(&result.stderr)
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
}

#[test]
fn show_filters_the_timeline_by_node_time_and_kind() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "show");
    let trace = dir.join("t.jsonl");
    let trace = trace.to_str().unwrap();
    assert_eq!(cli(&["sim", "--nodes", "3", "--trace", trace]).status, 0);

    let all = cli(&["show", trace]);
    assert_eq!(all.status, 0, "{}", all.stderr);
    let header = all.stdout.lines().next().unwrap();
    assert!(header.contains("seed 1, outcome ok"), "{header}");
    let events: Vec<&str> = all.stdout.lines().skip(1).collect();
    assert!(events.iter().any(|l| l.contains(" n2 ")));

    let node1 = cli(&["show", trace, "--node", "1"]);
    let lines: Vec<&str> = node1.stdout.lines().skip(1).collect();
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l.split_whitespace().nth(2) == Some("n1")),
        "{lines:?}"
    );
    // A delivery names the message it delivers, so the filtered view reads on its own.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("deliver") && l.contains("Share")),
        "{lines:?}"
    );

    let window = cli(&[
        "show", trace, "--from", "10ms", "--to", "10ms", "--kind", "deliver",
    ]);
    let lines: Vec<&str> = window.stdout.lines().skip(1).collect();
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l.contains("10ms") && l.contains("deliver")),
        "{lines:?}"
    );
    assert!(lines.len() < events.len());

    assert_bad_input(&["show", trace, "--kind", "recieve"], "not an event kind");
    assert_bad_input(&["show", trace, "--node", "9"], "no events at node 9");
    assert_bad_input(&["show", trace, "--from", "2s", "--to", "1s"], "is after");
}

#[test]
fn every_trace_command_refuses_a_malformed_trace_with_its_line() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "malformed_for_all");
    let good = dir.join("good.jsonl");
    assert_eq!(cli(&["sim", "--trace", good.to_str().unwrap()]).status, 0);
    let text = std::fs::read_to_string(&good).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[3] = "{\"seq\":2,\"t\":\"soon\"}";
    let bad = dir.join("bad.jsonl");
    std::fs::write(&bad, lines.join("\n") + "\n").unwrap();
    let bad = bad.to_str().unwrap();
    let truncated = dir.join("truncated.jsonl");
    std::fs::write(&truncated, &text[..text.len() / 2]).unwrap();
    let truncated = truncated.to_str().unwrap();
    let svg = dir.join("x.svg");
    for file in [bad, truncated] {
        for args in [
            vec!["replay", file],
            vec!["show", file],
            vec!["export", file, "--format", "chrome"],
            vec!["plot", file, "-o", svg.to_str().unwrap()],
        ] {
            let run = cli(&args);
            assert_eq!(run.status, 2, "{args:?}: {}", run.stdout);
            assert!(run.stderr.contains("line "), "{args:?}: {}", run.stderr);
        }
    }
    assert!(cli(&["show", bad]).stderr.contains("line 4"));
}

#[test]
fn protocols_are_listed_from_the_registry_by_both_commands() {
    let listed = cli(&["protocols"]);
    assert_eq!(listed.status, 0, "{}", listed.stderr);
    for protocol in rehearsal::Protocol::all() {
        assert!(
            listed.stdout.contains(&format!("{}: ", protocol.name())),
            "{} missing:\n{}",
            protocol.name(),
            listed.stdout
        );
    }
    // What PBFT offers, as its registry entry says.
    for word in [
        "crypto=sim|real",
        "batch=N",
        "small-commit-quorum",
        "equivocate",
        "view-change",
    ] {
        assert!(listed.stdout.contains(word), "{word}:\n{}", listed.stdout);
    }
    let help = cli(&["sim", "--protocol", "help"]);
    assert_eq!(help.status, 0, "{}", help.stderr);
    assert_eq!(help.stdout, listed.stdout);
}

#[test]
fn a_parameter_given_as_param_or_shorthand_or_run_file_is_the_same_run() {
    let digest = |args: &[&str]| {
        let run = cli(args);
        assert_eq!(run.status, 0, "{args:?}: {}", run.stderr);
        let json: serde_json::Value = serde_json::from_str(run.stdout.trim()).unwrap();
        json["trace_digest"].as_str().unwrap().to_string()
    };
    let base = ["sim", "--protocol", "pbft", "--requests", "5", "--json"];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    let shorthand = digest(&with(&["--batch", "4"]));
    assert_eq!(digest(&with(&["--param", "batch=4"])), shorthand);
    assert_ne!(digest(&base), shorthand, "batching changes the run");
    let dir = scratch_dir("cli", "params_run_file");
    let file = dir.join("run.toml");
    std::fs::write(&file, "protocol = \"pbft\"\n[params]\nbatch = 4\n").unwrap();
    let path = file.to_str().unwrap();
    assert_eq!(
        digest(&["sim", "--config", path, "--requests", "5", "--json"]),
        shorthand
    );
    // A parameter the protocol does not have is refused by name, with what it has.
    let wrong = cli(&["sim", "--protocol", "benaloh", "--param", "batch=4"]);
    assert_eq!(wrong.status, 2);
    assert!(
        wrong
            .stderr
            .contains("benaloh has no parameter `batch` (it has modulus), got --batch 4"),
        "{}",
        wrong.stderr
    );
}
