//! What can go wrong resolving an image in a registry; every error names
//! the URL that failed and, where it helps, what was asked for.

use super::reference::ReferenceError;

/// What kind of failure an [`Error`] is, for exit codes and scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// The manifest, tag, blob or platform is not in the registry.
    NotFound,
    /// The registry's host name does not resolve.
    Resolution,
    /// No connection: refused, reset, timed out.
    Connection,
    /// TLS failed: certificate not trusted, handshake failed.
    Tls,
    /// Authentication refused: no credentials, or wrong ones.
    Auth,
    /// Anything else: a bad reference, a bad document, a bad answer.
    Other,
}

/// A failure to resolve an image.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image reference does not parse.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// Plain HTTP was asked for a host that is not loopback, or a URL
    /// needed it without `insecure_plain_http`.
    #[error(
        "refusing plain HTTP to {url}: plain HTTP is only used for a loopback registry \
         (localhost, 127.0.0.0/8, ::1) when insecure plain HTTP is asked for; use HTTPS"
    )]
    PlainHttpRefused {
        /// The URL refused.
        url: String,
    },
    /// A URL (a token realm, a redirect) that cannot be followed.
    #[error("cannot follow URL {url}: {reason}")]
    BadUrl {
        /// The URL as given by the registry.
        url: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The registry's host name does not resolve.
    #[error("cannot resolve host {host} ({url}): {reason}")]
    Resolve {
        /// The URL requested.
        url: String,
        /// The host name that did not resolve.
        host: String,
        /// The resolver's error.
        reason: String,
    },
    /// No connection, or it broke: refused, reset, timed out.
    #[error("cannot connect to {url}: {reason}")]
    Connect {
        /// The URL requested.
        url: String,
        /// The transport's error.
        reason: String,
    },
    /// The TLS handshake failed: a certificate not trusted, a bad
    /// certificate or a protocol failure.
    #[error(
        "TLS with {host} failed ({url}): {reason}; if its certificate is signed by a \
         private CA, pass it with --ca-file or put it in certs.d/{host}/ca.crt"
    )]
    Tls {
        /// The URL requested.
        url: String,
        /// The host (and port) whose certificate or handshake failed.
        host: String,
        /// The TLS library's error.
        reason: String,
    },
    /// Any other transport failure: a malformed answer, too many redirects.
    #[error("{url}: {reason}")]
    Transport {
        /// The URL requested.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The registry refused the byte range asked for (HTTP 416).
    #[error("{url}: range {range} not satisfiable (HTTP 416{detail})")]
    RangeNotSatisfiable {
        /// The URL requested.
        url: String,
        /// The `Range` header sent.
        range: String,
        /// The registry's own error text, `: `-prefixed, if any.
        detail: String,
    },
    /// The registry does not know the tag or digest (HTTP 404).
    #[error("{url}: manifest unknown: {reference} is not in the registry (HTTP 404{detail})")]
    ManifestUnknown {
        /// The URL requested.
        url: String,
        /// The image reference (or manifest digest) asked for.
        reference: String,
        /// The registry's own error text, `: `-prefixed, if any.
        detail: String,
    },
    /// The registry does not have a blob a manifest names (HTTP 404).
    #[error("{url}: blob {digest} unknown (HTTP 404{detail})")]
    BlobUnknown {
        /// The URL requested.
        url: String,
        /// The blob's digest.
        digest: String,
        /// The registry's own error text, `: `-prefixed, if any.
        detail: String,
    },
    /// Access was refused, or no credentials or token could be obtained.
    #[error("{url}: unauthorized: {reason}")]
    Unauthorized {
        /// The URL requested (the registry's or the token realm's).
        url: String,
        /// What was refused and why.
        reason: String,
    },
    /// Any other HTTP status.
    #[error("{url}: HTTP {status}{detail}")]
    Status {
        /// The URL requested.
        url: String,
        /// The HTTP status code.
        status: u16,
        /// The registry's own error text, `: `-prefixed, if any.
        detail: String,
    },
    /// A document or token response is not the JSON expected.
    #[error("{url}: {what} is not valid JSON: {reason}")]
    BadJson {
        /// The URL requested.
        url: String,
        /// Which document.
        what: String,
        /// The parser's error.
        reason: String,
    },
    /// A document parses but breaks the spec.
    #[error("{url}: {what} is invalid: {reason}")]
    BadDocument {
        /// The URL requested.
        url: String,
        /// Which document.
        what: String,
        /// What is wrong.
        reason: String,
    },
    /// The bytes served do not hash to the digest that names them.
    #[error("{url}: digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// The URL requested.
        url: String,
        /// Which document, and who named the expected digest.
        what: String,
        /// The digest asked for.
        expected: String,
        /// The digest of the bytes received.
        actual: String,
    },
    /// A manifest, config or layer of a kind not supported.
    #[error("{url}: unsupported media type {media_type:?}: {reason}")]
    UnsupportedMediaType {
        /// The URL requested.
        url: String,
        /// The media type found.
        media_type: String,
        /// Why it is not supported.
        reason: String,
    },
    /// The index has no manifest for the platform asked for.
    #[error("{url}: no manifest for platform {platform} in the index (it offers: {offered})")]
    NoPlatform {
        /// The URL of the index.
        url: String,
        /// The platform asked for.
        platform: String,
        /// The platforms the index offers.
        offered: String,
    },
    /// A response body larger than its cap.
    #[error("{url}: {what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// The URL requested.
        url: String,
        /// Which document.
        what: String,
        /// The cap in bytes.
        limit: u64,
    },
}

impl Error {
    /// The class of this failure.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::ManifestUnknown { .. }
            | Error::BlobUnknown { .. }
            | Error::NoPlatform { .. } => ErrorClass::NotFound,
            Error::Resolve { .. } => ErrorClass::Resolution,
            Error::Connect { .. } => ErrorClass::Connection,
            Error::Tls { .. } => ErrorClass::Tls,
            Error::Unauthorized { .. } => ErrorClass::Auth,
            _ => ErrorClass::Other,
        }
    }
}
