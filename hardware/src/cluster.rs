//! Cluster files: which nodes make up a deployment, what role each plays, and where each
//! one is reached over TCP or DPDK. One file describes the whole cluster; every node
//! process reads the same file and picks its own entry by id.
//!
//! ```toml
//! protocol = "unreplicated"   # which protocol's actors the nodes run
//! seed = 1                    # master seed of the nodes' cx.rng()
//! # keys = "keys"             # where signing nodes find their keys (see Keys below)
//!
//! [params]                    # protocol parameters, read by whoever builds the actors
//! retransmit_after = "200ms"
//!
//! [[node]]
//! id = 0
//! role = "server"
//! address = "127.0.0.1:7000"           # TCP: where the node listens
//! # DPDK: the device the node runs on, and its MAC address.
//! dpdk = { port = "net_memif0,role=server,socket=/tmp/rehearsal.sock", mac = "02:00:00:00:00:01" }
//!
//! [[node]]
//! id = 1
//! role = "client"
//! address = "127.0.0.1:7001"
//! dpdk = { port = "net_memif0,role=client,socket=/tmp/rehearsal.sock", mac = "02:00:00:00:00:02" }
//! # host = "user@10.0.0.5"            # where `rehearsal cluster` starts it (default: locally)
//! ```
//!
//! Node ids are `0..N` without gaps, because protocols number their nodes from 0. Every
//! error names the file, and the line and column (or the node) where the problem is.
//!
//! # Keys
//!
//! A protocol whose nodes sign (PBFT) needs `keys`, and any protocol's TCP connections
//! are authenticated with them when they are key files:
//!
//! - `keys = "DIR"`: a key directory written by `rehearsal keygen` (a relative path is
//!   taken from the cluster file's directory). Each node reads only its own private key,
//!   `DIR/node-ID.key`, and the public-key list `DIR/public-keys.txt` (format:
//!   [`crate::keys`]), so on a deployment each machine's `DIR` holds its own key file
//!   and the list. Over TCP every node needs one, and each connection proves both ends'
//!   listed keys ([`TcpAuth`](crate::TcpAuth)).
//! - `keys = "testbed"`: every node derives every key from `seed`, as the simulator does:
//!   anyone with the file can sign as any node. For testbeds only (and the only keys of
//!   PBFT's simulated signatures, `crypto = "sim"`); the TCP connections are not
//!   authenticated.
//!
//! # DPDK settings
//!
//! `dpdk = { port, mac, eal_args }` says how a node runs over DPDK (`rehearsal node
//! --transport dpdk`); every node process initialises DPDK's EAL for itself.
//!
//! - `port` names the device, as DPDK does ([`DpdkDevice`]): a virtual device the node
//!   creates when it starts, written as for `--vdev` (`net_memif0,role=server,socket=...`,
//!   `net_af_packet0,iface=veth0`), or a device the EAL probed at initialisation (the
//!   PCI address of a NIC allowed with `-a` in `eal_args`, or the name of a `--vdev` there).
//! - `mac` is the node's address on the link: peers send its frames to this MAC, so it
//!   must be the port's (a memif port is given it; an af_packet port or a NIC has its
//!   interface's own, which `mac` must repeat). Frames carry node ids, so on
//!   point-to-point links the MACs only need to be distinct unicast addresses.
//! - `eal_args` (optional) replace the EAL arguments of the node's process. Without them
//!   the node runs without hugepages or NIC (`--no-huge -m 256 --no-pci --no-shconf`, a
//!   file prefix of its own, one lcore), which is what memif and af_packet need. A NIC
//!   needs its own, e.g. `["-l", "2", "-a", "0000:3b:00.0", "--file-prefix=node0"]`.
//!
//! A memif link joins exactly two ports, one `role=server` and one `role=client` on the
//! same socket, so a cluster over memif is two nodes (one unreplicated server and one
//! client, or two Benaloh peers); [`ClusterConfig::check_transport`] refuses more. More
//! nodes need one Ethernet segment between them: af_packet ports on veths of one Linux
//! bridge, or NICs behind a switch.
//!
//! ```
//! use rehearsal_hardware::{ClusterConfig, Role, TransportKind};
//!
//! let text = r#"
//! protocol = "benaloh"
//! [[node]]
//! id = 0
//! role = "peer"
//! address = "127.0.0.1:7000"
//! [[node]]
//! id = 1
//! role = "peer"
//! address = "127.0.0.1:7001"
//! "#;
//! let cluster = ClusterConfig::parse(text, "cluster.toml").unwrap();
//! assert_eq!(cluster.nodes.len(), 2);
//! assert_eq!(cluster.nodes[1].role, Role::Peer);
//! assert!(cluster.tcp_peer_table().is_ok());
//! // No node has DPDK settings, so this file cannot run over DPDK.
//! let error = cluster.check_transport(TransportKind::Dpdk).unwrap_err();
//! assert!(error.to_string().starts_with("cluster.toml:3:1: node 0: has no `dpdk`"), "{error}");
//!
//! let error = ClusterConfig::parse("protocol = 7", "bad.toml").unwrap_err();
//! assert!(error.to_string().starts_with("bad.toml:1:12: "), "{error}");
//! ```

