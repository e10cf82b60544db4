//! Each layer's own unpacked cost, read from its blob in the registry with
//! small range requests instead of guessed from one node-wide ratio.
//!
//! Per layer: its first [`SAMPLE_BYTES`] are decoded and their tar headers
//! read (a layer that small is decoded whole: exact); the uncompressed
//! stream size comes from gzip's trailer (the last bytes) or zstd's frame
//! header; a table of contents (eStargz, zstd:chunked) gives every file
//! exactly. The files the sample saw are costed in blocks of the store's
//! filesystem and scaled to the whole stream, since many small files cost
//! far more on disk than their tar stream says. Whatever cannot be had (a
//! registry that ignores ranges, an unknown media type, a blob that is not
//! what its media type says) falls back and says why.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{ByteRange, Client, ResolvedLayer};
use crate::layer_size::{
    self, chunked_toc, chunked_toc_span, estargz_toc, estargz_toc_offset, footprint, gzip_isize,
    gzip_stream_size, zstd_content_size, Compression, Entry, Footprint, Sample, StreamSize,
    ESTARGZ_FOOTER,
};

/// Bytes of each blob decoded for its tar headers and compression ratio.
pub const SAMPLE_BYTES: u64 = 1 << 20;

/// The block sizes a layer's files are also costed in: what ext4 (1, 2 and
/// 4 KiB) and XFS (4 KiB) stores use.
pub const BLOCK_SIZES: [u64; 3] = [1024, 2048, 4096];

/// What one layer adds to the node once unpacked, and how that was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unpacked {
    /// Bytes of the uncompressed tar stream.
    pub stream_bytes: u64,
    /// Bytes its files take on the store's filesystem once unpacked.
    pub disk_bytes: u64,
    /// The same files costed in each of [`BLOCK_SIZES`] (and the store's own
    /// block size), so that a node asked with this figure (a fleet check)
    /// takes it in its own blocks; empty when the figure does not depend on
    /// the block size (a ratio estimate).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub disk_bytes_by_block: BTreeMap<u64, u64>,
    /// Inodes its entries take.
    pub inodes: u64,
    /// Whether the figures are the layer's own, not extrapolated.
    pub exact: bool,
    /// How they were found, in words.
    pub method: String,
    /// Why a better method could not be used, when one could not.
    pub fallback: Option<String>,
}

/// What to estimate with when a layer's blob teaches nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct Fallback {
    /// Unpacked bytes per compressed byte.
    pub ratio: f64,
    /// Where that ratio comes from, in words.
    pub ratio_source: String,
    /// Inodes per unpacked byte, as the node's own layers show.
    pub inodes_per_byte: f64,
}

impl Unpacked {
    /// Its disk bytes on a filesystem of `block_size`-byte blocks: the
    /// figure costed in them, else (a ratio estimate, or an odd block size)
    /// [`Unpacked::disk_bytes`].
    pub fn disk_bytes_in(&self, block_size: u64) -> u64 {
        self.disk_bytes_by_block
            .get(&block_size)
            .copied()
            .unwrap_or(self.disk_bytes)
    }
}

/// `f(b)` for each of [`BLOCK_SIZES`] and `block_size`.
fn by_block(block_size: u64, f: impl Fn(u64) -> u64) -> BTreeMap<u64, u64> {
    BLOCK_SIZES
        .into_iter()
        .chain([block_size])
        .map(|b| (b, f(b)))
        .collect()
}

impl Fallback {
    /// A layer of `compressed` bytes at the fallback ratio, with `why`.
    fn estimate(&self, compressed: u64, why: String) -> Unpacked {
        let bytes = (compressed as f64 * self.ratio).round() as u64;
        Unpacked {
            stream_bytes: bytes,
            disk_bytes: bytes,
            disk_bytes_by_block: BTreeMap::new(),
            inodes: (bytes as f64 * self.inodes_per_byte).round() as u64,
            exact: false,
            method: format!("{:.2} × compressed, {}", self.ratio, self.ratio_source),
            fallback: Some(why),
        }
    }
}

