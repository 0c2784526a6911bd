//! Spectrum as actors: the normal case with two and three servers, every Byzantine
//! client, a crashed and a partitioned client, loss, a partition between the servers, a
//! swarm of drawn faults, the statistical independence of a server's view from the
//! channel written (I5), determinism, simulated cost, and malformed input. Mutants are in
//! `spectrum_mutants.rs`.

mod pbft_common;

use pbft_common::TestNet;
use rehearsal_protocols::spectrum::config::{content_digest, points_digest};
use rehearsal_protocols::spectrum::embedding::encode_message;
use rehearsal_protocols::spectrum::messages::{Msg, UploadBody};
use rehearsal_protocols::spectrum::{
    self, checks, default_upload_timeout, dpf, termination_bound, vdpf, Config, Node, NodeWith,
    Output,
};
use rehearsal_sim_core::rand::Rng;
use rehearsal_sim_core::{
    derive_rng, Actor, Context, Effect, EndReason, Fault, NetChange, NodeId, Outcome, RunReport,
    SimConfig, Simulation, Time,
};
use std::sync::Arc;
use std::time::Duration;

// ---- Helpers -----------------------------------------------------------------------------

/// `config` with the timers `configure` would give it on a network of at most 10 ms.
fn tuned(mut config: Config) -> Config {
    config.retransmit = Duration::from_millis(40);
    config.upload_timeout = default_upload_timeout(&config);
    config.termination_bound = termination_bound(&config);
    config
}

fn deployment(
    servers: u32,
    clients: u32,
    rounds: u64,
    channels: u32,
    message_bytes: u32,
) -> Config {
    tuned(Config {
        servers,
        clients,
        rounds,
        channels,
        message_bytes,
        seed: 7,
        ..Config::default()
    })
}

/// A run of `config` with every check; termination owed from the last fault, and not to
/// the `excused` clients.
fn run(
    config: &Config,
    seed: u64,
    net: TestNet,
    faults: &[(Time, Fault)],
    excused: &[NodeId],
) -> RunReport<Node> {
    let mut sim_config = SimConfig::new(seed);
    sim_config.deadline = Some(Time::from_secs(600));
    let mut sim = Simulation::new(sim_config, spectrum::actors(config).unwrap(), net);
    let healed = faults.last().map_or(Time::ZERO, |(at, _)| *at);
    for check in checks::checks_excusing(config, healed, excused) {
        sim.add_invariant(check);
    }
    for (at, fault) in faults {
        sim.schedule_fault(*at, fault.clone()).unwrap();
    }
    sim.run()
}

fn expect_ok(report: RunReport<Node>, what: &str) -> RunReport<Node> {
    assert_eq!(
        report.outcome,
        Outcome::Ok,
        "{what} (seed {}): {:?}",
        report.seed,
        report.violations
    );
    report
}

fn net() -> TestNet {
    TestNet::new("uniform:1ms..10ms")
}

fn publications(report: &RunReport<Node>) -> &[spectrum::publisher::Publication] {
    report
        .actors
        .iter()
        .find_map(NodeWith::as_publisher)
        .unwrap()
        .publications()
}

fn server_totals(report: &RunReport<Node>, server: usize) -> spectrum::server::ServerTotals {
    report.actors[server].as_server().unwrap().totals()
}

fn byzantine(node: NodeId, behavior: &str) -> Fault {
    Fault::Byzantine {
        node,
        behavior: behavior.into(),
    }
}

// ---- The normal case ---------------------------------------------------------------------------

#[test]
fn sixty_four_clients_publish_every_writers_message_on_its_channel_without_faults() {
    let config = deployment(2, 64, 3, 16, 1024);
    assert_eq!(config.writers(), 16);
    let report = expect_ok(run(&config, 1, net(), &[], &[]), "no faults");
    assert_eq!(report.end, EndReason::Quiescent);
    let published = publications(&report);
    assert_eq!(published.len(), 3);
    for p in published {
        assert_eq!(p.accepted, 64, "round {}: every client accepted", p.round);
        for (channel, digest) in p.channels.iter().enumerate() {
            // Client `channel` writes to channel `channel`, alone.
            let message = config.message(channel as u32, p.round);
            assert_eq!(
                *digest,
                content_digest(&message),
                "round {} channel {channel}",
                p.round
            );
        }
    }
    let summary = spectrum::summary(&report.actors);
    assert_eq!(summary.writes_accepted, 192);
    assert_eq!((summary.writes_rejected, summary.writes_absent), (0, 0));
    assert!(summary.round_latency_mean_ns > 0 && summary.writes_per_second > 0.0);
}

