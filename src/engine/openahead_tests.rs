//! Tests of what opens bring for the calls that follow them: the stat of
//! a whole small file, and the stat of a directory opened with
//! `O_NOFOLLOW`. Tests only.

use std::time::{Duration, Instant};

use super::tests::{all, rp, stat};
use super::*;
use crate::proto::Credentials;

fn small_files() -> Layers {
    Layers {
        smallfile: true,
        ..all()
    }
}

fn fstat(handle: u64) -> Request {
    Request::Fstat {
        handle: Handle(handle),
    }
}

/// Opens `path` read-only as `handle`; the reply brings `data` whole.
fn open_small(e: &mut FileEngine, now: Instant, path: &str, handle: u64, data: &[u8]) {
    let open = Request::Open {
        path: rp(path),
        flags: libc::O_RDONLY,
        mode: 0,
    };
    let Action::Send(req, pending) = e.on_request(now, open) else {
        panic!("an open goes to the server")
    };
    assert!(matches!(req, Request::OpenRead { .. }), "{req:?}");
    let size = u64::try_from(data.len()).unwrap();
    let reply = e.on_reply(
        now,
        pending,
        Ok(Reply::OpenedRead {
            handle: Handle(handle),
            stat: stat(libc::S_IFREG | 0o644, size),
            data: data.to_vec(),
        }),
    );
    assert!(matches!(reply, Ok(Reply::Opened { .. })), "{reply:?}");
}

#[test]
fn a_whole_small_file_answers_every_fstat_while_its_bytes_do() {
    let now = Instant::now();
    let mut e = FileEngine::new(small_files(), DEFAULT_TTL);
    open_small(&mut e, now, "/f", 3, b"hello");
    let st = stat(libc::S_IFREG | 0o644, 5);
    for _ in 0..3 {
        assert_eq!(
            e.on_request(now, fstat(3)),
            Action::Answer(Ok(Reply::Stat(st)))
        );
    }
    // Past the TTL the bytes no longer answer: the stat answers once, as
    // an open's stat always did, then the server is asked.
    let later = now + DEFAULT_TTL + Duration::from_millis(1);
    assert_eq!(
        e.on_request(later, fstat(3)),
        Action::Answer(Ok(Reply::Stat(st)))
    );
    assert!(matches!(e.on_request(later, fstat(3)), Action::Send(..)));
}

#[test]
fn a_change_to_any_file_makes_a_small_file_s_fstat_go_to_the_server() {
    let now = Instant::now();
    let mut e = FileEngine::new(small_files(), DEFAULT_TTL);
    open_small(&mut e, now, "/f", 3, b"hello");
    // Another name of the same file may be changed.
    let chmod = Request::Chmod {
        path: rp("/g"),
        mode: 0o600,
        follow: true,
    };
    let Action::Send(req, pending) = e.on_request(now, chmod) else {
        panic!("a chmod goes to the server")
    };
    let _ = e.on_reply(now, pending, Ok(Reply::Done));
    assert!(matches!(req, Request::Chmod { .. }));
    assert!(matches!(e.on_request(now, fstat(3)), Action::Send(..)));
}

#[test]
fn a_small_file_mapped_answers_its_next_fstat_from_the_server() {
    let now = Instant::now();
    let mut e = FileEngine::new(small_files(), DEFAULT_TTL);
    open_small(&mut e, now, "/f", 3, b"hello");
    // A mapping reads the file through a handle of its own: its bytes may
    // be newer than those the open brought.
    let reopen = Request::Reopen {
        handle: Handle(3),
        flags: libc::O_RDONLY,
    };
    assert!(matches!(e.on_request(now, reopen), Action::Send(..)));
    assert!(matches!(
        e.on_request(now, fstat(3)),
        Action::Answer(Ok(Reply::Stat(_)))
    ));
    assert!(matches!(e.on_request(now, fstat(3)), Action::Send(..)));
}

#[test]
fn a_file_that_did_not_come_whole_answers_one_fstat() {
    let now = Instant::now();
    let mut e = FileEngine::new(small_files(), DEFAULT_TTL);
    let open = Request::Open {
        path: rp("/big"),
        flags: libc::O_RDONLY,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request(now, open) else {
        panic!()
    };
    let st = stat(libc::S_IFREG | 0o644, 1 << 20);
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::OpenedRead {
            handle: Handle(3),
            stat: st,
            data: vec![7; 4096],
        }),
    );
    assert_eq!(
        e.on_request(now, fstat(3)),
        Action::Answer(Ok(Reply::Stat(st)))
    );
    assert!(matches!(e.on_request(now, fstat(3)), Action::Send(..)));
}

/// Opens directory `path` with `flags` (`O_DIRECTORY` added) as handle 4.
fn open_dir(e: &mut FileEngine, now: Instant, path: &str, flags: i32) -> Stat {
    let open = Request::Open {
        path: rp(path),
        flags: flags | libc::O_DIRECTORY,
        mode: 0,
    };
    let Action::Send(req, pending) = e.on_request(now, open) else {
        panic!("an open goes to the server")
    };
    assert!(matches!(req, Request::OpenPlus { .. }), "{req:?}");
    let dir_stat = Stat {
        ino: 42,
        ..stat(libc::S_IFDIR | 0o750, 4096)
    };
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::OpenedDir(Box::new(crate::proto::OpenedDir {
            handle: Handle(4),
            stat: dir_stat,
            entries: vec![],
            complete: true,
        }))),
    );
    dir_stat
}

