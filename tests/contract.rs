//! The interface contract in `docs/` held to the code, both ways, so that the
//! two cannot drift apart: the status document's keys, JSON types and
//! enumerated values (`docs/status.md`), the metrics' names, types, units,
//! labels and label values (`docs/metrics.md`), every command's exit codes
//! (`docs/exit-codes.md`) and the agent's routes (`docs/http.md`).
//!
//! What is checked is real output: a one-shot scan and an agent pass of a
//! node written under a temp dir (a Docker overlay2 store with an image, a
//! container of a pod and its logs, an orphaned pod log, an emptyDir, a
//! Docker pull in flight, a walk error and a problem), the built binary's
//! `status --json`, and a running agent's answers. The exit codes come from
//! the binary run against nodes whose kubelet config forces each verdict,
//! and against a registry this test serves.
//!
//! The tables are parsed as written: a table is found by its header row, a
//! key, metric, label, value or command is the text in backticks, `—` is
//! none. Every failure is listed at once, naming the doc to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use headroom::agent::scanner::{ScanSettings, Scanner};
use headroom::layout::{discover, LayoutSettings, NodeLayout, PathOrigin, Setting};
use headroom::metrics::{self, ScanTotals};
use headroom::model::{Pull, ReadFrom, Status, SCHEMA};
use headroom::model::{State, ThresholdsOrigin};
use headroom::runtime::{ProblemKind, Reader, RuntimeKind};
use headroom::walk::{ErrorKind, WalkOptions};
use headroom::{audit, inventory};
use rustix::process::{kill_process, Pid, Signal};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

// ------------------------------------------------------------ the docs

/// The rows of every table of `docs/<doc>` whose header row is `header`.
fn table_rows(doc: &str, header: &[&str]) -> Vec<Vec<String>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs").join(doc);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cells = |line: &str| -> Option<Vec<String>> {
        let inner = line.trim().strip_prefix('|')?.strip_suffix('|')?;
        Some(inner.split('|').map(|c| c.trim().to_string()).collect())
    };
    let mut rows = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if cells(line).is_none_or(|c| c != header) {
            continue;
        }
        lines.next(); // |---|---|
        for line in lines.by_ref() {
            let Some(row) = cells(line) else { break };
            assert_eq!(row.len(), header.len(), "docs/{doc}: {line}");
            rows.push(row);
        }
    }
    assert!(
        !rows.is_empty(),
        "docs/{doc} has no table headed {header:?}"
    );
    rows
}

/// The texts in backticks in `cell`.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(String::from)
        .collect()
}

/// The one text in backticks in `cell` (a key, a metric, a command).
fn code(doc: &str, cell: &str) -> String {
    match &code_spans(cell)[..] {
        [one] => one.clone(),
        _ => panic!("docs/{doc}: {cell:?} should name one thing in backticks"),
    }
}

/// A Values cell: the values in backticks, or None for `—` (any value).
fn listed(cell: &str) -> Option<BTreeSet<String>> {
    let spans = code_spans(cell);
    (!spans.is_empty()).then(|| spans.into_iter().collect())
}

/// Asserts that `failures` is empty, listing them all.
fn assert_none(failures: &[String]) {
    let mut said = BTreeSet::new();
    let failures: Vec<&str> = failures
        .iter()
        .map(String::as_str)
        .filter(|f| said.insert(*f))
        .collect();
    assert!(
        failures.is_empty(),
        "{} contract failure(s):\n- {}",
        failures.len(),
        failures.join("\n- ")
    );
}

/// Each of `left` not in `right`, as a readable list.
fn missing<'a>(left: &'a BTreeSet<String>, right: &BTreeSet<String>) -> Vec<&'a str> {
    left.iter()
        .filter(|v| !right.contains(*v))
        .map(String::as_str)
        .collect()
}

// ------------------------------------------------------ what the code has

/// Every runtime name, as JSON and labels spell it. The match stops the
/// build when a runtime is added without this list.
fn runtime_kinds() -> BTreeSet<String> {
    let all = [
        RuntimeKind::Docker,
        RuntimeKind::Containerd,
        RuntimeKind::Crio,
    ];
    for kind in all {
        match kind {
            RuntimeKind::Docker | RuntimeKind::Containerd | RuntimeKind::Crio => {}
        }
        assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
    }
    all.iter().map(|k| k.as_str().to_string()).collect()
}

/// Every verdict state (the match stops the build when one is added).
fn states() -> BTreeSet<String> {
    let all = [State::Ok, State::Warning, State::Pressure];
    for state in all {
        match state {
            State::Ok | State::Warning | State::Pressure => {}
        }
    }
    all.iter().map(|s| s.as_str().to_string()).collect()
}

fn error_kinds() -> BTreeSet<String> {
    ErrorKind::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect()
}

fn problem_kinds() -> BTreeSet<String> {
    ProblemKind::ALL
        .iter()
        .map(|k| k.as_str().to_string())
        .collect()
}

fn readers() -> BTreeSet<String> {
    Reader::all().map(|r| r.as_str().to_string()).collect()
}

/// Every source of the thresholds, as JSON spells it.
fn thresholds_origins() -> BTreeSet<String> {
    ThresholdsOrigin::ALL
        .iter()
        .map(|o| {
            assert_eq!(serde_json::to_value(o).unwrap(), json!(o.label()));
            o.label().to_string()
        })
        .collect()
}

/// Every place a layout path comes from (the match stops the build when
/// one is added).
fn path_origins() -> BTreeSet<String> {
    let all = [
        PathOrigin::Setting,
        PathOrigin::Discovered,
        PathOrigin::Default,
    ];
    for origin in all {
        match origin {
            PathOrigin::Setting | PathOrigin::Discovered | PathOrigin::Default => {}
        }
    }
    all.iter()
        .map(|o| match serde_json::to_value(o).unwrap() {
            Value::String(name) => name,
            other => panic!("{o:?} is {other} in JSON"),
        })
        .collect()
}

// ------------------------------------------------------- the fixture node

/// A node under a temp dir: a Docker overlay2 store, a kubelet root, pod
/// logs and an empty containerd root; containerd itself is absent. Its
/// `proc` shows a kubelet whose command line names its root, config and
/// drop-in directory: the layout finds those there, as on a node.
struct Node {
    dir: TempDir,
}

