//! The record files of one containers-storage store, read whole and
//! without its locks: containers-storage replaces each file by a rename, so
//! a read sees one version whole, and a store being written is read again at
//! the next pass. A file that is corrupt or cut short is a problem naming
//! it; the other files stand.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::READER;
use crate::runtime::{Problem, ProblemKind};
use crate::small_file;

/// The largest record file read (`layers.json` of a node with thousands of
/// layers is a few MiB).
const MAX_JSON_BYTES: u64 = 64 << 20;

/// One layer of `layers.json` (or `volatile-layers.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct RawLayer {
    /// 64-hex ID: the directory `overlay/<id>`.
    pub id: String,
    /// The layer below, if any.
    #[serde(default)]
    pub parent: Option<String>,
    /// Digest of its uncompressed tar stream: the OCI diff ID.
    #[serde(rename = "diff-digest", default)]
    pub diff_digest: Option<String>,
    /// Digest of the blob it was pulled as.
    #[serde(rename = "compressed-diff-digest", default)]
    pub compressed_digest: Option<String>,
    /// `incomplete` while the layer is being written (a pull in flight).
    #[serde(default)]
    pub flags: HashMap<String, serde_json::Value>,
}

impl RawLayer {
    /// Whether containers-storage is still writing it.
    pub fn incomplete(&self) -> bool {
        self.flags.get("incomplete") == Some(&serde_json::Value::Bool(true))
    }
}

/// One image of `images.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct RawImage {
    /// 64-hex ID: the image config's digest.
    pub id: String,
    /// Its names (`registry/repository:tag`).
    #[serde(default)]
    pub names: Vec<String>,
    /// Its top layer; none for an image without layers.
    #[serde(default)]
    pub layer: Option<String>,
    /// When it was stored (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
}

/// One container of `containers.json` (or `volatile-containers.json`).
#[derive(Debug, Clone, Deserialize)]
pub struct RawContainer {
    /// 64-hex ID.
    pub id: String,
    /// Its names.
    #[serde(default)]
    pub names: Vec<String>,
    /// The image ID it was created from.
    #[serde(default)]
    pub image: String,
    /// Its writable layer's ID.
    #[serde(default)]
    pub layer: String,
    /// The runtime's own record, a JSON document in a string.
    #[serde(default)]
    pub metadata: Option<String>,
}

/// The files of one store: the graph root's, and for the primary store the
/// run root's volatile ones.
#[derive(Debug, Clone)]
pub struct StoreDirs {
    /// The store's root (the graph root, or an additional image store).
    pub root: PathBuf,
    /// The run root, for the primary store only.
    pub run_root: Option<PathBuf>,
}

impl StoreDirs {
    /// `<root>/overlay/<id>/diff`: a layer's files.
    pub fn diff_dir(&self, layer_id: &str) -> PathBuf {
        self.root.join("overlay").join(layer_id).join("diff")
    }

    /// `images.json`.
    pub fn images_file(&self) -> PathBuf {
        self.root.join("overlay-images").join("images.json")
    }

    /// `layers.json`, then the volatile layers of the graph and run roots.
    pub fn layer_files(&self) -> Vec<PathBuf> {
        self.files("overlay-layers", "layers.json", "volatile-layers.json")
    }

    /// `containers.json`, then the volatile containers of both roots.
    pub fn container_files(&self) -> Vec<PathBuf> {
        self.files(
            "overlay-containers",
            "containers.json",
            "volatile-containers.json",
        )
    }

    fn files(&self, dir: &str, stable: &str, volatile: &str) -> Vec<PathBuf> {
        let graph = self.root.join(dir);
        let mut files = vec![graph.join(stable), graph.join(volatile)];
        files.extend(self.run_root.iter().map(|r| r.join(dir).join(volatile)));
        files
    }
}

/// The records of the JSON list at `path`; none
/// when it does not exist; a problem naming it when it cannot be read or
/// parsed whole.
pub fn records<T: DeserializeOwned>(path: &Path, problems: &mut Vec<Problem>) -> Vec<T> {
    match read(path) {
        Ok(records) => records,
        Err((kind, why)) => {
            problems.push(READER.problem(kind, path.display().to_string(), why));
            Vec::new()
        }
    }
}

fn read<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, (ProblemKind, String)> {
    let bytes =
        small_file::read(path, MAX_JSON_BYTES).map_err(|e| (read_kind(&e), e.to_string()))?;
    match bytes {
        None => Ok(Vec::new()),
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| (ProblemKind::Malformed, format!("invalid JSON: {e}"))),
    }
}

/// The kind of problem a bounded read's error is: a file too big or not
/// regular is malformed, the rest as any I/O error.
pub fn read_kind(e: &io::Error) -> ProblemKind {
    match e.kind() {
        io::ErrorKind::FileTooLarge | io::ErrorKind::InvalidInput => ProblemKind::Malformed,
        _ => ProblemKind::of_io(e),
    }
}

/// Whether `id` may name a directory: 64 lowercase hex, nothing else.
pub fn checked_id(id: &str, what: &str, file: &Path, problems: &mut Vec<Problem>) -> bool {
    let ok = crate::digest::is_hex64(id);
    if !ok {
        let message = format!("{what} {id:.80?} is not a 64-hex ID; skipped");
        problems.push(READER.problem(ProblemKind::Malformed, file.display().to_string(), message));
    }
    ok
}
