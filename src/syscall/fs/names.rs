//! Calls that make, remove or rename names: `mkdir`, `rmdir`, `unlink`,
//! `rename`, `link` (also of an open file, as an `O_TMPFILE` file is
//! given its name), `symlink`, `mknod`, and `readlink`, which reads the
//! target a `symlink` stored.
//!
//! Paths travel as spelled from the point they enter a mount (the server
//! resolves `.`, `..` and trailing slashes), so `rmdir a/b/..` is refused
//! there as the kernel would; this module must not collapse them.

use super::{Target, proc_fd_reference};
use crate::errno::Errno;
use crate::proto::{RemotePath, Request};
use crate::syscall::describe::{Shown, mode, quote};
use crate::syscall::plan::{
    AT_FDCWD, AfterNative, FdKind, Plan, Planner, Then, Tracee, arg_i32, arg_u32,
};

/// `mknod(2)`'s request: the kernel takes `umode_t` and an `unsigned int`
/// device number, so only their low bits count.
fn mknod(path: RemotePath, mode: u64, dev: u64) -> Request {
    Request::Mknod {
        path,
        mode: arg_u32(mode) & 0xffff,
        dev: arg_u32(dev),
    }
}

impl<T: Tracee> Planner<'_, T> {
    /// `mkdir(path, mode)` and `mkdirat(dirfd, path, mode)`.
    pub(super) fn mkdir(&mut self, (dirfd, addr, arg): (i32, u64, usize), mode: u64) -> Plan {
        self.one_path(dirfd, addr, arg, |_, _, path| {
            Plan::forward(
                Request::Mkdir {
                    path,
                    mode: arg_u32(mode) & 0o7777,
                },
                Then::Zero,
            )
        })
    }

    pub(super) fn rmdir(&mut self, addr: u64) -> Plan {
        self.one_path(AT_FDCWD, addr, 0, |_, _, path| {
            Plan::forward(Request::Rmdir { path }, Then::Zero)
        })
    }

    pub(super) fn unlink(&mut self, addr: u64) -> Plan {
        self.one_path(AT_FDCWD, addr, 0, |_, _, path| {
            Plan::forward(Request::Unlink { path }, Then::Zero)
        })
    }

    /// `unlinkat(dirfd, path, flags)`: `AT_REMOVEDIR` makes it an `rmdir`.
    pub(super) fn unlinkat(&mut self, a: [u64; 6]) -> Plan {
        let flags = arg_i32(a[2]);
        self.one_path(arg_i32(a[0]), a[1], 1, |_, _, path| {
            if flags & !libc::AT_REMOVEDIR != 0 {
                Plan::fail(Errno::EINVAL)
            } else if flags & libc::AT_REMOVEDIR != 0 {
                Plan::forward(Request::Rmdir { path }, Then::Zero)
            } else {
                Plan::forward(Request::Unlink { path }, Then::Zero)
            }
        })
    }

    /// `rename`, `renameat` and `renameat2` (with `flags`).
    pub(super) fn rename(
        &mut self,
        from: (i32, u64, usize),
        to: (i32, u64, usize),
        flags: u32,
    ) -> Plan {
        self.two_paths(from, to, |f, t| {
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

    /// `link` (never following a final symlink) and `linkat`. The existing
    /// name `/proc/self/fd/N` of a remote fd is that open file (what an
    /// `O_TMPFILE` file is named by): [`Planner::link_open_file`].
    pub(super) fn link(
        &mut self,
        from: (i32, u64, usize),
        to: (i32, u64, usize),
        follow: bool,
    ) -> Plan {
        let old = match self.t.read_path(from.1) {
            Ok(old) => old,
            Err(e) => return Plan::fail(e),
        };
        if let Some((fd, rest)) = proc_fd_reference(&old)
            && rest.is_empty()
            && matches!(self.fd(fd), FdKind::Remote(_))
        {
            return self.link_open_file(fd, false, follow, to);
        }
        self.two_paths(from, to, |f, t| {
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

    /// `linkat(olddirfd, old, newdirfd, new, flags)`. An open file is given
    /// a name (what an `O_TMPFILE` file needs) in two forms, `AT_EMPTY_PATH`
    /// with an empty `old` ([`Planner::link_open_file`]), and `old` naming
    /// `/proc/self/fd/N` (as for `link`).
    pub(super) fn linkat(&mut self, a: [u64; 6]) -> Plan {
        let flags = arg_i32(a[4]);
        if flags & !(libc::AT_SYMLINK_FOLLOW | libc::AT_EMPTY_PATH) != 0 {
            return Plan::fail(Errno::EINVAL);
        }
        let follow = flags & libc::AT_SYMLINK_FOLLOW != 0;
        let (olddirfd, new) = (arg_i32(a[0]), (arg_i32(a[2]), a[3], 3));
        let old = match self.t.read_path(a[1]) {
            Ok(old) => old,
            Err(e) => return Plan::fail(e),
        };
        if old.is_empty() && flags & libc::AT_EMPTY_PATH != 0 {
            return self.link_open_file(olddirfd, true, follow, new);
        }
        self.link((olddirfd, a[1], 1), new, follow)
    }

    /// Gives the open file `fd` the name `new`: with `empty_path` the
    /// program's `AT_EMPTY_PATH` form, else its `/proc/self/fd/N` one, which
    /// names the file only when followed (not followed it is procfs's own
    /// symlink, on another file system). A remote file is linked by its
    /// handle ([`Request::LinkHandle`]); a name across the mount's edge (a
    /// remote file into a local directory, a local one into a mount) is
    /// EXDEV, as across file systems.
    fn link_open_file(
        &mut self,
        fd: i32,
        empty_path: bool,
        follow: bool,
        (dirfd, addr, arg): (i32, u64, usize),
    ) -> Plan {
        // `None`: a local file; `Some(None)`: the remote working directory.
        let remote = match fd {
            AT_FDCWD if self.t.has_virtual_cwd() => Some(None),
            AT_FDCWD => None,
            fd => match self.fd(fd) {
                FdKind::Remote(rfd) => Some(Some(rfd.handle)),
                FdKind::Local => None,
            },
        };
        let from_on = self.on;
        let to = match self.path_arg(dirfd, addr) {
            Ok(to) => to,
            Err(e) => return Plan::fail(e),
        };
        match (remote, to) {
            // A file of one remote named in another remote's mount.
            (Some(Some(_)), Target::Remote { .. }) if from_on != self.on => {
                Plan::fail(Errno::EXDEV)
            }
            (None, Target::Local { rewrite: None }) => Plan::Native,
            (None, Target::Local { rewrite: Some(p) }) => Plan::NativeRewritten {
                paths: vec![(arg, p)],
                after: AfterNative::Nothing,
            },
            (None, Target::Remote { .. }) | (Some(_), Target::Local { .. }) => {
                Plan::fail(Errno::EXDEV)
            }
            // A directory, which Linux never links.
            (Some(None), Target::Remote { .. }) => Plan::fail(Errno::EPERM),
            (Some(Some(handle)), Target::Remote { remote: to, .. }) => {
                if empty_path || follow {
                    Plan::forward(
                        Request::LinkHandle {
                            handle,
                            to,
                            empty_path,
                        },
                        Then::Zero,
                    )
                } else {
                    Plan::fail(Errno::EXDEV)
                }
            }
        }
    }

    /// `symlink(target, path)` and `symlinkat(target, dirfd, path)`.
    pub(super) fn symlink(&mut self, nr: i64, a: [u64; 6]) -> Plan {
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
                        Some(b'/') => p.mounts.locate(b"/", &target).map_or(target, |r| r.0),
                        _ => target,
                    };
                    Plan::forward(Request::Symlink { target, path }, Then::Zero)
                }
                Ok(_) => Plan::fail(Errno::ENOENT),
                Err(e) => Plan::fail(e),
            }
        })
    }

    pub(super) fn readlink(
        &mut self,
        (dirfd, addr, arg): (i32, u64, usize),
        buf: u64,
        size: u64,
    ) -> Plan {
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

    /// `mknod(path, mode, dev)` and `mknodat(dirfd, path, mode, dev)`.
    pub(super) fn mknod(
        &mut self,
        (dirfd, addr, arg): (i32, u64, usize),
        mode: u64,
        dev: u64,
    ) -> Plan {
        self.one_path(dirfd, addr, arg, |_, _, path| {
            Plan::forward(mknod(path, mode, dev), Then::Zero)
        })
    }
}

/// The `--trace` arguments of this family's requests (making, removing,
/// renaming and reading names), as
/// [`describe_as`](crate::syscall::describe::describe_as) routes them here.
pub(in crate::syscall) fn trace_args(shown: &Shown<'_>, req: &Request) -> String {
    match req {
        Request::Readlink { path: p }
        | Request::Unlink { path: p }
        | Request::Rmdir { path: p } => shown.path(p),
        Request::Mkdir { path: p, mode: m } => format!("{}, {}", shown.path(p), mode(*m)),
        Request::Mknod {
            path: p,
            mode: m,
            dev,
        } => format!("{}, {}, {dev:#x}", shown.path(p), mode(*m)),
        Request::Rename { from, to, .. } | Request::Link { from, to, .. } => {
            format!("{}, {}", shown.path(from), shown.path(to))
        }
        Request::LinkHandle {
            handle,
            to,
            empty_path,
        } => {
            let how = if *empty_path { ", AT_EMPTY_PATH" } else { "" };
            format!("{}, {}{how}", shown.h(handle), shown.path(to))
        }
        Request::Symlink { target: t, path: p } => {
            format!("{}, {}", quote(t, usize::MAX), shown.path(p))
        }
        _ => String::new(),
    }
}
