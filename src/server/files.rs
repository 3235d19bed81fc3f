//! Open files: open, read, write, seek, sync, truncate, file status flags.
//!
//! Resolves only through [`super::resolve`]; must not open a path itself.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::{Mode, OFlags, SeekFrom};

use super::executor::{Scope, misrouted};
use super::handles::Handles;
use super::meta::stat_fd;
use super::resolve::{Root, proc_fd_path};
use crate::errno::Errno;
use crate::proto::{MAX_IO, RemotePath, Reply, Request, Response};

/// Every `open(2)` flag Linux x86_64 knows. Bits outside it are dropped, as
/// `open(2)` ignores them (`openat2(2)` would refuse them).
const KNOWN_OPEN_FLAGS: i32 = libc::O_ACCMODE
    | libc::O_CREAT
    | libc::O_EXCL
    | libc::O_NOCTTY
    | libc::O_TRUNC
    | libc::O_APPEND
    | libc::O_NONBLOCK
    | libc::O_DSYNC
    | libc::O_ASYNC
    | libc::O_DIRECT
    | libc::O_LARGEFILE
    | libc::O_DIRECTORY
    | libc::O_NOFOLLOW
    | libc::O_NOATIME
    | libc::O_CLOEXEC
    | libc::O_SYNC
    | libc::O_PATH
    | libc::O_TMPFILE;

/// Flags that mean something only to the caller's process, never to the
/// server's: a controlling terminal, and `SIGIO` delivery.
const LOCAL_OPEN_FLAGS: i32 = libc::O_NOCTTY | libc::O_ASYNC;

/// What `O_PATH` keeps; the kernel's `O_PATH_FLAGS`.
const PATH_OPEN_FLAGS: i32 = libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// The only file status flags `F_SETFL` changes on Linux.
const SETFL_FLAGS: i32 = libc::O_APPEND | libc::O_NONBLOCK | libc::O_DIRECT | libc::O_NOATIME;

/// Creation modes keep permission bits only (`S_IALLUGO`).
const MODE_BITS: u32 = 0o7777;

/// Open flags and mode as `open(2)` itself normalises them before acting
/// (`build_open_how` in the kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OpenFlags {
    flags: i32,
    mode: u32,
}

impl OpenFlags {
    pub(super) fn new(flags: i32, mode: u32) -> Self {
        let mut flags = flags & KNOWN_OPEN_FLAGS & !LOCAL_OPEN_FLAGS;
        if flags & libc::O_PATH != 0 {
            flags &= PATH_OPEN_FLAGS;
        }
        let creates = flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE;
        let mode = if creates { mode & MODE_BITS } else { 0 };
        Self { flags, mode }
    }

    /// Whether the open could change the export: write access, creating,
    /// or truncating (which Linux does even with `O_RDONLY`).
    pub(super) fn writes(self) -> bool {
        let access = self.flags & libc::O_ACCMODE;
        access != libc::O_RDONLY
            || self.flags & (libc::O_CREAT | libc::O_TRUNC) != 0
            || self.flags & libc::O_TMPFILE == libc::O_TMPFILE
    }
}

/// `openat2(2)` of the whole path from the root with `RESOLVE_IN_ROOT`.
///
/// `O_CREAT` is safe on this route: it follows a dangling final symlink the
/// same way every other symlink on the walk is followed, within the root, so
/// a link to `/etc/x` creates `<root>/etc/x`. Resolving the parent first and
/// opening the name beneath it with `IN_ROOT` would be wrong instead: the
/// parent would become `/` for the rest of the walk, so `../x` or `/x` in the
/// final link would land in the parent, not where Linux puts them.
pub(super) fn open(
    root: &Root,
    handles: &Handles,
    path: &RemotePath,
    flags: OpenFlags,
) -> Response {
    let fd = open_fd(root, path, flags)?;
    let stat = stat_fd(fd.as_fd())?;
    let handle = handles.insert(fd)?;
    Ok(Reply::Opened { handle, stat })
}

/// The file `path` opened with `flags`, not yet a handle.
pub(super) fn open_fd(root: &Root, path: &RemotePath, flags: OpenFlags) -> Result<OwnedFd, Errno> {
    let oflags = OFlags::from_bits_retain(bits(flags.flags));
    root.open(path, oflags, Mode::from_raw_mode(flags.mode))
}

