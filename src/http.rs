//! The agent's HTTP server: `/metrics`, `/healthz`, `/readyz` and
//! `/api/v1/status`, all served from a precomputed [`Snapshot`], and the
//! what-if `POST /api/v1/check-pull`, answered from the snapshot's inventory.
//!
//! The scanner publishes a new `Arc<Snapshot>` on a `watch` channel after
//! each scan; handlers only clone the current `Arc` and its bytes, so a
//! scrape never waits for a scan and costs the same however big the node is.
//!
//! The port may face the cluster network, so every resource a client can
//! hold is bounded (see [`Limits`]): only GET (and HEAD) are routed but for
//! the what-if's POST, bodies are refused past a small size (the what-if's
//! past [`crate::what_if::MAX_BODY_BYTES`], and read within a deadline), the
//! what-if answers a few questions at once, headers are capped in size and in the time
//! they may take to arrive (slowloris), connections are capped per peer, in
//! number and in age, and shutdown waits for in-flight requests for a bounded
//! time only. A scrape always gets a connection: the accept loop never waits
//! for a slot, it closes an old connection to make room ([`admission`]). The
//! server never makes an outbound request.

mod admission;
mod check_pull;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use bytes::Bytes;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use self::admission::{Admission, Ticket};
use crate::inventory::Scanned;
use crate::kubelet::KubeletConfig;
use crate::metrics::{self, MetricsError, ScanTotals};
use crate::model::Status;

/// The `Content-Type` of `/metrics` (OpenMetrics 1.0 text).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// How many times in a row `accept` may fail (with backoff) before [`serve`]
/// gives up and returns the error.
const ACCEPT_ATTEMPTS: u32 = 6;

/// What the handlers serve, rendered once per scan.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The status document as JSON (`/api/v1/status`).
    pub status_json: Bytes,
    /// The OpenMetrics text (`/metrics`); empty until the first scan.
    pub metrics: Bytes,
    /// Whether the first full inventory is in: `/readyz`,
    /// `/api/v1/status` and `/api/v1/check-pull` answer 503 until it is.
    pub ready: bool,
    /// The inventory the what-if questions are answered from.
    pub node: Option<Arc<Scanned>>,
    /// The layer audit as JSON (`/api/v1/audit`); empty until its first
    /// pass is done.
    pub audit_json: Bytes,
}

/// Why a [`Snapshot`] could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The status document did not serialize.
    #[error("serializing the status document to JSON")]
    Json(#[from] serde_json::Error),
    /// The metrics text did not render.
    #[error(transparent)]
    Metrics(#[from] MetricsError),
}

impl Snapshot {
    /// A ready snapshot of one scan: the status JSON (as `status --json`
    /// prints it), the metrics with at most `top_n` series per entity, and
    /// the document with the `kubelet` configuration it was judged by.
    pub fn from_status(
        status: &Status,
        kubelet: &KubeletConfig,
        totals: &ScanTotals,
        top_n: usize,
    ) -> Result<Snapshot, SnapshotError> {
        let mut json = serde_json::to_vec_pretty(status)?;
        json.push(b'\n');
        Ok(Snapshot {
            status_json: Bytes::from(json),
            metrics: Bytes::from(metrics::encode(status, totals, top_n)?),
            ready: true,
            node: Some(Arc::new(Scanned {
                status: status.clone(),
                kubelet: kubelet.clone(),
            })),
            audit_json: Bytes::new(),
        })
    }
}

/// Bounds on what one client can make the server hold.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Time a client has to send a request's headers, counted from the
    /// accept (a client that sends nothing is closed too), and the longest an
    /// idle keep-alive connection stays open. A scraper sends its request at
    /// once and scrapes less often than this, so it loses nothing.
    pub header_read_timeout: Duration,
    /// Time a handler may take (they copy a snapshot, or answer a question
    /// in milliseconds: a guard, not a budget).
    pub request_timeout: Duration,
    /// Time a client has to send the what-if's body, from the end of its
    /// headers (408 past it).
    pub body_read_timeout: Duration,
    /// What-if questions answered at once; more wait their turn (within
    /// `request_timeout`), so questions never take more than these CPUs.
    pub max_questions: usize,
    /// Age after which a connection is closed once its request is done; this
    /// also bounds a client that stops reading its response.
    pub connection_lifetime: Duration,
    /// How long shutdown waits for in-flight requests.
    pub drain_timeout: Duration,
    /// Connections open at once. A new one is never refused or kept waiting:
    /// past the cap, the oldest connection of the peer holding the most is
    /// closed to make room.
    pub max_connections: usize,
    /// Connections open at once from one peer (an IPv4 address or an IPv6
    /// /64); past it, that peer's oldest connection is closed to make room.
    pub max_connections_per_peer: usize,
    /// Largest request body accepted (413 above it) by every route but the
    /// what-if, which takes up to [`crate::what_if::MAX_BODY_BYTES`].
    pub max_body_bytes: usize,
    /// Largest request line plus headers (431 above it).
    pub max_header_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(10),
            // 256 KiB arrive in well under a second on any link a cluster has.
            body_read_timeout: Duration::from_secs(5),
            max_questions: 2,
            connection_lifetime: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(5),
            // Well below the usual soft RLIMIT_NOFILE of 1024 even when the
            // walker, which may take half of it, could not raise it.
            max_connections: 256,
            // A Prometheus server, or the kubelet's probes, use one or two.
            max_connections_per_peer: 8,
            max_body_bytes: 1024,
            max_header_bytes: 8 * 1024,
        }
    }
}

