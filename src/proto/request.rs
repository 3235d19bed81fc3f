//! [`Request`], one forwarded operation, and the [`Reply`] that answers it.
//!
//! Pure: types and what a request means for caches (which ones change
//! files); a change here is a [`super::PROTOCOL_VERSION`] bump.

use serde::{Deserialize, Serialize};

use super::{
    DatagramKind, DirEntry, EntryMeta, FileLock, Handle, LockOwner, LookedUp, Lookup, OpenedDir,
    OptionTarget, RemotePath, SockAddr, SockOption, Stat, Statfs, SystemFile, TimeUpdate, Utsname,
    XattrTarget,
};

use crate::errno::Errno;

/// One forwarded operation. Numeric flags use the Linux x86_64 values of the
/// syscall the operation comes from; the server checks them before use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Request {
    /// `openat(2)`; replies [`Reply::Opened`].
    Open {
        path: RemotePath,
        flags: i32,
        mode: u32,
    },
    /// `openat(2)` of a directory about to be listed: replies
    /// [`Reply::OpenedDir`] with the same listing [`Request::GetdentsPlus`]
    /// would bring, or [`Reply::Opened`] when it is not a directory.
    OpenPlus {
        path: RemotePath,
        flags: i32,
        mode: u32,
    },
    /// `openat(2)` of a file about to be read (`O_RDONLY`, neither
    /// creating nor truncating): replies [`Reply::OpenedRead`] with the
    /// file's bytes when it is a regular file of at most `max` bytes (at
    /// most [`super::MAX_IO`]), else [`Reply::Opened`] as
    /// [`Request::Open`] would.
    OpenRead {
        path: RemotePath,
        flags: i32,
        mode: u32,
        max: u32,
    },
    /// The last local reference to a handle went away.
    Close { handle: Handle },
    /// `read(2)` at the handle's offset; replies [`Reply::Data`].
    Read { handle: Handle, len: u32 },
    /// `pread64(2)`; replies [`Reply::Data`].
    Pread {
        handle: Handle,
        len: u32,
        offset: i64,
    },
    /// `write(2)`; replies [`Reply::Count`].
    Write {
        handle: Handle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// `pwrite64(2)`; replies [`Reply::Count`].
    Pwrite {
        handle: Handle,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
        offset: i64,
    },
    /// `lseek(2)`; replies [`Reply::Offset`].
    Lseek {
        handle: Handle,
        offset: i64,
        whence: i32,
    },
    /// `fsync(2)` or `fdatasync(2)`.
    Fsync { handle: Handle, data_only: bool },
    /// `fstat(2)`; replies [`Reply::Stat`].
    Fstat { handle: Handle },
    /// `getdents64(2)` with a buffer of `bytes`; replies [`Reply::Dirents`].
    Getdents { handle: Handle, bytes: u32 },
    /// Reads the rest of a directory, up to [`MAX_DIRENTS_BYTES`](super::MAX_DIRENTS_BYTES) of
    /// records, each with its [`EntryMeta`]; replies [`Reply::DirentsPlus`].
    GetdentsPlus { handle: Handle },
    /// A lookup (`stat`, `access`, `readlink`, a read-only `open`) and, in
    /// the same reply, the listing of `dir` with each entry's `lstat` and
    /// symlink target (up to [`MAX_LISTED_ENTRIES`](super::MAX_LISTED_ENTRIES)); replies
    /// [`Reply::LookedUp`]. `dir` is opened without following any symlink
    /// (its listing is [`DirListing::Unavailable`](super::DirListing::Unavailable) otherwise) and must be
    /// searchable by the caller.
    LookupAndList {
        dir: RemotePath,
        // Boxed in tests: the whole `Request` strategy lives on the stack.
        #[cfg_attr(
            test,
            proptest(
                strategy = "proptest::strategy::Strategy::boxed(proptest::prelude::any::<Lookup>())"
            )
        )]
        lookup: Lookup,
    },
    /// `fcntl(F_SETFL)`: only `O_APPEND`, `O_NONBLOCK`, `O_DIRECT`, `O_NOATIME` matter.
    SetFlags { handle: Handle, flags: i32 },
    /// `ftruncate(2)`.
    Ftruncate { handle: Handle, len: i64 },
    /// `fchmod(2)`.
    Fchmod { handle: Handle, mode: u32 },
    /// `fchown(2)`; `u32::MAX` leaves an id unchanged.
    Fchown { handle: Handle, uid: u32, gid: u32 },
    /// `futimens(3)`.
    Futimens {
        handle: Handle,
        times: [TimeUpdate; 2],
    },
    /// `fstatfs(2)`; replies [`Reply::Statfs`].
    Fstatfs { handle: Handle },

    /// `stat(2)` (`follow`) or `lstat(2)`; replies [`Reply::Stat`].
    Stat { path: RemotePath, follow: bool },
    /// `stat` plus the [`PREFETCHED_XATTRS`](super::PREFETCHED_XATTRS) of the same object, which `ls -l`
    /// asks for next; replies [`Reply::StatPlus`].
    StatPlus { path: RemotePath, follow: bool },
    /// `faccessat2(2)`; `flags` may hold `AT_EACCESS` and `AT_SYMLINK_NOFOLLOW`.
    Access {
        path: RemotePath,
        mode: i32,
        flags: i32,
    },
    /// `readlink(2)`; replies [`Reply::Data`] with the whole target.
    Readlink { path: RemotePath },
    /// `mkdir(2)`.
    Mkdir { path: RemotePath, mode: u32 },
    /// `mknodat(2)`: `mode` holds the file type as well as the permission
    /// bits; `dev` is the call's own 32-bit device number.
    Mknod {
        path: RemotePath,
        mode: u32,
        dev: u32,
    },
    /// `rmdir(2)`.
    Rmdir { path: RemotePath },
    /// `unlink(2)`.
    Unlink { path: RemotePath },
    /// `renameat2(2)`; `flags` may hold `RENAME_NOREPLACE` and `RENAME_EXCHANGE`.
    Rename {
        from: RemotePath,
        to: RemotePath,
        flags: u32,
    },
    /// `linkat(2)`; `follow` is `AT_SYMLINK_FOLLOW`.
    Link {
        from: RemotePath,
        to: RemotePath,
        follow: bool,
    },
    /// `symlink(2)`: `target` is stored as is, it is not a path we resolve.
    Symlink {
        #[serde(with = "serde_bytes")]
        target: Vec<u8>,
        path: RemotePath,
    },
    /// `chmod(2)` / `fchmodat(2)`.
    Chmod {
        path: RemotePath,
        mode: u32,
        follow: bool,
    },
    /// `chown(2)` / `lchown(2)`; `u32::MAX` leaves an id unchanged.
    Chown {
        path: RemotePath,
        uid: u32,
        gid: u32,
        follow: bool,
    },
    /// `utimensat(2)` on a path.
    Utimens {
        path: RemotePath,
        times: [TimeUpdate; 2],
        follow: bool,
    },
    /// `truncate(2)`.
    Truncate { path: RemotePath, len: i64 },
    /// `statfs(2)`; replies [`Reply::Statfs`].
    Statfs { path: RemotePath },
    /// `chdir(2)` check: succeeds when `path` is a searchable directory.
    CheckDir { path: RemotePath },

    /// `getxattr(2)` family; `size == 0` asks for the size only.
    /// Replies [`Reply::Data`] or, for a size query, [`Reply::Count`].
    GetXattr {
        target: XattrTarget,
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        size: u32,
    },
    /// `listxattr(2)` family, with the same size convention.
    ListXattr { target: XattrTarget, size: u32 },
    /// `setxattr(2)` family.
    SetXattr {
        target: XattrTarget,
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
        flags: i32,
    },
    /// `removexattr(2)` family.
    RemoveXattr {
        target: XattrTarget,
        #[serde(with = "serde_bytes")]
        name: Vec<u8>,
    },

    /// `uname(2)`; replies [`Reply::Uname`].
    Uname,

    /// Reads one of the server's own system files; replies [`Reply::Data`].
    ReadSystemFile { file: SystemFile },
    /// `connect(2)` of a TCP socket on the server. Replies
    /// [`Reply::TcpConnected`]; after that reply the same QUIC stream carries
    /// the connection's bytes in both directions, as records
    /// (`super::segment`): an end record means `shutdown(SHUT_WR)`, and
    /// the stream finishes once both sides have ended.
    TcpConnect {
        addr: SockAddr,
        /// Stop-and-wait: the stream carries [`PureOp`](super::PureOp)/[`PureReply`](super::PureReply)
        /// frames instead of the connection's bytes (`--pure`).
        pure: bool,
        /// Options the program set on its socket before connecting.
        options: Vec<SockOption>,
        /// The program bound its socket first: the server's bound socket
        /// ([`Reply::TcpBound`]'s id) connects, so the connection leaves
        /// from the bound address.
        bound: Option<u64>,
    },
    /// `bind(2)` of a TCP socket on the server, with the socket options that
    /// must precede it. Replies [`Reply::TcpBound`].
    TcpBind {
        addr: SockAddr,
        reuse_addr: bool,
        reuse_port: bool,
        v6_only: Option<bool>,
        /// Other options the program set before binding; connections the
        /// listener accepts inherit them.
        options: Vec<SockOption>,
    },
    /// `listen(2)` on a bound socket. Each connection it accepts arrives as
    /// a server-opened stream starting with [`Incoming`](super::Incoming).
    TcpListen {
        listener: u64,
        backlog: u32,
        /// Accepted connections run stop-and-wait, as for [`Request::TcpConnect`].
        pure: bool,
    },
    /// The program closed its listening socket.
    TcpUnbind { listener: u64 },
    /// `socket` + `bind(2)` of a UDP socket on the server (a wildcard
    /// address for a socket the program never bound). Replies
    /// [`Reply::UdpBound`]; after that reply the same QUIC stream carries
    /// [`UdpOp`](super::UdpOp) frames to the server and [`UdpEvent`](super::UdpEvent) frames back, and a
    /// finished stream closes the socket.
    UdpBind {
        addr: SockAddr,
        reuse_addr: bool,
        reuse_port: bool,
        v6_only: Option<bool>,
        /// Stop-and-wait (`--pure`): the server receives only when asked
        /// ([`UdpOp::Recv`](super::UdpOp::Recv)) and answers every send.
        pure: bool,
        /// The server socket's protocol: UDP, ICMP echo or UDP-Lite.
        kind: DatagramKind,
    },
    /// A `close(2)` of one of the program's fds for the handle: rscq sends
    /// the writes it holds for it and answers with their error, if any.
    /// It never needs the server, which answers `Done`.
    FlushWrites { handle: Handle },
    /// `setsockopt(2)` on a connected or listening remote socket. Replies
    /// [`Reply::Done`].
    TcpSetOption {
        target: OptionTarget,
        option: SockOption,
    },
    /// `flock(2)` on the open file `handle`: `op` is `LOCK_SH`, `LOCK_EX`
    /// or `LOCK_UN` (never `LOCK_NB`: without `wait` the server never
    /// waits). With `wait`, a conflicting lock is waited for until it goes
    /// or a [`Request::CancelWait`] names the same number; a cancelled
    /// wait replies EINTR. Replies [`Reply::Done`].
    Flock {
        handle: Handle,
        op: i32,
        wait: Option<u64>,
    },
    /// `fcntl(2)` record locks on the file `handle` names, held by `owner`:
    /// `F_SETLK` (or, with `wait`, `F_SETLKW`) when `set`, else `F_GETLK`,
    /// which replies [`Reply::Lock`]. `set` replies [`Reply::Done`].
    RecordLock {
        handle: Handle,
        owner: LockOwner,
        lock: FileLock,
        set: bool,
        wait: Option<u64>,
    },
    /// The process `owner` closed an fd of the file `handle` names (its
    /// POSIX locks on that file go), or exited (`handle` is `None`: all its
    /// POSIX locks go). Replies [`Reply::Done`].
    ReleaseLocks { owner: u32, handle: Option<Handle> },
    /// `copy_file_range(2)` (or `sendfile(2)`) from `from` to `to`, both
    /// remote: the bytes never leave the server. An offset of `None` is the
    /// handle's own file offset, which the copy moves. Replies
    /// [`Reply::Count`].
    CopyRange {
        from: Handle,
        from_offset: Option<i64>,
        to: Handle,
        to_offset: Option<i64>,
        len: u64,
    },
    /// `fallocate(2)` on `handle`: `mode` as the program gave it. Replies
    /// [`Reply::Done`].
    Fallocate {
        handle: Handle,
        mode: i32,
        offset: i64,
        len: i64,
    },
    /// Stop the wait of the request that carries `wait`. Replies
    /// [`Reply::Done`] at once; the waiting request then replies on its
    /// own (EINTR, or its result if the lock came first).
    CancelWait { wait: u64 },
    /// Open the regular file of `handle` again, as a new open file
    /// description (the access mode of `flags`, and its `O_APPEND`,
    /// `O_TRUNC`, `O_NONBLOCK`, `O_NOATIME`, `O_SYNC`, `O_DSYNC`; other
    /// bits ignored): the handle a mapping's shadow reads and writes back
    /// through, which outlives the program's own fds and shares no `flock`
    /// with them, and the program's open of `/proc/self/fd/N`. Replies
    /// [`Reply::Opened`].
    Reopen { handle: Handle, flags: i32 },
    /// After a server restart, the handle number `handle` the client knew
    /// a file by, given again in the new session: `path` opened with
    /// `flags` (never creating or truncating), checked to be the same file
    /// (`dev`, `ino` as the first open's stat said) and moved to `offset`
    /// (`None`: its end). With `path` `None`, or when the file is gone or
    /// another one, the number names a stale file: every use but `Close`
    /// fails with `ESTALE`. Replies [`Reply::Done`], or `ESTALE`.
    Reattach {
        handle: Handle,
        path: Option<RemotePath>,
        flags: i32,
        dev: (u32, u32),
        ino: u64,
        offset: Option<i64>,
    },
    /// `linkat(2)` of the open file `handle` (an `O_TMPFILE` file, or any
    /// other) to the new name `to`. With `empty_path` as the program's
    /// `linkat(fd, "", .., AT_EMPTY_PATH)`, which the kernel allows only
    /// with `CAP_DAC_READ_SEARCH`; otherwise as its
    /// `linkat(AT_FDCWD, "/proc/self/fd/N", .., AT_SYMLINK_FOLLOW)`, which
    /// needs no privilege.
    LinkHandle {
        handle: Handle,
        to: RemotePath,
        empty_path: bool,
    },
    /// `getsockopt(TCP_INFO)` of the remote connection from `local` to
    /// `peer` (its addresses as the server sees them): replies
    /// [`Reply::Data`], the server socket's `struct tcp_info`.
    TcpGetInfo { local: SockAddr, peer: SockAddr },
}

