//! `headroom check-pull IMAGE --fleet`, run as a user runs it, against
//! fake agents on loopback (canned answers; one slow past the deadline,
//! one refusing, one answering garbage, one failing with a message), a
//! fake Prometheus and a fake registry: the order worst first, the
//! summary, the exit codes, `--json`, and the bounded concurrency.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use headroom::what_if::Answer;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A request as a fake server sees it.
struct Request {
    path: String,
    body: Vec<u8>,
}

/// What a fake server answers: status line, content type, body, and how
/// long it waits first.
struct Reply {
    status: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    delay: Duration,
}

fn reply(status: &'static str, body: impl Into<Vec<u8>>) -> Reply {
    Reply {
        status,
        content_type: "application/json",
        body: body.into(),
        delay: Duration::ZERO,
    }
}

/// Serves `handler` on a loopback port, a thread per connection; its
/// `host:port`.
fn serve(handler: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let handler = Arc::new(handler);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let handler = handler.clone();
            thread::spawn(move || answer(stream, &*handler));
        }
    });
    address
}

fn answer(mut stream: TcpStream, handler: &dyn Fn(&Request) -> Reply) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    let _ = reader.read_line(&mut line);
    let path = line.split(' ').nth(1).unwrap_or_default().to_string();
    let mut length = 0usize;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header).unwrap_or(0) <= 2 {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let r = handler(&Request { path, body });
    thread::sleep(r.delay);
    let _ = write!(
        stream,
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    let _ = stream.write_all(&r.body);
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// A registry serving `demo/app:1`: one layer of 1000 bytes (whose blob is
/// never served: it is costed at the default ratio) and its config. The
/// image's `host:port/demo/app:1`.
fn registry() -> String {
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [sha256(b"diff")]},
    }))
    .unwrap();
    let config_digest = sha256(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": sha256(b"layer"), "size": 1000}],
    }))
    .unwrap();
    let address = serve(move |r| {
        if r.path == "/v2/demo/app/manifests/1" {
            Reply {
                content_type: "application/vnd.oci.image.manifest.v1+json",
                ..reply("200 OK", manifest.clone())
            }
        } else if r.path == format!("/v2/demo/app/blobs/{config_digest}") {
            reply("200 OK", config.clone())
        } else {
            reply("404 Not Found", "")
        }
    });
    format!("{address}/demo/app:1")
}

/// An answer from `node` with `state` on imagefs.
fn canned(node: &str, state: &str) -> Value {
    json!({
        "node": node, "generated_at": "2026-12-01T06:00:00Z",
        "image": "x/demo/app:1", "reference": "x/demo/app:1", "index_digest": null,
        "manifest_digest": sha256(b"m"), "config_digest": sha256(b"c"),
        "platform": "linux/amd64", "runtime": "containerd", "namespace": "k8s.io",
        "credentials": null, "image_present": false, "layers": [],
        "download_bytes": 1000, "unpack_bytes": 2500, "inodes": 0, "total_bytes": 3500,
        "in_flight": [], "in_flight_bytes": 0,
        "prediction": {"imagefs": {
            "predicted": state == "pressure", "state": state, "seconds_until": null,
            "projected_available_after_pull": 5_000_000, "projected_available_after_gc": 6_000_000,
            "reason": format!("{node} is {state}")}},
    })
}

