//! containerd's event stream, so the agent rereads the runtime when images,
//! snapshots, containers or content change instead of waiting for its timer.
//! Garbage collection deletes without events, so the timer stays.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::rpc::{Rpc, Subscription};
use super::ContainerdError;

/// Topics that change what the inventory holds.
const TOPICS: [&str; 4] = ["/images/", "/snapshot/", "/containers/", "/content/"];

/// A live subscription to containerd's events.
pub struct EventStream {
    socket: PathBuf,
    inner: Subscription,
}

/// Subscribes to the inventory-relevant events of every namespace.
///
/// Connecting and containerd taking the subscription are bounded by
/// `timeout`; waiting for events is not (containerd may stay quiet for
/// hours), but the stream fails within about `timeout` plus ten seconds of
/// containerd no longer answering.
pub async fn subscribe(socket: &Path, timeout: Duration) -> Result<EventStream, ContainerdError> {
    let rpc = Rpc::connect(socket, timeout).await?;
    let filters = TOPICS.iter().map(|t| format!("topic~=\"^{t}\"")).collect();
    let inner = rpc
        .subscribe(filters)
        .await
        .map_err(|source| ContainerdError::Call {
            socket: socket.to_path_buf(),
            source,
        })?;
    Ok(EventStream {
        socket: socket.to_path_buf(),
        inner,
    })
}

impl EventStream {
    /// The topic of the next event; `None` when containerd closed the
    /// stream; an error when the connection broke or containerd stopped
    /// answering.
    pub async fn next_topic(&mut self) -> Result<Option<String>, ContainerdError> {
        match self.inner.next().await {
            Ok(event) => Ok(event.map(|e| e.topic)),
            Err(source) => Err(ContainerdError::Call {
                socket: self.socket.clone(),
                source,
            }),
        }
    }
}
