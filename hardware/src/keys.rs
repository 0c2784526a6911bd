//! Key files of a real cluster: one private key file per node, and one list of every
//! node's public key. `rehearsal keygen` writes them; `rehearsal node` reads its own
//! private key and the list, and nothing else, so a node process never holds another
//! node's private key.
//!
//! Both are text, Ed25519 keys in hex, one `ID HEX` line per key, `#` comments and blank
//! lines ignored:
//!
//! ```text
//! # node-3.key: the Ed25519 private key (RFC 8032 seed) of node 3; keep it secret
//! 3 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08
//! ```
//!
//! ```text
//! # public-keys.txt: the Ed25519 public key of every node
//! 0 3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29
//! 1 ...
//! ```
//!
//! A key directory holds `node-ID.key` for each node (mode 0600) and `public-keys.txt`; a
//! cluster file points at it with `keys = "DIR"` (see [`crate::cluster`]). On a deployment
//! each machine's directory holds only its own node's key file and the public list.
//! Every error names the file, and the line where one is at fault.
//!
//! ```
//! use rehearsal_hardware::keys::{self, KeyDir};
//! use rehearsal_sim_core::NodeId;
//!
//! let dir = std::env::temp_dir().join(format!("keys-doc-{}", std::process::id()));
//! let written = keys::generate(&dir, 3).unwrap();
//! assert_eq!(written.private.len(), 3);
//! let keys = KeyDir::new(&dir).node_keys(NodeId(1), 3).unwrap();
//! assert_eq!((keys.me, keys.public.len()), (NodeId(1), 3));
//! // Only node 1's private key was read: the others' files may be elsewhere.
//! std::fs::remove_file(dir.join("node-0.key")).unwrap();
//! assert!(KeyDir::new(&dir).node_keys(NodeId(1), 3).is_ok());
//! let error = KeyDir::new(&dir).node_keys(NodeId(0), 3).unwrap_err();
//! assert!(error.to_string().contains("node-0.key: cannot read"), "{error}");
//! std::fs::remove_dir_all(&dir).unwrap();
//! ```

use crate::cluster::{ClusterConfig, ClusterKeys};
use ed25519_dalek::{SigningKey, VerifyingKey};
use rehearsal_sim_core::protocol::{KeyNeeds, NodeKeys, PrivateKey};
use rehearsal_sim_core::NodeId;
use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The name of the public-key list in a key directory.
pub const PUBLIC_KEYS_FILE: &str = "public-keys.txt";

/// Largest key file read, in bytes: a list of [`crate::cluster::CLUSTER_NODES_MAX`] keys
/// takes under 1 MiB, and a wrong path (a log, a device) is refused early.
pub const KEY_FILE_BYTES_MAX: u64 = 1 << 20;

/// The name of node `id`'s private key file in a key directory: `node-ID.key`.
pub fn private_key_file(id: NodeId) -> String {
    format!("node-{}.key", id.0)
}

/// A problem with a key file: `file:line: what is wrong`, or `file: what is wrong`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct KeyFileError {
    /// The file.
    pub path: PathBuf,
    /// The line at fault, from 1, if one is.
    pub line: Option<usize>,
    /// What is wrong, and what to do about it.
    pub message: String,
}

impl fmt::Display for KeyFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}", self.message)
    }
}

fn error(path: &Path, line: Option<usize>, message: impl Into<String>) -> KeyFileError {
    KeyFileError {
        path: path.to_path_buf(),
        line,
        message: message.into(),
    }
}

/// One `ID HEX` line of a key file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KeyLine {
    id: NodeId,
    key: [u8; 32],
    line: usize,
}

/// The `ID HEX` lines of `text` (comments and blank lines skipped).
fn key_lines(text: &str, path: &Path) -> Result<Vec<KeyLine>, KeyFileError> {
    let mut lines = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split('#').next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        let fields: Vec<&str> = content.split_whitespace().collect();
        let [id, hex] = fields[..] else {
            return Err(error(
                path,
                Some(line),
                format!("expected `ID HEX` (a node id and its key in hex), got `{content}`"),
            ));
        };
        let id: u32 = id.parse().map_err(|_| {
            error(
                path,
                Some(line),
                format!("`{id}` is not a node id (a number from 0)"),
            )
        })?;
        let key = parse_hex_key(hex).map_err(|why| error(path, Some(line), why))?;
        lines.push(KeyLine {
            id: NodeId(id),
            key,
            line,
        });
    }
    Ok(lines)
}