/// The fixture kubelet's pid.
const KUBELET_PID: u32 = 4242;

impl Node {
    fn new() -> Node {
        let node = Node {
            dir: tempfile::tempdir().unwrap(),
        };
        for rel in ["kubelet/config.d", "containerd", "pods"] {
            fs::create_dir_all(node.path(rel)).unwrap();
        }
        fs::write(node.path("config.toml"), "").unwrap();
        let kubelet = [
            "/usr/bin/kubelet".to_string(),
            format!("--root-dir={}", node.path("kubelet").display()),
            format!("--config={}", node.path("kubelet/config.yaml").display()),
            format!("--config-dir={}", node.path("kubelet/config.d").display()),
        ];
        let cmdline: String = kubelet.iter().map(|arg| format!("{arg}\0")).collect();
        node.write(&format!("proc/{KUBELET_PID}/cmdline"), cmdline);
        node
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes `contents` at `rel`, with its parent directories.
    fn write(&self, rel: &str, contents: impl AsRef<[u8]>) {
        let path = self.path(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    /// The layout as the agent resolves it: the runtimes' paths and the pod
    /// logs set (as by flags), the kubelet's discovered under the node's
    /// `proc`.
    fn layout(&self) -> NodeLayout {
        let set = |rel: &str, flag: &str| {
            Some(Setting {
                path: self.path(rel),
                at: flag.to_string(),
            })
        };
        let settings = LayoutSettings {
            docker_root: set("docker", "--docker-root"),
            containerd_address: set("containerd.sock", "--containerd-address"),
            containerd_root: set("containerd", "--containerd-root"),
            pod_logs: set("pods", "--pod-logs"),
            // No containers-storage here: never the host's.
            containers_storage_conf: set("storage.conf", "--containers-storage-conf"),
            containers_storage_root: set("containers-storage", "--containers-storage-root"),
            ..LayoutSettings::default()
        };
        let found = discover(self.dir.path());
        NodeLayout::resolve(&settings, Some(&found), Duration::from_secs(1))
    }

    /// The layout as `headroom` flags, with `kubelet_config`.
    fn flags(&self, kubelet_config: &Path) -> Vec<String> {
        let layout = self.layout();
        let flag = |name: &str, path: &Path| [format!("--{name}"), path.display().to_string()];
        [
            flag("docker-root", &layout.docker_root),
            flag("containerd-address", &layout.containerd_address),
            flag("containerd-root", &layout.containerd_root),
            flag("kubelet-root", &layout.kubelet_root),
            flag("kubelet-config", kubelet_config),
            flag("pod-logs", &layout.pod_logs),
            flag("containers-storage-conf", &layout.containers_storage_conf),
            flag("containers-storage-root", &self.path("containers-storage")),
            ["--containerd-timeout".into(), "1s".into()],
        ]
        .concat()
    }
}

/// 64 hex digits named by `label`.
fn hex(label: &str) -> String {
    hex_of(label.as_bytes())
}

/// The pod the fixture's container belongs to.
const POD_UID: &str = "0b0e6c1a-1111-2222-3333-444455556666";

/// A node with one of everything the status document lists.
fn full_node() -> Node {
    let node = Node::new();
    // An image of two layers, as dockerd writes it.
    let diffs = [hex("diff base"), hex("diff app")].map(|h| format!("sha256:{h}"));
    let base = diffs[0].clone();
    let app = format!("sha256:{}", hex(&format!("{base} {}", diffs[1])));
    for (i, chain) in [&base, &app].into_iter().enumerate() {
        let entry = format!("docker/image/overlay2/layerdb/sha256/{}", &chain[7..]);
        let cache_id = hex(&format!("cache {chain}"));
        node.write(&format!("{entry}/cache-id"), &cache_id);
        node.write(&format!("{entry}/diff"), &diffs[i]);
        node.write(&format!("{entry}/size"), "0");
        if i > 0 {
            node.write(&format!("{entry}/parent"), &base);
        }
        // Directories side by side: the walk's limit makes errors of them.
        for dir in ["usr/lib/a", "usr/share/b", "etc/c"] {
            node.write(
                &format!("docker/overlay2/{cache_id}/diff/{dir}/f"),
                "x".repeat(5000),
            );
        }
    }
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2024-02-03T04:05:06Z",
        "rootfs": {"type": "layers", "diff_ids": diffs},
    }))
    .unwrap();
    let image = hex_of(&config);
    node.write(
        &format!("docker/image/overlay2/imagedb/content/sha256/{image}"),
        &config,
    );
    let repositories =
        json!({"Repositories": {"demo/app": {"demo/app:1": format!("sha256:{image}")}}});
    node.write(
        "docker/image/overlay2/repositories.json",
        repositories.to_string(),
    );
    // A container of pod shop/web-0, with a writable layer and a log.
    let id = hex("container web");
    let container = json!({
        "ID": id, "Name": "/k8s_web_web-0", "Image": format!("sha256:{image}"),
        "Config": {"Image": "demo/app:1", "Labels": {
            "io.kubernetes.pod.name": "web-0", "io.kubernetes.pod.namespace": "shop",
            "io.kubernetes.pod.uid": POD_UID, "io.kubernetes.container.name": "web",
        }},
        "State": {"Running": true}, "Driver": "overlay2",
    });
    node.write(
        &format!("docker/containers/{id}/config.v2.json"),
        container.to_string(),
    );
    node.write(
        &format!("docker/containers/{id}/{id}-json.log"),
        "{\"log\":\"hello\\n\"}\n",
    );
    let mount_id = hex("mount web");
    node.write(
        &format!("docker/image/overlay2/layerdb/mounts/{id}/mount-id"),
        &mount_id,
    );
    node.write(&format!("docker/overlay2/{mount_id}/diff/tmp/scratch"), "s");
    // Its pod's logs, a gone pod's logs, and a directory of no pod (a problem).
    node.write(&format!("pods/shop_web-0_{POD_UID}/web/0.log"), "log");
    node.write("pods/shop_gone-0_uid-gone/app/0.log", "log");
    node.write("pods/stray/app/0.log", "log");
    // The pod's emptyDir, and a Docker pull in flight.
    let volume = format!("kubelet/pods/{POD_UID}/volumes/kubernetes.io~empty-dir/cache");
    node.write(&format!("{volume}/data"), "d".repeat(10_000));
    node.write("docker/tmp/GetImageBlob123456", "partial layer");
    node
}