#[test]
fn three_servers_publish_every_writers_message_with_the_multi_server_variant() {
    let config = deployment(3, 4, 2, 4, 40);
    let report = expect_ok(run(&config, 2, net(), &[], &[]), "three servers");
    let published = publications(&report);
    assert_eq!(published.len(), 2);
    for p in published {
        assert_eq!(p.accepted, 4);
        for (channel, digest) in p.channels.iter().enumerate() {
            let message = config.message(channel as u32, p.round);
            assert_eq!(
                *digest,
                points_digest(&encode_message(&message).unwrap()),
                "round {} channel {channel}",
                p.round
            );
        }
    }
}

#[test]
fn channels_without_a_writer_publish_zero_and_covers_change_nothing() {
    // 3 writers on 6 channels, 5 cover clients.
    let config = tuned(Config {
        writers: Some(3),
        ..deployment(2, 8, 2, 6, 48)
    });
    let report = expect_ok(run(&config, 3, net(), &[], &[]), "covers");
    let zero = content_digest(&[0u8; 48]);
    for p in publications(&report) {
        assert_eq!(p.accepted, 8);
        for (channel, digest) in p.channels.iter().enumerate() {
            if channel < 3 {
                assert_eq!(
                    *digest,
                    content_digest(&config.message(channel as u32, p.round))
                );
            } else {
                assert_eq!(*digest, zero, "channel {channel} has no writer");
            }
        }
    }
}

// ---- Byzantine clients ----------------------------------------------------------------------

/// 10 clients, 6 of them writers on 8 channels, 3 rounds: Byzantine writers (clients 1,
/// 3, ...) and cover clients (7, 8, ...) behave as `behaviors` say. They switch at time 0,
/// after their first uploads left: they forge from round 1 on.
fn byzantine_run(servers: u32, behaviors: &[&str], seed: u64) -> (Config, RunReport<Node>) {
    let config = tuned(Config {
        writers: Some(6),
        ..deployment(servers, 10, 3, 8, 32)
    });
    let mut faults = Vec::new();
    for (i, behavior) in behaviors.iter().enumerate() {
        // Writers 1, 3, ... and cover clients 7, 8, ...
        for index in [1 + 2 * i as u32, 7 + i as u32] {
            let node = config.client_node(index % config.clients);
            faults.push((Time::ZERO, byzantine(node, behavior)));
        }
    }
    let report = run(&config, seed, net(), &faults, &[]);
    (config, report)
}

#[test]
fn every_byzantine_client_is_rejected_by_both_servers_and_honest_channels_publish() {
    for behavior in ["unauthorised", "two-positions", "split-message", "garbage"] {
        let (config, report) = byzantine_run(2, &[behavior], 11);
        let report = expect_ok(report, behavior);
        assert_eq!(publications(&report).len(), 3, "{behavior}");
        // Two Byzantine clients, two forged rounds: four rejections, alike on both servers.
        for server in 0..2 {
            let totals = server_totals(&report, server);
            assert_eq!(totals.rejected, 4, "{behavior}: server {server}");
            let clients = u64::from(config.clients);
            assert_eq!(totals.accepted, clients + 2 * (clients - 2), "{behavior}");
        }
        if behavior == "garbage" {
            assert!(
                server_totals(&report, 0).malformed >= 4,
                "garbage is counted"
            );
        }
    }
}

