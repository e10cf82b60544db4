//! A small node for the pull trials (`incident.rs`, `lead.rs`,
//! `churn.rs`): a private containerd whose root is on a small loop-mounted
//! ext4, the kubelet root and pod logs on the same filesystem (imagefs is
//! nodefs), a kubelet config with hard thresholds on both, optionally a
//! private dockerd whose data root is there too, and a `headroom agent` on
//! the shipped defaults looking at all of it.
//!
//! [`watch`] samples the agent's `/api/v1/status` every 200 ms while pulls
//! run, and the filesystem's available bytes (statvfs, as the kubelet reads
//! them) every 50 ms, so that the lead a prediction gives can be measured
//! against the moment the eviction line is really crossed.
//!
//! Everything is held by guards: the agent, then dockerd, then containerd
//! (and its filesystem) are stopped by their pids and unmounted when the
//! node is dropped, also when the trial fails.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use headroom::model::{Filesystem, Prediction, Signal, State, Status};
use serde_json::Value;

use crate::agent::{self, poll, short_lived, Containerd, Paths, Proc};
use crate::images::K8S_NS;
use crate::oracle::{self, path_str};
use crate::World;

/// How often the agent's status is read while pulls run.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How often the filesystem's available bytes are read.
const DISK_EVERY: Duration = Duration::from_millis(50);
/// What containerd and dockerd say when the disk is full.
pub const ENOSPC: &str = "no space left on device";

/// The kubelet config of a small node: hard thresholds of `percent` on
/// `imagefs.available` and `nodefs.available` (setting them zeroes the
/// other hard defaults); `extra` (whole lines) is appended.
pub fn kubelet_config(percent: &str, extra: &str) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionHard:\n  imagefs.available: \"{percent}\"\n  nodefs.available: \"{percent}\"\n{extra}"
    )
}

/// The eviction line in bytes as the kubelet resolves a percentage of
/// `capacity`: float32 percentage, times the capacity, truncated.
pub fn line_of(percent: f32, capacity: u64) -> u64 {
    (capacity as f64 * f64::from(percent / 100.0)) as u64
}

/// `(capacity, available)` of the filesystem holding `path`, in bytes
/// (`f_blocks × f_frsize`, `f_bavail × f_frsize`: what the kubelet reads).
pub fn disk(path: &Path) -> Result<(u64, u64)> {
    let s = rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
    Ok((s.f_blocks * s.f_frsize, s.f_bavail * s.f_frsize))
}

/// A private dockerd whose data root is on a small node's filesystem, on
/// that node's containerd; stopped by its pid when dropped.
pub struct Dockerd {
    proc: Proc,
    /// `unix://…` of its socket.
    pub host: String,
}

impl Dockerd {
    /// Its output so far.
    pub fn output(&self) -> String {
        self.proc.output()
    }
}

/// What a small node is made of besides containerd.
#[derive(Debug, Clone, Default)]
pub struct Options<'a> {
    /// The kubelet config's text.
    pub kubelet_config: String,
    /// Start a dockerd (data root on the node's filesystem) that trusts
    /// these registries over plain HTTP.
    pub dockerd: Option<Vec<&'a str>>,
}

/// A containerd on a small filesystem and an agent whose kubelet root is
/// on it too. Fields drop in order: the agent, dockerd, then containerd
/// (and the filesystem).
pub struct SmallNode {
    /// The agent.
    pub agent: Proc,
    /// `127.0.0.1:PORT` of the agent.
    pub addr: String,
    /// The private dockerd, when asked for.
    pub dockerd: Option<Dockerd>,
    /// The private containerd.
    pub ctrd: Containerd,
    /// `<run dir>/<name>`: logs and configs (not on the small filesystem).
    pub dir: PathBuf,
    /// Mount point of the small filesystem.
    pub fs_root: PathBuf,
    /// `--pod-logs` (on the small filesystem).
    pub pod_logs: PathBuf,
    /// (flag, path) pairs that point a headroom face at this node.
    layout: Vec<(&'static str, PathBuf)>,
}

impl SmallNode {
    /// A node of `size` (`truncate -s` syntax) named `name` (unique in the
    /// run) with `kubelet_config`, and its agent ready.
    pub fn start(w: &World, name: &str, size: &str, kubelet_config: &str) -> Result<SmallNode> {
        SmallNode::start_with(
            w,
            name,
            size,
            Options {
                kubelet_config: kubelet_config.to_owned(),
                dockerd: None,
            },
        )
    }

