//! The server's side: an endpoint that accepts only authorized clients, and
//! [`serve`], which gives every connection its own [`Session`].
//!
//! Owns the accept loop, the handshake and the mapping of a stream to one
//! request. A resumed connection (a client's ticket, the `zerortt` layer)
//! is served from its 0-RTT data on, before its TLS handshake completes:
//! only requests that may run twice run before it does. Must not execute requests itself, nor name the server's
//! families: a [`Session`] does, the stream requests (`TcpConnect`,
//! `UdpBind`) included.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use quinn::VarInt;
use quinn::crypto::rustls::QuicServerConfig;
use rustls::pki_types::CertificateDer;
use tokio::sync::Semaphore;

use super::identity::{Fingerprint, Identity};
use super::kept::{Ended, Holder, Sessions};
use super::replies::{Answer, Begin, ReplyBook};
use super::stream::{ReadFrameError, read_frame};
use super::trust::{ClientVerifier, LiveClients};
use super::{ErrorChain, Liveness, TransportError, code, provider, transport_config};
use crate::errno::Errno;
use crate::proto::{
    ALPN, Call, Credentials, Hello, HelloVersion, Once, PROTOCOL_VERSION, Request, Response,
    SessionToken, Welcome, frame,
};

/// What a connection's requests run against. One per connection; dropped
/// (closing whatever it holds) when the connection ends and its last
/// request has finished.
pub trait Session: Send + Sync + 'static {
    /// Runs one request with the rights of `caller`, as far as the session
    /// allows. May block: it is called on a blocking thread, unless
    /// [`runs_inline`] says the request is quick.
    fn execute(&self, caller: Option<&Credentials>, req: Request) -> Response;

    /// Takes over a request whose stream outlives it ([`keeps_stream`]:
    /// the stream becomes a TCP connection or a UDP socket): answers on
    /// `send`, then carries what follows until the stream is done. It no
    /// longer counts against [`MAX_EXECUTING_PER_CONNECTION`]. A session
    /// without sockets refuses it with `EINVAL`, as a request it cannot run.
    fn serve_stream(
        &self,
        req: Request,
        mut send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> impl Future<Output = ()> + Send {
        async move {
            drop((req, recv));
            let refused: Response = Err(Errno::EINVAL);
            if send.write_all(&frame::encode(&refused)).await.is_ok() {
                let _ = send.finish();
            }
        }
    }

    /// The connection is gone: requests that wait (for a lock) stop
    /// waiting. Requests already running still finish.
    fn close(&self) {}

    /// The connection was lost and the session is kept for its client to
    /// take up again ([`super::kept`]): waits end as at [`Session::close`],
    /// and what cannot outlive the connection (sockets, whose bytes
    /// travelled on it) goes now.
    fn park(&self) {
        self.close();
    }

    /// The client took the session up again on the connection of `peer`:
    /// waits work again, and sockets' streams go to the new connection.
    fn resume(&self, _peer: &Peer) {}
}

/// Why a session could not be opened; sent to the client as the close reason.
pub type SessionError = Box<dyn std::error::Error + Send + Sync>;

/// The authenticated client of a connection.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub fingerprint: Fingerprint,
    /// The connection itself, for a session that opens streams to the
    /// client (a remote listener's incoming connections).
    pub connection: quinn::Connection,
}

/// How many requests of one connection execute at once. More streams may be
/// open (see [`super::allowance`]); they wait in QUIC's
/// buffers, so one client cannot take every blocking thread.
pub const MAX_EXECUTING_PER_CONNECTION: usize = 256;

/// How long a client has to send `Hello` after the TLS handshake.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// How many resumable TLS sessions the server remembers (each a ticket it
/// gave a client, with that client's certificate): a bound on the memory
/// of clients that never come back. The oldest is forgotten first.
const RESUMABLE_SESSIONS: usize = 1024;

