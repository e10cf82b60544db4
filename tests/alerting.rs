//! Headroom's alerting and dashboard stay true to what the agent exports.
//!
//! - `deploy/prometheus/headroom.rules.yml` passes `promtool check rules`,
//!   and `headroom.test.yml` (`promtool test rules`) makes every alert fire
//!   and also checks it silent.
//! - `deploy/kubernetes/prometheusrule.yaml` is exactly what
//!   `scripts/gen-prometheusrule` prints, and its spec is the rules file.
//! - The paging path's timings (issue 8): the rule group evaluates at its own
//!   interval, the alerts about a pull in flight have no `for`, the example
//!   `deploy/prometheus/prometheus.yml` passes `promtool check config` and
//!   scrapes the agent at least that often, and the example
//!   `deploy/prometheus/alertmanager.yml` passes `amtool check-config` and
//!   routes every critical Headroom alert (`amtool config routes test`) to
//!   the paging receiver, which waits at most a few seconds.
//! - `deploy/grafana/headroom.json` has the fields Grafana needs.
//! - The node-mixin comparison stays true: `node-mixin-filesystem.rules.yml`
//!   passes `promtool check rules`, and `incident.test.yml` (the demo's disk
//!   replayed through NodeFilesystemSpaceFillingUp, which must not fire
//!   before the pull has failed) passes `promtool test rules`.
//! - Live: a real `headroom agent` on a small fake Docker store, scraped every
//!   second by a real `prometheus` that also loads the rules. Every metric an
//!   alert uses is in the agent's scrape, every rule evaluates without error,
//!   and every panel query returns data through Prometheus's query API.
//!
//! Without promtool, prometheus or amtool those tests are ignored with a
//! message, except under CI (env `CI` set), where they fail (tests/support).

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::deploy::{ALERTMANAGER_EXAMPLE, PAGE_RECEIVER, PROMETHEUS_EXAMPLE, ROOT, RULES};
use support::{free_port, trial, Need};

const UNIT_TESTS: &str = "deploy/prometheus/headroom.test.yml";
const OPERATOR_RULE: &str = "deploy/kubernetes/prometheusrule.yaml";
const DASHBOARD: &str = "deploy/grafana/headroom.json";
/// The longest the rules may wait between evaluations, Prometheus between
/// scrapes of the agent, and Alertmanager before sending a new page: what
/// the README's lead times assume (issue 8).
const MAX_EVALUATION: Duration = Duration::from_secs(10);
const MAX_SCRAPE: Duration = Duration::from_secs(10);
const MAX_GROUP_WAIT: Duration = Duration::from_secs(5);

/// Panels whose query may return nothing from a quiet agent: no pull is in
/// flight, and a trend takes minutes of samples.
const MAY_BE_EMPTY: &[&str] = &["Time to pressure", "Pull bytes left by image"];

/// Metrics the rules use that a quiet agent has no series of (see
/// [`MAY_BE_EMPTY`]); they are checked in the agent's own encoder fed the
/// live status document plus a pull and a trend.
const ONLY_WHEN_BUSY: &[&str] = &[
    "headroom_seconds_until_pressure",
    "headroom_pull_remaining_bytes",
];

/// How long the live test waits for scrapes, rule evaluations and data.
const PATIENCE: Duration = Duration::from_secs(20);

fn main() {
    let promtool = [Need::tool("promtool")];
    let amtool = [Need::tool("amtool")];
    support::main(vec![
        trial!(rules_pass_promtool_check).needs(&promtool),
        trial!(node_mixin_rules_are_valid).needs(&promtool),
        trial!(node_mixin_alert_gives_no_warning_of_the_pull).needs(&promtool),
        trial!(every_alert_fires_and_stays_silent_in_the_unit_tests).needs(&promtool),
        trial!(rules_evaluate_every_10s_and_pull_alerts_do_not_wait),
        trial!(the_example_prometheus_config_scrapes_the_agent_every_10s).needs(&promtool),
        trial!(the_example_alertmanager_config_pages_at_once).needs(&amtool),
        trial!(the_prometheusrule_is_generated_from_the_rules_file),
        trial!(the_dashboard_has_what_grafana_needs),
        // Root: the store's wasteful image has whiteouts and trusted xattrs.
        trial!(alerts_and_panels_work_against_a_live_agent_and_prometheus)
            .needs(&[Need::tool("prometheus"), Need::root()]),
    ]);
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(Path::new(ROOT).join(rel)).unwrap()
}

