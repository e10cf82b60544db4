//! The human screen of `headroom status`: everything on one screen, the
//! worst news first. Color only reaches a terminal (anstream strips it
//! otherwise and honours NO_COLOR). Every string from disk or a runtime
//! goes through [`printable`] on its way here, so the only escapes the
//! screen holds are its own styles.

use std::io::{self, Write};

use anstyle::{AnsiColor, Style};
use comfy_table::{presets, CellAlignment, Table};
use headroom::model::{human_bytes, Filesystem, Prediction, ReadFrom, Source, State, Status};

use super::printable::printable;

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
        printable(&s.node),
        humantime::format_rfc3339_seconds(s.generated_at)
    )
}

fn filesystems(out: &mut impl Write, s: &Status) -> io::Result<()> {
    writeln!(
        out,
        "\n{BOLD}FILESYSTEMS{BOLD:#}  (used █, eviction line ┃, free ░; thresholds from {})",
        printable(&s.thresholds_source)
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
            printable(&fs.mountpoint),
            printable(&fs.fstype),
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
        printable(&p.reason)
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
            printable(&img.name()).into_owned(),
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
            (Some(ns), Some(pod)) => format!("{}/{}", printable(ns), printable(pod)),
            _ => "-".to_string(),
        };
        t.add_row(vec![
            printable(&c.display_name()).into_owned(),
            pod,
            human_bytes(c.writable_disk_bytes),
            human_bytes(c.log_bytes),
            printable(&c.image).into_owned(),
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
        format!("{runtime}/{}", printable(namespace))
    }
}

fn runtimes(out: &mut impl Write, s: &Status) -> io::Result<()> {
    for r in &s.runtimes {
        let name = r.runtime.as_str();
        let location = printable(&r.location);
        let why = printable(r.message.as_deref().unwrap_or(""));
        match (r.up(), r.read_from) {
            (true, Some(ReadFrom::Api)) => writeln!(
                out,
                "{GREEN}{name}{GREEN:#}: up, read through its API at {location}"
            )?,
            (true, _) => writeln!(
                out,
                "{GREEN}{name}{GREEN:#}: read from its files at {location}"
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
            let (source, message) = (printable(&p.source), printable(&p.message));
            writeln!(out, "  {source}: {message} ({reader}, {kind})")?;
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
            let (path, message) = (printable(&e.path), printable(&e.message));
            writeln!(out, "  {path}: {message} ({})", e.kind.as_str())?;
        }
    }
    if s.scan.skipped_mounts > 0 {
        let n = s.scan.skipped_mounts;
        writeln!(out, "\n{DIM}MOUNTS NOT CROSSED{DIM:#}: {n} (bind mounts or other filesystems; not counted here)")?;
        for path in s.scan.skipped_mount_samples.iter().take(PROBLEMS_SHOWN) {
            writeln!(out, "  {}", printable(path))?;
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

    /// The screen as a terminal gets it: our styles included.
    fn on_terminal(s: &Status) -> String {
        let mut out = Vec::new();
        render(&mut out, s, TOP).expect("rendering into memory");
        String::from_utf8(out).expect("the screen is UTF-8")
    }

    /// The screen as a pipe gets it: anstream strips the styles.
    fn piped(s: &Status) -> String {
        let mut out = anstream::StripStream::new(Vec::new());
        render(&mut out, s, TOP).expect("rendering into memory");
        String::from_utf8(out.into_inner()).expect("the screen is UTF-8")
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
}
