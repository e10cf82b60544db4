//! The gRPC calls the containerd reader makes, each bounded by one timeout
//! (save the wait for events, which a quiet containerd may never end: a
//! [`Subscription`] proves liveness with probes instead).
//!
//! Every call takes the namespace explicitly and fails with an [`RpcError`]
//! naming the [`Call`], so the caller can turn it into a
//! [`Problem`](crate::runtime::Problem) and carry on.

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::introspection_client::IntrospectionClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    Info as SnapshotInfo, ListSnapshotsRequest, MountsRequest,
};
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::services::v1::Container;
use containerd_client::services::v1::{
    Image, Info as ContentInfo, ListContainersRequest, ListContentRequest, ListImagesRequest,
    ListNamespacesRequest, ListStatusesRequest, Plugin, PluginsRequest, ReadContentRequest,
    Status as IngestStatus, SubscribeRequest,
};
use containerd_client::types::{Envelope, Mount};
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use super::ContainerdError;
use crate::runtime::{Classified, ProblemKind};

/// A containerd API call, as errors name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    /// Listing the namespaces.
    Namespaces,
    /// Listing the plugins (introspection).
    Plugins,
    /// Listing the image records of a namespace.
    Images {
        /// The namespace.
        ns: String,
    },
    /// Listing the containers of a namespace.
    Containers {
        /// The namespace.
        ns: String,
    },
    /// Listing the content blobs of a namespace.
    Content {
        /// The namespace.
        ns: String,
    },
    /// Listing the ingests of a namespace.
    Ingests {
        /// The namespace.
        ns: String,
    },
    /// Listing a snapshotter's snapshots of a namespace.
    Snapshots {
        /// The namespace.
        ns: String,
        /// The snapshotter.
        snapshotter: String,
    },
    /// Reading the mounts of an active snapshot.
    Mounts {
        /// The namespace.
        ns: String,
        /// The snapshot key.
        key: String,
    },
    /// Reading a blob of the content store.
    ReadBlob {
        /// The namespace.
        ns: String,
        /// The blob's digest.
        digest: String,
    },
    /// Subscribing to events.
    Subscribe,
    /// Reading the event stream.
    Events,
    /// Asking containerd's version, to prove it answers while `during` goes on.
    Version {
        /// What the probe serves, e.g. "following events".
        during: &'static str,
    },
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Namespaces => write!(f, "listing namespaces"),
            Call::Plugins => write!(f, "listing plugins"),
            Call::Images { ns } => write!(f, "listing images of namespace {ns}"),
            Call::Containers { ns } => write!(f, "listing containers of namespace {ns}"),
            Call::Content { ns } => write!(f, "listing content of namespace {ns}"),
            Call::Ingests { ns } => write!(f, "listing ingests of namespace {ns}"),
            Call::Snapshots { ns, snapshotter } => {
                write!(f, "listing {snapshotter} snapshots of namespace {ns}")
            }
            Call::Mounts { ns, key } => {
                write!(f, "reading mounts of snapshot {key} in namespace {ns}")
            }
            Call::ReadBlob { ns, digest } => write!(f, "reading blob {digest} in namespace {ns}"),
            Call::Subscribe => write!(f, "subscribing to events"),
            Call::Events => write!(f, "event stream broke"),
            Call::Version { during } => write!(f, "{during}: asking containerd's version"),
        }
    }
}

/// Why a call to containerd failed.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// containerd answered with an error status.
    #[error("{call}: {message}")]
    Status {
        /// The call.
        call: Call,
        /// The status code.
        code: Code,
        /// The status message (its code when it has none).
        message: String,
    },
    /// containerd did not answer within the timeout.
    #[error("{call}: no answer within {}", secs(*timeout))]
    Timeout {
        /// The call.
        call: Call,
        /// The timeout it had.
        timeout: Duration,
    },
    /// A blob is larger than the reader takes.
    #[error("{call}: larger than {cap} bytes, not read")]
    TooLarge {
        /// The call reading it.
        call: Call,
        /// The most bytes read.
        cap: usize,
    },
    /// The namespace cannot be sent as a gRPC header.
    #[error("namespace {ns:?} is not a valid gRPC header value")]
    BadNamespace {
        /// The namespace.
        ns: String,
    },
}

impl RpcError {
    /// The failed `call` as its `status` says.
    fn status(call: Call, status: &Status) -> Self {
        RpcError::Status {
            call,
            code: status.code(),
            message: status_text(status),
        }
    }
}

