//! A pull in flight, watched through the run's agent: an image with one big
//! incompressible layer is served through a throttling TCP proxy so that
//! `ctr images pull` takes several seconds; meanwhile `/api/v1/status` must
//! list the pull under its repository, with offset ≤ total and bytes left
//! that fall, and `/metrics` its `headroom_pull_remaining_bytes`; once done,
//! no pull is listed. The image is removed again (`--sync`, so its space is
//! freed) before the node is handed back.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, sleep, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use headroom::model::Pull;

use crate::agent::{self, poll, Proc};
use crate::checks::Checks;
use crate::images::{push_oci, K8S_NS};
use crate::oracle::{self, path_str};
use crate::services::Registry;
use crate::{exposition, web, World};

/// Size of the image's one layer (random bytes: the blob is as big).
const LAYER_BYTES: u64 = 150_000_000;
/// What the proxy lets through from the registry, bytes per second.
const RATE: u64 = 15_000_000;
/// The repository the image is pushed to.
const REPOSITORY: &str = "hr/big";

/// Trial: the pull of `hr/big:1` through the proxy, seen by the agent.
pub fn in_flight_pull_is_listed(w: &World) -> Result<()> {
    let _node = w.changing();
    let live = w.live()?;
    let registry = registry_of(w)?;
    push_noise_image(w, &registry, REPOSITORY, LAYER_BYTES)?;
    let proxy = Throttle::start(&registry, RATE)?;
    let reference = format!("{}/{REPOSITORY}:1", proxy.addr);
    let sock = w.containerd_sock.as_path();
    let undo = Undo::new(w, Vec::new())?;
    let mut cmd = Command::new("ctr");
    cmd.args(["-a", path_str(sock)?, "-n", K8S_NS]).args([
        "images",
        "pull",
        "--plain-http",
        &reference,
    ]);
    let mut pull = Proc::spawn("ctr pull", cmd, w.dir.join("pulls-ctr.log"))?;
    let started = Instant::now();
    let mut c = Checks::new();
    let mut seen: Vec<Pull> = Vec::new();
    let mut metric = None;
    while pull.exited().is_none() && started.elapsed() < Duration::from_secs(90) {
        let status = agent::status(&live.addr)?;
        if let Some(p) = status.pulls.into_iter().find(is_ours) {
            if metric.is_none() {
                metric = remaining_metric(&live.addr, &p.reference)?;
            }
            seen.push(p);
        }
        sleep(Duration::from_millis(400));
    }
    let exit = pull.terminate(Duration::from_secs(5));
    c.that(exit.is_some_and(|s| s.success()), || {
        format!("`ctr images pull {reference}` failed\n{}", pull.output())
    });
    eprintln!(
        "runtimes: the pull took {:.1?}; the agent listed it {} times",
        started.elapsed(),
        seen.len()
    );
    check_samples(&mut c, &seen);
    c.that(metric.is_some(), || {
        "/metrics never had headroom_pull_remaining_bytes for the pull".into()
    });
    let ended = poll(Duration::from_secs(15), || {
        let left: Vec<Pull> = agent::status(&live.addr)?.pulls;
        if left.is_empty() {
            Ok(())
        } else {
            bail!("the agent still lists pulls after the pull ended: {left:?}")
        }
    });
    if let Err(e) = ended {
        c.error("no pull once done", e);
    }
    if let Err(e) = undo.run() {
        c.error("removing the image again", e);
    }
    drop(proxy);
    c.finish(&format!("agent at {}, pulling {reference}", live.addr))
}

/// Whether `p` is the trial's pull (named from the manifest's
/// distribution-source label, which drops the registry's port).
fn is_ours(p: &Pull) -> bool {
    p.image.as_deref().is_some_and(|i| i.ends_with(REPOSITORY))
}

/// offset ≤ total always, the same total throughout, bytes left falling.
fn check_samples(c: &mut Checks, seen: &[Pull]) {
    let downloading: Vec<&Pull> = seen.iter().filter(|p| p.total_bytes > 0).collect();
    c.that(downloading.len() >= 2, || {
        format!("the agent should list the pull at least twice while it downloads: {seen:?}")
    });
    for p in seen {
        c.that(p.offset_bytes <= p.total_bytes, || {
            format!("offset above total: {p:?}")
        });
        c.that(
            p.remaining_download_bytes == p.total_bytes - p.offset_bytes.min(p.total_bytes),
            || format!("remaining is not total - offset: {p:?}"),
        );
        c.that(p.total_bytes <= LAYER_BYTES + (LAYER_BYTES >> 6), || {
            format!("total above the layer's size: {p:?}")
        });
    }
    let remaining: Vec<u64> = downloading
        .iter()
        .map(|p| p.remaining_download_bytes)
        .collect();
    let falls = remaining.windows(2).all(|w| w[1] <= w[0]) && remaining.first() > remaining.last();
    c.that(falls, || {
        format!("bytes left should fall while downloading: {remaining:?}")
    });
}

