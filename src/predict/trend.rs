//! The rate at which a signal (available bytes, free inodes) moves, from recent samples.
//!
//! `available` on a node falls steadily as logs and writable layers grow, then jumps up
//! when image GC deletes images or a container is removed, and every sample carries some
//! noise. A least-squares line through such a series is dragged up by the jumps (a GC
//! that frees 2 GB can turn a filling disk into a "draining" one) and by single outliers.
//!
//! The estimator here:
//! 1. cuts the series at *step-ups*: an interval whose rise exceeds what the median rate
//!    explains by more than `max(min_step, 6 σ)`, σ being the robust spread (1.4826 × the
//!    median absolute deviation) of those excesses. GC and deletions change the level, not
//!    the rate at which workloads write;
//! 2. takes the Theil–Sen slope over pairs of samples *within* the same segment: the median
//!    of their pairwise slopes. Pairs across a step are left out, so a step does not dilute
//!    the rate; the segments before the last step still count, so a GC a minute ago does
//!    not leave the estimate without data. The median ignores up to ~29% bad pairs, so a
//!    single spike does not move it. Long series are thinned to [`MAX_POINTS`] evenly
//!    spaced samples to bound the cost at ~33k pairs;
//! 3. decides whether there is a trend at all with the Mann–Kendall test on the same
//!    pairs (the sign of each pairwise slope): a flat, noisy series has a median slope
//!    that is tiny but not zero, which must not turn into "crossed in ~300 years".

use std::collections::VecDeque;
use std::time::Duration;

/// At most this many samples enter the pairwise slopes; longer series are thinned.
pub const MAX_POINTS: usize = 256;
/// A rise more than this many robust standard deviations above the median rate is a step.
const STEP_SIGMAS: f64 = 6.0;
/// 1.4826 × MAD estimates the standard deviation of normal noise.
const MAD_TO_SIGMA: f64 = 1.4826;
/// |z| of the Mann–Kendall statistic above which a trend is real (two-sided p ≈ 0.003).
const TREND_Z: f64 = 3.0;

/// What the estimator needs to trust a series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrendConfig {
    /// Fewest samples (in segments of two or more) to estimate from.
    pub min_samples: usize,
    /// Shortest total time the segments must cover.
    pub min_span: Duration,
    /// Smallest rise (bytes or inodes) that can be a step, whatever the noise.
    pub min_step: f64,
}

impl TrendConfig {
    /// For `available` bytes: 8 samples over 2 minutes; steps of 64 MB or more.
    pub fn bytes() -> TrendConfig {
        TrendConfig {
            min_samples: 8,
            min_span: Duration::from_secs(120),
            min_step: 64e6,
        }
    }

    /// For free inodes: 8 samples over 2 minutes; steps of 1000 inodes or more.
    pub fn inodes() -> TrendConfig {
        TrendConfig {
            min_step: 1000.0,
            ..TrendConfig::bytes()
        }
    }
}

/// A bounded, time-ordered ring of `(time, value)` samples of one signal.
#[derive(Debug, Clone)]
pub struct Samples {
    points: VecDeque<(f64, f64)>,
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

