//! Names: unlink, rename, link, symlink, readlink.
//!
//! Each acts on a last component beside its confined parent
//! ([`Root::entry`]), so no name is ever resolved outside the root. The one
//! source that is no path, an open handle given a name ([`link_handle`]),
//! is a file the session opened beneath the root.
//!
//! Must not resolve a path any other way.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{AtFlags, FileType, Mode, RenameFlags};

use super::executor::{Scope, misrouted};
use super::handles::Handles;
use super::resolve::{Entry, Named, Root, checked_bytes, proc_fd_path};
use crate::errno::Errno;
use crate::proto::{RemotePath, Reply, Request, Response};

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

/// [`Request::LinkHandle`]: gives the open file `handle` (an `O_TMPFILE`
/// file among others) the name `to`, created beside its confined parent.
///
/// No path is resolved for the source: the handle is a file this session
/// opened beneath the root, so the new name cannot reach outside it. With
/// `empty_path` it is the program's own `AT_EMPTY_PATH` call, whose
/// `CAP_DAC_READ_SEARCH` the kernel checks against this thread (which holds
/// the caller's capabilities, at most the server's); otherwise the
/// `/proc/self/fd` link followed, which needs no privilege. Either way the
/// kernel refuses an `O_TMPFILE | O_EXCL` file (ENOENT) and a directory
/// (EPERM), and a file on another file system (EXDEV).
pub(super) fn link_handle(
    handles: &Handles,
    root: &Root,
    handle: crate::proto::Handle,
    to: &RemotePath,
    empty_path: bool,
) -> Response {
    let file = handles.get(handle)?;
    let Entry::Named(to) = root.entry(to)? else {
        return Err(Errno::EEXIST);
    };
    link_fd(file.as_fd(), &to, empty_path)?;
    Ok(Reply::Done)
}

