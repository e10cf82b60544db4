//! Walker benchmark: one ~30,000-file tree with one thread and with all cores,
//! and `walk_many` over 300 small roots (what inventory does with layers).

use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::{criterion_group, criterion_main, Criterion};
use headroom::walk::{walk, walk_many, WalkOptions};

/// Writes `dirs` directories of `files` small files each under `root`,
/// nested two levels deep like a package tree.
fn generate(root: &Path, dirs: usize, files: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("usr/lib/pkg{}/d{}", d / 8, d % 8));
        fs::create_dir_all(&dir).expect("create bench dir");
        for f in 0..files {
            let bytes = (d * 131 + f * 977) % 6000;
            fs::write(dir.join(format!("f{f}")), vec![b'x'; bytes]).expect("write bench file");
        }
    }
}

fn bench(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let big = tmp.path().join("big");
    generate(&big, 1000, 30);
    let small: Vec<PathBuf> = (0..300)
        .map(|i| {
            let root = tmp.path().join(format!("layer{i}"));
            generate(&root, 1 + i % 7, 10);
            root
        })
        .collect();

    let mut group = c.benchmark_group("walk");
    group.sample_size(20);
    for (name, threads) in [("tree_30k_1_thread", 1), ("tree_30k_all_cores", 0)] {
        let opts = WalkOptions {
            threads,
            ..WalkOptions::default()
        };
        group.bench_function(name, |b| b.iter(|| black_box(walk(&big, &opts))));
    }
    let opts = WalkOptions::default();
    group.bench_function("walk_many_300_small_roots", |b| {
        b.iter(|| black_box(walk_many(&small, &opts)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