/// [`crate::proto::Request::OpenRead`]: `opened` with the bytes of a
/// regular file of at most `max` bytes, read from offset 0 in one `pread`
/// of `max` bytes (fewer said the file ends there). Anything else, or a
/// read that fails, is the plain open: the program's own `read` then asks
/// and sees the error.
fn with_contents(handles: &Handles, opened: Reply, max: u32) -> Response {
    let Reply::Opened { handle, stat } = opened else {
        return Ok(opened);
    };
    if stat.mode & libc::S_IFMT != libc::S_IFREG || stat.size > u64::from(max.min(MAX_IO)) {
        return Ok(opened);
    }
    let read = handles.get(handle).and_then(|fd| pread(fd.as_fd(), max, 0));
    Ok(match read {
        Ok(Reply::Data(data)) => Reply::OpenedRead { handle, stat, data },
        _ => Reply::Opened { handle, stat },
    })
}

/// [`crate::proto::Request::Reopen`]: a new open file description of a
/// regular file the session holds, through its `/proc/self/fd` magic link
/// (which lands on exactly that inode and checks the caller's rights on it
/// again, as an `open` would), with the access mode of `flags` and those
/// of its status flags that an open of the file may carry (`O_APPEND`,
/// `O_TRUNC`, ...); other bits are ignored.
pub(super) fn reopen(handles: &Handles, fd: BorrowedFd<'_>, flags: i32) -> Response {
    let access = match flags & libc::O_ACCMODE {
        libc::O_RDONLY => OFlags::RDONLY,
        libc::O_WRONLY => OFlags::WRONLY,
        libc::O_RDWR => OFlags::RDWR,
        _ => return Err(Errno::EINVAL),
    };
    let carried = flags
        & (libc::O_APPEND
            | libc::O_TRUNC
            | libc::O_NONBLOCK
            | libc::O_NOATIME
            | libc::O_SYNC
            | libc::O_DSYNC);
    let access = access | OFlags::from_bits_retain(carried.cast_unsigned());
    if stat_fd(fd)?.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(Errno::EINVAL);
    }
    let again = rustix::fs::open(
        proc_fd_path(fd).as_c_str(),
        access | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    let stat = stat_fd(again.as_fd())?;
    let handle = handles.insert(again)?;
    Ok(Reply::Opened { handle, stat })
}

/// `read(2)`, at most [`MAX_IO`] bytes.
pub(super) fn read(fd: BorrowedFd<'_>, len: u32) -> Response {
    let mut buf = io_buffer(len)?;
    let n = rustix::io::read(fd, &mut buf[..])?;
    buf.truncate(n);
    Ok(Reply::Data(buf))
}

/// `pread64(2)`, at most [`MAX_IO`] bytes.
pub(super) fn pread(fd: BorrowedFd<'_>, len: u32, offset: i64) -> Response {
    let offset = u64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    let mut buf = io_buffer(len)?;
    let n = rustix::io::pread(fd, &mut buf[..], offset)?;
    buf.truncate(n);
    Ok(Reply::Data(buf))
}

/// `write(2)` of at most [`MAX_IO`] bytes; more is a short write.
pub(super) fn write(fd: BorrowedFd<'_>, data: &[u8]) -> Response {
    let n = rustix::io::write(fd, clamp_io(data))?;
    count(n)
}

/// `pwrite64(2)` of at most [`MAX_IO`] bytes.
pub(super) fn pwrite(fd: BorrowedFd<'_>, data: &[u8], offset: i64) -> Response {
    let offset = u64::try_from(offset).map_err(|_| Errno::EINVAL)?;
    let n = rustix::io::pwrite(fd, clamp_io(data), offset)?;
    count(n)
}

/// `lseek(2)`, including `SEEK_DATA` and `SEEK_HOLE`.
pub(super) fn lseek(fd: BorrowedFd<'_>, offset: i64, whence: i32) -> Response {
    let unsigned = u64::try_from(offset);
    let pos = match whence {
        libc::SEEK_SET => SeekFrom::Start(unsigned.map_err(|_| Errno::EINVAL)?),
        libc::SEEK_CUR => SeekFrom::Current(offset),
        libc::SEEK_END => SeekFrom::End(offset),
        // Filesystems answer a negative SEEK_DATA/HOLE offset with ENXIO.
        libc::SEEK_DATA => SeekFrom::Data(unsigned.map_err(|_| Errno(libc::ENXIO))?),
        libc::SEEK_HOLE => SeekFrom::Hole(unsigned.map_err(|_| Errno(libc::ENXIO))?),
        _ => return Err(Errno::EINVAL),
    };
    let at = rustix::fs::seek(fd, pos)?;
    Ok(Reply::Offset(
        i64::try_from(at).map_err(|_| Errno::EOVERFLOW)?,
    ))
}