fn parse_hex_key(hex: &str) -> Result<[u8; 32], String> {
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!(
            "the key `{hex}` is not hex (digits 0-9 and letters a-f only)"
        ));
    }
    if hex.len() != 64 {
        return Err(format!(
            "the key has {} hex digits, an Ed25519 key has 64 (32 bytes)",
            hex.len()
        ));
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16)
            .map_err(|_| format!("the key `{hex}` is not hex"))?;
    }
    Ok(key)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The text of the file at `path`, at most [`KEY_FILE_BYTES_MAX`] bytes of UTF-8.
fn read_text(path: &Path, what: &str) -> Result<String, KeyFileError> {
    let file = fs::File::open(path).map_err(|e| {
        error(
            path,
            None,
            format!("cannot read {what}: {e} (`rehearsal keygen` writes key files)"),
        )
    })?;
    let mut bytes = Vec::new();
    file.take(KEY_FILE_BYTES_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(path, None, format!("cannot read {what}: {e}")))?;
    if bytes.len() as u64 > KEY_FILE_BYTES_MAX {
        return Err(error(
            path,
            None,
            format!("{what} is larger than {KEY_FILE_BYTES_MAX} bytes: is this the right file?"),
        ));
    }
    String::from_utf8(bytes).map_err(|_| error(path, None, format!("{what} is not UTF-8 text")))
}

/// Parses a private key file: exactly one `ID HEX` line.
pub fn parse_private_key(text: &str, path: &Path) -> Result<(NodeId, PrivateKey), KeyFileError> {
    let mut lines = key_lines(text, path)?;
    match lines.len() {
        1 => {
            let only = lines.remove(0);
            Ok((only.id, PrivateKey(only.key)))
        }
        0 => Err(error(
            path,
            None,
            "the file holds no key: a private key file has one `ID HEX` line",
        )),
        _ => Err(error(
            path,
            Some(lines[1].line),
            "a second key: a private key file holds one node's key only",
        )),
    }
}

/// Parses a public-key list: one `ID HEX` line per node, ids `0..holders` each once, each
/// a point of the curve. Returns the keys by id.
pub fn parse_public_keys(
    text: &str,
    path: &Path,
    holders: u32,
) -> Result<Vec<[u8; 32]>, KeyFileError> {
    let mut keys: Vec<Option<[u8; 32]>> = vec![None; holders as usize];
    let mut lines_of: Vec<usize> = vec![0; holders as usize];
    for line in key_lines(text, path)? {
        let Some(slot) = keys.get_mut(line.id.index()) else {
            return Err(error(
                path,
                Some(line.line),
                format!(
                    "node {} has no key in this cluster: the keyed nodes are 0 to {} (is this \
                     the list of another cluster?)",
                    line.id.0,
                    holders.saturating_sub(1)
                ),
            ));
        };
        if slot.is_some() {
            return Err(error(
                path,
                Some(line.line),
                format!(
                    "node {} is listed twice (first at line {})",
                    line.id.0,
                    lines_of[line.id.index()]
                ),
            ));
        }
        if VerifyingKey::from_bytes(&line.key).is_err() {
            return Err(error(
                path,
                Some(line.line),
                format!("node {}'s key is not an Ed25519 public key", line.id.0),
            ));
        }
        *slot = Some(line.key);
        lines_of[line.id.index()] = line.line;
    }
    keys.iter()
        .enumerate()
        .map(|(i, key)| {
            key.ok_or_else(|| {
                error(
                    path,
                    None,
                    format!(
                        "node {i} has no public key: the list needs one line per node 0 to {}",
                        holders.saturating_sub(1)
                    ),
                )
            })
        })
        .collect()
}

/// The Ed25519 public key of a private key.
pub fn public_key_of(private: &PrivateKey) -> [u8; 32] {
    SigningKey::from_bytes(&private.0)
        .verifying_key()
        .to_bytes()
}

/// A key directory as `rehearsal keygen` writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyDir {
    dir: PathBuf,
}

