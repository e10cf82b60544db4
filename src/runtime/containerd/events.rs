//! containerd's event stream, so the agent rereads the runtime when images,
//! snapshots, containers or content change instead of waiting for its timer.
//! Garbage collection deletes without events, so the timer stays.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::rpc::{Rpc, Subscription};
use super::ContainerdError;
use crate::runtime::{BoxFuture, ChangeStream, EventError, Events};

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

/// containerd's change notifications at `socket`, as the agent follows them
/// (see [`crate::runtime::Runtime::events`]).
#[derive(Debug, Clone)]
pub struct Follow {
    /// containerd's socket.
    pub socket: PathBuf,
    /// Bounds connecting and containerd taking the subscription.
    pub timeout: Duration,
}

impl Events for Follow {
    fn source(&self) -> &Path {
        &self.socket
    }

    fn subscribe(&self) -> BoxFuture<'_, Result<Box<dyn ChangeStream>, EventError>> {
        Box::pin(async move {
            let stream = subscribe(&self.socket, self.timeout).await?;
            Ok(Box::new(stream) as Box<dyn ChangeStream>)
        })
    }
}

impl ChangeStream for EventStream {
    fn next_change(&mut self) -> BoxFuture<'_, Result<Option<String>, EventError>> {
        Box::pin(async move { Ok(self.next_topic().await?) })
    }
}
