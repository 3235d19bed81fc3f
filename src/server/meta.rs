//! Metadata: stat, access, chmod, chown, utimens, statfs.
//!
//! Path forms resolve to an `O_PATH` fd first ([`Root::target`]) and act on
//! that fd, so the object checked is the object changed.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{Access, AtFlags, Gid, Mode, StatxFlags, Timespec, Timestamps, Uid};

use super::resolve::{Root, proc_fd_path};
use crate::errno::Errno;
use crate::proto::{RemotePath, Reply, Response, Stat, Statfs, TimeUpdate, Timespec as WireTime};

/// Permission bits `chmod(2)` may set (`S_IALLUGO`); the kernel ignores the rest.
const MODE_BITS: u32 = 0o7777;

/// `statx(2)` of an open fd (`AT_EMPTY_PATH`), with every field [`Stat`] has.
pub(super) fn stat_fd(fd: BorrowedFd<'_>) -> Result<Stat, Errno> {
    let mask = StatxFlags::BASIC_STATS | StatxFlags::BTIME | StatxFlags::MNT_ID;
    let stx = rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, mask)?;
    let got = StatxFlags::from_bits_retain(stx.stx_mask);
    let time = |t: rustix::fs::StatxTimestamp| WireTime {
        sec: t.tv_sec,
        nsec: t.tv_nsec,
    };
    Ok(Stat {
        dev_major: stx.stx_dev_major,
        dev_minor: stx.stx_dev_minor,
        ino: stx.stx_ino,
        mode: u32::from(stx.stx_mode),
        nlink: u64::from(stx.stx_nlink),
        uid: stx.stx_uid,
        gid: stx.stx_gid,
        rdev_major: stx.stx_rdev_major,
        rdev_minor: stx.stx_rdev_minor,
        size: stx.stx_size,
        blksize: stx.stx_blksize,
        blocks: stx.stx_blocks,
        atime: time(stx.stx_atime),
        mtime: time(stx.stx_mtime),
        ctime: time(stx.stx_ctime),
        btime: got.contains(StatxFlags::BTIME).then(|| time(stx.stx_btime)),
        mnt_id: if got.contains(StatxFlags::MNT_ID) {
            stx.stx_mnt_id
        } else {
            0
        },
        attributes: stx.stx_attributes.bits(),
        attributes_mask: stx.stx_attributes_mask.bits(),
    })
}

/// `stat(2)` / `lstat(2)`.
pub(super) fn stat(root: &Root, path: &RemotePath, follow: bool) -> Response {
    let fd = root.target(path, follow)?;
    Ok(Reply::Stat(stat_fd(fd.as_fd())?))
}

/// `fstat(2)`.
pub(super) fn fstat(fd: BorrowedFd<'_>) -> Response {
    Ok(Reply::Stat(stat_fd(fd)?))
}

/// `faccessat2(2)`.
pub(super) fn access(
    root: &Root,
    path: &RemotePath,
    mode: i32,
    flags: i32,
    read_only: bool,
) -> Response {
    let known = libc::AT_EACCESS | libc::AT_SYMLINK_NOFOLLOW | libc::AT_EMPTY_PATH;
    if flags & !known != 0 || mode & !(libc::R_OK | libc::W_OK | libc::X_OK) != 0 {
        return Err(Errno::EINVAL);
    }
    let follow = flags & libc::AT_SYMLINK_NOFOLLOW == 0;
    let fd = root.target(path, follow)?;
    if read_only && mode & libc::W_OK != 0 {
        // As on a read-only mount: files, directories and symlinks are not
        // writable whatever their mode; devices and fifos still are.
        let kind = stat_fd(fd.as_fd())?.mode & libc::S_IFMT;
        if [libc::S_IFREG, libc::S_IFDIR, libc::S_IFLNK].contains(&kind) {
            return Err(Errno::EROFS);
        }
    }
    let access = Access::from_bits_retain(u32::try_from(mode).map_err(|_| Errno::EINVAL)?);
    let mut at = AtFlags::empty();
    if flags & libc::AT_EACCESS != 0 {
        at |= AtFlags::EACCESS;
    }
    // Following the fd's magic link reaches exactly the resolved object, a
    // symlink itself when not following, so no NOFOLLOW is needed here.
    rustix::fs::accessat(rustix::fs::CWD, proc_fd_path(fd.as_fd()), access, at)?;
    Ok(Reply::Done)
}

