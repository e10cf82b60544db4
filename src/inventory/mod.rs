//! The node inventory: one scan from the runtimes' records to the status
//! document.
//!
//! Readers say what exists and where ([`crate::runtime`], [`crate::podlogs`]);
//! this module measures every named path once with the [`walk`]er (all in one
//! parallel batch), attributes the bytes ([`attribute`]) and judges each
//! filesystem against the kubelet's thresholds ([`signals`]).

pub mod attribute;
pub mod check_pull;
pub mod signals;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime};

use tokio::runtime::Handle;

use crate::kubelet::{self, KubeletConfig, KubeletSources};
use crate::layout::{NodeLayout, PathOrigin, PathSource};
use crate::model::{
    LayoutPath, LayoutReport, Pull, ReadFrom, RuntimeState, ScanErrorSample, ScanSummary, Signal,
    Source, Status, SCHEMA,
};
use crate::podlogs::{self, PodLogs};
use crate::predict::{self, history::History, pull::PullCost};
use crate::runtime::{
    self, Classified, Discovery, Problem, PullLayer, PullRecord, Reader, RuntimeKind,
};
use crate::volumes::{self, EmptyDir};
use crate::walk::{self, Walk, WalkOptions};

/// How many scan errors the document keeps with their paths.
const ERROR_SAMPLES: usize = 20;

/// What the readers found, before anything is measured.
#[derive(Debug, Clone)]
pub struct Discovered {
    /// One discovery per runtime that answered.
    pub discoveries: Vec<Discovery>,
    /// Which runtimes were found, and why the others were not.
    pub runtimes: Vec<RuntimeState>,
    /// Pod log files under the pod-logs root.
    pub pod_logs: Vec<PodLogs>,
    /// Pods' disk-backed emptyDir volumes under the kubelet root.
    pub empty_dirs: Vec<EmptyDir>,
    /// What the readers could not read.
    pub problems: Vec<Problem>,
    /// The kubelet's thresholds (its defaults when the file is missing or bad).
    pub kubelet: KubeletConfig,
    /// Where those come from: the file, or why its defaults apply.
    pub thresholds_source: String,
}

/// Reads the runtimes, pod logs and kubelet config: cheap, measures nothing.
/// containerd is asked on `runtime`, blocking on it: call this off the
/// runtime's threads.
pub fn discover(layout: &NodeLayout, runtime: &Handle) -> Discovered {
    let mut problems = Vec::new();
    let (discoveries, runtimes) = discover_runtimes(layout, runtime, &mut problems);
    let (pod_logs, log_problems) = podlogs::discover(&layout.pod_logs);
    let (empty_dirs, volume_problems) = volumes::discover(&layout.kubelet_root);
    problems.extend(discoveries.iter().flat_map(|d| d.problems.iter().cloned()));
    problems.extend(log_problems);
    problems.extend(volume_problems);
    problems.extend(layout.problems.iter().cloned());
    let (kubelet, thresholds_source) = load_kubelet(layout, &mut problems);
    Discovered {
        discoveries,
        runtimes,
        pod_logs,
        empty_dirs,
        problems,
        kubelet,
        thresholds_source,
    }
}

impl Discovered {
    /// Paths whose content never changes while they exist: committed image
    /// layers and content-store blobs. Measure once, keep the figure.
    pub fn immutable_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for d in &self.discoveries {
            paths.extend(d.layers.iter().map(|l| l.dir.clone()));
            paths.extend(d.blobs.iter().map(|b| b.path.clone()));
        }
        sorted(paths)
    }

    /// Whether some runtime has a pull in flight.
    pub fn pulling(&self) -> bool {
        self.discoveries.iter().any(|d| !d.pulls.is_empty())
    }

    /// The directories where the runtimes' pulls first write.
    pub fn pull_dirs(&self) -> impl Iterator<Item = PathBuf> + '_ {
        self.discoveries
            .iter()
            .flat_map(|d| d.pull_dirs.iter().cloned())
    }

    /// Paths that change while containers run: writable layers, logs and
    /// emptyDir volumes.
    pub fn mutable_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = Vec::new();
        for c in self.discoveries.iter().flat_map(|d| &d.containers) {
            paths.extend(c.writable_dir.iter().cloned());
            paths.extend(c.log_files.iter().cloned());
        }
        paths.extend(self.pod_logs.iter().flat_map(|l| l.files.iter().cloned()));
        paths.extend(self.empty_dirs.iter().map(|v| v.path.clone()));
        sorted(paths)
    }
}