/// `fsync(2)` or `fdatasync(2)`.
pub(super) fn fsync(fd: BorrowedFd<'_>, data_only: bool) -> Response {
    if data_only {
        rustix::fs::fdatasync(fd)?;
    } else {
        rustix::fs::fsync(fd)?;
    }
    Ok(Reply::Done)
}

/// `fcntl(2)` `F_SETFL`: other bits are ignored, as Linux ignores them.
pub(super) fn set_flags(fd: BorrowedFd<'_>, flags: i32) -> Response {
    let flags = OFlags::from_bits_retain(bits(flags & SETFL_FLAGS));
    rustix::fs::fcntl_setfl(fd, flags)?;
    Ok(Reply::Done)
}

/// `ftruncate(2)`.
pub(super) fn ftruncate(fd: BorrowedFd<'_>, len: i64) -> Response {
    let len = u64::try_from(len).map_err(|_| Errno::EINVAL)?;
    rustix::fs::ftruncate(fd, len)?;
    Ok(Reply::Done)
}

/// `copy_file_range(2)` between two open files of the session; `None`
/// offsets are the files' own (and move).
pub(super) fn copy_range(
    from: BorrowedFd<'_>,
    from_offset: Option<i64>,
    to: BorrowedFd<'_>,
    to_offset: Option<i64>,
    len: u64,
) -> Response {
    let offset = |o: Option<i64>| -> Result<Option<u64>, Errno> {
        o.map(|o| u64::try_from(o).map_err(|_| Errno::EINVAL))
            .transpose()
    };
    let (mut from_at, mut to_at) = (offset(from_offset)?, offset(to_offset)?);
    // As the kernel: at most what a `ssize_t` return can say.
    let len = usize::try_from(len.min(u64::from(u32::MAX))).unwrap_or(usize::MAX);
    let n = rustix::fs::copy_file_range(from, from_at.as_mut(), to, to_at.as_mut(), len)?;
    Ok(Reply::Count(u64::try_from(n).unwrap_or(u64::MAX)))
}

/// `fallocate(2)`: the kernel checks `mode` and the range itself.
pub(super) fn fallocate(fd: BorrowedFd<'_>, mode: i32, offset: i64, len: i64) -> Response {
    if offset < 0 || len <= 0 {
        return Err(Errno::EINVAL);
    }
    let flags = rustix::fs::FallocateFlags::from_bits_retain(mode.cast_unsigned());
    // Both are positive: the casts cannot fail.
    let (offset, len) = (offset.cast_unsigned(), len.cast_unsigned());
    rustix::fs::fallocate(fd, flags, offset, len)?;
    Ok(Reply::Done)
}

/// `truncate(2)`, through the resolved fd's `/proc/self/fd` link: opening
/// the file for writing instead would block on a fifo and could have side
/// effects on a device, where `truncate(2)` just fails.
pub(super) fn truncate(root: &Root, path: &RemotePath, len: i64) -> Response {
    if len < 0 {
        return Err(Errno::EINVAL);
    }
    let fd = root.target(path, true)?;
    nix::unistd::truncate(proc_fd_path(fd.as_fd()).as_c_str(), len)
        .map_err(|e| Errno::from_io(&e.into()))?;
    Ok(Reply::Done)
}

/// A zeroed buffer for a read, never larger than [`MAX_IO`] whatever the
/// request asks.
fn io_buffer(len: u32) -> Result<Vec<u8>, Errno> {
    let len = usize::try_from(len.min(MAX_IO)).map_err(|_| Errno::EINVAL)?;
    Ok(vec![0; len])
}

fn clamp_io(data: &[u8]) -> &[u8] {
    let max = usize::try_from(MAX_IO).unwrap_or(usize::MAX);
    &data[..data.len().min(max)]
}

fn count(n: usize) -> Response {
    Ok(Reply::Count(
        u64::try_from(n).map_err(|_| Errno::EOVERFLOW)?,
    ))
}

/// The bit pattern of a flags word; Linux flag words are unsigned to rustix.
fn bits(flags: i32) -> u32 {
    u32::from_ne_bytes(flags.to_ne_bytes())
}

