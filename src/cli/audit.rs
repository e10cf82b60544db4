//! `headroom audit`: where the images' bytes are wasted, node-wide, on one
//! screen or as JSON (docs/audit.md).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use headroom::audit::{self, AuditReport, Auditor, ImageAudit, Pace};
use headroom::client;
use headroom::config::Config;
use headroom::model::{human_bytes, short_id};

use super::printable::printable;
use super::screen::{droppable, figure, name, print_table, BOLD};

/// Exit code when an IMAGE named matches no image on the node.
pub const EXIT_NO_IMAGE: u8 = 4;

/// Options of `headroom audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Images to show: a name (`nginx:1.25`, with or without its registry),
    /// an image ID or its first 12 hex digits. All images when none.
    images: Vec<String>,
    /// Print the audit document as JSON (the same as the agent's /api/v1/audit).
    #[arg(long)]
    json: bool,
    /// How many images the screen lists, and wasted paths per image.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// Runs `headroom audit`: 0 when audited, 4 when an IMAGE named matches none.
pub fn run(args: &AuditArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let mut report = if config.status.local {
        audit_here(config)?
    } else {
        ask_agent_or_audit(config)?
    };
    let unknown: Vec<&String> = args
        .images
        .iter()
        .filter(|q| {
            let mut known = report
                .images
                .iter()
                .map(|i| &i.image)
                .chain(&report.pending);
            !known.any(|i| matches(i, q))
        })
        .collect();
    if !args.images.is_empty() {
        report
            .images
            .retain(|i| args.images.iter().any(|q| matches(&i.image, q)));
        report
            .pending
            .retain(|i| args.images.iter().any(|q| matches(i, q)));
    }
    let mut out = anstream::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).context("writing JSON to stdout")?;
        writeln!(out).context("writing to stdout")?;
    } else {
        render(&mut out, &report, args.top, super::status::screen_width())
            .context("writing to stdout")?;
    }
    for q in &unknown {
        eprintln!("headroom: no image on this node matches {q:?}");
    }
    Ok(ExitCode::from(if unknown.is_empty() {
        0
    } else {
        EXIT_NO_IMAGE
    }))
}

/// Whether `query` names `image`: one of its names (with or without the
/// registry, `docker.io/library/` included), its ID, or the ID's prefix.
fn matches(image: &audit::ImageIdentity, query: &str) -> bool {
    let hex = image.id.strip_prefix("sha256:").unwrap_or(&image.id);
    let query_hex = query.strip_prefix("sha256:").unwrap_or(query);
    (query_hex.len() >= 12 && hex.starts_with(query_hex))
        || image.refs.iter().any(|r| {
            r == query
                || r.split_once('/').is_some_and(|(registry, rest)| {
                    (registry.contains('.') || registry.contains(':'))
                        && (rest == query || rest.strip_prefix("library/") == Some(query))
                })
        })
}

/// The agent's audit when one answers; otherwise an audit here.
fn ask_agent_or_audit(config: &Config) -> anyhow::Result<AuditReport> {
    super::status::agent_or_here(config, client::fetch_audit, ("auditing", audit_here))
}

/// Reads the node (as `status --local`) and audits every image's layers.
fn audit_here(config: &Config) -> anyhow::Result<AuditReport> {
    let scanned = super::status::scan_here(config)?;
    let stacks = audit::stacks(&scanned.status);
    let spinner = super::status::spinner();
    spinner.set_message(format!("auditing the layers of {} images", stacks.len()));
    let report = Auditor::default().audit(&scanned.status.node, &stacks, &mut Pace::unlimited());
    spinner.finish_and_clear();
    Ok(report)
}

const COLUMNS: [super::fit::Column; 8] = [
    name("IMAGE", 24),
    figure("WASTED"),
    figure("HIDDEN"),
    figure("OVERWRITTEN"),
    droppable(figure("METADATA"), 3),
    figure("CACHES"),
    droppable(figure("DUPLICATE"), 2),
    droppable(figure("SHIPS"), 1),
];

