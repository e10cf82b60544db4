//! OCI distribution client for `check-pull`: resolves an image reference in
//! its registry — index → platform manifest → config — without pulling any
//! layer, and returns what a pull would bring: each layer's compressed size
//! and diff ID, and the chain IDs that name the committed layers on a node,
//! so the caller can tell which layers are already there.
//!
//! Every document is checked against the digest that names it. The client
//! is synchronous (ureq), speaks HTTPS (rustls with webpki roots, so it
//! works in a FROM-scratch image, plus extra CAs for the registry's own
//! host), and uses plain HTTP only for a loopback registry when asked to.
//! A [`Client`] keeps its authorization for further requests, such as
//! [`Client::blob_range`], which reads a few bytes of a layer.

mod auth;
pub mod ca;
pub mod credentials;
mod error;
mod manifest;
mod reference;
pub mod sizing;
mod transport;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Serialize;

pub use crate::digest::{chain_ids, is_sha256, sha256};
pub use auth::Credentials;
pub use credentials::CredentialSource;
pub use error::{Error, ErrorClass};
pub use manifest::Platform;
pub use reference::{Reference, ReferenceError, DOCKER_HUB};

use manifest::{Descriptor, Fetched, ImageManifest, Unusable};
use transport::{Get, Http, PrivateRoots, Reply};

/// Largest manifest or index read.
pub const MAX_MANIFEST: u64 = 4 << 20;
/// Largest image config read.
pub const MAX_CONFIG: u64 = 16 << 20;
/// Indexes nested deeper than this are not followed.
const MAX_NESTING: usize = 4;
/// Default deadline of each request.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// How to reach the registry and which image to choose.
#[derive(Debug, Clone)]
pub struct Options {
    /// Use plain HTTP instead of HTTPS. Only honoured for a loopback
    /// registry (`localhost`, `127.0.0.0/8`, `::1`); any other host is
    /// refused with [`Error::PlainHttpRefused`] before connecting.
    pub insecure_plain_http: bool,
    /// Credentials for Basic challenges and token realms; anonymous if `None`.
    pub credentials: Option<Credentials>,
    /// Where `credentials` came from, named when they are refused.
    pub credential_source: Option<CredentialSource>,
    /// Extra CA certificates (DER) trusted for the registry's own host, in
    /// place of the webpki roots (ureq takes one set or the other); other
    /// hosts (a token realm elsewhere, blob storage) keep webpki's.
    pub ca_certs: Vec<Vec<u8>>,
    /// The platform picked from an index (default `linux/amd64`).
    pub platform: Platform,
    /// Deadline of each HTTP request, connecting and reading included.
    pub timeout: Duration,
}

