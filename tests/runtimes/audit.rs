//! `headroom audit` on real containerd and dockerd (issue 14): images built
//! to waste in one way each ([`crate::waste`]) are pulled into both
//! runtimes, and every figure of the audit is checked against what was
//! written (sizes, counts) and against GNU `du -B1` of the wasted copies in
//! the layer dirs on disk; the node's duplicates against `sha256sum` of the
//! big files of every layer; one image against dive's method. An agent on
//! the shipped defaults then audits the same node, paced, to the same
//! document.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use std::time::Duration;

use anyhow::{bail, Context, Result};
use headroom::model::Status;
use headroom::runtime::RuntimeKind;
use serde::Deserialize;

use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle::{self, path_str};
use crate::subject::{self, Run};
use crate::waste::{self, Copy, Kind, Wasteful};
use crate::{agent, pulls, web, World};

/// The runtimes each image is pulled into, with the namespace it is in.
const RUNTIMES: [(RuntimeKind, &str); 2] =
    [(RuntimeKind::Docker, ""), (RuntimeKind::Containerd, K8S_NS)];
/// The exit code of `audit` when an IMAGE named matches none.
const NOT_FOUND: i32 = 4;
/// At most this many `top_paths` per image.
const TOP_PATHS: usize = 10;

/// A figure of the audit document.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct Figure {
    /// How many files.
    pub files: u64,
    /// Their apparent bytes.
    pub bytes: u64,
    /// Their allocated bytes.
    pub disk_bytes: u64,
}

/// The figures by kind, of one image or of the node.
#[derive(Debug, Deserialize)]
pub struct Kinds {
    /// Files a later layer deletes.
    pub hidden: Figure,
    overwritten: Figure,
    metadata_only: Figure,
    caches: BTreeMap<String, Figure>,
    duplicate: Figure,
}

impl Kinds {
    /// The figure of `kind` (zero for a cache kind absent).
    fn of(&self, kind: Kind) -> Figure {
        match kind {
            Kind::Hidden => self.hidden,
            Kind::Overwritten => self.overwritten,
            Kind::MetadataOnly => self.metadata_only,
            Kind::Cache(k) => self.caches.get(k).copied().unwrap_or_default(),
            Kind::Duplicate => self.duplicate,
        }
    }
}

/// The audit document, the parts the trial reads.
#[derive(Debug, Deserialize)]
pub struct Audit {
    schema: u64,
    complete: bool,
    /// Each image audited.
    pub images: Vec<Audited>,
    node_totals: Totals,
    duplicates: Vec<Duplicate>,
    problems: Vec<serde_json::Value>,
}

/// One audited image.
#[derive(Debug, Deserialize)]
pub struct Audited {
    /// The runtime keeping it.
    pub runtime: RuntimeKind,
    namespace: String,
    /// Its names.
    pub refs: Vec<String>,
    layers: usize,
    wasted_bytes: u64,
    /// Its figures by kind.
    #[serde(flatten)]
    pub kinds: Kinds,
    top_paths: Vec<TopPath>,
}

/// One of an image's biggest wasted copies.
#[derive(Debug, Deserialize)]
struct TopPath {
    path: String,
    kind: String,
    layer: usize,
    bytes: u64,
}

/// The node's figures, a layer shared by images counted once.
#[derive(Debug, Deserialize)]
struct Totals {
    #[serde(flatten)]
    kinds: Kinds,
    wasted_bytes: u64,
}

/// Identical content in several layers.
#[derive(Debug, Deserialize)]
struct Duplicate {
    bytes: u64,
    saving_bytes: u64,
    sha256: String,
    copies: Vec<DuplicateCopy>,
}

/// One layer's copy of a duplicated content.
#[derive(Debug, Deserialize)]
struct DuplicateCopy {
    layer_dir: String,
    path: String,
}