#[test]
fn all_byzantine_behaviours_together_leave_the_honest_channels_correct() {
    let (config, report) = byzantine_run(
        2,
        &["unauthorised", "two-positions", "split-message", "garbage"],
        12,
    );
    let report = expect_ok(report, "all together");
    // Writers 1, 3, 5, 7 (7 is a cover: writers are 0..6) and covers 7, 8, 9, 10 mod 10 = 0.
    let byzantine: std::collections::BTreeSet<u32> = [1, 3, 5, 7, 8, 9, 0].into();
    let honest = config.clients - byzantine.len() as u32;
    // Round 0 was honest throughout.
    assert_eq!(
        server_totals(&report, 1).accepted,
        u64::from(config.clients + 2 * honest)
    );
    for p in publications(&report) {
        for channel in [2u32, 4] {
            // Honest writers 2 and 4 own these channels alone.
            assert_eq!(
                p.channels[channel as usize],
                content_digest(&config.message(channel, p.round))
            );
        }
    }
}

#[test]
fn byzantine_clients_are_rejected_by_three_servers_too() {
    let (_, report) = byzantine_run(
        3,
        &["unauthorised", "two-positions", "split-message", "garbage"],
        13,
    );
    expect_ok(report, "three servers, all behaviours");
}

#[test]
fn a_client_turning_byzantine_mid_run_is_honest_before_and_rejected_after() {
    let config = deployment(2, 6, 4, 6, 32);
    let node = config.client_node(2);
    let faults = [(Time::from_millis(60), byzantine(node, "unauthorised"))];
    let report = expect_ok(run(&config, 14, net(), &faults, &[]), "mid-run switch");
    let totals = server_totals(&report, 0);
    assert!(totals.rejected >= 1 && totals.rejected < 4, "{totals:?}");
}

#[test]
fn servers_and_the_publisher_cannot_turn_byzantine() {
    let config = deployment(2, 2, 1, 2, 8);
    let mut actors = spectrum::actors(&config).unwrap();
    for actor in actors.iter_mut().take(3) {
        let error = actor.set_byzantine("garbage").unwrap_err();
        assert!(error.contains("only clients can"), "{error}");
    }
    assert!(actors[3].set_byzantine("garbage").is_ok());
    let error = actors[3].set_byzantine("loud").unwrap_err();
    assert!(
        error.contains("unknown Spectrum Byzantine behaviour"),
        "{error}"
    );
    let production = spectrum::ProductionNode::new(&config, NodeId(3)).unwrap();
    assert!(production.can_turn_byzantine("garbage").is_err());
    assert!(<spectrum::ProductionNode as Actor>::byzantine_behaviors().is_empty());
    let mutant = Config {
        mutant: spectrum::Mutant::NoCwHash,
        ..config
    };
    assert!(spectrum::ProductionNode::new(&mutant, NodeId(0)).is_err());
}

// ---- Crashes, partitions, loss ------------------------------------------------------------------

#[test]
fn a_crashed_client_is_left_out_at_the_upload_timeout_and_the_others_publish() {
    let config = deployment(2, 6, 3, 6, 64);
    let crashed = config.client_node(4);
    // It crashes at 0, after its first uploads left: round 0 still has its write.
    let faults = [(Time::ZERO, Fault::Crash(crashed))];
    let report = expect_ok(
        run(&config, 21, net(), &faults, &[crashed]),
        "crashed client",
    );
    let published = publications(&report);
    assert_eq!(published.len(), 3);
    assert_eq!(published[0].accepted, 6);
    for p in &published[1..] {
        assert_eq!(p.accepted, 5, "round {}", p.round);
        assert_eq!(
            p.channels[4],
            content_digest(&[0u8; 64]),
            "the crashed writer's channel"
        );
        assert_eq!(p.channels[1], content_digest(&config.message(1, p.round)));
    }
    assert_eq!(spectrum::summary(&report.actors).writes_absent, 2);
    // Rounds 1 and 2 each waited for the timeout, no longer.
    let last = published.last().unwrap().at;
    assert!(
        last >= Time::ZERO.after(config.upload_timeout * 2),
        "{last}"
    );
    assert!(last < Time::ZERO.after(config.upload_timeout * 3), "{last}");
}

