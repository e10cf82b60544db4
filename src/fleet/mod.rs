//! The fleet pre-flight: the same question (will this image fit?) put to
//! every node's agent at once, before a rollout starts.
//!
//! The CLI resolves the image and measures its layers once
//! ([`crate::what_if::Question`]); a source finds the agents (an explicit
//! list, [`prometheus`]'s active targets, or the Kubernetes API server's
//! pod proxy, [`kube`]); a transport asks each of them with a deadline and
//! a bounded answer ([`direct`], [`kube`]), at most `concurrency` at a
//! time ([`each`]); [`report`] orders the answers worst first and sums
//! them up. A node that does not answer is unknown, never ok.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use crate::what_if::Answer;

pub mod agents;
pub mod direct;
pub mod kube;
pub mod prometheus;
pub mod report;

/// The agent's route that answers a [`crate::what_if::Question`].
pub const ROUTE: &str = "/api/v1/check-pull";

/// The port the agent listens on in the DaemonSet.
pub const AGENT_PORT: u16 = 9847;

/// One agent to ask: the node it speaks for and where it answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// The node's name as the source knows it (a Prometheus `node` label,
    /// a pod's `spec.nodeName`, or the address as given); the answer's own
    /// `node` replaces it once the agent answers.
    pub node: String,
    /// `host:port` (a pod's `name:port` through the pod proxy).
    pub address: String,
}

/// How each agent is asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The deadline of one agent's whole exchange: connecting, sending the
    /// question and reading the answer.
    pub timeout: Duration,
    /// Agents asked at the same time (at least 1).
    pub concurrency: usize,
    /// The largest answer read; a larger one is a bad answer.
    pub max_answer_bytes: u64,
}

/// The largest answer read by default: an answer is a check-pull document,
/// a few KiB per layer.
pub const MAX_ANSWER_BYTES: u64 = 4 << 20;

/// Bytes of an agent's error body kept for the message.
const MAX_MESSAGE_BYTES: u64 = 4096;

/// Why a node has no answer: it is then unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NodeError {
    /// No answer within the deadline.
    #[error("no answer within {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// Nothing listens there.
    #[error("connection refused by {0}")]
    Refused(String),
    /// It could not be reached otherwise (a name that does not resolve, a
    /// reset, an API server that refused the proxy).
    #[error("cannot reach {address}: {message}")]
    Unreachable {
        /// Where.
        address: String,
        /// Why, as the transport said.
        message: String,
    },
    /// It answered with an HTTP error: its message.
    #[error("HTTP {status} from {address}: {message}")]
    Status {
        /// The agent (or proxy).
        address: String,
        /// The HTTP status code.
        status: u16,
        /// The start of its body.
        message: String,
    },
    /// It answered something that is not an answer.
    #[error("bad answer from {address}: {message}")]
    BadAnswer {
        /// The agent.
        address: String,
        /// What is wrong with it.
        message: String,
    },
}

impl NodeError {
    /// A short name of the kind, for `--json`.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeError::Timeout(_) => "timeout",
            NodeError::Refused(_) => "refused",
            NodeError::Unreachable { .. } => "unreachable",
            NodeError::Status { .. } => "http_status",
            NodeError::BadAnswer { .. } => "bad_answer",
        }
    }
}

/// One node's outcome.
#[derive(Debug, Clone)]
pub struct NodeAnswer {
    /// The agent asked.
    pub agent: Agent,
    /// What it said, or why it said nothing.
    pub answer: Result<Answer, NodeError>,
}

/// An agent's reply: `body` as an [`Answer`] when `status` is a success,
/// else the agent's refusal with its message.
pub fn reply(address: &str, status: u16, body: &[u8]) -> Result<Answer, NodeError> {
    if !(200..300).contains(&status) {
        return Err(NodeError::Status {
            address: address.to_string(),
            status,
            message: error_message(body),
        });
    }
    parse_answer(address, body)
}

/// `body` (an answer of `address`) as an [`Answer`]: JSON, else a bad
/// answer saying why.
pub fn parse_answer(address: &str, body: &[u8]) -> Result<Answer, NodeError> {
    serde_json::from_slice(body).map_err(|e| NodeError::BadAnswer {
        address: address.to_string(),
        message: format!("not a check-pull answer: {e}"),
    })
}

/// The agent's error body as a one-line message: its JSON `error` when it
/// has one, else the text, at most [`MAX_MESSAGE_BYTES`].
pub fn error_message(body: &[u8]) -> String {
    let body = &body[..body.len().min(MAX_MESSAGE_BYTES as usize)];
    let text = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("error")?.as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// `ask` applied to every item, at most `concurrency` at a time (scoped
/// threads: each one blocks on its agent), the results in the items' order.
pub fn each<T: Sync, R: Send>(
    items: &[T],
    concurrency: usize,
    ask: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    let workers = concurrency.clamp(1, items.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(item) = items.get(i) else { break };
                let result = ask(item);
                // A poisoned slot only means another worker panicked.
                *results[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(result);
            });
        }
    });
    results
        .into_iter()
        .filter_map(|slot| slot.into_inner().unwrap_or_else(|p| p.into_inner()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn each_keeps_the_order_and_never_exceeds_the_concurrency() {
        let running = AtomicUsize::new(0);
        let most = AtomicUsize::new(0);
        let items: Vec<usize> = (0..40).collect();
        let out = each(&items, 3, |i| {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            running.fetch_sub(1, Ordering::SeqCst);
            i * 2
        });
        assert_eq!(out, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(most.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn each_of_nothing_is_nothing() {
        let out: Vec<u8> = each(&[] as &[u8], 32, |b| *b);
        assert!(out.is_empty());
    }

    #[test]
    fn an_error_body_becomes_one_line() {
        assert_eq!(error_message(br#"{"error": "too\nbig"}"#), "too big");
        assert_eq!(error_message(b"plain\r\ntext"), "plain text");
        assert!(error_message(&vec![b'x'; 10_000]).len() <= 4096);
    }
}
