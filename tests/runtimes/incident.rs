//! The incident replayed for real (issue 4): a containerd whose root is on a
//! small loop-mounted ext4, the registry behind a throttling proxy so a pull
//! takes seconds, and a `headroom agent` on that containerd whose kubelet
//! root is on the same filesystem (imagefs is nodefs), with
//! `imagefs.available`/`nodefs.available` hard thresholds of 10%.
//! `/api/v1/status` is polled every 200 ms while `ctr images pull` runs:
//!
//! - a pull that does not fit: imagefs must be predicted in pressure while
//!   the pull still runs and before containerd fails with "no space left on
//!   device" (the lead time is printed), while the filesystem is still above
//!   its threshold (a prediction, not an observation);
//! - a pull that fits: never predicted, and the pull succeeds;
//! - a pull that fits only if image GC deletes an unused image: a warning
//!   saying what image GC can free, never pressure while the filesystem is
//!   above its threshold.
//!
//! Each case has its own containerd, filesystem and agent, stopped and
//! unmounted by their guards also when the trial fails.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use headroom::report::{Filesystem, Prediction, Status};

use crate::agent::{self, poll, short_lived, Containerd, Paths, Proc};
use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle::{self, path_str};
use crate::pulls::{push_noise_image, registry_of, Throttle};
use crate::World;

/// What the proxy lets through, bytes per second per connection.
const RATE: u64 = 12_000_000;
/// The same for the pulls that fit (with or without GC): slow enough
/// (~3 s, ~8 s) that the agent, which rereads containerd every 2 s while
/// no pull is known, lists them a few times.
const SLOW_RATE: u64 = 6_000_000;
/// How often the agent's status is read while a pull runs.
const SAMPLE_EVERY: Duration = Duration::from_millis(200);
/// How long a pull may take before the trial gives up on it.
const PULL_WITHIN: Duration = Duration::from_secs(40);
/// What containerd says when the disk is full.
const ENOSPC: &str = "no space left on device";

/// Case a: 100 MB of random bytes (as big compressed) on a 160 MiB ext4
/// (~140 MB available): the download fits, download plus unpack do not.
const TOO_BIG: (&str, u64) = ("hr/incident-too-big", 100_000_000);
/// Case b: 20 MB on the same size of filesystem (even at the default
/// unpack ratio of 2.5, 70 MB of ~125 MB above the threshold).
const FITS: (&str, u64) = ("hr/incident-fits", 20_000_000);
/// Case c, on a 256 MiB ext4 (~223 MB available, threshold ~24 MB): an
/// unused image holding ~140 MB (blob and unpacked layer)…
const OLD: (&str, u64) = ("hr/incident-old", 70_000_000);
/// …and a pull costing ~90 MB (download and unpack, at the ratio the old
/// image teaches): ~30 MB past the threshold, ~110 MB above it after GC.
const NEEDS_GC: (&str, u64) = ("hr/incident-needs-gc", 45_000_000);

/// The kubelet config of the small node; `extra` is appended.
fn kubelet_config(extra: &str) -> String {
    format!(
        "apiVersion: kubelet.config.k8s.io/v1beta1\nkind: KubeletConfiguration\nevictionHard:\n  imagefs.available: \"10%\"\n  nodefs.available: \"10%\"\n{extra}"
    )
}

/// One case: the run, the registry, the proxy to pull through, the checks.
type Case = fn(&World, &str, &str, &mut Checks) -> Result<()>;

/// Trial: the three cases, one after the other.
pub fn replay(w: &World) -> Result<()> {
    let _node = w.reading();
    let registry = registry_of(w)?;
    for (repository, bytes) in [TOO_BIG, FITS, OLD, NEEDS_GC] {
        push_noise_image(w, &registry, repository, bytes)?;
    }
    let proxy = Throttle::start(&registry, RATE)?;
    let slow = Throttle::start(&registry, SLOW_RATE)?;
    let mut c = Checks::new();
    let cases: [(&str, Case, &str); 3] = [
        ("a pull that does not fit", does_not_fit, &proxy.addr),
        ("a pull that fits", fits, &slow.addr),
        ("a pull that fits after image GC", fits_after_gc, &slow.addr),
    ];
    for (what, case, through) in cases {
        if let Err(e) = case(w, &registry, through, &mut c) {
            c.error(what, e);
        }
    }
    c.finish(&format!(
        "registry {registry}, proxies {} and {}",
        proxy.addr, slow.addr
    ))
}

