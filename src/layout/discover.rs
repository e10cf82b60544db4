//! Finds the node's layout: the command lines of the kubelet (or k3s, whose
//! kubelet runs inside `k3s server|agent`), containerd and dockerd under
//! `<root>/proc`, the config files they name, else [`KNOWN`] locations.
//! Every path read is taken under `root` ("/" on a node, after the chroot
//! into `host_root`); the paths found are host paths, as the processes
//! write them.

use std::path::{Path, PathBuf};

use super::args::Flags;
use super::procs::{processes, Proc};
use super::{under, PathOrigin, PathSource};
use crate::kubelet::{self, KubeletFlags, KubeletSources};
use crate::runtime::{Problem, ProblemKind, Reader, RuntimeKind};
use crate::small_file;

/// The most bytes of a daemon's config file read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// CRI-O's config file when its command line names none.
const DEFAULT_CRIO_CONFIG: &str = "/etc/crio/crio.conf";

/// The kubelet config read when nothing names one (kubeadm's).
const DEFAULT_KUBELET_CONFIG: &str = "/var/lib/kubelet/config.yaml";

/// A path found on the node, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located {
    /// The host path.
    pub path: PathBuf,
    /// Where it was found, e.g. `kubelet --root-dir (pid 812)`.
    pub from: String,
}

impl Located {
    fn new(path: impl Into<PathBuf>, from: impl Into<String>) -> Option<Located> {
        Some(Located {
            path: path.into(),
            from: from.into(),
        })
    }

    /// As the status document reports it.
    pub fn source(&self) -> PathSource {
        PathSource {
            origin: PathOrigin::Discovered,
            from: self.from.clone(),
        }
    }
}

/// What [`discover`] found; `None` where nothing was.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Found {
    /// Docker's data root.
    pub docker_root: Option<Located>,
    /// containerd's socket.
    pub containerd_address: Option<Located>,
    /// containerd's root.
    pub containerd_root: Option<Located>,
    /// containers-storage's graph root as CRI-O is told it (`crio --root`,
    /// `crio.conf`'s `[crio] root`).
    pub containers_storage_root: Option<Located>,
    /// The kubelet's root directory.
    pub kubelet_root: Option<Located>,
    /// The kubelet's `--config` file.
    pub kubelet_config: Option<Located>,
    /// The kubelet's process, when it was seen without `--config`.
    pub kubelet_without_config: Option<String>,
    /// The kubelet's `--config-dir`.
    pub kubelet_config_dir: Option<Located>,
    /// The kubelet's `podLogsDir`.
    pub pod_logs: Option<Located>,
    /// The kubelet's threshold flags.
    pub kubelet_flags: KubeletFlags,
    /// Config files named by a daemon that could not be read.
    pub problems: Vec<Problem>,
}

/// A distribution's known locations, probed when its daemons' command lines
/// are not visible (`hidepid`, or Headroom started first).
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// The distribution.
    pub name: &'static str,
    /// A path only it has.
    pub marker: &'static str,
    /// The kubelet's config file.
    pub kubelet_config: Option<&'static str>,
    /// The kubelet's drop-in directory.
    pub kubelet_config_dir: Option<&'static str>,
    /// containerd's root.
    pub containerd_root: Option<&'static str>,
    /// containerd's socket.
    pub containerd_address: Option<&'static str>,
}

const fn known(name: &'static str, marker: &'static str) -> Known {
    Known {
        name,
        marker,
        kubelet_config: None,
        kubelet_config_dir: None,
        containerd_root: None,
        containerd_address: None,
    }
}

