//! `sample` over layers made by the real tools (`tar`, `gzip`, `zstd`, all
//! in Debian's base but `zstd`, for which ruzstd's encoder stands in), and
//! the disk model against `du` on this machine's filesystem.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use super::*;

/// Runs a tool, feeding it `input`; its stdout. Panics naming the tool
/// when it is missing or fails.
fn run(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program} {args:?}: {e} (is it installed?)"));
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    let feeder = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("waits");
    feeder.join().expect("feeder").expect("tool read its input");
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn has(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// What [`build_tree`] made.
#[derive(Debug, Default, PartialEq, Eq)]
struct Truth {
    files: usize,
    file_bytes: u64,
    dirs: usize,
    symlinks: usize,
    hardlinks: usize,
}

impl Truth {
    fn of(entries: &[Entry]) -> Truth {
        let count = |kind| entries.iter().filter(|e| e.kind == kind).count();
        Truth {
            files: count(EntryKind::File),
            file_bytes: entries
                .iter()
                .filter(|e| e.kind == EntryKind::File)
                .map(|e| e.size)
                .sum(),
            dirs: count(EntryKind::Dir),
            symlinks: count(EntryKind::Symlink),
            hardlinks: count(EntryKind::Hardlink),
        }
    }
}

/// Text-like bytes that gzip to about half: a layer's typical ratio.
fn content(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            b"etaoin shrdlu\n"[((x >> 33) % 14) as usize]
        })
        .collect()
}

/// A layer's worth of files in `root`: hundreds of small files (300 B –
/// 2 KB) in a few directories, then (by name) short and long symlinks, a
/// few big files, an empty one and a hard link.
fn build_tree(root: &Path) -> Truth {
    let mut truth = Truth {
        dirs: 1,
        ..Truth::default()
    };
    let mut write = |path: &Path, bytes: &[u8]| {
        std::fs::write(path, bytes).expect("writes");
        truth.files += 1;
        truth.file_bytes += bytes.len() as u64;
    };
    for d in 0..8u64 {
        let dir = root.join(format!("dir{d}"));
        std::fs::create_dir(&dir).expect("mkdir");
        for f in 0..50u64 {
            let len = 300 + ((d * 50 + f) * 2_654_435_761 % 1_749) as usize;
            write(
                &dir.join(format!("small{f}.txt")),
                &content(d * 100 + f, len),
            );
        }
    }
    truth.dirs += 8;
    for (i, len) in [(0, 5 << 20), (1, (300 << 10) + 1), (2, 1 << 20), (3, 0)] {
        write(&root.join(format!("zz-big{i}")), &content(1000 + i, len));
    }
    std::os::unix::fs::symlink("zz-big0", root.join("short-link")).expect("symlink");
    let long = format!("dir0/{}", "x".repeat(70));
    std::os::unix::fs::symlink(long, root.join("long-link")).expect("symlink");
    truth.symlinks = 2;
    std::fs::hard_link(root.join("zz-big1"), root.join("zz-big1-again")).expect("link");
    truth.hardlinks = 1;
    truth
}

fn tar(root: &Path, format: &str) -> Vec<u8> {
    let dir = root.to_str().expect("utf-8 path");
    run(
        "tar",
        &[&format!("--format={format}"), "-C", dir, "-cf", "-", "."],
        &[],
    )
}

fn zstd(data: &[u8]) -> Vec<u8> {
    if has("zstd") {
        run("zstd", &["-q", "-3", "-c"], data)
    } else {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }
}

/// A zstd frame with an 8 MiB window (as `zstd -19` writes), bigger than
/// the layer: a decoder that holds back a window's worth of output until the
/// frame ends yields nothing from a cut prefix.
fn zstd_long_window(data: &[u8]) -> Vec<u8> {
    if has("zstd") {
        run("zstd", &["-q", "-3", "--long=23", "-c"], data)
    } else {
        // ruzstd's encoder has one window; its frames test the same path.
        zstd(data)
    }
}

