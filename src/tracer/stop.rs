//! Seccomp stops: reads the stopped call, asks the planner for a [`Plan`]
//! and carries it out, one method per kind of plan (run natively, answer
//! locally, forward and hold the thread, or put it to sleep).
//!
//! Must not wait for the engine: a forwarded call leaves its thread in
//! [`ThreadState::Waiting`] or sleeping, and its reply is `reply`'s.

use super::control::Stop;
use super::state::{ExitAction, Sleep, ThreadState, exit_action};
use super::view::TraceeView;
use super::{Call, Forwarder, ProgramFd, Tracer, seccomp, sys};
use crate::errno::Errno;
use crate::proto::{RemotePath, Request};
use crate::syscall::describe::{CopyCall, Took};
use crate::syscall::operation::{Operation, Waiting};
use crate::syscall::paths::RemoteIndex;
use crate::syscall::plan::{self, Plan, Then};

impl<F: Forwarder> Tracer<'_, F> {
    pub(super) fn on_seccomp(&mut self, stop: Stop) {
        let tid = stop.tid();
        let pid = stop.pid();
        if matches!(self.state(tid), Some(ThreadState::MapShadow { .. })) {
            // A call rscq injected for a shared mapping: it runs as is.
            return stop.resume_to_syscall_stop();
        }
        let Ok(info) = sys::seccomp_stop_info(pid) else {
            return stop.resume();
        };
        if info.ret_data != seccomp::TRAP_TAG {
            // A filter the program installed itself asked for a tracer;
            // there is none of its own, so behave as the kernel would.
            return stop.skip(Errno::ENOSYS.as_syscall_return());
        }
        self.stops
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nr = i64::try_from(info.nr).unwrap_or(-1);
        tracing::trace!(tid, nr, "seccomp stop");
        if nr == libc::SYS_getcwd && self.config.fastpath && self.process_has_fd_traps(tid) {
            // The preload library asks for its cwd as it starts, after an
            // exec that kept the fd filter but not the flags of its page.
            super::tell_fastpath(pid, crate::fastpath::FLAG_FD_CALLS_STOP);
        }
        if nr == libc::SYS_getcwd && self.config.fastpath {
            // The same first call after an exec: a remote cwd survives
            // the exec, the page that told it does not.
            let tgid = self.tgid_of(tid);
            if let Some(cwd) = self
                .processes
                .get(&tgid)
                .and_then(|p| p.virtual_cwd.clone())
            {
                super::tell_fastpath_cwd(pid, tgid, Some(&cwd));
            }
        }
        let fd0 = i32::try_from(info.args[0] & 0xffff_ffff).map_or(-1, |v| v);
        // `#!` interpreters followed so far by this exec (see `exec_copy`),
        // and whether a fetch made this very call ready.
        let (exec_hops, ready) = match self.threads.get_mut(&tid) {
            Some(thread) => {
                let hops = std::mem::take(&mut thread.exec_hops);
                if hops == 0 {
                    thread.exec_floor = None;
                }
                (hops, thread.native_once.take() == Some((nr, fd0)))
            }
            None => (0, false),
        };
        // A new call of this thread: its trace lines name its own remote.
        self.traced_on.remove(&tid);
        let (plan, on) = {
            let mut view = TraceeView { tracer: self, pid };
            let forwarding = view.tracer.config.forwarding.clone();
            if ready {
                // Made ready by a fetch: it runs now, with only the
                // address rewriting a UDP receive needs.
                let plan =
                    crate::syscall::udp::plan(nr, info.args, forwarding.pure_net, true, &mut view)
                        .filter(|_| forwarding.net)
                        .unwrap_or(Plan::Native);
                (plan, None)
            } else {
                plan::plan_on(nr, info.args, &forwarding, &mut view)
            }
        };
        let call = (nr, fd0, on);
        self.carry_out(stop, call, info.stack_pointer, exec_hops, plan);
    }

    /// Does what `plan` says for the call `(nr, fd0, on)` of the thread
    /// stopped at `stop` (`fd0` its first argument as an fd, `on` the
    /// remote the planner found; `sp` its stack pointer, `exec_hops` the
    /// `#!` interpreters its `execve` followed so far).
    fn carry_out(
        &mut self,
        stop: Stop,
        (nr, fd0, on): (i64, i32, Option<RemoteIndex>),
        sp: u64,
        exec_hops: u32,
        plan: Plan,
    ) {
        let tid = stop.tid();
        match plan {
            Plan::Native => stop.resume(),
            Plan::NativeRewritten { paths, after } => {
                let after = exit_action(after, 0);
                self.rewrite_and_run(stop, sp, None, &paths, after);
            }
            Plan::NativeWithArgs { data, args } => {
                let call = Some((nr, args));
                self.rewrite_and_run(stop, sp, call, &data, ExitAction::Restore);
            }
            Plan::NativeScratch(scratch) => self.run_on_scratch(stop, sp, *scratch),
            Plan::Return(ret) => {
                let args = self.copy_call(&stop, nr).map(|c| c.args(None));
                self.trace_local(tid, nr, ret, args.as_deref().unwrap_or("..."));
                stop.skip(ret);
            }
            Plan::Answer { ret, writes } => stop.answer(ret, &writes),
            Plan::EnterRemoteDir { local_path } => {
                self.set_virtual_cwd(tid, Some(local_path));
                stop.skip(0);
            }
            Plan::ExecRemote {
                path,
                path_arg,
                argv_arg,
            } => {
                let call = (nr, on);
                self.start_exec_fetch(stop, call, exec_hops, path, path_arg, argv_arg);
            }
            Plan::Forward { request, then } => {
                let operation = Operation::File(request);
                let call = (nr, fd0, on);
                self.start_remote(stop, call, operation, None, Waiting::Held(then));
            }
            Plan::Remote {
                operation,
                fd,
                wait,
            } => self.start_remote(stop, (nr, fd0, on), operation, fd, wait),
        }
    }

    /// [`Plan::Remote`] (and [`Plan::Forward`]): hands `operation` to the
    /// engine with a copy of program fd `fd`, taken once here, and makes
    /// the thread wait as `wait` says: held in its stop (answered at once
    /// if the engine already has the answer), asleep interruptibly, or not
    /// at all. `on` is the remote the planner found, if any.
    fn start_remote(
        &mut self,
        stop: Stop,
        (nr, fd0, on): (i64, i32, Option<RemoteIndex>),
        operation: Operation,
        fd: Option<i32>,
        wait: Waiting,
    ) {
        let tid = stop.tid();
        if let Operation::File(request) = &operation {
            self.note_record_lock(tid, request);
        }
        if let Some(on) = on {
            self.traced_on.insert(tid, on);
        }
        let tgid = self.tgid_of(tid);
        let program_fd = fd.and_then(|fd| ProgramFd::take(tgid, fd));
        let blocks = program_fd.as_ref().is_some_and(|f| !f.nonblocking);
        let (then, result) = match wait {
            Waiting::No => {
                // The call itself runs natively (the program's socket keeps
                // an option it sets, so getsockopt answers as it would); a
                // fd that cannot be copied has nothing to pass on.
                if fd.is_none() || program_fd.is_some() {
                    let call = self.call(tid, nr, operation, program_fd, None).on(on);
                    let _ = self.forwarder.submit(call);
                }
                return stop.resume();
            }
            Waiting::Held(then) => (Some(then), true),
            // A call that may take long (a remote host that drops SYNs, a
            // peer that does not read, a lock held elsewhere) sleeps, so
            // signals (and the socket's timeouts) still end it. A
            // non-blocking socket's is held only until the remote answer.
            Waiting::AsleepIfBlocking(then) if !blocks => (Some(then), true),
            Waiting::AsleepIfBlocking(_) | Waiting::Asleep => (None, true),
            Waiting::UntilReady => (None, false),
        };
        let fd = fd.unwrap_or(fd0);
        match then {
            Some(then) => {
                let text = self.trace_args(&stop, nr, &operation, fd);
                self.wait(stop, nr, then, text);
                let call = self.call(tid, nr, operation, program_fd, None).on(on);
                if let Some(response) = self.forwarder.submit(call) {
                    self.on_reply(tid, response, Took::Local);
                }
            }
            None => {
                let op = self.next_sleep;
                self.next_sleep += 1;
                let operation = operation.numbered(op);
                let text = self.trace_args(&stop, nr, &operation, fd);
                let sleep = Sleep {
                    op,
                    result,
                    on_signal: operation.on_signal(),
                };
                // The call's own first argument (not the socket a `poll`
                // names): its stop after the sleep is known by it.
                if self.sleep(stop, nr, fd0, text, sleep) {
                    // Its reply comes as a `SleeperReply` for `op`.
                    let call = self.call(tid, nr, operation, program_fd, Some(op)).on(on);
                    let _ = self.forwarder.submit(call);
                }
            }
        }
    }

    fn call(
        &self,
        tid: i32,
        nr: i64,
        operation: Operation,
        fd: Option<ProgramFd>,
        sleep: Option<u64>,
    ) -> Call {
        Call {
            tid,
            nr,
            operation,
            fd,
            sleep,
            remote: None,
        }
    }

    /// The `--trace` text of `operation`'s arguments (none without
    /// `--trace`).
    fn trace_args(&self, stop: &Stop, nr: i64, operation: &Operation, fd: i32) -> String {
        if !self.config.trace {
            return String::new();
        }
        let copy = match operation {
            Operation::File(Request::CopyRange { .. }) => self.copy_call(stop, nr),
            _ => None,
        };
        operation.trace_args_in(fd, Some(&self.config.forwarding.mounts), copy)
    }

    /// Under `--trace`, the `sendfile`/`copy_file_range` the thread stopped
    /// at, from its registers, so that its line shows the program's fds in
    /// the call's order (one more ptrace call, only when tracing a copy).
    fn copy_call(&self, stop: &Stop, nr: i64) -> Option<CopyCall> {
        if !self.config.trace || !matches!(nr, libc::SYS_sendfile | libc::SYS_copy_file_range) {
            return None;
        }
        let regs = stop.regs().ok()?;
        CopyCall::of(nr, std::array::from_fn(|i| super::get_arg(&regs, i)))
    }

    /// [`Plan::ExecRemote`]: holds the thread while the engine makes a
    /// local copy of the remote executable `path` (see `exec_copy`).
    fn start_exec_fetch(
        &mut self,
        stop: Stop,
        (nr, on): (i64, Option<RemoteIndex>),
        exec_hops: u32,
        path: RemotePath,
        path_arg: u8,
        argv_arg: u8,
    ) {
        let Some(copy) = self.placeholders.as_mut().map(|d| d.copy_path()) else {
            return stop.skip(Errno::EACCES.as_syscall_return());
        };
        self.thread_mut(stop.tid()).exec_hops = exec_hops;
        let then = Then::Exec {
            copy: copy.clone(),
            path_arg,
            argv_arg,
        };
        let operation = Operation::FetchExecutable { path, copy };
        self.start_remote(stop, (nr, -1, on), operation, None, Waiting::Held(then));
    }

    /// A record lock asked for by a process: from now on its closes of
    /// remote files and its exit release its locks.
    fn note_record_lock(&mut self, tid: i32, request: &Request) {
        if let Request::RecordLock {
            owner: crate::proto::LockOwner::Process(_),
            set: true,
            ..
        } = request
        {
            let tgid = self.tgid_of(tid);
            self.process_mut(tgid).record_locks = true;
        }
    }
}
