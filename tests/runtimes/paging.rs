//! The paging path for real (issue 8): agent → Prometheus → Alertmanager →
//! webhook, with the shipped timings, while a pull that does not fit fills a
//! small disk. It must page before the disk crosses the kubelet's line.
//!
//! - A small node ([`crate::smallnode`]): a containerd on a small
//!   loop-mounted ext4, the kubelet root on the same filesystem (imagefs is
//!   nodefs), `evictionHard` 15% for both, and `headroom agent` with the
//!   shipped defaults (`HEADROOM_CONFIG` is `deploy/config.toml`, no
//!   interval flag: [`crate::agent::command`]).
//! - An image of random bytes sized from the filesystem so that its download
//!   alone takes the disk below the line (late in the download) and the
//!   unpack cannot fit, pushed to the run's registry
//!   ([`crate::pulls::push_noise_image`]) and pulled with `ctr images pull`
//!   through the throttling proxy for ~40 s.
//! - A private Prometheus scraping it at the interval
//!   `deploy/prometheus/prometheus.yml` documents, its global
//!   evaluation_interval left at Prometheus's default 1m (the rule group
//!   must set its own), loading `deploy/prometheus/headroom.rules.yml`, and
//!   alerting to a private Alertmanager run with
//!   `deploy/prometheus/alertmanager.yml` (its receiver URLs swapped for the
//!   trial's webhook: a loopback `TcpListener` recording when each POST
//!   arrives).
//! - The filesystem's available bytes (statvfs) are sampled every 50 ms and
//!   the agent's status every 200 ms while the pull runs
//!   ([`crate::smallnode::watch`]), Prometheus at every status sample:
//!   HeadroomPullWillNotFit must reach the webhook before the bytes cross
//!   the line; the lead time is printed, with when the agent, Prometheus and
//!   Alertmanager each saw it.
//!
//! Every process is held by a [`Proc`] guard (stopped by its pid, also when
//! the trial fails); only loopback addresses, free ports.

use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use headroom::model::Signal;
use serde_json::Value;

use crate::agent::{self, poll, ready, Proc};
use crate::checks::Checks;
use crate::oracle::path_str;
use crate::pulls::{push_noise_image, registry_of, Loopback, Throttle};
use crate::services::free_port;
use crate::smallnode::{self, filesystem, kubelet_config, Sample, SmallNode};
use crate::support::deploy::{
    ALERTMANAGER_EXAMPLE, PAGE_RECEIVER, PROMETHEUS_EXAMPLE, ROOT, RULES,
};
use crate::{prometheus, web, World};

/// The shipped agent configuration (every key at its default), as the
/// trial names it ([`agent::shipped_config`] is the file).
const SHIPPED_CONFIG: &str = "deploy/config.toml";
/// The webhook base URL in the example, replaced by the trial's.
const EXAMPLE_WEBHOOK: &str = "http://127.0.0.1:5001";
const PAGE_PATH: &str = "/headroom/page";
/// The alert that must page first.
const ALERT: &str = "HeadroomPullWillNotFit";
/// The Alertmanager binary (Debian's name; in `TOOLS` of `main.rs`).
const ALERTMANAGER: &str = "prometheus-alertmanager";

