//! Directories: getdents, mkdir, rmdir, and the chdir check.
//!
//! Resolves only through [`super::resolve`]; must not open a path itself.

use std::os::fd::{AsFd, BorrowedFd};

use rustix::fs::{Access, AtFlags, Mode, OFlags};

use super::executor::{Scope, misrouted};
use super::resolve::{Entry, Root, Special, proc_fd_path};
use crate::errno::Errno;
use crate::proto::{
    DirEntry, DirListing, EntryMeta, ListedEntry, MAX_DIRENTS_BYTES, MAX_LISTED_ENTRIES,
    RemotePath, Reply, Request, Response,
};

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

/// The rest of the directory with each entry's metadata: `getdents64` until
/// the end or [`MAX_DIRENTS_BYTES`] of records, then per entry an
/// `lstat`, a `readlink` for symlinks and the prefetched xattrs.
pub(super) fn getdents_plus(fd: BorrowedFd<'_>) -> Response {
    const CHUNK: usize = 64 * 1024;
    let budget = usize::try_from(MAX_DIRENTS_BYTES).map_err(|_| Errno::EINVAL)?;
    let mut buf = vec![0; CHUNK];
    let mut entries = Vec::new();
    let mut used = 0usize;
    let complete = loop {
        if used + CHUNK > budget {
            break false;
        }
        let filled = crate::sys::server::getdents64(fd, &mut buf)?;
        if filled == 0 {
            break true;
        }
        used += filled;
        let records = buf.get(..filled).ok_or(Errno::EIO)?;
        for entry in parse_dirents(records)? {
            let meta = entry_meta(fd, &entry);
            entries.push((entry, meta));
        }
    };
    Ok(Reply::DirentsPlus { entries, complete })
}

/// [`Request::OpenPlus`](crate::proto::Request::OpenPlus): `opened` with
/// the directory's listing when it is a directory. A listing that fails
/// leaves the handle at offset 0 and the plain open reply, so the program's
/// own `getdents64` sees the error (or the entries) as it would have.
pub(super) fn with_listing(handles: &super::handles::Handles, opened: Reply) -> Response {
    let Reply::Opened { handle, stat } = opened else {
        return Ok(opened);
    };
    if stat.mode & libc::S_IFMT != libc::S_IFDIR {
        return Ok(Reply::Opened { handle, stat });
    }
    let fd = handles.get(handle)?;
    match getdents_plus(fd.as_fd()) {
        Ok(Reply::DirentsPlus { entries, complete }) => {
            Ok(Reply::OpenedDir(Box::new(crate::proto::OpenedDir {
                handle,
                stat,
                entries,
                complete,
            })))
        }
        _ => {
            // An `O_PATH` handle cannot be listed or sought; it was not
            // moved either.
            let _ = rustix::fs::seek(&*fd, rustix::fs::SeekFrom::Start(0));
            Ok(Reply::Opened { handle, stat })
        }
    }
}

/// The listing a [`Request::LookupAndList`](crate::proto::Request::LookupAndList)
/// brings: every entry of `dir` with its `lstat` and symlink target, when
/// `dir` is reached without a symlink, the caller may read and search it,
/// and it holds at most [`MAX_LISTED_ENTRIES`] entries.
pub(super) fn listing(root: &Root, dir: &RemotePath) -> DirListing {
    match list(root, dir) {
        Ok(listing) => listing,
        Err(e) => DirListing::Unavailable(e),
    }
}

