//! Writes Docker overlay2 stores the way dockerd lays them out on disk, for
//! tests, benchmarks and demos.
//!
//! [`DockerRoot`] writes a store piece by piece: layers
//! (`image/overlay2/layerdb/sha256/<chain>/{cache-id,diff,size,parent}` and
//! `overlay2/<cache-id>/{diff,link,lower,work}` with the `overlay2/l/<link>`
//! symlink), image configs (`image/overlay2/imagedb/content/sha256/<id>`,
//! the ID being the sha256 of the bytes, and `imagedb/metadata`), names
//! (`image/overlay2/repositories.json`), containers (`containers/<id>/`
//! with `config.v2.json`, `hostconfig.json` and json-file logs;
//! `layerdb/mounts/<id>/{mount-id,init-id,parent}`; the init and writable
//! layers under `overlay2/`) and downloads in flight (`tmp/GetImageBlob*`).
//! [`synthetic`] writes a whole node's store with it (images sharing base
//! layers, kubelet-run containers), as `examples/fake-docker-root.rs` does
//! for the benchmark scripts.
//!
//! This is dockerd 20.10's layout with the overlay2 driver, the files the
//! reader ([`super::discover`]) reads and the ones dockerd writes beside
//! them. Chain IDs come from [`crate::digest::chain_ids`]. The IDs dockerd
//! draws at random (cache, mount and link IDs) are derived here from what
//! they belong to, and file trees from a seed, so the same calls write the
//! same store.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, XattrFlags};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::digest::{chain_ids, sha256};

/// `repositories.json`, relative to the Docker root.
pub const REPOSITORIES: &str = "image/overlay2/repositories.json";
/// The layer DB's committed layers, relative to the Docker root.
const LAYERDB: &str = "image/overlay2/layerdb/sha256";
/// Image configs, relative to the Docker root.
const CONTENT: &str = "image/overlay2/imagedb/content/sha256";
/// The directories dockerd creates when it starts on an empty root.
const SKELETON: [&str; 8] = [
    CONTENT,
    "image/overlay2/imagedb/metadata/sha256",
    LAYERDB,
    "image/overlay2/layerdb/mounts",
    "image/overlay2/layerdb/tmp",
    "containers",
    "overlay2/l",
    "tmp",
];
/// The `created` time of the configs [`synthetic`] writes.
const CREATED: &str = "2024-06-01T12:00:00.000000001Z";

/// A stable 64-hex ID for `label` (the sha256 of it), where dockerd would
/// use a random one or a digest.
pub fn id(label: &str) -> String {
    sha256(label.as_bytes())["sha256:".len()..].to_string()
}

/// The diff ID (`sha256:…`) of the layer [`DockerRoot::layer`] writes for
/// `label`.
pub fn diff_id(label: &str) -> String {
    format!("sha256:{}", id(&format!("diff {label}")))
}

/// The labels the kubelet (dockershim) puts on a pod's container.
pub fn pod_labels(
    pod: &str,
    namespace: &str,
    uid: &str,
    container: &str,
) -> BTreeMap<String, String> {
    [
        ("io.kubernetes.pod.name", pod),
        ("io.kubernetes.pod.namespace", namespace),
        ("io.kubernetes.pod.uid", uid),
        ("io.kubernetes.container.name", container),
        ("io.kubernetes.docker.type", "container"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// A committed image layer, as [`DockerRoot::layer`] wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layer {
    /// The label it was written for.
    pub name: String,
    /// Its chain ID (`sha256:…`): the layer DB entry's name.
    pub chain: String,
    /// The diff IDs of the layers from the base up to this one.
    pub diff_ids: Vec<String>,
    /// Its overlay2 directory's name (the entry's `cache-id`).
    pub cache_id: String,
    /// Its short name in `overlay2/l/` (the directory's `link`).
    pub link: String,
    /// Its tree: `overlay2/<cache-id>/diff`.
    pub dir: PathBuf,
    /// The links of this layer and the ones below it, top first: the
    /// `lower` of a layer on top of it.
    #[serde(skip)]
    links: Vec<String>,
}

/// An image config, as [`DockerRoot::image`] wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// The image ID (`sha256:` and the sha256 of the config).
    pub id: String,
    /// The chain IDs of its layers, base first.
    pub layers: Vec<String>,
    /// The config file.
    pub config: PathBuf,
}

/// What [`DockerRoot::container`] writes.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec<'a> {
    /// The container ID (64 hex digits): see [`id`].
    pub id: String,
    /// Its name, without Docker's leading `/`.
    pub name: String,
    /// The image as the container was created with it (`Config.Image`).
    pub image: String,
    /// The image ID (`sha256:…`).
    pub image_id: String,
    /// `Config.Labels` (`None` is JSON `null`); see [`pod_labels`].
    pub labels: Option<BTreeMap<String, String>>,
    /// The image's top layer, below the init and writable layers.
    pub layer: Option<&'a Layer>,
    /// How many files its writable layer holds.
    pub files: usize,
    /// Its json-file logs: how many lines `<id>-json.log`, then `.1`, … hold.
    pub logs: Vec<usize>,
}

/// A container, as [`DockerRoot::container`] wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Container {
    /// The container ID.
    pub id: String,
    /// The image ID it runs.
    pub image_id: String,
    /// Its writable layer's overlay2 directory's name.
    pub mount_id: String,
    /// Its writable layer: `overlay2/<mount-id>/diff`.
    pub writable_dir: PathBuf,
    /// Its json-file logs, current first.
    pub logs: Vec<PathBuf>,
}

/// A Docker root being written.
#[derive(Debug, Clone)]
pub struct DockerRoot {
    root: PathBuf,
    seed: u64,
}

impl DockerRoot {
    /// The Docker root at `root`, with the directories dockerd creates when
    /// it starts (created if missing; what is there already stays).
    pub fn create(root: impl Into<PathBuf>) -> io::Result<DockerRoot> {
        let store = DockerRoot {
            root: root.into(),
            seed: 0,
        };
        for rel in SKELETON {
            fs::create_dir_all(store.path(rel))?;
        }
        Ok(store)
    }

