//! [`Client`]: braft for applications that are not cluster members.
//!
//! It speaks gRPC (`braft.v1.Kv`, `braft.v1.Distributor`) to the nodes it is given, with
//! one lazily connected, pooled channel per endpoint (tonic multiplexes requests on it).
//! Any node serves any request (followers forward to the leader), so the client simply
//! keeps using the last endpoint that answered. When one fails, it moves on: to the
//! leader a node named in its error, else to the next endpoint, with backoff, until the
//! timeout. Errors come back as the library's own [`crate::Error`].
//!
//! A write is retried only when it certainly did not apply: the connection was never
//! made, or a node answered "unavailable" (refused before proposing). A write whose
//! fate is unknown returns [`crate::Error::Indeterminate`], as in the library, so a
//! compare-and-set can never apply twice.
//!
//! ```no_run
//! # async fn run() -> Result<(), braft::Error> {
//! let client = braft::Client::connect(["10.0.0.1:15000", "10.0.0.2:15000"]).await?;
//! let version = client.put("greeting", b"hello".to_vec()).await?;
//! let got = client.get("greeting", braft::Consistency::Linearizable).await?;
//! assert_eq!(got.map(|v| v.version), Some(version));
//! # Ok(()) }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod admin;

use futures::StreamExt;
use tokio::time::Instant;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

use crate::distribute::Assignment;
use crate::error::{Error, LeaderHint};
use crate::grpc::kv as md;
use crate::kv::{KvOutput, Precondition, Versioned};
use crate::node::Consistency;
use crate::pb;
use crate::watch::{EventKind, WatchError, WatchEvent, WatchStream};

/// How long a call may retry before giving up, unless [`Client::timeout`] says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(20);
const BACKOFF_MAX: Duration = Duration::from_millis(500);

/// A client of a braft cluster. Cheap to clone; clones share the channels.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// `host:port` of each node's RPORT; leaders learned from errors are appended.
    endpoints: Mutex<Vec<String>>,
    channels: Mutex<HashMap<String, Channel>>,
    /// The endpoint that answered last.
    current: Mutex<usize>,
    timeout: Duration,
    /// Set when the endpoints are `https://`.
    tls: Option<ClientTls>,
    /// Sent with every call (see [`Client::with_token`]).
    token: BearerToken,
}

/// A channel that carries the client's token.
pub(crate) type Ch = tonic::service::interceptor::InterceptedService<Channel, BearerToken>;

/// Adds `authorization: Bearer <token>` to every call (nodes with `BRAFT_AUTH_FILE`).
#[derive(Clone, Default)]
pub(crate) struct BearerToken(Option<tonic::metadata::AsciiMetadataValue>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(t) = &self.0 {
            req.metadata_mut().insert("authorization", t.clone());
        }
        Ok(req)
    }
}

/// TLS for a client of `https://` endpoints: the CA to trust (else the public web's
/// roots), and a client certificate when the nodes require one
/// (`BRAFT_CLIENT_CA_FILE`). PEM bytes, as read from files.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    pub ca_pem: Option<Vec<u8>>,
    pub cert_pem: Option<Vec<u8>>,
    pub key_pem: Option<Vec<u8>>,
}

impl ClientTls {
    fn tonic(&self) -> ClientTlsConfig {
        let mut c = ClientTlsConfig::new();
        c = match &self.ca_pem {
            Some(ca) => c.ca_certificate(Certificate::from_pem(ca)),
            None => c.with_webpki_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.cert_pem, &self.key_pem) {
            c = c.identity(Identity::from_pem(cert, key));
        }
        c
    }
}

/// Whether a failed call may be sent again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads, and anything else that changes nothing.
    Always,
    /// Writes: only when they certainly did not apply.
    IfNotApplied,
}

