//! The typed model of the node: what the inventory produces and predict,
//! the metrics, the screen and check-pull read. Filesystems are keyed by
//! [`Signal`], verdicts carry a [`State`], times are [`SystemTime`] and
//! runtimes are [`RuntimeKind`]s; nothing here is matched as a string.
//!
//! Its serde form is the status document (`headroom status --json`, the
//! agent's `/api/v1/status`), made only at the edges. Key names are an
//! interface (dashboards, scripts and tests read them): keep them stable and
//! only add new ones. `docs/status.md` is the contract (every key, type and
//! value); `tests/contract.rs` fails when the two drift apart.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use crate::kubelet::ThresholdsOrigin;
use crate::layout::PathOrigin;
pub use crate::predict::gc::GcCensus;
use crate::runtime::{Problem, RuntimeKind};
use crate::walk::ErrorKind;

/// The version of this document's shape.
pub const SCHEMA: u32 = 1;

/// The whole status document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// Always [`SCHEMA`].
    pub schema: u32,
    /// The node name (`NODE_NAME`, else the host name).
    pub node: String,
    /// When the document was made (RFC 3339 in UTC, to the second, in JSON).
    #[serde(with = "rfc3339")]
    pub generated_at: SystemTime,
    /// Where the figures came from.
    pub source: Source,
    /// Where the eviction thresholds came from: the kubelet's files and
    /// flags, or the kubelet's Linux defaults and why.
    pub thresholds_source: String,
    /// The same in a word: `flags`, `config` or `defaults`.
    #[serde(default)]
    pub thresholds_origin: ThresholdsOrigin,
    /// Where each layout path came from, and what the thresholds were read
    /// from.
    #[serde(default)]
    pub layout: LayoutReport,
    /// One entry per kubelet disk signal with the filesystem behind it.
    pub filesystems: Vec<Filesystem>,
    /// Images, largest first.
    pub images: Vec<Image>,
    /// Committed image layers, largest first.
    pub layers: Vec<Layer>,
    /// Containers (and pod logs whose container is gone), largest first.
    pub containers: Vec<Container>,
    /// Pods' disk-backed emptyDir volumes, largest first.
    #[serde(default)]
    pub volumes: Vec<Volume>,
    /// Image pulls in flight (containerd's, by image; Docker's, of unknown size).
    pub pulls: Vec<Pull>,
    /// Bytes that removing every unused, unpinned image would really free.
    pub reclaimable_bytes: u64,
    /// The same per runtime; they add up to the total.
    pub reclaimable_by_runtime: BTreeMap<RuntimeKind, u64>,
    /// What the kubelet's image GC may and may not delete on the imagefs,
    /// and why; `None` when there is no imagefs (or in a document written
    /// before the key).
    #[serde(default)]
    pub image_gc: Option<GcCensus>,
    /// Per signal: whether pressure is predicted, and why.
    pub prediction: BTreeMap<Signal, Prediction>,
    /// The layer audit's figures (`headroom audit`): the agent's, once its
    /// first audit pass is done; `None` in a one-shot scan's document.
    #[serde(default)]
    pub audit: Option<crate::audit::AuditSummary>,
    /// Which runtimes were found, and why the others were not.
    pub runtimes: Vec<RuntimeState>,
    /// Metadata that could not be read; the rest of the document stands.
    pub problems: Vec<Problem>,
    /// How the scan went.
    pub scan: ScanSummary,
}

/// Where the node's layout came from (the document's `layout`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutReport {
    /// One entry per layout path.
    pub paths: Vec<LayoutPath>,
    /// The kubelet config files read for the thresholds, in order.
    pub kubelet_files: Vec<String>,
    /// The kubelet flags that set a threshold.
    pub kubelet_flags: Vec<String>,
}

/// One layout path and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayoutPath {
    /// The config key (`kubelet_root`, …, or `kubelet_config_dir`).
    pub key: String,
    /// The path.
    pub path: String,
    /// Headroom's setting, discovered on the node, or the default.
    pub origin: PathOrigin,
    /// What exactly (the flag, the process and its flag, the file).
    pub from: String,
}

