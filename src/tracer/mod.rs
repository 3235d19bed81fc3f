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

pub mod creds;
pub mod events;
pub mod mem;
pub mod placeholder;
pub mod registry;
pub mod seccomp;

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::time::Duration;

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::errno::Errno;
use crate::proto::{Handle, Request, Response};
use crate::sys::tracer::{self as sys, ExecPlan};
use crate::syscall::plan::{self, AfterNative, FdKind, Forwarding, Outcome, Plan, Then, Tracee};
use crate::syscall::{exec, nr};

pub use registry::{Registry, RemoteSocket, SocketRegistry};

/// Something the tracer thread must react to.
#[derive(Debug)]
pub enum Event {
    Wait(WaitStatus),
    /// The reaper found no traced process left.
    NoChildren,
    /// A forwarded call of thread `tid` finished.
    Reply {
        tid: i32,
        response: Response,
        rtt: Duration,
    },
    /// The call thread `tid` sleeps on (sleep number `op`) finished; a
    /// reply for a sleep the thread has left (a signal came) is dropped.
    SleeperReply {
        tid: i32,
        op: u64,
        response: Response,
        rtt: Duration,
    },
    /// A signal rscq received that belongs to the program.
    Signal(i32),
}

/// What the tracer needs from the engine.
pub trait Forwarder {
    /// Starts a forwarded call. A call the engine answers from what it
    /// already holds returns its response at once (no event, no wake-up:
    /// this is the hot path of `ls -l`); otherwise the reply arrives later
    /// as [`Event::Reply`].
    fn submit(&self, tid: i32, nr: i64, request: Request) -> Option<Response>;
    /// Watches a placeholder's read end; when every copy of the program's
    /// fd is closed, the remote handle is closed too.
    fn watch_close(&self, read_end: OwnedFd, key: u64, handle: Handle);
    /// Connects socket `fd` of process `tgid` to `addr` on the server, or
    /// joins the connect already under way on that socket; the result
    /// arrives as [`Event::SleeperReply`] for sleep `op`, or as
    /// [`Event::Reply`] without one (`Done` or an errno).
    fn connect_tcp(
        &self,
        tid: i32,
        tgid: i32,
        fd: i32,
        addr: crate::proto::SockAddr,
        op: Option<u64>,
    );
    /// A signal took thread `tid` out of its connect on socket inode `ino`
    /// (or the thread is gone): the connect goes on without it.
    fn connect_interrupted(&self, ino: u64, tid: i32);
    /// The program sets `option` on socket inode `ino`: on the server's
    /// socket `target` now, or with its connect or bind if it has none yet.
    fn set_sock_option(
        &self,
        ino: u64,
        target: Option<crate::proto::OptionTarget>,
        option: crate::proto::SockOption,
    );
    /// Binds socket `fd` on the server (and to a loopback port locally).
    fn bind_tcp(&self, tid: i32, tgid: i32, fd: i32, addr: crate::proto::SockAddr);
    /// Puts a bound socket in listen state on both sides.
    fn listen_tcp(&self, tid: i32, tgid: i32, fd: i32, listener: u64, backlog: u32);
    /// `--pure`: fetches at most `len` bytes into socket `fd`; replies
    /// `Done` when the call can run natively.
    fn pure_recv(&self, tid: i32, tgid: i32, fd: i32, pump: u64, len: u32, wait: plan::PureWait);
    /// `--pure`: one remote `send` on socket `fd` of process `tgid`;
    /// replies `Count` or the errno. With sleep `op` the call may wait for
    /// room (as long as the socket's `SO_SNDTIMEO` allows) and the reply is
    /// an [`Event::SleeperReply`]; without, it takes only what fits now
    /// (EAGAIN if nothing does) and the reply is an [`Event::Reply`].
    #[allow(clippy::too_many_arguments)]
    fn pure_send(&self, tid: i32, tgid: i32, fd: i32, pump: u64, data: Vec<u8>, op: Option<u64>);
    /// A signal came to the thread whose send is sleep `op` (or the thread
    /// is gone): the send stops waiting for room and answers with the
    /// bytes that went, or `-ERESTARTSYS` if none did.
    fn interrupted(&self, op: u64);
    /// Reads `len` bytes at `offset` of the remote file `handle` (fewer at
    /// its end) for thread `tid`'s `mmap`, after any writes held for it;
    /// the reply is one [`Event::Reply`] with all of them.
    fn read_range(&self, tid: i32, handle: Handle, offset: i64, len: u64);
    /// Copies the remote executable `path` to the new local file `copy`
    /// for thread `tid`'s `execve`, once the thread may run it (a regular
    /// file it may execute); the reply is an [`Event::Reply`] (`Done`).
    fn fetch_executable(&self, tid: i32, path: crate::proto::RemotePath, copy: Vec<u8>);
    /// `--pure`: one fetch on each of these pumps, unless one is under way.
    fn prefetch(&self, pumps: &[u64]);
    /// Binds UDP socket `fd` on the server (and to a loopback port locally).
    fn bind_udp(&self, tid: i32, tgid: i32, fd: i32, addr: crate::proto::SockAddr);
    /// Connects remote UDP socket `fd` on the server and to the peer's relay.
    /// `None` dissolves the association (`AF_UNSPEC`).
    fn connect_udp(
        &self,
        tid: i32,
        tgid: i32,
        fd: i32,
        udp: u64,
        addr: Option<crate::proto::SockAddr>,
    );
    /// `--pure`: one remote datagram send; replies `Count`.
    fn udp_send(&self, tid: i32, udp: u64, peer: Option<crate::proto::SockAddr>, data: Vec<u8>);
    /// `--pure`: makes a receive on UDP socket `fd` ready (one datagram
    /// fetched into it); replies `Done`, or the remote errno.
    fn udp_recv(&self, tid: i32, tgid: i32, fd: i32, udp: u64, dontwait: bool);
    /// `--pure`: one fetch on each of these UDP sockets, unless one is under way.
    fn udp_prefetch(&self, udp: &[u64]);
    /// The loopback address of the relay for remote `peer`, made on first use.
    fn udp_relay(&self, v6: bool, peer: crate::proto::SockAddr) -> Option<SocketAddr>;
    /// The remote peer a relay's loopback address stands for.
    fn udp_peer_of(&self, relay: SocketAddr) -> Option<crate::proto::SockAddr>;
    /// Prints one `--trace` line.
    fn trace_line(&self, line: String);
}

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
    // A remote file cannot be mapped; anonymous mappings never stop.
    rules.push((
        libc::SYS_mmap,
        seccomp::Action::TraceUnlessArg {
            arg: 4,
            value: u32::MAX,
        },
    ));
    rules
}

/// Where a stopped thread is in rscq's handling of its syscall.
#[derive(Debug)]
enum ThreadState {
    Running,
    /// Waiting for a reply while asleep in a `ppoll` rscq put in place of
    /// its syscall, so a signal can still interrupt it.
    Sleeping {
        saved: libc::user_regs_struct,
        nr: i64,
        fd: i32,
        request_text: String,
        sleep: Sleep,
    },
    /// A signal the program handles came while it slept in a send: it
    /// waits in its signal-delivery stop until the server says how many
    /// bytes went, which is the call's result (or `-ERESTARTSYS` for none),
    /// then takes the signal.
    Interrupting {
        saved: libc::user_regs_struct,
        nr: i64,
        request_text: String,
        op: u64,
        sig: Signal,
    },
    /// Its reply came; it has been interrupted to take it.
    Woken {
        saved: libc::user_regs_struct,
        nr: i64,
        fd: i32,
        request_text: String,
        response: Response,
        sleep: Sleep,
    },
    /// Held in its seccomp stop until the reply to a forwarded call.
    Waiting {
        nr: i64,
        then: Then,
        request_text: String,
    },
    /// Running a `seccomp(2)` rscq put in its place after a syscall's exit
    /// (see [`fd_filter_rules`]); then `restore` is what the program sees.
    /// Signals that come meanwhile wait in `deferred` and are sent again.
    Injecting {
        restore: libc::user_regs_struct,
        entered: bool,
        deferred: Vec<Signal>,
    },
    /// Its syscall was rewritten; at the exit stop the registers are put
    /// back (the program may rely on argument registers being preserved).
    AwaitingExit {
        saved: libc::user_regs_struct,
        after: ExitAction,
    },
}

