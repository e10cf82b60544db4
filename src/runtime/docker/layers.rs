//! Image layers from `image/overlay2/layerdb/sha256/<chain>/cache-id`.

use std::io;
use std::path::Path;

use super::files::{hex_entries, is_real_dir, read_id};
use super::READER;
use crate::runtime::{LayerRecord, Problem, ProblemKind};

/// Every committed layer in the layer DB, referenced by an image or not
/// (an unreferenced layer still holds disk), sorted by chain ID.
pub(super) fn discover(
    docker_root: &Path,
    image_dir: &Path,
    problems: &mut Vec<Problem>,
) -> Vec<LayerRecord> {
    let layerdb = image_dir.join("layerdb").join("sha256");
    let chains = match hex_entries(&layerdb) {
        Ok(chains) => chains,
        // A daemon that never stored a layer has no layerdb/sha256 yet.
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            problems.push(READER.problem_from(layerdb.display().to_string(), &e));
            return Vec::new();
        }
    };
    chains
        .into_iter()
        .filter_map(|chain| layer(docker_root, &layerdb.join(&chain), &chain, problems))
        .collect()
}

/// The layer whose layer-DB entry is `entry`, if its `cache-id` leads to a
/// directory.
fn layer(
    docker_root: &Path,
    entry: &Path,
    chain: &str,
    problems: &mut Vec<Problem>,
) -> Option<LayerRecord> {
    let cache_id_file = entry.join("cache-id");
    let source = cache_id_file.display().to_string();
    let cache_id = match read_id(&cache_id_file) {
        Ok(id) => id,
        Err(e) => {
            let message = format!("layer sha256:{chain} has no usable cache-id: {e}");
            problems.push(READER.problem(ProblemKind::of_io(&e), source, message));
            return None;
        }
    };
    let dir = docker_root.join("overlay2").join(&cache_id).join("diff");
    if !is_real_dir(&dir) {
        let message = format!(
            "layer sha256:{chain}: cache-id names {}, which is not a directory",
            dir.display()
        );
        problems.push(READER.problem(ProblemKind::Missing, source, message));
        return None;
    }
    Some(LayerRecord {
        namespace: String::new(),
        chain_id: format!("sha256:{chain}"),
        dir,
    })
}
