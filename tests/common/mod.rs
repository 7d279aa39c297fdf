//! A test harness: real braft nodes in this process, on 127.0.0.1 ports the OS picks,
//! with data in a temporary directory. Nodes can be stopped and restarted on the same
//! ports with the same data, as a real restart would.
#![allow(dead_code)]

pub mod lab;
pub mod sse;
pub mod workload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::{Duration, Instant};

use braft::config::{Config, Discovery};
use braft::{KvService, Node};
use tokio::net::TcpListener;

/// Multi-node tests share two CPUs; running them one at a time keeps Raft's timers honest.
static SERIAL: LazyLock<tokio::sync::Mutex<()>> = LazyLock::new(|| tokio::sync::Mutex::new(()));

pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

/// Runs the real `braft` binary with `args` and extra environment (and no stray
/// client settings from the caller's); its exit code, stdout and stderr.
pub fn run_braft(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_braft"));
    cmd.args(args).env("RUST_LOG", "error");
    for k in [
        "BRAFT_ENDPOINTS",
        "BRAFT_TOKEN",
        "BRAFT_CACERT",
        "BRAFT_CLIENT_CERT",
        "BRAFT_CLIENT_KEY",
    ] {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run braft");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A port free right now on 127.0.0.1 (for a process that must bind it itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "error,braft=warn".into()),
        )
        .with_test_writer()
        .try_init();
}

pub struct Member {
    pub node: Option<Node>,
    pub rpc: SocketAddr,
    pub http: SocketAddr,
    pub dir: PathBuf,
}

/// The files in a node's snapshot directory, by name, sorted.
pub fn snapshot_files(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("snapshots"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

pub struct Cluster {
    pub members: Vec<Member>,
    pub tmp: tempfile::TempDir,
    pub discovery: Vec<String>,
    pub tweak: fn(&mut Config),
    /// Registers extra services or routes on every node.
    pub extend: fn(braft::NodeBuilder) -> braft::NodeBuilder,
    pub client: reqwest::Client,
}

/// Short timers for a LAN of one machine.
pub fn test_config(c: &mut Config) {
    c.heartbeat_ms = 50;
    c.election_timeout_ms = 400;
    c.request_timeout_ms = 5_000;
    // Joining learners become voters quickly; dead-node removal stays at its default
    // (60 s), longer than any test that does not ask for it.
    c.stabilization_ms = 500;
}

async fn listen() -> (TcpListener, TcpListener) {
    (
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
    )
}

/// Binds a port that was in use a moment ago, retrying while the old socket lets go.
async fn rebind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot rebind {addr}: {e}"),
        }
    }
}

impl Cluster {
    /// Starts `n` nodes at the same moment, with static discovery of all of them.
    pub async fn start(n: usize, tweak: fn(&mut Config)) -> Cluster {
        Self::start_with(n, tweak, |b| b).await
    }

    /// Like [`Cluster::start`], with `extend` applied to every node's builder.
    pub async fn start_with(
        n: usize,
        tweak: fn(&mut Config),
        extend: fn(braft::NodeBuilder) -> braft::NodeBuilder,
    ) -> Cluster {
        init_tracing();
        let tmp = tempfile::tempdir().unwrap();
        let mut listeners = Vec::new();
        for _ in 0..n {
            listeners.push(listen().await);
        }
        let discovery: Vec<String> = listeners
            .iter()
            .map(|(r, _)| r.local_addr().unwrap().to_string())
            .collect();
        let mut cluster = Cluster {
            members: Vec::new(),
            tmp,
            discovery,
            tweak,
            extend,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .unwrap(),
        };
        let mut starts = Vec::new();
        for (i, (r, h)) in listeners.into_iter().enumerate() {
            let dir = cluster.tmp.path().join(format!("node{i}"));
            cluster.members.push(Member {
                node: None,
                rpc: r.local_addr().unwrap(),
                http: h.local_addr().unwrap(),
                dir: dir.clone(),
            });
            starts.push(
                cluster
                    .builder(dir, cluster.discovery.clone())
                    .rpc_listener(r)
                    .http_listener(h)
                    .start(),
            );
        }
        let nodes = futures::future::join_all(starts).await;
        for (m, n) in cluster.members.iter_mut().zip(nodes) {
            m.node = Some(n.expect("node starts"));
        }
        cluster
    }

