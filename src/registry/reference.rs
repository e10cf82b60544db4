//! Image references (`busybox`, `ghcr.io/o/app:1`, `host:5000/a@sha256:…`)
//! read the way Docker reads them, so `check-pull` resolves the same image
//! the kubelet would pull.
//!
//! Rules (distribution/reference `ParseNormalizedNamed`): the first path
//! component is a registry host only if it contains `.` or `:`, is
//! `localhost`, or has an uppercase letter; otherwise the registry is
//! `docker.io`, where one-component names get the `library/` prefix. A
//! reference with neither tag nor digest means `:latest`.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

use crate::digest::is_sha256;

/// The registry an unqualified name lives in.
pub const DOCKER_HUB: &str = "docker.io";
/// The host that serves Docker Hub's registry API.
const DOCKER_HUB_API: &str = "registry-1.docker.io";
/// Docker Hub's legacy name, normalised to [`DOCKER_HUB`].
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// The tag meant when a reference has neither tag nor digest.
const DEFAULT_TAG: &str = "latest";
/// Longest repository name (registry and path) Docker accepts.
const MAX_NAME: usize = 255;
/// Longest tag Docker accepts.
const MAX_TAG: usize = 128;

/// A fully qualified image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// Registry host, with its port if one was given (`docker.io`,
    /// `127.0.0.1:5000`, `[::1]:5000`).
    pub registry: String,
    /// Repository path inside the registry (`library/busybox`).
    pub repository: String,
    /// The tag; `latest` when neither tag nor digest was given, `None`
    /// for a digest-only reference.
    pub tag: Option<String>,
    /// The manifest digest (`sha256:…`), when the reference pins one.
    pub digest: Option<String>,
}

/// A string that is not a valid image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid image reference {reference:?}: {reason}")]
pub struct ReferenceError {
    /// The reference as given.
    pub reference: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Reference {
    /// The host that serves this registry's API (Docker Hub's differs
    /// from its name).
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on the loopback interface (`localhost`,
    /// `127.0.0.0/8`, `::1`; names other than `localhost` not resolved).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.strip_prefix('[') {
            Some(rest) => rest.split(']').next().unwrap_or_default(),
            None => self.registry.split(':').next().unwrap_or_default(),
        };
        super::transport::is_loopback(host)
    }

    /// What to ask the registry for: the digest when pinned (Docker pulls
    /// `name:tag@digest` by digest), else the tag.
    pub fn manifest_ref(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s).map_err(|reason| ReferenceError {
            reference: s.to_string(),
            reason,
        })
    }
}

impl serde::Serialize for Reference {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Parses `s`, saying in words what is wrong.
fn parse(s: &str) -> Result<Reference, String> {
    if s.is_empty() {
        return Err("it is empty".into());
    }
    let (rest, digest) = match s.split_once('@') {
        Some((rest, digest)) => (rest, Some(check_digest(digest)?)),
        None => (s, None),
    };
    // A tag's `:` comes after the last `/`; an earlier one is a port.
    let last = rest.rfind('/').map_or(0, |i| i + 1);
    let (name, tag) = match rest[last..].rfind(':') {
        Some(i) => (&rest[..last + i], Some(check_tag(&rest[last + i + 1..])?)),
        None => (rest, None),
    };
    if name.len() > MAX_NAME {
        return Err(format!("the name is longer than {MAX_NAME} characters"));
    }
    let (registry, path) = split_registry(name);
    check_host(registry)?;
    check_path(path)?;
    let registry = if registry == DOCKER_HUB_LEGACY {
        DOCKER_HUB
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path.to_string()
    };
    let tag = match (tag, &digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (tag, _) => tag,
    };
    Ok(Reference {
        registry: registry.to_string(),
        repository,
        tag,
        digest,
    })
}

/// Splits a name into registry host and repository path.
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, path))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (first, path)
        }
        _ => (DOCKER_HUB, name),
    }
}

/// A registry host: DNS name or IPv4 address, or `[IPv6]`, with an
/// optional port.
fn check_host(host: &str) -> Result<(), String> {
    let bad = || format!("{host:?} is not a valid registry host");
    let port = if let Some(inner) = host.strip_prefix('[') {
        let (addr, after) = inner.split_once(']').ok_or_else(bad)?;
        addr.parse::<Ipv6Addr>().map_err(|_| bad())?;
        match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or_else(bad)?),
        }
    } else {
        let (name, port) = match host.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (host, None),
        };
        if !name.split('.').all(dns_label_ok) {
            return Err(bad());
        }
        port
    };
    match port {
        Some(p) if !p.bytes().all(|b| b.is_ascii_digit()) || p.parse::<u16>().is_err() => Err(
            format!("{p:?} is not a valid port in registry host {host:?}"),
        ),
        _ => Ok(()),
    }
}

/// One label of a DNS name: letters, digits and inner `-`.
fn dns_label_ok(label: &str) -> bool {
    !label.is_empty()
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// A repository path: `/`-separated components of lowercase letters and
/// digits joined by `.`, `_`, `__` or runs of `-`.
fn check_path(path: &str) -> Result<(), String> {
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err("repository name must be lowercase".into());
    }
    for component in path.split('/') {
        if !component_ok(component) {
            return Err(format!(
                "{component:?} is not a valid repository path component"
            ));
        }
    }
    Ok(())
}

