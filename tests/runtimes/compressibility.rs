//! `headroom check-pull` against the private registry (TLS with the run's
//! CA, htpasswd auth; see `services.rs`) and real pulls by containerd:
//! five single-layer images of very different compressibility, each
//! estimated and then pulled (`ctr images pull --user --tlscacert`), the
//! estimate held to ±10% of what `du` says the containerd root grew by;
//! two images that fit alone but not together, the second checked while
//! the first is being pulled; and one exit code and message per registry
//! error. Every image is removed again (and GC'd) before the node is
//! handed back.

use std::cell::Cell;
use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::Command;
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use headroom::runtime::docker::fixture::Rng;
use serde_json::Value;

use crate::agent::Proc;
use crate::check_pull::{self, check_pull_at, check_pull_with, describe, document, Undo};
use crate::checks::Checks;
use crate::images::{K8S_NS, KUBELET_CONFIG};
use crate::oracle::{self, path_str};
use crate::pulls::{noise_layer, push_image, Fill, Throttle};
use crate::services::Registry;
use crate::subject::Run;
use crate::World;

/// How far the estimate may be from what the pull really added (`du` of
/// the containerd root), as a fraction of the latter.
const TOLERANCE: f64 = 0.10;
/// Files in the many-small-files image, spread over [`SMALL_DIRS`].
const SMALL_FILES: usize = 10_000;
/// Directories of the many-small-files image.
const SMALL_DIRS: usize = 10;
/// The fixture kubelet's `imagefs.available` line (1Gi).
const IMAGEFS_LINE: u64 = 1 << 30;
/// How long the throttled pull must stay in flight at least.
const IN_FLIGHT_FOR: Duration = Duration::from_secs(20);

/// One image of the estimate table.
struct Sample {
    /// What it holds, for the table.
    name: &'static str,
    /// Its repository on the private registry.
    repository: &'static str,
    /// Its one layer; the cell gets the files and directories written
    /// (only the many-small-files layer counts them).
    layer: for<'a> fn(&'a Cell<u64>) -> Fill<'a>,
}

/// The five images of the estimate table, least compressible first.
const SAMPLES: [Sample; 5] = [
    Sample {
        name: "random data, 120 MB",
        repository: "hr/c-random",
        layer: |_| noise_layer(0, 120_000_000),
    },
    Sample {
        name: "text (/usr/include), 50 MB",
        repository: "hr/c-text",
        layer: |_| {
            Box::new(|dir: &Path| {
                copy_files(&[Path::new("/usr/include")], dir, 50_000_000, is_text)
            })
        },
    },
    Sample {
        name: "ELF binaries (/usr/bin, /usr/lib), 120 MB",
        repository: "hr/c-binaries",
        layer: |_| {
            Box::new(|dir: &Path| {
                let from = ["/usr/bin", "/usr/lib/x86_64-linux-gnu"].map(Path::new);
                copy_files(&from, dir, 120_000_000, is_elf)
            })
        },
    },
    Sample {
        name: "10,000 files of 300 B–2 KB",
        repository: "hr/c-small",
        layer: |entries| {
            Box::new(move |dir: &Path| {
                entries.set(small_files(dir)?);
                Ok(())
            })
        },
    },
    Sample {
        name: "one 1.1 GB file of zeros",
        repository: "hr/c-zeros",
        layer: |_| {
            Box::new(|dir: &Path| {
                let zeros = dir.join("zeros.bin");
                // Sparse here; tar still reads (and containerd writes) 1.1 GB.
                oracle::run("truncate", &["-s", "1100M", path_str(&zeros)?]).map(drop)
            })
        },
    },
];

/// Copies regular files for which `keep` holds from the trees `from` (in
/// name order) into `to`, keeping their paths, until `budget` bytes.
fn copy_files(from: &[&Path], to: &Path, budget: u64, keep: fn(&Path) -> bool) -> Result<()> {
    let mut left = budget;
    for root in from {
        copy_tree(root, to, &mut left, keep)?;
    }
    if left > budget / 10 {
        bail!(
            "only {} of {budget} bytes found under {from:?}",
            budget - left
        );
    }
    Ok(())
}

