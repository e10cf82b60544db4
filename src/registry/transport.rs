//! HTTP for the registry client, under one policy for every URL it touches
//! (the registry, token realms, redirects): HTTPS, or plain HTTP to a
//! loopback host only when the caller asked for it. Redirects are followed
//! here, not by ureq, so each hop is checked and credentials never follow
//! a redirect to another host. Every request has a deadline and every body
//! a size cap.
//!
//! Extra CA certificates (`--ca-file`, containerd's certs.d) are trusted
//! for the registry's own host only, by a second agent: ureq takes either
//! specific roots or the webpki set, not both, so other hosts (a token
//! realm elsewhere, blob storage) keep the webpki roots.

use std::io::Read as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use ureq::http::Uri;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use super::error::Error;

/// Redirect hops followed per request (blob storage redirects once).
const MAX_REDIRECTS: usize = 5;
/// Largest error body read, for the registry's own error text.
const MAX_ERROR_BODY: u64 = 64 << 10;
/// Longest registry error text kept in a message.
const MAX_DETAIL: usize = 300;

/// An HTTP client with the URL policy, timeouts and caps.
pub(super) struct Http {
    agent: ureq::Agent,
    /// The registry's authority and the agent that trusts its extra CAs.
    private: Option<(String, ureq::Agent)>,
    insecure_plain_http: bool,
}

/// Extra CA certificates (DER) trusted for one registry authority.
pub(super) struct PrivateRoots<'a> {
    /// `host` or `host:port`, as in the registry's URLs.
    pub(super) authority: &'a str,
    /// The certificates, DER-encoded.
    pub(super) certs: &'a [Vec<u8>],
}

/// One answer, its body already read.
pub(super) struct Reply {
    /// The HTTP status.
    pub(super) status: u16,
    /// `Content-Type`, if sent.
    pub(super) content_type: Option<String>,
    /// `Docker-Content-Digest`, if sent.
    pub(super) docker_digest: Option<String>,
    /// `Content-Range`, if sent.
    pub(super) content_range: Option<String>,
    /// Every `WWW-Authenticate` header.
    pub(super) challenges: Vec<String>,
    /// The body: whole for a 2xx answer, else at most [`MAX_ERROR_BODY`].
    pub(super) body: Vec<u8>,
}

impl Reply {
    /// The registry's error text for a failed request, `: `-prefixed, or
    /// empty. Registries answer `{"errors":[{"code":…,"message":…}]}`.
    pub(super) fn detail(&self) -> String {
        #[derive(serde::Deserialize)]
        struct Errors {
            errors: Vec<Entry>,
        }
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            code: String,
            #[serde(default)]
            message: String,
        }
        let text = match serde_json::from_slice::<Errors>(&self.body) {
            Ok(e) => e
                .errors
                .iter()
                .map(|e| format!("{} {}", e.code, e.message).trim().to_string())
                .collect::<Vec<_>>()
                .join("; "),
            Err(_) => String::from_utf8_lossy(&self.body).trim().to_string(),
        };
        match text.char_indices().nth(MAX_DETAIL) {
            _ if text.is_empty() => String::new(),
            Some((cut, _)) => format!(": {}…", &text[..cut]),
            None => format!(": {text}"),
        }
    }
}

/// A GET request.
pub(super) struct Get<'a> {
    /// The URL.
    pub(super) url: &'a str,
    /// `Accept`, if any.
    pub(super) accept: Option<&'a str>,
    /// `Authorization`, if any; dropped on a redirect to another origin.
    pub(super) authorization: Option<&'a str>,
    /// Query parameters, encoded here.
    pub(super) query: &'a [(&'a str, &'a str)],
    /// `Range`, if any.
    pub(super) range: Option<&'a str>,
    /// Cap on a successful body.
    pub(super) cap: u64,
    /// Read at most `cap` bytes of a successful body and drop the rest
    /// (and the connection) instead of failing on a longer one.
    pub(super) truncate: bool,
    /// What is fetched, for errors.
    pub(super) what: &'a str,
}

