//! `headroom check-pull` against the real registry and containerd: an image
//! already pulled costs nothing; a new one is estimated, then really pulled,
//! and the estimate is compared with what the pull added to the filesystem
//! (`df`, `du`); registry errors exit with their class's code, naming the URL.

use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle;
use crate::services::Registry;
use crate::subject::{self, Run};
use crate::World;

/// How far the estimate may be from what the pull really added, as a
/// fraction of it: each layer is measured from its blob (issue #11), as
/// in compressibility.rs.
const TOLERANCE: f64 = 0.10;
/// What the content store may grow by beyond the layer blobs: block
/// rounding of each blob, the manifest and the config.
const SMALL_DOCUMENTS: u64 = 64 << 10;
/// How long containerd's GC may take to drop a removed image's snapshots
/// and blobs.
const GC_WITHIN: Duration = Duration::from_secs(20);

/// Runs `headroom check-pull ARGS… IMAGE` on the fixture node, in a clean
/// environment (no `HEADROOM_*` from the caller).
fn check_pull(w: &World, args: &[&str], image: &str) -> Result<Run> {
    check_pull_with(w, args, &[], image)
}

/// [`check_pull`] with `env` (name, value) set.
pub fn check_pull_with(w: &World, args: &[&str], env: &[(&str, &str)], image: &str) -> Result<Run> {
    let mut face = vec!["check-pull"];
    face.extend(args);
    face.push(image);
    subject::headroom_with_env(w, &subject::node_layout(w), &face, env)
}

/// [`check_pull_with`] asking `registry` as an SRE would (see
/// [`Registry::check_pull`]), with `args` after those flags.
pub fn check_pull_at(w: &World, registry: Registry<'_>, args: &[&str], image: &str) -> Result<Run> {
    let asking = registry.check_pull()?;
    let mut all: Vec<&str> = asking.args.iter().map(String::as_str).collect();
    all.extend(args);
    let env: Vec<(&str, &str)> = asking.env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    check_pull_with(w, &all, &env, image)
}

/// The run's JSON document, or an error showing the run.
pub fn document(run: &Run) -> Result<Value> {
    serde_json::from_str(&run.stdout)
        .with_context(|| format!("`{}` did not print JSON\n{}", run.command, run.describe()))
}

/// `127.0.0.1:PORT` of the fixture registry.
fn registry(w: &World) -> Result<&str> {
    let app1 = w.fixtures.image("app1");
    app1.split_once('/')
        .map(|(host, _)| host)
        .with_context(|| format!("fixture reference {app1:?} has no registry"))
}

/// `skopeo inspect ARGS… docker://REFERENCE` on `registry`.
fn skopeo_inspect(registry: Registry<'_>, args: &[&str], reference: &str) -> Result<String> {
    let flags = registry.skopeo_inspect()?;
    let url = format!("docker://{reference}");
    let mut all = vec!["inspect"];
    all.extend(flags.iter().map(String::as_str));
    all.extend(args);
    all.push(&url);
    oracle::run("skopeo", &all)
}

/// The manifest as the registry serves it, by skopeo: (layer digest,
/// size) pairs.
fn skopeo_layers(registry: Registry<'_>, reference: &str) -> Result<Vec<(String, u64)>> {
    let raw = skopeo_inspect(registry, &["--raw"], reference)?;
    let manifest: Value = serde_json::from_str(&raw)?;
    let layers = manifest["layers"]
        .as_array()
        .with_context(|| format!("no layers in {raw}"))?;
    Ok(layers
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap_or_default().to_owned();
            (digest, l["size"].as_u64().unwrap_or_default())
        })
        .collect())
}

/// The document's (digest, compressed_bytes) and `present` flags.
pub fn planned(doc: &Value) -> (Vec<(String, u64)>, Vec<bool>) {
    let layers = doc["layers"].as_array().cloned().unwrap_or_default();
    let pairs = layers
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap_or_default().to_owned();
            (digest, l["compressed_bytes"].as_u64().unwrap_or(u64::MAX))
        })
        .collect();
    let present = layers
        .iter()
        .map(|l| l["present"].as_bool().unwrap_or(false))
        .collect();
    (pairs, present)
}

