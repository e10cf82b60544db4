//! The run's agent as Prometheus sees it: clean scrapes, stored figures equal
//! to the agent's own document and to du/df of the same directories, text
//! the official OpenMetrics parser accepts, figures that follow a new image
//! and container, and scan counters that show only mutable paths are walked
//! again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use headroom::model::Status;
use headroom::runtime::{ProblemKind, Reader, RuntimeKind};
use serde_json::Value;

use crate::agent::{self, poll};
use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle::{self, path_str};
use crate::prometheus::{self, Series};
use crate::support::openmetrics::{self, Family};
use crate::{exposition, web, World};

/// The metrics every node exports (docs/metrics.md lists them all; these are
/// the ones dashboards and alerts were first built on).
const CORE_METRICS: &[&str] = &[
    "headroom_filesystem_capacity_bytes",
    "headroom_filesystem_available_bytes",
    "headroom_filesystem_inodes",
    "headroom_filesystem_inodes_free",
    "headroom_eviction_threshold_bytes",
    "headroom_image_size_bytes",
    "headroom_image_unique_bytes",
    "headroom_container_writable_bytes",
    "headroom_container_log_bytes",
    "headroom_reclaimable_bytes",
    "headroom_pull_remaining_bytes",
    "headroom_pressure_predicted",
    "headroom_seconds_until_pressure",
    "headroom_scan_duration_seconds",
    "headroom_scan_files_total",
    "headroom_scan_errors_total",
    "headroom_build_info",
];

/// Series that exist only while there is something to say: a pull in
/// flight, a known trend. Everything else in [`CORE_METRICS`] must be in the
/// text on every node (a counter with no error yet is 0, not absent, so
/// `rate()` and `increase()` work from the first scrape).
fn absent_by_design(name: &str, status: &Status) -> bool {
    match name {
        "headroom_pull_remaining_bytes" => !status.pulls.iter().any(|p| p.total_bytes > 0),
        "headroom_seconds_until_pressure" => status
            .prediction
            .values()
            .all(|p| p.seconds_until.is_none()),
        _ => false,
    }
}

/// How long a change may take to reach the agent's figures: containerd's
/// events bring a new image or container within seconds, and the shipped
/// `rescan_interval` (1m, ± 10% jitter) bounds a writable layer's growth.
const FOLLOW_WITHIN: Duration = Duration::from_secs(75);

/// The stored figures trial a compares.
const COMPARED: &[&str] = &[
    "headroom_image_size_bytes",
    "headroom_container_writable_bytes",
    "headroom_filesystem_capacity_bytes",
    "headroom_eviction_threshold_bytes",
    "headroom_reclaimable_bytes",
    "headroom_problems",
];

/// A label set as Prometheus stores it: empty values are no label at all.
fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The first 12 hex digits of an ID (what the metrics show without a name).
fn short_id(id: &str) -> String {
    id.trim_start_matches("sha256:").chars().take(12).collect()
}

/// Adds `value` to the series `key` of `series`.
fn add(series: &mut Series, key: BTreeMap<String, String>, value: u64) {
    *series.entry(key).or_default() += value as f64;
}

