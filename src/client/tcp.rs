//! The engine's TCP side with `--net`: remote connects (joined per socket,
//! held locally when the caller goes on, see [`super::hold`]), binds,
//! listens and the socket options that must reach the server.
//!
//! Must not call ptrace: the program's socket comes as rscq's own copy
//! ([`ProgramFd`]), taken by the tracer during the call's stop.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::Duration;

use super::{Engine, ReplyTo, connect, hold, listeners, lock};
use crate::errno::Errno;
use crate::proto::{Reply, Request};
use crate::tracer::{Event, ProgramFd};

impl Engine {
    pub(super) fn connect_reply(
        &self,
        tid: i32,
        op: Option<u64>,
        result: Result<(), Errno>,
        rtt: Duration,
    ) {
        if let Some(op) = op {
            lock(&self.sleeping_connects).remove(&op);
        }
        let response = result.map(|()| Reply::Done);
        let _ = self.events.send(Event::reply(tid, op, response, rtt));
    }

    /// One remote connect of program socket `ino` (`dup` is rscq's copy),
    /// answered to every thread that waits for it.
    pub(super) async fn run_connect(
        &self,
        ino: u64,
        dup: OwnedFd,
        addr: crate::proto::SockAddr,
        interrupted: Arc<tokio::sync::Notify>,
        nonblocking: bool,
        owner: (i32, i32),
    ) {
        let started = tokio::time::Instant::now();
        let pure = self.pumps.pure.is_some();
        let options = self.options.take(ino);
        // A socket the program bound first connects from its bound
        // address: the server's bound socket makes the connection, and the
        // registry forgets it as a listener.
        let bound = self.pumps.sockets().bound_id(ino);
        if bound.is_some() {
            self.pumps.sockets().remove(ino);
        }
        let (link, resume) = (self.link.clone(), self.resume.clone());
        let mut open = std::pin::pin!(async move {
            // A connect made while rscq connects again waits for it.
            resume.settled(&link).await;
            link.open_tcp(addr, pure, options, bound).await
        });
        let first = if nonblocking {
            // As the kernel's, a non-blocking connect answers EINPROGRESS at
            // once; the socket goes on connecting locally (see `hold`), and
            // the result is kept for a later connect.
            self.connects.went_async(ino);
            None
        } else {
            tokio::select! {
                outcome = &mut open => Some(outcome),
                () = interrupted.notified() => None,
            }
        };
        // An interruption may have put the socket in its local connecting
        // state already.
        let held = self.connects.take_held(ino);
        let mut was_held = false;
        let mut finished_early = None;
        let result = match (first, held) {
            (Some(outcome), None) => self.connected(dup, outcome, owner).await,
            (first, held) => match held.map_or_else(|| self.pumps.hold.start(&dup, ino), Ok) {
                Err(_) => {
                    let outcome = match first {
                        Some(outcome) => outcome,
                        None => open.await,
                    };
                    self.connected(dup, outcome, owner).await
                }
                Ok(held) => {
                    was_held = true;
                    // rscq keeps no copy of the socket meanwhile: the
                    // program's close must really close it.
                    drop(dup);
                    self.pumps.sockets().insert(
                        ino,
                        crate::syscall::sockets::RemoteSocket::connecting(held.local.is_ipv6()),
                    );
                    // The socket is now connecting locally, as the kernel
                    // would leave it: a non-blocking caller goes on.
                    for waiter in self.connects.take_nonblocking(ino) {
                        self.connect_reply(
                            waiter.tid,
                            waiter.op,
                            waiter.answer(Ok(())),
                            started.elapsed(),
                        );
                    }
                    let outcome = match first {
                        Some(outcome) => Some(outcome),
                        None => self.outcome_while_held(held, &mut open).await,
                    };
                    let (result, waiters) = self.settle_held(held, outcome, owner).await;
                    finished_early = waiters;
                    result
                }
            },
        };
        let rtt = started.elapsed();
        self.stats.record("connect", 0, 0, rtt);
        let waiters = match finished_early {
            Some(waiters) => waiters,
            None => self.connects.finish(ino, result),
        };
        if was_held
            && result.is_err()
            && !waiters.is_empty()
            && let Some(program) = hold::program_socket(owner.0, owner.1, ino)
        {
            // A blocking connect takes the failure of a held socket, as
            // the kernel's does, and the socket may connect again.
            self.pumps.sockets().remove(ino);
            let _ = hold::forget_failed(&program);
        }
        for waiter in waiters {
            self.connect_reply(waiter.tid, waiter.op, waiter.answer(result), rtt);
        }
    }

