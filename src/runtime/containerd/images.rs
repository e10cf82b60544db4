//! From containerd image records to [`ImageRecord`]s.
//!
//! CRI names one image several times (tag, repo digest, `sha256:<config>`),
//! so records are grouped by target digest. The layers are found the way
//! containerd unpacks them: target → (index → manifest) → config →
//! `rootfs.diff_ids` → chain IDs, which name the committed snapshots.
//! The documents come from a [`BlobSource`]: containerd's Content API, or
//! the content store's files when containerd does not answer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::{Image, Info as ContentInfo};
use serde::Deserialize;

use super::rpc::{Rpc, RpcError};
use super::OVERLAYFS;
use crate::runtime::{Classified, ImageRecord, ProblemKind};

/// Largest manifest, index or config blob read (real ones are a few KiB).
const MAX_DOCUMENT: usize = 4 << 20;
/// Indexes nested deeper than this are not followed.
const MAX_NESTING: usize = 4;
/// Prefix of the content labels that link a blob to the blobs it holds.
const GC_REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// Prefix of the config label naming the top snapshot per snapshotter.
const GC_REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot.";
/// CRI's label on images the kubelet must never garbage-collect.
const PINNED_LABEL: &str = "io.cri-containerd.pinned";

/// The content store as one namespace sees it, keyed by digest.
pub(super) type Content = HashMap<String, ContentInfo>;

/// Where the index, manifest and config blobs are read from.
pub(super) trait BlobSource {
    /// The bytes of blob `digest` as namespace `ns` sees it; an error
    /// naming the blob if it cannot be read or exceeds `cap` bytes.
    async fn read_blob(&self, ns: &str, digest: &str, cap: usize) -> Result<Vec<u8>, BlobError>;
}

impl BlobSource for Rpc {
    async fn read_blob(&self, ns: &str, digest: &str, cap: usize) -> Result<Vec<u8>, BlobError> {
        Ok(self.read(ns, digest, cap).await?)
    }
}

