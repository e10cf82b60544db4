//! The safe directory walker (STUB: interface only; being implemented).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How the walker treats the filesystem. Every choice is explicit.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Worker threads; 0 means one per core.
    pub threads: usize,
    /// Count a file with several hard links once per walk, keyed by (dev, inode).
    pub dedup_hard_links: bool,
    /// Stay on the filesystem of the root (never cross a mount point).
    pub same_filesystem: bool,
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            threads: 0,
            dedup_hard_links: true,
            same_filesystem: true,
        }
    }
}

/// Bytes and inodes of a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Sum of st_blocks × 512 (what `du -B1` reports).
    pub disk_bytes: u64,
    /// Sum of st_size (what `du -B1 --apparent-size` reports).
    pub apparent_bytes: u64,
    /// Distinct inodes, the root included.
    pub inodes: u64,
}

/// Why an entry could not be examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// It disappeared between being listed and being examined (ENOENT).
    Vanished,
    /// Permission denied (EACCES, EPERM).
    Denied,
    /// Any other I/O error.
    Io,
}

/// One entry the walker could not examine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// The entry.
    pub path: PathBuf,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The OS error in words.
    pub message: String,
}

/// The result of walking one root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walk {
    /// What the tree holds.
    pub usage: Usage,
    /// Entries examined (hard-link duplicates included).
    pub entries: u64,
    /// Error counts by kind.
    pub error_counts: BTreeMap<ErrorKind, u64>,
    /// The first errors met, at most [`MAX_ERROR_SAMPLES`].
    pub errors: Vec<ScanError>,
}

/// How many errors a [`Walk`] keeps with their paths.
pub const MAX_ERROR_SAMPLES: usize = 32;

/// Walks `root` (a directory or a single file) and measures it.
pub fn walk(root: &Path, opts: &WalkOptions) -> Walk {
    let _ = (root, opts);
    unimplemented!("walker being written")
}

/// Walks every root, in parallel, each measured on its own.
pub fn walk_many(roots: &[PathBuf], opts: &WalkOptions) -> Vec<Walk> {
    roots.iter().map(|r| walk(r, opts)).collect()
}
