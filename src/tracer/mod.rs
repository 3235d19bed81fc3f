//! The ptrace front end.
//!
//! One thread, the tracer thread, makes every ptrace call. It forks the
//! program, seizes it, and reacts to two kinds of [`Event`]: wait statuses
//! (from a reaper thread that only calls `waitpid`) and replies to forwarded
//! calls (from the engine). A thread of the program waiting for a reply is
//! simply left in its seccomp stop; every other thread keeps running, so
//! calls from many threads and processes are in flight together.
//!
//! A remote file lives in the program's real fd table as a *placeholder*:
//! the write end of a FIFO rscq made, which the program opens itself, with
//! its own rights ([`placeholder`]). The kernel then owns dup, fork, exec and
//! close, and rscq learns of the last close when its read end hangs up.
//!
//! The tracer thread's work is split by concern: [`Tracer::run`] (here)
//! takes events and hands each to `lifecycle` (fork, clone, exec, exit),
//! `stop` (seccomp stops: plan the call and carry the plan out), `exit`
//! (syscall-exit stops of rewritten calls), `signals` (signals, and the
//! interruptible sleep), `reply` (replies to forwarded calls) or `inject`
//! (putting the fd filter into a process); `exec` runs remote executables,
//! `view` is the planner's view of a stopped thread, `state` the
//! per-thread and per-process state, and `control` the `Stop`
//! every handler is given: a thread in a ptrace stop, resumed exactly once.

pub mod creds;
pub mod events;
pub mod mem;
pub mod placeholder;
pub mod registry;
pub mod seccomp;

mod control;
mod exec;
mod exit;
mod inject;
mod lifecycle;
mod mapshadow;
mod reply;
pub mod seam;
mod signals;
mod state;
mod stop;
mod view;

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::OwnedFd;

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::sys::tracer::{self as sys, ExecPlan};
use crate::syscall::nr;
use crate::syscall::plan::{Forwarding, Then};

pub use registry::{Registry, RemoteSocket, SocketRegistry};
pub use seam::{Call, Event, Forwarder, ProgramFd};

use control::Stop;
use state::{ProcessState, Thread, ThreadState};

#[derive(Debug, thiserror::Error)]
pub enum TracerError {
    #[error("rscq only supports x86_64 Linux; this is {0}")]
    UnsupportedArch(&'static str),
    #[error("cannot start {program}: {source}")]
    Spawn { program: String, source: nix::Error },
    #[error(
        "cannot trace the program (ptrace refused: {0}); rscq needs ptrace rights (see README)"
    )]
    Seize(nix::Error),
    #[error("program argument contains a NUL byte")]
    NulInArgument,
    #[error("no program given")]
    NoProgram,
}

/// How the program ended, as a shell reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl ExitStatus {
    /// The exit code rscq itself returns: the program's, or 128+N.
    pub fn code(self) -> i32 {
        match self {
            Self::Code(c) => c,
            Self::Signal(s) => 128 + s,
        }
    }
}

/// What the tracer forwards.
#[derive(Debug, Clone)]
pub struct TracerConfig {
    pub forwarding: std::sync::Arc<Forwarding>,
    pub trace: bool,
    /// From rsc.config's `REMOTE` lines: only these syscalls (or their
    /// families) are forwarded. `None` forwards everything a mount needs.
    pub only: Option<std::collections::BTreeSet<String>>,
}

/// Trapped with `--pure --net`.
const PURE_SOCKET_CALLS: [i64; 15] = [
    libc::SYS_read,
    libc::SYS_write,
    libc::SYS_readv,
    libc::SYS_writev,
    libc::SYS_recvfrom,
    libc::SYS_sendto,
    libc::SYS_recvmsg,
    libc::SYS_sendmsg,
    libc::SYS_poll,
    libc::SYS_ppoll,
    libc::SYS_select,
    libc::SYS_pselect6,
    libc::SYS_epoll_wait,
    libc::SYS_epoll_pwait,
    libc::SYS_epoll_pwait2,
];