/// Why an index, manifest or config blob could not be read.
#[derive(Debug, thiserror::Error)]
pub(super) enum BlobError {
    /// The content store does not list it.
    #[error("blob {digest} is not in the content store")]
    NotInStore {
        /// The blob's digest.
        digest: String,
    },
    /// Its size is beyond any real document's.
    #[error("blob {digest} is {size} bytes, too large to read")]
    TooLarge {
        /// The blob's digest.
        digest: String,
        /// The size the content store records.
        size: i64,
    },
    /// It is not the JSON document expected.
    #[error("blob {digest} is not a valid document: {source}")]
    Invalid {
        /// The blob's digest.
        digest: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// containerd did not give it.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// Its bytes do not hash to its digest (a damaged store).
    #[error("blob {digest} is damaged: its bytes hash to {actual}")]
    Mismatch {
        /// The blob's digest.
        digest: String,
        /// What its bytes hash to.
        actual: String,
    },
    /// Its digest cannot name a file of the store.
    #[error("blob digest {digest:?} is malformed")]
    BadDigest {
        /// The digest.
        digest: String,
    },
    /// Its file could not be read.
    #[error("cannot read blob file {}: {source}", path.display())]
    File {
        /// The blob file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Its file is larger than the reader takes.
    #[error("blob file {} is larger than {cap} bytes, not read", path.display())]
    FileTooLarge {
        /// The blob file.
        path: PathBuf,
        /// The most bytes read.
        cap: usize,
    },
}

impl Classified for BlobError {
    fn kind(&self) -> ProblemKind {
        match self {
            BlobError::NotInStore { .. } => ProblemKind::Missing,
            BlobError::File { source, .. } => ProblemKind::of_io(source),
            BlobError::Rpc(e) => e.kind(),
            BlobError::TooLarge { .. }
            | BlobError::Invalid { .. }
            | BlobError::BadDigest { .. }
            | BlobError::Mismatch { .. }
            | BlobError::FileTooLarge { .. } => ProblemKind::Malformed,
        }
    }
}

/// Why an image's layers could not be found, or are not counted.
#[derive(Debug, thiserror::Error)]
pub(super) enum ResolveError {
    /// The image record points at nothing.
    #[error("the image record has no target")]
    NoTarget,
    /// An index lists no manifest the reader can pick.
    #[error("index {index} has no manifest for this platform")]
    NoManifest {
        /// The index's digest.
        index: String,
    },
    /// A manifest names no config.
    #[error("manifest {manifest} has no config")]
    NoConfig {
        /// The manifest's digest.
        manifest: String,
    },
    /// Indexes point at indexes beyond [`MAX_NESTING`].
    #[error("indexes nested deeper than {MAX_NESTING} levels")]
    TooDeep,
    /// A document could not be read.
    #[error(transparent)]
    Blob(#[from] BlobError),
    /// Only snapshotters other than overlayfs unpacked it.
    #[error(
        "unpacked with snapshotter {} only; only overlayfs is supported, its layers are not counted",
        snapshotters.join(", ")
    )]
    OtherSnapshotters {
        /// The snapshotters that did.
        snapshotters: Vec<String>,
    },
}

impl Classified for ResolveError {
    fn kind(&self) -> ProblemKind {
        match self {
            ResolveError::NoManifest { .. } => ProblemKind::Missing,
            ResolveError::NoTarget | ResolveError::NoConfig { .. } | ResolveError::TooDeep => {
                ProblemKind::Malformed
            }
            ResolveError::Blob(e) => e.kind(),
            ResolveError::OtherSnapshotters { .. } => ProblemKind::Unsupported,
        }
    }
}

/// A problem with one image, named by its first name and namespace.
#[derive(Debug, thiserror::Error)]
#[error("image {name} in namespace {ns}: {source}")]
pub(super) struct ImageError {
    /// The image's first name.
    name: String,
    /// Its namespace.
    ns: String,
    /// What is wrong.
    source: ResolveError,
}

impl Classified for ImageError {
    fn kind(&self) -> ProblemKind {
        self.source.kind()
    }
}

/// An index or manifest document: the fields used here of either kind.
#[derive(Debug, Deserialize)]
pub(super) struct Document {
    #[serde(default)]
    manifests: Vec<Descriptor>,
    /// A manifest's config.
    pub(super) config: Option<Descriptor>,
    /// A manifest's layers, base first.
    #[serde(default)]
    pub(super) layers: Vec<Descriptor>,
}

/// A content descriptor inside a document.
#[derive(Debug, Deserialize)]
pub(super) struct Descriptor {
    /// The content's digest.
    pub(super) digest: String,
    /// Its size in bytes (0 when the document does not say).
    #[serde(default)]
    pub(super) size: u64,
    platform: Option<Platform>,
}

/// The platform of an index entry.
#[derive(Debug, Deserialize)]
struct Platform {
    os: String,
    architecture: String,
}

/// The part of an image config that lists the layers.
#[derive(Debug, Deserialize)]
pub(super) struct ImageConfig {
    /// The layers' uncompressed digests.
    pub(super) rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Deserialize)]
pub(super) struct RootFs {
    /// DiffIDs, base first.
    pub(super) diff_ids: Vec<String>,
}

/// What the documents of one image say.
#[derive(Debug, PartialEq)]
struct Resolved {
    /// The config digest, which is the image ID.
    config: String,
    /// Chain IDs, base first.
    layers: Vec<String>,
    /// Index, manifest, config and layer digests the documents reference.
    blobs: BTreeSet<String>,
}

/// One image as recorded, with any problems found resolving it.
pub(super) struct Built {
    /// The record, unless not even its ID could be found.
    pub(super) record: Option<ImageRecord>,
    /// Problems, each naming the image.
    pub(super) problems: Vec<ImageError>,
}

