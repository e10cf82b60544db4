//! A push parser for tar headers: it is fed decoded bytes in chunks of any
//! size, records one [`Entry`] per member header and skips member data by
//! its declared size, so nothing decoded is kept. It understands ustar,
//! GNU long names (`L`/`K`), PAX headers (`x`/`g`, with their `size` and
//! `linkpath` overrides) and base-256 sizes.

use super::{Entry, EntryKind};

/// Tar's block size: headers are one block, data is padded to whole blocks.
pub(super) const BLOCK: u64 = 512;
/// The most of one extension header's data (PAX records, a GNU long link
/// name) read; a longer one is skipped, its overrides unknown.
const MAX_EXTENSION: u64 = 1 << 20;

/// Where the parser is in the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Filling the next 512-byte header block.
    Header,
    /// Skipping this many bytes of member data and padding.
    Skip(u64),
    /// Reading an extension header's data: `left` bytes still to come, then
    /// `pad` bytes of padding.
    Extension {
        kind: Extension,
        left: u64,
        pad: u64,
    },
    /// The end-of-archive marker was read.
    Ended,
    /// A header failed its checksum after the first: the rest is unknown.
    Corrupt,
}

/// A header that describes the member after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extension {
    /// PAX records for the next member (`x`).
    Pax,
    /// PAX records for every later member (`g`).
    GlobalPax,
    /// A GNU long name (`L`): its length does not matter here.
    LongName,
    /// A GNU long link target (`K`): a symlink's size.
    LongLink,
}

/// The first block did not hold a tar header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NotTar(pub(super) String);

/// Overrides the extension headers set for members to come.
#[derive(Debug, Clone, Copy, Default)]
struct Overrides {
    size: Option<u64>,
    link_len: Option<u64>,
}

/// Tar headers read so far from a stream fed in chunks.
#[derive(Debug)]
pub(super) struct TarScanner {
    block: [u8; BLOCK as usize],
    filled: usize,
    state: State,
    extension: Vec<u8>,
    next: Overrides,
    global: Overrides,
    /// The previous block was the first of the two zero blocks that end an
    /// archive.
    zero_block: bool,
    headers: u64,
    entries: Vec<Entry>,
    covered: u64,
}

impl TarScanner {
    pub(super) fn new() -> TarScanner {
        TarScanner {
            block: [0; BLOCK as usize],
            filled: 0,
            state: State::Header,
            extension: Vec::new(),
            next: Overrides::default(),
            global: Overrides::default(),
            zero_block: false,
            headers: 0,
            entries: Vec::new(),
            covered: 0,
        }
    }

    /// True once nothing more fed can change what was learnt.
    pub(super) fn done(&self) -> bool {
        matches!(self.state, State::Ended | State::Corrupt)
    }

    /// True when the end-of-archive marker was read: two zero blocks, or
    /// one zero block where the stream ended cleanly (`stream_ended`).
    pub(super) fn ended(&self, stream_ended: bool) -> bool {
        self.state == State::Ended
            || (stream_ended && self.state == State::Header && self.zero_block && self.filled == 0)
    }

    /// The entries seen and the tar bytes they span.
    pub(super) fn finish(self) -> (Vec<Entry>, u64) {
        (self.entries, self.covered)
    }

    /// Feeds the next decoded bytes. Fails only when the very first header
    /// is not a tar header.
    pub(super) fn feed(&mut self, mut bytes: &[u8]) -> Result<(), NotTar> {
        while !bytes.is_empty() && !self.done() {
            let used = match self.state {
                State::Header => self.fill_header(bytes)?,
                State::Skip(left) => {
                    let n = take(left, bytes);
                    self.state = after_skip(left - n as u64);
                    n
                }
                State::Extension { kind, left, pad } => {
                    let n = take(left, bytes);
                    let room = MAX_EXTENSION.saturating_sub(self.extension.len() as u64);
                    self.extension
                        .extend_from_slice(&bytes[..take(room, &bytes[..n])]);
                    if left == n as u64 {
                        self.apply_extension(kind);
                        self.state = after_skip(pad);
                    } else {
                        self.state = State::Extension {
                            kind,
                            left: left - n as u64,
                            pad,
                        };
                    }
                    n
                }
                State::Ended | State::Corrupt => bytes.len(),
            };
            bytes = &bytes[used..];
        }
        Ok(())
    }

