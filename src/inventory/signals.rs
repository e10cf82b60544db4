//! The kubelet's disk signals: which filesystem backs each, its thresholds,
//! and the verdict for now.
//!
//! nodefs is the filesystem of the kubelet root and imagefs the one of the
//! runtime's image store (they may be one). Thresholds resolve against the
//! filesystem's capacity as the kubelet does.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::time::SystemTime;

use crate::host;
use crate::kubelet::{KubeletConfig, Signal as Eviction};
use crate::model::{Filesystem, Image, Layer, Prediction, Signal};
use crate::predict::gc::{GcCensus, GcImage, GcPolicy, ImageGc, SharedPart};
use crate::predict::history::{image_key, History, BURST_WINDOW};
use crate::predict::verdict::{verdict, Dimension, FsInput, DEFAULT_HORIZON};
use crate::runtime::{self, Classified, Problem, Reader, RuntimeKind};

/// The filesystems behind nodefs (`kubelet_root`) and imagefs (`image_root`).
/// One that cannot be described is left out and named in `problems`.
pub fn filesystems(
    kubelet_root: &Path,
    image_root: &Path,
    kubelet: &KubeletConfig,
    problems: &mut Vec<Problem>,
) -> Vec<Filesystem> {
    let mut out = Vec::new();
    for (signal, path) in [
        (Signal::Nodefs, kubelet_root),
        (Signal::Imagefs, image_root),
    ] {
        match host::filesystem_of(path) {
            Ok(fs) => {
                let (threshold_bytes, threshold_inodes) =
                    hard_thresholds(signal, kubelet, fs.capacity_bytes, fs.inodes);
                out.push(Filesystem {
                    signal,
                    path: path.display().to_string(),
                    mountpoint: fs.mountpoint.display().to_string(),
                    fstype: fs.fstype,
                    capacity_bytes: fs.capacity_bytes,
                    available_bytes: fs.available_bytes,
                    inodes: fs.inodes,
                    inodes_free: fs.inodes_free,
                    threshold_bytes,
                    threshold_inodes,
                    bytes_left: signed_diff(fs.available_bytes, threshold_bytes),
                    inodes_left: signed_diff(fs.inodes_free, threshold_inodes),
                });
            }
            Err(err) => problems.push(Reader::Filesystems.problem(
                err.kind(),
                path.display().to_string(),
                format!("{signal}: {err}"),
            )),
        }
    }
    out
}

/// The hard eviction thresholds (bytes, inodes) of `signal`'s filesystem
/// for its capacity and inode count (0 where none is set).
fn hard_thresholds(
    signal: Signal,
    kubelet: &KubeletConfig,
    capacity: u64,
    inodes: u64,
) -> (u64, u64) {
    let (bytes_signal, inodes_signal) = eviction_signals(signal);
    let threshold = |s, total| {
        kubelet
            .eviction_hard
            .get(&s)
            .map_or(0, |t: &crate::kubelet::Threshold| t.resolve(total))
    };
    (
        threshold(bytes_signal, capacity),
        threshold(inodes_signal, inodes),
    )
}

/// The kubelet's (bytes, inodes) eviction signals of a filesystem's signal.
fn eviction_signals(signal: Signal) -> (Eviction, Eviction) {
    match signal {
        Signal::Nodefs => (Eviction::NodefsAvailable, Eviction::NodefsInodesFree),
        Signal::Imagefs => (Eviction::ImagefsAvailable, Eviction::ImagefsInodesFree),
    }
}

fn signed_diff(a: u64, b: u64) -> i64 {
    i64::try_from(i128::from(a) - i128::from(b)).unwrap_or(if a > b { i64::MAX } else { i64::MIN })
}

/// Bytes on their way to one filesystem: pulls in flight, or one about to
/// start (`headroom check-pull`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Incoming<'a> {
    /// Mount point of the filesystem the bytes land on (the image store's);
    /// `None` when nothing is incoming.
    pub mountpoint: Option<&'a str>,
    /// Bytes the pulls will still add.
    pub bytes: u64,
    /// Inodes the pulls will still add (0 when unknown).
    pub inodes: u64,
    /// The pulls' image names, for the verdict's sentence.
    pub pulls: &'a [String],
    /// Mount points that pulls of unknown size (Docker's) are filling: judged
    /// by the rate at which they fill, not by bytes.
    pub unknown_size: &'a [String],
}

impl Incoming<'_> {
    /// Nothing on its way.
    pub const NONE: Incoming<'static> = Incoming {
        mountpoint: None,
        bytes: 0,
        inodes: 0,
        pulls: &[],
        unknown_size: &[],
    };

    /// Whether a pull of unknown size fills the filesystem at `mountpoint`.
    fn fills(&self, mountpoint: &str) -> bool {
        self.unknown_size.iter().any(|m| m == mountpoint)
    }

    /// What lands on the filesystem mounted at `mountpoint`: bytes, inodes
    /// and the pulls bringing them.
    fn onto(&self, mountpoint: &str) -> (u64, u64, &[String]) {
        if self.mountpoint == Some(mountpoint) {
            (self.bytes, self.inodes, self.pulls)
        } else {
            (0, 0, &[])
        }
    }
}