/// How many tickets a client gets per connection; each resumes once, and
/// each attempt to connect takes one, even one that never reaches the
/// server (a client connecting again while the server is away).
const TICKETS_PER_CONNECTION: usize = 4;

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
    let verifier = ClientVerifier::new(clients.into(), provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TransportError::TlsConfig)?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_single_cert(vec![identity.cert_der().clone()], identity.key_der())
        .map_err(TransportError::TlsConfig)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // Tickets let a returning client resume and send its `Hello` in 0-RTT
    // (the `zerortt` layer). They live only in this process's memory, so
    // a restarted server refuses them (a full handshake follows), and each
    // is taken out when used, so a replayed 0-RTT flight finds none. A
    // resumed handshake skips the client verifier: `connection` checks the
    // certificate the ticket carries against the authorized clients.
    tls.session_storage = rustls::server::ServerSessionMemoryCache::new(RESUMABLE_SESSIONS);
    tls.send_tls13_tickets = TICKETS_PER_CONNECTION;
    // quinn accepts 0-RTT only with exactly this value (QUIC has its own
    // flow control for early data).
    tls.max_early_data_size = u32::MAX;
    let quic = QuicServerConfig::try_from(tls).map_err(TransportError::QuicTlsConfig)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(transport_config(liveness));
    // A client whose address or port changes (Wi-Fi to wired, a NAT
    // rebinding, a VPN coming up) keeps its connection: QUIC validates the
    // new path and moves the connection over.
    config.migration(true);
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(TransportError::NoRuntime);
    }
    super::socket::endpoint(listen, Some(config)).map_err(|error| TransportError::Bind {
        addr: listen,
        error,
    })
}

/// Accepts connections on `endpoint` until `shutdown` completes, then
/// closes every connection and returns. `make_session` opens the session of
/// each authenticated connection; `read_only` is announced in the `Welcome`.
/// `clients` is the list the endpoint was made with: a resumed session
/// (which skips the endpoint's verifier) is checked against it.
pub async fn serve<F, S>(
    endpoint: quinn::Endpoint,
    read_only: bool,
    clients: impl Into<LiveClients>,
    make_session: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(&Peer) -> Result<S, SessionError> + Send + Sync + 'static,
    S: Session,
{
    serve_live(endpoint, read_only, clients.into(), make_session, shutdown).await;
}

/// The close reason a client removed from the authorized clients gets.
pub const REVOKED_REASON: &str =
    "this client was removed from the server's authorized clients file";

/// [`serve`], and the live sessions of a client removed from `clients`
/// (the list the endpoint checks, which may change while it runs) end, with
/// [`REVOKED_REASON`].
pub async fn serve_live<F, S>(
    endpoint: quinn::Endpoint,
    read_only: bool,
    clients: LiveClients,
    make_session: F,
    shutdown: impl Future<Output = ()>,
) where
    F: Fn(&Peer) -> Result<S, SessionError> + Send + Sync + 'static,
    S: Session,
{
    let make_session = Arc::new(make_session);
    let sessions: Registry<S> = Arc::default();
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
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let serving = Serving {
                read_only,
                clients,
                sessions,
            };
            connection(incoming, serving, make_session.as_ref()).await;
        });
    }
    for session in lock(&sessions).drain() {
        session.close();
    }
    endpoint.close(VarInt::from_u32(code::SHUTDOWN), b"server shutting down");
    let _ = tokio::time::timeout(Duration::from_secs(2), endpoint.wait_idle()).await;
}

fn peer_fingerprint(conn: &quinn::Connection) -> Option<Fingerprint> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    chain.first().map(|cert| Fingerprint::of_der(cert.as_ref()))
}

/// Every session of one server, by token, with the connection holding
/// each (see [`super::kept`]).
type Registry<S> = Arc<std::sync::Mutex<Sessions<Served<S>, quinn::Connection>>>;