    /// [`SmallNode::start`] with a dockerd too, when `options` says so.
    pub fn start_with(w: &World, name: &str, size: &str, options: Options) -> Result<SmallNode> {
        let mut ctrd = Containerd::new(w, name, size)?;
        ctrd.start()?;
        let dir = w.dir.join(name);
        let fs_root = dir.join("fs");
        let kubelet_root = fs_root.join("kubelet");
        let pod_logs = fs_root.join("pods");
        let docker_root = fs_root.join("docker");
        let config = dir.join("kubelet-config.yaml");
        for d in [&kubelet_root, &pod_logs, &docker_root] {
            fs::create_dir_all(d)?;
        }
        fs::write(&config, &options.kubelet_config)?;
        let dockerd = match &options.dockerd {
            Some(insecure) => Some(start_dockerd(&dir, &docker_root, &ctrd, insecure)?),
            None => None,
        };
        let paths = Paths {
            docker_root: &docker_root,
            containerd_address: &ctrd.sock,
            containerd_root: &ctrd.root,
            kubelet_root: &kubelet_root,
            kubelet_config: &config,
            pod_logs: &pod_logs,
        };
        let (agent, addr) = short_lived(w, &format!("agent-{name}"), paths)?;
        let layout = vec![
            ("--docker-root", docker_root.clone()),
            ("--containerd-address", ctrd.sock.clone()),
            ("--containerd-root", ctrd.root.clone()),
            ("--kubelet-root", kubelet_root.clone()),
            ("--kubelet-config", config.clone()),
            ("--pod-logs", pod_logs.clone()),
        ];
        let node = SmallNode {
            agent,
            addr,
            dockerd,
            ctrd,
            dir,
            fs_root,
            pod_logs,
            layout,
        };
        node.check_layout()?;
        Ok(node)
    }

    /// Fails unless the agent sees nodefs and imagefs both on the small
    /// filesystem (the same device: dockerd bind-mounts its data root onto
    /// itself, so the mount point may be that), with a threshold.
    fn check_layout(&self) -> Result<()> {
        let mount = path_str(&self.fs_root)?;
        let device = fs::metadata(&self.fs_root)?.dev();
        let s = agent::status(&self.addr)?;
        for signal in [Signal::Nodefs, Signal::Imagefs] {
            let fs = filesystem(&s, signal)?;
            let same = fs::metadata(&fs.mountpoint).is_ok_and(|m| m.dev() == device);
            if !same || !fs.mountpoint.starts_with(mount) || fs.threshold_bytes == 0 {
                bail!(
                    "{signal} should be on {mount} with a threshold: {fs:?}\n{}",
                    self.agent.output()
                );
            }
        }
        Ok(())
    }

    /// `(capacity, available)` of the small filesystem.
    pub fn disk(&self) -> Result<(u64, u64)> {
        disk(&self.fs_root)
    }

