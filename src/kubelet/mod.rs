//! The parts of the kubelet configuration that decide DiskPressure and image GC.
//!
//! Headroom predicts what the kubelet will do, so it reads the kubelet's own config
//! file (`KubeletConfiguration` YAML, usually `/var/lib/kubelet/config.yaml`) and
//! applies the kubelet's rules to it rather than assuming the defaults:
//!
//! - `evictionHard` absent (or null): the Linux defaults `nodefs.available<10%`,
//!   `nodefs.inodesFree<5%`, `imagefs.available<15%`, `imagefs.inodesFree<5%`.
//! - `evictionHard` present, even as `{}`: only the signals it names are enforced; every
//!   other hard signal is disabled, unless `mergeDefaultEvictionSettings: true`, which
//!   fills each signal the map does not name with its default (the kubelet's
//!   `loadConfigFile`).
//! - `evictionSoft` has no defaults.
//! - A threshold is `"<n>%"` of the filesystem's capacity or a Kubernetes quantity.
//!   `"0%"` and `"100%"` (exactly) disable the signal, as the kubelet's
//!   `parseThresholdStatement` does.
//! - `imageGCHighThresholdPercent` 85, `imageGCLowThresholdPercent` 80 and
//!   `imageMinimumGCAge` 2m unless set; both percentages within 0–100, low below high.
//!
//! The `--config-dir` drop-ins and the threshold flags are applied on top as
//! the kubelet applies them ([`sources`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::runtime::{Classified, ProblemKind};

pub mod sources;

pub use sources::{load_all, KubeletFlags, KubeletSources};

/// A kubelet disk eviction signal.
///
/// The kubelet also has `containerfs.available` and `containerfs.inodesFree`, but a user
/// cannot set them: it ignores such keys ("found containerfs.available for hard eviction.
/// ignoring") and copies the nodefs thresholds (one disk, or a split disk where the
/// writable layers live on nodefs) or the imagefs thresholds (a dedicated imagefs holding
/// images and writable layers). A containerfs check is therefore the nodefs or imagefs
/// check of the filesystem holding the writable layers, and needs no signal of its own;
/// `containerfs.*` keys in the file are ignored here too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    /// `nodefs.available`
    NodefsAvailable,
    /// `nodefs.inodesFree`
    NodefsInodesFree,
    /// `imagefs.available`
    ImagefsAvailable,
    /// `imagefs.inodesFree`
    ImagefsInodesFree,
}

impl Signal {
    /// Every disk signal Headroom models.
    pub const ALL: [Signal; 4] = [
        Signal::NodefsAvailable,
        Signal::NodefsInodesFree,
        Signal::ImagefsAvailable,
        Signal::ImagefsInodesFree,
    ];

    /// The kubelet's name for the signal, e.g. `nodefs.available`.
    pub fn name(self) -> &'static str {
        match self {
            Signal::NodefsAvailable => "nodefs.available",
            Signal::NodefsInodesFree => "nodefs.inodesFree",
            Signal::ImagefsAvailable => "imagefs.available",
            Signal::ImagefsInodesFree => "imagefs.inodesFree",
        }
    }

    /// The signal with the kubelet's `name`; `None` for any other signal (memory,
    /// pid, containerfs) or an unknown name.
    pub fn parse(name: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A threshold as written in the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    /// A percentage of capacity, as written (`10.0` for `"10%"`). Single precision, as the
    /// kubelet parses it (`strconv.ParseFloat(s, 32)`).
    Percent(f32),
    /// An absolute quantity in bytes, or inodes for `inodesFree` signals (`1Gi`, `500Mi`,
    /// `1000`), rounded up to a whole unit.
    Quantity(u64),
}

/// Why a threshold value is not one the kubelet accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// Neither a percentage nor a quantity.
    #[error("not a percentage or quantity")]
    Malformed,
    /// Ends in `%` but the number before it is not a number.
    #[error("not a percentage")]
    BadPercent,
    /// A percentage below 0% or above 100%.
    #[error("a percentage must be between 0% and 100%")]
    PercentRange,
    /// A quantity with the suffix `n`, `u` or `m` (nano, micro, milli).
    #[error("{0:?} (a fraction of a unit) is not a size")]
    NotASize(char),
    /// A negative quantity.
    #[error("must not be negative")]
    Negative,
    /// More than the kubelet's 64-bit signed range.
    #[error("too large")]
    TooLarge,
}

impl Threshold {
    /// Parses a threshold value. `Ok(None)` means the kubelet ignores the signal: `"0%"`,
    /// `"100%"` (exactly those strings) and a zero quantity. (The kubelet rejects a zero
    /// quantity at startup since it requires quantities to be positive; older kubelets
    /// took it as a threshold that is never met. Either way nothing is enforced.)
    pub fn parse(value: &str) -> Result<Option<Threshold>, ThresholdError> {
        if value.ends_with('%') {
            return parse_percent(value);
        }
        parse_quantity(value).map(|q| (q > 0).then_some(Threshold::Quantity(q)))
    }

    /// The threshold in bytes (or inodes) for a filesystem of `capacity`.
    ///
    /// A percentage is applied as the kubelet's `GetThresholdQuantity` does:
    /// `int64(float64(capacity) * float64(float32(percent) / 100))`, so the single
    /// precision fraction is kept (10% is 0.100000001490116…) and the product is
    /// truncated toward zero.
    pub fn resolve(&self, capacity: u64) -> u64 {
        match *self {
            Threshold::Quantity(quantity) => quantity,
            Threshold::Percent(percent) => {
                (capacity as f64 * f64::from(percent / 100.0_f32)) as u64
            }
        }
    }
}

