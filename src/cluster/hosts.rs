//! Several hosts: where each node of a cluster file runs, how `rehearsal cluster` starts a
//! node on another host (through `--launcher`, by default the user's own `ssh`), and how
//! its files get there and its outputs come back.
//!
//! A node whose `[[node]]` names a `host` runs on that host: its command line is the
//! launcher template's words, with `{host}` replaced, followed by the words of
//! `rehearsal node ...`, each one argument. `ssh` joins those words with spaces and hands
//! them to the remote shell, `ip netns exec` runs them as they are: so every word that
//! reaches a host (paths, the binary) is restricted to characters that mean nothing to a
//! shell, and a word that is not is refused before anything starts.
//!
//! Files travel through the same launcher, with the plain tools of any Linux host
//! (coreutils; no agent of ours). Each host's files go to a directory of its own, `D =
//! DIR/HOST` (`--remote-dir DIR`, by default a fresh `/tmp/rehearsal-node-...`), so that
//! hosts sharing a file system never write one file. Before the nodes start, the launcher
//! runs `install -D -m MODE /dev/stdin PATH` on each host, with the file on the command's
//! stdin, for `D/cluster.toml`, `D/keys/public-keys.txt` and `D/keys/node-ID.key` of that
//! host's nodes only (mode 600), all at once. After the run it fetches each node's outputs
//! with `cat D/outputs-ID.jsonl`, and removes `D` (and a `DIR` of its own choosing) with
//! `rm -rf`, unless `--keep`.

use super::*;

/// The launcher `rehearsal cluster` starts a node on its host with: the user's own ssh,
/// which never prompts (a host that would ask for a password or a host key fails at once).
pub const DEFAULT_LAUNCHER: &str = "ssh -o BatchMode=yes {host}";

/// Longest wait for one file copy, fetch or clean-up command on a host.
pub(super) const HOST_COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// What a launcher's stderr may contribute to an error, at most, in bytes.
const HOST_STDERR_BYTES_MAX: usize = 2000;

/// A launcher template: words separated by spaces (no quoting), one of which holds
/// `{host}`.
#[derive(Debug, Clone)]
pub(super) struct Launcher {
    words: Vec<String>,
}

impl Launcher {
    pub(super) fn parse(template: &str) -> Result<Launcher, CliError> {
        let words: Vec<String> = template.split_whitespace().map(String::from).collect();
        if words.is_empty() {
            return Err(bad(format!(
                "--launcher is empty: give the command that runs a program on a host, with \
                 {{host}} where the host goes (default: `{DEFAULT_LAUNCHER}`)"
            )));
        }
        if !words.iter().any(|word| word.contains("{host}")) {
            return Err(bad(format!(
                "--launcher `{template}` has no {{host}}: write where the node's host goes, \
                 as in `{DEFAULT_LAUNCHER}` or `ip netns exec {{host}}`"
            )));
        }
        Ok(Launcher { words })
    }

    /// The command prefix that runs a program on `host`.
    pub(super) fn prefix(&self, host: &str) -> Vec<String> {
        self.words
            .iter()
            .map(|word| word.replace("{host}", host))
            .collect()
    }

    /// `host` through this launcher, for errors: "host H (through `ssh ... H`)".
    pub(super) fn describe(&self, host: &str) -> String {
        format!("host {host} (through `{}`)", self.prefix(host).join(" "))
    }
}

/// Whether `word` passes through a remote shell unchanged: letters, digits and
/// `_ @ % + = : , . / -`, not empty.
pub(super) fn shell_safe(word: &str) -> bool {
    !word.is_empty()
        && word.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, '_' | '@' | '%' | '+' | '=' | ':' | ',' | '.' | '/' | '-')
        })
}

/// Checks a path that is used on the hosts: `what` names it in the error.
pub(super) fn check_host_path(what: &str, path: &str) -> Result<(), CliError> {
    if shell_safe(path) {
        Ok(())
    } else {
        Err(bad(format!(
            "{what} `{path}`: a path used on the hosts passes through the launcher (ssh hands \
             it to the host's shell), so it may hold letters, digits and `_ @ % + = : , . / -` \
             only"
        )))
    }
}

