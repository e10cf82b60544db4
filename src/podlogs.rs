//! Pod logs under /var/log/pods (STUB: interface only; being implemented).

use std::path::{Path, PathBuf};

use crate::runtime::{PodRef, Problem};

/// The log files of one container of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodLogs {
    /// Pod and container the files belong to.
    pub pod: PodRef,
    /// The log files (current and rotated).
    pub files: Vec<PathBuf>,
}

/// Finds every pod container's log files under `root`.
pub fn discover(root: &Path) -> (Vec<PodLogs>, Vec<Problem>) {
    let _ = root;
    unimplemented!()
}
