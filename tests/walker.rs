//! The walker on hostile trees, each checked against GNU `du` (the oracle):
//! `du -s -B1`, `du -s -B1 --apparent-size` and `du -s --inodes`.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use headroom::walk::{walk, ErrorKind, Walk, WalkOptions};
use rustix::fs::{mkdirat, openat, Mode, OFlags, CWD};

/// What GNU du prints for one path.
#[derive(Debug, PartialEq, Eq)]
struct Figures {
    disk: u64,
    apparent: u64,
    inodes: u64,
}

/// Runs du (behind `prefix`, e.g. setpriv) and parses its total; du exits 1
/// when it met errors, which some tests want.
fn du_one(prefix: &[&str], args: &[&str], path: &Path) -> u64 {
    let (cmd, pre) = prefix.split_first().unwrap_or((&"du", &[]));
    let mut c = Command::new(cmd);
    c.args(pre);
    if !prefix.is_empty() {
        c.arg("du");
    }
    let out = c.args(args).arg(path).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let first = text.split_whitespace().next();
    first
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("du {args:?} {path:?}: {out:?}"))
}

fn du(prefix: &[&str], path: &Path) -> Figures {
    Figures {
        disk: du_one(prefix, &["-s", "-B1"], path),
        apparent: du_one(prefix, &["-s", "-B1", "--apparent-size"], path),
        inodes: du_one(prefix, &["-s", "--inodes"], path),
    }
}

fn figures(w: &Walk) -> Figures {
    Figures {
        disk: w.usage.disk_bytes,
        apparent: w.usage.apparent_bytes,
        inodes: w.usage.inodes,
    }
}

fn opts(threads: usize) -> WalkOptions {
    WalkOptions {
        threads,
        ..WalkOptions::default()
    }
}

/// Walks with one thread and with two, checks both against du and returns
/// the two-thread walk.
fn assert_like_du(path: &Path) -> Walk {
    let expected = du(&[], path);
    let one = walk(path, &opts(1));
    let two = walk(path, &opts(2));
    assert_eq!(figures(&one), expected, "1 thread on {path:?}");
    assert_eq!(figures(&two), expected, "2 threads on {path:?}");
    assert!(two.errors.is_empty(), "{:?}", two.errors);
    assert_eq!(one.entries, two.entries);
    two
}

/// A temp dir removed with `rm -rf`, which handles any depth (std's removal
/// recurses and keeps one fd per level).
struct Tree(tempfile::TempDir);

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        Tree(dir)
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    fn file(&self, rel: impl AsRef<Path>, bytes: usize) -> PathBuf {
        let path = self.path().join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, vec![b'h'; bytes]).unwrap();
        path
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        // Root removes the unreadable directories too.
        let _ = Command::new("rm").arg("-rf").arg(self.path()).status();
    }
}