/// The verdicts per signal, and what image GC may delete on the imagefs.
#[derive(Debug, Clone, PartialEq)]
pub struct Judgement {
    /// The verdict per signal.
    pub prediction: BTreeMap<Signal, Prediction>,
    /// What a pass of the kubelet's image GC on the imagefs may and may not
    /// delete, with the same images and time the verdicts used; `None` when
    /// there is no imagefs.
    pub image_gc: Option<GcCensus>,
}

/// The verdict per signal: thresholds crossed now, the trend the `history`
/// shows, what the `incoming` pulls will add to the filesystem they land on,
/// and whether the kubelet's image GC would make room, freeing only what
/// deleted images do not share; with the census of the image GC whose pass
/// they assume (so that the screen's GC line and the verdicts agree).
pub fn judge(
    filesystems: &[Filesystem],
    images: &[Image],
    layers: &[Layer],
    kubelet: &KubeletConfig,
    history: &History,
    now: SystemTime,
    incoming: &Incoming<'_>,
) -> Judgement {
    let gc_images = gc_images(images, layers, history);
    // Image GC frees space on the image store's filesystem only.
    let gc_mount = filesystems
        .iter()
        .find(|fs| fs.signal == Signal::Imagefs)
        .map(|fs| fs.mountpoint.as_str());
    let image_gc = gc_mount.map(|_| ImageGc {
        policy: GcPolicy::of(kubelet),
        images: &gc_images,
        now,
    });
    let prediction = filesystems
        .iter()
        .map(|fs| {
            let gc = image_gc.filter(|_| gc_mount == Some(fs.mountpoint.as_str()));
            (fs.signal, judge_one(fs, kubelet, history, incoming, gc))
        })
        .collect();
    Judgement {
        prediction,
        image_gc: image_gc.map(|gc| gc.census()),
    }
}

/// The verdict of one filesystem, `gc` acting on it or not.
fn judge_one(
    fs: &Filesystem,
    kubelet: &KubeletConfig,
    history: &History,
    incoming: &Incoming<'_>,
    gc: Option<ImageGc<'_>>,
) -> Prediction {
    let (bytes_signal, inodes_signal) = eviction_signals(fs.signal);
    let (bytes_trend, inodes_trend) = history.trends(fs.signal);
    let (incoming_bytes, incoming_inodes, pulls) = incoming.onto(&fs.mountpoint);
    let dimension = |signal, capacity, available, trend| Dimension {
        capacity,
        available,
        threshold: kubelet.eviction_hard.get(&signal).copied(),
        soft_threshold: kubelet.eviction_soft.get(&signal).copied(),
        trend,
        incoming: 0,
    };
    let input = FsInput {
        name: fs.signal,
        bytes: Dimension {
            incoming: incoming_bytes,
            ..dimension(
                bytes_signal,
                fs.capacity_bytes,
                fs.available_bytes,
                bytes_trend,
            )
        },
        inodes: Dimension {
            incoming: incoming_inodes,
            ..dimension(inodes_signal, fs.inodes, fs.inodes_free, inodes_trend)
        },
        pulls,
        gc,
        horizon: DEFAULT_HORIZON,
        unsized_pull: incoming
            .fills(&fs.mountpoint)
            .then(|| history.burst(fs.signal, BURST_WINDOW))
            .flatten(),
    };
    verdict(&input).prediction()
}

/// The images the kubelet's GC manages, as it sees them: those the CRI
/// runtime shows it (containerd's `k8s.io` namespace; Docker's images on
/// cri-dockerd nodes).
fn gc_images(images: &[Image], layers: &[Layer], history: &History) -> Vec<GcImage> {
    let shown = |i: &&Image| i.runtime.runtime().kubelet_manages(i);
    let cri = runtime::cri_runtime(images.iter().filter(shown).map(|i| (i.runtime, true)));
    let managed = images
        .iter()
        .filter(shown)
        .filter(|i| Some(i.runtime) == cri);
    let layer_of: HashMap<(RuntimeKind, &str, &str), &Layer> = layers
        .iter()
        .map(|l| ((l.runtime, l.namespace.as_str(), l.id.as_str()), l))
        .collect();
    managed
        .map(|image| gc_image(image, &layer_of, history))
        .collect()
}

fn gc_image(
    image: &Image,
    layer_of: &HashMap<(RuntimeKind, &str, &str), &Layer>,
    history: &History,
) -> GcImage {
    let key = image_key(image);
    let layers = image.layers.iter().filter_map(|chain| {
        layer_of.get(&(image.runtime, image.namespace.as_str(), chain.as_str()))
    });
    let (unique, shared): (Vec<&&Layer>, Vec<&&Layer>) = layers.partition(|l| l.images <= 1);
    GcImage {
        id: image.id.clone(),
        credited_bytes: image.runtime.runtime().gc_credit(image),
        unique_bytes: image
            .unique_disk_bytes
            .saturating_add(image.unique_content_bytes),
        unique_inodes: unique.iter().map(|l| l.inodes).fold(0, u64::saturating_add),
        shared: shared
            .iter()
            .map(|l| SharedPart {
                key: l.id.clone(),
                bytes: l.disk_bytes,
                inodes: l.inodes,
            })
            .collect(),
        in_use: image.in_use,
        pinned: image.pinned,
        last_used: history.last_used(&key),
        first_detected: image
            .created
            .or_else(|| history.first_seen(&key))
            .unwrap_or(SystemTime::now()),
    }
}