/// Trapped with `--net`: their addresses are inside `struct msghdr`.
const UDP_MSG_CALLS: [i64; 4] = [
    libc::SYS_sendmsg,
    libc::SYS_recvmsg,
    libc::SYS_sendmmsg,
    libc::SYS_recvmmsg,
];

/// The syscall rules of the filter for `config`.
pub fn filter_rules(config: &TracerConfig) -> Vec<(i64, seccomp::Action)> {
    let mut rules = Vec::new();
    for &nr in nr::REFUSED {
        rules.push((nr, seccomp::Action::Errno(38)));
    }
    let wanted = |name: &str| config.only.as_ref().is_none_or(|set| nr::listed(set, name));
    let fwd = &config.forwarding;
    if fwd.uname && wanted(nr::UNAME.1) {
        rules.push((nr::UNAME.0, seccomp::Action::Trace));
    }
    if fwd.net {
        for &(nr, _) in nr::NET_CALLS {
            let action = if nr == libc::SYS_getsockopt {
                // Only the result of a connect and a dual-stack bind can be
                // the server's; every other option reads the program's own
                // socket.
                seccomp::Action::TraceIfArg {
                    arg: 2,
                    values: [
                        libc::SO_ERROR.unsigned_abs(),
                        libc::IPV6_V6ONLY.unsigned_abs(),
                    ],
                }
            } else {
                seccomp::Action::Trace
            };
            rules.push((nr, action));
        }
        if fwd.pure_net {
            // Stop-and-wait: every data call and every wait for input on a
            // remote socket is seen.
            for nr in PURE_SOCKET_CALLS {
                rules.push((nr, seccomp::Action::Trace));
            }
            // What a remote socket holds is known only on the server.
            if let Ok(fionread) = u32::try_from(libc::FIONREAD) {
                rules.push((
                    libc::SYS_ioctl,
                    seccomp::Action::TraceIfArg {
                        arg: 1,
                        values: [fionread, fionread],
                    },
                ));
            }
        } else {
            // A send with a destination, and a receive that asks for the
            // source, may concern a remote UDP socket.
            for nr in [libc::SYS_sendto, libc::SYS_recvfrom] {
                rules.push((nr, seccomp::Action::TraceUnlessArg { arg: 4, value: 0 }));
            }
        }
        // UDP addresses hide inside `msghdr`, where the filter cannot look.
        for nr in UDP_MSG_CALLS {
            rules.push((nr, seccomp::Action::Trace));
        }
        // UDP-Lite cannot be carried: refused at `socket`, not lost later.
        if let Ok(udplite) = u32::try_from(libc::IPPROTO_UDPLITE) {
            rules.push((
                libc::SYS_socket,
                seccomp::Action::TraceIfArg {
                    arg: 2,
                    values: [udplite, udplite],
                },
            ));
        }
    }
    if fwd.net && fwd.mounts.is_empty() {
        // The resolver files come from the server: every open must be seen.
        for nr in [libc::SYS_open, libc::SYS_openat, libc::SYS_openat2] {
            rules.push((nr, seccomp::Action::Trace));
        }
    }
    if !fwd.mounts.is_empty() {
        for &(nr, name) in nr::PATH_CALLS {
            // The cwd must stay consistent whatever the set says.
            let always = matches!(name, "chdir" | "getcwd");
            if always || wanted(name) {
                rules.push((nr, seccomp::Action::Trace));
            }
        }
        // A local fd can end a remote cwd, so this one is seen everywhere.
        rules.push((libc::SYS_fchdir, seccomp::Action::Trace));
        // An AF_UNIX socket's path may name a file in a mount.
        if !fwd.net {
            for nr in [libc::SYS_bind, libc::SYS_connect] {
                rules.push((nr, seccomp::Action::Trace));
            }
        }
    }
    rules
}

