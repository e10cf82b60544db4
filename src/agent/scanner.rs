//! The agent's scan loop. Every [`TICK`] it looks for a pull that started
//! ([`PullWatch`]) and reads the filesystems' free space again, so a pull is
//! judged within a second of its start whatever the intervals. Scans reread
//! the runtimes (on events, on a new pull, every tick while a pull runs, and
//! on the resync timer), measure new immutable paths once, and rescan the
//! mutable ones every interval with jitter; each finished status document
//! is handed on.
//!
//! The loop runs on a thread of its own; it reads containerd, and waits
//! between ticks for a change or the [`Shutdown`], on the agent's async
//! runtime through a [`Handle`].

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::Notify;

use super::cache::ImmutableCache;
use super::runtime_log;
use super::shutdown::Shutdown;
use super::watch::PullWatch;
use crate::inventory::{self, Discovered};
use crate::kubelet::KubeletConfig;
use crate::layout::NodeLayout;
use crate::model::{Signal, Source, State, Status};
use crate::predict::history::History;
use crate::walk::{Usage, WalkOptions};

/// How far apart the agent looks for new pulls and samples free space.
pub const TICK: Duration = Duration::from_secs(1);
/// A pull whose progress has not moved for this long is stalled (an
/// aborted `ctr pull` leaves its ingest until the lease expires)…
const STALLED_AFTER: Duration = Duration::from_secs(30);
/// …and is reread only this often, not every tick.
const STALLED_REREAD: Duration = Duration::from_secs(15);
/// Between scans a refreshed document is published when a verdict changes,
/// else this often: as often as Prometheus is told to scrape, so nothing is
/// lost, while an idle node does not render its metrics every second.
const PUBLISH_EVERY: Duration = Duration::from_secs(10);

/// How often and how hard the agent scans.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// Time between rescans of writable layers and logs.
    pub rescan_interval: Duration,
    /// Each wait is stretched or shortened by up to this fraction, so a
    /// fleet's agents do not scan in step.
    pub rescan_jitter: f64,
    /// Time between rereads of the runtimes when no event says anything changed.
    pub resync_interval: Duration,
    /// How long one pass's walks may take before they stop and report.
    pub scan_deadline: Duration,
    /// Walker behaviour (threads are the concurrency cap).
    pub walk: WalkOptions,
}

/// What a published document comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pass {
    /// A scan that measured every mutable path again (at the rescan
    /// interval); its `scan` section is new.
    Rescan,
    /// A scan that read the runtimes again and measured only new paths (an
    /// event, a pull, the resync); its `scan` section is new.
    Reread,
    /// A tick between scans: only free space and verdicts are new.
    Refresh,
}

/// Events arriving this close together cause one reread, not many.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// The incremental scanner.
#[derive(Debug)]
pub struct Scanner {
    layout: NodeLayout,
    settings: ScanSettings,
    /// The async runtime that runs the containerd calls and the waits.
    runtime: Handle,
    cache: ImmutableCache,
    /// The last reading of the runtimes, and when it was made.
    discovered: Option<(Discovered, Instant)>,
    /// The last figures of the mutable paths, measured again at rescans.
    mutable: HashMap<PathBuf, Usage>,
    next_rescan: Instant,
    history: History,
    watch: PullWatch,
    /// A measure of the pulls' progress, and since when it has not moved.
    progress: (u64, Instant),
    last: Option<Status>,
    /// When a document was last published, and its verdicts.
    published: (Instant, Vec<Verdict>),
}

/// What a refresh must not sit on: a signal's state and whether pressure
/// is predicted.
type Verdict = (Signal, State, bool);

/// The verdicts of `status`, as compared between ticks.
fn verdicts(status: &Status) -> Vec<Verdict> {
    status
        .prediction
        .iter()
        .map(|(signal, p)| (*signal, p.state, p.predicted))
        .collect()
}

impl Scanner {
    /// A scanner that has not read anything yet; it watches the layout's
    /// default pull directories until the runtimes name theirs. `runtime`
    /// runs its async work, which it blocks on: call the scanner off the
    /// runtime's threads.
    pub fn new(layout: NodeLayout, settings: ScanSettings, runtime: Handle) -> Self {
        let mut watch = PullWatch::default();
        watch.watch(inventory::default_pull_dirs(&layout));
        Scanner {
            layout,
            settings,
            runtime,
            cache: ImmutableCache::default(),
            discovered: None,
            mutable: HashMap::new(),
            next_rescan: Instant::now(),
            history: History::default(),
            watch,
            progress: (0, Instant::now()),
            last: None,
            published: (Instant::now(), Vec::new()),
        }
    }

