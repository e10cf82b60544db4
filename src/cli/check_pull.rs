//! `headroom check-pull IMAGE`: what pulling IMAGE onto this node would
//! cost, and the kubelet's verdict on it, before anything is pulled.
//!
//! The image is resolved in its registry (documents only, a few ranges of
//! each layer), the node is scanned as `status --local` does, and the
//! [`Question`] is answered by [`what_if::answer`], as a node's agent
//! answers it; this file fetches and prints. Outbound requests are made here, by the
//! CLI, only: the agent never calls a registry.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use headroom::config::Config;
use headroom::inventory::check_pull::{block_size, fallback, PlannedLayer, Target};
use headroom::model::{human_bytes, short_id, Filesystem, Prediction, Signal, Status};
use headroom::registry::sizing::size_layer;
use headroom::registry::{self, Platform, Reference};
use headroom::runtime::RuntimeKind;
use headroom::what_if::{self, Answer, Question};

use super::in_flight::{pulls_in_flight, Sizer};
use super::printable::printable;
use super::registry_access;
use super::screen::{self, bar, state_style, BOLD};

/// Options of `headroom check-pull`.
#[derive(Debug, clap::Args)]
pub struct CheckPullArgs {
    /// The image, as the kubelet would be given it (e.g. registry.example/app:2).
    pub(super) image: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub(super) json: bool,
    /// The platform picked from a multi-platform image [default: this node's linux/<arch>].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]")]
    platform: Option<Platform>,
    /// The image store the pull goes to [default: the kubelet's: containerd when it holds images, else crio when it does, else docker].
    #[arg(long, value_enum)]
    runtime: Option<Store>,
    /// The containerd namespace the pull goes to (the kubelet's is k8s.io).
    #[arg(long, default_value = "k8s.io")]
    pub(super) namespace: String,
    /// CA certificates (PEM) trusted for the registry's host (with certs.d's, in place of the public roots).
    #[arg(long, value_name = "PATH")]
    ca_file: Option<PathBuf>,
    /// Every node's agent asked instead (`--fleet`).
    #[command(flatten)]
    pub(super) fleet: super::fleet::FleetArgs,
}

impl CheckPullArgs {
    /// The store `--runtime` names, if it names one.
    pub(super) fn runtime(&self) -> Option<RuntimeKind> {
        self.runtime.map(|store| match store {
            Store::Containerd => RuntimeKind::Containerd,
            Store::Docker => RuntimeKind::Docker,
            Store::Crio => RuntimeKind::Crio,
        })
    }
}

/// An image store a pull can go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Store {
    /// containerd, in `--namespace`.
    Containerd,
    /// Docker (overlay2).
    Docker,
    /// containers-storage (CRI-O, Podman).
    Crio,
}

/// The image resolved in its registry, with what it was resolved with.
pub(super) struct Resolved {
    /// The registry client, to measure layers with.
    pub(super) client: registry::Client,
    /// The image.
    pub(super) image: registry::ResolvedImage,
    /// The reference given.
    reference: Reference,
    /// The platform asked for.
    platform: Platform,
    /// How its registry was reached.
    options: registry::Options,
}

/// Resolves `args.image` in its registry (documents only, no layer); a
/// registry failure is printed and given as its exit code.
pub(super) fn resolve(
    args: &CheckPullArgs,
    config: &Config,
) -> anyhow::Result<Result<Resolved, ExitCode>> {
    let reference: Reference = args.image.parse()?;
    let platform = args.platform.clone().unwrap_or_else(node_platform);
    let options = registry_access::options(
        &reference,
        args.ca_file.as_deref(),
        platform.clone(),
        config,
    )?;
    let resolved = registry::connect(&reference, &options)
        .and_then(|mut client| client.resolve().map(|image| (client, image)));
    Ok(match resolved {
        Ok((client, image)) => Ok(Resolved {
            client,
            image,
            reference,
            platform,
            options,
        }),
        Err(e) => Err(registry_error(e, &reference, &options)),
    })
}

/// Runs `headroom check-pull`: exit code 0 ok, 1 warning, 2 pressure now
/// or predicted from the pull, 3 error, 4–8 a registry failure by class
/// (docs/exit-codes.md). With `--fleet`, [`super::fleet::run`].
pub fn run(args: &CheckPullArgs, config: &Config) -> anyhow::Result<ExitCode> {
    if args.fleet.fleet {
        return super::fleet::run(args, config);
    }
    // The registry first: a bad name or tag fails before the node is scanned.
    let Resolved {
        mut client,
        image,
        reference,
        platform,
        options,
    } = match resolve(args, config)? {
        Ok(resolved) => resolved,
        Err(code) => return Ok(code),
    };
    // `--ca-file` is for the image's registry; a pull in flight from another
    // has only certs.d's CAs.
    let options_for = |other: &Reference| {
        let ca_file = args
            .ca_file
            .as_deref()
            .filter(|_| other.registry == reference.registry);
        registry_access::options(other, ca_file, platform.clone(), config)
    };
    let node = super::status::scan_here(config)?;
    let target = Target::choose(&node.status, args.runtime(), &args.namespace);
    let fallback = fallback(&node.status);
    let sizer = Sizer {
        block_size: block_size(&node.status, target.runtime),
        fallback: &fallback,
    };
    // Every layer is measured, as for a fleet: the answer is computed the
    // way a node's agent computes it (`what_if::answer`).
    let question = question(args, &image, &mut client, &sizer);
    let in_flight = pulls_in_flight(&node.status, &reference, &options_for, &sizer);
    let answer = Answer {
        credentials: options.credential_source.as_ref().map(ToString::to_string),
        ..what_if::answer(&question, &node, in_flight)
    };
    let mut out = anstream::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &answer).context("writing JSON to stdout")?;
        writeln!(out).context("writing to stdout")?;
    } else {
        render(&mut out, &answer, &node.status).context("writing to stdout")?;
    }
    Ok(ExitCode::from(exit_code(&node.status, &answer.prediction)))
}

