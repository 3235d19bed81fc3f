//! Directories as the program moves through them: `chdir` and `fchdir`
//! into a mount make the program's cwd a remote (virtual) one, which
//! `getcwd` then reports; `getdents64` lists a remote directory.
//!
//! Only plans: the virtual cwd itself is kept by the tracer
//! ([`crate::syscall::plan::Outcome::Chdir`], `Plan::EnterRemoteDir`).

use super::Target;
use crate::errno::Errno;
use crate::proto::{Handle, MAX_DIRENTS_BYTES, Request};
use crate::syscall::describe::Shown;
use crate::syscall::plan::{AT_FDCWD, AfterNative, Plan, Planner, RemoteFd, Then, Tracee, len_i64};

impl<T: Tracee> Planner<'_, T> {
    /// `chdir(path)`: into a mount after the server says it is a directory;
    /// a local one leaves any remote cwd.
    pub(super) fn chdir(&mut self, addr: u64) -> Plan {
        match self.path_arg(AT_FDCWD, addr) {
            Err(e) => Plan::fail(e),
            Ok(Target::Remote { local, remote }) => Plan::forward(
                Request::CheckDir { path: remote },
                Then::Chdir { local_path: local },
            ),
            Ok(Target::Local { rewrite }) => {
                if self.t.has_virtual_cwd() {
                    let paths = rewrite.map(|p| vec![(0, p)]).unwrap_or_default();
                    Plan::NativeRewritten {
                        paths,
                        after: AfterNative::LeaveVirtualCwd,
                    }
                } else {
                    Plan::Native
                }
            }
        }
    }

    pub(super) fn getcwd(&mut self, buf: u64, size: u64) -> Plan {
        if !self.t.has_virtual_cwd() {
            return Plan::Native;
        }
        let cwd = match self.t.cwd() {
            Ok(c) => c,
            Err(e) => return Plan::fail(e),
        };
        let mut bytes = cwd;
        bytes.push(0);
        if u64::try_from(bytes.len()).unwrap_or(u64::MAX) > size {
            return Plan::fail(Errno::ERANGE);
        }
        Plan::Answer {
            ret: len_i64(bytes.len()),
            writes: vec![(buf, bytes)],
        }
    }

    /// `fchdir(fd)` on a remote fd.
    pub(super) fn fchdir(rfd: RemoteFd) -> Plan {
        if rfd.is_dir {
            Plan::EnterRemoteDir {
                local_path: rfd.path,
            }
        } else {
            Plan::fail(Errno::ENOTDIR)
        }
    }

    /// `getdents64(fd, buf, count)` on a remote fd.
    pub(super) fn getdents64(handle: Handle, a: [u64; 6]) -> Plan {
        let bytes = u32::try_from(a[2].min(u64::from(MAX_DIRENTS_BYTES))).unwrap_or(0);
        Plan::forward(
            Request::Getdents { handle, bytes },
            Then::Dirents {
                addr: a[1],
                cap: a[2],
            },
        )
    }
}

/// The `--trace` arguments of this family's requests (listings and the
/// chdir check), as [`describe_as`](crate::syscall::describe::describe_as)
/// routes them here.
pub(in crate::syscall) fn trace_args(shown: &Shown<'_>, req: &Request) -> String {
    match req {
        Request::Getdents { handle, bytes } => format!("{}, {bytes}", shown.h(handle)),
        Request::GetdentsPlus { handle } => format!("{}, +stat", shown.h(handle)),
        Request::CheckDir { path: p } => shown.path(p),
        _ => String::new(),
    }
}
