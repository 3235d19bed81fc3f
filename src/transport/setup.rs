//! Setting up a client connection: the TLS configuration, the session
//! tickets of the `zerortt` layer, the QUIC handshake with the version
//! `Hello` (and the requests that ride with it), and a failed set-up
//! explained in the user's terms.
//!
//! Must not keep a connection: [`super::client::Link`] does.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use quinn::crypto::rustls::QuicClientConfig;
use quinn::{ConnectionError, TransportErrorCode, WriteError};

use super::client::encode_call;
use super::identity::{Fingerprint, Identity};
use super::stream::{ReadFrameError, read_sole_frame};
use super::trust::{Expectation, ServerTrust, ServerVerifier, record_known_server};
use super::{
    Liveness, Loss, MAX_STREAM_BYTES, StreamKind, TransportError, code, provider, transport_config,
};
use crate::proto::{ALPN, Hello, Request, Response, SessionToken, Welcome, frame};

/// Where a verifier records the certificate the server presented, so a
/// refusal can be explained.
pub(super) type Presented = Arc<Mutex<Option<Fingerprint>>>;

/// Whether connecting may resume an earlier TLS session of the same link
/// and send the `Hello` in 0-RTT (the `zerortt` layer).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyData {
    /// Every connection is a full handshake (`--pure`, or the layer off).
    Off,
    /// Keep the server's tickets in memory; connecting again resumes.
    Resume,
}

/// The TLS client configuration of one link's server, kept so that its
/// session tickets are used again: rustls resumes a session only with the
/// configuration (verifier and client certificate) that made it. Tickets
/// live in this process's memory only: rustls 0.23 cannot write one out.
/// A ticket is kept only for the certificate the link pins (`--server-cert`
/// or its `known_servers` line); when that expectation changes, the old
/// configuration and its tickets are dropped.
#[derive(Default)]
pub(super) struct Tickets {
    kept: Mutex<Option<KeptConfig>>,
}

struct KeptConfig {
    /// The pinned server certificate the tickets came from.
    server: Fingerprint,
    config: quinn::ClientConfig,
    presented: Presented,
}

/// How many tickets of a server one link keeps (rustls keeps at most 8 per
/// server; the server hands out 4 per connection, each usable once).
const TICKETS_KEPT: usize = 8;

impl Tickets {
    /// The configuration to connect with under `expectation`: the kept one
    /// (with its tickets) if it was made for the same pinned certificate,
    /// else a new one, kept when the certificate is pinned.
    fn config(
        &self,
        expectation: &Expectation,
        identity: &Identity,
        liveness: Liveness,
    ) -> Result<(quinn::ClientConfig, Presented), TransportError> {
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        let pinned = expectation.pinned();
        if let Some(k) = kept.as_ref().filter(|k| Some(k.server) == pinned) {
            *k.presented.lock().unwrap_or_else(PoisonError::into_inner) = None;
            return Ok((k.config.clone(), k.presented.clone()));
        }
        let (verifier, presented) = ServerVerifier::new(expectation.clone(), provider());
        let config = client_tls(identity, verifier, liveness, EarlyData::Resume)?;
        *kept = pinned.map(|server| KeptConfig {
            server,
            config: config.clone(),
            presented: presented.clone(),
        });
        Ok((config, presented))
    }
}

/// The TLS configuration to connect with under `expectation`, and where
/// its verifier records the certificate the server presented: with
/// `tickets` (the `zerortt` layer) the link's kept one, else a new one that
/// never resumes.
pub(super) fn client_config(
    tickets: Option<&Tickets>,
    expectation: &Expectation,
    identity: &Identity,
    liveness: Liveness,
) -> Result<(quinn::ClientConfig, Presented), TransportError> {
    if let Some(tickets) = tickets {
        return tickets.config(expectation, identity, liveness);
    }
    let (verifier, presented) = ServerVerifier::new(expectation.clone(), provider());
    let config = client_tls(identity, verifier, liveness, EarlyData::Off)?;
    Ok((config, presented))
}

