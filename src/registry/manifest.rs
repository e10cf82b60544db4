//! Manifest, index and config documents of the OCI image spec and Docker's
//! schema 2, told apart by media type, and the platform choice in an index.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// OCI image index.
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// OCI image manifest.
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// Docker manifest list (schema 2).
const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// Docker image manifest, schema 2.
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Docker image manifest, schema 1 (deprecated, not supported).
const DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
/// Signed Docker schema 1 manifest (deprecated, not supported).
const DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";
/// The `Accept` header of a manifest request: every supported kind.
pub(super) fn accept_header() -> String {
    [OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST].join(", ")
}

/// Config media types of container images.
const CONFIG_TYPES: [&str; 2] = [
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// Layer media types a container runtime can unpack.
const LAYER_TYPES: [&str; 8] = [
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
];

/// What a fetched manifest document turned out to be.
#[derive(Debug)]
pub(super) enum Fetched {
    /// An index or manifest list: one entry per platform.
    Index(Vec<Descriptor>),
    /// An image manifest.
    Manifest(ImageManifest),
}

/// The fields used here of either kind of document.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Document {
    schema_version: Option<u32>,
    media_type: Option<String>,
    manifests: Option<Vec<Descriptor>>,
    config: Option<Descriptor>,
    layers: Option<Vec<Descriptor>>,
}

/// A content descriptor: what a document says about a blob it references.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Descriptor {
    /// The blob's media type.
    #[serde(default)]
    pub(super) media_type: String,
    /// The blob's digest.
    pub(super) digest: String,
    /// The blob's size in bytes.
    pub(super) size: u64,
    /// For index entries: the platform of the manifest.
    pub(super) platform: Option<Platform>,
    /// The descriptor's annotations (zstd:chunked puts its table of
    /// contents' position here).
    #[serde(default)]
    pub(super) annotations: BTreeMap<String, String>,
}

/// An image manifest: its config and layers, base first.
#[derive(Debug)]
pub(super) struct ImageManifest {
    /// The media type the manifest was served as.
    pub(super) media_type: String,
    /// The config blob.
    pub(super) config: Descriptor,
    /// The layer blobs, base first.
    pub(super) layers: Vec<Descriptor>,
}

/// An image config: the fields used here.
#[derive(Debug, Deserialize)]
pub(super) struct ImageConfig {
    /// The OS the image is for.
    #[serde(default)]
    pub(super) os: String,
    /// The CPU architecture the image is for.
    #[serde(default)]
    pub(super) architecture: String,
    /// The CPU variant, when the image names one.
    pub(super) variant: Option<String>,
    /// The uncompressed layers.
    pub(super) rootfs: RootFs,
}

/// `rootfs` of an image config.
#[derive(Debug, Deserialize)]
pub(super) struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub(super) kind: String,
    /// Digests of the uncompressed layer tars, base first.
    pub(super) diff_ids: Vec<String>,
}

/// A platform: OS, architecture and optional CPU variant (`linux/arm64/v8`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Platform {
    /// `linux`, `windows`, …
    pub os: String,
    /// `amd64`, `arm64`, … (OCI/Go names).
    pub architecture: String,
    /// `v7`, `v8`, …; `None` matches any variant when choosing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Default for Platform {
    /// `linux/amd64`.
    fn default() -> Self {
        Platform {
            os: "linux".into(),
            architecture: "amd64".into(),
            variant: None,
        }
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        match &self.variant {
            Some(v) => write!(f, "/{v}"),
            None => Ok(()),
        }
    }
}

impl FromStr for Platform {
    type Err = String;

    /// `os/arch` or `os/arch/variant`.
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split('/').collect();
        let bad = || format!("{s:?} is not a platform (want os/arch or os/arch/variant)");
        if parts.iter().any(|p| p.is_empty()) {
            return Err(bad());
        }
        match parts[..] {
            [os, arch] => Ok(Platform::new(os, arch, None)),
            [os, arch, variant] => Ok(Platform::new(os, arch, Some(variant))),
            _ => Err(bad()),
        }
    }
}

impl Platform {
    /// A platform from its parts.
    fn new(os: &str, architecture: &str, variant: Option<&str>) -> Self {
        Platform {
            os: os.into(),
            architecture: architecture.into(),
            variant: variant.map(Into::into),
        }
    }

    /// Whether an index entry for `other` serves this platform.
    fn accepts(&self, other: &Platform) -> bool {
        self.os == other.os
            && self.architecture == other.architecture
            && (self.variant.is_none() || self.variant == other.variant)
    }
}

