//! Pods' emptyDir volumes under the kubelet root
//! (`pods/<uid>/volumes/kubernetes.io~empty-dir/<name>`): they fill nodefs
//! and count against the pods' ephemeral-storage. Like the other readers this
//! only says where they are. A memory-backed emptyDir is its own tmpfs mount
//! and takes no disk: it is left out.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::podlogs::subdirs;
use crate::runtime::{Problem, Reader};

/// Who meets the problems of this reader.
const READER: Reader = Reader::Volumes;

/// The directory, below a pod's, holding its emptyDir volumes.
const EMPTY_DIRS: &str = "volumes/kubernetes.io~empty-dir";

/// One pod's emptyDir volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmptyDir {
    /// The pod's UID (its directory name).
    pub pod_uid: String,
    /// The volume's name.
    pub name: String,
    /// The volume's directory.
    pub path: PathBuf,
}

/// Every disk-backed emptyDir under `kubelet_root`. A missing root or pods
/// directory means none; anything unreadable is a [`Problem`].
pub fn discover(kubelet_root: &Path) -> (Vec<EmptyDir>, Vec<Problem>) {
    let mut problems = Vec::new();
    let pods = kubelet_root.join("pods");
    let pod_dirs = match subdirs(&pods, READER, &mut problems) {
        Ok(dirs) => dirs,
        Err(e) => {
            note(&pods, &e, &mut problems);
            return (Vec::new(), problems);
        }
    };
    let Ok(root_dev) = device(kubelet_root) else {
        return (Vec::new(), problems);
    };
    let mut volumes = Vec::new();
    for (uid, pod_dir) in pod_dirs {
        let dir = pod_dir.join(EMPTY_DIRS);
        match subdirs(&dir, READER, &mut problems) {
            Ok(found) => volumes.extend(
                found
                    .into_iter()
                    .filter(|(_, path)| device(path).is_ok_and(|dev| dev == root_dev))
                    .map(|(name, path)| EmptyDir {
                        pod_uid: uid.clone(),
                        name,
                        path,
                    }),
            ),
            Err(e) => note(&dir, &e, &mut problems),
        }
    }
    (volumes, problems)
}

fn device(path: &Path) -> io::Result<u64> {
    std::fs::symlink_metadata(path).map(|m| m.dev())
}

/// A directory that is simply absent is no problem (most pods have no
/// emptyDir); any other error is.
fn note(dir: &Path, e: &io::Error, problems: &mut Vec<Problem>) {
    if e.kind() != io::ErrorKind::NotFound {
        problems.push(READER.problem_from(dir.display().to_string(), e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_disk_backed_empty_dirs_of_every_pod() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        for (uid, vol) in [("u1", "cache"), ("u1", "scratch"), ("u2", "data")] {
            std::fs::create_dir_all(root.join(format!("pods/{uid}/{EMPTY_DIRS}/{vol}"))).unwrap();
        }
        std::fs::create_dir_all(root.join("pods/u3/volumes/kubernetes.io~configmap/x")).unwrap();
        let (found, problems) = discover(root);
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<(&str, &str)> = found
            .iter()
            .map(|v| (v.pod_uid.as_str(), v.name.as_str()))
            .collect();
        assert_eq!(names, [("u1", "cache"), ("u1", "scratch"), ("u2", "data")]);
        assert_eq!(
            found[2].path,
            root.join(format!("pods/u2/{EMPTY_DIRS}/data"))
        );
    }

    #[test]
    fn a_memory_backed_empty_dir_is_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join(format!("pods/u1/{EMPTY_DIRS}/shm"));
        std::fs::create_dir_all(&vol).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&vol)
            .status()
            .unwrap();
        assert!(mounted.success(), "mounting a tmpfs needs root");
        let (found, _) = discover(tmp.path());
        let _ = std::process::Command::new("umount").arg(&vol).status();
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn fault_a_volume_whose_name_is_not_utf8_counts_and_is_reported() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp
            .path()
            .join(format!("pods/u1/{EMPTY_DIRS}"))
            .join(OsStr::from_bytes(b"cache\xff"));
        std::fs::create_dir_all(&vol).unwrap();
        let (found, problems) = discover(tmp.path());
        let want = EmptyDir {
            pod_uid: "u1".into(),
            name: "cache\u{fffd}".into(),
            path: vol.clone(),
        };
        assert_eq!(found, [want]);
        let sources: Vec<&str> = problems.iter().map(|p| p.source.as_str()).collect();
        assert_eq!(sources, [vol.display().to_string()]);
    }

    #[test]
    fn no_kubelet_root_means_no_volumes_and_no_problem() {
        let (found, problems) = discover(Path::new("/nonexistent/kubelet"));
        assert!(found.is_empty() && problems.is_empty());
    }
}
