//! A runtime that is down, under Headroom (issue 10). A private containerd
//! killed with SIGKILL, frozen with SIGSTOP (it accepts and never answers)
//! and started again under a running agent, each seen within one pass:
//! `headroom_runtime_up` goes 0 (figures from its files, a problem of kind
//! `unanswered`, one warning in the log) and back to 1. And containerd's
//! socket replaced by a file, a directory or a socket that never answers:
//! read from its files, said so.

use std::fs;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use headroom::model::{ReadFrom, RuntimeState, Status};
use headroom::runtime::{ProblemKind, RuntimeKind};
use rustix::process::Signal;

use crate::agent::{answers, has_image, poll, short_lived, status, Containerd, Paths, Proc};
use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle;
use crate::{exposition, subject, web, World};

/// containerd's timeout in the shipped config (`containerd_timeout`).
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long after a kill or a freeze the agent may take to reread: the
/// event stream breaks at once on a kill; on a freeze its keep-alive fails
/// within about the timeout plus ten seconds; then one pass, itself bounded
/// by the timeout.
const NOTICED_WITHIN: Duration = Duration::from_secs(30);
/// A restarted containerd is followed again within the reconnect backoff
/// (at most 10 s) and read by the pass that follows.
const BACK_WITHIN: Duration = Duration::from_secs(45);
/// What the log says once each time containerd goes down.
const DOWN_LINE: &str = "containerd does not answer";
/// What it says each time containerd is read through its API again.
const UP_LINE: &str = "containerd is up";

/// The containerd entry of `status`.
fn containerd_state(status: &Status) -> Option<&RuntimeState> {
    status
        .runtimes
        .iter()
        .find(|r| r.runtime == RuntimeKind::Containerd)
}

/// The value of the series `name` (with its labels) in `/metrics`.
fn metric(addr: &str, series: &str) -> Result<String> {
    let text = web::get(addr, "/metrics")?.body;
    exposition::value(&text, series).with_context(|| format!("/metrics has no {series}"))
}

/// The figures a pass gives of containerd, as the metrics say them.
fn metrics_of(addr: &str) -> Result<[String; 3]> {
    Ok([
        metric(addr, r#"headroom_runtime_up{runtime="containerd"}"#)?,
        metric(
            addr,
            r#"headroom_runtime_read_from{runtime="containerd",from="files"}"#,
        )?,
        metric(
            addr,
            r#"headroom_problems{kind="unanswered",reader="containerd"}"#,
        )?,
    ])
}

/// Which pass made `status`: its end (to the second) and its duration. A
/// refresh between passes republishes with both unchanged.
fn pass_of(status: &Status) -> (SystemTime, u64) {
    (status.generated_at, status.scan.duration_seconds.to_bits())
}

/// Polls the agent until a pass other than `before` has published, and
/// returns its document: the first pass after a change, which must already
/// show it.
fn next_pass(addr: &str, before: (SystemTime, u64), within: Duration) -> Result<Status> {
    poll(within, || {
        let s = status(addr)?;
        if pass_of(&s) == before {
            bail!("no pass since the change yet");
        }
        Ok(s)
    })
}

/// What a document says of containerd: (answers, read_from, image listed).
fn seen(status: &Status, reference: &str) -> (Option<bool>, Option<ReadFrom>, bool) {
    let r = containerd_state(status);
    (
        r.and_then(|r| r.answers),
        r.and_then(|r| r.read_from),
        has_image(status, reference),
    )
}

/// Trial: containerd killed, restarted, frozen and thawed under a running
/// agent with the shipped config; each change shows in the first pass after
/// it, in the document, the metrics and the log.
pub fn fault_containerd_killed_hung_and_restarted(w: &World) -> Result<()> {
    let reference = w.fixtures.image("base");
    let mut ctrd = Containerd::new(w, "ctr2", "256M")?;
    ctrd.start()?;
    oracle::ctr(
        &ctrd.sock,
        K8S_NS,
        &["images", "pull", "--plain-http", reference],
    )?;
    let empty = w.dir.join("ctr2/empty");
    fs::create_dir_all(&empty)?;
    let paths = Paths {
        docker_root: &empty,
        containerd_address: &ctrd.sock,
        containerd_root: &ctrd.root,
        kubelet_root: &empty,
        kubelet_config: &w.fixtures.kubelet_config,
        pod_logs: &empty,
    };
    let (mut agent, addr) = short_lived(w, "agent-ctr2", paths)?;
    let mut c = Checks::new();
    let up = Expect {
        seen: (Some(true), Some(ReadFrom::Api), true),
        metrics: ["1", "0", "0"],
        within: BACK_WITHIN,
    };
    let down = Expect {
        seen: (Some(false), Some(ReadFrom::Files), true),
        metrics: ["0", "1", "1"],
        within: NOTICED_WITHIN,
    };
    let first = poll(Duration::from_secs(10), || {
        let s = status(&addr)?;
        match seen(&s, reference) {
            now if now == up.seen => Ok(()),
            now => bail!("containerd should answer, with {reference}: {now:?}"),
        }
    });
    c.that(first.is_ok(), || format!("before any fault: {first:?}"));
    let agent_at = Agent {
        addr: &addr,
        reference,
    };
    let faults: [(&str, Signal, &Expect); 3] = [
        ("containerd killed (SIGKILL)", Signal::KILL, &down),
        ("containerd frozen (SIGSTOP)", Signal::STOP, &down),
        ("containerd thawed (SIGCONT)", Signal::CONT, &up),
    ];
    for (what, signal, expect) in faults {
        agent_at.check(&mut c, what, &mut || ctrd.signal(signal), expect);
        if signal == Signal::KILL {
            // Back before the next fault, through the same checks.
            agent_at.check(
                &mut c,
                "containerd started again",
                &mut || ctrd.start(),
                &up,
            );
        }
    }
    finish(c, &mut agent, &ctrd)
}

/// What the first pass after a change must show.
struct Expect {
    /// (answers, read_from, image listed) in the document.
    seen: (Option<bool>, Option<ReadFrom>, bool),
    /// [`metrics_of`]: up, read from files, problems unanswered.
    metrics: [&'static str; 3],
    /// How long after the change that pass may come.
    within: Duration,
}

/// The agent under trial.
struct Agent<'a> {
    addr: &'a str,
    reference: &'a str,
}

impl Agent<'_> {
    /// Makes a change with `act` and checks the first pass after it
    /// against `expect`.
    fn check(
        &self,
        c: &mut Checks,
        what: &str,
        act: &mut dyn FnMut() -> Result<()>,
        expect: &Expect,
    ) {
        let before = match status(self.addr) {
            Ok(s) => pass_of(&s),
            Err(e) => return c.error(what, e),
        };
        if let Err(e) = act() {
            return c.error(what, e);
        }
        match next_pass(self.addr, before, expect.within) {
            Ok(s) => {
                let got = seen(&s, self.reference);
                c.eq(
                    what,
                    "(answers, read_from, image listed) in the first pass after",
                    expect.seen,
                    got,
                );
                let metrics = metrics_of(self.addr).map_err(|e| format!("{e:#}"));
                let want = Ok(expect.metrics.map(String::from));
                c.eq(
                    what,
                    "[up, read from files, problems unanswered] in /metrics",
                    want,
                    metrics,
                );
                let took = Duration::from_secs_f64(s.scan.duration_seconds);
                c.that(took <= TIMEOUT + Duration::from_secs(3), || {
                    format!("{what}: the pass took {took:?}; a runtime that does not answer may cost it its timeout ({TIMEOUT:?}), no more")
                });
            }
            Err(e) => c.error(&format!("{what}: no pass"), e),
        }
        c.that(answers(self.addr, "/healthz", 200), || {
            format!("{what}: /healthz is not 200")
        });
    }
}