/// The small node's filesystem.
const SIZE: &str = "160M";
/// `evictionHard` for imagefs and nodefs, percent of capacity.
const EVICTION_PERCENT: u64 = 15;
/// How long the download should take (the proxy's rate is set from it).
const DOWNLOAD_FOR: Duration = Duration::from_secs(40);
/// The pull must take at least this long, else the trial proves nothing.
const PULL_AT_LEAST: Duration = Duration::from_secs(30);
/// The disk must cross the line no earlier than this after the pull starts.
const CROSS_NOT_BEFORE: Duration = Duration::from_secs(20);
/// How long a pull may take before the trial gives up on it.
const PULL_WITHIN: Duration = Duration::from_secs(150);
/// After the pull, how long to wait for a page that has not come (only to
/// say how late it was).
const LATE_WITHIN: Duration = Duration::from_secs(30);
/// How long Alertmanager or Prometheus may take to answer.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Trial: the page arrives before the disk crosses the line.
pub fn fires_before_the_line(w: &World) -> Result<()> {
    let _node = w.reading();
    let registry = registry_of(w)?;

    // The node: containerd and the kubelet root on one small filesystem.
    let percent = format!("{EVICTION_PERCENT}%");
    let node = SmallNode::start(w, "paging", SIZE, &kubelet_config(&percent, ""))?;
    let agent_addr = node.addr.as_str();
    let agent_line =
        agent_threshold(&node).map_err(|e| anyhow!("{e:#}\n{}", node.agent.output()))?;

    // The line, and an image whose download alone crosses it (ending half
    // the threshold above zero) and whose unpack cannot fit.
    let (capacity, available) = node.disk()?;
    let line = capacity * EVICTION_PERCENT / 100;
    let image_bytes = available
        .checked_sub(line / 2)
        .context("the small filesystem is already under its line")?;
    let rate = image_bytes / DOWNLOAD_FOR.as_secs();
    let repository = "hr/paging-too-big";
    push_noise_image(w, &registry, repository, image_bytes)?;

    // The webhook, Alertmanager and Prometheus.
    let webhook = Webhook::start()?;
    let (alertmanager, am_addr) = start_alertmanager(&node.dir, &webhook.addr)?;
    let scrape_interval = documented_scrape_interval()?;
    let (prom, prom_addr) = start_prometheus(&node.dir, agent_addr, &am_addr, &scrape_interval)?;
    let plumbing = check_plumbing(&prom_addr, &am_addr, agent_addr, &webhook);
    if let Err(e) = plumbing {
        bail!(
            "{e:#}\n{}\n{}\n{}",
            prom.output(),
            alertmanager.output(),
            node.agent.output()
        );
    }

    // The pull, watched.
    let proxy = Throttle::start(&registry, rate)?;
    let started = Instant::now();
    let pull = node.pull(&format!("{}/{repository}:1", proxy.addr), "paging", &[])?;
    let (t, pull_output) = watch(&node, pull, started, line, &prom_addr, &webhook)?;
    drop(proxy);

    let mut c = Checks::new();
    let setup = format!(
        "image {image_bytes} bytes through a proxy at {rate} B/s; filesystem {} bytes, {} \
         available before the pull, line {line} (the agent's threshold {agent_line}); agent on \
         {SHIPPED_CONFIG}, scrape every {scrape_interval}",
        capacity, available
    );
    eprintln!("runtimes: paging: {setup}");
    let context = format!(
        "{}\n{setup}\n{pull_output}\n{}",
        t.describe(),
        node.context()
    );
    c.that(t.pull_took >= PULL_AT_LEAST, || {
        format!(
            "the pull should take at least {PULL_AT_LEAST:?} (throttled), it took {:.1?}",
            t.pull_took
        )
    });
    let tolerance = capacity / 1000;
    c.that(agent_line.abs_diff(line) <= tolerance, || {
        format!(
            "the agent's threshold {agent_line} is not {EVICTION_PERCENT}% of {capacity} = {line}"
        )
    });
    if let Some(path) = &t.paged_path {
        c.eq(
            "the webhook path the page came to",
            "the paging receiver of deploy/prometheus/alertmanager.yml",
            PAGE_PATH,
            path.as_str(),
        );
    }
    match t.crossed {
        None => c.that(false, || {
            format!(
                "the disk never crossed the line ({line} bytes available); lowest sample {}",
                t.lowest
            )
        }),
        Some(crossed) => {
            c.that(crossed >= CROSS_NOT_BEFORE, || {
                format!(
                    "the disk crossed the line {:.1?} after the pull started, before {CROSS_NOT_BEFORE:?}: \
                     not a test of a page before the line",
                    crossed
                )
            });
            match t.paged {
                Some(paged) if paged < crossed => eprintln!(
                    "runtimes: paging: {ALERT} reached the webhook {:.1}s before the disk crossed \
                     the {EVICTION_PERCENT}% line (paged {:.1}s, line crossed {:.1}s after the \
                     pull started; the pull ran {:.1}s)",
                    (crossed - paged).as_secs_f64(),
                    paged.as_secs_f64(),
                    crossed.as_secs_f64(),
                    t.pull_took.as_secs_f64()
                ),
                Some(paged) => c.that(false, || {
                    format!(
                        "{ALERT} reached the webhook {:.1}s after the disk crossed the line \
                         (paged {:.1}s, crossed {:.1}s after the pull started)",
                        (paged - crossed).as_secs_f64(),
                        paged.as_secs_f64(),
                        crossed.as_secs_f64()
                    )
                }),
                None => c.that(false, || {
                    format!(
                        "{ALERT} never reached the webhook (waited {LATE_WITHIN:?} after the pull)"
                    )
                }),
            }
        }
    }
    eprintln!("runtimes: paging: {}", t.describe());
    c.finish(&context)
}

