//! The human screen of `headroom status`: everything on one screen, the
//! worst news first. Color only reaches a terminal (anstream strips it
//! otherwise and honours NO_COLOR).

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use comfy_table::{presets, CellAlignment, Table};
use headroom::model::{human_bytes, Filesystem, Prediction, ReadFrom, Source, State, Status};

const BAR_WIDTH: usize = 30;
const PROBLEMS_SHOWN: usize = 5;

const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default();
pub(super) const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

/// Writes the screen for `status`, listing at most `top` images and containers.
pub fn render(out: &mut impl Write, status: &Status, top: usize) -> io::Result<()> {
    header(out, status)?;
    filesystems(out, status)?;
    pulls(out, status)?;
    images(out, status, top)?;
    containers(out, status, top)?;
    writeln!(
        out,
        "\n{BOLD}Image GC could reclaim{BOLD:#} {} (unique layers and blobs of unused, unpinned images)",
        human_bytes(status.reclaimable_bytes)
    )?;
    runtimes(out, status)?;
    problems(out, status)
}

fn header(out: &mut impl Write, s: &Status) -> io::Result<()> {
    let scan = &s.scan;
    let how = match s.source {
        // The agent measures committed layers once: a pass walks only what
        // changes, so its count is small by design.
        Source::Agent => format!(
            "from the agent (its last pass: {:.1} s, {} entries walked anew, {} errors)",
            scan.duration_seconds, scan.files, scan.errors
        ),
        Source::Scan => format!(
            "one-shot scan: {:.1} s, {} entries, {} errors",
            scan.duration_seconds, scan.files, scan.errors
        ),
    };
    writeln!(
        out,
        "{BOLD}headroom{BOLD:#} on {} at {} · {how}",
        s.node,
        humantime::format_rfc3339_seconds(s.generated_at)
    )
}

fn filesystems(out: &mut impl Write, s: &Status) -> io::Result<()> {
    writeln!(
        out,
        "\n{BOLD}FILESYSTEMS{BOLD:#}  (used █, eviction line ┃, free ░; thresholds from {})",
        s.thresholds_source
    )?;
    for fs in &s.filesystems {
        let verdict = s.prediction.get(&fs.signal);
        let style = state_style(verdict.map_or(State::Ok, |p| p.state));
        writeln!(
            out,
            "  {BOLD}{:<8}{BOLD:#}{style}{}{style:#} {:>3.0}% used of {}  {} ({})",
            fs.signal,
            bar(fs),
            used_percent(fs),
            human_bytes(fs.capacity_bytes),
            fs.mountpoint,
            fs.fstype,
        )?;
        writeln!(
            out,
            "          avail {}, evicts below {}: {style}{} left{style:#}; inodes {} free, {} left",
            human_bytes(fs.available_bytes),
            human_bytes(fs.threshold_bytes),
            signed_bytes(fs.bytes_left),
            fs.inodes_free,
            fs.inodes_left,
        )?;
        if let Some(p) = verdict {
            verdict_line(out, p)?;
        }
    }
    Ok(())
}

/// `STATE: reason`, indented under a filesystem's bar, in the state's color.
pub(super) fn verdict_line(out: &mut impl Write, p: &Prediction) -> io::Result<()> {
    let style = state_style(p.state);
    writeln!(
        out,
        "          {style}{}{style:#}: {}",
        p.state.as_str().to_uppercase(),
        p.reason
    )
}

/// The color of a verdict state.
pub(super) fn state_style(state: State) -> Style {
    match state {
        State::Pressure => RED,
        State::Warning => YELLOW,
        State::Ok => GREEN,
    }
}

fn used_percent(fs: &Filesystem) -> f64 {
    if fs.capacity_bytes == 0 {
        return 0.0;
    }
    100.0 - fs.available_bytes as f64 * 100.0 / fs.capacity_bytes as f64
}

/// `[████┃░░░]`: used cells, the eviction line where usage would cross the
/// hard threshold, and free cells.
pub(super) fn bar(fs: &Filesystem) -> String {
    let cells = |bytes: u64| -> usize {
        if fs.capacity_bytes == 0 {
            return 0;
        }
        let cells = (bytes as f64 / fs.capacity_bytes as f64 * BAR_WIDTH as f64).round() as usize;
        cells.min(BAR_WIDTH)
    };
    let used = cells(fs.capacity_bytes.saturating_sub(fs.available_bytes));
    let line = cells(fs.capacity_bytes.saturating_sub(fs.threshold_bytes)).min(BAR_WIDTH - 1);
    let body: String = (0..BAR_WIDTH)
        .map(|i| match i {
            _ if i == line => '┃',
            _ if i < used => '█',
            _ => '░',
        })
        .collect();
    format!("[{body}]")
}

