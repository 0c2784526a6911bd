//! The network models message by message: determinism per seed, rates and distributions,
//! bandwidth queueing, and network changes, by calling `route`/`admit`/`apply` directly.

use rehearsal_net_models::{
    Bandwidth, InFlight, LatencyMatrix, LinkMode, LinkOverride, NetConfig, Network,
};
use rehearsal_sim_core::{
    derive_rng, Admit, Fate, Latency, NetChange, NetworkModel, NodeId, Packet, SimRng, Time,
};

fn spec(text: &str) -> Latency {
    text.parse().unwrap()
}

fn packet(from: u32, to: u32, sent_at_ns: u64, bytes: usize) -> Packet {
    Packet {
        from: NodeId(from),
        to: NodeId(to),
        sent_at: Time(sent_at_ns),
        bytes,
    }
}

/// `count` messages 0 -> 1, one every microsecond, 100 bytes each.
fn fates(config: &NetConfig, seed: u64, count: usize) -> Vec<Fate> {
    let mut net = Network::new(config, 2).unwrap();
    let mut rng = derive_rng(seed, "net", 0);
    (0..count)
        .map(|i| net.route(&packet(0, 1, i as u64 * 1_000, 100), &mut rng))
        .collect()
}

fn rate(fates: &[Fate], pick: impl Fn(&Fate) -> bool) -> f64 {
    fates.iter().filter(|f| pick(f)).count() as f64 / fates.len() as f64
}

fn delays_ms(fates: &[Fate]) -> Vec<f64> {
    fates
        .iter()
        .filter_map(|f| match *f {
            Fate::Deliver { delay_ns } => Some(delay_ns as f64 / 1e6),
            _ => None,
        })
        .collect()
}

fn mean_and_deviation(xs: &[f64]) -> (f64, f64) {
    let mean = xs.iter().sum::<f64>() / xs.len() as f64;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
    (mean, var.sqrt())
}

/// One configuration per feature, each with some randomness.
fn random_configs() -> Vec<(&'static str, NetConfig)> {
    let base = NetConfig::default;
    vec![
        (
            "uniform",
            NetConfig {
                latency: spec("uniform:1ms..40ms"),
                ..base()
            },
        ),
        (
            "normal",
            NetConfig {
                latency: spec("normal:50ms,10ms"),
                ..base()
            },
        ),
        (
            "lognormal",
            NetConfig {
                latency: spec("lognormal:50ms,20ms"),
                ..base()
            },
        ),
        (
            "loss",
            NetConfig {
                loss: 0.3,
                ..base()
            },
        ),
        (
            "duplicate",
            NetConfig {
                duplicate: 0.3,
                latency: spec("uniform:1ms..9ms"),
                ..base()
            },
        ),
        (
            "reorder",
            NetConfig {
                reorder: 0.3,
                ..base()
            },
        ),
        (
            "corrupt",
            NetConfig {
                corrupt: 0.3,
                ..base()
            },
        ),
        (
            "fifo + bandwidth",
            NetConfig {
                mode: LinkMode::Fifo,
                bandwidth: "10Mbit/s".parse().ok(),
                latency: spec("normal:5ms,3ms"),
                ..base()
            },
        ),
        (
            "matrix + jitter",
            NetConfig {
                latency: Latency::constant_ms(10),
                matrix: LatencyMatrix::from_rows_ms(&[vec![0.0, 30.0], vec![31.0, 0.0]]).ok(),
                jitter: Some(spec("normal:0s,2ms")),
                ..base()
            },
        ),
        (
            "override",
            NetConfig {
                links: vec![LinkOverride {
                    from: Some(vec![NodeId(0)]),
                    loss: Some(0.5),
                    ..LinkOverride::default()
                }],
                ..base()
            },
        ),
    ]
}

#[test]
fn every_model_gives_the_same_fates_for_the_same_seed_and_others_for_another() {
    for (name, config) in random_configs() {
        let first = fates(&config, 11, 2_000);
        assert_eq!(
            first,
            fates(&config, 11, 2_000),
            "{name}: same seed differs"
        );
        assert_ne!(
            first,
            fates(&config, 12, 2_000),
            "{name}: seeds 11 and 12 agree"
        );
    }
}

