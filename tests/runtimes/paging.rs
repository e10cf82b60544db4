//! The paging path for real (issue 8): agent → Prometheus → Alertmanager →
//! webhook, with the shipped timings, while a pull that does not fit fills a
//! small disk. It must page before the disk crosses the kubelet's line.
//!
//! - A containerd on a small loop-mounted ext4, the kubelet root on the same
//!   filesystem (imagefs is nodefs), `evictionHard` 15% for both.
//! - An image of random bytes sized from the filesystem so that its download
//!   alone takes the disk below the line (late in the download) and the
//!   unpack cannot fit, pushed to the run's registry and pulled with
//!   `ctr images pull` through the throttling proxy for ~40 s.
//! - `headroom agent` with the shipped defaults: `HEADROOM_CONFIG` is
//!   `deploy/config.toml`, no interval flag (only `--listen` and the node's
//!   paths).
//! - A private Prometheus scraping it at the interval
//!   `deploy/prometheus/prometheus.yml` documents, its global
//!   evaluation_interval left at Prometheus's default 1m (the rule group
//!   must set its own), loading `deploy/prometheus/headroom.rules.yml`, and
//!   alerting to a private Alertmanager run with
//!   `deploy/prometheus/alertmanager.yml` (its receiver URLs swapped for the
//!   trial's webhook: a loopback `TcpListener` recording when each POST
//!   arrives).
//! - The filesystem's available bytes (statvfs) are sampled every 200 ms
//!   while the pull runs: HeadroomPullWillNotFit must reach the webhook
//!   before they cross the line; the lead time is printed, with when the
//!   agent, Prometheus and Alertmanager each saw it.
//!
//! Every process is held by a [`Proc`] guard (stopped by its pid, also when
//! the trial fails); only loopback addresses, free ports.

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, sleep, JoinHandle};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use crate::agent::{self, answers, poll, Containerd, Proc};
use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle::{self, path_str};
use crate::pulls::{registry_of, Throttle};
use crate::services::free_port;
use crate::subject::NODE_NAME;
use crate::{prometheus, web, World};

