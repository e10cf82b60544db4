//! Bad input becomes data: corrupt Docker metadata (on a copy of the real
//! docker root) and a containerd that is not there still give a report.

use std::fs::{self, OpenOptions};
use std::path::Path;

use anyhow::{Context, Result};
use headroom::model::Status;
use headroom::runtime::RuntimeKind;

use crate::checks::Checks;
use crate::layers::docker_layer_dirs;
use crate::oracle::{self, path_str};
use crate::subject::{self, Layout, Run};
use crate::World;

/// Exit codes that mean "here is a report" (ok, warning, pressure).
const REPORT_CODES: std::ops::RangeInclusive<i32> = 0..=2;

fn problem_names(status: &Status, path: &Path) -> bool {
    let p = path.display().to_string();
    status
        .problems
        .iter()
        .any(|x| x.source.contains(&p) || x.message.contains(&p))
}

/// Docker images present in `status`, by ID.
fn docker_image<'a>(status: &'a Status, id: &str) -> Option<&'a headroom::model::Image> {
    status
        .images
        .iter()
        .find(|i| i.runtime == RuntimeKind::Docker && i.id == id)
}

/// A copy of the docker root with w1's config.v2.json truncated and app2's
/// top layer missing its cache-id: both named in problems, the rest intact.
pub fn corrupt_docker_metadata(w: &World) -> Result<()> {
    let (_, good) = w.report()?;
    let copy_dir = tempfile::Builder::new()
        .prefix("robust-")
        .tempdir_in(&w.dir)?;
    let root = copy_dir.path().join("docker");
    oracle::run("cp", &["-a", path_str(&w.docker_root)?, path_str(&root)?])?;

    let w1 = &w.fixtures.docker[0];
    let config = root.join("containers").join(&w1.id).join("config.v2.json");
    let len = fs::metadata(&config)?.len();
    OpenOptions::new()
        .write(true)
        .open(&config)
        .and_then(|f| f.set_len(len / 2))
        .with_context(|| format!("truncating {}", config.display()))?;

    let app2 = w.fixtures.image("app2");
    let diff_ids: Vec<String> = serde_json::from_str(&w.docker(&[
        "image",
        "inspect",
        "-f",
        "{{json .RootFS.Layers}}",
        app2,
    ])?)?;
    let top = oracle::chain_ids(&diff_ids)
        .pop()
        .context("app2 has no layers")?;
    let cache_id = root
        .join("image/overlay2/layerdb/sha256")
        .join(top.trim_start_matches("sha256:"))
        .join("cache-id");
    fs::remove_file(&cache_id).with_context(|| format!("removing {}", cache_id.display()))?;

    let layout = Layout {
        docker_root: &root,
        ..subject::node_layout(w)
    };
    let run = subject::status(w, &layout, true)?;
    let mut c = Checks::new();
    c.that(REPORT_CODES.contains(&run.code), || {
        format!("exit code {} should be 0-2", run.code)
    });
    let status = run.status()?;
    c.that(problem_names(&status, &config), || {
        format!(
            "problems should name {}: {:?}",
            config.display(),
            status.problems
        )
    });
    c.that(problem_names(&status, &cache_id), || {
        format!(
            "problems should name {}: {:?}",
            cache_id.display(),
            status.problems
        )
    });

    let w2 = &w.fixtures.docker[1];
    c.that(
        status
            .containers
            .iter()
            .any(|x| x.runtime_name() == "docker" && x.id == w2.id),
        || {
            format!(
                "intact container {} ({}) should still be reported",
                w2.name, w2.id
            )
        },
    );
    for (chain, _) in docker_layer_dirs(&root).unwrap_or_default() {
        c.that(
            status
                .layers
                .iter()
                .any(|l| l.runtime == RuntimeKind::Docker && l.id == chain),
            || format!("intact Docker layer {chain} should still be reported"),
        );
    }
    for name in ["base", "app1"] {
        let id = w.docker(&["image", "inspect", "-f", "{{.Id}}", w.fixtures.image(name)])?;
        let id = id.trim();
        match (docker_image(&good, id), docker_image(&status, id)) {
            (Some(g), Some(s)) => c.eq(
                &format!("Docker image {name} disk_bytes"),
                "the report on the intact root",
                g.disk_bytes,
                s.disk_bytes,
            ),
            (g, s) => c.that(false, || {
                format!(
                    "Docker image {name} ({id}) should be in both reports: intact {}, corrupt {}",
                    g.is_some(),
                    s.is_some()
                )
            }),
        }
    }
    let containerd_images = |s: &Status| {
        s.images
            .iter()
            .filter(|i| i.runtime == RuntimeKind::Containerd)
            .count()
    };
    c.eq(
        "containerd images",
        "the report on the intact node",
        containerd_images(&good),
        containerd_images(&status),
    );
    c.finish(&format!("{}\n{}", run.command, run.describe()))
}

/// `--containerd-address /nonexistent.sock`: containerd is reported as not
/// found (naming the socket), Docker is still there, and the exit code is a
/// report's, not an error's. The root is missing too, so no file fallback
/// can find containerd either.
pub fn containerd_missing(w: &World) -> Result<()> {
    let sock = Path::new("/nonexistent.sock");
    let no_root = w.dir.join("no-containerd-root");
    let layout = Layout {
        containerd_address: sock,
        containerd_root: &no_root,
        ..subject::node_layout(w)
    };
    let run: Run = subject::status(w, &layout, true)?;
    let mut c = Checks::new();
    c.that(REPORT_CODES.contains(&run.code), || {
        format!(
            "exit code {} should be 0-2 (not 3: Docker was read)",
            run.code
        )
    });
    let status = run.status()?;
    match status
        .runtimes
        .iter()
        .find(|r| r.runtime == RuntimeKind::Containerd)
    {
        None => c.that(false, || "runtimes[] has no containerd entry".to_owned()),
        Some(r) => {
            c.eq("containerd found", "no socket, no root", false, r.found);
            let named = r.location.contains("/nonexistent.sock")
                || r.message
                    .as_deref()
                    .is_some_and(|m| m.contains("/nonexistent.sock"));
            c.that(named, || {
                format!("containerd entry should name /nonexistent.sock: {r:?}")
            });
            c.that(r.message.is_some(), || {
                "containerd entry should say why".to_owned()
            });
        }
    }
    let docker_found = status
        .runtimes
        .iter()
        .any(|r| r.runtime == RuntimeKind::Docker && r.found);
    c.eq("docker found", "dockerd root is intact", true, docker_found);
    let docker_images = status
        .images
        .iter()
        .filter(|i| i.runtime == RuntimeKind::Docker)
        .count();
    c.eq(
        "Docker images",
        "3 fixture images",
        w.fixtures.images.len(),
        docker_images,
    );
    let docker_containers = status
        .containers
        .iter()
        .filter(|x| x.runtime_name() == "docker")
        .count();
    c.eq(
        "Docker containers",
        "w1 and w2",
        w.fixtures.docker.len(),
        docker_containers,
    );
    c.finish(&format!("{}\n{}", run.command, run.describe()))
}
