//! The agent's incremental scanner ([`Scanner`]) on a Docker overlay2 store
//! written in a temp dir the way dockerd writes it (by
//! `headroom::runtime::docker::fixture`), with containerd pointed at a
//! socket and root that do not exist. Oracles: `find` counts the
//! entries a pass should walk, GNU `du -s -B1` (and `--apparent-size`,
//! `--inodes`) the sizes it should report.
//!
//! Some tests need a pass to stall between reading the metadata and walking
//! (to remove a layer, or to let the deadline pass, at a known moment): they
//! point containerd's address at a Unix socket that accepts and never
//! answers. Docker's store is read before containerd is asked, so the accept
//! says the metadata has been read; the walk starts once containerd's
//! timeout has run out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{mpsc, Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use headroom::agent::scanner::{Pass, ScanSettings, Scanner};
use headroom::agent::shutdown::{Reason, Shutdown, TriggerOnDrop};
use headroom::layout::NodeLayout;
use headroom::model::{Source, Status};
use headroom::runtime::docker::fixture::{self, fill, ContainerSpec, DockerRoot, Layer};
use headroom::walk::WalkOptions;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Notify;

/// A node: a Docker root, a kubelet root and pod logs in one temp dir.
struct Node {
    dir: tempfile::TempDir,
    docker: DockerRoot,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().unwrap();
        let docker = DockerRoot::create(dir.path().join("docker")).unwrap();
        for rel in ["kubelet", "pods"] {
            fs::create_dir_all(dir.path().join(rel)).unwrap();
        }
        Node { dir, docker }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn docker(&self, rel: &str) -> PathBuf {
        self.docker.path(rel)
    }

    fn write(&self, path: &Path, contents: impl AsRef<[u8]>) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// Where the node's pieces are; containerd is nowhere unless `containerd`.
    fn layout(&self, containerd: Option<&Path>, timeout: Duration) -> NodeLayout {
        NodeLayout {
            docker_root: self.docker.root().to_path_buf(),
            containerd_address: containerd.map_or_else(
                || self.path("no-containerd/containerd.sock"),
                Path::to_path_buf,
            ),
            containerd_root: self.path("no-containerd/root"),
            containerd_timeout: timeout,
            kubelet_root: self.path("kubelet"),
            kubelet_config: self.path("kubelet/config.yaml"),
            pod_logs: self.path("pods"),
            containers_storage_conf: self.path("no-crio/storage.conf"),
            containers_storage_root: Some(self.path("no-crio/storage")),
            ..NodeLayout::default()
        }
    }

    /// Layers for `names` stacked base first, each holding `files[i]` files.
    fn layers(&self, names: &[&str], files: &[usize]) -> Vec<Layer> {
        let stack: Vec<(&str, usize)> = names.iter().copied().zip(files.iter().copied()).collect();
        self.docker.stack(&stack).unwrap()
    }

    /// The image whose top layer is `top`, named `reference`; its ID.
    fn image(&self, top: &Layer, reference: &str) -> String {
        let image = self.docker.image(top, "2024-02-03T04:05:06Z").unwrap();
        self.docker.name(reference, &image.id).unwrap();
        image.id
    }

    /// A container with `files` files in its writable layer and `logs`
    /// json-file logs; returns its writable dir and log files.
    fn container(
        &self,
        label: &str,
        image_id: &str,
        files: usize,
        logs: usize,
    ) -> (PathBuf, Vec<PathBuf>) {
        let written = self
            .docker
            .container(&ContainerSpec {
                id: fixture::id(&format!("container {label}")),
                name: label.to_string(),
                image: "demo/app:1".to_string(),
                image_id: image_id.to_string(),
                labels: Some(Default::default()),
                files,
                logs: (1..=logs).map(|i| 100 * i).collect(),
                ..ContainerSpec::default()
            })
            .unwrap();
        (written.writable_dir, written.logs)
    }

    /// A pod log file under the pod-logs root.
    fn pod_log(&self, rel: &str, bytes: usize) -> PathBuf {
        let path = self.path("pods").join(rel);
        self.write(&path, vec![b'l'; bytes]);
        path
    }
}

/// Entries below and including `path`, as `find` counts them.
fn find_count(path: &Path) -> u64 {
    let out = Command::new("find").arg(path).output().unwrap();
    assert!(out.status.success(), "find {path:?}: {out:?}");
    out.stdout.iter().filter(|&&b| b == b'\n').count() as u64
}

