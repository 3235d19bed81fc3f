//! The wire protocol between `rscq` and `rscq-server`.
//!
//! Every forwarded syscall is one [`Request`] on its own QUIC bidirectional
//! stream, answered by one [`Response`] on the same stream. Messages are
//! encoded with postcard (see [`frame`]). The first stream of a connection
//! carries the [`Hello`]/[`Welcome`] handshake, which fixes the version.
//!
//! Paths are byte strings (Linux paths need not be UTF-8). A [`RemotePath`]
//! is always interpreted beneath the server's export root, whatever it says.
//!
//! Pure: types and their encoding only; must not do I/O. A change to any
//! message is a [`PROTOCOL_VERSION`] bump.

pub mod frame;

use serde::{Deserialize, Serialize};

use crate::errno::Errno;

/// Bumped on every incompatible change to any message in this module.
pub const PROTOCOL_VERSION: u32 = 9;

/// The TLS ALPN token both sides require.
pub const ALPN: &[u8] = b"rscq/1";

/// The largest payload of one read or write. Larger program requests are
/// clamped, exactly as a short read or write would be by the kernel.
pub const MAX_IO: u32 = 1 << 20;
/// The longest path accepted, including the remote mount prefix (`PATH_MAX`).
pub const MAX_PATH: usize = 4096;
/// The longest xattr name (`XATTR_NAME_MAX`).
pub const MAX_XATTR_NAME: usize = 255;
/// The largest xattr value or list (`XATTR_SIZE_MAX`).
pub const MAX_XATTR_VALUE: u32 = 65536;
/// The largest `getdents64` buffer served in one call.
pub const MAX_DIRENTS_BYTES: u32 = 1 << 20;
/// The most entries a [`Request::LookupAndList`] brings back: a larger
/// directory comes back as [`DirListing::TooLarge`], with the asked
/// answer alone, so one `stat` never fetches a huge directory whole.
pub const MAX_LISTED_ENTRIES: usize = 4096;

/// Sent by the client on the first stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Hello {
    pub version: u32,
}

/// The server's answer to [`Hello`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Welcome {
    Accepted { version: u32, read_only: bool },
    VersionMismatch { server_version: u32 },
}

/// An opaque name the server gave an open file; only valid in its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Handle(pub u64);

/// A path beneath the export root, as raw bytes with no NUL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct RemotePath(#[serde(with = "serde_bytes")] pub Vec<u8>);

/// A point in time as in `struct timespec`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Timespec {
    pub sec: i64,
    pub nsec: u32,
}

/// What `utimensat` sets one timestamp to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum TimeUpdate {
    Now,
    Omit,
    At(Timespec),
}

/// Everything `statx(2)` reports that the client may need to answer
/// `stat`, `lstat`, `fstat`, `newfstatat` or `statx`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Stat {
    pub dev_major: u32,
    pub dev_minor: u32,
    pub ino: u64,
    /// File type and permission bits, as `st_mode`.
    pub mode: u32,
    pub nlink: u64,
    pub uid: u32,
    pub gid: u32,
    pub rdev_major: u32,
    pub rdev_minor: u32,
    pub size: u64,
    pub blksize: u32,
    pub blocks: u64,
    pub atime: Timespec,
    pub mtime: Timespec,
    pub ctime: Timespec,
    pub btime: Option<Timespec>,
    pub mnt_id: u64,
    pub attributes: u64,
    pub attributes_mask: u64,
}

/// `struct statfs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Statfs {
    pub fs_type: i64,
    pub bsize: i64,
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub fsid: [i32; 2],
    pub namelen: i64,
    pub frsize: i64,
    pub flags: i64,
}

/// `struct utsname`, each field without its NUL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Utsname {
    #[serde(with = "serde_bytes")]
    pub sysname: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub nodename: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub release: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub version: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub machine: Vec<u8>,
    #[serde(with = "serde_bytes")]
    pub domainname: Vec<u8>,
}

/// One entry of a directory, as `struct linux_dirent64` carries it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct DirEntry {
    pub ino: u64,
    pub off: i64,
    /// `d_type`: one of the `DT_*` values.
    pub kind: u8,
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
}