/// What a sleep waits for, and what its reply means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sleep {
    /// The engine made the call ready: it runs natively once woken.
    ThenNative,
    /// A remote connect (sleep number `op`) of socket inode `socket`: its
    /// reply is the call's result.
    Connect { op: u64, socket: u64 },
    /// A `--pure` send that may wait for room (sleep number `op`): its
    /// reply is the call's result.
    Send { op: u64 },
    /// A forwarded call that may wait (a lock; sleep and wait number
    /// `op`): its reply is the call's result.
    Wait { op: u64 },
}

impl Sleep {
    /// The number of a sleep whose reply is the call's result.
    fn op(self) -> Option<u64> {
        match self {
            Self::ThenNative => None,
            Self::Connect { op, .. } | Self::Send { op } | Self::Wait { op } => Some(op),
        }
    }
}

#[derive(Debug)]
enum ExitAction {
    Restore,
    /// An `execve` of a remote executable's local copy ran: it failed if
    /// the call returns, and the copy goes.
    RemoveFile(std::path::PathBuf),
    /// An `mmap` of a remote file ran as an anonymous mapping: these are
    /// the file's bytes for its start.
    FillMapping {
        data: Vec<u8>,
    },
    /// The call ran natively; it returns this error instead.
    Fail(Errno),
    LeaveVirtualCwd,
    AcceptRemote {
        addr: u64,
        len: u64,
    },
    UdpSources {
        slots: Vec<crate::syscall::udp::SourceSlot>,
        counted: bool,
    },
    /// `sendmmsg` ran on a copy at `scratch`: copy its `msg_len`s to `vec`.
    MsgLens {
        vec: u64,
        scratch: u64,
    },
    Placeholder {
        read_end: OwnedFd,
        key: u64,
        handle: Handle,
        trace: Option<String>,
    },
}