impl Classified for RpcError {
    fn kind(&self) -> ProblemKind {
        match self {
            RpcError::Status {
                code: Code::NotFound,
                ..
            } => ProblemKind::Missing,
            RpcError::Status { .. } | RpcError::Timeout { .. } => ProblemKind::Unanswered,
            RpcError::TooLarge { .. } | RpcError::BadNamespace { .. } => ProblemKind::Malformed,
        }
    }
}

/// gRPC metadata key that selects the containerd namespace.
const NAMESPACE_KEY: &str = "containerd-namespace";

/// A connection to containerd with the timeout every call must meet.
pub(super) struct Rpc {
    channel: Channel,
    timeout: Duration,
}

impl Rpc {
    /// Connects to the socket, giving up after `timeout`.
    pub(super) async fn connect(socket: &Path, timeout: Duration) -> Result<Self, ContainerdError> {
        let socket = socket.to_path_buf();
        if !socket.exists() {
            return Err(ContainerdError::NoSocket { socket });
        }
        let channel = match tokio::time::timeout(timeout, containerd_client::connect(&socket)).await
        {
            Err(_) => return Err(ContainerdError::ConnectTimeout { socket, timeout }),
            Ok(Err(e)) => {
                let reason = root_cause(&e);
                return Err(ContainerdError::Connect { socket, reason });
            }
            Ok(Ok(channel)) => channel,
        };
        Ok(Rpc { channel, timeout })
    }

    /// Every namespace; failing here means containerd cannot be read at all.
    pub(super) async fn namespaces(&self, socket: &Path) -> Result<Vec<String>, ContainerdError> {
        let mut client = NamespacesClient::new(self.channel.clone());
        let list = self
            .bounded(Call::Namespaces, async move {
                client.list(ListNamespacesRequest::default()).await
            })
            .await
            .map_err(|source| ContainerdError::Call {
                socket: socket.to_path_buf(),
                source,
            })?;
        Ok(list.namespaces.into_iter().map(|n| n.name).collect())
    }

    /// Every plugin containerd loaded, with its exports.
    pub(super) async fn plugins(&self) -> Result<Vec<Plugin>, RpcError> {
        let mut client = IntrospectionClient::new(self.channel.clone());
        let resp = self
            .bounded(Call::Plugins, async move {
                client.plugins(PluginsRequest::default()).await
            })
            .await?;
        Ok(resp.plugins)
    }

    /// Every image record of namespace `ns`.
    pub(super) async fn images(&self, ns: &str) -> Result<Vec<Image>, RpcError> {
        let mut client = ImagesClient::new(self.channel.clone());
        let req = namespaced(ns, ListImagesRequest::default())?;
        let call = Call::Images { ns: ns.into() };
        let resp = self
            .bounded(call, async move { client.list(req).await })
            .await?;
        Ok(resp.images)
    }

    /// Every container of namespace `ns`.
    pub(super) async fn containers(&self, ns: &str) -> Result<Vec<Container>, RpcError> {
        let mut client = ContainersClient::new(self.channel.clone());
        let req = namespaced(ns, ListContainersRequest::default())?;
        let call = Call::Containers { ns: ns.into() };
        let resp = self
            .bounded(call, async move { client.list(req).await })
            .await?;
        Ok(resp.containers)
    }

    /// Every content blob visible in namespace `ns`, with its labels.
    pub(super) async fn content(&self, ns: &str) -> Result<Vec<ContentInfo>, RpcError> {
        let mut client = ContentClient::new(self.channel.clone());
        let req = namespaced(ns, ListContentRequest::default())?;
        self.bounded_raw(Call::Content { ns: ns.into() }, async move {
            let stream = client.list(req).await?.into_inner();
            collect(stream, |msg| msg.info).await
        })
        .await
    }

    /// Every ingest (a blob being written, e.g. a layer being downloaded) of
    /// namespace `ns`, with its offset and expected total.
    pub(super) async fn ingests(&self, ns: &str) -> Result<Vec<IngestStatus>, RpcError> {
        let mut client = ContentClient::new(self.channel.clone());
        let req = namespaced(ns, ListStatusesRequest::default())?;
        let call = Call::Ingests { ns: ns.into() };
        let resp = self
            .bounded(call, async move { client.list_statuses(req).await })
            .await?;
        Ok(resp.statuses)
    }

    /// Every snapshot of `snapshotter` in namespace `ns`.
    pub(super) async fn snapshots(
        &self,
        ns: &str,
        snapshotter: &str,
    ) -> Result<Vec<SnapshotInfo>, RpcError> {
        let mut client = SnapshotsClient::new(self.channel.clone());
        let req = namespaced(
            ns,
            ListSnapshotsRequest {
                snapshotter: snapshotter.to_string(),
                filters: Vec::new(),
            },
        )?;
        let call = Call::Snapshots {
            ns: ns.into(),
            snapshotter: snapshotter.into(),
        };
        self.bounded_raw(call, async move {
            let stream = client.list(req).await?.into_inner();
            collect(stream, |msg| msg.info).await
        })
        .await
    }

