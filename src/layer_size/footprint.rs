//! From a layer's entries to what they take on disk once unpacked.
//!
//! The model is ext4's, as a snapshotter (overlayfs' upper directories)
//! writes a layer: a regular file takes its size rounded up to whole
//! blocks, none when empty (no inline data); a directory one block; a
//! symlink one block when its target is 60 bytes or more, none when
//! shorter (a fast symlink lives in the inode); hard links, devices and
//! fifos no blocks. Every entry but a hard link takes an inode.
//!
//! Left out: a directory with very many entries grows past one block;
//! huge or fragmented files need extent-tree blocks; xattrs that do not fit
//! in the inode take a block; sparse files take less than their size; xfs
//! and btrfs allocate inodes (and small files' data) differently.

use serde::Serialize;

use super::tar_sample::{padded, BLOCK};
use super::{Entry, EntryKind};

/// A fast symlink's target is stored in the inode's 60 bytes of block map.
const FAST_SYMLINK_MAX: u64 = 59;

/// What a set of entries costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Footprint {
    /// The tar bytes the entries take as plain ustar (a header block each,
    /// file data padded to 512): PAX and long-name headers not counted.
    pub stream_bytes: u64,
    /// Bytes of filesystem blocks the entries take.
    pub disk_bytes: u64,
    /// Inodes the entries take.
    pub inodes: u64,
}

/// What `entries` take on a filesystem of `block_size`-byte blocks (0 is
/// taken as 1), by the model in this module's doc.
pub fn footprint(entries: &[Entry], block_size: u64) -> Footprint {
    let block = block_size.max(1);
    entries.iter().fold(Footprint::default(), |total, entry| {
        let data = match entry.kind {
            EntryKind::File => entry.size,
            _ => 0,
        };
        Footprint {
            stream_bytes: total
                .stream_bytes
                .saturating_add(BLOCK)
                .saturating_add(padded(data)),
            disk_bytes: total.disk_bytes.saturating_add(blocks(entry, block)),
            inodes: total.inodes + u64::from(entry.kind != EntryKind::Hardlink),
        }
    })
}

/// The bytes of blocks one entry takes.
fn blocks(entry: &Entry, block: u64) -> u64 {
    match entry.kind {
        EntryKind::File => entry.size.div_ceil(block).saturating_mul(block),
        EntryKind::Dir => block,
        EntryKind::Symlink if entry.size > FAST_SYMLINK_MAX => block,
        _ => 0,
    }
}

impl Footprint {
    /// This footprint (a sample's) extrapolated to a layer of
    /// `stream_bytes`: disk bytes and inodes in proportion to the stream
    /// bytes, saturating. A footprint of no stream bytes scales to itself.
    pub fn scaled_to(&self, stream_bytes: u64) -> Footprint {
        if self.stream_bytes == 0 {
            return *self;
        }
        let scale = |n: u64| {
            let scaled = u128::from(n) * u128::from(stream_bytes) / u128::from(self.stream_bytes);
            u64::try_from(scaled).unwrap_or(u64::MAX)
        };
        Footprint {
            stream_bytes,
            disk_bytes: scale(self.disk_bytes),
            inodes: scale(self.inodes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: EntryKind, size: u64) -> Entry {
        Entry { kind, size }
    }

    #[test]
    fn each_kind_takes_what_ext4_gives_it() {
        let entries = [
            entry(EntryKind::File, 0),
            entry(EntryKind::File, 1),
            entry(EntryKind::File, 4096),
            entry(EntryKind::File, 4097),
            entry(EntryKind::Dir, 0),
            entry(EntryKind::Symlink, 59),
            entry(EntryKind::Symlink, 60),
            entry(EntryKind::Hardlink, 0),
            entry(EntryKind::Other, 0),
        ];
        let print = footprint(&entries, 4096);
        // Files 0+1+1+2 blocks, the directory 1, the long symlink 1.
        assert_eq!(print.disk_bytes, 4096 * 6);
        assert_eq!(print.inodes, 8);
        assert_eq!(print.stream_bytes, 9 * 512 + 512 + 4096 + 4608);
    }

    #[test]
    fn ten_thousand_small_files_cost_far_more_than_their_stream() {
        // The issue's −83% row: files of 300 B – 2 KB on 4 KiB blocks.
        let entries: Vec<Entry> = (0..10_000u64)
            .map(|i| entry(EntryKind::File, 300 + i * 1700 / 10_000))
            .collect();
        let print = footprint(&entries, 4096);
        assert_eq!(print.disk_bytes, 10_000 * 4096);
        assert!(print.disk_bytes > 2 * print.stream_bytes, "{print:?}");
    }

    #[test]
    fn scaling_keeps_the_proportions_and_saturates() {
        let sample = Footprint {
            stream_bytes: 1000,
            disk_bytes: 3000,
            inodes: 10,
        };
        assert_eq!(
            sample.scaled_to(10_000),
            Footprint {
                stream_bytes: 10_000,
                disk_bytes: 30_000,
                inodes: 100
            }
        );
        assert_eq!(sample.scaled_to(u64::MAX).disk_bytes, u64::MAX);
        let empty = Footprint {
            stream_bytes: 0,
            disk_bytes: 4096,
            inodes: 1,
        };
        assert_eq!(empty.scaled_to(1 << 30), empty);
    }

    #[test]
    fn fault_huge_sizes_saturate_instead_of_overflowing() {
        let entries = [
            entry(EntryKind::File, u64::MAX),
            entry(EntryKind::File, u64::MAX),
        ];
        let print = footprint(&entries, 0);
        assert_eq!(print.disk_bytes, u64::MAX);
        assert_eq!(print.stream_bytes, u64::MAX);
    }
}
