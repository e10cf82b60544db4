//! Filesystems behind paths (STUB: interface only; being implemented).

use std::path::{Path, PathBuf};

/// A mounted filesystem and its statvfs figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// Mount point (from /proc/self/mountinfo).
    pub mountpoint: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// `major:minor` of the device.
    pub device: String,
    /// Size in bytes (f_blocks × f_frsize).
    pub capacity_bytes: u64,
    /// Available to unprivileged users (f_bavail × f_frsize).
    pub available_bytes: u64,
    /// Total inodes (f_files).
    pub inodes: u64,
    /// Free inodes (f_ffree).
    pub inodes_free: u64,
}

/// Why a filesystem could not be described.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Placeholder.
    #[error("{path}: {source}")]
    Stat {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// The filesystem holding `path` (or its nearest existing ancestor).
pub fn filesystem_of(path: &Path) -> Result<FsInfo, HostError> {
    let _ = path;
    unimplemented!()
}

/// The node name: `NODE_NAME` if set, else the host name.
pub fn node_name() -> String {
    unimplemented!()
}
