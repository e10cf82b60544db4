//! Filesystems behind paths, and the node's name.
//!
//! The kubelet decides `nodefs` and `imagefs` pressure from the filesystem that holds a
//! directory (cAdvisor `GetDirFsInfo`: stat the directory, match its device against the
//! mount table, then statvfs). [`filesystem_of`] does the same so that Headroom's figures
//! are the kubelet's figures: capacity is `f_blocks × f_frsize` and available is
//! `f_bavail × f_frsize`, exactly what `df -B1` prints as size and avail.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use procfs::process::MountInfo;

use crate::runtime::{Classified, ProblemKind};

/// The mount table of this process's mount namespace.
const MOUNTINFO: &str = "/proc/self/mountinfo";

/// A mounted filesystem and its statvfs figures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsInfo {
    /// Mount point (from /proc/self/mountinfo).
    pub mountpoint: PathBuf,
    /// Filesystem type.
    pub fstype: String,
    /// `major:minor` of the device.
    pub device: String,
    /// Size in bytes (f_blocks × f_frsize).
    pub capacity_bytes: u64,
    /// Available to unprivileged users (f_bavail × f_frsize).
    pub available_bytes: u64,
    /// Total inodes (f_files).
    pub inodes: u64,
    /// Free inodes (f_ffree).
    pub inodes_free: u64,
}

/// Why a filesystem could not be described.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The path (or its nearest existing ancestor) could not be resolved or stat'ed.
    #[error("{path}: stat: {source}")]
    Stat {
        /// The path that failed.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The mount table could not be read.
    #[error("{path}: reading {MOUNTINFO}: {source}")]
    MountInfo {
        /// The path being looked up.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// No entry of the mount table covers the path (no /proc, or a chroot).
    #[error("{path}: no mount in {MOUNTINFO} holds it")]
    NoMount {
        /// The resolved path.
        path: PathBuf,
    },
    /// statvfs failed.
    #[error("{path}: statvfs: {source}")]
    Statvfs {
        /// The path given to statvfs.
        path: PathBuf,
        /// The cause.
        source: nix::errno::Errno,
    },
}

impl Classified for HostError {
    fn kind(&self) -> ProblemKind {
        match self {
            HostError::Stat { source, .. } | HostError::MountInfo { source, .. } => {
                ProblemKind::of_io(source)
            }
            HostError::NoMount { .. } => ProblemKind::Missing,
            HostError::Statvfs { .. } => ProblemKind::Unreadable,
        }
    }
}

/// One mount table entry, as far as finding a path's filesystem needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    mountpoint: PathBuf,
    fstype: String,
    device: String,
}

/// The filesystem holding `path`, or the one of its nearest existing ancestor when `path`
/// does not exist yet (a Docker-only host has no /var/lib/kubelet, but the kubelet's nodefs
/// would still be the filesystem where it would be created).
pub fn filesystem_of(path: &Path) -> Result<FsInfo, HostError> {
    let (real, device) = nearest_existing(path)?;
    let table = std::fs::read(MOUNTINFO).map_err(|source| HostError::MountInfo {
        path: path.to_owned(),
        source,
    })?;
    let mounts = parse_mountinfo(&String::from_utf8_lossy(&table));
    let mount = pick_mount(&mounts, &device, &real)
        .ok_or_else(|| HostError::NoMount { path: real.clone() })?
        .clone();
    let space = space_of(&real)?;
    Ok(FsInfo {
        mountpoint: mount.mountpoint,
        fstype: mount.fstype,
        device: mount.device,
        capacity_bytes: space.capacity_bytes,
        available_bytes: space.available_bytes,
        inodes: space.inodes,
        inodes_free: space.inodes_free,
    })
}

/// A filesystem's size and free space, from statvfs alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Space {
    /// Size in bytes (f_blocks × f_frsize).
    pub capacity_bytes: u64,
    /// Available to unprivileged users (f_bavail × f_frsize).
    pub available_bytes: u64,
    /// Total inodes (f_files).
    pub inodes: u64,
    /// Free inodes (f_ffree).
    pub inodes_free: u64,
}

