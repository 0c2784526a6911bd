//! Benaloh in the protocol registry: the robust protocol and the workshop's timed one.

use super::{ConfigError, CorrectSum, Mode, Node, Output, MODULUS_DEFAULT};
use rehearsal_sim_core::protocol::{
    KeySource, ParamDoc, Protocol, Setting, SettingError, Sizes, Target,
};
use rehearsal_sim_core::explore::{explorer, Bounds, Exploration};
use rehearsal_sim_core::{Invariant, NodeId, Time};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Benaloh's two registered forms: `Benaloh` (robust, `TIMED = false`) and
/// `BenalohTimed` (the workshop's timers, `TIMED = true`).
pub struct Form<const TIMED: bool>;

/// Additive secret sharing of private values and agreement on their sum (robust).
pub type Benaloh = Form<false>;
/// The workshop's time-triggered Benaloh: phases at 30 s, 45 s and 90 s (racy).
pub type BenalohTimed = Form<true>;

/// Parameters of Benaloh.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// The modulus of the shares and the sum.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u64>,
}

/// A run of Benaloh: every node's configuration and, where messages may be lost, when a
/// node retransmits.
#[derive(Debug, Clone, Copy)]
pub struct Setup {
    pub config: super::Config,
    /// `None` on real transports, which lose no message without losing the connection.
    pub retransmit_after: Option<Duration>,
}

impl<const TIMED: bool> Protocol for Form<TIMED> {
    const NAME: &'static str = if TIMED { "benaloh-timed" } else { "benaloh" };
    const ABOUT: &'static str = if TIMED {
        "The workshop's time-triggered Benaloh: phases at 30 s, 45 s and 90 s (racy)"
    } else {
        "Additive secret sharing of private values and agreement on their sum (robust)"
    };
    type Params = Params;
    type Config = Setup;
    type Node = Node;
    type RealNode = Node;

    fn params_doc() -> &'static [ParamDoc] {
        &[ParamDoc {
            name: "modulus",
            values: "2..=2^32",
            default: "2^31 - 1",
            about: "the modulus of the shares and of the sum",
        }]
    }

    fn check_params(params: &Params, _target: Target) -> Result<(), SettingError> {
        match params.modulus {
            Some(m) if !(2..=1 << 32).contains(&m) => Err(SettingError::new(
                "modulus",
                "the modulus must be between 2 and 2^32",
            )),
            _ => Ok(()),
        }
    }

    fn nodes_default() -> u32 {
        5
    }

    fn check_sizes(sizes: &Sizes) -> Result<(), SettingError> {
        if sizes.nodes < 2 {
            return Err(SettingError::new(
                "nodes",
                "benaloh needs at least 2 nodes to share a secret",
            ));
        }
        Ok(())
    }

    fn roles_doc() -> &'static str {
        "its nodes are all equals"
    }

    fn configure(setting: &Setting<'_, Params>) -> Result<Setup, String> {
        if let Some(mutant) = setting.mutant {
            return Err(format!(
                "{} has no mutant `{mutant}`; it has none",
                Self::NAME
            ));
        }
        let config = super::Config {
            nodes: setting.sizes.nodes,
            modulus: setting.params.modulus.unwrap_or(MODULUS_DEFAULT),
            mode: if TIMED { Mode::WORKSHOP } else { Mode::Robust },
        };
        super::actors(&config).map_err(|e: ConfigError| e.to_string())?;
        // Robust nodes retransmit until acknowledged; the first retry waits for a round
        // trip, as the unreplicated clients do.
        Ok(Setup {
            config,
            retransmit_after: setting.network.map(|n| n.retransmit_after()),
        })
    }

    fn node(setup: &Setup, _id: NodeId) -> Result<Node, String> {
        let node = Node::new(setup.config);
        Ok(match setup.retransmit_after {
            Some(after) => node.retransmitting_after(after),
            None => node,
        })
    }

    fn real_node(setup: &Setup, id: NodeId, _: KeySource<'_>) -> Result<Node, String> {
        Self::node(setup, id)
    }

    fn invariants(setup: &Setup, _healed: Time) -> Vec<Box<dyn Invariant<Node>>> {
        vec![Box::new(CorrectSum::new(&setup.config))]
    }

    /// The robust form explores; the timed form does not: its phases assume every share
    /// arrives before a deadline, which an exploration of every order breaks by design
    /// (it is the simulator's racy workshop schedule).
    fn exploration(setup: &Setup, nodes: Vec<Node>, seed: u64, bounds: Bounds) -> Option<Box<dyn Exploration>> {
        if TIMED {
            return None;
        }
        let setup = *setup;
        Some(explorer(nodes, seed, move || Self::invariants(&setup, Time::ZERO), bounds))
    }

    /// A synchronous protocol: its results depend on when its phase timers fire, so
    /// putting them off would be a fault, not a simplification.
    fn timers_postponable() -> bool {
        !TIMED
    }

    fn real_refusal() -> Option<&'static str> {
        TIMED.then_some(
            "benaloh-timed is the simulator's racy 90-second workshop schedule; run benaloh (robust) on real transports",
        )
    }

    fn is_final(output: &Output) -> bool {
        matches!(output, Output::Total { .. })
    }

    /// Every private value is announced at a node's start, before any share leaves it, so
    /// every `Secret` comes before every `Total`.
    fn causal_key(node: NodeId, output: &Output) -> [u64; 3] {
        let kind = match output {
            Output::Secret { .. } => 0,
            Output::Total { .. } => 1,
        };
        [kind, u64::from(node.0), 0]
    }

    fn output_invariants(setup: &Setup) -> Vec<Box<dyn Invariant<Node>>> {
        vec![Box::new(CorrectSum::new(&setup.config))]
    }
}
