//! Real daemons for the whole run: a registry on a free loopback port,
//! containerd on a private config/root/state/socket, and dockerd (overlay2)
//! on top of that containerd, all under one temp dir.
//!
//! Later daemons (the agent and Prometheus) join with
//! [`Services::start_daemon`].
//!
//! [`Services`] is the teardown guard: dropping it (also while unwinding)
//! stops the daemons by the pids we started, newest first (Prometheus, the
//! agent, dockerd, containerd, the registry), unmounts everything still
//! mounted under the temp dir, deepest first, and removes the dir.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, Pid, Signal};

use crate::oracle::{self, path_str, tail};

/// How long a daemon may take to answer before setup gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(45);
/// How long a daemon may take to exit after SIGTERM before it gets SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// One daemon we started.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The temp dir, the loop filesystems and the daemons of this run.
pub struct Services {
    /// The one temp dir everything lives under.
    pub dir: PathBuf,
    /// `127.0.0.1:PORT` of the registry.
    pub registry: String,
    /// containerd's socket.
    pub containerd_sock: PathBuf,
    /// containerd's root (on the imagefs loop filesystem).
    pub containerd_root: PathBuf,
    /// dockerd's socket.
    pub docker_sock: PathBuf,
    /// dockerd's data root (on the imagefs loop filesystem).
    pub docker_root: PathBuf,
    /// Mount point of the small ext4 that plays the node's root filesystem.
    pub nodefs: PathBuf,
    /// Mount point of the ext4 that holds the runtimes' roots.
    pub imagefs: PathBuf,
    daemons: Vec<Daemon>,
}

impl Services {
    /// Creates the temp dir and loop filesystems and starts the registry,
    /// containerd and dockerd, waiting until each answers.
    pub fn start() -> Result<Services> {
        let dir = tempfile::Builder::new()
            .prefix("headroom-rt-")
            .tempdir()
            .context("cannot create the temp dir")?
            .keep();
        // From here on `services` is the guard: an error or panic tears down.
        let mut services = Services {
            nodefs: dir.join("nodefs"),
            imagefs: dir.join("imagefs"),
            containerd_sock: dir.join("containerd.sock"),
            containerd_root: dir.join("imagefs/containerd"),
            docker_sock: dir.join("docker.sock"),
            docker_root: dir.join("imagefs/docker"),
            registry: String::new(),
            dir,
            daemons: Vec::new(),
        };
        mount_loop_ext4(&services.dir, "nodefs", "256M")?;
        mount_loop_ext4(&services.dir, "imagefs", "2G")?;
        services.start_registry()?;
        services.start_containerd()?;
        services.start_dockerd()?;
        Ok(services)
    }

