//! Kubernetes discovery (`k8s`): the running, ready pods that match a label selector,
//! listed through the API server with the pod's service account.
//!
//! Why plain HTTPS and not kube-rs: one GET of a `PodList` is all we need, and reqwest
//! with rustls adds about half the build time kube-rs and k8s-openapi do (measured:
//! ~50 s against ~100 s on a clean build). The few PodList fields we read are declared
//! below.
//!
//! - The namespace defaults to the pod's own (the service account's `namespace` file).
//! - The token is re-read on every call, since Kubernetes rotates projected tokens.
//! - Every call has a short timeout, so an API server that does not answer is an error
//!   within seconds, never a hang.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Discovery, DiscoveryError, PeersFuture};
use crate::config::Config;

const SERVICE_ACCOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// Where and how to list the braft pods.
#[derive(Debug, Clone)]
pub struct K8sOptions {
    /// The API server's base URL, e.g. `https://10.96.0.1:443`.
    pub api_url: String,
    /// `None`: read from `namespace_path`.
    pub namespace: Option<String>,
    /// A label selector, e.g. `app=braft`.
    pub labels: String,
    /// The container port to use, by name; `None` uses `default_port`.
    pub port_name: Option<String>,
    pub default_port: u16,
    pub token_path: PathBuf,
    pub ca_path: PathBuf,
    pub namespace_path: PathBuf,
    /// The limit on each API call, connecting included.
    pub timeout: Duration,
    /// A delay before the first listing (`K8S_SLEEP`).
    pub initial_sleep: Duration,
}

impl K8sOptions {
    /// The in-cluster defaults with braft's `K8S_*` settings applied.
    pub fn from_config(c: &Config) -> Self {
        let api_url = c.k8s_api.clone().unwrap_or_else(|| {
            let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_else(|_| "kubernetes.default.svc".into());
            let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
            if host.contains(':') {
                format!("https://[{host}]:{port}")
            } else {
                format!("https://{host}:{port}")
            }
        });
        let sa = PathBuf::from(SERVICE_ACCOUNT);
        Self {
            api_url,
            namespace: c.k8s_namespace.clone(),
            labels: c.k8s_labels.clone(),
            port_name: c.k8s_port_name.clone(),
            default_port: c.rport,
            token_path: sa.join("token"),
            ca_path: sa.join("ca.crt"),
            namespace_path: sa.join("namespace"),
            timeout: Duration::from_secs(3),
            initial_sleep: Duration::from_millis(c.k8s_sleep_ms),
        }
    }
}

/// Kubernetes discovery. See the module docs.
pub struct K8sDiscovery {
    opts: K8sOptions,
    namespace: String,
    client: reqwest::Client,
    slept: tokio::sync::OnceCell<()>,
}

impl K8sDiscovery {
    pub fn new(opts: K8sOptions) -> Result<Self, DiscoveryError> {
        let setup = DiscoveryError::Setup;
        let namespace = match &opts.namespace {
            Some(ns) => ns.clone(),
            None => std::fs::read_to_string(&opts.namespace_path)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    setup(format!(
                        "K8S_NAMESPACE is not set and the pod's namespace cannot be read from {}: {e}",
                        opts.namespace_path.display()
                    ))
                })?,
        };
        let mut builder = reqwest::Client::builder()
            .connect_timeout(opts.timeout)
            .timeout(opts.timeout)
            .tls_built_in_root_certs(false);
        if opts.api_url.starts_with("https://") {
            let pem = std::fs::read(&opts.ca_path).map_err(|e| {
                setup(format!(
                    "reading the cluster CA {}: {e} (is a service account mounted?)",
                    opts.ca_path.display()
                ))
            })?;
            let ca = reqwest::Certificate::from_pem(&pem)
                .map_err(|e| setup(format!("the cluster CA {} is not PEM: {e}", opts.ca_path.display())))?;
            builder = builder.add_root_certificate(ca);
        }
        let client = builder
            .build()
            .map_err(|e| setup(format!("building the HTTPS client: {e}")))?;
        Ok(Self {
            opts,
            namespace,
            client,
            slept: tokio::sync::OnceCell::new(),
        })
    }

    async fn list(&self) -> Result<Vec<String>, DiscoveryError> {
        let token = std::fs::read_to_string(&self.opts.token_path).map_err(|e| {
            DiscoveryError::Refused(format!(
                "reading the service-account token {}: {e}",
                self.opts.token_path.display()
            ))
        })?;
        let url = format!(
            "{}/api/v1/namespaces/{}/pods",
            self.opts.api_url.trim_end_matches('/'),
            self.namespace
        );
        let resp = self
            .client
            .get(&url)
            .query(&[("labelSelector", self.opts.labels.as_str())])
            .bearer_auth(token.trim())
            .send()
            .await
            .map_err(|e| {
                let what = if e.is_timeout() {
                    format!("no answer within {} ms", self.opts.timeout.as_millis())
                } else {
                    error_chain(&e)
                };
                DiscoveryError::Unavailable(format!("Kubernetes API {url}: {what}"))
            })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            let message = serde_json::from_str::<ApiStatus>(&body)
                .map(|s| s.message)
                .unwrap_or(body);
            let hint = match status.as_u16() {
                401 => " (the service-account token was refused)",
                403 => " (the service account may not list pods: check the Role and RoleBinding)",
                _ => "",
            };
            return Err(DiscoveryError::Refused(format!(
                "Kubernetes API answered {status}{hint}: {}",
                message.trim()
            )));
        }
        let pods: PodList = resp
            .json()
            .await
            .map_err(|e| DiscoveryError::Refused(format!("Kubernetes API sent a PodList we cannot read: {e}")))?;
        Ok(select(&pods, self.opts.port_name.as_deref(), self.opts.default_port))
    }
}

