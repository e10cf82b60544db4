//! Registry credentials from where Docker and the kubelet keep them:
//! Docker's `config.json` (`auths`, `credHelpers`, `credsStore`, read and
//! run by the `docker_credential` crate) and the legacy `.dockercfg`.
//!
//! The files are searched in order; a missing file, or one with nothing
//! for the registry, passes to the next. A file that exists but cannot be
//! read or parsed, or whose helper fails, is an error naming it: a broken
//! file silently giving an anonymous request would hide the real cause.

use std::fmt;
use std::path::{Path, PathBuf};

use docker_credential::{CredentialRetrievalError, DockerCredential};

use super::auth::Credentials;
use super::reference::{Reference, DOCKER_HUB};

/// Largest config file read.
const MAX_CONFIG_FILE: u64 = 1 << 20;
/// The key Docker files Docker Hub's credentials under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// A file that may hold credentials, and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialFile {
    /// Its path.
    pub path: PathBuf,
    /// `true` for the legacy `.dockercfg` (servers at the top level, no
    /// `auths`), `false` for `config.json`.
    pub legacy: bool,
}

/// Where credentials came from (never the secret itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialSource {
    /// The file that named them.
    pub file: PathBuf,
    /// How that file gave them.
    pub via: Via,
}

/// How a config file gave credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// Its `auths` entry.
    Auths,
    /// The helper its `credHelpers` names for the registry.
    Helper(String),
    /// The helper its `credsStore` names.
    Store(String),
}

impl fmt::Display for CredentialSource {
    /// `/root/.docker/config.json (credHelpers: pass)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (", self.file.display())?;
        match &self.via {
            Via::Auths => write!(f, "auths)"),
            Via::Helper(h) => write!(f, "credHelpers: {h})"),
            Via::Store(h) => write!(f, "credsStore: {h})"),
        }
    }
}

/// A credential file that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// It exists but cannot be read.
    #[error("cannot read registry credentials file {}: {reason}", path.display())]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// It is not the JSON expected, or its entry does not decode.
    #[error("registry credentials file {} is invalid: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Its credential helper failed.
    #[error("the credential helper of {source_} failed for {server}: {reason}")]
    Helper {
        /// The file and helper.
        source_: CredentialSource,
        /// The server key asked for.
        server: String,
        /// What the helper or the crate said.
        reason: String,
    },
    /// It holds an identity token (an OAuth2 refresh token), which this
    /// client does not exchange.
    #[error(
        "{source_} holds an identity token for {server}: not supported; \
         log in with a user name and password (or token) instead"
    )]
    IdentityToken {
        /// The file.
        source_: CredentialSource,
        /// The server key.
        server: String,
    },
}

/// Where to look, from the environment given: `$DOCKER_CONFIG/config.json`
/// or `~/.docker/config.json` (Docker's), then the kubelet's search (its
/// root dir, the working dir, `~/.docker`, `/.docker`: `config.json` in
/// each, then `.dockercfg` in each). Duplicates are dropped.
pub fn search_path(
    docker_config: Option<&Path>,
    home: Option<&Path>,
    cwd: Option<&Path>,
    kubelet_root: &Path,
) -> Vec<CredentialFile> {
    let home_docker = home.map(|h| h.join(".docker"));
    let docker_dir = docker_config.map(Path::to_path_buf).or(home_docker.clone());
    let kubelet_dirs: Vec<PathBuf> = [
        Some(kubelet_root.to_path_buf()),
        cwd.map(Path::to_path_buf),
        home_docker,
        Some(PathBuf::from("/.docker")),
    ]
    .into_iter()
    .flatten()
    .collect();
    let file = |dir: &Path, legacy: bool| CredentialFile {
        path: dir.join(if legacy { ".dockercfg" } else { "config.json" }),
        legacy,
    };
    let mut out: Vec<CredentialFile> = Vec::new();
    let candidates = docker_dir
        .iter()
        .map(|d| file(d, false))
        .chain(kubelet_dirs.iter().map(|d| file(d, false)))
        .chain(kubelet_dirs.iter().map(|d| file(d, true)));
    for candidate in candidates {
        if !out.contains(&candidate) {
            out.push(candidate);
        }
    }
    out
}

