//! A small read-only parser for bbolt database files.
//!
//! containerd keeps its snapshot IDs in bbolt files and holds an exclusive
//! `flock` on them while it runs, so they cannot be opened with a bbolt
//! library. Instead the caller copies the bytes into memory and parses them
//! here (format: `/work/shared/research/formats.md` §3). A copy taken while
//! containerd writes may be inconsistent, so every page id, offset and size is
//! bounds-checked and every failure is a [`BoltError`]; no input panics.

use std::collections::HashSet;
use std::fmt;

/// bbolt's magic number in each meta page.
const MAGIC: u32 = 0xED0C_DAED;
/// The only file-format version bbolt writes.
const VERSION: u32 = 2;
/// Size of a page header: id, flags, count, overflow.
const PAGE_HEADER: usize = 16;
/// Size of a branch or leaf element.
const ELEMENT: usize = 16;
/// Size of the `InBucket` header (root pgid, sequence) of a bucket value.
const BUCKET_HEADER: usize = 16;
/// Bytes of the meta covered by its checksum.
const META_CHECKED: usize = 56;
/// Page flag of a branch (interior) page.
const BRANCH_PAGE: u16 = 0x01;
/// Page flag of a leaf page.
const LEAF_PAGE: u16 = 0x02;
/// Leaf element flag marking a sub-bucket.
const BUCKET_LEAF: u32 = 0x01;
/// Deeper trees than this are treated as corrupt (real ones are < 10 deep).
const MAX_DEPTH: usize = 64;

/// Where in the file a problem was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageLoc {
    /// A page of the file, by pgid.
    Page(u64),
    /// The page image stored inline in a bucket value.
    Inline,
}

impl fmt::Display for PageLoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PageLoc::Page(id) => write!(f, "page {id}"),
            PageLoc::Inline => f.write_str("an inline bucket page"),
        }
    }
}

/// Why a buffer is not a readable bbolt database.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoltError {
    /// Neither meta page has the right magic, version and checksum.
    #[error("no valid bbolt meta page (not a bbolt file, or corrupt)")]
    NoValidMeta,
    /// A page id at or past the meta's high-water mark.
    #[error("page id {pgid} is past the high-water mark {high_water}")]
    PageOutOfRange {
        /// The page id referenced.
        pgid: u64,
        /// The meta's high-water mark (first unused pgid).
        high_water: u64,
    },
    /// A page that extends past the end of the buffer.
    #[error("page {pgid} extends past the end of the file ({len} bytes)")]
    PageBeyondEnd {
        /// The page id.
        pgid: u64,
        /// The buffer length.
        len: usize,
    },
    /// A page whose header names another id (a page being rewritten).
    #[error("page {pgid} has header id {found}")]
    PageIdMismatch {
        /// The page id looked up.
        pgid: u64,
        /// The id in its header.
        found: u64,
    },
    /// A page that is neither a branch nor a leaf where a tree node is due.
    #[error("{loc} has flags {flags:#x}, expected a branch or leaf page")]
    NotATreePage {
        /// The page.
        loc: PageLoc,
        /// The flags found.
        flags: u16,
    },
    /// An element, key or value that does not fit inside its page.
    #[error("element {index} of {loc} is out of bounds")]
    ElementOutOfBounds {
        /// The page.
        loc: PageLoc,
        /// The element index.
        index: usize,
    },
    /// A bucket value too short for its header or inline page.
    #[error("bucket value in {loc} is malformed")]
    BadBucketValue {
        /// The page holding the bucket value.
        loc: PageLoc,
    },
    /// A page reached twice in one walk, or a tree deeper than any real one.
    #[error("cycle or excessive depth at {loc}")]
    Cycle {
        /// The page where the walk stopped.
        loc: PageLoc,
    },
}

/// A parsed view of a bbolt file held in memory.
#[derive(Debug, Clone, Copy)]
pub struct Db<'a> {
    data: &'a [u8],
    page_size: usize,
    high_water: u64,
    root: u64,
}