/// Why a document could not be used.
#[derive(Debug, PartialEq)]
pub(super) enum Unusable {
    /// The document is not JSON of the expected shape.
    Json(String),
    /// A media type that is not supported, and why.
    MediaType(String, String),
    /// The document is well-formed JSON but breaks the spec.
    Invalid(String),
}

/// Reads a manifest document served with `content_type`.
pub(super) fn parse_manifest(
    bytes: &[u8],
    content_type: Option<&str>,
) -> Result<Fetched, Unusable> {
    let doc: Document = serde_json::from_slice(bytes).map_err(|e| Unusable::Json(e.to_string()))?;
    let media_type = media_type(&doc, content_type);
    if doc.schema_version == Some(1)
        || [DOCKER_SCHEMA1, DOCKER_SCHEMA1_SIGNED].contains(&media_type.as_str())
    {
        return Err(Unusable::MediaType(
            media_type,
            "Docker image manifest schema 1 is deprecated and not supported; push the image again with a current client".into(),
        ));
    }
    match media_type.as_str() {
        OCI_INDEX | DOCKER_LIST => Ok(Fetched::Index(doc.manifests.unwrap_or_default())),
        OCI_MANIFEST | DOCKER_MANIFEST => image_manifest(media_type, doc),
        _ => Err(Unusable::MediaType(
            media_type,
            "not an image manifest or index".into(),
        )),
    }
}

/// The document's media type: its own `mediaType` (covered by the digest),
/// else the `Content-Type` it was served with, else its shape.
fn media_type(doc: &Document, content_type: Option<&str>) -> String {
    let served = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| {
            !matches!(
                *c,
                "" | "application/json" | "text/plain" | "application/octet-stream"
            )
        });
    match (&doc.media_type, served) {
        (Some(own), _) => own.clone(),
        (None, Some(served)) => served.to_string(),
        (None, None) if doc.manifests.is_some() => OCI_INDEX.into(),
        (None, None) => OCI_MANIFEST.into(),
    }
}

/// Checks an image manifest's config and layer media types.
fn image_manifest(media_type: String, doc: Document) -> Result<Fetched, Unusable> {
    let config = doc
        .config
        .ok_or_else(|| Unusable::Invalid("the manifest has no config".into()))?;
    if !CONFIG_TYPES.contains(&config.media_type.as_str()) {
        return Err(Unusable::MediaType(
            config.media_type,
            "the config is not a container image config (is this an artifact, not an image?)"
                .into(),
        ));
    }
    let layers = doc.layers.unwrap_or_default();
    if let Some(layer) = layers
        .iter()
        .find(|l| !LAYER_TYPES.contains(&l.media_type.as_str()))
    {
        return Err(Unusable::MediaType(
            layer.media_type.clone(),
            format!(
                "layer {} is of a kind container runtimes do not unpack",
                layer.digest
            ),
        ));
    }
    Ok(Fetched::Manifest(ImageManifest {
        media_type,
        config,
        layers,
    }))
}

/// The index entry for `wanted`, or the platforms the index does offer.
pub(super) fn pick<'a>(
    entries: &'a [Descriptor],
    wanted: &Platform,
) -> Result<&'a Descriptor, String> {
    entries
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| wanted.accepts(p)))
        .ok_or_else(|| {
            let offered: Vec<String> = entries
                .iter()
                .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                .collect();
            if offered.is_empty() {
                "none named".into()
            } else {
                offered.join(", ")
            }
        })
}

