//! Committed image layers: every one is reported, and its figures are what
//! GNU du and containerd itself measure.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use headroom::model::Layer;
use headroom::runtime::RuntimeKind;

use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle::{self, path_str};
use crate::World;

/// Docker's committed layers from its own files: chain ID → `diff` dir
/// (`image/overlay2/layerdb/sha256/<hex>/cache-id` names the overlay2 dir).
pub fn docker_layer_dirs(docker_root: &Path) -> Result<Vec<(String, PathBuf)>> {
    let layerdb = docker_root.join("image/overlay2/layerdb/sha256");
    let mut layers = Vec::new();
    for entry in fs::read_dir(&layerdb).with_context(|| format!("reading {}", layerdb.display()))? {
        let entry = entry?;
        let hex = entry.file_name().to_string_lossy().into_owned();
        let cache_path = entry.path().join("cache-id");
        let cache = fs::read_to_string(&cache_path)
            .with_context(|| format!("reading {}", cache_path.display()))?;
        let dir = docker_root.join("overlay2").join(cache.trim()).join("diff");
        layers.push((format!("sha256:{hex}"), dir));
    }
    layers.sort();
    Ok(layers)
}

/// containerd's committed snapshots in `k8s.io` (`ctr snapshots ls`).
pub fn containerd_committed(w: &World) -> Result<BTreeSet<String>> {
    Ok(oracle::ctr_snapshots(&w.containerd_sock, K8S_NS)?
        .into_iter()
        .filter(|s| s.kind == "Committed")
        .map(|s| s.key)
        .collect())
}

/// The reported layers of one runtime.
pub fn of(layers: &[Layer], kind: RuntimeKind) -> Vec<&Layer> {
    layers.iter().filter(|l| l.runtime == kind).collect()
}

/// Trial 1: each layer's disk/apparent/inodes equal `du -s`, and the set of
/// layers equals the runtimes' own lists.
pub fn match_du(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let mut c = Checks::new();

    let docker = docker_layer_dirs(&w.docker_root)?;
    let reported = of(&status.layers, RuntimeKind::Docker);
    c.eq(
        "Docker layer chain IDs",
        "ls image/overlay2/layerdb/sha256",
        docker
            .iter()
            .map(|(id, _)| id.clone())
            .collect::<BTreeSet<_>>(),
        reported.iter().map(|l| l.id.clone()).collect(),
    );
    for (id, dir) in &docker {
        if let Some(l) = reported.iter().find(|l| &l.id == id) {
            c.eq(
                &format!("path of Docker layer {id}"),
                "layerdb cache-id",
                dir.display().to_string(),
                l.path.clone(),
            );
        }
    }

    let committed = containerd_committed(w)?;
    let reported_ctr = of(&status.layers, RuntimeKind::Containerd);
    c.eq(
        "containerd layers in k8s.io",
        "ctr -n k8s.io snapshots ls (Committed)",
        committed,
        reported_ctr
            .iter()
            .filter(|l| l.namespace == K8S_NS)
            .map(|l| l.id.clone())
            .collect(),
    );
    c.eq(
        "containerd layers outside k8s.io",
        "only k8s.io has snapshots",
        Vec::<String>::new(),
        reported_ctr
            .iter()
            .filter(|l| l.namespace != K8S_NS)
            .map(|l| format!("{}/{}", l.namespace, l.id))
            .collect(),
    );

    for l in &status.layers {
        compare_with_du(&mut c, &format!("{:?} layer {}", l.runtime, l.id), l);
    }
    c.finish(&run.command)
}

/// Records each of `l`'s figures that differs from `du -s` of its path.
pub fn compare_with_du(c: &mut Checks, what: &str, l: &Layer) {
    let du = match oracle::du(Path::new(&l.path)) {
        Ok(du) => du,
        Err(e) => return c.error(what, e),
    };
    c.eq(
        &format!("{what} disk_bytes"),
        &format!("du -s -B1 {}", l.path),
        du.disk,
        l.disk_bytes,
    );
    c.eq(
        &format!("{what} apparent_bytes"),
        &format!("du -s -B1 --apparent-size {}", l.path),
        du.apparent,
        l.apparent_bytes,
    );
    c.eq(
        &format!("{what} inodes"),
        &format!("du -s --inodes {}", l.path),
        du.inodes,
        l.inodes,
    );
}

/// Trial 2: containerd's committed layers equal `ctr snapshots usage -b`
/// (containerd's own st_blocks figure, raw bytes, so exactly).
pub fn containerd_match_ctr_usage(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let usage = oracle::ctr_usage(&w.containerd_sock, K8S_NS)?;
    let oracle_cmd = format!(
        "ctr -a {} -n k8s.io snapshots usage -b",
        path_str(&w.containerd_sock)?
    );
    let mut c = Checks::new();
    for key in containerd_committed(w)? {
        let Some(&(size, inodes)) = usage.get(&key) else {
            c.that(false, || format!("{oracle_cmd} has no row for {key}"));
            continue;
        };
        let layer = status
            .layers
            .iter()
            .find(|l| l.runtime == RuntimeKind::Containerd && l.namespace == K8S_NS && l.id == key);
        match layer {
            None => c.that(false, || {
                format!("layer {key} (in {oracle_cmd}) is not reported")
            }),
            Some(l) => {
                c.eq(
                    &format!("{key} disk_bytes"),
                    &oracle_cmd,
                    size,
                    l.disk_bytes,
                );
                c.eq(&format!("{key} inodes"), &oracle_cmd, inodes, l.inodes);
            }
        }
    }
    c.finish(&run.command)
}
