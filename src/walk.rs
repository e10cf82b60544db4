//! The safe, parallel directory walker that measures every tree Headroom reports.
//!
//! Containers control the names and shapes of the trees walked here, so the
//! walker assumes they are hostile:
//!
//! - Everything is relative to directory fds: `openat` with `O_NOFOLLOW`, then
//!   `statx` (or `fstatat` where `statx` is missing) with `AT_SYMLINK_NOFOLLOW`
//!   on each name listed by `getdents64`. No full path is ever resolved below
//!   the root, so depth causes no `ENAMETOOLONG` and a symlink is never followed
//!   (its own inode is counted). Only directories are opened: never a FIFO or a
//!   device.
//! - A mount point below the root is skipped entirely, and counted with its
//!   path: another filesystem (a different `st_dev`, as `du -x` skips) and a
//!   bind mount of the same one (which `du -x` crosses), told apart by
//!   `statx`'s `STATX_ATTR_MOUNT_ROOT` from the same call that sizes the
//!   entry. Where that attribute is missing (Linux before 5.8, or no
//!   `statx` at all) only `st_dev` is compared, as `du -x` does.
//! - Work is an explicit stack of directory jobs, not recursion, so depth does
//!   not grow the call stack. Workers keep their own stacks (depth first, which
//!   keeps the set of pending jobs small) and hand half of it to idle workers.
//! - Open directory fds are bounded: a job refers to an open ancestor (its
//!   "anchor") plus the names leading from it. While the process holds fewer
//!   directory fds than its budget, a directory's fd anchors its children;
//!   past the budget the children reuse their parent's anchor and are
//!   reopened name by name, each step again with `O_NOFOLLOW`. A new anchor
//!   is still made every [`MAX_HOPS`] levels (bounding the cost of reopening)
//!   until a hard cap; past the cap only reopening gets slower. The first walk
//!   raises the soft `RLIMIT_NOFILE` to the hard limit (as Go programs do), so
//!   the cap is rarely met.
//! - Failures are data: a vanished, denied or unreadable entry becomes a
//!   [`ScanError`] with its full path, and the walk goes on.
//!
//! Sizes follow GNU `du -s`: `st_blocks * 512` (disk) and `st_size`
//! (apparent) over every distinct inode, the root and directories included;
//! a file with several links is counted once per walk, keyed by (dev, inode).

use std::collections::{BTreeMap, HashMap};
use std::ffi::{CStr, OsStr};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RawDir, StatxAttributes, StatxFlags, CWD};
use rustix::io::Errno;
use rustix::process::{getrlimit, Resource};
use serde::{Deserialize, Serialize};

/// How the walker treats the filesystem. Every choice is explicit.
#[derive(Debug, Clone)]
pub struct WalkOptions {
    /// Worker threads; 0 means one per core. At most [`MAX_THREADS`]:
    /// inputs are checked against it where they enter (config, `du
    /// --threads`), and the walker uses no more than it whatever it is given.
    pub threads: usize,
    /// Count a file with several hard links once per walk, keyed by (dev, inode).
    pub dedup_hard_links: bool,
    /// Stay on the filesystem of the root and never cross a mount point,
    /// not even a bind mount of that filesystem.
    pub same_filesystem: bool,
    /// Stop listing directories at this instant; each directory left unread
    /// is a [`ErrorKind::Deadline`] error, so a partial figure is never
    /// mistaken for a whole one.
    pub deadline: Option<Instant>,
    /// Stop as at the deadline once this turns true (the agent shutting down).
    pub cancel: Option<Arc<AtomicBool>>,
    /// Directories that may wait to be listed at once (about 150 bytes
    /// each): past it, a directory is counted but not descended, as a
    /// [`ErrorKind::Limit`] error, so a tree of millions of directories
    /// cannot exhaust memory.
    pub max_pending_dirs: usize,
}

impl WalkOptions {
    /// Whether the walk must stop: deadline passed or cancelled.
    fn stopped(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self
                .cancel
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
    }
}

impl Default for WalkOptions {
    fn default() -> Self {
        WalkOptions {
            threads: 0,
            dedup_hard_links: true,
            same_filesystem: true,
            deadline: None,
            cancel: None,
            max_pending_dirs: 250_000,
        }
    }
}

/// Bytes and inodes of a tree.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    /// Sum of st_blocks × 512 (what `du -B1` reports).
    pub disk_bytes: u64,
    /// Sum of st_size (what `du -B1 --apparent-size` reports).
    pub apparent_bytes: u64,
    /// Distinct inodes, the root included.
    pub inodes: u64,
}

/// Why an entry could not be examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// It disappeared (or was replaced) between being listed and being examined.
    Vanished,
    /// Permission denied (EACCES, EPERM).
    Denied,
    /// Any other I/O error.
    Io,
    /// Not listed: the walk's deadline had passed or it was cancelled.
    Deadline,
    /// Not listed: too many directories were already waiting to be listed
    /// (a hostile tree of millions of directories must not exhaust memory).
    Limit,
}