/// The calls on fds that stop a process once it holds a remote file: a
/// second filter with these rules goes into a process when its first
/// placeholder is installed, so programs that never open a remote file
/// (and processes of a program that do not) run their reads and writes at
/// native speed. Empty without a mount.
pub fn fd_filter_rules(config: &TracerConfig) -> Vec<(i64, seccomp::Action)> {
    let fwd = &config.forwarding;
    if fwd.mounts.is_empty() {
        return Vec::new();
    }
    let wanted = |name: &str| config.only.as_ref().is_none_or(|set| nr::listed(set, name));
    let mut rules: Vec<_> = nr::FD_CALLS
        .iter()
        .filter(|&&(nr, name)| nr != libc::SYS_fchdir && wanted(name))
        .map(|&(nr, _)| (nr, seccomp::Action::Trace))
        .collect();
    // A close sends the writes held for its file and reports them, and
    // releases the process's record locks on it.
    rules.push((libc::SYS_close, seccomp::Action::Trace));
    // A remote file's mapping is rscq's; anonymous mappings never stop.
    rules.push((
        libc::SYS_mmap,
        seccomp::Action::TraceUnlessArg {
            arg: 4,
            value: u32::MAX,
        },
    ));
    rules
}

/// The calls that stop a process once it maps a remote file shared (a
/// third filter, put in at its first such mapping): what the mappings
/// wrote goes to the server at `munmap` and `msync` (the call runs
/// natively at once when the range maps no shadow). Empty without a mount.
pub fn map_filter_rules(config: &TracerConfig) -> Vec<(i64, seccomp::Action)> {
    if config.forwarding.mounts.is_empty() {
        return Vec::new();
    }
    vec![
        (libc::SYS_munmap, seccomp::Action::Trace),
        (libc::SYS_msync, seccomp::Action::Trace),
    ]
}

/// The tracer thread's state.
pub struct Tracer<'a, F: Forwarder> {
    config: TracerConfig,
    forwarder: &'a F,
    registry: Registry,
    sockets: SocketRegistry,
    events: events::EventQueue,
    root: Pid,
    /// Where remote files' placeholders are made (with mounts only).
    placeholders: Option<placeholder::PlaceholderDir>,
    /// The second filter, put into a process with its first remote file.
    fd_filter: Vec<crate::sys::tracer::SockFilter>,
    /// The third filter, put into a process with its first shared mapping
    /// of a remote file.
    map_filter: Vec<crate::sys::tracer::SockFilter>,
    /// Every known thread, by thread id (see [`Thread`]).
    threads: HashMap<i32, Thread>,
    /// Every known process, by thread-group id.
    processes: HashMap<i32, ProcessState>,
    /// New children whose first stop came before their parent's event: no
    /// [`Thread`] exists for them yet, so they wait here, stopped.
    early_stops: HashMap<i32, Stop>,
    root_status: Option<ExitStatus>,
    /// Numbers the sleeps whose replies may come after a signal ended them.
    next_sleep: u64,
}

/// Forks and seizes the program; the caller then runs [`Tracer::run`] on the
/// same thread. `events` must be fed by a reaper started after this returns.
pub fn spawn(
    program: &[std::ffi::OsString],
    filter: &[(i64, seccomp::Action)],
) -> Result<Pid, TracerError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(TracerError::UnsupportedArch(std::env::consts::ARCH));
    }
    use std::os::unix::ffi::OsStrExt;
    let first = program.first().ok_or(TracerError::NoProgram)?;
    let argv = program
        .iter()
        .map(|a| CString::new(a.as_bytes()).map_err(|_| TracerError::NulInArgument))
        .collect::<Result<Vec<_>, _>>()?;
    let exec = ExecPlan {
        program: CString::new(first.as_bytes()).map_err(|_| TracerError::NulInArgument)?,
        argv,
        filter: seccomp::build(filter),
    };
    let name = first.to_string_lossy().into_owned();
    let pid = sys::fork_traced_child(&exec).map_err(|source| TracerError::Spawn {
        program: name.clone(),
        source,
    })?;
    // The child stops itself; seize it there, then let it install the filter.
    match waitpid(pid, Some(WaitPidFlag::WSTOPPED)) {
        Ok(WaitStatus::Stopped(_, Signal::SIGSTOP)) => {}
        Ok(other) => {
            return Err(TracerError::Spawn {
                program: name,
                source: nix::Error::ECHILD,
            })
            .inspect_err(|_| tracing::error!(?other, "child did not stop"));
        }
        Err(source) => {
            return Err(TracerError::Spawn {
                program: name,
                source,
            });
        }
    }
    let options = ptrace::Options::PTRACE_O_TRACESECCOMP
        | ptrace::Options::PTRACE_O_TRACESYSGOOD
        | ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACEVFORK
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEEXEC
        | ptrace::Options::PTRACE_O_EXITKILL;
    if let Err(e) = ptrace::seize(pid, options) {
        // Fails only if the child is already gone; the seize error is what
        // the caller needs.
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        return Err(TracerError::Seize(e));
    }
    // Fails only if the child is gone; its wait status then says how it ended.
    let _ = nix::sys::signal::kill(pid, Signal::SIGCONT);
    Ok(pid)
}