    /// Waits for the remote connect `open` of a program socket that waits
    /// in the hold listener; `None` if the program closed its socket first.
    pub(super) async fn outcome_while_held(
        &self,
        held: hold::Held,
        open: &mut std::pin::Pin<
            &mut impl Future<
                Output = Result<
                    crate::transport::client::TcpOutcome,
                    crate::transport::TransportError,
                >,
            >,
        >,
    ) -> Option<Result<crate::transport::client::TcpOutcome, crate::transport::TransportError>>
    {
        loop {
            tokio::select! {
                outcome = open.as_mut() => return Some(outcome),
                () = tokio::time::sleep(listeners::SWEEP_EVERY) => {
                    if hold::still_connecting(&held) == Some(false) {
                        return None;
                    }
                }
            }
        }
    }

    /// Ends the local connect of a held program socket the way its remote
    /// connect ended (see [`hold`]); `None`: the program closed the socket.
    /// A failure finishes the connect in [`connect::Connects`] before the
    /// program can see it (so a `connect` that follows at once gets it, not
    /// EALREADY): then the threads that waited are returned too, to be
    /// answered by the caller instead of finishing it again.
    pub(super) async fn settle_held(
        &self,
        held: hold::Held,
        outcome: Option<
            Result<crate::transport::client::TcpOutcome, crate::transport::TransportError>,
        >,
        owner: (i32, i32),
    ) -> (Result<(), Errno>, Option<Vec<connect::Waiter>>) {
        let sockets = self.pumps.sockets();
        let failure = match outcome {
            // The program closed the socket (or died): dropping `open`
            // cancels the connect on the server.
            None => {
                sockets.remove(held.ino);
                return (Err(Errno(libc::ECONNABORTED)), None);
            }
            Some(Ok(Ok(streams))) => {
                // The program may look the moment its socket connects.
                let carrier = self.pumps.expect(held.ino, streams, owner);
                let result = match self.pumps.hold.finish(held).await {
                    Ok(local) => {
                        carrier.start(local);
                        Ok(())
                    }
                    Err(e) => {
                        carrier.abandon();
                        Err(e)
                    }
                };
                return (result, None);
            }
            Some(Ok(Err(e))) => e,
            Some(Err(e)) => self.connect_failed(&e),
        };
        // Known before the program can see the failure, so that no
        // `SO_ERROR` in between reads 0, and no `connect` EALREADY.
        sockets.set_connect_error(held.ino, failure);
        let waiters = self.connects.finish(held.ino, Err(failure));
        if !self.pumps.hold.fail(held, failure).await {
            match hold::program_socket(owner.0, owner.1, held.ino) {
                Some(program) => hold::Hold::abort(&program),
                // No process of the program holds it any more.
                None => sockets.remove(held.ino),
            }
        }
        (Err(failure), Some(waiters))
    }

    /// The end of a remote connect whose program socket is not attached
    /// yet: attach it, or make it fail as the kernel would.
    pub(super) async fn connected(
        &self,
        dup: OwnedFd,
        outcome: Result<crate::transport::client::TcpOutcome, crate::transport::TransportError>,
        owner: (i32, i32),
    ) -> Result<(), Errno> {
        match outcome {
            // A non-blocking connect reports EINPROGRESS (see
            // `Waiter::answer`), as the kernel does for TCP; the socket is
            // already connected, so the program's poll says writable and
            // SO_ERROR is 0.
            Ok(Ok(streams)) => self.pumps.attach(dup, streams, owner).await,
            Ok(Err(e)) => match self.pumps.refuse(&dup, e) {
                // The refusal is now the socket's own, reported by poll.
                Errno(libc::EINPROGRESS) => Ok(()),
                e => Err(e),
            },
            Err(e) => Err(self.connect_failed(&e)),
        }
    }

    pub(super) fn connect_tcp(
        &self,
        tid: i32,
        fd: Option<ProgramFd>,
        addr: crate::proto::SockAddr,
        op: Option<u64>,
    ) {
        // The program's thread is stopped (or asleep in rscq's ppoll) until
        // the reply, so its fd is still the socket it named.
        let Some(ProgramFd {
            copy: dup,
            tgid,
            fd,
            ino,
            nonblocking,
        }) = fd
        else {
            self.connect_reply(tid, op, Err(Errno::EBADF), Duration::ZERO);
            return;
        };
        if let Some(op) = op {
            // A signal for the sleeping thread leaves the connect going.
            lock(&self.sleeping_connects).insert(op, (ino, tid));
        }
        let waiter = connect::Waiter {
            tid,
            op,
            nonblocking,
        };
        match self.connects.join(ino, waiter) {
            connect::Joined::Start(interrupted) => {
                if self.pumps.is_remote(ino) && self.pumps.sockets().bound_id(ino).is_none() {
                    self.connects.finish(ino, Err(Errno(libc::EISCONN)));
                    self.connect_reply(tid, op, Err(Errno(libc::EISCONN)), Duration::ZERO);
                    return;
                }
                if !nonblocking && let Ok(copy) = dup.try_clone() {
                    self.connects.keep_socket(ino, copy);
                }
                let engine = self.clone();
                self.runtime.spawn(async move {
                    engine
                        .run_connect(ino, dup, addr, interrupted, nonblocking, (tgid, fd))
                        .await;
                });
            }
            connect::Joined::Waiting => {}
            connect::Joined::Already => {
                self.connect_reply(tid, op, Err(Errno(libc::EALREADY)), Duration::ZERO);
            }
            connect::Joined::Ended(result) => {
                let result = match result {
                    Ok(()) => Ok(()),
                    Err(failure) => Err(self.after_failed_connect(ino, &dup, failure)),
                };
                self.connect_reply(tid, op, result, Duration::ZERO);
            }
        }
    }

