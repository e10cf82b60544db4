//! Layers of every store: their chain IDs, parents and directories.
//!
//! containers-storage names a layer by an ID of its own (the diff ID for a
//! base layer, else a digest of its parent's ID and its diff ID), so the
//! chain ID other runtimes and registries key layers by is computed from
//! the `diff-digest`s down to the base. A layer whose chain cannot be told
//! (no diff digest, a parent missing) is keyed `sha256:<its ID>`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use super::store::{checked_id, records, RawLayer, StoreDirs};
use super::READER;
use crate::digest::chain_ids;
use crate::runtime::docker::is_real_dir;
use crate::runtime::{LayerRecord, Problem, ProblemKind};

/// A layer and where it lives.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Its record.
    pub raw: RawLayer,
    /// `<store>/overlay/<id>/diff`.
    pub dir: PathBuf,
    /// The file that lists it.
    pub file: PathBuf,
}

/// Every layer of every store, the first store's record winning.
#[derive(Debug, Default)]
pub struct Layers {
    by_id: HashMap<String, Layer>,
    /// IDs in the order read.
    order: Vec<String>,
    /// Each ID's key: its chain ID, or `sha256:<id>`.
    keys: HashMap<String, String>,
}

impl Layers {
    /// Reads the layer files of `stores`, the primary store first.
    pub fn read(stores: &[StoreDirs], problems: &mut Vec<Problem>) -> Layers {
        let mut layers = Layers::default();
        for store in stores {
            for file in store.layer_files() {
                for raw in records::<RawLayer>(&file, problems) {
                    if !checked_id(&raw.id, "layer", &file, problems)
                        || layers.by_id.contains_key(&raw.id)
                    {
                        continue;
                    }
                    let layer = Layer {
                        dir: store.diff_dir(&raw.id),
                        file: file.clone(),
                        raw,
                    };
                    layers.order.push(layer.raw.id.clone());
                    layers.by_id.insert(layer.raw.id.clone(), layer);
                }
            }
        }
        layers.keys = layers.chain_keys(problems);
        layers
    }

    /// The key of layer `id` (as [`LayerRecord::chain_id`] holds it).
    pub fn key(&self, id: &str) -> String {
        self.keys
            .get(id)
            .cloned()
            .unwrap_or_else(|| format!("sha256:{id}"))
    }

    /// The layer `id`, if some store lists it.
    pub fn get(&self, id: &str) -> Option<&Layer> {
        self.by_id.get(id)
    }

    /// `top` and the layers below it, base first, as far as the parents
    /// are listed.
    pub fn lineage(&self, top: &str) -> Vec<&Layer> {
        let mut seen = HashSet::new();
        let mut chain = Vec::new();
        let mut next = Some(top);
        while let Some(layer) = next.and_then(|id| self.by_id.get(id)) {
            if !seen.insert(layer.raw.id.as_str()) {
                break; // A loop of parents: corrupt, and not followed twice.
            }
            chain.push(layer);
            next = layer.raw.parent.as_deref().filter(|p| !p.is_empty());
        }
        chain.reverse();
        chain
    }

    /// The committed layers: not being written, nobody's writable layer,
    /// with their directory there; sorted by key.
    pub fn committed(
        &self,
        writable: &HashSet<&str>,
        problems: &mut Vec<Problem>,
    ) -> Vec<LayerRecord> {
        let mut out: Vec<LayerRecord> = self
            .layers()
            .filter(|l| !l.raw.incomplete() && !writable.contains(l.raw.id.as_str()))
            .filter(|l| {
                let there = is_real_dir(&l.dir);
                if !there {
                    let message = format!(
                        "layer {} is listed but its directory {} is not there",
                        l.raw.id,
                        l.dir.display()
                    );
                    let source = l.file.display().to_string();
                    problems.push(READER.problem(ProblemKind::Missing, source, message));
                }
                there
            })
            .map(|l| LayerRecord {
                namespace: String::new(),
                chain_id: self.key(&l.raw.id),
                dir: l.dir.clone(),
            })
            .collect();
        out.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        out
    }

    /// The layers being written (pulls in flight), in the order read.
    pub fn incomplete(&self) -> impl Iterator<Item = &Layer> {
        self.layers().filter(|l| l.raw.incomplete())
    }

    fn layers(&self) -> impl Iterator<Item = &Layer> {
        self.order.iter().filter_map(|id| self.by_id.get(id))
    }

    /// Each layer's chain ID where it can be told and is not taken by an
    /// earlier layer; a parent that no file lists is a problem.
    fn chain_keys(&self, problems: &mut Vec<Problem>) -> HashMap<String, String> {
        let mut keys = HashMap::new();
        let mut taken = HashSet::new();
        for layer in self.layers() {
            let own_parent = layer.raw.parent.as_deref().filter(|p| !p.is_empty());
            if let Some(missing) = own_parent.filter(|p| !self.by_id.contains_key(*p)) {
                let message = format!(
                    "layer {}: the layer below it, {missing:.80}, is in no layers file",
                    layer.raw.id
                );
                let source = layer.file.display().to_string();
                problems.push(READER.problem(ProblemKind::Missing, source, message));
            }
            let lineage = self.lineage(&layer.raw.id);
            let whole = lineage
                .first()
                .is_some_and(|base| base.raw.parent.as_deref().is_none_or(str::is_empty));
            let diffs: Vec<String> = lineage
                .iter()
                .map(|l| l.raw.diff_digest.clone().unwrap_or_default())
                .collect();
            let chains = chain_ids(&diffs);
            let chain = (whole && chains.len() == lineage.len())
                .then(|| chains.last().cloned())
                .flatten()
                .filter(|c| taken.insert(c.clone()))
                .unwrap_or_else(|| format!("sha256:{}", layer.raw.id));
            keys.insert(layer.raw.id.clone(), chain);
        }
        keys
    }
}
