//! The node's layout found on fake node roots laid out as k3s, RKE2, EKS
//! (AL2023) and kubeadm, each with a fake `/proc/<pid>/cmdline` holding the
//! real command line, and on an empty node.

use std::path::{Path, PathBuf};
use std::time::Duration;

use headroom::kubelet::{self, KubeletSources, Signal, Threshold, ThresholdsOrigin};
use headroom::layout::{discover, LayoutSettings, NodeLayout, PathOrigin, Setting};
use tempfile::TempDir;

struct Node {
    root: TempDir,
}

impl Node {
    fn new() -> Node {
        Node {
            root: tempfile::tempdir().unwrap(),
        }
    }

    fn write(&self, path: &str, contents: &str) -> &Node {
        let path = self.root.path().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
        self
    }

    fn process(&self, pid: u32, argv: &[&str]) -> &Node {
        let line: String = argv.iter().map(|a| format!("{a}\0")).collect();
        self.write(&format!("/proc/{pid}/cmdline"), &line)
    }

    /// Discovers, resolves with no settings, and loads the thresholds.
    fn found(&self) -> (NodeLayout, kubelet::KubeletConfig) {
        self.found_with(&LayoutSettings::default())
    }

    fn found_with(&self, settings: &LayoutSettings) -> (NodeLayout, kubelet::KubeletConfig) {
        let found = discover(self.root.path());
        let layout = NodeLayout::resolve(settings, Some(&found), Duration::from_secs(5));
        let sources = KubeletSources {
            config: layout
                .kubelet_reads_config
                .then_some(layout.kubelet_config.as_path()),
            config_dir: layout.kubelet_config_dir.as_deref(),
            flags: &layout.kubelet_flags,
        };
        let config = kubelet::load_all(self.root.path(), &sources).unwrap();
        (layout, config)
    }
}

fn p(path: &str) -> PathBuf {
    PathBuf::from(path)
}

fn hard(config: &kubelet::KubeletConfig, signal: Signal) -> Option<Threshold> {
    config.eviction_hard.get(&signal).copied()
}

const K3S_DEFAULTS: &str = "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
evictionHard:
  imagefs.available: 5%
  nodefs.available: 5%
evictionMinimumReclaim:
  imagefs.available: 10%
  nodefs.available: 10%
imageMinimumGCAge: 2m0s
";

#[test]
fn k3s_with_its_title_rewritten_and_kubelet_args_in_its_config() {
    let node = Node::new();
    node.process(1, &["/sbin/init"])
        .process(712, &["/usr/local/bin/k3s server"])
        .process(
            733,
            &[
                "containerd",
                "-c",
                "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
                "-a",
                "/run/k3s/containerd/containerd.sock",
                "--state",
                "/run/k3s/containerd",
                "--root",
                "/var/lib/rancher/k3s/agent/containerd",
            ],
        )
        .write(
            "/etc/rancher/k3s/config.yaml",
            "write-kubeconfig-mode: \"0644\"\nkubelet-arg:\n  - image-gc-high-threshold=70\n  - image-gc-low-threshold=60\n  - root-dir=/data/kubelet\n",
        )
        .write(
            "/var/lib/rancher/k3s/agent/etc/kubelet.conf.d/00-k3s-defaults.conf",
            K3S_DEFAULTS,
        )
        // A leftover kubeadm file k3s' kubelet does not read: it would
        // disable every hard threshold.
        .write("/var/lib/kubelet/config.yaml", "evictionHard: {}\n")
        .write(
            "/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
            "version = 3\n[plugins.'io.containerd.cri.v1.images']\nsnapshotter = \"overlayfs\"\n",
        );
    let (layout, config) = node.found();
    assert_eq!(
        layout.containerd_root,
        p("/var/lib/rancher/k3s/agent/containerd")
    );
    assert_eq!(
        layout.containerd_address,
        p("/run/k3s/containerd/containerd.sock")
    );
    assert_eq!(layout.kubelet_root, p("/data/kubelet"));
    assert_eq!(
        layout.kubelet_config_dir,
        Some(p("/var/lib/rancher/k3s/agent/etc/kubelet.conf.d"))
    );
    assert_eq!(
        layout.sources["kubelet_root"].from,
        "k3s (pid 712) --root-dir"
    );
    assert_eq!(
        layout.sources["containerd_root"].from,
        "containerd (pid 733) --root"
    );
    assert!(!layout.kubelet_reads_config);
    assert_eq!(
        layout.sources["kubelet_config"].from,
        "k3s (pid 712): no --config, not read"
    );
    // The drop-in merges key by key into the defaults: inodesFree stays.
    assert_eq!(
        hard(&config, Signal::NodefsAvailable),
        Some(Threshold::Percent(5.0))
    );
    assert_eq!(
        hard(&config, Signal::ImagefsAvailable),
        Some(Threshold::Percent(5.0))
    );
    assert_eq!(
        hard(&config, Signal::NodefsInodesFree),
        Some(Threshold::Percent(5.0))
    );
    // The flag beats the files' default.
    assert_eq!(config.image_gc_high_percent, 70);
    assert_eq!(config.origin, ThresholdsOrigin::Flags);
    assert_eq!(config.origin.label(), "flags");
}