#[test]
fn a_network_with_nothing_random_draws_no_randomness() {
    let config = NetConfig {
        bandwidth: "1Gbit/s".parse().ok(),
        mode: LinkMode::Fifo,
        reorder_delay: spec("normal:1s,1s"), // unused: reorder is 0
        ..NetConfig::default()
    };
    for config in [NetConfig::default(), config] {
        let mut net = Network::new(&config, 2).unwrap();
        let mut rng = derive_rng(3, "net", 0);
        let untouched = rng.clone();
        for i in 0..1_000 {
            net.route(&packet(0, 1, i * 10, 64), &mut rng);
        }
        assert_eq!(rng, untouched, "{config}");
    }
}

#[test]
fn loss_of_one_fifth_loses_one_fifth_of_100k_messages() {
    let config = NetConfig {
        loss: 0.2,
        ..NetConfig::default()
    };
    let fates = fates(&config, 1, 100_000);
    let lost = rate(&fates, |f| *f == Fate::Drop { reason: "loss" });
    assert!((lost - 0.2).abs() < 0.01, "loss rate {lost}");
    assert!(fates
        .iter()
        .all(|f| matches!(f, Fate::Drop { .. } | Fate::Deliver { .. })));
}

#[test]
fn normal_latency_has_the_mean_and_deviation_asked_for() {
    let config = NetConfig {
        latency: spec("normal:50ms,10ms"),
        ..NetConfig::default()
    };
    let (mean, dev) = mean_and_deviation(&delays_ms(&fates(&config, 2, 100_000)));
    assert!((mean - 50.0).abs() < 0.2, "mean {mean} ms");
    assert!((dev - 10.0).abs() < 0.2, "deviation {dev} ms");
}

#[test]
fn normal_latency_is_truncated_at_zero() {
    let config = NetConfig {
        latency: spec("normal:1ms,5ms"),
        ..NetConfig::default()
    };
    let delays = delays_ms(&fates(&config, 2, 10_000));
    let zeros = delays.iter().filter(|&&d| d == 0.0).count();
    // P(N(1, 5) <= 0) is about 0.42.
    assert!((3_900..4_500).contains(&zeros), "{zeros} zero delays");
}

#[test]
fn lognormal_latency_has_the_mean_and_deviation_asked_for() {
    let config = NetConfig {
        latency: spec("lognormal:50ms,20ms"),
        ..NetConfig::default()
    };
    let delays = delays_ms(&fates(&config, 3, 100_000));
    let (mean, dev) = mean_and_deviation(&delays);
    assert!((mean - 50.0).abs() < 0.5, "mean {mean} ms");
    assert!((dev - 20.0).abs() < 0.5, "deviation {dev} ms");
    // A right tail: the median lies below the mean.
    let mut sorted = delays.clone();
    sorted.sort_by(f64::total_cmp);
    assert!(sorted[sorted.len() / 2] < mean - 2.0);
}

#[test]
fn uniform_latency_stays_within_its_bounds_and_covers_them() {
    let config = NetConfig {
        latency: spec("uniform:5ms..15ms"),
        ..NetConfig::default()
    };
    let delays = delays_ms(&fates(&config, 4, 50_000));
    assert!(delays.iter().all(|d| (5.0..=15.0).contains(d)));
    let (mean, _) = mean_and_deviation(&delays);
    assert!((mean - 10.0).abs() < 0.1, "mean {mean}");
    assert!(delays.iter().any(|&d| d < 5.1) && delays.iter().any(|&d| d > 14.9));
}

#[test]
fn duplication_rate_and_copies_with_their_own_latency() {
    let config = NetConfig {
        duplicate: 0.1,
        latency: spec("uniform:1ms..9ms"),
        ..NetConfig::default()
    };
    let fates = fates(&config, 5, 100_000);
    let copies: Vec<(u64, u64)> = fates
        .iter()
        .filter_map(|f| match *f {
            Fate::Duplicate {
                delay_ns,
                copy_delay_ns,
            } => Some((delay_ns, copy_delay_ns)),
            _ => None,
        })
        .collect();
    let rate = copies.len() as f64 / fates.len() as f64;
    assert!((rate - 0.1).abs() < 0.01, "duplication rate {rate}");
    let copy_first = copies.iter().filter(|(d, c)| c < d).count();
    assert!(
        copy_first > copies.len() / 3,
        "unordered: copies often overtake"
    );
}

