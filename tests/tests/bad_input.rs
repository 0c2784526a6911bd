//! A sweep of bad inputs through the in-process command line: edited and truncated traces
//! (every footer field, every event field given a wrong type or left out), endless and
//! binary devices for every file option, huge widths and latencies, and run-file and
//! network-file values that are only wrong for the run. Every one must end in exit 2 with
//! a message naming the file (and the line where there is one), quickly and in bounded
//! memory.

use rehearsal_tests::{cli, scratch_dir, CliRun};
use rehearsal_traces::{read_trace, write_trace};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest any one input may take. Far above what each needs (milliseconds): it catches
/// hangs and work that grows with a number in the input, not slowness.
const CASE_TIME_MAX: Duration = Duration::from_secs(20);

/// Runs `args`, checks exit 2 and that stderr holds every one of `needles`; returns how
/// long it took.
fn refused(args: &[&str], needles: &[&str]) -> Duration {
    let start = Instant::now();
    let run: CliRun = cli(args);
    let took = start.elapsed();
    assert_eq!(
        run.status, 2,
        "{args:?} should exit 2; stdout: {} stderr: {}",
        run.stdout, run.stderr
    );
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "{args:?}: expected `{needle}` in: {}",
            run.stderr
        );
    }
    assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    assert!(took < CASE_TIME_MAX, "{args:?} took {took:?}");
    took
}

fn text(path: &Path) -> &str {
    path.to_str().expect("scratch paths are UTF-8")
}

/// Peak resident memory of this process, in kB (Linux), to show that no input made it
/// hold gigabytes.
fn peak_rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Traces of real runs that between them hold every kind of event.
fn recorded_traces(dir: &Path) -> Vec<PathBuf> {
    let net = dir.join("lossy.toml");
    std::fs::write(&net, "loss = 0.1\ncorrupt = 0.2\n").unwrap();
    let scenario = dir.join("faults.scenario");
    std::fs::write(&scenario, "@0.005 isolate 1\n@0.5 heal\n@0.02 crash 2\n").unwrap();
    let runs: [(&str, Vec<&str>); 3] = [
        (
            "lossy.jsonl",
            // Timed Benaloh sends each message once, so its traces stay short: every case
            // below re-reads a whole trace, once per field of every line.
            vec![
                "--protocol",
                "benaloh-timed",
                "--nodes",
                "3",
                "--net",
                text(&net),
                "--seed",
                "1",
            ],
        ),
        (
            "timed.jsonl",
            vec!["--protocol", "benaloh-timed", "--nodes", "3"],
        ),
        (
            "faults.jsonl",
            vec![
                "--protocol",
                "benaloh-timed",
                "--nodes",
                "3",
                "--scenario",
                text(&scenario),
            ],
        ),
    ];
    let mut kinds = std::collections::BTreeSet::new();
    let mut paths = Vec::new();
    for (name, args) in runs {
        let path = dir.join(name);
        let mut all = vec!["sim", "--trace", text(&path)];
        all.extend(args);
        let run = cli(&all);
        assert!(run.status <= 1, "{all:?}: {}", run.stderr);
        for event in read_trace(&path).unwrap().events {
            kinds.insert(event.kind.name());
        }
        paths.push(path);
    }
    for kind in [
        "start", "send", "deliver", "drop", "timer", "output", "annotate",
    ] {
        assert!(kinds.contains(kind), "no `{kind}` event in {kinds:?}");
    }
    assert!(
        kinds.contains("violation") || kinds.contains("fault"),
        "{kinds:?}"
    );
    paths
}

/// Values of the wrong type for a field that holds `value`.
fn wrong_values(value: &Value) -> Vec<Value> {
    match value {
        Value::Number(_) => vec![
            Value::from("5"),
            Value::from(-1),
            Value::from(1.5),
            Value::Null,
        ],
        Value::String(_) => vec![Value::from(5), Value::Array(vec![Value::from("x")])],
        Value::Array(_) => vec![Value::from("a"), Value::Array(vec![Value::from(1)])],
        _ => vec![],
    }
}

fn lines_with(lines: &[String], index: usize, line: &str) -> String {
    let mut out = lines.to_vec();
    out[index] = line.to_string();
    out.join("\n") + "\n"
}

