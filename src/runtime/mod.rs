//! Runtime readers and the runtime-neutral records they produce.
//!
//! A reader only says what exists and where it lives on disk; it never
//! measures. [`crate::inventory`] walks the directories named here and
//! attributes the bytes, so Docker and containerd are measured the same way.
//! Everything else that differs between runtimes is behind [`Runtime`].

pub mod bolt;
pub mod containerd;
pub mod crio;
pub mod docker;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use tokio::runtime::Handle;

use crate::layout::NodeLayout;
use crate::model::{Image, ReadFrom};

/// What a container runtime is to Headroom, in one place: where it is
/// looked for, how its store is read, where its pulls first write, and how
/// the kubelet treats its images. A new runtime is a module implementing
/// this, a [`RuntimeKind`] variant naming it, and its place in [`ALL`].
pub trait Runtime: Sync {
    /// Which runtime this is.
    fn kind(&self) -> RuntimeKind;

    /// Where it is looked for on `layout` (its root or socket), as reported.
    fn location<'a>(&self, layout: &'a NodeLayout) -> &'a Path;

    /// Reads its store, any API calls made on `handle` (the command's one
    /// async runtime). An error says why it could not be read at all.
    fn discover(&self, layout: &NodeLayout, handle: &Handle) -> Result<Read, ReadError>;

    /// Where its pulls first write when its store is at the layout's root
    /// (before it was read, or while it is down).
    fn default_pull_dirs(&self, layout: &NodeLayout) -> Vec<PathBuf>;

    /// Its image store's root on `layout` when it cannot tell (it is down).
    fn default_image_root(&self, layout: &NodeLayout) -> PathBuf;

    /// How the kubelet ranks it as the image store (lower first), given
    /// whether it `holds_images`: see [`cri_runtime`].
    fn cri_rank(&self, holds_images: bool) -> u8;

    /// Whether the kubelet's image GC manages `image` (sees it over CRI).
    fn kubelet_manages(&self, image: &Image) -> bool;

    /// The bytes the kubelet's image GC credits for removing `image`: the
    /// size CRI reports for it.
    fn gc_credit(&self, image: &Image) -> u64;

    /// Whether its images live in namespaces (a pull names one).
    fn namespaced(&self) -> bool;

    /// What becomes of a pull's compressed blobs, in words.
    fn blob_note(&self) -> &'static str;

    /// Whether Headroom asks it over an API (and so whether "its API
    /// answers" means anything for it). A runtime without is read from its
    /// files only.
    fn has_api(&self) -> bool;

    /// Its change notifications on `layout`, when it has an event API: the
    /// agent follows them and rereads at once. Without, the 1-s watch of its
    /// pull directories and `resync_interval` cover its changes.
    fn events(&self, layout: &NodeLayout) -> Option<Box<dyn Events>>;
}

/// A boxed future, so that the runtime traits stay object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a runtime's event stream could not be had or broke.
pub type EventError = Box<dyn std::error::Error + Send + Sync>;

/// Where a runtime's change notifications come from.
pub trait Events: Send + Sync {
    /// The socket (or file) they come from, for the logs.
    fn source(&self) -> &Path;

    /// Subscribes to the changes that alter what the inventory holds.
    fn subscribe(&self) -> BoxFuture<'_, Result<Box<dyn ChangeStream>, EventError>>;
}

/// A live subscription to a runtime's changes.
pub trait ChangeStream: Send {
    /// What the next change is (its topic); `None` when the runtime closed
    /// the stream; an error when the connection broke.
    fn next_change(&mut self) -> BoxFuture<'_, Result<Option<String>, EventError>>;
}

/// Every runtime Headroom reads, in the order they are reported.
pub const ALL: [RuntimeKind; 3] = [
    RuntimeKind::Docker,
    RuntimeKind::Containerd,
    RuntimeKind::Crio,
];

