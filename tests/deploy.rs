//! The deployment artefacts of `deploy/`: the container image and the
//! Kubernetes manifests.
//!
//! The image test builds the image with `scripts/build-image` against a
//! private dockerd (on its own containerd, both under a temp dir), checks its
//! size and shape with `docker image inspect`, runs it and asks it for
//! `/healthz` and `/metrics`, then checks that `headroom status` on that
//! dockerd's data root lists the image it was just built as. The manifest
//! tests build `deploy/kubernetes` with `kubectl kustomize` (what `kubectl
//! apply -k` applies), validate every object offline and strictly: the
//! built-in kinds with `kubernetes-validate --strict`, the Prometheus
//! operator's (PodMonitor, PrometheusRule) against its CRDs' schemas
//! (tests/fixtures/crds); and check the settings no schema can (read-only
//! root mount, two capabilities, priority, probes, node name, the
//! PodMonitor's selector and port).
//!
//! Without root or the tools, each test is ignored with a message naming
//! what is missing, unless `CI` is set: then it fails (tests/support).

mod support;

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use headroom::model::Status;
use serde::Deserialize;
use serde_yaml_ng::Value;
use support::{free_port, trial, Install, Need};

/// The image must stay below this (the issue's 15 MB).
const MAX_IMAGE_BYTES: u64 = 15_000_000;
/// How long a daemon or the agent may take to answer.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a daemon may take to exit after SIGTERM before SIGKILL.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);
/// The kustomize base (`kubectl apply -k deploy/kubernetes`).
const BASE: &str = "deploy/kubernetes";
/// The operator's CRDs the custom kinds are validated against.
const CRDS: &[&str] = &[
    "tests/fixtures/crds/monitoring.coreos.com_podmonitors.yaml",
    "tests/fixtures/crds/monitoring.coreos.com_prometheusrules.yaml",
];
/// Where the DaemonSet mounts the node's root, read-only.
const HOST_ROOT: &str = "/host";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn main() {
    let kubectl = Need::tool("kubectl");
    // kubernetes-validate brings both modules (the CRD validator's).
    let crd_validator = [
        Need::python_module("jsonschema", "kubernetes-validate"),
        Need::python_module("yaml", "kubernetes-validate"),
    ];
    let mut validators = vec![kubectl.clone(), Need::tool("kubernetes-validate")];
    validators.extend_from_slice(&crd_validator);
    support::main(vec![
        trial!(kustomization_builds_every_manifest_namespace_first).needs(&[kubectl]),
        trial!(manifests_validate_against_the_kubernetes_schemas).needs(&validators),
        trial!(crd_validation_rejects_what_the_api_server_would).needs(&crd_validator),
        trial!(daemonset_is_locked_down_and_probed),
        trial!(podmonitor_scrapes_the_agents_port_keeping_their_labels),
        trial!(image_is_small_serves_health_and_is_seen_by_status).needs(&image_prerequisites()),
    ]);
}

/// Runs `cmd`, panicking with its output when it fails.
fn run(cmd: &mut Command) -> Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `kubectl kustomize deploy/kubernetes`: what `kubectl apply -k` applies.
fn kustomized() -> String {
    stdout(&run(Command::new("kubectl")
        .arg("kustomize")
        .arg(repo().join(BASE))))
}

/// The objects of a multi-document YAML text, empty documents skipped.
fn documents(text: &str, source: &str) -> Vec<Value> {
    serde_yaml_ng::Deserializer::from_str(text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{source}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// `kind/name`, lower-case kind, as kubernetes-validate names a resource.
fn kind_name(object: &Value) -> String {
    let kind = object["kind"].as_str().unwrap_or_default().to_lowercase();
    format!(
        "{kind}/{}",
        at(object, "metadata.name").as_str().unwrap_or_default()
    )
}

/// The manifest files of the base, in the order `kubectl apply -f dir/`
/// applies them (by name; it reads *.yaml, *.yml and *.json).
fn manifest_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(repo().join(BASE))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        })
        .collect();
    files.sort();
    files
}

