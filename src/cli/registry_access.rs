//! How `check-pull` reaches a registry: the options (credentials from
//! Docker's and the kubelet's files, CAs from `--ca-file` and containerd's
//! certs.d) and the exit code of each class of registry failure
//! (docs/exit-codes.md).

use std::path::{Path, PathBuf};

use anyhow::Context;
use headroom::config::Config;
use headroom::registry::{self, ca, credentials, ErrorClass, Platform, Reference};

/// The image, tag, blob or platform is not in the registry.
pub const EXIT_NOT_FOUND: u8 = 4;
/// The registry's name does not resolve.
pub const EXIT_RESOLUTION: u8 = 5;
/// The registry cannot be connected to (refused, reset, timed out).
pub const EXIT_CONNECTION: u8 = 6;
/// TLS failed (certificate not trusted, handshake failed).
pub const EXIT_TLS: u8 = 7;
/// Authentication refused (no credentials, or wrong ones).
pub const EXIT_AUTH: u8 = 8;

/// The exit code of registry failure `e`; 3 for anything not classed.
pub fn exit_code(e: &registry::Error) -> u8 {
    match e.class() {
        ErrorClass::NotFound => EXIT_NOT_FOUND,
        ErrorClass::Resolution => EXIT_RESOLUTION,
        ErrorClass::Connection => EXIT_CONNECTION,
        ErrorClass::Tls => EXIT_TLS,
        ErrorClass::Auth => EXIT_AUTH,
        ErrorClass::Other => super::EXIT_ERROR,
    }
}

/// The options to reach `reference`'s registry: plain HTTP as configured,
/// `platform`, the credentials found for it (Docker's config, then the
/// kubelet's files) and the CAs of `ca_file` and certs.d. A file that
/// exists but cannot be used is an error naming it.
pub fn options(
    reference: &Reference,
    ca_file: Option<&Path>,
    platform: Platform,
    config: &Config,
) -> anyhow::Result<registry::Options> {
    let files = credential_files(config);
    let found = credentials::find(reference, &files)?;
    let (credentials, credential_source) = found.unzip();
    if let Some(source) = &credential_source {
        tracing::info!(%source, registry = %reference.registry, "registry credentials");
    }
    Ok(registry::Options {
        insecure_plain_http: config.check_pull.plain_http,
        credentials,
        credential_source,
        ca_certs: ca_certs(reference, ca_file, &config.check_pull.certs_d)?,
        platform,
        ..registry::Options::default()
    })
}

/// The credential files searched, from this process's environment.
fn credential_files(config: &Config) -> Vec<credentials::CredentialFile> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let cwd = std::env::current_dir().ok();
    credentials::search_path(
        var("DOCKER_CONFIG").as_deref(),
        var("HOME").as_deref(),
        cwd.as_deref(),
        &config.layout.kubelet_root,
    )
}

/// The CA certificates of `ca_file` and of certs.d's directory for the
/// registry.
fn ca_certs(
    reference: &Reference,
    ca_file: Option<&Path>,
    certs_d: &Path,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let from_dir = ca::certs_d_files(certs_d, &reference.registry)?;
    let mut certs = Vec::new();
    for file in ca_file
        .into_iter()
        .chain(from_dir.iter().map(PathBuf::as_path))
    {
        certs.extend(
            ca::read_pem(file)
                .with_context(|| format!("the CA certificates for {}", reference.registry))?,
        );
    }
    Ok(certs)
}