#[test]
fn corruption_rate() {
    let config = NetConfig {
        corrupt: 0.05,
        ..NetConfig::default()
    };
    let fates = fates(&config, 6, 100_000);
    let corrupted = rate(&fates, |f| {
        matches!(
            f,
            Fate::Corrupt {
                delay_ns: 10_000_000
            }
        )
    });
    assert!(
        (corrupted - 0.05).abs() < 0.005,
        "corruption rate {corrupted}"
    );
}

#[test]
fn reordering_adds_its_extra_delay_to_the_chosen_share() {
    let config = NetConfig {
        reorder: 0.25,
        reorder_delay: spec("constant:7ms"),
        ..NetConfig::default()
    };
    let delays = delays_ms(&fates(&config, 7, 40_000));
    assert!(delays.iter().all(|&d| d == 10.0 || d == 17.0));
    let delayed = delays.iter().filter(|&&d| d == 17.0).count() as f64 / delays.len() as f64;
    assert!((delayed - 0.25).abs() < 0.01, "reordered share {delayed}");
}

#[test]
fn matrix_entries_plus_jitter_give_each_link_its_latency() {
    let matrix = LatencyMatrix::from_csv_str("0,30,80\n31,0,120\n79,121,0\n", "geo.csv").unwrap();
    let config = NetConfig {
        matrix: Some(matrix),
        jitter: Some(spec("uniform:0s..1ms")),
        ..NetConfig::default()
    };
    let mut net = Network::new(&config, 3).unwrap();
    let mut rng = derive_rng(8, "net", 0);
    for (from, to, ms) in [(0, 1, 30.0), (1, 0, 31.0), (1, 2, 120.0), (2, 0, 79.0)] {
        for _ in 0..100 {
            let Fate::Deliver { delay_ns } = net.route(&packet(from, to, 0, 10), &mut rng) else {
                panic!("matrix links deliver");
            };
            let delay_ms = delay_ns as f64 / 1e6;
            assert!(
                (ms..=ms + 1.0).contains(&delay_ms),
                "{from}->{to}: {delay_ms} ms"
            );
        }
    }
}

#[test]
fn link_overrides_apply_to_their_links_only_and_later_ones_win() {
    let config = NetConfig {
        links: vec![
            LinkOverride {
                from: Some(vec![NodeId(0)]),
                to: Some(vec![NodeId(2)]),
                symmetric: true,
                latency: Some(Latency::constant_ms(80)),
                ..LinkOverride::default()
            },
            LinkOverride {
                to: Some(vec![NodeId(0)]),
                loss: Some(1.0),
                ..LinkOverride::default()
            },
        ],
        ..NetConfig::default()
    };
    let mut net = Network::new(&config, 3).unwrap();
    let mut rng = derive_rng(9, "net", 0);
    let mut route = |from, to| net.route(&packet(from, to, 0, 10), &mut rng);
    assert_eq!(
        route(0, 2),
        Fate::Deliver {
            delay_ns: 80_000_000
        }
    );
    assert_eq!(
        route(0, 1),
        Fate::Deliver {
            delay_ns: 10_000_000
        }
    );
    assert_eq!(
        route(2, 1),
        Fate::Deliver {
            delay_ns: 10_000_000
        }
    );
    // 2 -> 0 has the symmetric latency, and the later override's certain loss.
    assert_eq!(route(2, 0), Fate::Drop { reason: "loss" });
    assert_eq!(route(1, 0), Fate::Drop { reason: "loss" });
}