/// What the metrics of `name` must hold, from the status document and
/// docs/metrics.md's labels (nothing is folded: top N exceeds the node).
fn expected(status: &Status, name: &str) -> Series {
    let mut out = Series::new();
    match name {
        "headroom_image_size_bytes" => {
            for i in &status.images {
                let image = i.refs.first().cloned().unwrap_or_else(|| short_id(&i.id));
                let key = labels(&[
                    ("runtime", i.runtime.as_str()),
                    ("containerd_namespace", &i.namespace),
                    ("image", &image),
                ]);
                add(&mut out, key, i.disk_bytes);
            }
        }
        "headroom_container_writable_bytes" => {
            for c in &status.containers {
                let name = if c.name.is_empty() {
                    short_id(&c.id)
                } else {
                    c.name.clone()
                };
                let key = labels(&[
                    ("runtime", c.runtime_name()),
                    ("containerd_namespace", &c.namespace),
                    ("pod", c.pod.as_deref().unwrap_or("")),
                    ("namespace", c.pod_namespace.as_deref().unwrap_or("")),
                    ("container", &name),
                ]);
                add(&mut out, key, c.writable_disk_bytes);
            }
        }
        "headroom_filesystem_capacity_bytes" => {
            for f in &status.filesystems {
                let key = labels(&[("signal", f.signal.as_str()), ("mountpoint", &f.mountpoint)]);
                add(&mut out, key, f.capacity_bytes);
            }
        }
        "headroom_eviction_threshold_bytes" => {
            for f in &status.filesystems {
                add(
                    &mut out,
                    labels(&[("signal", f.signal.as_str())]),
                    f.threshold_bytes,
                );
            }
        }
        "headroom_reclaimable_bytes" => {
            for (runtime, bytes) in &status.reclaimable_by_runtime {
                add(&mut out, labels(&[("runtime", runtime.as_str())]), *bytes);
            }
        }
        "headroom_problems" => {
            // Every (kind, reader) pair has a series, 0 when clean.
            let key = |kind: ProblemKind, reader: Reader| {
                labels(&[("kind", kind.as_str()), ("reader", reader.as_str())])
            };
            for kind in ProblemKind::ALL {
                for reader in Reader::all() {
                    add(&mut out, key(kind, reader), 0);
                }
            }
            for p in &status.problems {
                add(&mut out, key(p.kind, p.reader), 1);
            }
        }
        _ => {}
    }
    out
}

/// The stored series of every [`COMPARED`] metric.
fn stored(prom: &str) -> Result<BTreeMap<&'static str, Series>> {
    COMPARED
        .iter()
        .map(|name| Ok((*name, prometheus::query(prom, name)?)))
        .collect()
}

/// Waits until Prometheus has scraped the agent cleanly; returns the target.
fn scraped_cleanly(prom: &str, agent_addr: &str) -> Result<Value> {
    poll(Duration::from_secs(15), || {
        let t = prometheus::target(prom, agent_addr)?;
        if t["health"] == "up" && t["lastError"] == "" {
            Ok(t)
        } else {
            bail!("scrape target of the agent: {t}")
        }
    })
}

/// Trial a: Prometheus scrapes the agent without error, and what it stored
/// equals the agent's document and du/df of the same directories.
pub fn prometheus_stores_what_du_measures(w: &World) -> Result<()> {
    let _node = w.reading();
    let live = w.live()?;
    let prom = live.prometheus.as_str();
    let mut c = Checks::new();
    if let Err(e) = scraped_cleanly(prom, &live.addr) {
        c.error("Prometheus scraping the agent", e);
    }
    // The two sides may be a scan apart: wait until they agree.
    let agreed = poll(Duration::from_secs(15), || {
        let status = agent::status(&live.addr)?;
        let got = stored(prom)?;
        let differ: Vec<String> = COMPARED
            .iter()
            .filter_map(|name| {
                let want = expected(&status, name);
                let have = got.get(name).cloned().unwrap_or_default();
                (want != have).then(|| {
                    format!("{name}\n    /api/v1/status: {want:?}\n    Prometheus:     {have:?}")
                })
            })
            .collect();
        if differ.is_empty() {
            Ok((status, got))
        } else {
            bail!(
                "Prometheus and the agent's document differ:\n{}",
                differ.join("\n")
            )
        }
    });
    let (status, got) = match agreed {
        Ok(both) => both,
        Err(e) => {
            c.error("stored figures against /api/v1/status", e);
            return c.finish(&format!("Prometheus at {prom}, agent at {}", live.addr));
        }
    };
    every_series_names_the_node(&mut c, prom, &status.node);
    c.that(!got["headroom_image_size_bytes"].is_empty(), || {
        "Prometheus stored no headroom_image_size_bytes".to_owned()
    });
    images_against_du(&mut c, &status, &got["headroom_image_size_bytes"]);
    containers_against_du(&mut c, w, &got["headroom_container_writable_bytes"]);
    filesystems_against_df(
        &mut c,
        w,
        &got["headroom_filesystem_capacity_bytes"],
        &got["headroom_eviction_threshold_bytes"],
    );
    let total: f64 = got["headroom_reclaimable_bytes"].values().sum();
    c.eq(
        "sum of headroom_reclaimable_bytes",
        "/api/v1/status reclaimable_bytes",
        status.reclaimable_bytes as f64,
        total,
    );
    c.finish(&format!("Prometheus at {prom}, agent at {}", live.addr))
}

