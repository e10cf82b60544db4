//! The fleet pre-flight (issue 13) on three sandbox nodes: three
//! containerd instances, each rooted on its own loop-mounted ext4 of a
//! different size, each holding different images (pulled from the run's
//! registry with `ctr`), each watched by its own `headroom agent` on the
//! shipped configuration (only the paths, `--listen` and `NODE_NAME` are
//! its own), and a real Prometheus scraping the three agents.
//!
//! - `fleet-a` (256 MiB) holds a small image of random bytes (so its agent
//!   learns an unpack ratio of ~1) and has a big pull in flight, through
//!   the throttling proxy of `pulls.rs`, while the fleet is asked;
//! - `fleet-b` (512 MiB) holds the fixture's `base`, so two of the checked
//!   image's three layers are there already;
//! - `fleet-c` (1 GiB) holds `app2`; its agent is stopped before the fleet
//!   is asked, so Prometheus sees it down.
//!
//! The checked image is the fixture's `app1`. Every node, agent, the proxy,
//! the pull and Prometheus are held by guards and stopped by their pids
//! (and the disks unmounted) when the trial ends, also when it fails.

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use headroom::model::Pull;
use serde_json::Value;

use crate::agent::{self, poll, Containerd, Paths, Proc};
use crate::check_pull::document;
use crate::checks::Checks;
use crate::images::K8S_NS;
use crate::oracle::{self, line, path_str};
use crate::prometheus::{self, JOB};
use crate::pulls::{push_noise_image, registry_of, Throttle};
use crate::services::free_port;
use crate::smallnode::kubelet_config;
use crate::subject::Run;
use crate::World;

/// The fixture image every node is asked about: base's two layers and
/// one of its own.
const CHECKED: &str = "app1";
/// The hard eviction thresholds of every node (imagefs and nodefs).
const PERCENT_TEXT: &str = "15%";
/// The random image fleet-a holds, so its agent learns its unpack ratio.
const TEACHER: &str = "hr/fleet-teacher";
/// Its size.
const TEACHER_BYTES: u64 = 4_000_000;
/// The image being pulled on fleet-a while the fleet is asked.
const IN_FLIGHT: &str = "hr/fleet-big";
/// Its one incompressible layer: with its unpack (~2×) more than the
/// ~187 MB fleet-a has above its line, so fleet-a is in pressure.
const IN_FLIGHT_BYTES: u64 = 120_000_000;
/// What the proxy lets through, bytes per second: the pull stays in
/// flight for five minutes, far longer than the trial asks, and moves
/// only a few MB between the asks (well inside [`TOLERANCE`]).
const RATE: u64 = 400_000;
/// How long an agent may take to finish its first inventory.
const READY_WITHIN: Duration = Duration::from_secs(30);
/// How long Prometheus may take to see a target up or down.
const SCRAPED_WITHIN: Duration = Duration::from_secs(30);

/// One node of the fleet: its name, disk and what it holds.
struct Spec {
    /// `NODE_NAME`, and its directory under the run's.
    name: &'static str,
    /// Its disk (`truncate -s` syntax).
    size: &'static str,
    /// The images on it, as references.
    present: Vec<String>,
}