/// An IPv4 or IPv6 socket address, as `struct sockaddr_in`/`sockaddr_in6`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SockAddr {
    V4 {
        ip: [u8; 4],
        port: u16,
    },
    V6 {
        ip: [u8; 16],
        port: u16,
        flowinfo: u32,
        scope_id: u32,
    },
}

impl From<std::net::SocketAddr> for SockAddr {
    fn from(a: std::net::SocketAddr) -> Self {
        match a {
            std::net::SocketAddr::V4(v4) => Self::V4 {
                ip: v4.ip().octets(),
                port: v4.port(),
            },
            std::net::SocketAddr::V6(v6) => Self::V6 {
                ip: v6.ip().octets(),
                port: v6.port(),
                flowinfo: v6.flowinfo(),
                scope_id: v6.scope_id(),
            },
        }
    }
}

impl From<SockAddr> for std::net::SocketAddr {
    fn from(a: SockAddr) -> Self {
        match a {
            SockAddr::V4 { ip, port } => (std::net::Ipv4Addr::from(ip), port).into(),
            SockAddr::V6 {
                ip,
                port,
                flowinfo,
                scope_id,
            } => std::net::SocketAddr::V6(std::net::SocketAddrV6::new(
                std::net::Ipv6Addr::from(ip),
                port,
                flowinfo,
                scope_id,
            )),
        }
    }
}

/// A system file the server reads from its own `/etc`, never beneath the
/// export root: with `--net`, name resolution must see the remote host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SystemFile {
    ResolvConf,
    Hosts,
    NsswitchConf,
    GaiConf,
    Services,
}

impl SystemFile {
    pub const ALL: [Self; 5] = [
        Self::ResolvConf,
        Self::Hosts,
        Self::NsswitchConf,
        Self::GaiConf,
        Self::Services,
    ];

    /// Its path on both machines.
    pub fn path(self) -> &'static str {
        match self {
            Self::ResolvConf => "/etc/resolv.conf",
            Self::Hosts => "/etc/hosts",
            Self::NsswitchConf => "/etc/nsswitch.conf",
            Self::GaiConf => "/etc/gai.conf",
            Self::Services => "/etc/services",
        }
    }
}

/// What a listing asks about each entry, fetched with the entry itself (the
/// thesis's stat prefetch). Each field is the answer the matching call on
/// `DIR/NAME` would give at the time of the listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct EntryMeta {
    /// `lstat(2)`.
    pub lstat: Result<Stat, Errno>,
    /// `readlink(2)`, for a symlink.
    #[serde(with = "serde_bytes")]
    pub link: Option<Vec<u8>>,
    /// `lgetxattr(2)` of each of [`PREFETCHED_XATTRS`].
    pub xattrs: Vec<Result<Vec<u8>, Errno>>,
}

/// The xattrs `ls -l` reads for every entry.
pub const PREFETCHED_XATTRS: [&[u8]; 3] = [
    b"security.selinux",
    b"system.posix_acl_access",
    b"system.posix_acl_default",
];

/// The lookup a [`Request::LookupAndList`] carries: each is the request
/// of the same name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum Lookup {
    Stat {
        path: RemotePath,
        follow: bool,
    },
    StatPlus {
        path: RemotePath,
        follow: bool,
    },
    Access {
        path: RemotePath,
        mode: i32,
        flags: i32,
    },
    Readlink {
        path: RemotePath,
    },
    Open {
        path: RemotePath,
        flags: i32,
        mode: u32,
    },
}

impl Lookup {
    /// The lookup `req` is, or `req` back when it is none.
    pub fn from_request(req: Request) -> Result<Self, Request> {
        match req {
            Request::Stat { path, follow } => Ok(Self::Stat { path, follow }),
            Request::StatPlus { path, follow } => Ok(Self::StatPlus { path, follow }),
            Request::Access { path, mode, flags } => Ok(Self::Access { path, mode, flags }),
            Request::Readlink { path } => Ok(Self::Readlink { path }),
            Request::Open { path, flags, mode } => Ok(Self::Open { path, flags, mode }),
            other => Err(other),
        }
    }