/// A fixed-size meta page read from the file.
#[derive(Debug, Clone, Copy)]
struct Meta {
    page_size: usize,
    root: u64,
    high_water: u64,
    txid: u64,
}

impl<'a> Db<'a> {
    /// Parses the meta pages of `data` and picks the newest valid one.
    pub fn parse(data: &'a [u8]) -> Result<Self, BoltError> {
        let meta0 = read_meta(data, 0);
        // The page size comes from meta0, or else from probing for meta1.
        let page_size = match meta0 {
            Some(m) => Some(m.page_size),
            None => (0..15)
                .map(|i| 1024usize << i)
                .find(|&ps| read_meta(data, ps).is_some_and(|m| m.page_size == ps)),
        }
        .ok_or(BoltError::NoValidMeta)?;
        let meta1 = read_meta(data, page_size).filter(|m| m.page_size == page_size);
        let meta = match (meta0, meta1) {
            (Some(a), Some(b)) => {
                if b.txid > a.txid {
                    b
                } else {
                    a
                }
            }
            (Some(m), None) | (None, Some(m)) => m,
            (None, None) => return Err(BoltError::NoValidMeta),
        };
        Ok(Db {
            data,
            page_size: meta.page_size,
            high_water: meta.high_water,
            root: meta.root,
        })
    }

    /// The top-level bucket, whose sub-buckets are the file's buckets.
    pub fn root(&self) -> Bucket<'a> {
        Bucket {
            db: *self,
            root: Root::Page(self.root),
        }
    }

    /// The bytes of page `pgid` including its overflow pages.
    fn page(&self, pgid: u64) -> Result<&'a [u8], BoltError> {
        // Pages 0 and 1 are the metas; never a tree node.
        if pgid < 2 || pgid >= self.high_water {
            return Err(BoltError::PageOutOfRange {
                pgid,
                high_water: self.high_water,
            });
        }
        let beyond = BoltError::PageBeyondEnd {
            pgid,
            len: self.data.len(),
        };
        let start = usize::try_from(pgid)
            .ok()
            .and_then(|p| p.checked_mul(self.page_size))
            .ok_or(beyond.clone())?;
        let header = slice(self.data, start, PAGE_HEADER).ok_or(beyond.clone())?;
        let found = u64_at(header, 0).ok_or(beyond.clone())?;
        if found != pgid {
            return Err(BoltError::PageIdMismatch { pgid, found });
        }
        let overflow = u32_at(header, 12).ok_or(beyond.clone())?;
        let span = usize::try_from(overflow)
            .ok()
            .and_then(|o| o.checked_add(1))
            .and_then(|n| n.checked_mul(self.page_size))
            .ok_or(beyond.clone())?;
        let last = pgid.saturating_add(u64::from(overflow));
        if last >= self.high_water {
            return Err(BoltError::PageOutOfRange {
                pgid: last,
                high_water: self.high_water,
            });
        }
        slice(self.data, start, span).ok_or(beyond)
    }
}

/// Reads and validates the meta page at byte `offset`.
fn read_meta(data: &[u8], offset: usize) -> Option<Meta> {
    let meta = slice(data, offset.checked_add(PAGE_HEADER)?, 64)?;
    if u32_at(meta, 0)? != MAGIC || u32_at(meta, 4)? != VERSION {
        return None;
    }
    if fnv1a64(meta.get(..META_CHECKED)?) != u64_at(meta, META_CHECKED)? {
        return None;
    }
    let page_size = usize::try_from(u32_at(meta, 8)?).ok()?;
    if !page_size.is_power_of_two() || page_size < 512 {
        return None;
    }
    Some(Meta {
        page_size,
        root: u64_at(meta, 16)?,
        high_water: u64_at(meta, 40)?,
        txid: u64_at(meta, 48)?,
    })
}

/// FNV-1a 64-bit hash, the meta page checksum.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Where a bucket's tree starts.
#[derive(Debug, Clone, Copy)]
enum Root<'a> {
    /// A root page in the file.
    Page(u64),
    /// An inline page image stored in the parent's value.
    Inline(&'a [u8]),
}