/// A containerd on its own disk and the agent watching it. Fields drop in
/// order: the agent, then containerd (and the disk).
struct Node {
    /// `NODE_NAME`.
    name: &'static str,
    /// The agent, until it is stopped.
    agent: Option<Proc>,
    /// `127.0.0.1:PORT` of the agent.
    addr: String,
    /// The node's containerd.
    ctrd: Containerd,
    /// `<run dir>/<name>`: logs and configs.
    dir: PathBuf,
    /// (flag, path) pairs that point a headroom face at this node.
    layout: Vec<(&'static str, PathBuf)>,
    /// Its disk's allocation unit (mkfs.ext4 gives 1 KiB below 512 MiB).
    block_size: u64,
}

impl Node {
    /// Starts containerd on a fresh disk, pulls `spec.present` into
    /// `k8s.io`, then starts the agent and waits for its first inventory.
    fn start(w: &World, spec: &Spec) -> Result<Node> {
        let mut ctrd = Containerd::new(w, spec.name, spec.size)?;
        ctrd.start()?;
        let dir = w.dir.join(spec.name);
        let fs_root = dir.join("fs");
        let (kubelet_root, pod_logs, docker_root) = (
            fs_root.join("kubelet"),
            fs_root.join("pods"),
            fs_root.join("docker"),
        );
        for d in [&kubelet_root, &pod_logs, &docker_root] {
            fs::create_dir_all(d)?;
        }
        let config = dir.join("kubelet-config.yaml");
        fs::write(&config, kubelet_config(PERCENT_TEXT, ""))?;
        for reference in &spec.present {
            oracle::ctr(
                &ctrd.sock,
                K8S_NS,
                &["images", "pull", "--plain-http", reference],
            )?;
        }
        let paths = Paths {
            docker_root: &docker_root,
            containerd_address: &ctrd.sock,
            containerd_root: &ctrd.root,
            kubelet_root: &kubelet_root,
            kubelet_config: &config,
            pod_logs: &pod_logs,
        };
        let addr = format!("127.0.0.1:{}", free_port()?);
        let mut cmd = agent::shipped_command(&agent::shipped_config(), &addr, paths)?;
        cmd.env("NODE_NAME", spec.name);
        let log = dir.join("agent.log");
        let mut proc = Proc::spawn(&format!("agent-{}", spec.name), cmd, log)?;
        agent::ready(&mut proc, &addr, "/readyz", READY_WITHIN)?;
        let layout = vec![
            ("--docker-root", docker_root.clone()),
            ("--containerd-address", ctrd.sock.clone()),
            ("--containerd-root", ctrd.root.clone()),
            ("--kubelet-root", kubelet_root.clone()),
            ("--kubelet-config", config.clone()),
            ("--pod-logs", pod_logs.clone()),
        ];
        let block_size = rustix::fs::statvfs(&fs_root)
            .with_context(|| format!("statvfs {}", fs_root.display()))?
            .f_frsize;
        eprintln!(
            "runtimes: {} ({} ext4, {block_size}-byte blocks) holds {:?}; its agent is at {addr}",
            spec.name, spec.size, spec.present
        );
        Ok(Node {
            name: spec.name,
            agent: Some(proc),
            addr,
            ctrd,
            dir,
            layout,
            block_size,
        })
    }

    /// Stops the agent (SIGTERM) and waits until it has exited.
    fn stop_agent(&mut self) -> Result<()> {
        let mut proc = self.agent.take().context("the agent is not running")?;
        if proc.terminate(Duration::from_secs(10)).is_none() {
            bail!("{} ignored SIGTERM\n{}", proc.name(), proc.output());
        }
        Ok(())
    }

    /// `headroom check-pull --json --plain-http image` run against this
    /// node's layout.
    fn check_pull(&self, image: &str) -> Result<Run> {
        let mut args = vec!["check-pull", "--json", "--plain-http"];
        for (flag, path) in &self.layout {
            args.extend([*flag, path_str(path)?]);
        }
        args.push(image);
        headroom(&args)
    }

    /// Starts `ctr images pull --plain-http reference` into `k8s.io`.
    fn pull(&self, reference: &str) -> Result<Proc> {
        let mut cmd = Command::new("ctr");
        cmd.args(["-a", path_str(&self.ctrd.sock)?, "-n", K8S_NS])
            .args(["images", "pull", "--plain-http", reference]);
        let log = self.dir.join("pull-in-flight.log");
        Proc::spawn(&format!("ctr pull {reference}"), cmd, log)
    }

