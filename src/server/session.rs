//! One client connection's session: what [`crate::transport::server`] runs
//! the connection's requests against. File calls go to the [`Executor`];
//! the connection's TCP sockets (`--net`) to its [`NetSession`], and a
//! `UdpBind` to [`udp::serve`]. Also the embedded server's wiring
//! ([`start_embedded`]), which the transport cannot name.
//!
//! Owns the routing of a request to its family. Must not read frames or
//! accept streams (the transport does), nor run a call itself (the
//! families do).

use std::path::Path;
use std::sync::Arc;

use crate::errno::Errno;
use crate::proto::{Credentials, Request, Response};
use crate::transport::{Embedded, Peer, Session, SessionError, TransportError};

use super::Executor;
use super::live::{LiveGuard, LiveSessions};
use super::net::{self, NetSession};
use super::udp::{self, BindOptions};

/// The server's side of one client's session: one connection, or several
/// in turn when the client takes the session up again after a loss.
#[derive(Debug)]
pub struct ClientSession {
    files: Executor,
    /// The connection's listeners; dropped with the session or its
    /// connection, which closes them: a program that dies leaves no port
    /// behind, and sockets do not outlive the connection their bytes
    /// travel on.
    sockets: std::sync::RwLock<Arc<NetSession>>,
    /// Counts this session among the server's live ones until it drops;
    /// declared last, so it drops after what the session holds.
    live: Option<LiveGuard>,
}

impl ClientSession {
    /// The session of `peer`'s connection, running file calls on `files`.
    pub fn new(files: Executor, peer: &Peer) -> Self {
        Self {
            files,
            sockets: std::sync::RwLock::new(Arc::new(NetSession::new(peer.connection.clone()))),
            live: None,
        }
    }

    /// The same session, counted among `live` until it drops.
    #[must_use]
    pub fn counted(mut self, live: &Arc<LiveSessions>) -> Self {
        self.live = Some(live.enter());
        self
    }

    fn sockets(&self) -> Arc<NetSession> {
        self.sockets
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Closes every socket of the session; new ones go on `conn`.
    fn renew_sockets(&self, conn: quinn::Connection) {
        let fresh = Arc::new(NetSession::new(conn));
        let old = std::mem::replace(
            &mut *self
                .sockets
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            fresh,
        );
        drop(old);
    }
}

impl Session for ClientSession {
    fn execute(&self, caller: Option<&Credentials>, req: Request) -> Response {
        match req {
            Request::TcpBind {
                addr,
                reuse_addr,
                reuse_port,
                v6_only,
                options,
            } => self
                .sockets()
                .bind(addr, reuse_addr, reuse_port, v6_only, &options),
            Request::TcpSetOption { target, option } => self.sockets().set_option(target, option),
            Request::TcpGetInfo { local, peer } => self.sockets().tcp_info(local, peer),
            Request::TcpListen {
                listener,
                backlog,
                pure,
            } => self.sockets().listen(listener, backlog, pure),
            Request::TcpUnbind { listener } => self.sockets().unbind(listener),
            other => self.files.execute(caller, other),
        }
    }

    async fn serve_stream(&self, req: Request, send: quinn::SendStream, recv: quinn::RecvStream) {
        match req {
            Request::TcpConnect {
                addr,
                pure,
                options,
                bound,
            } => {
                let sockets = self.sockets();
                net::tcp_connect(&sockets, addr, pure, &options, bound, send, recv).await;
            }
            Request::UdpBind {
                addr,
                reuse_addr,
                reuse_port,
                v6_only,
                pure,
                kind,
            } => {
                let options = BindOptions {
                    reuse_addr,
                    reuse_port,
                    v6_only,
                    pure,
                    kind,
                };
                udp::serve(addr, options, send, recv).await;
            }
            // The transport hands only the two above here; anything else
            // is refused as the executor refuses it.
            _ => answer(send, Err(Errno::EINVAL)).await,
        }
    }

    fn close(&self) {
        self.files.close();
    }

    fn park(&self) {
        self.files.close();
        // Their bytes travelled on the lost connection: reset, as a
        // server restart would (the client resets the program's side).
        let conn = self.sockets().connection();
        self.renew_sockets(conn);
    }

    fn resume(&self, peer: &Peer) {
        self.files.reopen();
        self.renew_sockets(peer.connection.clone());
    }
}

async fn answer(mut send: quinn::SendStream, response: Response) {
    if send
        .write_all(&crate::proto::frame::encode(&response))
        .await
        .is_ok()
    {
        let _ = send.finish();
    }
}

/// Starts the in-process server of `rscq` without `--remote`: it exports
/// `/` read-write, with one [`ClientSession`] per connection. Must be
/// called from within a tokio runtime.
pub fn start_embedded() -> Result<Embedded, TransportError> {
    Embedded::start_with(false, |peer: &Peer| {
        let policy = super::creds::Policy::of_this_process(None);
        let files = Executor::new(Path::new("/"), false, policy).map_err(SessionError::from)?;
        Ok(ClientSession::new(files, peer))
    })
}
