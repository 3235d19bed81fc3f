//! Extended attributes: the `getxattr(2)`, `listxattr(2)`, `setxattr(2)` and
//! `removexattr(2)` families.
//!
//! A path target is resolved to an `O_PATH` fd and addressed through its
//! `/proc/self/fd` link with the *following* calls: that link leads to
//! exactly the resolved object, which for `follow == false` on a symlink is
//! the symlink itself, so the follow variants act as the `l*xattr` calls do.
//! (The `l*xattr` calls on the link would address the `/proc` entry.)

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

use rustix::fs::XattrFlags;

use super::handles::Handles;
use super::resolve::{Root, proc_fd_path};
use crate::errno::Errno;
use crate::proto::{MAX_XATTR_NAME, MAX_XATTR_VALUE, Reply, Response, XattrTarget};

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