/// Runs one open-file request (routed here by the executor).
pub(super) fn execute(scope: &Scope<'_>, req: Request) -> Response {
    let (root, handles) = (scope.root, scope.handles);
    match req {
        Request::Open { path, flags, mode } => {
            open(root, handles, &path, OpenFlags::new(flags, mode))
        }
        Request::OpenPlus { path, flags, mode } => {
            let opened = open(root, handles, &path, OpenFlags::new(flags, mode))?;
            super::dirs::with_listing(handles, opened)
        }
        Request::OpenRead {
            path,
            flags,
            mode,
            max,
        } => {
            let opened = open(root, handles, &path, OpenFlags::new(flags, mode))?;
            with_contents(handles, opened, max)
        }
        Request::Close { handle } => {
            handles.remove(handle)?;
            Ok(Reply::Done)
        }
        Request::Read { handle, len } => read(handles.get(handle)?.as_fd(), len),
        Request::Pread {
            handle,
            len,
            offset,
        } => pread(handles.get(handle)?.as_fd(), len, offset),
        Request::Write { handle, data } => write(handles.get(handle)?.as_fd(), &data),
        Request::Pwrite {
            handle,
            data,
            offset,
        } => pwrite(handles.get(handle)?.as_fd(), &data, offset),
        Request::Lseek {
            handle,
            offset,
            whence,
        } => lseek(handles.get(handle)?.as_fd(), offset, whence),
        Request::Fsync { handle, data_only } => fsync(handles.get(handle)?.as_fd(), data_only),
        Request::SetFlags { handle, flags } => set_flags(handles.get(handle)?.as_fd(), flags),
        Request::Ftruncate { handle, len } => ftruncate(handles.get(handle)?.as_fd(), len),
        Request::Truncate { path, len } => truncate(root, &path, len),
        // rscq answers it itself; the server holds no writes to send.
        Request::FlushWrites { handle } => handles.get(handle).map(|_| Reply::Done),
        Request::Reopen { handle, flags } => reopen(handles, handles.get(handle)?.as_fd(), flags),
        Request::Reattach {
            handle,
            path,
            flags,
            dev,
            ino,
            offset,
        } => {
            let same = super::reattach::Expected { dev, ino, offset };
            super::reattach::reattach(root, handles, handle, path.as_ref(), flags, same)
        }
        Request::Fallocate {
            handle,
            mode,
            offset,
            len,
        } => fallocate(handles.get(handle)?.as_fd(), mode, offset, len),
        Request::CopyRange {
            from,
            from_offset,
            to,
            to_offset,
            len,
        } => copy_range(
            handles.get(from)?.as_fd(),
            from_offset,
            handles.get(to)?.as_fd(),
            to_offset,
            len,
        ),
        other => misrouted(&other),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;
    use crate::proto::{Handle, Request};
    use crate::server::testutil::{Export, rp};

    fn data(r: Response) -> Vec<u8> {
        match r {
            Ok(Reply::Data(d)) => d,
            other => panic!("expected data, got {other:?}"),
        }
    }

    #[test]
    fn open_replies_the_stat_of_the_opened_file() {
        let export = Export::new();
        export.write("f", b"hello");
        let reply = export.run(Request::Open {
            path: rp("f"),
            flags: libc::O_RDONLY,
            mode: 0,
        });
        let Ok(Reply::Opened { stat, .. }) = reply else {
            panic!("open: {reply:?}");
        };
        let meta = std::fs::metadata(export.host("f")).expect("metadata");
        assert_eq!(stat.ino, meta.ino());
        assert_eq!(stat.size, 5);
        assert_eq!(stat.mode, meta.mode());
        assert_eq!(stat.nlink, meta.nlink());
    }

    #[test]
    fn read_write_seek_and_sync_act_on_the_real_file() {
        let export = Export::new();
        let h = export.open("f", libc::O_CREAT | libc::O_RDWR, 0o600);
        let meta = std::fs::metadata(export.host("f")).expect("created");
        assert_eq!(meta.mode() & 0o777, 0o600 & !current_umask());
        let w = export.run(Request::Write {
            handle: h,
            data: b"hello world".to_vec(),
        });
        assert_eq!(w, Ok(Reply::Count(11)));
        let pw = export.run(Request::Pwrite {
            handle: h,
            data: b"W".to_vec(),
            offset: 6,
        });
        assert_eq!(pw, Ok(Reply::Count(1)));
        assert_eq!(
            std::fs::read(export.host("f")).expect("read"),
            b"hello World"
        );

        let at = |offset, whence| {
            export.run(Request::Lseek {
                handle: h,
                offset,
                whence,
            })
        };
        assert_eq!(at(0, libc::SEEK_CUR), Ok(Reply::Offset(11)));
        assert_eq!(at(-5, libc::SEEK_END), Ok(Reply::Offset(6)));
        assert_eq!(
            data(export.run(Request::Read { handle: h, len: 3 })),
            b"Wor"
        );
        assert_eq!(at(2, libc::SEEK_SET), Ok(Reply::Offset(2)));
        assert_eq!(at(0, libc::SEEK_DATA), Ok(Reply::Offset(0)));
        assert_eq!(at(0, libc::SEEK_HOLE), Ok(Reply::Offset(11)));
        assert_eq!(at(11, libc::SEEK_DATA), Err(Errno(libc::ENXIO)));
        assert_eq!(at(-1, libc::SEEK_SET), Err(Errno::EINVAL));
        assert_eq!(at(-1, libc::SEEK_DATA), Err(Errno(libc::ENXIO)));
        assert_eq!(at(0, 5), Err(Errno::EINVAL));
        assert_eq!(at(0, -1), Err(Errno::EINVAL));
        let pread = export.run(Request::Pread {
            handle: h,
            len: 5,
            offset: 0,
        });
        assert_eq!(data(pread), b"hello");
        let past_end = export.run(Request::Pread {
            handle: h,
            len: 5,
            offset: 100,
        });
        assert_eq!(data(past_end), b"");

        for data_only in [false, true] {
            let sync = export.run(Request::Fsync {
                handle: h,
                data_only,
            });
            assert_eq!(sync, Ok(Reply::Done));
        }
        assert_eq!(export.run(Request::Close { handle: h }), Ok(Reply::Done));
        assert_eq!(export.run(Request::Close { handle: h }), Err(Errno::EBADF));
        assert_eq!(
            export.run(Request::Read { handle: h, len: 1 }),
            Err(Errno::EBADF)
        );
    }

    #[test]
    fn hostile_sizes_are_bounded() {
        let export = Export::new();
        export.write("f", b"small");
        let h = export.open("f", libc::O_RDWR, 0);
        let read = export.run(Request::Read {
            handle: h,
            len: u32::MAX,
        });
        assert_eq!(data(read), b"small");
        let pread = export.run(Request::Pread {
            handle: h,
            len: u32::MAX,
            offset: 1 << 40,
        });
        assert_eq!(data(pread), b"");
        // offset + len overflows loff_t: the kernel's EINVAL.
        let pread = export.run(Request::Pread {
            handle: h,
            len: u32::MAX,
            offset: i64::MAX,
        });
        assert_eq!(pread, Err(Errno::EINVAL));
        let negative = export.run(Request::Pread {
            handle: h,
            len: 1,
            offset: -1,
        });
        assert_eq!(negative, Err(Errno::EINVAL));
        let negative = export.run(Request::Pwrite {
            handle: h,
            data: vec![1],
            offset: i64::MIN,
        });
        assert_eq!(negative, Err(Errno::EINVAL));
        let big = vec![7u8; usize::try_from(MAX_IO).expect("usize") + 10];
        let w = export.run(Request::Write {
            handle: h,
            data: big,
        });
        assert_eq!(w, Ok(Reply::Count(u64::from(MAX_IO))));
        assert_eq!(
            export.run(Request::Ftruncate { handle: h, len: -1 }),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            export.run(Request::Truncate {
                path: rp("f"),
                len: -1
            }),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn truncate_and_ftruncate_resize() {
        let export = Export::new();
        export.write("f", b"0123456789");
        export.symlink("f", "link");
        let h = export.open("f", libc::O_WRONLY, 0);
        let ft = export.run(Request::Ftruncate { handle: h, len: 4 });
        assert_eq!(ft, Ok(Reply::Done));
        assert_eq!(std::fs::read(export.host("f")).expect("read"), b"0123");
        let t = export.run(Request::Truncate {
            path: rp("link"),
            len: 2,
        });
        assert_eq!(t, Ok(Reply::Done));
        assert_eq!(std::fs::read(export.host("f")).expect("read"), b"01");
        export.mkdir("d");
        let dir = export.run(Request::Truncate {
            path: rp("d"),
            len: 0,
        });
        assert_eq!(dir, Err(Errno::EISDIR));
    }

    #[test]
    fn open_flags_are_normalised() {
        let export = Export::new();
        export.write("f", b"x");
        // Unknown high bits are ignored by open(2), so they are here.
        let h = export.open("f", libc::O_RDONLY | 0x4000_0000 | libc::O_NOCTTY, 0);
        assert_eq!(data(export.run(Request::Read { handle: h, len: 4 })), b"x");
        // O_PATH beats everything else, as in the kernel.
        let flags = OpenFlags::new(libc::O_PATH | libc::O_RDWR | libc::O_CREAT, 0o777);
        assert!(!flags.writes());
        let p = export.open("f", libc::O_PATH | libc::O_TRUNC, 0o777);
        let read = export.run(Request::Read { handle: p, len: 1 });
        assert_eq!(read, Err(Errno::EBADF));
        assert_eq!(std::fs::read(export.host("f")).expect("read"), b"x");
        // mode is ignored unless creating
        assert_eq!(OpenFlags::new(libc::O_RDONLY, 0o777).mode, 0);
        assert_eq!(OpenFlags::new(libc::O_CREAT, 0o170777).mode, 0o777);
        assert!(OpenFlags::new(libc::O_RDONLY | libc::O_TRUNC, 0).writes());
        assert!(OpenFlags::new(libc::O_TMPFILE | libc::O_RDWR, 0).writes());
        assert!(!OpenFlags::new(libc::O_RDONLY | libc::O_APPEND, 0).writes());
    }

    #[test]
    fn open_errors_are_the_kernels() {
        let export = Export::new();
        export.write("f", b"x");
        let open = |path: &str, flags| {
            export
                .run(Request::Open {
                    path: rp(path),
                    flags,
                    mode: 0o644,
                })
                .err()
        };
        assert_eq!(open("missing", libc::O_RDONLY), Some(Errno::ENOENT));
        assert_eq!(
            open("f", libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY),
            Some(Errno::EEXIST)
        );
        assert_eq!(open("f", libc::O_DIRECTORY), Some(Errno::ENOTDIR));
        assert_eq!(open("f/x", libc::O_RDONLY), Some(Errno::ENOTDIR));
        assert_eq!(open("", libc::O_WRONLY), Some(Errno::EISDIR));
        export.symlink("f", "l");
        assert_eq!(open("l", libc::O_NOFOLLOW), Some(Errno::ELOOP));
        assert_eq!(open("a\0b", libc::O_RDONLY), Some(Errno::EINVAL));
        let long = "a".repeat(crate::proto::MAX_PATH);
        assert_eq!(open(&long, libc::O_RDONLY), Some(Errno::ENAMETOOLONG));
    }

    #[test]
    fn set_flags_changes_append() {
        let export = Export::new();
        export.write("f", b"abc");
        let h = export.open("f", libc::O_WRONLY, 0);
        let set = export.run(Request::SetFlags {
            handle: h,
            flags: libc::O_APPEND | libc::O_CREAT,
        });
        assert_eq!(set, Ok(Reply::Done));
        let w = export.run(Request::Write {
            handle: h,
            data: b"d".to_vec(),
        });
        assert_eq!(w, Ok(Reply::Count(1)));
        assert_eq!(std::fs::read(export.host("f")).expect("read"), b"abcd");
    }

    #[test]
    fn tmpfile_opens_an_unnamed_file() {
        let export = Export::new();
        let h = export.open("", libc::O_TMPFILE | libc::O_RDWR, 0o600);
        let w = export.run(Request::Write {
            handle: h,
            data: b"anon".to_vec(),
        });
        assert_eq!(w, Ok(Reply::Count(4)));
        assert!(crate::server::testutil::names_in(&export.root).is_empty());
    }

    #[test]
    fn handles_per_session_are_capped() {
        let export = Export::new();
        export.write("f", b"x");
        let mut last = Handle(0);
        for _ in 0..crate::server::handles::MAX_HANDLES {
            last = export.open("f", libc::O_RDONLY, 0);
        }
        let over = export.run(Request::Open {
            path: rp("f"),
            flags: libc::O_RDONLY,
            mode: 0,
        });
        assert_eq!(over.err(), Some(Errno(libc::EMFILE)));
        export.run(Request::Close { handle: last }).expect("close");
        export.open("f", libc::O_RDONLY, 0);
    }

    fn current_umask() -> u32 {
        let mask = rustix::process::umask(Mode::empty());
        rustix::process::umask(mask);
        mask.bits()
    }
}
