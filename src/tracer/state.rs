//! The tracer's bookkeeping types: what rscq keeps for each thread
//! ([`Thread`]: where it is in rscq's handling of its syscall,
//! [`ThreadState`], with [`Sleep`] and [`ExitAction`]) and for each process
//! ([`ProcessState`]).
//!
//! One struct each. A thread's [`Thread`] is made at its parent's fork or
//! clone event and goes at its end (its fields that belong to one call,
//! such as `native_once`, are taken by that call's next stop). The one
//! thing kept outside it is a new child whose first stop comes before its
//! parent's event: nothing is known of it yet (not even its process), so
//! the tracer parks its [`Stop`] by tid until the event makes its `Thread`.
//!
//! Plain data and pure conversions only: no ptrace call, no I/O, no
//! decision about what a thread does next.

use std::os::fd::OwnedFd;

use nix::sys::signal::Signal;

use super::control::Stop;
use crate::errno::Errno;
use crate::proto::{Handle, Response};
use crate::syscall::describe::Took;
use crate::syscall::operation::OnSignal;
use crate::syscall::plan::{AfterNative, Then};

/// What rscq keeps for one thread of the program.
#[derive(Debug)]
pub(super) struct Thread {
    /// Its thread group (process) id.
    pub(super) tgid: i32,
    pub(super) state: ThreadState,
    /// Its next stop for `(nr, fd)` runs natively: the engine has made the
    /// call ready (data delivered into the socket).
    pub(super) native_once: Option<(i64, i32)>,
    /// `#!` interpreters followed so far by its remote `execve`.
    pub(super) exec_hops: u32,
    /// Where its rewritten `#!` `argv` begins: scratch memory for the same
    /// call goes below it.
    pub(super) exec_floor: Option<u64>,
}

impl Thread {
    /// A running thread of process `tgid`.
    pub(super) fn new(tgid: i32) -> Self {
        Self {
            tgid,
            state: ThreadState::Running,
            native_once: None,
            exec_hops: 0,
            exec_floor: None,
        }
    }
}

/// Where a thread is in rscq's handling of its syscall.
#[derive(Debug)]
pub(super) enum ThreadState {
    Running,
    /// Waiting for a reply while asleep in a `ppoll` rscq put in place of
    /// its syscall, so a signal can still interrupt it.
    Sleeping {
        saved: libc::user_regs_struct,
        nr: i64,
        fd: i32,
        request_text: String,
        sleep: Sleep,
    },
    /// A signal the program handles came while it slept in a send: it
    /// waits in its signal-delivery stop until the server says how many
    /// bytes went, which is the call's result (or `-ERESTARTSYS` for none),
    /// then takes the signal.
    Interrupting {
        /// Its signal-delivery stop.
        stop: Stop,
        saved: libc::user_regs_struct,
        nr: i64,
        request_text: String,
        op: u64,
        sig: Signal,
    },
    /// Its reply came; it has been interrupted to take it.
    Woken {
        saved: libc::user_regs_struct,
        nr: i64,
        fd: i32,
        response: Response,
        sleep: Sleep,
    },
    /// Held in its seccomp stop until the reply to a forwarded call.
    Waiting {
        /// Its seccomp stop.
        stop: Stop,
        nr: i64,
        then: Then,
        request_text: String,
    },
    /// Running a `seccomp(2)` rscq put in its place after a syscall's exit
    /// (see [`fd_filter_rules`]); then `restore` is what the program sees.
    /// Signals that come meanwhile wait in `deferred` and are sent again.
    Injecting {
        restore: libc::user_regs_struct,
        entered: bool,
        deferred: Vec<Signal>,
        /// The filter is the shared-mapping one (`map_filter_rules`), not
        /// the fd-call one.
        map: bool,
    },
    /// Running the calls injected for an `mmap` of a shadow file
    /// (`mapshadow`): `saved` are the `mmap`'s registers at its seccomp
    /// stop; `entered` once the injected call's entry stop passed. Signals
    /// that come meanwhile wait in `deferred` and are sent again.
    MapShadow {
        saved: libc::user_regs_struct,
        step: ShadowStep,
        entered: bool,
        deferred: Vec<Signal>,
    },
    /// Its syscall was rewritten; at the exit stop the registers are put
    /// back (the program may rely on argument registers being preserved).
    AwaitingExit {
        saved: libc::user_regs_struct,
        after: ExitAction,
    },
}

