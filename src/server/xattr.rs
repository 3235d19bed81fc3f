//! Extended attributes: the `getxattr(2)`, `listxattr(2)`, `setxattr(2)` and
//! `removexattr(2)` families.
//!
//! A path target is resolved to an `O_PATH` fd and addressed through its
//! `/proc/self/fd` link with the *following* calls: that link leads to
//! exactly the resolved object, which for `follow == false` on a symlink is
//! the symlink itself, so the follow variants act as the `l*xattr` calls do.
//! (The `l*xattr` calls on the link would address the `/proc` entry.)
//!
//! Must not resolve a path any other way.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::XattrFlags;

use super::executor::{Scope, misrouted};
use super::handles::Handles;
use super::resolve::{Root, proc_fd_path};
use crate::errno::Errno;
use crate::proto::{MAX_XATTR_NAME, MAX_XATTR_VALUE, Reply, Request, Response, XattrTarget};

/// The object an xattr call acts on.
enum Object {
    /// A handle's file, for the `f*xattr` calls.
    Open(Arc<OwnedFd>),
    /// The `/proc/self/fd` path of a resolved `O_PATH` fd (kept open).
    Path(OwnedFd, CString),
}

impl Object {
    fn new(root: &Root, handles: &Handles, target: &XattrTarget) -> Result<Self, Errno> {
        match target {
            XattrTarget::Handle(handle) => Ok(Self::Open(handles.get(*handle)?)),
            XattrTarget::Path { path, follow } => {
                let fd = root.target(path, *follow)?;
                let proc = proc_fd_path(fd.as_fd());
                Ok(Self::Path(fd, proc))
            }
        }
    }
}

/// `getxattr(2)`, `lgetxattr(2)`, `fgetxattr(2)`.
pub(super) fn get(
    root: &Root,
    handles: &Handles,
    target: &XattrTarget,
    name: &[u8],
    size: u32,
) -> Response {
    let name = xattr_name(name)?;
    let object = Object::new(root, handles, target)?;
    if size == 0 {
        let needed = match &object {
            Object::Open(fd) => rustix::fs::fgetxattr_query(fd.as_fd(), &name)?,
            Object::Path(_, proc) => rustix::fs::getxattr_query(proc, &name)?,
        };
        return count(needed);
    }
    let mut buf = xattr_buffer(size)?;
    let n = match &object {
        Object::Open(fd) => rustix::fs::fgetxattr(fd.as_fd(), &name, &mut buf[..])?,
        Object::Path(_, proc) => rustix::fs::getxattr(proc, &name, &mut buf[..])?,
    };
    buf.truncate(n);
    Ok(Reply::Data(buf))
}

/// `listxattr(2)`, `llistxattr(2)`, `flistxattr(2)`.
pub(super) fn list(root: &Root, handles: &Handles, target: &XattrTarget, size: u32) -> Response {
    let object = Object::new(root, handles, target)?;
    if size == 0 {
        let needed = match &object {
            Object::Open(fd) => rustix::fs::flistxattr_query(fd.as_fd())?,
            Object::Path(_, proc) => rustix::fs::listxattr_query(proc)?,
        };
        return count(needed);
    }
    let mut buf = xattr_buffer(size)?;
    let n = match &object {
        Object::Open(fd) => rustix::fs::flistxattr(fd.as_fd(), &mut buf[..])?,
        Object::Path(_, proc) => rustix::fs::listxattr(proc, &mut buf[..])?,
    };
    buf.truncate(n);
    Ok(Reply::Data(buf))
}

/// `setxattr(2)`, `lsetxattr(2)`, `fsetxattr(2)`.
pub(super) fn set(
    root: &Root,
    handles: &Handles,
    target: &XattrTarget,
    name: &[u8],
    value: &[u8],
    flags: i32,
) -> Response {
    let name = xattr_name(name)?;
    let max = usize::try_from(MAX_XATTR_VALUE).unwrap_or(usize::MAX);
    if value.len() > max {
        return Err(Errno::E2BIG);
    }
    let flags = u32::try_from(flags)
        .ok()
        .and_then(XattrFlags::from_bits)
        .ok_or(Errno::EINVAL)?;
    match Object::new(root, handles, target)? {
        Object::Open(fd) => rustix::fs::fsetxattr(fd.as_fd(), &name, value, flags)?,
        Object::Path(_fd, proc) => rustix::fs::setxattr(&proc, &name, value, flags)?,
    }
    Ok(Reply::Done)
}

