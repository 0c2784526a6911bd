//! Nodes over DPDK: opening a node's device as its endpoint.

use rehearsal_hardware::cluster::{DpdkDevice, DpdkNode};
use rehearsal_hardware::dpdk::{
    Dpdk, DpdkConfig, DpdkError, DpdkPort, DpdkTransport, EalConfig, MacAddress,
};
use rehearsal_hardware::{ClusterConfig, NodeConfig};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Opens node `entry`'s DPDK device as its endpoint: initialises the EAL of this
/// process, creates the device (or finds it among those the EAL probed), and starts it
/// with every other node of the cluster as a peer, reached at that node's MAC.
///
/// A memif client's port cannot start before its server listens, and is refused until
/// the server's port has started: the node waits for the server's socket, and starts
/// over if the link does not come up, until `stopped()` or `deadline`.
pub(super) fn open(
    cluster: &ClusterConfig,
    entry: &NodeConfig,
    err: &mut dyn Write,
    stopped: &dyn Fn() -> bool,
    deadline: Option<Instant>,
) -> Result<DpdkTransport, String> {
    let settings = entry.dpdk.as_ref().ok_or_else(|| {
        cluster
            .node_error(entry, "has no `dpdk` settings")
            .to_string()
    })?;
    let eal = eal_config(entry, settings);
    let dpdk = Dpdk::init(&eal).map_err(|error| {
        if settings.eal_args.is_empty() {
            error.to_string()
        } else {
            format!(
                "{error} (a node's eal_args replace the default EAL arguments: on a \
                 machine without hugepages or NIC, start them with --no-huge -m 256 \
                 --no-pci --no-shconf, or leave eal_args out)"
            )
        }
    })?;
    let peers = cluster
        .dpdk_peer_table()
        .map_err(|e| e.to_string())?
        .into_iter()
        .filter(|(id, _)| *id != entry.id)
        .map(|(id, mac)| (id, MacAddress(mac.0)))
        .collect();
    let config = DpdkConfig {
        peers,
        ..DpdkConfig::default()
    };
    let device = &settings.port;
    let memif_client = device.is_memif() && device.arg("role") == Some("client");
    let mut attempt = 0;
    let transport = loop {
        attempt += 1;
        if memif_client {
            wait_for_memif_server(device, entry, err, stopped, deadline)?;
        }
        let port = open_port(dpdk, settings)?;
        let transport =
            DpdkTransport::new(port, entry.id, config.clone()).map_err(|e| e.to_string())?;
        // A memif server refuses clients until its port has started, a moment after
        // its socket appears, and the driver never tries again: a client whose link
        // does not come up starts over with a new port.
        if !memif_client || handshake_done(&transport, stopped, deadline)? {
            break transport;
        }
        drop(transport);
        let socket = device.arg("socket").unwrap_or("its default socket");
        if attempt == MEMIF_CONNECT_ATTEMPTS_MAX {
            return Err(format!(
                "the memif server at {socket} did not take this client in \
                 {MEMIF_CONNECT_ATTEMPTS_MAX} attempts: is another client connected to it, \
                 or are its id and secret other than this one's?"
            ));
        }
        if attempt == 1 {
            let _ = writeln!(
                err,
                "node {}: the memif server at {socket} has not taken this client yet; \
                 connecting again",
                entry.id.0
            );
        }
    };
    if transport.mac().0 != settings.mac.0 {
        // Frames carry node ids and ports run promiscuous, so a point-to-point link
        // works anyway; a switch would not deliver the peers' frames.
        let _ = writeln!(
            err,
            "warning: node {}: port {} has MAC {}, but the cluster file gives the node mac = \
             \"{}\", where its peers send its frames: set mac to the port's",
            entry.id.0,
            transport.port().name(),
            transport.mac(),
            settings.mac
        );
    }
    Ok(transport)
}

/// How long a memif client gives the handshake with its server (milliseconds when the
/// server is ready) before it starts over.
pub(super) const MEMIF_HANDSHAKE_WAIT: Duration = Duration::from_secs(1);

/// Attempts of a memif client to be taken by its server, at most.
pub(super) const MEMIF_CONNECT_ATTEMPTS_MAX: u32 = 30;

