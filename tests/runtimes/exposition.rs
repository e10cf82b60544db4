//! Samples read straight from the agent's `/metrics` text. Every series
//! carries the agent's `node` label (docs/metrics.md); the trials name a
//! series without it, as Prometheus queries in `prometheus.rs` do, and
//! `scrape.rs` checks the label once.

/// The sample line `line` with its `node="…"` label left out (and the
/// braces, when that was the only label).
fn without_node(line: &str) -> String {
    let Some(start) = line.find("{node=\"") else {
        return line.to_owned();
    };
    let value = start + "{node=\"".len();
    let Some(len) = line[value..].find('"') else {
        return line.to_owned();
    };
    let rest = &line[value + len + 1..];
    match rest.strip_prefix(',') {
        Some(labels) => format!("{}{{{labels}", &line[..start]),
        None => format!(
            "{}{}",
            &line[..start],
            rest.strip_prefix('}').unwrap_or(rest)
        ),
    }
}

/// The value of the sample whose name and labels, without `node`, start
/// with `series` (written exactly as encoded, e.g.
/// `headroom_runtime_up{runtime="containerd"}` or `headroom_scans_total`).
pub fn value(text: &str, series: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let line = without_node(l);
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ').map(str::to_owned)
    })
}

/// Whether some sample's name and labels, without `node`, start with `prefix`.
pub fn has(text: &str, prefix: &str) -> bool {
    text.lines().any(|l| without_node(l).starts_with(prefix))
}
