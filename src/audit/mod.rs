//! Where an image's bytes are wasted, node-wide: what later layers hide or
//! replace of earlier ones (re-shipped whole when only metadata changed),
//! the caches left in the final filesystem, and the same big files in
//! images that share no layer. docs/audit.md is the contract.
//!
//! A stack of layers never changes, so its audit is kept, keyed by its top
//! layer's directory, and dropped once no image uses it; only new stacks
//! are audited, within the [`Pace`] the caller gives (the agent's CPU
//! budget). The duplicates are found again from the kept audits each pass,
//! reading only files not hashed before.

mod content;
pub mod duplicates;
pub mod leftovers;
pub mod list;
mod pace;
pub mod stack;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

pub use duplicates::DuplicateGroup;
pub use leftovers::CacheKind;
pub use pace::Pace;
use stack::StackAudit;

use crate::model::{rfc3339, short_id, Status};
use crate::runtime::{Problem, ProblemKind, Reader, RuntimeKind};

/// The audit document's schema version.
pub const SCHEMA: u32 = 1;

/// Files and bytes of one kind of waste.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amount {
    /// Regular files.
    pub files: u64,
    /// Their st_size: what the image ships.
    pub bytes: u64,
    /// Their st_blocks × 512: what they hold of this node's disk.
    pub disk_bytes: u64,
}

impl Amount {
    /// Adds one file.
    pub fn add(&mut self, bytes: u64, disk_bytes: u64) {
        self.files += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        self.disk_bytes = self.disk_bytes.saturating_add(disk_bytes);
    }

    /// Adds `other`.
    pub fn merge(&mut self, other: &Amount) {
        self.files += other.files;
        self.bytes = self.bytes.saturating_add(other.bytes);
        self.disk_bytes = self.disk_bytes.saturating_add(other.disk_bytes);
    }
}

/// Why bytes are waste.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WasteKind {
    /// Deleted by a later layer (a whiteout, an opaque directory, or a
    /// file put in place of the directory holding it).
    Hidden,
    /// Replaced by a later layer with other content (or a directory or link).
    Overwritten,
    /// Copied whole into a later layer with the same content: only the
    /// owner, mode or times changed (`chown -R` in a later step).
    MetadataOnly,
    /// A package manager's cache or another leftover in the final filesystem.
    Cache(CacheKind),
    /// A file whose identical copy lies in a layer the image does not share.
    Duplicate,
}

impl WasteKind {
    /// The name in JSON and metric labels (every cache is `cache`).
    pub fn as_str(self) -> &'static str {
        match self {
            WasteKind::Hidden => "hidden",
            WasteKind::Overwritten => "overwritten",
            WasteKind::MetadataOnly => "metadata_only",
            WasteKind::Cache(_) => "cache",
            WasteKind::Duplicate => "duplicate",
        }
    }
}

/// The waste of an image, or of the node, by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waste {
    /// Deleted by a later layer.
    pub hidden: Amount,
    /// Replaced by a later layer with other content.
    pub overwritten: Amount,
    /// Re-shipped by a later layer with the same content.
    pub metadata_only: Amount,
    /// Caches and leftovers in the final filesystem, by kind.
    pub caches: BTreeMap<CacheKind, Amount>,
    /// Files duplicated in layers not shared (node-wide: what one shared
    /// copy would save).
    pub duplicate: Amount,
    /// The bytes of all of the above.
    pub wasted_bytes: u64,
}

impl Waste {
    /// The bytes of `kind` (all caches for any cache kind).
    pub fn bytes(&self, kind: WasteKind) -> u64 {
        match kind {
            WasteKind::Hidden => self.hidden.bytes,
            WasteKind::Overwritten => self.overwritten.bytes,
            WasteKind::MetadataOnly => self.metadata_only.bytes,
            WasteKind::Cache(_) => self.caches.values().map(|a| a.bytes).sum(),
            WasteKind::Duplicate => self.duplicate.bytes,
        }
    }

