//! What one pass of the kubelet's image GC would do, and what it would really free.
//!
//! The kubelet (`pkg/kubelet/images/image_gc_manager.go`, every 5 minutes) computes
//! `usage = 100 - available*100/capacity` in integer percent. At or above
//! `imageGCHighThresholdPercent` it aims to free
//! `capacity*(100-imageGCLowThresholdPercent)/100 - available` bytes: it takes the images
//! that are neither in use nor pinned, least recently used first (ties: first detected
//! first), skips those first detected less than `imageMinimumGCAge` ago, and deletes them
//! one by one, crediting each with the size CRI reports, until the credit reaches the
//! target. That size counts layers the image shares with others, which stay on disk, and
//! the disk is not re-measured in between: the kubelet can stop having freed far less than
//! it aimed for. This module replays that pass and adds up both the credit and the bytes
//! really freed. The kubelet's `firstDetected` restarts with the kubelet; callers pass the
//! best they know (the image's creation or first-seen time).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::kubelet::KubeletConfig;

/// The kubelet's image GC settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcPolicy {
    /// `imageGCHighThresholdPercent`: usage at which GC starts.
    pub high_percent: u8,
    /// `imageGCLowThresholdPercent`: usage GC aims to get back to.
    pub low_percent: u8,
    /// `imageMinimumGCAge`: images detected more recently are kept.
    pub min_age: Duration,
}

impl GcPolicy {
    /// The settings of a kubelet configuration.
    pub fn of(kubelet: &KubeletConfig) -> GcPolicy {
        GcPolicy {
            high_percent: kubelet.image_gc_high_percent,
            low_percent: kubelet.image_gc_low_percent,
            min_age: kubelet.image_minimum_gc_age,
        }
    }
}

/// Something on disk an image shares with other images (a layer, a blob).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPart {
    /// What identifies it across images (a chain ID, a digest).
    pub key: String,
    /// Bytes it occupies.
    pub bytes: u64,
    /// Inodes it occupies.
    pub inodes: u64,
}

/// An image as the kubelet's GC sees it, with what deleting it really frees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcImage {
    /// The image ID.
    pub id: String,
    /// The size the kubelet credits when it deletes the image (CRI `ListImages` size).
    pub credited_bytes: u64,
    /// Bytes only this image holds (unique layers and blobs).
    pub unique_bytes: u64,
    /// Inodes only this image holds.
    pub unique_inodes: u64,
    /// Parts held by other images too; freed once every image holding them is deleted.
    /// A part also held by something not in the image list must be left out (it is
    /// never freed); leaving every shared part out makes the freed bytes a lower bound.
    pub shared: Vec<SharedPart>,
    /// A container uses it.
    pub in_use: bool,
    /// The runtime marks it pinned (the sandbox image); GC never deletes it.
    pub pinned: bool,
    /// When a container last used it; `None` when never seen in use (the kubelet's zero
    /// time, which sorts first).
    pub last_used: Option<SystemTime>,
    /// When the kubelet first saw it (or the image was created).
    pub first_detected: SystemTime,
}

/// The kubelet's image GC on one filesystem: its policy, the images, and the time.
#[derive(Debug, Clone, Copy)]
pub struct ImageGc<'a> {
    /// The settings.
    pub policy: GcPolicy,
    /// Every image of the runtime (in use and pinned ones too: they hold shared parts).
    pub images: &'a [GcImage],
    /// The time of the pass.
    pub now: SystemTime,
}

/// What a GC pass would do.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GcOutcome {
    /// Whether usage reaches the high threshold, so that GC deletes images.
    pub runs: bool,
    /// The kubelet's integer usage percent (above 100 when `available` is negative).
    pub usage_percent: i64,
    /// Bytes the kubelet aims to free (0 when it does not run).
    pub amount_to_free: i64,
    /// IDs of the images it deletes, in order.
    pub deleted: Vec<String>,
    /// Bytes the kubelet believes it freed.
    pub credited_bytes: u64,
    /// Bytes really freed.
    pub freed_bytes: u64,
    /// Inodes really freed.
    pub freed_inodes: u64,
    /// Available bytes after the pass.
    pub available_after: i64,
}

impl GcOutcome {
    /// Whether the kubelet is content with the pass (otherwise it reports
    /// `FreeDiskSpaceFailed`).
    pub fn satisfied(&self) -> bool {
        !self.runs || i128::from(self.credited_bytes) >= i128::from(self.amount_to_free)
    }
}

