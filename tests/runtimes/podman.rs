//! CRI-O's and Podman's store, containers-storage (issue 15), on real
//! Podman: the fixture images base/app1/app2 (app1 and app2 build on
//! base's two layers) pulled from the loopback registry into a private
//! store, and a container that writes 20 MiB. Headroom, pointed at the
//! store's `storage.conf`, must list every image, layer and container
//! Podman lists, with the same IDs and names; measure each layer as GNU du
//! does; agree with Podman's own figures within what their method explains;
//! survive a corrupt `images.json` or `layers.json` (on copies), naming the
//! file; and audit the images as it audits Docker's and containerd's.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, OpenOptions};
use std::path::Path;

use anyhow::{bail, Context, Result};
use headroom::model::{Image, Layer, Status};
use headroom::runtime::RuntimeKind;

use crate::audit::Audit;
use crate::checks::Checks;
use crate::images::APP2_DELETES;
use crate::layers::compare_with_du;
use crate::oracle::{self, path_str};
use crate::podman_store::{
    chain, records, Paths, PodmanContainer, PodmanImage, Store, StoreImage, StoreLayer, SystemDf,
    TarSlack, TreeLayer, CONTAINERS_JSON, IMAGES_JSON, LAYERS_JSON, RUN_FLAGS,
};
use crate::subject::{self, Run};
use crate::World;

/// Exit codes that mean "here is a report" (ok, warning, pressure).
const REPORT_CODES: std::ops::RangeInclusive<i32> = 0..=2;
/// The container's name.
const WRITER: &str = "hr-podman-writer";
/// What it writes into its writable layer.
const WRITES: u64 = 20 << 20;

/// One layer of an image as Podman lists it.
struct Placed {
    /// Its line of `podman image tree` (the c/storage layer ID's first 12
    /// digits, its size).
    tree: TreeLayer,
    /// Its chain ID, from the image's diff IDs (`podman image inspect`):
    /// Headroom keys layers by chain ID (c/storage's own layer IDs are a
    /// digest of the parent's ID, `+` and the diff ID).
    chain: String,
}

/// Podman's view of the store, asked once.
struct Seen {
    images: Vec<PodmanImage>,
    containers: Vec<PodmanContainer>,
    /// Each image's layers, base first, by image ID.
    trees: BTreeMap<String, Vec<Placed>>,
    df: SystemDf,
    /// The store's records.
    layers: Vec<StoreLayer>,
    store_images: Vec<StoreImage>,
}

impl Seen {
    /// How many images hold the layer of chain ID `chain`.
    fn images_holding(&self, chain: &str) -> usize {
        self.trees
            .values()
            .filter(|t| t.iter().any(|x| x.chain == chain))
            .count()
    }

    /// The layer of chain ID `chain`: its tree line and its c/storage ID
    /// (the `layers.json` record whose ID the tree's 12 digits begin).
    fn layer(&self, chain: &str) -> Result<(&TreeLayer, &StoreLayer)> {
        let tree = &self
            .trees
            .values()
            .flatten()
            .find(|x| x.chain == chain)
            .with_context(|| format!("no image Podman lists holds layer {chain}"))?
            .tree;
        let record = self
            .layers
            .iter()
            .find(|r| tree.is(&r.id))
            .with_context(|| format!("layers.json has no layer {}", tree.short_id))?;
        Ok((tree, record))
    }
}