    fn add(&mut self, kind: WasteKind, amount: &Amount) {
        match kind {
            WasteKind::Hidden => self.hidden.merge(amount),
            WasteKind::Overwritten => self.overwritten.merge(amount),
            WasteKind::MetadataOnly => self.metadata_only.merge(amount),
            WasteKind::Cache(c) => self.caches.entry(c).or_default().merge(amount),
            WasteKind::Duplicate => self.duplicate.merge(amount),
        }
    }

    fn total(mut self) -> Waste {
        self.wasted_bytes = KINDS.iter().map(|k| self.bytes(*k)).sum();
        self
    }
}

/// The kinds as metrics and the status line show them (caches together).
pub const KINDS: [WasteKind; 5] = [
    WasteKind::Hidden,
    WasteKind::Overwritten,
    WasteKind::MetadataOnly,
    WasteKind::Cache(CacheKind::Apt),
    WasteKind::Duplicate,
];

/// An image and the directories of its layers, as the audit needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageStack {
    /// Its runtime.
    pub runtime: RuntimeKind,
    /// containerd namespace; empty for Docker.
    pub namespace: String,
    /// `sha256:<config digest>`.
    pub id: String,
    /// Its names.
    pub refs: Vec<String>,
    /// Its layers' directories, base first.
    pub layers: Vec<PathBuf>,
}

impl ImageStack {
    /// Its first name, else its short ID.
    pub fn name(&self) -> String {
        self.refs
            .first()
            .cloned()
            .unwrap_or_else(|| short_id(&self.id))
    }

    fn identity(&self) -> ImageIdentity {
        ImageIdentity {
            runtime: self.runtime,
            namespace: self.namespace.clone(),
            id: self.id.clone(),
            refs: self.refs.clone(),
        }
    }
}

/// The images of `status` with their layers' directories; an image with a
/// layer whose directory is unknown is left out (the status document
/// already reports the missing layer).
pub fn stacks(status: &Status) -> Vec<ImageStack> {
    let dirs: HashMap<(RuntimeKind, &str, &str), &str> = status
        .layers
        .iter()
        .map(|l| {
            (
                (l.runtime, l.namespace.as_str(), l.id.as_str()),
                l.path.as_str(),
            )
        })
        .collect();
    status
        .images
        .iter()
        .filter_map(|image| {
            let layers = image
                .layers
                .iter()
                .map(|chain| {
                    dirs.get(&(image.runtime, image.namespace.as_str(), chain.as_str()))
                        .map(PathBuf::from)
                })
                .collect::<Option<Vec<_>>>()?;
            Some(ImageStack {
                runtime: image.runtime,
                namespace: image.namespace.clone(),
                id: image.id.clone(),
                refs: image.refs.clone(),
                layers,
            })
        })
        .collect()
}

/// Which image a report entry is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageIdentity {
    /// `docker` or `containerd`.
    pub runtime: RuntimeKind,
    /// containerd namespace; empty for Docker.
    pub namespace: String,
    /// `sha256:<config digest>`.
    pub id: String,
    /// Its names.
    pub refs: Vec<String>,
}

/// One image's audit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageAudit {
    /// Which image.
    #[serde(flatten)]
    pub image: ImageIdentity,
    /// Layers in its stack.
    pub layers: usize,
    /// Regular files in its final filesystem.
    pub files: u64,
    /// st_size of the regular files of all its layers: what it ships.
    pub bytes: u64,
    /// Its waste by kind.
    #[serde(flatten)]
    pub waste: Waste,
    /// Its biggest wasted paths, biggest first.
    pub top_paths: Vec<TopPath>,
}

/// One of an image's biggest wasted paths.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopPath {
    /// The path in the image (a directory when its contents went together).
    pub path: String,
    /// `hidden`, `overwritten`, `metadata_only`, `duplicate` or a cache kind.
    pub kind: String,
    /// The layer holding the wasted bytes (0 is the base).
    pub layer: usize,
    /// Its bytes (st_size).
    pub bytes: u64,
}