use rehearsal_sim_core::NodeId;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Nodes one cluster file may declare, at most.
pub const CLUSTER_NODES_MAX: usize = 10_000;

/// Largest cluster file read, in bytes: far above any real cluster, and a bound on what a
/// wrong path (a log file, a device) can make the parser chew on.
pub const CLUSTER_FILE_BYTES_MAX: u64 = 16 << 20;

/// The transports a cluster can run over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransportKind {
    /// [`TcpTransport`](crate::TcpTransport): every node needs an `address`.
    Tcp,
    /// A DPDK poll-mode transport: every node needs `dpdk = { port, mac }` (see
    /// [`DpdkNode`]).
    Dpdk,
}

impl TransportKind {
    /// `"tcp"` or `"dpdk"`.
    pub fn name(self) -> &'static str {
        match self {
            TransportKind::Tcp => "tcp",
            TransportKind::Dpdk => "dpdk",
        }
    }
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a node does in its protocol. Which roles a protocol accepts is the protocol's
/// business (its registry entry); the file only names them.
pub use rehearsal_sim_core::protocol::Role;

/// An Ethernet MAC address, written `02:00:00:00:00:01` (colons or dashes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// Whether this is a group (multicast or broadcast) address, which no node can own.
    pub fn is_multicast(self) -> bool {
        self.0[0] & 1 == 1
    }
}

impl FromStr for MacAddr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let parts: Vec<&str> = text.split([':', '-']).collect();
        let bad = || format!("`{text}` is not a MAC address like 02:00:00:00:00:01");
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut bytes = [0u8; 6];
        for (byte, part) in bytes.iter_mut().zip(parts) {
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(MacAddr(bytes))
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

impl Serialize for MacAddr {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for MacAddr {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A node's DPDK settings: see [DPDK settings](self#dpdk-settings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkNode {
    /// The device the node sends and receives on.
    pub port: DpdkDevice,
    /// The node's MAC address: its peers send its frames to it.
    pub mac: MacAddr,
    /// The EAL arguments of this node's process, program name excluded; empty: arguments
    /// that need no hugepages and no NIC, with a file prefix unique to the process.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub eal_args: Vec<String>,
}

/// Longest device spec accepted, in bytes: far above any real one (a memif socket path
/// is at most 108 bytes), and a bound on what the EAL's argument parser is given.
pub const DPDK_DEVICE_BYTES_MAX: usize = 1024;

/// A DPDK device as a node's `port` names it: `name`, or `name,key=value,...` for a
/// virtual device with its driver arguments, exactly as DPDK's `--vdev` option takes it.
///
/// ```
/// use rehearsal_hardware::cluster::DpdkDevice;
///
/// let memif: DpdkDevice = "net_memif0,role=client,socket=/tmp/a.sock".parse().unwrap();
/// assert_eq!(memif.name(), "net_memif0");
/// assert_eq!(memif.args(), "role=client,socket=/tmp/a.sock");
/// assert_eq!(memif.arg("role"), Some("client"));
/// assert!(memif.is_memif());
///
/// let nic: DpdkDevice = "0000:3b:00.0".parse().unwrap();
/// assert_eq!((nic.name(), nic.args()), ("0000:3b:00.0", ""));
///
/// assert!("net_memif0,,id=1".parse::<DpdkDevice>().is_err());
/// assert!("".parse::<DpdkDevice>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DpdkDevice {
    spec: String,
}

impl DpdkDevice {
    /// The device's name: a virtual device's (whose prefix names the driver, e.g.
    /// `net_memif0`), or a probed device's (a PCI address).
    pub fn name(&self) -> &str {
        self.spec.split(',').next().unwrap_or_default()
    }

    /// The driver arguments after the name (`role=server,socket=...`); empty if none.
    pub fn args(&self) -> &str {
        self.spec.split_once(',').map_or("", |(_, args)| args)
    }

    /// The value of driver argument `key`, if given.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args()
            .split(',')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, value)| value)
    }

    /// Whether this is a `net_memif` virtual device: one end of a point-to-point link.
    pub fn is_memif(&self) -> bool {
        self.name().starts_with("net_memif")
    }

    /// The spec as written.
    pub fn as_str(&self) -> &str {
        &self.spec
    }
}