/// Case a: pressure predicted before containerd runs out of space.
fn does_not_fit(w: &World, registry: &str, proxy: &str, c: &mut Checks) -> Result<()> {
    let node = SmallNode::start(w, "incident-a", "160M", &kubelet_config(""))?;
    let (code, before) = node.check_pull(&format!("{registry}/{}:1", TOO_BIG.0))?;
    c.eq(
        "check-pull exit code before a pull that does not fit",
        "2 = pressure predicted",
        2,
        code,
    );
    c.that(before.predicted, || {
        format!("check-pull should predict pressure: {before:?}")
    });
    let mut pull = node.pull(&format!("{proxy}/{}:1", TOO_BIG.0), "a")?;
    let watch = watch(&node.addr, &mut pull)?;
    let out = pull.output();
    c.that(watch.exit.is_some_and(|s| !s.success()), || {
        format!("the pull should fail: {:?}\n{out}", watch.exit)
    });
    c.that(out.contains(ENOSPC), || {
        format!("the pull should fail with {ENOSPC:?}\n{out}")
    });
    let first = watch.samples.iter().find(|s| s.imagefs.predicted);
    let Some(first) = first else {
        c.that(false, || {
            format!(
                "imagefs was never predicted in pressure while the pull ran: {}",
                watch.describe()
            )
        });
        return Ok(());
    };
    c.eq(
        "imagefs state when first predicted",
        "verdict.rs: a pull that crosses the threshold",
        "pressure",
        first.imagefs.state.as_str(),
    );
    c.that(first.fs.available_bytes >= first.fs.threshold_bytes, || {
        format!(
            "when first predicted, imagefs should still be above its threshold (a prediction): {first:?}"
        )
    });
    if let Some(failed) = watch.exit_at {
        c.that(first.at < failed, || {
            format!(
                "predicted at {:?}, after the pull failed at {failed:?}",
                first.at
            )
        });
        eprintln!(
            "runtimes: incident: pressure predicted {:.1}s before containerd failed ({ENOSPC}); \
             the agent said: {}",
            failed.saturating_sub(first.at).as_secs_f64(),
            first.imagefs.reason
        );
    }
    Ok(())
}

/// Case b: no false alarm for a pull that fits.
fn fits(w: &World, registry: &str, proxy: &str, c: &mut Checks) -> Result<()> {
    let node = SmallNode::start(w, "incident-b", "160M", &kubelet_config(""))?;
    let (code, before) = node.check_pull(&format!("{registry}/{}:1", FITS.0))?;
    c.eq(
        "check-pull exit code before a pull that fits",
        "0 = ok",
        0,
        code,
    );
    c.that(!before.predicted, || {
        format!("check-pull should predict nothing: {before:?}")
    });
    let mut pull = node.pull(&format!("{proxy}/{}:1", FITS.0), "b")?;
    let watch = watch(&node.addr, &mut pull)?;
    c.that(watch.exit.is_some_and(|s| s.success()), || {
        format!(
            "the pull should succeed: {:?}\n{}",
            watch.exit,
            pull.output()
        )
    });
    c.that(watch.samples.iter().any(|s| s.pulls > 0), || {
        format!("the agent never listed the pull: {}", watch.describe())
    });
    c.that(!watch.samples.iter().any(|s| s.predicted_anywhere), || {
        format!(
            "pressure predicted for a pull that fits: {}",
            watch.describe()
        )
    });
    Ok(())
}