/// `headroom_pull_remaining_bytes` of the pull named `reference`, if listed.
fn remaining_metric(addr: &str, reference: &str) -> Result<Option<f64>> {
    let body = web::get(addr, "/metrics")?.body;
    let series = format!("headroom_pull_remaining_bytes{{image=\"{reference}\"}}");
    Ok(exposition::value(&body, &series).and_then(|v| v.trim().parse().ok()))
}

/// `127.0.0.1:PORT` of the run's registry (from a fixture reference).
pub fn registry_of(w: &World) -> Result<String> {
    let base = w.fixtures.image("base");
    base.split_once('/')
        .map(|(registry, _)| registry.to_owned())
        .with_context(|| format!("no registry in fixture reference {base:?}"))
}

/// Builds `repository:1`, one layer of `bytes` random bytes, and pushes it
/// to `registry` (see [`push_layered_image`]).
pub fn push_noise_image(w: &World, registry: &str, repository: &str, bytes: u64) -> Result<()> {
    push_layered_image(w, registry, repository, &[bytes])
}

/// Builds `repository:1` with one layer per entry of `layers`, each a file
/// of that many random bytes (incompressible: each blob is as big), and
/// pushes it to `registry` (see [`push_image`]).
pub fn push_layered_image(
    w: &World,
    registry: &str,
    repository: &str,
    layers: &[u64],
) -> Result<()> {
    let fills: Vec<Fill> = layers
        .iter()
        .enumerate()
        .map(|(i, &bytes)| noise_layer(i, bytes))
        .collect();
    push_image(w, Registry::Plain(registry), repository, &fills)
}

/// A layer of one file, `big-<i>.bin`, of `bytes` random bytes.
pub fn noise_layer(i: usize, bytes: u64) -> Fill<'static> {
    Box::new(move |dir: &Path| random_file(&dir.join(format!("big-{i}.bin")), bytes))
}

/// Writes one layer's files into the empty directory it is given.
pub type Fill<'a> = Box<dyn Fn(&Path) -> Result<()> + 'a>;

/// Builds `repository:1` with one layer per entry of `layers` (each fills
/// an empty directory, which becomes the layer) and pushes it to
/// `registry`. Each repository gets its own OCI layout under
/// `<run dir>/noise/`, so trials may build different repositories at the
/// same time (one repository must be built by one trial only).
pub fn push_image(
    w: &World,
    registry: Registry<'_>,
    repository: &str,
    layers: &[Fill],
) -> Result<()> {
    let work = w.dir.join("noise").join(repository.replace('/', "_"));
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    let layout = work.join("oci");
    let image = format!("{}:1", layout.display());
    oracle::run("umoci", &["init", "--layout", path_str(&layout)?])?;
    oracle::run("umoci", &["new", "--image", &image])?;
    let files = work.join("files");
    for fill in layers {
        std::fs::create_dir_all(&files)?;
        fill(&files)?;
        add_layer(&image, &files)?;
        std::fs::remove_dir_all(&files)?;
    }
    push_oci(
        &image,
        &format!("{}/{repository}:1", registry.host()),
        registry,
    )?;
    // The registry holds it now: the build is not needed any more.
    std::fs::remove_dir_all(&work)?;
    Ok(())
}

/// Writes `bytes` random bytes to `path`.
fn random_file(path: &Path, bytes: u64) -> Result<()> {
    let script = format!("head -c {bytes} /dev/urandom > '{}'", path_str(path)?);
    oracle::run("sh", &["-c", &script]).map(drop)
}

/// Appends `files` (its entries, by name) as a layer of the OCI `image`,
/// tar streamed into umoci (which gzips it), so no layer is held on disk
/// or in memory uncompressed.
pub(crate) fn add_layer(image: &str, files: &Path) -> Result<()> {
    let mut names = std::fs::read_dir(files)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<Vec<String>>>()?;
    names.sort();
    let mut tar = Command::new("tar")
        .args(["--sort=name", "-C", path_str(files)?, "-cf", "-", "--"])
        .args(&names)
        .stdout(Stdio::piped())
        .spawn()
        .context("cannot start tar")?;
    let stream = tar.stdout.take().context("tar without stdout")?;
    let args = ["raw", "add-layer", "--image", image, "/dev/stdin"];
    let umoci = Command::new("umoci")
        .args(args)
        .stdin(stream)
        .output()
        .context("cannot run umoci")?;
    let tarred = tar.wait()?;
    if !tarred.success() || !umoci.status.success() {
        bail!(
            "tar of {} ({tarred}) into {}",
            files.display(),
            oracle::describe("umoci", &args, &umoci)
        );
    }
    Ok(())
}

