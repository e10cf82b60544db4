//! The rate at which a signal (available bytes, free inodes) moves, from recent samples.
//!
//! The agent samples each signal about once a second. On a real node that series is
//! mostly churn: pod logs grow, containers write scratch files and delete them, image GC
//! frees gigabytes at once, pulls land, and every sample carries some noise. A rate
//! extrapolated over an hour must come from what the node does *steadily*, so:
//!
//! 1. **Pulls are cut out, nothing else.** Samples taken while a pull was in flight, and
//!    for [`PULL_SETTLE`] after (unpack, cleanup), are dropped and the series is cut
//!    there: a pull changes the level, not the rate, and it is judged as a pull (its
//!    size, or [`burst`] when the size is unknown). Steps are *not* cut: cutting at the
//!    jumps up (deletions, GC) but keeping the falls before them turns write-then-delete
//!    churn into a steady fill, which is the bug this replaced.
//! 2. **Samples are binned** to one point per [`BIN`] (the median time and value of each
//!    bin), or coarser so that at most ~[`MAX_POINTS`] remain. 1-s samples are
//!    autocorrelated: the Mann–Kendall test below assumes independent points and would
//!    call noise a trend; the median also drops spikes shorter than half a bin.
//! 3. **Theil–Sen** over pairs of points within the same segment (the median of their
//!    pairwise slopes). Churn that writes and then deletes adds as many rising pairs as
//!    falling ones, and pairs far apart, the most numerous, see its net effect, which is
//!    nil: the median lands on the rate that persists. It ignores up to ~29% bad pairs.
//! 4. **A trend must be real and sustained.** Mann–Kendall on the same pairs decides
//!    whether there is a trend at all (a flat noisy series has a tiny median slope that
//!    must not become "crossed in ~300 years"). Then the net change must agree: with the
//!    segments spliced end to end (the pulls' level changes left out), *each half* of the
//!    usable span must move at least [`SUSTAINED`] × rate × its length, hence so must
//!    the whole. A single drop (a write never undone) or a sawtooth of writes and
//!    deletes fails this, however its pairs fall.
//!
//! Together with at least 10 minutes of usable span ([`TrendConfig::default`]) this pages
//! far less. The price: a step up from image GC is not cut either, so for a while after
//! a GC the pairs across it read a slower fill (or none) and the halves disagree, hiding
//! a real trend. That is accepted: GC acts near its high threshold, where image GC and
//! soft-threshold warnings speak anyway, and a false page costs more.

use std::collections::VecDeque;
use std::time::Duration;

/// At most about this many points enter the pairwise slopes (~33k pairs): long series
/// get wider bins.
pub const MAX_POINTS: usize = 256;
/// The narrowest bin: samples within it count as one point.
pub const BIN: Duration = Duration::from_secs(10);
/// How long after the last sample taken during a pull the disk still moves because of
/// it (unpacking, removing the downloaded blobs).
pub const PULL_SETTLE: Duration = Duration::from_secs(30);
/// Each half of the usable span must move at least this fraction of what the rate says.
pub const SUSTAINED: f64 = 0.5;
/// |z| of the Mann–Kendall statistic above which a trend is real (two-sided p ≈ 0.003).
const TREND_Z: f64 = 3.0;
/// Fewest samples a burst is estimated from.
const BURST_MIN_SAMPLES: usize = 5;
/// Shortest time a burst's samples must cover.
const BURST_MIN_SPAN: Duration = Duration::from_secs(5);

/// The `(time, value)` points of one segment, in time order.
type Points = Vec<(f64, f64)>;

/// What the estimator needs to trust a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendConfig {
    /// Fewest points (after binning) the usable segments must hold.
    pub min_points: usize,
    /// Shortest total time the usable segments must cover.
    pub min_span: Duration,
    /// How long samples after a pull still belong to it.
    pub settle: Duration,
    /// The narrowest bin.
    pub bin: Duration,
}

impl Default for TrendConfig {
    /// 10 minutes of usable samples in at least 8 bins of 10 s; pulls settle in 30 s.
    fn default() -> TrendConfig {
        TrendConfig {
            min_points: 8,
            min_span: Duration::from_secs(600),
            settle: PULL_SETTLE,
            bin: BIN,
        }
    }
}

