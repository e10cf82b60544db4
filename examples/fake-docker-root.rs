//! Writes a synthetic Docker overlay2 store, in dockerd's on-disk format,
//! for the benchmark scripts and demos (`scripts/bench-agent`,
//! `scripts/bench-idle`):
//!
//! ```text
//! cargo run --release --example fake-docker-root -- ROOT [--layer-files N]
//!     [--writable-files N] [--containers N] [--extra-files N --pending DIR]
//!     [--manifest FILE] [--seed S] [--wasteful N]
//! ```
//!
//! What it writes is [`headroom::runtime::docker::fixture::synthetic`]'s
//! store: twelve images sharing base layers, `--containers` kubelet-run
//! containers, `--wasteful` more images with waste planted in them (as
//! root: whiteouts, opaque directories, chowned copies; see `Planted`),
//! and with `--extra-files` one more image whose metadata waits in
//! `--pending` to be moved in. `--manifest` receives what was written, as
//! JSON, for a caller to check a reader against.

use std::fs;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};
use headroom::runtime::docker::fixture::{synthetic, Extra, Synthetic};

/// Writes a synthetic Docker overlay2 store, in dockerd's on-disk format.
#[derive(Parser)]
#[command(name = "fake-docker-root")]
struct Args {
    /// The Docker root to write; absent or empty.
    root: PathBuf,
    /// Files in the layer trees, between them.
    #[arg(long, default_value_t = Synthetic::default().layer_files)]
    layer_files: usize,
    /// Files in the containers' writable layers, between them.
    #[arg(long, default_value_t = Synthetic::default().writable_files)]
    writable_files: usize,
    /// How many containers.
    #[arg(long, default_value_t = Synthetic::default().containers)]
    containers: usize,
    /// Files in the layer of one more image (on top of the python image)
    /// whose layer DB entry, config and names go to --pending.
    #[arg(long, default_value_t = 0)]
    extra_files: usize,
    /// Where the extra image's metadata goes (layerdb/<chain>/,
    /// content/<id>, repositories.json).
    #[arg(long)]
    pending: Option<PathBuf>,
    /// Where to write the JSON list of what was written.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// What the file trees are drawn from.
    #[arg(long, default_value_t = Synthetic::default().seed)]
    seed: u64,
    /// How many images with planted waste to add (needs root).
    #[arg(long, default_value_t = 0)]
    wasteful: usize,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let extra = match (args.extra_files, args.pending) {
        (0, _) => None,
        (files, Some(pending)) => Some(Extra { files, pending }),
        (_, None) => Args::command()
            .error(
                clap::error::ErrorKind::MissingRequiredArgument,
                "--extra-files needs --pending DIR",
            )
            .exit(),
    };
    let shape = Synthetic {
        layer_files: args.layer_files,
        writable_files: args.writable_files,
        containers: args.containers,
        extra,
        seed: args.seed,
        wasteful: args.wasteful,
    };
    let manifest = match synthetic(&args.root, &shape) {
        Ok(manifest) => manifest,
        Err(e) => {
            eprintln!("fake-docker-root: {}: {e}", args.root.display());
            return ExitCode::FAILURE;
        }
    };
    if let Some(path) = &args.manifest {
        let json = serde_json::to_vec_pretty(&manifest).expect("the manifest is JSON");
        if let Err(e) = fs::write(path, json) {
            eprintln!("fake-docker-root: {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    eprintln!(
        "fake-docker-root: {} images, {} layers, {} containers, {} files written in {}",
        manifest.images.len(),
        manifest.layers.len(),
        manifest.containers.len(),
        manifest.files,
        args.root.display()
    );
    ExitCode::SUCCESS
}
