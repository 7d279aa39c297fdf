//! Who may do what on the client plane: bearer tokens with roles, from
//! `BRAFT_AUTH_FILE`. The peer plane is separate ([`crate::auth`] and [`crate::tls`]).
//!
//! - Roles are ordered: `read` (get, list, watch, status), `write` (plus put, delete and
//!   the distributor) and `admin` (plus the admin API, backups and membership changes).
//! - The file is TOML, one `[[token]]` per client with `name`, `role` and `sha256`, the
//!   hex SHA-256 of the token. Only hashes are stored, so a leaked file does not leak
//!   tokens; `braft token new` makes a token and the lines to paste.
//! - The file is re-read when it changes (checked at most once a second). One that no
//!   longer parses leaves the previous tokens in force, with a warning.
//! - With no file, every request is allowed, as before, and the node warns at start.
//!
//! The token travels as `Authorization: Bearer <token>`, in HTTP headers and in gRPC
//! metadata alike. Checks happen where a request enters (HTTP middleware, and a wrapper
//! around each public gRPC service), before the node sees it. A follower forwards to
//! the leader only a request its caller was allowed to make, so forwarding never widens
//! what a caller can do.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use tonic::codegen::http;

use crate::config::ConfigError;

/// The files are looked at for changes no more often than this.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// What a token allows. Each role includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Read,
    Write,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    /// The verb for error messages: "role read cannot write".
    fn verb(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "administer the cluster",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Role::Read),
            "write" => Ok(Role::Write),
            "admin" => Ok(Role::Admin),
            _ => Err(format!("unknown role '{s}' (allowed: read, write, admin)")),
        }
    }
}

/// Who made a request (inserted into the request's extensions once checked).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No token, or one nobody issued: 401 / UNAUTHENTICATED.
    #[error("{0}")]
    Unauthenticated(String),
    /// A valid token whose role is too low: 403 / PERMISSION_DENIED.
    #[error("{0}")]
    PermissionDenied(String),
}