/// One sample of a signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since any fixed origin on a monotonic clock.
    pub t: f64,
    /// Available bytes or free inodes.
    pub value: f64,
    /// Whether a pull was in flight when it was taken.
    pub pulling: bool,
}

/// A bounded, time-ordered ring of samples of one signal.
#[derive(Debug, Clone)]
pub struct Samples {
    points: VecDeque<Sample>,
    capacity: usize,
    max_age: f64,
}

impl Samples {
    /// Keeps at most `capacity` samples (at least 2), none older than `max_age` before the
    /// newest.
    pub fn new(capacity: usize, max_age: Duration) -> Samples {
        let capacity = capacity.max(2);
        Samples {
            points: VecDeque::with_capacity(capacity),
            capacity,
            max_age: max_age.as_secs_f64(),
        }
    }

    /// Adds a sample taken at `t` (time since any fixed origin on a monotonic clock), while
    /// a pull was in flight or not. A sample not later than the newest one is dropped.
    pub fn push(&mut self, t: Duration, value: u64, pulling: bool) {
        let t = t.as_secs_f64();
        if self.points.back().is_some_and(|last| t <= last.t) {
            return;
        }
        self.points.push_back(Sample {
            t,
            value: value as f64,
            pulling,
        });
        while self.points.len() > self.capacity
            || self.points.front().is_some_and(|s| t - s.t > self.max_age)
        {
            self.points.pop_front();
        }
    }

    /// How many samples are kept.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether no sample is kept.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The sustained rate of the kept samples; see [`estimate`].
    pub fn trend(&self, config: &TrendConfig) -> Option<Trend> {
        estimate(&self.to_vec(), config)
    }

    /// The rate over the last `window` of samples, pulls included; see [`burst`].
    pub fn burst(&self, window: Duration) -> Option<Trend> {
        burst(&self.to_vec(), window)
    }

    /// The samples in one slice (the ring may wrap, and `&self` cannot rotate it).
    fn to_vec(&self) -> Vec<Sample> {
        self.points.iter().copied().collect()
    }
}

/// A signal's estimated rate of change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Units (bytes, inodes) per second; negative when the filesystem is filling.
    pub rate: f64,
    /// Whether the samples show a trend at all (Mann–Kendall) and, for [`estimate`], one
    /// that the net change sustains; false for a flat series or churn.
    pub significant: bool,
    /// Samples the estimate rests on (before binning).
    pub samples: usize,
    /// Time those samples cover, pulls excluded.
    pub span: Duration,
}

impl Trend {
    /// Whether the signal is significantly falling.
    pub fn filling(&self) -> bool {
        self.significant && self.rate < 0.0
    }

    /// Seconds until `available` falls to `threshold` at this rate (0 if it already has);
    /// `None` unless the signal is [`filling`](Trend::filling).
    pub fn seconds_until(&self, available: u64, threshold: u64) -> Option<u64> {
        self.filling()
            .then(|| (available.saturating_sub(threshold) as f64 / -self.rate) as u64)
    }
}

/// The sustained rate of `samples` (strictly increasing in time), as the module doc
/// describes; `None` when the segments left once pulls are cut out hold fewer than
/// `min_points` bins or cover less than `min_span`, or when the times do not increase or a
/// figure is not finite.
pub fn estimate(samples: &[Sample], config: &TrendConfig) -> Option<Trend> {
    if !well_formed(samples) {
        return None;
    }
    let segments = settled_segments(samples, config.settle.as_secs_f64());
    let raw_span: f64 = segments.iter().map(|s| span_of(s)).sum();
    let width = config.bin.as_secs_f64().max(raw_span / MAX_POINTS as f64);
    let (kept, binned): (Vec<&[Sample]>, Vec<Points>) = segments
        .into_iter()
        .map(|s| (s, bin(s, width)))
        .filter(|(_, points)| points.len() >= 2)
        .unzip();
    let points: usize = binned.iter().map(Vec::len).sum();
    let span: f64 = kept.iter().map(|s| span_of(s)).sum();
    if points < config.min_points.max(2) || span < config.min_span.as_secs_f64() {
        return None;
    }
    let fit = fit(&binned)?;
    Some(Trend {
        rate: fit.rate,
        significant: fit.significant() && sustained(&binned, fit.rate),
        samples: kept.iter().map(|s| s.len()).sum(),
        span: Duration::from_secs_f64(span),
    })
}

