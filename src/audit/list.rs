//! Lists a committed layer's directory entry by entry, for the audit.
//!
//! The walker ([`crate::walk`]) measures trees in parallel and keeps no
//! names; the audit needs every entry's path, in an order where a
//! directory comes before what it holds (an opaque directory must hide the
//! lower layers' files before its own are added). This lister is that:
//! sequential, depth first, with the walker's care for hostile trees. Every
//! open is relative to the parent's fd with `O_NOFOLLOW` (a symlink is never
//! followed), entries are `statx`ed with `AT_SYMLINK_NOFOLLOW`, another
//! filesystem below the root is not entered, and the stack is explicit.
//! Open fds are bounded by the depth, which is capped at [`MAX_DEPTH`]:
//! deeper directories are counted as errors, not listed.

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FileType, RawDir, CWD};
use rustix::io::Errno;

use crate::walk::{self, open_dir};

/// Directories deeper than this below a layer's root are not listed.
pub const MAX_DEPTH: usize = 256;

/// What an entry is, as far as the audit cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A regular file: the only kind that holds bytes worth counting.
    File,
    /// A directory; `opaque` when it hides the lower layers' contents.
    Dir {
        /// Marked `trusted.overlay.opaque` (or `user.overlay.opaque`) `y`.
        opaque: bool,
    },
    /// An overlay whiteout: a character device 0/0 deleting the lower path.
    Whiteout,
    /// A symlink, device, FIFO or socket: replaces a lower path, holds no bytes.
    Other,
}

/// One entry of a layer.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    /// Relative to the layer's root, `/`-separated, no leading `/`; empty
    /// for the root itself.
    pub path: &'a [u8],
    /// What it is.
    pub kind: Kind,
    /// `st_size`.
    pub size: u64,
    /// `st_blocks * 512`.
    pub disk: u64,
    /// Device and inode: a file with several links is counted once.
    pub inode: (u64, u64),
    /// `st_nlink`.
    pub nlink: u64,
}

/// What could not be listed, counted, with the first one named.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Unlisted {
    /// Entries or directories not listed.
    pub count: u64,
    /// The first of them and why.
    pub first: Option<(PathBuf, String)>,
}

impl Unlisted {
    pub(super) fn add(&mut self, root: &Path, path: &[u8], why: impl FnOnce() -> String) {
        self.count += 1;
        if self.first.is_none() {
            let path = root.join(std::ffi::OsStr::from_bytes(path));
            self.first = Some((path, why()));
        }
    }
}

/// A directory waiting to be listed: its parent's fd and its name there.
struct Pending {
    parent: Arc<OwnedFd>,
    name: CString,
    path: Vec<u8>,
    depth: usize,
}

/// Lists `root` (a layer's directory), calling `visit` for every entry,
/// each directory (the root first) before the entries below it, until
/// `visit` returns false. Returns what could not be listed; an error only
/// when `root` itself cannot be opened.
pub fn list(root: &Path, mut visit: impl FnMut(&Entry) -> bool) -> std::io::Result<Unlisted> {
    let root_fd = Arc::new(open_dir(CWD, root)?);
    let root_dev = stat_at(root_fd.as_fd(), c"")?.inode.0;
    let mut unlisted = Unlisted::default();
    let mut stack: Vec<Pending> = Vec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut cx = Context {
        root,
        root_dev,
        stack: &mut stack,
        buf: &mut buf,
        unlisted: &mut unlisted,
        visit: &mut visit,
    };
    let mut going = cx.list_dir(root_fd, Vec::new(), 0);
    while let Some(next) = cx.stack.pop().filter(|_| going) {
        match open_dir(next.parent.as_fd(), next.name.as_c_str()) {
            Ok(fd) => going = cx.list_dir(Arc::new(fd), next.path, next.depth),
            Err(e) => cx.unlisted.add(root, &next.path, || {
                format!("open: {}", std::io::Error::from(e))
            }),
        }
    }
    Ok(unlisted)
}

/// What a listing works with.
struct Context<'a, V> {
    root: &'a Path,
    root_dev: u64,
    stack: &'a mut Vec<Pending>,
    buf: &'a mut Vec<u8>,
    unlisted: &'a mut Unlisted,
    visit: &'a mut V,
}

