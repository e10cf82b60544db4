//! Attribution: from records and measured paths to per-layer, per-image and
//! per-container figures, and what image GC could really reclaim.
//!
//! Sharing is counted the way the disk sees it: a layer is keyed by
//! (runtime, namespace, chain ID) because containerd unpacks a layer once per
//! namespace; a content blob is keyed by digest because the content store is
//! shared by all namespaces.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::model::{Container, Image, Layer, Volume};
use crate::podlogs::PodLogs;
use crate::runtime::{ContainerRecord, Discovery, ImageRecord, PodRef, RuntimeKind};
use crate::volumes::EmptyDir;
use crate::walk::Usage;

/// The attributed inventory.
#[derive(Debug, Default)]
pub struct Attribution {
    /// Images, largest first.
    pub images: Vec<Image>,
    /// Layers, largest first.
    pub layers: Vec<Layer>,
    /// Containers (and orphaned pod logs), largest first.
    pub containers: Vec<Container>,
    /// Per runtime: disk bytes freed if every unused, unpinned image were
    /// removed (runtimes share no layers or blobs, so these add up).
    pub reclaimable: BTreeMap<RuntimeKind, u64>,
}

type LayerKey<'a> = (RuntimeKind, &'a str, &'a str);

/// Attributes the bytes of `discoveries` and `pod_logs`; `size` gives the
/// measured usage of a path (zero for one that could not be measured).
pub fn attribute(
    discoveries: &[Discovery],
    pod_logs: &[PodLogs],
    size: &dyn Fn(&Path) -> Usage,
) -> Attribution {
    let layer_sizes = layer_sizes(discoveries, size);
    let blob_sizes = blob_sizes(discoveries, size);
    let users = image_users(discoveries);
    let layer_refs = count_layer_refs(discoveries);
    let blob_refs = count_blob_refs(discoveries);

    let mut images = Vec::new();
    for d in discoveries {
        for img in &d.images {
            let n = users
                .get(&(d.runtime, img.namespace.as_str(), img.id.as_str()))
                .copied();
            let sizes = ImageSizes {
                layers: &layer_sizes,
                blobs: &blob_sizes,
                layer_refs: &layer_refs,
                blob_refs: &blob_refs,
            };
            images.push(sizes.image(d.runtime, img, n.unwrap_or(0)));
        }
    }
    images.sort_by(|a, b| {
        b.disk_bytes
            .cmp(&a.disk_bytes)
            .then_with(|| a.id.cmp(&b.id))
    });

    Attribution {
        reclaimable: discoveries
            .iter()
            .map(|d| {
                let bytes = reclaimable(std::slice::from_ref(d), &users, &layer_sizes, &blob_sizes);
                (d.runtime, bytes)
            })
            .collect(),
        layers: layers(discoveries, &layer_sizes, &layer_refs),
        containers: containers(discoveries, pod_logs, size),
        images,
    }
}

fn layer_sizes<'a>(
    discoveries: &'a [Discovery],
    size: &dyn Fn(&Path) -> Usage,
) -> HashMap<LayerKey<'a>, Usage> {
    discoveries
        .iter()
        .flat_map(|d| {
            d.layers.iter().map(move |l| {
                (
                    (d.runtime, l.namespace.as_str(), l.chain_id.as_str()),
                    size(&l.dir),
                )
            })
        })
        .collect()
}

fn blob_sizes<'a>(
    discoveries: &'a [Discovery],
    size: &dyn Fn(&Path) -> Usage,
) -> HashMap<&'a str, Usage> {
    discoveries
        .iter()
        .flat_map(|d| d.blobs.iter().map(|b| (b.digest.as_str(), size(&b.path))))
        .collect()
}

/// How many images use each layer.
fn count_layer_refs(discoveries: &[Discovery]) -> HashMap<LayerKey<'_>, u64> {
    let mut refs = HashMap::new();
    for d in discoveries {
        for img in &d.images {
            for chain in dedup(&img.layers) {
                *refs
                    .entry((d.runtime, img.namespace.as_str(), chain))
                    .or_default() += 1;
            }
        }
    }
    refs
}

/// How many images reference each blob, across namespaces.
fn count_blob_refs(discoveries: &[Discovery]) -> HashMap<&str, u64> {
    let mut refs = HashMap::new();
    for img in discoveries.iter().flat_map(|d| &d.images) {
        for digest in dedup(&img.blobs) {
            *refs.entry(digest).or_default() += 1;
        }
    }
    refs
}