    /// `headroom check-pull --json --plain-http reference` against this
    /// node (shipped configuration): (exit code, imagefs prediction).
    pub fn check_pull(&self, reference: &str) -> Result<(i32, Prediction)> {
        let exe = env!("CARGO_BIN_EXE_headroom");
        let mut cmd = Command::new(exe);
        cmd.args(["check-pull", "--json", "--plain-http"]);
        for (flag, path) in &self.layout {
            cmd.arg(flag).arg(path);
        }
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HEADROOM_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg(reference)
            .env("HEADROOM_CONFIG", agent::shipped_config());
        let out = cmd.output()?;
        let code = out.status.code().unwrap_or(-1);
        let doc: Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            anyhow!(
                "check-pull {reference} (exit {code}) printed no document: {e}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let imagefs = doc["prediction"]["imagefs"].clone();
        Ok((code, serde_json::from_value(imagefs)?))
    }

    /// Starts `ctr images pull --plain-http [extra…] reference` into
    /// `k8s.io`; its output goes to `pull-<case>.log`.
    pub fn pull(&self, reference: &str, case: &str, extra: &[&str]) -> Result<Proc> {
        let mut cmd = Command::new("ctr");
        cmd.args(["-a", path_str(&self.ctrd.sock)?, "-n", K8S_NS])
            .args(["images", "pull", "--plain-http"])
            .args(extra)
            .arg(reference);
        let log = self.dir.join(format!("pull-{case}.log"));
        Proc::spawn(&format!("ctr pull {reference}"), cmd, log)
    }

    /// `ctr images pull` of `reference` to the end (no proxy needed), then
    /// waits until the agent lists it with at least `unpacked` unique disk
    /// bytes (the unpack ratio and the GC model need it measured).
    pub fn pull_now(&self, reference: &str, unpacked: u64) -> Result<()> {
        oracle::ctr(
            &self.ctrd.sock,
            K8S_NS,
            &["images", "pull", "--plain-http", reference],
        )?;
        // The pull raises containerd events: the agent rereads within seconds.
        poll(Duration::from_secs(30), || {
            let s = agent::status(&self.addr)?;
            let measured = s
                .images
                .iter()
                .any(|i| i.refs.iter().any(|r| r == reference) && i.unique_disk_bytes >= unpacked);
            if measured {
                Ok(())
            } else {
                bail!("the agent does not list {reference} with {unpacked} unpacked bytes yet")
            }
        })
        .map_err(|e| anyhow!("{e:#}\n{}", self.agent.output()))
    }

    /// The agent's log and where the node's files are, for a failure.
    pub fn context(&self) -> String {
        let docker = self
            .dockerd
            .as_ref()
            .map(|d| format!("\n{}", d.output()))
            .unwrap_or_default();
        format!(
            "node {} (containerd log {}){docker}\n{}",
            self.dir.display(),
            self.ctrd.log.display(),
            self.agent.output()
        )
    }
}

/// Starts dockerd with its data root at `root`, on `ctrd`, trusting
/// `insecure` registries over plain HTTP; waits until it answers.
fn start_dockerd(dir: &Path, root: &Path, ctrd: &Containerd, insecure: &[&str]) -> Result<Dockerd> {
    let config = dir.join("daemon.json");
    fs::write(&config, "{}\n")?;
    let host = format!("unix://{}", dir.join("docker.sock").display());
    let exec_root = dir.join("docker-exec");
    let pidfile = dir.join("docker.pid");
    let mut cmd = Command::new("dockerd");
    cmd.args(["--config-file", path_str(&config)?])
        .args(["--data-root", path_str(root)?])
        .args(["--exec-root", path_str(&exec_root)?])
        .args(["-H", &host])
        .args(["--pidfile", path_str(&pidfile)?])
        .args([
            "--iptables=false",
            "--bridge=none",
            "--storage-driver=overlay2",
        ])
        .args(["--containerd", path_str(&ctrd.sock)?]);
    for registry in insecure {
        cmd.args(["--insecure-registry", registry]);
    }
    let mut proc = Proc::spawn("dockerd-small", cmd, dir.join("dockerd.log"))?;
    poll(Duration::from_secs(45), || {
        if let Some(code) = proc.exited() {
            bail!("dockerd exited with {code}");
        }
        oracle::run("docker", &["-H", &host, "version"]).map(drop)
    })
    .map_err(|e| anyhow!("{e:#}\n{}", proc.output()))?;
    Ok(Dockerd { proc, host })
}

/// The filesystem entry of `signal`.
pub fn filesystem(s: &Status, signal: Signal) -> Result<&Filesystem> {
    s.filesystems
        .iter()
        .find(|f| f.signal == signal)
        .ok_or_else(|| anyhow!("no {signal} in the status document"))
}

/// What the agent said at one moment, and the disk at that moment.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Since the pulls started.
    pub at: Duration,
    /// The filesystem's available bytes (statvfs), read right after.
    pub available: u64,
    /// The whole document.
    pub status: Status,
    /// `pulls[]` as JSON (keys the test's copy of the types may not know).
    pub pulls: Vec<Value>,
}

impl Sample {
    /// The verdict on `signal` (ok, saying it is missing, when the document
    /// has none).
    pub fn verdict(&self, signal: Signal) -> Prediction {
        self.status
            .prediction
            .get(&signal)
            .cloned()
            .unwrap_or_else(|| Prediction {
                predicted: false,
                state: State::Ok,
                seconds_until: None,
                projected_available_after_pull: 0,
                projected_available_after_gc: 0,
                reason: format!("no {signal} prediction"),
            })
    }