/// Where a document's figures came from (`scan` or `agent` in JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// A one-shot scan by the process that prints it.
    Scan,
    /// The agent's last pass (layers measured once, the rest anew).
    Agent,
}

/// A kubelet disk signal's filesystem: the kubelet's root (`nodefs`) or the
/// runtime's image store (`imagefs`); they may be one filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Signal {
    /// The image store's filesystem (declared first: JSON maps list it first).
    Imagefs,
    /// The kubelet root's filesystem.
    Nodefs,
}

impl Signal {
    /// The lowercase name used in JSON, metric labels and sentences.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Imagefs => "imagefs",
            Signal::Nodefs => "nodefs",
        }
    }
}

impl std::fmt::Display for Signal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A verdict's severity, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Nothing in sight.
    Ok,
    /// Image GC due, a soft threshold crossed, or only GC keeps a pull from crossing.
    Warning,
    /// A hard threshold is, or is predicted to be, crossed.
    Pressure,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl State {
    /// `ok`, `warning` or `pressure`, as in the status document.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Warning => "warning",
            State::Pressure => "pressure",
        }
    }
}

/// A kubelet disk signal and the filesystem that backs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filesystem {
    /// The signal this filesystem decides.
    pub signal: Signal,
    /// The path whose filesystem decides this signal (kubelet or runtime root).
    pub path: String,
    /// Mount point of that filesystem.
    pub mountpoint: String,
    /// Filesystem type from mountinfo (`ext4`, `overlay`, …).
    pub fstype: String,
    /// Size of the filesystem in bytes.
    pub capacity_bytes: u64,
    /// Bytes available to unprivileged users (`f_bavail`), as the kubelet sees.
    pub available_bytes: u64,
    /// Total inodes.
    pub inodes: u64,
    /// Free inodes.
    pub inodes_free: u64,
    /// The hard eviction threshold for `<signal>.available`, in bytes.
    pub threshold_bytes: u64,
    /// The hard eviction threshold for `<signal>.inodesFree`, in inodes.
    pub threshold_inodes: u64,
    /// `available_bytes - threshold_bytes`; negative once the threshold is crossed.
    pub bytes_left: i64,
    /// `inodes_free - threshold_inodes`; negative once the threshold is crossed.
    pub inodes_left: i64,
}

/// One image with its disk usage attributed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Image {
    /// `docker` or `containerd`.
    pub runtime: RuntimeKind,
    /// containerd namespace; empty for Docker.
    pub namespace: String,
    /// `sha256:<config digest>`.
    pub id: String,
    /// Tags and digests naming this image.
    pub refs: Vec<String>,
    /// When the image was created in the local store (RFC 3339 in JSON), if known.
    #[serde(with = "rfc3339::option")]
    pub created: Option<SystemTime>,
    /// Unpacked size of all its layers (st_blocks × 512).
    pub disk_bytes: u64,
    /// Unpacked size of all its layers (st_size).
    pub apparent_bytes: u64,
    /// Disk bytes of layers no other image uses.
    pub unique_disk_bytes: u64,
    /// Apparent bytes of layers no other image uses.
    pub unique_apparent_bytes: u64,
    /// Disk bytes of layers shared with other images.
    pub shared_disk_bytes: u64,
    /// Apparent bytes of layers shared with other images.
    pub shared_apparent_bytes: u64,
    /// Disk bytes of the content-store blobs it references (compressed layers).
    pub content_bytes: u64,
    /// Disk bytes of blobs no other image references.
    pub unique_content_bytes: u64,
    /// How many containers use it.
    pub containers: u64,
    /// Whether any container uses it.
    pub in_use: bool,
    /// Whether the kubelet's image GC must leave it alone.
    pub pinned: bool,
    /// Layer chain IDs, base first.
    pub layers: Vec<String>,
}

/// One committed image layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// `docker` or `containerd`.
    pub runtime: RuntimeKind,
    /// containerd namespace; empty for Docker.
    pub namespace: String,
    /// Chain ID, `sha256:<hex>`.
    pub id: String,
    /// Directory holding the layer.
    pub path: String,
    /// st_blocks × 512, hard links once.
    pub disk_bytes: u64,
    /// st_size, hard links once.
    pub apparent_bytes: u64,
    /// Distinct inodes, the directory itself included.
    pub inodes: u64,
    /// How many images use it.
    pub images: u64,
}

