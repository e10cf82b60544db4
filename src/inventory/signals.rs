//! The kubelet's disk signals: which filesystem backs each, its thresholds,
//! and the verdict for now.
//!
//! nodefs is the filesystem of the kubelet root and imagefs the one of the
//! runtime's image store (they may be one). Thresholds resolve against the
//! filesystem's capacity as the kubelet does.

use std::collections::BTreeMap;
use std::path::Path;

use crate::host;
use crate::kubelet::{KubeletConfig, Signal};
use crate::report::{Filesystem, Prediction};
use crate::runtime::Problem;

/// The filesystems behind nodefs (`kubelet_root`) and imagefs (`image_root`).
/// One that cannot be described is left out and named in `problems`.
pub fn filesystems(
    kubelet_root: &Path,
    image_root: &Path,
    kubelet: &KubeletConfig,
    problems: &mut Vec<Problem>,
) -> Vec<Filesystem> {
    let mut out = Vec::new();
    for (name, path) in [("nodefs", kubelet_root), ("imagefs", image_root)] {
        let (bytes_signal, inodes_signal) = signals_of(name);
        match host::filesystem_of(path) {
            Ok(fs) => {
                let threshold = |s, capacity| {
                    kubelet
                        .eviction_hard
                        .get(&s)
                        .map_or(0, |t| t.resolve(capacity))
                };
                let threshold_bytes = threshold(bytes_signal, fs.capacity_bytes);
                let threshold_inodes = threshold(inodes_signal, fs.inodes);
                out.push(Filesystem {
                    signal: name.to_string(),
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
            Err(err) => problems.push(Problem::new(
                path.display().to_string(),
                format!("{name}: {err}"),
            )),
        }
    }
    out
}

/// The kubelet's (bytes, inodes) signals for a filesystem signal name.
fn signals_of(name: &str) -> (Signal, Signal) {
    match name {
        "nodefs" => (Signal::NodefsAvailable, Signal::NodefsInodesFree),
        _ => (Signal::ImagefsAvailable, Signal::ImagefsInodesFree),
    }
}

fn signed_diff(a: u64, b: u64) -> i64 {
    i64::try_from(i128::from(a) - i128::from(b)).unwrap_or(if a > b { i64::MAX } else { i64::MIN })
}

/// The verdict per signal from one observation: pressure when a hard
/// threshold is crossed now; a warning when image GC is due (usage at or
/// above `imageGCHighThresholdPercent` on imagefs) or a soft threshold is
/// crossed. Without a trend no time-to-pressure is claimed.
pub fn predict(
    filesystems: &[Filesystem],
    kubelet: &KubeletConfig,
) -> BTreeMap<String, Prediction> {
    filesystems
        .iter()
        .map(|fs| (fs.signal.clone(), verdict(fs, kubelet)))
        .collect()
}

fn verdict(fs: &Filesystem, kubelet: &KubeletConfig) -> Prediction {
    let gib = |b: i64| crate::report::human_bytes(b.unsigned_abs());
    if fs.bytes_left < 0 {
        return pressure(format!(
            "{} has {} available, {} below the eviction threshold of {}",
            fs.signal,
            crate::report::human_bytes(fs.available_bytes),
            gib(fs.bytes_left),
            crate::report::human_bytes(fs.threshold_bytes)
        ));
    }
    if fs.inodes_left < 0 {
        return pressure(format!(
            "{} has {} free inodes, below the eviction threshold of {}",
            fs.signal, fs.inodes_free, fs.threshold_inodes
        ));
    }
    let used_percent = used_percent(fs);
    let gc_due = fs.signal == "imagefs" && used_percent >= f64::from(kubelet.image_gc_high_percent);
    let soft = soft_crossed(fs, kubelet);
    let reason = if gc_due {
        format!(
            "{} is {used_percent:.0}% used, at or above imageGCHighThresholdPercent ({}%): the kubelet is deleting images; {} left above the eviction threshold",
            fs.signal, kubelet.image_gc_high_percent, gib(fs.bytes_left)
        )
    } else if soft {
        format!(
            "{} is past its soft eviction threshold; {} left above the hard one",
            fs.signal,
            gib(fs.bytes_left)
        )
    } else {
        format!(
            "{} has {} left above the eviction threshold",
            fs.signal,
            gib(fs.bytes_left)
        )
    };
    Prediction {
        predicted: false,
        state: if gc_due || soft { "warning" } else { "ok" }.to_string(),
        seconds_until: None,
        reason,
    }
}

fn pressure(reason: String) -> Prediction {
    Prediction {
        predicted: true,
        state: "pressure".to_string(),
        seconds_until: Some(0),
        reason,
    }
}

fn used_percent(fs: &Filesystem) -> f64 {
    if fs.capacity_bytes == 0 {
        return 0.0;
    }
    100.0 - fs.available_bytes as f64 * 100.0 / fs.capacity_bytes as f64
}

fn soft_crossed(fs: &Filesystem, kubelet: &KubeletConfig) -> bool {
    let (bytes, inodes) = signals_of(&fs.signal);
    let crossed = |s, capacity, free| {
        kubelet
            .eviction_soft
            .get(&s)
            .is_some_and(|t| t.resolve(capacity) > free)
    };
    crossed(bytes, fs.capacity_bytes, fs.available_bytes)
        || crossed(inodes, fs.inodes, fs.inodes_free)
}