/// `"<float>%"` the way the kubelet's `parsePercentage` reads it (every trailing `%` is
/// trimmed, as Go's `strings.TrimRight` does).
fn parse_percent(value: &str) -> Result<Option<Threshold>, ThresholdError> {
    if value == "0%" || value == "100%" {
        return Ok(None);
    }
    let percent: f32 = value
        .trim_end_matches('%')
        .parse()
        .map_err(|_| ThresholdError::BadPercent)?;
    if !percent.is_finite() {
        return Err(ThresholdError::BadPercent);
    }
    if !(0.0..=1.0).contains(&(percent / 100.0_f32)) {
        return Err(ThresholdError::PercentRange);
    }
    Ok(Some(Threshold::Percent(percent)))
}

/// A Kubernetes quantity (`<sign><digits>[.<digits>]<suffix>`), rounded up to a whole
/// unit as `Quantity.Value()` does. Suffixes: none, `k M G T P E`, `Ki Mi Gi Ti Pi Ei`,
/// or an exponent `e<n>` / `E<n>`.
fn parse_quantity(value: &str) -> Result<u64, ThresholdError> {
    let (negative, rest) = match value.as_bytes().first() {
        Some(b'-') => (true, &value[1..]),
        Some(b'+') => (false, &value[1..]),
        _ => (false, value),
    };
    let number_len = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_len);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.len() + fraction.len() == 0 || fraction.contains('.') {
        return Err(ThresholdError::Malformed);
    }
    let (binary_shift, decimal_exponent) = parse_suffix(suffix)?;
    // Trailing zeros of the fraction carry no value; dropping them keeps `1.000…0`
    // within the mantissa's range.
    let fraction = fraction.trim_end_matches('0');
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0);
    }
    if negative {
        return Err(ThresholdError::Negative);
    }
    // value = digits × 2^binary_shift × 10^(decimal_exponent - fraction digits)
    let mantissa: u128 = digits.parse().map_err(|_| ThresholdError::TooLarge)?;
    let scale = i64::from(decimal_exponent) - fraction.len() as i64;
    let mut numerator = mantissa
        .checked_mul(1 << binary_shift)
        .ok_or(ThresholdError::TooLarge)?;
    let mut denominator: u128 = 1;
    let power = |e: i64| {
        u32::try_from(e)
            .ok()
            .and_then(|e| 10_u128.checked_pow(e))
            .ok_or(ThresholdError::TooLarge)
    };
    if scale >= 0 {
        numerator = numerator
            .checked_mul(power(scale)?)
            .ok_or(ThresholdError::TooLarge)?;
    } else {
        // A value below 10^-38 of a byte still rounds up to 1.
        denominator = power(-scale).unwrap_or(u128::MAX);
    }
    let bytes = numerator.div_ceil(denominator);
    u64::try_from(bytes)
        .ok()
        .filter(|&b| b <= i64::MAX as u64)
        .ok_or(ThresholdError::TooLarge)
}

/// A quantity suffix as `(binary shift, decimal exponent)`.
fn parse_suffix(suffix: &str) -> Result<(u32, i32), ThresholdError> {
    const DECIMAL: [&str; 7] = ["", "k", "M", "G", "T", "P", "E"];
    const BINARY: [&str; 6] = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if let Some(i) = DECIMAL.iter().position(|&s| s == suffix) {
        return Ok((0, 3 * i as i32));
    }
    if let Some(i) = BINARY.iter().position(|&s| s == suffix) {
        return Ok((10 * (i as u32 + 1), 0));
    }
    if let [c @ (b'n' | b'u' | b'm')] = suffix.as_bytes() {
        return Err(ThresholdError::NotASize(char::from(*c)));
    }
    let exponent = suffix
        .strip_prefix(['e', 'E'])
        .filter(|e| !e.is_empty())
        .ok_or(ThresholdError::Malformed)?;
    let exponent: i32 = exponent.parse().map_err(|_| ThresholdError::Malformed)?;
    Ok((0, exponent))
}

/// The parts of the kubelet configuration Headroom needs.
#[derive(Debug, Clone, PartialEq)]
pub struct KubeletConfig {
    /// Effective hard eviction thresholds (after the defaulting rules). A signal that is
    /// not in the map is disabled.
    pub eviction_hard: BTreeMap<Signal, Threshold>,
    /// Soft eviction thresholds (no defaults).
    pub eviction_soft: BTreeMap<Signal, Threshold>,
    /// `imageGCHighThresholdPercent`.
    pub image_gc_high_percent: u8,
    /// `imageGCLowThresholdPercent`.
    pub image_gc_low_percent: u8,
    /// `imageMinimumGCAge`.
    pub image_minimum_gc_age: Duration,
    /// The first file these came from (the `--config` file, else the first
    /// drop-in); `None` when no file was read.
    pub source: Option<PathBuf>,
    /// Every file read, in the order the kubelet applies them.
    pub files: Vec<PathBuf>,
    /// The kubelet flags that set a threshold (`--eviction-hard`, …).
    pub flags: Vec<String>,
    /// Where the thresholds came from, in a word.
    pub origin: ThresholdsOrigin,
    /// `podLogsDir`, when a file sets it.
    pub pod_logs_dir: Option<PathBuf>,
    /// `containerRuntimeEndpoint`, when a file sets it.
    pub runtime_endpoint: Option<String>,
}

/// Where the kubelet's thresholds came from, for a metric label and an
/// alert (the status document's `thresholds_origin`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdsOrigin {
    /// At least one threshold came from a kubelet flag.
    Flags,
    /// A kubelet config file (or drop-in) was read; no flag set a threshold.
    Config,
    /// Nothing readable: the kubelet's built-in defaults are assumed.
    #[default]
    Defaults,
}

impl ThresholdsOrigin {
    /// Every origin.
    pub const ALL: [ThresholdsOrigin; 3] = [
        ThresholdsOrigin::Flags,
        ThresholdsOrigin::Config,
        ThresholdsOrigin::Defaults,
    ];

