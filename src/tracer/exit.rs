//! Syscall-exit stops of calls rscq rewrote: puts the program's registers
//! back and does what the call's [`ExitAction`] says with its result.
//! Also the two ways a call is rewritten to run to such a stop
//! ([`Tracer::rewrite_and_run`], [`Tracer::run_on_scratch`]).
//!
//! Must not forward calls, except the close of a placeholder nobody opened.

use std::net::SocketAddr;

use nix::unistd::Pid;

use super::control::Stop;
use super::state::{ExitAction, ThreadState, exit_action};
use super::{ARG_REGS, Call, Forwarder, RED_ZONE, Tracer, mem, set_arg};
use crate::proto::Request;
use crate::syscall::describe::{Returned, TraceLine};
use crate::syscall::plan::{self, AfterNative};

impl<F: Forwarder> Tracer<'_, F> {
    /// A connection the program just accepted from a remote listener: its
    /// loopback peer port names the remote connection rscq delivered.
    fn claim_accepted(&mut self, pid: Pid, fd: i32, addr: u64, len: u64) {
        let Some(dup) = self.dup_fd(pid, fd) else {
            return;
        };
        let Ok(peer) = rustix::net::getpeername(&dup) else {
            return;
        };
        let Some(port) = peer
            .and_then(|p| SocketAddr::try_from(p).ok())
            .map(|p| p.port())
        else {
            return;
        };
        let Some(remote) = self.sockets.take_incoming(port) else {
            return;
        };
        if let Ok(st) = rustix::fs::fstat(&dup) {
            self.sockets.insert(st.st_ino, remote);
            let tgid = self.tgid_of(pid.as_raw());
            self.sockets.record_claim(port, tgid, fd, st.st_ino);
        }
        if addr == 0 || len == 0 {
            return;
        }
        let Some(peer) = remote.peer else { return };
        let Ok(room) = mem::read_bytes(pid, len, 4) else {
            return;
        };
        let room =
            usize::try_from(u32::from_ne_bytes([room[0], room[1], room[2], room[3]])).unwrap_or(0);
        let encoded = crate::syscall::layout::encode_sockaddr(&peer);
        let actual = u32::try_from(encoded.len()).unwrap_or(0);
        // Best effort: a buffer the program made unwritable keeps the
        // loopback address the kernel wrote, and the call still succeeds.
        let _ = mem::write_bytes(pid, addr, &encoded[..encoded.len().min(room)]);
        let _ = mem::write_bytes(pid, len, &actual.to_ne_bytes());
    }

    /// Lays `scratch` out below the red zone (each offset in `relocs` turned
    /// into an address), points arguments at it, sets others to `values`,
    /// and runs the call to its exit stop.
    pub(super) fn run_on_scratch(&mut self, stop: Stop, sp: u64, plan: plan::Scratch) {
        let plan::Scratch {
            mut scratch,
            relocs,
            args,
            values,
            after,
        } = plan;
        let Ok(saved) = stop.regs() else {
            return stop.resume();
        };
        let len = u64::try_from(scratch.len()).unwrap_or(u64::MAX);
        let base = sp.saturating_sub(RED_ZONE).saturating_sub(len) & !15;
        for &at in &relocs {
            if let Some(word) = scratch.get_mut(at..at + 8) {
                let mut w = [0u8; 8];
                w.copy_from_slice(word);
                word.copy_from_slice(&(u64::from_ne_bytes(w) + base).to_ne_bytes());
            }
        }
        if !scratch.is_empty()
            && let Err(e) = mem::write_bytes(stop.pid(), base, &scratch)
        {
            return stop.skip(e.as_syscall_return());
        }
        let mut regs = saved;
        for &(i, off) in &args {
            set_arg(&mut regs, i, base + off);
        }
        for &(i, v) in &values {
            set_arg(&mut regs, i, v);
        }
        self.run_to_exit(stop, saved, regs, exit_action(after, base));
    }

    /// A datagram's source as the kernel reported it is a relay: the
    /// program sees the remote peer the relay stands for.
    fn rewrite_source(&self, pid: Pid, slot: &crate::syscall::udp::SourceSlot) {
        if slot.name == 0 {
            return;
        }
        let Ok(len) = mem::read_bytes(pid, slot.len_addr, 4) else {
            return;
        };
        let len = u32::from_ne_bytes([len[0], len[1], len[2], len[3]]).min(slot.room);
        let Ok(kernel) = mem::read_bytes(pid, slot.name, usize::try_from(len).unwrap_or(0)) else {
            return;
        };
        let rewritten = crate::syscall::udp::rewrite_source(&kernel, slot.room, |a| {
            self.forwarder.udp_peer_of(a)
        });
        if let Some((bytes, actual)) = rewritten {
            // Best effort, as in `claim_accepted`: the kernel's relay
            // address stays if the program's buffer cannot be written.
            let _ = mem::write_bytes(pid, slot.name, &bytes);
            let _ = mem::write_bytes(pid, slot.len_addr, &actual.to_ne_bytes());
        }
    }

    /// Runs `openat(AT_FDCWD, path, flags, 0)` of rscq's own in place of the
    /// stopped call (a placeholder, a shadow file), then `after` at its exit.
    pub(super) fn run_openat(&mut self, stop: Stop, path: Vec<u8>, flags: i32, after: ExitAction) {
        let sp = stop.stack_pointer();
        let args = [
            Some(i64::from(libc::AT_FDCWD).cast_unsigned()),
            None,
            Some(u64::from(flags.cast_unsigned())),
            Some(0),
            None,
            None,
        ];
        self.rewrite_and_run(
            stop,
            sp,
            Some((libc::SYS_openat, args)),
            &[(1, path)],
            after,
        );
    }

    /// Puts `paths` below the red zone, points argument registers at them,
    /// optionally changes the syscall, and runs it to its exit stop.
    pub(super) fn rewrite_and_run(
        &mut self,
        stop: Stop,
        sp: u64,
        syscall: Option<(i64, [Option<u64>; ARG_REGS])>,
        paths: &[(usize, Vec<u8>)],
        after: ExitAction,
    ) {
        let Ok(saved) = stop.regs() else {
            return stop.resume();
        };
        let mut regs = saved;
        // Below a rewritten `#!` `argv` of the same call, if any.
        let floor = self
            .threads
            .get_mut(&stop.tid())
            .and_then(|t| t.exec_floor.take());
        let sp = floor.map_or(sp, |floor| floor.min(sp));
        let mut at = sp.saturating_sub(RED_ZONE);
        for (arg, path) in paths {
            let mut bytes = path.clone();
            bytes.push(0);
            at = at.saturating_sub(bytes.len() as u64) & !15;
            if let Err(e) = mem::write_bytes(stop.pid(), at, &bytes) {
                return stop.skip(e.as_syscall_return());
            }
            set_arg(&mut regs, *arg, at);
        }
        if let Some((nr, args)) = syscall {
            regs.orig_rax = nr.cast_unsigned();
            for (i, v) in args.iter().enumerate() {
                if let Some(v) = v {
                    set_arg(&mut regs, i, *v);
                }
            }
        }
        self.run_to_exit(stop, saved, regs, after);
    }

    /// Sets `regs` (the rewritten call) and runs it to its exit stop, where
    /// `saved` comes back and `after` is done; a thread whose registers
    /// cannot be set is let go as it is.
    fn run_to_exit(
        &mut self,
        stop: Stop,
        saved: libc::user_regs_struct,
        regs: libc::user_regs_struct,
        after: ExitAction,
    ) {
        if stop.try_set_regs(regs).is_err() {
            return stop.resume();
        }
        self.set_state(stop.tid(), ThreadState::AwaitingExit { saved, after });
        stop.resume_to_syscall_stop();
    }

    pub(super) fn on_syscall_exit(&mut self, stop: Stop) {
        let tid = stop.tid();
        if matches!(self.state(tid), Some(ThreadState::Injecting { .. })) {
            return self.on_injection_stop(stop);
        }
        if matches!(self.state(tid), Some(ThreadState::MapShadow { .. })) {
            return self.on_shadow_stop(stop);
        }
        let Some(ThreadState::AwaitingExit { saved, after }) = self.take_state(tid) else {
            self.set_state(tid, ThreadState::Running);
            return stop.resume();
        };
        if matches!(after, ExitAction::ShadowOpened) {
            let result = stop
                .regs()
                .map_or(-i64::from(libc::EIO), |r| r.rax.cast_signed());
            return self.shadow_opened(stop, saved, result);
        }
        let result = stop.regs().map(|r| r.rax.cast_signed()).unwrap_or(-1);
        let again = matches!(after, ExitAction::SocketTraps { ret: None });
        let (result, first_remote_file) = self.after_exit(stop.pid(), after, result);
        if again {
            return stop.resume_with_regs(super::inject::call_again(saved));
        }
        let mut regs = saved;
        regs.rax = result.cast_unsigned();
        if first_remote_file && !self.fd_filter.is_empty() {
            if self.config.fastpath {
                super::tell_fastpath(stop.pid(), crate::fastpath::FLAG_FD_CALLS_STOP);
            }
            return self.inject_fd_filter(stop, regs);
        }
        stop.resume_with_regs(regs);
    }

    /// What the planner asked for after the program's own call returned
    /// `result` ([`AfterNative`]); `scratch` is where its arguments were
    /// copied, if they were.
    fn after_native(&mut self, pid: Pid, after: AfterNative, scratch: u64, result: i64) {
        let tid = pid.as_raw();
        match after {
            AfterNative::Nothing => {}
            // Even a failed call may have changed some (`setgroups` then
            // a failing step of glibc's all-threads `setuid`): read again.
            AfterNative::CredsChanged => super::creds::forget_all(),
            AfterNative::LeaveVirtualCwd => {
                if result == 0 {
                    self.set_virtual_cwd(tid, None);
                }
            }
            AfterNative::AcceptRemote { addr, len } => {
                if let Ok(fd) = i32::try_from(result) {
                    self.claim_accepted(pid, fd, addr, len);
                }
            }
            AfterNative::UdpSources { slots, counted } => {
                let used = if counted {
                    usize::try_from(result).unwrap_or(0)
                } else {
                    usize::from(result >= 0)
                };
                for slot in slots.iter().take(used) {
                    self.rewrite_source(pid, slot);
                }
            }
            AfterNative::DatagramStandIn(kind) => {
                let st = i32::try_from(result)
                    .ok()
                    .and_then(|fd| self.dup_fd(pid, fd))
                    .and_then(|dup| rustix::fs::fstat(&dup).ok());
                if let Some(st) = st {
                    self.sockets.set_datagram_kind(st.st_ino, kind);
                }
            }
            AfterNative::MsgLens { vec } => {
                for i in 0..u64::try_from(result).unwrap_or(0) {
                    let at = i * 64 + 56;
                    if let Ok(len) = mem::read_bytes(pid, scratch + at, 4) {
                        // Best effort: an unwritable entry keeps its old length.
                        let _ = mem::write_bytes(pid, vec + at, &len);
                    }
                }
            }
        }
    }

    /// Does what `after` says once the rewritten call returned `result`;
    /// returns the result the program sees, and whether the call installed
    /// the first remote file of a process without the fd filter.
    fn after_exit(&mut self, pid: Pid, after: ExitAction, result: i64) -> (i64, bool) {
        let tid = pid.as_raw();
        let mut first_remote_file = false;
        let mut result = result;
        match after {
            ExitAction::Restore | ExitAction::ShadowOpened => {}
            // Reached only when the exec failed: a new program never
            // returns from it.
            ExitAction::RemoveFile(path) => {
                let _ = std::fs::remove_file(path);
            }
            ExitAction::Fail(e) => {
                if result >= 0 {
                    result = e.as_syscall_return();
                }
            }
            ExitAction::SocketTraps { ret } => {
                if result != 0 {
                    eprintln!(
                        "rscq: cannot trap the closes of process {} (seccomp returned {result}); the server releases its closed listeners a moment after their close",
                        self.tgid_of(tid)
                    );
                }
                // `None`: the call runs again (see `on_syscall_exit`).
                result = ret.unwrap_or(result);
            }
            ExitAction::Native { after, scratch } => {
                self.after_native(pid, after, scratch, result);
            }
            ExitAction::Placeholder {
                read_end,
                key,
                handle,
                trace,
            } => {
                if let Some(dir) = &self.placeholders {
                    dir.remove(key);
                }
                let remote = self.registry.get(key).and_then(|f| self.remote_of(&f.path));
                if result < 0 {
                    // No writer ever came, so the read end would never hang
                    // up: close the remote handle now.
                    self.registry.remove(key);
                    drop(read_end);
                    let close = Call::detached(0, Request::Close { handle }).on(remote);
                    let _ = self.forwarder.submit(close);
                } else {
                    first_remote_file = !self.process_has_fd_traps(tid);
                    // One byte, never read (the program's reads of the fd
                    // are rscq's): the placeholder polls readable.
                    if let Some(fd) = i32::try_from(result)
                        .ok()
                        .and_then(|fd| self.dup_fd(pid, fd))
                    {
                        // Best effort: without it the fd only polls writable.
                        let _ = rustix::io::write(&fd, &[0]);
                    }
                    self.forwarder.watch_close(read_end, key, handle, remote);
                }
                if let Some(pending) = trace {
                    self.trace(&TraceLine {
                        tid,
                        name: pending.name,
                        args: &pending.args,
                        ret: Returned::Value(result),
                        took: pending.took,
                        note: None,
                        remote: None,
                    });
                }
            }
        }
        (result, first_remote_file)
    }
}
