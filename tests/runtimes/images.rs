//! The node the trials look at, built offline: three images made with umoci
//! from busybox-static (base, and app1/app2 on top of base so base's layers
//! are shared three ways), pushed to the loopback registry and pulled into
//! both containerd (namespace `k8s.io`) and dockerd; two Docker containers
//! and one CRI-labelled containerd container that write into their writable
//! layers; and pod log dirs in the kubelet layout (the kubelet is not
//! running, so we write its logs ourselves).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sha2::{Digest, Sha256};

use crate::oracle::{self, path_str};
use crate::services::{Registry, Services};

/// The containerd namespace the CRI plugin (and so the kubelet) uses.
pub const K8S_NS: &str = "k8s.io";

/// The file of base's second layer (index 1) that app2 deletes, and its size.
pub const APP2_DELETES: (&str, u64) = ("data/mid.bin", 123_457);

/// base's sparse file (layer 1): `truncate -s` of this many bytes.
pub const SPARSE: (&str, u64) = ("data/sparse.img", 5 << 20);

/// app1's two blobs (its layer 2).
pub const APP1_BLOBS: [(&str, u64); 2] = [("app/blob1", 3_000_000), ("app/blob2", 1_234_567)];

/// Fixture image names, in build order (`base` first).
pub const IMAGE_NAMES: [&str; 3] = ["base", "app1", "app2"];

/// One container under Docker.
#[derive(Debug, Clone)]
pub struct DockerContainer {
    /// `--name`.
    pub name: String,
    /// Full container ID (`docker inspect`).
    pub id: String,
    /// The image reference it was run from.
    pub image: String,
}

/// Kubernetes identity plus the log files the kubelet would have written.
#[derive(Debug, Clone)]
pub struct PodLogs {
    /// Pod name.
    pub pod: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod UID.
    pub uid: String,
    /// Container name in the pod.
    pub container: String,
    /// The log files, `<pod-logs>/<ns>_<pod>_<uid>/<container>/…`.
    pub files: Vec<PathBuf>,
}

/// A container run under containerd with CRI labels.
#[derive(Debug, Clone)]
pub struct CriContainer {
    /// Container ID (also its snapshot key).
    pub id: String,
    /// The image reference it was run from.
    pub image: String,
    /// Its pod and logs.
    pub logs: PodLogs,
}

/// Everything built on top of the services.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// Image references by fixture name (`base`, `app1`, `app2`).
    pub images: Vec<(String, String)>,
    /// Docker containers: `w1` on app1, `w2` on base.
    pub docker: Vec<DockerContainer>,
    /// The containerd container, on app2.
    pub cri: CriContainer,
    /// Pod logs whose container is gone.
    pub orphan: PodLogs,
    /// `--kubelet-root`.
    pub kubelet_root: PathBuf,
    /// `--kubelet-config`.
    pub kubelet_config: PathBuf,
    /// `--pod-logs`.
    pub pod_logs: PathBuf,
    /// An emptyDir volume of the containerd container's pod.
    pub empty_dir: PathBuf,
}

impl Fixtures {
    /// The reference of fixture image `name`.
    pub fn image(&self, name: &str) -> &str {
        reference_of(&self.images, name)
    }
}

/// The reference of fixture image `name` in `images` (empty if unknown).
fn reference_of<'a>(images: &'a [(String, String)], name: &str) -> &'a str {
    images
        .iter()
        .find(|(n, _)| n == name)
        .map_or("", |(_, r)| r.as_str())
}

/// The kubelet config the trials hand to Headroom; its figures are checked
/// against `df` in the filesystems trial. Percentages are exact in binary
/// (the kubelet parses them as float32).
pub const KUBELET_CONFIG: &str = "\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
evictionHard:
  memory.available: 100Mi
  nodefs.available: \"12.5%\"
  nodefs.inodesFree: \"25%\"
  imagefs.available: 1Gi
  imagefs.inodesFree: \"50000\"
imageGCHighThresholdPercent: 85
imageGCLowThresholdPercent: 80
";

