//! Who can send to whom: the directed graph of working links, its cuts and heals, and the
//! named partition shapes of Jepsen (isolate one node, majority/minority, ring, bridge).
//!
//! A shape is a [`NetChange`] value, so a scenario can schedule it like any other change:
//!
//! ```
//! use rehearsal_net_models::topology::{bridge, Topology};
//! use rehearsal_sim_core::NodeId;
//! let mut topology = Topology::full(5);
//! topology.apply(&bridge(5, None)).unwrap();
//! // Node 2 bridges the halves {0, 1} and {3, 4}, which no longer reach each other.
//! assert!(topology.can_send(NodeId(0), NodeId(2)) && topology.can_send(NodeId(2), NodeId(4)));
//! assert!(!topology.can_send(NodeId(0), NodeId(4)));
//! ```

#![warn(missing_docs)]

use petgraph::matrix_graph::{MatrixGraph, NodeIndex};
use petgraph::Directed;
use rehearsal_sim_core::{NetChange, NodeId};
use std::collections::BTreeSet;
use std::fmt;
use std::hash::{BuildHasherDefault, DefaultHasher};

/// A hasher with fixed keys: the graph's id bookkeeping must not depend on a random seed.
type FixedState = BuildHasherDefault<DefaultHasher>;

/// The petgraph graph of working links: node `i` is `NodeId(i)`; an edge `a -> b` means
/// messages from `a` reach `b`. Self-loops are links too (a node messaging itself).
pub type LinkGraph = MatrixGraph<NodeId, (), FixedState, Directed>;

/// The links of a run and which of them are cut. Edge tests are O(1) (an adjacency matrix).
#[derive(Clone)]
pub struct Topology {
    graph: LinkGraph,
    /// Directed links currently cut (missing edges), so "nothing is cut" is one comparison.
    cut_count: usize,
}

impl Topology {
    /// Every node reaches every node, itself included.
    pub fn full(nodes: usize) -> Topology {
        let mut graph = LinkGraph::with_capacity(nodes);
        for i in 0..nodes {
            graph.add_node(NodeId(i as u32));
        }
        for a in 0..nodes {
            for b in 0..nodes {
                graph.add_edge(NodeIndex::new(a), NodeIndex::new(b), ());
            }
        }
        Topology {
            graph,
            cut_count: 0,
        }
    }

    /// The number of nodes.
    pub fn nodes(&self) -> usize {
        self.graph.node_count()
    }

    /// Whether messages from `from` reach `to` now; `false` for nodes outside the run.
    #[inline]
    pub fn can_send(&self, from: NodeId, to: NodeId) -> bool {
        self.graph
            .has_edge(NodeIndex::new(from.index()), NodeIndex::new(to.index()))
    }

    /// Whether no link is cut.
    #[inline]
    pub fn is_whole(&self) -> bool {
        self.cut_count == 0
    }

    /// The underlying petgraph graph, for graph algorithms.
    pub fn graph(&self) -> &LinkGraph {
        &self.graph
    }

    /// Cuts the directed link `from -> to` (no-op if already cut or outside the run).
    pub fn cut(&mut self, from: NodeId, to: NodeId) {
        let (a, b) = (NodeIndex::new(from.index()), NodeIndex::new(to.index()));
        if self.graph.try_remove_edge(a, b).is_some() {
            self.cut_count += 1;
        }
    }

    /// Restores every link.
    pub fn heal(&mut self) {
        let nodes = self.nodes();
        for a in 0..nodes {
            for b in 0..nodes {
                self.graph
                    .update_edge(NodeIndex::new(a), NodeIndex::new(b), ());
            }
        }
        self.cut_count = 0;
    }