impl<V: FnMut(&Entry) -> bool> Context<'_, V> {
    /// Visits the directory open as `fd` at `path`, then its entries;
    /// pushes its subdirectories on the stack. False once `visit` said stop.
    fn list_dir(&mut self, fd: Arc<OwnedFd>, path: Vec<u8>, depth: usize) -> bool {
        let root = self.root;
        let me = match stat_at(fd.as_fd(), c"") {
            Ok(me) => me,
            Err(e) => {
                self.unlisted
                    .add(root, &path, || format!("stat: {}", std::io::Error::from(e)));
                return true;
            }
        };
        let dir = Entry {
            kind: Kind::Dir {
                opaque: opaque(fd.as_fd()),
            },
            path: &path,
            ..me
        };
        if !(self.visit)(&dir) {
            return false;
        }
        // Out of `self` while the listing borrows it.
        let mut buf = std::mem::take(self.buf);
        let going = self.list_entries(&fd, &path, depth, &mut buf);
        *self.buf = buf;
        going
    }

    /// Visits the entries of the directory open as `fd` at `path`.
    fn list_entries(
        &mut self,
        fd: &Arc<OwnedFd>,
        path: &[u8],
        depth: usize,
        buf: &mut Vec<u8>,
    ) -> bool {
        let root = self.root;
        let mut entries = RawDir::new(fd.as_fd(), buf.spare_capacity_mut());
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    let why = || format!("read directory: {}", std::io::Error::from(e));
                    self.unlisted.add(root, path, why);
                    break;
                }
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            let child = join(path, name);
            let meta = match stat_at(fd.as_fd(), name) {
                Ok(meta) => meta,
                Err(e) => {
                    self.unlisted.add(root, &child, || {
                        format!("stat: {}", std::io::Error::from(e))
                    });
                    continue;
                }
            };
            if let Kind::Dir { .. } = meta.kind {
                self.push(fd, name, child, depth + 1, meta.inode.0);
            } else if !(self.visit)(&Entry {
                path: &child,
                ..meta
            }) {
                return false;
            }
        }
        true
    }

    /// Puts the subdirectory `name` of `parent` on the stack, unless it is
    /// on another filesystem or too deep.
    fn push(&mut self, parent: &Arc<OwnedFd>, name: &CStr, path: Vec<u8>, depth: usize, dev: u64) {
        if dev != self.root_dev {
            self.unlisted.add(self.root, &path, || {
                "another filesystem: not entered".into()
            });
        } else if depth > MAX_DEPTH {
            let why = || format!("deeper than {MAX_DEPTH} levels: not listed");
            self.unlisted.add(self.root, &path, why);
        } else {
            self.stack.push(Pending {
                parent: Arc::clone(parent),
                name: name.to_owned(),
                path,
                depth,
            });
        }
    }
}

/// `parent/name`, relative (no leading `/`).
fn join(parent: &[u8], name: &CStr) -> Vec<u8> {
    let name = name.to_bytes();
    let mut path = Vec::with_capacity(parent.len() + 1 + name.len());
    path.extend_from_slice(parent);
    if !parent.is_empty() {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// Whether the directory open as `fd` is opaque to the layers below.
fn opaque(fd: BorrowedFd<'_>) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut value = [0u8; 1];
            matches!(rustix::fs::fgetxattr(fd, *name, &mut value), Ok(1) if value[0] == b'y')
        })
}

/// The entry `name` of `dir` (`dir` itself when empty), without its path
/// (a directory is never opaque here: it is told when it is opened).
fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<Entry<'static>, Errno> {
    let meta = walk::stat_at(dir, name)?;
    let kind = match meta.kind {
        FileType::RegularFile => Kind::File,
        FileType::Directory => Kind::Dir { opaque: false },
        FileType::CharacterDevice if meta.rdev == 0 => Kind::Whiteout,
        _ => Kind::Other,
    };
    Ok(Entry {
        path: &[],
        kind,
        size: meta.size,
        disk: meta.blocks.saturating_mul(512),
        inode: (meta.dev, meta.ino),
        nlink: meta.nlink,
    })
}