    /// One scan: rereads the runtimes when `reread`, measures new immutable
    /// paths, and measures the mutable ones all when `rescan`, else only
    /// those not measured yet. Its `scan` section counts only what it walked.
    pub fn pass(&mut self, reread: bool, rescan: bool) -> Status {
        let started = Instant::now();
        let (discovered, at) = match self.discovered.take() {
            Some((d, at)) if !reread => (d, at),
            _ => (
                inventory::discover(&self.layout, &self.runtime),
                Instant::now(),
            ),
        };
        if reread {
            self.watch.watch(discovered.pull_dirs());
        }
        let walk = WalkOptions {
            deadline: Some(started + self.settings.scan_deadline),
            ..self.settings.walk.clone()
        };
        let fresh = self.cache.refresh(&discovered.immutable_paths());
        let mut walked = inventory::measure(fresh, &walk);
        for (path, w) in &walked {
            self.cache.insert(path.clone(), w);
        }
        let mutable = discovered.mutable_paths();
        let current: HashSet<&PathBuf> = mutable.iter().collect();
        self.mutable.retain(|p, _| current.contains(p));
        let due: Vec<PathBuf> = mutable
            .iter()
            .filter(|p| rescan || !self.mutable.contains_key(*p))
            .cloned()
            .collect();
        let measured = inventory::measure(due, &walk);
        self.mutable
            .extend(measured.iter().map(|(p, w)| (p.clone(), w.usage)));
        walked.extend(measured);
        let summary = inventory::summarize(walked.values(), started.elapsed().as_secs_f64());
        let (cache, mutable) = (&self.cache, &self.mutable);
        let size = |p: &std::path::Path| cache.get(p).or_else(|| mutable.get(p).copied());
        let origin = inventory::Origin {
            scan: summary,
            source: Source::Agent,
        };
        let status = inventory::build(&self.layout, &discovered, &size, origin, &mut self.history);
        self.discovered = Some((discovered, at));
        self.note_progress(&status);
        status
    }

    /// Runs until `shutdown`: a scan right away, then one tick a [`TICK`],
    /// each a scan when one is due (see [`Scanner::reread_due`], the rescan
    /// interval with jitter, or a `wake` since the last tick: a runtime said
    /// something changed) and otherwise a refresh of free space and
    /// verdicts, published when a verdict changed or [`PUBLISH_EVERY`] has
    /// passed. A wake ends the wait between ticks at once, and so does the
    /// shutdown (a walk in progress stops if it polls the shutdown, see
    /// [`Shutdown::walk_cancel`]). `publish` is given the document with the
    /// kubelet configuration it was judged by.
    pub fn run(
        mut self,
        wake: &Notify,
        shutdown: &Shutdown,
        mut publish: impl FnMut(&Status, &KubeletConfig, Pass),
    ) {
        let mut reread = true;
        loop {
            let tick = Instant::now();
            let rescan = tick >= self.next_rescan;
            let reread_now = reread || self.reread_due();
            if rescan || reread_now {
                let status = self.pass(reread_now, rescan);
                let before = self.last.as_ref().map(|s| s.runtimes.as_slice());
                runtime_log::log_changes(before, &status.runtimes);
                if rescan {
                    self.next_rescan =
                        tick + jittered(self.settings.rescan_interval, self.settings.rescan_jitter);
                }
                self.history.sample(
                    Instant::now(),
                    &status.filesystems,
                    !status.pulls.is_empty(),
                );
                self.published = (Instant::now(), verdicts(&status));
                // The pass has just set what it discovered.
                if let Some((discovered, _)) = &self.discovered {
                    let pass = if rescan { Pass::Rescan } else { Pass::Reread };
                    publish(&status, &discovered.kubelet, pass);
                }
                self.last = Some(status);
            } else if let Some((status, kubelet)) = self.refresh() {
                publish(status, kubelet, Pass::Refresh);
            }
            let until = (tick + TICK).min(self.next_rescan);
            reread = match self.runtime.block_on(wait(until, wake, shutdown)) {
                Some(changed) => changed,
                None => return,
            };
        }
    }