/// The hex sha256 of `bytes`.
fn hex_of(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Walk options that turn most of the fixture's directories into `limit`
/// errors, so the document has error samples.
fn erring_walk() -> WalkOptions {
    WalkOptions {
        threads: 2,
        max_pending_dirs: 1,
        ..WalkOptions::default()
    }
}

/// A runtime for the scans' containerd calls (there is no containerd: they
/// fail at once).
fn async_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// The fixture node as `status --local` sees it (`source` `scan`).
fn scanned(node: &Node) -> Status {
    let runtime = async_runtime();
    inventory::scan(&node.layout(), &erring_walk(), &|_| {}, runtime.handle()).status
}

/// `status` with the summary of the layer audit of its images, as the
/// agent's documents carry it once its auditor has been through them.
fn audited(mut status: Status) -> Status {
    let stacks = audit::stacks(&status);
    let report =
        audit::Auditor::default().audit(&status.node, &stacks, &mut audit::Pace::unlimited());
    status.audit = Some(report.summary());
    status
}

/// The fixture node as the agent's first pass sees it (`source` `agent`).
fn agent_pass(node: &Node) -> Status {
    let settings = ScanSettings {
        rescan_interval: Duration::from_secs(60),
        rescan_jitter: 0.0,
        resync_interval: Duration::from_secs(60),
        scan_deadline: Duration::from_secs(60),
        walk: erring_walk(),
    };
    let runtime = async_runtime();
    Scanner::new(node.layout(), settings, runtime.handle().clone()).pass(true, true)
}

// --------------------------------------------------- the binary and agent

/// Runs `headroom args…` with the node's empty config file and no
/// `HEADROOM_*` variable from the caller.
fn headroom(node: &Node, args: &[String]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headroom"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HEADROOM_") {
            cmd.env_remove(key);
        }
    }
    // Registry credentials are looked up under HOME and DOCKER_CONFIG:
    // the node's own (empty) places, never the caller's.
    cmd.args(args)
        .env("HEADROOM_CONFIG", node.path("config.toml"))
        .env("HOME", node.path("home"))
        .env("DOCKER_CONFIG", node.path("docker-config"))
        .env("NO_COLOR", "1");
    cmd
}

fn run(node: &Node, args: &[String]) -> Output {
    headroom(node, args).output().unwrap()
}

