//! A lost connection is not the end of the run: rscq connects again, with
//! backoff, for up to the grace time (`--reconnect-grace`), and takes up
//! the session the server kept for it (its files and locks as they were;
//! calls in flight sent again under their numbers run at most once), or
//! gives the new
//! session of a restarted server every remote file the program holds
//! ([`crate::engine::reattach`]). File calls in flight or made meanwhile
//! wait for the new connection ([`Engine::round_trip`]); one that may have
//! changed a file before its reply was lost fails with `EIO` rather than
//! risk being done twice ([`HandleBook::resendable`]). Sockets cannot be given again: their pumps end
//! with the old connection, and the program's sockets are reset.
//!
//! A remote that could not be connected at start is in the same final
//! state from the first call ([`Resume::refused_at_start`]).
//!
//! Must not call ptrace nor decide what the engine caches; the backoff
//! ([`Backoff`]) and what each handle needs ([`HandleBook`]) are pure.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{Engine, lock};
use crate::engine::reattach::HandleBook;
use crate::errno::Errno;
use crate::proto::{Credentials, Request, Response};
use crate::transport::{ErrorChain, Link, Loss, TransportError};

/// The first wait before connecting again.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);
/// The longest wait between two attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(5);

/// Waits between attempts to connect again: [`FIRST_RETRY`], doubling up
/// to [`MAX_RETRY`].
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: FIRST_RETRY }
    }
}

impl Backoff {
    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_RETRY);
        wait
    }
}

/// Where the link is.
#[derive(Debug, Clone)]
enum State {
    /// Connected: the link's connection number `epoch` is ready for calls.
    Up { epoch: u64 },
    /// Lost; connecting again.
    Down,
    /// The grace time ended without a connection: calls fail.
    Over(Loss),
}

/// The reconnect side of one run.
#[derive(Debug)]
pub(super) struct Resume {
    /// `--reconnect-grace`; zero: a lost connection ends remote calls.
    grace: Duration,
    state: watch::Sender<State>,
    /// The program's remote handles, to give them again.
    book: std::sync::Mutex<HandleBook>,
    /// `--net`: incoming connections are taken on each new connection.
    net: bool,
}

impl Resume {
    pub(super) fn new(grace: Duration, net: bool) -> Self {
        Self {
            grace,
            state: watch::channel(State::Up { epoch: 0 }).0,
            book: std::sync::Mutex::default(),
            net,
        }
    }

    /// A remote that could not be connected at start: its calls fail from
    /// the first, as once the grace time of a lost connection is over, and
    /// it is never tried again.
    pub(super) fn refused_at_start(&self, loss: Loss) {
        self.state.send_replace(State::Over(loss));
    }

    pub(super) fn enabled(&self) -> bool {
        !self.grace.is_zero()
    }

    /// Whether the grace time ran out.
    pub(super) fn is_over(&self) -> bool {
        matches!(*self.state.borrow(), State::Over(_))
    }

    /// Waits while rscq connects again (not at all when it does not).
    pub(super) async fn settled(&self, link: &Link) {
        if self.enabled() {
            let _ = self.ready(link, None).await;
        }
    }

    /// Waits until the link's connection is ready for calls and newer than
    /// `after` (any, with `None`); the reason calls fail once the grace
    /// time is over.
    async fn ready(&self, link: &Link, after: Option<u64>) -> Result<(), TransportError> {
        let mut state = self.state.subscribe();
        loop {
            match &*state.borrow_and_update() {
                State::Up { epoch }
                    if after.is_none_or(|a| *epoch > a) && *epoch == link.epoch() =>
                {
                    return Ok(());
                }
                State::Over(loss) => return Err(TransportError::ConnectionLost(loss.clone())),
                _ => {}
            }
            if state.changed().await.is_err() {
                return Err(TransportError::ConnectionLost(Loss::ServerShutdown));
            }
        }
    }
}

