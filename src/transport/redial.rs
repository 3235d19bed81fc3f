//! A [`Link`] given a new connection after it lost its own: the same
//! server, identity and trust, connected again ([`Link::dial_again`]) and
//! taken over by every clone of the link ([`Link::adopt`]).
//!
//! Must not decide when to try again nor for how long (the client's
//! reconnect policy), nor what a new session must be told.

use std::sync::PoisonError;

use super::client::{Connected, Dial, Link};
use super::{Loss, TransportError};

impl Link {
    /// How many connections the link had before its current one.
    pub fn epoch(&self) -> u64 {
        self.connected().as_ref().map_or(0, |c| c.epoch)
    }

    /// Whether the current connection has ended (or never was).
    pub fn is_closed(&self) -> bool {
        self.close_reason().is_some()
    }

    /// Waits until the current connection ends, and says why (at once for
    /// a link that never connected).
    pub async fn closed(&self) -> TransportError {
        match self.conn() {
            Ok(conn) => {
                let reason = conn.closed().await;
                self.lost(reason)
            }
            Err(never) => never,
        }
    }

    /// One attempt to connect to the same server the same way, as a link of
    /// its own (its calls do not go through this one until [`Link::adopt`]),
    /// asking the server to take up the session of the connection before
    /// ([`Link::kept_session`] says whether it did). A link that never
    /// connected is not tried again: its start failure (a changed
    /// certificate, say) is what it says.
    pub async fn dial_again(&self) -> Result<Link, TransportError> {
        let Some(dial) = &self.dial else {
            return Err(self.conn().err().unwrap_or(TransportError::ConnectionLost(
                Loss::NotConnected(String::new()),
            )));
        };
        let session = self.connected().as_ref().ok().map(|c| c.session);
        let (link, _) = Link::dial(Dial::clone(dial), self.liveness, session, &[]).await?;
        Ok(link)
    }

    /// Whether the server took up the session of the connection before
    /// this one (its open files, directories and locks as they were).
    pub fn kept_session(&self) -> bool {
        self.connected().as_ref().is_ok_and(|c| c.kept_session)
    }

    /// From now on every clone of this link uses `fresh`'s connection.
    pub fn adopt(&self, fresh: &Link) {
        let (endpoint, conn, read_only, incoming, resumed, session, kept_session) =
            match &*fresh.connected() {
                Ok(new) => (
                    new.endpoint.clone(),
                    new.conn.clone(),
                    new.read_only,
                    new.incoming.clone(),
                    new.resumed,
                    new.session,
                    new.kept_session,
                ),
                // Nothing to take from a link that never connected.
                Err(_) => return,
            };
        let mut current = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let epoch = current.as_ref().map_or(0, |c| c.epoch.saturating_add(1));
        *current = Ok(Connected {
            endpoint,
            conn,
            read_only,
            epoch,
            incoming,
            resumed,
            session,
            kept_session,
        });
        self.made.count(resumed);
    }
}

impl TransportError {
    /// Whether the error says the connection is gone (rather than that one
    /// stream or request failed): a new connection may do better.
    pub fn is_connection_lost(&self) -> bool {
        matches!(
            self,
            TransportError::ConnectionLost(_)
                | TransportError::Unreachable { .. }
                | TransportError::Connect { .. }
                | TransportError::Handshake { .. }
        )
    }

    /// Whether trying again cannot help: the server removed this client,
    /// refused it, or speaks another protocol, or its certificate changed.
    pub fn is_final(&self) -> bool {
        match self {
            TransportError::ConnectionLost(Loss::Connection(
                quinn::ConnectionError::ApplicationClosed(close),
            )) => close.error_code == quinn::VarInt::from_u32(super::code::REVOKED),
            TransportError::ConnectionLost(
                Loss::GraceOver { .. } | Loss::Refused(_) | Loss::NotConnected(_),
            )
            | TransportError::NotAuthorized { .. }
            | TransportError::ServerCertificateMismatch { .. }
            | TransportError::ServerCertificateChanged { .. }
            | TransportError::VersionMismatch { .. }
            | TransportError::SessionRefused { .. }
            | TransportError::Identity(_)
            | TransportError::Trust(_) => true,
            _ => false,
        }
    }

    /// Whether the server said it is shutting down.
    pub fn is_shutdown(&self) -> bool {
        matches!(self, TransportError::ConnectionLost(Loss::ServerShutdown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Request;

    #[tokio::test]
    async fn a_link_that_never_connected_fails_at_once_for_good() {
        let link = Link::not_connected("certificate changed".into());
        let never = |e: &TransportError| matches!(e, TransportError::ConnectionLost(Loss::NotConnected(why)) if why == "certificate changed");
        assert!(matches!(link.start_failure(), Some(Loss::NotConnected(_))));
        let call = link.call(&Request::Uname).await.expect_err("no connection");
        assert!(never(&call) && call.is_connection_lost() && call.is_final());
        assert!(never(&link.closed().await));
        assert!(never(&link.dial_again().await.expect_err("never again")));
        assert!(link.is_closed() && !link.read_only());
        assert_eq!((link.epoch(), link.remote_addr()), (0, None));
        link.close().await;
    }
}
