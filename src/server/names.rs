//! Names: unlink, rename, link, symlink, readlink.
//!
//! Each acts on a last component beside its confined parent
//! ([`Root::entry`]), so no name is ever resolved outside the root.

use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, RenameFlags};

use super::resolve::{Entry, Named, Root, checked_bytes, proc_fd_path};
use crate::errno::Errno;
use crate::proto::{RemotePath, Reply, Response};

/// `unlinkat(2)`.
pub(super) fn unlink(root: &Root, path: &RemotePath) -> Response {
    match root.entry(path)? {
        Entry::Named(named) => {
            rustix::fs::unlinkat(named.dir.as_fd(), &named.name, AtFlags::empty())?;
            Ok(Reply::Done)
        }
        Entry::Special(_) => Err(Errno::EISDIR),
    }
}

/// `renameat2(2)`; only `RENAME_NOREPLACE` and `RENAME_EXCHANGE` are
/// accepted (`RENAME_WHITEOUT` is for overlay filesystems, not programs).
pub(super) fn rename(root: &Root, from: &RemotePath, to: &RemotePath, flags: u32) -> Response {
    let allowed = RenameFlags::NOREPLACE | RenameFlags::EXCHANGE;
    let flags = RenameFlags::from_bits(flags)
        .filter(|f| allowed.contains(*f))
        .ok_or(Errno::EINVAL)?;
    let from = root.entry(from)?;
    let to = root.entry(to)?;
    match (from, to) {
        (Entry::Named(from), Entry::Named(to)) => {
            rustix::fs::renameat_with(
                from.dir.as_fd(),
                &from.name,
                to.dir.as_fd(),
                &to.name,
                flags,
            )?;
            Ok(Reply::Done)
        }
        // Linux refuses to rename `/`, `.` or `..`, or onto them.
        _ => Err(Errno(libc::EBUSY)),
    }
}

/// `linkat(2)`. The new name is created beside its confined parent. The
/// existing file is either a plain name beside its parent (not following),
/// or resolved in the root and linked through its `/proc/self/fd` link with
/// `AT_SYMLINK_FOLLOW`, which needs no `CAP_DAC_READ_SEARCH`, unlike
/// `AT_EMPTY_PATH`.
pub(super) fn link(root: &Root, from: &RemotePath, to: &RemotePath, follow: bool) -> Response {
    let source = if follow {
        Source::Resolved(root.target(from, true)?)
    } else {
        match root.entry(from)? {
            Entry::Named(named) if !named.dir_only => Source::Name(named),
            // Trailing slashes make Linux follow the name; `.` and `..` are
            // directories, which the kernel then refuses (EPERM).
            _ => Source::Resolved(root.target(from, true)?),
        }
    };
    let Entry::Named(to) = root.entry(to)? else {
        return Err(Errno::EEXIST);
    };
    match source {
        Source::Name(from) => rustix::fs::linkat(
            from.dir.as_fd(),
            &from.name,
            to.dir.as_fd(),
            &to.name,
            AtFlags::empty(),
        )?,
        Source::Resolved(fd) => rustix::fs::linkat(
            rustix::fs::CWD,
            proc_fd_path(fd.as_fd()),
            to.dir.as_fd(),
            &to.name,
            AtFlags::SYMLINK_FOLLOW,
        )?,
    }
    Ok(Reply::Done)
}

/// Where [`link`] finds the existing file.
enum Source<'r> {
    Name(Named<'r>),
    Resolved(OwnedFd),
}

/// `symlinkat(2)`: the target is stored as given; it is only ever
/// resolved later, and then within the root like any other path.
pub(super) fn symlink(root: &Root, target: &[u8], path: &RemotePath) -> Response {
    let target = checked_bytes(target)?;
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    match root.entry(path)? {
        Entry::Named(named) => {
            rustix::fs::symlinkat(target, named.dir.as_fd(), &named.name)?;
            Ok(Reply::Done)
        }
        Entry::Special(_) => Err(Errno::EEXIST),
    }
}

/// `readlinkat(2)`, returning the whole target.
pub(super) fn readlink(root: &Root, path: &RemotePath) -> Response {
    match root.entry(path)? {
        Entry::Named(named) if !named.dir_only => {
            let target = rustix::fs::readlinkat(named.dir.as_fd(), &named.name, Vec::new())?;
            Ok(Reply::Data(target.into_bytes()))
        }
        Entry::Named(_) => {
            // A trailing slash follows the link (within the root) to a
            // directory, which is no symlink; resolving it gives ENOENT or
            // ENOTDIR first, as Linux does.
            root.target(path, true)?;
            Err(Errno::EINVAL)
        }
        Entry::Special(_) => Err(Errno::EINVAL),
    }
}
