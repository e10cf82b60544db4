//! Follows a runtime's events (those of [`crate::runtime::Runtime::events`]:
//! containerd's) and wakes the scanner when the inventory may have changed.
//! The runtime may be absent, restart or die (containerd is often the first
//! victim of a full disk): the follower reconnects with a short capped
//! backoff, so a restarted runtime is followed again within seconds; it logs
//! every loss and every recovery, and wakes the scanner on every (re)connect
//! since events may have been missed meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::shutdown::Shutdown;
use crate::runtime::{Events, RuntimeKind};

/// First wait before reconnecting.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// Longest wait before reconnecting: a restarted containerd should be
/// followed again within seconds, and one attempt costs only a connect and
/// one small call.
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Follows `runtime`'s `events`, waking the scanner through `wake` (one
/// pending wake-up is as good as many: the scanner rereads everything),
/// until `shutdown`.
pub async fn follow(
    runtime: RuntimeKind,
    events: Box<dyn Events>,
    wake: Arc<Notify>,
    shutdown: Shutdown,
) {
    let mut backoff = Backoff::default();
    let mut journal = Journal::default();
    let (runtime, socket) = (runtime.as_str(), events.source().display());
    loop {
        let outcome = tokio::select! {
            outcome = follow_once(runtime, events.as_ref(), &wake, &mut journal) => outcome,
            _ = shutdown.stopped() => return,
        };
        let (reason, following) = match outcome {
            Outcome::Failed(reason) => (reason, false),
            Outcome::Lost { reason, lasted } => {
                // The runtime went away: reread so the status says so.
                wake.notify_one();
                backoff.lost_after(lasted);
                (reason, true)
            }
        };
        let retry_in = backoff.next_wait();
        if journal.failed(&reason, following) {
            tracing::warn!(%socket, %reason, ?retry_in, "{runtime} events unavailable; the resync timer still runs");
        } else {
            tracing::debug!(%socket, %reason, ?retry_in, "{runtime} events still unavailable");
        }
        tokio::select! {
            () = tokio::time::sleep(retry_in) => {}
            _ = shutdown.stopped() => return,
        }
    }
}

/// How one subscription ended.
#[derive(Debug)]
enum Outcome {
    /// No subscription was made, for this reason.
    Failed(String),
    /// A subscription that lasted `lasted` ended, for `reason`.
    Lost { reason: String, lasted: Duration },
}

/// Subscribes once and wakes the scanner on every event until the
/// subscription ends.
async fn follow_once(
    runtime: &str,
    events: &dyn Events,
    wake: &Notify,
    journal: &mut Journal,
) -> Outcome {
    let mut stream = match events.subscribe().await {
        Ok(stream) => stream,
        Err(e) => return Outcome::Failed(e.to_string()),
    };
    let since = Instant::now();
    journal.followed();
    tracing::info!(socket = %events.source().display(), "following {runtime} events");
    // Whatever happened while we were not listening, reread now.
    wake.notify_one();
    loop {
        let reason = match stream.next_change().await {
            Ok(Some(topic)) => {
                tracing::debug!(%topic, "{runtime} event");
                wake.notify_one();
                continue;
            }
            Ok(None) => format!("{runtime} closed the event stream"),
            Err(e) => e.to_string(),
        };
        return Outcome::Lost {
            reason,
            lasted: since.elapsed(),
        };
    }
}

/// The waits between reconnection attempts: doubling from
/// [`BACKOFF_START`] up to [`BACKOFF_MAX`].
#[derive(Debug)]
struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The wait before the next attempt; the one after is longer.
    fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        wait
    }

    /// A subscription that lasted `lasted` was lost. One that held for a
    /// while starts the waits over, so a restart is followed within a
    /// second or two; one that breaks as soon as it is made keeps backing
    /// off, so a flapping containerd is not hammered (nor logged) every
    /// second.
    fn lost_after(&mut self, lasted: Duration) {
        if lasted >= BACKOFF_MAX {
            self.next = BACKOFF_START;
        }
    }
}