/// One container (or orphaned pod logs) with its writable layer and logs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Container {
    /// The runtime keeping the container; `None` (`kubelet` in JSON) for pod
    /// logs whose container is gone.
    #[serde(with = "kubelet_when_none")]
    pub runtime: Option<RuntimeKind>,
    /// containerd namespace; empty for Docker.
    pub namespace: String,
    /// Container ID (empty for orphaned pod logs).
    pub id: String,
    /// Container name.
    pub name: String,
    /// Image reference.
    pub image: String,
    /// Pod name, when under the kubelet.
    pub pod: Option<String>,
    /// Pod namespace, when under the kubelet.
    pub pod_namespace: Option<String>,
    /// The writable layer's directory, when the container has one.
    pub writable_path: Option<String>,
    /// Writable layer, st_blocks × 512.
    pub writable_disk_bytes: u64,
    /// Writable layer, st_size.
    pub writable_apparent_bytes: u64,
    /// Log files (runtime logs and pod logs), st_blocks × 512.
    pub log_bytes: u64,
}

/// A pod's emptyDir volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    /// `emptyDir`.
    pub kind: String,
    /// The pod's UID.
    pub pod_uid: String,
    /// Pod name, when a container or log of that pod tells it.
    pub pod: Option<String>,
    /// Pod namespace, likewise.
    pub pod_namespace: Option<String>,
    /// The volume's name.
    pub name: String,
    /// Its directory.
    pub path: String,
    /// st_blocks × 512.
    pub disk_bytes: u64,
    /// st_size.
    pub apparent_bytes: u64,
}

/// An image pull in flight: a manifest whose layers are still being
/// downloaded or unpacked, or a lone download (an ingest) no manifest explains.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Pull {
    /// Unique name of the pull: `<image>@<manifest digest>`, the manifest
    /// digest when the image is unknown, or the ingest reference of a lone
    /// download (e.g. `layer-sha256:…`).
    pub reference: String,
    /// Bytes of the layers still needed that are downloaded already.
    pub offset_bytes: u64,
    /// Compressed bytes of the layers still needed (0 when unknown).
    pub total_bytes: u64,
    /// containerd namespace.
    #[serde(default)]
    pub namespace: String,
    /// The image (`registry/repository`, or its name once recorded), when known.
    #[serde(default)]
    pub image: Option<String>,
    /// The manifest being pulled; null for a lone download.
    #[serde(default)]
    pub manifest: Option<String>,
    /// Compressed bytes still to download (`total_bytes - offset_bytes`).
    #[serde(default)]
    pub remaining_download_bytes: u64,
    /// Estimated unpacked bytes still to write: the compressed size of the
    /// layers not yet unpacked times the node's unpack ratio.
    #[serde(default)]
    pub unpack_bytes: u64,
    /// Layers in the manifest (1 for a lone download).
    #[serde(default)]
    pub layers_total: u64,
    /// Layers whose compressed blob is fully downloaded.
    #[serde(default)]
    pub layers_downloaded: u64,
    /// Layers already unpacked on the node: they cost nothing.
    #[serde(default)]
    pub layers_present: u64,
    /// The runtime pulling: `containerd`, or `docker` (whose pulls have no
    /// name and no size, only the bytes downloaded so far).
    #[serde(default)]
    pub runtime: RuntimeKind,
}

/// The verdict for one signal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    /// Whether the signal is, or is predicted to be, past its threshold.
    pub predicted: bool,
    /// How bad it is.
    pub state: State,
    /// Seconds until the threshold is crossed; 0 when already crossed, null
    /// when no trend is known.
    pub seconds_until: Option<u64>,
    /// Available bytes once the pulls in flight have landed.
    pub projected_available_after_pull: i64,
    /// Available bytes after that and one image GC pass.
    pub projected_available_after_gc: i64,
    /// One sentence for a human.
    pub reason: String,
}