/// Trial: the private Podman store as Podman and du see it, its corrupt
/// copies, and its audit.
pub fn store_matches_podman_and_du(w: &World) -> Result<()> {
    let store = Store::new(&w.dir)?;
    populate(w, &store)?;
    let seen = see(&store)?;
    let run = headroom(w, &store.paths, &["status"])?;
    let mut c = Checks::new();
    c.that(REPORT_CODES.contains(&run.code), || {
        format!("exit code {} should be 0-2", run.code)
    });
    let status = run.status()?;
    c.eq(
        "problems from the Podman store",
        "an intact store",
        Vec::<String>::new(),
        problems_under(&status, &store.paths.graphroot),
    );
    for (what, result) in [
        ("the inventory", inventory(&mut c, &store, &seen, &status)),
        (
            "the layers' bytes",
            layer_bytes(&mut c, &store, &seen, &status),
        ),
        ("the images' bytes", image_bytes(&mut c, &seen, &status)),
        (
            "the writable layer",
            writable(&mut c, &store, &seen, &status),
        ),
        (
            "a corrupt images.json",
            corrupt(&mut c, w, &store, &status, IMAGES_JSON),
        ),
        (
            "a corrupt layers.json",
            corrupt(&mut c, w, &store, &status, LAYERS_JSON),
        ),
        ("the audit", audit(&mut c, w, &store, &status)),
        ("check-pull --runtime crio", check_pull(&mut c, w, &store)),
    ] {
        if let Err(e) = result {
            c.error(what, e);
        }
    }
    c.finish(&format!("{}\n{}", run.command, run.describe()))
}

/// Whether `kind` is the containers-storage runtime.
fn crio(kind: RuntimeKind) -> bool {
    kind == RuntimeKind::Crio
}

/// Pulls the fixture images into the store and runs the writer on app1
/// (left stopped: its writable layer stays).
fn populate(w: &World, store: &Store) -> Result<()> {
    for name in crate::images::IMAGE_NAMES {
        store.podman(&["pull", "-q", "--tls-verify=false", w.fixtures.image(name)])?;
    }
    let script = format!("dd if=/dev/urandom of=/big bs=1M count={}", WRITES >> 20);
    let mut args = vec!["run", "--name", WRITER];
    args.extend(RUN_FLAGS);
    args.extend([w.fixtures.image("app1"), "sh", "-c", script.as_str()]);
    store.podman(&args).map(drop)
}

fn see(store: &Store) -> Result<Seen> {
    let images = store.images()?;
    let trees = images
        .iter()
        .map(|i| Ok((i.id.clone(), placed(store, &i.id)?)))
        .collect::<Result<_>>()?;
    Ok(Seen {
        containers: store.containers()?,
        df: store.system_df()?,
        layers: records(&store.paths.file(LAYERS_JSON))?,
        store_images: records(&store.paths.file(IMAGES_JSON))?,
        images,
        trees,
    })
}

/// The layers of `image`: `podman image tree`'s lines with the chain IDs
/// of `podman image inspect`'s diff IDs.
fn placed(store: &Store, image: &str) -> Result<Vec<Placed>> {
    let tree = store.tree(image)?;
    let chains = oracle::chain_ids(&store.diff_ids(image)?);
    if chains.len() != tree.len() {
        bail!(
            "image {image}: `podman image tree` lists {} layers, `podman image inspect` {}",
            tree.len(),
            chains.len()
        );
    }
    Ok(tree
        .into_iter()
        .zip(chains)
        .map(|(tree, chain)| Placed { tree, chain })
        .collect())
}

/// `headroom FACE --local --json --containers-storage-conf CONF` with the
/// fixture node's layout.
fn headroom(w: &World, paths: &Paths, face: &[&str]) -> Result<Run> {
    let mut args = face.to_vec();
    args.extend([
        "--local",
        "--json",
        "--containers-storage-conf",
        path_str(&paths.conf)?,
    ]);
    subject::headroom(w, &subject::node_layout(w), &args)
}

fn problems_under(status: &Status, root: &Path) -> Vec<String> {
    let root = root.display().to_string();
    status
        .problems
        .iter()
        .filter(|p| p.source.starts_with(&root))
        .map(|p| format!("{}: {}", p.source, p.message))
        .collect()
}

fn crio_image<'a>(status: &'a Status, id: &str) -> Option<&'a Image> {
    let id = format!("sha256:{id}");
    status.images.iter().find(|i| crio(i.runtime) && i.id == id)
}

fn crio_layers(status: &Status) -> Vec<&Layer> {
    status.layers.iter().filter(|l| crio(l.runtime)).collect()
}

