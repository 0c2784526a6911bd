//! A test network of several "hosts" on one Linux machine: one network namespace per
//! host, each joined by a veth pair to one Linux bridge in the root namespace, each with
//! its own IPv4 address on one subnet. Real TCP (and DPDK `af_packet`) traffic crosses
//! it, so a cluster spread over its hosts runs as over a LAN, and the nemesis can cut,
//! delay and drop its links.
//!
//! [`TestNet::create`] builds it (root and iproute2's `ip` needed; otherwise it returns
//! [`NetnsError::Unavailable`], which a test reports as a skip), and dropping the
//! [`TestNet`] removes every namespace, veth and the bridge, also while a panicking
//! test unwinds. Every name carries the caller's tag, this process's id and a sequence
//! number, so tests running in parallel (in one process or several) never share a name;
//! before it builds anything, `create` removes what runs of the same tag left behind
//! when they were killed (their process is gone), and leaves live runs alone.
//!
//! Only `ip` commands run (`std::process::Command`), nothing else is needed; the module
//! exists on Linux only.
//!
//! ```no_run
//! use rehearsal_hardware::netns::TestNet;
//!
//! let net = TestNet::create("doc", 2)?;
//! // Run a command on host 1: `ip netns exec NS ...`.
//! let mut ping = net.exec_prefix(1);
//! ping.extend(["ping", "-c1", &net.address(0).to_string()].map(String::from));
//! let status = std::process::Command::new(&ping[0]).args(&ping[1..]).status()?;
//! assert!(status.success());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::io::ErrorKind;
use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// Hosts one test network may have: one /24 subnet holds them, with room to spare.
pub const TEST_NET_HOSTS_MAX: usize = 200;

/// Longest tag accepted, in bytes: it goes into every namespace's name.
pub const TEST_NET_TAG_BYTES_MAX: usize = 24;

/// The prefix of every name a [`TestNet`] gives: namespaces `rh-TAG-INSTANCE-HOST`, and
/// the bridge's alias `rh-TAG-INSTANCE`.
const NAME_PREFIX: &str = "rh-";

/// Test networks created by this process so far: two of one tag in one process differ by
/// it.
static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// Why a [`TestNet`] could not be built or removed.
#[derive(Debug)]
pub enum NetnsError {
    /// This machine cannot build one (not root, no `ip`, no namespace or bridge support):
    /// tests skip, with this reason.
    Unavailable(String),
    /// The caller asked for something no machine can build (a bad tag, zero hosts).
    Invalid(String),
    /// An `ip` command failed.
    Command {
        /// The command line.
        command: String,
        /// What it printed on stderr (or why it could not start).
        stderr: String,
    },
}

impl fmt::Display for NetnsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetnsError::Unavailable(why) => {
                write!(f, "no network namespaces on this machine: {why}")
            }
            NetnsError::Invalid(why) => write!(f, "bad test network: {why}"),
            NetnsError::Command { command, stderr } => {
                write!(f, "`{command}` failed: {}", stderr.trim_end())
            }
        }
    }
}

impl std::error::Error for NetnsError {}

/// One host of a [`TestNet`].
#[derive(Debug, Clone)]
struct Host {
    namespace: String,
    /// The veth end inside the namespace.
    interface: String,
    /// The veth end in the root namespace, a port of the bridge.
    outer: String,
    address: Ipv4Addr,
    mac: String,
}

/// Network namespaces joined by one bridge: see the [module](self) documentation.
#[derive(Debug)]
pub struct TestNet {
    /// `rh-TAG-INSTANCE`: the bridge's alias, and the prefix of the namespaces' names.
    name: String,
    bridge: String,
    hosts: Vec<Host>,
}