impl ImageGc<'_> {
    /// A pass on a filesystem of `capacity` bytes with `available` bytes free.
    pub fn simulate(&self, capacity: u64, available: u64) -> GcOutcome {
        self.simulate_after(capacity, available, 0)
    }

    /// A pass once `incoming` more bytes have landed (a pull in flight): as if
    /// `available - incoming` were free, which may be negative.
    pub fn simulate_after(&self, capacity: u64, available: u64, incoming: u64) -> GcOutcome {
        // The kubelet clamps available to capacity and works in int64; i128 cannot
        // overflow on u64 inputs.
        let projected = i128::from(available.min(capacity)) - i128::from(incoming);
        let mut outcome = GcOutcome {
            available_after: saturate(projected),
            ..GcOutcome::default()
        };
        if capacity == 0 {
            return outcome; // the kubelet refuses to GC ("invalid capacity")
        }
        let capacity = i128::from(capacity);
        let usage = 100 - projected * 100 / capacity;
        outcome.usage_percent = saturate(usage);
        if usage < i128::from(self.policy.high_percent) {
            return outcome;
        }
        let target = capacity * i128::from(100 - self.policy.low_percent.min(100)) / 100;
        let amount = target - projected;
        outcome.runs = true;
        outcome.amount_to_free = saturate(amount);
        let mut credited: i128 = 0;
        for image in self.eviction_order() {
            outcome.deleted.push(image.id.clone());
            credited += i128::from(image.credited_bytes);
            if credited >= amount {
                break;
            }
        }
        outcome.credited_bytes = u64::try_from(credited).unwrap_or(u64::MAX);
        (outcome.freed_bytes, outcome.freed_inodes) = self.really_freed(&outcome.deleted);
        outcome.available_after = saturate(projected + i128::from(outcome.freed_bytes));
        outcome
    }

    /// The images GC may delete, in the order it deletes them.
    fn eviction_order(&self) -> Vec<&GcImage> {
        let mut candidates: Vec<&GcImage> = self
            .images
            .iter()
            .filter(|i| self.kept_because(i).is_none())
            .collect();
        candidates.sort_by_key(|i| (i.last_used, i.first_detected));
        candidates
    }

    /// Why a pass leaves `image` alone, or `None` when it may delete it.
    fn kept_because(&self, image: &GcImage) -> Option<Kept> {
        // The kubelet skips an image used at or after the pass (it is in use).
        let used_now = image.last_used.is_some_and(|used| used >= self.now);
        let young = self
            .now
            .duration_since(image.first_detected)
            .map_or(true, |age| age < self.policy.min_age);
        if image.pinned {
            Some(Kept::Pinned)
        } else if image.in_use || used_now {
            Some(Kept::InUse)
        } else if young {
            Some(Kept::Young)
        } else {
            None
        }
    }

    /// What a pass may and may not delete, whatever it aims to free: the
    /// sentence that explains GC on a screen.
    pub fn census(&self) -> GcCensus {
        let mut census = GcCensus {
            min_age: self.policy.min_age,
            ..GcCensus::default()
        };
        let mut deletable = Vec::new();
        for image in self.images {
            match self.kept_because(image) {
                Some(Kept::Pinned) => census.pinned += 1,
                Some(Kept::InUse) => census.in_use += 1,
                Some(Kept::Young) => census.young += 1,
                None => deletable.push(image.id.clone()),
            }
        }
        census.deletable = deletable.len();
        census.deletable_bytes = self.really_freed(&deletable).0;
        census
    }

    /// Bytes and inodes really freed by deleting `deleted`: their unique parts, plus
    /// every shared part whose holders are all deleted.
    fn really_freed(&self, deleted: &[String]) -> (u64, u64) {
        let mut parts: BTreeMap<&str, (usize, usize, &SharedPart)> = BTreeMap::new();
        let (mut bytes, mut inodes) = (0u64, 0u64);
        for image in self.images {
            let gone = deleted.contains(&image.id);
            if gone {
                bytes = bytes.saturating_add(image.unique_bytes);
                inodes = inodes.saturating_add(image.unique_inodes);
            }
            for part in &image.shared {
                let entry = parts.entry(&part.key).or_insert((0, 0, part));
                entry.0 += 1;
                entry.1 += usize::from(gone);
            }
        }
        for (holders, gone, part) in parts.into_values() {
            if holders == gone {
                bytes = bytes.saturating_add(part.bytes);
                inodes = inodes.saturating_add(part.inodes);
            }
        }
        (bytes, inodes)
    }
}