    /// The agent's output and where the node's files are, for a failure.
    fn context(&self) -> String {
        let agent = self.agent.as_ref().map_or_else(
            || {
                format!(
                    "(agent stopped; log {})",
                    self.dir.join("agent.log").display()
                )
            },
            Proc::output,
        );
        format!(
            "node {} at {} ({}-byte blocks; containerd log {})\n{agent}",
            self.name,
            self.dir.display(),
            self.block_size,
            self.ctrd.log.display()
        )
    }
}

/// Runs `headroom ARGS…` on the shipped configuration, in a clean
/// environment (no `HEADROOM_*` from the caller, no colour).
fn headroom(args: &[&str]) -> Result<Run> {
    let exe = env!("CARGO_BIN_EXE_headroom");
    let mut cmd = Command::new(exe);
    cmd.args(args).env("NO_COLOR", "1");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("HEADROOM_") {
            cmd.env_remove(key);
        }
    }
    let config = agent::shipped_config();
    cmd.env("HEADROOM_CONFIG", &config);
    let command = format!("HEADROOM_CONFIG={} {}", config.display(), line(exe, args));
    let out = cmd
        .output()
        .with_context(|| format!("cannot run `{command}`"))?;
    Ok(Run {
        command,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// The three nodes (see the module doc).
fn specs(w: &World, teacher: &str) -> [Spec; 3] {
    let fixture = |name: &str| w.fixtures.image(name).to_owned();
    [
        Spec {
            name: "fleet-a",
            size: "256M",
            present: vec![teacher.to_owned()],
        },
        Spec {
            name: "fleet-b",
            size: "512M",
            present: vec![fixture("base")],
        },
        Spec {
            name: "fleet-c",
            size: "1G",
            present: vec![fixture("app2")],
        },
    ]
}

/// Prometheus on a free port scraping `agents` in job [`JOB`] (and itself
/// in job `prometheus`); returns it and its address once ready.
fn start_prometheus(w: &World, agents: &[&str]) -> Result<(Proc, String)> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    let dir = w.dir.join("fleet-prometheus");
    fs::create_dir_all(&dir)?;
    let itself = [addr.as_str()];
    let jobs = [(JOB, agents), ("prometheus", &itself[..])];
    let cmd = prometheus::command(&dir, "prometheus", &addr, &jobs)?;
    let mut proc = Proc::spawn("prometheus-fleet", cmd, dir.join("prometheus.log"))?;
    agent::ready(&mut proc, &addr, "/-/ready", Duration::from_secs(45))?;
    Ok((proc, addr))
}

/// `(scrape address, health)` of every active target of job [`JOB`], sorted.
fn job_targets(prometheus: &str) -> Result<Vec<(String, String)>> {
    let mut out: Vec<(String, String)> = prometheus::targets(prometheus)?
        .iter()
        .filter(|t| t["labels"]["job"] == JOB)
        .map(|t| {
            let instance = t["labels"]["instance"].as_str().unwrap_or("").to_owned();
            (instance, t["health"].as_str().unwrap_or("").to_owned())
        })
        .collect();
    out.sort();
    Ok(out)
}

/// Waits until Prometheus's targets of job [`JOB`] are exactly `want`.
fn wait_targets(prometheus: &str, want: &[(String, String)]) -> Result<()> {
    poll(SCRAPED_WITHIN, || {
        let seen = job_targets(prometheus)?;
        if seen == want {
            Ok(())
        } else {
            bail!("Prometheus's {JOB} targets are {seen:?}, waiting for {want:?}")
        }
    })
}

/// Waits until the agent at `addr` lists a pull of [`IN_FLIGHT`] that is
/// downloading; returns it.
fn wait_in_flight(addr: &str, pull: &mut Proc) -> Result<Pull> {
    poll(Duration::from_secs(30), || {
        if let Some(code) = pull.exited() {
            bail!("the pull ended ({code}) before it was seen in flight");
        }
        agent::status(addr)?
            .pulls
            .into_iter()
            .find(|p| {
                p.total_bytes > 0 && p.image.as_deref().is_some_and(|i| i.ends_with(IN_FLIGHT))
            })
            .with_context(|| format!("the agent at {addr} lists no pull of {IN_FLIGHT} yet"))
    })
    .map_err(|e| e.context(pull.output()))
}

/// How many of the document's layers are present.
fn present_layers(doc: &Value) -> usize {
    doc["layers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["present"] == true)
        .count()
}

/// What an answer must share exactly with the node's own check-pull: the
/// image, the store, and every layer (present, in flight, and what it
/// takes unpacked), and the bytes and inodes the pull would add.
const EXACT: &[&str] = &[
    "image",
    "reference",
    "manifest_digest",
    "config_digest",
    "platform",
    "runtime",
    "namespace",
    "image_present",
    "layers",
    "download_bytes",
    "unpack_bytes",
    "inodes",
    "total_bytes",
];

/// The figures of a pull in flight that may differ by [`TOLERANCE`]: the
/// download goes on between the two asks, and check-pull measures the
/// unpack from the registry where the agent (which calls no registry)
/// uses the node's unpack ratio.
const IN_FLIGHT_FIGURES: &[&str] = &["remaining_download_bytes", "unpack_bytes"];
/// How far two measures of a pull in flight may be apart, as a fraction.
const TOLERANCE: f64 = 0.10;

/// `doc[key]` as a number (0 when missing, so a missing one differs).
fn number(doc: &Value, key: &str) -> f64 {
    doc[key].as_f64().unwrap_or(0.0)
}

/// The state of every signal of `doc`'s prediction.
fn states(doc: &Value) -> Vec<(String, String)> {
    doc["prediction"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(signal, p)| (signal.clone(), p["state"].as_str().unwrap_or("").to_owned()))
        .collect()
}

/// The worst state of `doc`'s prediction: `ok`, `warning` or `pressure`.
fn worst(doc: &Value) -> &'static str {
    let all = states(doc);
    ["pressure", "warning"]
        .into_iter()
        .find(|bad| all.iter().any(|(_, state)| state == bad))
        .unwrap_or("ok")
}

/// Records where `answer` (what `asked` said) differs from `own` (what it
/// is held to, for node `name`): [`EXACT`] fields, the state per signal,
/// the pulls in flight by reference with [`IN_FLIGHT_FIGURES`] within
/// [`TOLERANCE`].
fn compare(c: &mut Checks, name: &str, asked: &str, own: &Value, answer: &Value) {
    for key in EXACT {
        c.eq(
            &format!("{name}: {key} of {asked}"),
            "the node's own check-pull --json",
            &own[key],
            &answer[key],
        );
    }
    c.eq(
        &format!("{name}: verdict state per signal of {asked}"),
        "the node's own check-pull --json",
        states(own),
        states(answer),
    );
    let pulls =
        |doc: &Value| -> Vec<Value> { doc["in_flight"].as_array().cloned().unwrap_or_default() };
    let (mine, theirs) = (pulls(own), pulls(answer));
    let reference = |p: &Value| p["reference"].as_str().unwrap_or("").to_owned();
    c.eq(
        &format!("{name}: pulls in flight of {asked}"),
        "the node's own check-pull --json",
        mine.iter().map(reference).collect::<Vec<_>>(),
        theirs.iter().map(reference).collect::<Vec<_>>(),
    );
    for (m, t) in mine.iter().zip(&theirs) {
        for key in IN_FLIGHT_FIGURES {
            let (expected, actual) = (number(m, key), number(t, key));
            c.near(
                &format!("{name}: in_flight {} {key} of {asked}", reference(m)),
                &format!("the node's own check-pull ({})", m["method"]),
                expected,
                actual,
                expected * TOLERANCE,
            );
        }
    }
    let expected = number(own, "in_flight_bytes");
    c.near(
        &format!("{name}: in_flight_bytes of {asked}"),
        "the node's own check-pull --json",
        expected,
        number(answer, "in_flight_bytes"),
        expected * TOLERANCE,
    );
}

/// One line of figures: the answer's verdict and bytes, and its pulls in
/// flight against the node's own check-pull's.
fn figures(own: &Value, answer: &Value) -> String {
    let (mine, theirs) = (
        number(own, "in_flight_bytes"),
        number(answer, "in_flight_bytes"),
    );
    let method = |doc: &Value| {
        doc["in_flight"][0]["method"]
            .as_str()
            .unwrap_or("-")
            .to_owned()
    };
    format!(
        "{}: {}, download {} unpack {} bytes; in flight {} bytes ({}), its own check-pull {} ({}): {:+.1}%",
        answer["node"].as_str().unwrap_or("?"),
        worst(answer),
        answer["download_bytes"],
        answer["unpack_bytes"],
        theirs,
        method(answer),
        mine,
        method(own),
        (theirs - mine) / mine.max(1.0) * 100.0
    )
}

/// The exit code docs/exit-codes.md gives a fleet: 2 if a node would
/// reach pressure, else 9 if one did not answer, else 1 if one warns.
fn fleet_exit(verdicts: &[&str]) -> i32 {
    [("pressure", 2), ("unknown", 9), ("warning", 1)]
        .into_iter()
        .find(|(v, _)| verdicts.contains(v))
        .map_or(0, |(_, code)| code)
}

/// The entry of the fleet document for the agent at `addr`.
fn entry<'a>(fleet: &'a Value, addr: &str) -> Option<&'a Value> {
    fleet["nodes"]
        .as_array()?
        .iter()
        .find(|n| n["agent"] == addr)
}

