//! Reads the files of committed layers: whether two copies hold the same
//! bytes, and a file's SHA-256. Only called where a path or a size already
//! matches, so most files are never read.
//!
//! A file is opened below its layer's root with `openat2`
//! (`RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV`): a path the
//! image controls never leads out of the layer, nor through a symlink.
//! Where `openat2` is missing (Linux before 5.6, or a seccomp profile that
//! refuses it) the path is opened component by component with `O_NOFOLLOW`.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};
use std::os::unix::ffi::OsStrExt;

use super::pace::Pace;

/// Bytes read at a time.
const CHUNK: usize = 256 * 1024;

/// Whether the file `a` (a layer's root and a path in it) holds the same
/// bytes as `b`. `None` when the pace stopped the comparison.
pub fn same(a: (&Path, &[u8]), b: (&Path, &[u8]), pace: &mut Pace) -> io::Result<Option<bool>> {
    let (mut fa, mut fb) = (open(a.0, a.1)?, open(b.0, b.1)?);
    let (mut ba, mut bb) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = read_full(&mut fa, &mut ba)?;
        let m = read_full(&mut fb, &mut bb)?;
        if n != m || ba[..n] != bb[..m] {
            return Ok(Some(false));
        }
        if n == 0 {
            return Ok(Some(true));
        }
        if !pace.tick() {
            return Ok(None);
        }
    }
}

/// The SHA-256 of the file at `path` in the layer `root`; `None` when the
/// pace stopped it.
pub fn sha256(root: &Path, path: &[u8], pace: &mut Pace) -> io::Result<Option<[u8; 32]>> {
    let mut file = open(root, path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = read_full(&mut file, &mut buf)?;
        if n == 0 {
            return Ok(Some(hasher.finalize().into()));
        }
        hasher.update(&buf[..n]);
        if !pace.tick() {
            return Ok(None);
        }
    }
}

/// Fills `buf` as far as the file allows; the count read (0 at its end).
fn read_full(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Opens the regular file `path` below `root` for reading, never leaving
/// `root` nor following a symlink; anything but a regular file is refused.
fn open(root: &Path, path: &[u8]) -> io::Result<File> {
    let dir = rustix::fs::open(root, dir_flags(), Mode::empty())?;
    let flags = OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW | OFlags::NONBLOCK;
    let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_XDEV;
    let fd = match rustix::fs::openat2(&dir, path, flags, Mode::empty(), resolve) {
        Err(Errno::NOSYS) | Err(Errno::PERM) => open_stepwise(dir, path, flags)?,
        other => other?,
    };
    let file = File::from(fd);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// [`open`] without `openat2`: one `openat(O_NOFOLLOW)` per component.
fn open_stepwise(mut dir: OwnedFd, path: &[u8], flags: OFlags) -> io::Result<OwnedFd> {
    let mut parts = path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .peekable();
    while let Some(part) = parts.next() {
        if part == b".." || part == b"." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a relative component",
            ));
        }
        let name = std::ffi::OsStr::from_bytes(part);
        if parts.peek().is_none() {
            return Ok(rustix::fs::openat(&dir, name, flags, Mode::empty())?);
        }
        dir = rustix::fs::openat(&dir, name, dir_flags(), Mode::empty())?;
    }
    Err(io::Error::new(io::ErrorKind::InvalidInput, "an empty path"))
}

fn dir_flags() -> OFlags {
    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compares_and_hashes_files_below_a_root_without_following_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::create_dir_all(a.join("x")).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let data: Vec<u8> = (0..600_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(a.join("x/f"), &data).unwrap();
        std::fs::write(b.join("f"), &data).unwrap();
        let mut other = data.clone();
        other[599_999] ^= 1;
        std::fs::write(b.join("g"), &other).unwrap();
        std::os::unix::fs::symlink("/etc", b.join("link")).unwrap();
        let mut pace = Pace::unlimited();
        let same =
            |p: (&Path, &[u8]), q: (&Path, &[u8]), pace: &mut Pace| same(p, q, pace).unwrap();
        assert_eq!(same((&a, b"x/f"), (&b, b"f"), &mut pace), Some(true));
        assert_eq!(same((&a, b"x/f"), (&b, b"g"), &mut pace), Some(false));
        let digest = sha256(&a, b"x/f", &mut pace).unwrap().unwrap();
        assert_eq!(digest, <[u8; 32]>::from(Sha256::digest(&data)));
        assert!(sha256(&b, b"link/passwd", &mut pace).is_err());
        assert!(sha256(&b, b"../a/x/f", &mut pace).is_err());
        assert!(
            sha256(&a, b"x", &mut pace).is_err(),
            "a directory is refused"
        );
    }
}
