//! Remote `connect(2)` of a TCP socket, with the kernel's semantics for a
//! blocking connect that a signal interrupts.
//!
//! A blocking connect sleeps interruptibly (see the tracer's `Sleeping`
//! state) while the server connects. If a signal comes first, the kernel
//! either restarts the call (`SA_RESTART`, or a signal without handler) or
//! fails it with EINTR, and in Linux the connection then goes on
//! asynchronously. rscq does the same: the remote connect keeps running,
//! keyed by the program socket's inode; a later `connect` on that socket
//! joins it (blocking) or gets EALREADY (non-blocking), and the first one
//! after it ended gets its result, as `__inet_stream_connect` gives.
//!
//! So that the program's socket is not left unconnected (an unconnected TCP
//! socket polls as writable and hung up), an interrupted connect puts it in
//! a real local SYN-SENT at once ([`super::hold`]), which also tells when
//! the program closes the socket (or the program dies): the remote connect
//! is then cancelled, and the server drops it.
//!
//! Bookkeeping only: must not touch the program's socket or the wire; the
//! engine runs the remote connect, and the tracer stops and wakes threads.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::Notify;

use crate::errno::Errno;

/// A thread waiting for a remote connect's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Waiter {
    pub tid: i32,
    /// The tracer's sleep this result wakes; `None` for a thread held in
    /// its seccomp stop.
    pub op: Option<u64>,
    /// The call was a non-blocking connect: success is EINPROGRESS.
    pub nonblocking: bool,
}

impl Waiter {
    /// What this waiter's `connect` returns for the connect's `result`.
    pub fn answer(&self, result: Result<(), Errno>) -> Result<(), Errno> {
        match result {
            Ok(()) if self.nonblocking => Err(Errno(libc::EINPROGRESS)),
            other => other,
        }
    }
}

#[derive(Debug)]
enum Entry {
    Running {
        waiters: Vec<Waiter>,
        interrupted: Arc<Notify>,
        /// A signal interrupted a waiter: the socket has been (or is being)
        /// attached locally, and the result is kept for the next connect.
        was_interrupted: bool,
        /// rscq's copy of the program's socket while the connect holds its
        /// caller, so that an interruption can put it in its local
        /// connecting state before the caller runs again.
        socket: Option<OwnedFd>,
        /// Set once the socket was put in that state.
        held: Option<super::hold::Held>,
    },
    /// An interrupted connect that ended with nobody waiting: the next
    /// `connect` on the socket returns this, once.
    Ended(Result<(), Errno>),
}

/// What a `connect` on a socket finds.
#[derive(Debug)]
pub enum Joined {
    /// No connect is under way: start one, and call [`Connects::interrupted`]'s
    /// notify when a signal comes.
    Start(Arc<Notify>),
    /// One is under way and the caller was added as a waiter.
    Waiting,
    /// One is under way and the caller does not wait (non-blocking).
    Already,
    /// An earlier, interrupted connect ended with this result.
    Ended(Result<(), Errno>),
}

/// The remote connects under way, by program socket inode.
#[derive(Debug, Default)]
pub struct Connects {
    table: Mutex<HashMap<u64, Entry>>,
}

impl Connects {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A `connect` of `waiter` on socket `ino`.
    pub fn join(&self, ino: u64, waiter: Waiter) -> Joined {
        let mut table = self.table();
        match table.get_mut(&ino) {
            Some(Entry::Running { waiters, .. }) => {
                if waiter.nonblocking {
                    Joined::Already
                } else {
                    waiters.push(waiter);
                    Joined::Waiting
                }
            }
            Some(Entry::Ended(_)) => match table.remove(&ino) {
                Some(Entry::Ended(result)) => Joined::Ended(result),
                _ => Joined::Already,
            },
            None => {
                let interrupted = Arc::new(Notify::new());
                table.insert(
                    ino,
                    Entry::Running {
                        waiters: vec![waiter],
                        interrupted: interrupted.clone(),
                        was_interrupted: false,
                        socket: None,
                        held: None,
                    },
                );
                Joined::Start(interrupted)
            }
        }
    }

    /// A signal interrupted thread `tid` in its connect on `ino` (or the
    /// thread is gone): it no longer waits, and the connect goes on
    /// asynchronously.
    pub fn interrupted(&self, ino: u64, tid: i32) {
        if let Some(Entry::Running {
            waiters,
            interrupted,
            was_interrupted,
            ..
        }) = self.table().get_mut(&ino)
        {
            waiters.retain(|w| w.tid != tid);
            *was_interrupted = true;
            interrupted.notify_one();
        }
    }

    /// Keeps `socket`, rscq's copy of socket `ino`, for [`Connects::hold`].
    pub fn keep_socket(&self, ino: u64, socket: OwnedFd) {
        if let Some(Entry::Running { socket: kept, .. }) = self.table().get_mut(&ino) {
            *kept = Some(socket);
        }
    }

    /// Puts socket `ino` in its local connecting state with `start`, once,
    /// while the caller is still stopped (see [`super::hold`]).
    pub fn hold(&self, ino: u64, start: impl FnOnce(&OwnedFd) -> Option<super::hold::Held>) {
        if let Some(Entry::Running {
            socket: Some(socket),
            held: held @ None,
            ..
        }) = self.table().get_mut(&ino)
        {
            *held = start(socket);
        }
    }