fn kustomization_builds_every_manifest_namespace_first() {
    let built = documents(&kustomized(), "kubectl kustomize");
    assert_eq!(
        built.first().map(|o| &o["kind"]),
        Some(&Value::from("Namespace")),
        "the Namespace is not first: {:?}",
        built.iter().map(kind_name).collect::<Vec<_>>()
    );
    // Every file is in the base, and the base adds nothing.
    let mut in_files: Vec<String> = Vec::new();
    for file in manifest_files() {
        let text = fs::read_to_string(&file).unwrap();
        in_files.extend(
            documents(&text, &file.display().to_string())
                .iter()
                .map(kind_name),
        );
    }
    let mut in_build: Vec<String> = built.iter().map(kind_name).collect();
    in_files.sort();
    in_build.sort();
    assert_eq!(in_build, in_files);
    // `kubectl apply -f deploy/kubernetes/` creates the namespace first too.
    let first = &manifest_files()[0];
    let first = documents(&fs::read_to_string(first).unwrap(), "first file");
    assert_eq!(first[0]["kind"], "Namespace", "first file by name");
}

/// Validates every object of `text` whose kind one of [`CRDS`] defines
/// against that CRD's schema, made strict (unknown fields rejected, as
/// `kubectl apply`'s default field validation does); prints `passed for
/// resource kind/name` or the errors, one a line; fails when any has one.
const CRD_VALIDATOR: &str = r#"
import sys, yaml, jsonschema

def strict(schema):
    if isinstance(schema, dict):
        if (schema.get("type") == "object" and "properties" in schema
                and "additionalProperties" not in schema
                and not schema.get("x-kubernetes-preserve-unknown-fields")):
            schema["additionalProperties"] = False
        for v in schema.values():
            strict(v)
    elif isinstance(schema, list):
        for v in schema:
            strict(v)
    return schema

strings = {"type": "object", "additionalProperties": {"type": "string"}}
metadata = {"type": "object", "additionalProperties": False, "required": ["name"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"},
                           "labels": strings, "annotations": strings}}
schemas = {}
for path in sys.argv[1:]:
    with open(path) as f:
        crd = yaml.safe_load(f)
    for version in crd["spec"]["versions"]:
        schema = strict(version["schema"]["openAPIV3Schema"])
        schema["properties"]["metadata"] = metadata
        key = (crd["spec"]["group"] + "/" + version["name"], crd["spec"]["names"]["kind"])
        schemas[key] = schema

failed = False
for doc in yaml.safe_load_all(sys.stdin):
    if not doc:
        continue
    schema = schemas.get((doc.get("apiVersion"), doc.get("kind")))
    if schema is None:
        continue
    name = "%s/%s" % (doc["kind"].lower(), doc.get("metadata", {}).get("name"))
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(doc))
    for e in errors:
        failed = True
        print("FAILED %s at %s: %s" % (name, "/".join(map(str, e.absolute_path)), e.message))
    if not errors:
        print("passed for resource %s" % name)
sys.exit(1 if failed else 0)
"#;

