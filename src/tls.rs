//! TLS for both planes, with etcd's model, on rustls (ring) alone: no OpenSSL.
//!
//! - The **client plane** (HPORT: HTTP and the public gRPC services) is TLS when
//!   `BRAFT_CERT_FILE`/`BRAFT_KEY_FILE` are set, and also demands client certificates
//!   signed by `BRAFT_CLIENT_CA_FILE` when that is set (etcd's `--client-cert-auth`).
//! - The **peer plane** (RPORT: replication, votes, snapshots, forwarding, formation,
//!   join and leave) is always mutual: each side presents its certificate and checks the
//!   other's against the peer CA, in both directions. A peer without a certificate from
//!   that CA never completes a handshake, so it cannot send a single RPC.
//!
//! Peers check the chain, not the host name. Peers are dialled at the addresses
//! discovery found (pod IPs on Kubernetes, which change with every restart), so a name
//! check would tie certificates to addresses; the peer CA is the trust boundary instead,
//! as in CockroachDB and Consul without `verify_server_hostname`. Clients (`braft ctl`,
//! curl) do check names.
//!
//! Certificates are re-read when their files change, without a restart (as etcd does):
//! each handshake uses the newest configuration, and files are looked at no more than
//! once a second. A file that fails to load (a half-finished rotation: new certificate,
//! old key) leaves the previous configuration in use, with a warning, until it loads.
//! Connections already open keep the certificate they were made with.
//!
//! Handshakes run in their own tasks, off the accept loop, so a client that never
//! finishes one (a slow loris on the handshake) holds up nobody else; each has
//! [`HANDSHAKE_TIMEOUT`] and holds one of the port's connection slots meanwhile.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::{Config, ConfigError};
use crate::transport::BoxConn;

/// How long a connection may take to finish its handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Files are looked at for changes no more often than this.
const RELOAD_CHECK: Duration = Duration::from_secs(1);

/// rustls with ring, named explicitly: a dependency enabling another provider must not
/// make the process-wide default ambiguous.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The files of one plane, each with the setting that named it (for error messages).
#[derive(Clone, Debug, PartialEq)]
pub struct TlsFiles {
    pub cert: (PathBuf, &'static str),
    pub key: (PathBuf, &'static str),
    /// The CA the other side's certificate must chain to.
    pub ca: Option<(PathBuf, &'static str)>,
}

/// Which plane: it decides ALPN and whether the other side must present a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaneKind {
    /// HPORT: HTTP/1.1 and h2 (gRPC); client certificates only when a CA is given.
    Client,
    /// RPORT: h2 only; always mutual.
    Peer,
}

/// The TLS settings of both planes, resolved from the config. `None` means plaintext.
pub struct Planes {
    pub client: Option<Arc<Plane>>,
    pub peer: Option<Arc<Plane>>,
}

impl Planes {
    /// Resolves and loads both planes. Every problem is a [`ConfigError`] naming the
    /// setting and the file: a missing or unreadable file, no PEM in it, a key that does
    /// not match its certificate, or a certificate that has expired.
    pub fn from_config(c: &Config) -> Result<Planes, ConfigError> {
        let client = match (&c.cert_file, &c.key_file) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: (cert.clone(), "BRAFT_CERT_FILE"),
                key: (key.clone(), "BRAFT_KEY_FILE"),
                ca: c.client_ca_file.clone().map(|p| (p, "BRAFT_CLIENT_CA_FILE")),
            }),
            _ => None,
        };
        let peer = peer_files(c);
        Ok(Planes {
            client: client.map(|f| Plane::open(f, PlaneKind::Client)).transpose()?,
            peer: peer.map(|f| Plane::open(f, PlaneKind::Peer)).transpose()?,
        })
    }
}

/// The peer plane's files: its own settings, each falling back to the client plane's
/// (so a small cluster needs one certificate per node). It is on when a certificate and
/// a CA resolve; [`Config::validate`] refuses a peer certificate without a CA.
fn peer_files(c: &Config) -> Option<TlsFiles> {
    let cert = match (&c.peer_cert_file, &c.cert_file) {
        (Some(p), _) => (p.clone(), "BRAFT_PEER_CERT_FILE"),
        (None, Some(p)) => (p.clone(), "BRAFT_CERT_FILE"),
        _ => return None,
    };
    let key = match (&c.peer_key_file, &c.key_file) {
        (Some(p), _) => (p.clone(), "BRAFT_PEER_KEY_FILE"),
        (None, Some(p)) => (p.clone(), "BRAFT_KEY_FILE"),
        _ => return None,
    };
    let ca = match (&c.peer_ca_file, &c.client_ca_file) {
        (Some(p), _) => (p.clone(), "BRAFT_PEER_CA_FILE"),
        (None, Some(p)) => (p.clone(), "BRAFT_CLIENT_CA_FILE"),
        _ => return None,
    };
    Some(TlsFiles {
        cert,
        key,
        ca: Some(ca),
    })
}

