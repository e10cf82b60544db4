//! Tables of contents some layers carry: the exact file list, read without
//! decoding the layer.
//!
//! - eStargz (containerd/stargz-snapshotter): the blob ends with a 51-byte
//!   footer, an empty gzip member whose extra field holds the subfield `SG`
//!   with `"%016xSTARGZ"`, the TOC's offset in hex (legacy stargz: a
//!   47-byte footer, the same text as the whole extra field). At that
//!   offset a gzip member holds a tar whose one member,
//!   `stargz.index.json`, is the TOC.
//! - zstd:chunked (containers/storage): the layer annotation
//!   `io.github.containers.zstd-chunked.manifest-position` is
//!   `offset:length:lengthUncompressed:type` (type 1: the same JSON TOC);
//!   at `offset` (past a skippable frame's 8-byte header) are `length`
//!   bytes of one zstd frame holding the JSON.
//!
//! Both TOCs are `{"version":1,"entries":[{"type":…,"size":…,"linkName":…},…]}`;
//! a file cut in chunks is a `reg` entry (its whole size) followed by
//! `chunk` entries, which are skipped here.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;

use flate2::bufread::GzDecoder;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use super::tar_sample::{c_str, padded, Header, BLOCK};
use super::{zstd, Entry, EntryKind};

/// The size of an eStargz footer: read this many bytes of the blob's tail.
pub const ESTARGZ_FOOTER: u64 = 51;
/// A legacy stargz footer (no subfield header).
const LEGACY_FOOTER: usize = 47;
/// The most bytes a TOC may decode to (its tar for eStargz).
const MAX_TOC_DECODED: u64 = 64 << 20;
/// The most entries a TOC may list.
const MAX_TOC_ENTRIES: usize = 2_000_000;
/// The eStargz TOC's name in its tar.
const ESTARGZ_TOC_NAME: &[u8] = b"stargz.index.json";
/// The zstd:chunked position annotation: its current key, and the
/// `io.containers.` one older containers/storage wrote.
const CHUNKED_POSITION: [&str; 2] = [
    "io.github.containers.zstd-chunked.manifest-position",
    "io.containers.zstd-chunked.manifest-position",
];
/// zstd:chunked's manifest type for the CRFS-style JSON TOC.
const CHUNKED_TYPE_CRFS: u64 = 1;

const ESTARGZ: &str = "eStargz TOC";
const CHUNKED: &str = "zstd:chunked TOC";

/// A table of contents that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TocError {
    /// The bytes are not what the format says.
    #[error("{what}: {reason}")]
    Malformed {
        /// `eStargz TOC` or `zstd:chunked TOC`.
        what: &'static str,
        /// What is wrong, and where.
        reason: String,
    },
    /// The TOC is bigger than this reader allows.
    #[error("{what}: more than {limit} bytes decoded, the limit; not read")]
    TooLarge {
        /// `eStargz TOC` or `zstd:chunked TOC`.
        what: &'static str,
        /// The limit.
        limit: u64,
    },
}

/// Where a zstd:chunked layer keeps its TOC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TocSpan {
    /// Offset of the compressed TOC in the blob.
    pub offset: u64,
    /// Its compressed length.
    pub length: u64,
    /// Its length once decoded.
    pub uncompressed: u64,
}

/// The TOC offset an eStargz blob's footer gives; `tail` is the blob's
/// last [`ESTARGZ_FOOTER`] bytes (or more). A legacy stargz footer (the
/// last 47 bytes) is read too. None when the blob is not (e)stargz.
pub fn estargz_toc_offset(tail: &[u8]) -> Option<u64> {
    let last = |n: usize| tail.get(tail.len().checked_sub(n)?..);
    let estargz = last(ESTARGZ_FOOTER as usize)
        .and_then(gzip_extra)
        .filter(|extra| extra.len() == 26 && extra[..4] == [b'S', b'G', 22, 0])
        .and_then(|extra| footer_offset(&extra[4..]));
    estargz.or_else(|| {
        last(LEGACY_FOOTER)
            .and_then(gzip_extra)
            .and_then(footer_offset)
    })
}

