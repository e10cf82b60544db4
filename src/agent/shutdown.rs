//! The agent's one stop signal. Whatever stops the agent first (SIGTERM or
//! SIGINT, the HTTP server giving up, the scanner thread ending or
//! panicking) triggers the same [`Shutdown`] with its [`Reason`]; every task
//! and thread watches that one value: async tasks await
//! [`Shutdown::stopped`], the scanner thread waits on it between ticks, and
//! the walker polls [`Shutdown::walk_cancel`] between directories.
//!
//! The first reason is the one that counts: a scanner that returns because
//! SIGTERM stopped it does not turn a clean stop into a failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::Notify;

/// Why the agent stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// SIGTERM (systemd, the kubelet): a clean stop.
    Terminate,
    /// SIGINT (Ctrl-C): a clean stop.
    Interrupt,
    /// The scanner thread returned or panicked on its own: the agent exits
    /// with an error so that it is restarted.
    ScannerEnded,
    /// The layer auditor's thread ended on its own (a panic): the agent
    /// exits with an error so that it is restarted.
    AuditorEnded,
    /// The HTTP server gave up (accepting kept failing); the server's error
    /// is what the agent exits with.
    ServerFailed,
}

/// The stop signal; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Set once, by the first trigger.
    reason: OnceLock<Reason>,
    /// Turns true with `reason`: what a walk in progress polls.
    walks: Arc<AtomicBool>,
    /// Wakes the tasks waiting in [`Shutdown::stopped`].
    waiters: Notify,
}

impl Shutdown {
    /// A signal nothing has triggered yet.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Stops the agent for `reason`, unless it is stopping already; true
    /// when this call is the one that stopped it.
    pub fn trigger(&self, reason: Reason) -> bool {
        let first = self.inner.reason.set(reason).is_ok();
        if first {
            self.inner.walks.store(true, Ordering::Relaxed);
            self.inner.waiters.notify_waiters();
        }
        first
    }

    /// Why the agent stops; `None` while it runs.
    pub fn reason(&self) -> Option<Reason> {
        self.inner.reason.get().copied()
    }

    /// Resolves once the agent is stopping (at once if it is), with why.
    pub async fn stopped(&self) -> Reason {
        loop {
            let notified = self.inner.waiters.notified();
            tokio::pin!(notified);
            // Registered before the check, so a trigger in between is not
            // missed.
            notified.as_mut().enable();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }

    /// The flag a walk polls ([`crate::walk::WalkOptions::cancel`]): it
    /// turns true when the agent starts stopping.
    pub fn walk_cancel(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.inner.walks)
    }

    /// A guard that stops the agent for `reason` when it is dropped: held
    /// by a thread the agent cannot run without, it turns the thread's end,
    /// a return or a panic, into a shutdown.
    pub fn trigger_on_drop(&self, reason: Reason) -> TriggerOnDrop {
        TriggerOnDrop {
            shutdown: self.clone(),
            reason,
        }
    }
}

/// Triggers its [`Shutdown`] when dropped; see [`Shutdown::trigger_on_drop`].
#[derive(Debug)]
pub struct TriggerOnDrop {
    shutdown: Shutdown,
    reason: Reason,
}

impl Drop for TriggerOnDrop {
    fn drop(&mut self) {
        self.shutdown.trigger(self.reason);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_first_reason_counts_and_every_clone_sees_it() {
        let shutdown = Shutdown::new();
        let walks = shutdown.walk_cancel();
        let clone = shutdown.clone();
        assert_eq!(clone.reason(), None);
        assert!(!walks.load(Ordering::Relaxed));
        assert!(shutdown.trigger(Reason::Terminate));
        assert!(!clone.trigger(Reason::ScannerEnded), "already stopping");
        assert_eq!(clone.reason(), Some(Reason::Terminate));
        assert!(walks.load(Ordering::Relaxed), "walks are cancelled");
    }

    #[test]
    fn a_thread_that_panics_stops_the_agent() {
        let shutdown = Shutdown::new();
        let guard = shutdown.trigger_on_drop(Reason::ScannerEnded);
        let ended = std::thread::spawn(move || {
            let _guard = guard;
            panic!("the scanner broke");
        })
        .join();
        assert!(ended.is_err());
        assert_eq!(shutdown.reason(), Some(Reason::ScannerEnded));
    }

    #[tokio::test]
    async fn waiters_wake_on_a_trigger_from_another_thread_and_later_ones_at_once() {
        let shutdown = Shutdown::new();
        let waiter = {
            let shutdown = shutdown.clone();
            tokio::spawn(async move { shutdown.stopped().await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        let trigger = shutdown.clone();
        std::thread::spawn(move || trigger.trigger(Reason::Interrupt));
        let woke = tokio::time::timeout(Duration::from_secs(1), waiter).await;
        let reason = woke.expect("the waiter should wake").unwrap();
        assert_eq!(reason, Reason::Interrupt);
        let late = tokio::time::timeout(Duration::from_millis(10), shutdown.stopped());
        assert_eq!(late.await.ok(), Some(Reason::Interrupt));
    }
}
