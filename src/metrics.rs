//! The `/metrics` document: the status snapshot as OpenMetrics text.
//!
//! [`encode`] builds a fresh [`Registry`] from one immutable [`Status`] and
//! renders it once per scan; the HTTP handler then serves the cached text, so
//! a scrape never waits for (or triggers) work. `docs/metrics.md` is the
//! contract (prefix `headroom_`, units in names; every name, type, unit and
//! label); `tests/contract.rs` fails when the two drift apart.
//!
//! Cardinality is bounded: only the `top_n` largest images (by disk bytes),
//! containers (by writable layer plus logs) and pulls (by bytes left) get
//! their own series; the rest are summed into one series labelled
//! `image="other"` / `container="other"` with every other label empty. That
//! series appears only when something was folded into it.
//!
//! `headroom_reclaimable_bytes` has one series per runtime found, from the
//! document's `reclaimable_by_runtime` (they add up to `reclaimable_bytes`).

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::hash::Hash;
use std::time::UNIX_EPOCH;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::{Registry, Unit};

use crate::audit::{AuditSummary, KINDS};
use crate::model::{
    Container, Filesystem, Image, Pull, ReadFrom, RuntimeState, ScanSummary, Signal, Status,
    ThresholdsOrigin, Volume,
};
use crate::runtime::{Problem, ProblemKind, Reader};
use crate::walk::ErrorKind;

/// The label value of the series that sums everything past the top N.
pub const OTHER: &str = "other";

/// Why the metrics text could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The text encoder failed (it only writes to a `String`, so this is a
    /// bug in a metric's encoding, not bad input).
    #[error("encoding the OpenMetrics text failed")]
    Encode(#[from] std::fmt::Error),
}

/// Counters the agent keeps across scans (the status document describes one
/// scan only), exported as OpenMetrics counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanTotals {
    /// Directory entries walked, all scans together.
    pub files: u64,
    /// Entries that could not be examined, by kind, all scans together.
    pub errors: BTreeMap<ErrorKind, u64>,
    /// Scans completed: passes that measured every mutable path again.
    pub scans: u64,
}

