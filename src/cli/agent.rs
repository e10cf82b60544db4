//! `headroom agent`: the daemon. The scan runs on its own low-priority
//! thread and publishes a rendered snapshot after every pass; the HTTP
//! handlers only copy the latest one, so a scrape never waits for a scan.

use std::process::ExitCode;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use headroom::agent::scanner::{Pass, ScanSettings, Scanner};
use headroom::agent::shutdown::{Reason, Shutdown};
use headroom::agent::{events, priority};
use headroom::config::Config;
use headroom::http::{self, Snapshot};
use headroom::metrics::ScanTotals;
use headroom::model::Status;
use headroom::runtime;
use headroom::walk::{ErrorKind, WalkOptions};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{watch, Notify};

/// How long shutdown waits for a pass in progress (the walk is cancelled,
/// so this is reached only on a slow filesystem) before exiting anyway: a
/// walk only reads, so ending it with the process is safe.
const SCANNER_GRACE: Duration = Duration::from_secs(10);

/// Runs the agent until SIGTERM or SIGINT, or until the scanner dies (then
/// it exits with an error so the agent gets restarted).
pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let runtime = super::async_runtime(2)?;
    let stopped = runtime.block_on(serve(config))?;
    if stopped.scanning {
        // The scan may be blocked on the runtime (a containerd call):
        // shutting the runtime down would turn its timers into a panic in
        // the moment before the process exits, which ends both anyway.
        std::mem::forget(runtime);
    } else {
        runtime.shutdown_timeout(Duration::from_secs(1));
    }
    stopped.exit_code()
}

/// How a serving agent stopped.
struct Stopped {
    /// The first reason it was given.
    reason: Option<Reason>,
    /// How the HTTP server ended.
    served: std::io::Result<()>,
    /// Whether a scan was still running past [`SCANNER_GRACE`].
    scanning: bool,
}