/// The known layouts, the first whose marker exists applies. k3s and RKE2
/// run their own containerd (`containerd -c <data>/agent/etc/containerd/config.toml
/// -a /run/k3s/containerd/containerd.sock --state /run/k3s/containerd --root
/// <data>/agent/containerd`, k3s' `pkg/agent/containerd`) and give the kubelet
/// `--config-dir=<data>/agent/etc/kubelet.conf.d` (k3s and RKE2 1.32+); EKS
/// AL2023 (nodeadm) writes `/etc/kubernetes/kubelet/config.json` and the
/// drop-ins of `config.json.d`, AL2 `kubelet-config.json` beside it; GKE
/// `/home/kubernetes/kubelet-config.yaml`; AKS `/etc/default/kubeletconfig.json`;
/// kubeadm `/var/lib/kubelet/config.yaml`. Others use containerd's defaults.
pub const KNOWN: [Known; 7] = [
    Known {
        kubelet_config_dir: Some("/var/lib/rancher/k3s/agent/etc/kubelet.conf.d"),
        containerd_root: Some("/var/lib/rancher/k3s/agent/containerd"),
        containerd_address: Some("/run/k3s/containerd/containerd.sock"),
        ..known("k3s", "/var/lib/rancher/k3s/agent")
    },
    Known {
        kubelet_config_dir: Some("/var/lib/rancher/rke2/agent/etc/kubelet.conf.d"),
        containerd_root: Some("/var/lib/rancher/rke2/agent/containerd"),
        containerd_address: Some("/run/k3s/containerd/containerd.sock"),
        ..known("RKE2", "/var/lib/rancher/rke2/agent")
    },
    Known {
        kubelet_config: Some("/etc/kubernetes/kubelet/config.json"),
        kubelet_config_dir: Some("/etc/kubernetes/kubelet/config.json.d"),
        ..known("EKS (AL2023)", "/etc/kubernetes/kubelet/config.json")
    },
    Known {
        kubelet_config: Some("/etc/kubernetes/kubelet/kubelet-config.json"),
        ..known("EKS (AL2)", "/etc/kubernetes/kubelet/kubelet-config.json")
    },
    Known {
        kubelet_config: Some("/home/kubernetes/kubelet-config.yaml"),
        ..known("GKE", "/home/kubernetes/kubelet-config.yaml")
    },
    Known {
        kubelet_config: Some("/etc/default/kubeletconfig.json"),
        ..known("AKS", "/etc/default/kubeletconfig.json")
    },
    Known {
        kubelet_config: Some("/var/lib/kubelet/config.yaml"),
        ..known("kubeadm", "/var/lib/kubelet/config.yaml")
    },
];

/// Finds the layout of the node whose root is `root`.
pub fn discover(root: &Path) -> Found {
    let procs = processes(root);
    let mut found = Found::default();
    let saw_kubelet = kubelet(root, &procs, &mut found);
    let saw_containerd = containerd(root, &procs, &mut found);
    docker(root, &procs, &mut found);
    crio(root, &procs, &mut found);
    if let Some(k) = KNOWN
        .iter()
        .find(|k| under(root, Path::new(k.marker)).exists())
    {
        probe(k, saw_kubelet, saw_containerd, &mut found);
    }
    kubelet_files(root, &mut found);
    found
}

/// The kubelet's flags: its own process, or k3s' (whose kubelet runs
/// inside it, its flags given as `--kubelet-arg`). Whether one was seen.
fn kubelet(root: &Path, procs: &[Proc], found: &mut Found) -> bool {
    let (flags, from) = if let Some(p) = procs.iter().find(|p| p.program() == "kubelet") {
        (Flags::parse(&p.args()), format!("kubelet (pid {})", p.pid))
    } else if let Some(p) = procs.iter().find(|p| p.program() == "k3s") {
        (
            k3s_kubelet_flags(root, p, found),
            format!("k3s (pid {})", p.pid),
        )
    } else {
        return false;
    };
    let at = |flag: &str| format!("{from} --{flag}");
    let path = |flag: &str| flags.last(&[flag]).filter(|v| !v.is_empty());
    found.kubelet_root = path("root-dir").and_then(|v| Located::new(v, at("root-dir")));
    found.kubelet_config = path("config").and_then(|v| Located::new(v, at("config")));
    if found.kubelet_config.is_none() {
        found.kubelet_without_config = Some(from.clone());
    }
    found.kubelet_config_dir = path("config-dir").and_then(|v| Located::new(v, at("config-dir")));
    if let Some(socket) = path("container-runtime-endpoint").and_then(containerd_socket) {
        found.containerd_address = Located::new(socket, at("container-runtime-endpoint"));
    }
    found.kubelet_flags = KubeletFlags::from_flags(&flags);
    true
}

