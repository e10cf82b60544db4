//! The human screen of `headroom status`: everything on one screen, the
//! worst news first, no line wider than the terminal (see [`fit`]).
//! Color only reaches a terminal (anstream strips it otherwise and honours
//! NO_COLOR). Every string from disk or a runtime goes through
//! [`printable`] on its way here, so the only escapes the screen holds are
//! its own styles; they are laid on after the text is fitted, so they
//! never count as width.

use std::io::{self, Write};
use std::time::{Duration, SystemTime};

use anstyle::{AnsiColor, Style};
use comfy_table::{presets, CellAlignment, Table};
use headroom::model::{
    human_bytes, Filesystem, GcCensus, Prediction, ReadFrom, Source, State, Status,
};

use super::fit::{self, Column, Give};
use super::printable::printable;

const BAR_WIDTH: usize = 30;
const PROBLEMS_SHOWN: usize = 5;
/// Where a filesystem's second line and its verdict start.
const UNDER_FS: &str = "          ";
/// Where the continuation of a wrapped line starts.
const HANGING: &str = "    ";

const RED: Style = AnsiColor::Red.on_default().bold();
const YELLOW: Style = AnsiColor::Yellow.on_default().bold();
const GREEN: Style = AnsiColor::Green.on_default();
pub(super) const BOLD: Style = Style::new().bold();
const DIM: Style = Style::new().dimmed();

/// How the screen is laid out.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// How many images, containers and emptyDirs the tables list.
    pub top: usize,
    /// The terminal's width in columns: no line is wider.
    pub width: usize,
    /// The time the data's age is told from.
    pub now: SystemTime,
}

/// Writes the screen for `status` as `view` says.
pub fn render(out: &mut impl Write, status: &Status, view: &View) -> io::Result<()> {
    header(out, status, view)?;
    filesystems(out, status, view.width)?;
    pulls(out, status, view.width)?;
    images(out, status, view)?;
    containers(out, status, view)?;
    empty_dirs(out, status, view)?;
    image_gc(out, status, view.width)?;
    audit(out, status, view.width)?;
    runtimes(out, status, view.width)?;
    problems(out, status, view.width)
}

/// Writes `text` wrapped to `width` (first line at `first`, the others at
/// `rest`), then lays on `marks`: each `(style, piece)` styles the first
/// occurrence of `piece` not yet styled, if it was not split by the wrap.
fn paragraph(
    out: &mut impl Write,
    text: &str,
    width: usize,
    (first, rest): (&str, &str),
    marks: &[(Style, &str)],
) -> io::Result<()> {
    let mut lines = fit::wrap(text, width, first, rest).into_iter();
    let mut current = lines.next().unwrap_or_default();
    let mut styled = String::new();
    for &(style, piece) in marks {
        if piece.is_empty() {
            continue;
        }
        while !current.contains(piece) {
            writeln!(out, "{styled}{current}")?;
            styled.clear();
            match lines.next() {
                Some(next) => current = next,
                None => return Ok(()),
            }
        }
        if let Some((before, after)) = current.split_once(piece) {
            styled = format!("{styled}{before}{style}{piece}{style:#}");
            current = after.to_string();
        }
    }
    writeln!(out, "{styled}{current}")?;
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn header(out: &mut impl Write, s: &Status, view: &View) -> io::Result<()> {
    let scan = &s.scan;
    let age = age(s.generated_at, view.now);
    let how = match s.source {
        // The agent measures committed layers once: a pass walks only what
        // changes, so its count is small by design.
        Source::Agent => format!(
            "as of {age}, from the agent (its last pass: {:.1} s, {} {} walked anew, {} {})",
            scan.duration_seconds,
            scan.files,
            plural(scan.files, "entry", "entries"),
            scan.errors,
            plural(scan.errors, "error", "errors"),
        ),
        Source::Scan => format!(
            "scanned {age} here: {:.1} s, {} {}, {} {}",
            scan.duration_seconds,
            scan.files,
            plural(scan.files, "entry", "entries"),
            scan.errors,
            plural(scan.errors, "error", "errors"),
        ),
    };
    let text = format!(
        "headroom on {} at {} · {how}",
        printable(&s.node),
        humantime::format_rfc3339_seconds(s.generated_at)
    );
    paragraph(out, &text, view.width, ("", HANGING), &[(BOLD, "headroom")])
}

/// How long ago `then` was at `now`: "just now", "14 s ago", "3 min ago",
/// "2 h ago", "3 d ago". A time ahead of `now` (a clock set back) is "just
/// now" too: no age is better than a negative one.
fn age(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    match secs {
        0 => "just now".to_string(),
        s if s < 120 => format!("{s} s ago"),
        s if s < 2 * 3600 => format!("{} min ago", s / 60),
        s if s < 2 * 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} d ago", s / 86_400),
    }
}

