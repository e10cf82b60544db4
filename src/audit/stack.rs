//! Audits one image's stack of layers: lays the layers over each other as
//! overlayfs does, base first, and counts what each layer hides or
//! replaces of the ones below, then what the final filesystem still holds
//! of caches, and which of its big files are worth comparing node-wide.
//!
//! Memory is the final filesystem's regular files (path and a few numbers
//! each) of the one stack being audited, not the node's.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;

use super::content;
use super::leftovers::{self, CacheKind};
use super::list::{self, Entry, Kind, Unlisted};
use super::pace::Pace;
use super::{Amount, WasteKind};

/// Files at least this big are compared across images for duplicates.
pub const MIN_DUPLICATE_BYTES: u64 = 1024 * 1024;
/// How many of the biggest wasted paths an image keeps.
pub const TOP_PATHS: usize = 10;

/// A regular file of the filesystem built so far.
#[derive(Debug, Clone, Copy)]
struct Visible {
    layer: usize,
    size: u64,
    disk: u64,
    inode: (u64, u64),
    nlink: u64,
}

/// One wasted path worth naming: a file, or a directory whose contents
/// went together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WastedPath {
    /// Relative to the image's root.
    pub path: Vec<u8>,
    /// Why it is waste.
    pub kind: WasteKind,
    /// The layer holding the wasted bytes (base first).
    pub layer: usize,
    /// Its bytes (st_size).
    pub bytes: u64,
}

/// A file of the final filesystem big enough to look for elsewhere.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The layer holding it (base first).
    pub layer: usize,
    /// Relative to the layer's root.
    pub path: Box<[u8]>,
    /// st_size.
    pub size: u64,
    /// st_blocks × 512.
    pub disk: u64,
}

/// What a stack's audit found.
#[derive(Debug, Clone, Default)]
pub struct StackAudit {
    /// Waste each layer causes (base first): what it hides or replaces of
    /// the layers below. A layer's share depends only on the layers below
    /// it, so images sharing it share these figures.
    pub by_layer: Vec<BTreeMap<WasteKind, Amount>>,
    /// Caches in the final filesystem, by kind and by the layer holding them.
    pub caches: BTreeMap<(CacheKind, usize), Amount>,
    /// Regular files in the final filesystem.
    pub files: u64,
    /// st_size of the regular files of every layer.
    pub bytes: u64,
    /// The biggest wasted paths, biggest first.
    pub top_paths: Vec<WastedPath>,
    /// Final files of at least [`MIN_DUPLICATE_BYTES`].
    pub candidates: Vec<Candidate>,
    /// What could not be listed or read, by layer directory.
    pub unlisted: Vec<(PathBuf, Unlisted)>,
}

/// The audit of one stack in progress.
struct Merge<'a> {
    layers: &'a [PathBuf],
    files: BTreeMap<Box<[u8]>, Visible>,
    /// Multiply-linked inodes already counted, per kind.
    counted: HashSet<(WasteKind, (u64, u64))>,
    out: StackAudit,
    /// Problems met reading files of the layer being added.
    unread: Unlisted,
}

/// Audits the stack `layers` (directories, base first). `None` when the
/// pace stopped it; an error names a layer that could not be opened at all.
pub fn audit(
    layers: &[PathBuf],
    pace: &mut Pace,
) -> Result<Option<StackAudit>, (PathBuf, std::io::Error)> {
    let mut merge = Merge {
        layers,
        files: BTreeMap::new(),
        counted: HashSet::new(),
        out: StackAudit::default(),
        unread: Unlisted::default(),
    };
    for (k, dir) in layers.iter().enumerate() {
        merge.out.by_layer.push(BTreeMap::new());
        let mut going = true;
        let unlisted = list::list(dir, |e| {
            going = pace.tick() && merge.add(k, e, pace);
            going
        })
        .map_err(|e| (dir.clone(), e))?;
        if !going {
            return Ok(None);
        }
        let unread = std::mem::take(&mut merge.unread);
        for u in [unlisted, unread].into_iter().filter(|u| u.count > 0) {
            merge.out.unlisted.push((dir.clone(), u));
        }
    }
    Ok(Some(merge.finish()))
}

