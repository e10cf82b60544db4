//! A private Podman store for the containers-storage trial, and Podman's
//! own view of it: graphroot, runroot and tmpdir under the run's temp dir,
//! the `storage.conf` Headroom is pointed at, and the figures of `podman
//! images`, `ps`, `image tree`, `inspect` and `system df -v` parsed. The
//! store's own records (`layers.json`, `images.json`) are read here too, to
//! explain Podman's figures.
//!
//! Dropping a [`Store`] (also while unwinding) removes Podman's containers
//! and the store (`podman rm -af`, `podman system reset -f`: only this
//! store's dirs, as `--tmpdir` is ours too), unmounts whatever is still
//! mounted under it, and removes its dir unless something stays mounted.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use tempfile::TempDir;

use crate::oracle::{self, parse_humanized, path_str, Humanized};
use crate::services::unmount_under;

/// Significant digits of Podman's humanized sizes (`units.HumanSize`).
const PODMAN_PRECISION: i32 = 4;

/// The flags `podman run` needs on this machine (runc refuses Podman's
/// default rlimits here; no network is needed).
pub const RUN_FLAGS: [&str; 6] = [
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// A containers-storage store as Headroom is pointed at it.
#[derive(Debug, Clone)]
pub struct Paths {
    /// `graphroot`.
    pub graphroot: PathBuf,
    /// `runroot`.
    pub runroot: PathBuf,
    /// The `storage.conf` naming them, driver `overlay`.
    pub conf: PathBuf,
}

impl Paths {
    /// `graphroot`, `runroot` and `storage.conf` under `dir`, the conf written.
    fn under(dir: &Path) -> Result<Paths> {
        let paths = Paths {
            graphroot: dir.join("storage"),
            runroot: dir.join("run"),
            conf: dir.join("storage.conf"),
        };
        fs::write(
            &paths.conf,
            format!(
                "[storage]\ndriver = \"overlay\"\ngraphroot = \"{}\"\nrunroot = \"{}\"\n",
                paths.graphroot.display(),
                paths.runroot.display()
            ),
        )
        .with_context(|| format!("cannot write {}", paths.conf.display()))?;
        Ok(paths)
    }

    /// The record files of the store, under `graphroot`.
    pub fn file(&self, rel: &str) -> PathBuf {
        self.graphroot.join(rel)
    }

    /// The `diff` dir of c/storage layer `id` (hex, no `sha256:`).
    pub fn diff_dir(&self, id: &str) -> PathBuf {
        self.graphroot.join("overlay").join(id).join("diff")
    }
}

/// `images.json`, relative to the graphroot.
pub const IMAGES_JSON: &str = "overlay-images/images.json";
/// `layers.json`, relative to the graphroot.
pub const LAYERS_JSON: &str = "overlay-layers/layers.json";
/// `containers.json`, relative to the graphroot.
pub const CONTAINERS_JSON: &str = "overlay-containers/containers.json";

/// A private Podman store; torn down on drop.
pub struct Store {
    /// Where its files are.
    pub paths: Paths,
    tmpdir: PathBuf,
    dir: Option<TempDir>,
}

impl Store {
    /// A fresh store in a new dir under `parent`.
    pub fn new(parent: &Path) -> Result<Store> {
        let dir = tempfile::Builder::new()
            .prefix("podman-")
            .tempdir_in(parent)
            .with_context(|| format!("cannot create a dir under {}", parent.display()))?;
        Ok(Store {
            paths: Paths::under(dir.path())?,
            tmpdir: dir.path().join("tmp"),
            dir: Some(dir),
        })
    }

    /// `podman --root … --runroot … --storage-driver overlay --tmpdir …
    /// ARGS…` on this store; its stdout.
    pub fn podman(&self, args: &[&str]) -> Result<String> {
        let mut all = vec![
            "--root",
            path_str(&self.paths.graphroot)?,
            "--runroot",
            path_str(&self.paths.runroot)?,
            "--storage-driver",
            "overlay",
            "--tmpdir",
            path_str(&self.tmpdir)?,
            "--events-backend",
            "file",
        ];
        all.extend_from_slice(args);
        oracle::run("podman", &all)
    }

    /// A copy of the store's files (`cp -a`, the store at rest) with a
    /// `storage.conf` of its own, in `<store dir>/<name>`; Podman never
    /// touches it.
    pub fn copy(&self, name: &str) -> Result<Paths> {
        let dir = self.dir()?.join(name);
        fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let copy = Paths::under(&dir)?;
        for (from, to) in [
            (&self.paths.graphroot, &copy.graphroot),
            (&self.paths.runroot, &copy.runroot),
        ] {
            oracle::run("cp", &["-a", path_str(from)?, path_str(to)?])?;
        }
        Ok(copy)
    }

    fn dir(&self) -> Result<&Path> {
        self.dir
            .as_ref()
            .map(TempDir::path)
            .context("the store was torn down")
    }

    /// `podman images --format json`.
    pub fn images(&self) -> Result<Vec<PodmanImage>> {
        parse_json(&self.podman(&["images", "--format", "json"])?)
    }

    /// `podman ps -a --size --format json`.
    pub fn containers(&self) -> Result<Vec<PodmanContainer>> {
        parse_json(&self.podman(&["ps", "-a", "--size", "--format", "json"])?)
    }

    /// `podman image tree IMAGE`: its layers, base first.
    pub fn tree(&self, image: &str) -> Result<Vec<TreeLayer>> {
        parse_tree(&self.podman(&["image", "tree", image])?)
    }

    /// The image's diff IDs, base first (`podman image inspect`'s
    /// `RootFS.Layers`).
    pub fn diff_ids(&self, image: &str) -> Result<Vec<String>> {
        let format = "{{json .RootFS.Layers}}";
        parse_json(&self.podman(&["image", "inspect", "--format", format, image])?)
    }

    /// `podman system df -v`.
    pub fn system_df(&self) -> Result<SystemDf> {
        parse_system_df(&self.podman(&["system", "df", "-v"])?)
    }

    /// The container's writable dir (`podman inspect`'s `UpperDir`).
    pub fn upper_dir(&self, container: &str) -> Result<PathBuf> {
        let format = "{{.GraphDriver.Data.UpperDir}}";
        let out = self.podman(&["inspect", "--format", format, container])?;
        Ok(PathBuf::from(out.trim()))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        for args in [
            &["rm", "-af", "-t", "0"][..],
            &["system", "reset", "-f"][..],
        ] {
            if let Err(e) = self.podman(args) {
                eprintln!("podman trial: teardown: {e:#}");
            }
        }
        let Some(dir) = self.dir.take() else { return };
        let left = unmount_under(dir.path());
        if !left.is_empty() {
            // Removing through a live mount would delete someone's files.
            eprintln!(
                "podman trial: still mounted, leaving {} in place: {left:?}",
                dir.keep().display()
            );
        }
    }
}

/// One row of `podman images --format json`.
#[derive(Debug, Clone, Deserialize)]
pub struct PodmanImage {
    /// The image ID, 64 hex digits.
    #[serde(rename = "Id")]
    pub id: String,
    /// Its names (`null` for an untagged image).
    #[serde(rename = "Names", default)]
    pub names: Option<Vec<String>>,
    /// Podman's size: its layers' `diff-size` plus its big-data items.
    #[serde(rename = "Size")]
    pub size: u64,
}

/// One row of `podman ps -a --size --format json`.
#[derive(Debug, Clone, Deserialize)]
pub struct PodmanContainer {
    /// The container ID, 64 hex digits.
    #[serde(rename = "Id")]
    pub id: String,
    /// Its names.
    #[serde(rename = "Names")]
    pub names: Vec<String>,
    /// The image reference it was run from.
    #[serde(rename = "Image")]
    pub image: String,
    /// The image's ID.
    #[serde(rename = "ImageID")]
    pub image_id: String,
    /// Its sizes (asked for with `--size`).
    #[serde(rename = "Size")]
    pub size: Option<PsSize>,
}

/// `ps --size`'s figures.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct PsSize {
    /// The writable layer: c/storage's `directory.Usage`, the st_size of
    /// every non-directory, hard links once.
    #[serde(rename = "rwSize")]
    pub rw_size: u64,
}