fn yaml(rel: &str) -> serde_yaml_ng::Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap()
}

/// Runs `tool args` in the crate root and fails with its output; its stdout.
fn run_tool(tool: &str, args: &[&str]) -> String {
    String::from_utf8(support::output_of(Path::new(ROOT), tool, args)).unwrap()
}

/// Runs `promtool args` in the crate root and fails with its output.
fn promtool(args: &[&str]) {
    run_tool("promtool", args);
}

/// A Prometheus duration (`10s`, `1m`, `1h30m`, `500ms`).
fn duration(text: &str) -> Duration {
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap();
        let n: u64 = rest[..digits].parse().unwrap();
        rest = &rest[digits..];
        let unit = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        total += match &rest[..unit] {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(60 * n),
            "h" => Duration::from_secs(3600 * n),
            "d" => Duration::from_secs(86400 * n),
            other => panic!("unit {other:?} in duration {text:?}"),
        };
        rest = &rest[unit..];
    }
    total
}

/// The rules of the rules file: (alert name, expression).
fn alerts() -> Vec<(String, String)> {
    let rules = yaml(RULES);
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let name = rule["alert"].as_str().unwrap().to_string();
            out.push((name, rule["expr"].as_str().unwrap().to_string()));
        }
    }
    assert!(!out.is_empty());
    out
}

/// The `headroom_*` metric names in a PromQL expression (`headroom_[a-z_]+`).
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("headroom_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..len].to_string());
        rest = &tail[len..];
    }
    names
}

fn rules_pass_promtool_check() {
    promtool(&["check", "rules", RULES]);
}

fn node_mixin_rules_are_valid() {
    promtool(&[
        "check",
        "rules",
        "deploy/prometheus/node-mixin-filesystem.rules.yml",
    ]);
}

fn node_mixin_alert_gives_no_warning_of_the_pull() {
    promtool(&["test", "rules", "deploy/prometheus/incident.test.yml"]);
}

fn every_alert_fires_and_stays_silent_in_the_unit_tests() {
    // Every alert has a case where it fires and one where it must not.
    let tests = yaml(UNIT_TESTS);
    for (alert, _) in alerts() {
        let cases: Vec<&serde_yaml_ng::Value> = tests["tests"]
            .as_sequence()
            .unwrap()
            .iter()
            .flat_map(|t| t["alert_rule_test"].as_sequence().unwrap())
            .filter(|c| c["alertname"].as_str() == Some(alert.as_str()))
            .collect();
        let fires = |c: &&serde_yaml_ng::Value| {
            c["exp_alerts"].as_sequence().is_some_and(|a| !a.is_empty())
        };
        assert!(cases.iter().any(fires), "{alert}: no case where it fires");
        assert!(
            cases.iter().any(|c| !fires(c)),
            "{alert}: no case where it stays silent"
        );
    }
    promtool(&["test", "rules", UNIT_TESTS]);
}

