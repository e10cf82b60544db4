//! Image layers from `image/overlay2/layerdb/sha256/<chain>/cache-id`.

use std::path::Path;

use super::files::{is_real_dir, listed_ids, read_id};
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
    let chains = listed_ids(&layerdb, problems);
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

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::ProblemKind;

    const CHAIN: &str = "1111111111111111111111111111111111111111111111111111111111111111";

    /// A Docker root whose layer DB has one entry with `cache_id`; returns
    /// the root and the entry's `cache-id` file.
    fn root_with_cache_id(cache_id: &str) -> (tempfile::TempDir, PathBuf) {
        let root = tempfile::tempdir().unwrap();
        let entry = image_dir(root.path()).join("layerdb/sha256").join(CHAIN);
        fs::create_dir_all(&entry).unwrap();
        fs::write(entry.join("cache-id"), cache_id).unwrap();
        (root, entry.join("cache-id"))
    }

    fn image_dir(root: &Path) -> PathBuf {
        root.join("image/overlay2")
    }

    /// The (kind, source) of each problem reading the layers under `root`,
    /// which must all be Docker's.
    fn problems(root: &Path) -> Vec<(ProblemKind, String)> {
        let mut problems = Vec::new();
        assert!(discover(root, &image_dir(root), &mut problems).is_empty());
        assert!(problems.iter().all(|p| p.reader == READER), "{problems:?}");
        problems.into_iter().map(|p| (p.kind, p.source)).collect()
    }

    #[test]
    fn a_cache_id_naming_no_directory_is_missing() {
        let (root, cache_id) = root_with_cache_id(&"2".repeat(64));
        let source = cache_id.display().to_string();
        assert_eq!(problems(root.path()), [(ProblemKind::Missing, source)]);
    }

    #[test]
    fn a_cache_id_that_is_no_id_is_malformed() {
        let (root, cache_id) = root_with_cache_id("../../etc");
        let source = cache_id.display().to_string();
        assert_eq!(problems(root.path()), [(ProblemKind::Malformed, source)]);
    }

    #[test]
    fn a_layer_db_that_cannot_be_listed_is_unreadable() {
        let root = tempfile::tempdir().unwrap();
        let layerdb = image_dir(root.path()).join("layerdb/sha256");
        fs::create_dir_all(layerdb.parent().unwrap()).unwrap();
        fs::write(&layerdb, b"not a directory").unwrap();
        let source = layerdb.display().to_string();
        assert_eq!(problems(root.path()), [(ProblemKind::Unreadable, source)]);
    }
}