impl Merge<'_> {
    /// Lays entry `e` of layer `k` over the filesystem so far; false when
    /// the pace stopped a comparison.
    fn add(&mut self, k: usize, e: &Entry, pace: &mut Pace) -> bool {
        match e.kind {
            // The root's own marks do not hide anything that matters here.
            Kind::Dir { .. } if e.path.is_empty() => {}
            Kind::Dir { opaque } => {
                self.replace(k, e.path, WasteKind::Overwritten);
                if opaque {
                    self.hide_below(k, e.path);
                }
            }
            Kind::Whiteout => {
                self.replace(k, e.path, WasteKind::Hidden);
                self.hide_below(k, e.path);
            }
            Kind::Other => {
                self.replace(k, e.path, WasteKind::Overwritten);
                self.hide_below(k, e.path);
            }
            Kind::File => return self.add_file(k, e, pace),
        }
        true
    }

    fn add_file(&mut self, k: usize, e: &Entry, pace: &mut Pace) -> bool {
        self.out.bytes = self.out.bytes.saturating_add(e.size);
        if let Some(lower) = self.files.get(e.path).filter(|v| v.layer < k).copied() {
            let kind = match self.same_content(&lower, k, e, pace) {
                Some(true) => WasteKind::MetadataOnly,
                Some(false) => WasteKind::Overwritten,
                None => return false,
            };
            self.files.remove(e.path);
            self.count(kind, e.path, &lower);
        }
        self.hide_below(k, e.path);
        let visible = Visible {
            layer: k,
            size: e.size,
            disk: e.disk,
            inode: e.inode,
            nlink: e.nlink,
        };
        self.files.insert(e.path.into(), visible);
        true
    }

    /// Whether the lower copy holds the same bytes as the new file `e` of
    /// layer `k`: compared only when their sizes match. One that cannot be
    /// read counts as different, and is reported.
    fn same_content(
        &mut self,
        lower: &Visible,
        k: usize,
        e: &Entry,
        pace: &mut Pace,
    ) -> Option<bool> {
        if lower.size != e.size {
            return Some(false);
        }
        let (a, b) = (&self.layers[lower.layer], &self.layers[k]);
        match content::same((a, e.path), (b, e.path), pace) {
            Ok(same) => same,
            Err(err) => {
                self.unread.add(b, e.path, || {
                    format!("comparing with {}: {err}", a.display())
                });
                Some(false)
            }
        }
    }

    /// A lower file at `path` replaced by what layer `k` puts there.
    fn replace(&mut self, k: usize, path: &[u8], kind: WasteKind) {
        if let Some(lower) = self.files.get(path).filter(|v| v.layer < k).copied() {
            self.files.remove(path);
            self.count(kind, path, &lower);
        }
    }

    /// The lower files below the directory `path`, hidden by layer `k`
    /// (an opaque directory, a whiteout, or a file in the directory's place).
    fn hide_below(&mut self, k: usize, path: &[u8]) {
        let (mut lo, mut hi) = (path.to_vec(), path.to_vec());
        lo.push(b'/');
        hi.push(b'/' + 1);
        let hidden: Vec<Box<[u8]>> = self
            .files
            .range::<[u8], _>((
                std::ops::Bound::Included(&lo[..]),
                std::ops::Bound::Excluded(&hi[..]),
            ))
            .filter(|(_, v)| v.layer < k)
            .map(|(p, _)| p.clone())
            .collect();
        if hidden.is_empty() {
            return;
        }
        let mut total = WastedPath {
            path: path.to_vec(),
            kind: WasteKind::Hidden,
            layer: usize::MAX,
            bytes: 0,
        };
        for p in hidden {
            if let Some(lower) = self.files.remove(&p) {
                total.layer = total.layer.min(lower.layer);
                total.bytes =
                    total
                        .bytes
                        .saturating_add(self.add_amount(WasteKind::Hidden, k, &lower));
            }
        }
        self.note(total);
    }

    /// Counts `lower` (at `path`) as `kind` of waste caused by the layer
    /// being added, and names it.
    fn count(&mut self, kind: WasteKind, path: &[u8], lower: &Visible) {
        let k = self.out.by_layer.len() - 1;
        let bytes = self.add_amount(kind, k, lower);
        self.note(WastedPath {
            path: path.to_vec(),
            kind,
            layer: lower.layer,
            bytes,
        });
    }

    /// Adds `lower` to `kind` of layer `k`'s waste, a multiply-linked inode
    /// once; the bytes added.
    fn add_amount(&mut self, kind: WasteKind, k: usize, lower: &Visible) -> u64 {
        if lower.nlink > 1 && !self.counted.insert((kind, lower.inode)) {
            return 0;
        }
        self.out.by_layer[k]
            .entry(kind)
            .or_default()
            .add(lower.size, lower.disk);
        lower.size
    }

    /// Keeps `path` among the biggest wasted paths.
    fn note(&mut self, path: WastedPath) {
        if path.bytes == 0 {
            return;
        }
        let top = &mut self.out.top_paths;
        top.push(path);
        if top.len() >= TOP_PATHS * 4 {
            sort_top(top);
        }
    }

    /// The final filesystem: its caches, files and candidates.
    fn finish(mut self) -> StackAudit {
        let mut counted = HashSet::new();
        let mut cache_dirs: BTreeMap<(&[u8], CacheKind, usize), u64> = BTreeMap::new();
        for (path, v) in &self.files {
            self.out.files += 1;
            let first = v.nlink <= 1 || counted.insert(v.inode);
            if let Some((kind, dir)) = leftovers::classify(path).filter(|_| first) {
                self.out
                    .caches
                    .entry((kind, v.layer))
                    .or_default()
                    .add(v.size, v.disk);
                *cache_dirs.entry((dir, kind, v.layer)).or_default() += v.size;
            }
            if v.size >= MIN_DUPLICATE_BYTES && first {
                self.out.candidates.push(Candidate {
                    layer: v.layer,
                    path: path.clone(),
                    size: v.size,
                    disk: v.disk,
                });
            }
        }
        let named: Vec<WastedPath> = cache_dirs
            .into_iter()
            .map(|((dir, kind, layer), bytes)| WastedPath {
                path: dir.to_vec(),
                kind: WasteKind::Cache(kind),
                layer,
                bytes,
            })
            .collect();
        for path in named {
            self.note(path);
        }
        sort_top(&mut self.out.top_paths);
        self.out
    }
}

/// Biggest first, at most [`TOP_PATHS`].
fn sort_top(top: &mut Vec<WastedPath>) {
    top.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    top.truncate(TOP_PATHS);
}