/// Groups the image records of `ns` by target and resolves each image.
pub(super) async fn build(
    source: &impl BlobSource,
    ns: &str,
    images: &[Image],
    content: &Content,
) -> Vec<Built> {
    let mut groups: BTreeMap<&str, Vec<&Image>> = BTreeMap::new();
    for image in images {
        let target = image.target.as_ref().map_or("", |t| t.digest.as_str());
        groups.entry(target).or_default().push(image);
    }
    let mut out = Vec::new();
    for (target, group) in groups {
        out.push(build_one(source, ns, target, &group, content).await);
    }
    out
}

/// Builds the record for the images `group` that share `target`.
async fn build_one(
    source: &impl BlobSource,
    ns: &str,
    target: &str,
    group: &[&Image],
    content: &Content,
) -> Built {
    let mut refs: Vec<String> = group.iter().map(|i| i.name.clone()).collect();
    refs.sort();
    let name = refs.first().cloned().unwrap_or_default();
    let mut problems = Vec::new();
    let mut problem = |source| {
        problems.push(ImageError {
            name: name.clone(),
            ns: ns.to_string(),
            source,
        })
    };
    let resolved = resolve(source, ns, target, content)
        .await
        .map_err(&mut problem)
        .ok();
    if let Some(err) = resolved
        .as_ref()
        .and_then(|r| unsupported_snapshotter(content.get(&r.config)))
    {
        problem(err);
    }
    // Without the config, CRI's `sha256:<config>` name still gives the ID.
    let id = match &resolved {
        Some(r) => Some(r.config.clone()),
        None => refs.iter().find(|r| crate::digest::is_sha256(r)).cloned(),
    };
    let record = id.map(|id| {
        let mut blobs = gc_children(target, content);
        if let Some(r) = &resolved {
            blobs.extend(r.blobs.iter().cloned());
        }
        blobs.retain(|d| content.contains_key(d));
        ImageRecord {
            namespace: ns.to_string(),
            id,
            refs,
            layers: resolved.map(|r| r.layers).unwrap_or_default(),
            blobs: blobs.into_iter().collect(),
            pinned: group
                .iter()
                .any(|i| i.labels.get(PINNED_LABEL).is_some_and(|v| v == "pinned")),
            created: group.iter().filter_map(|i| last_change(i)).max(),
        }
    });
    Built { record, problems }
}

/// The image ID of every name of the images of namespace `ns`.
pub(super) fn ids_by_name<'a>(images: &'a [ImageRecord], ns: &str) -> HashMap<&'a str, &'a str> {
    images
        .iter()
        .filter(|i| i.namespace == ns)
        .flat_map(|i| i.refs.iter().map(|r| (r.as_str(), i.id.as_str())))
        .collect()
}

/// Follows `target` through an index to a manifest, then to its config.
async fn resolve(
    source: &impl BlobSource,
    ns: &str,
    target: &str,
    content: &Content,
) -> Result<Resolved, ResolveError> {
    if target.is_empty() {
        return Err(ResolveError::NoTarget);
    }
    let mut blobs = BTreeSet::new();
    let mut digest = target.to_string();
    for _ in 0..MAX_NESTING {
        blobs.insert(digest.clone());
        let doc: Document = parse(&read(source, ns, &digest, content).await?, &digest)?;
        if !doc.manifests.is_empty() {
            blobs.extend(doc.manifests.iter().map(|m| m.digest.clone()));
            digest = pick_manifest(&doc.manifests, content)
                .ok_or(ResolveError::NoManifest { index: digest })?;
            continue;
        }
        let config = doc
            .config
            .ok_or_else(|| ResolveError::NoConfig {
                manifest: digest.clone(),
            })?
            .digest;
        blobs.extend(doc.layers.into_iter().map(|l| l.digest));
        let image_config: ImageConfig = parse(&read(source, ns, &config, content).await?, &config)?;
        blobs.insert(config.clone());
        return Ok(Resolved {
            config,
            layers: crate::digest::chain_ids(&image_config.rootfs.diff_ids),
            blobs,
        });
    }
    Err(ResolveError::TooDeep)
}

