//! The images the audit trial looks at, built offline with umoci on top of
//! the fixture's `base` (in its OCI layout, so they share base's two layers)
//! or from scratch, each holding one kind of waste of an exact size, and
//! pushed to the loopback registry. What each holds is written down as the
//! wasted copies the audit must find ([`Copy`]): kind, layer (base first),
//! path and size.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::images::{self, push_oci, APP2_DELETES};
use crate::oracle::{self, path_str};
use crate::pulls;
use crate::services::Registry;
use crate::World;

/// Layers of the fixture's `base`: the first layer an image built on it
/// adds has this index.
const ON_BASE: usize = 2;

/// `deleted`: a file its third layer adds and its fourth deletes.
const BIG: (&str, u64) = ("data/big.bin", 20_000_000);
/// `chowned`: the tree its third layer adds and its fourth chowns.
pub const TREE: &str = "srv/tree";
/// Files in [`TREE`].
pub const TREE_FILES: usize = 16;
/// Size of each file in [`TREE`] (under 1 MiB: none is a duplicate candidate).
pub const TREE_FILE_BYTES: u64 = 1_000_000;
/// The owner the fourth layer of `chowned` gives [`TREE`].
pub const TREE_OWNER: u32 = 1000;
/// `overwritten`: a file its third layer adds and its fourth replaces with
/// other content of [`REPLACEMENT_BYTES`].
const REPLACED: (&str, u64) = ("opt/app/data.bin", 3_000_000);
/// Size of the replacement of [`REPLACED`].
const REPLACEMENT_BYTES: u64 = 1_500_000;
/// `overwritten`: the directory its fifth layer makes opaque.
pub const OPAQUE_DIR: &str = "opt/cache";
/// The files the third layer puts in [`OPAQUE_DIR`].
const OPAQUED: [(&str, u64); 2] = [("opt/cache/c1", 400_000), ("opt/cache/c2", 600_000)];
/// `aptcache`: package archives and indexes as apt leaves them.
const APT: [(&str, u64); 5] = [
    ("var/cache/apt/archives/libfoo_1.0-1_amd64.deb", 250_000),
    ("var/cache/apt/archives/bar_2.1-3_amd64.deb", 180_000),
    ("var/cache/apt/archives/baz_0.9_all.deb", 70_001),
    (
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_main_binary-amd64_Packages",
        400_000,
    ),
    (
        "var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease",
        151_000,
    ),
];
/// `dup-a` and `dup-b`: the same file in the one layer of each.
pub const MODEL: (&str, u64) = ("opt/model.bin", 30_000_000);

/// A kind of waste, as the audit document names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Deleted by a later layer (whiteout or opaque directory).
    Hidden,
    /// Replaced by a later layer with other content.
    Overwritten,
    /// Re-shipped by a later layer with the same content (chown, chmod).
    MetadataOnly,
    /// A cache of this kind (`apt`, `pip`…) in the final filesystem.
    Cache(&'static str),
    /// Identical content in a layer the image does not have.
    Duplicate,
}

impl Kind {
    /// The kinds that are not caches, each a figure of its own.
    pub const FIGURES: [Kind; 4] = [
        Kind::Hidden,
        Kind::Overwritten,
        Kind::MetadataOnly,
        Kind::Duplicate,
    ];

    /// Its key in the document (`hidden`…; a cache by its own kind).
    pub fn key(self) -> &'static str {
        match self {
            Kind::Hidden => "hidden",
            Kind::Overwritten => "overwritten",
            Kind::MetadataOnly => "metadata_only",
            Kind::Cache(kind) => kind,
            Kind::Duplicate => "duplicate",
        }
    }
}

/// One wasted copy the audit must find in an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    /// What kind of waste it is.
    pub kind: Kind,
    /// Index, base first, of the layer holding the wasted copy.
    pub layer: usize,
    /// Its path in that layer, relative.
    pub path: String,
    /// Its st_size, as written.
    pub bytes: u64,
}