    /// Applies a topology change (`Partition`, `CutOneWay`, `Cut`, `Heal`); cuts add to the
    /// ones already in place. Checks every node first, so a refused change changes nothing.
    /// `SetLoss` and `SetLatency` are not topology changes: `Err`.
    pub fn apply(&mut self, change: &NetChange) -> Result<(), String> {
        let nodes = self.nodes();
        let known = |node: &NodeId| {
            if node.index() < nodes {
                Ok(())
            } else {
                Err(format!(
                    "`{change}` names node {}, but the run has nodes 0..{nodes}",
                    node.0
                ))
            }
        };
        match change {
            NetChange::Partition { groups } => {
                // group_of[i]: the group of node i; nodes in no group are isolated.
                let mut group_of: Vec<Option<usize>> = vec![None; nodes];
                for (g, group) in groups.iter().enumerate() {
                    for node in group {
                        known(node)?;
                        if let Some(other) = group_of[node.index()] {
                            if other != g {
                                return Err(format!(
                                    "`{change}` puts node {} in two groups",
                                    node.0
                                ));
                            }
                        }
                        group_of[node.index()] = Some(g);
                    }
                }
                for a in 0..nodes {
                    for b in 0..nodes {
                        let together = group_of[a].is_some() && group_of[a] == group_of[b];
                        // A node always reaches itself: isolation is from the others.
                        if a != b && !together {
                            self.cut(NodeId(a as u32), NodeId(b as u32));
                        }
                    }
                }
            }
            NetChange::CutOneWay { from, to } => {
                from.iter().chain(to).try_for_each(known)?;
                for &a in from {
                    for &b in to {
                        if a != b {
                            self.cut(a, b);
                        }
                    }
                }
            }
            NetChange::Cut { links, .. } => {
                links.iter().flat_map(|(a, b)| [a, b]).try_for_each(known)?;
                for &(a, b) in links {
                    self.cut(a, b);
                }
            }
            NetChange::Heal => self.heal(),
            NetChange::SetLoss { .. } | NetChange::SetLatency { .. } => {
                return Err(format!("`{change}` is not a topology change"))
            }
        }
        Ok(())
    }

    /// The nodes `node` reaches directly (itself included unless that link is cut).
    pub fn sends_to(&self, node: NodeId) -> Vec<NodeId> {
        (0..self.nodes() as u32)
            .map(NodeId)
            .filter(|&to| self.can_send(node, to))
            .collect()
    }

    /// The nodes whose messages reach `node` directly.
    pub fn hears_from(&self, node: NodeId) -> Vec<NodeId> {
        (0..self.nodes() as u32)
            .map(NodeId)
            .filter(|&from| self.can_send(from, node))
            .collect()
    }

    /// Every cut directed link, in (from, to) order.
    pub fn cut_links(&self) -> Vec<(NodeId, NodeId)> {
        let nodes = self.nodes() as u32;
        (0..nodes)
            .flat_map(|a| (0..nodes).map(move |b| (NodeId(a), NodeId(b))))
            .filter(|&(a, b)| !self.can_send(a, b))
            .collect()
    }

    /// The strongly connected components: groups of nodes that can all exchange messages,
    /// perhaps through others. Each sorted, and the list sorted by first node, so a plain
    /// partition reads back as its groups.
    pub fn components(&self) -> Vec<Vec<NodeId>> {
        let mut components: Vec<Vec<NodeId>> = petgraph::algo::tarjan_scc(&self.graph)
            .into_iter()
            .map(|c| {
                let mut c: Vec<NodeId> = c.into_iter().map(|i| NodeId(i.index() as u32)).collect();
                c.sort_unstable();
                c
            })
            .collect();
        components.sort_unstable();
        components
    }
}

impl fmt::Debug for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Topology")
            .field("nodes", &self.nodes())
            .field("cut_links", &self.cut_links())
            .finish()
    }
}

fn all(nodes: u32) -> impl Iterator<Item = NodeId> {
    (0..nodes).map(NodeId)
}

/// Cuts `node` off from every other node (both directions).
pub fn isolate(node: NodeId, nodes: u32) -> NetChange {
    let rest: Vec<NodeId> = all(nodes).filter(|&n| n != node).collect();
    let mut groups = vec![vec![node]];
    if !rest.is_empty() {
        groups.push(rest);
    }
    NetChange::Partition { groups }
}

/// The minority [`majority_minority`] cuts off when none is named: the highest-numbered
/// `(nodes - 1) / 2` nodes, so node 0 (the first leader or primary of most protocols, the
/// server of the unreplicated one) stays with the majority and the run can make progress.
pub fn default_minority(nodes: u32) -> Vec<NodeId> {
    all(nodes)
        .skip((nodes - nodes.saturating_sub(1) / 2) as usize)
        .collect()
}