    /// The same root, whose file trees are drawn from `seed` (default 0).
    pub fn with_seed(self, seed: u64) -> DockerRoot {
        DockerRoot { seed, ..self }
    }

    /// The Docker root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` below the Docker root.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    /// Writes `contents` to `rel` below the Docker root, creating the
    /// directories above it; its path.
    pub fn write(&self, rel: &str, contents: impl AsRef<[u8]>) -> io::Result<PathBuf> {
        let path = self.path(rel);
        write(&path, contents)?;
        Ok(path)
    }

    /// Commits the layer with diff ID [`diff_id`]`(label)` on top of
    /// `parent`, its tree holding `files` files (see [`fill`]). A layer
    /// already in the layer DB is left as it is, as dockerd does not
    /// extract a layer twice.
    pub fn layer(&self, parent: Option<&Layer>, label: &str, files: usize) -> io::Result<Layer> {
        self.layer_in(&self.path(LAYERDB), parent, label, files)
    }

    /// Commits a stack of layers, base first: `(label, files)` each (see
    /// [`layer`](Self::layer)).
    pub fn stack(&self, layers: &[(&str, usize)]) -> io::Result<Vec<Layer>> {
        let mut stack: Vec<Layer> = Vec::with_capacity(layers.len());
        for &(label, files) in layers {
            let layer = self.layer(stack.last(), label, files)?;
            stack.push(layer);
        }
        Ok(stack)
    }

    /// [`layer`](Self::layer), with the layer DB entry written in `layerdb`
    /// (the tree always lands in this root's `overlay2/`).
    fn layer_in(
        &self,
        layerdb: &Path,
        parent: Option<&Layer>,
        label: &str,
        files: usize,
    ) -> io::Result<Layer> {
        self.commit(layerdb, parent, label, |dir, seed| {
            tree(dir, files, label, seed)
        })
    }

    /// Commits the layer `label` on top of `parent`, its entry in
    /// `layerdb`, its tree written by `contents(diff dir, seed)`, which
    /// returns the tree's apparent size (see [`layer`](Self::layer)).
    fn commit(
        &self,
        layerdb: &Path,
        parent: Option<&Layer>,
        label: &str,
        contents: impl FnOnce(&Path, u64) -> io::Result<u64>,
    ) -> io::Result<Layer> {
        let mut diff_ids = parent.map_or_else(Vec::new, |p| p.diff_ids.clone());
        diff_ids.push(diff_id(label));
        let chain = chain_ids(&diff_ids)
            .pop()
            .expect("diff IDs made by diff_id are sha256 digests");
        let cache_id = id(&format!("cache {chain}"));
        let lowers = parent.map_or(&[][..], |p| &p.links[..]);
        let entry = layerdb.join(&chain["sha256:".len()..]);
        let (dir, link) = if entry.join("cache-id").exists() {
            (self.overlay_dir(&cache_id).join("diff"), link_id(&cache_id))
        } else {
            let (dir, link) = self.overlay2(&cache_id, lowers)?;
            let size = contents(&dir, seed(self.seed, &chain))?;
            write(&entry.join("cache-id"), &cache_id)?;
            write(&entry.join("diff"), diff_ids.last().unwrap())?;
            write(&entry.join("size"), size.to_string())?;
            if let Some(parent) = parent {
                write(&entry.join("parent"), &parent.chain)?;
            }
            (dir, link)
        };
        let links = std::iter::once(link.clone())
            .chain(lowers.iter().cloned())
            .collect();
        Ok(Layer {
            name: label.to_string(),
            chain,
            diff_ids,
            cache_id,
            link,
            dir,
            links,
        })
    }

    fn overlay_dir(&self, name: &str) -> PathBuf {
        self.path("overlay2").join(name)
    }

    /// `overlay2/<name>/` as the overlay2 driver creates it on top of the
    /// layers whose links are `lowers` (top first), and its `l/` symlink;
    /// its empty `diff/` and its link.
    fn overlay2(&self, name: &str, lowers: &[String]) -> io::Result<(PathBuf, String)> {
        let dir = self.overlay_dir(name);
        let diff = dir.join("diff");
        fs::create_dir_all(&diff)?;
        let link = link_id(name);
        write(&dir.join("link"), &link)?;
        if !lowers.is_empty() {
            let lower: Vec<String> = lowers.iter().map(|l| format!("l/{l}")).collect();
            write(&dir.join("lower"), lower.join(":"))?;
            fs::create_dir_all(dir.join("work"))?;
        }
        let short = self.path("overlay2/l").join(&link);
        match fs::remove_file(&short) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        fs::create_dir_all(self.path("overlay2/l"))?;
        symlink(format!("../{name}/diff"), short)?;
        Ok((diff, link))
    }

    /// Stores the config of an image whose top layer is `top`, created at
    /// `created` (RFC 3339).
    pub fn image(&self, top: &Layer, created: &str) -> io::Result<Image> {
        self.image_in(&self.path(CONTENT), top, created)
    }

    fn image_in(&self, content: &Path, top: &Layer, created: &str) -> io::Result<Image> {
        let history: Vec<_> = (0..top.diff_ids.len())
            .map(|i| {
                let created_by = format!("/bin/sh -c #(nop) ADD layer {i}");
                json!({"created": created, "created_by": created_by})
            })
            .collect();
        let config = json!({
            "architecture": "amd64",
            "config": {"Env": ["PATH=/usr/local/bin:/usr/bin:/bin"], "Cmd": ["/bin/sh"]},
            "created": created,
            "history": history,
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": top.diff_ids},
        });
        let bytes = serde_json::to_vec(&config)?;
        let id = sha256(&bytes);
        let path = content.join(&id["sha256:".len()..]);
        write(&path, bytes)?;
        Ok(Image {
            id,
            layers: chain_ids(&top.diff_ids),
            config: path,
        })
    }

