//! What to do with one trapped syscall: let it run, answer it at once, or
//! forward it as a [`Request`] and lay the [`Reply`] out in the program's
//! memory afterwards.
//!
//! [`plan`] reads what it needs through the [`Tracee`] trait; [`finish`] is a
//! pure function of the reply. Neither touches ptrace, so both are tested on
//! plain values.
//!
//! This module owns the vocabulary every family shares (the [`Plan`],
//! [`Then`] and [`Outcome`] types, the [`Tracee`] trait, the `Planner`
//! state and argument helpers) and the layout of replies ([`finish`]);
//! [`plan`], the hand-off of a call to its families in the order the one
//! table ([`crate::syscall::nr`]) gives, is `crate::syscall::dispatch`'s. Each family's
//! planner lives in its own module (`crate::syscall::fs`,
//! `crate::syscall::net`); none of them may touch ptrace either.

use crate::errno::Errno;
use crate::proto::{
    DatagramKind, DirEntry, Handle, MAX_IO, RemotePath, Reply, Request, Response, SockAddr, Stat,
};
use crate::syscall::layout;
pub use crate::syscall::operation::{Operation, Waiting};
use crate::syscall::paths::{MountTable, RemoteIndex};
use crate::syscall::sockets::RemoteSocket;

pub use super::dispatch::{plan, plan_on};

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
    /// `SO_PROTOCOL` of a socket fd; `None` for other fds, or when it
    /// cannot be read.
    fn socket_protocol(&mut self, fd: i32) -> Option<i32>;
    /// The remote connection behind a socket fd, if it has one.
    fn remote_socket(&mut self, fd: i32) -> Option<RemoteSocket>;
    /// The server listener behind a socket fd, if it has one.
    fn remote_listener(&mut self, fd: i32) -> Option<u64>;
    /// Whether another fd of the program (in any of its processes) refers
    /// to the same open socket as fd, so that closing fd does not free it.
    fn socket_shared(&mut self, fd: i32) -> bool;
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
    /// The target of `path` if it names a symlink in the program's own
    /// (local) view, else `None`.
    fn local_link(&mut self, path: &[u8]) -> Option<Vec<u8>>;
    /// Whether the process may hold record locks on remote files (then
    /// each close of a remote file releases them, as the kernel's does).
    fn holds_record_locks(&mut self) -> bool;
    /// Whether `fd` is an open fd of the process (the kernel's `EBADF`
    /// check, for calls whose other fd is remote).
    fn is_open(&mut self, fd: i32) -> bool {
        fd >= 0
    }
    /// The shadow files of remote files that the process's shared mappings
    /// in `[addr, addr + len)` map (see [`super::mapping::shadows_in`]).
    fn shadow_maps(&mut self, addr: u64, len: u64) -> Vec<Vec<u8>> {
        let _ = (addr, len);
        Vec::new()
    }
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
    /// Writes to remote files may be held (`close` of a remote fd sends
    /// them first and reports their error; it stops in the tracer in both
    /// modes, for shared mappings of the file too).
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
    /// `Done` → the remote executable is copied to `copy`: run that (or,
    /// for a `#!` script, its interpreter on the program's path).
    Exec {
        copy: Vec<u8>,
        path_arg: u8,
        argv_arg: u8,
    },
    /// `Count(n)` of a server-side copy → n, and each offset the program
    /// gave (its address, its value; address 0 for none) moves by n.
    /// (Boxed: a rare call, and it would make every plan larger.)
    Copied {
        offsets: Box<[(u64, i64); 2]>,
    },
    /// `Data` (the path of the file's shadow) → run the `mmap` natively on
    /// the shadow, opened read-write if `writable`, else read-only.
    MapShadow {
        writable: bool,
    },
    /// `Lock` → an `F_GETLK` answer at `addr`.
    Lock {
        addr: u64,
    },
    /// `close(2)` of a remote fd once the process's record locks on its
    /// file are released, or of a socket once the server's is: the call
    /// then runs natively.
    CloseAfterRelease,
    /// `Data` → a `getsockopt` value: at most `room` bytes at `addr`, and
    /// the length written at `len_addr` (a `socklen_t`), as the kernel
    /// answers for a structure.
    SockOptValue {
        addr: u64,
        len_addr: u64,
        room: u32,
    },
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
    /// A call that can change the thread's credentials or umask returned:
    /// those kept for forwarded calls are read again.
    CredsChanged,
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
    /// A `socket` for an ICMP echo ("ping") or UDP-Lite socket was made a
    /// UDP socket (see `syscall::net::standin`): the fd it returned stands
    /// for one of that kind.
    DatagramStandIn(DatagramKind),
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
    /// A remote [`Operation`] on program fd `fd` (if it is on one): the
    /// tracer hands it to the engine with its own copy of the fd, and the
    /// thread waits as `wait` says (held, or asleep interruptibly).
    Remote {
        operation: Operation,
        fd: Option<i32>,
        wait: Waiting,
    },
    /// `execve` of a remote file: the tracer has it copied to a local file
    /// ([`Then::Exec`]), then runs it (or its `#!` interpreter).
    ExecRemote {
        path: RemotePath,
        /// The registers that hold the path and `argv`.
        path_arg: u8,
        argv_arg: u8,
    },
    /// Run natively on scratch memory.
    NativeScratch(Box<Scratch>),
}

