//! DPDK's environment (the EAL), initialised once per process, and the ports it hands out.

use super::sys;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

/// EAL arguments that need no hugepages, no NIC and no root-only setup: 256 MiB of
/// ordinary memory, no PCI scan, no shared runtime files, no telemetry socket, errors only
/// in the log. [`EalConfig::without_hardware`] adds a `--file-prefix`.
pub const EAL_ARGS_WITHOUT_HARDWARE: &[&str] = &[
    "--no-huge",
    "-m",
    "256",
    "--no-pci",
    "--no-shconf",
    "--no-telemetry",
    "--log-level=error",
];

/// The arguments `rte_eal_init` gets, program name first, exactly as on a DPDK
/// application's command line (before its `--`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EalConfig {
    /// The arguments, `args[0]` being the program name.
    pub args: Vec<String>,
}

impl EalConfig {
    /// [`EAL_ARGS_WITHOUT_HARDWARE`] with `--file-prefix=<file_prefix>` and (on Linux)
    /// `--lcores=0@(<the CPUs this process may use>)`: enough for ring pairs, `net_memif`
    /// and `net_af_packet`. Two processes on one machine need distinct prefixes.
    pub fn without_hardware(file_prefix: &str) -> Self {
        let mut args = vec!["rehearsal".to_string()];
        args.extend(EAL_ARGS_WITHOUT_HARDWARE.iter().map(|a| a.to_string()));
        args.push(format!("--file-prefix={file_prefix}"));
        if let Some(cpus) = allowed_cpus() {
            // One lcore, allowed on every CPU this process may use: the EAL then starts no
            // worker threads (one per core by default, pinned, idle) and pins nothing.
            args.push(format!("--lcores=0@({cpus})"));
        }
        EalConfig { args }
    }

    /// The given arguments verbatim, program name first: for real NICs, e.g.
    /// `["rehearsal", "-l", "2", "-a", "0000:3b:00.0"]`.
    pub fn from_args<S: Into<String>>(args: impl IntoIterator<Item = S>) -> Self {
        EalConfig {
            args: args.into_iter().map(Into::into).collect(),
        }
    }

    /// These arguments with `arg` appended (e.g. `--vdev=net_af_packet0,iface=veth0`).
    pub fn with_arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }
}

impl Default for EalConfig {
    /// [`EalConfig::without_hardware`] with a prefix unique to this process.
    fn default() -> Self {
        EalConfig::without_hardware(&format!("rehearsal-{}", std::process::id()))
    }
}

/// The CPUs this process may run on, as Linux lists them (`0-3,8`), if known.
fn allowed_cpus() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let list = status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))?;
    let list = list.trim();
    let well_formed = !list.is_empty()
        && list
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '-');
    well_formed.then(|| list.to_string())
}

/// Why DPDK could not be set up or a port not be made ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpdkError {
    /// `rte_eal_init` failed. It cannot be retried in the same process.
    #[error("cannot initialise DPDK's EAL with {args:?}: {reason}")]
    EalInit {
        /// The arguments it was given.
        args: Vec<String>,
        /// What DPDK reported.
        reason: String,
    },
    /// The EAL is already initialised in this process with other arguments: it can be
    /// initialised only once per process.
    #[error("DPDK's EAL is already initialised with {active:?}, not {requested:?}: it can be initialised once per process")]
    EalArgsMismatch {
        /// The arguments of the earlier, effective initialisation.
        active: Vec<String>,
        /// The arguments of this call.
        requested: Vec<String>,
    },
    /// A port could not be created, found, configured or started.
    #[error("cannot {action}: {reason}")]
    Port {
        /// What was being done, naming the port.
        action: String,
        /// What DPDK reported.
        reason: String,
    },
    /// A configuration value is out of range.
    #[error("invalid DPDK transport configuration: {0}")]
    Config(String),
}

impl DpdkError {
    fn port(action: impl Into<String>, errno: sys::Errno) -> Self {
        DpdkError::Port {
            action: action.into(),
            reason: sys::describe(errno),
        }
    }
}

