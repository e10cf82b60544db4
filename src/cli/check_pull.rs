//! `headroom check-pull IMAGE`: what pulling IMAGE onto this node would
//! cost, and the kubelet's verdict on it, before anything is pulled.
//!
//! The image is resolved in its registry (documents only, no layer), the
//! node is scanned as `status --local` does, and the layers whose chain ID
//! the chosen store already has cost nothing. Each missing layer costs its
//! compressed blob (containerd keeps it in its content store; Docker needs
//! it while pulling and deletes it after unpacking) plus the unpacked size,
//! estimated with the ratio the node's own images show. The filesystem the
//! store lives on is then judged with those bytes incoming, by the same
//! verdict code as `status`. Outbound requests are made here, by the CLI,
//! only: the agent never calls a registry.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::Context;
use headroom::config::Config;
use headroom::inventory::signals::{self, Incoming};
use headroom::kubelet::{self, KubeletConfig};
use headroom::predict::history::History;
use headroom::predict::pull::{unpack_ratio, PullCost};
use headroom::registry::{self, Platform, Reference, ResolvedImage};
use headroom::report::{human_bytes, short_id, Filesystem, Image, Prediction, Status};
use headroom::runtime::RuntimeKind;
use serde::Serialize;

use super::screen::{self, bar, state_style, BOLD};

/// Options of `headroom check-pull`.
#[derive(Debug, clap::Args)]
pub struct CheckPullArgs {
    /// The image, as the kubelet would be given it (e.g. registry.example/app:2).
    image: String,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// The platform picked from a multi-platform image [default: this node's linux/<arch>].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<Platform>,
    /// The image store the pull goes to [default: containerd when it holds images, else docker].
    #[arg(long, value_enum)]
    runtime: Option<Store>,
    /// The containerd namespace the pull goes to (the kubelet's is k8s.io).
    #[arg(long, default_value = "k8s.io")]
    namespace: String,
}

/// An image store a pull can go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Store {
    /// containerd, in `--namespace`.
    Containerd,
    /// Docker (overlay2).
    Docker,
}

/// The store chosen, with its namespace (empty for Docker).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    runtime: RuntimeKind,
    namespace: String,
}

impl Target {
    /// `containerd/k8s.io` or `docker`.
    fn label(&self) -> String {
        match self.runtime {
            RuntimeKind::Containerd => format!("containerd/{}", self.namespace),
            RuntimeKind::Docker => "docker".to_string(),
        }
    }

    fn holds(&self, runtime: RuntimeKind, namespace: &str) -> bool {
        self.runtime == runtime && self.namespace == namespace
    }
}

/// One layer of the image and whether the store already has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct PlannedLayer {
    digest: String,
    compressed_bytes: u64,
    chain_id: String,
    present: bool,
}

/// What the pull would bring: the layers, and what they cost.
#[derive(Debug, Clone, PartialEq)]
struct Plan {
    /// The image (its config digest) is already in the store.
    image_present: bool,
    layers: Vec<PlannedLayer>,
    cost: PullCost,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct Document<'a> {
    image: &'a str,
    reference: String,
    index_digest: Option<&'a str>,
    manifest_digest: &'a str,
    config_digest: &'a str,
    platform: String,
    runtime: RuntimeKind,
    namespace: &'a str,
    image_present: bool,
    layers: &'a [PlannedLayer],
    download_bytes: u64,
    unpack_bytes: u64,
    unpack_ratio: f64,
    unpack_ratio_source: &'a str,
    total_bytes: u64,
    /// The verdict per affected signal (`nodefs`, `imagefs`).
    prediction: &'a BTreeMap<String, Prediction>,
}