fn args(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// A port nothing listens on (a moment ago).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// `headroom agent` on the node at `port`; its stderr goes to `agent.log`.
fn start_agent(node: &Node, port: u16) -> Child {
    let mut words = args(&["agent", "--log-level", "warn"]);
    words.extend(node.flags(&node.path("kubelet/config.yaml")));
    words.extend(args(&["--listen", &format!("127.0.0.1:{port}")]));
    headroom(node, &words)
        .stdout(Stdio::null())
        .stderr(File::create(node.path("agent.log")).unwrap())
        .spawn()
        .unwrap()
}

/// The exit code of `child`, killing it after `patience`.
fn exit_code(child: &mut Child, patience: Duration, log: &Path) -> Option<i32> {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > patience {
            let _ = child.kill();
            let _ = child.wait();
            let log = fs::read_to_string(log).unwrap_or_default();
            panic!("the agent did not exit within {patience:?}; its log:\n{log}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM to the agent; its exit code.
fn stop_agent(node: &Node, mut child: Child) -> Option<i32> {
    kill_process(Pid::from_child(&child), Signal::TERM).unwrap();
    exit_code(&mut child, Duration::from_secs(30), &node.path("agent.log"))
}

/// An HTTP answer: status, lowercased header block, body.
struct Reply {
    status: u16,
    headers: String,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .map(str::trim)
    }
}

fn get(port: u16, path: &str) -> std::io::Result<Reply> {
    exchange(
        port,
        format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").as_bytes(),
    )
}

/// A POST of the JSON `body` to `path`.
fn post(port: u16, path: &str, body: &Value) -> std::io::Result<Reply> {
    let body = body.to_string();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    exchange(port, format!("{head}{body}").as_bytes())
}

/// Sends `request` to the agent at `port`; its reply, read to the end.
fn exchange(port: u16, request: &[u8]) -> std::io::Result<Reply> {
    let mut conn = TcpStream::connect(("127.0.0.1", port))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    conn.write_all(request)?;
    let mut raw = String::new();
    conn.read_to_string(&mut raw)?;
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
    Ok(Reply {
        status: status.unwrap_or(0),
        headers: head.to_ascii_lowercase(),
        body: body.to_string(),
    })
}

/// Waits until the agent at `port` answers `path` with 200.
fn wait_for(node: &Node, port: u16, path: &str) -> Reply {
    let started = Instant::now();
    loop {
        match get(port, path) {
            Ok(reply) if reply.status == 200 => return reply,
            _ if started.elapsed() > Duration::from_secs(60) => {
                let log = fs::read_to_string(node.path("agent.log")).unwrap_or_default();
                panic!("the agent never answered {path} with 200; its log:\n{log}");
            }
            _ => thread::sleep(Duration::from_millis(100)),
        }
    }
}

// ------------------------------------------------------- docs/status.md

/// A row of docs/status.md.
struct KeyDoc {
    types: BTreeSet<String>,
    values: Option<BTreeSet<String>>,
}

const JSON_TYPES: [&str; 7] = [
    "string", "integer", "number", "boolean", "array", "object", "null",
];

fn documented_keys() -> BTreeMap<String, KeyDoc> {
    let mut keys = BTreeMap::new();
    for row in table_rows("status.md", &["Key", "Type", "Unit", "Values", "Meaning"]) {
        let key = code("status.md", &row[0]);
        let types: BTreeSet<String> = row[1].split(" or ").map(|t| t.trim().to_string()).collect();
        for t in &types {
            assert!(
                JSON_TYPES.contains(&t.as_str()),
                "docs/status.md: `{key}` has type {t:?}"
            );
        }
        let doc = KeyDoc {
            types,
            values: listed(&row[3]),
        };
        assert!(
            keys.insert(key.clone(), doc).is_none(),
            "docs/status.md lists `{key}` twice"
        );
    }
    keys
}

/// The maps of the document (objects whose keys are data) and the
/// placeholder their keys go by: `prediction` → `<signal>`.
fn maps(keys: &BTreeMap<String, KeyDoc>) -> BTreeMap<String, String> {
    let mut maps = BTreeMap::new();
    for key in keys.keys() {
        let segments: Vec<&str> = key.split('.').collect();
        for (i, segment) in segments.iter().enumerate() {
            if segment.starts_with('<') {
                maps.insert(segments[..i].join("."), segment.to_string());
            }
        }
    }
    maps
}

/// What documents showed at one key path: its JSON types, and its values
/// (a scalar's text, or the keys a map entry took).
#[derive(Debug, Default)]
struct Seen {
    types: BTreeSet<String>,
    values: BTreeSet<String>,
}

/// Key paths of status documents, as docs/status.md writes them.
struct Observed<'a> {
    maps: &'a BTreeMap<String, String>,
    paths: BTreeMap<String, Seen>,
}

impl Observed<'_> {
    fn add(&mut self, document: &Value) {
        self.visit("", document);
    }

    fn visit(&mut self, path: &str, value: &Value) {
        let map_entry = path.rsplit('.').next().is_some_and(|s| s.starts_with('<'));
        // The root has no row, nor has an object in an array: its keys do.
        let element_object = path.ends_with("[]") && value.is_object();
        if !path.is_empty() && !element_object {
            let seen = self.paths.entry(path.to_string()).or_default();
            seen.types.insert(json_type(value).to_string());
            let text = match value {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) => Some(n.to_string()),
                Value::Bool(b) => Some(b.to_string()),
                _ => None,
            };
            if let Some(text) = text.filter(|_| !map_entry) {
                seen.values.insert(text);
            }
        }
        let join = |key: &str| {
            if path.is_empty() {
                key.to_string()
            } else {
                format!("{path}.{key}")
            }
        };
        match value {
            Value::Object(fields) => {
                let placeholder = self.maps.get(path).cloned();
                for (key, field) in fields {
                    match &placeholder {
                        Some(name) => {
                            let entry = join(name);
                            let seen = self.paths.entry(entry.clone()).or_default();
                            seen.values.insert(key.clone());
                            self.visit(&entry, field);
                        }
                        None => self.visit(&join(key), field),
                    }
                }
            }
            Value::Array(items) => {
                for item in items {
                    self.visit(&format!("{path}[]"), item);
                }
            }
            _ => {}
        }
    }

    /// What disagrees with docs/status.md; `complete`: every documented
    /// key must have been seen too.
    fn failures(&self, what: &str, doc: &BTreeMap<String, KeyDoc>, complete: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (path, seen) in &self.paths {
            let Some(row) = doc.get(path) else {
                out.push(format!(
                    "{what} has `{path}` ({:?}), which docs/status.md does not list",
                    seen.types
                ));
                continue;
            };
            let types = missing(&seen.types, &row.types);
            if !types.is_empty() {
                out.push(format!(
                    "{what}: `{path}` is {types:?}; docs/status.md says {:?}",
                    row.types
                ));
            }
            if let Some(values) = &row.values {
                let unlisted = missing(&seen.values, values);
                if !unlisted.is_empty() {
                    out.push(format!(
                        "{what}: `{path}` takes {unlisted:?}, not in docs/status.md's {values:?}"
                    ));
                }
            }
        }
        if complete {
            for path in doc.keys().filter(|p| !self.paths.contains_key(*p)) {
                out.push(format!(
                    "docs/status.md lists `{path}`, which {what} does not have"
                ));
            }
        }
        out
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The values the code defines for the keys whose values no single node
/// shows (other runtimes, other states, other errors).
fn values_in_code() -> BTreeMap<&'static str, BTreeSet<String>> {
    let runtimes = runtime_kinds();
    let mut containers = runtimes.clone();
    containers.insert("kubelet".to_string());
    BTreeMap::from([
        ("schema", BTreeSet::from([SCHEMA.to_string()])),
        ("images[].runtime", runtimes.clone()),
        ("layers[].runtime", runtimes.clone()),
        ("pulls[].runtime", runtimes.clone()),
        ("runtimes[].runtime", runtimes.clone()),
        ("audit.per_image[].runtime", runtimes.clone()),
        ("reclaimable_by_runtime.<runtime>", runtimes),
        ("containers[].runtime", containers),
        ("prediction.<signal>.state", states()),
        ("scan.errors_by_kind.<kind>", error_kinds()),
        ("scan.error_samples[].kind", error_kinds()),
        ("problems[].kind", problem_kinds()),
        ("problems[].reader", readers()),
        ("thresholds_origin", thresholds_origins()),
        ("layout.paths[].origin", path_origins()),
        (
            "runtimes[].read_from",
            ReadFrom::ALL
                .iter()
                .map(|r| r.as_str().to_string())
                .collect(),
        ),
    ])
}

/// The fixture's documents, from the library and the binary, against the
/// tables: every key they have is listed with its type and values, and
/// every listed key, type and value is one the code has.
#[test]
fn the_status_document_is_what_docs_status_md_says() {
    let doc = documented_keys();
    let maps = maps(&doc);
    let node = full_node();
    let mut failures = Vec::new();

    let mut fixture = Observed {
        maps: &maps,
        paths: BTreeMap::new(),
    };
    for status in [scanned(&node), audited(agent_pass(&node))] {
        fixture.add(&serde_json::to_value(&status).unwrap());
    }
    failures.extend(fixture.failures("the fixture node's documents", &doc, true));
    // Enumerations, both ways: what the code defines, else what the node shows.
    let in_code = values_in_code();
    for (path, row) in &doc {
        let Some(values) = &row.values else { continue };
        let expected = match in_code.get(path.as_str()) {
            Some(v) => v.clone(),
            None => fixture
                .paths
                .get(path)
                .map(|s| s.values.clone())
                .unwrap_or_default(),
        };
        if *values != expected {
            failures.push(format!(
                "docs/status.md lists {values:?} for `{path}`; the code has {expected:?}"
            ));
        }
    }
    for path in in_code.keys().filter(|p| !doc.contains_key(**p)) {
        failures.push(format!("docs/status.md has no row `{path}`"));
    }
    // The fixture's kubelet is found under its proc, not assumed.
    let origins = fixture.paths.get("layout.paths[].origin");
    if !origins.is_some_and(|o| o.values.contains("discovered")) {
        failures.push(format!(
            "the fixture node's layout has no discovered path: {:?}",
            origins.map(|o| &o.values)
        ));
    }

    // The binary prints the same shape.
    let mut words = args(&["status", "--local", "--json"]);
    words.extend(node.flags(&node.path("kubelet/config.yaml")));
    let out = run(&node, &words);
    match serde_json::from_slice::<Value>(&out.stdout) {
        Ok(document) => {
            let mut printed = Observed {
                maps: &maps,
                paths: BTreeMap::new(),
            };
            printed.add(&document);
            failures.extend(printed.failures("`headroom status --json`", &doc, false));
        }
        Err(e) => failures.push(format!(
            "`headroom status --json` printed no JSON: {e}: {out:?}"
        )),
    }
    assert_none(&failures);
}

// ------------------------------------------------------ docs/metrics.md

/// A row of docs/metrics.md's metric tables.
struct MetricDoc {
    kind: String,
    unit: String,
    labels: Vec<String>,
}

fn documented_metrics() -> BTreeMap<String, MetricDoc> {
    let mut metrics = BTreeMap::new();
    for row in table_rows(
        "metrics.md",
        &["Metric", "Type", "Unit", "Labels", "Meaning"],
    ) {
        let name = code("metrics.md", &row[0]);
        let doc = MetricDoc {
            kind: row[1].clone(),
            unit: row[2].clone(),
            labels: code_spans(&row[3]),
        };
        assert!(
            metrics.insert(name.clone(), doc).is_none(),
            "docs/metrics.md lists `{name}` twice"
        );
    }
    metrics
}

/// docs/metrics.md's label table: each label's values (None: any).
fn documented_labels() -> BTreeMap<String, Option<BTreeSet<String>>> {
    table_rows("metrics.md", &["Label", "Values", "Meaning"])
        .into_iter()
        .map(|row| (code("metrics.md", &row[0]), listed(&row[1])))
        .collect()
}

/// One metric family of OpenMetrics text.
#[derive(Debug, Default)]
struct Family {
    /// Its name in `# TYPE` (without `_total` or `_info`).
    name: String,
    kind: String,
    unit: Option<String>,
    /// Each sample's labels, in order.
    samples: Vec<Vec<(String, String)>>,
}

/// The families of OpenMetrics `text`, keyed by the name PromQL sees
/// (`_total` on counters, `_info` on info metrics).
fn families(text: &str) -> BTreeMap<String, Family> {
    let mut out: BTreeMap<String, Family> = BTreeMap::new();
    // A family's samples follow its `# TYPE` line.
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            let suffix = match kind {
                "counter" => "_total",
                "info" => "_info",
                _ => "",
            };
            let promql = format!("{name}{suffix}");
            let family = out.entry(promql.clone()).or_default();
            family.name = name.to_string();
            family.kind = kind.to_string();
            current = Some(promql);
        } else if let Some(rest) = line.strip_prefix("# UNIT ") {
            let (_, unit) = rest.split_once(' ').unwrap();
            let family = current.as_ref().and_then(|c| out.get_mut(c));
            family.expect("# UNIT after # TYPE").unit = Some(unit.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (name, labels) = sample(line);
            let family = current.as_ref().and_then(|c| out.get_mut(c));
            let family = family.unwrap_or_else(|| panic!("no # TYPE before {line}"));
            assert!(
                name.starts_with(&family.name),
                "{line} after # TYPE {}",
                family.name
            );
            family.samples.push(labels);
        }
    }
    out
}