fn lstat(path: &str) -> Request {
    Request::Stat {
        path: rp(path),
        follow: false,
    }
}

#[test]
fn a_directory_opened_without_following_answers_the_lstat_that_follows_once() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let st = open_dir(&mut e, now, "/d/sub", libc::O_RDONLY | libc::O_NOFOLLOW);
    assert_eq!(
        e.on_request(now, lstat("/d/sub")),
        Action::Answer(Ok(Reply::Stat(st)))
    );
    assert!(matches!(
        e.on_request(now, lstat("/d/sub")),
        Action::Send(..)
    ));
}

#[test]
fn a_directory_opened_through_a_possible_symlink_answers_no_lstat() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    let _ = open_dir(&mut e, now, "/d/sub", libc::O_RDONLY);
    assert!(matches!(
        e.on_request(now, lstat("/d/sub")),
        Action::Send(..)
    ));
}

fn caller() -> Credentials {
    Credentials {
        fsuid: 1000,
        ..Credentials::default()
    }
}

fn small_meta(size: u64) -> crate::proto::EntryMeta {
    crate::proto::EntryMeta {
        lstat: Ok(stat(libc::S_IFREG | 0o644, size)),
        link: None,
        xattrs: vec![],
    }
}

fn dirent(name: &str) -> DirEntry {
    DirEntry {
        ino: 1,
        off: 1,
        kind: libc::DT_REG,
        name: name.as_bytes().to_vec(),
    }
}

/// Lists `/d` (files a, b, c, d of 1 byte) through an open of the
/// program, then opens /d/a from the server, as `cat /d/*` does.
fn first_open_in_a_listed_directory(e: &mut FileEngine, now: Instant) {
    list_d(e, now);
    let pending = send_open_a(e, now);
    open_a_replied(e, now, pending);
}

/// Lists `/d` (files a, b, c, d of 1 byte) through an open of the program.
fn list_d(e: &mut FileEngine, now: Instant) {
    let open_dir = Request::Open {
        path: rp("/d"),
        flags: libc::O_RDONLY | libc::O_DIRECTORY,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request_by(now, open_dir, Some(&caller())) else {
        panic!("the directory's open goes to the server")
    };
    let entries = ["a", "b", "c", "d"]
        .iter()
        .map(|n| (dirent(n), small_meta(1)))
        .collect();
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::OpenedDir(Box::new(crate::proto::OpenedDir {
            handle: Handle(1),
            stat: stat(libc::S_IFDIR | 0o755, 0),
            entries,
            complete: true,
        }))),
    );
}

/// The program's open of `/d/a`, sent to the server.
fn send_open_a(e: &mut FileEngine, now: Instant) -> Pending {
    let open = Request::Open {
        path: rp("/d/a"),
        flags: libc::O_RDONLY,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request_by(now, open, Some(&caller())) else {
        panic!("/d/a is opened by the server")
    };
    pending
}

/// The server's reply to the open of `/d/a`.
fn open_a_replied(e: &mut FileEngine, now: Instant, pending: Pending) {
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::OpenedRead {
            handle: Handle(2),
            stat: stat(libc::S_IFREG | 0o644, 1),
            data: b"x".to_vec(),
        }),
    );
}

fn open_c() -> Request {
    Request::Open {
        path: rp("/d/c"),
        flags: libc::O_RDONLY | libc::O_CLOEXEC,
        mode: 0,
    }
}

#[test]
fn the_next_entries_are_opened_ahead_with_the_program_s_credentials() {
    let now = Instant::now();
    let mut e = FileEngine::new(
        Layers {
            openahead: true,
            ..small_files()
        },
        DEFAULT_TTL,
    );
    first_open_in_a_listed_directory(&mut e, now);
    let ahead = e.take_flushes();
    let paths: Vec<_> = ahead
        .iter()
        .map(|(req, pending)| {
            assert_eq!(pending.caller(), Some(&caller()));
            match req {
                Request::OpenRead { path, flags, .. } => {
                    assert_eq!(*flags & libc::O_NOFOLLOW, libc::O_NOFOLLOW);
                    String::from_utf8(path.0.clone()).unwrap()
                }
                other => panic!("{other:?}"),
            }
        })
        .collect();
    assert_eq!(paths, ["/d/b", "/d/c", "/d/d"]);
    // The program's open of /d/c comes before the reply: it waits.
    let Action::Wait(req, generation) = e.on_request_by(now, open_c(), Some(&caller())) else {
        panic!("an open on its way is waited for")
    };
    let (_, pending) = ahead.into_iter().nth(1).unwrap();
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::OpenedRead {
            handle: Handle(7),
            stat: stat(libc::S_IFREG | 0o644, 1),
            data: b"c".to_vec(),
        }),
    );
    assert_ne!(e.flush_generation(), generation, "the waiter looks again");
    assert_eq!(
        e.on_request_by(now, req, Some(&caller())),
        Action::Answer(Ok(Reply::Opened {
            handle: Handle(7),
            stat: stat(libc::S_IFREG | 0o644, 1)
        }))
    );
    let read = Request::Read {
        handle: Handle(7),
        len: 100,
    };
    assert_eq!(
        e.on_request(now, read),
        Action::Answer(Ok(Reply::Data(b"c".to_vec()))),
        "its bytes came with it"
    );
    assert_eq!(e.opens_taken_from_ahead(), 1);
}