/// Splits the nodes into the majority and `minority` ([`default_minority`] if `None`).
/// The caller checks that the minority is fewer than half of the nodes (the scenario
/// parser does); the change is made as given either way.
pub fn majority_minority(nodes: u32, minority: Option<&[NodeId]>) -> NetChange {
    let minority: BTreeSet<NodeId> = match minority {
        Some(minority) => minority.iter().copied().collect(),
        None => default_minority(nodes).into_iter().collect(),
    };
    let majority: Vec<NodeId> = all(nodes).filter(|n| !minority.contains(n)).collect();
    let mut groups = vec![majority];
    if !minority.is_empty() {
        groups.push(minority.into_iter().collect());
    }
    NetChange::Partition { groups }
}

/// Jepsen's majorities ring: every node hears from a majority (itself and the nodes just
/// before and after it in id order, wrapping around), and no two nodes hear from the same
/// majority. Node `i` hears from the `m = nodes / 2 + 1` nodes `i - m/2 ..= i - m/2 + m - 1`
/// (mod `nodes`); every other link into it is cut, so with an even `m` some cuts are
/// one-way. With fewer than 3 nodes a majority is everyone: nothing is cut.
pub fn ring(nodes: u32) -> NetChange {
    let majority = nodes / 2 + 1;
    let mut links = Vec::new();
    for to in 0..nodes {
        let first = (to + nodes - majority / 2) % nodes;
        let hears: BTreeSet<u32> = (0..majority).map(|k| (first + k) % nodes).collect();
        for from in 0..nodes {
            if !hears.contains(&from) {
                links.push((NodeId(from), NodeId(to)));
            }
        }
    }
    links.sort_unstable();
    NetChange::Cut {
        shape: "ring".into(),
        links,
    }
}