impl FromStr for DpdkDevice {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, String> {
        let example =
            "name a device such as \"net_memif0,role=server,socket=/tmp/rehearsal.sock\", \
                       \"net_af_packet0,iface=veth0\" or a NIC's PCI address \"0000:3b:00.0\"";
        if spec.is_empty() {
            return Err(format!("the DPDK device is empty: {example}"));
        }
        if spec.len() > DPDK_DEVICE_BYTES_MAX {
            return Err(format!(
                "the DPDK device has {} bytes, more than the {DPDK_DEVICE_BYTES_MAX} accepted",
                spec.len()
            ));
        }
        if let Some(c) = spec.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "the DPDK device `{spec}` contains {c:?}: DPDK device specs have no spaces"
            ));
        }
        let mut parts = spec.split(',');
        let name = parts.next().unwrap_or_default();
        let name_ok = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':' | '.'));
        if !name_ok {
            return Err(format!(
                "`{name}` is not a DPDK device name (letters, digits, `_`, `-`, `:` and `.`): {example}"
            ));
        }
        for pair in parts {
            let well_formed = matches!(pair.split_once('='), Some((key, _)) if !key.is_empty());
            if !well_formed {
                return Err(format!(
                    "`{spec}`: driver argument `{pair}` is not `key=value` (arguments are \
                     separated by commas, as in \"net_memif0,role=client,id=0\")"
                ));
            }
        }
        Ok(DpdkDevice {
            spec: spec.to_string(),
        })
    }
}

impl fmt::Display for DpdkDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

impl Serialize for DpdkDevice {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.spec)
    }
}

impl<'de> Deserialize<'de> for DpdkDevice {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Spec;
        impl serde::de::Visitor<'_> for Spec {
            type Value = DpdkDevice;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a DPDK device such as \"net_memif0,role=server,socket=/tmp/rehearsal.sock\"",
                )
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<DpdkDevice, E> {
                text.parse().map_err(E::custom)
            }
            // A port id depends on the order in which the EAL finds devices: the file
            // names the device instead, and says so to whoever writes a number.
            fn visit_i64<E: serde::de::Error>(self, id: i64) -> Result<DpdkDevice, E> {
                Err(E::custom(format!(
                    "port = {id}: name the device instead of a port id, e.g. \
                     port = \"net_memif0,role=server,socket=/tmp/rehearsal.sock\", \
                     port = \"net_af_packet0,iface=veth0\" or the PCI address of a NIC allowed \
                     with -a in eal_args"
                )))
            }
            fn visit_u64<E: serde::de::Error>(self, id: u64) -> Result<DpdkDevice, E> {
                self.visit_i64(id.min(i64::MAX as u64) as i64)
            }
        }
        deserializer.deserialize_any(Spec)
    }
}

/// Longest `host` accepted, in bytes: far above any host name or ssh destination.
pub const HOST_BYTES_MAX: usize = 255;

/// Checks a node's `host`: a non-empty word a launcher can take as one argument (no
/// spaces, no control characters, no quotes or shell syntax, not an option).
///
/// ```
/// use rehearsal_hardware::cluster::check_host;
///
/// assert!(check_host("user@10.0.0.5").is_ok());
/// assert!(check_host("rack-2.example.org").is_ok());
/// assert!(check_host("").is_err());
/// assert!(check_host("-oProxyCommand=x").is_err());
/// assert!(check_host("a b").is_err());
/// ```
pub fn check_host(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err(
            "is empty: name the host, e.g. host = \"user@10.0.0.5\" (or leave \
                    `host` out to run the node on the launcher's machine)"
                .into(),
        );
    }
    if host.len() > HOST_BYTES_MAX {
        return Err(format!(
            "has {} bytes, more than the {HOST_BYTES_MAX} accepted",
            host.len()
        ));
    }
    if host.starts_with('-') {
        return Err(format!(
            "`{host}` starts with `-`, which a launcher such as ssh would read as an option"
        ));
    }
    if let Some(c) = host.chars().find(|&c| {
        !(c.is_ascii_alphanumeric()
            || matches!(c, '@' | '.' | '-' | '_' | ':' | '%' | '[' | ']' | '/'))
    }) {
        return Err(format!(
            "`{host}` contains {c:?}: a host is one word of letters, digits and `@ . - _ : % [ ]` \
             (an ssh destination such as user@10.0.0.5, or a name the launcher understands)"
        ));
    }
    Ok(())
}

/// Where in a file something is: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// Line, from 1.
    pub line: usize,
    /// Column (in characters), from 1.
    pub column: usize,
}

/// One node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeConfig {
    /// The node's id: its index in the protocol.
    pub id: NodeId,
    /// What it does.
    pub role: Role,
    /// Where it listens for TCP connections (required by `--transport tcp`).
    pub address: Option<SocketAddr>,
    /// Its DPDK device and MAC (required by `--transport dpdk`).
    pub dpdk: Option<DpdkNode>,
    /// The host it runs on, for a launcher (`rehearsal cluster` starts the node through
    /// its `--launcher`, by default `ssh`): an ssh destination such as `user@10.0.0.5`,
    /// or any name the launcher understands. `None`: the launcher's own machine.
    pub host: Option<String>,
    /// Where the node's `[[node]]` entry starts in the file (zero for a built config).
    pub location: Location,
}

impl NodeConfig {
    /// A node reached over TCP at `address`.
    pub fn tcp(id: NodeId, role: Role, address: SocketAddr) -> Self {
        NodeConfig {
            id,
            role,
            address: Some(address),
            dpdk: None,
            host: None,
            location: Location::default(),
        }
    }

