//! containerd reader over gRPC (STUB: interface only; being implemented).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::Discovery;

/// Why containerd could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    /// Placeholder.
    #[error("{socket}: {message}")]
    Unreachable {
        /// The socket.
        socket: PathBuf,
        /// What happened.
        message: String,
    },
}

/// Reads every namespace of the containerd at `socket`.
pub async fn discover(
    socket: &Path,
    root: &Path,
    timeout: Duration,
) -> Result<Discovery, ContainerdError> {
    let _ = (socket, root, timeout);
    unimplemented!()
}
