//! `mmap(MAP_SHARED)` of a remote file, run on its shadow file (see
//! [`crate::engine::shadow`]): the thread's own `mmap` becomes an
//! `openat` of the shadow; at its exit the thread runs the program's
//! `mmap` with that fd, then a `close` of it, each injected by stepping
//! back over the `syscall` instruction (as `inject` does); then it gets its
//! own registers back with the mapping's address (or error) as result.
//! So the mapping is the kernel's own shared mapping of one file that all
//! processes of the run map.
//!
//! Must not change what the program sees: the fd lives only between the
//! injected calls (close-on-exec), and signals that come meanwhile are held
//! and sent again afterwards.

use nix::sys::ptrace;
use nix::unistd::Pid;

use super::control;
use super::state::{ExitAction, ShadowStep, ThreadState};
use super::{Forwarder, Tracer, sys};

/// The length of the `syscall` instruction, to step back over it.
const SYSCALL_INSN_LEN: u64 = 2;

impl<F: Forwarder> Tracer<'_, F> {
    /// [`crate::syscall::plan::Outcome::MapShadow`]: the thread, held in
    /// its `mmap`'s seccomp stop, opens the shadow at `path` instead.
    pub(super) fn open_shadow(&mut self, pid: Pid, path: Vec<u8>, writable: bool) {
        let access = if writable {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        let flags = access | libc::O_CLOEXEC;
        let sp = ptrace::getregs(pid).map(|r| r.rsp).unwrap_or(0);
        let args = [
            Some(i64::from(libc::AT_FDCWD).cast_unsigned()),
            None,
            Some(u64::from(flags.cast_unsigned())),
            Some(0),
            None,
            None,
        ];
        self.rewrite_and_run(
            pid,
            sp,
            Some((libc::SYS_openat, args)),
            &[(1, path)],
            ExitAction::ShadowOpened,
        );
    }

    /// The injected `openat` returned `result`: on success, the program's
    /// `mmap` (registers `saved`) runs next on that fd; a failure is the
    /// `mmap`'s.
    pub(super) fn shadow_opened(&mut self, pid: Pid, saved: libc::user_regs_struct, result: i64) {
        if result < 0 {
            let mut regs = saved;
            regs.rax = result.cast_unsigned();
            control::set_regs(pid, regs);
            control::resume(pid, None);
            return;
        }
        let fd = result.cast_unsigned();
        let mut regs = saved;
        regs.r8 = fd;
        self.inject(
            pid,
            saved,
            regs,
            libc::SYS_mmap,
            ShadowStep::Map { fd },
            Vec::new(),
        );
    }

    /// Makes the thread, at a syscall-exit stop, run syscall `nr` with
    /// `regs`' arguments next, in step `step` of the chain.
    fn inject(
        &mut self,
        pid: Pid,
        saved: libc::user_regs_struct,
        mut regs: libc::user_regs_struct,
        nr: i64,
        step: ShadowStep,
        deferred: Vec<nix::sys::signal::Signal>,
    ) {
        regs.rip = saved.rip.wrapping_sub(SYSCALL_INSN_LEN);
        regs.rax = nr.cast_unsigned();
        // No syscall to restart: a signal taken before the `syscall`
        // instruction must not make the kernel rewind or retry anything.
        regs.orig_rax = u64::MAX;
        control::set_regs(pid, regs);
        self.threads.insert(
            pid.as_raw(),
            ThreadState::MapShadow {
                saved,
                step,
                entered: false,
                deferred,
            },
        );
        control::resume_to_syscall_stop(pid);
    }

    /// A syscall stop of a thread in the chain: the entry of an injected
    /// call, or its exit.
    pub(super) fn on_shadow_stop(&mut self, pid: Pid) {
        let tid = pid.as_raw();
        let Some(ThreadState::MapShadow {
            saved,
            step,
            entered,
            deferred,
        }) = self.threads.remove(&tid)
        else {
            return;
        };
        if !entered {
            self.threads.insert(
                tid,
                ThreadState::MapShadow {
                    saved,
                    step,
                    entered: true,
                    deferred,
                },
            );
            control::resume_to_syscall_stop(pid);
            return;
        }
        let result = ptrace::getregs(pid).map_or(-i64::from(libc::EIO), |r| r.rax.cast_signed());
        match step {
            ShadowStep::Map { fd } => {
                let mut regs = saved;
                regs.rdi = fd;
                let step = ShadowStep::Close { mapped: result };
                self.inject(pid, saved, regs, libc::SYS_close, step, deferred);
            }
            ShadowStep::Close { mapped } => {
                let mut regs = saved;
                regs.rax = mapped.cast_unsigned();
                self.threads.insert(tid, ThreadState::Running);
                let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
                let traps = self.processes.get(&tgid).is_some_and(|p| p.map_traps);
                if mapped >= 0 && !traps && !self.map_filter.is_empty() {
                    // Its first shared mapping of a remote file: from now
                    // on its munmap and msync stop (the filter goes in
                    // before the program sees the result).
                    self.inject_filter(pid, regs, true, deferred);
                    return;
                }
                control::set_regs(pid, regs);
                for sig in deferred {
                    // ESRCH: the thread is gone, and the signal with it.
                    let _ = sys::tgkill(tgid, tid, sig as i32);
                }
                control::resume(pid, None);
            }
        }
    }
}
