//! Image pulls in flight, told from containerd's content store.
//!
//! A pull writes the manifest first: once committed, it carries the
//! `containerd.io/gc.ref.content.{config,l.<i>}` labels naming its config
//! and layers, and `containerd.io/distribution.source.<registry>=<repo>`
//! naming where it came from. Each layer is then an ingest (`offset` of
//! `total` bytes written) until committed as a blob, and is unpacked into a
//! snapshot named by its chain ID (`extract-<unique> <chain ID>` while
//! being written). The image record is created before the unpack (`ctr`)
//! or after it (CRI). So a manifest is a pull in flight when a layer of it
//! is being downloaded or unpacked, or when no image record reaches it yet
//! and a layer is not unpacked; an ingest no such manifest explains is a
//! pull of its own. Layers whose snapshot is committed cost nothing.

use std::collections::{BTreeSet, HashMap, HashSet};

use containerd_client::services::v1::Status as IngestStatus;

use super::images::{
    parse, read, BlobError, BlobSource, Content, Descriptor, Document, ImageConfig,
};
use super::OVERLAYFS;
use crate::registry::Reference;
use crate::runtime::{Classified, ImageRecord, ProblemKind, PullLayer, PullRecord};

/// The manifest label naming its config; only manifests carry it.
const CONFIG_LABEL: &str = "containerd.io/gc.ref.content.config";
/// Prefix of the manifest labels naming its layers (`…l.<i>`).
const LAYER_LABEL: &str = "containerd.io/gc.ref.content.l.";
/// Prefix of the labels naming the registry (suffix) and repositories (value).
const SOURCE_LABEL: &str = "containerd.io/distribution.source.";
/// Prefix of the config label set once the image is unpacked.
const SNAPSHOT_LABEL: &str = "containerd.io/gc.ref.snapshot.";
/// Prefix of the active snapshots containerd unpacks layers into.
const EXTRACT_PREFIX: &str = "extract-";
/// Prefix of the ingest refs of layers (`remotes.MakeRefKey`).
const LAYER_REF: &str = "layer-";

/// A blob being written into the content store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Ingest {
    /// The ingest ref inside its namespace, e.g. `layer-sha256:…`.
    pub(super) reference: String,
    /// The digest it will have, when containerd was told.
    pub(super) expected: Option<String>,
    /// Bytes written so far.
    pub(super) offset: u64,
    /// Bytes expected in all (0 when unknown).
    pub(super) total: u64,
}

impl Ingest {
    /// An ingest as containerd's Content API reports it.
    pub(super) fn from_status(s: &IngestStatus) -> Self {
        Ingest {
            reference: s.r#ref.clone(),
            expected: Some(s.expected.clone()).filter(|e| !e.is_empty()),
            offset: u64::try_from(s.offset).unwrap_or(0),
            total: u64::try_from(s.total).unwrap_or(0),
        }
    }

    /// The digest written: the expected one, else the one the ref names
    /// (`<kind>-<alg>:<hex>`).
    fn digest(&self) -> Option<&str> {
        let from_ref = || {
            let (_, digest) = self.reference.split_once('-')?;
            digest.contains(':').then_some(digest)
        };
        self.expected.as_deref().or_else(from_ref)
    }

    /// The bytes written, at most `size` when that is known.
    fn downloaded(&self, size: u64) -> u64 {
        if size == 0 {
            self.offset
        } else {
            self.offset.min(size)
        }
    }
}

/// The chain ID an active snapshot named `key` is unpacking, if it is an
/// unpack (`extract-<unique> <chain ID>`).
pub(super) fn extracting(key: &str) -> Option<&str> {
    let (_, chain) = key.strip_prefix(EXTRACT_PREFIX)?.split_once(' ')?;
    Some(chain)
}

/// What one namespace holds that tells its pulls apart.
pub(super) struct Namespace<'a> {
    /// The namespace.
    pub(super) name: &'a str,
    /// Its content store, with labels.
    pub(super) content: &'a Content,
    /// Its ingests.
    pub(super) ingests: &'a [Ingest],
    /// Image records (of any namespace; only this one's are used).
    pub(super) images: &'a [ImageRecord],
    /// Names (chain IDs) of its committed overlayfs snapshots.
    pub(super) committed: &'a HashSet<String>,
    /// Chain IDs being unpacked (see [`extracting`]).
    pub(super) extracting: &'a HashSet<String>,
}