    fn builder(&self, dir: PathBuf, discovery: Vec<String>) -> braft::NodeBuilder {
        let tweak = self.tweak;
        let b = Node::builder()
            .config(Config::default())
            .configure(move |c| {
                test_config(c);
                c.discovery = Discovery::Static(discovery);
                c.data_dir = Some(dir);
                tweak(c);
            })
            .service(KvService::default());
        (self.extend)(b)
    }

    /// Starts one more node that is not in the others' static list; it must join.
    pub async fn add_node(&mut self) -> usize {
        let (r, h) = listen().await;
        let i = self.members.len();
        let dir = self.tmp.path().join(format!("node{i}"));
        let node = self
            .builder(dir.clone(), self.discovery.clone())
            .rpc_listener(r.local_addr().map(|_| r).unwrap())
            .http_listener(h)
            .start()
            .await
            .expect("new node starts");
        self.members.push(Member {
            rpc: node.peer().rpc_addr.parse().unwrap(),
            http: node.peer().http_addr.parse().unwrap(),
            node: Some(node),
            dir,
        });
        i
    }

    pub fn node(&self, i: usize) -> &Node {
        self.members[i].node.as_ref().expect("node is running")
    }

    /// A connected gRPC channel to node `i`'s RPORT.
    pub async fn grpc(&self, i: usize) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.members[i].rpc))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{}", self.members[i].http, path)
    }

    /// Stops node `i` (its process would be gone; its data stays).
    pub async fn stop(&mut self, i: usize) {
        if let Some(n) = self.members[i].node.take() {
            n.shutdown().await;
        }
    }

    /// Restarts node `i` on its old ports with its old data.
    pub async fn restart(&mut self, i: usize) {
        assert!(self.members[i].node.is_none(), "node {i} is running");
        let r = rebind(self.members[i].rpc).await;
        let h = rebind(self.members[i].http).await;
        let node = self
            .builder(self.members[i].dir.clone(), self.discovery.clone())
            .rpc_listener(r)
            .http_listener(h)
            .start()
            .await
            .expect("node restarts");
        self.members[i].node = Some(node);
    }

    pub fn running(&self) -> Vec<usize> {
        (0..self.members.len())
            .filter(|i| self.members[*i].node.is_some())
            .collect()
    }

    /// Waits until the running nodes agree on one leader; returns its index.
    pub async fn wait_leader(&self, limit: Duration) -> usize {
        let deadline = Instant::now() + limit;
        loop {
            let running = self.running();
            let leaders: Vec<usize> = running.iter().copied().filter(|i| self.node(*i).is_leader()).collect();
            if leaders.len() == 1 {
                let id = self.node(leaders[0]).id();
                if running.iter().all(|i| self.node(*i).leader().map(|l| l.id) == Some(id)) {
                    return leaders[0];
                }
            }
            assert!(Instant::now() < deadline, "no agreed leader within {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `cond` holds, polling.
    pub async fn wait_for(&self, what: &str, limit: Duration, mut cond: impl FnMut(&Cluster) -> bool) {
        let deadline = Instant::now() + limit;
        while !cond(self) {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// GET `path` on node `i` as JSON.
    pub async fn get_json(&self, i: usize, path: &str) -> serde_json::Value {
        self.client
            .get(self.url(i, path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    pub async fn put(&self, i: usize, key: &str, value: &str) -> reqwest::Response {
        self.client
            .put(self.url(i, &format!("/v1/kv/{key}")))
            .body(value.to_string())
            .send()
            .await
            .unwrap()
    }

    /// PUT that must succeed; returns the version.
    pub async fn put_ok(&self, i: usize, key: &str, value: &str) -> u64 {
        let r = self.put(i, key, value).await;
        let status = r.status();
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(status, 200, "PUT {key} on node {i}: {body}");
        body["version"].as_u64().unwrap()
    }

    /// GET with a consistency; returns the value, or None on 404.
    pub async fn get(&self, i: usize, key: &str, consistency: &str) -> Option<String> {
        let r = self
            .client
            .get(self.url(i, &format!("/v1/kv/{key}?consistency={consistency}")))
            .send()
            .await
            .unwrap();
        match r.status().as_u16() {
            200 => Some(r.text().await.unwrap()),
            404 => None,
            s => panic!("GET {key} on node {i}: {s} {}", r.text().await.unwrap()),
        }
    }

    pub async fn shutdown(mut self) {
        for i in 0..self.members.len() {
            self.stop(i).await;
        }
    }
}
