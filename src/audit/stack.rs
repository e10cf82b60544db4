//! Audits images' stacks of layers: lays the layers over each other as
//! overlayfs does, base first, and counts what each layer hides or
//! replaces of the ones below, then what the final filesystem still holds
//! of caches, and which of its big files are worth comparing node-wide.
//!
//! Memory is the regular files (path and a few numbers each) of the stack
//! being audited, and what its layers changed, not the node's.

use std::collections::{BTreeMap, HashSet};
use std::ops::Bound;
use std::path::{Path, PathBuf};

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

/// A change to the filesystem built so far, as it is undone.
#[derive(Debug)]
enum Undo {
    /// `path` was set; it held `before`.
    Set(Box<[u8]>, Option<Visible>),
    /// `path` was removed; it held the value.
    Removed(Box<[u8]>, Visible),
    /// A multiply-linked inode was counted as a kind.
    Counted((WasteKind, (u64, u64))),
}

/// One layer laid over the ones below, with what it changed.
#[derive(Debug)]
struct Applied {
    dir: PathBuf,
    undo: Vec<Undo>,
    waste: BTreeMap<WasteKind, Amount>,
    /// Its biggest wasted paths.
    notes: Vec<WastedPath>,
    bytes: u64,
    unlisted: Unlisted,
    /// Problems met reading its files.
    unread: Unlisted,
}

/// Lays stacks of layers over each other, keeping the layers it laid last:
/// the next stack sharing them only takes off the layers it does not share
/// and lays its own. Given the stacks sorted by their layers, every layer
/// is listed once (a base layer once for all the images built on it), and
/// memory is the filesystem of the stack at hand and what its layers
/// changed in it.
#[derive(Debug, Default)]
pub struct Merger {
    files: BTreeMap<Box<[u8]>, Visible>,
    /// Multiply-linked inodes already counted, per kind.
    counted: HashSet<(WasteKind, (u64, u64))>,
    path: Vec<Applied>,
}

impl Merger {
    /// Audits the stack `layers` (directories, base first). `None` when the
    /// pace stopped it; an error names a layer that could not be opened.
    pub fn audit(
        &mut self,
        layers: &[PathBuf],
        pace: &mut Pace,
    ) -> Result<Option<StackAudit>, (PathBuf, std::io::Error)> {
        let shared = self
            .path
            .iter()
            .zip(layers)
            .take_while(|(a, d)| a.dir == **d)
            .count();
        while self.path.len() > shared {
            self.pop();
        }
        for dir in &layers[shared..] {
            match self.push(dir, pace) {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                Err(e) => return Err((dir.clone(), e)),
            }
        }
        Ok(Some(self.finish()))
    }

    /// Lays the layer `dir` over the path; false (and nothing laid) when
    /// the pace stopped it.
    fn push(&mut self, dir: &Path, pace: &mut Pace) -> std::io::Result<bool> {
        self.path.push(Applied {
            dir: dir.to_path_buf(),
            undo: Vec::new(),
            waste: BTreeMap::new(),
            notes: Vec::new(),
            bytes: 0,
            unlisted: Unlisted::default(),
            unread: Unlisted::default(),
        });
        let k = self.path.len() - 1;
        let mut going = true;
        let listed = list::list(dir, |e| {
            going = pace.tick() && self.add(k, e, pace);
            going
        });
        match listed {
            Ok(unlisted) if going => {
                let top = &mut self.path[k];
                top.unlisted = unlisted;
                sort_top(&mut top.notes);
                Ok(true)
            }
            Ok(_) => {
                self.pop();
                Ok(false)
            }
            Err(e) => {
                self.pop();
                Err(e)
            }
        }
    }

    /// Takes the top layer off, undoing what it changed.
    fn pop(&mut self) {
        let Some(top) = self.path.pop() else { return };
        for undo in top.undo.into_iter().rev() {
            match undo {
                Undo::Set(path, Some(before)) | Undo::Removed(path, before) => {
                    self.files.insert(path, before);
                }
                Undo::Set(path, None) => {
                    self.files.remove(&path);
                }
                Undo::Counted(key) => {
                    self.counted.remove(&key);
                }
            }
        }
    }

    fn top(&mut self) -> &mut Applied {
        let k = self.path.len() - 1;
        &mut self.path[k]
    }

    fn set(&mut self, path: &[u8], v: Visible) {
        let before = self.files.insert(path.into(), v);
        self.top().undo.push(Undo::Set(path.into(), before));
    }

    fn remove(&mut self, path: &[u8]) -> Option<Visible> {
        let (path, v) = self.files.remove_entry(path)?;
        self.top().undo.push(Undo::Removed(path, v));
        Some(v)
    }

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
        let top = self.top();
        top.bytes = top.bytes.saturating_add(e.size);
        if let Some(lower) = self.files.get(e.path).filter(|v| v.layer < k).copied() {
            let kind = match self.same_content(&lower, k, e, pace) {
                Some(true) => WasteKind::MetadataOnly,
                Some(false) => WasteKind::Overwritten,
                None => return false,
            };
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
        self.set(e.path, visible);
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
        let (a, b) = (&self.path[lower.layer].dir, &self.path[k].dir);
        match content::same((a, e.path), (b, e.path), pace) {
            Ok(same) => same,
            Err(err) => {
                let why = format!("comparing with {}: {err}", a.display());
                let b = b.clone();
                self.top().unread.add(&b, e.path, || why);
                Some(false)
            }
        }
    }