    /// The stable label: `flags`, `config` or `defaults`.
    pub fn label(self) -> &'static str {
        match self {
            ThresholdsOrigin::Flags => "flags",
            ThresholdsOrigin::Config => "config",
            ThresholdsOrigin::Defaults => "defaults",
        }
    }
}

/// The kubelet's Linux default hard thresholds for the disk signals
/// (`pkg/kubelet/eviction/defaults_linux.go`).
const DEFAULT_EVICTION_HARD: [(Signal, Threshold); 4] = [
    (Signal::NodefsAvailable, Threshold::Percent(10.0)),
    (Signal::NodefsInodesFree, Threshold::Percent(5.0)),
    (Signal::ImagefsAvailable, Threshold::Percent(15.0)),
    (Signal::ImagefsInodesFree, Threshold::Percent(5.0)),
];
const DEFAULT_IMAGE_GC_HIGH_PERCENT: u8 = 85;
const DEFAULT_IMAGE_GC_LOW_PERCENT: u8 = 80;
const DEFAULT_IMAGE_MINIMUM_GC_AGE: Duration = Duration::from_secs(120);

impl KubeletConfig {
    /// What a kubelet without a config file uses on Linux.
    pub fn defaults() -> KubeletConfig {
        KubeletConfig {
            eviction_hard: DEFAULT_EVICTION_HARD.into_iter().collect(),
            eviction_soft: BTreeMap::new(),
            image_gc_high_percent: DEFAULT_IMAGE_GC_HIGH_PERCENT,
            image_gc_low_percent: DEFAULT_IMAGE_GC_LOW_PERCENT,
            image_minimum_gc_age: DEFAULT_IMAGE_MINIMUM_GC_AGE,
            source: None,
            files: Vec::new(),
            flags: Vec::new(),
            origin: ThresholdsOrigin::Defaults,
            pod_logs_dir: None,
            runtime_endpoint: None,
        }
    }
}

/// Why the kubelet config could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    /// The file exists but could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is empty, which the kubelet refuses.
    #[error("{path}: empty file")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file is larger than any kubelet configuration (a few KB); not read on.
    #[error("{path}: larger than {limit} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The most Headroom reads, [`MAX_CONFIG_BYTES`].
        limit: u64,
    },
    /// The file nests deeper than any kubelet configuration (under 10 levels);
    /// not parsed, since the YAML parser slows quadratically with nesting.
    #[error("{path}: nested more than {limit} levels deep")]
    TooDeep {
        /// The file.
        path: PathBuf,
        /// The deepest nesting Headroom parses, [`MAX_CONFIG_DEPTH`].
        limit: usize,
    },
    /// The file starts like JSON but is not, or a key Headroom reads has the
    /// wrong type.
    #[error("{path}: not a kubelet configuration: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// A kubelet flag whose value the kubelet would refuse.
    #[error("kubelet flag --{flag}={value:?}: {reason}")]
    Flag {
        /// The flag, e.g. `eviction-hard`.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The file is not YAML, or a key Headroom reads has the wrong type.
    #[error("{path}: not a kubelet configuration: {source}")]
    Yaml {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_yaml_ng::Error,
    },
    /// A value the kubelet would refuse.
    #[error("{path}: {key} = {value}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key, e.g. `evictionHard["imagefs.available"]`.
        key: String,
        /// The value as written (strings quoted).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl KubeletError {
    /// A word or two on why the file was not used (`unreadable`, `invalid`,
    /// `too large`, `too deep`), to follow its path where the details do not fit.
    pub fn summary(&self) -> &'static str {
        match self {
            KubeletError::Read { .. } => "unreadable",
            KubeletError::Empty { .. }
            | KubeletError::Yaml { .. }
            | KubeletError::Json { .. }
            | KubeletError::Flag { .. }
            | KubeletError::Invalid { .. } => "invalid",
            KubeletError::TooLarge { .. } => "too large",
            KubeletError::TooDeep { .. } => "too deep",
        }
    }
}

impl Classified for KubeletError {
    fn kind(&self) -> ProblemKind {
        match self {
            KubeletError::Read { source, .. } => ProblemKind::of_io(source),
            KubeletError::Empty { .. }
            | KubeletError::TooLarge { .. }
            | KubeletError::TooDeep { .. }
            | KubeletError::Yaml { .. }
            | KubeletError::Json { .. }
            | KubeletError::Flag { .. }
            | KubeletError::Invalid { .. } => ProblemKind::Malformed,
        }
    }
}

/// The keys Headroom reads; every other key is ignored. An absent key and a
/// null one are alike (`None`).
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawConfig {
    pod_logs_dir: Option<String>,
    container_runtime_endpoint: Option<String>,
    eviction_hard: Option<BTreeMap<String, String>>,
    eviction_soft: Option<BTreeMap<String, String>>,
    merge_default_eviction_settings: Option<bool>,
    #[serde(rename = "imageGCHighThresholdPercent")]
    image_gc_high_percent: Option<i64>,
    #[serde(rename = "imageGCLowThresholdPercent")]
    image_gc_low_percent: Option<i64>,
    #[serde(rename = "imageMinimumGCAge")]
    image_minimum_gc_age: Option<String>,
}

/// The largest kubelet config read: a real one is a few KB.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// The deepest nesting parsed: a real config nests under 10 levels.
pub const MAX_CONFIG_DEPTH: usize = 64;

/// Reads the kubelet config at `path` alone (no drop-ins, no flags); a
/// missing file gives the defaults.
pub fn load(path: &Path) -> Result<KubeletConfig, KubeletError> {
    sources::load_all(Path::new("/"), &KubeletSources::file(path))
}

