//! Docker overlay2 store reader.
//!
//! Reads dockerd's own files (never its API) under the Docker root: image
//! names from `image/overlay2/repositories.json`, image configs from the
//! image DB, layer directories from the layer DB, and containers from
//! `containers/`. It says what exists and where; [`crate::inventory`]
//! measures. Anything partial or corrupt becomes a [`Problem`] and the rest is
//! still reported; only a missing or foreign store is an error.
//!
//! [`Problem`]: super::Problem

mod containers;
mod files;
pub mod fixture;
mod images;
mod layers;
mod pulls;

pub(crate) use self::files::{is_real_dir, parse_time};
pub use self::pulls::tmp_dir;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{Classified, Discovery, ProblemKind, Read, ReadError, Reader, Runtime, RuntimeKind};
use tokio::runtime::Handle;

use crate::layout::NodeLayout;
use crate::model::{Image, ReadFrom};

/// Who meets the problems of this reader.
const READER: Reader = Reader::Runtime(RuntimeKind::Docker);

/// Docker with the overlay2 graph driver, read from its files.
#[derive(Debug, Clone, Copy)]
pub struct Docker;

impl Runtime for Docker {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Docker
    }

    fn location<'a>(&self, layout: &'a NodeLayout) -> &'a Path {
        &layout.docker_root
    }

    fn discover(&self, layout: &NodeLayout, _handle: &Handle) -> Result<Read, ReadError> {
        let discovery = discover(&layout.docker_root)?;
        Ok(Read {
            discovery,
            note: None,
            from: ReadFrom::Files,
        })
    }

    /// Never: everything the figures need is in Docker's files, and
    /// Docker's socket is root on the node, so the agent does not mount it.
    fn has_api(&self) -> bool {
        false
    }

    fn default_pull_dirs(&self, layout: &NodeLayout) -> Vec<PathBuf> {
        vec![tmp_dir(&layout.docker_root)]
    }

    fn default_image_root(&self, layout: &NodeLayout) -> PathBuf {
        layout.docker_root.clone()
    }

    /// The image store of cri-dockerd nodes, and of Docker 20.10 nodes
    /// whose own containerd answers but holds no images.
    fn cri_rank(&self, _holds_images: bool) -> u8 {
        2
    }

    /// cri-dockerd shows the kubelet every Docker image.
    fn kubelet_manages(&self, _image: &Image) -> bool {
        true
    }

    /// cri-dockerd reports an image by its unpacked (apparent) size.
    fn gc_credit(&self, image: &Image) -> u64 {
        image.apparent_bytes
    }

    fn namespaced(&self) -> bool {
        false
    }

    fn blob_note(&self) -> &'static str {
        "Docker needs them while pulling and deletes them after unpacking"
    }

    /// Docker's events come from its API, which Headroom does not use: its
    /// files are read.
    fn events(&self, _layout: &NodeLayout) -> Option<Box<dyn super::Events>> {
        None
    }
}

/// Why Docker's store could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    /// The Docker root does not exist.
    #[error("{path}: Docker root does not exist", path = .path.display())]
    RootMissing {
        /// The Docker root given.
        path: PathBuf,
    },
    /// A directory of the store is something else.
    #[error("{path}: not a directory", path = .path.display())]
    NotADirectory {
        /// The path that should be a directory.
        path: PathBuf,
    },
    /// A directory of the store could not be read.
    #[error("{path}: {source}", path = .path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// dockerd uses another graph driver.
    #[error("{path}: graph driver {driver} is not supported, only overlay2", path = .path.display())]
    UnsupportedDriver {
        /// The driver's image directory (`<root>/image/<driver>`).
        path: PathBuf,
        /// The driver's name.
        driver: String,
    },
    /// There is no graph-driver image store (dockerd may be using the
    /// containerd image store, which the containerd reader covers).
    #[error("{path}: no Docker overlay2 image store", path = .path.display())]
    NoOverlay2Store {
        /// Where the store was expected (`<root>/image/overlay2`).
        path: PathBuf,
    },
}

/// A missing root or image store is Docker not being there (or dockerd
/// using containerd's image store), not a problem.
impl Classified for DockerError {
    fn kind(&self) -> ProblemKind {
        match self {
            DockerError::RootMissing { .. } | DockerError::NoOverlay2Store { .. } => {
                ProblemKind::Missing
            }
            DockerError::NotADirectory { .. } => ProblemKind::Malformed,
            DockerError::Io { source, .. } => ProblemKind::of_io(source),
            DockerError::UnsupportedDriver { .. } => ProblemKind::Unsupported,
        }
    }
}