/// How long the server may take to answer `Hello` once QUIC is up: this
/// catches a live peer that is not an rscq-server.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);

/// The most the `Welcome` stream may hold.
const HANDSHAKE_LIMIT: usize = 1024;

/// TLS alerts (RFC 8446 §6.2) a server sends when it refuses our certificate.
const ALERT_BAD_CERTIFICATE: u8 = 42;
const ALERT_ACCESS_DENIED: u8 = 49;
const ALERT_CERTIFICATE_REQUIRED: u8 = 116;
const ALERT_NO_APPLICATION_PROTOCOL: u8 = 120;

/// What the error mapping of connection set-up needs to know.
pub(super) struct SetupContext {
    pub(super) addr: SocketAddr,
    pub(super) trust: ServerTrust,
    pub(super) expectation: Expectation,
    pub(super) presented: Presented,
    pub(super) client: Fingerprint,
}

impl SetupContext {
    fn presented(&self) -> Option<Fingerprint> {
        *self
            .presented
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Explains a failed connection set-up in the user's terms.
    pub(super) fn explain(&self, err: ConnectionError, waited: Duration) -> TransportError {
        let addr = self.addr;
        match err {
            // Our own verifier refused the server: say exactly why.
            ConnectionError::TransportError(ref te) if is_crypto(te.code) => {
                match (self.presented(), &self.expectation) {
                    (Some(presented), Expectation::Pinned(expected)) if presented != *expected => {
                        TransportError::ServerCertificateMismatch {
                            addr,
                            expected: *expected,
                            presented,
                        }
                    }
                    (
                        Some(presented),
                        Expectation::Known {
                            file,
                            host_label,
                            entry: Some(entry),
                        },
                    ) if presented != entry.fingerprint => {
                        TransportError::ServerCertificateChanged {
                            host_label: host_label.clone(),
                            file: file.clone(),
                            line: entry.line,
                            expected: entry.fingerprint,
                            presented,
                        }
                    }
                    _ => TransportError::Handshake {
                        addr,
                        reason: te.to_string(),
                    },
                }
            }
            // The server refused us during the handshake.
            ConnectionError::ConnectionClosed(ref close) => {
                let refused = [
                    ALERT_ACCESS_DENIED,
                    ALERT_BAD_CERTIFICATE,
                    ALERT_CERTIFICATE_REQUIRED,
                ]
                .into_iter()
                .any(|alert| close.error_code == TransportErrorCode::crypto(alert));
                if refused {
                    TransportError::NotAuthorized {
                        addr,
                        fingerprint: self.client,
                    }
                } else if close.error_code
                    == TransportErrorCode::crypto(ALERT_NO_APPLICATION_PROTOCOL)
                {
                    TransportError::Handshake {
                        addr,
                        reason: format!(
                            "the server does not speak {}",
                            String::from_utf8_lossy(ALPN)
                        ),
                    }
                } else {
                    TransportError::Handshake {
                        addr,
                        reason: close.to_string(),
                    }
                }
            }
            // A resumed session skips the server's verifier; the server
            // then refuses a client it no longer lists this way.
            ConnectionError::ApplicationClosed(ref close)
                if close.error_code == quinn::VarInt::from_u32(code::REVOKED) =>
            {
                TransportError::NotAuthorized {
                    addr,
                    fingerprint: self.client,
                }
            }
            ConnectionError::ApplicationClosed(ref close)
                if close.error_code == quinn::VarInt::from_u32(code::SESSION_FAILED) =>
            {
                TransportError::SessionRefused {
                    reason: String::from_utf8_lossy(&close.reason).into_owned(),
                }
            }
            ConnectionError::TimedOut => TransportError::Unreachable { addr, waited },
            other => TransportError::ConnectionLost(Loss::Connection(other)),
        }
    }
}

fn is_crypto(code: TransportErrorCode) -> bool {
    (0x100..0x200).contains(&u64::from(code))
}

/// A set-up step failed on a stream; only the connection-level cause, if
/// any, is worth explaining.
pub(super) enum SetupFailure {
    Connection(ConnectionError),
    Other(TransportError),
}

impl From<ConnectionError> for SetupFailure {
    fn from(e: ConnectionError) -> Self {
        Self::Connection(e)
    }
}

impl From<WriteError> for SetupFailure {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::ConnectionLost(c) => Self::Connection(c),
            source => Self::Other(TransportError::Send {
                stream: StreamKind::Handshake,
                source,
            }),
        }
    }
}

