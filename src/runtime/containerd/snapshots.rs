//! The overlayfs snapshotter's own database, `metadata.db`.
//!
//! The gRPC API names snapshots but never says which `snapshots/<id>`
//! directory holds one; only this bbolt file does (formats.md §2.4).
//! containerd holds an exclusive flock on it, so it is copied into memory
//! without locking and parsed with [`bolt`](crate::runtime::bolt); a copy
//! torn by a concurrent write is retried.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use super::READER;
use crate::runtime::bolt::{BoltError, Bucket, Db, Value};
use crate::runtime::{Problem, ProblemKind};

/// Attempts at reading a consistent copy before giving up.
pub(super) const ATTEMPTS: usize = 4;
/// Pause between attempts, letting a writer finish its transaction.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

/// The kind of a snapshot, as stored by `snapshots/storage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// A read-only view.
    View,
    /// A writable snapshot (a container's upper dir, or an unpack in flight).
    Active,
    /// A committed, immutable layer.
    Committed,
    /// Any other value.
    Unknown(u8),
}

/// One snapshot of the backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Snapshot {
    /// The numeric ID: its directory is `snapshots/<id>`.
    pub(super) id: u64,
    /// Its kind.
    pub(super) kind: Kind,
}

/// Backend snapshots keyed by (namespace, snapshot name).
pub(super) type Backend = HashMap<(String, String), Snapshot>;

/// Why `metadata.db` could not be understood.
#[derive(Debug, thiserror::Error)]
pub(super) enum MetadataDbError {
    /// The bbolt structure is unreadable.
    #[error(transparent)]
    Bolt(#[from] BoltError),
    /// A bucket the schema requires is missing.
    #[error("no {0} bucket")]
    MissingBucket(&'static str),
    /// A snapshot entry that does not follow the schema.
    #[error("snapshot {key:?}: {what}")]
    BadSnapshot {
        /// The backend key.
        key: String,
        /// What is wrong with it.
        what: &'static str,
    },
}

/// Reads `path` into memory (taking no lock) and parses it, retrying
/// copies torn by a concurrent writer, off the async threads.
pub(super) async fn read(path: &Path) -> Result<Backend, Problem> {
    let owned = path.to_path_buf();
    tokio::task::spawn_blocking(move || read_blocking(&owned))
        .await
        .unwrap_or_else(|e| {
            Err(READER.problem(
                ProblemKind::Unreadable,
                path.display().to_string(),
                format!("reading the overlayfs snapshot database failed: {e}"),
            ))
        })
}

/// [`read`] for callers outside an async runtime.
pub(super) fn read_blocking(path: &Path) -> Result<Backend, Problem> {
    read_consistent(path, parse).map_err(|e| {
        let (kind, msg) = match e {
            CopyError::Io(e) => (
                ProblemKind::of_io(&e),
                format!("cannot read the overlayfs snapshot database: {e}"),
            ),
            CopyError::Inconsistent(last) => (
                ProblemKind::Malformed,
                format!(
                    "overlayfs snapshot database unreadable after {ATTEMPTS} attempts ({last}); snapshot directories unknown"
                ),
            ),
        };
        READER.problem(kind, path.display().to_string(), msg)
    })
}

/// Why no consistent copy of a bbolt file could be read.
#[derive(Debug)]
pub(super) enum CopyError {
    /// The file itself could not be read.
    Io(std::io::Error),
    /// Every copy failed to parse; the last failure, in words.
    Inconsistent(String),
}

/// Copies the bbolt file at `path` into memory without locking it and
/// parses the copy with `parse`, up to [`ATTEMPTS`] times: containerd
/// rewrites pages while it runs, so a copy can be torn.
pub(super) fn read_consistent<T, E: std::fmt::Display>(
    path: &Path,
    parse: impl Fn(&[u8]) -> Result<T, E>,
) -> Result<T, CopyError> {
    let mut last = String::new();
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            std::thread::sleep(RETRY_PAUSE);
        }
        let bytes = std::fs::read(path).map_err(CopyError::Io)?;
        match parse(&bytes) {
            Ok(value) => return Ok(value),
            Err(e) => last = e.to_string(),
        }
    }
    Err(CopyError::Inconsistent(last))
}

/// Parses the bytes of a `metadata.db`.
pub(super) fn parse(data: &[u8]) -> Result<Backend, MetadataDbError> {
    let db = Db::parse(data)?;
    let snapshots = db
        .root()
        .bucket(b"v1")?
        .ok_or(MetadataDbError::MissingBucket("v1"))?
        .bucket(b"snapshots")?
        .ok_or(MetadataDbError::MissingBucket("v1/snapshots"))?;
    let mut out = Backend::new();
    for entry in snapshots.entries()? {
        let key = String::from_utf8_lossy(entry.key).into_owned();
        let bad = |what| MetadataDbError::BadSnapshot {
            key: key.clone(),
            what,
        };
        let Value::Bucket(bucket) = entry.value else {
            return Err(bad("not a bucket"));
        };
        let (ns, name) = split_key(&key).ok_or_else(|| bad("key is not <ns>/<seq>/<name>"))?;
        let snapshot = read_snapshot(&bucket)?.ok_or_else(|| bad("no valid id or kind"))?;
        out.insert((ns.to_string(), name.to_string()), snapshot);
    }
    Ok(out)
}