/// Runs `headroom check-pull`: exit code 0 ok, 1 warning, 2 pressure now
/// or predicted from the pull, 3 error (a registry error included).
pub fn run(args: &CheckPullArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let reference: Reference = args.image.parse()?;
    let options = registry::Options {
        insecure_plain_http: config.check_pull.plain_http,
        platform: args.platform.clone().unwrap_or_else(node_platform),
        ..registry::Options::default()
    };
    // The registry first: a bad name or tag fails before the node is scanned.
    let image = registry::resolve(&reference, &options).map_err(|e| registry_error(e, &options))?;
    let status = super::status::scan_here(config)?;
    let target = choose_target(args, &status);
    let ratio = unpack_ratio(&status.images);
    let ratio_source = ratio_source(&status.images);
    let plan = plan(&image, &status, &target, ratio);
    let kubelet = load_kubelet(&config.layout.kubelet_config);
    let mountpoint = store_mountpoint(config, &target, &status);
    let pulls = [args.image.clone()];
    let incoming = Incoming {
        mountpoint: mountpoint.as_deref(),
        bytes: plan.cost.total(),
        pulls: &pulls,
        unknown_size: &[],
    };
    let prediction = affected(&status, &kubelet, &incoming);
    let document = Document {
        image: &args.image,
        reference: image.reference.to_string(),
        index_digest: image.index_digest.as_deref(),
        manifest_digest: &image.manifest_digest,
        config_digest: &image.config_digest,
        platform: image.platform.to_string(),
        runtime: target.runtime,
        namespace: &target.namespace,
        image_present: plan.image_present,
        layers: &plan.layers,
        download_bytes: plan.cost.download_bytes,
        unpack_bytes: plan.cost.unpack_bytes,
        unpack_ratio: ratio,
        unpack_ratio_source: &ratio_source,
        total_bytes: plan.cost.total(),
        prediction: &prediction,
    };
    let mut out = anstream::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &document).context("writing JSON to stdout")?;
        writeln!(out).context("writing to stdout")?;
    } else {
        render(&mut out, &document, &target, &status).context("writing to stdout")?;
    }
    Ok(ExitCode::from(exit_code(&status, &prediction)))
}

/// This node's platform as registries name it: `linux/<GOARCH>`.
fn node_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    Platform {
        os: "linux".to_string(),
        architecture: architecture.to_string(),
        variant: None,
    }
}

/// A registry error, with a hint when plain HTTP was probably meant.
fn registry_error(e: registry::Error, options: &registry::Options) -> anyhow::Error {
    let hint = matches!(&e, registry::Error::Unreachable { url, .. }
        if url.starts_with("https://") && !options.insecure_plain_http);
    let e = anyhow::Error::new(e);
    if hint {
        e.context("cannot resolve the image (a loopback registry that speaks plain HTTP needs --plain-http)")
    } else {
        e.context("cannot resolve the image")
    }
}

/// `--runtime`, else containerd when it holds images, else Docker when it
/// was read, else containerd.
fn choose_target(args: &CheckPullArgs, status: &Status) -> Target {
    let has_images = |kind| status.images.iter().any(|i| i.runtime == kind);
    let docker_read = status
        .runtimes
        .iter()
        .any(|r| r.runtime == RuntimeKind::Docker && r.found);
    let store = args
        .runtime
        .unwrap_or(if !has_images(RuntimeKind::Containerd) && docker_read {
            Store::Docker
        } else {
            Store::Containerd
        });
    match store {
        Store::Containerd => Target {
            runtime: RuntimeKind::Containerd,
            namespace: args.namespace.clone(),
        },
        Store::Docker => Target {
            runtime: RuntimeKind::Docker,
            namespace: String::new(),
        },
    }
}

