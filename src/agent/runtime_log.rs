//! One log line each time a runtime's state changes between passes: its API
//! stops or starts answering, its figures move between its API and its
//! files, or it appears or goes. Between changes nothing is logged, so a
//! containerd that stays down is warned about once, not every pass.

use crate::model::{ReadFrom, RuntimeState};

/// What a runtime's state became, as the log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Change {
    /// Its figures are live (API answers, or read from its files only).
    Up,
    /// Its API does not answer; its files give the figures.
    FromFiles,
    /// It was not read at all.
    Unread,
}

impl Change {
    fn of(state: &RuntimeState) -> Change {
        match (state.up(), state.read_from) {
            (true, _) => Change::Up,
            (false, Some(ReadFrom::Files)) => Change::FromFiles,
            (false, _) => Change::Unread,
        }
    }
}

/// The change from `before` (the last pass; `None` on the first) to `now`;
/// `None` when nothing changed. A runtime absent from the first pass is
/// not news (most nodes run one runtime, not both).
fn change(before: Option<&RuntimeState>, now: &RuntimeState) -> Option<Change> {
    let now_is = Change::of(now);
    match before.map(Change::of) {
        Some(was) if was == now_is => None,
        None if now_is == Change::Unread => None,
        _ => Some(now_is),
    }
}

/// Logs every runtime whose state changed since `before` (the last pass's
/// runtimes, `None` on the first pass).
pub fn log_changes(before: Option<&[RuntimeState]>, now: &[RuntimeState]) {
    for state in now {
        let was = before.and_then(|b| b.iter().find(|r| r.runtime == state.runtime));
        let Some(change) = change(was, state) else {
            continue;
        };
        let (runtime, location) = (state.runtime.as_str(), state.location.as_str());
        let message = state.message.as_deref().unwrap_or("");
        match change {
            Change::Up => tracing::info!(
                runtime,
                location,
                "{runtime} is up; its figures come from {}",
                from(state)
            ),
            Change::FromFiles => {
                tracing::warn!(runtime, location, %message, "{runtime} does not answer; its figures come from its files")
            }
            Change::Unread => {
                tracing::warn!(runtime, location, %message, "{runtime} is gone: neither its API nor its files could be read")
            }
        }
    }
}

fn from(state: &RuntimeState) -> &'static str {
    match state.read_from {
        Some(ReadFrom::Api) => "its API",
        _ => "its files",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::RuntimeKind;

    fn containerd(answers: bool, read_from: Option<ReadFrom>) -> RuntimeState {
        RuntimeState {
            runtime: RuntimeKind::Containerd,
            found: read_from.is_some(),
            location: "/run/containerd/containerd.sock".into(),
            image_root: None,
            message: (!answers).then(|| "no such socket".into()),
            answers: Some(answers),
            read_from,
        }
    }

    #[test]
    fn fault_down_and_back_are_each_one_change() {
        let up = containerd(true, Some(ReadFrom::Api));
        let files = containerd(false, Some(ReadFrom::Files));
        let gone = containerd(false, None);
        assert_eq!(change(None, &up), Some(Change::Up));
        assert_eq!(change(Some(&up), &up), None);
        assert_eq!(change(Some(&up), &files), Some(Change::FromFiles));
        assert_eq!(change(Some(&files), &files), None, "said once");
        assert_eq!(change(Some(&files), &gone), Some(Change::Unread));
        assert_eq!(change(Some(&gone), &up), Some(Change::Up));
    }

    #[test]
    fn fault_a_runtime_never_seen_is_not_news_but_one_down_from_the_start_is() {
        assert_eq!(change(None, &containerd(false, None)), None);
        let files = containerd(false, Some(ReadFrom::Files));
        assert_eq!(change(None, &files), Some(Change::FromFiles));
    }
}