#[test]
fn fault_symlinks_are_counted_not_followed() {
    let t = Tree::new();
    t.file("a/f", 10_000);
    std::os::unix::fs::symlink("/etc", t.path().join("etc")).unwrap();
    std::os::unix::fs::symlink("/usr/bin", t.path().join("a/bin")).unwrap();
    std::os::unix::fs::symlink("a", t.path().join("loop")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", t.path().join("dangling")).unwrap();
    let w = assert_like_du(t.path());
    assert_eq!(w.usage.inodes, 7);
    assert!(w.usage.disk_bytes < du(&[], Path::new("/etc")).disk);
}

/// Creates `depth` nested directories named `d` below `top` (too deep for
/// any path), with a file every 500 levels and, with `comb`, an empty
/// sibling directory at every level.
fn deep_chain(top: &Path, depth: usize, comb: bool) {
    let mut fd = openat(CWD, top, OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    for level in 0..depth {
        if comb {
            mkdirat(&fd, "s", Mode::from_raw_mode(0o755)).unwrap();
        }
        if level % 500 == 0 {
            let flags = OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC;
            let f = openat(&fd, "f", flags, Mode::from_raw_mode(0o644)).unwrap();
            rustix::io::write(&f, &[7u8; 5000]).unwrap();
        }
        mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
        fd = openat(&fd, "d", OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).unwrap();
    }
}

/// `headroom du --json --threads N` on `path`, in a shell that first runs `setup`.
fn headroom_du(setup: &str, threads: usize, path: &Path) -> serde_json::Value {
    let bin = env!("CARGO_BIN_EXE_headroom");
    let script = format!("{setup}; exec \"$0\" du --json --threads {threads} \"$1\"");
    let out = Command::new("sh")
        .args(["-c", &script, bin])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{e}: headroom du on {path:?}: {out:?}"))
}

fn json_figures(v: &serde_json::Value) -> Figures {
    let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
    Figures {
        disk: n("disk_bytes"),
        apparent: n("apparent_bytes"),
        inodes: n("inodes"),
    }
}

#[test]
fn fault_chain_ten_thousand_deep() {
    let t = Tree::new();
    deep_chain(t.path(), 10_000, false);
    let w = assert_like_du(t.path());
    assert_eq!(w.usage.inodes, 10_001 + 20);
    // A tight fd limit proves the chain holds O(1) directory fds.
    let v = headroom_du("ulimit -n 32", 2, t.path());
    assert_eq!(json_figures(&v), du(&[], t.path()));
    assert_eq!(v["errors"], 0, "{v}");
}

#[test]
fn fault_comb_ten_thousand_deep_within_default_fd_limit() {
    // A sibling at every level, listed before the deeper directory, leaves a
    // job pending per level on one thread: the fd budget and reopening from
    // anchors must keep that under 1024 fds (`ulimit -n` sets the hard limit
    // too, so the walker cannot raise it).
    let t = Tree::new();
    deep_chain(t.path(), 10_000, true);
    let v = headroom_du("ulimit -n 1024", 1, t.path());
    assert_eq!(json_figures(&v), du(&[], t.path()));
    assert_eq!(v["errors"], 0, "{v}");
    assert_eq!(v["inodes"], 20_001 + 20);
}

#[test]
fn fault_comb_past_the_fd_cap_only_gets_slower() {
    // 24 fds leave room for 8 anchors: the rest must be reopened by name.
    let t = Tree::new();
    deep_chain(t.path(), 800, true);
    let v = headroom_du("ulimit -n 24", 1, t.path());
    assert_eq!(json_figures(&v), du(&[], t.path()));
    assert_eq!(v["errors"], 0, "{v}");
}

#[test]
fn fault_names_that_are_not_utf8() {
    let t = Tree::new();
    let odd = |bytes: &[u8]| t.path().join(OsStr::from_bytes(bytes));
    fs::create_dir(odd(b"dir\xff\xfe")).unwrap();
    fs::write(odd(b"dir\xff\xfe/\x80file"), [1u8; 3000]).unwrap();
    fs::write(odd(b"new\nline"), [2u8; 9000]).unwrap();
    fs::write(odd(b"-\x1b[31m"), [3u8; 1]).unwrap();
    fs::write(odd(&[b'n'; 255]), [4u8; 70_000]).unwrap();
    let w = assert_like_du(t.path());
    assert_eq!(w.usage.inodes, 6);
}

#[test]
fn fault_fifos_and_devices_are_stat_ed_never_opened() {
    let t = Tree::new();
    t.file("layer/etc/conf", 4000);
    let status = Command::new("sh")
        .arg("-c")
        .arg("mkfifo fifo && mknod whiteout c 0 0 && mknod null c 1 3 && mknod loop b 7 0")
        .current_dir(t.path().join("layer"))
        .status()
        .unwrap();
    assert!(status.success(), "mknod needs root");
    // Opening the FIFO would block forever; the walk must finish.
    let w = assert_like_du(t.path());
    assert_eq!(w.usage.inodes, 8);
}

#[test]
fn fault_hard_links_inside_and_outside_the_tree() {
    let outside = Tree::new();
    let t = Tree::new();
    let f = t.file("a/shared", 200_000);
    fs::hard_link(&f, t.path().join("b")).unwrap();
    fs::create_dir(t.path().join("c")).unwrap();
    fs::hard_link(&f, t.path().join("c/again")).unwrap();
    let g = t.file("only-one-link-inside", 70_000);
    fs::hard_link(&g, outside.path().join("other")).unwrap();
    let w = assert_like_du(t.path());
    assert_eq!(w.usage.inodes, 5);
    assert_eq!(w.entries, 7);
}

#[test]
fn fault_directory_removed_while_walked() {
    for round in 0..4 {
        let t = Tree::new();
        for d in 0..60 {
            for f in 0..40 {
                t.file(format!("keep/{d}/{f}"), 100 * f);
                t.file(format!("doomed/{d}/sub/{f}"), 100 * f);
            }
        }
        let full = du(&[], t.path());
        let doomed_dir = t.path().join("doomed");
        let doomed = du(&[], &doomed_dir);
        let started = Arc::new(AtomicBool::new(false));
        let remover = {
            let started = Arc::clone(&started);
            std::thread::spawn(move || {
                started.store(true, Ordering::SeqCst);
                fs::remove_dir_all(doomed_dir)
            })
        };
        while !started.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
        let w = walk(t.path(), &opts(2));
        remover.join().unwrap().unwrap();
        let kinds: Vec<_> = w.error_counts.keys().collect();
        assert!(
            kinds.iter().all(|k| **k == ErrorKind::Vanished),
            "round {round}: {:?}",
            w.errors
        );
        assert!(w
            .errors
            .iter()
            .all(|e| e.path.starts_with(t.path().join("doomed"))));
        // Directories keep their size after their entries are removed.
        let lower = full.disk - doomed.disk;
        assert!(
            (lower..=full.disk).contains(&w.usage.disk_bytes),
            "round {round}: {w:?}"
        );
        let lower = full.inodes - doomed.inodes;
        assert!(
            (lower..=full.inodes).contains(&w.usage.inodes),
            "round {round}: {w:?}"
        );
    }
}

#[test]
fn fault_unreadable_directories_as_an_unprivileged_user() {
    // Root reads everything, so denial is tested as nobody (uid 65534).
    let t = Tree::new();
    t.file("open/f", 12_000);
    for (dir, mode) in [
        ("locked", 0o000),
        ("list-only", 0o444),
        ("search-only", 0o111),
    ] {
        t.file(format!("{dir}/f"), 30_000);
        t.file(format!("{dir}/sub/g"), 30_000);
        fs::set_permissions(t.path().join(dir), fs::Permissions::from_mode(mode)).unwrap();
    }
    let bin = t.path().join("bin");
    fs::create_dir(&bin).unwrap();
    fs::copy(env!("CARGO_BIN_EXE_headroom"), bin.join("headroom")).unwrap();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let v = {
        let out = Command::new(nobody[0])
            .args(&nobody[1..])
            .arg(bin.join("headroom"))
            .args(["du", "--json", "--threads", "2"])
            .arg(t.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(json_figures(&v), du(&nobody, t.path()));
    let denied = v["errors_by_kind"]["denied"].as_u64().unwrap();
    // locked and search-only cannot be listed; list-only's two names cannot be stat'ed.
    assert_eq!(denied, 4, "{v}");
    assert_eq!(v["errors"], 4, "{v}");
}

/// A bind mount for one test, unmounted on drop, so also when the test
/// fails. Declare it after the [`Tree`] it sits in: it must be gone before
/// `rm -rf` runs, or the removal would reach through it.
struct BindMount(PathBuf);

impl BindMount {
    fn new(source: &Path, target: &Path) -> BindMount {
        let status = Command::new("mount")
            .arg("--bind")
            .arg(source)
            .arg(target)
            .status()
            .unwrap();
        assert!(status.success(), "mount --bind needs root");
        BindMount(target.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn fault_bind_mount_is_not_crossed() {
    // Bind mounts of the same filesystem keep st_dev: only the mount root
    // attribute tells them apart (a directory and a file, both skipped).
    let outside = Tree::new();
    outside.file("usr/lib/big", 3_000_000);
    let passwd = outside.file("passwd", 500_000);
    let t = Tree::new();
    t.file("layer/etc/conf", 4000);
    t.file("layer/etc/passwd", 0);
    let usr = t.path().join("layer/usr");
    fs::create_dir(&usr).unwrap();
    let etc_passwd = t.path().join("layer/etc/passwd");
    let _dir_mount = BindMount::new(&outside.path().join("usr"), &usr);
    let _file_mount = BindMount::new(&passwd, &etc_passwd);

    let excluded = [&usr, &etc_passwd].map(|p| format!("--exclude={}", p.display()));
    let du_without = |args: &[&str]| {
        let excluded: Vec<&str> = excluded.iter().map(String::as_str).collect();
        du_one(&[], &[args, &excluded].concat(), t.path())
    };
    let expected = Figures {
        disk: du_without(&["-s", "-B1"]),
        apparent: du_without(&["-s", "-B1", "--apparent-size"]),
        inodes: du_without(&["-s", "--inodes"]),
    };
    for threads in [1, 2] {
        let w = walk(t.path(), &opts(threads));
        assert_eq!(figures(&w), expected, "{threads} threads");
        assert!(w.errors.is_empty(), "{:?}", w.errors);
        assert_eq!(w.skipped_mounts, 2, "{threads} threads");
        let mut paths = w.skipped_mount_paths.clone();
        paths.sort();
        assert_eq!(paths, [etc_passwd.clone(), usr.clone()]);
    }
}

#[test]
fn fault_du_threads_out_of_range_is_a_usage_error() {
    let t = Tree::new();
    t.file("f", 1000);
    let du_with = |threads: &str| {
        Command::new(env!("CARGO_BIN_EXE_headroom"))
            .args(["du", "--threads", threads])
            .arg(t.path())
            .output()
            .unwrap()
    };
    let out = du_with("100000");
    let stderr = String::from_utf8_lossy(&out.stderr);
    // docs/exit-codes.md: a usage error exits 3, naming the culprit.
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    for needle in ["--threads", "100000", "1024"] {
        assert!(stderr.contains(needle), "{needle} not in {stderr}");
    }
    assert!(out.stdout.is_empty(), "{out:?}");
    // The bound itself is allowed.
    let out = du_with("1024");
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
