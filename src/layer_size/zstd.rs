//! Zstandard: a reader over every frame of a blob (layers written by
//! zstd:chunked are many frames, with skippable frames between), and the
//! content size a frame header may carry.

use std::io::{self, Cursor, Read};

use ruzstd::decoding::{FrameDecoder, StreamingDecoder};

use super::SampleError;

/// A Zstandard frame's magic, little-endian on the wire.
const MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Skippable frames have magics 0x184D2A50..=0x184D2A5F.
const SKIPPABLE: u32 = 0x184d_2a50;

/// Decodes every frame of a blob in turn, skipping skippable frames; an
/// error (such as a frame cut short) ends the reading.
///
/// A frame cut short is decoded up to its last whole block: ruzstd holds
/// back a window's worth of output (up to 8 MiB at `zstd -19`) until a
/// frame ends, so the cut frame is given an end (an empty last block)
/// rather than lose it.
pub(super) struct Frames<'a> {
    blob: &'a [u8],
    /// Where the frame being decoded (or the next one) starts.
    at: usize,
    frame: Option<Frame>,
}

/// The frame being decoded.
struct Frame {
    decoder: StreamingDecoder<Cursor<Vec<u8>>, FrameDecoder>,
    /// Its bytes in the blob (whole blocks only when cut).
    len: usize,
    cut: bool,
}

impl<'a> Frames<'a> {
    /// A reader of `blob`'s frames, once its first bytes are zstd's.
    pub(super) fn new(blob: &'a [u8]) -> Result<Frames<'a>, SampleError> {
        // A skippable frame cut short is still zstd: nothing to decode.
        if let Some(start) = skip_skippable(blob) {
            super::check_magic("zstd", &MAGIC, start)?;
        }
        Ok(Frames {
            blob,
            at: 0,
            frame: None,
        })
    }

    /// The bytes of the blob consumed so far.
    pub(super) fn consumed(&self) -> u64 {
        let within = self.frame.as_ref().map_or(0, |f| {
            usize::try_from(f.decoder.get_ref().position()).map_or(f.len, |p| p.min(f.len))
        });
        (self.at + within) as u64
    }

    /// Starts decoding the frame at `self.at`; false at the blob's end.
    fn next_frame(&mut self) -> io::Result<bool> {
        let rest = skip_skippable(&self.blob[self.at..]).ok_or_else(|| cut("a skippable frame"))?;
        self.at = self.blob.len() - rest.len();
        if rest.is_empty() {
            return Ok(false);
        }
        let header = FrameHeader::parse(rest).ok_or_else(|| match rest.get(..4) {
            Some(magic) if magic != MAGIC => {
                io::Error::new(io::ErrorKind::InvalidData, "not a zstd frame")
            }
            _ => cut("a frame header"),
        })?;
        let (len, cut_short) = header.whole_blocks(rest);
        let mut bytes = rest[..len].to_vec();
        if cut_short {
            bytes.extend(LAST_EMPTY_BLOCK);
            if header.checksum {
                bytes.extend([0; 4]);
            }
        }
        let decoder = StreamingDecoder::new(Cursor::new(bytes)).map_err(io::Error::other)?;
        self.frame = Some(Frame {
            decoder,
            len,
            cut: cut_short,
        });
        Ok(true)
    }
}

impl Read for Frames<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(frame) = &mut self.frame {
                let n = frame.decoder.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                let (len, was_cut) = (frame.len, frame.cut);
                self.frame = None;
                self.at += len;
                if was_cut {
                    return Err(cut("a frame"));
                }
            }
            if !self.next_frame()? {
                return Ok(0);
            }
        }
    }
}

/// A raw block of no bytes, flagged last: ends a frame cut short.
const LAST_EMPTY_BLOCK: [u8; 3] = [0x01, 0x00, 0x00];

fn cut(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::UnexpectedEof, format!("{what} cut short"))
}

/// The parts of a Zstandard frame header that matter here.
struct FrameHeader {
    /// Its length in bytes, magic included.
    len: usize,
    content_size: Option<u64>,
    checksum: bool,
}

impl FrameHeader {
    /// The header `frame` starts with; None if not a frame or cut short.
    fn parse(frame: &[u8]) -> Option<FrameHeader> {
        if frame.get(..4)? != MAGIC {
            return None;
        }
        let descriptor = *frame.get(4)?;
        let single_segment = descriptor & 0x20 != 0;
        let dict_bytes = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
        let at = 5 + usize::from(!single_segment) + dict_bytes;
        let fcs_bytes = [usize::from(single_segment), 2, 4, 8][usize::from(descriptor >> 6)];
        let field = frame.get(at..at + fcs_bytes)?;
        let mut le = [0u8; 8];
        le[..fcs_bytes].copy_from_slice(field);
        let value = u64::from_le_bytes(le);
        Some(FrameHeader {
            len: at + fcs_bytes,
            content_size: match fcs_bytes {
                0 => None,
                2 => Some(value + 256),
                _ => Some(value),
            },
            checksum: descriptor & 0x04 != 0,
        })
    }