/// An image as pulled into one runtime: its layer dirs, base first.
struct Pulled<'a> {
    image: &'a Wasteful,
    runtime: RuntimeKind,
    namespace: &'static str,
    dirs: Vec<PathBuf>,
}

/// Trial: each kind of waste found in both runtimes with its exact size,
/// disk bytes as `du -B1` measures the wasted copies, nothing in the images
/// that waste nothing, the node's totals and duplicates; the screen names
/// the image and its hidden bytes; an unknown image exits 4.
pub fn finds_each_kind_of_waste(w: &World) -> Result<()> {
    // Built and pushed before the node is held: nothing on it changes yet.
    let built = waste::build(w)?;
    let _node = w.changing();
    let refs: Vec<String> = built.iter().map(|i| i.reference.clone()).collect();
    let _undo = pulls::Undo::new(w, refs.clone())?;
    for reference in &refs {
        crate::images::pull_into_both(&w.containerd_sock, &w.docker_host, reference)?;
    }
    let mut all = waste::fixture_images(w)?;
    all.extend(built);
    let status = subject::status(w, &subject::node_layout(w), true)?.status()?;
    let pulled = pulled(w, &status, &all)?;
    let mut c = Checks::new();
    fixture_is_as_built(&mut c, &pulled);
    let run = audit(w, &["--local", "--json"])?;
    match serde_json::from_str::<Audit>(&run.stdout) {
        Ok(doc) => judge(&mut c, w, &doc, &run, &pulled),
        Err(e) => c.error("the audit document", e.into()),
    }
    if let Err(e) = agent_agrees(&mut c, w, &run.stdout) {
        c.error("the agent's audit", e);
    }
    c.finish(&format!("{}\n{}", run.command, run.describe()))
}

/// How long the agent may take to audit the node at its CPU share.
const AGENT_AUDITS_WITHIN: Duration = Duration::from_secs(180);

/// An agent on the shipped defaults (its CPU share, its pass budget), once
/// its audit is complete, serves at `/api/v1/audit` the document `audit
/// --local` printed (`local`), but for when it was made; and its status
/// document's `audit` carries the same node totals.
fn agent_agrees(c: &mut Checks, w: &World, local: &str) -> Result<()> {
    let local: serde_json::Value = serde_json::from_str(local)?;
    let (_agent, addr) = agent::short_lived(w, "audit-agent", agent::Paths::of_world(w))?;
    let served: serde_json::Value = agent::poll(AGENT_AUDITS_WITHIN, || {
        let reply = web::get(&addr, "/api/v1/audit")?;
        if reply.code != 200 {
            bail!("GET /api/v1/audit: HTTP {}", reply.code);
        }
        let doc: serde_json::Value = serde_json::from_str(&reply.body)?;
        if doc["complete"] != true {
            bail!("not complete yet: {} pending", doc["pending"]);
        }
        Ok(doc)
    })?;
    for key in ["images", "pending", "node_totals", "duplicates", "problems"] {
        let same = served[key] == local[key];
        c.eq(
            &format!("the agent's `{key}`"),
            "audit --local's",
            true,
            same,
        );
    }
    let summary = agent::poll(AGENT_AUDITS_WITHIN, || {
        agent::status(&addr)?
            .audit
            .context("no audit in the agent's status yet")
    })?;
    c.eq(
        "the agent's status: audit.wasted_bytes",
        "audit --local's node_totals",
        local["node_totals"]["wasted_bytes"].as_u64(),
        Some(summary.wasted_bytes),
    );
    Ok(())
}

