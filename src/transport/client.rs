//! The client's side of a connection: [`Link`].
//!
//! Owns the connection, the calls on it and the mapping of quinn failures
//! to [`TransportError`]; setting a connection up (TLS, tickets, the
//! version handshake) is [`super::setup`]'s. Must not know what a request
//! means: the engine builds requests and reads replies.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use quinn::{ConnectionError, WriteError};

use super::identity::{Identity, SERVER_NAME};
use super::setup::{EarlyData, SetupContext, SetupFailure, Started, Tickets, client_config, start};
use super::stream::{ReadFrameError, read_frame, read_frame_within, read_sole_frame};
use super::trust::{Expectation, ServerTrust};
use super::{Liveness, Loss, MAX_STREAM_BYTES, StreamKind, TransportError, code};
use crate::proto::{
    Credentials, Hello, Incoming, Once, PROTOCOL_VERSION, Request, Response, SessionToken,
    SockAddr, frame,
};

/// A TCP connection made on the server: its addresses as the server sees
/// them, and the stream that carries its bytes.
#[derive(Debug)]
pub struct TcpStreams {
    pub local: SockAddr,
    pub peer: SockAddr,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

/// A UDP socket bound on the server: its address there, and its stream.
#[derive(Debug)]
pub struct UdpStreams {
    pub local: SockAddr,
    pub send: quinn::SendStream,
    pub recv: quinn::RecvStream,
}

/// What [`Link::open_udp`] gives: the streams, or the remote errno.
pub type UdpOutcome = Result<UdpStreams, crate::errno::Errno>;

/// What [`Link::open_tcp`] gives: the streams, or the remote errno.
pub type TcpOutcome = Result<TcpStreams, crate::errno::Errno>;

/// A live, authenticated connection to one rscq-server session.
///
/// Cheap to clone; all clones share the connection, and calls from any
/// number of tasks run concurrently, each on its own stream.
///
/// After a lost connection the link can be given a new one
/// ([`Link::dial_again`], [`Link::adopt`]): every clone then uses it.
///
/// A link can also stand for a remote that could not be connected at
/// start ([`Link::not_connected`]): every call on it fails at once, as on
/// a connection that is gone, and it is never connected again.
#[derive(Debug, Clone)]
pub struct Link {
    /// The connection, or why there never was one.
    pub(super) current: Arc<std::sync::RwLock<Result<Connected, String>>>,
    /// What connecting again needs (`None` for a link that never
    /// connected).
    pub(super) dial: Option<Arc<Dial>>,
    pub(super) liveness: Liveness,
    /// How many connections the link made, and how many of them resumed
    /// with 0-RTT (`--stats`).
    pub(super) made: Arc<Made>,
    /// The numbers of the program's calls, kept across connections.
    pub(super) numbers: Arc<CallNumbers>,
}

/// The numbers of a link's numbered calls, and those still waiting for
/// their answers (the smallest of which the server is told: it may forget
/// every answer below).
#[derive(Debug)]
pub(super) struct CallNumbers {
    next: std::sync::atomic::AtomicU64,
    waiting: std::sync::Mutex<std::collections::BTreeSet<u64>>,
}

impl Default for CallNumbers {
    fn default() -> Self {
        Self {
            next: std::sync::atomic::AtomicU64::new(1),
            waiting: std::sync::Mutex::default(),
        }
    }
}

impl CallNumbers {
    fn waiting(&self) -> std::sync::MutexGuard<'_, std::collections::BTreeSet<u64>> {
        self.waiting.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// One numbered call ([`Link::number_call`]); no longer waiting once
/// dropped (answered, or given up).
#[derive(Debug)]
pub struct NumberedCall {
    id: u64,
    numbers: Arc<CallNumbers>,
}

impl Drop for NumberedCall {
    fn drop(&mut self) {
        self.numbers.waiting().remove(&self.id);
    }
}

/// A link's count of connections, for `--stats`.
#[derive(Debug, Default)]
pub(super) struct Made {
    pub(super) connections: std::sync::atomic::AtomicU64,
    pub(super) resumed: std::sync::atomic::AtomicU64,
}

impl Made {
    pub(super) fn count(&self, resumed: bool) {
        use std::sync::atomic::Ordering::Relaxed;
        self.connections.fetch_add(1, Relaxed);
        if resumed {
            self.resumed.fetch_add(1, Relaxed);
        }
    }
}

/// One connection of a [`Link`].
#[derive(Debug)]
pub(super) struct Connected {
    /// Held so the endpoint's socket lives exactly as long as the connection.
    pub(super) endpoint: quinn::Endpoint,
    pub(super) conn: quinn::Connection,
    pub(super) read_only: bool,
    /// How many connections the link had before this one.
    pub(super) epoch: u64,
    /// The streams the server may open to this client (a remote
    /// listener's incoming connections), raised as they come.
    pub(super) incoming: Arc<super::StreamAllowance>,
    /// Whether it resumed a TLS session and its `Hello` went in 0-RTT.
    pub(super) resumed: bool,
    /// Its session on the server, to take up again after a loss.
    pub(super) session: SessionToken,
    /// Whether the server took up the session of the connection before
    /// (open files, directories and locks as they were), rather than
    /// opening a new one.
    pub(super) kept_session: bool,
}

/// Where and how a link connected, to connect again the same way.
#[derive(Clone)]
pub(super) struct Dial {
    pub(super) addr: SocketAddr,
    pub(super) identity: Identity,
    pub(super) trust: ServerTrust,
    pub(super) version: u32,
    /// The session tickets of this link's server, when 0-RTT is on.
    pub(super) tickets: Option<Arc<Tickets>>,
}

impl std::fmt::Debug for Dial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dial").field("addr", &self.addr).finish()
    }
}