/// What `layer` costs unpacked on a filesystem of `block_size`-byte
/// blocks: measured from its blob, else the `fallback` estimate saying why.
pub fn size_layer(
    client: &mut Client,
    layer: &ResolvedLayer,
    block_size: u64,
    fallback: &Fallback,
) -> Unpacked {
    measure(client, layer, block_size)
        .unwrap_or_else(|why| fallback.estimate(layer.compressed_size, why))
}

/// The layer measured from its blob, or why it could not be.
fn measure(
    client: &mut Client,
    layer: &ResolvedLayer,
    block_size: u64,
) -> Result<Unpacked, String> {
    let compression = Compression::of_media_type(&layer.media_type).ok_or_else(|| {
        format!(
            "media type {:?} is not a layer format sized here",
            layer.media_type
        )
    })?;
    if let Some(entries) = zstd_chunked_toc(client, layer, compression)? {
        return Ok(from_toc(
            &entries,
            block_size,
            "zstd:chunked table of contents",
        ));
    }
    let size = layer.compressed_size;
    let prefix = fetch(client, layer, ByteRange::Prefix(SAMPLE_BYTES.min(size)))?;
    let sample = layer_size::sample(compression, &prefix.bytes)
        .map_err(|e| format!("blob {}: {e}", layer.digest))?;
    if sample.complete {
        return Ok(Unpacked {
            stream_bytes: sample.stream_bytes,
            ..from_toc(&sample.entries, block_size, "whole layer decoded")
        });
    }
    let estimate = sampled_estimate(&sample, size)?;
    let tail = match compression {
        Compression::Gzip if prefix.honoured => gzip_tail(client, layer, estimate)?,
        Compression::Gzip => Tail::Unknown(RANGES_IGNORED.into()),
        Compression::Zstd => zstd_tail(&prefix.bytes, size),
        Compression::Plain => Tail::Stream(
            StreamSize {
                bytes: size,
                exact: true,
            },
            "the blob is the tar stream",
        ),
    };
    Ok(match tail {
        Tail::Toc(entries) => from_toc(&entries, block_size, "eStargz table of contents"),
        Tail::Stream(stream, how) => extrapolate(&sample, stream, how, block_size, None),
        Tail::Unknown(why) => {
            let stream = inexact(estimate);
            extrapolate(&sample, stream, SAMPLED_RATIO, block_size, Some(why))
        }
    })
}

/// How the stream size is said when extrapolated from the sample.
const SAMPLED_RATIO: &str = "size extrapolated from the sampled compression ratio";
/// Why, when the registry answers a range request with the whole blob.
const RANGES_IGNORED: &str =
    "the registry ignored the range request (HTTP 200): the stream size is extrapolated";

