//! Registry authentication: answering a `401` challenge.
//!
//! Registries (distribution's token spec) answer an anonymous request with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…`; the client asks
//! the realm for a token (anonymously, or with Basic credentials) and sends
//! it as `Authorization: Bearer`. Some registries ask for `Basic` directly.

use std::collections::BTreeMap;
use std::fmt;

use base64::Engine as _;

use super::credentials::CredentialSource;
use super::error::Error;
use super::transport::{Get, Http};

/// Largest token response read.
const MAX_TOKEN: u64 = 64 << 10;

/// A user name and password (or token) for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password or access token.
    pub password: String,
}

impl fmt::Debug for Credentials {
    /// Never prints the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl Credentials {
    /// The `Authorization: Basic` value for these credentials.
    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// Credentials with where they came from, for messages.
#[derive(Clone, Copy)]
pub(super) struct Named<'a> {
    /// The credentials.
    pub(super) credentials: &'a Credentials,
    /// The file (and helper) that gave them, if known.
    pub(super) source: Option<&'a CredentialSource>,
}

/// How a request was made, for a refusal: `anonymously`, `with the
/// credentials from <source>` or `with the credentials given`.
pub(super) fn who(credentials: Option<Named<'_>>) -> String {
    match credentials {
        None => "anonymously".into(),
        Some(Named {
            source: Some(source),
            ..
        }) => format!("with the credentials from {source}"),
        Some(_) => "with the credentials given".into(),
    }
}

/// One challenge of a `WWW-Authenticate` header.
#[derive(Debug, PartialEq)]
struct Challenge {
    /// The scheme, lowercased (`bearer`, `basic`).
    scheme: String,
    /// Parameters, names lowercased.
    params: BTreeMap<String, String>,
}

/// The `Authorization` value that answers the challenges of a 401 from
/// `url`: a Bearer token fetched from the realm, or Basic credentials.
/// `scope` is used when the challenge names none.
pub(super) fn authorize(
    http: &Http,
    url: &str,
    headers: &[String],
    credentials: Option<Named<'_>>,
    scope: &str,
) -> Result<String, Error> {
    let unauthorized = |reason: String| Error::Unauthorized {
        url: url.to_string(),
        reason,
    };
    let mut challenges = Vec::new();
    for header in headers {
        challenges.extend(
            parse(header)
                .map_err(|e| unauthorized(format!("bad WWW-Authenticate {header:?}: {e}")))?,
        );
    }
    let find = |scheme: &str| challenges.iter().find(|c| c.scheme == scheme);
    if let Some(bearer) = find("bearer") {
        return token(http, url, bearer, credentials, scope).map(|t| format!("Bearer {t}"));
    }
    match (find("basic"), credentials) {
        (Some(_), Some(c)) => Ok(c.credentials.basic()),
        (Some(_), None) => Err(unauthorized(
            "the registry asks for Basic credentials and none were given".into(),
        )),
        (None, _) if challenges.is_empty() => {
            Err(unauthorized("HTTP 401 without a challenge".into()))
        }
        (None, _) => Err(unauthorized(format!(
            "no supported challenge (want Bearer or Basic) in {headers:?}"
        ))),
    }
}

/// Fetches a token from the realm of the Bearer challenge `bearer`.
fn token(
    http: &Http,
    url: &str,
    bearer: &Challenge,
    credentials: Option<Named<'_>>,
    scope: &str,
) -> Result<String, Error> {
    let realm = bearer
        .params
        .get("realm")
        .ok_or_else(|| Error::Unauthorized {
            url: url.to_string(),
            reason: "the Bearer challenge names no realm".into(),
        })?;
    let scope = bearer.params.get("scope").map_or(scope, String::as_str);
    let mut query = vec![("scope", scope)];
    if let Some(service) = bearer.params.get("service") {
        query.push(("service", service.as_str()));
    }
    let basic = credentials.map(|c| c.credentials.basic());
    let reply = http.get(&Get {
        url: realm,
        accept: Some("application/json"),
        authorization: basic.as_deref(),
        query: &query,
        range: None,
        cap: MAX_TOKEN,
        truncate: false,
        what: "token response",
    })?;
    if reply.status != 200 {
        return Err(Error::Unauthorized {
            url: realm.clone(),
            reason: format!(
                "the token service refused a token for {scope} {} (HTTP {}{})",
                who(credentials),
                reply.status,
                reply.detail()
            ),
        });
    }
    parse_token(&reply.body).map_err(|reason| Error::BadJson {
        url: realm.clone(),
        what: "token response".into(),
        reason,
    })
}

/// The token of a token response: `token`, else `access_token`.
fn parse_token(body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
    }
    let response: TokenResponse = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    [response.token, response.access_token]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty())
        .ok_or_else(|| "it has neither token nor access_token".into())
}

