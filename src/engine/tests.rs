//! Tests of the layers through [`FileEngine`]'s public steps, on plain
//! values with explicit times. Tests only.

use std::time::{Duration, Instant};

use super::*;
use crate::proto::{EntryMeta, TimeUpdate, XattrTarget};

pub(super) fn rp(s: &str) -> RemotePath {
    RemotePath(s.as_bytes().to_vec())
}

pub(super) fn stat(mode: u32, size: u64) -> Stat {
    Stat {
        mode,
        size,
        ..Stat::default()
    }
}

pub(super) fn meta(mode: u32, link: Option<&str>) -> EntryMeta {
    EntryMeta {
        lstat: Ok(stat(mode, 7)),
        link: link.map(|l| l.as_bytes().to_vec()),
        xattrs: vec![Err(Errno::ENODATA), Err(Errno::EOPNOTSUPP)],
    }
}

fn entry(name: &str) -> DirEntry {
    DirEntry {
        ino: 1,
        off: 2,
        kind: 8,
        name: name.as_bytes().to_vec(),
    }
}

/// The layers these tests were written for (dirmeta has its own tests in
/// `dirmeta_tests.rs`).
pub(super) fn all() -> Layers {
    Layers {
        statcache: true,
        compound: true,
        readahead: true,
        dirmeta: false,
        bulkread: false,
        smallfile: false,
        openahead: false,
    }
}

/// Opens `dir` as handle 1 without `O_DIRECTORY` (so the listing comes
/// with the first `getdents64`) and lists it.
pub(super) fn listed(
    engine: &mut FileEngine,
    now: Instant,
    names: &[(&str, EntryMeta)],
) -> Response {
    listed_as(engine, now, "/d", names)
}

/// [`listed`], with the directory opened by the path `dir`.
fn listed_as(
    engine: &mut FileEngine,
    now: Instant,
    dir: &str,
    names: &[(&str, EntryMeta)],
) -> Response {
    let open = Request::Open {
        path: rp(dir),
        flags: libc::O_RDONLY,
        mode: 0,
    };
    let Action::Send(req, pending) = engine.on_request(now, open) else {
        panic!()
    };
    assert!(matches!(req, Request::Open { .. }));
    let opened = Ok(Reply::Opened {
        handle: Handle(1),
        stat: stat(libc::S_IFDIR | 0o755, 0),
    });
    let _ = engine.on_reply(now, pending, opened);
    let Action::Send(req, pending) = engine.on_request(
        now,
        Request::Getdents {
            handle: Handle(1),
            bytes: 32768,
        },
    ) else {
        panic!("first getdents must go to the server")
    };
    assert_eq!(req, Request::GetdentsPlus { handle: Handle(1) });
    let entries = names.iter().map(|(n, m)| (entry(n), m.clone())).collect();
    engine.on_reply(
        now,
        pending,
        Ok(Reply::DirentsPlus {
            entries,
            complete: true,
        }),
    )
}

#[test]
fn a_listing_answers_each_lstat_once() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let r = listed(&mut e, now, &[("a", meta(libc::S_IFREG | 0o644, None))]);
    assert!(matches!(r, Ok(Reply::Dirents(ref v)) if v.len() == 1));
    let lstat = Request::Stat {
        path: rp("/d/a"),
        follow: false,
    };
    assert_eq!(
        e.on_request(now, lstat.clone()),
        Action::Answer(Ok(Reply::Stat(stat(libc::S_IFREG | 0o644, 7))))
    );
    assert!(
        matches!(e.on_request(now, lstat), Action::Send(..)),
        "used once only"
    );
}

/// `ls` in a remote cwd opens `/d/.`, and then asks for `/d/a`.
#[test]
fn a_listing_of_a_directory_named_with_dots_answers_its_plain_names() {
    let now = Instant::now();
    for dir in ["/d/.", "//d/./", "/./d"] {
        let mut e = FileEngine::new(all(), DEFAULT_TTL);
        let _ = listed_as(
            &mut e,
            now,
            dir,
            &[("a", meta(libc::S_IFREG | 0o644, None))],
        );
        let lstat = Request::Stat {
            path: rp("/d/a"),
            follow: false,
        };
        assert_eq!(
            e.on_request(now, lstat),
            Action::Answer(Ok(Reply::Stat(stat(libc::S_IFREG | 0o644, 7)))),
            "listed as {dir}"
        );
    }
}