/// Which injected call of an `mmap` of a shadow file runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ShadowStep {
    /// The program's `mmap`, on the shadow's fd.
    Map { fd: u64 },
    /// The `close` of that fd; `mapped` is the `mmap`'s result.
    Close { mapped: i64 },
}

/// A thread asleep in a remote operation (see `signals`): what ends the
/// sleep and what its reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sleep {
    /// Its number: only an [`super::Event::SleeperReply`] for it ends it.
    pub(super) op: u64,
    /// Its reply is the call's result (a count, 0 or an errno); otherwise
    /// the engine made the call ready, and it runs natively once woken.
    pub(super) result: bool,
    pub(super) on_signal: OnSignal,
}

#[derive(Debug)]
pub(super) enum ExitAction {
    Restore,
    /// An `execve` of a remote executable's local copy ran: it failed if
    /// the call returns, and the copy goes.
    RemoveFile(std::path::PathBuf),
    /// The program's `mmap` ran as an `openat` of a shadow file: the
    /// `mmap` itself runs next, on the fd it returned (`mapshadow`).
    ShadowOpened,
    /// The call ran natively; it returns this error instead.
    Fail(Errno),
    /// The program's `bind` or `listen`, answered by the server, ran as a
    /// `seccomp(2)` that puts the socket filter
    /// (`seccomp::socket_filter_rules`) into the process; the program sees
    /// `ret`, its call's own result. `None`: the call (a UDP `sendto` or
    /// `connect` whose socket the server just bound) runs again instead,
    /// to be planned with its socket remote.
    SocketTraps {
        ret: Option<i64>,
    },
    /// The program's own call ran (its arguments perhaps in scratch memory
    /// at `scratch`): then what the planner asked for.
    Native {
        after: AfterNative,
        scratch: u64,
    },
    Placeholder {
        read_end: OwnedFd,
        key: u64,
        handle: Handle,
        trace: Option<PendingTrace>,
    },
}

/// A `--trace` line that waits for its call's result, known only at the
/// call's exit (an open that installs a placeholder).
#[derive(Debug)]
pub(super) struct PendingTrace {
    pub(super) name: &'static str,
    pub(super) args: String,
    pub(super) took: Took,
}

#[derive(Debug, Default, Clone)]
pub(super) struct ProcessState {
    /// The remote directory the program believes is its cwd.
    pub(super) virtual_cwd: Option<Vec<u8>>,
    /// Whether the fd-call filter is in this process (children inherit it
    /// with the state).
    pub(super) fd_traps: bool,
    /// Whether the shared-mapping filter is in this process.
    pub(super) map_traps: bool,
    /// Whether the socket filter (its `close` stops) is in this process,
    /// or putting it in failed once (then it is not tried again).
    pub(super) socket_traps: bool,
    /// Whether it asked for a record lock on a remote file: its closes of
    /// remote files and its exit then release them on the server.
    pub(super) record_locks: bool,
}

/// The result a numbered sleep's reply gives its call: a count, 0, or a
/// negative errno (`-ERESTARTSYS` included).
pub(super) fn sleep_result(response: &Response) -> i64 {
    match response {
        Ok(crate::proto::Reply::Count(n)) => i64::try_from(*n).unwrap_or(i64::MAX),
        Ok(_) => 0,
        Err(e) => e.as_syscall_return(),
    }
}

pub(super) fn exit_action(after: AfterNative, scratch: u64) -> ExitAction {
    match after {
        AfterNative::Nothing => ExitAction::Restore,
        after => ExitAction::Native { after, scratch },
    }
}