impl ErrorKind {
    /// Every kind, so counters of each can exist (at 0) before one happens.
    pub const ALL: [ErrorKind; 5] = [
        ErrorKind::Vanished,
        ErrorKind::Denied,
        ErrorKind::Io,
        ErrorKind::Deadline,
        ErrorKind::Limit,
    ];

    /// The lowercase name used in JSON and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Vanished => "vanished",
            ErrorKind::Denied => "denied",
            ErrorKind::Io => "io",
            ErrorKind::Deadline => "deadline",
            ErrorKind::Limit => "limit",
        }
    }
}

/// One entry the walker could not examine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanError {
    /// The entry.
    pub path: PathBuf,
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The OS error in words.
    pub message: String,
}

/// The result of walking one root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Walk {
    /// What the tree holds.
    pub usage: Usage,
    /// Entries examined: the root and every name listed below it, including
    /// hard-link duplicates, entries on other filesystems and entries that
    /// failed.
    pub entries: u64,
    /// Error counts by kind.
    pub error_counts: BTreeMap<ErrorKind, u64>,
    /// The first errors met, at most [`MAX_ERROR_SAMPLES`].
    pub errors: Vec<ScanError>,
    /// Mount points below the root not crossed (with
    /// [`WalkOptions::same_filesystem`]): neither they nor anything below
    /// them is counted. Not an error: the figures are whole for the tree.
    pub skipped_mounts: u64,
    /// The first of them, at most [`MAX_ERROR_SAMPLES`].
    pub skipped_mount_paths: Vec<PathBuf>,
}

/// How many errors (and skipped mounts) a [`Walk`] keeps with their paths.
pub const MAX_ERROR_SAMPLES: usize = 32;

/// The most worker threads one walk uses. Each thread reserves a stack, so
/// an unchecked count (`--threads 100000`) would abort the process.
pub const MAX_THREADS: usize = 1024;

/// Walks `root` (a directory or a single file) and measures it.
pub fn walk(root: &Path, opts: &WalkOptions) -> Walk {
    walk_many(std::slice::from_ref(&root.to_path_buf()), opts)
        .pop()
        .unwrap_or_default()
}

/// Walks every root, each measured on its own, all with one pool of threads;
/// results are in the order of `roots`.
pub fn walk_many(roots: &[PathBuf], opts: &WalkOptions) -> Vec<Walk> {
    let ctx = Ctx {
        roots,
        opts,
        queue: Queue::new(threads(opts)),
        fds: FdLimits::get(),
        pending: AtomicUsize::new(0),
    };
    // Roots are stat'ed up front: files need no threads, directories seed the pool.
    let mut main = Worker::new(&ctx);
    let seeds: Vec<Job> = (0..roots.len())
        .filter_map(|root| main.visit_root(root))
        .collect();
    if !seeds.is_empty() {
        ctx.queue.share(seeds);
        run_pool(&ctx, main)
    } else {
        vec![main]
    }
    .into_iter()
    .fold(vec![Acc::default(); roots.len()], |merged, w| {
        merged
            .into_iter()
            .zip(w.accs)
            .map(|(a, b)| a.merge(b))
            .collect()
    })
    .into_iter()
    .map(|acc| acc.finish(opts.dedup_hard_links))
    .collect()
}

/// The worker count for `opts`, never more than [`MAX_THREADS`] (the
/// process must not abort on a count that slipped past validation).
fn threads(opts: &WalkOptions) -> usize {
    match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        n => n,
    }
    .min(MAX_THREADS)
}

/// How many directory fds the walks in this process may hold.
#[derive(Debug, Clone, Copy)]
struct FdLimits {
    /// Below this, every directory anchors its children.
    budget: usize,
    /// Below this, a directory [`MAX_HOPS`] levels from its anchor still
    /// anchors its children.
    cap: usize,
}

impl FdLimits {
    /// A quarter and a half of the soft `RLIMIT_NOFILE`, raised to the hard
    /// limit the first time (deep trees need fds, and the process's other
    /// needs are small).
    fn get() -> FdLimits {
        static RAISE: std::sync::Once = std::sync::Once::new();
        RAISE.call_once(|| {
            let lim = getrlimit(Resource::Nofile);
            let hard = lim.maximum.unwrap_or(u64::MAX).min(1 << 20);
            if lim.current.is_some_and(|soft| soft < hard) {
                let raised = rustix::process::Rlimit {
                    current: Some(hard),
                    maximum: lim.maximum,
                };
                // Keeping the old limit is fine: the budget follows it.
                let _ = rustix::process::setrlimit(Resource::Nofile, raised);
            }
        });
        let soft = getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX);
        let part = |div: u64| usize::try_from(soft / div).unwrap_or(usize::MAX);
        FdLimits {
            budget: part(4).clamp(8, 4096),
            cap: part(2).clamp(16, 65536),
        }
    }

    /// Whether a directory `hops` names from its own anchor should anchor
    /// its children rather than pass that anchor on.
    fn anchors(self, hops: usize) -> bool {
        let open = OPEN_DIRS.load(Ordering::Relaxed);
        open < self.budget || (hops >= MAX_HOPS && open < self.cap)
    }
}