impl KeyDir {
    /// The key directory at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> KeyDir {
        KeyDir { dir: dir.into() }
    }

    /// Where node `id`'s private key is.
    pub fn private_key_path(&self, id: NodeId) -> PathBuf {
        self.dir.join(private_key_file(id))
    }

    /// Where the public-key list is.
    pub fn public_keys_path(&self) -> PathBuf {
        self.dir.join(PUBLIC_KEYS_FILE)
    }

    /// Node `me`'s keys: its own private key (and no other's) and the public keys of nodes
    /// `0..holders`. Refused: a key file readable by others (on Unix), a private key file
    /// of another node, and a private key that does not match the public key listed for
    /// `me`.
    pub fn node_keys(&self, me: NodeId, holders: u32) -> Result<NodeKeys, KeyFileError> {
        let private_path = self.private_key_path(me);
        let text = read_text(&private_path, "the private key file")?;
        check_private_mode(&private_path)?;
        let (id, private) = parse_private_key(&text, &private_path)?;
        if id != me {
            return Err(error(
                &private_path,
                None,
                format!("this is node {}'s private key, not node {}'s", id.0, me.0),
            ));
        }
        let public_path = self.public_keys_path();
        let public_text = read_text(&public_path, "the public-key list")?;
        let public = parse_public_keys(&public_text, &public_path, holders)?;
        let listed = public.get(me.index()).ok_or_else(|| {
            error(
                &public_path,
                None,
                format!(
                    "node {} has no public key: the list is for nodes 0 to {}",
                    me.0,
                    holders.saturating_sub(1)
                ),
            )
        })?;
        if public_key_of(&private) != *listed {
            let line = key_lines(&public_text, &public_path)?
                .into_iter()
                .find(|l| l.id == me)
                .map(|l| l.line);
            return Err(error(
                &public_path,
                line,
                format!(
                    "node {}'s public key does not match its private key in {}: the two \
                     files come from different `rehearsal keygen` runs",
                    me.0,
                    private_path.display()
                ),
            ));
        }
        Ok(NodeKeys {
            me,
            private,
            public,
        })
    }
}