#[test]
fn a_client_partitioned_from_the_servers_is_left_out_and_catches_up_after_heal() {
    let config = deployment(2, 6, 4, 6, 64);
    let alone = config.client_node(3);
    let rest: Vec<NodeId> = (0..config.nodes())
        .map(NodeId)
        .filter(|&n| n != alone)
        .collect();
    let cut = Fault::Network(NetChange::Partition {
        groups: vec![rest, vec![alone]],
    });
    let heal_at = Time::ZERO.after(config.upload_timeout * 2);
    let faults = [
        (Time::ZERO, cut),
        (heal_at, Fault::Network(NetChange::Heal)),
    ];
    let report = expect_ok(run(&config, 22, net(), &faults, &[]), "partitioned client");
    let published = publications(&report);
    assert_eq!(published.len(), 4);
    assert!(published[0].accepted == 5, "left out while cut off");
    let client = report.actors[alone.index()].as_client().unwrap();
    assert_eq!(client.completions().len(), 4, "it completed every round");
}

#[test]
fn twenty_percent_loss_still_publishes_every_round() {
    let config = deployment(2, 12, 4, 8, 128);
    for seed in 31..=33 {
        let report = expect_ok(run(&config, seed, net().loss(0.2), &[], &[]), "20% loss");
        assert_eq!(publications(&report).len(), 4, "seed {seed}");
    }
}

#[test]
fn a_partition_between_the_servers_that_heals_publishes_every_round() {
    let config = deployment(2, 8, 4, 8, 64);
    // Cut server 0 from server 1 only: everyone else reaches both.
    let others: Vec<NodeId> = (2..config.nodes()).map(NodeId).collect();
    let with = |server: u32| -> Vec<NodeId> {
        std::iter::once(NodeId(server))
            .chain(others.iter().copied())
            .collect()
    };
    let cut = Fault::Network(NetChange::Partition {
        groups: vec![with(0), with(1)],
    });
    let faults = [
        (Time::from_millis(30), cut),
        (Time::from_millis(1_500), Fault::Network(NetChange::Heal)),
    ];
    let report = expect_ok(run(&config, 41, net(), &faults, &[]), "server partition");
    assert_eq!(publications(&report).len(), 4);
}

/// A swarm in miniature, with the faults `rehearsal sim --swarm` draws and this file's
/// network can take: loss up to 30 %, duplication, up to two partitions of random shape
/// that heal, up to two pauses, up to three Byzantine clients, all in the first half of
/// the run's expected span. (`rehearsal::swarm` lives in the CLI crate, which protocols
/// cannot use; tests/tests runs the real one.)
#[test]
fn swarm_draws_of_faults_and_byzantine_clients_leave_spectrum_correct_and_live() {
    let base = deployment(2, 6, 3, 6, 32);
    let behaviors = <Node as Actor>::byzantine_behaviors();
    let mut byzantine_draws = 0;
    for seed in 1..=50u64 {
        let mut rng = derive_rng(seed, "spectrum swarm test", 0);
        let loss = rng.random_range(0.0..0.30);
        let duplicate = if rng.random_bool(0.5) {
            rng.random_range(0.0..0.05)
        } else {
            0.0
        };
        let config = base.clone();
        let nodes = config.nodes();
        let window_ms = 2_000u64;
        let mut faults: Vec<(Time, Fault)> = Vec::new();
        for _ in 0..rng.random_range(0..=2u32) {
            let at = rng.random_range(0..window_ms);
            let heal = at + rng.random_range(100..=500);
            let groups = if rng.random_bool(0.5) {
                let alone = NodeId(rng.random_range(0..nodes));
                let rest = (0..nodes).map(NodeId).filter(|&n| n != alone).collect();
                vec![vec![alone], rest]
            } else {
                let (mut a, mut b) = (Vec::new(), Vec::new());
                for n in 0..nodes {
                    if rng.random_bool(0.5) {
                        a.push(NodeId(n))
                    } else {
                        b.push(NodeId(n))
                    }
                }
                vec![a, b]
            };
            faults.push((
                Time::from_millis(at),
                Fault::Network(NetChange::Partition { groups }),
            ));
            faults.push((Time::from_millis(heal), Fault::Network(NetChange::Heal)));
        }
        for _ in 0..rng.random_range(0..=2u32) {
            let node = NodeId(rng.random_range(0..nodes));
            let at = rng.random_range(0..window_ms);
            faults.push((Time::from_millis(at), Fault::Pause(node)));
            faults.push((
                Time::from_millis(at + rng.random_range(20..=400)),
                Fault::Resume(node),
            ));
        }
        let drawn = rng.random_range(0..=3u32);
        byzantine_draws += usize::from(drawn > 0);
        for _ in 0..drawn {
            let node = config.client_node(rng.random_range(0..config.clients));
            let behavior = behaviors[rng.random_range(0..behaviors.len())];
            let at = rng.random_range(0..window_ms);
            faults.push((Time::from_millis(at), byzantine(node, behavior)));
        }
        faults.sort_by_key(|(at, _)| *at);
        let net = net().loss(loss).duplicate(duplicate);
        let report = run(&config, seed, net, &faults, &[]);
        assert_eq!(
            report.outcome,
            Outcome::Ok,
            "swarm seed {seed} (loss {loss:.2}, duplicate {duplicate:.3}, faults {faults:?}): {:?}",
            report.violations
        );
        assert_eq!(publications(&report).len(), 3, "seed {seed}");
    }
    assert!(
        byzantine_draws >= 20,
        "{byzantine_draws} draws had Byzantine clients"
    );
}