/// Where a cluster's nodes run and keep their files.
pub(super) struct Placement {
    /// The launcher for nodes with a host.
    pub(super) launcher: Launcher,
    /// The `rehearsal` program on the hosts.
    pub(super) remote_binary: String,
    /// The directory on the hosts that holds the cluster file, keys and outputs: each
    /// host's in a directory of its own inside it (`host_dirs`), or (for
    /// `--print-commands`) all in it.
    pub(super) remote_dir: String,
    /// Whether the launcher chose `remote_dir` (and removes it whole after the run).
    pub(super) remote_dir_ours: bool,
    /// Each host's directory, inside `remote_dir`: its name with characters other than
    /// letters, digits, `.`, `-` and `_` replaced by `_` (and a number after it if two
    /// hosts' names come out the same), so that hosts sharing a file system (NFS, or
    /// namespaces of one machine) never write the same file.
    pub(super) host_dirs: BTreeMap<String, String>,
    /// Where nodes keep their state files (`state-ID.bin`): on the host for a node with a
    /// host, here otherwise; `None`: in the working directory (here) or `remote_dir`.
    pub(super) state_dir: Option<String>,
}

impl Placement {
    /// Gives each host of `config` its directory.
    pub(super) fn assign_host_dirs(&mut self, config: &ClusterConfig) {
        let base = self.remote_dir.trim_end_matches('/').to_string();
        for host in config.nodes.iter().filter_map(|n| n.host.as_ref()) {
            if self.host_dirs.contains_key(host) {
                continue;
            }
            let plain: String = host
                .chars()
                .map(|c| match c {
                    'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' => c,
                    _ => '_',
                })
                .collect();
            let mut dir = format!("{base}/{plain}");
            let mut n = 1;
            while self.host_dirs.values().any(|used| *used == dir) {
                n += 1;
                dir = format!("{base}/{plain}-{n}");
            }
            self.host_dirs.insert(host.clone(), dir);
        }
    }

    /// The directory of `host`'s files: its own, or `remote_dir` if it has none.
    pub(super) fn host_dir(&self, host: &str) -> &str {
        self.host_dirs
            .get(host)
            .map_or(self.remote_dir.trim_end_matches('/'), String::as_str)
    }

    /// The path of file `name` in `host`'s directory.
    pub(super) fn on_host(&self, host: &str, name: &str) -> String {
        format!("{}/{name}", self.host_dir(host))
    }

    /// The state file of node `node`: in --state-dir, its host's directory, or (for a
    /// local node) `local_dir`.
    pub(super) fn state_file(&self, node: &NodeConfig, local_dir: &Path) -> PathBuf {
        let name = format!("state-{}.bin", node.id.0);
        match (&self.state_dir, &node.host) {
            (Some(dir), _) => Path::new(dir).join(name),
            (None, Some(host)) => Path::new(self.host_dir(host)).join(name),
            (None, None) => local_dir.join(name),
        }
    }
}

/// The words of `rehearsal node` for `node`: controlled by the launcher, or (for
/// `--print-commands`) standalone with JSON lines.
#[allow(clippy::too_many_arguments)]
pub(super) fn node_command(
    binary: &str,
    config: &str,
    node: &NodeConfig,
    transport: TransportKind,
    outputs: Option<&str>,
    state: Option<&str>,
    controlled: bool,
) -> Vec<String> {
    let mut words: Vec<String> = [
        binary,
        "node",
        "--config",
        config,
        "--id",
        &node.id.0.to_string(),
        "--transport",
        transport.name(),
    ]
    .map(String::from)
    .to_vec();
    words.push(if controlled { "--controlled" } else { "--json" }.into());
    if let Some(outputs) = outputs {
        words.extend(["--outputs".to_string(), outputs.to_string()]);
    }
    if let Some(state) = state {
        words.extend(["--state".to_string(), state.to_string()]);
    }
    words
}