/// Runs [`CRD_VALIDATOR`] on `text`: whether it passed, and what it said.
fn validate_custom_kinds(text: &str) -> (bool, String) {
    let mut child = Command::new("python3")
        .args(["-c", CRD_VALIDATOR])
        .args(CRDS.iter().map(|c| repo().join(c)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    (out.status.success(), said.into_owned())
}

/// Whether `said` reports `object` as passed (kubernetes-validate's words).
fn passed(said: &str, object: &Value) -> bool {
    let resource = format!("passed for resource {}", kind_name(object));
    said.lines()
        .any(|l| l.ends_with(&resource) || l.contains(&format!("{resource} ")))
}

fn manifests_validate_against_the_kubernetes_schemas() {
    let text = kustomized();
    let built = tempfile::Builder::new()
        .prefix("headroom-kustomized-")
        .suffix(".yaml")
        .tempfile()
        .unwrap();
    fs::write(built.path(), &text).unwrap();
    let out = run(Command::new("kubernetes-validate")
        .arg("--strict")
        .arg(built.path()));
    let builtin = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    let (ok, custom) = validate_custom_kinds(&text);
    assert!(ok, "the operator's kinds do not validate:\n{custom}");
    // Each object by one of the two: none is left unchecked.
    for object in documents(&text, "kubectl kustomize") {
        assert!(
            passed(&builtin, &object) || passed(&custom, &object),
            "{} not validated:\n{builtin}\n{custom}",
            kind_name(&object)
        );
    }
}

fn crd_validation_rejects_what_the_api_server_would() {
    let podmonitor = fs::read_to_string(repo().join(BASE).join("podmonitor.yaml")).unwrap();
    let (ok, said) = validate_custom_kinds(&podmonitor);
    assert!(ok, "{said}");
    for (what, from, to) in [
        ("an unknown field", "honorLabels:", "honourLabels:"),
        (
            "a malformed duration",
            "interval: 10s",
            "interval: 10 seconds",
        ),
        (
            "an unknown metadata field",
            "  namespace: headroom",
            "  namespaces: headroom",
        ),
    ] {
        assert!(podmonitor.contains(from), "podmonitor.yaml lacks {from:?}");
        let (ok, said) = validate_custom_kinds(&podmonitor.replacen(from, to, 1));
        assert!(!ok, "{what} ({to:?}) passed:\n{said}");
    }
}

fn yaml(file: &str) -> Value {
    let path = repo().join(BASE).join(file);
    let text = fs::read_to_string(&path).unwrap();
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(v, |v, key| match key.parse::<usize>() {
            Ok(i) => &v[i],
            Err(_) => &v[key],
        })
}

/// The value of the container's env var `name`.
fn env_value<'a>(container: &'a Value, name: &str) -> &'a Value {
    let env = container["env"].as_sequence().unwrap();
    env.iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no env {name}"))
}

fn daemonset_is_locked_down_and_probed() {
    let ds = yaml("daemonset.yaml");
    let pod = at(&ds, "spec.template.spec");
    // Evicted last under DiskPressure, the pressure it warns about.
    assert_eq!(pod["priorityClassName"], "system-node-critical");
    // The node's processes are read through the mount, not joined.
    for shared in ["hostPID", "hostNetwork", "hostIPC"] {
        assert!(
            matches!(pod[shared], Value::Null | Value::Bool(false)),
            "{shared}"
        );
    }
    let c = at(pod, "containers.0");
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(sc["allowPrivilegeEscalation"], Value::Bool(false));
    assert!(matches!(sc["privileged"], Value::Null | Value::Bool(false)));
    assert_eq!(
        at(sc, "capabilities.drop"),
        &serde_yaml_ng::from_str::<Value>("[ALL]").unwrap()
    );
    assert_eq!(
        at(sc, "capabilities.add"),
        &serde_yaml_ng::from_str::<Value>("[DAC_READ_SEARCH, SYS_CHROOT]").unwrap()
    );
    let mounts = c["volumeMounts"].as_sequence().unwrap();
    assert!(!mounts.is_empty());
    for m in mounts {
        assert_eq!(
            m["readOnly"],
            Value::Bool(true),
            "mount not read-only: {m:?}"
        );
        // Bidirectional would let the container's mounts reach the node.
        assert!(
            matches!(
                m["mountPropagation"].as_str(),
                None | Some("None" | "HostToContainer")
            ),
            "mount propagates to the node: {m:?}"
        );
    }
    let hostpaths = pod["volumes"].as_sequence().unwrap();
    assert_eq!(hostpaths.len(), mounts.len());
    assert!(hostpaths.iter().all(|v| v["hostPath"].is_mapping()));
    // One mount: the node's root at HOST_ROOT, where the agent chroots.
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0]["mountPath"], HOST_ROOT);
    assert_eq!(mounts[0]["mountPropagation"], "HostToContainer");
    assert_eq!(mounts[0]["name"], hostpaths[0]["name"]);
    assert_eq!(at(&hostpaths[0], "hostPath.path"), "/");
    assert_eq!(env_value(c, "HEADROOM_HOST_ROOT")["value"], HOST_ROOT);
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(at(c, &format!("{probe}.httpGet.path")).as_str(), Some(path));
    }
    assert_eq!(at(c, "ports.0.containerPort").as_u64(), Some(9847));
    for kind in ["requests", "limits"] {
        for res in ["cpu", "memory"] {
            assert!(!at(c, &format!("resources.{kind}.{res}")).is_null());
        }
    }
    let node = env_value(c, "NODE_NAME");
    // The built-in default is loopback; the pod's IP must serve too.
    let listen = env_value(c, "HEADROOM_LISTEN");
    assert_eq!(listen["value"].as_str(), Some("0.0.0.0:9847"));
    assert_eq!(
        at(node, "valueFrom.fieldRef.fieldPath").as_str(),
        Some("spec.nodeName")
    );
    let tolerations = pod["tolerations"].as_sequence().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t["operator"] == "Exists" && t["key"].is_null() && t["effect"].is_null()));
    let svc = yaml("service.yaml");
    assert_eq!(at(&svc, "spec.ports.0.port").as_u64(), Some(9847));
    assert_eq!(
        at(&svc, "spec.selector"),
        at(&ds, "spec.selector.matchLabels")
    );
}

