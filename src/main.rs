//! The `headroom` command: argument parsing and dispatch to one face each.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cli;

/// Keeps Kubernetes nodes out of DiskPressure: attributes every byte of the
/// node's disk to images, layers, containers and logs.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    layout: headroom::layout::NodeLayout,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One screen for on-call: filesystems, thresholds, top images and
    /// containers, what image GC could reclaim. Exit code: 0 ok, 1 warning,
    /// 2 pressure now, 3 error.
    Status(cli::status::StatusArgs),
    /// Measures paths the way Headroom measures layers (disk and apparent
    /// bytes, hard links once, no symlinks followed, one filesystem).
    Du(cli::du::DuArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let outcome = match args.command {
        Command::Status(status) => cli::status::run(&status, &args.layout),
        Command::Du(du) => cli::du::run(&du),
    };
    outcome.unwrap_or_else(|err| {
        eprintln!("headroom: {err:#}");
        ExitCode::from(cli::EXIT_ERROR)
    })
}