fn list(root: &Root, dir: &RemotePath) -> Result<DirListing, Errno> {
    const CHUNK: usize = 64 * 1024;
    let fd = root.open_no_symlinks(dir, OFlags::RDONLY | OFlags::DIRECTORY)?;
    // A name's absence proves ENOENT only where the caller may search.
    rustix::fs::accessat(
        rustix::fs::CWD,
        proc_fd_path(fd.as_fd()),
        Access::EXEC_OK,
        AtFlags::EACCESS,
    )?;
    let mut buf = vec![0; CHUNK];
    let mut names = Vec::new();
    loop {
        let filled = crate::sys::server::getdents64(fd.as_fd(), &mut buf)?;
        if filled == 0 {
            break;
        }
        let records = buf.get(..filled).ok_or(Errno::EIO)?;
        for entry in parse_dirents(records)? {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            if names.len() == MAX_LISTED_ENTRIES {
                return Ok(DirListing::TooLarge);
            }
            names.push(entry.name);
        }
    }
    let entries = names
        .into_iter()
        .map(|name| {
            let c_name = std::ffi::CString::new(name.clone()).map_err(|_| Errno::EIO);
            let lstat = c_name
                .as_ref()
                .map_err(|e| *e)
                .and_then(|n| super::meta::lstat_entry(fd.as_fd(), n));
            let is_link = lstat
                .as_ref()
                .is_ok_and(|s| s.mode & libc::S_IFMT == libc::S_IFLNK);
            let link = match (&c_name, is_link) {
                (Ok(n), true) => rustix::fs::readlinkat(fd.as_fd(), n, Vec::new())
                    .ok()
                    .map(std::ffi::CString::into_bytes),
                _ => None,
            };
            ListedEntry { name, lstat, link }
        })
        .collect();
    Ok(DirListing::Complete(entries))
}