#[test]
fn whole_layers_from_real_tools_read_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let truth = build_tree(dir.path());
    for format in ["gnu", "posix"] {
        let plain = tar(dir.path(), format);
        let read = sample(Compression::Plain, &plain).expect("a tar");
        assert!(read.complete, "{format}");
        assert_eq!(Truth::of(&read.entries), truth, "{format}");
        assert_eq!(read.stream_bytes, plain.len() as u64, "{format}");
        assert!(read.covered_stream_bytes <= read.stream_bytes, "{format}");
        for (compression, blob) in [
            (Compression::Gzip, run("gzip", &["-c"], &plain)),
            (Compression::Zstd, zstd(&plain)),
        ] {
            let what = format!("{format} {compression:?}");
            let got = sample(compression, &blob).expect(&what);
            assert_eq!(got.entries, read.entries, "{what}");
            assert!(got.complete, "{what}");
            assert_eq!(got.stream_bytes, plain.len() as u64, "{what}");
            assert_eq!(
                got.covered_stream_bytes, read.covered_stream_bytes,
                "{what}"
            );
            assert_eq!(got.compressed_bytes, blob.len() as u64, "{what}");
        }
    }
}

#[test]
fn zstd_content_size_reads_what_the_zstd_tool_writes() {
    if !has("zstd") {
        eprintln!("zstd is not installed: ruzstd's encoder writes no content size");
        return;
    }
    let data = content(7, 300_000);
    let size = data.len().to_string();
    let blob = run(
        "zstd",
        &["-q", "-c", &format!("--stream-size={size}")],
        &data,
    );
    assert_eq!(zstd_content_size(&blob), Some(data.len() as u64));
    let streamed = run("zstd", &["-q", "-c"], &data);
    assert_eq!(
        zstd_content_size(&streamed),
        None,
        "a pipe's size is unknown"
    );
}

#[test]
fn a_truncated_prefix_keeps_what_it_saw() {
    let dir = tempfile::tempdir().expect("tempdir");
    build_tree(dir.path());
    let plain = tar(dir.path(), "gnu");
    let whole = sample(Compression::Plain, &plain).expect("a tar").entries;
    let gz = run("gzip", &["-c"], &plain);
    for (compression, blob) in [
        (Compression::Plain, plain.clone()),
        (Compression::Gzip, gz),
        (Compression::Zstd, zstd(&plain)),
        (Compression::Zstd, zstd_long_window(&plain)),
    ] {
        // Past the small files, inside the first big one.
        let cut = blob.len() / 3 + 7;
        let got = sample(compression, &blob[..cut]).expect("a cut layer");
        assert!(!got.complete, "{compression:?}");
        let n = got.entries.len();
        assert!(
            n > 100 && n < whole.len(),
            "{compression:?}: {n} of {}",
            whole.len()
        );
        assert_eq!(got.entries, whole[..n], "{compression:?}");
        assert!(got.stream_bytes < plain.len() as u64, "{compression:?}");
        assert!(got.compressed_bytes <= cut as u64, "{compression:?}");
    }
}

#[test]
fn a_multi_member_gzip_reads_as_one_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    build_tree(dir.path());
    let plain = tar(dir.path(), "gnu");
    let whole = sample(Compression::Plain, &plain).expect("a tar");
    let mut blob = run("gzip", &["-c"], &plain[..123_457]);
    blob.extend(run("gzip", &["-c"], &plain[123_457..]));
    let got = sample(Compression::Gzip, &blob).expect("gzip");
    assert!(got.complete);
    assert_eq!(got.entries, whole.entries);
    assert_eq!(got.stream_bytes, plain.len() as u64);
}

#[test]
fn a_zero_filled_layer_stops_at_max_decoded() {
    // One 4 GiB file of zeros: a header member, then members of 8 MiB of
    // zeros (~8 KiB each) up to a 1 MiB prefix, ~1 GiB decoded.
    let mut header = vec![0u8; 512];
    header[..4].copy_from_slice(b"zero");
    header[124..136].copy_from_slice(format!("{:011o}\0", 4u64 << 30).as_bytes());
    header[156] = b'0';
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    let gzip = |data: &[u8]| {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(data).expect("in memory");
        gz.finish().expect("in memory")
    };
    let zeros = gzip(&vec![0u8; 8 << 20]);
    let mut blob = gzip(&header);
    while blob.len() < 1 << 20 {
        blob.extend(&zeros);
    }
    let prefix = &blob[..1 << 20];
    let got = sample(Compression::Gzip, prefix).expect("gzip");
    assert_eq!(got.stream_bytes, MAX_DECODED);
    assert_eq!(
        got.entries,
        vec![Entry {
            kind: EntryKind::File,
            size: 4 << 30
        }]
    );
    assert!(!got.complete);
    assert!(
        got.compressed_bytes < prefix.len() as u64 / 2,
        "{}",
        got.compressed_bytes
    );
}