    /// The mounts of active snapshot `key` (read-only query).
    pub(super) async fn mounts(
        &self,
        ns: &str,
        snapshotter: &str,
        key: &str,
    ) -> Result<Vec<Mount>, RpcError> {
        let mut client = SnapshotsClient::new(self.channel.clone());
        let req = namespaced(
            ns,
            MountsRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            },
        )?;
        let call = Call::Mounts {
            ns: ns.into(),
            key: key.into(),
        };
        let resp = self
            .bounded(call, async move { client.mounts(req).await })
            .await?;
        Ok(resp.mounts)
    }

    /// The bytes of blob `digest`, refusing blobs larger than `cap`.
    pub(super) async fn read(
        &self,
        ns: &str,
        digest: &str,
        cap: usize,
    ) -> Result<Vec<u8>, RpcError> {
        let mut client = ContentClient::new(self.channel.clone());
        let req = namespaced(
            ns,
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
        )?;
        let call = Call::ReadBlob {
            ns: ns.into(),
            digest: digest.into(),
        };
        // `None` once past the cap: the rest is not read.
        let data = self
            .bounded_raw(call.clone(), async move {
                let mut stream = client.read(req).await?.into_inner();
                let mut data = Vec::new();
                while let Some(msg) = stream.message().await? {
                    data.extend_from_slice(&msg.data);
                    if data.len() > cap {
                        return Ok(None);
                    }
                }
                Ok(Some(data))
            })
            .await?;
        data.ok_or(RpcError::TooLarge { call, cap })
    }

    /// Subscribes to the events of every namespace whose topic matches one
    /// of `filters`. Returns once containerd has taken the subscription: a
    /// probe sent after it got its answer within the timeout. The events
    /// themselves are awaited without a timeout (see [`Subscription`]).
    pub(super) async fn subscribe(&self, filters: Vec<String>) -> Result<Subscription, RpcError> {
        let mut client = EventsClient::new(self.channel.clone());
        let mut call: PendingEvents =
            Box::pin(async move { client.subscribe(SubscribeRequest { filters }).await });
        let probe = self.probe("subscribing to events");
        tokio::pin!(probe);
        // `biased`: the call is polled first, so its request goes out on the
        // connection before the probe's, and the probe's answer shows that
        // containerd has read the subscription. Awaiting the call itself
        // within the timeout is the bug of issue 8: containerd sends its
        // response headers only with the first event.
        let events = tokio::select! {
            biased;
            answer = call.as_mut() => match answer {
                Ok(response) => Events::Flowing(Box::new(response.into_inner())),
                Err(status) => return Err(RpcError::status(Call::Subscribe, &status)),
            },
            alive = &mut probe => {
                alive?;
                Events::Pending(call)
            }
        };
        let start = tokio::time::Instant::now() + PROBE_EVERY;
        let mut probes = tokio::time::interval_at(start, PROBE_EVERY);
        probes.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        Ok(Subscription {
            rpc: Rpc {
                channel: self.channel.clone(),
                timeout: self.timeout,
            },
            events,
            probes,
        })
    }

    /// Proves containerd still answers: its version (a constant, so the
    /// cheapest call there is), within the timeout.
    async fn probe(&self, during: &'static str) -> Result<(), RpcError> {
        let mut client = VersionClient::new(self.channel.clone());
        self.bounded(
            Call::Version { during },
            async move { client.version(()).await },
        )
        .await
        .map(drop)
    }

    /// Runs a unary call within the timeout and unwraps its response.
    async fn bounded<T>(
        &self,
        call: Call,
        answer: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, RpcError> {
        self.bounded_raw(call, async move {
            answer.await.map(tonic::Response::into_inner)
        })
        .await
    }

    /// Runs `answer` within the timeout; errors name the `call`.
    async fn bounded_raw<T>(
        &self,
        call: Call,
        answer: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, RpcError> {
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(status)) => Err(RpcError::status(call, &status)),
            Err(_) => Err(RpcError::Timeout {
                call,
                timeout: self.timeout,
            }),
        }
    }
}

/// How often a subscription checks that containerd still answers.
const PROBE_EVERY: Duration = Duration::from_secs(10);

/// A subscription call containerd has not answered yet.
type PendingEvents = Pin<
    Box<dyn Future<Output = Result<tonic::Response<tonic::Streaming<Envelope>>, Status>> + Send>,
>;