    /// A node reached over DPDK with `settings`.
    pub fn dpdk(id: NodeId, role: Role, settings: DpdkNode) -> Self {
        NodeConfig {
            id,
            role,
            address: None,
            dpdk: Some(settings),
            host: None,
            location: Location::default(),
        }
    }
}

/// A cluster file, parsed and checked: see the module documentation for the format.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// The name errors use for the file (its path, usually).
    pub origin: String,
    /// Which protocol the nodes run (checked by whoever builds the actors).
    pub protocol: String,
    /// Master seed of the nodes' `cx.rng()` streams.
    pub seed: u64,
    /// The `[params]` table: protocol parameters; read them with
    /// [`ClusterConfig::params`].
    pub params: toml::Table,
    /// The nodes, ordered by id: `nodes[i].id == NodeId(i)`.
    pub nodes: Vec<NodeConfig>,
    /// Where the nodes' keys are: the file's `keys`.
    pub keys: ClusterKeys,
    /// The file's text, to locate errors found after parsing.
    source: String,
}

/// Where the nodes of a cluster find their signing keys: the file's `keys`, for protocols
/// whose nodes sign (see [Keys](self#keys)).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClusterKeys {
    /// No `keys`: the protocol must need none.
    #[default]
    Unset,
    /// `keys = "testbed"`: every key derived from `seed`, so that whoever reads this file
    /// can sign as any node. For testbeds only.
    Testbed,
    /// `keys = "DIR"`: a key directory `rehearsal keygen` wrote (a relative path is taken
    /// from the cluster file's directory); each node reads its own `node-ID.key` and the
    /// `public-keys.txt` list there.
    Dir(PathBuf),
}

impl ClusterKeys {
    /// `keys` as the file writes it.
    fn parse(text: &str, file_dir: Option<&Path>) -> ClusterKeys {
        match text {
            "testbed" => ClusterKeys::Testbed,
            dir => {
                let dir = Path::new(dir);
                ClusterKeys::Dir(match file_dir {
                    Some(base) if dir.is_relative() => base.join(dir),
                    _ => dir.to_path_buf(),
                })
            }
        }
    }

    fn to_text(&self) -> Option<String> {
        match self {
            ClusterKeys::Unset => None,
            ClusterKeys::Testbed => Some("testbed".into()),
            ClusterKeys::Dir(dir) => Some(dir.display().to_string()),
        }
    }
}

/// A problem with a cluster file; displays as `file:line:column: what is wrong`, or
/// `file: what is wrong` when it has no single place.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{origin}{}: {message}", .location.map(|l| format!(":{}:{}", l.line, l.column)).unwrap_or_default())]
pub struct ClusterError {
    /// The file.
    pub origin: String,
    /// Where in the file, if one place is to blame.
    pub location: Option<Location>,
    /// What is wrong, and what to do about it.
    pub message: String,
}

// ---- The file as written ----------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClusterFile {
    protocol: String,
    #[serde(default)]
    seed: u64,
    #[serde(default)]
    params: toml::Table,
    #[serde(default)]
    keys: Option<toml::Spanned<String>>,
    #[serde(default)]
    node: Vec<toml::Spanned<NodeFile>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NodeFile {
    id: u32,
    role: Role,
    #[serde(default)]
    address: Option<SocketAddr>,
    #[serde(default)]
    dpdk: Option<DpdkNode>,
    #[serde(default)]
    host: Option<String>,
}

#[derive(Serialize)]
struct ClusterFileOut<'a> {
    protocol: &'a str,
    seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    keys: Option<String>,
    #[serde(skip_serializing_if = "toml::Table::is_empty")]
    params: &'a toml::Table,
    node: Vec<NodeFileOut<'a>>,
}

#[derive(Serialize)]
struct NodeFileOut<'a> {
    id: u32,
    role: Role,
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<SocketAddr>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dpdk: Option<&'a DpdkNode>,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
}

/// Wraps the `[params]` table of a cluster file for [`ClusterConfig::params`]; everything
/// else in the file is ignored here (it was checked when the file was parsed).
#[derive(Deserialize)]
struct ParamsOnly<T> {
    params: Option<T>,
}

fn location_of(text: &str, offset: usize) -> Location {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    Location {
        line,
        column: before[line_start..].chars().count() + 1,
    }
}

impl ClusterConfig {
    /// A cluster built in code (for example by a launcher that picked free ports), checked
    /// like a parsed file. `origin` names it in errors.
    pub fn new(
        origin: impl Into<String>,
        protocol: impl Into<String>,
        seed: u64,
        params: toml::Table,
        mut nodes: Vec<NodeConfig>,
    ) -> Result<Self, ClusterError> {
        nodes.sort_by_key(|node| node.id);
        let mut config = ClusterConfig {
            origin: origin.into(),
            protocol: protocol.into(),
            seed,
            params,
            nodes,
            keys: ClusterKeys::Unset,
            source: String::new(),
        };
        config.source = config.to_toml();
        config.check()?;
        Ok(config)
    }

    /// The same cluster with its nodes' keys at `keys`.
    pub fn with_keys(mut self, keys: ClusterKeys) -> Self {
        self.keys = keys;
        self.source = self.to_toml();
        self
    }

