//! The `/metrics` text (`headroom::metrics::encode`) read by the official
//! Python OpenMetrics parser, `prometheus_client`'s: every sample, and
//! hostile label values that must not break out of their quotes.
//!
//! The status document is `tests/fixtures/status.json`: the one the unit
//! tests in `src/metrics.rs` build (one of them checks that the two agree).
//! Without python3 and `prometheus_client` the tests are ignored with a
//! message, except under CI (env `CI` set), where they fail (tests/support).

mod support;

use std::collections::BTreeMap;

use headroom::metrics::{encode, ScanTotals};
use headroom::model::Status;
use headroom::walk::ErrorKind;
use support::openmetrics::{self, Sample};
use support::{trial, Need};

fn main() {
    let parser = [Need::tool("python3"), openmetrics::need()];
    support::main(vec![
        trial!(the_official_parser_reads_every_sample).needs(&parser),
        trial!(hostile_label_values_are_escaped).needs(&parser),
    ]);
}

fn status() -> Status {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/status.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn totals() -> ScanTotals {
    ScanTotals {
        files: 1234,
        errors: BTreeMap::from([(ErrorKind::Denied, 2), (ErrorKind::Vanished, 7)]),
        scans: 3,
    }
}

/// Every sample of `text` as the official parser reads it.
fn python_parse(text: &str) -> Vec<Sample> {
    let families = openmetrics::parse(text).unwrap_or_else(|e| panic!("{e:#}\n{text}"));
    families.into_iter().flat_map(|f| f.samples).collect()
}

fn the_official_parser_reads_every_sample() {
    let text = encode(&status(), &totals(), 1).unwrap();
    let parsed = python_parse(&text);
    let value = |name: &str, labels: &[(&str, &str)]| {
        // Every sample carries the document's node name (docs/metrics.md).
        let labels: BTreeMap<String, String> = [("node", "node-1")]
            .iter()
            .chain(labels)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parsed
            .iter()
            .find(|(n, l, _)| n == name && *l == labels)
            .map(|s| s.2)
    };
    assert_eq!(
        value("headroom_filesystem_bytes_left", &[("signal", "imagefs")]),
        Some(-14_999_999_000.0)
    );
    assert_eq!(
        value(
            "headroom_image_size_bytes",
            &[
                ("runtime", ""),
                ("containerd_namespace", ""),
                ("image", "other")
            ]
        ),
        Some(60_000_000.0)
    );
    assert_eq!(value("headroom_scans_total", &[]), Some(3.0));
    assert_eq!(value("headroom_scan_duration_seconds", &[]), Some(1.5));
    // The parser saw as many samples as there are sample lines.
    let lines = text.lines().filter(|l| !l.starts_with('#')).count();
    assert_eq!(parsed.len(), lines, "{text}");
}

fn hostile_label_values_are_escaped() {
    let hostile = "evil\"} 1\nheadroom_fake 2\\\"\n# EOF\n";
    let mut s = status();
    s.images[0].refs = vec![hostile.to_string()];
    s.containers[0].pod = Some(hostile.to_string());
    let text = encode(&s, &ScanTotals::default(), 10).unwrap();
    // One sample per line: no value may break out of its quotes.
    assert_eq!(text.lines().filter(|l| *l == "# EOF").count(), 1, "{text}");
    assert!(
        !text.lines().any(|l| l.starts_with("headroom_fake")),
        "{text}"
    );
    let parsed = python_parse(&text);
    let image = parsed
        .iter()
        .find(|(n, l, _)| n == "headroom_image_size_bytes" && l["image"] == hostile);
    assert_eq!(image.map(|s| s.2), Some(180_000_000.0), "{parsed:?}");
    assert!(parsed
        .iter()
        .any(|(n, l, _)| n == "headroom_container_log_bytes" && l["pod"] == hostile));
    assert!(!parsed.iter().any(|(n, _, _)| n == "headroom_fake"));
}
