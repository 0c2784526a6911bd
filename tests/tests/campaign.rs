//! Campaigns of many seeds: `--jobs N` gives the same results, failing seeds and output
//! whatever N is (so do `explore`'s round-aware searches), and seeds split into shards
//! run as separate processes (by hand, or through GNU `parallel`) merge to exactly what
//! one unsharded run reports. This binary plays `rehearsal` (`sim` and `campaign`
//! arguments) for the processes it starts.

use rehearsal_tests::cli;
use rehearsal_tests::process::{main as run_tests, scratch_named, this_program};
use std::path::Path;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    run_tests(&[
        (
            "sim_seeds_give_the_same_runs_whatever_the_jobs",
            sim_seeds_give_the_same_runs_whatever_the_jobs,
        ),
        (
            "explore_run_by_run_finds_the_same_first_failure_whatever_the_jobs",
            explore_run_by_run_finds_the_same_first_failure_whatever_the_jobs,
        ),
        (
            "round_searches_make_the_same_runs_and_find_the_same_failure_whatever_the_jobs",
            round_searches_make_the_same_runs_and_find_the_same_failure_whatever_the_jobs,
        ),
        (
            "shards_in_separate_processes_merge_to_one_unsharded_run",
            shards_in_separate_processes_merge_to_one_unsharded_run,
        ),
        (
            "shards_through_gnu_parallel_merge_to_one_unsharded_run",
            shards_through_gnu_parallel_merge_to_one_unsharded_run,
        ),
        (
            "a_shard_is_read_from_a_slurm_job_array",
            a_shard_is_read_from_a_slurm_job_array,
        ),
        (
            "merge_refuses_lines_of_other_campaigns_and_bad_lines",
            merge_refuses_lines_of_other_campaigns_and_bad_lines,
        ),
        (
            "explore_refuses_jobs_and_shards_where_they_do_not_apply",
            explore_refuses_jobs_and_shards_where_they_do_not_apply,
        ),
    ])
}

/// HotStuff with a mutant most seeds do not catch (`small-quorum` under an `impatient`
/// replica, as the README's table has it): a campaign with a few failing seeds (23 and
/// 41 of the first 45).
const CAMPAIGN: &[&str] = &[
    "sim",
    "--protocol",
    "hotstuff",
    "--latency",
    "uniform:1ms..20ms",
    "--mutant",
    "small-quorum",
];

