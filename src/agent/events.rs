//! Follows containerd's events and wakes the scanner when the inventory may
//! have changed. containerd may be absent, restart or die (it is often the
//! first victim of a full disk): the follower reconnects with exponential
//! backoff, logs each loss once, and wakes the scanner on every reconnect
//! since events may have been missed meanwhile.

use std::path::PathBuf;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;

use tokio::sync::watch;

use super::scanner::Wake;
use crate::runtime::containerd::events;

/// Backoff between reconnection attempts.
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Follows events from `socket` until `shutdown` turns true or the scanner
/// is gone.
pub async fn follow(
    socket: PathBuf,
    timeout: Duration,
    wake: SyncSender<Wake>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_START;
    let mut was_down = false;
    loop {
        let outcome = tokio::select! {
            outcome = follow_once(&socket, timeout, &wake) => outcome,
            _ = shutdown.wait_for(|stop| *stop) => return,
        };
        match outcome {
            Outcome::ScannerGone => return,
            Outcome::Lost { reason, had_events } => {
                if had_events {
                    // containerd went away: reread so the status says so.
                    backoff = BACKOFF_START;
                    if scanner_gone(&wake) {
                        return;
                    }
                }
                if !was_down || had_events {
                    tracing::warn!(socket = %socket.display(), %reason, retry_in = ?backoff, "containerd events unavailable; the resync timer still runs");
                }
                was_down = true;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

enum Outcome {
    ScannerGone,
    Lost { reason: String, had_events: bool },
}

async fn follow_once(
    socket: &std::path::Path,
    timeout: Duration,
    wake: &SyncSender<Wake>,
) -> Outcome {
    let mut stream = match events::subscribe(socket, timeout).await {
        Ok(stream) => stream,
        Err(e) => {
            return Outcome::Lost {
                reason: e.to_string(),
                had_events: false,
            }
        }
    };
    tracing::info!(socket = %socket.display(), "following containerd events");
    // Whatever happened while we were not listening, reread now.
    if scanner_gone(wake) {
        return Outcome::ScannerGone;
    }
    loop {
        match stream.next_topic().await {
            Ok(Some(topic)) => {
                tracing::debug!(%topic, "containerd event");
                if scanner_gone(wake) {
                    return Outcome::ScannerGone;
                }
            }
            Ok(None) => {
                return Outcome::Lost {
                    reason: "containerd closed the event stream".into(),
                    had_events: true,
                }
            }
            Err(e) => {
                return Outcome::Lost {
                    reason: e.to_string(),
                    had_events: true,
                }
            }
        }
    }
}

/// Wakes the scanner; a wake-up already pending is as good as a new one.
/// True when the scanner is gone.
fn scanner_gone(wake: &SyncSender<Wake>) -> bool {
    matches!(
        wake.try_send(Wake::Changed),
        Err(TrySendError::Disconnected(_))
    )
}