/// The agent's imagefs threshold, once it sees nodefs and imagefs both on
/// the node's filesystem (its mount point, not below it).
fn agent_threshold(node: &SmallNode) -> Result<u64> {
    let mount = path_str(&node.fs_root)?;
    let s = agent::status(&node.addr)?;
    let mut threshold = 0;
    for signal in [Signal::Nodefs, Signal::Imagefs] {
        let fs = filesystem(&s, signal)?;
        if fs.mountpoint != mount || fs.threshold_bytes == 0 {
            bail!("{signal} should be {mount} with a threshold: {fs:?}");
        }
        threshold = fs.threshold_bytes;
    }
    Ok(threshold)
}

/// The headroom job's `scrape_interval` in `deploy/prometheus/prometheus.yml`.
fn documented_scrape_interval() -> Result<String> {
    let path = Path::new(ROOT).join(PROMETHEUS_EXAMPLE);
    let config: serde_yaml_ng::Value = serde_yaml_ng::from_str(&fs::read_to_string(&path)?)?;
    config["scrape_configs"]
        .as_sequence()
        .into_iter()
        .flatten()
        .find(|j| j["job_name"] == prometheus::JOB)
        .and_then(|j| j["scrape_interval"].as_str())
        .map(str::to_owned)
        .with_context(|| {
            format!(
                "no scrape_interval for job {} in {PROMETHEUS_EXAMPLE}",
                prometheus::JOB
            )
        })
}

/// Starts Alertmanager on a free loopback port with the example config
/// (webhook URLs pointed at `webhook`), no clustering, its data under `dir`.
fn start_alertmanager(dir: &Path, webhook: &str) -> Result<(Proc, String)> {
    let example = fs::read_to_string(Path::new(ROOT).join(ALERTMANAGER_EXAMPLE))?;
    if !example.contains(EXAMPLE_WEBHOOK) {
        bail!("{ALERTMANAGER_EXAMPLE} has no {EXAMPLE_WEBHOOK} URL to point at the webhook");
    }
    let config = dir.join("alertmanager.yml");
    fs::write(
        &config,
        example.replace(EXAMPLE_WEBHOOK, &format!("http://{webhook}")),
    )?;
    let flags = [
        format!("--config.file={}", path_str(&config)?),
        format!(
            "--storage.path={}",
            path_str(&dir.join("alertmanager-data"))?
        ),
        "--cluster.listen-address=".to_owned(),
        "--log.level=info".to_owned(),
    ];
    start_ready(dir, "alertmanager", ALERTMANAGER, &flags)
}