    /// The imagefs verdict.
    pub fn imagefs(&self) -> Prediction {
        self.verdict(Signal::Imagefs)
    }

    /// Whether imagefs is in pressure (state and flag).
    pub fn pressure(&self) -> bool {
        let p = self.imagefs();
        p.state == State::Pressure && p.predicted
    }

    /// Whether any signal says pressure (state or flag).
    pub fn pressure_anywhere(&self) -> bool {
        self.status
            .prediction
            .values()
            .any(|p| p.predicted || p.state == State::Pressure)
    }

    /// One line for a failure message.
    pub fn line(&self) -> String {
        let p = self.imagefs();
        let pulls: Vec<String> = self
            .pulls
            .iter()
            .map(|p| {
                format!(
                    "{}:{}/{}",
                    p["runtime"].as_str().unwrap_or("?"),
                    p["offset_bytes"],
                    p["total_bytes"]
                )
            })
            .collect();
        format!(
            "{:>6.1}s available={} pulls=[{}] imagefs {} predicted={}: {}",
            self.at.as_secs_f64(),
            self.available,
            pulls.join(" "),
            p.state,
            p.predicted,
            p.reason
        )
    }
}

/// How one pull ended.
#[derive(Debug)]
pub struct Ended {
    /// What was pulled.
    pub name: String,
    /// Its exit, `None` if it was stopped at the time limit.
    pub exit: Option<ExitStatus>,
    /// When its exit was noticed (since the start).
    pub at: Option<Duration>,
    /// Its output.
    pub output: String,
}

impl Ended {
    /// Whether it failed because the disk was full.
    pub fn enospc(&self) -> bool {
        self.exit.is_some_and(|s| !s.success()) && self.output.contains(ENOSPC)
    }
}

/// The samples taken while pulls ran, the disk every 50 ms, how each pull
/// ended, and the eviction line of the filesystem.
pub struct Watch {
    /// Status samples, every [`SAMPLE_EVERY`].
    pub samples: Vec<Sample>,
    /// `(since the start, available bytes)` every 50 ms.
    pub disk: Vec<(Duration, u64)>,
    /// How each pull ended, in the order given.
    pub ended: Vec<Ended>,
    /// Filesystem size (statvfs).
    pub capacity: u64,
    /// The eviction line in bytes (the kubelet's resolution of the percentage).
    pub line: u64,
}

impl Watch {
    /// When the disk was first seen below the line.
    pub fn line_crossed(&self) -> Option<Duration> {
        self.disk
            .iter()
            .find(|(_, available)| *available < self.line)
            .map(|(at, _)| *at)
    }