/// The space of the filesystem holding `path`: one statvfs, no mount table
/// read, cheap enough to call every second.
pub fn space_of(path: &Path) -> Result<Space, HostError> {
    let stats = nix::sys::statvfs::statvfs(path).map_err(|source| HostError::Statvfs {
        path: path.to_owned(),
        source,
    })?;
    let fragment = stats.fragment_size() as u64;
    Ok(Space {
        capacity_bytes: (stats.blocks() as u64).saturating_mul(fragment),
        available_bytes: (stats.blocks_available() as u64).saturating_mul(fragment),
        inodes: stats.files() as u64,
        inodes_free: stats.files_free() as u64,
    })
}

/// The canonical form of `path` or of its nearest existing ancestor, with the
/// `major:minor` of the device it lives on. Symlinks are followed, as the kubelet's
/// `stat` does.
fn nearest_existing(path: &Path) -> Result<(PathBuf, String), HostError> {
    let stat_error = |path: &Path, source| HostError::Stat {
        path: path.to_owned(),
        source,
    };
    let absolute = std::path::absolute(path).map_err(|e| stat_error(path, e))?;
    for candidate in absolute.ancestors() {
        match std::fs::canonicalize(candidate) {
            Ok(real) => {
                let meta = std::fs::metadata(&real).map_err(|e| stat_error(&real, e))?;
                let dev = meta.dev();
                let device = format!(
                    "{}:{}",
                    nix::sys::stat::major(dev),
                    nix::sys::stat::minor(dev)
                );
                return Ok((real, device));
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => return Err(stat_error(candidate, e)),
        }
    }
    Err(stat_error(path, io::ErrorKind::NotFound.into()))
}

/// The entries of a mountinfo table. Lines that do not parse are skipped: one odd
/// line must not hide every other filesystem.
fn parse_mountinfo(table: &str) -> Vec<Mount> {
    table
        .lines()
        .filter_map(|line| MountInfo::from_line(line).ok())
        .map(|info| Mount {
            mountpoint: unescape_octal(info.mount_point.as_os_str()),
            fstype: info.fs_type,
            device: info.majmin,
        })
        .collect()
}

/// Undoes the kernel's `\ooo` escaping of space, tab, newline and backslash in
/// mountinfo paths (procfs leaves mountinfo fields escaped).
fn unescape_octal(field: &OsStr) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = bytes
            .get(i + 1..i + 4)
            .filter(|digits| bytes[i] == b'\\' && digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsStr::from_bytes(&out))
}

/// The mount that holds `path` (canonical) on `device`: among the entries of that device,
/// the one whose mount point is the longest prefix of `path` (a device can be mounted
/// several times, and bind mounts share the device). When no entry has the device
/// (btrfs subvolumes report an anonymous device), the longest prefix of any device.
/// On a tie the later entry wins: it is mounted on top of the earlier one.
fn pick_mount<'a>(mounts: &'a [Mount], device: &str, path: &Path) -> Option<&'a Mount> {
    let longest = |candidates: &mut dyn Iterator<Item = &'a Mount>| {
        candidates
            .filter(|m| path.starts_with(&m.mountpoint))
            .max_by_key(|m| m.mountpoint.components().count())
    };
    longest(&mut mounts.iter().filter(|m| m.device == device))
        .or_else(|| longest(&mut mounts.iter()))
}

/// The node name: `NODE_NAME` if set and not empty, else the host name, else `unknown`.
pub fn node_name() -> String {
    choose_node_name(
        std::env::var("NODE_NAME").ok(),
        nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok()),
    )
}

