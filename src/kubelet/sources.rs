//! The kubelet's thresholds from all three places it reads them, merged as
//! the kubelet merges them (`cmd/kubelet/app/server.go`: `NewKubeletCommand`,
//! `loadConfigFile`, `mergeKubeletConfigurations`,
//! `kubeletConfigFlagPrecedence`; `LAngleSeparatedMapStringString.Set` in
//! `component-base/cli/flag`):
//!
//! 1. The `--config` file, with its defaults: `evictionHard` absent means the
//!    Linux defaults, present means only what it names (unless
//!    `mergeDefaultEvictionSettings: true` fills the rest with defaults).
//!    No `--config`: the defaults.
//! 2. The `--config-dir` drop-ins: every `*.conf` file of the directory and
//!    its subdirectories (symlinked directories are not entered), depth first
//!    in byte order of names (Go's `filepath.WalkDir`), each applied as a JSON
//!    merge patch (RFC 7386) to the result so far. So maps merge **key by
//!    key**: a drop-in's `evictionHard: {nodefs.available: 5%}` changes that
//!    signal and keeps every other one, the defaults included; a scalar
//!    replaces; a `null` changes nothing (the kubelet unmarshals the merged
//!    JSON into its existing config, whose map entries and fields stay).
//!    `mergeDefaultEvictionSettings` in a drop-in is not applied again.
//! 3. The flags, which win: the first `--eviction-hard` replaces the whole
//!    map, later ones add to it (`a<b,c<d`, pairs trimmed, empty ones
//!    skipped); `--image-gc-high-threshold`, `--image-gc-low-threshold` and
//!    `--minimum-image-ttl-duration` replace their keys. The last of a flag
//!    given twice wins.
//!
//! Each file is YAML, or JSON when it starts with `{` (EKS writes JSON).
//! Every value is checked only once merged, and a bad one is named with the
//! file or flag that wrote it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    parse_go_duration, read_raw, KubeletConfig, KubeletError, RawConfig, Signal, Threshold,
    ThresholdsOrigin, DEFAULT_EVICTION_HARD, DEFAULT_IMAGE_GC_HIGH_PERCENT,
    DEFAULT_IMAGE_GC_LOW_PERCENT, DEFAULT_IMAGE_MINIMUM_GC_AGE,
};
use crate::layout::args::Flags;
use crate::layout::under;

/// The most drop-in files read from one directory tree.
pub const MAX_DROP_INS: usize = 256;

/// The deepest subdirectory of a drop-in directory entered.
pub const MAX_DROP_IN_DEPTH: usize = 8;

/// The kubelet's threshold flags as its command line holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KubeletFlags {
    /// Each `--eviction-hard` value, in order.
    pub eviction_hard: Vec<String>,
    /// The last `--image-gc-high-threshold`.
    pub image_gc_high: Option<String>,
    /// The last `--image-gc-low-threshold`.
    pub image_gc_low: Option<String>,
    /// The last `--minimum-image-ttl-duration`.
    pub minimum_image_ttl: Option<String>,
}

impl KubeletFlags {
    /// The threshold flags among a kubelet's `flags`.
    pub fn from_flags(flags: &Flags) -> KubeletFlags {
        KubeletFlags {
            eviction_hard: flags.all("eviction-hard").map(str::to_string).collect(),
            image_gc_high: flags.last(&["image-gc-high-threshold"]).map(str::to_string),
            image_gc_low: flags.last(&["image-gc-low-threshold"]).map(str::to_string),
            minimum_image_ttl: flags
                .last(&["minimum-image-ttl-duration"])
                .map(str::to_string),
        }
    }

    /// Whether no threshold flag is set.
    pub fn is_empty(&self) -> bool {
        *self == KubeletFlags::default()
    }
}

/// Where the kubelet reads its thresholds.
#[derive(Debug, Clone, Copy)]
pub struct KubeletSources<'a> {
    /// The `--config` file (a missing one counts as none).
    pub config: Option<&'a Path>,
    /// The `--config-dir` drop-in directory.
    pub config_dir: Option<&'a Path>,
    /// The threshold flags.
    pub flags: &'a KubeletFlags,
}

