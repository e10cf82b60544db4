//! Careful reads of Docker's metadata files.
//!
//! Everything under the Docker root is untrusted input: names must be plain
//! 64-hex IDs before they are used as path components, files are opened
//! without following symlinks (and without blocking on a FIFO), and no file
//! is read past a size cap, so a hostile tree cannot exhaust memory.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use nix::errno::Errno;
use nix::fcntl::OFlag;
use serde::de::DeserializeOwned;

use super::READER;
use crate::runtime::Problem;

/// Largest JSON document read (image configs, `config.v2.json`, `repositories.json`).
pub(super) const MAX_JSON_BYTES: u64 = 64 << 20;
/// Largest one-line file read (`cache-id`, `mount-id`, `lastUpdated`).
const MAX_LINE_BYTES: u64 = 4096;

/// IDs are the only names used as path components: lowercase 64-hex only.
pub(super) use crate::digest::is_hex64;

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// Reads the regular file at `path` whole, refusing symlinks, special files
/// and files over `cap` bytes.
pub(super) fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags((OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK).bits())
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(code) if code == Errno::ELOOP as i32 => {
                invalid("is a symbolic link; not followed".to_string())
            }
            _ => e,
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(invalid("is not a regular file".to_string()));
    }
    if meta.len() > cap {
        return Err(invalid(format!(
            "is {} bytes, over the {cap}-byte limit; not read",
            meta.len()
        )));
    }
    read_at_most(file, cap)
}

fn read_at_most(file: File, cap: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    file.take(cap + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > cap {
        return Err(invalid(format!(
            "grew past the {cap}-byte limit while read"
        )));
    }
    Ok(buf)
}

/// Reads and parses a JSON file; a parse failure is an `InvalidData` error.
pub(super) fn read_json<T: DeserializeOwned>(path: &Path) -> io::Result<T> {
    parse_json(&read_capped(path, MAX_JSON_BYTES)?)
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> io::Result<T> {
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("invalid JSON: {e}")))
}

/// [`read_json`] of a content-addressed file (an image config, named by
/// the sha256 of its bytes): a damaged file is refused, not believed.
pub(super) fn read_addressed_json<T: DeserializeOwned>(path: &Path, hex: &str) -> io::Result<T> {
    let bytes = read_capped(path, MAX_JSON_BYTES)?;
    let actual = crate::digest::sha256(&bytes);
    if actual.strip_prefix("sha256:") != Some(hex) {
        return Err(invalid(format!("is damaged: its bytes hash to {actual}")));
    }
    parse_json(&bytes)
}

/// Reads a small one-line text file, trimmed.
pub(super) fn read_line(path: &Path) -> io::Result<String> {
    let bytes = read_capped(path, MAX_LINE_BYTES)?;
    let text = String::from_utf8(bytes).map_err(|_| invalid("is not UTF-8".to_string()))?;
    Ok(text.trim().to_string())
}

/// Reads a file that holds one 64-hex ID (`cache-id`, `mount-id`).
pub(super) fn read_id(path: &Path) -> io::Result<String> {
    let id = read_line(path)?;
    if id.is_empty() {
        return Err(invalid("is empty".to_string()));
    }
    if !is_hex64(&id) {
        return Err(invalid(format!("holds {id:.80?}, not a 64-hex ID")));
    }
    Ok(id)
}

/// [`hex_entries`] of a directory of the store: none when it does not
/// exist (a daemon that never stored one has none yet), and a problem when
/// it cannot be listed.
pub(super) fn listed_ids(dir: &Path, problems: &mut Vec<Problem>) -> Vec<String> {
    match hex_entries(dir) {
        Ok(ids) => ids,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => {
            problems.push(READER.problem_from(dir.display().to_string(), &e));
            Vec::new()
        }
    }
}

