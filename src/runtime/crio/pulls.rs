//! Pulls in flight: the layers containers-storage is still writing.
//!
//! A layer being applied is listed with `flags.incomplete` until its files
//! are all written; what it holds so far is in its directory. The blob's
//! full size is not in the store (it is downloaded elsewhere first), so a
//! pull here has no size: it is judged, as Docker's, by the rate at which
//! it fills the graph root's filesystem.

use std::path::{Path, PathBuf};

use super::layers::{Layer, Layers};
use crate::runtime::{PullLayer, PullRecord};
use crate::walk::{self, WalkOptions};

/// The directories a pull writes into first: a new layer's directory and
/// the layer list's rewrite.
pub fn dirs(graph_root: &Path) -> Vec<PathBuf> {
    vec![
        graph_root.join("overlay"),
        graph_root.join("overlay-layers"),
    ]
}

/// One pull for every incomplete layer (the files cannot tell two pulls
/// apart), if any.
pub fn discover(graph_root: &Path, layers: &Layers) -> Vec<PullRecord> {
    let written: Vec<PullLayer> = layers.incomplete().map(pull_layer).collect();
    if written.is_empty() {
        return Vec::new();
    }
    vec![PullRecord {
        namespace: String::new(),
        image: None,
        manifest_digest: None,
        ingest: Some(format!(
            "{}/overlay-layers/layers.json: incomplete layers",
            graph_root.display()
        )),
        layers: written,
    }]
}

/// An incomplete layer, with the bytes its directory holds so far.
fn pull_layer(layer: &Layer) -> PullLayer {
    let opts = WalkOptions {
        threads: 1,
        ..WalkOptions::default()
    };
    PullLayer {
        digest: layer
            .raw
            .compressed_digest
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", layer.raw.id)),
        compressed_bytes: 0,
        downloaded_bytes: walk::walk(&layer.dir, &opts).usage.disk_bytes,
        chain_id: None,
        unpacked: false,
        unpacks: true,
    }
}