#[test]
fn fault_garbage_is_not_a_layer_and_says_why() {
    let garbage: Vec<u8> = (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect();
    for (compression, says) in [
        (Compression::Gzip, "not a gzip blob"),
        (Compression::Zstd, "not a zstd blob"),
        (Compression::Plain, "not a tar stream"),
    ] {
        let err = sample(compression, &garbage).expect_err("garbage");
        assert!(err.to_string().contains(says), "{compression:?}: {err}");
    }
    // Well-compressed, but not a tar inside.
    let text = run("gzip", &["-c"], &[b'a'; 2000]);
    let err = sample(Compression::Gzip, &text).expect_err("not a tar");
    assert!(matches!(err, SampleError::NotTar(_)), "{err}");
    // A gzip header followed by garbage: gzip, but nothing decodes.
    let mut broken = text[..10].to_vec();
    broken.extend(&garbage);
    let got = sample(Compression::Gzip, &broken).expect("gzip magic");
    assert!(got.entries.is_empty() && !got.complete);
    // Too little to judge.
    assert_eq!(
        sample(Compression::Zstd, &[0x28, 0xb5]).map(|s| s.stream_bytes),
        Ok(0)
    );
}

#[test]
fn fault_a_header_claiming_2_pow_63_bytes_is_kept_as_declared() {
    let mut header = vec![0u8; 512];
    header[124] = 0x80;
    header[128..136].copy_from_slice(&(1u64 << 63).to_be_bytes());
    header[156] = b'0';
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&b| u32::from(b)).sum();
    header[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    header.extend(vec![0u8; 100_000]);
    let blob = run("gzip", &["-c"], &header);
    let got = sample(Compression::Gzip, &blob).expect("gzip");
    assert_eq!(
        got.entries,
        vec![Entry {
            kind: EntryKind::File,
            size: 1 << 63
        }]
    );
    assert!(!got.complete);
    assert_eq!(got.covered_stream_bytes, 512 + (1 << 63));
    let print = footprint(&got.entries, 4096);
    assert_eq!(print.disk_bytes, 1 << 63);
}

#[test]
fn media_types_name_their_compression() {
    let cases = [
        (
            "application/vnd.oci.image.layer.v1.tar+gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar+zstd",
            Some(Compression::Zstd),
        ),
        (
            "application/vnd.oci.image.layer.v1.tar",
            Some(Compression::Plain),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
            Some(Compression::Zstd),
        ),
        (
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
            Some(Compression::Gzip),
        ),
        (
            "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            Some(Compression::Gzip),
        ),
        ("application/vnd.oci.image.config.v1+json", None),
        ("application/vnd.oci.image.manifest.v1+json", None),
    ];
    for (media_type, want) in cases {
        assert_eq!(Compression::of_media_type(media_type), want, "{media_type}");
    }
    let json = serde_json::to_string(&[Compression::Gzip, Compression::Zstd, Compression::Plain]);
    assert_eq!(json.expect("serializes"), r#"["gzip","zstd","plain"]"#);
}

/// The one test of the disk model against reality: a tree on this
/// machine's filesystem, read back from its tar, against GNU `du`.
#[test]
fn the_disk_model_matches_du_within_5_percent() {
    let dir = tempfile::tempdir().expect("tempdir");
    build_tree(dir.path());
    let plain = tar(dir.path(), "gnu");
    let read = sample(Compression::Plain, &plain).expect("a tar");
    let block = rustix::fs::statvfs(dir.path()).expect("statvfs").f_bsize;
    let model = footprint(&read.entries, block);
    let path = dir.path().to_str().expect("utf-8 path");
    let du = String::from_utf8(run("du", &["-s", "-B1", path], &[])).expect("text");
    let real: u64 = du
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("du's bytes");
    let error = model.disk_bytes as f64 / real as f64 - 1.0;
    eprintln!(
        "block {block}: model {} B, du {real} B ({:+.2}%), tar stream {} B, {} inodes",
        model.disk_bytes,
        error * 100.0,
        plain.len(),
        model.inodes
    );
    assert!(
        error.abs() <= 0.05,
        "model {} vs du {real}",
        model.disk_bytes
    );
}