    /// A lower file at `path` replaced by what layer `k` puts there.
    fn replace(&mut self, k: usize, path: &[u8], kind: WasteKind) {
        if let Some(lower) = self.files.get(path).filter(|v| v.layer < k).copied() {
            self.remove(path);
            self.count(kind, path, &lower);
        }
    }

    /// The lower files below the directory `path`, hidden by layer `k`
    /// (an opaque directory, a whiteout, or a file in the directory's place).
    fn hide_below(&mut self, k: usize, path: &[u8]) {
        // Without allocating: called for every file laid. Names that
        // extend `path` with a byte below `/` (`lib-x`, `lib.y`) sort
        // between `path` and `path/…`, and are passed over.
        let below = |p: &[u8]| p.get(path.len()) == Some(&b'/');
        let hidden: Vec<Box<[u8]>> = self
            .files
            .range::<[u8], _>((Bound::Excluded(path), Bound::Unbounded))
            .take_while(|(p, _)| p.starts_with(path))
            .filter(|(p, v)| below(p) && v.layer < k)
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
            if let Some(lower) = self.remove(&p) {
                total.layer = total.layer.min(lower.layer);
                total.bytes = total
                    .bytes
                    .saturating_add(self.add_amount(WasteKind::Hidden, &lower));
            }
        }
        note(&mut self.top().notes, total);
    }

    /// Counts `lower` (at `path`, taken off by now or about to be
    /// replaced) as `kind` of waste caused by the top layer, and names it.
    fn count(&mut self, kind: WasteKind, path: &[u8], lower: &Visible) {
        let bytes = self.add_amount(kind, lower);
        let named = WastedPath {
            path: path.to_vec(),
            kind,
            layer: lower.layer,
            bytes,
        };
        note(&mut self.top().notes, named);
    }

    /// Adds `lower` to `kind` of the top layer's waste, a multiply-linked
    /// inode once; the bytes added.
    fn add_amount(&mut self, kind: WasteKind, lower: &Visible) -> u64 {
        if lower.nlink > 1 {
            if !self.counted.insert((kind, lower.inode)) {
                return 0;
            }
            self.top().undo.push(Undo::Counted((kind, lower.inode)));
        }
        self.top()
            .waste
            .entry(kind)
            .or_default()
            .add(lower.size, lower.disk);
        lower.size
    }

    /// The stack's audit: what its layers changed, and its final
    /// filesystem's caches, files and candidates.
    fn finish(&self) -> StackAudit {
        let mut out = StackAudit {
            by_layer: self.path.iter().map(|a| a.waste.clone()).collect(),
            bytes: self
                .path
                .iter()
                .map(|a| a.bytes)
                .fold(0, u64::saturating_add),
            top_paths: self
                .path
                .iter()
                .flat_map(|a| a.notes.iter().cloned())
                .collect(),
            unlisted: (self.path.iter())
                .flat_map(|a| [&a.unlisted, &a.unread].map(|u| (a.dir.clone(), u.clone())))
                .filter(|(_, u)| u.count > 0)
                .collect(),
            ..StackAudit::default()
        };
        let mut counted = HashSet::new();
        let mut cache_dirs: BTreeMap<(&[u8], CacheKind, usize), u64> = BTreeMap::new();
        for (path, v) in &self.files {
            out.files += 1;
            let first = v.nlink <= 1 || counted.insert(v.inode);
            if let Some((kind, dir)) = leftovers::classify(path).filter(|_| first) {
                out.caches
                    .entry((kind, v.layer))
                    .or_default()
                    .add(v.size, v.disk);
                *cache_dirs.entry((dir, kind, v.layer)).or_default() += v.size;
            }
            if v.size >= MIN_DUPLICATE_BYTES && first {
                out.candidates.push(Candidate {
                    layer: v.layer,
                    path: path.clone(),
                    size: v.size,
                    disk: v.disk,
                });
            }
        }
        for ((dir, kind, layer), bytes) in cache_dirs {
            let named = WastedPath {
                path: dir.to_vec(),
                kind: WasteKind::Cache(kind),
                layer,
                bytes,
            };
            note(&mut out.top_paths, named);
        }
        sort_top(&mut out.top_paths);
        out
    }
}

/// Keeps `path` among the biggest wasted paths of `top`.
fn note(top: &mut Vec<WastedPath>, path: WastedPath) {
    if path.bytes == 0 {
        return;
    }
    top.push(path);
    if top.len() >= TOP_PATHS * 4 {
        sort_top(top);
    }
}

/// Biggest first, at most [`TOP_PATHS`].
fn sort_top(top: &mut Vec<WastedPath>) {
    top.sort_by(|a, b| b.bytes.cmp(&a.bytes).then_with(|| a.path.cmp(&b.path)));
    top.truncate(TOP_PATHS);
}