/// One layer line of `podman image tree`.
#[derive(Debug, Clone)]
pub struct TreeLayer {
    /// The layer ID's first 12 hex digits.
    pub short_id: String,
    /// Its size (the layer's `diff-size`), humanized.
    pub size: Humanized,
}

impl TreeLayer {
    /// Whether it is layer `hex` (a full ID).
    pub fn is(&self, hex: &str) -> bool {
        hex.starts_with(&self.short_id)
    }
}

/// `podman system df -v`, the image and container rows.
#[derive(Debug, Clone)]
pub struct SystemDf {
    /// Image rows.
    pub images: Vec<DfImage>,
    /// Container rows: (short ID, name).
    pub containers: Vec<(String, String)>,
}

/// One image row of `podman system df -v`.
#[derive(Debug, Clone)]
pub struct DfImage {
    /// The image ID's first 12 hex digits.
    pub short_id: String,
    /// SHARED SIZE: its parent image's size (the image it extends), or
    /// its whole size when another image extends it.
    pub shared: Humanized,
    /// UNIQUE SIZE: SIZE minus SHARED SIZE.
    pub unique: Humanized,
}

fn parse_json<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T> {
    serde_json::from_str(text).with_context(|| format!("unexpected podman JSON: {text}"))
}

/// `├── ID: a5c459a78000 Size: 1.987MB Top Layer of: [...]` lines.
fn parse_tree(text: &str) -> Result<Vec<TreeLayer>> {
    text.lines()
        .filter(|l| l.contains("ID: ") && l.contains(" Size: ") && !l.starts_with("Image ID"))
        .map(|l| {
            let after = |key: &str| {
                l.split_once(key)
                    .and_then(|(_, rest)| rest.split_whitespace().next())
                    .with_context(|| format!("no {key:?} in `podman image tree` line {l:?}"))
            };
            Ok(TreeLayer {
                short_id: after("ID: ")?.to_owned(),
                size: parse_humanized(after(" Size: ")?, PODMAN_PRECISION)?,
            })
        })
        .collect()
}