/// Runs `words` (a launcher prefix and a command), with `input` on its stdin; returns its
/// stdout, or what went wrong: its exit status and stderr, or that it took longer than
/// [`HOST_COMMAND_TIMEOUT`] (it is then killed).
pub(super) fn run_on_host(words: &[String], input: &[u8]) -> Result<Vec<u8>, String> {
    let mut child = Command::new(&words[0])
        .args(&words[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", words[0]))?;
    // Readers and the writer on threads of their own, so that no pipe fills and blocks.
    let mut stdin = child.stdin.take();
    let input = input.to_vec();
    let writer = thread::spawn(move || {
        if let Some(stdin) = &mut stdin {
            let _ = stdin.write_all(&input);
        }
    });
    let read = |pipe: Option<Box<dyn io::Read + Send>>| {
        thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = read(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
    );
    let stderr = read(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn io::Read + Send>),
    );
    let deadline = Instant::now() + HOST_COMMAND_TIMEOUT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => thread::sleep(LAUNCHER_TICK),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let _ = writer.join();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let mut stderr = String::from_utf8_lossy(&stderr).trim().to_string();
    if stderr.len() > HOST_STDERR_BYTES_MAX {
        let mut cut = HOST_STDERR_BYTES_MAX;
        while !stderr.is_char_boundary(cut) {
            cut -= 1;
        }
        stderr.truncate(cut);
        stderr += "...";
    }
    let said = if stderr.is_empty() {
        String::new()
    } else {
        format!(": {stderr}")
    };
    match status {
        Some(status) if status.success() => Ok(stdout),
        Some(status) => Err(format!("`{}` failed ({status}){said}", words.join(" "))),
        None => Err(format!(
            "`{}` did not finish within {HOST_COMMAND_TIMEOUT:?} and was killed{said}",
            words.join(" ")
        )),
    }
}

/// One file the launcher copies to a host: its path on the host, its bytes, and whether
/// only its owner may read it (a private key).
pub(super) struct HostFile {
    pub(super) path: String,
    pub(super) bytes: Vec<u8>,
    pub(super) private: bool,
}

/// Makes `dirs` on the host and copies `files` there, through the launcher: every
/// command at once (each one is a connection to the host, and ssh's take a moment).
pub(super) fn stage_host(
    launcher: &Launcher,
    host: &str,
    dirs: &[String],
    files: &[HostFile],
) -> Result<(), String> {
    let on_host = |command: Vec<&str>, input: &[u8]| {
        let mut words = launcher.prefix(host);
        words.extend(command.iter().map(|w| w.to_string()));
        run_on_host(&words, input)
    };
    thread::scope(|scope| {
        let mut jobs = Vec::new();
        if !dirs.is_empty() {
            let mut mkdir = vec!["mkdir", "-p"];
            mkdir.extend(dirs.iter().map(String::as_str));
            jobs.push(scope.spawn(move || on_host(mkdir, b"")));
        }
        for file in files {
            // `install -D` makes the file's directories, and writes the file with its
            // mode from the start (a private key is never readable by others).
            let mode = if file.private { "600" } else { "644" };
            let install = vec![
                "install",
                "-D",
                "-m",
                mode,
                "/dev/stdin",
                file.path.as_str(),
            ];
            jobs.push(scope.spawn(move || on_host(install, &file.bytes)));
        }
        jobs.into_iter()
            .map(|job| {
                job.join()
                    .unwrap_or_else(|_| Err("a copying thread panicked".into()))
            })
            .collect::<Result<Vec<_>, String>>()
    })
    .map(|_| ())
}

/// The bytes of file `path` on the host.
pub(super) fn fetch_from_host(
    launcher: &Launcher,
    host: &str,
    path: &str,
) -> Result<Vec<u8>, String> {
    let mut words = launcher.prefix(host);
    words.extend(["cat".to_string(), path.to_string()]);
    run_on_host(&words, b"")
}

/// Removes directory `dir` on the host.
pub(super) fn remove_on_host(launcher: &Launcher, host: &str, dir: &str) -> Result<(), String> {
    let mut words = launcher.prefix(host);
    words.extend(["rm", "-rf", dir].map(String::from));
    run_on_host(&words, b"").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launcher_template_replaces_host_in_its_words() {
        let ssh = Launcher::parse(DEFAULT_LAUNCHER).unwrap();
        assert_eq!(
            ssh.prefix("alice@10.0.0.5"),
            ["ssh", "-o", "BatchMode=yes", "alice@10.0.0.5"]
        );
        let netns = Launcher::parse("ip netns exec {host}").unwrap();
        assert_eq!(netns.prefix("ns1"), ["ip", "netns", "exec", "ns1"]);
        let error = Launcher::parse("ssh").unwrap_err().to_string();
        assert!(error.contains("has no {host}"), "{error}");
        assert!(Launcher::parse("  ").is_err());
    }

    #[test]
    fn words_for_a_remote_shell_are_plain() {
        assert!(shell_safe("/tmp/rehearsal-node-12/cluster.toml"));
        assert!(shell_safe("user@host:22"));
        for bad in ["", "a b", "$(x)", "a;b", "it's", "a*"] {
            assert!(!shell_safe(bad), "{bad:?}");
        }
    }

    #[test]
    fn a_host_command_that_fails_says_how_and_one_that_works_returns_its_output() {
        let ok = run_on_host(&["cat".into()], b"through stdin").unwrap();
        assert_eq!(ok, b"through stdin");
        let error = run_on_host(
            &["sh".into(), "-c".into(), "echo nope >&2; exit 3".into()],
            b"",
        )
        .unwrap_err();
        assert!(
            error.contains("exit status: 3") && error.ends_with(": nope"),
            "{error}"
        );
        let error = run_on_host(&["/no/such/launcher".into()], b"").unwrap_err();
        assert!(
            error.starts_with("cannot start `/no/such/launcher`"),
            "{error}"
        );
    }
}
