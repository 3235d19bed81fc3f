//! Executes one [`Request`] with real syscalls beneath the export root.
//!
//! This file only dispatches and applies `--read-only`; each syscall family
//! lives in its own module, and confinement in `super::resolve`.
//!
//! Must not resolve paths or hold per-family logic itself.

use std::collections::HashMap;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;

use super::creds::{Checking, Policy};
use super::files::OpenFlags;
use super::handles::Handles;
use super::locks::Locks;
use super::resolve::Root;
use super::{dirs, files, meta, names, uname, xattr};
use crate::errno::Errno;
use crate::proto::{
    Credentials, DirListing, Handle, LookedUp, LookupAnswer, RemotePath, Reply, Request, Response,
};

#[derive(Debug, thiserror::Error)]
pub enum ExecutorError {
    #[error("cannot open export root {path}: {source}")]
    OpenRoot {
        path: String,
        source: std::io::Error,
    },
}

/// One session's view of the export: the root and the session's open handles.
/// Dropping it closes every handle of the session.
#[derive(Debug)]
pub struct Executor {
    root: Root,
    handles: Handles,
    read_only: bool,
    policy: Policy,
    /// Who opened each handle: the writes rscq flushes later on its own
    /// (write-behind) run with the opener's rights, so the kernel clears a
    /// setuid bit as the program's own write would have.
    openers: Mutex<HashMap<Handle, Credentials>>,
    locks: Locks,
}

impl Executor {
    /// Opens `root` as the export root of a new session whose calls run
    /// with the rights `policy` gives them.
    pub fn new(root: &Path, read_only: bool, policy: Policy) -> Result<Self, ExecutorError> {
        let opened = Root::new(root).map_err(|source| ExecutorError::OpenRoot {
            path: root.display().to_string(),
            source,
        })?;
        Ok(Self {
            root: opened,
            handles: Handles::default(),
            read_only,
            policy,
            openers: Mutex::default(),
            locks: Locks::default(),
        })
    }

    /// Runs one request with the rights of `caller` (the server's own for
    /// `None`), as the session's policy allows. Blocking: call it from a
    /// blocking thread. Safe to call concurrently; requests on different
    /// handles do not serialise.
    pub fn execute(&self, caller: Option<&Credentials>, req: Request) -> Response {
        if let Request::LookupAndList { dir, lookup } = req {
            let answer = self
                .execute(caller, lookup.into_request())
                .and_then(|r| LookupAnswer::from_reply(r).ok_or(Errno::EIO));
            let listing = self.listing(caller, &dir);
            return Ok(Reply::LookedUp(Box::new(LookedUp { answer, listing })));
        }
        if self.read_only && mutates(&req) {
            return Err(Errno::EROFS);
        }
        let opener = match (&req, caller) {
            (Request::Write { handle, .. } | Request::Pwrite { handle, .. }, None) => {
                self.openers().get(handle).cloned()
            }
            _ => None,
        };
        let caller = caller.or(opener.as_ref());
        let rights = match caller {
            Some(caller) => {
                let checking = match req {
                    Request::Access { flags, .. } if flags & libc::AT_EACCESS == 0 => {
                        Checking::RealIds
                    }
                    _ => Checking::FsIds,
                };
                Some(self.policy.rights(caller, checking).enter(&self.policy)?)
            }
            None => None,
        };
        let closed = match req {
            Request::Close { handle } => Some(handle),
            _ => None,
        };
        let response = self.dispatch(req);
        drop(rights);
        match (&response, caller, closed) {
            (Ok(Reply::Opened { handle, .. }), Some(caller), _) => {
                self.openers().insert(*handle, caller.clone());
            }
            (_, _, Some(handle)) => {
                self.openers().remove(&handle);
            }
            _ => {}
        }
        response
    }

    /// The listing half of a [`Request::LookupAndList`], with the
    /// caller's rights.
    fn listing(&self, caller: Option<&Credentials>, dir: &RemotePath) -> DirListing {
        let rights = match caller {
            Some(caller) => match self
                .policy
                .rights(caller, Checking::FsIds)
                .enter(&self.policy)
            {
                Ok(rights) => Some(rights),
                Err(e) => return DirListing::Unavailable(e),
            },
            None => None,
        };
        let listing = dirs::listing(&self.root, dir);
        drop(rights);
        listing
    }