/// Every image name in `k8s.io`.
fn image_names(w: &World) -> Result<BTreeSet<String>> {
    let out = oracle::ctr(&w.containerd_sock, K8S_NS, &["images", "ls", "-q"])?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// Removes the Docker images `docker` names, then the containerd names
/// added since it was made (a pulled tag and CRI's `sha256:` name),
/// synchronously so the space is freed, and waits until the agent lists
/// none of them; also when the trial fails.
pub(crate) struct Undo<'a> {
    w: &'a World,
    before: BTreeSet<String>,
    docker: Vec<String>,
}

impl Undo<'_> {
    /// Notes the containerd names there are now; `docker`: the Docker
    /// references to remove too.
    pub(crate) fn new(w: &World, docker: Vec<String>) -> Result<Undo<'_>> {
        Ok(Undo {
            w,
            before: image_names(w)?,
            docker,
        })
    }

    fn run(&self) -> Result<()> {
        let present = self
            .w
            .docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])?;
        let mut docker: Vec<&str> = self
            .docker
            .iter()
            .map(String::as_str)
            .filter(|r| present.lines().any(|l| l == *r))
            .collect();
        if !docker.is_empty() {
            docker.insert(0, "rmi");
            self.w.docker(&docker)?;
        }
        let mut added: Vec<String> = image_names(self.w)?
            .difference(&self.before)
            .cloned()
            .collect();
        if !added.is_empty() {
            let mut args = vec!["images", "rm", "--sync"];
            args.extend(added.iter().map(String::as_str));
            oracle::ctr(&self.w.containerd_sock, K8S_NS, &args)?;
        }
        added.extend(self.docker.iter().cloned());
        // The agent must see the node as the other trials expect it.
        let live = self.w.live()?;
        poll(Duration::from_secs(15), || {
            let s = agent::status(&live.addr)?;
            let left = s
                .images
                .iter()
                .any(|i| i.refs.iter().any(|r| added.contains(r)));
            if left || !s.pulls.is_empty() {
                bail!("the agent still lists a removed image or a pull")
            }
            Ok(())
        })
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.run() {
            eprintln!("runtimes: cannot remove the images a trial pulled: {e:#}");
        }
    }
}

/// A server on a free loopback port that hands each connection to `serve`
/// on its one accept thread; stopped when dropped.
pub struct Loopback {
    /// `127.0.0.1:PORT` it listens on.
    pub addr: String,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Loopback {
    /// Listens on a free loopback port (`what` names it if that fails).
    pub fn start(
        what: &str,
        mut serve: impl FnMut(TcpStream) + Send + 'static,
    ) -> Result<Loopback> {
        let listener =
            TcpListener::bind("127.0.0.1:0").with_context(|| format!("cannot bind the {what}"))?;
        let addr = listener.local_addr()?.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = stream {
                    serve(stream);
                }
            }
        });
        Ok(Loopback {
            addr,
            stop,
            accept: Some(accept),
        })
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// A TCP proxy to `upstream` that sends what upstream answers at most
/// `rate` bytes per second per connection; stopped when dropped.
pub struct Throttle {
    /// `127.0.0.1:PORT` it listens on.
    pub addr: String,
    _server: Loopback,
}

impl Throttle {
    /// Listens on a free loopback port and forwards to `upstream`.
    pub fn start(upstream: &str, rate: u64) -> Result<Throttle> {
        let upstream = upstream.to_owned();
        let server = Loopback::start("proxy", move |client| {
            if let Ok(server) = TcpStream::connect(&upstream) {
                forward(client, server, rate);
            }
        })?;
        Ok(Throttle {
            addr: server.addr.clone(),
            _server: server,
        })
    }
}

/// Copies both ways on two threads, the answers throttled to `rate`.
fn forward(client: TcpStream, server: TcpStream, rate: u64) {
    let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    thread::spawn(move || copy(client, server, None));
    thread::spawn(move || copy(server2, client2, Some(rate)));
}

/// Copies `from` to `to` until either ends, sleeping after each chunk so
/// that at most `rate` bytes per second pass.
fn copy(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>) {
    let mut buf = vec![0u8; 64 << 10];
    let started = Instant::now();
    let mut sent = 0u64;
    while let Ok(n) = from.read(&mut buf) {
        if n == 0 || to.write_all(&buf[..n]).is_err() {
            break;
        }
        sent += n as u64;
        if let Some(rate) = rate {
            let due = Duration::from_secs_f64(sent as f64 / rate as f64);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                sleep(wait);
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