fn sorted(mut paths: Vec<PathBuf>) -> Vec<PathBuf> {
    paths.sort();
    paths.dedup();
    paths
}

/// One scan of the node: the document, and the kubelet thresholds it was
/// judged by.
#[derive(Debug, Clone)]
pub struct Scanned {
    /// The status document.
    pub status: Status,
    /// The kubelet's thresholds (its defaults when its file could not be read).
    pub kubelet: KubeletConfig,
}

/// Scans the node described by `layout` once and builds the status document.
/// `progress` is told each phase as it starts (for a spinner on a terminal);
/// containerd is asked on `runtime` (see [`discover`]).
pub fn scan(
    layout: &NodeLayout,
    walk_opts: &WalkOptions,
    progress: &dyn Fn(&str),
    runtime: &Handle,
) -> Scanned {
    let started = Instant::now();
    progress("reading runtime metadata");
    let discovered = discover(layout, runtime);
    progress("measuring layers, containers and logs");
    let mut paths = discovered.immutable_paths();
    paths.extend(discovered.mutable_paths());
    let sizes = measure(sorted(paths), walk_opts);
    progress("reading filesystems");
    let summary = summarize(sizes.values(), started.elapsed().as_secs_f64());
    let size = |p: &Path| sizes.get(p).map(|w| w.usage);
    let origin = Origin {
        scan: summary,
        source: Source::Scan,
    };
    let status = build(layout, &discovered, &size, origin, &mut History::default());
    Scanned {
        status,
        kubelet: discovered.kubelet,
    }
}

/// How a document's figures were made.
#[derive(Debug, Clone)]
pub struct Origin {
    /// What the walks of this pass saw.
    pub scan: ScanSummary,
    /// Who made them.
    pub source: Source,
}

/// Attributes measured sizes (`size` of a path; `None` when it was not
/// measured), records the pass in `history` and judges the filesystems:
/// the model of the node.
pub fn build(
    layout: &NodeLayout,
    discovered: &Discovered,
    size: &dyn Fn(&Path) -> Option<crate::walk::Usage>,
    origin: Origin,
    history: &mut History,
) -> Status {
    let mut problems = discovered.problems.clone();
    let sized = |p: &Path| size(p).unwrap_or_default();
    let attributed = attribute::attribute(&discovered.discoveries, &discovered.pod_logs, &sized);
    let volumes = attribute::volumes(
        &discovered.empty_dirs,
        &discovered.discoveries,
        &discovered.pod_logs,
        &sized,
    );
    let kubelet = &discovered.kubelet;
    let image_root = imagefs_root(layout, &discovered.discoveries);
    let filesystems =
        signals::filesystems(&layout.kubelet_root, &image_root, kubelet, &mut problems);
    let now = SystemTime::now();
    history.observe(&attributed.images, now);
    let ratio = history.unpack_ratio(predict::pull::learned_ratio(&attributed.images));
    let in_flight = pulls(&discovered.discoveries, ratio);
    let pulls = in_flight.pulls;
    let pull_names: Vec<String> = pulls
        .iter()
        .map(|p| p.image.clone().unwrap_or_else(|| p.reference.clone()))
        .collect();
    let unknown_size = mountpoints(&in_flight.unsized_roots);
    // Pulls write into the image store: containerd's content and snapshots.
    let incoming = signals::Incoming {
        mountpoint: filesystems
            .iter()
            .find(|fs| fs.signal == Signal::Imagefs)
            .map(|fs| fs.mountpoint.as_str())
            .filter(|_| in_flight.incoming > 0),
        bytes: in_flight.incoming,
        // A pull in flight is sized by its blobs only: its files are unknown.
        inodes: 0,
        pulls: &pull_names,
        unknown_size: &unknown_size,
    };
    let judged = signals::judge(
        &filesystems,
        &attributed.images,
        &attributed.layers,
        kubelet,
        history,
        now,
        &incoming,
    );
    Status {
        schema: SCHEMA,
        node: crate::host::node_name(),
        generated_at: now,
        source: origin.source,
        thresholds_source: discovered.thresholds_source.clone(),
        thresholds_origin: kubelet.origin,
        layout: layout_report(layout, kubelet),
        filesystems,
        images: attributed.images,
        layers: attributed.layers,
        containers: attributed.containers,
        volumes,
        pulls,
        reclaimable_bytes: attributed
            .reclaimable
            .values()
            .fold(0, |a, b| a.saturating_add(*b)),
        reclaimable_by_runtime: attributed.reclaimable.clone(),
        image_gc: judged.image_gc,
        audit: None,
        prediction: judged.prediction,
        runtimes: discovered.runtimes.clone(),
        problems,
        scan: origin.scan,
    }
}