/// A live subscription to containerd's events, which fails when containerd
/// goes away.
///
/// Its call has no timeout: on a quiet containerd it waits for the first
/// event indefinitely. A containerd that exits closes the socket, which
/// fails the call at once. One that stops answering while its socket stays
/// open (a stopped or wedged process) is caught by a [`Rpc::probe`] every
/// [`PROBE_EVERY`], bounded by the timeout. HTTP/2 keepalive pings would
/// not do: `containerd_client::connect` exposes no endpoint settings, and
/// containerd keeps grpc-go's default enforcement policy, under which a
/// client pinging a silent connection more often than every 5 minutes is
/// sent GOAWAY (`too_many_pings`): a keepalive tight enough to notice a hang
/// within seconds would itself cut the subscription. Calls are not pings.
pub(super) struct Subscription {
    rpc: Rpc,
    events: Events,
    probes: tokio::time::Interval,
}

impl Subscription {
    /// The next event; `None` when containerd ended the subscription. Fails
    /// when the connection broke or containerd stopped answering probes.
    pub(super) async fn next(&mut self) -> Result<Option<Envelope>, RpcError> {
        loop {
            tokio::select! {
                event = self.events.next() => {
                    return event.map_err(|s| RpcError::status(Call::Events, &s));
                }
                _ = self.probes.tick() => self.rpc.probe("following events").await?,
            }
        }
    }
}

/// Where a subscription stands. Its `next` is cancel-safe (the call and the
/// stream keep their state here), as the probe's `select!` needs.
enum Events {
    /// containerd has not answered yet (it answers with the first event).
    Pending(PendingEvents),
    /// The answer came: events arrive on this stream (boxed: it is large).
    Flowing(Box<tonic::Streaming<Envelope>>),
    /// The call failed; a finished future must not be polled again.
    Failed,
}

impl Events {
    async fn next(&mut self) -> Result<Option<Envelope>, Status> {
        loop {
            match self {
                Events::Pending(call) => match call.as_mut().await {
                    Ok(response) => *self = Events::Flowing(Box::new(response.into_inner())),
                    Err(status) => {
                        *self = Events::Failed;
                        return Err(status);
                    }
                },
                Events::Flowing(stream) => return stream.message().await,
                Events::Failed => return Ok(None),
            }
        }
    }
}

/// Every item of a server stream whose messages carry a batch each.
async fn collect<M, T>(
    mut stream: tonic::Streaming<M>,
    items: impl Fn(M) -> Vec<T>,
) -> Result<Vec<T>, Status> {
    let mut out = Vec::new();
    while let Some(msg) = stream.message().await? {
        out.extend(items(msg));
    }
    Ok(out)
}

/// A request carrying the namespace header. Unlike `with_namespace!`, this
/// does not panic on a namespace that is not a valid header value.
fn namespaced<T>(ns: &str, msg: T) -> Result<Request<T>, RpcError> {
    let value =
        MetadataValue::try_from(ns).map_err(|_| RpcError::BadNamespace { ns: ns.into() })?;
    let mut req = Request::new(msg);
    req.metadata_mut().insert(NAMESPACE_KEY, value);
    Ok(req)
}

/// A gRPC status in words: its message, or its code when it has none.
fn status_text(status: &Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        status.message().to_string()
    }
}

/// The innermost cause of an error chain (e.g. "Connection refused (os error 111)").
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// A timeout in words, e.g. "5s" or "0.5s".
pub(super) fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_tell_a_silent_containerd_from_an_absent_blob() {
        let images = || Call::Images {
            ns: "k8s.io".into(),
        };
        let timeout = RpcError::Timeout {
            call: images(),
            timeout: Duration::from_millis(500),
        };
        assert_eq!(
            timeout.to_string(),
            "listing images of namespace k8s.io: no answer within 0.5s"
        );
        assert_eq!(timeout.kind(), ProblemKind::Unanswered);
        let read = Call::ReadBlob {
            ns: "k8s.io".into(),
            digest: "sha256:ab".into(),
        };
        let absent = RpcError::status(read.clone(), &Status::not_found("content digest not found"));
        assert_eq!(
            absent.to_string(),
            "reading blob sha256:ab in namespace k8s.io: content digest not found"
        );
        assert_eq!(absent.kind(), ProblemKind::Missing);
        let failed = RpcError::status(images(), &Status::unavailable(""));
        assert_eq!(
            failed.to_string(),
            "listing images of namespace k8s.io: Unavailable"
        );
        assert_eq!(failed.kind(), ProblemKind::Unanswered);
        let huge = RpcError::TooLarge { call: read, cap: 4 };
        assert_eq!(huge.kind(), ProblemKind::Malformed);
        assert_eq!(
            namespaced("bad\n", ()).unwrap_err().kind(),
            ProblemKind::Malformed
        );
    }
}