/// The audit of a node: the document of `headroom audit --json` and of the
/// agent's `/api/v1/audit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditReport {
    /// [`SCHEMA`].
    pub schema: u32,
    /// The node's name.
    pub node: String,
    /// When it was made.
    #[serde(with = "rfc3339")]
    pub generated_at: SystemTime,
    /// Whether every image is audited (none pending).
    pub complete: bool,
    /// The audited images, most wasted bytes first.
    pub images: Vec<ImageAudit>,
    /// Images not audited yet.
    pub pending: Vec<ImageIdentity>,
    /// The node's waste, a layer shared by images counted once.
    pub node_totals: Waste,
    /// The biggest groups of duplicated files.
    pub duplicates: Vec<DuplicateGroup>,
    /// Layers, directories and files that could not be read.
    pub problems: Vec<Problem>,
}

impl AuditReport {
    /// The report's summary for the status document.
    pub fn summary(&self) -> AuditSummary {
        AuditSummary {
            images: self.images.len() as u64,
            pending: self.pending.len() as u64,
            wasted_bytes: self.node_totals.wasted_bytes,
            by_kind: KINDS
                .iter()
                .map(|k| (k.as_str().to_string(), self.node_totals.bytes(*k)))
                .collect(),
            per_image: self
                .images
                .iter()
                .map(|i| ImageWaste {
                    runtime: i.image.runtime,
                    namespace: i.image.namespace.clone(),
                    image: i
                        .image
                        .refs
                        .first()
                        .cloned()
                        .unwrap_or_else(|| short_id(&i.image.id)),
                    by_kind: KINDS
                        .iter()
                        .map(|k| (k.as_str().to_string(), i.waste.bytes(*k)))
                        .collect(),
                    wasted_bytes: i.waste.wasted_bytes,
                })
                .collect(),
        }
    }
}

/// The audit in the status document: its line on the screen and the
/// metrics by kind.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AuditSummary {
    /// Images audited.
    pub images: u64,
    /// Images not audited yet.
    pub pending: u64,
    /// The node's wasted bytes.
    pub wasted_bytes: u64,
    /// The node's wasted bytes by kind (`hidden`, `overwritten`,
    /// `metadata_only`, `cache`, `duplicate`).
    pub by_kind: BTreeMap<String, u64>,
    /// Each audited image's wasted bytes by kind.
    pub per_image: Vec<ImageWaste>,
}

/// One image's waste in the status document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageWaste {
    /// `docker` or `containerd`.
    pub runtime: RuntimeKind,
    /// containerd namespace; empty for Docker.
    pub namespace: String,
    /// Its first name, else its short ID.
    pub image: String,
    /// Its wasted bytes by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// All of them.
    pub wasted_bytes: u64,
}

/// Audits stacks, keeping each stack's audit for as long as an image uses it.
#[derive(Debug)]
pub struct Auditor {
    stacks: HashMap<PathBuf, Arc<StackAudit>>,
    hashes: duplicates::Hashes,
    /// Whether `trusted.overlay.opaque` can be read (it takes CAP_SYS_ADMIN).
    sees_opaque: bool,
}

impl Default for Auditor {
    /// An auditor that has audited nothing, and knows whether this process
    /// can see opaque directories.
    fn default() -> Self {
        Auditor {
            stacks: HashMap::new(),
            hashes: duplicates::Hashes::default(),
            sees_opaque: reads_trusted_xattrs(),
        }
    }
}

/// `CAP_SYS_ADMIN`'s bit in the capability sets.
const CAP_SYS_ADMIN: u32 = 21;