#[test]
fn stat_of_a_symlink_is_not_its_lstat_but_readlink_is_cached() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let _ = listed(
        &mut e,
        now,
        &[("l", meta(libc::S_IFLNK | 0o777, Some("target")))],
    );
    let follow = Request::Stat {
        path: rp("/d/l"),
        follow: true,
    };
    assert!(matches!(e.on_request(now, follow), Action::Send(..)));
    assert_eq!(
        e.on_request(now, Request::Readlink { path: rp("/d/l") }),
        Action::Answer(Ok(Reply::Data(b"target".to_vec())))
    );
}

#[test]
fn xattrs_of_the_listing_are_answered_with_the_kernel_errno() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let _ = listed(&mut e, now, &[("a", meta(libc::S_IFREG, None))]);
    let get = |name: &[u8]| Request::GetXattr {
        target: XattrTarget::Path {
            path: rp("/d/a"),
            follow: false,
        },
        name: name.to_vec(),
        size: 255,
    };
    assert_eq!(
        e.on_request(now, get(b"security.selinux")),
        Action::Answer(Err(Errno::ENODATA))
    );
    assert!(matches!(
        e.on_request(now, get(b"user.other")),
        Action::Send(..)
    ));
}

#[test]
fn answers_expire_after_the_ttl() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), Duration::from_millis(100));
    let _ = listed(&mut e, now, &[("a", meta(libc::S_IFREG, None))]);
    let later = now + Duration::from_millis(101);
    let lstat = Request::Stat {
        path: rp("/d/a"),
        follow: false,
    };
    assert!(matches!(e.on_request(later, lstat), Action::Send(..)));
}

/// Lists `/d` with two regular files, `a` and `b`.
fn list_a_and_b(e: &mut FileEngine, now: Instant) {
    let _ = listed(
        e,
        now,
        &[
            ("a", meta(libc::S_IFREG, None)),
            ("b", meta(libc::S_IFREG, None)),
        ],
    );
}

#[test]
fn a_change_to_the_directory_drops_its_entries() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    list_a_and_b(&mut e, now);
    let unlink = Request::Unlink { path: rp("/d/b") };
    assert!(matches!(e.on_request(now, unlink), Action::Send(..)));
    let lstat = Request::Stat {
        path: rp("/d/a"),
        follow: false,
    };
    assert!(matches!(e.on_request(now, lstat), Action::Send(..)));
    assert!(e.stat_cache().is_empty());
}

#[test]
fn a_change_by_a_path_with_dots_drops_every_entry() {
    // `/x/../d/b` names `/d/b` only if `/x` is a directory the server can
    // walk; rscq cannot tell, so nothing listed may stay.
    for spelled in ["/x/../d/b", "/d/./b", "/d/b/", "/d//b"] {
        let now = Instant::now();
        let mut e = FileEngine::new(all(), DEFAULT_TTL);
        let _ = listed(&mut e, now, &[("a", meta(libc::S_IFREG, None))]);
        let unlink = Request::Unlink { path: rp(spelled) };
        assert!(matches!(e.on_request(now, unlink), Action::Send(..)));
        assert!(e.stat_cache().is_empty(), "{spelled}");
    }
}