/// Runs `main` on this thread and `threads - 1` helpers; returns every worker.
fn run_pool<'a>(ctx: &'a Ctx<'a>, mut main: Worker<'a>) -> Vec<Worker<'a>> {
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..ctx.queue.total())
            .filter_map(|_| {
                let spawned = std::thread::Builder::new()
                    .name("headroom-walk".into())
                    .spawn_scoped(scope, || {
                        let mut w = Worker::new(ctx);
                        w.run();
                        w
                    });
                // A thread we cannot start is one worker fewer, not a failure.
                spawned.map_err(|_| ctx.queue.retire()).ok()
            })
            .collect();
        main.run();
        let mut all = vec![main];
        all.extend(helpers.into_iter().filter_map(|h| h.join().ok()));
        all
    })
}

/// What every worker of one `walk_many` call shares.
struct Ctx<'a> {
    roots: &'a [PathBuf],
    opts: &'a WalkOptions,
    queue: Queue,
    fds: FdLimits,
    /// Directory jobs waiting, all workers together (bounded by
    /// [`WalkOptions::max_pending_dirs`]).
    pending: AtomicUsize,
}

/// How many entries a worker lists between two looks at the deadline, so
/// one huge directory cannot outlive it.
const ENTRIES_BETWEEN_CHECKS: u64 = 1024;

/// Directory fds alive in the process (anchors and directories being read).
static OPEN_DIRS: AtomicUsize = AtomicUsize::new(0);

/// An open directory, counted in [`OPEN_DIRS`] while it lives.
struct DirFd(OwnedFd);

impl DirFd {
    fn new(fd: OwnedFd) -> Arc<DirFd> {
        OPEN_DIRS.fetch_add(1, Ordering::Relaxed);
        Arc::new(DirFd(fd))
    }
}

impl Drop for DirFd {
    fn drop(&mut self) {
        OPEN_DIRS.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A directory's name and its parent's node: paths are rebuilt from these
/// only when an error needs one, and reopening walks them from an anchor.
struct PathNode {
    /// `None` for the root, whose path is the caller's.
    parent: Option<Arc<PathNode>>,
    name: Box<CStr>,
}

impl Drop for PathNode {
    // Unlinks the chain iteratively: a 100,000-deep chain must not recurse.
    fn drop(&mut self) {
        let mut next = self.parent.take();
        while let Some(node) = next.and_then(Arc::into_inner) {
            let mut node = node;
            next = node.parent.take();
        }
    }
}

/// The full path of `leaf` (or of `node` itself) below `root`.
fn path_of(root: &Path, node: &PathNode, leaf: Option<&CStr>) -> PathBuf {
    let mut names: Vec<&CStr> = leaf.into_iter().collect();
    let mut cur = node;
    while let Some(parent) = &cur.parent {
        names.push(&cur.name);
        cur = parent;
    }
    let mut path = root.to_path_buf();
    for name in names.iter().rev() {
        path.push(OsStr::from_bytes(name.to_bytes()));
    }
    path
}

/// A unit of work.
enum Job {
    /// Open and list a root directory stat'ed as `id`.
    Root { root: usize, id: Ident },
    /// Open and list a directory below a root.
    Dir(DirJob),
}

/// A directory to open and list.
struct DirJob {
    root: usize,
    /// The filesystem of the root.
    root_dev: u64,
    /// The directory's own path node.
    node: Arc<PathNode>,
    /// An open ancestor.
    anchor: Arc<DirFd>,
    /// Names from `anchor` down to this directory (at least 1).
    hops: usize,
    /// What `statx` saw, checked again once opened.
    id: Ident,
}

/// Past this many hops, a directory anchors its children whatever the budget
/// (up to the cap), so reopening costs a bounded number of `openat` calls.
const MAX_HOPS: usize = 32;

/// The `getdents64` buffer per worker.
const DIR_BUF_BYTES: usize = 64 * 1024;

/// The shared job stack, with the bookkeeping that ends the walk when every
/// worker is idle and no job is left.
struct Queue {
    state: Mutex<QueueState>,
    ready: Condvar,
    /// Idle workers, readable without the lock by busy workers.
    hungry: AtomicUsize,
}

struct QueueState {
    jobs: Vec<Job>,
    idle: usize,
    total: usize,
    done: bool,
}

impl Queue {
    fn new(total: usize) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                jobs: Vec::new(),
                idle: 0,
                total: total.max(1),
                done: false,
            }),
            ready: Condvar::new(),
            hungry: AtomicUsize::new(0),
        }
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn total(&self) -> usize {
        self.lock().total
    }

    fn is_hungry(&self) -> bool {
        self.hungry.load(Ordering::Relaxed) > 0
    }

    /// Makes `jobs` available to every worker.
    fn share(&self, jobs: impl IntoIterator<Item = Job>) {
        self.lock().jobs.extend(jobs);
        self.ready.notify_all();
    }

    /// One worker fewer than planned (its thread could not start).
    fn retire(&self) {
        let mut st = self.lock();
        st.total -= 1;
        self.finish_if_idle(&mut st);
    }

    /// Waits for a shared job; `None` once the walk is over.
    fn take(&self) -> Option<Job> {
        let mut st = self.lock();
        loop {
            if let Some(job) = st.jobs.pop() {
                return Some(job);
            }
            if st.done {
                return None;
            }
            st.idle += 1;
            self.hungry.store(st.idle, Ordering::Relaxed);
            if self.finish_if_idle(&mut st) {
                return None;
            }
            st = self.ready.wait(st).unwrap_or_else(PoisonError::into_inner);
            st.idle -= 1;
            self.hungry.store(st.idle, Ordering::Relaxed);
        }
    }

    fn finish_if_idle(&self, st: &mut QueueState) -> bool {
        if st.idle >= st.total && st.jobs.is_empty() {
            st.done = true;
            self.ready.notify_all();
        }
        st.done
    }
}

