//! The audit's document (docs/audit.md), its summary in the status
//! document, and how both are put together from the stacks' audits.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::duplicates::{self, DuplicateGroup};
use super::leftovers::CacheKind;
use super::stack::StackAudit;
use super::waste::{Amount, Waste, WasteKind, KINDS};
use super::ImageStack;
use crate::model::{rfc3339, short_id};
use crate::runtime::{Problem, ProblemKind, Reader, RuntimeKind};

/// The audit document's schema version.
pub const SCHEMA: u32 = 1;

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

/// A layer that could not be read, as a problem of `runtime`'s reader.
pub(super) fn layer_problem(runtime: RuntimeKind, dir: &Path, message: &str) -> Problem {
    Reader::Runtime(runtime).problem(
        ProblemKind::Unreadable,
        dir.display().to_string(),
        format!("auditing the layer: {message}"),
    )
}

/// Puts the report together.
pub(super) fn report(
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
