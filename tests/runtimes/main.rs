//! Integration tests on real runtimes: Headroom's figures against independent
//! oracles (GNU du/df, `ctr`, the `docker` CLI) on a real containerd, dockerd
//! (overlay2) and registry, started once for the whole run under one temp dir.
//!
//! `headroom agent` runs on the same node for the whole run, scraped by a
//! real Prometheus (see `agent.rs`, `scrape.rs`). Trials that change the
//! node hold [`World::changing`] (and undo their change); every other trial
//! holds [`World::reading`], so none of them sees a change half-made.
//!
//! Without root or the tools, the trials fail loudly when `CI` is set and are
//! reported as ignored otherwise (with a message naming what is missing), as
//! every integration test does (`tests/support`).

mod agent;
mod audit;
mod check_pull;
mod checks;
mod churn;
mod compressibility;
mod containers;
mod docker_df;
mod document;
mod events;
mod exposition;
mod faults;
mod filesystems;
mod fleet;
mod images;
mod incident;
mod layers;
mod lead;
mod mounts;
mod mutations;
mod oracle;
mod paging;
mod podman;
mod podman_store;
mod prometheus;
mod pulls;
mod reclaim;
mod robustness;
mod scrape;
mod screen;
mod services;
mod smallnode;
mod subject;
#[path = "../support/mod.rs"]
mod support;
mod waste;
mod web;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Instant;

use anyhow::{anyhow, Result};
use headroom::model::Status;
use libtest_mimic::{Arguments, Failed};

use crate::agent::Live;
use crate::images::Fixtures;
use crate::services::{PrivateRegistry, Services};
use crate::subject::Run;
use crate::support::{openmetrics, Need, Test};

/// Tools the run needs on PATH.
const TOOLS: &[&str] = &[
    "containerd",
    "dockerd",
    "runc",
    "ctr",
    "docker",
    "skopeo",
    "umoci",
    "docker-registry",
    "busybox",
    "du",
    "df",
    "sha256sum",
    "find",
    "truncate",
    "mkfs.ext4",
    "mount",
    "umount",
    "prometheus",
    // Alertmanager, as Debian names it (the paging trial runs it).
    "prometheus-alertmanager",
    "python3",
    // The private registry's CA, password file and readiness probe.
    "openssl",
    "htpasswd",
    "curl",
    // The screen is captured in a real terminal.
    "tmux",
    // A containers-storage store (CRI-O's and Podman's) made by Podman.
    "podman",
];

/// A trial body: inspects the fixture node and fails with the evidence.
type Body = fn(&World) -> Result<()>;

/// Every trial that needs the node, by name.
const TRIALS: &[(&str, Body)] = &[
    (
        "document_is_a_scan_of_both_runtimes",
        document::scan_of_both_runtimes,
    ),
    ("layers_match_du", layers::match_du),
    (
        "containerd_layers_match_ctr_usage",
        layers::containerd_match_ctr_usage,
    ),
    (
        "docker_images_match_system_df",
        docker_df::images_match_system_df,
    ),
    (
        "docker_containers_match_system_df",
        docker_df::containers_match_system_df,
    ),
    (
        "containerd_images_match_content_store",
        reclaim::containerd_images_match_content_store,
    ),
    (
        "containers_match_du_and_labels",
        containers::match_du_and_labels,
    ),
    (
        "orphaned_pod_logs_are_reported",
        containers::orphaned_pod_logs,
    ),
    ("empty_dirs_match_du", containers::empty_dirs_match_du),
    (
        "reclaimable_is_unique_bytes_of_unused_images",
        reclaim::reclaimable,
    ),
    (
        "filesystems_match_df_and_kubelet_config",
        filesystems::match_df_and_config,
    ),
    (
        "fault_corrupt_docker_metadata_is_reported",
        robustness::corrupt_docker_metadata,
    ),
    (
        "fault_mutated_stores_give_a_report",
        mutations::fault_mutated_stores_give_a_report,
    ),
    (
        "fault_containerd_socket_replaced_reads_its_files",
        faults::fault_containerd_socket_replaced_reads_its_files,
    ),
    (
        "fault_containerd_missing_is_reported",
        robustness::containerd_missing,
    ),
    (
        "screen_mentions_signals_and_top_image",
        screen::mentions_signals_and_top_image,
    ),
    (
        "check_pull_of_a_present_image_costs_nothing",
        check_pull::present_image_costs_nothing,
    ),
    (
        "check_pull_of_an_unknown_tag_names_the_url",
        check_pull::unknown_tag_names_the_url,
    ),
    (
        "check_pull_over_https_to_a_plain_registry_fails",
        check_pull::https_to_a_plain_registry_fails,
    ),
    (
        "check_pull_private_registry_errors",
        compressibility::private_registry_errors,
    ),
    (
        "podman_store_matches_podman_and_du",
        podman::store_matches_podman_and_du,
    ),
];