/// Which layers `target` already has and what the rest cost. A layer is
/// there when its chain ID is a committed layer of the store; from the
/// first missing one up, every layer must be downloaded and unpacked.
fn plan(image: &ResolvedImage, status: &Status, target: &Target, ratio: f64) -> Plan {
    let image_present = status
        .images
        .iter()
        .any(|i| target.holds(i.runtime, &i.namespace) && i.id == image.config_digest);
    let have: HashSet<&str> = status
        .layers
        .iter()
        .filter(|l| target.holds(l.runtime, &l.namespace))
        .map(|l| l.id.as_str())
        .collect();
    let first_missing = if image_present {
        image.layers.len()
    } else {
        image
            .chain_ids
            .iter()
            .position(|c| !have.contains(c.as_str()))
            .unwrap_or(image.chain_ids.len())
    };
    let layers: Vec<PlannedLayer> = image
        .layers
        .iter()
        .zip(&image.chain_ids)
        .enumerate()
        .map(|(i, (layer, chain_id))| PlannedLayer {
            digest: layer.digest.clone(),
            compressed_bytes: layer.compressed_size,
            chain_id: chain_id.clone(),
            present: i < first_missing,
        })
        .collect();
    let compressed = layers
        .iter()
        .filter(|l| !l.present)
        .fold(0u64, |sum, l| sum.saturating_add(l.compressed_bytes));
    Plan {
        image_present,
        layers,
        cost: PullCost::of(compressed, 0, ratio),
    }
}

/// Where the unpack ratio came from, in words.
fn ratio_source(images: &[Image]) -> String {
    let teachers = images
        .iter()
        .filter(|i| i.content_bytes > 0 && i.disk_bytes > 0)
        .count();
    match teachers {
        0 => "the default: no image on this node still has its compressed blobs".to_string(),
        1 => "learned from the 1 image on this node with its compressed blobs".to_string(),
        n => format!("learned from the {n} images on this node with their compressed blobs"),
    }
}

/// The kubelet's thresholds; its defaults when the file cannot be read
/// (the scan has already named the problem).
fn load_kubelet(path: &Path) -> KubeletConfig {
    kubelet::load(path).unwrap_or_else(|_| KubeletConfig::defaults())
}

/// The mount point of the filesystem the store writes to; the imagefs
/// when it cannot be found.
fn store_mountpoint(config: &Config, target: &Target, status: &Status) -> Option<String> {
    let root = match target.runtime {
        RuntimeKind::Containerd => &config.layout.containerd_root,
        RuntimeKind::Docker => &config.layout.docker_root,
    };
    headroom::host::filesystem_of(root)
        .ok()
        .map(|fs| fs.mountpoint.display().to_string())
        .or_else(|| {
            status
                .filesystems
                .iter()
                .find(|fs| fs.signal == "imagefs")
                .map(|fs| fs.mountpoint.clone())
        })
}

/// The verdicts of the filesystems the pull lands on (all of them when it
/// lands on none the kubelet watches). One-shot: no trend.
fn affected(
    status: &Status,
    kubelet: &KubeletConfig,
    incoming: &Incoming<'_>,
) -> BTreeMap<String, Prediction> {
    let all = signals::predict(
        &status.filesystems,
        &status.images,
        &status.layers,
        kubelet,
        &History::default(),
        SystemTime::now(),
        incoming,
    );
    let hit: BTreeMap<String, Prediction> = status
        .filesystems
        .iter()
        .filter(|fs| incoming.mountpoint == Some(fs.mountpoint.as_str()))
        .filter_map(|fs| Some((fs.signal.clone(), all.get(&fs.signal)?.clone())))
        .collect();
    if hit.is_empty() {
        all
    } else {
        hit
    }
}

/// 3 when no filesystem could be measured, else the worst verdict's code.
fn exit_code(status: &Status, prediction: &BTreeMap<String, Prediction>) -> u8 {
    if status.filesystems.is_empty() {
        return super::EXIT_ERROR;
    }
    super::exit_code_of(prediction.values().map(|p| p.state.as_str()))
}

/// The short screen: the image, its layers, the cost and the verdicts.
fn render(
    out: &mut impl Write,
    d: &Document<'_>,
    target: &Target,
    status: &Status,
) -> std::io::Result<()> {
    writeln!(
        out,
        "{BOLD}check-pull{BOLD:#} {} ({}) into {}",
        d.reference,
        d.platform,
        target.label()
    )?;
    writeln!(
        out,
        "  manifest {}, image ID {}",
        short_id(d.manifest_digest),
        short_id(d.config_digest)
    )?;
    let present = d.layers.iter().filter(|l| l.present).count();
    writeln!(
        out,
        "  layers: {} in all, {present} already on the node",
        d.layers.len()
    )?;
    for l in d.layers {
        let mark = if l.present { "present" } else { "to pull" };
        writeln!(
            out,
            "    {} {:>10}  {mark}",
            short_id(&l.digest),
            human_bytes(l.compressed_bytes)
        )?;
    }
    if d.image_present {
        writeln!(
            out,
            "  already present in {}: the pull adds nothing",
            target.label()
        )?;
    } else {
        cost(out, d, target)?;
    }
    verdicts(out, d, status)
}