/// The screen: the node's line, the images most wasteful first, then each
/// one's biggest wasted paths and the node's biggest duplicates.
fn render(
    out: &mut impl Write,
    report: &AuditReport,
    top: usize,
    width: usize,
) -> std::io::Result<()> {
    let t = &report.node_totals;
    writeln!(
        out,
        "{BOLD}{}{BOLD:#}: {} wasted in {} images ({} hidden, {} overwritten, {} re-shipped unchanged, {} caches, {} duplicated)",
        printable(&report.node),
        human_bytes(t.wasted_bytes),
        report.images.len(),
        human_bytes(t.hidden.bytes),
        human_bytes(t.overwritten.bytes),
        human_bytes(t.metadata_only.bytes),
        human_bytes(t.caches.values().map(|a| a.bytes).sum()),
        human_bytes(t.duplicate.bytes),
    )?;
    if !report.pending.is_empty() {
        writeln!(
            out,
            "{} images not audited yet (the agent audits new images at its low priority)",
            report.pending.len()
        )?;
    }
    let rows: Vec<Vec<String>> = report.images.iter().take(top).map(row).collect();
    print_table(
        out,
        (BOLD, "IMAGES", " (bytes as shipped: st_size)"),
        &COLUMNS,
        &rows,
        width,
    )?;
    for image in report
        .images
        .iter()
        .take(top)
        .filter(|i| !i.top_paths.is_empty())
    {
        writeln!(out, "\n{BOLD}{}{BOLD:#}", printable(&image_name(image)))?;
        for p in image.top_paths.iter().take(top) {
            let line = format!(
                "  {:>10}  {:<13} layer {:<3} {}",
                human_bytes(p.bytes),
                p.kind,
                p.layer,
                printable(&p.path)
            );
            writeln!(out, "{}", super::fit::shorten(&line, width))?;
        }
    }
    if !report.duplicates.is_empty() {
        writeln!(out, "\n{BOLD}DUPLICATES{BOLD:#} (one file in layers no image shares: size, copies, path, images)")?;
    }
    for d in report.duplicates.iter().take(top) {
        let path = d.copies.first().map_or("", |c| c.path.as_str());
        let mut images: Vec<&str> = d
            .copies
            .iter()
            .flat_map(|c| c.images.iter().map(String::as_str))
            .collect();
        images.dedup();
        let (size, copies) = (human_bytes(d.bytes), d.copies.len());
        let head = format!("  {size:>10}  ×{copies:<3} {}  ", printable(path));
        let room = width.saturating_sub(super::fit::width(&head));
        let images = printable(&images.join(", ")).into_owned();
        writeln!(out, "{head}{}", super::fit::shorten(&images, room))?;
    }
    for p in report.problems.iter().take(5) {
        writeln!(
            out,
            "problem: {}: {}",
            printable(&p.source),
            printable(&p.message)
        )?;
    }
    Ok(())
}

fn image_name(image: &ImageAudit) -> String {
    image
        .image
        .refs
        .first()
        .cloned()
        .unwrap_or_else(|| short_id(&image.image.id))
}

fn row(image: &ImageAudit) -> Vec<String> {
    let w = &image.waste;
    vec![
        printable(&image_name(image)).into_owned(),
        human_bytes(w.wasted_bytes),
        human_bytes(w.hidden.bytes),
        human_bytes(w.overwritten.bytes),
        human_bytes(w.metadata_only.bytes),
        human_bytes(w.caches.values().map(|a| a.bytes).sum()),
        human_bytes(w.duplicate.bytes),
        human_bytes(image.bytes),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom::runtime::RuntimeKind;

    #[test]
    fn an_image_is_named_by_any_of_its_names_or_its_id() {
        let image = audit::ImageIdentity {
            runtime: RuntimeKind::Containerd,
            namespace: "k8s.io".into(),
            id: "sha256:0123456789abcdef0123".into(),
            refs: vec![
                "docker.io/library/nginx:1.25".into(),
                "127.0.0.1:5000/hr/x:1".into(),
            ],
        };
        for q in [
            "docker.io/library/nginx:1.25",
            "nginx:1.25",
            "library/nginx:1.25",
            "hr/x:1",
            "0123456789ab",
            "sha256:0123456789abcdef",
        ] {
            assert!(matches(&image, q), "{q}");
        }
        for q in ["nginx", "x:1", "0123", "redis:7"] {
            assert!(!matches(&image, q), "{q}");
        }
    }
}