    /// Names the image `image_id` `reference` (`repo:tag` or
    /// `repo@sha256:…`) in `repositories.json`, beside its other names.
    pub fn name(&self, reference: &str, image_id: &str) -> io::Result<()> {
        name_in(&self.path(REPOSITORIES), reference, image_id)
    }

    /// Writes the image's `lastUpdated` metadata (an RFC 3339 time), which
    /// dockerd records when it tags an image.
    pub fn last_updated(&self, image_id: &str, time: &str) -> io::Result<PathBuf> {
        let hex = image_id.trim_start_matches("sha256:");
        self.write(
            &format!("image/overlay2/imagedb/metadata/sha256/{hex}/lastUpdated"),
            time,
        )
    }

    /// Writes a container: its directory, its mount in the layer DB, and
    /// its init and writable layers.
    pub fn container(&self, spec: &ContainerSpec) -> io::Result<Container> {
        let cid = &spec.id;
        let dir = self.path("containers").join(cid);
        let short = cid.get(..12).unwrap_or(cid);
        let config = json!({
            "StreamConfig": {},
            "State": {
                "Running": true,
                "Paused": false,
                "Pid": pid(cid),
                "ExitCode": 0,
                "StartedAt": CREATED,
            },
            "ID": cid,
            "Created": CREATED,
            "Managed": false,
            "Path": "/bin/sh",
            "Args": ["-c", "serve"],
            "Config": {
                "Hostname": short,
                "Image": spec.image,
                "Labels": spec.labels,
                "Cmd": ["serve"],
            },
            "Image": spec.image_id,
            "LogPath": dir.join(format!("{cid}-json.log")),
            "Name": format!("/{}", spec.name),
            "Driver": "overlay2",
            "MountPoints": {},
        });
        write(&dir.join("config.v2.json"), serde_json::to_vec(&config)?)?;
        let host_config = json!({"LogConfig": {"Type": "json-file", "Config": {}}});
        write(&dir.join("hostconfig.json"), host_config.to_string())?;
        for file in ["hostname", "hosts", "resolv.conf"] {
            write(&dir.join(file), format!("{short}\n"))?;
        }
        let logs = spec
            .logs
            .iter()
            .enumerate()
            .map(|(i, &lines)| {
                let rotation = if i == 0 {
                    String::new()
                } else {
                    format!(".{i}")
                };
                let path = dir.join(format!("{cid}-json.log{rotation}"));
                write(&path, log_lines(lines))?;
                Ok(path)
            })
            .collect::<io::Result<Vec<PathBuf>>>()?;

        let mount_id = id(&format!("mount {cid}"));
        let init_id = format!("{mount_id}-init");
        let mounts = self.path("image/overlay2/layerdb/mounts").join(cid);
        write(&mounts.join("mount-id"), &mount_id)?;
        write(&mounts.join("init-id"), &init_id)?;
        let lowers = spec.layer.map_or(&[][..], |l| &l.links[..]);
        if let Some(layer) = spec.layer {
            write(&mounts.join("parent"), &layer.chain)?;
        }
        let (init, init_link) = self.overlay2(&init_id, lowers)?;
        for file in [
            ".dockerenv",
            "etc/hosts",
            "etc/hostname",
            "etc/resolv.conf",
            "dev/console",
        ] {
            write(&init.join(file), "")?;
        }
        let lowers: Vec<String> = std::iter::once(init_link)
            .chain(lowers.iter().cloned())
            .collect();
        let (writable_dir, _) = self.overlay2(&mount_id, &lowers)?;
        tree(&writable_dir, spec.files, "rw", seed(self.seed, cid))?;
        Ok(Container {
            id: cid.clone(),
            image_id: spec.image_id.clone(),
            mount_id,
            writable_dir,
            logs,
        })
    }

    /// A layer download in flight, `tmp/GetImageBlob<suffix>`, holding
    /// `bytes` bytes so far.
    pub fn download(&self, suffix: &str, bytes: usize) -> io::Result<PathBuf> {
        self.write(&format!("tmp/GetImageBlob{suffix}"), vec![0u8; bytes])
    }
}

/// `repositories.json`: repository → (reference → image ID).
#[derive(Default, Serialize, Deserialize)]
struct Repositories {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

fn name_in(path: &Path, reference: &str, image_id: &str) -> io::Result<()> {
    let mut names: Repositories = match fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Repositories::default(),
        Err(e) => return Err(e),
    };
    names
        .repositories
        .entry(repository(reference).to_string())
        .or_default()
        .insert(reference.to_string(), image_id.to_string());
    write(path, serde_json::to_vec(&names)?)
}

/// The repository of `repo:tag` or `repo@digest`.
fn repository(reference: &str) -> &str {
    if let Some((repo, _)) = reference.split_once('@') {
        return repo;
    }
    match reference.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => repo,
        _ => reference,
    }
}

fn write(path: &Path, contents: impl AsRef<[u8]>) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    fs::write(path, contents)
}

/// The overlay2 driver's short name for a directory: 26 characters of
/// base32 (dockerd draws them at random).
fn link_id(name: &str) -> String {
    const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    Sha256::digest(format!("link {name}"))
        .iter()
        .take(26)
        .map(|&byte| char::from(BASE32[usize::from(byte % 32)]))
        .collect()
}

/// A plausible PID for the container `id`.
fn pid(id: &str) -> u64 {
    1000 + seed(0, id) % 30_000
}

/// `lines` lines of a json-file log.
fn log_lines(lines: usize) -> String {
    (0..lines)
        .map(|k| {
            format!(
                "{{\"log\":\"GET /healthz 200 {k}\\n\",\"stream\":\"stdout\",\"time\":\"{CREATED}\"}}\n"
            )
        })
        .collect()
}

