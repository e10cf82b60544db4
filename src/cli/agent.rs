//! `headroom agent`: the daemon. The scan runs on its own low-priority
//! thread and publishes a rendered snapshot after every pass; the HTTP
//! handlers only copy the latest one, so a scrape never waits for a scan.
//! The layer audit runs on another low-priority thread, paced to its CPU
//! share, on the images each scan found; its latest report joins the
//! snapshots.

use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use headroom::agent::scanner::{Pass, ScanSettings, Scanner};
use headroom::agent::shutdown::{Reason, Shutdown};
use headroom::agent::{events, priority};
use headroom::audit::{self, AuditSummary, Auditor, ImageStack, Pace};
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
    /// Success on a signal; the error when the server, the scanner or the
    /// auditor failed.
    fn exit_code(self) -> anyhow::Result<ExitCode> {
        self.served.context("serving HTTP")?;
        match self.reason {
            Some(Reason::ScannerEnded) => anyhow::bail!("the scanner stopped unexpectedly"),
            Some(Reason::AuditorEnded) => anyhow::bail!("the layer auditor stopped unexpectedly"),
            _ => {}
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
    let publish = Arc::new(publish);
    let wake = Arc::new(Notify::new());
    let audit = Audit::new(config, &publish, &wake);
    let scanner = spawn_scanner(config, &shutdown, &publish, Arc::clone(&wake), &audit)?;
    if let Some(share) = audit.share {
        spawn_auditor(&audit, share, &shutdown)?;
    }
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
        Reason::AuditorEnded => {
            tracing::error!(
                "the layer auditor stopped unexpectedly; exiting so the agent is restarted"
            );
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
    publish: &Arc<watch::Sender<Arc<Snapshot>>>,
    wake: Arc<Notify>,
    audit: &Audit,
) -> anyhow::Result<JoinHandle<()>> {
    let settings = scan_settings(config, shutdown);
    let scanner = Scanner::new(config.layout.clone(), settings, Handle::current());
    let top_n = config.agent.top_n;
    let shutdown = shutdown.clone();
    let (publish, audit) = (Arc::clone(publish), audit.clone());
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
                    audit.offer(status);
                }
                let audited = audit.latest();
                let with_audit;
                let status = match &audited {
                    Some(a) => {
                        with_audit = Status {
                            audit: Some(a.summary.clone()),
                            ..status.clone()
                        };
                        &with_audit
                    }
                    None => status,
                };
                match Snapshot::from_status(status, kubelet, &totals, top_n) {
                    Ok(snapshot) => {
                        let audit_json = audited.map(|a| a.json.clone()).unwrap_or_default();
                        publish.send_replace(Arc::new(Snapshot {
                            ready,
                            audit_json,
                            ..snapshot
                        }));
                    }
                    Err(e) => tracing::error!(error = %e, "cannot render the status; serving the previous one"),
                }
            });
        })
        .context("starting the scanner thread")
}

/// CPU time one audit pass may use before it begins no new image's
/// layers (it finishes the one under way); the next pass goes on.
const AUDIT_PASS_CPU: Duration = Duration::from_secs(5);

/// The latest audit: its summary for the status document, its report as JSON.
#[derive(Debug)]
struct Audited {
    summary: AuditSummary,
    json: Bytes,
}

/// What the scanner and the auditor share: the images the scans found
/// (the auditor's work) and the latest audit (the publisher's).
#[derive(Debug, Clone)]
struct Audit {
    /// The share of one core the auditor may use; `None`: no audit.
    share: Option<f64>,
    work: watch::Sender<Option<(String, Arc<Vec<ImageStack>>)>>,
    latest: Arc<Mutex<Option<Arc<Audited>>>>,
    publish: Arc<watch::Sender<Arc<Snapshot>>>,
    /// Wakes the scanner, whose next document then carries the new summary.
    wake: Arc<Notify>,
}