/// Waits up to [`MEMIF_HANDSHAKE_WAIT`] for `transport`'s link; fails if `stopped()`
/// or `deadline` passes.
pub(super) fn handshake_done(
    transport: &DpdkTransport,
    stopped: &dyn Fn() -> bool,
    deadline: Option<Instant>,
) -> Result<bool, String> {
    let begun = Instant::now();
    while begun.elapsed() < MEMIF_HANDSHAKE_WAIT {
        if transport.link_up() {
            return Ok(true);
        }
        if stopped() {
            return Err("stopped while connecting to the memif server".into());
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err("the memif link did not come up within --duration".into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(transport.link_up())
}

/// How often a memif client looks for its server's socket.
pub(super) const MEMIF_SERVER_POLL: Duration = Duration::from_millis(20);

/// How long a memif client lets a server whose socket it has just seen start its port
/// before it connects (it is refused before, and has to start over).
pub(super) const MEMIF_SERVER_GRACE: Duration = Duration::from_millis(100);

/// How long a memif client waits for its server before it says it is waiting.
pub(super) const MEMIF_SERVER_NOTICE_AFTER: Duration = Duration::from_secs(2);

/// If `device` (a memif client) has a `socket`, waits until a server listens there.
pub(super) fn wait_for_memif_server(
    device: &DpdkDevice,
    entry: &NodeConfig,
    err: &mut dyn Write,
    stopped: &dyn Fn() -> bool,
    deadline: Option<Instant>,
) -> Result<(), String> {
    let Some(socket) = device.arg("socket") else {
        return Ok(());
    };
    let begun = Instant::now();
    let mut noticed = false;
    let mut waited = false;
    while !unix_socket_listening(socket) {
        waited = true;
        if stopped() {
            return Err(format!(
                "stopped while waiting for a memif server at {socket}"
            ));
        }
        if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
            return Err(format!(
                "no memif server listened at {socket} within --duration"
            ));
        }
        if !noticed && begun.elapsed() >= MEMIF_SERVER_NOTICE_AFTER {
            noticed = true;
            let _ = writeln!(
                err,
                "node {}: waiting for a memif server at {socket} (is the other node running?)",
                entry.id.0
            );
        }
        std::thread::sleep(MEMIF_SERVER_POLL);
    }
    if waited {
        std::thread::sleep(MEMIF_SERVER_GRACE);
    }
    Ok(())
}

/// Whether a Unix socket listens at `path`, as a file or in the abstract namespace
/// (memif's default), as `/proc/net/unix` lists them. Says yes if that list cannot be
/// read, so that the caller tries to connect rather than waits forever.
pub(super) fn unix_socket_listening(path: &str) -> bool {
    /// `__SO_ACCEPTCON` in the Flags column: the socket listens.
    const LISTENING: u32 = 0x0001_0000;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return true;
    };
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let listening = fields
            .get(3)
            .and_then(|flags| u32::from_str_radix(flags, 16).ok())
            .is_some_and(|flags| flags & LISTENING != 0);
        let here = fields
            .get(7)
            .is_some_and(|p| *p == path || p.strip_prefix('@') == Some(path));
        listening && here
    })
}

/// The node's EAL arguments: its `eal_args`, or, without them, arguments that need no
/// hugepages and no NIC, with a file prefix of this process's own (several nodes run
/// on one machine; nothing is left in DPDK's runtime directory).
pub(super) fn eal_config(entry: &NodeConfig, settings: &DpdkNode) -> EalConfig {
    if settings.eal_args.is_empty() {
        EalConfig::without_hardware(&format!(
            "rehearsal-node{}-{}",
            entry.id.0,
            std::process::id()
        ))
    } else {
        let program = std::iter::once("rehearsal".to_string());
        EalConfig::from_args(program.chain(settings.eal_args.iter().cloned()))
    }
}

/// Creates the virtual device the node's `port` names, or, if it gives no driver
/// arguments, takes the device of that name the EAL probed (a NIC, a `--vdev` of
/// `eal_args`).
pub(super) fn open_port(dpdk: &'static Dpdk, settings: &DpdkNode) -> Result<DpdkPort, String> {
    let device = &settings.port;
    if device.args().is_empty() {
        if let Ok(port) = dpdk.probed_port(device.name()) {
            return Ok(port);
        }
    }
    dpdk.vdev_port(device.name(), &vdev_args(device, settings))
        .map_err(|error| describe_vdev_error(device, error))
}

/// The driver arguments the device is created with: as written, plus, for a memif
/// port, the node's MAC (both ends of a link otherwise get the driver's default, one
/// and the same multicast address).
pub(super) fn vdev_args(device: &DpdkDevice, settings: &DpdkNode) -> String {
    let mut args = device.args().to_string();
    if device.is_memif() && device.arg("mac").is_none() {
        if !args.is_empty() {
            args.push(',');
        }
        args.push_str(&format!("mac={}", settings.mac));
    }
    args
}

pub(super) fn describe_vdev_error(device: &DpdkDevice, error: DpdkError) -> String {
    let mut text = if device.args().is_empty() {
        format!(
            "`{device}` is neither a device the EAL probed (a NIC allowed with -a in \
             eal_args, a --vdev there) nor a virtual device that could be created: {error}"
        )
    } else {
        error.to_string()
    };
    // A memif server that was killed leaves its socket file behind, and the next one
    // cannot listen there.
    let stale_socket = device.is_memif()
        && device.arg("role").unwrap_or("server") == "server"
        && device.arg("socket-abstract") == Some("no")
        && device
            .arg("socket")
            .is_some_and(|path| Path::new(path).exists());
    if stale_socket {
        text += " (the memif socket file exists already: if no other node serves it, \
                 it was left by an earlier run; remove it)";
    }
    text
}