fn lock<S>(
    sessions: &Registry<S>,
) -> std::sync::MutexGuard<'_, Sessions<Served<S>, quinn::Connection>> {
    sessions
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What every connection of one server shares.
struct Serving<S> {
    read_only: bool,
    clients: LiveClients,
    sessions: Registry<S>,
}

/// A session, and its record of the numbered calls it ran
/// ([`super::replies`]): both outlive a connection when the session is
/// kept.
struct Served<S> {
    session: S,
    replies: std::sync::Mutex<ReplyBook>,
    /// Woken whenever a numbered call finishes, for a copy of it sent
    /// again meanwhile.
    answered: tokio::sync::Notify,
}

impl<S> Served<S> {
    fn new(session: S) -> Self {
        Self {
            session,
            replies: std::sync::Mutex::default(),
            answered: tokio::sync::Notify::new(),
        }
    }

    fn replies(&self) -> std::sync::MutexGuard<'_, ReplyBook> {
        self.replies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl<S: Session> Session for Served<S> {
    fn execute(&self, caller: Option<&Credentials>, req: Request) -> Response {
        self.session.execute(caller, req)
    }

    fn serve_stream(
        &self,
        req: Request,
        send: quinn::SendStream,
        recv: quinn::RecvStream,
    ) -> impl Future<Output = ()> + Send {
        self.session.serve_stream(req, send, recv)
    }

    fn close(&self) {
        self.session.close();
    }

    fn park(&self) {
        self.session.park();
    }

    fn resume(&self, peer: &Peer) {
        self.session.resume(peer);
    }
}

/// A connection's session, as the `Hello`/`Welcome` exchange gave it.
struct Opened<S> {
    session: Arc<Served<S>>,
    token: SessionToken,
    holder: Holder,
}

async fn connection<F, S>(incoming: quinn::Incoming, serving: Serving<S>, make_session: &F)
where
    F: Fn(&Peer) -> Result<S, SessionError>,
    S: Session,
{
    let Some((peer, mut handshake)) = authenticated_peer(incoming, &serving.clients).await else {
        return;
    };
    let span = tracing::info_span!("conn", peer = %peer.addr, client = %peer.fingerprint);
    let Some(opened) = open_session(&peer, &mut handshake, &serving, make_session, &span).await
    else {
        return;
    };
    tracing::info!(parent: &span, early = !handshake.is_done(), "session open");
    let started = std::time::Instant::now();
    let clients = serving.clients.clone();
    let (requests, ended) = accept_requests(&peer, &opened.session, clients, handshake).await;
    tracing::info!(
        parent: &span,
        duration = %format_args!("{:.3}s", started.elapsed().as_secs_f64()),
        requests,
        "session ended: {}",
        ended.reason
    );
    end_connection(&serving.sessions, opened, ended.lost, &span);
}

/// A connection ended: its session ends, or (lost, and its client asked)
/// is kept for the client to take up again, or already went on with a
/// newer connection. A session drops once its last in-flight request has
/// finished.
fn end_connection<S: Session>(
    sessions: &Registry<S>,
    opened: Opened<S>,
    lost: bool,
    span: &tracing::Span,
) {
    let Opened { token, holder, .. } = opened;
    let mut registry = lock(sessions);
    let (ended, evicted) = registry.ended(&token, holder, lost, std::time::Instant::now());
    match ended {
        Ended::Close(session) => session.close(),
        Ended::Kept { session, until } => {
            // Under the registry's lock, so a client taking it up finds it
            // parked, never parked after it was resumed.
            session.park();
            let keep = until.saturating_duration_since(std::time::Instant::now());
            tracing::info!(
                parent: span,
                "session kept for {}s for the client to take up again",
                keep.as_secs()
            );
            let sessions = sessions.clone();
            let span = span.clone();
            tokio::spawn(async move {
                tokio::time::sleep_until(tokio::time::Instant::from_std(until)).await;
                let expired = lock(&sessions).expire(&token, holder, std::time::Instant::now());
                if let Some(session) = expired {
                    tracing::info!(parent: &span, "kept session ended: its client did not come back");
                    session.close();
                }
            });
        }
        Ended::Superseded => {}
    }
    drop(registry);
    for session in evicted {
        tracing::info!(parent: span, "kept session ended: its client keeps too many");
        session.close();
    }
}

/// Whether the client has completed its TLS handshake. Until then a
/// resumed connection's data may be a replay of another connection's 0-RTT
/// flight; a replay never completes the handshake.
#[derive(Debug, Clone)]
struct Handshake(tokio::sync::watch::Receiver<bool>);

impl Handshake {
    fn track(done: quinn::ZeroRttAccepted, conn: &quinn::Connection) -> Self {
        let (tell, told) = tokio::sync::watch::channel(false);
        let conn = conn.clone();
        tokio::spawn(async move {
            // Resolves when the handshake completes, or when the connection
            // fails first; its value says only whether 0-RTT was used.
            done.await;
            if conn.close_reason().is_none() {
                let _ = tell.send(true);
            }
        });
        Self(told)
    }