impl Copy {
    fn new(kind: Kind, layer: usize, (path, bytes): (&str, u64)) -> Copy {
        Copy {
            kind,
            layer,
            path: path.to_owned(),
            bytes,
        }
    }
}

/// An image with what it wastes.
#[derive(Debug, Clone)]
pub struct Wasteful {
    /// Its fixture name.
    pub name: &'static str,
    /// The reference it is pulled as.
    pub reference: String,
    /// Every wasted copy in it (none: an image that wastes nothing).
    pub copies: Vec<Copy>,
}

/// The fixture's own images (`images.rs`): app2 hides the base file it
/// deletes; nothing else is wasted (their big files are in base's layers,
/// which they share, or only in app1).
pub fn fixture_images(w: &World) -> Result<Vec<Wasteful>> {
    Ok(images::IMAGE_NAMES
        .iter()
        .map(|&name| {
            let mut copies = Vec::new();
            if name == "app2" {
                copies.push(Copy::new(Kind::Hidden, 1, APP2_DELETES));
            }
            Wasteful {
                name,
                reference: w.fixtures.image(name).to_owned(),
                copies,
            }
        })
        .collect())
}

/// Builds the waste images and pushes them to the loopback registry as
/// `hr/waste-<name>:1` (not pulled anywhere).
pub fn build(w: &World) -> Result<Vec<Wasteful>> {
    let b = Build::new(w)?;
    let made = [
        ("deleted", deleted(&b)?),
        ("chowned", chowned(&b)?),
        ("overwritten", overwritten(&b)?),
        ("aptcache", aptcache(&b)?),
        ("dup-a", dup(&b, "dup-a", "a\n")?),
        ("dup-b", dup(&b, "dup-b", "bee\n")?),
        ("clean", clean(&b)?),
    ];
    let registry = pulls::registry_of(w)?;
    let mut built = Vec::new();
    for (name, copies) in made {
        let reference = format!("{registry}/hr/waste-{name}:1");
        push_oci(&b.image(name), &reference, Registry::Plain(&registry))?;
        built.push(Wasteful {
            name,
            reference,
            copies,
        });
    }
    fs::remove_dir_all(&b.work).with_context(|| format!("cannot remove {}", b.work.display()))?;
    Ok(built)
}

/// Where the images are built: the fixture's OCI layout, tags `<name>`.
struct Build {
    /// Scratch dir for bundles.
    work: PathBuf,
    /// The OCI layout (`images.rs` built `base` in it).
    oci: PathBuf,
}

impl Build {
    fn new(w: &World) -> Result<Build> {
        let work = w.dir.join("waste");
        fs::create_dir(&work).with_context(|| format!("cannot create {}", work.display()))?;
        Ok(Build {
            work,
            oci: w.dir.join("build/oci"),
        })
    }

    /// `<layout>:<tag>`.
    fn image(&self, tag: &str) -> String {
        format!("{}:{tag}", self.oci.display())
    }

    /// A new image `tag` with no layer.
    fn empty(&self, tag: &str) -> Result<()> {
        images::umoci(&["new", "--image", &self.image(tag)]).map(drop)
    }

    /// Unpacks `from` as root (owners kept), lets `change` edit its rootfs
    /// and repacks the difference as the new top layer of `to`.
    fn layer(&self, from: &str, to: &str, change: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let bundle = self.work.join("bundle");
        let root = images::unpack_as_root(&self.work, &self.image(from), "bundle")?;
        change(&root)?;
        images::umoci(&["repack", "--image", &self.image(to), path_str(&bundle)?])?;
        fs::remove_dir_all(&bundle).with_context(|| format!("cannot remove {}", bundle.display()))
    }
}

/// Writes `bytes` of noise (seeded) at `root/path`, making its parents.
fn write_noise(root: &Path, (path, bytes): (&str, u64), seed: u64) -> Result<()> {
    let file = root.join(path);
    if let Some(parent) = file.parent() {
        fs::create_dir_all(parent)?;
    }
    let len = usize::try_from(bytes)?;
    images::noise(&file, len, seed)
}

