//! x86_64 syscall numbers rscq traps, with their names for `--trace`.
//!
//! Pure: numbers and names only; which of them stop the program is the
//! tracer's seccomp filter.

/// Trapped because they take a path.
pub const PATH_CALLS: &[(i64, &str)] = &[
    (libc::SYS_open, "open"),
    (libc::SYS_openat, "openat"),
    (libc::SYS_openat2, "openat2"),
    (libc::SYS_creat, "creat"),
    (libc::SYS_stat, "stat"),
    (libc::SYS_lstat, "lstat"),
    (libc::SYS_newfstatat, "newfstatat"),
    (libc::SYS_statx, "statx"),
    (libc::SYS_access, "access"),
    (libc::SYS_faccessat, "faccessat"),
    (libc::SYS_faccessat2, "faccessat2"),
    (libc::SYS_readlink, "readlink"),
    (libc::SYS_readlinkat, "readlinkat"),
    (libc::SYS_mkdir, "mkdir"),
    (libc::SYS_mkdirat, "mkdirat"),
    (libc::SYS_rmdir, "rmdir"),
    (libc::SYS_unlink, "unlink"),
    (libc::SYS_unlinkat, "unlinkat"),
    (libc::SYS_rename, "rename"),
    (libc::SYS_renameat, "renameat"),
    (libc::SYS_renameat2, "renameat2"),
    (libc::SYS_link, "link"),
    (libc::SYS_linkat, "linkat"),
    (libc::SYS_symlink, "symlink"),
    (libc::SYS_symlinkat, "symlinkat"),
    (libc::SYS_chmod, "chmod"),
    (libc::SYS_fchmodat, "fchmodat"),
    (libc::SYS_fchmodat2, "fchmodat2"),
    (libc::SYS_chown, "chown"),
    (libc::SYS_lchown, "lchown"),
    (libc::SYS_fchownat, "fchownat"),
    (libc::SYS_utimensat, "utimensat"),
    (libc::SYS_utimes, "utimes"),
    (libc::SYS_utime, "utime"),
    (libc::SYS_futimesat, "futimesat"),
    (libc::SYS_truncate, "truncate"),
    (libc::SYS_setxattr, "setxattr"),
    (libc::SYS_lsetxattr, "lsetxattr"),
    (libc::SYS_getxattr, "getxattr"),
    (libc::SYS_lgetxattr, "lgetxattr"),
    (libc::SYS_listxattr, "listxattr"),
    (libc::SYS_llistxattr, "llistxattr"),
    (libc::SYS_removexattr, "removexattr"),
    (libc::SYS_lremovexattr, "lremovexattr"),
    (libc::SYS_statfs, "statfs"),
    (libc::SYS_chdir, "chdir"),
    (libc::SYS_getcwd, "getcwd"),
    (libc::SYS_execve, "execve"),
    (libc::SYS_execveat, "execveat"),
    (libc::SYS_mknod, "mknod"),
    (libc::SYS_mknodat, "mknodat"),
    (libc::SYS_inotify_add_watch, "inotify_add_watch"),
];

/// Trapped because their fd may be a remote file.
pub const FD_CALLS: &[(i64, &str)] = &[
    (libc::SYS_read, "read"),
    (libc::SYS_write, "write"),
    (libc::SYS_pread64, "pread64"),
    (libc::SYS_pwrite64, "pwrite64"),
    (libc::SYS_readv, "readv"),
    (libc::SYS_writev, "writev"),
    (libc::SYS_preadv, "preadv"),
    (libc::SYS_pwritev, "pwritev"),
    (libc::SYS_preadv2, "preadv2"),
    (libc::SYS_pwritev2, "pwritev2"),
    (libc::SYS_lseek, "lseek"),
    (libc::SYS_fsync, "fsync"),
    (libc::SYS_fdatasync, "fdatasync"),
    (libc::SYS_fcntl, "fcntl"),
    (libc::SYS_fstat, "fstat"),
    (libc::SYS_getdents64, "getdents64"),
    (libc::SYS_getdents, "getdents"),
    (libc::SYS_ftruncate, "ftruncate"),
    (libc::SYS_fchmod, "fchmod"),
    (libc::SYS_fchown, "fchown"),
    (libc::SYS_fstatfs, "fstatfs"),
    (libc::SYS_fchdir, "fchdir"),
    (libc::SYS_fsetxattr, "fsetxattr"),
    (libc::SYS_fgetxattr, "fgetxattr"),
    (libc::SYS_flistxattr, "flistxattr"),
    (libc::SYS_fremovexattr, "fremovexattr"),
    (libc::SYS_copy_file_range, "copy_file_range"),
    (libc::SYS_sendfile, "sendfile"),
    (libc::SYS_splice, "splice"),
    (libc::SYS_fallocate, "fallocate"),
    (libc::SYS_flock, "flock"),
];