/// Whether the config turns peer TLS on (see [`peer_files`]).
pub fn peer_tls_on(c: &Config) -> bool {
    peer_files(c).is_some()
}

/// What was loaded from the files, and when they were last changed.
struct Loaded {
    key: Arc<CertifiedKey>,
    key_der: PrivateKeyDer<'static>,
    roots: Option<Arc<RootCertStore>>,
}

/// The configurations built from the files, rebuilt when they change.
struct Built {
    server: Arc<ServerConfig>,
    /// The dialling side (peer plane only).
    client: Option<Arc<ClientConfig>>,
    stamp: Vec<Option<(SystemTime, u64)>>,
}

/// One plane's TLS, reloading its files when they change.
pub struct Plane {
    files: TlsFiles,
    kind: PlaneKind,
    built: RwLock<Arc<Built>>,
    checked: Mutex<Instant>,
}

impl std::fmt::Debug for Plane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plane")
            .field("files", &self.files)
            .field("kind", &self.kind)
            .finish()
    }
}

impl Plane {
    /// Loads the files; fails with the setting and file at fault.
    pub fn open(files: TlsFiles, kind: PlaneKind) -> Result<Arc<Plane>, ConfigError> {
        let built = build(&files, kind)?;
        Ok(Arc::new(Plane {
            files,
            kind,
            built: RwLock::new(Arc::new(built)),
            checked: Mutex::new(Instant::now()),
        }))
    }

    /// The server configuration for the next handshake (after a reload, if due).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.reload_if_changed();
        self.built.read().unwrap_or_else(|p| p.into_inner()).server.clone()
    }

    /// The dialling configuration (peer plane), for the next handshake.
    pub fn client_config(&self) -> Option<Arc<ClientConfig>> {
        self.reload_if_changed();
        self.built.read().unwrap_or_else(|p| p.into_inner()).client.clone()
    }

    fn reload_if_changed(&self) {
        {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.elapsed() < RELOAD_CHECK {
                return;
            }
            *checked = Instant::now();
        }
        let stamp = stamps(&self.files);
        let current = self.built.read().unwrap_or_else(|p| p.into_inner()).stamp.clone();
        if stamp == current {
            return;
        }
        match build(&self.files, self.kind) {
            Ok(b) => {
                tracing::info!(cert = %self.files.cert.0.display(), plane = ?self.kind, "TLS files changed: reloaded");
                *self.built.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(b);
            }
            // Keep serving with what loaded last; the stamp is not updated, so the next
            // check tries again (a rotation may be half done).
            Err(e) => tracing::warn!("TLS files changed but do not load; keeping the previous ones: {e}"),
        }
    }
}

/// The modification time and length of each file, to notice a change.
fn stamps(f: &TlsFiles) -> Vec<Option<(SystemTime, u64)>> {
    let mut paths = vec![&f.cert.0, &f.key.0];
    if let Some((ca, _)) = &f.ca {
        paths.push(ca);
    }
    paths
        .into_iter()
        .map(|p| {
            std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())))
        })
        .collect()
}

fn build(files: &TlsFiles, kind: PlaneKind) -> Result<Built, ConfigError> {
    let stamp = stamps(files);
    let l = load(files)?;
    let p = provider();
    let versions = |e: rustls::Error| ConfigError::new(files.cert.1, format!("TLS setup: {e}"));
    let builder = ServerConfig::builder_with_provider(p.clone())
        .with_safe_default_protocol_versions()
        .map_err(versions)?;
    let builder = match (&l.roots, kind) {
        (Some(roots), _) => {
            let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), p.clone())
                .build()
                .map_err(|e| ConfigError::new(files.ca.as_ref().map_or(files.cert.1, |c| c.1), e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        (None, PlaneKind::Client) => builder.with_no_client_auth(),
        (None, PlaneKind::Peer) => {
            return Err(ConfigError::new(
                "BRAFT_PEER_CA_FILE",
                "peer TLS is always mutual and needs the peer CA",
            ))
        }
    };
    let mut server = builder.with_cert_resolver(Arc::new(Fixed(l.key.clone())));
    server.alpn_protocols = match kind {
        PlaneKind::Client => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        PlaneKind::Peer => vec![b"h2".to_vec()],
    };
    let client = match (kind, &l.roots) {
        (PlaneKind::Peer, Some(roots)) => {
            let mut c = ClientConfig::builder_with_provider(p.clone())
                .with_safe_default_protocol_versions()
                .map_err(versions)?
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PeerVerifier {
                    roots: roots.clone(),
                    provider: p.clone(),
                }))
                .with_client_auth_cert(l.key.cert.clone(), l.key_der.clone_key())
                .map_err(|e| ConfigError::new(files.key.1, e.to_string()))?;
            c.alpn_protocols = vec![b"h2".to_vec()];
            Some(Arc::new(c))
        }
        _ => None,
    };
    Ok(Built {
        server: Arc::new(server),
        client,
        stamp,
    })
}

