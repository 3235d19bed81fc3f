//! What to do with one trapped syscall: let it run, answer it at once, or
//! forward it as a [`Request`] and lay the [`Reply`] out in the program's
//! memory afterwards.
//!
//! [`plan`] reads what it needs through the [`Tracee`] trait; [`finish`] is a
//! pure function of the reply. Neither touches ptrace, so both are tested on
//! plain values.

use crate::errno::Errno;
use crate::proto::{
    Handle, MAX_IO, MAX_XATTR_NAME, MAX_XATTR_VALUE, RemotePath, Reply, Request, Response,
    SockAddr, Stat, TimeUpdate, XattrTarget,
};
use crate::syscall::layout;
use crate::syscall::paths::{self, MountTable};
use crate::tracer::registry::RemoteSocket;

/// A remote file as the program holds it: a placeholder fd whose kernel
/// object rscq can recognise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFd {
    /// Identifies the placeholder (its pipe inode).
    pub key: u64,
    pub handle: Handle,
    /// The absolute local path it was opened by.
    pub path: Vec<u8>,
    /// The `open` flags, reported by `fcntl(F_GETFL)`.
    pub flags: i32,
    pub is_dir: bool,
}

/// What an fd of the program refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdKind {
    Remote(RemoteFd),
    Local,
}

/// Access to the stopped program, as the planner needs it.
pub trait Tracee {
    /// A NUL-terminated string at `addr`, at most `proto::MAX_PATH` bytes.
    fn read_path(&mut self, addr: u64) -> Result<Vec<u8>, Errno>;
    fn read_bytes(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, Errno>;
    /// The working directory the program believes it has.
    fn cwd(&mut self) -> Result<Vec<u8>, Errno>;
    /// Whether that directory is a remote one rscq keeps for the program.
    fn has_virtual_cwd(&mut self) -> bool;
    fn fd(&mut self, fd: i32) -> FdKind;
    /// The absolute path of a local directory fd, if it has one.
    fn local_fd_path(&mut self, fd: i32) -> Option<Vec<u8>>;
    /// `(SO_DOMAIN, SO_TYPE)` of a socket fd; `None` for other fds.
    fn socket_kind(&mut self, fd: i32) -> Option<(i32, i32)>;
    /// The remote connection behind a socket fd, if it has one.
    fn remote_socket(&mut self, fd: i32) -> Option<RemoteSocket>;
    /// The server listener behind a socket fd, if it has one.
    fn remote_listener(&mut self, fd: i32) -> Option<u64>;
    /// Whether socket fd is bound dual-stack on the server while its local
    /// stand-in is IPv6-only.
    fn dual_stack(&mut self, fd: i32) -> bool;
    /// Whether socket fd is IPv6-only as the program sees it (its local
    /// stand-in's `IPV6_V6ONLY`, unless it is dual-stack on the server).
    fn v6_only(&mut self, fd: i32) -> bool;
    /// The server's errno for a remote connect of socket fd that failed
    /// after its caller had gone on, if it is not reported yet; taken.
    fn connect_error(&mut self, fd: i32) -> Option<Errno>;
    /// Bytes waiting to be read on a socket fd (`FIONREAD`).
    fn socket_unread(&mut self, fd: i32) -> Option<usize>;
    /// Whether a read on a socket fd would not block: bytes, the end of
    /// the stream, an error, or a local `shutdown(SHUT_RD)`.
    fn socket_readable(&mut self, fd: i32) -> bool;
    /// The fds an epoll instance watches for input (from its fdinfo), each
    /// with whether it is edge-triggered.
    fn epoll_inputs(&mut self, epfd: i32) -> Vec<(i32, bool)>;
    /// The loopback address of the relay that stands for remote `peer`
    /// (made on first use), for a program socket of family IPv6 or not.
    fn udp_relay(&mut self, v6: bool, peer: SockAddr) -> Option<SockAddr>;
    /// The thread group (process) of the stopped thread.
    fn tgid(&mut self) -> i32;
    /// Whether the process may hold record locks on remote files (then
    /// each close of a remote file releases them, as the kernel's does).
    fn holds_record_locks(&mut self) -> bool;
}

/// Linux refuses an IPv4 peer to an IPv6-only socket (`tcp_v6_connect`,
/// `udpv6_sendmsg`, `ip6_datagram_connect`): ENETUNREACH for an IPv4-mapped address, and for
/// an `AF_INET` one EAFNOSUPPORT on `connect`, ENETUNREACH on a send.
pub(crate) fn ipv4_peer_refused(
    t: &mut impl Tracee,
    fd: i32,
    v6: bool,
    addr: SockAddr,
    connect: bool,
) -> Result<(), Errno> {
    let ipv4_peer = match addr {
        SockAddr::V4 { .. } => true,
        SockAddr::V6 { ip, .. } => std::net::Ipv6Addr::from(ip).to_ipv4_mapped().is_some(),
    };
    if !v6 || !ipv4_peer || !t.v6_only(fd) {
        return Ok(());
    }
    Err(match addr {
        SockAddr::V4 { .. } if connect => Errno(libc::EAFNOSUPPORT),
        _ => Errno(libc::ENETUNREACH),
    })
}

/// A resolver file's path, and the path of the server's copy to open in
/// its place (or the errno the server gave).
pub type SystemFileCopy = (Vec<u8>, Result<Vec<u8>, Errno>);

/// What the planner forwards, besides the mounts.
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    pub mounts: MountTable,
    pub uname: bool,
    pub net: bool,
    /// `--pure` with `--net`: socket data moves stop-and-wait.
    pub pure_net: bool,
    /// With `--net`: the resolver files, each replaced by the server's copy
    /// (a path the program can open instead) or by the server's errno.
    pub system_files: Vec<SystemFileCopy>,
    /// Writes to remote files may be held: `close` of a remote fd sends
    /// them first and reports their error.
    pub write_behind: bool,
}

/// How a stat reply is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatLayout {
    Stat,
    Statx,
}

/// What the reply to a forwarded call turns into.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    /// `Done` → 0.
    Zero,
    /// `Opened` → install a placeholder fd in the program.
    Open {
        local_path: Vec<u8>,
        flags: i32,
        cloexec: bool,
    },
    Stat {
        addr: u64,
        layout: StatLayout,
    },
    /// `Data` → copy to `addr`; longer than `cap` is cut (`truncate`) or ERANGE.
    Data {
        addr: u64,
        cap: u64,
        truncate: bool,
    },
    /// `Data` of a `readlink` → as `Data` with `truncate`, once an absolute
    /// target in a mount is spelled as the program names it.
    Readlink {
        addr: u64,
        cap: u64,
    },
    /// `Data` → scatter over iovecs.
    DataIov {
        iov: Vec<(u64, u64)>,
    },
    /// `Count(n)` or `Offset(n)` → n.
    Number,
    Dirents {
        addr: u64,
        cap: u64,
    },
    Statfs {
        addr: u64,
    },
    Uname {
        addr: u64,
    },
    /// `Done` → the program's cwd becomes this remote directory.
    Chdir {
        local_path: Vec<u8>,
    },
    /// `Done` → remember the new `F_GETFL` flags of a remote fd.
    SetFlags {
        key: u64,
        flags: i32,
    },
    /// `Done` → plan the same call again (its socket is now remote).
    Replan,
    /// `Count(n)` → one message of a `sendmmsg` went: its `msg_len` at
    /// `len_addr` becomes n, and the call returns 1.
    FirstMessageSent {
        len_addr: u64,
    },
    /// `close(2)` of a remote fd once its held writes are sent: the call
    /// then runs natively and returns their error, if any.
    CloseAfterFlush,
    /// `Done` → the socket file of an AF_UNIX `bind` exists on the server:
    /// the program's socket is bound locally to an abstract name (the
    /// kernel's autobind), so that `listen` and `accept` work on it.
    BindSocketFile,
    /// `Stat` → a `connect` to a socket path on the server, which nothing of
    /// the program's machine can reach: refused, as by a socket file nobody
    /// listens on.
    ConnectSocketFile,
    /// `Data` → run the `mmap` natively as an anonymous mapping with
    /// `flags` and fill the mapping with the data.
    Map {
        flags: u64,
    },
    /// `Done` → the remote executable is copied to `copy`: run that (or,
    /// for a `#!` script, its interpreter on the program's path).
    Exec {
        copy: Vec<u8>,
        path_arg: u8,
        argv_arg: u8,
    },
    /// `Lock` → an `F_GETLK` answer at `addr`.
    Lock {
        addr: u64,
    },
    /// `close(2)` of a remote fd once the process's record locks on its
    /// file are released: the call then runs natively.
    CloseAfterRelease,
}

/// How much a `--pure` receive waits for (its flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PureWait {
    /// `MSG_DONTWAIT`: one try.
    DontWait,
    /// Any bytes (or the end of the stream).
    Any,
    /// `MSG_WAITALL`: all `len` bytes (or the end of the stream).
    All,
    /// `FIONREAD`: one non-blocking try, even with bytes already there.
    Available,
}

