//! The registry client against a real `docker-registry` on loopback (images
//! built offline with umoci and busybox, pushed with skopeo as OCI, as
//! Docker schema 2 and as a multi-arch index; oracles: `skopeo inspect`,
//! coreutils `sha256sum`, `gzip -dc`), and against in-process fake
//! registries for the Bearer/Basic flows, redirects and failures.
//!
//! Without those tools the real-registry test is ignored with a message,
//! except under CI (env `CI` set), where it fails (tests/support).

mod support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::Router;
use base64::Engine as _;
use headroom::registry::sizing::{size_layer, Fallback, SAMPLE_BYTES};
use headroom::registry::{
    connect, resolve, ByteRange, Credentials, Error, ErrorClass, Options, Platform, Reference,
    ResolvedImage, ResolvedLayer,
};
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use serde_json::{json, Value};
use support::{free_port, output_of, trial, Need};

// ---------------------------------------------------------------- helpers

fn main() {
    let real_registry = [
        "docker-registry",
        "umoci",
        "skopeo",
        "/bin/busybox",
        "gzip",
        "sha256sum",
    ]
    .map(Need::tool);
    support::main(vec![
        trial!(a_real_registry_resolves_as_skopeo_sees_it).needs(&real_registry),
        trial!(bearer_challenge_fetches_one_token_for_the_repository_scope),
        trial!(credentials_go_to_the_token_realm_or_a_basic_challenge),
        trial!(fault_credentials_never_follow_a_redirect_to_another_host),
        trial!(fault_plain_http_is_refused_off_loopback_before_any_connection),
        trial!(fault_altered_bytes_are_a_digest_mismatch),
        trial!(fault_unknown_tags_unsupported_and_oversized_documents_are_named),
        trial!(fault_streamed_oversize_bodies_silence_and_closed_ports_fail_cleanly),
        trial!(blob_ranges_are_honoured_through_redirects_or_cut_at_the_length_asked),
        trial!(layers_are_sized_from_their_blobs_or_fall_back_saying_why)
            .needs(&["tar", "du"].map(Need::tool)),
        trial!(fault_refused_and_ignored_ranges_never_read_a_whole_layer),
        trial!(credentials_come_from_a_docker_config_or_a_credential_helper),
        trial!(fault_a_broken_credentials_file_is_named_not_skipped),
        trial!(tls_trusts_the_ca_given_for_the_registry_and_fails_without_it),
        trial!(fault_unresolvable_names_and_closed_ports_have_their_own_class),
    ]);
}

