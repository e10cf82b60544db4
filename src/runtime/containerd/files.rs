//! containerd's inventory read from its files, for when it does not answer.
//!
//! containerd is often the first victim of a full disk, exactly when the
//! inventory matters most. Everything its API would list is in two bbolt
//! files and the content store: `meta.db` (namespaces, images, content
//! labels, snapshots, containers), the overlayfs snapshotter's `metadata.db`
//! (which `snapshots/<id>` holds a snapshot, and its kind) and the manifest,
//! index and config blobs (the order of an image's layers). Both databases
//! are copied into memory without taking containerd's lock and retried when
//! a copy is torn. Pulls in flight come from the ingest directories
//! (`ingest/<hash>/{ref,data,total}`, the bytes so far being the size of
//! `data`). The result has the shape [`discover`](super::discover) gives,
//! built by the same image, container and pull logic.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fs::File;
use std::future::Future;
use std::io;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use super::images::{self, BlobError, BlobSource, Built};
use super::meta_db::{self, Namespace};
use super::pulls::{self, Ingest};
use super::snapshots::{self, Backend, CopyError, Kind, ATTEMPTS};
use super::{
    add_problems, blob_path, blob_records, containers, snapshot_dir, OVERLAYFS, READER,
    SNAPSHOTTER_PLUGIN,
};
use crate::runtime::{Classified, Discovery, LayerRecord, Problem, ProblemKind, RuntimeKind};

/// The metadata plugin's directory under the root, holding `meta.db`.
const METADATA_DIR: &str = "io.containerd.metadata.v1.bolt";
/// Largest `ref` or `total` file of an ingest read (real ones are < 200 bytes).
const MAX_INGEST_FILE: u64 = 4096;

/// Why containerd's files could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// There is no root: containerd is not on this node.
    #[error("{}: no containerd root", path.display())]
    NoRoot {
        /// The root given.
        path: PathBuf,
    },
    /// `meta.db` is missing, unreadable, or never parsed consistently.
    #[error("cannot read containerd's metadata database {}: {reason}", path.display())]
    MetaDb {
        /// The `meta.db` that was tried.
        path: PathBuf,
        /// What happened, in words.
        reason: String,
        /// Missing (containerd is not there), unreadable or malformed.
        kind: ProblemKind,
    },
}

impl FilesError {
    /// The file that could not be read.
    pub fn path(&self) -> &Path {
        match self {
            FilesError::NoRoot { path } | FilesError::MetaDb { path, .. } => path,
        }
    }
}

impl Classified for FilesError {
    fn kind(&self) -> ProblemKind {
        match self {
            FilesError::NoRoot { .. } => ProblemKind::Missing,
            FilesError::MetaDb { kind, .. } => *kind,
        }
    }
}