/// What happens after the program's own syscall ran natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterNative {
    Nothing,
    /// A successful local `chdir`/`fchdir` leaves any remote cwd.
    LeaveVirtualCwd,
    /// A connection accepted from a remote listener: report the remote
    /// peer in the `accept` address buffer (if any) and remember it.
    AcceptRemote {
        addr: u64,
        len: u64,
    },
    /// Datagrams came through relays: each source address the kernel
    /// reported names a relay, and becomes the remote peer it stands for.
    /// With `counted`, the first `result` slots are used (`recvmmsg`);
    /// otherwise the one slot, if the call succeeded.
    UdpSources {
        slots: Vec<crate::syscall::udp::SourceSlot>,
        counted: bool,
    },
    /// A `sendmmsg` ran on a copy of its vector in scratch memory: the
    /// `msg_len` of the first `result` entries go back to `vec`.
    MsgLens {
        vec: u64,
    },
}

/// A call run natively on arguments rscq laid out below the red zone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scratch {
    /// The bytes to lay out.
    pub scratch: Vec<u8>,
    /// Offsets in `scratch` holding offsets in `scratch`, to turn into
    /// addresses.
    pub relocs: Vec<usize>,
    /// Arguments pointed at offsets in `scratch`.
    pub args: Vec<(usize, u64)>,
    /// Arguments set to values.
    pub values: Vec<(usize, u64)>,
    pub after: AfterNative,
}

/// The decision for one trapped call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// Run the call as the program made it.
    Native,
    /// Run it natively, with some path arguments replaced by absolute paths
    /// (relative paths only make sense to the kernel relative to the real
    /// cwd, which differs while the program is in a remote directory).
    NativeRewritten {
        paths: Vec<(usize, Vec<u8>)>,
        after: AfterNative,
    },
    /// Run it natively with these bytes in place of some pointer arguments
    /// (each gets a NUL after it) and these register arguments changed; the
    /// program gets its own arguments back.
    NativeWithArgs {
        data: Vec<(usize, Vec<u8>)>,
        args: [Option<u64>; 6],
    },
    /// Skip it and return this value (negative errno or result).
    Return(i64),
    /// Skip it, write these bytes into the program, and return `ret`.
    Answer {
        ret: i64,
        writes: Vec<(u64, Vec<u8>)>,
    },
    /// Skip it and make the program's cwd this remote directory.
    EnterRemoteDir {
        local_path: Vec<u8>,
    },
    Forward {
        request: Request,
        then: Then,
    },
    /// `mmap` of a remote file: fetch `len` bytes at `offset` (fewer at the
    /// end of the file), run the call natively with `args` changed (an
    /// anonymous private mapping), and fill the new mapping with them.
    MapRemote {
        handle: Handle,
        offset: i64,
        len: u64,
        /// The anonymous mapping's flags ([`super::mapping::anonymous_args`]).
        flags: u64,
    },
    /// `execve` of a remote file: the tracer has it copied to a local file
    /// ([`Then::Exec`]), then runs it (or its `#!` interpreter).
    ExecRemote {
        path: RemotePath,
        /// The registers that hold the path and `argv`.
        path_arg: u8,
        argv_arg: u8,
    },
    /// Forward a request that may wait (a lock): the thread sleeps
    /// interruptibly until the reply, which is the call's result (0 or an
    /// errno). The tracer numbers the wait ([`super::locks::with_wait`]).
    ForwardWait {
        request: Request,
    },
    /// Connect the program's TCP socket `fd` to `addr` on the server; the
    /// reply is `Done` (→ 0) or the remote errno.
    ConnectTcp {
        fd: i32,
        addr: SockAddr,
    },
    /// Bind the program's TCP socket on the server (and, locally, to a
    /// loopback port where remote connections will be delivered).
    BindTcp {
        fd: i32,
        addr: SockAddr,
    },
    /// Start listening on the server and locally.
    ListenTcp {
        fd: i32,
        listener: u64,
        backlog: u32,
    },
    /// `--pure`: a receive on an empty remote socket. Fetch at most `len`
    /// bytes into it (one round trip), then let the call run natively.
    PureRecv {
        fd: i32,
        pump: u64,
        len: u32,
        wait: PureWait,
    },
    /// `setsockopt` of an option that matters on the server, on an INET
    /// stream socket: run it natively and pass the option on.
    SetSockOpt {
        fd: i32,
        option: crate::proto::SockOption,
    },
    /// `--pure`: a send on a remote socket, as one round trip; one that
    /// may wait for room (a blocking socket, no `MSG_DONTWAIT`) sleeps
    /// interruptibly meanwhile.
    PureSend {
        fd: i32,
        pump: u64,
        data: Vec<u8>,
        /// `MSG_DONTWAIT`.
        dontwait: bool,
    },
    /// `--pure`: a wait for input on empty remote sockets; start one fetch
    /// on each, then let the wait run natively.
    Prefetch {
        pumps: Vec<u64>,
        /// Remote UDP sockets.
        udp: Vec<u64>,
    },
    /// Bind the program's UDP socket on the server (and locally to a
    /// loopback port); with `replan`, the call that needed it (a send or
    /// `connect` on a socket never bound) is planned again afterwards.
    UdpBind {
        fd: i32,
        addr: SockAddr,
        replan: bool,
    },
    /// Connect a remote UDP socket on the server, and locally to the
    /// peer's relay; `None` (`AF_UNSPEC`) dissolves the association.
    UdpConnect {
        fd: i32,
        udp: u64,
        addr: Option<SockAddr>,
    },
    /// Run natively on scratch memory.
    NativeScratch(Box<Scratch>),
    /// `--pure`: one datagram sent on the server, as one round trip.
    UdpPureSend {
        fd: i32,
        udp: u64,
        peer: Option<SockAddr>,
        data: Vec<u8>,
        then: Then,
    },
    /// `--pure`: a receive on an empty remote UDP socket: fetch one
    /// datagram into it, then run the call.
    UdpPureRecv {
        fd: i32,
        udp: u64,
        dontwait: bool,
    },
}

impl Plan {
    pub(super) fn fail(e: Errno) -> Self {
        Self::Return(e.as_syscall_return())
    }
    pub(super) fn forward(request: Request, then: Then) -> Self {
        Self::Forward { request, then }
    }
}

/// The result of [`finish`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Write these bytes into the program, then return `ret`.
    Return {
        ret: i64,
        writes: Vec<(u64, Vec<u8>)>,
    },
    /// A remote file was opened: give the program a placeholder fd.
    Placeholder {
        handle: Handle,
        stat: Stat,
        local_path: Vec<u8>,
        flags: i32,
        cloexec: bool,
    },
    Chdir {
        local_path: Vec<u8>,
    },
    SetFlags {
        key: u64,
        flags: i32,
    },
    /// Plan the call again.
    Replan,
    /// Let the program's own call run, then make it return this error.
    RunNative {
        error: Option<Errno>,
    },
    /// Run the program's call with these arguments changed, then give it
    /// back its own.
    RunNativeWith {
        args: [Option<u64>; 6],
    },
    /// A remote executable's local copy is ready; or, with `link`, the
    /// path named an absolute symlink: exec its target (as the program
    /// spells it) instead, as the kernel follows it in the caller's view.
    Exec {
        copy: Vec<u8>,
        path_arg: u8,
        argv_arg: u8,
        link: Option<Vec<u8>>,
    },
    /// Run the program's `mmap` with these arguments changed, then write
    /// `data` at the start of the new mapping.
    MapFilled {
        args: [Option<u64>; 6],
        data: Vec<u8>,
    },
}

impl Outcome {
    fn ret(ret: i64) -> Self {
        Self::Return {
            ret,
            writes: Vec::new(),
        }
    }
    fn errno(e: Errno) -> Self {
        Self::ret(e.as_syscall_return())
    }
}

const AT_FDCWD: i32 = libc::AT_FDCWD;
const MAX_IOV: u64 = 1024;

fn arg_i32(v: u64) -> i32 {
    // Syscalls take `int` arguments in the low 32 bits of the register.
    arg_u32(v).cast_signed()
}

fn arg_u32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(u32::MAX)
}

fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// `mknod(2)`'s request: the kernel takes `umode_t` and an `unsigned int`
/// device number, so only their low bits count.
fn mknod(path: RemotePath, mode: u64, dev: u64) -> Request {
    Request::Mknod {
        path,
        mode: arg_u32(mode) & 0xffff,
        dev: arg_u32(dev),
    }
}

/// `(N, rest)` when `path` is `/proc/self/fd/N[/rest]`, its `thread-self`
/// form, or `/dev/fd/N[/rest]`: the program's own fd N.
fn proc_fd_reference(path: &[u8]) -> Option<(i32, Vec<u8>)> {
    let tail = [
        b"/proc/self/fd/".as_slice(),
        b"/proc/thread-self/fd/",
        b"/dev/fd/",
    ]
    .iter()
    .find_map(|prefix| path.strip_prefix(*prefix))?;
    let digits_end = tail.iter().position(|&b| b == b'/').unwrap_or(tail.len());
    let fd = std::str::from_utf8(&tail[..digits_end])
        .ok()?
        .parse()
        .ok()?;
    Some((
        fd,
        tail[digits_end..]
            .strip_prefix(b"/")
            .unwrap_or_default()
            .to_vec(),
    ))
}

/// Where a path argument points, once resolved.
pub(super) enum Target {
    Remote { local: Vec<u8>, remote: RemotePath },
    Local { rewrite: Option<Vec<u8>> },
}

pub(super) struct Planner<'a, T: Tracee> {
    pub(super) mounts: &'a MountTable,
    pub(super) system_files: &'a [SystemFileCopy],
    pub(super) t: &'a mut T,
}