    /// Copies into the header block; parses it once full.
    fn fill_header(&mut self, bytes: &[u8]) -> Result<usize, NotTar> {
        let n = take((BLOCK as usize - self.filled) as u64, bytes);
        self.block[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
        self.filled += n;
        if self.filled == BLOCK as usize {
            self.filled = 0;
            self.header()?;
        }
        Ok(n)
    }

    /// Reads the full header block.
    fn header(&mut self) -> Result<(), NotTar> {
        if self.block.iter().all(|&b| b == 0) {
            if self.zero_block {
                self.state = State::Ended;
            }
            self.zero_block = true;
            return Ok(());
        }
        self.zero_block = false;
        let Some(header) = Header::parse(&self.block) else {
            if self.headers == 0 {
                return Err(NotTar(describe_garbage(&self.block)));
            }
            self.state = State::Corrupt;
            return Ok(());
        };
        self.headers += 1;
        let extension = match header.typeflag {
            b'x' => Some(Extension::Pax),
            b'g' => Some(Extension::GlobalPax),
            b'L' => Some(Extension::LongName),
            b'K' => Some(Extension::LongLink),
            _ => None,
        };
        match extension {
            Some(kind) => {
                let pad = padded(header.size) - header.size;
                self.extension.clear();
                self.state = State::Extension {
                    kind,
                    left: header.size,
                    pad,
                };
                self.count(header.size);
            }
            None => {
                let overrides = self.take_overrides();
                let data = if has_data(header.typeflag) {
                    overrides.size.unwrap_or(header.size)
                } else {
                    0
                };
                self.entries.push(entry(&header, data, overrides));
                self.state = after_skip(padded(data));
                self.count(data);
            }
        }
        Ok(())
    }

    /// Adds a header and its padded data to the bytes covered.
    fn count(&mut self, data: u64) {
        self.covered = self
            .covered
            .saturating_add(BLOCK)
            .saturating_add(padded(data));
    }

    /// The overrides for the member whose header was just read, merged
    /// over the global ones; the per-member ones are used up.
    fn take_overrides(&mut self) -> Overrides {
        let next = std::mem::take(&mut self.next);
        Overrides {
            size: next.size.or(self.global.size),
            link_len: next.link_len.or(self.global.link_len),
        }
    }

    /// Records what an extension header's data says about members to come.
    fn apply_extension(&mut self, kind: Extension) {
        let complete = (self.extension.len() as u64) < MAX_EXTENSION;
        match kind {
            Extension::Pax if complete => pax_records(&self.extension, &mut self.next),
            Extension::GlobalPax if complete => pax_records(&self.extension, &mut self.global),
            Extension::LongLink if complete => {
                self.next.link_len = Some(c_str(&self.extension).len() as u64);
            }
            _ => {}
        }
        self.extension.clear();
    }
}

/// The fields of a header block this module needs.
pub(super) struct Header {
    /// The member's type (`'0'`, `'5'`, `'x'`, …).
    pub(super) typeflag: u8,
    /// The size field: the bytes of data that follow, before padding.
    pub(super) size: u64,
    /// The length of the link-name field's text.
    link_len: u64,
}

impl Header {
    /// None when the block's checksum does not match or its size field
    /// does not parse: not a header.
    pub(super) fn parse(block: &[u8; BLOCK as usize]) -> Option<Header> {
        let stored = octal(&block[148..156])?;
        let unsigned: u64 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        // Some old tars summed signed bytes.
        let signed: i64 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    i64::from(b as i8)
                }
            })
            .sum();
        if stored != unsigned && i64::try_from(stored).ok() != Some(signed) {
            return None;
        }
        Some(Header {
            typeflag: block[156],
            size: number(&block[124..136])?,
            link_len: c_str(&block[157..257]).len() as u64,
        })
    }
}

/// The entry a member header describes; `data` is its size after overrides.
fn entry(header: &Header, data: u64, overrides: Overrides) -> Entry {
    let kind = match header.typeflag {
        b'0' | 0 | b'7' | b'S' => EntryKind::File,
        b'1' => EntryKind::Hardlink,
        b'2' => EntryKind::Symlink,
        b'5' | b'D' => EntryKind::Dir,
        _ => EntryKind::Other,
    };
    let size = match kind {
        EntryKind::File => data,
        EntryKind::Symlink => overrides.link_len.unwrap_or(header.link_len),
        _ => 0,
    };
    Entry { kind, size }
}

/// Whether members of this type carry data in the stream. Links, devices,
/// fifos and directories do not, whatever their size field says (as GNU
/// tar and Go's archive/tar read them); GNU dump directories (`D`) do.
fn has_data(typeflag: u8) -> bool {
    !matches!(typeflag, b'1' | b'2' | b'3' | b'4' | b'5' | b'6')
}

