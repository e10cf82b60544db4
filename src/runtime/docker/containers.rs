//! Containers from `containers/<id>/config.v2.json`, with their writable
//! layer (`layerdb/mounts/<id>/mount-id`) and json-file logs.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::files::{is_real_dir, listed_ids, read_id, read_json};
use super::READER;
use crate::runtime::{ContainerRecord, PodRef, Problem, ProblemKind};

/// The fields of `config.v2.json` that matter here.
#[derive(Deserialize, Default)]
struct ContainerConfig {
    #[serde(rename = "ID", default)]
    id: String,
    #[serde(rename = "Name", default)]
    name: String,
    /// The image ID (`sha256:…`), Go field `ImageID`.
    #[serde(rename = "Image", default)]
    image_id: String,
    #[serde(rename = "Config", default)]
    config: Option<Spec>,
}

#[derive(Deserialize, Default)]
struct Spec {
    #[serde(rename = "Image", default)]
    image: String,
    #[serde(rename = "Labels", default)]
    labels: Option<HashMap<String, String>>,
}

/// Every container under `containers/`, sorted by ID. A container whose
/// config cannot be read is still listed (its layer and logs hold disk).
pub(super) fn discover(
    docker_root: &Path,
    image_dir: &Path,
    problems: &mut Vec<Problem>,
) -> Vec<ContainerRecord> {
    let containers = docker_root.join("containers");
    let ids = listed_ids(&containers, problems);
    let mounts = image_dir.join("layerdb").join("mounts");
    ids.into_iter()
        .map(|id| {
            let dir = containers.join(&id);
            let writable_dir = writable_dir(docker_root, &mounts.join(&id), problems);
            let log_files = log_files(&dir, &id, problems);
            let mut record = record(&dir, id, problems);
            record.writable_dir = writable_dir;
            record.log_files = log_files;
            record
        })
        .collect()
}

/// The container record as `config.v2.json` in `dir` describes it.
fn record(dir: &Path, id: String, problems: &mut Vec<Problem>) -> ContainerRecord {
    let path = dir.join("config.v2.json");
    let config = read_json::<ContainerConfig>(&path).unwrap_or_else(|e| {
        let message = format!("container {id}: name and image unknown: {e}");
        let kind = ProblemKind::of_io(&e);
        problems.push(READER.problem(kind, path.display().to_string(), message));
        ContainerConfig::default()
    });
    if !config.id.is_empty() && config.id != id {
        let message = format!("says ID {:.80?}; using the directory name {id}", config.id);
        let kind = ProblemKind::Malformed;
        problems.push(READER.problem(kind, path.display().to_string(), message));
    }
    let spec = config.config.unwrap_or_default();
    ContainerRecord {
        namespace: String::new(),
        id,
        name: config.name.trim_start_matches('/').to_string(),
        image: spec.image,
        image_id: Some(config.image_id).filter(|i| !i.is_empty()),
        pod: spec.labels.as_ref().and_then(pod_ref),
        writable_dir: None,
        log_files: Vec::new(),
    }
}

/// The pod a dockershim-era container belongs to, from its kubelet labels.
fn pod_ref(labels: &HashMap<String, String>) -> Option<PodRef> {
    let label = |key: &str| labels.get(key).cloned().unwrap_or_default();
    labels
        .contains_key("io.kubernetes.pod.name")
        .then(|| PodRef {
            pod: label("io.kubernetes.pod.name"),
            namespace: label("io.kubernetes.pod.namespace"),
            uid: label("io.kubernetes.pod.uid"),
            container: label("io.kubernetes.container.name"),
        })
}

/// `overlay2/<mount-id>/diff`, from the `mount-id` file in `mount_entry`.
fn writable_dir(
    docker_root: &Path,
    mount_entry: &Path,
    problems: &mut Vec<Problem>,
) -> Option<PathBuf> {
    let mount_id_file = mount_entry.join("mount-id");
    let source = mount_id_file.display().to_string();
    let mount_id = read_id(&mount_id_file)
        .map_err(|e| {
            problems.push(READER.problem(
                ProblemKind::of_io(&e),
                &source,
                format!("writable layer unknown: {e}"),
            ))
        })
        .ok()?;
    let dir = docker_root.join("overlay2").join(mount_id).join("diff");
    if !is_real_dir(&dir) {
        let message = format!("mount-id names {}, which is not a directory", dir.display());
        problems.push(READER.problem(ProblemKind::Missing, source, message));
        return None;
    }
    Some(dir)
}

/// The json-file log `<id>-json.log` in `dir` and its rotations
/// (`.1`, `.2.gz`, …), regular files only, sorted.
fn log_files(dir: &Path, id: &str, problems: &mut Vec<Problem>) -> Vec<PathBuf> {
    let base = format!("{id}-json.log");
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => {
            problems.push(READER.problem_from(dir.display().to_string(), &e));
            return Vec::new();
        }
    };
    let mut logs: Vec<PathBuf> = entries
        .filter_map(|entry| {
            // A listing that fails midway loses the rest: say so.
            entry
                .map_err(|e| problems.push(READER.problem_from(dir.display().to_string(), &e)))
                .ok()
        })
        .filter(|entry| {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let is_log = name
                .strip_prefix(&base)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'));
            is_log && entry.file_type().is_ok_and(|t| t.is_file())
        })
        .map(|entry| entry.path())
        .collect();
    logs.sort();
    logs
}