/// Refuses a private key file that others than its owner may read (as ssh does).
#[cfg(unix)]
fn check_private_mode(path: &Path) -> Result<(), KeyFileError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = fs::metadata(path)
        .map_err(|e| error(path, None, format!("cannot read the private key file: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(error(
            path,
            None,
            format!(
                "the private key file may be read by others (mode {:04o}): make it the \
                 owner's alone with `chmod 600 {}`",
                mode & 0o7777,
                path.display()
            ),
        ));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private_mode(_path: &Path) -> Result<(), KeyFileError> {
    Ok(())
}

/// Node `id`'s own keys in `cluster`, for a protocol that needs `needs`: read from the
/// file's key directory (`keys = "DIR"`), or `None` for keys derived from the seed
/// (`keys = "testbed"`, the only ones of [`KeyNeeds::TestbedOnly`]) and for a protocol
/// without keys. The error says what to write in the file.
pub fn cluster_node_keys(
    cluster: &ClusterConfig,
    id: NodeId,
    needs: KeyNeeds,
) -> Result<Option<NodeKeys>, String> {
    match (needs, &cluster.keys) {
        (KeyNeeds::None, _) | (_, ClusterKeys::Testbed) => Ok(None),
        (KeyNeeds::TestbedOnly(why), ClusterKeys::Dir(_)) => Err(cluster
            .error(format!(
                "{why}; key files cannot serve it: write keys = \"testbed\""
            ))
            .to_string()),
        (KeyNeeds::TestbedOnly(why), ClusterKeys::Unset) => Err(cluster
            .error(format!(
                "{why}: write keys = \"testbed\" to derive every key from `seed` (testbeds only)"
            ))
            .to_string()),
        (KeyNeeds::Ed25519 { .. }, ClusterKeys::Unset) => Err(cluster
            .error(format!(
                "the nodes of {} sign with keys of their own, and the file names none: run \
                 `rehearsal keygen --config {} --out DIR` and write keys = \"DIR\" (each node \
                 needs DIR/node-ID.key, its own, and DIR/{PUBLIC_KEYS_FILE}), or, for a \
                 testbed, keys = \"testbed\" to derive every key from `seed`",
                cluster.protocol, cluster.origin
            ))
            .to_string()),
        (KeyNeeds::Ed25519 { holders }, ClusterKeys::Dir(dir)) => KeyDir::new(dir)
            .node_keys(id, holders)
            .map(Some)
            .map_err(|e| e.to_string()),
    }
}

/// Node `id`'s transport keys in `cluster` (see [`TcpAuth`](crate::TcpAuth)): from the
/// file's key directory (`keys = "DIR"`), which must then hold a key for every node of the
/// cluster; `None` without one (`keys = "testbed"`, whose keys anyone with the file can
/// derive, or no `keys`), and connections are then not authenticated.
pub fn cluster_tcp_auth(
    cluster: &ClusterConfig,
    id: NodeId,
) -> Result<Option<crate::TcpAuth>, String> {
    let ClusterKeys::Dir(dir) = &cluster.keys else {
        return Ok(None);
    };
    let nodes = u32::try_from(cluster.nodes.len()).unwrap_or(u32::MAX);
    let keys = KeyDir::new(dir).node_keys(id, nodes).map_err(|e| {
        format!(
            "{e} (authenticated connections need a key for every node of the cluster: \
             `rehearsal keygen --count {nodes}` writes them)"
        )
    })?;
    crate::TcpAuth::from_node_keys(&keys)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Fresh transport keys for nodes `0..count`, from the operating system's random source,
/// held in memory (for benchmarks and tests: nothing is written).
pub fn fresh_tcp_auth(count: usize) -> Result<Vec<crate::TcpAuth>, crate::TransportError> {
    let private: Vec<PrivateKey> = (0..count)
        .map(|_| PrivateKey(SigningKey::generate(&mut rand_core::OsRng).to_bytes()))
        .collect();
    let public: Vec<[u8; 32]> = private.iter().map(public_key_of).collect();
    (0..count)
        .map(|i| {
            let me = NodeId(u32::try_from(i).unwrap_or(u32::MAX));
            let keys = NodeKeys {
                me,
                private: private[i].clone(),
                public: public.clone(),
            };
            crate::TcpAuth::from_node_keys(&keys)
        })
        .collect()
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The private key files, node `i`'s at index `i`.
    pub private: Vec<PathBuf>,
    /// The public-key list.
    pub public: PathBuf,
}

/// Writes fresh Ed25519 keys for nodes `0..holders` into `dir` (created if missing):
/// `node-ID.key` for each (mode 0600) and [`PUBLIC_KEYS_FILE`]. The keys come from the
/// operating system's random source. Refuses to overwrite a key file.
pub fn generate(dir: &Path, holders: u32) -> Result<Written, KeyFileError> {
    if holders == 0 {
        return Err(error(dir, None, "no node to make keys for"));
    }
    create_dir_private(dir)?;
    let keys = KeyDir::new(dir);
    let public_path = keys.public_keys_path();
    if public_path.exists() {
        return Err(error(
            &public_path,
            None,
            "already exists: `rehearsal keygen` does not overwrite keys; choose another \
             directory, or remove the old keys first",
        ));
    }
    let mut public = format!(
        "# {PUBLIC_KEYS_FILE}: the Ed25519 public key of every node, `ID HEX` per line \
         (written by rehearsal keygen)\n"
    );
    let mut private = Vec::new();
    for i in 0..holders {
        let id = NodeId(i);
        let key = SigningKey::generate(&mut rand_core::OsRng);
        let path = keys.private_key_path(id);
        let text = format!(
            "# {}: the Ed25519 private key (RFC 8032 seed) of node {i}; keep it secret, \
             and on node {i}'s machine only\n{i} {}\n",
            private_key_file(id),
            hex(key.as_bytes())
        );
        write_new(&path, text.as_bytes(), 0o600)?;
        public += &format!("{i} {}\n", hex(key.verifying_key().as_bytes()));
        private.push(path);
    }
    write_new(&public_path, public.as_bytes(), 0o644)?;
    Ok(Written {
        private,
        public: public_path,
    })
}

fn create_dir_private(dir: &Path) -> Result<(), KeyFileError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|e| error(dir, None, format!("cannot create the key directory: {e}")))
}