impl TestNet {
    /// Builds `hosts` namespaces on one bridge, named after `tag` (letters, digits, `_`;
    /// at most [`TEST_NET_TAG_BYTES_MAX`] bytes), after removing what killed runs of the
    /// same tag left. Host `i` has address `10.X.Y.(i+1)/24` on interface `eth0`, a MAC of
    /// its own, and its loopback up.
    pub fn create(tag: &str, hosts: usize) -> Result<TestNet, NetnsError> {
        let tag_ok = !tag.is_empty()
            && tag.len() <= TEST_NET_TAG_BYTES_MAX
            && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !tag_ok {
            return Err(NetnsError::Invalid(format!(
                "tag `{tag}`: use 1 to {TEST_NET_TAG_BYTES_MAX} letters, digits or `_`"
            )));
        }
        if hosts == 0 || hosts > TEST_NET_HOSTS_MAX {
            return Err(NetnsError::Invalid(format!(
                "{hosts} hosts asked: a test network has 1 to {TEST_NET_HOSTS_MAX}"
            )));
        }
        // SAFETY: geteuid has no preconditions and cannot fail.
        if unsafe { libc::geteuid() } != 0 {
            return Err(NetnsError::Unavailable(
                "network namespaces, veths and bridges need root (run the test as root)".into(),
            ));
        }
        match Command::new("ip").arg("-V").output() {
            Err(error) if error.kind() == ErrorKind::NotFound => {
                return Err(NetnsError::Unavailable(
                    "iproute2's `ip` is not installed (apt-get install iproute2)".into(),
                ))
            }
            Err(error) => return Err(NetnsError::Unavailable(format!("cannot run `ip`: {error}"))),
            Ok(_) => {}
        }
        remove_leftovers(tag)?;

        let instance = format!(
            "{}x{}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        );
        let name = format!("{NAME_PREFIX}{tag}-{instance}");
        // Interface names have at most 15 bytes: they carry a hash of the full name.
        let hash = fnv1a(name.as_bytes());
        let short = format!("rh{:06x}", hash & 0xff_ffff);
        let subnet = [10, 64 + ((hash >> 24) % 160) as u8, (hash >> 32) as u8];
        let mut net = TestNet {
            bridge: format!("{short}b"),
            name,
            hosts: Vec::with_capacity(hosts),
        };
        // From here on, a failure drops `net`, which removes whatever was built.
        let bridge = net.bridge.clone();
        ip(&["link", "add", &bridge, "type", "bridge"]).map_err(|error| {
            NetnsError::Unavailable(format!("cannot create a Linux bridge: {error}"))
        })?;
        ip(&["link", "set", &bridge, "alias", &net.name])?;
        ip(&["link", "set", &bridge, "addrgenmode", "none"])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..hosts {
            let host = Host {
                namespace: format!("{}-{i}", net.name),
                interface: "eth0".to_string(),
                outer: format!("{short}v{i}"),
                address: Ipv4Addr::new(subnet[0], subnet[1], subnet[2], i as u8 + 1),
                // Locally administered unicast: 02, then the hash, then the host.
                mac: format!(
                    "02:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    hash as u8,
                    (hash >> 8) as u8,
                    (hash >> 16) as u8,
                    (i >> 8) as u8,
                    i as u8
                ),
            };
            let created = ip(&["netns", "add", &host.namespace]);
            if i == 0 {
                created.map_err(|error| {
                    NetnsError::Unavailable(format!("cannot create a network namespace: {error}"))
                })?;
            } else {
                created?;
            }
            net.hosts.push(host.clone());
            let ns = host.namespace.as_str();
            let inner = host.interface.as_str();
            // The peer is born inside the namespace: no name clash in the root namespace.
            ip(&[
                "link",
                "add",
                &host.outer,
                "type",
                "veth",
                "peer",
                "name",
                inner,
                "address",
                &host.mac,
                "netns",
                ns,
            ])?;
            // No IPv6 link-local addresses: their router and neighbour solicitations
            // would be stray frames on the link (which DPDK ports see).
            ip(&["link", "set", &host.outer, "addrgenmode", "none"])?;
            ip(&["link", "set", &host.outer, "master", &bridge])?;
            ip(&["link", "set", &host.outer, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", inner, "addrgenmode", "none"])?;
            let cidr = format!("{}/24", host.address);
            ip(&["-n", ns, "address", "add", &cidr, "dev", inner])?;
            ip(&["-n", ns, "link", "set", inner, "up"])?;
        }
        Ok(net)
    }

    /// How many hosts.
    pub fn hosts(&self) -> usize {
        self.hosts.len()
    }

    /// The namespace of host `host` (panics if there is no such host, as indexing does).
    pub fn namespace(&self, host: usize) -> &str {
        &self.hosts[host].namespace
    }

    /// The veth interface inside host `host`'s namespace (`eth0`).
    pub fn interface(&self, host: usize) -> &str {
        &self.hosts[host].interface
    }

    /// The veth interface in the root namespace that joins host `host` to the bridge.
    pub fn outer_interface(&self, host: usize) -> &str {
        &self.hosts[host].outer
    }

    /// The bridge's name, in the root namespace.
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// Host `host`'s IPv4 address.
    pub fn address(&self, host: usize) -> Ipv4Addr {
        self.hosts[host].address
    }

    /// The MAC address of host `host`'s interface, `02:..:..:..:..:..` (what a DPDK
    /// `af_packet` port on that interface sends from).
    pub fn mac(&self, host: usize) -> String {
        self.hosts[host].mac.clone()
    }

    /// The command prefix that runs a program on host `host`: `ip netns exec NS`.
    pub fn exec_prefix(&self, host: usize) -> Vec<String> {
        ["ip", "netns", "exec", self.namespace(host)]
            .map(String::from)
            .to_vec()
    }

    /// Removes everything now, reporting the first failure (dropping removes it too, and
    /// ignores failures).
    pub fn remove(mut self) -> Result<(), NetnsError> {
        self.remove_all()
    }

    fn remove_all(&mut self) -> Result<(), NetnsError> {
        let mut first_error = None;
        // Deleting a namespace deletes its veth end, and with it the pair's other end.
        for host in self.hosts.drain(..) {
            if let Err(error) = ip(&["netns", "delete", &host.namespace]) {
                first_error.get_or_insert(error);
            }
            if link_exists(&host.outer) {
                if let Err(error) = ip(&["link", "delete", &host.outer]) {
                    first_error.get_or_insert(error);
                }
            }
        }
        if !self.bridge.is_empty() && link_exists(&self.bridge) {
            if let Err(error) = ip(&["link", "delete", &self.bridge]) {
                first_error.get_or_insert(error);
            }
        }
        self.bridge.clear();
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        let _ = self.remove_all();
    }
}

/// Runs `ip ARGS`; its stderr becomes the error.
fn ip(args: &[&str]) -> Result<String, NetnsError> {
    let command = || format!("ip {}", args.join(" "));
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|error| NetnsError::Command {
            command: command(),
            stderr: error.to_string(),
        })?;
    if !output.status.success() {
        return Err(NetnsError::Command {
            command: command(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Removes the namespaces and bridges of tag `tag` whose process is gone: what a killed
/// run left. A live process's network (a test running in parallel) stays.
fn remove_leftovers(tag: &str) -> Result<(), NetnsError> {
    let prefix = format!("{NAME_PREFIX}{tag}-");
    // `rh-TAG-PIDxSEQ...`: whether PID is dead.
    let dead = |name: &str| -> bool {
        let Some(rest) = name.strip_prefix(&prefix) else {
            return false;
        };
        let Some((pid, _)) = rest.split_once('x') else {
            return false;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists()
    };
    // `ip netns list` prints `NAME` or `NAME (id: N)` per line.
    for line in ip(&["netns", "list"])?.lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        if dead(name) {
            ip(&["netns", "delete", name])?;
        }
    }
    // `ip -o link show type bridge`: `N: NAME: <...> ...\    alias ALIAS`.
    for line in ip(&["-o", "link", "show", "type", "bridge"])?.lines() {
        let Some(alias) = line.split("alias ").nth(1) else {
            continue;
        };
        let alias = alias.split_whitespace().next().unwrap_or_default();
        let name = line.split(": ").nth(1).unwrap_or_default();
        if dead(alias) && !name.is_empty() {
            // Its veth ports went with their namespaces.
            ip(&["link", "delete", name])?;
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits: the short, stable hash that names interfaces.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::time::Duration;

    /// Prints `SKIPPED: TEST: WHY` straight to stderr (libtest captures `eprintln!`).
    fn skip(test: &str, why: &str) {
        let line = format!("SKIPPED: netns::{test}: {why}\n");
        let _ = std::io::stderr().write_all(line.as_bytes());
    }

    fn namespaces() -> String {
        ip(&["netns", "list"]).unwrap_or_default()
    }

    #[test]
    fn bad_tags_and_sizes_are_refused() {
        for tag in [
            "",
            "a-b",
            "with space",
            &"x".repeat(TEST_NET_TAG_BYTES_MAX + 1),
        ] {
            let error = TestNet::create(tag, 2).unwrap_err();
            assert!(matches!(error, NetnsError::Invalid(_)), "{error}");
            let error = error.to_string();
            assert!(error.contains("tag"), "{tag:?}: {error}");
        }
        let error = TestNet::create("ok", 0).unwrap_err().to_string();
        assert!(error.contains("0 hosts"), "{error}");
    }

    /// Runs `body` on a thread that has entered namespace `namespace` (setns affects only
    /// the calling thread).
    fn in_namespace<T: Send + 'static>(
        namespace: &str,
        body: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{namespace}");
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open the namespace");
            use std::os::fd::AsRawFd;
            // SAFETY: a valid namespace file descriptor; only this thread moves.
            let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns {path}");
            body()
        })
    }

    /// Host 1 listens on TCP at its address, host 0 connects to it and sends a line;
    /// `exec_prefix` runs a command inside a host; afterwards every name is gone.
    #[test]
    fn two_hosts_reach_each_other_over_tcp_and_vanish_on_drop() {
        let net = match TestNet::create("unit_tcp", 2) {
            Ok(net) => net,
            Err(NetnsError::Unavailable(why)) => {
                skip(
                    "two_hosts_reach_each_other_over_tcp_and_vanish_on_drop",
                    &why,
                );
                return;
            }
            Err(error) => panic!("{error}"),
        };
        assert_eq!(net.hosts(), 2);
        assert_ne!(net.address(0), net.address(1));
        assert_ne!(net.mac(0), net.mac(1));
        let (ns0, ns1) = (net.namespace(0).to_string(), net.namespace(1).to_string());
        let listed = namespaces();
        assert!(listed.contains(&ns0) && listed.contains(&ns1), "{listed}");

        let target = std::net::SocketAddr::from((net.address(1), 7411));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let listener = in_namespace(&ns1, move || {
            let listener = std::net::TcpListener::bind(target).expect("bind in host 1");
            ready_tx.send(()).unwrap();
            let (mut stream, from) = listener.accept().unwrap();
            let mut line = String::new();
            stream.read_to_string(&mut line).unwrap();
            (line, from)
        });
        ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();
        let client = in_namespace(&ns0, move || {
            let mut stream =
                std::net::TcpStream::connect_timeout(&target, Duration::from_secs(10))?;
            stream.write_all(b"hello from host 0")
        });
        client.join().unwrap().expect("host 0 connects to host 1");
        let (line, from) = listener.join().unwrap();
        assert_eq!(line, "hello from host 0");
        assert_eq!(from.ip(), net.address(0));

        let mut show = net.exec_prefix(1);
        show.extend(["ip", "-o", "address", "show", "dev", "eth0"].map(String::from));
        let output = Command::new(&show[0]).args(&show[1..]).output().unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        assert!(
            text.contains(&format!("inet {}/24", net.address(1))),
            "{text}"
        );
        let lo = ip(&["-n", &ns1, "-o", "link", "show", "dev", "lo"]).unwrap();
        assert!(lo.contains("UP"), "{lo}");
        let link = ip(&["-n", &ns1, "-o", "link", "show", "dev", "eth0"]).unwrap();
        assert!(link.contains(&net.mac(1)), "{link}");

        let bridge = net.bridge().to_string();
        let outer = net.outer_interface(0).to_string();
        drop(net);
        let listed = namespaces();
        assert!(!listed.contains(&ns0) && !listed.contains(&ns1), "{listed}");
        assert!(!link_exists(&bridge) && !link_exists(&outer));
    }

    /// A test that panics while it holds a network leaves nothing behind.
    #[test]
    fn a_panicking_test_leaves_no_namespace() {
        let made = std::sync::Mutex::new(String::new());
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let net = match TestNet::create("unit_panic", 1) {
                Ok(net) => net,
                Err(NetnsError::Unavailable(_)) => return,
                Err(error) => panic!("{error}"),
            };
            *made.lock().unwrap() = net.namespace(0).to_string();
            panic!("the test fails while its network is up");
        }));
        let made = made.into_inner().unwrap();
        if made.is_empty() {
            skip("a_panicking_test_leaves_no_namespace", "no namespaces");
            return;
        }
        assert!(outcome.is_err());
        assert!(!namespaces().contains(&made), "{}", namespaces());
    }

    /// A network that a killed run left (its process id is dead) is removed by the next
    /// `create` of its tag; a live one's is not.
    #[test]
    fn leftovers_of_killed_runs_are_removed() {
        let net = match TestNet::create("unit_left", 1) {
            Ok(net) => net,
            Err(NetnsError::Unavailable(why)) => {
                skip("leftovers_of_killed_runs_are_removed", &why);
                return;
            }
            Err(error) => panic!("{error}"),
        };
        // Forge a leftover: a namespace and a bridge named after a dead process.
        let dead_pid = u32::MAX - 7;
        let name = format!("{NAME_PREFIX}unit_left-{dead_pid}x0");
        let ns = format!("{name}-0");
        ip(&["netns", "add", &ns]).unwrap();
        ip(&["link", "add", "rhleftb", "type", "bridge"]).unwrap();
        ip(&["link", "set", "rhleftb", "alias", &name]).unwrap();
        let again = TestNet::create("unit_left", 1).unwrap();
        assert!(!namespaces().contains(&ns), "{}", namespaces());
        assert!(!link_exists("rhleftb"));
        // The live network of the same tag is still there.
        assert!(namespaces().contains(net.namespace(0)));
        assert!(link_exists(net.bridge()));
        assert_ne!(net.namespace(0), again.namespace(0));
    }
}
