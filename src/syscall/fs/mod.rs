//! File-system calls: how a path or fd argument is judged against the
//! mounts, and which family planner a path or fd call goes to.
//!
//! This module owns path resolution ([`Target`], `Planner::resolve` and
//! the one- and two-path shapes built on it) and the two dispatchers,
//! `Planner::path_call` and `Planner::fd_call`; each family's requests are
//! built in its own file. Pure, as all of [`crate::syscall`]: it must not
//! call ptrace or resolve anything on either machine (the server resolves
//! what lies inside a mount, the kernel what lies outside).

pub(super) mod dirs;
pub(super) mod io;
pub(super) mod meta;
pub(super) mod names;
pub(super) mod open;
pub(super) mod stat;
pub(super) mod xattr;

#[cfg(test)]
mod tests;

use crate::errno::Errno;
use crate::proto::{RemotePath, XattrTarget};
use crate::syscall::paths;
use crate::syscall::plan::{
    AT_FDCWD, AfterNative, FdKind, Plan, Planner, RemoteFd, StatLayout, Tracee, arg_i32, arg_u32,
};

/// `(N, rest)` when `path` is `/proc/self/fd/N[/rest]`, its `thread-self`
/// form, or `/dev/fd/N[/rest]`: the program's own fd N.
/// Whether path call `nr` follows a symlink in the last component of its
/// path, as the kernel would: the lookups that act on what a link names.
/// Calls that act on the name itself (`lstat`, `unlink`, `rename`,
/// `mkdir`, `O_NOFOLLOW` or `O_CREAT|O_EXCL` opens, ...) do not, so a local
/// link is never replaced by what it points at.
fn follows_last(nr: i64, a: [u64; 6]) -> bool {
    let nofollow = |flags: u64| arg_i32(flags) & libc::AT_SYMLINK_NOFOLLOW == 0;
    let open_follows = |flags: u64| {
        let f = arg_i32(flags);
        f & libc::O_NOFOLLOW == 0
            && f & (libc::O_CREAT | libc::O_EXCL) != libc::O_CREAT | libc::O_EXCL
    };
    match nr {
        libc::SYS_stat
        | libc::SYS_chdir
        | libc::SYS_execve
        | libc::SYS_access
        | libc::SYS_faccessat
        | libc::SYS_statfs
        | libc::SYS_truncate
        | libc::SYS_getxattr
        | libc::SYS_listxattr
        | libc::SYS_setxattr
        | libc::SYS_removexattr
        | libc::SYS_chmod
        | libc::SYS_fchmodat
        | libc::SYS_chown
        | libc::SYS_utime
        | libc::SYS_utimes
        | libc::SYS_creat => true,
        libc::SYS_open => open_follows(a[1]),
        libc::SYS_openat => open_follows(a[2]),
        libc::SYS_newfstatat | libc::SYS_faccessat2 | libc::SYS_utimensat => nofollow(a[3]),
        libc::SYS_statx => nofollow(a[2]),
        libc::SYS_fchownat | libc::SYS_execveat => nofollow(a[4]),
        _ => false,
    }
}

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

/// Whether a remote fd was opened with `O_TMPFILE`: its path is the
/// directory it was made in.
fn is_tmpfile(rfd: &RemoteFd) -> bool {
    rfd.flags & libc::O_TMPFILE == libc::O_TMPFILE
}

/// Where a path argument points, once resolved.
pub(in crate::syscall) enum Target {
    Remote { local: Vec<u8>, remote: RemotePath },
    Local { rewrite: Option<Vec<u8>> },
}

