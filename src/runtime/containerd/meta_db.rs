//! containerd's metadata database, `meta.db`, read from the file.
//!
//! When containerd does not answer, what its API would list (namespaces,
//! images, content labels, snapshots, containers) is still in this bbolt
//! file (formats.md §2.3). It is read into the message types the gRPC API
//! returns, so the image and container logic is shared with the gRPC reader.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_client::services::v1::{Container, Image, Info as ContentInfo};
use containerd_client::types::Descriptor;

use super::images::Content;
use super::snapshots::{data, uvarint};
use super::OVERLAYFS;
use crate::runtime::bolt::{BoltError, Bucket, Db, Value};

/// Seconds from Go's zero time (0001-01-01) to the Unix epoch.
const GO_TO_UNIX: i64 = 62_135_596_800;

/// What one namespace of `meta.db` holds.
#[derive(Debug, Default, PartialEq)]
pub(super) struct Namespace {
    /// The namespace name.
    pub(super) name: String,
    /// Image records, in key order.
    pub(super) images: Vec<Image>,
    /// Content blobs with their sizes and labels, keyed by digest.
    pub(super) content: Content,
    /// overlayfs snapshots as (snapshot key, backend key `<ns>/<seq>/<key>`).
    pub(super) snapshots: Vec<(String, String)>,
    /// Containers, in key order.
    pub(super) containers: Vec<Container>,
}

/// Everything read from `meta.db`.
#[derive(Debug, Default)]
pub(super) struct MetaDb {
    /// The namespaces, in key order.
    pub(super) namespaces: Vec<Namespace>,
    /// Entries that do not follow the schema, in words; they are skipped.
    pub(super) problems: Vec<String>,
}

/// Why `meta.db` could not be read at all.
#[derive(Debug, thiserror::Error)]
pub(super) enum MetaDbError {
    /// The bbolt structure is unreadable (corrupt, or a torn copy).
    #[error(transparent)]
    Bolt(#[from] BoltError),
    /// The file has no schema `v1` bucket.
    #[error("no v1 bucket")]
    NoSchema,
}

/// Parses the bytes of a `meta.db`.
pub(super) fn parse(bytes: &[u8]) -> Result<MetaDb, MetaDbError> {
    let v1 = Db::parse(bytes)?
        .root()
        .bucket(b"v1")?
        .ok_or(MetaDbError::NoSchema)?;
    let mut db = MetaDb::default();
    for entry in v1.entries()? {
        // `v1/version` is the only plain value; namespaces are buckets.
        if let Value::Bucket(bucket) = entry.value {
            let name = text(entry.key);
            let ns = namespace(name, &bucket, &mut db.problems)?;
            db.namespaces.push(ns);
        }
    }
    Ok(db)
}

/// Reads one namespace bucket.
fn namespace(
    name: String,
    bucket: &Bucket<'_>,
    problems: &mut Vec<String>,
) -> Result<Namespace, BoltError> {
    let mut ns = Namespace::default();
    let what = |kind: &str| format!("{kind} of namespace {name}");
    for (key, b) in sub_buckets(bucket, &[b"images"], &what("image"), problems)? {
        ns.images.push(image(key, &b)?);
    }
    let blobs = sub_buckets(bucket, &[b"content", b"blob"], &what("blob"), problems)?;
    for (digest, b) in blobs {
        let info = content_info(digest, &b)?;
        ns.content.insert(info.digest.clone(), info);
    }
    let path: [&[u8]; 2] = [b"snapshots", OVERLAYFS.as_bytes()];
    for (key, b) in sub_buckets(bucket, &path, &what("snapshot"), problems)? {
        let backend_key = data(&b, b"name")?.map(text).unwrap_or_default();
        ns.snapshots.push((key, backend_key));
    }
    for (id, b) in sub_buckets(bucket, &[b"containers"], &what("container"), problems)? {
        ns.containers.push(container(id, &b)?);
    }
    ns.name = name;
    Ok(ns)
}

/// The sub-buckets of the bucket at `path` under `bucket` (none if it is
/// absent); plain values where buckets are due become problems.
fn sub_buckets<'a>(
    bucket: &Bucket<'a>,
    path: &[&[u8]],
    what: &str,
    problems: &mut Vec<String>,
) -> Result<Vec<(String, Bucket<'a>)>, BoltError> {
    let mut current = *bucket;
    for key in path {
        match current.bucket(key)? {
            Some(b) => current = b,
            None => return Ok(Vec::new()),
        }
    }
    let mut out = Vec::new();
    for entry in current.entries()? {
        let key = text(entry.key);
        match entry.value {
            Value::Bucket(b) => out.push((key, b)),
            Value::Data(_) => problems.push(format!("{what} {key:?} is not a bucket; skipped")),
        }
    }
    Ok(out)
}