impl<T: Tracee> Planner<'_, T> {
    /// Resolves `(dirfd, path)` the way the kernel would pick the starting
    /// directory, then judges it against the mounts.
    pub(super) fn resolve(&mut self, dirfd: i32, path: &[u8]) -> Result<Target, Errno> {
        let absolute = path.first() == Some(&b'/');
        let base = if absolute {
            b"/".to_vec()
        } else if dirfd == AT_FDCWD {
            self.t.cwd()?
        } else {
            match self.t.fd(dirfd) {
                FdKind::Remote(rfd) => rfd.path,
                FdKind::Local => match self.t.local_fd_path(dirfd) {
                    Some(base) => base,
                    // Not a directory with a path (a pipe, a socket): the
                    // kernel will answer, and it cannot lead into a mount.
                    None => return Ok(Target::Local { rewrite: None }),
                },
            }
        };
        let local = paths::join(&base, path);
        // `/proc/self/fd/N` of a remote file names that file (glibc's
        // fchmodat and friends go through it).
        if let Some((fd, rest)) = proc_fd_reference(&local)
            && let FdKind::Remote(rfd) = self.t.fd(fd)
        {
            let local = paths::join(&rfd.path, &rest);
            if let Some(remote) = self.mounts.locate(&rfd.path, &rest) {
                return Ok(Target::Remote { local, remote });
            }
        }
        // The server resolves `.`, `..` and trailing slashes inside the
        // mount, so they keep their meaning (`a/b/..` names `..` of `b`).
        if let Some(remote) = self.mounts.locate(&base, path) {
            return Ok(Target::Remote { local, remote });
        }
        let through_mount =
            path.windows(2).any(|w| w == b"..") && self.mounts.passes_through(&base, path);
        let relative_to_virtual = !absolute && dirfd == AT_FDCWD && self.t.has_virtual_cwd();
        let rewrite = (through_mount || relative_to_virtual).then(|| {
            let mut p = local.clone();
            if path.ends_with(b"/") && p != b"/" {
                p.push(b'/');
            }
            p
        });
        Ok(Target::Local { rewrite })
    }

    fn path_arg(&mut self, dirfd: i32, addr: u64) -> Result<Target, Errno> {
        let path = self.t.read_path(addr)?;
        if path.is_empty() {
            return Err(Errno::ENOENT);
        }
        self.resolve(dirfd, &path)
    }

    /// The common shape: one path, forwarded when remote.
    fn one_path(
        &mut self,
        dirfd: i32,
        addr: u64,
        arg: usize,
        remote: impl FnOnce(&mut Self, Vec<u8>, RemotePath) -> Plan,
    ) -> Plan {
        match self.path_arg(dirfd, addr) {
            Err(e) => Plan::fail(e),
            Ok(Target::Local { rewrite: None }) => Plan::Native,
            Ok(Target::Local { rewrite: Some(p) }) => Plan::NativeRewritten {
                paths: vec![(arg, p)],
                after: AfterNative::Nothing,
            },
            Ok(Target::Remote { local, remote: r }) => remote(self, local, r),
        }
    }

    /// Two paths (rename, link): both remote, both local, or EXDEV.
    fn two_paths(
        &mut self,
        (d1, a1, arg1): (i32, u64, usize),
        (d2, a2, arg2): (i32, u64, usize),
        remote: impl FnOnce(RemotePath, RemotePath) -> Plan,
    ) -> Plan {
        let first = match self.path_arg(d1, a1) {
            Ok(t) => t,
            Err(e) => return Plan::fail(e),
        };
        let second = match self.path_arg(d2, a2) {
            Ok(t) => t,
            Err(e) => return Plan::fail(e),
        };
        match (first, second) {
            (Target::Remote { remote: r1, .. }, Target::Remote { remote: r2, .. }) => {
                remote(r1, r2)
            }
            (Target::Local { rewrite: w1 }, Target::Local { rewrite: w2 }) => {
                let paths: Vec<_> = [(arg1, w1), (arg2, w2)]
                    .into_iter()
                    .filter_map(|(i, w)| Some((i, w?)))
                    .collect();
                if paths.is_empty() {
                    Plan::Native
                } else {
                    Plan::NativeRewritten {
                        paths,
                        after: AfterNative::Nothing,
                    }
                }
            }
            _ => Plan::fail(Errno::EXDEV),
        }
    }

    fn open(&mut self, (dirfd, addr, arg): (i32, u64, usize), flags: i32, mode: u32) -> Plan {
        if let Some(plan) = self.system_file(dirfd, addr, arg, flags) {
            return plan;
        }
        self.one_path(dirfd, addr, arg, |_, local, path| {
            let cloexec = flags & libc::O_CLOEXEC != 0;
            Plan::forward(
                Request::Open {
                    path,
                    flags: flags & !libc::O_CLOEXEC,
                    mode: mode & 0o7777,
                },
                Then::Open {
                    local_path: local,
                    flags: flags & !libc::O_CLOEXEC,
                    cloexec,
                },
            )
        })
    }

    /// With `--net`, an open of a resolver file opens the server's copy.
    fn system_file(&mut self, dirfd: i32, addr: u64, arg: usize, flags: i32) -> Option<Plan> {
        if self.system_files.is_empty() {
            return None;
        }
        let path = self.t.read_path(addr).ok()?;
        let absolute = if path.first() == Some(&b'/') {
            paths::normalize(&path)
        } else if dirfd == AT_FDCWD {
            paths::join(&self.t.cwd().ok()?, &path)
        } else {
            paths::join(&self.t.local_fd_path(dirfd)?, &path)
        };
        let (_, copy) = self.system_files.iter().find(|(p, _)| *p == absolute)?;
        if flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) != 0 {
            return Some(Plan::fail(Errno::EROFS));
        }
        Some(match copy {
            Ok(replacement) => Plan::NativeRewritten {
                paths: vec![(arg, replacement.clone())],
                after: AfterNative::Nothing,
            },
            Err(e) => Plan::fail(*e),
        })
    }

    /// `stat`-like calls, including the `AT_EMPTY_PATH` form on an fd.
    fn stat_at(
        &mut self,
        (dirfd, addr, arg): (i32, u64, usize),
        flags: i32,
        buf: u64,
        layout: StatLayout,
    ) -> Plan {
        let then = Then::Stat { addr: buf, layout };
        let empty_ok = flags & libc::AT_EMPTY_PATH != 0;
        let path = if addr == 0 && empty_ok {
            Vec::new()
        } else {
            match self.t.read_path(addr) {
                Ok(p) => p,
                Err(e) => return Plan::fail(e),
            }
        };
        if path.is_empty() {
            if !empty_ok {
                return Plan::fail(Errno::ENOENT);
            }
            if dirfd == AT_FDCWD {
                return self.stat_cwd(then);
            }
            return match self.t.fd(dirfd) {
                FdKind::Remote(rfd) => Plan::forward(Request::Fstat { handle: rfd.handle }, then),
                FdKind::Local => Plan::Native,
            };
        }
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        match self.resolve(dirfd, &path) {
            Err(e) => Plan::fail(e),
            Ok(Target::Local { rewrite: None }) => Plan::Native,
            Ok(Target::Local { rewrite: Some(p) }) => Plan::NativeRewritten {
                paths: vec![(arg, p)],
                after: AfterNative::Nothing,
            },
            Ok(Target::Remote { remote, .. }) => Plan::forward(
                Request::Stat {
                    path: remote,
                    follow,
                },
                then,
            ),
        }
    }

    fn stat_cwd(&mut self, then: Then) -> Plan {
        let cwd = match self.t.cwd() {
            Ok(c) => c,
            Err(e) => return Plan::fail(e),
        };
        match self.mounts.to_remote(&cwd) {
            Some(path) => Plan::forward(Request::Stat { path, follow: true }, then),
            None => Plan::Native,
        }
    }

    fn xattr_path(&mut self, nr: i64, a: [u64; 6], follow: bool) -> Plan {
        self.one_path(AT_FDCWD, a[0], 0, |p, _, path| {
            p.xattr(nr, XattrTarget::Path { path, follow }, a)
        })
    }

    /// The part of the xattr calls after the target is known; `a[1..]` are
    /// the same for the path and fd forms.
    fn xattr(&mut self, nr: i64, target: XattrTarget, a: [u64; 6]) -> Plan {
        let read_name = |t: &mut T| -> Result<Vec<u8>, Errno> {
            let name = t.read_path(a[1])?;
            if name.is_empty() || name.len() > MAX_XATTR_NAME {
                return Err(Errno::ERANGE);
            }
            Ok(name)
        };
        let size = a[3];
        match nr {
            libc::SYS_getxattr | libc::SYS_lgetxattr | libc::SYS_fgetxattr => {
                let name = match read_name(self.t) {
                    Ok(n) => n,
                    Err(e) => return Plan::fail(e),
                };
                let size = u32::try_from(size.min(u64::from(MAX_XATTR_VALUE))).unwrap_or(0);
                let then = if size == 0 {
                    Then::Number
                } else {
                    Then::Data {
                        addr: a[2],
                        cap: a[3],
                        truncate: false,
                    }
                };
                Plan::forward(Request::GetXattr { target, name, size }, then)
            }
            libc::SYS_listxattr | libc::SYS_llistxattr | libc::SYS_flistxattr => {
                let size = a[2];
                let then = if size == 0 {
                    Then::Number
                } else {
                    Then::Data {
                        addr: a[1],
                        cap: size,
                        truncate: false,
                    }
                };
                let size = u32::try_from(size.min(u64::from(MAX_XATTR_VALUE))).unwrap_or(0);
                Plan::forward(Request::ListXattr { target, size }, then)
            }
            libc::SYS_setxattr | libc::SYS_lsetxattr | libc::SYS_fsetxattr => {
                let name = match read_name(self.t) {
                    Ok(n) => n,
                    Err(e) => return Plan::fail(e),
                };
                if size > u64::from(MAX_XATTR_VALUE) {
                    return Plan::fail(Errno::E2BIG);
                }
                let value = match self.t.read_bytes(a[2], usize::try_from(size).unwrap_or(0)) {
                    Ok(v) => v,
                    Err(e) => return Plan::fail(e),
                };
                let flags = arg_i32(a[4]);
                Plan::forward(
                    Request::SetXattr {
                        target,
                        name,
                        value,
                        flags,
                    },
                    Then::Zero,
                )
            }
            _ => {
                let name = match read_name(self.t) {
                    Ok(n) => n,
                    Err(e) => return Plan::fail(e),
                };
                Plan::forward(Request::RemoveXattr { target, name }, Then::Zero)
            }
        }
    }

    fn times(
        &mut self,
        addr: u64,
        decode: fn(&[u8]) -> [TimeUpdate; 2],
    ) -> Result<[TimeUpdate; 2], Errno> {
        if addr == 0 {
            return Ok([TimeUpdate::Now, TimeUpdate::Now]);
        }
        Ok(decode(&self.t.read_bytes(addr, 32)?))
    }

    fn path_call(&mut self, nr: i64, a: [u64; 6]) -> Plan {
        let fd0 = arg_i32(a[0]);
        match nr {
            libc::SYS_open => self.open((AT_FDCWD, a[0], 0), arg_i32(a[1]), arg_u32(a[2])),
            libc::SYS_creat => self.open(
                (AT_FDCWD, a[0], 0),
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                arg_u32(a[1]),
            ),
            libc::SYS_openat => self.open((fd0, a[1], 1), arg_i32(a[2]), arg_u32(a[3])),
            libc::SYS_openat2 => {
                if a[3] < 24 {
                    return Plan::fail(Errno::EINVAL);
                }
                let how = match self.t.read_bytes(a[2], 24) {
                    Ok(b) => layout::decode_open_how(&b),
                    Err(e) => return Plan::fail(e),
                };
                let flags = i32::try_from(how.0).unwrap_or(-1);
                if flags < 0 {
                    return Plan::fail(Errno::EINVAL);
                }
                self.open((fd0, a[1], 1), flags, u32::try_from(how.1).unwrap_or(0))
            }
            libc::SYS_stat => self.stat_at((AT_FDCWD, a[0], 0), 0, a[1], StatLayout::Stat),
            libc::SYS_lstat => self.stat_at(
                (AT_FDCWD, a[0], 0),
                libc::AT_SYMLINK_NOFOLLOW,
                a[1],
                StatLayout::Stat,
            ),
            libc::SYS_newfstatat => {
                self.stat_at((fd0, a[1], 1), arg_i32(a[3]), a[2], StatLayout::Stat)
            }
            libc::SYS_statx => self.stat_at((fd0, a[1], 1), arg_i32(a[2]), a[4], StatLayout::Statx),
            libc::SYS_access => self.access((AT_FDCWD, a[0], 0), arg_i32(a[1]), 0),
            libc::SYS_faccessat => self.access((fd0, a[1], 1), arg_i32(a[2]), 0),
            libc::SYS_faccessat2 => self.access((fd0, a[1], 1), arg_i32(a[2]), arg_i32(a[3])),
            libc::SYS_readlink => self.readlink((AT_FDCWD, a[0], 0), a[1], a[2]),
            libc::SYS_readlinkat => self.readlink((fd0, a[1], 1), a[2], a[3]),
            libc::SYS_mkdir => self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
                Plan::forward(
                    Request::Mkdir {
                        path,
                        mode: arg_u32(a[1]) & 0o7777,
                    },
                    Then::Zero,
                )
            }),
            libc::SYS_mkdirat => self.one_path(fd0, a[1], 1, |_, _, path| {
                Plan::forward(
                    Request::Mkdir {
                        path,
                        mode: arg_u32(a[2]) & 0o7777,
                    },
                    Then::Zero,
                )
            }),
            libc::SYS_rmdir => self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
                Plan::forward(Request::Rmdir { path }, Then::Zero)
            }),
            libc::SYS_unlink => self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
                Plan::forward(Request::Unlink { path }, Then::Zero)
            }),
            libc::SYS_unlinkat => {
                let flags = arg_i32(a[2]);
                self.one_path(fd0, a[1], 1, |_, _, path| {
                    if flags & !libc::AT_REMOVEDIR != 0 {
                        Plan::fail(Errno::EINVAL)
                    } else if flags & libc::AT_REMOVEDIR != 0 {
                        Plan::forward(Request::Rmdir { path }, Then::Zero)
                    } else {
                        Plan::forward(Request::Unlink { path }, Then::Zero)
                    }
                })
            }
            libc::SYS_rename => self.two_paths((AT_FDCWD, a[0], 0), (AT_FDCWD, a[1], 1), |f, t| {
                Plan::forward(
                    Request::Rename {
                        from: f,
                        to: t,
                        flags: 0,
                    },
                    Then::Zero,
                )
            }),
            libc::SYS_renameat | libc::SYS_renameat2 => {
                let flags = if nr == libc::SYS_renameat2 {
                    arg_u32(a[4])
                } else {
                    0
                };
                let (d2, arg1, arg2) = (arg_i32(a[2]), 1, 3);
                self.two_paths((fd0, a[1], arg1), (d2, a[3], arg2), |f, t| {
                    Plan::forward(
                        Request::Rename {
                            from: f,
                            to: t,
                            flags,
                        },
                        Then::Zero,
                    )
                })
            }
            libc::SYS_link => self.two_paths((AT_FDCWD, a[0], 0), (AT_FDCWD, a[1], 1), |f, t| {
                Plan::forward(
                    Request::Link {
                        from: f,
                        to: t,
                        follow: false,
                    },
                    Then::Zero,
                )
            }),
            libc::SYS_linkat => {
                let flags = arg_i32(a[4]);
                if flags & libc::AT_EMPTY_PATH != 0 {
                    return Plan::Native;
                }
                let follow = flags & libc::AT_SYMLINK_FOLLOW != 0;
                self.two_paths((fd0, a[1], 1), (arg_i32(a[2]), a[3], 3), |f, t| {
                    Plan::forward(
                        Request::Link {
                            from: f,
                            to: t,
                            follow,
                        },
                        Then::Zero,
                    )
                })
            }
            libc::SYS_symlink | libc::SYS_symlinkat => {
                let (dirfd, addr, arg) = if nr == libc::SYS_symlink {
                    (AT_FDCWD, a[1], 1)
                } else {
                    (arg_i32(a[1]), a[2], 2)
                };
                let target_addr = a[0];
                self.one_path(dirfd, addr, arg, |p, _, path| {
                    match p.t.read_path(target_addr) {
                        Ok(target) if !target.is_empty() => {
                            // An absolute target in a mount is stored as the
                            // server names it, so the server's walk follows it
                            // where the program's kernel would; `readlink`
                            // gives the program's spelling back.
                            let target = match target.first() {
                                Some(b'/') => {
                                    p.mounts.locate(b"/", &target).map_or(target, |r| r.0)
                                }
                                _ => target,
                            };
                            Plan::forward(Request::Symlink { target, path }, Then::Zero)
                        }
                        Ok(_) => Plan::fail(Errno::ENOENT),
                        Err(e) => Plan::fail(e),
                    }
                })
            }
            libc::SYS_chmod => self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
                Plan::forward(
                    Request::Chmod {
                        path,
                        mode: arg_u32(a[1]) & 0o7777,
                        follow: true,
                    },
                    Then::Zero,
                )
            }),
            libc::SYS_fchmodat | libc::SYS_fchmodat2 => {
                let flags = if nr == libc::SYS_fchmodat2 {
                    arg_i32(a[3])
                } else {
                    0
                };
                let mode = arg_u32(a[2]) & 0o7777;
                if flags & libc::AT_EMPTY_PATH != 0 {
                    return self.fd_call(libc::SYS_fchmod, [a[0], a[2], 0, 0, 0, 0]);
                }
                let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
                self.one_path(fd0, a[1], 1, |_, _, path| {
                    Plan::forward(Request::Chmod { path, mode, follow }, Then::Zero)
                })
            }
            libc::SYS_chown | libc::SYS_lchown => {
                let follow = nr == libc::SYS_chown;
                self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
                    Plan::forward(
                        Request::Chown {
                            path,
                            uid: arg_u32(a[1]),
                            gid: arg_u32(a[2]),
                            follow,
                        },
                        Then::Zero,
                    )
                })
            }
            libc::SYS_fchownat => {
                let flags = arg_i32(a[4]);
                if flags & libc::AT_EMPTY_PATH != 0
                    && self.t.read_path(a[1]).is_ok_and(|p| p.is_empty())
                {
                    return self.fd_call(libc::SYS_fchown, [a[0], a[2], a[3], 0, 0, 0]);
                }
                let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
                self.one_path(fd0, a[1], 1, |_, _, path| {
                    Plan::forward(
                        Request::Chown {
                            path,
                            uid: arg_u32(a[2]),
                            gid: arg_u32(a[3]),
                            follow,
                        },
                        Then::Zero,
                    )
                })
            }
            libc::SYS_utimensat => {
                let flags = arg_i32(a[3]);
                let times = match self.times(a[2], layout::decode_utimens) {
                    Ok(t) => t,
                    Err(e) => return Plan::fail(e),
                };
                if a[1] == 0 {
                    return match self.t.fd(fd0) {
                        FdKind::Remote(rfd) => Plan::forward(
                            Request::Futimens {
                                handle: rfd.handle,
                                times,
                            },
                            Then::Zero,
                        ),
                        FdKind::Local => Plan::Native,
                    };
                }
                let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
                self.one_path(fd0, a[1], 1, |_, _, path| {
                    Plan::forward(
                        Request::Utimens {
                            path,
                            times,
                            follow,
                        },
                        Then::Zero,
                    )
                })
            }
            libc::SYS_utimes | libc::SYS_futimesat => {
                let (dirfd, addr, tv, arg) = if nr == libc::SYS_utimes {
                    (AT_FDCWD, a[0], a[1], 0)
                } else {
                    (fd0, a[1], a[2], 1)
                };
                let times = match self.times(tv, layout::decode_timevals) {
                    Ok(t) => t,
                    Err(e) => return Plan::fail(e),
                };
                self.one_path(dirfd, addr, arg, |_, _, path| {
                    Plan::forward(
                        Request::Utimens {
                            path,
                            times,
                            follow: true,
                        },
                        Then::Zero,
                    )
                })
            }
            libc::SYS_utime => {
                let times = if a[1] == 0 {
                    Ok([TimeUpdate::Now, TimeUpdate::Now])
                } else {
                    self.t.read_bytes(a[1], 16).map(|b| {
                        let mut padded = vec![0u8; 32];
                        padded[0..8].copy_from_slice(&b[0..8]);
                        padded[16..24].copy_from_slice(&b[8..16]);
                        layout::decode_timevals(&padded)
                    })
                };
                let times = match times {
                    Ok(t) => t,
                    Err(e) => return Plan::fail(e),
                };
                self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
                    Plan::forward(
                        Request::Utimens {
                            path,
                            times,
                            follow: true,
                        },
                        Then::Zero,
                    )
                })
            }
            libc::SYS_truncate => self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
                Plan::forward(
                    Request::Truncate {
                        path,
                        len: a[1].cast_signed(),
                    },
                    Then::Zero,
                )
            }),
            libc::SYS_getxattr
            | libc::SYS_setxattr
            | libc::SYS_listxattr
            | libc::SYS_removexattr => self.xattr_path(nr, a, true),
            libc::SYS_lgetxattr
            | libc::SYS_lsetxattr
            | libc::SYS_llistxattr
            | libc::SYS_lremovexattr => self.xattr_path(nr, a, false),
            libc::SYS_statfs => self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
                Plan::forward(Request::Statfs { path }, Then::Statfs { addr: a[1] })
            }),
            libc::SYS_chdir => match self.path_arg(AT_FDCWD, a[0]) {
                Err(e) => Plan::fail(e),
                Ok(Target::Remote { local, remote }) => Plan::forward(
                    Request::CheckDir { path: remote },
                    Then::Chdir { local_path: local },
                ),
                Ok(Target::Local { rewrite }) => {
                    if self.t.has_virtual_cwd() {
                        let paths = rewrite.map(|p| vec![(0, p)]).unwrap_or_default();
                        Plan::NativeRewritten {
                            paths,
                            after: AfterNative::LeaveVirtualCwd,
                        }
                    } else {
                        Plan::Native
                    }
                }
            },
            libc::SYS_getcwd => self.getcwd(a[0], a[1]),
            libc::SYS_execve => self.one_path(AT_FDCWD, a[0], 0, |_, _, path| Plan::ExecRemote {
                path,
                path_arg: 0,
                argv_arg: 1,
            }),
            libc::SYS_execveat => self.one_path(fd0, a[1], 1, |_, _, path| Plan::ExecRemote {
                path,
                path_arg: 1,
                argv_arg: 2,
            }),
            libc::SYS_mknod => self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
                Plan::forward(mknod(path, a[1], a[2]), Then::Zero)
            }),
            libc::SYS_mknodat => self.one_path(fd0, a[1], 1, |_, _, path| {
                Plan::forward(mknod(path, a[2], a[3]), Then::Zero)
            }),
            _ => Plan::Native,
        }
    }

    fn access(&mut self, (dirfd, addr, arg): (i32, u64, usize), mode: i32, flags: i32) -> Plan {
        if flags & libc::AT_EMPTY_PATH != 0 && self.t.read_path(addr).is_ok_and(|p| p.is_empty()) {
            return Plan::Native;
        }
        self.one_path(dirfd, addr, arg, |_, _, path| {
            Plan::forward(Request::Access { path, mode, flags }, Then::Zero)
        })
    }

    fn readlink(&mut self, (dirfd, addr, arg): (i32, u64, usize), buf: u64, size: u64) -> Plan {
        let size_ok = i32::try_from(size).is_ok_and(|s| s > 0);
        self.one_path(dirfd, addr, arg, |_, _, path| {
            if !size_ok {
                return Plan::fail(Errno::EINVAL);
            }
            Plan::forward(
                Request::Readlink { path },
                Then::Readlink {
                    addr: buf,
                    cap: size,
                },
            )
        })
    }

    fn getcwd(&mut self, buf: u64, size: u64) -> Plan {
        if !self.t.has_virtual_cwd() {
            return Plan::Native;
        }
        let cwd = match self.t.cwd() {
            Ok(c) => c,
            Err(e) => return Plan::fail(e),
        };
        let mut bytes = cwd;
        bytes.push(0);
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > size {
            return Plan::fail(Errno::ERANGE);
        }
        Plan::Answer {
            ret: len_i64(bytes.len()),
            writes: vec![(buf, bytes)],
        }
    }

    /// Calls on an fd: forwarded when the fd is a remote placeholder.
    fn fd_call(&mut self, nr: i64, a: [u64; 6]) -> Plan {
        let fd = arg_i32(a[0]);
        let rfd = match nr {
            libc::SYS_copy_file_range | libc::SYS_splice => {
                // The second fd is the third argument of both calls.
                let remote = matches!(self.t.fd(fd), FdKind::Remote(_))
                    || matches!(self.t.fd(arg_i32(a[2])), FdKind::Remote(_));
                // Both make coreutils and python fall back to read/write.
                let e = if nr == libc::SYS_copy_file_range {
                    Errno::EXDEV
                } else {
                    Errno::EINVAL
                };
                return if remote { Plan::fail(e) } else { Plan::Native };
            }
            libc::SYS_sendfile => {
                let remote = matches!(self.t.fd(fd), FdKind::Remote(_))
                    || matches!(self.t.fd(arg_i32(a[1])), FdKind::Remote(_));
                return if remote {
                    Plan::fail(Errno::EINVAL)
                } else {
                    Plan::Native
                };
            }
            _ => match self.t.fd(fd) {
                FdKind::Remote(r) => r,
                FdKind::Local => {
                    if nr == libc::SYS_fchdir && self.t.has_virtual_cwd() {
                        return Plan::NativeRewritten {
                            paths: Vec::new(),
                            after: AfterNative::LeaveVirtualCwd,
                        };
                    }
                    return Plan::Native;
                }
            },
        };
        let handle = rfd.handle;
        let count = |n: u64| u32::try_from(n.min(u64::from(MAX_IO))).unwrap_or(MAX_IO);
        match nr {
            libc::SYS_read => Plan::forward(
                Request::Read {
                    handle,
                    len: count(a[2]),
                },
                Then::Data {
                    addr: a[1],
                    cap: a[2],
                    truncate: true,
                },
            ),
            libc::SYS_pread64 => Plan::forward(
                Request::Pread {
                    handle,
                    len: count(a[2]),
                    offset: a[3].cast_signed(),
                },
                Then::Data {
                    addr: a[1],
                    cap: a[2],
                    truncate: true,
                },
            ),
            libc::SYS_write | libc::SYS_pwrite64 => {
                let data = match self
                    .t
                    .read_bytes(a[1], usize::try_from(count(a[2])).unwrap_or(0))
                {
                    Ok(d) => d,
                    Err(e) => return Plan::fail(e),
                };
                let request = if nr == libc::SYS_write {
                    Request::Write { handle, data }
                } else {
                    Request::Pwrite {
                        handle,
                        data,
                        offset: a[3].cast_signed(),
                    }
                };
                Plan::forward(request, Then::Number)
            }
            libc::SYS_readv | libc::SYS_preadv | libc::SYS_preadv2 => {
                let iov = match self.iovecs(a[1], a[2]) {
                    Ok(v) => v,
                    Err(e) => return Plan::fail(e),
                };
                let total = iov.iter().map(|&(_, l)| l).fold(0u64, u64::saturating_add);
                let len = count(total);
                let offset = a[3].cast_signed();
                let request = if nr == libc::SYS_readv || (nr == libc::SYS_preadv2 && offset == -1)
                {
                    Request::Read { handle, len }
                } else {
                    Request::Pread {
                        handle,
                        len,
                        offset,
                    }
                };
                Plan::forward(request, Then::DataIov { iov })
            }
            libc::SYS_writev | libc::SYS_pwritev | libc::SYS_pwritev2 => {
                let iov = match self.iovecs(a[1], a[2]) {
                    Ok(v) => v,
                    Err(e) => return Plan::fail(e),
                };
                let mut data = Vec::new();
                let limit = usize::try_from(MAX_IO).unwrap_or(usize::MAX);
                for (base, len) in iov {
                    let room = limit - data.len();
                    let take = usize::try_from(len).unwrap_or(usize::MAX).min(room);
                    match self.t.read_bytes(base, take) {
                        Ok(b) => data.extend_from_slice(&b),
                        Err(e) => return Plan::fail(e),
                    }
                    if data.len() == limit {
                        break;
                    }
                }
                let offset = a[3].cast_signed();
                let request =
                    if nr == libc::SYS_writev || (nr == libc::SYS_pwritev2 && offset == -1) {
                        Request::Write { handle, data }
                    } else {
                        Request::Pwrite {
                            handle,
                            data,
                            offset,
                        }
                    };
                Plan::forward(request, Then::Number)
            }
            libc::SYS_lseek => Plan::forward(
                Request::Lseek {
                    handle,
                    offset: a[1].cast_signed(),
                    whence: arg_i32(a[2]),
                },
                Then::Number,
            ),
            libc::SYS_fsync | libc::SYS_fdatasync => Plan::forward(
                Request::Fsync {
                    handle,
                    data_only: nr == libc::SYS_fdatasync,
                },
                Then::Zero,
            ),
            libc::SYS_fcntl => self.fcntl(&rfd, arg_i32(a[1]), a[2]),
            libc::SYS_fstat => Plan::forward(
                Request::Fstat { handle },
                Then::Stat {
                    addr: a[1],
                    layout: StatLayout::Stat,
                },
            ),
            libc::SYS_getdents64 => {
                let bytes = u32::try_from(a[2].min(u64::from(crate::proto::MAX_DIRENTS_BYTES)))
                    .unwrap_or(0);
                Plan::forward(
                    Request::Getdents { handle, bytes },
                    Then::Dirents {
                        addr: a[1],
                        cap: a[2],
                    },
                )
            }
            libc::SYS_ftruncate => Plan::forward(
                Request::Ftruncate {
                    handle,
                    len: a[1].cast_signed(),
                },
                Then::Zero,
            ),
            libc::SYS_fchmod => Plan::forward(
                Request::Fchmod {
                    handle,
                    mode: arg_u32(a[1]) & 0o7777,
                },
                Then::Zero,
            ),
            libc::SYS_fchown => Plan::forward(
                Request::Fchown {
                    handle,
                    uid: arg_u32(a[1]),
                    gid: arg_u32(a[2]),
                },
                Then::Zero,
            ),
            libc::SYS_fstatfs => {
                Plan::forward(Request::Fstatfs { handle }, Then::Statfs { addr: a[1] })
            }
            libc::SYS_fchdir => {
                if rfd.is_dir {
                    Plan::EnterRemoteDir {
                        local_path: rfd.path,
                    }
                } else {
                    Plan::fail(Errno::ENOTDIR)
                }
            }
            libc::SYS_fgetxattr
            | libc::SYS_fsetxattr
            | libc::SYS_flistxattr
            | libc::SYS_fremovexattr => self.xattr(nr, XattrTarget::Handle(handle), a),
            libc::SYS_fallocate => Plan::fail(Errno::EOPNOTSUPP),
            libc::SYS_flock => super::locks::flock(&rfd, arg_i32(a[1])),
            libc::SYS_getdents => Plan::fail(Errno::ENOSYS),
            _ => Plan::Native,
        }
    }

    /// The pure pump of a remote socket fd.
    fn pure_pump(&mut self, fd: i32) -> Option<u64> {
        self.t.remote_socket(fd).and_then(|s| s.pure_pump)
    }

    /// `--pure --net`: data calls on remote sockets go stop-and-wait. `None`
    /// when the call does not concern a pure remote socket.
    fn pure_socket_call(&mut self, nr: i64, a: [u64; 6]) -> Option<Plan> {
        let fd = arg_i32(a[0]);
        let count = |n: u64| u32::try_from(n.min(u64::from(MAX_IO))).unwrap_or(MAX_IO);
        match nr {
            libc::SYS_read | libc::SYS_readv | libc::SYS_recvfrom | libc::SYS_recvmsg => {
                let pump = self.pure_pump(fd)?;
                let (len, flags) = match nr {
                    libc::SYS_read => (a[2], 0),
                    libc::SYS_recvfrom => (a[2], arg_i32(a[3])),
                    libc::SYS_readv => (self.iov_total(a[1], a[2]), 0),
                    _ => (self.msg_iov_total(a[1]), arg_i32(a[2])),
                };
                if flags & libc::MSG_PEEK != 0 && len == 0 {
                    return Some(Plan::Native);
                }
                let wait = if flags & libc::MSG_DONTWAIT != 0 {
                    PureWait::DontWait
                } else if flags & libc::MSG_WAITALL != 0 {
                    PureWait::All
                } else {
                    PureWait::Any
                };
                let unread = u64::try_from(self.t.socket_unread(fd).unwrap_or(0)).unwrap_or(0);
                // Bytes already in the socket answer the call natively,
                // unless MSG_WAITALL asks for more than is there; so does a
                // socket the program shut down for reading (end of file).
                if unread > 0 && !(wait == PureWait::All && unread < len) {
                    return Some(Plan::Native);
                }
                if unread == 0 && self.t.socket_readable(fd) {
                    return Some(Plan::Native);
                }
                Some(Plan::PureRecv {
                    fd,
                    pump,
                    len: count(len),
                    wait,
                })
            }
            libc::SYS_write | libc::SYS_writev | libc::SYS_sendto | libc::SYS_sendmsg => {
                let pump = self.pure_pump(fd)?;
                let data = match nr {
                    libc::SYS_write | libc::SYS_sendto => self
                        .t
                        .read_bytes(a[1], usize::try_from(count(a[2])).unwrap_or(0)),
                    libc::SYS_writev => self.gather(a[1], a[2]),
                    _ => self.msg_gather(a[1]),
                };
                let flags = match nr {
                    libc::SYS_sendto => arg_i32(a[3]),
                    libc::SYS_sendmsg => arg_i32(a[2]),
                    _ => 0,
                };
                Some(match data {
                    Ok(data) => Plan::PureSend {
                        fd,
                        pump,
                        data,
                        dontwait: flags & libc::MSG_DONTWAIT != 0,
                    },
                    Err(e) => Plan::fail(e),
                })
            }
            libc::SYS_poll | libc::SYS_ppoll => {
                let n = usize::try_from(a[1].min(4096)).unwrap_or(0);
                let bytes = self.t.read_bytes(a[0], n * 8).ok()?;
                let fds: Vec<(i32, bool)> = bytes
                    .chunks_exact(8)
                    .filter(|p| {
                        i16::from_ne_bytes([p[4], p[5]]) & (libc::POLLIN | libc::POLLRDNORM) != 0
                    })
                    .map(|p| (i32::from_ne_bytes([p[0], p[1], p[2], p[3]]), false))
                    .collect();
                self.prefetch_plan(&fds)
            }
            libc::SYS_select | libc::SYS_pselect6 => {
                let nfds = usize::try_from(a[0].min(1024)).unwrap_or(0);
                if a[1] == 0 || nfds == 0 {
                    return None;
                }
                let bytes = self.t.read_bytes(a[1], nfds.div_ceil(64) * 8).ok()?;
                let fds: Vec<(i32, bool)> = (0..nfds)
                    .filter(|i| bytes[i / 8] & (1 << (i % 8)) != 0)
                    .filter_map(|i| Some((i32::try_from(i).ok()?, false)))
                    .collect();
                self.prefetch_plan(&fds)
            }
            libc::SYS_epoll_wait | libc::SYS_epoll_pwait | libc::SYS_epoll_pwait2 => {
                let fds = self.t.epoll_inputs(fd);
                self.prefetch_plan(&fds)
            }
            // `FIONREAD` counts what the remote socket holds: one round
            // trip brings it all into the program's socket, and the ioctl
            // then runs on it.
            libc::SYS_ioctl if a[1] == libc::FIONREAD => Some(Plan::PureRecv {
                fd,
                pump: self.pure_pump(fd)?,
                len: MAX_IO,
                wait: PureWait::Available,
            }),
            _ => None,
        }
    }

    /// A wait for input on `fds` (each with whether it is edge-triggered)
    /// starts one fetch for each remote socket that has nothing to read, so
    /// that it can become readable; an edge-triggered one needs new bytes
    /// to be reported again even when it has some.
    fn prefetch_plan(&mut self, fds: &[(i32, bool)]) -> Option<Plan> {
        let mut pumps = Vec::new();
        let mut udp = Vec::new();
        for &(fd, edge) in fds {
            let Some(sock) = self.t.remote_socket(fd) else {
                continue;
            };
            if !edge && self.t.socket_unread(fd).unwrap_or(0) != 0 {
                continue;
            }
            if let Some(pump) = sock.pure_pump {
                pumps.push(pump);
            }
            if let Some(id) = sock.udp {
                udp.push(id);
            }
        }
        (!pumps.is_empty() || !udp.is_empty()).then_some(Plan::Prefetch { pumps, udp })
    }

    fn iov_total(&mut self, addr: u64, count: u64) -> u64 {
        self.iovecs(addr, count)
            .map(|v| v.iter().map(|&(_, l)| l).fold(0u64, u64::saturating_add))
            .unwrap_or(0)
    }

    /// `(msg_iov, msg_iovlen)` of a `struct msghdr`.
    fn msg_iov(&mut self, msg: u64) -> Result<(u64, u64), Errno> {
        let b = self.t.read_bytes(msg, 56)?;
        let word = |o: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[o..o + 8]);
            u64::from_ne_bytes(w)
        };
        Ok((word(16), word(24)))
    }

    fn msg_iov_total(&mut self, msg: u64) -> u64 {
        self.msg_iov(msg)
            .map_or(0, |(iov, n)| self.iov_total(iov, n))
    }

    fn gather(&mut self, addr: u64, count: u64) -> Result<Vec<u8>, Errno> {
        let limit = usize::try_from(MAX_IO).unwrap_or(usize::MAX);
        let mut data = Vec::new();
        for (base, len) in self.iovecs(addr, count)? {
            let take = usize::try_from(len)
                .unwrap_or(usize::MAX)
                .min(limit - data.len());
            data.extend_from_slice(&self.t.read_bytes(base, take)?);
            if data.len() == limit {
                break;
            }
        }
        Ok(data)
    }

    fn msg_gather(&mut self, msg: u64) -> Result<Vec<u8>, Errno> {
        let (iov, n) = self.msg_iov(msg)?;
        self.gather(iov, n)
    }

    /// The IPv4/IPv6 address a `connect`/`bind` names on an INET socket,
    /// and whether the socket is TCP; `Err` with the plan for any other
    /// case (AF_UNIX, netlink and AF_UNSPEC stay local).
    fn inet_sockaddr(&mut self, fd: i32, addr: u64, len: u64) -> Result<(SockAddr, bool), Plan> {
        let len = usize::try_from(len.min(128)).unwrap_or(0);
        let bytes = self
            .t
            .read_bytes(addr, len)
            .map_err(|_| Plan::fail(Errno::EFAULT))?;
        let addr = layout::decode_sockaddr(&bytes).ok_or(Plan::Native)?;
        match self.t.socket_kind(fd) {
            Some((domain, ty)) if domain == libc::AF_INET || domain == libc::AF_INET6 => {
                Ok((addr, ty == libc::SOCK_STREAM))
            }
            _ => Err(Plan::Native),
        }
    }

    /// Socket calls that carry addresses, with `--net`.
    fn net_call(&mut self, nr: i64, a: [u64; 6]) -> Plan {
        let fd = arg_i32(a[0]);
        match nr {
            libc::SYS_connect | libc::SYS_bind => match self.inet_sockaddr(fd, a[1], a[2]) {
                Err(plan) => plan,
                Ok((addr, true)) if nr == libc::SYS_connect => {
                    let v6 = matches!(self.t.socket_kind(fd), Some((libc::AF_INET6, _)));
                    match ipv4_peer_refused(self.t, fd, v6, addr, true) {
                        Ok(()) => Plan::ConnectTcp { fd, addr },
                        Err(e) => Plan::fail(e),
                    }
                }
                Ok((addr, true)) => Plan::BindTcp { fd, addr },
                // Remote UDP is not built yet; sending it from this host
                // instead would betray the program.
                Ok((_, false)) => Plan::fail(Errno(libc::ENETUNREACH)),
            },
            libc::SYS_listen => match self.t.remote_listener(fd) {
                Some(listener) => Plan::ListenTcp {
                    fd,
                    listener,
                    backlog: u32::try_from(arg_i32(a[1]).max(0)).unwrap_or(0),
                },
                None => Plan::Native,
            },
            libc::SYS_accept | libc::SYS_accept4 => match self.t.remote_listener(fd) {
                // The program accepts natively from its loopback listener;
                // at the exit the peer address becomes the remote one.
                Some(_) => Plan::NativeRewritten {
                    paths: Vec::new(),
                    after: AfterNative::AcceptRemote {
                        addr: a[1],
                        len: a[2],
                    },
                },
                None => Plan::Native,
            },
            libc::SYS_setsockopt => self.setsockopt(fd, a),
            libc::SYS_getsockopt => self.getsockopt(fd, a),
            libc::SYS_sendto => match self.t.socket_kind(fd) {
                Some((domain, ty))
                    if (domain == libc::AF_INET || domain == libc::AF_INET6)
                        && ty != libc::SOCK_STREAM =>
                {
                    Plan::fail(Errno(libc::ENETUNREACH))
                }
                _ => Plan::Native,
            },
            _ => {
                let Some(sock) = self.t.remote_socket(fd) else {
                    return Plan::Native;
                };
                let addr = if nr == libc::SYS_getpeername {
                    match sock.peer {
                        Some(p) => p,
                        None => return Plan::fail(Errno(libc::ENOTCONN)),
                    }
                } else {
                    sock.local
                };
                let encoded = layout::encode_sockaddr(&addr);
                let Ok(len_bytes) = self.t.read_bytes(a[2], 4) else {
                    return Plan::fail(Errno::EFAULT);
                };
                let room =
                    u32::from_ne_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
                let room = usize::try_from(room).unwrap_or(0);
                let actual = u32::try_from(encoded.len()).unwrap_or(0);
                let shown = encoded[..encoded.len().min(room)].to_vec();
                Plan::Answer {
                    ret: 0,
                    writes: vec![(a[1], shown), (a[2], actual.to_ne_bytes().to_vec())],
                }
            }
        }
    }

    /// `getsockopt(fd, level, name, value, len)`, trapped for two options
    /// whose truth is the server's: `SO_ERROR` of a remote connect that
    /// ended after its caller went on (the kernel only saw rscq's stand-in
    /// reset), and `IPV6_V6ONLY` of a UDP socket bound dual-stack on the
    /// server (its local stand-in, bound to `::1`, is IPv6-only).
    fn getsockopt(&mut self, fd: i32, a: [u64; 6]) -> Plan {
        // Most calls are the program's own: they go on untouched before
        // anything is read from the program.
        let value = match (arg_i32(a[1]), arg_i32(a[2])) {
            (libc::SOL_SOCKET, libc::SO_ERROR) => match self.t.connect_error(fd) {
                Some(errno) => errno.0,
                None => return Plan::Native,
            },
            (libc::IPPROTO_IPV6, libc::IPV6_V6ONLY) if self.t.dual_stack(fd) => 0,
            _ => return Plan::Native,
        };
        let Ok(len_bytes) = self.t.read_bytes(a[4], 4) else {
            return Plan::fail(Errno::EFAULT);
        };
        let room = i32::from_ne_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        let Ok(room) = usize::try_from(room) else {
            return Plan::fail(Errno::EINVAL);
        };
        let bytes = value.to_ne_bytes();
        let shown = bytes.len().min(room);
        let shown_len = i32::try_from(shown).unwrap_or(0);
        Plan::Answer {
            ret: 0,
            writes: vec![
                (a[3], bytes[..shown].to_vec()),
                (a[4], shown_len.to_ne_bytes().to_vec()),
            ],
        }
    }

    /// `setsockopt(fd, level, name, value, len)`: an option the server's
    /// socket needs too, or `Native`.
    fn setsockopt(&mut self, fd: i32, a: [u64; 6]) -> Plan {
        let (level, name, len) = (arg_i32(a[1]), arg_i32(a[2]), a[4]);
        let Ok(value) = self
            .t
            .read_bytes(a[3], usize::try_from(len.min(8)).unwrap_or(0))
        else {
            return Plan::Native;
        };
        let Some(option) = layout::decode_sock_option(level, name, &value) else {
            return Plan::Native;
        };
        match self.t.socket_kind(fd) {
            Some((domain, ty))
                if (domain == libc::AF_INET || domain == libc::AF_INET6)
                    && ty == libc::SOCK_STREAM =>
            {
                Plan::SetSockOpt { fd, option }
            }
            _ => Plan::Native,
        }
    }

    fn iovecs(&mut self, addr: u64, count: u64) -> Result<Vec<(u64, u64)>, Errno> {
        if count > MAX_IOV {
            return Err(Errno::EINVAL);
        }
        let n = usize::try_from(count).map_err(|_| Errno::EINVAL)?;
        Ok(layout::decode_iovecs(&self.t.read_bytes(addr, n * 16)?))
    }

    fn fcntl(&mut self, rfd: &RemoteFd, cmd: i32, arg: u64) -> Plan {
        match cmd {
            libc::F_GETFL => Plan::Return(i64::from(rfd.flags | libc::O_LARGEFILE)),
            libc::F_SETFL => {
                let changeable =
                    libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME;
                let flags = (rfd.flags & !changeable) | (arg_i32(arg) & changeable);
                Plan::forward(
                    Request::SetFlags {
                        handle: rfd.handle,
                        flags: arg_i32(arg) & changeable,
                    },
                    Then::SetFlags {
                        key: rfd.key,
                        flags,
                    },
                )
            }
            libc::F_GETLK
            | libc::F_SETLK
            | libc::F_SETLKW
            | libc::F_OFD_GETLK
            | libc::F_OFD_SETLK
            | libc::F_OFD_SETLKW => {
                let tgid = self.t.tgid();
                super::locks::record(self.t, rfd, tgid, cmd, arg)
            }
            _ => Plan::Native,
        }
    }
}