/// A manifest or config of a pull that could not be read; its pull is left out.
#[derive(Debug, thiserror::Error)]
#[error("manifest {manifest} in namespace {ns}: {source}; its pull is not counted")]
pub(super) struct PullError {
    /// The manifest's digest.
    manifest: String,
    /// Its namespace.
    ns: String,
    /// Why it could not be read.
    source: BlobError,
}

impl Classified for PullError {
    fn kind(&self) -> ProblemKind {
        self.source.kind()
    }
}

/// The pulls in flight in `ns`, and the problems met (a manifest or config
/// that could not be read; its pull is then left out).
pub(super) async fn find(
    source: &impl BlobSource,
    ns: &Namespace<'_>,
) -> (Vec<PullRecord>, Vec<PullError>) {
    let ingests: HashMap<&str, &Ingest> = ns
        .ingests
        .iter()
        .filter_map(|i| Some((i.digest()?, i)))
        .collect();
    let reached: HashMap<&str, &ImageRecord> = ns
        .images
        .iter()
        .filter(|i| i.namespace == ns.name)
        .flat_map(|i| i.blobs.iter().map(move |b| (b.as_str(), i)))
        .collect();
    let mut manifests: Vec<&str> = ns
        .content
        .iter()
        .filter(|(_, info)| info.labels.contains_key(CONFIG_LABEL))
        .map(|(digest, _)| digest.as_str())
        .collect();
    manifests.sort_unstable();
    let mut pulls = Vec::new();
    let mut problems = Vec::new();
    let mut explained: HashSet<&str> = HashSet::new();
    for digest in manifests {
        let image = reached.get(digest).copied();
        if !worth_reading(ns, digest, image.is_some(), &ingests) {
            continue;
        }
        match pull_of(source, ns, digest, image, &ingests).await {
            Ok(Some((pull, blobs))) => {
                explained.extend(blobs);
                pulls.push(pull);
            }
            Ok(None) => {}
            Err(source) => problems.push(PullError {
                manifest: digest.to_string(),
                ns: ns.name.to_string(),
                source,
            }),
        }
    }
    let mut lone: Vec<&Ingest> = ns
        .ingests
        .iter()
        .filter(|i| i.digest().is_none_or(|d| !explained.contains(d)))
        .collect();
    lone.sort_by(|a, b| a.reference.cmp(&b.reference));
    pulls.extend(lone.into_iter().map(|i| lone_pull(ns.name, i)));
    (pulls, problems)
}

/// Whether manifest `digest` may be a pull in flight, judged from labels
/// alone so that the manifests of images long pulled are not read.
fn worth_reading(
    ns: &Namespace<'_>,
    digest: &str,
    reached: bool,
    ingests: &HashMap<&str, &Ingest>,
) -> bool {
    let Some(info) = ns.content.get(digest) else {
        return false;
    };
    let layers = info
        .labels
        .iter()
        .filter(|(k, _)| k.starts_with(LAYER_LABEL))
        .map(|(_, v)| v.as_str());
    let (mut ingesting, mut missing) = (false, false);
    for layer in layers {
        ingesting |= ingests.contains_key(layer);
        missing |= !ns.content.contains_key(layer);
    }
    let unpacked = info
        .labels
        .get(CONFIG_LABEL)
        .and_then(|c| ns.content.get(c))
        .is_some_and(|c| {
            c.labels
                .contains_key(&format!("{SNAPSHOT_LABEL}{OVERLAYFS}"))
        });
    if reached {
        ingesting || (!ns.extracting.is_empty() && !unpacked)
    } else {
        ingesting || missing || !unpacked
    }
}