    fn openers(&self) -> std::sync::MutexGuard<'_, HashMap<Handle, Credentials>> {
        self.openers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn dispatch(&self, req: Request) -> Response {
        let root = &self.root;
        let handles = &self.handles;
        match req {
            Request::Open { path, flags, mode } => {
                files::open(root, handles, &path, OpenFlags::new(flags, mode))
            }
            Request::OpenPlus { path, flags, mode } => {
                let opened = files::open(root, handles, &path, OpenFlags::new(flags, mode))?;
                dirs::with_listing(handles, opened)
            }
            Request::Close { handle } => {
                handles.remove(handle)?;
                Ok(Reply::Done)
            }
            Request::Read { handle, len } => files::read(handles.get(handle)?.as_fd(), len),
            Request::Pread {
                handle,
                len,
                offset,
            } => files::pread(handles.get(handle)?.as_fd(), len, offset),
            Request::Write { handle, data } => files::write(handles.get(handle)?.as_fd(), &data),
            Request::Pwrite {
                handle,
                data,
                offset,
            } => files::pwrite(handles.get(handle)?.as_fd(), &data, offset),
            Request::Lseek {
                handle,
                offset,
                whence,
            } => files::lseek(handles.get(handle)?.as_fd(), offset, whence),
            Request::Fsync { handle, data_only } => {
                files::fsync(handles.get(handle)?.as_fd(), data_only)
            }
            Request::Fstat { handle } => meta::fstat(handles.get(handle)?.as_fd()),
            Request::Getdents { handle, bytes } => {
                dirs::getdents(handles.get(handle)?.as_fd(), bytes)
            }
            Request::SetFlags { handle, flags } => {
                files::set_flags(handles.get(handle)?.as_fd(), flags)
            }
            Request::Ftruncate { handle, len } => {
                files::ftruncate(handles.get(handle)?.as_fd(), len)
            }
            Request::Fchmod { handle, mode } => meta::fchmod(handles.get(handle)?.as_fd(), mode),
            Request::Fchown { handle, uid, gid } => {
                meta::fchown(handles.get(handle)?.as_fd(), uid, gid)
            }
            Request::Futimens { handle, times } => {
                meta::futimens(handles.get(handle)?.as_fd(), times)
            }
            Request::Fstatfs { handle } => meta::fstatfs(handles.get(handle)?.as_fd()),
            Request::Stat { path, follow } => meta::stat(root, &path, follow),
            Request::StatPlus { path, follow } => meta::stat_plus(root, &path, follow),
            Request::Access { path, mode, flags } => {
                meta::access(root, &path, mode, flags, self.read_only)
            }
            Request::Readlink { path } => names::readlink(root, &path),
            Request::Mkdir { path, mode } => dirs::mkdir(root, &path, mode),
            Request::Mknod { path, mode, dev } => names::mknod(root, &path, mode, dev),
            Request::Rmdir { path } => dirs::rmdir(root, &path),
            Request::Unlink { path } => names::unlink(root, &path),
            Request::Rename { from, to, flags } => names::rename(root, &from, &to, flags),
            Request::Link { from, to, follow } => names::link(root, &from, &to, follow),
            Request::Symlink { target, path } => names::symlink(root, &target, &path),
            Request::Chmod { path, mode, follow } => meta::chmod(root, &path, mode, follow),
            Request::Chown {
                path,
                uid,
                gid,
                follow,
            } => meta::chown(root, &path, uid, gid, follow),
            Request::Utimens {
                path,
                times,
                follow,
            } => meta::utimens(root, &path, times, follow),
            Request::Truncate { path, len } => files::truncate(root, &path, len),
            Request::Statfs { path } => meta::statfs(root, &path),
            Request::CheckDir { path } => dirs::check_dir(root, &path),
            Request::GetXattr { target, name, size } => {
                xattr::get(root, handles, &target, &name, size)
            }
            Request::ListXattr { target, size } => xattr::list(root, handles, &target, size),
            Request::SetXattr {
                target,
                name,
                value,
                flags,
            } => xattr::set(root, handles, &target, &name, &value, flags),
            Request::RemoveXattr { target, name } => xattr::remove(root, handles, &target, &name),
            Request::Uname => uname::uname(),
            Request::ReadSystemFile { file } => system_file(file),
            Request::GetdentsPlus { handle } => dirs::getdents_plus(handles.get(handle)?.as_fd()),
            // Taken apart by `execute`.
            Request::LookupAndList { .. } => Err(Errno::EINVAL),
            // rscq answers it itself; the server holds no writes to send.
            Request::FlushWrites { handle } => handles.get(handle).map(|_| Reply::Done),
            // Connections are streams, served by `server::net`; one that
            // reaches the blocking executor was sent the wrong way.
            Request::TcpConnect { .. }
            | Request::TcpBind { .. }
            | Request::TcpListen { .. }
            | Request::TcpUnbind { .. }
            | Request::UdpBind { .. }
            | Request::TcpSetOption { .. } => Err(Errno::EINVAL),
            Request::Flock { handle, op, wait } => {
                self.locks.flock(handles.get(handle)?.as_fd(), op, wait)
            }
            Request::RecordLock {
                handle,
                owner,
                lock,
                set,
                wait,
            } => self
                .locks
                .record(handles.get(handle)?.as_fd(), owner, lock, set, wait),
            Request::ReleaseLocks { owner, handle } => match handle {
                Some(handle) => self
                    .locks
                    .release(owner, Some(handles.get(handle)?.as_fd())),
                None => self.locks.release(owner, None),
            },
            Request::CancelWait { wait } => self.locks.cancel(wait),
            Request::Reopen { handle, flags } => {
                files::reopen(handles, handles.get(handle)?.as_fd(), flags)
            }
            Request::Fallocate {
                handle,
                mode,
                offset,
                len,
            } => files::fallocate(handles.get(handle)?.as_fd(), mode, offset, len),
            Request::CopyRange {
                from,
                from_offset,
                to,
                to_offset,
                len,
            } => files::copy_range(
                handles.get(from)?.as_fd(),
                from_offset,
                handles.get(to)?.as_fd(),
                to_offset,
                len,
            ),
        }
    }

