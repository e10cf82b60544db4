//! The Kubernetes source and transport (`kubectl headroom check-pull`):
//! the agent pods of the DaemonSet, listed through the API server with the
//! user's kubeconfig, each asked through the API server's pod proxy, so
//! that nothing but the API server has to be reachable from the laptop.
//!
//! Only what does not need an API server is tested here (the pod → agent
//! mapping, the proxy path); the calls themselves are kube-rs's.

use http_body_util::{BodyExt, Limited};
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};

use super::AGENT_PORT;
use super::{each, reply, Agent, Limits, NodeAnswer, NodeError, ROUTE};

/// The DaemonSet's pod label.
pub const POD_SELECTOR: &str = "app.kubernetes.io/name=headroom";

/// The namespace the DaemonSet is deployed to.
pub const DEFAULT_NAMESPACE: &str = "headroom";

/// The agent container's port name in the DaemonSet.
const PORT_NAME: &str = "metrics";

/// Why the agent pods cannot be listed.
#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    /// No kubeconfig (or in-cluster config) could be used.
    #[error("no Kubernetes client configuration: {0}")]
    Config(Box<kube::Error>),
    /// The API server refused or failed the list.
    #[error("cannot list the pods {POD_SELECTOR} in namespace {namespace}: {source}")]
    List {
        /// The namespace.
        namespace: String,
        /// Why.
        source: Box<kube::Error>,
    },
    /// The list is empty.
    #[error("no pod {POD_SELECTOR} in namespace {0} (is the DaemonSet deployed there?)")]
    None(String),
}

/// The API server, as the user's kubeconfig (or the pod's service account)
/// reaches it.
pub async fn client() -> Result<kube::Client, PodsError> {
    kube::Client::try_default()
        .await
        .map_err(|e| PodsError::Config(Box::new(e)))
}

/// The agents of the DaemonSet's pods in `namespace`.
pub async fn agents(client: &kube::Client, namespace: &str) -> Result<Vec<Agent>, PodsError> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let list = pods
        .list(&ListParams::default().labels(POD_SELECTOR))
        .await
        .map_err(|e| PodsError::List {
            namespace: namespace.to_string(),
            source: Box::new(e),
        })?;
    let agents: Vec<Agent> = list.items.iter().filter_map(agent_of).collect();
    if agents.is_empty() {
        return Err(PodsError::None(namespace.to_string()));
    }
    Ok(agents)
}

/// The agent of `pod`: named by the node it runs on (its pod name while it
/// is not scheduled), at its `metrics` port (else [`AGENT_PORT`]).
pub fn agent_of(pod: &Pod) -> Option<Agent> {
    let name = pod.metadata.name.as_deref()?;
    let spec = pod.spec.as_ref();
    let port = spec
        .into_iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some(PORT_NAME))
        .and_then(|p| u16::try_from(p.container_port).ok())
        .unwrap_or(AGENT_PORT);
    let node = spec
        .and_then(|s| s.node_name.clone())
        .unwrap_or_else(|| name.to_string());
    Some(Agent {
        node,
        address: format!("{name}:{port}"),
    })
}

/// The API server path that proxies [`ROUTE`] to the pod agent `address`
/// (`pod:port`) in `namespace`.
pub fn proxy_path(namespace: &str, address: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/pods/{address}/proxy{ROUTE}")
}

/// Asks every agent the `question` through the pod proxy, at most
/// `limits.concurrency` at a time, each within `limits.timeout`, on
/// `runtime`.
pub fn ask(
    runtime: &tokio::runtime::Runtime,
    client: &kube::Client,
    namespace: &str,
    agents: &[Agent],
    question: &[u8],
    limits: &Limits,
) -> Vec<NodeAnswer> {
    each(agents, limits.concurrency, |agent| {
        let exchange = ask_one(client, namespace, &agent.address, question, limits);
        let answer = runtime
            .block_on(async { tokio::time::timeout(limits.timeout, exchange).await })
            .unwrap_or(Err(NodeError::Timeout(limits.timeout)));
        NodeAnswer {
            agent: agent.clone(),
            answer,
        }
    })
}

/// One agent's answer through the proxy, or why there is none.
async fn ask_one(
    client: &kube::Client,
    namespace: &str,
    address: &str,
    question: &[u8],
    limits: &Limits,
) -> Result<crate::what_if::Answer, NodeError> {
    let unreachable = |message: String| NodeError::Unreachable {
        address: address.to_string(),
        message,
    };
    let request = http::Request::post(proxy_path(namespace, address))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(question.to_vec()))
        .map_err(|e| unreachable(e.to_string()))?;
    let response = client
        .send(request)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    let limit = usize::try_from(limits.max_answer_bytes).unwrap_or(usize::MAX);
    let body = Limited::new(response.into_body(), limit)
        .collect()
        .await
        .map_err(|e| NodeError::BadAnswer {
            address: address.to_string(),
            message: format!("unreadable or larger than {limit} bytes: {e}"),
        })?
        .to_bytes();
    reply(address, status, &body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec};
    use kube::api::ObjectMeta;

    fn pod(name: &str, node: Option<&str>, ports: Vec<ContainerPort>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(PodSpec {
                node_name: node.map(Into::into),
                containers: vec![Container {
                    name: "headroom".into(),
                    ports: Some(ports),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
            ..Pod::default()
        }
    }

    #[test]
    fn a_pod_is_named_by_its_node_at_its_metrics_port() {
        let port = |name: &str, n: i32| ContainerPort {
            name: Some(name.into()),
            container_port: n,
            ..ContainerPort::default()
        };
        let a = pod(
            "headroom-x1",
            Some("node-a"),
            vec![port("other", 1), port("metrics", 9900)],
        );
        assert_eq!(
            agent_of(&a),
            Some(Agent {
                node: "node-a".into(),
                address: "headroom-x1:9900".into()
            })
        );
        let pending = pod("headroom-x2", None, vec![]);
        assert_eq!(
            agent_of(&pending),
            Some(Agent {
                node: "headroom-x2".into(),
                address: "headroom-x2:9847".into()
            })
        );
        assert_eq!(agent_of(&Pod::default()), None);
    }

    #[test]
    fn the_proxy_path_names_the_pod_port_and_route() {
        assert_eq!(
            proxy_path("headroom", "headroom-x1:9847"),
            "/api/v1/namespaces/headroom/pods/headroom-x1:9847/proxy/api/v1/check-pull"
        );
    }
}
