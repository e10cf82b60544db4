//! Ten minutes of ordinary churn on a node with room must never page
//! (issue 8). A small node ([`crate::smallnode`]: a ~2 GB ext4 holding
//! containerd's root and the kubelet root, hard thresholds of 15%) with a
//! 200 MB image (~400 MB on disk, ~1.5 GB left free) and an agent on the
//! shipped defaults. Meanwhile:
//!
//! - a pod log under the node's pod-logs dir grows at ~42 kB/s;
//! - every 30 s a writer puts 100 MB into a directory on the same
//!   filesystem, keeps it 10 s and deletes it;
//! - three small `ctr images pull`s (20 MB each, through the throttling
//!   proxy) at 1, 4 and 7 minutes, and one of those images is removed at
//!   8 minutes.
//!
//! `/api/v1/status` is read every second: no sample may say `pressure` or
//! `predicted` on any signal. The count of each state is printed.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, sleep};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use headroom::model::State;

use crate::agent::{self, Proc};
use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle;
use crate::pulls::{push_noise_image, registry_of, Throttle};
use crate::smallnode::{kubelet_config, SmallNode};
use crate::World;

/// How long the churn lasts.
const WINDOW: Duration = Duration::from_secs(600);
/// The node's disk.
const DISK: &str = "2G";
/// The image the node holds from the start (random bytes).
const BASE_BYTES: u64 = 200_000_000;
/// Each small pull (random bytes).
const SMALL_BYTES: u64 = 20_000_000;
/// When the small pulls start, since the churn started.
const PULLS_AT: [u64; 3] = [60, 240, 420];
/// When the first small image is removed.
const REMOVE_AT: u64 = 480;
/// The pod log grows this much per second.
const LOG_RATE: usize = 42_000;
/// The writer's file, its period and how long it keeps the file.
const SCRATCH_BYTES: usize = 100_000_000;
const SCRATCH_EVERY: Duration = Duration::from_secs(30);
const SCRATCH_KEPT: Duration = Duration::from_secs(10);

/// Sets the flag when dropped: the churn threads stop also when the trial
/// fails half-way.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Sleeps `d` in short steps; false when told to stop meanwhile.
fn nap(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
    }
    !stop.load(Ordering::SeqCst)
}

/// Appends [`LOG_RATE`] bytes of log lines to `file` every second.
fn grow_log(file: &Path, stop: &AtomicBool) -> Result<()> {
    let mut out = OpenOptions::new().create(true).append(true).open(file)?;
    let line = format!(
        "2025-01-01T00:00:00.000000000Z stdout F {}\n",
        "x".repeat(100)
    );
    let chunk = line.repeat(LOG_RATE / line.len());
    while nap(Duration::from_secs(1), stop) {
        out.write_all(chunk.as_bytes())?;
        out.flush()?;
    }
    Ok(())
}

/// Every [`SCRATCH_EVERY`]: writes [`SCRATCH_BYTES`] into `dir`, keeps
/// them [`SCRATCH_KEPT`], deletes them. Counts the cycles in `cycles`.
fn write_and_delete(dir: &Path, stop: &AtomicBool, cycles: &AtomicU64) -> Result<()> {
    fs::create_dir_all(dir)?;
    let block = vec![0x5au8; 1 << 20];
    loop {
        let began = Instant::now();
        let file = dir.join("scratch.bin");
        {
            let mut f = File::create(&file)?;
            let mut left = SCRATCH_BYTES;
            while left > 0 {
                let n = left.min(block.len());
                f.write_all(&block[..n])?;
                left -= n;
            }
            f.sync_all()?;
        }
        let kept = nap(SCRATCH_KEPT, stop);
        fs::remove_file(&file)?;
        cycles.fetch_add(1, Ordering::SeqCst);
        if !kept || !nap(SCRATCH_EVERY.saturating_sub(began.elapsed()), stop) {
            return Ok(());
        }
    }
}

