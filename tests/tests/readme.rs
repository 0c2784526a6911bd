//! Every `console` block of the README is run and compared, so a stale example fails CI.
//!
//! A block is a sequence of `$ rehearsal ARGS` commands, each followed by the output it
//! prints (stdout, then stderr). The blocks run in order, in one scratch directory, so a
//! trace one block writes is there for the next. How output is compared:
//! - a line `...` stands for any number of lines (none included);
//! - `...` inside a line stands for any text (`digest c6444585...`);
//! - wall-clock figures (`wall 0.21ms`) are not compared: they differ from run to run;
//! - a command followed by no output line must print nothing.
//!
//! Arguments naming `examples/...` are read from the repository; every other argument
//! that names a file (`seed-1.jsonl`, `min.jsonl`) lives in the scratch directory, and
//! both prefixes are cut from the output again before comparing.

use rehearsal_tests::{cli, scratch_dir};
use std::path::Path;

/// One `$` command of a block and the lines the README shows for it.
struct Example {
    /// Line of the command in README.md (1-based).
    line: usize,
    command: String,
    expected: Vec<String>,
}

fn console_blocks(readme: &str) -> Vec<Vec<Example>> {
    let mut blocks = Vec::new();
    let mut current: Option<Vec<Example>> = None;
    for (i, line) in readme.lines().enumerate() {
        match &mut current {
            None if line.trim() == "```console" => current = Some(Vec::new()),
            None => {}
            Some(block) if line.trim() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                if let Some(command) = line.strip_prefix("$ ") {
                    block.push(Example {
                        line: i + 1,
                        command: command.to_string(),
                        expected: Vec::new(),
                    });
                } else {
                    let example = block.last_mut().unwrap_or_else(|| {
                        panic!("README.md:{}: output before any `$` command", i + 1)
                    });
                    example.expected.push(line.to_string());
                }
            }
        }
    }
    assert!(
        current.is_none(),
        "README.md: a console block is not closed"
    );
    blocks
}

/// Wall-clock figures vary between runs: `wall 0.21ms` becomes `wall _`.
fn without_wall_times(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(at) = rest.find("wall ") {
        out.push_str(&rest[..at + 5]);
        rest = &rest[at + 5..];
        let figure = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == 'µ'))
            .unwrap_or(rest.len());
        if figure > 0 && rest.as_bytes()[0].is_ascii_digit() {
            out.push('_');
            rest = &rest[figure..];
        }
    }
    out.push_str(rest);
    out
}

/// Whether `text` matches `pattern`, where `...` in the pattern matches any text.
fn line_matches(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split("...").collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

/// Whether the output lines match the expected ones (a `...` line matches any lines).
fn lines_match(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.is_empty(),
        Some((first, rest)) if first.trim() == "..." => {
            (0..=actual.len()).any(|skip| lines_match(rest, &actual[skip..]))
        }
        Some((first, rest)) => match actual.split_first() {
            Some((line, more)) => line_matches(first, line) && lines_match(rest, more),
            None => false,
        },
    }
}

/// The command's arguments, with file names placed in the repository or the scratch dir.
fn arguments(command: &str, repo: &Path, scratch: &Path) -> Vec<String> {
    let mut words = command.split_whitespace();
    assert_eq!(
        words.next(),
        Some("rehearsal"),
        "`{command}`: not a rehearsal command"
    );
    words
        .map(|word| {
            let is_file = [
                ".jsonl",
                ".toml",
                ".scenario",
                ".svg",
                ".csv",
                ".json",
                ".dot",
            ]
            .iter()
            .any(|ext| word.ends_with(ext));
            if word.starts_with("examples/") {
                repo.join(word).display().to_string()
            } else if is_file {
                scratch.join(word).display().to_string()
            } else {
                word.to_string()
            }
        })
        .collect()
}

