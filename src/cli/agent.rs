//! `headroom agent`: the daemon. The scan runs on its own low-priority
//! thread and publishes a rendered snapshot after every pass; the HTTP
//! handlers only copy the latest one, so a scrape never waits for a scan.

use std::process::ExitCode;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use headroom::agent::scanner::{ScanSettings, Scanner, Wake};
use headroom::agent::{events, priority};
use headroom::config::Config;
use headroom::http::{self, Snapshot};
use headroom::metrics::ScanTotals;
use headroom::walk::WalkOptions;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

/// How long shutdown waits for a pass in progress before exiting anyway.
const SCANNER_GRACE: Duration = Duration::from_secs(10);

/// Runs the agent until SIGTERM or SIGINT.
pub fn run(config: &Config) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve(config))?;
    Ok(ExitCode::SUCCESS)
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
    let (wake, woken) = mpsc::channel();
    let scanner = spawn_scanner(config, publish, woken)?;
    let follower = tokio::spawn(events::follow(
        config.layout.containerd_address.clone(),
        config.layout.containerd_timeout,
        wake.clone(),
        stopping,
    ));
    let shutdown = async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
            _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
        }
        let _ = stop.send(true);
    };
    let served = http::serve(listener, snapshots, shutdown).await;
    let _ = wake.send(Wake::Shutdown);
    let _ = follower.await;
    join_scanner(scanner).await;
    served.context("serving HTTP")
}

fn spawn_scanner(
    config: &Config,
    publish: watch::Sender<Arc<Snapshot>>,
    woken: mpsc::Receiver<Wake>,
) -> anyhow::Result<JoinHandle<()>> {
    let layout = config.layout.clone();
    let settings = scan_settings(config);
    let top_n = config.agent.top_n;
    std::thread::Builder::new()
        .name("scanner".into())
        .spawn(move || {
            for failure in priority::lower_current_thread() {
                tracing::warn!(%failure, "scanning at normal priority");
            }
            let mut totals = ScanTotals::default();
            Scanner::new(layout, settings).run(&woken, |status| {
                totals.record(&status.scan);
                tracing::info!(
                    files = status.scan.files,
                    errors = status.scan.errors,
                    seconds = status.scan.duration_seconds,
                    "scan done"
                );
                match Snapshot::from_status(&status, &totals, top_n) {
                    Ok(snapshot) => {
                        publish.send_replace(Arc::new(snapshot));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot render the status; serving the previous one"),
                }
            });
        })
        .context("starting the scanner thread")
}

/// Walker threads: `walk_threads` (0: one per core), never more than
/// `max_concurrent_walks`.
fn scan_settings(config: &Config) -> ScanSettings {
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
            ..WalkOptions::default()
        },
    }
}

/// Waits for the scanner to finish its pass, but not forever: the process
/// exiting ends a walk safely (it only reads).
async fn join_scanner(scanner: JoinHandle<()>) {
    let joined = tokio::task::spawn_blocking(move || scanner.join());
    if tokio::time::timeout(SCANNER_GRACE, joined).await.is_err() {
        tracing::warn!("a scan was still running at shutdown; exiting without it");
    }
}