impl Denied {
    pub fn code(&self) -> &'static str {
        match self {
            Denied::Unauthenticated(_) => "unauthenticated",
            Denied::PermissionDenied(_) => "permission_denied",
        }
    }

    pub fn status(&self) -> tonic::Status {
        match self {
            Denied::Unauthenticated(m) => tonic::Status::unauthenticated(m.clone()),
            Denied::PermissionDenied(m) => tonic::Status::permission_denied(m.clone()),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    #[serde(default)]
    token: Vec<TokenText>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenText {
    name: String,
    role: Role,
    sha256: String,
}

struct Entry {
    name: String,
    role: Role,
    sha256: [u8; 32],
}

struct Table {
    entries: Vec<Entry>,
    stamp: Option<(SystemTime, u64)>,
}

/// The client plane's access rules: open (no file) or the tokens of one file.
pub struct Access {
    file: Option<PathBuf>,
    table: RwLock<Arc<Table>>,
    /// When the file was last looked at, in ms since `born`: checked on every request,
    /// so an atomic rather than a lock.
    born: Instant,
    checked_ms: AtomicU64,
    /// `/metrics` needs a read token too (`BRAFT_METRICS_AUTH`).
    pub metrics_auth: bool,
}

impl Access {
    /// No tokens: everything is allowed.
    pub fn open() -> Access {
        Access {
            file: None,
            table: RwLock::new(Arc::new(Table {
                entries: Vec::new(),
                stamp: None,
            })),
            born: Instant::now(),
            checked_ms: AtomicU64::new(0),
            metrics_auth: false,
        }
    }

    /// The tokens of `path`; an unreadable or malformed file names the problem.
    pub fn from_file(path: &Path, metrics_auth: bool) -> Result<Access, ConfigError> {
        let table = load(path).map_err(|e| ConfigError::new("BRAFT_AUTH_FILE", e))?;
        Ok(Access {
            file: Some(path.to_path_buf()),
            table: RwLock::new(Arc::new(table)),
            born: Instant::now(),
            checked_ms: AtomicU64::new(0),
            metrics_auth,
        })
    }

    /// Whether tokens are required at all.
    pub fn enabled(&self) -> bool {
        self.file.is_some()
    }

    /// Checks the `Authorization` header's value against the role `need`.
    pub fn check(&self, authorization: Option<&[u8]>, need: Role) -> Result<Caller, Denied> {
        let Some(path) = &self.file else {
            return Ok(Caller {
                name: "anonymous".into(),
                role: Role::Admin,
            });
        };
        self.reload_if_changed(path);
        let token = authorization
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .ok_or_else(|| Denied::Unauthenticated("a token is required: Authorization: Bearer <token>".into()))?;
        let digest = sha256(token.as_bytes());
        let table = self.table.read().unwrap_or_else(|p| p.into_inner()).clone();
        // Every entry is compared, without an early exit.
        let mut found: Option<&Entry> = None;
        for e in &table.entries {
            if constant_time_eq(&e.sha256, &digest) {
                found = Some(e);
            }
        }
        let e = found.ok_or_else(|| Denied::Unauthenticated("unknown token".into()))?;
        if e.role < need {
            return Err(Denied::PermissionDenied(format!(
                "role {} cannot {}",
                e.role.as_str(),
                need.verb()
            )));
        }
        Ok(Caller {
            name: e.name.clone(),
            role: e.role,
        })
    }

    fn reload_if_changed(&self, path: &Path) {
        // One request a second wins the compare-exchange and looks at the file.
        let now_ms = self.born.elapsed().as_millis() as u64;
        let last = self.checked_ms.load(Ordering::Relaxed);
        if now_ms < last + RELOAD_CHECK.as_millis() as u64
            || self
                .checked_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let now = stamp(path);
        if now == self.table.read().unwrap_or_else(|p| p.into_inner()).stamp {
            return;
        }
        match load(path) {
            Ok(t) => {
                tracing::info!(file = %path.display(), tokens = t.entries.len(), "BRAFT_AUTH_FILE changed: reloaded");
                *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(t);
            }
            Err(e) => tracing::warn!("BRAFT_AUTH_FILE changed but does not load; keeping the previous tokens: {e}"),
        }
    }
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn load(path: &Path) -> Result<Table, String> {
    let stamp = stamp(path);
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    let entries = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(Table { entries, stamp })
}

fn parse(text: &str) -> Result<Vec<Entry>, String> {
    let f: FileText = toml::from_str(text).map_err(|e| e.message().to_string())?;
    let mut names = std::collections::BTreeSet::new();
    let mut out = Vec::new();
    for t in f.token {
        if t.name.is_empty() {
            return Err("a [[token]] has an empty name".into());
        }
        if !names.insert(t.name.clone()) {
            return Err(format!("token name '{}' appears twice", t.name));
        }
        let bytes = decode_hex(&t.sha256)
            .filter(|b| b.len() == 32)
            .ok_or_else(|| format!("token '{}': sha256 must be 64 hex digits", t.name))?;
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(&bytes);
        out.push(Entry {
            name: t.name,
            role: t.role,
            sha256,
        });
    }
    Ok(out)
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The hex SHA-256 of a token, as the auth file stores it.
pub fn token_hash(token: &str) -> String {
    sha256(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh token: 32 random bytes from the OS's generator, in hex, with a prefix that
/// secret scanners can spot.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).expect("the OS random source");
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("braft_{hex}")
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The role a braft gRPC method needs; `None` for methods outside braft's public
/// services (the peer service is guarded by the peer plane; reflection is open).
pub fn grpc_role(path: &str) -> Option<Role> {
    let (service, method) = path.trim_start_matches('/').split_once('/')?;
    Some(match (service, method) {
        ("braft.v1.Kv", "Get" | "List" | "Watch") => Role::Read,
        ("braft.v1.Kv", _) => Role::Write,
        ("braft.v1.Distributor", "Assignment") => Role::Read,
        ("braft.v1.Distributor", _) => Role::Write,
        ("braft.v1.Admin", "Members" | "Status" | "Hash") => Role::Read,
        // Everything else in Admin, and methods added later, need the highest role.
        ("braft.v1.Admin", _) => Role::Admin,
        _ => return None,
    })
}

/// A public gRPC service behind the token check: a refused call is answered with
/// UNAUTHENTICATED or PERMISSION_DENIED and never reaches the service. Where `requests`
/// is given (RPORT), a call also takes a request slot, or is refused with UNAVAILABLE
/// when none is free (`BRAFT_MAX_REQUESTS`).
#[derive(Clone)]
pub struct Guarded<S> {
    inner: S,
    access: Arc<Access>,
    requests: Option<Arc<crate::http::limit::Limit>>,
}

impl<S> Guarded<S> {
    pub(crate) fn new(inner: S, access: Arc<Access>, requests: Option<Arc<crate::http::limit::Limit>>) -> Self {
        Self {
            inner,
            access,
            requests,
        }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for Guarded<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for Guarded<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<tonic::body::Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = futures::future::BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        let need = grpc_role(req.uri().path()).unwrap_or(Role::Admin);
        let auth = req.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        match self.access.check(auth, need) {
            Ok(caller) => {
                let slot = match self.requests.as_ref().map(|r| r.take(req.uri().path())) {
                    Some(Err(message)) => {
                        let resp = crate::http::limit::grpc_refusal(message);
                        return Box::pin(async move { Ok(resp) });
                    }
                    Some(Ok(slot)) => slot,
                    None => None,
                };
                req.extensions_mut().insert(caller);
                let call = self.inner.call(req);
                Box::pin(async move {
                    let resp = call.await;
                    drop(slot);
                    resp
                })
            }
            Err(denied) => {
                let resp = denied.status().into_http();
                Box::pin(async move { Ok(resp) })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_with(entries: &[(&str, &str, &str)]) -> tempfile::NamedTempFile {
        let mut text = String::new();
        for (name, role, token) in entries {
            text.push_str(&format!(
                "[[token]]\nname = \"{name}\"\nrole = \"{role}\"\nsha256 = \"{}\"\n",
                token_hash(token)
            ));
        }
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    /// A reader reads but cannot write; a writer cannot administer; an admin can do
    /// all; a missing or unknown token is unauthenticated; with no file, all is allowed.
    #[test]
    fn roles_are_ordered_and_tokens_checked() {
        let f = file_with(&[("r", "read", "tok-r"), ("w", "write", "tok-w"), ("a", "admin", "tok-a")]);
        let access = Access::from_file(f.path(), false).unwrap();
        let bearer = |t: &str| format!("Bearer {t}").into_bytes();
        assert_eq!(access.check(Some(&bearer("tok-r")), Role::Read).unwrap().name, "r");
        assert_eq!(
            access.check(Some(&bearer("tok-r")), Role::Write),
            Err(Denied::PermissionDenied("role read cannot write".into()))
        );
        assert!(access.check(Some(&bearer("tok-w")), Role::Write).is_ok());
        assert!(matches!(
            access.check(Some(&bearer("tok-w")), Role::Admin),
            Err(Denied::PermissionDenied(_))
        ));
        assert!(access.check(Some(&bearer("tok-a")), Role::Admin).is_ok());
        assert!(matches!(
            access.check(Some(&bearer("guess")), Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            access.check(None, Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(matches!(
            access.check(Some(b"tok-r"), Role::Read),
            Err(Denied::Unauthenticated(_))
        ));
        assert!(Access::open().check(None, Role::Admin).is_ok());
    }

    /// Malformed files are refused with the reason; a fresh token hashes as stored.
    #[test]
    fn bad_files_are_refused() {
        for (text, says) in [
            ("[[token]]\nname = \"x\"\nrole = \"root\"\nsha256 = \"00\"\n", "unknown variant"),
            ("[[token]]\nname = \"x\"\nrole = \"read\"\nsha256 = \"zz\"\n", "64 hex digits"),
            (
                &format!(
                    "[[token]]\nname = \"x\"\nrole = \"read\"\nsha256 = \"{}\"\n[[token]]\nname = \"x\"\nrole = \"read\"\nsha256 = \"{}\"\n",
                    token_hash("a"),
                    token_hash("b")
                ),
                "appears twice",
            ),
            ("[[token]]\nname = \"x\"\nrole = \"read\"\n", "missing field"),
        ] {
            let e = parse(text).err().unwrap_or_default();
            assert!(e.contains(says), "{text}: {e}");
        }
        let t = new_token();
        assert!(t.starts_with("braft_") && t.len() == 6 + 64);
        assert_ne!(t, new_token());
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn grpc_methods_map_to_roles() {
        assert_eq!(grpc_role("/braft.v1.Kv/Get"), Some(Role::Read));
        assert_eq!(grpc_role("/braft.v1.Kv/Put"), Some(Role::Write));
        assert_eq!(grpc_role("/braft.v1.Admin/Status"), Some(Role::Read));
        assert_eq!(grpc_role("/braft.v1.Admin/Backup"), Some(Role::Admin));
        assert_eq!(grpc_role("/braft.v1.Distributor/Distribute"), Some(Role::Write));
        assert_eq!(grpc_role("/braft.v1.Raft/Append"), None);
    }
}