/// Parses PAX records (`"%d %s=%s\n"`), keeping the ones that matter here;
/// stops at the first malformed record.
fn pax_records(mut data: &[u8], into: &mut Overrides) {
    while let Some(space) = data.iter().position(|&b| b == b' ') {
        let Some(len) = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse::<usize>().ok())
        else {
            return;
        };
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return;
        }
        let record = &data[space + 1..len - 1];
        if let Some(eq) = record.iter().position(|&b| b == b'=') {
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            match key {
                b"size" => {
                    into.size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
                }
                b"linkpath" => into.link_len = Some(value.len() as u64),
                _ => {}
            }
        }
        data = &data[len..];
    }
}

/// A numeric field: octal text, or base-256 when its top bit is set (GNU,
/// for sizes of 8 GiB and more). None for negative or over-wide values.
fn number(field: &[u8]) -> Option<u64> {
    match field.first() {
        Some(&first) if first & 0x80 != 0 => {
            if first & 0x40 != 0 {
                return None;
            }
            let mut value: u64 = u64::from(first & 0x3f);
            for &b in &field[1..] {
                value = value.checked_mul(256)?.checked_add(u64::from(b))?;
            }
            Some(value)
        }
        _ => octal(field),
    }
}

/// Octal text padded with spaces or NULs; an all-blank field is 0.
fn octal(field: &[u8]) -> Option<u64> {
    let text = c_str(field);
    let digits = text.trim_ascii();
    digits.iter().try_fold(0u64, |acc, &b| match b {
        b'0'..=b'7' => acc.checked_mul(8)?.checked_add(u64::from(b - b'0')),
        _ => None,
    })
}

/// The bytes before the first NUL.
pub(super) fn c_str(bytes: &[u8]) -> &[u8] {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    &bytes[..end]
}

/// `n` rounded up to whole blocks.
pub(super) fn padded(n: u64) -> u64 {
    n.div_ceil(BLOCK).saturating_mul(BLOCK)
}

/// How many of `bytes` a step wanting `want` more bytes consumes.
fn take(want: u64, bytes: &[u8]) -> usize {
    usize::try_from(want).map_or(bytes.len(), |w| w.min(bytes.len()))
}

/// The state after skipping `left` more bytes.
fn after_skip(left: u64) -> State {
    if left == 0 {
        State::Header
    } else {
        State::Skip(left)
    }
}

