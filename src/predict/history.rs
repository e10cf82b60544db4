//! What the agent remembers between passes for its predictions: samples of
//! each filesystem's available bytes and free inodes (for the trend and for the
//! burst of a pull of unknown size), and when each image was first seen and last
//! used (for the image GC model). The agent samples the filesystems about once a
//! second ([`History::sample`]) and records images each pass
//! ([`History::observe`]); a one-shot scan samples nothing: no trend, and images'
//! creation times.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant, SystemTime};

use super::pull::DEFAULT_UNPACK_RATIO;
use super::trend::{Samples, Trend, TrendConfig, BIN};
use crate::model::{Filesystem, Image, Signal};

/// Samples kept per signal and dimension: an hour of 1-s samples, about 85 kB each for
/// bytes and inodes (24 bytes a sample), so ~170 kB per signal at most.
const SAMPLES: usize = 3600;
/// Samples older than this no longer count.
const MAX_AGE: Duration = Duration::from_secs(3600);
/// A window for [`History::burst`] that reads a pull's rate within 10 s of its start.
pub const BURST_WINDOW: Duration = Duration::from_secs(10);

/// One signal's samples, and its trends as of the last time they were worked
/// out (every [`BIN`] at most: the trend's resolution, so working them out
/// every second would only cost CPU on an idle node).
#[derive(Debug)]
struct Series {
    bytes: Samples,
    inodes: Samples,
    trends: (Option<Trend>, Option<Trend>),
    /// When the trends were worked out, and whether a pull was in flight then.
    computed: Option<(Duration, bool)>,
}

impl Series {
    fn new() -> Series {
        Series {
            bytes: Samples::new(SAMPLES, MAX_AGE),
            inodes: Samples::new(SAMPLES, MAX_AGE),
            trends: (None, None),
            computed: None,
        }
    }

    /// Works the trends out again when a bin has passed or a pull began or
    /// ended since the last time.
    fn update_trends(&mut self, t: Duration, pulling: bool) {
        let due = self
            .computed
            .is_none_or(|(at, was)| t.saturating_sub(at) >= BIN || was != pulling);
        if due {
            let config = TrendConfig::default();
            self.trends = (self.bytes.trend(&config), self.inodes.trend(&config));
            self.computed = Some((t, pulling));
        }
    }
}

/// Observations across passes.
#[derive(Debug, Default)]
pub struct History {
    /// When the first sample was taken: the origin of the samples' times.
    origin: Option<Instant>,
    /// Per signal: its samples and trends.
    signals: BTreeMap<Signal, Series>,
    first_seen: HashMap<String, SystemTime>,
    last_used: HashMap<String, SystemTime>,
    /// The last unpack ratio the node's images taught.
    unpack_ratio: Option<f64>,
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
    /// Records a sample of each filesystem's available bytes and free inodes, taken at
    /// `at` while a pull (containerd or Docker) was in flight or not (`pulling`): the
    /// trend leaves pulls out, the burst does not. The agent calls this about once a
    /// second; a sample not later than the previous one is dropped.
    pub fn sample(&mut self, at: Instant, filesystems: &[Filesystem], pulling: bool) {
        let origin = *self.origin.get_or_insert(at);
        let Some(t) = at.checked_duration_since(origin) else {
            return;
        };
        for fs in filesystems {
            let series = self.signals.entry(fs.signal).or_insert_with(Series::new);
            series.bytes.push(t, fs.available_bytes, pulling);
            series.inodes.push(t, fs.inodes_free, pulling);
            series.update_trends(t, pulling);
        }
    }

