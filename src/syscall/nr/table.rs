//! The table itself: every syscall number rscq traps, once.
//!
//! Data only. An entry says who plans the call (in the order asked) and
//! which filters trap it, in which modes and how; the seccomp rules, the
//! planner's dispatch, the `--trace` names and the lists the engine asks
//! about are all read from here (`super`), so adding a call here is the
//! whole of wiring it.

use super::{Action, Family, Filter, Syscall, Trap, When};
use Family::{
    Close, Creds, Fd, Mmap, Net, Path, PureSocket, SharedSync, SocketCreate, Udp, Uname, UnixSocket,
};

/// A call that names a path, trapped with a mount (if rsc.config lists it).
const ON_PATH: &[Trap] = &[Trap::listed(Filter::Program, When::Mounts, Action::Trace)];
/// `newfstatat` and `statx` (their flags are argument `flags`): path calls,
/// except the `AT_EMPTY_PATH` form (flags exactly that), which is
/// `fstat(2)` of its fd: glibc and musl make every `fstat` that way, so it
/// stops only where a remote fd may be, as `fstat` does. A non-empty path
/// with exactly that flag would run natively in a process with no remote
/// file (README, "What does not work yet"; the preload library clears the
/// flag on such calls).
const fn stat_at(flags: u8) -> [Trap; 2] {
    [
        Trap::listed(
            Filter::Program,
            When::Mounts,
            Action::TraceUnlessArg {
                arg: flags,
                value: AT_EMPTY_PATH,
            },
        ),
        Trap::listed(Filter::Fd, When::Mounts, Action::Trace),
    ]
}
const ON_NEWFSTATAT: &[Trap] = &stat_at(3);
const ON_STATX: &[Trap] = &stat_at(2);
const AT_EMPTY_PATH: u32 = 0x1000;

/// A call on an fd, trapped once a process holds a remote file.
const ON_FD: &[Trap] = &[Trap::listed(Filter::Fd, When::Mounts, Action::Trace)];
/// A socket call, trapped with `--net`.
const ON_NET: &[Trap] = &[Trap::new(Filter::Program, When::Net, Action::Trace)];
/// A socket data call or wait for input, trapped with `--pure --net`.
const ON_PURE: Trap = Trap::new(Filter::Program, When::PureNet, Action::Trace);
/// A data call that is also an fd call: stop-and-wait on sockets, and
/// remote files.
const ON_PURE_AND_FD: &[Trap] = &[
    ON_PURE,
    Trap::listed(Filter::Fd, When::Mounts, Action::Trace),
];
/// The opens: every one with `--net` and no mount (the resolver files come
/// from the server), else as a path call.
const ON_OPEN: &[Trap] = &[
    Trap::new(Filter::Program, When::NetWithoutMounts, Action::Trace),
    Trap::listed(Filter::Program, When::Mounts, Action::Trace),
];
/// `bind` and `connect`: socket calls with `--net`; without it, with a
/// mount, because an AF_UNIX socket's path may name a file in it.
const ON_ADDRESS: &[Trap] = &[
    Trap::new(Filter::Program, When::Net, Action::Trace),
    Trap::new(Filter::Program, When::MountsWithoutNet, Action::Trace),
];
/// `sendto` and `recvfrom`: every one with `--pure`; else only a send with
/// a destination, or a receive that asks for the source (argument 4), which
/// may concern a remote UDP socket.
const ON_ADDRESSED_DATA: &[Trap] = &[
    ON_PURE,
    Trap::new(
        Filter::Program,
        When::NetNotPure,
        Action::TraceUnlessArg { arg: 4, value: 0 },
    ),
];
/// Trapped with `--pure --net` only.
const ON_PURE_ONLY: &[Trap] = &[ON_PURE];
/// Always refused with ENOSYS: io_uring would run file and socket
/// operations without any syscall the filter sees, and libc falls back from
/// `clone3` to `clone`, whose flags the tracer can follow.
const REFUSED: &[Trap] = &[Trap::new(
    Filter::Program,
    When::Always,
    Action::Errno(ENOSYS),
)];

/// A call that changes credentials or the umask, which forwarded file calls
/// carry: trapped whenever calls are forwarded, in every mode, so that the
/// credentials kept between calls are read again after it.
const ON_CREDS: &[Trap] = &[Trap::new(Filter::Program, When::Always, Action::Trace)];