/// A sample line's name and labels (values unescaped).
fn sample(line: &str) -> (String, Vec<(String, String)>) {
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..end].to_string();
    let mut labels = Vec::new();
    if line[end..].starts_with('{') {
        let mut chars = line[end + 1..].chars();
        loop {
            let label: String = chars.by_ref().take_while(|&c| c != '=').collect();
            let label = label.trim_start_matches(',').to_string();
            if label.is_empty() || label.starts_with('}') {
                break;
            }
            assert_eq!(chars.next(), Some('"'), "{line}");
            let mut value = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(other) => value.push(other),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            labels.push((label, value));
            if chars.clone().next() == Some('}') {
                break;
            }
        }
    }
    (name, labels)
}

/// What in `text` disagrees with docs/metrics.md; `complete`: every
/// documented metric must be there, with a sample.
fn metric_failures(
    what: &str,
    text: &str,
    complete: bool,
) -> (Vec<String>, BTreeMap<String, BTreeSet<String>>) {
    let doc = documented_metrics();
    let label_doc = documented_labels();
    let families = families(text);
    let mut out = Vec::new();
    let mut values: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, family) in &families {
        let Some(row) = doc.get(name) else {
            out.push(format!(
                "{what} has `{name}`, which docs/metrics.md does not list"
            ));
            continue;
        };
        if family.kind != row.kind {
            out.push(format!(
                "{what}: `{name}` is a {}; docs/metrics.md says {}",
                family.kind, row.kind
            ));
        }
        let named = ["bytes", "seconds"]
            .into_iter()
            .find(|u| family.name.ends_with(&format!("_{u}")));
        if family.unit.as_deref() != named {
            out.push(format!(
                "{what}: `{name}` has unit line {:?}; a name ending in its unit has one",
                family.unit
            ));
        }
        if named.is_some_and(|u| u != row.unit) {
            out.push(format!(
                "{what}: `{name}` is in {named:?}; docs/metrics.md says {}",
                row.unit
            ));
        }
        if complete && family.samples.is_empty() {
            out.push(format!("{what}: `{name}` has no sample to pin its labels"));
        }
        for labels in &family.samples {
            let names: Vec<String> = labels.iter().map(|l| l.0.clone()).collect();
            if names != row.labels {
                out.push(format!(
                    "{what}: `{name}` has labels {names:?}; docs/metrics.md says {:?}",
                    row.labels
                ));
            }
            for (label, value) in labels.iter().filter(|l| !l.1.is_empty()) {
                values
                    .entry(label.clone())
                    .or_default()
                    .insert(value.clone());
                if let Some(Some(listed)) = label_doc.get(label) {
                    if !listed.contains(value) {
                        out.push(format!(
                            "{what}: `{name}` has {label}={value:?}, not in docs/metrics.md's {listed:?}"
                        ));
                    }
                }
            }
        }
    }
    if complete {
        for name in doc.keys().filter(|n| !families.contains_key(*n)) {
            out.push(format!(
                "docs/metrics.md lists `{name}`, which {what} does not have"
            ));
        }
    }
    (out, values)
}

