//! Threads and processes coming and going: fork, vfork and clone events
//! (who the child is, what state it inherits), exec events, group stops and
//! other ptrace-event stops, and a thread's or process's end ([`Tracer::on_gone`]).
//!
//! Only bookkeeping and resuming: must not plan or forward syscalls (a
//! seccomp event is handed to `stop`), nor touch the program's memory.

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::control;
use super::state::{ProcessState, Sleep, ThreadState};
use super::{ExitStatus, Forwarder, Tracer, is_stop_signal};
use crate::proto::Request;

impl<F: Forwarder> Tracer<'_, F> {
    pub(super) fn on_gone(&mut self, pid: Pid, status: ExitStatus) {
        let tid = pid.as_raw();
        let leader = self.tgid.get(&tid).is_none_or(|&tgid| tgid == tid);
        let state = self.threads.remove(&tid);
        self.abandon(tid, state);
        if let Some(tgid) = self.tgid.remove(&tid)
            && tgid == tid
            && let Some(process) = self.processes.remove(&tgid)
            && process.record_locks
        {
            // The kernel drops a process's record locks when it exits.
            let release = Request::ReleaseLocks {
                owner: tgid.cast_unsigned(),
                handle: None,
            };
            // No thread waits for it: an answer given at once is not needed.
            let _ = self.forwarder.submit(-1, libc::SYS_exit_group, release);
        }
        if leader && self.placeholders.is_some() {
            // What the process's shared mappings wrote goes to the server
            // at its exit (nothing to do without shadows).
            self.forwarder.sync_shadows(-1, Vec::new(), true);
        }
        if pid == self.root {
            self.root_status = Some(status);
        }
    }

    /// A ptrace-event stop of thread `pid` (`sig` is the stop's signal).
    pub(super) fn on_event(&mut self, pid: Pid, sig: Signal, event: i32) {
        match event {
            libc::PTRACE_EVENT_SECCOMP => self.on_seccomp(pid),
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                self.on_new_child(pid, event);
            }
            libc::PTRACE_EVENT_EXEC => self.on_exec(pid),
            libc::PTRACE_EVENT_STOP => self.on_event_stop(pid, sig),
            _ => {
                control::resume(pid, None);
            }
        }
    }

    /// A fork, vfork or clone of thread `pid`: the child's process and
    /// state, and the child let go if it already stopped.
    fn on_new_child(&mut self, pid: Pid, event: i32) {
        let tid = pid.as_raw();
        if let Ok(child) = ptrace::getevent(pid) {
            let child = i32::try_from(child).unwrap_or(0);
            let is_thread = event == libc::PTRACE_EVENT_CLONE
                && ptrace::getregs(pid).is_ok_and(|r| r.rdi & libc::CLONE_THREAD as u64 != 0);
            let parent_tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
            if is_thread {
                self.tgid.insert(child, parent_tgid);
            } else {
                self.tgid.insert(child, child);
                let state = ProcessState {
                    // Record locks are not inherited (fcntl(2)).
                    record_locks: false,
                    ..self
                        .processes
                        .get(&parent_tgid)
                        .cloned()
                        .unwrap_or_default()
                };
                self.processes.insert(child, state);
            }
            self.threads.insert(child, ThreadState::Running);
            if self.early_stops.remove(&child) {
                control::resume(Pid::from_raw(child), None);
            } else {
                self.expected.insert(child);
            }
        }
        control::resume(pid, None);
    }

    /// Thread `pid` ran a new program.
    fn on_exec(&mut self, pid: Pid) {
        let tid = pid.as_raw();
        // The new program's one thread starts afresh: what its tid held
        // belongs to the old program (what rscq would have restored at the
        // exec's exit, or, when another thread exec'd, the state of the old
        // leader, which the exec killed).
        let old = self.threads.insert(tid, ThreadState::Running);
        // A non-leader thread that execs takes over the leader's tid.
        if let Ok(former) = ptrace::getevent(pid) {
            let former = i32::try_from(former).unwrap_or(tid);
            if former != tid {
                self.abandon(tid, old);
                self.threads.remove(&former);
                self.tgid.remove(&former);
            }
        }
        control::resume(pid, None);
    }

    /// A thread left `state` for good (it died): a remote call it slept in
    /// is told so, so that the engine stops waiting for it.
    fn abandon(&mut self, tid: i32, state: Option<ThreadState>) {
        match state {
            Some(ThreadState::Sleeping {
                sleep: Sleep::Connect { socket, .. },
                ..
            }) => self.forwarder.connect_interrupted(socket, tid),
            Some(
                ThreadState::Sleeping {
                    sleep: Sleep::Send { op } | Sleep::Wait { op },
                    ..
                }
                | ThreadState::Interrupting { op, .. },
            ) => self.forwarder.interrupted(op),
            _ => {}
        }
    }

    /// A `PTRACE_EVENT_STOP` of thread `pid`: a group stop, the interrupt
    /// that wakes a sleeping thread, or a new child's first stop.
    fn on_event_stop(&mut self, pid: Pid, sig: Signal) {
        let tid = pid.as_raw();
        // Under PTRACE_SEIZE the stop signal of a group stop is in
        // the wait status; PTRACE_GETSIGINFO fails for it.
        if is_stop_signal(sig) {
            control::listen(pid);
        } else if let Some(ThreadState::Woken { .. }) = self.threads.get(&tid) {
            self.on_woken(pid);
        } else if matches!(self.threads.get(&tid), Some(ThreadState::Sleeping { .. })) {
            // Not our interrupt: keep sleeping. (The thread runs
            // again after the resume, so the listen that follows
            // normally fails, which `control::listen` allows.)
            control::resume(pid, None);
            control::listen(pid);
        } else if !self.threads.contains_key(&tid) && !self.expected.contains(&tid) {
            // A new child stopped before its parent's fork event: its
            // state is not known yet, so it waits for that event.
            self.early_stops.insert(tid);
        } else {
            self.expected.remove(&tid);
            control::resume(pid, None);
        }
    }
}