impl Discovery for K8sDiscovery {
    fn describe(&self) -> String {
        format!(
            "k8s://ns={}/labels={}/portName={}",
            self.namespace,
            self.opts.labels,
            self.opts
                .port_name
                .clone()
                .unwrap_or_else(|| self.opts.default_port.to_string())
        )
    }

    fn peers(&self) -> PeersFuture<'_> {
        Box::pin(async move {
            let sleep = self.opts.initial_sleep;
            self.slept
                .get_or_init(|| async move {
                    if !sleep.is_zero() {
                        tracing::info!("K8S_SLEEP: waiting {} ms before listing pods", sleep.as_millis());
                        tokio::time::sleep(sleep).await;
                    }
                })
                .await;
            self.list().await
        })
    }

    fn refresh_interval(&self) -> Duration {
        Duration::from_secs(3)
    }
}

/// The raft addresses of the running, ready pods that have an IP (and the named port).
fn select(pods: &PodList, port_name: Option<&str>, default_port: u16) -> Vec<String> {
    let mut out = Vec::new();
    for pod in &pods.items {
        let status = &pod.status;
        let ready = status
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
        let Some(ip) = status.pod_ip.as_deref().filter(|ip| !ip.is_empty()) else {
            continue;
        };
        if status.phase != "Running" || !ready || pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let port = match port_name {
            None => Some(default_port),
            Some(name) => pod
                .spec
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|p| p.name.as_deref() == Some(name))
                .map(|p| p.container_port),
        };
        let Some(port) = port else {
            tracing::debug!(pod = %pod.metadata.name, port_name, "pod has no such container port; skipped");
            continue;
        };
        match ip.parse::<std::net::IpAddr>() {
            Ok(ip) => out.push(std::net::SocketAddr::new(ip, port).to_string()),
            Err(_) => tracing::debug!(pod = %pod.metadata.name, ip, "pod IP is not an address; skipped"),
        }
    }
    out.sort();
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

// The few PodList fields discovery reads.

#[derive(Debug, Deserialize)]
struct PodList {
    #[serde(default)]
    items: Vec<Pod>,
}

#[derive(Debug, Deserialize)]
struct Pod {
    #[serde(default)]
    metadata: Metadata,
    #[serde(default)]
    spec: PodSpec,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    #[serde(default)]
    name: String,
    deletion_timestamp: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct PodSpec {
    #[serde(default)]
    containers: Vec<Container>,
}

#[derive(Debug, Default, Deserialize)]
struct Container {
    #[serde(default)]
    ports: Vec<ContainerPort>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    name: Option<String>,
    container_port: u16,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PodStatus {
    #[serde(default)]
    phase: String,
    #[serde(rename = "podIP")]
    pod_ip: Option<String>,
    #[serde(default)]
    conditions: Vec<Condition>,
}

#[derive(Debug, Default, Deserialize)]
struct Condition {
    #[serde(rename = "type")]
    type_: String,
    status: String,
}

/// A `metav1.Status` error body.
#[derive(Debug, Deserialize)]
struct ApiStatus {
    message: String,
}
