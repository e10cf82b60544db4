//! Notices a pull the moment it starts, whatever the timers.
//!
//! containerd publishes no event while a pull downloads (its first,
//! `/images/create`, comes at the end), and Docker publishes none the agent
//! follows. But both write into a directory first: containerd's content
//! store creates `ingest/<hash>/` when a blob's download starts, dockerd a
//! `tmp/GetImageBlob*` file. Listing those directories every second costs a
//! couple of `getdents` calls on an idle node, so a new entry there makes
//! the agent reread the runtimes within a second of the pull's start.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::PathBuf;

/// The directories watched and the entries seen in them at the last look.
#[derive(Debug, Default)]
pub struct PullWatch {
    dirs: BTreeSet<PathBuf>,
    seen: BTreeSet<(PathBuf, OsString)>,
}

impl PullWatch {
    /// Watches `dirs` (besides those already watched); what they hold now
    /// counts as seen.
    pub fn watch(&mut self, dirs: impl IntoIterator<Item = PathBuf>) {
        self.dirs.extend(dirs);
        self.seen = self.entries();
    }

    /// Whether an entry appeared since the last look (a pull may have
    /// started). Entries that went away are forgotten: a pull that ends is
    /// noticed by rereading the runtimes, not here.
    pub fn started(&mut self) -> bool {
        let now = self.entries();
        let new = now.difference(&self.seen).next().is_some();
        self.seen = now;
        new
    }

    /// Every entry of every watched directory; a directory that is missing
    /// or unreadable holds none (the reread that follows says why).
    fn entries(&self) -> BTreeSet<(PathBuf, OsString)> {
        self.dirs
            .iter()
            .filter_map(|dir| Some((dir, std::fs::read_dir(dir).ok()?)))
            .flat_map(|(dir, list)| list.flatten().map(|e| (dir.clone(), e.file_name())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_entry_is_a_start_and_leftovers_are_not() {
        let root = tempfile::tempdir().unwrap();
        let ingest = root.path().join("ingest");
        std::fs::create_dir(&ingest).unwrap();
        std::fs::create_dir(ingest.join("leftover")).unwrap();
        let mut watch = PullWatch::default();
        watch.watch([ingest.clone(), root.path().join("missing")]);
        assert!(!watch.started(), "what was there at the start is no pull");
        std::fs::create_dir(ingest.join("a")).unwrap();
        assert!(watch.started());
        assert!(!watch.started(), "the same entry starts nothing twice");
        std::fs::remove_dir(ingest.join("a")).unwrap();
        assert!(!watch.started(), "an entry going away is no start");
        std::fs::create_dir(root.path().join("missing")).unwrap();
        std::fs::write(root.path().join("missing/GetImageBlob1"), b"x").unwrap();
        assert!(watch.started(), "a directory created later is watched too");
    }
}