/// How long `close` lets the endpoint run to put the close on the wire.
const CLOSE_FLUSH: Duration = Duration::from_millis(5);

/// The most an [`Incoming`] frame's body may hold.
const INCOMING_LIMIT: usize = 1024;

impl Link {
    /// Connects to the server at `addr`, authenticates both ways and runs the
    /// version handshake, within [`Liveness::connect_timeout`]. With
    /// [`ServerTrust::KnownServers`] a first connection records the
    /// server's certificate and says so on stderr.
    pub async fn connect(
        addr: SocketAddr,
        identity: &Identity,
        trust: &ServerTrust,
        liveness: Liveness,
    ) -> Result<Self, TransportError> {
        Self::connect_with(addr, identity, trust, liveness, EarlyData::Off).await
    }

    /// [`Link::connect`], and with [`EarlyData::Resume`] the link keeps the
    /// server's session tickets, so that connecting again after a lost
    /// connection resumes and sends its `Hello` in 0-RTT (one round trip
    /// instead of two).
    pub async fn connect_with(
        addr: SocketAddr,
        identity: &Identity,
        trust: &ServerTrust,
        liveness: Liveness,
        early: EarlyData,
    ) -> Result<Self, TransportError> {
        let (link, _) = Self::connect_asking(addr, identity, trust, liveness, early, &[]).await?;
        Ok(link)
    }

    /// [`Link::connect_with`], and `first` requests (rscq's own checks
    /// before the program starts) sent in the same flight as the `Hello`:
    /// they are answered right after the `Welcome`, at no round trip of
    /// their own. Their answers come in order (`None`: none came).
    pub async fn connect_asking(
        addr: SocketAddr,
        identity: &Identity,
        trust: &ServerTrust,
        liveness: Liveness,
        early: EarlyData,
        first: &[Request],
    ) -> Result<(Self, Vec<Option<Response>>), TransportError> {
        let tickets = (early == EarlyData::Resume).then(Arc::default);
        Self::connect_as(
            addr,
            identity,
            trust,
            liveness,
            PROTOCOL_VERSION,
            tickets,
            first,
        )
        .await
    }

