//! The server's sessions by token, and which of them are kept for their
//! client after its connection was lost: a client that connects again
//! within the time it asked for ([`crate::proto::Hello::keep_secs`]) takes
//! its session up again, with its open files, directories and locks as
//! they were.
//!
//! Pure: a state machine over plain values that takes `now` as an
//! argument. The server's transport ([`super::server`]) owns one per
//! endpoint, runs it under a lock, and does what its answers say (close a
//! superseded connection, end a session, wake an expiry later). Must not
//! do I/O.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::identity::Fingerprint;
use crate::proto::SessionToken;

/// The most sessions kept for one client after their connections were
/// lost: a client that keeps dying (killed runs) cannot hold a server's
/// files without bound. The one lost longest ago goes first.
pub const MAX_KEPT_PER_CLIENT: usize = 16;
/// The most sessions kept for all clients together.
pub const MAX_KEPT: usize = 1024;
/// The longest a client may ask a session to be kept (as
/// `--reconnect-grace`'s own limit).
pub const MAX_KEEP: Duration = Duration::from_secs(86_400);

/// Which connection holds a session: a number given by [`Sessions`], so
/// that the end of a superseded connection does not end or keep the
/// session its successor took up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder(u64);

#[derive(Debug)]
struct Slot<S, C> {
    session: Arc<S>,
    client: Fingerprint,
    keep: Duration,
    holder: Holder,
    /// The connection that holds it (`None` while kept).
    connection: Option<C>,
    /// When its connection was lost (`None` while one holds it).
    lost_at: Option<Instant>,
}

/// What a connection's end comes to.
#[derive(Debug)]
pub enum Ended<S> {
    /// The session ends: the caller closes it.
    Close(Arc<S>),
    /// The session is kept until `until`: the caller parks it (what cannot
    /// outlive a connection goes) and asks [`Sessions::expire`] then.
    Kept { session: Arc<S>, until: Instant },
    /// A newer connection of the client took the session up: nothing to do.
    Superseded,
}

/// A session taken up again by a new connection.
#[derive(Debug)]
pub struct TakenUp<S, C> {
    pub session: Arc<S>,
    pub holder: Holder,
    /// The connection that held it until now, if one still did (its loss
    /// was not noticed yet on this side): the caller closes it.
    pub superseded: Option<C>,
}

/// Every session of one server, by token.
#[derive(Debug)]
pub struct Sessions<S, C> {
    slots: HashMap<SessionToken, Slot<S, C>>,
    next_holder: u64,
}

impl<S, C> Default for Sessions<S, C> {
    fn default() -> Self {
        Self {
            slots: HashMap::new(),
            next_holder: 0,
        }
    }
}

impl<S, C> Sessions<S, C> {
    fn holder(&mut self) -> Holder {
        self.next_holder += 1;
        Holder(self.next_holder)
    }

    /// A new session under `token`, held by `connection` of `client`, to
    /// be kept for `keep` (at most [`MAX_KEEP`]) after a loss.
    pub fn open(
        &mut self,
        token: SessionToken,
        session: Arc<S>,
        client: Fingerprint,
        keep: Duration,
        connection: C,
    ) -> Holder {
        let holder = self.holder();
        self.slots.insert(
            token,
            Slot {
                session,
                client,
                keep: keep.min(MAX_KEEP),
                holder,
                connection: Some(connection),
                lost_at: None,
            },
        );
        holder
    }

    /// `client`'s new `connection` takes up the session `token` names:
    /// `None` if there is none (never was, ended, a restarted server) or
    /// it is another client's. A kept session whose time is up is not
    /// taken up, even if [`Sessions::expire`] has not run yet.
    pub fn take_up(
        &mut self,
        token: &SessionToken,
        client: &Fingerprint,
        keep: Duration,
        connection: C,
        now: Instant,
    ) -> Option<TakenUp<S, C>> {
        let holder = self.holder();
        let slot = self.slots.get_mut(token)?;
        if slot.client != *client {
            return None;
        }
        if slot
            .lost_at
            .is_some_and(|lost| now.saturating_duration_since(lost) >= slot.keep)
        {
            return None;
        }
        slot.holder = holder;
        slot.lost_at = None;
        slot.keep = keep.min(MAX_KEEP);
        let superseded = slot.connection.replace(connection);
        Some(TakenUp {
            session: slot.session.clone(),
            holder,
            superseded,
        })
    }