/// Trial: see the module doc.
pub fn never_pages(w: &World) -> Result<()> {
    let registry = registry_of(w)?;
    let base = "hr/churn-base";
    push_noise_image(w, &registry, base, BASE_BYTES)?;
    let smalls: Vec<String> = (1..=PULLS_AT.len())
        .map(|i| format!("hr/churn-small-{i}"))
        .collect();
    for s in &smalls {
        push_noise_image(w, &registry, s, SMALL_BYTES)?;
    }
    let proxy = Throttle::start(&registry, 4_000_000)?;
    let node = SmallNode::start(w, "churn", DISK, &kubelet_config("15%", ""))?;
    node.pull_now(&format!("{registry}/{base}:1"), BASE_BYTES)?;
    let (capacity, available) = node.disk()?;
    eprintln!("runtimes: churn_never_pages: {capacity} bytes, {available} available at the start");
    let log_dir = node
        .pod_logs
        .join("shop_churn-0_6f9a1c2e-0000-4000-8000-00000000c4a7/app");
    fs::create_dir_all(&log_dir)?;
    let log = log_dir.join("0.log");
    let scratch = node.fs_root.join("scratch");

    let stop = AtomicBool::new(false);
    let cycles = AtomicU64::new(0);
    let mut counts: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    let mut paged: Vec<String> = Vec::new();
    let mut samples = 0u64;
    let mut pulls: Vec<Proc> = Vec::new();
    let mut removed = false;
    let outcome = thread::scope(|scope| -> Result<(Result<()>, Result<()>)> {
        let _stop = StopOnDrop(&stop);
        let logger = scope.spawn(|| grow_log(&log, &stop));
        let writer = scope.spawn(|| write_and_delete(&scratch, &stop, &cycles));
        let started = Instant::now();
        let mut tick = started;
        while started.elapsed() < WINDOW {
            let now = started.elapsed().as_secs();
            for (i, at) in PULLS_AT.iter().enumerate() {
                if now >= *at && pulls.len() == i {
                    let reference = format!("{}/{}:1", proxy.addr, smalls[i]);
                    pulls.push(node.pull(&reference, &format!("small-{}", i + 1), &[])?);
                }
            }
            if now >= REMOVE_AT && !removed {
                let reference = format!("{}/{}:1", proxy.addr, smalls[0]);
                oracle::ctr(
                    &node.ctrd.sock,
                    K8S_NS,
                    &["images", "rm", "--sync", &reference],
                )?;
                removed = true;
            }
            let s = agent::status(&node.addr)?;
            samples += 1;
            for (signal, p) in &s.prediction {
                *counts
                    .entry(signal.to_string())
                    .or_default()
                    .entry(p.state.to_string())
                    .or_default() += 1;
                if p.predicted || p.state == State::Pressure {
                    paged.push(format!(
                        "{:>5.1}s {signal} {} predicted={} seconds_until={:?}: {}",
                        started.elapsed().as_secs_f64(),
                        p.state,
                        p.predicted,
                        p.seconds_until,
                        p.reason
                    ));
                }
            }
            tick += Duration::from_secs(1);
            sleep(tick.saturating_duration_since(Instant::now()));
        }
        stop.store(true, Ordering::SeqCst);
        let joined = |h: thread::ScopedJoinHandle<'_, Result<()>>| {
            h.join()
                .unwrap_or_else(|_| bail!("a churn thread panicked"))
        };
        Ok((joined(logger), joined(writer)))
    })?;

    let mut c = Checks::new();
    if let Err(e) = outcome.0 {
        c.error("growing the pod log", e);
    }
    if let Err(e) = outcome.1 {
        c.error("writing and deleting the scratch file", e);
    }
    let cycles = cycles.load(Ordering::SeqCst);
    let expected = WINDOW.as_secs() / SCRATCH_EVERY.as_secs();
    c.that(cycles + 1 >= expected, || {
        format!("only {cycles} write-and-delete cycles in {WINDOW:?} (expected {expected})")
    });
    for pull in &mut pulls {
        let exit = pull.terminate(Duration::from_secs(30));
        c.that(exit.is_some_and(|s| s.success()), || {
            format!(
                "{} did not succeed: {exit:?}\n{}",
                pull.name(),
                pull.output()
            )
        });
    }
    c.that(pulls.len() == PULLS_AT.len() && removed, || {
        format!("{} pulls started, removal done: {removed}", pulls.len())
    });
    let log_bytes = fs::metadata(&log)
        .with_context(|| format!("the pod log {}", log.display()))?
        .len();
    let summary: Vec<String> = counts
        .iter()
        .map(|(signal, states)| {
            let states: Vec<String> = states.iter().map(|(k, v)| format!("{k} {v}")).collect();
            format!("{signal}: {}", states.join(", "))
        })
        .collect();
    eprintln!(
        "runtimes: churn_never_pages: {samples} samples in {WINDOW:?}; {}; {cycles} write-and-delete \
         cycles of {SCRATCH_BYTES} bytes, pod log {log_bytes} bytes, {} pulls, 1 removal",
        summary.join("; "),
        pulls.len()
    );
    c.that(paged.is_empty(), || {
        let shown: Vec<&String> = paged.iter().take(30).collect();
        format!(
            "{} of {samples} samples said pressure (first {}):\n  {}",
            paged.len(),
            shown.len(),
            shown
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("\n  ")
        )
    });
    c.finish(&node.context())
}
