//! An in-process server over loopback, with throw-away identities that
//! exist only in memory: the same QUIC and TLS code path as a real remote.
//! `rscq` without `--remote` runs one with the real executor
//! (`crate::server::start_embedded`); tests run one with any [`Session`].
//!
//! Must not take any shortcut a real server does not: it runs the same
//! transport code, and must not name the server's executor (which would
//! make the transport depend on the server).

use std::net::{Ipv4Addr, SocketAddr};

use tokio::sync::oneshot;

use super::client::Link;
use super::identity::{CLIENT_NAME, Fingerprint, Identity, SERVER_NAME};
use super::server::{self, Peer, Session, SessionError};
use super::trust::{AuthorizedClients, ServerTrust};
use super::{Liveness, TransportError};

/// How long [`Embedded::shutdown`] lets the server task finish.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_millis(5);

/// A running embedded server. Dropping it stops the server (connected
/// links then see their connection close).
#[derive(Debug)]
pub struct Embedded {
    addr: SocketAddr,
    server_fingerprint: Fingerprint,
    client_identity: Identity,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Embedded {
    /// Starts a server whose connections each get a session from
    /// `make_session` (the real executor's, or a test's small fake). Must
    /// be called from within a tokio runtime.
    pub fn start_with<F, S>(read_only: bool, make_session: F) -> Result<Self, TransportError>
    where
        F: Fn(&Peer) -> Result<S, SessionError> + Send + Sync + 'static,
        S: Session,
    {
        let server_identity = Identity::generate(SERVER_NAME)?;
        let client_identity = Identity::generate(CLIENT_NAME)?;
        let clients = AuthorizedClients::from_fingerprints([client_identity.fingerprint()]);
        let endpoint = server::endpoint(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            &server_identity,
            clients.clone(),
            Liveness::default(),
        )?;
        let addr = endpoint
            .local_addr()
            .map_err(|error| TransportError::Bind {
                addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                error,
            })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(server::serve(
            endpoint,
            read_only,
            clients,
            make_session,
            async {
                // Either an explicit stop or the handle being dropped.
                let _ = stopped.await;
            },
        ));
        Ok(Self {
            addr,
            server_fingerprint: server_identity.fingerprint(),
            client_identity,
            stop: Some(stop),
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn server_fingerprint(&self) -> Fingerprint {
        self.server_fingerprint
    }

    /// The trust a client must use: exactly this server's certificate.
    pub fn trust(&self) -> ServerTrust {
        ServerTrust::Pinned(self.server_fingerprint)
    }

    /// The only identity the embedded server accepts.
    pub fn client_identity(&self) -> &Identity {
        &self.client_identity
    }

    /// Connects a new [`Link`] to this server.
    pub async fn connect(&self) -> Result<Link, TransportError> {
        Link::connect(
            self.addr,
            &self.client_identity,
            &self.trust(),
            Liveness::default(),
        )
        .await
    }

    /// Stops the server. Its connections are already closed by their
    /// clients when rscq ends, so the endpoint's drain period (three probe
    /// timeouts, ~90 ms even on loopback) is not waited for: nothing is
    /// left to deliver, and the process is about to exit.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(SHUTDOWN_GRACE, task).await;
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
