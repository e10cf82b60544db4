//! Pod logs under `/var/log/pods`.
//!
//! The kubelet writes each container's stdout/stderr to
//! `<namespace>_<pod>_<uid>/<container>/<restartCount>.log` and rotates it
//! alongside (`0.log.20240101-120000`, `….gz`). These files fill the node
//! filesystem whichever runtime runs the pod, so they are found here, by
//! path, and attributed to the pod the directory names. Like the runtime
//! readers this only says where files are; it measures nothing.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::runtime::{PodRef, Problem, ProblemKind, Reader};

/// Who meets the problems of this reader.
const READER: Reader = Reader::PodLogs;

/// The log files of one container of one pod.
#[derive(Debug, Clone, PartialEq)]
pub struct PodLogs {
    /// Pod and container the files belong to.
    pub pod: PodRef,
    /// The log files (current and rotated), sorted.
    pub files: Vec<PathBuf>,
}

/// Finds every pod container's log files under `root`, sorted by namespace,
/// pod and container. A missing root means no pod logs (a plain Docker host
/// has none); anything unreadable is a [`Problem`]. Only regular files count:
/// symlinks are not followed.
pub fn discover(root: &Path) -> (Vec<PodLogs>, Vec<Problem>) {
    let mut problems = Vec::new();
    let mut logs = Vec::new();
    let pod_dirs = match subdirs(root, READER, &mut problems) {
        Ok(dirs) => dirs,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            problems.push(READER.problem_from(root.display().to_string(), &e));
            Vec::new()
        }
    };
    for (name, dir) in pod_dirs {
        let pod = parse_pod_dir(&name).unwrap_or_else(|| {
            let message =
                "not <namespace>_<pod>_<uid>; its logs are filed under the directory name";
            problems.push(READER.problem(
                ProblemKind::Malformed,
                dir.display().to_string(),
                message,
            ));
            PodRef {
                pod: name.clone(),
                ..PodRef::default()
            }
        });
        pod_logs(&dir, &pod, &mut logs, &mut problems);
    }
    logs.sort_by(|a, b| order(a).cmp(&order(b)));
    (logs, problems)
}

/// The order of [`discover`]'s output.
fn order(logs: &PodLogs) -> (&str, &str, &str, &str) {
    let pod = &logs.pod;
    (&pod.namespace, &pod.pod, &pod.uid, &pod.container)
}

/// Splits `<namespace>_<pod>_<uid>`; namespaces and pod names are DNS labels
/// or subdomains, so neither holds `_`.
fn parse_pod_dir(name: &str) -> Option<PodRef> {
    let mut parts = name.split('_');
    let (namespace, pod, uid) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed = parts.next().is_none() && [namespace, pod, uid].iter().all(|p| !p.is_empty());
    well_formed.then(|| PodRef {
        pod: pod.to_string(),
        namespace: namespace.to_string(),
        uid: uid.to_string(),
        container: String::new(),
    })
}

/// Adds one [`PodLogs`] per container directory of `pod_dir` that holds files.
fn pod_logs(pod_dir: &Path, pod: &PodRef, logs: &mut Vec<PodLogs>, problems: &mut Vec<Problem>) {
    let containers = subdirs(pod_dir, READER, problems).unwrap_or_else(|e| {
        problems.push(READER.problem_from(pod_dir.display().to_string(), &e));
        Vec::new()
    });
    for (container, dir) in containers {
        let files = regular_files(&dir).unwrap_or_else(|e| {
            problems.push(READER.problem_from(dir.display().to_string(), &e));
            Vec::new()
        });
        if !files.is_empty() {
            let pod = PodRef {
                container,
                ..pod.clone()
            };
            logs.push(PodLogs { pod, files });
        }
    }
}

/// The real (not symlinked) subdirectories of `dir` with their names, sorted.
/// A name that is not UTF-8 is kept, its bytes being on the disk all the same,
/// under a lossy rendering (`\u{fffd}` for each bad byte); `reader` reports it.
pub(crate) fn subdirs(
    dir: &Path,
    reader: Reader,
    problems: &mut Vec<Problem>,
) -> io::Result<Vec<(String, PathBuf)>> {
    let mut dirs = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        // DirEntry::file_type does not follow symlinks.
        if entry.file_type()?.is_dir() {
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_name().to_str().is_none() {
                let message = format!("the name is not UTF-8; filed under {name:?}");
                problems.push(reader.problem(
                    ProblemKind::Malformed,
                    path.display().to_string(),
                    message,
                ));
            }
            dirs.push((name, path));
        }
    }
    dirs.sort();
    Ok(dirs)
}

