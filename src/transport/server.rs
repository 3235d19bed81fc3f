//! The server's side: an endpoint that accepts only authorized clients, and
//! [`serve`], which gives every connection its own [`Session`].
//!
//! Owns the accept loop, the handshake and the mapping of a stream to one
//! request. Must not execute requests itself: a [`Session`] does.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::sync::Semaphore;

use super::identity::{Fingerprint, Identity};
use super::stream::{ReadFrameError, read_frame, read_sole_frame};
use super::trust::{ClientVerifier, LiveClients};
use super::{ErrorChain, Liveness, TransportError, code, provider, transport_config};
use crate::errno::Errno;
use crate::proto::{
    ALPN, Call, Credentials, Hello, PROTOCOL_VERSION, Request, Response, Welcome, frame,
};

/// What a connection's requests run against. One per connection; dropped
/// (closing whatever it holds) when the connection ends and its last
/// request has finished.
pub trait Session: Send + Sync + 'static {
    /// Runs one request with the rights of `caller`, as far as the session
    /// allows. May block: it is called on a blocking thread.
    fn execute(&self, caller: Option<&Credentials>, req: Request) -> Response;

    /// The connection is gone: requests that wait (for a lock) stop
    /// waiting. Requests already running still finish.
    fn close(&self) {}
}

impl Session for crate::server::Executor {
    fn execute(&self, caller: Option<&Credentials>, req: Request) -> Response {
        crate::server::Executor::execute(self, caller, req)
    }

    fn close(&self) {
        crate::server::Executor::close(self);
    }
}

/// Why a session could not be opened; sent to the client as the close reason.
pub type SessionError = Box<dyn std::error::Error + Send + Sync>;

/// The authenticated client of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
}

/// How many requests of one connection execute at once. More streams may be
/// open (up to [`super::MAX_CONCURRENT_STREAMS`]); they wait in QUIC's
/// buffers, so one client cannot take every blocking thread.
pub const MAX_EXECUTING_PER_CONNECTION: usize = 256;

/// How long a client has to send `Hello` after the TLS handshake.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Binds a server endpoint on `listen` that presents `identity` and accepts
/// only clients whose certificate is in `clients` (an [`AuthorizedClients`]
/// list, or a [`LiveClients`] one that may change while it runs).
///
/// [`AuthorizedClients`]: super::trust::AuthorizedClients
pub fn endpoint(
    listen: SocketAddr,
    identity: &Identity,
    clients: impl Into<LiveClients>,
    liveness: Liveness,
) -> Result<quinn::Endpoint, TransportError> {
    let tls_err = |e: rustls::Error| TransportError::TlsConfig(e.to_string());
    let verifier = ClientVerifier::new(clients.into(), provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![identity.cert_der().clone()], identity.key_der())
        .map_err(tls_err)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // Resumption would skip the client verifier; every connection is
    // checked against the authorized list instead.
    tls.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    tls.send_tls13_tickets = 0;
    let quic =
        QuicServerConfig::try_from(tls).map_err(|e| TransportError::TlsConfig(e.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport_config(liveness));
    // A client whose address or port changes (Wi-Fi to wired, a NAT
    // rebinding, a VPN coming up) keeps its connection: QUIC validates the
    // new path and moves the connection over.
    config.migration(true);
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TransportError::NoRuntime);
    }
    quinn::Endpoint::server(config, listen).map_err(|error| TransportError::Bind {
        addr: listen,
        error,
    })
}

