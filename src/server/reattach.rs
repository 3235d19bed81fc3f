//! Handles given again after a server restart: a client that reconnects to
//! a new session names each file it held by the old handle number, path,
//! identity and offset, and gets the same number back on the same file, or
//! a number that says `ESTALE` from then on.
//!
//! Resolves only through [`super::resolve`] (via [`super::files::open_fd`]);
//! must not create or truncate anything: the file was there before.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::fs::SeekFrom;

use super::files::{OpenFlags, open_fd};
use super::handles::Handles;
use super::meta::stat_fd;
use super::resolve::Root;
use crate::errno::Errno;
use crate::proto::{Handle, RemotePath, Reply, Response};

/// Flags a first open acted on that must not act again.
const ONCE_ONLY: i32 = libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC;

/// What the file must be, and where its offset was.
#[derive(Debug, Clone, Copy)]
pub(super) struct Expected {
    pub(super) dev: (u32, u32),
    pub(super) ino: u64,
    /// `None`: the end (of a file, or of a directory's listing).
    pub(super) offset: Option<i64>,
}

/// [`crate::proto::Request::Reattach`]: `Done` with `handle` naming the
/// same file again, or `ESTALE` with `handle` naming a stale file.
pub(super) fn reattach(
    root: &Root,
    handles: &Handles,
    handle: Handle,
    path: Option<&RemotePath>,
    flags: i32,
    expected: Expected,
) -> Response {
    let found = path.and_then(|path| same_file(root, path, flags, expected));
    let stale = found.is_none();
    handles.insert_at(handle, found)?;
    if stale {
        Err(Errno(libc::ESTALE))
    } else {
        Ok(Reply::Done)
    }
}

/// The file at `path`, if it is still the one expected, at its offset.
fn same_file(root: &Root, path: &RemotePath, flags: i32, expected: Expected) -> Option<OwnedFd> {
    // Never waits: an open of a FIFO would wait for its other end, and no
    // thread of the program waits on this open (rscq reattaches after a
    // reconnect). A FIFO whose other end is gone comes back stale.
    let opened = OpenFlags::new((flags & !ONCE_ONLY) | libc::O_NONBLOCK, 0);
    let fd = open_fd(root, path, opened).ok()?;
    let stat = stat_fd(fd.as_fd()).ok()?;
    if (stat.dev_major, stat.dev_minor) != expected.dev || stat.ino != expected.ino {
        return None;
    }
    if flags & (libc::O_NONBLOCK | libc::O_PATH) == 0 {
        let status = rustix::fs::fcntl_getfl(&fd).ok()?;
        rustix::fs::fcntl_setfl(&fd, status - rustix::fs::OFlags::NONBLOCK).ok()?;
    }
    // Only files and directories have an offset (a FIFO or a device
    // refuses to seek).
    let kind = stat.mode & libc::S_IFMT;
    if flags & libc::O_PATH == 0 && (kind == libc::S_IFREG || kind == libc::S_IFDIR) {
        seek(fd.as_fd(), kind == libc::S_IFDIR, expected.offset).ok()?;
    }
    Some(fd)
}