/// Why GC leaves an image alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    /// The runtime pins it.
    Pinned,
    /// A container uses it.
    InUse,
    /// First detected less than `imageMinimumGCAge` ago.
    Young,
}

/// What a GC pass may and may not delete, and why: its [`Display`] is the
/// sentence a screen or a verdict gives, e.g. "image GC could free 108.0 MB
/// (3 unused images); 2 images in use and 1 younger than imageMinimumGCAge
/// 2m are kept". Its serde form is the status document's `image_gc`.
///
/// [`Display`]: std::fmt::Display
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct GcCensus {
    /// Images a pass may delete: unused, unpinned, old enough.
    pub deletable: usize,
    /// Bytes deleting all of them would really free (shared parts only
    /// when every holder goes).
    pub deletable_bytes: u64,
    /// Images kept because a container uses them.
    pub in_use: usize,
    /// Images kept because the runtime pins them.
    pub pinned: usize,
    /// Unused, unpinned images kept because they are younger than `min_age`.
    pub young: usize,
    /// `imageMinimumGCAge` (whole seconds in JSON, as the document's other
    /// durations).
    #[serde(with = "whole_seconds")]
    pub min_age: Duration,
}

/// A duration as a whole number of seconds (a fraction is dropped: the
/// kubelet's minimum age is minutes in practice).
mod whole_seconds {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

impl std::fmt::Display for GcCensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.deletable {
            0 => write!(f, "image GC may delete no image")?,
            n => write!(
                f,
                "image GC could free {} ({n} unused {})",
                crate::model::human_bytes(self.deletable_bytes),
                images(n)
            )?,
        }
        let age = humantime::format_duration(self.min_age);
        let young = format!("younger than imageMinimumGCAge {age}");
        let reasons = [
            (self.in_use, "in use"),
            (self.pinned, "pinned"),
            (self.young, young.as_str()),
        ];
        let kept: Vec<String> = reasons
            .iter()
            .filter(|(n, _)| *n > 0)
            .enumerate()
            .map(|(i, (n, why))| match i {
                0 => format!("{n} {} {why}", images(*n)),
                _ => format!("{n} {why}"),
            })
            .collect();
        let total = self.in_use + self.pinned + self.young;
        let verb = if total == 1 { "is" } else { "are" };
        match kept.as_slice() {
            [] => Ok(()),
            [one] => write!(f, "; {one} {verb} kept"),
            [init @ .., last] => write!(f, "; {} and {last} {verb} kept", init.join(", ")),
        }
    }
}

/// "image" or "images", as `n` needs.
fn images(n: usize) -> &'static str {
    if n == 1 {
        "image"
    } else {
        "images"
    }
}