/// Says what the first block holds instead of a tar header.
fn describe_garbage(block: &[u8]) -> String {
    let head: Vec<String> = block[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "the first 512 bytes are not a tar header (checksum or size field invalid; starts {})",
        head.join(" ")
    )
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A header block named `name`, with a valid checksum.
    pub(in crate::layer_size) fn named(
        name: &str,
        typeflag: u8,
        size_field: &[u8; 12],
        link: &str,
    ) -> Vec<u8> {
        let mut block = vec![0u8; 512];
        block[..name.len()].copy_from_slice(name.as_bytes());
        block[100..108].copy_from_slice(b"0000644\0");
        block[124..136].copy_from_slice(size_field);
        block[156] = typeflag;
        block[157..157 + link.len()].copy_from_slice(link.as_bytes());
        block[257..263].copy_from_slice(b"ustar\0");
        block[263..265].copy_from_slice(b"00");
        block[148..156].copy_from_slice(b"        ");
        let sum: u32 = block.iter().map(|&b| u32::from(b)).sum();
        block[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        block
    }

    fn header(typeflag: u8, size_field: &[u8; 12], link: &str) -> Vec<u8> {
        named("file", typeflag, size_field, link)
    }

    /// A size field in octal.
    pub(in crate::layer_size) fn octal_size(n: u64) -> [u8; 12] {
        let mut field = [0u8; 12];
        field[..11].copy_from_slice(format!("{n:011o}").as_bytes());
        field
    }

    fn scan(bytes: &[u8], chunk: usize) -> TarScanner {
        let mut scanner = TarScanner::new();
        for piece in bytes.chunks(chunk) {
            scanner.feed(piece).expect("a tar stream");
        }
        scanner
    }

    #[test]
    fn pax_size_overrides_the_header_and_sets_the_data_skipped() {
        let records = b"12 size=700\n";
        let mut tar = header(b'x', &octal_size(records.len() as u64), "");
        tar.extend_from_slice(records);
        tar.resize(1024, 0);
        tar.extend(header(b'0', &octal_size(0), ""));
        tar.extend(vec![7u8; 1024]);
        tar.extend(header(b'2', &octal_size(0), "target"));
        tar.extend(vec![0u8; 1024]);
        for chunk in [1, 7, 512, 4096] {
            let scanner = scan(&tar, chunk);
            assert!(scanner.ended(false), "chunk {chunk}");
            let (entries, covered) = scanner.finish();
            assert_eq!(
                entries,
                vec![
                    Entry {
                        kind: EntryKind::File,
                        size: 700
                    },
                    Entry {
                        kind: EntryKind::Symlink,
                        size: 6
                    },
                ],
                "chunk {chunk}"
            );
            assert_eq!(covered, 512 * 2 + 512 + 1024 + 512, "chunk {chunk}");
        }
    }

    #[test]
    fn gnu_long_link_sets_a_symlinks_size_and_long_names_are_skipped() {
        let target = "t".repeat(300);
        let mut tar = header(b'K', &octal_size(301), "");
        let mut data = target.clone().into_bytes();
        data.push(0);
        data.resize(512, 0);
        tar.extend(data);
        tar.extend(header(b'L', &octal_size(600), ""));
        tar.extend(vec![b'n'; 1024]);
        tar.extend(header(b'2', &octal_size(0), &target[..100]));
        let (entries, covered) = scan(&tar, 100).finish();
        assert_eq!(
            entries,
            vec![Entry {
                kind: EntryKind::Symlink,
                size: 300
            }]
        );
        assert_eq!(covered, 512 * 2 + 512 + 1024 + 512);
    }

    #[test]
    fn base256_sizes_read_past_8_gib() {
        let size: u64 = 20 << 30;
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[4..].copy_from_slice(&size.to_be_bytes());
        let tar = header(b'0', &field, "");
        let scanner = scan(&tar, 512);
        assert!(!scanner.ended(true), "a cut member is not the end");
        let (entries, covered) = scanner.finish();
        assert_eq!(
            entries,
            vec![Entry {
                kind: EntryKind::File,
                size
            }]
        );
        assert_eq!(covered, 512 + size);
    }

    #[test]
    fn a_global_pax_size_applies_until_a_member_overrides_it() {
        let global = b"12 size=100\n";
        let mut tar = header(b'g', &octal_size(global.len() as u64), "");
        tar.extend_from_slice(global);
        tar.resize(1024, 0);
        tar.extend(header(b'0', &octal_size(5), ""));
        tar.extend(vec![1u8; 512]);
        let (entries, _) = scan(&tar, 512).finish();
        assert_eq!(
            entries,
            vec![Entry {
                kind: EntryKind::File,
                size: 100
            }]
        );
    }

    #[test]
    fn fault_garbage_first_block_is_not_tar() {
        let garbage: Vec<u8> = (0..2048u32).map(|i| (i * 31 % 251) as u8).collect();
        let err = TarScanner::new().feed(&garbage).expect_err("garbage");
        assert!(err.0.contains("not a tar header"), "{}", err.0);
    }

    #[test]
    fn fault_a_header_claiming_2_pow_63_bytes_is_counted_not_trusted() {
        let mut field = [0u8; 12];
        field[0] = 0x80;
        field[4..].copy_from_slice(&(1u64 << 63).to_be_bytes());
        let mut tar = header(b'0', &field, "");
        tar.extend(vec![0u8; 1 << 16]);
        let scanner = scan(&tar, 4096);
        assert!(!scanner.ended(true));
        let (entries, covered) = scanner.finish();
        assert_eq!(
            entries,
            vec![Entry {
                kind: EntryKind::File,
                size: 1 << 63
            }]
        );
        assert_eq!(covered, 512 + (1u64 << 63));
    }

    #[test]
    fn fault_oversized_and_negative_base256_sizes_are_not_headers() {
        let mut wide = [0xffu8; 12];
        wide[0] = 0x80;
        let mut negative = [0u8; 12];
        negative[0] = 0xff;
        for field in [wide, negative] {
            let tar = header(b'0', &field, "");
            assert!(TarScanner::new().feed(&tar).is_err());
        }
    }

    #[test]
    fn fault_malformed_pax_records_are_ignored() {
        for records in [
            &b"99999999999999999999 size=1\n"[..],
            b"5 size=1\n",
            b"x",
            b"8 size=\xff\n",
        ] {
            let mut tar = header(b'x', &octal_size(records.len() as u64), "");
            tar.extend_from_slice(records);
            tar.resize(1024, 0);
            tar.extend(header(b'0', &octal_size(3), ""));
            let (entries, _) = scan(&tar, 512).finish();
            assert_eq!(
                entries,
                vec![Entry {
                    kind: EntryKind::File,
                    size: 3
                }],
                "{records:?}"
            );
        }
    }
}