/// Decides what to do with trapped syscall `nr` with arguments `args`.
pub fn plan(nr: i64, args: [u64; 6], fwd: &Forwarding, t: &mut impl Tracee) -> Plan {
    let mut p = Planner {
        mounts: &fwd.mounts,
        system_files: &fwd.system_files,
        t,
    };
    if fwd.net
        && let Some(plan) = super::udp::plan(nr, args, fwd.pure_net, false, p.t)
    {
        return plan;
    }
    if fwd.pure_net
        && let Some(plan) = p.pure_socket_call(nr, args)
    {
        return plan;
    }
    if !fwd.mounts.is_empty()
        && let Some(plan) = p.unix_socket_call(nr, args)
    {
        return plan;
    }
    if super::nr::NET_CALLS.iter().any(|(n, _)| *n == nr) || nr == libc::SYS_sendto {
        return if fwd.net {
            p.net_call(nr, args)
        } else {
            Plan::Native
        };
    }
    if nr == libc::SYS_uname {
        return if fwd.uname {
            Plan::forward(Request::Uname, Then::Uname { addr: args[0] })
        } else {
            Plan::Native
        };
    }
    if nr == libc::SYS_mmap {
        return match p.t.fd(arg_i32(args[4])) {
            FdKind::Remote(rfd) => super::mapping::plan(&rfd, args),
            FdKind::Local => Plan::Native,
        };
    }
    if nr == libc::SYS_close {
        return match p.t.fd(arg_i32(args[0])) {
            FdKind::Remote(rfd) if p.t.holds_record_locks() => {
                let owner = p.t.tgid().cast_unsigned();
                Plan::forward(
                    Request::ReleaseLocks {
                        owner,
                        handle: Some(rfd.handle),
                    },
                    Then::CloseAfterRelease,
                )
            }
            FdKind::Remote(rfd) if fwd.write_behind && !rfd.is_dir => Plan::forward(
                Request::FlushWrites { handle: rfd.handle },
                Then::CloseAfterFlush,
            ),
            _ => Plan::Native,
        };
    }
    if super::nr::FD_CALLS.iter().any(|(n, _)| *n == nr) {
        return p.fd_call(nr, args);
    }
    p.path_call(nr, args)
}