const PATH: &[Family] = &[Path];
const FD: &[Family] = &[Fd];
const NET: &[Family] = &[Net];
const DATA: &[Family] = &[Udp, PureSocket, Fd];
const WAIT: &[Family] = &[PureSocket];
const ADDRESS: &[Family] = &[Udp, UnixSocket, Net];

/// Every trapped call. The order is the order of the filters' rules.
pub const TABLE: &[Syscall] = &[
    // Refused outright.
    Syscall::new(libc::SYS_io_uring_setup, "io_uring_setup", &[], REFUSED),
    Syscall::new(libc::SYS_clone3, "clone3", &[], REFUSED),
    // Calls that change what forwarded file calls are done as.
    Syscall::new(libc::SYS_setuid, "setuid", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_setgid, "setgid", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_setreuid, "setreuid", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_setregid, "setregid", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_setresuid, "setresuid", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_setresgid, "setresgid", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_setfsuid, "setfsuid", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_setfsgid, "setfsgid", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_setgroups, "setgroups", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_capset, "capset", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_umask, "umask", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_unshare, "unshare", &[Creds], ON_CREDS),
    Syscall::new(libc::SYS_setns, "setns", &[Creds], ON_CREDS),
    // `--uname`.
    Syscall::new(
        libc::SYS_uname,
        "uname",
        &[Uname],
        &[Trap::listed(Filter::Program, When::Uname, Action::Trace)],
    ),
    // Socket calls that carry addresses (`--net`).
    Syscall::new(libc::SYS_connect, "connect", ADDRESS, ON_ADDRESS),
    Syscall::new(libc::SYS_getsockname, "getsockname", NET, ON_NET),
    Syscall::new(libc::SYS_getpeername, "getpeername", NET, ON_NET),
    Syscall::new(libc::SYS_bind, "bind", ADDRESS, ON_ADDRESS),
    Syscall::new(libc::SYS_listen, "listen", NET, ON_NET),
    Syscall::new(libc::SYS_accept, "accept", NET, ON_NET),
    Syscall::new(libc::SYS_accept4, "accept4", NET, ON_NET),
    Syscall::new(libc::SYS_setsockopt, "setsockopt", NET, ON_NET),
    // Only the result of a connect, a dual-stack bind and a connection's
    // TCP_INFO can be the server's; every other option reads the
    // program's own socket.
    Syscall::new(
        libc::SYS_getsockopt,
        "getsockopt",
        NET,
        &[Trap::new(
            Filter::Program,
            When::Net,
            Action::TraceIfArg {
                arg: 2,
                values: &[
                    libc::SO_ERROR.unsigned_abs(),
                    libc::IPV6_V6ONLY.unsigned_abs(),
                    libc::TCP_INFO.unsigned_abs(),
                ],
            },
        )],
    ),
    // Socket data (`--net`): addresses of UDP sends and receives, and
    // with `--pure` every data call and wait for input.
    Syscall::new(
        libc::SYS_sendto,
        "sendto",
        &[Udp, PureSocket, Net],
        ON_ADDRESSED_DATA,
    ),
    Syscall::new(
        libc::SYS_recvfrom,
        "recvfrom",
        &[Udp, PureSocket],
        ON_ADDRESSED_DATA,
    )
    .waiting_for_input(),
    // UDP addresses hide inside `msghdr`, where the filter cannot look.
    Syscall::new(
        libc::SYS_sendmsg,
        "sendmsg",
        &[Udp, PureSocket, Net],
        ON_NET,
    ),
    Syscall::new(libc::SYS_recvmsg, "recvmsg", &[Udp, PureSocket], ON_NET).waiting_for_input(),
    Syscall::new(libc::SYS_sendmmsg, "sendmmsg", &[Udp, Net], ON_NET),
    Syscall::new(libc::SYS_recvmmsg, "recvmmsg", &[Udp], ON_NET).waiting_for_input(),
    Syscall::new(libc::SYS_poll, "poll", WAIT, ON_PURE_ONLY).waiting_for_input(),
    Syscall::new(libc::SYS_ppoll, "ppoll", WAIT, ON_PURE_ONLY).waiting_for_input(),
    Syscall::new(libc::SYS_select, "select", WAIT, ON_PURE_ONLY).waiting_for_input(),
    Syscall::new(libc::SYS_pselect6, "pselect6", WAIT, ON_PURE_ONLY).waiting_for_input(),
    Syscall::new(libc::SYS_epoll_wait, "epoll_wait", WAIT, ON_PURE_ONLY).waiting_for_input(),
    Syscall::new(libc::SYS_epoll_pwait, "epoll_pwait", WAIT, ON_PURE_ONLY).waiting_for_input(),
    Syscall::new(libc::SYS_epoll_pwait2, "epoll_pwait2", WAIT, ON_PURE_ONLY).waiting_for_input(),
    // What a remote socket holds is known only on the server.
    Syscall::new(
        libc::SYS_ioctl,
        "ioctl",
        WAIT,
        &[Trap::new(
            Filter::Program,
            When::PureNet,
            Action::TraceIfArg {
                arg: 1,
                values: &[FIONREAD, SIOCATMARK],
            },
        )],
    ),
    // UDP-Lite and ICMP echo sockets become UDP ones (`net::standin`).
    Syscall::new(
        libc::SYS_socket,
        "socket",
        &[SocketCreate],
        &[Trap::new(
            Filter::Program,
            When::Net,
            Action::TraceIfArg {
                arg: 2,
                values: &[UDPLITE, ICMP, ICMPV6],
            },
        )],
    ),
    // Calls that name a path.
    Syscall::new(libc::SYS_open, "open", PATH, ON_OPEN),
    Syscall::new(libc::SYS_openat, "openat", PATH, ON_OPEN),
    Syscall::new(libc::SYS_openat2, "openat2", PATH, ON_OPEN),
    Syscall::new(libc::SYS_creat, "creat", PATH, ON_PATH),
    Syscall::new(libc::SYS_stat, "stat", PATH, ON_PATH),
    Syscall::new(libc::SYS_lstat, "lstat", PATH, ON_PATH),
    Syscall::new(libc::SYS_newfstatat, "newfstatat", PATH, ON_NEWFSTATAT),
    Syscall::new(libc::SYS_statx, "statx", PATH, ON_STATX),
    Syscall::new(libc::SYS_access, "access", PATH, ON_PATH),
    Syscall::new(libc::SYS_faccessat, "faccessat", PATH, ON_PATH),
    Syscall::new(libc::SYS_faccessat2, "faccessat2", PATH, ON_PATH),
    Syscall::new(libc::SYS_readlink, "readlink", PATH, ON_PATH),
    Syscall::new(libc::SYS_readlinkat, "readlinkat", PATH, ON_PATH),
    Syscall::new(libc::SYS_mkdir, "mkdir", PATH, ON_PATH),
    Syscall::new(libc::SYS_mkdirat, "mkdirat", PATH, ON_PATH),
    Syscall::new(libc::SYS_rmdir, "rmdir", PATH, ON_PATH),
    Syscall::new(libc::SYS_unlink, "unlink", PATH, ON_PATH),
    Syscall::new(libc::SYS_unlinkat, "unlinkat", PATH, ON_PATH),
    Syscall::new(libc::SYS_rename, "rename", PATH, ON_PATH),
    Syscall::new(libc::SYS_renameat, "renameat", PATH, ON_PATH),
    Syscall::new(libc::SYS_renameat2, "renameat2", PATH, ON_PATH),
    Syscall::new(libc::SYS_link, "link", PATH, ON_PATH),
    Syscall::new(libc::SYS_linkat, "linkat", PATH, ON_PATH),
    Syscall::new(libc::SYS_symlink, "symlink", PATH, ON_PATH),
    Syscall::new(libc::SYS_symlinkat, "symlinkat", PATH, ON_PATH),
    Syscall::new(libc::SYS_chmod, "chmod", PATH, ON_PATH),
    Syscall::new(libc::SYS_fchmodat, "fchmodat", PATH, ON_PATH),
    Syscall::new(libc::SYS_fchmodat2, "fchmodat2", PATH, ON_PATH),
    Syscall::new(libc::SYS_chown, "chown", PATH, ON_PATH),
    Syscall::new(libc::SYS_lchown, "lchown", PATH, ON_PATH),
    Syscall::new(libc::SYS_fchownat, "fchownat", PATH, ON_PATH),
    Syscall::new(libc::SYS_utimensat, "utimensat", PATH, ON_PATH),
    Syscall::new(libc::SYS_utimes, "utimes", PATH, ON_PATH),
    Syscall::new(libc::SYS_utime, "utime", PATH, ON_PATH),
    Syscall::new(libc::SYS_futimesat, "futimesat", PATH, ON_PATH),
    Syscall::new(libc::SYS_truncate, "truncate", PATH, ON_PATH),
    Syscall::new(libc::SYS_setxattr, "setxattr", PATH, ON_PATH),
    Syscall::new(libc::SYS_lsetxattr, "lsetxattr", PATH, ON_PATH),
    Syscall::new(libc::SYS_getxattr, "getxattr", PATH, ON_PATH),
    Syscall::new(libc::SYS_lgetxattr, "lgetxattr", PATH, ON_PATH),
    Syscall::new(libc::SYS_listxattr, "listxattr", PATH, ON_PATH),
    Syscall::new(libc::SYS_llistxattr, "llistxattr", PATH, ON_PATH),
    Syscall::new(libc::SYS_removexattr, "removexattr", PATH, ON_PATH),
    Syscall::new(libc::SYS_lremovexattr, "lremovexattr", PATH, ON_PATH),
    Syscall::new(libc::SYS_statfs, "statfs", PATH, ON_PATH),
    // The cwd must stay consistent whatever rsc.config's set says.
    Syscall::new(libc::SYS_chdir, "chdir", PATH, ON_CWD),
    Syscall::new(libc::SYS_getcwd, "getcwd", PATH, ON_CWD),
    Syscall::new(libc::SYS_execve, "execve", PATH, ON_PATH),
    Syscall::new(libc::SYS_execveat, "execveat", PATH, ON_PATH),
    Syscall::new(libc::SYS_mknod, "mknod", PATH, ON_PATH),
    Syscall::new(libc::SYS_mknodat, "mknodat", PATH, ON_PATH),
    Syscall::new(
        libc::SYS_inotify_add_watch,
        "inotify_add_watch",
        PATH,
        ON_PATH,
    ),
    // Calls on an fd that may be a remote file.
    Syscall::new(libc::SYS_read, "read", DATA, ON_PURE_AND_FD).waiting_for_input(),
    Syscall::new(libc::SYS_write, "write", DATA, ON_PURE_AND_FD),
    Syscall::new(libc::SYS_pread64, "pread64", FD, ON_FD),
    Syscall::new(libc::SYS_pwrite64, "pwrite64", FD, ON_FD),
    Syscall::new(libc::SYS_readv, "readv", DATA, ON_PURE_AND_FD).waiting_for_input(),
    Syscall::new(libc::SYS_writev, "writev", DATA, ON_PURE_AND_FD),
    Syscall::new(libc::SYS_preadv, "preadv", FD, ON_FD),
    Syscall::new(libc::SYS_pwritev, "pwritev", FD, ON_FD),
    Syscall::new(libc::SYS_preadv2, "preadv2", FD, ON_FD),
    Syscall::new(libc::SYS_pwritev2, "pwritev2", FD, ON_FD),
    Syscall::new(libc::SYS_lseek, "lseek", FD, ON_FD),
    Syscall::new(libc::SYS_fsync, "fsync", FD, ON_FD),
    Syscall::new(libc::SYS_fdatasync, "fdatasync", FD, ON_FD),
    Syscall::new(libc::SYS_fcntl, "fcntl", FD, ON_FD),
    Syscall::new(libc::SYS_fstat, "fstat", FD, ON_FD),
    Syscall::new(libc::SYS_getdents64, "getdents64", FD, ON_FD),
    Syscall::new(libc::SYS_getdents, "getdents", FD, ON_FD),
    Syscall::new(libc::SYS_ftruncate, "ftruncate", FD, ON_FD),
    Syscall::new(libc::SYS_fchmod, "fchmod", FD, ON_FD),
    Syscall::new(libc::SYS_fchown, "fchown", FD, ON_FD),
    Syscall::new(libc::SYS_fstatfs, "fstatfs", FD, ON_FD),
    // A local fd can end a remote cwd, so this one is seen everywhere,
    // whatever rsc.config's set says.
    Syscall::new(libc::SYS_fchdir, "fchdir", FD, ON_CWD),
    Syscall::new(libc::SYS_fsetxattr, "fsetxattr", FD, ON_FD),
    Syscall::new(libc::SYS_fgetxattr, "fgetxattr", FD, ON_FD),
    Syscall::new(libc::SYS_flistxattr, "flistxattr", FD, ON_FD),
    Syscall::new(libc::SYS_fremovexattr, "fremovexattr", FD, ON_FD),
    Syscall::new(libc::SYS_copy_file_range, "copy_file_range", FD, ON_FD),
    Syscall::new(libc::SYS_sendfile, "sendfile", FD, ON_FD),
    Syscall::new(libc::SYS_splice, "splice", FD, ON_FD),
    Syscall::new(libc::SYS_fallocate, "fallocate", FD, ON_FD),
    Syscall::new(libc::SYS_flock, "flock", FD, ON_FD),
    // Linux refuses to watch a regular file or a directory (EPERM); a
    // remote one's fd is a FIFO standing in for it, which epoll would take.
    Syscall::new(
        libc::SYS_epoll_ctl,
        "epoll_ctl",
        FD,
        &[Trap::new(Filter::Fd, When::Mounts, Action::Trace)],
    ),
    // A close sends the writes held for its file and reports them, and
    // releases the process's record locks on it; the last close of a
    // socket bound or listening on the server releases the server's.
    Syscall::new(
        libc::SYS_close,
        "close",
        &[Close],
        &[
            Trap::new(Filter::Fd, When::Mounts, Action::Trace),
            Trap::new(Filter::Sockets, When::Net, Action::Trace),
            // With `--pure`, from the start: a connection's server socket
            // closes at the program's last close of its own.
            ON_PURE,
        ],
    ),
    // A remote file's mapping is rscq's; anonymous mappings (fd -1) never
    // stop.
    Syscall::new(
        libc::SYS_mmap,
        "mmap",
        &[Mmap],
        &[Trap::new(
            Filter::Fd,
            When::Mounts,
            Action::TraceUnlessArg {
                arg: 4,
                value: u32::MAX,
            },
        )],
    ),
    // What shared mappings of remote files wrote goes to the server: only
    // processes that have one stop (the third filter).
    Syscall::new(
        libc::SYS_munmap,
        "munmap",
        &[SharedSync],
        &[Trap::new(Filter::Map, When::Mounts, Action::Trace)],
    ),
    Syscall::new(
        libc::SYS_msync,
        "msync",
        &[SharedSync],
        &[Trap::new(Filter::Map, When::Mounts, Action::Trace)],
    ),
];