impl Default for Options {
    /// HTTPS, anonymous, `linux/amd64`, 30 s per request.
    fn default() -> Self {
        Options {
            insecure_plain_http: false,
            credentials: None,
            credential_source: None,
            ca_certs: Vec::new(),
            platform: Platform::default(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// An image as its registry describes it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedImage {
    /// The reference resolved, normalised.
    pub reference: Reference,
    /// The digest of the index the reference named, if it named one (this
    /// is the repo digest Docker and containerd record).
    pub index_digest: Option<String>,
    /// The digest of the image manifest chosen.
    pub manifest_digest: String,
    /// Its media type (OCI manifest or Docker schema 2).
    pub manifest_media_type: String,
    /// The config digest: the image ID a runtime will give the image.
    pub config_digest: String,
    /// The platform the config says the image is for.
    pub platform: Platform,
    /// The layers, base first.
    pub layers: Vec<ResolvedLayer>,
    /// Chain IDs of the layers, base first: the committed layers a runtime
    /// names (containerd snapshots, Docker's layerdb).
    pub chain_ids: Vec<String>,
}

/// One layer of a [`ResolvedImage`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolvedLayer {
    /// The digest of the blob as stored (compressed).
    pub digest: String,
    /// Bytes a pull downloads for it.
    pub compressed_size: u64,
    /// The digest of the uncompressed tar.
    pub diff_id: String,
    /// The blob's media type (gzip, zstd or plain tar).
    pub media_type: String,
    /// The manifest's annotations of the layer (zstd:chunked puts the
    /// position of its table of contents here).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// Which bytes of a blob to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// The first `n` bytes: `bytes=0-(n-1)`.
    Prefix(u64),
    /// The last `n` bytes: `bytes=-n`.
    Suffix(u64),
    /// `len` bytes from `start`: `bytes=start-(start+len-1)`.
    Span {
        /// The first byte's offset.
        start: u64,
        /// How many bytes.
        len: u64,
    },
}

impl ByteRange {
    /// How many bytes are asked for.
    pub fn len(&self) -> u64 {
        match *self {
            ByteRange::Prefix(n) | ByteRange::Suffix(n) => n,
            ByteRange::Span { len, .. } => len,
        }
    }

    /// Whether no byte is asked for.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether a `Content-Range` value answers this range (the first and
    /// last byte match; for a suffix, the last byte is the blob's last).
    fn answered_by(&self, content_range: &str) -> bool {
        let Some((span, total)) = content_range
            .trim()
            .strip_prefix("bytes ")
            .and_then(|r| r.split_once('/'))
        else {
            return false;
        };
        let Some((first, last)) = span.split_once('-') else {
            return false;
        };
        let (Ok(first), Ok(last)) = (first.parse::<u64>(), last.parse::<u64>()) else {
            return false;
        };
        match *self {
            ByteRange::Prefix(n) => first == 0 && last.checked_add(1) == Some(n),
            ByteRange::Span { start, len } => {
                first == start && last.checked_add(1) == start.checked_add(len)
            }
            ByteRange::Suffix(n) => {
                total
                    .parse::<u64>()
                    .is_ok_and(|t| last.checked_add(1) == Some(t))
                    && last.checked_add(1).and_then(|end| end.checked_sub(first)) == Some(n)
            }
        }
    }
}

impl fmt::Display for ByteRange {
    /// The `Range` header value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ByteRange::Prefix(n) => write!(f, "bytes=0-{}", n.saturating_sub(1)),
            ByteRange::Suffix(n) => write!(f, "bytes=-{n}"),
            ByteRange::Span { start, len } => {
                write!(
                    f,
                    "bytes={start}-{}",
                    start.saturating_add(len.saturating_sub(1))
                )
            }
        }
    }
}

/// Bytes of a blob read with [`Client::blob_range`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ranged {
    /// The bytes: the range asked for when `honoured`, else the blob's
    /// first bytes (at most the length asked).
    pub bytes: Vec<u8>,
    /// Whether the registry answered 206 with the range asked for.
    pub honoured: bool,
}

/// Resolves `reference` in its registry: the manifest for
/// `options.platform`, its config and layers. Downloads documents only
/// (manifests ≤ [`MAX_MANIFEST`], config ≤ [`MAX_CONFIG`]), never layers.
pub fn resolve(reference: &Reference, options: &Options) -> Result<ResolvedImage, Error> {
    connect(reference, options)?.resolve()
}

/// A client for `reference`'s repository; refuses plain HTTP off loopback
/// before any connection is made. Nothing is sent yet.
pub fn connect(reference: &Reference, options: &Options) -> Result<Client, Error> {
    Client::new(reference, options)
}

/// A manifest as fetched: its URL, its digest and what it holds.
type FetchedAt = (String, String, Fetched);

/// Requests to one repository, with the authorization obtained so far.
pub struct Client {
    http: Http,
    /// `https://host/v2/<repository>/`.
    base: String,
    reference: Reference,
    options: Options,
    /// The `Authorization` value that last worked.
    authorization: Option<String>,
}