/// An image may list one layer twice (two identical diffs); count it once.
fn dedup(items: &[String]) -> Vec<&str> {
    let mut v: Vec<&str> = items.iter().map(String::as_str).collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// How many containers use each image, keyed (runtime, namespace, image ID).
fn image_users(discoveries: &[Discovery]) -> HashMap<(RuntimeKind, &str, &str), u64> {
    let mut users = HashMap::new();
    for d in discoveries {
        for c in &d.containers {
            if let Some(img) = image_of(&d.images, c) {
                *users
                    .entry((d.runtime, img.namespace.as_str(), img.id.as_str()))
                    .or_default() += 1;
            }
        }
    }
    users
}

/// The image a container runs: by ID, else by one of the image's names.
fn image_of<'a>(images: &'a [ImageRecord], c: &ContainerRecord) -> Option<&'a ImageRecord> {
    let same_ns = |i: &&ImageRecord| i.namespace == c.namespace;
    let by_id = c
        .image_id
        .as_deref()
        .and_then(|id| images.iter().filter(same_ns).find(|i| i.id == id));
    by_id.or_else(|| {
        images
            .iter()
            .filter(same_ns)
            .find(|i| i.refs.contains(&c.image))
    })
}

struct ImageSizes<'m, 'a> {
    layers: &'m HashMap<LayerKey<'a>, Usage>,
    blobs: &'m HashMap<&'a str, Usage>,
    layer_refs: &'m HashMap<LayerKey<'a>, u64>,
    blob_refs: &'m HashMap<&'a str, u64>,
}

impl ImageSizes<'_, '_> {
    fn image(&self, runtime: RuntimeKind, img: &ImageRecord, containers: u64) -> Image {
        let mut out = Image {
            runtime,
            namespace: img.namespace.clone(),
            id: img.id.clone(),
            refs: img.refs.clone(),
            created: img.created,
            containers,
            in_use: containers > 0,
            pinned: img.pinned,
            layers: img.layers.clone(),
            ..Image::default()
        };
        for chain in dedup(&img.layers) {
            let key = (runtime, img.namespace.as_str(), chain);
            let u = self.layers.get(&key).copied().unwrap_or_default();
            out.disk_bytes = out.disk_bytes.saturating_add(u.disk_bytes);
            out.apparent_bytes = out.apparent_bytes.saturating_add(u.apparent_bytes);
            if self.layer_refs.get(&key).copied().unwrap_or(0) <= 1 {
                out.unique_disk_bytes = out.unique_disk_bytes.saturating_add(u.disk_bytes);
                out.unique_apparent_bytes =
                    out.unique_apparent_bytes.saturating_add(u.apparent_bytes);
            }
        }
        out.shared_disk_bytes = out.disk_bytes - out.unique_disk_bytes;
        out.shared_apparent_bytes = out.apparent_bytes - out.unique_apparent_bytes;
        for digest in dedup(&img.blobs) {
            let bytes = self.blobs.get(digest).map_or(0, |u| u.disk_bytes);
            out.content_bytes = out.content_bytes.saturating_add(bytes);
            if self.blob_refs.get(digest).copied().unwrap_or(0) <= 1 {
                out.unique_content_bytes = out.unique_content_bytes.saturating_add(bytes);
            }
        }
        out
    }
}

/// Disk bytes held only by images that image GC may remove (unused and not
/// pinned): a layer or blob shared with a kept image is not freed.
fn reclaimable(
    discoveries: &[Discovery],
    users: &HashMap<(RuntimeKind, &str, &str), u64>,
    layer_sizes: &HashMap<LayerKey<'_>, Usage>,
    blob_sizes: &HashMap<&str, Usage>,
) -> u64 {
    let mut kept_layers = std::collections::HashSet::new();
    let mut kept_blobs = std::collections::HashSet::new();
    let mut freed_layers = std::collections::HashSet::new();
    let mut freed_blobs = std::collections::HashSet::new();
    for d in discoveries {
        for img in &d.images {
            let used = users.contains_key(&(d.runtime, img.namespace.as_str(), img.id.as_str()));
            let (layers, blobs) = if used || img.pinned {
                (&mut kept_layers, &mut kept_blobs)
            } else {
                (&mut freed_layers, &mut freed_blobs)
            };
            layers.extend(
                img.layers
                    .iter()
                    .map(|c| (d.runtime, img.namespace.as_str(), c.as_str())),
            );
            blobs.extend(img.blobs.iter().map(String::as_str));
        }
    }
    let layer_bytes: u64 = freed_layers
        .difference(&kept_layers)
        .map(|k| layer_sizes.get(k).map_or(0, |u| u.disk_bytes))
        .fold(0, u64::saturating_add);
    let blob_bytes: u64 = freed_blobs
        .difference(&kept_blobs)
        .map(|k| blob_sizes.get(k).map_or(0, |u| u.disk_bytes))
        .fold(0, u64::saturating_add);
    layer_bytes.saturating_add(blob_bytes)
}

