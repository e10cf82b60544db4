//! What the agent remembers between passes for its predictions: samples of
//! each filesystem's available bytes and free inodes (for the trend), and
//! when each image was first seen and last used (for the image GC model).
//! A one-shot scan has one observation: no trend, and images' creation times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use super::trend::{Samples, Trend, TrendConfig};
use crate::report::{Filesystem, Image};

/// Samples kept per signal (a pass a minute: 12 hours; a pass every 5 s: 1 hour).
const SAMPLES: usize = 720;
/// Samples older than this no longer count.
const MAX_AGE: Duration = Duration::from_secs(3600);

/// Observations across passes.
#[derive(Debug)]
pub struct History {
    started: Instant,
    /// Per signal: (available bytes, free inodes).
    signals: BTreeMap<String, (Samples, Samples)>,
    first_seen: HashMap<String, SystemTime>,
    last_used: HashMap<String, SystemTime>,
}

impl Default for History {
    fn default() -> Self {
        History {
            started: Instant::now(),
            signals: BTreeMap::new(),
            first_seen: HashMap::new(),
            last_used: HashMap::new(),
        }
    }
}

/// How the history names an image across passes.
pub fn image_key(image: &Image) -> String {
    format!(
        "{}/{}/{}",
        image.runtime.as_str(),
        image.namespace,
        image.id
    )
}

impl History {
    /// Records one pass's filesystems and images, made at `now`.
    pub fn observe(&mut self, filesystems: &[Filesystem], images: &[Image], now: SystemTime) {
        let t = self.started.elapsed();
        for fs in filesystems {
            let (bytes, inodes) = self.signals.entry(fs.signal.clone()).or_insert_with(|| {
                (
                    Samples::new(SAMPLES, MAX_AGE),
                    Samples::new(SAMPLES, MAX_AGE),
                )
            });
            bytes.push(t, fs.available_bytes);
            inodes.push(t, fs.inodes_free);
        }
        let current: HashSet<String> = images.iter().map(image_key).collect();
        self.first_seen.retain(|k, _| current.contains(k));
        self.last_used.retain(|k, _| current.contains(k));
        for image in images {
            let key = image_key(image);
            self.first_seen.entry(key.clone()).or_insert(now);
            if image.in_use {
                self.last_used.insert(key, now);
            }
        }
    }

    /// The trends of a signal's (available bytes, free inodes), when known.
    pub fn trends(&self, signal: &str) -> (Option<Trend>, Option<Trend>) {
        self.signals
            .get(signal)
            .map_or((None, None), |(bytes, inodes)| {
                (
                    bytes.trend(&TrendConfig::bytes()),
                    inodes.trend(&TrendConfig::inodes()),
                )
            })
    }

    /// When the image (by [`image_key`]) was first seen.
    pub fn first_seen(&self, key: &str) -> Option<SystemTime> {
        self.first_seen.get(key).copied()
    }

    /// When the image was last seen in use.
    pub fn last_used(&self, key: &str) -> Option<SystemTime> {
        self.last_used.get(key).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeKind;

    fn image(id: &str, in_use: bool) -> Image {
        Image {
            runtime: RuntimeKind::Containerd,
            namespace: "k8s.io".into(),
            id: id.into(),
            refs: vec![],
            created: None,
            disk_bytes: 0,
            apparent_bytes: 0,
            unique_disk_bytes: 0,
            unique_apparent_bytes: 0,
            shared_disk_bytes: 0,
            shared_apparent_bytes: 0,
            content_bytes: 0,
            unique_content_bytes: 0,
            containers: u64::from(in_use),
            in_use,
            pinned: false,
            layers: vec![],
        }
    }

    #[test]
    fn remembers_first_sight_and_last_use_and_forgets_removed_images() {
        let mut h = History::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = t0 + Duration::from_secs(60);
        h.observe(&[], &[image("a", true), image("b", false)], t0);
        h.observe(&[], &[image("a", false), image("b", false)], t1);
        let a = image_key(&image("a", false));
        let b = image_key(&image("b", false));
        assert_eq!((h.first_seen(&a), h.last_used(&a)), (Some(t0), Some(t0)));
        assert_eq!((h.first_seen(&b), h.last_used(&b)), (Some(t0), None));
        h.observe(&[], &[image("b", false)], t1);
        assert_eq!(h.first_seen(&a), None);
    }

    #[test]
    fn one_observation_gives_no_trend() {
        let mut h = History::default();
        let fs = Filesystem {
            signal: "imagefs".into(),
            path: "/".into(),
            mountpoint: "/".into(),
            fstype: "ext4".into(),
            capacity_bytes: 100,
            available_bytes: 50,
            inodes: 10,
            inodes_free: 5,
            threshold_bytes: 10,
            threshold_inodes: 1,
            bytes_left: 40,
            inodes_left: 4,
        };
        h.observe(std::slice::from_ref(&fs), &[], SystemTime::now());
        assert_eq!(h.trends("imagefs"), (None, None));
        assert_eq!(h.trends("nodefs"), (None, None));
    }
}