impl fmt::Debug for Client {
    /// The repository only: never the authorization.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    fn new(reference: &Reference, options: &Options) -> Result<Self, Error> {
        let scheme = if options.insecure_plain_http {
            "http"
        } else {
            "https"
        };
        let authority = reference.api_host();
        let private = PrivateRoots {
            authority,
            certs: &options.ca_certs,
        };
        let http = Http::new(options.timeout, options.insecure_plain_http, Some(private));
        let base = format!("{scheme}://{authority}/v2/{}/", reference.repository);
        http.check(&base)?;
        Ok(Client {
            http,
            base,
            reference: reference.clone(),
            options: options.clone(),
            authorization: None,
        })
    }

    /// Resolves the reference: the manifest for the platform of the
    /// options, its config and layers (see [`resolve`]).
    pub fn resolve(&mut self) -> Result<ResolvedImage, Error> {
        let reference = self.reference.clone();
        let mut fetched = self.manifest(reference.manifest_ref(), reference.digest.as_deref())?;
        let mut index_digest = None;
        for _ in 0..MAX_NESTING {
            let (url, digest, document) = fetched;
            let entries = match document {
                Fetched::Manifest(manifest) => {
                    return self.finish(index_digest, digest, manifest, &url);
                }
                Fetched::Index(entries) => entries,
            };
            index_digest.get_or_insert(digest);
            let platform = &self.options.platform;
            let entry =
                manifest::pick(&entries, platform).map_err(|offered| Error::NoPlatform {
                    url: url.clone(),
                    platform: platform.to_string(),
                    offered,
                })?;
            fetched = self.manifest(&entry.digest, Some(&entry.digest))?;
        }
        Err(Error::BadDocument {
            url: self.url("manifests", reference.manifest_ref()),
            what: "index".into(),
            reason: format!("indexes nested deeper than {MAX_NESTING} levels"),
        })
    }

    /// Reads `range` of blob `digest`, following redirects. At most
    /// `range.len()` bytes are read, whatever the registry sends: a
    /// registry that ignores the range (200) gives the blob's first bytes,
    /// and the rest is never read (the connection is dropped).
    pub fn blob_range(&mut self, digest: &str, range: ByteRange) -> Result<Ranged, Error> {
        let url = self.url("blobs", digest);
        if !is_sha256(digest) {
            return Err(Error::BadUrl {
                url,
                reason: format!("{digest:?} is not a sha256 digest"),
            });
        }
        let header = range.to_string();
        let reply = self.get_with(&url, None, Some(&header), range.len(), "blob range")?;
        match reply.status {
            206 => Ok(Ranged {
                honoured: reply
                    .content_range
                    .as_deref()
                    .is_some_and(|r| range.answered_by(r)),
                bytes: reply.body,
            }),
            200 => Ok(Ranged {
                bytes: reply.body,
                honoured: false,
            }),
            404 => Err(Error::BlobUnknown {
                detail: reply.detail(),
                url,
                digest: digest.to_string(),
            }),
            416 => Err(Error::RangeNotSatisfiable {
                detail: reply.detail(),
                url,
                range: header,
            }),
            status => Err(Error::Status {
                url,
                status,
                detail: reply.detail(),
            }),
        }
    }

    /// The URL of `kind` (`manifests`, `blobs`) `target` in the repository.
    fn url(&self, kind: &str, target: &str) -> String {
        format!("{}{kind}/{target}", self.base)
    }

    /// GETs `url`, answering one 401 challenge (or a stale token) by
    /// authorizing and retrying.
    fn get(
        &mut self,
        url: &str,
        accept: Option<&str>,
        cap: u64,
        what: &str,
    ) -> Result<Reply, Error> {
        self.get_with(url, accept, None, cap, what)
    }

    /// [`Client::get`] with a `Range`; a ranged body is cut at `cap`
    /// instead of failing.
    fn get_with(
        &mut self,
        url: &str,
        accept: Option<&str>,
        range: Option<&str>,
        cap: u64,
        what: &str,
    ) -> Result<Reply, Error> {
        let mut retried = false;
        loop {
            let reply = self.http.get(&Get {
                url,
                accept,
                authorization: self.authorization.as_deref(),
                query: &[],
                range,
                cap,
                truncate: range.is_some(),
                what,
            })?;
            match reply.status {
                401 if !retried => {
                    let scope = format!("repository:{}:pull", self.reference.repository);
                    let credentials = self.credentials();
                    let auth =
                        auth::authorize(&self.http, url, &reply.challenges, credentials, &scope)?;
                    self.authorization = Some(auth);
                    retried = true;
                }
                401 | 403 => {
                    return Err(Error::Unauthorized {
                        url: url.to_string(),
                        reason: format!(
                            "HTTP {} for {} {}{}",
                            reply.status,
                            self.reference,
                            auth::who(self.credentials()),
                            reply.detail()
                        ),
                    })
                }
                _ => return Ok(reply),
            }
        }
    }

    /// The credentials of the options, with where they came from.
    fn credentials(&self) -> Option<auth::Named<'_>> {
        let credentials = self.options.credentials.as_ref()?;
        Some(auth::Named {
            credentials,
            source: self.options.credential_source.as_ref(),
        })
    }

    /// Fetches manifest `target` (a tag or digest), checks its digest
    /// against `expected` and the registry's `Docker-Content-Digest`, and
    /// parses it.
    fn manifest(&mut self, target: &str, expected: Option<&str>) -> Result<FetchedAt, Error> {
        let url = self.url("manifests", target);
        let accept = manifest::accept_header();
        let reply = self.get(&url, Some(&accept), MAX_MANIFEST, "manifest")?;
        if reply.status == 404 {
            let reference = match expected {
                Some(digest) => format!(
                    "{}/{}@{digest}",
                    self.reference.registry, self.reference.repository
                ),
                None => self.reference.to_string(),
            };
            return Err(Error::ManifestUnknown {
                detail: reply.detail(),
                url,
                reference,
            });
        }
        ok(&url, &reply)?;
        let digest = sha256(&reply.body);
        let claims = [
            (expected, "manifest (digest asked for)"),
            (
                reply
                    .docker_digest
                    .as_deref()
                    .filter(|d| d.starts_with("sha256:")),
                "manifest (Docker-Content-Digest header)",
            ),
        ];
        for (claimed, what) in claims {
            verify(&url, what, claimed, &digest)?;
        }
        let document = manifest::parse_manifest(&reply.body, reply.content_type.as_deref())
            .map_err(|e| unusable(&url, "manifest", e))?;
        Ok((url, digest, document))
    }

    /// Fetches the config of `manifest` and assembles the result.
    fn finish(
        &mut self,
        index_digest: Option<String>,
        manifest_digest: String,
        manifest: ImageManifest,
        manifest_url: &str,
    ) -> Result<ResolvedImage, Error> {
        let config_bytes = self.config(&manifest.config)?;
        let url = self.url("blobs", &manifest.config.digest);
        let config = manifest::parse_config(&config_bytes, manifest.layers.len())
            .map_err(|e| unusable(&url, "image config", e))?;
        let diff_ids = config.rootfs.diff_ids;
        let chain_ids = chain_ids(&diff_ids);
        if chain_ids.len() < diff_ids.len() {
            return Err(Error::BadDocument {
                url,
                what: "image config".into(),
                reason: format!(
                    "diff_id {:?} is not a sha256 digest",
                    diff_ids[chain_ids.len()]
                ),
            });
        }
        if let Some(bad) = manifest.layers.iter().find(|l| !is_sha256(&l.digest)) {
            return Err(Error::BadDocument {
                url: manifest_url.to_string(),
                what: "manifest".into(),
                reason: format!("layer digest {:?} is not a sha256 digest", bad.digest),
            });
        }
        let layers = manifest
            .layers
            .into_iter()
            .zip(diff_ids)
            .map(|(layer, diff_id)| ResolvedLayer {
                digest: layer.digest,
                compressed_size: layer.size,
                diff_id,
                media_type: layer.media_type,
                annotations: layer.annotations,
            })
            .collect();
        Ok(ResolvedImage {
            reference: self.reference.clone(),
            index_digest,
            manifest_digest,
            manifest_media_type: manifest.media_type,
            config_digest: manifest.config.digest,
            platform: Platform {
                os: config.os,
                architecture: config.architecture,
                variant: config.variant,
            },
            layers,
            chain_ids,
        })
    }

    /// Fetches the config blob `config` and checks its digest.
    fn config(&mut self, config: &Descriptor) -> Result<Vec<u8>, Error> {
        let url = self.url("blobs", &config.digest);
        if !is_sha256(&config.digest) {
            return Err(Error::BadDocument {
                url,
                what: "manifest".into(),
                reason: format!("config digest {:?} is not a sha256 digest", config.digest),
            });
        }
        if config.size > MAX_CONFIG {
            return Err(Error::TooLarge {
                url,
                what: "image config".into(),
                limit: MAX_CONFIG,
            });
        }
        let reply = self.get(&url, None, MAX_CONFIG, "image config")?;
        if reply.status == 404 {
            return Err(Error::BlobUnknown {
                detail: reply.detail(),
                url,
                digest: config.digest.clone(),
            });
        }
        ok(&url, &reply)?;
        verify(
            &url,
            "image config",
            Some(&config.digest),
            &sha256(&reply.body),
        )?;
        Ok(reply.body)
    }
}

