//! Every validation error, each located by node and field, and all of them reported together.

use crate::support::fixture;
use tidemark::config::{parse, ConfigError};

/// A valid pipeline every case changes in one place.
fn base() -> String {
    let sinks = [
        fixture::null_sink("out", r#""order""#),
        fixture::null_sink("late", r#""dedup.late""#),
        fixture::null_sink("invalid", r#""wm.invalid""#),
    ];
    format!(
        r#"
[clusters.a]
bootstrap = "127.0.0.1:19092"

[sources.src]
type = "kafka"
cluster = "a"
topics = ["log-events"]
region = "region-a"
{}{}{}"#,
        fixture::watermark("src", "2s", ""),
        fixture::dedup_and_order(4),
        sinks.concat()
    )
}

/// The base pipeline reading a remote topic (region left out), its watermark holding splits.
fn replicated_with_hold(hold: &str) -> String {
    base()
        .replacen(
            r#"region = "region-a""#,
            r#"replicated_from = "region-b""#,
            1,
        )
        .replacen(
            r#"max_out_of_orderness = "2s""#,
            &format!("max_out_of_orderness = \"2s\"\nmax_split_hold = \"{hold}\""),
            1,
        )
}

fn errors(text: &str) -> Vec<ConfigError> {
    parse(text).err().unwrap_or_default()
}

/// Replaces `from` in the base pipeline (which must contain it) and returns the errors.
fn with(from: &str, to: &str) -> Vec<ConfigError> {
    let base = base();
    assert!(base.contains(from), "base has no {from:?}");
    errors(&base.replacen(from, to, 1))
}

fn has(errs: &[ConfigError], node: &str, field: &str, needle: &str) {
    assert!(
        errs.iter()
            .any(|e| e.node == node && e.field == field && e.message.contains(needle)),
        "expected {node}.{field} ~ {needle:?} in {errs:#?}"
    );
}

#[test]
fn base_is_valid() {
    assert!(parse(&base()).is_ok(), "{:#?}", errors(&base()));
}

#[test]
fn unknown_input() {
    has(
        &with(r#"inputs = ["order"]"#, r#"inputs = ["ordr"]"#),
        "out",
        "inputs",
        "input \"ordr\" matches no node",
    );
}

#[test]
fn unknown_output_port() {
    has(
        &with(r#"inputs = ["dedup.late"]"#, r#"inputs = ["dedup.tardy"]"#),
        "late",
        "inputs",
        "unknown output",
    );
    has(
        &with(r#"inputs = ["order"]"#, r#"inputs = ["order.late"]"#),
        "out",
        "inputs",
        "has no output \"late\"",
    );
}

#[test]
fn cycle() {
    let text = base().replace(r#"inputs = ["dedup.on_time"]"#, r#"inputs = ["dedup.on_time", "f"]"#)
        + "\n[operators.f]\ntype = \"filter\"\ninputs = [\"order\"]\nfield = \"level\"\nvalues = [\"error\"]\n";
    let errs = errors(&text);
    has(&errs, "order", "inputs", "cycle");
    has(&errs, "f", "inputs", "cycle");
}

#[test]
fn unknown_cluster() {
    has(
        &with(r#"cluster = "a""#, r#"cluster = "b""#),
        "src",
        "cluster",
        "unknown cluster \"b\"",
    );
}

#[test]
fn bad_duration() {
    has(
        &with(
            r#"max_out_of_orderness = "2s""#,
            r#"max_out_of_orderness = "2 secs""#,
        ),
        "wm",
        "max_out_of_orderness",
        "bad duration",
    );
    has(
        &with(r#"horizon = "10m""#, r#"horizon = "10""#),
        "dedup",
        "horizon",
        "unit is required",
    );
    has(
        &with(r#"horizon = "10m""#, "horizon = 10"),
        "dedup",
        "horizon",
        "string",
    );
}

#[test]
fn watermark_settings_that_make_no_sense() {
    has(
        &with(
            r#"max_out_of_orderness = "2s""#,
            "max_out_of_orderness = \"2s\"\nidle_timeout = \"0s\"",
        ),
        "wm",
        "idle_timeout",
        "above zero",
    );
    has(
        &with(
            r#"max_out_of_orderness = "2s""#,
            "max_out_of_orderness = \"2s\"\nmax_future_skew = \"0s\"",
        ),
        "wm",
        "max_future_skew",
        "above zero",
    );
    has(
        &with(
            r#"max_out_of_orderness = "2s""#,
            "max_out_of_orderness = \"2s\"\nmax_split_hold = \"30s\"",
        ),
        "wm",
        "max_split_hold",
        "replicated_from",
    );
    has(
        &with(r#"horizon = "10m""#, r#"horizon = "1s""#),
        "dedup",
        "horizon",
        "shorter than max_out_of_orderness",
    );
}

#[test]
fn unknown_and_missing_fields() {
    has(
        &with(r#"horizon = "10m""#, "horizon = \"10m\"\nhorizn = \"1m\""),
        "dedup",
        "horizn",
        "unknown field",
    );
    has(
        &with("partitions = 4", ""),
        "order",
        "partitions",
        "missing field",
    );
    has(
        &with(r#"type = "dedup""#, r#"type = "dedupe""#),
        "dedup",
        "type",
        "unknown type",
    );
    has(
        &with("[sinks.out]\ntype = \"null\"", "[sinks.out]"),
        "out",
        "type",
        "missing",
    );
    has(
        &errors(&(base() + "\n[extra]\nx = 1\n")),
        "extra",
        "",
        "unknown section",
    );
}

#[test]
fn replicated_sources() {
    has(
        &with(
            r#"region = "region-a""#,
            "region = \"region-a\"\nreplicated_from = \"region-b\"",
        ),
        "src",
        "replicated_from",
        "replicated from",
    );
    has(
        &with(r#"region = "region-a""#, ""),
        "src",
        "region",
        "missing",
    );
    has(
        &with(
            r#"region = "region-a""#,
            "region = \"region-a\"\nheartbeats_topic = \"hb\"\nlink_timeout = \"1s\"",
        ),
        "src",
        "heartbeats_topic",
        "needs replicated_from",
    );
    has(
        &with(
            r#"region = "region-a""#,
            "region = \"region-a\"\nlink_timeout = \"1s\"",
        ),
        "src",
        "link_timeout",
        "needs replicated_from",
    );
    // Seen after the partitions could go idle: the split would already have cost late events.
    has(
        &with(
            r#"region = "region-a""#,
            "replicated_from = \"region-b\"\nlink_timeout = \"5s\"",
        ),
        "src",
        "link_timeout",
        "idle_timeout",
    );
    // A remote topic with the region left out is valid, and a hold is then accepted.
    let text = replicated_with_hold("30s");
    let (config, _) = parse(&text).expect("a remote-topic source is valid");
    let tidemark::sources::SourceConfig::Kafka(k) = &config.sources["src"] else {
        panic!("kafka source")
    };
    assert_eq!(config.sources["src"].node().region(), "region-b");
    assert_eq!(k.heartbeats().as_deref(), Some("region-b.heartbeats"));
}

#[test]
fn stream_kinds() {
    has(
        &with(r#"inputs = ["dedup.on_time"]"#, r#"inputs = ["dedup"]"#),
        "order",
        "inputs",
        "late events",
    );
    has(
        &with(
            r#"inputs = ["dedup.on_time"]"#,
            r#"inputs = ["dedup.on_time", "wm.invalid"]"#,
        ),
        "order",
        "inputs",
        "invalid records",
    );
    has(
        &with(
            r#"inputs = ["dedup.late"]"#,
            r#"inputs = ["dedup.late", "wm.invalid"]"#,
        ),
        "late",
        "inputs",
        "mixes events and invalid",
    );
    has(
        &with(r#"inputs = ["order"]"#, r#"inputs = ["src"]"#),
        "out",
        "inputs",
        "is a source",
    );
    has(
        &with(r#"inputs = ["src"]"#, r#"inputs = ["dedup"]"#),
        "wm",
        "inputs",
        "reads sources only",
    );
    has(
        &with(r#"inputs = ["order"]"#, r#"inputs = ["late"]"#),
        "out",
        "inputs",
        "is a sink",
    );
}

#[test]
fn dangling_outputs_would_lose_events() {
    has(
        &with(r#"inputs = ["wm.invalid"]"#, r#"inputs = ["wm.late"]"#),
        "wm",
        "",
        "\"wm.invalid\" is not consumed",
    );
    has(
        &with(r#"inputs = ["dedup.late"]"#, r#"inputs = ["wm.invalid"]"#),
        "dedup",
        "",
        "\"dedup.late\" is not consumed",
    );
}

#[test]
fn sources_feed_exactly_one_watermark() {
    let text = base() + "\n[sources.spare]\ntype = \"file\"\npaths = [\"x\"]\nregion = \"r\"\n";
    has(&errors(&text), "spare", "", "not read by any watermark");
    let text = base()
        + "\n[operators.wm2]\ntype = \"watermark\"\ninputs = [\"src\"]\nmax_out_of_orderness = \"1s\"\n\n[sinks.all2]\ntype = \"null\"\ninputs = [\"wm2\"]\n\n[sinks.inv2]\ntype = \"null\"\ninputs = [\"wm2.invalid\"]\n";
    has(&errors(&text), "src", "", "read by 2 watermark operators");
}

#[test]
fn node_settings() {
    has(
        &with(r#"topics = ["log-events"]"#, "topics = []"),
        "src",
        "topics",
        "at least one",
    );
    has(
        &with(r#"bootstrap = "127.0.0.1:19092""#, r#"bootstrap = """#),
        "clusters.a",
        "bootstrap",
        "empty",
    );
    has(
        &with("partitions = 4", "partitions = 0"),
        "order",
        "partitions",
        "",
    );
    let gen = base().replace(
        "type = \"kafka\"\ncluster = \"a\"\ntopics = [\"log-events\"]\nregion = \"region-a\"",
        "type = \"generator\"\nregion = \"region-a\"\nduplicate_rate = 1.5\npayload_bytes = 10",
    );
    let errs = errors(&gen);
    has(&errs, "src", "duplicate_rate", "[0, 1)");
    has(&errs, "src", "payload_bytes", "between");
}

#[test]
fn duplicate_names_across_tables() {
    let text = base() + "\n[sinks.dedup]\ntype = \"null\"\ninputs = [\"dedup.late\"]\n";
    has(&errors(&text), "dedup", "", "more than one node");
}

#[test]
fn every_error_is_reported_at_once() {
    let text = base()
        .replacen(r#"cluster = "a""#, r#"cluster = "zz""#, 1)
        .replacen(r#"horizon = "10m""#, r#"horizon = "ten minutes""#, 1)
        .replacen(r#"inputs = ["order"]"#, r#"inputs = ["nothing"]"#, 1);
    let errs = errors(&text);
    has(&errs, "src", "cluster", "unknown cluster");
    has(&errs, "dedup", "horizon", "bad duration");
    has(&errs, "out", "inputs", "matches no node");
    assert!(errs.len() >= 3);
}

#[test]
fn not_toml() {
    has(&errors("[sources\n"), "file", "", "not valid TOML");
}

#[test]
fn names_and_empty_pipelines() {
    has(
        &errors(&(base() + "\n[sinks.\"a.b\"]\ntype = \"null\"\ninputs = [\"dedup.late\"]\n")),
        "a.b",
        "",
        "contain no '.'",
    );
    let errs = errors("[pipeline]\nname = \"empty\"\n");
    has(&errs, "sources", "", "no source");
    has(&errs, "sinks", "", "no sink");
    has(
        &errors("sources = 3\n"),
        "sources",
        "",
        "table of named entries",
    );
}

#[test]
fn inputs_listed_twice_or_on_a_source_port() {
    has(
        &with(r#"inputs = ["order"]"#, r#"inputs = ["order", "order"]"#),
        "out",
        "inputs",
        "listed twice",
    );
    has(
        &with(r#"inputs = ["src"]"#, r#"inputs = ["src.late"]"#),
        "wm",
        "inputs",
        "a source has one output",
    );
    has(
        &with(r#"inputs = ["order"]"#, "inputs = []"),
        "out",
        "inputs",
        "at least one input",
    );
}

#[test]
fn filter_file_and_sink_settings() {
    let filter = base().replace(
        r#"inputs = ["dedup.on_time"]"#,
        r#"inputs = ["f"]"#,
    ) + "\n[operators.f]\ntype = \"filter\"\ninputs = [\"dedup.on_time\"]\nfield = \"\"\nvalues = []\n";
    let errs = errors(&filter);
    has(&errs, "f", "field", "must name a field");
    has(&errs, "f", "values", "at least one value");
    let file_source = base().replace(
        "type = \"kafka\"\ncluster = \"a\"\ntopics = [\"log-events\"]\nregion = \"region-a\"",
        "type = \"file\"\npaths = []\nregion = \"region-a\"",
    );
    has(&errors(&file_source), "src", "paths", "at least one file");
    let file_sink = base().replace(
        "[sinks.out]\ntype = \"null\"",
        "[sinks.out]\ntype = \"file\"\npath = \"\"",
    );
    has(&errors(&file_sink), "out", "path", "must not be empty");
    let kafka_sink = base().replace(
        "[sinks.out]\ntype = \"null\"",
        "[sinks.out]\ntype = \"kafka\"\ncluster = \"nope\"\ntopic = \"\"",
    );
    let errs = errors(&kafka_sink);
    has(&errs, "out", "cluster", "unknown cluster");
    has(&errs, "out", "topic", "must not be empty");
    has(
        &with(r#"partitions = 4"#, "partitions = 4\npartition_by = \" \""),
        "order",
        "partition_by",
        "must name a field",
    );
}

#[test]
fn exactly_once_needs_a_dedup_before_each_kafka_sink_of_events() {
    let kafka = |name: &str, input: &str| {
        format!(
            "\n[sinks.{name}]\ntype = \"kafka\"\ninputs = [\"{input}\"]\ncluster = \"a\"\ntopic = \"{name}\"\n"
        )
    };
    // Events straight from the watermark: a replay would write them twice.
    let text = format!("{}{}", base(), kafka("direct", "wm.on_time"));
    let e = errors(&text);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(
        (e[0].node.as_str(), e[0].field.as_str()),
        ("direct", "inputs")
    );
    assert!(e[0].message.contains("without a dedup"), "{}", e[0]);
    // Behind a dedup, and dead letters (restored by source position), are fine.
    let fine = format!(
        "{}{}{}",
        base(),
        kafka("deduped", "dedup.late"),
        kafka("dead", "wm.invalid")
    );
    assert!(errors(&fine).is_empty(), "{:?}", errors(&fine));
    // At-least-once is the user's explicit choice.
    let relaxed = format!("[pipeline]\nname = \"p\"\ndelivery = \"at_least_once\"\n{text}");
    assert!(errors(&relaxed).is_empty(), "{:?}", errors(&relaxed));
}

#[test]
fn a_split_hold_near_the_horizon_is_warned_of_by_node_and_field() {
    let held = |hold: &str, horizon: &str| {
        let text = replicated_with_hold(hold).replacen(
            r#"horizon = "10m""#,
            &format!("horizon = \"{horizon}\""),
            1,
        );
        let (config, graph) = parse(&text).expect("valid: it is a warning, not an error");
        tidemark::config::warnings(&config, &graph)
    };
    // 2 s + 7 m 28 s = 7.5 m, exactly three quarters of 10 m: room enough.
    assert!(held("448s", "10m").is_empty());
    let warned = held("449s", "10m");
    has(&warned, "dedup", "horizon", "max_split_hold (449s)");
    assert!(held("30s", "10m").is_empty());
    has(&held("9m", "10m"), "dedup", "horizon", "beyond-horizon");
    // Without a hold nothing waits on a split, so there is nothing to warn of.
    assert!(
        tidemark::config::warnings(&parse(&base()).unwrap().0, &parse(&base()).unwrap().1)
            .is_empty()
    );
}

/// A secret written as a reference is resolved at load; one that cannot be is an error of its
/// option, naming the variable or the file and never a value.
#[test]
fn secret_references_resolve_or_name_what_is_missing() {
    let options = |line: &str| {
        with(
            r#"bootstrap = "127.0.0.1:19092""#,
            &format!("bootstrap = \"127.0.0.1:19092\"\n[clusters.a.options]\n{line}"),
        )
    };
    has(
        &options(r#""sasl.password" = "${env:TIDEMARK_IT_UNSET_PASSWORD}""#),
        "clusters.a",
        "options.sasl.password",
        "environment variable TIDEMARK_IT_UNSET_PASSWORD is not set",
    );
    has(
        &options(r#""ssl.key.password" = "${file:/nonexistent/tidemark/key-password}""#),
        "clusters.a",
        "options.ssl.key.password",
        "cannot read /nonexistent/tidemark/key-password",
    );
    std::env::set_var("TIDEMARK_IT_SET_PASSWORD", "correct horse");
    let text = base().replacen(
        r#"bootstrap = "127.0.0.1:19092""#,
        "bootstrap = \"127.0.0.1:19092\"\n[clusters.a.options]\n\"sasl.password\" = \"${env:TIDEMARK_IT_SET_PASSWORD}\"",
        1,
    );
    let (config, _) = parse(&text).expect("a set variable resolves");
    assert_eq!(
        config.clusters["a"].options["sasl.password"],
        "correct horse"
    );
    let printed = format!("{config:?}");
    assert!(!printed.contains("correct horse"), "{printed}");
}

/// A variant file states only what differs: its `include` is read first and its own tables are
/// laid over it key by key; the tools' `--cluster-config` reads the clusters of such a file.
#[test]
fn an_included_file_is_laid_under_the_variant() {
    let dir = std::env::temp_dir().join(format!("tidemark-include-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("base.toml"), base()).unwrap();
    std::fs::write(
        dir.join("secure.toml"),
        "include = \"base.toml\"\n[clusters.a.options]\n\"security.protocol\" = \"SASL_SSL\"\n[pipeline]\nname = \"variant\"\n",
    )
    .unwrap();
    let (config, _) = tidemark::config::load(&dir.join("secure.toml")).expect("the variant loads");
    let a = &config.clusters["a"];
    assert_eq!(a.bootstrap, "127.0.0.1:19092", "kept from the base");
    assert_eq!(a.options["security.protocol"], "SASL_SSL", "laid over it");
    assert_eq!(a.name, "a");
    assert_eq!(config.pipeline.name, "variant");
    assert_eq!(config.sources.len(), 1, "the base's nodes are all there");
    let clusters = tidemark::config::load_clusters(&dir.join("secure.toml")).unwrap();
    assert_eq!(clusters["a"].options["security.protocol"], "SASL_SSL");
    // A file including itself stops at the nesting limit, with an error of its include.
    std::fs::write(dir.join("loop.toml"), "include = \"loop.toml\"\n").unwrap();
    let e = tidemark::config::load(&dir.join("loop.toml")).unwrap_err();
    assert!(
        e.errors()
            .iter()
            .any(|e| e.node == "include" && e.message.contains("nest")),
        "{e}"
    );
    std::fs::write(dir.join("missing.toml"), "include = \"nowhere.toml\"\n").unwrap();
    let e = tidemark::config::load(&dir.join("missing.toml")).unwrap_err();
    assert!(e.to_string().contains("nowhere.toml"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn in_flight_budgets_must_be_above_zero() {
    let text = format!(
        "[pipeline]\nname = \"p\"\nmax_in_flight_records = 0\nmax_in_flight_bytes = 0\n{}",
        base()
    );
    let errs = errors(&text);
    has(&errs, "pipeline", "max_in_flight_records", "above zero");
    has(&errs, "pipeline", "max_in_flight_bytes", "above zero");
    let fine = format!(
        "[pipeline]\nname = \"p\"\nmax_in_flight_records = 1\n{}",
        base()
    );
    assert!(parse(&fine).is_ok(), "{:#?}", errors(&fine));
}
