//! Raw syscalls of the tracer: ptrace requests nix lacks or gets wrong,
//! seccomp installation, and the fork that starts the program.
//!
//! Wrappers only: must not keep tracer state.

use std::ffi::CString;

use nix::errno::Errno as NixErrno;
use nix::unistd::Pid;

/// One classic-BPF instruction, `struct sock_filter` in `linux/filter.h`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// The registers of a syscall at a seccomp stop, from
/// `PTRACE_GET_SYSCALL_INFO` (ptrace(2), Linux 5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeccompStop {
    pub arch: u32,
    pub nr: u64,
    pub args: [u64; 6],
    pub ret_data: u32,
    pub stack_pointer: u64,
}

const PTRACE_SYSCALL_INFO_SECCOMP: u8 = 3;

/// Reads the syscall that stopped `pid` at a `PTRACE_EVENT_SECCOMP` stop.
///
/// nix's `syscall_info` passes a zero size, so the kernel copies nothing;
/// this passes the real size.
pub fn seccomp_stop_info(pid: Pid) -> Result<SeccompStop, NixErrno> {
    let mut info = std::mem::MaybeUninit::<libc::ptrace_syscall_info>::zeroed();
    let size = size_of::<libc::ptrace_syscall_info>();
    // SAFETY: the kernel writes at most `size` bytes into `info`, which is a
    // zero-initialised buffer of exactly that size owned by this frame.
    let res = unsafe {
        libc::ptrace(
            libc::PTRACE_GET_SYSCALL_INFO,
            pid.as_raw(),
            size as *mut libc::c_void,
            info.as_mut_ptr(),
        )
    };
    if res < 0 {
        return Err(NixErrno::last());
    }
    // SAFETY: zero-initialised, and every field is plain data for which any
    // bit pattern is valid.
    let info = unsafe { info.assume_init() };
    if info.op != PTRACE_SYSCALL_INFO_SECCOMP {
        return Err(NixErrno::EINVAL);
    }
    // SAFETY: `op` says the `seccomp` member of the union is the one filled.
    let seccomp = unsafe { info.u.seccomp };
    Ok(SeccompStop {
        arch: info.arch,
        nr: seccomp.nr,
        args: seccomp.args,
        ret_data: seccomp.ret_data,
        stack_pointer: info.stack_pointer,
    })
}