impl ScanTotals {
    /// Adds what one pass walked to the totals; it counts as a scan when it
    /// measured every mutable path again (`rescan`), not when it only read
    /// the runtimes again and measured what was new.
    pub fn record(&mut self, scan: &ScanSummary, rescan: bool) {
        self.files = self.files.saturating_add(scan.files);
        for (kind, n) in &scan.errors_by_kind {
            let total = self.errors.entry(*kind).or_default();
            *total = total.saturating_add(*n);
        }
        if rescan {
            self.scans = self.scans.saturating_add(1);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SignalLabels {
    signal: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProjectionLabels {
    signal: String,
    /// `pull` (once the pulls in flight land) or `gc` (and after image GC).
    after: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FilesystemLabels {
    signal: String,
    mountpoint: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RuntimeLabels {
    runtime: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReadFromLabels {
    runtime: String,
    from: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OriginLabels {
    origin: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImageLabels {
    runtime: String,
    containerd_namespace: String,
    image: String,
}

/// An image's series of one kind of waste.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ImageWasteLabels {
    #[prometheus(flatten)]
    image: ImageLabels,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerLabels {
    runtime: String,
    containerd_namespace: String,
    namespace: String,
    pod: String,
    container: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PullLabels {
    image: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProblemLabels {
    kind: String,
    reader: String,
}

/// Renders `status` and `totals` as OpenMetrics text (ending in `# EOF`),
/// with at most `top_n` image, container and pull series each (plus one
/// `other` series apiece).
pub fn encode(status: &Status, totals: &ScanTotals, top_n: usize) -> Result<String, MetricsError> {
    let node = (Cow::Borrowed("node"), Cow::Owned(status.node.clone()));
    let mut registry = Registry::with_prefix_and_labels("headroom", std::iter::once(node));
    filesystems(&mut registry, status);
    thresholds_origin(&mut registry, status);
    images(&mut registry, &status.images, top_n);
    containers(&mut registry, &status.containers, top_n);
    volumes(&mut registry, &status.volumes, top_n);
    pulls(&mut registry, &status.pulls, top_n);
    if let Some(summary) = &status.audit {
        audit(&mut registry, summary, top_n);
    }
    verdicts(&mut registry, status);
    scans(&mut registry, status, totals);
    registry.register(
        "build",
        "The headroom version serving these metrics",
        Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
    );
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

fn filesystems(registry: &mut Registry, status: &Status) {
    let fs = &status.filesystems;
    let per_mount = |value: fn(&Filesystem) -> u64| {
        fs.iter().map(move |f| {
            let labels = FilesystemLabels {
                signal: f.signal.as_str().to_string(),
                mountpoint: f.mountpoint.clone(),
            };
            (labels, gauge(value(f)))
        })
    };
    let per_signal = |value: fn(&Filesystem) -> i64| {
        fs.iter().map(move |f| {
            let labels = SignalLabels {
                signal: f.signal.as_str().to_string(),
            };
            (labels, value(f))
        })
    };
    register_gauges(
        registry,
        "filesystem_capacity",
        "Size of the filesystem behind a kubelet disk signal",
        Some(Unit::Bytes),
        per_mount(|f| f.capacity_bytes),
    );
    register_gauges(
        registry,
        "filesystem_available",
        "Bytes available to unprivileged users (f_bavail), as the kubelet sees",
        Some(Unit::Bytes),
        per_mount(|f| f.available_bytes),
    );
    register_gauges(
        registry,
        "filesystem_inodes",
        "Total inodes of the filesystem behind a kubelet disk signal",
        None,
        per_mount(|f| f.inodes),
    );
    register_gauges(
        registry,
        "filesystem_inodes_free",
        "Free inodes of the filesystem behind a kubelet disk signal",
        None,
        per_mount(|f| f.inodes_free),
    );
    register_gauges(
        registry,
        "eviction_threshold",
        "The kubelet's hard eviction threshold for <signal>.available",
        Some(Unit::Bytes),
        per_signal(|f| gauge(f.threshold_bytes)),
    );
    register_gauges(
        registry,
        "eviction_threshold_inodes",
        "The kubelet's hard eviction threshold for <signal>.inodesFree",
        None,
        per_signal(|f| gauge(f.threshold_inodes)),
    );
    register_gauges(
        registry,
        "filesystem_bytes_left",
        "Available bytes minus the eviction threshold; negative once crossed",
        None,
        per_signal(|f| f.bytes_left),
    );
}

/// `headroom_kubelet_thresholds_origin{origin}`: 1 for where the thresholds
/// came from, 0 for the others, so an alert can catch `defaults` (nothing
/// of the kubelet's was readable) without waiting for a series to appear.
fn thresholds_origin(registry: &mut Registry, status: &Status) {
    register_gauges(
        registry,
        "kubelet_thresholds_origin",
        "1 for where the kubelet's thresholds came from (flags, config or defaults: nothing readable), 0 for the others",
        None,
        ThresholdsOrigin::ALL.map(|origin| {
            let labels = OriginLabels {
                origin: origin.label().to_string(),
            };
            (labels, i64::from(status.thresholds_origin == origin))
        }),
    );
}

fn images(registry: &mut Registry, images: &[Image], top_n: usize) {
    let other = ImageLabels {
        runtime: String::new(),
        containerd_namespace: String::new(),
        image: OTHER.to_string(),
    };
    let rows = fold_top(
        images,
        top_n,
        |i| i.disk_bytes,
        |i| ImageLabels {
            runtime: i.runtime.as_str().to_string(),
            containerd_namespace: i.namespace.clone(),
            image: i.name(),
        },
        other,
        |i| [i.disk_bytes, i.unique_disk_bytes, i.content_bytes],
    );
    let column = |n: usize| rows.iter().map(move |(l, v)| (l.clone(), gauge(v[n])));
    register_gauges(
        registry,
        "image_size",
        "Unpacked size of an image's layers on disk",
        Some(Unit::Bytes),
        column(0),
    );
    register_gauges(
        registry,
        "image_unique",
        "Disk bytes of an image's layers that no other image uses",
        Some(Unit::Bytes),
        column(1),
    );
    register_gauges(
        registry,
        "image_content",
        "Disk bytes of the content-store blobs (compressed layers) an image references",
        Some(Unit::Bytes),
        column(2),
    );
}

/// The layer audit: the `top_n` most wasteful images by kind (the rest
/// summed as `other`), the node's totals by kind, and how far it got.
fn audit(registry: &mut Registry, summary: &AuditSummary, top_n: usize) {
    let other = ImageLabels {
        runtime: String::new(),
        containerd_namespace: String::new(),
        image: OTHER.to_string(),
    };
    let by_kind =
        |m: &BTreeMap<String, u64>| KINDS.map(|k| m.get(k.as_str()).copied().unwrap_or(0));
    let rows = fold_top(
        &summary.per_image,
        top_n,
        |i| i.wasted_bytes,
        |i| ImageLabels {
            runtime: i.runtime.as_str().to_string(),
            containerd_namespace: i.namespace.clone(),
            image: i.image.clone(),
        },
        other,
        |i| by_kind(&i.by_kind),
    );
    let samples = rows.iter().flat_map(|(labels, values)| {
        KINDS.iter().zip(values).map(|(kind, v)| {
            let labels = ImageWasteLabels {
                image: labels.clone(),
                kind: kind.as_str().to_string(),
            };
            (labels, gauge(*v))
        })
    });
    register_gauges(
        registry,
        "image_wasted",
        "Bytes an image ships that its final filesystem does not need, by kind (docs/audit.md)",
        Some(Unit::Bytes),
        samples,
    );
    let node = KINDS
        .iter()
        .zip(by_kind(&summary.by_kind))
        .map(|(kind, v)| {
            let labels = KindLabels {
                kind: kind.as_str().to_string(),
            };
            (labels, gauge(v))
        });
    register_gauges(
        registry,
        "wasted",
        "The node's wasted image bytes by kind, a layer shared by images counted once",
        Some(Unit::Bytes),
        node,
    );
    let states = [("audited", summary.images), ("pending", summary.pending)].map(|(state, n)| {
        let labels = StateLabels {
            state: state.to_string(),
        };
        (labels, gauge(n))
    });
    register_gauges(
        registry,
        "audit_images",
        "Images the layer audit has covered, and those it has not yet",
        None,
        states,
    );
}

fn containers(registry: &mut Registry, containers: &[Container], top_n: usize) {
    let other = ContainerLabels {
        runtime: String::new(),
        containerd_namespace: String::new(),
        namespace: String::new(),
        pod: String::new(),
        container: OTHER.to_string(),
    };
    let rows = fold_top(
        containers,
        top_n,
        |c| c.writable_disk_bytes.saturating_add(c.log_bytes),
        |c| ContainerLabels {
            runtime: c.runtime_name().to_string(),
            containerd_namespace: c.namespace.clone(),
            namespace: c.pod_namespace.clone().unwrap_or_default(),
            pod: c.pod.clone().unwrap_or_default(),
            container: c.display_name(),
        },
        other,
        |c| [c.writable_disk_bytes, c.log_bytes],
    );
    let column = |n: usize| rows.iter().map(move |(l, v)| (l.clone(), gauge(v[n])));
    register_gauges(
        registry,
        "container_writable",
        "Disk bytes of a container's writable layer",
        Some(Unit::Bytes),
        column(0),
    );
    register_gauges(
        registry,
        "container_log",
        "Disk bytes of a container's log files (runtime and pod logs)",
        Some(Unit::Bytes),
        column(1),
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VolumeLabels {
    namespace: String,
    pod: String,
    pod_uid: String,
    volume: String,
}

fn volumes(registry: &mut Registry, volumes: &[Volume], top_n: usize) {
    let other = VolumeLabels {
        namespace: String::new(),
        pod: String::new(),
        pod_uid: String::new(),
        volume: OTHER.to_string(),
    };
    let rows = fold_top(
        volumes,
        top_n,
        |v| v.disk_bytes,
        |v| VolumeLabels {
            namespace: v.pod_namespace.clone().unwrap_or_default(),
            pod: v.pod.clone().unwrap_or_default(),
            pod_uid: v.pod_uid.clone(),
            volume: v.name.clone(),
        },
        other,
        |v| [v.disk_bytes],
    );
    register_gauges(
        registry,
        "emptydir",
        "Disk bytes of a pod's emptyDir volume",
        Some(Unit::Bytes),
        rows.into_iter().map(|(l, [bytes])| (l, gauge(bytes))),
    );
}

/// Pulls whose total is unknown have no series: their bytes left are unknown.
fn pulls(registry: &mut Registry, pulls: &[Pull], top_n: usize) {
    let known: Vec<&Pull> = pulls.iter().filter(|p| p.total_bytes > 0).collect();
    let remaining = |p: &&Pull| p.total_bytes.saturating_sub(p.offset_bytes);
    let rows = fold_top(
        &known,
        top_n,
        remaining,
        |p| PullLabels {
            image: p.reference.clone(),
        },
        PullLabels {
            image: OTHER.to_string(),
        },
        |p| [remaining(p)],
    );
    register_gauges(
        registry,
        "pull_remaining",
        "Bytes an image pull in flight still has to download",
        Some(Unit::Bytes),
        rows.into_iter().map(|(l, [v])| (l, gauge(v))),
    );
}

fn verdicts(registry: &mut Registry, status: &Status) {
    let signal = |s: &Signal| SignalLabels {
        signal: s.as_str().to_string(),
    };
    register_gauges(
        registry,
        "pressure_predicted",
        "1 when DiskPressure is reached or predicted for the signal, else 0",
        None,
        status
            .prediction
            .iter()
            .map(|(s, p)| (signal(s), i64::from(p.predicted))),
    );
    register_gauges(
        registry,
        "projected_available",
        "Available bytes projected once the pulls in flight land (after=pull) and after one image GC pass (after=gc)",
        Some(Unit::Bytes),
        status.prediction.iter().flat_map(|(s, p)| {
            let at = |after: &str| ProjectionLabels {
                signal: s.as_str().to_string(),
                after: after.to_string(),
            };
            [
                (at("pull"), p.projected_available_after_pull),
                (at("gc"), p.projected_available_after_gc),
            ]
        }),
    );
    register_gauges(
        registry,
        "seconds_until_pressure",
        "Seconds until the signal's threshold is crossed (absent when no trend is known)",
        // docs/metrics.md's name leads with its unit, so no `_seconds` suffix here.
        None,
        status
            .prediction
            .iter()
            .filter_map(|(s, p)| Some((signal(s), gauge(p.seconds_until?)))),
    );
    register_gauges(
        registry,
        "reclaimable",
        "Bytes that removing every unused, unpinned image would really free",
        Some(Unit::Bytes),
        status
            .reclaimable_by_runtime
            .iter()
            .map(|(runtime, bytes)| {
                let labels = RuntimeLabels {
                    runtime: runtime.as_str().to_string(),
                };
                (labels, gauge(*bytes))
            }),
    );
    runtimes(registry, &status.runtimes);
    problems(registry, &status.problems);
}

/// `headroom_runtime_up{runtime}` and `headroom_runtime_read_from{runtime,from}`:
/// whether each runtime's figures are live, and where they came from (both
/// `from` series present per runtime, 0 or 1), so a containerd whose API is
/// down while its files still give figures shows as up 0, files 1.
fn runtimes(registry: &mut Registry, runtimes: &[RuntimeState]) {
    let name = |r: &RuntimeState| r.runtime.as_str().to_string();
    register_gauges(
        registry,
        "runtime_up",
        "1 when the runtime's API answered (for Docker, read only from its files: when its store was read), else 0",
        None,
        runtimes
            .iter()
            .map(|r| (RuntimeLabels { runtime: name(r) }, i64::from(r.up()))),
    );
    register_gauges(
        registry,
        "runtime_read_from",
        "1 for where the runtime's figures came from in the last pass (api or files), 0 for the other; both 0 when it was not read",
        None,
        runtimes.iter().flat_map(|r| {
            ReadFrom::ALL.map(|from| {
                let labels = ReadFromLabels {
                    runtime: name(r),
                    from: from.as_str().to_string(),
                };
                (labels, i64::from(r.read_from == Some(from)))
            })
        }),
    );
}

/// `headroom_problems{kind,reader}`: the last scan's problems of each kind
/// met by each reader. Every (kind, reader) pair has a series, 0 when
/// clean, so the family is never absent and its shape never changes:
/// `sum(headroom_problems) > 0` alerts on any problem and a series going
/// from 0 to n is a plain change, with no `increase()` over a series that
/// appears only with its first problem.
fn problems(registry: &mut Registry, problems: &[Problem]) {
    let labels = |kind: ProblemKind, reader: Reader| ProblemLabels {
        kind: kind.as_str().to_string(),
        reader: reader.as_str().to_string(),
    };
    let zeros = ProblemKind::ALL
        .into_iter()
        .flat_map(|kind| Reader::all().map(move |reader| (labels(kind, reader), 0)));
    let found = problems.iter().map(|p| (labels(p.kind, p.reader), 1));
    register_gauges(
        registry,
        "problems",
        "Things a reader could not read in the last scan, by kind and reader",
        None,
        zeros.chain(found),
    );
}

fn scans(registry: &mut Registry, status: &Status, totals: &ScanTotals) {
    let duration = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
    duration.set(status.scan.duration_seconds);
    registry.register_with_unit(
        "scan_duration",
        "Wall time of the last scan",
        Unit::Seconds,
        duration,
    );
    // Lets alerts catch a stuck scanner: time() - this grows without bound.
    {
        let secs = status
            .generated_at
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let stamp = Gauge::<i64>::default();
        stamp.set(gauge(secs));
        registry.register_with_unit(
            "scan_timestamp",
            "When the last scan's document was made, in seconds since the epoch",
            Unit::Seconds,
            stamp,
        );
    }
    registry.register(
        "scan_files",
        "Directory entries examined, all scans",
        counter(totals.files),
    );
    let errors = Family::<KindLabels, Counter>::default();
    // Every kind exists from the first scrape, at 0, so rate() and
    // increase() work before the first error (and the family is never absent).
    for kind in ErrorKind::ALL {
        let labels = KindLabels {
            kind: kind.as_str().to_string(),
        };
        let n = totals.errors.get(&kind).copied().unwrap_or(0);
        errors.get_or_create(&labels).inc_by(n);
    }
    registry.register(
        "scan_errors",
        "Entries that could not be examined, by kind, all scans",
        errors,
    );
    registry.register(
        "scans",
        "Scans completed (passes that measured every writable layer, log and emptyDir again)",
        counter(totals.scans),
    );
}

/// Registers a gauge family with one series per distinct label set; samples
/// with the same labels (two exited containers of one pod, say) add up.
fn register_gauges<L>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: impl IntoIterator<Item = (L, i64)>,
) where
    L: Clone + std::fmt::Debug + Hash + Eq + EncodeLabelSet + Send + Sync + 'static,
{
    let family = Family::<L, Gauge>::default();
    for (labels, value) in samples {
        family.get_or_create(&labels).inc_by(value);
    }
    match unit {
        Some(unit) => registry.register_with_unit(name, help, unit, family),
        None => registry.register(name, help, family),
    }
}

/// The `top_n` largest `items` by `rank` with their own labels and values,
/// then (if anything is left) one `other` row holding the sum of the rest.
fn fold_top<T, L, const N: usize>(
    items: &[T],
    top_n: usize,
    rank: impl Fn(&T) -> u64,
    labels: impl Fn(&T) -> L,
    other: L,
    values: impl Fn(&T) -> [u64; N],
) -> Vec<(L, [u64; N])> {
    let mut sorted: Vec<&T> = items.iter().collect();
    // Stable, so equal sizes keep the document's order.
    sorted.sort_by_key(|t| std::cmp::Reverse(rank(t)));
    let rest = sorted.split_off(top_n.min(sorted.len()));
    let mut rows: Vec<(L, [u64; N])> = sorted.into_iter().map(|t| (labels(t), values(t))).collect();
    if !rest.is_empty() {
        let mut sum = [0u64; N];
        for t in rest {
            for (s, v) in sum.iter_mut().zip(values(t)) {
                *s = s.saturating_add(v);
            }
        }
        rows.push((other, sum));
    }
    rows
}

/// A byte or inode count as a gauge value (saturating: no node is 8 EiB).
fn gauge(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn counter(value: u64) -> Counter {
    let c = Counter::default();
    c.inc_by(value);
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Prediction, RuntimeState, ScanErrorSample, Source, State};
    use crate::runtime::RuntimeKind;

    fn filesystem(signal: Signal, mountpoint: &str, available: u64, threshold: u64) -> Filesystem {
        Filesystem {
            signal,
            path: format!("{mountpoint}/lib"),
            mountpoint: mountpoint.into(),
            fstype: "ext4".into(),
            capacity_bytes: 100_000_000_000,
            available_bytes: available,
            inodes: 6_000_000,
            inodes_free: 5_000_000,
            threshold_bytes: threshold,
            threshold_inodes: 300_000,
            bytes_left: available as i64 - threshold as i64,
            inodes_left: 4_700_000,
        }
    }

    fn image(refs: &[&str], id: &str, disk: u64) -> Image {
        Image {
            runtime: RuntimeKind::Containerd,
            namespace: "k8s.io".into(),
            id: id.into(),
            refs: refs.iter().map(|r| r.to_string()).collect(),
            disk_bytes: disk,
            apparent_bytes: disk - 1,
            unique_disk_bytes: disk / 2,
            unique_apparent_bytes: disk / 2,
            shared_disk_bytes: disk - disk / 2,
            shared_apparent_bytes: disk - disk / 2 - 1,
            content_bytes: disk / 3,
            unique_content_bytes: disk / 3,
            containers: 1,
            in_use: true,
            layers: Vec::new(),
            ..Image::default()
        }
    }

    fn container(name: &str, pod: Option<&str>, writable: u64, logs: u64) -> Container {
        Container {
            runtime: Some(RuntimeKind::Containerd),
            namespace: "k8s.io".into(),
            id: "0123456789abcdef0123".into(),
            name: name.into(),
            image: "docker.io/library/nginx:1.25".into(),
            pod: pod.map(String::from),
            pod_namespace: pod.map(|_| "default".to_string()),
            writable_path: None,
            writable_disk_bytes: writable,
            writable_apparent_bytes: writable,
            log_bytes: logs,
        }
    }

    fn prediction(predicted: bool, seconds_until: Option<u64>) -> Prediction {
        Prediction {
            predicted,
            state: if predicted {
                State::Pressure
            } else {
                State::Ok
            },
            seconds_until,
            projected_available_after_pull: 0,
            projected_available_after_gc: 0,
            reason: "because".into(),
        }
    }

    fn status() -> Status {
        Status {
            schema: crate::model::SCHEMA,
            node: "node-1".into(),
            generated_at: humantime::parse_rfc3339("2026-05-01T12:00:00Z").unwrap(),
            source: Source::Scan,
            thresholds_source: "/var/lib/kubelet/config.yaml".into(),
            thresholds_origin: ThresholdsOrigin::Config,
            layout: Default::default(),
            filesystems: vec![
                filesystem(Signal::Nodefs, "/", 20_000_000_000, 10_000_000_000),
                filesystem(
                    Signal::Imagefs,
                    "/var/lib/containerd",
                    1_000,
                    15_000_000_000,
                ),
            ],
            images: vec![
                image(
                    &["docker.io/library/nginx:1.25"],
                    "sha256:aaaa",
                    180_000_000,
                ),
                image(&[], "sha256:0123456789abcdef", 60_000_000),
            ],
            layers: Vec::new(),
            containers: vec![
                container("web", Some("web-0"), 4096, 8192),
                container("", None, 0, 512),
            ],
            volumes: vec![Volume {
                kind: "emptyDir".into(),
                pod_uid: "u1".into(),
                pod: Some("web-0".into()),
                pod_namespace: Some("shop".into()),
                name: "cache".into(),
                path: "/var/lib/kubelet/pods/u1/volumes/kubernetes.io~empty-dir/cache".into(),
                disk_bytes: 4096,
                apparent_bytes: 10,
            }],
            pulls: vec![
                Pull {
                    reference: "layer-sha256:beef".into(),
                    offset_bytes: 300,
                    total_bytes: 1000,
                    ..Pull::default()
                },
                Pull {
                    reference: "unknown-total".into(),
                    offset_bytes: 5,
                    total_bytes: 0,
                    ..Pull::default()
                },
            ],
            reclaimable_bytes: 42_000,
            reclaimable_by_runtime: [
                (RuntimeKind::Containerd, 40_000),
                (RuntimeKind::Docker, 2_000),
            ]
            .into(),
            image_gc: Some(crate::model::GcCensus {
                in_use: 2,
                min_age: std::time::Duration::from_secs(120),
                ..Default::default()
            }),
            audit: Some(audit_summary()),
            prediction: BTreeMap::from([
                (Signal::Imagefs, prediction(true, Some(0))),
                (Signal::Nodefs, prediction(false, None)),
            ]),
            runtimes: vec![
                RuntimeState {
                    runtime: RuntimeKind::Containerd,
                    found: true,
                    location: "/run/containerd/containerd.sock".into(),
                    image_root: Some("/var/lib/containerd".into()),
                    message: None,
                    answers: Some(true),
                    read_from: Some(ReadFrom::Api),
                },
                RuntimeState {
                    runtime: RuntimeKind::Docker,
                    found: false,
                    location: "/var/lib/docker".into(),
                    image_root: None,
                    message: Some("not found".into()),
                    answers: None,
                    read_from: None,
                },
            ],
            problems: vec![
                Reader::Runtime(RuntimeKind::Docker).problem(ProblemKind::Malformed, "/x", "bad"),
                Reader::Runtime(RuntimeKind::Docker).problem(ProblemKind::Malformed, "/y", "bad"),
                Reader::PodLogs.problem(ProblemKind::Unreadable, "/z", "denied"),
            ],
            scan: ScanSummary {
                files: 10,
                errors: 1,
                errors_by_kind: BTreeMap::from([(ErrorKind::Denied, 1)]),
                error_samples: vec![ScanErrorSample {
                    path: "/x".into(),
                    kind: ErrorKind::Denied,
                    message: "permission denied".into(),
                }],
                duration_seconds: 1.5,
                ..ScanSummary::default()
            },
        }
    }

    fn totals() -> ScanTotals {
        ScanTotals {
            files: 1234,
            errors: BTreeMap::from([(ErrorKind::Denied, 2), (ErrorKind::Vanished, 7)]),
            scans: 3,
        }
    }

    /// The value of the sample line that starts with `series` (name and
    /// labels exactly as encoded), if there is one.
    fn audit_summary() -> AuditSummary {
        let image = |name: &str, hidden: u64, cache: u64| crate::audit::ImageWaste {
            runtime: RuntimeKind::Docker,
            namespace: String::new(),
            image: name.into(),
            by_kind: BTreeMap::from([("hidden".into(), hidden), ("cache".into(), cache)]),
            wasted_bytes: hidden + cache,
        };
        AuditSummary {
            images: 3,
            pending: 1,
            wasted_bytes: 700,
            by_kind: BTreeMap::from([("hidden".into(), 600), ("cache".into(), 100)]),
            per_image: vec![
                image("a:1", 500, 0),
                image("b:1", 0, 100),
                image("c:1", 100, 0),
            ],
        }
    }

    #[test]
    fn the_audit_folds_images_past_top_n_and_keeps_every_kind() {
        let text = encode(&status(), &ScanTotals::default(), 1).unwrap();
        let got = samples(&text, "headroom_image_wasted_bytes");
        assert_eq!(
            got.len(),
            2 * 5,
            "a:1 and other, each of the five kinds: {got:?}"
        );
        let a =
            r#"{node="node-1",runtime="docker",containerd_namespace="",image="a:1",kind="hidden"}"#;
        let other =
            r#"{node="node-1",runtime="",containerd_namespace="",image="other",kind="cache"}"#;
        assert!(
            got.contains(&(a, 500)) && got.contains(&(other, 100)),
            "{got:?}"
        );
        let node = samples(&text, "headroom_wasted_bytes");
        assert!(
            node.contains(&(r#"{node="node-1",kind="hidden"}"#, 600)),
            "{node:?}"
        );
        assert!(
            node.contains(&(r#"{node="node-1",kind="duplicate"}"#, 0)),
            "{node:?}"
        );
        let mut states = samples(&text, "headroom_audit_images");
        states.sort();
        assert_eq!(
            states,
            vec![
                (r#"{node="node-1",state="audited"}"#, 3),
                (r#"{node="node-1",state="pending"}"#, 1)
            ]
        );
        let mut none = status();
        none.audit = None;
        let text = encode(&none, &ScanTotals::default(), 1).unwrap();
        assert!(!text.contains("wasted"), "no audit, no series");
    }

    fn sample(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ').map(String::from))
    }

    /// Every sample of `name` as (label text, value).
    fn samples<'a>(text: &'a str, name: &str) -> Vec<(&'a str, i64)> {
        text.lines()
            .filter_map(|l| {
                let rest = l.strip_prefix(name)?;
                let (labels, value) = rest.rsplit_once(' ')?;
                Some((labels, value.parse().ok()?))
            })
            .collect()
    }

    #[test]
    fn names_labels_and_values() {
        let text = encode(&status(), &totals(), 10).unwrap();
        let expect = [
            (
                r#"headroom_filesystem_capacity_bytes{node="node-1",signal="nodefs",mountpoint="/"}"#,
                "100000000000",
            ),
            (
                r#"headroom_filesystem_available_bytes{node="node-1",signal="imagefs",mountpoint="/var/lib/containerd"}"#,
                "1000",
            ),
            (
                r#"headroom_filesystem_inodes{node="node-1",signal="nodefs",mountpoint="/"}"#,
                "6000000",
            ),
            (
                r#"headroom_filesystem_inodes_free{node="node-1",signal="nodefs",mountpoint="/"}"#,
                "5000000",
            ),
            (
                r#"headroom_eviction_threshold_bytes{node="node-1",signal="nodefs"}"#,
                "10000000000",
            ),
            (
                r#"headroom_eviction_threshold_inodes{node="node-1",signal="nodefs"}"#,
                "300000",
            ),
            (
                r#"headroom_filesystem_bytes_left{node="node-1",signal="imagefs"}"#,
                "-14999999000",
            ),
            (
                r#"headroom_image_size_bytes{node="node-1",runtime="containerd",containerd_namespace="k8s.io",image="docker.io/library/nginx:1.25"}"#,
                "180000000",
            ),
            (
                r#"headroom_image_unique_bytes{node="node-1",runtime="containerd",containerd_namespace="k8s.io",image="0123456789ab"}"#,
                "30000000",
            ),
            (
                r#"headroom_image_content_bytes{node="node-1",runtime="containerd",containerd_namespace="k8s.io",image="0123456789ab"}"#,
                "20000000",
            ),
            (
                r#"headroom_container_writable_bytes{node="node-1",runtime="containerd",containerd_namespace="k8s.io",namespace="default",pod="web-0",container="web"}"#,
                "4096",
            ),
            (
                r#"headroom_container_log_bytes{node="node-1",runtime="containerd",containerd_namespace="k8s.io",namespace="",pod="",container="0123456789ab"}"#,
                "512",
            ),
            (
                r#"headroom_pull_remaining_bytes{node="node-1",image="layer-sha256:beef"}"#,
                "700",
            ),
            (
                r#"headroom_pressure_predicted{node="node-1",signal="imagefs"}"#,
                "1",
            ),
            (
                r#"headroom_pressure_predicted{node="node-1",signal="nodefs"}"#,
                "0",
            ),
            (
                r#"headroom_seconds_until_pressure{node="node-1",signal="imagefs"}"#,
                "0",
            ),
            (
                r#"headroom_reclaimable_bytes{node="node-1",runtime="containerd"}"#,
                "40000",
            ),
            (
                r#"headroom_reclaimable_bytes{node="node-1",runtime="docker"}"#,
                "2000",
            ),
            (
                r#"headroom_runtime_up{node="node-1",runtime="containerd"}"#,
                "1",
            ),
            (
                r#"headroom_runtime_up{node="node-1",runtime="docker"}"#,
                "0",
            ),
            (
                r#"headroom_runtime_read_from{node="node-1",runtime="containerd",from="api"}"#,
                "1",
            ),
            (
                r#"headroom_runtime_read_from{node="node-1",runtime="containerd",from="files"}"#,
                "0",
            ),
            (
                r#"headroom_runtime_read_from{node="node-1",runtime="docker",from="files"}"#,
                "0",
            ),
            (
                r#"headroom_problems{node="node-1",kind="malformed",reader="docker"}"#,
                "2",
            ),
            (
                r#"headroom_problems{node="node-1",kind="unreadable",reader="pod_logs"}"#,
                "1",
            ),
            (
                r#"headroom_problems{node="node-1",kind="unanswered",reader="containerd"}"#,
                "0",
            ),
            (
                r#"headroom_kubelet_thresholds_origin{node="node-1",origin="config"}"#,
                "1",
            ),
            (
                r#"headroom_kubelet_thresholds_origin{node="node-1",origin="defaults"}"#,
                "0",
            ),
            (r#"headroom_scan_duration_seconds{node="node-1"}"#, "1.5"),
            (
                r#"headroom_scan_timestamp_seconds{node="node-1"}"#,
                "1777636800",
            ),
            (r#"headroom_scan_files_total{node="node-1"}"#, "1234"),
            (
                r#"headroom_scan_errors_total{node="node-1",kind="vanished"}"#,
                "7",
            ),
            (
                r#"headroom_scan_errors_total{node="node-1",kind="deadline"}"#,
                "0",
            ),
            (
                r#"headroom_emptydir_bytes{node="node-1",namespace="shop",pod="web-0",pod_uid="u1",volume="cache"}"#,
                "4096",
            ),
            (r#"headroom_scans_total{node="node-1"}"#, "3"),
            (
                concat!(
                    r#"headroom_build_info{node="node-1",version=""#,
                    env!("CARGO_PKG_VERSION"),
                    r#""}"#
                ),
                "1",
            ),
        ];
        for (series, value) in expect {
            assert_eq!(
                sample(&text, series).as_deref(),
                Some(value),
                "{series} in\n{text}"
            );
        }
        assert!(text.contains("# TYPE headroom_filesystem_capacity_bytes gauge\n"));
        assert!(text.contains("# UNIT headroom_filesystem_capacity_bytes bytes\n"));
        assert!(text.contains("# TYPE headroom_scan_files counter\n"));
        assert!(text.ends_with("# EOF\n"), "{text}");
        // Unknown trend: no series. Unknown pull total: no series.
        assert!(!text.contains(r#"headroom_seconds_until_pressure{node="node-1",signal="nodefs"}"#));
        assert!(!text.contains("unknown-total"));
        // Nothing folded with room to spare: no `other` series.
        assert!(!text.contains(r#""other""#), "{text}");
    }

    #[test]
    fn top_n_folding_sums_exactly() {
        let mut s = status();
        s.images = (1..=7u64)
            .map(|i| {
                image(
                    &[&format!("img-{i}")],
                    &format!("sha256:{i}"),
                    i * 1_000_003,
                )
            })
            .collect();
        s.containers = (1..=5u64)
            .map(|i| container(&format!("c{i}"), Some("p"), i * 10, 100 - i))
            .collect();
        let text = encode(&s, &ScanTotals::default(), 2).unwrap();
        for (name, value) in [
            (
                "headroom_image_size_bytes",
                (|i: &Image| i.disk_bytes) as fn(&Image) -> u64,
            ),
            ("headroom_image_unique_bytes", |i| i.unique_disk_bytes),
            ("headroom_image_content_bytes", |i| i.content_bytes),
        ] {
            let got: BTreeMap<&str, i64> = samples(&text, name).into_iter().collect();
            // The two largest by disk bytes keep their own series.
            let own = |i: usize| {
                let labels = format!(
                    r#"{{node="node-1",runtime="containerd",containerd_namespace="k8s.io",image="img-{i}"}}"#
                );
                got.get(labels.as_str()).copied()
            };
            assert_eq!(own(7), Some(value(&s.images[6]) as i64), "{name}");
            assert_eq!(own(6), Some(value(&s.images[5]) as i64), "{name}");
            let other = r#"{node="node-1",runtime="",containerd_namespace="",image="other"}"#;
            let rest: u64 = s.images[..5].iter().map(value).sum();
            assert_eq!(got.get(other), Some(&(rest as i64)), "{name}");
            assert_eq!(got.len(), 3, "{name}: top 2 and other in\n{text}");
            let all: u64 = s.images.iter().map(value).sum();
            assert_eq!(got.iter().map(|g| g.1).sum::<i64>(), all as i64, "{name}");
        }
        // Containers rank by writable + logs: c5 (50+95) and c4 (40+96).
        let writable: BTreeMap<&str, i64> = samples(&text, "headroom_container_writable_bytes")
            .into_iter()
            .collect();
        let logs: BTreeMap<&str, i64> = samples(&text, "headroom_container_log_bytes")
            .into_iter()
            .collect();
        let labels = |c: &str| {
            format!(
                r#"{{node="node-1",runtime="containerd",containerd_namespace="k8s.io",namespace="default",pod="p",container="{c}"}}"#
            )
        };
        let other = r#"{node="node-1",runtime="",containerd_namespace="",namespace="",pod="",container="other"}"#;
        assert_eq!(writable.get(labels("c5").as_str()), Some(&50));
        assert_eq!(writable.get(labels("c4").as_str()), Some(&40));
        assert_eq!(writable.get(other), Some(&(10 + 20 + 30)), "{writable:?}");
        assert_eq!(logs.get(labels("c5").as_str()), Some(&95));
        assert_eq!(logs.get(other), Some(&(99 + 98 + 97)), "{logs:?}");
        assert_eq!((writable.len(), logs.len()), (3, 3));
    }

    #[test]
    fn every_kind_and_reader_of_problem_has_a_series() {
        let text = encode(&status(), &totals(), 10).unwrap();
        let got = samples(&text, "headroom_problems");
        assert_eq!(got.len(), ProblemKind::ALL.len() * Reader::all().count());
        assert_eq!(got.iter().map(|(_, v)| v).sum::<i64>(), 3);
        let clean = Status {
            problems: Vec::new(),
            ..status()
        };
        let text = encode(&clean, &totals(), 10).unwrap();
        let got = samples(&text, "headroom_problems");
        assert_eq!(got.len(), ProblemKind::ALL.len() * Reader::all().count());
        assert!(got.iter().all(|(_, v)| *v == 0), "{got:?}");
    }

    #[test]
    fn fault_a_runtime_read_from_its_files_is_down() {
        let mut s = status();
        let containerd = &mut s.runtimes[0];
        containerd.answers = Some(false);
        containerd.read_from = Some(ReadFrom::Files);
        let docker = &mut s.runtimes[1];
        (docker.found, docker.read_from) = (true, Some(ReadFrom::Files));
        let text = encode(&s, &totals(), 10).unwrap();
        let mut up = samples(&text, "headroom_runtime_up");
        let mut from = samples(&text, "headroom_runtime_read_from");
        up.sort();
        from.sort();
        assert_eq!(
            up,
            [
                (r#"{node="node-1",runtime="containerd"}"#, 0),
                (r#"{node="node-1",runtime="docker"}"#, 1)
            ],
            "containerd's API is down; Docker, never asked, counts as up when read"
        );
        assert_eq!(
            from,
            [
                (r#"{node="node-1",runtime="containerd",from="api"}"#, 0),
                (r#"{node="node-1",runtime="containerd",from="files"}"#, 1),
                (r#"{node="node-1",runtime="docker",from="api"}"#, 0),
                (r#"{node="node-1",runtime="docker",from="files"}"#, 1),
            ]
        );
    }

    #[test]
    fn top_zero_folds_everything() {
        let text = encode(&status(), &ScanTotals::default(), 0).unwrap();
        let got = samples(&text, "headroom_image_size_bytes");
        let other = r#"{node="node-1",runtime="",containerd_namespace="",image="other"}"#;
        assert_eq!(got, vec![(other, 240_000_000)]);
    }

    #[test]
    fn containers_with_the_same_labels_add_up() {
        let mut s = status();
        s.containers = vec![
            container("web", Some("web-0"), 100, 1),
            container("web", Some("web-0"), 20, 2),
        ];
        let text = encode(&s, &ScanTotals::default(), 10).unwrap();
        assert_eq!(samples(&text, "headroom_container_writable_bytes").len(), 1);
        assert_eq!(
            samples(&text, "headroom_container_writable_bytes")[0].1,
            120
        );
        assert_eq!(samples(&text, "headroom_container_log_bytes")[0].1, 3);
    }

    #[test]
    fn totals_accumulate_scans() {
        let mut t = ScanTotals::default();
        let scan = status().scan;
        t.record(&scan, true);
        t.record(&scan, true);
        t.record(&scan, false);
        assert_eq!(t.files, 30);
        assert_eq!(t.scans, 2, "a reread is no scan");
        assert_eq!(t.errors, BTreeMap::from([(ErrorKind::Denied, 3)]));
    }

    /// tests/metrics_parser.rs feeds the official parser this same status,
    /// from the JSON file.
    #[test]
    fn the_parser_tests_status_is_this_one() {
        let file = include_str!("../tests/fixtures/status.json");
        assert_eq!(serde_json::from_str::<Status>(file).unwrap(), status());
    }
}