#[test]
fn bandwidth_adds_exact_serialization_delay_and_queues_behind_earlier_messages() {
    // 8 Mbit/s: one byte per microsecond.
    let config = NetConfig {
        bandwidth: Some(Bandwidth::from_bits_per_sec(8_000_000).unwrap()),
        ..NetConfig::default()
    };
    let mut net = Network::new(&config, 3).unwrap();
    let mut rng = derive_rng(10, "net", 0);
    let mut route = |p: Packet| match net.route(&p, &mut rng) {
        Fate::Deliver { delay_ns } => delay_ns,
        other => panic!("{other:?}"),
    };
    let ms = 1_000_000;
    // Idle link: 1,000 bytes take 1 ms, then 10 ms of latency.
    assert_eq!(route(packet(0, 1, 0, 1_000)), 11 * ms);
    // Sent at the same time: waits for the first to leave (at 1 ms), leaves at 3 ms.
    assert_eq!(route(packet(0, 1, 0, 2_000)), 13 * ms);
    // Sent at 2 ms, still behind: leaves at 3.5 ms, delay counted from its own sending.
    assert_eq!(route(packet(0, 1, 2 * ms, 500)), 11_500_000);
    // Another link does not queue behind this one.
    assert_eq!(route(packet(0, 2, 0, 1_000)), 11 * ms);
    assert_eq!(route(packet(1, 0, 0, 1_000)), 11 * ms);
    // Once idle, no queueing: sent at 10 ms, leaves at 10.25 ms.
    assert_eq!(route(packet(0, 1, 10 * ms, 250)), 10_250_000);
}

#[test]
fn lost_messages_still_occupy_the_link() {
    let config = NetConfig {
        bandwidth: Some(Bandwidth::from_bits_per_sec(8_000_000).unwrap()),
        links: vec![LinkOverride {
            loss: Some(1.0),
            to: Some(vec![NodeId(1)]),
            ..LinkOverride::default()
        }],
        ..NetConfig::default()
    };
    let mut net = Network::new(&config, 2).unwrap();
    let mut rng = derive_rng(10, "net", 0);
    assert_eq!(
        net.route(&packet(0, 1, 0, 1_000), &mut rng),
        Fate::Drop { reason: "loss" }
    );
    net.apply(&NetChange::SetLoss { loss: 0.0 }, Time::ZERO)
        .unwrap();
    assert_eq!(
        net.route(&packet(0, 1, 0, 1_000), &mut rng),
        Fate::Deliver {
            delay_ns: 12_000_000
        }
    );
}

#[test]
fn fifo_links_never_schedule_a_message_before_an_earlier_one() {
    let config = NetConfig {
        mode: LinkMode::Fifo,
        latency: spec("uniform:0s..50ms"),
        reorder: 0.2,
        duplicate: 0.1,
        ..NetConfig::default()
    };
    let mut net = Network::new(&config, 2).unwrap();
    let mut rng = derive_rng(12, "net", 0);
    let mut last_arrival = 0;
    for i in 0..20_000u64 {
        let sent = i * 100_000;
        let arrivals = match net.route(&packet(0, 1, sent, 10), &mut rng) {
            Fate::Deliver { delay_ns } | Fate::Corrupt { delay_ns } => vec![sent + delay_ns],
            Fate::Duplicate {
                delay_ns,
                copy_delay_ns,
            } => {
                assert!(copy_delay_ns >= delay_ns, "the copy follows the original");
                vec![sent + delay_ns, sent + copy_delay_ns]
            }
            Fate::Drop { .. } | Fate::FaultDrop { .. } => vec![],
        };
        for arrival in arrivals {
            assert!(
                arrival >= last_arrival,
                "message {i} overtakes an earlier one"
            );
            last_arrival = arrival;
        }
    }
}

#[test]
fn a_cut_drops_or_holds_messages_sent_across_it_and_in_flight() {
    for (on_cut, in_flight, sent_across) in [
        (
            InFlight::Drop,
            Admit::Drop {
                reason: "partition",
            },
            Fate::Drop {
                reason: "partition",
            },
        ),
        // Held: sent anyway, then held when due until the link heals.
        (
            InFlight::Hold,
            Admit::Hold,
            Fate::Deliver {
                delay_ns: 10_000_000,
            },
        ),
    ] {
        let config = NetConfig {
            on_cut,
            ..NetConfig::default()
        };
        let mut net = Network::new(&config, 3).unwrap();
        let mut rng = derive_rng(13, "net", 0);
        let (n0, n1, n2) = (NodeId(0), NodeId(1), NodeId(2));
        assert_eq!(net.admit(n0, n1, Time::ZERO), Admit::Deliver);
        let cut = NetChange::CutOneWay {
            from: vec![n0],
            to: vec![n1],
        };
        net.apply(&cut, Time::ZERO).unwrap();
        assert_eq!(net.route(&packet(0, 1, 0, 10), &mut rng), sent_across);
        assert_eq!(net.admit(n0, n1, Time::ZERO), in_flight);
        assert_eq!(net.admit(n1, n0, Time::ZERO), Admit::Deliver, "one-way");
        assert_eq!(net.admit(n0, n2, Time::ZERO), Admit::Deliver);
        net.apply(&NetChange::Heal, Time::ZERO).unwrap();
        assert_eq!(net.admit(n0, n1, Time::ZERO), Admit::Deliver);
        assert_eq!(
            net.route(&packet(0, 1, 0, 10), &mut rng),
            Fate::Deliver {
                delay_ns: 10_000_000
            }
        );
    }
}

