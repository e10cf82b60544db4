//! What pulling an image would cost on this node, and the kubelet's verdict
//! on it, before anything is pulled (`headroom check-pull`).
//!
//! The layers whose chain ID the chosen store already has cost nothing
//! ([`plan`]). Each missing layer costs its compressed blob (containerd keeps
//! it in its content store; Docker needs it while pulling and deletes it
//! after unpacking) plus what it takes unpacked, which the asker measured
//! per layer from the registry ([`crate::registry::sizing`]) and gives in
//! its [`Question`]. The pulls
//! already in flight on the node count too: a layer one of them is bringing
//! is counted once, with that pull. The filesystem the store lives on (the
//! image root the runtime reported, as `status` judges it) is then judged
//! with all those bytes and inodes incoming, by the same verdict code as
//! `status` ([`judge`]). One-shot: no trend.

use std::collections::{BTreeMap, HashSet};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::signals::{self, Incoming};
use super::Scanned;
use crate::digest;
use crate::model::{Image, Prediction, Pull, Signal, Status};
use crate::predict::history::History;
use crate::predict::pull::{unpack_ratio, PullCost};
use crate::registry::sizing::{Fallback, Unpacked};
use crate::runtime::{self, RuntimeKind};
use crate::what_if::Question;

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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedLayer {
    /// The compressed blob's digest.
    pub digest: String,
    /// Its size in the registry.
    pub compressed_bytes: u64,
    /// The layer's chain ID once unpacked.
    pub chain_id: String,
    /// Whether the store has it already (it costs nothing).
    pub present: bool,
    /// Whether a pull in flight is bringing it already (it is counted
    /// with that pull).
    pub in_flight: bool,
    /// What it adds unpacked, for a layer the store lacks; `None` when
    /// present.
    pub unpacked: Option<Unpacked>,
}

impl PlannedLayer {
    /// Whether this pull must bring it: not present, nor in flight.
    pub fn to_pull(&self) -> bool {
        !self.present && !self.in_flight
    }
}

/// A pull already in flight on the node, and what it will still add.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InFlightPull {
    /// The pull's name as `status` lists it.
    pub reference: String,
    /// Compressed bytes it still has to download.
    pub remaining_download_bytes: u64,
    /// What its layers not yet unpacked will take unpacked.
    pub unpack_bytes: u64,
    /// Inodes they will take (0 when unknown).
    pub inodes: u64,
    /// How the unpacked figures were found.
    pub method: String,
    /// The blobs of the layers it is still bringing, when known.
    #[serde(skip)]
    pub layer_digests: Vec<String>,
}

impl InFlightPull {
    /// `pull` as `status` sized it: its layers not yet unpacked at the
    /// node's unpack ratio, inodes unknown; `method` is left for the caller
    /// to say.
    pub fn at_node_ratio(pull: &Pull) -> InFlightPull {
        InFlightPull {
            reference: pull.reference.clone(),
            remaining_download_bytes: pull.remaining_download_bytes,
            unpack_bytes: pull.unpack_bytes,
            inodes: 0,
            method: String::new(),
            layer_digests: Vec::new(),
        }
    }

    /// All the bytes it still adds.
    pub fn bytes(&self) -> u64 {
        self.remaining_download_bytes
            .saturating_add(self.unpack_bytes)
    }
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
    /// What the layers this pull brings cost.
    pub cost: PullCost,
    /// Inodes they take.
    pub inodes: u64,
    /// The pulls in flight, counted in the verdict.
    pub in_flight: Vec<InFlightPull>,
    /// The verdicts of the filesystems the pull lands on (all of them when
    /// it lands on none the kubelet watches).
    pub prediction: BTreeMap<Signal, Prediction>,
}

/// What the pull would bring: which layers the store has, and what the
/// others cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The image (its config digest) is already in the store.
    pub image_present: bool,
    /// The image's layers, base first.
    pub layers: Vec<PlannedLayer>,
}