impl Request {
    /// Whether the request can change a file or directory of the export:
    /// what `--read-only` refuses, and what makes any answer rscq holds
    /// about a file stale.
    pub fn changes_files(&self) -> bool {
        match self {
            Request::Open { flags, .. }
            | Request::OpenPlus { flags, .. }
            | Request::OpenRead { flags, .. }
            | Request::LookupAndList {
                lookup: Lookup::Open { flags, .. } | Lookup::OpenRead { flags, .. },
                ..
            } => {
                // `O_PATH` ignores the rest; truncating happens even with
                // `O_RDONLY`.
                flags & libc::O_PATH == 0
                    && (flags & libc::O_ACCMODE != libc::O_RDONLY
                        || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
                        || flags & libc::O_TMPFILE == libc::O_TMPFILE)
            }
            Request::Reopen { flags, .. } | Request::Reattach { flags, .. } => {
                flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
            }
            Request::Write { .. }
            | Request::Pwrite { .. }
            | Request::Ftruncate { .. }
            | Request::Fchmod { .. }
            | Request::Fchown { .. }
            | Request::Futimens { .. }
            | Request::Mkdir { .. }
            | Request::Mknod { .. }
            | Request::Rmdir { .. }
            | Request::Unlink { .. }
            | Request::Rename { .. }
            | Request::Link { .. }
            | Request::LinkHandle { .. }
            | Request::Symlink { .. }
            | Request::Chmod { .. }
            | Request::Chown { .. }
            | Request::Utimens { .. }
            | Request::Truncate { .. }
            | Request::SetXattr { .. }
            | Request::RemoveXattr { .. }
            | Request::Fallocate { .. }
            | Request::CopyRange { .. } => true,
            Request::Close { .. }
            | Request::Read { .. }
            | Request::Pread { .. }
            | Request::Lseek { .. }
            | Request::Fsync { .. }
            | Request::Fstat { .. }
            | Request::Getdents { .. }
            | Request::SetFlags { .. }
            | Request::Fstatfs { .. }
            | Request::Stat { .. }
            | Request::StatPlus { .. }
            | Request::Access { .. }
            | Request::Readlink { .. }
            | Request::Statfs { .. }
            | Request::CheckDir { .. }
            | Request::GetXattr { .. }
            | Request::ListXattr { .. }
            | Request::Uname
            | Request::ReadSystemFile { .. }
            | Request::GetdentsPlus { .. }
            | Request::LookupAndList { .. }
            | Request::FlushWrites { .. }
            | Request::TcpConnect { .. }
            | Request::TcpBind { .. }
            | Request::TcpListen { .. }
            | Request::TcpUnbind { .. }
            | Request::UdpBind { .. }
            | Request::TcpSetOption { .. }
            | Request::TcpGetInfo { .. }
            | Request::Flock { .. }
            | Request::RecordLock { .. }
            | Request::ReleaseLocks { .. }
            | Request::CancelWait { .. } => false,
        }
    }