#[test]
fn edited_and_truncated_traces_exit_2_naming_file_and_line() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "bad_input_traces");
    let mut cases = 0usize;
    let mut slowest = Duration::ZERO;
    let mut check = |path: &Path, content: &[u8], needles: &[&str]| {
        // A new file each time: rewriting one in place makes ext4 flush it to disk at every
        // close (auto_da_alloc), which turns a second of work into twenty.
        let _ = std::fs::remove_file(path);
        std::fs::write(path, content).unwrap();
        let mut all = vec![text(path)];
        all.extend_from_slice(needles);
        slowest = slowest.max(refused(&["show", text(path)], &all));
        cases += 1;
    };
    let bad = dir.join("edited.jsonl");
    for trace in recorded_traces(&dir) {
        let original = std::fs::read_to_string(&trace).unwrap();
        let lines: Vec<String> = original.lines().map(str::to_string).collect();
        let footer_index = lines.len() - 1;
        let footer_line = format!("line {}:", lines.len());

        // Cut at every line end and in the middle of every line.
        let mut offset = 0;
        for line in &lines {
            for cut in [offset + line.len() / 2, offset + line.len()] {
                check(&bad, &original.as_bytes()[..cut], &[]);
            }
            offset += line.len() + 1;
        }

        // Every event field of every line: a wrong type, missing, and an unknown one.
        for (index, line) in lines.iter().enumerate().take(footer_index).skip(1) {
            let line_no = format!("line {}:", index + 1);
            let Value::Object(fields) = serde_json::from_str(line).unwrap() else {
                panic!("events are objects");
            };
            for (name, value) in &fields {
                let mut wrong = wrong_values(value);
                if name == "kind" {
                    wrong.push(Value::from("bogus"));
                }
                for bad_value in wrong {
                    let mut edited = fields.clone();
                    edited.insert(name.clone(), bad_value);
                    let edited = serde_json::to_string(&edited).unwrap();
                    check(
                        &bad,
                        lines_with(&lines, index, &edited).as_bytes(),
                        &[&line_no],
                    );
                }
                let mut missing = fields.clone();
                missing.remove(name);
                let missing = serde_json::to_string(&missing).unwrap();
                check(
                    &bad,
                    lines_with(&lines, index, &missing).as_bytes(),
                    &[&line_no],
                );
            }
            let mut extra = fields.clone();
            extra.insert("extra".into(), Value::from(1));
            let extra = serde_json::to_string(&extra).unwrap();
            check(
                &bad,
                lines_with(&lines, index, &extra).as_bytes(),
                &[&line_no, "unknown field"],
            );
            // A line that is not JSON at all.
            check(
                &bad,
                lines_with(&lines, index, "{\"seq\":").as_bytes(),
                &[&line_no],
            );
        }

        // Every footer field: another value of its type, a wrong type, left out.
        let Value::Object(mut footer_line_fields) =
            serde_json::from_str(&lines[footer_index]).unwrap()
        else {
            panic!("the footer is an object");
        };
        let Some(Value::Object(footer)) = footer_line_fields.remove("end") else {
            panic!("the footer is under `end`");
        };
        for (name, value) in &footer {
            let other = match value {
                Value::String(s) if s == "ok" => Value::from("violation"),
                Value::String(s) if s.len() == 64 => {
                    let flipped = if s.starts_with('0') { "1" } else { "0" };
                    Value::from(format!("{flipped}{}", &s[1..]))
                }
                Value::String(_) => Value::from("ok"),
                Value::Number(n) => Value::from(n.as_u64().unwrap() + 1),
                Value::Array(a) if a.is_empty() => Value::Array(vec![Value::from("x: y")]),
                Value::Array(_) => Value::Array(vec![]),
                _ => unreachable!("footer fields are strings, numbers and arrays"),
            };
            let mut edits = wrong_values(value);
            edits.push(other);
            for edit in edits {
                let mut edited = footer.clone();
                edited.insert(name.clone(), edit);
                let line = serde_json::json!({ "end": edited }).to_string();
                check(
                    &bad,
                    lines_with(&lines, footer_index, &line).as_bytes(),
                    &[&footer_line],
                );
            }
            let mut missing = footer.clone();
            missing.remove(name);
            let line = serde_json::json!({ "end": missing }).to_string();
            check(
                &bad,
                lines_with(&lines, footer_index, &line).as_bytes(),
                &[&footer_line],
            );
        }
        // The edits of the report: outcome `ok` and no violations, with a fresh checksum
        // too (the footer is then checked against the events).
        let recorded = read_trace(&trace).unwrap();
        if recorded.footer.outcome != "ok" {
            let mut footer = recorded.footer.clone();
            footer.outcome = "ok".into();
            footer.violations.clear();
            let mut bytes = Vec::new();
            write_trace(&mut bytes, &recorded.header, &recorded.events, &footer).unwrap();
            check(&bad, &bytes, &[&footer_line]);
        }
    }
    eprintln!("{cases} edited traces refused, slowest {slowest:?}");
    assert!(cases > 2_000, "{cases}");
}