/// A bucket: an ordered map of keys to values and sub-buckets.
#[derive(Debug, Clone, Copy)]
pub struct Bucket<'a> {
    db: Db<'a>,
    root: Root<'a>,
}

/// A value stored under a key of a bucket.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    /// Plain bytes.
    Data(&'a [u8]),
    /// A nested bucket.
    Bucket(Bucket<'a>),
}

/// One key of a bucket with its value.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// The key bytes.
    pub key: &'a [u8],
    /// The value or sub-bucket.
    pub value: Value<'a>,
}

impl<'a> Bucket<'a> {
    /// All entries of the bucket, in key order.
    pub fn entries(&self) -> Result<Vec<Entry<'a>>, BoltError> {
        let mut out = Vec::new();
        match self.root {
            Root::Inline(page) => self.read_leaf(page, PageLoc::Inline, &mut out)?,
            Root::Page(pgid) => self.walk(pgid, 0, &mut HashSet::new(), &mut out)?,
        }
        Ok(out)
    }

    /// The value stored under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Result<Option<Value<'a>>, BoltError> {
        Ok(self
            .entries()?
            .into_iter()
            .find(|e| e.key == key)
            .map(|e| e.value))
    }

    /// The sub-bucket under `key`; `None` if absent or a plain value.
    pub fn bucket(&self, key: &[u8]) -> Result<Option<Bucket<'a>>, BoltError> {
        Ok(match self.get(key)? {
            Some(Value::Bucket(b)) => Some(b),
            _ => None,
        })
    }

    /// Collects the leaves under page `pgid` into `out`.
    fn walk(
        &self,
        pgid: u64,
        depth: usize,
        seen: &mut HashSet<u64>,
        out: &mut Vec<Entry<'a>>,
    ) -> Result<(), BoltError> {
        let loc = PageLoc::Page(pgid);
        if depth > MAX_DEPTH || !seen.insert(pgid) {
            return Err(BoltError::Cycle { loc });
        }
        let page = self.db.page(pgid)?;
        match flags(page, loc)? {
            LEAF_PAGE => self.read_leaf(page, loc, out),
            _ => {
                for index in 0..count(page, loc)? {
                    let child = element(page, index)
                        .and_then(|e| u64_at(e, 8))
                        .ok_or(BoltError::ElementOutOfBounds { loc, index })?;
                    self.walk(child, depth + 1, seen, out)?;
                }
                Ok(())
            }
        }
    }

    /// Appends the key/value pairs of the leaf `page` to `out`.
    fn read_leaf(
        &self,
        page: &'a [u8],
        loc: PageLoc,
        out: &mut Vec<Entry<'a>>,
    ) -> Result<(), BoltError> {
        let flags = flags(page, loc)?;
        if flags != LEAF_PAGE {
            return Err(BoltError::NotATreePage { loc, flags });
        }
        for index in 0..count(page, loc)? {
            let (elem_flags, key, value) =
                leaf_element(page, index).ok_or(BoltError::ElementOutOfBounds { loc, index })?;
            let value = if elem_flags & BUCKET_LEAF != 0 {
                Value::Bucket(self.sub_bucket(value, loc)?)
            } else {
                Value::Data(value)
            };
            out.push(Entry { key, value });
        }
        Ok(())
    }

    /// Decodes a sub-bucket value found in `loc`.
    fn sub_bucket(&self, value: &'a [u8], loc: PageLoc) -> Result<Bucket<'a>, BoltError> {
        let bad = BoltError::BadBucketValue { loc };
        let root = u64_at(value, 0).ok_or(bad.clone())?;
        let root = if root != 0 {
            Root::Page(root)
        } else if matches!(loc, PageLoc::Inline) {
            // Inline buckets never hold sub-buckets; refusing them also bounds
            // the nesting of inline pages.
            return Err(bad);
        } else {
            Root::Inline(value.get(BUCKET_HEADER..).ok_or(bad)?)
        };
        Ok(Bucket { db: self.db, root })
    }
}