/// What [`Runtime::discover`] found, with a note when the store had to be
/// read another way than usual (containerd from its files).
#[derive(Debug, Clone)]
pub struct Read {
    /// The store's contents.
    pub discovery: Discovery,
    /// Why and how it was read another way, if it was.
    pub note: Option<String>,
    /// Whether it came from the runtime's API or its files.
    pub from: ReadFrom,
}

/// The runtime the kubelet takes as its image store (the imagefs), among
/// the runtimes read (`kind`, whether it holds images): the best ranked by
/// [`Runtime::cri_rank`]; `None` when none was read.
pub fn cri_runtime(read: impl IntoIterator<Item = (RuntimeKind, bool)>) -> Option<RuntimeKind> {
    read.into_iter()
        .min_by_key(|(kind, holds)| kind.runtime().cri_rank(*holds))
        .map(|(kind, _)| kind)
}

/// Which container runtime a record came from.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeKind {
    /// Docker with the overlay2 graph driver, read from its files.
    Docker,
    /// containerd, read over gRPC (overlayfs snapshotter). The default
    /// where a document predates a key naming the runtime (pulls were
    /// containerd's only).
    #[default]
    Containerd,
    /// containers-storage, CRI-O's and Podman's store (overlay driver),
    /// read from its files.
    Crio,
}

impl RuntimeKind {
    /// What this runtime is.
    pub fn runtime(self) -> &'static dyn Runtime {
        match self {
            RuntimeKind::Docker => &docker::Docker,
            RuntimeKind::Containerd => &containerd::Containerd,
            RuntimeKind::Crio => &crio::Crio,
        }
    }

    /// The lowercase name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Containerd => "containerd",
            RuntimeKind::Crio => "crio",
        }
    }
}

/// Everything one runtime reader found on the node.
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The runtime this describes.
    pub runtime: RuntimeKind,
    /// Where the runtime's image store lives (decides the imagefs signal).
    pub image_root: PathBuf,
    /// Images, one record per distinct image (all its names in `refs`).
    pub images: Vec<ImageRecord>,
    /// Committed image layers, each with the directory that holds it.
    pub layers: Vec<LayerRecord>,
    /// Containers with their writable layer and log files.
    pub containers: Vec<ContainerRecord>,
    /// Content-store blobs (compressed layers, manifests, configs).
    pub blobs: Vec<BlobRecord>,
    /// Image pulls in flight. Docker's overlay2 store keeps a download in
    /// progress as an anonymous temp file under `<root>/tmp` (no image, no
    /// expected size, no manifest until the pull is done): its pulls have
    /// no name and no size, only the bytes written so far.
    pub pulls: Vec<PullRecord>,
    /// Directories a pull writes into first (containerd's ingests, Docker's
    /// temp files): a new entry there means a pull may have started, so the
    /// agent looks at them every second.
    pub pull_dirs: Vec<PathBuf>,
    /// Things that could not be read; the rest of the discovery still stands.
    pub problems: Vec<Problem>,
}

impl Discovery {
    /// An empty discovery for `runtime` rooted at `image_root`.
    pub fn new(runtime: RuntimeKind, image_root: PathBuf) -> Self {
        Discovery {
            runtime,
            image_root,
            images: Vec::new(),
            layers: Vec::new(),
            containers: Vec::new(),
            blobs: Vec::new(),
            pulls: Vec::new(),
            pull_dirs: Vec::new(),
            problems: Vec::new(),
        }
    }
}

/// One image as the runtime knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// containerd namespace (`k8s.io`, `moby`, …); Docker uses `""`.
    pub namespace: String,
    /// The image ID: `sha256:<config digest>`.
    pub id: String,
    /// Every name the image goes by (tags and digests), sorted.
    pub refs: Vec<String>,
    /// Layer chain IDs (`sha256:…`), base first; they key [`LayerRecord::chain_id`]
    /// in the same namespace.
    pub layers: Vec<String>,
    /// Digests of the content-store blobs this image holds (index, manifests,
    /// config, compressed layers); empty for Docker's overlay2 store.
    pub blobs: Vec<String>,
    /// Pinned images are never removed by the kubelet's image GC.
    pub pinned: bool,
    /// When the image record was created or last updated, if known.
    pub created: Option<SystemTime>,
}