/// Accepts connections on `endpoint` until `shutdown` completes, then
/// closes every connection and returns. `make_session` opens the session of
/// each authenticated connection; `read_only` is announced in the `Welcome`.
pub async fn serve<F, S>(
    endpoint: quinn::Endpoint,
    read_only: bool,
    make_session: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(&Peer) -> Result<S, SessionError> + Send + Sync + 'static,
    S: Session,
{
    serve_live(endpoint, read_only, None, make_session, shutdown).await;
}

/// The close reason a client removed from the authorized clients gets.
pub const REVOKED_REASON: &str =
    "this client was removed from the server's authorized clients file";

/// [`serve`], and with `clients` (the list the endpoint checks) the live
/// sessions of a client removed from it end, with [`REVOKED_REASON`].
pub async fn serve_live<F, S>(
    endpoint: quinn::Endpoint,
    read_only: bool,
    clients: Option<LiveClients>,
    make_session: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(&Peer) -> Result<S, SessionError> + Send + Sync + 'static,
    S: Session,
{
    let make_session = Arc::new(make_session);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.accept() => incoming,
            () = &mut shutdown => break,
        };
        // `None` means the endpoint was closed elsewhere.
        let Some(incoming) = incoming else { break };
        let make_session = make_session.clone();
        let clients = clients.clone();
        tokio::spawn(async move {
            connection(incoming, read_only, make_session.as_ref(), clients).await;
        });
    }
    endpoint.close(VarInt::from_u32(code::SHUTDOWN), b"server shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

fn peer_fingerprint(conn: &quinn::Connection) -> Option<Fingerprint> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().map(|cert| Fingerprint::of_der(cert.as_ref()))
}

async fn connection<F, S>(
    incoming: quinn::Incoming,
    read_only: bool,
    make_session: &F,
    clients: Option<LiveClients>,
) where
    F: Fn(&Peer) -> Result<S, SessionError>,
    S: Session,
{
    let conn = match incoming.await {
        Ok(conn) => conn,
        Err(e) => {
            tracing::debug!("handshake failed: {e}");
            return;
        }
    };
    // Mandatory client auth means a certificate is always there; refuse
    // rather than guess if it is not.
    let Some(fingerprint) = peer_fingerprint(&conn) else {
        conn.close(
            VarInt::from_u32(code::BAD_HANDSHAKE),
            b"no client certificate",
        );
        return;
    };
    let peer = Peer {
        addr: conn.remote_address(),
        fingerprint,
    };
    let span = tracing::info_span!("conn", peer = %peer.addr, client = %peer.fingerprint);

    let (mut send, hello) = match read_hello(&conn).await {
        Ok(Some(hello)) => hello,
        Ok(None) => return,
        Err(e) => {
            let reason = ErrorChain(&e).to_string();
            tracing::info!(parent: &span, "bad handshake: {reason}");
            conn.close(VarInt::from_u32(code::BAD_HANDSHAKE), reason.as_bytes());
            return;
        }
    };
    if hello.version != PROTOCOL_VERSION {
        tracing::info!(parent: &span, client_version = hello.version, "protocol version mismatch");
        let answer = Welcome::VersionMismatch {
            server_version: PROTOCOL_VERSION,
        };
        if send.write_all(&frame::encode(&answer)).await.is_ok() {
            let _ = send.finish();
            // Let the client read the answer and close; it knows the versions.
            let _ = tokio::time::timeout(HELLO_TIMEOUT, conn.closed()).await;
        }
        return;
    }
    let session = match make_session(&peer) {
        Ok(session) => Arc::new(session),
        Err(e) => {
            tracing::warn!(parent: &span, "cannot open session: {e}");
            conn.close(
                VarInt::from_u32(code::SESSION_FAILED),
                e.to_string().as_bytes(),
            );
            return;
        }
    };
    let welcome = Welcome::Accepted {
        version: PROTOCOL_VERSION,
        read_only,
    };
    if send.write_all(&frame::encode(&welcome)).await.is_err() {
        return;
    }
    let _ = send.finish();
    tracing::info!(parent: &span, "session open");
    let started = std::time::Instant::now();
    let mut requests: u64 = 0;
    let fingerprint = peer.fingerprint;
    let mut revoked = std::pin::pin!(async move {
        match clients {
            Some(clients) => clients.removed(fingerprint).await,
            None => std::future::pending().await,
        }
    });

    let net = Arc::new(crate::server::net::NetSession::new(conn.clone()));
    let executing = Arc::new(Semaphore::new(MAX_EXECUTING_PER_CONNECTION));
    let ended = loop {
        // The semaphore is never closed, so acquiring cannot fail.
        let Ok(permit) = executing.clone().acquire_owned().await else {
            break "the server stopped".to_owned();
        };
        let accepted = tokio::select! {
            accepted = conn.accept_bi() => accepted,
            () = &mut revoked => {
                conn.close(VarInt::from_u32(code::REVOKED), REVOKED_REASON.as_bytes());
                break "client removed from the authorized clients".to_owned();
            }
        };
        let (send, recv) = match accepted {
            Ok(streams) => streams,
            Err(e) => break e.to_string(),
        };
        requests += 1;
        let session = session.clone();
        tokio::spawn(request(send, recv, session, net.clone(), permit));
    };
    tracing::info!(
        parent: &span,
        duration = %format_args!("{:.3}s", started.elapsed().as_secs_f64()),
        requests,
        "session ended: {ended}"
    );
    session.close();
    // The session drops here, or when its last in-flight request finishes.
}

/// Requests quick enough to run on the connection's task.
fn runs_inline(req: &Request) -> bool {
    matches!(
        req,
        Request::Stat { .. }
            | Request::StatPlus { .. }
            | Request::Fstat { .. }
            | Request::Access { .. }
            | Request::Readlink { .. }
            | Request::GetXattr { .. }
            | Request::ListXattr { .. }
            | Request::CheckDir { .. }
            | Request::Lseek { .. }
            | Request::SetFlags { .. }
            | Request::Uname
            | Request::CancelWait { .. }
    )
}

/// Why a client's `Hello` could not be had; sent back as the close reason.
#[derive(Debug, thiserror::Error)]
enum HelloError {
    #[error(transparent)]
    Read(#[from] ReadFrameError),
    #[error("no handshake within {}s", HELLO_TIMEOUT.as_secs())]
    Timeout,
}

/// The most the `Hello` stream may hold.
const HELLO_LIMIT: usize = 1024;

/// Reads the `Hello` on the first stream, bounded in time so a silent
/// client cannot hold a connection open forever. `Ok(None)`: the connection
/// ended first.
async fn read_hello(
    conn: &quinn::Connection,
) -> Result<Option<(quinn::SendStream, Hello)>, HelloError> {
    let exchange = async {
        let Ok((send, mut recv)) = conn.accept_bi().await else {
            return Ok(None);
        };
        let hello = read_sole_frame::<Hello>(&mut recv, HELLO_LIMIT).await?;
        Ok(Some((send, hello)))
    };
    match tokio::time::timeout(HELLO_TIMEOUT, exchange).await {
        Ok(result) => result,
        Err(_) => Err(HelloError::Timeout),
    }
}

/// Why a request stream gave no request.
enum RequestError {
    /// The frame exceeds the limit: refuse it unread.
    TooLong,
    /// Not one whole `Call` frame.
    Malformed(ReadFrameError),
    /// The stream ended before any frame.
    Empty,
    /// The client reset the stream, or the connection is gone.
    Gone,
}

/// Reads exactly one request frame. The stream may go on after it (a TCP
/// connection's bytes follow its `TcpConnect`), so this never waits for
/// the stream's end.
async fn read_request(recv: &mut quinn::RecvStream) -> Result<Call, RequestError> {
    match read_frame::<Call>(recv).await {
        Ok(Some(call)) => Ok(call),
        Ok(None) => Err(RequestError::Empty),
        Err(ReadFrameError::TooLarge { .. }) => Err(RequestError::TooLong),
        Err(ReadFrameError::Read(_)) => Err(RequestError::Gone),
        Err(e) => Err(RequestError::Malformed(e)),
    }
}

async fn request<S: Session>(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    session: Arc<S>,
    net: Arc<crate::server::net::NetSession>,
    permit_for_streams: tokio::sync::OwnedSemaphorePermit,
) {
    let malformed = VarInt::from_u32(code::MALFORMED_REQUEST);
    let Call {
        creds,
        request: req,
    } = match read_request(&mut recv).await {
        Ok(call) => call,
        Err(RequestError::TooLong) => {
            tracing::debug!("request exceeds the frame limit");
            let _ = recv.stop(malformed);
            let _ = send.reset(malformed);
            return;
        }
        Err(RequestError::Malformed(e)) => {
            tracing::debug!("malformed request: {}", ErrorChain(&e));
            let _ = send.reset(malformed);
            return;
        }
        Err(RequestError::Empty) => {
            tracing::debug!("malformed request: the stream ended before a frame");
            let _ = send.reset(malformed);
            return;
        }
        // The client gave up on this call, or the connection is gone:
        // nobody is waiting for an answer.
        Err(RequestError::Gone) => return,
    };
    let response = match req {
        Request::TcpConnect {
            addr,
            pure,
            options,
            bound,
        } => {
            // The stream outlives the request: it becomes the connection.
            drop(permit_for_streams);
            crate::server::net::tcp_connect(&net, addr, pure, &options, bound, send, recv).await;
            return;
        }
        Request::TcpBind {
            addr,
            reuse_addr,
            reuse_port,
            v6_only,
            options,
        } => net.bind(addr, reuse_addr, reuse_port, v6_only, &options),
        Request::TcpSetOption { target, option } => net.set_option(target, option),
        Request::TcpListen {
            listener,
            backlog,
            pure,
        } => net.listen(listener, backlog, pure),
        Request::TcpUnbind { listener } => net.unbind(listener),
        Request::UdpBind {
            addr,
            reuse_addr,
            reuse_port,
            v6_only,
            pure,
        } => {
            // The stream outlives the request: it becomes the socket.
            drop(permit_for_streams);
            let options = crate::server::udp::BindOptions {
                reuse_addr,
                reuse_port,
                v6_only,
                pure,
            };
            crate::server::udp::serve(addr, options, send, recv).await;
            return;
        }
        other => execute(session, creds, other).await,
    };
    if send.write_all(&frame::encode(&response)).await.is_ok() {
        let _ = send.finish();
    }
}

/// Runs a request: a metadata call that only looks at an inode runs right
/// here (a blocking-pool hand-off costs two thread switches, more than the
/// call itself); anything that may wait on data or on another process (an
/// open can wait on a FIFO, a read on a slow disk) runs on the blocking
/// pool so it cannot hold up the connection.
async fn execute<S: Session>(
    session: Arc<S>,
    caller: Option<Credentials>,
    req: Request,
) -> Response {
    if runs_inline(&req) {
        let run = || session.execute(caller.as_ref(), req);
        return std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).unwrap_or_else(|_| {
            tracing::error!("request handler panicked");
            Err(Errno::EIO)
        });
    }
    match tokio::task::spawn_blocking(move || session.execute(caller.as_ref(), req)).await {
        Ok(response) => response,
        Err(e) => {
            // A bug in the executor must fail one call, not the server.
            tracing::error!("request handler failed: {e}");
            Err(Errno::EIO)
        }
    }
}
