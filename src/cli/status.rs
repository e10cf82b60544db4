//! `headroom status`: the one screen on-call reads at 4 AM, or `--json`.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use headroom::inventory;
use headroom::layout::NodeLayout;
use headroom::report::Status;
use headroom::walk::WalkOptions;
use indicatif::{ProgressBar, ProgressStyle};

use super::screen;

/// Options of `headroom status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the status document as JSON (the same as the agent's /api/v1/status).
    #[arg(long)]
    json: bool,
    /// How many images and containers the screen lists.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// Runs `headroom status`: exit code 0 ok, 1 warning, 2 pressure now.
pub fn run(args: &StatusArgs, layout: &NodeLayout) -> anyhow::Result<ExitCode> {
    let spinner = spinner();
    let status = inventory::scan(layout, &WalkOptions::default(), &|phase| {
        spinner.set_message(phase.to_string());
    });
    spinner.finish_and_clear();

    let mut out = anstream::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &status).context("writing JSON to stdout")?;
        writeln!(out).context("writing to stdout")?;
    } else {
        screen::render(&mut out, &status, args.top).context("writing to stdout")?;
    }
    Ok(ExitCode::from(exit_code(&status)))
}

/// A spinner on stderr when it is a terminal; hidden otherwise.
fn spinner() -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(100));
    bar
}

/// 2 when any signal is past a hard threshold, 1 on a warning, else 0.
fn exit_code(status: &Status) -> u8 {
    let states = status.prediction.values().map(|p| p.state.as_str());
    states
        .map(|s| match s {
            "pressure" => 2,
            "warning" => 1,
            _ => 0,
        })
        .max()
        .unwrap_or(0)
}