#[derive(Debug, Default, Clone)]
struct ProcessState {
    /// The remote directory the program believes is its cwd.
    virtual_cwd: Option<Vec<u8>>,
    /// Whether the fd-call filter is in this process (children inherit it
    /// with the state).
    fd_traps: bool,
    /// Whether it asked for a record lock on a remote file: its closes of
    /// remote files and its exit then release them on the server.
    record_locks: bool,
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
    threads: HashMap<i32, ThreadState>,
    /// Thread id → thread-group id.
    tgid: HashMap<i32, i32>,
    processes: HashMap<i32, ProcessState>,
    /// New children whose first stop came before their parent's event.
    early_stops: HashSet<i32>,
    /// Threads whose next stop for `(nr, fd)` runs natively: the engine has
    /// made the call ready (data delivered into the socket).
    native_once: HashMap<i32, (i64, i32)>,
    /// Children announced by their parent's event, not yet stopped.
    expected: HashSet<i32>,
    root_status: Option<ExitStatus>,
    /// Numbers the sleeps whose replies may come after a signal ended them.
    next_sleep: u64,
    /// `#!` interpreters followed so far by a thread's remote `execve`.
    exec_hops: HashMap<i32, u32>,
    /// Where a thread's rewritten `#!` `argv` begins: scratch memory for the
    /// same call goes below it.
    exec_floor: HashMap<i32, u64>,
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
        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
        return Err(TracerError::Seize(e));
    }
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
        let mut tgid = HashMap::new();
        tgid.insert(root.as_raw(), root.as_raw());
        let mut processes = HashMap::new();
        processes.insert(root.as_raw(), ProcessState::default());
        let mut threads = HashMap::new();
        threads.insert(root.as_raw(), ThreadState::Running);
        let fd_rules = fd_filter_rules(&config);
        let fd_filter = if fd_rules.is_empty() {
            Vec::new()
        } else {
            seccomp::build(&fd_rules)
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
            threads,
            tgid,
            processes,
            early_stops: HashSet::new(),
            native_once: HashMap::new(),
            expected: HashSet::new(),
            root_status: None,
            next_sleep: 1,
            exec_hops: HashMap::new(),
            exec_floor: HashMap::new(),
        }
    }

    /// Handles events until no traced process is left; returns how the
    /// program (the first process) ended.
    /// Makes remote files' placeholders in `dir` (a run with mounts).
    pub fn with_placeholders(mut self, dir: Option<placeholder::PlaceholderDir>) -> Self {
        self.placeholders = dir;
        self
    }

    pub fn run(mut self) -> ExitStatus {
        'run: loop {
            for event in self.events.next_batch() {
                match event {
                    Event::Wait(status) => self.on_wait(status),
                    Event::Reply { tid, response, rtt } => {
                        // A numbered sleep takes only its own reply.
                        let numbered = matches!(
                            self.threads.get(&tid),
                            Some(ThreadState::Sleeping { sleep, .. }) if sleep.op().is_some()
                        ) || matches!(
                            self.threads.get(&tid),
                            Some(ThreadState::Interrupting { .. })
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
                        let current = match self.threads.get(&tid) {
                            Some(ThreadState::Sleeping { sleep, .. }) => sleep.op() == Some(op),
                            Some(ThreadState::Interrupting { op: o, .. }) => *o == op,
                            _ => false,
                        };
                        if current {
                            self.on_reply(tid, response, rtt);
                        }
                    }
                    Event::Signal(sig) => {
                        if let Ok(sig) = Signal::try_from(sig) {
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
            WaitStatus::PtraceEvent(pid, sig, event) => self.on_event(pid, sig, event),
            WaitStatus::PtraceSyscall(pid) => self.on_syscall_exit(pid),
            WaitStatus::Stopped(pid, sig) => self.on_signal(pid, sig),
            WaitStatus::Exited(pid, code) => self.on_gone(pid, ExitStatus::Code(code)),
            WaitStatus::Signaled(pid, sig, _) => self.on_gone(pid, ExitStatus::Signal(sig as i32)),
            WaitStatus::Continued(_) | WaitStatus::StillAlive => {}
        }
    }

    fn on_gone(&mut self, pid: Pid, status: ExitStatus) {
        let tid = pid.as_raw();
        match self.threads.remove(&tid) {
            Some(ThreadState::Sleeping {
                sleep: Sleep::Connect { socket, .. },
                ..
            }) => self.forwarder.connect_interrupted(socket, tid),
            Some(
                ThreadState::Sleeping {
                    sleep: Sleep::Send { op } | Sleep::Wait { op },
                    ..
                }
                | ThreadState::Interrupting { op, .. },
            ) => self.forwarder.interrupted(op),
            _ => {}
        }
        if let Some(tgid) = self.tgid.remove(&tid)
            && tgid == tid
            && let Some(process) = self.processes.remove(&tgid)
            && process.record_locks
        {
            // The kernel drops a process's record locks when it exits.
            let release = Request::ReleaseLocks {
                owner: tgid.cast_unsigned(),
                handle: None,
            };
            let _ = self.forwarder.submit(-1, libc::SYS_exit_group, release);
        }
        if pid == self.root {
            self.root_status = Some(status);
        }
    }

    fn on_event(&mut self, pid: Pid, sig: Signal, event: i32) {
        let tid = pid.as_raw();
        match event {
            libc::PTRACE_EVENT_SECCOMP => self.on_seccomp(pid),
            libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                if let Ok(child) = ptrace::getevent(pid) {
                    let child = i32::try_from(child).unwrap_or(0);
                    let is_thread = event == libc::PTRACE_EVENT_CLONE
                        && ptrace::getregs(pid)
                            .is_ok_and(|r| r.rdi & libc::CLONE_THREAD as u64 != 0);
                    let parent_tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
                    if is_thread {
                        self.tgid.insert(child, parent_tgid);
                    } else {
                        self.tgid.insert(child, child);
                        let state = ProcessState {
                            // Record locks are not inherited (fcntl(2)).
                            record_locks: false,
                            ..self
                                .processes
                                .get(&parent_tgid)
                                .cloned()
                                .unwrap_or_default()
                        };
                        self.processes.insert(child, state);
                    }
                    self.threads.insert(child, ThreadState::Running);
                    if self.early_stops.remove(&child) {
                        let _ = ptrace::cont(Pid::from_raw(child), None);
                    } else {
                        self.expected.insert(child);
                    }
                }
                let _ = ptrace::cont(pid, None);
            }
            libc::PTRACE_EVENT_EXEC => {
                // The new program never returns from the call: what rscq
                // would have restored at its exit belongs to the old one.
                if matches!(
                    self.threads.get(&tid),
                    Some(ThreadState::AwaitingExit { .. })
                ) {
                    self.threads.insert(tid, ThreadState::Running);
                }
                // A non-leader thread that execs takes over the leader's tid.
                if let Ok(former) = ptrace::getevent(pid) {
                    let former = i32::try_from(former).unwrap_or(tid);
                    if former != tid {
                        self.threads.remove(&former);
                        self.tgid.remove(&former);
                    }
                }
                let _ = ptrace::cont(pid, None);
            }
            libc::PTRACE_EVENT_STOP => {
                // Under PTRACE_SEIZE the stop signal of a group stop is in
                // the wait status; PTRACE_GETSIGINFO fails for it.
                if is_stop_signal(sig) {
                    let _ = sys::ptrace_listen(pid);
                } else if let Some(ThreadState::Woken { .. }) = self.threads.get(&tid) {
                    self.on_woken(pid);
                } else if matches!(self.threads.get(&tid), Some(ThreadState::Sleeping { .. })) {
                    // Not our interrupt: keep sleeping.
                    let _ = ptrace::cont(pid, None);
                    let _ = sys::ptrace_listen(pid);
                } else if !self.threads.contains_key(&tid) && !self.expected.contains(&tid) {
                    // A new child stopped before its parent's fork event: its
                    // state is not known yet, so it waits for that event.
                    self.early_stops.insert(tid);
                } else {
                    self.expected.remove(&tid);
                    let _ = ptrace::cont(pid, None);
                }
            }
            _ => {
                let _ = ptrace::cont(pid, None);
            }
        }
    }

    fn on_seccomp(&mut self, pid: Pid) {
        let tid = pid.as_raw();
        let stop = match sys::seccomp_stop_info(pid) {
            Ok(s) => s,
            Err(_) => {
                let _ = ptrace::cont(pid, None);
                return;
            }
        };
        if stop.ret_data != seccomp::TRAP_TAG {
            // A filter the program installed itself asked for a tracer;
            // there is none of its own, so behave as the kernel would.
            self.skip(pid, Errno::ENOSYS.as_syscall_return());
            return;
        }
        let nr = i64::try_from(stop.nr).unwrap_or(-1);
        let fd0 = i32::try_from(stop.args[0] & 0xffff_ffff).map_or(-1, |v| v);
        // `#!` interpreters followed so far by this exec (see `exec_copy`).
        let exec_hops = self.exec_hops.remove(&tid).unwrap_or(0);
        if exec_hops == 0 {
            self.exec_floor.remove(&tid);
        }
        let ready = self.native_once.remove(&tid) == Some((nr, fd0));
        let plan = {
            let mut view = TraceeView { tracer: self, pid };
            let forwarding = view.tracer.config.forwarding.clone();
            if ready {
                // Made ready by a fetch: it runs now, with only the
                // address rewriting a UDP receive needs.
                crate::syscall::udp::plan(nr, stop.args, forwarding.pure_net, true, &mut view)
                    .filter(|_| forwarding.net)
                    .unwrap_or(Plan::Native)
            } else {
                plan::plan(nr, stop.args, &forwarding, &mut view)
            }
        };
        match plan {
            Plan::Native => {
                let _ = ptrace::cont(pid, None);
            }
            Plan::NativeRewritten { paths, after } => {
                let after = exit_action(after, 0);
                self.rewrite_and_run(pid, stop.stack_pointer, None, &paths, after);
            }
            Plan::NativeWithArgs { data, args } => {
                let call = Some((nr, args));
                self.rewrite_and_run(pid, stop.stack_pointer, call, &data, ExitAction::Restore);
            }
            Plan::NativeScratch(scratch) => self.run_on_scratch(pid, stop.stack_pointer, *scratch),
            Plan::UdpBind { fd, addr, replan } => {
                let then = if replan { Then::Replan } else { Then::Zero };
                let tgid = self.wait(tid, nr, then, format!("{fd}, {}", SocketAddr::from(addr)));
                self.forwarder.bind_udp(tid, tgid, fd, addr);
            }
            Plan::UdpConnect { fd, udp, addr } => {
                let to = addr.map_or("AF_UNSPEC".to_string(), |a| SocketAddr::from(a).to_string());
                let tgid = self.wait(tid, nr, Then::Zero, format!("{fd}, {to}"));
                self.forwarder.connect_udp(tid, tgid, fd, udp, addr);
            }
            Plan::UdpPureSend {
                fd,
                udp,
                peer,
                data,
                then,
            } => {
                let to = peer
                    .map(|p| format!(", {}", SocketAddr::from(p)))
                    .unwrap_or_default();
                self.wait(tid, nr, then, format!("{fd}, {}{to}", data.len()));
                self.forwarder.udp_send(tid, udp, peer, data);
            }
            Plan::UdpPureRecv { fd, udp, dontwait } => {
                if self.sleep(pid, nr, fd, format!("{fd}"), Sleep::ThenNative) {
                    let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
                    self.forwarder.udp_recv(tid, tgid, fd, udp, dontwait);
                }
            }
            Plan::Return(ret) => {
                self.trace_local(tid, nr, ret);
                self.skip(pid, ret);
            }
            Plan::Answer { ret, writes } => self.answer(pid, ret, &writes),
            Plan::EnterRemoteDir { local_path } => {
                self.set_virtual_cwd(tid, Some(local_path));
                self.skip(pid, 0);
            }
            Plan::ConnectTcp { fd, addr } => {
                let request_text = format!("{fd}, {}", SocketAddr::from(addr));
                // A blocking connect may take long (a remote host that
                // drops SYNs): it sleeps, so signals still reach it. A
                // non-blocking one is held only until the remote answer.
                let blocking_socket = self.dup_fd(pid, fd).and_then(|dup| {
                    let flags = rustix::fs::fcntl_getfl(&dup).ok()?;
                    let ino = rustix::fs::fstat(&dup).ok()?.st_ino;
                    (!flags.contains(rustix::fs::OFlags::NONBLOCK)).then_some(ino)
                });
                let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
                match blocking_socket {
                    Some(socket) => {
                        let op = self.next_sleep;
                        self.next_sleep += 1;
                        if self.sleep(pid, nr, fd, request_text, Sleep::Connect { op, socket }) {
                            self.forwarder.connect_tcp(tid, tgid, fd, addr, Some(op));
                        }
                    }
                    None => {
                        self.wait(tid, nr, Then::Zero, request_text);
                        self.forwarder.connect_tcp(tid, tgid, fd, addr, None);
                    }
                }
            }
            Plan::PureRecv {
                fd,
                pump,
                len,
                wait,
            } => {
                let request_text = format!("{fd}, {len}");
                if self.sleep(pid, nr, fd, request_text, Sleep::ThenNative) {
                    let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
                    self.forwarder.pure_recv(tid, tgid, fd, pump, len, wait);
                }
            }
            Plan::PureSend {
                fd,
                pump,
                data,
                dontwait,
            } => {
                let request_text = format!("{fd}, {}", data.len());
                let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
                let blocking = !dontwait
                    && self.dup_fd(pid, fd).is_some_and(|dup| {
                        rustix::fs::fcntl_getfl(&dup)
                            .is_ok_and(|f| !f.contains(rustix::fs::OFlags::NONBLOCK))
                    });
                if blocking {
                    // The server may wait for room for as long as the peer
                    // does not read: the thread sleeps, so signals and the
                    // socket's send timeout still end the call.
                    let op = self.next_sleep;
                    self.next_sleep += 1;
                    if self.sleep(pid, nr, fd, request_text, Sleep::Send { op }) {
                        self.forwarder
                            .pure_send(tid, tgid, fd, pump, data, Some(op));
                    }
                } else {
                    self.wait(tid, nr, Then::Number, request_text);
                    self.forwarder.pure_send(tid, tgid, fd, pump, data, None);
                }
            }
            Plan::Prefetch { pumps, udp } => {
                self.forwarder.prefetch(&pumps);
                self.forwarder.udp_prefetch(&udp);
                let _ = ptrace::cont(pid, None);
            }
            Plan::SetSockOpt { fd, option } => {
                // The call itself runs natively: the program's socket keeps
                // the option, so getsockopt answers as it would.
                self.forward_sock_option(pid, fd, option);
                let _ = ptrace::cont(pid, None);
            }
            Plan::BindTcp { fd, addr } => {
                let tgid = self.wait(
                    tid,
                    nr,
                    Then::Zero,
                    format!("{fd}, {}", SocketAddr::from(addr)),
                );
                self.forwarder.bind_tcp(tid, tgid, fd, addr);
            }
            Plan::ListenTcp {
                fd,
                listener,
                backlog,
            } => {
                let tgid = self.wait(tid, nr, Then::Zero, format!("{fd}, {backlog}"));
                self.forwarder.listen_tcp(tid, tgid, fd, listener, backlog);
            }
            Plan::MapRemote {
                handle,
                offset,
                len,
                flags,
            } => {
                let text = format!("NULL, {len}, #{}, {offset}", handle.0);
                self.wait(tid, nr, Then::Map { flags }, text);
                self.forwarder.read_range(tid, handle, offset, len);
            }
            Plan::ExecRemote {
                path,
                path_arg,
                argv_arg,
            } => {
                let Some(copy) = self.placeholders.as_mut().map(|d| d.copy_path()) else {
                    self.skip(pid, Errno::EACCES.as_syscall_return());
                    return;
                };
                let text = crate::syscall::describe::describe(&Request::Stat {
                    path: path.clone(),
                    follow: true,
                });
                self.exec_hops.insert(tid, exec_hops);
                let then = Then::Exec {
                    copy: copy.clone(),
                    path_arg,
                    argv_arg,
                };
                self.wait(tid, nr, then, text);
                self.forwarder.fetch_executable(tid, path, copy);
            }
            Plan::ForwardWait { request } => {
                self.note_record_lock(tid, &request);
                let op = self.next_sleep;
                self.next_sleep += 1;
                let request = crate::syscall::locks::with_wait(request, op);
                let request_text = if self.config.trace {
                    crate::syscall::describe::describe(&request)
                } else {
                    String::new()
                };
                // The server may wait for as long as another process holds
                // the lock: the thread sleeps, so signals still end the call.
                if self.sleep(pid, nr, fd0, request_text, Sleep::Wait { op }) {
                    // Its reply comes as a `SleeperReply` for `op`.
                    let _ = self.forwarder.submit(tid, nr, request);
                }
            }
            Plan::Forward { request, then } => {
                self.note_record_lock(tid, &request);
                let request_text = if self.config.trace {
                    crate::syscall::describe::describe(&request)
                } else {
                    String::new()
                };
                self.threads.insert(
                    tid,
                    ThreadState::Waiting {
                        nr,
                        then,
                        request_text,
                    },
                );
                if let Some(response) = self.forwarder.submit(tid, nr, request) {
                    self.on_reply(tid, response, Duration::ZERO);
                }
            }
        }
    }

    /// Runs the local copy of a remote executable in place of the path the
    /// program gave: a binary as it is; a `#!` script as the kernel would,
    /// by its interpreter with the program's own script path (which the
    /// interpreter then opens through the mount), planned again in case the
    /// interpreter is remote too.
    fn exec_copy(&mut self, pid: Pid, copy: Vec<u8>, path_arg: usize, argv_arg: usize) {
        use std::io::Read as _;
        use std::os::unix::ffi::OsStringExt as _;
        let tid = pid.as_raw();
        let hops = self.exec_hops.remove(&tid).unwrap_or(0);
        let file = std::path::PathBuf::from(std::ffi::OsString::from_vec(copy.clone()));
        let mut head = Vec::with_capacity(exec::HEAD);
        let read = std::fs::File::open(&file)
            .and_then(|f| f.take(exec::HEAD as u64).read_to_end(&mut head));
        let fail = |tracer: &mut Self, e: Errno| {
            let _ = std::fs::remove_file(&file);
            tracer.skip(pid, e.as_syscall_return());
        };
        let Ok(regs) = ptrace::getregs(pid) else {
            let _ = std::fs::remove_file(&file);
            let _ = ptrace::cont(pid, None);
            return;
        };
        if let Err(e) = read {
            return fail(self, Errno::from_io(&e));
        }
        let shebang = match exec::shebang(&head) {
            Err(e) => return fail(self, e),
            Ok(None) => {
                // The copy stays for the run: `/proc/self/exe` names it.
                let at = [(path_arg, copy)];
                self.rewrite_and_run(pid, regs.rsp, None, &at, ExitAction::RemoveFile(file));
                return;
            }
            Ok(Some(shebang)) => shebang,
        };
        let _ = std::fs::remove_file(&file);
        if hops + 1 >= exec::MAX_HOPS {
            return self.skip(pid, Errno(libc::ELOOP).as_syscall_return());
        }
        let script = match mem::read_cstring(pid, get_arg(&regs, path_arg)) {
            Ok(s) => s,
            Err(e) => return self.skip(pid, e.as_syscall_return()),
        };
        let kept = match read_pointers(pid, get_arg(&regs, argv_arg)) {
            Ok(argv) => argv.into_iter().skip(1).collect::<Vec<_>>(),
            Err(e) => return self.skip(pid, e.as_syscall_return()),
        };
        let len = exec::script_argv(0, &shebang, &script, &kept).0.len() as u64;
        let base = self.exec_scratch_top(tid, regs.rsp).saturating_sub(len) & !15;
        let (bytes, array) = exec::script_argv(base, &shebang, &script, &kept);
        if let Err(e) = mem::write_bytes(pid, base, &bytes) {
            return self.skip(pid, e.as_syscall_return());
        }
        let mut regs = regs;
        // The interpreter's name is the first string at `base`.
        set_arg(&mut regs, path_arg, base);
        set_arg(&mut regs, argv_arg, array);
        if ptrace::setregs(pid, regs).is_err() {
            let _ = ptrace::cont(pid, None);
            return;
        }
        self.exec_hops.insert(tid, hops + 1);
        self.exec_floor.insert(tid, base);
        self.on_seccomp(pid);
    }

    /// Where scratch memory for a rewritten `execve` may end: below the red
    /// zone, and below what an earlier `#!` hop of the same call wrote.
    fn exec_scratch_top(&self, tid: i32, sp: u64) -> u64 {
        let top = sp.saturating_sub(RED_ZONE);
        self.exec_floor
            .get(&tid)
            .map_or(top, |floor| top.min(*floor))
    }

    /// The program exec'd a remote symlink with an absolute target: exec
    /// the target instead (planned again: it may be local or remote).
    fn exec_link(&mut self, pid: Pid, target: &[u8], path_arg: usize) {
        let tid = pid.as_raw();
        let hops = self.exec_hops.remove(&tid).unwrap_or(0);
        if hops + 1 >= exec::MAX_HOPS {
            return self.skip(pid, Errno(libc::ELOOP).as_syscall_return());
        }
        let Ok(mut regs) = ptrace::getregs(pid) else {
            let _ = ptrace::cont(pid, None);
            return;
        };
        let mut bytes = target.to_vec();
        bytes.push(0);
        let base = self
            .exec_scratch_top(tid, regs.rsp)
            .saturating_sub(bytes.len() as u64)
            & !15;
        if let Err(e) = mem::write_bytes(pid, base, &bytes) {
            return self.skip(pid, e.as_syscall_return());
        }
        set_arg(&mut regs, path_arg, base);
        if ptrace::setregs(pid, regs).is_err() {
            let _ = ptrace::cont(pid, None);
            return;
        }
        self.exec_hops.insert(tid, hops + 1);
        self.exec_floor.insert(tid, base);
        self.on_seccomp(pid);
    }

    /// A record lock asked for by a process: from now on its closes of
    /// remote files and its exit release its locks.
    fn note_record_lock(&mut self, tid: i32, request: &Request) {
        if let Request::RecordLock {
            owner: crate::proto::LockOwner::Process(_),
            set: true,
            ..
        } = request
        {
            let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
            self.processes.entry(tgid).or_default().record_locks = true;
        }
    }

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
            let tgid = self
                .tgid
                .get(&pid.as_raw())
                .copied()
                .unwrap_or(pid.as_raw());
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
        let _ = mem::write_bytes(pid, addr, &encoded[..encoded.len().min(room)]);
        let _ = mem::write_bytes(pid, len, &actual.to_ne_bytes());
    }

    /// Hands an option the program sets on an INET stream socket to the
    /// engine, with the server socket it is for, if there is one.
    fn forward_sock_option(&self, pid: Pid, fd: i32, option: crate::proto::SockOption) {
        let Some(ino) = self
            .dup_fd(pid, fd)
            .and_then(|dup| rustix::fs::fstat(&dup).ok())
            .map(|st| st.st_ino)
        else {
            return;
        };
        let tid = pid.as_raw();
        let target = match self.sockets.lookup(tid, fd) {
            Some(RemoteSocket {
                local,
                peer: Some(peer),
                ..
            }) => Some(crate::proto::OptionTarget::Connection { local, peer }),
            _ => self
                .sockets
                .lookup_listener(tid, fd)
                .map(crate::proto::OptionTarget::Listener),
        };
        self.forwarder.set_sock_option(ino, target, option);
    }

    /// A copy of fd `fd` of the thread's process, via `pidfd_getfd(2)`.
    fn dup_fd(&self, pid: Pid, fd: i32) -> Option<OwnedFd> {
        let tid = pid.as_raw();
        let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
        dup_fd(tgid, fd)
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
        let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
        self.processes.entry(tgid).or_default().virtual_cwd = cwd;
    }

    fn skip(&self, pid: Pid, ret: i64) {
        if let Ok(mut regs) = ptrace::getregs(pid) {
            regs.orig_rax = u64::MAX;
            regs.rax = ret.cast_unsigned();
            let _ = ptrace::setregs(pid, regs);
        }
        let _ = ptrace::cont(pid, None);
    }

    fn answer(&self, pid: Pid, ret: i64, writes: &[(u64, Vec<u8>)]) {
        for (addr, bytes) in writes {
            if let Err(e) = mem::write_bytes(pid, *addr, bytes) {
                self.skip(pid, e.as_syscall_return());
                return;
            }
        }
        self.skip(pid, ret);
    }

    /// Lays `scratch` out below the red zone (each offset in `relocs` turned
    /// into an address), points arguments at it, sets others to `values`,
    /// and runs the call to its exit stop.
    fn run_on_scratch(&mut self, pid: Pid, sp: u64, plan: plan::Scratch) {
        let plan::Scratch {
            mut scratch,
            relocs,
            args,
            values,
            after,
        } = plan;
        let Ok(saved) = ptrace::getregs(pid) else {
            let _ = ptrace::cont(pid, None);
            return;
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
            && let Err(e) = mem::write_bytes(pid, base, &scratch)
        {
            self.skip(pid, e.as_syscall_return());
            return;
        }
        let mut regs = saved;
        for &(i, off) in &args {
            set_arg(&mut regs, i, base + off);
        }
        for &(i, v) in &values {
            set_arg(&mut regs, i, v);
        }
        if ptrace::setregs(pid, regs).is_err() {
            let _ = ptrace::cont(pid, None);
            return;
        }
        let after = exit_action(after, base);
        self.threads
            .insert(pid.as_raw(), ThreadState::AwaitingExit { saved, after });
        let _ = ptrace::syscall(pid, None);
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
            let _ = mem::write_bytes(pid, slot.name, &bytes);
            let _ = mem::write_bytes(pid, slot.len_addr, &actual.to_ne_bytes());
        }
    }

    /// Puts `paths` below the red zone, points argument registers at them,
    /// optionally changes the syscall, and runs it to its exit stop.
    fn rewrite_and_run(
        &mut self,
        pid: Pid,
        sp: u64,
        syscall: Option<(i64, [Option<u64>; ARG_REGS])>,
        paths: &[(usize, Vec<u8>)],
        after: ExitAction,
    ) {
        let Ok(saved) = ptrace::getregs(pid) else {
            let _ = ptrace::cont(pid, None);
            return;
        };
        let mut regs = saved;
        // Below a rewritten `#!` `argv` of the same call, if any.
        let sp = self
            .exec_floor
            .remove(&pid.as_raw())
            .map_or(sp, |floor| floor.min(sp));
        let mut at = sp.saturating_sub(RED_ZONE);
        for (arg, path) in paths {
            let mut bytes = path.clone();
            bytes.push(0);
            at = (at - bytes.len() as u64) & !15;
            if let Err(e) = mem::write_bytes(pid, at, &bytes) {
                self.skip(pid, e.as_syscall_return());
                return;
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
        if ptrace::setregs(pid, regs).is_err() {
            let _ = ptrace::cont(pid, None);
            return;
        }
        self.threads
            .insert(pid.as_raw(), ThreadState::AwaitingExit { saved, after });
        let _ = ptrace::syscall(pid, None);
    }

    fn on_syscall_exit(&mut self, pid: Pid) {
        let tid = pid.as_raw();
        if matches!(self.threads.get(&tid), Some(ThreadState::Injecting { .. })) {
            self.on_injection_stop(pid);
            return;
        }
        let Some(ThreadState::AwaitingExit { saved, after }) = self.threads.remove(&tid) else {
            self.threads.insert(tid, ThreadState::Running);
            let _ = ptrace::cont(pid, None);
            return;
        };
        self.threads.insert(tid, ThreadState::Running);
        let result = ptrace::getregs(pid)
            .map(|r| r.rax.cast_signed())
            .unwrap_or(-1);
        let mut first_remote_file = false;
        let mut result = result;
        match after {
            ExitAction::Restore => {}
            // Reached only when the exec failed: a new program never
            // returns from it.
            ExitAction::RemoveFile(path) => {
                let _ = std::fs::remove_file(path);
            }
            ExitAction::FillMapping { data } => {
                // An address, not an errno: the anonymous mapping is there.
                if !(-4095..0).contains(&result)
                    && let Err(e) = mem::write_forced(pid, result.cast_unsigned(), &data)
                {
                    // The mapping stays, but the program must not read
                    // zeros for the file's bytes.
                    tracing::warn!("cannot fill a remote file's mapping: {e}");
                    result = Errno::EIO.as_syscall_return();
                }
            }
            ExitAction::Fail(e) => {
                if result >= 0 {
                    result = e.as_syscall_return();
                }
            }
            ExitAction::LeaveVirtualCwd => {
                if result == 0 {
                    self.set_virtual_cwd(tid, None);
                }
            }
            ExitAction::AcceptRemote { addr, len } => {
                if let Ok(fd) = i32::try_from(result) {
                    self.claim_accepted(pid, fd, addr, len);
                }
            }
            ExitAction::UdpSources { slots, counted } => {
                let used = if counted {
                    usize::try_from(result).unwrap_or(0)
                } else {
                    usize::from(result >= 0)
                };
                for slot in slots.iter().take(used) {
                    self.rewrite_source(pid, slot);
                }
            }
            ExitAction::MsgLens { vec, scratch } => {
                for i in 0..u64::try_from(result).unwrap_or(0) {
                    let at = i * 64 + 56;
                    if let Ok(len) = mem::read_bytes(pid, scratch + at, 4) {
                        let _ = mem::write_bytes(pid, vec + at, &len);
                    }
                }
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
                if result < 0 {
                    // No writer ever came, so the read end would never hang
                    // up: close the remote handle now.
                    self.registry.remove(key);
                    drop(read_end);
                    self.forwarder.submit(-1, 0, Request::Close { handle });
                } else {
                    first_remote_file = !self.process_has_fd_traps(tid);
                    self.forwarder.watch_close(read_end, key, handle);
                }
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} = {}", fmt_ret(result)));
                }
            }
        }
        let mut regs = saved;
        regs.rax = result.cast_unsigned();
        if first_remote_file && !self.fd_filter.is_empty() {
            self.inject_fd_filter(pid, regs);
            return;
        }
        let _ = ptrace::setregs(pid, regs);
        let _ = ptrace::cont(pid, None);
    }

    fn process_has_fd_traps(&self, tid: i32) -> bool {
        let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
        self.processes.get(&tgid).is_some_and(|p| p.fd_traps)
    }

    /// Makes thread `pid`, at a syscall-exit stop, run
    /// `seccomp(SET_MODE_FILTER, TSYNC, fd filter)` before it returns to the
    /// program with `restore`: the `syscall` instruction it just left runs
    /// again with new registers, and the filter image sits below the red
    /// zone of its stack.
    fn inject_fd_filter(&mut self, pid: Pid, restore: libc::user_regs_struct) {
        const RED_ZONE: u64 = 128;
        const SYSCALL_INSN_LEN: u64 = 2;
        let size = u64::try_from(self.fd_filter.len() * 8 + 16).unwrap_or(u64::MAX);
        let base = restore
            .rsp
            .checked_sub(RED_ZONE)
            .and_then(|sp| sp.checked_sub(size))
            .map(|at| at & !15);
        let image = base.and_then(|b| seccomp::image(&self.fd_filter, b).map(|i| (b, i)));
        let Some((base, (bytes, fprog))) = image else {
            self.injection_failed(pid, restore, "no room on its stack");
            return;
        };
        if mem::write_bytes(pid, base, &bytes).is_err() {
            self.injection_failed(pid, restore, "cannot write to its stack");
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
            self.injection_failed(pid, restore, "cannot set its registers");
            return;
        }
        self.threads.insert(
            pid.as_raw(),
            ThreadState::Injecting {
                restore,
                entered: false,
                deferred: Vec::new(),
            },
        );
        let _ = ptrace::syscall(pid, None);
    }

    /// The entry, then the exit stop of an injected `seccomp(2)`.
    fn on_injection_stop(&mut self, pid: Pid) {
        let tid = pid.as_raw();
        let Some(ThreadState::Injecting {
            restore,
            entered,
            deferred,
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
                },
            );
            let _ = ptrace::syscall(pid, None);
            return;
        }
        let result = ptrace::getregs(pid).map_or(-1, |r| r.rax.cast_signed());
        let tgid = self.tgid.get(&tid).copied().unwrap_or(tid);
        if result == 0 {
            self.processes.entry(tgid).or_default().fd_traps = true;
        } else {
            // A positive result is the thread whose own filters differ.
            warn_no_fd_traps(tgid, &format!("seccomp returned {result}"));
        }
        let _ = ptrace::setregs(pid, restore);
        self.threads.insert(tid, ThreadState::Running);
        for sig in deferred {
            let _ = sys::tgkill(tgid, tid, sig as i32);
        }
        let _ = ptrace::cont(pid, None);
    }

    fn injection_failed(&self, pid: Pid, restore: libc::user_regs_struct, why: &str) {
        warn_no_fd_traps(pid.as_raw(), why);
        let _ = ptrace::setregs(pid, restore);
        let _ = ptrace::cont(pid, None);
    }

    /// Holds `tid` in its seccomp stop until the reply to its call; returns
    /// its process id, which the engine needs to reach the process's fds.
    fn wait(&mut self, tid: i32, nr: i64, then: Then, request_text: String) -> i32 {
        self.threads.insert(
            tid,
            ThreadState::Waiting {
                nr,
                then,
                request_text,
            },
        );
        self.tgid.get(&tid).copied().unwrap_or(tid)
    }

    /// Puts a thread to sleep in `ppoll(NULL, 0, NULL, NULL)` instead of its
    /// syscall while the engine works: unlike a thread held in its ptrace
    /// stop, a sleeping one still takes signals (Ctrl-C).
    /// Returns whether the thread sleeps (if not, it was let go).
    fn sleep(&mut self, pid: Pid, nr: i64, fd: i32, request_text: String, sleep: Sleep) -> bool {
        let Ok(saved) = ptrace::getregs(pid) else {
            let _ = ptrace::cont(pid, None);
            return false;
        };
        let mut regs = saved;
        regs.orig_rax = libc::SYS_ppoll.cast_unsigned();
        for i in 0..4 {
            set_arg(&mut regs, i, 0);
        }
        set_arg(&mut regs, 4, 8);
        if ptrace::setregs(pid, regs).is_err() {
            let _ = ptrace::cont(pid, None);
            return false;
        }
        self.threads.insert(
            pid.as_raw(),
            ThreadState::Sleeping {
                saved,
                nr,
                fd,
                request_text,
                sleep,
            },
        );
        let _ = ptrace::cont(pid, None);
        true
    }

    /// A signal for a thread. A sleeping one gets its own syscall back with
    /// `-ERESTARTSYS`, so the kernel restarts it after a `SA_RESTART`
    /// handler or fails it with EINTR, exactly as for a real blocking call.
    ///
    /// A connect whose result already came returns it instead (the kernel
    /// too returns a connect that completed before the signal), and one
    /// still under way goes on without the thread.
    fn on_signal(&mut self, pid: Pid, sig: Signal) {
        let tid = pid.as_raw();
        if let Some(ThreadState::Injecting { deferred, .. }) = self.threads.get_mut(&tid) {
            // Its handler would run on the injected registers: hold it until
            // the program's own registers are back.
            deferred.push(sig);
            let _ = ptrace::syscall(pid, None);
            return;
        }
        if let Some(ThreadState::Sleeping {
            sleep: Sleep::Send { op } | Sleep::Wait { op },
            ..
        }) = self.threads.get(&tid)
        {
            let op = *op;
            match disposition(tid, sig) {
                Disposition::Caught => {
                    let Some(ThreadState::Sleeping {
                        saved,
                        nr,
                        request_text,
                        ..
                    }) = self.threads.remove(&tid)
                    else {
                        return;
                    };
                    self.threads.insert(
                        tid,
                        ThreadState::Interrupting {
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
                    let _ = ptrace::cont(pid, sig);
                    return;
                }
                // It dies: nothing waits for the send any more.
                Disposition::Fatal => self.forwarder.interrupted(op),
            }
        }
        let restart = (-i64::from(ERESTARTSYS)).cast_unsigned();
        let taken = match self.threads.get(&tid) {
            Some(ThreadState::Sleeping { saved, sleep, .. }) => Some((*saved, restart, *sleep)),
            // A call whose result already came returns it (the kernel too
            // returns a connect or send that completed before the signal).
            Some(ThreadState::Woken {
                saved,
                sleep,
                response,
                ..
            }) if sleep.op().is_some() => {
                Some((*saved, sleep_result(response).cast_unsigned(), *sleep))
            }
            Some(ThreadState::Woken { saved, sleep, .. }) => Some((*saved, restart, *sleep)),
            _ => None,
        };
        if let Some((saved, rax, sleep)) = taken {
            if let (Some(ThreadState::Sleeping { .. }), Sleep::Connect { socket, .. }) =
                (self.threads.get(&tid), sleep)
            {
                self.forwarder.connect_interrupted(socket, tid);
            }
            let mut regs = saved;
            regs.rax = rax;
            let _ = ptrace::setregs(pid, regs);
            self.threads.insert(tid, ThreadState::Running);
        }
        let _ = ptrace::cont(pid, sig);
    }

    /// The interrupt stop of a woken thread: gives it its result.
    fn on_woken(&mut self, pid: Pid) {
        let tid = pid.as_raw();
        let Some(ThreadState::Woken {
            saved,
            nr,
            fd,
            request_text,
            response,
            sleep,
        }) = self.threads.remove(&tid)
        else {
            return;
        };
        self.threads.insert(tid, ThreadState::Running);
        let mut regs = saved;
        match response {
            // Traced with its round trip when the reply came.
            response if sleep.op().is_some() => {
                regs.rax = sleep_result(&response).cast_unsigned();
            }
            // Go ahead natively: the kernel re-executes the original call
            // (`-ERESTARTNOINTR` at an interrupt stop), which stops at the
            // filter again and is then let through once.
            Ok(_) => {
                regs.rax = (-i64::from(ERESTARTNOINTR)).cast_unsigned();
                self.native_once.insert(tid, (nr, fd));
            }
            Err(e) => {
                if self.config.trace {
                    self.forwarder.trace_line(format!(
                        "[pid {tid}] {}({request_text}) = {}",
                        nr::name(nr),
                        fmt_ret(e.as_syscall_return())
                    ));
                }
                regs.rax = e.as_syscall_return().cast_unsigned();
            }
        }
        let _ = ptrace::setregs(pid, regs);
        let _ = ptrace::cont(pid, None);
    }

    fn on_reply(&mut self, tid: i32, response: Response, rtt: Duration) {
        if let Some(ThreadState::Interrupting { .. }) = self.threads.get(&tid) {
            let Some(ThreadState::Interrupting {
                saved,
                nr,
                request_text,
                sig,
                ..
            }) = self.threads.remove(&tid)
            else {
                return;
            };
            self.threads.insert(tid, ThreadState::Running);
            let ret = sleep_result(&response);
            if self.config.trace {
                self.forwarder.trace_line(format!(
                    "[pid {tid}] {}({request_text}) = {} <{} us> ({sig:?})",
                    nr::name(nr),
                    fmt_ret(ret),
                    rtt.as_micros()
                ));
            }
            let pid = Pid::from_raw(tid);
            let mut regs = saved;
            regs.rax = ret.cast_unsigned();
            let _ = ptrace::setregs(pid, regs);
            let _ = ptrace::cont(pid, sig);
            return;
        }
        if let Some(ThreadState::Sleeping { .. }) = self.threads.get(&tid) {
            let Some(ThreadState::Sleeping {
                saved,
                nr,
                fd,
                request_text,
                sleep,
            }) = self.threads.remove(&tid)
            else {
                return;
            };
            if self.config.trace {
                let us = rtt.as_micros();
                let name = nr::name(nr);
                match (&response, sleep) {
                    (_, Sleep::Connect { .. } | Sleep::Send { .. } | Sleep::Wait { .. }) => {
                        let ret = sleep_result(&response);
                        self.forwarder.trace_line(format!(
                            "[pid {tid}] {name}({request_text}) = {} <{us} us>",
                            fmt_ret(ret)
                        ));
                    }
                    (Ok(_), Sleep::ThenNative) => self
                        .forwarder
                        .trace_line(format!("[pid {tid}] {name}({request_text}) <{us} us>")),
                    (Err(_), Sleep::ThenNative) => {}
                }
            }
            self.threads.insert(
                tid,
                ThreadState::Woken {
                    saved,
                    nr,
                    fd,
                    request_text,
                    response,
                    sleep,
                },
            );
            let _ = ptrace::interrupt(Pid::from_raw(tid));
            return;
        }
        let Some(ThreadState::Waiting {
            nr,
            then,
            request_text,
        }) = self.threads.remove(&tid)
        else {
            return;
        };
        self.threads.insert(tid, ThreadState::Running);
        let pid = Pid::from_raw(tid);
        let trace = self
            .config
            .trace
            .then(|| format!("[pid {tid}] {}({request_text})", nr::name(nr)));
        let rtt_us = rtt.as_micros();
        match plan::finish(then, response, &self.config.forwarding.mounts) {
            Outcome::Return { ret, writes } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} = {} <{rtt_us} us>", fmt_ret(ret)));
                }
                self.answer(pid, ret, &writes);
            }
            Outcome::Chdir { local_path } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} = 0 <{rtt_us} us>"));
                }
                self.set_virtual_cwd(tid, Some(local_path));
                self.skip(pid, 0);
            }
            Outcome::Replan => {
                if self.config.trace
                    && let Some(line) = trace.clone()
                {
                    self.forwarder
                        .trace_line(format!("{line} (socket bound) <{rtt_us} us>"));
                }
                self.on_seccomp(pid);
            }
            Outcome::RunNativeWith { args } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} = 0 <{rtt_us} us>"));
                }
                let sp = ptrace::getregs(pid).map(|r| r.rsp).unwrap_or(0);
                let call = Some((nr, args));
                self.rewrite_and_run(pid, sp, call, &[], ExitAction::Restore);
            }
            Outcome::Exec {
                copy,
                path_arg,
                argv_arg,
                link,
            } => {
                if let Some(line) = trace {
                    let what = link.as_ref().map_or_else(
                        || "copied for execve".to_string(),
                        |l| format!("a link to {}", String::from_utf8_lossy(l)),
                    );
                    self.forwarder
                        .trace_line(format!("{line} = 0 <{rtt_us} us> ({what})"));
                }
                match link {
                    Some(target) => self.exec_link(pid, &target, usize::from(path_arg)),
                    None => self.exec_copy(pid, copy, usize::from(path_arg), usize::from(argv_arg)),
                }
            }
            Outcome::MapFilled { args, data } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} <{rtt_us} us> ({} bytes)", data.len()));
                }
                let sp = ptrace::getregs(pid).map(|r| r.rsp).unwrap_or(0);
                let call = Some((nr, args));
                self.rewrite_and_run(pid, sp, call, &[], ExitAction::FillMapping { data });
            }
            Outcome::RunNative { error } => {
                if let Some(line) = trace {
                    let ret = error.map_or(0, Errno::as_syscall_return);
                    self.forwarder
                        .trace_line(format!("{line} = {} <{rtt_us} us>", fmt_ret(ret)));
                }
                match error {
                    None => {
                        let _ = ptrace::cont(pid, None);
                    }
                    Some(e) => {
                        let sp = ptrace::getregs(pid).map(|r| r.rsp).unwrap_or(0);
                        self.rewrite_and_run(pid, sp, None, &[], ExitAction::Fail(e));
                    }
                }
            }
            Outcome::SetFlags { key, flags } => {
                if let Some(line) = trace {
                    self.forwarder
                        .trace_line(format!("{line} = 0 <{rtt_us} us>"));
                }
                self.registry.set_flags(key, flags);
                self.skip(pid, 0);
            }
            Outcome::Placeholder {
                handle,
                stat,
                local_path,
                flags,
                cloexec,
            } => {
                let trace = trace.map(|l| format!("{l} <{rtt_us} us>"));
                self.install_placeholder(pid, handle, stat, local_path, flags, cloexec, trace);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn install_placeholder(
        &mut self,
        pid: Pid,
        handle: Handle,
        stat: crate::proto::Stat,
        local_path: Vec<u8>,
        flags: i32,
        cloexec: bool,
        trace: Option<String>,
    ) {
        // Owned by the opening thread's fs ids, so that its own open (with
        // its own rights) may open it.
        let caller = creds::of_thread(pid.as_raw());
        let made = match self.placeholders.as_mut() {
            Some(dir) => dir.make(caller.fsuid, caller.fsgid),
            None => Err(Errno(libc::EMFILE)),
        };
        let placeholder = match made {
            Ok(p) => p,
            Err(e) => {
                self.forwarder.submit(-1, 0, Request::Close { handle });
                self.skip(pid, e.as_syscall_return());
                return;
            }
        };
        let key = placeholder.key;
        let is_dir = stat.mode & libc::S_IFMT == libc::S_IFDIR;
        self.registry.insert(plan::RemoteFd {
            key,
            handle,
            path: local_path,
            flags,
            is_dir,
        });
        let open_flags = libc::O_WRONLY | if cloexec { libc::O_CLOEXEC } else { 0 };
        let sp = ptrace::getregs(pid).map(|r| r.rsp).unwrap_or(0);
        let args = [
            Some(i64::from(libc::AT_FDCWD).cast_unsigned()),
            None,
            Some(u64::from(open_flags.cast_unsigned())),
            Some(0),
            None,
            None,
        ];
        self.rewrite_and_run(
            pid,
            sp,
            Some((libc::SYS_openat, args)),
            &[(1, placeholder.path)],
            ExitAction::Placeholder {
                read_end: placeholder.read_end,
                key,
                handle,
                trace,
            },
        );
    }
}