fn rules_evaluate_every_10s_and_pull_alerts_do_not_wait() {
    let rules = yaml(RULES);
    for group in rules["groups"].as_sequence().unwrap() {
        let name = group["name"].as_str().unwrap();
        // Its own interval: the lead time must not hang on the server's
        // global evaluation_interval (1m by default).
        let interval = group["interval"]
            .as_str()
            .unwrap_or_else(|| panic!("group {name} sets no interval"));
        assert!(
            duration(interval) <= MAX_EVALUATION,
            "group {name}: interval {interval} is over {MAX_EVALUATION:?}"
        );
        for rule in group["rules"].as_sequence().unwrap() {
            let alert = rule["alert"].as_str().unwrap();
            let expr = rule["expr"].as_str().unwrap();
            // An alert about a pull in flight fires on the first evaluation
            // that sees it: a `for` would spend the lead time.
            if expr.contains("headroom_pull_remaining_bytes") {
                let hold = rule["for"].as_str().map_or(Duration::ZERO, duration);
                assert!(
                    hold.is_zero(),
                    "{alert} ({expr}) holds for {hold:?}: alerts about a pull in flight must not wait"
                );
            }
        }
    }
    // HeadroomDiskPressurePredicted: one rule fires at once with a pull in
    // flight, the other holds the steady verdict.
    let triggers: BTreeSet<String> = rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap())
        .filter(|r| r["alert"].as_str() == Some("HeadroomDiskPressurePredicted"))
        .map(|r| r["labels"]["trigger"].as_str().unwrap().to_string())
        .collect();
    let expected: BTreeSet<String> = ["pull_in_flight", "sustained"].map(String::from).into();
    assert_eq!(triggers, expected);
}

fn the_example_prometheus_config_scrapes_the_agent_every_10s() {
    let config = yaml(PROMETHEUS_EXAMPLE);
    let jobs = config["scrape_configs"].as_sequence().unwrap();
    let job = jobs
        .iter()
        .find(|j| {
            j["job_name"]
                .as_str()
                .is_some_and(|n| n.contains("headroom"))
        })
        .expect("no scrape job whose name contains \"headroom\"");
    let interval = job["scrape_interval"]
        .as_str()
        .expect("the headroom job sets no scrape_interval");
    assert!(
        duration(interval) <= MAX_SCRAPE,
        "the headroom job scrapes every {interval}, over {MAX_SCRAPE:?}"
    );
    let rule_files: Vec<&str> = config["rule_files"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .collect();
    assert_eq!(rule_files, ["headroom.rules.yml"]);
    promtool(&["check", "config", PROMETHEUS_EXAMPLE]);
}

/// The route Alertmanager's `amtool` picks for an alert with `labels`
/// (`name=value`): the receiver names it prints.
fn receivers_for(labels: &[&str]) -> String {
    let config = format!("--config.file={ALERTMANAGER_EXAMPLE}");
    let mut args = vec!["config", "routes", "test", config.as_str()];
    args.extend_from_slice(labels);
    run_tool("amtool", &args).trim().to_string()
}

fn the_example_alertmanager_config_pages_at_once() {
    // The paging route: matches every critical Headroom alert, short waits.
    let config = yaml(ALERTMANAGER_EXAMPLE);
    let routes = config["route"]["routes"].as_sequence().unwrap();
    let page = routes
        .iter()
        .find(|r| r["receiver"].as_str() == Some(PAGE_RECEIVER))
        .expect("no route to the paging receiver");
    let group_wait = duration(page["group_wait"].as_str().unwrap());
    assert!(
        group_wait <= MAX_GROUP_WAIT,
        "paging group_wait {group_wait:?} is over {MAX_GROUP_WAIT:?}"
    );
    let group_interval = duration(page["group_interval"].as_str().unwrap());
    let repeat = duration(page["repeat_interval"].as_str().unwrap());
    assert!(
        group_interval <= Duration::from_secs(300),
        "{group_interval:?}"
    );
    assert!(group_interval <= repeat, "{group_interval:?} > {repeat:?}");
    let receivers = config["receivers"].as_sequence().unwrap();
    let webhook = receivers
        .iter()
        .find(|r| r["name"].as_str() == Some(PAGE_RECEIVER))
        .and_then(|r| r["webhook_configs"][0]["url"].as_str());
    assert!(webhook.is_some(), "{PAGE_RECEIVER} has no webhook");
    run_tool("amtool", &["check-config", ALERTMANAGER_EXAMPLE]);
    // Every critical alert of the rules file is routed to the pager, each
    // warning elsewhere.
    let rules = yaml(RULES);
    for group in rules["groups"].as_sequence().unwrap() {
        for rule in group["rules"].as_sequence().unwrap() {
            let alert = format!("alertname={}", rule["alert"].as_str().unwrap());
            let labels: Vec<String> = rule["labels"]
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| format!("{}={}", k.as_str().unwrap(), v.as_str().unwrap()))
                .chain([alert.clone(), "instance=node-a:9847".into()])
                .collect();
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            let got = receivers_for(&labels);
            let critical = rule["labels"]["severity"].as_str() == Some("critical");
            assert_eq!(
                got == PAGE_RECEIVER,
                critical,
                "{alert} {labels:?} is routed to {got:?}"
            );
        }
    }
}

