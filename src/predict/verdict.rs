//! The verdict for one filesystem: is DiskPressure here, coming, or not in sight, and why.
//!
//! Each of the filesystem's two signals (`<fs>.available`, `<fs>.inodesFree`) is judged
//! in this order, the first that applies deciding:
//! 1. **pressure now**: the threshold is crossed (`available < threshold`, the kubelet's
//!    test);
//! 2. **pressure from pulls**: the bytes the pulls in flight will still add take the
//!    signal past the threshold, and one image GC pass on that projected state (when GC
//!    acts on this filesystem) does not really free enough to stay above it. When GC
//!    does free enough it is only a **warning**: the node depends on GC winning the race;
//! 3. **pressure from the trend**: at the estimated fill rate the threshold is crossed
//!    within the horizon. On a filesystem GC acts on, the bytes a GC pass at the threshold
//!    would really free postpone the crossing;
//! 4. **warning**: the pull case above; a pull of unknown size (a Docker pull) that, at
//!    the rate it fills the filesystem, crosses the threshold within
//!    [`UNSIZED_PULL_HORIZON`] (never pressure: it may end any second); image GC due now
//!    (usage at or above `imageGCHighThresholdPercent`); or a soft threshold crossed;
//! 5. **ok**, saying how much is left (and, when known, the pull's cost, the time the
//!    trend gives and the rate of a pull of unknown size).
//!
//! The trend leaves pulls out (see [`super::trend`]), so a pull that GC makes room for
//! stays a warning however fast it writes.
//!
//! The filesystem's verdict is its worse signal (bytes when equal). Image GC acts on
//! imagefs, and on nodefs when both are one filesystem: the caller says so by passing
//! [`FsInput::gc`] or not.

use std::time::Duration;

use super::gc::{GcOutcome, ImageGc};
use super::trend::Trend;
use crate::kubelet::Threshold;
use crate::model::{human_bytes, Prediction, Signal, State};

/// How far ahead a trend counts as predicted pressure, unless configured.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(3600);
/// How far ahead a pull of unknown size, at its current rate, is worth a warning.
pub const UNSIZED_PULL_HORIZON: Duration = Duration::from_secs(600);
/// What the reason calls a pull of unknown size: Docker's and containers-storage's (containerd
/// pulls are sized from their ingests).
const UNSIZED_PULL: &str = "a pull of unknown size (Docker's or containers-storage's)";

/// One signal of a filesystem: bytes (`available`) or inodes (`inodesFree`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dimension {
    /// Filesystem size in bytes, or total inodes.
    pub capacity: u64,
    /// Available bytes, or free inodes.
    pub available: u64,
    /// The hard eviction threshold; `None` when the kubelet enforces none.
    pub threshold: Option<Threshold>,
    /// The soft eviction threshold, if any.
    pub soft_threshold: Option<Threshold>,
    /// The estimated rate of `available`, if known.
    pub trend: Option<Trend>,
    /// What the pulls in flight will still add (0 when none).
    pub incoming: u64,
}

/// Everything the verdict for one filesystem needs.
#[derive(Debug, Clone, Copy)]
pub struct FsInput<'a> {
    /// `nodefs` or `imagefs`.
    pub name: Signal,
    /// The `available` signal.
    pub bytes: Dimension,
    /// The `inodesFree` signal.
    pub inodes: Dimension,
    /// Names of the pulls in flight behind `incoming` (may be empty).
    pub pulls: &'a [String],
    /// The kubelet's image GC when it frees space on this filesystem: always for
    /// imagefs, for nodefs only when it is the same filesystem.
    pub gc: Option<ImageGc<'a>>,
    /// How far ahead the trend counts as predicted pressure.
    pub horizon: Duration,
    /// The burst rate of a pull in flight whose size is unknown (e.g. a Docker pull;
    /// see `History::burst`), only on the filesystem it lands on; `None` otherwise.
    /// Bytes only.
    pub unsized_pull: Option<Trend>,
}

/// The verdict for one filesystem.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// How bad it is.
    pub state: State,
    /// Whether pressure is here or predicted (`state` is `Pressure`).
    pub predicted: bool,
    /// Seconds until the deciding threshold is crossed: 0 when it is, the trend's
    /// figure when the signal is filling, the unknown-size pull's when it warns, else
    /// `None` (pulls of known size have no known arrival time).
    pub seconds_until: Option<u64>,
    /// Available bytes once the pulls in flight have landed.
    pub projected_available_after_pull: i64,
    /// Available bytes after that and one image GC pass (the same when GC does not act).
    pub projected_available_after_gc: i64,
    /// That GC pass, when GC acts on this filesystem.
    pub gc: Option<GcOutcome>,
    /// One sentence for a human.
    pub reason: String,
}

impl Verdict {
    /// The verdict as the status document carries it.
    pub fn prediction(&self) -> Prediction {
        Prediction {
            predicted: self.predicted,
            state: self.state,
            seconds_until: self.seconds_until,
            projected_available_after_pull: self.projected_available_after_pull,
            projected_available_after_gc: self.projected_available_after_gc,
            reason: self.reason.clone(),
        }
    }
}