/// [`copy_files`] of one directory, recursively.
fn copy_tree(dir: &Path, to: &Path, left: &mut u64, keep: fn(&Path) -> bool) -> Result<()> {
    let mut entries: Vec<_> = fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let kind = e.file_type()?;
        let path = e.path();
        if *left == 0 {
            break;
        } else if kind.is_dir() {
            copy_tree(&path, to, left, keep)?;
        } else if kind.is_file() && keep(&path) {
            let len = e.metadata()?.len();
            if len > *left {
                continue;
            }
            let dest = to.join(path.strip_prefix("/")?);
            fs::create_dir_all(dest.parent().unwrap_or(to))?;
            fs::copy(&path, &dest).with_context(|| format!("copying {}", path.display()))?;
            *left -= len;
        }
    }
    Ok(())
}

/// The first KiB of `path`, or nothing if it cannot be read.
fn head(path: &Path) -> Vec<u8> {
    let mut buf = Vec::with_capacity(1024);
    let _ = fs::File::open(path).and_then(|f| f.take(1024).read_to_end(&mut buf));
    buf
}

/// A file whose first KiB has no NUL byte.
fn is_text(path: &Path) -> bool {
    let h = head(path);
    !h.is_empty() && !h.contains(&0)
}

/// An ELF file.
fn is_elf(path: &Path) -> bool {
    head(path).starts_with(b"\x7fELF")
}

/// Writes [`SMALL_FILES`] files of 300–2047 random bytes (sizes and bytes
/// from the fixture [`Rng`]) into [`SMALL_DIRS`] directories; returns the
/// files and directories made.
fn small_files(dir: &Path) -> Result<u64> {
    let mut rng = Rng(11);
    for d in 0..SMALL_DIRS {
        fs::create_dir(dir.join(format!("d{d}")))?;
    }
    for i in 0..SMALL_FILES {
        let len = 300 + rng.below(1748);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        fs::write(dir.join(format!("d{}/f{i}", i % SMALL_DIRS)), bytes)?;
    }
    Ok((SMALL_FILES + SMALL_DIRS) as u64)
}

/// Megabytes, for the table.
fn mb(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / 1e6)
}

/// The private registry, as the tools are pointed at it.
fn private(w: &World) -> Registry<'_> {
    Registry::Private(&w.private)
}

/// Trial: each sample's estimate against the real growth of the
/// containerd root; prints the table.
pub fn estimates_within_10_percent(w: &World) -> Result<()> {
    let _node = w.changing();
    let mut c = Checks::new();
    eprintln!(
        "runtimes: | image | compressed MB | estimate MB | real by du MB | real by df MB | error |\n\
         runtimes: |---|---|---|---|---|---|"
    );
    for sample in &SAMPLES {
        if let Err(e) = estimate_one(w, &mut c, sample) {
            c.error(sample.name, e);
        }
    }
    c.finish("check-pull --json --ca-file <CA> (DOCKER_CONFIG=<good>) against ctr pulls")
}

/// Builds, estimates, pulls and removes one sample, recording into `c`.
fn estimate_one(w: &World, c: &mut Checks, sample: &Sample) -> Result<()> {
    let (name, repository) = (sample.name, sample.repository);
    let registry = private(w);
    let entries = Cell::new(0);
    push_image(w, registry, repository, &[(sample.layer)(&entries)])?;
    let reference = format!("{}/{repository}:1", registry.host());
    let image = describe(registry, &reference)?;
    let undo = Undo {
        w,
        reference: &reference,
        image: &image,
    };
    undo.run()?;
    let run = check_pull_at(w, registry, &["--json"], &reference)?;
    let added = check_pull::pull_and_measure(w, registry, &reference)?;
    let compressed: u64 = image.layers.iter().map(|(_, size)| size).sum();
    let doc = document(&run);
    let estimate = doc.as_ref().ok().and_then(|d| d["total_bytes"].as_u64());
    let error = estimate.map(|e| check_pull::error(e, added.root));
    eprintln!(
        "runtimes: | {name} | {} | {} | {} | {} | {} |",
        mb(compressed),
        estimate.map_or("—".into(), mb),
        mb(added.root),
        mb(added.df),
        error.map_or("—".into(), |e| format!("{:+.1}%", e * 100.0))
    );
    match doc {
        Ok(doc) => judge(c, name, &run, &doc, added.root, entries.get()),
        Err(e) => c.error(name, e),
    }
    undo.run()
}