#[test]
fn rke2_runs_a_kubelet_process_with_its_own_flags() {
    let node = Node::new();
    node.process(
        901,
        &[
            "kubelet",
            "--volume-plugin-dir=/var/lib/kubelet/volumeplugins",
            "--file-check-frequency=5s",
            "--config-dir=/var/lib/rancher/rke2/agent/etc/kubelet.conf.d",
            "--containerd=/run/k3s/containerd/containerd.sock",
            "--eviction-hard=imagefs.available<12%,nodefs.available<8%",
            "--kubeconfig=/var/lib/rancher/rke2/agent/kubelet.kubeconfig",
        ],
    )
    .write(
        "/var/lib/rancher/rke2/agent/etc/kubelet.conf.d/00-rke2-defaults.conf",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         containerRuntimeEndpoint: unix:///run/k3s/containerd/containerd.sock\n\
         evictionHard:\n  nodefs.inodesFree: 7%\n",
    )
    .write("/var/lib/rancher/rke2/agent/containerd/.keep", "");
    let (layout, config) = node.found();
    // containerd's process is hidden: its socket from the kubelet's config,
    // its root from RKE2's known location.
    assert_eq!(
        layout.containerd_address,
        p("/run/k3s/containerd/containerd.sock")
    );
    assert_eq!(
        layout.containerd_root,
        p("/var/lib/rancher/rke2/agent/containerd")
    );
    assert_eq!(
        layout.sources["containerd_root"].from,
        "known location of RKE2"
    );
    assert_eq!(layout.kubelet_root, p("/var/lib/kubelet"));
    assert_eq!(layout.sources["kubelet_root"].origin, PathOrigin::Default);
    // --eviction-hard replaces the whole map, the drop-in's key included.
    assert_eq!(
        config.eviction_hard,
        [
            (Signal::NodefsAvailable, Threshold::Percent(8.0)),
            (Signal::ImagefsAvailable, Threshold::Percent(12.0)),
        ]
        .into_iter()
        .collect()
    );
    assert_eq!(config.flags, ["--eviction-hard"]);
}

#[test]
fn eks_al2023_json_config_and_drop_ins_merge_in_order() {
    let node = Node::new();
    node.process(
        2201,
        &[
            "/usr/bin/kubelet",
            "--config",
            "/etc/kubernetes/kubelet/config.json",
            "--config-dir",
            "/etc/kubernetes/kubelet/config.json.d",
            "--kubeconfig",
            "/var/lib/kubelet/kubeconfig",
            "--node-ip=10.0.0.1",
        ],
    )
    .write(
        "/etc/kubernetes/kubelet/config.json",
        r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration",
            "evictionHard":{"memory.available":"100Mi","nodefs.available":"10%","nodefs.inodesFree":"5%"},
            "imageGCHighThresholdPercent":85,"imageGCLowThresholdPercent":80,
            "containerRuntimeEndpoint":"unix:///run/containerd/containerd.sock"}"#,
    )
    .write(
        "/etc/kubernetes/kubelet/config.json.d/00-nodeadm.conf",
        r#"{"apiVersion":"kubelet.config.k8s.io/v1beta1","kind":"KubeletConfiguration",
            "evictionHard":{"imagefs.available":"20%"},"imageGCHighThresholdPercent":75}"#,
    )
    .write(
        "/etc/kubernetes/kubelet/config.json.d/10-user.conf",
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
         imageGCHighThresholdPercent: 90\nimageGCLowThresholdPercent: null\npodLogsDir: /logs/pods\n",
    )
    .write("/etc/kubernetes/kubelet/config.json.d/README", "not a drop-in");
    let (layout, config) = node.found();
    assert_eq!(
        layout.kubelet_config,
        p("/etc/kubernetes/kubelet/config.json")
    );
    assert_eq!(layout.pod_logs, p("/logs/pods"));
    assert_eq!(
        layout.containerd_address,
        p("/run/containerd/containerd.sock")
    );
    assert_eq!(
        config.eviction_hard,
        [
            (Signal::NodefsAvailable, Threshold::Percent(10.0)),
            (Signal::NodefsInodesFree, Threshold::Percent(5.0)),
            (Signal::ImagefsAvailable, Threshold::Percent(20.0)),
        ]
        .into_iter()
        .collect()
    );
    // The later drop-in wins; its null changes nothing.
    assert_eq!(
        (config.image_gc_high_percent, config.image_gc_low_percent),
        (90, 80)
    );
    assert_eq!(config.files.len(), 3);
    assert_eq!(config.origin, ThresholdsOrigin::Config);
}

