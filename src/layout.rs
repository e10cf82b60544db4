//! Where things live on the node: the paths and sockets every face needs.
//! A plain value: how it is spelled on the command line, in the environment
//! or in the config file is [`crate::config`]'s business.

use std::path::PathBuf;
use std::time::Duration;

/// The node's layout. Defaults are the standard paths of a kubelet node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeLayout {
    /// Docker's data root (its overlay2 store lives below it).
    pub docker_root: PathBuf,
    /// containerd's gRPC socket.
    pub containerd_address: PathBuf,
    /// containerd's root (used when containerd does not say where its stores are).
    pub containerd_root: PathBuf,
    /// How long to wait for containerd before reporting it unreachable.
    pub containerd_timeout: Duration,
    /// The kubelet's root directory; its filesystem is the nodefs signal.
    pub kubelet_root: PathBuf,
    /// The kubelet's config file (eviction and image GC thresholds).
    pub kubelet_config: PathBuf,
    /// Where the kubelet writes pod logs.
    pub pod_logs: PathBuf,
}

impl Default for NodeLayout {
    fn default() -> Self {
        NodeLayout {
            docker_root: PathBuf::from("/var/lib/docker"),
            containerd_address: PathBuf::from("/run/containerd/containerd.sock"),
            containerd_root: PathBuf::from("/var/lib/containerd"),
            containerd_timeout: Duration::from_secs(5),
            kubelet_root: PathBuf::from("/var/lib/kubelet"),
            kubelet_config: PathBuf::from("/var/lib/kubelet/config.yaml"),
            pod_logs: PathBuf::from("/var/log/pods"),
        }
    }
}