/// Between scans, with no pull in flight: the filesystems' free space read
/// again (one statvfs each) and the verdicts and image GC census redone on
/// the last inventory, with the trend `history` now shows. A filesystem that cannot be read
/// keeps its last figures (the next scan reports why).
pub fn refresh(status: &mut Status, kubelet: &KubeletConfig, history: &History) {
    for fs in &mut status.filesystems {
        if let Err(e) = signals::restat(fs, kubelet) {
            tracing::debug!(error = %e, "filesystem not refreshed");
        }
    }
    let judged = signals::judge(
        &status.filesystems,
        &status.images,
        &status.layers,
        kubelet,
        history,
        SystemTime::now(),
        &signals::Incoming::NONE,
    );
    status.prediction = judged.prediction;
    status.image_gc = judged.image_gc;
}

/// The pulls in flight and what they will still add.
#[derive(Debug, Default)]
struct InFlight {
    /// One report per pull.
    pulls: Vec<Pull>,
    /// Bytes the pulls of known size will still add to the image store.
    incoming: u64,
    /// Image roots that pulls of unknown size (Docker's) are filling.
    unsized_roots: Vec<PathBuf>,
}

/// The pulls in flight, and the bytes they will still add to the image
/// store: per layer not yet unpacked, what is left to download plus its
/// unpacked size estimated at the compressed-to-unpacked ratio the node's
/// images show. A layer several pulls share is added once. A pull none of
/// whose layers has a known size adds nothing here: it is judged by the
/// rate at which it fills its runtime's image root.
fn pulls(discoveries: &[Discovery], ratio: f64) -> InFlight {
    let mut added: HashSet<(&str, &str)> = HashSet::new();
    let mut out = InFlight::default();
    for d in discoveries {
        for record in &d.pulls {
            let mut pull = pull_of(record, d.runtime);
            if record.layers.iter().all(|l| l.compressed_bytes == 0) {
                out.unsized_roots.push(d.image_root.clone());
                out.pulls.push(pull);
                continue;
            }
            for layer in record.layers.iter().filter(|l| !l.unpacked) {
                let cost = PullCost::of(
                    layer.compressed_bytes,
                    layer.downloaded_bytes,
                    if layer.unpacks { ratio } else { 0.0 },
                );
                pull.unpack_bytes = pull.unpack_bytes.saturating_add(cost.unpack_bytes);
                if added.insert((&record.namespace, &layer.digest)) {
                    out.incoming = out.incoming.saturating_add(cost.total());
                }
            }
            out.pulls.push(pull);
        }
    }
    out.unsized_roots.dedup();
    out
}

/// The mount points of the filesystems holding `paths` (those that can be
/// told; a path that cannot is judged without its pull).
fn mountpoints(paths: &[PathBuf]) -> Vec<String> {
    paths
        .iter()
        .filter_map(|p| crate::host::filesystem_of(p).ok())
        .map(|fs| fs.mountpoint.display().to_string())
        .collect()
}