/// What a worker learned about one root.
#[derive(Debug, Clone, Default)]
struct Acc {
    usage: Usage,
    entries: u64,
    error_counts: BTreeMap<ErrorKind, u64>,
    errors: Vec<ScanError>,
    skipped_mounts: u64,
    skipped_mount_paths: Vec<PathBuf>,
    /// Multiply-linked files: (dev, ino) → (disk bytes, apparent bytes).
    links: HashMap<(u64, u64), (u64, u64)>,
}

impl Acc {
    fn add(&mut self, meta: &Meta, dedup: bool) {
        let bytes = (meta.blocks.saturating_mul(512), meta.size);
        if dedup && meta.nlink > 1 && meta.kind != FileType::Directory {
            // Summed in `finish`, once all workers' sightings are merged.
            self.links.insert((meta.dev, meta.ino), bytes);
        } else {
            self.usage.disk_bytes = self.usage.disk_bytes.saturating_add(bytes.0);
            self.usage.apparent_bytes = self.usage.apparent_bytes.saturating_add(bytes.1);
            self.usage.inodes += 1;
        }
    }

    fn skip_mount(&mut self, path: impl FnOnce() -> PathBuf) {
        self.skipped_mounts += 1;
        if self.skipped_mount_paths.len() < MAX_ERROR_SAMPLES {
            self.skipped_mount_paths.push(path());
        }
    }

    fn error(&mut self, path: impl FnOnce() -> PathBuf, op: &str, err: Errno) {
        let kind = match err {
            Errno::NOENT => ErrorKind::Vanished,
            Errno::ACCESS | Errno::PERM => ErrorKind::Denied,
            _ => ErrorKind::Io,
        };
        self.record(kind, path, format!("{op}: {}", std::io::Error::from(err)));
    }

    fn record(&mut self, kind: ErrorKind, path: impl FnOnce() -> PathBuf, message: String) {
        *self.error_counts.entry(kind).or_default() += 1;
        if self.errors.len() < MAX_ERROR_SAMPLES {
            self.errors.push(ScanError {
                path: path(),
                kind,
                message,
            });
        }
    }

    fn merge(mut self, other: Acc) -> Acc {
        self.usage.disk_bytes = self.usage.disk_bytes.saturating_add(other.usage.disk_bytes);
        self.usage.apparent_bytes = self
            .usage
            .apparent_bytes
            .saturating_add(other.usage.apparent_bytes);
        self.usage.inodes += other.usage.inodes;
        self.entries += other.entries;
        for (kind, n) in other.error_counts {
            *self.error_counts.entry(kind).or_default() += n;
        }
        let room = MAX_ERROR_SAMPLES.saturating_sub(self.errors.len());
        self.errors.extend(other.errors.into_iter().take(room));
        self.skipped_mounts += other.skipped_mounts;
        let room = MAX_ERROR_SAMPLES.saturating_sub(self.skipped_mount_paths.len());
        let paths = other.skipped_mount_paths.into_iter().take(room);
        self.skipped_mount_paths.extend(paths);
        let mut links = std::mem::take(&mut self.links);
        let mut rest = other.links;
        if links.len() < rest.len() {
            std::mem::swap(&mut links, &mut rest);
        }
        links.extend(rest);
        self.links = links;
        self
    }

    /// The walk's result, each multiply-linked inode counted once.
    fn finish(self, dedup: bool) -> Walk {
        let mut usage = self.usage;
        debug_assert!(dedup || self.links.is_empty());
        for (disk, apparent) in self.links.into_values() {
            usage.disk_bytes = usage.disk_bytes.saturating_add(disk);
            usage.apparent_bytes = usage.apparent_bytes.saturating_add(apparent);
            usage.inodes += 1;
        }
        Walk {
            usage,
            entries: self.entries,
            error_counts: self.error_counts,
            errors: self.errors,
            skipped_mounts: self.skipped_mounts,
            skipped_mount_paths: self.skipped_mount_paths,
        }
    }
}

