//! Docker images and containers against `docker system df -v`.
//!
//! Docker's figures are apparent bytes (st_size, hard links once) that leave
//! directories out, printed in decimal units rounded to 3 (SIZE) or 4
//! (SHARED/UNIQUE) significant digits. Headroom's apparent bytes count
//! directories like `du --apparent-size`, so each comparison subtracts the
//! directories' st_size (from `find`) and allows exactly Docker's rounding.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use headroom::model::{Image, Status};
use headroom::runtime::RuntimeKind;
use serde_json::Value;

use crate::checks::Checks;
use crate::layers::docker_layer_dirs;
use crate::oracle::{self, parse_humanized, Humanized};
use crate::World;

const DF: &str = "docker system df -v --format '{{json .}}'";

/// One fixture image as Docker's own files describe it.
struct DockerImage {
    reference: String,
    id: String,
    /// Chain IDs, base first (from imagedb config diff_ids).
    chains: Vec<String>,
}

/// The fixture images: ID from `docker inspect`, layers from the imagedb config.
fn docker_images(w: &World) -> Result<Vec<DockerImage>> {
    let mut images = Vec::new();
    for (_, reference) in &w.fixtures.images {
        let id = w
            .docker(&["image", "inspect", "-f", "{{.Id}}", reference])?
            .trim()
            .to_owned();
        let hex = id.trim_start_matches("sha256:");
        let path = w
            .docker_root
            .join("image/overlay2/imagedb/content/sha256")
            .join(hex);
        let config: Value = serde_json::from_slice(
            &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
        )?;
        images.push(DockerImage {
            reference: reference.clone(),
            id,
            chains: oracle::chain_ids(&oracle::diff_ids(&config)?),
        });
    }
    Ok(images)
}

/// `docker system df -v` as JSON.
fn system_df(w: &World) -> Result<Value> {
    let out = w.docker(&["system", "df", "-v", "--format", "{{json .}}"])?;
    serde_json::from_str(&out).with_context(|| format!("{DF} printed {out}"))
}

/// A humanized field of a `docker system df` row.
fn field(row: &Value, key: &str, precision: i32) -> Result<Humanized> {
    parse_humanized(
        row[key]
            .as_str()
            .with_context(|| format!("no {key} in {row}"))?,
        precision,
    )
}

/// Trial 3a: per image size/shared/unique vs Docker, layer lists, sharing.
pub fn images_match_system_df(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let images = docker_images(w)?;
    let df = system_df(w)?;
    let dirs: BTreeMap<String, PathBuf> = docker_layer_dirs(&w.docker_root)?.into_iter().collect();
    let mut users: BTreeMap<&str, usize> = BTreeMap::new();
    for img in &images {
        for chain in &img.chains {
            *users.entry(chain.as_str()).or_default() += 1;
        }
    }
    let mut c = Checks::new();
    let base = &images[0];
    for img in &images {
        let Some(rep) = status
            .images
            .iter()
            .find(|i| i.runtime == RuntimeKind::Docker && i.id == img.id)
        else {
            c.that(false, || {
                format!(
                    "Docker image {} ({}) is not reported",
                    img.id, img.reference
                )
            });
            continue;
        };
        let what = format!("Docker image {}", img.reference);
        c.that(rep.refs.contains(&img.reference), || {
            format!("{what}: refs {:?} should include its tag", rep.refs)
        });
        c.eq(
            &format!("{what} layers"),
            "imagedb config rootfs.diff_ids → chain IDs",
            &img.chains,
            &rep.layers,
        );
        c.that(base.chains.iter().all(|b| img.chains.contains(b)), || {
            format!("{what} should be built on base's layers {:?}", base.chains)
        });
        c.that(rep.shared_disk_bytes > 0, || {
            format!("{what}: shared_disk_bytes should be > 0 (base is shared)")
        });
        check_sums(&mut c, &what, rep, &status);

        let Some(row) = df["Images"].as_array().and_then(|rows| {
            rows.iter()
                .find(|r| r["ID"].as_str() == Some(img.id.as_str()))
        }) else {
            c.that(false, || format!("{DF} has no row for {}", img.id));
            continue;
        };
        let dir_bytes = |shared: bool| -> Result<u64> {
            img.chains
                .iter()
                .filter(|ch| (users[ch.as_str()] > 1) == shared)
                .map(|ch| {
                    oracle::dir_sizes(
                        dirs.get(ch)
                            .map(PathBuf::as_path)
                            .unwrap_or(Path::new("/nonexistent")),
                    )
                })
                .sum()
        };
        let (shared_dirs, unique_dirs) = (dir_bytes(true)?, dir_bytes(false)?);
        for (label, key, precision, reported, dirs) in [
            (
                "apparent_bytes",
                "Size",
                3,
                rep.apparent_bytes,
                shared_dirs + unique_dirs,
            ),
            (
                "shared_apparent_bytes",
                "SharedSize",
                4,
                rep.shared_apparent_bytes,
                shared_dirs,
            ),
            (
                "unique_apparent_bytes",
                "UniqueSize",
                4,
                rep.unique_apparent_bytes,
                unique_dirs,
            ),
        ] {
            let h = field(row, key, precision)?;
            c.near(
                &format!("{what} {label} minus {dirs} bytes of directories"),
                &format!("{DF} → {key} {:?}", row[key]),
                h.bytes,
                reported as f64 - dirs as f64,
                h.tolerance,
            );
        }
        let containers: u64 = row["Containers"]
            .as_str()
            .unwrap_or("")
            .parse()
            .unwrap_or(u64::MAX);
        c.eq(
            &format!("{what} containers"),
            DF,
            containers,
            rep.containers,
        );
    }
    check_layer_size_files(&mut c, w, &status, &dirs);
    c.finish(&run.command)
}