/// The regular files in `dir`, sorted.
fn regular_files(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push(entry.path());
        }
    }
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn touch(root: &Path, rel: &str) -> PathBuf {
        let path = root.join(rel);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "2024-01-01T12:00:00.000000000Z stdout F hello\n").unwrap();
        path
    }

    fn pod(namespace: &str, pod: &str, uid: &str, container: &str) -> PodRef {
        PodRef {
            pod: pod.to_string(),
            namespace: namespace.to_string(),
            uid: uid.to_string(),
            container: container.to_string(),
        }
    }

    #[test]
    fn files_are_attributed_to_pod_and_container() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let uid = "6d3c2a5e-0b1f-4c8e-9a7d-2f1e0c9b8a70";
        let web = format!("shop_web-7d9f-x2k4q_{uid}");
        let nginx: Vec<PathBuf> = [
            "0.log",
            "0.log.20240101-120000.gz",
            "1.log",
            "1.log.20240102-080000",
        ]
        .iter()
        .map(|f| touch(root, &format!("{web}/nginx/{f}")))
        .collect();
        let sidecar = vec![touch(root, &format!("{web}/istio-proxy/0.log"))];
        let etcd_uid = "3b1f0e2d9c8a7b6c5d4e3f2a1b0c9d8e";
        let etcd = vec![touch(
            root,
            &format!("kube-system_etcd-node-1_{etcd_uid}/etcd/2.log"),
        )];
        // Not counted: symlinks (to files or dirs), subdirectories, empty containers.
        symlink("/etc/hostname", root.join(format!("{web}/nginx/3.log"))).unwrap();
        symlink(root.join(&web), root.join("default_linked_1")).unwrap();
        fs::create_dir_all(root.join(format!("{web}/nginx/old"))).unwrap();
        fs::create_dir_all(root.join(format!("{web}/empty"))).unwrap();
        touch(root, &format!("{web}/stray.txt"));

        let (logs, problems) = discover(root);
        assert_eq!(problems, vec![]);
        let want = vec![
            PodLogs {
                pod: pod("kube-system", "etcd-node-1", etcd_uid, "etcd"),
                files: etcd,
            },
            PodLogs {
                pod: pod("shop", "web-7d9f-x2k4q", uid, "istio-proxy"),
                files: sidecar,
            },
            PodLogs {
                pod: pod("shop", "web-7d9f-x2k4q", uid, "nginx"),
                files: nginx,
            },
        ];
        assert_eq!(logs, want);
    }

    #[test]
    fn an_unparsable_dir_is_a_problem_and_its_files_still_count() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let odd = ["odd-dir", "a_b_c_d", "ns__uid"];
        let files: Vec<PathBuf> = odd
            .iter()
            .map(|d| touch(root, &format!("{d}/app/0.log")))
            .collect();
        let (logs, problems) = discover(root);
        let mut want_sources: Vec<String> = odd
            .iter()
            .map(|d| root.join(d).display().to_string())
            .collect();
        want_sources.sort();
        assert_eq!(
            problems
                .iter()
                .map(|p| p.source.clone())
                .collect::<Vec<_>>(),
            want_sources
        );
        let got: Vec<(String, Vec<PathBuf>)> = logs
            .iter()
            .map(|l| (l.pod.pod.clone(), l.files.clone()))
            .collect();
        let mut want: Vec<(String, Vec<PathBuf>)> = odd
            .iter()
            .zip(files)
            .map(|(d, f)| (d.to_string(), vec![f]))
            .collect();
        want.sort();
        assert_eq!(got, want);
        assert!(logs
            .iter()
            .all(|l| l.pod.namespace.is_empty() && l.pod.container == "app"));
    }

    #[test]
    fn fault_names_that_are_not_utf8_still_count_and_are_reported() {
        use std::ffi::OsStr;
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let odd_pod = root.join(OsStr::from_bytes(b"ns_pod\xff_uid"));
        let odd_container = root.join("ns_web_uid").join(OsStr::from_bytes(b"app\xfe"));
        let files: Vec<PathBuf> = [odd_pod.join("app"), odd_container.clone()]
            .iter()
            .map(|d| {
                fs::create_dir_all(d).unwrap();
                let file = d.join("0.log");
                fs::write(&file, "log").unwrap();
                file
            })
            .collect();
        let (logs, problems) = discover(root);
        let got: Vec<(PodRef, Vec<PathBuf>)> = logs.into_iter().map(|l| (l.pod, l.files)).collect();
        assert_eq!(
            got,
            vec![
                (
                    pod("ns", "pod\u{fffd}", "uid", "app"),
                    vec![files[0].clone()]
                ),
                (
                    pod("ns", "web", "uid", "app\u{fffd}"),
                    vec![files[1].clone()]
                ),
            ]
        );
        let sources: Vec<String> = problems.iter().map(|p| p.source.clone()).collect();
        assert_eq!(
            sources,
            [&odd_pod, &odd_container].map(|d| d.display().to_string())
        );
        assert!(problems.iter().all(|p| p.kind == ProblemKind::Malformed));
    }

    #[test]
    fn a_missing_root_is_no_logs_and_no_problem() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(discover(&dir.path().join("pods")), (vec![], vec![]));
    }

    #[test]
    fn a_root_that_is_a_file_is_a_problem() {
        let dir = tempfile::tempdir().unwrap();
        let file = touch(dir.path(), "pods");
        let (logs, problems) = discover(&file);
        assert!(logs.is_empty());
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].source, file.display().to_string());
    }
}