/// Writes `files` files under `dir`, in nested directories shaped like a
/// container layer's (`usr/lib/pkg123/d4/…`, a few to two dozen files per
/// directory): a third of them empty, most of the rest up to 6000 bytes, one
/// in a hundred a large sparse file. Their names start with `tag`; the same
/// `tag` writes the same tree. Returns the bytes written (apparent size).
pub fn fill(dir: &Path, files: usize, tag: &str) -> io::Result<u64> {
    tree(dir, files, tag, seed(0, tag))
}

/// Top-level directories of a layer's tree.
const PARTS: [&str; 6] = [
    "usr/lib",
    "usr/share",
    "usr/bin",
    "etc",
    "var/lib",
    "opt/app",
];

/// [`fill`], with file names starting with `tag` and the tree drawn from
/// `seed`.
fn tree(dir: &Path, files: usize, tag: &str, seed: u64) -> io::Result<u64> {
    let mut rng = Rng(seed);
    fs::create_dir_all(dir)?;
    let mut bytes = 0;
    let mut made = 0;
    while made < files {
        let mut sub = dir
            .join(PARTS[rng.below(PARTS.len())])
            .join(format!("pkg{:03}", rng.below(400)));
        for _ in 0..rng.below(5) {
            sub.push(format!("d{}", rng.below(6)));
        }
        fs::create_dir_all(&sub)?;
        for _ in 0..1 + rng.below(24) {
            if made == files {
                break;
            }
            bytes += file(&sub.join(format!("{tag}{made:07}")), &mut rng)?;
            made += 1;
        }
    }
    Ok(bytes)
}

/// One file of a tree; its length.
fn file(path: &Path, rng: &mut Rng) -> io::Result<u64> {
    let mut f = File::create(path)?;
    let len = match rng.below(100) {
        0..35 => 0,
        35..99 => {
            let len = 1 + rng.below(6000);
            f.write_all(&[b'x'; 6000][..len])?;
            len as u64
        }
        _ => {
            f.write_all(b"\x7fELF")?;
            let len = 65_536 + rng.below(1 << 20) as u64;
            f.set_len(len)?;
            len
        }
    };
    Ok(len)
}

/// A seed from a number and a label.
fn seed(seed: u64, label: &str) -> u64 {
    let digest = Sha256::digest(format!("{seed} {label}"));
    u64::from_be_bytes(digest[..8].try_into().unwrap())
}

/// splitmix64: small, fast and good enough for shaping trees (and for the
/// fault trials' mutations): the same numbers from a seed on every host.
pub struct Rng(pub u64);

impl Rng {
    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The layers of a [`synthetic`] store: (label, parent, share of
/// [`Synthetic::layer_files`]). Leaves are application layers.
const LAYERS: [(&str, Option<&str>, f64); 14] = [
    ("debian", None, 0.16),
    ("python", Some("debian"), 0.12),
    ("app-web", Some("python"), 0.08),
    ("app-web-code", Some("app-web"), 0.01),
    ("app-worker", Some("python"), 0.07),
    ("app-ml", Some("python"), 0.10),
    ("node", Some("debian"), 0.12),
    ("app-frontend", Some("node"), 0.06),
    ("jdk", Some("debian"), 0.08),
    ("app-billing", Some("jdk"), 0.05),
    ("alpine", None, 0.02),
    ("nginx", Some("alpine"), 0.01),
    ("go-tools", Some("alpine"), 0.06),
    ("ubuntu", None, 0.06),
];

/// The images of a [`synthetic`] store: (reference, top layer).
const IMAGES: [(&str, &str); 12] = [
    ("docker.io/library/debian:12", "debian"),
    ("docker.io/library/python:3.12", "python"),
    ("registry.example/shop/web:1.4", "app-web-code"),
    ("registry.example/shop/worker:2.0", "app-worker"),
    ("registry.example/lab/ml:0.9", "app-ml"),
    ("docker.io/library/node:20", "node"),
    ("registry.example/shop/frontend:3.1", "app-frontend"),
    ("registry.example/pay/billing:7", "app-billing"),
    ("docker.io/library/alpine:3.19", "alpine"),
    ("docker.io/library/nginx:1.25-alpine", "nginx"),
    ("registry.example/ops/go-tools:1", "go-tools"),
    ("docker.io/library/ubuntu:22.04", "ubuntu"),
];

/// The top layers of the images the containers run, round robin.
const RUNNING: [&str; 6] = [
    "app-web-code",
    "app-worker",
    "app-ml",
    "app-frontend",
    "app-billing",
    "nginx",
];

/// The shape of a [`synthetic`] store.
#[derive(Debug, Clone, PartialEq)]
pub struct Synthetic {
    /// Files in the layer trees, between them.
    pub layer_files: usize,
    /// Files in the containers' writable layers, between them.
    pub writable_files: usize,
    /// How many containers.
    pub containers: usize,
    /// One more image whose metadata is kept aside, if any.
    pub extra: Option<Extra>,
    /// What the file trees are drawn from.
    pub seed: u64,
    /// How many wasteful images to add (see [`Planted`]); writing them
    /// needs root.
    pub wasteful: usize,
}

impl Default for Synthetic {
    fn default() -> Synthetic {
        Synthetic {
            layer_files: 520_000,
            writable_files: 5000,
            containers: 20,
            extra: None,
            seed: 42,
            wasteful: 0,
        }
    }
}

/// A new image on top of the python image, pulled but not yet committed:
/// its layer's tree lands in the Docker root, but its layer DB entry, its
/// config and the `repositories.json` naming it go to `pending` (as
/// `layerdb/<chain>/`, `content/<id>` and `repositories.json`), for the
/// caller to move into the root as dockerd commits a pull, by rename.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extra {
    /// Files in its layer.
    pub files: usize,
    /// Where its metadata goes.
    pub pending: PathBuf,
}

/// An image of a [`synthetic`] store, with its tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedImage {
    /// Its `repo:tag`.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The image.
    #[serde(flatten)]
    pub image: Image,
    /// Regular files in its final filesystem (its layers' files less those
    /// a later layer hides or replaces).
    pub files: usize,
}

