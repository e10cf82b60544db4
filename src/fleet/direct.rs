//! The direct transport: each agent asked over plain HTTP at its
//! `host:port` (an explicit list, or Prometheus's targets), the way
//! Prometheus itself reaches it. No proxy: agents are inside the cluster's
//! network, where a proxy from the environment would not reach them.

use super::{each, reply, Agent, Limits, NodeAnswer, NodeError, ROUTE};

/// Asks every agent the `question` (a [`crate::what_if::Question`] as
/// JSON), at most `limits.concurrency` at a time, each within
/// `limits.timeout`; the answers in the agents' order.
pub fn ask(agents: &[Agent], question: &[u8], limits: &Limits) -> Vec<NodeAnswer> {
    let client: ureq::Agent = ureq::Agent::config_builder()
        .proxy(None)
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(limits.timeout))
        .user_agent(concat!("headroom/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    each(agents, limits.concurrency, |agent| NodeAnswer {
        agent: agent.clone(),
        answer: ask_one(&client, &agent.address, question, limits),
    })
}

/// One agent's answer, or why there is none.
fn ask_one(
    client: &ureq::Agent,
    address: &str,
    question: &[u8],
    limits: &Limits,
) -> Result<crate::what_if::Answer, NodeError> {
    let failed = |e: ureq::Error| node_error(address, limits, e);
    let mut response = client
        .post(format!("http://{address}{ROUTE}"))
        .header("content-type", "application/json")
        .send(question)
        .map_err(failed)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(limits.max_answer_bytes)
        .read_to_vec();
    let body = match body {
        Err(ureq::Error::BodyExceedsLimit(limit)) => {
            return Err(NodeError::BadAnswer {
                address: address.to_string(),
                message: format!("larger than {limit} bytes"),
            })
        }
        other => other.map_err(failed)?,
    };
    reply(address, status, &body)
}

/// The [`NodeError`] of a failed exchange with `address`.
fn node_error(address: &str, limits: &Limits, e: ureq::Error) -> NodeError {
    match e {
        ureq::Error::Timeout(_) => NodeError::Timeout(limits.timeout),
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            NodeError::Refused(address.to_string())
        }
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::TimedOut => {
            NodeError::Timeout(limits.timeout)
        }
        other => NodeError::Unreachable {
            address: address.to_string(),
            message: other.to_string(),
        },
    }
}