/// Reads a filesystem's free space again (one statvfs of its mount point)
/// and updates what is left above its thresholds; its thresholds, which
/// follow the capacity, are kept unless the capacity changed. An error
/// leaves the figures as they were.
pub fn restat(fs: &mut Filesystem, kubelet: &KubeletConfig) -> Result<(), host::HostError> {
    let space = host::space_of(Path::new(&fs.mountpoint))?;
    if space.capacity_bytes != fs.capacity_bytes || space.inodes != fs.inodes {
        (fs.threshold_bytes, fs.threshold_inodes) =
            hard_thresholds(fs.signal, kubelet, space.capacity_bytes, space.inodes);
    }
    fs.capacity_bytes = space.capacity_bytes;
    fs.available_bytes = space.available_bytes;
    fs.inodes = space.inodes;
    fs.inodes_free = space.inodes_free;
    fs.bytes_left = signed_diff(fs.available_bytes, fs.threshold_bytes);
    fs.inodes_left = signed_diff(fs.inodes_free, fs.threshold_inodes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const GB: u64 = 1_000_000_000;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn filesystem(signal: Signal, mountpoint: &str, available_bytes: u64) -> Filesystem {
        Filesystem {
            signal,
            path: mountpoint.into(),
            mountpoint: mountpoint.into(),
            fstype: "ext4".into(),
            capacity_bytes: 100 * GB,
            available_bytes,
            inodes: 1_000_000,
            inodes_free: 900_000,
            threshold_bytes: 10 * GB,
            threshold_inodes: 50_000,
            bytes_left: 0,
            inodes_left: 0,
        }
    }

    /// A CRI image of `gb` unique GB, created `age` seconds before [`now`].
    fn image(id: &str, gb: u64, age: u64) -> Image {
        Image {
            runtime: RuntimeKind::Containerd,
            namespace: "k8s.io".into(),
            id: id.into(),
            created: Some(now() - Duration::from_secs(age)),
            disk_bytes: gb * GB,
            unique_disk_bytes: gb * GB,
            content_bytes: gb * GB / 2,
            ..Image::default()
        }
    }

    fn judged(filesystems: &[Filesystem], images: &[Image], incoming: &Incoming<'_>) -> Judgement {
        let kubelet = KubeletConfig::defaults();
        let history = History::default();
        judge(
            filesystems,
            images,
            &[],
            &kubelet,
            &history,
            now(),
            incoming,
        )
    }

    #[test]
    fn the_census_is_of_the_imagefs_images_and_their_ages() {
        let images = [
            Image {
                in_use: true,
                ..image("running", 8, 86_400)
            },
            Image {
                pinned: true,
                ..image("pause", 1, 86_400)
            },
            image("young", 7, 60),
            image("old", 3, 86_400),
            // Another namespace's image: not the kubelet's to delete.
            Image {
                namespace: "moby".into(),
                ..image("docker's", 5, 86_400)
            },
        ];
        let filesystems = [
            filesystem(Signal::Nodefs, "/", 50 * GB),
            filesystem(Signal::Imagefs, "/var/lib/containerd", 50 * GB),
        ];
        let census = judged(&filesystems, &images, &Incoming::NONE).image_gc;
        assert_eq!(
            census,
            Some(GcCensus {
                deletable: 1,
                deletable_bytes: 3 * GB,
                in_use: 1,
                pinned: 1,
                young: 1,
                min_age: Duration::from_secs(120),
            })
        );
        // No imagefs (it could not be described): no census.
        assert_eq!(
            judged(&filesystems[..1], &images, &Incoming::NONE).image_gc,
            None
        );
    }

    #[test]
    fn a_verdict_that_gives_the_census_gives_the_documents() {
        // 20 GB free of 100 GB, an 8 GB pull: 12 GB would be left, under
        // the 15% threshold; GC runs, and the only unused image is too young.
        let images = [
            Image {
                in_use: true,
                ..image("running", 8, 86_400)
            },
            image("young", 7, 60),
        ];
        let filesystems = [filesystem(Signal::Imagefs, "/var/lib/containerd", 20 * GB)];
        let pulls = ["registry.example/big".to_string()];
        let incoming = Incoming {
            mountpoint: Some("/var/lib/containerd"),
            bytes: 8 * GB,
            pulls: &pulls,
            ..Incoming::NONE
        };
        let judged = judged(&filesystems, &images, &incoming);
        let census = judged.image_gc.expect("an imagefs has a census");
        let reason = &judged.prediction[&Signal::Imagefs].reason;
        assert!(reason.ends_with(&census.to_string()), "{reason}");
        assert!(
            reason.contains("1 image in use and 1 younger than imageMinimumGCAge 2m"),
            "{reason}"
        );
    }
}
