//! The gRPC calls the containerd reader makes, each bounded by one timeout
//! (save the wait for events, which a quiet containerd may never end: a
//! [`Subscription`] proves liveness with probes instead).
//!
//! Every call takes the namespace explicitly and returns a message naming
//! what was asked on failure, so the caller can turn it into a
//! [`Problem`](crate::runtime::Problem) and carry on.

use std::future::Future;
use std::path::{Path, PathBuf};
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
use tonic::{Request, Status};

use super::ContainerdError;

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
        let unreachable = |reason: String| ContainerdError::Unreachable {
            socket: socket.to_path_buf(),
            reason,
        };
        if !socket.exists() {
            return Err(unreachable("no such socket".into()));
        }
        let channel = tokio::time::timeout(timeout, containerd_client::connect(socket))
            .await
            .map_err(|_| unreachable(format!("no answer within {}", secs(timeout))))?
            .map_err(|e| unreachable(root_cause(&e)))?;
        Ok(Rpc { channel, timeout })
    }

    /// Every namespace; failing here means containerd cannot be read at all.
    pub(super) async fn namespaces(&self, socket: &Path) -> Result<Vec<String>, ContainerdError> {
        let mut client = NamespacesClient::new(self.channel.clone());
        let list = self
            .bounded("listing namespaces", async move {
                client.list(ListNamespacesRequest::default()).await
            })
            .await
            .map_err(|reason| ContainerdError::Unreachable {
                socket: PathBuf::from(socket),
                reason,
            })?;
        Ok(list.namespaces.into_iter().map(|n| n.name).collect())
    }

    /// Every plugin containerd loaded, with its exports.
    pub(super) async fn plugins(&self) -> Result<Vec<Plugin>, String> {
        let mut client = IntrospectionClient::new(self.channel.clone());
        let resp = self
            .bounded("listing plugins", async move {
                client.plugins(PluginsRequest::default()).await
            })
            .await?;
        Ok(resp.plugins)
    }

    /// Every image record of namespace `ns`.
    pub(super) async fn images(&self, ns: &str) -> Result<Vec<Image>, String> {
        let mut client = ImagesClient::new(self.channel.clone());
        let req = namespaced(ns, ListImagesRequest::default())?;
        let resp = self
            .bounded(&format!("listing images of namespace {ns}"), async move {
                client.list(req).await
            })
            .await?;
        Ok(resp.images)
    }

    /// Every container of namespace `ns`.
    pub(super) async fn containers(&self, ns: &str) -> Result<Vec<Container>, String> {
        let mut client = ContainersClient::new(self.channel.clone());
        let req = namespaced(ns, ListContainersRequest::default())?;
        let resp = self
            .bounded(
                &format!("listing containers of namespace {ns}"),
                async move { client.list(req).await },
            )
            .await?;
        Ok(resp.containers)
    }

    /// Every content blob visible in namespace `ns`, with its labels.
    pub(super) async fn content(&self, ns: &str) -> Result<Vec<ContentInfo>, String> {
        let mut client = ContentClient::new(self.channel.clone());
        let req = namespaced(ns, ListContentRequest::default())?;
        self.bounded_raw(&format!("listing content of namespace {ns}"), async move {
            let stream = client.list(req).await?.into_inner();
            collect(stream, |msg| msg.info).await
        })
        .await
    }

    /// Every ingest (a blob being written, e.g. a layer being downloaded) of
    /// namespace `ns`, with its offset and expected total.
    pub(super) async fn ingests(&self, ns: &str) -> Result<Vec<IngestStatus>, String> {
        let mut client = ContentClient::new(self.channel.clone());
        let req = namespaced(ns, ListStatusesRequest::default())?;
        let resp = self
            .bounded(&format!("listing ingests of namespace {ns}"), async move {
                client.list_statuses(req).await
            })
            .await?;
        Ok(resp.statuses)
    }

    /// Every snapshot of `snapshotter` in namespace `ns`.
    pub(super) async fn snapshots(
        &self,
        ns: &str,
        snapshotter: &str,
    ) -> Result<Vec<SnapshotInfo>, String> {
        let mut client = SnapshotsClient::new(self.channel.clone());
        let req = namespaced(
            ns,
            ListSnapshotsRequest {
                snapshotter: snapshotter.to_string(),
                filters: Vec::new(),
            },
        )?;
        self.bounded_raw(
            &format!("listing {snapshotter} snapshots of namespace {ns}"),
            async move {
                let stream = client.list(req).await?.into_inner();
                collect(stream, |msg| msg.info).await
            },
        )
        .await
    }

    /// The mounts of active snapshot `key` (read-only query).
    pub(super) async fn mounts(
        &self,
        ns: &str,
        snapshotter: &str,
        key: &str,
    ) -> Result<Vec<Mount>, String> {
        let mut client = SnapshotsClient::new(self.channel.clone());
        let req = namespaced(
            ns,
            MountsRequest {
                snapshotter: snapshotter.to_string(),
                key: key.to_string(),
            },
        )?;
        let resp = self
            .bounded(
                &format!("reading mounts of snapshot {key} in namespace {ns}"),
                async move { client.mounts(req).await },
            )
            .await?;
        Ok(resp.mounts)
    }

    /// The bytes of blob `digest`, refusing blobs larger than `cap`.
    pub(super) async fn read(&self, ns: &str, digest: &str, cap: usize) -> Result<Vec<u8>, String> {
        let mut client = ContentClient::new(self.channel.clone());
        let req = namespaced(
            ns,
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
        )?;
        let what = format!("reading blob {digest} in namespace {ns}");
        let data = self
            .bounded_raw(&what, async move {
                let mut stream = client.read(req).await?.into_inner();
                let mut data = Vec::new();
                while let Some(msg) = stream.message().await? {
                    data.extend_from_slice(&msg.data);
                    if data.len() > cap {
                        return Err(Status::out_of_range(format!(
                            "larger than {cap} bytes, not read"
                        )));
                    }
                }
                Ok(data)
            })
            .await?;
        Ok(data)
    }

    /// Subscribes to the events of every namespace whose topic matches one
    /// of `filters`. Returns once containerd has taken the subscription: a
    /// probe sent after it got its answer within the timeout. The events
    /// themselves are awaited without a timeout (see [`Subscription`]).
    pub(super) async fn subscribe(&self, filters: Vec<String>) -> Result<Subscription, String> {
        const WHAT: &str = "subscribing to events";
        let mut client = EventsClient::new(self.channel.clone());
        let mut call: PendingEvents =
            Box::pin(async move { client.subscribe(SubscribeRequest { filters }).await });
        let probe = self.probe(WHAT);
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
                Err(status) => return Err(format!("{WHAT}: {}", status_text(&status))),
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
    async fn probe(&self, what: &str) -> Result<(), String> {
        let mut client = VersionClient::new(self.channel.clone());
        self.bounded(
            &format!("{what}: asking containerd's version"),
            async move { client.version(()).await },
        )
        .await
        .map(drop)
    }

    /// Runs a unary call within the timeout and unwraps its response.
    async fn bounded<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<tonic::Response<T>, Status>>,
    ) -> Result<T, String> {
        self.bounded_raw(
            what,
            async move { call.await.map(tonic::Response::into_inner) },
        )
        .await
    }

    /// Runs `call` within the timeout; errors name `what` was being done.
    async fn bounded_raw<T>(
        &self,
        what: &str,
        call: impl Future<Output = Result<T, Status>>,
    ) -> Result<T, String> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(status)) => Err(format!("{what}: {}", status_text(&status))),
            Err(_) => Err(format!("{what}: no answer within {}", secs(self.timeout))),
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
    pub(super) async fn next(&mut self) -> Result<Option<Envelope>, String> {
        loop {
            tokio::select! {
                event = self.events.next() => {
                    return event.map_err(|s| format!("event stream broke: {}", status_text(&s)));
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
fn namespaced<T>(ns: &str, msg: T) -> Result<Request<T>, String> {
    let value = MetadataValue::try_from(ns)
        .map_err(|_| format!("namespace {ns:?} is not a valid gRPC header value"))?;
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
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs_f64())
}