    /// [`Link::connect_asking`] claiming protocol `version` (so tests can
    /// play an old or future client), resuming with `tickets` when given.
    pub(super) async fn connect_as(
        addr: SocketAddr,
        identity: &Identity,
        trust: &ServerTrust,
        liveness: Liveness,
        version: u32,
        tickets: Option<Arc<Tickets>>,
        first: &[Request],
    ) -> Result<(Self, Vec<Option<Response>>), TransportError> {
        let dial = Dial {
            addr,
            identity: identity.clone(),
            trust: trust.clone(),
            version,
            tickets,
        };
        Self::dial(dial, liveness, None, first).await
    }

    /// Connects as `dial` says, asking the server to take up session
    /// `resume` (an earlier connection's) if it still keeps it.
    pub(super) async fn dial(
        dial: Dial,
        liveness: Liveness,
        resume: Option<SessionToken>,
        first: &[Request],
    ) -> Result<(Self, Vec<Option<Response>>), TransportError> {
        let Dial {
            addr,
            ref identity,
            ref trust,
            version,
            ref tickets,
        } = dial;
        let expectation = Expectation::resolve(trust)?;
        let (config, presented) =
            client_config(tickets.as_deref(), &expectation, identity, liveness)?;

        let bind = if addr.is_ipv6() {
            SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0))
        } else {
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0))
        };
        let mut endpoint = super::socket::endpoint(bind, None).map_err(|error| {
            if tokio::runtime::Handle::try_current().is_err() {
                TransportError::NoRuntime
            } else {
                TransportError::Bind { addr: bind, error }
            }
        })?;
        endpoint.set_default_client_config(config);

        let ctx = SetupContext {
            addr,
            trust: trust.clone(),
            expectation,
            presented,
            client: identity.fingerprint(),
        };
        let connecting =
            endpoint
                .connect(addr, SERVER_NAME)
                .map_err(|e| TransportError::Connect {
                    addr,
                    reason: e.to_string(),
                })?;
        let hello = Hello {
            version,
            keep_secs: liveness.keep_session_secs(),
            resume,
        };
        let setup = start(connecting, &hello, first);
        // The handshake alone would wait a whole idle timeout for a server
        // that is not there.
        let limit = liveness.connect_timeout();
        let setup = async {
            tokio::time::timeout(limit, setup)
                .await
                .unwrap_or(Err(SetupFailure::Connection(ConnectionError::TimedOut)))
        };
        let Started {
            conn,
            welcomed,
            resumed,
            answers,
        } = match setup.await {
            Ok(done) => done,
            Err(failure) => {
                endpoint.close(quinn::VarInt::from_u32(code::CLOSED), b"");
                return Err(match failure {
                    SetupFailure::Connection(e) => ctx.explain(e, limit),
                    SetupFailure::Other(e) => e,
                });
            }
        };
        ctx.remember_first_use();
        let made = Arc::new(Made::default());
        made.count(resumed);
        let link = Self {
            current: Arc::new(std::sync::RwLock::new(Ok(Connected {
                endpoint,
                incoming: Arc::new(super::StreamAllowance::new(conn.clone())),
                conn,
                read_only: welcomed.read_only,
                epoch: 0,
                resumed,
                session: welcomed.session,
                kept_session: welcomed.kept,
            }))),
            dial: Some(Arc::new(dial)),
            liveness,
            made,
            numbers: Arc::default(),
        };
        Ok((link, answers))
    }

    /// A link to a remote that could not be connected at start, `why`
    /// (the failure, as said to the user): every call fails at once with
    /// [`Loss::NotConnected`], and [`Link::dial_again`] refuses too. With
    /// several remotes, the run goes on without this one.
    pub fn not_connected(why: String) -> Self {
        Self {
            current: Arc::new(std::sync::RwLock::new(Err(why))),
            dial: None,
            liveness: Liveness::default(),
            made: Arc::default(),
            numbers: Arc::default(),
        }
    }

    /// Why the link never had a connection, if it is a
    /// [`Link::not_connected`] one.
    pub fn start_failure(&self) -> Option<Loss> {
        match &*self.connected() {
            Ok(_) => None,
            Err(why) => Some(Loss::NotConnected(why.clone())),
        }
    }

    /// Sends one request on a stream of its own and waits for its response.
    /// A remote failure is an `Err(Errno)` inside the `Ok`; an `Err` here
    /// means the transport failed, and comes within the idle timeout
    /// ([`Liveness`]) of the server going away.
    pub async fn call(&self, req: &Request) -> Result<Response, TransportError> {
        self.call_as(None, req).await
    }

    /// As [`Link::call`], run on the server with the rights of `caller`
    /// (as far as the server's policy allows).
    pub async fn call_as(
        &self,
        caller: Option<&Credentials>,
        req: &Request,
    ) -> Result<Response, TransportError> {
        self.send_call(encode_call(caller, req)).await
    }

    /// A number for one of the program's calls ([`Link::call_numbered`]),
    /// counted as waiting for its answer until it is dropped.
    pub fn number_call(&self) -> NumberedCall {
        use std::sync::atomic::Ordering::Relaxed;
        let id = self.numbers.next.fetch_add(1, Relaxed);
        self.numbers.waiting().insert(id);
        NumberedCall {
            id,
            numbers: self.numbers.clone(),
        }
    }

    /// As [`Link::call_as`], numbered `call`: sent again under the same
    /// number on a new connection to a session the server kept, it runs
    /// at most once there (the server answers from its record).
    pub async fn call_numbered(
        &self,
        caller: Option<&Credentials>,
        req: &Request,
        call: &NumberedCall,
    ) -> Result<Response, TransportError> {
        let acked_below = self.numbers.waiting().first().copied().unwrap_or(call.id);
        let once = Once {
            id: call.id,
            acked_below,
        };
        self.send_call(encode_numbered_call(caller, req, Some(once)))
            .await
    }

    async fn send_call(&self, bytes: Vec<u8>) -> Result<Response, TransportError> {
        if bytes.len() > MAX_STREAM_BYTES {
            return Err(TransportError::RequestTooLarge(bytes.len()));
        }
        let rejected = quinn::VarInt::from_u32(code::MALFORMED_REQUEST);
        let (mut send, mut recv) = self.conn()?.open_bi().await.map_err(|e| self.lost(e))?;
        send.write_all(&bytes).await.map_err(|e| match e {
            WriteError::Stopped(c) if c == rejected => TransportError::RequestRejected,
            e => self.write_failed(StreamKind::Call, e),
        })?;
        // Only fails if the stream is already finished or reset, which the
        // successful write above rules out; a later reset shows in the read.
        let _ = send.finish();
        read_sole_frame::<Response>(&mut recv, MAX_STREAM_BYTES)
            .await
            .map_err(|e| match e.reset_code() {
                Some(c) if c == rejected => TransportError::RequestRejected,
                _ => self.read_failed(StreamKind::Call, e),
            })
    }

    /// The raw connection, for tests that misbehave on purpose.
    #[cfg(test)]
    pub(crate) fn connection(&self) -> quinn::Connection {
        self.conn().expect("a connected link")
    }

    /// Connects a TCP socket on the server to `addr`. On success the two
    /// streams carry the connection's bytes; a remote failure is the inner
    /// `Err(Errno)`.
    pub async fn open_tcp(
        &self,
        addr: SockAddr,
        pure: bool,
        options: Vec<crate::proto::SockOption>,
        bound: Option<u64>,
    ) -> Result<TcpOutcome, TransportError> {
        let (mut send, mut recv) = self.conn()?.open_bi().await.map_err(|e| self.lost(e))?;
        let request = Request::TcpConnect {
            addr,
            pure,
            options,
            bound,
        };
        let stream = StreamKind::TcpConnect;
        send.write_all(&encode_call(None, &request))
            .await
            .map_err(|e| self.write_failed(stream, e))?;
        // Only the answer: the connection's bytes follow it on the stream.
        let response = read_frame::<Response>(&mut recv)
            .await
            .map_err(|e| self.read_failed(stream, e))?
            .ok_or(TransportError::NoAnswer { stream })?;
        Ok(match response {
            Ok(crate::proto::Reply::TcpConnected { local, peer }) => Ok(TcpStreams {
                local,
                peer,
                send,
                recv,
            }),
            Ok(_) => Err(crate::errno::Errno::EIO),
            Err(e) => Err(e),
        })
    }

    /// Binds a UDP socket on the server (`Request::UdpBind`). On success the
    /// two streams carry the socket's `UdpOp`/`UdpEvent` frames; a remote
    /// failure is the inner `Err(Errno)`.
    pub async fn open_udp(&self, request: &Request) -> Result<UdpOutcome, TransportError> {
        let stream = StreamKind::UdpBind;
        let (mut send, mut recv) = self.conn()?.open_bi().await.map_err(|e| self.lost(e))?;
        send.write_all(&encode_call(None, request))
            .await
            .map_err(|e| self.write_failed(stream, e))?;
        let response = read_frame::<Response>(&mut recv)
            .await
            .map_err(|e| self.read_failed(stream, e))?
            .ok_or(TransportError::NoAnswer { stream })?;
        Ok(match response {
            Ok(crate::proto::Reply::UdpBound { local }) => Ok(UdpStreams { local, send, recv }),
            Ok(_) => Err(crate::errno::Errno::EIO),
            Err(e) => Err(e),
        })
    }

    /// Waits for the next connection a remote listener accepted: the server
    /// opens a stream for each, starting with an [`Incoming`] frame.
    pub async fn accept_incoming(
        &self,
    ) -> Result<(Incoming, quinn::SendStream, quinn::RecvStream), TransportError> {
        let stream = StreamKind::Incoming;
        let conn = self.conn()?;
        let (send, mut recv) = conn.accept_bi().await.map_err(|e| self.lost(e))?;
        if let Ok(connected) = self.connected().as_ref()
            && connected.conn.stable_id() == conn.stable_id()
        {
            // The incoming connection's pump is not followed from here:
            // count it for the connection's life.
            connected.incoming.count();
        }
        let incoming = read_frame_within::<Incoming>(&mut recv, INCOMING_LIMIT)
            .await
            .map_err(|e| self.read_failed(stream, e))?
            .ok_or(TransportError::NoAnswer { stream })?;
        Ok((incoming, send, recv))
    }

    /// How many connections the link made (the first and each one after a
    /// lost connection), and how many of them resumed with 0-RTT.
    pub fn connections(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (
            self.made.connections.load(Relaxed),
            self.made.resumed.load(Relaxed),
        )
    }

    /// Whether the current connection resumed a TLS session with 0-RTT.
    pub fn resumed(&self) -> bool {
        self.connected().as_ref().is_ok_and(|c| c.resumed)
    }

    /// Whether the server exports its tree read-only.
    pub fn read_only(&self) -> bool {
        self.connected().as_ref().is_ok_and(|c| c.read_only)
    }

    /// The server's address, while the link has a connection.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.conn().ok().map(|c| c.remote_address())
    }

    /// The connection's current round-trip estimate (zero without one).
    pub fn rtt(&self) -> Duration {
        self.conn().map_or(Duration::ZERO, |c| c.rtt())
    }

    /// Why the connection ended, once it has.
    pub fn close_reason(&self) -> Option<TransportError> {
        match self.conn() {
            Ok(conn) => conn.close_reason().map(|e| self.lost(e)),
            Err(never) => Some(never),
        }
    }

    /// Closes the connection (for every clone) and lets the close reach the
    /// wire, so the server drops the session promptly. In-flight
    /// calls fail with [`TransportError::ConnectionLost`].
    pub async fn close(&self) {
        let Ok(conn) = self.conn() else {
            return;
        };
        conn.close(quinn::VarInt::from_u32(code::CLOSED), b"client done");
        // Only long enough for the endpoint to send the close: waiting for
        // the connection to drain (`wait_idle`) takes three probe timeouts,
        // about a second on a 100 ms link, after the program has finished.
        // A lost close costs the server its idle timeout, nothing more.
        tokio::time::sleep(CLOSE_FLUSH).await;
    }
}