fn saturate(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;
    const CAPACITY: u64 = 100 * GB;

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    fn ago(secs: u64) -> SystemTime {
        now() - Duration::from_secs(secs)
    }

    /// An unused image last used `used_ago` seconds ago, detected a day ago, whose whole
    /// credited size is unique.
    fn image(id: &str, gb: u64, used_ago: u64) -> GcImage {
        GcImage {
            id: id.to_string(),
            credited_bytes: gb * GB,
            unique_bytes: gb * GB,
            unique_inodes: gb * 1000,
            shared: Vec::new(),
            in_use: false,
            pinned: false,
            last_used: Some(ago(used_ago)),
            first_detected: ago(86_400),
        }
    }

    fn gc(images: &[GcImage]) -> ImageGc<'_> {
        ImageGc {
            policy: GcPolicy::of(&KubeletConfig::defaults()),
            images,
            now: now(),
        }
    }

    #[test]
    fn below_the_high_threshold_nothing_runs() {
        // 20 GB of 100 GB free: usage 80% < 85%.
        let images = [image("a", 5, 3600)];
        let outcome = gc(&images).simulate(CAPACITY, 20 * GB);
        assert!(!outcome.runs);
        assert_eq!(outcome.usage_percent, 80);
        assert!(outcome.deleted.is_empty());
        assert_eq!(outcome.available_after, 20 * GB as i64);
        assert!(outcome.satisfied());
    }

    #[test]
    fn usage_is_an_integer_percent_as_the_kubelet_truncates_it() {
        // 15.9 GB free: 100 - floor(15.9) = 85, so GC runs although 84.1% is used.
        let images = [image("a", 5, 3600)];
        let outcome = gc(&images).simulate(CAPACITY, 15_900_000_000);
        assert!(outcome.runs);
        assert_eq!(outcome.usage_percent, 85);
        // Target 20 GB free: 4.1 GB to free.
        assert_eq!(outcome.amount_to_free, 4_100_000_000);
    }

    #[test]
    fn above_the_high_threshold_it_frees_down_to_the_low_one_lru_first() {
        // 10 GB free: usage 90%; target 20 GB free, so 10 GB to free. LRU: a (3 h ago),
        // b (2 h), c (1 h). a + b = 4 + 6 = 10 GB reaches the target; c stays.
        let images = [
            image("c", 5, 3600),
            image("a", 4, 3 * 3600),
            image("b", 6, 2 * 3600),
        ];
        let outcome = gc(&images).simulate(CAPACITY, 10 * GB);
        assert!(outcome.runs);
        assert_eq!(outcome.usage_percent, 90);
        assert_eq!(outcome.amount_to_free, 10 * GB as i64);
        assert_eq!(outcome.deleted, ["a", "b"]);
        assert_eq!(outcome.credited_bytes, 10 * GB);
        assert_eq!(outcome.freed_bytes, 10 * GB);
        assert_eq!(outcome.freed_inodes, 10_000);
        assert_eq!(outcome.available_after, 20 * GB as i64);
        assert!(outcome.satisfied());
    }

    #[test]
    fn shared_layers_are_credited_but_not_freed() {
        // a, b, c are 4 GB each to the kubelet, but 3 GB of each is a base layer that the
        // in-use image d also holds: deleting one frees 1 GB.
        let base = SharedPart {
            key: "base".into(),
            bytes: 3 * GB,
            inodes: 3000,
        };
        let with_base = |id: &str, used_ago: u64| GcImage {
            unique_bytes: GB,
            unique_inodes: 1000,
            shared: vec![base.clone()],
            ..image(id, 4, used_ago)
        };
        let images = [
            with_base("a", 3 * 3600),
            with_base("b", 2 * 3600),
            with_base("c", 3600),
            GcImage {
                in_use: true,
                ..with_base("d", 0)
            },
        ];
        // 10 GB free, 10 GB to free: credits 4 + 4 + 4 = 12 GB after three images.
        let outcome = gc(&images).simulate(CAPACITY, 10 * GB);
        assert_eq!(outcome.deleted, ["a", "b", "c"]);
        assert_eq!(outcome.credited_bytes, 12 * GB);
        assert!(outcome.satisfied(), "the kubelet thinks it freed enough");
        assert_eq!(outcome.freed_bytes, 3 * GB);
        assert_eq!(outcome.available_after, 13 * GB as i64);
    }

    #[test]
    fn a_part_shared_only_by_deleted_images_is_freed() {
        // a and b share a 2 GB layer nobody else holds; both go, so it goes too.
        let layer = SharedPart {
            key: "app".into(),
            bytes: 2 * GB,
            inodes: 500,
        };
        let images = [
            GcImage {
                unique_bytes: GB,
                shared: vec![layer.clone()],
                ..image("a", 3, 2 * 3600)
            },
            GcImage {
                unique_bytes: GB,
                shared: vec![layer],
                ..image("b", 3, 3600)
            },
        ];
        let outcome = gc(&images).simulate(CAPACITY, 10 * GB);
        assert_eq!(outcome.deleted, ["a", "b"]);
        assert_eq!(outcome.credited_bytes, 6 * GB);
        assert!(!outcome.satisfied(), "6 GB credited of 10 GB wanted");
        assert_eq!(outcome.freed_bytes, 4 * GB);
        // 3000 unique inodes each (the helper gives 1000 per credited GB) and the layer.
        assert_eq!(outcome.freed_inodes, 3000 + 3000 + 500);
    }

    #[test]
    fn pinned_and_in_use_images_are_skipped() {
        let images = [
            GcImage {
                pinned: true,
                ..image("pause", 1, 5 * 3600)
            },
            GcImage {
                in_use: true,
                ..image("running", 8, 4 * 3600)
            },
            image("old", 3, 3 * 3600),
            image("newer", 9, 3600),
        ];
        let outcome = gc(&images).simulate(CAPACITY, 10 * GB);
        assert_eq!(outcome.deleted, ["old", "newer"]);
        assert_eq!(outcome.freed_bytes, 12 * GB);
    }

    #[test]
    fn images_younger_than_the_minimum_age_are_kept() {
        // "fresh" is the least recently used (never used) but was detected 60 s ago,
        // under the 2 min minimum age.
        let images = [
            GcImage {
                last_used: None,
                first_detected: ago(60),
                ..image("fresh", 7, 0)
            },
            GcImage {
                last_used: None,
                first_detected: ago(120),
                ..image("just-old-enough", 2, 0)
            },
            image("used", 9, 3600),
        ];
        let outcome = gc(&images).simulate(CAPACITY, 10 * GB);
        assert_eq!(outcome.deleted, ["just-old-enough", "used"]);
    }

    #[test]
    fn never_used_images_go_first_then_lru_then_first_detected() {
        let images = [
            image("recent", 1, 60),
            GcImage {
                first_detected: ago(7200),
                ..image("tie-later", 1, 600)
            },
            GcImage {
                first_detected: ago(9000),
                ..image("tie-earlier", 1, 600)
            },
            GcImage {
                last_used: None,
                ..image("never", 1, 0)
            },
        ];
        // 10 GB to free and only 4 GB credited: every candidate goes, in order.
        let outcome = gc(&images).simulate(CAPACITY, 10 * GB);
        assert_eq!(
            outcome.deleted,
            ["never", "tie-earlier", "tie-later", "recent"]
        );
        assert!(!outcome.satisfied());
    }

    #[test]
    fn an_incoming_pull_is_simulated_on_the_projected_available() {
        // 20 GB free (no GC), a 12 GB pull: 8 GB free, usage 92%, 12 GB to free.
        let images = [image("a", 5, 7200), image("b", 10, 3600)];
        let outcome = gc(&images).simulate_after(CAPACITY, 20 * GB, 12 * GB);
        assert!(outcome.runs);
        assert_eq!(outcome.usage_percent, 92);
        assert_eq!(outcome.amount_to_free, 12 * GB as i64);
        assert_eq!(outcome.deleted, ["a", "b"]);
        assert_eq!(outcome.available_after, 23 * GB as i64);
    }

    #[test]
    fn a_pull_larger_than_the_free_space_goes_negative() {
        // 5 GB free, 8 GB incoming: -3 GB; usage 100 - (-3) = 103%; 23 GB to free.
        let images = [image("a", 5, 7200)];
        let outcome = gc(&images).simulate_after(CAPACITY, 5 * GB, 8 * GB);
        assert_eq!(outcome.usage_percent, 103);
        assert_eq!(outcome.amount_to_free, 23 * GB as i64);
        assert_eq!(outcome.available_after, 2 * GB as i64);
    }

    #[test]
    fn zero_capacity_never_runs() {
        let outcome = gc(&[]).simulate(0, 0);
        assert!(!outcome.runs);
        assert_eq!(outcome.available_after, 0);
    }

    #[test]
    fn the_census_says_what_gc_keeps_and_why() {
        let images = [
            GcImage {
                pinned: true,
                ..image("pause", 1, 5 * 3600)
            },
            GcImage {
                in_use: true,
                ..image("running", 8, 4 * 3600)
            },
            GcImage {
                // Used at the pass: as good as in use.
                last_used: Some(now()),
                ..image("starting", 2, 0)
            },
            GcImage {
                first_detected: ago(60),
                ..image("fresh", 7, 3600)
            },
            image("old", 3, 3 * 3600),
            image("older", 2, 4 * 3600),
        ];
        let census = gc(&images).census();
        assert_eq!(
            census,
            GcCensus {
                deletable: 2,
                deletable_bytes: 5 * GB,
                in_use: 2,
                pinned: 1,
                young: 1,
                min_age: Duration::from_secs(120),
            }
        );
        assert_eq!(
            census.to_string(),
            "image GC could free 5.0 GB (2 unused images); 2 images in use, 1 pinned and \
             1 younger than imageMinimumGCAge 2m are kept"
        );
        // The census and a pass agree on what may go.
        let outcome = gc(&images).simulate(CAPACITY, 0);
        assert_eq!(outcome.deleted, ["older", "old"]);
    }

    #[test]
    fn a_census_with_nothing_to_delete_says_so_and_why() {
        let images = [GcImage {
            first_detected: ago(30),
            ..image("fresh", 1, 60)
        }];
        assert_eq!(
            gc(&images).census().to_string(),
            "image GC may delete no image; 1 image younger than imageMinimumGCAge 2m is kept"
        );
        assert_eq!(gc(&[]).census().to_string(), "image GC may delete no image");
    }
}
