//! Where things live on the node: the paths and sockets every face needs.
//!
//! A path comes from the first of three places that has it:
//!
//! 1. Headroom's own setting (flag, `HEADROOM_*` variable, config file:
//!    [`crate::config`] resolves those and hands over a [`LayoutSettings`]);
//! 2. what [`discover`] found on the node: the command lines of the kubelet
//!    (or k3s), containerd and dockerd, the config files they name, else the
//!    known locations of the distributions ([`discover::KNOWN`]);
//! 3. the built-in default, kubeadm's layout ([`NodeLayout::default`]).
//!
//! [`NodeLayout::resolve`] is the one place that applies this order, and it
//! records where each path came from ([`NodeLayout::sources`]) for the status
//! document.

pub mod args;
pub mod discover;
pub mod procs;
pub mod root;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::kubelet::KubeletFlags;
use crate::runtime::Problem;

pub use discover::{discover, Found, Located};

/// The node's layout. Defaults are the standard paths of a kubeadm node.
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
    /// containers-storage's `storage.conf` (CRI-O's and Podman's store:
    /// its graph root, run root, driver and additional image stores).
    pub containers_storage_conf: PathBuf,
    /// containers-storage's graph root when set or found (`crio --root`);
    /// `None`: `storage.conf`'s `graphroot`, else its default.
    pub containers_storage_root: Option<PathBuf>,
    /// The kubelet's root directory; its filesystem is the nodefs signal.
    pub kubelet_root: PathBuf,
    /// The kubelet's config file (eviction and image GC thresholds).
    pub kubelet_config: PathBuf,
    /// Whether the kubelet reads `kubelet_config`: not when it was found
    /// running without `--config` (k3s, RKE2: drop-ins only).
    pub kubelet_reads_config: bool,
    /// Where the kubelet writes pod logs.
    pub pod_logs: PathBuf,
    /// The kubelet's `--config-dir` drop-in directory, when it has one.
    pub kubelet_config_dir: Option<PathBuf>,
    /// The threshold flags on the kubelet's command line (they beat its files).
    pub kubelet_flags: KubeletFlags,
    /// Where each path came from, by key; empty when the layout was not
    /// resolved against the node (a library caller built it).
    pub sources: BTreeMap<String, PathSource>,
    /// What discovery could not read (a containerd or Docker config file).
    pub problems: Vec<Problem>,
}

impl Default for NodeLayout {
    fn default() -> Self {
        NodeLayout {
            docker_root: PathBuf::from("/var/lib/docker"),
            containerd_address: PathBuf::from("/run/containerd/containerd.sock"),
            containerd_root: PathBuf::from("/var/lib/containerd"),
            containerd_timeout: Duration::from_secs(5),
            containers_storage_conf: PathBuf::from("/etc/containers/storage.conf"),
            containers_storage_root: None,
            kubelet_root: PathBuf::from("/var/lib/kubelet"),
            kubelet_config: PathBuf::from("/var/lib/kubelet/config.yaml"),
            kubelet_reads_config: true,
            pod_logs: PathBuf::from("/var/log/pods"),
            kubelet_config_dir: None,
            kubelet_flags: KubeletFlags::default(),
            sources: BTreeMap::new(),
            problems: Vec::new(),
        }
    }
}

/// Where one layout path came from (the status document's
/// `layout.paths[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathSource {
    /// Which of the three places gave it.
    pub origin: PathOrigin,
    /// What exactly: the setting (`--kubelet-root`, `HEADROOM_KUBELET_ROOT`,
    /// the config file), the evidence (`kubelet --root-dir (pid 812)`,
    /// `containerd config /etc/containerd/config.toml`, `known location of
    /// k3s`), or `default`.
    pub from: String,
}

/// The place a layout path came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PathOrigin {
    /// Headroom's own flag, variable or config file key.
    Setting,
    /// Found on the node: a command line, a config file, a known location.
    Discovered,
    /// The built-in default (kubeadm's layout).
    Default,
}

/// A path Headroom was told explicitly, and where it was told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The path.
    pub path: PathBuf,
    /// The place: `--kubelet-root`, `HEADROOM_KUBELET_ROOT`, or the file.
    pub at: String,
}

/// Headroom's explicit layout settings; `None` where none was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayoutSettings {
    /// `docker_root`.
    pub docker_root: Option<Setting>,
    /// `containerd_address`.
    pub containerd_address: Option<Setting>,
    /// `containerd_root`.
    pub containerd_root: Option<Setting>,
    /// `containers_storage_conf`.
    pub containers_storage_conf: Option<Setting>,
    /// `containers_storage_root`.
    pub containers_storage_root: Option<Setting>,
    /// `kubelet_root`.
    pub kubelet_root: Option<Setting>,
    /// `kubelet_config`.
    pub kubelet_config: Option<Setting>,
    /// `pod_logs`.
    pub pod_logs: Option<Setting>,
}