/// Every stored Headroom series carries the agent's node name as `node`
/// (docs/metrics.md); [`prometheus::query`] leaves the label out of its keys.
fn every_series_names_the_node(c: &mut Checks, prom: &str, node: &str) {
    let count = |promql: &str| prometheus::query(prom, promql).map(|s| s.values().sum::<f64>());
    let named = count(&format!(
        r#"count({{__name__=~"headroom_.+",node="{node}"}})"#
    ));
    let other = count(&format!(
        r#"count({{__name__=~"headroom_.+",node!="{node}"}})"#
    ));
    match (named, other) {
        (Ok(named), Ok(other)) => {
            c.that(named > 0.0, || format!("no series with node={node:?}"));
            c.eq("series without node=\"…\"", "none", 0.0, other);
        }
        (Err(e), _) | (_, Err(e)) => c.error("counting series by node", e),
    }
}

/// Each fixture image's stored size is the sum of `du -B1` of its layers.
fn images_against_du(c: &mut Checks, status: &Status, stored: &Series) {
    for image in &status.images {
        let Some(reference) = image.refs.first() else {
            continue;
        };
        let mut disk = 0;
        let mut oracle_cmd = Vec::new();
        for id in &image.layers {
            let layer = status.layers.iter().find(|l| {
                &l.id == id && l.runtime == image.runtime && l.namespace == image.namespace
            });
            let Some(layer) = layer else {
                c.that(false, || {
                    format!("layer {id} of {reference} is not in layers[]")
                });
                continue;
            };
            match oracle::du(Path::new(&layer.path)) {
                Ok(du) => disk += du.disk,
                Err(e) => c.error(&format!("du of layer {id}"), e),
            }
            oracle_cmd.push(layer.path.clone());
        }
        let key = labels(&[
            ("runtime", image.runtime.as_str()),
            ("containerd_namespace", &image.namespace),
            ("image", reference),
        ]);
        c.eq(
            &format!(
                "headroom_image_size_bytes of {:?} {reference}",
                image.runtime
            ),
            &format!("sum of du -s -B1 {}", oracle_cmd.join(" ")),
            Some(disk as f64),
            stored.get(&key).copied(),
        );
    }
}

/// Each fixture container's stored writable bytes are `du -B1` of the upper
/// dir its runtime names.
fn containers_against_du(c: &mut Checks, w: &World, stored: &Series) {
    let mut uppers: Vec<(String, BTreeMap<String, String>, Result<String>)> = Vec::new();
    for d in &w.fixtures.docker {
        let upper = w
            .docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &d.id])
            .map(|s| s.trim().to_owned());
        let key = labels(&[("runtime", "docker"), ("container", &d.name)]);
        uppers.push((format!("Docker container {}", d.name), key, upper));
    }
    let cri = &w.fixtures.cri;
    let key = labels(&[
        ("runtime", "containerd"),
        ("containerd_namespace", K8S_NS),
        ("pod", &cri.logs.pod),
        ("namespace", &cri.logs.namespace),
        ("container", &cri.logs.container),
    ]);
    let upper = oracle::ctr_upperdir(&w.containerd_sock, K8S_NS, &cri.id);
    uppers.push((format!("containerd container {}", cri.id), key, upper));
    for (what, key, upper) in uppers {
        let du = upper.and_then(|u| Ok((oracle::du(Path::new(&u))?.disk, u)));
        match du {
            Ok((disk, upper)) => c.eq(
                &format!("headroom_container_writable_bytes of {what}"),
                &format!("du -s -B1 {upper}"),
                Some(disk as f64),
                stored.get(&key).copied(),
            ),
            Err(e) => c.error(&format!("upper dir of {what}"), e),
        }
    }
}