/// One image record: `images/<name>/{target/…, labels/, createdat, updatedat}`.
fn image(name: String, b: &Bucket<'_>) -> Result<Image, BoltError> {
    let target = match b.bucket(b"target")? {
        Some(t) => Some(Descriptor {
            media_type: string(&t, b"mediatype")?,
            digest: string(&t, b"digest")?,
            size: data(&t, b"size")?.and_then(varint).unwrap_or_default(),
            ..Default::default()
        }),
        None => None,
    };
    Ok(Image {
        name,
        labels: labels(b)?,
        target,
        created_at: data(b, b"createdat")?.and_then(go_time).map(Into::into),
        updated_at: data(b, b"updatedat")?.and_then(go_time).map(Into::into),
    })
}

/// One content blob: `content/blob/<digest>/{size, labels/}`.
fn content_info(digest: String, b: &Bucket<'_>) -> Result<ContentInfo, BoltError> {
    Ok(ContentInfo {
        digest,
        size: data(b, b"size")?.and_then(varint).unwrap_or_default(),
        labels: labels(b)?,
        ..Default::default()
    })
}

/// One container: `containers/<id>/{image, snapshotter, snapshotKey, labels/}`.
fn container(id: String, b: &Bucket<'_>) -> Result<Container, BoltError> {
    Ok(Container {
        id,
        labels: labels(b)?,
        image: string(b, b"image")?,
        snapshotter: string(b, b"snapshotter")?,
        snapshot_key: string(b, b"snapshotKey")?,
        ..Default::default()
    })
}

/// The `labels` sub-bucket of `b` as a map (empty if absent).
fn labels(b: &Bucket<'_>) -> Result<HashMap<String, String>, BoltError> {
    let Some(labels) = b.bucket(b"labels")? else {
        return Ok(HashMap::new());
    };
    Ok(labels
        .entries()?
        .into_iter()
        .filter_map(|e| match e.value {
            Value::Data(v) => Some((text(e.key), text(v))),
            Value::Bucket(_) => None,
        })
        .collect())
}

/// The plain value under `key` as text (empty if absent).
fn string(b: &Bucket<'_>, key: &[u8]) -> Result<String, BoltError> {
    Ok(data(b, key)?.map(text).unwrap_or_default())
}

/// Bytes as text; containerd only stores UTF-8, anything else is shown lossily.
fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Decodes Go's `binary.PutVarint` (zig-zag) encoding; `None` if malformed.
fn varint(bytes: &[u8]) -> Option<i64> {
    let u = uvarint(bytes)?;
    // Zig-zag: the low bit is the sign, the rest the magnitude.
    let magnitude = (u >> 1) as i64; // below 2^63, so it fits
    Some(if u & 1 == 0 { magnitude } else { !magnitude })
}