impl From<ReadFrameError> for SetupFailure {
    fn from(e: ReadFrameError) -> Self {
        match e.connection_lost() {
            Some(c) => Self::Connection(c.clone()),
            None => Self::Other(TransportError::Receive {
                stream: StreamKind::Handshake,
                source: e,
            }),
        }
    }
}

fn client_tls(
    identity: &Identity,
    verifier: ServerVerifier,
    liveness: Liveness,
    early: EarlyData,
) -> Result<quinn::ClientConfig, TransportError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TransportError::TlsConfig)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(vec![identity.cert_der().clone()], identity.key_der())
        .map_err(TransportError::TlsConfig)?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    match early {
        // A resumed session skips the certificate verifier: it is proved
        // by a ticket that only a verified server gave, and tickets are
        // kept per pinned certificate ([`Tickets`]).
        EarlyData::Resume => {
            tls.resumption = rustls::client::Resumption::in_memory_sessions(TICKETS_KEPT);
            tls.enable_early_data = true;
        }
        EarlyData::Off => tls.resumption = rustls::client::Resumption::disabled(),
    }
    let quic = QuicClientConfig::try_from(tls).map_err(TransportError::QuicTlsConfig)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(transport_config(liveness));
    Ok(config)
}

impl SetupContext {
    /// Trust on first use: the handshake has proved the server holds the
    /// key of the certificate it showed, so now record it.
    pub(super) fn remember_first_use(&self) {
        let ServerTrust::KnownServers { file, host_label } = &self.trust else {
            return;
        };
        if !matches!(self.expectation, Expectation::Known { entry: None, .. }) {
            return;
        }
        let Some(fingerprint) = self.presented() else {
            return;
        };
        match record_known_server(file, host_label, fingerprint) {
            Ok(()) => eprintln!(
                "rscq: first connection to {host_label}: trusting its certificate {fingerprint} (saved in {})",
                file.display()
            ),
            // The connection itself is fine; only the memory of it failed.
            Err(e) => eprintln!(
                "rscq: warning: first connection to {host_label} (certificate {fingerprint}) could not be remembered: {e}"
            ),
        }
    }
}

/// What [`start`] gives: the connection, whether the server exports
/// read-only, whether the connection resumed with 0-RTT, and the answers
/// to the requests sent with the `Hello`.
pub(super) struct Started {
    pub(super) conn: quinn::Connection,
    pub(super) welcomed: Welcomed,
    pub(super) resumed: bool,
    pub(super) answers: Vec<Option<Response>>,
}

/// What the server's `Welcome` said.
#[derive(Debug, Clone, Copy)]
pub(super) struct Welcomed {
    pub(super) read_only: bool,
    /// The connection's session.
    pub(super) session: SessionToken,
    /// Whether it is the session the `Hello` asked to take up again.
    pub(super) kept: bool,
}

