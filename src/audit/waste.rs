//! What waste is: its kinds, and how much of each (files, bytes, disk bytes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::CacheKind;

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

    /// Adds `amount` to `kind`.
    pub(super) fn add(&mut self, kind: WasteKind, amount: &Amount) {
        match kind {
            WasteKind::Hidden => self.hidden.merge(amount),
            WasteKind::Overwritten => self.overwritten.merge(amount),
            WasteKind::MetadataOnly => self.metadata_only.merge(amount),
            WasteKind::Cache(c) => self.caches.entry(c).or_default().merge(amount),
            WasteKind::Duplicate => self.duplicate.merge(amount),
        }
    }

    /// With `wasted_bytes` the sum of the kinds.
    pub(super) fn total(mut self) -> Waste {
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