impl Client {
    /// A client of the nodes at `endpoints` (each `host:port` of a node's RPORT, with or
    /// without `http://`). Checks that at least one answers.
    pub async fn connect<I, S>(endpoints: I) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let client = Self::new(endpoints, DEFAULT_TIMEOUT)?;
        client.list("", 1, Consistency::Stale).await?;
        Ok(client)
    }

    /// Like [`Client::connect`], without the check, and with `timeout` per call.
    /// `https://` endpoints use TLS with the public web's roots; see [`Client::with_tls`].
    pub fn new<I, S>(endpoints: I, timeout: Duration) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::with_tls(endpoints, timeout, ClientTls::default())
    }

    /// Like [`Client::new`], with the CA and client certificate for `https://`
    /// endpoints. Endpoints are all `https://` or all plain.
    pub fn with_tls<I, S>(endpoints: I, timeout: Duration, tls: ClientTls) -> Result<Client, Error>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let raw: Vec<String> = endpoints
            .into_iter()
            .map(|e| e.into().trim().to_string())
            .filter(|e| !e.is_empty())
            .collect();
        if raw.is_empty() {
            return Err(Error::BadRequest("a client needs at least one endpoint".into()));
        }
        let secure = raw.iter().filter(|e| e.starts_with("https://")).count();
        if secure != 0 && secure != raw.len() {
            return Err(Error::BadRequest(
                "endpoints mix https:// and plain ones; use one or the other".into(),
            ));
        }
        let endpoints: Vec<String> = raw
            .iter()
            .map(|e| {
                e.trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .to_string()
            })
            .collect();
        let tls = (secure != 0).then_some(tls);
        for e in &endpoints {
            Endpoint::from_shared(format!("http://{e}"))
                .map_err(|err| Error::BadRequest(format!("endpoint '{e}': {err}")))?;
        }
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints: Mutex::new(endpoints),
                channels: Mutex::default(),
                current: Mutex::new(0),
                timeout,
                tls,
                token: BearerToken::default(),
            }),
        })
    }

    /// A copy with fresh channels, changed by `change`.
    fn remade(&self, change: impl FnOnce(&mut Duration, &mut BearerToken)) -> Client {
        let mut timeout = self.inner.timeout;
        let mut token = self.inner.token.clone();
        change(&mut timeout, &mut token);
        Client {
            inner: Arc::new(Inner {
                endpoints: Mutex::new(self.inner.endpoints.lock().unwrap_or_else(|p| p.into_inner()).clone()),
                channels: Mutex::default(),
                current: Mutex::new(0),
                timeout,
                tls: self.inner.tls.clone(),
                token,
            }),
        }
    }

    /// The same client with another per-call timeout.
    pub fn timeout(&self, timeout: Duration) -> Client {
        self.remade(|t, _| *t = timeout)
    }

    /// The same client, sending `token` as `authorization: Bearer <token>` with every
    /// call (for nodes with `BRAFT_AUTH_FILE`).
    pub fn with_token(&self, token: &str) -> Result<Client, Error> {
        let value = format!("Bearer {}", token.trim())
            .parse()
            .map_err(|_| Error::BadRequest("the token must be printable ASCII".into()))?;
        Ok(self.remade(|_, t| *t = BearerToken(Some(value))))
    }

    fn channel(&self, endpoint: &str) -> Result<Ch, Error> {
        let wrap = |c: Channel| Ch::new(c, self.inner.token.clone());
        let mut channels = self.inner.channels.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = channels.get(endpoint) {
            return Ok(wrap(c.clone()));
        }
        let scheme = if self.inner.tls.is_some() { "https" } else { "http" };
        let mut e = Endpoint::from_shared(format!("{scheme}://{endpoint}"))
            .map_err(|e| Error::BadRequest(format!("endpoint '{endpoint}': {e}")))?
            .connect_timeout(Duration::from_secs(1))
            .tcp_nodelay(true);
        if let Some(tls) = &self.inner.tls {
            e = e
                .tls_config(tls.tonic())
                .map_err(|err| Error::BadRequest(format!("endpoint '{endpoint}': TLS: {err}")))?;
        }
        let c = e.connect_lazy();
        channels.insert(endpoint.to_string(), c.clone());
        Ok(wrap(c))
    }

    /// The endpoint to try now.
    fn pick(&self) -> String {
        let eps = self.inner.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let i = *self.inner.current.lock().unwrap_or_else(|p| p.into_inner()) % eps.len();
        eps[i].clone()
    }

    /// After a failure at `failed`: go to the named leader if there is one (adding it to
    /// the endpoints when new), else to the next endpoint.
    fn move_on(&self, failed: &str, leader: Option<&LeaderHint>) {
        let mut eps = self.inner.endpoints.lock().unwrap_or_else(|p| p.into_inner());
        let mut current = self.inner.current.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(l) = leader.filter(|l| !l.rpc_addr.is_empty() && l.rpc_addr != failed) {
            match eps.iter().position(|e| *e == l.rpc_addr) {
                Some(i) => *current = i,
                None => {
                    eps.push(l.rpc_addr.clone());
                    *current = eps.len() - 1;
                }
            }
            return;
        }
        if eps[*current % eps.len()] == failed {
            *current = (*current + 1) % eps.len();
        }
    }

    /// Runs `call` against endpoints until it succeeds, fails for good, or the timeout
    /// passes.
    async fn call<T, F, Fut>(&self, retry: Retry, mut call: F) -> Result<T, Error>
    where
        F: FnMut(Ch) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + self.inner.timeout;
        let mut backoff = BACKOFF_MIN;
        loop {
            let endpoint = self.pick();
            let remaining = deadline.saturating_duration_since(Instant::now());
            let outcome = match tokio::time::timeout(remaining, call(self.channel(&endpoint)?)).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(status)) => status,
                Err(_) if retry == Retry::IfNotApplied => {
                    return Err(Error::Indeterminate {
                        reason: format!("no answer from {endpoint} within the timeout; the write may still apply"),
                        leader: None,
                    })
                }
                Err(_) => {
                    return Err(Error::Unavailable {
                        reason: format!("no answer within {} ms", self.inner.timeout.as_millis()),
                        leader: None,
                    })
                }
            };
            let error = from_status(&outcome, &endpoint);
            let retryable = match &error {
                Error::Unavailable { .. } | Error::ShuttingDown => {
                    retry == Retry::Always
                        || outcome.metadata().get(md::CODE).is_some()
                        || crate::transport::never_sent(&outcome)
                }
                Error::Indeterminate { .. } => retry == Retry::Always,
                _ => false,
            };
            let leader = match &error {
                Error::Unavailable { leader, .. } | Error::Indeterminate { leader, .. } => leader.clone(),
                _ => None,
            };
            if !retryable {
                return Err(match error {
                    // Sent, then lost: for a write, its fate is unknown.
                    Error::Unavailable { reason, leader } if retry == Retry::IfNotApplied => {
                        Error::Indeterminate { reason, leader }
                    }
                    e => e,
                });
            }
            self.move_on(&endpoint, leader.as_ref());
            if Instant::now() + backoff >= deadline {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn kv(ch: Ch) -> pb::kv_client::KvClient<Ch> {
        pb::kv_client::KvClient::new(ch).max_decoding_message_size(64 << 20)
    }

    /// Puts `value` under `key`; returns its version (the write's log index).
    pub async fn put(&self, key: &str, value: Vec<u8>) -> Result<u64, Error> {
        match self.put_if(key, value, None).await? {
            KvOutput::Put { version } => Ok(version),
            other => Err(Error::Fatal(format!("unexpected answer {other:?}"))),
        }
    }

    /// A compare-and-set: puts only if `precondition` holds; otherwise answers
    /// [`KvOutput::CompareFailed`] with the current version, and nothing changed.
    pub async fn put_if(
        &self,
        key: &str,
        value: Vec<u8>,
        precondition: Option<Precondition>,
    ) -> Result<KvOutput, Error> {
        let (prev_version, prev_value) = match precondition {
            None => (None, None),
            Some(Precondition::Version(v)) => (Some(v), None),
            Some(Precondition::Value(v)) => (None, Some(v)),
        };
        let req = pb::PutRequest {
            key: key.to_string(),
            value,
            prev_version,
            prev_value,
            ..Default::default()
        };
        let r = self
            .call(Retry::IfNotApplied, |ch| {
                let req = req.clone();
                async move { Self::kv(ch).put(req).await }
            })
            .await;
        match r {
            Ok(r) => Ok(KvOutput::Put {
                version: r.into_inner().version,
            }),
            Err(Error::Service(s)) if s.code == "compare_failed" => Ok(KvOutput::CompareFailed {
                current_version: s.message.parse().unwrap_or(0),
            }),
            Err(e) => Err(e),
        }
    }

    /// Reads `key` with `consistency`; `None` when absent.
    pub async fn get(&self, key: &str, consistency: Consistency) -> Result<Option<Versioned>, Error> {
        let req = pb::GetRequest {
            key: key.to_string(),
            consistency: pb_consistency(consistency) as i32,
            ..Default::default()
        };
        let r = self
            .call(Retry::Always, |ch| {
                let req = req.clone();
                async move { Self::kv(ch).get(req).await }
            })
            .await?
            .into_inner();
        Ok(r.found.then_some(Versioned {
            value: r.value,
            version: r.version,
        }))
    }

    /// Deletes `key`: [`KvOutput::Deleted`] with the delete's version and whether the
    /// key existed.
    pub async fn delete(&self, key: &str) -> Result<KvOutput, Error> {
        let req = pb::DeleteRequest {
            key: key.to_string(),
            ..Default::default()
        };
        let r = self
            .call(Retry::IfNotApplied, |ch| {
                let req = req.clone();
                async move { Self::kv(ch).delete(req).await }
            })
            .await?
            .into_inner();
        Ok(KvOutput::Deleted {
            version: r.version,
            existed: r.existed,
        })
    }

    /// Up to `limit` keys under `prefix`, sorted.
    pub async fn list(&self, prefix: &str, limit: u32, consistency: Consistency) -> Result<Vec<String>, Error> {
        let req = pb::ListRequest {
            prefix: prefix.to_string(),
            limit,
            consistency: pb_consistency(consistency) as i32,
            ..Default::default()
        };
        Ok(self
            .call(Retry::Always, |ch| {
                let req = req.clone();
                async move { Self::kv(ch).list(req).await }
            })
            .await?
            .into_inner()
            .keys)
    }

    /// Sets the items distributed under `key`; returns the key's version.
    pub async fn distribute(&self, key: &str, items: Vec<String>) -> Result<u64, Error> {
        let req = pb::DistributeRequest {
            key: key.to_string(),
            items,
        };
        Ok(self
            .call(Retry::IfNotApplied, |ch| {
                let req = req.clone();
                async move { pb::distributor_client::DistributorClient::new(ch).distribute(req).await }
            })
            .await?
            .into_inner()
            .version)
    }

    /// Who holds each item under `key` (linearizable), or `None`.
    pub async fn assignment(&self, key: &str) -> Result<Option<Assignment>, Error> {
        let req = pb::AssignmentRequest {
            key: key.to_string(),
            consistency: pb::Consistency::Linearizable as i32,
        };
        let r = self
            .call(Retry::Always, |ch| {
                let req = req.clone();
                async move { pb::distributor_client::DistributorClient::new(ch).assignment(req).await }
            })
            .await?
            .into_inner();
        Ok(r.found.then(|| Assignment {
            version: r.version,
            items: r.items.into_iter().collect::<BTreeMap<_, _>>(),
        }))
    }

    /// The changes under `prefix` from version `from` (`None`: from the next change after
    /// this call), as a stream. It is subscribed when this returns. When its node goes
    /// away the stream resumes on another endpoint right after the last version it
    /// delivered; it ends with [`WatchError::Compacted`] when no node holds that history
    /// any more.
    pub async fn watch(&self, prefix: &str, from: Option<u64>) -> Result<WatchStream, Error> {
        let mut state = WatchState {
            client: self.clone(),
            prefix: prefix.to_string(),
            next: from,
            stream: None,
            queue: Default::default(),
            done: false,
            compacted: None,
        };
        // Subscribe now, and take the first message (it pins the start version).
        state.connect().await?;
        state.receive().await;
        Ok(Box::pin(futures::stream::unfold(state, |mut s| async move {
            let item = s.next().await?;
            Some((item, s))
        })))
    }
}