/// A file listed in one directory may have another name elsewhere: a
/// link, unlink or rename anywhere, or any change while a listed file has
/// several names, drops every entry (its nlink, mode and times may change).
#[test]
fn changes_to_other_names_of_a_listed_file_drop_it() {
    let now = Instant::now();
    let linked = EntryMeta {
        lstat: Ok(Stat {
            nlink: 2,
            ..stat(libc::S_IFREG | 0o644, 7)
        }),
        link: None,
        xattrs: vec![Err(Errno::ENODATA), Err(Errno::EOPNOTSUPP)],
    };
    let elsewhere = [
        Request::Link {
            from: rp("/x/g"),
            to: rp("/y/h"),
            follow: false,
        },
        Request::Unlink { path: rp("/y/h") },
        Request::Rename {
            from: rp("/y/h"),
            to: rp("/y/i"),
            flags: 0,
        },
    ];
    for change in elsewhere {
        let mut e = FileEngine::new(all(), DEFAULT_TTL);
        let _ = listed(&mut e, now, &[("a", meta(libc::S_IFREG, None))]);
        let _ = e.on_request(now, change.clone());
        assert!(e.stat_cache().is_empty(), "after {change:?}");
    }
    // A chmod of another name of `/d/a`, which has two.
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let _ = listed(&mut e, now, &[("a", linked)]);
    let chmod = Request::Chmod {
        path: rp("/x/g"),
        mode: 0o600,
        follow: true,
    };
    let _ = e.on_request(now, chmod.clone());
    assert!(e.stat_cache().is_empty());
    // With one name only, a change elsewhere keeps the listing.
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let _ = listed(&mut e, now, &[("a", meta(libc::S_IFREG, None))]);
    let _ = e.on_request(now, chmod);
    assert!(!e.stat_cache().is_empty());
}

#[test]
fn writing_a_listed_file_through_its_handle_drops_it() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let _ = listed(&mut e, now, &[("a", meta(libc::S_IFREG, None))]);
    let open = Request::Open {
        path: rp("/d/a"),
        flags: libc::O_RDONLY,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request(now, open) else {
        panic!()
    };
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::Opened {
            handle: Handle(2),
            stat: stat(libc::S_IFREG, 7),
        }),
    );
    let times = Request::Futimens {
        handle: Handle(2),
        times: [TimeUpdate::Now, TimeUpdate::Now],
    };
    assert!(matches!(e.on_request(now, times), Action::Send(..)));
    let lstat = Request::Stat {
        path: rp("/d/a"),
        follow: false,
    };
    assert!(matches!(e.on_request(now, lstat), Action::Send(..)));
}

#[test]
fn every_change_through_a_handle_drops_the_listed_file() {
    let now = Instant::now();
    let changes = [
        Request::Fallocate {
            handle: Handle(2),
            mode: 0,
            offset: 0,
            len: 4096,
        },
        Request::CopyRange {
            from: Handle(3),
            from_offset: None,
            to: Handle(2),
            to_offset: None,
            len: 10,
        },
        Request::Ftruncate {
            handle: Handle(2),
            len: 1,
        },
    ];
    for change in changes {
        let what = format!("{change:?}");
        let mut e = FileEngine::new(all(), DEFAULT_TTL);
        list_a_and_b(&mut e, now);
        opened(&mut e, now, "/d/a", 2);
        opened(&mut e, now, "/d/b", 3);
        assert!(
            matches!(e.on_request(now, change), Action::Send(..)),
            "{what}"
        );
        let lstat = Request::Stat {
            path: rp("/d/a"),
            follow: false,
        };
        assert!(
            matches!(e.on_request(now, lstat), Action::Send(..)),
            "{what}: the stat of the changed file was answered from the listing"
        );
    }
}

/// Opens `path` read-only as `handle`, with the stat the open brought.
fn opened(e: &mut FileEngine, now: Instant, path: &str, handle: u64) {
    let open = Request::Open {
        path: rp(path),
        flags: libc::O_RDONLY,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request(now, open) else {
        panic!()
    };
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::Opened {
            handle: Handle(handle),
            stat: stat(libc::S_IFREG, 9),
        }),
    );
}

