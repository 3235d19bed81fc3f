//! Replies to forwarded calls: gives a held thread its result, wakes a
//! sleeping one, or finishes an interrupted send, and carries out the
//! [`Outcome`] of a reply (answer, run natively, exec, install a
//! placeholder, ...), one method per kind.
//!
//! Must not plan calls; a reply that needs a new plan hands the thread back
//! to `stop`.

use nix::unistd::Pid;

use super::control::{self, Stop};
use super::state::{ExitAction, PendingTrace, ThreadState, sleep_result};
use super::{Call, Forwarder, Tracer, creds};
use crate::errno::Errno;
use crate::proto::{Handle, Reply, Request, Response};
use crate::syscall::describe::{Returned, Took, TraceLine, with_data_read};
use crate::syscall::nr;
use crate::syscall::plan::{self, Outcome, Then};

impl<F: Forwarder> Tracer<'_, F> {
    /// The reply to thread `tid`'s forwarded call, and where it came from
    /// (`took`: a round trip, or rscq's own answer).
    pub(super) fn on_reply(&mut self, tid: i32, response: Response, took: Took) {
        match self.state(tid) {
            Some(ThreadState::Interrupting { .. }) => self.finish_interrupted(tid, response, took),
            Some(ThreadState::Sleeping { .. }) => self.wake(tid, response, took),
            _ => self.finish_waiting(tid, response, took),
        }
    }

    /// A send interrupted by a signal the program handles: the reply says
    /// how many bytes went; the thread returns that and takes the signal.
    fn finish_interrupted(&mut self, tid: i32, response: Response, took: Took) {
        let Some(ThreadState::Interrupting {
            stop,
            saved,
            nr,
            request_text,
            sig,
            ..
        }) = self.take_state(tid)
        else {
            return;
        };
        let ret = sleep_result(&response);
        self.trace(&TraceLine {
            tid,
            name: nr::name(nr),
            args: &request_text,
            ret: Returned::Value(ret),
            took,
            note: Some(sig.as_str()),
            remote: None,
        });
        let mut regs = saved;
        regs.rax = ret.cast_unsigned();
        stop.set_regs(regs);
        stop.resume_with(Some(sig));
    }

    /// A sleeping thread's reply: kept until the thread is interrupted out
    /// of its sleep (see `on_woken`).
    fn wake(&mut self, tid: i32, response: Response, took: Took) {
        let Some(ThreadState::Sleeping {
            saved,
            nr,
            fd,
            request_text,
            sleep,
        }) = self.take_state(tid)
        else {
            return;
        };
        // What the thread gets: the reply's result, the call run natively
        // (its result unknown here), or the remote error.
        let (ret, note) = match &response {
            _ if sleep.result || matches!(response, Ok(Reply::Count(_))) => {
                (Returned::Value(sleep_result(&response)), None)
            }
            Ok(_) => (Returned::Unknown, Some("then native")),
            Err(e) => (Returned::Value(e.as_syscall_return()), None),
        };
        self.trace(&TraceLine {
            tid,
            name: nr::name(nr),
            args: &request_text,
            ret,
            took,
            note,
            remote: None,
        });
        self.set_state(
            tid,
            ThreadState::Woken {
                saved,
                nr,
                fd,
                response,
                sleep,
            },
        );
        control::interrupt(Pid::from_raw(tid));
    }

    /// The reply of a thread held in its seccomp stop: carries out what
    /// [`plan::finish`] makes of it.
    fn finish_waiting(&mut self, tid: i32, response: Response, took: Took) {
        // A reply for a thread that no longer waits for one (it died and
        // its id came back, say) must leave whatever state it is in now.
        if !matches!(self.state(tid), Some(ThreadState::Waiting { .. })) {
            return;
        }
        let Some(ThreadState::Waiting {
            stop,
            nr,
            then,
            request_text,
        }) = self.take_state(tid)
        else {
            return;
        };
        let trace = self.config.trace.then(|| {
            // strace shows the data a read brought, after the fd.
            let args = match &response {
                Ok(Reply::Data(data)) if nr == libc::SYS_read || nr == libc::SYS_pread64 => {
                    with_data_read(&request_text, data)
                }
                _ => request_text,
            };
            PendingTrace {
                name: nr::name(nr),
                args,
                took,
            }
        });
        let mounts = &self.config.forwarding.mounts;
        // A server's absolute symlink target is spelled through that
        // server's own mounts only.
        let own;
        let mounts = match self.traced_on.get(&tid) {
            Some(&on)
                if mounts.several_remotes()
                    && matches!(then, Then::Readlink { .. } | Then::Exec { .. }) =>
            {
                own = mounts.only_on(on);
                &own
            }
            _ => mounts,
        };
        let outcome = plan::finish(then, response, mounts);
        self.carry_out_outcome(stop, nr, outcome, trace);
    }

    /// Prints the `--trace` line of a call that returns `ret` (with `note`),
    /// if there is one.
    fn trace_done(
        &self,
        tid: i32,
        trace: Option<&PendingTrace>,
        ret: Returned,
        note: Option<&str>,
    ) {
        if let Some(pending) = trace {
            self.trace(&TraceLine {
                tid,
                name: pending.name,
                args: &pending.args,
                ret,
                took: pending.took,
                note,
                remote: None,
            });
        }
    }

    /// Does what a reply's `outcome` says for the call `nr` of the thread
    /// held at `stop`; `trace` is its `--trace` line, waiting for its result.
    fn carry_out_outcome(
        &mut self,
        stop: Stop,
        nr: i64,
        outcome: Outcome,
        trace: Option<PendingTrace>,
    ) {
        let tid = stop.tid();
        let done = |ret: i64| Returned::Value(ret);
        match outcome {
            Outcome::Return { ret, writes } => {
                self.trace_done(tid, trace.as_ref(), done(ret), None);
                // A socket now bound on the server: its process's closes
                // must stop from now on, to release it at the last one.
                let bound = ret == 0 && (nr == libc::SYS_bind || nr == libc::SYS_listen);
                let stop = if bound && writes.is_empty() {
                    match self.socket_traps_at(stop, Some(ret)) {
                        Some(stop) => stop,
                        None => return,
                    }
                } else {
                    stop
                };
                stop.answer(ret, &writes);
            }
            Outcome::Chdir { local_path } => {
                self.trace_done(tid, trace.as_ref(), done(0), None);
                self.set_virtual_cwd(tid, Some(local_path));
                stop.skip(0);
            }
            Outcome::Replan => {
                let note = Some("socket bound, planned again");
                self.trace_done(tid, trace.as_ref(), Returned::Unknown, note);
                // The socket is now bound on the server: as after a `bind`,
                // the process's closes must stop, to release it at the last.
                if let Some(stop) = self.socket_traps_at(stop, None) {
                    self.on_seccomp(stop);
                }
            }
            Outcome::RunNativeWith { args } => {
                self.trace_done(tid, trace.as_ref(), Returned::Unknown, Some("then native"));
                let sp = stop.stack_pointer();
                let call = Some((nr, args));
                self.rewrite_and_run(stop, sp, call, &[], ExitAction::Restore);
            }
            Outcome::Exec {
                copy,
                path_arg,
                argv_arg,
                link,
            } => {
                let what = link.as_ref().map_or_else(
                    || "copied for execve".to_string(),
                    |l| format!("a link to {}", String::from_utf8_lossy(l)),
                );
                self.trace_done(tid, trace.as_ref(), done(0), Some(&what));
                match link {
                    Some(target) => self.exec_link(stop, &target, usize::from(path_arg)),
                    None => {
                        self.exec_copy(stop, copy, usize::from(path_arg), usize::from(argv_arg));
                    }
                }
            }
            Outcome::MapShadow { path, writable } => {
                let note = Some(if writable {
                    "shared writable, on a shadow file"
                } else {
                    "on a shadow file"
                });
                self.trace_done(tid, trace.as_ref(), Returned::Unknown, note);
                self.open_shadow(stop, path, writable);
            }
            Outcome::RunNative { error } => {
                let ret = error.map_or(0, Errno::as_syscall_return);
                self.trace_done(tid, trace.as_ref(), done(ret), None);
                match error {
                    None => stop.resume(),
                    Some(e) => {
                        let sp = stop.stack_pointer();
                        self.rewrite_and_run(stop, sp, None, &[], ExitAction::Fail(e));
                    }
                }
            }
            Outcome::SetFlags { key, flags } => {
                self.trace_done(tid, trace.as_ref(), done(0), None);
                self.registry.set_flags(key, flags);
                stop.skip(0);
            }
            Outcome::Placeholder {
                handle,
                stat,
                local_path,
                flags,
                cloexec,
            } => {
                // Its result (the program's fd) is known at the open's exit.
                self.install_placeholder(stop, handle, stat, local_path, flags, cloexec, trace);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn install_placeholder(
        &mut self,
        stop: Stop,
        handle: Handle,
        stat: crate::proto::Stat,
        local_path: Vec<u8>,
        flags: i32,
        cloexec: bool,
        trace: Option<PendingTrace>,
    ) {
        // Owned by the opening thread's fs ids, so that its own open (with
        // its own rights) may open it.
        let caller = creds::of_thread(stop.tid());
        let made = match self.placeholders.as_mut() {
            Some(dir) => dir.make(caller.fsuid, caller.fsgid),
            None => Err(Errno(libc::EMFILE)),
        };
        let placeholder = match made {
            Ok(p) => p,
            Err(e) => {
                let remote = self.remote_of(&local_path);
                let close = Call::detached(0, Request::Close { handle }).on(remote);
                let _ = self.forwarder.submit(close);
                return stop.skip(e.as_syscall_return());
            }
        };
        let key = placeholder.key;
        let is_dir = stat.mode & libc::S_IFMT == libc::S_IFDIR;
        self.registry.insert(plan::RemoteFd {
            key,
            handle,
            path: local_path,
            flags,
            is_dir,
        });
        // Read-write, so that with the byte rscq puts in it (at the open's
        // exit) poll, select and epoll find it readable and writable, as a
        // regular file always is.
        let open_flags = libc::O_RDWR | if cloexec { libc::O_CLOEXEC } else { 0 };
        self.run_openat(
            stop,
            placeholder.path,
            open_flags,
            ExitAction::Placeholder {
                read_end: placeholder.read_end,
                key,
                handle,
                trace,
            },
        );
    }
}
