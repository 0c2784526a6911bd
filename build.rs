//! Records the commit the program is built from, for campaign lines (`rehearsal sim
//! --shard`): shards of one campaign must come from one build of one commit.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=REHEARSAL_COMMIT={commit}");
    // Build again when HEAD moves: to another branch, or to a new commit on it.
    // A path that does not exist counts as changed at every build (cargo's rule), which
    // would rebuild this crate every time: only existing files are watched. (A branch's
    // ref moves from its own file to packed-refs when git packs refs: the file goes, which
    // counts as a change.)
    let watch = |path: String| {
        if std::path::Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    };
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        watch(format!("{dir}/HEAD"));
        // Branches live in the common directory (the same one but in a worktree).
        let common = git(&["rev-parse", "--git-common-dir"]).unwrap_or(dir);
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch(format!("{common}/{branch}"));
        }
        watch(format!("{common}/packed-refs"));
    }
    println!("cargo:rerun-if-changed=build.rs");
}
