//! containerd reader: what containerd holds on disk and where, over gRPC.
//!
//! Every namespace is read through containerd's own API (namespaces,
//! introspection, images, content, snapshots, containers), each call bounded
//! by one timeout. The only fact the API does not give, which
//! `snapshots/<id>` directory holds a snapshot, comes from the overlayfs
//! snapshotter's `metadata.db`, read without taking its lock. Only the
//! overlayfs snapshotter is supported; images and containers on another one
//! are reported as problems. Nothing is measured here.

mod containers;
pub mod events;
mod files;
mod images;
mod meta_db;
mod pulls;
mod rpc;
mod snapshots;

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::snapshots::{Info as SnapshotInfo, Kind};
use containerd_client::services::v1::Container;
use containerd_client::services::v1::Image;

pub use self::files::{discover_from_files, FilesError};
use self::images::Content;
use self::pulls::Ingest;
use self::rpc::Rpc;
pub use self::rpc::{Call, RpcError};
use self::snapshots::Backend;
use super::{
    BlobRecord, Classified, Discovery, LayerRecord, Problem, ProblemKind, Read, ReadError, Reader,
    Runtime, RuntimeKind,
};
use tokio::runtime::Handle;

use crate::layout::NodeLayout;
use crate::model::{self, ReadFrom};

/// Who meets the problems of this reader.
const READER: Reader = Reader::Runtime(RuntimeKind::Containerd);

/// The namespace the kubelet's CRI plugin keeps its images in.
pub const CRI_NAMESPACE: &str = "k8s.io";

/// containerd with the overlayfs snapshotter, read over gRPC (from its
/// files when it does not answer).
#[derive(Debug, Clone, Copy)]
pub struct Containerd;

impl Runtime for Containerd {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Containerd
    }

    fn location<'a>(&self, layout: &'a NodeLayout) -> &'a Path {
        &layout.containerd_address
    }

    /// Over gRPC; when containerd does not answer (it is often the first
    /// victim of a full disk), its files, with a note saying so.
    fn discover(&self, layout: &NodeLayout, handle: &Handle) -> Result<Read, ReadError> {
        let unanswered = match grpc_discover(layout, handle) {
            Ok(discovery) => {
                return Ok(Read {
                    discovery,
                    note: None,
                    from: ReadFrom::Api,
                })
            }
            Err(reason) => reason,
        };
        match discover_from_files(&layout.containerd_root) {
            Ok(mut discovery) => {
                let note = format!(
                    "{unanswered}; read from its files under {} instead",
                    layout.containerd_root.display()
                );
                // Its files stand in, but containerd itself is down: a
                // problem of the pass (metrics, alerts), not only a note.
                let socket = layout.containerd_address.display().to_string();
                let problem =
                    READER.problem(ProblemKind::Unanswered, socket, unanswered.to_string());
                discovery.problems.push(problem);
                Ok(Read {
                    discovery,
                    note: Some(note),
                    from: ReadFrom::Files,
                })
            }
            Err(files) => Err(ReadError::Containerd {
                unanswered: Box::new(unanswered),
                files,
            }),
        }
    }

    fn default_pull_dirs(&self, layout: &NodeLayout) -> Vec<PathBuf> {
        vec![default_ingest_dir(&layout.containerd_root)]
    }

    fn default_image_root(&self, layout: &NodeLayout) -> PathBuf {
        layout.containerd_root.clone()
    }

    /// The kubelet's image store when it holds images; one that holds none
    /// is likely Docker 20.10's own containerd, behind Docker's store.
    fn cri_rank(&self, holds_images: bool) -> u8 {
        if holds_images {
            0
        } else {
            3
        }
    }

    /// The kubelet sees the images of its CRI namespace only.
    fn kubelet_manages(&self, image: &model::Image) -> bool {
        image.namespace == CRI_NAMESPACE
    }

    /// CRI reports a containerd image by its compressed size.
    fn gc_credit(&self, image: &model::Image) -> u64 {
        image.content_bytes
    }

    fn namespaced(&self) -> bool {
        true
    }

    fn blob_note(&self) -> &'static str {
        "kept in containerd's content store"
    }

    fn has_api(&self) -> bool {
        true
    }

    fn events(&self, layout: &NodeLayout) -> Option<Box<dyn super::Events>> {
        Some(Box::new(events::Follow {
            socket: layout.containerd_address.clone(),
            timeout: layout.containerd_timeout,
        }))
    }
}