    /// The one open file the request acts on, if it names exactly one: what
    /// the engine's write-behind barriers and caches are scoped by. `None`
    /// for path calls, socket calls, and the calls that name two open files
    /// or act for a lock owner ([`Request::CopyRange`],
    /// [`Request::ReleaseLocks`]). The match is exhaustive so that a new
    /// request must say which open file it names.
    pub fn open_file(&self) -> Option<Handle> {
        match self {
            Request::Close { handle }
            | Request::Read { handle, .. }
            | Request::Pread { handle, .. }
            | Request::Write { handle, .. }
            | Request::Pwrite { handle, .. }
            | Request::Lseek { handle, .. }
            | Request::Fsync { handle, .. }
            | Request::Fstat { handle }
            | Request::Getdents { handle, .. }
            | Request::GetdentsPlus { handle }
            | Request::SetFlags { handle, .. }
            | Request::Ftruncate { handle, .. }
            | Request::Fchmod { handle, .. }
            | Request::Fchown { handle, .. }
            | Request::Futimens { handle, .. }
            | Request::Fstatfs { handle }
            | Request::FlushWrites { handle }
            | Request::Flock { handle, .. }
            | Request::RecordLock { handle, .. }
            | Request::Fallocate { handle, .. }
            | Request::Reopen { handle, .. }
            | Request::Reattach { handle, .. }
            | Request::LinkHandle { handle, .. } => Some(*handle),
            Request::GetXattr { target, .. }
            | Request::ListXattr { target, .. }
            | Request::SetXattr { target, .. }
            | Request::RemoveXattr { target, .. } => match target {
                XattrTarget::Handle(h) => Some(*h),
                XattrTarget::Path { .. } => None,
            },
            Request::Open { .. }
            | Request::OpenPlus { .. }
            | Request::OpenRead { .. }
            | Request::LookupAndList { .. }
            | Request::Stat { .. }
            | Request::StatPlus { .. }
            | Request::Access { .. }
            | Request::Readlink { .. }
            | Request::Mkdir { .. }
            | Request::Mknod { .. }
            | Request::Rmdir { .. }
            | Request::Unlink { .. }
            | Request::Rename { .. }
            | Request::Link { .. }
            | Request::Symlink { .. }
            | Request::Chmod { .. }
            | Request::Chown { .. }
            | Request::Utimens { .. }
            | Request::Truncate { .. }
            | Request::Statfs { .. }
            | Request::CheckDir { .. }
            | Request::Uname
            | Request::ReadSystemFile { .. }
            | Request::TcpConnect { .. }
            | Request::TcpBind { .. }
            | Request::TcpListen { .. }
            | Request::TcpUnbind { .. }
            | Request::UdpBind { .. }
            | Request::TcpSetOption { .. }
            | Request::TcpGetInfo { .. }
            | Request::ReleaseLocks { .. }
            | Request::CopyRange { .. }
            | Request::CancelWait { .. } => None,
        }
    }