/// `sha256:<hex>` of `bytes` per coreutils `sha256sum` (the oracle).
fn sha256sum(bytes: &[u8]) -> String {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

/// Chain IDs of `diff_ids` computed with `sha256sum`.
fn chain_ids_oracle(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for diff in diff_ids {
        let next = match out.last() {
            None => diff.clone(),
            Some(parent) => sha256sum(format!("{parent} {diff}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// The digest of the uncompressed contents of a gzip file (`gzip -dc | sha256sum`).
fn gunzipped_digest(path: &Path) -> String {
    let out = Command::new("gzip").arg("-dc").arg(path).output().unwrap();
    assert!(out.status.success(), "gzip -dc {}", path.display());
    sha256sum(&out.stdout)
}

fn parse(reference: &str) -> Reference {
    reference.parse().unwrap()
}

fn plain() -> Options {
    Options {
        insecure_plain_http: true,
        timeout: Duration::from_secs(10),
        ..Options::default()
    }
}

// ------------------------------------------------- a real docker-registry

/// A `docker-registry` child on loopback, killed by its pid on drop (also
/// when the test fails).
struct RealRegistry {
    child: Child,
    host: String,
    log: PathBuf,
}

impl RealRegistry {
    fn start(dir: &Path) -> Self {
        let port = free_port();
        let config = dir.join("registry.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog: {{level: warn}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
                dir.join("registry").display()
            ),
        )
        .unwrap();
        let log = dir.join("registry.log");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(std::fs::File::create(dir.join("registry.err")).unwrap())
            .spawn()
            .unwrap();
        let mut registry = RealRegistry {
            child,
            host: format!("127.0.0.1:{port}"),
            log,
        };
        registry.wait_ready();
        registry
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!(
                    "docker-registry exited ({status}); see {}",
                    self.log.display()
                );
            }
            if TcpStream::connect(&self.host).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!(
            "docker-registry did not listen on {} within 15 s",
            self.host
        );
    }
}

impl Drop for RealRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds, in the OCI layout `oci`, image `amd` (busybox layer + one file,
/// linux/amd64), image `arm` (one layer, linux/arm64/v8) and an index
/// `multi` holding both.
fn build_images(dir: &Path) {
    output_of(dir, "umoci", &["init", "--layout", "oci"]);
    let layer = |image: &str, edit: &dyn Fn(&Path)| {
        let bundle = dir.join("bundle");
        output_of(
            dir,
            "umoci",
            &["unpack", "--rootless", "--image", image, "bundle"],
        );
        edit(&bundle.join("rootfs"));
        output_of(dir, "umoci", &["repack", "--image", image, "bundle"]);
        std::fs::remove_dir_all(&bundle).unwrap();
    };
    output_of(dir, "umoci", &["new", "--image", "oci:amd"]);
    layer("oci:amd", &|rootfs| {
        std::fs::create_dir_all(rootfs.join("bin")).unwrap();
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).unwrap();
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
    });
    layer("oci:amd", &|rootfs| {
        std::fs::write(rootfs.join("hello"), "hello\n").unwrap()
    });
    output_of(
        dir,
        "umoci",
        &["config", "--image", "oci:amd", "--config.cmd", "/bin/sh"],
    );
    output_of(dir, "umoci", &["new", "--image", "oci:arm"]);
    output_of(
        dir,
        "umoci",
        &["config", "--image", "oci:arm", "--architecture", "arm64"],
    );
    layer("oci:arm", &|rootfs| {
        std::fs::write(rootfs.join("arm"), "arm\n").unwrap()
    });
    write_index(&dir.join("oci"));
}

/// Adds to the layout an OCI index `multi` of `amd` and `arm`.
fn write_index(layout: &Path) {
    let index_path = layout.join("index.json");
    let mut top: Value = serde_json::from_slice(&std::fs::read(&index_path).unwrap()).unwrap();
    let entry = |name: &str| -> Value {
        let entries = top["manifests"].as_array().unwrap();
        let found = entries
            .iter()
            .find(|e| e["annotations"]["org.opencontainers.image.ref.name"] == name)
            .unwrap();
        json!({"mediaType": found["mediaType"], "digest": found["digest"], "size": found["size"]})
    };
    let (mut amd, mut arm) = (entry("amd"), entry("arm"));
    amd["platform"] = json!({"os": "linux", "architecture": "amd64"});
    arm["platform"] = json!({"os": "linux", "architecture": "arm64", "variant": "v8"});
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [arm, amd],
    }))
    .unwrap();
    let digest = sha256sum(&index);
    std::fs::write(layout.join("blobs/sha256").join(&digest[7..]), &index).unwrap();
    top["manifests"].as_array_mut().unwrap().push(json!({
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "digest": digest,
        "size": index.len(),
        "annotations": {"org.opencontainers.image.ref.name": "multi"},
    }));
    std::fs::write(index_path, serde_json::to_vec(&top).unwrap()).unwrap();
}

/// `skopeo inspect --raw [--config]` of `reference` over plain HTTP.
fn skopeo_raw(dir: &Path, reference: &str, config: bool) -> Vec<u8> {
    let target = format!("docker://{reference}");
    let mut args = vec!["inspect", "--tls-verify=false", "--raw"];
    if config {
        args.push("--config");
    }
    args.push(&target);
    output_of(dir, "skopeo", &args)
}

/// Checks `image` against skopeo's view of `reference`, sha256sum, and
/// the layer blobs of the layout (`gzip -dc | sha256sum` = diff ID).
fn assert_matches_skopeo(dir: &Path, reference: &str, image: &ResolvedImage) {
    let raw = skopeo_raw(dir, reference, false);
    assert_eq!(image.manifest_digest, sha256sum(&raw), "{reference}");
    let manifest: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(
        image.config_digest, manifest["config"]["digest"],
        "{reference}"
    );
    let config_raw = skopeo_raw(dir, reference, true);
    assert_eq!(image.config_digest, sha256sum(&config_raw), "{reference}");
    let config: Value = serde_json::from_slice(&config_raw).unwrap();
    let diff_ids: Vec<String> =
        serde_json::from_value(config["rootfs"]["diff_ids"].clone()).unwrap();
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(image.layers.len(), layers.len(), "{reference}");
    for ((got, want), diff_id) in image.layers.iter().zip(layers).zip(&diff_ids) {
        assert_eq!(got.digest, want["digest"]);
        assert_eq!(got.compressed_size, want["size"].as_u64().unwrap());
        assert_eq!(got.media_type, want["mediaType"]);
        assert_eq!(&got.diff_id, diff_id);
        let blob = dir.join("oci/blobs/sha256").join(&got.digest[7..]);
        assert_eq!(got.diff_id, gunzipped_digest(&blob), "{}", blob.display());
    }
    assert_eq!(image.chain_ids, chain_ids_oracle(&diff_ids), "{reference}");
    assert_eq!(image.platform.os, config["os"]);
    assert_eq!(image.platform.architecture, config["architecture"]);
}

fn a_real_registry_resolves_as_skopeo_sees_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let registry = RealRegistry::start(dir);
    let host = registry.host.as_str();
    build_images(dir);
    let push = |source: &str, target: &str, extra: &[&str]| {
        let dest = format!("docker://{host}/{target}");
        let mut args = vec!["copy", "--quiet", "--dest-tls-verify=false"];
        args.extend(extra);
        args.extend([source, dest.as_str()]);
        output_of(dir, "skopeo", &args);
    };
    push("oci:oci:amd", "demo/app:oci", &[]);
    push("oci:oci:amd", "demo/app:v2s2", &["--format", "v2s2"]);
    push("oci:oci:multi", "demo/multi:1", &["--all"]);

    // One image as an OCI manifest and as Docker schema 2.
    for (tag, media_type) in [
        ("oci", "application/vnd.oci.image.manifest.v1+json"),
        (
            "v2s2",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let reference = format!("{host}/demo/app:{tag}");
        let image = resolve(&parse(&reference), &plain()).unwrap();
        assert_eq!(image.manifest_media_type, media_type);
        assert_eq!(image.index_digest, None);
        assert_eq!(image.layers.len(), 2);
        assert_matches_skopeo(dir, &reference, &image);
        // Pinned by digest (with and without the tag), the same image.
        for pinned in [
            format!("{reference}@{}", image.manifest_digest),
            format!("{host}/demo/app@{}", image.manifest_digest),
        ] {
            let again = resolve(&parse(&pinned), &plain()).unwrap();
            assert_eq!(
                (&again.manifest_digest, &again.chain_ids),
                (&image.manifest_digest, &image.chain_ids)
            );
        }
    }

    // The multi-arch index: linux/amd64 by default, arm64 when asked.
    let reference = format!("{host}/demo/multi:1");
    let raw_index = skopeo_raw(dir, &reference, false);
    let index: Value = serde_json::from_slice(&raw_index).unwrap();
    let entry_for = |arch: &str| {
        let entries = index["manifests"].as_array().unwrap();
        let entry = entries
            .iter()
            .find(|e| e["platform"]["architecture"] == arch)
            .unwrap();
        entry["digest"].as_str().unwrap().to_string()
    };
    let amd = resolve(&parse(&reference), &plain()).unwrap();
    assert_eq!(
        amd.index_digest.as_deref(),
        Some(sha256sum(&raw_index).as_str())
    );
    assert_eq!(amd.manifest_digest, entry_for("amd64"));
    assert_matches_skopeo(
        dir,
        &format!("{host}/demo/multi@{}", amd.manifest_digest),
        &amd,
    );
    let arm64 = Options {
        platform: "linux/arm64".parse().unwrap(),
        ..plain()
    };
    let arm = resolve(&parse(&reference), &arm64).unwrap();
    assert_eq!(arm.manifest_digest, entry_for("arm64"));
    assert_eq!(arm.platform.architecture, "arm64");
    assert_matches_skopeo(
        dir,
        &format!("{host}/demo/multi@{}", arm.manifest_digest),
        &arm,
    );
    let by_index = resolve(
        &parse(&format!("{host}/demo/multi@{}", sha256sum(&raw_index))),
        &arm64,
    )
    .unwrap();
    assert_eq!(
        by_index,
        ResolvedImage {
            reference: by_index.reference.clone(),
            ..arm
        }
    );

    // What the registry does not have, or cannot offer.
    let s390x = Options {
        platform: Platform {
            os: "linux".into(),
            architecture: "s390x".into(),
            variant: None,
        },
        ..plain()
    };
    let err = resolve(&parse(&reference), &s390x).unwrap_err();
    assert!(
        matches!(&err, Error::NoPlatform { offered, .. } if offered == "linux/arm64/v8, linux/amd64"),
        "{err}"
    );
    let err = resolve(&parse(&format!("{host}/demo/app:nope")), &plain()).unwrap_err();
    let want_url = format!("http://{host}/v2/demo/app/manifests/nope");
    assert!(
        matches!(&err, Error::ManifestUnknown { url, reference, .. } if *url == want_url && reference.ends_with("demo/app:nope")),
        "{err}"
    );
    let absent = format!("{host}/demo/app@sha256:{}", "0".repeat(64));
    assert!(matches!(
        resolve(&parse(&absent), &plain()),
        Err(Error::ManifestUnknown { .. })
    ));

    // HTTPS is the default: this registry speaks plain HTTP only.
    let err = resolve(&parse(&format!("{host}/demo/app:oci")), &Options::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Tls { url, host: h, .. } if url.starts_with("https://") && h == host),
        "{err}"
    );
    drop(registry);
}

