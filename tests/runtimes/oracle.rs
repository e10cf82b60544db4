//! The independent oracles: GNU coreutils (`du`, `df`, `find`), `ctr` and the
//! `docker` CLI, run as child processes and parsed here. Every error names
//! the command line and carries its output, so a failing trial says exactly
//! what was asked of whom.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Output};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

/// Runs `prog args…`, failing unless it exits 0; returns its stdout.
pub fn run(prog: &str, args: &[&str]) -> Result<String> {
    let out = output(prog, args)?;
    if !out.status.success() {
        bail!("{}", describe(prog, args, &out));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `prog args…` and returns whatever happened (no exit-code check).
pub fn output(prog: &str, args: &[&str]) -> Result<Output> {
    Command::new(prog)
        .args(args)
        .output()
        .with_context(|| format!("cannot run `{}`", line(prog, args)))
}

/// The shell-like command line, for messages.
pub fn line(prog: &str, args: &[&str]) -> String {
    std::iter::once(prog)
        .chain(args.iter().copied())
        .map(|a| {
            if a.contains(' ') || a.is_empty() {
                format!("'{a}'")
            } else {
                a.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A finished command in words: its line, exit status, stdout and stderr.
pub fn describe(prog: &str, args: &[&str], out: &Output) -> String {
    format!(
        "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        line(prog, args),
        out.status,
        tail(&String::from_utf8_lossy(&out.stdout), 4000),
        tail(&String::from_utf8_lossy(&out.stderr), 4000),
    )
}

/// The last `max` bytes of `text` (on a char boundary), for bounded messages.
pub fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// The figures GNU `du -s` gives for one tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Du {
    /// `du -s -B1`: allocated bytes.
    pub disk: u64,
    /// `du -s -B1 --apparent-size`: st_size sum.
    pub apparent: u64,
    /// `du -s --inodes`: distinct inodes.
    pub inodes: u64,
}

/// `du -s` of `path` in its three flavours.
pub fn du(path: &Path) -> Result<Du> {
    let p = path_str(path)?;
    Ok(Du {
        disk: first_number(&run("du", &["-s", "-B1", p])?)?,
        apparent: first_number(&run("du", &["-s", "-B1", "--apparent-size", p])?)?,
        inodes: first_number(&run("du", &["-s", "--inodes", p])?)?,
    })
}

/// `du -c -B1 FILES…` total: allocated bytes of a set of files.
pub fn du_files_disk(files: &[&Path]) -> Result<u64> {
    let mut args = vec!["-c", "-B1"];
    for f in files {
        args.push(path_str(f)?);
    }
    let out = run("du", &args)?;
    let total = out
        .lines()
        .rfind(|l| l.ends_with("\ttotal"))
        .with_context(|| format!("no total line in `{}`: {out}", line("du", &args)))?;
    first_number(total)
}

/// Sum of `st_size` of every directory in `path` (`find -type d -printf %s`):
/// what `du --apparent-size` counts and Docker's size figures leave out.
pub fn dir_sizes(path: &Path) -> Result<u64> {
    let p = path_str(path)?;
    let out = run("find", &[p, "-type", "d", "-printf", "%s\n"])?;
    out.lines().map(parse_u64).sum()
}

/// What `df -B1` says about the filesystem holding a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Df {
    /// Mount point.
    pub target: String,
    /// Filesystem type.
    pub fstype: String,
    /// Size in bytes.
    pub size: u64,
    /// Bytes available to unprivileged users.
    pub avail: u64,
    /// Total inodes.
    pub itotal: u64,
    /// Available inodes.
    pub iavail: u64,
}

/// The exact `df` invocation used, for messages.
pub const DF_ARGS: &[&str] = &["-B1", "--output=target,fstype,size,avail,itotal,iavail"];

/// `df -B1 --output=…` of `path`.
pub fn df(path: &Path) -> Result<Df> {
    let mut args = DF_ARGS.to_vec();
    args.push(path_str(path)?);
    let out = run("df", &args)?;
    let row = out
        .lines()
        .nth(1)
        .with_context(|| format!("no data row in df output: {out}"))?;
    let f: Vec<&str> = row.split_whitespace().collect();
    if f.len() != 6 {
        bail!("unexpected df row {row:?}");
    }
    Ok(Df {
        target: f[0].to_owned(),
        fstype: f[1].to_owned(),
        size: parse_u64(f[2])?,
        avail: parse_u64(f[3])?,
        itotal: parse_u64(f[4])?,
        iavail: parse_u64(f[5])?,
    })
}

/// Parses a decimal `u64`, naming the text on failure.
pub fn parse_u64(s: &str) -> Result<u64> {
    s.trim()
        .parse()
        .with_context(|| format!("not a number: {s:?}"))
}

/// The first whitespace-separated field of `text` as a number (du's format).
fn first_number(text: &str) -> Result<u64> {
    parse_u64(text.split_whitespace().next().unwrap_or(""))
}

/// A path as UTF-8 (all our temp paths are).
pub fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("non-UTF-8 path {}", path.display()))
}

/// `ctr -a SOCK -n NS ARGS…`.
pub fn ctr(sock: &Path, ns: &str, args: &[&str]) -> Result<String> {
    let mut all = vec!["-a", path_str(sock)?, "-n", ns];
    all.extend_from_slice(args);
    run("ctr", &all)
}

/// One row of `ctr snapshots ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Snapshot key.
    pub key: String,
    /// `Committed`, `Active` or `View`.
    pub kind: String,
}

/// `ctr snapshots ls` parsed (columns KEY PARENT KIND; PARENT is blank for
/// a base layer, so the kind is the last field).
pub fn ctr_snapshots(sock: &Path, ns: &str) -> Result<Vec<Snapshot>> {
    let out = ctr(sock, ns, &["snapshots", "ls"])?;
    out.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                [key, kind] | [key, _, kind] => Ok(Snapshot {
                    key: key.to_string(),
                    kind: kind.to_string(),
                }),
                _ => bail!("unexpected `ctr snapshots ls` row {l:?}"),
            }
        })
        .collect()
}