/// One committed image layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRecord {
    /// containerd namespace (snapshots are per namespace); Docker uses `""`.
    pub namespace: String,
    /// The chain ID, `sha256:<hex>`.
    pub chain_id: String,
    /// The directory holding the layer's files (`…/diff` or `…/snapshots/N/fs`).
    pub dir: PathBuf,
}

/// Kubernetes identity of a container, from its CRI labels or log path.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodRef {
    /// Pod name (`io.kubernetes.pod.name`).
    pub pod: String,
    /// Pod namespace (`io.kubernetes.pod.namespace`).
    pub namespace: String,
    /// Pod UID (`io.kubernetes.pod.uid`).
    pub uid: String,
    /// Container name inside the pod (`io.kubernetes.container.name`).
    pub container: String,
}

/// One container and the places its bytes live.
#[derive(Debug, Clone, PartialEq)]
pub struct ContainerRecord {
    /// containerd namespace; Docker uses `""`.
    pub namespace: String,
    /// The container ID.
    pub id: String,
    /// A human name (Docker's name without the leading `/`, or the CRI name).
    pub name: String,
    /// The image reference the container was created from, as given.
    pub image: String,
    /// The image ID (`sha256:…`) when known; matches [`ImageRecord::id`].
    pub image_id: Option<String>,
    /// The pod it belongs to, when it runs under the kubelet.
    pub pod: Option<PodRef>,
    /// The writable (upper) layer directory, when the container has one.
    pub writable_dir: Option<PathBuf>,
    /// Log files the runtime itself writes for this container (Docker's
    /// json logs); pod logs under `/var/log/pods` are found separately.
    pub log_files: Vec<PathBuf>,
}

/// One blob in containerd's content store.
#[derive(Debug, Clone, PartialEq)]
pub struct BlobRecord {
    /// `sha256:<hex>`.
    pub digest: String,
    /// The blob file (`…/blobs/sha256/<hex>`).
    pub path: PathBuf,
}

/// One image pull in flight: a manifest whose layers are still being
/// downloaded or unpacked, or a lone download no manifest explains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullRecord {
    /// containerd namespace the pull writes into.
    pub namespace: String,
    /// The image being pulled (`registry/repository`, or a name of the image
    /// record once there is one), when it can be told.
    pub image: Option<String>,
    /// The manifest being pulled; `None` for a lone download.
    pub manifest_digest: Option<String>,
    /// The runtime's name for a lone download (containerd's ingest ref, e.g.
    /// `layer-sha256:…`); `None` for a manifest's pull.
    pub ingest: Option<String>,
    /// The layers of the manifest, base first (the one blob of a lone download).
    pub layers: Vec<PullLayer>,
}

/// One layer of a pull in flight (or the blob of a lone download).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullLayer {
    /// The compressed blob's digest (or the ingest ref when it names none).
    pub digest: String,
    /// Size of the compressed blob (0 when unknown).
    pub compressed_bytes: u64,
    /// Bytes of it already in the content store or being written, at most
    /// `compressed_bytes` when that is known.
    pub downloaded_bytes: u64,
    /// The layer's chain ID, once the image config is on the node.
    pub chain_id: Option<String>,
    /// Whether its snapshot is committed: the layer is on the node already
    /// and costs nothing.
    pub unpacked: bool,
    /// Whether the blob is unpacked once downloaded: true for layers, false
    /// for a lone manifest, config or index download.
    pub unpacks: bool,
}

/// Something a reader could not read, named with what and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// The file, directory or socket concerned.
    pub source: String,
    /// What went wrong, in words.
    pub message: String,
    /// What kind of trouble it is.
    pub kind: ProblemKind,
    /// Who met it.
    pub reader: Reader,
}