/// The few inode fields the walker (and the layer audit's lister) needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meta {
    pub(crate) dev: u64,
    pub(crate) ino: u64,
    /// The root of a mount (`STATX_ATTR_MOUNT_ROOT`); false where the
    /// kernel cannot tell.
    mount_root: bool,
    pub(crate) nlink: u64,
    pub(crate) blocks: u64,
    pub(crate) size: u64,
    pub(crate) kind: FileType,
    /// The device a device file stands for (an overlay whiteout is 0/0).
    pub(crate) rdev: u64,
}

impl Meta {
    fn ident(&self) -> Ident {
        Ident {
            dev: self.dev,
            ino: self.ino,
            mount_root: self.mount_root,
        }
    }
}

/// What identifies a directory between its `statx` and its `openat`: a
/// mount placed over it in between changes it, as a replacement does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ident {
    dev: u64,
    ino: u64,
    mount_root: bool,
}

/// `statx(dir, name, AT_SYMLINK_NOFOLLOW)`, or `fstatat` where the kernel or a
/// seccomp profile lacks `statx`. An empty `name` stats `dir` itself.
pub(crate) fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> Result<Meta, Errno> {
    let mut flags = AtFlags::SYMLINK_NOFOLLOW | AtFlags::NO_AUTOMOUNT;
    if name.is_empty() {
        flags |= AtFlags::EMPTY_PATH;
    }
    let mask = StatxFlags::TYPE
        | StatxFlags::NLINK
        | StatxFlags::INO
        | StatxFlags::SIZE
        | StatxFlags::BLOCKS;
    match rustix::fs::statx(dir, name, flags, mask) {
        Ok(st) => Ok(Meta {
            dev: rustix::fs::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            // Always filled in by Linux 5.8+, whatever the mask asked for.
            mount_root: (st.stx_attributes_mask & st.stx_attributes)
                .contains(StatxAttributes::MOUNT_ROOT),
            nlink: u64::from(st.stx_nlink),
            blocks: st.stx_blocks,
            size: st.stx_size,
            kind: FileType::from_raw_mode(st.stx_mode.into()),
            rdev: rustix::fs::makedev(st.stx_rdev_major, st.stx_rdev_minor),
        }),
        Err(Errno::NOSYS) => {
            let st = rustix::fs::statat(dir, name, flags - AtFlags::NO_AUTOMOUNT)?;
            #[allow(clippy::useless_conversion)] // st_nlink is u32 on some architectures
            Ok(Meta {
                dev: st.st_dev,
                ino: st.st_ino,
                mount_root: false,
                nlink: st.st_nlink.into(),
                blocks: u64::try_from(st.st_blocks).unwrap_or(0),
                size: u64::try_from(st.st_size).unwrap_or(0),
                kind: FileType::from_raw_mode(st.st_mode),
                rdev: st.st_rdev,
            })
        }
        Err(e) => Err(e),
    }
}

/// Opens a directory without following a symlink and without ever blocking
/// (should a FIFO have taken its place).
pub(crate) fn open_dir(
    dir: BorrowedFd<'_>,
    name: impl rustix::path::Arg,
) -> Result<OwnedFd, Errno> {
    rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK,
        Mode::empty(),
    )
}

/// Checks that the directory opened is the one listed (not a replacement,
/// nor a mount placed over it since).
fn verify(fd: &OwnedFd, id: Ident) -> Result<(), Errno> {
    if stat_at(fd.as_fd(), c"")?.ident() == id {
        Ok(())
    } else {
        Err(Errno::NOENT)
    }
}

/// One thread's share of the walk: its own job stack, buffer and accumulators.
struct Worker<'a> {
    ctx: &'a Ctx<'a>,
    local: Vec<Job>,
    accs: Vec<Acc>,
    buf: Vec<u8>,
    /// The directory listed last, kept open: its subdirectory is usually
    /// the next job (depth first), and opens directly from it.
    last: Option<(Arc<PathNode>, Arc<DirFd>)>,
}