/// An agent answering `canned(node, state)` to a question on the route,
/// holding each answer `hold`, counting the questions in `busy`/`most`.
fn agent(node: &str, state: &str, hold: Duration, load: Option<Arc<Load>>) -> String {
    let body = serde_json::to_vec(&canned(node, state)).unwrap();
    serve(move |r| {
        if r.path != "/api/v1/check-pull" || serde_json::from_slice::<Value>(&r.body).is_err() {
            return reply("400 Bad Request", r#"{"error":"not a question"}"#);
        }
        if let Some(load) = &load {
            let now = load.busy.fetch_add(1, Ordering::SeqCst) + 1;
            load.most.fetch_max(now, Ordering::SeqCst);
            thread::sleep(hold);
            load.busy.fetch_sub(1, Ordering::SeqCst);
        }
        reply("200 OK", body.clone())
    })
}

/// Questions being answered at once, and the most seen.
#[derive(Default)]
struct Load {
    busy: AtomicUsize,
    most: AtomicUsize,
}

/// An agent that answers after `delay`.
fn slow(delay: Duration) -> String {
    let body = serde_json::to_vec(&canned("slow", "ok")).unwrap();
    serve(move |_| Reply {
        delay,
        ..reply("200 OK", body.clone())
    })
}

/// A loopback port nothing listens on.
fn refusing() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

fn headroom(image: &str, words: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.toml");
    std::fs::write(&config, "").unwrap();
    std::process::Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args([
            "check-pull",
            image,
            "--plain-http",
            "--platform",
            "linux/amd64",
        ])
        .args(words)
        .env("HEADROOM_CONFIG", &config)
        .env("COLUMNS", "120")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn names(doc: &Value, key: &str) -> Vec<String> {
    doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n[key].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_canned_answer_is_an_answer() {
    let answer: Answer = serde_json::from_value(canned("n", "warning")).unwrap();
    assert_eq!(answer.node, "n");
}

#[test]
fn fault_nodes_come_worst_first_and_silence_is_unknown_never_ok() {
    let image = registry();
    let garbage = serve(|_| reply("200 OK", "<html>not an answer</html>"));
    let failing = serve(|_| reply("500 Internal Server Error", r#"{"error":"scan not ready"}"#));
    let agents = [
        agent("node-ok", "ok", Duration::ZERO, None),
        agent("node-warn", "warning", Duration::ZERO, None),
        agent("node-full", "pressure", Duration::ZERO, None),
        slow(Duration::from_secs(5)),
        refusing(),
        garbage.clone(),
        failing.clone(),
    ]
    .join(",");
    let out = headroom(
        &image,
        &[
            "--fleet",
            "--agents",
            &agents,
            "--fleet-timeout",
            "1s",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_of(&out);
    let verdicts = names(&doc, "verdict");
    assert_eq!(
        verdicts,
        ["pressure", "unknown", "unknown", "unknown", "unknown", "warning", "ok"]
    );
    assert_eq!(names(&doc, "node")[0], "node-full");
    assert_eq!(names(&doc, "node")[5], "node-warn");
    let kinds: Vec<&str> = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|n| n["error"]["kind"].as_str())
        .collect();
    let mut sorted = kinds.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["bad_answer", "http_status", "refused", "timeout"]);
    let failed = doc["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["agent"] == failing.as_str())
        .unwrap();
    assert!(failed["error"]["message"]
        .as_str()
        .unwrap()
        .contains("scan not ready"));
    assert!(failed["answer"].is_null());
    assert_eq!(doc["nodes"][0]["answer"]["node"], "node-full");
    let summary = &doc["summary"];
    assert_eq!(summary["nodes"], 7);
    assert_eq!(summary["fit"], 2);
    assert_eq!(summary["pressure"], json!(["node-full"]));
    assert_eq!(summary["unknown"].as_array().unwrap().len(), 4);
    let sentence = summary["sentence"].as_str().unwrap();
    assert!(
        sentence.starts_with(
            "fits on 2 of 7 nodes; 1 would reach DiskPressure: node-full; 4 did not answer: "
        ),
        "{sentence}"
    );
    assert!(
        sentence.ends_with("; 1 with a warning: node-warn"),
        "{sentence}"
    );
    // Every node was asked the same question: the image measured once.
    assert_eq!(doc["question"]["layers"].as_array().unwrap().len(), 1);
}

#[test]
fn the_exit_code_is_the_worst_verdict_and_unknown_is_not_ok() {
    let image = registry();
    let ok = agent("a", "ok", Duration::ZERO, None);
    let warn = agent("b", "warning", Duration::ZERO, None);
    let cases = [
        (vec![ok.clone()], 0),
        (vec![ok.clone(), warn.clone()], 1),
        (vec![ok.clone(), warn.clone(), refusing()], 9),
        (vec![refusing()], 9),
    ];
    for (agents, code) in cases {
        let out = headroom(
            &image,
            &["--fleet", "--agents", &agents.join(","), "--json"],
        );
        assert_eq!(
            out.status.code(),
            Some(code),
            "{agents:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn the_screen_has_a_line_per_node_worst_first_then_the_summary() {
    let image = registry();
    let agents = [
        agent("node-ok", "ok", Duration::ZERO, None),
        agent("node-full", "pressure", Duration::ZERO, None),
        refusing(),
    ]
    .join(",");
    let out = headroom(&image, &["--fleet", "--agents", &agents]);
    assert_eq!(out.status.code(), Some(2));
    let screen = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = screen.lines().collect();
    let at = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("{needle}:\n{screen}"))
    };
    assert!(at("NODE") < at("node-full"), "{screen}");
    assert!(at("node-full") < at("connection refused"), "{screen}");
    assert!(at("connection refused") < at("node-ok"), "{screen}");
    assert!(lines[at("node-full")].contains("pressure"), "{screen}");
    assert!(
        lines[at("node-full")].contains("3.5 kB") || lines[at("node-full")].contains("3.5 KB"),
        "{screen}"
    );
    assert!(
        lines[at("node-full")].contains("node-full is pressure"),
        "{screen}"
    );
    assert!(
        screen.contains(
            "fits on 1 of 3 nodes; 1 would reach DiskPressure: node-full; 1 did not answer"
        ),
        "{screen}"
    );
    assert!(lines.iter().all(|l| l.chars().count() <= 120), "{screen}");
}

#[test]
fn no_more_agents_are_asked_at_once_than_the_concurrency() {
    let image = registry();
    let load = Arc::new(Load::default());
    let agents: Vec<String> = (0..8)
        .map(|i| {
            agent(
                &format!("n{i}"),
                "ok",
                Duration::from_millis(300),
                Some(load.clone()),
            )
        })
        .collect();
    let out = headroom(
        &image,
        &[
            "--fleet",
            "--agents",
            &agents.join(","),
            "--fleet-concurrency",
            "2",
            "--json",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["summary"]["fit"], 8);
    assert_eq!(load.most.load(Ordering::SeqCst), 2);
}

#[test]
fn prometheus_active_targets_of_the_job_are_the_agents_up_or_down() {
    let image = registry();
    let up = agent("node-a", "ok", Duration::ZERO, None);
    let down = refusing();
    let other = agent("not-an-agent", "pressure", Duration::ZERO, None);
    let targets = json!({"status": "success", "data": {"activeTargets": [
        {"labels": {"job": "headroom", "instance": up, "node": "node-a"},
         "scrapeUrl": format!("http://{up}/metrics"), "health": "up"},
        {"labels": {"job": "monitoring/headroom", "instance": down},
         "scrapeUrl": format!("http://{down}/metrics"), "health": "down"},
        {"labels": {"job": "node-exporter", "instance": other},
         "scrapeUrl": format!("http://{other}/metrics"), "health": "up"},
    ], "droppedTargets": []}});
    let body = serde_json::to_vec(&targets).unwrap();
    let prometheus = serve(move |r| {
        if r.path == "/api/v1/targets?state=active" {
            reply("200 OK", body.clone())
        } else {
            reply("404 Not Found", "")
        }
    });
    let url = format!("http://{prometheus}");
    let out = headroom(&image, &["--fleet", "--prometheus", &url, "--json"]);
    assert_eq!(
        out.status.code(),
        Some(9),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc = json_of(&out);
    assert_eq!(names(&doc, "node"), [down.clone(), "node-a".to_string()]);
    // A job regex of the agents only, anchored: the node exporter is not asked.
    let out = headroom(
        &image,
        &[
            "--fleet",
            "--prometheus",
            &url,
            "--prometheus-job",
            "node-exporter",
            "--json",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(names(&json_of(&out), "node"), ["not-an-agent"]);
}

#[test]
fn an_agents_file_names_one_a_line() {
    let image = registry();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents");
    let a = agent("node-a", "ok", Duration::ZERO, None);
    let b = agent("node-b", "warning", Duration::ZERO, None);
    std::fs::write(&file, format!("# the fleet\n{a}\n{b} # the other one\n")).unwrap();
    let out = headroom(
        &image,
        &["--fleet", "--agents-file", file.to_str().unwrap(), "--json"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(names(&json_of(&out), "node"), ["node-b", "node-a"]);
}

#[test]
fn fault_a_fleet_needs_exactly_one_source_and_good_addresses() {
    let image = registry();
    let a = agent("node-a", "ok", Duration::ZERO, None);
    for words in [
        vec!["--fleet"],
        vec!["--agents", a.as_str()],
        vec![
            "--fleet",
            "--agents",
            a.as_str(),
            "--prometheus",
            "http://127.0.0.1:1",
        ],
        vec!["--fleet", "--agents", "no-port"],
        vec!["--fleet", "--agents", "a/b:1"],
        vec!["--fleet", "--agents-file", "/nonexistent/agents"],
    ] {
        let out = headroom(&image, &words);
        assert_eq!(
            out.status.code(),
            Some(3),
            "{words:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "{words:?}");
    }
}