/// The manifest digest `ctr images ls` lists for `reference` in k8s.io.
fn ctr_digest(w: &World, reference: &str) -> Result<String> {
    let out = oracle::ctr(&w.containerd_sock, K8S_NS, &["images", "ls"])?;
    out.lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&reference)).then(|| f.get(2).map(|d| d.to_string()))?
        })
        .with_context(|| format!("`ctr images ls` does not list {reference}:\n{out}"))
}

/// An image already in containerd's k8s.io costs nothing and exits 0.
pub fn present_image_costs_nothing(w: &World) -> Result<()> {
    let reference = w.fixtures.image("app1");
    let run = check_pull(w, &["--json", "--plain-http"], reference)?;
    let doc = document(&run)?;
    let mut c = Checks::new();
    c.eq("exit code", "an image already present", 0, run.code);
    c.eq(
        "runtime chosen",
        "containerd holds images",
        "containerd",
        doc["runtime"].as_str().unwrap_or(""),
    );
    c.eq(
        "image_present",
        "ctr images ls",
        Some(true),
        doc["image_present"].as_bool(),
    );
    c.eq(
        "total_bytes",
        "nothing to pull",
        Some(0),
        doc["total_bytes"].as_u64(),
    );
    c.eq(
        "manifest_digest",
        "ctr -n k8s.io images ls",
        ctr_digest(w, reference)?,
        doc["manifest_digest"].as_str().unwrap_or("").to_owned(),
    );
    let (layers, present) = planned(&doc);
    c.eq(
        "layers",
        "skopeo inspect --raw",
        skopeo_layers(Registry::Plain(registry(w)?), reference)?,
        layers,
    );
    c.that(present.iter().all(|p| *p), || {
        format!("every layer present: {present:?}")
    });
    c.that(doc["prediction"]["imagefs"]["state"] == "ok", || {
        format!("imagefs verdict ok: {}", doc["prediction"])
    });
    let screen = check_pull(w, &["--plain-http"], reference)?;
    c.that(
        screen.code == 0
            && screen
                .stdout
                .contains("already present in containerd/k8s.io"),
        || {
            format!(
                "the screen says it is already present:\n{}",
                screen.describe()
            )
        },
    );
    c.finish(&run.describe())
}

/// The image as the registry describes it, read by skopeo.
pub struct Described {
    /// The manifest digest.
    pub manifest: String,
    /// The config digest (the image ID).
    pub config: String,
    /// (digest, compressed size) of each layer, base first.
    pub layers: Vec<(String, u64)>,
    /// The layers' chain IDs, from the config's diff IDs.
    pub chain_ids: Vec<String>,
}

/// `skopeo inspect` of `reference` on `registry`: manifest digest, config
/// and layers.
pub fn describe(registry: Registry<'_>, reference: &str) -> Result<Described> {
    let skopeo = |args: &[&str]| skopeo_inspect(registry, args, reference);
    let config: Value = serde_json::from_str(&skopeo(&["--config", "--raw"])?)?;
    let manifest: Value = serde_json::from_str(&skopeo(&["--raw"])?)?;
    Ok(Described {
        manifest: skopeo(&["--format", "{{.Digest}}"])?.trim().to_owned(),
        config: manifest["config"]["digest"]
            .as_str()
            .context("manifest without config digest")?
            .to_owned(),
        layers: skopeo_layers(registry, reference)?,
        chain_ids: oracle::chain_ids(&oracle::diff_ids(&config)?),
    })
}

/// Removes the image from k8s.io with every name containerd gave it (the
/// CRI plugin adds `sha256:<id>` and `repo@digest` names) and waits until
/// GC has dropped its snapshots and blobs; also when the trial fails.
pub struct Undo<'a> {
    /// The node.
    pub w: &'a World,
    /// The name it was pulled as.
    pub reference: &'a str,
    /// What it holds.
    pub image: &'a Described,
}

