//! The client side of `/api/v1/status` and `/api/v1/audit`: how `headroom
//! status` and `headroom audit` ask the local agent before reading the node
//! themselves.

use std::net::SocketAddr;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::audit::AuditReport;
use crate::model::Status;

/// The largest status document accepted (a node with thousands of images
/// stays well below it).
const MAX_DOCUMENT_BYTES: u64 = 64 << 20;

/// Why the agent's document could not be had.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer, a refused connection, a timeout or an HTTP error status.
    #[error("no usable answer from the agent at {address}: {source}")]
    Request {
        /// The agent's address.
        address: SocketAddr,
        /// What went wrong.
        source: Box<ureq::Error>,
    },
    /// It answered with something that is not the document asked for.
    #[error("the agent at {address} sent a document that does not parse: {source}")]
    Document {
        /// The agent's address.
        address: SocketAddr,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Fetches the agent's current status document, waiting at most `timeout`
/// in all. Plain HTTP: the agent is on this node.
pub fn fetch_status(address: SocketAddr, timeout: Duration) -> Result<Status, ClientError> {
    fetch(address, "/api/v1/status", timeout)
}

/// Fetches the agent's current audit, waiting at most `timeout` in all.
pub fn fetch_audit(address: SocketAddr, timeout: Duration) -> Result<AuditReport, ClientError> {
    fetch(address, "/api/v1/audit", timeout)
}

/// Fetches the JSON document at `path` from the agent at `address`.
fn fetch<T: DeserializeOwned>(
    address: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Result<T, ClientError> {
    let request_error = |e: ureq::Error| ClientError::Request {
        address,
        source: Box::new(e),
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(true)
        .build()
        .into();
    let mut response = agent
        .get(format!("http://{address}{path}"))
        .call()
        .map_err(request_error)?;
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_DOCUMENT_BYTES)
        .read_to_vec()
        .map_err(request_error)?;
    serde_json::from_slice(&body).map_err(|source| ClientError::Document { address, source })
}