/// Why an ingest directory could not be read.
#[derive(Debug, thiserror::Error)]
enum IngestError {
    /// One of its files could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Its `data` file could not be stat'ed.
    #[error("cannot stat {}: {source}", path.display())]
    Stat {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Its `ref` is not `<namespace>/<n>/<ref>`.
    #[error("ingest ref {key:?} is not <namespace>/<n>/<ref>")]
    BadRef {
        /// The ref as read.
        key: String,
    },
    /// Its `total` is not a number.
    #[error("ingest total {total:?} is not a byte count")]
    BadTotal {
        /// The total as read.
        total: String,
    },
}

impl Classified for IngestError {
    fn kind(&self) -> ProblemKind {
        match self {
            IngestError::Read { source, .. } | IngestError::Stat { source, .. } => {
                ProblemKind::of_io(source)
            }
            IngestError::BadRef { .. } | IngestError::BadTotal { .. } => ProblemKind::Malformed,
        }
    }
}

/// Reads what the containerd whose root directory is `root` holds, from its
/// files alone (containerd may be stopped, hung or running).
///
/// Fails only when `meta.db` cannot be read; anything partial (a missing or
/// corrupt `metadata.db`, a missing blob, an entry off the schema) becomes a
/// [`Problem`] naming the file.
pub fn discover_from_files(root: &Path) -> Result<Discovery, FilesError> {
    if !root.exists() {
        return Err(FilesError::NoRoot {
            path: root.to_path_buf(),
        });
    }
    let meta_path = root.join(METADATA_DIR).join("meta.db");
    let store = Store::under(root, &meta_path);
    // Ingests before meta.db's content: a blob committed in between is in
    // one or the other, never missing from both.
    let mut ingest_problems = Vec::new();
    let ingests = store.ingests(&mut ingest_problems);
    let meta = snapshots::read_consistent(&meta_path, meta_db::parse).map_err(|e| {
        let (reason, kind) = match e {
            CopyError::Io(e) => (e.to_string(), ProblemKind::of_io(&e)),
            CopyError::Inconsistent(last) => (
                format!("no consistent copy in {ATTEMPTS} attempts ({last})"),
                ProblemKind::Malformed,
            ),
        };
        FilesError::MetaDb {
            path: meta_path.clone(),
            reason,
            kind,
        }
    })?;
    let mut disc = Discovery::new(RuntimeKind::Containerd, store.snapshotter.clone());
    disc.pull_dirs = vec![super::ingest_dir(&store.content)];
    disc.problems.extend(
        meta.problems
            .into_iter()
            .map(|m| READER.problem(ProblemKind::Malformed, &store.meta_db, m)),
    );
    // Read after meta.db, so every snapshot it lists is in the copy.
    let backend = snapshots::read_blocking(&store.snapshotter.join("metadata.db"))
        .map_err(|p| disc.problems.push(p))
        .ok();
    disc.problems.extend(ingest_problems);
    let mut digests = BTreeSet::new();
    for ns in &meta.namespaces {
        digests.extend(ns.content.keys().cloned());
        store.add_namespace(ns, backend.as_ref(), &mut disc);
        let of_ns = ingests.get(&ns.name).map_or(&[][..], Vec::as_slice);
        store.add_pulls(ns, of_ns, backend.as_ref(), &mut disc);
    }
    disc.blobs = blob_records(digests, &store.content, &mut disc.problems);
    Ok(disc)
}

/// The files of one containerd root.
struct Store {
    /// `meta.db`, which problems about its entries name.
    meta_db: String,
    /// The overlayfs snapshotter's root.
    snapshotter: PathBuf,
    /// The content store's root.
    content: PathBuf,
}

impl Store {
    /// The default plugin directories under `root`.
    fn under(root: &Path, meta_db: &Path) -> Self {
        Store {
            meta_db: meta_db.display().to_string(),
            snapshotter: root.join(format!("{SNAPSHOTTER_PLUGIN}.{OVERLAYFS}")),
            content: super::default_content_root(root),
        }
    }

    /// A problem for reads of the files that would have waited (plain file
    /// reads never do; this is the guard against a future that does).
    fn waited(&self, message: String) -> Problem {
        READER.problem(ProblemKind::Unreadable, &self.meta_db, message)
    }

    /// Adds the images, layers and containers of namespace `ns` to `disc`.
    fn add_namespace(&self, ns: &Namespace, backend: Option<&Backend>, disc: &mut Discovery) {
        let blobs = ContentFiles(&self.content);
        let built = run_ready(images::build(&blobs, &ns.name, &ns.images, &ns.content))
            .unwrap_or_else(|| {
                let msg = format!(
                    "images of namespace {} not resolved: a read waited",
                    ns.name
                );
                disc.problems.push(self.waited(msg));
                Vec::new()
            });
        for Built { record, problems } in built {
            add_problems(&mut disc.problems, &self.meta_db, problems);
            disc.images.extend(record);
        }
        if let Some(backend) = backend {
            self.add_layers(ns, backend, disc);
        }
        let image_ids = images::ids_by_name(&disc.images, &ns.name);
        for c in &ns.containers {
            let (record, problems) =
                containers::record_from_files(&ns.name, c, &image_ids, backend, &self.snapshotter);
            add_problems(&mut disc.problems, &self.meta_db, problems);
            disc.containers.extend(record);
        }
    }