    pub fn into_request(self) -> Request {
        match self {
            Self::Stat { path, follow } => Request::Stat { path, follow },
            Self::StatPlus { path, follow } => Request::StatPlus { path, follow },
            Self::Access { path, mode, flags } => Request::Access { path, mode, flags },
            Self::Readlink { path } => Request::Readlink { path },
            Self::Open { path, flags, mode } => Request::Open { path, flags, mode },
        }
    }
}

/// The answer to a [`Lookup`]: the [`Reply`] its request gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LookupAnswer {
    Done,
    Stat(Stat),
    StatPlus {
        stat: Stat,
        xattrs: Vec<Result<Vec<u8>, Errno>>,
    },
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    Opened {
        handle: Handle,
        stat: Stat,
    },
}

impl LookupAnswer {
    /// The answer a reply is, if it can answer a lookup.
    pub fn from_reply(reply: Reply) -> Option<Self> {
        match reply {
            Reply::Done => Some(Self::Done),
            Reply::Stat(s) => Some(Self::Stat(s)),
            Reply::StatPlus { stat, xattrs } => Some(Self::StatPlus { stat, xattrs }),
            Reply::Data(d) => Some(Self::Data(d)),
            Reply::Opened { handle, stat } => Some(Self::Opened { handle, stat }),
            _ => None,
        }
    }
}

impl From<LookupAnswer> for Reply {
    fn from(a: LookupAnswer) -> Self {
        match a {
            LookupAnswer::Done => Reply::Done,
            LookupAnswer::Stat(s) => Reply::Stat(s),
            LookupAnswer::StatPlus { stat, xattrs } => Reply::StatPlus { stat, xattrs },
            LookupAnswer::Data(d) => Reply::Data(d),
            LookupAnswer::Opened { handle, stat } => Reply::Opened { handle, stat },
        }
    }
}

/// One entry of a [`DirListing`]: what `lstat` and `readlink` of
/// `DIR/name` gave when it was listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ListedEntry {
    #[serde(with = "serde_bytes")]
    pub name: Vec<u8>,
    pub lstat: Result<Stat, Errno>,
    #[serde(with = "serde_bytes")]
    pub link: Option<Vec<u8>>,
}

/// The lookup's own result and the directory's listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LookedUp {
    pub answer: Result<LookupAnswer, Errno>,
    pub listing: DirListing,
}

/// The directory part of a [`Reply::LookedUp`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum DirListing {
    /// Every entry but `.` and `..`: the whole directory.
    Complete(Vec<ListedEntry>),
    /// More than [`MAX_LISTED_ENTRIES`] entries.
    TooLarge,
    /// The directory could not be listed as asked (missing, not a
    /// directory, reached through a symlink, not readable or searchable).
    Unavailable(Errno),
}

/// Which object an xattr call names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum XattrTarget {
    /// `follow` is false for the `l*xattr` calls.
    Path {
        path: RemotePath,
        follow: bool,
    },
    Handle(Handle),
}

/// The first frame of every request stream: the operation, and the rights
/// of the thread that made it (NFS's AUTH_SYS, with the umask and the
/// capabilities the kernel would check too).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Call {
    /// `None` for rscq's own calls (closing a handle, sockets, flushes of
    /// held writes): they run with the server's own rights.
    pub creds: Option<Credentials>,
    pub request: Request,
}

