//! QUIC transport: TLS identities, pinning, client link and server listener.
//!
//! One QUIC connection per client process. The first bidirectional stream
//! carries the [`Hello`](crate::proto::Hello)/[`Welcome`](crate::proto::Welcome)
//! handshake; after it every request gets a stream of its own, which the
//! client finishes after one request frame and the server after one
//! response frame. Authentication is mutual TLS 1.3 with self-signed
//! certificates trusted by fingerprint (see [`trust`]). A link that
//! connects again may resume its TLS session and send the `Hello` in 0-RTT
//! ([`EarlyData`]); the server runs nothing on such early data that could
//! not safely run twice (`Request::safe_before_handshake`).
//!
//! Must not know what a request means: `client` builds them and a
//! [`Session`] (the server's) runs them; this module carries them, and
//! imports neither. Every frame read
//! from a stream goes through [`stream`].

pub mod allowance;
pub mod client;
pub mod embedded;
mod flow;
pub mod identity;
pub mod kept;
pub mod pump;
mod redial;
pub mod replies;
pub mod server;
mod setup;
pub mod socket;
pub mod stream;
pub mod trust;
pub mod urgent;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod zerortt_tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{DEFAULT_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT, MIN_IDLE_TIMEOUT};

pub use allowance::{INITIAL_STREAMS, MAX_CONCURRENT_STREAMS, StreamAllowance};
pub use client::Link;
pub use embedded::Embedded;
pub use identity::{Fingerprint, Identity, IdentityError};
pub use server::{Peer, Session, SessionError};
pub use setup::EarlyData;
pub use stream::{ReadFrameError, read_frame};
pub use trust::{AuthorizedClients, LiveClients, ServerTrust, TrustError};

/// How often each side sends a keep-alive, at most: often enough that a
/// few lost ones are survived, and NAT bindings stay open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// How long setting up a connection may take before the server counts as
/// unreachable, at most (a shorter idle timeout shortens it too): a server
/// that is not there should not cost a whole idle timeout to find out.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How a connection tells a stall from a dead peer: both sides of a
/// connection use the smaller of their two idle timeouts (QUIC's
/// `max_idle_timeout` negotiation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Liveness {
    /// Silence longer than this ends the connection; clamped to
    /// [`MIN_IDLE_TIMEOUT`]..=[`MAX_IDLE_TIMEOUT`].
    idle_timeout: Duration,
    /// How long the server is asked to keep a client's session after its
    /// connection is lost (the client's reconnect grace); zero: not at all.
    keep_session: Duration,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            keep_session: Duration::ZERO,
        }
    }
}

impl Liveness {
    /// `idle_timeout` clamped to the accepted range.
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            idle_timeout: idle_timeout.clamp(MIN_IDLE_TIMEOUT, MAX_IDLE_TIMEOUT),
            keep_session: Duration::ZERO,
        }
    }

    /// The same, asking the server to keep the session for `keep` after a
    /// lost connection, so that connecting again within it takes the
    /// session up with its files and locks (see [`kept`]).
    #[must_use]
    pub fn keeping_session(self, keep: Duration) -> Self {
        Self {
            keep_session: keep,
            ..self
        }
    }

    /// [`Liveness::keeping_session`]'s time, in whole seconds for the
    /// `Hello`.
    pub fn keep_session_secs(&self) -> u32 {
        u32::try_from(self.keep_session.as_secs()).unwrap_or(u32::MAX)
    }

    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }

    /// At most [`KEEP_ALIVE`], and at least three per idle timeout.
    pub fn keep_alive(&self) -> Duration {
        KEEP_ALIVE.min(self.idle_timeout / 3)
    }

    /// How long connection set-up may take: [`CONNECT_TIMEOUT`] or the idle
    /// timeout, whichever is shorter.
    pub fn connect_timeout(&self) -> Duration {
        CONNECT_TIMEOUT.min(self.idle_timeout)
    }
}