fn scenario() -> String {
    format!(
        "{}/../examples/hotstuff/impatient.scenario",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn campaign(extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = CAMPAIGN.iter().map(|s| s.to_string()).collect();
    args.extend(["--scenario".to_string(), scenario()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// A JSON line without the fields that measure wall time.
fn without_wall_times(line: &str) -> serde_json::Value {
    let mut value: serde_json::Value =
        serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    if let Some(fields) = value.as_object_mut() {
        fields.remove("wall_time_ns");
        fields.remove("run_time_ns");
    }
    value
}

fn sim_seeds_give_the_same_runs_whatever_the_jobs() {
    let mut outputs = Vec::new();
    for jobs in ["1", "2", "3"] {
        let args = campaign(&["--seeds", "45", "--json", "--jobs", jobs]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = cli(&args);
        assert_eq!(run.status, 1, "some seeds fail: {}", run.stderr);
        let lines: Vec<serde_json::Value> = run.stdout.lines().map(without_wall_times).collect();
        assert_eq!(lines.len(), 45);
        outputs.push(lines);
    }
    let failing = outputs[0].iter().filter(|l| l["outcome"] != "ok").count();
    assert!(failing > 0 && failing < 45, "{failing} failing seeds");
    assert_eq!(outputs[0], outputs[1], "--jobs 2");
    assert_eq!(outputs[0], outputs[2], "--jobs 3");
    // The seeds come in order.
    let seeds: Vec<u64> = outputs[2]
        .iter()
        .map(|l| l["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, (1..=45).collect::<Vec<_>>());
}

fn explore_run_by_run_finds_the_same_first_failure_whatever_the_jobs() {
    let mut found = Vec::new();
    for jobs in ["1", "3"] {
        let scenario = scenario();
        let run = cli(&[
            "explore",
            "--protocol",
            "hotstuff",
            "--latency",
            "uniform:1ms..20ms",
            "--scenario",
            &scenario,
            "--mutant",
            "small-quorum",
            "--strategy",
            "default",
            "--budget",
            "10m",
            "--json",
            "--jobs",
            jobs,
        ]);
        assert_eq!(run.status, 1, "{}", run.stderr);
        let report = without_wall_times(run.stdout.trim());
        found.push((
            report["seed"].clone(),
            report["runs"].clone(),
            report["violations"].clone(),
        ));
    }
    assert!(found[0].0.as_u64().is_some(), "a failing seed: {found:?}");
    assert_eq!(found[0], found[1]);
}

/// `explore --strategy twins|byzzfuzz|coverage` bounded by runs: with `--jobs 1` and
/// `--jobs 3` the same runs, the same coverage (over time too), the same first failing
/// run, and the same trace and scenario written for it. Short runs (they settle at 5 s
/// and end at 20 s) keep the test quick; each search fails after a few dozen runs, past
/// the first batch of schedules (ByzzFuzz, coverage-guided) or after PBFT refused the
/// first Twins schedule for its leaders.
fn round_searches_make_the_same_runs_and_find_the_same_failure_whatever_the_jobs() {
    let dir = scratch_named("campaign", "rounds");
    let cases: [(&str, &str, &[&str]); 3] = [
        (
            "twins",
            "no-watermarks",
            &["--seed", "3", "--max-states", "60"],
        ),
        ("byzzfuzz", "no-digest-check", &["--max-states", "300"]),
        // Past the failing run: the corpus grows over several batches.
        (
            "coverage",
            "no-digest-check",
            &["--max-states", "60", "--keep-going"],
        ),
    ];
    for (strategy, mutant, extra) in cases {
        let trace = dir.join(format!("{strategy}.jsonl"));
        let mut found = Vec::new();
        for jobs in ["1", "3"] {
            let mut args = vec![
                "explore",
                "--protocol",
                "pbft",
                "--requests",
                "10",
                "--settle",
                "5s",
                "--duration",
                "20s",
                "--mutant",
                mutant,
                "--strategy",
                strategy,
                "--budget",
                "1h",
                "--json",
                "--trace",
                trace.to_str().unwrap(),
                "--no-shrink",
                "--jobs",
                jobs,
            ];
            args.extend_from_slice(extra);
            let run = cli(&args);
            assert_eq!(run.status, 1, "{strategy} --jobs {jobs}: {}", run.stderr);
            let mut report = without_wall_times(run.stdout.trim());
            let fields = report.as_object_mut().unwrap();
            // Which run was slowest, and how fast they went, is the clock's say.
            fields.remove("slowest_run");
            fields.remove("runs_per_second");
            for sample in fields["coverage"].as_array_mut().unwrap() {
                sample.as_object_mut().unwrap().remove("wall_ns");
            }
            let written = (
                std::fs::read_to_string(&trace).unwrap(),
                std::fs::read_to_string(trace.with_extension("scenario")).unwrap(),
            );
            found.push((report, written));
        }
        let (report, (trace_text, scenario)) = &found[0];
        assert_eq!(report["outcome"], "violation", "{strategy}: {report}");
        assert!(report["seed"].is_u64(), "{strategy}: {report}");
        assert!(
            report["runs"].as_u64().unwrap() > 10,
            "{strategy}: {report}"
        );
        assert!(trace_text.lines().count() > 10, "{strategy}: a trace");
        assert!(scenario.contains("@round "), "{strategy}: {scenario}");
        assert_eq!(found[0].0, found[1].0, "{strategy}: --jobs 1 and 3");
        assert!(
            found[0].1 == found[1].1,
            "{strategy}: --jobs 1 and 3 wrote different traces or scenarios"
        );
    }
}

/// Runs `rehearsal ARGS` as a separate process; returns its status and stdout.
fn rehearsal(args: &[String], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(this_program())
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("start the program");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn merged(files: &[&Path]) -> serde_json::Value {
    let mut args = vec![
        "campaign".to_string(),
        "merge".to_string(),
        "--json".to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let (status, stdout, stderr) = rehearsal(&args, &[]);
    assert_eq!(status, 1, "failing seeds: {stderr}");
    without_wall_times(stdout.trim())
}

/// The merged summary of the whole campaign run as one shard, in `dir`.
fn unsharded(dir: &Path) -> serde_json::Value {
    let whole = dir.join("whole.jsonl");
    let (status, stdout, stderr) = rehearsal(&campaign(&["--seeds", "45", "--shard", "0/1"]), &[]);
    assert_eq!(status, 1, "{stderr}");
    std::fs::write(&whole, stdout).unwrap();
    merged(&[&whole])
}

fn shards_in_separate_processes_merge_to_one_unsharded_run() {
    let dir = scratch_named("campaign", "processes");
    let children: Vec<_> = (0..3)
        .map(|i| {
            let file = std::fs::File::create(dir.join(format!("shard-{i}.jsonl"))).unwrap();
            Command::new(this_program())
                .args(campaign(&[
                    "--seeds",
                    "45",
                    "--jobs",
                    "1",
                    "--shard",
                    &format!("{i}/3"),
                ]))
                .stdout(file)
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start a shard")
        })
        .collect();
    for mut child in children {
        // A shard with a failing seed exits 1.
        let status = child.wait().unwrap();
        assert!(matches!(status.code(), Some(0 | 1)), "{status}");
    }
    let files: Vec<_> = (0..3)
        .map(|i| dir.join(format!("shard-{i}.jsonl")))
        .collect();
    let refs: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    let sharded = merged(&refs);
    assert_eq!(sharded["runs"], 45);
    assert!(sharded["violation"].as_u64().unwrap() > 0, "{sharded}");
    assert_eq!(sharded["missing"], serde_json::json!([]));
    assert_eq!(sharded, unsharded(&dir));
    // Two of three shards: the third's seeds are missing, and the merge says so.
    let partial = merged(&refs[..2]);
    let missing: Vec<u64> = partial["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    assert_eq!(missing, (3..=45).step_by(3).collect::<Vec<_>>());
}

fn shards_through_gnu_parallel_merge_to_one_unsharded_run() {
    let test = "shards_through_gnu_parallel_merge_to_one_unsharded_run";
    if Command::new("parallel").arg("--version").output().is_err() {
        return rehearsal_tests::skip(
            test,
            "GNU parallel is not installed (Debian package `parallel`; .ci/run installs it)",
        );
    }
    let dir = scratch_named("campaign", "parallel");
    let mut command: Vec<String> = vec![this_program().display().to_string()];
    command.extend(campaign(&[
        "--seeds", "45", "--jobs", "1", "--shard", "{}/4",
    ]));
    let quoted: Vec<String> = command.iter().map(|a| format!("'{a}'")).collect();
    let status = Command::new("parallel")
        .args(["--will-cite", "--jobs", "2", "--results"])
        .arg(dir.join("out"))
        .arg(format!(
            "{} > {}/shard-{{}}.jsonl 2>/dev/null",
            quoted.join(" "),
            dir.display()
        ))
        .args([":::", "0", "1", "2", "3"])
        .status()
        .expect("run GNU parallel");
    // parallel exits with the number of failed jobs: shards with failing seeds exit 1.
    assert!(status.code().is_some_and(|c| c <= 4), "{status}");
    let files: Vec<_> = (0..4)
        .map(|i| dir.join(format!("shard-{i}.jsonl")))
        .collect();
    let refs: Vec<&Path> = files.iter().map(|f| f.as_path()).collect();
    assert_eq!(merged(&refs), unsharded(&dir));
}

fn a_shard_is_read_from_a_slurm_job_array() {
    // Task 3 of an array 1-4: shard 2 of 4.
    let env = [
        ("SLURM_ARRAY_TASK_ID", "3"),
        ("SLURM_ARRAY_TASK_MIN", "1"),
        ("SLURM_ARRAY_TASK_COUNT", "4"),
    ];
    let (_, stdout, stderr) = rehearsal(&campaign(&["--seeds", "12", "--shard", "auto"]), &env);
    let seeds: Vec<u64> = stdout
        .lines()
        .map(|l| without_wall_times(l)["seed"].as_u64().unwrap())
        .collect();
    assert_eq!(seeds, [3, 7, 11], "{stderr}");
    // Without a job array, `auto` says what it looked for.
    let (status, _, stderr) = rehearsal(&campaign(&["--seeds", "12", "--shard", "auto"]), &[]);
    assert_eq!(status, 2);
    assert!(
        stderr.contains("SLURM_ARRAY_TASK_ID") && stderr.contains("JOB_COMPLETION_INDEX"),
        "{stderr}"
    );
}

fn merge_refuses_lines_of_other_campaigns_and_bad_lines() {
    let dir = scratch_named("campaign", "bad");
    let (_, a, _) = rehearsal(&campaign(&["--seeds", "4", "--shard", "0/2"]), &[]);
    let (_, b, _) = rehearsal(
        &campaign(&["--seeds", "4", "--shard", "1/2", "--loss", "0.1"]),
        &[],
    );
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    };
    let (fa, fb) = (write("a.jsonl", &a), write("b.jsonl", &b));
    let expect_refusal = |files: &[String], needle: &str| {
        let mut args = vec!["campaign".to_string(), "merge".to_string()];
        args.extend(files.iter().cloned());
        let (status, _, stderr) = rehearsal(&args, &[]);
        assert_eq!(status, 2, "{stderr}");
        assert!(stderr.contains(needle), "expected `{needle}` in: {stderr}");
    };
    expect_refusal(
        &[fa.clone(), fb],
        "b.jsonl:1: another campaign: its configuration",
    );
    let garbage = write("garbage.jsonl", &format!("{a}not json\n"));
    expect_refusal(&[garbage], "garbage.jsonl:3: not a campaign line");
    // The same seed with another digest: the runs were not the same program.
    let first = a.lines().next().unwrap();
    let mut forged: serde_json::Value = serde_json::from_str(first).unwrap();
    forged["digest"] = "0000".into();
    let forged = write("forged.jsonl", &format!("{forged}\n"));
    expect_refusal(&[fa, forged], "forged.jsonl:1: seed 1 ran differently");
    expect_refusal(&[write("empty.jsonl", "")], "no campaign lines");
}

fn explore_refuses_jobs_and_shards_where_they_do_not_apply() {
    for (args, needle) in [
        (
            &[
                "explore",
                "--protocol",
                "pbft",
                "--strategy",
                "choices",
                "--jobs",
                "2",
            ][..],
            "--strategy choices searches the state space on one thread",
        ),
        (
            &["explore", "--protocol", "pbft", "--jobs", "2"][..],
            "--strategy bfs searches the state space on one thread",
        ),
        (
            &[
                "explore",
                "--protocol",
                "pbft",
                "--strategy",
                "random",
                "--shard",
                "0/2",
            ][..],
            "--shard",
        ),
        (
            &["sim", "--seeds", "4", "--shard", "2/2"][..],
            "shard 2 of 2 does not exist",
        ),
        (&["sim", "--jobs", "0"][..], "at least 1"),
    ] {
        let run = cli(args);
        assert_eq!(run.status, 2, "{args:?}: {}", run.stdout);
        assert!(
            run.stderr.contains(needle),
            "{args:?}: expected `{needle}` in {}",
            run.stderr
        );
    }
}