impl Engine {
    /// One file request on the link, waiting through a lost connection for
    /// the next one (within the grace time) and sending it again there:
    /// under its number to a session the server kept (which runs it at
    /// most once), and to a new session only if it cannot have changed a
    /// file already.
    pub(super) async fn round_trip(
        &self,
        caller: Option<&Credentials>,
        request: &Request,
    ) -> Result<Response, TransportError> {
        if !self.resume.enabled() {
            return self.link.call_as(caller, request).await;
        }
        let numbered = self.link.number_call();
        loop {
            self.resume.ready(&self.link, None).await?;
            let epoch = self.link.epoch();
            let unsent = self.link.is_closed();
            match self.link.call_numbered(caller, request, &numbered).await {
                Ok(response) => {
                    lock(&self.resume.book).observe(request, &response);
                    return Ok(response);
                }
                Err(e) if e.is_connection_lost() => {
                    self.resume.ready(&self.link, Some(epoch)).await?;
                    let once_at_most = self.link.kept_session();
                    if !unsent && !once_at_most && !lock(&self.resume.book).resendable(request) {
                        // Done or not on the server, whose session is new:
                        // no way to know.
                        return Ok(Err(Errno::EIO));
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether a lost connection is to be reported as final: not while
    /// rscq is connecting again.
    pub(super) fn loss_is_final(&self) -> bool {
        !self.resume.enabled() || self.resume.is_over()
    }
}

/// Watches the link for the whole run: when its connection is lost, says
/// so, connects again within the grace time, gives the new session the
/// program's files, and says so again; or says that the grace time ran
/// out. Ends when the run does (`done`).
pub(super) async fn supervise(engine: Engine, done: Arc<std::sync::atomic::AtomicBool>) {
    let resume = engine.resume.clone();
    let grace = resume.grace;
    loop {
        let why = engine.link.closed().await;
        if done.load(std::sync::atomic::Ordering::SeqCst) {
            return;
        }
        if why.is_final() {
            give_up(&engine, Loss::Refused(ErrorChain(&why).to_string()));
            return;
        }
        resume.state.send_replace(State::Down);
        // What was opened ahead belongs to the session that was lost: the
        // program's opens meet the loss as any other call does.
        engine.files().drop_opened_ahead();
        engine.send_flushes();
        // With several remotes, the message names this one.
        let who = engine
            .name
            .as_deref()
            .map_or_else(String::new, |n| format!("{n}: "));
        eprintln!(
            "rscq: {who}{}; connecting again for up to {}s (--reconnect-grace)",
            ErrorChain(&why),
            grace.as_secs_f32()
        );
        let deadline = tokio::time::Instant::now() + grace;
        let Some(fresh) = connect_again(&engine, deadline, grace).await else {
            return;
        };
        let kept = fresh.kept_session();
        let (given, stale) = if kept {
            // Every call in flight is sent again under its number and runs
            // at most once, so the server's offsets are already right.
            (lock(&engine.resume.book).len(), 0)
        } else {
            reattach(&engine, &fresh).await
        };
        engine.link.adopt(&fresh);
        resume.state.send_replace(State::Up {
            epoch: engine.link.epoch(),
        });
        if resume.net {
            engine.runtime.spawn(super::accept_incoming(
                engine.link.clone(),
                engine.pumps.clone(),
            ));
        }
        if kept {
            eprintln!(
                "rscq: {who}connected again, to the same session: open files ({given}), directories and locks as they were; remote sockets were reset"
            );
        } else {
            eprintln!(
                "rscq: {who}connected again, to a new session of the server: {given} open files given again, {stale} stale (ESTALE); remote sockets were reset"
            );
        }
    }
}

/// Attempts until one connects, or the deadline passes (the state is
/// then [`State::Over`], said on stderr).
async fn connect_again(
    engine: &Engine,
    deadline: tokio::time::Instant,
    grace: Duration,
) -> Option<Link> {
    let mut backoff = Backoff::default();
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if !left.is_zero() {
            match tokio::time::timeout(left, engine.link.dial_again()).await {
                Ok(Ok(fresh)) => return Some(fresh),
                Ok(Err(e)) if e.is_final() => {
                    give_up(engine, Loss::Refused(ErrorChain(&e).to_string()));
                    return None;
                }
                Ok(Err(e)) => last = Some(ErrorChain(&e).to_string()),
                Err(_) => {}
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            give_up(engine, Loss::GraceOver { grace, last });
            return None;
        }
        tokio::time::sleep(backoff.next_wait().min(left)).await;
    }
}

/// No more attempts: calls waiting now fail, and say why once.
fn give_up(engine: &Engine, loss: Loss) {
    engine.resume.state.send_replace(State::Over(loss.clone()));
    engine.connection_failed(&TransportError::ConnectionLost(loss));
}

/// Gives the new session every handle the program holds; how many came
/// back, and how many are stale.
async fn reattach(engine: &Engine, fresh: &Link) -> (usize, usize) {
    let requests = lock(&engine.resume.book).reattach_requests();
    let (mut given, mut stale) = (0, 0);
    for request in requests {
        match fresh.call(&request).await {
            Ok(Ok(_)) => given += 1,
            _ => stale += 1,
        }
    }
    (given, stale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_its_cap() {
        let mut b = Backoff::default();
        let waits: Vec<_> = (0..8).map(|_| b.next_wait().as_millis()).collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
    }
}