/// Capacity is df's size; thresholds are the kubelet config's
/// ([`crate::images::KUBELET_CONFIG`]: nodefs 12.5%, imagefs 1Gi) of it.
fn filesystems_against_df(c: &mut Checks, w: &World, capacity: &Series, threshold: &Series) {
    for (signal, mount) in [("nodefs", &w.nodefs), ("imagefs", &w.imagefs)] {
        let df = match oracle::df(mount) {
            Ok(df) => df,
            Err(e) => return c.error(&format!("df of {signal}"), e),
        };
        let key = labels(&[("signal", signal), ("mountpoint", &df.target)]);
        c.eq(
            &format!("headroom_filesystem_capacity_bytes of {signal}"),
            &format!("df -B1 {}", mount.display()),
            Some(df.size as f64),
            capacity.get(&key).copied(),
        );
        let want = if signal == "nodefs" {
            df.size / 8
        } else {
            1 << 30
        };
        c.eq(
            &format!("headroom_eviction_threshold_bytes of {signal}"),
            "kubelet config evictionHard of df's size",
            Some(want as f64),
            threshold.get(&labels(&[("signal", signal)])).copied(),
        );
    }
}

/// Whether `family` declares metric `name` (counters and infos carry a
/// suffix on their samples, not on the family).
fn declares(family: &Family, name: &str) -> bool {
    let suffix = match family.kind.as_str() {
        "counter" => "_total",
        "info" => "_info",
        _ => "",
    };
    format!("{}{suffix}", family.name) == name
}

/// Trial b: the live `/metrics` parses with the official OpenMetrics parser
/// and has every metric of [`CORE_METRICS`].
pub fn metrics_parse_as_openmetrics(w: &World) -> Result<()> {
    let live = w.live()?;
    let reply = web::get(&live.addr, "/metrics")?;
    let mut c = Checks::new();
    c.eq("GET /metrics", "HTTP", 200, reply.code);
    c.that(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        || format!("content type {:?}", reply.header("content-type")),
    );
    let families = openmetrics::parse(&reply.body)?;
    let status = agent::status(&live.addr)?;
    let samples: usize = families.iter().map(|f| f.samples.len()).sum();
    let lines = reply.body.lines().filter(|l| !l.starts_with('#')).count();
    c.eq("samples parsed", "sample lines in the text", lines, samples);
    for name in CORE_METRICS {
        if absent_by_design(name, &status) {
            continue;
        }
        let declared = families.iter().any(|f| declares(f, name));
        let sampled = families
            .iter()
            .flat_map(|f| &f.samples)
            .any(|s| s.0 == *name);
        c.that(declared && sampled, || {
            format!("{name} (docs/metrics.md) has no sample (declared: {declared})")
        });
    }
    c.finish(&format!(
        "GET http://{}/metrics:\n{}",
        live.addr, reply.body
    ))
}

/// The `lowerdir=` list of `ctr snapshots mounts` for an active snapshot.
fn ctr_lowerdirs(sock: &Path, key: &str) -> Result<Vec<PathBuf>> {
    let out = oracle::ctr(
        sock,
        K8S_NS,
        &["snapshots", "mounts", "/hr-unused-target", key],
    )?;
    let list = out
        .split([',', ' '])
        .find_map(|opt| opt.strip_prefix("lowerdir="))
        .with_context(|| format!("no lowerdir in `ctr snapshots mounts` output: {out}"))?;
    Ok(list.trim().split(':').map(PathBuf::from).collect())
}

/// Removes the container and image trial c added, so the node is as the
/// other trials expect it (also when trial c fails).
struct Undo<'a> {
    sock: &'a Path,
    reference: &'a str,
    id: &'a str,
}