/// The page type flags of a tree page.
fn flags(page: &[u8], loc: PageLoc) -> Result<u16, BoltError> {
    let flags = u16_at(page, 8).ok_or(BoltError::ElementOutOfBounds { loc, index: 0 })?;
    match flags {
        BRANCH_PAGE | LEAF_PAGE => Ok(flags),
        _ => Err(BoltError::NotATreePage { loc, flags }),
    }
}

/// The element count of a page.
fn count(page: &[u8], loc: PageLoc) -> Result<usize, BoltError> {
    u16_at(page, 10)
        .map(usize::from)
        .ok_or(BoltError::ElementOutOfBounds { loc, index: 0 })
}

/// The 16 bytes of element `index` and everything after them in the page.
fn element(page: &[u8], index: usize) -> Option<&[u8]> {
    let start = index.checked_mul(ELEMENT)?.checked_add(PAGE_HEADER)?;
    page.get(start..).filter(|rest| rest.len() >= ELEMENT)
}

/// Flags, key and value of leaf element `index`. Key positions are relative
/// to the element's own address.
fn leaf_element(page: &[u8], index: usize) -> Option<(u32, &[u8], &[u8])> {
    let elem = element(page, index)?;
    let to_usize = |v: u32| usize::try_from(v).ok();
    let pos = to_usize(u32_at(elem, 4)?)?;
    let ksize = to_usize(u32_at(elem, 8)?)?;
    let vsize = to_usize(u32_at(elem, 12)?)?;
    let key = slice(elem, pos, ksize)?;
    let value = slice(elem, pos.checked_add(ksize)?, vsize)?;
    Some((u32_at(elem, 0)?, key, value))
}

/// `data[start..start + len]`, or `None` when out of bounds.
fn slice(data: &[u8], start: usize, len: usize) -> Option<&[u8]> {
    data.get(start..start.checked_add(len)?)
}