/// Every image, layer and container Podman lists is reported with the same
/// IDs and names, and nothing more.
fn inventory(c: &mut Checks, store: &Store, seen: &Seen, status: &Status) -> Result<()> {
    let ids = |mut v: Vec<String>| {
        v.sort();
        v
    };
    c.eq(
        "Podman's image IDs",
        "podman images --format json",
        ids(seen
            .images
            .iter()
            .map(|i| format!("sha256:{}", i.id))
            .collect()),
        ids(status
            .images
            .iter()
            .filter(|i| crio(i.runtime))
            .map(|i| i.id.clone())
            .collect()),
    );
    for image in &seen.images {
        let Some(reported) = crio_image(status, &image.id) else {
            continue;
        };
        for name in image.names.iter().flatten() {
            c.that(reported.refs.contains(name), || {
                format!(
                    "image {} should be named {name}: {:?}",
                    image.id, reported.refs
                )
            });
        }
        let placed = seen.trees.get(&image.id).map_or(&[][..], Vec::as_slice);
        c.eq(
            &format!("layers of image {} (chain IDs, base first)", image.id),
            &format!("podman image inspect {} (RootFS.Layers)", image.id),
            placed.iter().map(|l| l.chain.clone()).collect::<Vec<_>>(),
            reported.layers.clone(),
        );
    }
    for row in &seen.df.images {
        c.that(
            status
                .images
                .iter()
                .any(|i| crio(i.runtime) && i.id.starts_with(&format!("sha256:{}", row.short_id))),
            || {
                format!(
                    "`podman system df -v` image {} is not reported",
                    row.short_id
                )
            },
        );
    }
    let container_layers = records::<serde_json::Value>(&store.paths.file(CONTAINERS_JSON))?
        .iter()
        .filter(|x| x["layer"].is_string())
        .count();
    c.eq(
        "how many image layers",
        "layers.json less the containers' layers (containers.json)",
        seen.layers.len() - container_layers,
        crio_layers(status).len(),
    );
    c.eq(
        "image layers",
        "podman image inspect of each image (chain IDs)",
        seen.trees
            .values()
            .flatten()
            .map(|l| l.chain.clone())
            .collect::<BTreeSet<_>>(),
        crio_layers(status).iter().map(|l| l.id.clone()).collect(),
    );
    containers_listed(c, seen, status);
    Ok(())
}

fn containers_listed(c: &mut Checks, seen: &Seen, status: &Status) {
    let reported: Vec<_> = status
        .containers
        .iter()
        .filter(|x| x.runtime.is_some_and(crio))
        .collect();
    c.eq(
        "Podman's containers (id, name)",
        "podman ps -a --format json",
        seen.containers
            .iter()
            .map(|x| (x.id.clone(), x.names.first().cloned().unwrap_or_default()))
            .collect::<BTreeSet<_>>(),
        reported
            .iter()
            .map(|x| (x.id.clone(), x.name.clone()))
            .collect(),
    );
    for x in &seen.containers {
        if let Some(r) = reported.iter().find(|r| r.id == x.id) {
            c.that(r.image == x.image || r.image.ends_with(&x.image_id), || {
                format!(
                    "container {} should name its image {} ({}): {:?}",
                    x.id, x.image, x.image_id, r.image
                )
            });
        }
    }
    for (short, name) in &seen.df.containers {
        c.that(
            reported
                .iter()
                .any(|r| r.id.starts_with(short) && &r.name == name),
            || format!("`podman system df -v` container {short} {name} is not reported"),
        );
    }
}