    /// The connection is gone: requests still waiting (for a lock) end.
    pub fn close(&self) {
        self.locks.close();
    }
}

/// The server host's own copy of a resolver file, read from its real `/etc`
/// (not beneath the export root): the name is from a fixed list, never a
/// path the client chose.
fn system_file(file: crate::proto::SystemFile) -> Response {
    use std::io::Read as _;
    let f = std::fs::File::open(file.path()).map_err(|e| Errno::from_io(&e))?;
    let mut data = Vec::new();
    f.take(u64::from(crate::proto::MAX_IO))
        .read_to_end(&mut data)
        .map_err(|e| Errno::from_io(&e))?;
    Ok(Reply::Data(data))
}

/// Whether a request would change the export, and so fails with `EROFS`
/// under `--read-only` before anything is resolved or opened.
fn mutates(req: &Request) -> bool {
    match req {
        // As the kernel normalises the flags (`O_PATH` ignores the rest).
        Request::Open { flags, mode, .. } | Request::OpenPlus { flags, mode, .. } => {
            OpenFlags::new(*flags, *mode).writes()
        }
        other => other.changes_files(),
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::proto::{Handle, RemotePath, Reply, TimeUpdate, Timespec, XattrTarget};
    use crate::server::testutil::{Export, names_in, rp};

    fn every_mutation(handle: Handle) -> Vec<Request> {
        let path = || rp("f");
        let times = [TimeUpdate::Now, TimeUpdate::Now];
        let target = || XattrTarget::Path {
            path: path(),
            follow: true,
        };
        let mut requests: Vec<Request> = [
            libc::O_WRONLY,
            libc::O_RDWR,
            libc::O_RDONLY | libc::O_CREAT,
            libc::O_RDONLY | libc::O_TRUNC,
            libc::O_WRONLY | libc::O_APPEND,
            libc::O_TMPFILE | libc::O_RDWR,
            libc::O_ACCMODE,
        ]
        .into_iter()
        .map(|flags| Request::Open {
            path: path(),
            flags,
            mode: 0o644,
        })
        .collect();
        requests.extend([
            Request::Write {
                handle,
                data: b"x".to_vec(),
            },
            Request::Pwrite {
                handle,
                data: b"x".to_vec(),
                offset: 0,
            },
            Request::Ftruncate { handle, len: 0 },
            Request::Reopen {
                handle,
                flags: libc::O_RDWR,
            },
            Request::Fallocate {
                handle,
                mode: 0,
                offset: 0,
                len: 1,
            },
            Request::Fchmod { handle, mode: 0 },
            Request::Fchown {
                handle,
                uid: u32::MAX,
                gid: u32::MAX,
            },
            Request::Futimens { handle, times },
            Request::Mkdir {
                path: rp("new"),
                mode: 0o755,
            },
            Request::Rmdir { path: rp("d") },
            Request::Unlink { path: path() },
            Request::Rename {
                from: path(),
                to: rp("g"),
                flags: 0,
            },
            Request::Link {
                from: path(),
                to: rp("g"),
                follow: false,
            },
            Request::Symlink {
                target: b"f".to_vec(),
                path: rp("g"),
            },
            Request::Chmod {
                path: path(),
                mode: 0,
                follow: true,
            },
            Request::Chown {
                path: path(),
                uid: u32::MAX,
                gid: u32::MAX,
                follow: true,
            },
            Request::Utimens {
                path: path(),
                times,
                follow: true,
            },
            Request::Truncate {
                path: path(),
                len: 0,
            },
            Request::SetXattr {
                target: target(),
                name: b"user.a".to_vec(),
                value: b"v".to_vec(),
                flags: 0,
            },
            Request::RemoveXattr {
                target: XattrTarget::Handle(handle),
                name: b"user.a".to_vec(),
            },
        ]);
        requests
    }

    #[test]
    fn read_only_refuses_every_change() {
        let export = Export::read_only();
        std::fs::write(export.host("f"), b"data").expect("fixture");
        std::fs::create_dir(export.host("d")).expect("fixture");
        let before = std::fs::metadata(export.host("f")).expect("f");
        let h = export.open("f", libc::O_RDONLY, 0);
        for req in every_mutation(h) {
            assert_eq!(export.run(req.clone()), Err(Errno::EROFS), "{req:?}");
        }
        let after = std::fs::metadata(export.host("f")).expect("f");
        assert_eq!(std::fs::read(export.host("f")).expect("f"), b"data");
        assert_eq!(before.modified().ok(), after.modified().ok());
        assert_eq!(names_in(&export.root), ["d", "f"]);
    }

    #[test]
    fn read_only_still_reads() {
        let export = Export::read_only();
        std::fs::write(export.host("f"), b"data").expect("fixture");
        std::os::unix::fs::symlink("f", export.host("l")).expect("fixture");
        let h = export.open("f", libc::O_RDONLY | libc::O_APPEND, 0);
        let reads = [
            Request::Read { handle: h, len: 9 },
            Request::Pread {
                handle: h,
                len: 9,
                offset: 1,
            },
            Request::Lseek {
                handle: h,
                offset: 0,
                whence: libc::SEEK_SET,
            },
            Request::Fsync {
                handle: h,
                data_only: false,
            },
            Request::Fstat { handle: h },
            Request::SetFlags {
                handle: h,
                flags: libc::O_APPEND,
            },
            Request::Fstatfs { handle: h },
            Request::Stat {
                path: rp("l"),
                follow: false,
            },
            Request::Access {
                path: rp("f"),
                mode: libc::R_OK,
                flags: 0,
            },
            Request::Readlink { path: rp("l") },
            Request::Statfs { path: rp("") },
            Request::CheckDir { path: rp("/") },
            Request::ListXattr {
                target: XattrTarget::Handle(h),
                size: 0,
            },
            Request::Uname,
        ];
        for req in reads {
            assert!(export.run(req.clone()).is_ok(), "{req:?}");
        }
        let dir = export.open("", libc::O_RDONLY | libc::O_DIRECTORY, 0);
        let dirents = export.run(Request::Getdents {
            handle: dir,
            bytes: 4096,
        });
        assert!(matches!(dirents, Ok(Reply::Dirents(d)) if d.len() == 4));
    }

    #[test]
    fn unknown_handles_are_ebadf() {
        let export = Export::new();
        export.write("f", b"");
        let other = Export::new();
        other.write("f", b"");
        // A handle of another session means nothing here.
        let foreign = other.open("f", libc::O_RDWR, 0);
        let mut requests = every_mutation(foreign);
        requests.retain(|r| !matches!(r, Request::Open { .. }) && handle_of(r).is_some());
        for handle in [foreign, Handle(0), Handle(u64::MAX)] {
            requests.extend([
                Request::Close { handle },
                Request::Read { handle, len: 1 },
                Request::Pread {
                    handle,
                    len: 1,
                    offset: 0,
                },
                Request::Lseek {
                    handle,
                    offset: 0,
                    whence: 0,
                },
                Request::Fsync {
                    handle,
                    data_only: true,
                },
                Request::Fstat { handle },
                Request::Getdents { handle, bytes: 1 },
                Request::SetFlags { handle, flags: 0 },
                Request::Fstatfs { handle },
                Request::GetXattr {
                    target: XattrTarget::Handle(handle),
                    name: b"user.a".to_vec(),
                    size: 0,
                },
            ]);
        }
        for req in requests {
            assert_eq!(export.run(req.clone()), Err(Errno::EBADF), "{req:?}");
        }
    }

    fn handle_of(req: &Request) -> Option<Handle> {
        match req {
            Request::Write { handle, .. }
            | Request::Pwrite { handle, .. }
            | Request::Ftruncate { handle, .. }
            | Request::Fchmod { handle, .. }
            | Request::Fchown { handle, .. }
            | Request::Futimens { handle, .. } => Some(*handle),
            Request::RemoveXattr {
                target: XattrTarget::Handle(handle),
                ..
            } => Some(*handle),
            _ => None,
        }
    }

    #[test]
    fn concurrent_requests_share_one_session() {
        let export = Arc::new(Export::new());
        export.write("f", &[7; 4096]);
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let export = Arc::clone(&export);
                std::thread::spawn(move || {
                    for i in 0..50 {
                        let h = export.open("f", libc::O_RDONLY, 0);
                        let read = export.run(Request::Pread {
                            handle: h,
                            len: 4096,
                            offset: 0,
                        });
                        assert_eq!(read, Ok(Reply::Data(vec![7; 4096])));
                        let name = format!("d{t}-{i}");
                        let mkdir = export.run(Request::Mkdir {
                            path: rp(&name),
                            mode: 0o700,
                        });
                        assert_eq!(mkdir, Ok(Reply::Done));
                        assert_eq!(export.run(Request::Close { handle: h }), Ok(Reply::Done));
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("thread");
        }
        assert_eq!(names_in(&export.root).len(), 8 * 50 + 1);
    }

    /// What `/proc/TID/status` shows after a root process's `seteuid(65534)`.
    fn nobody_from_root() -> Credentials {
        Credentials {
            ruid: 0,
            rgid: 0,
            fsuid: 65534,
            fsgid: 65534,
            groups: Vec::new(),
            umask: 0o027,
            cap_effective: 0,
            cap_permitted: u64::MAX >> 23,
        }
    }

    #[test]
    fn a_call_runs_with_its_callers_rights_and_gives_them_back() {
        if !Policy::of_this_process(None).acts_as_caller() {
            // An ordinary user's server keeps its own ids: nothing to see.
            return;
        }
        let export = Export::new();
        std::fs::write(export.host("rootfile"), b"root's").expect("write");
        std::fs::set_permissions(
            export.host(""),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .expect("chmod root");
        let nobody = nobody_from_root();
        let truncate = Request::Truncate {
            path: rp("rootfile"),
            len: 0,
        };
        assert_eq!(export.run_as(&nobody, truncate), Err(Errno::EACCES));
        assert_eq!(
            std::fs::read(export.host("rootfile")).expect("read"),
            b"root's"
        );
        let create = |name: &str| Request::Mkdir {
            path: rp(name),
            mode: 0o777,
        };
        assert_eq!(export.run_as(&nobody, create("mine")), Ok(Reply::Done));
        let mine = std::fs::metadata(export.host("mine")).expect("mine");
        assert_eq!(
            (mine.uid(), mine.gid(), mine.mode() & 0o777),
            (65534, 65534, 0o750)
        );
        // The thread has the server's rights again, and its umask.
        assert_eq!(export.run(create("ours")), Ok(Reply::Done));
        let ours = std::fs::metadata(export.host("ours")).expect("ours");
        assert_eq!((ours.uid(), ours.gid()), (0, 0));
        assert_eq!(crate::sys::server::set_thread_fsuid(u32::MAX), 0);
    }

    /// pjdfstest's chmod/12: a write by another user clears setuid. The
    /// write rscq flushes later on its own has no caller: it runs with the
    /// opener's rights.
    #[test]
    fn a_flushed_write_runs_as_the_opener() {
        if !Policy::of_this_process(None).acts_as_caller() {
            return;
        }
        let export = Export::new();
        std::fs::write(export.host("suid"), b"").expect("write");
        std::fs::set_permissions(
            export.host("suid"),
            std::os::unix::fs::PermissionsExt::from_mode(0o4777),
        )
        .expect("chmod");
        let open = Request::Open {
            path: rp("suid"),
            flags: libc::O_WRONLY,
            mode: 0,
        };
        let Ok(Reply::Opened { handle, .. }) = export.run_as(&nobody_from_root(), open) else {
            panic!("open as nobody");
        };
        let write = Request::Write {
            handle,
            data: b"x".to_vec(),
        };
        assert_eq!(export.run(write), Ok(Reply::Count(1)));
        let mode = std::fs::metadata(export.host("suid")).expect("stat").mode();
        assert_eq!(mode & 0o7777, 0o777);
    }

    #[test]
    fn squashed_root_is_nobody() {
        let policy = Policy::of_this_process(Some(crate::server::creds::Squash::NOBODY));
        if !policy.acts_as_caller() {
            return;
        }
        let export = Export::new();
        std::fs::write(export.host("rootfile"), b"root's").expect("write");
        let root = Credentials {
            fsuid: 0,
            fsgid: 0,
            cap_effective: u64::MAX >> 23,
            ..nobody_from_root()
        };
        let ex = Executor::new(&export.host(""), false, policy).expect("executor");
        let chmod = Request::Chmod {
            path: rp("rootfile"),
            mode: 0o777,
            follow: true,
        };
        assert_eq!(ex.execute(Some(&root), chmod.clone()), Err(Errno::EPERM));
        assert_eq!(ex.execute(None, chmod), Ok(Reply::Done));
    }

    #[test]
    fn executor_is_shared_across_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Executor>();
    }

    #[test]
    fn new_fails_on_a_missing_root() {
        let policy = Policy::of_this_process(None);
        let err = Executor::new(Path::new("/nonexistent/rscq-root"), false, policy);
        assert!(matches!(err, Err(ExecutorError::OpenRoot { .. })));
    }

    fn path() -> impl Strategy<Value = RemotePath> {
        let component = prop_oneof![
            Just(b"..".to_vec()),
            Just(b".".to_vec()),
            Just(Vec::new()),
            Just(b"a".to_vec()),
            Just(b"f".to_vec()),
            Just(b"up".to_vec()),
            Just(b"abs".to_vec()),
            Just(b"proc".to_vec()),
            Just(b"out".to_vec()),
            Just(b"outside".to_vec()),
            Just(b"secret".to_vec()),
            Just(vec![b'n'; 300]),
            proptest::collection::vec(any::<u8>(), 0..6),
        ];
        prop_oneof![
            8 => (any::<bool>(), proptest::collection::vec(component, 0..6)).prop_map(
                |(absolute, parts)| {
                    let mut path = if absolute { b"/".to_vec() } else { Vec::new() };
                    path.extend(parts.join(&b'/'));
                    RemotePath(path)
                }
            ),
            1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(RemotePath),
            1 => Just(RemotePath(vec![b'a'; 5000])),
        ]
    }

    fn handle() -> impl Strategy<Value = Handle> {
        prop_oneof![4 => (0u64..6).prop_map(Handle), 1 => any::<u64>().prop_map(Handle)]
    }

    fn size() -> impl Strategy<Value = u32> {
        prop_oneof![0u32..300, Just(u32::MAX), any::<u32>()]
    }

    fn time() -> impl Strategy<Value = TimeUpdate> {
        prop_oneof![
            Just(TimeUpdate::Now),
            Just(TimeUpdate::Omit),
            (any::<i64>(), any::<u32>())
                .prop_map(|(sec, nsec)| TimeUpdate::At(Timespec { sec, nsec })),
        ]
    }

    fn xattr_target() -> impl Strategy<Value = XattrTarget> {
        prop_oneof![
            (path(), any::<bool>()).prop_map(|(path, follow)| XattrTarget::Path { path, follow }),
            handle().prop_map(XattrTarget::Handle),
        ]
    }

    fn bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(any::<u8>(), 0..64)
    }

    fn request() -> impl Strategy<Value = Request> {
        let flags = prop_oneof![
            Just(libc::O_RDONLY),
            Just(libc::O_RDWR | libc::O_CREAT),
            Just(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC),
            Just(libc::O_RDONLY | libc::O_DIRECTORY),
            Just(libc::O_TMPFILE | libc::O_RDWR),
            Just(libc::O_PATH),
            any::<i32>(),
        ];
        let by_handle =
            prop_oneof![
                handle().prop_map(|handle| Request::Close { handle }),
                (handle(), size()).prop_map(|(handle, len)| Request::Read { handle, len }),
                (handle(), size(), any::<i64>()).prop_map(|(handle, len, offset)| {
                    Request::Pread {
                        handle,
                        len,
                        offset,
                    }
                }),
                (handle(), bytes()).prop_map(|(handle, data)| Request::Write { handle, data }),
                (handle(), bytes(), prop_oneof![0i64..1 << 20, any::<i64>()]).prop_map(
                    |(handle, data, offset)| Request::Pwrite {
                        handle,
                        data,
                        offset,
                    }
                ),
                (handle(), any::<i64>(), -1i32..6).prop_map(|(handle, offset, whence)| {
                    Request::Lseek {
                        handle,
                        offset,
                        whence,
                    }
                }),
                (handle(), any::<bool>())
                    .prop_map(|(handle, data_only)| Request::Fsync { handle, data_only }),
                handle().prop_map(|handle| Request::Fstat { handle }),
                (handle(), size()).prop_map(|(handle, bytes)| Request::Getdents { handle, bytes }),
                (handle(), any::<i32>())
                    .prop_map(|(handle, flags)| Request::SetFlags { handle, flags }),
                (handle(), prop_oneof![0i64..1 << 20, any::<i64>()])
                    .prop_map(|(handle, len)| Request::Ftruncate { handle, len }),
                (handle(), any::<u32>())
                    .prop_map(|(handle, mode)| Request::Fchmod { handle, mode }),
                (handle(), any::<u32>(), any::<u32>())
                    .prop_map(|(handle, uid, gid)| Request::Fchown { handle, uid, gid }),
                (handle(), time(), time()).prop_map(|(handle, a, m)| Request::Futimens {
                    handle,
                    times: [a, m]
                }),
                handle().prop_map(|handle| Request::Fstatfs { handle }),
            ];
        let by_path =
            prop_oneof![
                (path(), flags, any::<u32>()).prop_map(|(path, flags, mode)| Request::Open {
                    path,
                    flags,
                    mode
                }),
                (path(), any::<bool>()).prop_map(|(path, follow)| Request::Stat { path, follow }),
                (path(), any::<i32>(), any::<i32>())
                    .prop_map(|(path, mode, flags)| Request::Access { path, mode, flags }),
                path().prop_map(|path| Request::Readlink { path }),
                (path(), any::<u32>()).prop_map(|(path, mode)| Request::Mkdir { path, mode }),
                path().prop_map(|path| Request::Rmdir { path }),
                path().prop_map(|path| Request::Unlink { path }),
                (path(), path(), prop_oneof![0u32..4, any::<u32>()])
                    .prop_map(|(from, to, flags)| Request::Rename { from, to, flags }),
                (path(), path(), any::<bool>()).prop_map(|(from, to, follow)| Request::Link {
                    from,
                    to,
                    follow
                }),
                (bytes(), path()).prop_map(|(target, path)| Request::Symlink { target, path }),
                (path(), any::<u32>(), any::<bool>())
                    .prop_map(|(path, mode, follow)| Request::Chmod { path, mode, follow }),
                (path(), any::<u32>(), any::<u32>(), any::<bool>()).prop_map(
                    |(path, uid, gid, follow)| Request::Chown {
                        path,
                        uid,
                        gid,
                        follow,
                    }
                ),
                (path(), time(), time(), any::<bool>()).prop_map(|(path, a, m, follow)| {
                    Request::Utimens {
                        path,
                        times: [a, m],
                        follow,
                    }
                }),
                (path(), prop_oneof![0i64..1 << 20, any::<i64>()])
                    .prop_map(|(path, len)| Request::Truncate { path, len }),
                path().prop_map(|path| Request::Statfs { path }),
                path().prop_map(|path| Request::CheckDir { path }),
                (path(), path(), any::<i32>()).prop_map(|(dir, path, flags)| {
                    Request::LookupAndList {
                        dir,
                        lookup: crate::proto::Lookup::Open {
                            path,
                            flags,
                            mode: 0o644,
                        },
                    }
                }),
                Just(Request::Uname),
            ];
        let xattrs =
            prop_oneof![
                (xattr_target(), bytes(), size())
                    .prop_map(|(target, name, size)| Request::GetXattr { target, name, size }),
                (xattr_target(), size())
                    .prop_map(|(target, size)| Request::ListXattr { target, size }),
                (xattr_target(), bytes(), bytes(), any::<i32>()).prop_map(
                    |(target, name, value, flags)| Request::SetXattr {
                        target,
                        name,
                        value,
                        flags,
                    }
                ),
                (xattr_target(), bytes())
                    .prop_map(|(target, name)| Request::RemoveXattr { target, name }),
            ];
        // Never a wait: a conflicting lock would wait for ever here.
        let file_lock = (
            any::<i16>(),
            -1i16..4,
            any::<i64>(),
            any::<i64>(),
            any::<i32>(),
        )
            .prop_map(|(kind, whence, start, len, pid)| crate::proto::FileLock {
                kind,
                whence,
                start,
                len,
                pid,
            });
        let owner = prop_oneof![
            any::<u32>().prop_map(crate::proto::LockOwner::Process),
            Just(crate::proto::LockOwner::OpenFile),
        ];
        let by_handle_more = prop_oneof![
            (handle(), any::<i32>(), any::<i64>(), any::<i64>()).prop_map(
                |(handle, mode, offset, len)| Request::Fallocate {
                    handle,
                    mode,
                    offset,
                    len,
                }
            ),
            (handle(), -1i32..10).prop_map(|(handle, op)| Request::Flock {
                handle,
                op,
                wait: None,
            }),
            (handle(), owner, file_lock, any::<bool>()).prop_map(|(handle, owner, lock, set)| {
                Request::RecordLock {
                    handle,
                    owner,
                    lock,
                    set,
                    wait: None,
                }
            }),
            (any::<u32>(), proptest::option::of(handle()))
                .prop_map(|(owner, handle)| Request::ReleaseLocks { owner, handle }),
            any::<u64>().prop_map(|wait| Request::CancelWait { wait }),
            (handle(), any::<i32>()).prop_map(|(handle, flags)| Request::Reopen { handle, flags }),
            (
                handle(),
                proptest::option::of(any::<i64>()),
                handle(),
                proptest::option::of(any::<i64>()),
                prop_oneof![0u64..1 << 20, any::<u64>()],
            )
                .prop_map(|(from, from_offset, to, to_offset, len)| {
                    Request::CopyRange {
                        from,
                        from_offset,
                        to,
                        to_offset,
                        len,
                    }
                }),
        ];
        prop_oneof![3 => by_path, 2 => by_handle, 1 => by_handle_more, 1 => xattrs]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Arbitrary requests never panic, and never touch anything outside
        /// the root however they combine `..`, symlinks and `/proc` links.
        #[test]
        fn arbitrary_requests_stay_inside(reqs in proptest::collection::vec(request(), 1..24)) {
            let export = Export::new();
            export.mkdir("a");
            export.write("a/f", b"file");
            export.symlink("../../..", "up");
            export.symlink("/a", "abs");
            export.symlink("/proc/self/root", "proc");
            let secret = export.outside.join("secret");
            export.symlink(secret.to_str().expect("utf-8"), "out");
            let parent = export.root.parent().expect("parent").to_path_buf();
            let ctimes = || {
                [&secret, &export.outside, &parent].map(|p| {
                    let meta = std::fs::symlink_metadata(p).expect("metadata");
                    (meta.ctime(), meta.ctime_nsec())
                })
            };
            let before = ctimes();
            for req in reqs {
                let _ = export.run(req);
            }
            // Any change at all (mode, owner, times, xattrs) moves ctime.
            prop_assert_eq!(ctimes(), before);
            prop_assert_eq!(names_in(&export.outside), ["secret"]);
            prop_assert_eq!(std::fs::read(&secret).expect("secret"), b"outside");
            prop_assert_eq!(names_in(&parent), ["outside", "root"]);
        }
    }
}