/// Little-endian integer readers (bbolt is native-endian; amd64/arm64 are LE).
fn u16_at(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(slice(data, at, 2)?.try_into().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(slice(data, at, 4)?.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(slice(data, at, 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// containerd 1.6.20's `meta.db` after `ctr -n k8s.io images import` and
    /// `ctr -n default images import` of one image (`demo/app:1`).
    const META_DB: &[u8] = include_bytes!("../../tests/fixtures/bolt/meta.db");
    /// The overlayfs `metadata.db` of a containerd 1.6.20 with 32 snapshots
    /// in two namespaces (enough to need branch pages).
    const SNAPSHOT_DB: &[u8] = include_bytes!("../../tests/fixtures/bolt/overlayfs-metadata.db");

    /// Visits every entry of every bucket under `b`; the number of entries.
    fn walk_all(b: Bucket<'_>, depth: usize) -> Result<usize, BoltError> {
        let mut n = 0;
        for e in b.entries()? {
            n += 1;
            if let (Value::Bucket(sub), true) = (e.value, depth < 8) {
                n += walk_all(sub, depth + 1)?;
            }
        }
        Ok(n)
    }

    fn parse_all(data: &[u8]) -> Result<usize, BoltError> {
        walk_all(Db::parse(data)?.root(), 0)
    }

    fn keys(b: &Bucket<'_>) -> Vec<String> {
        let entries = b.entries().unwrap();
        entries
            .iter()
            .map(|e| String::from_utf8_lossy(e.key).into_owned())
            .collect()
    }

    /// Writes a valid meta page for `root`/`high_water` at page `index`.
    fn write_meta(data: &mut [u8], index: usize, root: u64, high_water: u64, txid: u64) {
        let page_size = 4096;
        let m = index * page_size + PAGE_HEADER;
        data[index * page_size..][..8].copy_from_slice(&(index as u64).to_le_bytes());
        data[index * page_size + 8..][..2].copy_from_slice(&0x04u16.to_le_bytes());
        data[m..m + 4].copy_from_slice(&MAGIC.to_le_bytes());
        data[m + 4..m + 8].copy_from_slice(&VERSION.to_le_bytes());
        data[m + 8..m + 12].copy_from_slice(&(page_size as u32).to_le_bytes());
        data[m + 16..m + 24].copy_from_slice(&root.to_le_bytes());
        data[m + 40..m + 48].copy_from_slice(&high_water.to_le_bytes());
        data[m + 48..m + 56].copy_from_slice(&txid.to_le_bytes());
        let sum = fnv1a64(&data[m..m + META_CHECKED]);
        data[m + 56..m + 64].copy_from_slice(&sum.to_le_bytes());
    }

    /// A deterministic pseudo-random stream (xorshift64).
    fn rng(mut state: u64) -> impl FnMut() -> u64 {
        move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        }
    }

    #[test]
    fn reads_namespaces_and_images_of_meta_db() {
        let db = Db::parse(META_DB).unwrap();
        assert_eq!(db.page_size, 4096);
        assert_eq!(keys(&db.root()), ["v1"]);
        let v1 = db.root().bucket(b"v1").unwrap().unwrap();
        // `ctr namespaces ls -q` on that containerd printed default, k8s.io.
        assert_eq!(keys(&v1), ["default", "k8s.io", "version"]);
        assert!(matches!(v1.get(b"version").unwrap(), Some(Value::Data(_))));
        for ns in ["default", "k8s.io"] {
            let images = v1.bucket(ns.as_bytes()).unwrap().unwrap();
            let images = images.bucket(b"images").unwrap().unwrap();
            // `ctr -n <ns> images ls -q` printed demo/app:1.
            assert_eq!(keys(&images), ["demo/app:1"]);
            let image = images.bucket(b"demo/app:1").unwrap().unwrap();
            let target = image.bucket(b"target").unwrap().unwrap();
            let Some(Value::Data(digest)) = target.get(b"digest").unwrap() else {
                panic!("no target digest")
            };
            // The manifest digest `ctr images import` printed.
            assert_eq!(
                digest,
                b"sha256:c775361c840493032fa2ed3b88000da57d620ab509dcd1c09645c308a4477810"
            );
        }
    }

    #[test]
    fn reads_every_snapshot_key_across_branch_pages() {
        let v1 = Db::parse(SNAPSHOT_DB).unwrap().root();
        let v1 = v1.bucket(b"v1").unwrap().unwrap();
        let snaps = v1.bucket(b"snapshots").unwrap().unwrap();
        let Root::Page(top) = snaps.root else {
            panic!("snapshots bucket is inline")
        };
        assert_eq!(
            flags(snaps.db.page(top).unwrap(), PageLoc::Page(top)),
            Ok(BRANCH_PAGE)
        );
        let mut names: Vec<String> = keys(&snaps)
            .iter()
            .map(|k| {
                let mut parts = k.splitn(3, '/');
                let ns = parts.next().unwrap();
                parts.next().unwrap().parse::<u64>().unwrap();
                format!("{ns} {}", parts.next().unwrap())
            })
            .collect();
        names.sort();
        // Listed by `ctr -n <ns> snapshots ls` on the same store.
        let mut expected: Vec<String> = (1..=24)
            .map(|i| format!("default filler-container-with-a-longer-name-{i:02}"))
            .collect();
        expected.extend(
            [
                "default plain-1",
                "default sha256:3ecd282e59e706da6453f36af6108e245ecfc3661123c308b433472b1e47699a",
                "default sha256:a3fafea22fad8bf2dd22c17d94518353b00760be800b57c31fe8e3fc1e3e6767",
                "k8s.io ctr-app",
                "k8s.io noimg-1",
                "k8s.io sandbox-1",
                "k8s.io sha256:3ecd282e59e706da6453f36af6108e245ecfc3661123c308b433472b1e47699a",
                "k8s.io sha256:a3fafea22fad8bf2dd22c17d94518353b00760be800b57c31fe8e3fc1e3e6767",
            ]
            .map(String::from),
        );
        expected.sort();
        assert_eq!(names, expected);
    }

    #[test]
    fn truncated_files_fail() {
        for len in [0, 100, 4096, 4096 + 80, 8192, SNAPSHOT_DB.len() / 2] {
            assert!(parse_all(&SNAPSHOT_DB[..len]).is_err(), "length {len}");
        }
        assert_eq!(Db::parse(&[]).unwrap_err(), BoltError::NoValidMeta);
    }

    #[test]
    fn flipped_checksum_bytes_fail() {
        let mut data = META_DB.to_vec();
        data[PAGE_HEADER + META_CHECKED] ^= 0x01;
        data[4096 + PAGE_HEADER + META_CHECKED] ^= 0x01;
        assert_eq!(Db::parse(&data).unwrap_err(), BoltError::NoValidMeta);
    }

    #[test]
    fn page_ids_out_of_range_fail() {
        let mut data = SNAPSHOT_DB.to_vec();
        let pages = (data.len() / 4096) as u64;
        write_meta(&mut data, 0, pages + 5, pages, 100);
        write_meta(&mut data, 1, pages + 5, pages, 101);
        assert_eq!(
            parse_all(&data).unwrap_err(),
            BoltError::PageOutOfRange {
                pgid: pages + 5,
                high_water: pages
            }
        );
        // A high-water mark past the end of the file is caught per page.
        let root = Db::parse(SNAPSHOT_DB).unwrap().root;
        write_meta(&mut data, 0, root, u64::MAX, 100);
        write_meta(&mut data, 1, root, u64::MAX, 101);
        assert_eq!(
            parse_all(&data[..3 * 4096]).unwrap_err(),
            BoltError::PageBeyondEnd {
                pgid: root,
                len: 3 * 4096
            }
        );
    }

    #[test]
    fn a_branch_page_pointing_at_itself_is_a_cycle() {
        let mut data = vec![0u8; 3 * 4096];
        write_meta(&mut data, 0, 2, 3, 1);
        write_meta(&mut data, 1, 2, 3, 2);
        let page = &mut data[2 * 4096..];
        page[..8].copy_from_slice(&2u64.to_le_bytes());
        page[8..10].copy_from_slice(&BRANCH_PAGE.to_le_bytes());
        page[10..12].copy_from_slice(&1u16.to_le_bytes());
        page[PAGE_HEADER + 8..PAGE_HEADER + 16].copy_from_slice(&2u64.to_le_bytes());
        assert_eq!(
            parse_all(&data).unwrap_err(),
            BoltError::Cycle {
                loc: PageLoc::Page(2)
            }
        );
    }

    #[test]
    fn random_garbage_fails_without_panicking() {
        let mut next = rng(0x9e37_79b9_7f4a_7c15);
        for size in [1, 64, 4096, 8192, 3 * 4096 + 7, 65536] {
            let data: Vec<u8> = (0..size).map(|_| next() as u8).collect();
            assert_eq!(Db::parse(&data).unwrap_err(), BoltError::NoValidMeta);
            // Valid metas over garbage pages must fail cleanly too.
            if size >= 3 * 4096 {
                let mut forged = data.clone();
                write_meta(&mut forged, 0, 2, (size / 4096) as u64, 1);
                write_meta(&mut forged, 1, 2, (size / 4096) as u64, 2);
                let _ = parse_all(&forged);
            }
        }
    }

    #[test]
    fn random_byte_flips_never_panic() {
        let mut next = rng(0x2545_f491_4f6c_dd1d);
        let mut failures = 0;
        for fixture in [META_DB, SNAPSHOT_DB] {
            for _ in 0..500 {
                let mut data = fixture.to_vec();
                for _ in 0..(next() % 8 + 1) {
                    // Leave the metas alone so the damage reaches the tree.
                    let at = 8192 + (next() as usize) % (data.len() - 8192);
                    data[at] ^= 1 << (next() % 8);
                }
                failures += usize::from(parse_all(&data).is_err());
            }
        }
        // The damage does reach the parser (many flips hit unused bytes).
        assert!(failures > 10, "{failures} failures");
    }
}