// ------------------------------------------------ in-process fake registries

/// How the fake guards `/v2/`.
#[derive(Clone, Copy, PartialEq)]
enum Gate {
    /// No authentication.
    Open,
    /// Bearer tokens from `/token`; `scoped`: the challenge names the scope.
    Bearer { scoped: bool },
    /// Basic credentials `user:secret`.
    Basic,
}

/// What a fake registry serves and demands.
struct FakeSpec {
    gate: Gate,
    /// The JSON field the token is issued in (`token` or `access_token`).
    token_field: &'static str,
    /// Basic credentials the token realm demands, if any.
    realm_credentials: Option<&'static str>,
    /// The realm the challenge names; default this fake's `/token`.
    realm: Option<String>,
    /// Manifests by tag or digest: (content type, body, Docker-Content-Digest).
    manifests: HashMap<String, (String, Vec<u8>, Option<String>)>,
    /// Blobs by digest.
    blobs: HashMap<String, Vec<u8>>,
    /// When set, blob requests are redirected to `<base>/storage/<digest>`.
    redirect_blobs: Option<String>,
    /// What a blob request with a `Range` gets.
    ranges: Ranges,
}

/// How a fake answers a `Range`.
#[derive(Clone, Copy, PartialEq)]
enum Ranges {
    /// 206 with the bytes and a `Content-Range`.
    Honour,
    /// 200 with the whole blob.
    Ignore,
    /// 416.
    Refuse,
}

impl FakeSpec {
    fn new(gate: Gate) -> Self {
        FakeSpec {
            gate,
            token_field: "token",
            realm_credentials: None,
            realm: None,
            manifests: HashMap::new(),
            blobs: HashMap::new(),
            redirect_blobs: None,
            ranges: Ranges::Honour,
        }
    }
}

/// A request the fake saw.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    query: String,
    authorization: Option<String>,
    range: Option<String>,
    status: u16,
}

struct Shared {
    spec: FakeSpec,
    base: String,
    seen: Mutex<Vec<Seen>>,
}

/// A fake registry on `ip`:0, served by its own tokio runtime (dropped,
/// with its tasks, at the end of the test).
struct Fake {
    addr: SocketAddr,
    shared: Arc<Shared>,
    _runtime: tokio::runtime::Runtime,
}

const TOKEN: &str = "tok-3f9a";
const SERVICE: &str = "fake-registry";
const SCOPE: &str = "repository:demo/app:pull";
const USER: &str = "user";
const SECRET: &str = "secret";

impl Fake {
    fn start(ip: &str, spec: FakeSpec) -> Self {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            spec,
            base: format!("http://{addr}"),
            seen: Mutex::new(Vec::new()),
        });
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            while let Ok((stream, _)) = listener.accept().await {
                let service = TowerToHyperService::new(app.clone());
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), service));
            }
        });
        Fake {
            addr,
            shared,
            _runtime: runtime,
        }
    }

    fn reference(&self, target: &str) -> Reference {
        parse(&format!("{}/demo/app{target}", self.addr))
    }

    fn seen(&self) -> Vec<Seen> {
        self.shared.seen.lock().unwrap().clone()
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let authorization = request
        .headers()
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_string());
    let range = request
        .headers()
        .get("range")
        .map(|v| v.to_str().unwrap().to_string());
    let asked = Asked {
        path: &path,
        query: &query,
        authorization: authorization.as_deref(),
        range: range.as_deref(),
    };
    let (status, headers, body) = answer(&shared, &asked);
    shared.seen.lock().unwrap().push(Seen {
        path,
        query,
        authorization,
        range,
        status,
    });
    let mut response = Response::builder().status(status);
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(Body::from(body)).unwrap()
}

type Answer = (u16, Vec<(&'static str, String)>, Vec<u8>);

fn registry_error(status: u16, code: &str) -> Answer {
    let body =
        json!({"errors": [{"code": code, "message": code.to_lowercase().replace('_', " ")}]});
    (
        status,
        vec![("content-type", "application/json".into())],
        body.to_string().into_bytes(),
    )
}

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
}

/// What a request asked the fake.
struct Asked<'a> {
    path: &'a str,
    query: &'a str,
    authorization: Option<&'a str>,
    range: Option<&'a str>,
}