/// Starts Prometheus on a free loopback port, scraping the agent every
/// `scrape_interval`, loading the rules and alerting to `alertmanager`.
/// The global evaluation_interval stays at Prometheus's default (1m): the
/// rule group must set its own.
fn start_prometheus(
    dir: &Path,
    agent: &str,
    alertmanager: &str,
    scrape_interval: &str,
) -> Result<(Proc, String)> {
    let config = dir.join("prometheus.yml");
    let rules = Path::new(ROOT).join(RULES);
    fs::write(
        &config,
        format!(
            "global:\n  evaluation_interval: 1m\n\
             alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{alertmanager}']\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: {}\n    scrape_interval: {scrape_interval}\n    \
             static_configs:\n      - targets: ['{agent}']\n",
            path_str(&rules)?,
            prometheus::JOB
        ),
    )?;
    let flags = [
        format!("--config.file={}", path_str(&config)?),
        format!(
            "--storage.tsdb.path={}",
            path_str(&dir.join("prometheus-data"))?
        ),
        "--log.level=warn".to_owned(),
    ];
    start_ready(dir, "prometheus-paging", "prometheus", &flags)
}

/// Starts `prog` as `name` on a free loopback port with `flags` (then
/// `--web.listen-address`), its output in `<dir>/<name>.log`; waits up to
/// [`READY_WITHIN`] until `/-/ready` answers.
fn start_ready(dir: &Path, name: &str, prog: &str, flags: &[String]) -> Result<(Proc, String)> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(prog);
    cmd.args(flags).arg(format!("--web.listen-address={addr}"));
    let mut proc = Proc::spawn(name, cmd, dir.join(format!("{name}.log")))?;
    ready(&mut proc, &addr, "/-/ready", READY_WITHIN)?;
    Ok((proc, addr))
}

/// A Prometheus or Alertmanager API reply as JSON, failing unless HTTP 200.
fn api(addr: &str, target: &str) -> Result<Value> {
    let reply = web::get(addr, target)?;
    if reply.code != 200 {
        bail!("GET {target}: HTTP {}: {}", reply.code, reply.body);
    }
    serde_json::from_str(&reply.body)
        .with_context(|| format!("GET {target}: not JSON: {}", reply.body))
}

