//! Running the CLI under test (`headroom status`) against the fixture node.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result};
use headroom::model::Status;

use crate::oracle::{line, tail};
use crate::World;

/// The node name Headroom is told (`NODE_NAME`), checked in the document.
pub const NODE_NAME: &str = "headroom-runtimes-test";

/// Where Headroom is pointed: the node layout flags.
#[derive(Debug, Clone)]
pub struct Layout<'a> {
    /// `--docker-root`.
    pub docker_root: &'a Path,
    /// `--containerd-address`.
    pub containerd_address: &'a Path,
    /// `--containerd-root`.
    pub containerd_root: &'a Path,
}

/// One finished `headroom status` run.
#[derive(Debug, Clone)]
pub struct Run {
    /// The command line, for messages.
    pub command: String,
    /// Exit code (-1 when killed by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// The status document, or an error that shows the whole run.
    pub fn status(&self) -> Result<Status> {
        serde_json::from_str(&self.stdout).with_context(|| {
            format!(
                "`{}` did not print a status document\n{}",
                self.command,
                self.describe()
            )
        })
    }

    /// Exit code and (bounded) output, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "exit code {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code,
            tail(&self.stdout, 3000),
            tail(&self.stderr, 3000)
        )
    }
}

/// The layout of the real fixture node.
pub fn node_layout(w: &World) -> Layout<'_> {
    Layout {
        docker_root: &w.docker_root,
        containerd_address: &w.containerd_sock,
        containerd_root: &w.containerd_root,
    }
}

/// Runs `headroom status [--json]` with `layout` and the fixture's kubelet
/// paths, in a clean environment (no `HEADROOM_*` from the caller).
pub fn status(w: &World, layout: &Layout<'_>, json: bool) -> Result<Run> {
    let face: &[&str] = if json {
        &["status", "--json"]
    } else {
        &["status"]
    };
    headroom(w, layout, face)
}

/// The flags that point a face at `layout` and the fixture's kubelet paths
/// (explicit, so nothing is discovered from this machine's processes).
pub fn layout_args(w: &World, layout: &Layout<'_>) -> Vec<String> {
    [
        ("--docker-root", layout.docker_root),
        ("--containerd-address", layout.containerd_address),
        ("--containerd-root", layout.containerd_root),
        ("--kubelet-root", &w.fixtures.kubelet_root),
        ("--kubelet-config", &w.fixtures.kubelet_config),
        ("--pod-logs", &w.fixtures.pod_logs),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [flag.to_string(), path.display().to_string()])
    .collect()
}

/// Runs `headroom FACE…` (`face`: the subcommand and its own arguments)
/// with `layout` and the fixture's kubelet paths, in a clean environment.
pub fn headroom(w: &World, layout: &Layout<'_>, face: &[&str]) -> Result<Run> {
    headroom_with_env(w, layout, face, &[])
}

/// [`headroom`] with `env` (name, value) set on top of the clean
/// environment (e.g. `DOCKER_CONFIG`), shown in the command line.
pub fn headroom_with_env(
    w: &World,
    layout: &Layout<'_>,
    face: &[&str],
    env: &[(&str, &str)],
) -> Result<Run> {
    let exe = env!("CARGO_BIN_EXE_headroom");
    let mut args: Vec<String> = face.iter().map(|a| a.to_string()).collect();
    args.extend(layout_args(w, layout));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut cmd = Command::new(exe);
    cmd.args(&argv)
        .env("NODE_NAME", NODE_NAME)
        .env("NO_COLOR", "1");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HEADROOM_") {
            cmd.env_remove(key);
        }
    }
    let mut command = format!("NODE_NAME={NODE_NAME} ");
    for (key, value) in env {
        cmd.env(key, value);
        command.push_str(&format!("{key}={value} "));
    }
    command.push_str(&line(exe, &argv));
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{command}`"))?;
    Ok(Run {
        command,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}