fn is_stop_signal(sig: Signal) -> bool {
    matches!(
        sig,
        Signal::SIGSTOP | Signal::SIGTSTP | Signal::SIGTTIN | Signal::SIGTTOU
    )
}

const ARG_REGS: usize = 6;

fn get_arg(regs: &libc::user_regs_struct, i: usize) -> u64 {
    match i {
        0 => regs.rdi,
        1 => regs.rsi,
        2 => regs.rdx,
        3 => regs.r10,
        4 => regs.r8,
        _ => regs.r9,
    }
}

fn set_arg(regs: &mut libc::user_regs_struct, i: usize, v: u64) {
    match i {
        0 => regs.rdi = v,
        1 => regs.rsi = v,
        2 => regs.rdx = v,
        3 => regs.r10 = v,
        4 => regs.r8 = v,
        _ => regs.r9 = v,
    }
}

/// Kernel-internal restart codes (`include/linux/errno.h`), valid in the
/// result register only at a stop inside signal processing.
pub const ERESTARTSYS: i32 = 512;
const ERESTARTNOINTR: i32 = 513;

/// Room the x86_64 ABI lets a leaf function use below the stack pointer.
const RED_ZONE: u64 = 128;

impl<'a, F: Forwarder> Tracer<'a, F> {
    pub fn new(
        config: TracerConfig,
        forwarder: &'a F,
        registry: Registry,
        sockets: SocketRegistry,
        events: events::EventQueue,
        root: Pid,
    ) -> Self {
        let mut processes = HashMap::new();
        processes.insert(root.as_raw(), ProcessState::default());
        let mut threads = HashMap::new();
        threads.insert(root.as_raw(), Thread::new(root.as_raw()));
        let fd_rules = fd_filter_rules(&config);
        let fd_filter = if fd_rules.is_empty() {
            Vec::new()
        } else {
            seccomp::build(&fd_rules)
        };
        let map_rules = map_filter_rules(&config);
        let map_filter = if map_rules.is_empty() {
            Vec::new()
        } else {
            seccomp::build(&map_rules)
        };
        Self {
            config,
            forwarder,
            registry,
            sockets,
            events,
            root,
            placeholders: None,
            fd_filter,
            map_filter,
            threads,
            processes,
            early_stops: HashMap::new(),
            root_status: None,
            next_sleep: 1,
        }
    }

    /// Makes remote files' placeholders in `dir` (a run with mounts).
    pub fn with_placeholders(mut self, dir: Option<placeholder::PlaceholderDir>) -> Self {
        self.placeholders = dir;
        self
    }