/// The extra field of the gzip member header `member` starts with.
fn gzip_extra(member: &[u8]) -> Option<&[u8]> {
    const FEXTRA: u8 = 0x04;
    if member.get(..3)? != [0x1f, 0x8b, 0x08] || member.get(3)? & FEXTRA == 0 {
        return None;
    }
    let len = usize::from(u16::from_le_bytes([*member.get(10)?, *member.get(11)?]));
    member.get(12..12 + len)
}

/// The offset in `"%016xSTARGZ"`.
fn footer_offset(text: &[u8]) -> Option<u64> {
    let hex = text.strip_suffix(b"STARGZ").filter(|hex| hex.len() == 16)?;
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

/// The entries of an eStargz TOC; `toc` is the blob from the footer's
/// offset up to the footer (a gzip member holding a tar holding
/// `stargz.index.json`).
pub fn estargz_toc(toc: &[u8]) -> Result<Vec<Entry>, TocError> {
    let tar = decode(GzDecoder::new(toc), ESTARGZ)?;
    let json = estargz_json(&tar).map_err(|reason| malformed(ESTARGZ, reason))?;
    entries(json, ESTARGZ, MAX_TOC_ENTRIES)
}

/// The data of the TOC member in an eStargz TOC's tar, past any
/// extension headers.
fn estargz_json(tar: &[u8]) -> Result<&[u8], String> {
    let mut at = 0usize;
    loop {
        let block: &[u8; BLOCK as usize] = tar
            .get(at..at + BLOCK as usize)
            .and_then(|b| b.try_into().ok())
            .ok_or("the tar ends before stargz.index.json")?;
        let header = Header::parse(block).ok_or_else(|| format!("no tar header at byte {at}"))?;
        let data = at + BLOCK as usize;
        let size = usize::try_from(header.size).map_err(|_| "member size overflows")?;
        if !matches!(header.typeflag, b'x' | b'g' | b'L' | b'K') {
            let name = c_str(&block[..100]);
            if name != ESTARGZ_TOC_NAME {
                return Err(format!(
                    "the tar holds {:?}, not stargz.index.json",
                    String::from_utf8_lossy(name)
                ));
            }
            return tar
                .get(data..data.saturating_add(size))
                .ok_or_else(|| format!("stargz.index.json is cut short ({size} bytes declared)"));
        }
        let skip = usize::try_from(padded(header.size)).map_err(|_| "member size overflows")?;
        at = data.saturating_add(skip);
    }
}

/// Where a zstd:chunked layer keeps its TOC, from its manifest
/// annotations. None when the layer is not zstd:chunked, or its TOC is of
/// a type other than the JSON one this module reads.
pub fn chunked_toc_span(annotations: &BTreeMap<String, String>) -> Option<TocSpan> {
    let value = CHUNKED_POSITION
        .iter()
        .find_map(|key| annotations.get(*key))?;
    let fields: Vec<u64> = value
        .split(':')
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    match fields[..] {
        [offset, length, uncompressed, CHUNKED_TYPE_CRFS] => Some(TocSpan {
            offset,
            length,
            uncompressed,
        }),
        _ => None,
    }
}

/// The entries of a zstd:chunked TOC; `bytes` are the blob's bytes from
/// `span.offset`, at least `span.length` of them.
pub fn chunked_toc(bytes: &[u8], span: &TocSpan) -> Result<Vec<Entry>, TocError> {
    if span.uncompressed > MAX_TOC_DECODED {
        return Err(too_large(CHUNKED));
    }
    let frame = usize::try_from(span.length)
        .ok()
        .and_then(|len| bytes.get(..len))
        .ok_or_else(|| {
            let reason = format!(
                "{} bytes given, the annotation says {}",
                bytes.len(),
                span.length
            );
            malformed(CHUNKED, reason)
        })?;
    let frames = zstd::Frames::new(frame).map_err(|e| malformed(CHUNKED, e.to_string()))?;
    let json = decode(frames, CHUNKED)?;
    if json.len() as u64 != span.uncompressed {
        let reason = format!(
            "decoded {} bytes, the annotation says {}",
            json.len(),
            span.uncompressed
        );
        return Err(malformed(CHUNKED, reason));
    }
    entries(&json, CHUNKED, MAX_TOC_ENTRIES)
}

/// Everything `decoder` yields, up to [`MAX_TOC_DECODED`].
fn decode(decoder: impl Read, what: &'static str) -> Result<Vec<u8>, TocError> {
    let mut out = Vec::new();
    decoder
        .take(MAX_TOC_DECODED + 1)
        .read_to_end(&mut out)
        .map_err(|e| malformed(what, format!("decoding: {e}")))?;
    if out.len() as u64 > MAX_TOC_DECODED {
        return Err(too_large(what));
    }
    Ok(out)
}

/// The TOC JSON's entries, `chunk` continuations skipped, at most `max`.
fn entries(json: &[u8], what: &'static str, max: usize) -> Result<Vec<Entry>, TocError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    (&mut de)
        .deserialize_map(TocVisitor { max })
        .and_then(|entries| de.end().map(|()| entries))
        .map_err(|e| malformed(what, format!("JSON: {e}")))
}

/// The fields of a TOC entry that matter here.
#[derive(Deserialize)]
struct RawEntry<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default)]
    size: u64,
    #[serde(rename = "linkName", default, borrow)]
    link_name: Option<Cow<'a, str>>,
}