/// Moves the offset back where it was. A directory's end is where
/// `getdents64` returns nothing (not every file system seeks a directory
/// to `SEEK_END`).
fn seek(fd: BorrowedFd<'_>, is_dir: bool, offset: Option<i64>) -> Result<(), Errno> {
    match offset {
        Some(at) => {
            let at = u64::try_from(at).map_err(|_| Errno::EINVAL)?;
            rustix::fs::seek(fd, SeekFrom::Start(at))?;
        }
        None if is_dir => {
            let mut buf = vec![0u8; 64 * 1024];
            while crate::sys::server::getdents64(fd, &mut buf)? > 0 {}
        }
        None => {
            rustix::fs::seek(fd, SeekFrom::End(0))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::Request;
    use crate::server::testutil::Export;

    fn rp(s: &str) -> RemotePath {
        RemotePath(s.as_bytes().to_vec())
    }

    /// A new session of a restarted server: the same tree, no handles.
    fn fresh(export: &Export) -> crate::server::Executor {
        let policy = crate::server::creds::Policy::of_this_process(None);
        crate::server::Executor::new(&export.root, false, policy).expect("executor")
    }

    struct Again(crate::server::Executor);

    impl Runs for Again {
        fn run(&self, req: Request) -> Response {
            self.0.execute(None, req)
        }
    }

    impl Runs for Export {
        fn run(&self, req: Request) -> Response {
            Export::run(self, req)
        }
    }

    trait Runs {
        fn run(&self, req: Request) -> Response;
    }

    fn opened(export: &impl Runs, path: &str, flags: i32) -> (Handle, crate::proto::Stat) {
        match export.run(Request::Open {
            path: rp(path),
            flags,
            mode: 0o644,
        }) {
            Ok(Reply::Opened { handle, stat }) => (handle, stat),
            other => panic!("open {path}: {other:?}"),
        }
    }

    fn again(
        handle: u64,
        path: Option<&str>,
        stat: &crate::proto::Stat,
        offset: Option<i64>,
    ) -> Request {
        Request::Reattach {
            handle: Handle(handle),
            path: path.map(rp),
            flags: libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
            dev: (stat.dev_major, stat.dev_minor),
            ino: stat.ino,
            offset,
        }
    }

    /// A FIFO with no other end comes back at once (a blocking open would
    /// wait for ever), and blocking as the program opened it.
    #[test]
    fn a_fifo_comes_back_without_waiting_for_its_other_end() {
        let first = Export::new();
        let fifo = first.root.as_path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644))
            .expect("mkfifo");
        let (_, stat) = opened(&first, "fifo", libc::O_RDONLY | libc::O_NONBLOCK);
        let second = Again(fresh(&first));
        let (done, answer) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut req = again(3, Some("fifo"), &stat, None);
            if let Request::Reattach { flags, offset, .. } = &mut req {
                *flags = libc::O_RDONLY;
                *offset = Some(0);
            }
            let _ = done.send(second.run(req));
        });
        let reply = answer
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("a reattach of a FIFO answered within 10 s");
        assert_eq!(reply, Ok(Reply::Done));
    }

    #[test]
    fn the_same_file_comes_back_under_its_number_at_its_offset() {
        let first = Export::new();
        std::fs::write(first.root.as_path().join("f"), b"0123456789").expect("write");
        let (_, stat) = opened(&first, "f", libc::O_RDWR);
        let second = Again(fresh(&first));
        assert_eq!(
            second.run(again(7, Some("f"), &stat, Some(4))),
            Ok(Reply::Done)
        );
        // Neither created nor truncated again.
        assert_eq!(
            std::fs::read(first.root.as_path().join("f")).expect("read"),
            b"0123456789"
        );
        assert_eq!(
            second.run(Request::Read {
                handle: Handle(7),
                len: 3
            }),
            Ok(Reply::Data(b"456".to_vec()))
        );
        // New handles are numbered after the ones given again.
        let (next, _) = opened(&second, "f", libc::O_RDONLY);
        assert_eq!(next, Handle(8));
        assert_eq!(
            second.run(again(9, Some("f"), &stat, None)),
            Ok(Reply::Done)
        );
        assert_eq!(
            second.run(Request::Read {
                handle: Handle(9),
                len: 3
            }),
            Ok(Reply::Data(Vec::new()))
        );
    }

    #[test]
    fn a_file_gone_or_replaced_is_stale_until_closed() {
        let export = Export::new();
        std::fs::write(export.root.as_path().join("f"), b"old").expect("write");
        let (_, stat) = opened(&export, "f", libc::O_RDONLY);
        std::fs::remove_file(export.root.as_path().join("f")).expect("rm");
        let second = Again(fresh(&export));
        let estale = Err(Errno(libc::ESTALE));
        assert_eq!(second.run(again(1, Some("f"), &stat, Some(0))), estale);
        // Another file at the same path is not the one the program opened.
        std::fs::write(export.root.as_path().join("g"), b"other").expect("write");
        assert_eq!(second.run(again(2, Some("g"), &stat, Some(0))), estale);
        assert_eq!(second.run(again(3, None, &stat, Some(0))), estale);
        for h in 1..=3 {
            assert_eq!(
                second.run(Request::Read {
                    handle: Handle(h),
                    len: 1
                }),
                estale
            );
            assert_eq!(
                second.run(Request::Close { handle: Handle(h) }),
                Ok(Reply::Done)
            );
        }
        // A number in use is not given twice.
        std::fs::write(export.root.as_path().join("f"), b"new").expect("write");
        let (h, new_stat) = opened(&second, "f", libc::O_RDONLY);
        assert_eq!(
            second.run(again(h.0, Some("f"), &new_stat, Some(0))),
            Err(Errno(libc::EEXIST))
        );
    }

    #[test]
    fn a_listed_directory_comes_back_at_its_end() {
        let export = Export::new();
        std::fs::create_dir(export.root.as_path().join("d")).expect("mkdir");
        std::fs::write(export.root.as_path().join("d/a"), b"").expect("write");
        let (_, stat) = opened(&export, "d", libc::O_RDONLY | libc::O_DIRECTORY);
        let second = Again(fresh(&export));
        let mut dir = again(4, Some("d"), &stat, None);
        if let Request::Reattach { flags, .. } = &mut dir {
            *flags = libc::O_RDONLY | libc::O_DIRECTORY;
        }
        assert_eq!(second.run(dir), Ok(Reply::Done));
        assert_eq!(
            second.run(Request::Getdents {
                handle: Handle(4),
                bytes: 4096
            }),
            Ok(Reply::Dirents(Vec::new()))
        );
    }
}
