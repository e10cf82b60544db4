//! Audit benchmark: a synthetic Docker node of 14 images (as root, two of
//! them with planted waste: see `fixture::Planted`) over ~31,000 files,
//! audited through the library from scratch, and again with every stack's
//! audit kept (what the agent does each pass on an unchanged node).

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use headroom::audit::{Auditor, ImageStack, Pace};
use headroom::runtime::docker::fixture::{synthetic, Manifest, Synthetic};
use headroom::runtime::RuntimeKind;

/// The node's images, each with its layers' directories, base first.
fn stacks(manifest: &Manifest) -> Vec<ImageStack> {
    manifest
        .images
        .iter()
        .map(|named| ImageStack {
            runtime: RuntimeKind::Docker,
            namespace: String::new(),
            id: named.image.id.clone(),
            refs: vec![named.reference.clone()],
            layers: (named.image.layers.iter())
                .map(|chain| {
                    let layer = manifest.layers.iter().find(|l| &l.chain == chain);
                    layer.expect("the manifest lists its layers").dir.clone()
                })
                .collect(),
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    // Whiteouts, trusted xattrs and chown need root.
    let root = rustix::process::geteuid().is_root();
    let shape = Synthetic {
        layer_files: 30_000,
        containers: 0,
        writable_files: 0,
        wasteful: if root { 2 } else { 0 },
        ..Synthetic::default()
    };
    if !root {
        eprintln!("audit bench: not root, so no image has planted waste");
    }
    let manifest = synthetic(&tmp.path().join("docker"), &shape).expect("synthetic store");
    let stacks = stacks(&manifest);

    // What is timed must be the audit of the node written.
    let report = Auditor::default().audit("bench", &stacks, &mut Pace::unlimited());
    let files: u64 = report.images.iter().map(|i| i.files).sum();
    let written: usize = manifest.images.iter().map(|i| i.files).sum();
    assert_eq!((report.images.len(), files), (stacks.len(), written as u64));
    assert_eq!(report.node_totals.wasted_bytes > 0, root);

    let mut group = c.benchmark_group("audit");
    group.sample_size(10);
    group.bench_function("node_14_images_31k_files", |b| {
        b.iter(|| black_box(Auditor::default().audit("bench", &stacks, &mut Pace::unlimited())))
    });
    let mut kept = Auditor::default();
    kept.audit("bench", &stacks, &mut Pace::unlimited());
    group.bench_function("node_14_images_stacks_kept", |b| {
        b.iter(|| black_box(kept.audit("bench", &stacks, &mut Pace::unlimited())))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
