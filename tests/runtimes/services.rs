//! Real daemons for the whole run: a registry on a free loopback port,
//! a second, private one (TLS with a self-signed CA, htpasswd auth; see
//! [`PrivateRegistry`]), containerd on a private config/root/state/socket,
//! and dockerd (overlay2) on top of that containerd, all under one temp dir.
//!
//! Later daemons (the agent and Prometheus) join with
//! [`Services::start_daemon`].
//!
//! [`Services`] is the teardown guard: dropping it (also while unwinding)
//! stops the daemons by the pids we started, newest first (Prometheus, the
//! agent, dockerd, containerd, the registries), unmounts everything still
//! mounted under the temp dir, deepest first, and removes the dir.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use base64::Engine as _;
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
    /// The private registry: TLS and auth.
    pub private: PrivateRegistry,
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
            private: PrivateRegistry::default(),
            dir,
            daemons: Vec::new(),
        };
        mount_loop_ext4(&services.dir, "nodefs", "256M")?;
        mount_loop_ext4(&services.dir, "imagefs", "2G")?;
        services.start_registry()?;
        services.start_private_registry()?;
        services.start_containerd()?;
        services.start_dockerd()?;
        Ok(services)
    }

    fn start_registry(&mut self) -> Result<()> {
        self.registry = format!("127.0.0.1:{}", free_port()?);
        let http = format!("{{addr: {}}}", self.registry);
        self.spawn_registry("registry", "registry", &http, "")?;
        let addr = self.registry.clone();
        self.wait_ready("registry", || registry_answers(&addr))
    }

    /// The private registry: a CA and a server certificate made with
    /// `openssl`, a bcrypt htpasswd file from `htpasswd -B`, and two Docker
    /// config dirs (the right password and a wrong one).
    fn start_private_registry(&mut self) -> Result<()> {
        let dir = self.dir.join("private");
        let addr = format!("127.0.0.1:{}", free_port()?);
        let ca_file = make_tls(&dir)?;
        let (user, password) = ("headroom", "s3cret-pull");
        let htpasswd = oracle::run("htpasswd", &["-Bbn", user, password])?;
        fs::write(dir.join("htpasswd"), htpasswd)?;
        let private = PrivateRegistry {
            docker_config: docker_config(&dir.join("docker-good"), &addr, user, password)?,
            wrong_docker_config: docker_config(&dir.join("docker-wrong"), &addr, user, "wrong")?,
            hosts_dir: dir.join("hosts"),
            addr,
            ca_file,
            user: user.to_owned(),
            password: password.to_owned(),
        };
        let http = format!(
            "{{addr: {}, tls: {{certificate: {}, key: {}}}}}",
            private.addr,
            dir.join("server.crt").display(),
            dir.join("server.key").display()
        );
        let auth = format!(
            "auth: {{htpasswd: {{realm: headroom-test, path: {}}}}}\n",
            dir.join("htpasswd").display()
        );
        self.spawn_registry("private-registry", "private", &http, &auth)?;
        self.private = private;
        let private = self.private.clone();
        // Up means asking without credentials is refused.
        self.wait_ready("private-registry", || {
            private.status("/v2/", None).ok() == Some(401)
        })
    }

    /// Starts `docker-registry` as daemon `name`, storing under
    /// `<dir>/<store>`, with the `http` section and `extra` top-level YAML.
    fn spawn_registry(
        &mut self,
        name: &'static str,
        store: &str,
        http: &str,
        extra: &str,
    ) -> Result<()> {
        let config = self.dir.join(format!("{name}.yml"));
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {http}\n{extra}",
                self.dir.join(store).display(),
            ),
        )?;
        self.spawn(name, "docker-registry", &["serve", path_str(&config)?])
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

/// The run's private registry: HTTPS with a certificate from a CA made for
/// the run, and htpasswd (bcrypt) basic auth.
#[derive(Debug, Clone, Default)]
pub struct PrivateRegistry {
    /// `127.0.0.1:PORT` it listens on.
    pub addr: String,
    /// The CA's certificate (PEM), alone in its directory (skopeo's
    /// `--cert-dir` reads every `*.crt` there).
    pub ca_file: PathBuf,
    /// The user htpasswd knows.
    pub user: String,
    /// Its password.
    pub password: String,
    /// A `DOCKER_CONFIG` dir whose `config.json` has the right credentials.
    pub docker_config: PathBuf,
    /// A `DOCKER_CONFIG` dir whose `config.json` has a wrong password.
    pub wrong_docker_config: PathBuf,
    /// containerd's hosts dir (the `certs.d` layout) for `ctr --hosts-dir`,
    /// one `<host>/hosts.toml` per address pulled from (see
    /// [`PrivateRegistry::ctr_hosts`]).
    pub hosts_dir: PathBuf,
}

impl PrivateRegistry {
    /// `user:password`, as `ctr --user` and skopeo's `--creds` take it.
    pub fn creds(&self) -> String {
        format!("{}:{}", self.user, self.password)
    }

    /// Writes `hosts_dir/<host>/hosts.toml` saying `host` speaks HTTPS
    /// with the run's CA, and returns `hosts_dir`. ctr 1.6 asks a loopback
    /// host over plain HTTP unless a hosts.toml says otherwise; `host` may
    /// be a proxy in front of the registry.
    pub fn ctr_hosts(&self, host: &str) -> Result<&Path> {
        let dir = self.hosts_dir.join(host);
        fs::create_dir_all(&dir)?;
        fs::write(
            dir.join("hosts.toml"),
            format!(
                "server = \"https://{host}\"\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  ca = \"{}\"\n",
                self.ca_file.display()
            ),
        )?;
        Ok(&self.hosts_dir)
    }

