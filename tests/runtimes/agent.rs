//! `headroom agent` against the real node: one agent started with the other
//! services (scraped by a real Prometheus, see [`crate::scrape`]), plus
//! short-lived agents for the trials that stop things: SIGTERM and
//! malformed requests (a containerd that dies and comes back: `faults.rs`).
//!
//! Every process a trial starts is held by a [`Proc`] guard, so it is
//! stopped by its pid also when the trial fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use headroom::model::Status;
use headroom::runtime::RuntimeKind;
use rustix::process::{kill_process, Pid, Signal};

use crate::checks::Checks;
use crate::images::{self, Fixtures};
use crate::oracle::{self, path_str, tail};
use crate::services::{free_port, mount_loop_ext4, Services};
use crate::subject::NODE_NAME;
use crate::{prometheus, web, World};

/// Series per entity: more than the node has, so nothing is folded.
const TOP_N: &str = "1000";
/// How long an agent may take to finish its first inventory.
const READY_WITHIN: Duration = Duration::from_secs(20);
/// How long an agent may take to exit after SIGTERM.
const EXIT_WITHIN: Duration = Duration::from_secs(5);
/// What a panicking Rust thread writes to stderr.
const PANIC_MARK: &str = "panicked";

/// The agent (and the Prometheus scraping it) that lives for the whole run.
#[derive(Debug, Clone)]
pub struct Live {
    /// `127.0.0.1:PORT` the agent serves on.
    pub addr: String,
    /// `127.0.0.1:PORT` of Prometheus.
    pub prometheus: String,
    /// The agent's pid.
    pub pid: u32,
    /// The agent's stdout and stderr.
    pub log: PathBuf,
    /// The config file every agent is given (`HEADROOM_CONFIG`): the
    /// repository's `deploy/config.toml`, the shipped defaults.
    pub config: PathBuf,
    /// An image pushed to the registry but not pulled ([`images::build_grow_image`]).
    pub grow_image: String,
}

/// Where an agent looks.
#[derive(Debug, Clone, Copy)]
pub struct Paths<'a> {
    /// `--docker-root`.
    pub docker_root: &'a Path,
    /// `--containerd-address`.
    pub containerd_address: &'a Path,
    /// `--containerd-root`.
    pub containerd_root: &'a Path,
    /// `--kubelet-root`.
    pub kubelet_root: &'a Path,
    /// `--kubelet-config`.
    pub kubelet_config: &'a Path,
    /// `--pod-logs`.
    pub pod_logs: &'a Path,
}

impl<'a> Paths<'a> {
    /// The fixture node.
    pub fn node(s: &'a Services, f: &'a Fixtures) -> Paths<'a> {
        Paths {
            docker_root: &s.docker_root,
            containerd_address: &s.containerd_sock,
            containerd_root: &s.containerd_root,
            kubelet_root: &f.kubelet_root,
            kubelet_config: &f.kubelet_config,
            pod_logs: &f.pod_logs,
        }
    }

    /// The fixture node, as the trials see it.
    pub fn of_world(w: &'a World) -> Paths<'a> {
        Paths {
            docker_root: &w.docker_root,
            containerd_address: &w.containerd_sock,
            containerd_root: &w.containerd_root,
            kubelet_root: &w.fixtures.kubelet_root,
            kubelet_config: &w.fixtures.kubelet_config,
            pod_logs: &w.fixtures.pod_logs,
        }
    }
}

/// The configuration Headroom ships (`deploy/config.toml`: every key at its
/// default). "The defaults are the product" (issue 8): every agent runs on
/// it, with no interval flag, unless its trial is about that setting.
pub fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/config.toml")
}

/// `headroom agent` on `listen` looking at `paths`, with `HEADROOM_CONFIG`
/// set to `config` and no other `HEADROOM_*`: the shipped scan and resync
/// intervals (only `--top-n` is raised, so that nothing is folded). A trial
/// about a setting appends its flag to the command.
pub fn command(config: &Path, listen: &str, paths: Paths<'_>) -> Result<Command> {
    let mut cmd = shipped_command(config, listen, paths)?;
    cmd.args(["--top-n", TOP_N]);
    Ok(cmd)
}

