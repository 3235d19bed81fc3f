//! Tests of what opens bring for the calls that follow them: the stat of
//! a whole small file, and the stat of a directory opened with
//! `O_NOFOLLOW`. Tests only.

use std::time::{Duration, Instant};

use super::tests::{all, rp, stat};
use super::*;

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