// ---- I5: a server's view does not depend on the channel --------------------------------------

/// The χ² statistic of independence between the column (the channel written, or a
/// cover) and each bit of `views` (rows of bits as server A sees them), summed over bit
/// positions, and its degrees of freedom.
// Indices read as the formula does: column c, bit position j.
#[allow(clippy::needless_range_loop)]
fn independence_chi_square(views: &[(usize, Vec<bool>)], columns: usize) -> (f64, usize) {
    let positions = views[0].1.len();
    let mut ones = vec![vec![0f64; positions]; columns];
    let mut totals = vec![0f64; columns];
    for (column, bits) in views {
        totals[*column] += 1.0;
        for (j, &bit) in bits.iter().enumerate() {
            ones[*column][j] += f64::from(u8::from(bit));
        }
    }
    let all: f64 = totals.iter().sum();
    let mut chi = 0.0;
    for j in 0..positions {
        let p = (0..columns).map(|c| ones[c][j]).sum::<f64>() / all;
        if p == 0.0 || p == 1.0 {
            // Constant bit: no information either way (and 0/0 terms).
            continue;
        }
        for c in 0..columns {
            let (e1, e0) = (totals[c] * p, totals[c] * (1.0 - p));
            let (o1, o0) = (ones[c][j], totals[c] - ones[c][j]);
            chi += (o1 - e1).powi(2) / e1 + (o0 - e0).powi(2) / e0;
        }
    }
    (chi, positions * (columns - 1))
}