/// pjdfstest's unlink/14: `open f; unlink f; fstat` must show nlink 0, so
/// the stat of the open cannot answer once anything changed any file: by
/// path, or through another handle (which may be the same file).
#[test]
fn any_change_makes_the_stat_of_an_open_stale() {
    let now = Instant::now();
    let changes = [
        Request::Unlink { path: rp("/f") },
        Request::Link {
            from: rp("/f"),
            to: rp("/g"),
            follow: false,
        },
        Request::Chmod {
            path: rp("/elsewhere"),
            mode: 0o600,
            follow: true,
        },
        Request::Truncate {
            path: rp("/f"),
            len: 0,
        },
        Request::Fchmod {
            handle: Handle(8),
            mode: 0o600,
        },
    ];
    for change in changes {
        let mut e = FileEngine::new(all(), DEFAULT_TTL);
        opened(&mut e, now, "/f", 7);
        let _ = e.on_request(now, change.clone());
        assert!(
            matches!(
                e.on_request(now, Request::Fstat { handle: Handle(7) }),
                Action::Send(..) | Action::Wait(..)
            ),
            "after {change:?}"
        );
    }
    // Reads change nothing: the open's stat still answers.
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    opened(&mut e, now, "/f", 7);
    let _ = e.on_request(
        now,
        Request::Stat {
            path: rp("/f"),
            follow: true,
        },
    );
    assert!(matches!(
        e.on_request(now, Request::Fstat { handle: Handle(7) }),
        Action::Answer(Ok(Reply::Stat(_)))
    ));
}

#[test]
fn first_fstat_after_open_is_local_and_a_write_invalidates_it() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let open = Request::Open {
        path: rp("/f"),
        flags: libc::O_RDWR,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request(now, open) else {
        panic!()
    };
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::Opened {
            handle: Handle(3),
            stat: stat(libc::S_IFREG, 9),
        }),
    );
    assert_eq!(
        e.on_request(now, Request::Fstat { handle: Handle(3) }),
        Action::Answer(Ok(Reply::Stat(stat(libc::S_IFREG, 9))))
    );
    assert!(matches!(
        e.on_request(now, Request::Fstat { handle: Handle(3) }),
        Action::Send(..)
    ));

    let open = Request::Open {
        path: rp("/g"),
        flags: libc::O_RDWR,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request(now, open) else {
        panic!()
    };
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::Opened {
            handle: Handle(4),
            stat: stat(libc::S_IFREG, 9),
        }),
    );
    let write = Request::Write {
        handle: Handle(4),
        data: vec![1],
    };
    // Write-behind answers the write; the fstat waits for it to land,
    // then asks the server (not the stale stat of the open).
    assert_eq!(
        e.on_request(now, write),
        Action::Answer(Ok(Reply::Count(1)))
    );
    // Where the offset is, rscq knows without the server.
    assert_eq!(
        e.on_request(
            now,
            Request::Lseek {
                handle: Handle(4),
                offset: 0,
                whence: libc::SEEK_CUR
            }
        ),
        Action::Answer(Ok(Reply::Offset(1)))
    );
    assert!(e.take_flushes().is_empty());
    assert!(matches!(
        e.on_request(now, Request::Fstat { handle: Handle(4) }),
        Action::Wait(..)
    ));
    let flushes = e.take_flushes();
    assert_eq!(flushes.len(), 1);
    let (req, pending) = flushes.into_iter().next().unwrap();
    assert_eq!(
        req,
        Request::Pwrite {
            handle: Handle(4),
            data: vec![1],
            offset: 0
        }
    );
    let _ = e.on_reply(now, pending, Ok(Reply::Count(1)));
    assert!(matches!(
        e.on_request(now, Request::Fstat { handle: Handle(4) }),
        Action::Send(..)
    ));
}