fn signed_bytes(b: i64) -> String {
    let sign = if b < 0 { "-" } else { "" };
    format!("{sign}{}", human_bytes(b.unsigned_abs()))
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(presets::NOTHING).set_header(header.to_vec());
    for i in 1..header.len() {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn images(out: &mut impl Write, s: &Status, top: usize) -> io::Result<()> {
    let mut t = table(&[
        "IMAGE",
        "SIZE",
        "UNIQUE",
        "SHARED",
        "BLOBS",
        "CONTAINERS",
        "RUNTIME",
    ]);
    for img in s.images.iter().take(top) {
        t.add_row(vec![
            img.name(),
            human_bytes(img.disk_bytes),
            human_bytes(img.unique_disk_bytes),
            human_bytes(img.shared_disk_bytes),
            human_bytes(img.content_bytes),
            img.containers.to_string(),
            runtime_label(img.runtime.as_str(), &img.namespace),
        ]);
    }
    writeln!(
        out,
        "\n{BOLD}TOP IMAGES{BOLD:#} ({} in all)",
        s.images.len()
    )?;
    print_table(out, &t)
}

fn containers(out: &mut impl Write, s: &Status, top: usize) -> io::Result<()> {
    let mut t = table(&["CONTAINER", "POD", "WRITABLE", "LOGS", "IMAGE", "RUNTIME"]);
    for c in s.containers.iter().take(top) {
        let pod = match (&c.pod_namespace, &c.pod) {
            (Some(ns), Some(pod)) => format!("{ns}/{pod}"),
            _ => "-".to_string(),
        };
        t.add_row(vec![
            c.display_name(),
            pod,
            human_bytes(c.writable_disk_bytes),
            human_bytes(c.log_bytes),
            c.image.clone(),
            runtime_label(c.runtime_name(), &c.namespace),
        ]);
    }
    writeln!(
        out,
        "\n{BOLD}TOP CONTAINERS{BOLD:#} ({} in all)",
        s.containers.len()
    )?;
    print_table(out, &t)
}

fn print_table(out: &mut impl Write, t: &Table) -> io::Result<()> {
    if t.row_count() == 0 {
        writeln!(out, "  (none)")
    } else {
        writeln!(out, "{t}")
    }
}

/// Pulls in flight, right under the verdicts they feed; nothing when none.
fn pulls(out: &mut impl Write, s: &Status) -> io::Result<()> {
    if s.pulls.is_empty() {
        return Ok(());
    }
    let mut t = table(&[
        "PULL",
        "DOWNLOADED",
        "TO DOWNLOAD",
        "TO UNPACK",
        "LAYERS",
        "NAMESPACE",
    ]);
    for p in &s.pulls {
        t.add_row(vec![
            p.image.clone().unwrap_or_else(|| p.reference.clone()),
            format!(
                "{} of {}",
                human_bytes(p.offset_bytes),
                human_bytes(p.total_bytes)
            ),
            human_bytes(p.remaining_download_bytes),
            format!("~{}", human_bytes(p.unpack_bytes)),
            format!("{} of {} in", p.layers_present, p.layers_total),
            p.namespace.clone(),
        ]);
    }
    writeln!(
        out,
        "\n{YELLOW}PULLS IN FLIGHT{YELLOW:#} ({})",
        s.pulls.len()
    )?;
    print_table(out, &t)
}

fn runtime_label(runtime: &str, namespace: &str) -> String {
    if namespace.is_empty() {
        runtime.to_string()
    } else {
        format!("{runtime}/{namespace}")
    }
}

fn runtimes(out: &mut impl Write, s: &Status) -> io::Result<()> {
    for r in &s.runtimes {
        let name = r.runtime.as_str();
        let why = r.message.as_deref().unwrap_or("");
        match (r.up(), r.read_from) {
            (true, Some(ReadFrom::Api)) => writeln!(
                out,
                "{GREEN}{name}{GREEN:#}: up, read through its API at {}",
                r.location
            )?,
            (true, _) => writeln!(
                out,
                "{GREEN}{name}{GREEN:#}: read from its files at {}",
                r.location
            )?,
            (false, Some(_)) => writeln!(
                out,
                "{RED}{name}: DOWN{RED:#}, figures from its files: {why}"
            )?,
            (false, None) => writeln!(out, "{DIM}{name}: not read: {why}{DIM:#}")?,
        }
    }
    Ok(())
}

fn problems(out: &mut impl Write, s: &Status) -> io::Result<()> {
    if !s.problems.is_empty() {
        writeln!(
            out,
            "\n{YELLOW}PROBLEMS{YELLOW:#} ({}; the rest of the report stands)",
            s.problems.len()
        )?;
        for p in s.problems.iter().take(PROBLEMS_SHOWN) {
            let (reader, kind) = (p.reader.as_str(), p.kind.as_str());
            writeln!(out, "  {}: {} ({reader}, {kind})", p.source, p.message)?;
        }
    }
    if s.scan.errors > 0 {
        let kinds: Vec<String> = s
            .scan
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{n} {}", k.as_str()))
            .collect();
        writeln!(
            out,
            "\n{YELLOW}SCAN ERRORS{YELLOW:#}: {} (counted, not fatal)",
            kinds.join(", ")
        )?;
        for e in s.scan.error_samples.iter().take(PROBLEMS_SHOWN) {
            writeln!(out, "  {}: {} ({})", e.path, e.message, e.kind.as_str())?;
        }
    }
    Ok(())
}