/// Judges one filesystem (see the module doc).
pub fn verdict(input: &FsInput<'_>) -> Verdict {
    let b = &input.bytes;
    let gc = input
        .gc
        .map(|gc| gc.simulate_after(b.capacity, b.available, b.incoming));
    let bytes = assess(input, Unit::Bytes, gc.as_ref());
    let inodes = assess(input, Unit::Inodes, gc.as_ref());
    let after_pull = clamp(i128::from(b.available) - i128::from(b.incoming));
    let after_gc = gc.as_ref().map_or(after_pull, |o| o.available_after);
    let chosen = if (inodes.state, inodes.enabled) > (bytes.state, bytes.enabled) {
        inodes
    } else {
        bytes
    };
    Verdict {
        state: chosen.state,
        predicted: chosen.state == State::Pressure,
        seconds_until: chosen.seconds_until,
        projected_available_after_pull: after_pull,
        projected_available_after_gc: after_gc,
        gc,
        reason: chosen.reason,
    }
}

/// The verdict on one signal.
struct Finding {
    state: State,
    /// Whether the signal has a hard threshold (a verdict on one with none says little).
    enabled: bool,
    seconds_until: Option<u64>,
    reason: String,
}

impl Finding {
    fn new(state: State, seconds_until: Option<u64>, reason: String) -> Finding {
        Finding {
            state,
            enabled: true,
            seconds_until,
            reason,
        }
    }
}

/// Judges one signal; `gc_pull` is the GC pass after the pulls land.
fn assess(input: &FsInput<'_>, unit: Unit, gc_pull: Option<&GcOutcome>) -> Finding {
    let fs = input.name;
    let dim = unit.of(input);
    // GC is triggered by bytes only; it frees inodes as a side effect.
    let gc_now = input
        .gc
        .filter(|_| unit == Unit::Bytes)
        .map(|gc| (gc.simulate(dim.capacity, dim.available), gc))
        .filter(|(o, _)| o.runs);
    let Some(threshold) = dim.threshold else {
        return unenforced(fs, unit, gc_now.as_ref());
    };
    let limit = threshold.resolve(dim.capacity);
    let label = unit.label(threshold);
    if dim.available < limit {
        let reason = format!(
            "{fs} has {}, below the {label} eviction threshold ({})",
            unit.available(dim.available),
            unit.amount(limit)
        );
        return Finding::new(State::Pressure, Some(0), reason);
    }
    let left = unit.amount(dim.available - limit);
    let pull = pull_effect(input, unit, limit, &label, gc_pull);
    let pull = match pull {
        PullEffect::Crosses(f) if f.state == State::Pressure => return f,
        other => other,
    };
    let crossing = crossing(input, unit, limit);
    if let Some(c) = crossing
        .as_ref()
        .filter(|c| c.seconds <= input.horizon.as_secs())
    {
        let after_gc = match c.postponed {
            0 => String::new(),
            freed => format!(", after image GC frees {}", human_bytes(freed)),
        };
        let reason = format!(
            "{fs} is filling at {}; the {label} threshold is crossed in {}{after_gc}",
            c.rate,
            approx(c.seconds)
        );
        return Finding::new(State::Pressure, Some(c.seconds), reason);
    }
    let seconds_until = crossing.as_ref().map(|c| c.seconds);
    if let PullEffect::Crosses(f) = pull {
        return Finding { seconds_until, ..f };
    }
    let unsized_pull = unsized_crossing(input, unit, limit);
    if let Some(f) = unsized_pull
        .as_ref()
        .and_then(|c| unsized_warning(fs, &label, c))
    {
        return f;
    }
    if let Some((o, gc)) = &gc_now {
        let reason = format!(
            "{}; {left} left above the {label} eviction threshold",
            gc_due(fs, o, gc)
        );
        return Finding::new(State::Warning, seconds_until, reason);
    }
    if let Some(soft) = dim
        .soft_threshold
        .filter(|soft| dim.available < soft.resolve(dim.capacity))
    {
        let reason = format!(
            "{fs} is past its {} soft eviction threshold; {left} left above the {label} hard one",
            unit.label(soft)
        );
        return Finding::new(State::Warning, seconds_until, reason);
    }
    let mut reason = format!("{fs} has {left} left above the {label} eviction threshold");
    if let PullEffect::Fits { left_after } = pull {
        reason += &format!(
            "; {} ~{}, leaving {}",
            pulls_add(input.pulls),
            unit.amount(dim.incoming),
            unit.amount(left_after)
        );
    }
    if let Some(c) = crossing {
        reason += &format!("; filling at {}, crossed in {}", c.rate, approx(c.seconds));
    }
    if let Some(c) = unsized_pull {
        reason += &format!(
            "; {UNSIZED_PULL} is filling it at {}, crossed in {} at that rate",
            c.rate,
            approx(c.seconds)
        );
    }
    Finding::new(State::Ok, seconds_until, reason)
}