fn the_prometheusrule_is_generated_from_the_rules_file() {
    let out = Command::new(Path::new(ROOT).join("scripts/gen-prometheusrule"))
        .arg("--stdout")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8(out.stdout).unwrap() == read(OPERATOR_RULE),
        "{OPERATOR_RULE} is stale: run scripts/gen-prometheusrule"
    );
    let manifest = yaml(OPERATOR_RULE);
    assert_eq!(
        manifest["apiVersion"].as_str(),
        Some("monitoring.coreos.com/v1")
    );
    assert_eq!(manifest["kind"].as_str(), Some("PrometheusRule"));
    assert!(manifest["metadata"]["name"].as_str().is_some());
    assert_eq!(manifest["spec"], yaml(RULES));
}

/// The dashboard's panels that query (rows only group).
fn query_panels(dashboard: &Value) -> Vec<&Value> {
    let panels = dashboard["panels"].as_array().unwrap();
    panels.iter().filter(|p| p["type"] != "row").collect()
}

fn the_dashboard_has_what_grafana_needs() {
    let d: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    for key in ["title", "uid"] {
        assert!(d[key].as_str().is_some_and(|s| !s.is_empty()), "{key}");
    }
    assert!(d["schemaVersion"].is_u64());
    let vars = d["templating"]["list"].as_array().unwrap();
    let var = |name: &str| vars.iter().find(|v| v["name"] == name);
    let datasource = var("datasource").expect("a datasource variable");
    assert_eq!(datasource["type"], "datasource");
    assert_eq!(datasource["query"], "prometheus");
    let node = var("node").expect("a node variable");
    assert_eq!(node["datasource"]["uid"], "${datasource}");

    let mut ids = BTreeSet::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        assert!(ids.insert(p["id"].as_u64().unwrap()), "{title}: id reused");
        assert!(p["type"].as_str().is_some(), "{title}: type");
        for key in ["h", "w", "x", "y"] {
            assert!(p["gridPos"][key].is_u64(), "{title}: gridPos.{key}");
        }
        assert!(p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap() <= 24);
    }
    for p in query_panels(&d) {
        let title = p["title"].as_str().unwrap();
        assert_eq!(p["datasource"]["type"], "prometheus", "{title}");
        assert_eq!(p["datasource"]["uid"], "${datasource}", "{title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "{title}: no targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            assert!(t["expr"].as_str().is_some_and(|e| !e.is_empty()), "{title}");
            assert!(refs.insert(t["refId"].as_str().unwrap()), "{title}: refId");
        }
    }
    let titles: Vec<&str> = query_panels(&d)
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for title in MAY_BE_EMPTY {
        assert!(
            titles.contains(title),
            "MAY_BE_EMPTY names no panel {title:?}"
        );
    }
}

/// A child process killed (and reaped) when dropped, also when a test fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// GET `path` from 127.0.0.1:`port` (HTTP/1.0: no chunking); the status code
/// and body, or None while nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = String::new();
    stream.read_to_string(&mut raw).ok()?;
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let code = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, body.to_string()))
}