/// The kubelet flags k3s gives: `--config-dir` in its data directory, then
/// each `--kubelet-arg` from `/etc/rancher/k3s/config.yaml` and its command
/// line (which k3s hides from `ps` on newer releases).
fn k3s_kubelet_flags(root: &Path, p: &Proc, found: &mut Found) -> Flags {
    let own = Flags::parse(&p.args());
    let file = k3s_config(root, found);
    let data_dir = own
        .last(&["data-dir", "d"])
        .map(str::to_string)
        .or(file.data_dir)
        .unwrap_or_else(|| "/var/lib/rancher/k3s".into());
    let mut args = vec![format!("--config-dir={data_dir}/agent/etc/kubelet.conf.d")];
    let given = file.kubelet_args.into_iter();
    args.extend(
        given
            .chain(own.all("kubelet-arg").map(str::to_string))
            .map(|a| format!("--{a}")),
    );
    Flags::parse(&args)
}

/// What k3s' own config file says about the kubelet.
#[derive(Debug, Default)]
struct K3sConfig {
    data_dir: Option<String>,
    kubelet_args: Vec<String>,
}

/// `/etc/rancher/k3s/config.yaml`'s `data-dir` and `kubelet-arg`.
fn k3s_config(root: &Path, found: &mut Found) -> K3sConfig {
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "data-dir")]
        data_dir: Option<String>,
        #[serde(rename = "kubelet-arg")]
        kubelet_arg: Option<OneOrMany>,
    }
    let path = Path::new("/etc/rancher/k3s/config.yaml");
    let Some(text) = read_config(root, path, Reader::Kubelet, found) else {
        return K3sConfig::default();
    };
    // The YAML parser slows quadratically with nesting (issue #10).
    if kubelet::nesting_depth(&text) > kubelet::MAX_CONFIG_DEPTH {
        let depth = format!("nested more than {} levels deep", kubelet::MAX_CONFIG_DEPTH);
        found
            .problems
            .push(malformed(Reader::Kubelet, path, &depth));
        return K3sConfig::default();
    }
    match serde_yaml_ng::from_str::<Option<Raw>>(&text) {
        Ok(raw) => {
            let raw = raw.unwrap_or(Raw {
                data_dir: None,
                kubelet_arg: None,
            });
            K3sConfig {
                data_dir: raw.data_dir,
                kubelet_args: match raw.kubelet_arg {
                    None => Vec::new(),
                    Some(OneOrMany::One(arg)) => vec![arg],
                    Some(OneOrMany::Many(args)) => args,
                },
            }
        }
        Err(e) => {
            found.problems.push(malformed(Reader::Kubelet, path, &e));
            K3sConfig::default()
        }
    }
}

/// The socket of a `unix://` endpoint, when it is containerd's.
fn containerd_socket(endpoint: &str) -> Option<&str> {
    let path = endpoint.strip_prefix("unix://").unwrap_or(endpoint);
    (path.starts_with('/') && path.contains("containerd")).then_some(path)
}