/// The verdict on a signal the kubelet does not enforce: only image GC is worth a word.
fn unenforced(fs: Signal, unit: Unit, gc_now: Option<&(GcOutcome, ImageGc<'_>)>) -> Finding {
    let none = format!("{fs}.{} has no eviction threshold", unit.signal());
    let (state, reason) = match gc_now {
        Some((o, gc)) => (State::Warning, format!("{}; {none}", gc_due(fs, o, gc))),
        None => (State::Ok, none),
    };
    Finding {
        enabled: false,
        ..Finding::new(state, None, reason)
    }
}

/// When the trend crosses the threshold.
struct Crossing {
    /// Seconds from now.
    seconds: u64,
    /// Bytes a GC pass at the threshold really frees, which postpone the crossing.
    postponed: u64,
    /// The fill rate in words.
    rate: String,
}

/// When the signal, if its trend is filling, reaches `limit`, GC at the threshold
/// postponing it.
fn crossing(input: &FsInput<'_>, unit: Unit, limit: u64) -> Option<Crossing> {
    let dim = unit.of(input);
    // Not filling: spare the GC replay.
    dim.trend.filter(Trend::filling)?;
    let postponed = input
        .gc
        .filter(|_| unit == Unit::Bytes)
        .map_or(0, |gc| gc.simulate(dim.capacity, limit).freed_bytes);
    crossing_at(unit, dim.trend, dim.available, limit, postponed)
}

/// A warning when a pull of unknown size crosses the threshold within
/// [`UNSIZED_PULL_HORIZON`]; never pressure, since its size, hence its end, is unknown.
fn unsized_warning(fs: Signal, label: &str, c: &Crossing) -> Option<Finding> {
    if c.seconds > UNSIZED_PULL_HORIZON.as_secs() {
        return None;
    }
    let reason = format!(
        "{UNSIZED_PULL} is filling {fs} at {}; at this rate the {label} threshold is crossed \
         in {}",
        c.rate,
        approx(c.seconds)
    );
    Some(Finding::new(State::Warning, Some(c.seconds), reason))
}

/// When a pull of unknown size, if filling, takes the bytes to `limit` at its rate. GC
/// is left out: the pull may be over before GC's next pass.
fn unsized_crossing(input: &FsInput<'_>, unit: Unit, limit: u64) -> Option<Crossing> {
    let trend = input.unsized_pull.filter(|_| unit == Unit::Bytes);
    crossing_at(unit, trend, unit.of(input).available, limit, 0)
}

/// When `trend`, if filling, takes `available` plus `postponed` down to `limit`.
fn crossing_at(
    unit: Unit,
    trend: Option<Trend>,
    available: u64,
    limit: u64,
    postponed: u64,
) -> Option<Crossing> {
    let trend = trend.filter(Trend::filling)?;
    let seconds = trend.seconds_until(available.saturating_add(postponed), limit)?;
    Some(Crossing {
        seconds,
        postponed,
        rate: unit.rate(trend.rate),
    })
}

/// What the pulls in flight do to one signal.
enum PullEffect {
    /// No pulls.
    None,
    /// They fit, leaving this much above the threshold.
    Fits { left_after: u64 },
    /// They cross the threshold: pressure, or a warning when GC makes room.
    Crosses(Finding),
}

fn pull_effect(
    input: &FsInput<'_>,
    unit: Unit,
    limit: u64,
    label: &str,
    gc_pull: Option<&GcOutcome>,
) -> PullEffect {
    let dim = unit.of(input);
    if dim.incoming == 0 {
        return PullEffect::None;
    }
    let after_pull = i128::from(dim.available) - i128::from(dim.incoming);
    if after_pull >= i128::from(limit) {
        let left_after = u64::try_from(after_pull - i128::from(limit)).unwrap_or(0);
        return PullEffect::Fits { left_after };
    }
    let freed = gc_pull.filter(|o| o.runs).map_or(0, |o| unit.freed(o));
    let head = format!(
        "{} ~{}; {} has {} above the {label} threshold",
        pulls_add(input.pulls),
        unit.amount(dim.incoming),
        input.name,
        unit.amount(dim.available.saturating_sub(limit))
    );
    PullEffect::Crosses(if after_pull + i128::from(freed) >= i128::from(limit) {
        let reason = format!(
            "{head}; image GC can free {}, enough to stay above it",
            unit.amount(freed)
        );
        Finding::new(State::Warning, None, reason)
    } else {
        let reason = format!("{head}; {}", gc_clause(input, unit, gc_pull));
        Finding::new(State::Pressure, None, reason)
    })
}

/// What image GC does about a pull that crosses the threshold.
fn gc_clause(input: &FsInput<'_>, unit: Unit, outcome: Option<&GcOutcome>) -> String {
    let (Some(gc), Some(o)) = (input.gc, outcome) else {
        return format!("image GC does not free space on {}", input.name);
    };
    let freed = unit.freed(o);
    if !o.runs {
        format!(
            "image GC does not start below imageGCHighThresholdPercent ({}%)",
            gc.policy.high_percent
        )
    } else if o.deleted.is_empty() {
        gc.census().to_string()
    } else if unit == Unit::Bytes && o.credited_bytes > o.freed_bytes {
        format!(
            "image GC can free only {} (it counts {}; shared layers stay)",
            human_bytes(o.freed_bytes),
            human_bytes(o.credited_bytes)
        )
    } else {
        format!("image GC can free {}", unit.amount(freed))
    }
}

/// "imagefs is 87% used, at or above imageGCHighThresholdPercent (85%): image GC can
/// free 3.0 GB".
fn gc_due(fs: Signal, outcome: &GcOutcome, gc: &ImageGc<'_>) -> String {
    format!(
        "{fs} is {}% used, at or above imageGCHighThresholdPercent ({}%): image GC can free {}",
        outcome.usage_percent,
        gc.policy.high_percent,
        human_bytes(outcome.freed_bytes)
    )
}

/// "pull of X adds", "pulls of X and Y add", "3 pulls add".
fn pulls_add(pulls: &[String]) -> String {
    match pulls {
        [] => "pulls in flight add".to_string(),
        [one] => format!("pull of {one} adds"),
        [a, b] => format!("pulls of {a} and {b} add"),
        many => format!("{} pulls add", many.len()),
    }
}

/// A duration for humans: "~40 s", "~25 min", "~11 h", "~3 d".
fn approx(secs: u64) -> String {
    match secs {
        s if s < 90 => format!("~{s} s"),
        s if s < 90 * 60 => format!("~{} min", (s + 30) / 60),
        s if s < 48 * 3600 => format!("~{} h", (s + 1800) / 3600),
        s => format!("~{} d", (s + 43_200) / 86_400),
    }
}

fn clamp(x: i128) -> i64 {
    i64::try_from(x).unwrap_or(if x < 0 { i64::MIN } else { i64::MAX })
}

/// Which signal of the filesystem, and how to say its amounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Bytes,
    Inodes,
}

