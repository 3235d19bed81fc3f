//! Putting the fd-call filter ([`super::fd_filter_rules`]) into a process
//! once it holds its first remote file: the thread runs an injected
//! `seccomp(2)` at its syscall exit, then gets its own registers back.
//!
//! Must not change what the program sees: signals that come meanwhile are
//! held and sent again afterwards.

use nix::sys::signal::Signal;

use super::control::Stop;
use super::state::{ExitAction, ThreadState};
use super::{Forwarder, RED_ZONE, Tracer, mem, seccomp, sys};

/// The length of the `syscall` instruction, to step back over it.
const SYSCALL_INSN_LEN: u64 = 2;

impl<F: Forwarder> Tracer<'_, F> {
    pub(super) fn process_has_fd_traps(&self, tid: i32) -> bool {
        let tgid = self.tgid_of(tid);
        self.processes.get(&tgid).is_some_and(|p| p.fd_traps)
    }

    /// Makes thread `pid`, at a syscall-exit stop, run
    /// `seccomp(SET_MODE_FILTER, TSYNC, fd filter)` before it returns to the
    /// program with `restore`: the `syscall` instruction it just left runs
    /// again with new registers, and the filter image sits below the red
    /// zone of its stack.
    pub(super) fn inject_fd_filter(&mut self, stop: Stop, restore: libc::user_regs_struct) {
        self.inject_filter(stop, restore, false, Vec::new());
    }

    /// As [`Self::inject_fd_filter`], for the shared-mapping filter
    /// ([`super::map_filter_rules`]) when `map`; signals held so far are
    /// `deferred`.
    pub(super) fn inject_filter(
        &mut self,
        stop: Stop,
        restore: libc::user_regs_struct,
        map: bool,
        deferred: Vec<Signal>,
    ) {
        let tid = stop.tid();
        let filter = if map {
            &self.map_filter
        } else {
            &self.fd_filter
        };
        let Some((base, bytes, fprog)) = image_below(filter, restore.rsp) else {
            return self.injection_failed(stop, restore, "no room on its stack", map, deferred);
        };
        if mem::write_bytes(stop.pid(), base, &bytes).is_err() {
            return self.injection_failed(
                stop,
                restore,
                "cannot write to its stack",
                map,
                deferred,
            );
        }
        let mut regs = restore;
        regs.rdi = u64::from(libc::SECCOMP_SET_MODE_FILTER);
        regs.rsi = libc::SECCOMP_FILTER_FLAG_TSYNC;
        regs.rdx = fprog;
        if let Err(stop) = injected_call(stop, restore, regs, libc::SYS_seccomp) {
            return self.injection_failed(stop, restore, "cannot set its registers", map, deferred);
        }
        self.set_state(
            tid,
            ThreadState::Injecting {
                restore,
                entered: false,
                deferred,
                map,
            },
        );
    }

    /// At the seccomp stop of a `bind` or `listen` the server answered with
    /// `ret` (0): if it is the process's first, its call runs as the
    /// `seccomp(2)` that puts the socket filter in (so its later `close`s
    /// stop, see [`super::seccomp::socket_filter_rules`]) and returns `ret`
    /// to the program; otherwise the call is skipped with `ret`. With
    /// `ret` `None` (a call whose UDP socket the server bound first), the
    /// program's call runs again after the `seccomp(2)`, and stops again.
    /// Returns the stop if it is not used.
    pub(super) fn socket_traps_at(&mut self, stop: Stop, ret: Option<i64>) -> Option<Stop> {
        let tgid = self.tgid_of(stop.tid());
        if self.socket_filter.is_empty() || self.processes.get(&tgid).is_none_or(|p| p.socket_traps)
        {
            return Some(stop);
        }
        // Tried once per process: a failure is said once, and the sweep
        // still releases what it closes.
        self.process_mut(tgid).socket_traps = true;
        let sp = stop.stack_pointer();
        let Some((base, bytes, fprog)) = image_below(&self.socket_filter, sp) else {
            return Some(stop);
        };
        if mem::write_bytes(stop.pid(), base, &bytes).is_err() {
            return Some(stop);
        }
        let args = [
            Some(u64::from(libc::SECCOMP_SET_MODE_FILTER)),
            Some(libc::SECCOMP_FILTER_FLAG_TSYNC),
            Some(fprog),
            None,
            None,
            None,
        ];
        let call = Some((libc::SYS_seccomp, args));
        self.rewrite_and_run(stop, base, call, &[], ExitAction::SocketTraps { ret });
        None
    }

    /// The entry, then the exit stop of an injected `seccomp(2)`.
    pub(super) fn on_injection_stop(&mut self, stop: Stop) {
        let tid = stop.tid();
        let Some(ThreadState::Injecting {
            restore,
            entered,
            deferred,
            map,
        }) = self.take_state(tid)
        else {
            return stop.resume();
        };
        if !entered {
            self.set_state(
                tid,
                ThreadState::Injecting {
                    restore,
                    entered: true,
                    deferred,
                    map,
                },
            );
            return stop.resume_to_syscall_stop();
        }
        let result = stop.regs().map_or(-1, |r| r.rax.cast_signed());
        let tgid = self.tgid_of(tid);
        if result == 0 && map {
            self.process_mut(tgid).map_traps = true;
        } else if result == 0 {
            self.process_mut(tgid).fd_traps = true;
        } else if map {
            eprintln!(
                "rscq: cannot trap munmap and msync of process {tgid} (seccomp returned {result}); its shared mappings of remote files write back at close, fsync and exit only"
            );
        } else {
            // A positive result is the thread whose own filters differ.
            warn_no_fd_traps(tgid, &format!("seccomp returned {result}"));
        }
        self.give_back(stop, restore, deferred);
    }

    fn injection_failed(
        &self,
        stop: Stop,
        restore: libc::user_regs_struct,
        why: &str,
        map: bool,
        deferred: Vec<Signal>,
    ) {
        let tid = stop.tid();
        if map {
            eprintln!(
                "rscq: cannot trap munmap and msync of process {tid} ({why}); its shared mappings of remote files write back at close, fsync and exit only"
            );
        } else {
            warn_no_fd_traps(tid, why);
        }
        self.give_back(stop, restore, deferred);
    }

    /// The end of an injection: the thread gets the program's registers
    /// `restore` back, the signals `deferred` meanwhile are sent again, and
    /// it goes on.
    pub(super) fn give_back(
        &self,
        stop: Stop,
        restore: libc::user_regs_struct,
        deferred: Vec<Signal>,
    ) {
        stop.set_regs(restore);
        let tid = stop.tid();
        let tgid = self.tgid_of(tid);
        for sig in deferred {
            // ESRCH: the thread is gone, and the signal with it.
            let _ = sys::tgkill(tgid, tid, sig as i32);
        }
        stop.resume();
    }
}