/// Builds the images, pulls them into both runtimes, runs the containers
/// and writes the pod logs and kubelet config.
pub fn build(s: &Services) -> Result<Fixtures> {
    let images = build_images(s)?;
    let reference = |name: &str| reference_of(&images, name).to_owned();
    for (_, r) in &images {
        pull_into_both(&s.containerd_sock, &s.docker_host(), r)?;
    }
    let docker = vec![
        run_docker(
            s,
            "w1",
            &reference("app1"),
            "dd if=/dev/urandom of=/data.bin bs=1M count=3; i=0; while [ $i -lt 2000 ]; do echo line $i; i=$((i+1)); done",
        )?,
        run_docker(
            s,
            "w2",
            &reference("base"),
            "mkdir -p /var/cache/w2 && dd if=/dev/urandom of=/var/cache/w2/blob bs=1k count=700 && echo done",
        )?,
    ];
    let kubelet_root = s.nodefs.join("kubelet");
    let pod_logs = s.nodefs.join("pods");
    fs::create_dir_all(&kubelet_root)?;
    let kubelet_config = s.dir.join("kubelet-config.yaml");
    fs::write(&kubelet_config, KUBELET_CONFIG)?;
    let cri = run_cri(s, &pod_logs, &reference("app2"))?;
    let empty_dir = write_empty_dir(&kubelet_root, &cri.logs.uid)?;
    let orphan = write_pod_logs(
        &pod_logs,
        "gone-0",
        &uuid_like(&s.dir, "gone"),
        6_000,
        false,
    )?;
    Ok(Fixtures {
        images,
        docker,
        cri,
        orphan,
        kubelet_root,
        kubelet_config,
        pod_logs,
        empty_dir,
    })
}

/// Pulls `reference` from the plain registry into containerd (namespace
/// `k8s.io`, at `containerd_sock`) and into dockerd (at `docker_host`).
pub(crate) fn pull_into_both(
    containerd_sock: &Path,
    docker_host: &str,
    reference: &str,
) -> Result<()> {
    oracle::ctr(
        containerd_sock,
        K8S_NS,
        &["images", "pull", "--plain-http", reference],
    )?;
    oracle::run("docker", &["-H", docker_host, "pull", "-q", reference]).map(drop)
}

/// Writes an emptyDir volume for pod `uid` as the kubelet lays it out, with
/// a few files of odd sizes.
fn write_empty_dir(kubelet_root: &Path, uid: &str) -> Result<PathBuf> {
    let dir = kubelet_root
        .join("pods")
        .join(uid)
        .join("volumes/kubernetes.io~empty-dir/cache");
    fs::create_dir_all(dir.join("sub"))?;
    fs::write(dir.join("a.bin"), vec![7u8; 123_457])?;
    fs::write(dir.join("sub/b.txt"), "emptyDir\n".repeat(999))?;
    Ok(dir)
}

