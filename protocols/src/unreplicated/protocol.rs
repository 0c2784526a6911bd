//! Unreplicated in the protocol registry.

use super::{
    production_node, Client, Config, Mutant, Node, Output, ProductionNode, RequestsAnswered,
    Server, Testing, SERVER,
};
use rehearsal_sim_core::protocol::{
    KeySource, ParamDoc, ParamDuration, Protocol, Role, Setting, SettingError, Sizes,
};
use rehearsal_sim_core::explore::{explorer, Bounds, Exploration};
use rehearsal_sim_core::{Invariant, NodeId, RestartFn, Time};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Closed-loop clients and one server: the baseline.
pub struct Unreplicated;

/// Parameters of unreplicated.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// A client's first retransmission timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retransmit_after: Option<ParamDuration>,
}

/// Retransmission timeout of clients on real transports: far above a loopback round trip
/// even on a loaded machine, so a retransmission means a lost connection.
pub const RETRANSMIT_AFTER_REAL: Duration = Duration::from_millis(500);

/// A run of unreplicated: its clients and their budget, and the server's mutant.
#[derive(Debug, Clone)]
pub struct Setup {
    pub config: Config,
    pub mutant: Option<Mutant>,
}

impl Protocol for Unreplicated {
    const NAME: &'static str = "unreplicated";
    const ABOUT: &'static str = "Closed-loop clients and one server: the baseline";
    const CLIENTS: bool = true;
    type Params = Params;
    type Config = Setup;
    type Node = Node;
    type RealNode = ProductionNode;

    fn params_doc() -> &'static [ParamDoc] {
        &[ParamDoc {
            name: "retransmit_after",
            values: "DURATION",
            default: "4 one-way latency bounds in the simulator, 500ms on real transports",
            about: "a client's first retransmission timeout (it doubles on each retry)",
        }]
    }

    fn nodes_default() -> u32 {
        1
    }

    fn check_sizes(sizes: &Sizes) -> Result<(), SettingError> {
        if sizes.nodes != 1 {
            return Err(SettingError::new(
                "nodes",
                "unreplicated runs exactly one server: --nodes must be 1",
            )
            .hint(" (use --clients for more clients)"));
        }
        if sizes.clients == 0 {
            return Err(SettingError::new(
                "clients",
                "unreplicated needs at least 1 client",
            ));
        }
        Ok(())
    }

    fn describe_sizes(sizes: &Sizes) -> String {
        match sizes.requests {
            Some(requests) => format!("1 server, {} clients x {requests} requests", sizes.clients),
            None => format!("1 server, {} clients", sizes.clients),
        }
    }

    fn role(_sizes: &Sizes, id: NodeId) -> Role {
        if id == SERVER {
            Role::Server
        } else {
            Role::Client
        }
    }

    fn roles_doc() -> &'static str {
        "node 0 is the server and every other node a client"
    }

    fn mutants() -> &'static [(&'static str, &'static str)] {
        &[(
            "execute-retransmissions",
            "the server forgets its at-most-once table and executes retransmitted requests again",
        )]
    }

    fn configure(setting: &Setting<'_, Params>) -> Result<Setup, String> {
        let retransmit_after = match (setting.params.retransmit_after, setting.network) {
            (Some(after), _) => after.0,
            (None, Some(network)) => network.retransmit_after(),
            (None, None) => RETRANSMIT_AFTER_REAL,
        };
        let mutant = setting.mutant.map(str::parse::<Mutant>).transpose()?;
        Ok(Setup {
            config: Config {
                clients: setting.sizes.clients,
                requests_per_client: setting.sizes.requests.unwrap_or(u64::MAX),
                retransmit_after,
            },
            mutant,
        })
    }

    fn node(setup: &Setup, id: NodeId) -> Result<Node, String> {
        Ok(if id == SERVER {
            Node::Server(Server {
                seam: Testing {
                    mutant: setup.mutant,
                },
                ..Server::default()
            })
        } else {
            Node::Client(Client::new(
                setup.config.requests_per_client,
                setup.config.retransmit_after,
            ))
        })
    }

    fn real_node(setup: &Setup, id: NodeId, _: KeySource<'_>) -> Result<ProductionNode, String> {
        production_node(&setup.config, id).ok_or_else(|| {
            format!(
                "unreplicated has no node {id} (nodes 0 to {})",
                setup.config.clients
            )
        })
    }

    fn invariants(setup: &Setup, _healed: Time) -> Vec<Box<dyn Invariant<Node>>> {
        vec![Box::new(RequestsAnswered::new(&setup.config))]
    }

    fn exploration(setup: &Setup, nodes: Vec<Node>, seed: u64, bounds: Bounds) -> Option<Box<dyn Exploration>> {
        let setup = setup.clone();
        Some(explorer(nodes, seed, move || Self::invariants(&setup, Time::ZERO), bounds))
    }

    fn restart(setup: &Setup) -> Option<RestartFn<Node>> {
        // A restarted node comes back empty: unreplicated keeps no durable state.
        let setup = setup.clone();
        Some(Box::new(move |id, _| {
            Self::node(&setup, id).expect("an unreplicated node always builds")
        }))
    }

    fn is_completion(output: &Output) -> bool {
        matches!(output, Output::Completed { .. })
    }

    fn executions(output: &Output) -> u64 {
        matches!(output, Output::Executed { .. }).into()
    }

    /// Per client, request by request, the server's execution before the client's
    /// completion: the one order a closed loop allows. A request executed twice stays two
    /// adjacent executions, which the invariant reports.
    fn causal_key(node: NodeId, output: &Output) -> [u64; 3] {
        match *output {
            Output::Executed {
                client, request, ..
            } => [u64::from(client.0), request, 0],
            Output::Completed { request, .. } => [u64::from(node.0), request, 1],
        }
    }

    /// With no request limit, every client must have completed at least one request.
    fn output_invariants(setup: &Setup) -> Vec<Box<dyn Invariant<Node>>> {
        let mut config = setup.config.clone();
        if config.requests_per_client == u64::MAX {
            config.requests_per_client = 1;
        }
        vec![Box::new(RequestsAnswered::new(&config))]
    }
}
