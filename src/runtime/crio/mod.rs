//! containers-storage reader: the store CRI-O and Podman share
//! (`/var/lib/containers/storage`), from its files only.
//!
//! `storage.conf` says where the store is ([`conf`]); each store's record
//! files say what it holds ([`store`]): images with their top layer,
//! layers with their parent and directory, containers with their writable
//! layer, the layers still being written (pulls in flight). Additional
//! image stores are read the same way, read-only. The store's locks are
//! never taken. Only the overlay driver is read. Anything corrupt becomes a
//! [`Problem`] naming its file and the rest is still reported; only a
//! missing or foreign graph root is an error.
//!
//! [`Problem`]: super::Problem

mod conf;
mod containers;
#[cfg(test)]
mod fixture;
mod images;
mod layers;
mod pulls;
mod store;
#[cfg(test)]
mod tests;

pub use self::conf::DEFAULT_GRAPH_ROOT;

use std::collections::HashSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tokio::runtime::Handle;

use self::store::StoreDirs;
use super::{Classified, Discovery, ProblemKind, Read, ReadError, Reader, Runtime, RuntimeKind};
use crate::layout::NodeLayout;
use crate::model::{Image, ReadFrom};

/// Who meets the problems of this reader.
const READER: Reader = Reader::Runtime(RuntimeKind::Crio);

/// The graph driver read (`overlay2` is containers-storage's alias of it).
const DRIVERS: [&str; 2] = ["overlay", "overlay2"];

/// containers-storage with the overlay driver (CRI-O, Podman), read from
/// its files.
#[derive(Debug, Clone, Copy)]
pub struct Crio;

impl Runtime for Crio {
    fn kind(&self) -> RuntimeKind {
        RuntimeKind::Crio
    }

    /// The graph root when set or found, else the `storage.conf` naming it.
    fn location<'a>(&self, layout: &'a NodeLayout) -> &'a Path {
        layout
            .containers_storage_root
            .as_deref()
            .unwrap_or(&layout.containers_storage_conf)
    }

    fn discover(&self, layout: &NodeLayout, _handle: &Handle) -> Result<Read, ReadError> {
        let discovery = discover(
            &layout.containers_storage_conf,
            layout.containers_storage_root.as_deref(),
        )?;
        Ok(Read {
            discovery,
            note: None,
            from: ReadFrom::Files,
        })
    }

    fn default_pull_dirs(&self, layout: &NodeLayout) -> Vec<PathBuf> {
        pulls::dirs(&graph_root(layout))
    }

    fn default_image_root(&self, layout: &NodeLayout) -> PathBuf {
        graph_root(layout)
    }

    /// The kubelet's image store on a CRI-O node, which holds its images
    /// there (after containerd holding some, before Docker); a store that
    /// holds none is likely Podman's, beside another runtime.
    fn cri_rank(&self, holds_images: bool) -> u8 {
        if holds_images {
            1
        } else {
            4
        }
    }

    /// CRI-O shows the kubelet every image of the store.
    fn kubelet_manages(&self, _image: &Image) -> bool {
        true
    }

    /// CRI-O reports containers-storage's image size: its layers'
    /// `diff-size` (their uncompressed tar streams) and its manifests and
    /// config. The layers' apparent bytes are that but for the tar headers
    /// and padding, and the few KiB of manifests.
    fn gc_credit(&self, image: &Image) -> u64 {
        image.apparent_bytes
    }

    fn namespaced(&self) -> bool {
        false
    }

    fn blob_note(&self) -> &'static str {
        "containers-storage applies each as it arrives and keeps none"
    }

    /// Never: CRI-O's socket and Podman's service are not asked; the
    /// store's files say everything.
    fn has_api(&self) -> bool {
        false
    }

    /// None: the 1-s watch of the layer directories and resyncs cover it.
    fn events(&self, _layout: &NodeLayout) -> Option<Box<dyn super::Events>> {
        None
    }
}

/// The graph root on `layout`: set or found, else `storage.conf`'s
/// (whose problems the read itself reports).
fn graph_root(layout: &NodeLayout) -> PathBuf {
    layout
        .containers_storage_root
        .clone()
        .unwrap_or_else(|| conf::read(&layout.containers_storage_conf, &mut Vec::new()).graph_root)
}