/// Whether this process holds CAP_SYS_ADMIN, without which the kernel hides
/// `trusted.*` attributes (it reads them as absent, not as refused).
fn reads_trusted_xattrs() -> bool {
    procfs::process::Process::myself()
        .and_then(|me| me.status())
        .is_ok_and(|status| status.capeff & (1 << CAP_SYS_ADMIN) != 0)
}

/// The problem an audit without CAP_SYS_ADMIN has, once per runtime audited.
fn blind_to_opaque(runtime: RuntimeKind) -> Problem {
    let why = "opaque directories (trusted.overlay.opaque) cannot be seen without \
               CAP_SYS_ADMIN: the lower layers' files under one count as visible, not \
               hidden (whiteouts of single files are seen); docs/audit.md";
    Reader::Runtime(runtime).problem(ProblemKind::Unreadable, "trusted.overlay.opaque", why)
}

impl Auditor {
    /// Audits the stacks not audited before (as far as `pace` lets it),
    /// finds the duplicates, and reports on `node`.
    pub fn audit(&mut self, node: &str, stacks: &[ImageStack], pace: &mut Pace) -> AuditReport {
        let live: std::collections::HashSet<&Path> = stacks
            .iter()
            .filter_map(|s| s.layers.last())
            .map(PathBuf::as_path)
            .collect();
        self.stacks.retain(|top, _| live.contains(top.as_path()));
        let mut problems = Vec::new();
        let (mut stopped, mut begun) = (false, 0);
        // Sorted by their layers, stacks sharing layers come together, and
        // the merger lists each layer once.
        let mut new: Vec<&ImageStack> = stacks
            .iter()
            .filter(|s| {
                s.layers
                    .last()
                    .is_some_and(|top| !self.stacks.contains_key(top))
            })
            .collect();
        new.sort_by(|a, b| a.layers.cmp(&b.layers));
        let mut merger = stack::Merger::default();
        for s in new {
            let Some(top) = s.layers.last() else { continue };
            if self.stacks.contains_key(top) {
                continue;
            }
            // A pass audits at least one stack, whatever its budget.
            stopped = stopped || (begun > 0 && pace.spent());
            if stopped {
                continue;
            }
            begun += 1;
            match merger.audit(&s.layers, pace) {
                Ok(Some(audit)) => {
                    self.stacks.insert(top.clone(), Arc::new(audit));
                }
                Ok(None) => stopped = true,
                Err((dir, e)) => problems.push(layer_problem(s.runtime, &dir, &e.to_string())),
            }
        }
        let audited: Vec<(&ImageStack, &StackAudit)> = stacks
            .iter()
            .filter_map(|s| Some((s, &**self.stacks.get(s.layers.last()?)?)))
            .collect();
        let found = duplicates::find(&audited, &mut self.hashes, pace);
        problems.extend(found.unread.iter().map(|(runtime, dir, path, why)| {
            layer_problem(*runtime, dir, &format!("reading /{path}: {why}"))
        }));
        if !self.sees_opaque {
            problems.extend(audited.iter().map(|(s, _)| blind_to_opaque(s.runtime)));
        }
        report(node, stacks, &audited, found, problems, stopped)
    }
}

/// A layer that could not be read, as a problem of `runtime`'s reader.
fn layer_problem(runtime: RuntimeKind, dir: &Path, message: &str) -> Problem {
    Reader::Runtime(runtime).problem(
        ProblemKind::Unreadable,
        dir.display().to_string(),
        format!("auditing the layer: {message}"),
    )
}

