//! What pulling an image would cost on this node, and the kubelet's verdict
//! on it, before anything is pulled (`headroom check-pull`).
//!
//! The layers whose chain ID the chosen store already has cost nothing. Each
//! missing layer costs its compressed blob (containerd keeps it in its
//! content store; Docker needs it while pulling and deletes it after
//! unpacking) plus the unpacked size, estimated with the ratio the node's
//! own images show. The filesystem the store lives on (the image root the
//! runtime reported, as `status` judges it) is then judged with those bytes
//! incoming, by the same verdict code as `status`. One-shot: no trend.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use serde::Serialize;

use super::signals::{self, Incoming};
use super::Scanned;
use crate::model::{Image, Prediction, Signal, Status};
use crate::predict::history::History;
use crate::predict::pull::{unpack_ratio, PullCost};
use crate::registry::ResolvedImage;
use crate::runtime::{self, RuntimeKind};

/// The store a pull goes to, with its namespace (empty for Docker).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The runtime whose store receives the image.
    pub runtime: RuntimeKind,
    /// Its containerd namespace; empty for Docker.
    pub namespace: String,
}

impl Target {
    /// `runtime` when asked for; else the CRI runtime among those read
    /// (see [`runtime::cri_runtime`]), else the preferred one. `namespace`
    /// applies to namespaced runtimes only (containerd).
    pub fn choose(status: &Status, runtime: Option<RuntimeKind>, namespace: &str) -> Target {
        let has_images = |kind| status.images.iter().any(|i| i.runtime == kind);
        let read = status.runtimes.iter().filter(|r| r.found);
        let runtime = runtime
            .or_else(|| runtime::cri_runtime(read.map(|r| (r.runtime, has_images(r.runtime)))))
            .unwrap_or_default();
        Target {
            runtime,
            namespace: if runtime.runtime().namespaced() {
                namespace.to_string()
            } else {
                String::new()
            },
        }
    }

    /// `containerd/k8s.io` or `docker`.
    pub fn label(&self) -> String {
        if self.namespace.is_empty() {
            self.runtime.as_str().to_string()
        } else {
            format!("{}/{}", self.runtime.as_str(), self.namespace)
        }
    }

    fn holds(&self, runtime: RuntimeKind, namespace: &str) -> bool {
        self.runtime == runtime && self.namespace == namespace
    }
}

/// One layer of the image and whether the store already has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedLayer {
    /// The compressed blob's digest.
    pub digest: String,
    /// Its size in the registry.
    pub compressed_bytes: u64,
    /// The layer's chain ID once unpacked.
    pub chain_id: String,
    /// Whether the store has it already (it costs nothing).
    pub present: bool,
}

/// The answer: what the pull brings, what it costs, and the verdicts.
#[derive(Debug, Clone, PartialEq)]
pub struct PullCheck {
    /// The store the pull goes to.
    pub target: Target,
    /// The image (its config digest) is already in the store.
    pub image_present: bool,
    /// The image's layers, base first.
    pub layers: Vec<PlannedLayer>,
    /// What the missing layers cost.
    pub cost: PullCost,
    /// Unpacked bytes per compressed byte used for the estimate.
    pub unpack_ratio: f64,
    /// Where that ratio came from, in words.
    pub unpack_ratio_source: String,
    /// The verdicts of the filesystems the pull lands on (all of them when
    /// it lands on none the kubelet watches).
    pub prediction: BTreeMap<Signal, Prediction>,
}

/// What pulling `image` (named `name`, for the verdict's sentence) into
/// `target` would cost on the `node`, and the verdicts with it incoming.
pub fn check_pull(image: &ResolvedImage, name: &str, node: &Scanned, target: Target) -> PullCheck {
    let status = &node.status;
    let ratio = unpack_ratio(&status.images);
    let Plan {
        image_present,
        layers,
        cost,
    } = plan(image, status, &target, ratio);
    let mountpoint = store_mountpoint(status, target.runtime);
    let pulls = [name.to_string()];
    let incoming = Incoming {
        mountpoint: mountpoint.as_deref(),
        bytes: cost.total(),
        pulls: &pulls,
        unknown_size: &[],
    };
    PullCheck {
        prediction: affected(node, &incoming),
        target,
        image_present,
        layers,
        cost,
        unpack_ratio: ratio,
        unpack_ratio_source: ratio_source(&status.images),
    }
}

/// What the pull would bring: the layers, and what they cost.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    image_present: bool,
    layers: Vec<PlannedLayer>,
    cost: PullCost,
}