/// What kind of trouble a [`Problem`] is: what an operator would do about it
/// differs (fix permissions, restore a file, restart the runtime, accept it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProblemKind {
    /// A file or directory could not be read (an I/O error).
    Unreadable,
    /// Content is corrupt, or not in the format expected.
    Malformed,
    /// Metadata names something that is absent: a layer directory, a
    /// snapshot, a blob, an image.
    Missing,
    /// A call to a runtime's API failed or was not answered in time.
    Unanswered,
    /// Stored in a way Headroom does not read (another snapshotter or graph
    /// driver): not counted.
    Unsupported,
}

impl ProblemKind {
    /// Every kind, so a metric series of each can exist (at 0) before one happens.
    pub const ALL: [ProblemKind; 5] = [
        ProblemKind::Unreadable,
        ProblemKind::Malformed,
        ProblemKind::Missing,
        ProblemKind::Unanswered,
        ProblemKind::Unsupported,
    ];

    /// The lowercase name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::Unreadable => "unreadable",
            ProblemKind::Malformed => "malformed",
            ProblemKind::Missing => "missing",
            ProblemKind::Unanswered => "unanswered",
            ProblemKind::Unsupported => "unsupported",
        }
    }

    /// The kind of an I/O error met reading a file: content refused by a
    /// careful read (`InvalidData`) is malformed, a file that is not there
    /// is missing, anything else unreadable.
    pub fn of_io(err: &std::io::Error) -> Self {
        match err.kind() {
            std::io::ErrorKind::InvalidData => ProblemKind::Malformed,
            std::io::ErrorKind::NotFound => ProblemKind::Missing,
            _ => ProblemKind::Unreadable,
        }
    }
}

/// Who met a [`Problem`]: a runtime's reader, or one of the node's other
/// sources. Serialized as its lowercase name (`docker`, `pod_logs`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Reader {
    /// A container runtime's reader.
    Runtime(RuntimeKind),
    /// The kubelet config (its eviction thresholds).
    Kubelet,
    /// The pod log directories (`/var/log/pods`).
    PodLogs,
    /// The pods' emptyDir volumes.
    Volumes,
    /// The filesystems behind the kubelet's signals (their statfs).
    Filesystems,
}

impl Reader {
    /// Every reader: the runtimes (in [`ALL`]'s order), then the rest.
    pub fn all() -> impl Iterator<Item = Reader> {
        ALL.into_iter().map(Reader::Runtime).chain([
            Reader::Kubelet,
            Reader::PodLogs,
            Reader::Volumes,
            Reader::Filesystems,
        ])
    }

    /// The lowercase name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Reader::Runtime(kind) => kind.as_str(),
            Reader::Kubelet => "kubelet",
            Reader::PodLogs => "pod_logs",
            Reader::Volumes => "volumes",
            Reader::Filesystems => "filesystems",
        }
    }

    /// A problem of `kind` this reader met with `source`, in `message`.
    pub fn problem(
        self,
        kind: ProblemKind,
        source: impl Into<String>,
        message: impl Into<String>,
    ) -> Problem {
        Problem {
            source: source.into(),
            message: message.into(),
            kind,
            reader: self,
        }
    }

    /// The problem `err` is, met with `source`: its kind and its words.
    pub fn problem_from(self, source: impl Into<String>, err: &impl Classified) -> Problem {
        self.problem(err.kind(), source, err.to_string())
    }
}

impl From<Reader> for &'static str {
    fn from(reader: Reader) -> Self {
        reader.as_str()
    }
}

impl TryFrom<String> for Reader {
    type Error = String;

    fn try_from(name: String) -> Result<Self, Self::Error> {
        Reader::all()
            .find(|r| r.as_str() == name)
            .ok_or_else(|| format!("unknown reader {name:?}"))
    }
}

/// An error a reader records as a [`Problem`] rather than failing: its
/// `Display` is the problem's message.
pub trait Classified: std::fmt::Display {
    /// What kind of problem it is.
    fn kind(&self) -> ProblemKind;
}

impl Classified for std::io::Error {
    fn kind(&self) -> ProblemKind {
        ProblemKind::of_io(self)
    }
}