/// Where a filter goes into a process whose stack pointer is `sp`: below
/// its red zone, 16-byte aligned. Returns that address, the image's bytes
/// and the address of its `struct sock_fprog`.
fn image_below(filter: &[sys::SockFilter], sp: u64) -> Option<(u64, Vec<u8>, u64)> {
    let size = u64::try_from(filter.len() * 8 + 16).ok()?;
    let base = sp.checked_sub(RED_ZONE)?.checked_sub(size)? & !15;
    let (bytes, fprog) = seccomp::image(filter, base)?;
    Some((base, bytes, fprog))
}

/// Makes the thread, at a syscall-exit stop, run syscall `nr` with `regs`'
/// arguments next (the `syscall` instruction it just left runs again; its
/// registers at that stop were `at_exit`) and lets it go to that call's
/// entry stop. The stop comes back if the registers cannot be set.
pub(super) fn injected_call(
    stop: Stop,
    at_exit: libc::user_regs_struct,
    mut regs: libc::user_regs_struct,
    nr: i64,
) -> Result<(), Stop> {
    regs.rip = at_exit.rip.wrapping_sub(SYSCALL_INSN_LEN);
    regs.rax = nr.cast_unsigned();
    // No syscall to restart: a signal taken before the `syscall`
    // instruction must not make the kernel rewind or retry anything.
    regs.orig_rax = u64::MAX;
    if stop.try_set_regs(regs).is_err() {
        return Err(stop);
    }
    stop.resume_to_syscall_stop();
    Ok(())
}

/// The registers `at_entry` of a syscall's seccomp stop, made to run that
/// call again once the thread, at a syscall-exit stop, gets them back: the
/// `syscall` instruction runs again with the call's number and arguments,
/// as the kernel restarts a call.
pub(super) fn call_again(at_entry: libc::user_regs_struct) -> libc::user_regs_struct {
    let mut regs = at_entry;
    regs.rip = at_entry.rip.wrapping_sub(SYSCALL_INSN_LEN);
    regs.rax = at_entry.orig_rax;
    regs
}

/// Without the fd filter a process's calls on its remote files reach the
/// placeholder pipe; say so, and keep the program going.
fn warn_no_fd_traps(pid: i32, why: &str) {
    eprintln!(
        "rscq: cannot trap the fd calls of process {pid} ({why}); reads and writes on its remote files will fail"
    );
}