/// The [`Extra`] image, as written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraImage {
    /// The image, named in the pending `repositories.json`.
    #[serde(flatten)]
    pub image: NamedImage,
    /// Its new layer's chain ID.
    pub chain: String,
    /// Its new layer's tree, in the Docker root.
    pub dir: PathBuf,
}

/// What [`synthetic`] wrote (as JSON, what `examples/fake-docker-root.rs`
/// writes to `--manifest`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Manifest {
    /// The images, each named once by tag and once by digest.
    pub images: Vec<NamedImage>,
    /// The committed layers.
    pub layers: Vec<Layer>,
    /// The containers.
    pub containers: Vec<Container>,
    /// The pending image, if any.
    pub extra: Option<ExtraImage>,
    /// Files written in the layer trees and writable layers.
    pub files: usize,
    /// The waste planted in the wasteful images; the other images have
    /// none but what chance puts in the duplicates.
    pub planted: Vec<Planted>,
}

/// Writes a synthetic node's Docker store in `root` (absent or empty):
/// twelve images over fourteen layer trees sharing base layers (debian,
/// python, node, alpine, …) holding about `layer_files` files between them,
/// and `containers` kubelet-run containers of the application images
/// (pods `pod-00`, … in namespaces `ns-0` to `ns-2`), with `writable_files`
/// files in their writable layers between them and json-file logs (every
/// third one rotated once); then [`Synthetic::wasteful`] images, each two
/// layers on a base image (see [`Planted`]).
pub fn synthetic(root: &Path, shape: &Synthetic) -> io::Result<Manifest> {
    if fs::read_dir(root).is_ok_and(|mut entries| entries.next().is_some()) {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "the Docker root exists and is not empty",
        ));
    }
    let store = DockerRoot::create(root)?.with_seed(shape.seed);
    let mut files = 0;
    let mut layers: Vec<Layer> = Vec::with_capacity(LAYERS.len() + 2 * shape.wasteful);
    // Files per layer tree, by label.
    let mut counts = BTreeMap::new();
    for (label, parent, share) in LAYERS {
        let count = ((shape.layer_files as f64 * share) as usize).max(1);
        let parent = parent.map(|p| find(&layers, p));
        let layer = store.layer(parent, label, count)?;
        files += count;
        counts.insert(label.to_string(), count);
        layers.push(layer);
    }

    let mut images = Vec::with_capacity(IMAGES.len() + shape.wasteful);
    for (reference, top) in IMAGES {
        let top = find(&layers, top);
        let image = named_image(&store, top, reference)?;
        images.push((top.name.clone(), reference.to_string(), image));
    }

    let mut planted = Vec::with_capacity(shape.wasteful);
    let tree_files = shape.layer_files / 50;
    for i in 0..shape.wasteful {
        let base = find(&layers, WASTE_BASES[i % WASTE_BASES.len()]).clone();
        let build = store.build_layer(&base, i, tree_files)?;
        let cleanup = store.cleanup_layer(&build, i)?;
        let reference = format!("registry.example/bloat/app-{i:02}:1");
        let image = named_image(&store, &cleanup, &reference)?;
        let waste = Planted::new(&image.id, &reference, i, shape.wasteful);
        files += tree_files + PLANTED_BUILD + PLANTED_CLEANUP;
        counts.insert(build.name.clone(), tree_files + PLANTED_BUILD);
        counts.insert(cleanup.name.clone(), PLANTED_CLEANUP);
        images.push((cleanup.name.clone(), reference, image));
        layers.extend([build, cleanup]);
        planted.push(waste);
    }

    let per_container = shape.writable_files / shape.containers.max(1);
    let mut containers = Vec::with_capacity(shape.containers);
    for i in 0..shape.containers {
        let top = RUNNING[i % RUNNING.len()];
        let (_, reference, image) = images.iter().find(|(t, _, _)| t == top).unwrap();
        let (pod, namespace) = (format!("pod-{i:02}"), format!("ns-{}", i % 3));
        let uid = format!("0b0e6c1a-{i:04}-2222-3333-444455556666");
        let mut logs = vec![2000 + 300 * i];
        if i % 3 == 0 {
            logs.push(5000);
        }
        containers.push(store.container(&ContainerSpec {
            id: id(&format!("container {} {i}", shape.seed)),
            name: format!("k8s_main_{pod}_{namespace}_0_0"),
            image: reference.clone(),
            image_id: image.id.clone(),
            labels: Some(pod_labels(&pod, &namespace, &uid, "main")),
            layer: Some(find(&layers, top)),
            files: per_container,
            logs,
        })?);
        files += per_container;
    }

    let extra = match &shape.extra {
        Some(extra) => {
            files += extra.files;
            let python = find(&layers, "python");
            let below = stack_files(&layers, &counts, &chain_ids(&python.diff_ids));
            Some(pending_image(&store, python, extra, below)?)
        }
        None => None,
    };
    let images = images
        .into_iter()
        .map(|(_, reference, image)| {
            let layer_files = stack_files(&layers, &counts, &image.layers);
            let waste = planted.iter().find(|p| p.id == image.id);
            let hidden = waste.map_or(0, Planted::hidden_or_replaced);
            NamedImage {
                reference,
                image,
                files: layer_files - hidden,
            }
        })
        .collect();
    Ok(Manifest {
        images,
        layers,
        containers,
        extra,
        files,
        planted,
    })
}

/// Stores the config of the image whose top layer is `top`, named
/// `reference` by tag and by a digest.
fn named_image(store: &DockerRoot, top: &Layer, reference: &str) -> io::Result<Image> {
    let created = format!(
        "2024-{:02}-{:02}T10:00:00.123456789Z",
        1 + top.diff_ids.len().min(11),
        1 + reference.len() % 27
    );
    let image = store.image(top, &created)?;
    store.name(reference, &image.id)?;
    let manifest = sha256(format!("manifest {reference}").as_bytes());
    store.name(&format!("{}@{manifest}", repository(reference)), &image.id)?;
    Ok(image)
}