/// Reads Docker's overlay2 metadata under `docker_root` (e.g. `/var/lib/docker`).
pub fn discover(docker_root: &Path) -> Result<Discovery, DockerError> {
    let image_dir = store_dir(docker_root)?;
    let mut discovery = Discovery::new(RuntimeKind::Docker, docker_root.to_path_buf());
    let problems = &mut discovery.problems;
    discovery.layers = layers::discover(docker_root, &image_dir, problems);
    let known: HashSet<&str> = discovery
        .layers
        .iter()
        .map(|l| l.chain_id.as_str())
        .collect();
    discovery.images = images::discover(&image_dir, &known, problems);
    discovery.containers = containers::discover(docker_root, &image_dir, problems);
    discovery.pulls = pulls::discover(docker_root, SystemTime::now(), problems);
    discovery.pull_dirs = vec![pulls::tmp_dir(docker_root)];
    Ok(discovery)
}

/// `<root>/image/overlay2`, once the root and the driver are checked.
fn store_dir(docker_root: &Path) -> Result<PathBuf, DockerError> {
    // The root itself may be a symlink (to a bigger disk): follow it.
    check_dir(docker_root).map_err(|e| match e {
        DockerError::Io { path, source } if source.kind() == io::ErrorKind::NotFound => {
            DockerError::RootMissing { path }
        }
        e => e,
    })?;
    let image = docker_root.join("image");
    let overlay = image.join("overlay2");
    match check_dir(&overlay) {
        Err(DockerError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
        result => return result.map(|()| overlay),
    }
    match other_driver(&image) {
        Some(driver) => Err(DockerError::UnsupportedDriver {
            path: image.join(&driver),
            driver,
        }),
        None => Err(DockerError::NoOverlay2Store { path: overlay }),
    }
}

fn check_dir(path: &Path) -> Result<(), DockerError> {
    let meta = fs::metadata(path).map_err(|source| DockerError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_dir() {
        return Err(DockerError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    fs::read_dir(path)
        .map(drop)
        .map_err(|source| DockerError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// The first graph-driver directory under `<root>/image`, if any.
fn other_driver(image: &Path) -> Option<String> {
    let mut drivers: Vec<String> = fs::read_dir(image)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    drivers.sort();
    drivers.into_iter().next()
}

#[cfg(test)]
pub(super) mod tests {
    use super::fixture::{self, diff_id, id as hex, pod_labels, ContainerSpec, DockerRoot};
    use super::*;
    use crate::runtime::{ContainerRecord, PodRef, Problem};
    use std::process::Command;
    use std::time::{Duration, SystemTime};

    /// (chain ID, directory) of each layer `d` lists, as the tests compare them.
    pub(super) fn layer_dirs(d: &Discovery) -> Vec<(String, PathBuf)> {
        d.layers
            .iter()
            .map(|l| (l.chain_id.clone(), l.dir.clone()))
            .collect()
    }

    /// Chain IDs of `diff_ids` computed by Python's hashlib (the oracle).
    pub(crate) fn python_chain_ids(diff_ids: &[String]) -> Vec<String> {
        let script = "import hashlib, sys\nc = None\nfor d in sys.argv[1:]:\n    \
                      c = d if c is None else 'sha256:' + hashlib.sha256((c + ' ' + d).encode()).hexdigest()\n    \
                      print(c)";
        let out = Command::new("python3")
            .arg("-c")
            .arg(script)
            .args(diff_ids)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A Docker root in a tempdir, written the way dockerd writes it.
    fn store() -> (tempfile::TempDir, DockerRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = DockerRoot::create(dir.path()).unwrap();
        (dir, root)
    }

    /// Base image (2 layers) and a derived image (3 layers) sharing them;
    /// image IDs in hex.
    struct Images {
        base: String,
        app: String,
        chains: Vec<String>,
        layer_dirs: Vec<PathBuf>,
    }

    fn two_images(f: &DockerRoot) -> Images {
        let layers = f.stack(&[("base", 0), ("etc", 0), ("app", 0)]).unwrap();
        let diffs: Vec<String> = ["base", "etc", "app"].iter().map(|l| diff_id(l)).collect();
        let chains = python_chain_ids(&diffs);
        let written: Vec<&str> = layers.iter().map(|l| l.chain.as_str()).collect();
        assert_eq!(written, chains, "the fixture's chain IDs are hashlib's");
        let base = f
            .image(&layers[1], "2024-01-02T03:04:05.123456789Z")
            .unwrap();
        let app = f.image(&layers[2], "2024-02-03T04:05:06Z").unwrap();
        Images {
            base: base.id[7..].to_string(),
            app: app.id[7..].to_string(),
            chains,
            layer_dirs: layers.into_iter().map(|l| l.dir).collect(),
        }
    }

    fn unix(secs: u64) -> Option<SystemTime> {
        Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }

    fn sources(d: &Discovery) -> Vec<&str> {
        d.problems.iter().map(|p| p.source.as_str()).collect()
    }

    #[test]
    fn reads_images_layers_and_containers() {
        let (_dir, f) = store();
        let img = two_images(&f);
        let manifest = hex("manifest");
        let (base_id, app_id) = (
            format!("sha256:{}", img.base),
            format!("sha256:{}", img.app),
        );
        for (reference, id) in [
            ("demo/base:1".to_string(), &base_id),
            (format!("demo/base@sha256:{manifest}"), &base_id),
            ("demo/app:v2".to_string(), &app_id),
            ("demo/app:latest".to_string(), &app_id),
        ] {
            f.name(&reference, id).unwrap();
        }
        f.last_updated(&base_id, "2024-05-06T07:08:09.5+02:00")
            .unwrap();
        // An unreferenced layer still holds disk; scratch entries do not count.
        let orphan = f.layer(None, "orphan", 0).unwrap();
        fs::create_dir_all(f.path(&format!(
            "image/overlay2/layerdb/sha256/{}-1234-removing",
            hex("gone")
        )))
        .unwrap();
        f.write(
            "image/overlay2/layerdb/tmp/write-set-1/cache-id",
            hex("tmp"),
        )
        .unwrap();

        let (web, job) = (hex("web"), hex("job"));
        let web_written = f
            .container(&ContainerSpec {
                id: web.clone(),
                name: "k8s_nginx_web-7d9f_shop_0".to_string(),
                image: "demo/app:v2".to_string(),
                image_id: app_id.clone(),
                labels: Some(pod_labels(
                    "web-7d9f",
                    "shop",
                    "0b0e6c1a-1111-2222-3333-444455556666",
                    "nginx",
                )),
                logs: vec![1, 1],
                ..ContainerSpec::default()
            })
            .unwrap();
        let web_rw = web_written.writable_dir;
        let job_rw = f
            .container(&ContainerSpec {
                id: job.clone(),
                name: "job".to_string(),
                image: "demo/base:1".to_string(),
                image_id: base_id.clone(),
                labels: None,
                ..ContainerSpec::default()
            })
            .unwrap()
            .writable_dir;
        let mut logs = web_written.logs;
        logs.push(
            f.write(&format!("containers/{web}/{web}-json.log.2.gz"), "{}\n")
                .unwrap(),
        );
        f.write(&format!("containers/{web}/{web}-json.logx"), "not a log")
            .unwrap();
        std::os::unix::fs::symlink(
            "/etc/passwd",
            f.path(&format!("containers/{web}/{web}-json.log.3")),
        )
        .unwrap();

        let d = discover(f.root()).unwrap();
        assert_eq!(d.problems, vec![]);
        assert_eq!(d.runtime, RuntimeKind::Docker);
        assert_eq!(d.image_root, f.root());
        assert!(d.blobs.is_empty());

        let mut want_layers: Vec<(String, PathBuf)> = img
            .chains
            .iter()
            .cloned()
            .zip(img.layer_dirs.iter().cloned())
            .collect();
        want_layers.push((orphan.chain, orphan.dir));
        want_layers.sort();
        assert_eq!(layer_dirs(&d), want_layers);
        assert!(d
            .layers
            .iter()
            .all(|l| l.namespace.is_empty() && l.dir.is_dir()));

        let mut want_ids = vec![
            format!("sha256:{}", img.base),
            format!("sha256:{}", img.app),
        ];
        want_ids.sort();
        assert_eq!(
            d.images.iter().map(|i| i.id.clone()).collect::<Vec<_>>(),
            want_ids
        );
        let image = |hex: &str| d.images.iter().find(|i| i.id.ends_with(hex)).unwrap();
        let base = image(&img.base);
        assert_eq!(
            base.refs,
            vec![
                format!("demo/base:1"),
                format!("demo/base@sha256:{manifest}")
            ]
        );
        assert_eq!(base.layers, img.chains[..2]);
        // lastUpdated wins over the config's `created`: 07:08:09.5+02:00 is 05:08:09.5Z.
        assert_eq!(
            base.created,
            unix(1714972089).map(|t| t + Duration::from_millis(500))
        );
        let app = image(&img.app);
        assert_eq!(app.refs, vec!["demo/app:latest", "demo/app:v2"]);
        assert_eq!(app.layers, img.chains);
        assert_eq!(app.created, unix(1706933106));
        assert!(!app.pinned && app.blobs.is_empty() && app.namespace.is_empty());

        let want_web = ContainerRecord {
            namespace: String::new(),
            id: web.clone(),
            name: "k8s_nginx_web-7d9f_shop_0".to_string(),
            image: "demo/app:v2".to_string(),
            image_id: Some(format!("sha256:{}", img.app)),
            pod: Some(PodRef {
                pod: "web-7d9f".to_string(),
                namespace: "shop".to_string(),
                uid: "0b0e6c1a-1111-2222-3333-444455556666".to_string(),
                container: "nginx".to_string(),
            }),
            writable_dir: Some(web_rw),
            log_files: logs,
        };
        let want_job = ContainerRecord {
            id: job.clone(),
            name: "job".to_string(),
            image: "demo/base:1".to_string(),
            image_id: Some(format!("sha256:{}", img.base)),
            pod: None,
            writable_dir: Some(job_rw),
            log_files: vec![],
            ..want_web.clone()
        };
        let mut want = vec![want_web, want_job];
        want.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(d.containers, want);
    }

    #[test]
    fn corrupt_metadata_becomes_problems_and_the_rest_still_comes_out() {
        let (_dir, f) = store();
        let img = two_images(&f);
        // The middle layer lost its cache-id: both images lose it.
        let middle_cache_id = f.path(&format!(
            "image/overlay2/layerdb/sha256/{}/cache-id",
            &img.chains[1][7..]
        ));
        fs::remove_file(&middle_cache_id).unwrap();
        // A cache-id that tries to leave the store.
        let evil = f.layer(None, "evil", 0).unwrap().chain;
        let evil_cache_id = f
            .write(
                &format!("image/overlay2/layerdb/sha256/{}/cache-id", &evil[7..]),
                "../../../etc",
            )
            .unwrap();
        let repositories = f
            .write(fixture::REPOSITORIES, r#"{"Repositories": {"demo/base": {"#)
            .unwrap();
        let junk = f
            .write(
                &format!("image/overlay2/imagedb/content/sha256/{}", hex("junk")),
                "\x00\x01 not json",
            )
            .unwrap();
        let huge = f
            .write(
                &format!("image/overlay2/imagedb/content/sha256/{}", hex("huge")),
                "",
            )
            .unwrap();
        fs::File::options()
            .write(true)
            .open(&huge)
            .unwrap()
            .set_len(65 << 20)
            .unwrap();

        let (broken, lost) = (hex("broken"), hex("lost"));
        let broken_written = f
            .container(&ContainerSpec {
                id: broken.clone(),
                name: "broken".to_string(),
                image: "demo/base:1".to_string(),
                image_id: "sha256:x".to_string(),
                logs: vec![1],
                ..ContainerSpec::default()
            })
            .unwrap();
        let broken_rw = broken_written.writable_dir;
        let broken_config = f
            .write(
                &format!("containers/{broken}/config.v2.json"),
                r#"{"StreamConfig":{},"State":{"Running":tr"#,
            )
            .unwrap();
        let broken_log = broken_written.logs[0].clone();
        f.container(&ContainerSpec {
            id: lost.clone(),
            name: "lost".to_string(),
            image: "demo/base:1".to_string(),
            image_id: format!("sha256:{}", img.base),
            labels: Some(Default::default()),
            ..ContainerSpec::default()
        })
        .unwrap();
        let lost_mount_id = f
            .write(
                &format!("image/overlay2/layerdb/mounts/{lost}/mount-id"),
                hex("nowhere"),
            )
            .unwrap();

        let d = discover(f.root()).unwrap();
        let base_config = f.path(&format!(
            "image/overlay2/imagedb/content/sha256/{}",
            img.base
        ));
        let app_config = f.path(&format!(
            "image/overlay2/imagedb/content/sha256/{}",
            img.app
        ));
        let mut want_sources: Vec<String> = [
            &middle_cache_id,
            &evil_cache_id,
            &repositories,
            &junk,
            &huge,
            &base_config,
            &app_config,
            &broken_config,
            &lost_mount_id,
        ]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
        want_sources.sort();
        let mut got_sources: Vec<String> = sources(&d).iter().map(|s| s.to_string()).collect();
        got_sources.sort();
        assert_eq!(got_sources, want_sources, "{:#?}", d.problems);
        let message = |path: &Path| -> &str {
            let source = path.display().to_string();
            &d.problems
                .iter()
                .find(|p| p.source == source)
                .unwrap()
                .message
        };
        assert!(
            message(&middle_cache_id).contains("No such file"),
            "{}",
            message(&middle_cache_id)
        );
        assert!(message(&evil_cache_id).contains("not a 64-hex ID"));
        assert!(message(&repositories).contains("invalid JSON"));
        // Junk written under an ID: its bytes are not what the ID names.
        assert!(message(&junk).contains("is damaged: its bytes hash to"));
        assert!(message(&huge).contains("over the 67108864-byte limit"));
        assert!(
            message(&app_config).contains("1 of 3 layers are not in the layer DB"),
            "{}",
            message(&app_config)
        );
        assert!(message(&broken_config).contains("invalid JSON"));
        assert!(message(&lost_mount_id).contains("not a directory"));

        // The layers that resolved, and every image, still come out.
        let chains: Vec<&str> = d.layers.iter().map(|l| l.chain_id.as_str()).collect();
        let mut want_chains = vec![img.chains[0].as_str(), img.chains[2].as_str()];
        want_chains.sort();
        assert_eq!(chains, want_chains);
        assert_eq!(d.images.len(), 4);
        let app = d.images.iter().find(|i| i.id.ends_with(&img.app)).unwrap();
        assert_eq!(
            app.layers,
            vec![img.chains[0].clone(), img.chains[2].clone()]
        );
        assert!(app.refs.is_empty());
        let junk_image = d
            .images
            .iter()
            .find(|i| i.id.ends_with(&hex("junk")))
            .unwrap();
        assert!(junk_image.layers.is_empty() && junk_image.created.is_none());

        // A container with a broken config still has its layer and logs.
        let broken = d.containers.iter().find(|c| c.id == broken).unwrap();
        assert_eq!(broken.writable_dir.as_ref(), Some(&broken_rw));
        assert_eq!(broken.log_files, vec![broken_log]);
        assert_eq!((broken.name.as_str(), broken.image_id.as_ref()), ("", None));
        let lost = d.containers.iter().find(|c| c.id == lost).unwrap();
        assert_eq!(lost.writable_dir, None);
        assert_eq!(lost.name, "lost");
        assert_eq!(lost.pod, None);
    }

    #[test]
    fn a_name_for_an_image_that_is_gone_is_a_problem() {
        let (_dir, f) = store();
        f.name("demo/ghost:1", &format!("sha256:{}", hex("ghost")))
            .unwrap();
        let repositories = f.path(fixture::REPOSITORIES);
        let d = discover(f.root()).unwrap();
        assert!(d.images.is_empty());
        assert_eq!(sources(&d), vec![repositories.display().to_string()]);
        assert!(d.problems[0].message.contains("demo/ghost:1"));
    }

    #[test]
    fn an_empty_store_is_empty_without_problems() {
        // What a daemon that never stored anything has: no layer DB yet.
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("image/overlay2")).unwrap();
        let d = discover(dir.path()).unwrap();
        assert!(d.images.is_empty() && d.layers.is_empty() && d.containers.is_empty());
        assert_eq!(d.problems, Vec::<Problem>::new());
    }

    #[test]
    fn missing_or_foreign_stores_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let err = discover(&missing).unwrap_err();
        assert!(matches!(&err, DockerError::RootMissing { path } if *path == missing));
        assert!(err.to_string().contains("nope"));

        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        assert!(
            matches!(discover(&file), Err(DockerError::NotADirectory { path }) if path == file)
        );

        fs::create_dir(dir.path().join("image")).unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert!(matches!(err, DockerError::NoOverlay2Store { .. }), "{err}");

        fs::create_dir(dir.path().join("image/vfs")).unwrap();
        let err = discover(dir.path()).unwrap_err();
        assert!(
            err.to_string()
                .ends_with("graph driver vfs is not supported, only overlay2"),
            "{err}"
        );
    }
}