/// What a blob's end (or header) tells of the whole stream.
enum Tail {
    /// An eStargz table of contents: every entry.
    Toc(Vec<Entry>),
    /// The stream size, and how it was read.
    Stream(StreamSize, &'static str),
    /// Nothing usable (the registry ignores ranges, or the blob does not
    /// say), and why.
    Unknown(String),
}

/// The zstd:chunked table of contents the manifest points at, if any.
fn zstd_chunked_toc(
    client: &mut Client,
    layer: &ResolvedLayer,
    compression: Compression,
) -> Result<Option<Vec<Entry>>, String> {
    let Some(span) =
        chunked_toc_span(&layer.annotations).filter(|_| compression == Compression::Zstd)
    else {
        return Ok(None);
    };
    let toc = fetch(
        client,
        layer,
        ByteRange::Span {
            start: span.offset,
            len: span.length,
        },
    )?;
    if !toc.honoured {
        return Ok(None);
    }
    chunked_toc(&toc.bytes, &span)
        .map(Some)
        .map_err(|e| format!("blob {}: zstd:chunked table of contents: {e}", layer.digest))
}

/// The gzip blob's last bytes: an eStargz footer (then its table of
/// contents), else the trailer's size modulo 2³², resolved with `estimate`.
fn gzip_tail(client: &mut Client, layer: &ResolvedLayer, estimate: u64) -> Result<Tail, String> {
    let size = layer.compressed_size;
    let tail = fetch(client, layer, ByteRange::Suffix(ESTARGZ_FOOTER.min(size)))?;
    if !tail.honoured {
        return Ok(Tail::Unknown(RANGES_IGNORED.into()));
    }
    if let Some(offset) = estargz_toc_offset(&tail.bytes).filter(|o| *o < size) {
        let len = size.saturating_sub(ESTARGZ_FOOTER).saturating_sub(offset);
        let toc = fetch(client, layer, ByteRange::Span { start: offset, len })?;
        if toc.honoured {
            return estargz_toc(&toc.bytes)
                .map(Tail::Toc)
                .map_err(|e| format!("blob {}: eStargz table of contents: {e}", layer.digest));
        }
    }
    Ok(match gzip_isize(&tail.bytes) {
        Some(isize) => Tail::Stream(
            gzip_stream_size(isize, size, Some(estimate)),
            "size from the gzip trailer",
        ),
        None => Tail::Unknown("the blob is too short for a gzip trailer".into()),
    })
}

/// The zstd frame header's content size, when the encoder wrote one that
/// can be the whole stream's (a layer of several frames has a smaller one).
fn zstd_tail(prefix: &[u8], compressed: u64) -> Tail {
    match zstd_content_size(prefix) {
        Some(bytes) if bytes.saturating_mul(10) >= compressed.saturating_mul(9) => Tail::Stream(
            StreamSize { bytes, exact: true },
            "size from the zstd frame header",
        ),
        _ => Tail::Unknown("the zstd frame header does not carry the stream size".into()),
    }
}

/// The stream size the sample's compression ratio predicts for a blob of
/// `compressed` bytes.
fn sampled_estimate(sample: &Sample, compressed: u64) -> Result<u64, String> {
    if sample.compressed_bytes == 0 {
        return Err("no byte of the blob could be decoded".into());
    }
    let ratio = sample.stream_bytes as f64 / sample.compressed_bytes as f64;
    Ok((compressed as f64 * ratio).round() as u64)
}

fn inexact(bytes: u64) -> StreamSize {
    StreamSize {
        bytes,
        exact: false,
    }
}

/// The cost of a layer whose every entry is known.
fn from_toc(entries: &[Entry], block_size: u64, how: &str) -> Unpacked {
    let f = footprint(entries, block_size);
    Unpacked {
        stream_bytes: f.stream_bytes,
        disk_bytes: f.disk_bytes,
        disk_bytes_by_block: by_block(block_size, |b| footprint(entries, b).disk_bytes),
        inodes: f.inodes,
        exact: true,
        method: format!("{how} ({} entries)", entries.len()),
        fallback: None,
    }
}

/// The sample's files scaled to a stream of `stream` bytes. Exact when the
/// stream size is and the entries seen span all of it (one big file).
fn extrapolate(
    sample: &Sample,
    stream: StreamSize,
    how: &str,
    block_size: u64,
    fallback: Option<String>,
) -> Unpacked {
    // The tar bytes the entries span, their PAX and long-name headers included.
    let covered = footprint(&sample.entries, block_size)
        .stream_bytes
        .max(sample.covered_stream_bytes);
    let spans_all = covered.saturating_add(1024) >= stream.bytes;
    let in_blocks = |b: u64| {
        let seen = Footprint {
            stream_bytes: covered,
            ..footprint(&sample.entries, b)
        };
        if spans_all {
            seen
        } else {
            seen.scaled_to(stream.bytes)
        }
    };
    let f = in_blocks(block_size);
    Unpacked {
        stream_bytes: stream.bytes,
        disk_bytes: f.disk_bytes,
        disk_bytes_by_block: by_block(block_size, |b| in_blocks(b).disk_bytes),
        inodes: f.inodes,
        exact: stream.exact && spans_all,
        method: format!(
            "{how}; files from the tar headers in the first {} ({} entries)",
            crate::model::human_bytes(sample.compressed_bytes),
            sample.entries.len()
        ),
        fallback,
    }
}

/// A range of the layer's blob, the error said as text.
fn fetch(
    client: &mut Client,
    layer: &ResolvedLayer,
    range: ByteRange,
) -> Result<super::Ranged, String> {
    client
        .blob_range(&layer.digest, range)
        .map_err(|e| e.to_string())
}