/// The rows of the section titled `title` (header skipped), each split on
/// runs of two or more spaces (a single space is inside a column).
fn section<'a>(text: &'a str, title: &str) -> Result<Vec<Vec<&'a str>>> {
    let mut lines = text.lines().skip_while(|l| l.trim() != title).skip(1);
    let _blank = lines.next();
    if lines.next().is_none() {
        bail!("no {title:?} section with a header in `podman system df -v`:\n{text}");
    }
    Ok(lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|f| !f.is_empty())
                .collect()
        })
        .collect())
}

fn parse_system_df(text: &str) -> Result<SystemDf> {
    // REPOSITORY TAG IMAGE-ID CREATED SIZE SHARED UNIQUE CONTAINERS
    let images = section(text, "Images space usage:")?
        .into_iter()
        .map(|f| match f.as_slice() {
            [_, _, id, _, _, shared, unique, _] => Ok(DfImage {
                short_id: id.to_string(),
                shared: parse_humanized(shared, PODMAN_PRECISION)?,
                unique: parse_humanized(unique, PODMAN_PRECISION)?,
            }),
            _ => bail!("unexpected `podman system df -v` image row {f:?}"),
        })
        .collect::<Result<_>>()?;
    // CONTAINER-ID IMAGE COMMAND VOLUMES SIZE CREATED STATUS NAMES
    let containers = section(text, "Containers space usage:")?
        .into_iter()
        .map(|f| match (f.first(), f.last()) {
            (Some(id), Some(name)) if f.len() >= 3 => Ok((id.to_string(), name.to_string())),
            _ => bail!("unexpected `podman system df -v` container row {f:?}"),
        })
        .collect::<Result<_>>()?;
    Ok(SystemDf { images, containers })
}