    /// Whether the server may run the request before the client's TLS
    /// handshake is complete, that is on data that may be a replay of
    /// another connection's 0-RTT flight: only reads that neither change
    /// nor create anything on the server (no file, no open handle, no file
    /// offset, no socket, no lock) and so give the same effect however
    /// often they run. Everything else waits for the handshake, which a
    /// replay cannot complete. The match is exhaustive so that a new
    /// request must say which it is; a request that
    /// [`changes_files`](Request::changes_files) is never one.
    pub fn safe_before_handshake(&self) -> bool {
        match self {
            Request::Stat { .. }
            | Request::StatPlus { .. }
            | Request::Access { .. }
            | Request::Readlink { .. }
            | Request::Statfs { .. }
            | Request::CheckDir { .. }
            | Request::GetXattr { .. }
            | Request::ListXattr { .. }
            | Request::Uname
            | Request::ReadSystemFile { .. }
            | Request::Fstat { .. }
            | Request::Fstatfs { .. }
            | Request::Pread { .. } => !self.changes_files(),
            // An open makes a handle (and opening a FIFO or a device acts);
            // `Read`, `Getdents` and `Lseek` move an offset; the rest
            // change files, locks or sockets, or reach other hosts.
            Request::Open { .. }
            | Request::OpenPlus { .. }
            | Request::OpenRead { .. }
            | Request::LookupAndList { .. }
            | Request::Close { .. }
            | Request::Read { .. }
            | Request::Getdents { .. }
            | Request::GetdentsPlus { .. }
            | Request::Lseek { .. }
            | Request::Fsync { .. }
            | Request::SetFlags { .. }
            | Request::Write { .. }
            | Request::Pwrite { .. }
            | Request::Ftruncate { .. }
            | Request::Fchmod { .. }
            | Request::Fchown { .. }
            | Request::Futimens { .. }
            | Request::Mkdir { .. }
            | Request::Mknod { .. }
            | Request::Rmdir { .. }
            | Request::Unlink { .. }
            | Request::Rename { .. }
            | Request::Link { .. }
            | Request::LinkHandle { .. }
            | Request::Symlink { .. }
            | Request::Chmod { .. }
            | Request::Chown { .. }
            | Request::Utimens { .. }
            | Request::Truncate { .. }
            | Request::SetXattr { .. }
            | Request::RemoveXattr { .. }
            | Request::Fallocate { .. }
            | Request::CopyRange { .. }
            | Request::FlushWrites { .. }
            | Request::TcpConnect { .. }
            | Request::TcpBind { .. }
            | Request::TcpListen { .. }
            | Request::TcpUnbind { .. }
            | Request::UdpBind { .. }
            | Request::TcpSetOption { .. }
            | Request::TcpGetInfo { .. }
            | Request::Flock { .. }
            | Request::RecordLock { .. }
            | Request::ReleaseLocks { .. }
            | Request::CancelWait { .. }
            | Request::Reopen { .. }
            | Request::Reattach { .. } => false,
        }
    }