#[test]
fn set_loss_and_set_latency_apply_to_every_link_including_overridden_ones() {
    let config = NetConfig {
        matrix: LatencyMatrix::from_rows_ms(&[vec![0.0, 30.0], vec![30.0, 0.0]]).ok(),
        links: vec![LinkOverride {
            from: Some(vec![NodeId(1)]),
            loss: Some(0.5),
            latency: Some(Latency::constant_ms(70)),
            ..LinkOverride::default()
        }],
        ..NetConfig::default()
    };
    let mut net = Network::new(&config, 2).unwrap();
    let mut rng = derive_rng(14, "net", 0);
    net.apply(
        &NetChange::SetLatency {
            latency: Latency::constant_ms(3),
        },
        Time::ZERO,
    )
    .unwrap();
    net.apply(&NetChange::SetLoss { loss: 0.0 }, Time::ZERO)
        .unwrap();
    for (from, to) in [(0, 1), (1, 0), (1, 1)] {
        for _ in 0..50 {
            assert_eq!(
                net.route(&packet(from, to, 0, 10), &mut rng),
                Fate::Deliver {
                    delay_ns: 3_000_000
                }
            );
        }
    }
    let err = net
        .apply(&NetChange::SetLoss { loss: 1.5 }, Time::ZERO)
        .unwrap_err();
    assert!(err.contains("0..=1"), "{err}");
}

#[test]
fn partition_groups_cut_between_groups_and_isolate_the_unlisted() {
    let mut net = Network::new(&NetConfig::default(), 5).unwrap();
    let groups = vec![vec![NodeId(0), NodeId(1)], vec![NodeId(2), NodeId(3)]];
    net.apply(&NetChange::Partition { groups }, Time::ZERO)
        .unwrap();
    let mut rng = derive_rng(15, "net", 0);
    for from in 0..5u32 {
        for to in 0..5u32 {
            let together = from == to
                || (from < 2 && to < 2)
                || ((2..4).contains(&from) && (2..4).contains(&to));
            let fate = net.route(&packet(from, to, 0, 10), &mut rng);
            assert_eq!(
                fate == (Fate::Drop {
                    reason: "partition"
                }),
                !together,
                "{from}->{to}: {fate:?}"
            );
        }
    }
    assert_eq!(net.topology().components().len(), 3);
}

#[test]
fn messages_to_nodes_outside_the_run_are_dropped() {
    let mut net = Network::new(&NetConfig::default(), 2).unwrap();
    let mut rng: SimRng = derive_rng(16, "net", 0);
    assert_eq!(
        net.route(&packet(0, 2, 0, 10), &mut rng),
        Fate::Drop {
            reason: "no such node"
        }
    );
    assert!(net
        .apply(
            &NetChange::CutOneWay {
                from: vec![NodeId(0)],
                to: vec![NodeId(5)]
            },
            Time::ZERO
        )
        .is_err());
}

#[test]
fn a_configuration_that_does_not_fit_the_run_is_refused() {
    let config = NetConfig {
        matrix: LatencyMatrix::from_rows_ms(&[vec![0.0, 30.0], vec![30.0, 0.0]]).ok(),
        ..NetConfig::default()
    };
    let err = Network::new(&config, 3).unwrap_err().to_string();
    assert!(err.contains("2x2") && err.contains("3 nodes"), "{err}");
    let config = NetConfig {
        duplicate: -0.1,
        ..NetConfig::default()
    };
    assert!(Network::new(&config, 3)
        .unwrap_err()
        .to_string()
        .contains("duplicate"));
    assert!(Network::new(&NetConfig::default(), 5_000).is_err());
}