/// The pull of manifest `digest` with the blobs it explains, or `None`
/// when nothing of it is in flight.
async fn pull_of<'a>(
    source: &impl BlobSource,
    ns: &Namespace<'a>,
    digest: &'a str,
    image: Option<&ImageRecord>,
    ingests: &HashMap<&str, &Ingest>,
) -> Result<Option<(PullRecord, Vec<&'a str>)>, BlobError> {
    let manifest: Document = parse(&read(source, ns.name, digest, ns.content).await?, digest)?;
    let config = manifest.config.map(|c| c.digest);
    let chains = match &config {
        Some(c) if ns.content.contains_key(c) => {
            let config: ImageConfig = parse(&read(source, ns.name, c, ns.content).await?, c)?;
            crate::digest::chain_ids(&config.rootfs.diff_ids)
        }
        _ => Vec::new(),
    };
    let layers: Vec<PullLayer> = manifest
        .layers
        .into_iter()
        .enumerate()
        .map(|(i, d)| layer(ns, d, chains.get(i).cloned(), ingests))
        .collect();
    let waiting = |l: &&PullLayer| !l.unpacked;
    let busy = layers.iter().filter(waiting).any(|l| {
        ingests.contains_key(l.digest.as_str())
            || l.chain_id
                .as_ref()
                .is_some_and(|c| ns.extracting.contains(c))
    });
    if !busy && (image.is_some() || !layers.iter().any(|l| waiting(&l))) {
        return Ok(None);
    }
    let mut blobs: Vec<&'a str> = vec![digest];
    blobs.extend(ns.content.get(digest).into_iter().flat_map(|info| {
        info.labels
            .iter()
            .filter(|(k, _)| k.starts_with(LAYER_LABEL) || k.as_str() == CONFIG_LABEL)
            .map(|(_, v)| v.as_str())
    }));
    let record = PullRecord {
        namespace: ns.name.to_string(),
        image: image
            .and_then(image_name)
            .or_else(|| source_name(ns, digest)),
        manifest_digest: Some(digest.to_string()),
        ingest: None,
        layers,
    };
    Ok(Some((record, blobs)))
}

/// One layer of a manifest: what of it is downloaded and unpacked.
fn layer(
    ns: &Namespace<'_>,
    d: Descriptor,
    chain_id: Option<String>,
    ingests: &HashMap<&str, &Ingest>,
) -> PullLayer {
    let stored = ns.content.get(&d.digest);
    let ingest = ingests.get(d.digest.as_str());
    let compressed = match (d.size, ingest) {
        (0, Some(i)) => i.total,
        (size, _) => size,
    };
    let downloaded = match (stored, ingest) {
        (Some(_), _) => compressed,
        (None, Some(i)) => i.downloaded(compressed),
        (None, None) => 0,
    };
    PullLayer {
        unpacked: chain_id.as_ref().is_some_and(|c| ns.committed.contains(c)),
        digest: d.digest,
        compressed_bytes: compressed,
        downloaded_bytes: downloaded,
        chain_id,
        unpacks: true,
    }
}

/// An ingest no manifest in flight explains, as a pull of its own. Only a
/// layer has anything to unpack.
fn lone_pull(ns: &str, i: &Ingest) -> PullRecord {
    PullRecord {
        namespace: ns.to_string(),
        image: None,
        manifest_digest: None,
        ingest: Some(i.reference.clone()),
        layers: vec![PullLayer {
            digest: i.digest().unwrap_or(&i.reference).to_string(),
            compressed_bytes: i.total,
            downloaded_bytes: i.downloaded(i.total),
            chain_id: None,
            unpacked: false,
            unpacks: i.reference.starts_with(LAYER_REF),
        }],
    }
}

/// The image record's first name other than its bare `sha256:` ID.
fn image_name(image: &ImageRecord) -> Option<String> {
    image
        .refs
        .iter()
        .find(|r| !crate::digest::is_sha256(r))
        .cloned()
}

/// `<registry>/<repository>` from the manifest's distribution-source label,
/// in the registry's full name (see [`full_registry`]).
fn source_name(ns: &Namespace<'_>, digest: &str) -> Option<String> {
    let labels = &ns.content.get(digest)?.labels;
    let mut sources: Vec<(&String, &String)> = labels
        .iter()
        .filter(|(k, _)| k.starts_with(SOURCE_LABEL))
        .collect();
    sources.sort();
    let (key, repos) = sources.first()?;
    let host = key.strip_prefix(SOURCE_LABEL)?;
    let repo = repos.split(',').next().filter(|r| !r.is_empty())?;
    let registry = full_registry(host, repo, ns.images);
    Some(format!("{registry}/{repo}"))
}