    /// The wait number of a request that may wait (a lock).
    pub fn wait_number(&self) -> Option<u64> {
        match self {
            Request::Flock { wait, .. } | Request::RecordLock { wait, .. } => *wait,
            _ => None,
        }
    }

    /// A lock request: the point where another process's writes must
    /// become visible and this one's must reach the server (sqlite writes,
    /// unlocks, and expects the next locker to read what it wrote), so
    /// held writes go first and cached reads and stats are dropped.
    pub fn is_coherence_point(&self) -> bool {
        matches!(
            self,
            Request::Flock { .. } | Request::RecordLock { .. } | Request::ReleaseLocks { .. }
        )
    }
}

/// A successful result. Which variant answers which request is documented on
/// [`Request`]; anything else is a protocol error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Reply {
    Done,
    Opened {
        handle: Handle,
        stat: Stat,
    },
    /// The answer to [`Request::OpenRead`] of a small regular file: the
    /// open, and the file's bytes from offset 0 as one `pread` of the
    /// request's `max` bytes gave them (fewer: the file ends there).
    OpenedRead {
        handle: Handle,
        stat: Stat,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// An opened directory with its listing (boxed: it is rare and large).
    OpenedDir(Box<OpenedDir>),
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    Count(u64),
    Offset(i64),
    Stat(Stat),
    Statfs(Statfs),
    Dirents(Vec<DirEntry>),
    /// Entries with their metadata; `complete` when the directory's end was
    /// reached.
    DirentsPlus {
        entries: Vec<(DirEntry, EntryMeta)>,
        complete: bool,
    },
    Uname(Utsname),
    TcpConnected {
        local: SockAddr,
        peer: SockAddr,
    },
    TcpBound {
        listener: u64,
        local: SockAddr,
    },
    UdpBound {
        local: SockAddr,
    },
    StatPlus {
        stat: Stat,
        xattrs: Vec<Result<Vec<u8>, Errno>>,
    },
    /// The answer to [`Request::LookupAndList`] (boxed: it is large).
    LookedUp(
        #[cfg_attr(
            test,
            proptest(
                strategy = "proptest::strategy::Strategy::boxed(proptest::prelude::any::<Box<LookedUp>>())"
            )
        )]
        Box<LookedUp>,
    ),
    /// The answer to an `F_GETLK`: the first conflicting lock, or the
    /// request's lock with `kind` `F_UNLCK` when none conflicts.
    Lock(FileLock),
}

