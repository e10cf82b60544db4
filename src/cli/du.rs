//! `headroom du`: the walker on arbitrary paths, for on-call and benchmarks.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use headroom::walk::{self, Walk, WalkOptions};
use serde::Serialize;

use super::printable::printable;

/// Options of `headroom du`.
#[derive(Debug, clap::Args)]
pub struct DuArgs {
    /// Print one JSON object per path, one per line.
    #[arg(long)]
    json: bool,
    /// Worker threads (0: one per core), at most 1024.
    #[arg(long, default_value_t = 0, value_parser = threads_parser())]
    threads: usize,
    /// Paths to measure.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

/// `--threads` within the walker's bound: a usage error names the flag,
/// the value and the range.
fn threads_parser() -> clap::builder::RangedU64ValueParser<usize> {
    let max = u64::try_from(walk::MAX_THREADS).unwrap_or(u64::MAX);
    clap::builder::RangedU64ValueParser::new().range(0..=max)
}

/// One line of `du --json`.
#[derive(Serialize)]
struct DuLine<'a> {
    path: String,
    disk_bytes: u64,
    apparent_bytes: u64,
    inodes: u64,
    entries: u64,
    errors: u64,
    errors_by_kind: &'a std::collections::BTreeMap<walk::ErrorKind, u64>,
    skipped_mounts: u64,
}

/// Runs `headroom du`; exits 1 when some entries could not be examined.
pub fn run(args: &DuArgs) -> anyhow::Result<ExitCode> {
    let opts = WalkOptions {
        threads: args.threads,
        ..WalkOptions::default()
    };
    let walks = walk::walk_many(&args.paths, &opts);
    let mut out = std::io::stdout().lock();
    let mut any_errors = false;
    for (path, w) in args.paths.iter().zip(&walks) {
        any_errors |= !w.error_counts.is_empty();
        print_walk(&mut out, path, w, args.json).context("writing to stdout")?;
        for e in &w.errors {
            let (path, message) = (shown(&e.path), printable(&e.message));
            eprintln!("headroom du: {path}: {message}");
        }
        for mount in &w.skipped_mount_paths {
            eprintln!("headroom du: {}: a mount point, not crossed", shown(mount));
        }
    }
    Ok(if any_errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

fn print_walk(
    out: &mut impl Write,
    path: &std::path::Path,
    w: &Walk,
    json: bool,
) -> std::io::Result<()> {
    if json {
        let line = DuLine {
            path: path.to_string_lossy().into_owned(),
            disk_bytes: w.usage.disk_bytes,
            apparent_bytes: w.usage.apparent_bytes,
            inodes: w.usage.inodes,
            entries: w.entries,
            errors: w.error_counts.values().sum(),
            errors_by_kind: &w.error_counts,
            skipped_mounts: w.skipped_mounts,
        };
        serde_json::to_writer(&mut *out, &line)?;
        writeln!(out)
    } else {
        writeln!(
            out,
            "{}\t{}\t{}",
            w.usage.disk_bytes,
            w.usage.apparent_bytes,
            shown(path)
        )
    }
}

/// A path as the terminal shows it: one line, no escape sequence
/// (`--json` keeps it exact).
fn shown(path: &std::path::Path) -> String {
    printable(&path.to_string_lossy()).into_owned()
}