/// The process's DPDK environment: proof that the EAL is initialised, and the source of
/// ports. There is at most one per process ([`Dpdk::init`]).
#[derive(Debug)]
pub struct Dpdk {
    args: Vec<String>,
    /// Ports handed out and not yet released: a port serves one transport at a time.
    taken: Mutex<BTreeSet<u16>>,
}

static EAL: OnceLock<Result<Dpdk, DpdkError>> = OnceLock::new();

/// Makes names unique within the process for the rings, ports and pools DPDK keeps in
/// global tables.
static NAMES: AtomicU64 = AtomicU64::new(0);

pub(super) fn unique_name(prefix: &str) -> String {
    format!("{prefix}{}", NAMES.fetch_add(1, Ordering::Relaxed))
}

/// Which end of a `net_memif` link a port is: the server creates the control socket, the
/// client connects to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemifRole {
    /// Creates the socket and waits for the client.
    Server,
    /// Connects to the server's socket (retrying until it is there).
    Client,
}

impl Dpdk {
    /// Initialises the EAL with `config`, once per process: later calls with the same
    /// arguments return the same environment; with other arguments, or after a failed
    /// initialisation, they fail (the EAL cannot be re-initialised).
    pub fn init(config: &EalConfig) -> Result<&'static Dpdk, DpdkError> {
        let result = EAL.get_or_init(|| Dpdk::start(config));
        match result {
            Ok(dpdk) if dpdk.args == config.args => Ok(dpdk),
            Ok(dpdk) => Err(DpdkError::EalArgsMismatch {
                active: dpdk.args.clone(),
                requested: config.args.clone(),
            }),
            Err(error) => Err(error.clone()),
        }
    }

    /// The environment, if [`Dpdk::init`] succeeded in this process.
    pub fn get() -> Option<&'static Dpdk> {
        EAL.get().and_then(|result| result.as_ref().ok())
    }

    /// The environment of this process: the one already initialised, whatever its
    /// arguments, or a new one with [`EalConfig::default`].
    pub fn get_or_init_default() -> Result<&'static Dpdk, DpdkError> {
        match EAL.get() {
            Some(Ok(dpdk)) => Ok(dpdk),
            Some(Err(error)) => Err(error.clone()),
            None => match Dpdk::init(&EalConfig::default()) {
                // Another thread won the race with other arguments: use its environment.
                Err(DpdkError::EalArgsMismatch { .. }) => Dpdk::get().ok_or_else(|| {
                    DpdkError::Config("the EAL vanished after initialisation".into())
                }),
                other => other,
            },
        }
    }

    fn start(config: &EalConfig) -> Result<Dpdk, DpdkError> {
        let fail = |reason: String| DpdkError::EalInit {
            args: config.args.clone(),
            reason,
        };
        if config.args.is_empty() {
            return Err(fail(
                "no arguments: the first must be the program name".into(),
            ));
        }
        let args = config
            .args
            .iter()
            .map(|a| CString::new(a.as_str()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| fail("an argument contains a NUL byte".into()))?;
        // Without shared runtime files, the runtime directory stays empty: remove it.
        let keeps_no_files = config
            .args
            .iter()
            .any(|a| a == "--no-shconf" || a == "--in-memory");
        sys::eal_init(&args, keeps_no_files).map_err(|errno| fail(eal_reason(errno)))?;
        Ok(Dpdk {
            args: config.args.clone(),
            taken: Mutex::new(BTreeSet::new()),
        })
    }

    /// The arguments the EAL was initialised with.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Two new ports joined by a pair of rings (`rte_eth_from_rings`), each ring
    /// [`RING_PAIR_SLOTS`] slots: what one port transmits, the other receives. A real
    /// DPDK link inside one process, for tests and benchmarks.
    pub fn ring_pair(&'static self) -> Result<(DpdkPort, DpdkPort), DpdkError> {
        let name = unique_name("rhr");
        let (a, b, link) = sys::ring_pair(&name, RING_PAIR_SLOTS)
            .map_err(|errno| DpdkError::port(format!("create the ring pair {name}"), errno))?;
        let a = self.claim(a, format!("net_ring_{name}_a"), Some(Arc::clone(&link)))?;
        let b = self.claim(b, format!("net_ring_{name}_b"), Some(link))?;
        Ok((a, b))
    }

    /// A new `net_memif` port whose control socket is the file `socket` (not an abstract
    /// socket). Two processes with one port each, one [`MemifRole::Server`] and one
    /// [`MemifRole::Client`], on the same socket path, form a link; the link is up once
    /// both are started.
    pub fn memif_port(
        &'static self,
        role: MemifRole,
        socket: &Path,
    ) -> Result<DpdkPort, DpdkError> {
        let socket = socket.to_str().ok_or_else(|| {
            DpdkError::Config(format!(
                "the memif socket path {} is not UTF-8",
                socket.display()
            ))
        })?;
        if socket.contains(',') {
            return Err(DpdkError::Config(format!(
                "the memif socket path {socket} contains a comma, which separates driver arguments"
            )));
        }
        let role = match role {
            MemifRole::Server => "server",
            MemifRole::Client => "client",
        };
        let name = unique_name("net_memif");
        self.vdev_port(
            &name,
            &format!("role={role},id=0,socket={socket},socket-abstract=no"),
        )
    }

    /// A new virtual device `name` (which names its driver: `net_memif0`,
    /// `net_af_packet0`, ...) with driver arguments `args`, as `--vdev=name,args` would
    /// make it.
    pub fn vdev_port(&'static self, name: &str, args: &str) -> Result<DpdkPort, DpdkError> {
        let id = sys::vdev_port(name, args).map_err(|errno| {
            DpdkError::port(format!("create the virtual device {name} ({args})"), errno)
        })?;
        self.claim(id, name.to_string(), None)
    }

    /// A port the EAL probed at initialisation: a NIC allowed with `-a <pci address>`,
    /// or a `--vdev` argument, named as there.
    pub fn probed_port(&'static self, device: &str) -> Result<DpdkPort, DpdkError> {
        let id = sys::port_by_name(device)
            .map_err(|errno| DpdkError::port(format!("find the port of device {device}"), errno))?;
        if !sys::port_valid(id) {
            return Err(DpdkError::Port {
                action: format!("find the port of device {device}"),
                reason: format!("port {id} is not valid"),
            });
        }
        self.claim(id, device.to_string(), None)
    }

    fn claim(
        &'static self,
        id: u16,
        name: String,
        link: Option<Arc<sys::RingLink>>,
    ) -> Result<DpdkPort, DpdkError> {
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if !taken.insert(id) {
            return Err(DpdkError::Port {
                action: format!("take port {id} ({name})"),
                reason: "it already serves a transport".into(),
            });
        }
        Ok(DpdkPort {
            id,
            name,
            dpdk: self,
            _link: link,
        })
    }
}