/// Serves the routes on `listener` with the default [`Limits`] until
/// `shutdown` resolves, then lets in-flight requests finish (bounded).
pub async fn serve(
    listener: TcpListener,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_limits(listener, snapshots, Limits::default(), shutdown).await
}

/// [`serve`] with explicit [`Limits`].
///
/// Returns an error only when `accept` keeps failing after retries with
/// backoff (after draining the open connections); a bad client only ever
/// loses its own connection.
pub async fn serve_with_limits(
    listener: TcpListener,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let app = router(snapshots, &limits);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    let admission = Admission::new(limits.max_connections_per_peer, limits.max_connections);
    // Dropping `stop` tells every connection to finish up.
    let (stop, stopped) = watch::channel(());
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    let result = loop {
        while connections.try_join_next().is_some() {}
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break Ok(()),
            accepted = accept(&listener) => match accepted {
                Ok(accepted) => accepted,
                Err(e) => break Err(e),
            },
        };
        let conn = Connection {
            http: http.clone(),
            app: app.clone(),
            stopped: stopped.clone(),
            limits: limits.clone(),
            ticket: admission.admit(peer.ip()),
        };
        connections.spawn(conn.run(stream));
    };
    drop(listener);
    drop(stop);
    let drain = async { while connections.join_next().await.is_some() {} };
    // Each connection bounds its own drain; this is a second guard.
    if tokio::time::timeout(limits.drain_timeout * 2, drain)
        .await
        .is_err()
    {
        tracing::warn!("HTTP connections still open after the drain timeout; closing them");
    }
    result
}