#[test]
fn a_held_write_that_fails_is_reported_by_fsync_and_close() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    for (h, ino) in [(5, 50), (6, 60)] {
        let open = Request::Open {
            path: rp("/f"),
            flags: libc::O_WRONLY,
            mode: 0,
        };
        let Action::Send(_, pending) = e.on_request(now, open) else {
            panic!()
        };
        let _ = e.on_reply(
            now,
            pending,
            Ok(Reply::Opened {
                handle: Handle(h),
                stat: Stat {
                    ino,
                    ..stat(libc::S_IFREG, 0)
                },
            }),
        );
    }
    for h in [5, 6] {
        let write = Request::Write {
            handle: Handle(h),
            data: vec![7; 10],
        };
        assert_eq!(
            e.on_request(now, write),
            Action::Answer(Ok(Reply::Count(10)))
        );
    }
    // A path call waits for every held write.
    let stat_call = Request::Stat {
        path: rp("/f"),
        follow: true,
    };
    assert!(matches!(e.on_request(now, stat_call), Action::Wait(..)));
    let fsync = Request::Fsync {
        handle: Handle(5),
        data_only: false,
    };
    assert!(matches!(e.on_request(now, fsync.clone()), Action::Wait(..)));
    let flushes = e.take_flushes();
    assert_eq!(flushes.len(), 2, "the stat sent both");
    let mut flushes = flushes.into_iter();
    let (first, first_pending) = flushes.next().unwrap();
    let (_, second_pending) = flushes.next().unwrap();
    let (five, six) = if matches!(
        first,
        Request::Pwrite {
            handle: Handle(5),
            ..
        }
    ) {
        (first_pending, second_pending)
    } else {
        (second_pending, first_pending)
    };
    let _ = e.on_reply(now, five, Err(Errno(libc::ENOSPC)));
    assert_eq!(
        e.on_request(now, fsync.clone()),
        Action::Answer(Err(Errno(libc::ENOSPC)))
    );
    assert!(matches!(e.on_request(now, fsync), Action::Send(..)));
    // The other file: its close flushes and gets the error.
    let close = Request::FlushWrites { handle: Handle(6) };
    assert!(matches!(e.on_request(now, close.clone()), Action::Wait(..)));
    assert!(e.take_flushes().is_empty(), "already in flight");
    let _ = e.on_reply(now, six, Err(Errno(libc::EDQUOT)));
    assert_eq!(
        e.on_request(now, close.clone()),
        Action::Answer(Err(Errno(libc::EDQUOT)))
    );
    assert_eq!(e.on_request(now, close), Action::Answer(Ok(Reply::Done)));
    assert!(e.finish_writes().is_empty());
}

#[test]
fn later_getdents_are_served_from_the_prefetched_listing() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let names: Vec<String> = (0..100).map(|i| format!("file-{i:03}")).collect();
    let listing: Vec<_> = names
        .iter()
        .map(|n| (n.as_str(), meta(libc::S_IFREG, None)))
        .collect();
    // A buffer of 512 bytes holds 16 records of 32 bytes.
    let open = Request::Open {
        path: rp("/d"),
        flags: libc::O_DIRECTORY,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request(now, open) else {
        panic!()
    };
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::Opened {
            handle: Handle(1),
            stat: stat(libc::S_IFDIR, 0),
        }),
    );
    let Action::Send(_, pending) = e.on_request(
        now,
        Request::Getdents {
            handle: Handle(1),
            bytes: 512,
        },
    ) else {
        panic!()
    };
    let entries = listing.iter().map(|(n, m)| (entry(n), m.clone())).collect();
    let mut seen = Vec::new();
    let first = e.on_reply(
        now,
        pending,
        Ok(Reply::DirentsPlus {
            entries,
            complete: true,
        }),
    );
    let Ok(Reply::Dirents(batch)) = first else {
        panic!()
    };
    seen.extend(batch);
    loop {
        match e.on_request(
            now,
            Request::Getdents {
                handle: Handle(1),
                bytes: 512,
            },
        ) {
            Action::Answer(Ok(Reply::Dirents(batch))) if batch.is_empty() => break,
            Action::Answer(Ok(Reply::Dirents(batch))) => seen.extend(batch),
            other => panic!("expected a local answer, got {other:?}"),
        }
    }
    let got: Vec<String> = seen
        .iter()
        .map(|d| String::from_utf8(d.name.clone()).unwrap())
        .collect();
    assert_eq!(got, names);
}

#[test]
fn with_every_layer_off_everything_goes_to_the_server() {
    let now = Instant::now();
    let mut e = FileEngine::new(Layers::default(), DEFAULT_TTL);
    let getdents = Request::Getdents {
        handle: Handle(1),
        bytes: 100,
    };
    assert_eq!(
        e.on_request(now, getdents.clone()),
        Action::Send(getdents.clone(), Pending::Plain(getdents))
    );
    let fstat = Request::Fstat { handle: Handle(1) };
    assert!(matches!(
        e.on_request(now, fstat),
        Action::Send(Request::Fstat { .. }, _)
    ));
}