/// Which layers `target` already has and what the rest cost at `ratio`. A
/// layer is there when its chain ID is a committed layer of the store; from
/// the first missing one up, every layer must be downloaded and unpacked.
fn plan(image: &ResolvedImage, status: &Status, target: &Target, ratio: f64) -> Plan {
    let image_present = status
        .images
        .iter()
        .any(|i| target.holds(i.runtime, &i.namespace) && i.id == image.config_digest);
    let have: HashSet<&str> = status
        .layers
        .iter()
        .filter(|l| target.holds(l.runtime, &l.namespace))
        .map(|l| l.id.as_str())
        .collect();
    let first_missing = if image_present {
        image.layers.len()
    } else {
        image
            .chain_ids
            .iter()
            .position(|c| !have.contains(c.as_str()))
            .unwrap_or(image.chain_ids.len())
    };
    let layers: Vec<PlannedLayer> = image
        .layers
        .iter()
        .zip(&image.chain_ids)
        .enumerate()
        .map(|(i, (layer, chain_id))| PlannedLayer {
            digest: layer.digest.clone(),
            compressed_bytes: layer.compressed_size,
            chain_id: chain_id.clone(),
            present: i < first_missing,
        })
        .collect();
    let compressed = layers
        .iter()
        .filter(|l| !l.present)
        .fold(0u64, |sum, l| sum.saturating_add(l.compressed_bytes));
    Plan {
        image_present,
        layers,
        cost: PullCost::of(compressed, 0, ratio),
    }
}

/// Where the unpack ratio came from, in words.
fn ratio_source(images: &[Image]) -> String {
    let teachers = images
        .iter()
        .filter(|i| i.content_bytes > 0 && i.disk_bytes > 0)
        .count();
    match teachers {
        0 => "the default: no image on this node still has its compressed blobs".to_string(),
        1 => "learned from the 1 image on this node with its compressed blobs".to_string(),
        n => format!("learned from the {n} images on this node with their compressed blobs"),
    }
}

/// The mount point of the filesystem the store writes to: that of the image
/// root the runtime reported, else the imagefs.
fn store_mountpoint(status: &Status, runtime: RuntimeKind) -> Option<String> {
    status
        .runtimes
        .iter()
        .find(|r| r.runtime == runtime)
        .and_then(|r| r.image_root.as_deref())
        .and_then(|root| crate::host::filesystem_of(std::path::Path::new(root)).ok())
        .map(|fs| fs.mountpoint.display().to_string())
        .or_else(|| {
            status
                .filesystems
                .iter()
                .find(|fs| fs.signal == Signal::Imagefs)
                .map(|fs| fs.mountpoint.clone())
        })
}