/// Percent-encodes a query string value.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Prometheus's answer to an instant query (its `data.result` when the
/// status is success).
fn query(port: u16, expr: &str) -> Result<Vec<Value>, String> {
    let (code, body) = get(port, &format!("/api/v1/query?query={}", encode(expr)))
        .ok_or("prometheus did not answer")?;
    let v: Value = serde_json::from_str(&body).map_err(|e| format!("{code}: {e}: {body}"))?;
    if v["status"] != "success" {
        return Err(format!("{code}: {body}"));
    }
    Ok(v["data"]["result"].as_array().cloned().unwrap_or_default())
}

/// Polls `check` until it returns Ok or [`PATIENCE`] is spent; the last error.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    loop {
        match check() {
            Ok(v) => return v,
            Err(e) if start.elapsed() > PATIENCE => panic!("{what}: {e}"),
            Err(_) => sleep(Duration::from_millis(250)),
        }
    }
}

/// Metric names in OpenMetrics text: every sample's name.
fn exported_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

/// Starts the agent on a fake Docker store under `dir`, on `port`.
fn start_agent(dir: &Path, port: u16) -> Killed {
    let docker = dir.join("docker");
    use headroom::runtime::docker::fixture::{synthetic, Synthetic};
    // One image with planted waste, for the audit's panel.
    let shape = Synthetic {
        layer_files: 40,
        writable_files: 10,
        containers: 3,
        wasteful: 1,
        ..Default::default()
    };
    synthetic(&docker, &shape).unwrap();
    // A disk-backed emptyDir of the first pod, so the emptyDir panel and the
    // volume join have data.
    let volume = dir.join(format!(
        "kubelet/pods/{}/volumes/kubernetes.io~empty-dir/cache",
        pod_uid(0)
    ));
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("scratch"), vec![7u8; 64 * 1024]).unwrap();
    // The shipped configuration: every panel and alert must have data with
    // the defaults users run.
    let config = Path::new(ROOT).join("deploy/config.toml");
    let child = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .arg("agent")
        .arg("--docker-root")
        .arg(&docker)
        // Everything else points into `dir`, nowhere near the host's runtimes.
        .arg("--containerd-address")
        .arg(dir.join("no-containerd.sock"))
        .arg("--containerd-root")
        .arg(dir.join("containerd"))
        .arg("--kubelet-root")
        .arg(dir.join("kubelet"))
        .arg("--kubelet-config")
        .arg(dir.join("kubelet/config.yaml"))
        .arg("--pod-logs")
        .arg(dir.join("pods"))
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--log-level", "warn"])
        .env("HEADROOM_CONFIG", &config)
        .env("NODE_NAME", NODE)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Killed(child)
}

/// Starts Prometheus under `dir` on `port`, scraping the agent every second
/// (job `headroom`) and evaluating the rules file every second.
fn start_prometheus(dir: &Path, port: u16, agent: u16, ksm: u16) -> Killed {
    let config = dir.join("prometheus.yml");
    let rules = Path::new(ROOT).join(RULES);
    // honor_labels as docs/metrics.md asks (and kube-prometheus scrapes
    // kube-state-metrics): the series' own namespace/pod labels stay.
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: headroom\n    honor_labels: true\n    \
             static_configs:\n      - targets: ['127.0.0.1:{agent}']\n  \
             - job_name: kube-state-metrics\n    honor_labels: true\n    \
             static_configs:\n      - targets: ['127.0.0.1:{ksm}']\n",
            rules.display()
        ),
    )
    .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .arg("--log.level=warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    Killed(child)
}

