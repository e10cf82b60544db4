//! Extra CA certificates for a registry: a PEM bundle (`--ca-file`) and
//! containerd's hosts directory (`certs.d`), read as containerd reads it:
//! the first of `<root>/<host>_<port>_`, `<root>/<host:port>`,
//! `<root>/_default` that exists; in it, `hosts.toml`'s `ca` (a path or a
//! list, relative to the directory; top level and every `[host."…"]`
//! table), or without a `hosts.toml` every `*.crt` file. Unlike containerd,
//! a `hosts.toml` that does not parse is an error, not a silent fallback.

use std::path::{Path, PathBuf};

use ureq::tls::PemItem;

/// Largest PEM or `hosts.toml` file read.
const MAX_FILE: u64 = 4 << 20;
/// Most CA files taken from one hosts directory.
const MAX_FILES: usize = 64;

/// A CA file or hosts directory that could not be used.
#[derive(Debug, thiserror::Error)]
#[error("CA certificates {}: {reason}", path.display())]
pub struct CaError {
    /// The file or directory.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// The certificates (DER) of PEM file `path`; at least one.
pub fn read_pem(path: &Path) -> Result<Vec<Vec<u8>>, CaError> {
    let bytes = read_bounded(path)?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert.der().to_vec()),
            Ok(_) => {}
            Err(e) => return Err(error(path, format!("not valid PEM: {e}"))),
        }
    }
    if certs.is_empty() {
        return Err(error(path, "no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// The CA files containerd's hosts directory `root` names for `registry`
/// (`host` or `host:port`, as in the image reference); none when no
/// directory is there.
pub fn certs_d_files(root: &Path, registry: &str) -> Result<Vec<PathBuf>, CaError> {
    let Some(dir) = host_dir(root, registry)? else {
        return Ok(Vec::new());
    };
    let hosts = dir.join("hosts.toml");
    let files = match std::fs::metadata(&hosts) {
        Ok(meta) if meta.len() > 0 => hosts_toml_cas(&hosts, &dir)?,
        Ok(_) => crt_files(&dir)?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => crt_files(&dir)?,
        Err(e) => return Err(error(&hosts, e.to_string())),
    };
    if files.len() > MAX_FILES {
        return Err(error(&dir, format!("more than {MAX_FILES} CA files")));
    }
    Ok(files)
}

/// The first hosts directory of `registry` that exists under `root`.
fn host_dir(root: &Path, registry: &str) -> Result<Option<PathBuf>, CaError> {
    let mut candidates = Vec::new();
    if let Some((host, port)) = registry.rsplit_once(':').filter(|(h, _)| !h.is_empty()) {
        candidates.push(root.join(format!("{host}_{port}_")));
    }
    candidates.push(root.join(registry));
    candidates.push(root.join("_default"));
    for dir in candidates {
        match std::fs::metadata(&dir) {
            Ok(_) => return Ok(Some(dir)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(error(&dir, e.to_string())),
        }
    }
    Ok(None)
}

/// The `ca` paths of `hosts.toml` (top level and every `[host."…"]`).
fn hosts_toml_cas(hosts: &Path, dir: &Path) -> Result<Vec<PathBuf>, CaError> {
    let bytes = read_bounded(hosts)?;
    let text = std::str::from_utf8(&bytes).map_err(|e| error(hosts, e.to_string()))?;
    let table: toml::Table = toml::from_str(text).map_err(|e| {
        error(
            hosts,
            format!("not valid TOML: {}", e.to_string().trim_end()),
        )
    })?;
    let host_tables = table
        .get("host")
        .and_then(toml::Value::as_table)
        .into_iter()
        .flat_map(|t| t.values().filter_map(toml::Value::as_table));
    let mut out = Vec::new();
    for t in std::iter::once(&table).chain(host_tables) {
        let paths: Vec<&toml::Value> = match t.get("ca") {
            None => continue,
            Some(toml::Value::Array(list)) => list.iter().collect(),
            Some(one) => vec![one],
        };
        for p in paths {
            let p = p
                .as_str()
                .ok_or_else(|| error(hosts, format!("ca = {p}: expected a path")))?;
            out.push(dir.join(p));
        }
    }
    Ok(out)
}

/// The `*.crt` files of `dir`, sorted.
fn crt_files(dir: &Path) -> Result<Vec<PathBuf>, CaError> {
    let entries = std::fs::read_dir(dir).map_err(|e| error(dir, e.to_string()))?;
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| error(dir, e.to_string()))?.path();
        if path.extension().is_some_and(|e| e == "crt") && path.is_file() {
            out.push(path);
            if out.len() > MAX_FILES {
                break;
            }
        }
    }
    out.sort();
    Ok(out)
}

/// `path`'s bytes, at most [`MAX_FILE`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, CaError> {
    match crate::small_file::read(path, MAX_FILE) {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(error(path, "no such file".to_string())),
        Err(e) => Err(error(path, e.to_string())),
    }
}

fn error(path: &Path, reason: String) -> CaError {
    CaError {
        path: path.to_path_buf(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_dir_and_its_cas_are_found_as_containerd_finds_them() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        assert!(certs_d_files(r, "reg.example:5000").unwrap().is_empty());

        std::fs::create_dir(r.join("_default")).unwrap();
        std::fs::write(r.join("_default/any.crt"), "x").unwrap();
        assert_eq!(
            certs_d_files(r, "reg.example:5000").unwrap(),
            [r.join("_default/any.crt")]
        );

        let dir = r.join("reg.example:5000");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("b.crt"), "x").unwrap();
        std::fs::write(dir.join("a.crt"), "x").unwrap();
        std::fs::write(dir.join("client.cert"), "x").unwrap();
        assert_eq!(
            certs_d_files(r, "reg.example:5000").unwrap(),
            [dir.join("a.crt"), dir.join("b.crt")]
        );

        std::fs::write(
            dir.join("hosts.toml"),
            "server = \"https://reg.example:5000\"\nca = \"top.pem\"\n[host.\"https://mirror.example\"]\nca = [\"/abs/m.pem\", \"rel/m2.pem\"]\n",
        )
        .unwrap();
        assert_eq!(
            certs_d_files(r, "reg.example:5000").unwrap(),
            [
                dir.join("top.pem"),
                PathBuf::from("/abs/m.pem"),
                dir.join("rel/m2.pem")
            ]
        );

        let escaped = r.join("reg.example_5000_");
        std::fs::create_dir(&escaped).unwrap();
        std::fs::write(escaped.join("e.crt"), "x").unwrap();
        assert_eq!(
            certs_d_files(r, "reg.example:5000").unwrap(),
            [escaped.join("e.crt")]
        );
    }

    #[test]
    fn fault_bad_hosts_files_and_pem_are_named() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("reg.example");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("hosts.toml"), "ca = [1]\n").unwrap();
        let err = certs_d_files(root.path(), "reg.example").unwrap_err();
        assert_eq!(err.path, dir.join("hosts.toml"));
        std::fs::write(dir.join("hosts.toml"), "ca = \n").unwrap();
        let err = certs_d_files(root.path(), "reg.example").unwrap_err();
        assert!(err.reason.contains("TOML"), "{err}");

        let pem = dir.join("x.pem");
        std::fs::write(&pem, "not a certificate").unwrap();
        assert!(read_pem(&pem).unwrap_err().reason.contains("no PEM"));
        std::fs::write(
            &pem,
            "-----BEGIN CERTIFICATE-----\n!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert_eq!(read_pem(&pem).unwrap_err().path, pem);
    }
}