/// The metrics of the fixture node (with a pull of known size and a trend
/// added, so that every metric has a series) against the tables.
#[test]
fn the_metrics_are_what_docs_metrics_md_says() {
    let node = full_node();
    let mut status = audited(scanned(&node));
    status.pulls.push(Pull {
        reference: "registry.example/app@sha256:beef".into(),
        offset_bytes: 300,
        total_bytes: 1000,
        ..Pull::default()
    });
    for prediction in status.prediction.values_mut() {
        prediction.seconds_until = Some(3600);
    }
    let mut totals = ScanTotals::default();
    totals.record(&status.scan, true);
    let text = metrics::encode(&status, &totals, 20).unwrap();
    let (mut failures, values) = metric_failures("the fixture node's metrics", &text, true);

    // Labels, both ways: the table lists exactly the labels the metrics use,
    // and exactly the values the node shows (every kind is there at 0).
    let label_doc = documented_labels();
    let used: BTreeSet<String> = documented_metrics()
        .into_values()
        .flat_map(|m| m.labels)
        .collect();
    let listed: BTreeSet<String> = label_doc.keys().cloned().collect();
    for label in missing(&used, &listed) {
        failures.push(format!("docs/metrics.md's label table has no `{label}`"));
    }
    for label in missing(&listed, &used) {
        failures.push(format!(
            "docs/metrics.md's label table has `{label}`, which no metric has"
        ));
    }
    for (label, documented) in &label_doc {
        let Some(documented) = documented else {
            continue;
        };
        let seen = values.get(label).cloned().unwrap_or_default();
        if *documented != seen {
            failures.push(format!(
                "docs/metrics.md lists {documented:?} for label `{label}`; the metrics have {seen:?}"
            ));
        }
    }
    // `kind` is the walker's on scan errors, the problem's on problems and
    // the audit's on wasted bytes.
    let kinds = values.get("kind").cloned().unwrap_or_default();
    let waste_kinds = audit::KINDS.iter().map(|k| k.as_str().to_string());
    let code_kinds: BTreeSet<String> = (error_kinds().into_iter().chain(problem_kinds()))
        .chain(waste_kinds)
        .collect();
    if kinds != code_kinds {
        failures.push(format!(
            "kind={kinds:?} but the walker and the problems have {code_kinds:?}"
        ));
    }
    assert_none(&failures);
}

// ---------------------------------------------------------- docs/http.md

/// The routes of `src/http.rs`: every `.route("<path>"` (however wrapped).
fn routes_in_code() -> BTreeSet<String> {
    let source = include_str!("../src/http.rs");
    source
        .split(".route(")
        .skip(1)
        .filter_map(|rest| rest.trim_start().strip_prefix('"'))
        .filter_map(|rest| rest.split_once('"').map(|(path, _)| path.to_string()))
        .collect()
}

/// A running agent on the fixture node: it serves every documented route
/// with its documented content type, its document and metrics are what the
/// docs say, and SIGTERM stops it with 0.
#[test]
fn the_agent_serves_what_docs_http_md_says() {
    let routes: BTreeMap<String, String> =
        table_rows("http.md", &["Path", "Content type", "Answer"])
            .into_iter()
            .map(|row| (code("http.md", &row[0]), code("http.md", &row[1])))
            .collect();
    let mut failures = Vec::new();
    let documented: BTreeSet<String> = routes.keys().cloned().collect();
    let in_code = routes_in_code();
    for path in missing(&in_code, &documented) {
        failures.push(format!(
            "src/http.rs routes `{path}`, which docs/http.md does not list"
        ));
    }
    for path in missing(&documented, &in_code) {
        failures.push(format!(
            "docs/http.md lists `{path}`, which src/http.rs does not route"
        ));
    }

    let node = full_node();
    let port = free_port();
    let agent = start_agent(&node, port);
    wait_for(&node, port, "/readyz");
    // A path missing from the code is reported above; the rest must answer.
    for (path, content_type) in routes.iter().filter(|r| in_code.contains(r.0)) {
        let reply = if path == CHECK_PULL {
            let reply = post(port, path, &question()).unwrap();
            if reply.status != 200 {
                failures.push(format!("POST {path}: {} {:?}", reply.status, reply.body));
            }
            reply
        } else {
            wait_for(&node, port, path)
        };
        if reply.header("content-type") != Some(content_type.as_str()) {
            failures.push(format!(
                "GET {path}: content type {:?}; docs/http.md says {content_type:?}",
                reply.header("content-type")
            ));
        }
        match path.as_str() {
            "/api/v1/status" => {
                let doc = documented_keys();
                let maps = maps(&doc);
                let mut served = Observed {
                    maps: &maps,
                    paths: BTreeMap::new(),
                };
                served.add(&serde_json::from_str(&reply.body).unwrap());
                failures.extend(served.failures("the agent's /api/v1/status", &doc, false));
            }
            "/metrics" => {
                failures.extend(metric_failures("the agent's /metrics", &reply.body, false).0);
            }
            CHECK_PULL => {
                let answer = serde_json::from_str(&reply.body).unwrap_or(Value::Null);
                failures.extend(answer_failures(&answer));
            }
            _ => {}
        }
    }
    let exit = stop_agent(&node, agent);
    if exit != Some(0) {
        failures.push(format!("the agent exited {exit:?} on SIGTERM"));
    }
    assert_none(&failures);
}