    /// Handles events until no traced process is left; returns how the
    /// program (the first process) ended.
    pub fn run(mut self) -> ExitStatus {
        'run: loop {
            for event in self.events.next_batch() {
                match event {
                    Event::Wait(status) => self.on_wait(status),
                    Event::Reply { tid, response, rtt } => {
                        // A numbered sleep takes only its own reply.
                        let numbered = matches!(
                            self.state(tid),
                            Some(ThreadState::Sleeping { .. } | ThreadState::Interrupting { .. })
                        );
                        if !numbered {
                            self.on_reply(tid, response, rtt);
                        }
                    }
                    Event::SleeperReply {
                        tid,
                        op,
                        response,
                        rtt,
                    } => {
                        let current = match self.state(tid) {
                            Some(ThreadState::Sleeping { sleep, .. }) => sleep.op == op,
                            Some(ThreadState::Interrupting { op: o, .. }) => *o == op,
                            _ => false,
                        };
                        if current {
                            self.on_reply(tid, response, rtt);
                        }
                    }
                    Event::Signal(sig) => {
                        if let Ok(sig) = Signal::try_from(sig) {
                            // ESRCH: the program's first process is gone;
                            // there is nobody to forward the signal to.
                            let _ = nix::sys::signal::kill(self.root, sig);
                        }
                    }
                    Event::NoChildren => break 'run,
                }
                if self.threads.is_empty() && self.root_status.is_some() {
                    break 'run;
                }
            }
        }
        self.root_status.unwrap_or(ExitStatus::Code(1))
    }

    fn on_wait(&mut self, status: WaitStatus) {
        match status {
            WaitStatus::PtraceEvent(pid, sig, event) => self.on_event(Stop::new(pid), sig, event),
            WaitStatus::PtraceSyscall(pid) => self.on_syscall_exit(Stop::new(pid)),
            WaitStatus::Stopped(pid, sig) => self.on_signal(Stop::new(pid), sig),
            WaitStatus::Exited(pid, code) => self.on_gone(pid, ExitStatus::Code(code)),
            WaitStatus::Signaled(pid, sig, _) => self.on_gone(pid, ExitStatus::Signal(sig as i32)),
            WaitStatus::Continued(_) | WaitStatus::StillAlive => {}
        }
    }

    /// The thread-group (process) id of thread `tid` (itself if unknown).
    fn tgid_of(&self, tid: i32) -> i32 {
        self.threads.get(&tid).map_or(tid, |t| t.tgid)
    }

    /// Where thread `tid` is in rscq's handling of its syscall.
    fn state(&self, tid: i32) -> Option<&ThreadState> {
        self.threads.get(&tid).map(|t| &t.state)
    }

    /// The thread `tid` (made, on its own, if unknown).
    fn thread_mut(&mut self, tid: i32) -> &mut Thread {
        self.threads.entry(tid).or_insert_with(|| Thread::new(tid))
    }

    fn set_state(&mut self, tid: i32, state: ThreadState) {
        self.thread_mut(tid).state = state;
    }

    /// Takes thread `tid`'s state, leaving it [`ThreadState::Running`].
    fn take_state(&mut self, tid: i32) -> Option<ThreadState> {
        self.threads
            .get_mut(&tid)
            .map(|t| std::mem::replace(&mut t.state, ThreadState::Running))
    }

    /// The state of process `tgid` (made if unknown).
    fn process_mut(&mut self, tgid: i32) -> &mut ProcessState {
        self.processes.entry(tgid).or_default()
    }

    /// A copy of fd `fd` of the thread's process, via `pidfd_getfd(2)`.
    fn dup_fd(&self, pid: Pid, fd: i32) -> Option<OwnedFd> {
        dup_fd(self.tgid_of(pid.as_raw()), fd)
    }

    fn trace_local(&self, tid: i32, nr: i64, ret: i64) {
        if self.config.trace && ret < 0 {
            let name = nr::name(nr);
            self.forwarder.trace_line(format!(
                "[pid {tid}] {name}(...) = {} (answered locally)",
                fmt_ret(ret)
            ));
        }
    }

    fn set_virtual_cwd(&mut self, tid: i32, cwd: Option<Vec<u8>>) {
        let tgid = self.tgid_of(tid);
        self.process_mut(tgid).virtual_cwd = cwd;
    }

    /// Holds the thread in its seccomp stop until the reply to its call;
    /// returns its process id, which the engine needs to reach the
    /// process's fds.
    fn wait(&mut self, stop: Stop, nr: i64, then: Then, request_text: String) -> i32 {
        let tid = stop.tid();
        self.set_state(
            tid,
            ThreadState::Waiting {
                stop,
                nr,
                then,
                request_text,
            },
        );
        self.tgid_of(tid)
    }
}

