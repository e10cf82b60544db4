//! `headroom check-pull IMAGE --fleet` (and `kubectl headroom check-pull
//! IMAGE`): the image resolved and its layers measured once here, then
//! every node's agent asked what the pull would do to it
//! ([`headroom::fleet`]), the nodes printed worst first with a summary.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use headroom::config::Config;
use headroom::fleet::report::{self, Summary, Verdict};
use headroom::fleet::{self, agents, direct, kube, prometheus, Agent, Limits, NodeAnswer};
use headroom::model::human_bytes;
use headroom::predict::pull::DEFAULT_UNPACK_RATIO;
use headroom::registry::sizing::Fallback;
use headroom::registry::ResolvedImage;
use headroom::what_if::{Answer, Question};
use serde::Serialize;

use super::check_pull::{self, CheckPullArgs};
use super::fit::Column;
use super::in_flight::Sizer;
use super::printable::printable;
use super::screen::{self, droppable, figure, name, BOLD};

/// The name the kubectl plugin is installed under.
const PLUGIN: &str = "kubectl-headroom";

/// How `check-pull` finds the agents with `--fleet`: exactly one source.
#[derive(Debug, clap::Args)]
#[command(group(
    clap::ArgGroup::new("agents_source")
        .args(["agents", "agents_file", "prometheus", "kubernetes"])
        .multiple(false)
))]
pub struct FleetArgs {
    /// Ask every node's agent instead of checking this node: one line per
    /// node, worst first (with one of --agents, --agents-file, --prometheus,
    /// --kubernetes).
    #[arg(long, requires = "agents_source")]
    pub fleet: bool,
    /// The agents to ask, host:port,host:port.
    #[arg(long, value_name = "HOST:PORT,...", requires = "fleet")]
    agents: Option<String>,
    /// A file naming the agents to ask, one host:port a line (# comments).
    #[arg(long, value_name = "PATH", requires = "fleet")]
    agents_file: Option<PathBuf>,
    /// Ask the agents a Prometheus server scrapes: its active targets whose
    /// job matches --prometheus-job (up or down).
    #[arg(long, value_name = "URL", requires = "fleet")]
    prometheus: Option<String>,
    /// The agents' scrape job, a regex as Prometheus matches it.
    #[arg(long, value_name = "REGEX", default_value = prometheus::DEFAULT_JOB)]
    prometheus_job: String,
    /// Ask the DaemonSet's pods through the Kubernetes API server's pod
    /// proxy, with your kubeconfig (what `kubectl headroom check-pull` does).
    #[arg(long, requires = "fleet")]
    kubernetes: bool,
    /// The namespace of the DaemonSet's pods, with --kubernetes.
    #[arg(long, value_name = "NAMESPACE", default_value = kube::DEFAULT_NAMESPACE)]
    agents_namespace: String,
}

/// The command line as `headroom` reads it: run as `kubectl-headroom`
/// (`kubectl headroom check-pull IMAGE`), `check-pull` asks the fleet
/// through the API server unless another source is named.
pub fn plugin_argv(argv: Vec<OsString>) -> Vec<OsString> {
    let invoked = argv.first().map(Path::new).and_then(Path::file_name);
    let is_plugin = invoked.is_some_and(|n| n == PLUGIN);
    let checks_a_pull = argv.get(1).is_some_and(|a| a == "check-pull");
    if !(is_plugin && checks_a_pull) {
        return argv;
    }
    let named = |flag: &str| {
        argv.iter().any(|a| {
            a.to_str()
                .is_some_and(|a| a == flag || a.starts_with(&format!("{flag}=")))
        })
    };
    let mut out = argv.clone();
    if !named("--fleet") {
        out.push("--fleet".into());
    }
    if !["--agents", "--agents-file", "--prometheus", "--kubernetes"]
        .iter()
        .any(|f| named(f))
    {
        out.push("--kubernetes".into());
    }
    out
}

/// The agents found, and how to ask them.
enum Found {
    /// Over plain HTTP at their addresses.
    Direct(Vec<Agent>),
    /// Through the API server's pod proxy.
    Kubernetes {
        runtime: tokio::runtime::Runtime,
        client: ::kube::Client,
        namespace: String,
        agents: Vec<Agent>,
    },
}