/// Jepsen's bridge: the nodes below `middle` and those above it cannot reach each other,
/// and `middle` (default `nodes / 2`) still reaches, and is reached by, everyone. For 5
/// nodes the halves are {0, 1} and {3, 4}, bridged by 2. The shape is named `bridge M`.
pub fn bridge(nodes: u32, middle: Option<NodeId>) -> NetChange {
    let middle = middle.unwrap_or(NodeId(nodes / 2));
    let mut links = Vec::new();
    for a in all(nodes).filter(|&a| a < middle) {
        for b in all(nodes).filter(|&b| b > middle) {
            links.push((a, b));
            links.push((b, a));
        }
    }
    links.sort_unstable();
    NetChange::Cut {
        shape: format!("bridge {}", middle.0),
        links,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(nodes: usize, change: &NetChange) -> Topology {
        let mut topology = Topology::full(nodes);
        topology.apply(change).unwrap();
        topology
    }

    fn ids(ids: &[u32]) -> Vec<NodeId> {
        ids.iter().map(|&i| NodeId(i)).collect()
    }

    #[test]
    fn isolated_node_reaches_only_itself_and_the_rest_stay_connected() {
        let t = applied(5, &isolate(NodeId(2), 5));
        assert_eq!(t.sends_to(NodeId(2)), ids(&[2]));
        assert_eq!(t.hears_from(NodeId(2)), ids(&[2]));
        for n in [0, 1, 3, 4] {
            assert_eq!(t.sends_to(NodeId(n)), ids(&[0, 1, 3, 4]));
        }
        assert_eq!(t.components(), vec![ids(&[0, 1, 3, 4]), ids(&[2])]);
    }

    #[test]
    fn majority_and_minority_do_not_reach_each_other() {
        assert_eq!(default_minority(5), ids(&[3, 4]));
        assert_eq!(default_minority(4), ids(&[3]));
        assert_eq!(default_minority(3), ids(&[2]));
        assert_eq!(default_minority(1), ids(&[]));
        assert_eq!(default_minority(0), ids(&[]));
        let t = applied(5, &majority_minority(5, None));
        assert_eq!(t.components(), vec![ids(&[0, 1, 2]), ids(&[3, 4])]);
        assert!(!t.can_send(NodeId(0), NodeId(4)) && !t.can_send(NodeId(4), NodeId(0)));
        assert!(t.can_send(NodeId(2), NodeId(0)) && t.can_send(NodeId(3), NodeId(4)));
        // Two nodes have no minority: nothing is cut.
        assert!(applied(2, &majority_minority(2, None)).is_whole());
    }

    #[test]
    fn a_named_minority_is_cut_from_everyone_else() {
        let t = applied(5, &majority_minority(5, Some(&ids(&[4, 0]))));
        assert_eq!(t.components(), vec![ids(&[0, 4]), ids(&[1, 2, 3])]);
    }

    #[test]
    fn ring_gives_every_node_a_different_majority() {
        for nodes in 3..=9u32 {
            let t = applied(nodes as usize, &ring(nodes));
            let majority = nodes / 2 + 1;
            let mut views = BTreeSet::new();
            for n in all(nodes) {
                let hears = t.hears_from(n);
                assert_eq!(
                    hears.len() as u32,
                    majority,
                    "{nodes} nodes: {n} hears {hears:?}"
                );
                assert!(hears.contains(&n), "a node always hears itself");
                assert_eq!(
                    t.sends_to(n).len() as u32,
                    majority,
                    "{nodes} nodes: {n} sends"
                );
                assert!(views.insert(hears), "{nodes} nodes: two nodes share a view");
            }
            // Every node still reaches every other through the others.
            assert_eq!(t.components().len(), 1);
        }
        assert_eq!(applied(2, &ring(2)).cut_links(), vec![]);
    }

    #[test]
    fn ring_of_five_is_each_node_with_its_two_neighbours() {
        let t = applied(5, &ring(5));
        assert_eq!(t.hears_from(NodeId(0)), ids(&[0, 1, 4]));
        assert_eq!(t.hears_from(NodeId(2)), ids(&[1, 2, 3]));
        assert!(t.can_send(NodeId(0), NodeId(4)) && !t.can_send(NodeId(0), NodeId(2)));
    }

    #[test]
    fn bridge_node_reaches_everyone_and_the_halves_do_not_meet() {
        for nodes in 3..=8u32 {
            for middle in [None, Some(NodeId(1))] {
                let t = applied(nodes as usize, &bridge(nodes, middle));
                let m = middle.map_or(nodes / 2, |m| m.0);
                assert_eq!(t.sends_to(NodeId(m)).len() as u32, nodes);
                assert_eq!(t.hears_from(NodeId(m)).len() as u32, nodes);
                for a in 0..m {
                    // Each half still reaches itself whole.
                    assert_eq!(t.sends_to(NodeId(a)), ids(&(0..=m).collect::<Vec<_>>()));
                    for b in m + 1..nodes {
                        let (a, b) = (NodeId(a), NodeId(b));
                        assert!(!t.can_send(a, b) && !t.can_send(b, a), "{a} and {b} meet");
                    }
                }
                assert_eq!(t.components().len(), 1, "connected through the bridge");
            }
        }
        assert_eq!(
            bridge(5, None)
                .to_string()
                .split(' ')
                .take(2)
                .collect::<Vec<_>>(),
            ["bridge", "2"]
        );
    }

    #[test]
    fn cuts_accumulate_until_heal() {
        let mut t = Topology::full(4);
        t.apply(&NetChange::CutOneWay {
            from: ids(&[0]),
            to: ids(&[1, 0]),
        })
        .unwrap();
        assert!(!t.can_send(NodeId(0), NodeId(1)) && t.can_send(NodeId(1), NodeId(0)));
        assert!(
            t.can_send(NodeId(0), NodeId(0)),
            "a one-way cut spares self-links"
        );
        t.apply(&NetChange::Partition {
            groups: vec![ids(&[0, 1]), ids(&[2])],
        })
        .unwrap();
        assert!(!t.can_send(NodeId(0), NodeId(1)), "the earlier cut stays");
        assert!(!t.can_send(NodeId(3), NodeId(2)) && !t.can_send(NodeId(3), NodeId(0)));
        assert!(t.can_send(NodeId(3), NodeId(3)));
        assert!(!t.is_whole());
        t.apply(&NetChange::Heal).unwrap();
        assert!(t.is_whole());
        assert_eq!(t.cut_links(), vec![]);
        assert_eq!(t.components(), vec![ids(&[0, 1, 2, 3])]);
    }

    #[test]
    fn refused_changes_change_nothing() {
        let mut t = Topology::full(3);
        let bad = NetChange::Cut {
            shape: "custom".into(),
            links: vec![(NodeId(0), NodeId(1)), (NodeId(0), NodeId(9))],
        };
        assert!(t.apply(&bad).unwrap_err().contains("node 9"));
        assert!(t.is_whole());
        let twice = NetChange::Partition {
            groups: vec![ids(&[0, 1]), ids(&[1, 2])],
        };
        assert!(t.apply(&twice).unwrap_err().contains("two groups"));
        assert!(t.is_whole());
        assert!(
            !t.can_send(NodeId(0), NodeId(3)),
            "unknown nodes are unreachable"
        );
    }
}