fn layers(
    discoveries: &[Discovery],
    sizes: &HashMap<LayerKey<'_>, Usage>,
    refs: &HashMap<LayerKey<'_>, u64>,
) -> Vec<Layer> {
    let mut out: Vec<Layer> = discoveries
        .iter()
        .flat_map(|d| d.layers.iter().map(move |l| (d.runtime, l)))
        .map(|(runtime, l)| {
            let key = (runtime, l.namespace.as_str(), l.chain_id.as_str());
            let u = sizes.get(&key).copied().unwrap_or_default();
            Layer {
                runtime,
                namespace: l.namespace.clone(),
                id: l.chain_id.clone(),
                path: l.dir.display().to_string(),
                disk_bytes: u.disk_bytes,
                apparent_bytes: u.apparent_bytes,
                inodes: u.inodes,
                images: refs.get(&key).copied().unwrap_or(0),
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.disk_bytes
            .cmp(&a.disk_bytes)
            .then_with(|| a.id.cmp(&b.id))
    });
    out
}

fn containers(
    discoveries: &[Discovery],
    pod_logs: &[PodLogs],
    size: &dyn Fn(&Path) -> Usage,
) -> Vec<Container> {
    let log_bytes = |files: &[std::path::PathBuf]| {
        files
            .iter()
            .map(|f| size(f).disk_bytes)
            .fold(0, u64::saturating_add)
    };
    let mut unclaimed: Vec<Option<&PodLogs>> = pod_logs.iter().map(Some).collect();
    let mut out = Vec::new();
    for d in discoveries {
        for c in &d.containers {
            let pod_log = c.pod.as_ref().and_then(|p| claim_logs(&mut unclaimed, p));
            let writable = c.writable_dir.as_deref().map(size).unwrap_or_default();
            out.push(Container {
                runtime: Some(d.runtime),
                namespace: c.namespace.clone(),
                id: c.id.clone(),
                name: c.name.clone(),
                image: c.image.clone(),
                pod: c.pod.as_ref().map(|p| p.pod.clone()),
                pod_namespace: c.pod.as_ref().map(|p| p.namespace.clone()),
                writable_path: c.writable_dir.as_ref().map(|p| p.display().to_string()),
                writable_disk_bytes: writable.disk_bytes,
                writable_apparent_bytes: writable.apparent_bytes,
                log_bytes: log_bytes(&c.log_files)
                    .saturating_add(pod_log.map_or(0, |l| log_bytes(&l.files))),
            });
        }
    }
    out.extend(
        unclaimed
            .into_iter()
            .flatten()
            .map(|l| orphan_logs(l, log_bytes(&l.files))),
    );
    out.sort_by(|a, b| total(b).cmp(&total(a)).then_with(|| a.id.cmp(&b.id)));
    out
}

fn total(c: &Container) -> u64 {
    c.writable_disk_bytes.saturating_add(c.log_bytes)
}

/// Pod logs belong to the first container of that pod UID and name; restarts
/// share one log directory, so later ones get none (no double counting).
fn claim_logs<'a>(unclaimed: &mut [Option<&'a PodLogs>], pod: &PodRef) -> Option<&'a PodLogs> {
    let slot = unclaimed
        .iter_mut()
        .find(|l| l.is_some_and(|l| l.pod.uid == pod.uid && l.pod.container == pod.container))?;
    slot.take()
}

