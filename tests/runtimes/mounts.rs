//! A bind mount inside a walked tree (issue 10): `/usr` mounted inside a
//! real container's writable layer, as a volume's subPath would be, is not
//! counted in the container and is named as a mount not crossed.

use std::fs;
use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::checks::Checks;
use crate::oracle::{self, path_str};
use crate::{subject, World};

/// The name of the bind mount made inside a writable layer.
const BIND_NAME: &str = "headroom-bind-usr";

/// Unmounts (lazily, so a busy mount cannot stay) and removes the mount
/// point when dropped, also when the trial fails.
struct BindMount(PathBuf);

impl Drop for BindMount {
    fn drop(&mut self) {
        if let Ok(p) = path_str(&self.0) {
            let _ = oracle::run("umount", &["-l", p]);
        }
        let _ = fs::remove_dir(&self.0);
    }
}

/// Trial: `/usr` bind mounted inside Docker container w1's writable layer
/// (what a volume's subPath mount looks like to a walker): the container's
/// writable bytes are du's with the mount point excluded, and the scan names
/// the mount as not crossed.
pub fn fault_bind_mount_in_a_writable_layer_is_not_counted(w: &World) -> Result<()> {
    let _node = w.changing();
    let ctr = &w.fixtures.docker[0];
    let upper = w.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &ctr.id])?;
    let upper = PathBuf::from(upper.trim());
    let point = upper.join(BIND_NAME);
    fs::create_dir(&point).with_context(|| format!("mkdir {}", point.display()))?;
    let mount = BindMount(point);
    let point_str = path_str(&mount.0)?;
    oracle::run("mount", &["--bind", "/usr", point_str])?;
    let run = subject::status(w, &subject::node_layout(w), true)?;
    let status = run.status()?;
    let upper_str = path_str(&upper)?;
    let exclude = format!("--exclude={BIND_NAME}");
    let du = oracle::run("du", &["-s", "-B1", &exclude, upper_str])?;
    let du: u64 = du
        .split_whitespace()
        .next()
        .unwrap_or("")
        .parse()
        .context("du's total")?;
    let mut c = Checks::new();
    match status.containers.iter().find(|x| x.id == ctr.id) {
        Some(rep) => c.eq(
            "w1's writable_disk_bytes",
            &format!("du -s -B1 {exclude} {upper_str}"),
            du,
            rep.writable_disk_bytes,
        ),
        None => c.that(false, || {
            format!("container {} is not in the document", ctr.id)
        }),
    }
    c.that(
        status.scan.skipped_mounts >= 1
            && status
                .scan
                .skipped_mount_samples
                .iter()
                .any(|p| p == point_str),
        || {
            format!(
                "the scan should name {point_str} as a mount not crossed: {:?}",
                status.scan
            )
        },
    );
    drop(mount);
    c.finish(&run.describe())
}