/// The report of one pull, its unpack estimate left to [`pulls`].
fn pull_of(record: &PullRecord, runtime: RuntimeKind) -> Pull {
    let waiting = || record.layers.iter().filter(|l| !l.unpacked);
    let total: u64 = waiting()
        .map(|l| l.compressed_bytes)
        .fold(0, u64::saturating_add);
    let offset: u64 = waiting()
        .map(|l| l.downloaded_bytes)
        .fold(0, u64::saturating_add);
    let count =
        |f: &dyn Fn(&PullLayer) -> bool| record.layers.iter().filter(|l| f(l)).count() as u64;
    let reference = match (&record.image, &record.manifest_digest, &record.ingest) {
        (Some(image), Some(m), _) if !image.contains('@') => format!("{image}@{m}"),
        (Some(image), Some(_), _) => image.clone(),
        (None, Some(m), _) => m.clone(),
        (_, None, ingest) => ingest.clone().unwrap_or_default(),
    };
    Pull {
        reference,
        offset_bytes: offset,
        total_bytes: total,
        namespace: record.namespace.clone(),
        image: record.image.clone(),
        manifest: record.manifest_digest.clone(),
        remaining_download_bytes: total.saturating_sub(offset),
        unpack_bytes: 0,
        layers_total: record.layers.len() as u64,
        layers_downloaded: count(&|l| {
            l.compressed_bytes > 0 && l.downloaded_bytes >= l.compressed_bytes
        }),
        layers_present: count(&|l| l.unpacked),
        runtime,
    }
}

/// Where the runtimes' pulls first write when the runtimes keep their
/// stores at the layout's roots (before they were read, or when one is down).
pub fn default_pull_dirs(layout: &NodeLayout) -> Vec<PathBuf> {
    runtime::ALL
        .iter()
        .flat_map(|kind| kind.runtime().default_pull_dirs(layout))
        .collect()
}

/// Reads every runtime; one that is absent is reported, not fatal, and
/// one that is there but cannot be read is a problem too.
fn discover_runtimes(
    layout: &NodeLayout,
    handle: &Handle,
    problems: &mut Vec<Problem>,
) -> (Vec<Discovery>, Vec<RuntimeState>) {
    let mut found = Vec::new();
    let mut states = Vec::new();
    for kind in runtime::ALL {
        let runtime = kind.runtime();
        let (image_root, message, read_from) = match runtime.discover(layout, handle) {
            Ok(read) => {
                let root = read.discovery.image_root.display().to_string();
                found.push(read.discovery);
                (Some(root), read.note, Some(read.from))
            }
            Err(err) => {
                problems.extend(err.problem(kind, runtime.location(layout)));
                (None, Some(err.to_string()), None)
            }
        };
        states.push(RuntimeState {
            runtime: kind,
            found: image_root.is_some(),
            location: runtime.location(layout).display().to_string(),
            image_root,
            message,
            answers: runtime
                .has_api()
                .then_some(read_from == Some(ReadFrom::Api)),
            read_from,
        });
    }
    (found, states)
}

/// The kubelet's thresholds from its config file, drop-ins and flags as the
/// layout names them, or its Linux defaults when a file cannot be used (a
/// problem says why), and where they came from, as the document's
/// `thresholds_source` says it: the files read (`a + b`), then the flags
/// (`flags --eviction-hard`), or `kubelet defaults (<config> <why>)`.
fn load_kubelet(layout: &NodeLayout, problems: &mut Vec<Problem>) -> (KubeletConfig, String) {
    let path = &layout.kubelet_config;
    let sources = KubeletSources {
        config: layout.kubelet_reads_config.then_some(path.as_path()),
        config_dir: layout.kubelet_config_dir.as_deref(),
        flags: &layout.kubelet_flags,
    };
    match kubelet::load_all(Path::new("/"), &sources) {
        Ok(config) => {
            let files: Vec<String> = config
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            let mut parts = Vec::new();
            if !files.is_empty() {
                parts.push(files.join(" + "));
            }
            if !config.flags.is_empty() {
                parts.push(format!("flags {}", config.flags.join(", ")));
            }
            if files.is_empty() && layout.kubelet_reads_config {
                parts.push(format!("kubelet defaults ({} not found)", path.display()));
            } else if files.is_empty() {
                parts.push("kubelet defaults (no config file)".to_string());
            }
            (config, parts.join("; "))
        }
        Err(err) => {
            problems.push(Reader::Kubelet.problem(
                err.kind(),
                path.display().to_string(),
                format!("{err}; using the kubelet's Linux defaults"),
            ));
            let source = format!("kubelet defaults ({} {})", path.display(), err.summary());
            (KubeletConfig::defaults(), source)
        }
    }
}

