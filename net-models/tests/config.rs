//! Network configuration files: the TOML schema, latency matrix CSV files, what their
//! errors say, and that no input makes the parsers panic.

use proptest::prelude::*;
use rehearsal_net_models::{
    Bandwidth, InFlight, LatencyMatrix, LinkMode, NetConfig, NetConfigError, Network,
};
use rehearsal_sim_core::{Latency, NodeId};
use std::path::{Path, PathBuf};

/// Relative (tests run in the package directory), so that error snapshots hold no
/// machine-specific path.
fn data_dir() -> PathBuf {
    PathBuf::from("tests/data")
}

fn parse(text: &str) -> Result<NetConfig, NetConfigError> {
    NetConfig::from_toml_str(text, "net.toml", &data_dir())
}

fn error(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn an_empty_file_is_the_default_configuration() {
    assert_eq!(parse("").unwrap(), NetConfig::default());
    assert_eq!(parse("# nothing\n").unwrap(), NetConfig::default());
}

#[test]
fn the_example_file_loads_its_matrix_and_overrides() {
    let config = NetConfig::from_toml_file(&data_dir().join("geo.toml")).unwrap();
    let matrix = config.matrix.as_ref().unwrap();
    assert_eq!(matrix.nodes(), 3);
    assert_eq!(matrix.get_ns(NodeId(1), NodeId(2)), 190_250_000);
    assert_eq!(config.jitter, Some("normal:0s,2ms".parse().unwrap()));
    assert_eq!(config.mode, LinkMode::Fifo);
    assert_eq!(config.on_cut, InFlight::Hold);
    assert_eq!(config.bandwidth, "1Gbit/s".parse::<Bandwidth>().ok());
    assert_eq!(config.links.len(), 1);
    assert!(
        config.links[0].applies_to(NodeId(2), NodeId(1)),
        "symmetric"
    );
    assert!(!config.links[0].applies_to(NodeId(0), NodeId(1)));
    assert_eq!(
        config.to_string(),
        "latency matrix 3x3 + jitter normal:0s,2ms, loss 0.001, duplicate 0.0005, \
         reorder 0.01 by uniform:0s..5ms, corrupt 0.0001, bandwidth 1Gbit/s, fifo, cut: hold, \
         1 link override"
    );
    Network::new(&config, 3).unwrap();
    assert!(
        Network::new(&config, 4).is_err(),
        "a 3x3 matrix for 4 nodes"
    );
}

#[test]
fn a_trace_header_holds_the_matrix_values_and_replays_without_the_csv() {
    let config = NetConfig::from_toml_file(&data_dir().join("geo.toml")).unwrap();
    let json = serde_json::to_string(&config).unwrap();
    assert!(
        !json.contains("matrix_csv") && !json.contains("geo.csv"),
        "{json}"
    );
    assert!(json.contains(r#""matrix":[[0.0,38.5,120.0],[39.0,0.0,190.25],[118.0,191.0,0.0]]"#));
    assert!(json.contains(r#""bandwidth":"1Gbit/s""#) && json.contains(r#""mode":"fifo""#));
    let back: NetConfig = serde_json::from_str(&json).unwrap();
    assert_eq!(back, config);
    // And TOML written from it reads back the same, inline matrix included.
    let toml = toml::to_string(&config).unwrap();
    assert_eq!(parse(&toml).unwrap(), config);
}

#[test]
fn the_default_configuration_serializes_to_a_short_header() {
    let json = serde_json::to_string(&NetConfig::default()).unwrap();
    assert_eq!(
        json,
        r#"{"latency":"constant:10ms","loss":0.0,"duplicate":0.0,"reorder":0.0,"reorder_delay":"uniform:0s..20ms","corrupt":0.0,"mode":"unordered","on_cut":"drop"}"#
    );
    assert_eq!(
        serde_json::from_str::<NetConfig>(&json).unwrap(),
        NetConfig::default()
    );
    assert_eq!(
        serde_json::from_str::<NetConfig>("{}").unwrap(),
        NetConfig::default()
    );
}

#[test]
fn an_inline_matrix_is_rows_of_milliseconds() {
    let config = parse("matrix = [[0, 12.5], [13, 0]]\n").unwrap();
    let matrix = config.matrix.unwrap();
    assert_eq!(matrix.get_ns(NodeId(0), NodeId(1)), 12_500_000);
    assert_eq!(matrix.get_ns(NodeId(1), NodeId(0)), 13_000_000);
}

#[test]
fn typical_mistakes_in_toml_say_where_and_what_was_expected() {
    let cases = [
        ("unknown_key", "latency = \"constant:5ms\"\nlsos = 0.1\n"),
        ("bad_latency_spec", "latency = \"normal:50ms\"\n"),
        (
            "latency_without_unit",
            "loss = 0.1\nlatency = \"constant:10\"\n",
        ),
        ("loss_above_one", "# lossy\nloss = 1.5\n"),
        ("probability_of_wrong_type", "duplicate = \"often\"\n"),
        ("bad_bandwidth_unit", "bandwidth = \"100Mb\"\n"),
        ("unknown_mode", "mode = \"tcp\"\n"),
        ("syntax_error", "loss = 0.1\nreorder =\n"),
        ("inline_matrix_not_square", "matrix = [[0, 1], [1]]\n"),
        ("matrix_csv_not_square", "matrix_csv = \"ragged.csv\"\n"),
        ("matrix_csv_missing", "matrix_csv = \"nowhere.csv\"\n"),
        (
            "matrix_csv_and_latency",
            "latency = \"constant:5ms\"\nmatrix_csv = \"geo.csv\"\n",
        ),
        ("jitter_without_matrix", "jitter = \"normal:0s,1ms\"\n"),
        ("link_unknown_key", "[[links]]\nfrom = [0]\nlos = 0.5\n"),
        (
            "link_loss_above_one",
            "[[links]]\nto = [1]\nloss = 0.1\n\n[[links]]\nfrom = [0]\nloss = 2.0\n",
        ),
        (
            "link_bad_bandwidth",
            "[[links]]\nto = [1]\nbandwidth = \"fast\"\n",
        ),
        ("link_empty_from", "[[links]]\nfrom = []\nloss = 0.5\n"),
        ("link_changes_nothing", "[[links]]\nfrom = [0]\nto = [1]\n"),
        ("link_negative_node", "[[links]]\nfrom = [-1]\nloss = 0.5\n"),
    ];
    for (name, text) in cases {
        insta::assert_snapshot!(name, error(text));
    }
}

#[test]
fn mistakes_that_depend_on_the_run_are_found_by_validate() {
    let config = parse("matrix = [[0, 1], [1, 0]]\n").unwrap();
    insta::assert_snapshot!("matrix_wrong_size_for_run", config.validate(3).unwrap_err());
    let config = parse("[[links]]\nfrom = [0]\nto = [1, 7]\nloss = 0.5\n").unwrap();
    insta::assert_snapshot!("link_names_missing_node", config.validate(4).unwrap_err());
    config.validate(8).unwrap();
}

#[test]
fn validate_names_the_place_only_of_values_the_file_holds() {
    // Built in code: no file to name.
    let config = NetConfig {
        matrix: parse("matrix = [[0, 1], [1, 0]]\n").unwrap().matrix,
        ..NetConfig::default()
    };
    let err = config.validate(3).unwrap_err();
    assert!(matches!(err, NetConfigError::Invalid { .. }), "{err}");
    // A value set after reading (a --loss flag) is not blamed on the file's first line.
    let mut config = parse("[[links]]\nto = [1]\nloss = 0.5\n").unwrap();
    config.loss = 2.0;
    let err = config.validate(3).unwrap_err();
    assert!(matches!(err, NetConfigError::Invalid { .. }), "{err}");
    // A matrix from a CSV file is named by its `matrix_csv` key.
    let config =
        NetConfig::from_toml_str("\nmatrix_csv = \"geo.csv\"\n", "x.toml", &data_dir()).unwrap();
    let nodes = config.matrix.as_ref().unwrap().nodes();
    let err = config.validate(nodes + 1).unwrap_err().to_string();
    assert!(err.starts_with("x.toml:2:14: the latency matrix"), "{err}");
}

#[test]
fn errors_count_columns_in_characters() {
    let err = parse("loss = 0.1 # é\njitter = \"é\" ;\n").unwrap_err();
    let NetConfigError::At { line, column, .. } = err else {
        panic!("{err:?}");
    };
    assert_eq!((line, column), (2, 14));
}

#[test]
fn the_matrix_csv_path_is_relative_to_the_toml_file() {
    let elsewhere = std::env::temp_dir();
    let text = "matrix_csv = \"geo.csv\"\n";
    assert!(NetConfig::from_toml_str(text, "x.toml", &data_dir()).is_ok());
    let err = NetConfig::from_toml_str(text, "x.toml", &elsewhere).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("x.toml:1:14: cannot read matrix_csv"),
        "{err}"
    );
}

fn csv_error(text: &str) -> String {
    LatencyMatrix::from_csv_str(text, "geo.csv")
        .unwrap_err()
        .to_string()
}

#[test]
fn matrix_csv_errors_name_file_line_and_column() {
    assert_eq!(
        csv_error("0, 10\n10, ten\n"),
        "geo.csv:2:5: expected a non-negative number of milliseconds, got `ten`"
    );
    assert_eq!(
        csv_error("0, 10\n-3, 0\n"),
        "geo.csv:2:1: expected a non-negative number of milliseconds, got -3"
    );
    assert_eq!(
        csv_error("# header\n0,10,20\n10,0\n20,10,0\n"),
        "geo.csv:3:5: row 2 has 2 entries, expected 3 (one per node, as in the first row)"
    );
    assert_eq!(
        csv_error("0,1\n1,0,5\n"),
        "geo.csv:2:5: row 2 has more than 2 entries: expected one per node, as in the first row"
    );
    assert_eq!(
        csv_error("0,1,2\n1,0,2\n"),
        "geo.csv:3:1: expected 3 rows (the first row has 3 entries), found 2"
    );
    assert_eq!(
        csv_error("0,1\n1,0\n\n2,2\n"),
        "geo.csv:4:1: found row 3 but the first row has 2 entries, so the matrix has 2 rows"
    );
    assert_eq!(
        csv_error("0,,1\n"),
        "geo.csv:1:3: expected a number of milliseconds, found an empty cell"
    );
    assert_eq!(
        csv_error("# only comments\n\n"),
        "geo.csv:2:1: no rows: expected n lines of n comma-separated latencies in milliseconds"
    );
    assert_eq!(
        csv_error("inf\n"),
        "geo.csv:1:1: expected a non-negative number of milliseconds, got inf"
    );
    assert!(csv_error("1e13\n").contains("at most"));
}

#[test]
fn matrix_csv_accepts_decimals_exponents_spaces_and_comments() {
    let m = LatencyMatrix::from_csv_str("  0 ,1.5e1# a\r\n\t2.25, 0  \n", "m.csv").unwrap();
    assert_eq!(m.get_ns(NodeId(0), NodeId(1)), 15_000_000);
    assert_eq!(m.get_ns(NodeId(1), NodeId(0)), 2_250_000);
}

#[test]
fn a_matrix_file_that_cannot_be_read_says_so() {
    let err = LatencyMatrix::from_csv_file(&data_dir().join("absent.csv")).unwrap_err();
    assert!(matches!(err, NetConfigError::Read { .. }), "{err:?}");
    assert!(err.to_string().contains("absent.csv: cannot read"));
}

#[test]
fn latency_and_bandwidth_specs_read_like_the_command_line() {
    let config = parse(
        "latency = \"lognormal:50ms,20ms\"\nreorder_delay = \"constant:1ms\"\nbandwidth = \"10MB/s\"\n",
    )
    .unwrap();
    assert_eq!(
        config.latency,
        Latency::LogNormal {
            mean_ns: 50_000_000,
            std_ns: 20_000_000
        }
    );
    assert_eq!(config.reorder_delay, Latency::constant_ms(1));
    assert_eq!(config.bandwidth.unwrap().bits_per_sec(), 80_000_000);
}

/// Lines that look like configuration, to reach past the TOML syntax into the checks.
fn config_like_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(vec![
        "latency",
        "loss",
        "duplicate",
        "reorder",
        "reorder_delay",
        "corrupt",
        "bandwidth",
        "mode",
        "on_cut",
        "matrix",
        "matrix_csv",
        "jitter",
        "from",
        "to",
        "symmetric",
        "lsos",
    ]);
    let value = prop_oneof![
        "\"[a-z0-9:.,/ ]{0,16}\"",
        "-?[0-9]{1,3}(\\.[0-9]{1,3})?(e-?[0-9])?",
        "\\[(\\[?-?[0-9.]{1,4}\\]?, ?){0,4}\\]",
        Just("true".to_string()),
        Just("\"normal:5ms,1ms\"".to_string()),
        Just("\"1Gbit/s\"".to_string()),
    ];
    prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        Just("[[links]]".to_string()),
        "[ -~]{0,20}",
    ]
}

proptest! {
    #[test]
    fn any_text_into_the_toml_parser_never_panics(text in "\\PC{0,200}") {
        let _ = NetConfig::from_toml_str(&text, "p.toml", Path::new("/nonexistent"));
    }

    #[test]
    fn configuration_like_text_never_panics_and_loads_only_valid_configs(
        lines in prop::collection::vec(config_like_line(), 0..8)
    ) {
        let text = lines.join("\n");
        if let Ok(config) = NetConfig::from_toml_str(&text, "p.toml", Path::new("/nonexistent")) {
            // What loads is valid for a run its matrix fits, and builds a network.
            let nodes = config.matrix.as_ref().map_or(4, |m| m.nodes());
            if nodes <= 64 && config.validate(nodes).is_ok() {
                prop_assert!(Network::new(&config, nodes).is_ok());
            }
        }
    }

    #[test]
    fn any_bytes_into_the_csv_parser_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = LatencyMatrix::from_csv_str(&text, "p.csv");
    }

    #[test]
    fn csv_like_text_never_panics(text in "([0-9., #\n\t-]|e|inf|nan|é){0,120}") {
        if let Ok(matrix) = LatencyMatrix::from_csv_str(&text, "p.csv") {
            prop_assert!(matrix.nodes() > 0);
        }
    }

    #[test]
    fn bandwidth_specs_never_panic_and_valid_ones_read_back(text in "[0-9.]{0,8} ?[kKMGTi]{0,2}(bit|B|bps)?(/s)?") {
        if let Ok(bandwidth) = text.parse::<Bandwidth>() {
            prop_assert_eq!(bandwidth.to_string().parse::<Bandwidth>().unwrap(), bandwidth);
        }
    }
}
