//! The shipped unit `systemd/headroom.service` stays valid and hardened:
//! `systemd-analyze verify` finds nothing wrong with it, `systemd-analyze
//! security` rates its exposure at 2.0 or better, and its system call filter,
//! expanded by `systemd-analyze syscall-filter`, still lets the scanner
//! thread lower its own priority. All offline: systemd need not be PID 1.
//! Without systemd-analyze the tests are ignored with a message, except under
//! CI (env `CI` set), where they fail (tests/support).

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{trial, Need};
use tempfile::TempDir;

/// The unit as shipped.
const UNIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/headroom.service");
/// The unit's file name, which systemd-analyze uses as the unit's name.
const UNIT_NAME: &str = "headroom.service";
/// Where the shipped unit runs the binary from.
const INSTALLED_BINARY: &str = "/usr/local/bin/headroom";
/// The worst exposure level the unit may have.
const MAX_EXPOSURE: f64 = 2.0;

fn main() {
    let analyze = [Need::tool("systemd-analyze")];
    support::main(vec![
        trial!(verify_finds_nothing_wrong).needs(&analyze),
        trial!(exposure_is_at_most_two).needs(&analyze),
        trial!(syscall_filter_lets_the_scanner_lower_its_priority).needs(&analyze),
        trial!(shipped_unit_reads_the_shipped_config),
    ]);
}

/// Runs `systemd-analyze args` without colours or pager.
fn systemd_analyze(args: &[&str]) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "cat")
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A copy of the shipped unit whose ExecStart runs the binary under test,
/// since verify insists that the command exists.
fn unit_for_this_build() -> (TempDir, PathBuf) {
    let shipped = std::fs::read_to_string(UNIT).unwrap();
    let exec = format!("ExecStart={INSTALLED_BINARY} ");
    assert_eq!(
        shipped.matches(&exec).count(),
        1,
        "{UNIT}: no single {exec:?}"
    );
    let unit = shipped.replace(
        &exec,
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_headroom")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(UNIT_NAME);
    std::fs::write(&path, unit).unwrap();
    (dir, path)
}

fn verify_finds_nothing_wrong() {
    let (_dir, unit) = unit_for_this_build();
    let out = systemd_analyze(&["verify", unit.to_str().unwrap()]);
    let said = text(&out);
    assert!(out.status.success(), "verify failed:\n{said}");
    // An unknown key or bad value is only a warning: verify still exits 0.
    // Other units it loads (After=) may be reported too; ours must not be.
    let ours: Vec<&str> = said.lines().filter(|l| l.contains(UNIT_NAME)).collect();
    assert!(ours.is_empty(), "verify complained about the unit:\n{said}");
}

fn exposure_is_at_most_two() {
    let (_dir, unit) = unit_for_this_build();
    let out = systemd_analyze(&[
        "security",
        "--offline=yes",
        "--threshold=20",
        unit.to_str().unwrap(),
    ]);
    let said = text(&out);
    assert!(
        out.status.success(),
        "security rated the unit above the threshold:\n{said}"
    );
    let exposure = overall_exposure(&said);
    println!("systemd-analyze security: overall exposure {exposure}");
    assert!(
        exposure <= MAX_EXPOSURE,
        "exposure {exposure} > {MAX_EXPOSURE}:\n{said}"
    );
}

/// The figure of "→ Overall exposure level for headroom.service: 1.9 OK".
fn overall_exposure(said: &str) -> f64 {
    let prefix = format!("Overall exposure level for {UNIT_NAME}:");
    let line = said
        .lines()
        .find_map(|l| l.split_once(&prefix))
        .map(|(_, rest)| rest);
    let figure = line.and_then(|rest| rest.split_whitespace().next());
    figure
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no exposure figure in:\n{said}"))
}

fn syscall_filter_lets_the_scanner_lower_its_priority() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let allowed = allowed_syscalls(&unit);
    // nice 19 and the idle I/O class (src/agent/priority.rs), and the
    // walker's raise of its soft RLIMIT_NOFILE (src/walk.rs).
    for call in ["setpriority", "ioprio_set", "prlimit64", "setrlimit"] {
        assert!(allowed.contains(call), "SystemCallFilter= blocks {call}");
    }
    // The filter is not a no-op: privileged calls stay out.
    for call in ["capset", "chroot", "mount", "init_module"] {
        assert!(!allowed.contains(call), "SystemCallFilter= allows {call}");
    }
}

/// The calls the unit's SystemCallFilter= lines allow, as systemd reads
/// them: the first line is an allow list (no `~`); later lines add to it, or
/// take away from it when they start with `~`.
fn allowed_syscalls(unit: &str) -> BTreeSet<String> {
    let lines = unit
        .lines()
        .filter_map(|l| l.trim().strip_prefix("SystemCallFilter="));
    let mut allowed = BTreeSet::new();
    for (i, value) in lines.enumerate() {
        let (deny, names) = match value.strip_prefix('~') {
            Some(names) => (true, names),
            None => (false, value),
        };
        assert!(
            i > 0 || !deny,
            "the first SystemCallFilter= must be an allow list"
        );
        for name in names.split_whitespace() {
            let calls = expand(name);
            if deny {
                allowed.retain(|c| !calls.contains(c));
            } else {
                allowed.extend(calls);
            }
        }
    }
    assert!(!allowed.is_empty(), "{UNIT}: no SystemCallFilter=");
    allowed
}

/// A call stays itself; a `@group` becomes its calls, nested groups
/// included, as `systemd-analyze syscall-filter` lists them.
fn expand(name: &str) -> BTreeSet<String> {
    if !name.starts_with('@') {
        return BTreeSet::from([name.to_string()]);
    }
    let out = systemd_analyze(&["syscall-filter", name]);
    assert!(
        out.status.success(),
        "syscall-filter {name}:\n{}",
        text(&out)
    );
    let listing = String::from_utf8_lossy(&out.stdout).into_owned();
    // The first line names the group; "#" lines describe it.
    let members = listing.lines().skip(1).map(str::trim);
    let members = members.filter(|m| !m.is_empty() && !m.starts_with('#'));
    members.flat_map(expand).collect()
}

fn shipped_unit_reads_the_shipped_config() {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let args: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(args[..2], [INSTALLED_BINARY, "agent"], "{exec}");
    let config = args
        .iter()
        .skip_while(|a| **a != "--config")
        .nth(1)
        .unwrap();
    assert_eq!(*config, headroom::config::DEFAULT_CONFIG_PATH, "{exec}");
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config.toml");
    assert!(shipped.is_file(), "{} missing", shipped.display());
}