/// Why containers-storage's store could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CrioError {
    /// The graph root does not exist.
    #[error("{path}: containers-storage graph root does not exist", path = .path.display())]
    RootMissing {
        /// The graph root.
        path: PathBuf,
    },
    /// The graph root is something else.
    #[error("{path}: not a directory", path = .path.display())]
    NotADirectory {
        /// The graph root.
        path: PathBuf,
    },
    /// The graph root could not be read.
    #[error("{path}: {source}", path = .path.display())]
    Io {
        /// The graph root.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The store uses another graph driver.
    #[error("{path}: graph driver {driver} is not supported, only overlay", path = .path.display())]
    UnsupportedDriver {
        /// Its layers directory, or `storage.conf` naming it.
        path: PathBuf,
        /// The driver's name.
        driver: String,
    },
}

impl CrioError {
    /// The path it is about.
    pub fn path(&self) -> &Path {
        match self {
            CrioError::RootMissing { path }
            | CrioError::NotADirectory { path }
            | CrioError::Io { path, .. }
            | CrioError::UnsupportedDriver { path, .. } => path,
        }
    }
}

/// A missing graph root is containers-storage not being there, not a problem.
impl Classified for CrioError {
    fn kind(&self) -> ProblemKind {
        match self {
            CrioError::RootMissing { .. } => ProblemKind::Missing,
            CrioError::NotADirectory { .. } => ProblemKind::Malformed,
            CrioError::Io { source, .. } => ProblemKind::of_io(source),
            CrioError::UnsupportedDriver { .. } => ProblemKind::Unsupported,
        }
    }
}

/// Reads the store `storage.conf` at `conf_path` describes, its graph root
/// replaced by `root` when given.
pub fn discover(conf_path: &Path, root: Option<&Path>) -> Result<Discovery, CrioError> {
    let mut problems = Vec::new();
    let conf = conf::read(conf_path, &mut problems);
    let graph_root = root.map_or(conf.graph_root.clone(), Path::to_path_buf);
    check_root(&graph_root)?;
    check_driver(&graph_root, conf.driver.as_deref(), conf_path)?;
    let primary = StoreDirs {
        root: graph_root.clone(),
        run_root: Some(conf.run_root.clone()),
    };
    let mut stores = vec![primary.clone()];
    stores.extend(conf.additional_image_stores.iter().map(|r| StoreDirs {
        root: r.clone(),
        run_root: None,
    }));
    let mut d = Discovery::new(RuntimeKind::Crio, graph_root.clone());
    d.problems = problems;
    let layers = layers::Layers::read(&stores, &mut d.problems);
    let found = containers::discover(&primary, &mut d.problems);
    let writable: HashSet<&str> = found.iter().map(|c| c.layer.as_str()).collect();
    d.layers = layers.committed(&writable, &mut d.problems);
    d.images = images::discover(&stores, &layers, &mut d.problems);
    d.pulls = pulls::discover(&graph_root, &layers);
    d.pull_dirs = pulls::dirs(&graph_root);
    d.containers = found.into_iter().map(|c| c.record).collect();
    Ok(d)
}

/// The graph root is a directory that can be listed (a symlink to one, on
/// a bigger disk, is followed).
fn check_root(path: &Path) -> Result<(), CrioError> {
    let io = |source: io::Error| match source.kind() {
        io::ErrorKind::NotFound => CrioError::RootMissing {
            path: path.to_path_buf(),
        },
        _ => CrioError::Io {
            path: path.to_path_buf(),
            source,
        },
    };
    if !fs::metadata(path).map_err(io)?.is_dir() {
        return Err(CrioError::NotADirectory {
            path: path.to_path_buf(),
        });
    }
    fs::read_dir(path).map(drop).map_err(io)
}

/// The overlay driver: named in `storage.conf`, or, when it names none,
/// the one whose directories the store has (none yet is an empty store).
fn check_driver(graph_root: &Path, named: Option<&str>, conf: &Path) -> Result<(), CrioError> {
    let unsupported = |path: PathBuf, driver: &str| {
        Err(CrioError::UnsupportedDriver {
            path,
            driver: driver.to_string(),
        })
    };
    match named {
        Some(d) if DRIVERS.contains(&d) => Ok(()),
        Some(d) => unsupported(conf.to_path_buf(), d),
        None if graph_root.join("overlay-layers").is_dir() => Ok(()),
        None => match other_driver(graph_root) {
            Some(d) => unsupported(graph_root.join(format!("{d}-layers")), &d),
            None => Ok(()),
        },
    }
}

/// The first `<driver>-layers` directory under the graph root, if any.
fn other_driver(graph_root: &Path) -> Option<String> {
    let mut drivers: Vec<String> = fs::read_dir(graph_root)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix("-layers").map(str::to_string)
        })
        .collect();
    drivers.sort();
    drivers.into_iter().next()
}