    /// Reads and checks the cluster file at `path`.
    pub fn load(path: &Path) -> Result<Self, ClusterError> {
        let origin = path.display().to_string();
        let fail = |message: String| ClusterError {
            origin: origin.clone(),
            location: None,
            message,
        };
        let bytes = std::fs::metadata(path)
            .map_err(|error| fail(format!("cannot read the cluster file: {error}")))?
            .len();
        if bytes > CLUSTER_FILE_BYTES_MAX {
            return Err(fail(format!(
                "the file has {bytes} bytes, more than the {CLUSTER_FILE_BYTES_MAX} a cluster file may have"
            )));
        }
        // Read at most one byte past the cap: a device (`/dev/zero`) reports no size, so
        // the metadata check above cannot stop it.
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(
            &mut std::io::Read::take(
                std::fs::File::open(path)
                    .map_err(|error| fail(format!("cannot read the cluster file: {error}")))?,
                CLUSTER_FILE_BYTES_MAX + 1,
            ),
            &mut bytes,
        )
        .map_err(|error| fail(format!("cannot read the cluster file: {error}")))?;
        if bytes.len() as u64 > CLUSTER_FILE_BYTES_MAX {
            return Err(fail(format!(
                "the file holds more than the {CLUSTER_FILE_BYTES_MAX} bytes a cluster file may have (an endless input such as /dev/zero?)"
            )));
        }
        if let Some(at) = bytes.iter().position(|&b| b == 0) {
            return Err(fail(format!(
                "the file holds binary data, not text (a NUL byte at byte {at})"
            )));
        }
        let text = String::from_utf8(bytes).map_err(|error| {
            fail(format!(
                "the file is not UTF-8 text (an invalid byte at byte {})",
                error.utf8_error().valid_up_to()
            ))
        })?;
        ClusterConfig::parse_in(&text, &origin, path.parent())
    }

    /// Parses and checks the text of a cluster file; `origin` names it in errors. A
    /// relative `keys` directory is taken from the working directory.
    pub fn parse(text: &str, origin: &str) -> Result<Self, ClusterError> {
        ClusterConfig::parse_in(text, origin, None)
    }

    /// [`ClusterConfig::parse`] for a file in `file_dir`, from which a relative `keys`
    /// directory is taken.
    fn parse_in(text: &str, origin: &str, file_dir: Option<&Path>) -> Result<Self, ClusterError> {
        let file: ClusterFile = toml::from_str(text).map_err(|error| ClusterError {
            origin: origin.to_string(),
            location: error.span().map(|span| location_of(text, span.start)),
            message: error.message().trim_end().to_string(),
        })?;
        let mut nodes: Vec<NodeConfig> = file
            .node
            .into_iter()
            .map(|spanned| {
                let location = location_of(text, spanned.span().start);
                let node = spanned.into_inner();
                NodeConfig {
                    id: NodeId(node.id),
                    role: node.role,
                    address: node.address,
                    dpdk: node.dpdk,
                    host: node.host,
                    location,
                }
            })
            .collect();
        // Keep the file order for the checks (so "declared twice" points at the second
        // entry), then order by id.
        let config = ClusterConfig {
            origin: origin.to_string(),
            protocol: file.protocol,
            seed: file.seed,
            params: file.params,
            nodes: nodes.clone(),
            keys: ClusterKeys::Unset,
            source: text.to_string(),
        };
        let keys = match file.keys {
            None => ClusterKeys::Unset,
            Some(keys) if keys.get_ref().trim().is_empty() => {
                return Err(config.error_at(
                    location_of(text, keys.span().start),
                    "`keys` is empty: name a key directory (`rehearsal keygen` writes one), \
                     or write keys = \"testbed\" to derive every key from `seed`"
                        .into(),
                ))
            }
            Some(keys) => ClusterKeys::parse(keys.get_ref(), file_dir),
        };
        let config = ClusterConfig { keys, ..config };
        config.check()?;
        nodes.sort_by_key(|node| node.id);
        Ok(ClusterConfig { nodes, ..config })
    }

    fn error_at(&self, location: Location, message: String) -> ClusterError {
        ClusterError {
            origin: self.origin.clone(),
            location: (location.line > 0).then_some(location),
            message,
        }
    }

    /// An error about the file as a whole.
    pub fn error(&self, message: impl Into<String>) -> ClusterError {
        ClusterError {
            origin: self.origin.clone(),
            location: None,
            message: message.into(),
        }
    }

    /// An error about one node: located at its entry in the file.
    pub fn node_error(&self, node: &NodeConfig, message: impl Into<String>) -> ClusterError {
        self.error_at(
            node.location,
            format!("node {}: {}", node.id.0, message.into()),
        )
    }