/// The names in `dir` that are 64-hex IDs, sorted; other names are Docker's
/// own scratch entries (`tmp`, `<id>-removing`, `<id>-init`) and are skipped.
pub(super) fn hex_entries(dir: &Path) -> io::Result<Vec<String>> {
    let mut ids = Vec::new();
    for entry in fs::read_dir(dir)? {
        if let Some(name) = entry?.file_name().to_str().filter(|n| is_hex64(n)) {
            ids.push(name.to_string());
        }
    }
    ids.sort();
    Ok(ids)
}

/// True when `path` is a directory itself (a symlink to one does not count).
pub(crate) fn is_real_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Parses Go's RFC 3339 timestamps (`time.RFC3339Nano`), with `Z` or a
/// numeric offset; `None` for anything else or before 1970.
pub(crate) fn parse_time(s: &str) -> Option<SystemTime> {
    let (local, offset_secs) = split_offset(s.trim())?;
    let utc_as_local = humantime::parse_rfc3339_weak(local).ok()?;
    let offset = Duration::from_secs(offset_secs.unsigned_abs());
    // A local time ahead of UTC (+hh:mm) is that much later than the instant.
    if offset_secs >= 0 {
        utc_as_local.checked_sub(offset)
    } else {
        utc_as_local.checked_add(offset)
    }
}

/// Splits `…Z` or `…±hh:mm` into the local part and the offset in seconds.
fn split_offset(s: &str) -> Option<(&str, i64)> {
    if let Some(local) = s.strip_suffix('Z') {
        return Some((local, 0));
    }
    let split = s.len().checked_sub(6)?;
    let (local, zone) = (s.get(..split)?, s.get(split..)?.as_bytes());
    let sign = match zone[0] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    if zone[3] != b':'
        || !zone
            .iter()
            .enumerate()
            .all(|(i, b)| matches!(i, 0 | 3) || b.is_ascii_digit())
    {
        return None;
    }
    let digits = |a: u8, b: u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
    let minutes = digits(zone[1], zone[2]) * 60 + digits(zone[4], zone[5]);
    Some((local, sign * minutes * 60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn hex_ids_are_strict() {
        let id = "a".repeat(64);
        assert!(is_hex64(&id));
        assert!(!is_hex64(&"A".repeat(64)));
        assert!(!is_hex64(&"a".repeat(63)));
        assert!(!is_hex64("../../../../etc/passwd"));
    }

    #[test]
    fn times_match_date_utility() {
        // Oracle: GNU date converts the same strings to Unix seconds.
        for s in [
            "2024-03-01T12:34:56.123456789Z",
            "2024-03-01T12:34:56+02:00",
            "2023-12-31T23:30:00.5-05:30",
            "2019-06-18T10:00:00Z",
        ] {
            let out = std::process::Command::new("date")
                .args(["-u", "-d", s, "+%s"])
                .output()
                .unwrap();
            let want: u64 = String::from_utf8(out.stdout)
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let got = parse_time(s).unwrap();
            let secs = got
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            assert_eq!(secs, want, "{s}");
        }
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_time("yesterday"), None);
        assert_eq!(parse_time("2024-03-01T12:34:56+0x:00"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn reads_are_capped_and_refuse_odd_files() {
        let dir = tempfile::tempdir().unwrap();
        let big = dir.path().join("big");
        fs::write(&big, vec![b' '; 5000]).unwrap();
        let err = read_line(&big).unwrap_err();
        assert!(
            err.to_string().contains("over the 4096-byte limit"),
            "{err}"
        );

        let link = dir.path().join("link");
        symlink(&big, &link).unwrap();
        let err = read_capped(&link, 10_000).unwrap_err();
        assert!(err.to_string().contains("symbolic link"), "{err}");

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_capped(&fifo, 10).unwrap_err();
        assert!(err.to_string().contains("not a regular file"), "{err}");

        let empty = dir.path().join("empty");
        fs::write(&empty, "\n").unwrap();
        assert!(read_id(&empty).unwrap_err().to_string().contains("empty"));
        fs::write(&empty, "../../etc\n").unwrap();
        assert!(read_id(&empty)
            .unwrap_err()
            .to_string()
            .contains("not a 64-hex"));
    }
}