    /// A handshake already complete (`into_0rtt` never fails on the
    /// server; this keeps that case total).
    fn complete() -> Self {
        Self(tokio::sync::watch::channel(true).1)
    }

    fn is_done(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits for the handshake; `false` if the connection ended first.
    async fn done(&mut self) -> bool {
        self.0.wait_for(|done| *done).await.is_ok()
    }
}

/// The connection with its authorized client, as early as that is known:
/// a resumed session (0-RTT) knows its client from the ticket, before the
/// handshake completes; a full one once it completes. `None` if the
/// handshake failed, or the client is not (or no longer) authorized, or
/// (refused) brought no certificate.
async fn authenticated_peer(
    incoming: quinn::Incoming,
    clients: &LiveClients,
) -> Option<(Peer, Handshake)> {
    let connecting = match incoming.accept() {
        Ok(connecting) => connecting,
        Err(e) => {
            tracing::debug!("handshake failed: {e}");
            return None;
        }
    };
    // Always `Ok` on the server: the connection can send (0.5-RTT) and read
    // what the client sent in 0-RTT before the handshake completes.
    let (conn, mut handshake) = match connecting.into_0rtt() {
        Ok((conn, done)) => {
            let handshake = Handshake::track(done, &conn);
            (conn, handshake)
        }
        Err(connecting) => match connecting.await {
            Ok(conn) => (conn, Handshake::complete()),
            Err(e) => {
                tracing::debug!("handshake failed: {e}");
                return None;
            }
        },
    };
    // Before the handshake completes only a resumed session has a client
    // certificate (rustls restores it from the ticket). A full handshake
    // shows none until the client proved its key: wait for it, as before
    // 0-RTT.
    let fingerprint = match peer_fingerprint(&conn) {
        Some(fingerprint) => Some(fingerprint),
        None if handshake.done().await => peer_fingerprint(&conn),
        None => {
            tracing::debug!("handshake failed: {:?}", conn.close_reason());
            return None;
        }
    };
    // Mandatory client auth means a certificate is always there; refuse
    // rather than guess if it is not.
    let Some(fingerprint) = fingerprint else {
        conn.close(
            VarInt::from_u32(code::BAD_HANDSHAKE),
            b"no client certificate",
        );
        return None;
    };
    // The verifier checked a full handshake; a resumed one skipped it, and
    // the client may have been removed since its ticket was made.
    if !clients.contains(&fingerprint) {
        tracing::warn!(%fingerprint, "refused a client no longer in the authorized clients file (a resumed session)");
        refuse(
            &conn,
            &mut handshake,
            code::REVOKED,
            REVOKED_REASON.as_bytes(),
        )
        .await;
        return None;
    }
    let peer = Peer {
        addr: conn.remote_address(),
        fingerprint,
        connection: conn,
    };
    Some((peer, handshake))
}

/// Closes `conn` with `code` and `reason`, once the handshake is complete:
/// before that QUIC carries an application's close only as a generic
/// handshake failure, and the client could not say why it was refused.
async fn refuse(conn: &quinn::Connection, handshake: &mut Handshake, code: u32, reason: &[u8]) {
    handshake.done().await;
    conn.close(VarInt::from_u32(code), reason);
}

/// The `Hello`/`Welcome` exchange: a session for a client of this
/// protocol version, or `None` once the client was told why not.
async fn open_session<F, S>(
    peer: &Peer,
    handshake: &mut Handshake,
    serving: &Serving<S>,
    make_session: &F,
    span: &tracing::Span,
) -> Option<Opened<S>>
where
    F: Fn(&Peer) -> Result<S, SessionError>,
    S: Session,
{
    let conn = &peer.connection;
    let bad = |e: &(dyn std::error::Error + 'static)| {
        let reason = ErrorChain(e).to_string();
        tracing::info!(parent: span, "bad handshake: {reason}");
        reason
    };
    let (mut send, hello) = match read_hello(conn).await {
        Ok(Some(hello)) => hello,
        Ok(None) => return None,
        Err(e) => {
            let reason = bad(&e);
            refuse(conn, handshake, code::BAD_HANDSHAKE, reason.as_bytes()).await;
            return None;
        }
    };
    // The version first: a client of another version may send another
    // `Hello`, and must still be told the versions differ.
    let version = match frame::decode_frame::<HelloVersion>(&hello) {
        Ok(v) => v.version,
        Err(e) => {
            let reason = bad(&e);
            refuse(conn, handshake, code::BAD_HANDSHAKE, reason.as_bytes()).await;
            return None;
        }
    };
    if version != PROTOCOL_VERSION {
        tracing::info!(parent: span, client_version = version, "protocol version mismatch");
        let answer = Welcome::VersionMismatch {
            server_version: PROTOCOL_VERSION,
        };
        if send.write_all(&frame::encode(&answer)).await.is_ok() {
            let _ = send.finish();
            // Let the client read the answer and close; it knows the versions.
            let _ = tokio::time::timeout(HELLO_TIMEOUT, conn.closed()).await;
        }
        return None;
    }
    let hello = match frame::decode_frame::<Hello>(&hello) {
        Ok(hello) => hello,
        Err(e) => {
            let reason = bad(&e);
            refuse(conn, handshake, code::BAD_HANDSHAKE, reason.as_bytes()).await;
            return None;
        }
    };
    let keep = Duration::from_secs(hello.keep_secs.into());
    // Taking a session up supersedes its connection: never on the word of
    // 0-RTT data, which may be a replay, or an attempt its client already
    // gave up on (queued while the server was paused) whose handshake
    // never completes.
    if hello.resume.is_some() && !handshake.done().await {
        return None;
    }
    let taken_up = hello.resume.and_then(|token| {
        let mut registry = lock(&serving.sessions);
        let now = std::time::Instant::now();
        let up = registry.take_up(&token, &peer.fingerprint, keep, conn.clone(), now)?;
        // Under the registry's lock: see `end_connection`.
        up.session.resume(peer);
        Some((token, up))
    });
    let (opened, resumed) = if let Some((token, up)) = taken_up {
        if let Some(old) = up.superseded {
            old.close(
                VarInt::from_u32(code::SUPERSEDED),
                b"the client took the session up on a new connection",
            );
        }
        tracing::info!(parent: span, "session taken up again");
        let opened = Opened {
            session: up.session,
            token,
            holder: up.holder,
        };
        (opened, true)
    } else {
        let session = match make_session(peer) {
            Ok(session) => Arc::new(Served::new(session)),
            Err(e) => {
                tracing::warn!(parent: span, "cannot open session: {e}");
                let reason = e.to_string();
                refuse(conn, handshake, code::SESSION_FAILED, reason.as_bytes()).await;
                return None;
            }
        };
        let token = new_token()?;
        let holder = lock(&serving.sessions).open(
            token,
            session.clone(),
            peer.fingerprint,
            keep,
            conn.clone(),
        );
        let opened = Opened {
            session,
            token,
            holder,
        };
        (opened, false)
    };
    let welcome = Welcome::Accepted {
        version: PROTOCOL_VERSION,
        read_only: serving.read_only,
        session: opened.token,
        resumed,
    };
    if send.write_all(&frame::encode(&welcome)).await.is_err() {
        // Ended before it began: not kept.
        end_connection(&serving.sessions, opened, false, span);
        return None;
    }
    let _ = send.finish();
    Some(opened)
}

/// A new session's token: 128 random bits from the system's generator.
fn new_token() -> Option<SessionToken> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    match ring::rand::SystemRandom::new().fill(&mut bytes) {
        Ok(()) => Some(SessionToken(bytes)),
        Err(_) => {
            tracing::error!("no random bytes for a session token");
            None
        }
    }
}

/// Gives every stream the client opens to a [`request`] task, at most
/// [`MAX_EXECUTING_PER_CONNECTION`] at once, until the connection ends or
/// the client is removed from `clients`. Returns how many requests came,
/// and why it ended.
async fn accept_requests<S: Session>(
    peer: &Peer,
    session: &Arc<Served<S>>,
    clients: LiveClients,
    handshake: Handshake,
) -> (u64, ConnectionEnd) {
    let conn = &peer.connection;
    let mut requests: u64 = 0;
    let fingerprint = peer.fingerprint;
    let mut revoked = std::pin::pin!(async move { clients.removed(fingerprint).await });
    let executing = Arc::new(Semaphore::new(MAX_EXECUTING_PER_CONNECTION));
    let allowance = super::StreamAllowance::new(conn.clone());
    let ended = loop {
        // The semaphore is never closed, so acquiring cannot fail.
        let Ok(permit) = executing.clone().acquire_owned().await else {
            break ConnectionEnd::closed("the server stopped");
        };
        let accepted = tokio::select! {
            accepted = conn.accept_bi() => accepted,
            () = &mut revoked => {
                conn.close(VarInt::from_u32(code::REVOKED), REVOKED_REASON.as_bytes());
                break ConnectionEnd::closed("client removed from the authorized clients");
            }
        };
        let (send, recv) = match accepted {
            Ok(streams) => streams,
            Err(e) => break ConnectionEnd::of(&e),
        };
        requests += 1;
        let open = allowance.open();
        tokio::spawn(request(
            send,
            recv,
            session.clone(),
            permit,
            handshake.clone(),
            open,
        ));
    };
    (requests, ended)
}

/// Why a connection's requests ended.
struct ConnectionEnd {
    reason: String,
    /// Lost (silence past the idle timeout, a reset, a transport error),
    /// rather than closed by the client, the server or a newer connection.
    lost: bool,
}

impl ConnectionEnd {
    fn closed(reason: &str) -> Self {
        Self {
            reason: reason.to_owned(),
            lost: false,
        }
    }