/// Each layer: its dir, du's three figures, and the store's `diff-size`
/// (Podman's figure, a tar stream's length) within the tar slack of it.
fn layer_bytes(c: &mut Checks, store: &Store, seen: &Seen, status: &Status) -> Result<()> {
    for l in crio_layers(status) {
        let (tree, record) = seen.layer(&l.id)?;
        let dir = store.paths.diff_dir(&record.id);
        c.eq(
            &format!("path of layer {}", l.id),
            "<graphroot>/overlay/<c/storage ID>/diff",
            dir.display().to_string(),
            l.path.clone(),
        );
        compare_with_du(c, &format!("layer {}", l.id), l);
        let slack = TarSlack::of(&dir)?;
        match record.diff_size {
            Some(diff_size) => c.that(slack.admits(diff_size, l.apparent_bytes), || {
                format!(
                    "layer {}: diff-size {diff_size} (layers.json) should be a tar stream of \
                     apparent_bytes {} ({slack:?})",
                    l.id, l.apparent_bytes
                )
            }),
            None => c.that(false, || {
                format!("layers.json has no diff-size for {}", l.id)
            }),
        }
        // `podman image tree` prints diff-size, humanized.
        c.near(
            &format!("layer {}: Podman's Size", l.id),
            "podman image tree",
            tree.size.bytes,
            l.apparent_bytes as f64,
            tree.size.tolerance + slack.widest(),
        );
        c.eq(
            &format!("layer {}: images", l.id),
            "podman image inspect of each image",
            seen.images_holding(&l.id) as u64,
            l.images,
        );
    }
    Ok(())
}

/// Each image: Podman's exact SIZE explained by the store's records, its
/// unique and shared disk bytes from du of its layers (shared: in another
/// image's tree), and Podman's SHARED/UNIQUE SIZE within the explained
/// slack.
fn image_bytes(c: &mut Checks, seen: &Seen, status: &Status) -> Result<()> {
    let max_big_data = seen.store_images.iter().map(StoreImage::big_data).max();
    for image in &seen.images {
        let Some(reported) = crio_image(status, &image.id) else {
            continue;
        };
        let record = seen
            .store_images
            .iter()
            .find(|r| r.id == image.id)
            .with_context(|| format!("images.json has no image {}", image.id))?;
        let layers = chain(&seen.layers, &record.layer)?;
        // Podman's SIZE is its layers' diff-size plus its big-data items
        // (manifest, config, signatures): exactly, or the explanation is wrong.
        let diff_sizes: u64 = layers.iter().filter_map(|l| l.diff_size).sum();
        c.eq(
            &format!("image {}: Podman's SIZE", image.id),
            "Σ diff-size (layers.json) + Σ big-data-sizes (images.json)",
            diff_sizes + record.big_data(),
            image.size,
        );
        let mut parts = Parts::default();
        for l in seen.trees.get(&image.id).into_iter().flatten() {
            parts.add(seen, status, &l.chain)?;
        }
        c.eq(
            &format!("image {}: unique_disk_bytes", image.id),
            "du -B1 of its layers in no other image (podman image inspect)",
            parts.unique_disk,
            reported.unique_disk_bytes,
        );
        c.eq(
            &format!("image {}: shared_disk_bytes", image.id),
            "du -B1 of its layers in another image (podman image inspect)",
            parts.shared_disk,
            reported.shared_disk_bytes,
        );
        let big_data = record.big_data() + max_big_data.unwrap_or(0);
        podman_df(c, seen, image, reported, &parts, big_data);
    }
    Ok(())
}

/// du figures and tar slack of an image's layers, unique and shared.
#[derive(Debug, Default)]
struct Parts {
    unique_disk: u64,
    shared_disk: u64,
    unique_slack: TarSlack,
    shared_slack: TarSlack,
}

impl Parts {
    fn add(&mut self, seen: &Seen, status: &Status, chain: &str) -> Result<()> {
        let layer = crio_layers(status)
            .into_iter()
            .find(|l| l.id == chain)
            .with_context(|| format!("layer {chain} is not reported"))?;
        let slack = TarSlack::of(Path::new(&layer.path))?;
        let disk = oracle::du(Path::new(&layer.path))?.disk;
        if seen.images_holding(chain) > 1 {
            self.shared_disk += disk;
            self.shared_slack = self.shared_slack.add(slack);
        } else {
            self.unique_disk += disk;
            self.unique_slack = self.unique_slack.add(slack);
        }
        Ok(())
    }
}