/// The challenges of one `WWW-Authenticate` header value: a scheme, then
/// `name=value` or `name="quoted value"` parameters, comma-separated; a
/// word not followed by `=` starts the next challenge.
fn parse(header: &str) -> Result<Vec<Challenge>, String> {
    let mut cursor = Cursor { rest: header };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        cursor.skip(|c| c == ',' || c.is_whitespace());
        if cursor.rest.is_empty() {
            return Ok(out);
        }
        let word = cursor.word();
        if word.is_empty() {
            return Err(format!("unexpected text at {:?}", cursor.rest));
        }
        cursor.skip(char::is_whitespace);
        if !cursor.eat('=') {
            out.push(Challenge {
                scheme: word.to_ascii_lowercase(),
                params: BTreeMap::new(),
            });
            continue;
        }
        cursor.skip(char::is_whitespace);
        let value = if cursor.eat('"') {
            cursor.quoted()?
        } else {
            cursor.word().to_string()
        };
        let challenge = out
            .last_mut()
            .ok_or_else(|| format!("parameter {word:?} before any scheme"))?;
        challenge.params.insert(word.to_ascii_lowercase(), value);
    }
}

/// A position in a header being parsed.
struct Cursor<'a> {
    rest: &'a str,
}

impl<'a> Cursor<'a> {
    /// Skips characters matching `f`.
    fn skip(&mut self, f: impl Fn(char) -> bool) {
        self.rest = self.rest.trim_start_matches(f);
    }

    /// Consumes `c` if it comes next.
    fn eat(&mut self, c: char) -> bool {
        match self.rest.strip_prefix(c) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// A run of token characters (no space, `,`, `=` or `"`).
    fn word(&mut self) -> &'a str {
        let end = self
            .rest
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | '=' | '"'))
            .unwrap_or(self.rest.len());
        let (word, rest) = self.rest.split_at(end);
        self.rest = rest;
        word
    }

    /// The rest of a quoted string whose opening `"` was consumed.
    fn quoted(&mut self) -> Result<String, String> {
        let mut value = String::new();
        let mut chars = self.rest.char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.rest = &self.rest[i + 1..];
                    return Ok(value);
                }
                '\\' => value.extend(chars.next().map(|(_, c)| c)),
                c => value.push(c),
            }
        }
        Err("unterminated quoted string".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn challenges_parse_like_docker_hub_sends_them() {
        let hub = r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#;
        assert_eq!(
            parse(hub).unwrap(),
            [Challenge {
                scheme: "bearer".into(),
                params: params(&[
                    ("realm", "https://auth.docker.io/token"),
                    ("service", "registry.docker.io"),
                    ("scope", "repository:library/busybox:pull"),
                ]),
            }]
        );
        let two = r#"Basic realm="a \"b\"", Bearer Realm=https://t.example/x ,scope="s,t""#;
        let parsed = parse(two).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed[0].params, params(&[("realm", "a \"b\"")]));
        assert_eq!(parsed[1].scheme, "bearer");
        assert_eq!(
            parsed[1].params,
            params(&[("realm", "https://t.example/x"), ("scope", "s,t")])
        );
        assert!(parse(r#"Bearer realm="open"#).is_err());
        assert!(parse("realm=x").is_err());
        assert!(parse(r#"Bearer "x""#).is_err());
        assert!(parse("").unwrap().is_empty());
    }

    #[test]
    fn token_responses_use_token_then_access_token() {
        assert_eq!(
            parse_token(br#"{"token":"a","access_token":"b"}"#).unwrap(),
            "a"
        );
        assert_eq!(
            parse_token(br#"{"access_token":"b","expires_in":60}"#).unwrap(),
            "b"
        );
        assert_eq!(
            parse_token(br#"{"token":"","access_token":"b"}"#).unwrap(),
            "b"
        );
        assert!(parse_token(br#"{"expires_in":60}"#).is_err());
        assert!(parse_token(b"<html>").is_err());
    }

    #[test]
    fn basic_credentials_encode_as_rfc_7617_and_never_print() {
        let c = Credentials {
            username: "Aladdin".into(),
            password: "open sesame".into(),
        };
        // The example of RFC 7617 section 2.
        assert_eq!(c.basic(), "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        assert!(!format!("{c:?}").contains("sesame"));
    }

    #[test]
    fn challenges_without_a_usable_scheme_are_refused_before_any_request() {
        let http = Http::new(std::time::Duration::from_secs(1), false, None);
        let url = "https://r.example/v2/a/manifests/1";
        let cases: [(&[&str], &str); 4] = [
            (&[], "without a challenge"),
            (&["Negotiate"], "no supported challenge"),
            (&["Basic realm=x"], "Basic credentials"),
            (&["Bearer service=x"], "no realm"),
        ];
        for (headers, want) in cases {
            let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
            let err = authorize(&http, url, &headers, None, "repository:a:pull").unwrap_err();
            assert!(
                matches!(&err, Error::Unauthorized { url: u, reason } if u == url && reason.contains(want)),
                "{err}"
            );
        }
        let c = Credentials {
            username: "u".into(),
            password: "p".into(),
        };
        let named = Named {
            credentials: &c,
            source: None,
        };
        let basic = authorize(&http, url, &["Basic realm=x".into()], Some(named), "s").unwrap();
        assert_eq!(basic, c.basic());
        let plain = authorize(
            &http,
            url,
            &[r#"Bearer realm="http://10.0.0.1/token""#.into()],
            None,
            "s",
        );
        assert!(matches!(plain, Err(Error::PlainHttpRefused { .. })));
    }
}