fn answer(shared: &Shared, asked: &Asked<'_>) -> Answer {
    let spec = &shared.spec;
    let (path, authorization) = (asked.path, asked.authorization);
    if path == "/token" {
        return token(spec, asked.query, authorization);
    }
    if let Some(digest) = path.strip_prefix("/storage/") {
        return blob(spec, digest, asked.range);
    }
    let Some(rest) = path.strip_prefix("/v2/demo/app/") else {
        return registry_error(404, "NAME_UNKNOWN");
    };
    let challenge = match spec.gate {
        Gate::Open => None,
        Gate::Bearer { .. } if authorization == Some(&format!("Bearer {TOKEN}")) => None,
        Gate::Basic if authorization == Some(&basic(&format!("{USER}:{SECRET}"))) => None,
        Gate::Bearer { scoped } => {
            let realm = spec
                .realm
                .clone()
                .unwrap_or(format!("{}/token", shared.base));
            let scope = if scoped {
                format!(",scope=\"{SCOPE}\"")
            } else {
                String::new()
            };
            Some(format!(
                "Bearer realm=\"{realm}\",service=\"{SERVICE}\"{scope}"
            ))
        }
        Gate::Basic => Some("Basic realm=\"fake\"".to_string()),
    };
    if let Some(challenge) = challenge {
        let (status, mut headers, body) = registry_error(401, "UNAUTHORIZED");
        headers.push(("www-authenticate", challenge));
        return (status, headers, body);
    }
    if let Some(target) = rest.strip_prefix("manifests/") {
        return match spec.manifests.get(target) {
            Some((content_type, body, digest)) => {
                let mut headers = vec![("content-type", content_type.clone())];
                headers.extend(digest.clone().map(|d| ("docker-content-digest", d)));
                (200, headers, body.clone())
            }
            None => registry_error(404, "MANIFEST_UNKNOWN"),
        };
    }
    match (rest.strip_prefix("blobs/"), &spec.redirect_blobs) {
        (Some(digest), Some(base)) => (
            307,
            vec![("location", format!("{base}/storage/{digest}"))],
            Vec::new(),
        ),
        (Some(digest), None) => blob(spec, digest, asked.range),
        (None, _) => registry_error(404, "NAME_UNKNOWN"),
    }
}

fn blob(spec: &FakeSpec, digest: &str, range: Option<&str>) -> Answer {
    let Some(body) = spec.blobs.get(digest) else {
        return registry_error(404, "BLOB_UNKNOWN");
    };
    let octets = ("content-type", "application/octet-stream".to_string());
    match (range, spec.ranges) {
        (Some(_), Ranges::Refuse) => registry_error(416, "RANGE_INVALID"),
        (Some(range), Ranges::Honour) => {
            let (first, last) = byte_range(range, body.len());
            let content_range = format!("bytes {first}-{last}/{}", body.len());
            (
                206,
                vec![octets, ("content-range", content_range)],
                body[first..=last].to_vec(),
            )
        }
        _ => (200, vec![octets], body.clone()),
    }
}

/// The first and last byte of `bytes=a-b` or `bytes=-n` in a blob of `len`.
fn byte_range(range: &str, len: usize) -> (usize, usize) {
    let spec = range.strip_prefix("bytes=").unwrap();
    let (first, last) = spec.split_once('-').unwrap();
    if first.is_empty() {
        (len - last.parse::<usize>().unwrap(), len - 1)
    } else {
        let last = last.parse::<usize>().unwrap().min(len - 1);
        (first.parse().unwrap(), last)
    }
}

/// The token realm: issues [`TOKEN`] for the right service and scope, with
/// the right credentials if it demands some.
fn token(spec: &FakeSpec, query: &str, authorization: Option<&str>) -> Answer {
    let params: HashMap<String, String> = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (percent_decode(k), percent_decode(v)))
        .collect();
    if let Some(credentials) = spec.realm_credentials {
        if authorization != Some(basic(credentials).as_str()) {
            return registry_error(401, "UNAUTHORIZED");
        }
    }
    let wanted = (Some(SERVICE), Some(SCOPE));
    if (
        params.get("service").map(String::as_str),
        params.get("scope").map(String::as_str),
    ) != wanted
    {
        return registry_error(400, "DENIED");
    }
    let body = json!({ spec.token_field: TOKEN, "expires_in": 300 });
    (
        200,
        vec![("content-type", "application/json".into())],
        body.to_string().into_bytes(),
    )
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A two-layer image: its manifest, config and the digests, built here
/// and hashed with `sha256sum`.
struct Image {
    manifest: Vec<u8>,
    manifest_digest: String,
    config: Vec<u8>,
    config_digest: String,
    layers: Vec<(String, u64)>,
    diff_ids: Vec<String>,
    /// Each layer's annotations in the manifest.
    annotations: Vec<std::collections::BTreeMap<String, String>>,
}

fn image() -> Image {
    let diff_ids = vec![sha256sum(b"layer one tar"), sha256sum(b"layer two tar")];
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let config_digest = sha256sum(&config);
    let layers = vec![(sha256sum(b"gz one"), 1234_u64), (sha256sum(b"gz two"), 99)];
    let toc = [(
        "io.github.containers.zstd-chunked.manifest-position".to_string(),
        "1000:200:800:1".to_string(),
    )];
    let annotations = vec![toc.into_iter().collect(), Default::default()];
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config.len()},
        "layers": layers.iter().zip(&annotations).map(|((d, s), a)| json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd", "digest": d, "size": s,
            "annotations": a,
        })).collect::<Vec<_>>(),
    }))
    .unwrap();
    Image {
        manifest_digest: sha256sum(&manifest),
        manifest,
        config,
        config_digest,
        layers,
        diff_ids,
        annotations,
    }
}

/// A fake behind `gate` serving [`image`] as `demo/app:1` (honest headers).
fn serving(gate: Gate, image: &Image) -> FakeSpec {
    let mut spec = FakeSpec::new(gate);
    let doc = (
        "application/vnd.oci.image.manifest.v1+json".to_string(),
        image.manifest.clone(),
        Some(image.manifest_digest.clone()),
    );
    spec.manifests.insert("1".into(), doc.clone());
    spec.manifests.insert(image.manifest_digest.clone(), doc);
    spec.blobs
        .insert(image.config_digest.clone(), image.config.clone());
    spec
}

fn assert_is(image: &Image, resolved: &ResolvedImage) {
    assert_eq!(resolved.manifest_digest, image.manifest_digest);
    assert_eq!(resolved.config_digest, image.config_digest);
    let got: Vec<(String, u64, String)> = resolved
        .layers
        .iter()
        .map(|l| (l.digest.clone(), l.compressed_size, l.diff_id.clone()))
        .collect();
    let want: Vec<(String, u64, String)> = image
        .layers
        .iter()
        .zip(&image.diff_ids)
        .map(|((d, s), diff)| (d.clone(), *s, diff.clone()))
        .collect();
    assert_eq!(got, want);
    assert_eq!(resolved.chain_ids, chain_ids_oracle(&image.diff_ids));
}

