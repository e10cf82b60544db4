//! The audit over layers laid out as overlay's upper directories, in a
//! temp dir. Whiteouts need CAP_MKNOD and are covered by the runtimes
//! trial (tests/runtimes/audit.rs) on real layers; here the hiding is by
//! opaque directories and by files put in place of directories.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use super::*;

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write(layer: &Path, rel: &str, data: &[u8]) {
    let path = layer.join(rel);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, data).unwrap();
}

fn image(id: &str, layers: &[&PathBuf]) -> ImageStack {
    ImageStack {
        runtime: RuntimeKind::Docker,
        namespace: String::new(),
        id: format!("sha256:{id}"),
        refs: vec![format!("example/{id}:1")],
        layers: layers.iter().map(|p| p.to_path_buf()).collect(),
    }
}

/// Two images: `a` (base, then a layer of changes) and `b` (one layer,
/// holding a copy of a's big file).
fn node(dir: &Path) -> Vec<ImageStack> {
    let (l0, l1, l2) = (dir.join("l0"), dir.join("l1"), dir.join("l2"));
    let big = noise(2 << 20, 1);
    write(&l0, "a/big", &big);
    write(&l0, "a/keep", b"0123456789");
    write(&l0, "d/x", &noise(1000, 2));
    write(&l0, "d/y", &noise(2000, 3));
    write(&l0, "var/cache/apt/archives/p.deb", &noise(5000, 4));
    write(&l0, "t/f", &noise(300, 5));
    write(&l0, "s/h1", &noise(7000, 6));
    fs::hard_link(l0.join("s/h1"), l0.join("s/h2")).unwrap();
    symlink("/etc", l0.join("escape")).unwrap();

    write(&l1, "a/big", &big);
    fs::set_permissions(l1.join("a/big"), fs::Permissions::from_mode(0o600)).unwrap();
    write(&l1, "a/keep", b"other");
    write(&l1, "d/z", &noise(50, 7));
    rustix::fs::setxattr(
        l1.join("d"),
        "user.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    write(&l1, "t", b"a file where a directory was");
    write(&l1, "escape/passwd", b"not followed");

    write(&l2, "o/copy", &big);
    vec![image("a", &[&l0, &l1]), image("b", &[&l2])]
}

#[test]
fn each_kind_of_waste_is_counted_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let stacks = node(dir.path());
    let report = Auditor::default().audit("n", &stacks, &mut Pace::unlimited());
    assert!(
        report.complete && report.problems.is_empty(),
        "{:?}",
        report.problems
    );
    let a = report
        .images
        .iter()
        .find(|i| i.image.id == "sha256:a")
        .unwrap();
    let w = &a.waste;
    assert_eq!((w.metadata_only.files, w.metadata_only.bytes), (1, 2 << 20));
    assert_eq!((w.hidden.files, w.hidden.bytes), (3, 1000 + 2000 + 300));
    // a/keep replaced by other content, and the symlink `escape` by a directory.
    assert_eq!((w.overwritten.files, w.overwritten.bytes), (1, 10));
    assert_eq!(w.caches[&CacheKind::Apt].bytes, 5000);
    assert_eq!((w.duplicate.files, w.duplicate.bytes), (1, 2 << 20));
    let sum = 2 * (2 << 20) + 10 + 3000 + 300 + 5000;
    assert_eq!(w.wasted_bytes, sum);
    // a/big, a/keep, d/z, p.deb, t, s/h1, s/h2, escape/passwd.
    assert_eq!(a.files, 8);
    assert_eq!(a.top_paths[0].bytes, 2 << 20);
    assert!(a
        .top_paths
        .iter()
        .any(|p| p.path == "/d" && p.kind == "hidden" && p.bytes == 3000));
    assert!(a
        .top_paths
        .iter()
        .any(|p| p.path == "/var/cache/apt" && p.kind == "apt"));

    let b = report
        .images
        .iter()
        .find(|i| i.image.id == "sha256:b")
        .unwrap();
    assert_eq!(b.waste.duplicate.bytes, 2 << 20);
    assert_eq!(b.waste.wasted_bytes, 2 << 20);
    // One shared copy would save one of the two copies in distinct layers.
    assert_eq!(report.node_totals.duplicate.bytes, 2 << 20);
    assert_eq!(report.duplicates.len(), 1);
    assert_eq!(report.duplicates[0].copies.len(), 2);
    let summary = report.summary();
    assert_eq!(summary.by_kind["hidden"], 3300);
    assert_eq!(summary.wasted_bytes, sum);
}

#[test]
fn a_layer_shared_by_images_is_counted_once_node_wide() {
    let dir = tempfile::tempdir().unwrap();
    let mut stacks = node(dir.path());
    let mut twin = stacks[0].clone();
    twin.id = "sha256:twin".into();
    let l3 = dir.path().join("l3");
    write(&l3, "new", b"x");
    twin.layers.push(l3);
    stacks.push(twin);
    let report = Auditor::default().audit("n", &stacks, &mut Pace::unlimited());
    let twin = report
        .images
        .iter()
        .find(|i| i.image.id == "sha256:twin")
        .unwrap();
    assert_eq!(twin.waste.hidden.bytes, 3300);
    assert_eq!(report.node_totals.hidden.bytes, 3300);
    assert_eq!(report.node_totals.caches[&CacheKind::Apt].bytes, 5000);
}