/// The files in the trees of the layers `chains`, whose counts by label are
/// `counts`.
fn stack_files(layers: &[Layer], counts: &BTreeMap<String, usize>, chains: &[String]) -> usize {
    chains
        .iter()
        .map(|chain| {
            let layer = layers.iter().find(|l| &l.chain == chain).unwrap();
            counts[&layer.name]
        })
        .sum()
}

fn find<'a>(layers: &'a [Layer], name: &str) -> &'a Layer {
    layers.iter().find(|l| l.name == name).unwrap()
}

/// The [`Extra`] image: its tree in `store`, its metadata in `pending`.
/// `below` is the files in `base`'s stack.
fn pending_image(
    store: &DockerRoot,
    base: &Layer,
    extra: &Extra,
    below: usize,
) -> io::Result<ExtraImage> {
    let pending = &extra.pending;
    let layer = store.layer_in(&pending.join("layerdb"), Some(base), "extra", extra.files)?;
    let image = store.image_in(&pending.join("content"), &layer, CREATED)?;
    let reference = "registry.example/shop/extra:1";
    let names = pending.join("repositories.json");
    fs::copy(store.path(REPOSITORIES), &names)?;
    name_in(&names, reference, &image.id)?;
    Ok(ExtraImage {
        image: NamedImage {
            reference: reference.to_string(),
            image,
            files: below + extra.files,
        },
        chain: layer.chain,
        dir: layer.dir,
    })
}

/// The base images the wasteful images build on, round robin.
const WASTE_BASES: [&str; 5] = ["python", "node", "jdk", "debian", "ubuntu"];
/// The file a wasteful image's cleanup layer deletes (a whiteout): its
/// size is this plus 4 KiB per image index, its content pseudorandom.
const BIG: (&str, usize) = ("opt/build/big.bin", 3 << 20);
/// The directory the cleanup layer makes opaque, with (files, bytes each)
/// below it in the build layer.
const TOOLCHAIN: (&str, usize, usize) = ("opt/build/toolchain", 48, 16 << 10);
/// The file the cleanup layer replaces, with (lower, upper) sizes.
const CONFIG: (&str, usize, usize) = ("etc/app/config.toml", 1000, 1200);
/// The tree the cleanup layer re-ships chowned: (dir, files, bytes each).
const CHOWNED: (&str, usize, usize) = ("srv/app", 64, 8 << 10);
/// The owner of the chowned copies.
const CHOWNED_TO: u32 = 1000;
/// The apt cache left in the build layer: (dir, files, bytes each).
const APT: [(&str, usize, usize); 2] = [
    ("var/cache/apt/archives", 16, 64 << 10),
    ("var/lib/apt/lists", 2, 256 << 10),
];
/// The same file in every wasteful image's own build layer.
const SHARED: (&str, usize) = ("opt/models/shared.bin", 2 << 20);
/// Regular files a build layer holds besides its tree.
const PLANTED_BUILD: usize = 1 + TOOLCHAIN.1 + 1 + CHOWNED.1 + APT[0].1 + APT[1].1 + 1;
/// Regular files a cleanup layer holds: a README in the opaque directory,
/// the new config and the chowned copies.
const PLANTED_CLEANUP: usize = 1 + 1 + CHOWNED.1;

/// Files and apparent bytes of one kind of waste.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Regular files.
    pub files: usize,
    /// Their st_size, summed.
    pub bytes: u64,
}

impl Tally {
    fn of(files: usize, bytes_each: usize) -> Tally {
        Tally {
            files,
            bytes: (files * bytes_each) as u64,
        }
    }
}

/// The waste planted in a wasteful image of a [`synthetic`] store, by the
/// audit's kinds. The image is a base image (python, node, jdk, debian,
/// ubuntu, round robin) and two layers. The build layer holds a tree of
/// [`Synthetic::layer_files`]` / 50` files, a large file, a toolchain
/// directory, a config file, a tree to chown, an apt cache and a 2 MiB file
/// every wasteful image ships in its own layer. The cleanup layer deletes
/// the large file (a whiteout: a 0/0 character device), makes the
/// toolchain directory opaque (`trusted.overlay.opaque=y`), replaces the
/// config file by another content, and re-ships the tree with the same
/// content owned by uid 1000.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Planted {
    /// The image ID.
    pub id: String,
    /// Its tag.
    #[serde(rename = "ref")]
    pub reference: String,
    /// Files the cleanup layer deletes or hides in its opaque directory.
    pub hidden: Tally,
    /// The config file's lower copy.
    pub overwritten: Tally,
    /// The chowned tree's lower copies.
    pub metadata_only: Tally,
    /// The apt cache.
    pub apt: Tally,
    /// The shared file, when another wasteful image ships it too.
    pub duplicate: Tally,
}

impl Planted {
    /// What the `index`th of `of` wasteful images plants.
    fn new(id: &str, reference: &str, index: usize, of: usize) -> Planted {
        let toolchain = Tally::of(TOOLCHAIN.1, TOOLCHAIN.2);
        let apt = APT.map(|(_, files, each)| Tally::of(files, each));
        Planted {
            id: id.to_string(),
            reference: reference.to_string(),
            hidden: Tally {
                files: 1 + toolchain.files,
                bytes: big_len(index) as u64 + toolchain.bytes,
            },
            overwritten: Tally::of(1, CONFIG.1),
            metadata_only: Tally::of(CHOWNED.1, CHOWNED.2),
            apt: Tally {
                files: apt[0].files + apt[1].files,
                bytes: apt[0].bytes + apt[1].bytes,
            },
            duplicate: if of > 1 {
                Tally::of(1, SHARED.1)
            } else {
                Tally::default()
            },
        }
    }

    /// Files of its layers missing from its final filesystem: hidden, or
    /// replaced by an upper copy.
    fn hidden_or_replaced(&self) -> usize {
        self.hidden.files + self.overwritten.files + self.metadata_only.files
    }
}