    /// Adds the pulls in flight of namespace `ns` (after its images) to `disc`.
    fn add_pulls(
        &self,
        ns: &Namespace,
        ingests: &[Ingest],
        backend: Option<&Backend>,
        disc: &mut Discovery,
    ) {
        let kind_of = |backend_key: &str| {
            let (bns, bname) = snapshots::split_key(backend_key)?;
            Some(backend?.get(&(bns.to_string(), bname.to_string()))?.kind)
        };
        let of_kind = |kind: Kind| {
            ns.snapshots
                .iter()
                .filter(move |(_, key)| kind_of(key) == Some(kind))
                .map(|(name, _)| name.as_str())
        };
        let committed: HashSet<String> = of_kind(Kind::Committed).map(str::to_string).collect();
        let extracting = pulls::extracting_chains(of_kind(Kind::Active));
        let found = pulls::Namespace {
            name: &ns.name,
            content: &ns.content,
            ingests,
            images: &disc.images,
            committed: &committed,
            extracting: &extracting,
        };
        let blobs = ContentFiles(&self.content);
        let (records, problems) = run_ready(pulls::find(&blobs, &found)).unwrap_or_else(|| {
            let msg = format!("pulls of namespace {} not read: a read waited", ns.name);
            disc.problems.push(self.waited(msg));
            (Vec::new(), Vec::new())
        });
        disc.pulls.extend(records);
        add_problems(&mut disc.problems, &self.meta_db, problems);
    }

    /// The ingests under `<content root>/ingest`, by namespace. One that
    /// vanishes while read has just been committed or aborted: skipped.
    fn ingests(&self, problems: &mut Vec<Problem>) -> HashMap<String, Vec<Ingest>> {
        let dir = super::ingest_dir(&self.content);
        let mut out: HashMap<String, Vec<Ingest>> = HashMap::new();
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return out,
            Err(e) => {
                problems.push(READER.problem(
                    ProblemKind::of_io(&e),
                    dir.display().to_string(),
                    format!("cannot list the ingests: {e}"),
                ));
                return out;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let message = format!("listing the ingests stopped: {e}");
                    problems.push(READER.problem(
                        ProblemKind::of_io(&e),
                        dir.display().to_string(),
                        message,
                    ));
                    break;
                }
            };
            match read_ingest(&entry.path()) {
                Ok(Some((ns, ingest))) => out.entry(ns).or_default().push(ingest),
                Ok(None) => {}
                Err(e) => {
                    problems.push(READER.problem_from(entry.path().display().to_string(), &e))
                }
            }
        }
        out
    }

    /// Adds the committed snapshots of `ns` as layers, each placed through
    /// the backend key `meta.db` records for it.
    fn add_layers(&self, ns: &Namespace, backend: &Backend, disc: &mut Discovery) {
        for (name, backend_key) in &ns.snapshots {
            let found = snapshots::split_key(backend_key)
                .and_then(|(bns, bname)| backend.get(&(bns.to_string(), bname.to_string())));
            match found {
                Some(s) if s.kind == Kind::Committed => disc.layers.push(LayerRecord {
                    namespace: ns.name.clone(),
                    chain_id: name.clone(),
                    dir: snapshot_dir(&self.snapshotter, s.id),
                }),
                Some(_) => {}
                None => disc.problems.push(READER.problem(
                    ProblemKind::Missing,
                    self.snapshotter.join("metadata.db").display().to_string(),
                    format!(
                        "snapshot {name} of namespace {} (backend key {backend_key:?}) is not in the database",
                        ns.name
                    ),
                )),
            }
        }
    }
}