    /// The connection `holder` of session `token` ended; `lost` says it
    /// was lost (a timeout, a reset) rather than closed by either side. A
    /// lost one's session is kept if its client asked for that, within the
    /// bounds; the sessions the bounds push out are in `evicted`, for the
    /// caller to close.
    pub fn ended(
        &mut self,
        token: &SessionToken,
        holder: Holder,
        lost: bool,
        now: Instant,
    ) -> (Ended<S>, Vec<Arc<S>>) {
        let Some(slot) = self.slots.get_mut(token) else {
            return (Ended::Superseded, Vec::new());
        };
        if slot.holder != holder {
            return (Ended::Superseded, Vec::new());
        }
        if !lost || slot.keep.is_zero() {
            let slot = self.slots.remove(token);
            return (
                slot.map_or(Ended::Superseded, |s| Ended::Close(s.session)),
                Vec::new(),
            );
        }
        slot.connection = None;
        slot.lost_at = Some(now);
        let kept = Ended::Kept {
            session: slot.session.clone(),
            until: now + slot.keep,
        };
        let client = slot.client;
        (kept, self.bound(&client))
    }

    /// Ends session `token` if it is still kept from holder `holder`'s
    /// loss and its time is up; the session, for the caller to close.
    pub fn expire(&mut self, token: &SessionToken, holder: Holder, now: Instant) -> Option<Arc<S>> {
        let slot = self.slots.get(token)?;
        let lost = slot.lost_at?;
        if slot.holder != holder || now.saturating_duration_since(lost) < slot.keep {
            return None;
        }
        self.slots.remove(token).map(|s| s.session)
    }

    /// Every session, kept or held, taken out (the server stops).
    pub fn drain(&mut self) -> Vec<Arc<S>> {
        self.slots.drain().map(|(_, s)| s.session).collect()
    }

    /// How many sessions are kept (lost, waiting for their client).
    pub fn kept(&self) -> usize {
        self.slots.values().filter(|s| s.lost_at.is_some()).count()
    }

