//! The explicit source: agents named on the command line
//! (`--agents host:port,host:port`) or in a file, one a line.

use std::path::{Path, PathBuf};

use super::Agent;

/// The largest agents file read.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// The most agents one run asks: a bound on what a list can make us do.
pub const MAX_AGENTS: usize = 100_000;

/// Why the list cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// An entry is not `host:port`.
    #[error("agent {entry:?} is not host:port")]
    NotHostPort {
        /// The entry as written.
        entry: String,
    },
    /// The file cannot be read.
    #[error("cannot read the agents file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not there.
    #[error("the agents file {} does not exist", .0.display())]
    NoFile(PathBuf),
    /// No agent is named.
    #[error("no agent is named")]
    Empty,
    /// More than [`MAX_AGENTS`].
    #[error("more than {MAX_AGENTS} agents")]
    TooMany,
}

/// The agents in `text`: entries separated by commas, spaces or lines;
/// `#` starts a comment. Each is `host:port` (`[v6]:port`), named by
/// itself until it answers; a repeated one is asked once.
pub fn parse(text: &str) -> Result<Vec<Agent>, ListError> {
    let mut agents: Vec<Agent> = Vec::new();
    let entries = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.split([',', ' ', '\t']))
        .filter(|entry| !entry.is_empty());
    for entry in entries {
        if !is_host_port(entry) {
            return Err(ListError::NotHostPort {
                entry: entry.to_string(),
            });
        }
        if agents.len() == MAX_AGENTS {
            return Err(ListError::TooMany);
        }
        if !agents.iter().any(|a| a.address == entry) {
            agents.push(Agent {
                node: entry.to_string(),
                address: entry.to_string(),
            });
        }
    }
    if agents.is_empty() {
        return Err(ListError::Empty);
    }
    Ok(agents)
}

/// The agents listed in the file `path` (at most [`MAX_FILE_BYTES`]).
pub fn from_file(path: &Path) -> Result<Vec<Agent>, ListError> {
    let text = crate::small_file::read_text(path, MAX_FILE_BYTES)
        .map_err(|source| ListError::File {
            path: path.to_path_buf(),
            source,
        })?
        .ok_or_else(|| ListError::NoFile(path.to_path_buf()))?;
    parse(&text)
}

/// Whether `entry` is `host:port` with a port from 1 to 65535 and a host
/// of name or address characters only (nothing that changes the URL).
fn is_host_port(entry: &str) -> bool {
    let Some((host, port)) = entry.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_split_on_commas_spaces_and_lines_with_comments() {
        let agents = parse("a:1,b:2\n# all of c\nc:3 d:4 # d\n\n[::1]:9847,a:1").unwrap();
        let addresses: Vec<&str> = agents.iter().map(|a| a.address.as_str()).collect();
        assert_eq!(addresses, ["a:1", "b:2", "c:3", "d:4", "[::1]:9847"]);
        assert_eq!(agents[0].node, "a:1");
    }

    #[test]
    fn fault_an_entry_without_a_port_or_with_url_characters_is_refused() {
        for bad in [
            "a", "a:", "a:0", "a:70000", ":80", "a/b:80", "a@b:80", "a?:1",
        ] {
            assert!(
                matches!(parse(bad), Err(ListError::NotHostPort { .. })),
                "{bad}"
            );
        }
        assert!(matches!(parse(" # nothing\n"), Err(ListError::Empty)));
    }

    #[test]
    fn fault_a_missing_file_is_named() {
        let err = from_file(Path::new("/nonexistent/agents")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/agents"), "{err}");
    }
}