/// The result a numbered sleep's reply gives its call: a count, 0, or a
/// negative errno (`-ERESTARTSYS` included).
fn sleep_result(response: &Response) -> i64 {
    match response {
        Ok(crate::proto::Reply::Count(n)) => i64::try_from(*n).unwrap_or(i64::MAX),
        Ok(_) => 0,
        Err(e) => e.as_syscall_return(),
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

fn exit_action(after: AfterNative, scratch: u64) -> ExitAction {
    match after {
        AfterNative::Nothing => ExitAction::Restore,
        AfterNative::LeaveVirtualCwd => ExitAction::LeaveVirtualCwd,
        AfterNative::AcceptRemote { addr, len } => ExitAction::AcceptRemote { addr, len },
        AfterNative::UdpSources { slots, counted } => ExitAction::UdpSources { slots, counted },
        AfterNative::MsgLens { vec } => ExitAction::MsgLens { vec, scratch },
    }
}

/// A copy of fd `fd` of process `tgid` (which must be a thread-group
/// leader), sharing its open file description.
/// Without the fd filter a process's calls on its remote files reach the
/// placeholder pipe; say so, and keep the program going.
fn warn_no_fd_traps(pid: i32, why: &str) {
    eprintln!(
        "rscq: cannot trap the fd calls of process {pid} ({why}); reads and writes on its remote files will fail"
    );
}

pub fn dup_fd(tgid: i32, fd: i32) -> Option<OwnedFd> {
    let pid = rustix::process::Pid::from_raw(tgid)?;
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()?;
    rustix::process::pidfd_getfd(&pidfd, fd, rustix::process::PidfdGetfdFlags::empty()).ok()
}

/// The fds an epoll instance watches for input, from the `tfd:` lines of
/// its `/proc/PID/fdinfo/EPFD`.
fn epoll_input_fds(fdinfo: &str) -> Vec<(i32, bool)> {
    fdinfo
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            if words.next()? != "tfd:" {
                return None;
            }
            let fd: i32 = words.next()?.parse().ok()?;
            if words.next()? != "events:" {
                return None;
            }
            let events = u32::from_str_radix(words.next()?, 16).ok()?;
            let edge = events & libc::EPOLLET.cast_unsigned() != 0;
            (events & libc::EPOLLIN.cast_unsigned() != 0).then_some((fd, edge))
        })
        .collect()
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

/// The planner's view of one stopped thread.
struct TraceeView<'t, 'a, F: Forwarder> {
    tracer: &'t mut Tracer<'a, F>,
    pid: Pid,
}

impl<F: Forwarder> TraceeView<'_, '_, F> {
    fn process(&self) -> Option<&ProcessState> {
        let tid = self.pid.as_raw();
        let tgid = self.tracer.tgid.get(&tid).copied().unwrap_or(tid);
        self.tracer.processes.get(&tgid)
    }
}

impl<F: Forwarder> Tracee for TraceeView<'_, '_, F> {
    fn tgid(&mut self) -> i32 {
        let tid = self.pid.as_raw();
        self.tracer.tgid.get(&tid).copied().unwrap_or(tid)
    }

    fn holds_record_locks(&mut self) -> bool {
        self.process().is_some_and(|p| p.record_locks)
    }

    fn read_path(&mut self, addr: u64) -> Result<Vec<u8>, Errno> {
        mem::read_cstring(self.pid, addr)
    }

    fn read_bytes(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        mem::read_bytes(self.pid, addr, len)
    }

    fn cwd(&mut self) -> Result<Vec<u8>, Errno> {
        if let Some(cwd) = self.process().and_then(|p| p.virtual_cwd.clone()) {
            return Ok(cwd);
        }
        use std::os::unix::ffi::OsStrExt;
        std::fs::read_link(format!("/proc/{}/cwd", self.pid))
            .map(|p| p.as_os_str().as_bytes().to_vec())
            .map_err(|e| Errno::from_io(&e))
    }

    fn has_virtual_cwd(&mut self) -> bool {
        self.process().is_some_and(|p| p.virtual_cwd.is_some())
    }

    fn fd(&mut self, fd: i32) -> FdKind {
        if fd < 0 || self.tracer.registry.is_empty() {
            return FdKind::Local;
        }
        self.tracer.registry.lookup(self.pid.as_raw(), fd)
    }

    fn socket_kind(&mut self, fd: i32) -> Option<(i32, i32)> {
        let dup = self.tracer.dup_fd(self.pid, fd)?;
        let domain = rustix::net::sockopt::socket_domain(&dup).ok()?;
        let ty = rustix::net::sockopt::socket_type(&dup).ok()?;
        Some((i32::from(domain.as_raw()), i32::try_from(ty.as_raw()).ok()?))
    }

    fn remote_socket(&mut self, fd: i32) -> Option<RemoteSocket> {
        self.tracer.sockets.lookup(self.pid.as_raw(), fd)
    }

    fn socket_readable(&mut self, fd: i32) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec};
        let Some(dup) = self.tracer.dup_fd(self.pid, fd) else {
            return false;
        };
        let mut fds = [PollFd::new(&dup, PollFlags::IN)];
        let now = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        rustix::event::poll(&mut fds, Some(&now)).is_ok_and(|n| n > 0)
    }

    fn socket_unread(&mut self, fd: i32) -> Option<usize> {
        let dup = self.tracer.dup_fd(self.pid, fd)?;
        rustix::io::ioctl_fionread(&dup)
            .ok()
            .and_then(|n| usize::try_from(n).ok())
    }

    fn epoll_inputs(&mut self, epfd: i32) -> Vec<(i32, bool)> {
        let path = format!("/proc/{}/fdinfo/{epfd}", self.pid);
        std::fs::read_to_string(path)
            .map(|text| epoll_input_fds(&text))
            .unwrap_or_default()
    }

    fn remote_listener(&mut self, fd: i32) -> Option<u64> {
        self.tracer.sockets.lookup_listener(self.pid.as_raw(), fd)
    }

    fn dual_stack(&mut self, fd: i32) -> bool {
        let Some(dup) = self.tracer.dup_fd(self.pid, fd) else {
            return false;
        };
        rustix::fs::fstat(&dup).is_ok_and(|st| self.tracer.sockets.is_dual_stack(st.st_ino))
    }

    fn v6_only(&mut self, fd: i32) -> bool {
        let Some(dup) = self.tracer.dup_fd(self.pid, fd) else {
            return false;
        };
        rustix::net::sockopt::ipv6_v6only(&dup).unwrap_or(false)
            && !rustix::fs::fstat(&dup).is_ok_and(|st| self.tracer.sockets.is_dual_stack(st.st_ino))
    }

    fn connect_error(&mut self, fd: i32) -> Option<Errno> {
        let dup = self.tracer.dup_fd(self.pid, fd)?;
        let ino = rustix::fs::fstat(&dup).ok()?.st_ino;
        let errno = self.tracer.sockets.take_connect_error(ino)?;
        // The kernel saw rscq's stand-in connection reset: that pending
        // error is consumed here, as reading SO_ERROR consumes it.
        let _ = rustix::net::sockopt::socket_error(&dup);
        Some(errno)
    }

    fn udp_relay(
        &mut self,
        v6: bool,
        peer: crate::proto::SockAddr,
    ) -> Option<crate::proto::SockAddr> {
        self.tracer.forwarder.udp_relay(v6, peer).map(Into::into)
    }

    fn local_fd_path(&mut self, fd: i32) -> Option<Vec<u8>> {
        use std::os::unix::ffi::OsStrExt;
        let target = std::fs::read_link(format!("/proc/{}/fd/{fd}", self.pid)).ok()?;
        let bytes = target.as_os_str().as_bytes();
        bytes.starts_with(b"/").then(|| bytes.to_vec())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoll_fdinfo_lists_input_fds() {
        let fdinfo = "pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t1057\n\
                      tfd:        5 events:       19 data:                5  pos:0 ino:4 sdev:9\n\
                      tfd:        7 events:        4 data:                7  pos:0 ino:5 sdev:9\n\
                      tfd:        9 events: 80000001 data:                9  pos:0 ino:6 sdev:9\n";
        assert_eq!(epoll_input_fds(fdinfo), vec![(5, false), (9, true)]);
    }

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
    }
}