/// GNU du's total for `path` with `args`.
fn du(args: &[&str], path: &Path) -> u64 {
    let out = Command::new("du").args(args).arg(path).output().unwrap();
    assert!(out.status.success(), "du {path:?}: {out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// (disk, apparent, inodes) as du reports them.
fn du_figures(path: &Path) -> (u64, u64, u64) {
    (
        du(&["-s", "-B1"], path),
        du(&["-s", "-B1", "--apparent-size"], path),
        du(&["-s", "--inodes"], path),
    )
}

fn settings(deadline: Duration) -> ScanSettings {
    ScanSettings {
        rescan_interval: Duration::from_secs(60),
        rescan_jitter: 0.0,
        // Only `reread` rereads the metadata in these tests.
        resync_interval: Duration::from_secs(3600),
        scan_deadline: deadline,
        walk: WalkOptions {
            threads: 2,
            ..WalkOptions::default()
        },
    }
}

/// The async runtime the scanners ask containerd on, as the agent's.
fn runtime() -> Handle {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap()
    });
    runtime.handle().clone()
}

fn scanner(layout: NodeLayout, deadline: Duration) -> Scanner {
    Scanner::new(layout, settings(deadline), runtime())
}

/// Layer path → (disk, apparent, inodes) in the document.
fn layer_figures(status: &Status) -> BTreeMap<String, (u64, u64, u64)> {
    status
        .layers
        .iter()
        .map(|l| (l.path.clone(), (l.disk_bytes, l.apparent_bytes, l.inodes)))
        .collect()
}

/// Layer path → du's figures, for `layers`.
fn du_layers(layers: &[&Layer]) -> BTreeMap<String, (u64, u64, u64)> {
    layers
        .iter()
        .map(|l| (l.dir.display().to_string(), du_figures(&l.dir)))
        .collect()
}

fn error_kinds(status: &Status) -> BTreeSet<String> {
    status
        .scan
        .errors_by_kind
        .keys()
        .map(|k| k.as_str().to_string())
        .collect()
}

/// Containerd's stand-in for the stalling tests: accepts one connection,
/// says so on the returned channel, and holds it unanswered until dropped.
struct SilentContainerd {
    path: PathBuf,
    accepted: mpsc::Receiver<()>,
    _listener: thread::JoinHandle<()>,
}

impl SilentContainerd {
    fn new(path: PathBuf) -> SilentContainerd {
        let listener = UnixListener::bind(&path).unwrap();
        let (tx, accepted) = mpsc::channel();
        let handle = thread::spawn(move || {
            let mut held = Vec::new();
            // Every connection is held open and never answered. The thread
            // then waits in accept until the test process ends.
            while let Ok((stream, _)) = listener.accept() {
                held.push(stream);
                if tx.send(()).is_err() {
                    return;
                }
            }
        });
        SilentContainerd {
            path,
            accepted,
            _listener: handle,
        }
    }

    /// Blocks until the scanner has connected (Docker's store has been read).
    fn wait_for_connection(&self) {
        self.accepted
            .recv_timeout(Duration::from_secs(30))
            .expect("the scanner never asked containerd");
    }
}

