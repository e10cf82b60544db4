//! TOCs built per the formats' sources: an eStargz blob (per-file gzip
//! members, the TOC member, the 51-byte footer) and a zstd:chunked blob
//! (zstd frames, the TOC in a skippable frame, its position annotation).

use std::io::{Read, Write};

use flate2::write::GzEncoder;

use super::super::tar_sample::tests::{named, octal_size};
use super::*;

/// A TOC listing every type, a file cut in chunks among them.
const TOC_JSON: &str = r#"{"version":1,"entries":[
  {"name":"etc/","type":"dir","mode":493},
  {"name":"etc/big","type":"reg","size":10000,"offset":0,"chunkSize":4000,"digest":"sha256:00"},
  {"name":"etc/big","type":"chunk","offset":100,"chunkOffset":4000,"chunkSize":4000},
  {"name":"etc/big","type":"chunk","offset":200,"chunkOffset":8000},
  {"name":"etc/empty","type":"reg"},
  {"name":"etc/link","type":"symlink","linkName":"big"},
  {"name":"etc/hard","type":"hardlink","linkName":"etc/big"},
  {"name":"dev/null","type":"char","devMajor":1,"devMinor":3},
  {"name":"dev/sda","type":"block"},
  {"name":"run/fifo","type":"fifo","xattrs":{"user.a":"Yg=="}}
]}"#;

fn toc_entries() -> Vec<Entry> {
    let e = |kind, size| Entry { kind, size };
    vec![
        e(EntryKind::Dir, 0),
        e(EntryKind::File, 10_000),
        e(EntryKind::File, 0),
        e(EntryKind::Symlink, 3),
        e(EntryKind::Hardlink, 0),
        e(EntryKind::Other, 0),
        e(EntryKind::Other, 0),
        e(EntryKind::Other, 0),
    ]
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(data).expect("in memory");
    gz.finish().expect("in memory")
}

/// A tar of one member `name` holding `data`.
fn tar_of(name: &str, data: &[u8]) -> Vec<u8> {
    let mut tar = named(name, b'0', &octal_size(data.len() as u64), "");
    tar.extend_from_slice(data);
    tar.resize(tar.len().next_multiple_of(512) + 1024, 0);
    tar
}

/// The eStargz footer: an empty gzip member whose extra field is the
/// subfield `SG` with `"%016xSTARGZ"`.
fn footer(offset: u64) -> Vec<u8> {
    let mut f = vec![
        0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 26, 0, b'S', b'G', 22, 0,
    ];
    f.extend(format!("{offset:016x}STARGZ").bytes());
    f.extend([0x01, 0x00, 0x00, 0xff, 0xff]); // an empty stored block
    f.extend([0; 8]); // CRC-32 and ISIZE of nothing
    f
}

fn estargz_blob(toc_json: &[u8]) -> (Vec<u8>, usize) {
    let mut blob = gzip(&tar_of("etc/big", &[7; 100]));
    let offset = blob.len();
    blob.extend(gzip(&tar_of("stargz.index.json", toc_json)));
    blob.extend(footer(offset as u64));
    (blob, offset)
}

#[test]
fn the_footer_is_a_valid_51_byte_gzip_member() {
    let f = footer(0x1234);
    assert_eq!(f.len() as u64, ESTARGZ_FOOTER);
    let mut decoder = flate2::read::GzDecoder::new(&f[..]);
    let mut out = Vec::new();
    decoder.read_to_end(&mut out).expect("a gzip member");
    assert!(out.is_empty());
    let extra = decoder
        .header()
        .and_then(|h| h.extra())
        .expect("extra field");
    assert_eq!(&extra[4..], b"0000000000001234STARGZ");
}

#[test]
fn estargz_toc_lists_every_entry_once() {
    let (blob, offset) = estargz_blob(TOC_JSON.as_bytes());
    let tail = &blob[blob.len() - ESTARGZ_FOOTER as usize..];
    assert_eq!(estargz_toc_offset(tail), Some(offset as u64));
    let toc = &blob[offset..blob.len() - ESTARGZ_FOOTER as usize];
    assert_eq!(estargz_toc(toc), Ok(toc_entries()));
}

#[test]
fn a_legacy_stargz_footer_is_read_and_other_tails_are_not() {
    let mut legacy = vec![0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0, 0xff, 22, 0];
    legacy.extend(b"00000000000000a0STARGZ");
    legacy.extend([0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0]);
    let mut tail = vec![0xaa; 4];
    tail.extend(&legacy);
    assert_eq!(estargz_toc_offset(&tail), Some(0xa0));
    let plain_gzip = gzip(&[0; 1000]);
    assert_eq!(estargz_toc_offset(&plain_gzip), None);
    assert_eq!(estargz_toc_offset(&[]), None);
}