/// Reads an image config and checks its `rootfs` matches `layers` layers.
pub(super) fn parse_config(bytes: &[u8], layers: usize) -> Result<ImageConfig, Unusable> {
    let config: ImageConfig =
        serde_json::from_slice(bytes).map_err(|e| Unusable::Json(e.to_string()))?;
    if config.rootfs.kind != "layers" {
        return Err(Unusable::Invalid(format!(
            "rootfs.type is {:?}, not \"layers\"",
            config.rootfs.kind
        )));
    }
    if config.rootfs.diff_ids.len() != layers {
        return Err(Unusable::Invalid(format!(
            "rootfs lists {} diff_ids but the manifest has {layers} layers",
            config.rootfs.diff_ids.len()
        )));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0000000000000000000000000000000000000000000000000000000000000000";

    fn manifest(config_type: &str, layer_type: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{config_type}","digest":"{D}","size":2}},
                "layers":[{{"mediaType":"{layer_type}","digest":"{D}","size":7}}]}}"#
        )
    }

    #[test]
    fn media_type_comes_from_the_document_then_the_header_then_the_shape() {
        let oci = manifest(CONFIG_TYPES[0], LAYER_TYPES[1]);
        let Ok(Fetched::Manifest(m)) = parse_manifest(oci.as_bytes(), None) else {
            panic!("not a manifest")
        };
        assert_eq!((m.media_type.as_str(), m.layers[0].size), (OCI_MANIFEST, 7));
        let Ok(Fetched::Manifest(m)) = parse_manifest(
            oci.as_bytes(),
            Some(&format!("{DOCKER_MANIFEST}; charset=utf-8")),
        ) else {
            panic!("not a manifest")
        };
        assert_eq!(m.media_type, DOCKER_MANIFEST);
        let list = format!(r#"{{"mediaType":"{DOCKER_LIST}","manifests":[]}}"#);
        assert!(matches!(
            parse_manifest(list.as_bytes(), Some(OCI_MANIFEST)),
            Ok(Fetched::Index(v)) if v.is_empty()
        ));
        assert!(matches!(
            parse_manifest(br#"{"manifests":[]}"#, Some("application/json")),
            Ok(Fetched::Index(_))
        ));
    }

    #[test]
    fn unsupported_documents_say_why() {
        let schema1 = br#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#;
        let Err(Unusable::MediaType(_, why)) = parse_manifest(schema1, Some(DOCKER_SCHEMA1_SIGNED))
        else {
            panic!("schema 1 accepted")
        };
        assert!(why.contains("schema 1"), "{why}");
        let helm = manifest("application/vnd.cncf.helm.config.v1+json", LAYER_TYPES[0]);
        assert!(matches!(
            parse_manifest(helm.as_bytes(), None),
            Err(Unusable::MediaType(t, _)) if t.contains("helm")
        ));
        let encrypted = manifest(
            CONFIG_TYPES[1],
            "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
        );
        assert!(matches!(
            parse_manifest(encrypted.as_bytes(), None),
            Err(Unusable::MediaType(t, _)) if t.ends_with("encrypted")
        ));
        assert!(matches!(parse_manifest(b"{", None), Err(Unusable::Json(_))));
        assert!(matches!(
            parse_manifest(br#"{"schemaVersion":2}"#, Some(OCI_MANIFEST)),
            Err(Unusable::Invalid(_))
        ));
        assert!(matches!(
            parse_manifest(br#"{}"#, Some("application/vnd.example+json")),
            Err(Unusable::MediaType(_, _))
        ));
    }

    #[test]
    fn the_wanted_platform_is_picked_or_the_offer_named() {
        let index = format!(
            r#"{{"manifests":[
              {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:a","size":1,"platform":{{"os":"linux","architecture":"arm","variant":"v7"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:b","size":1,"platform":{{"os":"linux","architecture":"amd64"}}}},
              {{"mediaType":"{OCI_MANIFEST}","digest":"sha256:c","size":1,"platform":{{"os":"unknown","architecture":"unknown"}}}}]}}"#
        );
        let Ok(Fetched::Index(entries)) = parse_manifest(index.as_bytes(), None) else {
            panic!("not an index")
        };
        assert_eq!(
            pick(&entries, &Platform::default()).unwrap().digest,
            "sha256:b"
        );
        let arm: Platform = "linux/arm".parse().unwrap();
        assert_eq!(pick(&entries, &arm).unwrap().digest, "sha256:a");
        let arm6: Platform = "linux/arm/v6".parse().unwrap();
        assert_eq!(
            pick(&entries, &arm6).unwrap_err(),
            "linux/arm/v7, linux/amd64, unknown/unknown"
        );
        assert_eq!(pick(&[], &arm6).unwrap_err(), "none named");
    }

    #[test]
    fn platforms_parse_and_print() {
        let p: Platform = "linux/arm64/v8".parse().unwrap();
        assert_eq!(p.to_string(), "linux/arm64/v8");
        assert_eq!(Platform::default().to_string(), "linux/amd64");
        for bad in ["linux", "linux/", "a/b/c/d", ""] {
            assert!(bad.parse::<Platform>().is_err(), "{bad}");
        }
    }

    #[test]
    fn configs_must_list_one_diff_id_per_layer() {
        let config = format!(
            r#"{{"os":"linux","architecture":"amd64","rootfs":{{"type":"layers","diff_ids":["{D}"]}}}}"#
        );
        let parsed = parse_config(config.as_bytes(), 1).unwrap();
        assert_eq!(
            (parsed.os.as_str(), parsed.rootfs.diff_ids.len()),
            ("linux", 1)
        );
        assert!(matches!(
            parse_config(config.as_bytes(), 2),
            Err(Unusable::Invalid(_))
        ));
        let other = br#"{"rootfs":{"type":"zfs","diff_ids":[]}}"#;
        assert!(matches!(parse_config(other, 0), Err(Unusable::Invalid(_))));
        assert!(matches!(parse_config(b"[]", 0), Err(Unusable::Json(_))));
    }
}