    /// The length of `frame` up to its end or, when cut short, to the end
    /// of its last whole block; and whether it was cut. Blocks are walked
    /// by their 3-byte headers, not decoded.
    fn whole_blocks(&self, frame: &[u8]) -> (usize, bool) {
        let mut at = self.len;
        while let Some(h) = frame.get(at..at + 3) {
            let header = u32::from_le_bytes([h[0], h[1], h[2], 0]);
            let last = header & 1 != 0;
            let size = (header >> 3) as usize;
            // Type 1 (RLE) stores one byte; raw and compressed their size.
            let body = if (header >> 1) & 3 == 1 { 1 } else { size };
            let end = at + 3 + body + if last && self.checksum { 4 } else { 0 };
            if end > frame.len() {
                break;
            }
            if last {
                return (end, false);
            }
            at = end;
        }
        (at, true)
    }
}

/// `blob` past any skippable frames it starts with; None when one is cut
/// short.
fn skip_skippable(mut blob: &[u8]) -> Option<&[u8]> {
    while let Some(magic) = le_u32(blob, 0) {
        if magic & 0xffff_fff0 != SKIPPABLE {
            break;
        }
        let len = usize::try_from(le_u32(blob, 4)?).ok()?;
        blob = blob.get(8usize.checked_add(len)?..)?;
    }
    Some(blob)
}

/// The Frame_Content_Size of the first Zstandard frame in `prefix` (after
/// any skippable frames), when its header carries one. `zstd` writes it
/// when it knows the input's size (a file, not a pipe).
pub fn zstd_content_size(prefix: &[u8]) -> Option<u64> {
    FrameHeader::parse(skip_skippable(prefix)?)?.content_size
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn skippable(payload: &[u8]) -> Vec<u8> {
        let mut frame = 0x184d_2a5au32.to_le_bytes().to_vec();
        frame.extend((payload.len() as u32).to_le_bytes());
        frame.extend_from_slice(payload);
        frame
    }

    #[test]
    fn content_size_reads_each_field_width_past_skippable_frames() {
        // Descriptor, window/dict bytes, then the size field.
        let cases: [(&[u8], u64); 4] = [
            (&[0x20, 200], 200),                   // single segment, 1 byte
            (&[0x40, 0x58, 0x10, 0x00], 16 + 256), // 2 bytes + 256, window byte
            (&[0x80, 0x58, 0x78, 0x56, 0x34, 0x12], 0x1234_5678),
            (&[0xe0, 0, 0, 0, 0, 1, 0, 0, 0], 1 << 32), // single segment, 8 bytes
        ];
        for (header, want) in cases {
            let mut blob = skippable(b"meta");
            blob.extend(MAGIC);
            blob.extend_from_slice(header);
            assert_eq!(zstd_content_size(&blob), Some(want), "{header:02x?}");
            assert_eq!(zstd_content_size(&blob[..blob.len() - 1]), None, "cut");
        }
        assert_eq!(
            zstd_content_size(&[0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x58]),
            None
        );
    }

    #[test]
    fn frames_reads_every_frame_and_skips_skippable_ones() {
        let one = ruzstd::encoding::compress_to_vec(
            &b"hello "[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let two = ruzstd::encoding::compress_to_vec(
            &b"world"[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        let mut blob = one.clone();
        blob.extend(skippable(b"toc"));
        blob.extend(&two);
        let mut frames = Frames::new(&blob).expect("zstd");
        let mut out = Vec::new();
        frames.read_to_end(&mut out).expect("decodes");
        assert_eq!(out, b"hello world");
        assert_eq!(frames.consumed(), blob.len() as u64);
    }

    #[test]
    fn fault_a_cut_skippable_frame_decodes_nothing_and_bad_magic_is_refused() {
        let blob = skippable(&[1; 100]);
        let mut frames = Frames::new(&blob[..50]).expect("zstd, cut");
        assert!(frames.read_to_end(&mut Vec::new()).is_err(), "cut short");
        assert!(Frames::new(b"PK\x03\x04 zip").is_err());
        assert!(Frames::new(&[0x28, 0xb5, 0x2f, 0xfe, 0, 0]).is_err());
        assert_eq!(zstd_content_size(&blob[..50]), None);
    }
}