/// Every comparison of the document `doc` (printed by `run`).
fn judge(c: &mut Checks, w: &World, doc: &Audit, run: &Run, pulled: &[Pulled]) {
    c.eq("exit code", "a node audited", 0, run.code);
    c.eq("schema", "the contract", 1, doc.schema);
    c.eq("complete", "--local audits everything", true, doc.complete);
    c.eq("problems", "every layer readable", 0, doc.problems.len());
    for p in pulled {
        image_figures(c, doc, p);
    }
    node_totals(c, doc, pulled);
    if let Err(e) = model_duplicate(c, doc, pulled) {
        c.error("the duplicated model.bin", e);
    }
    if let Err(e) = node_duplicates(c, doc, pulled) {
        c.error("the node's duplicates against sha256sum", e);
    }
    if let Err(e) = against_dive(c, doc, pulled) {
        c.error("dive's method", e);
    }
    if let Err(e) = screen_and_exit_codes(c, w, pulled) {
        c.error("the screen", e);
    }
}

/// `headroom audit ARGS…` with the fixture layout (the shipped defaults).
fn audit(w: &World, args: &[&str]) -> Result<Run> {
    let mut face = vec!["audit"];
    face.extend_from_slice(args);
    subject::headroom(w, &subject::node_layout(w), &face)
}

/// Each image in each runtime with its layer dirs: chain IDs from the
/// image's diff IDs (`docker image inspect`), dirs from the status
/// document's layers (checked against the runtimes by the layers trials).
fn pulled<'a>(w: &World, status: &Status, images: &'a [Wasteful]) -> Result<Vec<Pulled<'a>>> {
    let mut pulled = Vec::new();
    for image in images {
        let out = w.docker(&[
            "image",
            "inspect",
            "-f",
            "{{json .RootFS.Layers}}",
            &image.reference,
        ])?;
        let diff_ids: Vec<String> = serde_json::from_str(out.trim())
            .with_context(|| format!("RootFS.Layers of {}: {out}", image.reference))?;
        let chains = oracle::chain_ids(&diff_ids);
        for (runtime, namespace) in RUNTIMES {
            let dirs = chains
                .iter()
                .map(|chain| layer_dir(status, runtime, namespace, chain))
                .collect::<Result<Vec<_>>>()?;
            pulled.push(Pulled {
                image,
                runtime,
                namespace,
                dirs,
            });
        }
    }
    Ok(pulled)
}

/// The dir of layer `chain` of `runtime` in the status document.
fn layer_dir(
    status: &Status,
    runtime: RuntimeKind,
    namespace: &str,
    chain: &str,
) -> Result<PathBuf> {
    status
        .layers
        .iter()
        .find(|l| l.runtime == runtime && l.namespace == namespace && l.id == chain)
        .map(|l| PathBuf::from(&l.path))
        .with_context(|| format!("no {runtime:?} layer {chain} in the status document"))
}

/// The layers hold what the fixture claims: chowned's top layer the whole
/// tree owned by 1000, overwritten's top layer an opaque dir.
fn fixture_is_as_built(c: &mut Checks, pulled: &[Pulled]) {
    for p in pulled {
        let top = p.dirs.last().map(PathBuf::as_path).unwrap_or(Path::new(""));
        let what = format!("{:?} {}", p.runtime, p.image.reference);
        match p.image.name {
            "chowned" => c.that(chowned_layer_holds_the_tree(top), || {
                format!(
                    "{what}: its top layer {} should hold {} files of {} bytes owned by {}",
                    top.display(),
                    waste::TREE_FILES,
                    waste::TREE_FILE_BYTES,
                    waste::TREE_OWNER
                )
            }),
            "overwritten" => {
                let dir = top.join(waste::OPAQUE_DIR);
                c.eq(
                    &format!("{what}: trusted.overlay.opaque of {}", dir.display()),
                    "getxattr",
                    Some(b"y".to_vec()),
                    opaque(&dir),
                );
            }
            _ => {}
        }
    }
}

/// Whether `top` holds every file of the tree, full size, owned by 1000.
fn chowned_layer_holds_the_tree(top: &Path) -> bool {
    (0..waste::TREE_FILES).all(|i| {
        std::fs::symlink_metadata(top.join(waste::tree_file(i))).is_ok_and(|m| {
            m.is_file() && m.len() == waste::TREE_FILE_BYTES && m.uid() == waste::TREE_OWNER
        })
    })
}

