//! What an integration test needs from the host, and how a test is reported
//! when the host lacks it.
//!
//! A test that needs a tool (or root, or a Python module) runs when the host
//! has it. When the host does not, the test is reported *ignored*, and a
//! line on stderr names what is missing and how to install it
//! (`scripts/setup` installs every package named here). With the env var
//! `CI` set, the test fails with that message instead. Asked for with
//! `--ignored` or `--include-ignored`, it fails with the message too.
//!
//! The test files that use this set `harness = false` (libtest-mimic, see
//! `Cargo.toml`) and list their tests in `main`:
//!
//! ```ignore
//! mod support;
//! use support::{trial, Need};
//!
//! fn main() {
//!     let promtool = [Need::tool("promtool")];
//!     support::main(vec![
//!         trial!(rules_pass_promtool_check).needs(&promtool),
//!         trial!(the_dashboard_has_what_grafana_needs),
//!     ]);
//! }
//! ```
//!
//! libtest's flags work as usual: name filters, `--exact`, `--skip`,
//! `--list`, `--ignored`, `--include-ignored`, `--test-threads`. Output is
//! not captured: what a passing test prints shows.

// Each test crate uses its own part of this module.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};

use libtest_mimic::{Arguments, Conclusion, Failed, Trial};

/// Something a test needs from the host, and whether the host has it.
#[derive(Clone, Debug)]
pub struct Need {
    /// What the messages call it: `promtool`, `root`, …
    what: String,
    how: Install,
    met: bool,
}