/// Each emptyDir with its size and, when a container or a log directory of
/// the same pod UID tells them, the pod's name and namespace.
pub fn volumes(
    empty_dirs: &[EmptyDir],
    discoveries: &[Discovery],
    pod_logs: &[PodLogs],
    size: &dyn Fn(&Path) -> Usage,
) -> Vec<Volume> {
    let from_containers = discoveries
        .iter()
        .flat_map(|d| &d.containers)
        .filter_map(|c| c.pod.as_ref());
    let pods: HashMap<&str, &PodRef> = from_containers
        .chain(pod_logs.iter().map(|l| &l.pod))
        .filter(|p| !p.uid.is_empty())
        .map(|p| (p.uid.as_str(), p))
        .collect();
    let mut out: Vec<Volume> = empty_dirs
        .iter()
        .map(|v| {
            let pod = pods.get(v.pod_uid.as_str());
            let u = size(&v.path);
            Volume {
                kind: "emptyDir".to_string(),
                pod_uid: v.pod_uid.clone(),
                pod: pod.map(|p| p.pod.clone()),
                pod_namespace: pod.map(|p| p.namespace.clone()),
                name: v.name.clone(),
                path: v.path.display().to_string(),
                disk_bytes: u.disk_bytes,
                apparent_bytes: u.apparent_bytes,
            }
        })
        .collect();
    out.sort_by(|a, b| {
        b.disk_bytes
            .cmp(&a.disk_bytes)
            .then_with(|| a.path.cmp(&b.path))
    });
    out
}