    /// Adds a sample taken at `t` (time since any fixed origin on a monotonic clock). A
    /// sample not later than the newest one is dropped.
    pub fn push(&mut self, t: Duration, value: u64) {
        let t = t.as_secs_f64();
        if self.points.back().is_some_and(|&(last, _)| t <= last) {
            return;
        }
        self.points.push_back((t, value as f64));
        while self.points.len() > self.capacity
            || self
                .points
                .front()
                .is_some_and(|&(t0, _)| t - t0 > self.max_age)
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

    /// The rate of the kept samples; see [`estimate`].
    pub fn trend(&self, config: &TrendConfig) -> Option<Trend> {
        let points: Vec<(f64, f64)> = self.points.iter().copied().collect();
        estimate(&points, config)
    }
}

/// A signal's estimated rate of change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Trend {
    /// Units (bytes, inodes) per second; negative when the filesystem is filling.
    pub rate: f64,
    /// Whether the samples show a trend at all (Mann–Kendall); false for a flat series.
    pub significant: bool,
    /// Samples the estimate rests on.
    pub samples: usize,
    /// Time those samples cover, steps excluded.
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

/// Estimates the rate of `points` (`(seconds, value)`, strictly increasing in time); `None`
/// when too few samples or too short a span remain once the series is cut at its steps,
/// or when the times do not increase or a figure is not finite.
pub fn estimate(points: &[(f64, f64)], config: &TrendConfig) -> Option<Trend> {
    let finite = points.iter().all(|p| p.0.is_finite() && p.1.is_finite());
    if !finite || points.windows(2).any(|w| w[1].0 <= w[0].0) {
        return None;
    }
    let segments = segments(points, config.min_step);
    let usable: Vec<&[(f64, f64)]> = segments.into_iter().filter(|s| s.len() >= 2).collect();
    let samples: usize = usable.iter().map(|s| s.len()).sum();
    let span: f64 = usable.iter().map(|s| s[s.len() - 1].0 - s[0].0).sum();
    if samples < config.min_samples.max(2) || span < config.min_span.as_secs_f64() {
        return None;
    }
    let stride = samples.div_ceil(MAX_POINTS);
    let mut slopes = Vec::new();
    let (mut kendall_s, mut kendall_var) = (0.0, 0.0);
    for segment in usable {
        let thinned: Vec<(f64, f64)> = segment.iter().copied().step_by(stride).collect();
        let n = thinned.len() as f64;
        kendall_var += n * (n - 1.0) * (2.0 * n + 5.0) / 18.0;
        for (i, &(ti, vi)) in thinned.iter().enumerate() {
            for &(tj, vj) in &thinned[i + 1..] {
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
    Some(Trend {
        rate,
        significant: z.abs() >= TREND_Z,
        samples,
        span: Duration::from_secs_f64(span),
    })
}

/// Cuts `points` before every step-up (see the module doc).
fn segments(points: &[(f64, f64)], min_step: f64) -> Vec<&[(f64, f64)]> {
    let mut rates: Vec<f64> = points
        .windows(2)
        .map(|w| (w[1].1 - w[0].1) / (w[1].0 - w[0].0))
        .collect();
    let Some(typical_rate) = median(&mut rates) else {
        return vec![points];
    };
    let excess: Vec<f64> = points
        .windows(2)
        .map(|w| (w[1].1 - w[0].1) - typical_rate * (w[1].0 - w[0].0))
        .collect();
    let mut deviations: Vec<f64> = excess.iter().map(|e| e.abs()).collect();
    let sigma = MAD_TO_SIGMA * median(&mut deviations).unwrap_or(0.0);
    let limit = min_step.max(STEP_SIGMAS * sigma);
    let mut out = Vec::new();
    let mut start = 0;
    for (i, &e) in excess.iter().enumerate() {
        if e > limit {
            out.push(&points[start..=i]);
            start = i + 1;
        }
    }
    out.push(&points[start..]);
    out
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

    /// `n` samples every `dt` seconds of `f(t)`.
    fn series(n: usize, dt: f64, mut f: impl FnMut(usize, f64) -> f64) -> Vec<(f64, f64)> {
        (0..n)
            .map(|i| {
                let t = i as f64 * dt;
                (t, f(i, t))
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

    fn trend(points: &[(f64, f64)]) -> Option<Trend> {
        estimate(points, &TrendConfig::bytes())
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
        // interval); thinned from 361 to 181 points.
        let mut jitter = noise(42, 100.0 * MB);
        let points = series(361, 10.0, |_, t| 80.0 * GB - 5.0 * MB * t + jitter());
        let trend = trend(&points).unwrap();
        let error = (trend.rate + 5.0 * MB).abs() / (5.0 * MB);
        assert!(error < 0.03, "rate {} is {error:.3} off", trend.rate);
        assert!(trend.filling());
    }

    #[test]
    fn a_gc_step_does_not_dilute_the_fill_rate() {
        // Fill at 8 MB/s; at sample 30 image GC frees 2 GB; the fill goes on at 8 MB/s.
        let points = series(60, 10.0, |i, t| {
            let freed = if i >= 30 { 2.0 * GB } else { 0.0 };
            40.0 * GB - 8.0 * MB * t + freed
        });
        let trend = trend(&points).unwrap();
        assert_eq!(trend.rate, -8.0 * MB);
        // The interval across the step is not counted in the span.
        assert_eq!(trend.span, Duration::from_secs(580));
    }

    #[test]
    fn a_step_just_before_now_keeps_the_earlier_rate() {
        let points = series(40, 10.0, |i, t| {
            let freed = if i == 39 { 3.0 * GB } else { 0.0 };
            40.0 * GB - 4.0 * MB * t + freed
        });
        let trend = trend(&points).unwrap();
        assert_eq!(trend.rate, -4.0 * MB);
        assert_eq!(trend.samples, 39);
    }

    #[test]
    fn a_gc_step_in_noise_is_still_found() {
        // 5 MB/s with ±100 MB of noise; image GC frees 2 GB at sample 200.
        let mut jitter = noise(3, 100.0 * MB);
        let points = series(361, 10.0, |i, t| {
            let freed = if i >= 200 { 2.0 * GB } else { 0.0 };
            80.0 * GB - 5.0 * MB * t + freed + jitter()
        });
        let trend = trend(&points).unwrap();
        let error = (trend.rate + 5.0 * MB).abs() / (5.0 * MB);
        assert!(error < 0.03, "rate {} is {error:.3} off", trend.rate);
    }

    #[test]
    fn times_that_do_not_increase_are_refused() {
        let mut points = series(20, 10.0, |_, t| 50.0 * GB - MB * t);
        points[10].0 = points[9].0;
        assert_eq!(trend(&points), None);
        points[10].0 = f64::NAN;
        assert_eq!(trend(&points), None);
    }

    #[test]
    fn a_flat_series_predicts_nothing() {
        let points = series(60, 10.0, |_, _| 30.0 * GB);
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
        let points = series(60, 10.0, |_, t| 20.0 * GB + MB * t);
        let trend = trend(&points).unwrap();
        assert_eq!(trend.rate, MB);
        assert!(!trend.filling());
        assert_eq!(trend.seconds_until(20_000_000_000, 15_000_000_000), None);
    }

    #[test]
    fn too_few_samples_or_too_short_a_span_is_none() {
        let line = |_, t| 50.0 * GB - MB * t;
        assert_eq!(trend(&series(7, 60.0, line)), None);
        assert_eq!(trend(&series(0, 60.0, line)), None);
        // 20 samples, but over 19 s.
        assert_eq!(trend(&series(20, 1.0, line)), None);
        // Two segments of 5 samples each: 10 samples, but every segment counts alone.
        let stepped = series(10, 30.0, |i, t| {
            50.0 * GB - MB * t + if i >= 5 { GB } else { 0.0 }
        });
        assert!(trend(&stepped).is_some());
        let lone = series(9, 30.0, |i, t| {
            50.0 * GB - MB * t + if i == 8 { GB } else { 0.0 }
        });
        // The sample after the step is alone in its segment: 8 usable samples remain.
        assert_eq!(trend(&lone).map(|t| t.samples), Some(8));
    }

    #[test]
    fn a_single_spike_does_not_move_the_rate() {
        for spike in [-5.0 * GB, 5.0 * GB] {
            let points = series(60, 10.0, |i, t| {
                50.0 * GB - 2.0 * MB * t + if i == 25 { spike } else { 0.0 }
            });
            let trend = trend(&points).unwrap();
            assert_eq!(trend.rate, -2.0 * MB, "spike {spike}");
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
            samples.push(Duration::from_secs(i * 10), 1000 - i);
        }
        assert_eq!(samples.len(), 5);
        // Out of order and duplicate times are dropped.
        samples.push(Duration::from_secs(10), 7);
        samples.push(Duration::from_secs(90), 7);
        assert_eq!(samples.len(), 5);
        // A sample 200 s later leaves every older one behind.
        samples.push(Duration::from_secs(290), 1);
        assert_eq!(samples.len(), 1);
        assert!(!samples.is_empty());
    }

    #[test]
    fn samples_estimate_their_trend() {
        let mut samples = Samples::new(720, Duration::from_secs(3600));
        for i in 0..30u64 {
            samples.push(Duration::from_secs(i * 10), 10_000_000_000 - i * 30_000_000);
        }
        let trend = samples.trend(&TrendConfig::bytes()).unwrap();
        assert_eq!(trend.rate, -3e6);
    }

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