impl Drop for SilentContainerd {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// The first pass walks the layers, the writable layers and the logs; later
/// passes (nothing changed, reread or not) only the writable layers and the
/// logs, while the document still carries every layer's du-equal figures.
#[test]
fn layers_are_walked_once_and_the_rest_every_pass() {
    let node = Node::new();
    let layers = node.layers(&["base", "runtime", "app"], &[400, 250, 120]);
    let other = node.layers(&["base", "tools"], &[400, 90]);
    let app = node.image(&layers[2], "demo/app:1");
    let tools = node.image(&other[1], "demo/tools:1");
    let (rw_a, logs_a) = node.container("web", &app, 60, 3);
    let (rw_b, logs_b) = node.container("job", &tools, 15, 1);
    let pod_logs = [
        node.pod_log("shop_web-1_0b0e6c1a-1111/nginx/0.log", 3000),
        node.pod_log(
            "shop_web-1_0b0e6c1a-1111/nginx/0.log.20240101-120000.gz",
            700,
        ),
    ];
    let all_layers: Vec<&Layer> = layers.iter().chain(&other[1..]).collect();

    // The independent counts: find over what the fixture created.
    let layer_entries: u64 = all_layers.iter().map(|l| find_count(&l.dir)).sum();
    let log_entries = (logs_a.len() + logs_b.len() + pod_logs.len()) as u64;
    assert!(layer_entries > 860 && log_entries == 6);
    // Read again each time: a writable layer may have grown meanwhile.
    let mutable_entries = || find_count(&rw_a) + find_count(&rw_b) + log_entries;

    let mut scanner = scanner(
        node.layout(None, Duration::from_secs(1)),
        Duration::from_secs(120),
    );
    let first = scanner.pass(true, true);
    assert_eq!(first.source, Source::Agent);
    assert_eq!(first.scan.errors, 0, "{:?}", first.scan.error_samples);
    assert_eq!(first.scan.files, layer_entries + mutable_entries());
    assert_eq!(layer_figures(&first), du_layers(&all_layers));
    assert_eq!(first.images.len(), 2);
    assert_eq!(
        first.containers.len(),
        3,
        "two containers and the pod's logs"
    );

    for reread in [false, true] {
        let again = scanner.pass(reread, true);
        assert_eq!(again.scan.errors, 0, "{:?}", again.scan.error_samples);
        assert_eq!(again.scan.files, mutable_entries(), "reread: {reread}");
        assert_eq!(layer_figures(&again), du_layers(&all_layers));
    }

    // Between rescans a pass walks nothing already measured.
    assert_eq!(scanner.pass(true, false).scan.files, 0);

    // A writable layer that grew is measured again, the layers still not.
    fill(&rw_a.join("tmp/cache"), 40, "grown").unwrap();
    let grown = scanner.pass(false, true);
    assert_eq!(grown.scan.files, mutable_entries());
    let web = grown
        .containers
        .iter()
        .find(|c| c.writable_path.as_deref() == Some(rw_a.to_str().unwrap()))
        .unwrap();
    assert_eq!(web.writable_disk_bytes, du(&["-s", "-B1"], &rw_a));
    assert_eq!(layer_figures(&grown), du_layers(&all_layers));
}

/// A layer removed (contents and all) while a pass walks it: the pass
/// returns, any error is a vanished entry, and once Docker has dropped the
/// layer from its layer DB the next pass lists the others with du's sizes.
#[test]
fn a_layer_removed_during_a_pass_is_harmless() {
    let node = Node::new();
    let layers = node.layers(&["base", "big"], &[300, 20_000]);
    let keep = node.layers(&["base", "small"], &[300, 200]);
    node.image(&layers[1], "demo/big:1");
    node.image(&keep[1], "demo/small:1");
    let silent = SilentContainerd::new(node.path("containerd.sock"));
    let layout = node.layout(Some(&silent.path), Duration::from_millis(300));
    let mut scanner = scanner(layout, Duration::from_secs(120));

    let big = layers[1].clone();
    let status = thread::scope(|s| {
        let pass = s.spawn(|| scanner.pass(true, true));
        // Docker's store has been read; the walk starts within the timeout,
        // while the removal runs.
        silent.wait_for_connection();
        fs::remove_dir_all(&big.dir).unwrap();
        pass.join().expect("the pass panicked")
    });
    let kinds = error_kinds(&status);
    assert!(
        kinds.is_subset(&BTreeSet::from(["vanished".to_string()])),
        "{:?}",
        status.scan.error_samples
    );
    drop(silent);

    // Docker drops the layer DB entry (and the overlay2 dir, gone already).
    fs::remove_dir_all(node.docker(&format!(
        "image/overlay2/layerdb/sha256/{}",
        &big.chain[7..]
    )))
    .unwrap();
    let after = scanner.pass(true, true);
    assert_eq!(after.scan.errors, 0, "{:?}", after.scan.error_samples);
    assert!(after.layers.iter().all(|l| l.id != big.chain));
    let rest: Vec<&Layer> = vec![&layers[0], &keep[1]];
    assert_eq!(layer_figures(&after), du_layers(&rest));
}

/// A layer whose directory vanished between the metadata read and the walk
/// (the metadata still lists it) is not cached: the next pass walks it again
/// and reports what is there then.
#[test]
fn a_layer_that_vanished_mid_pass_is_measured_again() {
    let node = Node::new();
    let layers = node.layers(&["base", "app"], &[300, 500]);
    node.image(&layers[1], "demo/app:1");
    let silent = SilentContainerd::new(node.path("containerd.sock"));
    let layout = node.layout(Some(&silent.path), Duration::from_millis(300));
    let mut scanner = scanner(layout, Duration::from_secs(120));

    let app = &layers[1];
    let moved = node.path("moved-away");
    let status = thread::scope(|s| {
        let pass = s.spawn(|| scanner.pass(true, true));
        silent.wait_for_connection();
        fs::rename(&app.dir, &moved).unwrap();
        pass.join().expect("the pass panicked")
    });
    assert_eq!(
        error_kinds(&status),
        BTreeSet::from(["vanished".to_string()])
    );
    assert!(status
        .scan
        .error_samples
        .iter()
        .any(|e| e.path == app.dir.display().to_string()));
    drop(silent);

    // The same directory is back with other content; the metadata never changed.
    fs::rename(&moved, &app.dir).unwrap();
    fill(&app.dir.join("opt/more"), 150, "more").unwrap();
    let again = scanner.pass(false, true);
    assert_eq!(again.scan.errors, 0, "{:?}", again.scan.error_samples);
    assert_eq!(
        again.scan.files,
        find_count(&app.dir),
        "only the layer that was not measured is walked"
    );
    assert_eq!(layer_figures(&again), du_layers(&[&layers[0], app]));
}

/// With a deadline that has passed before the walk starts, a pass returns
/// at once with deadline errors only, and the next pass walks the layers
/// again (the partial walk was not cached).
#[test]
fn a_passed_deadline_cuts_the_pass_and_caches_nothing() {
    let node = Node::new();
    let layers = node.layers(&["base", "app"], &[2000, 500]);
    let app = node.image(&layers[1], "demo/app:1");
    let (rw, logs) = node.container("web", &app, 50, 1);
    let all_entries: u64 = layers.iter().map(|l| find_count(&l.dir)).sum::<u64>()
        + find_count(&rw)
        + logs.len() as u64;

    let mut scanner = scanner(
        node.layout(None, Duration::from_secs(1)),
        Duration::from_nanos(1),
    );
    for _ in 0..2 {
        let started = Instant::now();
        let cut = scanner.pass(true, true);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(error_kinds(&cut), BTreeSet::from(["deadline".to_string()]));
        // Each directory root is left unlisted; each root (and each log
        // file) is one entry.
        let roots = (layers.len() + 1 + logs.len()) as u64;
        assert_eq!(cut.scan.errors, (layers.len() + 1) as u64);
        assert_eq!(cut.scan.files, roots);
        assert!(cut.scan.files < all_entries);
    }
}

/// A pass cut by the deadline, then one within it on the same scanner: the
/// second reports du's sizes, so nothing partial was kept from the first.
#[test]
fn after_a_deadline_the_next_pass_reports_whole_sizes() {
    let node = Node::new();
    let layers = node.layers(&["base", "app"], &[1500, 600]);
    node.image(&layers[1], "demo/app:1");
    let silent = SilentContainerd::new(node.path("containerd.sock"));
    // containerd's timeout (1s) outlasts the deadline (500ms): the first
    // pass starts walking after its deadline.
    let layout = node.layout(Some(&silent.path), Duration::from_secs(1));
    let mut scanner = scanner(layout, Duration::from_millis(500));

    let cut = scanner.pass(true, true);
    assert_eq!(error_kinds(&cut), BTreeSet::from(["deadline".to_string()]));
    let all: Vec<&Layer> = layers.iter().collect();
    assert_ne!(
        layer_figures(&cut),
        du_layers(&all),
        "the first pass was cut"
    );

    // containerd is gone now: the metadata is read at once and the walk
    // fits in the deadline.
    drop(silent);
    let whole = scanner.pass(true, true);
    assert_eq!(whole.scan.errors, 0, "{:?}", whole.scan.error_samples);
    let entries: u64 = layers.iter().map(|l| find_count(&l.dir)).sum();
    assert_eq!(whole.scan.files, entries);
    assert_eq!(layer_figures(&whole), du_layers(&all));
}

/// The settings `deploy/config.toml` ships (rescan 1m, resync 5m), with the
/// walker's threads capped for the test machine.
fn shipped() -> ScanSettings {
    ScanSettings {
        rescan_interval: Duration::from_secs(60),
        rescan_jitter: 0.1,
        resync_interval: Duration::from_secs(300),
        ..settings(Duration::from_secs(120))
    }
}

/// What a test holds of a [`run`]ning scanner: it wakes the scanner as an
/// event would, and stops it when dropped.
struct Controls {
    wake: Arc<Notify>,
    _stop: TriggerOnDrop,
}

/// Runs `scanner` on its own thread; every published document (with what
/// it came from and when) arrives on the returned channel.
fn run(scanner: Scanner) -> (Controls, mpsc::Receiver<(Pass, Status, Instant)>) {
    let wake = Arc::new(Notify::new());
    let shutdown = Shutdown::new();
    let controls = Controls {
        wake: Arc::clone(&wake),
        _stop: shutdown.trigger_on_drop(Reason::Terminate),
    };
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        scanner.run(&wake, &shutdown, |status, _kubelet, pass| {
            let _ = tx.send((pass, status.clone(), Instant::now()));
        })
    });
    (controls, rx)
}

