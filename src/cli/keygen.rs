//! `rehearsal keygen`: fresh Ed25519 keys for the nodes of a real cluster, one private key
//! file per node and one public-key list (the format is `rehearsal_hardware::keys`'). The
//! same keys sign the protocols' messages and authenticate the TCP connections.

use super::{CliError, EXIT_OK};
use crate::config::Protocol;
use clap::Args;
use rehearsal_hardware::keys::{self, PUBLIC_KEYS_FILE};
use rehearsal_hardware::ClusterConfig;
use rehearsal_sim_core::protocol::KeyNeeds;
use std::io::Write;
use std::path::PathBuf;

/// Write one private key file per node (mode 0600) and one public-key list, from the
/// operating system's random source.
#[derive(Args, Debug, Clone)]
#[command(group = clap::ArgGroup::new("who").required(true).args(["config", "count"]))]
pub struct KeygenArgs {
    /// A cluster file: keys for every node of it (its signing nodes use them for their
    /// signatures, and every node to authenticate its TCP connections).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Keys for nodes 0 to N-1, without a cluster file.
    #[arg(long, value_name = "N")]
    pub count: Option<u32>,
    /// The key directory to write (created if missing; existing keys are never
    /// overwritten): node-ID.key for each node, and public-keys.txt.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// How many nodes need keys, from the cluster file or `--count`.
fn holders(args: &KeygenArgs) -> Result<u32, CliError> {
    let bad = |e: String| CliError::BadInput(e);
    let Some(path) = &args.config else {
        return match args.count {
            Some(0) | None => Err(bad("--count must be at least 1".into())),
            Some(count) => Ok(count),
        };
    };
    let cluster = ClusterConfig::load(path).map_err(|e| bad(e.to_string()))?;
    let protocol =
        Protocol::named(&cluster.protocol).map_err(|e| bad(cluster.error(e).to_string()))?;
    let nodes = u32::try_from(cluster.nodes.len()).unwrap_or(u32::MAX);
    match protocol.key_needs(&cluster).map_err(bad)? {
        // Every node needs one for its TCP connections; signers may be fewer.
        KeyNeeds::Ed25519 { holders } => Ok(holders.max(nodes)),
        KeyNeeds::None => Ok(nodes),
        KeyNeeds::TestbedOnly(why) => Err(bad(cluster
            .error(format!(
                "{why}; key files cannot serve it: write keys = \"testbed\""
            ))
            .to_string())),
    }
}

/// Writes the keys; exit status 0, or 2 for bad arguments, a bad cluster file or a key
/// directory that already holds keys.
pub fn keygen(args: &KeygenArgs, out: &mut dyn Write) -> Result<u8, CliError> {
    let holders = holders(args)?;
    let written =
        keys::generate(&args.out, holders).map_err(|e| CliError::BadInput(e.to_string()))?;
    let dir = args.out.display();
    let last = written.private.len().saturating_sub(1);
    writeln!(
        out,
        "wrote {} private keys ({dir}/node-0.key to {dir}/node-{last}.key, mode 0600) and {}",
        written.private.len(),
        written.public.display()
    )?;
    writeln!(
        out,
        "give each node's machine its own node-ID.key and {PUBLIC_KEYS_FILE} in one directory, \
         and name it in the cluster file: keys = \"{}\"",
        args.out.display()
    )?;
    Ok(EXIT_OK)
}
