//! Extended attributes: `getxattr`, `setxattr`, `listxattr`,
//! `removexattr`, in their path, `l` (no follow) and `f` (remote fd) forms.
//!
//! Sizes are capped at the protocol's limits here; a value longer than the
//! program's buffer becomes ERANGE in `finish` (`Then::Data` without
//! `truncate`). Builds requests only.

use crate::errno::Errno;
use crate::proto::{MAX_XATTR_NAME, MAX_XATTR_VALUE, Request, XattrTarget};
use crate::syscall::describe::{SHOWN_BYTES, Shown, quote};
use crate::syscall::plan::{AT_FDCWD, Plan, Planner, Then, Tracee, arg_i32};

impl<T: Tracee> Planner<'_, T> {
    /// The path forms; `follow` is false for the `l` ones.
    pub(super) fn xattr_path(&mut self, nr: i64, a: [u64; 6], follow: bool) -> Plan {
        self.one_path(AT_FDCWD, a[0], 0, |p, _, path| {
            p.xattr(nr, XattrTarget::Path { path, follow }, a)
        })
    }

    /// The part of the xattr calls after the target is known; `a[1..]` are
    /// the same for the path and fd forms.
    pub(super) fn xattr(&mut self, nr: i64, target: XattrTarget, a: [u64; 6]) -> Plan {
        let read_name = |t: &mut T| -> Result<Vec<u8>, Errno> {
            let name = t.read_path(a[1])?;
            if name.is_empty() || name.len() > MAX_XATTR_NAME {
                return Err(Errno::ERANGE);
            }
            Ok(name)
        };
        let size = a[3];
        match nr {
            libc::SYS_getxattr | libc::SYS_lgetxattr | libc::SYS_fgetxattr => {
                let name = match read_name(self.t) {
                    Ok(n) => n,
                    Err(e) => return Plan::fail(e),
                };
                let size = u32::try_from(size.min(u64::from(MAX_XATTR_VALUE))).unwrap_or(0);
                let then = if size == 0 {
                    Then::Number
                } else {
                    Then::Data {
                        addr: a[2],
                        cap: a[3],
                        truncate: false,
                    }
                };
                Plan::forward(Request::GetXattr { target, name, size }, then)
            }
            libc::SYS_listxattr | libc::SYS_llistxattr | libc::SYS_flistxattr => {
                let size = a[2];
                let then = if size == 0 {
                    Then::Number
                } else {
                    Then::Data {
                        addr: a[1],
                        cap: size,
                        truncate: false,
                    }
                };
                let size = u32::try_from(size.min(u64::from(MAX_XATTR_VALUE))).unwrap_or(0);
                Plan::forward(Request::ListXattr { target, size }, then)
            }
            libc::SYS_setxattr | libc::SYS_lsetxattr | libc::SYS_fsetxattr => {
                let name = match read_name(self.t) {
                    Ok(n) => n,
                    Err(e) => return Plan::fail(e),
                };
                if size > u64::from(MAX_XATTR_VALUE) {
                    return Plan::fail(Errno::E2BIG);
                }
                let value = match self.t.read_bytes(a[2], usize::try_from(size).unwrap_or(0)) {
                    Ok(v) => v,
                    Err(e) => return Plan::fail(e),
                };
                let flags = arg_i32(a[4]);
                Plan::forward(
                    Request::SetXattr {
                        target,
                        name,
                        value,
                        flags,
                    },
                    Then::Zero,
                )
            }
            _ => {
                let name = match read_name(self.t) {
                    Ok(n) => n,
                    Err(e) => return Plan::fail(e),
                };
                Plan::forward(Request::RemoveXattr { target, name }, Then::Zero)
            }
        }
    }
}

/// The `--trace` arguments of this family's requests, as
/// [`describe_as`](crate::syscall::describe::describe_as) routes them here.
pub(in crate::syscall) fn trace_args(shown: &Shown<'_>, req: &Request) -> String {
    let target = |t: &XattrTarget| match t {
        XattrTarget::Path { path: p, .. } => shown.path(p),
        XattrTarget::Handle(handle) => shown.h(handle),
    };
    match req {
        Request::GetXattr {
            target: t,
            name,
            size,
        } => format!("{}, {}, {size}", target(t), quote(name, usize::MAX)),
        Request::ListXattr { target: t, size } => format!("{}, {size}", target(t)),
        Request::SetXattr {
            target: t,
            name,
            value,
            ..
        } => format!(
            "{}, {}, {}, {}",
            target(t),
            quote(name, usize::MAX),
            quote(value, SHOWN_BYTES),
            value.len()
        ),
        Request::RemoveXattr { target: t, name } => {
            format!("{}, {}", target(t), quote(name, usize::MAX))
        }
        _ => String::new(),
    }
}
