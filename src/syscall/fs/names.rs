//! Calls that make, remove or rename names: `mkdir`, `rmdir`, `unlink`,
//! `rename`, `link`, `symlink`, `mknod`, and `readlink`, which reads the
//! target a `symlink` stored.
//!
//! Paths travel as spelled from the point they enter a mount (the server
//! resolves `.`, `..` and trailing slashes), so `rmdir a/b/..` is refused
//! there as the kernel would; this module must not collapse them.

use crate::errno::Errno;
use crate::proto::{RemotePath, Request};
use crate::syscall::plan::{AT_FDCWD, Plan, Planner, Then, Tracee, arg_i32, arg_u32};

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

    /// `link` (never following a final symlink) and `linkat`.
    pub(super) fn link(
        &mut self,
        from: (i32, u64, usize),
        to: (i32, u64, usize),
        follow: bool,
    ) -> Plan {
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

    /// `linkat(olddirfd, old, newdirfd, new, flags)`; the `AT_EMPTY_PATH`
    /// form (linking an open fd) is left to the kernel.
    pub(super) fn linkat(&mut self, a: [u64; 6]) -> Plan {
        let flags = arg_i32(a[4]);
        if flags & libc::AT_EMPTY_PATH != 0 {
            return Plan::Native;
        }
        let follow = flags & libc::AT_SYMLINK_FOLLOW != 0;
        self.link((arg_i32(a[0]), a[1], 1), (arg_i32(a[2]), a[3], 3), follow)
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