/// What the server sends back for one request.
pub type Response = Result<Reply, Errno>;

#[cfg(test)]
mod tests {
    use super::*;

    fn rp(s: &str) -> RemotePath {
        RemotePath(s.as_bytes().to_vec())
    }

    #[test]
    fn only_reads_that_create_nothing_may_run_before_the_handshake() {
        let h = Handle(3);
        for req in [
            Request::Stat {
                path: rp("/a"),
                follow: true,
            },
            Request::Readlink { path: rp("/l") },
            Request::Uname,
            Request::Pread {
                handle: h,
                len: 10,
                offset: 0,
            },
        ] {
            assert!(req.safe_before_handshake(), "{req:?}");
        }
        for req in [
            // Even read-only: a handle is made, and a FIFO's open acts.
            Request::Open {
                path: rp("/a"),
                flags: libc::O_RDONLY,
                mode: 0,
            },
            // Moves the file offset: running it twice reads other bytes.
            Request::Read { handle: h, len: 10 },
            Request::Unlink { path: rp("/a") },
            Request::Write {
                handle: h,
                data: vec![1],
            },
            Request::Mkdir {
                path: rp("/d"),
                mode: 0o755,
            },
            Request::Close { handle: h },
        ] {
            assert!(!req.safe_before_handshake(), "{req:?}");
        }
    }