/// An error unless `reply` is a 200.
fn ok(url: &str, reply: &Reply) -> Result<(), Error> {
    match reply.status {
        200 => Ok(()),
        status => Err(Error::Status {
            url: url.to_string(),
            status,
            detail: reply.detail(),
        }),
    }
}

/// An error if `claimed` names a digest other than `actual`.
fn verify(url: &str, what: &str, claimed: Option<&str>, actual: &str) -> Result<(), Error> {
    match claimed {
        Some(expected) if expected != actual => Err(Error::DigestMismatch {
            url: url.to_string(),
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The error for a document at `url` that could not be used.
fn unusable(url: &str, what: &str, e: Unusable) -> Error {
    let (url, what) = (url.to_string(), what.to_string());
    match e {
        Unusable::Json(reason) => Error::BadJson { url, what, reason },
        Unusable::Invalid(reason) => Error::BadDocument { url, what, reason },
        Unusable::MediaType(media_type, reason) => Error::UnsupportedMediaType {
            url,
            media_type,
            reason,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_off_loopback_is_refused_before_connecting() {
        // 192.0.2.0/24 is TEST-NET-1: nothing answers there, so only a
        // refusal made before connecting returns at once with this error.
        let reference: Reference = "192.0.2.1:5000/demo/app:1".parse().unwrap();
        let options = Options {
            insecure_plain_http: true,
            timeout: Duration::from_secs(30),
            ..Options::default()
        };
        let started = std::time::Instant::now();
        let err = resolve(&reference, &options).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert!(
            matches!(&err, Error::PlainHttpRefused { url } if url == "http://192.0.2.1:5000/v2/demo/app/"),
            "{err}"
        );
    }

    #[test]
    fn ranges_print_as_range_headers_and_match_content_range() {
        let span = ByteRange::Span { start: 10, len: 5 };
        assert_eq!(ByteRange::Prefix(512).to_string(), "bytes=0-511");
        assert_eq!(ByteRange::Suffix(8).to_string(), "bytes=-8");
        assert_eq!(span.to_string(), "bytes=10-14");
        assert!(ByteRange::Prefix(512).answered_by("bytes 0-511/9000"));
        assert!(!ByteRange::Prefix(512).answered_by("bytes 0-8999/9000"));
        assert!(ByteRange::Suffix(8).answered_by("bytes 8992-8999/9000"));
        assert!(!ByteRange::Suffix(8).answered_by("bytes 8992-8999/*"));
        assert!(!ByteRange::Suffix(8).answered_by("bytes 0-7/9000"));
        assert!(span.answered_by("bytes 10-14/*"));
        assert!(!span.answered_by("bytes 11-15/100"));
    }

    #[test]
    fn fault_hostile_content_ranges_are_not_honoured() {
        let huge = ByteRange::Span {
            start: u64::MAX,
            len: u64::MAX,
        };
        assert_eq!(huge.to_string(), format!("bytes={}-{}", u64::MAX, u64::MAX));
        for bad in [
            "",
            "bytes",
            "bytes 0-/10",
            "bytes -5/10",
            "items 0-9/10",
            "bytes 0-18446744073709551615/18446744073709551615",
        ] {
            assert!(!ByteRange::Prefix(10).answered_by(bad), "{bad}");
            assert!(!huge.answered_by(bad), "{bad}");
        }
    }

    #[test]
    fn errors_fall_in_their_class() {
        let url = || "https://r.example/v2/a/manifests/1".to_string();
        let cases = [
            (
                Error::ManifestUnknown {
                    url: url(),
                    reference: "r".into(),
                    detail: String::new(),
                },
                ErrorClass::NotFound,
            ),
            (
                Error::Resolve {
                    url: url(),
                    host: "r.example".into(),
                    reason: "x".into(),
                },
                ErrorClass::Resolution,
            ),
            (
                Error::Connect {
                    url: url(),
                    reason: "x".into(),
                },
                ErrorClass::Connection,
            ),
            (
                Error::Tls {
                    url: url(),
                    host: "r.example".into(),
                    reason: "x".into(),
                },
                ErrorClass::Tls,
            ),
            (
                Error::Unauthorized {
                    url: url(),
                    reason: "x".into(),
                },
                ErrorClass::Auth,
            ),
            (
                Error::Transport {
                    url: url(),
                    reason: "x".into(),
                },
                ErrorClass::Other,
            ),
        ];
        for (error, class) in cases {
            assert_eq!(error.class(), class, "{error}");
        }
    }

    #[test]
    fn digest_claims_are_checked() {
        let actual = sha256(b"x");
        assert!(verify("u", "m", None, &actual).is_ok());
        assert!(verify("u", "m", Some(&actual), &actual).is_ok());
        let err = verify("u", "m", Some(&sha256(b"y")), &actual).unwrap_err();
        assert!(err.to_string().contains(&actual), "{err}");
    }
}