/// Puts the report together.
fn report(
    node: &str,
    stacks: &[ImageStack],
    audited: &[(&ImageStack, &StackAudit)],
    found: duplicates::Found,
    mut problems: Vec<Problem>,
    stopped: bool,
) -> AuditReport {
    let mut images: Vec<ImageAudit> = audited
        .iter()
        .zip(&found.per_image)
        .map(|((s, a), dup)| image_audit(s, a, dup))
        .collect();
    // The same image in two stores: told apart by runtime and namespace.
    let identity = |i: &ImageAudit| {
        (
            i.image.id.clone(),
            i.image.runtime,
            i.image.namespace.clone(),
        )
    };
    images.sort_by(|a, b| {
        (b.waste.wasted_bytes.cmp(&a.waste.wasted_bytes))
            .then_with(|| identity(a).cmp(&identity(b)))
    });
    let done: std::collections::HashSet<&str> =
        audited.iter().map(|(s, _)| s.id.as_str()).collect();
    let pending: Vec<ImageIdentity> = stacks
        .iter()
        .filter(|s| !done.contains(s.id.as_str()))
        .map(ImageStack::identity)
        .collect();
    for (s, a) in audited {
        for (dir, u) in &a.unlisted {
            let (path, why) = u.first.clone().unwrap_or_default();
            let message = format!(
                "{} entries not read, the first {}: {why}",
                u.count,
                path.display()
            );
            problems.push(layer_problem(s.runtime, dir, &message));
        }
    }
    problems.sort_by(|a, b| {
        a.source
            .cmp(&b.source)
            .then_with(|| a.message.cmp(&b.message))
    });
    problems.dedup();
    AuditReport {
        schema: SCHEMA,
        node: node.to_string(),
        generated_at: SystemTime::now(),
        complete: pending.is_empty() && !stopped && !found.stopped,
        node_totals: node_totals(audited, &found),
        duplicates: found.groups,
        images,
        pending,
        problems,
    }
}

fn image_audit(s: &ImageStack, a: &StackAudit, duplicate: &Amount) -> ImageAudit {
    let mut waste = Waste::default();
    for layer in &a.by_layer {
        for (kind, amount) in layer {
            waste.add(*kind, amount);
        }
    }
    for ((kind, _), amount) in &a.caches {
        waste.add(WasteKind::Cache(*kind), amount);
    }
    waste.duplicate = *duplicate;
    ImageAudit {
        image: s.identity(),
        layers: s.layers.len(),
        files: a.files,
        bytes: a.bytes,
        waste: waste.total(),
        top_paths: a
            .top_paths
            .iter()
            .map(|p| TopPath {
                path: format!("/{}", String::from_utf8_lossy(&p.path)),
                kind: match p.kind {
                    WasteKind::Cache(c) => c.as_str().to_string(),
                    k => k.as_str().to_string(),
                },
                layer: p.layer,
                bytes: p.bytes,
            })
            .collect(),
    }
}

/// The node's waste: each layer's share counted once however many images
/// use it, each cache once per layer holding it (the most any image shows
/// of it), and the duplicates' saving.
fn node_totals(audited: &[(&ImageStack, &StackAudit)], found: &duplicates::Found) -> Waste {
    let mut by_layer: HashMap<&Path, &BTreeMap<WasteKind, Amount>> = HashMap::new();
    let mut caches: HashMap<(&Path, CacheKind), Amount> = HashMap::new();
    for (s, a) in audited {
        for (dir, waste) in s.layers.iter().zip(&a.by_layer) {
            by_layer.insert(dir, waste);
        }
        for ((kind, layer), amount) in &a.caches {
            let kept = caches.entry((&s.layers[*layer], *kind)).or_default();
            if amount.bytes > kept.bytes {
                *kept = *amount;
            }
        }
    }
    let mut waste = Waste::default();
    for layer in by_layer.values() {
        for (kind, amount) in layer.iter() {
            waste.add(*kind, amount);
        }
    }
    for ((_, kind), amount) in caches {
        waste.add(WasteKind::Cache(kind), &amount);
    }
    waste.duplicate = found.saving;
    waste.total()
}

#[cfg(test)]
impl Auditor {
    /// An auditor that sees opaque directories or not, whatever this process can.
    fn seeing_opaque(sees_opaque: bool) -> Auditor {
        Auditor {
            sees_opaque,
            ..Auditor::default()
        }
    }
}

#[cfg(test)]
mod tests;