#[test]
fn a_change_closes_what_was_opened_ahead_of_it_and_the_program_opens_anew() {
    let now = Instant::now();
    let mut e = FileEngine::new(
        Layers {
            openahead: true,
            ..small_files()
        },
        DEFAULT_TTL,
    );
    first_open_in_a_listed_directory(&mut e, now);
    for (i, (_, pending)) in e.take_flushes().into_iter().enumerate() {
        let _ = e.on_reply(
            now,
            pending,
            Ok(Reply::OpenedRead {
                handle: Handle(10 + u64::try_from(i).unwrap()),
                stat: stat(libc::S_IFREG | 0o644, 1),
                data: b"old".to_vec(),
            }),
        );
    }
    let write_c = Request::Open {
        path: rp("/d/c"),
        flags: libc::O_WRONLY | libc::O_TRUNC,
        mode: 0,
    };
    let Action::Send(..) = e.on_request_by(now, write_c, Some(&caller())) else {
        panic!("a writer's open goes to the server")
    };
    let closes: Vec<_> = e.take_flushes().into_iter().map(|(req, _)| req).collect();
    // The one opened ahead of /d/c goes; /d/b and /d/d are other files.
    assert_eq!(
        closes,
        [Request::Close { handle: Handle(11) }],
        "{closes:?}"
    );
    assert!(closes.iter().all(|r| matches!(r, Request::Close { .. })));
    assert!(matches!(
        e.on_request_by(now, open_c(), Some(&caller())),
        Action::Send(Request::OpenRead { .. }, _)
    ));
}

#[test]
fn without_openahead_nothing_is_opened_behind_the_program_s_back() {
    let now = Instant::now();
    let mut e = FileEngine::new(small_files(), DEFAULT_TTL);
    first_open_in_a_listed_directory(&mut e, now);
    assert!(e.take_flushes().is_empty());
}

/// The program appends to `/d/c` through handle 5: the bytes are held.
fn append_to_c(e: &mut FileEngine, now: Instant) {
    let open = Request::Open {
        path: rp("/d/c"),
        flags: libc::O_WRONLY | libc::O_APPEND,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request_by(now, open, Some(&caller())) else {
        panic!("an append's open goes to the server")
    };
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::Opened {
            handle: Handle(5),
            stat: stat(libc::S_IFREG | 0o644, 1),
        }),
    );
}

#[test]
fn an_open_made_ahead_while_writes_to_its_file_were_held_is_not_taken() {
    // A thread appends to /d/c while another opens /d/a: /d/c is opened
    // ahead before the held bytes reach the server, so what that open
    // brings may lack them, whichever comes first, its reply or the
    // write's.
    for reply_first in [true, false] {
        let now = Instant::now();
        let mut e = FileEngine::new(
            Layers {
                openahead: true,
                ..small_files()
            },
            DEFAULT_TTL,
        );
        append_to_c(&mut e, now);
        list_d(&mut e, now);
        let open_a = send_open_a(&mut e, now);
        // While /d/a's open is on its way, the writer's bytes are held.
        let write = Request::Write {
            handle: Handle(5),
            data: b"new".to_vec(),
        };
        assert_eq!(
            e.on_request(now, write),
            Action::Answer(Ok(Reply::Count(3)))
        );
        open_a_replied(&mut e, now, open_a);
        let c = e
            .take_flushes()
            .into_iter()
            .find(|(req, _)| matches!(req, Request::OpenRead { path, .. } if path == &rp("/d/c")))
            .expect("/d/c is opened ahead");
        let old = Ok(Reply::OpenedRead {
            handle: Handle(11),
            stat: stat(libc::S_IFREG | 0o644, 1),
            data: b"x".to_vec(),
        });
        if reply_first {
            let _ = e.on_reply(now, c.1.clone(), old.clone());
        }
        // The writer closes: its held bytes go, and are written.
        let close = Request::Close { handle: Handle(5) };
        assert!(matches!(e.on_request(now, close), Action::Wait(..)));
        for (req, pending) in e.take_flushes() {
            if let Request::Write { data, .. } = &req {
                let n = u64::try_from(data.len()).unwrap();
                let _ = e.on_reply(now, pending, Ok(Reply::Count(n)));
            }
        }
        if !reply_first {
            let _ = e.on_reply(now, c.1, old);
        }
        assert!(
            matches!(
                e.on_request_by(now, open_c(), Some(&caller())),
                Action::Send(Request::OpenRead { .. }, _)
            ),
            "reply first: {reply_first}"
        );
    }
}