fn alerts_and_panels_work_against_a_live_agent_and_prometheus() {
    let dir = tempfile::tempdir().unwrap();
    let (agent_port, prom_port) = (free_port(), free_port());
    let _agent = start_agent(dir.path(), agent_port);
    let ksm_port = serve_forever(kube_state_metrics());
    let _prometheus = start_prometheus(dir.path(), prom_port, agent_port, ksm_port);
    let instance = format!("127.0.0.1:{agent_port}");

    // (a) Every metric an alert uses is in the agent's scrape.
    let scrape = eventually("agent /metrics", || match get(agent_port, "/metrics") {
        Some((200, body)) if body.contains("headroom_scan_timestamp_seconds") => Ok(body),
        other => Err(format!("{other:?}")),
    });
    let exported = exported_names(&scrape);
    let used: BTreeSet<String> = alerts().iter().flat_map(|(_, e)| metric_names(e)).collect();
    for name in &used {
        assert!(
            exported.contains(name) || ONLY_WHEN_BUSY.contains(&name.as_str()),
            "{name} is used by an alert but not in the agent's scrape:\n{scrape}"
        );
    }
    // The busy ones: the live status document, with a pull and a trend,
    // through the agent's own encoder.
    let (_, body) = get(agent_port, "/api/v1/status").unwrap();
    let mut status: headroom::model::Status = serde_json::from_str(&body).unwrap();
    status.pulls.push(headroom::model::Pull {
        reference: "registry.example/big:1@sha256:00".into(),
        total_bytes: 1000,
        offset_bytes: 10,
        ..Default::default()
    });
    assert!(!status.prediction.is_empty(), "{body}");
    for p in status.prediction.values_mut() {
        p.seconds_until = Some(1800);
    }
    let busy = headroom::metrics::encode(&status, &Default::default(), 20).unwrap();
    let busy = exported_names(&busy);
    for name in ONLY_WHEN_BUSY {
        assert!(used.contains(*name), "ONLY_WHEN_BUSY names unused {name}");
        assert!(
            busy.contains(*name),
            "{name} is not exported even when busy"
        );
    }

    // Prometheus scrapes the agent and evaluates every rule without error.
    eventually("the agent scraped", || {
        let up = query(prom_port, &format!("up{{instance=\"{instance}\"}} == 1"))?;
        let scans = query(prom_port, "count_over_time(headroom_scans_total[1m]) >= 3")?;
        (!up.is_empty() && !scans.is_empty())
            .then_some(())
            .ok_or_else(|| "not yet".to_string())
    });
    eventually("rules evaluated", || {
        let (_, body) = get(prom_port, "/api/v1/rules").ok_or("no answer")?;
        let v: Value = serde_json::from_str(&body).map_err(|e| e.to_string())?;
        let rules: Vec<&Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        if rules.len() != alerts().len() {
            return Err(format!("{} rules loaded: {body}", rules.len()));
        }
        match rules.iter().find(|r| r["health"] != "ok") {
            Some(r) => Err(format!("{r}")),
            None => Ok(()),
        }
    });

    // The dashboard's node variable lists this agent by its node name.
    let path = format!(
        "/api/v1/label/node/values?{}={}",
        encode("match[]"),
        encode("headroom_build_info")
    );
    let (_, nodes) = get(prom_port, &path).unwrap();
    assert!(nodes.contains(&format!("\"{NODE}\"")), "{nodes}");

    joins_with_kube_state_metrics(prom_port);

    // (b) Every panel query returns data (MAY_BE_EMPTY: at least succeeds).
    let d: Value = serde_json::from_str(&read(DASHBOARD)).unwrap();
    for p in query_panels(&d) {
        let title = p["title"].as_str().unwrap();
        for t in p["targets"].as_array().unwrap() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$node", NODE)
                .replace("$__rate_interval", "5s");
            eventually(&format!("panel {title:?}: {expr}"), || {
                let result = query(prom_port, &expr)?;
                if result.is_empty() && !MAY_BE_EMPTY.contains(&title) {
                    return Err("no data".into());
                }
                Ok(())
            });
        }
    }
}

/// The node name the live agent is given (`NODE_NAME`, as the DaemonSet sets it).
const NODE: &str = "node-a";
/// How many kubelet-run containers the live agent's synthetic store holds.
const CONTAINERS: usize = 3;

/// The pod of the synthetic store's container `i`, as
/// `runtime::docker::fixture::synthetic` documents it: (namespace, pod).
fn fixture_pod(i: usize) -> (String, String) {
    (format!("ns-{}", i % 3), format!("pod-{i:02}"))
}