/// The agents a fleet document names, sorted.
fn agents_of(fleet: &Value) -> Vec<String> {
    let mut out: Vec<String> = fleet["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["agent"].as_str().unwrap_or("").to_owned())
        .collect();
    out.sort();
    out
}

/// `headroom check-pull image --fleet SOURCE… --json --plain-http`.
fn ask_fleet(source: &[&str], image: &str) -> Result<(Run, Value)> {
    let mut args = vec!["check-pull", image, "--fleet"];
    args.extend(source);
    args.extend(["--json", "--plain-http"]);
    let run = headroom(&args)?;
    let doc = document(&run)?;
    Ok((run, doc))
}

/// The checks of one fleet run against the nodes' own check-pulls
/// (`own[i]` for `nodes[i]`; `None` where there is none): each live node
/// named and answering as its own check-pull, the stopped one unknown,
/// and the exit code and summary those verdicts give.
fn judge_fleet(
    c: &mut Checks,
    asked: &str,
    run: &Run,
    fleet: &Value,
    nodes: &[Node],
    own: &[Option<Value>],
) {
    let mut expected = Vec::new();
    for (node, own) in nodes.iter().zip(own) {
        let verdict = match (&node.agent, own) {
            (None, _) => "unknown",
            (Some(_), Some(own)) => worst(own),
            // Its own check-pull failed (recorded): nothing to hold it to.
            (Some(_), None) => continue,
        };
        expected.push(verdict);
        let Some(e) = entry(fleet, &node.addr) else {
            c.that(false, || {
                format!("{asked}: no entry for {} ({})", node.name, node.addr)
            });
            continue;
        };
        c.eq(
            &format!("{}: verdict of {asked}", node.name),
            "its own check-pull's worst state; unknown once its agent is stopped",
            verdict,
            e["verdict"].as_str().unwrap_or(""),
        );
        match own {
            Some(own) => {
                c.eq(
                    &format!("{}: node of {asked}", node.name),
                    "its NODE_NAME",
                    node.name,
                    e["node"].as_str().unwrap_or(""),
                );
                compare(c, node.name, asked, own, &e["answer"]);
                eprintln!("runtimes: {asked} {}", figures(own, &e["answer"]));
            }
            None => c.that(
                e["answer"].is_null() && e["error"]["kind"].is_string(),
                || format!("{asked}: the stopped node has an error and no answer: {e}"),
            ),
        }
    }
    c.eq(
        &format!("exit code of {asked}"),
        "the worst verdict (docs/exit-codes.md)",
        fleet_exit(&expected),
        run.code,
    );
    let summary = &fleet["summary"];
    let count = |key: &str| summary[key].as_array().map(Vec::len);
    c.eq(
        &format!("summary of {asked}: nodes, pressure, unknown"),
        "the verdicts",
        (
            Some(nodes.len() as u64),
            Some(expected.iter().filter(|v| **v == "pressure").count()),
            Some(expected.iter().filter(|v| **v == "unknown").count()),
        ),
        (
            summary["nodes"].as_u64(),
            count("pressure"),
            count("unknown"),
        ),
    );
}

/// Trial: the fleet's answer per node against each node's own check-pull.
pub fn check_pull_answers_per_node(w: &World) -> Result<()> {
    let registry = registry_of(w)?;
    push_noise_image(w, &registry, TEACHER, TEACHER_BYTES)?;
    push_noise_image(w, &registry, IN_FLIGHT, IN_FLIGHT_BYTES)?;
    let teacher = format!("{registry}/{TEACHER}:1");
    let mut nodes = specs(w, &teacher)
        .iter()
        .map(|spec| Node::start(w, spec))
        .collect::<Result<Vec<Node>>>()?;
    let addrs: Vec<&str> = nodes.iter().map(|n| n.addr.as_str()).collect();
    let (_prometheus, prom) = start_prometheus(w, &addrs)?;
    let mut want: Vec<(String, String)> =
        addrs.iter().map(|a| (a.to_string(), "up".into())).collect();
    want.sort();
    wait_targets(&prom, &want)?;

    let stopped = nodes[2].addr.clone();
    nodes[2].stop_agent()?;
    for (addr, health) in &mut want {
        if *addr == stopped {
            *health = "down".into();
        }
    }
    wait_targets(&prom, &want)?;

    let proxy = Throttle::start(&registry, RATE)?;
    let mut pull = nodes[0].pull(&format!("{}/{IN_FLIGHT}:1", proxy.addr))?;
    let listed = wait_in_flight(&nodes[0].addr, &mut pull)?;
    eprintln!(
        "runtimes: fleet-a pulls {IN_FLIGHT}: {} of {} bytes left",
        listed.remaining_download_bytes, listed.total_bytes
    );

    let mut c = Checks::new();
    let checked = w.fixtures.image(CHECKED);
    let list = addrs_list(&nodes);
    let by_list = ask_fleet(&["--agents", &list], checked);
    let own = own_checks(&mut c, &nodes, checked);
    let url = format!("http://{prom}");
    let by_prometheus = ask_fleet(&["--prometheus", &url], checked);
    c.that(pull.exited().is_none(), || {
        format!(
            "the pull on fleet-a was still in flight at the end\n{}",
            pull.output()
        )
    });
    match &by_list {
        Ok((run, doc)) => judge_fleet(&mut c, "--agents", run, doc, &nodes, &own),
        Err(e) => c.error("check-pull --fleet --agents", anyhow::anyhow!("{e:#}")),
    }
    match &by_prometheus {
        Ok((run, doc)) => {
            judge_fleet(&mut c, "--prometheus", run, doc, &nodes, &own);
            let targets: Vec<String> = job_targets(&prom)?.into_iter().map(|(a, _)| a).collect();
            c.eq(
                "agents found by --prometheus",
                "Prometheus's active targets of the job",
                targets,
                agents_of(doc),
            );
            if let Ok((_, listed)) = &by_list {
                for node in &nodes[..2] {
                    let pick = |doc: &Value| {
                        entry(doc, &node.addr)
                            .map(|e| e["answer"].clone())
                            .unwrap_or_default()
                    };
                    compare(
                        &mut c,
                        node.name,
                        "--prometheus against --agents",
                        &pick(listed),
                        &pick(doc),
                    );
                }
            }
        }
        Err(e) => c.error("check-pull --fleet --prometheus", anyhow::anyhow!("{e:#}")),
    }
    let context: Vec<String> = nodes.iter().map(Node::context).collect();
    c.finish(&context.join("\n"))
}

/// `host:port,host:port,…` of every node's agent, the stopped one too.
fn addrs_list(nodes: &[Node]) -> String {
    nodes
        .iter()
        .map(|n| n.addr.as_str())
        .collect::<Vec<_>>()
        .join(",")
}

/// Each live node's own check-pull of `image` (`None` for a node whose
/// agent is stopped), checking the premises: the layers each holds, the
/// pull in flight counted on fleet-a, which is in pressure, fleet-b ok.
fn own_checks(c: &mut Checks, nodes: &[Node], image: &str) -> Vec<Option<Value>> {
    let premises = [(0, "pressure", 1), (2, "ok", 0)];
    nodes
        .iter()
        .zip(premises.iter().map(Some).chain(std::iter::repeat(None)))
        .map(|(node, premise)| {
            let (present, state, in_flight) = *premise?;
            let run = node
                .check_pull(image)
                .and_then(|run| Ok((document(&run)?, run)));
            match run {
                Ok((doc, run)) => {
                    c.eq(
                        &format!("{}: layers of {image} present", node.name),
                        "the images pulled onto it",
                        present,
                        present_layers(&doc),
                    );
                    c.eq(
                        &format!("{}: worst state of its own check-pull", node.name),
                        "the premise",
                        state,
                        worst(&doc),
                    );
                    c.eq(
                        &format!("{}: pulls in flight in its own check-pull", node.name),
                        "the throttled pull",
                        in_flight,
                        doc["in_flight"].as_array().map_or(0, Vec::len),
                    );
                    c.that((0..=2).contains(&run.code), || {
                        format!(
                            "{}: a verdict (exit 0, 1 or 2)\n{}",
                            node.name,
                            run.describe()
                        )
                    });
                    Some(doc)
                }
                Err(e) => {
                    c.error(&format!("{}: its own check-pull", node.name), e);
                    None
                }
            }
        })
        .collect()
}