impl Undo<'_> {
    fn run(&self) -> Result<()> {
        let ctr = |args: &[&str]| oracle::ctr(self.sock, K8S_NS, args);
        if ctr(&["containers", "ls", "-q"])?
            .lines()
            .any(|l| l == self.id)
        {
            ctr(&["containers", "rm", self.id])?;
        }
        // The CRI plugin also names the image `sha256:<id>`: remove every
        // name with the same target digest, or the image stays behind.
        let listed = ctr(&["images", "ls"])?;
        let rows: Vec<Vec<&str>> = listed
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().collect())
            .collect();
        let digest = rows
            .iter()
            .find(|f| f.first() == Some(&self.reference))
            .and_then(|f| f.get(2).copied());
        let names: Vec<&str> = rows
            .iter()
            .filter(|f| digest.is_some() && f.get(2).copied() == digest)
            .filter_map(|f| f.first().copied())
            .collect();
        if !names.is_empty() {
            let mut args = vec!["images", "rm", "--sync"];
            args.extend(names);
            ctr(&args)?;
        }
        Ok(())
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.run() {
            eprintln!("runtimes: cannot undo the change trial: {e:#}");
        }
    }
}

/// Trial c: a new image and a CRI container writing 30 MiB show up in
/// Prometheus within 20 s, at du's figures. The node is restored after.
pub fn metrics_follow_changes(w: &World) -> Result<()> {
    let _node = w.changing();
    let live = w.live()?;
    let sock = w.containerd_sock.as_path();
    let reference = live.grow_image.as_str();
    let id = "hr-grow";
    let undo = Undo {
        sock,
        reference,
        id,
    };
    oracle::ctr(sock, K8S_NS, &["images", "pull", "--plain-http", reference])?;
    let (pod, pod_ns, name) = ("grow-0", "shop", "grow");
    oracle::ctr(
        sock,
        K8S_NS,
        &[
            "run",
            "--label",
            &format!("io.kubernetes.pod.name={pod}"),
            "--label",
            &format!("io.kubernetes.pod.namespace={pod_ns}"),
            "--label",
            "io.kubernetes.pod.uid=6f9a1c2e-0000-4000-8000-000000000001",
            "--label",
            &format!("io.kubernetes.container.name={name}"),
            reference,
            id,
            "sh",
            "-c",
            "dd if=/dev/urandom of=/grow.bin bs=1M count=30 2>/dev/null && sync",
        ],
    )?;
    let wrote = Instant::now();
    let upper = oracle::ctr_upperdir(sock, K8S_NS, id)?;
    let upper_disk = oracle::du(Path::new(&upper))?.disk;
    let mut image_disk = 0;
    for lower in ctr_lowerdirs(sock, id)? {
        image_disk += oracle::du(&lower)?.disk;
    }
    let mut c = Checks::new();
    c.that(upper_disk >= 30 << 20, || {
        format!("du -s -B1 {upper} = {upper_disk}: the container should have written 30 MiB")
    });
    let image_key = labels(&[
        ("runtime", "containerd"),
        ("containerd_namespace", K8S_NS),
        ("image", reference),
    ]);
    let container_key = labels(&[
        ("runtime", "containerd"),
        ("containerd_namespace", K8S_NS),
        ("pod", pod),
        ("namespace", pod_ns),
        ("container", name),
    ]);
    // The new image and container arrive by containerd's events within
    // seconds; a writable layer's growth without an event waits for the
    // shipped rescan (1m ± 10% jitter). Prometheus scrapes every second.
    let seen = poll(FOLLOW_WITHIN, || {
        let image = prometheus::query(&live.prometheus, "headroom_image_size_bytes")?
            .get(&image_key)
            .copied();
        let writable = prometheus::query(&live.prometheus, "headroom_container_writable_bytes")?
            .get(&container_key)
            .copied();
        if image == Some(image_disk as f64) && writable == Some(upper_disk as f64) {
            Ok(())
        } else {
            bail!(
                "Prometheus: image {reference} {image:?} (du of its lowerdirs: {image_disk}), \
                 container {pod}/{name} writable {writable:?} (du -s -B1 {upper}: {upper_disk})"
            )
        }
    });
    match seen {
        Ok(()) => eprintln!(
            "runtimes: Prometheus showed the new image and container {:.1?} after the write",
            wrote.elapsed()
        ),
        Err(e) => c.error("the change in Prometheus", e),
    }
    if let Err(e) = undo.run() {
        c.error("removing the container and image again", e);
    }
    // The other trials expect the fixture node: wait until the agent does too
    // (removals raise events; the shipped rescan bounds the wait).
    let restored = poll(FOLLOW_WITHIN, || {
        let s = agent::status(&live.addr)?;
        let left = s.containers.iter().any(|x| x.id == id)
            || s.images.iter().any(|i| {
                i.runtime == RuntimeKind::Containerd && i.refs.iter().any(|r| r == reference)
            });
        if left {
            bail!("the agent still lists {id} or {reference} after they were removed")
        } else {
            Ok(())
        }
    });
    if let Err(e) = restored {
        c.error("the agent after the removal", e);
    }
    c.finish(&format!(
        "Prometheus at {}, agent at {}",
        live.prometheus, live.addr
    ))
}