/// The checks on one sample's document: the estimate within
/// [`TOLERANCE`] of `real`, each layer saying how it was sized, and the
/// small-files layer's inodes near `entries` (when non-zero).
fn judge(c: &mut Checks, name: &str, run: &Run, doc: &Value, real: u64, entries: u64) {
    c.that((0..=2).contains(&run.code), || {
        format!("{name}: a verdict (exit 0, 1 or 2)\n{}", run.describe())
    });
    let estimate = doc["total_bytes"].as_u64().unwrap_or(0);
    let error = check_pull::error(estimate, real);
    c.that(error.abs() <= TOLERANCE, || {
        format!(
            "{name}: total_bytes {estimate} within {TOLERANCE} of du's growth {real} ({:+.1}%)",
            error * 100.0
        )
    });
    let layers = doc["layers"].as_array().cloned().unwrap_or_default();
    c.that(!layers.is_empty(), || format!("{name}: no layers in {doc}"));
    for l in &layers {
        let u = &l["unpacked"];
        let sized = ["stream_bytes", "disk_bytes", "inodes"]
            .iter()
            .all(|k| u[k].is_u64())
            && u["exact"].is_boolean()
            && u["method"].as_str().is_some_and(|m| !m.is_empty());
        c.that(sized, || {
            format!(
                "{name}: layer {} should say how it was sized \
                 (unpacked.stream_bytes, disk_bytes, inodes, exact, method): {u}",
                l["digest"]
            )
        });
    }
    if entries > 0 {
        let inodes: u64 = layers
            .iter()
            .filter_map(|l| l["unpacked"]["inodes"].as_u64())
            .sum();
        c.near(
            &format!("{name}: unpacked.inodes"),
            "files and directories written into the layer",
            entries as f64,
            inodes as f64,
            entries as f64 * TOLERANCE,
        );
    }
}

/// Trial: A and B each fit alone but not together; check-pull of B says
/// so while A is being pulled, and names A among the pulls in flight.
pub fn counts_pulls_in_flight(w: &World) -> Result<()> {
    let _node = w.changing();
    if !KUBELET_CONFIG.contains("imagefs.available: 1Gi") {
        bail!("the fixture's imagefs line is not the 1Gi this trial sizes from");
    }
    let registry = private(w);
    let avail = oracle::df(&w.containerd_root)?.avail;
    let room = avail.saturating_sub(IMAGEFS_LINE);
    // A pull costs the blob plus the unpacked layer, ≈ 2× the random layer:
    // one takes 2/3 of the room, both 4/3 of it.
    let layer = room / 3;
    eprintln!(
        "runtimes: imagefs has {} MB free, {} MB above the line: two layers of {} MB",
        mb(avail),
        mb(room),
        mb(layer)
    );
    for repository in ["hr/flight-a", "hr/flight-b"] {
        push_image(w, registry, repository, &[noise_layer(0, layer)])?;
    }
    let b = format!("{}/hr/flight-b:1", registry.host());
    let mut c = Checks::new();
    let alone = check_pull_at(w, registry, &["--json"], &b)?;
    c.that((0..=1).contains(&alone.code), || {
        format!("B alone fits (exit 0 or 1)\n{}", alone.describe())
    });
    // The proxy passes TLS through: the certificate names 127.0.0.1.
    let proxy = Throttle::start(registry.host(), layer / 30)?;
    let a = format!("{}/hr/flight-a:1", proxy.addr);
    let image = describe(registry, &a)?;
    let undo = Undo {
        w,
        reference: &a,
        image: &image,
    };
    let (mut pull, started) = start_pull(w, registry, &a)?;
    let during = wait_in_flight(w, &mut pull).and_then(|()| {
        let run = check_pull_at(w, registry, &["--json"], &b)?;
        Ok((run, pull.exited().is_none()))
    });
    let exit = wait_exit(&mut pull, Duration::from_secs(120));
    let took = started.elapsed();
    eprintln!("runtimes: the throttled pull of A took {took:.1?}");
    c.that(exit.is_some_and(|s| s.success()), || {
        format!("`ctr images pull {a}` failed\n{}", pull.output())
    });
    c.that(took >= IN_FLIGHT_FOR, || {
        format!("the pull should stay in flight {IN_FLIGHT_FOR:?}, took {took:?}")
    });
    match during {
        Ok((run, still)) => {
            c.that(still, || {
                "A was still being pulled when B was checked".into()
            });
            judge_in_flight(&mut c, &run, layer);
        }
        Err(e) => c.error("check-pull of B while A is pulled", e),
    }
    if let Err(e) = undo.run() {
        c.error("removing A again", e);
    }
    c.finish(&alone.describe())
}