#[test]
fn an_image_without_waste_reports_zero_and_a_missing_layer_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let l0 = dir.path().join("clean");
    write(&l0, "bin/tool", &noise(3 << 20, 9));
    write(&l0, "etc/conf", b"x");
    let gone = dir.path().join("gone");
    let stacks = vec![image("clean", &[&l0]), image("gone", &[&gone])];
    let report = Auditor::default().audit("n", &stacks, &mut Pace::unlimited());
    let clean = &report.images[0];
    assert_eq!((clean.waste.clone(), clean.files), (Waste::default(), 2));
    assert!(clean.top_paths.is_empty());
    assert_eq!(
        report.pending.len(),
        1,
        "the unreadable image stays pending"
    );
    assert!(!report.complete);
    assert!(
        report.problems[0].source.ends_with("gone"),
        "{:?}",
        report.problems
    );
}

#[test]
fn a_stopped_pace_leaves_images_pending_and_a_later_pass_finishes_them() {
    let dir = tempfile::tempdir().unwrap();
    let stacks = node(dir.path());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let mut auditor = Auditor::default();
    let mut pace = Pace::share(1.0, std::time::Duration::from_secs(60), stop);
    let report = auditor.audit("n", &stacks, &mut pace);
    assert!(!report.complete);
    assert_eq!(report.images.len() + report.pending.len(), 2);
    let report = auditor.audit("n", &stacks, &mut Pace::unlimited());
    assert!(report.complete && report.pending.is_empty());
}

#[test]
fn a_spent_pass_finishes_its_stack_and_leaves_the_next_to_the_next_pass() {
    let dir = tempfile::tempdir().unwrap();
    let stacks = node(dir.path());
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut auditor = Auditor::default();
    let mut passes = 0;
    loop {
        passes += 1;
        let mut pace = Pace::share(1.0, std::time::Duration::ZERO, std::sync::Arc::clone(&stop));
        let report = auditor.audit("n", &stacks, &mut pace);
        if report.complete {
            assert_eq!(report.images.len(), 2);
            break;
        }
        assert_eq!(report.images.len(), passes, "one stack a pass");
    }
    assert_eq!(passes, 2);
}

#[test]
fn deep_trees_are_cut_at_the_depth_cap_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let l0 = dir.path().join("deep");
    let mut path = l0.clone();
    for _ in 0..list::MAX_DEPTH + 5 {
        path.push("d");
    }
    fs::create_dir_all(&path).unwrap();
    fs::write(path.join("f"), b"x").unwrap();
    let report = Auditor::default().audit("n", &[image("deep", &[&l0])], &mut Pace::unlimited());
    assert_eq!(report.images[0].files, 0);
    assert!(
        report.problems[0].message.contains("deeper than"),
        "{:?}",
        report.problems
    );
}

#[test]
fn copies_in_another_runtimes_store_are_not_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut stacks = node(dir.path());
    // Image b pulled into containerd as well: its own snapshot of the layer.
    let l2 = dir.path().join("l2");
    let snapshot = dir.path().join("snapshot");
    fs::create_dir_all(snapshot.join("o")).unwrap();
    fs::copy(l2.join("o/copy"), snapshot.join("o/copy")).unwrap();
    let mut b = image("b", &[&snapshot]);
    (b.runtime, b.namespace) = (RuntimeKind::Containerd, "k8s.io".into());
    stacks.push(b);
    let report = Auditor::default().audit("n", &stacks, &mut Pace::unlimited());
    let theirs = report
        .images
        .iter()
        .find(|i| i.image.runtime == RuntimeKind::Containerd)
        .unwrap();
    assert_eq!(theirs.waste.duplicate, Amount::default());
    assert_eq!(
        report.node_totals.duplicate.bytes,
        2 << 20,
        "Docker's pair only"
    );
}

#[test]
fn stacks_audited_together_match_each_audited_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut stacks = node(dir.path());
    let (l0, l1) = (dir.path().join("l0"), dir.path().join("l1"));
    // Siblings on l0 and on l1 undo each other's changes between them.
    let (s1, s2) = (dir.path().join("s1"), dir.path().join("s2"));
    write(&s1, "d/x", b"replaced on a sibling");
    write(&s2, "a/keep", b"0123456789");
    write(&s2, "t/g", b"t is a directory again");
    stacks.push(image("s1", &[&l0, &s1]));
    stacks.push(image("s2", &[&l0, &l1, &s2]));
    let together = Auditor::default().audit("n", &stacks, &mut Pace::unlimited());
    for s in &stacks {
        let alone = Auditor::default().audit("n", std::slice::from_ref(s), &mut Pace::unlimited());
        let mut alone = alone.images[0].clone();
        let mut with = together
            .images
            .iter()
            .find(|i| i.image.id == s.id)
            .unwrap()
            .clone();
        for i in [&mut alone, &mut with] {
            i.waste.wasted_bytes -= i.waste.duplicate.bytes;
            i.waste.duplicate = Amount::default();
        }
        assert_eq!(with, alone, "{}", s.id);
    }
    let s2 = together
        .images
        .iter()
        .find(|i| i.image.id == "sha256:s2")
        .unwrap();
    let t = "a file where a directory was".len() as u64;
    assert_eq!(
        s2.waste.overwritten.bytes,
        10 + 5 + t,
        "a/keep twice, t by a directory"
    );
}

#[test]
fn without_cap_sys_admin_the_report_says_opaque_directories_are_not_seen() {
    let dir = tempfile::tempdir().unwrap();
    let stacks = node(dir.path());
    let report = Auditor::seeing_opaque(false).audit("n", &stacks, &mut Pace::unlimited());
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    assert!(report.problems[0].message.contains("CAP_SYS_ADMIN"));
    let report = Auditor::seeing_opaque(true).audit("n", &stacks, &mut Pace::unlimited());
    assert!(report.problems.is_empty());
}
