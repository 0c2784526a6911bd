//! Cluster files: what they accept, and errors that name the file, the place and the node.

use rehearsal_hardware::cluster::{DpdkNode, MacAddr};
use rehearsal_hardware::{ClusterConfig, NodeConfig, Role, TransportKind};
use rehearsal_sim_core::NodeId;
use serde::Deserialize;

const THREE_NODES: &str = r#"# an unreplicated cluster on one machine
protocol = "unreplicated"
seed = 42

[params]
retransmit_after = "200ms"

[[node]]
id = 1
role = "client"
address = "127.0.0.1:7001"
dpdk = { port = "net_af_packet0,iface=veth1", mac = "02:00:00:00:00:02", eal_args = ["--file-prefix=n1"] }

[[node]]
id = 0
role = "server"
address = "127.0.0.1:7000"
dpdk = { port = "net_af_packet0,iface=veth0", mac = "02:00:00:00:00:01" }

[[node]]
id = 2
role = "client"
address = "[::1]:7002"
dpdk = { port = "net_af_packet0,iface=veth2", mac = "02-00-00-00-00-03" }
"#;

fn parse(text: &str) -> Result<ClusterConfig, String> {
    ClusterConfig::parse(text, "cluster.toml").map_err(|e| e.to_string())
}

fn error(text: &str) -> String {
    parse(text).expect_err("the file should be refused")
}

#[test]
fn a_full_file_parses_with_nodes_ordered_by_id() {
    let cluster = parse(THREE_NODES).unwrap();
    assert_eq!(cluster.protocol, "unreplicated");
    assert_eq!(cluster.seed, 42);
    let ids: Vec<u32> = cluster.nodes.iter().map(|n| n.id.0).collect();
    assert_eq!(ids, [0, 1, 2]);
    assert_eq!(cluster.node(NodeId(0)).unwrap().role, Role::Server);
    assert_eq!(cluster.ids_with_role(Role::Client), [NodeId(1), NodeId(2)]);
    // Locations point at each node's entry.
    assert_eq!(cluster.node(NodeId(1)).unwrap().location.line, 8);
    assert_eq!(cluster.node(NodeId(0)).unwrap().location.line, 14);
    let table = cluster.tcp_peer_table().unwrap();
    assert_eq!(table[&NodeId(2)], "[::1]:7002".parse().unwrap());
    let dpdk = cluster.node(NodeId(2)).unwrap().dpdk.clone().unwrap();
    assert_eq!(
        dpdk,
        DpdkNode {
            port: "net_af_packet0,iface=veth2".parse().unwrap(),
            mac: MacAddr([2, 0, 0, 0, 0, 3]),
            eal_args: vec![],
        }
    );
    assert_eq!(
        cluster
            .node(NodeId(1))
            .unwrap()
            .dpdk
            .as_ref()
            .unwrap()
            .eal_args,
        ["--file-prefix=n1"]
    );
    cluster.check_transport(TransportKind::Tcp).unwrap();
    cluster.check_transport(TransportKind::Dpdk).unwrap();
}

#[test]
fn a_written_file_reads_back_the_same() {
    let cluster = parse(THREE_NODES).unwrap();
    let again = parse(&cluster.to_toml()).unwrap();
    assert_eq!(again.protocol, cluster.protocol);
    assert_eq!(again.seed, cluster.seed);
    assert_eq!(again.params, cluster.params);
    let strip = |c: &ClusterConfig| -> Vec<_> {
        c.nodes
            .iter()
            .map(|n| (n.id, n.role, n.address, n.dpdk.clone()))
            .collect()
    };
    assert_eq!(strip(&again), strip(&cluster));
}

#[test]
fn a_built_cluster_is_checked_like_a_file() {
    let addr = |port: u16| format!("127.0.0.1:{port}").parse().unwrap();
    let nodes = vec![
        NodeConfig::tcp(NodeId(1), Role::Peer, addr(9001)),
        NodeConfig::tcp(NodeId(0), Role::Peer, addr(9000)),
    ];
    let cluster = ClusterConfig::new("generated", "benaloh", 1, toml::Table::new(), nodes).unwrap();
    assert_eq!(cluster.nodes[0].id, NodeId(0));
    let again = ClusterConfig::parse(&cluster.to_toml(), "generated").unwrap();
    assert_eq!(
        again.tcp_peer_table().unwrap(),
        cluster.tcp_peer_table().unwrap()
    );

    let clash = vec![
        NodeConfig::tcp(NodeId(0), Role::Peer, addr(9000)),
        NodeConfig::tcp(NodeId(1), Role::Peer, addr(9000)),
    ];
    let error = ClusterConfig::new("generated", "benaloh", 1, toml::Table::new(), clash)
        .unwrap_err()
        .to_string();
    assert_eq!(
        error,
        "generated: node 1: address 127.0.0.1:9000 is already node 0's"
    );
}

