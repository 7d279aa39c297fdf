//! The network seam: how a node accepts connections on RPORT and HPORT, and how it dials
//! its peers. By default these are the operating system's TCP sockets. A deterministic
//! simulation (turmoil) or a test harness can supply its own streams instead: any
//! ordered, reliable byte stream will do.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connected byte stream.
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Conn for T {}

/// A boxed connection: what a custom listener yields and a [`Dialer`] returns.
pub struct BoxConn(Box<dyn Conn>);

impl BoxConn {
    pub fn new(c: impl Conn) -> Self {
        Self(Box::new(c))
    }
}

impl AsyncRead for BoxConn {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for BoxConn {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for BoxConn {
    type ConnectInfo = ();
    fn connect_info(&self) -> Self::ConnectInfo {}
}

/// A stream of accepted connections: a custom listener.
pub type Incoming = Pin<Box<dyn Stream<Item = io::Result<BoxConn>> + Send>>;

/// What [`Dialer::dial`] returns.
pub type DialFuture = Pin<Box<dyn Future<Output = io::Result<BoxConn>> + Send>>;

/// Opens connections to peers (`host:port`).
pub trait Dialer: Send + Sync + 'static {
    fn dial(&self, addr: &str) -> DialFuture;
}

/// Adapts a [`Dialer`] to the connector tonic's channels want
/// (`Endpoint::connect_with_connector_lazy`), for peers and for clients alike.
#[derive(Clone)]
pub struct DialConnector(pub Arc<dyn Dialer>);

impl tower::Service<tonic::codegen::http::Uri> for DialConnector {
    type Response = hyper_util::rt::TokioIo<BoxConn>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: tonic::codegen::http::Uri) -> Self::Future {
        let dial = uri
            .authority()
            .map(|a| self.0.dial(a.as_str()))
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("no host:port in {uri}")));
        Box::pin(async move { Ok(hyper_util::rt::TokioIo::new(dial?.await?)) })
    }
}

/// The operating system's TCP, with TCP_NODELAY (Raft's small acks must not wait out
/// Nagle and delayed ACKs).
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn dial(&self, addr: &str) -> DialFuture {
        let addr = addr.to_string();
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            Ok(BoxConn::new(tcp))
        })
    }
}

/// Dials with another [`Dialer`], then wraps the connection in the peer plane's TLS.
pub(crate) struct TlsDialer {
    pub inner: Arc<dyn Dialer>,
    pub tls: Arc<crate::tls::Plane>,
}

impl Dialer for TlsDialer {
    fn dial(&self, addr: &str) -> DialFuture {
        let conn = self.inner.dial(addr);
        let tls = self.tls.clone();
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h).to_string();
        Box::pin(async move { crate::tls::connect(&tls, &host, conn.await?).await })
    }
}

/// A custom listener for axum: the next accepted connection, forever.
pub(crate) struct IncomingListener {
    pub incoming: Incoming,
    pub addr: std::net::SocketAddr,
}

impl axum::serve::Listener for IncomingListener {
    type Io = BoxConn;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.incoming.next().await {
                Some(Ok(c)) => return (c, self.addr),
                Some(Err(e)) => tracing::debug!("accept: {e}"),
                // The listener is gone: accept nothing more (shutdown ends the server).
                None => std::future::pending::<()>().await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Where a server accepts connections.
pub(crate) enum Listen {
    Tcp(tokio::net::TcpListener),
    Custom(IncomingListener),
}

impl Listen {
    pub fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        match self {
            Listen::Tcp(l) => l.local_addr(),
            Listen::Custom(l) => Ok(l.addr),
        }
    }
}

/// Accepts on `listen` and hands on the connections, each through the TLS handshake
/// when `tls` is set, holding one of `max_connections` slots for its whole life. At
/// the limit it stops accepting (the kernel's backlog holds the next ones) until a
/// connection closes, so a flood of connections costs a bounded amount of memory.
pub(crate) fn serve_accepted(
    listen: Listen,
    tls: Option<Arc<crate::tls::Plane>>,
    max_connections: usize,
) -> io::Result<Listen> {
    let addr = listen.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
    let (tx, rx) = tokio::sync::mpsc::channel::<BoxConn>(64);
    tokio::spawn(async move {
        let mut listen = listen;
        let mut warned = false;
        loop {
            if slots.available_permits() == 0 && !warned {
                tracing::warn!(%addr, max_connections, "connection limit reached: not accepting until one closes");
                warned = true;
            }
            let slot = tokio::select! {
                _ = tx.closed() => return,
                s = slots.clone().acquire_owned() => match s {
                    Ok(s) => s,
                    Err(_) => return,
                },
            };
            let next = tokio::select! {
                // The server is gone (shut down): stop accepting.
                _ = tx.closed() => return,
                c = next_conn(&mut listen) => c,
            };
            let Some((conn, from)) = next else { return };
            if slots.available_permits() > 0 {
                warned = false;
            }
            let conn = BoxConn::new(Slotted { conn, _slot: slot });
            match &tls {
                None => {
                    if tx.send(conn).await.is_err() {
                        return;
                    }
                }
                Some(plane) => {
                    let (plane, tx) = (plane.clone(), tx.clone());
                    tokio::spawn(async move {
                        if let Some(c) = crate::tls::handshake(&plane, conn, &from).await {
                            let _ = tx.send(c).await;
                        }
                    });
                }
            }
        }
    });
    let incoming = tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok);
    Ok(Listen::Custom(IncomingListener {
        incoming: Box::pin(incoming),
        addr,
    }))
}

/// The next plain connection, and where it came from (for logs).
async fn next_conn(listen: &mut Listen) -> Option<(BoxConn, String)> {
    loop {
        match listen {
            Listen::Tcp(l) => match l.accept().await {
                Ok((tcp, from)) => {
                    // Small request/response exchanges: without TCP_NODELAY, Nagle's
                    // algorithm and delayed ACKs add ~40 ms to the next request, and
                    // Raft's small append acks wait the same.
                    let _ = tcp.set_nodelay(true);
                    return Some((BoxConn::new(tcp), from.to_string()));
                }
                Err(e) => {
                    // Out of file descriptors, usually: wait rather than spin.
                    tracing::debug!("accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
            Listen::Custom(l) => match l.incoming.next().await {
                Some(Ok(c)) => return Some((c, "a custom listener".into())),
                Some(Err(e)) => tracing::debug!("accept: {e}"),
                None => return None,
            },
        }
    }
}

/// A connection holding one of its port's slots until it is dropped.
struct Slotted {
    conn: BoxConn,
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl AsyncRead for Slotted {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_read(cx, buf)
    }
}

impl AsyncWrite for Slotted {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.conn).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.conn).poll_shutdown(cx)
    }
}

/// Whether a failed gRPC call never left this process: the connection itself could not
/// be made. Only then is a write certainly not applied, and safe to retry elsewhere;
/// any other failure may have reached the server.
pub fn never_sent(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Unavailable {
        return false;
    }
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = cause {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionRefused | AddrNotAvailable | HostUnreachable | NetworkUnreachable
            ) {
                return true;
            }
        }
        if e.to_string().contains("tcp connect error") {
            return true;
        }
        cause = e.source();
    }
    status.message().contains("tcp connect error")
}
