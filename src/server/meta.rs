//! Metadata: stat, access, chmod, chown, utimens, statfs.
//!
//! Path forms resolve to an `O_PATH` fd first ([`Root::target`]) and act on
//! that fd, so the object checked is the object changed.
//!
//! Must not resolve a path any other way.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{Access, AtFlags, Gid, Mode, StatxFlags, Timespec, Timestamps, Uid};

use super::executor::{Scope, misrouted};
use super::resolve::{Root, proc_fd_path};
use crate::errno::Errno;
use crate::proto::{
    RemotePath, Reply, Request, Response, Stat, Statfs, TimeUpdate, Timespec as WireTime,
};

/// Permission bits `chmod(2)` may set (`S_IALLUGO`); the kernel ignores the rest.
const MODE_BITS: u32 = 0o7777;

/// `statx(2)` of an open fd (`AT_EMPTY_PATH`), with every field [`Stat`] has.
pub(super) fn stat_fd(fd: BorrowedFd<'_>) -> Result<Stat, Errno> {
    statx_at(fd, c"", AtFlags::EMPTY_PATH)
}

/// `lstat(2)` of `name`, one entry of the directory `dir` (a name from its
/// listing: one component, so it cannot leave `dir`).
pub(super) fn lstat_entry(dir: BorrowedFd<'_>, name: &std::ffi::CStr) -> Result<Stat, Errno> {
    statx_at(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

fn statx_at(fd: BorrowedFd<'_>, name: &std::ffi::CStr, flags: AtFlags) -> Result<Stat, Errno> {
    let mask = StatxFlags::BASIC_STATS | StatxFlags::BTIME | StatxFlags::MNT_ID;
    let stx = rustix::fs::statx(fd, name, flags, mask)?;
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

/// `stat(2)` with the prefetched xattrs of the same object, read through
/// its `/proc/self/fd` link (which leads to exactly the resolved object).
pub(super) fn stat_plus(root: &Root, path: &RemotePath, follow: bool) -> Response {
    let fd = root.target(path, follow)?;
    let stat = stat_fd(fd.as_fd())?;
    let xattrs = super::xattr::prefetched(&proc_fd_path(fd.as_fd()), true);
    Ok(Reply::StatPlus { stat, xattrs })
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
    // The executor already runs the call with the ids this check is about
    // (the real ones unless `AT_EACCESS`), as the kernel's access() swaps
    // them in for the whole walk; so the check uses the thread's own.
    let at = AtFlags::EACCESS;
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

/// Runs one metadata request (routed here by the executor).
pub(super) fn execute(scope: &Scope<'_>, req: Request) -> Response {
    let (root, handles) = (scope.root, scope.handles);
    match req {
        Request::Fstat { handle } => fstat(handles.get(handle)?.as_fd()),
        Request::Fchmod { handle, mode } => fchmod(handles.get(handle)?.as_fd(), mode),
        Request::Fchown { handle, uid, gid } => fchown(handles.get(handle)?.as_fd(), uid, gid),
        Request::Futimens { handle, times } => futimens(handles.get(handle)?.as_fd(), times),
        Request::Fstatfs { handle } => fstatfs(handles.get(handle)?.as_fd()),
        Request::Stat { path, follow } => stat(root, &path, follow),
        Request::StatPlus { path, follow } => stat_plus(root, &path, follow),
        Request::Access { path, mode, flags } => access(root, &path, mode, flags, scope.read_only),
        Request::Chmod { path, mode, follow } => chmod(root, &path, mode, follow),
        Request::Chown {
            path,
            uid,
            gid,
            follow,
        } => chown(root, &path, uid, gid, follow),
        Request::Utimens {
            path,
            times,
            follow,
        } => utimens(root, &path, times, follow),
        Request::Statfs { path } => statfs(root, &path),
        other => misrouted(&other),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::proto::Request;
    use crate::server::testutil::{Export, rp};

    fn stat_of(export: &Export, path: &str, follow: bool) -> Result<Stat, Errno> {
        match export.run(Request::Stat {
            path: rp(path),
            follow,
        })? {
            Reply::Stat(stat) => Ok(stat),
            other => panic!("expected stat, got {other:?}"),
        }
    }

    /// Every field, against `statx(2)` run directly on the host path.
    fn assert_same(stat: &Stat, host: &std::path::Path, follow: bool) {
        let flags = if follow {
            AtFlags::empty()
        } else {
            AtFlags::SYMLINK_NOFOLLOW
        };
        let mask = StatxFlags::BASIC_STATS | StatxFlags::BTIME | StatxFlags::MNT_ID;
        let stx = rustix::fs::statx(rustix::fs::CWD, host, flags, mask).expect("statx");
        let expected = stat_fd_of(&stx);
        assert_eq!(*stat, expected, "{}", host.display());
        let meta = if follow {
            std::fs::metadata(host)
        } else {
            std::fs::symlink_metadata(host)
        }
        .expect("metadata");
        assert_eq!(stat.ino, meta.ino());
        assert_eq!(stat.mode, meta.mode());
        assert_eq!(stat.size, meta.size());
        assert_eq!(stat.nlink, meta.nlink());
        assert_eq!(stat.uid, meta.uid());
        assert_eq!(stat.gid, meta.gid());
        assert_eq!(stat.blocks, meta.blocks());
        assert_eq!(stat.mtime.sec, meta.mtime());
        assert_eq!(i64::from(stat.mtime.nsec), meta.mtime_nsec());
        let dev = rustix::fs::makedev(stat.dev_major, stat.dev_minor);
        assert_eq!(dev, meta.dev());
    }

    fn stat_fd_of(stx: &rustix::fs::Statx) -> Stat {
        let time = |t: rustix::fs::StatxTimestamp| WireTime {
            sec: t.tv_sec,
            nsec: t.tv_nsec,
        };
        let got = StatxFlags::from_bits_retain(stx.stx_mask);
        Stat {
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
            mnt_id: stx.stx_mnt_id,
            attributes: stx.stx_attributes.bits(),
            attributes_mask: stx.stx_attributes_mask.bits(),
        }
    }

    #[test]
    fn stat_and_lstat_match_the_host() {
        let export = Export::new();
        export.write("f", b"12345");
        export.mkdir("d");
        export.symlink("f", "l");
        for (path, follow) in [
            ("f", true),
            ("d", true),
            ("l", true),
            ("l", false),
            ("", true),
        ] {
            let stat = stat_of(&export, path, follow).expect("stat");
            assert_same(&stat, &export.host(path), follow);
        }
        assert!(stat_of(&export, "f", true).expect("f").btime.is_some());
        assert_eq!(stat_of(&export, "missing", true), Err(Errno::ENOENT));
        assert_eq!(stat_of(&export, "f/", true), Err(Errno::ENOTDIR));
        assert_eq!(stat_of(&export, "f/x", false), Err(Errno::ENOTDIR));
        let policy = crate::server::creds::Policy::of_this_process(None);
        let dev_null = Executor::new(std::path::Path::new("/dev"), true, policy).expect("/dev");
        let Ok(Reply::Stat(null)) = dev_null.execute(
            None,
            Request::Stat {
                path: rp("null"),
                follow: true,
            },
        ) else {
            panic!("stat /dev/null");
        };
        assert_eq!((null.rdev_major, null.rdev_minor), (1, 3));
    }

    #[test]
    fn fstat_matches_stat() {
        let export = Export::new();
        export.write("f", b"x");
        let h = export.open("f", libc::O_RDONLY, 0);
        let by_handle = export.run(Request::Fstat { handle: h });
        let by_path = stat_of(&export, "f", true).expect("stat");
        assert_eq!(by_handle, Ok(Reply::Stat(by_path)));
        let p = export.open("f", libc::O_PATH, 0);
        assert_eq!(
            export.run(Request::Fstat { handle: p }),
            Ok(Reply::Stat(by_path))
        );
    }

    #[test]
    fn access_checks_and_validates() {
        let export = Export::new();
        export.write("f", b"");
        export.symlink("missing", "dangling");
        let access = |path: &str, mode, flags| {
            export.run(Request::Access {
                path: rp(path),
                mode,
                flags,
            })
        };
        assert_eq!(access("f", libc::F_OK, 0), Ok(Reply::Done));
        assert_eq!(
            access("f", libc::R_OK | libc::W_OK, libc::AT_EACCESS),
            Ok(Reply::Done)
        );
        assert_eq!(access("missing", libc::F_OK, 0), Err(Errno::ENOENT));
        assert_eq!(access("dangling", libc::F_OK, 0), Err(Errno::ENOENT));
        assert_eq!(
            access("dangling", libc::F_OK, libc::AT_SYMLINK_NOFOLLOW),
            Ok(Reply::Done)
        );
        assert_eq!(access("f", 8, 0), Err(Errno::EINVAL));
        assert_eq!(access("f", libc::F_OK, 0x4), Err(Errno::EINVAL));
        // Nobody may execute a file with no x bit, not even root.
        std::fs::set_permissions(
            export.host("f"),
            std::os::unix::fs::PermissionsExt::from_mode(0o644),
        )
        .expect("chmod");
        assert_eq!(access("f", libc::X_OK, 0), Err(Errno::EACCES));
    }

    #[test]
    fn access_for_writing_on_a_read_only_export_is_erofs() {
        let export = Export::read_only();
        std::fs::write(export.host("f"), b"").expect("fixture");
        let access = |mode| {
            export.run(Request::Access {
                path: rp("f"),
                mode,
                flags: 0,
            })
        };
        assert_eq!(access(libc::W_OK), Err(Errno::EROFS));
        assert_eq!(access(libc::R_OK), Ok(Reply::Done));
    }

    #[test]
    fn chmod_follows_or_refuses_symlinks() {
        let export = Export::new();
        export.write("f", b"");
        export.symlink("f", "l");
        let chmod = |path: &str, mode, follow| {
            export.run(Request::Chmod {
                path: rp(path),
                mode,
                follow,
            })
        };
        let mode_of = |path: &str| std::fs::metadata(export.host(path)).expect("f").mode() & 0o7777;
        assert_eq!(chmod("l", 0o640, true), Ok(Reply::Done));
        assert_eq!(mode_of("f"), 0o640);
        assert_eq!(chmod("f", 0o170_604, false), Ok(Reply::Done));
        assert_eq!(mode_of("f"), 0o604);
        assert_eq!(chmod("l", 0o600, false), Err(Errno::EOPNOTSUPP));
        assert_eq!(mode_of("f"), 0o604);
        let h = export.open("f", libc::O_RDONLY, 0);
        assert_eq!(
            export.run(Request::Fchmod {
                handle: h,
                mode: 0o4755
            }),
            Ok(Reply::Done)
        );
        assert_eq!(mode_of("f"), 0o4755);
        assert_eq!(chmod("missing", 0o600, true), Err(Errno::ENOENT));
    }

    #[test]
    fn chown_changes_owners() {
        let export = Export::new();
        export.write("f", b"");
        export.symlink("f", "l");
        let me = std::fs::metadata(export.host("f")).expect("f");
        let (uid, gid) = (me.uid(), me.gid());
        let chown = |path: &str, uid, gid, follow| {
            export.run(Request::Chown {
                path: rp(path),
                uid,
                gid,
                follow,
            })
        };
        assert_eq!(chown("f", uid, gid, true), Ok(Reply::Done));
        assert_eq!(chown("l", u32::MAX, u32::MAX, false), Ok(Reply::Done));
        let h = export.open("f", libc::O_RDONLY, 0);
        let fchown = export.run(Request::Fchown {
            handle: h,
            uid: u32::MAX,
            gid,
        });
        assert_eq!(fchown, Ok(Reply::Done));
        if rustix::process::geteuid().is_root() {
            assert_eq!(chown("l", 1234, 5678, false), Ok(Reply::Done));
            let link = std::fs::symlink_metadata(export.host("l")).expect("l");
            assert_eq!((link.uid(), link.gid()), (1234, 5678));
            let file = std::fs::metadata(export.host("f")).expect("f");
            assert_eq!((file.uid(), file.gid()), (uid, gid));
            assert_eq!(chown("l", 4321, u32::MAX, true), Ok(Reply::Done));
            let file = std::fs::metadata(export.host("f")).expect("f");
            assert_eq!((file.uid(), file.gid()), (4321, gid));
        }
    }

    #[test]
    fn utimens_sets_omits_and_does_not_follow_when_told() {
        let export = Export::new();
        export.write("f", b"");
        export.symlink("f", "l");
        let at = |sec| TimeUpdate::At(WireTime { sec, nsec: 5 });
        let r = export.run(Request::Utimens {
            path: rp("l"),
            times: [at(1000), at(2000)],
            follow: true,
        });
        assert_eq!(r, Ok(Reply::Done));
        let f = std::fs::metadata(export.host("f")).expect("f");
        assert_eq!((f.atime(), f.mtime(), f.mtime_nsec()), (1000, 2000, 5));
        let r = export.run(Request::Utimens {
            path: rp("l"),
            times: [TimeUpdate::Omit, at(3000)],
            follow: false,
        });
        assert_eq!(r, Ok(Reply::Done));
        let l = std::fs::symlink_metadata(export.host("l")).expect("l");
        assert_eq!(l.mtime(), 3000);
        let f = std::fs::metadata(export.host("f")).expect("f");
        assert_eq!((f.atime(), f.mtime()), (1000, 2000));
        let h = export.open("f", libc::O_RDONLY, 0);
        let r = export.run(Request::Futimens {
            handle: h,
            times: [TimeUpdate::Now, TimeUpdate::Omit],
        });
        assert_eq!(r, Ok(Reply::Done));
        let f = std::fs::metadata(export.host("f")).expect("f");
        assert!(f.atime() > 1000);
        assert_eq!(f.mtime(), 2000);
        let bad = TimeUpdate::At(WireTime {
            sec: 0,
            nsec: 2_000_000_000,
        });
        let r = export.run(Request::Futimens {
            handle: h,
            times: [bad, bad],
        });
        assert_eq!(r, Err(Errno::EINVAL));
    }

    #[test]
    fn statfs_matches_the_host() {
        let export = Export::new();
        export.write("f", b"");
        let Ok(Reply::Statfs(st)) = export.run(Request::Statfs { path: rp("f") }) else {
            panic!("statfs");
        };
        let host = rustix::fs::statfs(&export.root).expect("statfs");
        assert_eq!(st.fs_type, host.f_type);
        assert_eq!(st.bsize, host.f_bsize);
        assert_eq!(st.blocks, host.f_blocks);
        assert_eq!(st.files, host.f_files);
        assert_eq!(st.namelen, host.f_namelen);
        assert_eq!(st.flags, host.f_flags);
        assert_eq!(st.fsid, crate::sys::server::fsid_words(host.f_fsid));
        let vfs = rustix::fs::statvfs(&export.root).expect("statvfs");
        let [lo, hi] = st
            .fsid
            .map(|w| u64::from(u32::from_ne_bytes(w.to_ne_bytes())));
        assert_eq!(lo | (hi << 32), vfs.f_fsid);
        let h = export.open("f", libc::O_RDONLY, 0);
        let Ok(Reply::Statfs(by_handle)) = export.run(Request::Fstatfs { handle: h }) else {
            panic!("fstatfs");
        };
        assert_eq!(by_handle.fsid, st.fsid);
        assert_eq!(
            export.run(Request::Statfs {
                path: rp("missing")
            }),
            Err(Errno::ENOENT)
        );
    }

    use crate::server::Executor;
}