/// Reads and checks one config file (YAML, or JSON when it starts with `{`);
/// `None` when there is no file.
fn read_raw(path: &Path) -> Result<Option<RawConfig>, KubeletError> {
    let text = match crate::small_file::read_text(path, MAX_CONFIG_BYTES) {
        Ok(Some(text)) => text,
        Ok(None) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            return Err(KubeletError::TooLarge {
                path: path.to_owned(),
                limit: MAX_CONFIG_BYTES,
            })
        }
        Err(source) => {
            return Err(KubeletError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    if text.trim().is_empty() {
        return Err(KubeletError::Empty {
            path: path.to_owned(),
        });
    }
    if nesting_depth(&text) > MAX_CONFIG_DEPTH {
        return Err(KubeletError::TooDeep {
            path: path.to_owned(),
            limit: MAX_CONFIG_DEPTH,
        });
    }
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| KubeletError::Json {
                path: path.to_owned(),
                source,
            });
    }
    serde_yaml_ng::from_str(&text)
        .map(Some)
        .map_err(|source| KubeletError::Yaml {
            path: path.to_owned(),
            source,
        })
}

/// How deep `text` nests, estimated without parsing it: block collections by
/// their indentation (each `- ` of a compact sequence opens one more) plus
/// open flow brackets, skipping quotes and comments. Block nesting may be
/// under-counted (a sequence at its key's indentation) but costs the parser
/// little, and the size bound caps it; flow nesting, which costs the parser
/// time quadratic in its depth, is counted in full.
pub(crate) fn nesting_depth(text: &str) -> usize {
    let mut scan = FlowScan::default();
    let mut block: Vec<usize> = Vec::new();
    let mut deepest = 0;
    for line in text.lines() {
        let body = line.trim_start_matches(' ');
        if scan.in_block_context() && !body.is_empty() && !body.starts_with('#') {
            let mut column = line.len() - body.len();
            block.retain(|&open| open < column);
            block.push(column);
            let mut rest = body;
            while let Some(item) = rest.strip_prefix('-').filter(|r| r.starts_with(' ')) {
                let content = item.trim_start_matches(' ');
                column += rest.len() - content.len();
                rest = content;
                if !rest.is_empty() {
                    block.push(column);
                }
            }
        }
        let flow = scan.line(body);
        deepest = deepest.max(block.len() + flow);
    }
    deepest
}

/// The flow brackets open across lines, for [`nesting_depth`].
#[derive(Default)]
struct FlowScan {
    flow: usize,
}

impl FlowScan {
    /// Whether the next line starts outside brackets.
    fn in_block_context(&self) -> bool {
        self.flow == 0
    }

    /// Reads one line; the deepest flow nesting met on it.
    ///
    /// Errs toward counting: a quote opens only where a node starts (so a
    /// quote in a plain scalar hides nothing) and closes at the end of the
    /// line at the latest (so a quote in a block scalar hides no more than
    /// its line); a bracket counts unless it follows a word (`a[0]`), where
    /// YAML never opens a collection.
    fn line(&mut self, line: &str) -> usize {
        let mut deepest = self.flow;
        let mut previous = ' ';
        // At the start of a node: line start, after `[`, `{`, `,` or an
        // indicator (`:`, or `-` or `?` at a node start) and a blank.
        let mut node_start = true;
        let mut indicator = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '\'' | '"' if node_start => {
                    skip_quoted(&mut chars, c);
                    (node_start, indicator) = (false, false);
                }
                '#' if previous.is_whitespace() => break,
                '[' | '{' | ']' | '}' | ',' => {
                    let after_word = !(previous.is_whitespace() || "[{,:".contains(previous));
                    if matches!(c, '[' | '{') && (self.flow > 0 || !after_word) {
                        self.flow += 1;
                        deepest = deepest.max(self.flow);
                    } else if matches!(c, ']' | '}') {
                        self.flow = self.flow.saturating_sub(1);
                    }
                    (node_start, indicator) = (!matches!(c, ']' | '}'), false);
                }
                c if c.is_whitespace() => node_start |= indicator,
                c => {
                    indicator = c == ':' || (node_start && matches!(c, '-' | '?'));
                    node_start = false;
                }
            }
            previous = c;
        }
        deepest
    }
}

/// Skips past the end of a scalar quoted with `quote` (`''` in single quotes
/// and `\"` in double quotes stay inside), or to the end of the line.
fn skip_quoted(chars: &mut std::str::Chars<'_>, quote: char) {
    while let Some(c) = chars.next() {
        if quote == '"' && c == '\\' {
            chars.next();
        } else if c == quote {
            if quote == '\'' && chars.as_str().starts_with('\'') {
                chars.next();
            } else {
                return;
            }
        }
    }
}

/// A Go `time.ParseDuration` string (`"2m"`, `"2m0s"`, `"1h30m"`, `"1.5h"`, `"0"`),
/// which is how `metav1.Duration` is written. Negative durations are refused.
fn parse_go_duration(text: &str) -> Result<Duration, &'static str> {
    const NOT_A_DURATION: &str = "not a duration (e.g. \"2m\", \"1h30m\")";
    const UNITS: [(&str, u128); 8] = [
        ("ns", 1),
        ("us", 1_000),
        ("\u{b5}s", 1_000),
        ("\u{3bc}s", 1_000),
        ("ms", 1_000_000),
        ("s", 1_000_000_000),
        ("m", 60_000_000_000),
        ("h", 3_600_000_000_000),
    ];
    let (negative, mut rest) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(NOT_A_DURATION);
    }
    let mut nanos: u128 = 0;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_len);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.len() + fraction.len() == 0 || fraction.contains('.') {
            return Err(NOT_A_DURATION);
        }
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        let (_, unit_nanos) = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .ok_or(NOT_A_DURATION)?;
        // Fraction digits beyond nanosecond precision do not change the result.
        let fraction = &fraction[..fraction.len().min(18)];
        let whole: u128 = format!("0{whole}").parse().map_err(|_| "too large")?;
        let fraction_value: u128 = format!("0{fraction}").parse().map_err(|_| NOT_A_DURATION)?;
        let part = whole
            .checked_mul(*unit_nanos)
            .map(|w| w + fraction_value * unit_nanos / 10_u128.pow(fraction.len() as u32))
            .ok_or("too large")?;
        nanos = nanos.checked_add(part).ok_or("too large")?;
        rest = next;
    }
    if nanos > i64::MAX as u128 {
        return Err("too large");
    }
    if negative && nanos > 0 {
        return Err("must not be negative");
    }
    u64::try_from(nanos)
        .map(Duration::from_nanos)
        .map_err(|_| "too large")
}