/// Trapped only with `--net`.
pub const NET_CALLS: &[(i64, &str)] = &[
    (libc::SYS_connect, "connect"),
    (libc::SYS_getsockname, "getsockname"),
    (libc::SYS_getpeername, "getpeername"),
    (libc::SYS_bind, "bind"),
    (libc::SYS_listen, "listen"),
    (libc::SYS_accept, "accept"),
    (libc::SYS_accept4, "accept4"),
    (libc::SYS_setsockopt, "setsockopt"),
    // Only to read `SO_ERROR` (see the tracer's filter rules).
    (libc::SYS_getsockopt, "getsockopt"),
];

/// Trapped only with `--uname`.
pub const UNAME: (i64, &str) = (libc::SYS_uname, "uname");

/// Always refused with ENOSYS: io_uring would run file and socket operations
/// without any syscall the filter sees, and libc falls back from `clone3` to
/// `clone`, whose flags the tracer can follow.
pub const REFUSED: &[i64] = &[libc::SYS_io_uring_setup, libc::SYS_clone3];

/// The name of a trapped syscall, for `--trace` and `--stats`.
pub fn name(nr: i64) -> &'static str {
    PATH_CALLS
        .iter()
        .chain(FD_CALLS)
        .chain(NET_CALLS)
        .chain([
            &UNAME,
            &(libc::SYS_mmap, "mmap"),
            &(libc::SYS_close, "close"),
            &(libc::SYS_sendto, "sendto"),
            &(libc::SYS_recvfrom, "recvfrom"),
            &(libc::SYS_sendmsg, "sendmsg"),
            &(libc::SYS_recvmsg, "recvmsg"),
            &(libc::SYS_sendmmsg, "sendmmsg"),
            &(libc::SYS_recvmmsg, "recvmmsg"),
            &(libc::SYS_socket, "socket"),
        ])
        .find(|(n, _)| *n == nr)
        .map_or("syscall", |(_, name)| name)
}

/// The thesis's name for the family a trapped syscall belongs to: its
/// `rsc.config` listed `open`, `lstat`, `getdents`, …, which today's libcs
/// reach through `openat`, `newfstatat`, `getdents64`, ….
pub fn family(name: &str) -> &str {
    match name {
        "openat" | "openat2" | "creat" => "open",
        "stat" | "newfstatat" | "statx" | "fstat" => "lstat",
        "faccessat" | "faccessat2" => "access",
        "readlinkat" => "readlink",
        "getdents64" => "getdents",
        "mkdirat" => "mkdir",
        "unlinkat" => "unlink",
        "renameat" | "renameat2" => "rename",
        "linkat" => "link",
        "symlinkat" => "symlink",
        "fchmod" | "fchmodat" | "fchmodat2" => "chmod",
        "chown" | "fchown" | "fchownat" => "lchown",
        "utimensat" | "utime" | "futimesat" => "utimes",
        "readv" | "preadv" | "preadv2" => "read",
        "writev" | "pwritev" | "pwritev2" => "write",
        "fstatfs" => "statfs",
        "setxattr" | "lsetxattr" | "fsetxattr" | "getxattr" | "lgetxattr" | "fgetxattr"
        | "listxattr" | "llistxattr" | "flistxattr" | "removexattr" | "lremovexattr"
        | "fremovexattr" => "xattr",
        other => other,
    }
}

/// Whether a `REMOTE` set from rsc.config asks for syscall `name`: listed
/// itself, or its family is.
pub fn listed(set: &std::collections::BTreeSet<String>, name: &str) -> bool {
    set.contains(name) || set.contains(family(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thesis_names_cover_modern_variants() {
        let set: std::collections::BTreeSet<String> = ["open", "lstat", "getdents"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(listed(&set, "openat"));
        assert!(listed(&set, "newfstatat"));
        assert!(listed(&set, "getdents64"));
        assert!(!listed(&set, "unlinkat"));
    }

    #[test]
    fn every_trapped_call_has_a_name() {
        for &(nr, n) in PATH_CALLS.iter().chain(FD_CALLS) {
            assert_eq!(name(nr), n);
        }
    }
}