/// The `headroom` job's scrape interval in the example Prometheus config.
fn example_scrape_interval() -> String {
    let path = repo().join(support::deploy::PROMETHEUS_EXAMPLE);
    let config: Value = serde_yaml_ng::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let jobs = config["scrape_configs"].as_sequence().unwrap();
    let job = jobs.iter().find(|j| j["job_name"] == "headroom").unwrap();
    job["scrape_interval"].as_str().unwrap().to_owned()
}

fn podmonitor_scrapes_the_agents_port_keeping_their_labels() {
    let ds = yaml("daemonset.yaml");
    let pm = yaml("podmonitor.yaml");
    assert_eq!(pm["kind"], "PodMonitor");
    assert_eq!(
        at(&pm, "metadata.namespace"),
        at(&ds, "metadata.namespace"),
        "a PodMonitor selects pods of its own namespace"
    );
    // Its selector matches the DaemonSet's pods (every label it asks for).
    let wanted = at(&pm, "spec.selector.matchLabels").as_mapping().unwrap();
    assert!(!wanted.is_empty());
    let labels = at(&ds, "spec.template.metadata.labels");
    for (key, value) in wanted {
        assert_eq!(&labels[key], value, "pod label {key:?}");
    }
    assert!(at(&pm, "spec.selector.matchExpressions").is_null());
    let endpoints = at(&pm, "spec.podMetricsEndpoints").as_sequence().unwrap();
    assert_eq!(endpoints.len(), 1);
    let endpoint = &endpoints[0];
    let ports = at(&ds, "spec.template.spec.containers.0.ports")
        .as_sequence()
        .unwrap();
    assert!(
        ports.iter().any(|p| p["name"] == endpoint["port"]),
        "port {:?} is no container port",
        endpoint["port"]
    );
    // The agent's namespace/pod/container/node labels win over the target's.
    assert_eq!(endpoint["honorLabels"], Value::Bool(true));
    assert_eq!(
        endpoint["interval"].as_str(),
        Some(example_scrape_interval().as_str())
    );
    assert!(matches!(endpoint["path"].as_str(), None | Some("/metrics")));
}