/// Stops the agent and checks its log: one warning per fault, one recovery
/// line per return (the first read included), no panic.
fn finish(mut c: Checks, agent: &mut Proc, ctrd: &Containerd) -> Result<()> {
    let stopped = agent.terminate(Duration::from_secs(5));
    c.that(stopped.is_some_and(|s| s.success()), || {
        format!("the agent's exit after SIGTERM: {stopped:?}")
    });
    let log = fs::read_to_string(&agent.log).unwrap_or_default();
    c.eq(
        "warnings that containerd is down",
        "one per fault",
        2,
        log.matches(DOWN_LINE).count(),
    );
    c.eq(
        "lines that containerd is up",
        "the first read and one per return",
        3,
        log.matches(UP_LINE).count(),
    );
    c.that(!log.contains("panicked"), || {
        "the agent panicked".to_owned()
    });
    c.finish(&format!(
        "{}\n--- containerd-2 log: {} ---",
        agent.output(),
        ctrd.log.display()
    ))
}

/// A Unix socket that accepts every connection and never answers (a hung
/// containerd, as the probe built one), until dropped.
struct Silent {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

impl Silent {
    fn bind(path: PathBuf) -> Result<Silent> {
        let listener = UnixListener::bind(&path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(Silent { path, stop })
    }
}

impl Drop for Silent {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = fs::remove_file(&self.path);
    }
}

/// Trial: `headroom status` with containerd's socket replaced by a regular
/// file, by a directory, and by a socket that accepts and never answers,
/// its root intact: each time containerd's images come from its files, the
/// entry says it does not answer, a problem `unanswered` names the socket,
/// and the run costs at most the timeout more than a normal one.
pub fn fault_containerd_socket_replaced_reads_its_files(w: &World) -> Result<()> {
    let (_, good) = w.report()?;
    let images = |s: &Status| {
        s.images
            .iter()
            .filter(|i| i.runtime == RuntimeKind::Containerd)
            .count()
    };
    let dir = tempfile::Builder::new()
        .prefix("socket-")
        .tempdir_in(&w.dir)?;
    let (file, folder) = (dir.path().join("file.sock"), dir.path().join("dir.sock"));
    fs::write(&file, b"")?;
    fs::create_dir(&folder)?;
    let silent = Silent::bind(dir.path().join("silent.sock"))?;
    let mut c = Checks::new();
    for (what, socket) in [
        ("a regular file", &file),
        ("a directory", &folder),
        ("a socket that never answers", &silent.path),
    ] {
        let layout = subject::Layout {
            containerd_address: socket,
            ..subject::node_layout(w)
        };
        let started = Instant::now();
        let run = subject::status(w, &layout, true)?;
        let took = started.elapsed();
        let s = match run.status() {
            Ok(s) => s,
            Err(e) => {
                c.error(what, e);
                continue;
            }
        };
        let sock = socket.display().to_string();
        c.eq(
            what,
            "(answers, read_from) of containerd",
            Some((Some(false), Some(ReadFrom::Files))),
            containerd_state(&s).map(|r| (r.answers, r.read_from)),
        );
        c.eq(
            what,
            "containerd images, as when it answers",
            images(&good),
            images(&s),
        );
        c.that(
            s.problems
                .iter()
                .any(|p| p.kind == ProblemKind::Unanswered && p.source == sock),
            || {
                format!(
                    "{what}: no problem `unanswered` on {sock}: {:?}",
                    s.problems
                )
            },
        );
        c.that(took <= TIMEOUT * 2, || format!("{what}: `headroom status` took {took:?}; a containerd that does not answer may cost it {TIMEOUT:?}"));
    }
    drop(silent);
    c.finish(&format!("sockets under {}", dir.path().display()))
}
