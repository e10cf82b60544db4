//! Figures for paths whose content never changes while they exist
//! (committed layers, content blobs): measured once, kept while the runtime
//! still lists them, dropped when it no longer does.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::walk::{Usage, Walk};

/// Measured immutable paths.
#[derive(Debug, Default)]
pub struct ImmutableCache {
    sizes: HashMap<PathBuf, Usage>,
}

impl ImmutableCache {
    /// Forgets every path not in `current` (removed layers and blobs) and
    /// returns the paths of `current` that still need measuring.
    pub fn refresh(&mut self, current: &[PathBuf]) -> Vec<PathBuf> {
        let keep: HashSet<&PathBuf> = current.iter().collect();
        self.sizes.retain(|p, _| keep.contains(p));
        current
            .iter()
            .filter(|p| !self.sizes.contains_key(*p))
            .cloned()
            .collect()
    }

    /// Keeps the figure of a walk that met no error; one that did (a layer
    /// removed or unreadable mid-walk) is measured again next time.
    pub fn insert(&mut self, path: PathBuf, walk: &Walk) {
        if walk.error_counts.is_empty() {
            self.sizes.insert(path, walk.usage);
        }
    }

    /// The kept figure of `path`.
    pub fn get(&self, path: &Path) -> Option<Usage> {
        self.sizes.get(path).copied()
    }

    /// How many paths are kept.
    pub fn len(&self) -> usize {
        self.sizes.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.sizes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::walk::ErrorKind;

    fn walk(disk: u64, errors: u64) -> Walk {
        let mut w = Walk::default();
        w.usage.disk_bytes = disk;
        if errors > 0 {
            w.error_counts.insert(ErrorKind::Vanished, errors);
        }
        w
    }

    #[test]
    fn measures_new_paths_once_and_forgets_removed_ones() {
        let (a, b) = (PathBuf::from("/a"), PathBuf::from("/b"));
        let mut cache = ImmutableCache::default();
        assert_eq!(
            cache.refresh(&[a.clone(), b.clone()]),
            vec![a.clone(), b.clone()]
        );
        cache.insert(a.clone(), &walk(10, 0));
        cache.insert(b.clone(), &walk(20, 0));
        assert!(cache.refresh(&[a.clone(), b.clone()]).is_empty());
        assert!(cache.refresh(std::slice::from_ref(&a)).is_empty());
        assert_eq!(
            (cache.get(&a).map(|u| u.disk_bytes), cache.get(&b)),
            (Some(10), None)
        );
        assert_eq!(cache.refresh(&[a.clone(), b.clone()]), vec![b]);
    }

    #[test]
    fn a_walk_with_errors_is_not_kept() {
        let a = PathBuf::from("/a");
        let mut cache = ImmutableCache::default();
        cache.insert(a.clone(), &walk(10, 1));
        assert!(cache.is_empty());
        assert_eq!(cache.refresh(std::slice::from_ref(&a)), vec![a]);
    }
}