/// Which layers of the image `question` describes `target` already has. A
/// layer is there when its chain ID is a committed layer of the store; from
/// the first missing one up, every layer must be downloaded and unpacked,
/// and costs what the question says it takes unpacked. The layers end at the
/// first whose diff ID is not a sha256 digest (it has no chain ID).
pub fn plan(question: &Question, status: &Status, target: &Target) -> Plan {
    let image_present = status
        .images
        .iter()
        .any(|i| target.holds(i.runtime, &i.namespace) && i.id == question.config_digest);
    let have: HashSet<&str> = status
        .layers
        .iter()
        .filter(|l| target.holds(l.runtime, &l.namespace))
        .map(|l| l.id.as_str())
        .collect();
    let diff_ids: Vec<String> = question.layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain_ids = digest::chain_ids(&diff_ids);
    let first_missing = if image_present {
        question.layers.len()
    } else {
        chain_ids
            .iter()
            .position(|c| !have.contains(c.as_str()))
            .unwrap_or(chain_ids.len())
    };
    let layers = question
        .layers
        .iter()
        .zip(chain_ids)
        .enumerate()
        .map(|(i, (layer, chain_id))| {
            let present = i < first_missing;
            PlannedLayer {
                digest: layer.digest.clone(),
                compressed_bytes: layer.compressed_bytes,
                chain_id,
                present,
                in_flight: false,
                unpacked: (!present).then(|| layer.unpacked.clone()),
            }
        })
        .collect();
    Plan {
        image_present,
        layers,
    }
}

/// The sized pulls in flight in `status` (a Docker pull has no size and is
/// left out), each measured by `measure`, else at the node's unpack ratio
/// (as `status` sizes it), saying why `measure` could not.
pub fn pulls_in_flight<E: std::fmt::Display>(
    status: &Status,
    measure: impl Fn(&Pull) -> Result<InFlightPull, E>,
) -> Vec<InFlightPull> {
    let ratio = unpack_ratio(&status.images);
    status
        .pulls
        .iter()
        .filter(|p| p.total_bytes > 0)
        .map(|p| {
            measure(p).unwrap_or_else(|e| InFlightPull {
                method: format!("{ratio:.2} × compressed, the node's unpack ratio ({e:#})"),
                ..InFlightPull::at_node_ratio(p)
            })
        })
        .collect()
}

/// What to estimate a layer with when its blob teaches nothing: the
/// node's own unpack ratio, and the inodes per byte its layers show.
pub fn fallback(status: &Status) -> Fallback {
    let (inodes, disk) = status.layers.iter().fold((0u128, 0u128), |(i, d), l| {
        (i + u128::from(l.inodes), d + u128::from(l.disk_bytes))
    });
    Fallback {
        ratio: unpack_ratio(&status.images),
        ratio_source: ratio_source(&status.images),
        inodes_per_byte: if disk == 0 {
            0.0
        } else {
            inodes as f64 / disk as f64
        },
    }
}

/// The verdicts with `plan`'s layers (measured) and the pulls `in_flight`
/// incoming into `target`'s filesystem. A layer an in-flight pull brings
/// is counted with that pull only.
pub fn judge(
    mut plan: Plan,
    name: &str,
    node: &Scanned,
    target: Target,
    in_flight: Vec<InFlightPull>,
) -> PullCheck {
    let coming: HashSet<&str> = in_flight
        .iter()
        .flat_map(|p| p.layer_digests.iter().map(String::as_str))
        .collect();
    for layer in plan.layers.iter_mut().filter(|l| !l.present) {
        layer.in_flight = coming.contains(layer.digest.as_str());
    }
    let (cost, inodes) = cost(&plan.layers);
    let status = &node.status;
    let mountpoint = store_mountpoint(status, target.runtime);
    let mut pulls = vec![name.to_string()];
    pulls.extend(in_flight.iter().map(|p| p.reference.clone()));
    let incoming = Incoming {
        mountpoint: mountpoint.as_deref(),
        bytes: in_flight
            .iter()
            .map(InFlightPull::bytes)
            .fold(cost.total(), u64::saturating_add),
        inodes: in_flight
            .iter()
            .map(|p| p.inodes)
            .fold(inodes, u64::saturating_add),
        pulls: &pulls,
        unknown_size: &[],
    };
    PullCheck {
        prediction: affected(node, &incoming),
        target,
        image_present: plan.image_present,
        layers: plan.layers,
        cost,
        inodes,
        in_flight,
    }
}