/// `linkat(2)` of the open file `fd` to `to`, the way [`link_handle`] says.
fn link_fd(fd: BorrowedFd<'_>, to: &Named<'_>, empty_path: bool) -> Result<(), Errno> {
    if empty_path {
        rustix::fs::linkat(fd, c"", to.dir.as_fd(), &to.name, AtFlags::EMPTY_PATH)?;
    } else {
        rustix::fs::linkat(
            rustix::fs::CWD,
            proc_fd_path(fd),
            to.dir.as_fd(),
            &to.name,
            AtFlags::SYMLINK_FOLLOW,
        )?;
    }
    Ok(())
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

/// `mknodat(2)` on the confined parent. The kernel checks the caller's
/// right to make device nodes (`CAP_MKNOD`) and applies its umask.
pub(super) fn mknod(root: &Root, path: &RemotePath, mode: u32, dev: u32) -> Response {
    // As the kernel's `may_mknod`, before the path is looked at.
    let kind = match mode & libc::S_IFMT {
        0 | libc::S_IFREG => FileType::RegularFile,
        libc::S_IFCHR => FileType::CharacterDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        libc::S_IFIFO => FileType::Fifo,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFDIR => return Err(Errno::EPERM),
        _ => return Err(Errno::EINVAL),
    };
    match root.entry(path)? {
        Entry::Named(named) => {
            let perm = Mode::from_raw_mode(mode & 0o7777);
            rustix::fs::mknodat(named.dir.as_fd(), &named.name, kind, perm, u64::from(dev))?;
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

/// Runs one request on names (routed here by the executor).
pub(super) fn execute(scope: &Scope<'_>, req: Request) -> Response {
    let root = scope.root;
    match req {
        Request::Readlink { path } => readlink(root, &path),
        Request::Mknod { path, mode, dev } => mknod(root, &path, mode, dev),
        Request::Unlink { path } => unlink(root, &path),
        Request::Rename { from, to, flags } => rename(root, &from, &to, flags),
        Request::Link { from, to, follow } => link(root, &from, &to, follow),
        Request::LinkHandle {
            handle,
            to,
            empty_path,
        } => link_handle(scope.handles, root, handle, &to, empty_path),
        Request::Symlink { target, path } => symlink(root, &target, &path),
        other => misrouted(&other),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::proto::Request;
    use crate::server::testutil::{Export, rp};

    #[test]
    fn unlink_removes_names_but_not_directories() {
        let export = Export::new();
        export.write("f", b"");
        export.mkdir("d");
        export.symlink("d", "dl");
        let unlink = |path: &str| export.run(Request::Unlink { path: rp(path) });
        assert_eq!(unlink("f/"), Err(Errno::ENOTDIR));
        assert_eq!(unlink("f"), Ok(Reply::Done));
        assert!(!export.host("f").exists());
        assert_eq!(unlink("d"), Err(Errno::EISDIR));
        assert_eq!(unlink("/"), Err(Errno::EISDIR));
        assert_eq!(unlink("dl"), Ok(Reply::Done));
        assert!(export.host("d").is_dir(), "unlink removes the link only");
        assert_eq!(unlink("missing"), Err(Errno::ENOENT));
    }

    #[test]
    fn rename_honours_its_flags() {
        let export = Export::new();
        export.write("a", b"a");
        export.write("b", b"b");
        let rename = |from: &str, to: &str, flags| {
            export.run(Request::Rename {
                from: rp(from),
                to: rp(to),
                flags,
            })
        };
        assert_eq!(rename("a", "b", libc::RENAME_NOREPLACE), Err(Errno::EEXIST));
        assert_eq!(rename("a", "b", libc::RENAME_EXCHANGE), Ok(Reply::Done));
        assert_eq!(std::fs::read(export.host("a")).expect("a"), b"b");
        assert_eq!(std::fs::read(export.host("b")).expect("b"), b"a");
        assert_eq!(rename("a", "c", 0), Ok(Reply::Done));
        assert_eq!(std::fs::read(export.host("c")).expect("c"), b"b");
        assert_eq!(rename("c", "d", 0x80), Err(Errno::EINVAL));
        assert_eq!(rename("c", "d", libc::RENAME_WHITEOUT), Err(Errno::EINVAL));
        assert_eq!(rename("missing", "d", 0), Err(Errno::ENOENT));
        assert_eq!(rename("c", "/", 0), Err(Errno(libc::EBUSY)));
        export.mkdir("dir");
        assert_eq!(rename("dir/", "dir2/", 0), Ok(Reply::Done));
        assert_eq!(rename("c/", "e", 0), Err(Errno::ENOTDIR));
    }

    #[test]
    fn link_follows_only_when_asked() {
        let export = Export::new();
        export.write("f", b"f");
        export.symlink("f", "l");
        let link = |from: &str, to: &str, follow| {
            export.run(Request::Link {
                from: rp(from),
                to: rp(to),
                follow,
            })
        };
        assert_eq!(link("l", "l2", false), Ok(Reply::Done));
        let l = std::fs::symlink_metadata(export.host("l")).expect("l");
        let l2 = std::fs::symlink_metadata(export.host("l2")).expect("l2");
        assert_eq!(l.ino(), l2.ino(), "the symlink itself was linked");
        assert_eq!(link("l", "f2", true), Ok(Reply::Done));
        let f = std::fs::metadata(export.host("f")).expect("f");
        let f2 = std::fs::symlink_metadata(export.host("f2")).expect("f2");
        assert_eq!(f.ino(), f2.ino(), "the target was linked");
        assert_eq!(f2.nlink(), 2);
        assert_eq!(link("f", "f2", false), Err(Errno::EEXIST));
        assert_eq!(link("missing", "x", false), Err(Errno::ENOENT));
        assert_eq!(link("missing", "x", true), Err(Errno::ENOENT));
        export.mkdir("d");
        assert_eq!(link("d", "d2", false), Err(Errno::EPERM));
        assert_eq!(link("f", "/", false), Err(Errno::EEXIST));
        assert_eq!(link("f/", "x", false), Err(Errno::ENOTDIR));
    }

    #[test]
    fn link_handle_names_an_o_tmpfile_file_inside_the_root() {
        let export = Export::new();
        export.mkdir("d");
        let h = export.open("d", libc::O_TMPFILE | libc::O_RDWR, 0o640);
        let wrote = export.run(Request::Write {
            handle: h,
            data: b"made unnamed".to_vec(),
        });
        assert_eq!(wrote, Ok(Reply::Count(12)));
        let link = |handle, to: &str, empty_path| {
            export.run(Request::LinkHandle {
                handle,
                to: rp(to),
                empty_path,
            })
        };
        assert_eq!(link(h, "d/named", false), Ok(Reply::Done));
        assert_eq!(
            std::fs::read(export.host("d/named")).expect("named"),
            b"made unnamed"
        );
        // `AT_EMPTY_PATH` is the kernel's to allow, as for the program.
        let privileged = rustix::thread::capabilities(None).is_ok_and(|c| {
            c.effective
                .contains(rustix::thread::CapabilitySet::DAC_READ_SEARCH)
        });
        let want = if privileged {
            Ok(Reply::Done)
        } else {
            Err(Errno::ENOENT)
        };
        assert_eq!(link(h, "again", true), want);
        assert_eq!(link(h, "d/named", false), Err(Errno::EEXIST));
        assert_eq!(link(h, "/", false), Err(Errno::EEXIST));
        assert_eq!(link(h, "missing/x", false), Err(Errno::ENOENT));
        // New names stay beneath the root, whatever they spell.
        assert_eq!(link(h, "../../escaped", false), Ok(Reply::Done));
        assert!(export.host("escaped").is_file());
        assert_eq!(export.outside_names(), ["secret"]);
        // `O_EXCL` makes a file that may never be named.
        let excl = export.open("d", libc::O_TMPFILE | libc::O_RDWR | libc::O_EXCL, 0o600);
        assert_eq!(link(excl, "d/excl", false), Err(Errno::ENOENT));
        assert_eq!(link(excl, "d/excl", true), Err(Errno::ENOENT));
        let dir = export.open("d", libc::O_RDONLY | libc::O_DIRECTORY, 0);
        assert_eq!(link(dir, "d2", false), Err(Errno::EPERM));
        assert_eq!(
            link(crate::proto::Handle(999), "x", false),
            Err(Errno::EBADF)
        );
    }

    #[test]
    fn symlink_and_readlink_round_trip() {
        let export = Export::new();
        let target = b"../../some/where/../x";
        let made = export.run(Request::Symlink {
            target: target.to_vec(),
            path: rp("s"),
        });
        assert_eq!(made, Ok(Reply::Done));
        let on_disk = std::fs::read_link(export.host("s")).expect("read_link");
        assert_eq!(on_disk.as_os_str().as_encoded_bytes(), target);
        let read = export.run(Request::Readlink { path: rp("s") });
        assert_eq!(read, Ok(Reply::Data(target.to_vec())));

        let long = vec![b'x'; 4000];
        let made = export.run(Request::Symlink {
            target: long.clone(),
            path: rp("long"),
        });
        assert_eq!(made, Ok(Reply::Done));
        let read = export.run(Request::Readlink { path: rp("long") });
        assert_eq!(read, Ok(Reply::Data(long)));

        let symlink = |target: &[u8], path: &str| {
            export.run(Request::Symlink {
                target: target.to_vec(),
                path: rp(path),
            })
        };
        assert_eq!(symlink(b"x", "s"), Err(Errno::EEXIST));
        assert_eq!(symlink(b"", "e"), Err(Errno::ENOENT));
        assert_eq!(symlink(b"a\0b", "e"), Err(Errno::EINVAL));
        assert_eq!(symlink(&[b'a'; 5000], "e"), Err(Errno::ENAMETOOLONG));
        assert_eq!(symlink(b"x", "."), Err(Errno::EEXIST));

        export.write("f", b"");
        export.mkdir("d");
        export.symlink("d", "dl");
        let readlink = |path: &str| export.run(Request::Readlink { path: rp(path) });
        assert_eq!(readlink("f"), Err(Errno::EINVAL));
        assert_eq!(readlink("d"), Err(Errno::EINVAL));
        assert_eq!(readlink("/"), Err(Errno::EINVAL));
        assert_eq!(readlink("dl/"), Err(Errno::EINVAL));
        assert_eq!(readlink("missing"), Err(Errno::ENOENT));
        assert_eq!(readlink("s/"), Err(Errno::ENOENT));
    }
}