#[cfg(test)]
mod tests {
    use super::*;

    const GI: u64 = 1 << 30;
    const MEBIBYTE: usize = 1 << 20;

    fn parse(value: &str) -> Option<Threshold> {
        Threshold::parse(value).unwrap()
    }

    fn quantity(value: &str) -> u64 {
        match parse(value) {
            Some(Threshold::Quantity(q)) => q,
            other => panic!("{value}: {other:?}"),
        }
    }

    /// Writes `yaml` to a config file and loads it; the temp dir lives as long as the path.
    fn load_yaml(
        yaml: &str,
    ) -> (
        tempfile::TempDir,
        PathBuf,
        Result<KubeletConfig, KubeletError>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        let result = load(&path);
        (dir, path, result)
    }

    fn loaded(yaml: &str) -> KubeletConfig {
        let (_dir, path, result) = load_yaml(yaml);
        let config = result.unwrap();
        assert_eq!(config.source.as_deref(), Some(path.as_path()));
        config
    }

    fn error(yaml: &str) -> String {
        let (_dir, path, result) = load_yaml(yaml);
        let message = result.unwrap_err().to_string();
        let prefix = format!("{}: ", path.display());
        assert!(message.starts_with(&prefix), "{message}");
        message[prefix.len()..].to_owned()
    }

    fn map(entries: &[(Signal, Threshold)]) -> BTreeMap<Signal, Threshold> {
        entries.iter().copied().collect()
    }

    fn linux_defaults() -> BTreeMap<Signal, Threshold> {
        map(&[
            (Signal::NodefsAvailable, Threshold::Percent(10.0)),
            (Signal::NodefsInodesFree, Threshold::Percent(5.0)),
            (Signal::ImagefsAvailable, Threshold::Percent(15.0)),
            (Signal::ImagefsInodesFree, Threshold::Percent(5.0)),
        ])
    }

    #[test]
    fn signal_names_round_trip() {
        for (name, signal) in [
            ("nodefs.available", Signal::NodefsAvailable),
            ("nodefs.inodesFree", Signal::NodefsInodesFree),
            ("imagefs.available", Signal::ImagefsAvailable),
            ("imagefs.inodesFree", Signal::ImagefsInodesFree),
        ] {
            assert_eq!(signal.name(), name);
            assert_eq!(signal.to_string(), name);
            assert_eq!(Signal::parse(name), Some(signal));
        }
        for other in [
            "memory.available",
            "pid.available",
            "containerfs.available",
            "containerfs.inodesFree",
            "nodefs.Available",
            "",
        ] {
            assert_eq!(Signal::parse(other), None, "{other}");
        }
    }

    #[test]
    fn percentages() {
        assert_eq!(parse("10%"), Some(Threshold::Percent(10.0)));
        assert_eq!(parse("7.5%"), Some(Threshold::Percent(7.5)));
        assert_eq!(parse("0.5%"), Some(Threshold::Percent(0.5)));
        assert_eq!(parse("100.0%"), Some(Threshold::Percent(100.0)));
        assert_eq!(parse("0.0%"), Some(Threshold::Percent(0.0)));
        // Go's strings.TrimRight drops every trailing '%'.
        assert_eq!(parse("10%%"), Some(Threshold::Percent(10.0)));
        // The kubelet's special cases: exactly these two strings disable the signal.
        assert_eq!(parse("0%"), None);
        assert_eq!(parse("100%"), None);
    }

    #[test]
    fn bad_percentages() {
        for (value, expected) in [
            ("101%", ThresholdError::PercentRange),
            ("-1%", ThresholdError::PercentRange),
            ("abc%", ThresholdError::BadPercent),
            ("15 %", ThresholdError::BadPercent),
            ("%", ThresholdError::BadPercent),
            ("nan%", ThresholdError::BadPercent),
            ("inf%", ThresholdError::BadPercent),
        ] {
            assert_eq!(Threshold::parse(value), Err(expected), "{value}");
        }
    }

    #[test]
    fn quantities() {
        assert_eq!(quantity("1Gi"), 1_073_741_824);
        assert_eq!(quantity("500Mi"), 500 * 1_048_576);
        assert_eq!(quantity("100M"), 100_000_000);
        assert_eq!(quantity("1.5G"), 1_500_000_000);
        assert_eq!(quantity("1e9"), 1_000_000_000);
        assert_eq!(quantity("1E3"), 1_000);
        assert_eq!(quantity("100Ki"), 102_400);
        assert_eq!(quantity("1k"), 1_000);
        assert_eq!(quantity("2T"), 2_000_000_000_000);
        assert_eq!(quantity("3P"), 3_000_000_000_000_000);
        assert_eq!(quantity("1E"), 1_000_000_000_000_000_000);
        assert_eq!(quantity("2Ti"), 2 << 40);
        assert_eq!(quantity("1Pi"), 1 << 50);
        assert_eq!(quantity("1Ei"), 1 << 60);
        assert_eq!(quantity("1.5Ki"), 1_536);
        assert_eq!(quantity(".5Ki"), 512);
        assert_eq!(quantity("+1Mi"), 1_048_576);
        assert_eq!(quantity("1000"), 1_000);
        assert_eq!(quantity("007"), 7);
        // Fractions of a byte round up, as Quantity.Value() does.
        assert_eq!(quantity("0.5"), 1);
        assert_eq!(quantity("1.25k"), 1_250);
        assert_eq!(quantity("1.0001k"), 1_001);
        assert_eq!(quantity("1e-3"), 1);
        assert_eq!(quantity("1e+3"), 1_000);
        assert_eq!(quantity(&format!("1.{}Ki", "0".repeat(60))), 1_024);
        assert_eq!(quantity(&format!("0.{}1", "0".repeat(60))), 1);
        // The largest the kubelet's int64 holds.
        assert_eq!(quantity("9223372036854775807"), i64::MAX as u64);
    }