#[test]
fn an_opendir_brings_the_listing_and_its_stats_in_one_round_trip() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
    let open = Request::Open {
        path: rp("/d"),
        flags,
        mode: 0,
    };
    let Action::Send(req, pending) = e.on_request(now, open) else {
        panic!("an open goes to the server")
    };
    assert_eq!(
        req,
        Request::OpenPlus {
            path: rp("/d"),
            flags,
            mode: 0
        }
    );
    let dir_stat = stat(libc::S_IFDIR | 0o755, 0);
    let reply = e.on_reply(
        now,
        pending,
        Ok(Reply::OpenedDir(Box::new(crate::proto::OpenedDir {
            handle: Handle(1),
            stat: dir_stat,
            entries: vec![
                (entry("a"), meta(libc::S_IFREG | 0o644, None)),
                (entry("b"), meta(libc::S_IFREG | 0o600, None)),
            ],
            complete: true,
        }))),
    );
    assert_eq!(
        reply,
        Ok(Reply::Opened {
            handle: Handle(1),
            stat: dir_stat
        }),
        "the program's open sees a plain open"
    );
    let getdents = Request::Getdents {
        handle: Handle(1),
        bytes: 32768,
    };
    match e.on_request(now, getdents.clone()) {
        Action::Answer(Ok(Reply::Dirents(v))) => {
            let names: Vec<_> = v.iter().map(|d| d.name.clone()).collect();
            assert_eq!(names, vec![b"a".to_vec(), b"b".to_vec()]);
        }
        other => panic!("the first getdents is local: {other:?}"),
    }
    assert_eq!(
        e.on_request(now, getdents),
        Action::Answer(Ok(Reply::Dirents(vec![]))),
        "then the end of the directory"
    );
    assert_eq!(
        e.on_request(
            now,
            Request::Stat {
                path: rp("/d/b"),
                follow: false
            }
        ),
        Action::Answer(Ok(Reply::Stat(stat(libc::S_IFREG | 0o600, 7))))
    );
}

#[test]
fn without_compound_an_opendir_is_a_plain_open() {
    let now = Instant::now();
    let layers = Layers {
        compound: false,
        ..all()
    };
    let mut e = FileEngine::new(layers, DEFAULT_TTL);
    let open = Request::Open {
        path: rp("/d"),
        flags: libc::O_DIRECTORY,
        mode: 0,
    };
    assert_eq!(
        e.on_request(now, open.clone()),
        Action::Send(open.clone(), Pending::Plain(open))
    );
}

#[test]
fn a_listing_answers_existence_checks_but_not_permission_checks() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let _ = listed(
        &mut e,
        now,
        &[
            ("a", meta(libc::S_IFREG | 0o644, None)),
            ("l", meta(libc::S_IFLNK | 0o777, Some("a"))),
        ],
    );
    let access = |name: &str, mode: i32, flags: i32| Request::Access {
        path: rp(name),
        mode,
        flags,
    };
    assert_eq!(
        e.on_request(now, access("/d/a", libc::F_OK, 0)),
        Action::Answer(Ok(Reply::Done))
    );
    assert!(
        matches!(
            e.on_request(now, access("/d/a", libc::R_OK, 0)),
            Action::Send(..)
        ),
        "permissions are the server's to judge"
    );
    assert!(
        matches!(
            e.on_request(now, access("/d/l", libc::F_OK, 0)),
            Action::Send(..)
        ),
        "a followed symlink needs its target"
    );
    assert_eq!(
        e.on_request(now, access("/d/l", libc::F_OK, libc::AT_SYMLINK_NOFOLLOW)),
        Action::Answer(Ok(Reply::Done))
    );
    // The stat answer is still there for the stat that follows.
    assert_eq!(
        e.on_request(
            now,
            Request::Stat {
                path: rp("/d/a"),
                follow: false
            }
        ),
        Action::Answer(Ok(Reply::Stat(stat(libc::S_IFREG | 0o644, 7))))
    );
}