/// The repository root (where `deploy/` is).
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The shipped agent configuration (every key at its default).
const SHIPPED_CONFIG: &str = "deploy/config.toml";
/// The rules Prometheus loads.
const RULES: &str = "deploy/prometheus/headroom.rules.yml";
/// The example Prometheus configuration: the documented scrape interval.
const PROMETHEUS_EXAMPLE: &str = "deploy/prometheus/prometheus.yml";
/// The example Alertmanager configuration the trial runs.
const ALERTMANAGER_EXAMPLE: &str = "deploy/prometheus/alertmanager.yml";
/// The webhook base URL in the example, replaced by the trial's.
const EXAMPLE_WEBHOOK: &str = "http://127.0.0.1:5001";
/// The receiver (and webhook path) that pages.
const PAGE_RECEIVER: &str = "headroom-page";
const PAGE_PATH: &str = "/headroom/page";
/// The alert that must page first.
const ALERT: &str = "HeadroomPullWillNotFit";
/// The Alertmanager binary (Debian's name).
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
/// How often the filesystem is sampled while the pull runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// The agent, Prometheus and Alertmanager are asked every this many samples.
const ASK_EVERY: u32 = 5;
/// How long a pull may take before the trial gives up on it.
const PULL_WITHIN: Duration = Duration::from_secs(150);
/// After the pull, how long to wait for a page that has not come (only to
/// say how late it was).
const LATE_WITHIN: Duration = Duration::from_secs(30);
/// How long a daemon may take to answer.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Trial: the page arrives before the disk crosses the line.
pub fn fires_before_the_line(w: &World) -> Result<()> {
    let _node = w.reading();
    for tool in [ALERTMANAGER, "prometheus", "ctr"] {
        if !on_path(tool) {
            bail!("{tool} is not on PATH (scripts/setup installs it)");
        }
    }
    let registry = registry_of(w)?;
    let root = Path::new(ROOT);

    // The node: containerd and the kubelet root on one small filesystem.
    let mut ctrd = Containerd::new(w, "paging", SIZE)?;
    ctrd.start()?;
    let dir = w.dir.join("paging");
    let fs_root = dir.join("fs");
    let kubelet_root = fs_root.join("kubelet");
    let pod_logs = fs_root.join("pods");
    let empty = dir.join("empty");
    for d in [&kubelet_root, &pod_logs, &empty] {
        fs::create_dir_all(d)?;
    }
    let kubelet_config = dir.join("kubelet-config.yaml");
    fs::write(
        &kubelet_config,
        format!(
            "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\n\
             evictionHard:\n  imagefs.available: \"{EVICTION_PERCENT}%\"\n  \
             nodefs.available: \"{EVICTION_PERCENT}%\"\n"
        ),
    )?;

    // The line, and an image whose download alone crosses it (ending half
    // the threshold above zero) and whose unpack cannot fit.
    let before = Disk::of(&fs_root)?;
    let line = before.capacity * EVICTION_PERCENT / 100;
    let image_bytes = before
        .available
        .checked_sub(line / 2)
        .context("the small filesystem is already under its line")?;
    let rate = image_bytes / DOWNLOAD_FOR.as_secs();
    let repository = "hr/paging-too-big";
    push_noise_image(&dir, &registry, repository, image_bytes)?;

    // The agent, with the shipped defaults.
    let agent_addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headroom"));
    cmd.args(["agent", "--listen", &agent_addr]);
    for (flag, path) in [
        ("--docker-root", &empty),
        ("--containerd-address", &ctrd.sock),
        ("--containerd-root", &ctrd.root),
        ("--kubelet-root", &kubelet_root),
        ("--kubelet-config", &kubelet_config),
        ("--pod-logs", &pod_logs),
    ] {
        cmd.args([flag, path_str(path)?]);
    }
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HEADROOM_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("HEADROOM_CONFIG", root.join(SHIPPED_CONFIG))
        .env("NODE_NAME", NODE_NAME);
    let mut agent = Proc::spawn("agent-paging", cmd, dir.join("agent.log"))?;
    ready(&mut agent, &agent_addr, "/readyz")?;
    let agent_line =
        agent_threshold(&agent_addr, &fs_root).map_err(|e| anyhow!("{e:#}\n{}", agent.output()))?;

    // The webhook, Alertmanager and Prometheus.
    let webhook = Webhook::start()?;
    let (alertmanager, am_addr) = start_alertmanager(&dir, &webhook.addr)?;
    let scrape_interval = documented_scrape_interval()?;
    let (prom, prom_addr) = start_prometheus(&dir, &agent_addr, &am_addr, &scrape_interval)?;
    let plumbing = check_plumbing(&prom_addr, &am_addr, &agent_addr, &webhook);
    if let Err(e) = plumbing {
        bail!(
            "{e:#}\n{}\n{}\n{}",
            prom.output(),
            alertmanager.output(),
            agent.output()
        );
    }

    // The pull, watched.
    let proxy = Throttle::start(&registry, rate)?;
    let reference = format!("{}/{repository}:1", proxy.addr);
    let mut pull_cmd = Command::new("ctr");
    pull_cmd
        .args(["-a", path_str(&ctrd.sock)?, "-n", K8S_NS])
        .args(["images", "pull", "--plain-http", &reference]);
    let started = Instant::now();
    let mut pull = Proc::spawn("ctr pull (paging)", pull_cmd, dir.join("pull.log"))?;
    let t = watch(
        started,
        &mut pull,
        &fs_root,
        line,
        &agent_addr,
        &prom_addr,
        &webhook,
    )?;
    drop(proxy);

    let mut c = Checks::new();
    let setup = format!(
        "image {image_bytes} bytes through a proxy at {rate} B/s; filesystem {} bytes, {} \
         available before the pull, line {line} (the agent's threshold {agent_line}); agent on \
         {SHIPPED_CONFIG}, scrape every {scrape_interval}",
        before.capacity, before.available
    );
    eprintln!("runtimes: paging: {setup}");
    let context = format!(
        "{}\n{setup}\n{}\n{}",
        t.describe(),
        pull.output(),
        agent.output()
    );
    c.that(t.pull_took >= PULL_AT_LEAST, || {
        format!(
            "the pull should take at least {PULL_AT_LEAST:?} (throttled), it took {:.1?}",
            t.pull_took
        )
    });
    let tolerance = before.capacity / 1000;
    c.that(agent_line.abs_diff(line) <= tolerance, || {
        format!(
            "the agent's threshold {agent_line} is not {EVICTION_PERCENT}% of {} = {line}",
            before.capacity
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

/// Whether `tool` is an executable file on PATH.
fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).any(|dir| dir.join(tool).is_file())
}

/// Waits until `GET path` on `addr` answers 200, failing with `proc`'s
/// output if it exits or takes too long.
fn ready(proc: &mut Proc, addr: &str, path: &str) -> Result<()> {
    poll(READY_WITHIN, || {
        if let Some(code) = proc.exited() {
            bail!("it exited with {code}");
        }
        if answers(addr, path, 200) {
            Ok(())
        } else {
            bail!("GET http://{addr}{path} is not 200")
        }
    })
    .map_err(|e| anyhow!("{e:#}\n{}", proc.output()))
}

/// The agent's imagefs threshold, once it sees nodefs and imagefs both on
/// `fs_root`.
fn agent_threshold(addr: &str, fs_root: &Path) -> Result<u64> {
    let mount = path_str(fs_root)?;
    let s = agent::status(addr)?;
    let mut threshold = 0;
    for signal in ["nodefs", "imagefs"] {
        let fs = s
            .filesystems
            .iter()
            .find(|f| f.signal == signal)
            .with_context(|| format!("no {signal} in the status document"))?;
        if fs.mountpoint != mount || fs.threshold_bytes == 0 {
            bail!("{signal} should be {mount} with a threshold: {fs:?}");
        }
        threshold = fs.threshold_bytes;
    }
    Ok(threshold)
}

/// A filesystem's size and what an unprivileged writer may still use, as
/// statvfs says (what the kubelet reads).
#[derive(Debug, Clone, Copy)]
struct Disk {
    capacity: u64,
    available: u64,
}

impl Disk {
    fn of(path: &Path) -> Result<Disk> {
        let s = rustix::fs::statvfs(path).with_context(|| format!("statvfs {}", path.display()))?;
        Ok(Disk {
            capacity: s.f_blocks * s.f_frsize,
            available: s.f_bavail * s.f_frsize,
        })
    }
}

/// Builds `repository:1` (one layer of `bytes` random bytes) in an OCI
/// layout of its own under `dir` (no other trial builds there) and pushes
/// it to `registry`.
fn push_noise_image(dir: &Path, registry: &str, repository: &str, bytes: u64) -> Result<()> {
    let work = dir.join("build");
    fs::create_dir_all(&work)?;
    let layout = work.join("oci");
    let image = format!("{}:1", layout.display());
    let bundle = work.join("bundle");
    oracle::run("umoci", &["init", "--layout", path_str(&layout)?])?;
    oracle::run("umoci", &["new", "--image", &image])?;
    oracle::run(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &image,
            path_str(&bundle)?,
        ],
    )?;
    let file = bundle.join("rootfs/big.bin");
    oracle::run(
        "sh",
        &[
            "-c",
            &format!("head -c {bytes} /dev/urandom > '{}'", path_str(&file)?),
        ],
    )?;
    oracle::run("umoci", &["repack", "--image", &image, path_str(&bundle)?])?;
    fs::remove_dir_all(&bundle)?;
    oracle::run(
        "skopeo",
        &[
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            &format!("oci:{image}"),
            &format!("docker://{registry}/{repository}:1"),
        ],
    )?;
    // The layout holds a copy of the blob: not needed any more.
    fs::remove_dir_all(&work)?;
    Ok(())
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
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new(ALERTMANAGER);
    cmd.args([
        &format!("--config.file={}", path_str(&config)?),
        &format!(
            "--storage.path={}",
            path_str(&dir.join("alertmanager-data"))?
        ),
        &format!("--web.listen-address={addr}"),
        "--cluster.listen-address=",
        "--log.level=info",
    ]);
    let mut proc = Proc::spawn("alertmanager", cmd, dir.join("alertmanager.log"))?;
    ready(&mut proc, &addr, "/-/ready")?;
    Ok((proc, addr))
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
    let addr = format!("127.0.0.1:{}", free_port()?);
    let mut cmd = Command::new("prometheus");
    cmd.args([
        &format!("--config.file={}", path_str(&config)?),
        &format!(
            "--storage.tsdb.path={}",
            path_str(&dir.join("prometheus-data"))?
        ),
        &format!("--web.listen-address={addr}"),
        "--log.level=warn",
    ]);
    let mut proc = Proc::spawn("prometheus-paging", cmd, dir.join("prometheus.log"))?;
    ready(&mut proc, &addr, "/-/ready")?;
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

/// Samples the filesystem every [`SAMPLE_EVERY`] until the pull exits, and
/// the agent, Prometheus and the webhook every [`ASK_EVERY`] samples; then
/// waits up to [`LATE_WITHIN`] for a page that has not come.
fn watch(
    started: Instant,
    pull: &mut Proc,
    fs_root: &Path,
    line: u64,
    agent_addr: &str,
    prom: &str,
    webhook: &Webhook,
) -> Result<Timeline> {
    let mut t = Timeline {
        lowest: u64::MAX,
        ..Timeline::default()
    };
    let first = |slot: &mut Option<Duration>, now: bool| {
        if now && slot.is_none() {
            *slot = Some(started.elapsed());
        }
    };
    let mut n = 0u32;
    let exit = loop {
        if let Some(exit) = pull.exited() {
            break format!("{exit}");
        }
        if started.elapsed() > PULL_WITHIN {
            let exit = pull.terminate(Duration::from_secs(5));
            break format!("still running after {PULL_WITHIN:?}, stopped: {exit:?}");
        }
        let disk = Disk::of(fs_root)?;
        t.samples += 1;
        t.lowest = t.lowest.min(disk.available);
        first(&mut t.crossed, disk.available < line);
        if n % ASK_EVERY == 0 {
            if let Ok(s) = agent::status(agent_addr) {
                first(&mut t.agent_listed, !s.pulls.is_empty());
                let predicted = s.prediction.get("imagefs").is_some_and(|p| p.predicted);
                first(&mut t.agent_predicted, predicted);
            }
            if let Ok(series) = prometheus::query(prom, "headroom_pull_remaining_bytes") {
                first(&mut t.prometheus_stored, !series.is_empty());
            }
            let firing = format!(r#"ALERTS{{alertname="{ALERT}",alertstate="firing"}}"#);
            if let Ok(series) = prometheus::query(prom, &firing) {
                first(&mut t.prometheus_firing, !series.is_empty());
            }
        }
        n += 1;
        sleep(SAMPLE_EVERY);
    };
    t.pull_took = started.elapsed();
    t.pull_exit = exit;
    let late = Instant::now();
    while webhook.first_firing(ALERT).is_none() && late.elapsed() < LATE_WITHIN {
        sleep(SAMPLE_EVERY);
    }
    let page = webhook.first_firing(ALERT);
    t.paged = page
        .as_ref()
        .map(|p| p.at.saturating_duration_since(started));
    t.paged_path = page.map(|p| p.path);
    Ok(t)
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
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl Webhook {
    fn start() -> Result<Webhook> {
        let listener = TcpListener::bind("127.0.0.1:0").context("cannot bind the webhook")?;
        let addr = listener.local_addr()?.to_string();
        let posts = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (record, flag) = (posts.clone(), stop.clone());
        let accept = thread::spawn(move || {
            for stream in listener.incoming() {
                if flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                if let Some(post) = receive(stream) {
                    record.lock().unwrap_or_else(|e| e.into_inner()).push(post);
                }
            }
        });
        Ok(Webhook {
            addr,
            posts,
            stop,
            accept: Some(accept),
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

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
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