/// Case c: a warning that image GC makes room, not pressure.
fn fits_after_gc(w: &World, registry: &str, proxy: &str, c: &mut Checks) -> Result<()> {
    let config = kubelet_config("imageMinimumGCAge: 0s\n");
    let node = SmallNode::start(w, "incident-c", "256M", &config)?;
    let old = format!("{registry}/{}:1", OLD.0);
    oracle::ctr(
        &node.ctrd.sock,
        K8S_NS,
        &["images", "pull", "--plain-http", &old],
    )?;
    // The GC model needs the old image measured: its unique bytes.
    poll(Duration::from_secs(15), || {
        let s = agent::status(&node.addr)?;
        let measured = s
            .images
            .iter()
            .any(|i| i.refs.contains(&old) && i.unique_disk_bytes >= OLD.1);
        if measured {
            Ok(())
        } else {
            bail!("the agent does not list {old} with its unpacked bytes yet")
        }
    })?;
    let mut pull = node.pull(&format!("{proxy}/{}:1", NEEDS_GC.0), "c")?;
    let watch = watch(&node.addr, &mut pull)?;
    let warned = watch.samples.iter().find(|s| {
        s.pulls > 0
            && s.imagefs.state == "warning"
            && s.imagefs.reason.contains("image GC can free")
    });
    match warned {
        Some(s) => eprintln!(
            "runtimes: incident: with an unused image, the agent said: {}",
            s.imagefs.reason
        ),
        None => c.that(false, || {
            format!(
                "imagefs should warn that image GC makes room while the pull runs: {}",
                watch.describe()
            )
        }),
    }
    let cried_wolf: Vec<&Sample> = watch
        .samples
        .iter()
        .filter(|s| s.imagefs.predicted && s.fs.available_bytes >= s.fs.threshold_bytes)
        .collect();
    c.that(cried_wolf.is_empty(), || {
        format!("pressure predicted although image GC makes room: {cried_wolf:?}")
    });
    Ok(())
}

/// A containerd on a small filesystem and an agent whose kubelet root is
/// on it too. Fields drop in order: the agent, then containerd (and the
/// filesystem).
struct SmallNode {
    agent: Proc,
    addr: String,
    ctrd: Containerd,
    dir: PathBuf,
    /// (flag, path) pairs that point a headroom face at this node.
    layout: Vec<(&'static str, PathBuf)>,
}

impl SmallNode {
    fn start(w: &World, name: &str, size: &str, kubelet_config: &str) -> Result<SmallNode> {
        let mut ctrd = Containerd::new(w, name, size)?;
        ctrd.start()?;
        let dir = w.dir.join(name);
        let fs_root = dir.join("fs");
        let kubelet_root = fs_root.join("kubelet");
        let pod_logs = fs_root.join("pods");
        let empty = dir.join("empty");
        let config = dir.join("kubelet-config.yaml");
        for d in [&kubelet_root, &pod_logs, &empty] {
            fs::create_dir_all(d)?;
        }
        fs::write(&config, kubelet_config)?;
        let paths = Paths {
            docker_root: &empty,
            containerd_address: &ctrd.sock,
            containerd_root: &ctrd.root,
            kubelet_root: &kubelet_root,
            kubelet_config: &config,
            pod_logs: &pod_logs,
        };
        let (agent, addr) = short_lived(w, &format!("agent-{name}"), paths)?;
        let layout = vec![
            ("--docker-root", empty.clone()),
            ("--containerd-address", ctrd.sock.clone()),
            ("--containerd-root", ctrd.root.clone()),
            ("--kubelet-root", kubelet_root.clone()),
            ("--kubelet-config", config.clone()),
            ("--pod-logs", pod_logs.clone()),
        ];
        let node = SmallNode {
            agent,
            addr,
            ctrd,
            dir,
            layout,
        };
        node.check_layout(&fs_root)?;
        Ok(node)
    }

    /// Fails unless the agent sees nodefs and imagefs both on `fs_root`.
    fn check_layout(&self, fs_root: &Path) -> Result<()> {
        let mount = path_str(fs_root)?;
        let s = agent::status(&self.addr)?;
        for signal in ["nodefs", "imagefs"] {
            let fs = filesystem(&s, signal)?;
            if fs.mountpoint != mount || fs.threshold_bytes == 0 {
                bail!(
                    "{signal} should be {mount} with a threshold: {fs:?}\n{}",
                    self.agent.output()
                );
            }
        }
        Ok(())
    }

