//! The reader on stores the fixture writes as containers-storage does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use super::fixture::{Layer, Store};
use super::*;
use crate::runtime::docker::tests::python_chain_ids;
use crate::runtime::{PodRef, Problem};

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path()).unwrap();
    (dir, store)
}

fn read(s: &Store) -> Discovery {
    discover(&s.conf(), None).unwrap()
}

/// `du -sB1` of `dir`: the oracle for the bytes a directory holds.
fn du(dir: &Path) -> u64 {
    let out = Command::new("du").arg("-sB1").arg(dir).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// Two images sharing a base layer: `base` (1 layer) and `app` (2 layers).
struct Two {
    base: Layer,
    app_top: Layer,
    base_id: String,
    app_id: String,
}

fn two_images(s: &mut Store) -> Two {
    let base = s.layer(None, "base", 3000, false).unwrap();
    let app_top = s.layer(Some(&base), "app", 5000, false).unwrap();
    let base_id = s.image("base", &["localhost/base:1"], &base).unwrap();
    let app_id = s
        .image(
            "app",
            &["localhost/app:2", "localhost/app:latest"],
            &app_top,
        )
        .unwrap();
    Two {
        base,
        app_top,
        base_id,
        app_id,
    }
}

fn sources(d: &Discovery) -> Vec<&str> {
    d.problems.iter().map(|p| p.source.as_str()).collect()
}

#[test]
fn reads_images_layers_containers_and_pulls() {
    let (_dir, mut s) = store();
    let t = two_images(&mut s);
    let (web, rw) = s.container("web", &t.app_id, &t.app_top, 20_000).unwrap();
    let crio_name = "k8s_nginx_web-7d9f_shop_0b0e6c1a-1111_0";
    let (pod_ctr, pod_rw) = s.container(crio_name, &t.base_id, &t.base, 10).unwrap();
    let pod_labels: BTreeMap<_, _> =
        crate::runtime::docker::fixture::pod_labels("web-7d9f", "shop", "0b0e-uid", "nginx");
    s.spec(&pod_ctr, &json!(pod_labels)).unwrap();
    let pulling = s.layer(Some(&t.app_top), "pulling", 70_000, true).unwrap();

    let d = read(&s);
    assert_eq!(d.problems, Vec::<Problem>::new());
    assert_eq!(
        (d.runtime, &d.image_root),
        (RuntimeKind::Crio, &s.graph_root())
    );

    // Chain IDs are hashlib's from the diff IDs, not containers-storage's IDs.
    let chains = python_chain_ids(&[t.base.diff.clone(), t.app_top.diff.clone()]);
    assert_eq!(chains[0], format!("sha256:{}", t.base.id));
    assert_ne!(chains[1], format!("sha256:{}", t.app_top.id));
    let mut want: Vec<(String, PathBuf)> = vec![
        (chains[0].clone(), t.base.dir.clone()),
        (chains[1].clone(), t.app_top.dir.clone()),
    ];
    want.sort();
    let got: Vec<(String, PathBuf)> = d
        .layers
        .iter()
        .map(|l| (l.chain_id.clone(), l.dir.clone()))
        .collect();
    assert_eq!(
        got, want,
        "writable and incomplete layers are not image layers"
    );

    let ids: Vec<&str> = d.images.iter().map(|i| i.id.as_str()).collect();
    let mut want_ids = vec![
        format!("sha256:{}", t.base_id),
        format!("sha256:{}", t.app_id),
    ];
    want_ids.sort();
    assert_eq!(ids, want_ids);
    let app = d.images.iter().find(|i| i.id.ends_with(&t.app_id)).unwrap();
    assert_eq!(app.refs, vec!["localhost/app:2", "localhost/app:latest"]);
    assert_eq!(app.layers, chains, "base first");
    let created = app
        .created
        .unwrap()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    assert_eq!(created.as_millis(), 1_706_933_106_500);
    let base = d
        .images
        .iter()
        .find(|i| i.id.ends_with(&t.base_id))
        .unwrap();
    assert_eq!(base.layers, chains[..1]);

    assert_eq!(d.containers.len(), 2);
    let web = d.containers.iter().find(|c| c.id == web).unwrap();
    assert_eq!(web.writable_dir.as_ref(), Some(&rw.dir));
    assert_eq!(web.image_id, Some(format!("sha256:{}", t.app_id)));
    assert_eq!(
        (web.name.as_str(), web.image.as_str()),
        ("web", "localhost/app:1")
    );
    assert_eq!(web.pod, None);
    assert!(du(&rw.dir) >= 20_000);
    let pod = d.containers.iter().find(|c| c.id == pod_ctr).unwrap();
    assert_eq!(pod.writable_dir.as_ref(), Some(&pod_rw.dir));
    let want_pod = PodRef {
        pod: "web-7d9f".into(),
        namespace: "shop".into(),
        uid: "0b0e-uid".into(),
        container: "nginx".into(),
    };
    assert_eq!(
        pod.pod.as_ref(),
        Some(&want_pod),
        "from the spec's annotations"
    );

    // The incomplete layer is one pull of unknown size, its bytes du's.
    assert_eq!(d.pulls.len(), 1);
    let layers = &d.pulls[0].layers;
    assert_eq!(layers.len(), 1);
    assert_eq!(layers[0].downloaded_bytes, du(&pulling.dir));
    assert_eq!(layers[0].compressed_bytes, 0);
    assert_eq!(
        d.pull_dirs,
        vec![
            s.graph_root().join("overlay"),
            s.graph_root().join("overlay-layers")
        ]
    );
}

#[test]
fn a_pod_without_a_spec_is_told_by_its_kubelet_name() {
    let (_dir, mut s) = store();
    let t = two_images(&mut s);
    let name = "k8s_nginx_web-7d9f_shop_0b0e-uid_2";
    s.container(name, &t.base_id, &t.base, 1).unwrap();
    let d = read(&s);
    assert_eq!(d.problems, Vec::<Problem>::new());
    let pod = d.containers[0].pod.clone().unwrap();
    assert_eq!(
        (pod.pod.as_str(), pod.container.as_str()),
        ("web-7d9f", "nginx")
    );
}

#[test]
fn a_corrupt_images_json_is_a_problem_naming_it_and_the_rest_stands() {
    let (_dir, mut s) = store();
    let t = two_images(&mut s);
    let (web, _) = s.container("web", &t.app_id, &t.app_top, 100).unwrap();
    let images = s
        .write("overlay-images/images.json", r#"[{"id": "ab"#)
        .unwrap();
    let d = read(&s);
    assert_eq!(sources(&d), vec![images.display().to_string()]);
    assert_eq!(d.problems[0].kind, ProblemKind::Malformed);
    assert!(
        d.problems[0].message.contains("invalid JSON"),
        "{:?}",
        d.problems
    );
    assert!(d.images.is_empty());
    assert_eq!(d.layers.len(), 2);
    assert_eq!(d.containers.len(), 1);
    assert_eq!(d.containers[0].id, web);
    assert!(d.containers[0].writable_dir.is_some());
}

#[test]
fn a_truncated_layers_json_is_a_problem_and_images_and_containers_stand() {
    let (_dir, mut s) = store();
    let t = two_images(&mut s);
    s.container("web", &t.app_id, &t.app_top, 100).unwrap();
    let path = s.graph_root().join("overlay-layers/layers.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, &text[..text.len() / 2]).unwrap();
    let d = read(&s);
    let layers_file = path.display().to_string();
    let images_file = s.graph_root().join("overlay-images/images.json");
    let images_file = images_file.display().to_string();
    let kinds: Vec<(&str, ProblemKind)> = d
        .problems
        .iter()
        .map(|p| (p.source.as_str(), p.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (layers_file.as_str(), ProblemKind::Malformed),
            (images_file.as_str(), ProblemKind::Missing),
            (images_file.as_str(), ProblemKind::Missing),
        ],
        "{:?}",
        d.problems
    );
    // Images name top layers no file lists now: said, and still listed.
    assert_eq!(d.images.len(), 2);
    assert!(d.images.iter().all(|i| i.layers.is_empty()));
    assert!(d.layers.is_empty());
    assert_eq!(d.containers.len(), 1);
}

#[test]
fn a_missing_storage_conf_means_the_defaults_under_a_root_given() {
    let (dir, mut s) = store();
    let t = two_images(&mut s);
    let missing = dir.path().join("absent.conf");
    let d = discover(&missing, Some(&s.graph_root())).unwrap();
    assert_eq!(d.problems, Vec::<Problem>::new());
    assert_eq!(d.images.len(), 2);
    assert!(d.layers.iter().any(|l| l.dir == t.base.dir));
}

#[test]
fn additional_image_stores_are_read_too() {
    let (_dir, mut s) = store();
    let t = two_images(&mut s);
    let extra_dir = tempfile::tempdir().unwrap();
    let mut extra = Store::create(extra_dir.path()).unwrap();
    let ro_base = extra.layer(None, "ro-base", 4000, false).unwrap();
    let ro_id = extra.image("ro", &["localhost/ro:1"], &ro_base).unwrap();
    // The same image in both: the primary store's record wins.
    extra
        .image("app", &["localhost/app:elsewhere"], &ro_base)
        .unwrap();
    s.conf_with(&[&extra.graph_root()]).unwrap();
    let d = read(&s);
    assert_eq!(d.problems, Vec::<Problem>::new());
    let ro = d.images.iter().find(|i| i.id.ends_with(&ro_id)).unwrap();
    assert_eq!(ro.layers, vec![ro_base.diff.clone()]);
    assert!(d.layers.iter().any(|l| l.dir == ro_base.dir));
    let app = d.images.iter().find(|i| i.id.ends_with(&t.app_id)).unwrap();
    assert_eq!(app.refs, vec!["localhost/app:2", "localhost/app:latest"]);
    assert_eq!(d.images.len(), 3);
}

#[test]
fn an_empty_store_is_empty_and_a_missing_one_is_no_problem() {
    let (dir, s) = store();
    let d = read(&s);
    assert!(d.images.is_empty() && d.layers.is_empty() && d.containers.is_empty());
    assert_eq!(d.problems, Vec::<Problem>::new());
    let gone = dir.path().join("gone");
    let err = discover(&s.conf(), Some(&gone)).unwrap_err();
    assert!(matches!(&err, CrioError::RootMissing { path } if *path == gone));
    let read_err = ReadError::from(err);
    assert_eq!(read_err.problem(RuntimeKind::Crio, &gone), None);
}

#[test]
fn another_driver_is_unsupported() {
    let (_dir, s) = store();
    std::fs::create_dir(s.graph_root().join("vfs-layers")).unwrap();
    let text = std::fs::read_to_string(s.conf()).unwrap();
    std::fs::write(s.conf(), text.replace("driver = \"overlay\"\n", "")).unwrap();
    let err = read_err(&s);
    assert_eq!(err.kind(), ProblemKind::Unsupported);
    assert_eq!(err.path(), s.graph_root().join("vfs-layers"));
    std::fs::write(s.conf(), text.replace("\"overlay\"", "\"btrfs\"")).unwrap();
    let err = read_err(&s);
    assert!(err.to_string().contains("graph driver btrfs"), "{err}");
    assert_eq!(err.path(), s.conf());
}

fn read_err(s: &Store) -> CrioError {
    discover(&s.conf(), None).unwrap_err()
}

#[test]
fn hostile_ids_are_never_paths() {
    let (_dir, s) = store();
    let layers = s
        .write(
            "overlay-layers/layers.json",
            json!([{"id": "../../../etc"}]).to_string(),
        )
        .unwrap();
    let d = read(&s);
    assert_eq!(sources(&d), vec![layers.display().to_string()]);
    assert!(d.problems[0].message.contains("not a 64-hex ID"));
    assert!(d.layers.is_empty());
}