/// `find PATH -xdev | wc -l`: the path and every entry under it.
fn find_entries(path: &Path) -> Result<u64> {
    Ok(oracle::run("find", &[path_str(path)?, "-xdev"])?
        .lines()
        .count() as u64)
}

/// Entries of everything mutable on the fixture node, from the runtimes'
/// own tools: each container's upper dir (`find -xdev`), each Docker log
/// file and each pod log file (one entry each). Returns the count and the
/// commands that gave it.
fn mutable_entries(w: &World) -> Result<(u64, Vec<String>)> {
    let mut total = 0;
    let mut how = Vec::new();
    let mut dirs: Vec<String> = Vec::new();
    for d in &w.fixtures.docker {
        dirs.push(
            w.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &d.id])?
                .trim()
                .to_owned(),
        );
        let log = w.docker(&["inspect", "-f", "{{.LogPath}}", &d.id])?;
        let log = Path::new(log.trim());
        let dir = log.parent().context("log path has no parent")?;
        let name = format!(
            "{}*",
            log.file_name().and_then(|n| n.to_str()).unwrap_or("")
        );
        let logs = oracle::run(
            "find",
            &[
                path_str(dir)?,
                "-maxdepth",
                "1",
                "-type",
                "f",
                "-name",
                &name,
            ],
        )?;
        total += logs.lines().count() as u64;
        how.push(format!(
            "{}: {} (find -name {name})",
            d.name,
            logs.lines().count()
        ));
    }
    dirs.push(oracle::ctr_upperdir(
        &w.containerd_sock,
        K8S_NS,
        &w.fixtures.cri.id,
    )?);
    // The pod's emptyDir is rescanned like a writable layer.
    dirs.push(path_str(&w.fixtures.empty_dir)?.to_owned());
    for dir in dirs {
        let n = find_entries(Path::new(&dir))?;
        total += n;
        how.push(format!("find {dir} -xdev: {n}"));
    }
    let pod_logs = path_str(&w.fixtures.pod_logs)?;
    let n = oracle::run("find", &[pod_logs, "-type", "f"])?
        .lines()
        .count() as u64;
    total += n;
    how.push(format!("find {pod_logs} -type f: {n}"));
    Ok((total, how))
}

/// `(headroom_scan_files_total, headroom_scans_total)` of one `/metrics`.
fn counters(addr: &str) -> Result<(u64, u64)> {
    let text = web::get(addr, "/metrics")?.body;
    let value = |name: &str| -> Result<u64> {
        exposition::value(&text, name)
            .with_context(|| format!("no {name} in /metrics:\n{text}"))
            .and_then(|v| oracle::parse_u64(&v))
    };
    Ok((
        value("headroom_scan_files_total")?,
        value("headroom_scans_total")?,
    ))
}

