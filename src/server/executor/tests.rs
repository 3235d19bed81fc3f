//! The executor's tests: `--read-only`, handles, credentials, and
//! arbitrary requests that must stay beneath the root.

use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::proto::{Handle, RemotePath, Reply, TimeUpdate, Timespec, XattrTarget};
use crate::server::testutil::{Export, names_in, rp};

fn every_mutation(handle: Handle) -> Vec<Request> {
    let mut requests = opens_that_write();
    requests.extend(handle_mutations(handle));
    requests.extend(path_mutations());
    requests.extend(xattr_mutations(handle));
    requests
}

/// Opens that may change the file: writing, creating, truncating.
fn opens_that_write() -> Vec<Request> {
    let path = || rp("f");
    [
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
    .collect()
}

/// Changes made through an open handle.
fn handle_mutations(handle: Handle) -> Vec<Request> {
    let times = [TimeUpdate::Now, TimeUpdate::Now];
    vec![
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
        Request::LinkHandle {
            handle,
            to: rp("g"),
            empty_path: false,
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
    ]
}

/// Changes made by path.
fn path_mutations() -> Vec<Request> {
    let path = || rp("f");
    let times = [TimeUpdate::Now, TimeUpdate::Now];
    vec![
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
    ]
}

/// Extended attributes set and removed, by path and by handle.
fn xattr_mutations(handle: Handle) -> Vec<Request> {
    let target = || XattrTarget::Path {
        path: rp("f"),
        follow: true,
    };
    vec![
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
    ]
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
        (any::<i64>(), any::<u32>()).prop_map(|(sec, nsec)| TimeUpdate::At(Timespec { sec, nsec })),
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
    prop_oneof![3 => by_path(), 2 => by_handle(), 1 => by_handle_more(), 1 => xattrs()]
}

/// Requests on a handle.
fn by_handle() -> impl Strategy<Value = Request> {
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
        (handle(), any::<i32>()).prop_map(|(handle, flags)| Request::SetFlags { handle, flags }),
        (handle(), prop_oneof![0i64..1 << 20, any::<i64>()])
            .prop_map(|(handle, len)| Request::Ftruncate { handle, len }),
        (handle(), any::<u32>()).prop_map(|(handle, mode)| Request::Fchmod { handle, mode }),
        (handle(), any::<u32>(), any::<u32>()).prop_map(|(handle, uid, gid)| Request::Fchown {
            handle,
            uid,
            gid
        }),
        (handle(), time(), time()).prop_map(|(handle, a, m)| Request::Futimens {
            handle,
            times: [a, m]
        }),
        handle().prop_map(|handle| Request::Fstatfs { handle }),
    ]
}

/// Requests on a path.
fn by_path() -> impl Strategy<Value = Request> {
    let flags = prop_oneof![
        Just(libc::O_RDONLY),
        Just(libc::O_RDWR | libc::O_CREAT),
        Just(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC),
        Just(libc::O_RDONLY | libc::O_DIRECTORY),
        Just(libc::O_TMPFILE | libc::O_RDWR),
        Just(libc::O_PATH),
        any::<i32>(),
    ];

    prop_oneof![
        (path(), flags, any::<u32>()).prop_map(|(path, flags, mode)| Request::Open {
            path,
            flags,
            mode
        }),
        (path(), any::<bool>()).prop_map(|(path, follow)| Request::Stat { path, follow }),
        (path(), any::<i32>(), any::<i32>()).prop_map(|(path, mode, flags)| Request::Access {
            path,
            mode,
            flags
        }),
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
        (path(), any::<u32>(), any::<bool>()).prop_map(|(path, mode, follow)| Request::Chmod {
            path,
            mode,
            follow
        }),
        (path(), any::<u32>(), any::<u32>(), any::<bool>()).prop_map(|(path, uid, gid, follow)| {
            Request::Chown {
                path,
                uid,
                gid,
                follow,
            }
        }),
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
    ]
}

/// Extended attributes, on a path or a handle.
fn xattrs() -> impl Strategy<Value = Request> {
    prop_oneof![
        (xattr_target(), bytes(), size()).prop_map(|(target, name, size)| Request::GetXattr {
            target,
            name,
            size
        }),
        (xattr_target(), size()).prop_map(|(target, size)| Request::ListXattr { target, size }),
        (xattr_target(), bytes(), bytes(), any::<i32>()).prop_map(
            |(target, name, value, flags)| Request::SetXattr {
                target,
                name,
                value,
                flags,
            }
        ),
        (xattr_target(), bytes()).prop_map(|(target, name)| Request::RemoveXattr { target, name }),
    ]
}

/// More requests on a handle: allocation, locks, reopening, copies.
fn by_handle_more() -> impl Strategy<Value = Request> {
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
    prop_oneof![
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
        (handle(), path(), any::<bool>()).prop_map(|(handle, to, empty_path)| {
            Request::LinkHandle {
                handle,
                to,
                empty_path,
            }
        }),
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
    ]
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