/// Podman's SHARED SIZE is its parent image's SIZE (the image whose layers
/// this one extends), or its own when another image extends it; UNIQUE is
/// the rest. With base under app1 and app2 that is Headroom's split (shared:
/// the layers another image uses) but for the figures' method: a tar
/// stream's length against st_size ([`TarSlack`]), and big-data items (this
/// image's and its parent's) that are no layer.
fn podman_df(
    c: &mut Checks,
    seen: &Seen,
    image: &PodmanImage,
    reported: &Image,
    parts: &Parts,
    big_data: u64,
) {
    let Some(row) = seen
        .df
        .images
        .iter()
        .find(|r| image.id.starts_with(&r.short_id))
    else {
        return c.that(false, || {
            format!("`podman system df -v` has no row for {}", image.id)
        });
    };
    for (what, podman, headroom, slack) in [
        (
            "SHARED",
            row.shared,
            reported.shared_apparent_bytes,
            parts.shared_slack,
        ),
        (
            "UNIQUE",
            row.unique,
            reported.unique_apparent_bytes,
            parts.unique_slack,
        ),
    ] {
        c.near(
            &format!("image {}: {what} SIZE", image.id),
            "podman system df -v",
            podman.bytes,
            headroom as f64,
            podman.tolerance + slack.widest() + big_data as f64,
        );
    }
}

/// The writer's writable layer: Podman's dir, du's figures, at least what
/// it wrote, and `ps --size`'s rwSize (st_size of its non-directories).
fn writable(c: &mut Checks, store: &Store, seen: &Seen, status: &Status) -> Result<()> {
    let x = seen
        .containers
        .iter()
        .find(|x| x.names.iter().any(|n| n == WRITER))
        .context("podman ps does not list the writer")?;
    let upper = store.upper_dir(WRITER)?;
    let reported = status
        .containers
        .iter()
        .find(|r| r.runtime.is_some_and(crio) && r.id == x.id)
        .with_context(|| format!("container {WRITER} ({}) is not reported", x.id))?;
    c.eq(
        "writer: writable_path",
        "podman inspect .GraphDriver.Data.UpperDir",
        Some(upper.display().to_string()),
        reported.writable_path.clone(),
    );
    let du = oracle::du(&upper)?;
    let upper_str = path_str(&upper)?;
    c.eq(
        "writer: writable_disk_bytes",
        &format!("du -s -B1 {upper_str}"),
        du.disk,
        reported.writable_disk_bytes,
    );
    c.eq(
        "writer: writable_apparent_bytes",
        &format!("du -s -B1 --apparent-size {upper_str}"),
        du.apparent,
        reported.writable_apparent_bytes,
    );
    c.that(reported.writable_disk_bytes >= WRITES, || {
        format!(
            "writer wrote {WRITES} bytes: writable_disk_bytes {}",
            reported.writable_disk_bytes
        )
    });
    let dirs = oracle::dir_sizes(&upper)?;
    c.eq(
        "writer: writable_apparent_bytes less its directories' st_size",
        "podman ps -a --size: rwSize",
        x.size.map(|s| s.rw_size),
        reported.writable_apparent_bytes.checked_sub(dirs),
    );
    Ok(())
}

/// A copy of the store with `rel` cut in half: a problem whose source is
/// that file, and the rest of the store still reported.
fn corrupt(c: &mut Checks, w: &World, store: &Store, good: &Status, rel: &str) -> Result<()> {
    let copy = store.copy(&rel.replace(['/', '.'], "-"))?;
    let file = copy.file(rel);
    let len = fs::metadata(&file)?.len();
    OpenOptions::new()
        .write(true)
        .open(&file)
        .and_then(|f| f.set_len(len / 2))
        .with_context(|| format!("truncating {}", file.display()))?;
    let run = headroom(w, &copy, &["status"])?;
    c.that(REPORT_CODES.contains(&run.code), || {
        format!("{rel} corrupt: exit code {} should be 0-2", run.code)
    });
    let status = run.status()?;
    let source = file.display().to_string();
    c.that(
        status.problems.iter().any(|p| p.source.ends_with(&source)),
        || {
            format!(
                "{rel} corrupt: a problem's source should be {source}: {:?}",
                status.problems
            )
        },
    );
    let kept = |of: &Status| -> Vec<String> {
        let mut ids: Vec<String> = match rel {
            IMAGES_JSON => crio_layers(of).iter().map(|l| l.id.clone()).collect(),
            _ => of
                .images
                .iter()
                .filter(|i| crio(i.runtime))
                .map(|i| i.id.clone())
                .collect(),
        };
        ids.extend(
            of.containers
                .iter()
                .filter(|x| x.runtime.is_some_and(crio))
                .map(|x| x.id.clone()),
        );
        ids.sort();
        ids
    };
    c.eq(
        &format!("{rel} corrupt: what it does not hold (layers or images, and containers)"),
        "the report on the intact store",
        kept(good),
        kept(&status),
    );
    Ok(())
}