/// QUIC application error codes, for streams and connections.
pub mod code {
    /// Normal close.
    pub const CLOSED: u32 = 0;
    /// The request on a stream was not a valid frame; only that stream fails.
    pub const MALFORMED_REQUEST: u32 = 1;
    /// The connection handshake was not a valid `Hello`.
    pub const BAD_HANDSHAKE: u32 = 2;
    /// The server could not open a session (reason in the close frame).
    pub const SESSION_FAILED: u32 = 3;
    /// The server is shutting down.
    pub const SHUTDOWN: u32 = 4;
    /// The client was removed from the server's authorized clients.
    pub const REVOKED: u32 = 5;
    /// The client took this connection's session up on a new connection.
    pub const SUPERSEDED: u32 = 6;
}

/// Why an established connection ended, in the user's terms.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Loss {
    /// Nothing came from the server for the idle timeout.
    #[error("no answer from the server for {}s (--idle-timeout)", .0.as_secs_f32())]
    Silent(Duration),
    /// The server closed the connection because it is stopping.
    #[error("the server is shutting down")]
    ServerShutdown,
    /// rscq tried to connect again for the whole grace time, in vain.
    #[error(
        "could not connect again within {}s (--reconnect-grace){}",
        .grace.as_secs_f32(),
        .last.as_ref().map_or_else(String::new, |e| format!("; last attempt: {e}"))
    )]
    GraceOver {
        grace: Duration,
        last: Option<String>,
    },
    /// Connecting again was refused for a reason time does not change
    /// (the client removed, the certificate or protocol changed).
    #[error("cannot connect again: {0}")]
    Refused(String),
    /// The connection could not be made when the run started (with several
    /// remotes the run goes on without this one); it is not tried again.
    #[error("never connected: {0}")]
    NotConnected(String),
    /// Anything else quinn reports.
    #[error(transparent)]
    Connection(quinn::ConnectionError),
}

/// Every way connecting to or talking with a server can fail.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Trust(#[from] TrustError),
    #[error("invalid TLS configuration: {0}")]
    TlsConfig(#[from] rustls::Error),
    #[error("invalid TLS configuration for QUIC: {0}")]
    QuicTlsConfig(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
    #[error("no tokio runtime: the transport must be started from within one")]
    NoRuntime,
    #[error("cannot bind UDP socket on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot connect to {addr}: {reason}")]
    Connect { addr: SocketAddr, reason: String },
    #[error(
        "no answer from rscq-server at {addr} within {}s (is it running, and does UDP reach it?)",
        waited.as_secs_f32()
    )]
    Unreachable { addr: SocketAddr, waited: Duration },
    #[error(
        "server certificate mismatch: {addr} presented {presented}, but the pinned certificate is {expected}"
    )]
    ServerCertificateMismatch {
        addr: SocketAddr,
        expected: Fingerprint,
        presented: Fingerprint,
    },
    #[error(
        "WARNING: SERVER CERTIFICATE CHANGED for {host_label}! It presented {presented}, but {}:{line} records {expected}. Someone may be impersonating the server, or its certificate was regenerated. Refusing to connect; if the change is expected, remove line {line} of {}.",
        file.display(),
        file.display()
    )]
    ServerCertificateChanged {
        host_label: String,
        file: std::path::PathBuf,
        line: usize,
        expected: Fingerprint,
        presented: Fingerprint,
    },
    #[error(
        "client not authorized by server {addr}: add this client's fingerprint {fingerprint} to the server's authorized clients file"
    )]
    NotAuthorized {
        addr: SocketAddr,
        fingerprint: Fingerprint,
    },
    #[error("TLS handshake with {addr} failed: {reason}")]
    Handshake { addr: SocketAddr, reason: String },
    #[error("server refused the session: {reason}")]
    SessionRefused { reason: String },
    #[error(
        "protocol version mismatch: this client speaks version {client}, the server speaks version {server}"
    )]
    VersionMismatch { client: u32, server: u32 },
    #[error("connection to the server lost: {0}")]
    ConnectionLost(Loss),
    /// A request could not be written to its stream.
    #[error("protocol error: writing the {stream} stream")]
    Send {
        stream: StreamKind,
        #[source]
        source: quinn::WriteError,
    },
    /// The frame the server sent on a stream could not be read.
    #[error("protocol error: reading the {stream} stream")]
    Receive {
        stream: StreamKind,
        #[source]
        source: ReadFrameError,
    },
    /// The server finished a stream before its first frame.
    #[error("protocol error: the {stream} stream ended before its first frame")]
    NoAnswer { stream: StreamKind },
    /// The peer completed QUIC and TLS but never answered `Hello`.
    #[error("protocol error: no handshake answer within {secs}s; is this an rscq-server?")]
    NoWelcome { secs: u64 },
    #[error("request of {0} bytes exceeds the frame limit")]
    RequestTooLarge(usize),
    #[error("server rejected the request as malformed")]
    RequestRejected,
}