/// The verdicts of the filesystems the pull lands on (all of them when it
/// lands on none the kubelet watches).
fn affected(node: &Scanned, incoming: &Incoming<'_>) -> BTreeMap<Signal, Prediction> {
    let status = &node.status;
    let mut all = signals::predict(
        &status.filesystems,
        &status.images,
        &status.layers,
        &node.kubelet,
        &History::default(),
        SystemTime::now(),
        incoming,
    );
    let hit: Vec<Signal> = status
        .filesystems
        .iter()
        .filter(|fs| incoming.mountpoint == Some(fs.mountpoint.as_str()))
        .map(|fs| fs.signal)
        .collect();
    if !hit.is_empty() {
        all.retain(|signal, _| hit.contains(signal));
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Layer;
    use crate::registry::{self, Platform, ResolvedLayer};

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    /// An image of three layers of 100, 200 and 400 compressed bytes.
    fn resolved() -> ResolvedImage {
        let diff_ids: Vec<String> = (1..=3).map(digest).collect();
        ResolvedImage {
            reference: "127.0.0.1:5000/hr/app:1".parse().unwrap(),
            index_digest: None,
            manifest_digest: digest(0xa0),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            config_digest: digest(0xc0),
            platform: Platform::default(),
            layers: diff_ids
                .iter()
                .zip([100, 200, 400])
                .enumerate()
                .map(|(i, (diff_id, size))| ResolvedLayer {
                    digest: digest(0xb0 + i as u8),
                    compressed_size: size,
                    diff_id: diff_id.clone(),
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                    annotations: Default::default(),
                })
                .collect(),
            chain_ids: registry::chain_ids(&diff_ids),
        }
    }

    fn layer(runtime: RuntimeKind, namespace: &str, id: &str) -> Layer {
        Layer {
            runtime,
            namespace: namespace.into(),
            id: id.into(),
            path: String::new(),
            disk_bytes: 0,
            apparent_bytes: 0,
            inodes: 0,
            images: 1,
        }
    }

    fn status(layers: Vec<Layer>, images: Vec<Image>) -> Status {
        let mut status: Status = serde_json::from_value(serde_json::json!({
            "schema": 1, "node": "n", "generated_at": "2026-05-01T12:00:00Z", "source": "scan",
            "thresholds_source": "", "filesystems": [], "images": [], "layers": [],
            "containers": [], "pulls": [], "reclaimable_bytes": 0,
            "reclaimable_by_runtime": {}, "prediction": {}, "runtimes": [],
            "problems": [], "scan": {"duration_seconds": 0.0, "files": 0, "errors": 0,
            "errors_by_kind": {}, "error_samples": []}
        }))
        .unwrap();
        status.layers = layers;
        status.images = images;
        status
    }

    fn k8s() -> Target {
        Target {
            runtime: RuntimeKind::Containerd,
            namespace: "k8s.io".into(),
        }
    }

    fn presence(plan: &Plan) -> Vec<bool> {
        plan.layers.iter().map(|l| l.present).collect()
    }

    #[test]
    fn a_present_prefix_costs_nothing() {
        let image = resolved();
        let c = &image.chain_ids;
        let layers = vec![
            layer(RuntimeKind::Containerd, "k8s.io", &c[0]),
            layer(RuntimeKind::Containerd, "k8s.io", &c[1]),
            // The same chain in another store does not count.
            layer(RuntimeKind::Containerd, "moby", &c[2]),
            layer(RuntimeKind::Docker, "", &c[2]),
        ];
        let plan = plan(&image, &status(layers, vec![]), &k8s(), 2.0);
        assert_eq!(presence(&plan), [true, true, false]);
        assert!(!plan.image_present);
        assert_eq!(plan.cost, PullCost::of(400, 0, 2.0));
        assert_eq!(plan.cost.total(), 1200);
    }

    #[test]
    fn everything_above_a_missing_middle_layer_is_pulled() {
        // Layer 3's chain ID alone (as if left over) does not spare it:
        // its parent must be unpacked first, so it is unpacked again.
        let image = resolved();
        let c = &image.chain_ids;
        let layers = vec![
            layer(RuntimeKind::Containerd, "k8s.io", &c[0]),
            layer(RuntimeKind::Containerd, "k8s.io", &c[2]),
        ];
        let plan = plan(&image, &status(layers, vec![]), &k8s(), 2.5);
        assert_eq!(presence(&plan), [true, false, false]);
        assert_eq!(plan.cost.download_bytes, 600);
        assert_eq!(plan.cost.unpack_bytes, 1500);
    }

    #[test]
    fn nothing_present_costs_every_layer() {
        let image = resolved();
        let plan = plan(&image, &status(vec![], vec![]), &k8s(), 1.0);
        assert_eq!(presence(&plan), [false, false, false]);
        assert_eq!(plan.cost.total(), 1400);
        assert_eq!(
            plan.layers[2].chain_id, image.chain_ids[2],
            "each layer carries its chain ID"
        );
    }

    #[test]
    fn an_image_already_present_costs_nothing() {
        let image = resolved();
        let mut present: Image = serde_json::from_value(serde_json::json!({
            "runtime": "docker", "namespace": "", "id": image.config_digest,
            "refs": [], "created": null, "disk_bytes": 0, "apparent_bytes": 0,
            "unique_disk_bytes": 0, "unique_apparent_bytes": 0, "shared_disk_bytes": 0,
            "shared_apparent_bytes": 0, "content_bytes": 0, "unique_content_bytes": 0,
            "containers": 0, "in_use": false, "pinned": false, "layers": []
        }))
        .unwrap();
        let docker = Target {
            runtime: RuntimeKind::Docker,
            namespace: String::new(),
        };
        let plan_for = |image_record: &Image, target: &Target| {
            plan(
                &image,
                &status(vec![], vec![image_record.clone()]),
                target,
                2.5,
            )
        };
        let in_docker = plan_for(&present, &docker);
        assert!(in_docker.image_present);
        assert_eq!(presence(&in_docker), [true, true, true]);
        assert_eq!(in_docker.cost.total(), 0);
        // Present in Docker only: containerd still pulls it all.
        assert_eq!(plan_for(&present, &k8s()).cost.total(), 700 + 1750);
        present.runtime = RuntimeKind::Containerd;
        present.namespace = "k8s.io".into();
        assert_eq!(plan_for(&present, &k8s()).cost.total(), 0);
    }
}
