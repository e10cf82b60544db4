//! Images from `image/overlay2/imagedb` and their names from `repositories.json`.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io;
use std::path::Path;
use std::time::SystemTime;

use serde::Deserialize;

use super::files::{listed_ids, parse_time, read_addressed_json, read_json, read_line};
use super::READER;
use crate::runtime::{ImageRecord, Problem, ProblemKind};

/// `repositories.json`: repository → (reference → image ID).
#[derive(Deserialize)]
struct Repositories {
    #[serde(rename = "Repositories", default)]
    repositories: BTreeMap<String, BTreeMap<String, String>>,
}

/// The fields of an image config that matter here.
#[derive(Deserialize)]
struct ImageConfig {
    #[serde(default)]
    created: Option<String>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// Every image in the image DB, with its names and the chain IDs of its
/// layers that are in `layers`, sorted by ID.
pub(super) fn discover(
    image_dir: &Path,
    layers: &HashSet<&str>,
    problems: &mut Vec<Problem>,
) -> Vec<ImageRecord> {
    let imagedb = image_dir.join("imagedb");
    let content = imagedb.join("content").join("sha256");
    let ids = listed_ids(&content, problems);
    let mut refs = read_refs(&image_dir.join("repositories.json"), ids.len(), problems);
    let images: Vec<ImageRecord> = ids
        .iter()
        .map(|hex| {
            let mut image = image(&imagedb, hex, layers, problems);
            image.refs = refs
                .remove(&image.id)
                .unwrap_or_default()
                .into_iter()
                .collect();
            image
        })
        .collect();
    for (id, names) in refs {
        let names: Vec<String> = names.into_iter().collect();
        let message = format!(
            "{} name image {id}, which is not in the image DB",
            names.join(", ")
        );
        let source = image_dir.join("repositories.json");
        problems.push(READER.problem(ProblemKind::Missing, source.display().to_string(), message));
    }
    images
}

/// Image ID → its names, from `repositories.json` (absent = no names,
/// as dockerd reads it; said when the image DB holds `images` > 0, whose
/// names are then lost).
fn read_refs(
    path: &Path,
    images: usize,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, BTreeSet<String>> {
    let repos = match read_json::<Repositories>(path) {
        Ok(repos) => repos.repositories,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if images > 0 {
                let message = format!(
                    "missing while the image DB holds {images} images: they show without names"
                );
                problems.push(READER.problem(
                    ProblemKind::Missing,
                    path.display().to_string(),
                    message,
                ));
            }
            BTreeMap::new()
        }
        Err(e) => {
            let message = format!("image names unknown: {e}");
            let kind = ProblemKind::of_io(&e);
            problems.push(READER.problem(kind, path.display().to_string(), message));
            BTreeMap::new()
        }
    };
    let mut by_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, id) in repos.into_values().flatten() {
        by_id.entry(id).or_default().insert(name);
    }
    by_id
}

/// The image `hex`, with as much as its config and metadata tell.
fn image(
    imagedb: &Path,
    hex: &str,
    layers: &HashSet<&str>,
    problems: &mut Vec<Problem>,
) -> ImageRecord {
    let config_path = imagedb.join("content").join("sha256").join(hex);
    let source = config_path.display().to_string();
    let config = read_addressed_json::<ImageConfig>(&config_path, hex)
        .map_err(|e| {
            let message = format!("image layers unknown: {e}");
            problems.push(READER.problem(ProblemKind::of_io(&e), &source, message));
        })
        .ok();
    let diff_ids = config
        .as_ref()
        .and_then(|c| c.rootfs.as_ref())
        .map_or(&[][..], |r| &r.diff_ids[..]);
    let chains = resolve_layers(diff_ids, layers, &source, problems);
    let created = last_updated(imagedb, hex, problems)
        .or_else(|| config.as_ref()?.created.as_deref().and_then(parse_time));
    ImageRecord {
        namespace: String::new(),
        id: format!("sha256:{hex}"),
        refs: Vec::new(),
        layers: chains,
        blobs: Vec::new(),
        pinned: false,
        created,
    }
}

/// The chain IDs of `diff_ids` that are in `layers`, base first; one problem
/// (on `source`) says what could not be resolved.
fn resolve_layers(
    diff_ids: &[String],
    layers: &HashSet<&str>,
    source: &str,
    problems: &mut Vec<Problem>,
) -> Vec<String> {
    let chains = crate::digest::chain_ids(diff_ids);
    if chains.len() < diff_ids.len() {
        let bad = &diff_ids[chains.len()];
        let message = format!(
            "diff_id {} ({bad:.80?}) is not a sha256 digest; only the {} layers below it are known",
            chains.len(),
            chains.len()
        );
        problems.push(READER.problem(ProblemKind::Malformed, source, message));
    }
    let (found, missing): (Vec<String>, Vec<String>) = chains
        .into_iter()
        .partition(|c| layers.contains(c.as_str()));
    if let Some(first) = missing.first() {
        let message = format!(
            "{} of {} layers are not in the layer DB (first: {first}); the image lists the {} that are",
            missing.len(),
            diff_ids.len(),
            found.len()
        );
        problems.push(READER.problem(ProblemKind::Missing, source, message));
    }
    found
}

/// `imagedb/metadata/sha256/<id>/lastUpdated`, when present and readable.
fn last_updated(imagedb: &Path, hex: &str, problems: &mut Vec<Problem>) -> Option<SystemTime> {
    let path = imagedb
        .join("metadata")
        .join("sha256")
        .join(hex)
        .join("lastUpdated");
    let text = match read_line(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            problems.push(READER.problem_from(path.display().to_string(), &e));
            return None;
        }
    };
    let time = parse_time(&text);
    if time.is_none() {
        let message = format!("{text:.80?} is not an RFC 3339 time");
        let kind = ProblemKind::Malformed;
        problems.push(READER.problem(kind, path.display().to_string(), message));
    }
    time
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;

    #[test]
    fn a_corrupt_image_config_is_malformed_and_the_image_still_listed() {
        let dir = tempfile::tempdir().unwrap();
        let hex = "3".repeat(64);
        let content = dir.path().join("imagedb/content/sha256");
        fs::create_dir_all(&content).unwrap();
        fs::write(content.join(&hex), b"{not json").unwrap();
        fs::write(
            dir.path().join("repositories.json"),
            br#"{"Repositories":{}}"#,
        )
        .unwrap();
        let mut problems = Vec::new();
        let images = discover(dir.path(), &HashSet::new(), &mut problems);
        assert_eq!(images.len(), 1);
        assert_eq!(images[0].id, format!("sha256:{hex}"));
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!((p.kind, p.reader), (ProblemKind::Malformed, READER));
        assert_eq!(p.source, content.join(&hex).display().to_string());
        assert!(p.message.starts_with("image layers unknown: "), "{p:?}");
    }
}
