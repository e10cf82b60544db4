//! `storage.conf`: where containers-storage keeps its store, and how.
//!
//! Only `[storage] driver, graphroot, runroot` and `[storage.options]
//! additionalimagestores` matter here; every other key is left alone. A
//! missing file is containers-storage's defaults; a file that cannot be
//! read or parsed is a problem naming it, and the defaults stand.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::READER;
use crate::runtime::{Problem, ProblemKind};
use crate::small_file;

/// containers-storage's graph root when `storage.conf` names none.
pub const DEFAULT_GRAPH_ROOT: &str = "/var/lib/containers/storage";
/// Its run root when `storage.conf` names none.
const DEFAULT_RUN_ROOT: &str = "/run/containers/storage";
/// The most bytes of `storage.conf` read.
const MAX_CONF_BYTES: u64 = 1 << 20;

/// What `storage.conf` says, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConf {
    /// The graph driver; `None` when unset (containers-storage then picks
    /// one; the store's directories tell which).
    pub driver: Option<String>,
    /// The graph root: images, layers, containers.
    pub graph_root: PathBuf,
    /// The run root: volatile records, the containers' runtime files.
    pub run_root: PathBuf,
    /// Read-only image stores besides the graph root, in order.
    pub additional_image_stores: Vec<PathBuf>,
}

#[derive(Deserialize, Default)]
struct Raw {
    #[serde(default)]
    storage: Storage,
}

#[derive(Deserialize, Default)]
struct Storage {
    driver: Option<String>,
    graphroot: Option<String>,
    runroot: Option<String>,
    #[serde(default)]
    options: Options,
}

#[derive(Deserialize, Default)]
struct Options {
    #[serde(default)]
    additionalimagestores: Vec<String>,
}

/// `storage.conf` at `path`; its problems (unreadable, malformed) go to
/// `problems` and its defaults are used instead.
pub fn read(path: &Path, problems: &mut Vec<Problem>) -> StorageConf {
    let raw = match load(path) {
        Ok(raw) => raw,
        Err((kind, why)) => {
            let message = format!("{why}; containers-storage's defaults are assumed");
            problems.push(READER.problem(kind, path.display().to_string(), message));
            Raw::default()
        }
    };
    let given = |value: Option<String>| value.filter(|v| !v.is_empty()).map(PathBuf::from);
    let storage = raw.storage;
    StorageConf {
        driver: storage.driver.filter(|d| !d.is_empty()),
        graph_root: given(storage.graphroot).unwrap_or_else(|| DEFAULT_GRAPH_ROOT.into()),
        run_root: given(storage.runroot).unwrap_or_else(|| DEFAULT_RUN_ROOT.into()),
        additional_image_stores: storage
            .options
            .additionalimagestores
            .into_iter()
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect(),
    }
}

/// The file parsed; a missing one is empty (all defaults).
fn load(path: &Path) -> Result<Raw, (ProblemKind, String)> {
    let text = small_file::read_text(path, MAX_CONF_BYTES)
        .map_err(|e| (super::store::read_kind(&e), e.to_string()))?;
    match text {
        None => Ok(Raw::default()),
        Some(text) => toml::from_str(&text)
            .map_err(|e| (ProblemKind::Malformed, format!("not a storage.conf: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_and_a_missing_file_is_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("storage.conf");
        let mut problems = Vec::new();
        let defaults = read(&path, &mut problems);
        assert_eq!(
            defaults,
            StorageConf {
                driver: None,
                graph_root: DEFAULT_GRAPH_ROOT.into(),
                run_root: DEFAULT_RUN_ROOT.into(),
                additional_image_stores: vec![],
            }
        );
        std::fs::write(
            &path,
            "[storage]\ndriver = \"overlay\"\ngraphroot = \"/g\"\nrunroot = \"/r\"\n\
             [storage.options]\nadditionalimagestores = [\"/ro1\", \"\", \"/ro2\"]\n\
             pull_options = {enable_partial_images = \"false\"}\n\
             [storage.options.overlay]\nmountopt = \"nodev\"\n",
        )
        .unwrap();
        let conf = read(&path, &mut problems);
        assert_eq!(problems, vec![]);
        assert_eq!(conf.driver.as_deref(), Some("overlay"));
        assert_eq!(conf.graph_root, PathBuf::from("/g"));
        assert_eq!(conf.run_root, PathBuf::from("/r"));
        assert_eq!(
            conf.additional_image_stores,
            vec![PathBuf::from("/ro1"), "/ro2".into()]
        );
    }

    #[test]
    fn a_bad_file_is_a_problem_naming_it_and_the_defaults_stand() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("storage.conf");
        std::fs::write(&path, "[storage\ngraphroot = 5").unwrap();
        let mut problems = Vec::new();
        let conf = read(&path, &mut problems);
        assert_eq!(conf.graph_root, PathBuf::from(DEFAULT_GRAPH_ROOT));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].source, path.display().to_string());
        assert_eq!(problems[0].kind, ProblemKind::Malformed);
        assert!(problems[0].message.contains("defaults are assumed"));
    }
}