/// The registry named `host` in a distribution-source label, as the image
/// list names it. containerd writes the label with the registry's host
/// name alone (`url.Hostname()`: `127.0.0.1:5000` becomes `127.0.0.1`,
/// `[::1]:5000` becomes `::1`), so a pull would be listed under another
/// name than the image it becomes. It matches an image of the same
/// repository already in the namespace (an earlier tag, the same tag being
/// pulled again) whose registry has that host name: when exactly one
/// registry does, that is the name; otherwise (none, or two ports) `host`
/// stays as the label says, rather than a guess.
fn full_registry(host: &str, repo: &str, images: &[ImageRecord]) -> String {
    let registries: BTreeSet<String> = images
        .iter()
        .flat_map(|i| &i.refs)
        .filter_map(|r| r.parse::<Reference>().ok())
        .filter(|r| r.repository == repo && host_name(&r.registry) == host)
        .map(|r| r.registry)
        .collect();
    let mut matched = registries.into_iter();
    match (matched.next(), matched.next()) {
        (Some(one), None) => one,
        _ => host.to_string(),
    }
}

/// A registry's host name without its port or an IPv6 address's brackets,
/// as Go's `url.Hostname()` gives it.
fn host_name(registry: &str) -> &str {
    match registry.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => registry.split(':').next().unwrap_or(registry),
    }
}