/// containerd's flags, then its config file. Whether its process was seen.
/// Of several containerd processes (Docker's own next to the kubelet's, a
/// test's), the one serving the kubelet's runtime endpoint, else the first.
fn containerd(root: &Path, procs: &[Proc], found: &mut Found) -> bool {
    let all = || procs.iter().filter(|p| p.program() == "containerd");
    let serves = |p: &&Proc| {
        let endpoint = found.containerd_address.as_ref().map(|l| l.path.as_path());
        let address = Flags::parse(&p.args())
            .last(&["a", "address"])
            .map(PathBuf::from);
        endpoint.is_some() && address.as_deref() == endpoint
    };
    let process = all().find(serves).or_else(|| all().next());
    let (flags, from) = match process {
        Some(p) => (
            Flags::parse(&p.args()),
            format!("containerd (pid {})", p.pid),
        ),
        None => (Flags::default(), String::new()),
    };
    let config = flags
        .last(&["c", "config"])
        .unwrap_or("/etc/containerd/config.toml")
        .to_string();
    let from_file = format!("containerd config {config}");
    let file = containerd_config(root, Path::new(&config), found);
    if let Some(socket) = flags.last(&["a", "address"]) {
        found.containerd_address = Located::new(socket, format!("{from} --address"));
    } else if let Some(socket) = file.address {
        found.containerd_address = Located::new(socket, format!("{from_file} [grpc] address"));
    }
    if let Some(dir) = flags.last(&["root"]) {
        found.containerd_root = Located::new(dir, format!("{from} --root"));
    } else if let Some(dir) = file.root {
        found.containerd_root = Located::new(dir, format!("{from_file} root"));
    }
    process.is_some()
}

/// What a containerd config file (version 1, 2 or 3: the keys are the
/// same) says.
#[derive(Debug, Default)]
struct ContainerdConfig {
    root: Option<String>,
    address: Option<String>,
}