/// Logs of a pod container no runtime knows any more still fill the disk.
fn orphan_logs(logs: &PodLogs, bytes: u64) -> Container {
    Container {
        runtime: None,
        namespace: String::new(),
        id: String::new(),
        name: logs.pod.container.clone(),
        image: String::new(),
        pod: Some(logs.pod.pod.clone()),
        pod_namespace: Some(logs.pod.namespace.clone()),
        writable_path: None,
        writable_disk_bytes: 0,
        writable_apparent_bytes: 0,
        log_bytes: bytes,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::runtime::{BlobRecord, LayerRecord};

    fn layer(chain: &str) -> LayerRecord {
        LayerRecord {
            namespace: "k8s.io".into(),
            chain_id: chain.into(),
            dir: PathBuf::from(format!("/l/{chain}")),
        }
    }

    fn image(id: &str, layers: &[&str], blobs: &[&str]) -> ImageRecord {
        ImageRecord {
            namespace: "k8s.io".into(),
            id: id.into(),
            refs: vec![format!("reg/{id}:1")],
            layers: layers.iter().map(|s| s.to_string()).collect(),
            blobs: blobs.iter().map(|s| s.to_string()).collect(),
            pinned: false,
            created: None,
        }
    }

    fn container(id: &str, image: &str, pod: Option<PodRef>) -> ContainerRecord {
        ContainerRecord {
            namespace: "k8s.io".into(),
            id: id.into(),
            name: id.into(),
            image: format!("reg/{image}:1"),
            image_id: None,
            pod,
            writable_dir: Some(PathBuf::from(format!("/w/{id}"))),
            log_files: vec![],
        }
    }

    /// Sizes are chosen per path so each sum below can be told apart:
    /// layer a=1000, b=200, c=30; blob x=4, y=5000; writable=7; logs=11.
    fn size(p: &Path) -> Usage {
        let disk = match p.to_str().unwrap_or("") {
            "/l/a" => 1000,
            "/l/b" => 200,
            "/l/c" => 30,
            "/b/x" => 4,
            "/b/y" => 5000,
            s if s.starts_with("/w/") => 7,
            s if s.starts_with("/logs/") => 11,
            _ => 0,
        };
        Usage {
            disk_bytes: disk,
            apparent_bytes: disk / 2,
            inodes: 1,
        }
    }

    fn node() -> Discovery {
        let mut d = Discovery::new(RuntimeKind::Containerd, PathBuf::from("/snap"));
        d.layers = vec![layer("a"), layer("b"), layer("c")];
        d.blobs = vec![
            BlobRecord {
                digest: "x".into(),
                path: PathBuf::from("/b/x"),
            },
            BlobRecord {
                digest: "y".into(),
                path: PathBuf::from("/b/y"),
            },
        ];
        // one and two share base layer a and blob x; three shares nothing.
        d.images = vec![
            image("one", &["a", "b"], &["x"]),
            image("two", &["a", "c"], &["x", "y"]),
            image("three", &[], &[]),
        ];
        d
    }

    fn pod(uid: &str, container: &str) -> PodRef {
        PodRef {
            pod: "web-0".into(),
            namespace: "shop".into(),
            uid: uid.into(),
            container: container.into(),
        }
    }

    #[test]
    fn shared_and_unique_split_each_image() {
        let a = attribute(&[node()], &[], &size);
        let one = a.images.iter().find(|i| i.id == "one").unwrap();
        assert_eq!(
            (one.disk_bytes, one.unique_disk_bytes, one.shared_disk_bytes),
            (1200, 200, 1000)
        );
        assert_eq!((one.apparent_bytes, one.unique_apparent_bytes), (600, 100));
        assert_eq!((one.content_bytes, one.unique_content_bytes), (4, 0));
        let two = a.images.iter().find(|i| i.id == "two").unwrap();
        assert_eq!(
            (
                two.disk_bytes,
                two.unique_disk_bytes,
                two.content_bytes,
                two.unique_content_bytes
            ),
            (1030, 30, 5004, 5000)
        );
        let base = a.layers.iter().find(|l| l.id == "a").unwrap();
        assert_eq!((base.images, base.disk_bytes), (2, 1000));
    }

    #[test]
    fn reclaimable_keeps_what_a_used_image_shares() {
        let mut d = node();
        d.containers = vec![container("c1", "one", None)];
        let a = attribute(&[d.clone()], &[], &size);
        // "two" is unused: its own layer c and blob y go, base a and blob x stay for "one".
        assert_eq!(a.reclaimable[&RuntimeKind::Containerd], 30 + 5000);
        let one = a.images.iter().find(|i| i.id == "one").unwrap();
        assert!(one.in_use && one.containers == 1);

        // With nothing in use, both images' layers go, the shared ones once.
        d.containers.clear();
        assert_eq!(
            attribute(&[d.clone()], &[], &size).reclaimable[&RuntimeKind::Containerd],
            1000 + 200 + 30 + 4 + 5000
        );

        // A pinned image is never removed, nor what it shares.
        d.images[0].pinned = true;
        assert_eq!(
            attribute(&[d], &[], &size).reclaimable[&RuntimeKind::Containerd],
            30 + 5000
        );
    }

    #[test]
    fn same_chain_in_two_namespaces_is_two_layers() {
        let mut d = node();
        let mut other = image("one", &["a", "b"], &["x"]);
        other.namespace = "moby".into();
        d.images.push(other);
        let mut moby_a = layer("a");
        moby_a.namespace = "moby".into();
        d.layers.push(moby_a);
        let a = attribute(&[d], &[], &size);
        let k8s_a = a
            .layers
            .iter()
            .find(|l| l.id == "a" && l.namespace == "k8s.io")
            .unwrap();
        assert_eq!(k8s_a.images, 2);
        let moby = a.images.iter().find(|i| i.namespace == "moby").unwrap();
        // Blob x is now referenced by three images; layer a in moby by one.
        assert_eq!(
            (moby.unique_disk_bytes, moby.unique_content_bytes),
            (1000, 0)
        );
    }

    #[test]
    fn empty_dirs_are_named_after_their_pod_when_known() {
        let mut d = node();
        d.containers = vec![container("c1", "one", Some(pod("u1", "app")))];
        let dirs = [("u1", "/w/cache"), ("u9", "/w/orphan")].map(|(uid, path)| EmptyDir {
            pod_uid: uid.into(),
            name: "v".into(),
            path: PathBuf::from(path),
        });
        let v = volumes(&dirs, &[d], &[], &size);
        assert_eq!(v.len(), 2);
        let named = v.iter().find(|v| v.pod_uid == "u1").unwrap();
        assert_eq!(
            (named.pod.as_deref(), named.pod_namespace.as_deref()),
            (Some("web-0"), Some("shop"))
        );
        assert_eq!(named.disk_bytes, 7);
        assert!(v.iter().any(|v| v.pod_uid == "u9" && v.pod.is_none()));
    }

    #[test]
    fn pod_logs_go_to_one_container_and_orphans_stay_visible() {
        let mut d = node();
        d.containers = vec![
            container("first", "one", Some(pod("u1", "app"))),
            container("restarted", "one", Some(pod("u1", "app"))),
        ];
        let logs = vec![
            PodLogs {
                pod: pod("u1", "app"),
                files: vec![PathBuf::from("/logs/1"), PathBuf::from("/logs/2")],
            },
            PodLogs {
                pod: pod("gone", "db"),
                files: vec![PathBuf::from("/logs/3")],
            },
        ];
        let a = attribute(&[d], &logs, &size);
        let total: u64 = a.containers.iter().map(|c| c.log_bytes).sum();
        assert_eq!(total, 33, "every log file counted exactly once");
        let first = a.containers.iter().find(|c| c.id == "first").unwrap();
        assert_eq!((first.log_bytes, first.writable_disk_bytes), (22, 7));
        let orphan = a.containers.iter().find(|c| c.runtime.is_none()).unwrap();
        assert_eq!((orphan.name.as_str(), orphan.log_bytes), ("db", 11));
    }
}