/// Why a runtime's store could not be read at all
/// (what [`Runtime::discover`] fails with).
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Docker's store is missing, foreign or unreadable.
    #[error(transparent)]
    Docker(#[from] docker::DockerError),
    /// containerd did not answer, and its files could not be read either.
    #[error("{unanswered}; and from its files: {files}")]
    Containerd {
        /// Why containerd itself could not be read (boxed: it is large).
        unanswered: Box<containerd::ContainerdError>,
        /// Why its files could not be read.
        files: containerd::FilesError,
    },
    /// containers-storage's graph root is missing, foreign or unreadable.
    #[error(transparent)]
    Crio(#[from] crio::CrioError),
}

impl ReadError {
    /// The problem a store that is there but could not be read is: `None`
    /// when the runtime is simply not on the node (no root, no socket and
    /// no `meta.db`), which is normal, not a problem.
    pub fn problem(&self, runtime: RuntimeKind, location: &Path) -> Option<Problem> {
        use containerd::{ContainerdError, FilesError};
        let (kind, source) = match self {
            ReadError::Docker(e) if e.kind() == ProblemKind::Missing => return None,
            ReadError::Docker(e) => (e.kind(), location),
            ReadError::Crio(e) if e.kind() == ProblemKind::Missing => return None,
            ReadError::Crio(e) => (e.kind(), e.path()),
            ReadError::Containerd { unanswered, files } => match (&**unanswered, files) {
                (ContainerdError::NoSocket { .. }, FilesError::NoRoot { .. }) => return None,
                (_, FilesError::NoRoot { .. }) => (ProblemKind::Unanswered, location),
                (_, files) => (files.kind(), files.path()),
            },
        };
        let source = source.display().to_string();
        Some(Reader::Runtime(runtime).problem(kind, source, self.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cri_runtime_is_containerd_with_images_else_crio_with_images_else_docker_else_containerd()
    {
        use RuntimeKind::{Containerd, Crio, Docker};
        type Read = &'static [(RuntimeKind, bool)];
        let cases: [(Read, Option<RuntimeKind>); 12] = [
            (&[], None),
            (&[(Containerd, false)], Some(Containerd)),
            (&[(Docker, false)], Some(Docker)),
            // Docker 20.10's own containerd answers but holds no images.
            (&[(Docker, true), (Containerd, false)], Some(Docker)),
            (&[(Docker, false), (Containerd, false)], Some(Docker)),
            (&[(Docker, true), (Containerd, true)], Some(Containerd)),
            // A CRI-O node: its store holds the kubelet's images.
            (&[(Crio, true)], Some(Crio)),
            (&[(Crio, false)], Some(Crio)),
            (
                &[(Docker, true), (Containerd, false), (Crio, true)],
                Some(Crio),
            ),
            (&[(Containerd, false), (Crio, true)], Some(Crio)),
            // Podman's store beside the kubelet's containerd or Docker.
            (&[(Containerd, true), (Crio, true)], Some(Containerd)),
            (
                &[(Docker, false), (Containerd, false), (Crio, false)],
                Some(Docker),
            ),
        ];
        for (read, want) in cases {
            assert_eq!(cri_runtime(read.iter().copied()), want, "{read:?}");
        }
    }

    #[test]
    fn a_problem_names_its_kind_and_reader_in_json() {
        let p = Reader::PodLogs.problem(ProblemKind::Malformed, "/var/log/pods/x", "bad name");
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "source": "/var/log/pods/x",
                "message": "bad name",
                "kind": "malformed",
                "reader": "pod_logs",
            })
        );
        assert_eq!(serde_json::from_value::<Problem>(json).unwrap(), p);
        for reader in Reader::all() {
            let name = serde_json::to_value(reader).unwrap();
            assert_eq!(name, reader.as_str());
            assert_eq!(serde_json::from_value::<Reader>(name).unwrap(), reader);
        }
        assert!(serde_json::from_str::<Reader>("\"rkt\"").is_err());
        let names: Vec<_> = ProblemKind::ALL
            .iter()
            .map(|k| serde_json::to_value(k).unwrap())
            .collect();
        let strs: Vec<_> = ProblemKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names, strs);
    }
}