/// One ingest directory as (namespace, ingest): its `ref` file holds
/// `<ns>/<seq>/<ref>`, `total` the expected size (0 when missing) and the
/// size of `data` the bytes so far. `None` when it vanished while read.
fn read_ingest(dir: &Path) -> Result<Option<(String, Ingest)>, IngestError> {
    let text = |name: &str| -> Result<Option<String>, IngestError> {
        let path = dir.join(name);
        let mut data = String::new();
        match File::open(&path).and_then(|f| f.take(MAX_INGEST_FILE).read_to_string(&mut data)) {
            Ok(_) => Ok(Some(data.trim().to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(IngestError::Read { path, source }),
        }
    };
    let Some(key) = text("ref")? else {
        return Ok(None);
    };
    let Some((ns, reference)) = snapshots::split_key(&key) else {
        return Err(IngestError::BadRef { key });
    };
    let total = match text("total")? {
        None => 0,
        Some(t) => t.parse().map_err(|_| IngestError::BadTotal { total: t })?,
    };
    let data = dir.join("data");
    let offset = match std::fs::symlink_metadata(&data) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(IngestError::Stat { path: data, source }),
    };
    let ingest = Ingest {
        reference: reference.to_string(),
        expected: None,
        offset,
        total,
    };
    Ok(Some((ns.to_string(), ingest)))
}

/// The content store's blob files.
struct ContentFiles<'a>(&'a Path);

impl BlobSource for ContentFiles<'_> {
    async fn read_blob(&self, _ns: &str, digest: &str, cap: usize) -> Result<Vec<u8>, BlobError> {
        let path = blob_path(self.0, digest).ok_or_else(|| BlobError::BadDigest {
            digest: digest.to_string(),
        })?;
        let mut data = Vec::new();
        let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
        if let Err(source) = File::open(&path).and_then(|f| f.take(limit).read_to_end(&mut data)) {
            return Err(BlobError::File { path, source });
        }
        if data.len() > cap {
            return Err(BlobError::FileTooLarge { path, cap });
        }
        Ok(data)
    }
}