/// The first published document for which `want` holds, within `within`.
fn first_where(
    rx: &mpsc::Receiver<(Pass, Status, Instant)>,
    within: Duration,
    want: impl Fn(&Status) -> bool,
) -> Option<(Pass, Status, Instant)> {
    let until = Instant::now() + within;
    while let Ok(got) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        if want(&got.1) {
            return Some(got);
        }
    }
    None
}

/// A node with one image, scanned by a [`run`]ning scanner on the shipped
/// intervals.
type Running = (Node, Controls, mpsc::Receiver<(Pass, Status, Instant)>);

fn one_image_node() -> Running {
    let node = Node::new();
    let layers = node.layers(&["base"], &[50]);
    node.image(&layers[0], "demo/base:1");
    let layout = node.layout(None, Duration::from_secs(1));
    let (controls, rx) = run(Scanner::new(layout, shipped(), runtime()));
    (node, controls, rx)
}

/// With the shipped intervals, a Docker download that starts between scans
/// is listed within a tick or two, as a pull of unknown size, and is gone
/// once its file is; the ticks in between walk nothing.
#[test]
fn a_docker_pull_is_seen_within_a_second_with_the_shipped_intervals() {
    let (node, _scanner, rx) = one_image_node();
    let (pass, first, _) = first_where(&rx, Duration::from_secs(10), |_| true).unwrap();
    assert_eq!((pass, first.pulls.len()), (Pass::Rescan, 0));
    // Nothing changes: the refreshed document comes after 10 s (PUBLISH_EVERY).
    let (pass, _, _) = first_where(&rx, Duration::from_secs(12), |_| true).unwrap();
    assert_eq!(pass, Pass::Refresh, "no pull, no rescan due: a refresh");

    let blob = node.docker.download("123456", 300_000).unwrap();
    let started = Instant::now();
    let (pass, seen, at) = first_where(&rx, Duration::from_secs(5), |s| !s.pulls.is_empty())
        .expect("the download should be listed");
    assert_eq!(pass, Pass::Reread);
    assert!(
        at - started < Duration::from_millis(2500),
        "seen after {:?}",
        at - started
    );
    let pull = &seen.pulls[0];
    assert_eq!(pull.runtime.as_str(), "docker");
    assert_eq!((pull.offset_bytes, pull.total_bytes), (300_000, 0));
    assert_eq!(
        seen.scan.files, 0,
        "a reread walks nothing already measured"
    );

    fs::remove_file(&blob).unwrap();
    assert!(
        first_where(&rx, Duration::from_secs(5), |s| s.pulls.is_empty()).is_some(),
        "the pull should end with its file"
    );
}

/// A containerd event (here, a wake) makes the next tick reread the
/// runtimes: a new image is listed at once, without waiting for the resync.
#[test]
fn a_change_is_read_at_once_with_the_shipped_intervals() {
    let (node, scanner, rx) = one_image_node();
    first_where(&rx, Duration::from_secs(10), |_| true).unwrap();
    let layers = node.layers(&["base", "app"], &[50, 20]);
    node.image(&layers[1], "demo/app:1");
    scanner.wake.notify_one();
    let (_, status, _) = first_where(&rx, Duration::from_secs(3), |s| s.images.len() == 2)
        .expect("the new image should be listed within a tick of the change");
    assert_eq!(status.layers.len(), 2);
}