impl RawEntry<'_> {
    /// The entry, or None for a `chunk` continuation.
    fn entry(&self) -> Option<Entry> {
        let (kind, size) = match &*self.kind {
            "chunk" => return None,
            "reg" => (EntryKind::File, self.size),
            "dir" => (EntryKind::Dir, 0),
            "symlink" => (
                EntryKind::Symlink,
                self.link_name.as_ref().map_or(0, |l| l.len() as u64),
            ),
            "hardlink" => (EntryKind::Hardlink, 0),
            _ => (EntryKind::Other, 0),
        };
        Some(Entry { kind, size })
    }
}

/// Reads `{"entries": […], …}` into entries, failing past `max`.
struct TocVisitor {
    max: usize,
}

impl<'de> Visitor<'de> for TocVisitor {
    type Value = Vec<Entry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a TOC object with an \"entries\" array")
    }

    fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<Vec<Entry>, A::Error> {
        let mut entries = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if key == "entries" {
                entries = Some(map.next_value_seed(EntriesSeed { max: self.max })?);
            } else {
                map.next_value::<de::IgnoredAny>()?;
            }
        }
        entries.ok_or_else(|| de::Error::missing_field("entries"))
    }
}

/// Reads the `entries` array, failing past `max`.
struct EntriesSeed {
    max: usize,
}

impl<'de> de::DeserializeSeed<'de> for EntriesSeed {
    type Value = Vec<Entry>;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<Vec<Entry>, D::Error> {
        de.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EntriesSeed {
    type Value = Vec<Entry>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of TOC entries")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Entry>, A::Error> {
        let mut entries = Vec::new();
        while let Some(raw) = seq.next_element::<RawEntry<'de>>()? {
            let Some(entry) = raw.entry() else { continue };
            if entries.len() == self.max {
                return Err(de::Error::custom(format!(
                    "more than {} entries, the limit; not read",
                    self.max
                )));
            }
            entries.push(entry);
        }
        Ok(entries)
    }
}

fn malformed(what: &'static str, reason: impl Into<String>) -> TocError {
    TocError::Malformed {
        what,
        reason: reason.into(),
    }
}

fn too_large(what: &'static str) -> TocError {
    TocError::TooLarge {
        what,
        limit: MAX_TOC_DECODED,
    }
}

#[cfg(test)]
mod tests;