fn entry_meta(dir: BorrowedFd<'_>, entry: &DirEntry) -> EntryMeta {
    let name = std::ffi::CString::new(entry.name.clone()).unwrap_or_default();
    let lstat = rustix::fs::openat(
        dir,
        &name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(Errno::from)
    .and_then(|fd| super::meta::stat_fd(fd.as_fd()));
    let is_link = lstat
        .as_ref()
        .is_ok_and(|s| s.mode & libc::S_IFMT == libc::S_IFLNK);
    let link = if is_link {
        rustix::fs::readlinkat(dir, &name, Vec::new())
            .ok()
            .map(std::ffi::CString::into_bytes)
    } else {
        None
    };
    // The entry's path through the directory's magic link: one name, so it
    // cannot leave the directory, and the l* calls do not follow it.
    let mut path = proc_fd_path(dir).into_bytes();
    path.push(b'/');
    path.extend_from_slice(&entry.name);
    let path = std::ffi::CString::new(path).unwrap_or_default();
    let xattrs = super::xattr::prefetched(&path, false);
    EntryMeta {
        lstat,
        link,
        xattrs,
    }
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

/// Runs one directory request (routed here by the executor).
pub(super) fn execute(scope: &Scope<'_>, req: Request) -> Response {
    let (root, handles) = (scope.root, scope.handles);
    match req {
        Request::Getdents { handle, bytes } => getdents(handles.get(handle)?.as_fd(), bytes),
        Request::GetdentsPlus { handle } => getdents_plus(handles.get(handle)?.as_fd()),
        Request::Mkdir { path, mode } => mkdir(root, &path, mode),
        Request::Rmdir { path } => rmdir(root, &path),
        Request::CheckDir { path } => check_dir(root, &path),
        other => misrouted(&other),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::proto::Request;
    use crate::server::testutil::{Export, rp};

    fn dirents(r: Response) -> Vec<DirEntry> {
        match r {
            Ok(Reply::Dirents(d)) => d,
            other => panic!("expected dirents, got {other:?}"),
        }
    }

    /// The size `getdents64` gives a record: header, name, NUL, 8-aligned.
    fn reclen(name: &[u8]) -> usize {
        (DIRENT_HEADER + name.len() + 1).next_multiple_of(8)
    }

    #[test]
    fn getdents_returns_every_name_once_with_a_small_buffer() {
        let export = Export::new();
        export.mkdir("d");
        let mut expected = HashSet::new();
        for i in 0..1000 {
            let name = format!("file-{i:04}");
            export.write(&format!("d/{name}"), b"");
            expected.insert(name.into_bytes());
        }
        expected.insert(b".".to_vec());
        expected.insert(b"..".to_vec());
        let h = export.open("d", libc::O_RDONLY | libc::O_DIRECTORY, 0);
        let bytes = 256;
        let mut seen = HashSet::new();
        let mut calls = 0;
        loop {
            let batch = dirents(export.run(Request::Getdents { handle: h, bytes }));
            if batch.is_empty() {
                break;
            }
            calls += 1;
            let used: usize = batch.iter().map(|e| reclen(&e.name)).sum();
            assert!(used <= 256, "a batch must re-encode into the same buffer");
            for entry in batch {
                assert!(seen.insert(entry.name.clone()), "duplicate {entry:?}");
            }
        }
        assert_eq!(seen, expected);
        assert!(calls > 10);
    }

    #[test]
    fn getdents_matches_std() {
        let export = Export::new();
        export.mkdir("d/sub");
        export.write("d/file", b"");
        export.symlink("file", "d/link");
        let h = export.open("d", libc::O_RDONLY | libc::O_DIRECTORY, 0);
        let entries = dirents(export.run(Request::Getdents {
            handle: h,
            bytes: u32::MAX,
        }));
        for entry in &entries {
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            let name = std::str::from_utf8(&entry.name).expect("utf-8");
            let meta =
                std::fs::symlink_metadata(export.host(&format!("d/{name}"))).expect("metadata");
            use std::os::unix::fs::MetadataExt;
            assert_eq!(entry.ino, meta.ino());
            let kind = match name {
                "sub" => libc::DT_DIR,
                "file" => libc::DT_REG,
                _ => libc::DT_LNK,
            };
            assert_eq!(entry.kind, kind);
        }
        assert_eq!(entries.len(), 5);
        let end = dirents(export.run(Request::Getdents {
            handle: h,
            bytes: 4096,
        }));
        assert!(end.is_empty());
    }

    #[test]
    fn getdents_with_too_small_a_buffer_is_einval() {
        let export = Export::new();
        export.mkdir("d");
        let h = export.open("d", libc::O_RDONLY | libc::O_DIRECTORY, 0);
        for bytes in [0, 1, 8, 23] {
            let r = export.run(Request::Getdents { handle: h, bytes });
            assert_eq!(r, Err(Errno::EINVAL), "{bytes}");
        }
        // Nothing was consumed: the first real call still sees `.`.
        let first = dirents(export.run(Request::Getdents {
            handle: h,
            bytes: 24,
        }));
        assert_eq!(first.len(), 1);
        export.write("file", b"");
        let file = export.open("file", libc::O_RDONLY, 0);
        let r = export.run(Request::Getdents {
            handle: file,
            bytes: 4096,
        });
        assert_eq!(r, Err(Errno::ENOTDIR));
    }

    #[test]
    fn parse_rejects_malformed_records() {
        assert_eq!(parse_dirents(&[0; 5]), Err(Errno::EIO));
        let mut record = vec![0u8; 24];
        record[16] = 4; // reclen shorter than the header
        assert_eq!(parse_dirents(&record), Err(Errno::EIO));
        record[16] = 24;
        record[19..24].copy_from_slice(b"abcde"); // no NUL
        assert_eq!(parse_dirents(&record), Err(Errno::EIO));
        record[16] = 200; // longer than the buffer
        assert_eq!(parse_dirents(&record), Err(Errno::EIO));
    }

    #[test]
    fn mkdir_and_rmdir() {
        let export = Export::new();
        let mkdir = |path: &str| {
            export.run(Request::Mkdir {
                path: rp(path),
                mode: 0o750,
            })
        };
        let rmdir = |path: &str| export.run(Request::Rmdir { path: rp(path) });
        assert_eq!(mkdir("d"), Ok(Reply::Done));
        assert!(export.host("d").is_dir());
        assert_eq!(mkdir("d"), Err(Errno::EEXIST));
        assert_eq!(mkdir("e/"), Ok(Reply::Done));
        assert_eq!(mkdir("missing/x"), Err(Errno::ENOENT));
        assert_eq!(mkdir("/"), Err(Errno::EEXIST));
        assert_eq!(mkdir("d/."), Err(Errno::EEXIST));
        export.write("d/f", b"");
        assert_eq!(rmdir("d"), Err(Errno::ENOTEMPTY));
        assert_eq!(rmdir("d/f"), Err(Errno::ENOTDIR));
        assert_eq!(rmdir("d/."), Err(Errno::EINVAL));
        assert_eq!(rmdir("d/.."), Err(Errno::ENOTEMPTY));
        assert_eq!(rmdir("/"), Err(Errno(libc::EBUSY)));
        assert_eq!(rmdir("e/"), Ok(Reply::Done));
        assert!(!export.host("e").exists());
        export.symlink("d", "dl");
        assert_eq!(rmdir("dl"), Err(Errno::ENOTDIR));
        assert_eq!(rmdir("missing"), Err(Errno::ENOENT));
    }

    #[test]
    fn check_dir_accepts_only_searchable_directories() {
        let export = Export::new();
        export.mkdir("d");
        export.write("f", b"");
        export.symlink("d", "dl");
        let check = |path: &str| export.run(Request::CheckDir { path: rp(path) });
        assert_eq!(check("d"), Ok(Reply::Done));
        assert_eq!(check("dl"), Ok(Reply::Done));
        assert_eq!(check("/"), Ok(Reply::Done));
        assert_eq!(check("f"), Err(Errno::ENOTDIR));
        assert_eq!(check("missing"), Err(Errno::ENOENT));
        if !rustix::process::geteuid().is_root() {
            std::fs::set_permissions(
                export.host("d"),
                std::os::unix::fs::PermissionsExt::from_mode(0o600),
            )
            .expect("chmod");
            assert_eq!(check("d"), Err(Errno::EACCES));
        }
    }

    #[test]
    fn open_plus_lists_a_directory_and_only_a_directory() {
        let export = Export::new();
        export.mkdir("d");
        export.write("d/a", b"12345");
        export.write("f", b"");
        let r = export.run(Request::OpenPlus {
            path: rp("d"),
            flags: libc::O_RDONLY | libc::O_DIRECTORY,
            mode: 0,
        });
        let Ok(Reply::OpenedDir(dir)) = r else {
            panic!("{r:?}")
        };
        let crate::proto::OpenedDir {
            handle,
            stat,
            entries,
            complete,
        } = *dir;
        assert_eq!(stat.mode & libc::S_IFMT, libc::S_IFDIR);
        assert!(complete);
        let names: HashSet<Vec<u8>> = entries.iter().map(|(e, _)| e.name.clone()).collect();
        let expected: HashSet<Vec<u8>> = [&b"."[..], b"..", b"a"]
            .iter()
            .map(|n| n.to_vec())
            .collect();
        assert_eq!(names, expected);
        let (_, a) = entries.iter().find(|(e, _)| e.name == b"a").unwrap();
        assert_eq!(a.lstat.as_ref().map(|s| s.size), Ok(5));
        // The listing consumed the directory, as the prefetch of the
        // program's getdents64 calls.
        let rest = export.run(Request::Getdents {
            handle,
            bytes: 4096,
        });
        assert_eq!(rest, Ok(Reply::Dirents(vec![])));
        let file = export.run(Request::OpenPlus {
            path: rp("f"),
            flags: libc::O_RDONLY,
            mode: 0,
        });
        assert!(matches!(file, Ok(Reply::Opened { .. })), "{file:?}");
    }

    fn looked_up(r: Response) -> crate::proto::LookedUp {
        match r {
            Ok(Reply::LookedUp(l)) => *l,
            other => panic!("expected LookedUp, got {other:?}"),
        }
    }

    fn lookup_and_list(dir: &str, lookup: crate::proto::Lookup) -> Request {
        Request::LookupAndList {
            dir: rp(dir),
            lookup,
        }
    }

    #[test]
    fn lookup_and_list_answers_and_lists_with_metadata() {
        let export = Export::new();
        export.mkdir("d/sub");
        export.write("d/a", b"12345");
        export.symlink("a", "d/l");
        let l = looked_up(export.run(lookup_and_list(
            "/d",
            crate::proto::Lookup::Stat {
                path: rp("/d/a"),
                follow: false,
            },
        )));
        assert!(
            matches!(l.answer, Ok(crate::proto::LookupAnswer::Stat(s)) if s.size == 5),
            "{l:?}"
        );
        let DirListing::Complete(entries) = l.listing else {
            panic!("{:?}", l.listing)
        };
        let mut names: Vec<&[u8]> = entries.iter().map(|e| e.name.as_slice()).collect();
        names.sort_unstable();
        assert_eq!(names, [&b"a"[..], b"l", b"sub"]);
        let get = |n: &[u8]| entries.iter().find(|e| e.name == n).expect("entry");
        assert_eq!(get(b"a").lstat.as_ref().map(|s| s.size), Ok(5));
        assert_eq!(get(b"l").link.as_deref(), Some(&b"a"[..]));
        assert_eq!(
            get(b"sub").lstat.as_ref().map(|s| s.mode & libc::S_IFMT),
            Ok(libc::S_IFDIR)
        );
        // A missing name: the lookup's ENOENT, and the listing all the same.
        let l = looked_up(export.run(lookup_and_list(
            "/d",
            crate::proto::Lookup::Access {
                path: rp("/d/none"),
                mode: libc::F_OK,
                flags: 0,
            },
        )));
        assert_eq!(l.answer, Err(Errno::ENOENT));
        assert!(matches!(l.listing, DirListing::Complete(ref e) if e.len() == 3));
        // An open through it gives a handle the session knows.
        let l = looked_up(export.run(lookup_and_list(
            "/d",
            crate::proto::Lookup::Open {
                path: rp("/d/a"),
                flags: libc::O_RDONLY,
                mode: 0,
            },
        )));
        let Ok(crate::proto::LookupAnswer::Opened { handle, .. }) = l.answer else {
            panic!("{l:?}")
        };
        assert_eq!(
            export.run(Request::Pread {
                handle,
                len: 10,
                offset: 0
            }),
            Ok(Reply::Data(b"12345".to_vec()))
        );
    }

    #[test]
    fn lookup_and_list_refuses_symlinked_missing_and_large_directories() {
        let export = Export::new();
        export.mkdir("d");
        export.symlink("d", "dl");
        export.write("f", b"");
        let stat = |p: &str| crate::proto::Lookup::Stat {
            path: rp(p),
            follow: false,
        };
        let l = looked_up(export.run(lookup_and_list("/dl", stat("/dl/x"))));
        assert_eq!(l.listing, DirListing::Unavailable(Errno(libc::ELOOP)));
        let l = looked_up(export.run(lookup_and_list("/missing", stat("/missing/x"))));
        assert_eq!(l.answer, Err(Errno::ENOENT));
        assert_eq!(l.listing, DirListing::Unavailable(Errno::ENOENT));
        let l = looked_up(export.run(lookup_and_list("/f", stat("/f/x"))));
        assert_eq!(l.listing, DirListing::Unavailable(Errno::ENOTDIR));
        // Confined: `..` from the root stays in it.
        let l = looked_up(export.run(lookup_and_list("/..", stat("/f"))));
        assert!(
            matches!(l.listing, DirListing::Complete(ref e) if e.iter().any(|e| e.name == b"f")),
            "{l:?}"
        );
        export.mkdir("big");
        for i in 0..=MAX_LISTED_ENTRIES {
            std::fs::write(export.host(&format!("big/{i}")), b"").expect("write");
        }
        let l = looked_up(export.run(lookup_and_list("/big", stat("/big/0"))));
        assert!(l.answer.is_ok(), "{l:?}");
        assert_eq!(l.listing, DirListing::TooLarge);
        std::fs::remove_file(export.host("big/0")).expect("rm");
        let l = looked_up(export.run(lookup_and_list("/big", stat("/big/0"))));
        assert!(
            matches!(l.listing, DirListing::Complete(ref e) if e.len() == MAX_LISTED_ENTRIES),
            "{:?}",
            l.answer
        );
    }

    #[test]
    fn lookup_and_list_of_a_change_is_refused_read_only() {
        let export = Export::read_only();
        export.mkdir("d");
        let l = looked_up(export.run(lookup_and_list(
            "/d",
            crate::proto::Lookup::Open {
                path: rp("/d/new"),
                flags: libc::O_WRONLY | libc::O_CREAT,
                mode: 0o644,
            },
        )));
        assert_eq!(l.answer, Err(Errno::EROFS));
        assert!(!export.host("d/new").exists());
    }
}