/// Whether one path component follows the grammar of [`check_path`].
fn component_ok(component: &str) -> bool {
    let alnum = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    let mut separators = component.split(alnum).filter(|s| !s.is_empty());
    let starts_and_ends = component.starts_with(alnum) && component.ends_with(alnum);
    starts_and_ends
        && separators.all(|sep| matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-'))
}

/// A tag: a word character then up to 127 word characters, `.` or `-`.
fn check_tag(tag: &str) -> Result<String, String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let ok = tag.len() <= MAX_TAG
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-');
    if ok {
        Ok(tag.to_string())
    } else {
        Err(format!("{tag:?} is not a valid tag"))
    }
}

/// A digest: only `sha256:<64 lowercase hex>` is supported.
fn check_digest(digest: &str) -> Result<String, String> {
    if is_sha256(digest) {
        Ok(digest.to_string())
    } else if digest.starts_with("sha256:") {
        Err(format!("{digest:?} is not a valid sha256 digest"))
    } else {
        Err(format!(
            "digest {digest:?} is not supported: only sha256 digests are"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(s: &str) -> (String, String, Option<String>, Option<String>) {
        let r: Reference = s.parse().unwrap();
        (r.registry, r.repository, r.tag, r.digest)
    }

    fn owned(
        r: &str,
        p: &str,
        t: Option<&str>,
        d: Option<&str>,
    ) -> (String, String, Option<String>, Option<String>) {
        (r.into(), p.into(), t.map(Into::into), d.map(Into::into))
    }

    #[test]
    fn names_are_normalised_like_docker() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let cases = [
            (
                "busybox",
                owned("docker.io", "library/busybox", Some("latest"), None),
            ),
            (
                "busybox:1.36",
                owned("docker.io", "library/busybox", Some("1.36"), None),
            ),
            (
                "bitnami/redis",
                owned("docker.io", "bitnami/redis", Some("latest"), None),
            ),
            (
                "index.docker.io/busybox",
                owned("docker.io", "library/busybox", Some("latest"), None),
            ),
            (
                "docker.io/library/busybox:1",
                owned("docker.io", "library/busybox", Some("1"), None),
            ),
            (
                "localhost/app",
                owned("localhost", "app", Some("latest"), None),
            ),
            (
                "localhost:5000/a/b:v1",
                owned("localhost:5000", "a/b", Some("v1"), None),
            ),
            (
                "127.0.0.1:5000/demo/base:1",
                owned("127.0.0.1:5000", "demo/base", Some("1"), None),
            ),
            (
                "[::1]:5000/x",
                owned("[::1]:5000", "x", Some("latest"), None),
            ),
            ("Host/app", owned("Host", "app", Some("latest"), None)),
            (
                "ghcr.io/o/app__x.y-z",
                owned("ghcr.io", "o/app__x.y-z", Some("latest"), None),
            ),
            (
                "localhost:5000",
                owned("docker.io", "library/localhost", Some("5000"), None),
            ),
        ];
        for (input, want) in cases {
            assert_eq!(parsed(input), want, "{input}");
        }
        assert_eq!(
            parsed(&format!("busybox@{d}")),
            owned("docker.io", "library/busybox", None, Some(&d))
        );
        assert_eq!(
            parsed(&format!("q.io:443/a:t@{d}")),
            owned("q.io:443", "a", Some("t"), Some(&d))
        );
    }

    #[test]
    fn display_and_request_target() {
        let d = format!("sha256:{}", "0".repeat(64));
        let r: Reference = format!("busybox:1@{d}").parse().unwrap();
        assert_eq!(r.to_string(), format!("docker.io/library/busybox:1@{d}"));
        assert_eq!(r.manifest_ref(), d);
        assert_eq!(r.api_host(), "registry-1.docker.io");
        let r: Reference = "127.0.0.1:5000/a".parse().unwrap();
        assert_eq!(r.to_string(), "127.0.0.1:5000/a:latest");
        assert_eq!(
            (r.manifest_ref(), r.api_host()),
            ("latest", "127.0.0.1:5000")
        );
    }

    #[test]
    fn bad_references_are_named_with_the_reason() {
        let cases = [
            ("", "empty"),
            ("Busybox", "lowercase"),
            ("busybox:", "not a valid tag"),
            ("busybox:-x", "not a valid tag"),
            ("a//b", "path component"),
            ("a/-b", "path component"),
            ("a/b.", "path component"),
            ("a/b___c", "path component"),
            ("host:99999/a", "port"),
            ("host:/a", "port"),
            ("-bad.io/a", "registry host"),
            ("[::zz]:5000/a", "registry host"),
            ("busybox@sha256:abc", "sha256 digest"),
            ("busybox@md5:abc", "only sha256"),
        ];
        for (input, reason) in cases {
            let err = input.parse::<Reference>().unwrap_err();
            assert_eq!(err.reference, input);
            assert!(err.reason.contains(reason), "{input}: {err}");
            assert!(err.to_string().contains(&format!("{input:?}")), "{err}");
        }
        let long = format!("a/{}", "b".repeat(300));
        assert!(long.parse::<Reference>().is_err());
        let long_tag = format!("a:{}", "t".repeat(129));
        assert!(long_tag.parse::<Reference>().is_err());
    }
}