impl Stopped {
    /// Success on a signal; the error when the server or the scanner failed.
    fn exit_code(self) -> anyhow::Result<ExitCode> {
        self.served.context("serving HTTP")?;
        if self.reason == Some(Reason::ScannerEnded) {
            anyhow::bail!("the scanner stopped unexpectedly");
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Serves until the [`Shutdown`], which everything here triggers or
/// watches: the signals and the scanner thread trigger it, the HTTP server,
/// the event follower and the scanner stop on it.
async fn serve(config: &Config) -> anyhow::Result<Stopped> {
    let listener = TcpListener::bind(config.agent.listen)
        .await
        .with_context(|| format!("listening on {}", config.agent.listen))?;
    let shutdown = Shutdown::new();
    stop_on_signals(&shutdown)?;
    tracing::info!(address = %config.agent.listen, "serving /metrics, /healthz, /readyz and /api/v1/status");

    let (publish, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let wake = Arc::new(Notify::new());
    let scanner = spawn_scanner(config, &shutdown, publish, Arc::clone(&wake))?;
    let followers: Vec<_> = runtime::ALL
        .into_iter()
        .filter_map(|kind| Some((kind, kind.runtime().events(&config.layout)?)))
        .map(|(kind, feed)| {
            let follow = events::follow(kind, feed, Arc::clone(&wake), shutdown.clone());
            tokio::spawn(follow)
        })
        .collect();
    let stopping = {
        let shutdown = shutdown.clone();
        async move { announce(shutdown.stopped().await) }
    };
    let served = http::serve(listener, snapshots, stopping).await;
    if served.is_err() {
        shutdown.trigger(Reason::ServerFailed);
    }
    for follower in followers {
        let _ = follower.await;
    }
    let scanner = tokio::task::spawn_blocking(move || scanner.join());
    let scanning = tokio::time::timeout(SCANNER_GRACE, scanner).await.is_err();
    if scanning {
        tracing::warn!("a scan was still running at shutdown; exiting without it");
    }
    Ok(Stopped {
        reason: shutdown.reason(),
        served,
        scanning,
    })
}

/// Says in the log why the agent stops, as it starts stopping.
fn announce(reason: Reason) {
    match reason {
        Reason::Terminate => tracing::info!("SIGTERM: shutting down"),
        Reason::Interrupt => tracing::info!("SIGINT: shutting down"),
        Reason::ScannerEnded => {
            tracing::error!("the scanner stopped unexpectedly; exiting so the agent is restarted");
        }
        // Given only once the server has returned (this runs inside it);
        // its error is printed as the process exits.
        Reason::ServerFailed => {}
    }
}

/// Triggers `shutdown` on the first SIGTERM or SIGINT. The handlers are
/// installed before this returns, so a signal from then on is not lost.
fn stop_on_signals(shutdown: &Shutdown) -> anyhow::Result<()> {
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let reason = tokio::select! {
            _ = terminate.recv() => Reason::Terminate,
            _ = interrupt.recv() => Reason::Interrupt,
            // Stopping for another reason: nothing left to listen for.
            _ = shutdown.stopped() => return,
        };
        shutdown.trigger(reason);
    });
    Ok(())
}

/// Starts the scanner thread, which runs until `shutdown` and triggers it
/// when it ends on its own (returning or panicking), so a dead scanner
/// stops the agent; its containerd calls and waits run on the current
/// runtime.
fn spawn_scanner(
    config: &Config,
    shutdown: &Shutdown,
    publish: watch::Sender<Arc<Snapshot>>,
    wake: Arc<Notify>,
) -> anyhow::Result<JoinHandle<()>> {
    let settings = scan_settings(config, shutdown);
    let scanner = Scanner::new(config.layout.clone(), settings, Handle::current());
    let top_n = config.agent.top_n;
    let shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("scanner".into())
        .spawn(move || {
            let _stop = shutdown.trigger_on_drop(Reason::ScannerEnded);
            for failure in priority::lower_current_thread() {
                tracing::warn!(%failure, "scanning at normal priority");
            }
            let mut totals = ScanTotals::default();
            let mut ready = false;
            scanner.run(&wake, &shutdown, |status, kubelet, pass| {
                if pass != Pass::Refresh {
                    totals.record(&status.scan, pass == Pass::Rescan);
                    // Ready once a pass measured everything within its deadline.
                    ready |= !status.scan.errors_by_kind.contains_key(&ErrorKind::Deadline);
                    log_scan(status, ready);
                }
                match Snapshot::from_status(status, kubelet, &totals, top_n) {
                    Ok(snapshot) => {
                        publish.send_replace(Arc::new(Snapshot { ready, ..snapshot }));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot render the status; serving the previous one"),
                }
            });
        })
        .context("starting the scanner thread")
}

/// A scan that walked something is worth a line; the rereads a pull in
/// flight causes every second are not.
fn log_scan(status: &Status, ready: bool) {
    let scan = &status.scan;
    if scan.files > 0 || scan.errors > 0 {
        tracing::info!(
            files = scan.files,
            errors = scan.errors,
            seconds = scan.duration_seconds,
            ready,
            "scan done"
        );
    } else {
        tracing::debug!(pulls = status.pulls.len(), ready, "runtimes reread");
    }
}

/// Walker threads: `walk_threads` (0: one per core), never more than
/// `max_concurrent_walks`; a walk stops at the `shutdown`.
fn scan_settings(config: &Config, shutdown: &Shutdown) -> ScanSettings {
    let agent = &config.agent;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let wanted = if agent.walk_threads == 0 {
        cores
    } else {
        agent.walk_threads
    };
    ScanSettings {
        rescan_interval: agent.rescan_interval,
        rescan_jitter: agent.rescan_jitter,
        resync_interval: agent.resync_interval,
        scan_deadline: agent.scan_deadline,
        walk: WalkOptions {
            threads: wanted.min(agent.max_concurrent_walks),
            cancel: Some(shutdown.walk_cancel()),
            ..WalkOptions::default()
        },
    }
}