fn bearer_challenge_fetches_one_token_for_the_repository_scope() {
    let image = image();
    for (scoped, field) in [(true, "token"), (false, "access_token")] {
        let mut spec = serving(Gate::Bearer { scoped }, &image);
        spec.token_field = field;
        let fake = Fake::start("127.0.0.1", spec);
        let resolved = resolve(&fake.reference(":1"), &plain()).unwrap();
        assert_is(&image, &resolved);
        let seen = fake.seen();
        let summary: Vec<(&str, u16)> = seen.iter().map(|s| (s.path.as_str(), s.status)).collect();
        let config = format!("/v2/demo/app/blobs/{}", image.config_digest);
        assert_eq!(
            summary,
            [
                ("/v2/demo/app/manifests/1", 401),
                ("/token", 200),
                ("/v2/demo/app/manifests/1", 200),
                (config.as_str(), 200)
            ],
            "scoped challenge: {scoped}"
        );
        // Anonymous at the realm; the token on every later registry call.
        assert_eq!(seen[1].authorization, None);
        assert!(
            seen[1].query.contains("scope=repository"),
            "{}",
            seen[1].query
        );
        for s in &seen[2..] {
            assert_eq!(
                s.authorization.as_deref(),
                Some(format!("Bearer {TOKEN}").as_str())
            );
        }
    }
}

fn credentials_go_to_the_token_realm_or_a_basic_challenge() {
    let image = image();
    let credentials = Options {
        credentials: Some(Credentials {
            username: USER.into(),
            password: SECRET.into(),
        }),
        ..plain()
    };
    let mut spec = serving(Gate::Bearer { scoped: true }, &image);
    spec.realm_credentials = Some("user:secret");
    let fake = Fake::start("127.0.0.1", spec);
    let err = resolve(&fake.reference(":1"), &plain()).unwrap_err();
    let realm = format!("http://{}/token", fake.addr);
    assert!(
        matches!(&err, Error::Unauthorized { url, reason } if *url == realm && reason.contains("anonymously") && reason.contains("401")),
        "{err}"
    );
    assert_is(
        &image,
        &resolve(&fake.reference(":1"), &credentials).unwrap(),
    );
    let seen = fake.seen();
    let token_calls: Vec<&Seen> = seen.iter().filter(|s| s.path == "/token").collect();
    assert_eq!(
        token_calls.last().unwrap().authorization,
        Some(basic("user:secret"))
    );

    let fake = Fake::start("127.0.0.1", serving(Gate::Basic, &image));
    let err = resolve(&fake.reference(":1"), &plain()).unwrap_err();
    assert!(
        matches!(&err, Error::Unauthorized { reason, .. } if reason.contains("Basic credentials")),
        "{err}"
    );
    assert_is(
        &image,
        &resolve(&fake.reference(":1"), &credentials).unwrap(),
    );
    let wrong = Options {
        credentials: Some(Credentials {
            username: USER.into(),
            password: "wrong".into(),
        }),
        ..plain()
    };
    let err = resolve(&fake.reference(":1"), &wrong).unwrap_err();
    assert!(
        matches!(&err, Error::Unauthorized { reason, .. } if reason.contains("HTTP 401")),
        "{err}"
    );
}

fn fault_credentials_never_follow_a_redirect_to_another_host() {
    let image = image();
    let mut storage_spec = FakeSpec::new(Gate::Open);
    storage_spec
        .blobs
        .insert(image.config_digest.clone(), image.config.clone());
    let storage = Fake::start("127.0.0.2", storage_spec);
    let mut spec = serving(Gate::Bearer { scoped: true }, &image);
    spec.blobs.clear();
    spec.redirect_blobs = Some(format!("http://{}", storage.addr));
    let fake = Fake::start("127.0.0.1", spec);
    assert_is(&image, &resolve(&fake.reference(":1"), &plain()).unwrap());
    let seen = storage.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].path, format!("/storage/{}", image.config_digest));
    assert_eq!(seen[0].authorization, None);
}

fn fault_plain_http_is_refused_off_loopback_before_any_connection() {
    // 192.0.2.0/24 (TEST-NET-1) never answers: an error within a second
    // can only be a refusal made before connecting.
    let started = Instant::now();
    let err = resolve(&parse("192.0.2.1:5000/demo/app:1"), &plain()).unwrap_err();
    assert!(
        matches!(&err, Error::PlainHttpRefused { url } if url == "http://192.0.2.1:5000/v2/demo/app/"),
        "{err}"
    );
    assert!(err.to_string().contains("loopback"), "{err}");
    // A loopback registry cannot send the client to a plain-HTTP realm elsewhere.
    let image = image();
    let mut spec = serving(Gate::Bearer { scoped: true }, &image);
    spec.realm = Some("http://192.0.2.1/token".into());
    let fake = Fake::start("127.0.0.1", spec);
    let err = resolve(&fake.reference(":1"), &plain()).unwrap_err();
    assert!(
        matches!(&err, Error::PlainHttpRefused { url } if url == "http://192.0.2.1/token"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

fn fault_altered_bytes_are_a_digest_mismatch() {
    let image = image();
    let mut altered = image.manifest.clone();
    altered.extend_from_slice(b" ");
    let manifest_type = "application/vnd.oci.image.manifest.v1+json".to_string();

    // Asked by digest, served other bytes (no header to give it away).
    let mut spec = serving(Gate::Open, &image);
    spec.manifests.insert(
        image.manifest_digest.clone(),
        (manifest_type.clone(), altered.clone(), None),
    );
    // By tag, with the registry's digest header naming the original.
    spec.manifests.insert(
        "1".into(),
        (
            manifest_type.clone(),
            altered.clone(),
            Some(image.manifest_digest.clone()),
        ),
    );
    // A config blob that is not what its digest says.
    spec.manifests
        .insert("2".into(), (manifest_type, image.manifest.clone(), None));
    spec.blobs
        .insert(image.config_digest.clone(), b"{}".to_vec());
    let fake = Fake::start("127.0.0.1", spec);
    let altered_digest = sha256sum(&altered);
    for (target, what) in [
        (format!("@{}", image.manifest_digest), "digest asked for"),
        (":1".to_string(), "Docker-Content-Digest"),
    ] {
        let err = resolve(&fake.reference(&target), &plain()).unwrap_err();
        assert!(
            matches!(&err, Error::DigestMismatch { expected, actual, what: w, url }
                if *expected == image.manifest_digest && *actual == altered_digest && w.contains(what) && url.contains("/manifests/")),
            "{err}"
        );
    }
    let err = resolve(&fake.reference(":2"), &plain()).unwrap_err();
    assert!(
        matches!(&err, Error::DigestMismatch { expected, actual, url, .. }
            if *expected == image.config_digest && *actual == sha256sum(b"{}") && url.ends_with(&image.config_digest)),
        "{err}"
    );
}

fn fault_unknown_tags_unsupported_and_oversized_documents_are_named() {
    let image = image();
    let mut spec = serving(Gate::Open, &image);
    let schema1 =
        br#"{"schemaVersion":1,"name":"demo/app","tag":"old","fsLayers":[],"history":[]}"#.to_vec();
    let signed = "application/vnd.docker.distribution.manifest.v1+prettyjws".to_string();
    spec.manifests.insert("old".into(), (signed, schema1, None));
    let huge = vec![b' '; 5 << 20];
    spec.manifests.insert(
        "huge".into(),
        (
            "application/vnd.oci.image.manifest.v1+json".into(),
            huge,
            None,
        ),
    );
    let fake = Fake::start("127.0.0.1", spec);

    let err = resolve(&fake.reference(":nope"), &plain()).unwrap_err();
    assert!(
        matches!(&err, Error::ManifestUnknown { url, detail, .. } if url.ends_with("/manifests/nope") && detail.contains("MANIFEST_UNKNOWN")),
        "{err}"
    );
    let err = resolve(&fake.reference(":old"), &plain()).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedMediaType { reason, .. } if reason.contains("schema 1")),
        "{err}"
    );
    let err = resolve(&fake.reference(":huge"), &plain()).unwrap_err();
    assert!(
        matches!(&err, Error::TooLarge { limit, url, .. } if *limit == 4 << 20 && url.ends_with("/manifests/huge")),
        "{err}"
    );
}

/// A raw TCP server on 127.0.0.1 that answers every connection with `reply`
/// (then holds it open for `hold`), on a thread of its own.
fn raw_server(reply: Vec<u8>, hold: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = [0u8; 4096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(&reply);
            std::thread::sleep(hold);
        }
    });
    addr
}

