//! OCI distribution client for `check-pull`: resolves an image reference in
//! its registry — index → platform manifest → config — without pulling any
//! layer, and returns what a pull would bring: each layer's compressed size
//! and diff ID, and the chain IDs that name the committed layers on a node,
//! so the caller can tell which layers are already there.
//!
//! Every document is checked against the digest that names it. The client
//! is synchronous (ureq), speaks HTTPS (rustls with webpki roots, so it
//! works in a FROM-scratch image), and uses plain HTTP only for a loopback
//! registry when asked to.

mod auth;
mod error;
mod manifest;
mod reference;
mod transport;

use std::time::Duration;

use serde::Serialize;

pub use crate::digest::{chain_ids, is_sha256, sha256};
pub use auth::Credentials;
pub use error::Error;
pub use manifest::Platform;
pub use reference::{Reference, ReferenceError, DOCKER_HUB};

use manifest::{Descriptor, Fetched, ImageManifest, Unusable};
use transport::{Get, Http, Reply};

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
}

/// Resolves `reference` in its registry: the manifest for
/// `options.platform`, its config and layers. Downloads documents only
/// (manifests ≤ [`MAX_MANIFEST`], config ≤ [`MAX_CONFIG`]), never layers.
pub fn resolve(reference: &Reference, options: &Options) -> Result<ResolvedImage, Error> {
    let mut session = Session::new(reference, options)?;
    let mut fetched = session.manifest(reference.manifest_ref(), reference.digest.as_deref())?;
    let mut index_digest = None;
    for _ in 0..MAX_NESTING {
        let (url, digest, document) = fetched;
        let entries = match document {
            Fetched::Manifest(manifest) => {
                return session.finish(index_digest, digest, manifest, &url);
            }
            Fetched::Index(entries) => entries,
        };
        index_digest.get_or_insert(digest);
        let entry =
            manifest::pick(&entries, &options.platform).map_err(|offered| Error::NoPlatform {
                url: url.clone(),
                platform: options.platform.to_string(),
                offered,
            })?;
        fetched = session.manifest(&entry.digest, Some(&entry.digest))?;
    }
    Err(Error::BadDocument {
        url: session.url("manifests", reference.manifest_ref()),
        what: "index".into(),
        reason: format!("indexes nested deeper than {MAX_NESTING} levels"),
    })
}

/// A manifest as fetched: its URL, its digest and what it holds.
type FetchedAt = (String, String, Fetched);

/// Requests to one repository, with the authorization obtained so far.
struct Session<'a> {
    http: Http,
    /// `https://host/v2/<repository>/`.
    base: String,
    reference: &'a Reference,
    options: &'a Options,
    /// The `Authorization` value that last worked.
    authorization: Option<String>,
}

impl<'a> Session<'a> {
    /// A session for `reference`; refuses plain HTTP off loopback before
    /// any connection is made.
    fn new(reference: &'a Reference, options: &'a Options) -> Result<Self, Error> {
        let scheme = if options.insecure_plain_http {
            "http"
        } else {
            "https"
        };
        let http = Http::new(options.timeout, options.insecure_plain_http);
        let base = format!(
            "{scheme}://{}/v2/{}/",
            reference.api_host(),
            reference.repository
        );
        http.check(&base)?;
        Ok(Session {
            http,
            base,
            reference,
            options,
            authorization: None,
        })
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
        let mut retried = false;
        loop {
            let reply = self.http.get(&Get {
                url,
                accept,
                authorization: self.authorization.as_deref(),
                query: &[],
                cap,
                what,
            })?;
            match reply.status {
                401 if !retried => {
                    let scope = format!("repository:{}:pull", self.reference.repository);
                    let credentials = self.options.credentials.as_ref();
                    let auth =
                        auth::authorize(&self.http, url, &reply.challenges, credentials, &scope)?;
                    self.authorization = Some(auth);
                    retried = true;
                }
                401 | 403 => {
                    return Err(Error::Unauthorized {
                        url: url.to_string(),
                        reason: format!(
                            "HTTP {} for {}{}",
                            reply.status,
                            self.reference,
                            reply.detail()
                        ),
                    })
                }
                _ => return Ok(reply),
            }
        }
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
    fn digest_claims_are_checked() {
        let actual = sha256(b"x");
        assert!(verify("u", "m", None, &actual).is_ok());
        assert!(verify("u", "m", Some(&actual), &actual).is_ok());
        let err = verify("u", "m", Some(&sha256(b"y")), &actual).unwrap_err();
        assert!(err.to_string().contains(&actual), "{err}");
    }
}