/// The key a registry's credentials are filed under: Docker Hub's legacy
/// URL, else `host[:port]` (`https://host/v1/` keys match it too).
pub fn server_key(reference: &Reference) -> &str {
    if reference.registry == DOCKER_HUB {
        DOCKER_HUB_KEY
    } else {
        &reference.registry
    }
}

/// The first credentials `files` hold for `reference`'s registry, with
/// their source; `None` when none does.
pub fn find(
    reference: &Reference,
    files: &[CredentialFile],
) -> Result<Option<(Credentials, CredentialSource)>, CredentialError> {
    let server = server_key(reference);
    for file in files {
        if let Some(found) = from_file(file, server)? {
            return Ok(Some(found));
        }
    }
    Ok(None)
}

/// The credentials `file` holds for `server`, if it exists and has some.
fn from_file(
    file: &CredentialFile,
    server: &str,
) -> Result<Option<(Credentials, CredentialSource)>, CredentialError> {
    let path = &file.path;
    let Some(bytes) = read_bounded(path)? else {
        return Ok(None);
    };
    let invalid = |reason: String| CredentialError::Invalid {
        path: path.clone(),
        reason,
    };
    let value: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
    if !value.is_object() {
        return Err(invalid("not a JSON object".into()));
    }
    let config = if file.legacy {
        serde_json::json!({ "auths": value })
    } else {
        value
    };
    let source = CredentialSource {
        file: path.clone(),
        via: via(&config, server),
    };
    let text = config.to_string();
    match docker_credential::get_credential_from_reader(text.as_bytes(), server) {
        Ok(DockerCredential::UsernamePassword(username, password)) => {
            Ok(Some((Credentials { username, password }, source)))
        }
        Ok(DockerCredential::IdentityToken(_)) => Err(CredentialError::IdentityToken {
            source_: source,
            server: server.to_string(),
        }),
        Err(CredentialRetrievalError::NoCredentialConfigured) => Ok(None),
        Err(e @ CredentialRetrievalError::ConfigReadError) => Err(invalid(e.to_string())),
        Err(e @ CredentialRetrievalError::CredentialDecodingError)
        | Err(e @ CredentialRetrievalError::CredentialMismatchError) => {
            Err(invalid(format!("the entry for {server}: {e}")))
        }
        Err(e) => Err(CredentialError::Helper {
            source_: source,
            server: server.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// The file's bytes, `None` if it does not exist; at most
/// [`MAX_CONFIG_FILE`].
fn read_bounded(path: &Path) -> Result<Option<Vec<u8>>, CredentialError> {
    crate::small_file::read(path, MAX_CONFIG_FILE).map_err(|e| CredentialError::Unreadable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// Which part of `config` answers for `server`, in the order
/// `docker_credential` asks them: `credHelpers`, an `auths` entry that
/// holds a secret, then `credsStore`. Used only to name the source.
fn via(config: &serde_json::Value, server: &str) -> Via {
    let text = |v: Option<&serde_json::Value>| v.and_then(|v| v.as_str()).map(str::to_string);
    if let Some(helper) =
        text(config.pointer(&format!("/credHelpers/{}", escape(server)))).filter(|h| !h.is_empty())
    {
        return Via::Helper(helper);
    }
    let has_secret = config
        .get("auths")
        .and_then(|a| a.as_object())
        .is_some_and(|auths| {
            auths.iter().any(|(key, entry)| {
                same_server(key, server)
                    && ["auth", "password", "identitytoken"]
                        .iter()
                        .any(|k| entry.get(k).is_some_and(|v| !v.is_null()))
            })
        });
    match text(config.get("credsStore")) {
        Some(store) if !has_secret => Via::Store(store),
        _ => Via::Auths,
    }
}

/// `s` escaped for a JSON pointer.
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

/// Whether an `auths` key names `server` (`host`, `https://host/v1/`).
fn same_server(key: &str, server: &str) -> bool {
    let bare = |k: &str| -> String {
        let rest = k
            .strip_prefix("https://")
            .or_else(|| k.strip_prefix("http://"));
        match rest {
            Some(rest) => rest.split('/').next().unwrap_or_default().to_string(),
            None => k.to_string(),
        }
    };
    key == server || bare(key) == bare(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> CredentialFile {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        CredentialFile {
            path,
            legacy: name == ".dockercfg",
        }
    }

    fn reference(s: &str) -> Reference {
        s.parse().unwrap()
    }

    #[test]
    fn docker_then_kubelet_files_are_searched_once_each() {
        let files = search_path(
            None,
            Some(Path::new("/home/u")),
            Some(Path::new("/work")),
            Path::new("/var/lib/kubelet"),
        );
        let paths: Vec<String> = files.iter().map(|f| f.path.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/home/u/.docker/config.json",
                "/var/lib/kubelet/config.json",
                "/work/config.json",
                "/.docker/config.json",
                "/var/lib/kubelet/.dockercfg",
                "/work/.dockercfg",
                "/home/u/.docker/.dockercfg",
                "/.docker/.dockercfg",
            ]
        );
        let with_env = search_path(Some(Path::new("/d")), None, None, Path::new("/k"));
        assert_eq!(with_env[0].path, Path::new("/d/config.json"));
    }

    #[test]
    fn auths_keys_match_as_docker_writes_them() {
        let dir = tempfile::tempdir().unwrap();
        let b64 = |s: &str| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(s)
        };
        let config = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": b64("hub:h")},
            "https://reg.example:5000/v1/": {"auth": b64("legacy:l")},
            "plain.example": {"username": "p", "password": "pw"},
        }});
        let file = write(dir.path(), "config.json", &config.to_string());
        let files = [file.clone()];
        let cases = [
            ("busybox", "hub", "h"),
            ("reg.example:5000/a/b:1", "legacy", "l"),
            ("plain.example/a", "p", "pw"),
        ];
        for (image, user, password) in cases {
            let (c, source) = find(&reference(image), &files).unwrap().unwrap();
            assert_eq!((c.username.as_str(), c.password.as_str()), (user, password));
            assert_eq!(
                source.to_string(),
                format!("{} (auths)", file.path.display())
            );
        }
        assert!(find(&reference("other.example/a"), &files)
            .unwrap()
            .is_none());
    }

    #[test]
    fn legacy_dockercfg_is_read_and_missing_files_are_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let missing = CredentialFile {
            path: dir.path().join("absent.json"),
            legacy: false,
        };
        let legacy = write(
            dir.path(),
            ".dockercfg",
            r#"{"reg.example": {"username": "old", "password": "s"}}"#,
        );
        let (c, source) = find(&reference("reg.example/a"), &[missing, legacy.clone()])
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "old");
        assert_eq!(source.file, legacy.path);
    }

    #[test]
    fn fault_broken_files_are_errors_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("config.json", "{not json"),
            ("config.json", "[1]"),
            (
                "config.json",
                r#"{"auths": {"reg.example": {"auth": "%%%"}}}"#,
            ),
            (
                "config.json",
                r#"{"auths": {"reg.example": {"identitytoken": "t"}}}"#,
            ),
        ];
        for (name, text) in cases {
            let file = write(dir.path(), name, text);
            let err = find(&reference("reg.example/a"), std::slice::from_ref(&file)).unwrap_err();
            let message = err.to_string();
            assert!(
                message.contains(&file.path.display().to_string()),
                "{message}"
            );
            assert!(!message.contains("%%%"), "{message}");
        }
        let huge = write(dir.path(), "config.json", &" ".repeat(2 << 20));
        let err = find(&reference("reg.example/a"), &[huge]).unwrap_err();
        assert!(err.to_string().contains("limit"), "{err}");
    }

    #[test]
    fn the_source_names_the_helper_or_store() {
        let helper =
            serde_json::json!({"credHelpers": {"reg.example": "pass"}, "credsStore": "desktop"});
        assert_eq!(via(&helper, "reg.example"), Via::Helper("pass".into()));
        assert_eq!(via(&helper, "other.example"), Via::Store("desktop".into()));
        let stored = serde_json::json!({"auths": {"reg.example": {}}, "credsStore": "desktop"});
        assert_eq!(via(&stored, "reg.example"), Via::Store("desktop".into()));
    }
}
