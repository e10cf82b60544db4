//! Docker overlay2 store reader (STUB: interface only; being implemented).

use std::path::{Path, PathBuf};

use super::Discovery;

/// Why Docker's store could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// Placeholder.
    #[error("{path}: no Docker overlay2 store")]
    NotFound {
        /// Where it was looked for.
        path: PathBuf,
    },
}

/// Reads Docker's overlay2 metadata under `docker_root`.
pub fn discover(docker_root: &Path) -> Result<Discovery, DockerError> {
    let _ = docker_root;
    unimplemented!()
}