#[test]
fn kubeadm_found_by_process_and_settings_still_win() {
    let node = Node::new();
    node.process(
        555,
        &[
            "/usr/bin/kubelet",
            "--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf",
            "--config=/var/lib/kubelet/config.yaml",
            "--container-runtime-endpoint=unix:///var/run/containerd/containerd.sock",
            "--root-dir",
            "/srv/kubelet",
        ],
    )
    .write(
        "/var/lib/kubelet/config.yaml",
        "evictionHard:\n  nodefs.available: 1Gi\nimageMinimumGCAge: 5m\n",
    )
    .process(
        600,
        &["/usr/bin/dockerd", "-H", "fd://", "--data-root=/srv/docker"],
    );
    let settings = LayoutSettings {
        kubelet_root: Some(Setting {
            path: p("/mine"),
            at: "--kubelet-root".into(),
        }),
        ..LayoutSettings::default()
    };
    let (layout, config) = node.found_with(&settings);
    assert_eq!(layout.kubelet_root, p("/mine"));
    assert_eq!(layout.sources["kubelet_root"].origin, PathOrigin::Setting);
    assert_eq!(layout.docker_root, p("/srv/docker"));
    assert_eq!(
        layout.containerd_address,
        p("/var/run/containerd/containerd.sock")
    );
    assert_eq!(
        config.eviction_hard,
        [(Signal::NodefsAvailable, Threshold::Quantity(1 << 30))]
            .into_iter()
            .collect()
    );
    assert_eq!(config.image_minimum_gc_age, Duration::from_secs(300));
    assert_eq!(config.origin.label(), "config");
}

#[test]
fn nothing_found_gives_the_defaults() {
    let node = Node::new();
    node.process(1, &["/sbin/init", "splash"]);
    let (layout, config) = node.found();
    let d = NodeLayout::default();
    assert_eq!(
        (
            &layout.kubelet_root,
            &layout.containerd_root,
            &layout.docker_root
        ),
        (&d.kubelet_root, &d.containerd_root, &d.docker_root)
    );
    assert!(layout
        .sources
        .values()
        .all(|s| s.origin == PathOrigin::Default));
    assert_eq!(
        config.eviction_hard,
        kubelet::KubeletConfig::defaults().eviction_hard
    );
    assert_eq!(config.origin, ThresholdsOrigin::Defaults);
    assert_eq!(config.origin.label(), "defaults");
}

