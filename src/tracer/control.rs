//! [`Stop`]: a thread of the program in a ptrace stop, and the ptrace
//! requests that let it go. A `Stop` is made from a wait status and must be
//! resumed exactly once: every way to let the thread go takes `self`, so
//! the compiler refuses a second resume, and `#[must_use]` (with the unused
//! variable lint) flags a path that forgets it. A thread held until a reply
//! keeps its `Stop` in its state (`ThreadState::Waiting`), so it is resumed
//! when the reply comes; a thread that died is [`Stop::gone`].
//!
//! Why the requests' errors are dropped, said once here: each is made on a
//! thread rscq saw in a ptrace stop, with a valid signal and registers that
//! only change the syscall number, its arguments, its result or (for an
//! injected call) its instruction pointer. On such a thread ptrace fails
//! only with ESRCH: the thread is gone or no longer stopped (a `SIGKILL`,
//! or another thread's `exit_group` or `execve`). Its end then comes as a
//! wait status, which `lifecycle` handles (`Tracer::on_gone`); there is
//! nothing left to undo for a thread that will not run again. The error is
//! logged at debug level.
//!
//! Stop mechanics only: must not keep state, nor decide what a thread does.

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::mem;
use crate::sys::tracer as sys;

/// A thread in a ptrace stop, to be let go exactly once.
#[must_use = "a stopped thread must be resumed exactly once"]
#[derive(Debug)]
pub(super) struct Stop {
    pid: Pid,
}

impl Stop {
    /// The thread `pid` reported a stop (a wait status).
    pub(super) fn new(pid: Pid) -> Self {
        Self { pid }
    }

    pub(super) fn pid(&self) -> Pid {
        self.pid
    }

    pub(super) fn tid(&self) -> i32 {
        self.pid.as_raw()
    }

    /// `PTRACE_GETREGS`.
    pub(super) fn regs(&self) -> nix::Result<libc::user_regs_struct> {
        ptrace::getregs(self.pid)
    }

    /// The stack pointer (0 if the registers cannot be read).
    pub(super) fn stack_pointer(&self) -> u64 {
        self.regs().map(|r| r.rsp).unwrap_or(0)
    }

    /// `PTRACE_SETREGS`; the thread stays stopped.
    pub(super) fn set_regs(&self, regs: libc::user_regs_struct) {
        if let Err(e) = ptrace::setregs(self.pid, regs) {
            tracing::debug!(pid = %self.pid, "PTRACE_SETREGS failed: {e}");
        }
    }

    /// `PTRACE_SETREGS`, reporting failure; the thread stays stopped.
    pub(super) fn try_set_regs(&self, regs: libc::user_regs_struct) -> nix::Result<()> {
        ptrace::setregs(self.pid, regs)
    }

    /// `PTRACE_CONT`: lets the thread go on.
    pub(super) fn resume(self) {
        cont(self.pid, None);
    }

    /// `PTRACE_CONT`, delivering `sig` if any.
    pub(super) fn resume_with(self, sig: Option<Signal>) {
        cont(self.pid, sig);
    }

    /// Sets `regs`, then lets the thread go on.
    pub(super) fn resume_with_regs(self, regs: libc::user_regs_struct) {
        self.set_regs(regs);
        self.resume();
    }

    /// `PTRACE_SYSCALL`: lets the thread go on to its next syscall stop (the
    /// exit of the call it is in, or the entry of the next one).
    pub(super) fn resume_to_syscall_stop(self) {
        if let Err(e) = ptrace::syscall(self.pid, None) {
            tracing::debug!(pid = %self.pid, "PTRACE_SYSCALL failed: {e}");
        }
    }

    /// Skips the call the thread is stopped in: it returns `ret`.
    pub(super) fn skip(self, ret: i64) {
        if let Ok(mut regs) = self.regs() {
            regs.orig_rax = u64::MAX;
            regs.rax = ret.cast_unsigned();
            self.set_regs(regs);
        }
        self.resume();
    }

    /// Writes `writes` into the program, then skips the call with `ret` (or
    /// with the errno of a write that failed).
    pub(super) fn answer(self, ret: i64, writes: &[(u64, Vec<u8>)]) {
        for (addr, bytes) in writes {
            if let Err(e) = mem::write_bytes(self.pid, *addr, bytes) {
                return self.skip(e.as_syscall_return());
            }
        }
        self.skip(ret);
    }

    /// `PTRACE_LISTEN`: leaves the thread in its group stop, where it still
    /// reports `SIGCONT` and new events. Fails also (ESRCH, or EIO) when the
    /// thread is not in a group stop; it then stays as it is.
    pub(super) fn listen(self) {
        listen(self.pid);
    }

    /// Lets the thread go on, then listens (for an interrupt stop that was
    /// not rscq's, so a group stop that comes meanwhile is kept).
    pub(super) fn resume_then_listen(self) {
        cont(self.pid, None);
        listen(self.pid);
    }

    /// The thread will not run again (it died, or exec replaced it): there
    /// is nothing to resume.
    pub(super) fn gone(self) {}
}

/// `PTRACE_INTERRUPT`: stops the (running) thread in a `PTRACE_EVENT_STOP`,
/// which then comes as a new [`Stop`].
pub(super) fn interrupt(pid: Pid) {
    if let Err(e) = ptrace::interrupt(pid) {
        tracing::debug!(%pid, "PTRACE_INTERRUPT failed: {e}");
    }
}

fn cont(pid: Pid, sig: Option<Signal>) {
    if let Err(e) = ptrace::cont(pid, sig) {
        tracing::debug!(%pid, "PTRACE_CONT failed: {e}");
    }
}

fn listen(pid: Pid) {
    if let Err(e) = sys::ptrace_listen(pid) {
        tracing::debug!(%pid, "PTRACE_LISTEN failed: {e}");
    }
}
