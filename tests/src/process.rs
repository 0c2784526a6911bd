//! For test binaries that launch `rehearsal` processes (`harness = false`): Cargo does
//! not build the `rehearsal` program for this package's tests, so such a binary plays it.
//! Run with `node ...`, `cluster ...`, `sim ...`, `campaign ...` or `bench ...` arguments it
//! runs that command, through the same library functions the `rehearsal` binary calls; run
//! otherwise it runs its tests one at a time and prints the usual `test result:` line. An
//! argument that is not a flag filters tests by name.

use clap::{Parser, Subcommand};
use rehearsal::cluster::{self, ClusterArgs, NodeArgs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

#[derive(Parser)]
struct Program {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    Node(NodeArgs),
    Cluster(Box<ClusterArgs>),
}

/// `rehearsal cluster WORDS` as the command line parses them, with `--json`, and this
/// binary as the nodes' program (unless the words name another).
pub fn cluster_args_of(words: &[&str]) -> ClusterArgs {
    let argv = ["rehearsal", "cluster"]
        .into_iter()
        .chain(words.iter().copied());
    let program = Program::try_parse_from(argv).unwrap_or_else(|e| panic!("{words:?}: {e}"));
    let Commands::Cluster(mut args) = program.command else {
        unreachable!("`cluster` parses as the cluster command")
    };
    args.json = true;
    args.node_binary.get_or_insert_with(this_program);
    *args
}

/// Runs `rehearsal cluster` in this process; returns the status, the JSON report and
/// what it wrote to stderr.
pub fn run_cluster(args: &ClusterArgs) -> (u8, serde_json::Value, String) {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let status = cluster::cluster(args, &mut out, &mut err).expect("the arguments are valid");
    let stdout = String::from_utf8_lossy(&out).into_owned();
    let stderr = String::from_utf8_lossy(&err).into_owned();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not one JSON object ({e}):\n{stdout}\nstderr:\n{stderr}"));
    (status, report, stderr)
}

/// The ids of the live processes whose parent is `parent` (from `/proc`).
pub fn children_of(parent: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let rest = stat.rsplit(')').next()?.to_string();
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// A fresh directory for one test of this process, under the system's temporary directory.
pub fn scratch_named(kind: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("rehearsal-{kind}-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The running test binary, which plays `rehearsal`.
pub fn this_program() -> PathBuf {
    std::env::current_exe().expect("the test binary knows its path")
}

/// The `main` of such a test binary: plays `rehearsal`, or runs `tests`.
pub fn main(tests: &[(&str, fn())]) -> ExitCode {
    main_with_ignored(tests, &[])
}

/// A test that does not run unless asked for (`--ignored` or `--include-ignored`, as
/// libtest's `#[ignore = "why"]`): its name, why it is ignored, and the test.
pub type IgnoredTest<'a> = (&'a str, &'a str, fn());

/// [`main`], with `ignored` tests besides `tests`: listed, counted as ignored, and run
/// only with `--ignored` (alone) or `--include-ignored` (with the others).
pub fn main_with_ignored(tests: &[(&str, fn())], ignored: &[IgnoredTest<'_>]) -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if matches!(args.first().map(String::as_str), Some("node" | "cluster")) {
        return play_rehearsal();
    }
    if matches!(
        args.first().map(String::as_str),
        Some("sim" | "campaign" | "bench")
    ) {
        // The whole command line, as the `rehearsal` binary runs it.
        let argv = std::iter::once("rehearsal".to_string()).chain(args);
        let status = rehearsal::cli::run(argv, &mut std::io::stdout(), &mut std::io::stderr());
        return ExitCode::from(status);
    }
    if args.iter().any(|a| a == "--list") {
        for (name, _) in tests {
            println!("{name}: test");
        }
        for (name, _, _) in ignored {
            println!("{name}: test");
        }
        return ExitCode::SUCCESS;
    }
    let only_ignored = args.iter().any(|a| a == "--ignored");
    let with_ignored = only_ignored || args.iter().any(|a| a == "--include-ignored");
    // Cargo passes libtest's flags (--nocapture, --test-threads, ...): ignore them, keep
    // name filters.
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let begun = Instant::now();
    let wanted =
        |name: &str| filters.is_empty() || filters.iter().any(|f| name.contains(f.as_str()));
    let mut selected: Vec<(&str, fn())> = Vec::new();
    if !only_ignored {
        selected.extend(tests.iter().copied().filter(|(name, _)| wanted(name)));
    }
    let mut skipped = Vec::new();
    for &(name, why, test) in ignored.iter().filter(|(name, _, _)| wanted(name)) {
        if with_ignored {
            selected.push((name, test));
        } else {
            skipped.push((name, why));
        }
    }
    let total = tests.len() + ignored.len();
    println!("\nrunning {} tests", selected.len() + skipped.len());
    for (name, why) in &skipped {
        println!("test {name} ... ignored, {why}");
    }
    let skipped = skipped.len();
    let mut failed = Vec::new();
    // One at a time: each test starts processes, and the machine may have two cores.
    for (name, test) in &selected {
        let outcome = std::panic::catch_unwind(test);
        println!(
            "test {name} ... {}",
            if outcome.is_ok() { "ok" } else { "FAILED" }
        );
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    if !failed.is_empty() {
        println!("\nfailures:");
        for name in &failed {
            println!("    {name}");
        }
    }
    println!(
        "\ntest result: {}. {} passed; {} failed; {skipped} ignored; 0 measured; {} filtered out; finished in {:.2}s\n",
        if failed.is_empty() { "ok" } else { "FAILED" },
        selected.len() - failed.len(),
        failed.len(),
        total - selected.len() - skipped,
        begun.elapsed().as_secs_f64()
    );
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `node` or `cluster` as the `rehearsal` program would.
fn play_rehearsal() -> ExitCode {
    let program = match Program::try_parse() {
        Ok(program) => program,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    let mut out = std::io::stdout();
    let mut err = std::io::stderr();
    let result = match program.command {
        Commands::Node(args) => cluster::node(&args, &mut out, &mut err),
        Commands::Cluster(mut args) => {
            args.node_binary.get_or_insert_with(this_program);
            cluster::cluster(&args, &mut out, &mut err)
        }
    };
    match result {
        Ok(status) => ExitCode::from(status),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