    /// Records one pass's images, made at `now`.
    pub fn observe(&mut self, images: &[Image], now: SystemTime) {
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

    /// The sustained trends of a signal's (available bytes, free inodes), pulls left
    /// out, when known (see [`super::trend`]), as of the last [`BIN`] boundary.
    pub fn trends(&self, signal: Signal) -> (Option<Trend>, Option<Trend>) {
        self.signals.get(&signal).map_or((None, None), |s| s.trends)
    }

    /// The rate of a signal's available bytes over the last `window` of samples, those
    /// taken during pulls included: how fast a pull of unknown size (Docker's) fills it.
    /// See [`super::trend::burst`] and [`BURST_WINDOW`].
    pub fn burst(&self, signal: Signal, window: Duration) -> Option<Trend> {
        self.signals
            .get(&signal)
            .and_then(|s| s.bytes.burst(window))
    }

    /// The unpack ratio to cost pulls with: what the images teach now
    /// (`learned`), else what they taught last (image GC may delete the last
    /// image with its blobs in the middle of a pull: the node's layers have
    /// not changed their nature), else [`DEFAULT_UNPACK_RATIO`].
    pub fn unpack_ratio(&mut self, learned: Option<f64>) -> f64 {
        if learned.is_some() {
            self.unpack_ratio = learned;
        }
        self.unpack_ratio.unwrap_or(DEFAULT_UNPACK_RATIO)
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

    const MB: u64 = 1_000_000;

    fn image(id: &str, in_use: bool) -> Image {
        Image {
            runtime: RuntimeKind::Containerd,
            namespace: "k8s.io".into(),
            id: id.into(),
            containers: u64::from(in_use),
            in_use,
            ..Image::default()
        }
    }

    fn filesystem(signal: Signal, available_bytes: u64, inodes_free: u64) -> Filesystem {
        Filesystem {
            signal,
            path: "/".into(),
            mountpoint: "/".into(),
            fstype: "ext4".into(),
            capacity_bytes: 100_000 * MB,
            available_bytes,
            inodes: 1_000_000,
            inodes_free,
            threshold_bytes: 10_000 * MB,
            threshold_inodes: 50_000,
            bytes_left: 0,
            inodes_left: 0,
        }
    }

    /// Samples imagefs once a second for `seconds` from `start`: `available(s)` bytes,
    /// 500k free inodes falling by one a second, and whether a pull is in flight.
    fn sample_each_second(
        h: &mut History,
        start: Instant,
        seconds: std::ops::Range<u64>,
        available: impl Fn(u64) -> (u64, bool),
    ) {
        for s in seconds {
            let (bytes, pulling) = available(s);
            let fs = filesystem(Signal::Imagefs, bytes, 500_000 - s);
            h.sample(start + Duration::from_secs(s), &[fs], pulling);
        }
    }

    #[test]
    fn remembers_first_sight_and_last_use_and_forgets_removed_images() {
        let mut h = History::default();
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let t1 = t0 + Duration::from_secs(60);
        h.observe(&[image("a", true), image("b", false)], t0);
        h.observe(&[image("a", false), image("b", false)], t1);
        let a = image_key(&image("a", false));
        let b = image_key(&image("b", false));
        assert_eq!((h.first_seen(&a), h.last_used(&a)), (Some(t0), Some(t0)));
        assert_eq!((h.first_seen(&b), h.last_used(&b)), (Some(t0), None));
        h.observe(&[image("b", false)], t1);
        assert_eq!(h.first_seen(&a), None);
    }

    #[test]
    fn one_sample_gives_no_trend() {
        let mut h = History::default();
        h.sample(Instant::now(), &[filesystem(Signal::Imagefs, 50, 5)], false);
        assert_eq!(h.trends(Signal::Imagefs), (None, None));
        assert_eq!(h.trends(Signal::Nodefs), (None, None));
        assert_eq!(h.burst(Signal::Imagefs, BURST_WINDOW), None);
    }

    #[test]
    fn fifteen_minutes_of_samples_give_both_trends() {
        let mut h = History::default();
        let start = Instant::now();
        sample_each_second(&mut h, start, 0..900, |s| (40_000 * MB - s * MB, false));
        let (bytes, inodes) = h.trends(Signal::Imagefs);
        let (bytes, inodes) = (bytes.unwrap(), inodes.unwrap());
        assert_eq!((bytes.rate, inodes.rate), (-1e6, -1.0));
        assert!(bytes.filling() && inodes.filling());
        assert_eq!(h.trends(Signal::Nodefs), (None, None));
    }

    #[test]
    fn pulls_are_in_the_burst_but_not_in_the_trend() {
        // 15 flat minutes, then a pull writing 8 MB/s for 10 s.
        let mut h = History::default();
        let start = Instant::now();
        sample_each_second(&mut h, start, 0..911, |s| {
            let written = 8 * MB * s.saturating_sub(900);
            (40_000 * MB - written, s >= 900)
        });
        let (bytes, _) = h.trends(Signal::Imagefs);
        assert!(bytes.is_some_and(|t| t.rate == 0.0 && !t.filling()));
        let burst = h.burst(Signal::Imagefs, BURST_WINDOW).unwrap();
        assert_eq!(burst.rate, -8e6);
        assert!(burst.filling());
        assert_eq!(h.burst(Signal::Nodefs, BURST_WINDOW), None);
    }

    #[test]
    fn samples_are_bounded_to_an_hour() {
        let mut h = History::default();
        let start = Instant::now();
        sample_each_second(&mut h, start, 0..5000, |_| (40_000 * MB, false));
        let series = &h.signals[&Signal::Imagefs];
        assert_eq!(
            (series.bytes.len(), series.inodes.len()),
            (SAMPLES, SAMPLES)
        );
        // Two samples a second: still at most SAMPLES, over half an hour.
        let at = start + Duration::from_secs(5000);
        for i in 0..2 * SAMPLES as u64 {
            let fs = filesystem(Signal::Imagefs, 40_000 * MB, 1);
            h.sample(at + Duration::from_millis(500 * i), &[fs], false);
        }
        assert_eq!(h.signals[&Signal::Imagefs].bytes.len(), SAMPLES);
    }

    #[test]
    fn a_sample_before_the_first_is_dropped() {
        let mut h = History::default();
        let start = Instant::now() + Duration::from_secs(10);
        h.sample(start, &[filesystem(Signal::Imagefs, 50, 5)], false);
        h.sample(
            start - Duration::from_secs(5),
            &[filesystem(Signal::Imagefs, 50, 5)],
            false,
        );
        assert_eq!(h.signals[&Signal::Imagefs].bytes.len(), 1);
    }

    #[test]
    fn trends_are_worked_out_once_a_bin() {
        let mut h = History::default();
        let start = Instant::now();
        sample_each_second(&mut h, start, 0..900, |t| (40_000 * MB - t * MB, false));
        let before = h
            .trends(Signal::Imagefs)
            .0
            .expect("a steady fill is a trend");
        // A sample within the same bin changes nothing yet…
        // (worked out at 890 s, from samples at 0..=890 s)
        let at = start + Duration::from_millis(899_500);
        h.sample(at, &[filesystem(Signal::Imagefs, 10 * MB, 1)], false);
        assert_eq!(h.trends(Signal::Imagefs).0, Some(before));
        // …one a bin later is taken into account.
        h.sample(at + BIN, &[filesystem(Signal::Imagefs, 10 * MB, 1)], false);
        assert_ne!(h.trends(Signal::Imagefs).0, Some(before));
    }

    #[test]
    fn the_last_learned_unpack_ratio_outlives_its_images() {
        let mut h = History::default();
        assert_eq!(h.unpack_ratio(None), DEFAULT_UNPACK_RATIO);
        assert_eq!(h.unpack_ratio(Some(1.2)), 1.2);
        assert_eq!(
            h.unpack_ratio(None),
            1.2,
            "GC deleted the image it came from"
        );
        assert_eq!(h.unpack_ratio(Some(3.0)), 3.0);
    }
}