impl Plan {
    pub(super) fn fail(e: Errno) -> Self {
        Self::Return(e.as_syscall_return())
    }
    pub(super) fn forward(request: Request, then: Then) -> Self {
        Self::Forward { request, then }
    }
    /// [`Plan::Remote`] of `operation` on program fd `fd`.
    pub(crate) fn remote(operation: Operation, fd: i32, wait: Waiting) -> Self {
        Self::Remote {
            operation,
            fd: Some(fd),
            wait,
        }
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
    /// Run the program's `mmap` on the shadow file at `path`.
    MapShadow {
        path: Vec<u8>,
        writable: bool,
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

pub(super) const AT_FDCWD: i32 = libc::AT_FDCWD;
const MAX_IOV: u64 = 1024;

pub(super) fn arg_i32(v: u64) -> i32 {
    // Syscalls take `int` arguments in the low 32 bits of the register.
    arg_u32(v).cast_signed()
}

pub(super) fn arg_u32(v: u64) -> u32 {
    u32::try_from(v & 0xffff_ffff).unwrap_or(u32::MAX)
}

pub(super) fn len_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The length of one data request for a buffer of `n` bytes: at most
/// `MAX_IO` (the program sees a short count).
pub(super) fn io_count(n: u64) -> u32 {
    u32::try_from(n.min(u64::from(MAX_IO))).unwrap_or(MAX_IO)
}

/// One trapped call being planned: the mounts and resolver files it is
/// judged against, and the stopped program it reads from.
pub(super) struct Planner<'a, T: Tracee> {
    pub(super) mounts: &'a MountTable,
    pub(super) system_files: &'a [SystemFileCopy],
    pub(super) t: &'a mut T,
    /// Whether the call follows a symlink in its path's last component
    /// (set per path call): a local symlink there that leads into a mount
    /// is then followed into it.
    pub(super) follow_last: bool,
    /// The remote the call goes to: that of the last remote fd looked up
    /// ([`Planner::fd`]) or remote path resolved, whichever came last (a
    /// path resolved against a remote dirfd ends where the path does).
    /// `None`: no mount or remote fd is involved (sockets, `uname`).
    pub(super) on: Option<RemoteIndex>,
}

impl<T: Tracee> Planner<'_, T> {
    /// What program fd `fd` is; a remote file's remote becomes the call's
    /// ([`Planner::on`]).
    pub(super) fn fd(&mut self, fd: i32) -> FdKind {
        let kind = self.t.fd(fd);
        if let FdKind::Remote(rfd) = &kind {
            self.on = Some(self.remote_of(rfd));
        }
        kind
    }

    /// The remote serving a remote fd: the one of the mount its path lies
    /// in (the path it was opened by, or for `O_TMPFILE` its directory),
    /// so the fd needs no index of its own.
    pub(super) fn remote_of(&self, rfd: &RemoteFd) -> RemoteIndex {
        self.mounts.remote_of(&rfd.path).unwrap_or(0)
    }

    /// The `struct iovec` array of `count` entries at `addr` (at most
    /// `UIO_MAXIOV`, as the kernel allows), read by file and socket calls.
    pub(super) fn iovecs(&mut self, addr: u64, count: u64) -> Result<Vec<(u64, u64)>, Errno> {
        if count > MAX_IOV {
            return Err(Errno::EINVAL);
        }
        let n = usize::try_from(count).map_err(|_| Errno::EINVAL)?;
        Ok(layout::decode_iovecs(&self.t.read_bytes(addr, n * 16)?))
    }
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
    if let Then::MapShadow { writable } = then {
        return match response {
            Ok(Reply::Data(path)) => Outcome::MapShadow { path, writable },
            Ok(_) => Outcome::errno(Errno::EIO),
            Err(e) => Outcome::errno(e),
        };
    }
    if let (Then::Copied { offsets }, Ok(Reply::Count(n))) = (&then, &response) {
        let n = i64::try_from(*n).unwrap_or(i64::MAX);
        let writes = offsets
            .iter()
            .filter(|(addr, _)| *addr != 0)
            .map(|(addr, at)| (*addr, at.saturating_add(n).to_ne_bytes().to_vec()))
            .collect();
        return Outcome::Return { ret: n, writes };
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
    match response {
        Ok(reply) => lay_out(then, reply),
        Err(e) => Outcome::errno(e),
    }
}

/// A successful reply, as `then` says it goes into the program.
fn lay_out(then: Then, reply: Reply) -> Outcome {
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
            Reply::Data(data),
        ) => copy_data(addr, cap, truncate, data),
        (Then::DataIov { iov }, Reply::Data(data)) => scatter(iov, &data),
        (Then::Number, Reply::Count(n)) => Outcome::ret(i64::try_from(n).unwrap_or(i64::MAX)),
        (Then::Number, Reply::Offset(n)) => Outcome::ret(n),
        (Then::Number, Reply::Data(d)) => Outcome::ret(len_i64(d.len())),
        (Then::Dirents { addr, cap }, Reply::Dirents(entries)) => dirents(addr, cap, &entries),
        (Then::Statfs { addr }, Reply::Statfs(s)) => Outcome::Return {
            ret: 0,
            writes: vec![(addr, layout::encode_statfs(&s))],
        },
        (Then::Uname { addr }, Reply::Uname(u)) => Outcome::Return {
            ret: 0,
            writes: vec![(addr, layout::encode_utsname(&u))],
        },
        (
            Then::SockOptValue {
                addr,
                len_addr,
                room,
            },
            Reply::Data(mut value),
        ) => {
            value.truncate(usize::try_from(room).unwrap_or(usize::MAX));
            let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
            Outcome::Return {
                ret: 0,
                writes: vec![(addr, value), (len_addr, len.to_ne_bytes().to_vec())],
            }
        }
        (Then::Chdir { local_path }, Reply::Done) => Outcome::Chdir { local_path },
        (Then::SetFlags { key, flags }, Reply::Done) => Outcome::SetFlags { key, flags },
        // A reply of the wrong kind means a broken or hostile server; the
        // program gets an I/O error, never garbage.
        _ => Outcome::errno(Errno::EIO),
    }
}

/// `Then::Data`: copied whole, or cut to `cap` (`truncate`) or ERANGE.
fn copy_data(addr: u64, cap: u64, truncate: bool, mut data: Vec<u8>) -> Outcome {
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

/// `Then::DataIov`: the bytes in order over the iovecs, as far as they go.
fn scatter(iov: Vec<(u64, u64)>, data: &[u8]) -> Outcome {
    let mut writes = Vec::new();
    let mut rest = data;
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

/// `Then::Dirents`: as many whole entries as fit in `cap` bytes.
fn dirents(addr: u64, cap: u64, entries: &[DirEntry]) -> Outcome {
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let (bytes, fitted) = layout::encode_dirents(entries, cap);
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

#[cfg(test)]
mod tests;