impl Found {
    fn ask(&self, question: &[u8], limits: &Limits) -> Vec<NodeAnswer> {
        match self {
            Found::Direct(agents) => direct::ask(agents, question, limits),
            Found::Kubernetes {
                runtime,
                client,
                namespace,
                agents,
            } => kube::ask(runtime, client, namespace, agents, question, limits),
        }
    }
}

/// Runs `check-pull --fleet`: exit code 2 if a node would reach pressure,
/// else 9 if one did not answer, else 1 if one has a warning, else 0; 3
/// when the agents cannot be found; 4–8 a registry failure by class
/// (docs/exit-codes.md).
pub fn run(args: &CheckPullArgs, config: &Config) -> anyhow::Result<ExitCode> {
    let settings = &config.check_pull;
    // The agents first: a typo in the list fails before the registry is asked.
    let found = find(&args.fleet, settings.fleet_timeout)?;
    let mut resolved = match check_pull::resolve(args, config)? {
        Ok(resolved) => resolved,
        Err(code) => return Ok(code),
    };
    let question = question(args, &mut resolved);
    let image = resolved.image;
    let body = serde_json::to_vec(&question).context("encoding the question")?;
    let limits = Limits {
        timeout: settings.fleet_timeout,
        concurrency: settings.fleet_concurrency,
        max_answer_bytes: fleet::MAX_ANSWER_BYTES,
    };
    let mut nodes = found.ask(&body, &limits);
    report::worst_first(&mut nodes);
    let summary = Summary::of(&nodes);
    let mut out = anstream::stdout().lock();
    if args.json {
        let document = document(&question, &image, &nodes, &summary);
        serde_json::to_writer_pretty(&mut out, &document).context("writing JSON to stdout")?;
        writeln!(out).context("writing to stdout")?;
    } else {
        render(&mut out, &image, &nodes, &summary).context("writing to stdout")?;
    }
    Ok(ExitCode::from(summary.exit_code()))
}

/// The block size a layer's headline figure is costed in (ext4's and XFS's
/// usual one); each layer also carries its cost in every block size of
/// `sizing::BLOCK_SIZES`, and each node takes the one of its own store.
const BLOCK_SIZE: u64 = 4096;

/// What every node is asked: the image with each of its layers measured
/// once, here (a node skips the ones it has), in each block size and,
/// when a blob teaches nothing, at the default unpack ratio.
fn question(args: &CheckPullArgs, resolved: &mut check_pull::Resolved) -> Question {
    let fallback = Fallback {
        ratio: DEFAULT_UNPACK_RATIO,
        ratio_source: "the default (measured before any node is asked)".to_string(),
        inodes_per_byte: 0.0,
    };
    let sizer = Sizer {
        block_size: BLOCK_SIZE,
        fallback: &fallback,
    };
    check_pull::question(args, &resolved.image, &mut resolved.client, &sizer)
}

/// The agents of the one source `args` names.
fn find(args: &FleetArgs, timeout: std::time::Duration) -> anyhow::Result<Found> {
    if let Some(list) = &args.agents {
        return Ok(Found::Direct(agents::parse(list)?));
    }
    if let Some(path) = &args.agents_file {
        return Ok(Found::Direct(agents::from_file(path)?));
    }
    if let Some(url) = &args.prometheus {
        return Ok(Found::Direct(prometheus::agents(
            url,
            &args.prometheus_job,
            timeout,
        )?));
    }
    let runtime = super::async_runtime(2)?;
    let namespace = args.agents_namespace.clone();
    let (client, agents) = runtime.block_on(async {
        let client = kube::client().await?;
        let agents = kube::agents(&client, &namespace).await?;
        Ok::<_, kube::PodsError>((client, agents))
    })?;
    Ok(Found::Kubernetes {
        runtime,
        client,
        namespace,
        agents,
    })
}

/// The `--json` document.
#[derive(Debug, Serialize)]
struct Document<'a> {
    image: &'a str,
    reference: String,
    manifest_digest: &'a str,
    config_digest: &'a str,
    platform: String,
    /// What each node was asked.
    question: &'a Question,
    /// Worst first.
    nodes: Vec<NodeEntry<'a>>,
    summary: &'a Summary,
}

/// One node in `--json`: its answer, or why it has none.
#[derive(Debug, Serialize)]
struct NodeEntry<'a> {
    node: &'a str,
    agent: &'a str,
    verdict: Verdict,
    answer: Option<&'a Answer>,
    error: Option<ErrorEntry>,
}

