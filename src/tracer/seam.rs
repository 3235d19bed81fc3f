//! The one seam between the tracer thread and the engine: [`Forwarder`],
//! what the tracer needs from the engine, and the values that cross it. A
//! stopped call's remote work is one [`Call`]: an [`Operation`] (a value
//! the engine interprets), how the thread waits for it (held, or asleep
//! with a sleep number), and the program's fd as rscq's own copy
//! ([`ProgramFd`], taken once during the stop with what the tracer read of
//! it), so the engine never reaches into the program itself. Replies come
//! back as [`Event`]s.
//!
//! Types and the fd copy only: must not decide what a call does (the
//! planner's) nor how the engine carries it out.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::wait::WaitStatus;

use crate::proto::{Handle, Request, Response, SockAddr};
use crate::syscall::operation::Operation;
use crate::syscall::paths::RemoteIndex;

/// Something the tracer thread must react to.
#[derive(Debug)]
pub enum Event {
    Wait(WaitStatus),
    /// The reaper found no traced process left.
    NoChildren,
    /// A forwarded call of thread `tid` finished.
    Reply {
        tid: i32,
        response: Response,
        rtt: Duration,
    },
    /// The call thread `tid` sleeps on (sleep number `op`) finished; a
    /// reply for a sleep the thread has left (a signal came) is dropped.
    SleeperReply {
        tid: i32,
        op: u64,
        response: Response,
        rtt: Duration,
    },
    /// A signal rscq received that belongs to the program.
    Signal(i32),
}

impl Event {
    /// The event that gives thread `tid` its reply: a sleeper's (sleep
    /// number `sleep`) only reaches that sleep.
    pub fn reply(tid: i32, sleep: Option<u64>, response: Response, rtt: Duration) -> Self {
        match sleep {
            Some(op) => Self::SleeperReply {
                tid,
                op,
                response,
                rtt,
            },
            None => Self::Reply { tid, response, rtt },
        }
    }
}

/// One remote operation for one stopped call.
#[derive(Debug)]
pub struct Call {
    /// The thread whose call it is; not positive when no thread waits for
    /// it (a close after the program's last, an exit's lock release).
    pub tid: i32,
    /// The syscall, for `--stats`.
    pub nr: i64,
    pub operation: Operation,
    /// The program's fd the operation is on, if it is on one (`None` also
    /// when it could not be copied: the engine answers as the fd's call
    /// would).
    pub fd: Option<ProgramFd>,
    /// The sleep number of a thread asleep until the reply (which is then
    /// an [`Event::SleeperReply`]); `None` for a thread held in its stop.
    pub sleep: Option<u64>,
    /// The remote of the mount or remote file it acts on; `None` when it
    /// names neither (a socket's goes to the `--net` remote, `uname` to the
    /// `--uname` one, and a process's exit, which touches every remote, to
    /// all).
    pub remote: Option<RemoteIndex>,
}

impl Call {
    /// A file request no thread waits for.
    pub fn detached(nr: i64, request: Request) -> Self {
        Self {
            tid: -1,
            nr,
            operation: Operation::File(request),
            fd: None,
            sleep: None,
            remote: None,
        }
    }

    /// The same call, on remote `remote`.
    #[must_use]
    pub fn on(self, remote: Option<RemoteIndex>) -> Self {
        Self { remote, ..self }
    }
}

/// rscq's copy of a program fd, taken during the call's stop, and what the
/// tracer read of it then.
#[derive(Debug)]
pub struct ProgramFd {
    /// Shares the program's open file description (`pidfd_getfd(2)`).
    pub copy: OwnedFd,
    /// The process and fd number it was copied from.
    pub tgid: i32,
    pub fd: i32,
    /// Its inode (a socket's identity across processes and dups).
    pub ino: u64,
    /// `O_NONBLOCK` on its file description.
    pub nonblocking: bool,
}

impl ProgramFd {
    /// Copies fd `fd` of process `tgid` (a thread-group leader).
    pub fn take(tgid: i32, fd: i32) -> Option<Self> {
        let copy = crate::sys::fd::dup_fd(tgid, fd)?;
        let ino = rustix::fs::fstat(&copy).ok()?.st_ino;
        let flags = rustix::fs::fcntl_getfl(&copy).ok()?;
        Some(Self {
            copy,
            tgid,
            fd,
            ino,
            nonblocking: flags.contains(rustix::fs::OFlags::NONBLOCK),
        })
    }
}

/// What the tracer needs from the engine.
pub trait Forwarder {
    /// Starts `call`. A file request the engine answers from what it
    /// already holds returns its response at once (no event, no wake-up:
    /// this is the hot path of `ls -l`); otherwise the reply arrives later
    /// as an event ([`Event::reply`]), and an operation the call runs
    /// natively past (a socket option, a prefetch) has none.
    fn submit(&self, call: Call) -> Option<Response>;
    /// A signal took its thread out of sleep `op` (or the thread is gone):
    /// the operation goes on without it (a connect), or stops waiting and
    /// answers with what it did (a send: the bytes that went, or
    /// `-ERESTARTSYS` if none did; a lock wait: EINTR, or the lock if it
    /// came first), or is dropped.
    fn interrupted(&self, op: u64);
    /// Watches a placeholder's read end; when every copy of the program's
    /// fd is closed, the remote handle (on `remote`) is closed too.
    fn watch_close(&self, read_end: OwnedFd, key: u64, handle: Handle, remote: Option<RemoteIndex>);
    /// The loopback address of the relay for remote `peer`, made on first use.
    fn udp_relay(&self, v6: bool, peer: SockAddr) -> Option<SocketAddr>;
    /// The remote peer a relay's loopback address stands for.
    fn udp_peer_of(&self, relay: SocketAddr) -> Option<SockAddr>;
    /// Prints one `--trace` line.
    fn trace_line(&self, line: String);
}