/// The value of `trusted.overlay.opaque` on `dir`, if any.
fn opaque(dir: &Path) -> Option<Vec<u8>> {
    let mut value = [0u8; 8];
    let len = rustix::fs::getxattr(dir, "trusted.overlay.opaque", &mut value).ok()?;
    value.get(..len).map(<[u8]>::to_vec)
}

/// The image as the document lists it.
fn find<'d>(doc: &'d Audit, p: &Pulled) -> Option<&'d Audited> {
    doc.images.iter().find(|i| {
        i.runtime == p.runtime && i.namespace == p.namespace && i.refs.contains(&p.image.reference)
    })
}

/// What the document must say of `kind` in `p`: the copies written, their
/// disk bytes by `du -B1` in the layer dirs.
fn expected(p: &Pulled, kind: Kind) -> Result<Figure> {
    let copies: Vec<&Copy> = p.image.copies.iter().filter(|c| c.kind == kind).collect();
    if copies.is_empty() {
        return Ok(Figure::default());
    }
    let paths = copies
        .iter()
        .map(|c| {
            p.dirs
                .get(c.layer)
                .map(|d| d.join(&c.path))
                .with_context(|| format!("{} has no layer {}", p.image.reference, c.layer))
        })
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
    Ok(Figure {
        files: copies.len() as u64,
        bytes: copies.iter().map(|c| c.bytes).sum(),
        disk_bytes: oracle::du_files_disk(&refs)?,
    })
}

/// The kinds to compare for `p`: every figure, and the cache kinds it holds.
fn kinds_of(p: &Pulled) -> Vec<Kind> {
    let caches = p.image.copies.iter().filter_map(|c| match c.kind {
        Kind::Cache(_) => Some(c.kind),
        _ => None,
    });
    let mut kinds: Vec<Kind> = Kind::FIGURES.into_iter().chain(caches).collect();
    kinds.sort();
    kinds.dedup();
    kinds
}

/// One image in one runtime: every kind, the cache kinds present, the
/// wasted total, the layer count and the top paths.
fn image_figures(c: &mut Checks, doc: &Audit, p: &Pulled) {
    let what = format!("{:?} {}", p.runtime, p.image.reference);
    let Some(audited) = find(doc, p) else {
        c.that(false, || format!("the document lists no {what}"));
        return;
    };
    for kind in kinds_of(p) {
        match expected(p, kind) {
            Ok(want) => c.eq(
                &format!("{what}: {}", kind.key()),
                "the copies written; du -B1 of them in the layer dirs",
                want,
                audited.kinds.of(kind),
            ),
            Err(e) => c.error(&format!("{what}: {}", kind.key()), e),
        }
    }
    let caches: BTreeSet<&str> = kinds_of(p)
        .into_iter()
        .filter(|k| matches!(k, Kind::Cache(_)))
        .map(Kind::key)
        .collect();
    c.eq(
        &format!("{what}: cache kinds"),
        "the caches written",
        caches,
        audited.kinds.caches.keys().map(String::as_str).collect(),
    );
    c.eq(
        &format!("{what}: wasted_bytes"),
        "sum of the copies written",
        p.image.copies.iter().map(|c| c.bytes).sum::<u64>(),
        audited.wasted_bytes,
    );
    c.eq(
        &format!("{what}: layers"),
        "docker image inspect RootFS.Layers",
        p.dirs.len(),
        audited.layers,
    );
    top_paths(c, &what, p, audited);
}