#[test]
fn every_console_block_of_the_readme_shows_what_the_command_prints() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let repo = repo.canonicalize().unwrap();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let scratch = scratch_dir(env!("CARGO_TARGET_TMPDIR"), "readme-console-blocks");
    let blocks = console_blocks(&readme);
    assert!(
        blocks.len() >= 5,
        "found only {} console blocks",
        blocks.len()
    );
    let mut stale = Vec::new();
    for example in blocks.iter().flatten() {
        // `rehearsal ... > FILE`: stdout goes to FILE (in the scratch dir), and the block
        // shows what the command wrote to stderr.
        let (command, stdout_to) = match example.command.split_once(" > ") {
            Some((command, file)) => (command, Some(scratch.join(file.trim()))),
            None => (example.command.as_str(), None),
        };
        let args = arguments(command, &repo, &scratch);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut run = cli(&args);
        if let Some(file) = stdout_to {
            std::fs::write(&file, std::mem::take(&mut run.stdout)).unwrap();
        }
        let printed = format!("{}{}", run.stdout, run.stderr)
            .replace(&format!("{}/", scratch.display()), "")
            .replace(&format!("{}/", repo.display()), "");
        let actual: Vec<String> = printed.lines().map(without_wall_times).collect();
        let expected: Vec<String> = example
            .expected
            .iter()
            .map(|l| without_wall_times(l))
            .collect();
        if !lines_match(&expected, &actual) {
            stale.push(format!(
                "README.md:{}: `$ {}` shows\n{}\nbut prints\n{}\n",
                example.line,
                example.command,
                example.expected.join("\n"),
                printed.trim_end()
            ));
        }
    }
    assert!(
        stale.is_empty(),
        "stale README examples:\n\n{}",
        stale.join("\n")
    );
}

#[test]
fn the_output_matcher_honours_its_wildcards() {
    let lines = |s: &str| s.lines().map(String::from).collect::<Vec<_>>();
    assert!(lines_match(&lines("a\n...\nd"), &lines("a\nb\nc\nd")));
    assert!(lines_match(&lines("a\n...\nb"), &lines("a\nb")));
    assert!(!lines_match(&lines("a\n...\nd"), &lines("a\nb\nc")));
    assert!(!lines_match(&lines(""), &lines("something")));
    assert!(line_matches("digest c64...", "digest c6444585abc"));
    assert!(line_matches("seed 1 ... ok ...", "seed 1  x  ok y"));
    assert!(!line_matches("seed 2 ...", "seed 1 ok"));
    assert!(!line_matches("abc...abc", "abc"));
    assert_eq!(
        without_wall_times("sim 20ms      wall 0.21ms  digest f"),
        "sim 20ms      wall _  digest f"
    );
}

/// The README's `cargo test` example is the file the author crate (`tests/author`, which
/// depends on `rehearsal-sim-core` and `rehearsal-traces` alone) runs: line for line, but
/// for that file's `//!` lines and its `should_panic` attribute.
#[test]
fn the_readme_test_example_is_the_file_the_author_crate_runs() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let file = std::fs::read_to_string(repo.join("tests/author/tests/order.rs")).unwrap();
    let start = readme
        .find("```rust\n// tests/order.rs")
        .expect("the README has the `cargo test` example")
        + "```rust\n".len();
    let end = start + readme[start..].find("\n```").unwrap();
    let shown: Vec<&str> = readme[start..end].lines().collect();
    let run: Vec<&str> = file
        .lines()
        .filter(|l| !l.starts_with("//!") && !l.starts_with("#[should_panic"))
        .skip_while(|l| l.is_empty())
        .collect();
    assert_eq!(
        shown, run,
        "README.md and tests/author/tests/order.rs differ"
    );
}

/// The author crate needs neither the command line nor the transports: its dependency
/// tree has no clap, indicatif, `rehearsal`, `rehearsal-hardware` or `rehearsal-protocols`.
#[test]
fn the_checking_library_pulls_in_no_command_line_or_transport() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let tree = std::process::Command::new(cargo)
        .current_dir(&repo)
        .args([
            "tree",
            "--offline",
            "-p",
            "rehearsal-author-test",
            "--edges",
            "normal,dev,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .output()
        .expect("cargo runs");
    let out = String::from_utf8_lossy(&tree.stdout);
    assert!(
        tree.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&tree.stderr)
    );
    let names: Vec<&str> = out.lines().filter_map(|l| l.split(' ').next()).collect();
    assert!(names.contains(&"rehearsal-traces"), "{out}");
    assert!(names.contains(&"rehearsal-sim-core"), "{out}");
    for banned in [
        "clap",
        "indicatif",
        "rehearsal",
        "rehearsal-hardware",
        "rehearsal-protocols",
        "rehearsal-net-models",
    ] {
        assert!(!names.contains(&banned), "{banned} in the tree:\n{out}");
    }
}