    /// The directory holding only [`PrivateRegistry::ca_file`].
    pub fn cert_dir(&self) -> &Path {
        self.ca_file.parent().unwrap_or(Path::new("/"))
    }

    /// The HTTP status `curl` gets for `GET path` (over TLS, trusting the
    /// CA), with `creds` (`user:password`) or none.
    pub fn status(&self, path: &str, creds: Option<&str>) -> Result<u16> {
        let url = format!("https://{}{path}", self.addr);
        let mut args = vec![
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--cacert",
            path_str(&self.ca_file)?,
        ];
        if let Some(creds) = creds {
            args.extend(["-u", creds]);
        }
        args.push(&url);
        oracle::parse_u64(&oracle::run("curl", &args)?)
            .map(|code| u16::try_from(code).unwrap_or(u16::MAX))
    }
}

/// One of the run's registries, as each tool is pointed at it.
#[derive(Debug, Clone, Copy)]
pub enum Registry<'a> {
    /// The plain-HTTP one, at this `127.0.0.1:PORT`.
    Plain(&'a str),
    /// The private one: TLS with the run's CA, and credentials.
    Private(&'a PrivateRegistry),
}

impl Registry<'_> {
    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> &str {
        match self {
            Registry::Plain(addr) => addr,
            Registry::Private(p) => &p.addr,
        }
    }

    /// `skopeo copy`'s flags for pushing to it.
    pub fn skopeo_dest(&self) -> Result<Vec<String>> {
        Ok(match self {
            Registry::Plain(_) => vec!["--dest-tls-verify=false".into()],
            Registry::Private(p) => vec![
                "--dest-creds".into(),
                p.creds(),
                "--dest-cert-dir".into(),
                path_str(p.cert_dir())?.into(),
            ],
        })
    }

    /// `skopeo inspect`'s flags for reading from it.
    pub fn skopeo_inspect(&self) -> Result<Vec<String>> {
        Ok(match self {
            Registry::Plain(_) => vec!["--tls-verify=false".into()],
            Registry::Private(p) => vec![
                "--creds".into(),
                p.creds(),
                "--cert-dir".into(),
                path_str(p.cert_dir())?.into(),
            ],
        })
    }

    /// `ctr images pull`'s flags for pulling `reference` from it (or from
    /// a proxy in front of it, named in `reference`).
    pub fn ctr_pull(&self, reference: &str) -> Result<Vec<String>> {
        Ok(match self {
            Registry::Plain(_) => vec!["--plain-http".into()],
            Registry::Private(p) => {
                let host = reference.split('/').next().unwrap_or(reference);
                vec![
                    "--user".into(),
                    p.creds(),
                    "--tlscacert".into(),
                    path_str(&p.ca_file)?.into(),
                    "--hosts-dir".into(),
                    path_str(p.ctr_hosts(host)?)?.into(),
                ]
            }
        })
    }

    /// How `headroom check-pull` asks it, as an SRE would: the CA file, and
    /// the credentials from a Docker config.
    pub fn check_pull(&self) -> Result<Asking> {
        Ok(match self {
            Registry::Plain(_) => Asking {
                args: vec!["--plain-http".into()],
                env: vec![],
            },
            Registry::Private(p) => Asking {
                args: vec!["--ca-file".into(), path_str(&p.ca_file)?.into()],
                env: vec![("DOCKER_CONFIG", path_str(&p.docker_config)?.into())],
            },
        })
    }
}

/// The flags and environment a command is given to reach a registry.
pub struct Asking {
    /// Flags.
    pub args: Vec<String>,
    /// Environment (name, value).
    pub env: Vec<(&'static str, String)>,
}

/// Makes a CA and a server certificate for `127.0.0.1` and `localhost`
/// (signed by it) under `dir` with `openssl`; returns the CA's file
/// (`dir/certs/ca.crt`; the keys stay outside that dir).
fn make_tls(dir: &Path) -> Result<PathBuf> {
    let certs = dir.join("certs");
    fs::create_dir_all(&certs)?;
    let ca = certs.join("ca.crt");
    let (ca_key, key, csr) = (
        dir.join("ca.key"),
        dir.join("server.key"),
        dir.join("server.csr"),
    );
    let ext = dir.join("server.ext");
    fs::write(
        &ext,
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )?;
    let openssl = |args: &[&str]| oracle::run("openssl", args);
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=headroom test CA",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        path_str(&ca_key)?,
        "-out",
        path_str(&ca)?,
    ])?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        path_str(&key)?,
        "-out",
        path_str(&csr)?,
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        path_str(&csr)?,
        "-CA",
        path_str(&ca)?,
        "-CAkey",
        path_str(&ca_key)?,
        "-set_serial",
        "2",
        "-days",
        "2",
        "-extfile",
        path_str(&ext)?,
        "-out",
        path_str(&dir.join("server.crt"))?,
    ])?;
    Ok(ca)
}

/// Writes `dir/config.json` as `docker login` would for `registry`
/// (`auths[registry].auth` = base64 of `user:password`); returns `dir`.
fn docker_config(dir: &Path, registry: &str, user: &str, password: &str) -> Result<PathBuf> {
    fs::create_dir_all(dir)?;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let config = serde_json::json!({ "auths": { registry: { "auth": auth } } });
    fs::write(dir.join("config.json"), serde_json::to_vec_pretty(&config)?)?;
    Ok(dir.to_owned())
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
pub fn unmount_under(dir: &Path) -> Vec<String> {
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
