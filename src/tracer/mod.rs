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
use crate::syscall::describe::{Returned, Took, TraceLine};
use crate::syscall::nr;
use crate::syscall::paths::RemoteIndex;
use crate::syscall::plan::{Forwarding, Then};

use crate::syscall::sockets::{RemoteSocket, SocketRegistry};
pub use registry::Registry;
pub use seam::{Call, Event, Forwarder, ProgramFd};
pub use seccomp::{fd_filter_rules, filter_rules, map_filter_rules, socket_filter_rules};

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
    /// The fast path is on: every filter lets the preload library's stub
    /// through ([`crate::fastpath`]), and the tracer tells the library when
    /// a cwd becomes remote.
    pub fastpath: bool,
}

impl TracerConfig {
    /// The instruction the filters let through untraced, if any.
    pub fn gate(&self) -> Option<u64> {
        self.fastpath.then_some(crate::fastpath::STUB_SYSCALL_IP)
    }
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
    /// The fourth, put into a process with its first socket bound on the
    /// server.
    socket_filter: Vec<crate::sys::tracer::SockFilter>,
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
    /// The remote of each thread's current forwarded call, for `--trace`.
    traced_on: HashMap<i32, RemoteIndex>,
    /// The remotes' names for `--trace`; empty with one remote.
    remote_names: Vec<String>,
    /// rscq's own seccomp stops so far, for `--stats`.
    stops: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Whether the fast path's data page in `pid`'s memory holds the
/// library's magic: without it (a static binary, the page taken) the
/// address is the program's own, and rscq must not write there.
fn fastpath_page_is_the_library_s(pid: Pid) -> bool {
    use crate::fastpath::{DATA_PAGE, MAGIC};
    mem::read_bytes(pid, DATA_PAGE, 8).is_ok_and(|magic| magic == MAGIC.to_le_bytes())
}

/// Sets `flag` ([`crate::fastpath::FLAG_CWD_MAY_BE_REMOTE`] or
/// [`crate::fastpath::FLAG_FD_CALLS_STOP`]) in the fast path's data page of
/// `pid`'s memory, beside those set before. Only where the library put its
/// magic: without it (a static binary, the page taken) the address is the
/// program's own. The flags stay until the next exec (a `vfork` child
/// shares the page with its parent, which then takes the slow path too:
/// correct, slower).
fn tell_fastpath(pid: Pid, flag: u32) {
    use crate::fastpath::{DATA_PAGE, FLAGS_OFFSET};
    if !fastpath_page_is_the_library_s(pid) {
        return;
    }
    let Ok(old) = mem::read_bytes(pid, DATA_PAGE + FLAGS_OFFSET, 4) else {
        return;
    };
    let old = <[u8; 4]>::try_from(old.as_slice()).map_or(0, u32::from_le_bytes);
    // The library only reads the word; only rscq writes it, from this one
    // thread, so the read and the write cannot interleave with another.
    if let Err(e) = mem::write_bytes(pid, DATA_PAGE + FLAGS_OFFSET, &(old | flag).to_le_bytes()) {
        tracing::debug!(%e, %pid, flag, "cannot set a fast path flag");
    }
}

/// Writes `pid`'s cwd as the planner sees it into the fast path's data
/// page ([`crate::fastpath::told_cwd`]): `remote_cwd` when it is a remote
/// directory, `None` when it is the kernel's own. Only where the library
/// put its magic. The sequence word goes odd before the block and even
/// after it, each in its own write, so a thread of the program reading the
/// page meanwhile sees the change and asks the slow way instead.
fn tell_fastpath_cwd(pid: Pid, tgid: i32, remote_cwd: Option<&[u8]>) {
    use crate::fastpath::{CWD_BLOCK_OFFSET, CWD_SEQ_OFFSET, DATA_PAGE, told_cwd};
    if !fastpath_page_is_the_library_s(pid) {
        return;
    }
    let Ok(old) = mem::read_bytes(pid, DATA_PAGE + CWD_SEQ_OFFSET, 8) else {
        return;
    };
    // Only rscq writes the word, from this one thread; even when whole.
    let seq = <[u8; 8]>::try_from(old.as_slice()).map_or(0, u64::from_le_bytes) | 1;
    let block = told_cwd(tgid, remote_cwd);
    let written = mem::write_bytes(pid, DATA_PAGE + CWD_SEQ_OFFSET, &seq.to_le_bytes())
        .and_then(|()| mem::write_bytes(pid, DATA_PAGE + CWD_BLOCK_OFFSET, &block))
        .and_then(|()| {
            mem::write_bytes(
                pid,
                DATA_PAGE + CWD_SEQ_OFFSET,
                &seq.wrapping_add(1).to_le_bytes(),
            )
        });
    if let Err(e) = written {
        // Left odd, the block is never trusted: the slow path answers.
        tracing::debug!(%e, %pid, "cannot tell the fast path the cwd");
    }
}

/// The program's environment: rscq's own, with `set` replacing variables
/// of the same name; `None` when nothing is set (the child inherits).
fn program_env(
    set: &[(std::ffi::OsString, std::ffi::OsString)],
) -> Result<Option<Vec<CString>>, TracerError> {
    use std::os::unix::ffi::OsStrExt;
    if set.is_empty() {
        return Ok(None);
    }
    let entry = |k: &std::ffi::OsStr, v: &std::ffi::OsStr| {
        let mut bytes = k.as_bytes().to_vec();
        bytes.push(b'=');
        bytes.extend_from_slice(v.as_bytes());
        CString::new(bytes).map_err(|_| TracerError::NulInArgument)
    };
    let mut out = Vec::new();
    for (k, v) in std::env::vars_os() {
        if !set.iter().any(|(name, _)| *name == k) {
            out.push(entry(&k, &v)?);
        }
    }
    for (k, v) in set {
        out.push(entry(k, v)?);
    }
    Ok(Some(out))
}

/// Forks and seizes the program; the caller then runs [`Tracer::run`] on the
/// same thread. `events` must be fed by a reaper started after this returns.
///
/// `gate` is the fast path's stub ([`TracerConfig::gate`]); `env` holds
/// the variables rscq sets for the program on top of its own environment
/// (the fast path's preload), each replacing one of the same name.
pub fn spawn(
    program: &[std::ffi::OsString],
    filter: &[(i64, seccomp::Action)],
    gate: Option<u64>,
    env: &[(std::ffi::OsString, std::ffi::OsString)],
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
        filter: seccomp::build_gated(filter, gate),
        env: program_env(env)?,
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
const ERESTARTNOHAND: i32 = 514;

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
            seccomp::build_gated(&fd_rules, config.gate())
        };
        let map_rules = map_filter_rules(&config);
        let map_filter = if map_rules.is_empty() {
            Vec::new()
        } else {
            seccomp::build_gated(&map_rules, config.gate())
        };
        let socket_rules = socket_filter_rules(&config);
        let socket_filter = if socket_rules.is_empty() {
            Vec::new()
        } else {
            seccomp::build_gated(&socket_rules, config.gate())
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
            socket_filter,
            threads,
            processes,
            early_stops: HashMap::new(),
            root_status: None,
            next_sleep: 1,
            traced_on: HashMap::new(),
            remote_names: Vec::new(),
            stops: std::sync::Arc::default(),
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
                            self.on_reply(tid, response, Took::Remote(rtt));
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
                            self.on_reply(tid, response, Took::Remote(rtt));
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
        crate::sys::fd::dup_fd(self.tgid_of(pid.as_raw()), fd)
    }