impl<T: Tracee> Planner<'_, T> {
    /// Resolves `(dirfd, path)` the way the kernel would pick the starting
    /// directory, then judges it against the mounts.
    pub(in crate::syscall) fn resolve(&mut self, dirfd: i32, path: &[u8]) -> Result<Target, Errno> {
        let absolute = path.first() == Some(&b'/');
        let base = if absolute {
            b"/".to_vec()
        } else if dirfd == AT_FDCWD {
            self.t.cwd()?
        } else {
            match self.fd(dirfd) {
                FdKind::Remote(rfd) if is_tmpfile(&rfd) => return Err(Errno::ENOTDIR),
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
            && let FdKind::Remote(rfd) = self.fd(fd)
        {
            // An `O_TMPFILE` file's path is its directory's, not its own:
            // no path of rscq's names it (its fd and `linkat` do).
            if is_tmpfile(&rfd) {
                return Err(if rest.is_empty() {
                    Errno::ENOENT
                } else {
                    Errno::ENOTDIR
                });
            }
            let local = paths::join(&rfd.path, &rest);
            if let Some((remote, on)) = self.mounts.locate_on(&rfd.path, &rest) {
                self.on = Some(on);
                return Ok(Target::Remote { local, remote });
            }
        }
        // The server resolves `.`, `..` and trailing slashes inside the
        // mount, so they keep their meaning (`a/b/..` names `..` of `b`).
        if let Some((remote, on)) = self.mounts.locate_on(&base, path) {
            self.on = Some(on);
            return Ok(Target::Remote { local, remote });
        }
        // A local symlink on the way may lead into a mount (`ln -s /mnt/x
        // ~/x; cat ~/x/f`): followed as the kernel would, component by
        // component.
        if !self.mounts.is_empty()
            && let Some((local, remote)) =
                self.through_local_links(&local, self.follow_last || path.ends_with(b"/"))
        {
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

    /// The remote file an absolute `path` reaches, followed, when it is
    /// the program's own open file: `/proc/self/fd/N` (`/proc/PID/fd/N`
    /// with its own pid, `/proc/thread-self/fd/N`, `/dev/fd/N`) of a
    /// remote fd N that is no directory. Natively such a path reaches the
    /// open file itself, also one without a name (`O_TMPFILE`) or renamed
    /// since, so its calls become the fd's (`fstat`, `fchmod`, a reopen).
    pub(super) fn open_file_named(&mut self, path: &[u8]) -> Option<RemoteFd> {
        if path.first() != Some(&b'/') || path.ends_with(b"/") {
            return None;
        }
        let path = self.own_proc_fd(&paths::normalize(path));
        let (fd, rest) = proc_fd_reference(&path)?;
        match self.fd(fd) {
            FdKind::Remote(rfd) if rest.is_empty() && !rfd.is_dir => Some(rfd),
            _ => None,
        }
    }

    /// `path` with `/proc/PID/fd/` of the caller's own process spelled
    /// `/proc/self/fd/` (any other path as it is).
    fn own_proc_fd(&mut self, path: &[u8]) -> Vec<u8> {
        let Some(tail) = path.strip_prefix(b"/proc/") else {
            return path.to_vec();
        };
        let digits = tail.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || !tail[digits..].starts_with(b"/fd/") {
            return path.to_vec();
        }
        let pid = std::str::from_utf8(&tail[..digits])
            .ok()
            .and_then(|s| s.parse::<i32>().ok());
        if pid != Some(self.t.tgid()) {
            return path.to_vec();
        }
        let mut own = b"/proc/self".to_vec();
        own.extend_from_slice(&tail[digits..]);
        own
    }

    /// Follows local symlinks in the normalized absolute `path` (all its
    /// components with `follow_last`, else all but the last) until the path
    /// enters a mount: the local path there and the remote one. `None` if
    /// it never does.
    fn through_local_links(
        &mut self,
        path: &[u8],
        follow_last: bool,
    ) -> Option<(Vec<u8>, RemotePath)> {
        let mut path = path.to_vec();
        for _ in 0..paths::MAX_SYMLINKS {
            let ends: Vec<usize> = (1..=path.len())
                .filter(|&i| i == path.len() || path[i] == b'/')
                .collect();
            let checked = if follow_last {
                ends.len()
            } else {
                ends.len().saturating_sub(1)
            };
            let (end, target) = ends[..checked]
                .iter()
                .find_map(|&end| self.t.local_link(&path[..end]).map(|t| (end, t)))?;
            let parent = match path[..end].iter().rposition(|&b| b == b'/') {
                Some(0) | None => b"/".to_vec(),
                Some(i) => path[..i].to_vec(),
            };
            let resolved = paths::join(&parent, &target);
            let rest = path[end..].strip_prefix(b"/").unwrap_or_default();
            let next = paths::join(&resolved, rest);
            if let Some((remote, on)) = self.mounts.locate_on(b"/", &next) {
                self.on = Some(on);
                return Some((next, remote));
            }
            path = next;
        }
        None
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

    /// Two paths (rename, link): both remote on one remote, both local, or
    /// EXDEV.
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
        let first_on = self.on;
        let second = match self.path_arg(d2, a2) {
            Ok(t) => t,
            Err(e) => return Plan::fail(e),
        };
        match (first, second) {
            // Two mounts of different remotes are two file systems.
            (Target::Remote { .. }, Target::Remote { .. }) if first_on != self.on => {
                Plan::fail(Errno::EXDEV)
            }
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

    /// Calls that name a path: forwarded when the path is in a mount.
    pub(in crate::syscall) fn path_call(&mut self, nr: i64, a: [u64; 6]) -> Plan {
        let fd0 = arg_i32(a[0]);
        self.follow_last = follows_last(nr, a);
        match nr {
            libc::SYS_open => self.open((AT_FDCWD, a[0], 0), arg_i32(a[1]), arg_u32(a[2])),
            libc::SYS_creat => self.open(
                (AT_FDCWD, a[0], 0),
                libc::O_CREAT | libc::O_WRONLY | libc::O_TRUNC,
                arg_u32(a[1]),
            ),
            libc::SYS_openat => self.open((fd0, a[1], 1), arg_i32(a[2]), arg_u32(a[3])),
            libc::SYS_openat2 => self.openat2(a),
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
            libc::SYS_mkdir => self.mkdir((AT_FDCWD, a[0], 0), a[1]),
            libc::SYS_mkdirat => self.mkdir((fd0, a[1], 1), a[2]),
            libc::SYS_rmdir => self.rmdir(a[0]),
            libc::SYS_unlink => self.unlink(a[0]),
            libc::SYS_unlinkat => self.unlinkat(a),
            libc::SYS_rename => self.rename((AT_FDCWD, a[0], 0), (AT_FDCWD, a[1], 1), 0),
            libc::SYS_renameat | libc::SYS_renameat2 => {
                let flags = if nr == libc::SYS_renameat2 {
                    arg_u32(a[4])
                } else {
                    0
                };
                self.rename((fd0, a[1], 1), (arg_i32(a[2]), a[3], 3), flags)
            }
            libc::SYS_link => self.link((AT_FDCWD, a[0], 0), (AT_FDCWD, a[1], 1), false),
            libc::SYS_linkat => self.linkat(a),
            libc::SYS_symlink | libc::SYS_symlinkat => self.symlink(nr, a),
            libc::SYS_chmod => self.chmod(a),
            libc::SYS_fchmodat | libc::SYS_fchmodat2 => self.fchmodat(nr, a),
            libc::SYS_chown | libc::SYS_lchown => self.chown(a, nr == libc::SYS_chown),
            libc::SYS_fchownat => self.fchownat(a),
            libc::SYS_utimensat => self.utimensat(a),
            libc::SYS_utimes | libc::SYS_futimesat => self.utimes(nr, a),
            libc::SYS_utime => self.utime(a),
            libc::SYS_truncate => self.truncate(a),
            libc::SYS_getxattr
            | libc::SYS_setxattr
            | libc::SYS_listxattr
            | libc::SYS_removexattr => self.xattr_path(nr, a, true),
            libc::SYS_lgetxattr
            | libc::SYS_lsetxattr
            | libc::SYS_llistxattr
            | libc::SYS_lremovexattr => self.xattr_path(nr, a, false),
            libc::SYS_statfs => self.statfs(a[0], a[1]),
            libc::SYS_chdir => self.chdir(a[0]),
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
            libc::SYS_mknod => self.mknod((AT_FDCWD, a[0], 0), a[1], a[2]),
            libc::SYS_mknodat => self.mknod((fd0, a[1], 1), a[2], a[3]),
            // rscq cannot watch the server's files. The kernel's "no more
            // watches" makes watchers (GNU tail -f, file managers) fall
            // back to polling, which works through the mount.
            libc::SYS_inotify_add_watch => {
                self.one_path(AT_FDCWD, a[1], 1, |_, _, _| Plan::fail(Errno(libc::ENOSPC)))
            }
            _ => Plan::Native,
        }
    }

    /// Calls on an fd: forwarded when the fd is a remote placeholder.
    pub(in crate::syscall) fn fd_call(&mut self, nr: i64, a: [u64; 6]) -> Plan {
        let fd = arg_i32(a[0]);
        let rfd = match nr {
            libc::SYS_copy_file_range | libc::SYS_splice | libc::SYS_sendfile => {
                return self.copy_between(nr, a);
            }
            libc::SYS_epoll_ctl => return self.epoll_ctl(a),
            _ => match self.fd(fd) {
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
        match nr {
            libc::SYS_read => Self::read(handle, a),
            libc::SYS_pread64 => Self::pread(handle, a),
            libc::SYS_write | libc::SYS_pwrite64 => self.write(nr, handle, a),
            libc::SYS_readv | libc::SYS_preadv | libc::SYS_preadv2 => self.readv(nr, handle, a),
            libc::SYS_writev | libc::SYS_pwritev | libc::SYS_pwritev2 => self.writev(nr, handle, a),
            libc::SYS_lseek => Self::lseek(handle, a),
            libc::SYS_fsync | libc::SYS_fdatasync => Self::fsync(handle, nr == libc::SYS_fdatasync),
            libc::SYS_fcntl => self.fcntl(&rfd, arg_i32(a[1]), a[2]),
            libc::SYS_fstat => Self::fstat(handle, a[1]),
            libc::SYS_getdents64 => Self::getdents64(handle, a),
            libc::SYS_ftruncate => Self::ftruncate(handle, a),
            libc::SYS_fchmod => Self::fchmod(handle, a),
            libc::SYS_fchown => Self::fchown(handle, a),
            libc::SYS_fstatfs => Self::fstatfs(handle, a[1]),
            libc::SYS_fchdir => Self::fchdir(rfd),
            libc::SYS_fgetxattr
            | libc::SYS_fsetxattr
            | libc::SYS_flistxattr
            | libc::SYS_fremovexattr => self.xattr(nr, XattrTarget::Handle(handle), a),
            libc::SYS_fallocate => Self::fallocate(handle, a),
            libc::SYS_flock => crate::syscall::locks::flock(&rfd, arg_i32(a[1])),
            libc::SYS_getdents => Plan::fail(Errno::ENOSYS),
            _ => Plan::Native,
        }
    }
}