/// Where each layout path came from, and what the thresholds were read
/// from. A layout not resolved against the node (a library caller's) has
/// no record: its paths count as set, or default where they are.
fn layout_report(layout: &NodeLayout, kubelet: &KubeletConfig) -> LayoutReport {
    let d = NodeLayout::default();
    let mut keys: Vec<(&str, Option<&Path>, Option<&Path>)> = vec![
        (
            "docker_root",
            Some(&layout.docker_root),
            Some(&d.docker_root),
        ),
        (
            "containerd_address",
            Some(&layout.containerd_address),
            Some(&d.containerd_address),
        ),
        (
            "containerd_root",
            Some(&layout.containerd_root),
            Some(&d.containerd_root),
        ),
        (
            "containers_storage_conf",
            Some(&layout.containers_storage_conf),
            Some(&d.containers_storage_conf),
        ),
        (
            "kubelet_root",
            Some(&layout.kubelet_root),
            Some(&d.kubelet_root),
        ),
        (
            "kubelet_config",
            Some(&layout.kubelet_config),
            Some(&d.kubelet_config),
        ),
        ("pod_logs", Some(&layout.pod_logs), Some(&d.pod_logs)),
    ];
    keys.push((
        "kubelet_config_dir",
        layout.kubelet_config_dir.as_deref(),
        None,
    ));
    keys.push((
        "containers_storage_root",
        layout.containers_storage_root.as_deref(),
        None,
    ));
    let paths = keys
        .into_iter()
        .filter_map(|(key, path, default)| {
            let path = path?;
            let source = layout.sources.get(key).cloned().unwrap_or_else(|| {
                let origin = if Some(path) == default {
                    PathOrigin::Default
                } else {
                    PathOrigin::Setting
                };
                PathSource {
                    origin,
                    from: "not recorded".into(),
                }
            });
            Some(LayoutPath {
                key: key.to_string(),
                path: path.display().to_string(),
                origin: source.origin,
                from: source.from,
            })
        })
        .collect();
    LayoutReport {
        paths,
        kubelet_files: kubelet
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect(),
        kubelet_flags: kubelet.flags.clone(),
    }
}

/// The imagefs is the image store of the CRI runtime (see
/// [`runtime::cri_runtime`]); the preferred runtime's configured root when
/// none was read.
fn imagefs_root(layout: &NodeLayout, discoveries: &[Discovery]) -> PathBuf {
    let holds_images = |d: &Discovery| !d.images.is_empty() || !d.layers.is_empty();
    let cri = runtime::cri_runtime(discoveries.iter().map(|d| (d.runtime, holds_images(d))));
    match cri.and_then(|kind| discoveries.iter().find(|d| d.runtime == kind)) {
        Some(d) => d.image_root.clone(),
        None => {
            let preferred = runtime::cri_runtime(runtime::ALL.map(|kind| (kind, true)));
            preferred
                .unwrap_or_default()
                .runtime()
                .default_image_root(layout)
        }
    }
}

/// Walks every path (in one parallel batch) and keys the result by path.
pub fn measure(paths: Vec<PathBuf>, opts: &WalkOptions) -> HashMap<PathBuf, Walk> {
    let walks = walk::walk_many(&paths, opts);
    paths.into_iter().zip(walks).collect()
}