/// One daemon we started.
struct Daemon {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

/// The temp dir, containerd, dockerd and the agent's container: dropping it
/// (also while unwinding) removes the container, stops the daemons by pid,
/// newest first, unmounts what they mounted under the dir and removes it.
struct Node {
    dir: PathBuf,
    daemons: Vec<Daemon>,
    container: Option<String>,
}

impl Node {
    fn start() -> Node {
        let dir = tempfile::Builder::new()
            .prefix("headroom-deploy-")
            .tempdir()
            .unwrap()
            .keep();
        let mut node = Node {
            dir,
            daemons: Vec::new(),
            container: None,
        };
        let sock = node.path("containerd.sock");
        let config = node.path("containerd.toml");
        fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\n[grpc]\n  address = \"{}\"\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  disable_tcp_service = true\n",
                node.path("containerd").display(),
                node.path("containerd-state").display(),
                sock.display()
            ),
        )
        .unwrap();
        node.spawn(
            "containerd",
            Command::new("containerd").arg("--config").arg(&config),
        );
        node.wait("containerd", || {
            Command::new("ctr")
                .arg("-a")
                .arg(&sock)
                .arg("version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
        node.spawn(
            "dockerd",
            Command::new("dockerd")
                .arg("--data-root")
                .arg(node.docker_root())
                .arg("--exec-root")
                .arg(node.path("docker-exec"))
                .arg("-H")
                .arg(node.docker_host())
                .arg("--pidfile")
                .arg(node.path("docker.pid"))
                .args([
                    "--iptables=false",
                    "--bridge=none",
                    "--storage-driver=overlay2",
                ])
                .arg("--containerd")
                .arg(&sock),
        );
        let host = node.docker_host();
        node.wait("dockerd", || {
            Command::new("docker")
                .args(["-H", &host, "version"])
                .output()
                .is_ok_and(|o| o.status.success())
        });
        node
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn docker_root(&self) -> PathBuf {
        self.path("docker")
    }

    fn docker_host(&self) -> String {
        format!("unix://{}", self.path("docker.sock").display())
    }

    /// A `docker` command for our dockerd.
    fn docker(&self) -> Command {
        let mut cmd = Command::new("docker");
        cmd.env("DOCKER_HOST", self.docker_host());
        cmd
    }

    fn spawn(&mut self, name: &'static str, cmd: &mut Command) {
        let log = self.path(&format!("{name}.log"));
        let out = File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        self.daemons.push(Daemon { name, child, log });
    }

    /// Polls `ready` until it holds; panics with the daemon's log when the
    /// daemon dies or the timeout passes.
    fn wait(&mut self, name: &str, mut ready: impl FnMut() -> bool) {
        let started = Instant::now();
        let daemon = self.daemons.iter_mut().find(|d| d.name == name).unwrap();
        while !ready() {
            let exited = daemon.child.try_wait().unwrap();
            if exited.is_some() || started.elapsed() > READY_TIMEOUT {
                let log = fs::read_to_string(&daemon.log).unwrap_or_default();
                panic!("{name} did not answer (exit: {exited:?}); its log:\n{log}");
            }
            sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(name) = self.container.take() {
            let _ = self.docker().args(["rm", "-f", &name]).output();
        }
        while let Some(mut d) = self.daemons.pop() {
            if let Ok(None) = d.child.try_wait() {
                let pid = rustix::process::Pid::from_child(&d.child);
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
                let started = Instant::now();
                while let Ok(None) = d.child.try_wait() {
                    if started.elapsed() > STOP_TIMEOUT {
                        let _ = d.child.kill();
                        let _ = d.child.wait();
                        break;
                    }
                    sleep(Duration::from_millis(100));
                }
            }
        }
        let mut left = mounts_under(&self.dir);
        left.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        for p in &left {
            let _ = Command::new("umount").arg(p).output();
        }
        if mounts_under(&self.dir).is_empty() {
            let _ = fs::remove_dir_all(&self.dir);
        } else {
            // Removing through a live mount would delete someone's files.
            eprintln!("deploy: still mounted, leaving {}", self.dir.display());
        }
    }
}

/// Mount points in /proc/self/mounts under `dir` (no octal escapes: our temp
/// dir has none).
fn mounts_under(dir: &Path) -> Vec<String> {
    let prefix = format!("{}/", dir.display());
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').nth(1))
        .filter(|p| p.starts_with(&prefix))
        .map(str::to_owned)
        .collect()
}

/// `GET path` on `addr` over HTTP/1.0: the status code and the body.
fn get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let code = answer.get(9..12)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n")?.1.to_owned();
    Some((code, body))
}

fn musl_target_installed() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l == "x86_64-unknown-linux-musl")
        })
}

