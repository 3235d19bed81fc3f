//! Signals and the interruptible sleep: a thread whose call may take long
//! sleeps in a `ppoll` rscq put in place of its syscall ([`Tracer::sleep`]),
//! so signals reach it; [`Tracer::on_signal`] ends or keeps the sleep as the
//! kernel would for a blocking call, and [`Tracer::on_woken`] gives a woken
//! thread its result.
//!
//! Must not forward calls: it only tells the engine a sleep was interrupted.

use nix::sys::signal::Signal;

use super::control::Stop;
use super::state::{Sleep, ThreadState, sleep_result};
use super::{
    ERESTARTNOHAND, ERESTARTNOINTR, ERESTARTSYS, Forwarder, Tracer, is_stop_signal, set_arg,
};
use crate::proto::Reply;
use crate::syscall::operation::OnSignal;

impl<F: Forwarder> Tracer<'_, F> {
    /// Puts a thread to sleep in `ppoll(NULL, 0, NULL, NULL)` instead of its
    /// syscall while the engine works: unlike a thread held in its ptrace
    /// stop, a sleeping one still takes signals (Ctrl-C).
    /// Returns whether the thread sleeps (if not, it was let go).
    pub(super) fn sleep(
        &mut self,
        stop: Stop,
        nr: i64,
        fd: i32,
        request_text: String,
        sleep: Sleep,
    ) -> bool {
        let Ok(saved) = stop.regs() else {
            stop.resume();
            return false;
        };
        let mut regs = saved;
        regs.orig_rax = libc::SYS_ppoll.cast_unsigned();
        for i in 0..4 {
            set_arg(&mut regs, i, 0);
        }
        set_arg(&mut regs, 4, 8);
        if stop.try_set_regs(regs).is_err() {
            stop.resume();
            return false;
        }
        self.set_state(
            stop.tid(),
            ThreadState::Sleeping {
                saved,
                nr,
                fd,
                request_text,
                sleep,
            },
        );
        stop.resume();
        true
    }

    /// A signal for a thread. A sleeping one gets its own syscall back with
    /// `-ERESTARTSYS`, so the kernel restarts it after a `SA_RESTART`
    /// handler or fails it with EINTR, exactly as for a real blocking call.
    ///
    /// A call whose result already came returns it instead (the kernel
    /// too returns a connect that completed before the signal). Otherwise
    /// the operation's [`OnSignal`] says what the engine is told: a connect
    /// still under way goes on without the thread; a send or a lock wait
    /// is asked to stop, and its answer is the call's result.
    pub(super) fn on_signal(&mut self, stop: Stop, sig: Signal) {
        let tid = stop.tid();
        if let Some(
            ThreadState::Injecting { deferred, .. } | ThreadState::MapShadow { deferred, .. },
        ) = self.threads.get_mut(&tid).map(|t| &mut t.state)
        {
            // Its handler would run on the injected registers: hold it until
            // the program's own registers are back.
            deferred.push(sig);
            return stop.resume_to_syscall_stop();
        }
        if let Some(ThreadState::Sleeping { sleep, .. }) = self.state(tid)
            && sleep.on_signal == OnSignal::AskEngine
        {
            let op = sleep.op;
            match disposition(tid, sig) {
                Disposition::Caught => {
                    let Some(ThreadState::Sleeping {
                        saved,
                        nr,
                        request_text,
                        ..
                    }) = self.take_state(tid)
                    else {
                        return stop.resume_with(Some(sig));
                    };
                    self.set_state(
                        tid,
                        ThreadState::Interrupting {
                            stop,
                            saved,
                            nr,
                            request_text,
                            op,
                            sig,
                        },
                    );
                    // It stays in this stop until the server answers.
                    self.forwarder.interrupted(op);
                    return;
                }
                Disposition::Harmless => {
                    // Ignored, or a stop: the kernel restarts the `ppoll`
                    // it sleeps in, and the send goes on, as a native one
                    // does through such a signal.
                    return stop.resume_with(Some(sig));
                }
                // It dies: nothing waits for the send any more.
                Disposition::Fatal => self.forwarder.interrupted(op),
            }
        }
        // A poll fails with EINTR after a handler, even an `SA_RESTART` one.
        let restart = |sleep: &Sleep| {
            let code = match sleep.on_signal {
                OnSignal::Interrupt => ERESTARTNOHAND,
                OnSignal::Restart | OnSignal::AskEngine => ERESTARTSYS,
            };
            (-i64::from(code)).cast_unsigned()
        };
        let taken = match self.state(tid) {
            Some(ThreadState::Sleeping { saved, sleep, .. }) => {
                Some((*saved, restart(sleep), *sleep))
            }
            // A call whose result already came returns it (the kernel too
            // returns a connect or send that completed before the signal).
            Some(ThreadState::Woken {
                saved,
                sleep,
                response,
                ..
            }) if sleep.result || matches!(response, Ok(Reply::Count(_))) => {
                Some((*saved, sleep_result(response).cast_unsigned(), *sleep))
            }
            Some(ThreadState::Woken { saved, sleep, .. }) => Some((*saved, restart(sleep), *sleep)),
            _ => None,
        };
        if let Some((saved, rax, sleep)) = taken {
            if let Some(ThreadState::Sleeping { .. }) = self.state(tid) {
                // The operation goes on without the thread (a connect), or
                // is dropped.
                self.forwarder.interrupted(sleep.op);
            }
            let mut regs = saved;
            regs.rax = rax;
            stop.set_regs(regs);
            self.set_state(tid, ThreadState::Running);
        }
        stop.resume_with(Some(sig));
    }

    /// The interrupt stop of a woken thread: gives it its result.
    pub(super) fn on_woken(&mut self, stop: Stop) {
        let tid = stop.tid();
        let Some(ThreadState::Woken {
            saved,
            nr,
            fd,
            response,
            sleep,
        }) = self.take_state(tid)
        else {
            return stop.resume();
        };
        let mut regs = saved;
        match response {
            // Traced with its round trip when the reply came.
            // A count is the call's result even where the call would
            // otherwise run natively (a poll whose timeout passed).
            response if sleep.result || matches!(response, Ok(Reply::Count(_))) => {
                regs.rax = sleep_result(&response).cast_unsigned();
            }
            // Go ahead natively: the kernel re-executes the original call
            // (`-ERESTARTNOINTR` at an interrupt stop), which stops at the
            // filter again and is then let through once.
            Ok(_) => {
                regs.rax = (-i64::from(ERESTARTNOINTR)).cast_unsigned();
                self.thread_mut(tid).native_once = Some((nr, fd));
            }
            // Traced with its round trip when the reply came.
            Err(e) => {
                regs.rax = e.as_syscall_return().cast_unsigned();
            }
        }
        stop.resume_with_regs(regs);
    }
}

/// What a signal will do to the thread that receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Disposition {
    /// A handler of the program's runs.
    Caught,
    /// Ignored (explicitly or by default), or a stop: the thread goes on.
    Harmless,
    /// Its default action ends the process.
    Fatal,
}

/// The disposition of `sig` for thread `tid`, from `/proc/TID/status`; a
/// handler if it cannot be read (the caller then ends the call as the
/// kernel would for one, which is safe for the others too).
fn disposition(tid: i32, sig: Signal) -> Disposition {
    let Ok(status) = std::fs::read_to_string(format!("/proc/{tid}/status")) else {
        return Disposition::Caught;
    };
    let bit = 1u64 << ((sig as u32).saturating_sub(1) & 63);
    let mask = |field: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    };
    let (Some(caught), Some(ignored)) = (mask("SigCgt:"), mask("SigIgn:")) else {
        return Disposition::Caught;
    };
    if caught & bit != 0 {
        Disposition::Caught
    } else if ignored & bit != 0
        || matches!(
            sig,
            Signal::SIGCHLD | Signal::SIGCONT | Signal::SIGURG | Signal::SIGWINCH
        )
        || is_stop_signal(sig)
    {
        Disposition::Harmless
    } else {
        Disposition::Fatal
    }
}
