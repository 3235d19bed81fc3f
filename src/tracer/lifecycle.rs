//! Threads and processes coming and going: fork, vfork and clone events
//! (who the child is, what state it inherits), exec events, group stops and
//! other ptrace-event stops, and a thread's or process's end ([`Tracer::on_gone`]).
//!
//! Only bookkeeping and resuming: must not plan or forward syscalls (a
//! seccomp event is handed to `stop`), nor touch the program's memory.

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use super::control::Stop;
use super::state::{ProcessState, Thread, ThreadState};
use super::{Call, ExitStatus, Forwarder, Tracer, is_stop_signal};
use crate::proto::Request;
use crate::syscall::operation::Operation;

impl<F: Forwarder> Tracer<'_, F> {
    pub(super) fn on_gone(&mut self, pid: Pid, status: ExitStatus) {
        let tid = pid.as_raw();
        super::creds::forget_thread(tid);
        let thread = self.threads.remove(&tid);
        let leader = thread.as_ref().is_none_or(|t| t.tgid == tid);
        let tgid = thread.as_ref().map(|t| t.tgid);
        self.abandon(thread.map(|t| t.state));
        if let Some(tgid) = tgid
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
            let _ = self
                .forwarder
                .submit(Call::detached(libc::SYS_exit_group, release));
        }
        if leader && self.placeholders.is_some() {
            // What the process's shared mappings wrote goes to the server
            // at its exit (nothing to do without shadows).
            let sync = Operation::SyncShadows {
                paths: Vec::new(),
                report: true,
            };
            let _ = self.forwarder.submit(Call {
                tid: -1,
                nr: 0,
                operation: sync,
                fd: None,
                sleep: None,
                remote: None,
            });
        }
        if pid == self.root {
            self.root_status = Some(status);
        }
    }

    /// A ptrace-event stop of thread `pid` (`sig` is the stop's signal).
    pub(super) fn on_event(&mut self, stop: Stop, sig: Signal, event: i32) {
        match event {
            libc::PTRACE_EVENT_SECCOMP => self.on_seccomp(stop),
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                self.on_new_child(stop, event);
            }
            libc::PTRACE_EVENT_EXEC => self.on_exec(stop),
            libc::PTRACE_EVENT_STOP => self.on_event_stop(stop, sig),
            _ => stop.resume(),
        }
    }

    /// A fork, vfork or clone of thread `pid`: the child's process and
    /// state, and the child let go if it already stopped.
    fn on_new_child(&mut self, stop: Stop, event: i32) {
        let tid = stop.tid();
        if let Ok(child) = ptrace::getevent(stop.pid()) {
            let child = i32::try_from(child).unwrap_or(0);
            // A number used before: what its earlier thread ran as is not
            // this one's.
            super::creds::forget_thread(child);
            let is_thread = event == libc::PTRACE_EVENT_CLONE
                && stop
                    .regs()
                    .is_ok_and(|r| r.rdi & libc::CLONE_THREAD as u64 != 0);
            let parent_tgid = self.tgid_of(tid);
            if is_thread {
                self.threads.insert(child, Thread::new(parent_tgid));
            } else {
                self.threads.insert(child, Thread::new(child));
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
            if let Some(first) = self.early_stops.remove(&child) {
                first.resume();
            }
        }
        stop.resume();
    }

    /// Thread `pid` ran a new program.
    fn on_exec(&mut self, stop: Stop) {
        let tid = stop.tid();
        // Set-user-ID bits and file capabilities change credentials at an
        // exec.
        super::creds::forget_all();
        // The new program's one thread starts afresh: what its tid held
        // belongs to the old program (what rscq would have restored at the
        // exec's exit, or, when another thread exec'd, the state of the old
        // leader, which the exec killed).
        let old = self.take_state(tid);
        self.set_state(tid, ThreadState::Running);
        // A non-leader thread that execs takes over the leader's tid.
        if let Ok(former) = ptrace::getevent(stop.pid()) {
            let former = i32::try_from(former).unwrap_or(tid);
            if former != tid {
                self.abandon(old);
                self.threads.remove(&former);
            }
        }
        stop.resume();
    }

    /// A thread left `state` for good (it died, or exec replaced it): a
    /// remote call it slept in is told so, so that the engine stops waiting
    /// for it; a stop it was held in has nothing left to resume.
    fn abandon(&mut self, state: Option<ThreadState>) {
        match state {
            Some(ThreadState::Waiting { stop, .. }) => stop.gone(),
            Some(ThreadState::Interrupting { stop, op, .. }) => {
                stop.gone();
                self.forwarder.interrupted(op);
            }
            Some(ThreadState::Sleeping { sleep, .. }) => self.forwarder.interrupted(sleep.op),
            _ => {}
        }
    }

    /// A `PTRACE_EVENT_STOP` of thread `pid`: a group stop, the interrupt
    /// that wakes a sleeping thread, or a new child's first stop.
    fn on_event_stop(&mut self, stop: Stop, sig: Signal) {
        let tid = stop.tid();
        // Under PTRACE_SEIZE the stop signal of a group stop is in
        // the wait status; PTRACE_GETSIGINFO fails for it.
        if is_stop_signal(sig) {
            stop.listen();
        } else if let Some(ThreadState::Woken { .. }) = self.state(tid) {
            self.on_woken(stop);
        } else if matches!(self.state(tid), Some(ThreadState::Sleeping { .. })) {
            // Not our interrupt: keep sleeping. (The thread runs
            // again after the resume, so the listen that follows
            // normally fails, which `Stop::resume_then_listen` allows.)
            stop.resume_then_listen();
        } else if !self.threads.contains_key(&tid) {
            // A new child stopped before its parent's fork event (which
            // makes its `Thread`): its state is not known yet, so it waits
            // for that event.
            self.early_stops.insert(tid, stop);
        } else {
            stop.resume();
        }
    }
}