/// Entries of everything immutable the agent measures once: every layer
/// dir in `status` (`find -xdev`) and every content blob (one file each,
/// `ctr content ls` over all namespaces).
fn immutable_entries(w: &World, status: &Status) -> Result<(u64, String)> {
    let mut layers = 0;
    for l in &status.layers {
        layers += find_entries(Path::new(&l.path))?;
    }
    let sock = w.containerd_sock.as_path();
    let mut blobs = std::collections::BTreeSet::new();
    for ns in oracle::run("ctr", &["-a", path_str(sock)?, "namespaces", "ls", "-q"])?.lines() {
        blobs.extend(
            oracle::ctr(sock, ns, &["content", "ls", "-q"])?
                .lines()
                .map(str::to_owned),
        );
    }
    let how = format!(
        "{layers} in {} layer dirs (find -xdev) + {} content blobs (ctr content ls)",
        status.layers.len(),
        blobs.len()
    );
    Ok((layers + blobs.len() as u64, how))
}

/// Trial d: committed layers and blobs are walked once, mutable paths on
/// every pass. A fresh agent's `headroom_scan_files_total` is exactly
/// immutable + passes × mutable entries; the run's agent (which has seen
/// changes come and go) grows by the mutable entries per pass only.
///
/// This trial is about the rescan setting: the fresh agent is given
/// `--rescan-interval 1s` so that it makes several passes in 3.5 s. The
/// run's agent keeps the shipped interval (1m ± 10%): the trial waits for
/// its next pass.
pub fn rescans_walk_only_mutable_paths(w: &World) -> Result<()> {
    let _node = w.reading();
    let live = w.live()?;
    let (mut fresh, fresh_addr) = agent::short_lived_with(
        w,
        "agent-counts",
        agent::Paths::of_world(w),
        &["--rescan-interval", "1s"],
    )?;
    let first = counters(&fresh_addr)?;
    let (files_before, scans_before) = counters(&live.addr)?;
    let (mutable, how) = mutable_entries(w)?;
    let fresh_status = agent::status(&fresh_addr)?;
    let (immutable, immutable_how) = immutable_entries(w, &fresh_status)?;
    sleep(Duration::from_millis(3500));
    let later = counters(&fresh_addr)?;
    let mut c = Checks::new();
    let waited = Instant::now();
    let run_pass = poll(FOLLOW_WITHIN, || {
        let (files, scans) = counters(&live.addr)?;
        if scans > scans_before {
            Ok((files, scans))
        } else {
            bail!("the run's agent made no pass (headroom_scans_total {scans})")
        }
    });
    let (files_after, scans_after) = match run_pass {
        Ok(after) => after,
        Err(e) => {
            c.error("a pass of the run's agent (rescan_interval 1m ± 10%)", e);
            (files_before, scans_before)
        }
    };
    let status = agent::status(&live.addr)?;
    let passes = scans_after - scans_before;
    let grown = files_after - files_before;
    let oracle_mutable = format!("{mutable} mutable entries ({})", how.join("; "));
    c.that(later.1 >= first.1 + 2, || {
        format!(
            "the fresh agent made only {} passes in 3.5 s with --rescan-interval 1s",
            later.1 - first.1
        )
    });
    c.eq(
        "run's agent: headroom_scan_files_total growth",
        &format!("{passes} passes × {oracle_mutable}"),
        passes * mutable,
        grown,
    );
    c.eq(
        "run's agent: scan.files of the last pass",
        &oracle_mutable,
        mutable,
        status.scan.files,
    );
    for (when, (files, scans)) in [("first reading", first), ("3.5 s later", later)] {
        c.eq(
            &format!("fresh agent, {when}: headroom_scan_files_total after {scans} passes"),
            &format!(
                "{immutable} immutable entries ({immutable_how}) + {scans} × {oracle_mutable}"
            ),
            immutable + scans * mutable,
            files,
        );
    }
    eprintln!(
        "runtimes: {passes} passes of the run's agent ({:.1?} waited for) walked {grown} \
         entries ({mutable} mutable per pass); a fresh agent walked {immutable} immutable \
         entries once",
        waited.elapsed()
    );
    let stopped = fresh.terminate(Duration::from_secs(5));
    c.that(stopped.is_some_and(|s| s.success()), || {
        format!("the fresh agent's exit after SIGTERM: {stopped:?}")
    });
    c.finish(&format!(
        "run's agent before: files {files_before}, scans {scans_before}; after: files {files_after}, scans {scans_after}\n{}",
        fresh.output()
    ))
}