/// The agent trials: each takes [`World::reading`] or [`World::changing`]
/// itself (trial f starts its own containerd and touches nothing shared).
const AGENT_TRIALS: &[(&str, Body)] = &[
    // Ten minutes by design: first, so the others run beside it. It and the
    // incident and lead trials take no lock: each has a small node of its own.
    ("churn_never_pages", churn::never_pages),
    (
        "agent_scraped_by_prometheus_matches_du",
        scrape::prometheus_stores_what_du_measures,
    ),
    (
        "agent_metrics_parse_as_openmetrics",
        scrape::metrics_parse_as_openmetrics,
    ),
    (
        "agent_metrics_follow_a_new_image_and_container",
        scrape::metrics_follow_changes,
    ),
    (
        "agent_rescans_walk_only_mutable_paths",
        scrape::rescans_walk_only_mutable_paths,
    ),
    ("agent_exits_0_on_sigterm", agent::sigterm_exits_cleanly),
    (
        "fault_bind_mount_in_a_writable_layer_is_not_counted",
        mounts::fault_bind_mount_in_a_writable_layer_is_not_counted,
    ),
    (
        "fault_containerd_killed_hung_and_restarted",
        faults::fault_containerd_killed_hung_and_restarted,
    ),
    (
        "agent_follows_events_on_a_quiet_containerd",
        events::follows_events_on_a_quiet_containerd,
    ),
    (
        "fault_agent_refuses_malformed_requests",
        agent::refuses_malformed_requests,
    ),
    (
        "check_pull_estimate_matches_the_real_pull",
        check_pull::estimate_matches_the_real_pull,
    ),
    (
        "check_pull_estimates_within_10_percent",
        compressibility::estimates_within_10_percent,
    ),
    (
        "check_pull_counts_pulls_in_flight",
        compressibility::counts_pulls_in_flight,
    ),
    (
        "agent_lists_a_pull_in_flight",
        pulls::in_flight_pull_is_listed,
    ),
    (
        "screen_fits_80_and_120_columns_in_tmux",
        screen::fits_80_and_120_columns_in_tmux,
    ),
    (
        "fault_full_disk_incident_is_predicted_before_the_disk_fills",
        incident::replay,
    ),
    ("lead_one_big_layer", lead::one_big_layer),
    ("lead_many_layers", lead::many_layers),
    ("lead_two_images_together", lead::two_images_together),
    (
        "gc_absorbed_pull_stays_a_warning",
        lead::gc_absorbed_pull_stays_a_warning,
    ),
    (
        "failed_pull_then_quiet_is_ok",
        lead::failed_pull_then_quiet_is_ok,
    ),
    (
        "docker_pull_that_does_not_fit_warns",
        lead::docker_pull_that_does_not_fit_warns,
    ),
    (
        "paging_path_fires_before_the_disk_crosses_the_line",
        paging::fires_before_the_line,
    ),
    (
        "audit_finds_each_kind_of_waste",
        audit::finds_each_kind_of_waste,
    ),
    // Its three nodes are its own: it takes no lock.
    (
        "fleet_check_pull_answers_per_node",
        fleet::check_pull_answers_per_node,
    ),
];

/// The fixture node as the trials see it (paths only; the daemons stay
/// owned by `main` so they are torn down after the trials).
pub struct World {
    /// The run's temp dir.
    pub dir: PathBuf,
    /// containerd's socket.
    pub containerd_sock: PathBuf,
    /// containerd's root.
    pub containerd_root: PathBuf,
    /// dockerd's data root.
    pub docker_root: PathBuf,
    /// `unix://…` of dockerd.
    pub docker_host: String,
    /// Mount point standing for the node's root filesystem (kubelet root).
    pub nodefs: PathBuf,
    /// Mount point holding the runtimes' roots.
    pub imagefs: PathBuf,
    /// The private registry (TLS with the run's CA, htpasswd auth).
    pub private: PrivateRegistry,
    /// What was built and run.
    pub fixtures: Fixtures,
    /// The run's agent and Prometheus, or why they did not start.
    agent: std::result::Result<Live, String>,
    /// Readers: trials that only look; writer: a trial that changes the node.
    node: RwLock<()>,
    json_run: OnceLock<std::result::Result<Run, String>>,
}

impl World {
    fn new(s: &Services, fixtures: Fixtures, agent: std::result::Result<Live, String>) -> World {
        World {
            dir: s.dir.clone(),
            containerd_sock: s.containerd_sock.clone(),
            containerd_root: s.containerd_root.clone(),
            docker_root: s.docker_root.clone(),
            docker_host: s.docker_host(),
            nodefs: s.nodefs.clone(),
            imagefs: s.imagefs.clone(),
            private: s.private.clone(),
            fixtures,
            agent,
            node: RwLock::new(()),
            json_run: OnceLock::new(),
        }
    }

