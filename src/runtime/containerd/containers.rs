//! From containerd containers to [`ContainerRecord`]s.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::Container;
use containerd_client::types::Mount;

use super::rpc::{Rpc, RpcError};
use super::snapshots::Backend;
use super::{snapshot_dir, OVERLAYFS};
use crate::runtime::{Classified, ContainerRecord, PodRef, ProblemKind};

/// CRI's label telling pod sandboxes from app containers.
const KIND_LABEL: &str = "io.cri-containerd.kind";
/// Kubelet labels naming the pod and container.
const POD_NAME: &str = "io.kubernetes.pod.name";
const POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const POD_UID: &str = "io.kubernetes.pod.uid";
const CONTAINER_NAME: &str = "io.kubernetes.container.name";

/// Why a container's writable layer is not placed.
#[derive(Debug, thiserror::Error)]
pub(super) enum ContainerError {
    /// Its snapshot's mounts could not be read.
    #[error(transparent)]
    Mounts(#[from] RpcError),
    /// Its snapshot is another snapshotter's.
    #[error("container {id} in namespace {ns} uses snapshotter {snapshotter}; only overlayfs is supported, its writable layer is not counted")]
    OtherSnapshotter {
        /// The container's ID.
        id: String,
        /// Its namespace.
        ns: String,
        /// The snapshotter it uses.
        snapshotter: String,
    },
    /// Neither its mounts nor `metadata.db` place its writable layer.
    #[error("container {id} in namespace {ns}: writable layer directory not found")]
    NoWritableDir {
        /// The container's ID.
        id: String,
        /// Its namespace.
        ns: String,
    },
}

impl Classified for ContainerError {
    fn kind(&self) -> ProblemKind {
        match self {
            ContainerError::Mounts(e) => e.kind(),
            ContainerError::OtherSnapshotter { .. } => ProblemKind::Unsupported,
            ContainerError::NoWritableDir { .. } => ProblemKind::Missing,
        }
    }
}

/// The record for `c`, with its problems.
///
/// Returns `None` for containers without a snapshot (Docker 20.10 registers
/// its containers in namespace `moby` that way; the Docker reader reports
/// them) and for CRI pod sandboxes: those are pause containers whose
/// writable layers are tiny and belong to no app container.
pub(super) async fn record(
    rpc: &Rpc,
    ns: &str,
    c: &Container,
    image_ids: &HashMap<&str, &str>,
    backend: Option<&Backend>,
    snapshot_root: &Path,
) -> (Option<ContainerRecord>, Vec<ContainerError>) {
    if skipped(c) {
        return (None, Vec::new());
    }
    let mut problems = Vec::new();
    let mut from_mounts = None;
    if on_overlayfs(c) {
        match rpc.mounts(ns, OVERLAYFS, &c.snapshot_key).await {
            Ok(mounts) => from_mounts = upper_dir(&mounts),
            Err(e) => problems.push(e.into()),
        }
    }
    let found = Writable {
        from_mounts,
        backend,
        snapshot_root,
    };
    let (record, more) = assemble(ns, c, image_ids, found);
    problems.extend(more);
    (Some(record), problems)
}

/// The record for `c` from containerd's files alone: its writable layer
/// comes from `metadata.db` via the backend key `meta.db` gives for its
/// snapshot. `None` for the containers [`record`] skips.
pub(super) fn record_from_files(
    ns: &str,
    c: &Container,
    image_ids: &HashMap<&str, &str>,
    backend: Option<&Backend>,
    snapshot_root: &Path,
) -> (Option<ContainerRecord>, Vec<ContainerError>) {
    if skipped(c) {
        return (None, Vec::new());
    }
    let found = Writable {
        from_mounts: None,
        backend,
        snapshot_root,
    };
    let (record, problems) = assemble(ns, c, image_ids, found);
    (Some(record), problems)
}

/// Containers that get no record: no snapshot, or a CRI pod sandbox.
fn skipped(c: &Container) -> bool {
    c.snapshot_key.is_empty() || c.labels.get(KIND_LABEL).is_some_and(|k| k == "sandbox")
}

/// Whether the container's snapshot is one the reader can place.
fn on_overlayfs(c: &Container) -> bool {
    c.snapshotter.is_empty() || c.snapshotter == OVERLAYFS
}

/// What is known about where a container's writable layer lives.
struct Writable<'a> {
    /// The upper directory its mounts name, when they were read.
    from_mounts: Option<PathBuf>,
    /// The snapshotter's own records, when `metadata.db` was read.
    backend: Option<&'a Backend>,
    /// The overlayfs snapshotter's root.
    snapshot_root: &'a Path,
}

