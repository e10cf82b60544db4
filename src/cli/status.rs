//! `headroom status`: the one screen on-call reads at 4 AM, or `--json`.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use headroom::client;
use headroom::config::Config;
use headroom::inventory::{self, Scanned};
use headroom::model::Status;
use headroom::walk::WalkOptions;
use indicatif::{ProgressBar, ProgressStyle};

use super::screen;

/// Options of `headroom status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// Print the status document as JSON (the same as the agent's /api/v1/status).
    #[arg(long)]
    json: bool,
    /// How many images, containers and emptyDirs the screen lists.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// Runs `headroom status`: exit code 0 ok, 1 warning, 2 pressure now or
/// predicted (docs/exit-codes.md).
pub fn run(args: &StatusArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let status = if config.status.local {
        scan_here(config)?.status
    } else {
        ask_agent_or_scan(config)?
    };

    let mut out = anstream::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &status).context("writing JSON to stdout")?;
        writeln!(out).context("writing to stdout")?;
    } else {
        let view = screen::View {
            top: args.top,
            width: screen_width(),
            now: SystemTime::now(),
        };
        screen::render(&mut out, &status, &view).context("writing to stdout")?;
    }
    Ok(ExitCode::from(exit_code(&status)))
}

/// The width a screen is fitted to when nothing tells it.
const DEFAULT_WIDTH: usize = 80;
/// The fewest columns the screen is laid out in: narrower, the tables
/// could not keep their figures whole.
const MIN_WIDTH: usize = 40;

/// The columns of the screen: the terminal's when stdout is one, else
/// `$COLUMNS` (a shell's, or set for a pipe), else 80; never fewer than
/// 40. A width of 0 (a terminal that does not tell) counts as unknown.
pub(super) fn screen_width() -> usize {
    let stdout = std::io::stdout();
    let terminal = stdout
        .is_terminal()
        .then(|| terminal_size::terminal_size_of(&stdout))
        .flatten()
        .map(|(terminal_size::Width(w), _)| usize::from(w));
    let columns = || std::env::var("COLUMNS").ok()?.trim().parse::<usize>().ok();
    terminal
        .filter(|&w| w > 0)
        .or_else(|| columns().filter(|&w| w > 0))
        .unwrap_or(DEFAULT_WIDTH)
        .max(MIN_WIDTH)
}

/// The agent's document when one answers; otherwise a scan here.
fn ask_agent_or_scan(config: &Config) -> anyhow::Result<Status> {
    let here = |config: &Config| scan_here(config).map(|scanned| scanned.status);
    agent_or_here(config, client::fetch_status, ("scanning", here))
}

/// What `fetch` gets from the local agent when one answers; otherwise what
/// `here` makes of this node, saying why on stderr (stdout stays the
/// document alone) in words that begin with `doing`.
pub(super) fn agent_or_here<T>(
    config: &Config,
    fetch: impl FnOnce(SocketAddr, Duration) -> Result<T, client::ClientError>,
    (doing, here): (&str, impl FnOnce(&Config) -> anyhow::Result<T>),
) -> anyhow::Result<T> {
    let settings = &config.status;
    match fetch(settings.agent_address, settings.agent_timeout) {
        Ok(document) => Ok(document),
        Err(e) => {
            eprintln!("headroom: {e}; {doing} this node directly");
            here(config)
        }
    }
}

/// One scan of this node with a spinner on a terminal: what `--local` does.
/// It starts the command's one async runtime, for containerd's calls.
pub(super) fn scan_here(config: &Config) -> anyhow::Result<Scanned> {
    let runtime = super::async_runtime(1)?;
    let spinner = spinner();
    let walk = WalkOptions {
        threads: config.agent.walk_threads,
        ..WalkOptions::default()
    };
    let progress = |phase: &str| spinner.set_message(phase.to_string());
    let scanned = inventory::scan(&config.layout, &walk, &progress, runtime.handle());
    spinner.finish_and_clear();
    Ok(scanned)
}

/// A spinner on stderr when it is a terminal; hidden otherwise.
pub(super) fn spinner() -> ProgressBar {
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

/// 2 when any signal is past a hard threshold, 1 on a warning, else 0;
/// 3 when no filesystem could be measured (nothing to judge by).
fn exit_code(status: &Status) -> u8 {
    if status.filesystems.is_empty() {
        return super::EXIT_ERROR;
    }
    super::exit_code_of(status.prediction.values().map(|p| p.state))
}