/// [`command`] with nothing raised: every setting but the paths and
/// `--listen` from `config`.
pub fn shipped_command(config: &Path, listen: &str, paths: Paths<'_>) -> Result<Command> {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headroom"));
    cmd.args(["agent", "--listen", listen]);
    for (flag, path) in [
        ("--docker-root", paths.docker_root),
        ("--containerd-address", paths.containerd_address),
        ("--containerd-root", paths.containerd_root),
        ("--kubelet-root", paths.kubelet_root),
        ("--kubelet-config", paths.kubelet_config),
        ("--pod-logs", paths.pod_logs),
    ] {
        cmd.args([flag, path_str(path)?]);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HEADROOM_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HEADROOM_CONFIG", config)
        .env("NODE_NAME", NODE_NAME);
    Ok(cmd)
}

/// Starts the run's agent on the fixture node and Prometheus scraping it,
/// and builds the image the change trial pulls. Both daemons are owned by
/// `s`, so they are torn down with the rest.
pub fn start(s: &mut Services, f: &Fixtures) -> Result<Live> {
    let grow_image = images::build_grow_image(s)?;
    let config = shipped_config();
    let addr = format!("127.0.0.1:{}", free_port()?);
    let cmd = command(&config, &addr, Paths::node(s, f))?;
    let probe = addr.clone();
    let (pid, log) = s.start_daemon("agent", cmd, || answers(&probe, "/readyz", 200))?;
    let prometheus = prometheus::start(s, &addr)?;
    Ok(Live {
        addr,
        prometheus,
        pid,
        log,
        config,
        grow_image,
    })
}

/// Whether `GET path` on `addr` answers `code`.
pub fn answers(addr: &str, path: &str, code: u16) -> bool {
    web::get(addr, path).is_ok_and(|r| r.code == code)
}

/// The agent's `/api/v1/status`.
pub fn status(addr: &str) -> Result<Status> {
    let reply = web::get(addr, "/api/v1/status")?;
    if reply.code != 200 {
        bail!("GET /api/v1/status: HTTP {}: {}", reply.code, reply.body);
    }
    serde_json::from_str(&reply.body)
        .with_context(|| format!("/api/v1/status is not a status document: {}", reply.body))
}

/// Calls `probe` every 250 ms until it succeeds or `within` passes; the
/// error is the last failure, saying how long was waited.
pub fn poll<T>(within: Duration, mut probe: impl FnMut() -> Result<T>) -> Result<T> {
    let started = Instant::now();
    loop {
        match probe() {
            Ok(v) => return Ok(v),
            Err(e) if started.elapsed() >= within => {
                return Err(e.context(format!("still so after {within:?}")))
            }
            Err(_) => sleep(Duration::from_millis(250)),
        }
    }
}

/// A process a trial started: stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Proc {
    name: String,
    child: Child,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Proc {
    /// Starts `cmd` with its output appended to `log` (a restart keeps the
    /// first run's output).
    pub fn spawn(name: &str, mut cmd: Command, log: PathBuf) -> Result<Proc> {
        let out = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .with_context(|| format!("opening {}", log.display()))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start {name}: `{cmd:?}`"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
            log,
        })
    }

    /// The name it was started under.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How it exited, if it has.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Sends SIGTERM and waits up to `within`; `None` if it is still running.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        if self.exited().is_none() {
            let _ = kill_process(Pid::from_child(&self.child), Signal::TERM);
        }
        let started = Instant::now();
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if started.elapsed() > within {
                return None;
            }
            sleep(Duration::from_millis(50));
        }
    }

    /// Its output so far (the end of it).
    pub fn output(&self) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        format!(
            "--- {} output ({}) ---\n{}",
            self.name,
            self.log.display(),
            tail(&text, 4000)
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.terminate(Duration::from_secs(10)).is_none() {
            eprintln!("runtimes: {} ignored SIGTERM, killing it", self.name);
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts a short-lived agent on a free port and waits for its first
/// inventory; returns it and its address.
pub fn short_lived(w: &World, name: &str, paths: Paths<'_>) -> Result<(Proc, String)> {
    short_lived_with(w, name, paths, &[])
}

/// [`short_lived`] with `extra` flags after the others (for a trial about
/// a setting; say why at the call).
pub fn short_lived_with(
    w: &World,
    name: &str,
    paths: Paths<'_>,
    extra: &[&str],
) -> Result<(Proc, String)> {
    let live = w.live()?;
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = command(&live.config, &addr, paths)?;
    cmd.args(extra);
    let mut agent = Proc::spawn(name, cmd, w.dir.join(format!("{name}.log")))?;
    ready(&mut agent, &addr, "/readyz", READY_WITHIN)?;
    Ok((agent, addr))
}

/// Waits up to `within` until `GET path` on `addr` answers 200, failing
/// with `proc`'s output if it exits first or takes too long.
pub fn ready(proc: &mut Proc, addr: &str, path: &str, within: Duration) -> Result<()> {
    let name = proc.name().to_owned();
    poll(within, || {
        if let Some(code) = proc.exited() {
            bail!("{name} exited with {code}");
        }
        if answers(addr, path, 200) {
            Ok(())
        } else {
            bail!("{name} on {addr}: {path} is not 200")
        }
    })
    .map_err(|e| anyhow!("{e:#}\n{}", proc.output()))
}

/// Trial e: SIGTERM makes a serving agent exit 0 within a few seconds and
/// close its port.
pub fn sigterm_exits_cleanly(w: &World) -> Result<()> {
    let _node = w.reading();
    let (mut agent, addr) = short_lived(w, "agent-sigterm", Paths::of_world(w))?;
    let mut c = Checks::new();
    let sent = Instant::now();
    match agent.terminate(EXIT_WITHIN) {
        None => c.that(false, || {
            format!("the agent did not exit within {EXIT_WITHIN:?} of SIGTERM")
        }),
        Some(status) => {
            c.eq(
                "exit code after SIGTERM",
                "graceful shutdown",
                Some(0),
                status.code(),
            );
            eprintln!(
                "runtimes: agent exited {:.1?} after SIGTERM",
                sent.elapsed()
            );
        }
    }
    c.that(std::net::TcpStream::connect(&addr).is_err(), || {
        format!("{addr} still accepts connections after the agent exited")
    });
    let log = fs::read_to_string(&agent.log).unwrap_or_default();
    c.that(!log.contains(PANIC_MARK), || {
        "the agent panicked".to_owned()
    });
    c.finish(&agent.output())
}

/// A private containerd on its own loop filesystem, root, state and socket
/// (its CRI plugin disabled); stopped and unmounted when dropped.
pub struct Containerd {
    config: PathBuf,
    /// Its socket.
    pub sock: PathBuf,
    /// Its root, on the loop filesystem.
    pub root: PathBuf,
    proc: Option<Proc>,
    /// Its stdout and stderr.
    pub log: PathBuf,
}

impl Containerd {
    /// Mounts a fresh `size` ext4 at `<run dir>/<name>/fs` and writes the
    /// config of a containerd rooted there (not started yet).
    pub fn new(w: &World, name: &str, size: &str) -> Result<Containerd> {
        let base = w.dir.join(name);
        fs::create_dir(&base)?;
        mount_loop_ext4(&base, "fs", size)?;
        let c = Containerd {
            config: base.join("containerd.toml"),
            sock: base.join("containerd.sock"),
            root: base.join("fs/root"),
            proc: None,
            log: base.join("containerd.log"),
        };
        fs::write(
            &c.config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\n  address = \"{}\"\n",
                c.root.display(),
                base.join("state").display(),
                c.sock.display()
            ),
        )?;
        Ok(c)
    }

    /// Starts it (again) and waits until `ctr version` answers.
    pub fn start(&mut self) -> Result<()> {
        let mut cmd = Command::new("containerd");
        cmd.args(["--config", path_str(&self.config)?]);
        let mut proc = Proc::spawn("containerd-2", cmd, self.log.clone())?;
        let sock = path_str(&self.sock)?.to_owned();
        poll(Duration::from_secs(20), || {
            if let Some(code) = proc.exited() {
                bail!("containerd-2 exited with {code}");
            }
            oracle::run("ctr", &["-a", &sock, "version"]).map(drop)
        })
        .map_err(|e| anyhow!("{e:#}\n{}", proc.output()))?;
        self.proc = Some(proc);
        Ok(())
    }

    /// Sends `signal` by pid; after SIGKILL, waits until it is gone, so it
    /// can be started again.
    pub fn signal(&mut self, signal: Signal) -> Result<()> {
        let proc = self.proc.as_mut().context("containerd-2 is not running")?;
        kill_process(Pid::from_child(&proc.child), signal)
            .with_context(|| format!("sending {signal:?} to containerd-2"))?;
        if signal == Signal::KILL {
            proc.child.wait()?;
            self.proc = None;
        }
        Ok(())
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        drop(self.proc.take());
        if let Some(fs) = self.root.parent() {
            if let Ok(p) = path_str(fs) {
                let _ = oracle::run("umount", &[p]);
            }
        }
    }
}

/// Whether `status` lists image `reference` under containerd.
pub fn has_image(status: &Status, reference: &str) -> bool {
    status
        .images
        .iter()
        .any(|i| i.runtime == RuntimeKind::Containerd && i.refs.iter().any(|r| r == reference))
}

/// Whether process `pid` is running (exists and is not a zombie).
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rfind(')')
            .and_then(|i| stat[i + 1..].split_whitespace().next())
            .is_some_and(|state| state != "Z")
    })
}