/// The id and kind of one snapshot bucket, `None` if either is missing.
fn read_snapshot(bucket: &Bucket<'_>) -> Result<Option<Snapshot>, BoltError> {
    let id = data(bucket, b"id")?.and_then(uvarint);
    let kind = data(bucket, b"kind")?.and_then(|d| d.first().copied());
    Ok(id.zip(kind).map(|(id, kind)| Snapshot {
        id,
        kind: match kind {
            1 => Kind::View,
            2 => Kind::Active,
            3 => Kind::Committed,
            other => Kind::Unknown(other),
        },
    }))
}

/// The plain value under `key` in `bucket`; `None` if absent or a bucket.
pub(super) fn data<'a>(bucket: &Bucket<'a>, key: &[u8]) -> Result<Option<&'a [u8]>, BoltError> {
    Ok(match bucket.get(key)? {
        Some(Value::Data(d)) => Some(d),
        _ => None,
    })
}

/// Splits a backend key `<ns>/<seq>/<name>` into namespace and name.
pub(super) fn split_key(key: &str) -> Option<(&str, &str)> {
    let (ns, rest) = key.split_once('/')?;
    let (seq, name) = rest.split_once('/')?;
    seq.parse::<u64>().ok()?;
    Some((ns, name))
}

/// Decodes Go's `binary.PutUvarint` encoding; `None` if malformed.
pub(super) fn uvarint(bytes: &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        let low = u64::from(b & 0x7f);
        if i == 9 && b > 1 {
            return None;
        }
        value |= low << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overlayfs `metadata.db` of a stopped containerd 1.6.20.
    const FIXTURE: &[u8] = include_bytes!("../../../tests/fixtures/bolt/overlayfs-metadata.db");
    const BASE: &str = "sha256:3ecd282e59e706da6453f36af6108e245ecfc3661123c308b433472b1e47699a";
    const TOP: &str = "sha256:a3fafea22fad8bf2dd22c17d94518353b00760be800b57c31fe8e3fc1e3e6767";

    fn snap(id: u64, kind: Kind) -> Snapshot {
        Snapshot { id, kind }
    }

    #[test]
    fn parses_the_snapshots_ctr_listed() {
        // Names and kinds: `ctr -n <ns> snapshots ls` on the same store. IDs:
        // the `snapshots/<id>/fs` in `upperdir=` (active) and `lowerdir=`
        // (committed) of `ctr snapshots mounts` for each container.
        let mut expected: Backend = (1..=24)
            .map(|i| {
                let name = format!("filler-container-with-a-longer-name-{i:02}");
                (("default".to_string(), name), snap(8 + i, Kind::Active))
            })
            .collect();
        for (ns, name, id, kind) in [
            ("default", "plain-1", 6, Kind::Active),
            ("default", BASE, 3, Kind::Committed),
            ("default", TOP, 4, Kind::Committed),
            ("k8s.io", "ctr-app", 8, Kind::Active),
            ("k8s.io", "noimg-1", 7, Kind::Active),
            ("k8s.io", "sandbox-1", 5, Kind::Active),
            ("k8s.io", BASE, 1, Kind::Committed),
            ("k8s.io", TOP, 2, Kind::Committed),
        ] {
            expected.insert((ns.to_string(), name.to_string()), snap(id, kind));
        }
        assert_eq!(parse(FIXTURE).unwrap(), expected);
    }

    #[test]
    fn uvarint_matches_go_encoding() {
        assert_eq!(uvarint(&[0x00]), Some(0));
        assert_eq!(uvarint(&[0x7f]), Some(127));
        assert_eq!(uvarint(&[0xac, 0x02]), Some(300));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(uvarint(&max), Some(u64::MAX));
        assert_eq!(uvarint(&[]), None);
        assert_eq!(uvarint(&[0x80]), None);
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(uvarint(&overflow), None);
    }

    #[test]
    fn split_key_needs_a_numeric_sequence() {
        assert_eq!(
            split_key("k8s.io/12/sha256:ab"),
            Some(("k8s.io", "sha256:ab"))
        );
        assert_eq!(split_key("ns/3/a/b"), Some(("ns", "a/b")));
        assert_eq!(split_key("ns/x/a"), None);
        assert_eq!(split_key("ns/3"), None);
    }

    #[tokio::test]
    async fn unreadable_files_are_problems_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("metadata.db");
        let p = read(&missing).await.unwrap_err();
        assert_eq!(p.source, missing.display().to_string());
        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![7u8; 10_000]).unwrap();
        let p = read(&garbage).await.unwrap_err();
        assert_eq!(p.source, garbage.display().to_string());
        assert!(p.message.contains("after 4 attempts"), "{}", p.message);
        let copy = dir.path().join("copy.db");
        std::fs::write(&copy, FIXTURE).unwrap();
        assert_eq!(read(&copy).await.unwrap().len(), 32);
    }
}