    fn start_registry(&mut self) -> Result<()> {
        let port = free_port()?;
        self.registry = format!("127.0.0.1:{port}");
        let config = self.dir.join("registry.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: {}}}\n",
                self.dir.join("registry").display(),
                self.registry
            ),
        )?;
        self.spawn(
            "registry",
            "docker-registry",
            &["serve", path_str(&config)?],
        )?;
        let addr = self.registry.clone();
        self.wait_ready("registry", || registry_answers(&addr))
    }

    fn start_containerd(&mut self) -> Result<()> {
        let config = self.dir.join("containerd.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n",
                self.containerd_root.display(),
                self.dir.join("containerd-state").display(),
                self.containerd_sock.display()
            ),
        )?;
        self.spawn(
            "containerd",
            "containerd",
            &["--config", path_str(&config)?],
        )?;
        let sock = path_str(&self.containerd_sock)?.to_owned();
        self.wait_ready("containerd", || {
            oracle::run("ctr", &["-a", &sock, "version"]).is_ok()
        })
    }

    fn start_dockerd(&mut self) -> Result<()> {
        let config = self.dir.join("daemon.json");
        fs::write(&config, "{}\n")?;
        let host = format!("unix://{}", self.docker_sock.display());
        let args = [
            "--config-file",
            path_str(&config)?,
            "--data-root",
            path_str(&self.docker_root)?,
            "--exec-root",
            &format!("{}/docker-exec", self.dir.display()),
            "-H",
            &host,
            "--pidfile",
            &format!("{}/docker.pid", self.dir.display()),
            "--iptables=false",
            "--bridge=none",
            "--storage-driver=overlay2",
            "--containerd",
            path_str(&self.containerd_sock)?,
            "--insecure-registry",
            &self.registry,
        ]
        .map(|s| s.to_owned());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.spawn("dockerd", "dockerd", &args)?;
        self.wait_ready("dockerd", || {
            oracle::run("docker", &["-H", &host, "version"]).is_ok()
        })
    }

    /// The `docker` CLI arguments that reach our dockerd.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.docker_sock.display())
    }

    fn spawn(&mut self, name: &'static str, prog: &str, args: &[&str]) -> Result<()> {
        let mut cmd = Command::new(prog);
        cmd.args(args);
        self.spawn_command(name, cmd).map(drop)
    }

    /// Starts `cmd` as daemon `name` (output to `<dir>/<name>.log`, torn
    /// down with the others) and waits until `ready` holds; returns its pid
    /// and log file.
    pub fn start_daemon(
        &mut self,
        name: &'static str,
        cmd: Command,
        ready: impl FnMut() -> bool,
    ) -> Result<(u32, PathBuf)> {
        let started = self.spawn_command(name, cmd)?;
        self.wait_ready(name, ready)?;
        Ok(started)
    }

    fn spawn_command(&mut self, name: &'static str, mut cmd: Command) -> Result<(u32, PathBuf)> {
        let log = self.dir.join(format!("{name}.log"));
        let out = File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("cannot start `{cmd:?}`"))?;
        let pid = child.id();
        self.daemons.push(Daemon {
            name,
            child,
            log: log.clone(),
        });
        Ok((pid, log))
    }

    /// Polls `ready` until it holds, the daemon dies, or the timeout passes;
    /// on failure the error carries the daemon's log.
    fn wait_ready(&mut self, name: &str, mut ready: impl FnMut() -> bool) -> Result<()> {
        let started = Instant::now();
        let daemon = self
            .daemons
            .iter_mut()
            .find(|d| d.name == name)
            .context("daemon not started")?;
        loop {
            if ready() {
                return Ok(());
            }
            let exited = daemon.child.try_wait()?;
            if exited.is_some() || started.elapsed() > READY_TIMEOUT {
                let log = fs::read_to_string(&daemon.log).unwrap_or_default();
                bail!(
                    "{name} did not answer within {READY_TIMEOUT:?} (exit: {exited:?}); log {}:\n{}",
                    daemon.log.display(),
                    tail(&log, 6000)
                );
            }
            sleep(Duration::from_millis(200));
        }
    }

    /// Stops every daemon, newest first, waiting for each to exit.
    fn stop_daemons(&mut self) {
        while let Some(mut d) = self.daemons.pop() {
            if let Ok(Some(_)) = d.child.try_wait() {
                continue;
            }
            let pid = Pid::from_child(&d.child);
            let _ = kill_process(pid, Signal::TERM);
            let started = Instant::now();
            loop {
                match d.child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if started.elapsed() > STOP_TIMEOUT => {
                        eprintln!("runtimes: {} ignored SIGTERM, killing it", d.name);
                        let _ = d.child.kill();
                        let _ = d.child.wait();
                        break;
                    }
                    Ok(None) => sleep(Duration::from_millis(100)),
                }
            }
        }
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        self.stop_daemons();
        let left = unmount_under(&self.dir);
        if left.is_empty() {
            if let Err(e) = fs::remove_dir_all(&self.dir) {
                eprintln!("runtimes: cannot remove {}: {e}", self.dir.display());
            }
        } else {
            // Removing through a live mount would delete someone's files.
            eprintln!(
                "runtimes: still mounted, leaving {} in place: {left:?}",
                self.dir.display()
            );
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago (bind to port 0).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Whether a Docker registry answers `GET /v2/` at `addr`.
fn registry_answers(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    if stream
        .write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// Makes a sparse `size` ext4 image `dir/name.img` and mounts it at `dir/name`.
pub fn mount_loop_ext4(dir: &Path, name: &str, size: &str) -> Result<()> {
    let img = dir.join(format!("{name}.img"));
    let mnt = dir.join(name);
    fs::create_dir(&mnt)?;
    oracle::run("truncate", &["-s", size, path_str(&img)?])?;
    oracle::run("mkfs.ext4", &["-q", "-F", path_str(&img)?])?;
    oracle::run("mount", &["-o", "loop", path_str(&img)?, path_str(&mnt)?])?;
    Ok(())
}

/// Unmounts every mount point under `dir` (from /proc/self/mounts), deepest
/// first, lazily when busy; returns those that stay mounted.
fn unmount_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    let mut points = mounts_under(&prefix);
    points.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
    for p in &points {
        if oracle::run("umount", &[p]).is_err() {
            let _ = oracle::run("umount", &["-l", p]);
        }
    }
    mounts_under(&prefix)
}

/// Mount points in /proc/self/mounts that start with `prefix` (octal escapes
/// decoded).
fn mounts_under(prefix: &str) -> Vec<String> {
    let mounts = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .map(unescape_mount)
        .filter(|p| p.starts_with(prefix))
        .collect()
}

/// Decodes the `\040`-style escapes of /proc/self/mounts.
fn unescape_mount(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (bytes[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