/// The rate over the last `window` of `samples`, those taken during pulls included: how
/// fast a pull of unknown size fills the disk. Theil–Sen over the raw samples (a burst
/// is too short to bin), significant by Mann–Kendall; `None` with fewer than 5 samples,
/// less than 5 s between them, or a malformed series.
pub fn burst(samples: &[Sample], window: Duration) -> Option<Trend> {
    if !well_formed(samples) {
        return None;
    }
    let newest = samples.last()?.t;
    let recent = &samples[samples.partition_point(|s| s.t < newest - window.as_secs_f64())..];
    let span = span_of(recent);
    if recent.len() < BURST_MIN_SAMPLES || span < BURST_MIN_SPAN.as_secs_f64() {
        return None;
    }
    let stride = recent.len().div_ceil(MAX_POINTS);
    let points: Points = recent
        .iter()
        .step_by(stride)
        .map(|s| (s.t, s.value))
        .collect();
    let fit = fit(&[points])?;
    Some(Trend {
        rate: fit.rate,
        significant: fit.significant(),
        samples: recent.len(),
        span: Duration::from_secs_f64(span),
    })
}

/// Finite figures and strictly increasing times.
fn well_formed(samples: &[Sample]) -> bool {
    samples
        .iter()
        .all(|s| s.t.is_finite() && s.value.is_finite())
        && samples.windows(2).all(|w| w[1].t > w[0].t)
}

/// Time from the first to the last sample (0 when empty).
fn span_of(samples: &[Sample]) -> f64 {
    match (samples.first(), samples.last()) {
        (Some(first), Some(last)) => last.t - first.t,
        _ => 0.0,
    }
}

/// The runs of samples neither taken during a pull nor within `settle` seconds after one.
fn settled_segments(samples: &[Sample], settle: f64) -> Vec<&[Sample]> {
    let mut last_pull = f64::NEG_INFINITY;
    let mut out = Vec::new();
    let mut start = 0;
    for (i, s) in samples.iter().enumerate() {
        if s.pulling {
            last_pull = s.t;
        }
        if s.pulling || s.t - last_pull <= settle {
            if i > start {
                out.push(&samples[start..i]);
            }
            start = i + 1;
        }
    }
    if start < samples.len() {
        out.push(&samples[start..]);
    }
    out
}

/// One `(time, value)` point per `width` seconds of `segment` (from its first sample):
/// the medians of the times and of the values in that bin.
fn bin(segment: &[Sample], width: f64) -> Points {
    let Some(start) = segment.first().map(|s| s.t) else {
        return Vec::new();
    };
    let index = |s: &Sample| ((s.t - start) / width).floor();
    segment
        .chunk_by(|a, b| index(a) == index(b))
        .filter_map(|chunk| {
            let mut times: Vec<f64> = chunk.iter().map(|s| s.t).collect();
            let mut values: Vec<f64> = chunk.iter().map(|s| s.value).collect();
            Some((median(&mut times)?, median(&mut values)?))
        })
        .collect()
}

/// A Theil–Sen slope and its Mann–Kendall statistic.
struct Fit {
    rate: f64,
    z: f64,
}

impl Fit {
    fn significant(&self) -> bool {
        self.z.abs() >= TREND_Z
    }
}

/// Theil–Sen and Mann–Kendall over the pairs of points within each segment; `None`
/// without a pair.
fn fit(segments: &[Points]) -> Option<Fit> {
    let mut slopes = Vec::new();
    let (mut kendall_s, mut kendall_var) = (0.0, 0.0);
    for segment in segments {
        let n = segment.len() as f64;
        kendall_var += n * (n - 1.0) * (2.0 * n + 5.0) / 18.0;
        for (i, &(ti, vi)) in segment.iter().enumerate() {
            for &(tj, vj) in &segment[i + 1..] {
                let slope = (vj - vi) / (tj - ti);
                kendall_s += sign(slope);
                slopes.push(slope);
            }
        }
    }
    let rate = median(&mut slopes)?;
    let z = if kendall_var > 0.0 {
        kendall_s / kendall_var.sqrt()
    } else {
        0.0
    };
    Some(Fit { rate, z })
}