impl Undo<'_> {
    /// Removes it now (also done when dropped).
    pub fn run(&self) -> Result<()> {
        let listed = oracle::ctr(&self.w.containerd_sock, K8S_NS, &["images", "ls"])?;
        let names: Vec<&str> = listed
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let ours = f.first() == Some(&self.reference)
                    || f.get(2) == Some(&self.image.manifest.as_str());
                ours.then(|| f.first().copied()).flatten()
            })
            .collect();
        if !names.is_empty() {
            let mut args = vec!["images", "rm", "--sync"];
            args.extend(names);
            oracle::ctr(&self.w.containerd_sock, K8S_NS, &args)?;
        }
        self.wait_gone()
    }

    /// Waits until no snapshot or blob of the image is left in k8s.io.
    fn wait_gone(&self) -> Result<()> {
        let ctr = |args: &[&str]| oracle::ctr(&self.w.containerd_sock, K8S_NS, args);
        let mut ours: Vec<&String> = self.image.chain_ids.iter().collect();
        ours.extend(self.image.layers.iter().map(|(d, _)| d));
        ours.extend([&self.image.config, &self.image.manifest]);
        let started = Instant::now();
        loop {
            let listed = ctr(&["snapshots", "ls"])? + &ctr(&["content", "ls", "-q"])?;
            let left: Vec<&&String> = ours
                .iter()
                .filter(|d| listed.contains(d.as_str()))
                .collect();
            if left.is_empty() {
                return Ok(());
            }
            if started.elapsed() > GC_WITHIN {
                bail!(
                    "still in containerd {GC_WITHIN:?} after removal: {left:?}\n\
                     ctr leases ls:\n{}\nctr images ls -q:\n{}",
                    ctr(&["leases", "ls"])?,
                    ctr(&["images", "ls", "-q"])?
                );
            }
            sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.run() {
            eprintln!("runtimes: cannot remove {} again: {e:#}", self.reference);
        }
    }
}

/// Bytes the pull really added.
pub struct Added {
    /// `df` available before − after, on containerd's filesystem.
    pub df: u64,
    /// `du -s -B1` of the whole containerd root, after − before.
    pub root: u64,
    /// `du -s -B1` of the content store, after − before (the blobs).
    pub content: u64,
    /// `du -s -B1` of the overlayfs snapshotter, after − before (unpacked).
    pub snapshots: u64,
}

/// Pulls `reference` from `registry` into k8s.io (`ctr images pull`) and
/// measures what it added.
pub fn pull_and_measure(w: &World, registry: Registry<'_>, reference: &str) -> Result<Added> {
    let root = w.containerd_root.as_path();
    let content = root.join("io.containerd.content.v1.content");
    let snapshots = root.join("io.containerd.snapshotter.v1.overlayfs");
    let measure = || -> Result<[u64; 4]> {
        oracle::run("sync", &[])?;
        Ok([
            oracle::df(root)?.avail,
            oracle::du(root)?.disk,
            oracle::du(&content)?.disk,
            oracle::du(&snapshots)?.disk,
        ])
    };
    let before = measure()?;
    let flags = registry.ctr_pull(reference)?;
    let mut args = vec!["images", "pull"];
    args.extend(flags.iter().map(String::as_str));
    args.push(reference);
    oracle::ctr(&w.containerd_sock, K8S_NS, &args)?;
    let after = measure()?;
    Ok(Added {
        df: before[0].saturating_sub(after[0]),
        root: after[1].saturating_sub(before[1]),
        content: after[2].saturating_sub(before[2]),
        snapshots: after[3].saturating_sub(before[3]),
    })
}

/// (estimate − real) / real.
pub fn error(estimate: u64, real: u64) -> f64 {
    (estimate as f64 - real as f64) / real.max(1) as f64
}