/// The top paths name the copies written (duplicates are not named there):
/// each a copy, or a directory whose copies of one kind and layer went
/// together (an opaque dir, a cache's root), with their bytes; all of them
/// when they fit in 10; biggest first.
fn top_paths(c: &mut Checks, what: &str, p: &Pulled, audited: &Audited) {
    let written: Vec<&Copy> = p
        .image
        .copies
        .iter()
        .filter(|copy| copy.kind != Kind::Duplicate)
        .collect();
    for top in &audited.top_paths {
        let under: u64 = written
            .iter()
            .filter(|copy| copy.kind.key() == top.kind && copy.layer == top.layer)
            .filter(|copy| {
                let path = format!("/{}", copy.path);
                path == top.path || path.starts_with(&format!("{}/", top.path))
            })
            .map(|copy| copy.bytes)
            .sum();
        c.that(under > 0 && under == top.bytes, || {
            format!("{what}: top path {top:?} should be the copies written under it ({under} bytes): {written:?}")
        });
    }
    let named: u64 = audited.top_paths.iter().map(|t| t.bytes).sum();
    if written.len() <= TOP_PATHS {
        c.eq(
            &format!("{what}: bytes of the top paths"),
            "every copy written (they fit in 10)",
            written.iter().map(|copy| copy.bytes).sum::<u64>(),
            named,
        );
    }
    c.eq(
        &format!("{what}: the first top path"),
        "the biggest",
        audited.top_paths.iter().map(|t| t.bytes).max(),
        audited.top_paths.first().map(|t| t.bytes),
    );
}

/// The node's totals but the duplicates: no layer holding a wasted copy
/// is shared by two images that waste it, so each is the sum over images
/// and runtimes of what was written (and of `du -B1`).
fn node_totals(c: &mut Checks, doc: &Audit, pulled: &[Pulled]) {
    let mut kinds: Vec<Kind> = pulled.iter().flat_map(kinds_of).collect();
    kinds.sort();
    kinds.dedup();
    kinds.retain(|k| *k != Kind::Duplicate);
    let mut wasted = 0;
    for kind in kinds {
        let mut want = Figure::default();
        for p in pulled {
            match expected(p, kind) {
                Ok(f) => {
                    want.files += f.files;
                    want.bytes += f.bytes;
                    want.disk_bytes += f.disk_bytes;
                }
                Err(e) => c.error(&format!("node total {}", kind.key()), e),
            }
        }
        wasted += want.bytes;
        c.eq(
            &format!("node_totals.{}", kind.key()),
            "sum over images and runtimes of the copies written",
            want,
            doc.node_totals.kinds.of(kind),
        );
    }
    c.eq(
        "node_totals.wasted_bytes",
        "the kinds' bytes, duplicate's included",
        wasted + doc.node_totals.kinds.duplicate.bytes,
        doc.node_totals.wasted_bytes,
    );
}

/// dup-a and dup-b share no layer but hold the same 30 MB file: each
/// image's duplicate is it (checked with the kinds), and the node lists it
/// once per store (Docker's, containerd's `k8s.io`: only layers of one
/// store can be shared), with a copy in each of the store's 2 layers
/// holding it: 30 MB saved in each.
fn model_duplicate(c: &mut Checks, doc: &Audit, pulled: &[Pulled]) -> Result<()> {
    for (runtime, _) in RUNTIMES {
        let holders: Vec<&Pulled> = pulled
            .iter()
            .filter(|p| p.runtime == runtime)
            .filter(|p| p.image.copies.iter().any(|c| c.path == waste::MODEL.0))
            .collect();
        let files: Vec<PathBuf> = holders
            .iter()
            .filter_map(|p| p.dirs.first().map(|d| d.join(waste::MODEL.0)))
            .collect();
        let first = files.first().context("no image holds model.bin")?;
        let sha = sha256sum(&[first.as_path()])?
            .into_values()
            .next()
            .context("sha256sum printed nothing")?;
        let want: BTreeSet<(String, String)> = holders
            .iter()
            .filter_map(|p| p.dirs.first())
            .map(|d| (d.display().to_string(), format!("/{}", waste::MODEL.0)))
            .collect();
        let entry = doc.duplicates.iter().find(|d| {
            d.sha256 == sha
                && d.copies
                    .iter()
                    .any(|c| want.contains(&(c.layer_dir.clone(), c.path.clone())))
        });
        let Some(entry) = entry else {
            bail!("duplicates[] has no entry of sha256 {sha} in {runtime:?}'s layers");
        };
        let what = |field: &str| format!("model.bin in {runtime:?}: {field}");
        c.eq(&what("bytes"), "as written", waste::MODEL.1, entry.bytes);
        let copies = holders.len() as u64;
        c.eq(
            &what("saving_bytes"),
            "(the store's layers holding it - 1) x size",
            (copies - 1) * waste::MODEL.1,
            entry.saving_bytes,
        );
        let got = entry
            .copies
            .iter()
            .map(|c| (c.layer_dir.clone(), c.path.clone()))
            .collect();
        c.eq(
            &what("copies (layer dir, path)"),
            "the first layer of dup-a and dup-b",
            want,
            got,
        );
    }
    Ok(())
}