#[test]
fn messages_sharing_an_id_are_refused_before_the_follower_sees_them() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "bad_input_ids");
    let good = dir.join("good.jsonl");
    let run = cli(&[
        "sim",
        "--nodes",
        "3",
        "--loss",
        "0.1",
        "--trace",
        text(&good),
    ]);
    assert!(run.status <= 1, "{}", run.stderr);
    let recorded = read_trace(&good).unwrap();
    let sends: Vec<usize> = recorded
        .events
        .iter()
        .enumerate()
        .filter(|(_, e)| e.kind.name() == "send")
        .map(|(i, _)| i)
        .collect();
    assert!(sends.len() >= 2);
    let write = |name: &str, events: &[rehearsal_sim_core::TraceEvent]| {
        let path = dir.join(name);
        let mut file = std::fs::File::create(&path).unwrap();
        write_trace(&mut file, &recorded.header, events, &recorded.footer).unwrap();
        path
    };
    // The second send takes the first one's id (with a fresh checksum).
    let mut events = recorded.events.clone();
    let first_id = sends[0] as u64;
    if let rehearsal_sim_core::EventKind::Send { id, .. } = &mut events[sends[1]].kind {
        *id = first_id;
    }
    let twice = write("twice.jsonl", &events);
    let line = format!("line {}:", sends[1] + 2);
    // These panicked in the schedule follower.
    for args in [
        vec!["replay", text(&twice), "--follow-trace"],
        vec!["shrink", text(&twice), "-o", text(&dir.join("min.jsonl"))],
        vec!["replay", text(&twice)],
        vec!["show", text(&twice)],
    ] {
        refused(&args, &[text(&twice), &line, "id"]);
    }
    // A delivery of a message never sent.
    let deliver = recorded
        .events
        .iter()
        .position(|e| e.kind.name() == "deliver")
        .unwrap();
    let mut events = recorded.events.clone();
    if let rehearsal_sim_core::EventKind::Deliver { id, .. } = &mut events[deliver].kind {
        *id = 1_000_000;
    }
    let ghost = write("ghost.jsonl", &events);
    // A node number far beyond any run: a lane or track per node would never end.
    let mut events = recorded.events.clone();
    events[0].node = rehearsal_sim_core::NodeId(u32::MAX);
    let far = write("far.jsonl", &events);
    for args in [
        vec!["plot", text(&far), "-o", text(&dir.join("far.svg"))],
        vec!["export", text(&far), "--format", "chrome"],
        vec!["export", text(&far), "--format", "dot"],
        vec!["export", text(&far), "--format", "mermaid"],
    ] {
        refused(&args, &[text(&far), "line 2:", "field `node`"]);
    }
    let line = format!("line {}:", deliver + 2);
    for args in [
        vec!["replay", text(&ghost), "--follow-trace"],
        vec!["shrink", text(&ghost), "-o", text(&dir.join("min.jsonl"))],
    ] {
        refused(&args, &[text(&ghost), &line, "no earlier `send`"]);
    }
}

#[test]
fn endless_and_binary_devices_are_refused_for_every_file_option() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "bad_input_devices");
    let out = dir.join("out");
    let mut cases = 0;
    for device in ["/dev/zero", "/dev/urandom"] {
        if !Path::new(device).exists() {
            return;
        }
        // Files named by files.
        let run_net = dir.join("run-net.toml");
        std::fs::write(&run_net, format!("net = \"{device}\"\n")).unwrap();
        let run_scenario = dir.join("run-scenario.toml");
        std::fs::write(&run_scenario, format!("scenario = \"{device}\"\n")).unwrap();
        let net_csv = dir.join("net-csv.toml");
        std::fs::write(&net_csv, format!("matrix_csv = \"{device}\"\n")).unwrap();
        let commands: Vec<Vec<&str>> = vec![
            vec!["sim", "--config", device],
            vec!["sim", "--net", device],
            vec!["sim", "--scenario", device],
            vec!["sim", "--config", text(&run_net)],
            vec!["sim", "--config", text(&run_scenario)],
            vec!["sim", "--net", text(&net_csv)],
            vec!["replay", device],
            vec!["replay", device, "--follow-trace"],
            vec!["shrink", device, "-o", text(&out)],
            vec!["export", device, "--format", "chrome"],
            vec!["show", device],
            vec!["plot", device, "-o", text(&out)],
            vec!["node", "--config", device, "--id", "0"],
        ];
        for args in &commands {
            refused(args, &[device]);
            cases += 1;
        }
    }
    // A trace line of 2 GB with no newline is not buffered whole: a sparse file.
    let long = dir.join("long.jsonl");
    let file = std::fs::File::create(&long).unwrap();
    file.set_len(2 << 30).unwrap();
    drop(file);
    refused(
        &["show", text(&long)],
        &[text(&long), "line 1", "longer than"],
    );
    std::fs::remove_file(&long).unwrap();
    eprintln!("{cases} device inputs refused");
    if let Some(kb) = peak_rss_kb() {
        eprintln!("peak resident memory {kb} kB");
        assert!(kb < 1 << 20, "peak resident memory {kb} kB");
    }
}