/// Starts `ctr images pull` of `reference` from `registry`.
fn start_pull(w: &World, registry: Registry<'_>, reference: &str) -> Result<(Proc, Instant)> {
    let mut cmd = Command::new("ctr");
    cmd.args(["-a", path_str(&w.containerd_sock)?, "-n", K8S_NS])
        .args(["images", "pull"])
        .args(registry.ctr_pull(reference)?)
        .arg(reference);
    let pull = Proc::spawn("ctr pull", cmd, w.dir.join("flight-ctr.log"))?;
    Ok((pull, Instant::now()))
}

/// Waits until some ingest in containerd's content store holds data (the
/// layer is downloading).
fn wait_in_flight(w: &World, pull: &mut Proc) -> Result<()> {
    let ingest = w
        .containerd_root
        .join("io.containerd.content.v1.content/ingest");
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(30) {
        if pull.exited().is_some() {
            bail!(
                "the pull ended before it was seen in flight\n{}",
                pull.output()
            );
        }
        let busy = fs::read_dir(&ingest)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| fs::metadata(e.path().join("data")).is_ok_and(|m| m.len() > 1 << 20));
        if busy {
            return Ok(());
        }
        sleep(Duration::from_millis(200));
    }
    bail!("no ingest under {} holds data after 30 s", ingest.display())
}

/// Waits up to `within` for `pull` to exit.
fn wait_exit(pull: &mut Proc, within: Duration) -> Option<std::process::ExitStatus> {
    let started = Instant::now();
    while started.elapsed() < within {
        if let Some(status) = pull.exited() {
            return Some(status);
        }
        sleep(Duration::from_millis(200));
    }
    pull.terminate(Duration::from_secs(5))
}

/// B checked while A is in flight: pressure (exit 2), A listed in
/// `in_flight` with its bytes left and its unpack, measured from the
/// registry: its random `layer` bytes, within 10%.
fn judge_in_flight(c: &mut Checks, run: &Run, layer: u64) {
    c.eq(
        "exit code of B while A is pulled",
        "A and B do not fit together",
        2,
        run.code,
    );
    let doc = match document(run) {
        Ok(doc) => doc,
        Err(e) => return c.error("check-pull of B while A is pulled", e),
    };
    let listed = doc["in_flight"].as_array().cloned().unwrap_or_default();
    let a = listed.iter().find(|p| {
        p["reference"]
            .as_str()
            .is_some_and(|r| r.contains("hr/flight-a"))
    });
    c.that(
        a.is_some_and(|p| p["remaining_download_bytes"].is_u64() && p["unpack_bytes"].is_u64()),
        || format!("in_flight names hr/flight-a with remaining_download_bytes and unpack_bytes: {listed:?}"),
    );
    let unpack = a.and_then(|p| p["unpack_bytes"].as_u64()).unwrap_or(0);
    c.that(check_pull::error(unpack, layer).abs() <= TOLERANCE, || {
        format!("A's unpack_bytes {unpack} within 10% of its {layer}-byte layer: {listed:?}")
    });
    let method = a.and_then(|p| p["method"].as_str()).unwrap_or("");
    c.that(method.contains("measured from the registry"), || {
        format!("A's layers measured from its registry: {method:?}")
    });
}