/// Every chain ID in `names` (snapshot keys) that a snapshot is unpacking.
pub(super) fn extracting_chains<'a>(names: impl Iterator<Item = &'a str>) -> HashSet<String> {
    names.filter_map(extracting).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use containerd_client::services::v1::Info as ContentInfo;

    use super::*;

    const MANIFEST: &str = "sha256:m";
    const CONFIG: &str = "sha256:c";
    const DIFF_IDS: [&str; 3] = [
        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        "sha256:2222222222222222222222222222222222222222222222222222222222222222",
        "sha256:3333333333333333333333333333333333333333333333333333333333333333",
    ];

    /// Blobs read by digest, as the Content API or the files would give them.
    struct Blobs(HashMap<String, Vec<u8>>);

    impl BlobSource for Blobs {
        async fn read_blob(
            &self,
            _ns: &str,
            digest: &str,
            _cap: usize,
        ) -> Result<Vec<u8>, BlobError> {
            self.0
                .get(digest)
                .cloned()
                .ok_or_else(|| BlobError::NotInStore {
                    digest: digest.to_string(),
                })
        }
    }

    /// A node in the middle of pulling `reg.example/team/app`: the manifest
    /// and config are in, layer a is unpacked, b is downloading, c is not
    /// started.
    struct Node {
        content: Content,
        blobs: Blobs,
        ingests: Vec<Ingest>,
        images: Vec<ImageRecord>,
        committed: HashSet<String>,
        extracting: HashSet<String>,
    }

    fn info(size: i64, labels: &[(&str, &str)]) -> ContentInfo {
        ContentInfo {
            size,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        }
    }

    fn chains() -> Vec<String> {
        crate::digest::chain_ids(&DIFF_IDS.map(String::from))
    }

    fn node() -> Node {
        let manifest = r#"{"schemaVersion": 2,
            "config": {"digest": "sha256:c", "size": 300},
            "layers": [{"digest": "sha256:a", "size": 1000},
                       {"digest": "sha256:b", "size": 2000},
                       {"digest": "sha256:x", "size": 4000}]}"#;
        let config = format!(r#"{{"rootfs": {{"type": "layers", "diff_ids": {DIFF_IDS:?}}}}}"#);
        let content: Content = [
            (
                MANIFEST,
                info(
                    manifest.len() as i64,
                    &[
                        (CONFIG_LABEL, CONFIG),
                        ("containerd.io/gc.ref.content.l.0", "sha256:a"),
                        ("containerd.io/gc.ref.content.l.1", "sha256:b"),
                        ("containerd.io/gc.ref.content.l.2", "sha256:x"),
                        ("containerd.io/distribution.source.reg.example", "team/app"),
                    ],
                ),
            ),
            (CONFIG, info(config.len() as i64, &[])),
            ("sha256:a", info(1000, &[])),
        ]
        .into_iter()
        .map(|(d, i)| (d.to_string(), i))
        .collect();
        let blobs = Blobs(
            [(MANIFEST, manifest.to_string()), (CONFIG, config)]
                .into_iter()
                .map(|(d, b)| (d.to_string(), b.into_bytes()))
                .collect(),
        );
        Node {
            content,
            blobs,
            ingests: vec![ingest("layer-sha256:b", 700, 2000)],
            images: Vec::new(),
            committed: [chains()[0].clone()].into(),
            extracting: HashSet::new(),
        }
    }

    fn ingest(reference: &str, offset: u64, total: u64) -> Ingest {
        Ingest {
            reference: reference.into(),
            expected: None,
            offset,
            total,
        }
    }

    async fn find_in(n: &Node) -> (Vec<PullRecord>, Vec<PullError>) {
        let ns = Namespace {
            name: "k8s.io",
            content: &n.content,
            ingests: &n.ingests,
            images: &n.images,
            committed: &n.committed,
            extracting: &n.extracting,
        };
        find(&n.blobs, &ns).await
    }

    fn layer(digest: &str, sizes: (u64, u64), chain: usize, unpacked: bool) -> PullLayer {
        PullLayer {
            digest: digest.into(),
            compressed_bytes: sizes.0,
            downloaded_bytes: sizes.1,
            chain_id: Some(chains()[chain].clone()),
            unpacked,
            unpacks: true,
        }
    }

    #[tokio::test]
    async fn a_manifest_being_downloaded_is_one_pull_with_its_layers() {
        let (pulls, problems) = find_in(&node()).await;
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            pulls,
            [PullRecord {
                namespace: "k8s.io".into(),
                image: Some("reg.example/team/app".into()),
                manifest_digest: Some(MANIFEST.into()),
                ingest: None,
                layers: vec![
                    layer("sha256:a", (1000, 1000), 0, true),
                    layer("sha256:b", (2000, 700), 1, false),
                    layer("sha256:x", (4000, 0), 2, false),
                ],
            }]
        );
    }

    /// An image of `refs` in the namespace, holding none of the pull's blobs.
    fn named(refs: &[&str]) -> ImageRecord {
        ImageRecord {
            namespace: "k8s.io".into(),
            id: "sha256:other".into(),
            refs: refs.iter().map(|r| r.to_string()).collect(),
            layers: Vec::new(),
            blobs: vec!["sha256:other".into()],
            pinned: false,
            created: None,
        }
    }

    #[tokio::test]
    async fn a_pull_takes_the_port_of_the_image_list_when_one_registry_matches() {
        let mut n = node();
        // An earlier tag of the same repository on port 5000: its name.
        n.images = vec![named(&["reg.example:5000/team/app:1", "sha256:other"])];
        assert_eq!(
            pull_name(&n).await.as_deref(),
            Some("reg.example:5000/team/app")
        );
        // Another repository on that host tells nothing about this one.
        n.images = vec![named(&["reg.example:5000/team/other:1"])];
        assert_eq!(pull_name(&n).await.as_deref(), Some("reg.example/team/app"));
        // Two ports for the repository: no guess.
        n.images = vec![
            named(&["reg.example:5000/team/app:1"]),
            named(&["reg.example:6000/team/app:1"]),
        ];
        assert_eq!(pull_name(&n).await.as_deref(), Some("reg.example/team/app"));
    }

    async fn pull_name(n: &Node) -> Option<String> {
        find_in(n).await.0.first()?.image.clone()
    }

    #[test]
    fn host_names_lose_their_port_and_brackets_as_go_drops_them() {
        assert_eq!(host_name("127.0.0.1:5000"), "127.0.0.1");
        assert_eq!(host_name("[::1]:5000"), "::1");
        assert_eq!(host_name("docker.io"), "docker.io");
        let v6 = [named(&["[::1]:5000/team/app:1"])];
        assert_eq!(full_registry("::1", "team/app", &v6), "[::1]:5000");
        assert_eq!(full_registry("::1", "team/app", &[]), "::1");
    }

    #[tokio::test]
    async fn before_the_config_arrives_layers_have_no_chain() {
        let mut n = node();
        n.content.remove(CONFIG);
        let (pulls, _) = find_in(&n).await;
        assert!(pulls[0]
            .layers
            .iter()
            .all(|l| l.chain_id.is_none() && !l.unpacked));
    }

    #[tokio::test]
    async fn an_image_record_ends_the_pull_unless_it_is_still_unpacking() {
        let mut n = node();
        n.ingests.clear();
        for d in ["sha256:b", "sha256:x"] {
            n.content.insert(d.into(), info(5, &[]));
        }
        n.images = vec![ImageRecord {
            namespace: "k8s.io".into(),
            id: CONFIG.into(),
            refs: vec!["reg.example:5000/team/app:1".into(), CONFIG.into()],
            layers: chains(),
            blobs: vec![MANIFEST.into(), CONFIG.into()],
            pinned: false,
            created: None,
        }];
        // Recorded, all downloaded, nothing unpacking: a `ctr content fetch`.
        assert_eq!(find_in(&n).await.0, []);
        // `ctr pull` records the image, then unpacks layer by layer.
        n.extracting = extracting_chains(
            [format!("extract-1-ab {}", chains()[1])]
                .iter()
                .map(String::as_str),
        );
        let (pulls, _) = find_in(&n).await;
        assert_eq!(pulls.len(), 1);
        assert_eq!(
            pulls[0].image.as_deref(),
            Some("reg.example:5000/team/app:1")
        );
        // Once unpacked (and labelled so), it is no pull even while another unpacks.
        n.content.insert(
            CONFIG.into(),
            info(10, &[("containerd.io/gc.ref.snapshot.overlayfs", "x")]),
        );
        assert_eq!(find_in(&n).await.0, []);
        // In another namespace the record does not count.
        n.images[0].namespace = "default".into();
        n.content.insert(CONFIG.into(), info(10, &[]));
        assert_eq!(find_in(&n).await.0.len(), 1);
    }

    #[tokio::test]
    async fn a_manifest_whose_layers_are_all_in_is_no_pull() {
        let mut n = node();
        n.ingests.clear();
        n.committed = chains().into_iter().collect();
        // Garbage waiting for GC: unreached, but nothing left to do.
        assert_eq!(find_in(&n).await.0, []);
    }

    #[tokio::test]
    async fn ingests_no_manifest_explains_are_pulls_of_their_own() {
        let mut n = node();
        n.ingests.extend([
            ingest("manifest-sha256:other", 10, 500),
            ingest("layer-sha256:y", 900, 0),
            ingest("config-sha256:c", 3, 300),
        ]);
        let (pulls, _) = find_in(&n).await;
        let lone: Vec<_> = pulls
            .iter()
            .filter_map(|p| Some((p.ingest.as_deref()?, &p.layers[0])))
            .map(|(r, l)| {
                (
                    r,
                    l.digest.as_str(),
                    l.compressed_bytes,
                    l.downloaded_bytes,
                    l.unpacks,
                )
            })
            .collect();
        // The config ingest belongs to the manifest's pull.
        assert_eq!(
            lone,
            [
                ("layer-sha256:y", "sha256:y", 0, 900, true),
                ("manifest-sha256:other", "sha256:other", 500, 10, false),
            ]
        );
    }

    #[tokio::test]
    async fn an_unreadable_manifest_is_a_problem() {
        let mut n = node();
        n.blobs.0.insert(MANIFEST.into(), b"{not json".to_vec());
        let (pulls, problems) = find_in(&n).await;
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].to_string().contains(MANIFEST), "{problems:?}");
        assert_eq!(problems[0].kind(), ProblemKind::Malformed);
        // Its layer's ingest is still shown, on its own.
        assert_eq!(pulls.len(), 1);
        assert_eq!(pulls[0].ingest.as_deref(), Some("layer-sha256:b"));
    }

    #[test]
    fn ingests_name_their_digest_and_never_exceed_their_total() {
        let i = ingest("layer-sha256:ab", 50, 40);
        assert_eq!((i.digest(), i.downloaded(40)), (Some("sha256:ab"), 40));
        assert_eq!(ingest("weird", 1, 0).digest(), None);
        let status = IngestStatus {
            r#ref: "whatever".into(),
            expected: "sha256:e".into(),
            offset: -1,
            total: 9,
            ..Default::default()
        };
        let from = Ingest::from_status(&status);
        assert_eq!(
            (from.digest(), from.offset, from.total),
            (Some("sha256:e"), 0, 9)
        );
        assert_eq!(extracting("extract-12-ab sha256:c"), Some("sha256:c"));
        assert_eq!(extracting("sha256:c"), None);
        assert_eq!(extracting("extract-12-ab"), None);
    }
}
