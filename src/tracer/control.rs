//! The ptrace requests that let a stopped thread go (with or without new
//! registers), whose failure needs no handling.
//!
//! Why their errors are dropped, said once here: each is made on a thread
//! rscq saw in a ptrace stop, with a valid signal and registers that only
//! change the syscall number, its arguments, its result or (for an
//! injected call) its instruction pointer. On such a thread ptrace fails
//! only with ESRCH: the thread is gone or no longer stopped (a `SIGKILL`,
//! or another thread's `exit_group` or `execve`). Its end then comes as a
//! wait status, which `lifecycle` handles (`Tracer::on_gone`); there is
//! nothing left to undo for a thread that will not run again. The error is
//! logged at debug level.
//!
//! Wrappers only: must not keep state, nor decide what a thread does.

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::sys::tracer as sys;

/// `PTRACE_CONT`: lets the thread go on, delivering `sig` if any.
pub(super) fn resume(pid: Pid, sig: Option<Signal>) {
    if let Err(e) = ptrace::cont(pid, sig) {
        tracing::debug!(%pid, "PTRACE_CONT failed: {e}");
    }
}

/// `PTRACE_SYSCALL`: lets the thread go on to its next syscall stop (the
/// exit of the call it is in, or the entry of the next one).
pub(super) fn resume_to_syscall_stop(pid: Pid) {
    if let Err(e) = ptrace::syscall(pid, None) {
        tracing::debug!(%pid, "PTRACE_SYSCALL failed: {e}");
    }
}

/// `PTRACE_SETREGS`.
pub(super) fn set_regs(pid: Pid, regs: libc::user_regs_struct) {
    if let Err(e) = ptrace::setregs(pid, regs) {
        tracing::debug!(%pid, "PTRACE_SETREGS failed: {e}");
    }
}

/// `PTRACE_INTERRUPT`: stops the (running) thread in a `PTRACE_EVENT_STOP`.
pub(super) fn interrupt(pid: Pid) {
    if let Err(e) = ptrace::interrupt(pid) {
        tracing::debug!(%pid, "PTRACE_INTERRUPT failed: {e}");
    }
}

/// `PTRACE_LISTEN`: leaves the thread in its group stop, where it still
/// reports `SIGCONT` and new events. Fails also (ESRCH, or EIO) when the
/// thread is not in a group stop; it then stays as it is.
pub(super) fn listen(pid: Pid) {
    if let Err(e) = sys::ptrace_listen(pid) {
        tracing::debug!(%pid, "PTRACE_LISTEN failed: {e}");
    }
}