/// `PTRACE_LISTEN`: lets a group-stopped tracee stay stopped while the tracer
/// still hears about it, as strace does for Ctrl-Z.
pub fn ptrace_listen(pid: Pid) -> Result<(), NixErrno> {
    // SAFETY: PTRACE_LISTEN takes no pointers; a wrong pid only yields ESRCH.
    let res = unsafe {
        libc::ptrace(
            libc::PTRACE_LISTEN,
            pid.as_raw(),
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    if res < 0 {
        Err(NixErrno::last())
    } else {
        Ok(())
    }
}

/// Everything the child needs between `fork` and `execve`, prepared before
/// the fork because the child may only make async-signal-safe calls.
#[derive(Debug)]
pub struct ExecPlan {
    pub program: CString,
    pub argv: Vec<CString>,
    pub filter: Vec<SockFilter>,
    /// The whole environment, when rscq sets variables of its own; `None`
    /// inherits rscq's.
    pub env: Option<Vec<CString>>,
}

/// Forks a child that stops itself, waits for the tracer to seize it, then
/// installs the seccomp filter and execs the program. Returns the child pid.
///
/// The filter goes in only after the seize (the child raises `SIGSTOP` and
/// the parent seizes with `PTRACE_O_TRACESECCOMP` before continuing it):
/// a `SECCOMP_RET_TRACE` with no tracer would fail every trapped call with
/// ENOSYS.
pub fn fork_traced_child(plan: &ExecPlan) -> Result<Pid, NixErrno> {
    let mut argv_ptrs: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut env_ptrs: Option<Vec<*const libc::c_char>> = plan.env.as_ref().map(|env| {
        let mut ptrs: Vec<_> = env.iter().map(|e| e.as_ptr()).collect();
        ptrs.push(std::ptr::null());
        ptrs
    });
    let envp = env_ptrs.as_mut().map_or(std::ptr::null(), |p| p.as_ptr());
    let prog = libc::sock_fprog {
        len: u16::try_from(plan.filter.len()).map_err(|_| NixErrno::E2BIG)?,
        filter: plan.filter.as_ptr().cast::<libc::sock_filter>().cast_mut(),
    };
    // SAFETY: the child only calls async-signal-safe functions on memory
    // prepared before the fork (argv_ptrs, env_ptrs, prog), then execs or
    // `_exit`s.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(NixErrno::last());
    }
    if pid > 0 {
        return Ok(Pid::from_raw(pid));
    }
    // Child.
    // SAFETY: all calls below are async-signal-safe raw syscalls on valid,
    // pre-built arguments; `environ` is the process environment.
    unsafe {
        child_after_fork(plan.program.as_ptr(), argv_ptrs.as_ptr(), envp, &prog);
    }
}

/// The child side of [`fork_traced_child`]. Never returns.
///
/// # Safety
/// Must only be called in a freshly forked child, with valid pointers.
unsafe fn child_after_fork(
    program: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    prog: &libc::sock_fprog,
) -> ! {
    // SAFETY: raw, async-signal-safe syscalls in a freshly forked
    // child; every pointer refers to memory built before the fork.
    unsafe {
        // rscq blocks job-control and termination signals in its threads,
        // and Rust ignores SIGPIPE: the program must start with defaults.
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        for sig in 1..32 {
            if sig != libc::SIGKILL && sig != libc::SIGSTOP {
                libc::signal(sig, libc::SIG_DFL);
            }
        }
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        libc::raise(libc::SIGSTOP);
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
            libc::_exit(126);
        }
        if libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            0,
            prog as *const libc::sock_fprog,
        ) != 0
        {
            libc::_exit(126);
        }
        if envp.is_null() {
            libc::execvp(program, argv);
        } else {
            libc::execvpe(program, argv, envp);
        }
        let code = if *libc::__errno_location() == libc::ENOENT {
            127
        } else {
            126
        };
        libc::_exit(code);
    }
}

/// `tgkill(2)`: sends `sig` to thread `tid` of process `tgid` only.
pub fn tgkill(tgid: i32, tid: i32, sig: libc::c_int) -> Result<(), NixErrno> {
    // SAFETY: a raw syscall with integer arguments; no memory is shared.
    let res = unsafe { libc::syscall(libc::SYS_tgkill, tgid, tid, sig) };
    if res < 0 {
        return Err(NixErrno::last());
    }
    Ok(())
}

/// Blocks `signals` in the calling thread; threads spawned later inherit it.
pub fn block_signals(signals: &[libc::c_int]) -> Result<(), NixErrno> {
    let mut set = nix::sys::signal::SigSet::empty();
    for &s in signals {
        set.add(nix::sys::signal::Signal::try_from(s)?);
    }
    set.thread_block()
}

/// `sigwaitinfo(2)`: waits for one of `signals` (which must be blocked) and
/// returns its number and whether a process sent it (`si_code <= 0`), as
/// opposed to the kernel (a terminal's Ctrl-C is `SI_KERNEL`).
pub fn wait_signal(signals: &[libc::c_int]) -> Result<(libc::c_int, bool), NixErrno> {
    let mut set = nix::sys::signal::SigSet::empty();
    for &s in signals {
        set.add(nix::sys::signal::Signal::try_from(s)?);
    }
    let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
    loop {
        // SAFETY: `set` is a valid sigset and `info` a writable siginfo_t.
        let sig = unsafe { libc::sigwaitinfo(set.as_ref(), info.as_mut_ptr()) };
        if sig < 0 {
            let err = NixErrno::last();
            if err == NixErrno::EINTR {
                continue;
            }
            return Err(err);
        }
        // SAFETY: sigwaitinfo filled `info` on success.
        let info = unsafe { info.assume_init() };
        return Ok((sig, info.si_code <= 0));
    }
}