    /// Checks what holds whatever the transport: at least one node, ids `0..N` each once,
    /// no TCP address or MAC address used twice, unicast MACs.
    fn check(&self) -> Result<(), ClusterError> {
        if self.protocol.trim().is_empty() {
            return Err(self.error("`protocol` is empty: name the protocol the nodes run"));
        }
        if self.nodes.is_empty() {
            return Err(self.error(
                "the file declares no node: add one `[[node]]` table (id, role, address) per node",
            ));
        }
        if self.nodes.len() > CLUSTER_NODES_MAX {
            return Err(self.error(format!(
                "{} nodes declared, at most {CLUSTER_NODES_MAX} are supported",
                self.nodes.len()
            )));
        }
        let count = self.nodes.len();
        let mut ids: BTreeMap<NodeId, &NodeConfig> = BTreeMap::new();
        let mut addresses: BTreeMap<SocketAddr, &NodeConfig> = BTreeMap::new();
        let mut macs: BTreeMap<MacAddr, &NodeConfig> = BTreeMap::new();
        for node in &self.nodes {
            if let Some(first) = ids.insert(node.id, node) {
                return Err(self.error_at(
                    node.location,
                    format!(
                        "node {} is declared twice (first at line {})",
                        node.id.0, first.location.line
                    ),
                ));
            }
            if node.id.0 as usize >= count {
                return Err(self.error_at(
                    node.location,
                    format!(
                        "node id {} is out of range: the {count} nodes of this file must have ids 0 to {}",
                        node.id.0,
                        count - 1
                    ),
                ));
            }
            if let Some(address) = node.address {
                if address.port() == 0 {
                    return Err(self.node_error(
                        node,
                        format!("address {address} has port 0: give the port the node listens on"),
                    ));
                }
                if let Some(other) = addresses.insert(address, node) {
                    return Err(self.node_error(
                        node,
                        format!("address {address} is already node {}'s", other.id.0),
                    ));
                }
            }
            if let Some(host) = &node.host {
                check_host(host).map_err(|why| self.node_error(node, format!("host: {why}")))?;
            }
            if let Some(dpdk) = &node.dpdk {
                if dpdk.mac.is_multicast() || dpdk.mac.0 == [0; 6] {
                    return Err(self.node_error(
                        node,
                        format!(
                            "MAC {} is not a unicast address (the first byte must be even, \
                             and not all bytes zero)",
                            dpdk.mac
                        ),
                    ));
                }
                if let Some(other) = macs.insert(dpdk.mac, node) {
                    return Err(self.node_error(
                        node,
                        format!("MAC {} is already node {}'s", dpdk.mac, other.id.0),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks that every node has what `transport` needs: an `address` for TCP, a `dpdk`
    /// table for DPDK.
    pub fn check_transport(&self, transport: TransportKind) -> Result<(), ClusterError> {
        for node in &self.nodes {
            match transport {
                TransportKind::Tcp if node.address.is_none() => {
                    return Err(self.node_error(
                        node,
                        "has no `address`: the tcp transport needs one per node, e.g. \
                         address = \"127.0.0.1:7000\"",
                    ))
                }
                TransportKind::Dpdk if node.dpdk.is_none() => {
                    return Err(self.node_error(
                        node,
                        "has no `dpdk` settings: the dpdk transport needs one per node, e.g. \
                         dpdk = { port = \"net_memif0,role=server,socket=/tmp/rehearsal.sock\", \
                         mac = \"02:00:00:00:00:01\" }",
                    ))
                }
                _ => {}
            }
        }
        if transport == TransportKind::Dpdk {
            self.check_memif_links()?;
        }
        Ok(())
    }

    /// A memif port is one end of a link to one other port: a cluster with a memif node
    /// has two nodes, and if both are on memif, they are the two ends of one link (one
    /// server and one client, same interface id, same socket).
    fn check_memif_links(&self) -> Result<(), ClusterError> {
        let memif: Vec<(&NodeConfig, &DpdkDevice)> = self
            .nodes
            .iter()
            .filter_map(|node| Some((node, &node.dpdk.as_ref()?.port)))
            .filter(|(_, device)| device.is_memif())
            .collect();
        let Some(&(first, device)) = memif.first() else {
            return Ok(());
        };
        if self.nodes.len() != 2 {
            return Err(self.node_error(
                first,
                format!(
                    "its port `{}` is a memif link, which joins exactly two nodes, but this cluster \
                     has {}: over memif, a cluster is two nodes (one unreplicated server and one \
                     client, or two Benaloh peers); more nodes need one Ethernet segment, such as \
                     net_af_packet ports on the veths of one Linux bridge, or NICs behind a switch",
                    device.name(),
                    self.nodes.len()
                ),
            ));
        }
        let [(a, a_dev), (b, b_dev)] = memif[..] else {
            return Ok(());
        };
        // DPDK's defaults when an argument is left out.
        let role = |d: &DpdkDevice| d.arg("role").unwrap_or("server").to_string();
        let id = |d: &DpdkDevice| d.arg("id").unwrap_or("0").to_string();
        if role(a_dev) == role(b_dev) {
            return Err(self.node_error(
                b,
                format!(
                    "both ends of the memif link are role={} (node {}'s too): make one \
                     role=server and the other role=client",
                    role(b_dev),
                    a.id.0
                ),
            ));
        }
        if id(a_dev) != id(b_dev) {
            return Err(self.node_error(
                b,
                format!(
                    "memif id={} differs from node {}'s id={}: the two ends of a link share one id",
                    id(b_dev),
                    a.id.0,
                    id(a_dev)
                ),
            ));
        }
        if let (Some(a_socket), Some(b_socket)) = (a_dev.arg("socket"), b_dev.arg("socket")) {
            if a_socket != b_socket {
                return Err(self.node_error(
                    b,
                    format!(
                        "memif socket {b_socket} differs from node {}'s socket {a_socket}: \
                         the two ends of a link meet on one socket",
                        a.id.0
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The node with id `id`.
    pub fn node(&self, id: NodeId) -> Option<&NodeConfig> {
        self.nodes.get(id.0 as usize).filter(|node| node.id == id)
    }

    /// Ids of the nodes that play `role`, in increasing order.
    pub fn ids_with_role(&self, role: Role) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|node| node.role == role)
            .map(|node| node.id)
            .collect()
    }

    /// Every node's TCP address, for
    /// [`TcpTransport::from_peer_table`](crate::TcpTransport::from_peer_table).
    pub fn tcp_peer_table(&self) -> Result<BTreeMap<NodeId, SocketAddr>, ClusterError> {
        self.check_transport(TransportKind::Tcp)?;
        Ok(self
            .nodes
            .iter()
            .filter_map(|node| Some((node.id, node.address?)))
            .collect())
    }

    /// Every node's MAC address, for the peers of a DPDK transport (leave out your own).
    pub fn dpdk_peer_table(&self) -> Result<BTreeMap<NodeId, MacAddr>, ClusterError> {
        self.check_transport(TransportKind::Dpdk)?;
        Ok(self
            .nodes
            .iter()
            .filter_map(|node| Some((node.id, node.dpdk.as_ref()?.mac)))
            .collect())
    }

    /// The `[params]` table as `T` (missing table: `T::default()`). Errors point into the
    /// file. Use `#[serde(deny_unknown_fields)]` on `T` to catch misspelt parameters.
    pub fn params<T: DeserializeOwned + Default>(&self) -> Result<T, ClusterError> {
        let parsed: Result<ParamsOnly<T>, toml::de::Error> = toml::from_str(&self.source);
        match parsed {
            Ok(only) => Ok(only.params.unwrap_or_default()),
            Err(error) => Err(ClusterError {
                origin: self.origin.clone(),
                location: error
                    .span()
                    .map(|span: Range<usize>| location_of(&self.source, span.start)),
                message: format!("[params]: {}", error.message().trim_end()),
            }),
        }
    }

    /// The cluster as a file that [`ClusterConfig::parse`] reads back.
    pub fn to_toml(&self) -> String {
        let file = ClusterFileOut {
            protocol: &self.protocol,
            seed: self.seed,
            keys: self.keys.to_text(),
            params: &self.params,
            node: self
                .nodes
                .iter()
                .map(|node| NodeFileOut {
                    id: node.id.0,
                    role: node.role,
                    address: node.address,
                    dpdk: node.dpdk.as_ref(),
                    host: node.host.as_deref(),
                })
                .collect(),
        };
        toml::to_string(&file).expect("a cluster always serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_addresses_parse_and_print() {
        let mac: MacAddr = "02:00:0a:FF:00:01".parse().unwrap();
        assert_eq!(mac.0, [2, 0, 0x0a, 0xff, 0, 1]);
        assert_eq!(mac.to_string(), "02:00:0a:ff:00:01");
        assert_eq!("02-00-0a-ff-00-01".parse::<MacAddr>(), Ok(mac));
        for bad in [
            "",
            "02:00:00:00:00",
            "02:00:00:00:00:001",
            "02:00:00:00:00:zz",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
        assert!("01:00:5e:00:00:01"
            .parse::<MacAddr>()
            .unwrap()
            .is_multicast());
    }

    const MEMIF_PAIR: &str = r#"
protocol = "unreplicated"
[[node]]
id = 0
role = "server"
dpdk = { port = "net_memif0,role=server,socket=/tmp/r.sock", mac = "02:00:00:00:00:01" }
[[node]]
id = 1
role = "client"
dpdk = { port = "net_memif0,role=client,socket=/tmp/r.sock", mac = "02:00:00:00:00:02" }
"#;

    fn dpdk_error(text: &str) -> String {
        match ClusterConfig::parse(text, "c.toml") {
            Err(error) => error.to_string(),
            Ok(cluster) => cluster
                .check_transport(TransportKind::Dpdk)
                .expect_err("the file should be refused for dpdk")
                .to_string(),
        }
    }

    #[test]
    fn a_memif_pair_is_a_dpdk_cluster_with_a_peer_table() {
        let cluster = ClusterConfig::parse(MEMIF_PAIR, "c.toml").unwrap();
        cluster.check_transport(TransportKind::Dpdk).unwrap();
        let table = cluster.dpdk_peer_table().unwrap();
        assert_eq!(table[&NodeId(1)], "02:00:00:00:00:02".parse().unwrap());
        let port = &cluster.nodes[0].dpdk.as_ref().unwrap().port;
        assert_eq!(port.arg("socket"), Some("/tmp/r.sock"));
        let again = ClusterConfig::parse(&cluster.to_toml(), "again.toml").unwrap();
        assert_eq!(
            again.nodes,
            cluster
                .nodes
                .iter()
                .cloned()
                .map(|mut n| {
                    n.location = again.node(n.id).unwrap().location;
                    n
                })
                .collect::<Vec<_>>()
        );
    }

    #[test]
    fn a_port_id_is_refused_with_the_way_to_name_the_device() {
        let text = MEMIF_PAIR.replace("\"net_memif0,role=server,socket=/tmp/r.sock\"", "0");
        let error = dpdk_error(&text);
        assert!(error.starts_with("c.toml:6:"), "{error}");
        assert!(error.contains("port = 0: name the device"), "{error}");
        let error = dpdk_error(&MEMIF_PAIR.replace("role=client,", "role client,"));
        assert!(error.contains("no spaces"), "{error}");
        let error = dpdk_error(&MEMIF_PAIR.replace("role=client,", "role,"));
        assert!(error.contains("`role` is not `key=value`"), "{error}");
    }

    #[test]
    fn memif_links_join_two_nodes_one_server_one_client_on_one_socket() {
        let third = "[[node]]\nid = 2\nrole = \"client\"\n\
                     dpdk = { port = \"net_af_packet0,iface=veth2\", mac = \"02:00:00:00:00:03\" }\n";
        let error = dpdk_error(&format!("{MEMIF_PAIR}{third}"));
        assert!(
            error.starts_with("c.toml:3:1: node 0: its port `net_memif0` is a memif link, which joins exactly two nodes, but this cluster has 3"),
            "{error}"
        );
        let error = dpdk_error(&MEMIF_PAIR.replace("role=client", "role=server"));
        assert!(
            error.contains("node 1: both ends of the memif link are role=server"),
            "{error}"
        );
        // DPDK's default role is server.
        let error = dpdk_error(&MEMIF_PAIR.replace("role=client,", ""));
        assert!(
            error.contains("both ends of the memif link are role=server"),
            "{error}"
        );
        let error = dpdk_error(&MEMIF_PAIR.replace("role=client,", "role=client,id=1,"));
        assert!(
            error.contains("memif id=1 differs from node 0's id=0"),
            "{error}"
        );
        let error = dpdk_error(
            &MEMIF_PAIR.replace("role=client,socket=/tmp/r", "role=client,socket=/tmp/q"),
        );
        assert!(
            error.contains("memif socket /tmp/q.sock differs"),
            "{error}"
        );
        // Over TCP, the DPDK settings' links do not matter.
        let tcp = format!("{MEMIF_PAIR}{third}").replace(
            "[[node]]\nid = 1\n",
            "[[node]]\nid = 1\naddress = \"127.0.0.1:7001\"\n",
        );
        let cluster = ClusterConfig::parse(&tcp, "c.toml").unwrap();
        assert!(cluster.check_transport(TransportKind::Tcp).is_err()); // nodes 0 and 2 lack an address
    }

    #[test]
    fn a_node_names_its_host_and_bad_hosts_are_refused_at_their_node() {
        let text = "protocol = \"benaloh\"\n[[node]]\nid = 0\nrole = \"peer\"\n\
                    address = \"10.0.0.5:7000\"\nhost = \"alice@10.0.0.5\"\n\
                    [[node]]\nid = 1\nrole = \"peer\"\naddress = \"127.0.0.1:7001\"\n";
        let cluster = ClusterConfig::parse(text, "c.toml").unwrap();
        assert_eq!(cluster.nodes[0].host.as_deref(), Some("alice@10.0.0.5"));
        assert_eq!(cluster.nodes[1].host, None);
        let again = ClusterConfig::parse(&cluster.to_toml(), "again.toml").unwrap();
        assert_eq!(again.nodes[0].host, cluster.nodes[0].host);
        for (host, why) in [
            ("", "is empty"),
            ("-oProxyCommand=touch", "starts with `-`"),
            ("a b", "contains ' '"),
            ("x;rm", "contains ';'"),
        ] {
            let bad = text.replace("alice@10.0.0.5", host);
            let error = ClusterConfig::parse(&bad, "c.toml")
                .unwrap_err()
                .to_string();
            assert!(
                error.starts_with("c.toml:2:1: node 0: host: ") && error.contains(why),
                "{host:?}: {error}"
            );
        }
        let error = ClusterConfig::parse(
            &text.replace("host = \"alice@10.0.0.5\"", "host = 5"),
            "c.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(error.starts_with("c.toml:"), "{error}");
    }

    #[test]
    fn locations_count_lines_and_characters() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(location_of(text, 0), Location { line: 1, column: 1 });
        assert_eq!(location_of(text, 6), Location { line: 2, column: 1 });
        assert_eq!(location_of(text, 10), Location { line: 2, column: 4 });
    }
}