/// Runs `fut` to completion on the spot, `None` if it would wait. Image
/// building over [`ContentFiles`] never waits (its reads are plain file
/// reads), so this needs no async runtime and also works inside one.
fn run_ready<F: Future>(fut: F) -> Option<F::Output> {
    match pin!(fut).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::runtime::{BlobRecord, ContainerRecord, ImageRecord, PodRef};

    const CONFIG: &str = "sha256:86916332a7410c9d1e0184bbf50492bfc7541c626da128adacdf9ce48dc94db2";
    const MANIFEST: &str =
        "sha256:332c0e2bcd752948c72198a12bd7f16577b5013a34b12ceac21a51b602be9c94";
    const INDEX: &str = "sha256:456c09a1668f31eff3f7939b44be66f6c2918a82d77a56e40279f1225be3e248";
    const LAYER0: &str = "sha256:29bc8b74c0475c288071128c25de68a803a63424a2da348f1c52dd62ea947d5b";
    const LAYER1: &str = "sha256:9554353da349f913fd9484162534dd242f307739a8a303e5c5d785c8c2efa414";
    const CHAIN0: &str = "sha256:ca2ccaaa63c53146a8340b456913a669097727eda27a4e580f9c28aa1bf07d94";
    const CHAIN1: &str = "sha256:f3ac38f627cc695d4a35034bea7f62763834921cc815d9b3f030c47e2eb2dd3e";

    /// The store of a containerd 1.6.20 stopped cleanly after: a two-layer
    /// OCI image imported into `k8s.io` (`--index-name …:index --digests`,
    /// tagged `…:alias`, labelled pinned; CRI added the `sha256:<config>`
    /// name) and into `default`; containers `app-1` (CRI labels) and
    /// `sandbox-1` (kind sandbox) in `k8s.io`, `plain-1` in `default`. Only
    /// the index, manifest and config blobs were kept, not the layers.
    fn fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/containerd-store")
    }

    /// A writable copy of the fixture store.
    fn copy_fixture() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let src = fixture();
        for sub in [
            "io.containerd.metadata.v1.bolt/meta.db",
            "io.containerd.snapshotter.v1.overlayfs/metadata.db",
            &format!(
                "io.containerd.content.v1.content/blobs/sha256/{}",
                &CONFIG[7..]
            ),
            &format!(
                "io.containerd.content.v1.content/blobs/sha256/{}",
                &MANIFEST[7..]
            ),
            &format!(
                "io.containerd.content.v1.content/blobs/sha256/{}",
                &INDEX[7..]
            ),
        ] {
            let to = dir.path().join(sub);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(src.join(sub), to).unwrap();
        }
        dir
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn at(secs: u64, nanos: u32) -> Option<std::time::SystemTime> {
        Some(UNIX_EPOCH + Duration::new(secs, nanos))
    }

    /// What `containerd::discover` over gRPC returned for this store while
    /// its containerd ran (with the store at `root`); `ctr images ls`,
    /// `ctr snapshots ls` and `ctr snapshots mounts` agreed with it.
    fn grpc_discovery(root: &Path) -> Discovery {
        let snapshots = root.join("io.containerd.snapshotter.v1.overlayfs");
        let fs = |id: u64| snapshots.join(format!("snapshots/{id}/fs"));
        let blobs = root.join("io.containerd.content.v1.content/blobs/sha256");
        let image = |ns: &str, refs: &[&str], index: bool, pinned, created| {
            let mut blobs = strings(&[LAYER0, MANIFEST, CONFIG, LAYER1]);
            if index {
                blobs.push(INDEX.to_string());
            }
            blobs.sort();
            ImageRecord {
                namespace: ns.into(),
                id: CONFIG.into(),
                refs: strings(refs),
                layers: strings(&[CHAIN0, CHAIN1]),
                blobs,
                pinned,
                created,
            }
        };
        let layer = |ns: &str, chain_id: &str, id| LayerRecord {
            namespace: ns.into(),
            chain_id: chain_id.into(),
            dir: fs(id),
        };
        let container = |ns: &str, id: &str, name: &str, pod, dir| ContainerRecord {
            namespace: ns.into(),
            id: id.into(),
            name: name.into(),
            image: "docker.io/demo/files:base".into(),
            image_id: Some(CONFIG.into()),
            pod,
            writable_dir: Some(fs(dir)),
            log_files: Vec::new(),
        };
        let pod = PodRef {
            pod: "web-0".into(),
            namespace: "prod".into(),
            uid: "0f9c2d4e-uid".into(),
            container: "app".into(),
        };
        Discovery {
            runtime: RuntimeKind::Containerd,
            pull_dirs: vec![root.join("io.containerd.content.v1.content/ingest")],
            image_root: snapshots.clone(),
            images: vec![
                image(
                    "default",
                    &["docker.io/demo/files:base"],
                    false,
                    false,
                    at(1_795_704_433, 285_161_246),
                ),
                image(
                    "k8s.io",
                    &[
                        "docker.io/demo/files:alias",
                        "docker.io/demo/files:base",
                        &format!("docker.io/demo/files@{MANIFEST}"),
                        CONFIG,
                    ],
                    false,
                    true,
                    at(1_795_704_432, 930_618_611),
                ),
                image(
                    "k8s.io",
                    &["docker.io/demo/files:index"],
                    true,
                    false,
                    at(1_795_704_432, 766_830_285),
                ),
            ],
            layers: vec![
                layer("default", CHAIN0, 3),
                layer("default", CHAIN1, 4),
                layer("k8s.io", CHAIN0, 1),
                layer("k8s.io", CHAIN1, 2),
            ],
            containers: vec![
                container("default", "plain-1", "plain-1", None, 7),
                container("k8s.io", "app-1", "app", Some(pod), 5),
            ],
            blobs: [LAYER0, MANIFEST, INDEX, CONFIG, LAYER1]
                .map(|d| BlobRecord {
                    digest: d.into(),
                    path: blobs.join(&d[7..]),
                })
                .into_iter()
                .collect(),
            pulls: Vec::new(),
            problems: Vec::new(),
        }
    }

    /// Compares field by field ([`Discovery`] is not `PartialEq`).
    fn assert_same(got: &Discovery, want: &Discovery) {
        assert_eq!(got.runtime, want.runtime);
        assert_eq!(got.image_root, want.image_root);
        assert_eq!(got.problems, want.problems);
        assert_eq!(got.images, want.images);
        assert_eq!(got.layers, want.layers);
        assert_eq!(got.containers, want.containers);
        assert_eq!(got.blobs, want.blobs);
        assert_eq!(got.pulls, want.pulls);
    }

    #[test]
    fn files_give_what_grpc_gave_for_the_same_store() {
        let root = fixture();
        let got = discover_from_files(&root).unwrap();
        let mut blobs = fixture().join("io.containerd.content.v1.content/blobs/sha256");
        blobs.push(&LAYER0[7..]);
        // The layer blobs are not in the fixture: the fallback never reads them.
        assert!(!blobs.exists());
        assert_same(&got, &grpc_discovery(&root));
    }

    #[test]
    fn a_missing_or_damaged_meta_db_is_an_error_naming_it() {
        let dir = copy_fixture();
        let path = dir.path().join("io.containerd.metadata.v1.bolt/meta.db");
        let bytes = std::fs::read(&path).unwrap();
        let damaged = [
            bytes[..bytes.len() / 3].to_vec(),
            vec![0x5a; 64 << 10],
            Vec::new(),
        ];
        for data in damaged {
            std::fs::write(&path, &data).unwrap();
            let err = discover_from_files(dir.path()).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains("no consistent copy in 4 attempts"), "{msg}");
        }
        std::fs::remove_file(&path).unwrap();
        let msg = discover_from_files(dir.path()).unwrap_err().to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("No such file"), "{msg}");
    }

    #[test]
    fn without_metadata_db_images_remain_and_layers_are_problems() {
        let dir = copy_fixture();
        let path = dir
            .path()
            .join("io.containerd.snapshotter.v1.overlayfs/metadata.db");
        let full = grpc_discovery(dir.path());
        let bytes = std::fs::read(&path).unwrap();
        // Missing; cut inside the second meta page; not a bbolt file.
        for data in [None, Some(&bytes[..4096 + 100]), Some(&[7u8; 9000][..])] {
            match data {
                None => std::fs::remove_file(&path).unwrap(),
                Some(d) => std::fs::write(&path, d).unwrap(),
            }
            let got = discover_from_files(dir.path()).unwrap();
            assert_eq!(got.images, full.images);
            assert_eq!(got.blobs, full.blobs);
            assert!(got.layers.is_empty());
            let unplaced: Vec<_> = got.containers.iter().map(|c| &c.writable_dir).collect();
            assert_eq!(unplaced, [&None, &None]);
            let db = path.display().to_string();
            assert_eq!(got.problems[0].source, db);
            // One problem for the file, one per container it would place.
            assert_eq!(got.problems.len(), 3, "{:?}", got.problems);
            let kind = match data {
                None => ProblemKind::Missing,
                Some(_) => ProblemKind::Malformed,
            };
            let kinds: Vec<_> = got.problems.iter().map(|p| (p.kind, p.reader)).collect();
            let missing = (ProblemKind::Missing, READER);
            assert_eq!(kinds, [(kind, READER), missing, missing]);
        }
    }

    #[test]
    fn a_missing_blob_is_a_problem_naming_its_file() {
        let dir = copy_fixture();
        let blob = dir
            .path()
            .join("io.containerd.content.v1.content/blobs/sha256")
            .join(&CONFIG[7..]);
        std::fs::remove_file(&blob).unwrap();
        let got = discover_from_files(dir.path()).unwrap();
        // Every image needs the config; each group is one problem.
        assert_eq!(got.problems.len(), 3, "{:?}", got.problems);
        for p in &got.problems {
            assert!(p.source.ends_with("meta.db"), "{p:?}");
            assert!(p.message.contains(&blob.display().to_string()), "{p:?}");
            assert_eq!((p.kind, p.reader), (ProblemKind::Missing, READER), "{p:?}");
        }
        // CRI's `sha256:<config>` name still gives the k8s.io image its ID.
        let ids: Vec<_> = got
            .images
            .iter()
            .map(|i| (&i.namespace[..], i.layers.len()))
            .collect();
        assert_eq!(ids, [("k8s.io", 0)]);
        assert_eq!(got.layers.len(), 4);
    }

    #[test]
    fn random_damage_to_either_database_never_panics() {
        let dir = copy_fixture();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for db in [
            "io.containerd.metadata.v1.bolt/meta.db",
            "io.containerd.snapshotter.v1.overlayfs/metadata.db",
        ] {
            let path = dir.path().join(db);
            let original = std::fs::read(&path).unwrap();
            for _ in 0..40 {
                let mut data = original.clone();
                for _ in 0..(next() % 16 + 1) {
                    // Past the metas, so the damage reaches the trees.
                    let at = 8192 + (next() as usize) % (data.len() - 8192);
                    data[at] = next() as u8;
                }
                std::fs::write(&path, &data).unwrap();
                let _ = discover_from_files(dir.path());
            }
            std::fs::write(&path, &original).unwrap();
        }
    }

    /// Writes ingest dir `name` as containerd's content store does.
    fn write_ingest(root: &Path, name: &str, files: &[(&str, &[u8])]) -> PathBuf {
        let dir = root
            .join("io.containerd.content.v1.content/ingest")
            .join(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (file, data) in files {
            std::fs::write(dir.join(file), data).unwrap();
        }
        dir
    }

    #[test]
    fn ingest_dirs_are_pulls_with_the_size_of_data_as_offset() {
        let dir = copy_fixture();
        let root = dir.path();
        write_ingest(
            root,
            "a",
            &[
                ("ref", b"k8s.io/4/layer-sha256:ab\n"),
                ("total", b"5000"),
                ("data", &[0u8; 1234]),
                ("startedat", b"2026-11-26T15:39:00Z"),
            ],
        );
        write_ingest(
            root,
            "b",
            &[("ref", b"default/1/index-sha256:cd"), ("data", b"")],
        );
        // Committed or aborted while listed: no data any more.
        write_ingest(root, "gone", &[("ref", b"k8s.io/5/layer-sha256:ef")]);
        let bad = write_ingest(root, "bad", &[("ref", b"no-namespace"), ("data", b"")]);
        let got = discover_from_files(root).unwrap();
        let lone: Vec<_> = got
            .pulls
            .iter()
            .map(|p| {
                let l = &p.layers[0];
                let ingest = p.ingest.as_deref().unwrap();
                (
                    &p.namespace[..],
                    ingest,
                    l.compressed_bytes,
                    l.downloaded_bytes,
                    l.unpacks,
                )
            })
            .collect();
        assert_eq!(
            lone,
            [
                ("default", "index-sha256:cd", 0, 0, false),
                ("k8s.io", "layer-sha256:ab", 5000, 1234, true),
            ]
        );
        let problems: Vec<_> = got.problems.iter().map(|p| (&p.source, p.kind)).collect();
        assert_eq!(
            problems,
            [(&bad.display().to_string(), ProblemKind::Malformed)]
        );
    }

    #[test]
    fn run_ready_refuses_a_future_that_waits() {
        assert_eq!(run_ready(async { 7 }), Some(7));
        assert_eq!(run_ready(std::future::pending::<()>()), None);
    }
}