/// Lays out the reply to a forwarded call.
pub fn finish(then: Then, response: Response, mounts: &MountTable) -> Outcome {
    if let (Then::Readlink { addr, cap }, Ok(Reply::Data(target))) = (&then, &response) {
        let target = match target.first() {
            Some(b'/') => mounts.to_local(target).unwrap_or_else(|| target.clone()),
            _ => target.clone(),
        };
        let then = Then::Data {
            addr: *addr,
            cap: *cap,
            truncate: true,
        };
        return finish(then, Ok(Reply::Data(target)), mounts);
    }
    if let Then::Exec {
        copy,
        path_arg,
        argv_arg,
    } = then
    {
        return match response {
            Ok(reply) => Outcome::Exec {
                copy,
                path_arg,
                argv_arg,
                link: match reply {
                    Reply::Data(target) => Some(mounts.to_local(&target).unwrap_or(target)),
                    _ => None,
                },
            },
            Err(e) => Outcome::errno(e),
        };
    }
    if let Then::Map { flags } = then {
        return match response {
            Ok(Reply::Data(data)) => Outcome::MapFilled {
                args: super::mapping::anonymous_args(flags),
                data,
            },
            Ok(_) => Outcome::errno(Errno::EIO),
            Err(e) => Outcome::errno(e),
        };
    }
    if then == Then::CloseAfterRelease {
        // The fd is closed whatever the release gave.
        return Outcome::RunNative { error: None };
    }
    if let (Then::Lock { addr }, Ok(Reply::Lock(lock))) = (&then, &response) {
        return Outcome::Return {
            ret: 0,
            writes: super::locks::getlk_writes(*addr, lock),
        };
    }
    if then == Then::CloseAfterFlush {
        // The fd is closed whatever the flush gave, as the kernel does.
        return Outcome::RunNative {
            error: response.err(),
        };
    }
    if then == Then::BindSocketFile {
        return match response {
            // `bind` of a path that exists, as `unix_bind` answers.
            Err(Errno(libc::EEXIST)) => Outcome::errno(Errno(libc::EADDRINUSE)),
            Err(e) => Outcome::errno(e),
            // The length of a bare `sa_family_t`: autobind.
            Ok(_) => Outcome::RunNativeWith {
                args: [None, None, Some(2), None, None, None],
            },
        };
    }
    if then == Then::ConnectSocketFile {
        return Outcome::errno(match response {
            Err(e) => e,
            Ok(_) => Errno(libc::ECONNREFUSED),
        });
    }
    let reply = match response {
        Ok(r) => r,
        Err(e) => return Outcome::errno(e),
    };
    match (then, reply) {
        (Then::Zero, Reply::Done) => Outcome::ret(0),
        (Then::Replan, Reply::Done) => Outcome::Replan,
        (Then::FirstMessageSent { len_addr }, Reply::Count(n)) => Outcome::Return {
            ret: 1,
            writes: vec![(
                len_addr,
                u32::try_from(n).unwrap_or(u32::MAX).to_ne_bytes().to_vec(),
            )],
        },
        (
            Then::Open {
                local_path,
                flags,
                cloexec,
            },
            Reply::Opened { handle, stat },
        ) => Outcome::Placeholder {
            handle,
            stat,
            local_path,
            flags,
            cloexec,
        },
        (Then::Stat { addr, layout }, Reply::Stat(st)) => {
            let bytes = match layout {
                StatLayout::Stat => layout::encode_stat(&st),
                StatLayout::Statx => layout::encode_statx(&st),
            };
            Outcome::Return {
                ret: 0,
                writes: vec![(addr, bytes)],
            }
        }
        (
            Then::Data {
                addr,
                cap,
                truncate,
            },
            Reply::Data(mut data),
        ) => {
            let cap = usize::try_from(cap).unwrap_or(usize::MAX);
            if data.len() > cap {
                if !truncate {
                    return Outcome::errno(Errno::ERANGE);
                }
                data.truncate(cap);
            }
            let ret = len_i64(data.len());
            let writes = if data.is_empty() {
                Vec::new()
            } else {
                vec![(addr, data)]
            };
            Outcome::Return { ret, writes }
        }
        (Then::DataIov { iov }, Reply::Data(data)) => {
            let mut writes = Vec::new();
            let mut rest = data.as_slice();
            for (base, len) in iov {
                if rest.is_empty() {
                    break;
                }
                let n = usize::try_from(len).unwrap_or(usize::MAX).min(rest.len());
                let (chunk, tail) = rest.split_at(n);
                if n > 0 {
                    writes.push((base, chunk.to_vec()));
                }
                rest = tail;
            }
            Outcome::Return {
                ret: len_i64(data.len() - rest.len()),
                writes,
            }
        }
        (Then::Number, Reply::Count(n)) => Outcome::ret(i64::try_from(n).unwrap_or(i64::MAX)),
        (Then::Number, Reply::Offset(n)) => Outcome::ret(n),
        (Then::Number, Reply::Data(d)) => Outcome::ret(len_i64(d.len())),
        (Then::Dirents { addr, cap }, Reply::Dirents(entries)) => {
            let cap = usize::try_from(cap).unwrap_or(usize::MAX);
            let (bytes, fitted) = layout::encode_dirents(&entries, cap);
            if fitted == 0 && !entries.is_empty() {
                return Outcome::errno(Errno::EINVAL);
            }
            let ret = len_i64(bytes.len());
            let writes = if bytes.is_empty() {
                Vec::new()
            } else {
                vec![(addr, bytes)]
            };
            Outcome::Return { ret, writes }
        }
        (Then::Statfs { addr }, Reply::Statfs(s)) => Outcome::Return {
            ret: 0,
            writes: vec![(addr, layout::encode_statfs(&s))],
        },
        (Then::Uname { addr }, Reply::Uname(u)) => Outcome::Return {
            ret: 0,
            writes: vec![(addr, layout::encode_utsname(&u))],
        },
        (Then::Chdir { local_path }, Reply::Done) => Outcome::Chdir { local_path },
        (Then::SetFlags { key, flags }, Reply::Done) => Outcome::SetFlags { key, flags },
        // A reply of the wrong kind means a broken or hostile server; the
        // program gets an I/O error, never garbage.
        _ => Outcome::errno(Errno::EIO),
    }
}

#[cfg(test)]
mod proc_fd_tests {
    use super::proc_fd_reference;

    #[test]
    fn proc_fd_paths_name_the_fd() {
        assert_eq!(proc_fd_reference(b"/proc/self/fd/3"), Some((3, Vec::new())));
        assert_eq!(
            proc_fd_reference(b"/dev/fd/12/x/y"),
            Some((12, b"x/y".to_vec()))
        );
        assert_eq!(
            proc_fd_reference(b"/proc/thread-self/fd/0"),
            Some((0, Vec::new()))
        );
        assert_eq!(proc_fd_reference(b"/proc/self/fdinfo/3"), None);
        assert_eq!(proc_fd_reference(b"/proc/self/fd/x"), None);
    }
}