/// A watch that survives its node: it reconnects with the next version it needs.
struct WatchState {
    client: Client,
    prefix: String,
    next: Option<u64>,
    stream: Option<tonic::Streaming<pb::WatchResponse>>,
    queue: std::collections::VecDeque<WatchEvent>,
    done: bool,
    /// The error that ended the stream, delivered after the queued events.
    compacted: Option<WatchError>,
}

impl WatchState {
    /// Opens the stream on an endpoint, from the next version needed.
    async fn connect(&mut self) -> Result<(), Error> {
        let req = pb::WatchRequest {
            prefix: self.prefix.clone(),
            from_version: self.next.unwrap_or(0),
            ..Default::default()
        };
        let s = self
            .client
            .call(Retry::Always, |ch| {
                let req = req.clone();
                async move { Client::kv(ch).watch(req).await }
            })
            .await?;
        self.stream = Some(s.into_inner());
        Ok(())
    }

    async fn next(&mut self) -> Option<Result<WatchEvent, WatchError>> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                self.next = Some(e.version + 1);
                return Some(Ok(e));
            }
            if self.done {
                return self.compacted.take().map(Err);
            }
            if self.stream.is_none() {
                if self.connect().await.is_err() {
                    tokio::time::sleep(BACKOFF_MAX).await;
                }
                continue;
            }
            self.receive().await;
        }
    }

    /// Takes one message from the stream into the queue (or ends the stream).
    async fn receive(&mut self) {
        let Some(stream) = self.stream.as_mut() else { return };
        {
            match stream.next().await {
                Some(Ok(msg)) if msg.compacted => {
                    self.done = true;
                    self.compacted = Some(WatchError::Compacted {
                        oldest: msg.oldest_version,
                    });
                }
                Some(Ok(msg)) => {
                    if msg.events.is_empty() {
                        // Progress (the first message, and then while idle) pins where a
                        // reconnect must resume.
                        let after = msg.progress_version + 1;
                        self.next = Some(self.next.map_or(after, |n| n.max(after)));
                    }
                    self.queue.extend(msg.events.into_iter().map(|e| WatchEvent {
                        kind: if e.kind == pb::event::Kind::Delete as i32 {
                            EventKind::Delete
                        } else {
                            EventKind::Put
                        },
                        map: String::new(),
                        key: e.key,
                        value: (e.kind != pb::event::Kind::Delete as i32).then(|| e.value.into()),
                        version: e.version,
                    }));
                }
                // The node went away: resume elsewhere from the next version needed.
                Some(Err(_)) | None => {
                    let endpoint = self.client.pick();
                    self.client.move_on(&endpoint, None);
                    self.stream = None;
                }
            }
        }
    }
}