/// No flags, for [`KubeletSources::file`].
static NO_FLAGS: KubeletFlags = KubeletFlags {
    eviction_hard: Vec::new(),
    image_gc_high: None,
    image_gc_low: None,
    minimum_image_ttl: None,
};

impl<'a> KubeletSources<'a> {
    /// One config file, no drop-ins, no flags.
    pub fn file(path: &'a Path) -> KubeletSources<'a> {
        KubeletSources {
            config: Some(path),
            config_dir: None,
            flags: &NO_FLAGS,
        }
    }
}

/// Who wrote a value.
#[derive(Debug, Clone)]
enum At {
    File(PathBuf),
    Flag(&'static str),
    Default,
}

/// A value with who wrote it.
#[derive(Debug, Clone)]
struct Written<T> {
    value: T,
    at: At,
}

fn default_of<T>(value: T) -> Written<T> {
    Written {
        value,
        at: At::Default,
    }
}

/// The keys Headroom reads, merged so far.
#[derive(Debug)]
struct Merged {
    hard: BTreeMap<String, Written<String>>,
    soft: BTreeMap<String, Written<String>>,
    high: Written<i64>,
    low: Written<i64>,
    age: Option<Written<String>>,
    pod_logs_dir: Option<String>,
    endpoint: Option<String>,
    files: Vec<PathBuf>,
    flags: Vec<String>,
}

fn default_hard() -> BTreeMap<String, Written<String>> {
    DEFAULT_EVICTION_HARD
        .iter()
        .map(|(signal, threshold)| (signal.name().to_string(), default_of(show(threshold))))
        .collect()
}

/// A default threshold as the kubelet writes it.
fn show(threshold: &Threshold) -> String {
    match threshold {
        Threshold::Percent(p) => format!("{p}%"),
        Threshold::Quantity(q) => q.to_string(),
    }
}

/// Reads the kubelet's config file, drop-ins and flags from `sources`, each
/// path taken under `root`, and merges them (see the module's rules). No
/// file and no flag gives the defaults.
pub fn load_all(root: &Path, sources: &KubeletSources<'_>) -> Result<KubeletConfig, KubeletError> {
    let mut m = Merged {
        hard: default_hard(),
        soft: BTreeMap::new(),
        high: default_of(i64::from(DEFAULT_IMAGE_GC_HIGH_PERCENT)),
        low: default_of(i64::from(DEFAULT_IMAGE_GC_LOW_PERCENT)),
        age: None,
        pod_logs_dir: None,
        endpoint: None,
        files: Vec::new(),
        flags: Vec::new(),
    };
    if let Some(path) = sources.config {
        if let Some(raw) = read_raw(&under(root, path))? {
            m.files.push(path.to_owned());
            apply_base(&mut m, raw, path);
        }
    }
    if let Some(dir) = sources.config_dir {
        for file in drop_ins(root, dir)? {
            if let Some(raw) = read_raw(&under(root, &file))? {
                apply_drop_in(&mut m, raw, &file);
                m.files.push(file);
            }
        }
    }
    apply_flags(&mut m, sources.flags)?;
    finish(m)
}

/// The `--config` file: its maps replace the defaults.
fn apply_base(m: &mut Merged, raw: RawConfig, path: &Path) {
    let at = || At::File(path.to_owned());
    apply_scalars(m, &raw, &at);
    m.pod_logs_dir = raw.pod_logs_dir.or(m.pod_logs_dir.take());
    m.endpoint = raw.container_runtime_endpoint.or(m.endpoint.take());
    if let Some(written) = raw.eviction_hard {
        let mut hard = from_file(written, path);
        if raw.merge_default_eviction_settings == Some(true) {
            // By key, before parsing: a signal written as "0%" stays off.
            for (key, value) in default_hard() {
                hard.entry(key).or_insert(value);
            }
        }
        m.hard = hard;
    }
    if let Some(written) = raw.eviction_soft {
        m.soft = from_file(written, path);
    }
}

/// A drop-in: merged key by key over what came before.
fn apply_drop_in(m: &mut Merged, raw: RawConfig, path: &Path) {
    let at = || At::File(path.to_owned());
    apply_scalars(m, &raw, &at);
    m.pod_logs_dir = raw.pod_logs_dir.or(m.pod_logs_dir.take());
    m.endpoint = raw.container_runtime_endpoint.or(m.endpoint.take());
    if let Some(written) = raw.eviction_hard {
        m.hard.extend(from_file(written, path));
    }
    if let Some(written) = raw.eviction_soft {
        m.soft.extend(from_file(written, path));
    }
}

fn apply_scalars(m: &mut Merged, raw: &RawConfig, at: &dyn Fn() -> At) {
    if let Some(value) = raw.image_gc_high_percent {
        m.high = Written { value, at: at() };
    }
    if let Some(value) = raw.image_gc_low_percent {
        m.low = Written { value, at: at() };
    }
    if let Some(value) = &raw.image_minimum_gc_age {
        m.age = Some(Written {
            value: value.clone(),
            at: at(),
        });
    }
}

fn from_file(written: BTreeMap<String, String>, path: &Path) -> BTreeMap<String, Written<String>> {
    written
        .into_iter()
        .map(|(key, value)| {
            let at = At::File(path.to_owned());
            (key, Written { value, at })
        })
        .collect()
}

/// The flags, over everything.
fn apply_flags(m: &mut Merged, flags: &KubeletFlags) -> Result<(), KubeletError> {
    const HARD: &str = "eviction-hard";
    if !flags.eviction_hard.is_empty() {
        m.hard.clear();
        m.flags.push(format!("--{HARD}"));
    }
    for value in &flags.eviction_hard {
        for pair in value.split(',').filter(|p| !p.is_empty()) {
            let (key, threshold) = pair.split_once('<').ok_or_else(|| KubeletError::Flag {
                flag: HARD,
                value: value.clone(),
                reason: "malformed pair, expect string<string".into(),
            })?;
            let written = Written {
                value: threshold.trim().to_string(),
                at: At::Flag(HARD),
            };
            m.hard.insert(key.trim().to_string(), written);
        }
    }
    let percent = |flag: &'static str, value: &Option<String>| -> Result<_, KubeletError> {
        let Some(text) = value else { return Ok(None) };
        let value = text.trim().parse::<i32>().map_err(|_| KubeletError::Flag {
            flag,
            value: text.clone(),
            reason: "not a whole number".into(),
        })?;
        Ok(Some(Written {
            value: i64::from(value),
            at: At::Flag(flag),
        }))
    };
    if let Some(high) = percent("image-gc-high-threshold", &flags.image_gc_high)? {
        m.high = high;
        m.flags.push("--image-gc-high-threshold".into());
    }
    if let Some(low) = percent("image-gc-low-threshold", &flags.image_gc_low)? {
        m.low = low;
        m.flags.push("--image-gc-low-threshold".into());
    }
    if let Some(ttl) = &flags.minimum_image_ttl {
        m.age = Some(Written {
            value: ttl.clone(),
            at: At::Flag("minimum-image-ttl-duration"),
        });
        m.flags.push("--minimum-image-ttl-duration".into());
    }
    Ok(())
}

/// The error for `key = value` written at `at`.
fn invalid(at: &At, key: &str, value: String, reason: String) -> KubeletError {
    match at {
        At::File(path) => KubeletError::Invalid {
            path: path.clone(),
            key: key.to_string(),
            value,
            reason,
        },
        At::Flag(flag) => KubeletError::Flag {
            flag,
            value,
            reason: format!("{key}: {reason}"),
        },
        // The defaults are valid: only a pairing with a written value can
        // fail, and that one is named instead.
        At::Default => KubeletError::Invalid {
            path: PathBuf::from("(kubelet defaults)"),
            key: key.to_string(),
            value,
            reason,
        },
    }
}

/// Parses and checks the merged values.
fn finish(m: Merged) -> Result<KubeletConfig, KubeletError> {
    let eviction_hard = thresholds("evictionHard", &m.hard)?;
    let eviction_soft = thresholds("evictionSoft", &m.soft)?;
    let percent = |key: &str, w: &Written<i64>| {
        u8::try_from(w.value)
            .ok()
            .filter(|&p| p <= 100)
            .ok_or_else(|| {
                invalid(
                    &w.at,
                    key,
                    w.value.to_string(),
                    "must be between 0 and 100".into(),
                )
            })
    };
    let high = percent("imageGCHighThresholdPercent", &m.high)?;
    let low = percent("imageGCLowThresholdPercent", &m.low)?;
    if low >= high {
        let reason = format!("must be less than imageGCHighThresholdPercent ({high})");
        return Err(match (&m.low.at, &m.high.at) {
            // Only the flag was written: name it, with its value.
            (At::Default, At::Flag(_)) => invalid(
                &m.high.at,
                "imageGCHighThresholdPercent",
                high.to_string(),
                format!("imageGCLowThresholdPercent ({low}) {reason}"),
            ),
            (At::Default, at) | (at, _) => {
                invalid(at, "imageGCLowThresholdPercent", low.to_string(), reason)
            }
        });
    }
    let image_minimum_gc_age = match &m.age {
        None => DEFAULT_IMAGE_MINIMUM_GC_AGE,
        Some(w) => parse_go_duration(&w.value).map_err(|reason| {
            invalid(
                &w.at,
                "imageMinimumGCAge",
                format!("{:?}", w.value),
                reason.into(),
            )
        })?,
    };
    let origin = if !m.flags.is_empty() {
        ThresholdsOrigin::Flags
    } else if !m.files.is_empty() {
        ThresholdsOrigin::Config
    } else {
        ThresholdsOrigin::Defaults
    };
    Ok(KubeletConfig {
        eviction_hard,
        eviction_soft,
        image_gc_high_percent: high,
        image_gc_low_percent: low,
        image_minimum_gc_age,
        source: m.files.first().cloned(),
        files: m.files,
        flags: m.flags,
        origin,
        pod_logs_dir: m.pod_logs_dir.map(PathBuf::from),
        runtime_endpoint: m.endpoint,
    })
}

/// The disk thresholds of one merged map (`field` names it in errors).
/// Other signals (memory, pid, containerfs) are skipped, values and all.
fn thresholds(
    field: &str,
    written: &BTreeMap<String, Written<String>>,
) -> Result<BTreeMap<Signal, Threshold>, KubeletError> {
    let mut out = BTreeMap::new();
    for (key, w) in written {
        let Some(signal) = Signal::parse(key) else {
            continue;
        };
        let parsed = Threshold::parse(&w.value).map_err(|e| {
            invalid(
                &w.at,
                &format!("{field}[{key:?}]"),
                format!("{:?}", w.value),
                e.to_string(),
            )
        })?;
        if let Some(threshold) = parsed {
            out.insert(signal, threshold);
        }
    }
    Ok(out)
}

/// The `*.conf` files of `dir` (a host path, read under `root`) and its
/// subdirectories, in the kubelet's order, as host paths; none when `dir`
/// does not exist.
fn drop_ins(root: &Path, dir: &Path) -> Result<Vec<PathBuf>, KubeletError> {
    let mut files = Vec::new();
    walk(root, dir, 0, &mut files)?;
    Ok(files)
}

fn walk(
    root: &Path,
    dir: &Path,
    depth: usize,
    files: &mut Vec<PathBuf>,
) -> Result<(), KubeletError> {
    let read_error = |source| KubeletError::Read {
        path: dir.to_owned(),
        source,
    };
    let entries = match std::fs::read_dir(under(root, dir)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && depth == 0 => return Ok(()),
        Err(e) => return Err(read_error(e)),
    };
    let mut entries: Vec<(std::ffi::OsString, bool)> = entries
        .take(MAX_DROP_INS * 4)
        .map(|e| {
            let e = e.map_err(read_error)?;
            let is_dir = e.file_type().map_err(read_error)?.is_dir();
            Ok((e.file_name(), is_dir))
        })
        .collect::<Result<_, KubeletError>>()?;
    entries.sort();
    for (name, is_dir) in entries {
        let path = dir.join(&name);
        if is_dir {
            if depth < MAX_DROP_IN_DEPTH {
                walk(root, &path, depth + 1, files)?;
            }
        } else if Path::new(&name).extension().is_some_and(|e| e == "conf") {
            if files.len() >= MAX_DROP_INS {
                return Ok(());
            }
            files.push(path);
        }
    }
    Ok(())
}