/// `fchmodat(2)`. Without `follow`, a symlink gets `EOPNOTSUPP`, as from
/// `fchmodat2(AT_SYMLINK_NOFOLLOW)` and glibc's `lchmod`.
pub(super) fn chmod(root: &Root, path: &RemotePath, mode: u32, follow: bool) -> Response {
    let fd = root.target(path, follow)?;
    if !follow && stat_fd(fd.as_fd())?.mode & libc::S_IFMT == libc::S_IFLNK {
        return Err(Errno::EOPNOTSUPP);
    }
    let mode = Mode::from_raw_mode(mode & MODE_BITS);
    rustix::fs::chmodat(
        rustix::fs::CWD,
        proc_fd_path(fd.as_fd()),
        mode,
        AtFlags::empty(),
    )?;
    Ok(Reply::Done)
}

/// `fchmod(2)`.
pub(super) fn fchmod(fd: BorrowedFd<'_>, mode: u32) -> Response {
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & MODE_BITS))?;
    Ok(Reply::Done)
}

/// `fchownat(2)` with `AT_EMPTY_PATH` on the resolved fd.
pub(super) fn chown(root: &Root, path: &RemotePath, uid: u32, gid: u32, follow: bool) -> Response {
    let fd = root.target(path, follow)?;
    let (uid, gid) = ids(uid, gid);
    rustix::fs::chownat(fd.as_fd(), c"", uid, gid, AtFlags::EMPTY_PATH)?;
    Ok(Reply::Done)
}

/// `fchown(2)`.
pub(super) fn fchown(fd: BorrowedFd<'_>, uid: u32, gid: u32) -> Response {
    let (uid, gid) = ids(uid, gid);
    rustix::fs::fchown(fd, uid, gid)?;
    Ok(Reply::Done)
}

/// `utimensat(2)`, through the fd's `/proc/self/fd` link because
/// `AT_EMPTY_PATH` is not accepted by every kernel we may run on.
pub(super) fn utimens(
    root: &Root,
    path: &RemotePath,
    times: [TimeUpdate; 2],
    follow: bool,
) -> Response {
    let fd = root.target(path, follow)?;
    rustix::fs::utimensat(
        rustix::fs::CWD,
        proc_fd_path(fd.as_fd()),
        &timestamps(times),
        AtFlags::empty(),
    )?;
    Ok(Reply::Done)
}

/// `futimens(3)`.
pub(super) fn futimens(fd: BorrowedFd<'_>, times: [TimeUpdate; 2]) -> Response {
    rustix::fs::futimens(fd, &timestamps(times))?;
    Ok(Reply::Done)
}

/// `statfs(2)`: `fstatfs(2)` of the resolved `O_PATH` fd.
pub(super) fn statfs(root: &Root, path: &RemotePath) -> Response {
    let fd = root.target(path, true)?;
    fstatfs(fd.as_fd())
}

/// `fstatfs(2)`.
pub(super) fn fstatfs(fd: BorrowedFd<'_>) -> Response {
    let st = rustix::fs::fstatfs(fd)?;
    Ok(Reply::Statfs(Statfs {
        fs_type: st.f_type,
        bsize: st.f_bsize,
        blocks: st.f_blocks,
        bfree: st.f_bfree,
        bavail: st.f_bavail,
        files: st.f_files,
        ffree: st.f_ffree,
        fsid: crate::sys::server::fsid_words(st.f_fsid),
        namelen: st.f_namelen,
        frsize: st.f_frsize,
        flags: st.f_flags,
    }))
}

/// `u32::MAX` is chown's "leave unchanged", which rustix spells `None`.
fn ids(uid: u32, gid: u32) -> (Option<Uid>, Option<Gid>) {
    let uid = (uid != u32::MAX).then(|| Uid::from_raw(uid));
    let gid = (gid != u32::MAX).then(|| Gid::from_raw(gid));
    (uid, gid)
}

fn timestamps([atime, mtime]: [TimeUpdate; 2]) -> Timestamps {
    let spec = |t: TimeUpdate| match t {
        TimeUpdate::Now => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        },
        TimeUpdate::Omit => Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        // An out-of-range nsec is passed on: the kernel answers EINVAL.
        TimeUpdate::At(t) => Timespec {
            tv_sec: t.sec,
            tv_nsec: i64::from(t.nsec),
        },
    };
    Timestamps {
        last_access: spec(atime),
        last_modification: spec(mtime),
    }
}