/// Whether a runtime was found, whether its API answers, and where its
/// figures come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuntimeState {
    /// `docker` or `containerd`.
    pub runtime: RuntimeKind,
    /// Whether its store was read.
    pub found: bool,
    /// The root, socket or file it was looked for at.
    pub location: String,
    /// Where its image store lives (containerd's snapshotter root, Docker's
    /// root), once read: the filesystem its pulls land on.
    #[serde(default)]
    pub image_root: Option<String>,
    /// Why it was not found or read; or, when it was read another way than
    /// usual (containerd from its files), why and how.
    pub message: Option<String>,
    /// Whether its API answered in this pass; `None` for a runtime read
    /// only from its files (Docker).
    #[serde(default)]
    pub answers: Option<bool>,
    /// Where its figures come from; `None` when it was not read.
    #[serde(default)]
    pub read_from: Option<ReadFrom>,
}

impl RuntimeState {
    /// Whether its figures are live: its API answered or, for a runtime
    /// read only from its files, its store was read. A runtime read from its
    /// files because its API is down is not up.
    pub fn up(&self) -> bool {
        self.answers.unwrap_or(self.found)
    }
}

/// Where a runtime's figures were read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// The runtime's API (containerd's gRPC).
    Api,
    /// The runtime's files on disk: Docker always; containerd when its API
    /// does not answer.
    Files,
}

impl ReadFrom {
    /// Every way, in the order metrics list them.
    pub const ALL: [ReadFrom; 2] = [ReadFrom::Api, ReadFrom::Files];

    /// The name in JSON and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ReadFrom::Api => "api",
            ReadFrom::Files => "files",
        }
    }
}

/// How the scan went.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ScanSummary {
    /// Directory entries examined.
    pub files: u64,
    /// Entries that could not be examined (vanished, unreadable, …).
    pub errors: u64,
    /// Error counts by kind.
    pub errors_by_kind: BTreeMap<ErrorKind, u64>,
    /// A few errors, with their paths, for on-call.
    pub error_samples: Vec<ScanErrorSample>,
    /// Mount points below the measured paths that were not crossed: another
    /// filesystem, or a bind mount of the same one (a volume's subPath
    /// mounted into a container). Their bytes belong to their own tree.
    #[serde(default)]
    pub skipped_mounts: u64,
    /// A few of their paths.
    #[serde(default)]
    pub skipped_mount_samples: Vec<String>,
    /// Wall time of the scan, in seconds (JSON key `duration`, as
    /// docs/status.md names it).
    #[serde(rename = "duration", alias = "duration_seconds")]
    pub duration_seconds: f64,
}

/// One scan error, with its path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanErrorSample {
    /// The entry that could not be examined.
    pub path: String,
    /// What kind of error it was.
    pub kind: ErrorKind,
    /// The error in words.
    pub message: String,
}

/// Bytes for humans, in decimal units as `df -H` and Docker print them.
pub fn human_bytes(bytes: u64) -> String {
    bytesize::ByteSize(bytes).display().si().to_string()
}

impl Image {
    /// What people call the image: its first name, else its short ID.
    pub fn name(&self) -> String {
        self.refs
            .first()
            .cloned()
            .unwrap_or_else(|| short_id(&self.id))
    }
}

impl Container {
    /// The name of the runtime keeping it, `kubelet` for pod logs alone.
    pub fn runtime_name(&self) -> &'static str {
        self.runtime
            .map_or(kubelet_when_none::KUBELET, RuntimeKind::as_str)
    }

    /// What people call the container: its name, else its short ID.
    pub fn display_name(&self) -> String {
        if self.name.is_empty() {
            short_id(&self.id)
        } else {
            self.name.clone()
        }
    }
}

