//! The agent's HTTP server over real sockets on 127.0.0.1: routes, readiness,
//! method and size limits, hostile clients and graceful shutdown.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use headroom::http::{serve_with_limits, Limits, Snapshot, METRICS_CONTENT_TYPE};
use headroom::inventory::check_pull::pulls_in_flight;
use headroom::inventory::Scanned;
use headroom::kubelet::KubeletConfig;
use headroom::model::{Signal, State, Status};
use headroom::registry::sizing::Unpacked;
use headroom::what_if::{self, Answer, Question, QuestionLayer, MAX_BODY_BYTES, MAX_LAYERS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// A server on an ephemeral port with the handles a test needs.
struct Server {
    addr: SocketAddr,
    snapshots: watch::Sender<Arc<Snapshot>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<io::Result<()>>,
}

async fn start(limits: Limits) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (snapshots, rx) = watch::channel(Arc::new(Snapshot::default()));
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async {
        let _ = stopped.await;
    };
    let task = tokio::spawn(serve_with_limits(listener, rx, limits, shutdown));
    Server {
        addr,
        snapshots,
        stop,
        task,
    }
}

/// A parsed response: status code, header block (lowercased) and body.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: String,
    body: Vec<u8>,
}

/// Sends `raw` as is and reads until the server closes the connection.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> io::Result<Vec<u8>> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(raw).await?;
    let mut out = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut out));
    read.await
        .map_err(|_| io::Error::other("no reply within 5 s"))??;
    Ok(out)
}

fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header block in {text:?}"));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"));
    Reply {
        status,
        headers: head.to_ascii_lowercase(),
        body: body.as_bytes().to_vec(),
    }
}

async fn request(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let raw = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    parse(&exchange(addr, raw.as_bytes()).await.unwrap())
}

async fn get(addr: SocketAddr, path: &str) -> Reply {
    request(addr, "GET", path).await
}

fn ready_snapshot() -> Snapshot {
    Snapshot {
        status_json: Bytes::from_static(b"{\"schema\":1}\n"),
        metrics: Bytes::from_static(
            b"headroom_problems{kind=\"unreadable\",reader=\"docker\"} 0\n# EOF\n",
        ),
        ready: true,
        node: None,
        audit_json: Bytes::new(),
    }
}

#[tokio::test]
async fn before_the_first_scan_only_health_answers() {
    let s = start(Limits::default()).await;
    let health = get(s.addr, "/healthz").await;
    assert_eq!((health.status, health.body.as_slice()), (200, &b"ok\n"[..]));
    for path in ["/readyz", "/api/v1/status", "/metrics", "/api/v1/audit"] {
        let r = get(s.addr, path).await;
        assert_eq!(r.status, 503, "{path}: {r:?}");
        assert!(String::from_utf8_lossy(&r.body).contains("not ready"));
    }
}

#[tokio::test]
async fn a_ready_snapshot_turns_readyz_green_and_is_served_verbatim() {
    let s = start(Limits::default()).await;
    assert_eq!(get(s.addr, "/readyz").await.status, 503);
    let snap = ready_snapshot();
    s.snapshots.send(Arc::new(snap.clone())).unwrap();
    assert_eq!(get(s.addr, "/readyz").await.status, 200);

    let status = get(s.addr, "/api/v1/status").await;
    assert_eq!(status.status, 200);
    assert!(status
        .headers
        .contains("content-type: application/json\r\n"));
    assert_eq!(status.body, snap.status_json);

    let metrics = get(s.addr, "/metrics").await;
    assert_eq!(metrics.status, 200);
    let content_type = format!("content-type: {METRICS_CONTENT_TYPE}\r\n");
    assert!(metrics.headers.contains(&content_type), "{metrics:?}");
    assert_eq!(metrics.body, snap.metrics);

    // The audit is served once its first pass is in, whatever the scans.
    assert_eq!(get(s.addr, "/api/v1/audit").await.status, 503);
    let audited = Snapshot {
        audit_json: Bytes::from_static(b"{\"schema\":1,\"complete\":false}\n"),
        ..snap.clone()
    };
    s.snapshots.send(Arc::new(audited.clone())).unwrap();
    let audit = get(s.addr, "/api/v1/audit").await;
    assert_eq!(
        (audit.status, &audit.body),
        (200, &audited.audit_json.to_vec())
    );

    // A later not-ready snapshot (the agent lost its runtime, say) turns it red.
    s.snapshots.send(Arc::new(Snapshot::default())).unwrap();
    assert_eq!(get(s.addr, "/readyz").await.status, 503);
}