/// `ctr snapshots usage -b` parsed: key → (bytes, inodes). `-b` prints raw
/// bytes, so no rounding tolerance is needed.
pub fn ctr_usage(sock: &Path, ns: &str) -> Result<BTreeMap<String, (u64, u64)>> {
    let out = ctr(sock, ns, &["snapshots", "usage", "-b"])?;
    out.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(
            |l| match l.split_whitespace().collect::<Vec<_>>().as_slice() {
                [key, size, inodes] => {
                    Ok((key.to_string(), (parse_u64(size)?, parse_u64(inodes)?)))
                }
                _ => bail!("unexpected `ctr snapshots usage -b` row {l:?}"),
            },
        )
        .collect()
}

/// The `upperdir=` option of `ctr snapshots mounts` for an active snapshot.
pub fn ctr_upperdir(sock: &Path, ns: &str, key: &str) -> Result<String> {
    let out = ctr(sock, ns, &["snapshots", "mounts", "/hr-unused-target", key])?;
    out.split([',', ' '])
        .find_map(|opt| opt.strip_prefix("upperdir="))
        .map(|s| s.trim().to_owned())
        .with_context(|| format!("no upperdir in `ctr snapshots mounts` output: {out}"))
}

/// `identity.ChainID` of a list of DiffIDs: each link is
/// `sha256(parent_chain + " " + diff_id)`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match chains.last() {
            None => d.clone(),
            Some(parent) => {
                let sum = Sha256::digest(format!("{parent} {d}").as_bytes());
                let mut hex = String::with_capacity(71);
                hex.push_str("sha256:");
                for b in sum {
                    let _ = write!(hex, "{b:02x}");
                }
                hex
            }
        };
        chains.push(next);
    }
    chains
}

/// The `rootfs.diff_ids` of an image config JSON.
pub fn diff_ids(config: &serde_json::Value) -> Result<Vec<String>> {
    config["rootfs"]["diff_ids"]
        .as_array()
        .context("image config has no rootfs.diff_ids")?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_owned)
                .context("diff_id is not a string")
        })
        .collect()
}

/// A figure Docker's CLI printed, humanized in decimal units, with the
/// tolerance its rounding implies.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Humanized {
    /// The value the text stands for, in bytes.
    pub bytes: f64,
    /// Half a unit of the last significant digit Docker kept.
    pub tolerance: f64,
}

/// Parses Docker's `units.HumanSizeWithPrecision(size, precision)` output
/// (`%.*g` of the value in B/kB/MB/GB…, trailing zeros dropped). The value
/// was rounded to `precision` significant digits, so the tolerance is half
/// a unit of the last one (plus a byte for float noise).
pub fn parse_humanized(text: &str, precision: i32) -> Result<Humanized> {
    const UNITS: [(&str, f64); 6] = [
        ("PB", 1e15),
        ("TB", 1e12),
        ("GB", 1e9),
        ("MB", 1e6),
        ("kB", 1e3),
        ("B", 1.0),
    ];
    let text = text.trim();
    let (num, unit) = UNITS
        .iter()
        .find_map(|(suffix, unit)| text.strip_suffix(suffix).map(|n| (n, *unit)))
        .with_context(|| format!("no size unit in {text:?}"))?;
    let mantissa: f64 = num
        .parse()
        .with_context(|| format!("bad number in {text:?}"))?;
    let tolerance = if mantissa == 0.0 {
        0.0
    } else {
        let exponent = mantissa.abs().log10().floor() as i32;
        0.5 * 10f64.powi(exponent - (precision - 1)) * unit + 1.0
    };
    Ok(Humanized {
        bytes: mantissa * unit,
        tolerance,
    })
}

/// Self-check of [`parse_humanized`] against figures Docker printed for
/// known byte counts (`docker system df -v` next to its API's raw values).
pub fn humanized_parser_self_check() -> Result<()> {
    for (text, precision, exact) in [
        ("8.15MB", 3, 8_147_504u64),
        ("777.8kB", 4, 777_777),
        ("3.15MB", 3, 3_145_728),
        ("4.235MB", 4, 4_234_593),
        ("717kB", 3, 716_800),
    ] {
        let h = parse_humanized(text, precision)?;
        if (exact as f64 - h.bytes).abs() > h.tolerance {
            bail!("{text:?} (precision {precision}) should cover {exact}: {h:?}");
        }
    }
    if parse_humanized("8.15MB", 3)?.tolerance > 5_001.0 {
        bail!("tolerance for 8.15MB must be half of 0.01MB");
    }
    Ok(())
}