impl Link {
    /// The link's current connection, or why it never had one.
    pub(super) fn connected(&self) -> std::sync::RwLockReadGuard<'_, Result<Connected, String>> {
        self.current.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current connection; a link that never connected fails as one
    /// whose connection is gone.
    pub(super) fn conn(&self) -> Result<quinn::Connection, TransportError> {
        match &*self.connected() {
            Ok(c) => Ok(c.conn.clone()),
            Err(why) => Err(TransportError::ConnectionLost(Loss::NotConnected(
                why.clone(),
            ))),
        }
    }

    /// The connection's loss in the user's terms.
    pub(super) fn lost(&self, e: ConnectionError) -> TransportError {
        match e {
            ConnectionError::TimedOut => {
                TransportError::ConnectionLost(Loss::Silent(self.liveness.idle_timeout()))
            }
            ConnectionError::ApplicationClosed(close)
                if close.error_code == quinn::VarInt::from_u32(code::SHUTDOWN) =>
            {
                TransportError::ConnectionLost(Loss::ServerShutdown)
            }
            other => TransportError::ConnectionLost(Loss::Connection(other)),
        }
    }

    /// A failed write on a stream of `stream`'s kind: the connection's loss,
    /// or the stream's own failure.
    fn write_failed(&self, stream: StreamKind, e: WriteError) -> TransportError {
        match e {
            WriteError::ConnectionLost(c) => self.lost(c),
            source => TransportError::Send { stream, source },
        }
    }

