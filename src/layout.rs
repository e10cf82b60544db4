//! Where things live on the node: the paths and sockets every face takes as
//! options (`--docker-root`, …), also settable as `HEADROOM_*` variables.

use std::path::PathBuf;
use std::time::Duration;

/// The node's layout. Defaults are the standard paths of a kubelet node.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct NodeLayout {
    /// Docker's data root (its overlay2 store lives below it).
    #[arg(
        long,
        env = "HEADROOM_DOCKER_ROOT",
        default_value = "/var/lib/docker",
        global = true
    )]
    pub docker_root: PathBuf,
    /// containerd's gRPC socket.
    #[arg(
        long,
        env = "HEADROOM_CONTAINERD_ADDRESS",
        default_value = "/run/containerd/containerd.sock",
        global = true
    )]
    pub containerd_address: PathBuf,
    /// containerd's root (used when containerd does not say where its stores are).
    #[arg(
        long,
        env = "HEADROOM_CONTAINERD_ROOT",
        default_value = "/var/lib/containerd",
        global = true
    )]
    pub containerd_root: PathBuf,
    /// How long to wait for containerd before reporting it unreachable.
    #[arg(
        long,
        env = "HEADROOM_CONTAINERD_TIMEOUT",
        default_value = "5s",
        value_parser = humantime::parse_duration,
        global = true
    )]
    pub containerd_timeout: Duration,
    /// The kubelet's root directory; its filesystem is the nodefs signal.
    #[arg(
        long,
        env = "HEADROOM_KUBELET_ROOT",
        default_value = "/var/lib/kubelet",
        global = true
    )]
    pub kubelet_root: PathBuf,
    /// The kubelet's config file (eviction and image GC thresholds).
    #[arg(
        long,
        env = "HEADROOM_KUBELET_CONFIG",
        default_value = "/var/lib/kubelet/config.yaml",
        global = true
    )]
    pub kubelet_config: PathBuf,
    /// Where the kubelet writes pod logs.
    #[arg(
        long,
        env = "HEADROOM_POD_LOGS",
        default_value = "/var/log/pods",
        global = true
    )]
    pub pod_logs: PathBuf,
}