    fn trace_local(&self, tid: i32, nr: i64, ret: i64, args: &str) {
        if ret < 0 {
            self.trace(&TraceLine {
                tid,
                name: nr::name(nr),
                args,
                ret: Returned::Value(ret),
                took: Took::Local,
                note: None,
                remote: None,
            });
        }
    }

    /// Prints one `--trace` line (nothing without `--trace`); with
    /// several remotes, a line of a forwarded call names its remote.
    fn trace(&self, line: &TraceLine<'_>) {
        if self.config.trace {
            let remote = self
                .traced_on
                .get(&line.tid)
                .and_then(|&on| self.remote_names.get(on))
                .map(String::as_str);
            let line = TraceLine {
                remote,
                ..line.clone()
            };
            self.forwarder.trace_line(line.to_string());
        }
    }

    /// The remote serving the local path of a remote file.
    fn remote_of(&self, local: &[u8]) -> Option<RemoteIndex> {
        self.config.forwarding.mounts.remote_of(local)
    }

    /// Names the remotes in `--trace` lines (`names[i]` for remote `i`);
    /// with one remote there are none, so its lines stay as they were.
    #[must_use]
    pub fn with_remote_names(mut self, names: Vec<String>) -> Self {
        self.remote_names = if names.len() > 1 { names } else { Vec::new() };
        self
    }

    /// Counts the program's stops in rscq's filters into `stops`.
    #[must_use]
    pub fn with_stop_counter(
        mut self,
        stops: std::sync::Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        self.stops = stops;
        self
    }

    fn set_virtual_cwd(&mut self, tid: i32, cwd: Option<Vec<u8>>) {
        let tgid = self.tgid_of(tid);
        if self.config.fastpath {
            if cwd.is_some() {
                tell_fastpath(Pid::from_raw(tid), crate::fastpath::FLAG_CWD_MAY_BE_REMOTE);
            }
            tell_fastpath_cwd(Pid::from_raw(tid), tgid, cwd.as_deref());
        }
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
