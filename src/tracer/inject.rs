//! Putting the fd-call filter ([`super::fd_filter_rules`]) into a process
//! once it holds its first remote file: the thread runs an injected
//! `seccomp(2)` at its syscall exit, then gets its own registers back.
//!
//! Must not change what the program sees: signals that come meanwhile are
//! held and sent again afterwards.

use nix::sys::ptrace;
use nix::unistd::Pid;

use super::control;
use super::state::ThreadState;
use super::{Forwarder, Tracer, mem, seccomp, sys};

impl<F: Forwarder> Tracer<'_, F> {
    pub(super) fn process_has_fd_traps(&self, tid: i32) -> bool {
        let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
        self.processes.get(&tgid).is_some_and(|p| p.fd_traps)
    }

    /// Makes thread `pid`, at a syscall-exit stop, run
    /// `seccomp(SET_MODE_FILTER, TSYNC, fd filter)` before it returns to the
    /// program with `restore`: the `syscall` instruction it just left runs
    /// again with new registers, and the filter image sits below the red
    /// zone of its stack.
    pub(super) fn inject_fd_filter(&mut self, pid: Pid, restore: libc::user_regs_struct) {
        self.inject_filter(pid, restore, false, Vec::new());
    }

    /// As [`Self::inject_fd_filter`], for the shared-mapping filter
    /// ([`super::map_filter_rules`]) when `map`; signals held so far are
    /// `deferred`.
    pub(super) fn inject_filter(
        &mut self,
        pid: Pid,
        restore: libc::user_regs_struct,
        map: bool,
        deferred: Vec<nix::sys::signal::Signal>,
    ) {
        const RED_ZONE: u64 = 128;
        const SYSCALL_INSN_LEN: u64 = 2;
        let filter = if map {
            &self.map_filter
        } else {
            &self.fd_filter
        };
        let size = u64::try_from(filter.len() * 8 + 16).unwrap_or(u64::MAX);
        let base = restore
            .rsp
            .checked_sub(RED_ZONE)
            .and_then(|sp| sp.checked_sub(size))
            .map(|at| at & !15);
        let image = base.and_then(|b| seccomp::image(filter, b).map(|i| (b, i)));
        let Some((base, (bytes, fprog))) = image else {
            self.injection_failed(pid, restore, "no room on its stack", map, deferred);
            return;
        };
        if mem::write_bytes(pid, base, &bytes).is_err() {
            self.injection_failed(pid, restore, "cannot write to its stack", map, deferred);
            return;
        }
        let mut regs = restore;
        regs.rip = restore.rip.wrapping_sub(SYSCALL_INSN_LEN);
        regs.rax = libc::SYS_seccomp.cast_unsigned();
        // No syscall to restart: a signal taken before the `syscall`
        // instruction must not make the kernel rewind or retry anything.
        regs.orig_rax = u64::MAX;
        regs.rdi = u64::from(libc::SECCOMP_SET_MODE_FILTER);
        regs.rsi = libc::SECCOMP_FILTER_FLAG_TSYNC;
        regs.rdx = fprog;
        if ptrace::setregs(pid, regs).is_err() {
            self.injection_failed(pid, restore, "cannot set its registers", map, deferred);
            return;
        }
        self.threads.insert(
            pid.as_raw(),
            ThreadState::Injecting {
                restore,
                entered: false,
                deferred,
                map,
            },
        );
        control::resume_to_syscall_stop(pid);
    }

    /// The entry, then the exit stop of an injected `seccomp(2)`.
    pub(super) fn on_injection_stop(&mut self, pid: Pid) {
        let tid = pid.as_raw();
        let Some(ThreadState::Injecting {
            restore,
            entered,
            deferred,
            map,
        }) = self.threads.remove(&tid)
        else {
            return;
        };
        if !entered {
            self.threads.insert(
                tid,
                ThreadState::Injecting {
                    restore,
                    entered: true,
                    deferred,
                    map,
                },
            );
            control::resume_to_syscall_stop(pid);
            return;
        }
        let result = ptrace::getregs(pid).map_or(-1, |r| r.rax.cast_signed());
        let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
        if result == 0 && map {
            self.processes.entry(tgid).or_default().map_traps = true;
        } else if result == 0 {
            self.processes.entry(tgid).or_default().fd_traps = true;
        } else if map {
            eprintln!(
                "rscq: cannot trap munmap and msync of process {tgid} (seccomp returned {result}); its shared mappings of remote files write back at close, fsync and exit only"
            );
        } else {
            // A positive result is the thread whose own filters differ.
            warn_no_fd_traps(tgid, &format!("seccomp returned {result}"));
        }
        control::set_regs(pid, restore);
        self.threads.insert(tid, ThreadState::Running);
        for sig in deferred {
            // ESRCH: the thread is gone, and the signal with it.
            let _ = sys::tgkill(tgid, tid, sig as i32);
        }
        control::resume(pid, None);
    }

    fn injection_failed(
        &self,
        pid: Pid,
        restore: libc::user_regs_struct,
        why: &str,
        map: bool,
        deferred: Vec<nix::sys::signal::Signal>,
    ) {
        let tid = pid.as_raw();
        if map {
            eprintln!(
                "rscq: cannot trap munmap and msync of process {tid} ({why}); its shared mappings of remote files write back at close, fsync and exit only"
            );
        } else {
            warn_no_fd_traps(tid, why);
        }
        control::set_regs(pid, restore);
        let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
        for sig in deferred {
            // ESRCH: the thread is gone, and the signal with it.
            let _ = sys::tgkill(tgid, tid, sig as i32);
        }
        control::resume(pid, None);
    }
}

/// Without the fd filter a process's calls on its remote files reach the
/// placeholder pipe; say so, and keep the program going.
fn warn_no_fd_traps(pid: i32, why: &str) {
    eprintln!(
        "rscq: cannot trap the fd calls of process {pid} ({why}); reads and writes on its remote files will fail"
    );
}
