//! The caches and leftovers an image's final filesystem should not carry:
//! the one list of them (docs/audit.md shows it to users).
//!
//! A pattern is a path relative to the image's root, component by component:
//! `*` matches one component, a leading `**` any number of them. A file
//! matches a pattern when the pattern matches a directory above it, so
//! everything below a cache directory is that cache.

use std::sync::LazyLock;

use serde::{Deserialize, Serialize};

/// A kind of cache or leftover, by the tool that leaves it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheKind {
    /// Debian/Ubuntu: downloaded packages and package lists.
    Apt,
    /// Alpine: downloaded packages.
    Apk,
    /// Fedora/RHEL 8+: metadata and packages.
    Dnf,
    /// RHEL/CentOS 7: metadata and packages.
    Yum,
    /// pip's wheel and HTTP cache.
    Pip,
    /// npm's package cache.
    Npm,
    /// Yarn's package cache.
    Yarn,
    /// Go's module download cache and build cache.
    Go,
    /// Git repositories' object stores, shipped with the sources.
    Git,
    /// Temporary directories.
    Tmp,
}

impl CacheKind {
    /// The lowercase name used in JSON and on the screen.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheKind::Apt => "apt",
            CacheKind::Apk => "apk",
            CacheKind::Dnf => "dnf",
            CacheKind::Yum => "yum",
            CacheKind::Pip => "pip",
            CacheKind::Npm => "npm",
            CacheKind::Yarn => "yarn",
            CacheKind::Go => "go",
            CacheKind::Git => "git",
            CacheKind::Tmp => "tmp",
        }
    }
}

/// Every pattern and the kind it finds. `root` and `home/*` are where
/// per-user caches live (the build's user, or any user's home).
pub const PATTERNS: &[(CacheKind, &str)] = &[
    (CacheKind::Apt, "var/cache/apt"),
    (CacheKind::Apt, "var/lib/apt/lists"),
    (CacheKind::Apk, "var/cache/apk"),
    (CacheKind::Apk, "etc/apk/cache"),
    (CacheKind::Dnf, "var/cache/dnf"),
    (CacheKind::Yum, "var/cache/yum"),
    (CacheKind::Pip, "root/.cache/pip"),
    (CacheKind::Pip, "home/*/.cache/pip"),
    (CacheKind::Npm, "root/.npm"),
    (CacheKind::Npm, "home/*/.npm"),
    (CacheKind::Yarn, "usr/local/share/.cache/yarn"),
    (CacheKind::Yarn, "root/.cache/yarn"),
    (CacheKind::Yarn, "home/*/.cache/yarn"),
    (CacheKind::Go, "root/go/pkg/mod/cache"),
    (CacheKind::Go, "home/*/go/pkg/mod/cache"),
    (CacheKind::Go, "go/pkg/mod/cache"),
    (CacheKind::Go, "root/.cache/go-build"),
    (CacheKind::Go, "home/*/.cache/go-build"),
    (CacheKind::Git, "**/.git"),
    (CacheKind::Tmp, "tmp"),
    (CacheKind::Tmp, "var/tmp"),
];

/// A pattern split into components: (kind, components, whether it may
/// start at any depth).
type Split = (CacheKind, Vec<&'static [u8]>, bool);

/// [`PATTERNS`], split once.
static SPLIT: LazyLock<Vec<Split>> = LazyLock::new(|| {
    PATTERNS
        .iter()
        .map(|(kind, pattern)| {
            let (anywhere, rest) = match pattern.strip_prefix("**/") {
                Some(rest) => (true, rest),
                None => (false, *pattern),
            };
            (
                *kind,
                rest.split('/').map(str::as_bytes).collect(),
                anywhere,
            )
        })
        .collect()
});

/// The kind of cache a file at `path` (relative to the image's root,
/// `/`-separated) belongs to, if any, with the cache's directory (a
/// leading part of `path`): the first pattern that matches a directory
/// above the file.
pub fn classify(path: &[u8]) -> Option<(CacheKind, &[u8])> {
    let first = path.split(|&b| b == b'/').next()?;
    // Most files are under no pattern's first directory: told without
    // collecting the path's components.
    let maybe = SPLIT.iter().any(|(_, parts, anywhere)| match anywhere {
        true => path.split(|&b| b == b'/').any(|c| c == parts[0]),
        false => parts[0] == b"*" || parts[0] == first,
    });
    if !maybe {
        return None;
    }
    let parts: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
    // The file's own name never makes it a cache: only a directory above it.
    let dirs = parts.split_last().map_or(&[][..], |(_, dirs)| dirs);
    SPLIT.iter().find_map(|(kind, want, anywhere)| {
        let end = matches_above(want, *anywhere, dirs)?;
        // The components' lengths plus the `/` between them.
        let len = dirs[..end].iter().map(|d| d.len() + 1).sum::<usize>() - 1;
        Some((*kind, &path[..len]))
    })
}

/// How many of `dirs` a match of `want` ends after, if it matches a
/// leading run of them (or, `anywhere`, a run starting at any depth).
fn matches_above(want: &[&[u8]], anywhere: bool, dirs: &[&[u8]]) -> Option<usize> {
    let starts = if anywhere {
        dirs.len()
    } else {
        dirs.len().min(1)
    };
    (0..starts)
        .find(|&start| prefix_matches(want, &dirs[start..]))
        .map(|start| start + want.len())
}

/// Whether the components `want` match the first components of `dirs`.
fn prefix_matches(want: &[&[u8]], dirs: &[&[u8]]) -> bool {
    want.len() <= dirs.len() && want.iter().zip(dirs).all(|(w, d)| *w == b"*" || w == d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_below_a_cache_directory_are_that_cache() {
        use CacheKind::*;
        let cases: [(&str, Option<(CacheKind, &str)>); 14] = [
            ("var/cache/apt/archives/x.deb", Some((Apt, "var/cache/apt"))),
            (
                "var/lib/apt/lists/deb_dists",
                Some((Apt, "var/lib/apt/lists")),
            ),
            ("var/lib/apt/extended_states", None),
            (
                "home/app/.cache/pip/a.whl",
                Some((Pip, "home/app/.cache/pip")),
            ),
            ("root/.npm/_cacache/index", Some((Npm, "root/.npm"))),
            ("srv/app/.git/objects/p.pack", Some((Git, "srv/app/.git"))),
            (".git/HEAD", Some((Git, ".git"))),
            ("srv/app/.gitignore", None),
            ("srv/.git", None),
            (
                "root/go/pkg/mod/cache/x.zip",
                Some((Go, "root/go/pkg/mod/cache")),
            ),
            ("root/go/pkg/mod/github.com/x/y.go", None),
            ("tmp/build.log", Some((Tmp, "tmp"))),
            ("tmp", None),
            ("usr/lib/tmp/x", None),
        ];
        for (path, want) in cases {
            let got = classify(path.as_bytes());
            let want = want.map(|(k, dir)| (k, dir.as_bytes()));
            assert_eq!(got, want, "{path}");
        }
    }

    #[test]
    fn every_kind_has_a_pattern_and_a_distinct_name() {
        let kinds: std::collections::BTreeSet<CacheKind> =
            PATTERNS.iter().map(|(k, _)| *k).collect();
        assert_eq!(kinds.len(), 10);
        let names: std::collections::BTreeSet<&str> = kinds.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), kinds.len());
    }
}