#[test]
fn syntax_and_type_errors_name_the_line_and_column() {
    let text = THREE_NODES.replace("id = 2", "id = \"two\"");
    let message = error(&text);
    assert!(message.starts_with("cluster.toml:21:6: "), "{message}");

    let message = error(&THREE_NODES.replace("role = \"server\"", "role = \"leader\""));
    assert!(message.starts_with("cluster.toml:16:8: "), "{message}");
    assert!(message.contains("leader"), "{message}");

    let message = error(&THREE_NODES.replace("address = \"[::1]:7002\"", "address = \"nowhere\""));
    assert!(message.starts_with("cluster.toml:23:11: "), "{message}");

    let message = error(&THREE_NODES.replace("02:00:00:00:00:01", "02:00:00:00:01"));
    assert!(message.starts_with("cluster.toml:18:"), "{message}");
    assert!(message.contains("is not a MAC address"), "{message}");

    let message = error(&THREE_NODES.replace("seed = 42", "seed = 42\nsed = 1"));
    assert!(message.starts_with("cluster.toml:4:1: "), "{message}");
    assert!(message.contains("unknown field `sed`"), "{message}");

    let message = error("protocol = \"benaloh\"\n[[node]]\nid = 0\nrole = \"peer\"\nport = 3\n");
    assert!(message.starts_with("cluster.toml:5:1: "), "{message}");
    assert!(message.contains("unknown field `port`"), "{message}");

    let message = error("[[node]]\nid = 0\nrole = \"peer\"\n");
    assert!(message.contains("missing field `protocol`"), "{message}");
}

#[test]
fn node_errors_name_the_node_and_its_entry() {
    let message = error(&THREE_NODES.replace("id = 2", "id = 1"));
    assert_eq!(
        message,
        "cluster.toml:20:1: node 1 is declared twice (first at line 8)"
    );

    let message = error(&THREE_NODES.replace("id = 2", "id = 5"));
    assert_eq!(
        message,
        "cluster.toml:20:1: node id 5 is out of range: the 3 nodes of this file must have ids 0 to 2"
    );

    let message = error(&THREE_NODES.replace("[::1]:7002", "127.0.0.1:7001"));
    assert_eq!(
        message,
        "cluster.toml:20:1: node 2: address 127.0.0.1:7001 is already node 1's"
    );

    let message = error(&THREE_NODES.replace("[::1]:7002", "[::1]:0"));
    assert!(
        message.starts_with("cluster.toml:20:1: node 2: address [::1]:0 has port 0"),
        "{message}"
    );

    let message = error(&THREE_NODES.replace("02-00-00-00-00-03", "02:00:00:00:00:01"));
    assert_eq!(
        message,
        "cluster.toml:20:1: node 2: MAC 02:00:00:00:00:01 is already node 0's"
    );

    let message = error(&THREE_NODES.replace("02-00-00-00-00-03", "ff:ff:ff:ff:ff:ff"));
    assert!(
        message.starts_with(
            "cluster.toml:20:1: node 2: MAC ff:ff:ff:ff:ff:ff is not a unicast address"
        ),
        "{message}"
    );

    let message = error("protocol = \"benaloh\"\n");
    assert!(
        message.starts_with("cluster.toml: the file declares no node"),
        "{message}"
    );
}

#[test]
fn each_transport_needs_its_own_fields_on_every_node() {
    let tcp_only = "protocol = \"benaloh\"\n\
                    [[node]]\nid = 0\nrole = \"peer\"\naddress = \"127.0.0.1:7000\"\n\
                    [[node]]\nid = 1\nrole = \"peer\"\ndpdk = { port = \"net_memif0\", mac = \"02:00:00:00:00:01\" }\n";
    let cluster = parse(tcp_only).unwrap();
    let message = cluster
        .check_transport(TransportKind::Tcp)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("cluster.toml:6:1: node 1: has no `address`"),
        "{message}"
    );
    assert!(cluster.tcp_peer_table().is_err());
    let message = cluster
        .check_transport(TransportKind::Dpdk)
        .unwrap_err()
        .to_string();
    assert!(
        message.starts_with("cluster.toml:2:1: node 0: has no `dpdk` settings"),
        "{message}"
    );
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
struct Params {
    retransmit_after: Option<String>,
    requests_per_client: Option<u64>,
}

#[test]
fn protocol_parameters_are_read_with_their_own_type_and_located_errors() {
    let cluster = parse(THREE_NODES).unwrap();
    let params: Params = cluster.params().unwrap();
    assert_eq!(params.retransmit_after.as_deref(), Some("200ms"));
    assert_eq!(params.requests_per_client, None);

    let cluster = parse(&THREE_NODES.replace("retransmit_after", "retransmit_afterwards")).unwrap();
    let message = cluster.params::<Params>().unwrap_err().to_string();
    assert!(
        message.starts_with("cluster.toml:6:1: [params]: unknown field"),
        "{message}"
    );

    let cluster = parse("protocol = \"x\"\n[[node]]\nid = 0\nrole = \"peer\"\n").unwrap();
    assert_eq!(cluster.params::<Params>().unwrap(), Params::default());
}

#[test]
fn loading_names_the_file() {
    let dir = std::env::temp_dir().join(format!("rehearsal-cluster-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bad.toml");
    std::fs::write(
        &path,
        "protocol = \"benaloh\"\n[[node]]\nid = 0\nrole = \"peer\"\naddress = 7\n",
    )
    .unwrap();
    let message = ClusterConfig::load(&path).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!("{}:5:11: ", path.display())),
        "{message}"
    );
    let missing = dir.join("missing.toml");
    let message = ClusterConfig::load(&missing).unwrap_err().to_string();
    assert!(
        message.starts_with(&format!(
            "{}: cannot read the cluster file",
            missing.display()
        )),
        "{message}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn endless_and_binary_inputs_are_refused_after_a_bounded_read() {
    // Devices report no size: the cap and the text check hold while reading.
    for device in ["/dev/zero", "/dev/urandom"] {
        let path = std::path::Path::new(device);
        if !path.exists() {
            continue;
        }
        let message = ClusterConfig::load(path).unwrap_err().to_string();
        assert!(
            message.starts_with(&format!("{device}: "))
                && (message.contains("NUL byte")
                    || message.contains("not UTF-8")
                    || message.contains("more than the")),
            "{message}"
        );
    }
}
