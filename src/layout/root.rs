//! Entering the host: with `host_root` other than `/` (the DaemonSet mounts
//! the host's `/` at `/host`), a face chroots into it before it reads the
//! node, so that the paths the kubelet, containerd and Docker write on their
//! command lines and in their config files hold as written. Then the layout
//! is discovered from the host's `/proc` and resolved.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{discover, LayoutSettings, NodeLayout};

/// Why the host's root could not be entered.
#[derive(Debug, thiserror::Error)]
#[error(
    "host_root {}: cannot chroot into it: {source} (the container needs CAP_SYS_CHROOT and the host's / mounted there)",
    .path.display()
)]
pub struct HostRootError {
    /// The `host_root`.
    pub path: PathBuf,
    /// The cause.
    pub source: nix::Error,
}

/// Chroots into `host_root` (nothing to do for `/`), then discovers the
/// node's layout and resolves it against Headroom's own `settings`.
pub fn on_node(
    host_root: &Path,
    settings: &LayoutSettings,
    containerd_timeout: Duration,
) -> Result<NodeLayout, HostRootError> {
    enter(host_root)?;
    let found = discover(Path::new("/"));
    Ok(NodeLayout::resolve(
        settings,
        Some(&found),
        containerd_timeout,
    ))
}

/// `chroot(host_root)` and `chdir("/")`, unless it is `/` already.
fn enter(host_root: &Path) -> Result<(), HostRootError> {
    if host_root == Path::new("/") {
        return Ok(());
    }
    let failed = |source| HostRootError {
        path: host_root.to_owned(),
        source,
    };
    nix::unistd::chroot(host_root).map_err(failed)?;
    nix::unistd::chdir("/").map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fault_a_failed_chroot_names_host_root_and_the_capability() {
        // Unprivileged, or into a missing directory: either way it fails.
        let err = enter(Path::new("/nonexistent/host")).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("host_root /nonexistent/host: cannot chroot"),
            "{message}"
        );
        assert!(message.contains("CAP_SYS_CHROOT"), "{message}");
    }
}