#[test]
fn fault_unreadable_and_garbage_configs_are_problems_not_panics() {
    let node = Node::new();
    node.process(
        7,
        &["containerd", "--config", "/etc/containerd/config.toml"],
    )
    .write("/etc/containerd/config.toml", "root = [\u{0}\u{1}garbage")
    .write("/etc/docker/daemon.json", "{\"data-root\": 5}");
    // A drop-in directory that loops through a symlink, and a binary drop-in.
    let dir = node
        .root
        .path()
        .join("etc/kubernetes/kubelet/config.json.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&dir, dir.join("loop")).unwrap();
    std::fs::write(dir.join("00-bad.conf"), [0xff_u8, 0xfe, 0, 1]).unwrap();
    node.write("/etc/kubernetes/kubelet/config.json", "{}");
    let found = discover(node.root.path());
    let sources: Vec<&str> = found.problems.iter().map(|p| p.source.as_str()).collect();
    assert_eq!(
        sources,
        ["/etc/containerd/config.toml", "/etc/docker/daemon.json"]
    );
    let layout = NodeLayout::resolve(
        &LayoutSettings::default(),
        Some(&found),
        Duration::from_secs(1),
    );
    let err = kubelet::load_all(
        node.root.path(),
        &KubeletSources {
            config: Some(Path::new("/etc/kubernetes/kubelet/config.json")),
            config_dir: layout.kubelet_config_dir.as_deref(),
            flags: &layout.kubelet_flags,
        },
    )
    .unwrap_err();
    assert!(err.to_string().contains("00-bad.conf"), "{err}");
}

#[test]
fn fault_a_deeply_nested_k3s_config_is_a_problem_and_parsed_no_further() {
    let node = Node::new();
    let deep = format!(
        "kubelet-arg: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    node.process(3, &["/usr/local/bin/k3s", "agent"])
        .write("/etc/rancher/k3s/config.yaml", &deep);
    let started = std::time::Instant::now();
    let found = discover(node.root.path());
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(found.problems.len(), 1, "{:?}", found.problems);
    assert!(found.problems[0].message.contains("nested more than 64"));
    // The rest of k3s' layout stands.
    assert_eq!(
        found.kubelet_config_dir.map(|l| l.path),
        Some(p("/var/lib/rancher/k3s/agent/etc/kubelet.conf.d"))
    );
}

#[test]
fn of_two_containerds_the_one_the_kubelet_talks_to() {
    let node = Node::new();
    // Docker's own containerd first (lower pid), then the kubelet's.
    node.process(
        300,
        &[
            "containerd",
            "--config",
            "/var/run/docker/containerd/containerd.toml",
            "--address",
            "/var/run/docker/containerd/containerd.sock",
            "--root",
            "/var/lib/docker/containerd/daemon",
        ],
    )
    .process(
        400,
        &[
            "/usr/bin/containerd",
            "--address=/run/containerd/containerd.sock",
            "--root=/data/containerd",
        ],
    )
    .process(
        500,
        &[
            "/usr/bin/kubelet",
            "--config=/var/lib/kubelet/config.yaml",
            "--container-runtime-endpoint=unix:///run/containerd/containerd.sock",
        ],
    )
    .write("/var/lib/kubelet/config.yaml", "imageMinimumGCAge: 5m\n");
    let (layout, _) = node.found();
    assert_eq!(
        layout.containerd_address,
        p("/run/containerd/containerd.sock")
    );
    assert_eq!(layout.containerd_root, p("/data/containerd"));
    assert_eq!(
        layout.sources["containerd_root"].from,
        "containerd (pid 400) --root"
    );
}

#[test]
fn crio_gives_containers_storage_its_root_by_flag_or_config() {
    let node = Node::new();
    node.process(700, &["/usr/bin/crio", "--root", "/data/containers"]);
    let (layout, _) = node.found();
    assert_eq!(layout.containers_storage_root, Some(p("/data/containers")));
    assert_eq!(
        layout.sources["containers_storage_root"].from,
        "crio (pid 700) --root"
    );
    assert_eq!(
        layout.containers_storage_conf,
        p("/etc/containers/storage.conf")
    );

    let node = Node::new();
    node.process(701, &["/usr/bin/crio", "--config", "/etc/crio/mine.conf"])
        .write("/etc/crio/mine.conf", "[crio]\nroot = \"/srv/cs\"\n");
    let (layout, _) = node.found();
    assert_eq!(layout.containers_storage_root, Some(p("/srv/cs")));
    assert_eq!(
        layout.sources["containers_storage_root"].origin,
        PathOrigin::Discovered
    );

    // Podman alone: storage.conf's graphroot is the reader's to read.
    let node = Node::new();
    node.write("/etc/crio/crio.conf", "[crio]\nroot = \"/srv/cs\"\n");
    let (layout, _) = node.found();
    assert_eq!(layout.containers_storage_root, None);
    assert!(!layout.sources.contains_key("containers_storage_root"));
}