/// Writes a file that must not exist yet, with `mode` (on Unix) from its creation on.
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), KeyFileError> {
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(path).map_err(|e| {
        let why = if e.kind() == io::ErrorKind::AlreadyExists {
            "already exists: `rehearsal keygen` does not overwrite keys; choose another \
             directory, or remove the old keys first"
                .to_string()
        } else {
            format!("cannot write: {e}")
        };
        error(path, None, why)
    })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| error(path, None, format!("cannot write: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    fn at(path: &str, line: usize, text: &str) -> String {
        format!("{path}:{line}: {text}")
    }

    #[test]
    fn malformed_private_key_files_are_refused_naming_file_and_line() {
        let path = Path::new("node-1.key");
        let cases = [
            (
                format!("# c\n1 {KEY} extra\n"),
                at("node-1.key", 2, "expected `ID HEX`"),
            ),
            (
                format!("one {KEY}\n"),
                at("node-1.key", 1, "`one` is not a node id"),
            ),
            (
                "1 abcd\n".to_string(),
                at(
                    "node-1.key",
                    1,
                    "the key has 4 hex digits, an Ed25519 key has 64",
                ),
            ),
            (
                format!("1 {}\n", KEY.replace('9', "g")),
                at("node-1.key", 1, "the key `gf86d081"),
            ),
            (
                "# nothing\n\n".to_string(),
                "node-1.key: the file holds no key".to_string(),
            ),
            (
                format!("1 {KEY}\n2 {KEY}\n"),
                at("node-1.key", 2, "a second key"),
            ),
        ];
        for (text, expected) in cases {
            let error = parse_private_key(&text, path).unwrap_err().to_string();
            assert!(
                error.starts_with(&expected),
                "{error}\nexpected: {expected}"
            );
        }
        let (id, key) = parse_private_key(&format!("  1   {KEY}  # mine\n"), path).unwrap();
        assert_eq!(id, NodeId(1));
        assert_eq!(hex(&key.0), KEY);
    }

    #[test]
    fn public_key_lists_need_every_node_once_and_no_stranger() {
        let path = Path::new("public-keys.txt");
        let good: Vec<String> = (0..3u8)
            .map(|i| hex(&public_key_of(&PrivateKey([i; 32]))))
            .collect();
        let list = |ids: &[u32]| -> String {
            ids.iter()
                .map(|&i| format!("{i} {}\n", good[i as usize % 3]))
                .collect()
        };
        let keys = parse_public_keys(&list(&[2, 0, 1]), path, 3).unwrap();
        assert_eq!(hex(&keys[2]), good[2]);
        let error = parse_public_keys(&list(&[0, 1]), path, 3)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("public-keys.txt: node 2 has no public key"),
            "{error}"
        );
        let error = parse_public_keys(&list(&[0, 1, 1]), path, 3)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&at(
                "public-keys.txt",
                3,
                "node 1 is listed twice (first at line 2)"
            )),
            "{error}"
        );
        let error = parse_public_keys(&list(&[0, 1, 2, 7]), path, 3)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&at(
                "public-keys.txt",
                4,
                "node 7 has no key in this cluster"
            )),
            "{error}"
        );
        let not_a_point = format!("0 02{}\n", "0".repeat(62));
        let error = parse_public_keys(&not_a_point, path, 1)
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with(&at(
                "public-keys.txt",
                1,
                "node 0's key is not an Ed25519 public key"
            )),
            "{error}"
        );
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("rehearsal-keys-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn generated_keys_load_back_and_a_mismatch_or_a_stolen_file_is_refused() {
        let dir = scratch("mismatch");
        let written = generate(&dir, 4).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(&written.private[2])
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let keys = KeyDir::new(&dir);
        let node = keys.node_keys(NodeId(2), 4).unwrap();
        assert_eq!(public_key_of(&node.private), node.public[2]);
        // Another run's key in node 2's place: its public key is not the listed one.
        let other = scratch("mismatch-other");
        generate(&other, 4).unwrap();
        fs::remove_file(&written.private[2]).unwrap();
        fs::copy(other.join("node-2.key"), &written.private[2]).unwrap();
        let error = keys.node_keys(NodeId(2), 4).unwrap_err().to_string();
        let expected = format!(
            "{}:4: node 2's public key does not match its private key",
            written.public.display()
        );
        assert!(error.starts_with(&expected), "{error}");
        // Node 3's file in node 1's place.
        fs::remove_file(&written.private[1]).unwrap();
        fs::copy(&written.private[3], &written.private[1]).unwrap();
        let error = keys.node_keys(NodeId(1), 4).unwrap_err().to_string();
        assert!(
            error.contains("this is node 3's private key, not node 1's"),
            "{error}"
        );
        // A key file others can read.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&written.private[0], fs::Permissions::from_mode(0o644)).unwrap();
            let error = keys.node_keys(NodeId(0), 4).unwrap_err().to_string();
            assert!(
                error.contains("may be read by others (mode 0644)"),
                "{error}"
            );
        }
        // The list is for 4 nodes, not 5.
        let error = keys.node_keys(NodeId(2), 5).unwrap_err().to_string();
        assert!(error.contains("node 4 has no public key"), "{error}");
        // keygen never overwrites.
        let error = generate(&dir, 4).unwrap_err().to_string();
        assert!(error.contains("already exists"), "{error}");
        fs::remove_dir_all(&dir).unwrap();
        fs::remove_dir_all(&other).unwrap();
    }
}