/// The first 12 hex digits of an ID, as `docker ps` shows it.
pub fn short_id(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// Times as RFC 3339 in UTC, to the second (`2026-05-01T12:00:00Z`).
pub(crate) mod rfc3339 {
    use std::time::SystemTime;

    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_rfc3339_seconds(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&text).map_err(D::Error::custom)
    }

    /// The same for an optional time (`null` when unknown).
    pub mod option {
        use std::time::SystemTime;

        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(at: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, s),
                None => s.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<SystemTime>, D::Error> {
            #[derive(Deserialize)]
            struct Time(#[serde(with = "super")] SystemTime);
            Ok(Option::<Time>::deserialize(d)?.map(|t| t.0))
        }
    }
}

/// A container's runtime, `kubelet` when there is none (pod logs only).
mod kubelet_when_none {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::runtime::RuntimeKind;

    pub const KUBELET: &str = "kubelet";

    pub fn serialize<S: Serializer>(kind: &Option<RuntimeKind>, s: S) -> Result<S::Ok, S::Error> {
        kind.map_or(KUBELET, RuntimeKind::as_str).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<RuntimeKind>, D::Error> {
        let name = String::deserialize(d)?;
        if name == KUBELET {
            return Ok(None);
        }
        // An unknown name fails as RuntimeKind's does, naming the runtimes.
        RuntimeKind::deserialize(serde::de::value::StrDeserializer::<D::Error>::new(&name))
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtimes_and_times_read_back_as_written() {
        let at = humantime::parse_rfc3339("2026-05-01T12:00:00Z").unwrap();
        let image = Image {
            created: Some(at),
            ..Image::default()
        };
        let json = serde_json::to_value(&image).unwrap();
        assert_eq!(json["created"], "2026-05-01T12:00:00Z");
        assert_eq!(serde_json::from_value::<Image>(json).unwrap(), image);

        let logs_alone = serde_json::json!({
            "runtime": "kubelet", "namespace": "", "id": "", "name": "app", "image": "",
            "pod": "p", "pod_namespace": "default", "writable_path": null,
            "writable_disk_bytes": 0, "writable_apparent_bytes": 0, "log_bytes": 7
        });
        let c: Container = serde_json::from_value(logs_alone.clone()).unwrap();
        assert_eq!((c.runtime, c.runtime_name()), (None, "kubelet"));
        assert_eq!(serde_json::to_value(&c).unwrap(), logs_alone);
        let mut docker = logs_alone.clone();
        docker["runtime"] = "docker".into();
        let c: Container = serde_json::from_value(docker).unwrap();
        assert_eq!(c.runtime, Some(RuntimeKind::Docker));
        let mut unknown = logs_alone;
        unknown["runtime"] = "rkt".into();
        assert!(serde_json::from_value::<Container>(unknown).is_err());
    }

    fn fixture() -> serde_json::Value {
        serde_json::from_str(include_str!("../tests/fixtures/status.json")).unwrap()
    }

    #[test]
    fn the_image_gc_census_reads_back_as_written_its_age_in_seconds() {
        let mut status: Status = serde_json::from_value(fixture()).unwrap();
        let census = GcCensus {
            deletable: 3,
            deletable_bytes: 108_000_000,
            in_use: 2,
            pinned: 1,
            young: 1,
            min_age: std::time::Duration::from_secs(90 * 60),
        };
        status.image_gc = Some(census);
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(
            json["image_gc"],
            serde_json::json!({
                "deletable": 3, "deletable_bytes": 108_000_000, "in_use": 2,
                "pinned": 1, "young": 1, "min_age": 5400
            })
        );
        assert_eq!(serde_json::from_value::<Status>(json).unwrap(), status);
        status.image_gc = None;
        let json = serde_json::to_value(&status).unwrap();
        assert_eq!(json["image_gc"], serde_json::Value::Null);
        assert_eq!(serde_json::from_value::<Status>(json).unwrap(), status);
    }

    #[test]
    fn a_document_written_before_image_gc_still_parses() {
        let mut old = fixture();
        let removed = old.as_object_mut().unwrap().remove("image_gc");
        assert!(removed.is_some(), "the fixture has the key");
        let status: Status = serde_json::from_value(old).unwrap();
        assert_eq!(status.image_gc, None);
    }

    #[test]
    fn fault_a_census_with_a_negative_or_fractional_age_is_refused() {
        for age in [serde_json::json!(-1), serde_json::json!(1.5), "2m".into()] {
            let mut doc = fixture();
            doc["image_gc"]["min_age"] = age.clone();
            assert!(
                serde_json::from_value::<Status>(doc).is_err(),
                "min_age {age} was accepted"
            );
        }
    }
}