/// Whether the binned segments, spliced end to end, move in each half of their span by
/// at least [`SUSTAINED`] × `rate` × the half's length (see the module doc).
fn sustained(segments: &[Points], rate: f64) -> bool {
    // (usable time, cumulative change) at every point; nothing accrues across a cut.
    let mut spliced = Vec::new();
    let (mut offset, mut change) = (0.0, 0.0);
    for segment in segments {
        let (Some(&(t0, v0)), Some(&(t1, _))) = (segment.first(), segment.last()) else {
            continue;
        };
        spliced.extend(
            segment
                .iter()
                .map(|&(t, v)| (offset + t - t0, change + v - v0)),
        );
        offset += t1 - t0;
        change = spliced.last().map_or(change, |&(_, c)| c);
    }
    let middle = spliced.partition_point(|&(u, _)| u <= offset / 2.0);
    let halves = [
        (spliced.first(), spliced.get(middle.saturating_sub(1))),
        (spliced.get(middle.saturating_sub(1)), spliced.last()),
    ];
    halves.iter().all(|half| match half {
        (Some(&(u0, c0)), Some(&(u1, c1))) => {
            (c1 - c0) * rate.signum() >= SUSTAINED * rate.abs() * (u1 - u0)
        }
        _ => false,
    })
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The median (mean of the middle two for an even count); `None` when empty. Reorders.
fn median(values: &mut [f64]) -> Option<f64> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let (_, &mut upper, _) = values.select_nth_unstable_by(n / 2, f64::total_cmp);
    if n % 2 == 1 {
        return Some(upper);
    }
    let lower = values[..n / 2]
        .iter()
        .copied()
        .max_by(f64::total_cmp)
        .unwrap_or(upper);
    Some((lower + upper) / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: f64 = 1e9;
    const MB: f64 = 1e6;
    const KB: f64 = 1e3;

    /// `n` samples every `dt` seconds of `f(i, t)`, none during a pull.
    fn series(n: usize, dt: f64, mut f: impl FnMut(usize, f64) -> f64) -> Vec<Sample> {
        (0..n)
            .map(|i| {
                let t = i as f64 * dt;
                Sample {
                    t,
                    value: f(i, t),
                    pulling: false,
                }
            })
            .collect()
    }

    /// Deterministic uniform noise in [-amplitude, amplitude] (64-bit LCG, Knuth's MMIX).
    fn noise(seed: u64, amplitude: f64) -> impl FnMut() -> f64 {
        let mut state = seed;
        move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            (2.0 * unit - 1.0) * amplitude
        }
    }

    /// 1-s samples, one per `(value, pulling)`.
    fn per_second(values: impl IntoIterator<Item = (f64, bool)>) -> Vec<Sample> {
        values
            .into_iter()
            .enumerate()
            .map(|(i, (value, pulling))| Sample {
                t: i as f64,
                value,
                pulling,
            })
            .collect()
    }

    fn trend(points: &[Sample]) -> Option<Trend> {
        estimate(points, &TrendConfig::default())
    }

    fn filling(points: &[Sample]) -> bool {
        trend(points).is_some_and(|t| t.filling())
    }

    /// How a container writes 100 MB and deletes it, every 30 s.
    #[derive(Debug, Clone, Copy)]
    enum Churn {
        /// Written over 5 s, deleted at once.
        RampThenDelete,
        /// Written at once, kept 10 s, deleted at once.
        Instant,
        /// Written over 25 s, deleted at once.
        Sawtooth,
    }

    impl Churn {
        /// Bytes written `phase` seconds into the 30-s cycle.
        fn written(self, phase: u64) -> f64 {
            let ramp = |secs: u64| 100.0 * MB * (phase + 1).min(secs) as f64 / secs as f64;
            match self {
                Churn::RampThenDelete if phase < 5 => ramp(5),
                Churn::Instant if phase < 10 => 100.0 * MB,
                Churn::Sawtooth if phase < 25 => ramp(25),
                _ => 0.0,
            }
        }
    }

    /// The node: 1.5 GB free, a pod log at 42 kB/s, the container `churn`
    /// (starting `offset` s into its cycle), in every 10 minutes three 20 MB pulls of
    /// 10 s each (flagged) and an image removal freeing 30 MB, ±1 MB of noise: −55 MB
    /// net per 10 minutes.
    fn churning(minutes: u64, churn: Churn, offset: u64, seed: u64) -> Vec<Sample> {
        let mut jitter = noise(seed, MB);
        let (mut pulled, mut removed) = (0.0, 0.0);
        per_second((0..minutes * 60).map(|s| {
            let cycle = s % 600;
            let pulling = [120, 300, 480]
                .iter()
                .any(|&p| (p..p + 10).contains(&cycle));
            pulled += if pulling { 2.0 * MB } else { 0.0 };
            removed += if cycle == 390 { 30.0 * MB } else { 0.0 };
            let log = 42.0 * KB * s as f64;
            let value = 1.5 * GB - log - churn.written((s + offset) % 30) - pulled + removed;
            (value + jitter(), pulling)
        }))
    }

    /// Whether `trend` crosses a threshold 1.5 GB below within the hour.
    fn crosses_within_the_hour(trend: Option<Trend>) -> bool {
        trend
            .and_then(|t| t.seconds_until(1_500_000_000, 0))
            .is_some_and(|s| s <= 3600)
    }

    #[test]
    fn ten_minutes_of_churn_is_no_fill() {
        let short = TrendConfig {
            min_span: Duration::from_secs(120),
            ..TrendConfig::default()
        };
        for churn in [Churn::RampThenDelete, Churn::Instant, Churn::Sawtooth] {
            for offset in [0, 7, 13, 22] {
                let points = churning(10, churn, offset, offset + 1);
                let trend = trend(&points);
                assert!(!trend.is_some_and(|t| t.filling()), "{churn:?} {trend:?}");
                assert!(!crosses_within_the_hour(trend), "{churn:?} {trend:?}");
                // Not only for want of 10 minutes: with 2 the rate is still the log's.
                let trend = estimate(&points, &short).unwrap();
                assert!(reads_the_log(&trend), "{churn:?} {offset}: {trend:?}");
            }
        }
    }

    #[test]
    fn longer_churn_reads_as_the_log() {
        for churn in [Churn::RampThenDelete, Churn::Instant, Churn::Sawtooth] {
            for (minutes, offset) in [(20, 3), (30, 11), (60, 19)] {
                let points = churning(minutes, churn, offset, minutes);
                let trend = trend(&points).unwrap();
                assert!(reads_the_log(&trend), "{churn:?} {minutes} min: {trend:?}");
            }
        }
    }

    /// Whether `trend` is the churn's log (42 kB/s ± 15), which crosses 1.5 GB in ~10 h,
    /// not the writes of the churn (4 MB/s before this estimator).
    fn reads_the_log(trend: &Trend) -> bool {
        (trend.rate + 42.0 * KB).abs() < 15.0 * KB && !crosses_within_the_hour(Some(*trend))
    }

    #[test]
    fn a_steady_fill_needs_ten_minutes() {
        let mut jitter = noise(5, MB);
        let points = series(15 * 60, 1.0, |_, t| 40.0 * GB - MB * t + jitter());
        let trend = trend(&points).unwrap();
        let error = (trend.rate + MB).abs() / MB;
        assert!(error < 0.02, "rate {} is {error:.3} off", trend.rate);
        assert!(trend.filling());
        assert_eq!(trend.samples, 900);
        assert_eq!(trend.span, Duration::from_secs(899));
        assert_eq!(estimate(&points[..5 * 60], &TrendConfig::default()), None);
    }

    #[test]
    fn a_failed_pull_then_a_flat_disk_is_no_fill() {
        // 10 flat minutes, a pull writing 50 MB/s for 30 s until ENOSPC, 3 flat minutes.
        let mut jitter = noise(11, MB);
        let points = per_second((0..810).map(|s| {
            let written = 50.0 * MB * (s as f64 - 600.0).clamp(0.0, 30.0);
            (20.0 * GB - written + jitter(), (600..630).contains(&s))
        }));
        let trend = trend(&points).unwrap();
        assert!(!trend.filling(), "{trend:?}");
        // Both sides of the pull count; the 30 s after it do not.
        assert_eq!(trend.span, Duration::from_secs(599 + 149));
    }

    #[test]
    fn a_long_pull_is_never_extrapolated() {
        // 3 flat minutes, a 20-minute pull at 3 MB/s, 8 flat minutes: only the flat
        // 11 minutes count.
        let mut jitter = noise(13, MB);
        let points = per_second((0..31 * 60).map(|s| {
            let pulling = (180..1380).contains(&s);
            let written = 3.0 * MB * (s as f64 - 180.0).clamp(0.0, 1200.0);
            (30.0 * GB - written + jitter(), pulling)
        }));
        let trend = trend(&points).unwrap();
        assert!(!trend.filling(), "{trend:?}");
        assert!(trend.rate.abs() < 10.0 * KB, "{trend:?}");
    }

    #[test]
    fn samples_within_the_settle_time_after_a_pull_are_left_out() {
        // The pull's unpacking goes on 20 s after its last flagged sample.
        let points = per_second((0..1300).map(|s| {
            let written = 10.0 * MB * (s as f64 - 600.0).clamp(0.0, 40.0);
            (20.0 * GB - written, (600..620).contains(&s))
        }));
        let trend = trend(&points).unwrap();
        assert_eq!(trend.rate, 0.0);
        assert_eq!(trend.samples, 600 + 1300 - 650);
    }

    #[test]
    fn a_single_drop_is_not_a_sustained_trend() {
        // A container writes 1 GB in a minute and keeps it, 4 minutes into 15 flat ones.
        for start in [240.0, 400.0, 600.0] {
            let points = series(900, 1.0, |_, t| {
                20.0 * GB - GB * ((t - start) / 60.0).clamp(0.0, 1.0)
            });
            let trend = trend(&points).unwrap();
            assert!(!trend.filling(), "drop at {start}: {trend:?}");
        }
    }

    #[test]
    fn one_second_noise_is_not_a_trend() {
        // Binning keeps autocorrelated 1-s samples from inflating Mann–Kendall: a
        // random walk of ±1 MB steps around a flat disk.
        let mut step = noise(17, MB);
        let mut level = 20.0 * GB;
        let points = series(1800, 1.0, |_, _| {
            level += step();
            level
        });
        assert!(!filling(&points), "{:?}", trend(&points));
    }

    #[test]
    fn a_burst_reads_a_pull_within_ten_seconds() {
        // A flat minute, then a pull of unknown size writing 8 MB/s for 10 s.
        let mut jitter = noise(19, MB);
        let points = per_second((0..71).map(|s| {
            let written = 8.0 * MB * (s as f64 - 60.0).max(0.0);
            (20.0 * GB - written + jitter(), s >= 60)
        }));
        let burst = burst(&points, Duration::from_secs(10)).unwrap();
        let error = (burst.rate + 8.0 * MB).abs() / (8.0 * MB);
        assert!(error < 0.1, "rate {} is {error:.3} off", burst.rate);
        assert!(burst.filling());
        assert_eq!((burst.samples, burst.span), (11, Duration::from_secs(10)));
        // The trend leaves the pull out.
        assert_eq!(trend(&points), None);
    }

    #[test]
    fn a_burst_needs_five_samples_over_five_seconds() {
        let line = |_, t| 20.0 * GB - 8.0 * MB * t;
        let window = Duration::from_secs(10);
        assert_eq!(burst(&series(4, 2.0, line), window), None);
        assert_eq!(burst(&series(9, 0.5, line), window), None);
        assert_eq!(burst(&[], window), None);
        let five = burst(&series(5, 1.25, line), window).unwrap();
        assert_eq!(five.rate, -8.0 * MB);
        // Five points in a line are too few for Mann–Kendall at p ≈ 0.003.
        assert!(!five.significant);
        // Samples older than the window are left out.
        let long = burst(&series(100, 1.0, line), window).unwrap();
        assert_eq!((long.samples, long.span), (11, Duration::from_secs(10)));
        assert!(long.filling());
    }

    #[test]
    fn a_flat_burst_is_no_fill() {
        let mut jitter = noise(23, MB);
        let points = series(30, 1.0, |_, _| 20.0 * GB + jitter());
        let burst = burst(&points, Duration::from_secs(30)).unwrap();
        assert!(!burst.filling(), "{burst:?}");
    }

    #[test]
    fn clean_linear_fill_gives_the_exact_slope() {
        // 50 GB available, falling by 12 MB every second, sampled every 10 s for 10 min.
        let points = series(61, 10.0, |_, t| 50.0 * GB - 12.0 * MB * t);
        let trend = trend(&points).unwrap();
        assert_eq!(trend.rate, -12.0 * MB);
        assert!(trend.filling());
        assert_eq!(trend.samples, 61);
        assert_eq!(trend.span, Duration::from_secs(600));
    }

    #[test]
    fn noisy_fill_is_within_tolerance_of_the_true_slope() {
        // 5 MB/s for an hour, each sample off by up to ±100 MB (twice the fill of one
        // interval); binned from 361 to 256 points.
        let mut jitter = noise(42, 100.0 * MB);
        let points = series(361, 10.0, |_, t| 80.0 * GB - 5.0 * MB * t + jitter());
        let trend = trend(&points).unwrap();
        let error = (trend.rate + 5.0 * MB).abs() / (5.0 * MB);
        assert!(error < 0.03, "rate {} is {error:.3} off", trend.rate);
        assert!(trend.filling());
    }

    #[test]
    fn a_gc_step_slows_the_fill_but_never_speeds_it_up() {
        // Fill at 8 MB/s; at sample 30 image GC frees 2 GB; the fill goes on at 8 MB/s.
        // Steps are not cut: pairs across it read slower.
        let points = series(61, 10.0, |i, t| {
            let freed = if i >= 30 { 2.0 * GB } else { 0.0 };
            40.0 * GB - 8.0 * MB * t + freed
        });
        let trend = trend(&points).unwrap();
        assert!(trend.rate > -8.0 * MB && trend.rate < 0.0, "{trend:?}");
        assert_eq!(trend.span, Duration::from_secs(600));
    }

    #[test]
    fn a_step_just_before_now_keeps_the_rate_but_hides_the_trend() {
        // The rate is the median's; the second half now rises, so no trend until the
        // step is old enough (the price of not cutting steps).
        let points = series(70, 10.0, |i, t| {
            let freed = if i == 69 { 3.0 * GB } else { 0.0 };
            40.0 * GB - 4.0 * MB * t + freed
        });
        let trend = trend(&points).unwrap();
        assert_eq!(trend.rate, -4.0 * MB);
        assert_eq!(trend.samples, 70);
        assert!(!trend.filling());
    }

    #[test]
    fn a_gc_step_in_noise_never_reads_as_a_faster_fill() {
        // 5 MB/s with ±100 MB of noise; image GC frees 2 GB at sample 200.
        let mut jitter = noise(3, 100.0 * MB);
        let points = series(361, 10.0, |i, t| {
            let freed = if i >= 200 { 2.0 * GB } else { 0.0 };
            80.0 * GB - 5.0 * MB * t + freed + jitter()
        });
        let trend = trend(&points).unwrap();
        assert!(trend.rate > -5.0 * MB && trend.rate < 0.0, "{trend:?}");
    }

    #[test]
    fn times_that_do_not_increase_are_refused() {
        let mut points = series(70, 10.0, |_, t| 50.0 * GB - MB * t);
        assert!(trend(&points).is_some());
        points[10].t = points[9].t;
        assert_eq!(trend(&points), None);
        assert_eq!(burst(&points, Duration::from_secs(3600)), None);
        points[10].t = f64::NAN;
        assert_eq!(trend(&points), None);
    }

    #[test]
    fn a_flat_series_predicts_nothing() {
        let points = series(61, 10.0, |_, _| 30.0 * GB);
        let trend = trend(&points).unwrap();
        assert_eq!(trend.rate, 0.0);
        assert!(!trend.significant);
        assert_eq!(trend.seconds_until(30_000_000_000, 10_000_000_000), None);
    }

    #[test]
    fn a_flat_noisy_series_is_not_a_trend() {
        let mut jitter = noise(7, 50.0 * MB);
        let points = series(120, 10.0, |_, _| 30.0 * GB + jitter());
        let trend = trend(&points).unwrap();
        assert!(!trend.significant, "{trend:?}");
        assert_eq!(trend.seconds_until(30_000_000_000, 10_000_000_000), None);
    }

    #[test]
    fn a_draining_series_is_no_pressure() {
        // Available rises by 1 MB every second (something is deleting).
        let points = series(61, 10.0, |_, t| 20.0 * GB + MB * t);
        let trend = trend(&points).unwrap();
        assert_eq!(trend.rate, MB);
        assert!(trend.significant);
        assert!(!trend.filling());
        assert_eq!(trend.seconds_until(20_000_000_000, 15_000_000_000), None);
    }

    #[test]
    fn too_few_points_or_too_short_a_span_is_none() {
        let line = |_, t| 50.0 * GB - MB * t;
        // 7 points over 10 minutes; 8 are enough.
        assert_eq!(trend(&series(7, 100.0, line)), None);
        assert!(trend(&series(8, 100.0, line)).is_some());
        assert_eq!(trend(&series(0, 60.0, line)), None);
        // 599 samples over 598 s.
        assert_eq!(trend(&series(599, 1.0, line)), None);
        // A pull halfway through leaves two segments of 10 minutes together, less its
        // 30 s of settling: 329 + 258 s.
        let cut = |n, pull: std::ops::Range<usize>| {
            let mut points = series(n, 1.0, line);
            points[pull].iter_mut().for_each(|s| s.pulling = true);
            points
        };
        assert_eq!(trend(&cut(620, 330..331)), None);
        assert_eq!(
            trend(&cut(660, 330..331)).map(|t| t.span.as_secs()),
            Some(329 + 298)
        );
        // A pull at the very start leaves 10 minutes once it has settled.
        assert_eq!(trend(&cut(660, 0..29)).map(|t| t.span.as_secs()), Some(600));
    }

    #[test]
    fn a_single_spike_does_not_move_the_rate() {
        for spike in [-5.0 * GB, 5.0 * GB] {
            let points = series(61, 10.0, |i, t| {
                50.0 * GB - 2.0 * MB * t + if i == 25 { spike } else { 0.0 }
            });
            let trend = trend(&points).unwrap();
            assert_eq!(trend.rate, -2.0 * MB, "spike {spike}");
            assert!(trend.filling());
        }
    }

    #[test]
    fn seconds_until_divides_the_headroom_by_the_rate() {
        let trend = Trend {
            rate: -12e6,
            significant: true,
            samples: 60,
            span: Duration::from_secs(600),
        };
        // 18 GB above the threshold at 12 MB/s: 1500 s.
        assert_eq!(
            trend.seconds_until(33_000_000_000, 15_000_000_000),
            Some(1500)
        );
        assert_eq!(trend.seconds_until(1, 15_000_000_000), Some(0));
    }

    #[test]
    fn samples_are_bounded_by_count_and_age() {
        let mut samples = Samples::new(5, Duration::from_secs(100));
        for i in 0..10 {
            samples.push(Duration::from_secs(i * 10), 1000 - i, false);
        }
        assert_eq!(samples.len(), 5);
        // Out of order and duplicate times are dropped.
        samples.push(Duration::from_secs(10), 7, false);
        samples.push(Duration::from_secs(90), 7, false);
        assert_eq!(samples.len(), 5);
        // A sample 200 s later leaves every older one behind.
        samples.push(Duration::from_secs(290), 1, true);
        assert_eq!(samples.len(), 1);
        assert!(!samples.is_empty());
    }

    #[test]
    fn samples_estimate_their_trend_and_burst() {
        let mut samples = Samples::new(720, Duration::from_secs(3600));
        for i in 0..61u64 {
            samples.push(
                Duration::from_secs(i * 10),
                10_000_000_000 - i * 30_000_000,
                false,
            );
        }
        assert_eq!(samples.trend(&TrendConfig::default()).unwrap().rate, -3e6);
        for i in 61..70u64 {
            samples.push(
                Duration::from_secs(i * 10),
                8_000_000_000 - i * 80_000_000,
                true,
            );
        }
        let burst = samples.burst(Duration::from_secs(80)).unwrap();
        assert_eq!((burst.rate, burst.samples), (-8e6, 9));
        // The pull is cut out of the trend (and its 30 s of settling would be too).
        assert_eq!(samples.trend(&TrendConfig::default()).unwrap().rate, -3e6);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
