//! `mmap` of a remote file, shared or private, run on its shadow file (see
//! [`crate::engine::shadow`]): the thread's own `mmap` becomes an
//! `openat` of the shadow; at its exit the thread runs the program's
//! `mmap` with that fd, then a `close` of it, each injected by stepping
//! back over the `syscall` instruction (`inject::injected_call`, which the
//! fd filter's injection uses too); then it gets its
//! own registers back with the mapping's address (or error) as result.
//! So the mapping is the kernel's own mapping of one file that all
//! processes of the run map (shared, or copy-on-write).
//!
//! Must not change what the program sees: the fd lives only between the
//! injected calls (close-on-exec), and signals that come meanwhile are held
//! and sent again afterwards.

use nix::sys::signal::Signal;

use super::control::Stop;
use super::inject::injected_call;
use super::state::{ExitAction, ShadowStep, ThreadState};
use super::{Forwarder, Tracer};

/// `MAP_TYPE`: the bits of `mmap`'s flags that say shared or private.
const MAP_TYPE: u64 = 0x0f;
/// `MAP_PRIVATE` among them.
const PRIVATE: u64 = 0x02;

impl<F: Forwarder> Tracer<'_, F> {
    /// [`crate::syscall::plan::Outcome::MapShadow`]: the thread, held in
    /// its `mmap`'s seccomp stop, opens the shadow at `path` instead.
    pub(super) fn open_shadow(&mut self, stop: Stop, path: Vec<u8>, writable: bool) {
        let access = if writable {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        let flags = access | libc::O_CLOEXEC;
        self.run_openat(stop, path, flags, ExitAction::ShadowOpened);
    }

    /// The injected `openat` returned `result`: on success, the program's
    /// `mmap` (registers `saved`) runs next on that fd; a failure is the
    /// `mmap`'s.
    pub(super) fn shadow_opened(&mut self, stop: Stop, saved: libc::user_regs_struct, result: i64) {
        if result < 0 {
            let mut regs = saved;
            regs.rax = result.cast_unsigned();
            return stop.resume_with_regs(regs);
        }
        let fd = result.cast_unsigned();
        let mut regs = saved;
        regs.r8 = fd;
        self.inject(
            stop,
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
        stop: Stop,
        saved: libc::user_regs_struct,
        regs: libc::user_regs_struct,
        nr: i64,
        step: ShadowStep,
        deferred: Vec<Signal>,
    ) {
        self.set_state(
            stop.tid(),
            ThreadState::MapShadow {
                saved,
                step,
                entered: false,
                deferred,
            },
        );
        if let Err(stop) = injected_call(stop, saved, regs, nr) {
            // Only a thread that is gone has registers that cannot be set;
            // its end comes as a wait status.
            stop.resume_to_syscall_stop();
        }
    }

    /// A syscall stop of a thread in the chain: the entry of an injected
    /// call, or its exit.
    pub(super) fn on_shadow_stop(&mut self, stop: Stop) {
        let tid = stop.tid();
        let Some(ThreadState::MapShadow {
            saved,
            step,
            entered,
            deferred,
        }) = self.take_state(tid)
        else {
            return stop.resume();
        };
        if !entered {
            self.set_state(
                tid,
                ThreadState::MapShadow {
                    saved,
                    step,
                    entered: true,
                    deferred,
                },
            );
            return stop.resume_to_syscall_stop();
        }
        let result = stop
            .regs()
            .map_or(-i64::from(libc::EIO), |r| r.rax.cast_signed());
        match step {
            ShadowStep::Map { fd } => {
                let mut regs = saved;
                regs.rdi = fd;
                let step = ShadowStep::Close { mapped: result };
                self.inject(stop, saved, regs, libc::SYS_close, step, deferred);
            }
            ShadowStep::Close { mapped } => {
                let mut regs = saved;
                regs.rax = mapped.cast_unsigned();
                let tgid = self.tgid_of(tid);
                let traps = self.processes.get(&tgid).is_some_and(|p| p.map_traps);
                // A private mapping never writes the shadow: its `munmap`
                // and `msync` have nothing to push.
                let shared = saved.r10 & MAP_TYPE != PRIVATE;
                if mapped >= 0 && shared && !traps && !self.map_filter.is_empty() {
                    // Its first shared mapping of a remote file: from now
                    // on its munmap and msync stop (the filter goes in
                    // before the program sees the result).
                    return self.inject_filter(stop, regs, true, deferred);
                }
                self.give_back(stop, regs, deferred);
            }
        }
    }
}