/// A copy of fd `fd` of process `tgid` (which must be a thread-group
/// leader), sharing its open file description.
pub fn dup_fd(tgid: i32, fd: i32) -> Option<OwnedFd> {
    // A failed call's result (negative) names no fd; rustix asserts that.
    if fd < 0 {
        return None;
    }
    let pid = rustix::process::Pid::from_raw(tgid)?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty()).ok()
}

fn fmt_ret(ret: i64) -> String {
    if ret < 0 && ret > -4096 {
        let e = i32::try_from(-ret).unwrap_or(libc::EIO);
        format!(
            "-1 {} ({})",
            errno_name(e),
            std::io::Error::from_raw_os_error(e)
        )
    } else {
        ret.to_string()
    }
}

fn errno_name(e: i32) -> String {
    nix::errno::Errno::from_raw(e)
        .to_string()
        .split(':')
        .next()
        .unwrap_or("E?")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pure_net_filter_traps_data_calls_and_waits() {
        let config = |pure_net| TracerConfig {
            forwarding: std::sync::Arc::new(Forwarding {
                net: true,
                pure_net,
                ..Forwarding::default()
            }),
            trace: false,
            only: None,
        };
        let traced = |c: &TracerConfig, nr| {
            filter_rules(c)
                .iter()
                .any(|&(n, a)| n == nr && a == seccomp::Action::Trace)
        };
        assert!(traced(&config(true), libc::SYS_recvfrom));
        assert!(traced(&config(true), libc::SYS_epoll_wait));
        assert!(!traced(&config(false), libc::SYS_recvfrom));
        assert!(!traced(&config(false), libc::SYS_read));
        // The resolver files are opened from the server even with no mount.
        assert!(traced(&config(false), libc::SYS_openat));
        // UDP: addresses inside msghdr are looked at in both modes.
        for nr in UDP_MSG_CALLS {
            assert!(traced(&config(false), nr));
            assert!(traced(&config(true), nr));
        }
    }

    #[test]
    fn fd_calls_are_trapped_only_by_the_second_filter() {
        let config = TracerConfig {
            forwarding: std::sync::Arc::new(Forwarding {
                mounts: crate::syscall::paths::MountTable::new(vec![
                    crate::syscall::paths::MountPoint {
                        local: b"/r".to_vec(),
                        remote: b"/".to_vec(),
                    },
                ]),
                ..Forwarding::default()
            }),
            trace: false,
            only: None,
        };
        let first = filter_rules(&config);
        let second = fd_filter_rules(&config);
        let has = |rules: &[(i64, seccomp::Action)], nr| rules.iter().any(|&(n, _)| n == nr);
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_fstat,
            libc::SYS_mmap,
        ] {
            assert!(!has(&first, nr) && has(&second, nr), "{nr}");
        }
        for nr in [libc::SYS_openat, libc::SYS_statx, libc::SYS_fchdir] {
            assert!(has(&first, nr) && !has(&second, nr), "{nr}");
        }
        let no_mount = TracerConfig {
            forwarding: std::sync::Arc::new(Forwarding::default()),
            trace: false,
            only: None,
        };
        assert!(fd_filter_rules(&no_mount).is_empty());
        // munmap and msync stop only processes that map a remote file
        // shared: a third filter.
        let third = map_filter_rules(&config);
        for nr in [libc::SYS_munmap, libc::SYS_msync] {
            assert!(!has(&first, nr) && !has(&second, nr) && has(&third, nr));
        }
        assert!(map_filter_rules(&no_mount).is_empty());
    }
}