/// Reads a document blob after checking it is present and small.
pub(super) async fn read(
    source: &impl BlobSource,
    ns: &str,
    digest: &str,
    content: &Content,
) -> Result<Vec<u8>, BlobError> {
    let info = content.get(digest).ok_or_else(|| BlobError::NotInStore {
        digest: digest.to_string(),
    })?;
    if usize::try_from(info.size).map_or(true, |s| s > MAX_DOCUMENT) {
        return Err(BlobError::TooLarge {
            digest: digest.to_string(),
            size: info.size,
        });
    }
    let bytes = source.read_blob(ns, digest, MAX_DOCUMENT).await?;
    // containerd does not check what it serves, nor does a file: a flipped
    // byte in a size or a digest would otherwise be believed.
    let actual = crate::digest::sha256(&bytes);
    if crate::digest::is_sha256(digest) && actual != digest {
        return Err(BlobError::Mismatch {
            digest: digest.to_string(),
            actual,
        });
    }
    Ok(bytes)
}

/// Parses a JSON document, naming its digest on failure.
pub(super) fn parse<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    digest: &str,
) -> Result<T, BlobError> {
    serde_json::from_slice(bytes).map_err(|source| BlobError::Invalid {
        digest: digest.to_string(),
        source,
    })
}

/// Picks the manifest containerd unpacked: the one whose config names an
/// overlayfs snapshot, else the host platform's, else the only one.
fn pick_manifest(manifests: &[Descriptor], content: &Content) -> Option<String> {
    let unpacked = manifests.iter().find(|m| {
        let config = content
            .get(&m.digest)
            .and_then(|info| info.labels.get(&format!("{GC_REF_CONTENT}.config")));
        config.and_then(|c| content.get(c)).is_some_and(|c| {
            c.labels
                .contains_key(&format!("{GC_REF_SNAPSHOT}{OVERLAYFS}"))
        })
    });
    let host = || {
        manifests.iter().find(|m| {
            m.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == host_arch())
        })
    };
    let only = || manifests.first().filter(|_| manifests.len() == 1);
    unpacked
        .or_else(host)
        .or_else(only)
        .map(|m| m.digest.clone())
}

/// The host's architecture as OCI names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// Every blob reachable from `root` through `gc.ref.content` labels.
fn gc_children(root: &str, content: &Content) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_string()];
    while let Some(digest) = todo.pop() {
        if !seen.insert(digest.clone()) {
            continue;
        }
        if let Some(info) = content.get(&digest) {
            let children = info
                .labels
                .iter()
                .filter(|(k, _)| k.starts_with(GC_REF_CONTENT));
            todo.extend(children.map(|(_, v)| v.clone()));
        }
    }
    seen
}

/// A complaint when a config was unpacked only by other snapshotters.
fn unsupported_snapshotter(config: Option<&ContentInfo>) -> Option<ResolveError> {
    let snapshotters: BTreeSet<&str> = config?
        .labels
        .keys()
        .filter_map(|k| k.strip_prefix(GC_REF_SNAPSHOT))
        .collect();
    if snapshotters.is_empty() || snapshotters.contains(OVERLAYFS) {
        return None;
    }
    Some(ResolveError::OtherSnapshotters {
        snapshotters: snapshotters.into_iter().map(str::to_string).collect(),
    })
}