fn pb_consistency(c: Consistency) -> pb::Consistency {
    match c {
        Consistency::Linearizable => pb::Consistency::Linearizable,
        Consistency::Lease => pb::Consistency::Lease,
        Consistency::Stale => pb::Consistency::Stale,
    }
}

/// The library's error for a status, read from braft's metadata where a node sent it.
fn from_status(s: &Status, endpoint: &str) -> Error {
    let get = |k: &str| s.metadata().get(k).and_then(|v| v.to_str().ok()).map(str::to_string);
    let leader = get(md::LEADER_ID).and_then(|id| id.parse().ok()).map(|id| LeaderHint {
        id,
        rpc_addr: get(md::LEADER_RPC).unwrap_or_default(),
        http_addr: get(md::LEADER_HTTP).unwrap_or_default(),
    });
    let reason = format!("{endpoint}: {}", s.message());
    match get(md::CODE).as_deref() {
        Some("compare_failed") => Error::Service(crate::ServiceError::new(
            "compare_failed",
            get(md::CURRENT_VERSION).unwrap_or_default(),
        )),
        Some("service_error") => Error::Service(crate::ServiceError::new(
            get(md::SERVICE_CODE).unwrap_or_default(),
            s.message(),
        )),
        Some("unknown_service") => Error::UnknownService(s.message().to_string()),
        // The admin API's refusals; the admin methods turn them into `AdminError`s.
        Some(code @ ("refused" | "busy")) => Error::Service(crate::ServiceError::new(code, s.message())),
        Some("bad_request") => Error::BadRequest(s.message().to_string()),
        Some("shutting_down") => Error::ShuttingDown,
        Some("disk_full") => Error::DiskFull(s.message().to_string()),
        Some("unavailable") => Error::Unavailable { reason, leader },
        Some("indeterminate") => Error::Indeterminate { reason, leader },
        Some(_) => Error::Fatal(reason),
        // No braft code: a transport failure, or a check before any braft logic.
        None => match s.code() {
            Code::InvalidArgument => Error::BadRequest(s.message().to_string()),
            Code::Unauthenticated => Error::Access(crate::access::Denied::Unauthenticated(reason)),
            Code::PermissionDenied => Error::Access(crate::access::Denied::PermissionDenied(reason)),
            Code::Unavailable | Code::Unknown | Code::Cancelled => Error::Unavailable { reason, leader: None },
            Code::DeadlineExceeded => Error::Indeterminate { reason, leader: None },
            _ => Error::Fatal(reason),
        },
    }
}