/// The χ² critical value at 99.9 % for `df` degrees of freedom (Wilson–Hilferty; within
/// 0.2 % of the tables for df ≥ 30).
fn chi_square_999(df: usize) -> f64 {
    let k = df as f64;
    let z = 3.090_232; // the standard normal's 99.9 % quantile
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

/// What server A sees of 2,000 uploads (250 per column: each of 7 channels written, and
/// covers), as bits: its key's per-channel bits and the low bit of each seed.
fn server_a_views(leaky: bool) -> Vec<(usize, Vec<bool>)> {
    const CHANNELS: usize = 7;
    let mut rng = derive_rng(2026, "spectrum I5 statistics", 0);
    let keys: Vec<vdpf::AccessKey> = (0..CHANNELS)
        .map(|_| vdpf::AccessKey::random(&mut rng))
        .collect();
    let mut views = Vec::new();
    for trial in 0..2_000usize {
        let column = trial % (CHANNELS + 1);
        let [mut a, _] = if column < CHANNELS {
            vdpf::gen_write(&keys[column], CHANNELS, column, b"m", &mut rng).unwrap()
        } else {
            vdpf::gen_cover(CHANNELS, 1, &mut rng).unwrap()
        };
        if leaky {
            // A broken DPF whose bits are not randomised: set only where it writes.
            a.key.bits = (0..CHANNELS).map(|j| j == column).collect();
        }
        let mut bits = a.key.bits.clone();
        bits.extend(a.key.seeds.iter().map(|s| s[0] & 1 == 1));
        views.push((column, bits));
    }
    views
}

#[test]
fn the_bits_a_server_sees_are_independent_of_the_channel_written_at_99_9_percent() {
    let (chi, df) = independence_chi_square(&server_a_views(false), 8);
    assert_eq!(df, 14 * 7);
    let critical = chi_square_999(df);
    assert!(
        chi < critical,
        "χ² = {chi:.1} over {df} degrees of freedom exceeds the 99.9 % critical value {critical:.1}"
    );
}

#[test]
fn the_independence_test_catches_a_dpf_whose_bits_are_not_randomised() {
    let (chi, df) = independence_chi_square(&server_a_views(true), 8);
    let critical = chi_square_999(df);
    assert!(
        chi > critical,
        "χ² = {chi:.1} under the critical value {critical:.1}"
    );
}

#[test]
fn server_view_uniform_catches_an_upload_that_gives_the_writer_away() {
    use rehearsal_protocols::spectrum::checks::ServerViewUniform;
    use rehearsal_protocols::spectrum::View;
    use rehearsal_sim_core::Invariant;
    let config = deployment(2, 3, 1, 2, 8);
    let mut check = ServerViewUniform::new(&config);
    let view = |client: u32, bytes: u64| View {
        client: NodeId(client),
        uploads: 1,
        bytes,
    };
    let decided = |views: Vec<View>| Output::Decided {
        round: 0,
        accepted: vec![],
        rejected: vec![],
        absent: vec![],
        views,
    };
    let uniform = decided(vec![view(3, 100), view(4, 100), view(5, 100)]);
    assert!(check.on_output(NodeId(0), Time::ZERO, &uniform).is_ok());
    let leaky = decided(vec![view(3, 100), view(4, 132), view(5, 100)]);
    let error = check.on_output(NodeId(0), Time::ZERO, &leaky).unwrap_err();
    assert!(error.contains("n4"), "{error}");
}

// ---- Determinism and cost ------------------------------------------------------------------------

#[test]
fn same_seed_same_trace_digest_and_other_seeds_other_runs() {
    let config = deployment(2, 6, 2, 4, 32);
    let digest = |seed| run(&config, seed, net().loss(0.1), &[], &[]).digest.clone();
    assert_eq!(digest(5), digest(5));
    assert_ne!(digest(5), digest(6));
}

#[test]
fn a_rounds_simulated_latency_grows_with_channels_and_message_size() {
    let latency = |channels: u32, message_bytes: u32| {
        let config = Config {
            // Constant latency: the difference is the servers' charged CPU time.
            ..deployment(2, 8, 2, channels, message_bytes)
        };
        let report = expect_ok(
            run(&config, 1, TestNet::new("constant:5ms"), &[], &[]),
            "cost",
        );
        spectrum::summary(&report.actors).round_latency_mean_ns
    };
    let base = latency(16, 256);
    let more_channels = latency(256, 256);
    let longer = latency(16, 16_384);
    // 8 clients × 256 channels × 256 bytes: about 0.1 ms more evaluation per round, and
    // the audits; 16 KiB messages: about 0.3 ms.
    assert!(more_channels > base + 100_000, "{base} -> {more_channels}");
    assert!(longer > base + 200_000, "{base} -> {longer}");
}

// ---- Malformed input ---------------------------------------------------------------------------

/// Hands `msg` from `from` to `node` directly and returns its effects.
fn deliver(node: &mut Node, me: NodeId, from: NodeId, msg: Msg) -> Vec<Effect<Node>> {
    let mut rng = derive_rng(1, "deliver", 0);
    let mut next_timer = 0;
    let mut effects = Vec::new();
    let mut cx = Context::new(me, Time::ZERO, &mut rng, &mut next_timer, &mut effects);
    node.on_message(from, msg, &mut cx);
    effects
}

fn outputs(effects: &[Effect<Node>]) -> Vec<&Output> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Output(o) => Some(o),
            _ => None,
        })
        .collect()
}