/// A thread's credentials as `/proc/TID/status` shows them.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Credentials {
    /// Real ids: `access(2)` checks with them.
    pub ruid: u32,
    pub rgid: u32,
    /// File-system ids: every other permission check and new files' owner.
    pub fsuid: u32,
    pub fsgid: u32,
    /// Supplementary groups.
    pub groups: Vec<u32>,
    pub umask: u32,
    /// Effective and permitted capability sets, as bit masks.
    pub cap_effective: u64,
    pub cap_permitted: u64,
}

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
    /// Reads the rest of a directory, up to [`MAX_DIRENTS_BYTES`] of
    /// records, each with its [`EntryMeta`]; replies [`Reply::DirentsPlus`].
    GetdentsPlus { handle: Handle },
    /// A lookup (`stat`, `access`, `readlink`, a read-only `open`) and, in
    /// the same reply, the listing of `dir` with each entry's `lstat` and
    /// symlink target (up to [`MAX_LISTED_ENTRIES`]); replies
    /// [`Reply::LookedUp`]. `dir` is opened without following any symlink
    /// (its listing is [`DirListing::Unavailable`] otherwise) and must be
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
    /// `stat` plus the [`PREFETCHED_XATTRS`] of the same object, which `ls -l`
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
    /// the connection's bytes in both directions, and a finished stream
    /// means `shutdown(SHUT_WR)`.
    TcpConnect {
        addr: SockAddr,
        /// Stop-and-wait: the stream carries [`PureOp`]/[`PureReply`]
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
    /// a server-opened stream starting with [`Incoming`].
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
    /// [`UdpOp`] frames to the server and [`UdpEvent`] frames back, and a
    /// finished stream closes the socket.
    UdpBind {
        addr: SockAddr,
        reuse_addr: bool,
        reuse_port: bool,
        v6_only: Option<bool>,
        /// Stop-and-wait (`--pure`): the server receives only when asked
        /// ([`UdpOp::Recv`]) and answers every send.
        pure: bool,
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
    /// Open the file of `handle` again, as a new open file description
    /// (`O_RDONLY` or `O_RDWR` in `flags`, nothing else): the handle a
    /// shared mapping writes back through, which outlives the program's
    /// own fds and shares no `flock` with them. Replies
    /// [`Reply::Opened`].
    Reopen { handle: Handle, flags: i32 },
}

/// Who holds a record lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum LockOwner {
    /// A process of the run, by its thread-group id (`F_SETLK` and
    /// friends: the locks of one process on one file never conflict with
    /// each other, and any close of the file by it drops them).
    Process(u32),
    /// The open file itself (`F_OFD_SETLK` and friends).
    OpenFile,
}

/// `struct flock` (`fcntl(2)`), with its `l_pid` as the server's kernel
/// reports a conflicting holder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct FileLock {
    /// `F_RDLCK`, `F_WRLCK` or `F_UNLCK`.
    pub kind: i16,
    /// `SEEK_SET`, `SEEK_CUR` or `SEEK_END`.
    pub whence: i16,
    pub start: i64,
    /// 0 means "to the end of the file, however far it grows".
    pub len: i64,
    pub pid: i32,
}

impl FileLock {
    /// `l_type` values, as `struct flock` holds them (a `short`).
    pub const RDLCK: i16 = 0;
    pub const WRLCK: i16 = 1;
    pub const UNLCK: i16 = 2;
    /// `l_whence`'s `SEEK_SET`.
    pub const SEEK_SET: i16 = 0;
}

/// One operation on a remote UDP socket's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum UdpOp {
    /// `sendto(2)` to `peer`, or `send(2)` to the connected peer.
    Send {
        peer: Option<SockAddr>,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// `connect(2)`; answered by [`UdpEvent::Connected`].
    Connect { peer: SockAddr },
    /// `connect(2)` to `AF_UNSPEC`; answered by [`UdpEvent::Connected`].
    Disconnect,
    /// `--pure`: one `recvfrom(2)`; with `nonblocking`, EAGAIN instead of
    /// waiting. Answered by [`UdpEvent::Datagram`] or [`UdpEvent::RecvFailed`].
    Recv { nonblocking: bool },
}

/// What the server sends on a remote UDP socket's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum UdpEvent {
    /// A datagram the socket received from `peer`.
    Datagram {
        peer: SockAddr,
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    RecvFailed(Errno),
    /// `--pure`: the answer to a [`UdpOp::Send`].
    Sent(Result<u64, Errno>),
    /// The answer to [`UdpOp::Connect`]: the socket's new local address.
    Connected(Result<SockAddr, Errno>),
    /// An ICMP error came back for a datagram the socket sent to `peer`
    /// (not with `--pure`), from `offender`; `quoted` is the part of the
    /// datagram's payload the message quoted.
    Unreachable {
        peer: SockAddr,
        icmp: IcmpError,
        offender: Option<SockAddr>,
        #[serde(with = "serde_bytes")]
        quoted: Vec<u8>,
    },
}