/// `node_totals.duplicate.bytes` against `sha256sum` of every visible file
/// of at least 1 MiB of every image (the duplicate copies written): the
/// sum over stores and contents of (distinct layers holding it - 1) x size.
fn node_duplicates(c: &mut Checks, doc: &Audit, pulled: &[Pulled]) -> Result<()> {
    let mut files: BTreeMap<PathBuf, (RuntimeKind, u64)> = BTreeMap::new();
    for p in pulled {
        for copy in p.image.copies.iter().filter(|c| c.kind == Kind::Duplicate) {
            let dir = p.dirs.get(copy.layer).context("no such layer")?;
            files.insert(dir.join(&copy.path), (p.runtime, copy.bytes));
        }
    }
    let paths: Vec<&Path> = files.keys().map(PathBuf::as_path).collect();
    let sums = sha256sum(&paths)?;
    let mut by_content: BTreeMap<(RuntimeKind, &String, u64), u64> = BTreeMap::new();
    for (path, (runtime, size)) in &files {
        let sum = sums
            .get(path)
            .with_context(|| format!("no sha256sum of {}", path.display()))?;
        *by_content.entry((*runtime, sum, *size)).or_default() += 1;
    }
    let saving: u64 = by_content
        .iter()
        .map(|((_, _, size), layers)| (layers - 1) * size)
        .sum();
    c.eq(
        "node_totals.duplicate.bytes",
        "sha256sum of the visible files >= 1 MiB: sum per store of (layers holding it - 1) x size",
        saving,
        doc.node_totals.kinds.duplicate.bytes,
    );
    Ok(())
}

/// `sha256sum FILES…`: path → hex digest.
fn sha256sum(files: &[&Path]) -> Result<BTreeMap<PathBuf, String>> {
    let mut args = Vec::with_capacity(files.len());
    for f in files {
        args.push(path_str(f)?);
    }
    oracle::run("sha256sum", &args)?
        .lines()
        .map(|l| {
            let (sum, path) = l
                .split_once("  ")
                .with_context(|| format!("sha256sum printed {l:?}"))?;
            Ok((PathBuf::from(path), sum.to_owned()))
        })
        .collect()
}

/// dive's "wasted space" (`filetree.Efficiency`): every path that is a leaf
/// in 2 or more layers counts with the sum of its sizes in all of them, the
/// visible copy included; a file's whiteout counts 0. Computed from the
/// image's layer dirs (overlay's on-disk whiteouts are 0/0 char devices at
/// the path, the leaf dive sees once it strips `.wh.`).
fn dive_wasted(dirs: &[PathBuf]) -> Result<u64> {
    let mut paths: BTreeMap<String, (u32, u64)> = BTreeMap::new();
    for dir in dirs {
        for (path, size) in leaves(dir)? {
            let seen = paths.entry(path).or_default();
            seen.0 += 1;
            seen.1 += size;
        }
    }
    Ok(paths.values().filter(|(n, _)| *n > 1).map(|(_, s)| s).sum())
}