    /// When the first pull that failed with ENOSPC was seen to end.
    pub fn enospc_at(&self) -> Option<Duration> {
        self.ended
            .iter()
            .filter(|e| e.enospc())
            .filter_map(|e| e.at)
            .min()
    }

    /// The end of the possible lead: the line crossed, or a pull failing
    /// with ENOSPC before that, whichever is first.
    pub fn deadline(&self) -> Option<Duration> {
        match (self.line_crossed(), self.enospc_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every sample and every end, for a failure message.
    pub fn describe(&self) -> String {
        let ends: Vec<String> = self
            .ended
            .iter()
            .map(|e| format!("\n  {} ended {:?} at {:?}", e.name, e.exit, e.at))
            .collect();
        let lines: Vec<String> = self
            .samples
            .iter()
            .map(|s| format!("\n  {}", s.line()))
            .collect();
        format!(
            "capacity {} line {} crossed at {:?}; ENOSPC at {:?}{}\nsamples:{}",
            self.capacity,
            self.line,
            self.line_crossed(),
            self.enospc_at(),
            ends.concat(),
            lines.concat()
        )
    }

    /// The pulls' outputs.
    pub fn outputs(&self) -> String {
        self.ended
            .iter()
            .map(|e| e.output.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Reads `node`'s disk every 50 ms and its agent's status every
/// [`SAMPLE_EVERY`] from `started` until every pull in `pulls` has exited
/// (or `within` passes: the rest are stopped). `percent` is the eviction
/// threshold the node's kubelet config sets. `each` is called after every
/// status sample (e.g. to play the kubelet's image GC).
pub fn watch(
    node: &SmallNode,
    percent: f32,
    pulls: &mut [Proc],
    started: Instant,
    within: Duration,
    mut each: impl FnMut(&Sample) -> Result<()>,
) -> Result<Watch> {
    let (capacity, _) = node.disk()?;
    let mut w = Watch {
        samples: Vec::new(),
        disk: Vec::new(),
        ended: Vec::new(),
        capacity,
        line: line_of(percent, capacity),
    };
    let mut ends: Vec<Option<(Option<ExitStatus>, Option<Duration>)>> =
        pulls.iter().map(|_| None).collect();
    let mut next_sample = Instant::now();
    loop {
        let now = Instant::now();
        let at = started.elapsed();
        w.disk.push((at, node.disk()?.1));
        for (pull, end) in pulls.iter_mut().zip(ends.iter_mut()) {
            if end.is_none() {
                if let Some(exit) = pull.exited() {
                    *end = Some((Some(exit), Some(started.elapsed())));
                }
            }
        }
        if ends.iter().all(Option::is_some) {
            break;
        }
        if at >= within {
            for (pull, end) in pulls.iter_mut().zip(ends.iter_mut()) {
                if end.is_none() {
                    *end = Some((pull.terminate(Duration::from_secs(5)), None));
                }
            }
            break;
        }
        if now >= next_sample {
            next_sample = now + SAMPLE_EVERY;
            let reply = crate::web::get(&node.addr, "/api/v1/status")?;
            let at = started.elapsed();
            let available = node.disk()?.1;
            let raw: Value = serde_json::from_str(&reply.body)
                .with_context(|| format!("/api/v1/status: HTTP {}: {}", reply.code, reply.body))?;
            let status: Status = serde_json::from_value(raw.clone())
                .with_context(|| format!("not a status document: {}", reply.body))?;
            let pulls = raw["pulls"].as_array().cloned().unwrap_or_default();
            let sample = Sample {
                at,
                available,
                status,
                pulls,
            };
            each(&sample)?;
            w.samples.push(sample);
        }
        sleep(DISK_EVERY);
    }
    for (pull, end) in pulls.iter().zip(ends) {
        let (exit, at) = end.unwrap_or((None, None));
        w.ended.push(Ended {
            name: pull.name().to_owned(),
            exit,
            at,
            output: pull.output(),
        });
    }
    Ok(w)
}