/// The UID of the synthetic store's pod `i`.
fn pod_uid(i: usize) -> String {
    format!("0b0e6c1a-{i:04}-2222-3333-444455556666")
}

/// A kube-state-metrics scrape of the cluster: `kube_pod_info` of every pod
/// on this node (owned by a Deployment named after the pod) plus one pod on
/// another node, and `kube_node_info` of both nodes.
fn kube_state_metrics() -> String {
    let mut text = String::from("# TYPE kube_pod_info gauge\n");
    let mut pods: Vec<(String, String, String, String)> = (0..CONTAINERS)
        .map(|i| {
            let (ns, pod) = fixture_pod(i);
            (ns, pod, pod_uid(i), NODE.to_string())
        })
        .collect();
    pods.push((
        "ns-0".into(),
        "elsewhere".into(),
        "u-x".into(),
        "node-b".into(),
    ));
    for (ns, pod, uid, node) in pods {
        text += &format!(
            "kube_pod_info{{namespace=\"{ns}\",pod=\"{pod}\",uid=\"{uid}\",node=\"{node}\",\
             created_by_kind=\"ReplicaSet\",created_by_name=\"owner-of-{pod}\"}} 1\n"
        );
    }
    text += "# TYPE kube_node_info gauge\n";
    for node in [NODE, "node-b"] {
        text += &format!("kube_node_info{{node=\"{node}\",kernel_version=\"6.1.0-{node}\"}} 1\n");
    }
    text
}

/// Serves `body` as Prometheus text on a loopback port, from a thread that
/// lives as long as the test process; the port.
fn serve_forever(body: String) -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let mut head = [0u8; 4096];
            let _ = stream.read(&mut head);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

/// One PromQL expression joins Headroom's container, volume and node series
/// with kube-state-metrics' on the labels they share (docs/metrics.md).
fn joins_with_kube_state_metrics(prom_port: u16) {
    let owners = |expr: &str| {
        eventually(expr, || {
            let result = query(prom_port, expr)?;
            let got: BTreeSet<(String, String, String)> = result
                .iter()
                .map(|r| {
                    let l = &r["metric"];
                    let s = |k: &str| l[k].as_str().unwrap_or_default().to_string();
                    (s("namespace"), s("pod"), s("created_by_name"))
                })
                .collect();
            (got.len() == result.len() && !got.is_empty())
                .then_some(got)
                .ok_or_else(|| format!("{result:?}"))
        })
    };
    let expected: BTreeSet<(String, String, String)> = (0..CONTAINERS)
        .map(|i| {
            let (ns, pod) = fixture_pod(i);
            let owner = format!("owner-of-{pod}");
            (ns, pod, owner)
        })
        .collect();
    for metric in [
        "headroom_container_writable_bytes",
        "headroom_container_log_bytes",
    ] {
        let expr = format!(
            "{metric} * on (node, namespace, pod) group_left (created_by_name) kube_pod_info"
        );
        assert_eq!(owners(&expr), expected, "{expr}");
    }
    let expr = "headroom_emptydir_bytes * on (node, namespace, pod) group_left (created_by_name) kube_pod_info";
    let (ns, pod) = fixture_pod(0);
    let volume = BTreeSet::from([(ns, pod.clone(), format!("owner-of-{pod}"))]);
    assert_eq!(owners(expr), volume, "{expr}");

    let expr = "max by (node) (headroom_pressure_predicted) \
                * on (node) group_left (kernel_version) kube_node_info";
    let nodes = eventually(expr, || {
        let result = query(prom_port, expr)?;
        (!result.is_empty())
            .then_some(result)
            .ok_or_else(|| "no data".to_string())
    });
    let kernels: Vec<&str> = nodes
        .iter()
        .filter_map(|r| r["metric"]["kernel_version"].as_str())
        .collect();
    assert_eq!(kernels, [format!("6.1.0-{NODE}")], "{expr}");
}