/// Which of a connection's streams an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The first stream: `Hello` and `Welcome`.
    Handshake,
    /// A forwarded call's request and response.
    Call,
    /// A `TcpConnect` request and the connection's answer.
    TcpConnect,
    /// A `UdpBind` request and the socket's answer.
    UdpBind,
    /// A stream the server opened for a connection a remote listener took.
    Incoming,
}

impl std::fmt::Display for StreamKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Handshake => "handshake",
            Self::Call => "request",
            Self::TcpConnect => "TCP connect",
            Self::UdpBind => "UDP bind",
            Self::Incoming => "incoming connection",
        })
    }
}

/// Shows an error followed by its sources, `error: cause: cause`, as
/// anyhow's `{:#}` does, for places that print a library error themselves.
/// A source whose text the previous message already ends with is skipped
/// (some of quinn's errors repeat their source).
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut shown = self.0.to_string();
        f.write_str(&shown)?;
        let mut next = self.0.source();
        while let Some(cause) = next {
            let text = cause.to_string();
            if !shown.ends_with(&text) {
                write!(f, ": {text}")?;
            }
            shown = text;
            next = cause.source();
        }
        Ok(())
    }
}

/// The crypto provider everywhere: ring, explicitly, since relying on the
/// process default panics when two providers are compiled in.
pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Transport parameters for both sides. The server's values bound what the
/// client may open.
/// The per-stream receive window this process offers its peer: on the
/// client it bounds how far the server reads a remote socket ahead of the
/// program (`--readahead-window`).
static STREAM_WINDOW: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(DEFAULT_STREAM_WINDOW);

/// 8 MiB: room for several maximal frames per stream, so one large read or
/// write streams at full speed.
pub const DEFAULT_STREAM_WINDOW: u32 = 8 << 20;

/// Sets the stream window of connections made after this call.
pub fn set_stream_window(bytes: u32) {
    STREAM_WINDOW.store(bytes, std::sync::atomic::Ordering::Relaxed);
}

/// The stream window connections made now get.
pub fn stream_window() -> u32 {
    STREAM_WINDOW.load(std::sync::atomic::Ordering::Relaxed)
}

pub(crate) fn transport_config(liveness: Liveness) -> Arc<quinn::TransportConfig> {
    let mut t = quinn::TransportConfig::default();
    // `Liveness` keeps the timeout far inside QUIC's range (2^62 ms); were
    // the conversion to fail, quinn's default (30 s) would still end dead
    // connections.
    if let Ok(idle) = quinn::IdleTimeout::try_from(liveness.idle_timeout()) {
        t.max_idle_timeout(Some(idle));
    }
    t.keep_alive_interval(Some(liveness.keep_alive()))
        .max_concurrent_bidi_streams(quinn::VarInt::from_u32(INITIAL_STREAMS))
        .max_concurrent_uni_streams(quinn::VarInt::from_u32(0))
        .stream_receive_window(quinn::VarInt::from_u32(
            STREAM_WINDOW.load(std::sync::atomic::Ordering::Relaxed),
        ))
        // A finite connection-wide cap: with thousands of streams the
        // per-stream window alone would allow gigabytes in flight.
        .receive_window(quinn::VarInt::from_u32(64 << 20))
        .send_window(64 << 20)
        // Real RTTs on loopback and LANs are far below quinn's 333 ms guess;
        // a smaller start makes the first loss recovery faster.
        .initial_rtt(Duration::from_millis(100));
    Arc::new(t)
}

/// The frame limit plus its header, for `read_to_end`.
pub(crate) const MAX_STREAM_BYTES: usize =
    crate::proto::frame::MAX_FRAME + crate::proto::frame::HEADER;