fn skippable(payload: &[u8]) -> Vec<u8> {
    let mut frame = 0x184d_2a50u32.to_le_bytes().to_vec();
    frame.extend((payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// A zstd:chunked blob and its layer annotations.
fn chunked_blob(toc_json: &[u8]) -> (Vec<u8>, BTreeMap<String, String>) {
    let level = ruzstd::encoding::CompressionLevel::Fastest;
    let mut blob = ruzstd::encoding::compress_to_vec(&tar_of("etc/big", &[7; 100])[..], level);
    let manifest = ruzstd::encoding::compress_to_vec(toc_json, level);
    let offset = blob.len() + 8;
    blob.extend(skippable(&manifest));
    blob.extend(skippable(&[0; 64])); // the footer; not read here
    let position = format!("{offset}:{}:{}:1", manifest.len(), toc_json.len());
    let key = "io.github.containers.zstd-chunked.manifest-position".to_string();
    (blob, BTreeMap::from([(key, position)]))
}

#[test]
fn chunked_toc_lists_every_entry_once() {
    let (blob, annotations) = chunked_blob(TOC_JSON.as_bytes());
    let span = chunked_toc_span(&annotations).expect("a zstd:chunked layer");
    assert_eq!(span.uncompressed, TOC_JSON.len() as u64);
    let bytes = &blob[span.offset as usize..];
    assert_eq!(chunked_toc(bytes, &span), Ok(toc_entries()));
}

#[test]
fn chunked_span_needs_four_numbers_and_the_json_type() {
    let span = |value: &str| {
        let key = "io.containers.zstd-chunked.manifest-position".to_string();
        chunked_toc_span(&BTreeMap::from([(key, value.to_string())]))
    };
    let want = TocSpan {
        offset: 10,
        length: 20,
        uncompressed: 30,
    };
    assert_eq!(span("10:20:30:1"), Some(want));
    assert_eq!(span("10:20:30:2"), None);
    assert_eq!(span("10:20:30"), None);
    assert_eq!(span("10:20:x:1"), None);
    assert_eq!(chunked_toc_span(&BTreeMap::new()), None);
}

#[test]
fn fault_garbage_tocs_are_errors() {
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 17 % 253) as u8).collect();
    assert!(matches!(
        estargz_toc(&garbage),
        Err(TocError::Malformed { .. })
    ));
    let not_toc = gzip(&tar_of("etc/passwd", b"root"));
    let err = estargz_toc(&not_toc).expect_err("not the TOC");
    assert!(err.to_string().contains("etc/passwd"), "{err}");
    let (blob, offset) = estargz_blob(br#"{"version":1,"entries":[{"size":1}]}"#);
    let untyped = estargz_toc(&blob[offset..blob.len() - ESTARGZ_FOOTER as usize]);
    assert!(untyped.unwrap_err().to_string().contains("type"));

    let (blob, annotations) = chunked_blob(TOC_JSON.as_bytes());
    let span = chunked_toc_span(&annotations).expect("span");
    let short = &blob[span.offset as usize..span.offset as usize + 3];
    assert!(chunked_toc(short, &span)
        .unwrap_err()
        .to_string()
        .contains("bytes given"));
    let lying = TocSpan {
        uncompressed: span.uncompressed + 1,
        ..span
    };
    let err = chunked_toc(&blob[span.offset as usize..], &lying).expect_err("size mismatch");
    assert!(err.to_string().contains("annotation says"), "{err}");
    assert!(chunked_toc(
        &garbage,
        &TocSpan {
            offset: 0,
            length: 100,
            uncompressed: 100
        }
    )
    .is_err());
}

#[test]
fn fault_toc_bombs_stop_at_the_limit() {
    // 80 MiB of zeros gzip to ~80 KiB.
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..80 {
        gz.write_all(&zeros).expect("in memory");
    }
    let bomb = gz.finish().expect("in memory");
    let err = estargz_toc(&bomb).expect_err("too large");
    assert_eq!(
        err,
        TocError::TooLarge {
            what: ESTARGZ,
            limit: MAX_TOC_DECODED
        }
    );
    assert!(err.to_string().contains("limit"), "{err}");

    let huge = TocSpan {
        offset: 0,
        length: 10,
        uncompressed: 1 << 40,
    };
    assert!(matches!(
        chunked_toc(&[0; 10], &huge),
        Err(TocError::TooLarge { .. })
    ));
}

#[test]
fn fault_too_many_entries_is_refused_and_said() {
    let json = format!(
        "{{\"entries\":[{}]}}",
        [r#"{"type":"reg","size":1}"#; 11].join(",")
    );
    let err = entries(json.as_bytes(), CHUNKED, 10).expect_err("over the cap");
    assert!(err.to_string().contains("more than 10 entries"), "{err}");
    assert_eq!(
        entries(json.as_bytes(), CHUNKED, 11).map(|e| e.len()),
        Ok(11)
    );
    // Chunks do not count toward the cap.
    let chunks = format!(
        "{{\"entries\":[{}, {}]}}",
        r#"{"type":"reg","size":9}"#,
        [r#"{"type":"chunk"}"#; 20].join(",")
    );
    assert_eq!(
        entries(chunks.as_bytes(), CHUNKED, 1).map(|e| e.len()),
        Ok(1)
    );
}
