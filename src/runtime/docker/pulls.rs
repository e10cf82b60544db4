//! Docker pulls in flight, told from its temp files.
//!
//! dockerd downloads each layer of a pull into `<root>/tmp/GetImageBlob*`
//! (its `TMPDIR`) and deletes the file once the layer is registered. The
//! file says nothing of the image or of the size it will reach: a Docker
//! pull is a pull of unknown size, judged by how fast it fills the disk.
//! A file nobody has written to for [`STALE_AFTER`] is the leftover of a
//! dockerd that died mid-pull, not a pull.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::READER;
use crate::runtime::{Problem, ProblemKind, PullLayer, PullRecord};

/// Prefix of the temp files of layer downloads (moby's `distribution`).
const BLOB_PREFIX: &str = "GetImageBlob";
/// A download not written to for this long is abandoned. Long enough to
/// cover a layer that waits while the one before it is extracted.
const STALE_AFTER: Duration = Duration::from_secs(120);

/// `<root>/tmp`, where dockerd's downloads land first.
pub fn tmp_dir(docker_root: &Path) -> PathBuf {
    docker_root.join("tmp")
}

/// The pull in flight under `docker_root` as of `now` (one record for all
/// the downloads: Docker's files cannot tell two pulls apart), if any.
pub fn discover(
    docker_root: &Path,
    now: SystemTime,
    problems: &mut Vec<Problem>,
) -> Vec<PullRecord> {
    let dir = tmp_dir(docker_root);
    let layers = match downloads(&dir, now) {
        Ok(layers) => layers,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            problems.push(READER.problem(
                ProblemKind::of_io(&e),
                dir.display().to_string(),
                format!("cannot list Docker's downloads: {e}"),
            ));
            Vec::new()
        }
    };
    if layers.is_empty() {
        return Vec::new();
    }
    vec![PullRecord {
        namespace: String::new(),
        image: None,
        manifest_digest: None,
        ingest: Some(format!("{}/{BLOB_PREFIX}*", dir.display())),
        layers,
    }]
}

/// One layer per live download file in `dir`, with the bytes written so far.
fn downloads(dir: &Path, now: SystemTime) -> io::Result<Vec<PullLayer>> {
    let mut layers = Vec::new();
    for entry in fs::read_dir(dir)?.flatten() {
        let name = entry.file_name();
        // Whatever its encoding: the bytes are on the disk all the same.
        if !name.as_encoded_bytes().starts_with(BLOB_PREFIX.as_bytes()) {
            continue;
        }
        let name = name.to_string_lossy();
        // A file that vanished meanwhile was just registered: skip it.
        let Ok(meta) = entry.metadata() else { continue };
        let fresh = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .is_none_or(|age| age < STALE_AFTER);
        if meta.is_file() && fresh {
            layers.push(PullLayer {
                digest: name.to_string(),
                compressed_bytes: 0,
                downloaded_bytes: meta.len(),
                chain_id: None,
                unpacked: false,
                unpacks: true,
            });
        }
    }
    layers.sort_by(|a, b| a.digest.cmp(&b.digest));
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::docker::fixture::DockerRoot;

    /// A Docker root with the downloads `GetImageBlob<suffix>` of `len` bytes.
    fn root_with(downloads: &[(&str, usize)]) -> (tempfile::TempDir, DockerRoot) {
        let dir = tempfile::tempdir().unwrap();
        let root = DockerRoot::create(dir.path()).unwrap();
        for (suffix, len) in downloads {
            root.download(suffix, *len).unwrap();
        }
        (dir, root)
    }

    #[test]
    fn live_downloads_are_one_pull_of_unknown_size() {
        let (_dir, root) = root_with(&[("111", 10), ("222", 5)]);
        root.write("tmp/other", [0u8; 7]).unwrap();
        let mut problems = Vec::new();
        let pulls = discover(root.root(), SystemTime::now(), &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(pulls.len(), 1);
        let sizes: Vec<(u64, u64)> = pulls[0]
            .layers
            .iter()
            .map(|l| (l.downloaded_bytes, l.compressed_bytes))
            .collect();
        assert_eq!(sizes, vec![(10, 0), (5, 0)]);
        assert!(pulls[0].image.is_none());
    }

    #[test]
    fn stale_leftovers_and_a_missing_tmp_are_no_pull() {
        let (_dir, root) = root_with(&[("111", 10)]);
        let later = SystemTime::now() + STALE_AFTER + Duration::from_secs(1);
        let mut problems = Vec::new();
        assert!(discover(root.root(), later, &mut problems).is_empty());
        let empty = tempfile::tempdir().unwrap();
        assert!(discover(empty.path(), SystemTime::now(), &mut problems).is_empty());
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn an_unreadable_tmp_is_a_problem_naming_it() {
        let root = tempfile::tempdir().unwrap();
        fs::write(tmp_dir(root.path()), b"not a directory").unwrap();
        let mut problems = Vec::new();
        assert!(discover(root.path(), SystemTime::now(), &mut problems).is_empty());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].source.ends_with("/tmp"), "{problems:?}");
    }
}