/// What the layers this pull brings cost: their blobs, what they take
/// unpacked, and their inodes.
fn cost(layers: &[PlannedLayer]) -> (PullCost, u64) {
    layers.iter().filter(|l| l.to_pull()).fold(
        (
            PullCost {
                download_bytes: 0,
                unpack_bytes: 0,
            },
            0u64,
        ),
        |(cost, inodes), l| {
            let (disk, files) = l
                .unpacked
                .as_ref()
                .map_or((0, 0), |u| (u.disk_bytes, u.inodes));
            (
                PullCost {
                    download_bytes: cost.download_bytes.saturating_add(l.compressed_bytes),
                    unpack_bytes: cost.unpack_bytes.saturating_add(disk),
                },
                inodes.saturating_add(files),
            )
        },
    )
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

/// The allocation unit of the filesystem `runtime`'s image root is on
/// (4 KiB when it cannot be told).
pub fn block_size(status: &Status, runtime: RuntimeKind) -> u64 {
    store_root(status, runtime)
        .and_then(|root| nix::sys::statvfs::statvfs(root).ok())
        .map(|s| s.fragment_size())
        .filter(|b| *b > 0)
        .unwrap_or(4096)
}

/// The image root `runtime` reported: where its pulls land.
pub fn store_root(status: &Status, runtime: RuntimeKind) -> Option<&str> {
    status
        .runtimes
        .iter()
        .find(|r| r.runtime == runtime)
        .and_then(|r| r.image_root.as_deref())
}

/// The mount point of the filesystem the store writes to: that of the image
/// root the runtime reported, else the imagefs.
fn store_mountpoint(status: &Status, runtime: RuntimeKind) -> Option<String> {
    store_root(status, runtime)
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
    let mut all = signals::judge(
        &status.filesystems,
        &status.images,
        &status.layers,
        &node.kubelet,
        &History::default(),
        SystemTime::now(),
        incoming,
    )
    .prediction;
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
    use crate::what_if::QuestionLayer;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    /// An image of three layers of 100, 200 and 400 compressed bytes,
    /// measured as `ratio` × compressed unpacked, 10 inodes each.
    fn question(ratio: u64) -> Question {
        Question {
            schema: crate::what_if::SCHEMA,
            image: "127.0.0.1:5000/hr/app:1".into(),
            reference: "127.0.0.1:5000/hr/app:1".into(),
            index_digest: None,
            manifest_digest: digest(0xa0),
            config_digest: digest(0xc0),
            platform: "linux/amd64".into(),
            runtime: None,
            namespace: None,
            layers: (1..=3)
                .zip([100, 200, 400])
                .map(|(n, size)| QuestionLayer {
                    digest: digest(0xaf + n),
                    diff_id: digest(n),
                    compressed_bytes: size,
                    unpacked: Unpacked {
                        disk_bytes_by_block: Default::default(),
                        stream_bytes: size * ratio,
                        disk_bytes: size * ratio,
                        inodes: 10,
                        exact: true,
                        method: "test".into(),
                        fallback: None,
                    },
                })
                .collect(),
        }
    }

    fn chain_ids(question: &Question) -> Vec<String> {
        let diff_ids: Vec<String> = question.layers.iter().map(|l| l.diff_id.clone()).collect();
        digest::chain_ids(&diff_ids)
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
        let image = question(2);
        let c = &chain_ids(&image);
        let layers = vec![
            layer(RuntimeKind::Containerd, "k8s.io", &c[0]),
            layer(RuntimeKind::Containerd, "k8s.io", &c[1]),
            // The same chain in another store does not count.
            layer(RuntimeKind::Containerd, "moby", &c[2]),
            layer(RuntimeKind::Docker, "", &c[2]),
        ];
        let plan = plan(&image, &status(layers, vec![]), &k8s());
        assert_eq!(presence(&plan), [true, true, false]);
        assert!(!plan.image_present);
        let (cost, inodes) = cost(&plan.layers);
        assert_eq!(
            (cost.download_bytes, cost.unpack_bytes, inodes),
            (400, 800, 10)
        );
    }

    #[test]
    fn everything_above_a_missing_middle_layer_is_pulled() {
        // Layer 3's chain ID alone (as if left over) does not spare it:
        // its parent must be unpacked first, so it is unpacked again.
        let image = question(3);
        let c = &chain_ids(&image);
        let layers = vec![
            layer(RuntimeKind::Containerd, "k8s.io", &c[0]),
            layer(RuntimeKind::Containerd, "k8s.io", &c[2]),
        ];
        let plan = plan(&image, &status(layers, vec![]), &k8s());
        assert_eq!(presence(&plan), [true, false, false]);
        let (cost, inodes) = cost(&plan.layers);
        assert_eq!(
            (cost.download_bytes, cost.unpack_bytes, inodes),
            (600, 1800, 20)
        );
    }

    #[test]
    fn a_layer_in_flight_is_counted_with_its_pull_only() {
        let image = question(2);
        let node = Scanned {
            status: status(vec![], vec![]),
            kubelet: crate::kubelet::KubeletConfig::defaults(),
        };
        let plan = plan(&image, &node.status, &k8s());
        let other = InFlightPull {
            reference: "127.0.0.1:5000/hr/other@sha256:ab".into(),
            remaining_download_bytes: 50,
            unpack_bytes: 1000,
            inodes: 7,
            method: "test".into(),
            layer_digests: vec![image.layers[2].digest.clone()],
        };
        let check = judge(plan, "app:1", &node, k8s(), vec![other]);
        let flags: Vec<bool> = check.layers.iter().map(|l| l.in_flight).collect();
        assert_eq!(flags, [false, false, true]);
        assert_eq!(
            (
                check.cost.download_bytes,
                check.cost.unpack_bytes,
                check.inodes
            ),
            (300, 600, 20)
        );
    }

    #[test]
    fn nothing_present_costs_every_layer() {
        let image = question(1);
        let plan = plan(&image, &status(vec![], vec![]), &k8s());
        assert_eq!(presence(&plan), [false, false, false]);
        assert_eq!(cost(&plan.layers).0.total(), 1400);
        assert_eq!(
            plan.layers[2].chain_id,
            chain_ids(&image)[2],
            "each layer carries its chain ID"
        );
    }

    #[test]
    fn an_image_already_present_costs_nothing() {
        let image = question(2);
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
        let total = |image_record: &Image, target: &Target| {
            let plan = plan(&image, &status(vec![], vec![image_record.clone()]), target);
            (plan.image_present, cost(&plan.layers).0.total())
        };
        assert_eq!(total(&present, &docker), (true, 0));
        // Present in Docker only: containerd still pulls it all.
        assert_eq!(total(&present, &k8s()), (false, 700 + 1400));
        present.runtime = RuntimeKind::Containerd;
        present.namespace = "k8s.io".into();
        assert_eq!(total(&present, &k8s()), (true, 0));
    }

    #[test]
    fn present_layers_carry_no_unpacked_and_a_foreign_diff_id_ends_the_layers() {
        let mut image = question(2);
        let c = chain_ids(&image);
        let layers = vec![layer(RuntimeKind::Containerd, "k8s.io", &c[0])];
        image.layers[2].diff_id = "md5:x".into();
        let plan = plan(&image, &status(layers, vec![]), &k8s());
        assert_eq!(presence(&plan), [true, false]);
        assert_eq!(plan.layers[0].unpacked, None);
        assert_eq!(
            plan.layers[1].unpacked,
            Some(image.layers[1].unpacked.clone())
        );
    }

    #[test]
    fn pulls_in_flight_are_measured_or_said_why_at_the_node_ratio() {
        let pull = |reference: &str, total_bytes: u64| -> Pull {
            serde_json::from_value(serde_json::json!({
                "reference": reference, "offset_bytes": 0, "total_bytes": total_bytes,
                "remaining_download_bytes": 70, "unpack_bytes": 140
            }))
            .unwrap()
        };
        let mut node = status(vec![], vec![]);
        node.pulls = vec![pull("a", 100), pull("docker", 0), pull("b", 100)];
        let pulls = pulls_in_flight(&node, |p| {
            if p.reference == "a" {
                Ok(InFlightPull {
                    method: "measured".into(),
                    unpack_bytes: 999,
                    ..InFlightPull::at_node_ratio(p)
                })
            } else {
                Err("no registry")
            }
        });
        let got: Vec<(&str, u64, u64)> = pulls
            .iter()
            .map(|p| {
                (
                    p.reference.as_str(),
                    p.remaining_download_bytes,
                    p.unpack_bytes,
                )
            })
            .collect();
        assert_eq!(got, [("a", 70, 999), ("b", 70, 140)]);
        assert_eq!(pulls[0].method, "measured");
        assert!(
            pulls[1]
                .method
                .ends_with("the node's unpack ratio (no registry)"),
            "{}",
            pulls[1].method
        );
    }

    #[test]
    fn the_fallback_learns_inodes_per_byte_from_the_node_layers() {
        let mut l = layer(RuntimeKind::Containerd, "k8s.io", "a");
        l.disk_bytes = 4000;
        l.inodes = 2;
        let f = fallback(&status(vec![l], vec![]));
        assert_eq!(f.inodes_per_byte, 0.0005);
        assert_eq!(fallback(&status(vec![], vec![])).inodes_per_byte, 0.0);
    }
}