/// Builds base/app1/app2 in an OCI layout and pushes them; returns
/// (name, reference) pairs.
fn build_images(s: &Services) -> Result<Vec<(String, String)>> {
    let work = s.dir.join("build");
    fs::create_dir(&work)?;
    let oci = work.join("oci");
    let image = |tag: &str| format!("{}:{tag}", oci.display());
    umoci(&["init", "--layout", path_str(&oci)?])?;
    umoci(&["new", "--image", &image("base")])?;

    // base, layer 1: busybox.
    let root = unpack(&work, &image("base"), "b1")?;
    fs::create_dir_all(root.join("bin"))?;
    fs::create_dir_all(root.join("etc"))?;
    fs::copy(busybox()?, root.join("bin/busybox"))?;
    symlink("busybox", root.join("bin/sh"))?;
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n")?;
    umoci(&[
        "repack",
        "--image",
        &image("base"),
        path_str(&work.join("b1"))?,
    ])?;

    // base, layer 2: files of awkward sizes, a sparse file, a hard link pair.
    let root = unpack(&work, &image("base"), "b2")?;
    let data = root.join("data");
    fs::create_dir(&data)?;
    noise(&data.join("odd.bin"), 10_000, 1)?;
    noise(&data.join("page.bin"), 4096, 2)?;
    noise(&root.join(APP2_DELETES.0), APP2_DELETES.1 as usize, 3)?;
    noise(&data.join("one"), 1, 4)?;
    fs::write(data.join("empty"), "")?;
    oracle::run(
        "truncate",
        &["-s", &SPARSE.1.to_string(), path_str(&root.join(SPARSE.0))?],
    )?;
    noise(&data.join("hl1"), 7_000, 5)?;
    fs::hard_link(data.join("hl1"), data.join("hl2"))?;
    umoci(&[
        "repack",
        "--image",
        &image("base"),
        path_str(&work.join("b2"))?,
    ])?;
    umoci(&[
        "config",
        "--image",
        &image("base"),
        "--config.cmd",
        "/bin/sh",
    ])?;

    // app1: a few MB, and symlinks that point out of the tree.
    let root = unpack(&work, &image("base"), "a1")?;
    let app = root.join("app");
    fs::create_dir(&app)?;
    for ((path, len), seed) in APP1_BLOBS.into_iter().zip(6..) {
        noise(&root.join(path), len as usize, seed)?;
    }
    symlink("/etc/passwd", app.join("passwd-link"))?;
    symlink("../../../../etc", app.join("escape"))?;
    umoci(&[
        "repack",
        "--image",
        &image("app1"),
        path_str(&work.join("a1"))?,
    ])?;

    // app2: deletes a base file (whiteout) and adds a hard link pair.
    let root = unpack(&work, &image("base"), "a2")?;
    fs::remove_file(root.join(APP2_DELETES.0))?;
    let srv = root.join("srv");
    fs::create_dir(&srv)?;
    noise(&srv.join("h1"), 777_777, 8)?;
    fs::hard_link(srv.join("h1"), srv.join("h2"))?;
    umoci(&[
        "repack",
        "--image",
        &image("app2"),
        path_str(&work.join("a2"))?,
    ])?;

    let mut refs = Vec::new();
    for name in IMAGE_NAMES {
        let reference = format!("{}/hr/{name}:1", s.registry);
        push_oci(&image(name), &reference, Registry::Plain(&s.registry))?;
        refs.push((name.to_owned(), reference));
    }
    Ok(refs)
}

/// One more image, `hr/grow:1`: a single layer of busybox and 1 MB of its
/// own noise (so it shares no layer with the others), built in the layout
/// [`build`] made and pushed to the registry, not pulled anywhere. Returns
/// its reference.
pub fn build_grow_image(s: &Services) -> Result<String> {
    let work = s.dir.join("build");
    let image = format!("{}:grow", work.join("oci").display());
    umoci(&["new", "--image", &image])?;
    let root = unpack(&work, &image, "g1")?;
    fs::create_dir_all(root.join("bin"))?;
    fs::copy(busybox()?, root.join("bin/busybox"))?;
    symlink("busybox", root.join("bin/sh"))?;
    noise(&root.join("grow.seed"), 1_000_000, 9)?;
    umoci(&["repack", "--image", &image, path_str(&work.join("g1"))?])?;
    umoci(&["config", "--image", &image, "--config.cmd", "/bin/sh"])?;
    let reference = format!("{}/hr/grow:1", s.registry);
    push_oci(&image, &reference, Registry::Plain(&s.registry))?;
    Ok(reference)
}

/// Pushes the OCI layout `image` (`dir:tag`) to `registry` as `reference`.
pub fn push_oci(image: &str, reference: &str, registry: Registry<'_>) -> Result<()> {
    let (source, dest) = (format!("oci:{image}"), format!("docker://{reference}"));
    let mut args = vec!["copy", "--quiet"];
    let flags = registry.skopeo_dest()?;
    args.extend(flags.iter().map(String::as_str));
    args.extend([source.as_str(), dest.as_str()]);
    oracle::run("skopeo", &args).map(drop)
}

/// `umoci ARGS…`.
pub(crate) fn umoci(args: &[&str]) -> Result<String> {
    oracle::run("umoci", args)
}

/// `umoci unpack --rootless` of `image` into `work/bundle`; returns its rootfs.
pub(crate) fn unpack(work: &Path, image: &str, bundle: &str) -> Result<PathBuf> {
    unpack_with(work, image, bundle, &["--rootless"])
}

/// `umoci unpack` as root (no `--rootless`): the files keep their owners,
/// so a `chown` in the rootfs is repacked as a change of owner.
pub(crate) fn unpack_as_root(work: &Path, image: &str, bundle: &str) -> Result<PathBuf> {
    unpack_with(work, image, bundle, &[])
}