/// The first non-empty of the environment's node name and the host name.
fn choose_node_name(env: Option<String>, hostname: Option<String>) -> String {
    env.into_iter()
        .chain(hostname)
        .find(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// `df -B1 --output=size,avail,itotal,iavail,target <path>`: the independent oracle.
    struct Df {
        size: u64,
        avail: u64,
        itotal: u64,
        iavail: u64,
        target: PathBuf,
    }

    fn df(path: &Path) -> Df {
        let out = Command::new("df")
            .args(["-B1", "--output=size,avail,itotal,iavail,target"])
            .arg(path)
            .output()
            .unwrap();
        assert!(out.status.success(), "df {}: {:?}", path.display(), out);
        let text = String::from_utf8(out.stdout).unwrap();
        let line = text.lines().nth(1).unwrap();
        let mut fields = line.split_whitespace();
        let mut number = || fields.next().unwrap().parse::<u64>().unwrap();
        let (size, avail, itotal, iavail) = (number(), number(), number(), number());
        // The target is the rest of the line (it may contain spaces).
        let target = line
            .split_whitespace()
            .skip(4)
            .collect::<Vec<_>>()
            .join(" ");
        Df {
            size,
            avail,
            itotal,
            iavail,
            target: PathBuf::from(target),
        }
    }

    /// Exact on size, inodes and mount point; close on the figures that concurrent
    /// writers on a shared machine can move between the two reads.
    fn assert_matches_df(path: &Path) -> FsInfo {
        let ours = filesystem_of(path).unwrap();
        let theirs = df(path);
        assert_eq!(
            ours.capacity_bytes,
            theirs.size,
            "size of {}",
            path.display()
        );
        assert_eq!(ours.inodes, theirs.itotal, "inodes of {}", path.display());
        assert_eq!(
            ours.mountpoint,
            theirs.target,
            "mount of {}",
            path.display()
        );
        assert!(
            ours.available_bytes.abs_diff(theirs.avail) < 64 << 20,
            "avail of {}: {} vs df {}",
            path.display(),
            ours.available_bytes,
            theirs.avail
        );
        assert!(
            ours.inodes_free.abs_diff(theirs.iavail) < 10_000,
            "free inodes of {}: {} vs df {}",
            path.display(),
            ours.inodes_free,
            theirs.iavail
        );
        ours
    }

    #[test]
    fn root_matches_df() {
        let fs = assert_matches_df(Path::new("/"));
        assert_eq!(fs.mountpoint, Path::new("/"));
    }

    #[test]
    fn temp_dir_matches_df() {
        let dir = tempfile::tempdir().unwrap();
        assert_matches_df(dir.path());
    }

    #[test]
    fn missing_path_resolves_to_nearest_existing_ancestor() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("var/lib/kubelet");
        let ours = filesystem_of(&missing).unwrap();
        let parent = filesystem_of(dir.path()).unwrap();
        assert_eq!(ours.mountpoint, parent.mountpoint);
        assert_eq!(ours.device, parent.device);
        assert_eq!(ours.fstype, parent.fstype);
        assert_eq!(ours.capacity_bytes, parent.capacity_bytes);
        assert_eq!(ours.inodes, parent.inodes);
    }

    #[test]
    fn path_below_a_regular_file_resolves_to_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let ours = filesystem_of(&file.join("below")).unwrap();
        assert_eq!(
            ours.mountpoint,
            filesystem_of(dir.path()).unwrap().mountpoint
        );
    }

    #[test]
    fn relative_path_is_taken_from_the_current_directory() {
        let here = filesystem_of(Path::new(".")).unwrap();
        let cwd = filesystem_of(&std::env::current_dir().unwrap()).unwrap();
        assert_eq!(here.mountpoint, cwd.mountpoint);
        assert_eq!(here.device, cwd.device);
    }

    /// A small ext4 image loop-mounted under a temp dir; unmounted on drop, also when
    /// an assertion failed.
    struct LoopMount {
        dir: tempfile::TempDir,
        mountpoint: PathBuf,
    }

    impl LoopMount {
        fn new() -> LoopMount {
            let dir = tempfile::tempdir().unwrap();
            let image = dir.path().join("img");
            let mountpoint = dir.path().join("mnt with space");
            std::fs::create_dir(&mountpoint).unwrap();
            run(Command::new("truncate").args(["-s", "64M"]).arg(&image));
            run(Command::new("mkfs.ext4").arg("-q").arg(&image));
            run(Command::new("mount")
                .args(["-o", "loop"])
                .arg(&image)
                .arg(&mountpoint));
            LoopMount { dir, mountpoint }
        }
    }

    impl Drop for LoopMount {
        fn drop(&mut self) {
            // The temp dir is removed after this, once the image is no longer mounted.
            let _ = Command::new("umount").arg(&self.mountpoint).status();
        }
    }

    fn run(command: &mut Command) {
        let out = command.output().unwrap();
        assert!(out.status.success(), "{command:?}: {out:?}");
    }

    #[test]
    fn loop_mounted_ext4_is_its_own_filesystem() {
        let mount = LoopMount::new();
        let ours = assert_matches_df(&mount.mountpoint);
        assert_eq!(ours.mountpoint, mount.mountpoint);
        assert_eq!(ours.fstype, "ext4");
        let outer = filesystem_of(mount.dir.path()).unwrap();
        assert_ne!(ours.device, outer.device);

        let not_yet = mount.mountpoint.join("var/lib/containerd");
        let below = filesystem_of(&not_yet).unwrap();
        assert_eq!(below.mountpoint, mount.mountpoint);
        assert_eq!(below.fstype, "ext4");
        assert_eq!(below.capacity_bytes, ours.capacity_bytes);
        assert_eq!(below.inodes, ours.inodes);
    }

    const TABLE: &str = "\
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
42 27 7:0 / /data rw,relatime - ext4 /dev/loop0 rw
43 42 7:0 /docker /data/docker rw,relatime shared:1 - ext4 /dev/loop0 rw
44 27 7:0 /kubelet /var/lib/kubelet rw,relatime - ext4 /dev/loop0 rw
45 27 0:50 / /mnt/my\\040disk rw - xfs /dev/vdb rw
46 27 0:51 / /mnt/my\\040disk rw - tmpfs tmpfs rw
47 27 0:60 / /srv rw - btrfs /dev/vdc rw
not a mountinfo line
";

    fn pick(device: &str, path: &str) -> Option<PathBuf> {
        let mounts = parse_mountinfo(TABLE);
        pick_mount(&mounts, device, Path::new(path)).map(|m| m.mountpoint.clone())
    }

    #[test]
    fn picks_longest_prefix_among_mounts_of_the_device() {
        assert_eq!(
            pick("7:0", "/data/docker/overlay2"),
            Some("/data/docker".into())
        );
        assert_eq!(pick("7:0", "/data/dockerx"), Some("/data".into()));
        assert_eq!(
            pick("7:0", "/var/lib/kubelet/pods"),
            Some("/var/lib/kubelet".into())
        );
        assert_eq!(pick("254:0", "/var/lib"), Some("/".into()));
    }

    #[test]
    fn later_mount_on_the_same_point_wins() {
        assert_eq!(pick("0:51", "/mnt/my disk/x"), Some("/mnt/my disk".into()));
        let mounts = parse_mountinfo(TABLE);
        let top = pick_mount(&mounts, "0:99", Path::new("/mnt/my disk")).unwrap();
        assert_eq!(top.fstype, "tmpfs");
    }

    #[test]
    fn unknown_device_falls_back_to_longest_prefix() {
        // A btrfs subvolume reports an anonymous device the table does not list.
        assert_eq!(pick("0:61", "/srv/subvol/x"), Some("/srv".into()));
        assert_eq!(pick("9:9", "/elsewhere"), Some("/".into()));
    }

    #[test]
    fn no_mount_at_all_is_none() {
        assert_eq!(pick_mount(&[], "7:0", Path::new("/data")), None);
    }

    #[test]
    fn unescapes_mountinfo_octal() {
        let cases = [
            ("/a\\040b", "/a b"),
            ("/tab\\011x", "/tab\tx"),
            ("/nl\\012", "/nl\n"),
            ("/back\\134slash", "/back\\slash"),
            ("/short\\04", "/short\\04"),
            ("/not\\999octal", "/not\\999octal"),
            ("/sign\\+12", "/sign\\+12"),
        ];
        for (field, expected) in cases {
            assert_eq!(unescape_octal(OsStr::new(field)), PathBuf::from(expected));
        }
    }

    #[test]
    fn node_name_prefers_non_empty_env() {
        let name = |env: Option<&str>, host: Option<&str>| {
            choose_node_name(env.map(str::to_owned), host.map(str::to_owned))
        };
        assert_eq!(name(Some("node-a"), Some("host")), "node-a");
        assert_eq!(name(Some(""), Some("host")), "host");
        assert_eq!(name(None, Some("host")), "host");
        assert_eq!(name(None, None), "unknown");
        assert_eq!(name(Some(""), Some("")), "unknown");
    }

    #[test]
    fn node_name_matches_the_system() {
        let expected = match std::env::var("NODE_NAME") {
            Ok(name) if !name.is_empty() => name,
            _ => {
                let out = Command::new("uname").arg("-n").output().unwrap();
                String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
            }
        };
        assert_eq!(node_name(), expected);
    }
}
