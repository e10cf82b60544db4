//! Containers from `containers.json` (and the volatile lists): their
//! writable layer, and for CRI-O's the pod they belong to.
//!
//! The pod comes from the annotations of the container's OCI spec
//! (`<run root>/overlay-containers/<id>/userdata/config.json`, which CRI-O
//! writes), else from the kubelet's container name
//! `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>` CRI-O gives it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::store::{checked_id, records, RawContainer, StoreDirs};
use super::READER;
use crate::runtime::docker::is_real_dir;
use crate::runtime::{ContainerRecord, PodRef, Problem, ProblemKind};
use crate::small_file;

/// The largest OCI spec read for its annotations.
const MAX_SPEC_BYTES: u64 = 4 << 20;

/// The fields of a container's `metadata` that matter here (CRI-O's and
/// Podman's records share them).
#[derive(Deserialize, Default)]
struct Metadata {
    #[serde(rename = "image-name", default)]
    image_name: String,
    #[serde(default)]
    name: String,
}

/// A container, with the ID of its writable layer.
#[derive(Debug, Clone)]
pub struct Found {
    /// Its record.
    pub record: ContainerRecord,
    /// Its writable layer's ID.
    pub layer: String,
}

/// Every container of the primary `store`, sorted by ID.
pub fn discover(store: &StoreDirs, problems: &mut Vec<Problem>) -> Vec<Found> {
    let mut found: Vec<Found> = Vec::new();
    for file in store.container_files() {
        for raw in records::<RawContainer>(&file, problems) {
            let known = found.iter().any(|f| f.record.id == raw.id);
            if checked_id(&raw.id, "container", &file, problems) && !known {
                found.push(container(store, raw, &file, problems));
            }
        }
    }
    found.sort_by(|a, b| a.record.id.cmp(&b.record.id));
    found
}

fn container(
    store: &StoreDirs,
    raw: RawContainer,
    file: &Path,
    problems: &mut Vec<Problem>,
) -> Found {
    let metadata = metadata(&raw, file, problems);
    let name = raw.names.first().cloned().unwrap_or(metadata.name);
    let writable_dir = writable_dir(store, &raw, file, problems);
    let spec = store.run_root.as_ref().map(|run| {
        run.join("overlay-containers")
            .join(&raw.id)
            .join("userdata/config.json")
    });
    let pod = spec
        .and_then(|s| annotations(&s, problems))
        .and_then(|a| pod_of_annotations(&a))
        .or_else(|| pod_of_name(&name));
    let image_id = Some(&raw.image)
        .filter(|i| !i.is_empty())
        .map(|i| format!("sha256:{i}"));
    let record = ContainerRecord {
        namespace: String::new(),
        image: Some(metadata.image_name)
            .filter(|n| !n.is_empty())
            .or_else(|| image_id.clone())
            .unwrap_or_default(),
        image_id,
        pod,
        writable_dir,
        log_files: Vec::new(),
        name,
        id: raw.id,
    };
    Found {
        record,
        layer: raw.layer,
    }
}

/// The container's `metadata` document; a bad one is a problem, and the
/// record stands without it.
fn metadata(raw: &RawContainer, file: &Path, problems: &mut Vec<Problem>) -> Metadata {
    let Some(text) = raw.metadata.as_deref().filter(|m| !m.is_empty()) else {
        return Metadata::default();
    };
    serde_json::from_str(text).unwrap_or_else(|e| {
        let message = format!("container {}: its metadata is not JSON: {e}", raw.id);
        problems.push(READER.problem(ProblemKind::Malformed, file.display().to_string(), message));
        Metadata::default()
    })
}

/// `<graph root>/overlay/<layer>/diff`, when the layer is named and there.
fn writable_dir(
    store: &StoreDirs,
    raw: &RawContainer,
    file: &Path,
    problems: &mut Vec<Problem>,
) -> Option<PathBuf> {
    if !checked_id(&raw.layer, "writable layer", file, problems) {
        return None;
    }
    let dir = store.diff_dir(&raw.layer);
    if !is_real_dir(&dir) {
        let message = format!(
            "container {}: its writable layer {} is not there",
            raw.id,
            dir.display()
        );
        problems.push(READER.problem(ProblemKind::Missing, file.display().to_string(), message));
        return None;
    }
    Some(dir)
}

/// The annotations of the OCI spec at `path`; none when there is no spec
/// (Podman's stopped containers have none), a problem when it is bad.
fn annotations(path: &Path, problems: &mut Vec<Problem>) -> Option<HashMap<String, String>> {
    #[derive(Deserialize)]
    struct Spec {
        #[serde(default)]
        annotations: HashMap<String, String>,
    }
    let bytes = match small_file::read(path, MAX_SPEC_BYTES) {
        Ok(bytes) => bytes?,
        Err(e) => {
            problems.push(READER.problem_from(path.display().to_string(), &e));
            return None;
        }
    };
    match serde_json::from_slice::<Spec>(&bytes) {
        Ok(spec) => Some(spec.annotations),
        Err(e) => {
            let message = format!("invalid JSON: {e}");
            problems.push(READER.problem(
                ProblemKind::Malformed,
                path.display().to_string(),
                message,
            ));
            None
        }
    }
}

/// The pod named by CRI-O's annotations, if they name one.
fn pod_of_annotations(annotations: &HashMap<String, String>) -> Option<PodRef> {
    let get = |key: &str| annotations.get(key).cloned().unwrap_or_default();
    annotations
        .contains_key("io.kubernetes.pod.name")
        .then(|| PodRef {
            pod: get("io.kubernetes.pod.name"),
            namespace: get("io.kubernetes.pod.namespace"),
            uid: get("io.kubernetes.pod.uid"),
            container: get("io.kubernetes.container.name"),
        })
}

/// The pod in a kubelet container name, `k8s_<container>_<pod>_<namespace>_<uid>_<attempt>`
/// (none of the parts can hold `_`).
fn pod_of_name(name: &str) -> Option<PodRef> {
    let parts: Vec<&str> = name.strip_prefix("k8s_")?.split('_').collect();
    let [container, pod, namespace, uid, attempt] = parts[..] else {
        return None;
    };
    attempt.parse::<u32>().ok()?;
    Some(PodRef {
        pod: pod.to_string(),
        namespace: namespace.to_string(),
        uid: uid.to_string(),
        container: container.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kubelet_container_name_gives_its_pod() {
        let pod = pod_of_name("k8s_nginx_web-7d9f_shop_0b0e6c1a-1111_3").unwrap();
        assert_eq!(
            pod,
            PodRef {
                pod: "web-7d9f".into(),
                namespace: "shop".into(),
                uid: "0b0e6c1a-1111".into(),
                container: "nginx".into(),
            }
        );
        assert_eq!(pod_of_name("k8s_a_b_c_d_x"), None);
        assert_eq!(pod_of_name("k8s_a_b_c_d"), None);
        assert_eq!(pod_of_name("web"), None);
    }
}