fn containerd_config(root: &Path, path: &Path, found: &mut Found) -> ContainerdConfig {
    #[derive(serde::Deserialize)]
    struct Grpc {
        address: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Raw {
        root: Option<String>,
        grpc: Option<Grpc>,
    }
    let reader = Reader::Runtime(RuntimeKind::Containerd);
    let Some(text) = read_config(root, path, reader, found) else {
        return ContainerdConfig::default();
    };
    match toml::from_str::<Raw>(&text) {
        Ok(raw) => ContainerdConfig {
            root: raw.root.filter(|r| !r.is_empty()),
            address: raw.grpc.and_then(|g| g.address).filter(|a| !a.is_empty()),
        },
        Err(e) => {
            found.problems.push(malformed(reader, path, &e));
            ContainerdConfig::default()
        }
    }
}

/// dockerd's `--data-root` (`-g`/`--graph` before it), else its
/// `daemon.json`'s `data-root` (`graph`).
fn docker(root: &Path, procs: &[Proc], found: &mut Found) {
    #[derive(serde::Deserialize)]
    struct Raw {
        #[serde(rename = "data-root")]
        data_root: Option<String>,
        graph: Option<String>,
    }
    let process = procs.iter().find(|p| p.program() == "dockerd");
    let (flags, from) = match process {
        Some(p) => (Flags::parse(&p.args()), format!("dockerd (pid {})", p.pid)),
        None => (Flags::default(), String::new()),
    };
    if let Some(dir) = flags.last(&["data-root", "g", "graph"]) {
        found.docker_root = Located::new(dir, format!("{from} --data-root"));
        return;
    }
    let config = flags
        .last(&["config-file"])
        .unwrap_or("/etc/docker/daemon.json");
    let reader = Reader::Runtime(RuntimeKind::Docker);
    let Some(text) = read_config(root, Path::new(config), reader, found) else {
        return;
    };
    match serde_json::from_str::<Raw>(&text) {
        Ok(raw) => {
            if let Some(dir) = raw.data_root.or(raw.graph).filter(|d| !d.is_empty()) {
                found.docker_root = Located::new(dir, format!("docker config {config} data-root"));
            }
        }
        Err(e) => found
            .problems
            .push(malformed(reader, Path::new(config), &e)),
    }
}

/// The graph root CRI-O gives containers-storage: its `--root`, else its
/// config's `[crio] root` (both beat `storage.conf`'s `graphroot`). Only
/// when its process is seen: Podman alone reads `storage.conf`.
fn crio(root: &Path, procs: &[Proc], found: &mut Found) {
    #[derive(serde::Deserialize)]
    struct Crio {
        root: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Raw {
        crio: Option<Crio>,
    }
    let Some(p) = procs.iter().find(|p| p.program() == "crio") else {
        return;
    };
    let flags = Flags::parse(&p.args());
    let from = format!("crio (pid {})", p.pid);
    if let Some(dir) = flags.last(&["root", "r"]).filter(|d| !d.is_empty()) {
        found.containers_storage_root = Located::new(dir, format!("{from} --root"));
        return;
    }
    let config = flags.last(&["config", "c"]).unwrap_or(DEFAULT_CRIO_CONFIG);
    let reader = Reader::Runtime(RuntimeKind::Crio);
    let Some(text) = read_config(root, Path::new(config), reader, found) else {
        return;
    };
    match toml::from_str::<Raw>(&text) {
        Ok(raw) => {
            let dir = raw.crio.and_then(|c| c.root).filter(|d| !d.is_empty());
            if let Some(dir) = dir {
                let from = format!("crio config {config} [crio] root");
                found.containers_storage_root = Located::new(dir, from);
            }
        }
        Err(e) => found
            .problems
            .push(malformed(reader, Path::new(config), &e)),
    }
}

/// Fills what the processes did not say from a known layout.
fn probe(k: &Known, saw_kubelet: bool, saw_containerd: bool, found: &mut Found) {
    let from = format!("known location of {}", k.name);
    let fill = |slot: &mut Option<Located>, path: Option<&str>| {
        if slot.is_none() {
            *slot = path.and_then(|p| Located::new(p, from.clone()));
        }
    };
    if !saw_kubelet {
        fill(&mut found.kubelet_config, k.kubelet_config);
        fill(&mut found.kubelet_config_dir, k.kubelet_config_dir);
    }
    if !saw_containerd {
        fill(&mut found.containerd_root, k.containerd_root);
        fill(&mut found.containerd_address, k.containerd_address);
    }
}

/// `podLogsDir` and `containerRuntimeEndpoint` from the kubelet's files.
/// Their problems are left to the scan, which reads them again.
fn kubelet_files(root: &Path, found: &mut Found) {
    let config = match (&found.kubelet_config, &found.kubelet_without_config) {
        (Some(l), _) => Some(l.path.as_path()),
        (None, Some(_)) => None,
        (None, None) => Some(Path::new(DEFAULT_KUBELET_CONFIG)),
    };
    let sources = KubeletSources {
        config,
        config_dir: found.kubelet_config_dir.as_ref().map(|l| l.path.as_path()),
        flags: &KubeletFlags::default(),
    };
    let Ok(config) = kubelet::load_all(root, &sources) else {
        return;
    };
    let files = || {
        let names: Vec<String> = config
            .files
            .iter()
            .map(|f| f.display().to_string())
            .collect();
        names.join(" + ")
    };
    if let Some(dir) = &config.pod_logs_dir {
        found.pod_logs = Located::new(dir, format!("kubelet config {} podLogsDir", files()));
    }
    let endpoint = config
        .runtime_endpoint
        .as_deref()
        .and_then(containerd_socket);
    if let (None, Some(socket)) = (&found.containerd_address, endpoint) {
        let from = format!("kubelet config {} containerRuntimeEndpoint", files());
        found.containerd_address = Located::new(socket, from);
    }
}

/// The text of a daemon's config file; `None` when absent or unreadable
/// (then a problem names it).
fn read_config(root: &Path, path: &Path, reader: Reader, found: &mut Found) -> Option<String> {
    match small_file::read_text(&under(root, path), MAX_FILE_BYTES) {
        Ok(text) => text,
        Err(e) => {
            let kind = match e.kind() {
                std::io::ErrorKind::FileTooLarge => ProblemKind::Malformed,
                _ => ProblemKind::of_io(&e),
            };
            let message = format!("{}: {e}; its daemon's defaults are assumed", path.display());
            found
                .problems
                .push(reader.problem(kind, path.display().to_string(), message));
            None
        }
    }
}

fn malformed(reader: Reader, path: &Path, err: &dyn std::fmt::Display) -> Problem {
    let message = format!(
        "{}: not a config file Headroom reads: {err}",
        path.display()
    );
    reader.problem(ProblemKind::Malformed, path.display().to_string(), message)
}