impl NodeLayout {
    /// The layout: each path from Headroom's setting, else what was `found`
    /// on the node, else the default. Without `found` (discovery did not
    /// run) nothing is recorded in [`NodeLayout::sources`].
    pub fn resolve(
        settings: &LayoutSettings,
        found: Option<&Found>,
        containerd_timeout: Duration,
    ) -> NodeLayout {
        let d = NodeLayout::default();
        let none = Found::default();
        let f = found.unwrap_or(&none);
        let mut sources = BTreeMap::new();
        let mut pick =
            |key: &str, set: &Option<Setting>, got: &Option<Located>, default: PathBuf| {
                let (path, source) = choose(set, got, default);
                sources.insert(key.to_string(), source);
                path
            };
        let layout = NodeLayout {
            docker_root: pick(
                "docker_root",
                &settings.docker_root,
                &f.docker_root,
                d.docker_root,
            ),
            containerd_address: pick(
                "containerd_address",
                &settings.containerd_address,
                &f.containerd_address,
                d.containerd_address,
            ),
            containerd_root: pick(
                "containerd_root",
                &settings.containerd_root,
                &f.containerd_root,
                d.containerd_root,
            ),
            containerd_timeout,
            containers_storage_conf: pick(
                "containers_storage_conf",
                &settings.containers_storage_conf,
                &None,
                d.containers_storage_conf,
            ),
            containers_storage_root: None,
            kubelet_root: pick(
                "kubelet_root",
                &settings.kubelet_root,
                &f.kubelet_root,
                d.kubelet_root,
            ),
            kubelet_config: pick(
                "kubelet_config",
                &settings.kubelet_config,
                &f.kubelet_config,
                d.kubelet_config,
            ),
            pod_logs: pick("pod_logs", &settings.pod_logs, &f.pod_logs, d.pod_logs),
            kubelet_reads_config: true,
            kubelet_config_dir: f.kubelet_config_dir.as_ref().map(|l| l.path.clone()),
            kubelet_flags: f.kubelet_flags.clone(),
            sources: BTreeMap::new(),
            problems: f.problems.clone(),
        };
        if let Some(dir) = &f.kubelet_config_dir {
            sources.insert("kubelet_config_dir".into(), dir.source());
        }
        // No default of its own: storage.conf's graphroot stands in.
        let storage_root = optional(
            &settings.containers_storage_root,
            &f.containers_storage_root,
        );
        if let Some((_, source)) = &storage_root {
            sources.insert("containers_storage_root".into(), source.clone());
        }
        // A kubelet seen without --config reads no base file, whatever
        // lies at the default path; a setting still names one to read.
        let reads_config = settings.kubelet_config.is_some() || f.kubelet_without_config.is_none();
        if let (false, Some(from)) = (reads_config, &f.kubelet_without_config) {
            let source = PathSource {
                origin: PathOrigin::Discovered,
                from: format!("{from}: no --config, not read"),
            };
            sources.insert("kubelet_config".into(), source);
        }
        NodeLayout {
            kubelet_reads_config: reads_config,
            containers_storage_root: storage_root.map(|(path, _)| path),
            sources: if found.is_some() {
                sources
            } else {
                BTreeMap::new()
            },
            ..layout
        }
    }
}

/// Setting > found > default, with where the winner came from.
fn choose(set: &Option<Setting>, got: &Option<Located>, default: PathBuf) -> (PathBuf, PathSource) {
    match (set, got) {
        (Some(s), _) => (
            s.path.clone(),
            PathSource {
                origin: PathOrigin::Setting,
                from: s.at.clone(),
            },
        ),
        (None, Some(l)) => (l.path.clone(), l.source()),
        (None, None) => (
            default,
            PathSource {
                origin: PathOrigin::Default,
                from: "default".into(),
            },
        ),
    }
}

/// Setting > found, with where the winner came from; `None` when neither has it.
fn optional(set: &Option<Setting>, got: &Option<Located>) -> Option<(PathBuf, PathSource)> {
    match (set, got) {
        (None, None) => None,
        _ => Some(choose(set, got, PathBuf::new())),
    }
}

/// `path` (a host path as the node's processes write it) under `root`.
pub fn under(root: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix("/") {
        Ok(relative) => root.join(relative),
        Err(_) => root.join(path),
    }
}
