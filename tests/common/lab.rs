//! A lab of real `braft` processes on separate hosts: network namespaces on a bridge
//! when run as root (with `ip` and `nft`), so that partitions can be cut with nft rules;
//! otherwise processes on loopback, where only kills and pauses are possible.
//!
//! Everything a lab creates (namespaces, veth pairs, the bridge, processes) is removed
//! when it is dropped, pass or fail; on a failure the last log lines of every host are
//! printed first.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

pub fn have(tool: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether this process may build network namespaces.
pub fn netns_possible() -> bool {
    (unsafe { libc::geteuid() } == 0) && have("ip") && have("nft")
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("spawn");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn quiet(args: &[&str]) {
    let _ = Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

pub struct Lab {
    /// Namespaced hosts (`true`) or loopback processes (`false`).
    pub netns: bool,
    pub tag: String,
    subnet: String,
    hosts: usize,
    namespaces: Vec<String>,
    procs: BTreeMap<usize, Child>,
    pub dir: tempfile::TempDir,
    /// A data directory per host, replaceable (a fresh node on a reused host).
    data: BTreeMap<usize, PathBuf>,
    /// Hosts whose outgoing or incoming traffic is cut right now.
    cut: std::collections::BTreeSet<usize>,
    port_base: u16,
}

impl Lab {
    /// A lab of `hosts` hosts, in namespaces if possible.
    pub fn new(hosts: usize) -> Lab {
        Self::with_mode(hosts, netns_possible())
    }

    pub fn with_mode(hosts: usize, netns: bool) -> Lab {
        // Unique per process and per lab within it, so that parallel runs never meet.
        static LABS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let k = LABS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 20;
        let n = std::process::id() % 200 + 20;
        let mut lab = Lab {
            netns,
            tag: format!("bt{n}x{k}"),
            subnet: format!("10.{}.{n}", 231 + k),
            hosts,
            namespaces: Vec::new(),
            procs: BTreeMap::new(),
            dir: tempfile::tempdir().unwrap(),
            data: BTreeMap::new(),
            cut: Default::default(),
            port_base: 20_000 + (std::process::id() % 200) as u16 * 200 + k * 10,
        };
        for i in 1..=hosts {
            lab.data.insert(i, lab.dir.path().join(format!("n{i}")));
        }
        if !netns {
            return lab;
        }
        let br = lab.bridge();
        // Leftovers of an earlier run that was killed before it could clean up.
        for i in 1..=hosts {
            quiet(&["ip", "link", "del", &lab.veth(i)]);
            quiet(&["ip", "netns", "del", &format!("{}-n{i}", lab.tag)]);
        }
        quiet(&["ip", "link", "del", &br]);
        run(&["ip", "link", "add", &br, "type", "bridge"]);
        run(&["ip", "addr", "add", &format!("{}.1/24", lab.subnet), "dev", &br]);
        run(&["ip", "link", "set", &br, "up"]);
        for i in 1..=hosts {
            let ns = format!("{}-n{i}", lab.tag);
            let veth = lab.veth(i);
            run(&["ip", "netns", "add", &ns]);
            lab.namespaces.push(ns.clone());
            run(&[
                "ip", "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ]);
            run(&["ip", "link", "set", &veth, "master", &br]);
            run(&["ip", "link", "set", &veth, "up"]);
            let ip = format!("{}/24", lab.ip(i));
            run(&["ip", "-n", &ns, "addr", "add", &ip, "dev", "eth0"]);
            run(&["ip", "-n", &ns, "link", "set", "eth0", "up"]);
            run(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
            // mDNS needs a multicast route inside each namespace.
            run(&["ip", "-n", &ns, "route", "add", "224.0.0.0/4", "dev", "eth0"]);
        }
        lab
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    fn veth(&self, i: usize) -> String {
        format!("{}v{i}", self.tag)
    }

    pub fn ip(&self, i: usize) -> String {
        if self.netns {
            format!("{}.{}", self.subnet, 10 + i)
        } else {
            "127.0.0.1".into()
        }
    }

    pub fn rport(&self, i: usize) -> u16 {
        if self.netns {
            15000
        } else {
            self.port_base + 2 * i as u16
        }
    }

    pub fn hport(&self, i: usize) -> u16 {
        if self.netns {
            15002
        } else {
            self.port_base + 2 * i as u16 + 1
        }
    }

    pub fn rpc_addr(&self, i: usize) -> String {
        format!("{}:{}", self.ip(i), self.rport(i))
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}:{}{path}", self.ip(i), self.hport(i))
    }

    /// Polls `/ready` on each of `hosts` (over HTTPS when `https`) until it answers 200,
    /// failing with the hosts' logs after 30 s.
    pub async fn wait_ready(&self, http: &reqwest::Client, hosts: &[usize], https: bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        for &i in hosts {
            let url = match https {
                true => format!("https://{}:{}/ready", self.ip(i), self.hport(i)),
                false => self.url(i, "/ready"),
            };
            while !http.get(&url).send().await.is_ok_and(|r| r.status() == 200) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "node {i} is not ready\n{}",
                    self.logs(20)
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }

    /// Gives host `i` an empty data directory (its next start is a brand-new node).
    pub fn wipe(&mut self, i: usize, generation: usize) {
        self.data.insert(i, self.dir.path().join(format!("n{i}-g{generation}")));
    }

    pub fn running(&self, i: usize) -> bool {
        self.procs.contains_key(&i)
    }

    /// How host `i`'s process ended, if it has (a crash, say).
    pub fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        self.procs.get_mut(&i).and_then(|c| c.try_wait().ok().flatten())
    }

    /// Starts the braft binary on host `i` with these settings (and the lab's address,
    /// ports and data directory).
    pub fn start(&mut self, i: usize, env: &[(&str, String)]) {
        assert!(!self.running(i), "host {i} is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{i}.log")))
            .unwrap();
        let bin = env!("CARGO_BIN_EXE_braft");
        let mut cmd = if self.netns {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", &self.namespaces[i - 1], bin, "serve"]);
            c
        } else {
            let mut c = Command::new(bin);
            c.arg("serve");
            c
        };
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("BRAFT_IP", self.ip(i))
            .env("BRAFT_RPORT", self.rport(i).to_string())
            .env("BRAFT_HPORT", self.hport(i).to_string())
            .env("BRAFT_DATA_DIR", &self.data[&i])
            .env("RUST_LOG", "info,openraft=error");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start braft");
        self.procs.insert(i, child);
    }

    /// SIGKILL.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.procs.remove(&i) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends `sig` (e.g. `libc::SIGSTOP`) to host `i`'s process.
    pub fn signal(&self, i: usize, sig: i32) {
        if let Some(c) = self.procs.get(&i) {
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Waits for host `i`'s process to exit (after a SIGTERM, say).
    pub fn wait_exit(&mut self, i: usize) {
        if let Some(mut c) = self.procs.remove(&i) {
            let _ = c.wait();
        }
    }

    /// Cuts host `i` off: with `inbound`, packets from the other hosts are dropped; with
    /// `outbound`, packets to them. The test (the bridge address) can always reach it.
    pub fn partition(&mut self, i: usize, inbound: bool, outbound: bool) {
        assert!(self.netns, "partitions need network namespaces");
        let me = format!("{}.1", self.subnet);
        let mut chains = String::new();
        if inbound {
            chains.push_str(&format!(
                "chain in {{ type filter hook input priority 0; policy accept; iifname \"eth0\" ip saddr != {me} drop; }}\n"
            ));
        }
        if outbound {
            chains.push_str(&format!(
                "chain out {{ type filter hook output priority 0; policy accept; oifname \"eth0\" ip daddr != {me} drop; }}\n"
            ));
        }
        let rules = format!("table inet braft_test {{\n{chains}}}\n");
        let path = self.dir.path().join(format!("cut-{i}.nft"));
        std::fs::write(&path, rules).unwrap();
        self.nft(i, &["-f", path.to_str().unwrap()]);
        self.cut.insert(i);
    }

    /// Removes every cut.
    pub fn heal(&mut self) {
        for i in std::mem::take(&mut self.cut) {
            self.nft(i, &["delete", "table", "inet", "braft_test"]);
        }
    }

    /// Runs `nft args` inside host `i`'s namespace.
    fn nft(&self, i: usize, args: &[&str]) {
        let mut cmd = vec!["ip", "netns", "exec", &self.namespaces[i - 1], "nft"];
        cmd.extend_from_slice(args);
        run(&cmd);
    }

    /// The last lines of every host's log.
    pub fn logs(&self, lines: usize) -> String {
        let mut out = String::new();
        for i in 1..=self.hosts {
            if let Ok(s) = std::fs::read_to_string(self.dir.path().join(format!("n{i}.log"))) {
                let tail: Vec<&str> = s.lines().rev().take(lines).collect();
                out.push_str(&format!("--- n{i} (last lines) ---\n"));
                for l in tail.into_iter().rev() {
                    out.push_str(l);
                    out.push('\n');
                }
            }
        }
        out
    }

    /// Keeps the host logs (and anything else in the lab directory) in `dest`.
    pub fn keep_logs(&self, dest: &std::path::Path) {
        let _ = std::fs::create_dir_all(dest);
        for i in 1..=self.hosts {
            let name = format!("n{i}.log");
            let _ = std::fs::copy(self.dir.path().join(&name), dest.join(&name));
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs(25));
        }
        for (_, c) in self.procs.iter_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !self.netns {
            return;
        }
        // Delete our veth ends explicitly: the kernel frees a deleted namespace (and the
        // peer ends inside it) only later, and until then the pairs linger.
        for i in 1..=self.hosts {
            quiet(&["ip", "link", "del", &self.veth(i)]);
        }
        for ns in &self.namespaces {
            quiet(&["ip", "netns", "del", ns]);
        }
        quiet(&["ip", "link", "del", &self.bridge()]);
    }
}