/// The QUIC and TLS handshake and the version handshake, with `first`
/// requests sent right behind the `Hello` (see [`exchange`]). With a ticket
/// the `Hello` and `first` leave in the first flight (0-RTT) and the
/// `Welcome` comes with the server's handshake, one round trip in all; a
/// server that refuses the ticket or the early data (a restarted one)
/// makes it a full handshake, after which all of it is sent again.
pub(super) async fn start(
    connecting: quinn::Connecting,
    hello: &Hello,
    first: &[Request],
) -> Result<Started, SetupFailure> {
    let started = |conn, (welcomed, answers), resumed| Started {
        conn,
        welcomed,
        resumed,
        answers,
    };
    match connecting.into_0rtt() {
        Ok((conn, accepted)) => match exchange(&conn, hello, first).await {
            Ok(done) => Ok(started(conn, done, true)),
            Err(early) => {
                // `accepted` resolves once the handshake is done: `false`
                // if the server refused the early data (its streams are
                // gone) or the handshake failed (the second exchange then
                // says why).
                if accepted.await {
                    return Err(early);
                }
                let done = exchange(&conn, hello, first).await?;
                Ok(started(conn, done, false))
            }
        },
        Err(connecting) => {
            let conn = connecting.await?;
            let done = exchange(&conn, hello, first).await?;
            Ok(started(conn, done, false))
        }
    }
}

/// The version handshake on the first stream, and `first` requests each on
/// a stream of its own opened right after it: they travel in the same
/// flight, and the server, which takes streams in order, answers them
/// right after the `Welcome`, so they cost no round trip of their own.
/// Returns `read_only` and each request's answer (`None`: none came; a
/// lost connection is the run's to report). Before the client's handshake
/// is complete the server runs only requests that may run twice
/// (`Request::safe_before_handshake`), and holds the others until then.
async fn exchange(
    conn: &quinn::Connection,
    hello: &Hello,
    first: &[Request],
) -> Result<(Welcomed, Vec<Option<Response>>), SetupFailure> {
    let (mut send, mut recv) = conn.open_bi().await?;
    send.write_all(&frame::encode(hello)).await?;
    let _ = send.finish();
    let mut asked = Vec::with_capacity(first.len());
    for request in first {
        asked.push(ask(conn, request).await);
    }
    let welcomed = welcome(conn, &mut recv, hello.version).await?;
    let mut answers = Vec::with_capacity(asked.len());
    for stream in asked {
        answers.push(match stream {
            Some(mut recv) => read_sole_frame::<Response>(&mut recv, MAX_STREAM_BYTES)
                .await
                .ok(),
            None => None,
        });
    }
    Ok((welcomed, answers))
}

/// Sends `request` on a stream of its own; the stream to read its answer
/// from, or `None` if it could not be sent.
async fn ask(conn: &quinn::Connection, request: &Request) -> Option<quinn::RecvStream> {
    let (mut send, recv) = conn.open_bi().await.ok()?;
    send.write_all(&encode_call(None, request)).await.ok()?;
    let _ = send.finish();
    Some(recv)
}

/// Reads the `Welcome`.
async fn welcome(
    conn: &quinn::Connection,
    recv: &mut quinn::RecvStream,
    version: u32,
) -> Result<Welcomed, SetupFailure> {
    let answer = read_sole_frame::<Welcome>(recv, HANDSHAKE_LIMIT);
    let welcome = match tokio::time::timeout(WELCOME_TIMEOUT, answer).await {
        Ok(read) => read?,
        Err(_) => {
            return Err(SetupFailure::Other(TransportError::NoWelcome {
                secs: WELCOME_TIMEOUT.as_secs(),
            }));
        }
    };
    match welcome {
        Welcome::Accepted {
            version: server,
            read_only,
            session,
            resumed,
        } if server == version => Ok(Welcomed {
            read_only,
            session,
            kept: resumed,
        }),
        Welcome::Accepted {
            version: server, ..
        }
        | Welcome::VersionMismatch {
            server_version: server,
        } => {
            conn.close(quinn::VarInt::from_u32(code::CLOSED), b"version mismatch");
            Err(SetupFailure::Other(TransportError::VersionMismatch {
                client: version,
                server,
            }))
        }
    }
}