    /// The run's agent, or why it is not there.
    pub fn live(&self) -> Result<&Live> {
        self.agent
            .as_ref()
            .map_err(|e| anyhow!("the agent or Prometheus did not start: {e}"))
    }

    /// Held while a trial looks at the node: no change is made meanwhile.
    pub fn reading(&self) -> RwLockReadGuard<'_, ()> {
        self.node.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Held while a trial changes the node (and undoes the change).
    pub fn changing(&self) -> RwLockWriteGuard<'_, ()> {
        self.node.write().unwrap_or_else(|e| e.into_inner())
    }

    /// `headroom status --json` on the fixture node, run once and shared.
    pub fn json_run(&self) -> Result<&Run> {
        self.json_run
            .get_or_init(|| {
                subject::status(self, &subject::node_layout(self), true)
                    .map_err(|e| format!("{e:#}"))
            })
            .as_ref()
            .map_err(|e| anyhow!("{e}"))
    }

    /// The shared run and its parsed status document.
    pub fn report(&self) -> Result<(&Run, Status)> {
        let run = self.json_run()?;
        Ok((run, run.status()?))
    }

    /// `docker -H … ARGS…` against our dockerd.
    pub fn docker(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["-H", self.docker_host.as_str()];
        all.extend_from_slice(args);
        oracle::run("docker", &all)
    }
}

fn main() {
    let args = Arguments::from_args();
    let started = Instant::now();
    let needs = prerequisites();
    if args.list || !needs.iter().all(Need::met) {
        // Each trial is ignored, naming what is missing (failed under CI).
        support::run(&args, trials(&needs, None)).exit();
    }

    let setup = catch_unwind(AssertUnwindSafe(|| -> Result<(Services, World)> {
        let mut services = Services::start()?;
        let fixtures = images::build(&services)?;
        // Only the agent trials need these: the others run without them.
        let live = agent::start(&mut services, &fixtures).map_err(|e| {
            eprintln!("runtimes: the agent or Prometheus did not start:\n{e:#}");
            format!("{e:#}")
        });
        let world = World::new(&services, fixtures, live);
        Ok((services, world))
    }));
    let (services, world) = match setup {
        Ok(Ok((s, w))) => (Some(s), Ok(Arc::new(w))),
        Ok(Err(e)) => (None, Err(setup_failed(&format!("{e:#}")))),
        Err(panic) => (None, Err(setup_failed(&panic_text(&panic)))),
    };
    eprintln!("runtimes: setup took {:.1?}", started.elapsed());
    let conclusion = support::run(&args, trials(&needs, Some(world)));
    drop(services); // Teardown before exit(), which skips destructors.
    eprintln!("runtimes: whole run took {:.1?}", started.elapsed());
    conclusion.exit();
}

/// The trials, bound to the node (or to the reason there is none), each
/// needing `needs` but the oracle's self-check. `None` only lists them, or
/// ignores them for what is missing.
fn trials(needs: &[Need], world: Option<std::result::Result<Arc<World>, String>>) -> Vec<Test> {
    let mut trials = vec![Test::fallible("oracle_humanized_parser", || {
        oracle::humanized_parser_self_check().map_err(|e| Failed::from(format!("{e:#}")))
    })];
    let looking = TRIALS.iter().map(|&(name, body)| (name, body, true));
    let agent = AGENT_TRIALS.iter().map(|&(name, body)| (name, body, false));
    for (name, body, read_lock) in looking.chain(agent) {
        let world = world.clone();
        let trial = Test::fallible(name, move || match &world {
            Some(Ok(w)) => {
                let _node = read_lock.then(|| w.reading());
                body(w).map_err(|e| Failed::from(format!("{e:#}")))
            }
            Some(Err(setup)) => Err(Failed::from(setup)),
            None => Err(Failed::from("no fixture node")),
        });
        trials.push(trial.needs(needs));
    }
    trials
}

/// What the run needs: root, each tool on PATH, and the official
/// OpenMetrics parser.
fn prerequisites() -> Vec<Need> {
    let mut needs = vec![Need::root()];
    needs.extend(TOOLS.iter().map(|tool| Need::tool(tool)));
    needs.push(openmetrics::need());
    needs
}

/// Prints why setup failed (once, in full) and returns the line each trial
/// fails with.
fn setup_failed(why: &str) -> String {
    eprintln!("runtimes: setup failed (everything started was torn down):\n{why}");
    format!(
        "setup failed: {} (full error printed above the results)",
        why.lines().next().unwrap_or("")
    )
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .unwrap_or_else(|| "non-string panic".to_owned())
}