fn filesystems(out: &mut impl Write, s: &Status, width: usize) -> io::Result<()> {
    writeln!(out)?;
    let title = format!(
        "FILESYSTEMS  (used █, eviction line ┃, free ░; thresholds from {})",
        printable(&s.thresholds_source)
    );
    paragraph(out, &title, width, ("", HANGING), &[(BOLD, "FILESYSTEMS")])?;
    for fs in &s.filesystems {
        let verdict = s.prediction.get(&fs.signal);
        let style = state_style(verdict.map_or(State::Ok, |p| p.state));
        let (signal, bar) = (format!("{:<8}", fs.signal), bar(fs));
        let first = format!(
            "{signal}{bar} {:>3.0}% used of {}  {} ({})",
            used_percent(fs),
            human_bytes(fs.capacity_bytes),
            printable(&fs.mountpoint),
            printable(&fs.fstype),
        );
        let marks = [(BOLD, signal.trim_end()), (style, bar.as_str())];
        paragraph(out, &first, width, ("  ", UNDER_FS), &marks)?;
        let left = format!("{} left", signed_bytes(fs.bytes_left));
        let second = format!(
            "avail {}, evicts below {}: {left}; inodes {} free, {} left",
            human_bytes(fs.available_bytes),
            human_bytes(fs.threshold_bytes),
            fs.inodes_free,
            fs.inodes_left,
        );
        paragraph(out, &second, width, (UNDER_FS, UNDER_FS), &[(style, &left)])?;
        if let Some(p) = verdict {
            verdict_line(out, p, width)?;
        }
    }
    Ok(())
}