impl<'a> Worker<'a> {
    fn new(ctx: &'a Ctx<'a>) -> Worker<'a> {
        Worker {
            ctx,
            local: Vec::new(),
            accs: vec![Acc::default(); ctx.roots.len()],
            buf: Vec::new(),
            last: None,
        }
    }

    /// Runs jobs, depth first, until the walk is over.
    fn run(&mut self) {
        let queue = &self.ctx.queue;
        while let Some(job) = self.local.pop().or_else(|| queue.take()) {
            if let Job::Dir(_) = job {
                self.ctx.pending.fetch_sub(1, Ordering::Relaxed);
            }
            if self.ctx.opts.stopped() {
                self.skip(&job);
                continue;
            }
            match job {
                Job::Root { root, id } => self.list_root(root, id),
                Job::Dir(job) => self.list_dir(job),
            }
            if self.local.len() > 1 && queue.is_hungry() {
                // The oldest jobs are the shallowest: the biggest subtrees.
                let half = self.local.len() / 2;
                queue.share(self.local.drain(..half));
            }
        }
    }

    /// Records a directory left unread because the deadline passed.
    fn skip(&mut self, job: &Job) {
        let roots = self.ctx.roots;
        let (root, path) = match job {
            Job::Root { root, .. } => (*root, roots[*root].clone()),
            Job::Dir(job) => (job.root, path_of(&roots[job.root], &job.node, None)),
        };
        let message = "not listed: the scan's deadline had passed or it was stopped".to_string();
        self.accs[root].record(ErrorKind::Deadline, || path, message);
    }

    /// Stats and counts root `root`; returns the job that lists it if it is
    /// a directory.
    fn visit_root(&mut self, root: usize) -> Option<Job> {
        let path = &self.ctx.roots[root];
        let acc = &mut self.accs[root];
        acc.entries += 1;
        let meta = match path_cstr(path).and_then(|p| stat_at(CWD, &p)) {
            Ok(meta) => meta,
            Err(e) => {
                acc.error(|| path.clone(), "stat", e);
                return None;
            }
        };
        acc.add(&meta, self.ctx.opts.dedup_hard_links);
        (meta.kind == FileType::Directory).then_some(Job::Root {
            root,
            id: meta.ident(),
        })
    }

    fn list_root(&mut self, root: usize, id: Ident) {
        let path = &self.ctx.roots[root];
        let opened = open_dir(CWD, path.as_path()).and_then(|fd| verify(&fd, id).map(|()| fd));
        match opened {
            Ok(fd) => {
                let node = Arc::new(PathNode {
                    parent: None,
                    name: Box::default(),
                });
                self.list(root, id.dev, DirFd::new(fd), node, None);
            }
            Err(e) => self.accs[root].error(|| path.clone(), "open directory", e),
        }
    }

    fn list_dir(&mut self, job: DirJob) {
        match reopen(&job, self.last.take()) {
            Ok(fd) => {
                let up = Some((job.anchor, job.hops));
                self.list(job.root, job.root_dev, DirFd::new(fd), job.node, up);
            }
            Err(e) => {
                let root = &self.ctx.roots[job.root];
                self.accs[job.root].error(|| path_of(root, &job.node, None), "open directory", e);
            }
        }
    }

    /// Lists `dir`, counts every entry and pushes a job per subdirectory.
    /// `up` is the anchor the children may share instead of `dir` (with the
    /// hops from it to `dir`) when the fd budget is spent.
    fn list(
        &mut self,
        root: usize,
        root_dev: u64,
        dir: Arc<DirFd>,
        node: Arc<PathNode>,
        up: Option<(Arc<DirFd>, usize)>,
    ) {
        let ctx = self.ctx;
        let root_path = &ctx.roots[root];
        let acc = &mut self.accs[root];
        if self.buf.capacity() < DIR_BUF_BYTES {
            self.buf = Vec::with_capacity(DIR_BUF_BYTES);
        }
        let mut entries = RawDir::new(dir.0.as_fd(), self.buf.spare_capacity_mut());
        // Chosen at the first subdirectory: which anchor the children share.
        let mut child_anchor: Option<(Arc<DirFd>, usize)> = None;
        while let Some(entry) = entries.next() {
            let entry = match entry {
                Ok(entry) => entry,
                Err(e) => {
                    acc.error(|| path_of(root_path, &node, None), "read directory", e);
                    break;
                }
            };
            let name = entry.file_name();
            if name == c"." || name == c".." {
                continue;
            }
            acc.entries += 1;
            if acc.entries % ENTRIES_BETWEEN_CHECKS == 0 && ctx.opts.stopped() {
                let message = "listed in part: the scan's deadline had passed or it was stopped";
                acc.record(
                    ErrorKind::Deadline,
                    || path_of(root_path, &node, None),
                    message.into(),
                );
                break;
            }
            let meta = match stat_at(dir.0.as_fd(), name) {
                Ok(meta) => meta,
                Err(e) => {
                    acc.error(|| path_of(root_path, &node, Some(name)), "stat", e);
                    continue;
                }
            };
            if ctx.opts.same_filesystem && (meta.dev != root_dev || meta.mount_root) {
                acc.skip_mount(|| path_of(root_path, &node, Some(name)));
                continue;
            }
            acc.add(&meta, ctx.opts.dedup_hard_links);
            if meta.kind != FileType::Directory {
                continue;
            }
            let cap = ctx.opts.max_pending_dirs;
            if ctx.pending.fetch_add(1, Ordering::Relaxed) >= cap {
                ctx.pending.fetch_sub(1, Ordering::Relaxed);
                let message = format!("not listed: over {cap} directories waiting");
                acc.record(
                    ErrorKind::Limit,
                    || path_of(root_path, &node, Some(name)),
                    message,
                );
                continue;
            }
            let (anchor, hops) = child_anchor
                .get_or_insert_with(|| match &up {
                    Some((anchor, hops)) if !ctx.fds.anchors(*hops) => {
                        (Arc::clone(anchor), hops + 1)
                    }
                    _ => (Arc::clone(&dir), 1),
                })
                .clone();
            self.local.push(Job::Dir(DirJob {
                root,
                root_dev,
                node: Arc::new(PathNode {
                    parent: Some(Arc::clone(&node)),
                    name: name.into(),
                }),
                anchor,
                hops,
                id: meta.ident(),
            }));
        }
        self.last = Some((node, dir));
    }
}