impl Audit {
    fn new(
        config: &Config,
        publish: &Arc<watch::Sender<Arc<Snapshot>>>,
        wake: &Arc<Notify>,
    ) -> Audit {
        let percent = config.agent.audit_cpu_percent;
        Audit {
            share: (percent > 0).then(|| percent as f64 / 100.0),
            work: watch::channel(None).0,
            latest: Arc::default(),
            publish: Arc::clone(publish),
            wake: Arc::clone(wake),
        }
    }

    /// Hands the auditor the images of `status` when they changed.
    fn offer(&self, status: &Status) {
        if self.share.is_none() {
            return;
        }
        let stacks = audit::stacks(status);
        self.work.send_if_modified(|work| {
            let same = work.as_ref().is_some_and(|(_, s)| **s == stacks);
            if !same {
                *work = Some((status.node.clone(), Arc::new(stacks)));
            }
            !same
        });
    }

    fn latest(&self) -> Option<Arc<Audited>> {
        self.latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Keeps `report` as the latest and serves it at once; wakes the
    /// scanner, whose next document (a reread: only new paths are
    /// measured) carries its summary and metrics.
    fn keep(&self, report: &audit::AuditReport) {
        let mut json = match serde_json::to_vec_pretty(report) {
            Ok(json) => json,
            Err(e) => {
                return tracing::error!(error = %e, "cannot render the audit; serving the previous one")
            }
        };
        json.push(b'\n');
        let audited = Arc::new(Audited {
            summary: report.summary(),
            json: Bytes::from(json),
        });
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(&audited));
        self.publish.send_modify(|snap| {
            *snap = Arc::new(Snapshot {
                audit_json: audited.json.clone(),
                ..(**snap).clone()
            });
        });
        self.wake.notify_one();
    }
}

/// Starts the auditor thread: at the lowest priority, within `share` of a
/// core, it audits the images each scan hands it, pass after pass while
/// some are left, until `shutdown`; should it end otherwise (a panic), it
/// triggers the shutdown so the agent is restarted. It only reads, so the
/// process may end without waiting for it.
fn spawn_auditor(audit: &Audit, share: f64, shutdown: &Shutdown) -> anyhow::Result<()> {
    let (audit, shutdown) = (audit.clone(), shutdown.clone());
    let mut work = audit.work.subscribe();
    let runtime = Handle::current();
    std::thread::Builder::new()
        .name("auditor".into())
        .spawn(move || {
            // Ending on its own is a panic: the agent is restarted. At the
            // shutdown (its normal end) the trigger finds it stopping already.
            let _stop = shutdown.trigger_on_drop(Reason::AuditorEnded);
            for failure in priority::lower_current_thread() {
                tracing::warn!(%failure, "auditing at normal priority");
            }
            let mut auditor = Auditor::default();
            loop {
                let changed = runtime.block_on(async {
                    tokio::select! {
                        _ = shutdown.stopped() => false,
                        changed = work.changed() => changed.is_ok(),
                    }
                });
                if !changed {
                    return;
                }
                let Some((node, stacks)) = work.borrow_and_update().clone() else {
                    continue;
                };
                // Pass after pass while one gets further: an image whose
                // layers cannot be read stays pending, and is tried again
                // with the next images handed over, not in a loop.
                let mut audited = None;
                loop {
                    let mut pace = Pace::share(share, AUDIT_PASS_CPU, shutdown.walk_cancel());
                    let report = auditor.audit(&node, &stacks, &mut pace);
                    if shutdown.reason().is_some() {
                        return;
                    }
                    audit.keep(&report);
                    tracing::info!(
                        images = report.images.len(),
                        pending = report.pending.len(),
                        wasted_bytes = report.node_totals.wasted_bytes,
                        "audit pass done"
                    );
                    let further = audited.is_none_or(|n| report.images.len() > n);
                    audited = Some(report.images.len());
                    if report.pending.is_empty() || !further || work.has_changed().unwrap_or(true) {
                        break;
                    }
                }
            }
        })
        .context("starting the auditor thread")?;
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
