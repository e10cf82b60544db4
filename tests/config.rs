//! The configuration as users meet it: the `headroom` binary with bad
//! flags, variables and files exits 3 and names the culprit before doing
//! anything; `--help` exits 0. Every run has its own config file (never
//! /etc/headroom) and no `HEADROOM_*` variable from the caller.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tempfile::TempDir;

/// A temp dir holding the run's config file.
struct World {
    dir: TempDir,
    config: PathBuf,
}

impl World {
    fn with_config(toml: &str) -> World {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, toml).unwrap();
        World { dir, config }
    }

    /// Runs `headroom ARGS…` with `HEADROOM_CONFIG` naming this world's
    /// file, plus `env`.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_headroom"));
        cmd.args(args).env("NO_COLOR", "1");
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HEADROOM_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("HEADROOM_CONFIG", &self.config)
            .envs(env.iter().copied());
        cmd.output().unwrap()
    }

    fn path(&self) -> &Path {
        &self.config
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit code 3, nothing on stdout, and exactly `lines` on stderr.
fn assert_config_error(out: &Output, lines: &[String]) {
    let expected: String = lines.iter().map(|l| format!("headroom: {l}\n")).collect();
    assert_eq!(
        (out.status.code(), stdout(out), stderr(out)),
        (Some(3), String::new(), expected)
    );
}

#[test]
fn a_bad_variable_is_named_with_its_value() {
    let world = World::with_config("");
    let out = world.run(&["status"], &[("HEADROOM_RESCAN_INTERVAL", "5 parsecs")]);
    assert_config_error(
        &out,
        &["HEADROOM_RESCAN_INTERVAL=\"5 parsecs\": not a duration (e.g. 30s, 5m)".into()],
    );
}

#[test]
fn a_bad_file_value_is_named_with_the_file() {
    let world = World::with_config("rescan_interval = \"0s\"\n");
    let out = world.run(&["agent"], &[]);
    let path = world.path().display();
    assert_config_error(
        &out,
        &[format!(
            "{path}: rescan_interval = \"0s\": must be at least 1s"
        )],
    );
}

#[test]
fn an_unknown_file_key_is_an_error() {
    let world = World::with_config("top_m = 5\n");
    // Even `du` refuses to start on a config with a typo.
    let out = world.run(&["du", world.dir.path().to_str().unwrap()], &[]);
    let path = world.path().display();
    assert_config_error(
        &out,
        &[format!(
            "{path}: top_m = 5: unknown key (did you mean `top_n`?)"
        )],
    );
}

#[test]
fn a_bad_flag_value_and_a_missing_named_file_are_all_reported() {
    let world = World::with_config("");
    let missing = world.dir.path().join("missing.toml");
    let missing = missing.to_str().unwrap();
    let out = world.run(
        &["status", "--config", missing, "--agent-timeout", "0s"],
        &[],
    );
    assert_config_error(
        &out,
        &[
            format!("--config={missing:?}: cannot read the config file: No such file or directory (os error 2)"),
            "--agent-timeout=\"0s\": must be more than 0s".into(),
        ],
    );
}

#[test]
fn a_usage_error_exits_3_not_2() {
    let world = World::with_config("");
    for args in [&["status", "--bogus"][..], &["du", "--local", "/"], &[]] {
        let out = world.run(args, &[]);
        assert_eq!(out.status.code(), Some(3), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains("Usage: headroom"), "{}", stderr(&out));
    }
}

#[test]
fn help_and_version_exit_0() {
    let world = World::with_config("");
    let out = world.run(&["--help"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Usage: headroom <COMMAND>"));
    let out = world.run(&["status", "--help"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("HEADROOM_AGENT_ADDRESS"),
        "{}",
        stdout(&out)
    );
    let out = world.run(&["--version"], &[]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).starts_with("headroom "), "{}", stdout(&out));
}

#[test]
fn a_good_config_from_every_place_lets_the_face_run() {
    let world = World::with_config("log_format = \"json\"\nwalk_threads = 2\n");
    std::fs::write(world.dir.path().join("data"), b"12345").unwrap();
    let data = world.dir.path().join("data");
    let out = world.run(
        &["du", "--log-level", "debug", data.to_str().unwrap()],
        &[("HEADROOM_TOP_N", "7")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).ends_with(&format!("\t5\t{}\n", data.display())),
        "{}",
        stdout(&out)
    );
}

#[test]
fn fault_a_host_root_that_cannot_be_entered_names_the_key_and_the_capability() {
    let world = World::with_config("");
    let out = world.run(&["du", "--host-root", "/nonexistent/host", "/"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(
        err.starts_with("headroom: host_root /nonexistent/host: cannot chroot into it: "),
        "{err}"
    );
    assert!(err.contains("CAP_SYS_CHROOT"), "{err}");
}

#[test]
fn a_relative_host_root_is_a_config_error() {
    let world = World::with_config("host_root = \"host\"\n");
    let out = world.run(&["du", "/"], &[]);
    let path = world.path().display();
    assert_config_error(
        &out,
        &[format!(
            "{path}: host_root = \"host\": must be an absolute path"
        )],
    );
}
