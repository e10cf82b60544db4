//! The agent's scan loop: rereads the runtimes (on events and on a resync
//! timer), measures new immutable paths once, rescans the mutable ones every
//! interval with jitter, and hands each finished status document on.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::cache::ImmutableCache;
use crate::inventory::{self, Discovered};
use crate::layout::NodeLayout;
use crate::predict::history::History;
use crate::report::Status;
use crate::walk::WalkOptions;

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

/// What wakes the scan loop before its timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    /// A runtime said its images, snapshots, containers or content changed.
    Changed,
    /// Stop after the current pass.
    Shutdown,
}

/// Events arriving this close together cause one reread, not many.
const DEBOUNCE: Duration = Duration::from_millis(500);

/// The incremental scanner.
#[derive(Debug)]
pub struct Scanner {
    layout: NodeLayout,
    settings: ScanSettings,
    cache: ImmutableCache,
    discovered: Option<(Discovered, Instant)>,
    history: History,
}

impl Scanner {
    /// A scanner that has not read anything yet.
    pub fn new(layout: NodeLayout, settings: ScanSettings) -> Self {
        Scanner {
            layout,
            settings,
            cache: ImmutableCache::default(),
            discovered: None,
            history: History::default(),
        }
    }

    /// One pass: rereads the runtimes when `reread` (or when due), measures
    /// what is new or mutable, and builds the document. Its `scan` section
    /// counts only what this pass walked.
    pub fn pass(&mut self, reread: bool) -> Status {
        let started = Instant::now();
        let resync = self.settings.resync_interval;
        let (discovered, at) = match self.discovered.take() {
            // A pull in flight raises no events while it downloads: reread
            // every pass until it is done, so its progress is current.
            Some((d, at)) if !reread && at.elapsed() < resync && !d.pulling() => (d, at),
            _ => (inventory::discover(&self.layout), Instant::now()),
        };
        let walk = WalkOptions {
            deadline: Some(started + self.settings.scan_deadline),
            ..self.settings.walk.clone()
        };
        let fresh = self.cache.refresh(&discovered.immutable_paths());
        let mut walked = inventory::measure(fresh, &walk);
        for (path, w) in &walked {
            self.cache.insert(path.clone(), w);
        }
        walked.extend(inventory::measure(discovered.mutable_paths(), &walk));
        let summary = inventory::summarize(walked.values(), started.elapsed().as_secs_f64());
        let cache = &self.cache;
        let size = |p: &std::path::Path| cache.get(p).or_else(|| walked.get(p).map(|w| w.usage));
        let mut status =
            inventory::build(&self.layout, &discovered, &size, summary, &mut self.history);
        status.source = "agent".to_string();
        self.discovered = Some((discovered, at));
        status
    }

    /// Runs passes until told to stop: one right away, then one per
    /// interval (with jitter) or sooner when a runtime reports a change.
    pub fn run(mut self, wake: &Receiver<Wake>, mut publish: impl FnMut(Status)) {
        let mut reread = true;
        loop {
            publish(self.pass(reread));
            match wake.recv_timeout(jittered(
                self.settings.rescan_interval,
                self.settings.rescan_jitter,
            )) {
                Ok(Wake::Changed) => reread = settle(wake).is_some(),
                Ok(Wake::Shutdown) | Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => reread = false,
            }
        }
    }
}

/// Swallows the burst of events that follows a first one (a pull publishes
/// many); `None` when a shutdown arrives meanwhile.
fn settle(wake: &Receiver<Wake>) -> Option<()> {
    let until = Instant::now() + DEBOUNCE;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match wake.recv_timeout(left) {
            Ok(Wake::Changed) => continue,
            Ok(Wake::Shutdown) | Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => return Some(()),
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

    #[test]
    fn a_burst_of_changes_settles_into_one_and_shutdown_wins() {
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..5 {
            tx.send(Wake::Changed).unwrap();
        }
        assert_eq!(settle(&rx), Some(()));
        tx.send(Wake::Changed).unwrap();
        tx.send(Wake::Shutdown).unwrap();
        assert_eq!(settle(&rx), None);
    }
}