    /// A failed frame read on a stream of `stream`'s kind: the connection's
    /// loss, or the stream's own failure.
    fn read_failed(&self, stream: StreamKind, e: ReadFrameError) -> TransportError {
        match e.connection_lost() {
            Some(c) => self.lost(c.clone()),
            None => TransportError::Receive { stream, source: e },
        }
    }
}

/// The first frame of a request stream.
pub(super) fn encode_call(caller: Option<&Credentials>, request: &Request) -> Vec<u8> {
    encode_numbered_call(caller, request, None)
}

/// [`encode_call`] of a call numbered `once`.
pub(super) fn encode_numbered_call(
    caller: Option<&Credentials>,
    request: &Request,
    once: Option<Once>,
) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct CallRef<'a> {
        creds: Option<&'a Credentials>,
        request: &'a Request,
        once: Option<Once>,
    }
    // Encoded by reference; postcard writes the same bytes as for `Call`.
    frame::encode(&CallRef {
        creds: caller,
        request,
        once,
    })
}

#[cfg(test)]
mod call_tests {
    use super::*;
    use crate::proto::{Call, RemotePath};

    #[test]
    fn a_call_encoded_by_reference_decodes_as_a_call() {
        let request = Request::Unlink {
            path: RemotePath(b"/a".to_vec()),
        };
        let creds = Credentials {
            ruid: 0,
            rgid: 0,
            fsuid: 65534,
            fsgid: 65534,
            groups: vec![4, 27],
            umask: 0o027,
            cap_effective: 0,
            cap_permitted: u64::MAX >> 23,
        };
        let once = Once {
            id: 7,
            acked_below: 3,
        };
        for caller in [None, Some(&creds)] {
            let bytes = encode_call(caller, &request);
            let call: Call = frame::decode_frame(&bytes).expect("decodes");
            assert_eq!(call.creds.as_ref(), caller);
            assert_eq!(call.request, request);
            assert_eq!(call.once, None);
            let bytes = encode_numbered_call(caller, &request, Some(once));
            let call: Call = frame::decode_frame(&bytes).expect("decodes");
            assert_eq!(call.once, Some(once));
        }
    }
}