/// Decodes Go's `time.MarshalBinary` (version 1 or 2): big-endian seconds
/// since 0001-01-01 and nanoseconds; `None` if malformed or before 1970.
fn go_time(bytes: &[u8]) -> Option<SystemTime> {
    let (&version, rest) = bytes.split_first()?;
    if !matches!(version, 1 | 2) {
        return None;
    }
    let secs = i64::from_be_bytes(rest.get(..8)?.try_into().ok()?);
    let nanos = u32::from_be_bytes(rest.get(8..12)?.try_into().ok()?);
    let unix = u64::try_from(secs.checked_sub(GO_TO_UNIX)?).ok()?;
    if nanos >= 1_000_000_000 {
        return None;
    }
    UNIX_EPOCH.checked_add(Duration::new(unix, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containerd 1.6.20's `meta.db` after importing `demo/app:1` into the
    /// namespaces `default` and `k8s.io` (see bolt.rs).
    const META_DB: &[u8] = include_bytes!("../../../tests/fixtures/bolt/meta.db");

    #[test]
    fn reads_the_images_ctr_listed() {
        let db = parse(META_DB).unwrap();
        assert!(db.problems.is_empty(), "{:?}", db.problems);
        let names: Vec<_> = db.namespaces.iter().map(|n| n.name.as_str()).collect();
        // `ctr namespaces ls -q` on that containerd.
        assert_eq!(names, ["default", "k8s.io"]);
        for ns in &db.namespaces {
            let [image] = &ns.images[..] else {
                panic!("{:?}", ns.images)
            };
            assert_eq!(image.name, "demo/app:1");
            let target = image.target.as_ref().unwrap();
            // The manifest digest and media type `ctr images import` printed.
            assert_eq!(
                target.digest,
                "sha256:c775361c840493032fa2ed3b88000da57d620ab509dcd1c09645c308a4477810"
            );
            assert_eq!(
                target.media_type,
                "application/vnd.oci.image.manifest.v1+json"
            );
            // The manifest's content entry has its size and its gc labels.
            let manifest = &ns.content[&target.digest];
            assert_eq!(manifest.size, target.size);
            assert!(manifest.size > 0);
            assert!(manifest
                .labels
                .contains_key("containerd.io/gc.ref.content.config"));
            let created: SystemTime = image.created_at.unwrap().try_into().unwrap();
            assert!(created > UNIX_EPOCH + Duration::from_secs(1_700_000_000));
        }
    }

    #[test]
    fn varint_matches_go_encoding() {
        // binary.PutVarint of 0, -1, 1, -64, 300.
        assert_eq!(varint(&[0x00]), Some(0));
        assert_eq!(varint(&[0x01]), Some(-1));
        assert_eq!(varint(&[0x02]), Some(1));
        assert_eq!(varint(&[0x7f]), Some(-64));
        assert_eq!(varint(&[0xd8, 0x04]), Some(300));
        let min = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(varint(&min), Some(i64::MIN));
        assert_eq!(varint(&[0x80]), None);
    }

    #[test]
    fn go_time_decodes_marshal_binary() {
        // time.Date(2026, 11, 26, 14, 47, 12, 766830285, time.UTC).MarshalBinary():
        // version 1, seconds since year 1, nanoseconds, offset -1 (UTC).
        let secs: i64 = 1_795_704_432 + GO_TO_UNIX;
        let mut bytes = vec![1];
        bytes.extend(secs.to_be_bytes());
        bytes.extend(766_830_285u32.to_be_bytes());
        bytes.extend((-1i16).to_be_bytes());
        let want = UNIX_EPOCH + Duration::new(1_795_704_432, 766_830_285);
        assert_eq!(go_time(&bytes), Some(want));
        // Version 2 adds a seconds-of-offset byte.
        bytes[0] = 2;
        bytes.push(0);
        assert_eq!(go_time(&bytes), Some(want));
        assert_eq!(go_time(&bytes[..10]), None);
        bytes[0] = 3;
        assert_eq!(go_time(&bytes), None);
        let mut early = vec![1];
        early.extend(0i64.to_be_bytes());
        early.extend(0u32.to_be_bytes());
        assert_eq!(go_time(&early), None);
    }

    /// An empty bbolt file as `bbolt.Open` creates it (metas, freelist,
    /// empty root leaf), with 4 KiB pages.
    fn empty_bolt() -> Vec<u8> {
        let mut data = vec![0u8; 4 * 4096];
        for index in 0..2 {
            let page = &mut data[index * 4096..];
            page[..8].copy_from_slice(&(index as u64).to_le_bytes());
            page[8..10].copy_from_slice(&0x04u16.to_le_bytes());
            let meta = &mut page[16..80];
            meta[0..4].copy_from_slice(&0xED0C_DAEDu32.to_le_bytes());
            meta[4..8].copy_from_slice(&2u32.to_le_bytes());
            meta[8..12].copy_from_slice(&4096u32.to_le_bytes());
            meta[16..24].copy_from_slice(&3u64.to_le_bytes()); // root
            meta[32..40].copy_from_slice(&2u64.to_le_bytes()); // freelist
            meta[40..48].copy_from_slice(&4u64.to_le_bytes()); // high water
            meta[48..56].copy_from_slice(&(index as u64).to_le_bytes()); // txid
            let sum = meta[..56].iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
                (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
            });
            meta[56..64].copy_from_slice(&sum.to_le_bytes());
        }
        for (pgid, flags) in [(2u64, 0x10u16), (3, 0x02)] {
            let page = &mut data[pgid as usize * 4096..];
            page[..8].copy_from_slice(&pgid.to_le_bytes());
            page[8..10].copy_from_slice(&flags.to_le_bytes());
        }
        data
    }

    #[test]
    fn a_bolt_file_without_the_schema_is_refused() {
        assert!(matches!(parse(&empty_bolt()), Err(MetaDbError::NoSchema)));
        assert!(matches!(parse(&[0; 100]), Err(MetaDbError::Bolt(_))));
    }
}
