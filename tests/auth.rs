//! Client tokens with roles (`BRAFT_AUTH_FILE`) on the real binary: HTTP, gRPC on both
//! ports, `braft ctl`, forwarding through a follower, the open probes, a reload of the
//! file, and a malformed file refused at start.

mod common;

use std::time::{Duration, Instant};

use common::lab::Lab;

const LIMIT: Duration = Duration::from_secs(30);

fn braft(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    common::run_braft(args, env)
}

/// `braft token new`: the token (first line) and the TOML block to paste.
fn token_new(name: &str, role: &str) -> (String, String) {
    let (code, out, err) = braft(&["token", "new", "--name", name, "--role", role], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (token, block) = out.split_once('\n').unwrap();
    assert!(!block.contains(token), "the file holds only the hash");
    (token.to_string(), block.to_string())
}

async fn status_of(r: reqwest::RequestBuilder) -> (u16, serde_json::Value) {
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
    )
}

/// Three nodes share an auth file with a read, a write and an admin token. Probes and
/// metrics stay open; everything else needs a token of the right role, over HTTP, over
/// gRPC on either port, and through `braft ctl`. A follower forwards a write only for a
/// caller allowed to write. A token added to the file works within seconds; one removed
/// stops working; and a malformed file keeps a node from starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_with_roles_guard_every_client_surface() {
    let mut lab = Lab::with_mode(3, false);
    let (read, read_block) = token_new("dashboard", "read");
    let (write, write_block) = token_new("ci", "write");
    let (admin, admin_block) = token_new("ops", "admin");
    let auth = lab.dir.path().join("auth.toml");
    std::fs::write(&auth, format!("{read_block}\n{write_block}\n{admin_block}")).unwrap();
    let auth_s = auth.to_str().unwrap().to_string();
    let disc = format!(
        "static:{}",
        (1..=3).map(|i| lab.rpc_addr(i)).collect::<Vec<_>>().join(",")
    );
    for i in 1..=3 {
        lab.start(
            i,
            &[("BRAFT_DISCOVERY", disc.clone()), ("BRAFT_AUTH_FILE", auth_s.clone())],
        );
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    // /ready is open, so probes need no token.
    lab.wait_ready(&http, &[1, 2, 3], false).await;
    let deadline = Instant::now() + LIMIT;
    assert_eq!(status_of(http.get(lab.url(1, "/health"))).await.0, 200);
    assert_eq!(status_of(http.get(lab.url(1, "/metrics"))).await.0, 200);

    // Find a follower (once there is a leader): writes through it are forwarded.
    let members = loop {
        let (s, members) = status_of(http.get(lab.url(1, "/v1/cluster/members")).bearer_auth(&read)).await;
        if s == 200 && members["leader"] != "0" {
            break members;
        }
        assert!(Instant::now() < deadline, "no leader: {members}\n{}", lab.logs(20));
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let leader_rpc = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == members["leader"])
        .unwrap_or_else(|| panic!("{members}"))["rpcAddr"]
        .as_str()
        .unwrap()
        .to_string();
    let f = (1..=3).find(|&i| lab.rpc_addr(i) != leader_rpc).unwrap();

    let put = |token: Option<&str>| {
        let r = http.put(lab.url(f, "/v1/kv/k")).body("v");
        match token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    };
    let (s, body) = status_of(put(None)).await;
    assert_eq!((s, body["code"].as_str()), (401, Some("unauthenticated")), "{body}");
    let (s, body) = status_of(put(Some("braft_not_a_token"))).await;
    assert_eq!(s, 401, "{body}");
    let (s, body) = status_of(put(Some(&read))).await;
    assert_eq!((s, body["code"].as_str()), (403, Some("permission_denied")), "{body}");
    assert_eq!(body["error"], "role read cannot write");
    let (s, body) = status_of(put(Some(&write))).await;
    assert_eq!(s, 200, "a writer's write is forwarded by the follower: {body}");
    let (s, body) = status_of(http.get(lab.url(f, "/v1/kv/k")).bearer_auth(&read)).await;
    assert_eq!((s, body), (200, serde_json::Value::String("v".into())));
    // Admin routes: a writer may not, an admin may.
    let snap = |t: &str| http.post(lab.url(f, "/v1/cluster/snapshot")).bearer_auth(t.to_string());
    assert_eq!(status_of(snap(&write)).await.0, 403);
    assert_eq!(status_of(snap(&admin)).await.0, 200);
    assert_eq!(
        status_of(http.get(lab.url(f, "/v1/snapshot")).bearer_auth(&write))
            .await
            .0,
        403
    );

    // gRPC, on RPORT and on HPORT.
    for ep in [lab.rpc_addr(f), format!("127.0.0.1:{}", lab.hport(f))] {
        let anon = braft::Client::new([ep.clone()], Duration::from_secs(3)).unwrap();
        let e = anon.put("g", b"1".to_vec()).await.unwrap_err();
        assert!(
            matches!(e, braft::Error::Access(braft::access::Denied::Unauthenticated(_))),
            "{ep}: {e:?}"
        );
        let reader = anon.with_token(&read).unwrap();
        let e = reader.put("g", b"1".to_vec()).await.unwrap_err();
        assert!(
            matches!(e, braft::Error::Access(braft::access::Denied::PermissionDenied(_))),
            "{ep}: {e:?}"
        );
        assert!(reader
            .get("k", braft::Consistency::Linearizable)
            .await
            .unwrap()
            .is_some());
        let writer = anon.with_token(&write).unwrap();
        writer.put("g", b"1".to_vec()).await.unwrap();
        assert!(writer.members().await.is_ok(), "members is a read");
        assert!(writer.snapshot().await.is_err(), "snapshot is an admin operation");
    }

    // ctl: --token, and BRAFT_TOKEN.
    let ep = lab.url(f, "");
    let (code, out, err) = braft(&["ctl", "--endpoints", &ep, "--token", &read, "get", "k"], &[]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = braft(&["ctl", "--endpoints", &ep, "--token", &read, "put", "k", "x"], &[]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("role read cannot write"), "{err}");
    let (code, out, err) = braft(&["ctl", "--endpoints", &ep, "snapshot"], &[("BRAFT_TOKEN", &admin)]);
    assert_eq!(code, Some(0), "{out}{err}");
    let (code, _, err) = braft(&["ctl", "--endpoints", &ep, "status"], &[]);
    assert_eq!(code, Some(1), "{err}");

    // The file changes: a new reader is let in, the writer is dropped.
    let (late, late_block) = token_new("late", "read");
    std::fs::write(&auth, format!("{read_block}\n{admin_block}\n{late_block}")).unwrap();
    let deadline = Instant::now() + LIMIT;
    loop {
        let late_ok = status_of(http.get(lab.url(f, "/v1/kv/k")).bearer_auth(&late)).await.0 == 200;
        let writer_gone = status_of(put(Some(&write))).await.0 == 401;
        if late_ok && writer_gone {
            break;
        }
        assert!(Instant::now() < deadline, "the changed auth file was not picked up");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // A malformed file stops a node at start (exit 2, naming the setting).
    let bad = lab.dir.path().join("bad.toml");
    std::fs::write(&bad, "[[token]]\nname = \"x\"\nrole = \"root\"\n").unwrap();
    let data = lab.dir.path().join("never");
    let (code, _, err) = braft(
        &["serve"],
        &[
            ("BRAFT_AUTH_FILE", bad.to_str().unwrap()),
            ("BRAFT_DATA_DIR", data.to_str().unwrap()),
            ("BRAFT_RPORT", "19994"),
            ("BRAFT_HPORT", "19996"),
        ],
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("BRAFT_AUTH_FILE"), "{err}");
    assert!(!data.exists());
}