/// The leaves of a layer dir (non-directories and empty directories),
/// relative, with their tar size (st_size of a regular file, else 0).
fn leaves(dir: &Path) -> Result<Vec<(String, u64)>> {
    let out = oracle::run(
        "find",
        &[
            path_str(dir)?,
            "-mindepth",
            "1",
            "(",
            "!",
            "-type",
            "d",
            "-o",
            "-empty",
            ")",
            "-printf",
            "%y\t%s\t%P\n",
        ],
    )?;
    out.lines()
        .map(|l| match l.splitn(3, '\t').collect::<Vec<_>>().as_slice() {
            ["f", size, path] => Ok((path.to_string(), oracle::parse_u64(size)?)),
            [_, _, path] => Ok((path.to_string(), 0)),
            _ => bail!("find printed {l:?}"),
        })
        .collect()
}

/// dive's figure and ours for `deleted` (they agree: the deleted copy once)
/// and `chowned` (dive counts both copies of each chowned file, 32 MB; we
/// count the lower copy, the 16 MB a rebuild without the chown saves).
fn against_dive(c: &mut Checks, doc: &Audit, pulled: &[Pulled]) -> Result<()> {
    for (name, kind, copies_dive_counts) in [
        ("deleted", Kind::Hidden, 1),
        ("chowned", Kind::MetadataOnly, 2),
    ] {
        let p = pulled
            .iter()
            .find(|p| p.image.name == name && p.runtime == RuntimeKind::Docker)
            .with_context(|| format!("no Docker {name}"))?;
        let whiteouts = p.dirs.iter().any(|d| has_whiteout(d));
        c.that(name != "deleted" || whiteouts, || {
            format!("{name}: no whiteout in its layer dirs {:?}", p.dirs)
        });
        let ours = find(doc, p).map(|a| a.kinds.of(kind).bytes);
        let dive = dive_wasted(&p.dirs)?;
        c.eq(
            &format!(
                "{name}: dive's wasted bytes = {copies_dive_counts} x our {}",
                kind.key()
            ),
            "dive's method on the layer dirs",
            Some(dive),
            ours.map(|b| b * copies_dive_counts),
        );
    }
    Ok(())
}

/// Whether `dir` holds an overlay whiteout (a 0/0 char device).
fn has_whiteout(dir: &Path) -> bool {
    let Ok(out) = oracle::run("find", &[&dir.display().to_string(), "-type", "c"]) else {
        return false;
    };
    out.lines().any(|l| {
        std::fs::symlink_metadata(l).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
    })
}

/// `headroom audit IMAGE` names it and its hidden bytes; an IMAGE that
/// matches nothing exits 4.
fn screen_and_exit_codes(c: &mut Checks, w: &World, pulled: &[Pulled]) -> Result<()> {
    let deleted = pulled
        .iter()
        .find(|p| p.image.name == "deleted")
        .context("no deleted image")?;
    let run = audit(w, &[&deleted.image.reference])?;
    c.eq("audit IMAGE: exit code", "an image audited", 0, run.code);
    c.that(run.stdout.contains(&deleted.image.reference), || {
        format!(
            "the screen should name {}:\n{}",
            deleted.image.reference,
            run.describe()
        )
    });
    let written = deleted
        .image
        .copies
        .iter()
        .filter(|c| c.kind == Kind::Hidden);
    let hidden = headroom::model::human_bytes(written.map(|c| c.bytes).sum());
    c.that(run.stdout.contains(&hidden), || {
        format!(
            "the screen should show the hidden {hidden}:\n{}",
            run.describe()
        )
    });
    let none = audit(w, &["nosuchimage"])?;
    c.eq(
        "audit nosuchimage: exit code",
        "docs: 4 when an IMAGE matches none",
        NOT_FOUND,
        none.code,
    );
    Ok(())
}