    /// The local connecting state [`Connects::hold`] made, if any; rscq's
    /// copy of the socket is let go either way, so that the program's close
    /// really closes it.
    pub fn take_held(&self, ino: u64) -> Option<super::hold::Held> {
        match self.table().get_mut(&ino) {
            Some(Entry::Running { socket, held, .. }) => {
                *socket = None;
                held.take()
            }
            _ => None,
        }
    }

    /// The connect on `ino` goes on asynchronously (its caller is
    /// non-blocking): its result is kept for the next connect.
    pub fn went_async(&self, ino: u64) {
        if let Some(Entry::Running {
            was_interrupted, ..
        }) = self.table().get_mut(&ino)
        {
            *was_interrupted = true;
        }
    }

    /// The non-blocking waiters of the connect on `ino`, which stop waiting.
    pub fn take_nonblocking(&self, ino: u64) -> Vec<Waiter> {
        match self.table().get_mut(&ino) {
            Some(Entry::Running { waiters, .. }) => {
                let (nonblocking, blocking) = waiters.iter().partition(|w| w.nonblocking);
                *waiters = blocking;
                nonblocking
            }
            _ => Vec::new(),
        }
    }

    /// The connect on `ino` ended: returns who waits for `result`.
    pub fn finish(&self, ino: u64, result: Result<(), Errno>) -> Vec<Waiter> {
        let mut table = self.table();
        match table.remove(&ino) {
            Some(Entry::Running {
                waiters,
                was_interrupted,
                ..
            }) => {
                if waiters.is_empty() && was_interrupted {
                    table.insert(ino, Entry::Ended(result));
                }
                waiters
            }
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BLOCKING: Waiter = Waiter {
        tid: 10,
        op: Some(1),
        nonblocking: false,
    };

    #[test]
    fn a_second_connect_joins_or_is_already_under_way() {
        let c = Connects::default();
        assert!(matches!(c.join(7, BLOCKING), Joined::Start(_)));
        let other = Waiter {
            tid: 11,
            op: Some(2),
            nonblocking: false,
        };
        assert!(matches!(c.join(7, other), Joined::Waiting));
        let nb = Waiter {
            nonblocking: true,
            ..other
        };
        assert!(matches!(c.join(7, nb), Joined::Already));
        assert_eq!(c.finish(7, Ok(())), vec![BLOCKING, other]);
        // Nobody was interrupted: nothing is kept.
        assert!(matches!(c.join(7, BLOCKING), Joined::Start(_)));
    }

    #[test]
    fn an_interrupted_connect_keeps_its_result_for_the_next_call_once() {
        let c = Connects::default();
        let Joined::Start(notify) = c.join(7, BLOCKING) else {
            panic!("not started");
        };
        c.interrupted(7, BLOCKING.tid);
        // The notification is stored for the task that awaits it later.
        let waited = notify.notified();
        tokio::pin!(waited);
        assert!(
            futures_ready(waited.as_mut()),
            "the interruption must be seen"
        );
        assert!(c.finish(7, Err(Errno(libc::ECONNREFUSED))).is_empty());
        assert!(matches!(
            c.join(7, BLOCKING),
            Joined::Ended(Err(Errno(libc::ECONNREFUSED)))
        ));
        assert!(matches!(c.join(7, BLOCKING), Joined::Start(_)));
    }

    #[test]
    fn a_restarted_connect_waits_for_the_same_result() {
        let c = Connects::default();
        let _ = c.join(7, BLOCKING);
        c.interrupted(7, BLOCKING.tid);
        let again = Waiter {
            op: Some(5),
            ..BLOCKING
        };
        assert!(matches!(c.join(7, again), Joined::Waiting));
        assert_eq!(c.finish(7, Ok(())), vec![again]);
        assert!(matches!(c.join(7, BLOCKING), Joined::Start(_)));
    }

    #[test]
    fn a_held_nonblocking_connect_goes_async() {
        let c = Connects::default();
        let nb = Waiter {
            nonblocking: true,
            ..BLOCKING
        };
        let _ = c.join(7, nb);
        c.went_async(7);
        assert_eq!(c.take_nonblocking(7), vec![nb]);
        assert!(c.finish(7, Ok(())).is_empty());
        assert!(matches!(c.join(7, nb), Joined::Ended(Ok(()))));
    }

    #[test]
    fn nonblocking_success_is_in_progress() {
        let nb = Waiter {
            nonblocking: true,
            ..BLOCKING
        };
        assert_eq!(nb.answer(Ok(())), Err(Errno(libc::EINPROGRESS)));
        assert_eq!(BLOCKING.answer(Ok(())), Ok(()));
        assert_eq!(
            nb.answer(Err(Errno(libc::ECONNREFUSED))),
            Err(Errno(libc::ECONNREFUSED))
        );
    }

    /// Polls a future once with a no-op waker.
    fn futures_ready<F: Future>(f: std::pin::Pin<&mut F>) -> bool {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        f.poll(&mut cx).is_ready()
    }
}