fn annotations(effects: &[Effect<Node>]) -> Vec<&str> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Annotate(a) => Some(a.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn malformed_uploads_are_counted_rejections_with_a_clear_error_never_a_panic() {
    let config = deployment(2, 4, 1, 4, 16);
    let mut server = Node::new(&config, NodeId(0)).unwrap();
    let mut rng = derive_rng(3, "malformed", 0);
    let [good, _] = vdpf::gen_cover(4, 16, &mut rng).unwrap();
    let client = |i: u32| config.client_node(i);
    let mut short = good.clone();
    short.key.seeds.pop();
    let other_variant = spectrum::multi::gen_cover(3, 4, 1, &mut rng)
        .unwrap()
        .remove(0);
    let cases: Vec<(Msg, &str)> = vec![
        (
            Msg::Upload {
                round: 0,
                body: Arc::new(UploadBody::TwoServer(short)),
            },
            "DpfKey.seeds covers 3 channels, but there are 4",
        ),
        (
            Msg::Upload {
                round: 0,
                body: Arc::new(UploadBody::Multi(other_variant)),
            },
            "a k-server upload sent to a 2-server deployment",
        ),
        (
            Msg::RawUpload {
                round: 0,
                bytes: Arc::new(vec![1, 2, 3]),
            },
            "undecodable upload",
        ),
    ];
    for (i, (msg, error)) in cases.into_iter().enumerate() {
        let effects = deliver(&mut server, NodeId(0), client(i as u32), msg);
        let out = outputs(&effects);
        assert!(
            matches!(out.first(), Some(Output::Malformed { error: e, .. }) if e.contains(error)),
            "case {i}: {out:?}"
        );
    }
    assert_eq!(server.as_server().unwrap().totals().malformed, 3);
    // The honest client's upload after them is audited as usual (no refusal).
    let effects = deliver(
        &mut server,
        NodeId(0),
        client(3),
        Msg::Upload {
            round: 0,
            body: Arc::new(UploadBody::TwoServer(good)),
        },
    );
    assert!(outputs(&effects).is_empty());
    // Messages from the wrong node or of the wrong kind are dropped and annotated.
    for (from, msg) in [
        (
            NodeId(1),
            Msg::Upload {
                round: 0,
                body: Arc::new(UploadBody::TwoServer(dpf_cover_upload())),
            },
        ),
        (
            client(0),
            Msg::Token {
                round: 0,
                client: client(1),
                token: spectrum::messages::AuditToken::Malformed,
            },
        ),
        (
            client(0),
            Msg::Close {
                round: 0,
                accepted: vec![],
                rejected: vec![],
            },
        ),
        (
            NodeId(1),
            Msg::Upload {
                round: 9,
                body: Arc::new(UploadBody::TwoServer(dpf_cover_upload())),
            },
        ),
    ] {
        let effects = deliver(&mut server, NodeId(0), from, msg);
        assert!(!annotations(&effects).is_empty(), "{:?}", outputs(&effects));
        assert!(outputs(&effects).is_empty());
    }
}

fn dpf_cover_upload() -> vdpf::Upload {
    let mut rng = derive_rng(4, "cover", 0);
    let [key, _] = dpf::gen_cover(4, 16, &mut rng).unwrap();
    vdpf::Upload {
        key,
        proof: vdpf::gen_cover_proofs(&mut rng)[0],
    }
}

#[test]
fn damaged_message_bytes_do_not_decode_and_never_panic() {
    // What the real runtime does with a frame: decode it, or count and drop it.
    let config = deployment(2, 2, 1, 4, 16);
    let mut rng = derive_rng(5, "damaged", 0);
    let [up, _] = vdpf::gen_write(&config.access_key(1), 4, 1, &[7; 16], &mut rng).unwrap();
    let msg = Msg::Upload {
        round: 0,
        body: Arc::new(UploadBody::TwoServer(up)),
    };
    let mut bytes = Vec::new();
    rehearsal_sim_core::codec::encode_into(&msg, &mut bytes).unwrap();
    assert!(rehearsal_sim_core::codec::decode::<Msg>(&bytes).is_ok());
    for cut in (0..bytes.len()).step_by(7) {
        assert!(rehearsal_sim_core::codec::decode::<Msg>(&bytes[..cut]).is_err());
    }
    for at in (0..bytes.len()).step_by(5) {
        let mut damaged = bytes.clone();
        damaged[at] ^= 0xff;
        let _ = rehearsal_sim_core::codec::decode::<Msg>(&damaged);
    }
}
