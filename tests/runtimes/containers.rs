//! Containers: writable layers against du (and containerd's own usage), logs
//! against du, and pod identity from the CRI labels and the pod-logs layout.

use std::path::{Path, PathBuf};

use anyhow::Result;
use headroom::model::Container;

use crate::checks::Checks;
use crate::images::{PodLogs, K8S_NS};
use crate::oracle::{self, path_str};
use crate::World;

/// Trial 4: Docker and containerd containers.
pub fn match_du_and_labels(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let mut c = Checks::new();
    for ctr in &w.fixtures.docker {
        let what = format!("Docker container {}", ctr.name);
        let Some(rep) = find(&status.containers, "docker", &ctr.id) else {
            c.that(false, || format!("{what} ({}) is not reported", ctr.id));
            continue;
        };
        c.eq(
            &format!("{what} name"),
            "docker run --name",
            ctr.name.as_str(),
            rep.name.as_str(),
        );
        c.eq(
            &format!("{what} image"),
            "docker run IMAGE",
            ctr.image.as_str(),
            rep.image.as_str(),
        );
        c.eq(
            &format!("{what} pod"),
            "not under the kubelet",
            None,
            rep.pod.as_deref(),
        );
        let upper = w.docker(&["inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", &ctr.id])?;
        check_writable(
            &mut c,
            &what,
            rep,
            upper.trim(),
            "docker inspect -f {{.GraphDriver.Data.UpperDir}}",
        );
        let log = w.docker(&["inspect", "-f", "{{.LogPath}}", &ctr.id])?;
        check_logs(&mut c, &what, rep, &[PathBuf::from(log.trim())]);
    }

    let cri = &w.fixtures.cri;
    let what = format!("containerd container {}", cri.id);
    match find(&status.containers, "containerd", &cri.id) {
        None => c.that(false, || format!("{what} is not reported")),
        Some(rep) => {
            c.eq(
                &format!("{what} namespace"),
                "ctr -n k8s.io",
                K8S_NS,
                rep.namespace.as_str(),
            );
            c.eq(
                &format!("{what} image"),
                "ctr run IMAGE",
                cri.image.as_str(),
                rep.image.as_str(),
            );
            check_pod(&mut c, &what, rep, &cri.logs);
            let mounts = format!("ctr -n k8s.io snapshots mounts /x {}", cri.id);
            match oracle::ctr_upperdir(&w.containerd_sock, K8S_NS, &cri.id) {
                Ok(upper) => check_writable(&mut c, &what, rep, &upper, &mounts),
                Err(e) => c.error(&mounts, e),
            }
            let usage = oracle::ctr_usage(&w.containerd_sock, K8S_NS)?;
            c.eq(
                &format!("{what} writable_disk_bytes"),
                "ctr -n k8s.io snapshots usage -b (active snapshot, live walk)",
                usage.get(&cri.id).map(|u| u.0),
                Some(rep.writable_disk_bytes),
            );
            check_logs(&mut c, &what, rep, &cri.logs.files);
        }
    }
    c.finish(&run.command)
}

/// Pod logs with no container left are reported on their own.
pub fn orphaned_pod_logs(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let logs = &w.fixtures.orphan;
    let mut c = Checks::new();
    let found = status
        .containers
        .iter()
        .find(|x| x.runtime_name() == "kubelet" && x.pod.as_deref() == Some(logs.pod.as_str()));
    match found {
        None => c.that(false, || {
            format!(
                "pod logs of gone pod {} (runtime \"kubelet\") are not reported",
                logs.pod
            )
        }),
        Some(rep) => {
            check_pod(&mut c, "orphaned pod logs", rep, logs);
            check_logs(&mut c, "orphaned pod logs", rep, &logs.files);
        }
    }
    c.finish(&run.command)
}

/// The pod's emptyDir is reported under its pod, at du's figures.
pub fn empty_dirs_match_du(w: &World) -> Result<()> {
    let (run, status) = w.report()?;
    let path = &w.fixtures.empty_dir;
    let logs = &w.fixtures.cri.logs;
    let mut c = Checks::new();
    let found = status.volumes.iter().find(|v| Path::new(&v.path) == path);
    match found {
        None => c.that(false, || {
            format!("emptyDir {} is not reported", path.display())
        }),
        Some(v) => {
            let du = oracle::du(path)?;
            c.eq("emptyDir disk bytes", "du -s -B1", du.disk, v.disk_bytes);
            c.eq(
                "emptyDir apparent bytes",
                "du -s -B1 --apparent-size",
                du.apparent,
                v.apparent_bytes,
            );
            c.eq(
                "emptyDir pod",
                "io.kubernetes.pod.name",
                Some(logs.pod.as_str()),
                v.pod.as_deref(),
            );
            c.eq(
                "emptyDir pod namespace",
                "io.kubernetes.pod.namespace",
                Some(logs.namespace.as_str()),
                v.pod_namespace.as_deref(),
            );
            c.eq("emptyDir name", "directory name", "cache", v.name.as_str());
        }
    }
    c.finish(&run.command)
}

fn find<'a>(containers: &'a [Container], runtime: &str, id: &str) -> Option<&'a Container> {
    containers
        .iter()
        .find(|x| x.runtime_name() == runtime && x.id == id)
}

fn check_pod(c: &mut Checks, what: &str, rep: &Container, logs: &PodLogs) {
    c.eq(
        &format!("{what} name"),
        "io.kubernetes.container.name",
        logs.container.as_str(),
        rep.name.as_str(),
    );
    c.eq(
        &format!("{what} pod"),
        "io.kubernetes.pod.name",
        Some(logs.pod.as_str()),
        rep.pod.as_deref(),
    );
    c.eq(
        &format!("{what} pod_namespace"),
        "io.kubernetes.pod.namespace",
        Some(logs.namespace.as_str()),
        rep.pod_namespace.as_deref(),
    );
}

/// The writable layer is `upper` (when the report names one) and its bytes
/// are du's.
fn check_writable(c: &mut Checks, what: &str, rep: &Container, upper: &str, oracle_cmd: &str) {
    if let Some(path) = &rep.writable_path {
        c.eq(
            &format!("{what} writable_path"),
            oracle_cmd,
            upper,
            path.as_str(),
        );
    }
    match oracle::du(Path::new(upper)) {
        Ok(du) => {
            c.eq(
                &format!("{what} writable_disk_bytes"),
                &format!("du -s -B1 {upper}"),
                du.disk,
                rep.writable_disk_bytes,
            );
            c.eq(
                &format!("{what} writable_apparent_bytes"),
                &format!("du -s -B1 --apparent-size {upper}"),
                du.apparent,
                rep.writable_apparent_bytes,
            );
        }
        Err(e) => c.error(&format!("{what} du of {upper}"), e),
    }
}

fn check_logs(c: &mut Checks, what: &str, rep: &Container, files: &[PathBuf]) {
    let refs: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let names: Vec<&str> = refs.iter().filter_map(|p| path_str(p).ok()).collect();
    match oracle::du_files_disk(&refs) {
        Ok(bytes) => c.eq(
            &format!("{what} log_bytes"),
            &format!("du -c -B1 {}", names.join(" ")),
            bytes,
            rep.log_bytes,
        ),
        Err(e) => c.error(&format!("{what} du of logs"), e),
    }
}