/// Why a node did not answer.
#[derive(Debug, Serialize)]
struct ErrorEntry {
    kind: &'static str,
    message: String,
}

fn document<'a>(
    question: &'a Question,
    image: &'a ResolvedImage,
    nodes: &'a [NodeAnswer],
    summary: &'a Summary,
) -> Document<'a> {
    Document {
        image: &question.image,
        reference: image.reference.to_string(),
        manifest_digest: &image.manifest_digest,
        config_digest: &image.config_digest,
        platform: image.platform.to_string(),
        question,
        nodes: nodes
            .iter()
            .map(|n| NodeEntry {
                node: report::node_name(n),
                agent: &n.agent.address,
                verdict: report::verdict(n),
                answer: n.answer.as_ref().ok(),
                error: n.answer.as_ref().err().map(|e| ErrorEntry {
                    kind: e.kind(),
                    message: e.to_string(),
                }),
            })
            .collect(),
        summary,
    }
}

const NODE_COLUMNS: [Column; 5] = [
    name("NODE", 16),
    figure("VERDICT"),
    figure("ADDS"),
    droppable(figure("AVAIL AFTER GC"), 2),
    droppable(name("REASON", 20), 1),
];

/// The screen: a header, one line per node worst first, the summary.
fn render(
    out: &mut impl Write,
    image: &ResolvedImage,
    nodes: &[NodeAnswer],
    summary: &Summary,
) -> std::io::Result<()> {
    let rows: Vec<Vec<String>> = nodes.iter().map(row).collect();
    let title = format!(
        " {} ({}) on {} nodes",
        printable(&image.reference.to_string()),
        printable(&image.platform.to_string()),
        nodes.len()
    );
    let width = super::status::screen_width();
    screen::print_table(
        out,
        (BOLD, "check-pull", &title),
        &NODE_COLUMNS,
        &rows,
        width,
    )?;
    for line in super::fit::wrap(&printable(&summary.sentence), width, "", "  ") {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

/// One node's cells.
fn row(node: &NodeAnswer) -> Vec<String> {
    let verdict = report::verdict(node).name().to_string();
    let name = printable(report::node_name(node)).into_owned();
    match &node.answer {
        Ok(answer) => {
            let worst = report::worst_signal(answer);
            vec![
                name,
                verdict,
                human_bytes(answer.total_bytes),
                worst.map_or_else(
                    || "-".to_string(),
                    |(_, p)| signed_bytes(p.projected_available_after_gc),
                ),
                worst.map_or_else(
                    || "no filesystem measured: nothing to judge by".to_string(),
                    |(_, p)| printable(&p.reason).into_owned(),
                ),
            ]
        }
        Err(e) => vec![
            name,
            verdict,
            "-".to_string(),
            "-".to_string(),
            printable(&e.to_string()).into_owned(),
        ],
    }
}

/// Bytes that may be below zero (past the threshold).
fn signed_bytes(bytes: i64) -> String {
    let magnitude = human_bytes(bytes.unsigned_abs());
    if bytes < 0 {
        format!("-{magnitude}")
    } else {
        magnitude
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn the_plugin_asks_the_fleet_through_the_api_server() {
        let got = plugin_argv(argv(&[
            "/usr/local/bin/kubectl-headroom",
            "check-pull",
            "app:1",
        ]));
        assert_eq!(
            got,
            argv(&[
                "/usr/local/bin/kubectl-headroom",
                "check-pull",
                "app:1",
                "--fleet",
                "--kubernetes"
            ])
        );
    }

    #[test]
    fn the_plugin_keeps_a_source_named_and_other_faces_alone() {
        let named = argv(&["kubectl-headroom", "check-pull", "app:1", "--agents=a:1"]);
        assert_eq!(
            plugin_argv(named.clone()),
            [named, argv(&["--fleet"])].concat()
        );
        let status = argv(&["kubectl-headroom", "status"]);
        assert_eq!(plugin_argv(status.clone()), status);
        let headroom = argv(&["headroom", "check-pull", "app:1"]);
        assert_eq!(plugin_argv(headroom.clone()), headroom);
    }

    #[test]
    fn bytes_past_the_threshold_are_negative() {
        assert!(signed_bytes(-2_000_000).starts_with('-'));
        assert!(!signed_bytes(2_000_000).starts_with('-'));
    }
}
