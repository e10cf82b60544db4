//! Images from each store's `images.json`: names, top layer and the
//! layers below it, when stored.

use std::collections::HashSet;

use super::layers::Layers;
use super::store::{checked_id, records, RawImage, StoreDirs};
use super::READER;
use crate::runtime::docker::parse_time;
use crate::runtime::{ImageRecord, Problem, ProblemKind};

/// Every image of `stores` (the primary store's record winning), sorted by ID.
pub fn discover(
    stores: &[StoreDirs],
    layers: &Layers,
    problems: &mut Vec<Problem>,
) -> Vec<ImageRecord> {
    let mut seen = HashSet::new();
    let mut images = Vec::new();
    for store in stores {
        let file = store.images_file();
        for raw in records::<RawImage>(&file, problems) {
            if checked_id(&raw.id, "image", &file, problems) && seen.insert(raw.id.clone()) {
                images.push(record(raw, layers, &file, problems));
            }
        }
    }
    images.sort_by(|a, b| a.id.cmp(&b.id));
    images
}

/// The image `raw` describes, its layers base first from its top layer.
fn record(
    raw: RawImage,
    layers: &Layers,
    file: &std::path::Path,
    problems: &mut Vec<Problem>,
) -> ImageRecord {
    let top = raw.layer.as_deref().filter(|l| !l.is_empty());
    if let Some(top) = top.filter(|t| layers.get(t).is_none()) {
        let message = format!(
            "image {}: its top layer {top:.80} is in no layers file",
            raw.id
        );
        problems.push(READER.problem(ProblemKind::Missing, file.display().to_string(), message));
    }
    let chain = top.map(|t| layers.lineage(t)).unwrap_or_default();
    let mut refs = raw.names;
    refs.sort();
    refs.dedup();
    ImageRecord {
        namespace: String::new(),
        id: format!("sha256:{}", raw.id),
        refs,
        layers: chain.iter().map(|l| layers.key(&l.raw.id)).collect(),
        blobs: Vec::new(),
        pinned: false,
        created: raw.created.as_deref().and_then(parse_time),
    }
}