/// Trial g: the run's agent refuses what it does not serve and keeps
/// serving: POST (405), an unknown path (404), a garbage request line and
/// oversized headers (400/431 or a closed connection).
pub fn refuses_malformed_requests(w: &World) -> Result<()> {
    let live = w.live()?;
    let addr = live.addr.as_str();
    let mut c = Checks::new();
    let after = |c: &mut Checks, what: &str| {
        c.that(answers(addr, "/healthz", 200), || {
            format!("/healthz is not 200 after {what}")
        });
    };
    for (method, path, code) in [("POST", "/metrics", 405), ("GET", "/nope", 404)] {
        match web::request(addr, method, path) {
            Ok(r) => c.eq(&format!("{method} {path}"), "HTTP semantics", code, r.code),
            Err(e) => c.error(&format!("{method} {path}"), e),
        }
        after(&mut c, &format!("{method} {path}"));
    }
    let big = format!(
        "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Fill: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    for (what, raw, codes) in [
        (
            "a garbage request line",
            b"\x01\x02 garbage \xff\r\n\r\n".to_vec(),
            &[400][..],
        ),
        ("64 KiB of headers", big.into_bytes(), &[400, 431][..]),
    ] {
        match web::exchange(addr, &raw) {
            Ok(reply) if reply.is_empty() => {}
            Ok(reply) => {
                let code = web::parse(&reply).map(|r| r.code).ok();
                c.that(code.is_some_and(|code| codes.contains(&code)), || {
                    format!(
                        "{what}: expected {codes:?} or a closed connection, got {:?}",
                        tail(&String::from_utf8_lossy(&reply), 300)
                    )
                });
            }
            Err(e) => c.error(what, e),
        }
        after(&mut c, what);
    }
    c.that(running(live.pid), || {
        format!("the agent (pid {}) is not running", live.pid)
    });
    let log = fs::read_to_string(&live.log).unwrap_or_default();
    c.that(!log.contains(PANIC_MARK), || {
        "the agent panicked".to_owned()
    });
    c.finish(&format!(
        "agent log {}:\n{}",
        live.log.display(),
        tail(&log, 3000)
    ))
}
