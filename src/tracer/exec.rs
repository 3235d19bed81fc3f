//! `execve` of a remote executable, after its local copy is made: a binary
//! runs from the copy, a `#!` script by its interpreter, and an absolute
//! symlink by its target, each planned again as the kernel would follow it.
//!
//! Rewrites the stopped thread's registers and stack only; must not keep
//! state beyond the per-thread hop count and scratch floor.

use nix::unistd::Pid;

use super::control::Stop;
use super::state::ExitAction;
use super::{Forwarder, RED_ZONE, Tracer, get_arg, mem, set_arg};
use crate::errno::Errno;
use crate::syscall::exec;

impl<F: Forwarder> Tracer<'_, F> {
    /// Runs the local copy of a remote executable in place of the path the
    /// program gave: a binary as it is; a `#!` script as the kernel would,
    /// by its interpreter with the program's own script path (which the
    /// interpreter then opens through the mount), planned again in case the
    /// interpreter is remote too.
    pub(super) fn exec_copy(
        &mut self,
        stop: Stop,
        copy: Vec<u8>,
        path_arg: usize,
        argv_arg: usize,
    ) {
        use std::io::Read as _;
        use std::os::unix::ffi::OsStringExt as _;
        let tid = stop.tid();
        let pid = stop.pid();
        let hops = self.take_exec_hops(tid);
        let file = std::path::PathBuf::from(std::ffi::OsString::from_vec(copy.clone()));
        let mut head = Vec::with_capacity(exec::HEAD);
        let read = std::fs::File::open(&file)
            .and_then(|f| f.take(exec::HEAD as u64).read_to_end(&mut head));
        // The copy is rscq's own file: removing it fails only if it is gone
        // already, so the errors of `remove_file` below are dropped.
        let fail = |stop: Stop, e: Errno| {
            let _ = std::fs::remove_file(&file);
            stop.skip(e.as_syscall_return());
        };
        let Ok(regs) = stop.regs() else {
            let _ = std::fs::remove_file(&file);
            return stop.resume();
        };
        if let Err(e) = read {
            return fail(stop, Errno::from_io(&e));
        }
        let shebang = match exec::shebang(&head) {
            Err(e) => return fail(stop, e),
            Ok(None) => {
                // The copy stays for the run: `/proc/self/exe` names it.
                let at = [(path_arg, copy)];
                self.rewrite_and_run(stop, regs.rsp, None, &at, ExitAction::RemoveFile(file));
                return;
            }
            Ok(Some(shebang)) => shebang,
        };
        let _ = std::fs::remove_file(&file);
        if hops + 1 >= exec::MAX_HOPS {
            return stop.skip(Errno(libc::ELOOP).as_syscall_return());
        }
        let script = match mem::read_cstring(pid, get_arg(&regs, path_arg)) {
            Ok(s) => s,
            Err(e) => return stop.skip(e.as_syscall_return()),
        };
        let kept = match read_pointers(pid, get_arg(&regs, argv_arg)) {
            Ok(argv) => argv.into_iter().skip(1).collect::<Vec<_>>(),
            Err(e) => return stop.skip(e.as_syscall_return()),
        };
        let len = exec::script_argv(0, &shebang, &script, &kept).0.len() as u64;
        let base = self.exec_scratch_top(tid, regs.rsp).saturating_sub(len) & !15;
        let (bytes, array) = exec::script_argv(base, &shebang, &script, &kept);
        if let Err(e) = mem::write_bytes(pid, base, &bytes) {
            return stop.skip(e.as_syscall_return());
        }
        let mut regs = regs;
        // The interpreter's name is the first string at `base`.
        set_arg(&mut regs, path_arg, base);
        set_arg(&mut regs, argv_arg, array);
        self.plan_exec_again(stop, regs, hops + 1, base);
    }

    /// The `#!` hops of thread `tid`'s exec so far, taken.
    fn take_exec_hops(&mut self, tid: i32) -> u32 {
        self.threads
            .get_mut(&tid)
            .map_or(0, |t| std::mem::take(&mut t.exec_hops))
    }

    /// Where scratch memory for a rewritten `execve` may end: below the red
    /// zone, and below what an earlier `#!` hop of the same call wrote.
    fn exec_scratch_top(&self, tid: i32, sp: u64) -> u64 {
        let top = sp.saturating_sub(RED_ZONE);
        self.threads
            .get(&tid)
            .and_then(|t| t.exec_floor)
            .map_or(top, |floor| top.min(floor))
    }

    /// The program exec'd a remote symlink with an absolute target: exec
    /// the target instead (planned again: it may be local or remote).
    pub(super) fn exec_link(&mut self, stop: Stop, target: &[u8], path_arg: usize) {
        let tid = stop.tid();
        let hops = self.take_exec_hops(tid);
        if hops + 1 >= exec::MAX_HOPS {
            return stop.skip(Errno(libc::ELOOP).as_syscall_return());
        }
        let Ok(mut regs) = stop.regs() else {
            return stop.resume();
        };
        let mut bytes = target.to_vec();
        bytes.push(0);
        let base = self
            .exec_scratch_top(tid, regs.rsp)
            .saturating_sub(bytes.len() as u64)
            & !15;
        if let Err(e) = mem::write_bytes(stop.pid(), base, &bytes) {
            return stop.skip(e.as_syscall_return());
        }
        set_arg(&mut regs, path_arg, base);
        self.plan_exec_again(stop, regs, hops + 1, base);
    }

    /// The exec's path (and `argv`) now name the next file to run, written
    /// at `floor`: plans the call again, hop `hops` of this exec.
    fn plan_exec_again(&mut self, stop: Stop, regs: libc::user_regs_struct, hops: u32, floor: u64) {
        if stop.try_set_regs(regs).is_err() {
            return stop.resume();
        }
        let thread = self.thread_mut(stop.tid());
        thread.exec_hops = hops;
        thread.exec_floor = Some(floor);
        self.on_seccomp(stop);
    }
}

/// The NULL-terminated array of pointers at `addr` (a program's `argv`);
/// empty for NULL, as Linux takes a NULL `argv`.
fn read_pointers(pid: Pid, addr: u64) -> Result<Vec<u64>, Errno> {
    const MAX_ARGS: usize = 1 << 17;
    let mut out = Vec::new();
    if addr == 0 {
        return Ok(out);
    }
    loop {
        let at = addr + 8 * out.len() as u64;
        let word = mem::read_bytes(pid, at, 8)?;
        let p = u64::from_ne_bytes(word.try_into().map_err(|_| Errno::EFAULT)?);
        if p == 0 {
            return Ok(out);
        }
        if out.len() >= MAX_ARGS {
            return Err(Errno::E2BIG);
        }
        out.push(p);
    }
}
