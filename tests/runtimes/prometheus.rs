//! A real Prometheus server scraping the agent every second (or, for the
//! fleet trial, several agents), and the two parts of its HTTP API the
//! trials read: the scrape targets (was the scrape clean?) and instant
//! queries (what did it store?).

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::oracle::path_str;
use crate::services::{free_port, Services};
use crate::web;

/// The scrape job's name.
pub const JOB: &str = "headroom";

/// One stored series at query time: its labels (without `__name__`, `job`,
/// `instance` and the agent's `node`, which scrape.rs checks once) and value.
pub type Series = BTreeMap<BTreeMap<String, String>, f64>;

/// Starts Prometheus on a free loopback port, scraping `target`
/// (`host:port`) every second; returns its `host:port` once it is ready.
pub fn start(s: &mut Services, target: &str) -> Result<String> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let cmd = command(&s.dir, "prometheus", &addr, &[(JOB, &[target])])?;
    let probe = addr.clone();
    s.start_daemon("prometheus", cmd, || {
        web::get(&probe, "/-/ready").is_ok_and(|r| r.code == 200)
    })?;
    Ok(addr)
}

/// A scrape job: its name and its targets (`host:port`).
pub type Job<'a> = (&'a str, &'a [&'a str]);

/// `prometheus` listening on `addr`, scraping the targets of `jobs` every
/// second, its config and data at `dir/<name>.yml` and `dir/<name>-data`.
/// Not started.
pub fn command(dir: &Path, name: &str, addr: &str, jobs: &[Job<'_>]) -> Result<Command> {
    let config = dir.join(format!("{name}.yml"));
    let mut yaml =
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                    scrape_configs:\n"
            .to_owned();
    for (job, targets) in jobs {
        let listed: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        yaml.push_str(&format!(
            "  - job_name: {job}\n    static_configs:\n      - targets: [{}]\n",
            listed.join(", ")
        ));
    }
    fs::write(&config, yaml)?;
    let mut cmd = Command::new("prometheus");
    cmd.args([
        &format!("--config.file={}", path_str(&config)?),
        &format!(
            "--storage.tsdb.path={}",
            path_str(&dir.join(format!("{name}-data")))?
        ),
        &format!("--web.listen-address={addr}"),
        "--log.level=warn",
    ]);
    Ok(cmd)
}

/// A successful API reply's `data`, or an error naming the request.
fn api(addr: &str, target: &str) -> Result<Value> {
    let reply = web::get(addr, target)?;
    let doc: Value = serde_json::from_str(&reply.body).with_context(|| {
        format!(
            "GET {target}: not JSON (HTTP {}): {}",
            reply.code, reply.body
        )
    })?;
    if reply.code != 200 || doc["status"] != "success" {
        bail!("GET {target}: HTTP {}: {doc}", reply.code);
    }
    Ok(doc["data"].clone())
}

/// Every active target, as Prometheus describes it (`labels.job`,
/// `scrapeUrl`, `health`, `lastError`, `lastScrape`, …).
pub fn targets(addr: &str) -> Result<Vec<Value>> {
    let data = api(addr, "/api/v1/targets?state=active")?;
    data["activeTargets"]
        .as_array()
        .cloned()
        .with_context(|| format!("no activeTargets in {data}"))
}

/// The active target whose scrape URL names `target`.
pub fn target(addr: &str, target: &str) -> Result<Value> {
    let all = targets(addr)?;
    all.iter()
        .find(|t| t["scrapeUrl"].as_str().is_some_and(|u| u.contains(target)))
        .cloned()
        .with_context(|| format!("no active target for {target}: {all:?}"))
}

/// The instant-vector result of `promql`, keyed by labels.
pub fn query(addr: &str, promql: &str) -> Result<Series> {
    let data = api(
        addr,
        &format!("/api/v1/query?query={}", web::encode(promql)),
    )?;
    let mut out = Series::new();
    for r in data["result"].as_array().into_iter().flatten() {
        let labels: BTreeMap<String, String> = r["metric"]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, _)| !matches!(k.as_str(), "__name__" | "job" | "instance" | "node"))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_owned()))
            .collect();
        let value = r["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("{promql}: bad sample {r}"))?;
        out.insert(labels, value);
    }
    Ok(out)
}