impl Http {
    /// A client whose requests each finish within `timeout`. Proxies come
    /// from the environment (`HTTPS_PROXY`, `NO_PROXY`, …), except in
    /// insecure mode: plain HTTP is for the loopback registry only, and a
    /// proxy would carry it off the host. `private` CAs are trusted for
    /// their authority only.
    pub(super) fn new(
        timeout: Duration,
        insecure_plain_http: bool,
        private: Option<PrivateRoots<'_>>,
    ) -> Self {
        let agent = |roots: RootCerts| {
            let proxy = if insecure_plain_http {
                None
            } else {
                ureq::Proxy::try_from_env()
            };
            ureq::Agent::config_builder()
                .proxy(proxy)
                .http_status_as_error(false)
                .max_redirects(0)
                .timeout_global(Some(timeout))
                .tls_config(TlsConfig::builder().root_certs(roots).build())
                .user_agent(concat!("headroom/", env!("CARGO_PKG_VERSION")))
                .build()
                .new_agent()
        };
        let private = private.filter(|p| !p.certs.is_empty()).map(|p| {
            let certs = p
                .certs
                .iter()
                .map(|der| Certificate::from_der(der).to_owned());
            let roots = RootCerts::Specific(Arc::new(certs.collect()));
            (p.authority.to_ascii_lowercase(), agent(roots))
        });
        Http {
            agent: agent(RootCerts::WebPki),
            private,
            insecure_plain_http,
        }
    }

    /// The agent for `uri`: the private-CA one for the registry's host.
    fn agent_for(&self, uri: &Uri) -> &ureq::Agent {
        let authority = uri.authority().map(|a| a.as_str().to_ascii_lowercase());
        match &self.private {
            Some((host, agent)) if authority.as_deref() == Some(host.as_str()) => agent,
            _ => &self.agent,
        }
    }

    /// Parses `url` and checks it against the policy: HTTPS, or plain
    /// HTTP to a loopback host when insecure plain HTTP was asked for.
    pub(super) fn check(&self, url: &str) -> Result<Uri, Error> {
        let bad = |reason: &str| Error::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: Uri = url.parse().map_err(|e| bad(&format!("{e}")))?;
        let host = uri.host().ok_or_else(|| bad("it names no host"))?;
        match uri.scheme_str() {
            Some("https") => Ok(uri),
            Some("http") if self.insecure_plain_http && is_loopback(host) => Ok(uri),
            Some("http") => Err(Error::PlainHttpRefused {
                url: url.to_string(),
            }),
            _ => Err(bad("only https (and http to loopback) URLs are followed")),
        }
    }

    /// Sends `get`, following redirects under the policy, and reads the body.
    pub(super) fn get(&self, get: &Get<'_>) -> Result<Reply, Error> {
        let origin = self.check(get.url)?;
        let mut uri = origin.clone();
        let mut query = get.query;
        for _ in 0..=MAX_REDIRECTS {
            let same_origin =
                uri.scheme() == origin.scheme() && uri.authority() == origin.authority();
            let mut request = self
                .agent_for(&uri)
                .get(&uri)
                .query_pairs(query.iter().copied());
            if let Some(accept) = get.accept {
                request = request.header("Accept", accept);
            }
            if let Some(range) = get.range {
                request = request.header("Range", range);
            }
            if let Some(auth) = get.authorization.filter(|_| same_origin) {
                request = request.header("Authorization", auth);
            }
            let mut response = request.call().map_err(|e| transport(get.url, &uri, e))?;
            let status = response.status().as_u16();
            let location = header(&response, "location");
            if let (true, Some(location)) = (is_redirect(status), location) {
                uri = self.check(&join(&uri, &location))?;
                // The new URL carries its own query; ours was for the first hop.
                query = &[];
                continue;
            }
            return read(get, &uri, status, &mut response);
        }
        Err(Error::Transport {
            url: get.url.to_string(),
            reason: format!("more than {MAX_REDIRECTS} redirects"),
        })
    }
}

