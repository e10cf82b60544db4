//! Image attribution under containerd (against its content store and
//! snapshot usage) and what image GC could reclaim.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use headroom::model::Image;
use headroom::runtime::RuntimeKind;
use serde_json::Value;

use crate::checks::Checks;
use crate::docker_df::check_sums;
use crate::images::K8S_NS;
use crate::oracle;
use crate::World;

/// One fixture image as containerd's content store describes it.
struct CtrImage {
    reference: String,
    /// `sha256:<config digest>`.
    id: String,
    chains: Vec<String>,
    /// Manifest, config and compressed layers (and the index, if any).
    blobs: Vec<String>,
}

fn content(w: &World, digest: &str) -> Result<Value> {
    let raw = oracle::ctr(&w.containerd_sock, K8S_NS, &["content", "get", digest])?;
    serde_json::from_str(&raw).with_context(|| format!("blob {digest} is not JSON"))
}

fn ctr_images(w: &World) -> Result<Vec<CtrImage>> {
    let listing = oracle::ctr(&w.containerd_sock, K8S_NS, &["images", "ls"])?;
    let mut images = Vec::new();
    for (_, reference) in &w.fixtures.images {
        let target = listing
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.first() == Some(&reference.as_str())).then(|| f.get(2).map(|d| d.to_string()))
            })
            .flatten()
            .with_context(|| format!("`ctr -n k8s.io images ls` has no {reference}: {listing}"))?;
        let mut blobs = vec![target.clone()];
        let mut manifest = content(w, &target)?;
        if let Some(first) = manifest["manifests"].as_array().and_then(|m| m.first()) {
            let digest = first["digest"]
                .as_str()
                .context("index entry without digest")?
                .to_owned();
            manifest = content(w, &digest)?;
            blobs.push(digest);
        }
        let config = manifest["config"]["digest"]
            .as_str()
            .context("manifest without config")?
            .to_owned();
        for layer in manifest["layers"]
            .as_array()
            .context("manifest without layers")?
        {
            blobs.push(
                layer["digest"]
                    .as_str()
                    .context("layer without digest")?
                    .to_owned(),
            );
        }
        let chains = oracle::chain_ids(&oracle::diff_ids(&content(w, &config)?)?);
        blobs.push(config.clone());
        images.push(CtrImage {
            reference: reference.clone(),
            id: config,
            chains,
            blobs,
        });
    }
    Ok(images)
}

/// How many of `images` use each item `items(image)` yields.
fn users<'a>(
    images: &'a [CtrImage],
    items: impl Fn(&'a CtrImage) -> &'a [String],
) -> BTreeMap<&'a str, usize> {
    let mut users = BTreeMap::new();
    for img in images {
        for item in items(img) {
            *users.entry(item.as_str()).or_default() += 1;
        }
    }
    users
}

/// containerd images: layers, unique/shared disk (ctr snapshots usage) and
/// content bytes (du of the blob files), all from containerd's own records.
pub fn containerd_images_match_content_store(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let images = ctr_images(w)?;
    let usage = oracle::ctr_usage(&w.containerd_sock, K8S_NS)?;
    let blob_dir = w
        .containerd_root
        .join("io.containerd.content.v1.content/blobs/sha256");
    let layer_users = users(&images, |i| &i.chains);
    let blob_users = users(&images, |i| &i.blobs);
    let mut blob_disk = BTreeMap::new();
    for digest in blob_users.keys() {
        let path = blob_dir.join(digest.trim_start_matches("sha256:"));
        blob_disk.insert(*digest, oracle::du_files_disk(&[path.as_path()])?);
    }
    let mut c = Checks::new();
    for img in &images {
        let what = format!("containerd image {}", img.reference);
        let Some(rep) = status.images.iter().find(|i| {
            i.runtime == RuntimeKind::Containerd && i.namespace == K8S_NS && i.id == img.id
        }) else {
            c.that(false, || format!("{what} ({}) is not reported", img.id));
            continue;
        };
        c.that(rep.refs.contains(&img.reference), || {
            format!("{what}: refs {:?} should include its tag", rep.refs)
        });
        c.eq(
            &format!("{what} layers"),
            "ctr content get <config> → diff_ids → chain IDs",
            &img.chains,
            &rep.layers,
        );
        let disk = |shared: bool| -> u64 {
            img.chains
                .iter()
                .filter(|ch| (layer_users[ch.as_str()] > 1) == shared)
                .map(|ch| usage.get(ch).map_or(0, |u| u.0))
                .sum()
        };
        let usage_cmd = "ctr -n k8s.io snapshots usage -b";
        c.eq(
            &format!("{what} unique_disk_bytes"),
            usage_cmd,
            disk(false),
            rep.unique_disk_bytes,
        );
        c.eq(
            &format!("{what} shared_disk_bytes"),
            usage_cmd,
            disk(true),
            rep.shared_disk_bytes,
        );
        c.that(rep.shared_disk_bytes > 0, || {
            format!("{what}: shared_disk_bytes should be > 0 (base is shared)")
        });
        let content_bytes = |unique_only: bool| -> u64 {
            img.blobs
                .iter()
                .filter(|b| !unique_only || blob_users[b.as_str()] == 1)
                .map(|b| blob_disk[b.as_str()])
                .sum()
        };
        let du_cmd = format!("du -B1 {}/<manifest, config, layers>", blob_dir.display());
        c.eq(
            &format!("{what} content_bytes"),
            &du_cmd,
            content_bytes(false),
            rep.content_bytes,
        );
        c.eq(
            &format!("{what} unique_content_bytes"),
            &du_cmd,
            content_bytes(true),
            rep.unique_content_bytes,
        );
        check_sums(&mut c, &what, rep, &status);
    }
    c.finish(&run.command)
}

/// How many fixture containers use a reported image (by its refs).
fn expected_containers(w: &World, image: &Image) -> u64 {
    let uses = |reference: &str| image.refs.iter().any(|r| r == reference);
    match image.runtime {
        RuntimeKind::Docker => w.fixtures.docker.iter().filter(|c| uses(&c.image)).count() as u64,
        RuntimeKind::Containerd => {
            u64::from(image.namespace == K8S_NS && uses(&w.fixtures.cri.image))
        }
        // The fixture node has no CRI-O store (the Podman trial makes its own).
        RuntimeKind::Crio => 0,
    }
}

/// Trial 5: in_use/containers per image from the containers we ran, and
/// reclaimable_bytes = Σ unique disk + unique content of unused images.
pub fn reclaimable(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let mut c = Checks::new();
    let mut expected = 0u64;
    let mut unused = Vec::new();
    for img in &status.images {
        let n = expected_containers(w, img);
        let what = format!("{:?} image {:?}", img.runtime, img.refs);
        c.eq(
            &format!("{what} containers"),
            "containers this test ran",
            n,
            img.containers,
        );
        c.eq(
            &format!("{what} in_use"),
            "containers this test ran",
            n > 0,
            img.in_use,
        );
        if n == 0 {
            expected += img.unique_disk_bytes + img.unique_content_bytes;
            unused.push(what);
        }
    }
    let fixture_images = 2 * w.fixtures.images.len();
    c.eq(
        "images reported",
        "3 fixture images × 2 runtimes",
        fixture_images,
        status.images.len(),
    );
    c.eq(
        "reclaimable_bytes",
        &format!("Σ unique_disk_bytes + unique_content_bytes of unused images {unused:?}"),
        expected,
        status.reclaimable_bytes,
    );
    c.that(status.reclaimable_bytes > 0, || {
        "app2 (Docker) is unused: something is reclaimable".to_owned()
    });
    c.finish(&run.command)
}