fn fault_streamed_oversize_bodies_silence_and_closed_ports_fail_cleanly() {
    // No Content-Length: the cap must stop the read itself.
    let mut reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n".to_vec();
    reply.extend(vec![b' '; (4 << 20) + 1]);
    let addr = raw_server(reply, Duration::ZERO);
    let err = resolve(&parse(&format!("{addr}/demo/app:1")), &plain()).unwrap_err();
    assert!(matches!(&err, Error::TooLarge { .. }), "{err}");

    // Accepts, never answers: the deadline ends it.
    let silent = raw_server(Vec::new(), Duration::from_secs(30));
    let quick = Options {
        timeout: Duration::from_secs(1),
        ..plain()
    };
    let started = Instant::now();
    let err = resolve(&parse(&format!("{silent}/demo/app:1")), &quick).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        matches!(&err, Error::Connect { url, .. } if url.contains(&silent.to_string())),
        "{err}"
    );

    let closed = free_port();
    let err = resolve(&parse(&format!("127.0.0.1:{closed}/demo/app:1")), &plain()).unwrap_err();
    assert!(
        matches!(&err, Error::Connect { url, .. } if *url == format!("http://127.0.0.1:{closed}/v2/demo/app/manifests/1")),
        "{err}"
    );
}

// ------------------------------------------------------ ranged blob reads

/// A blob of `len` bytes that differ from one offset to the next.
fn patterned(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

fn blob_ranges_are_honoured_through_redirects_or_cut_at_the_length_asked() {
    let image = image();
    let blob = patterned(10_000);
    let digest = sha256sum(&blob);
    // The registry redirects; its storage honours ranges.
    let mut storage_spec = FakeSpec::new(Gate::Open);
    storage_spec.blobs.insert(digest.clone(), blob.clone());
    storage_spec
        .blobs
        .insert(image.config_digest.clone(), image.config.clone());
    let storage = Fake::start("127.0.0.2", storage_spec);
    let mut spec = serving(Gate::Bearer { scoped: true }, &image);
    spec.redirect_blobs = Some(format!("http://{}", storage.addr));
    let fake = Fake::start("127.0.0.1", spec);
    let mut client = connect(&fake.reference(":1"), &plain()).unwrap();
    let cases = [
        (ByteRange::Prefix(64), &blob[..64], "bytes=0-63"),
        (ByteRange::Suffix(8), &blob[9992..], "bytes=-8"),
        (
            ByteRange::Span {
                start: 5000,
                len: 100,
            },
            &blob[5000..5100],
            "bytes=5000-5099",
        ),
    ];
    for (range, want, header) in cases {
        let got = client.blob_range(&digest, range).unwrap();
        assert_eq!(
            (got.bytes.as_slice(), got.honoured),
            (want, true),
            "{range}"
        );
        let seen = storage.seen();
        assert_eq!(seen.last().unwrap().range.as_deref(), Some(header));
        assert_eq!(seen.last().unwrap().authorization, None);
    }
    // One token for the session: the later requests reuse it.
    let tokens = fake.seen().iter().filter(|s| s.path == "/token").count();
    assert_eq!(tokens, 1);
    // The session still resolves, and keeps each layer's annotations.
    let resolved = client.resolve().unwrap();
    assert_is(&image, &resolved);
    let annotations: Vec<_> = resolved
        .layers
        .iter()
        .map(|l| l.annotations.clone())
        .collect();
    assert_eq!(annotations, image.annotations);

    // A registry that ignores ranges: the blob's first bytes, no more.
    let mut spec = FakeSpec::new(Gate::Open);
    spec.blobs.insert(digest.clone(), blob.clone());
    spec.ranges = Ranges::Ignore;
    let fake = Fake::start("127.0.0.1", spec);
    let mut client = connect(&fake.reference(":1"), &plain()).unwrap();
    let got = client.blob_range(&digest, ByteRange::Suffix(8)).unwrap();
    assert_eq!((got.bytes.as_slice(), got.honoured), (&blob[..8], false));
    let got = client.blob_range(&digest, ByteRange::Prefix(100)).unwrap();
    assert_eq!((got.bytes.as_slice(), got.honoured), (&blob[..100], false));
}

fn fault_refused_and_ignored_ranges_never_read_a_whole_layer() {
    let blob = patterned(1000);
    let digest = sha256sum(&blob);
    let mut spec = FakeSpec::new(Gate::Open);
    spec.blobs.insert(digest.clone(), blob);
    spec.ranges = Ranges::Refuse;
    let fake = Fake::start("127.0.0.1", spec);
    let mut client = connect(&fake.reference(":1"), &plain()).unwrap();
    let err = client
        .blob_range(&digest, ByteRange::Prefix(10))
        .unwrap_err();
    let url = format!("http://{}/v2/demo/app/blobs/{digest}", fake.addr);
    assert!(
        matches!(&err, Error::RangeNotSatisfiable { url: u, range, .. } if *u == url && range == "bytes=0-9"),
        "{err}"
    );
    let err = client
        .blob_range("sha256:../../x", ByteRange::Prefix(10))
        .unwrap_err();
    assert!(matches!(&err, Error::BadUrl { .. }), "{err}");

    // 200 with a 16 GiB body, of which 1 MiB is sent and then nothing: a
    // client that read on would wait out its deadline.
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        16_u64 << 30
    )
    .into_bytes();
    reply.extend(patterned(1 << 20));
    let addr = raw_server(reply, Duration::from_secs(30));
    let reference = parse(&format!("{addr}/demo/app:1"));
    let options = Options {
        timeout: Duration::from_secs(20),
        ..plain()
    };
    let started = Instant::now();
    let got = connect(&reference, &options)
        .unwrap()
        .blob_range(&digest, ByteRange::Prefix(4096))
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!((got.bytes, got.honoured), (patterned(4096), false));
}