/// `removexattr(2)`, `lremovexattr(2)`, `fremovexattr(2)`.
pub(super) fn remove(
    root: &Root,
    handles: &Handles,
    target: &XattrTarget,
    name: &[u8],
) -> Response {
    let name = xattr_name(name)?;
    match Object::new(root, handles, target)? {
        Object::Open(fd) => rustix::fs::fremovexattr(fd.as_fd(), &name)?,
        Object::Path(_fd, proc) => rustix::fs::removexattr(&proc, &name)?,
    }
    Ok(Reply::Done)
}

/// An attribute name as the kernel accepts it: 1 to `XATTR_NAME_MAX`
/// bytes (`ERANGE` otherwise), and no NUL, which no C string can carry.
fn xattr_name(name: &[u8]) -> Result<CString, Errno> {
    if name.is_empty() || name.len() > MAX_XATTR_NAME {
        return Err(Errno::ERANGE);
    }
    CString::new(name).map_err(|_| Errno::EINVAL)
}

/// A value or list buffer, capped at `XATTR_SIZE_MAX` as the kernel caps it.
fn xattr_buffer(size: u32) -> Result<Vec<u8>, Errno> {
    let len = usize::try_from(size.min(MAX_XATTR_VALUE)).map_err(|_| Errno::EINVAL)?;
    Ok(vec![0; len])
}

fn count(n: usize) -> Response {
    Ok(Reply::Count(
        u64::try_from(n).map_err(|_| Errno::EOVERFLOW)?,
    ))
}

/// The [`crate::proto::PREFETCHED_XATTRS`] of the object at `path` (a
/// `/proc/self/fd` path or a name beneath one), each as its call would
/// answer: `getxattr(2)` when `follow`, else `lgetxattr(2)`.
pub(super) fn prefetched(path: &std::ffi::CStr, follow: bool) -> Vec<Result<Vec<u8>, Errno>> {
    crate::proto::PREFETCHED_XATTRS
        .iter()
        .map(|name| {
            let mut value = vec![0u8; 4096];
            let got = if follow {
                rustix::fs::getxattr(path, *name, &mut value[..])
            } else {
                rustix::fs::lgetxattr(path, *name, &mut value[..])
            };
            got.map(|n| {
                value.truncate(n);
                value
            })
            .map_err(Errno::from)
        })
        .collect()
}