impl Unit {
    fn of(self, input: &FsInput<'_>) -> Dimension {
        match self {
            Unit::Bytes => input.bytes,
            Unit::Inodes => input.inodes,
        }
    }

    /// The kubelet signal suffix.
    fn signal(self) -> &'static str {
        match self {
            Unit::Bytes => "available",
            Unit::Inodes => "inodesFree",
        }
    }

    fn amount(self, n: u64) -> String {
        match self {
            Unit::Bytes => human_bytes(n),
            Unit::Inodes => format!("{n} inodes"),
        }
    }

    fn available(self, n: u64) -> String {
        match self {
            Unit::Bytes => format!("{} available", human_bytes(n)),
            Unit::Inodes => format!("{n} free inodes"),
        }
    }

    fn rate(self, per_second: f64) -> String {
        let r = per_second.abs();
        match self {
            Unit::Bytes => format!("{}/s", human_bytes(r.round() as u64)),
            Unit::Inodes if r >= 10.0 => format!("{r:.0} inodes/s"),
            Unit::Inodes => format!("{r:.1} inodes/s"),
        }
    }

    /// "15%", "2.0 GB", "1000-inode".
    fn label(self, threshold: Threshold) -> String {
        match (threshold, self) {
            (Threshold::Percent(p), _) => format!("{p}%"),
            (Threshold::Quantity(q), Unit::Bytes) => human_bytes(q),
            (Threshold::Quantity(q), Unit::Inodes) => format!("{q}-inode"),
        }
    }

    fn freed(self, outcome: &GcOutcome) -> u64 {
        match self {
            Unit::Bytes => outcome.freed_bytes,
            Unit::Inodes => outcome.freed_inodes,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::predict::gc::{GcImage, GcPolicy};

    const GB: u64 = 1_000_000_000;
    const MB: u64 = 1_000_000;
    const CAPACITY: u64 = 100 * GB;
    const INODES: u64 = 6_553_600;
    const PULL: &str = "registry.example/app:2";

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    /// An unused image, last used an hour ago, `credited` to the kubelet and really
    /// holding `unique` bytes of its own.
    fn image(id: &str, credited: u64, unique: u64) -> GcImage {
        GcImage {
            id: id.to_string(),
            credited_bytes: credited,
            unique_bytes: unique,
            unique_inodes: 0,
            shared: Vec::new(),
            in_use: false,
            pinned: false,
            last_used: Some(now() - Duration::from_secs(3600)),
            first_detected: now() - Duration::from_secs(86_400),
        }
    }

    fn dimension(capacity: u64, available: u64, threshold: Threshold) -> Dimension {
        Dimension {
            capacity,
            available,
            threshold: Some(threshold),
            soft_threshold: None,
            trend: None,
            incoming: 0,
        }
    }

    fn filling(bytes_per_second: f64) -> Option<Trend> {
        Some(Trend {
            rate: -bytes_per_second,
            significant: true,
            samples: 60,
            span: Duration::from_secs(600),
        })
    }

    /// imagefs of 100 GB with `available` bytes, the default thresholds (15%, 5%), 5.5M
    /// free inodes, default image GC over `images`.
    fn imagefs<'a>(available: u64, images: &'a [GcImage], pulls: &'a [String]) -> FsInput<'a> {
        FsInput {
            name: Signal::Imagefs,
            bytes: dimension(CAPACITY, available, Threshold::Percent(15.0)),
            inodes: dimension(INODES, 5_500_000, Threshold::Percent(5.0)),
            pulls,
            gc: Some(ImageGc {
                policy: GcPolicy::of(&crate::kubelet::KubeletConfig::defaults()),
                images,
                now: now(),
            }),
            horizon: DEFAULT_HORIZON,
            unsized_pull: None,
        }
    }

    /// nodefs of 100 GB on its own disk (no image GC), thresholds 10% and 5%.
    fn nodefs<'a>(available: u64, pulls: &'a [String]) -> FsInput<'a> {
        FsInput {
            name: Signal::Nodefs,
            bytes: dimension(CAPACITY, available, Threshold::Percent(10.0)),
            gc: None,
            ..imagefs(available, &[], pulls)
        }
    }

    fn pulls() -> Vec<String> {
        vec![PULL.to_string()]
    }

    // The thresholds as the kubelet resolves them (single-precision fractions):
    // 15% of 100 GB is 15_000_000_596 bytes, 10% is 10_000_000_149.

    #[test]
    fn plenty_left_is_ok() {
        let v = verdict(&imagefs(53_800_000_000, &[], &[]));
        assert_eq!(v.state, State::Ok);
        assert!(!v.predicted);
        assert_eq!(v.seconds_until, None);
        assert_eq!(
            v.reason,
            "imagefs has 38.8 GB left above the 15% eviction threshold"
        );
        assert_eq!(v.projected_available_after_pull, 53_800_000_000);
        assert_eq!(v.projected_available_after_gc, 53_800_000_000);
    }

    #[test]
    fn crossed_now_is_pressure() {
        let v = verdict(&imagefs(12 * GB, &[], &[]));
        assert_eq!(v.state, State::Pressure);
        assert!(v.predicted);
        assert_eq!(v.seconds_until, Some(0));
        assert_eq!(
            v.reason,
            "imagefs has 12.0 GB available, below the 15% eviction threshold (15.0 GB)"
        );
    }

    #[test]
    fn inodes_crossed_now_win_over_bytes() {
        // 5% of 6_553_600 inodes is 327_680.
        let mut input = imagefs(53_800_000_000, &[], &[]);
        input.inodes.available = 300_000;
        let v = verdict(&input);
        assert_eq!(v.state, State::Pressure);
        assert_eq!(v.seconds_until, Some(0));
        assert_eq!(
            v.reason,
            "imagefs has 300000 free inodes, below the 5% eviction threshold (327680 inodes)"
        );
    }

    #[test]
    fn a_pull_that_gc_cannot_make_room_for_is_pressure() {
        // 16.8 GB free (1.8 GB above 15%), a 2.9 GB pull: 13.9 GB, usage 87%, so GC
        // runs and deletes the one unused image, really freeing 0.4 GB: 14.3 GB < 15 GB.
        let images = [image("old", 400 * MB, 400 * MB)];
        let pulls = pulls();
        let mut input = imagefs(16_800_000_000, &images, &pulls);
        input.bytes.incoming = 2_900_000_000;
        let v = verdict(&input);
        assert_eq!(v.state, State::Pressure);
        assert!(v.predicted);
        assert_eq!(v.seconds_until, None);
        assert_eq!(
            v.reason,
            "pull of registry.example/app:2 adds ~2.9 GB; imagefs has 1.8 GB above the 15% \
             threshold; image GC can free 400.0 MB"
        );
        assert_eq!(v.projected_available_after_pull, 13_900_000_000);
        assert_eq!(v.projected_available_after_gc, 14_300_000_000);
        assert_eq!(v.gc.map(|o| o.deleted), Some(vec!["old".to_string()]));
    }

    #[test]
    fn a_pull_gc_makes_room_for_is_a_warning() {
        // As above, but the image really frees 3 GB: 16.9 GB stays above 15 GB.
        let images = [image("old", 3 * GB, 3 * GB)];
        let pulls = pulls();
        let mut input = imagefs(16_800_000_000, &images, &pulls);
        input.bytes.incoming = 2_900_000_000;
        let v = verdict(&input);
        assert_eq!(v.state, State::Warning);
        assert!(!v.predicted);
        assert_eq!(
            v.reason,
            "pull of registry.example/app:2 adds ~2.9 GB; imagefs has 1.8 GB above the 15% \
             threshold; image GC can free 3.0 GB, enough to stay above it"
        );
        assert_eq!(v.projected_available_after_gc, 16_900_000_000);
    }

    #[test]
    fn gc_credit_for_shared_layers_does_not_make_room() {
        // The kubelet credits 7 GB (more than the 6.1 GB it wants) but only 0.5 GB is
        // the image's own: 13.9 + 0.5 = 14.4 GB < 15 GB.
        let images = [image("old", 7 * GB, 500 * MB)];
        let pulls = pulls();
        let mut input = imagefs(16_800_000_000, &images, &pulls);
        input.bytes.incoming = 2_900_000_000;
        let v = verdict(&input);
        assert_eq!(v.state, State::Pressure);
        assert_eq!(
            v.reason,
            "pull of registry.example/app:2 adds ~2.9 GB; imagefs has 1.8 GB above the 15% \
             threshold; image GC can free only 500.0 MB (it counts 7.0 GB; shared layers stay)"
        );
        assert!(v.gc.is_some_and(|o| o.satisfied()));
    }

    #[test]
    fn a_pull_with_nothing_to_delete_is_pressure() {
        let images = [GcImage {
            in_use: true,
            ..image("running", 5 * GB, 5 * GB)
        }];
        let pulls = vec!["a:1".to_string(), "b:2".to_string()];
        let mut input = imagefs(16_800_000_000, &images, &pulls);
        input.bytes.incoming = 2_900_000_000;
        let v = verdict(&input);
        assert_eq!(
            v.reason,
            "pulls of a:1 and b:2 add ~2.9 GB; imagefs has 1.8 GB above the 15% threshold; \
             image GC may delete no image; 1 image in use is kept"
        );
    }

    #[test]
    fn gc_does_not_free_a_separate_nodefs() {
        // 11.8 GB free, 1.8 GB above 10%; the pull lands on nodefs (one disk seen as two
        // signals without GC is the caller's choice here).
        let pulls = pulls();
        let mut input = nodefs(11_800_000_000, &pulls);
        input.bytes.incoming = 2_900_000_000;
        let v = verdict(&input);
        assert_eq!(v.state, State::Pressure);
        assert_eq!(
            v.reason,
            "pull of registry.example/app:2 adds ~2.9 GB; nodefs has 1.8 GB above the 10% \
             threshold; image GC does not free space on nodefs"
        );
        assert_eq!(v.projected_available_after_gc, 8_900_000_000);
        assert_eq!(v.gc, None);
    }

    #[test]
    fn gc_that_does_not_start_is_said() {
        // A kubelet whose GC starts at 95% usage, with a threshold of 20 GB: the pull
        // leaves 18 GB (82% used), under both the threshold and GC's start.
        let images = [image("old", 5 * GB, 5 * GB)];
        let pulls = pulls();
        let mut input = imagefs(21 * GB, &images, &pulls);
        input.bytes.threshold = Some(Threshold::Quantity(20 * GB));
        input.bytes.incoming = 3 * GB;
        if let Some(gc) = input.gc.as_mut() {
            gc.policy.high_percent = 95;
        }
        let v = verdict(&input);
        assert_eq!(v.state, State::Pressure);
        assert_eq!(
            v.reason,
            "pull of registry.example/app:2 adds ~3.0 GB; imagefs has 1.0 GB above the 20.0 GB \
             threshold; image GC does not start below imageGCHighThresholdPercent (95%)"
        );
    }

    #[test]
    fn a_pull_that_fits_is_ok_and_said() {
        let pulls = pulls();
        let mut input = imagefs(53_800_000_000, &[], &pulls);
        input.bytes.incoming = 2_900_000_000;
        let v = verdict(&input);
        assert_eq!(v.state, State::Ok);
        assert_eq!(
            v.reason,
            "imagefs has 38.8 GB left above the 15% eviction threshold; pull of \
             registry.example/app:2 adds ~2.9 GB, leaving 35.9 GB"
        );
        assert_eq!(v.projected_available_after_pull, 50_900_000_000);
    }

    #[test]
    fn a_trend_crossing_within_the_horizon_is_pressure() {
        // 33 GB free, 18 GB (less 596 bytes) above 15%, at 12 MB/s: 1499 s. GC acts on
        // imagefs but has no image to delete, so it postpones nothing.
        let mut input = imagefs(33 * GB, &[], &[]);
        input.bytes.trend = filling(12e6);
        let v = verdict(&input);
        assert_eq!(v.state, State::Pressure);
        assert_eq!(v.seconds_until, Some(1499));
        assert_eq!(
            v.reason,
            "imagefs is filling at 12.0 MB/s; the 15% threshold is crossed in ~25 min"
        );
    }

    #[test]
    fn gc_at_the_threshold_postpones_the_crossing() {
        // At the threshold (15.0 GB free, usage 85%) GC wants 5 GB and deletes the 6 GB
        // image: (17_999_999_404 + 6e9) / 12e6 = 1999 s.
        let images = [image("old", 6 * GB, 6 * GB)];
        let mut input = imagefs(33 * GB, &images, &[]);
        input.bytes.trend = filling(12e6);
        let v = verdict(&input);
        assert_eq!(v.seconds_until, Some(1999));
        assert_eq!(
            v.reason,
            "imagefs is filling at 12.0 MB/s; the 15% threshold is crossed in ~33 min, \
             after image GC frees 6.0 GB"
        );
    }

    #[test]
    fn a_trend_beyond_the_horizon_is_ok_with_its_time() {
        // 38_799_999_404 bytes above at 1 MB/s: 38_799 s, ~11 h.
        let mut input = imagefs(53_800_000_000, &[], &[]);
        input.bytes.trend = filling(1e6);
        let v = verdict(&input);
        assert_eq!(v.state, State::Ok);
        assert_eq!(v.seconds_until, Some(38_799));
        assert_eq!(
            v.reason,
            "imagefs has 38.8 GB left above the 15% eviction threshold; filling at 1.0 MB/s, \
             crossed in ~11 h"
        );
        // A longer horizon makes it pressure.
        input.horizon = Duration::from_secs(12 * 3600);
        assert_eq!(verdict(&input).state, State::Pressure);
    }

    #[test]
    fn an_insignificant_trend_is_ignored() {
        let mut input = imagefs(53_800_000_000, &[], &[]);
        input.bytes.trend = filling(1e6).map(|t| Trend {
            significant: false,
            ..t
        });
        let v = verdict(&input);
        assert_eq!(v.seconds_until, None);
        assert_eq!(
            v.reason,
            "imagefs has 38.8 GB left above the 15% eviction threshold"
        );
    }

    /// A pull of unknown size filling at `bytes_per_second`, as `History::burst` reads it.
    fn unsized_pull(bytes_per_second: f64) -> Option<Trend> {
        Some(Trend {
            rate: -bytes_per_second,
            significant: true,
            samples: 11,
            span: Duration::from_secs(10),
        })
    }

    #[test]
    fn an_unsized_pull_crossing_soon_is_a_warning() {
        // 16.5 GB free, 1.5 GB (less 596 bytes) above 15%, at 8 MB/s: 187 s.
        let mut input = imagefs(16_500_000_000, &[], &[]);
        input.unsized_pull = unsized_pull(8e6);
        let v = verdict(&input);
        assert_eq!(v.state, State::Warning);
        assert!(!v.predicted);
        assert_eq!(v.seconds_until, Some(187));
        assert_eq!(
            v.reason,
            "a pull of unknown size (Docker's or containers-storage's) is filling imagefs at 8.0 MB/s; at this rate the \
             15% threshold is crossed in ~3 min"
        );
        // Never pressure, even seconds away; it speaks before image GC being due.
        let images = [image("old", 3 * GB, 3 * GB)];
        let mut input = imagefs(15_320_000_000, &images, &[]);
        input.unsized_pull = unsized_pull(8e6);
        let v = verdict(&input);
        assert_eq!((v.state, v.seconds_until), (State::Warning, Some(39)));
        assert_eq!(
            v.reason,
            "a pull of unknown size (Docker's or containers-storage's) is filling imagefs at 8.0 MB/s; at this rate the \
             15% threshold is crossed in ~39 s"
        );
    }

    #[test]
    fn an_unsized_pull_beyond_its_horizon_is_only_said() {
        // 4.8 GB above the threshold at 8 MB/s: 600 s, the horizon; a second more is ok.
        let mut input = imagefs(19_800_000_596, &[], &[]);
        input.unsized_pull = unsized_pull(8e6);
        let v = verdict(&input);
        assert_eq!((v.state, v.seconds_until), (State::Warning, Some(600)));
        input.bytes.available += 8_000_000;
        let v = verdict(&input);
        assert_eq!((v.state, v.seconds_until), (State::Ok, None));
        assert_eq!(
            v.reason,
            "imagefs has 4.8 GB left above the 15% eviction threshold; a pull of unknown size \
             (Docker's or containers-storage's) is filling it at 8.0 MB/s, crossed in ~10 min at that rate"
        );
    }

    #[test]
    fn an_unsized_pull_yields_to_pressure_and_to_no_rate() {
        // A trend crossing within the horizon is still pressure.
        let mut input = imagefs(33 * GB, &[], &[]);
        input.bytes.trend = filling(12e6);
        input.unsized_pull = unsized_pull(100e6);
        assert_eq!(verdict(&input).state, State::Pressure);
        // A burst that is not significant, or not filling, says nothing.
        let mut input = imagefs(16_500_000_000, &[], &[]);
        for trend in [
            unsized_pull(8e6).map(|t| Trend {
                significant: false,
                ..t
            }),
            unsized_pull(-8e6),
        ] {
            input.unsized_pull = trend;
            let v = verdict(&input);
            assert_eq!(v.state, State::Ok);
            assert_eq!(
                v.reason,
                "imagefs has 1.5 GB left above the 15% eviction threshold"
            );
        }
    }

    /// imagefs as the agent samples it: 100 GB with `available` bytes.
    fn sampled(available: u64) -> crate::model::Filesystem {
        crate::model::Filesystem {
            signal: Signal::Imagefs,
            path: "/var/lib/containerd".into(),
            mountpoint: "/".into(),
            fstype: "ext4".into(),
            capacity_bytes: CAPACITY,
            available_bytes: available,
            inodes: INODES,
            inodes_free: 5_500_000,
            threshold_bytes: 15 * GB,
            threshold_inodes: 327_680,
            bytes_left: 0,
            inodes_left: 0,
        }
    }

    #[test]
    fn a_pull_gc_makes_room_for_stays_a_warning_however_long_it_writes() {
        // The agent has sampled 2 flat minutes (0-2 MB of jitter) when a 4.5 GB pull
        // starts on 18 GB free (3 GB above 15%), writing 3 MB/s. GC can free the 3 GB
        // image: a warning. The kubelet's GC deletes it once usage reaches 85% (under
        // 16 GB free, 11 minutes in); the pull then fits. Taken as a trend, the pull's
        // writes would cross the threshold within the hour even after GC (pressure from
        // 10 minutes in): left out, they never turn the warning into pressure. 10 flat
        // minutes follow.
        use crate::predict::history::History;
        const RATE: u64 = 3 * MB;
        const PULL: std::ops::Range<u64> = 120..120 + 1_500;
        let start = std::time::Instant::now();
        let mut history = History::default();
        let old = [image("old", 3 * GB, 3 * GB)];
        let (mut images, mut freed, mut gc_ran) = (&old[..], 0, false);
        let pulls = pulls();
        for s in 0..PULL.end + 600 {
            let written = (s.saturating_sub(PULL.start) * RATE).min(1_500 * RATE);
            let pulling = PULL.contains(&s);
            let jitter = s.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 43;
            let mut available = 18 * GB + freed - written + jitter;
            if !gc_ran && available < 16 * GB {
                (images, freed, gc_ran) = (&old[..0], 3 * GB, true);
                available += freed;
            }
            let at = start + Duration::from_secs(s);
            history.sample(at, &[sampled(available)], pulling);
            if s % 10 != 0 {
                continue;
            }
            let in_flight: &[String] = if pulling { &pulls } else { &[] };
            let mut input = imagefs(available, images, in_flight);
            input.bytes.incoming = if pulling { 1_500 * RATE - written } else { 0 };
            (input.bytes.trend, input.inodes.trend) = history.trends(Signal::Imagefs);
            let v = verdict(&input);
            let expected = if pulling && !gc_ran {
                State::Warning
            } else {
                State::Ok
            };
            assert_eq!(v.state, expected, "at {s} s: {v:?}");
        }
        assert!(gc_ran);
    }

    #[test]
    fn an_inode_trend_is_judged_too() {
        // 5_500_000 - 327_680 = 5_172_320 inodes above at 2000 inodes/s: 2586 s.
        let mut input = imagefs(53_800_000_000, &[], &[]);
        input.inodes.trend = Some(Trend {
            rate: -2000.0,
            significant: true,
            samples: 60,
            span: Duration::from_secs(600),
        });
        let v = verdict(&input);
        assert_eq!(v.state, State::Pressure);
        assert_eq!(v.seconds_until, Some(2586));
        assert_eq!(
            v.reason,
            "imagefs is filling at 2000 inodes/s; the 5% threshold is crossed in ~43 min"
        );
    }

    #[test]
    fn gc_due_is_a_warning() {
        // 15.5 GB free: usage 100 - 15 = 85%; GC deletes the 3 GB image.
        let images = [image("old", 3 * GB, 3 * GB)];
        let v = verdict(&imagefs(15_500_000_000, &images, &[]));
        assert_eq!(v.state, State::Warning);
        assert!(!v.predicted);
        assert_eq!(
            v.reason,
            "imagefs is 85% used, at or above imageGCHighThresholdPercent (85%): image GC can \
             free 3.0 GB; 500.0 MB left above the 15% eviction threshold"
        );
    }

    #[test]
    fn a_soft_threshold_crossed_is_a_warning() {
        // 18 GB free on nodefs: past a 20 GB soft threshold, 8 GB above the 10% hard one.
        let mut input = nodefs(18 * GB, &[]);
        input.bytes.soft_threshold = Some(Threshold::Quantity(20 * GB));
        let v = verdict(&input);
        assert_eq!(v.state, State::Warning);
        assert_eq!(
            v.reason,
            "nodefs is past its 20.0 GB soft eviction threshold; 8.0 GB left above the 10% hard one"
        );
    }

    #[test]
    fn no_threshold_is_said() {
        let mut input = nodefs(18 * GB, &[]);
        input.bytes.threshold = None;
        input.inodes.threshold = None;
        let v = verdict(&input);
        assert_eq!(v.state, State::Ok);
        assert_eq!(v.reason, "nodefs.available has no eviction threshold");
        // With only the inode threshold set, the inode verdict speaks.
        input.inodes.threshold = Some(Threshold::Quantity(1000));
        assert_eq!(
            verdict(&input).reason,
            "nodefs has 5499000 inodes left above the 1000-inode eviction threshold"
        );
    }

    #[test]
    fn no_threshold_but_gc_due_is_a_warning() {
        let images = [image("old", 3 * GB, 3 * GB)];
        let mut input = imagefs(10 * GB, &images, &[]);
        input.bytes.threshold = None;
        let v = verdict(&input);
        assert_eq!(v.state, State::Warning);
        assert_eq!(
            v.reason,
            "imagefs is 90% used, at or above imageGCHighThresholdPercent (85%): image GC can \
             free 3.0 GB; imagefs.available has no eviction threshold"
        );
    }

    #[test]
    fn the_prediction_carries_the_verdict() {
        let p = verdict(&imagefs(12 * GB, &[], &[])).prediction();
        assert!(p.predicted);
        assert_eq!(p.state, State::Pressure);
        assert_eq!(p.seconds_until, Some(0));
        assert!(p.reason.starts_with("imagefs has 12.0 GB available"));
    }

    #[test]
    fn pulls_and_durations_in_words() {
        let names = |n: usize| (0..n).map(|i| format!("p{i}")).collect::<Vec<_>>();
        assert_eq!(pulls_add(&names(0)), "pulls in flight add");
        assert_eq!(pulls_add(&names(3)), "3 pulls add");
        assert_eq!(approx(40), "~40 s");
        assert_eq!(approx(90), "~2 min");
        assert_eq!(approx(1500), "~25 min");
        assert_eq!(approx(5400), "~2 h");
        assert_eq!(approx(3 * 86_400), "~3 d");
    }
}