/// The estimate for an image not on the node, against what pulling it
/// really added; the node is restored after.
pub fn estimate_matches_the_real_pull(w: &World) -> Result<()> {
    let _node = w.changing();
    let reference = w.live()?.grow_image.as_str();
    let plain = Registry::Plain(registry(w)?);
    let image = describe(plain, reference)?;
    let undo = Undo {
        w,
        reference,
        image: &image,
    };
    // Another trial may have left it behind.
    undo.run()?;
    let run = check_pull(
        w,
        &["--json", "--plain-http", "--runtime", "containerd"],
        reference,
    )?;
    let doc = document(&run)?;
    let mut c = Checks::new();
    c.eq("exit code", "a few MB on a 2 GB imagefs", 0, run.code);
    c.eq(
        "image_present",
        "not pulled yet",
        Some(false),
        doc["image_present"].as_bool(),
    );
    let (layers, present) = planned(&doc);
    c.eq("layers", "skopeo inspect --raw", &image.layers, &layers);
    let chains: Vec<&str> = doc["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["chain_id"].as_str())
        .collect();
    c.eq(
        "chain IDs",
        "diff_ids of skopeo inspect --config",
        image
            .chain_ids
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        chains,
    );
    c.that(!present.is_empty() && present.iter().all(|p| !p), || {
        format!("no layer of {reference} is on the node: {present:?}")
    });
    let compressed: u64 = image.layers.iter().map(|(_, size)| size).sum();
    let download = doc["download_bytes"].as_u64().unwrap_or(0);
    c.eq(
        "download_bytes",
        "Σ compressed sizes (skopeo)",
        compressed,
        download,
    );
    let unpack = doc["unpack_bytes"].as_u64().unwrap_or(0);
    let estimate = doc["total_bytes"].as_u64().unwrap_or(0);
    match pull_and_measure(w, plain, reference) {
        Ok(added) => {
            eprintln!(
                "runtimes: check-pull estimated {estimate} bytes for {reference}: {download} to \
                 download + {unpack} unpacked. The pull added {} by df \
                 ({:+.1}%): blobs {} by du ({:+.1}%), snapshots {} by du ({:+.1}%)",
                added.df,
                error(estimate, added.df) * 100.0,
                added.content,
                error(download, added.content) * 100.0,
                added.snapshots,
                error(unpack, added.snapshots) * 100.0,
            );
            // The blobs are known exactly: block rounding, the manifest
            // and the config come on top.
            c.that(
                (download..=download + SMALL_DOCUMENTS).contains(&added.content),
                || {
                    format!(
                        "content store grew by {} for {download} bytes of blobs",
                        added.content
                    )
                },
            );
            c.that(error(estimate, added.df).abs() <= TOLERANCE, || {
                format!(
                    "estimate {estimate} within {TOLERANCE:?} of df's {} ({:+.1}%)",
                    added.df,
                    error(estimate, added.df) * 100.0
                )
            });
            let again = check_pull(w, &["--json", "--plain-http"], reference)?;
            c.eq(
                "total_bytes right after the pull",
                "ctr images pull",
                Some(0),
                document(&again)?["total_bytes"].as_u64(),
            );
        }
        Err(e) => c.error("pulling and measuring", e),
    }
    if let Err(e) = undo.run() {
        c.error("removing the image again", e);
    }
    c.finish(&run.describe())
}

/// A tag the registry does not have: exit 4 (not found), naming the URL.
pub fn unknown_tag_names_the_url(w: &World) -> Result<()> {
    let registry = registry(w)?;
    let run = check_pull(w, &["--plain-http"], &format!("{registry}/hr/app1:nope"))?;
    let url = format!("http://{registry}/v2/hr/app1/manifests/nope");
    let mut c = Checks::new();
    c.eq("exit code", "an unknown tag", 4, run.code);
    c.that(run.stderr.contains(&url), || format!("stderr names {url}"));
    c.that(run.stdout.is_empty(), || "nothing on stdout".to_owned());
    c.finish(&run.describe())
}

/// Without `--plain-http` the loopback registry is asked over HTTPS, which
/// it does not speak: exit 7 (TLS), naming the URL and the flag.
pub fn https_to_a_plain_registry_fails(w: &World) -> Result<()> {
    let registry = registry(w)?;
    let run = check_pull(w, &[], w.fixtures.image("app1"))?;
    let url = format!("https://{registry}/v2/hr/app1/");
    let mut c = Checks::new();
    c.eq("exit code", "HTTPS to a plain-HTTP registry", 7, run.code);
    c.that(run.stderr.contains(&url), || format!("stderr names {url}"));
    c.that(run.stderr.contains("--plain-http"), || {
        "stderr suggests --plain-http".to_owned()
    });
    c.finish(&run.describe())
}