/// One check-pull that must fail: how it is asked, and what it must say.
struct Failing<'a> {
    /// What goes wrong, for messages.
    what: &'a str,
    /// Flags before the image.
    args: &'a [&'a str],
    /// `DOCKER_CONFIG`.
    config: &'a str,
    /// The image asked for.
    image: &'a str,
    /// The exit code it must give.
    code: i32,
    /// Words stderr must hold (case-insensitive).
    words: &'a [&'a str],
}

/// Trial: one success and four failures against the private registry,
/// each failure with its own exit code and message.
pub fn private_registry_errors(w: &World) -> Result<()> {
    let p = &w.private;
    let registry = private(w);
    let mut c = Checks::new();
    // The registry itself: credentials required, and these ones accepted.
    c.eq(
        "GET /v2/ without credentials",
        "curl --cacert",
        401,
        p.status("/v2/", None)?,
    );
    c.eq(
        "GET /v2/ with credentials",
        "curl --cacert -u",
        200,
        p.status("/v2/", Some(&p.creds()))?,
    );
    push_image(w, registry, "hr/private", &[noise_layer(0, 1_000_000)])?;
    let reference = format!("{}/hr/private:1", p.addr);
    let ok = check_pull_at(w, registry, &["--json"], &reference)?;
    let layers = document(&ok).map(|d| d["layers"].as_array().map_or(0, Vec::len));
    c.that(
        (0..=2).contains(&ok.code) && layers.is_ok_and(|n| n > 0),
        || {
            format!(
                "an authenticated check-pull gives a verdict and layers\n{}",
                ok.describe()
            )
        },
    );
    let ca = path_str(&p.ca_file)?;
    let good = path_str(&p.docker_config)?;
    let wrong = path_str(&p.wrong_docker_config)?;
    let failing = |what, args, config, image, code, words| Failing {
        what,
        args,
        config,
        image,
        code,
        words,
    };
    let (tag, with_ca, refused) = (
        format!("{}/hr/private:nope", p.addr),
        ["--ca-file", ca],
        ["unauthorized", wrong],
    );
    let cases = [
        failing("wrong password", &with_ca, wrong, &reference, 8, &refused),
        failing("unknown CA", &[], good, &reference, 7, &["certificate"]),
        failing(
            "unresolvable host",
            &with_ca,
            good,
            "nosuch.invalid/hr/x:1",
            5,
            &["resolve"],
        ),
        failing("unknown tag", &with_ca, good, &tag, 4, &[]),
    ];
    let mut messages = Vec::new();
    for f in &cases {
        let run = check_pull_with(w, f.args, &[("DOCKER_CONFIG", f.config)], f.image)?;
        c.eq(
            &format!("exit code, {}", f.what),
            "docs/exit-codes.md",
            f.code,
            run.code,
        );
        for word in f.words {
            c.that(
                run.stderr.to_lowercase().contains(&word.to_lowercase()),
                || format!("{}: stderr mentions {word:?}\n{}", f.what, run.describe()),
            );
        }
        messages.push(run.stderr.trim().to_owned());
    }
    let mut distinct = messages.clone();
    distinct.sort();
    distinct.dedup();
    c.that(
        distinct.len() == messages.len() && messages.iter().all(|m| !m.is_empty()),
        || format!("each failure has its own message: {messages:#?}"),
    );
    c.finish(&ok.describe())
}