/// The root path as a C string (a path with a NUL byte cannot exist).
fn path_cstr(path: &Path) -> Result<std::ffi::CString, Errno> {
    std::ffi::CString::new(path.as_os_str().as_bytes()).map_err(|_| Errno::INVAL)
}

/// Opens `job`'s directory, from `last` when that is its parent, else from
/// its anchor one name at a time, and checks it is the directory listed.
fn reopen(job: &DirJob, last: Option<(Arc<PathNode>, Arc<DirFd>)>) -> Result<OwnedFd, Errno> {
    let parent = last.filter(|(node, _)| {
        let up = job.node.parent.as_ref();
        up.is_some_and(|up| Arc::ptr_eq(up, node))
    });
    let fd = match parent {
        Some((_, dir)) => open_dir(dir.0.as_fd(), &*job.node.name)?,
        None => open_from_anchor(job)?,
    };
    verify(&fd, job.id)?;
    Ok(fd)
}

fn open_from_anchor(job: &DirJob) -> Result<OwnedFd, Errno> {
    let mut names = Vec::with_capacity(job.hops);
    let mut node = &*job.node;
    for _ in 0..job.hops {
        names.push(&*node.name);
        node = node.parent.as_deref().ok_or(Errno::INVAL)?;
    }
    let mut fd: Option<OwnedFd> = None;
    for name in names.into_iter().rev() {
        let base = fd.as_ref().map_or(job.anchor.0.as_fd(), AsFd::as_fd);
        fd = Some(open_dir(base, name)?);
    }
    fd.ok_or(Errno::INVAL)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::process::Command;

    /// GNU du's first figure for `path` with `args` (the oracle).
    fn du(args: &[&str], path: &Path) -> u64 {
        let out = Command::new("du").args(args).arg(path).output().unwrap();
        assert!(out.status.success(), "du {args:?} {path:?}: {out:?}");
        let text = String::from_utf8(out.stdout).unwrap();
        text.split_whitespace().next().unwrap().parse().unwrap()
    }

    /// `walk` with explicit options.
    fn walk_with(path: &Path, dedup_hard_links: bool, same_filesystem: bool) -> Walk {
        let opts = WalkOptions {
            threads: 2,
            dedup_hard_links,
            same_filesystem,
            ..WalkOptions::default()
        };
        walk(path, &opts)
    }

    fn assert_matches_du(w: &Walk, path: &Path, extra: &[&str]) {
        let du_with = |a: &[&str]| du(&[extra, a].concat(), path);
        assert_eq!(w.usage.disk_bytes, du_with(&["-s", "-B1"]));
        assert_eq!(
            w.usage.apparent_bytes,
            du_with(&["-s", "-B1", "--apparent-size"])
        );
        assert_eq!(w.usage.inodes, du_with(&["-s", "--inodes"]));
        assert!(w.errors.is_empty(), "{:?}", w.errors);
    }

    #[test]
    fn hard_links_count_once_or_per_link() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("f"), vec![7u8; 50_000]).unwrap();
        fs::create_dir(dir.path().join("sub")).unwrap();
        fs::hard_link(dir.path().join("f"), dir.path().join("sub/g")).unwrap();
        fs::hard_link(dir.path().join("f"), dir.path().join("h")).unwrap();

        let once = walk_with(dir.path(), true, true);
        assert_matches_du(&once, dir.path(), &[]);
        assert_eq!(once.entries, 5);
        let each = walk_with(dir.path(), false, true);
        assert_matches_du(&each, dir.path(), &["--count-links"]);
        assert!(each.usage.disk_bytes > once.usage.disk_bytes);
        assert_eq!(each.usage.inodes, once.usage.inodes + 2);
    }

    /// A tmpfs mounted for the test, unmounted on drop.
    struct Mount(PathBuf);

    impl Drop for Mount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }

    #[test]
    fn same_filesystem_skips_other_mounts_entirely() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("here"), vec![1u8; 10_000]).unwrap();
        let mnt = dir.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "headroom-test", mnt.to_str().unwrap()])
            .status()
            .unwrap();
        assert!(status.success(), "mounting a tmpfs needs root");
        let _mount = Mount(mnt.clone());
        fs::create_dir(mnt.join("d")).unwrap();
        fs::write(mnt.join("d/there"), vec![2u8; 300_000]).unwrap();

        let inside = walk_with(dir.path(), true, true);
        assert_matches_du(&inside, dir.path(), &["-x"]);
        // The mount point itself is skipped, like `du -x` does.
        assert_eq!(inside.usage.inodes, 2);
        assert_eq!(inside.skipped_mount_paths, std::slice::from_ref(&mnt));
        let across = walk_with(dir.path(), true, false);
        assert_matches_du(&across, dir.path(), &[]);
        assert_eq!(across.usage.inodes, 5);
    }

    #[test]
    fn file_root_is_measured_alone() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("container.log");
        fs::write(&log, vec![b'x'; 123_457]).unwrap();
        let w = walk(&log, &WalkOptions::default());
        assert_matches_du(&w, &log, &[]);
        assert_eq!((w.usage.inodes, w.entries), (1, 1));
    }

    #[test]
    fn symlink_root_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("etc");
        std::os::unix::fs::symlink("/etc", &link).unwrap();
        let w = walk(&link, &WalkOptions::default());
        assert_matches_du(&w, &link, &[]);
        assert_eq!(w.usage.apparent_bytes, 4);
    }

    #[test]
    fn missing_root_is_zero_and_one_vanished_error() {
        let dir = tempfile::tempdir().unwrap();
        let gone = dir.path().join("gone");
        let w = walk(&gone, &WalkOptions::default());
        assert_eq!(w.usage, Usage::default());
        assert_eq!(w.error_counts, BTreeMap::from([(ErrorKind::Vanished, 1)]));
        assert_eq!(w.errors.len(), 1);
        assert_eq!(w.errors[0].path, gone);
        assert_eq!(w.errors[0].kind, ErrorKind::Vanished);
    }

    #[test]
    fn walk_many_keeps_input_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut roots = vec![];
        for i in 0..40 {
            let root = dir.path().join(format!("r{i}"));
            fs::create_dir_all(root.join("a/b")).unwrap();
            fs::write(root.join("a/b/f"), vec![0u8; 5000 * i]).unwrap();
            roots.push(root);
        }
        roots.push(dir.path().join("missing"));
        let walks = walk_many(&roots, &WalkOptions::default());
        assert_eq!(walks.len(), roots.len());
        for (root, w) in roots.iter().zip(&walks).take(40) {
            assert_matches_du(w, root, &[]);
        }
        assert_eq!(walks[40].error_counts[&ErrorKind::Vanished], 1);
    }

    #[test]
    fn a_passed_deadline_leaves_directories_unread_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        for d in ["a", "a/b", "c"] {
            std::fs::create_dir(tmp.path().join(d)).unwrap();
        }
        let opts = WalkOptions {
            deadline: Some(Instant::now()),
            ..WalkOptions::default()
        };
        let w = walk(tmp.path(), &opts);
        // The root is stat'ed (counted) but not listed.
        assert_eq!((w.usage.inodes, w.entries), (1, 1));
        assert_eq!(w.error_counts.get(&ErrorKind::Deadline), Some(&1));
        assert_eq!(w.errors[0].path, tmp.path());
        let later = WalkOptions {
            deadline: Some(Instant::now() + std::time::Duration::from_secs(600)),
            ..WalkOptions::default()
        };
        let w = walk(tmp.path(), &later);
        assert!(w.error_counts.is_empty());
        assert_eq!(w.usage.inodes, 4);
    }

    #[test]
    fn pending_directories_are_capped_and_the_rest_reported() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 0..10 {
            std::fs::create_dir_all(tmp.path().join(format!("d{i}/sub"))).unwrap();
        }
        let opts = WalkOptions {
            threads: 1,
            max_pending_dirs: 4,
            ..WalkOptions::default()
        };
        let w = walk(tmp.path(), &opts);
        // All ten d* are counted (stat'ed); only four are queued and listed,
        // the six others are reported, so their sub/ dirs are not counted.
        assert_eq!(w.error_counts.get(&ErrorKind::Limit), Some(&6));
        assert_eq!(w.usage.inodes, 1 + 10 + 4);
        let whole = walk(tmp.path(), &WalkOptions::default());
        assert!(whole.error_counts.is_empty());
        assert_eq!(whole.usage.inodes, 1 + 10 + 10);
    }

    #[test]
    fn a_cancelled_walk_stops_and_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir(tmp.path().join("a")).unwrap();
        let opts = WalkOptions {
            cancel: Some(Arc::new(AtomicBool::new(true))),
            ..WalkOptions::default()
        };
        let w = walk(tmp.path(), &opts);
        assert_eq!(w.error_counts.get(&ErrorKind::Deadline), Some(&1));
        assert_eq!(w.usage.inodes, 1);
    }

    #[test]
    fn error_samples_are_capped_but_all_counted() {
        let errors = |n: usize| {
            let mut acc = Acc::default();
            for i in 0..n {
                acc.error(|| PathBuf::from(format!("/x/{i}")), "stat", Errno::ACCESS);
            }
            acc
        };
        let one = errors(MAX_ERROR_SAMPLES + 5);
        assert_eq!(one.errors.len(), MAX_ERROR_SAMPLES);
        let w = one.merge(errors(3)).finish(true);
        assert_eq!(w.errors.len(), MAX_ERROR_SAMPLES);
        assert_eq!(w.errors[0].path, Path::new("/x/0"));
        assert_eq!(
            w.error_counts,
            BTreeMap::from([(ErrorKind::Denied, MAX_ERROR_SAMPLES as u64 + 8)])
        );
    }
}