/// The agent's what-if route, which takes a POST.
const CHECK_PULL: &str = "/api/v1/check-pull";

/// A what-if question: an image of two layers the fixture node lacks.
fn question() -> Value {
    let layer = |n: u8| {
        json!({
            "digest": format!("sha256:{}", hex(&format!("blob {n}"))),
            "diff_id": format!("sha256:{}", hex(&format!("diff {n}"))),
            "compressed_bytes": 1000,
            "unpacked": {"stream_bytes": 3000, "disk_bytes": 8192, "inodes": 4,
                         "exact": true, "method": "decoded whole", "fallback": null},
        })
    };
    json!({
        "schema": 1, "image": "registry.example/app:2",
        "reference": "registry.example/app:2", "index_digest": null,
        "manifest_digest": format!("sha256:{}", hex("manifest")),
        "config_digest": format!("sha256:{}", hex("config")),
        "platform": "linux/amd64", "runtime": null, "namespace": null,
        "layers": [layer(1), layer(2)],
    })
}

/// The keys docs/check-pull.md lists (`layers[].digest`, `prediction.<signal>`).
fn check_pull_keys() -> BTreeSet<String> {
    table_rows("check-pull.md", &["Key", "Type", "Meaning"])
        .iter()
        .flat_map(|row| code_spans(&row[0]))
        .collect()
}

/// The key paths of a check-pull answer, as docs/check-pull.md writes
/// them: array elements as `[]`, the prediction's signals as `<signal>`
/// (their keys are status.md's).
fn answer_paths(path: &str, value: &Value, out: &mut BTreeSet<String>) {
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match value {
        Value::Object(map) if path == "prediction" => {
            out.extend(map.keys().map(|_| at("<signal>")));
        }
        Value::Object(map) => {
            for (key, v) in map {
                out.insert(at(key));
                answer_paths(&at(key), v, out);
            }
        }
        Value::Array(items) => {
            for item in items {
                answer_paths(&format!("{path}[]"), item, out);
            }
        }
        _ => {}
    }
}

/// What the agent's answer has that docs/check-pull.md does not list
/// (a key is listed by its row, or by its children's), and the top-level
/// keys it lists that the answer lacks.
fn answer_failures(answer: &Value) -> Vec<String> {
    let documented = check_pull_keys();
    let listed = |path: &str| {
        documented.contains(path)
            || documented.iter().any(|key| {
                key.strip_prefix(path)
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
            })
    };
    let mut seen = BTreeSet::new();
    answer_paths("", answer, &mut seen);
    let mut failures: Vec<String> = seen
        .iter()
        .filter(|path| !listed(path))
        .map(|path| {
            format!("the agent's answer has `{path}`, which docs/check-pull.md does not list")
        })
        .collect();
    let top = |key: &String| key.split(['.', '[']).next().unwrap_or_default().to_string();
    let answered: BTreeSet<String> = answer
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys().cloned())
        .collect();
    let top_documented: BTreeSet<String> = documented.iter().map(top).collect();
    failures.extend(
        missing(&top_documented, &answered)
            .into_iter()
            .map(|key| format!("docs/check-pull.md lists `{key}`, which the agent's answer lacks")),
    );
    failures
}

// --------------------------------------------------- docs/exit-codes.md

/// A registry on loopback serving `demo/app:1`: one layer of 1000 bytes
/// (never downloaded) and its config. Returns its `host:port`.
fn registry() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", hex("diff"))]},
    }))
    .unwrap();
    let config_digest = format!("sha256:{}", hex_of(&config));
    let manifest_type = "application/vnd.oci.image.manifest.v1+json";
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": manifest_type,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": format!("sha256:{}", hex("layer")), "size": 1000}],
    }))
    .unwrap();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let _ = reader.read_line(&mut request);
            let mut header = String::new();
            while reader.read_line(&mut header).is_ok_and(|n| n > 2) {
                header.clear();
            }
            let path = request.split(' ').nth(1).unwrap_or_default();
            let (status, content_type, body) = if path == "/v2/demo/app/manifests/1" {
                ("200 OK", manifest_type, &manifest[..])
            } else if path.starts_with("/v2/private/") {
                // No credentials open it: a challenge, then a refusal.
                let _ = write!(
                    stream,
                    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"r\"\r\n\
                     Content-Length: 0\r\nConnection: close\r\n\r\n"
                );
                continue;
            } else if path == format!("/v2/demo/app/blobs/{config_digest}") {
                ("200 OK", "application/octet-stream", &config[..])
            } else {
                ("404 Not Found", "text/plain", &b""[..])
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    address
}

/// A TLS server on loopback whose certificate is self-signed (so trusted
/// by no one): every handshake fails. Returns its `host:port`.
fn untrusted_tls_server() -> String {
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = CertificateDer::from(certified.cert.der().to_vec());
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], PrivateKeyDer::Pkcs8(key))
        .unwrap();
    let config = std::sync::Arc::new(config);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let connection = rustls::ServerConnection::new(config.clone()).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            let _ = tls.read(&mut [0u8; 1024]);
        }
    });
    address
}

/// Kubelet configs that force each verdict on any disk with room for a
/// 1000-byte layer: thresholds of 1 byte (never crossed) or of 1 EiB
/// (always crossed), and image GC that never runs.
fn kubelet_config(node: &Node, verdict: &str) -> PathBuf {
    let (hard, soft) = match verdict {
        "ok" => ("1", None),
        "warning" => ("1", Some("1Ei")),
        "pressure" => ("1Ei", None),
        _ => unreachable!(),
    };
    let signals =
        |value: &str| format!("{{nodefs.available: \"{value}\", imagefs.available: \"{value}\"}}");
    let mut yaml = format!(
        "kind: KubeletConfiguration\nimageGCHighThresholdPercent: 100\n\
         imageGCLowThresholdPercent: 99\nevictionHard: {}\n",
        signals(hard)
    );
    if let Some(soft) = soft {
        yaml += &format!("evictionSoft: {}\n", signals(soft));
    }
    let path = node.path(&format!("kubelet-{verdict}.yaml"));
    fs::write(&path, yaml).unwrap();
    path
}