fn unpack_with(work: &Path, image: &str, bundle: &str, flags: &[&str]) -> Result<PathBuf> {
    let dir = work.join(bundle);
    let mut args = vec!["unpack"];
    args.extend_from_slice(flags);
    args.extend(["--image", image, path_str(&dir)?]);
    umoci(&args)?;
    Ok(dir.join("rootfs"))
}

/// The busybox binary (busybox-static installs a static one).
pub(crate) fn busybox() -> Result<PathBuf> {
    Ok(PathBuf::from(
        oracle::run("sh", &["-c", "command -v busybox"])?.trim(),
    ))
}

/// Writes `len` incompressible bytes (xorshift64) so layer blobs are as big
/// as the files in them.
pub(crate) fn noise(path: &Path, len: usize, seed: u64) -> Result<()> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = Vec::with_capacity(len + 8);
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
    fs::write(path, buf).with_context(|| format!("cannot write {}", path.display()))
}

fn run_docker(s: &Services, name: &str, image: &str, script: &str) -> Result<DockerContainer> {
    let host = s.docker_host();
    oracle::run(
        "docker",
        &[
            "-H",
            &host,
            "run",
            "--network",
            "none",
            "--name",
            name,
            image,
            "sh",
            "-c",
            script,
        ],
    )?;
    let id = oracle::run("docker", &["-H", &host, "inspect", "-f", "{{.Id}}", name])?;
    Ok(DockerContainer {
        name: name.to_owned(),
        id: id.trim().to_owned(),
        image: image.to_owned(),
    })
}

/// Runs a CRI-labelled container under containerd (left stopped, so its
/// active snapshot stays) and writes its pod logs as the kubelet would.
fn run_cri(s: &Services, pod_logs: &Path, image: &str) -> Result<CriContainer> {
    let id = hex_id(&s.dir, "cri-container");
    let logs = write_pod_logs(pod_logs, "web-0", &uuid_like(&s.dir, "web-0"), 40_000, true)?;
    let labels = [
        format!("io.kubernetes.pod.name={}", logs.pod),
        format!("io.kubernetes.pod.namespace={}", logs.namespace),
        format!("io.kubernetes.pod.uid={}", logs.uid),
        format!("io.kubernetes.container.name={}", logs.container),
    ];
    let mut args = vec!["run"];
    for l in &labels {
        args.extend(["--label", l.as_str()]);
    }
    args.extend([
        image,
        id.as_str(),
        "sh",
        "-c",
        "mkdir -p /var/lib/app && dd if=/dev/urandom of=/var/lib/app/state bs=1M count=2 && echo x > /small && echo done",
    ]);
    oracle::ctr(&s.containerd_sock, K8S_NS, &args)?;
    Ok(CriContainer {
        id,
        image: image.to_owned(),
        logs,
    })
}

/// Writes `<pod-logs>/shop_<pod>_<uid>/app/0.log` (about `bytes` long), plus
/// a rotated file when `rotated`.
fn write_pod_logs(
    pod_logs: &Path,
    pod: &str,
    uid: &str,
    bytes: usize,
    rotated: bool,
) -> Result<PodLogs> {
    let dir = pod_logs.join(format!("shop_{pod}_{uid}")).join("app");
    fs::create_dir_all(&dir)?;
    let line = "2026-11-26T14:00:00.000000000Z stdout F hello from the app\n";
    let mut files = vec![dir.join("0.log")];
    fs::write(&files[0], line.repeat(bytes / line.len() + 1))?;
    if rotated {
        files.push(dir.join("0.log.20261126-140000"));
        fs::write(&files[1], line.repeat(200))?;
    }
    Ok(PodLogs {
        pod: pod.to_owned(),
        namespace: "shop".to_owned(),
        uid: uid.to_owned(),
        container: "app".to_owned(),
        files,
    })
}

/// A 64-hex ID unique to this run (like a CRI container ID).
fn hex_id(dir: &Path, salt: &str) -> String {
    Sha256::digest(format!("{}/{salt}", dir.display()).as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A UUID-shaped ID unique to this run (like a pod UID).
fn uuid_like(dir: &Path, salt: &str) -> String {
    let h = hex_id(dir, salt);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}
