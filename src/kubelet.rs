//! kubelet configuration (STUB: interface only; being implemented).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A kubelet disk eviction signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// `nodefs.available`
    NodefsAvailable,
    /// `nodefs.inodesFree`
    NodefsInodesFree,
    /// `imagefs.available`
    ImagefsAvailable,
    /// `imagefs.inodesFree`
    ImagefsInodesFree,
}

/// A threshold as written in the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A percentage of capacity (`10%`).
    Percent(f64),
    /// An absolute quantity (`1Gi`, `500Mi`, `1000` inodes).
    Quantity(u64),
}

impl Threshold {
    /// The threshold in bytes (or inodes) for a filesystem of `capacity`.
    pub fn resolve(&self, capacity: u64) -> u64 {
        let _ = capacity;
        unimplemented!()
    }
}

/// The parts of the kubelet configuration Headroom needs.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeletConfig {
    /// Effective hard eviction thresholds (after the defaulting rules).
    pub eviction_hard: BTreeMap<Signal, Threshold>,
    /// Soft eviction thresholds.
    pub eviction_soft: BTreeMap<Signal, Threshold>,
    /// `imageGCHighThresholdPercent`.
    pub image_gc_high_percent: u8,
    /// `imageGCLowThresholdPercent`.
    pub image_gc_low_percent: u8,
    /// `imageMinimumGCAge`.
    pub image_minimum_gc_age: Duration,
    /// The file these came from; `None` means the Linux defaults.
    pub source: Option<PathBuf>,
}

/// Why the kubelet config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// Placeholder.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Reads the kubelet config at `path`; a missing file gives the defaults.
pub fn load(path: &Path) -> Result<KubeletConfig, KubeletError> {
    let _ = path;
    unimplemented!()
}