/// `STATE: reason`, indented under a filesystem's bar and wrapped to
/// `width`, the state in its color.
pub(super) fn verdict_line(out: &mut impl Write, p: &Prediction, width: usize) -> io::Result<()> {
    let state = p.state.as_str().to_uppercase();
    let text = format!("{state}: {}", printable(&p.reason));
    let indent = (UNDER_FS, "            ");
    paragraph(out, &text, width, indent, &[(state_style(p.state), &state)])
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

/// A column that is a figure, kept whatever the width.
pub(super) const fn figure(header: &'static str) -> Column {
    Column {
        header,
        give: Give::Fixed,
        drop_rank: 0,
    }
}

/// A column that is a name, shortened down to `min` columns, never dropped.
pub(super) const fn name(header: &'static str, min: usize) -> Column {
    Column {
        header,
        give: Give::Shorten(min),
        drop_rank: 0,
    }
}

/// `column`, dropped `rank`th when the screen is too narrow for it.
pub(super) const fn droppable(column: Column, rank: u8) -> Column {
    Column {
        drop_rank: rank,
        ..column
    }
}

/// `title`, then the table of `rows` under `columns` fitted to `width`:
/// names shortened, the columns that do not fit left out.
pub(super) fn print_table(
    out: &mut impl Write,
    title: (Style, &str, &str),
    columns: &[Column],
    rows: &[Vec<String>],
    width: usize,
) -> io::Result<()> {
    let (style, name, rest) = title;
    writeln!(out, "\n{style}{name}{style:#}{rest}")?;
    if rows.is_empty() {
        return writeln!(out, "  (none)");
    }
    let fitted = fit::fit(columns, rows, width);
    let mut t = Table::new();
    t.load_style(presets::NOTHING)
        .set_header(fitted.kept.iter().map(|&i| columns[i].header));
    for row in rows {
        t.add_row(fitted.kept.iter().zip(&fitted.widths).map(|(&i, &w)| {
            let cell = row.get(i).map_or("", String::as_str);
            fit::shorten(cell, w).into_owned()
        }));
    }
    for (pos, &i) in fitted.kept.iter().enumerate() {
        if let (Some(col), Give::Fixed) = (t.column_mut(pos), columns[i].give) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    writeln!(out, "{t}")
}

const IMAGE_COLUMNS: [Column; 7] = [
    name("IMAGE", 28),
    figure("SIZE"),
    figure("UNIQUE"),
    droppable(figure("SHARED"), 2),
    droppable(figure("BLOBS"), 1),
    droppable(figure("CONTAINERS"), 3),
    droppable(name("RUNTIME", 10), 4),
];

fn images(out: &mut impl Write, s: &Status, view: &View) -> io::Result<()> {
    let rows: Vec<Vec<String>> = s
        .images
        .iter()
        .take(view.top)
        .map(|img| {
            vec![
                printable(&img.name()).into_owned(),
                human_bytes(img.disk_bytes),
                human_bytes(img.unique_disk_bytes),
                human_bytes(img.shared_disk_bytes),
                human_bytes(img.content_bytes),
                img.containers.to_string(),
                runtime_label(img.runtime.as_str(), &img.namespace),
            ]
        })
        .collect();
    let title = format!(" ({} in all)", s.images.len());
    print_table(
        out,
        (BOLD, "TOP IMAGES", &title),
        &IMAGE_COLUMNS,
        &rows,
        view.width,
    )
}

const CONTAINER_COLUMNS: [Column; 6] = [
    name("CONTAINER", 16),
    name("POD", 16),
    figure("WRITABLE"),
    figure("LOGS"),
    droppable(name("IMAGE", 16), 2),
    droppable(name("RUNTIME", 12), 1),
];

fn containers(out: &mut impl Write, s: &Status, view: &View) -> io::Result<()> {
    let rows: Vec<Vec<String>> = s
        .containers
        .iter()
        .take(view.top)
        .map(|c| {
            vec![
                printable(&c.display_name()).into_owned(),
                pod_label(c.pod_namespace.as_deref(), c.pod.as_deref()),
                human_bytes(c.writable_disk_bytes),
                human_bytes(c.log_bytes),
                printable(&c.image).into_owned(),
                runtime_label(c.runtime_name(), &c.namespace),
            ]
        })
        .collect();
    let title = format!(" ({} in all)", s.containers.len());
    let columns = &CONTAINER_COLUMNS;
    print_table(
        out,
        (BOLD, "TOP CONTAINERS", &title),
        columns,
        &rows,
        view.width,
    )
}

/// `namespace/pod`, or `-` when the kubelet does not own it.
fn pod_label(namespace: Option<&str>, pod: Option<&str>) -> String {
    match (namespace, pod) {
        (Some(ns), Some(pod)) => format!("{}/{}", printable(ns), printable(pod)),
        _ => "-".to_string(),
    }
}

const EMPTY_DIR_COLUMNS: [Column; 4] = [
    name("EMPTYDIR", 16),
    name("POD", 16),
    figure("SIZE"),
    droppable(figure("APPARENT"), 1),
];

/// Pods' disk-backed emptyDir volumes: they count against nodefs and the
/// kubelet evicts their pods first.
fn empty_dirs(out: &mut impl Write, s: &Status, view: &View) -> io::Result<()> {
    let rows: Vec<Vec<String>> = s
        .volumes
        .iter()
        .take(view.top)
        .map(|v| {
            let pod = match v.pod {
                Some(_) => pod_label(v.pod_namespace.as_deref(), v.pod.as_deref()),
                None => format!("uid {}", printable(&v.pod_uid)),
            };
            vec![
                printable(&v.name).into_owned(),
                pod,
                human_bytes(v.disk_bytes),
                human_bytes(v.apparent_bytes),
            ]
        })
        .collect();
    let total = s
        .volumes
        .iter()
        .map(|v| v.disk_bytes)
        .fold(0, u64::saturating_add);
    let title = format!(" ({} in all, {})", s.volumes.len(), human_bytes(total));
    let columns = &EMPTY_DIR_COLUMNS;
    print_table(
        out,
        (BOLD, "EMPTYDIR VOLUMES", &title),
        columns,
        &rows,
        view.width,
    )
}

/// What the kubelet's image GC would and would not delete, and why: the
/// document's census (the sentence the verdicts give too), else, in a
/// document without one, what the image list tells.
fn image_gc(out: &mut impl Write, s: &Status, width: usize) -> io::Result<()> {
    let text = match &s.image_gc {
        Some(census) => census_line(census, s.reclaimable_bytes),
        None => image_list_line(s),
    };
    writeln!(out)?;
    paragraph(out, &text, width, ("", HANGING), &[(BOLD, "image GC")])
}

/// The layer audit's line: the node's wasted bytes by kind, or why there
/// are none to show.
fn audit(out: &mut impl Write, s: &Status, width: usize) -> io::Result<()> {
    paragraph(
        out,
        &audit_line(s),
        width,
        ("", HANGING),
        &[(BOLD, "audit")],
    )
}

fn audit_line(s: &Status) -> String {
    let Some(a) = &s.audit else {
        return "audit: not in this document (the agent audits the layers at its low priority); \
                run `headroom audit`"
            .into();
    };
    let kind = |k: &str| human_bytes(a.by_kind.get(k).copied().unwrap_or(0));
    let pending = match a.pending {
        0 => String::new(),
        n => format!(", {n} more not audited yet"),
    };
    format!(
        "audit: {} of the images' bytes are wasted ({} hidden by later layers, {} overwritten, \
         {} re-shipped unchanged, {} caches, {} duplicated) in {} {}{pending}; `headroom audit` \
         says where",
        human_bytes(a.wasted_bytes),
        kind("hidden"),
        kind("overwritten"),
        kind("metadata_only"),
        kind("cache"),
        kind("duplicate"),
        a.images,
        plural(a.images, "image", "images"),
    )
}

/// The census' sentence, and what pruning every unused image by hand would
/// free when that is more (images too young for GC, or of a runtime the
/// kubelet does not manage).
fn census_line(census: &GcCensus, reclaimable_bytes: u64) -> String {
    let mut text = census.to_string();
    if reclaimable_bytes > census.deletable_bytes {
        text.push_str(&format!(
            "; pruning every unused, unpinned image would free {}",
            human_bytes(reclaimable_bytes)
        ));
    }
    text
}

/// The GC line of a document without a census: counts from the image
/// list, the minimum age unknown.
fn image_list_line(s: &Status) -> String {
    let in_use = s.images.iter().filter(|i| i.in_use).count();
    let pinned = s.images.iter().filter(|i| i.pinned && !i.in_use).count();
    let unused = s.images.len() - in_use - pinned;
    format!(
        "image GC could free {} ({unused} unused, unpinned {}: their unique layers and blobs); \
         it keeps the {in_use} {} in use and the {pinned} pinned, and any image younger than \
         the kubelet's imageMinimumGCAge",
        human_bytes(s.reclaimable_bytes),
        plural(unused, "image", "images"),
        plural(in_use, "image", "images"),
    )
}

fn plural<'a>(n: impl TryInto<u64>, one: &'a str, many: &'a str) -> &'a str {
    match n.try_into() {
        Ok(1) => one,
        _ => many,
    }
}

/// Pulls in flight, right under the verdicts they feed; nothing when none.
const PULL_COLUMNS: [Column; 6] = [
    name("PULL", 24),
    figure("DOWNLOADED"),
    figure("TO DOWNLOAD"),
    figure("TO UNPACK"),
    figure("LAYERS"),
    droppable(name("NAMESPACE", 8), 1),
];

fn pulls(out: &mut impl Write, s: &Status, width: usize) -> io::Result<()> {
    if s.pulls.is_empty() {
        return Ok(());
    }
    let rows: Vec<Vec<String>> = s
        .pulls
        .iter()
        .map(|p| {
            vec![
                printable(p.image.as_ref().unwrap_or(&p.reference)).into_owned(),
                format!(
                    "{} of {}",
                    human_bytes(p.offset_bytes),
                    human_bytes(p.total_bytes)
                ),
                human_bytes(p.remaining_download_bytes),
                format!("~{}", human_bytes(p.unpack_bytes)),
                format!("{} of {} in", p.layers_present, p.layers_total),
                printable(&p.namespace).into_owned(),
            ]
        })
        .collect();
    let title = format!(" ({})", s.pulls.len());
    print_table(
        out,
        (YELLOW, "PULLS IN FLIGHT", &title),
        &PULL_COLUMNS,
        &rows,
        width,
    )
}

fn runtime_label(runtime: &str, namespace: &str) -> String {
    if namespace.is_empty() {
        runtime.to_string()
    } else {
        format!("{runtime}/{}", printable(namespace))
    }
}

fn runtimes(out: &mut impl Write, s: &Status, width: usize) -> io::Result<()> {
    for r in &s.runtimes {
        let name = r.runtime.as_str();
        let location = printable(&r.location);
        let why = printable(r.message.as_deref().unwrap_or(""));
        let (style, head, text) = match (r.up(), r.read_from) {
            (true, Some(ReadFrom::Api)) => (
                GREEN,
                name.to_string(),
                format!("{name}: up, read through its API at {location}"),
            ),
            (true, _) => (
                GREEN,
                name.to_string(),
                format!("{name}: read from its files at {location}"),
            ),
            (false, Some(_)) => (
                RED,
                format!("{name}: DOWN"),
                format!("{name}: DOWN, figures from its files: {why}"),
            ),
            (false, None) => (
                DIM,
                format!("{name}: not read"),
                format!("{name}: not read: {why}"),
            ),
        };
        paragraph(out, &text, width, ("", HANGING), &[(style, &head)])?;
    }
    Ok(())
}
fn problems(out: &mut impl Write, s: &Status, width: usize) -> io::Result<()> {
    let item = ("  ", "      ");
    if !s.problems.is_empty() {
        writeln!(out)?;
        let title = format!(
            "PROBLEMS ({}; the rest of the report stands)",
            s.problems.len()
        );
        paragraph(out, &title, width, ("", HANGING), &[(YELLOW, "PROBLEMS")])?;
        for p in s.problems.iter().take(PROBLEMS_SHOWN) {
            let (reader, kind) = (p.reader.as_str(), p.kind.as_str());
            let (source, message) = (printable(&p.source), printable(&p.message));
            let text = format!("{source}: {message} ({reader}, {kind})");
            paragraph(out, &text, width, item, &[])?;
        }
    }
    if s.scan.errors > 0 {
        let kinds: Vec<String> = s
            .scan
            .errors_by_kind
            .iter()
            .map(|(k, n)| format!("{n} {}", k.as_str()))
            .collect();
        writeln!(out)?;
        let title = format!("SCAN ERRORS: {} (counted, not fatal)", kinds.join(", "));
        paragraph(
            out,
            &title,
            width,
            ("", HANGING),
            &[(YELLOW, "SCAN ERRORS")],
        )?;
        for e in s.scan.error_samples.iter().take(PROBLEMS_SHOWN) {
            let (path, message) = (printable(&e.path), printable(&e.message));
            let text = format!("{path}: {message} ({})", e.kind.as_str());
            paragraph(out, &text, width, item, &[])?;
        }
    }
    if s.scan.skipped_mounts > 0 {
        let n = s.scan.skipped_mounts;
        writeln!(out)?;
        let title =
            format!("MOUNTS NOT CROSSED: {n} (bind mounts or other filesystems; not counted here)");
        paragraph(
            out,
            &title,
            width,
            ("", HANGING),
            &[(DIM, "MOUNTS NOT CROSSED")],
        )?;
        for path in s.scan.skipped_mount_samples.iter().take(PROBLEMS_SHOWN) {
            paragraph(out, &printable(path), width, item, &[])?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use headroom::model::Status;

    use super::*;

    /// What a hostile name, path or message holds: line breaks, a tab, an
    /// SGR escape, an OSC title change ended by BEL, DEL and a C1 CSI, a
    /// bidi override.
    const HOSTILE: [&str; 7] = [
        "\n",
        "\r",
        "\t",
        "\x1b[31m",
        "\x1b]0;pwned\x07",
        "\u{7f}\u{9b}2J",
        "\u{202e}",
    ];

    /// The titles of the screen's tables.
    const TABLES: [&str; 3] = ["PULLS IN FLIGHT", "TOP IMAGES", "TOP CONTAINERS"];

    fn fixture() -> Status {
        serde_json::from_str(include_str!("../../tests/fixtures/status.json"))
            .expect("tests/fixtures/status.json parses")
    }

    #[test]
    fn fault_a_runtime_read_from_its_files_shows_down_and_a_mount_not_crossed_shows() {
        let mut s = fixture();
        let containerd = &mut s.runtimes[0];
        containerd.answers = Some(false);
        containerd.read_from = Some(ReadFrom::Files);
        containerd.message = Some("containerd not reachable at /run/c.sock: no such socket".into());
        s.scan.skipped_mounts = 1;
        s.scan.skipped_mount_samples = vec!["/var/lib/docker/overlay2/x/diff/data".into()];
        let text = piped(&s);
        assert!(
            text.contains(
                "containerd: DOWN, figures from its files: containerd not reachable at /run/c.sock"
            ),
            "{text}"
        );
        assert!(text.contains("MOUNTS NOT CROSSED: 1"), "{text}");
        assert!(
            text.contains("  /var/lib/docker/overlay2/x/diff/data"),
            "{text}"
        );
        let up = piped(&fixture());
        assert!(
            up.contains("containerd: up, read through its API at /run/containerd/containerd.sock"),
            "{up}"
        );
        assert!(
            !up.contains(": DOWN") && !up.contains("MOUNTS NOT CROSSED"),
            "{up}"
        );
    }

    /// The fixture with every string from disk or a runtime made hostile,
    /// and one container, image and pull per hostile string beside a clean one.
    fn hostile_status() -> Status {
        let mut s = fixture();
        let bad = |i: usize, what: &str| format!("{what}{}end", HOSTILE[i % HOSTILE.len()]);
        s.node = bad(0, "node");
        s.thresholds_source = bad(1, "/etc/kubelet");
        for (i, fs) in s.filesystems.iter_mut().enumerate() {
            fs.mountpoint = bad(i, "/mnt");
            fs.fstype = bad(i + 3, "ext4");
        }
        for (i, p) in s.prediction.values_mut().enumerate() {
            p.reason = bad(i + 5, "because");
        }
        let container = s.containers[0].clone();
        let image = s.images[0].clone();
        let pull = s.pulls[0].clone();
        for i in 0..HOSTILE.len() {
            let mut c = container.clone();
            c.name = bad(i, "web");
            c.pod = Some(bad(i + 1, "web-0"));
            c.pod_namespace = Some(bad(i + 2, "shop"));
            c.image = bad(i + 3, "nginx");
            c.namespace = bad(i + 4, "k8s.io");
            s.containers.push(c);
            let mut img = image.clone();
            img.refs = vec![bad(i, "nginx")];
            img.namespace = bad(i + 1, "k8s.io");
            s.images.push(img);
            let mut p = pull.clone();
            p.image = Some(bad(i, "nginx"));
            p.namespace = bad(i + 1, "k8s.io");
            s.pulls.push(p);
        }
        for (i, r) in s.runtimes.iter_mut().enumerate() {
            r.location = bad(i, "/run/sock");
            r.message = Some(bad(i + 2, "odd"));
        }
        for (i, p) in s.problems.iter_mut().enumerate() {
            p.source = bad(i, "/x");
            p.message = bad(i + 4, "bad");
        }
        for (i, e) in s.scan.error_samples.iter_mut().enumerate() {
            e.path = bad(i, "/x");
            e.message = bad(i + 6, "denied");
        }
        s
    }

    const TOP: usize = 20;
    /// Wide enough that no name of the fixtures is shortened.
    const WIDE: usize = 400;

    /// A view `width` columns wide, 14 s after the fixture was made.
    fn view(s: &Status, width: usize) -> View {
        View {
            top: TOP,
            width,
            now: s.generated_at + Duration::from_secs(14),
        }
    }

    /// The screen as a terminal `width` columns wide gets it: our styles included.
    fn on_terminal_at(s: &Status, width: usize) -> String {
        let mut out = Vec::new();
        render(&mut out, s, &view(s, width)).expect("rendering into memory");
        String::from_utf8(out).expect("the screen is UTF-8")
    }

    fn on_terminal(s: &Status) -> String {
        on_terminal_at(s, WIDE)
    }

    /// The screen as a pipe gets it at `width`: anstream strips the styles.
    fn piped_at(s: &Status, width: usize) -> String {
        let mut out = anstream::StripStream::new(Vec::new());
        render(&mut out, s, &view(s, width)).expect("rendering into memory");
        String::from_utf8(out.into_inner()).expect("the screen is UTF-8")
    }

    fn piped(s: &Status) -> String {
        piped_at(s, WIDE)
    }

    /// The lines of the table under the section titled `title`: up to the
    /// next blank line.
    fn table_rows<'a>(screen: &'a str, title: &str) -> Vec<&'a str> {
        screen
            .lines()
            .skip_while(|l| !l.starts_with(title))
            .skip(1)
            .take_while(|l| !l.is_empty())
            .collect()
    }

    /// Characters a terminal acts on rather than shows: controls (but the
    /// line break) and bidi controls.
    fn acted_on(c: char) -> bool {
        (c.is_control() && c != '\n')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }

    #[test]
    fn fault_hostile_names_keep_every_table_row_one_line() {
        let s = hostile_status();
        let screen = piped(&s);
        let entries = [s.pulls.len(), s.images.len(), s.containers.len()];
        for (title, n) in TABLES.iter().zip(entries) {
            let rows = table_rows(&screen, title);
            assert_eq!(
                rows.len(),
                1 + n.min(TOP),
                "{title}: a header and one line per entry:\n{screen}"
            );
        }
    }

    #[test]
    fn fault_rows_of_a_table_are_equally_wide() {
        let screen = piped(&hostile_status());
        for title in TABLES {
            // Every character of these rows is one column wide.
            let widths: Vec<usize> = table_rows(&screen, title)
                .iter()
                .map(|r| r.chars().count())
                .collect();
            assert!(
                widths.windows(2).all(|w| w[0] == w[1]),
                "{title}: rows of widths {widths:?}:\n{screen}"
            );
        }
    }

    #[test]
    fn fault_no_control_character_reaches_a_pipe() {
        let screen = piped(&hostile_status());
        let found: Vec<char> = screen.chars().filter(|&c| acted_on(c)).collect();
        assert!(found.is_empty(), "{found:?} in:\n{screen}");
    }

    #[test]
    fn fault_no_escape_from_a_name_reaches_a_terminal() {
        let mut screen = on_terminal(&hostile_status());
        // Our own styles are the only escapes the screen may hold.
        for style in [RED, YELLOW, GREEN, BOLD, DIM] {
            screen = screen.replace(&style.render().to_string(), "");
            screen = screen.replace(&style.render_reset().to_string(), "");
        }
        let found: Vec<char> = screen.chars().filter(|&c| acted_on(c)).collect();
        assert!(found.is_empty(), "{found:?} in:\n{screen:?}");
    }

    #[test]
    fn fault_hostile_names_show_written_out() {
        let screen = piped(&hostile_status());
        let containers = table_rows(&screen, "TOP CONTAINERS").join("\n");
        for shown in [
            r"web\nend",
            r"web\rend",
            r"web\tend",
            r"web\x1b[31mend",
            r"web\x1b]0;pwned\x07end",
            r"web\x7f\u{9b}2Jend",
            r"web\u{202e}end",
        ] {
            assert!(containers.contains(shown), "{shown} in:\n{containers}");
        }
    }

    /// The fixture as it comes from the agent, with names longer than any
    /// column has room for at 80 columns.
    fn long_names() -> Status {
        let mut s = fixture();
        s.source = Source::Agent;
        s.images[0].refs = vec![
            "registry.example.com:5000/platform/observability/collector-agent:v1.42.0-rc.3".into(),
        ];
        s.containers[0].name = "collector-agent-with-a-very-long-container-name".into();
        s.containers[0].pod = Some("collector-agent-7f9c8d6b5-x2x9z-and-more-suffix".into());
        s.pulls[0].image = Some("127.0.0.1:5000/team/an-image-with-a-long-repository-name".into());
        // Figures as wide as a real pull's: at 80 columns the names must go
        // below their least for the row to fit.
        s.pulls[0].offset_bytes = 1_000_000;
        s.pulls[0].total_bytes = 150_000_000;
        s.pulls[0].remaining_download_bytes = 149_000_000;
        s.pulls[0].unpack_bytes = 150_000_000;
        s.volumes[0].name = "a-cache-volume-whose-name-goes-on-and-on".into();
        if let Some(p) = s.prediction.values_mut().next() {
            p.reason = "pull of 127.0.0.1:5000/team/big adds ~108.0 MB; imagefs has 50.0 MB above \
                the hard threshold; image GC may delete no image; 2 images in use and 3 younger \
                than imageMinimumGCAge 2m are kept"
                .into();
        }
        s
    }

    /// Lines wider than `width` display columns, styles left out.
    fn too_wide(screen: &str, width: usize) -> Vec<String> {
        let plain = anstream::adapter::strip_str(screen).to_string();
        plain
            .lines()
            .filter(|l| fit::width(l) > width)
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn the_audit_line_gives_the_node_s_waste_by_kind_or_says_where_to_get_it() {
        let mut s = fixture();
        let line = audit_line(&s);
        assert!(
            line.starts_with("audit: 700 B of the images' bytes are wasted (600 B hidden"),
            "{line}"
        );
        assert!(
            line.contains("100 B caches") && line.contains("in 3 images, 1 more not audited yet"),
            "{line}"
        );
        assert!(piped(&s).contains("audit: 700 B"));
        s.audit = None;
        assert!(audit_line(&s).contains("run `headroom audit`"));
    }

    #[test]
    fn no_line_is_wider_than_80_or_120_columns() {
        for s in [fixture(), long_names(), hostile_status()] {
            for width in [80, 120] {
                for screen in [piped_at(&s, width), on_terminal_at(&s, width)] {
                    let wide = too_wide(&screen, width);
                    assert!(wide.is_empty(), "at {width}: {wide:#?}\n{screen}");
                }
            }
        }
        // The test can fail: unfitted, the long names overflow 80 columns.
        assert!(!too_wide(&piped(&long_names()), 80).is_empty());
    }

    #[test]
    fn a_shortened_name_stays_recognisable_and_its_row_one_line() {
        let s = long_names();
        let screen = piped_at(&s, 80);
        let images = table_rows(&screen, "TOP IMAGES");
        assert_eq!(images.len(), 1 + s.images.len(), "{screen}");
        assert!(
            images[1].contains("registry.") && images[1].contains("…"),
            "{screen}"
        );
        assert!(images[1].contains(":v1.42.0-rc.3"), "{screen}");
        // At 120 columns the image keeps every figure column.
        let wide = piped_at(&s, 120);
        for header in ["SIZE", "UNIQUE", "SHARED", "BLOBS", "CONTAINERS"] {
            assert!(
                table_rows(&wide, "TOP IMAGES")[0].contains(header),
                "{wide}"
            );
        }
    }

    #[test]
    fn a_reason_wraps_at_words_under_its_indent() {
        let screen = piped_at(&long_names(), 80);
        let at = screen
            .lines()
            .position(|l| l.contains("pull of 127.0.0.1:5000/team/big"))
            .expect("the reason is on screen");
        let next = screen.lines().nth(at + 1).unwrap_or_default();
        assert!(next.starts_with("            "), "{screen}");
        let words: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            words.contains(
                "image GC may delete no image; 2 images in use and 3 younger than \
                 imageMinimumGCAge 2m are kept"
            ),
            "{screen}"
        );
    }

    #[test]
    fn empty_dirs_are_listed_with_their_pod() {
        let screen = piped_at(&fixture(), 80);
        let rows = table_rows(&screen, "EMPTYDIR VOLUMES");
        assert_eq!(rows.len(), 2, "{screen}");
        assert!(
            rows[1].contains("cache") && rows[1].contains("shop/web-0"),
            "{screen}"
        );
        assert!(
            screen.contains("EMPTYDIR VOLUMES (1 in all, 4.1 kB)"),
            "{screen}"
        );
    }

    #[test]
    fn the_data_says_how_old_it_is_and_where_from() {
        let mut s = fixture();
        s.source = Source::Agent;
        assert!(
            piped(&s).contains("as of 14 s ago, from the agent"),
            "{}",
            piped(&s)
        );
        s.source = Source::Scan;
        let mut out = anstream::StripStream::new(Vec::new());
        let fresh = View {
            now: s.generated_at,
            ..view(&s, 120)
        };
        render(&mut out, &s, &fresh).expect("rendering into memory");
        let screen = String::from_utf8(out.into_inner()).expect("UTF-8");
        assert!(screen.contains("scanned just now here"), "{screen}");
    }

    #[test]
    fn ages_read_as_people_say_them() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let at = |secs: u64| age(t0, t0 + Duration::from_secs(secs));
        assert_eq!(at(0), "just now");
        assert_eq!(at(14), "14 s ago");
        assert_eq!(at(600), "10 min ago");
        assert_eq!(at(3 * 3600), "3 h ago");
        assert_eq!(at(3 * 86_400), "3 d ago");
        // A clock set back gives no negative age.
        assert_eq!(age(t0 + Duration::from_secs(5), t0), "just now");
    }

    #[test]
    fn without_a_census_the_gc_line_says_what_it_keeps_and_why() {
        let mut s = fixture();
        s.image_gc = None;
        s.images[0].in_use = true;
        let screen = piped(&s);
        let words: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
        let in_use = s.images.iter().filter(|i| i.in_use).count();
        assert!(words.contains("image GC could free"), "{screen}");
        assert!(words.contains(&format!("keeps the {in_use} ")), "{screen}");
        assert!(
            words.contains("younger than the kubelet's imageMinimumGCAge"),
            "{screen}"
        );
    }

    /// The fixture during a pull that GC cannot make room for: what the
    /// issue's screen showed, a census this time.
    fn census_during_a_pull() -> Status {
        let mut s = long_names();
        let census = GcCensus {
            deletable: 3,
            deletable_bytes: 108_000_000,
            in_use: 2,
            pinned: 1,
            young: 1,
            min_age: Duration::from_secs(120),
        };
        s.image_gc = Some(census);
        s.reclaimable_bytes = 108_000_000;
        if let Some(p) = s.prediction.values_mut().next() {
            p.reason = format!("pull of 127.0.0.1:5000/team/big adds ~208.0 MB; {census}");
        }
        s
    }

    #[test]
    fn the_gc_line_gives_the_census_counts_and_the_minimum_age() {
        let s = census_during_a_pull();
        for width in [80, 120] {
            let screen = piped_at(&s, width);
            let words: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
            assert!(
                words.contains(
                    "image GC could free 108.0 MB (3 unused images); 2 images in use, 1 pinned \
                     and 1 younger than imageMinimumGCAge 2m are kept"
                ),
                "{screen}"
            );
            // The census covers what reclaimable_bytes does: no second figure.
            assert!(!words.contains("pruning"), "{screen}");
            assert!(too_wide(&screen, width).is_empty(), "{screen}");
            assert!(too_wide(&on_terminal_at(&s, width), width).is_empty());
        }
    }

    #[test]
    fn the_gc_line_agrees_with_a_verdict_that_gives_the_census() {
        let mut s = census_during_a_pull();
        let census = GcCensus {
            deletable: 0,
            deletable_bytes: 0,
            young: 3,
            ..s.image_gc.unwrap_or_default()
        };
        s.image_gc = Some(census);
        // The verdict of a pull GC cannot help says the census' sentence.
        if let Some(p) = s.prediction.values_mut().next() {
            p.reason = format!("pull of 127.0.0.1:5000/team/big adds ~108.0 MB; {census}");
        }
        let screen = piped_at(&s, 80);
        let words: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
        let sentence = census.to_string();
        assert_eq!(words.matches(sentence.as_str()).count(), 2, "{screen}");
        assert!(!words.contains("could free"), "{screen}");
        // Young images hold what only pruning by hand frees now.
        assert!(
            words.contains("are kept; pruning every unused, unpinned image would free 108.0 MB"),
            "{screen}"
        );
    }

    #[test]
    fn the_header_counts_in_the_singular_and_the_plural() {
        let mut s = fixture();
        s.source = Source::Agent;
        (s.scan.files, s.scan.errors) = (1, 1);
        let screen = piped_at(&s, 120);
        let words: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.contains("1 entry walked anew, 1 error)"), "{screen}");
        s.source = Source::Scan;
        (s.scan.files, s.scan.errors) = (2, 0);
        let screen = piped_at(&s, 120);
        let words: String = screen.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(words.contains("2 entries, 0 errors"), "{screen}");
    }
}
