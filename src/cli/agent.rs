//! `headroom agent`: the daemon. The scan runs on its own low-priority
//! thread and publishes a rendered snapshot after every pass; the HTTP
//! handlers only copy the latest one, so a scrape never waits for a scan.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use anyhow::Context;
use headroom::agent::scanner::{Pass, ScanSettings, Scanner, Wake};
use headroom::agent::{events, priority};
use headroom::config::Config;
use headroom::http::{self, Snapshot};
use headroom::metrics::ScanTotals;
use headroom::report::Status;
use headroom::walk::{ErrorKind, WalkOptions};
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How long shutdown waits for a pass in progress (the walk is cancelled,
/// so this is reached only on a slow filesystem) before exiting anyway: a
/// walk only reads, so ending it with the process is safe.
const SCANNER_GRACE: Duration = Duration::from_secs(10);

/// Runs the agent until SIGTERM or SIGINT, or until the scanner dies (then
/// it exits with an error so the agent gets restarted).
pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let outcome = runtime.block_on(serve(config));
    // The scanner is a plain thread, not a runtime task: nothing here waits
    // for it beyond SCANNER_GRACE.
    runtime.shutdown_timeout(Duration::from_secs(1));
    outcome.map(|()| ExitCode::SUCCESS)
}

async fn serve(config: &Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.agent.listen)
        .await
        .with_context(|| format!("listening on {}", config.agent.listen))?;
    let mut terminate =
        signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut interrupt = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tracing::info!(address = %config.agent.listen, "serving /metrics, /healthz, /readyz and /api/v1/status");

    let (publish, snapshots) = watch::channel(Arc::new(Snapshot::default()));
    let (stop, stopping) = watch::channel(false);
    // One pending wake-up is enough: the scanner rereads everything anyway.
    let (wake, woken) = mpsc::sync_channel(1);
    let cancel = Arc::new(AtomicBool::new(false));
    let (ended, mut scanner_ended) = watch::channel(false);
    spawn_scanner(config, Arc::clone(&cancel), publish, woken, ended)?;
    let follower = tokio::spawn(events::follow(
        config.layout.containerd_address.clone(),
        config.layout.containerd_timeout,
        wake.clone(),
        stopping,
    ));
    let scanner_died = Arc::new(AtomicBool::new(false));
    let shutdown = {
        let (cancel, died, mut ended) = (
            Arc::clone(&cancel),
            Arc::clone(&scanner_died),
            scanner_ended.clone(),
        );
        async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
                _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
                _ = ended.wait_for(|ended| *ended) => {
                    died.store(true, Ordering::Relaxed);
                    tracing::error!("the scanner stopped unexpectedly; exiting so the agent is restarted");
                }
            }
            cancel.store(true, Ordering::Relaxed);
            let _ = stop.send(true);
        }
    };
    let served = http::serve(listener, snapshots, shutdown).await;
    let _ = wake.try_send(Wake::Shutdown);
    // A pending wake-up may have filled the channel: closing it stops the
    // scanner as surely.
    drop(wake);
    let _ = follower.await;
    let waited = tokio::time::timeout(SCANNER_GRACE, scanner_ended.wait_for(|ended| *ended)).await;
    if waited.is_err() {
        tracing::warn!("a scan was still running at shutdown; exiting without it");
    }
    served.context("serving HTTP")?;
    if scanner_died.load(Ordering::Relaxed) {
        anyhow::bail!("the scanner stopped unexpectedly");
    }
    Ok(())
}

/// Sets `ended` when dropped: when the scanner returns and also when it
/// panics, so the agent notices a dead scanner.
struct EndedGuard(watch::Sender<bool>);

impl Drop for EndedGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

fn spawn_scanner(
    config: &Config,
    cancel: Arc<AtomicBool>,
    publish: watch::Sender<Arc<Snapshot>>,
    woken: mpsc::Receiver<Wake>,
    ended: watch::Sender<bool>,
) -> anyhow::Result<()> {
    let layout = config.layout.clone();
    let settings = scan_settings(config, cancel);
    let top_n = config.agent.top_n;
    std::thread::Builder::new()
        .name("scanner".into())
        .spawn(move || {
            let _ended = EndedGuard(ended);
            for failure in priority::lower_current_thread() {
                tracing::warn!(%failure, "scanning at normal priority");
            }
            let mut totals = ScanTotals::default();
            let mut ready = false;
            Scanner::new(layout, settings).run(&woken, |status, pass| {
                if pass != Pass::Refresh {
                    totals.record(&status.scan, pass == Pass::Rescan);
                    // Ready once a pass measured everything within its deadline.
                    ready |= !status.scan.errors_by_kind.contains_key(&ErrorKind::Deadline);
                    log_scan(status, ready);
                }
                match Snapshot::from_status(status, &totals, top_n) {
                    Ok(snapshot) => {
                        publish.send_replace(Arc::new(Snapshot { ready, ..snapshot }));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot render the status; serving the previous one"),
                }
            });
        })
        .context("starting the scanner thread")?;
    Ok(())
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
/// `max_concurrent_walks`.
fn scan_settings(config: &Config, cancel: Arc<AtomicBool>) -> ScanSettings {
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
            cancel: Some(cancel),
            ..WalkOptions::default()
        },
    }
}
