//! Directories: getdents, mkdir, rmdir, and the chdir check.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{Access, AtFlags, Mode, OFlags};

use super::resolve::{Entry, Root, Special, proc_fd_path};
use crate::errno::Errno;
use crate::proto::{DirEntry, MAX_DIRENTS_BYTES, RemotePath, Reply, Response};

/// Bytes of `struct linux_dirent64` before `d_name`: ino, off, reclen, type.
const DIRENT_HEADER: usize = 8 + 8 + 2 + 1;

/// `getdents64(2)`: exactly one call, with a buffer of the client's size
/// (capped at [`MAX_DIRENTS_BYTES`]). Records have the same size wherever
/// they are encoded, so whatever this returns fits the client's buffer
/// again, and the directory offset moves past exactly what it returns. A
/// buffer too small for the next entry gets the kernel's own `EINVAL`.
pub(super) fn getdents(fd: BorrowedFd<'_>, bytes: u32) -> Response {
    let len = usize::try_from(bytes.min(MAX_DIRENTS_BYTES)).map_err(|_| Errno::EINVAL)?;
    let mut buf = vec![0; len];
    let filled = crate::sys::server::getdents64(fd, &mut buf)?;
    let records = buf.get(..filled).ok_or(Errno::EIO)?;
    Ok(Reply::Dirents(parse_dirents(records)?))
}

/// Decodes `struct linux_dirent64` records. A malformed record (which only
/// a kernel bug could produce) is `EIO`, never a panic.
fn parse_dirents(mut records: &[u8]) -> Result<Vec<DirEntry>, Errno> {
    let mut entries = Vec::new();
    while !records.is_empty() {
        let header = records.get(..DIRENT_HEADER).ok_or(Errno::EIO)?;
        let word = |at: usize| -> Result<[u8; 8], Errno> {
            header
                .get(at..at + 8)
                .and_then(|b| b.try_into().ok())
                .ok_or(Errno::EIO)
        };
        let ino = u64::from_ne_bytes(word(0)?);
        let off = i64::from_ne_bytes(word(8)?);
        let reclen = usize::from(u16::from_ne_bytes([header[16], header[17]]));
        let kind = header[18];
        if reclen < DIRENT_HEADER {
            return Err(Errno::EIO);
        }
        let record = records.get(..reclen).ok_or(Errno::EIO)?;
        let name_field = &record[DIRENT_HEADER..];
        let name_len = name_field.iter().position(|&b| b == 0).ok_or(Errno::EIO)?;
        entries.push(DirEntry {
            ino,
            off,
            kind,
            name: name_field[..name_len].to_vec(),
        });
        records = &records[reclen..];
    }
    Ok(entries)
}

/// `mkdirat(2)` on the confined parent.
pub(super) fn mkdir(root: &Root, path: &RemotePath, mode: u32) -> Response {
    match root.entry(path)? {
        Entry::Named(named) => {
            let mode = Mode::from_raw_mode(mode & 0o7777);
            rustix::fs::mkdirat(named.dir.as_fd(), &named.name, mode)?;
            Ok(Reply::Done)
        }
        // `/`, `.` and `..` all exist already.
        Entry::Special(_) => Err(Errno::EEXIST),
    }
}

/// `unlinkat(2)` with `AT_REMOVEDIR` on the confined parent.
pub(super) fn rmdir(root: &Root, path: &RemotePath) -> Response {
    match root.entry(path)? {
        Entry::Named(named) => {
            rustix::fs::unlinkat(named.dir.as_fd(), &named.name, AtFlags::REMOVEDIR)?;
            Ok(Reply::Done)
        }
        // The kernel's answers for LAST_ROOT, LAST_DOT and LAST_DOTDOT.
        Entry::Special(Special::Root) => Err(Errno(libc::EBUSY)),
        Entry::Special(Special::Dot) => Err(Errno::EINVAL),
        Entry::Special(Special::DotDot) => Err(Errno::ENOTEMPTY),
    }
}

/// The `chdir(2)` check: a directory the server may search.
pub(super) fn check_dir(root: &Root, path: &RemotePath) -> Response {
    let dir = root.open(path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    // chdir checks search permission with the caller's effective ids.
    rustix::fs::accessat(
        rustix::fs::CWD,
        proc_fd_path(dir.as_fd()),
        Access::EXEC_OK,
        AtFlags::EACCESS,
    )?;
    Ok(Reply::Done)
}