    /// Keeps at most [`MAX_KEPT_PER_CLIENT`] kept sessions of `client` and
    /// [`MAX_KEPT`] in all, ending those lost longest ago.
    fn bound(&mut self, client: &Fingerprint) -> Vec<Arc<S>> {
        let mut evicted = Vec::new();
        loop {
            let mine = |s: &Slot<S, C>| s.lost_at.is_some() && s.client == *client;
            let over_client = self.slots.values().filter(|s| mine(s)).count() > MAX_KEPT_PER_CLIENT;
            let over_all = self.kept() > MAX_KEPT;
            if !over_client && !over_all {
                return evicted;
            }
            let oldest = self
                .slots
                .iter()
                .filter(|(_, s)| {
                    if over_client {
                        mine(s)
                    } else {
                        s.lost_at.is_some()
                    }
                })
                .min_by_key(|(_, s)| s.lost_at)
                .map(|(token, _)| *token);
            let Some(token) = oldest else {
                return evicted;
            };
            if let Some(slot) = self.slots.remove(&token) {
                evicted.push(slot.session);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Fingerprint = Fingerprint([1; 32]);
    const B: Fingerprint = Fingerprint([2; 32]);
    const KEEP: Duration = Duration::from_secs(300);

    fn token(n: u8) -> SessionToken {
        SessionToken([n; 16])
    }

    fn sessions() -> Sessions<&'static str, u32> {
        Sessions::default()
    }

    #[test]
    fn a_closed_connection_ends_its_session() {
        let now = Instant::now();
        let mut s = sessions();
        let h = s.open(token(1), Arc::new("s"), A, KEEP, 10);
        let (ended, evicted) = s.ended(&token(1), h, false, now);
        assert!(matches!(ended, Ended::Close(_)));
        assert!(evicted.is_empty());
        assert!(s.take_up(&token(1), &A, KEEP, 11, now).is_none());
    }

    #[test]
    fn a_lost_connection_keeps_its_session_for_its_time() {
        let now = Instant::now();
        let mut s = sessions();
        let h = s.open(token(1), Arc::new("s"), A, KEEP, 10);
        let (ended, _) = s.ended(&token(1), h, true, now);
        let Ended::Kept { until, session } = ended else {
            panic!("not kept: {ended:?}");
        };
        assert_eq!(until, now + KEEP);
        assert_eq!(*session, "s");
        assert_eq!(s.kept(), 1);
        // Before its time is up, expiry leaves it; the client takes it up.
        assert!(s.expire(&token(1), h, now + KEEP / 2).is_none());
        let up = s
            .take_up(&token(1), &A, KEEP, 11, now + KEEP / 2)
            .expect("taken up");
        assert_eq!(*up.session, "s");
        assert_eq!(up.superseded, None);
        assert_eq!(s.kept(), 0);
        // The old holder's expiry no longer ends it.
        assert!(s.expire(&token(1), h, now + KEEP * 2).is_none());
    }

    #[test]
    fn a_kept_session_ends_when_its_time_is_up() {
        let now = Instant::now();
        let mut s = sessions();
        let h = s.open(token(1), Arc::new("s"), A, KEEP, 10);
        let _ = s.ended(&token(1), h, true, now);
        assert!(s.take_up(&token(1), &A, KEEP, 11, now + KEEP).is_none());
        assert_eq!(s.expire(&token(1), h, now + KEEP).as_deref(), Some(&"s"));
        assert_eq!(s.kept(), 0);
    }

    #[test]
    fn no_keeping_asked_means_none() {
        let now = Instant::now();
        let mut s = sessions();
        let h = s.open(token(1), Arc::new("s"), A, Duration::ZERO, 10);
        assert!(matches!(
            s.ended(&token(1), h, true, now).0,
            Ended::Close(_)
        ));
    }

    #[test]
    fn only_its_own_client_takes_a_session_up() {
        let now = Instant::now();
        let mut s = sessions();
        let h = s.open(token(1), Arc::new("s"), A, KEEP, 10);
        let _ = s.ended(&token(1), h, true, now);
        assert!(s.take_up(&token(1), &B, KEEP, 11, now).is_none());
        assert!(s.take_up(&token(2), &A, KEEP, 11, now).is_none());
        assert!(s.take_up(&token(1), &A, KEEP, 11, now).is_some());
    }

    #[test]
    fn taking_up_a_held_session_supersedes_its_connection() {
        let now = Instant::now();
        let mut s = sessions();
        let old = s.open(token(1), Arc::new("s"), A, KEEP, 10);
        let up = s.take_up(&token(1), &A, KEEP, 11, now).expect("taken up");
        assert_eq!(up.superseded, Some(10));
        // The superseded connection's end, lost or not, changes nothing.
        assert!(matches!(
            s.ended(&token(1), old, true, now).0,
            Ended::Superseded
        ));
        assert!(matches!(
            s.ended(&token(1), old, false, now).0,
            Ended::Superseded
        ));
        // Its successor's clean end closes it.
        assert!(matches!(
            s.ended(&token(1), up.holder, false, now).0,
            Ended::Close(_)
        ));
    }

    #[test]
    fn a_client_keeps_at_most_its_bound_and_the_oldest_goes() {
        let now = Instant::now();
        let mut s = sessions();
        let mut evicted_all = Vec::new();
        for n in 0..=u8::try_from(MAX_KEPT_PER_CLIENT).expect("small") {
            let h = s.open(token(n), Arc::new("s"), A, KEEP, 10);
            let at = now + Duration::from_secs(u64::from(n));
            let (_, evicted) = s.ended(&token(n), h, true, at);
            evicted_all.extend(evicted);
        }
        assert_eq!(evicted_all.len(), 1);
        assert_eq!(s.kept(), MAX_KEPT_PER_CLIENT);
        // The first lost is the one gone.
        assert!(s.take_up(&token(0), &A, KEEP, 11, now).is_none());
        assert!(s.take_up(&token(1), &A, KEEP, 11, now).is_some());
        // Another client's kept sessions are not counted against A's.
        let h = s.open(token(200), Arc::new("b"), B, KEEP, 12);
        assert!(s.ended(&token(200), h, true, now).1.is_empty());
    }

    #[test]
    fn a_client_asks_at_most_the_longest_keep() {
        let now = Instant::now();
        let mut s = sessions();
        let h = s.open(token(1), Arc::new("s"), A, MAX_KEEP * 10, 10);
        let (Ended::Kept { until, .. }, _) = s.ended(&token(1), h, true, now) else {
            panic!("not kept");
        };
        assert_eq!(until, now + MAX_KEEP);
    }

    #[test]
    fn drain_takes_every_session() {
        let now = Instant::now();
        let mut s = sessions();
        let h = s.open(token(1), Arc::new("kept"), A, KEEP, 10);
        let _ = s.ended(&token(1), h, true, now);
        s.open(token(2), Arc::new("held"), A, KEEP, 11);
        let mut all: Vec<_> = s.drain().iter().map(|s| **s).collect();
        all.sort_unstable();
        assert_eq!(all, ["held", "kept"]);
    }
}