/// The size of the `index`th wasteful image's large file.
fn big_len(index: usize) -> usize {
    BIG.1 + 4096 * index
}

impl DockerRoot {
    /// The build layer of the `index`th wasteful image, on `base`, with a
    /// tree of `files` files (see [`Planted`]).
    fn build_layer(&self, base: &Layer, index: usize, files: usize) -> io::Result<Layer> {
        let label = format!("waste-{index}-build");
        self.commit(&self.path(LAYERDB), Some(base), &label, |dir, seed| {
            let mut rng = Rng(seed);
            let mut bytes = tree(dir, files, &label, seed)?;
            bytes += blob(&dir.join(BIG.0), &noise(&mut rng, big_len(index)))?;
            for k in 0..TOOLCHAIN.1 {
                let path = dir.join(TOOLCHAIN.0).join(format!("lib{k:02}.a"));
                bytes += blob(&path, &noise(&mut rng, TOOLCHAIN.2))?;
            }
            bytes += blob(&dir.join(CONFIG.0), &[b'a'; CONFIG.1])?;
            for k in 0..CHOWNED.1 {
                bytes += blob(&dir.join(chowned(k)), &chowned_content(index, k))?;
            }
            for (apt, count, each) in APT {
                for k in 0..count {
                    let path = dir.join(apt).join(format!("pkg{k:02}"));
                    bytes += blob(&path, &noise(&mut rng, each))?;
                }
            }
            bytes += blob(&dir.join(SHARED.0), &noise(&mut Rng(7), SHARED.1))?;
            Ok(bytes)
        })
    }

    /// The cleanup layer of the `index`th wasteful image, on its build
    /// layer (see [`Planted`]).
    fn cleanup_layer(&self, build: &Layer, index: usize) -> io::Result<Layer> {
        let label = format!("waste-{index}-cleanup");
        self.commit(&self.path(LAYERDB), Some(build), &label, |dir, _| {
            whiteout(&dir.join(BIG.0))?;
            let toolchain = dir.join(TOOLCHAIN.0);
            let mut bytes = blob(&toolchain.join("README"), b"moved to /usr/local\n")?;
            opaque(&toolchain)?;
            bytes += blob(&dir.join(CONFIG.0), &[b'b'; CONFIG.2])?;
            for k in 0..CHOWNED.1 {
                let path = dir.join(chowned(k));
                bytes += blob(&path, &chowned_content(index, k))?;
                std::os::unix::fs::chown(&path, Some(CHOWNED_TO), Some(CHOWNED_TO))
                    .map_err(|e| at(&path, e))?;
            }
            Ok(bytes)
        })
    }
}

/// The `k`th file of the chowned tree.
fn chowned(k: usize) -> String {
    format!("{}/m{}/f{k:03}.py", CHOWNED.0, k % 4)
}

/// The content of the `k`th file of the `index`th image's chowned tree.
fn chowned_content(index: usize, k: usize) -> Vec<u8> {
    noise(&mut Rng(seed(index as u64, &chowned(k))), CHOWNED.2)
}

/// `len` pseudorandom bytes.
fn noise(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..len.div_ceil(8))
        .flat_map(|_| rng.next_u64().to_le_bytes())
        .collect();
    bytes.truncate(len);
    bytes
}

/// Writes `contents` to `path`, creating the directories above it; its
/// length.
fn blob(path: &Path, contents: &[u8]) -> io::Result<u64> {
    write(path, contents).map_err(|e| at(path, e))?;
    Ok(contents.len() as u64)
}

/// Deletes `path` in an overlay2 layer: a 0/0 character device in its
/// place (needs root).
pub fn whiteout(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(|e| at(parent, e))?;
    }
    let file_type = rustix::fs::FileType::CharacterDevice;
    rustix::fs::mknodat(rustix::fs::CWD, path, file_type, Mode::empty(), 0)
        .map_err(|e| at(path, e.into()))
}

/// Makes `dir` (created if missing) opaque in an overlay2 layer, hiding
/// what lower layers hold below it: `trusted.overlay.opaque=y` (needs
/// root).
pub fn opaque(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir).map_err(|e| at(dir, e))?;
    rustix::fs::setxattr(dir, "trusted.overlay.opaque", b"y", XattrFlags::empty())
        .map_err(|e| at(dir, e.into()))
}