/// The cwd calls: with a mount, whatever rsc.config's set says.
const ON_CWD: &[Trap] = &[Trap::new(Filter::Program, When::Mounts, Action::Trace)];

/// `FIONREAD`'s request number, which fits the low word the filter reads.
const FIONREAD: u32 = low_word(libc::FIONREAD);
/// `SIOCATMARK`'s request number (`asm-generic/sockios.h`).
const SIOCATMARK: u32 = 0x8905;
/// `IPPROTO_UDPLITE`, as the filter compares it.
const UDPLITE: u32 = libc::IPPROTO_UDPLITE.unsigned_abs();
/// `IPPROTO_ICMP` and `IPPROTO_ICMPV6`, as the filter compares them.
const ICMP: u32 = libc::IPPROTO_ICMP.unsigned_abs();
const ICMPV6: u32 = libc::IPPROTO_ICMPV6.unsigned_abs();

/// `ENOSYS`, as the filter returns it.
const ENOSYS: u16 = {
    let [a, b, c, d] = libc::ENOSYS.unsigned_abs().to_le_bytes();
    assert!(c == 0 && d == 0);
    u16::from_le_bytes([a, b])
};

/// `v` as the 32-bit word the filter compares, refused at compile time if
/// it does not fit.
const fn low_word(v: u64) -> u32 {
    let [a, b, c, d, e, f, g, h] = v.to_le_bytes();
    assert!(e == 0 && f == 0 && g == 0 && h == 0);
    u32::from_le_bytes([a, b, c, d])
}