    /// `headroom check-pull --json --plain-http reference` against this
    /// node, before anything is pulled: (exit code, imagefs prediction).
    fn check_pull(&self, reference: &str) -> Result<(i32, Prediction)> {
        let exe = env!("CARGO_BIN_EXE_headroom");
        let mut cmd = Command::new(exe);
        cmd.args(["check-pull", "--json", "--plain-http"]);
        for (flag, path) in &self.layout {
            cmd.arg(flag).arg(path);
        }
        let config = self.dir.join("empty-config.toml");
        fs::write(&config, "")?;
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("HEADROOM_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg(reference).env("HEADROOM_CONFIG", &config);
        let out = cmd.output()?;
        let code = out.status.code().unwrap_or(-1);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| {
            anyhow!(
                "check-pull {reference} (exit {code}) printed no document: {e}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
        let imagefs = doc["prediction"]["imagefs"].clone();
        Ok((code, serde_json::from_value(imagefs)?))
    }

    /// Starts `ctr images pull` of `reference` into `k8s.io`.
    fn pull(&self, reference: &str, case: &str) -> Result<Proc> {
        let mut cmd = Command::new("ctr");
        cmd.args(["-a", path_str(&self.ctrd.sock)?, "-n", K8S_NS])
            .args(["images", "pull", "--plain-http", reference]);
        let log = self.dir.join(format!("pull-{case}.log"));
        Proc::spawn(&format!("ctr pull {reference}"), cmd, log)
    }
}

/// The filesystem entry of `signal`.
fn filesystem<'a>(s: &'a Status, signal: &str) -> Result<&'a Filesystem> {
    s.filesystems
        .iter()
        .find(|f| f.signal == signal)
        .ok_or_else(|| anyhow!("no {signal} in the status document"))
}

/// What the agent said at one moment while the pull ran.
#[derive(Debug)]
struct Sample {
    /// Since the pull started.
    at: Duration,
    imagefs: Prediction,
    fs: Filesystem,
    /// Pulls listed.
    pulls: usize,
    /// Whether any filesystem was predicted in pressure.
    predicted_anywhere: bool,
}

/// The samples taken while a pull ran, and how and when it ended.
struct Watch {
    samples: Vec<Sample>,
    exit: Option<std::process::ExitStatus>,
    exit_at: Option<Duration>,
}

impl Watch {
    fn describe(&self) -> String {
        let lines: Vec<String> = self
            .samples
            .iter()
            .map(|s| {
                format!(
                    "\n  {:>5.1}s pulls={} available={} threshold={} {} predicted={}: {}",
                    s.at.as_secs_f64(),
                    s.pulls,
                    s.fs.available_bytes,
                    s.fs.threshold_bytes,
                    s.imagefs.state,
                    s.imagefs.predicted,
                    s.imagefs.reason
                )
            })
            .collect();
        format!(
            "pull ended {:?} at {:?}; samples:{}",
            self.exit,
            self.exit_at,
            lines.concat()
        )
    }
}

/// Reads the agent's status every [`SAMPLE_EVERY`] until `pull` exits (a
/// sample counts only if the pull was still running once it was read).
fn watch(addr: &str, pull: &mut Proc) -> Result<Watch> {
    let started = Instant::now();
    let mut samples = Vec::new();
    while started.elapsed() < PULL_WITHIN {
        let status = agent::status(addr)?;
        let at = started.elapsed();
        if let Some(exit) = pull.exited() {
            return Ok(Watch {
                samples,
                exit: Some(exit),
                exit_at: Some(at),
            });
        }
        let imagefs = status
            .prediction
            .get("imagefs")
            .cloned()
            .ok_or_else(|| anyhow!("no imagefs prediction: {:?}", status.prediction))?;
        samples.push(Sample {
            at,
            imagefs,
            fs: filesystem(&status, "imagefs")?.clone(),
            pulls: status.pulls.len(),
            predicted_anywhere: status.prediction.values().any(|p| p.predicted),
        });
        sleep(SAMPLE_EVERY);
    }
    Ok(Watch {
        samples,
        exit: pull.terminate(Duration::from_secs(5)),
        exit_at: None,
    })
}