/// The type and code of an ICMP error message, as the server's kernel
/// queued it on the socket's error queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct IcmpError {
    /// ICMPv6 (else ICMPv4).
    pub v6: bool,
    pub kind: u8,
    pub code: u8,
}

/// A socket option that matters on the server's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum SockOption {
    KeepAlive(bool),
    NoDelay(bool),
    /// `SO_RCVBUF` as the program gave it (the kernel doubles it).
    RecvBuffer(u32),
    SendBuffer(u32),
    /// `SO_LINGER`: the timeout in seconds when on.
    Linger(Option<u32>),
    KeepIdle(u32),
    KeepInterval(u32),
    KeepCount(u32),
}

/// Which server socket a [`Request::TcpSetOption`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum OptionTarget {
    /// A connection, by its addresses as the server sees them.
    Connection {
        local: SockAddr,
        peer: SockAddr,
    },
    Listener(u64),
}

/// One stop-and-wait operation on a `--pure` connection's stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PureOp {
    /// One `recv(2)` of at most `max` bytes; with `nonblocking`, EAGAIN
    /// instead of waiting.
    Recv { max: u32, nonblocking: bool },
    /// One blocking `send(2)`: answered once every byte is in the server's
    /// socket, or, if a [`PureOp::CancelSend`] for it comes first, with the
    /// count of those that are (one more try without waiting included).
    Send(#[serde(with = "serde_bytes")] Vec<u8>),
    /// `shutdown(SHUT_WR)`.
    ShutdownWrite,
    /// The program's socket was reset (an abortive close): after the sends
    /// before it, the server's socket is reset too.
    Reset,
    /// Stop waiting for room for the `n`-th `Send` of this stream (counted
    /// from 1): the program's call timed out, was interrupted, or does not
    /// block. It is answered with what went.
    CancelSend(u64),
}

/// The answer to one [`PureOp`]. Receives and sends are answered in
/// their own order, independently: a `send` never waits behind a `recv`
/// that waits for the peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum PureReply {
    /// Received bytes; empty at the end of the stream.
    Data(#[serde(with = "serde_bytes")] Vec<u8>),
    RecvFailed(Errno),
    /// How many bytes of a `Send` went (fewer if it was cancelled).
    Sent(u64),
    /// `ShutdownWrite` or `Reset` done.
    Shut,
    SendFailed(Errno),
}

/// The first frame of a stream the server opens: one accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Incoming {
    pub listener: u64,
    pub local: SockAddr,
    pub peer: SockAddr,
}

impl Request {
    /// Whether the request can change a file or directory of the export:
    /// what `--read-only` refuses, and what makes any answer rscq holds
    /// about a file stale.
    pub fn changes_files(&self) -> bool {
        match self {
            Request::Open { flags, .. }
            | Request::OpenPlus { flags, .. }
            | Request::LookupAndList {
                lookup: Lookup::Open { flags, .. },
                ..
            } => {
                // `O_PATH` ignores the rest; truncating happens even with
                // `O_RDONLY`.
                flags & libc::O_PATH == 0
                    && (flags & libc::O_ACCMODE != libc::O_RDONLY
                        || flags & (libc::O_CREAT | libc::O_TRUNC) != 0
                        || flags & libc::O_TMPFILE == libc::O_TMPFILE)
            }
            Request::Reopen { flags, .. } => flags & libc::O_ACCMODE != libc::O_RDONLY,
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
            | Request::Flock { .. }
            | Request::RecordLock { .. }
            | Request::ReleaseLocks { .. }
            | Request::CancelWait { .. } => false,
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

/// The answer to [`Request::OpenPlus`] on a directory: the open, and the
/// listing as [`Reply::DirentsPlus`] would bring it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct OpenedDir {
    pub handle: Handle,
    pub stat: Stat,
    pub entries: Vec<(DirEntry, EntryMeta)>,
    pub complete: bool,
}

/// What the server sends back for one request.
pub type Response = Result<Reply, Errno>;