/// Runs one extended-attribute request (routed here by the executor).
pub(super) fn execute(scope: &Scope<'_>, req: Request) -> Response {
    let (root, handles) = (scope.root, scope.handles);
    match req {
        Request::GetXattr { target, name, size } => get(root, handles, &target, &name, size),
        Request::ListXattr { target, size } => list(root, handles, &target, size),
        Request::SetXattr {
            target,
            name,
            value,
            flags,
        } => set(root, handles, &target, &name, &value, flags),
        Request::RemoveXattr { target, name } => remove(root, handles, &target, &name),
        other => misrouted(&other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Handle, RemotePath, Request};
    use crate::server::testutil::{Export, rp};

    fn path(p: &str, follow: bool) -> XattrTarget {
        XattrTarget::Path {
            path: rp(p),
            follow,
        }
    }

    fn get(export: &Export, target: XattrTarget, name: &str, size: u32) -> Response {
        export.run(Request::GetXattr {
            target,
            name: name.as_bytes().to_vec(),
            size,
        })
    }

    fn set(export: &Export, target: XattrTarget, name: &str, value: &[u8], flags: i32) -> Response {
        export.run(Request::SetXattr {
            target,
            name: name.as_bytes().to_vec(),
            value: value.to_vec(),
            flags,
        })
    }

    #[test]
    fn set_get_list_remove_round_trip() {
        let export = Export::new();
        export.write("f", b"");
        export.symlink("f", "l");
        assert_eq!(
            set(&export, path("l", true), "user.a", b"value", 0),
            Ok(Reply::Done)
        );
        let host = rustix::fs::getxattr(export.host("f"), "user.a", &mut [0u8; 16][..]);
        assert_eq!(host, Ok(5));
        assert_eq!(
            get(&export, path("f", true), "user.a", 0),
            Ok(Reply::Count(5))
        );
        assert_eq!(
            get(&export, path("f", true), "user.a", u32::MAX),
            Ok(Reply::Data(b"value".to_vec()))
        );
        assert_eq!(
            get(&export, path("f", true), "user.a", 2),
            Err(Errno::ERANGE)
        );
        assert_eq!(
            get(&export, path("f", true), "user.none", 64),
            Err(Errno::ENODATA)
        );
        assert_eq!(
            set(&export, path("f", true), "user.a", b"x", libc::XATTR_CREATE),
            Err(Errno::EEXIST)
        );
        assert_eq!(
            set(
                &export,
                path("f", true),
                "user.b",
                b"x",
                libc::XATTR_REPLACE
            ),
            Err(Errno::ENODATA)
        );
        assert_eq!(
            set(&export, path("f", true), "user.b", b"", 0),
            Ok(Reply::Done)
        );

        let list = |target, size| export.run(Request::ListXattr { target, size });
        let mut expected = vec![0u8; 256];
        let n = rustix::fs::listxattr(export.host("f"), &mut expected[..]).expect("listxattr");
        expected.truncate(n);
        assert_eq!(
            list(path("f", true), 0),
            Ok(Reply::Count(u64::try_from(n).expect("n")))
        );
        assert_eq!(
            list(path("l", true), 4096),
            Ok(Reply::Data(expected.clone()))
        );
        assert_eq!(list(path("f", true), 1), Err(Errno::ERANGE));

        let h = export.open("f", libc::O_RDONLY, 0);
        let by_handle = XattrTarget::Handle(h);
        assert_eq!(list(by_handle.clone(), 4096), Ok(Reply::Data(expected)));
        assert_eq!(
            get(&export, by_handle.clone(), "user.a", 0),
            Ok(Reply::Count(5))
        );
        assert_eq!(
            set(&export, by_handle.clone(), "user.c", b"1", 0),
            Ok(Reply::Done)
        );
        let remove = |target, name: &str| {
            export.run(Request::RemoveXattr {
                target,
                name: name.as_bytes().to_vec(),
            })
        };
        assert_eq!(remove(by_handle, "user.c"), Ok(Reply::Done));
        assert_eq!(remove(path("l", true), "user.a"), Ok(Reply::Done));
        assert_eq!(remove(path("f", true), "user.a"), Err(Errno::ENODATA));
        let gone = rustix::fs::getxattr(export.host("f"), "user.a", &mut [0u8; 16][..]);
        assert_eq!(gone.map_err(Errno::from), Err(Errno::ENODATA));
    }

    /// `follow == false` must address the symlink itself, as `l*xattr` do.
    #[test]
    fn nofollow_addresses_the_symlink_itself() {
        let export = Export::new();
        export.write("f", b"");
        export.symlink("f", "l");
        rustix::fs::setxattr(export.host("f"), "user.a", b"v", XattrFlags::empty())
            .expect("setxattr");

        let host_get = rustix::fs::lgetxattr_query(export.host("l"), "user.a").map_err(Errno::from);
        let ours = get(&export, path("l", false), "user.a", 0);
        assert_eq!(ours.clone().err(), host_get.err());
        assert!(ours.is_err(), "the target's xattr must not show through");

        let mut host_list = vec![0u8; 256];
        let n = rustix::fs::llistxattr(export.host("l"), &mut host_list[..]).expect("llistxattr");
        host_list.truncate(n);
        let ours = export.run(Request::ListXattr {
            target: path("l", false),
            size: 256,
        });
        assert_eq!(ours, Ok(Reply::Data(host_list)));

        let host_set = rustix::fs::lsetxattr(export.host("l"), "user.b", b"v", XattrFlags::empty())
            .map_err(Errno::from);
        let ours = set(&export, path("l", false), "user.b", b"v", 0);
        assert_eq!(ours.err(), host_set.err());
        let followed = get(&export, path("l", true), "user.a", 16);
        assert_eq!(followed, Ok(Reply::Data(b"v".to_vec())));
    }

    #[test]
    fn names_flags_and_sizes_are_checked() {
        let export = Export::new();
        export.write("f", b"");
        assert_eq!(get(&export, path("f", true), "", 0), Err(Errno::ERANGE));
        let long = format!("user.{}", "n".repeat(MAX_XATTR_NAME));
        assert_eq!(get(&export, path("f", true), &long, 0), Err(Errno::ERANGE));
        assert_eq!(
            get(&export, path("f", true), "user.\0", 0),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            set(&export, path("f", true), "user.a", b"", 4),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            set(&export, path("f", true), "user.a", b"", -1),
            Err(Errno::EINVAL)
        );
        let huge = vec![0u8; usize::try_from(MAX_XATTR_VALUE).expect("usize") + 1];
        assert_eq!(
            set(&export, path("f", true), "user.a", &huge, 0),
            Err(Errno::E2BIG)
        );
        let bad = XattrTarget::Handle(Handle(99));
        assert_eq!(get(&export, bad.clone(), "user.a", 0), Err(Errno::EBADF));
        let list = export.run(Request::ListXattr {
            target: bad,
            size: u32::MAX,
        });
        assert_eq!(list, Err(Errno::EBADF));
        let escape = XattrTarget::Path {
            path: RemotePath(b"../outside/secret".to_vec()),
            follow: true,
        };
        assert_eq!(get(&export, escape, "user.a", 0), Err(Errno::ENOENT));
    }
}