/// Builds the record of a container that is not skipped.
fn assemble(
    ns: &str,
    c: &Container,
    image_ids: &HashMap<&str, &str>,
    found: Writable<'_>,
) -> (ContainerRecord, Vec<ContainerError>) {
    let mut problems = Vec::new();
    let writable_dir = if !on_overlayfs(c) {
        problems.push(ContainerError::OtherSnapshotter {
            id: c.id.clone(),
            ns: ns.to_string(),
            snapshotter: c.snapshotter.clone(),
        });
        None
    } else {
        let from_db = || {
            let snap = found
                .backend?
                .get(&(ns.to_string(), c.snapshot_key.clone()))?;
            Some(snapshot_dir(found.snapshot_root, snap.id))
        };
        let dir = found.from_mounts.or_else(from_db);
        if dir.is_none() {
            problems.push(ContainerError::NoWritableDir {
                id: c.id.clone(),
                ns: ns.to_string(),
            });
        }
        dir
    };
    let record = ContainerRecord {
        namespace: ns.to_string(),
        id: c.id.clone(),
        name: c.labels.get(CONTAINER_NAME).unwrap_or(&c.id).clone(),
        image: c.image.clone(),
        image_id: image_ids.get(c.image.as_str()).map(|id| id.to_string()),
        pod: pod_ref(&c.labels),
        writable_dir,
        log_files: Vec::new(),
    };
    (record, problems)
}

/// The kubelet's identity of a container, when it has the pod labels.
fn pod_ref(labels: &HashMap<String, String>) -> Option<PodRef> {
    let get = |k: &str| labels.get(k).cloned().unwrap_or_default();
    labels.contains_key(POD_NAME).then(|| PodRef {
        pod: get(POD_NAME),
        namespace: get(POD_NAMESPACE),
        uid: get(POD_UID),
        container: get(CONTAINER_NAME),
    })
}

/// The writable directory of an active snapshot's mounts: the overlay's
/// `upperdir`, or the source of the read-write bind mount that the overlayfs
/// snapshotter uses for a snapshot without parents.
fn upper_dir(mounts: &[Mount]) -> Option<PathBuf> {
    mounts.iter().find_map(|m| match m.r#type.as_str() {
        "overlay" => m
            .options
            .iter()
            .find_map(|o| o.strip_prefix("upperdir="))
            .map(PathBuf::from),
        "bind" if !m.options.iter().any(|o| o == "ro") => Some(PathBuf::from(&m.source)),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Mount {
        Mount {
            r#type: kind.into(),
            source: source.into(),
            target: String::new(),
            options: options.iter().map(|o| o.to_string()).collect(),
        }
    }

    #[test]
    fn upper_dir_from_overlay_and_rw_bind_only() {
        // Options as `ctr snapshots mounts` printed them for a real container.
        let overlay = mount(
            "overlay",
            "overlay",
            &[
                "index=off",
                "workdir=/r/snapshots/8/work",
                "upperdir=/r/snapshots/8/fs",
                "lowerdir=/r/snapshots/2/fs",
            ],
        );
        assert_eq!(
            upper_dir(&[overlay]),
            Some(PathBuf::from("/r/snapshots/8/fs"))
        );
        let rw = mount("bind", "/r/snapshots/3/fs", &["rbind", "rw"]);
        assert_eq!(upper_dir(&[rw]), Some(PathBuf::from("/r/snapshots/3/fs")));
        let ro = mount("bind", "/r/snapshots/3/fs", &["rbind", "ro"]);
        assert_eq!(upper_dir(&[ro]), None);
        let lower_only = mount("overlay", "overlay", &["lowerdir=/a:/b"]);
        assert_eq!(upper_dir(&[lower_only]), None);
    }

    #[test]
    fn pod_ref_needs_the_pod_name_label() {
        let mut labels = HashMap::new();
        labels.insert(CONTAINER_NAME.to_string(), "app".to_string());
        assert_eq!(pod_ref(&labels), None);
        labels.insert(POD_NAME.to_string(), "web-0".to_string());
        labels.insert(POD_NAMESPACE.to_string(), "prod".to_string());
        let pod = pod_ref(&labels).unwrap();
        assert_eq!(
            (
                pod.pod.as_str(),
                pod.namespace.as_str(),
                pod.container.as_str()
            ),
            ("web-0", "prod", "app")
        );
        assert_eq!(pod.uid, "");
    }
}