/// Slots of each ring of [`Dpdk::ring_pair`] (one fewer frames fit).
pub const RING_PAIR_SLOTS: u32 = 1024;

fn eal_reason(errno: sys::Errno) -> String {
    let hint = match -errno {
        114 => " (EALREADY: the EAL was initialised before in this process, outside Rehearsal)",
        13 => " (EACCES: permission denied; hugepages or devices may need root)",
        12 => " (ENOMEM: not enough memory for -m; lower it or free memory)",
        _ => "",
    };
    format!("{}{hint}", sys::describe(errno))
}

/// One DPDK port, owned: it serves at most one transport, and is stopped, closed and (if
/// virtual) removed when dropped.
#[derive(Debug)]
pub struct DpdkPort {
    id: u16,
    name: String,
    dpdk: &'static Dpdk,
    /// Keeps a ring pair's rings alive until both ports are released.
    _link: Option<Arc<sys::RingLink>>,
}

impl DpdkPort {
    /// DPDK's port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device name (`net_ring_rhr0_a`, `net_memif3`, a PCI address, ...).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        sys::port_release(self.id);
        let mut taken = self.dpdk.taken.lock().unwrap_or_else(|e| e.into_inner());
        taken.remove(&self.id);
        // The ring link (if any) is dropped after this, when the fields are: after the
        // port that used it is released.
    }
}