/// What the follower has said about the subscription, so it can decide
/// what is worth saying next.
#[derive(Debug, Default)]
struct Journal {
    /// The reason last warned about while not following; `None` while
    /// following and before the first attempt.
    warned: Option<String>,
}

impl Journal {
    /// A subscription was made (always logged: it is the recovery from
    /// whatever was warned about).
    fn followed(&mut self) {
        self.warned = None;
    }

    /// Whether a failure deserves a warning: every loss of a subscription
    /// does, and so does a failed attempt whose reason differs from the last
    /// one warned about; repeating the same failure every retry of a
    /// containerd that stays away would drown the log.
    fn failed(&mut self, reason: &str, following: bool) -> bool {
        let warn = following || self.warned.as_deref() != Some(reason);
        if warn {
            self.warned = Some(reason.to_string());
        }
        warn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::shutdown::Reason;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn backoff_doubles_from_one_second_up_to_ten() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..6).map(|_| b.next_wait()).collect();
        assert_eq!(
            waits,
            [secs(1), secs(2), secs(4), secs(8), secs(10), secs(10)]
        );
    }

    #[test]
    fn backoff_starts_over_only_after_a_subscription_that_held() {
        let mut b = Backoff::default();
        for _ in 0..4 {
            b.next_wait();
        }
        b.lost_after(Duration::from_millis(50));
        assert_eq!(
            b.next_wait(),
            secs(10),
            "a flapping stream keeps backing off"
        );
        b.lost_after(secs(3600));
        assert_eq!(
            b.next_wait(),
            secs(1),
            "a lost long subscription retries fast"
        );
        assert_eq!(b.next_wait(), secs(2));
    }

    #[test]
    fn every_loss_is_warned_about_and_repeated_failures_once() {
        let mut j = Journal::default();
        // containerd absent at start: warned once, not every retry.
        assert!(j.failed("no such socket", false));
        assert!(!j.failed("no such socket", false));
        assert!(!j.failed("no such socket", false));
        // A different reason is news.
        assert!(j.failed("Connection refused (os error 111)", false));
        j.followed();
        // Every loss, even for the same reason as before.
        assert!(j.failed("event stream broke: h2 protocol error", true));
        assert!(j.failed("Connection refused (os error 111)", false));
        assert!(!j.failed("Connection refused (os error 111)", false));
        j.followed();
        assert!(j.failed("event stream broke: h2 protocol error", true));
        j.followed();
        assert!(j.failed("event stream broke: h2 protocol error", true));
    }

    #[test]
    fn a_failure_after_a_recovery_is_warned_about_even_if_seen_before() {
        let mut j = Journal::default();
        assert!(j.failed("subscribing to events: no answer within 5s", false));
        j.followed();
        assert!(j.failed("subscribing to events: no answer within 5s", false));
    }

    #[tokio::test]
    async fn stops_promptly_on_shutdown_while_containerd_is_absent() {
        let dir = std::env::temp_dir().join(format!("headroom-follow-{}", std::process::id()));
        let socket = dir.join("no-containerd.sock");
        let wake = Arc::new(Notify::new());
        let shutdown = Shutdown::new();
        let feed = Box::new(crate::runtime::containerd::events::Follow {
            socket,
            timeout: secs(5),
        });
        let follow = follow(
            RuntimeKind::Containerd,
            feed,
            Arc::clone(&wake),
            shutdown.clone(),
        );
        let follower = tokio::spawn(follow);
        // Let it fail and go to sleep in its backoff, then stop it.
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.trigger(Reason::Terminate);
        tokio::time::timeout(secs(1), follower)
            .await
            .expect("the follower should stop within a second of shutdown")
            .expect("the follower should not panic");
        let woken = tokio::time::timeout(Duration::ZERO, wake.notified()).await;
        assert!(woken.is_err(), "nothing was followed, so no wake-up");
    }
}