    /// Whether the runtimes must be read again this tick: never read, the
    /// resync is due, a pull started, or a pull runs (every tick while it
    /// moves, every [`STALLED_REREAD`] once it has stalled).
    fn reread_due(&mut self) -> bool {
        let Some((discovered, at)) = &self.discovered else {
            return true;
        };
        let age = at.elapsed();
        if age >= self.settings.resync_interval || self.watch.started() {
            return true;
        }
        discovered.pulling() && (self.progress.1.elapsed() < STALLED_AFTER || age >= STALLED_REREAD)
    }

    /// A tick without a scan: free space read again, sampled, and the
    /// verdicts redone. The document is returned when it is to be published
    /// (a verdict changed, or [`PUBLISH_EVERY`] has passed); None as well
    /// while a stalled pull waits for its next reread (its bytes still to
    /// come are only known from a reread).
    fn refresh(&mut self) -> Option<(&Status, &KubeletConfig)> {
        let (discovered, _) = self.discovered.as_ref()?;
        let status = self.last.as_mut().filter(|s| s.pulls.is_empty())?;
        inventory::refresh(status, &discovered.kubelet, &self.history);
        self.history
            .sample(Instant::now(), &status.filesystems, false);
        let now = verdicts(status);
        if now == self.published.1 && self.published.0.elapsed() < PUBLISH_EVERY {
            return None;
        }
        self.published = (Instant::now(), now);
        Some((status, &discovered.kubelet))
    }

    /// Remembers when the pulls in flight last moved.
    fn note_progress(&mut self, status: &Status) {
        let moved = status.pulls.iter().fold(status.pulls.len() as u64, |n, p| {
            n.wrapping_add(p.offset_bytes)
                .wrapping_add(p.layers_downloaded)
                .wrapping_add(p.layers_present)
        });
        if moved != self.progress.0 {
            self.progress = (moved, Instant::now());
        }
    }
}

/// Waits until `until`, a wake or the shutdown, whichever comes first:
/// `None` on shutdown, else whether a wake came. After a wake it waits
/// [`DEBOUNCE`] more, swallowing the burst that follows (a pull publishes
/// many events), so the burst causes one reread.
async fn wait(until: Instant, wake: &Notify, shutdown: &Shutdown) -> Option<bool> {
    tokio::select! {
        biased;
        _ = shutdown.stopped() => return None,
        () = wake.notified() => {}
        () = tokio::time::sleep_until(until.into()) => return Some(false),
    }
    let settled = tokio::time::sleep(DEBOUNCE);
    tokio::pin!(settled);
    loop {
        tokio::select! {
            biased;
            _ = shutdown.stopped() => return None,
            () = &mut settled => return Some(true),
            () = wake.notified() => {}
        }
    }
}

/// `interval` stretched or shortened by a random fraction up to `jitter`.
fn jittered(interval: Duration, jitter: f64) -> Duration {
    // A fresh RandomState is randomly keyed: enough randomness for spreading
    // scans without a dependency.
    let random = RandomState::new().hash_one(Instant::now());
    let unit = (random % 2001) as f64 / 1000.0 - 1.0;
    interval.mul_f64((1.0 + jitter * unit).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::shutdown::Reason;

    #[test]
    fn jitter_stays_within_its_fraction_and_varies() {
        let base = Duration::from_secs(100);
        let waits: Vec<Duration> = (0..200).map(|_| jittered(base, 0.1)).collect();
        assert!(waits
            .iter()
            .all(|w| *w >= Duration::from_secs(90) && *w <= Duration::from_secs(110)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 20, "jitter should spread waits");
        assert_eq!(jittered(base, 0.0), base);
    }

    #[tokio::test]
    async fn a_burst_of_changes_settles_into_one_and_shutdown_wins() {
        let wake = std::sync::Arc::new(Notify::new());
        let shutdown = Shutdown::new();
        let later = Instant::now() + Duration::from_secs(60);
        let burst = {
            let wake = std::sync::Arc::clone(&wake);
            tokio::spawn(async move {
                for _ in 0..4 {
                    wake.notify_one();
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let started = Instant::now();
        assert_eq!(wait(later, &wake, &shutdown).await, Some(true));
        assert!(started.elapsed() >= DEBOUNCE, "the burst is waited out");
        burst.await.unwrap();
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(
            wait(soon, &wake, &shutdown).await,
            Some(false),
            "the burst was swallowed"
        );

        wake.notify_one();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop.trigger(Reason::Terminate);
        });
        let started = Instant::now();
        assert_eq!(wait(later, &wake, &shutdown).await, None);
        assert!(
            started.elapsed() < DEBOUNCE,
            "a shutdown during the debounce wins at once"
        );
        assert_eq!(wait(later, &wake, &shutdown).await, None);
    }
}
