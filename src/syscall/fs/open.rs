//! `open`, `creat`, `openat`, `openat2`: a path in a mount opens a remote
//! file (the program gets a placeholder fd once the reply comes); with
//! `--net`, an open of a resolver file opens the server's copy instead.
//!
//! Builds requests only: the placeholder is installed by the tracer, from
//! the reply ([`crate::syscall::plan::Outcome::Placeholder`]).

use crate::errno::Errno;
use crate::proto::{RemotePath, Request};
use crate::syscall::describe::{Shown, mode, open_flags, takes_mode};
use crate::syscall::layout;
use crate::syscall::paths;
use crate::syscall::plan::{AT_FDCWD, AfterNative, Plan, Planner, Then, Tracee, arg_i32};

impl<T: Tracee> Planner<'_, T> {
    pub(super) fn open(
        &mut self,
        (dirfd, addr, arg): (i32, u64, usize),
        flags: i32,
        mode: u32,
    ) -> Plan {
        if let Some(plan) = self.system_file(dirfd, addr, arg, flags) {
            return plan;
        }
        if let Some(plan) = self.reopen(addr, flags) {
            return plan;
        }
        self.one_path(dirfd, addr, arg, |_, local, path| {
            let cloexec = flags & libc::O_CLOEXEC != 0;
            Plan::forward(
                Request::Open {
                    path,
                    flags: flags & !libc::O_CLOEXEC,
                    mode: mode & 0o7777,
                },
                Then::Open {
                    local_path: local,
                    flags: flags & !libc::O_CLOEXEC,
                    cloexec,
                },
            )
        })
    }

    /// An open of `/proc/self/fd/N` of a remote file
    /// ([`Planner::open_file_named`]): a new open file description of that
    /// file, with the open's access and flags ([`Request::Reopen`]), as
    /// the kernel opens what the magic link names. Not followed
    /// (`O_NOFOLLOW`), for a directory or `O_PATH`, it stays a path.
    fn reopen(&mut self, addr: u64, flags: i32) -> Option<Plan> {
        if flags & (libc::O_NOFOLLOW | libc::O_PATH | libc::O_DIRECTORY) != 0 {
            return None;
        }
        let path = self.t.read_path(addr).ok()?;
        let rfd = self.open_file_named(&path)?;
        if flags & (libc::O_CREAT | libc::O_EXCL) == libc::O_CREAT | libc::O_EXCL {
            return Some(Plan::fail(Errno::EEXIST));
        }
        let opened = flags & !(libc::O_CLOEXEC | libc::O_CREAT | libc::O_EXCL);
        // A file made `O_TMPFILE` keeps its directory as its path: its new
        // fd must not be taken for that directory either.
        let tmpfile = rfd.flags & libc::O_TMPFILE;
        Some(Plan::forward(
            Request::Reopen {
                handle: rfd.handle,
                flags: opened,
            },
            Then::Open {
                local_path: rfd.path,
                flags: opened | tmpfile,
                cloexec: flags & libc::O_CLOEXEC != 0,
            },
        ))
    }

    /// `openat2(dirfd, path, how, size)`: the flags and mode of its
    /// `struct open_how`; its `resolve` flags are not looked at.
    pub(super) fn openat2(&mut self, a: [u64; 6]) -> Plan {
        if a[3] < 24 {
            return Plan::fail(Errno::EINVAL);
        }
        let how = match self.t.read_bytes(a[2], 24) {
            Ok(b) => layout::decode_open_how(&b),
            Err(e) => return Plan::fail(e),
        };
        let flags = i32::try_from(how.0).unwrap_or(-1);
        if flags < 0 {
            return Plan::fail(Errno::EINVAL);
        }
        self.open(
            (arg_i32(a[0]), a[1], 1),
            flags,
            u32::try_from(how.1).unwrap_or(0),
        )
    }

    /// With `--net`, an open of a resolver file opens the server's copy.
    pub(super) fn system_file(
        &mut self,
        dirfd: i32,
        addr: u64,
        arg: usize,
        flags: i32,
    ) -> Option<Plan> {
        if self.system_files.is_empty() {
            return None;
        }
        let path = self.t.read_path(addr).ok()?;
        let absolute = if path.first() == Some(&b'/') {
            paths::normalize(&path)
        } else if dirfd == AT_FDCWD {
            paths::join(&self.t.cwd().ok()?, &path)
        } else {
            paths::join(&self.t.local_fd_path(dirfd)?, &path)
        };
        let (_, copy) = self.system_files.iter().find(|(p, _)| *p == absolute)?;
        if flags & (libc::O_WRONLY | libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC) != 0 {
            return Some(Plan::fail(Errno::EROFS));
        }
        Some(match copy {
            Ok(replacement) => Plan::NativeRewritten {
                paths: vec![(arg, replacement.clone())],
                after: AfterNative::Nothing,
            },
            Err(e) => Plan::fail(*e),
        })
    }
}

/// The `--trace` arguments of this family's requests (opening and
/// re-opening a file), as [`describe_as`](crate::syscall::describe::describe_as)
/// routes them here.
pub(in crate::syscall) fn trace_args(shown: &Shown<'_>, req: &Request) -> String {
    let open = |p: &RemotePath, flags: i32, m: u32| {
        if takes_mode(flags) {
            format!("{}, {}, {}", shown.path(p), open_flags(flags), mode(m))
        } else {
            format!("{}, {}", shown.path(p), open_flags(flags))
        }
    };
    match req {
        Request::Open {
            path: p,
            flags,
            mode: m,
        } => open(p, *flags, *m),
        Request::OpenPlus {
            path: p,
            flags,
            mode: m,
        } => format!("{}, +listing", open(p, *flags, *m)),
        Request::OpenRead {
            path: p,
            flags,
            mode: m,
            max,
        } => format!("{}, +read {max}", open(p, *flags, *m)),
        Request::Reopen { handle, flags } => {
            format!("{}, {}", shown.h(handle), open_flags(*flags))
        }
        Request::Reattach {
            handle,
            path,
            flags,
            offset,
            ..
        } => format!(
            "{}, {}, {}, {}",
            shown.h(handle),
            path.as_ref()
                .map_or_else(|| "NULL".to_string(), |p| shown.path(p)),
            open_flags(*flags),
            offset.map_or_else(|| "SEEK_END".to_string(), |o| o.to_string())
        ),
        _ => String::new(),
    }
}