/// Waits for a client; retries failing accepts (out of file descriptors,
/// say) with exponential backoff.
async fn accept(listener: &TcpListener) -> io::Result<(TcpStream, SocketAddr)> {
    let mut backoff = Duration::from_millis(100);
    let mut failures = 0;
    loop {
        match listener.accept().await {
            Ok(accepted) => return Ok(accepted),
            Err(e) => {
                failures += 1;
                if failures >= ACCEPT_ATTEMPTS {
                    return Err(e);
                }
                tracing::warn!(error = %e, "accepting an HTTP connection failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
    }
}

/// One client connection and what it needs to be served.
struct Connection {
    http: http1::Builder,
    app: Router,
    stopped: watch::Receiver<()>,
    limits: Limits,
    /// Held for the connection's life: frees its slot when it ends.
    ticket: Ticket,
}

impl Connection {
    /// Serves requests until the client leaves, the connection grows too old
    /// or the server stops, then finishes the request in flight (bounded);
    /// or until it must make room for a newer one, then closes at once.
    async fn run(mut self, stream: TcpStream) {
        let service = TowerToHyperService::new(self.app);
        let conn = self.http.serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            result = conn.as_mut() => return log_end(result),
            () = self.ticket.evicted() => return,
            _ = self.stopped.changed() => {}
            () = tokio::time::sleep(self.limits.connection_lifetime) => {}
        }
        conn.as_mut().graceful_shutdown();
        match tokio::time::timeout(self.limits.drain_timeout, conn).await {
            Ok(result) => log_end(result),
            Err(_) => tracing::debug!("HTTP connection did not finish in time; dropped"),
        }
    }
}

/// Client-side failures (timeouts, garbage, resets) are routine on an open
/// port: they end that connection only and are logged at debug level.
fn log_end(result: Result<(), hyper::Error>) {
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended with an error");
    }
}

type Snapshots = watch::Receiver<Arc<Snapshot>>;

fn router(snapshots: Snapshots, limits: &Limits) -> Router {
    let ask =
        post(check_pull::answer).with_state(check_pull::Endpoint::new(snapshots.clone(), limits));
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/api/v1/status", get(status_json))
        .route("/api/v1/audit", get(audit_json))
        .with_state(snapshots)
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        // Added after the 1 KiB limit, which so does not cover it: the
        // what-if bounds its own body.
        .route("/api/v1/check-pull", ask)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
}

/// The current snapshot; the channel's lock is held only to clone the `Arc`.
fn current(snapshots: &Snapshots) -> Arc<Snapshot> {
    Arc::clone(&snapshots.borrow())
}

fn not_ready() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "not ready: the first full inventory is still running\n",
    )
        .into_response()
}

async fn metrics_text(State(snapshots): State<Snapshots>) -> Response {
    let snap = current(&snapshots);
    if snap.metrics.is_empty() {
        return not_ready();
    }
    let content_type = [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)];
    (content_type, snap.metrics.clone()).into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(snapshots): State<Snapshots>) -> Response {
    if current(&snapshots).ready {
        "ready\n".into_response()
    } else {
        not_ready()
    }
}

async fn status_json(State(snapshots): State<Snapshots>) -> Response {
    let snap = current(&snapshots);
    if !snap.ready {
        return not_ready();
    }
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    (content_type, snap.status_json.clone()).into_response()
}

async fn audit_json(State(snapshots): State<Snapshots>) -> Response {
    let snap = current(&snapshots);
    if snap.audit_json.is_empty() {
        let why = "not ready: the first layer audit pass is still running (or the audit is off)\n";
        return (StatusCode::SERVICE_UNAVAILABLE, why).into_response();
    }
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    (content_type, snap.audit_json.clone()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_renders_both_documents_from_one_status() {
        let status: Status = serde_json::from_str(
            r#"{"schema": 1, "node": "n", "generated_at": "2026-05-01T12:00:00Z",
                "source": "scan", "thresholds_source": "defaults",
                "filesystems": [], "images": [], "layers": [], "containers": [],
                "pulls": [], "reclaimable_bytes": 77, "prediction": {},
                "reclaimable_by_runtime": {"docker": 77},
                "runtimes": [], "problems": [],
                "scan": {"files": 3, "errors": 0, "errors_by_kind": {},
                         "error_samples": [], "duration": 0.25}}"#,
        )
        .unwrap();
        let kubelet = KubeletConfig::defaults();
        let snap = Snapshot::from_status(&status, &kubelet, &ScanTotals::default(), 5).unwrap();
        assert!(snap.ready);
        assert!(snap.status_json.ends_with(b"}\n"));
        let back: Status = serde_json::from_slice(&snap.status_json).unwrap();
        assert_eq!(back, status);
        let node = snap.node.expect("the inventory is kept for the what-if");
        assert_eq!((&node.status, &node.kubelet), (&status, &kubelet));
        let text = std::str::from_utf8(&snap.metrics).unwrap();
        assert!(text.contains("headroom_reclaimable_bytes{node=\"n\",runtime=\"docker\"} 77\n"));
        assert!(text.ends_with("# EOF\n"));
    }
}