/// The whole read, not only each call, is bounded by the timeout: a
/// containerd that answers the first calls and then hangs costs a pass the
/// timeout once, not once per call.
fn grpc_discover(layout: &NodeLayout, handle: &Handle) -> Result<Discovery, ContainerdError> {
    let (socket, timeout) = (&layout.containerd_address, layout.containerd_timeout);
    let read = discover(socket, &layout.containerd_root, timeout);
    handle
        .block_on(async { tokio::time::timeout(timeout, read).await })
        .unwrap_or_else(|_| {
            Err(ContainerdError::Unfinished {
                socket: socket.clone(),
                timeout,
            })
        })
}

/// The only snapshotter whose layers are attributed.
const OVERLAYFS: &str = "overlayfs";
/// Plugin types whose exported `root` locates the stores.
const SNAPSHOTTER_PLUGIN: &str = "io.containerd.snapshotter.v1";
const CONTENT_PLUGIN: &str = "io.containerd.content.v1";

/// Why containerd could not be read at all (or its events not followed).
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// There is no socket at the address.
    #[error("containerd not reachable at {}: no such socket", socket.display())]
    NoSocket {
        /// The socket that was tried.
        socket: PathBuf,
    },
    /// Connecting took longer than the timeout.
    #[error("containerd not reachable at {}: no answer within {}", socket.display(), rpc::secs(*timeout))]
    ConnectTimeout {
        /// The socket that was tried.
        socket: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// Connecting failed (e.g. refused).
    #[error("containerd not reachable at {}: {reason}", socket.display())]
    Connect {
        /// The socket that was tried.
        socket: PathBuf,
        /// The innermost cause, in words (the transport's error chain).
        reason: String,
    },
    /// It answered, but not every call within the timeout, all together.
    #[error("containerd at {} did not answer every call within {} in all", socket.display(), rpc::secs(*timeout))]
    Unfinished {
        /// The socket called.
        socket: PathBuf,
        /// The timeout.
        timeout: Duration,
    },
    /// A call everything else needs (listing namespaces, subscribing to or
    /// following events) failed.
    #[error("containerd not reachable at {}: {source}", socket.display())]
    Call {
        /// The socket called.
        socket: PathBuf,
        /// The failed call.
        source: RpcError,
    },
}

/// Reads every namespace of the containerd at `socket`, whose root directory
/// is `root` (used only when introspection does not name the store roots).
///
/// Fails only when containerd cannot be reached at all; anything partial
/// (one namespace, one image, `metadata.db`) becomes a [`Problem`].
pub async fn discover(
    socket: &Path,
    root: &Path,
    timeout: Duration,
) -> Result<Discovery, ContainerdError> {
    let rpc = Rpc::connect(socket, timeout).await?;
    let namespaces = rpc.namespaces(socket).await?;
    let source = socket.display().to_string();
    let mut problems = Vec::new();
    let roots = Roots::find(&rpc, root, &source, &mut problems).await;
    let mut listings = Vec::new();
    for ns in namespaces {
        listings.push(Listing::fetch(&rpc, ns, &source, &mut problems).await);
    }
    // Read after listing, so every snapshot listed is in the copy.
    let backend = snapshots::read(&roots.snapshotter.join("metadata.db"))
        .await
        .map_err(|p| problems.push(p))
        .ok();
    let mut disc = Discovery::new(RuntimeKind::Containerd, roots.snapshotter.clone());
    disc.pull_dirs = vec![ingest_dir(&roots.content)];
    disc.problems = problems;
    let mut digests = BTreeSet::new();
    for listing in &listings {
        digests.extend(listing.content.keys().cloned());
        add_namespace(&rpc, listing, backend.as_ref(), &roots, &source, &mut disc).await;
    }
    disc.blobs = blob_records(digests, &roots.content, &mut disc.problems);
    Ok(disc)
}

/// Where the overlayfs snapshotter and the content store keep their files.
struct Roots {
    snapshotter: PathBuf,
    content: PathBuf,
}