/// Totals and error samples over the walks of one pass.
pub fn summarize<'a>(walks: impl Iterator<Item = &'a Walk>, duration_seconds: f64) -> ScanSummary {
    let mut summary = ScanSummary {
        duration_seconds,
        ..ScanSummary::default()
    };
    for w in walks {
        summary.files += w.entries;
        for (kind, n) in &w.error_counts {
            summary.errors += n;
            *summary.errors_by_kind.entry(*kind).or_default() += n;
        }
        let room = ERROR_SAMPLES.saturating_sub(summary.error_samples.len());
        summary
            .error_samples
            .extend(w.errors.iter().take(room).map(|e| ScanErrorSample {
                path: e.path.display().to_string(),
                kind: e.kind,
                message: e.message.clone(),
            }));
        summary.skipped_mounts += w.skipped_mounts;
        let room = ERROR_SAMPLES.saturating_sub(summary.skipped_mount_samples.len());
        let mounts = w.skipped_mount_paths.iter().take(room);
        (summary.skipped_mount_samples).extend(mounts.map(|p| p.display().to_string()));
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Image;

    fn layer(digest: &str, compressed: u64, downloaded: u64, unpacked: bool) -> PullLayer {
        PullLayer {
            digest: digest.into(),
            compressed_bytes: compressed,
            downloaded_bytes: downloaded,
            chain_id: None,
            unpacked,
            unpacks: true,
        }
    }

    fn record(image: Option<&str>, manifest: Option<&str>, layers: Vec<PullLayer>) -> PullRecord {
        PullRecord {
            namespace: "k8s.io".into(),
            image: image.map(String::from),
            manifest_digest: manifest.map(String::from),
            ingest: None,
            layers,
        }
    }

    /// An image on the node teaching an unpack ratio of 3.
    fn learned_from() -> Image {
        Image {
            runtime: RuntimeKind::Containerd,
            namespace: "k8s.io".into(),
            id: "sha256:i".into(),
            disk_bytes: 3000,
            apparent_bytes: 3000,
            unique_disk_bytes: 3000,
            unique_apparent_bytes: 3000,
            content_bytes: 1000,
            unique_content_bytes: 1000,
            containers: 0,
            in_use: false,
            ..Image::default()
        }
    }

    /// The thresholds' source of a scan of an empty node whose kubelet config
    /// is `config` (written at `config.yaml` by `write`).
    fn thresholds_source_with(write: impl Fn(&Path)) -> (String, PathBuf) {
        let (status, path) = status_with(write, |_| {});
        (status.thresholds_source, path)
    }

    /// The document of a scan of an empty node whose kubelet config is
    /// written by `write`, its layout changed by `edit`.
    fn status_with(write: impl Fn(&Path), edit: impl Fn(&mut NodeLayout)) -> (Status, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubelet/config.yaml");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        write(&path);
        let layout = NodeLayout {
            docker_root: dir.path().join("docker"),
            containerd_address: dir.path().join("containerd.sock"),
            containerd_root: dir.path().join("containerd"),
            kubelet_root: dir.path().join("kubelet"),
            kubelet_config: path.clone(),
            pod_logs: dir.path().join("pods"),
            containers_storage_conf: dir.path().join("storage.conf"),
            containers_storage_root: Some(dir.path().join("containers-storage")),
            ..NodeLayout::default()
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut layout = layout;
        edit(&mut layout);
        let walk = WalkOptions::default();
        let status = scan(&layout, &walk, &|_| {}, runtime.handle()).status;
        (status, path)
    }

    #[test]
    fn the_document_says_which_files_and_flags_set_the_thresholds() {
        let (status, path) = status_with(
            |p| {
                std::fs::write(p, "imageGCHighThresholdPercent: 90\n").unwrap();
                let drop_ins = p.with_file_name("config.d");
                std::fs::create_dir(&drop_ins).unwrap();
                std::fs::write(
                    drop_ins.join("10-a.conf"),
                    "{\"imageGCLowThresholdPercent\": 50}",
                )
                .unwrap();
            },
            |layout| {
                layout.kubelet_config_dir = Some(layout.kubelet_config.with_file_name("config.d"));
                layout.kubelet_flags.eviction_hard = vec!["nodefs.available<1Gi".into()];
            },
        );
        let drop_in = path.with_file_name("config.d").join("10-a.conf");
        assert_eq!(
            status.thresholds_source,
            format!(
                "{} + {}; flags --eviction-hard",
                path.display(),
                drop_in.display()
            )
        );
        assert_eq!(status.thresholds_origin.label(), "flags");
        assert_eq!(status.layout.kubelet_flags, ["--eviction-hard"]);
        assert_eq!(status.layout.kubelet_files.len(), 2);
        let keys: Vec<(&str, PathOrigin)> = (status.layout.paths.iter())
            .map(|p| (p.key.as_str(), p.origin))
            .collect();
        // Not resolved against a node: set paths count as settings.
        assert_eq!(keys[0], ("docker_root", PathOrigin::Setting));
        assert_eq!(keys[3], ("containers_storage_conf", PathOrigin::Setting));
        assert_eq!(keys[7], ("kubelet_config_dir", PathOrigin::Setting));
        assert_eq!(keys[8], ("containers_storage_root", PathOrigin::Setting));
    }

    #[test]
    fn fault_the_thresholds_source_says_why_the_defaults_apply() {
        let (source, path) = thresholds_source_with(|_| {});
        assert_eq!(
            source,
            format!("kubelet defaults ({} not found)", path.display())
        );
        let (source, path) = thresholds_source_with(|p| {
            std::fs::write(p, "imageGCHighThresholdPercent: 101\n").unwrap();
        });
        assert_eq!(
            source,
            format!("kubelet defaults ({} invalid)", path.display())
        );
        let (source, path) = thresholds_source_with(|p| std::fs::create_dir(p).unwrap());
        assert_eq!(
            source,
            format!("kubelet defaults ({} unreadable)", path.display())
        );
        let (source, path) = thresholds_source_with(|p| {
            std::fs::write(p, "evictionHard: {}\n").unwrap();
        });
        assert_eq!(source, path.display().to_string());
    }

    #[test]
    fn pulls_cost_what_is_left_to_download_plus_the_unpacked_estimate() {
        let mut d = Discovery::new(RuntimeKind::Containerd, PathBuf::from("/s"));
        let mut lone = record(None, None, vec![layer("sha256:m", 500, 100, false)]);
        lone.ingest = Some("manifest-sha256:m".into());
        lone.layers[0].unpacks = false;
        d.pulls = vec![
            record(
                Some("reg/app"),
                Some("sha256:1"),
                vec![
                    layer("sha256:base", 900, 900, true),
                    layer("sha256:a", 1000, 400, false),
                    layer("sha256:b", 2000, 2000, false),
                ],
            ),
            // Shares layer a with the first: its bytes arrive once.
            record(
                None,
                Some("sha256:2"),
                vec![layer("sha256:a", 1000, 400, false)],
            ),
            lone,
        ];
        let in_flight = pulls(&[d], predict::pull::unpack_ratio(&[learned_from()]));
        let rows: Vec<_> = in_flight
            .pulls
            .iter()
            .map(|p| {
                (
                    p.reference.as_str(),
                    p.offset_bytes,
                    p.total_bytes,
                    p.remaining_download_bytes,
                    p.unpack_bytes,
                    (p.layers_total, p.layers_downloaded, p.layers_present),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                ("reg/app@sha256:1", 2400, 3000, 600, 9000, (3, 2, 1)),
                ("sha256:2", 400, 1000, 600, 3000, (1, 0, 0)),
                ("manifest-sha256:m", 100, 500, 400, 0, (1, 0, 0)),
            ]
        );
        // 600 + 9000 for the first, nothing more for layer a, 400 for the manifest.
        assert_eq!(in_flight.incoming, 600 + 9000 + 400);
        assert!(in_flight.unsized_roots.is_empty());
    }
}