    #[test]
    fn zero_quantities_disable() {
        for zero in ["0", "0Gi", "0.0", "-0", "0e9"] {
            assert_eq!(parse(zero), None, "{zero}");
        }
    }

    #[test]
    fn bad_quantities() {
        for (value, expected) in [
            ("1500m", ThresholdError::NotASize('m')),
            ("5u", ThresholdError::NotASize('u')),
            ("5n", ThresholdError::NotASize('n')),
            ("-1Gi", ThresholdError::Negative),
            ("15 percent", ThresholdError::Malformed),
            ("1K", ThresholdError::Malformed),
            ("1 Gi", ThresholdError::Malformed),
            ("1Gib", ThresholdError::Malformed),
            ("Gi", ThresholdError::Malformed),
            ("", ThresholdError::Malformed),
            ("1..5", ThresholdError::Malformed),
            ("1.2.3", ThresholdError::Malformed),
            ("1e", ThresholdError::Malformed),
            ("1ex", ThresholdError::Malformed),
            ("10E", ThresholdError::TooLarge),
            ("9223372036854775808", ThresholdError::TooLarge),
            ("1e40", ThresholdError::TooLarge),
        ] {
            assert_eq!(Threshold::parse(value), Err(expected), "{value}");
        }
    }

    #[test]
    fn percentages_resolve_in_single_precision_and_truncate() {
        // float32(10)/100 = 13421773 / 2^27 = 0.100000001490116…
        // 2^30 × 13421773 / 2^27 = 8 × 13421773 = 107374184 (exact; a double 0.1 would
        // give 107374182.4).
        assert_eq!(Threshold::Percent(10.0).resolve(GI), 107_374_184);
        // 1e9 × 0.100000001490116… = 100000001.49… → 100000001.
        assert_eq!(Threshold::Percent(10.0).resolve(1_000_000_000), 100_000_001);
        // float32(0.15) = 0.150000005960464…: 150000005.96… → 150000005.
        assert_eq!(Threshold::Percent(15.0).resolve(1_000_000_000), 150_000_005);
        // float32(0.05) = 0.0500000007450580…: 50000000.745… → 50000000.
        assert_eq!(Threshold::Percent(5.0).resolve(1_000_000_000), 50_000_000);
        // float32(0.075) = 0.0750000029802322…: 75000002.98… → 75000002.
        assert_eq!(Threshold::Percent(7.5).resolve(1_000_000_000), 75_000_002);
        assert_eq!(Threshold::Percent(100.0).resolve(12_345), 12_345);
        assert_eq!(Threshold::Percent(0.0).resolve(12_345), 0);
        assert_eq!(Threshold::Percent(50.0).resolve(0), 0);
        assert_eq!(Threshold::Quantity(GI).resolve(5), GI);
    }