/// How to get what a test needs.
#[derive(Clone, Debug)]
pub enum Install {
    /// A Debian 12 package (`scripts/setup` installs it).
    Apt(&'static str),
    /// A PyPI package (`scripts/setup` installs it).
    Pip(&'static str),
    /// A step `scripts/setup` takes.
    Setup(&'static str),
    /// A step `scripts/setup` does not take.
    Manual(&'static str),
}

impl Need {
    /// Anything: `what` is there when `met`; `how` says how to get it.
    pub fn new(what: impl Into<String>, how: Install, met: bool) -> Need {
        Need {
            what: what.into(),
            how,
            met,
        }
    }

    /// A program on PATH (or at an absolute path), executable.
    pub fn tool(name: &str) -> Need {
        Need::new(name, install(name), on_path(name))
    }

    /// A module python3 imports (`prometheus_client.openmetrics.parser`),
    /// from the PyPI package `package`.
    pub fn python_module(module: &str, package: &'static str) -> Need {
        let met = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        Need::new(
            format!("python3 module {module}"),
            Install::Pip(package),
            met,
        )
    }

    /// Running as root (uid 0).
    pub fn root() -> Need {
        Need::new(
            "root",
            Install::Manual("run the tests as uid 0"),
            rustix::process::geteuid().is_root(),
        )
    }

    /// Whether the host has it.
    pub fn met(&self) -> bool {
        self.met
    }
}

/// Whether `tool` names an executable file: itself when it holds a `/`,
/// else in a directory of PATH.
fn on_path(tool: &str) -> bool {
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if tool.contains('/') {
        return executable(Path::new(tool));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| executable(&dir.join(tool)))
}

/// How to install `tool` on Debian 12.
fn install(tool: &str) -> Install {
    Install::Apt(match tool {
        "promtool" | "prometheus" => "prometheus",
        "amtool" | "prometheus-alertmanager" => "prometheus-alertmanager",
        "systemd-analyze" => "systemd",
        "docker-registry" => "docker-registry",
        "skopeo" => "skopeo",
        "umoci" => "umoci",
        "busybox" | "/bin/busybox" => "busybox-static",
        "containerd" | "ctr" => "containerd",
        "dockerd" | "docker" => "docker.io",
        "runc" => "runc",
        "musl-gcc" => "musl-tools",
        "python3" => "python3",
        "du" | "df" | "truncate" | "sha256sum" => "coreutils",
        "find" => "findutils",
        "gzip" => "gzip",
        "tar" => "tar",
        "mkfs.ext4" => "e2fsprogs",
        "mount" | "umount" => "mount",
        "strip" => "binutils",
        "openssl" => "openssl",
        "curl" => "curl",
        "htpasswd" => "apache2-utils",
        "kubectl" => "kubernetes-client",
        "tmux" => "tmux",
        "podman" => "podman",
        "kubernetes-validate" => return Install::Pip("kubernetes-validate"),
        "rustup" => return Install::Manual("see https://rustup.rs"),
        other => panic!("tests/support: no package known for {other:?}; add it to install()"),
    })
}

/// `missing A, B (how to get them)`: the steps `scripts/setup` does not
/// take, then those it takes (the Debian packages in one command, the PyPI
/// ones in another) and that `scripts/setup` does them all.
fn missing(needs: &[&Need]) -> String {
    let (mut manual, mut apt, mut pip, mut setup) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for need in needs {
        let (list, item) = match need.how {
            Install::Manual(step) => (&mut manual, step),
            Install::Apt(package) => (&mut apt, package),
            Install::Pip(package) => (&mut pip, package),
            Install::Setup(step) => (&mut setup, step),
        };
        if !list.contains(&item) {
            list.push(item);
        }
    }
    let mut by_setup = Vec::new();
    for (command, items) in [("apt-get install", apt), ("pip install", pip)] {
        if !items.is_empty() {
            by_setup.push(format!("{command} {}", items.join(" ")));
        }
    }
    by_setup.extend(setup.iter().map(|step| step.to_string()));
    let mut steps: Vec<String> = manual.iter().map(|step| step.to_string()).collect();
    if !by_setup.is_empty() {
        steps.push(format!("{}, or scripts/setup", by_setup.join("; ")));
    }
    let what: Vec<&str> = needs.iter().map(|n| n.what.as_str()).collect();
    format!("missing {} ({})", what.join(", "), steps.join("; "))
}

/// One test of a file: its name, what it needs and its body.
pub struct Test {
    name: String,
    needs: Vec<Need>,
    body: Box<dyn FnOnce() -> Result<(), Failed> + Send>,
}

impl Test {
    /// A test of `body`, which fails by panicking (as a `#[test]` does).
    /// [`trial!`] names it after the function.
    pub fn new(name: &str, body: fn()) -> Test {
        Test::fallible(name, move || {
            body();
            Ok(())
        })
    }

    /// A test of `body`, which fails by returning the reason.
    pub fn fallible(
        name: &str,
        body: impl FnOnce() -> Result<(), Failed> + Send + 'static,
    ) -> Test {
        Test {
            name: name.to_owned(),
            needs: Vec::new(),
            body: Box::new(body),
        }
    }

    /// The same test, needing `needs` as well.
    pub fn needs(mut self, needs: &[Need]) -> Test {
        self.needs.extend_from_slice(needs);
        self
    }

    /// What the host lacks of it, in words; `None` when nothing.
    fn lacking(&self) -> Option<String> {
        let lacking: Vec<&Need> = self.needs.iter().filter(|n| !n.met).collect();
        (!lacking.is_empty()).then(|| missing(&lacking))
    }
}

/// `trial!(f)`: the [`Test`] of function `f`, named `f`.
#[allow(unused_macros)]
macro_rules! trial {
    ($test:ident) => {
        $crate::support::Test::new(stringify!($test), $test)
    };
}
#[allow(unused_imports)]
pub(crate) use trial;

/// Runs `tests` as the command line asks and exits with the outcome.
pub fn main(tests: Vec<Test>) -> ! {
    run(&Arguments::from_args(), tests).exit()
}

/// Runs `tests` as `args` ask: each whose needs the host meets as is; each
/// it does not, failed when `CI` is set, else ignored, with one line on
/// stderr per reason naming the tests it ignores.
pub fn run(args: &Arguments, tests: Vec<Test>) -> Conclusion {
    let ci = std::env::var_os("CI").is_some();
    let mut ignored: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut trials = Vec::new();
    for test in tests {
        let Some(why) = test.lacking() else {
            trials.push(Trial::test(test.name, test.body));
            continue;
        };
        if ci {
            let why = format!("CI is set and this test is {why}");
            trials.push(Trial::test(test.name, move || Err(why.into())));
            continue;
        }
        let name = test.name.clone();
        let message = why.clone();
        let trial = Trial::test(test.name, move || Err(message.into())).with_ignored_flag(true);
        if !args.list && !args.is_filtered_out(&trial) && args.is_ignored(&trial) {
            ignored.entry(why).or_default().push(name);
        }
        trials.push(trial);
    }
    for (why, names) in &ignored {
        let which = match names.len() {
            1..=8 => names.join(", "),
            n => format!("{n} tests"),
        };
        eprintln!("{}: ignored, {why}: {which}", env!("CARGO_CRATE_NAME"));
    }
    libtest_mimic::run(args, trials)
}

/// The repository's monitoring files, as the alerting tests read them.
pub mod deploy {
    /// The repository root (where `deploy/` is).
    pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
    /// The rules Prometheus loads.
    pub const RULES: &str = "deploy/prometheus/headroom.rules.yml";
    /// The example Prometheus configuration (the documented scrape interval).
    pub const PROMETHEUS_EXAMPLE: &str = "deploy/prometheus/prometheus.yml";
    /// The example Alertmanager configuration.
    pub const ALERTMANAGER_EXAMPLE: &str = "deploy/prometheus/alertmanager.yml";
    /// The receiver (and webhook path) that pages.
    pub const PAGE_RECEIVER: &str = "headroom-page";
}

/// A port that was free on 127.0.0.1 a moment ago (bound, then released
/// for the service the test starts).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs `program args` in `dir` and fails the test with its output unless
/// it succeeds; its stdout.
pub fn output_of(dir: &std::path::Path, program: &str, args: &[&str]) -> Vec<u8> {
    let out = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// The official Python OpenMetrics parser (`prometheus_client`'s, the one
/// its own tests use), as an oracle of the agent's `/metrics` text.
pub mod openmetrics {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::process::{Command, Stdio};

    use anyhow::{bail, Context, Result};

    use super::Need;

    /// One sample as the parser reads it: name, labels, value.
    pub type Sample = (String, BTreeMap<String, String>, f64);

    /// One metric family as the parser returns it.
    #[derive(Debug, serde::Deserialize)]
    pub struct Family {
        /// Its name (without a counter's `_total` or an info's `_info`).
        pub name: String,
        /// `gauge`, `counter`, `info`, …
        #[serde(rename = "type")]
        pub kind: String,
        /// Its samples.
        pub samples: Vec<Sample>,
    }

    /// The parser, installed.
    pub fn need() -> Need {
        Need::python_module("prometheus_client.openmetrics.parser", "prometheus_client")
    }

    /// Parses `text` with `prometheus_client.openmetrics.parser`.
    pub fn parse(text: &str) -> Result<Vec<Family>> {
        let script = "import sys, json\n\
            from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
            print(json.dumps([{'name': f.name, 'type': f.type,\n\
                'samples': [[s.name, s.labels, s.value] for s in f.samples]}\n\
                for f in text_string_to_metric_families(sys.stdin.read())]))\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run python3")?;
        child
            .stdin
            .take()
            .context("python3 stdin")?
            .write_all(text.as_bytes())?;
        let out = child.wait_with_output()?;
        if !out.status.success() {
            bail!(
                "the OpenMetrics parser rejected the text: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        serde_json::from_slice(&out.stdout).context("parser output")
    }
}