/// Reads the headers used here and the body of `response` (from `uri`),
/// capped.
fn read(
    get: &Get<'_>,
    uri: &Uri,
    status: u16,
    response: &mut ureq::http::Response<ureq::Body>,
) -> Result<Reply, Error> {
    let too_large = || Error::TooLarge {
        url: get.url.to_string(),
        what: get.what.to_string(),
        limit: get.cap,
    };
    let ok = (200..300).contains(&status);
    let cap = if ok {
        get.cap
    } else {
        MAX_ERROR_BODY.min(get.cap)
    };
    let truncate = get.truncate && ok;
    if ok && !truncate && response.body().content_length().is_some_and(|n| n > cap) {
        return Err(too_large());
    }
    let challenges = response
        .headers()
        .get_all("www-authenticate")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_string))
        .collect();
    let content_type = header(response, "content-type");
    let docker_digest = header(response, "docker-content-digest");
    let content_range = header(response, "content-range");
    let body = if truncate {
        // Only `cap` bytes are read; dropping the response drops the
        // connection with the rest unread.
        let mut body = Vec::new();
        let reader = response.body_mut().as_reader();
        match reader.take(cap).read_to_end(&mut body) {
            Ok(_) => body,
            Err(e) => return Err(transport(get.url, uri, ureq::Error::from(e))),
        }
    } else {
        match response.body_mut().with_config().limit(cap).read_to_vec() {
            Ok(body) => body,
            Err(ureq::Error::BodyExceedsLimit(_)) if ok => return Err(too_large()),
            // An error body is only for the message; a huge one is dropped.
            Err(ureq::Error::BodyExceedsLimit(_)) => Vec::new(),
            Err(e) => return Err(transport(get.url, uri, e)),
        }
    };
    Ok(Reply {
        status,
        content_type,
        docker_digest,
        content_range,
        challenges,
        body,
    })
}

/// The transport failure `e` of a request for `url` (now at `uri`), by
/// class: name resolution, connection, TLS, or anything else.
fn transport(url: &str, uri: &Uri, e: ureq::Error) -> Error {
    let url = url.to_string();
    // host:port, as containerd's certs.d names the registry's directory.
    let host = uri.authority().map_or("", |a| a.as_str()).to_string();
    let reason = e.to_string();
    match e {
        ureq::Error::HostNotFound => Error::Resolve { url, host, reason },
        ureq::Error::Timeout(_) | ureq::Error::ConnectionFailed => Error::Connect { url, reason },
        ureq::Error::Tls(_) | ureq::Error::Pem(_) => Error::Tls { url, host, reason },
        ureq::Error::Rustls(tls) => Error::Tls {
            url,
            host,
            reason: tls.to_string(),
        },
        ureq::Error::Io(io) => match io_class(&io) {
            IoClass::Tls(reason) => Error::Tls { url, host, reason },
            IoClass::Resolve => Error::Resolve { url, host, reason },
            IoClass::Connect => Error::Connect { url, reason },
            IoClass::Other => Error::Transport { url, reason },
        },
        _ => Error::Transport { url, reason },
    }
}

/// What an I/O error of a request was.
enum IoClass {
    /// A TLS failure, with rustls's own words.
    Tls(String),
    /// Name resolution failed.
    Resolve,
    /// The connection failed or broke.
    Connect,
    /// Anything else.
    Other,
}

/// Classifies `io` by its source chain and kind. std reports a failed
/// `getaddrinfo` only by its message, so that is what is matched.
fn io_class(io: &std::io::Error) -> IoClass {
    use std::io::ErrorKind as K;
    let mut source: Option<&(dyn std::error::Error + 'static)> = io.get_ref().map(|e| e as _);
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return IoClass::Tls(tls.to_string());
        }
        source = e.source();
    }
    match io.kind() {
        _ if io
            .to_string()
            .contains("failed to lookup address information") =>
        {
            IoClass::Resolve
        }
        K::ConnectionRefused
        | K::ConnectionReset
        | K::ConnectionAborted
        | K::NotConnected
        | K::TimedOut
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::AddrNotAvailable => IoClass::Connect,
        _ => IoClass::Other,
    }
}