impl Roots {
    /// The roots the plugins export, or the defaults under `root`.
    async fn find(rpc: &Rpc, root: &Path, source: &str, problems: &mut Vec<Problem>) -> Self {
        let plugins = or_problem(rpc.plugins().await, source, problems);
        let mut exported = |kind: &str, id: &str| {
            let plugin = plugins.iter().find(|p| p.r#type == kind && p.id == id)?;
            if let Some(err) = &plugin.init_err {
                problems.push(READER.problem(
                    ProblemKind::Unsupported,
                    source,
                    format!("plugin {kind}.{id} failed to load: {}", err.message),
                ));
            }
            plugin.exports.get("root").map(PathBuf::from)
        };
        let snapshotter = exported(SNAPSHOTTER_PLUGIN, OVERLAYFS)
            .unwrap_or_else(|| root.join(format!("{SNAPSHOTTER_PLUGIN}.{OVERLAYFS}")));
        let content =
            exported(CONTENT_PLUGIN, "content").unwrap_or_else(|| default_content_root(root));
        Roots {
            snapshotter,
            content,
        }
    }
}

/// What one namespace holds, as listed over gRPC.
struct Listing {
    ns: String,
    images: Vec<Image>,
    content: Content,
    ingests: Vec<Ingest>,
    snapshots: Vec<SnapshotInfo>,
    containers: Vec<Container>,
}

impl Listing {
    /// Lists namespace `ns`; a failing list is a problem and stays empty.
    async fn fetch(rpc: &Rpc, ns: String, source: &str, problems: &mut Vec<Problem>) -> Self {
        let images = or_problem(rpc.images(&ns).await, source, problems);
        // Ingests before content: a blob committed in between is then in one
        // list or the other, never missing from both (which read as a layer
        // with nothing downloaded, its bytes left jumping back up).
        let ingests = or_problem(rpc.ingests(&ns).await, source, problems);
        let content = or_problem(rpc.content(&ns).await, source, problems);
        let snapshots = or_problem(rpc.snapshots(&ns, OVERLAYFS).await, source, problems);
        let containers = or_problem(rpc.containers(&ns).await, source, problems);
        Listing {
            content: content.into_iter().map(|i| (i.digest.clone(), i)).collect(),
            ingests: ingests.iter().map(Ingest::from_status).collect(),
            ns,
            images,
            snapshots,
            containers,
        }
    }
}

/// The listed items, or none and a problem naming `source`.
fn or_problem<T>(r: Result<Vec<T>, RpcError>, source: &str, problems: &mut Vec<Problem>) -> Vec<T> {
    r.unwrap_or_else(|e| {
        problems.push(READER.problem_from(source, &e));
        Vec::new()
    })
}

/// Adds `errors`, met with `source`, to `problems`.
fn add_problems(
    problems: &mut Vec<Problem>,
    source: &str,
    errors: impl IntoIterator<Item = impl Classified>,
) {
    problems.extend(errors.into_iter().map(|e| READER.problem_from(source, &e)));
}

/// Adds the images, layers and containers of one namespace to `disc`.
async fn add_namespace(
    rpc: &Rpc,
    l: &Listing,
    backend: Option<&Backend>,
    roots: &Roots,
    source: &str,
    disc: &mut Discovery,
) {
    for built in images::build(rpc, &l.ns, &l.images, &l.content).await {
        add_problems(&mut disc.problems, source, built.problems);
        if let Some(image) = built.record {
            disc.images.push(image);
        }
    }
    let image_ids = images::ids_by_name(&disc.images, &l.ns);
    let committed = l
        .snapshots
        .iter()
        .filter(|s| s.kind == Kind::Committed as i32);
    for snap in committed {
        // Without metadata.db its one problem already says so.
        let Some(backend) = backend else { break };
        match backend.get(&(l.ns.clone(), snap.name.clone())) {
            Some(s) => disc.layers.push(LayerRecord {
                namespace: l.ns.clone(),
                chain_id: snap.name.clone(),
                dir: snapshot_dir(&roots.snapshotter, s.id),
            }),
            None => disc.problems.push(READER.problem(
                ProblemKind::Missing,
                roots.snapshotter.join("metadata.db").display().to_string(),
                format!(
                    "snapshot {} of namespace {} is not in the database",
                    snap.name, l.ns
                ),
            )),
        }
    }
    for c in &l.containers {
        let (record, problems) =
            containers::record(rpc, &l.ns, c, &image_ids, backend, &roots.snapshotter).await;
        add_problems(&mut disc.problems, source, problems);
        disc.containers.extend(record);
    }
    add_pulls(rpc, l, source, disc).await;
}

/// Adds the pulls in flight of one namespace (after its images) to `disc`.
async fn add_pulls(rpc: &Rpc, l: &Listing, source: &str, disc: &mut Discovery) {
    let of_kind = |kind: Kind| {
        l.snapshots
            .iter()
            .filter(move |s| s.kind == kind as i32)
            .map(|s| s.name.as_str())
    };
    let committed: HashSet<String> = of_kind(Kind::Committed).map(str::to_string).collect();
    let extracting = pulls::extracting_chains(of_kind(Kind::Active));
    let ns = pulls::Namespace {
        name: &l.ns,
        content: &l.content,
        ingests: &l.ingests,
        images: &disc.images,
        committed: &committed,
        extracting: &extracting,
    };
    let (records, problems) = pulls::find(rpc, &ns).await;
    disc.pulls.extend(records);
    add_problems(&mut disc.problems, source, problems);
}

/// The content store's root under containerd's `root`, unless configured.
fn default_content_root(root: &Path) -> PathBuf {
    root.join(format!("{CONTENT_PLUGIN}.content"))
}

/// Where the content store of the containerd rooted at `root` keeps its
/// ingests, unless configured otherwise.
pub fn default_ingest_dir(root: &Path) -> PathBuf {
    ingest_dir(&default_content_root(root))
}

/// Where the content store keeps its ingests: one directory per blob being
/// written, created when the write starts (a pull's first sign on disk).
fn ingest_dir(content_root: &Path) -> PathBuf {
    content_root.join("ingest")
}

/// The files of a layer or writable layer: `<root>/snapshots/<id>/fs`.
fn snapshot_dir(snapshotter_root: &Path, id: u64) -> PathBuf {
    snapshotter_root
        .join("snapshots")
        .join(id.to_string())
        .join("fs")
}

/// One record per distinct digest, at `<content root>/blobs/<alg>/<hex>`.
fn blob_records(
    digests: BTreeSet<String>,
    content_root: &Path,
    problems: &mut Vec<Problem>,
) -> Vec<BlobRecord> {
    let mut out = Vec::new();
    for digest in digests {
        match blob_path(content_root, &digest) {
            Some(path) => out.push(BlobRecord { digest, path }),
            None => problems.push(READER.problem(
                ProblemKind::Malformed,
                content_root.display().to_string(),
                format!("content digest {digest:?} is malformed; not counted"),
            )),
        }
    }
    out
}

/// The blob file for `digest`, `None` unless it is `<alg>:<hex>` (so a
/// hostile digest cannot name a path outside the store).
fn blob_path(content_root: &Path, digest: &str) -> Option<PathBuf> {
    let (alg, hex) = digest.split_once(':')?;
    let ok = |s: &str, extra: fn(u8) -> bool| {
        s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || extra(b))
    };
    (ok(alg, |b| b"+._-".contains(&b)) && ok(hex, |_| false))
        .then(|| content_root.join("blobs").join(alg).join(hex))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn a_missing_socket_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let err = discover(&socket, dir.path(), TIMEOUT).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "containerd not reachable at {}: no such socket",
                socket.display()
            )
        );
    }

    #[tokio::test]
    async fn a_dead_socket_is_connection_refused() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        // Binding and closing leaves the socket file with nobody listening.
        drop(std::os::unix::net::UnixListener::bind(&socket).unwrap());
        let err = discover(&socket, dir.path(), TIMEOUT).await.unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with(&format!(
            "containerd not reachable at {}: ",
            socket.display()
        )));
        assert!(msg.contains("Connection refused"), "{msg}");
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        // Accept and hold connections without ever answering.
        let server = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = listener.accept().await {
                held.push(conn);
            }
        });
        let started = std::time::Instant::now();
        let err = discover(&socket, dir.path(), TIMEOUT).await.unwrap_err();
        server.abort();
        assert!(err.to_string().contains("no answer within 0.3s"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn blob_paths_stay_inside_the_store() {
        let root = Path::new("/c");
        assert_eq!(
            blob_path(root, "sha256:abc123"),
            Some(PathBuf::from("/c/blobs/sha256/abc123"))
        );
        for bad in [
            "sha256",
            "sha256:",
            ":abc",
            "..:abc",
            "sha256:../x",
            "a/b:c",
            "sha256:a/b",
        ] {
            assert_eq!(blob_path(root, bad), None, "{bad}");
        }
        let mut problems = Vec::new();
        let digests = ["sha256:ab".to_string(), "x:../y".to_string()].into();
        let records = blob_records(digests, root, &mut problems);
        assert_eq!(records.len(), 1);
        assert_eq!(problems.len(), 1);
    }
}
