//! The filesystem signals against `df -B1` of the same paths and the
//! kubelet config the test wrote ([`crate::images::KUBELET_CONFIG`]).
//!
//! nodefs (kubelet root) and imagefs (runtime roots) are two private ext4
//! loop filesystems, so nothing but this test writes to them and df taken
//! just before and after the run brackets Headroom's figures exactly.

use std::path::{Path, PathBuf};

use anyhow::Result;
use headroom::model::Filesystem;

use crate::checks::Checks;
use crate::oracle::{self, Df, DF_ARGS};
use crate::subject;
use crate::World;

/// The kubelet's thresholds from the config, applied to `df` figures.
struct Thresholds {
    bytes: u64,
    inodes: u64,
}

/// nodefs.available 12.5% and nodefs.inodesFree 25% of capacity (exact in
/// float32, as the kubelet parses them); imagefs.available 1Gi,
/// imagefs.inodesFree 50000.
fn thresholds(signal: &str, df: &Df) -> Thresholds {
    match signal {
        "nodefs" => Thresholds {
            bytes: df.size / 8,
            inodes: df.itotal / 4,
        },
        _ => Thresholds {
            bytes: 1 << 30,
            inodes: 50_000,
        },
    }
}

/// nodefs and imagefs: paths, mount points, capacity/available/inodes as
/// df says, thresholds as the config says, and the bytes/inodes left.
pub fn match_df_and_config(w: &World) -> Result<()> {
    // Figures are per filesystem, so df of the loop mounts brackets them.
    let mounts = [("nodefs", &w.nodefs), ("imagefs", &w.imagefs)];
    let before: Vec<Df> = mounts
        .iter()
        .map(|(_, m)| oracle::df(m))
        .collect::<Result<_>>()?;
    let run = subject::status(w, &subject::node_layout(w), true)?;
    let after: Vec<Df> = mounts
        .iter()
        .map(|(_, m)| oracle::df(m))
        .collect::<Result<_>>()?;
    let status = run.status()?;
    let mut c = Checks::new();
    for (i, (signal, mount)) in mounts.iter().enumerate() {
        let Some(fs) = status
            .filesystems
            .iter()
            .find(|f| f.signal.as_str() == *signal)
        else {
            c.that(false, || format!("filesystems[] has no {signal}"));
            continue;
        };
        // nodefs is the kubelet root's filesystem; imagefs the runtimes'.
        let roots: &[&PathBuf] = if *signal == "nodefs" {
            &[&w.fixtures.kubelet_root]
        } else {
            &[&w.docker_root, &w.containerd_root]
        };
        c.that(
            roots.iter().any(|r| Path::new(&fs.path).starts_with(r)),
            || {
                format!(
                    "{signal} path {} should be (under) one of {roots:?}",
                    fs.path
                )
            },
        );
        let df_cmd = format!("df {} {}", DF_ARGS.join(" "), mount.display());
        check_one(&mut c, signal, fs, &before[i], &after[i], &df_cmd);
        match oracle::df(Path::new(&fs.path)) {
            Ok(df) => c.eq(
                &format!("{signal} mountpoint"),
                &format!("df {} {}", DF_ARGS.join(" "), fs.path),
                df.target,
                fs.mountpoint.clone(),
            ),
            Err(e) => c.error(&format!("{signal} df of its path"), e),
        }
    }
    c.finish(&format!("{}\n{}", run.command, run.describe()))
}

fn check_one(c: &mut Checks, signal: &str, fs: &Filesystem, before: &Df, after: &Df, df_cmd: &str) {
    c.eq(
        &format!("{signal} fstype"),
        df_cmd,
        before.fstype.as_str(),
        fs.fstype.as_str(),
    );
    c.eq(
        &format!("{signal} capacity_bytes"),
        df_cmd,
        before.size,
        fs.capacity_bytes,
    );
    c.eq(
        &format!("{signal} inodes"),
        df_cmd,
        before.itotal,
        fs.inodes,
    );
    let bracket = |what: &str, a: u64, b: u64, actual: u64, c: &mut Checks| {
        c.that((a.min(b)..=a.max(b)).contains(&actual), || {
            format!("{signal} {what}\n    oracle:   {df_cmd} (before and after)\n    expected: {a}..={b}\n    actual:   {actual}")
        });
    };
    bracket(
        "available_bytes",
        before.avail,
        after.avail,
        fs.available_bytes,
        c,
    );
    bracket(
        "inodes_free",
        before.iavail,
        after.iavail,
        fs.inodes_free,
        c,
    );
    let t = thresholds(signal, before);
    c.eq(
        &format!("{signal} threshold_bytes"),
        "kubelet config evictionHard",
        t.bytes,
        fs.threshold_bytes,
    );
    c.eq(
        &format!("{signal} threshold_inodes"),
        "kubelet config evictionHard",
        t.inodes,
        fs.threshold_inodes,
    );
    c.eq(
        &format!("{signal} bytes_left"),
        "available_bytes - threshold_bytes",
        i128::from(fs.available_bytes) - i128::from(fs.threshold_bytes),
        i128::from(fs.bytes_left),
    );
    c.eq(
        &format!("{signal} inodes_left"),
        "inodes_free - threshold_inodes",
        i128::from(fs.inodes_free) - i128::from(fs.threshold_inodes),
        i128::from(fs.inodes_left),
    );
}