/// Always presents the one certificate (there is one name per node, so no SNI choice).
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

fn read(path: &Path, setting: &'static str) -> Result<Vec<u8>, ConfigError> {
    std::fs::read(path).map_err(|e| ConfigError::new(setting, format!("{}: cannot read: {e}", path.display())))
}

fn certs(path: &Path, setting: &'static str) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let pem = read(path, setting)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::new(setting, format!("{}: not PEM certificates: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(ConfigError::new(
            setting,
            format!("{}: no PEM certificate in it", path.display()),
        ));
    }
    for c in &certs {
        check_validity(c, path, setting)?;
    }
    Ok(certs)
}

/// Refuses a certificate outside its validity period, at start and at every reload.
fn check_validity(der: &CertificateDer<'_>, path: &Path, setting: &'static str) -> Result<(), ConfigError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| ConfigError::new(setting, format!("{}: not an X.509 certificate: {e}", path.display())))?;
    let v = cert.validity();
    let now = x509_parser::time::ASN1Time::now();
    if now > v.not_after {
        return Err(ConfigError::new(
            setting,
            format!("{}: the certificate expired on {}", path.display(), v.not_after),
        ));
    }
    if now < v.not_before {
        return Err(ConfigError::new(
            setting,
            format!(
                "{}: the certificate is not valid before {}",
                path.display(),
                v.not_before
            ),
        ));
    }
    Ok(())
}

fn load(f: &TlsFiles) -> Result<Loaded, ConfigError> {
    let chain = certs(&f.cert.0, f.cert.1)?;
    let key_pem = read(&f.key.0, f.key.1)?;
    let key_der = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        ConfigError::new(
            f.key.1,
            format!("{}: no PEM private key in it ({e})", f.key.0.display()),
        )
    })?;
    let key = CertifiedKey::from_der(chain, key_der.clone_key(), &provider()).map_err(|e| {
        let problem = match e {
            rustls::Error::InconsistentKeys(_) => {
                format!("does not match the certificate in {}", f.cert.0.display())
            }
            e => e.to_string(),
        };
        ConfigError::new(f.key.1, format!("{}: {problem}", f.key.0.display()))
    })?;
    let roots = match &f.ca {
        None => None,
        Some((path, setting)) => {
            let mut roots = RootCertStore::empty();
            for c in certs(path, setting)? {
                roots
                    .add(c)
                    .map_err(|e| ConfigError::new(setting, format!("{}: not a CA certificate: {e}", path.display())))?;
            }
            Some(Arc::new(roots))
        }
    };
    Ok(Loaded {
        key: Arc::new(key),
        key_der,
        roots,
    })
}

/// Checks a peer's certificate chain against the peer CA, and not its name (see the
/// module's note on why).
#[derive(Debug)]
struct PeerVerifier {
    roots: Arc<RootCertStore>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// The server side of one handshake, within [`HANDSHAKE_TIMEOUT`]; `None` (logged)
/// when it fails. Run in its own task by the accept loop
/// ([`crate::transport::serve_accepted`]), so a slow one holds up nobody else.
pub(crate) async fn handshake(plane: &Plane, conn: BoxConn, from: &str) -> Option<BoxConn> {
    let acceptor = tokio_rustls::TlsAcceptor::from(plane.server_config());
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(conn)).await {
        Ok(Ok(tls)) => Some(BoxConn::new(tls)),
        Ok(Err(e)) => {
            tracing::warn!(plane = ?plane.kind, "TLS handshake from {from} failed: {e}");
            None
        }
        Err(_) => {
            tracing::debug!(plane = ?plane.kind, "TLS handshake from {from} timed out");
            None
        }
    }
}

/// Wraps a dialled connection to a peer in TLS.
pub(crate) async fn connect(plane: &Plane, host: &str, conn: BoxConn) -> io::Result<BoxConn> {
    let Some(config) = plane.client_config() else {
        return Err(io::Error::other("this plane has no dialling configuration"));
    };
    // The name is sent as SNI only; PeerVerifier does not check it.
    let name = match host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<std::net::IpAddr>()
    {
        Ok(ip) => ServerName::IpAddress(ip.into()),
        Err(_) => ServerName::try_from(host.to_string())
            .unwrap_or_else(|_| ServerName::try_from("braft-peer").expect("a valid name")),
    };
    let tls = tokio_rustls::TlsConnector::from(config).connect(name, conn).await?;
    Ok(BoxConn::new(tls))
}
