//! Calls that change a file's attributes: `chmod`, `chown`, `truncate`,
//! the `utime` family, and their fd forms on remote fds (as
//! `src/server/meta.rs` carries them out).
//!
//! Builds requests only; it must not judge permissions (the server does,
//! as the caller's credentials).

use crate::errno::Errno;
use crate::proto::{Handle, Request, TimeUpdate};
use crate::syscall::describe::{Shown, follow_flag, mode};
use crate::syscall::layout;
use crate::syscall::plan::{AT_FDCWD, FdKind, Plan, Planner, Then, Tracee, arg_i32, arg_u32};

impl<T: Tracee> Planner<'_, T> {
    /// `chmod(path, mode)`.
    pub(super) fn chmod(&mut self, a: [u64; 6]) -> Plan {
        if let Some(handle) = self.named_open_file(a[0]) {
            return Self::fchmod(handle, [0, a[1], 0, 0, 0, 0]);
        }
        self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
            Plan::forward(
                Request::Chmod {
                    path,
                    mode: arg_u32(a[1]) & 0o7777,
                    follow: true,
                },
                Then::Zero,
            )
        })
    }

    /// `fchmodat(dirfd, path, mode)` and `fchmodat2(..., flags)`; the
    /// `AT_EMPTY_PATH` form is an `fchmod` of `dirfd`.
    pub(super) fn fchmodat(&mut self, nr: i64, a: [u64; 6]) -> Plan {
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
        if follow && let Some(handle) = self.named_open_file(a[1]) {
            return Self::fchmod(handle, [0, a[2], 0, 0, 0, 0]);
        }
        self.one_path(arg_i32(a[0]), a[1], 1, |_, _, path| {
            Plan::forward(Request::Chmod { path, mode, follow }, Then::Zero)
        })
    }

    /// The handle of the remote open file the path at `addr` names as
    /// `/proc/self/fd/N` ([`Planner::open_file_named`]).
    fn named_open_file(&mut self, addr: u64) -> Option<Handle> {
        let path = self.t.read_path(addr).ok()?;
        self.open_file_named(&path).map(|rfd| rfd.handle)
    }

    /// `chown(path, uid, gid)` (`follow`) and `lchown`.
    pub(super) fn chown(&mut self, a: [u64; 6], follow: bool) -> Plan {
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

    /// `fchownat(dirfd, path, uid, gid, flags)`; with `AT_EMPTY_PATH` and an
    /// empty path, an `fchown` of `dirfd`.
    pub(super) fn fchownat(&mut self, a: [u64; 6]) -> Plan {
        let fd0 = arg_i32(a[0]);
        let flags = arg_i32(a[4]);
        if flags & libc::AT_EMPTY_PATH != 0 && self.t.read_path(a[1]).is_ok_and(|p| p.is_empty()) {
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

    /// `utimensat(dirfd, path, times, flags)`; a null path is `futimens`.
    pub(super) fn utimensat(&mut self, a: [u64; 6]) -> Plan {
        let fd0 = arg_i32(a[0]);
        let flags = arg_i32(a[3]);
        let times = match self.times(a[2], layout::decode_utimens) {
            Ok(t) => t,
            Err(e) => return Plan::fail(e),
        };
        if a[1] == 0 {
            return match self.fd(fd0) {
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

    /// `utimes(path, tv)` and `futimesat(dirfd, path, tv)`.
    pub(super) fn utimes(&mut self, nr: i64, a: [u64; 6]) -> Plan {
        let fd0 = arg_i32(a[0]);
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

    /// `utime(path, times)`: a `struct utimbuf` of two `time_t`s.
    pub(super) fn utime(&mut self, a: [u64; 6]) -> Plan {
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

    pub(super) fn times(
        &mut self,
        addr: u64,
        decode: fn(&[u8]) -> [TimeUpdate; 2],
    ) -> Result<[TimeUpdate; 2], Errno> {
        if addr == 0 {
            return Ok([TimeUpdate::Now, TimeUpdate::Now]);
        }
        Ok(decode(&self.t.read_bytes(addr, 32)?))
    }

    /// `truncate(path, len)`.
    pub(super) fn truncate(&mut self, a: [u64; 6]) -> Plan {
        self.one_path(AT_FDCWD, a[0], 0, |_, _, path| {
            Plan::forward(
                Request::Truncate {
                    path,
                    len: a[1].cast_signed(),
                },
                Then::Zero,
            )
        })
    }

    /// `ftruncate(fd, len)` on a remote fd.
    pub(super) fn ftruncate(handle: Handle, a: [u64; 6]) -> Plan {
        Plan::forward(
            Request::Ftruncate {
                handle,
                len: a[1].cast_signed(),
            },
            Then::Zero,
        )
    }

    /// `fchmod(fd, mode)` on a remote fd.
    pub(super) fn fchmod(handle: Handle, a: [u64; 6]) -> Plan {
        Plan::forward(
            Request::Fchmod {
                handle,
                mode: arg_u32(a[1]) & 0o7777,
            },
            Then::Zero,
        )
    }

    /// `fchown(fd, uid, gid)` on a remote fd.
    pub(super) fn fchown(handle: Handle, a: [u64; 6]) -> Plan {
        Plan::forward(
            Request::Fchown {
                handle,
                uid: arg_u32(a[1]),
                gid: arg_u32(a[2]),
            },
            Then::Zero,
        )
    }
}

/// The `--trace` arguments of this family's requests (modes, owners,
/// times, truncation), as [`describe_as`](crate::syscall::describe::describe_as)
/// routes them here.
pub(in crate::syscall) fn trace_args(shown: &Shown<'_>, req: &Request) -> String {
    match req {
        Request::Fchmod { handle, mode: m } => format!("{}, {}", shown.h(handle), mode(*m)),
        Request::Fchown { handle, uid, gid } => format!("{}, {uid}, {gid}", shown.h(handle)),
        Request::Futimens { handle, times } => format!(
            "{}, [{}, {}]",
            shown.h(handle),
            time(&times[0]),
            time(&times[1])
        ),
        Request::Chmod {
            path: p,
            mode: m,
            follow,
        } => format!("{}, {}, {}", shown.path(p), mode(*m), follow_flag(*follow)),
        Request::Chown {
            path: p,
            uid,
            gid,
            follow,
        } => format!("{}, {uid}, {gid}, {}", shown.path(p), follow_flag(*follow)),
        Request::Utimens {
            path: p,
            times,
            follow,
        } => format!(
            "{}, [{}, {}], {}",
            shown.path(p),
            time(&times[0]),
            time(&times[1]),
            follow_flag(*follow)
        ),
        Request::Truncate { path: p, len } => format!("{}, {len}", shown.path(p)),
        _ => String::new(),
    }
}

/// A `utimensat` time as strace prints it.
fn time(t: &TimeUpdate) -> String {
    match t {
        TimeUpdate::Now => "UTIME_NOW".into(),
        TimeUpdate::Omit => "UTIME_OMIT".into(),
        TimeUpdate::At(ts) => format!("{}.{:09}", ts.sec, ts.nsec),
    }
}