    #[test]
    fn missing_file_gives_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let config = load(&dir.path().join("absent.yaml")).unwrap();
        assert_eq!(config, KubeletConfig::defaults());
        assert_eq!(config.source, None);
        assert_eq!(config.eviction_hard, linux_defaults());
        assert!(config.eviction_soft.is_empty());
        assert_eq!(config.image_gc_high_percent, 85);
        assert_eq!(config.image_gc_low_percent, 80);
        assert_eq!(config.image_minimum_gc_age, Duration::from_secs(120));
    }

    #[test]
    fn file_without_the_keys_gives_defaults_and_ignores_the_rest() {
        let config = loaded(
            "apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: false
cgroupDriver: systemd
evictionPressureTransitionPeriod: 5m0s
evictionSoftGracePeriod:
  nodefs.available: 1m
evictionMinimumReclaim:
  imagefs.available: 2Gi
imageMaximumGCAge: 0s
maxPods: 110
",
        );
        assert_eq!(config.eviction_hard, linux_defaults());
        assert!(config.eviction_soft.is_empty());
        assert_eq!(config.image_gc_high_percent, 85);
        assert_eq!(config.image_gc_low_percent, 80);
        assert_eq!(config.image_minimum_gc_age, Duration::from_secs(120));
    }

    #[test]
    fn one_hard_value_disables_the_others() {
        let config = loaded("evictionHard:\n  nodefs.available: 1Gi\n");
        assert_eq!(
            config.eviction_hard,
            map(&[(Signal::NodefsAvailable, Threshold::Quantity(GI))])
        );
        let explicit_false = config_with_merge("false");
        assert_eq!(
            explicit_false.eviction_hard,
            map(&[(Signal::NodefsAvailable, Threshold::Quantity(GI))])
        );
    }

    fn config_with_merge(merge: &str) -> KubeletConfig {
        loaded(&format!(
            "mergeDefaultEvictionSettings: {merge}\nevictionHard:\n  nodefs.available: 1Gi\n"
        ))
    }

    #[test]
    fn merge_fills_the_unset_hard_values() {
        assert_eq!(
            config_with_merge("true").eviction_hard,
            map(&[
                (Signal::NodefsAvailable, Threshold::Quantity(GI)),
                (Signal::NodefsInodesFree, Threshold::Percent(5.0)),
                (Signal::ImagefsAvailable, Threshold::Percent(15.0)),
                (Signal::ImagefsInodesFree, Threshold::Percent(5.0)),
            ])
        );
    }

    #[test]
    fn merge_keeps_a_signal_disabled_by_zero_percent() {
        let config = loaded(
            "mergeDefaultEvictionSettings: true
evictionHard:
  imagefs.available: \"0%\"
  nodefs.inodesFree: \"100%\"
",
        );
        assert_eq!(
            config.eviction_hard,
            map(&[
                (Signal::NodefsAvailable, Threshold::Percent(10.0)),
                (Signal::ImagefsInodesFree, Threshold::Percent(5.0)),
            ])
        );
    }

    #[test]
    fn empty_hard_map_disables_all_unless_merged() {
        assert!(loaded("evictionHard: {}\n").eviction_hard.is_empty());
        assert_eq!(
            loaded("evictionHard: {}\nmergeDefaultEvictionSettings: true\n").eviction_hard,
            linux_defaults()
        );
        // A null map is an unset one.
        assert_eq!(loaded("evictionHard:\n").eviction_hard, linux_defaults());
        assert_eq!(
            loaded("evictionHard: null\n").eviction_hard,
            linux_defaults()
        );
    }

    #[test]
    fn memory_pid_and_containerfs_keys_are_ignored() {
        let config = loaded(
            "evictionHard:
  memory.available: 100Mi
  pid.available: 10%
  containerfs.available: 30%
  containerfs.inodesFree: not even a value
  imagefs.available: 20%
  nodefs.inodesFree: 1k
",
        );
        assert_eq!(
            config.eviction_hard,
            map(&[
                (Signal::NodefsInodesFree, Threshold::Quantity(1_000)),
                (Signal::ImagefsAvailable, Threshold::Percent(20.0)),
            ])
        );
    }

    #[test]
    fn soft_thresholds_have_no_defaults_and_leave_hard_alone() {
        let config = loaded(
            "evictionSoft:
  nodefs.available: 15%
  imagefs.inodesFree: 100k
  containerfs.available: 40%
  memory.available: 500Mi
evictionSoftGracePeriod:
  nodefs.available: 1m30s
",
        );
        assert_eq!(
            config.eviction_soft,
            map(&[
                (Signal::NodefsAvailable, Threshold::Percent(15.0)),
                (Signal::ImagefsInodesFree, Threshold::Quantity(100_000)),
            ])
        );
        assert_eq!(config.eviction_hard, linux_defaults());
        assert!(loaded("evictionSoft: {}\n").eviction_soft.is_empty());
    }

    #[test]
    fn all_keys_together() {
        let config = loaded(
            "evictionHard:
  nodefs.available: 5%
  nodefs.inodesFree: 4%
  imagefs.available: 10Gi
  imagefs.inodesFree: 1e5
evictionSoft:
  imagefs.available: 20Gi
imageGCHighThresholdPercent: 75
imageGCLowThresholdPercent: 60
imageMinimumGCAge: 1h30m
",
        );
        assert_eq!(
            config.eviction_hard,
            map(&[
                (Signal::NodefsAvailable, Threshold::Percent(5.0)),
                (Signal::NodefsInodesFree, Threshold::Percent(4.0)),
                (Signal::ImagefsAvailable, Threshold::Quantity(10 * GI)),
                (Signal::ImagefsInodesFree, Threshold::Quantity(100_000)),
            ])
        );
        assert_eq!(
            config.eviction_soft,
            map(&[(Signal::ImagefsAvailable, Threshold::Quantity(20 * GI))])
        );
        assert_eq!(config.image_gc_high_percent, 75);
        assert_eq!(config.image_gc_low_percent, 60);
        assert_eq!(config.image_minimum_gc_age, Duration::from_secs(5_400));
    }

    #[test]
    fn invalid_threshold_names_file_key_and_value() {
        assert_eq!(
            error("evictionHard:\n  imagefs.available: 15 percent\n"),
            "evictionHard[\"imagefs.available\"] = \"15 percent\": not a percentage or quantity"
        );
        assert_eq!(
            error("evictionSoft:\n  nodefs.available: 1500m\n"),
            "evictionSoft[\"nodefs.available\"] = \"1500m\": 'm' (a fraction of a unit) is not a size"
        );
        assert_eq!(
            error("evictionHard:\n  nodefs.inodesFree: \"120%\"\n"),
            "evictionHard[\"nodefs.inodesFree\"] = \"120%\": a percentage must be between 0% and 100%"
        );
        assert_eq!(
            error("evictionHard:\n  nodefs.available: -1Gi\n"),
            "evictionHard[\"nodefs.available\"] = \"-1Gi\": must not be negative"
        );
    }

    #[test]
    fn image_gc_percents() {
        let config = loaded("imageGCHighThresholdPercent: 100\nimageGCLowThresholdPercent: 0\n");
        assert_eq!(
            (config.image_gc_high_percent, config.image_gc_low_percent),
            (100, 0)
        );
        let config = loaded("imageGCHighThresholdPercent: 90\n");
        assert_eq!(
            (config.image_gc_high_percent, config.image_gc_low_percent),
            (90, 80)
        );
        let config = loaded("imageGCLowThresholdPercent: 50\n");
        assert_eq!(
            (config.image_gc_high_percent, config.image_gc_low_percent),
            (85, 50)
        );
    }

    #[test]
    fn bad_image_gc_percents() {
        assert_eq!(
            error("imageGCHighThresholdPercent: 101\n"),
            "imageGCHighThresholdPercent = 101: must be between 0 and 100"
        );
        assert_eq!(
            error("imageGCLowThresholdPercent: -1\n"),
            "imageGCLowThresholdPercent = -1: must be between 0 and 100"
        );
        assert_eq!(
            error("imageGCHighThresholdPercent: 60\nimageGCLowThresholdPercent: 70\n"),
            "imageGCLowThresholdPercent = 70: must be less than imageGCHighThresholdPercent (60)"
        );
        // Equal is refused too; so is a high value below the default low one.
        assert_eq!(
            error("imageGCLowThresholdPercent: 85\n"),
            "imageGCLowThresholdPercent = 85: must be less than imageGCHighThresholdPercent (85)"
        );
        assert_eq!(
            error("imageGCHighThresholdPercent: 70\n"),
            "imageGCLowThresholdPercent = 80: must be less than imageGCHighThresholdPercent (70)"
        );
    }

    #[test]
    fn image_minimum_gc_age_in_go_duration_format() {
        for (text, expected) in [
            ("2m", Duration::from_secs(120)),
            ("2m0s", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5_400)),
            ("90s", Duration::from_secs(90)),
            ("1.5h", Duration::from_secs(5_400)),
            ("1h0m0.5s", Duration::from_millis(3_600_500)),
            (".5s", Duration::from_millis(500)),
            ("300ms", Duration::from_millis(300)),
            ("1us", Duration::from_micros(1)),
            ("1\u{b5}s", Duration::from_micros(1)),
            ("1\u{3bc}s", Duration::from_micros(1)),
            ("7ns", Duration::from_nanos(7)),
            ("0", Duration::ZERO),
            ("0s", Duration::ZERO),
            ("+5m", Duration::from_secs(300)),
        ] {
            let config = loaded(&format!("imageMinimumGCAge: \"{text}\"\n"));
            assert_eq!(config.image_minimum_gc_age, expected, "{text}");
        }
    }

    #[test]
    fn bad_image_minimum_gc_age() {
        for text in ["2", "2 m", "2min", "1h30", "", "m", ".s", "1..5s"] {
            assert_eq!(
                error(&format!("imageMinimumGCAge: \"{text}\"\n")),
                format!("imageMinimumGCAge = {text:?}: not a duration (e.g. \"2m\", \"1h30m\")"),
                "{text}"
            );
        }
        assert_eq!(
            error("imageMinimumGCAge: -1m\n"),
            "imageMinimumGCAge = \"-1m\": must not be negative"
        );
        assert_eq!(
            error("imageMinimumGCAge: 3000000h\n"),
            "imageMinimumGCAge = \"3000000h\": too large"
        );
    }

    #[test]
    fn not_yaml_or_wrong_types_name_the_file() {
        let message = error("evictionHard: [unclosed\n");
        assert!(
            message.starts_with("not a kubelet configuration: "),
            "{message}"
        );
        let message = error("imageGCHighThresholdPercent: eighty\n");
        assert!(message.contains("imageGCHighThresholdPercent"), "{message}");
        let message = error("- just\n- a list\n");
        assert!(
            message.starts_with("not a kubelet configuration: "),
            "{message}"
        );
        assert_eq!(error(""), "empty file");
        assert_eq!(error("\n  \n"), "empty file");
    }

    #[test]
    fn fault_a_deeply_nested_config_is_refused_before_parsing() {
        // 100,000 levels in 200 KB: libyaml takes minutes over it (issue #10).
        let deep = format!(
            "evictionHard: {}{}\n",
            "[".repeat(100_000),
            "]".repeat(100_000)
        );
        let started = std::time::Instant::now();
        let message = error(&deep);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(message, "nested more than 64 levels deep");
        // Block nesting counts too: one level per indentation and per `- `.
        let block: String = (0..65).map(|i| format!("{}a:\n", " ".repeat(i))).collect();
        assert_eq!(error(&block), "nested more than 64 levels deep");
        let dashes = format!("evictionSoft:\n  {}x\n", "- ".repeat(64));
        assert_eq!(error(&dashes), "nested more than 64 levels deep");
        // A quote in a block scalar hides nothing beyond its line.
        let hidden = format!("a: |\n  'text\nb: {}{}\n", "[".repeat(65), "]".repeat(65));
        assert_eq!(error(&hidden), "nested more than 64 levels deep");
        // Brackets in quotes, comments and words are text; 64 levels are allowed.
        let fine = format!(
            "# {open}\nevictionHard: {{\"nodefs.available\": \"5%\"}} # {open}\nx: 'it''s {open}'\ny: \"\\\"{open}\"\nw: don't a[0] a{{0\nz: {}{}\n",
            "[".repeat(63),
            "]".repeat(63),
            open = "[{".repeat(100),
        );
        assert_eq!(
            loaded(&fine).eviction_hard.get(&Signal::NodefsAvailable),
            Some(&Threshold::Percent(5.0))
        );
    }

    #[test]
    fn fault_a_config_larger_than_any_kubelet_writes_is_refused() {
        let padding = "# padding\n".repeat(MEBIBYTE / 10 + 1);
        let message = error(&format!("imageGCHighThresholdPercent: 90\n{padding}"));
        assert_eq!(message, "larger than 1048576 bytes");
        // Up to the bound is read.
        let padding = "#".repeat(MEBIBYTE - 40);
        let config = loaded(&format!("imageGCHighThresholdPercent: 90\n{padding}\n"));
        assert_eq!(config.image_gc_high_percent, 90);
    }

    #[test]
    fn unreadable_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(dir.path()).unwrap_err();
        assert!(matches!(err, KubeletError::Read { .. }), "{err}");
        assert!(err
            .to_string()
            .starts_with(&format!("{}: ", dir.path().display())));
    }
}