/// `error`, saying it was about `path`.
fn at(path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::docker::discover;

    #[test]
    fn references_name_their_repository() {
        assert_eq!(repository("demo/app:v2"), "demo/app");
        assert_eq!(repository("localhost:5000/app"), "localhost:5000/app");
        assert_eq!(repository("localhost:5000/app:1"), "localhost:5000/app");
        assert_eq!(repository("demo/app@sha256:ab"), "demo/app");
    }

    #[test]
    fn a_synthetic_store_reads_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("docker");
        let pending = dir.path().join("pending");
        let shape = Synthetic {
            layer_files: 300,
            writable_files: 20,
            containers: 4,
            extra: Some(Extra {
                files: 5,
                pending: pending.clone(),
            }),
            seed: 7,
            wasteful: 0,
        };
        let m = synthetic(&root, &shape).unwrap();
        let d = discover(&root).unwrap();
        assert_eq!(d.problems, vec![]);
        let mut layers: Vec<(String, PathBuf)> = m
            .layers
            .iter()
            .map(|l| (l.chain.clone(), l.dir.clone()))
            .collect();
        layers.sort();
        assert_eq!(super::super::tests::layer_dirs(&d), layers);
        for image in &m.images {
            let read = d.images.iter().find(|i| i.id == image.image.id).unwrap();
            assert_eq!(read.layers, image.image.layers);
            assert!(read.refs.contains(&image.reference), "{read:?}");
        }
        assert_eq!(d.images.len(), m.images.len());
        let mut containers: Vec<_> = m
            .containers
            .iter()
            .map(|c| (c.id.clone(), Some(c.writable_dir.clone()), c.logs.clone()))
            .collect();
        containers.sort();
        let got: Vec<_> = d
            .containers
            .iter()
            .map(|c| (c.id.clone(), c.writable_dir.clone(), c.log_files.clone()))
            .collect();
        assert_eq!(got, containers);
        assert!(d.containers.iter().all(|c| c.pod.is_some()));
        assert_eq!(m.files, 300 + 20 + 5);
        assert!(m.planted.is_empty());
        let python = m.images.iter().find(|i| i.reference.contains("python"));
        // debian's 16% and python's 12% of 300 files.
        assert_eq!(python.unwrap().files, 48 + 36);

        // The pending image is not in the root until moved in.
        let extra = m.extra.clone().unwrap();
        assert_eq!(extra.image.files, 48 + 36 + 5);
        assert!(extra.dir.is_dir() && d.layers.iter().all(|l| l.chain_id != extra.chain));
        assert!(pending
            .join("layerdb")
            .join(&extra.chain[7..])
            .join("cache-id")
            .is_file());
        assert!(pending
            .join("content")
            .join(&extra.image.image.id[7..])
            .is_file());

        // The same shape writes the same store; the root must be empty.
        let again = synthetic(&dir.path().join("again"), &shape).unwrap();
        assert_eq!(
            again.layers.iter().map(|l| &l.chain).collect::<Vec<_>>(),
            m.layers.iter().map(|l| &l.chain).collect::<Vec<_>>()
        );
        let err = synthetic(&root, &shape).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn wasteful_images_hold_what_they_plant() {
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        if !rustix::process::geteuid().is_root() {
            // Whiteouts, trusted xattrs and chown need root.
            assert!(std::env::var_os("CI").is_none(), "needs root");
            eprintln!("wasteful_images_hold_what_they_plant: skipped, needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let shape = Synthetic {
            layer_files: 500,
            containers: 1,
            wasteful: 2,
            ..Synthetic::default()
        };
        let m = synthetic(dir.path(), &shape).unwrap();
        let d = discover(dir.path()).unwrap();
        assert_eq!((d.problems.len(), d.images.len()), (0, 14));
        assert_eq!(m.planted.len(), 2);
        for (i, planted) in m.planted.iter().enumerate() {
            let image = m.images.iter().find(|n| n.image.id == planted.id).unwrap();
            let dirs: Vec<&Path> = (image.image.layers.iter())
                .map(|c| {
                    m.layers
                        .iter()
                        .find(|l| &l.chain == c)
                        .unwrap()
                        .dir
                        .as_path()
                })
                .collect();
            let (build, cleanup) = (dirs[dirs.len() - 2], dirs[dirs.len() - 1]);
            let size = |path: PathBuf| fs::metadata(path).unwrap().len();
            let sizes = |dir: PathBuf| -> (usize, u64) {
                let entries = fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
                entries.fold((0, 0), |(n, b), p| (n + 1, b + size(p)))
            };

            let white = fs::symlink_metadata(cleanup.join(BIG.0)).unwrap();
            assert!(white.file_type().is_char_device() && white.rdev() == 0);
            let toolchain = sizes(build.join(TOOLCHAIN.0));
            let hidden = (toolchain.0 + 1, toolchain.1 + size(build.join(BIG.0)));
            assert_eq!((planted.hidden.files, planted.hidden.bytes), hidden);
            let mut flag = [0u8; 1];
            let xattr = "trusted.overlay.opaque";
            rustix::fs::getxattr(cleanup.join(TOOLCHAIN.0), xattr, &mut flag).unwrap();
            assert_eq!(&flag, b"y");

            let (lower, upper) = (build.join(CONFIG.0), cleanup.join(CONFIG.0));
            assert_ne!(fs::read(&lower).unwrap(), fs::read(upper).unwrap());
            assert_eq!(planted.overwritten.bytes, size(lower));

            let mut chowned_bytes = 0;
            for k in 0..CHOWNED.1 {
                let (lower, upper) = (build.join(chowned(k)), cleanup.join(chowned(k)));
                assert_eq!(fs::read(&lower).unwrap(), fs::read(&upper).unwrap());
                let uids = (
                    fs::metadata(&lower).unwrap().uid(),
                    fs::metadata(upper).unwrap().uid(),
                );
                assert_eq!(uids, (0, CHOWNED_TO));
                chowned_bytes += size(lower);
            }
            assert_eq!(planted.metadata_only.bytes, chowned_bytes);

            let apt = APT.map(|(d, _, _)| sizes(build.join(d)));
            let apt = (apt[0].0 + apt[1].0, apt[0].1 + apt[1].1);
            assert_eq!((planted.apt.files, planted.apt.bytes), apt);

            let other = &m.planted[1 - i];
            let other = m.images.iter().find(|n| n.image.id == other.id).unwrap();
            assert!(!other
                .image
                .layers
                .contains(&image.image.layers[dirs.len() - 2]));
            let shared = fs::read(build.join(SHARED.0)).unwrap();
            assert_eq!(planted.duplicate.bytes, shared.len() as u64);
        }
        let [a, b] = [0, 1].map(|i| {
            let build = m
                .layers
                .iter()
                .find(|l| l.name == format!("waste-{i}-build"));
            fs::read(build.unwrap().dir.join(SHARED.0)).unwrap()
        });
        assert_eq!(a, b);
    }

    #[test]
    fn fill_writes_as_many_files_as_asked_and_says_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = fill(dir.path(), 500, "t").unwrap();
        let mut files = 0;
        let mut total = 0;
        let mut stack = vec![dir.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(d).unwrap() {
                let entry = entry.unwrap();
                let meta = entry.metadata().unwrap();
                if meta.is_dir() {
                    stack.push(entry.path());
                } else {
                    files += 1;
                    total += meta.len();
                }
            }
        }
        assert_eq!((files, total), (500, bytes));
    }
}