fn image_prerequisites() -> Vec<Need> {
    let mut needs = [
        "containerd",
        "dockerd",
        "runc",
        "ctr",
        "docker",
        "musl-gcc",
        "strip",
        "rustup",
    ]
    .map(Need::tool)
    .to_vec();
    needs.push(Need::root());
    needs.push(Need::new(
        "the Rust target x86_64-unknown-linux-musl",
        Install::Setup("rustup target add x86_64-unknown-linux-musl"),
        musl_target_installed(),
    ));
    needs
}

fn image_is_small_serves_health_and_is_seen_by_status() {
    let mut node = Node::start();
    let tag = format!("headroom-deploy-test:{}", std::process::id());

    let built = run(Command::new(repo().join("scripts/build-image"))
        .arg(&tag)
        .env("DOCKER_HOST", node.docker_host()));
    let id = stdout(&built);
    assert!(id.starts_with("sha256:"), "build-image printed {id:?}");

    let inspect = |format: &str| {
        stdout(&run(node
            .docker()
            .args(["image", "inspect", "--format", format, &tag])))
    };
    let size: u64 = inspect("{{.Size}}").parse().unwrap();
    eprintln!("deploy: image {tag} ({id}) is {size} bytes");
    assert!(size < MAX_IMAGE_BYTES, "image is {size} bytes");
    assert_eq!(inspect("{{.Id}}"), id);
    assert_eq!(inspect("{{.Config.User}}"), "65532:65532");
    assert_eq!(inspect("{{len .RootFS.Layers}}"), "1");
    // Nothing but the binary: no shell to run.
    let shell = node
        .docker()
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "/bin/sh",
            &tag,
        ])
        .output()
        .unwrap();
    assert!(!shell.status.success(), "the image has a /bin/sh");

    let listen = format!("127.0.0.1:{}", free_port());
    let name = format!("headroom-deploy-{}", std::process::id());
    node.container = Some(name.clone());
    // Run as the DaemonSet runs it: its user, capabilities and host root.
    let as_daemonset = DaemonSetRun::from_manifest();
    run(node
        .docker()
        .args(["run", "--detach", "--name", &name, "--network", "host"])
        .args(["--read-only", "--security-opt", "no-new-privileges"])
        .args(as_daemonset.args())
        .args(["--env", &format!("HEADROOM_LISTEN={listen}")])
        .args(["--env", "NODE_NAME=deploy-test"])
        // The private dockerd's root, a host path the agent reads after
        // entering the host root (the node's own Docker, if any, would be
        // discovered otherwise).
        .arg("--env")
        .arg(format!(
            "HEADROOM_DOCKER_ROOT={}",
            node.docker_root().display()
        ))
        .arg(&tag));
    let started = Instant::now();
    let health = loop {
        match get(&listen, "/healthz") {
            Some(answer) => break answer,
            None if started.elapsed() > READY_TIMEOUT => {
                let logs = node.docker().args(["logs", &name]).output().unwrap();
                panic!(
                    "the agent never answered on {listen}; its logs:\n{}",
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            None => sleep(Duration::from_millis(200)),
        }
    };
    assert_eq!(health.0, 200, "/healthz: {health:?}");
    // /metrics answers 503 until the first full inventory: wait for /readyz.
    while get(&listen, "/readyz").is_none_or(|(code, _)| code != 200) {
        assert!(
            started.elapsed() < READY_TIMEOUT,
            "the agent never got ready"
        );
        sleep(Duration::from_millis(200));
    }
    let (code, metrics) = get(&listen, "/metrics").unwrap();
    assert_eq!(code, 200, "/metrics: {metrics}");
    assert!(metrics.contains("# TYPE headroom_"), "/metrics: {metrics}");
    assert!(metrics.trim_end().ends_with("# EOF"), "/metrics: {metrics}");

    the_chrooted_agent_reads_the_host(&listen, &id);

    // Exit 0, 1 or 2 is a verdict on the host's disk, 3 an error.
    let status = Command::new(env!("CARGO_BIN_EXE_headroom"))
        .args(["status", "--json", "--local", "--docker-root"])
        .arg(node.docker_root())
        .args(["--containerd-address", "/nonexistent"])
        .arg("--kubelet-root")
        .arg(&node.dir)
        .output()
        .unwrap();
    assert!(
        matches!(status.status.code(), Some(0..=2)),
        "headroom status failed ({}): {}",
        status.status,
        String::from_utf8_lossy(&status.stderr)
    );
    let status: Status = serde_json::from_slice(&status.stdout).unwrap();
    let ours = status
        .images
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("headroom status does not list {id}: {:#?}", status.images));
    let qualified = format!("docker.io/library/{tag}");
    assert!(
        ours.refs.iter().any(|r| *r == tag || *r == qualified),
        "{id} is listed without {tag}: {ours:?}"
    );
}