/// Header `name` of `response` as text, if present and readable.
fn header(response: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    let value = response.headers().get(name)?;
    value.to_str().ok().map(str::to_string)
}

/// Whether `status` is a redirect that carries a `Location`.
fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// `location` resolved against `base` (absolute, scheme-relative,
/// absolute-path or relative-path).
fn join(base: &Uri, location: &str) -> String {
    let scheme = base.scheme_str().unwrap_or("https");
    let authority = base.authority().map_or("", |a| a.as_str());
    if location.contains("://") {
        location.to_string()
    } else if let Some(rest) = location.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if location.starts_with('/') {
        format!("{scheme}://{authority}{location}")
    } else {
        let path = base.path();
        let dir = path.rfind('/').map_or("/", |i| &path[..=i]);
        format!("{scheme}://{authority}{dir}{location}")
    }
}

/// Whether `host` (a name, an IPv4 address or a `[IPv6]` address) is the
/// loopback interface. Names other than `localhost` are not resolved: a
/// DNS answer must not be able to turn plain HTTP on.
pub(super) fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_hosts_count_as_loopback() {
        for host in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.8.9.10",
            "[::1]",
            "::1",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "10.0.0.1",
            "localhost.example.com",
            "0.0.0.0",
            "[::]",
            "example.com",
            "127.0.0.1.nip.io",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn the_policy_refuses_plain_http_off_loopback_even_when_asked() {
        let strict = Http::new(Duration::from_secs(1), false, None);
        let loose = Http::new(Duration::from_secs(1), true, None);
        assert!(strict.check("https://registry.example/v2/").is_ok());
        assert!(matches!(
            strict.check("http://127.0.0.1:5000/v2/"),
            Err(Error::PlainHttpRefused { .. })
        ));
        assert!(loose.check("http://127.0.0.1:5000/v2/").is_ok());
        assert!(loose.check("http://[::1]:5000/v2/").is_ok());
        assert!(matches!(
            loose.check("http://10.1.2.3:5000/v2/"),
            Err(Error::PlainHttpRefused { url }) if url == "http://10.1.2.3:5000/v2/"
        ));
        assert!(matches!(
            loose.check("ftp://127.0.0.1/x"),
            Err(Error::BadUrl { .. })
        ));
        assert!(matches!(
            loose.check("/relative"),
            Err(Error::BadUrl { .. })
        ));
    }

    #[test]
    fn redirect_locations_resolve_against_the_request() {
        let base: Uri = "https://r.example:5000/v2/a/blobs/sha256:x?q=1"
            .parse()
            .unwrap();
        let cases = [
            ("https://cdn.example/b?sig=1", "https://cdn.example/b?sig=1"),
            ("//cdn.example/b", "https://cdn.example/b"),
            ("/v2/a/blobs/y", "https://r.example:5000/v2/a/blobs/y"),
            ("y", "https://r.example:5000/v2/a/blobs/y"),
        ];
        for (location, want) in cases {
            assert_eq!(join(&base, location), want, "{location}");
        }
    }

    #[test]
    fn registry_error_bodies_become_short_details() {
        let reply = |body: &[u8]| Reply {
            status: 404,
            content_type: None,
            docker_digest: None,
            content_range: None,
            challenges: Vec::new(),
            body: body.to_vec(),
        };
        let json =
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown","detail":{}}]}"#;
        assert_eq!(reply(json).detail(), ": MANIFEST_UNKNOWN manifest unknown");
        assert_eq!(reply(b"  not found\n").detail(), ": not found");
        assert_eq!(reply(b"").detail(), "");
        assert!(reply("é".repeat(1000).as_bytes()).detail().ends_with('…'));
    }
}
