//! Replies to forwarded calls: gives a held thread its result, wakes a
//! sleeping one, or finishes an interrupted send, and carries out the
//! [`Outcome`] of a reply (answer, run natively, exec, install a
//! placeholder, ...), one method per kind.
//!
//! Must not plan calls; a reply that needs a new plan hands the thread back
//! to `stop`.

use std::time::Duration;

use nix::unistd::Pid;

use super::control::{self, Stop};
use super::state::{ExitAction, ThreadState, sleep_result};
use super::{Call, Forwarder, Tracer, creds, fmt_ret};
use crate::errno::Errno;
use crate::proto::{Handle, Request, Response};
use crate::syscall::nr;
use crate::syscall::plan::{self, Outcome};

impl<F: Forwarder> Tracer<'_, F> {
    /// The reply to thread `tid`'s forwarded call, which took `rtt`.
    pub(super) fn on_reply(&mut self, tid: i32, response: Response, rtt: Duration) {
        match self.state(tid) {
            Some(ThreadState::Interrupting { .. }) => self.finish_interrupted(tid, response, rtt),
            Some(ThreadState::Sleeping { .. }) => self.wake(tid, response, rtt),
            _ => self.finish_waiting(tid, response, rtt),
        }
    }

    /// A send interrupted by a signal the program handles: the reply says
    /// how many bytes went; the thread returns that and takes the signal.
    fn finish_interrupted(&mut self, tid: i32, response: Response, rtt: Duration) {
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
        if self.config.trace {
            self.forwarder.trace_line(format!(
                "[pid {tid}] {}({request_text}) = {} <{} us> ({sig:?})",
                nr::name(nr),
                fmt_ret(ret),
                rtt.as_micros()
            ));
        }
        let mut regs = saved;
        regs.rax = ret.cast_unsigned();
        stop.set_regs(regs);
        stop.resume_with(Some(sig));
    }

    /// A sleeping thread's reply: kept until the thread is interrupted out
    /// of its sleep (see `on_woken`).
    fn wake(&mut self, tid: i32, response: Response, rtt: Duration) {
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
        if self.config.trace {
            let us = rtt.as_micros();
            let name = nr::name(nr);
            match &response {
                _ if sleep.result => {
                    let ret = sleep_result(&response);
                    self.forwarder.trace_line(format!(
                        "[pid {tid}] {name}({request_text}) = {} <{us} us>",
                        fmt_ret(ret)
                    ));
                }
                Ok(_) => self
                    .forwarder
                    .trace_line(format!("[pid {tid}] {name}({request_text}) <{us} us>")),
                Err(_) => {}
            }
        }
        self.set_state(
            tid,
            ThreadState::Woken {
                saved,
                nr,
                fd,
                request_text,
                response,
                sleep,
            },
        );
        control::interrupt(Pid::from_raw(tid));
    }

    /// The reply of a thread held in its seccomp stop: carries out what
    /// [`plan::finish`] makes of it.
    fn finish_waiting(&mut self, tid: i32, response: Response, rtt: Duration) {
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
        let trace = self
            .config
            .trace
            .then(|| format!("[pid {tid}] {}({request_text})", nr::name(nr)));
        let rtt_us = rtt.as_micros();
        let outcome = plan::finish(then, response, &self.config.forwarding.mounts);
        self.carry_out_outcome(stop, nr, outcome, trace, rtt_us);
    }

    /// Does what a reply's `outcome` says for the call `nr` of the thread
    /// held at `stop`; `trace` is its `--trace` line so far.
    fn carry_out_outcome(
        &mut self,
        stop: Stop,
        nr: i64,
        outcome: Outcome,
        trace: Option<String>,
        rtt_us: u128,
    ) {
        let tid = stop.tid();
        match outcome {
            Outcome::Return { ret, writes } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} = {} <{rtt_us} us>", fmt_ret(ret)));
                }
                stop.answer(ret, &writes);
            }
            Outcome::Chdir { local_path } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} = 0 <{rtt_us} us>"));
                }
                self.set_virtual_cwd(tid, Some(local_path));
                stop.skip(0);
            }
            Outcome::Replan => {
                if self.config.trace
                    && let Some(line) = trace.clone()
                {
                    self.forwarder
                        .trace_line(format!("{line} (socket bound) <{rtt_us} us>"));
                }
                self.on_seccomp(stop);
            }
            Outcome::RunNativeWith { args } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} = 0 <{rtt_us} us>"));
                }
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
                if let Some(line) = trace {
                    let what = link.as_ref().map_or_else(
                        || "copied for execve".to_string(),
                        |l| format!("a link to {}", String::from_utf8_lossy(l)),
                    );
                    self.forwarder
                        .trace_line(format!("{line} = 0 <{rtt_us} us> ({what})"));
                }
                match link {
                    Some(target) => self.exec_link(stop, &target, usize::from(path_arg)),
                    None => {
                        self.exec_copy(stop, copy, usize::from(path_arg), usize::from(argv_arg));
                    }
                }
            }
            Outcome::MapShadow { path, writable } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} <{rtt_us} us> (shared, on a shadow file)"));
                }
                self.open_shadow(stop, path, writable);
            }
            Outcome::MapFilled { args, data } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} <{rtt_us} us> ({} bytes)", data.len()));
                }
                let sp = stop.stack_pointer();
                let call = Some((nr, args));
                self.rewrite_and_run(stop, sp, call, &[], ExitAction::FillMapping { data });
            }
            Outcome::RunNative { error } => {
                if let Some(line) = trace {
                    let ret = error.map_or(0, Errno::as_syscall_return);
                    self.forwarder
                        .trace_line(format!("{line} = {} <{rtt_us} us>", fmt_ret(ret)));
                }
                match error {
                    None => stop.resume(),
                    Some(e) => {
                        let sp = stop.stack_pointer();
                        self.rewrite_and_run(stop, sp, None, &[], ExitAction::Fail(e));
                    }
                }
            }
            Outcome::SetFlags { key, flags } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} = 0 <{rtt_us} us>"));
                }
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
                let trace = trace.map(|l| format!("{l} <{rtt_us} us>"));
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
        trace: Option<String>,
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
                let _ = self
                    .forwarder
                    .submit(Call::detached(0, Request::Close { handle }));
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