/// Before the pull: Alertmanager runs the example config without
/// clustering and delivers a critical Headroom alert to the webhook at
/// once; Prometheus has the rule group at its own interval, every rule
/// evaluated, Alertmanager discovered, and the agent scraped.
fn check_plumbing(prom: &str, am: &str, agent: &str, webhook: &Webhook) -> Result<()> {
    let status = api(am, "/api/v2/status")?;
    let original = status["config"]["original"].as_str().unwrap_or("");
    if !original.contains(&webhook.addr) || !original.contains(PAGE_RECEIVER) {
        bail!("Alertmanager does not run the example config with our webhook: {status}");
    }
    if status["cluster"]["status"] != "disabled" {
        bail!("Alertmanager should not gossip: {}", status["cluster"]);
    }
    // The route and webhook, by an alert posted straight to Alertmanager.
    let probe = "HeadroomPagingPathProbe";
    let body = format!(
        r#"[{{"labels":{{"alertname":"{probe}","severity":"critical","instance":"paging-probe"}}}}]"#
    );
    let sent = Instant::now();
    post_json(am, "/api/v2/alerts", &body)?;
    let delivered = poll(Duration::from_secs(15), || {
        webhook
            .first_firing(probe)
            .context("the probe alert has not reached the webhook")
    })?;
    if delivered.path != PAGE_PATH {
        bail!(
            "the probe alert went to {}, not {PAGE_PATH}",
            delivered.path
        );
    }
    eprintln!(
        "runtimes: paging: a critical Headroom alert posted to Alertmanager reached the webhook in {:.1?}",
        delivered.at.saturating_duration_since(sent)
    );

    let rules_in_file = {
        let text = fs::read_to_string(Path::new(ROOT).join(RULES))?;
        text.matches("- alert:").count()
    };
    poll(Duration::from_secs(40), || {
        let data = api(prom, "/api/v1/rules")?;
        let groups = data["data"]["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let group = groups
            .iter()
            .find(|g| g["name"] == "headroom")
            .with_context(|| format!("no rule group headroom: {data}"))?;
        let interval = group["interval"].as_f64().unwrap_or(0.0);
        if !(0.0 < interval && interval <= 10.0) {
            bail!("the headroom group evaluates every {interval}s, not at its own ≤ 10s: {group}");
        }
        let rules = group["rules"].as_array().cloned().unwrap_or_default();
        if rules.len() != rules_in_file {
            bail!("{} rules loaded, {rules_in_file} in {RULES}", rules.len());
        }
        if let Some(r) = rules.iter().find(|r| r["health"] != "ok") {
            bail!("not (yet) evaluated cleanly: {r}");
        }
        Ok(())
    })?;
    poll(Duration::from_secs(20), || {
        let data = api(prom, "/api/v1/alertmanagers")?;
        let found = data["data"]["activeAlertmanagers"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|a| a["url"].as_str().is_some_and(|u| u.contains(am)));
        if found {
            Ok(())
        } else {
            bail!("Prometheus has not discovered Alertmanager {am}: {data}")
        }
    })?;
    poll(Duration::from_secs(40), || {
        let t = prometheus::target(prom, agent)?;
        if t["health"] == "up" {
            Ok(())
        } else {
            bail!("the agent's target is not up yet: {t}")
        }
    })?;
    if let Some(early) = webhook.first_firing(ALERT) {
        bail!("{ALERT} paged before any pull: {}", early.body);
    }
    Ok(())
}

/// POSTs a JSON body to `addr` and fails unless the answer is 2xx.
fn post_json(addr: &str, target: &str, body: &str) -> Result<()> {
    let raw = format!(
        "POST {target} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let reply = web::parse(&web::exchange(addr, raw.as_bytes())?)?;
    if !(200..300).contains(&reply.code) {
        bail!("POST {target}: HTTP {}: {}", reply.code, reply.body);
    }
    Ok(())
}

/// What happened while the pull ran, in time since it started.
#[derive(Debug, Default)]
struct Timeline {
    pull_took: Duration,
    pull_exit: String,
    /// The first sample under the line.
    crossed: Option<Duration>,
    /// The lowest available bytes sampled.
    lowest: u64,
    samples: usize,
    /// The agent first listed a pull / predicted imagefs pressure.
    agent_listed: Option<Duration>,
    agent_predicted: Option<Duration>,
    /// Prometheus first stored the pull / had the alert firing.
    prometheus_stored: Option<Duration>,
    prometheus_firing: Option<Duration>,
    /// The page reached the webhook, on this path.
    paged: Option<Duration>,
    paged_path: Option<String>,
}

impl Timeline {
    fn describe(&self) -> String {
        let at = |d: Option<Duration>| match d {
            Some(d) => format!("{:.1}s", d.as_secs_f64()),
            None => "never".to_owned(),
        };
        format!(
            "timeline since the pull started: agent listed the pull {}, predicted imagefs \
             pressure {}; Prometheus stored headroom_pull_remaining_bytes {}, {ALERT} firing {}; \
             webhook paged {}; disk under the line {} (lowest {} bytes, {} samples); pull ended \
             {:.1}s ({})",
            at(self.agent_listed),
            at(self.agent_predicted),
            at(self.prometheus_stored),
            at(self.prometheus_firing),
            at(self.paged),
            at(self.crossed),
            self.lowest,
            self.samples,
            self.pull_took.as_secs_f64(),
            self.pull_exit
        )
    }
}

/// Watches `pull` on `node` to its end with [`smallnode::watch`] (the disk
/// every 50 ms, the agent every 200 ms), asking Prometheus at every agent
/// sample; then waits up to [`LATE_WITHIN`] for a page that has not come.
/// Returns the timeline and the pull's output.
fn watch(
    node: &SmallNode,
    pull: Proc,
    started: Instant,
    line: u64,
    prom: &str,
    webhook: &Webhook,
) -> Result<(Timeline, String)> {
    let first = |slot: &mut Option<Duration>, now: bool| {
        if now && slot.is_none() {
            *slot = Some(started.elapsed());
        }
    };
    let (mut stored, mut firing) = (None, None);
    let alert_firing = format!(r#"ALERTS{{alertname="{ALERT}",alertstate="firing"}}"#);
    let mut pulls = [pull];
    let percent = EVICTION_PERCENT as f32;
    let w = smallnode::watch(node, percent, &mut pulls, started, PULL_WITHIN, |_| {
        if let Ok(series) = prometheus::query(prom, "headroom_pull_remaining_bytes") {
            first(&mut stored, !series.is_empty());
        }
        if let Ok(series) = prometheus::query(prom, &alert_firing) {
            first(&mut firing, !series.is_empty());
        }
        Ok(())
    })?;
    let end = &w.ended[0];
    let pull_exit = match (end.exit, end.at) {
        (Some(exit), Some(_)) => format!("{exit}"),
        (exit, _) => format!("still running after {PULL_WITHIN:?}, stopped: {exit:?}"),
    };
    let agent_first = |said: fn(&Sample) -> bool| w.samples.iter().find(|s| said(s)).map(|s| s.at);
    let mut t = Timeline {
        pull_took: end.at.unwrap_or_else(|| started.elapsed()),
        pull_exit,
        crossed: w.disk.iter().find(|(_, a)| *a < line).map(|(at, _)| *at),
        lowest: w.disk.iter().map(|(_, a)| *a).min().unwrap_or(u64::MAX),
        samples: w.disk.len(),
        agent_listed: agent_first(|s| !s.status.pulls.is_empty()),
        agent_predicted: agent_first(|s| s.imagefs().predicted),
        prometheus_stored: stored,
        prometheus_firing: firing,
        paged: None,
        paged_path: None,
    };
    let late = Instant::now();
    while webhook.first_firing(ALERT).is_none() && late.elapsed() < LATE_WITHIN {
        sleep(smallnode::SAMPLE_EVERY);
    }
    let page = webhook.first_firing(ALERT);
    t.paged = page
        .as_ref()
        .map(|p| p.at.saturating_duration_since(started));
    t.paged_path = page.map(|p| p.path);
    Ok((t, w.outputs()))
}

/// One POST the webhook received.
#[derive(Debug, Clone)]
struct Post {
    at: Instant,
    path: String,
    body: String,
}

/// A webhook receiver on a free loopback port: records every POST with the
/// moment it arrived; stopped when dropped.
struct Webhook {
    addr: String,
    posts: Arc<Mutex<Vec<Post>>>,
    _server: Loopback,
}

impl Webhook {
    fn start() -> Result<Webhook> {
        let posts = Arc::new(Mutex::new(Vec::new()));
        let record = posts.clone();
        let server = Loopback::start("webhook", move |stream| {
            if let Some(post) = receive(stream) {
                record.lock().unwrap_or_else(|e| e.into_inner()).push(post);
            }
        })?;
        Ok(Webhook {
            addr: server.addr.clone(),
            posts,
            _server: server,
        })
    }

    /// The first POST that says `alertname` is firing.
    fn first_firing(&self, alertname: &str) -> Option<Post> {
        let posts = self.posts.lock().unwrap_or_else(|e| e.into_inner());
        posts
            .iter()
            .find(|p| {
                serde_json::from_str::<Value>(&p.body).is_ok_and(|v| {
                    v["alerts"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|a| a["status"] == "firing" && a["labels"]["alertname"] == alertname)
                })
            })
            .cloned()
    }
}

/// Reads one HTTP request (headers, then a `Content-Length` body), answers
/// 200 and closes; the request if it was a POST.
fn receive(mut stream: TcpStream) -> Option<Post> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 || raw.len() > 1 << 20 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(0);
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let at = Instant::now();
    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
    let mut request_line = head.lines().next()?.split(' ');
    let (method, path) = (request_line.next()?, request_line.next()?);
    (method == "POST").then(|| Post {
        at,
        path: path.to_owned(),
        body: String::from_utf8_lossy(&raw[head_end..]).into_owned(),
    })
}