    fn of(e: &quinn::ConnectionError) -> Self {
        use quinn::ConnectionError as E;
        let lost = match e {
            E::TimedOut | E::Reset | E::TransportError(_) | E::ConnectionClosed(_) => true,
            E::ApplicationClosed(_) | E::LocallyClosed | E::VersionMismatch | E::CidsExhausted => {
                false
            }
        };
        Self {
            reason: e.to_string(),
            lost,
        }
    }
}

/// Requests quick enough to run on the connection's task: metadata calls
/// that only look at an inode, and the bookkeeping of the connection's
/// sockets.
pub fn runs_inline(req: &Request) -> bool {
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
            | Request::TcpBind { .. }
            | Request::TcpSetOption { .. }
            | Request::TcpGetInfo { .. }
            | Request::TcpListen { .. }
            | Request::TcpUnbind { .. }
    )
}

/// Requests whose stream outlives them: after the answer it carries a TCP
/// connection's bytes (`TcpConnect`) or a UDP socket's datagrams
/// (`UdpBind`), so [`Session::serve_stream`] takes it.
pub fn keeps_stream(req: &Request) -> bool {
    matches!(req, Request::TcpConnect { .. } | Request::UdpBind { .. })
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
) -> Result<Option<(quinn::SendStream, Vec<u8>)>, HelloError> {
    let exchange = async {
        let Ok((send, mut recv)) = conn.accept_bi().await else {
            return Ok(None);
        };
        let hello = super::stream::read_whole_stream(&mut recv, HELLO_LIMIT).await?;
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
    session: Arc<Served<S>>,
    permit_for_streams: tokio::sync::OwnedSemaphorePermit,
    mut handshake: Handshake,
    // Counted against the connection's stream allowance for as long as
    // this task runs, which is the stream's life (a pump's included).
    _open: super::allowance::OpenStream,
) {
    let Some(Call {
        creds,
        request: req,
        once,
    }) = read_or_refuse(&mut send, &mut recv).await
    else {
        return;
    };
    // Replay safety: before the handshake completes this may be a replayed
    // 0-RTT flight; only a request that may run twice runs now.
    if !req.safe_before_handshake() && !handshake.done().await {
        // The handshake never completed: nobody is there to answer.
        return;
    }
    if keeps_stream(&req) {
        // The stream outlives the request: it becomes the connection or
        // the socket.
        drop(permit_for_streams);
        session.serve_stream(req, send, recv).await;
        return;
    }
    let answer = match once {
        Some(once) => execute_once(session, creds, req, once).await,
        None => Arc::new(frame::encode(&execute(session, creds, req).await)),
    };
    if send.write_all(&answer).await.is_ok() {
        let _ = send.finish();
    }
}

/// Runs numbered call `once` at most once in its session: a copy sent
/// again (after a lost connection) gets the first run's answer, waiting
/// for it if it is still running. The encoded answer.
async fn execute_once<S: Session>(
    session: Arc<Served<S>>,
    caller: Option<Credentials>,
    req: Request,
    once: Once,
) -> Answer {
    loop {
        // Armed before the book is read, so a finish in between wakes it.
        let answered = session.answered.notified();
        let mut answered = std::pin::pin!(answered);
        answered.as_mut().enable();
        let begin = session.replies().begin(once.id, once.acked_below);
        match begin {
            Begin::Run => break,
            Begin::Running => answered.await,
            Begin::Done(answer) => return answer,
            Begin::Forgotten => return Arc::new(frame::encode::<Response>(&Err(Errno::EIO))),
        }
    }
    let response = execute(session.clone(), caller, req).await;
    let answer: Answer = Arc::new(frame::encode(&response));
    session.replies().finish(once.id, answer.clone());
    session.answered.notify_waiters();
    answer
}

/// The stream's request; `None` once a stream without one was refused
/// (reset) or turned out abandoned.
async fn read_or_refuse(
    send: &mut quinn::SendStream,
    recv: &mut quinn::RecvStream,
) -> Option<Call> {
    let malformed = VarInt::from_u32(code::MALFORMED_REQUEST);
    match read_request(recv).await {
        Ok(call) => Some(call),
        Err(RequestError::TooLong) => {
            tracing::debug!("request exceeds the frame limit");
            let _ = recv.stop(malformed);
            let _ = send.reset(malformed);
            None
        }
        Err(RequestError::Malformed(e)) => {
            tracing::debug!("malformed request: {}", ErrorChain(&e));
            let _ = send.reset(malformed);
            None
        }
        Err(RequestError::Empty) => {
            tracing::debug!("malformed request: the stream ended before a frame");
            let _ = send.reset(malformed);
            None
        }
        // The client gave up on this call, or the connection is gone:
        // nobody is waiting for an answer.
        Err(RequestError::Gone) => None,
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