/// The `docker run` settings the DaemonSet's pod spec gives the agent.
struct DaemonSetRun {
    user: String,
    caps: Vec<String>,
    host_root: String,
}

impl DaemonSetRun {
    fn from_manifest() -> DaemonSetRun {
        let ds = yaml("daemonset.yaml");
        let pod = at(&ds, "spec.template.spec");
        let c = at(pod, "containers.0");
        let env = c["env"].as_sequence().unwrap();
        let host_root = env
            .iter()
            .find(|e| e["name"] == "HEADROOM_HOST_ROOT")
            .and_then(|e| e["value"].as_str())
            .expect("the DaemonSet sets HEADROOM_HOST_ROOT")
            .to_owned();
        let caps = at(c, "securityContext.capabilities.add")
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        let user = at(pod, "securityContext.runAsUser")
            .as_u64()
            .unwrap()
            .to_string();
        DaemonSetRun {
            user,
            caps,
            host_root,
        }
    }

    /// The user, every capability dropped but the DaemonSet's, and the
    /// host's / read-only at its host root. Without the DaemonSet's
    /// HostToContainer (rslave) propagation: dockerd refuses it where / is
    /// not a shared mount (this sandbox; systemd makes it shared on nodes),
    /// and this test adds no mount after the start.
    fn args(&self) -> Vec<String> {
        let mut args = vec![
            "--user".into(),
            self.user.clone(),
            "--cap-drop".into(),
            "ALL".into(),
        ];
        for cap in &self.caps {
            args.extend(["--cap-add".into(), cap.clone()]);
        }
        args.extend([
            "--volume".into(),
            format!("/:{}:ro", self.host_root),
            "--env".into(),
            format!("HEADROOM_HOST_ROOT={}", self.host_root),
        ]);
        args
    }
}

/// The agent in the container, chrooted into the host's root, lists the
/// image in the private dockerd's store by its host path, and found a
/// containerd by reading the host's processes: the socket it names exists
/// on the host.
fn the_chrooted_agent_reads_the_host(listen: &str, id: &str) {
    let started = Instant::now();
    let status: Status = loop {
        let doc = get(listen, "/api/v1/status")
            .filter(|(code, _)| *code == 200)
            .and_then(|(_, body)| serde_json::from_str::<Status>(&body).ok());
        match doc {
            Some(s) if s.images.iter().any(|i| i.id == id) => break s,
            _ if started.elapsed() > READY_TIMEOUT => {
                panic!("the agent in the container never listed {id}: {doc:#?}")
            }
            _ => sleep(Duration::from_millis(500)),
        }
    };
    let path = |key: &str| {
        status
            .layout
            .paths
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("no {key} in {:#?}", status.layout))
            .clone()
    };
    let address = path("containerd_address");
    assert_eq!(
        serde_json::to_value(address.origin).unwrap(),
        "discovered",
        "{address:?}"
    );
    assert!(
        std::path::Path::new(&address.path).exists(),
        "the discovered socket is not on the host: {address:?}"
    );
}