/// `check-pull --runtime crio` of an image the store holds: every layer is
/// found present (keyed by chain ID, as containerd's), nothing to pull.
fn check_pull(c: &mut Checks, w: &World, store: &Store) -> Result<()> {
    let reference = w.fixtures.image("app1");
    let conf = path_str(&store.paths.conf)?;
    let args = [
        "check-pull",
        reference,
        "--runtime",
        "crio",
        "--plain-http",
        "--json",
        "--containers-storage-conf",
        conf,
    ];
    let run = subject::headroom(w, &subject::node_layout(w), &args)?;
    let doc = crate::check_pull::document(&run)?;
    c.that(REPORT_CODES.contains(&run.code), || {
        format!("check-pull: exit code {} should be 0-2", run.code)
    });
    c.eq(
        "check-pull: runtime",
        "--runtime crio",
        Some("crio"),
        doc["runtime"].as_str(),
    );
    c.eq(
        "check-pull: image_present",
        "podman pulled it",
        Some(true),
        doc["image_present"].as_bool(),
    );
    c.eq(
        "check-pull: total_bytes",
        "nothing to pull",
        Some(0),
        doc["total_bytes"].as_u64(),
    );
    let (layers, present) = crate::check_pull::planned(&doc);
    c.that(!layers.is_empty() && present.iter().all(|p| *p), || {
        format!("check-pull: every layer of {reference} present: {present:?}")
    });
    Ok(())
}

/// `audit --local --json` covers the store's images: app2 hides base's
/// [`APP2_DELETES`] file, whose disk bytes are du's of it in base's layer.
fn audit(c: &mut Checks, w: &World, store: &Store, status: &Status) -> Result<()> {
    let run = headroom(w, &store.paths, &["audit"])?;
    c.eq("audit: exit code", "a node audited", 0, run.code);
    let doc: Audit = serde_json::from_str(&run.stdout).with_context(|| {
        format!(
            "`{}` printed no audit document\n{}",
            run.command,
            run.describe()
        )
    })?;
    for name in crate::images::IMAGE_NAMES {
        let reference = w.fixtures.image(name);
        let Some(audited) = doc
            .images
            .iter()
            .find(|i| crio(i.runtime) && i.refs.iter().any(|r| r == reference))
        else {
            c.that(false, || format!("audit: no crio image named {reference}"));
            continue;
        };
        let hidden = audited.kinds.hidden;
        let (files, bytes, disk) = if name == "app2" {
            let base = status
                .images
                .iter()
                .find(|i| crio(i.runtime) && i.refs.iter().any(|r| r == reference))
                .and_then(|i| i.layers.get(1))
                .and_then(|id| crio_layers(status).into_iter().find(|l| &l.id == id))
                .context("app2's second layer is not reported")?;
            let copy = Path::new(&base.path).join(APP2_DELETES.0);
            (1, APP2_DELETES.1, oracle::du_files_disk(&[copy.as_path()])?)
        } else {
            (0, 0, 0)
        };
        c.eq(
            &format!("audit: {name}'s hidden (files, bytes, disk_bytes)"),
            "what app2 deletes of base; du -B1 of it",
            (files, bytes, disk),
            (hidden.files, hidden.bytes, hidden.disk_bytes),
        );
    }
    Ok(())
}