/// The question `image`'s pull asks a node: every layer measured in the
/// registry with `sizer`, for the store and namespace `args` name.
pub(super) fn question(
    args: &CheckPullArgs,
    image: &registry::ResolvedImage,
    client: &mut registry::Client,
    sizer: &Sizer<'_>,
) -> Question {
    let unpacked = image
        .layers
        .iter()
        .map(|layer| size_layer(client, layer, sizer.block_size, sizer.fallback))
        .collect();
    let namespace = Some(args.namespace.clone());
    Question::from_resolved(&args.image, image, unpacked, args.runtime(), namespace)
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

/// Prints a registry error, with a hint when plain HTTP was probably
/// meant (a loopback registry failing over HTTPS), and gives its exit code.
fn registry_error(
    e: registry::Error,
    reference: &Reference,
    options: &registry::Options,
) -> ExitCode {
    let transport = matches!(
        e,
        registry::Error::Tls { .. }
            | registry::Error::Connect { .. }
            | registry::Error::Transport { .. }
    );
    let hint = if transport && reference.is_loopback() && !options.insecure_plain_http {
        " (a loopback registry that speaks plain HTTP needs --plain-http)"
    } else {
        ""
    };
    eprintln!("headroom: cannot resolve the image{hint}: {e}");
    ExitCode::from(registry_access::exit_code(&e))
}

/// 3 when no filesystem could be measured, else the worst verdict's code.
fn exit_code(status: &Status, prediction: &BTreeMap<Signal, Prediction>) -> u8 {
    if status.filesystems.is_empty() {
        return super::EXIT_ERROR;
    }
    super::exit_code_of(prediction.values().map(|p| p.state))
}

/// The short screen: the image, its layers, the cost and the verdicts.
fn render(out: &mut impl Write, d: &Answer, status: &Status) -> std::io::Result<()> {
    let target = Target {
        runtime: d.runtime,
        namespace: d.namespace.clone(),
    };
    writeln!(
        out,
        "{BOLD}check-pull{BOLD:#} {} ({}) into {}",
        printable(&d.reference),
        printable(&d.platform),
        printable(&target.label())
    )?;
    writeln!(
        out,
        "  manifest {}, image ID {}",
        short_id(&d.manifest_digest),
        short_id(&d.config_digest)
    )?;
    let present = d.layers.iter().filter(|l| l.present).count();
    writeln!(
        out,
        "  layers: {} in all, {present} already on the node",
        d.layers.len()
    )?;
    for l in &d.layers {
        layer_line(out, l)?;
    }
    if d.image_present {
        writeln!(
            out,
            "  already present in {}: the pull adds nothing",
            printable(&target.label())
        )?;
    } else {
        cost(out, d, &target)?;
    }
    verdicts(out, d, status)
}

/// One layer: present, in flight, or what it adds unpacked and how that
/// was found (`~` marks an estimate).
fn layer_line(out: &mut impl Write, l: &PlannedLayer) -> std::io::Result<()> {
    let head = format!(
        "    {} {:>10}",
        short_id(&l.digest),
        human_bytes(l.compressed_bytes)
    );
    let Some(u) = l.unpacked.as_ref().filter(|_| l.to_pull()) else {
        let mark = if l.present {
            "present"
        } else {
            "in flight (counted with its pull)"
        };
        return writeln!(out, "{head}  {mark}");
    };
    let approx = if u.exact { " " } else { "~" };
    writeln!(
        out,
        "{head}  → {approx}{:>10} unpacked, {} inodes  ({})",
        human_bytes(u.disk_bytes),
        u.inodes,
        printable(&u.method)
    )?;
    if let Some(why) = &u.fallback {
        writeln!(out, "        {}", printable(why))?;
    }
    Ok(())
}

fn cost(out: &mut impl Write, d: &Answer, target: &Target) -> std::io::Result<()> {
    let blobs = target.runtime.runtime().blob_note();
    writeln!(
        out,
        "  download  {:>10}  compressed blobs ({blobs})",
        human_bytes(d.download_bytes)
    )?;
    let exact = d
        .layers
        .iter()
        .filter_map(|l| l.unpacked.as_ref())
        .all(|u| u.exact);
    let approx = if exact { " " } else { "~" };
    writeln!(
        out,
        "  unpacked {approx}{:>10}  {} inodes",
        human_bytes(d.unpack_bytes),
        d.inodes
    )?;
    writeln!(out, "  total    {approx}{:>10}", human_bytes(d.total_bytes))?;
    for p in &d.in_flight {
        writeln!(
            out,
            "  in flight {} still adds ~{} ({} to download; unpacked: {}), counted",
            printable(&p.reference),
            human_bytes(p.bytes()),
            human_bytes(p.remaining_download_bytes),
            printable(&p.method)
        )?;
    }
    Ok(())
}

fn verdicts(out: &mut impl Write, d: &Answer, status: &Status) -> std::io::Result<()> {
    for (signal, p) in &d.prediction {
        let style = state_style(p.state);
        let Some(fs) = status.filesystems.iter().find(|f| f.signal == *signal) else {
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
            printable(&fs.mountpoint)
        )?;
        screen::verdict_line(out, p, super::status::screen_width())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_platform_is_linux_and_goarch() {
        let p = node_platform();
        assert_eq!(p.os, "linux");
        assert!(!p.architecture.is_empty());
        assert_ne!(p.architecture, "x86_64");
        assert_ne!(p.architecture, "aarch64");
    }
}