#[test]
fn plots_are_bounded_whatever_the_width_and_time_span() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "bad_input_plot");
    let trace = dir.join("huge.jsonl");
    let run = cli(&[
        "sim",
        "--latency",
        "constant:5124095h",
        "--duration",
        "18446744073709551615ns",
        "--trace",
        text(&trace),
    ]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    let svg = dir.join("huge.svg");
    let start = Instant::now();
    let run = cli(&["plot", text(&trace), "-o", text(&svg)]);
    assert_eq!(run.status, 0, "{}", run.stderr);
    assert!(start.elapsed() < CASE_TIME_MAX);
    for width in ["0", "299", "20001", "10000000", "1000000000", "wide"] {
        refused(
            &["plot", text(&trace), "-o", text(&svg), "--width", width],
            &["--width", width],
        );
    }
    for width in ["300", "20000"] {
        let run = cli(&["plot", text(&trace), "-o", text(&svg), "--width", width]);
        assert_eq!(run.status, 0, "{}", run.stderr);
        let size = std::fs::metadata(&svg).unwrap().len();
        assert!(size < 1 << 20, "{width}: {size} bytes");
    }
}

#[test]
fn values_wrong_for_the_run_name_file_line_and_column() {
    let dir = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "bad_input_values");
    let run_files: [(&str, &str, &str); 12] = [
        ("nodes = 0\n", ":1:9:", "got nodes = 0"),
        ("protocol = \"pbft\"\nnodes = 5\n", ":2:9:", "got nodes = 5"),
        (
            "protocol = \"unreplicated\"\nclients = 0\n",
            ":2:11:",
            "clients = 0",
        ),
        ("seeds = 0\n", ":1:9:", "seeds = 0"),
        (
            "seed = 18446744073709551615\nseeds = 2\n",
            ":2:9:",
            "largest seed",
        ),
        ("protocol = \"pbft\"\nbatch = 0\n", ":2:9:", "batch = 0"),
        (
            "protocol = \"pbft\"\ncrypto = \"rsa\"\n",
            ":2:10:",
            "crypto = rsa",
        ),
        (
            "crypto = \"real\"\n",
            ":1:10:",
            "benaloh has no parameter `crypto`",
        ),
        ("loss = 2.0\n", ":1:8:", "loss = 2"),
        ("duration = \"soon\"\n", ":1:12:", "duration"),
        (
            "nodes = 3\n[network]\nmatrix = [[0, 1], [1, 0]]\n",
            ":3:10:",
            "2x2",
        ),
        (
            "nodes = 3\n[[network.links]]\nto = [7]\nloss = 0.5\n",
            ":3:6:",
            "names node 7",
        ),
    ];
    for (i, (content, place, what)) in run_files.iter().enumerate() {
        let path = dir.join(format!("run{i}.toml"));
        std::fs::write(&path, content).unwrap();
        let place = format!("{}{place}", path.display());
        refused(&["sim", "--config", text(&path)], &[&place, what]);
    }
    // A flag is named as a flag.
    refused(&["sim", "--nodes", "0"], &["got --nodes 0"]);
    let net_files: [(&str, &str, &str); 3] = [
        ("matrix = [[0, 1], [1, 0]]\n", ":1:10:", "2x2"),
        (
            "[[links]]\nfrom = [0]\nto = [9]\nloss = 0.5\n",
            ":3:6:",
            "names node 9",
        ),
        (
            "\n[[links]]\nfrom = [8]\nloss = 0.5\n",
            ":3:8:",
            "names node 8",
        ),
    ];
    for (i, (content, place, what)) in net_files.iter().enumerate() {
        let path = dir.join(format!("net{i}.toml"));
        std::fs::write(&path, content).unwrap();
        let place = format!("{}{place}", path.display());
        refused(&["sim", "--net", text(&path)], &[&place, what]);
    }
}
