//! `GET /metrics` on real nodes: the series operators alert on move as the cluster works,
//! and Prometheus's own `promtool check metrics` accepts the output.

mod common;

use std::time::Duration;

use common::{serial, Cluster};

const LIMIT: Duration = Duration::from_secs(20);

/// The value of the first sample whose line starts with `series` (name and labels).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with([' ', '{']))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// A line with all of `parts` in it.
fn has_line(text: &str, parts: &[&str]) -> bool {
    text.lines().any(|l| parts.iter().all(|p| l.contains(p)))
}

/// `/metrics` of node `i` in the classic text format (what curl and promtool get).
async fn scrape(c: &Cluster, i: usize) -> String {
    let r = c.client.get(c.url(i, "/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");
    r.text().await.unwrap()
}

/// ...and in OpenMetrics, which a Prometheus server asks for.
async fn scrape_openmetrics(c: &Cluster, i: usize) -> String {
    let r = c
        .client
        .get(c.url(i, "/metrics"))
        .header("accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    r.text().await.unwrap()
}

/// After writes through the leader and a follower, and with a watch open: every node
/// knows a leader and exactly one is it; proposals, applies, fsyncs, forwarding, HTTP and
/// gRPC requests, peers, watchers and the process all show; and promtool accepts the
/// text of every node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_series_move_with_the_cluster_and_promtool_accepts_them() {
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    for i in 0..10 {
        c.put_ok(leader, &format!("m{i}"), "v").await;
    }
    for i in 0..5 {
        c.put_ok(follower, &format!("f{i}"), "v").await;
    }
    let watch = c.node(follower).watch("m", None);
    let target = c.node(leader).applied_index();
    c.wait_for("every node to apply", LIMIT, |c| {
        (0..3).all(|i| c.node(i).applied_index() >= target)
    })
    .await;

    c.wait_for("the leader's first autopilot round", LIMIT, |c| {
        c.node(leader).autopilot_report().servers.len() == 3
    })
    .await;
    let texts = futures::future::join_all((0..3).map(|i| scrape(&c, i))).await;
    let mut leaders = 0.0;
    for (i, t) in texts.iter().enumerate() {
        assert_eq!(sample(t, "braft_has_leader"), Some(1.0), "node {i}");
        leaders += sample(t, "braft_is_leader").unwrap();
        assert!(sample(t, "braft_proposals_applied_total").unwrap() >= 15.0, "node {i}");
        assert!(sample(t, "braft_applied_index").unwrap() >= target as f64, "node {i}");
        assert!(sample(t, "braft_term").unwrap() >= 1.0);
        assert!(sample(t, "braft_leader_changes_seen_total").unwrap() >= 1.0);
        assert!(
            sample(t, "braft_log_fsync_duration_seconds_count").unwrap() > 0.0,
            "node {i}"
        );
        assert!(sample(t, "process_resident_memory_bytes").unwrap() > 0.0);
        assert!(sample(t, "process_open_fds").unwrap() > 0.0);
        assert!(
            has_line(t, &["braft_grpc_requests_total{", "/braft.v1.Raft/", "code=\"Ok\""]),
            "node {i}"
        );
    }
    assert_eq!(leaders, 1.0, "exactly one leader");
    let l = &texts[leader];
    assert!(sample(l, "braft_proposals_committed_total").unwrap() >= 15.0);
    // Background writers (the work distributor commits the healthy node set when it
    // changes) may hold a proposal open at the moment of the scrape, so the gauge is
    // asserted to drain to zero rather than to be zero in this one text.
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let pending = sample(&scrape(&c, leader).await, "braft_proposals_pending");
        if pending == Some(0.0) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "proposals_pending stuck at {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(has_line(l, &["braft_peer_lag_entries{", "peer=\""]));
    assert!(has_line(l, &["braft_peer_last_contact_seconds{"]));
    assert_eq!(
        sample(l, "braft_autopilot_failure_tolerance"),
        Some(1.0),
        "3 healthy voters"
    );
    assert!(has_line(
        l,
        &["braft_http_requests_total{", "route=\"/v1/kv/{*key}\"", "code=\"200\""]
    ));
    let f = &texts[follower];
    assert!(has_line(
        f,
        &["braft_forwarded_requests_total{", "kind=\"write\"", "outcome=\"ok\""]
    ));
    assert_eq!(sample(f, "braft_watchers"), Some(1.0), "the open watch");
    let om = scrape_openmetrics(&c, leader).await;
    assert!(om.ends_with("# EOF\n") && om.contains("# TYPE braft_proposals_committed counter"));
    drop(watch);
    assert_eq!(sample(&scrape(&c, follower).await, "braft_watchers"), Some(0.0));

    // Prometheus's own linter, when installed (scripts/test.sh installs it and sets
    // BRAFT_REQUIRE_PROMTOOL=1, which makes its absence a failure).
    if !common::lab::have("promtool") {
        assert!(
            std::env::var_os("BRAFT_REQUIRE_PROMTOOL").is_none(),
            "BRAFT_REQUIRE_PROMTOOL is set but promtool is missing"
        );
        eprintln!("skipping promtool: not installed (apt-get install prometheus)");
    } else {
        for (i, t) in texts.iter().enumerate() {
            use std::io::Write;
            let mut child = std::process::Command::new("promtool")
                .args(["check", "metrics"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            child.stdin.take().unwrap().write_all(t.as_bytes()).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "promtool rejects node {i}'s metrics: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    c.shutdown().await;
}

/// A real Prometheus server (Debian's `prometheus`, which scripts/test.sh installs)
/// scrapes a 3-node cluster, and its query API answers `braft_has_leader` for all three
/// and `braft_is_leader` for exactly one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_server_scrapes_the_cluster() {
    if !common::lab::have("prometheus") {
        assert!(
            std::env::var_os("BRAFT_REQUIRE_PROMTOOL").is_none(),
            "BRAFT_REQUIRE_PROMTOOL is set but the prometheus server is missing"
        );
        eprintln!("skipping: no prometheus server (apt-get install prometheus)");
        return;
    }
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    c.wait_leader(LIMIT).await;
    let dir = tempfile::tempdir().unwrap();
    let targets: Vec<String> = c.members.iter().map(|m| format!("'{}'", m.http)).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: braft\n    static_configs:\n      - targets: [{}]\n",
        targets.join(", ")
    );
    std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
    // A port the OS picks, handed to Prometheus (it cannot take port 0).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", dir.path().join("prometheus.yml").display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("prometheus starts");
    let query = |q: &str| {
        let url = format!("http://127.0.0.1:{port}/api/v1/query?query={q}");
        let client = c.client.clone();
        async move {
            let v: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
            let results = v["data"]["result"].as_array()?.clone();
            Some(
                results
                    .iter()
                    .map(|r| r["value"][1].as_str().unwrap_or("").to_string())
                    .collect::<Vec<String>>(),
            )
        }
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut last = None;
    let ok = loop {
        let has = query("braft_has_leader").await;
        let is = query("braft_is_leader").await;
        if let (Some(has), Some(is)) = (&has, &is) {
            if has.len() == 3 && has.iter().all(|v| v == "1") && is.iter().filter(|v| *v == "1").count() == 1 {
                break true;
            }
        }
        last = Some((has, is));
        if std::time::Instant::now() > deadline {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let _ = server.kill();
    let _ = server.wait();
    assert!(ok, "Prometheus never saw 3 nodes with a leader: {last:?}");
    c.shutdown().await;
}

/// Every series the shipped Grafana dashboard (`deploy/grafana/braft.json`) queries is
/// one a node serves: a renamed metric cannot silently blank a panel.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grafana_dashboard_queries_only_series_that_exist() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/grafana/braft.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut names = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            let mut rest = expr;
            while let Some(at) = rest.find(['b', 'p']) {
                let word: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if word.starts_with("braft_") || word.starts_with("process_") {
                    names.insert(word.clone());
                }
                rest = &rest[at + word.len().max(1)..];
            }
        }
    }
    assert!(names.len() >= 15, "{names:?}");
    let _g = serial().await;
    let c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    c.put_ok(leader, "k", "v").await;
    c.put_ok((leader + 1) % 3, "forwarded", "v").await;
    c.wait_for("the leader's first autopilot round", LIMIT, |c| {
        c.node(leader).autopilot_report().servers.len() == 3
    })
    .await;
    let _watch = c.node(leader).watch("", None);
    c.node(leader).snapshot_now().await.unwrap();
    // Some series live on the leader (peers, autopilot), some on followers (forwarding).
    let text = futures::future::join_all((0..3).map(|i| scrape(&c, i)))
        .await
        .join("\n");
    let missing: Vec<&String> = names
        .iter()
        .filter(|n| !text.lines().any(|l| !l.starts_with('#') && l.starts_with(n.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries series no node serves: {missing:?}"
    );
    c.shutdown().await;
}

/// With `BRAFT_METRICS=false` nothing is served at `/metrics` (a JSON 404 that says
/// why), and the node works as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_can_be_turned_off() {
    let _g = serial().await;
    let c = Cluster::start(3, |c| c.metrics = false).await;
    let leader = c.wait_leader(LIMIT).await;
    c.put_ok(leader, "k", "v").await;
    assert_eq!(c.get((leader + 1) % 3, "k", "linearizable").await.as_deref(), Some("v"));
    let r = c.client.get(c.url(leader, "/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body["code"], "metrics_off", "{body}");
    c.shutdown().await;
}