/// disk = Σ its layers' disk = unique + shared (and the same for apparent).
pub fn check_sums(c: &mut Checks, what: &str, rep: &Image, status: &Status) {
    let layers: Vec<_> =
        rep.layers
            .iter()
            .filter_map(|id| {
                status.layers.iter().find(|l| {
                    l.runtime == rep.runtime && l.namespace == rep.namespace && &l.id == id
                })
            })
            .collect();
    c.eq(
        &format!("{what}: layers found in layers[]"),
        "its layer list",
        rep.layers.len(),
        layers.len(),
    );
    let disk: u64 = layers.iter().map(|l| l.disk_bytes).sum();
    let apparent: u64 = layers.iter().map(|l| l.apparent_bytes).sum();
    c.eq(
        &format!("{what} disk_bytes"),
        "Σ layers[].disk_bytes",
        disk,
        rep.disk_bytes,
    );
    c.eq(
        &format!("{what} disk_bytes"),
        "unique + shared",
        rep.unique_disk_bytes + rep.shared_disk_bytes,
        rep.disk_bytes,
    );
    c.eq(
        &format!("{what} apparent_bytes"),
        "Σ layers[].apparent_bytes",
        apparent,
        rep.apparent_bytes,
    );
    c.eq(
        &format!("{what} apparent_bytes"),
        "unique + shared",
        rep.unique_apparent_bytes + rep.shared_apparent_bytes,
        rep.apparent_bytes,
    );
}

/// Exact per layer: apparent bytes = Docker's `layerdb/…/size` file (its
/// st_size sum without directories) + the directories' st_size.
fn check_layer_size_files(
    c: &mut Checks,
    w: &World,
    status: &Status,
    dirs: &BTreeMap<String, PathBuf>,
) {
    for (chain, dir) in dirs {
        let size_file = w
            .docker_root
            .join("image/overlay2/layerdb/sha256")
            .join(chain.trim_start_matches("sha256:"))
            .join("size");
        let expected = fs::read_to_string(&size_file)
            .map_err(anyhow::Error::from)
            .and_then(|s| oracle::parse_u64(&s))
            .and_then(|size| Ok(size + oracle::dir_sizes(dir)?));
        let Some(l) = status
            .layers
            .iter()
            .find(|l| l.runtime == RuntimeKind::Docker && &l.id == chain)
        else {
            continue; // Missing layers are the layers trial's finding.
        };
        match expected {
            Ok(expected) => c.eq(
                &format!("Docker layer {chain} apparent_bytes"),
                &format!(
                    "cat {} + find {} -type d -printf %s",
                    size_file.display(),
                    dir.display()
                ),
                expected,
                l.apparent_bytes,
            ),
            Err(e) => c.error(&format!("Docker layer {chain}"), e),
        }
    }
}

/// Trial 3b: each container's SIZE vs writable_apparent_bytes.
pub fn containers_match_system_df(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let df = system_df(w)?;
    let mut c = Checks::new();
    for ctr in &w.fixtures.docker {
        let what = format!("Docker container {}", ctr.name);
        let Some(rep) = status
            .containers
            .iter()
            .find(|x| x.runtime_name() == "docker" && x.id == ctr.id)
        else {
            c.that(false, || format!("{what} ({}) is not reported", ctr.id));
            continue;
        };
        let Some(row) = df["Containers"].as_array().and_then(|rows| {
            rows.iter()
                .find(|r| r["ID"].as_str() == Some(ctr.id.as_str()))
        }) else {
            c.that(false, || format!("{DF} has no row for {}", ctr.id));
            continue;
        };
        let upper = w.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &ctr.id])?;
        let dirs = oracle::dir_sizes(Path::new(upper.trim()))?;
        let h = field(row, "Size", 3)?;
        c.near(
            &format!("{what} writable_apparent_bytes minus {dirs} bytes of directories"),
            &format!("{DF} → Size {:?}", row["Size"]),
            h.bytes,
            rep.writable_apparent_bytes as f64 - dirs as f64,
            h.tolerance,
        );
    }
    c.finish(&run.command)
}