/// One record of `layers.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct StoreLayer {
    /// Layer ID, hex.
    pub id: String,
    /// Its parent's ID.
    #[serde(default)]
    pub parent: Option<String>,
    /// Size of its uncompressed tar stream (absent for container layers).
    #[serde(rename = "diff-size", default)]
    pub diff_size: Option<u64>,
}

/// One record of `images.json`, the parts read here.
#[derive(Debug, Clone, Deserialize)]
pub struct StoreImage {
    /// Image ID, hex.
    pub id: String,
    /// Its top layer.
    pub layer: String,
    /// Sizes of its big-data items (manifest, config, signatures).
    #[serde(rename = "big-data-sizes", default)]
    pub big_data_sizes: BTreeMap<String, u64>,
}

impl StoreImage {
    /// What Podman adds to its layers' sizes: the big-data items.
    pub fn big_data(&self) -> u64 {
        self.big_data_sizes.values().sum()
    }
}

/// A JSON array of records in the store at `file`.
pub fn records<T: for<'de> Deserialize<'de>>(file: &Path) -> Result<Vec<T>> {
    let text =
        fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    serde_json::from_str(&text).with_context(|| format!("unexpected records in {}", file.display()))
}

/// The layers of the image whose top layer is `top`, base first, by
/// following `parent` in `layers`.
pub fn chain<'a>(layers: &'a [StoreLayer], top: &str) -> Result<Vec<&'a StoreLayer>> {
    let mut chain = Vec::new();
    let mut next = Some(top.to_owned());
    while let Some(id) = next {
        let layer = layers
            .iter()
            .find(|l| l.id == id)
            .with_context(|| format!("layer {id} is not in layers.json"))?;
        if chain.len() > layers.len() {
            bail!("layers.json has a parent cycle through {id}");
        }
        chain.push(layer);
        next = layer.parent.clone();
    }
    chain.reverse();
    Ok(chain)
}

/// How far a layer's tar stream (`diff-size`, Podman's figure) may be from
/// `du --apparent-size` of its unpacked dir. The stream has a 512-byte
/// header per entry (hard links and whiteouts included; a PAX or GNU
/// long-name header adds up to 1024 more) and file content padded to 512
/// bytes, then 1024 zero bytes, the whole possibly padded to a 10240-byte
/// record: at most 2048 bytes per entry and 10240 more. du counts the
/// st_size of directories and symlinks, which the stream does not (a
/// symlink's target is in its header).
#[derive(Debug, Clone, Copy, Default)]
pub struct TarSlack {
    /// At most this much less than `du --apparent-size` (dirs, symlinks).
    pub below: u64,
    /// At most this much more (headers, padding, end of archive).
    pub above: u64,
}

impl TarSlack {
    /// The slack of the unpacked layer `dir` (`find -printf '%y %s'`).
    pub fn of(dir: &Path) -> Result<TarSlack> {
        let out = oracle::run("find", &[path_str(dir)?, "-printf", "%y %s\n"])?;
        let mut slack = TarSlack {
            below: 0,
            above: 10_240,
        };
        for line in out.lines() {
            let (kind, size) = line
                .split_once(' ')
                .with_context(|| format!("unexpected find line {line:?}"))?;
            slack.above += 2048;
            if kind == "d" || kind == "l" {
                slack.below += oracle::parse_u64(size)?;
            }
        }
        Ok(slack)
    }

    /// The slack of several layers together.
    pub fn add(self, other: TarSlack) -> TarSlack {
        TarSlack {
            below: self.below + other.below,
            above: self.above + other.above,
        }
    }

    /// Whether a stream of `stream` bytes may unpack to `apparent` bytes.
    pub fn admits(self, stream: u64, apparent: u64) -> bool {
        stream + self.below >= apparent && stream <= apparent + self.above
    }

    /// The widest distance either way, for a ± tolerance.
    pub fn widest(self) -> f64 {
        self.below.max(self.above) as f64
    }
}
