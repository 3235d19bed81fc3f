//! Calls that look at a file without changing it: `stat` and its
//! relatives (`AT_EMPTY_PATH` forms and the remote cwd included),
//! `access`, `statfs` and their fd forms.
//!
//! Builds requests only; the `struct stat`/`statx`/`statfs` layouts are
//! [`crate::syscall::layout`]'s, written by `finish`.

use super::Target;
use crate::errno::Errno;
use crate::proto::{Handle, Request};
use crate::syscall::describe::{Shown, access_mode, follow_flag};
use crate::syscall::plan::{
    AT_FDCWD, AfterNative, FdKind, Plan, Planner, StatLayout, Then, Tracee,
};

impl<T: Tracee> Planner<'_, T> {
    /// `stat`-like calls, including the `AT_EMPTY_PATH` form on an fd.
    pub(super) fn stat_at(
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
            return match self.fd(dirfd) {
                FdKind::Remote(rfd) => Plan::forward(Request::Fstat { handle: rfd.handle }, then),
                FdKind::Local => Plan::Native,
            };
        }
        let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
        if follow && let Some(rfd) = self.open_file_named(&path) {
            return Plan::forward(Request::Fstat { handle: rfd.handle }, then);
        }
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

    pub(super) fn stat_cwd(&mut self, then: Then) -> Plan {
        let cwd = match self.t.cwd() {
            Ok(c) => c,
            Err(e) => return Plan::fail(e),
        };
        match self.mounts.to_remote(&cwd) {
            Some(path) => {
                self.on = self.mounts.remote_of(&cwd);
                Plan::forward(Request::Stat { path, follow: true }, then)
            }
            None => Plan::Native,
        }
    }

    pub(super) fn access(
        &mut self,
        (dirfd, addr, arg): (i32, u64, usize),
        mode: i32,
        flags: i32,
    ) -> Plan {
        if flags & libc::AT_EMPTY_PATH != 0 && self.t.read_path(addr).is_ok_and(|p| p.is_empty()) {
            return Plan::Native;
        }
        self.one_path(dirfd, addr, arg, |_, _, path| {
            Plan::forward(Request::Access { path, mode, flags }, Then::Zero)
        })
    }

    /// `statfs(path, buf)`.
    pub(super) fn statfs(&mut self, path_addr: u64, buf: u64) -> Plan {
        self.one_path(AT_FDCWD, path_addr, 0, |_, _, path| {
            Plan::forward(Request::Statfs { path }, Then::Statfs { addr: buf })
        })
    }

    /// `fstat(fd, buf)` on a remote fd.
    pub(super) fn fstat(handle: Handle, buf: u64) -> Plan {
        Plan::forward(
            Request::Fstat { handle },
            Then::Stat {
                addr: buf,
                layout: StatLayout::Stat,
            },
        )
    }

    /// `fstatfs(fd, buf)` on a remote fd.
    pub(super) fn fstatfs(handle: Handle, buf: u64) -> Plan {
        Plan::forward(Request::Fstatfs { handle }, Then::Statfs { addr: buf })
    }
}

/// The `--trace` arguments of this family's requests (stat, access,
/// statfs), as [`describe_as`](crate::syscall::describe::describe_as)
/// routes them here.
pub(in crate::syscall) fn trace_args(shown: &Shown<'_>, req: &Request) -> String {
    match req {
        Request::Fstat { handle } | Request::Fstatfs { handle } => shown.h(handle),
        Request::Stat { path: p, follow } | Request::StatPlus { path: p, follow } => {
            format!("{}, {}", shown.path(p), follow_flag(*follow))
        }
        Request::Statfs { path: p } => shown.path(p),
        Request::Access {
            path: p, mode: m, ..
        } => format!("{}, {}", shown.path(p), access_mode(*m)),
        _ => String::new(),
    }
}