/// Runs every case the docs name a code for; the doc's table must be
/// exactly the (command, code) pairs produced, and each run must exit with
/// the code its case is for.
#[test]
fn the_exit_codes_are_what_docs_exit_codes_md_says() {
    let documented: BTreeSet<(String, i32)> =
        table_rows("exit-codes.md", &["Command", "Code", "Meaning"])
            .into_iter()
            .map(|row| {
                let exit: i32 = row[1]
                    .parse()
                    .expect("docs/exit-codes.md: a code is a number");
                (code("exit-codes.md", &row[0]), exit)
            })
            .collect();
    let node = Node::new();
    let registry = registry();
    let image = format!("{registry}/demo/app:1");
    let mut cases: Vec<(&str, i32, &str, Vec<String>)> = Vec::new();
    for (verdict, code) in [("ok", 0), ("warning", 1), ("pressure", 2)] {
        let flags = node.flags(&kubelet_config(&node, verdict));
        let status = [args(&["status", "--local", "--json"]), flags.clone()].concat();
        cases.push(("status", code, verdict, status));
        let pull = args(&[
            "check-pull",
            &image,
            "--plain-http",
            "--platform",
            "linux/amd64",
            "--json",
        ]);
        cases.push(("check-pull", code, verdict, [pull, flags].concat()));
    }
    // Roots below a symlink loop: no filesystem can be told for them.
    let looped = node.path("loop");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    let mut no_filesystem = args(&["status", "--local"]);
    for flag in [
        "kubelet-root",
        "containerd-root",
        "docker-root",
        "containerd-address",
    ] {
        let root = looped.join(flag);
        no_filesystem.extend(args(&[&format!("--{flag}"), &root.display().to_string()]));
    }
    let gone = node.path("gone");
    cases.push(("status", 3, "no filesystem to judge", no_filesystem));
    cases.push((
        "status",
        3,
        "a usage error",
        args(&["status", "--no-such-flag"]),
    ));
    let no_node = node.flags(&node.path("none.yaml"));
    let closed = format!("127.0.0.1:{}/demo/app:1", free_port());
    let missing_ca = node.path("no-such-ca.pem").display().to_string();
    let unknown_tag = format!("{registry}/demo/app:2");
    let private = format!("{registry}/private/app:1");
    let untrusted = format!("{}/demo/app:1", untrusted_tls_server());
    let registry_cases = [
        (
            3,
            "a CA file that does not exist",
            vec![&image[..], "--plain-http", "--ca-file", &missing_ca],
        ),
        (3, "a bad image reference", vec!["Demo/App:1"]),
        (4, "an unknown tag", vec![&unknown_tag, "--plain-http"]),
        (
            5,
            "a registry name that does not resolve",
            vec!["nosuch.invalid/demo/app:1"],
        ),
        (6, "a closed port", vec![&closed, "--plain-http"]),
        (7, "a certificate no CA given vouches for", vec![&untrusted]),
        (
            8,
            "no credentials for a registry that wants some",
            vec![&private, "--plain-http"],
        ),
    ];
    let silent_agent = format!("127.0.0.1:{}", free_port());
    cases.push((
        "check-pull",
        9,
        "a fleet whose one agent does not answer",
        [
            args(&["check-pull", &image, "--plain-http", "--fleet"]),
            args(&["--agents", &silent_agent]),
            no_node.clone(),
        ]
        .concat(),
    ));
    for (code, why, words) in registry_cases {
        let words: Vec<String> = ["check-pull"]
            .iter()
            .chain(&words)
            .map(|w| w.to_string())
            .collect();
        cases.push(("check-pull", code, why, [words, no_node.clone()].concat()));
    }
    let kubelet = node.path("kubelet").display().to_string();
    cases.push(("du", 0, "a readable tree", args(&["du", &kubelet])));
    cases.push((
        "du",
        1,
        "a missing path",
        args(&["du", &gone.display().to_string()]),
    ));
    cases.push(("du", 3, "no path", args(&["du"])));
    let audit = |extra: &[&str]| {
        [
            args(&["audit", "--local", "--json"]),
            args(extra),
            no_node.clone(),
        ]
        .concat()
    };
    cases.push(("audit", 0, "the node's images", audit(&[])));
    cases.push((
        "audit",
        4,
        "an image the node lacks",
        audit(&["nosuch/image:1"]),
    ));
    cases.push(("audit", 3, "a usage error", audit(&["--top", "many"])));

    let mut failures = Vec::new();
    let mut produced = BTreeSet::new();
    for (command, expected, why, words) in &cases {
        let out = run(&node, words);
        produced.insert((command.to_string(), *expected));
        if out.status.code() != Some(*expected) {
            failures.push(format!(
                "`headroom {}` ({why}) exited {:?}, not {expected}; stderr: {}",
                words.join(" "),
                out.status.code(),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    // The agent: 0 on SIGTERM once serving, 3 when its port is taken.
    let port = free_port();
    let agent = start_agent(&node, port);
    wait_for(&node, port, "/healthz");
    produced.insert(("agent".to_string(), 0));
    let exit = stop_agent(&node, agent);
    if exit != Some(0) {
        failures.push(format!("the agent exited {exit:?} on SIGTERM, not 0"));
    }
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut agent = start_agent(&node, taken.local_addr().unwrap().port());
    produced.insert(("agent".to_string(), 3));
    let exit = exit_code(&mut agent, Duration::from_secs(30), &node.path("agent.log"));
    if exit != Some(3) {
        failures.push(format!("the agent exited {exit:?} on a taken port, not 3"));
    }

    for (command, code) in documented.difference(&produced) {
        failures.push(format!(
            "docs/exit-codes.md gives `{command}` code {code}, which no case here produces"
        ));
    }
    for (command, code) in produced.difference(&documented) {
        failures.push(format!(
            "`{command}` exits {code}, which docs/exit-codes.md does not list"
        ));
    }
    assert_none(&failures);
}
