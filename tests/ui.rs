//! The dashboard (`GET /ui`) in a real browser: Debian's headless Chromium, driven
//! through chromedriver (WebDriver). The page lists the three members and marks the
//! leader; a put through its KV browser is readable through the API; after a node is
//! stopped, its row turns unhealthy. The run saves a screenshot to
//! `target/ui/dashboard.png` (docs/dashboard.png is a copy of one).
//!
//! With `BRAFT_AUTH_FILE` set, the page asks for a token on its first 401 (a prompt),
//! keeps it in session storage and sends it from then on.
//!
//! Without chromedriver the test skips, unless `BRAFT_REQUIRE_BROWSER=1` (set by
//! scripts/test.sh, which installs `chromium` and `chromium-driver` as root).

mod common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{serial, Cluster};
use fantoccini::{Client, ClientBuilder, Locator};

const LIMIT: Duration = Duration::from_secs(20);

/// chromedriver on a free port, killed on drop.
struct Driver(Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn chromedriver() -> Option<Driver> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    match Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
    {
        Ok(child) => Some(Driver(child, port)),
        Err(e) => {
            assert!(
                std::env::var("BRAFT_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "BRAFT_REQUIRE_BROWSER=1 but chromedriver cannot run: {e}"
            );
            eprintln!("skipping: chromedriver not found ({e}); apt-get install chromium chromium-driver");
            None
        }
    }
}

async fn browser(port: u16) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"]
        }),
    );
    // chromedriver takes a moment to listen.
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        // Plain HTTP to chromedriver on loopback: no TLS stack.
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(c) => return c,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("cannot start a browser session: {e}"),
        }
    }
}

/// Waits until `css` matches, in the page as it updates.
async fn wait_css(b: &Client, css: &str) {
    b.wait()
        .at_most(LIMIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("'{css}' never appeared: {e}"));
}

/// Puts a key through the page's KV browser and waits for its answer (a version).
async fn put_in_kv_browser(b: &Client, key: &str, value: &str) {
    b.find(Locator::Id("kv-key"))
        .await
        .unwrap()
        .send_keys(key)
        .await
        .unwrap();
    b.find(Locator::Id("kv-value"))
        .await
        .unwrap()
        .send_keys(value)
        .await
        .unwrap();
    b.find(Locator::Id("kv-put")).await.unwrap().click().await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let text = b.find(Locator::Id("kv-result")).await.unwrap().text().await.unwrap();
        if text.contains("version") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no put result: '{text}'");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An operator opens the dashboard on a follower: three members, the leader marked.
/// They put a key through the KV browser and the API reads it back. A node stops, and
/// its row turns unhealthy within the health window.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_a_real_browser() {
    let Some(driver) = chromedriver() else { return };
    let _g = serial().await;
    let mut c = Cluster::start(3, |_| {}).await;
    let leader = c.wait_leader(LIMIT).await;
    let follower = (leader + 1) % 3;
    let victim = (leader + 2) % 3;
    c.wait_for("the leader's first autopilot round", LIMIT, |c| {
        c.node(leader).autopilot_report().servers.len() == 3
    })
    .await;
    let b = browser(driver.1).await;
    b.goto(&c.url(follower, "/ui")).await.unwrap();
    wait_css(&b, "body[data-ready='1']").await;

    let rows = b.find_all(Locator::Css("tbody#members tr")).await.unwrap();
    assert_eq!(rows.len(), 3);
    let leaders = b
        .find_all(Locator::Css("tbody#members tr[data-role='leader']"))
        .await
        .unwrap();
    assert_eq!(leaders.len(), 1);
    let marked = leaders[0].attr("data-id").await.unwrap();
    assert_eq!(marked, Some(c.node(leader).id().to_string()));
    for r in &rows {
        assert_eq!(r.attr("data-health").await.unwrap().as_deref(), Some("healthy"));
    }
    let shot = b.screenshot().await.unwrap();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("dashboard.png"), &shot).unwrap();
    assert!(shot.starts_with(b"\x89PNG"), "a PNG screenshot");

    // The KV browser writes through the API.
    put_in_kv_browser(&b, "ui/greeting", "hello from the browser").await;
    assert_eq!(
        c.get(leader, "ui/greeting", "linearizable").await.as_deref(),
        Some("hello from the browser")
    );

    // A stopped node turns unhealthy on the page.
    let victim_id = c.node(victim).id().to_string();
    c.stop(victim).await;
    let css = format!("tbody#members tr[data-id='{victim_id}']:not([data-health='healthy'])");
    wait_css(&b, &css).await;
    let health = b
        .find(Locator::Css(&css))
        .await
        .unwrap()
        .attr("data-health")
        .await
        .unwrap();
    assert!(matches!(health.as_deref(), Some("unhealthy" | "dead")), "{health:?}");

    b.close().await.unwrap();
    c.shutdown().await;
}

/// The token file the next cluster's nodes use (a `Cluster` tweak is a plain `fn`).
static AUTH_FILE: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();

/// A node with tokens: the dashboard's first request is refused, and the page asks for
/// a token. The operator pastes a write token; the page keeps it for the tab only
/// (session storage), shows the members, and a put through the KV browser succeeds
/// with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_a_token_and_keeps_it_for_the_tab() {
    let Some(driver) = chromedriver() else { return };
    let _g = serial().await;
    let dir = tempfile::tempdir().unwrap();
    let token = braft::access::new_token();
    let file = dir.path().join("auth.toml");
    std::fs::write(
        &file,
        format!(
            "[[token]]\nname = \"ops\"\nrole = \"write\"\nsha256 = \"{}\"\n",
            braft::access::token_hash(&token)
        ),
    )
    .unwrap();
    AUTH_FILE.set(file).unwrap();
    let c = Cluster::start(1, |cfg| cfg.auth_file = AUTH_FILE.get().cloned()).await;
    c.wait_leader(LIMIT).await;
    let b = browser(driver.1).await;
    b.goto(&c.url(0, "/ui")).await.unwrap();

    // The prompt appears on the first 401.
    let deadline = tokio::time::Instant::now() + LIMIT;
    let text = loop {
        match b.get_alert_text().await {
            Ok(t) => break t,
            Err(_) if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("the page never asked for a token: {e}"),
        }
    };
    assert!(text.contains("requires a token"), "{text}");
    b.send_alert_text(&token).await.unwrap();
    b.accept_alert().await.unwrap();

    wait_css(&b, "body[data-ready='1']").await;
    let kept = b
        .execute("return sessionStorage.getItem('braft.token')", vec![])
        .await
        .unwrap();
    assert_eq!(kept.as_str(), Some(token.as_str()));
    put_in_kv_browser(&b, "ui/with-token", "allowed").await;
    // Without the token the API refuses; with it, the value is there.
    let r = c.client.get(c.url(0, "/v1/kv/ui/with-token")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .client
        .get(c.url(0, "/v1/kv/ui/with-token"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.text().await.unwrap(), "allowed");
    b.close().await.unwrap();
    c.shutdown().await;
}
