//! What an image layer costs once unpacked on a node, learnt from bytes of
//! its blob: the uncompressed tar stream's size (gzip's ISIZE trailer,
//! zstd's frame header), the files it holds (a table of contents where the
//! layer has one: eStargz, zstd:chunked; else the tar headers of a decoded
//! prefix), and from those the disk blocks and inodes they take.
//!
//! Pure: no network and no file I/O. The caller fetches the bytes (ranged
//! reads of a prefix, the tail, a TOC) and hands them in. Every input is
//! bounded: decoding stops at [`MAX_DECODED`], tables of contents at
//! their own limits.
//!
//! The disk model ([`footprint`]) is ext4's, as a snapshotter writes a
//! layer: see its doc for what it leaves out.

mod footprint;
mod gzip;
mod tar_sample;
mod toc;
mod zstd;

use std::io::{ErrorKind, Read};

use serde::Serialize;

pub use footprint::{footprint, Footprint};
pub use gzip::{gzip_isize, gzip_stream_size};
pub use toc::{
    chunked_toc, chunked_toc_span, estargz_toc, estargz_toc_offset, TocError, TocSpan,
    ESTARGZ_FOOTER,
};
pub use zstd::zstd_content_size;

use tar_sample::TarScanner;

/// The most uncompressed bytes [`sample`] decodes: a 1 MiB prefix of a
/// zero-filled layer inflates to ~1 GB.
pub const MAX_DECODED: u64 = 64 << 20;
/// Decoded bytes are streamed through the tar reader in pieces this big.
const CHUNK: usize = 64 << 10;

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip (one member or several).
    Gzip,
    /// Zstandard (one frame or several).
    Zstd,
    /// An uncompressed tar.
    Plain,
}

impl Compression {
    /// The compression of a layer of this OCI or Docker media type
    /// (distributable or not); None for anything that is not a layer tar.
    pub fn of_media_type(media_type: &str) -> Option<Compression> {
        match media_type {
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => {
                Some(Compression::Gzip)
            }
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Some(Compression::Zstd)
            }
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar"
            | "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::Plain),
            _ => None,
        }
    }
}

/// What a tar member is, as far as disk use goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file (contiguous and GNU sparse ones too).
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A hard link to an earlier member: no inode, no blocks of its own.
    Hardlink,
    /// A device, a fifo, or a type this reader does not know.
    Other,
}

/// One member of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// What it is.
    pub kind: EntryKind,
    /// A file's bytes; a symlink's target length; 0 for the rest.
    pub size: u64,
}

/// What decoding a blob's first bytes taught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Blob bytes consumed.
    pub compressed_bytes: u64,
    /// Uncompressed bytes decoded (at most [`MAX_DECODED`]).
    pub stream_bytes: u64,
    /// Every tar member header seen, in order; one whose data was cut off
    /// counts with its declared size.
    pub entries: Vec<Entry>,
    /// The tar bytes those entries span: headers (PAX and GNU long-name
    /// headers too) and declared data padded to 512. It can exceed
    /// `stream_bytes` when the last member was cut off.
    pub covered_stream_bytes: u64,
    /// The whole tar stream was decoded (its end-of-archive marker was
    /// within the bytes given): the figures are the layer's own, exact.
    pub complete: bool,
}

/// The input is not the format it was said to be.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// The blob does not start with the compression's magic bytes.
    #[error("not a {format} blob: it starts {found}, {format} starts {expected}")]
    BadMagic {
        /// `gzip` or `zstd`.
        format: &'static str,
        /// The first bytes, in hex.
        found: String,
        /// The magic, in hex.
        expected: String,
    },
    /// The (decoded) stream does not start with a tar header.
    #[error("not a tar stream: {0}")]
    NotTar(String),
}

/// The uncompressed size of a layer's tar stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StreamSize {
    /// Bytes.
    pub bytes: u64,
    /// Read from the blob itself, not estimated.
    pub exact: bool,
}

/// Decodes `prefix`, the first bytes of a layer blob compressed as
/// `compression` (usually cut mid-stream: what was seen is kept), and reads
/// the tar headers in it, up to [`MAX_DECODED`] decoded bytes. Nothing
/// decoded is buffered beyond one piece. Fails only when the input is not
/// the format at all.
pub fn sample(compression: Compression, prefix: &[u8]) -> Result<Sample, SampleError> {
    match compression {
        Compression::Gzip => {
            let mut decoder = gzip::decoder(prefix)?;
            let read = scan(&mut decoder, true)?;
            Ok(read.into_sample((prefix.len() - decoder.get_ref().len()) as u64))
        }
        Compression::Zstd => {
            let mut frames = zstd::Frames::new(prefix)?;
            let read = scan(&mut frames, true)?;
            Ok(read.into_sample(frames.consumed()))
        }
        Compression::Plain => {
            let mut plain = prefix;
            let read = scan(&mut plain, false)?;
            let consumed = read.stream_bytes;
            Ok(read.into_sample(consumed))
        }
    }
}

/// What [`scan`] read.
struct Scan {
    stream_bytes: u64,
    scanner: TarScanner,
    complete: bool,
}

impl Scan {
    fn into_sample(self, compressed_bytes: u64) -> Sample {
        let (entries, covered_stream_bytes) = self.scanner.finish();
        Sample {
            compressed_bytes,
            stream_bytes: self.stream_bytes,
            entries,
            covered_stream_bytes,
            complete: self.complete,
        }
    }
}

/// Streams `decoded` through a tar reader until it ends, fails (a cut
/// prefix, corrupt data) or reaches [`MAX_DECODED`]. Past the tar's end
/// the rest (tar's record padding) is counted, not parsed. `ends_cleanly`:
/// the stream's own end (not just the prefix's) can be told apart.
fn scan(decoded: &mut impl Read, ends_cleanly: bool) -> Result<Scan, SampleError> {
    let mut buf = vec![0u8; CHUNK];
    let mut scanner = TarScanner::new();
    let mut stream_bytes = 0u64;
    let mut stream_ended = false;
    while stream_bytes < MAX_DECODED {
        let want = CHUNK.min((MAX_DECODED - stream_bytes) as usize);
        match decoded.read(&mut buf[..want]) {
            Ok(0) => {
                stream_ended = ends_cleanly;
                break;
            }
            Ok(n) => {
                stream_bytes += n as u64;
                scanner
                    .feed(&buf[..n])
                    .map_err(|e| SampleError::NotTar(e.0))?;
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let complete = scanner.ended(stream_ended);
    Ok(Scan {
        stream_bytes,
        scanner,
        complete,
    })
}

/// Fails unless `prefix` starts with `magic` (or, shorter, with part of
/// it: too little to judge).
fn check_magic(format: &'static str, magic: &[u8], prefix: &[u8]) -> Result<(), SampleError> {
    let n = magic.len().min(prefix.len());
    if prefix[..n] == magic[..n] {
        return Ok(());
    }
    let hex = |b: &[u8]| {
        b.iter()
            .map(|x| format!("{x:02x}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    Err(SampleError::BadMagic {
        format,
        found: hex(&prefix[..n]),
        expected: hex(magic),
    })
}

#[cfg(test)]
mod tests;