/// base + big.bin + its whiteout.
fn deleted(b: &Build) -> Result<Vec<Copy>> {
    b.layer("base", "deleted", |root| write_noise(root, BIG, 101))?;
    b.layer("deleted", "deleted", |root| {
        let big = root.join(BIG.0);
        fs::remove_file(&big).with_context(|| format!("cannot remove {}", big.display()))
    })?;
    Ok(vec![Copy::new(Kind::Hidden, ON_BASE, BIG)])
}

/// The path of file `i` of [`TREE`].
pub fn tree_file(i: usize) -> String {
    format!("{TREE}/f{i:02}")
}

/// base + a 16 MB tree + the same tree chowned (each file re-shipped).
fn chowned(b: &Build) -> Result<Vec<Copy>> {
    b.layer("base", "chowned", |root| {
        (0..TREE_FILES)
            .try_for_each(|i| write_noise(root, (&tree_file(i), TREE_FILE_BYTES), 200 + i as u64))
    })?;
    b.layer("chowned", "chowned", |root| {
        let owner = format!("{TREE_OWNER}:{TREE_OWNER}");
        oracle::run("chown", &["-R", &owner, path_str(&root.join(TREE))?]).map(drop)
    })?;
    Ok((0..TREE_FILES)
        .map(|i| {
            Copy::new(
                Kind::MetadataOnly,
                ON_BASE,
                (&tree_file(i), TREE_FILE_BYTES),
            )
        })
        .collect())
}

/// base + a file and a dir of two files + the file replaced + the dir
/// opaque (`.wh..wh..opq` in a layer tar: umoci itself writes a whiteout
/// per file instead).
fn overwritten(b: &Build) -> Result<Vec<Copy>> {
    b.layer("base", "overwritten", |root| {
        write_noise(root, REPLACED, 301)?;
        write_noise(root, OPAQUED[0], 302)?;
        write_noise(root, OPAQUED[1], 303)
    })?;
    b.layer("overwritten", "overwritten", |root| {
        write_noise(root, (REPLACED.0, REPLACEMENT_BYTES), 304)
    })?;
    let files = b.work.join("opaque");
    let dir = files.join(OPAQUE_DIR);
    fs::create_dir_all(&dir)?;
    fs::write(dir.join(".wh..wh..opq"), "")?;
    fs::write(dir.join("new.txt"), "recreated\n")?;
    pulls::add_layer(&b.image("overwritten"), &files)?;
    fs::remove_dir_all(&files)?;
    let mut copies = vec![Copy::new(Kind::Overwritten, ON_BASE, REPLACED)];
    copies.extend(OPAQUED.map(|f| Copy::new(Kind::Hidden, ON_BASE, f)));
    Ok(copies)
}

/// base + apt's archives and lists.
fn aptcache(b: &Build) -> Result<Vec<Copy>> {
    b.layer("base", "aptcache", |root| {
        APT.iter()
            .zip(400..)
            .try_for_each(|(&file, seed)| write_noise(root, file, seed))
    })?;
    Ok(APT
        .map(|f| Copy::new(Kind::Cache("apt"), ON_BASE, f))
        .to_vec())
}

/// One layer (no base): [`MODEL`] and a file of its own, `own`.
fn dup(b: &Build, name: &str, own: &str) -> Result<Vec<Copy>> {
    b.empty(name)?;
    b.layer(name, name, |root| {
        write_noise(root, MODEL, 500)?;
        fs::write(root.join("opt/own.txt"), own).context("cannot write opt/own.txt")
    })?;
    Ok(vec![Copy::new(Kind::Duplicate, 0, MODEL)])
}

/// base + an app that wastes nothing of its own (every file under 1 MiB,
/// none deleted, replaced or cached): only base's duplicates.
fn clean(b: &Build) -> Result<Vec<Copy>> {
    b.layer("base", "clean", |root| {
        write_noise(root, ("app/lib.so", 600_000), 600)?;
        fs::write(root.join("app/README"), "nothing wasted here\n").context("cannot write README")
    })?;
    Ok(Vec::new())
}