    /// The first `connect` on socket `ino` (`dup` is rscq's copy) after
    /// its earlier connect failed with `failure` while nobody waited: as
    /// the kernel's, it returns that failure, or ECONNABORTED if the
    /// program already took it (`SO_ERROR`, a read or a write), and the
    /// socket may then connect again.
    fn after_failed_connect(&self, ino: u64, dup: &OwnedFd, failure: Errno) -> Errno {
        self.pumps.sockets().remove(ino);
        match hold::forget_failed(dup) {
            Some(_) => failure,
            None => Errno(libc::ECONNABORTED),
        }
    }

    pub(super) fn connect_interrupted(&self, ino: u64, tid: i32) {
        // The interrupted thread is still stopped: its socket becomes a
        // connecting one before it can look at it (the socket's file flags
        // are changed for a moment, which it must not see).
        self.connects
            .hold(ino, |socket| self.pumps.hold.start(socket, ino).ok());
        self.connects.interrupted(ino, tid);
    }

    /// `setsockopt` of an option the server's socket needs; the thread
    /// `to` waits for the answer only for an option that is the server's
    /// alone ([`crate::proto::SockOption::server_only`]), which is returned
    /// here when it needs no round trip.
    pub(super) fn set_sock_option(
        &self,
        to: ReplyTo,
        ino: u64,
        target: Option<crate::proto::OptionTarget>,
        option: crate::proto::SockOption,
    ) -> Option<crate::proto::Response> {
        let held = option.server_only();
        let Some(target) = target else {
            // Not on the server yet: it goes with the connect or bind.
            self.options.record(ino, option);
            return held.then_some(Ok(Reply::Done));
        };
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let request = Request::TcpSetOption { target, option };
            let response = match engine.link.call(&request).await {
                Ok(response) => response,
                Err(e) => Err(engine.connection_failed(&e)),
            };
            let rtt = started.elapsed();
            engine.stats.record("setsockopt", 0, 0, rtt);
            if held {
                let _ = engine
                    .events
                    .send(Event::reply(to.tid, to.sleep, response, rtt));
            }
        });
        None
    }

    /// `getsockopt(TCP_INFO)` of a remote connection: the server socket's
    /// `struct tcp_info`, for `to`.
    pub(super) fn tcp_info(
        &self,
        to: ReplyTo,
        local: crate::proto::SockAddr,
        peer: crate::proto::SockAddr,
    ) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let response = match engine.link.call(&Request::TcpGetInfo { local, peer }).await {
                Ok(response) => response,
                Err(e) => Err(engine.connection_failed(&e)),
            };
            let rtt = started.elapsed();
            engine.stats.record("getsockopt", 0, 0, rtt);
            let _ = engine
                .events
                .send(Event::reply(to.tid, to.sleep, response, rtt));
        });
    }

    pub(super) fn bind_tcp(
        &self,
        reply: ReplyTo,
        fd: Option<ProgramFd>,
        addr: crate::proto::SockAddr,
    ) {
        self.net_call(reply, "bind", move |engine: Engine| async move {
            match fd {
                None => Err(Errno::EBADF),
                Some(fd) => {
                    let options = engine.options.take(fd.ino);
                    engine
                        .pumps
                        .bind(&engine.link, fd.copy, addr, options)
                        .await
                }
            }
        });
    }

    /// The program's last close of a socket bound or listening on the
    /// server: the server's socket goes now, before the close returns (the
    /// sweep of `listeners` would find it closed only later).
    pub(super) fn release_tcp(&self, reply: ReplyTo, fd: Option<ProgramFd>, listener: u64) {
        self.net_call(reply, "close", move |engine: Engine| async move {
            if let Some(fd) = fd {
                engine.pumps.sockets().remove(fd.ino);
            }
            // The close goes on whatever the server says (as the kernel's
            // close always frees the fd); a lost link ends the run anyway.
            match engine.link.call(&Request::TcpUnbind { listener }).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    engine.connection_failed(&e);
                    Ok(())
                }
            }
        });
    }

    pub(super) fn listen_tcp(
        &self,
        reply: ReplyTo,
        fd: Option<ProgramFd>,
        listener: u64,
        backlog: u32,
    ) {
        self.net_call(reply, "listen", move |engine: Engine| async move {
            match fd {
                None => Err(Errno::EBADF),
                Some(fd) => {
                    engine
                        .pumps
                        .listen(&engine.link, fd.copy, listener, backlog)
                        .await
                }
            }
        });
    }
}