// ---------------------------------------- credentials, through the binary

/// `headroom check-pull IMAGE --plain-http` on an empty node under `dir`,
/// with `DOCKER_CONFIG` and `HOME` in `dir` and `bin` first on `PATH`.
fn check_pull(dir: &Path, image: &str) -> std::process::Output {
    for sub in ["docker", "containerd", "kubelet", "pods", "home", "bin"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    std::fs::write(dir.join("config.toml"), "").unwrap();
    let path = format!(
        "{}:{}",
        dir.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_headroom"));
    cmd.args(["check-pull", image, "--plain-http", "--json"]);
    for (flag, rel) in [
        ("--docker-root", "docker"),
        ("--containerd-address", "containerd.sock"),
        ("--containerd-root", "containerd"),
        ("--kubelet-root", "kubelet"),
        ("--kubelet-config", "none.yaml"),
        ("--pod-logs", "pods"),
        ("--certs-d", "certs.d"),
    ] {
        cmd.arg(flag).arg(dir.join(rel));
    }
    cmd.args(["--containerd-timeout", "1s"])
        .env("HEADROOM_CONFIG", dir.join("config.toml"))
        .env("DOCKER_CONFIG", dir.join("docker-config"))
        .env("HOME", dir.join("home"))
        .env("PATH", path)
        .output()
        .unwrap()
}

/// Writes `DOCKER_CONFIG/config.json` under `dir`.
fn docker_config(dir: &Path, config: &Value) -> PathBuf {
    let path = dir.join("docker-config/config.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

/// A `docker-credential-test` helper in `dir/bin` that answers `secret`
/// for `server` only.
fn helper(dir: &Path, server: &str, secret: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("bin/docker-credential-test");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let script = format!(
        "#!/bin/sh\n[ \"$1\" = get ] || exit 2\nread -r server\n\
         [ \"$server\" = '{server}' ] || {{ echo 'credentials not found' >&2; exit 1; }}\n\
         printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{secret}\"}}' \"$server\"\n"
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn credentials_come_from_a_docker_config_or_a_credential_helper() {
    let image = image();
    let fake = Fake::start("127.0.0.1", serving(Gate::Basic, &image));
    let host = fake.addr.to_string();
    let reference = format!("{host}/demo/app:1");
    let right = basic(&format!("{USER}:{SECRET}"));

    // `auths`, filed under Docker's `https://host/v1/` form.
    let dir = tempfile::tempdir().unwrap();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{SECRET}"));
    docker_config(
        dir.path(),
        &json!({"auths": {format!("https://{host}/v1/"): {"auth": auth}}}),
    );
    let out = check_pull(dir.path(), &reference);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("cannot resolve"), "{stderr}");
    assert_eq!(
        fake.seen().last().unwrap().authorization,
        Some(right.clone())
    );

    // `credHelpers`: the helper is run with the server's key.
    let dir = tempfile::tempdir().unwrap();
    helper(dir.path(), &host, SECRET);
    let config = docker_config(dir.path(), &json!({"credHelpers": {&host: "test"}}));
    let before = fake.seen().len();
    let out = check_pull(dir.path(), &reference);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("cannot resolve"), "{stderr}");
    let seen = fake.seen();
    assert!(seen[before..]
        .iter()
        .any(|s| s.authorization == Some(right.clone())));

    // A wrong secret: exit 8, naming where the credentials came from.
    helper(dir.path(), &host, "wrong");
    let out = check_pull(dir.path(), &reference);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(8), "{stderr}");
    let source = format!("{} (credHelpers: test)", config.display());
    assert!(stderr.contains(&source), "{stderr}");
    assert!(!stderr.contains("wrong"), "{stderr}");
}

fn fault_a_broken_credentials_file_is_named_not_skipped() {
    let image = image();
    let fake = Fake::start("127.0.0.1", serving(Gate::Basic, &image));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docker-config/config.json");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "{\"auths\": {").unwrap();
    let out = check_pull(dir.path(), &format!("{}/demo/app:1", fake.addr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(fake.seen().is_empty(), "asked the registry anyway");

    // A helper that fails is named too.
    let dir = tempfile::tempdir().unwrap();
    helper(dir.path(), "some.other.host", SECRET);
    docker_config(dir.path(), &json!({"credsStore": "test"}));
    let out = check_pull(dir.path(), &format!("{}/demo/app:1", fake.addr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("credsStore: test"), "{stderr}");
}

// ------------------------------------------------------------------- TLS

/// A CA (its PEM) and a rustls server config for 127.0.0.1 signed by it.
fn tls_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "headroom test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from(leaf.der().to_vec())],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .unwrap();
    (ca.pem(), Arc::new(config))
}

/// A TLS server on 127.0.0.1 that answers every request with `reply`.
fn tls_server(config: Arc<rustls::ServerConfig>, reply: Vec<u8>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let connection = rustls::ServerConnection::new(Arc::clone(&config)).unwrap();
            let mut tls = rustls::StreamOwned::new(connection, stream);
            if tls.read(&mut [0u8; 4096]).is_ok() {
                let _ = tls.write_all(&reply);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    });
    addr
}

fn tls_trusts_the_ca_given_for_the_registry_and_fails_without_it() {
    let (ca_pem, config) = tls_ca();
    let body = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
    let mut reply = format!(
        "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend(body);
    let addr = tls_server(config, reply);
    let reference = parse(&format!("{addr}/demo/app:1"));
    let https = Options {
        timeout: Duration::from_secs(10),
        ..Options::default()
    };
    let err = resolve(&reference, &https).unwrap_err();
    assert!(
        matches!(&err, Error::Tls { host, reason, .. } if *host == addr.to_string() && reason.contains("UnknownIssuer")),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Tls);
    assert!(err.to_string().contains("--ca-file"), "{err}");

    // The CA as --ca-file reads it: now the registry's answer comes through.
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("ca.pem");
    std::fs::write(&pem, &ca_pem).unwrap();
    let trusted = Options {
        ca_certs: headroom::registry::ca::read_pem(&pem).unwrap(),
        ..https
    };
    let err = resolve(&reference, &trusted).unwrap_err();
    assert!(matches!(&err, Error::ManifestUnknown { .. }), "{err}");
    assert_eq!(err.class(), ErrorClass::NotFound);
}

fn fault_unresolvable_names_and_closed_ports_have_their_own_class() {
    let quick = Options {
        timeout: Duration::from_secs(10),
        ..Options::default()
    };
    let err = resolve(&parse("nosuch.invalid/demo/app:1"), &quick).unwrap_err();
    assert!(
        matches!(&err, Error::Resolve { host, .. } if host == "nosuch.invalid"),
        "{err}"
    );
    assert_eq!(err.class(), ErrorClass::Resolution);
    let closed = free_port();
    let err = resolve(&parse(&format!("127.0.0.1:{closed}/demo/app:1")), &quick).unwrap_err();
    assert_eq!(err.class(), ErrorClass::Connection, "{err}");
}

/// A tree of `files` files of 300 B–2 KB of pseudo-random bytes (so gzip
/// cannot shrink it) under `dir`, in a few directories.
fn small_files_tree(dir: &Path, files: u32) {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..files {
        let sub = dir.join(format!("d{}", i % 7));
        std::fs::create_dir_all(&sub).unwrap();
        let len = 300 + (next() % 1700) as usize;
        let bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        std::fs::write(sub.join(format!("f{i}")), bytes).unwrap();
    }
}

/// `du -s -B1` of `dir`.
fn du_bytes(dir: &Path) -> u64 {
    let out = output_of(dir, "du", &["-s", "-B1", "."]);
    let out = String::from_utf8(out).unwrap();
    out.split_whitespace().next().unwrap().parse().unwrap()
}

/// A layer of 3,000 small files (gzip, ~4.5 MB: more than the sample) sized
/// through a fake registry: from the trailer and sampled headers when ranges
/// are honoured (within 5% of `du`), extrapolated and said so when they are
/// ignored, and at the node's ratio, saying why, when they are refused.
fn layers_are_sized_from_their_blobs_or_fall_back_saying_why() {
    let work = tempfile::tempdir().unwrap();
    let tree = work.path().join("tree");
    small_files_tree(&tree, 3000);
    let tar = output_of(&tree, "tar", &["-cf", "-", "."]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&tar).unwrap();
    let blob = gz.finish().unwrap();
    assert!(
        blob.len() as u64 > SAMPLE_BYTES,
        "the blob must be larger than the sample"
    );
    let digest = sha256sum(&blob);
    let layer = ResolvedLayer {
        digest: digest.clone(),
        compressed_size: blob.len() as u64,
        diff_id: sha256sum(&tar),
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
        annotations: Default::default(),
    };
    let fallback = Fallback {
        ratio: 2.5,
        ratio_source: "the default".into(),
        inodes_per_byte: 0.0,
    };
    let real = du_bytes(&tree);
    let sized = |ranges: Ranges| {
        let mut spec = FakeSpec::new(Gate::Open);
        spec.blobs.insert(digest.clone(), blob.clone());
        spec.ranges = ranges;
        let fake = Fake::start("127.0.0.1", spec);
        let mut client = connect(&fake.reference(":1"), &plain()).unwrap();
        size_layer(&mut client, &layer, 4096, &fallback)
    };
    let off = |got: u64, want: u64| (got as f64 - want as f64).abs() / want as f64;

    let honoured = sized(Ranges::Honour);
    assert_eq!(honoured.stream_bytes, tar.len() as u64, "{honoured:?}");
    assert!(
        off(honoured.disk_bytes, real) < 0.05,
        "{honoured:?} vs du {real}"
    );
    assert!(off(honoured.inodes, 3008) < 0.05, "{honoured:?}");
    // Costed in every common block size; small files take less in 1 KiB
    // blocks (a 1 KiB-block node is held to it by the runtimes fleet trial).
    assert_eq!(honoured.disk_bytes_in(4096), honoured.disk_bytes);
    assert!(
        honoured.disk_bytes_in(1024) < honoured.disk_bytes_in(2048)
            && honoured.disk_bytes_in(2048) < honoured.disk_bytes,
        "{honoured:?}"
    );
    assert!(honoured.method.contains("gzip trailer"), "{honoured:?}");
    assert_eq!(honoured.fallback, None);

    let ignored = sized(Ranges::Ignore);
    assert!(
        off(ignored.stream_bytes, tar.len() as u64) < 0.10,
        "{ignored:?}"
    );
    assert!(
        off(ignored.disk_bytes, real) < 0.10,
        "{ignored:?} vs du {real}"
    );
    assert!(!ignored.exact);
    assert!(
        ignored
            .fallback
            .as_deref()
            .unwrap_or("")
            .contains("ignored the range"),
        "{ignored:?}"
    );

    let refused = sized(Ranges::Refuse);
    assert_eq!(
        refused.stream_bytes,
        (blob.len() as f64 * 2.5).round() as u64
    );
    assert!(refused.method.contains("the default"), "{refused:?}");
    assert!(
        refused.fallback.as_deref().unwrap_or("").contains("416"),
        "{refused:?}"
    );
}