    proptest::proptest! {
        #[test]
        fn nothing_that_changes_files_runs_before_the_handshake(req in proptest::prelude::any::<Request>()) {
            proptest::prop_assert!(!(req.safe_before_handshake() && req.changes_files()));
        }
    }

    #[test]
    fn open_file_names_the_one_handle_a_call_acts_on() {
        let h = Handle(9);
        for req in [
            Request::Close { handle: h },
            Request::Pread {
                handle: h,
                len: 1,
                offset: 0,
            },
            Request::Fallocate {
                handle: h,
                mode: 0,
                offset: 0,
                len: 1,
            },
            Request::GetXattr {
                target: XattrTarget::Handle(h),
                name: b"user.a".to_vec(),
                size: 0,
            },
        ] {
            assert_eq!(req.open_file(), Some(h), "{req:?}");
        }
        for req in [
            Request::Stat {
                path: rp("/a"),
                follow: true,
            },
            Request::GetXattr {
                target: XattrTarget::Path {
                    path: rp("/a"),
                    follow: true,
                },
                name: b"user.a".to_vec(),
                size: 0,
            },
            Request::CopyRange {
                from: h,
                from_offset: None,
                to: Handle(10),
                to_offset: None,
                len: 1,
            },
            Request::ReleaseLocks {
                owner: 1,
                handle: Some(h),
            },
            Request::Uname,
        ] {
            assert_eq!(req.open_file(), None, "{req:?}");
        }
    }
}