fn cost(out: &mut impl Write, d: &Document<'_>, target: &Target) -> std::io::Result<()> {
    let blobs = match target.runtime {
        RuntimeKind::Containerd => "kept in containerd's content store",
        RuntimeKind::Docker => "Docker needs them while pulling and deletes them after unpacking",
    };
    writeln!(
        out,
        "  download  {:>10}  compressed blobs ({blobs})",
        human_bytes(d.download_bytes)
    )?;
    writeln!(
        out,
        "  unpacked ~{:>10}  {:.2} × compressed, {}",
        human_bytes(d.unpack_bytes),
        d.unpack_ratio,
        d.unpack_ratio_source
    )?;
    writeln!(out, "  total    ~{:>10}", human_bytes(d.total_bytes))
}

fn verdicts(out: &mut impl Write, d: &Document<'_>, status: &Status) -> std::io::Result<()> {
    for (signal, p) in d.prediction {
        let style = state_style(&p.state);
        let Some(fs) = status.filesystems.iter().find(|f| &f.signal == signal) else {
            continue;
        };
        let after = u64::try_from(p.projected_available_after_pull).unwrap_or(0);
        let landed = Filesystem {
            available_bytes: after,
            ..fs.clone()
        };
        writeln!(
            out,
            "\n  {BOLD}{signal:<8}{BOLD:#}{style}{}{style:#} avail {} → {} after the pull ({})",
            bar(&landed),
            human_bytes(fs.available_bytes),
            human_bytes(after),
            fs.mountpoint
        )?;
        screen::verdict_line(out, p)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use headroom::registry::ResolvedLayer;
    use headroom::report::Layer;

    fn digest(n: u8) -> String {
        format!("sha256:{}", format!("{n:02x}").repeat(32))
    }

    /// An image of three layers of 100, 200 and 400 compressed bytes.
    fn resolved() -> ResolvedImage {
        let diff_ids: Vec<String> = (1..=3).map(digest).collect();
        ResolvedImage {
            reference: "127.0.0.1:5000/hr/app:1".parse().unwrap(),
            index_digest: None,
            manifest_digest: digest(0xa0),
            manifest_media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            config_digest: digest(0xc0),
            platform: Platform::default(),
            layers: diff_ids
                .iter()
                .zip([100, 200, 400])
                .enumerate()
                .map(|(i, (diff_id, size))| ResolvedLayer {
                    digest: digest(0xb0 + i as u8),
                    compressed_size: size,
                    diff_id: diff_id.clone(),
                    media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
                })
                .collect(),
            chain_ids: registry::chain_ids(&diff_ids),
        }
    }

    fn layer(runtime: RuntimeKind, namespace: &str, id: &str) -> Layer {
        Layer {
            runtime,
            namespace: namespace.into(),
            id: id.into(),
            path: String::new(),
            disk_bytes: 0,
            apparent_bytes: 0,
            inodes: 0,
            images: 1,
        }
    }

    fn status(layers: Vec<Layer>, images: Vec<Image>) -> Status {
        let mut status: Status = serde_json::from_value(serde_json::json!({
            "schema": 1, "node": "n", "generated_at": "", "source": "scan",
            "thresholds_source": "", "filesystems": [], "images": [], "layers": [],
            "containers": [], "pulls": [], "reclaimable_bytes": 0,
            "reclaimable_by_runtime": {}, "prediction": {}, "runtimes": [],
            "problems": [], "scan": {"duration_seconds": 0.0, "files": 0, "errors": 0,
            "errors_by_kind": {}, "error_samples": []}
        }))
        .unwrap();
        status.layers = layers;
        status.images = images;
        status
    }

    fn k8s() -> Target {
        Target {
            runtime: RuntimeKind::Containerd,
            namespace: "k8s.io".into(),
        }
    }

    fn presence(plan: &Plan) -> Vec<bool> {
        plan.layers.iter().map(|l| l.present).collect()
    }

    #[test]
    fn a_present_prefix_costs_nothing() {
        let image = resolved();
        let c = &image.chain_ids;
        let layers = vec![
            layer(RuntimeKind::Containerd, "k8s.io", &c[0]),
            layer(RuntimeKind::Containerd, "k8s.io", &c[1]),
            // The same chain in another store does not count.
            layer(RuntimeKind::Containerd, "moby", &c[2]),
            layer(RuntimeKind::Docker, "", &c[2]),
        ];
        let plan = plan(&image, &status(layers, vec![]), &k8s(), 2.0);
        assert_eq!(presence(&plan), [true, true, false]);
        assert!(!plan.image_present);
        assert_eq!(plan.cost, PullCost::of(400, 0, 2.0));
        assert_eq!(plan.cost.total(), 1200);
    }

    #[test]
    fn everything_above_a_missing_middle_layer_is_pulled() {
        // Layer 3's chain ID alone (as if left over) does not spare it:
        // its parent must be unpacked first, so it is unpacked again.
        let image = resolved();
        let c = &image.chain_ids;
        let layers = vec![
            layer(RuntimeKind::Containerd, "k8s.io", &c[0]),
            layer(RuntimeKind::Containerd, "k8s.io", &c[2]),
        ];
        let plan = plan(&image, &status(layers, vec![]), &k8s(), 2.5);
        assert_eq!(presence(&plan), [true, false, false]);
        assert_eq!(plan.cost.download_bytes, 600);
        assert_eq!(plan.cost.unpack_bytes, 1500);
    }

    #[test]
    fn nothing_present_costs_every_layer() {
        let image = resolved();
        let plan = plan(&image, &status(vec![], vec![]), &k8s(), 1.0);
        assert_eq!(presence(&plan), [false, false, false]);
        assert_eq!(plan.cost.total(), 1400);
        assert_eq!(
            plan.layers[2].chain_id, image.chain_ids[2],
            "each layer carries its chain ID"
        );
    }

    #[test]
    fn an_image_already_present_costs_nothing() {
        let image = resolved();
        let mut present: Image = serde_json::from_value(serde_json::json!({
            "runtime": "docker", "namespace": "", "id": image.config_digest,
            "refs": [], "created": null, "disk_bytes": 0, "apparent_bytes": 0,
            "unique_disk_bytes": 0, "unique_apparent_bytes": 0, "shared_disk_bytes": 0,
            "shared_apparent_bytes": 0, "content_bytes": 0, "unique_content_bytes": 0,
            "containers": 0, "in_use": false, "pinned": false, "layers": []
        }))
        .unwrap();
        let docker = Target {
            runtime: RuntimeKind::Docker,
            namespace: String::new(),
        };
        let plan_for = |image_record: &Image, target: &Target| {
            plan(
                &image,
                &status(vec![], vec![image_record.clone()]),
                target,
                2.5,
            )
        };
        let in_docker = plan_for(&present, &docker);
        assert!(in_docker.image_present);
        assert_eq!(presence(&in_docker), [true, true, true]);
        assert_eq!(in_docker.cost.total(), 0);
        // Present in Docker only: containerd still pulls it all.
        assert_eq!(plan_for(&present, &k8s()).cost.total(), 700 + 1750);
        present.runtime = RuntimeKind::Containerd;
        present.namespace = "k8s.io".into();
        assert_eq!(plan_for(&present, &k8s()).cost.total(), 0);
    }

    #[test]
    fn the_node_platform_is_linux_and_goarch() {
        let p = node_platform();
        assert_eq!(p.os, "linux");
        assert!(!p.architecture.is_empty());
        assert_ne!(p.architecture, "x86_64");
        assert_ne!(p.architecture, "aarch64");
    }
}