/// When an image record last changed.
fn last_change(image: &Image) -> Option<SystemTime> {
    [&image.created_at, &image.updated_at]
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let secs = u64::try_from(t.seconds).ok()?;
            let nanos = u32::try_from(t.nanos).ok().filter(|n| *n < 1_000_000_000)?;
            UNIX_EPOCH.checked_add(Duration::new(secs, nanos))
        })
        .max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(digest: &str, labels: &[(&str, &str)]) -> (String, ContentInfo) {
        let info = ContentInfo {
            digest: digest.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        (digest.to_string(), info)
    }

    #[test]
    fn chain_ids_match_containerd_snapshot_names() {
        // diff_ids from the config of `demo/app:1`; the expected chain IDs are
        // the names containerd gave the committed snapshots after unpacking.
        let diff_ids = [
            "sha256:3ecd282e59e706da6453f36af6108e245ecfc3661123c308b433472b1e47699a",
            "sha256:6a136e8a2b6c7472a002dccc92910c2f68e6a043b34fdfe7c30f796c8d88bcce",
        ]
        .map(String::from);
        assert_eq!(
            crate::digest::chain_ids(&diff_ids),
            [
                "sha256:3ecd282e59e706da6453f36af6108e245ecfc3661123c308b433472b1e47699a",
                "sha256:a3fafea22fad8bf2dd22c17d94518353b00760be800b57c31fe8e3fc1e3e6767",
            ]
        );
        assert!(crate::digest::chain_ids(&[]).is_empty());
    }

    #[test]
    fn picks_the_unpacked_manifest_then_the_host_platform() {
        let index = format!(
            r#"{{"manifests": [
                {{"digest": "sha256:m1", "platform": {{"os": "linux", "architecture": "s390x"}}}},
                {{"digest": "sha256:m2", "platform": {{"os": "linux", "architecture": "{}"}}}}
            ]}}"#,
            host_arch()
        );
        let doc: Document = parse(index.as_bytes(), "sha256:i").unwrap();
        let mut content = Content::new();
        assert_eq!(
            pick_manifest(&doc.manifests, &content).as_deref(),
            Some("sha256:m2")
        );
        content.extend([
            info(
                "sha256:m1",
                &[("containerd.io/gc.ref.content.config", "sha256:c1")],
            ),
            info(
                "sha256:c1",
                &[("containerd.io/gc.ref.snapshot.overlayfs", "sha256:x")],
            ),
        ]);
        assert_eq!(
            pick_manifest(&doc.manifests, &content).as_deref(),
            Some("sha256:m1")
        );
        let other: Document = parse(
            br#"{"manifests": [{"digest": "sha256:a"}, {"digest": "sha256:b"}]}"#,
            "i",
        )
        .unwrap();
        assert_eq!(pick_manifest(&other.manifests, &Content::new()), None);
    }

    #[test]
    fn gc_labels_are_followed_once() {
        let content: Content = [
            info(
                "sha256:i",
                &[("containerd.io/gc.ref.content.m.0", "sha256:m")],
            ),
            info(
                "sha256:m",
                &[
                    ("containerd.io/gc.ref.content.config", "sha256:c"),
                    ("containerd.io/gc.ref.content.l.0", "sha256:l"),
                    ("containerd.io/distribution.source.x", "repo"),
                ],
            ),
            info(
                "sha256:l",
                &[("containerd.io/gc.ref.content.loop", "sha256:i")],
            ),
        ]
        .into_iter()
        .collect();
        let all: Vec<_> = gc_children("sha256:i", &content).into_iter().collect();
        assert_eq!(all, ["sha256:c", "sha256:i", "sha256:l", "sha256:m"]);
    }

    #[test]
    fn other_snapshotters_are_named() {
        let (_, native) = info("c", &[("containerd.io/gc.ref.snapshot.native", "x")]);
        let err = unsupported_snapshotter(Some(&native)).unwrap();
        assert!(err.to_string().contains("native"), "{err}");
        assert_eq!(err.kind(), ProblemKind::Unsupported);
        let (_, both) = info(
            "c",
            &[
                ("containerd.io/gc.ref.snapshot.native", "x"),
                ("containerd.io/gc.ref.snapshot.overlayfs", "x"),
            ],
        );
        assert!(unsupported_snapshotter(Some(&both)).is_none());
        let (_, packed) = info("c", &[]);
        assert!(unsupported_snapshotter(Some(&packed)).is_none());
    }
}