#[tokio::test]
async fn scrapes_never_wait_while_the_sender_is_held() {
    let s = start(Limits::default()).await;
    s.snapshots.send(Arc::new(ready_snapshot())).unwrap();
    // The sender stays alive and borrowed (a scan "in progress"); every
    // scrape still answers at once with the last snapshot.
    let _held = s.snapshots.borrow();
    let started = Instant::now();
    for _ in 0..20 {
        let r = tokio::time::timeout(Duration::from_secs(1), get(s.addr, "/metrics"))
            .await
            .expect("a scrape waited");
        assert_eq!(r.body, ready_snapshot().metrics);
    }
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn only_get_and_head_are_allowed() {
    let s = start(Limits::default()).await;
    s.snapshots.send(Arc::new(ready_snapshot())).unwrap();
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        for path in ["/metrics", "/healthz", "/readyz", "/api/v1/status"] {
            let r = request(s.addr, method, path).await;
            assert_eq!(r.status, 405, "{method} {path}");
            assert!(r.headers.contains("allow: get,head"), "{r:?}");
        }
    }
    let head = request(s.addr, "HEAD", "/metrics").await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[tokio::test]
async fn unknown_paths_are_404() {
    let s = start(Limits::default()).await;
    for path in [
        "/",
        "/metrics/",
        "/api/v1/status/x",
        "/../etc/passwd",
        "/%00",
    ] {
        assert_eq!(get(s.addr, path).await.status, 404, "{path}");
    }
}

#[tokio::test]
async fn oversized_bodies_and_headers_are_refused() {
    let s = start(Limits::default()).await;
    s.snapshots.send(Arc::new(ready_snapshot())).unwrap();
    let body = vec![b'x'; 4096];
    let mut raw = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
    raw.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    raw.extend_from_slice(&body);
    let reply = parse(&exchange(s.addr, &raw).await.unwrap());
    assert_eq!(reply.status, 413, "{reply:?}");

    let big = "a".repeat(16 * 1024);
    let raw = format!("GET /metrics HTTP/1.1\r\nHost: t\r\nX-Big: {big}\r\n\r\n");
    // hyper answers 431; a reset while we still write is fine too.
    if let Ok(out) = exchange(s.addr, raw.as_bytes()).await {
        assert!(out.is_empty() || parse(&out).status == 431, "{out:?}");
    }
    assert_eq!(get(s.addr, "/metrics").await.status, 200);
}

#[tokio::test]
async fn malformed_requests_cost_only_their_connection() {
    let s = start(Limits::default()).await;
    let junk: [&[u8]; 5] = [
        b"GARBAGE\r\n\r\n",
        b"GET /metrics HTTP/9.9\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"\x00\xff\xfe\x16\x03\x01\x02\x00\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nBad Header\r\n\r\n",
    ];
    for raw in junk {
        let out = exchange(s.addr, raw).await.unwrap();
        assert!(
            out.is_empty() || parse(&out).status == 400,
            "{raw:?} -> {:?}",
            String::from_utf8_lossy(&out)
        );
    }
    assert_eq!(get(s.addr, "/healthz").await.status, 200);
    assert!(!s.task.is_finished());
}

#[tokio::test]
async fn slowloris_clients_are_cut_off_and_others_are_served() {
    let timeout = Duration::from_millis(800);
    let s = start(Limits {
        header_read_timeout: timeout,
        ..Limits::default()
    })
    .await;
    let mut slow = TcpStream::connect(s.addr).await.unwrap();
    let mut idle = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
        .await
        .unwrap();
    let (mut slow_rd, mut slow_wr) = slow.split();
    let trickle = async {
        // One header line every 100 ms, never the blank line that ends them.
        for i in 0..50 {
            if slow_wr
                .write_all(format!("X-{i}: y\r\n").as_bytes())
                .await
                .is_err()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let cut_off = async {
        let mut buf = Vec::new();
        let _ = slow_rd.read_to_end(&mut buf).await;
        started.elapsed()
    };
    let others = async {
        for _ in 0..3 {
            assert_eq!(get(s.addr, "/healthz").await.status, 200);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let ((), slow_for, ()) = tokio::join!(trickle, cut_off, others);
    assert!(slow_for >= timeout, "cut off too early: {slow_for:?}");
    assert!(slow_for < timeout * 3, "not cut off in time: {slow_for:?}");
    // A client that connects and says nothing is closed as well.
    let mut buf = Vec::new();
    let idle_read = tokio::time::timeout(timeout * 3, idle.read_to_end(&mut buf)).await;
    assert!(idle_read.is_ok(), "idle connection still open");
    assert_eq!(get(s.addr, "/healthz").await.status, 200);
}

#[tokio::test]
async fn shutdown_returns_after_the_trigger_and_drains_bounded() {
    let drain = Duration::from_millis(500);
    let s = start(Limits {
        drain_timeout: drain,
        ..Limits::default()
    })
    .await;
    s.snapshots.send(Arc::new(ready_snapshot())).unwrap();
    // A keep-alive client between requests, and one stuck mid-headers.
    let mut kept = TcpStream::connect(s.addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 256];
    let n = kept.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let mut stuck = TcpStream::connect(s.addr).await.unwrap();
    stuck.write_all(b"GET /metrics HTTP/1.1\r\n").await.unwrap();

    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!s.task.is_finished(), "served nothing before the trigger");
    let started = Instant::now();
    s.stop.send(()).unwrap();
    let result = tokio::time::timeout(drain * 4, s.task).await;
    let elapsed = started.elapsed();
    result.expect("serve did not return").unwrap().unwrap();
    assert!(elapsed <= drain * 3, "took {elapsed:?}");
    // The idle keep-alive connection was closed, and nothing listens now.
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(1), kept.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "keep-alive connection left open");
    assert!(TcpStream::connect(s.addr).await.is_err());
}

#[tokio::test]
async fn a_response_in_flight_finishes_during_shutdown() {
    let s = start(Limits {
        drain_timeout: Duration::from_secs(3),
        ..Limits::default()
    })
    .await;
    // Bigger than loopback socket buffers, so the server is still writing.
    let big = Bytes::from(vec![b'#'; 32 << 20]);
    let snap = Snapshot {
        metrics: big.clone(),
        ..ready_snapshot()
    };
    s.snapshots.send(Arc::new(snap)).unwrap();
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    s.stop.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !s.task.is_finished(),
        "serve returned with a response in flight"
    );
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await.unwrap();
    let reply = parse(&out);
    assert_eq!(reply.status, 200);
    assert!(
        reply.body == big,
        "body cut short: {} bytes",
        reply.body.len()
    );
    tokio::time::timeout(Duration::from_secs(1), s.task)
        .await
        .expect("serve did not return after the drain")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn old_connections_are_closed_between_requests() {
    let lifetime = Duration::from_millis(300);
    let s = start(Limits {
        connection_lifetime: lifetime,
        ..Limits::default()
    })
    .await;
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    let read = tokio::time::timeout(lifetime * 5, conn.read_to_end(&mut out)).await;
    assert!(read.is_ok(), "keep-alive connection outlived its lifetime");
    assert!(started.elapsed() >= lifetime);
    assert_eq!(parse(&out).status, 200);
}

/// Connects to `addr` from `from` (any 127.0.0.0/8 address is loopback on
/// Linux, so one host plays many peers).
async fn connect_from(from: Ipv4Addr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    socket.connect(addr).await
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit: the hostile
/// clients below hold over a thousand sockets, and default-harness tests
/// share the process.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let lim = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: lim.maximum,
        maximum: lim.maximum,
    };
    setrlimit(Resource::Nofile, raised).expect("raising RLIMIT_NOFILE");
    let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
    assert!(soft >= 2048, "RLIMIT_NOFILE {soft}: these tests need 2048");
}

/// Opens `count` connections from `from` and leaves them hanging: every
/// other one silent, the rest stopped in the middle of their headers
/// (slowloris). The server may close them; the client never does.
async fn hold(from: Ipv4Addr, addr: SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut held = Vec::with_capacity(count);
    for i in 0..count {
        let mut conn = connect_from(from, addr).await.expect("connecting");
        if i % 2 == 1 {
            // The server may already have closed it to make room.
            let _ = conn
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n")
                .await;
        }
        held.push(conn);
    }
    held
}

/// One Prometheus-style scrape from `from` on a fresh connection (its
/// interval outlasts the keep-alive timeout), read to the end of the body.
async fn scrape(from: Ipv4Addr, addr: SocketAddr) -> io::Result<Reply> {
    let mut conn = connect_from(from, addr).await?;
    conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await?;
    let mut out = Vec::new();
    conn.read_to_end(&mut out).await?;
    Ok(parse(&out))
}

/// Runs `count` scrapes in turn, from each of `from` in rotation; each must
/// answer 200 within a second (it stops at the first that does not, so a
/// starved server fails fast) and the p99 of all must be under 100 ms.
async fn assert_scrapes_get_through(addr: SocketAddr, from: &[Ipv4Addr], count: usize) {
    let mut took = Vec::with_capacity(count);
    for (i, &peer) in from.iter().cycle().take(count).enumerate() {
        let started = Instant::now();
        let reply = tokio::time::timeout(Duration::from_secs(1), scrape(peer, addr)).await;
        let elapsed = started.elapsed();
        match reply {
            Ok(Ok(r)) if r.status == 200 && r.body == ready_snapshot().metrics => {}
            other => panic!("scrape {i} from {peer} failed after {elapsed:?}: {other:?}"),
        }
        took.push(elapsed);
    }
    took.sort();
    let p99 = took[took.len() * 99 / 100 - 1];
    assert!(
        p99 < Duration::from_millis(100),
        "p99 {p99:?} over {count} scrapes"
    );
}

#[tokio::test]
async fn fault_one_peer_holding_a_thousand_sockets_cannot_starve_scrapes() {
    raise_fd_limit();
    let s = start(Limits::default()).await;
    s.snapshots.send(Arc::new(ready_snapshot())).unwrap();
    let attacker = Ipv4Addr::new(127, 0, 0, 1);
    let count = 1000;
    let mut held = hold(attacker, s.addr, count).await;
    // Another peer, and the attacker's own address (Prometheus may share
    // it: a node's IP, a NAT): both get through.
    let prometheus = Ipv4Addr::new(127, 0, 0, 2);
    assert_scrapes_get_through(s.addr, &[prometheus, attacker], 200).await;
    // The attacker keeps no more than its share: the rest were closed at once.
    let closed = tokio::time::timeout(Duration::from_secs(1), async {
        let mut closed = 0;
        for conn in &mut held {
            let mut buf = [0u8; 64];
            let shut = tokio::time::timeout(Duration::from_millis(1), conn.read(&mut buf)).await;
            closed += usize::from(matches!(shut, Ok(Ok(0) | Err(_))));
        }
        closed
    });
    let closed = closed.await.expect("counting the closed sockets");
    let share = Limits::default().max_connections_per_peer;
    assert!(closed >= count - share, "only {closed} of {count} closed");
}

#[tokio::test]
async fn fault_many_peers_filling_every_slot_cannot_starve_scrapes() {
    raise_fd_limit();
    let s = start(Limits::default()).await;
    s.snapshots.send(Arc::new(ready_snapshot())).unwrap();
    let limits = Limits::default();
    let peers = 2 * limits.max_connections / limits.max_connections_per_peer;
    let mut held = Vec::new();
    for i in 0..peers {
        let peer = Ipv4Addr::new(127, 0, 1, u8::try_from(i + 1).unwrap());
        held.push(hold(peer, s.addr, limits.max_connections_per_peer).await);
    }
    let prometheus = Ipv4Addr::new(127, 0, 0, 2);
    assert_scrapes_get_through(s.addr, &[prometheus], 200).await;
}

// ------------------------------------------------ POST /api/v1/check-pull

const CHECK_PULL: &str = "/api/v1/check-pull";

/// The fixture node (tests/fixtures/status.json) with 50 GB free on its
/// imagefs (threshold 15 GB) and a pull in flight that still adds 1.2 KB.
/// Its store's filesystem is the document's imagefs, not this machine's.
fn fixture_node() -> Scanned {
    let mut status: Status =
        serde_json::from_str(include_str!("fixtures/status.json")).expect("the fixture parses");
    for runtime in &mut status.runtimes {
        runtime.image_root = None;
    }
    for fs in status
        .filesystems
        .iter_mut()
        .filter(|f| f.signal == Signal::Imagefs)
    {
        fs.available_bytes = 50_000_000_000;
    }
    status.pulls[0].remaining_download_bytes = 500;
    status.pulls[0].unpack_bytes = 700;
    Scanned {
        status,
        kubelet: KubeletConfig::defaults(),
    }
}

fn digest(n: usize) -> String {
    format!("sha256:{n:064x}")
}

/// An image of `layers` layers of `compressed` bytes each, twice that
/// unpacked.
fn question(layers: usize, compressed: u64) -> Question {
    Question {
        schema: what_if::SCHEMA,
        image: "registry.example/app:2".into(),
        reference: "registry.example/app:2".into(),
        index_digest: None,
        manifest_digest: digest(0xa0),
        config_digest: digest(0xc0),
        platform: "linux/amd64".into(),
        runtime: None,
        namespace: None,
        layers: (0..layers)
            .map(|i| QuestionLayer {
                digest: digest(0x1000 + i),
                diff_id: digest(0x2000 + i),
                compressed_bytes: compressed,
                unpacked: Unpacked {
                    disk_bytes_by_block: Default::default(),
                    stream_bytes: compressed * 2,
                    disk_bytes: compressed * 2,
                    inodes: 10,
                    exact: true,
                    method: "decoded whole".into(),
                    fallback: None,
                },
            })
            .collect(),
    }
}

async fn what_if_server(limits: Limits) -> Server {
    let s = start(limits).await;
    let snap = Snapshot {
        node: Some(Arc::new(fixture_node())),
        ..ready_snapshot()
    };
    s.snapshots.send(Arc::new(snap)).unwrap();
    s
}

/// A POST of `body` as `content_type` (no header when `None`).
fn post_raw(content_type: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut raw = format!("POST {CHECK_PULL} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n");
    if let Some(content_type) = content_type {
        raw.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    raw.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut raw = raw.into_bytes();
    raw.extend_from_slice(body);
    raw
}

async fn post(addr: SocketAddr, body: &[u8]) -> Reply {
    let raw = post_raw(Some("application/json"), body);
    parse(&exchange(addr, &raw).await.unwrap())
}

fn text(reply: &Reply) -> String {
    String::from_utf8_lossy(&reply.body).into_owned()
}

#[tokio::test]
async fn the_what_if_answers_as_check_pulls_library_path_does() {
    let s = what_if_server(Limits::default()).await;
    let node = fixture_node();
    for (q, state) in [
        (question(3, 1_000_000), State::Ok),
        (question(1, 40_000_000_000), State::Pressure),
    ] {
        let reply = post(s.addr, &serde_json::to_vec(&q).unwrap()).await;
        assert_eq!(reply.status, 200, "{}", text(&reply));
        assert!(reply.headers.contains("content-type: application/json\r\n"));
        let served: Answer = serde_json::from_slice(&reply.body).expect("an answer");
        // check-pull's path, its pulls in flight at the node's ratio.
        let in_flight = pulls_in_flight(&node.status, |_| Err("the agent asks no registry"));
        let computed = what_if::answer(&q, &node, in_flight);
        assert_eq!(served, computed);
        assert_eq!(served.node, "node-1");
        assert_eq!(served.in_flight_bytes, 1200, "the pull in flight counts");
        let layers = u64::try_from(q.layers.len()).unwrap();
        let compressed = q.layers[0].compressed_bytes;
        assert_eq!(served.total_bytes, layers * compressed * 3);
        assert_eq!(served.prediction[&Signal::Imagefs].state, state);
    }
}

#[tokio::test]
async fn the_what_if_is_503_before_the_first_inventory_and_post_only() {
    let s = start(Limits::default()).await;
    let body = serde_json::to_vec(&question(1, 10)).unwrap();
    assert_eq!(post(s.addr, &body).await.status, 503);
    // Ready, but no inventory kept (a snapshot from an older build).
    s.snapshots.send(Arc::new(ready_snapshot())).unwrap();
    assert_eq!(post(s.addr, &body).await.status, 503);
    for method in ["GET", "HEAD", "PUT"] {
        let r = request(s.addr, method, CHECK_PULL).await;
        assert_eq!(r.status, 405, "{method}");
        assert!(r.headers.contains("allow: post"), "{r:?}");
    }
}

#[tokio::test]
async fn fault_the_what_if_refuses_other_content_types() {
    let s = what_if_server(Limits::default()).await;
    let body = serde_json::to_vec(&question(1, 10)).unwrap();
    for content_type in [None, Some("text/plain"), Some("application/jsonx")] {
        let reply = parse(
            &exchange(s.addr, &post_raw(content_type, &body))
                .await
                .unwrap(),
        );
        assert_eq!(reply.status, 415, "{content_type:?}");
    }
    let charset = post_raw(Some("Application/JSON; charset=utf-8"), &body);
    assert_eq!(
        parse(&exchange(s.addr, &charset).await.unwrap()).status,
        200
    );
}

#[tokio::test]
async fn fault_the_what_if_refuses_oversized_bodies() {
    let s = what_if_server(Limits::default()).await;
    // Declared too big: refused before a byte of it is read.
    let head = format!(
        "POST {CHECK_PULL} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        MAX_BODY_BYTES + 1
    );
    let reply = parse(&exchange(s.addr, head.as_bytes()).await.unwrap());
    assert_eq!(reply.status, 413, "{reply:?}");
    // Chunked, with no length declared: cut off at the limit.
    let chunk = vec![b' '; 64 * 1024];
    let mut raw = format!(
        "POST {CHECK_PULL} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    for _ in 0..5 {
        raw.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        raw.extend_from_slice(&chunk);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    let reply = parse(&exchange(s.addr, &raw).await.unwrap());
    assert_eq!(reply.status, 413, "{reply:?}");
    // Ten thousand layers do not fit in a body.
    let many = serde_json::to_vec(&question(10_000, 10)).unwrap();
    assert!(many.len() > MAX_BODY_BYTES);
    assert_eq!(post(s.addr, &many).await.status, 413);
    // Over the layer cap but within the body limit: named.
    let mut over = question(MAX_LAYERS + 1, 10);
    for layer in &mut over.layers {
        layer.unpacked.method.clear();
    }
    let body = serde_json::to_vec(&over).unwrap();
    assert!(body.len() <= MAX_BODY_BYTES, "{} bytes", body.len());
    let reply = post(s.addr, &body).await;
    assert_eq!(reply.status, 400);
    assert!(
        text(&reply).contains("layers: 513 layers"),
        "{}",
        text(&reply)
    );
    // The 1 KiB limit still holds elsewhere.
    let mut raw = b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n".to_vec();
    raw.extend_from_slice(b"Content-Length: 2048\r\n\r\n");
    raw.extend_from_slice(&[b'x'; 2048]);
    assert_eq!(parse(&exchange(s.addr, &raw).await.unwrap()).status, 413);
}

#[tokio::test]
async fn fault_the_what_if_refuses_bad_questions_in_words() {
    let s = what_if_server(Limits::default()).await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut bad_digest = serde_json::to_value(question(2, 10)).unwrap();
    bad_digest["layers"][1]["diff_id"] = "sha256:xyz".into();
    let bad_digest = serde_json::to_vec(&bad_digest).unwrap();
    let cases: [(&[u8], &str); 5] = [
        (
            b"\xff\xfe{\"schema\": 1}",
            "bad question: the body is not a question",
        ),
        // Refused at its first bracket: no field of a question nests.
        (
            deep.as_bytes(),
            "bad question: the body is not a question: at [0]",
        ),
        (b"{\"schema\": 1, \"image\": \"a\", \"extra\": 1}", "extra"),
        (
            &bad_digest,
            "bad question: layers[1].diff_id: not a sha256 digest",
        ),
        (b"null", "bad question"),
    ];
    for (body, says) in cases {
        let reply = post(s.addr, body).await;
        assert_eq!(reply.status, 400, "{}", String::from_utf8_lossy(body));
        assert!(
            text(&reply).contains(says),
            "{says:?} in {:?}",
            text(&reply)
        );
    }
    assert_eq!(get(s.addr, "/healthz").await.status, 200);
}

#[tokio::test]
async fn fault_a_truncated_or_slow_body_is_cut_off() {
    let deadline = Duration::from_millis(600);
    let s = what_if_server(Limits {
        body_read_timeout: deadline,
        ..Limits::default()
    })
    .await;
    let body = serde_json::to_vec(&question(3, 10)).unwrap();
    // Truncated: half the body, then the client stops writing.
    let raw = post_raw(Some("application/json"), &body);
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(&raw[..raw.len() - body.len() / 2])
        .await
        .unwrap();
    conn.shutdown().await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut out))
        .await
        .expect("a truncated body is not waited for")
        .unwrap();
    assert!(out.is_empty() || parse(&out).status == 400, "{out:?}");
    // Slow: one byte every 50 ms, while others are served.
    let mut conn = TcpStream::connect(s.addr).await.unwrap();
    let started = Instant::now();
    conn.write_all(&raw[..raw.len() - body.len()])
        .await
        .unwrap();
    let (mut rd, mut wr) = conn.split();
    let trickle = async {
        for byte in &body {
            if wr.write_all(&[*byte]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let cut_off = async {
        let mut out = Vec::new();
        let _ = rd.read_to_end(&mut out).await;
        (started.elapsed(), out)
    };
    let others = async {
        for _ in 0..3 {
            assert_eq!(get(s.addr, "/metrics").await.status, 200);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let ((), (slow_for, out), ()) = tokio::join!(trickle, cut_off, others);
    assert!(slow_for >= deadline, "cut off too early: {slow_for:?}");
    assert!(slow_for < deadline * 3, "not cut off in time: {slow_for:?}");
    assert_eq!(parse(&out).status, 408, "{}", String::from_utf8_lossy(&out));
}

#[tokio::test]
async fn fault_a_peer_posting_big_bodies_cannot_starve_scrapes() {
    raise_fd_limit();
    let s = what_if_server(Limits::default()).await;
    let attacker = Ipv4Addr::new(127, 0, 0, 1);
    // Many connections, each declaring a full body and sending a third of
    // it, and a stream of full-size questions (padded with spaces).
    let mut padded = serde_json::to_vec(&question(3, 10)).unwrap();
    padded.resize(MAX_BODY_BYTES, b' ');
    let raw = post_raw(Some("application/json"), &padded);
    let mut held = Vec::new();
    for _ in 0..64 {
        let mut conn = connect_from(attacker, s.addr).await.unwrap();
        let _ = conn.write_all(&raw[..raw.len() / 3]).await;
        held.push(conn);
    }
    let addr = s.addr;
    let flood = tokio::spawn(async move {
        loop {
            let Ok(mut conn) = connect_from(attacker, addr).await else {
                continue;
            };
            let _ = conn.write_all(&raw).await;
            let mut out = Vec::new();
            let _ = conn.read_to_end(&mut out).await;
        }
    });
    let prometheus = Ipv4Addr::new(127, 0, 0, 2);
    assert_scrapes_get_through(s.addr, &[prometheus], 200).await;
    flood.abort();
}
