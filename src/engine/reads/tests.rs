//! Tests of the read path through [`FileEngine`]: smallfile opens,
//! bulkread's pipelined fetches, and what invalidates bytes read ahead.
//! Tests only.

use std::time::{Duration, Instant};

use crate::engine::{Action, FileEngine, Layers, Pending, SMALL_FILE_MAX};
use crate::proto::{Handle, RemotePath, Reply, Request, Response, Stat};

const TTL: Duration = Duration::from_secs(1);

fn rp(s: &str) -> RemotePath {
    RemotePath(s.as_bytes().to_vec())
}

fn layers() -> Layers {
    Layers {
        statcache: true,
        compound: true,
        readahead: true,
        dirmeta: false,
        bulkread: true,
        smallfile: true,
        openahead: false,
    }
}

fn regular(ino: u64, size: u64) -> Stat {
    Stat {
        mode: libc::S_IFREG | 0o644,
        ino,
        size,
        ..Stat::default()
    }
}

fn open(path: &str, flags: i32) -> Request {
    Request::Open {
        path: rp(path),
        flags,
        mode: 0,
    }
}

fn read(handle: u64, len: u32) -> Request {
    Request::Read {
        handle: Handle(handle),
        len,
    }
}

/// Opens `path` read-only as `handle`; the server answers as for a file
/// of `content` (whole when small).
fn opened(e: &mut FileEngine, now: Instant, path: &str, handle: u64, ino: u64, content: &[u8]) {
    let Action::Send(req, pending) = e.on_request(now, open(path, libc::O_RDONLY)) else {
        panic!()
    };
    let stat = regular(ino, u64::try_from(content.len()).unwrap());
    let reply = match req {
        Request::OpenRead { max, .. } if content.len() <= usize::try_from(max).unwrap() => {
            Reply::OpenedRead {
                handle: Handle(handle),
                stat,
                data: content.to_vec(),
            }
        }
        _ => Reply::Opened {
            handle: Handle(handle),
            stat,
        },
    };
    assert_eq!(
        e.on_reply(now, pending, Ok(reply)),
        Ok(Reply::Opened {
            handle: Handle(handle),
            stat
        })
    );
}

#[test]
fn a_small_file_is_opened_fstatted_and_read_in_one_round_trip() {
    let now = Instant::now();
    let mut e = FileEngine::new(layers(), TTL);
    let Action::Send(req, _) = e.on_request(now, open("/r/a", libc::O_RDONLY)) else {
        panic!()
    };
    assert_eq!(
        req,
        Request::OpenRead {
            path: rp("/r/a"),
            flags: libc::O_RDONLY,
            mode: 0,
            max: SMALL_FILE_MAX
        }
    );
    let mut e = FileEngine::new(layers(), TTL);
    opened(&mut e, now, "/r/a", 1, 10, b"0123456789");
    assert_eq!(
        e.on_request(now, Request::Fstat { handle: Handle(1) }),
        Action::Answer(Ok(Reply::Stat(regular(10, 10))))
    );
    assert_eq!(
        e.on_request(now, read(1, 131_072)),
        Action::Answer(Ok(Reply::Data(b"0123456789".to_vec())))
    );
    assert_eq!(
        e.on_request(now, read(1, 131_072)),
        Action::Answer(Ok(Reply::Data(Vec::new())))
    );
    assert_eq!(e.take_flushes(), Vec::new());
}

#[test]
fn opens_that_may_write_or_are_not_plain_reads_stay_plain() {
    let now = Instant::now();
    let mut e = FileEngine::new(layers(), TTL);
    for flags in [
        libc::O_WRONLY,
        libc::O_RDWR,
        libc::O_RDONLY | libc::O_CREAT,
        libc::O_RDONLY | libc::O_TRUNC,
        libc::O_RDONLY | libc::O_APPEND,
        libc::O_PATH,
        libc::O_RDONLY | libc::O_DIRECT,
    ] {
        let Action::Send(req, _) = e.on_request(now, open("/r/a", flags)) else {
            panic!()
        };
        assert_eq!(req, open("/r/a", flags), "{flags:#o}");
    }
    for off in [
        Layers {
            smallfile: false,
            ..layers()
        },
        Layers {
            readahead: false,
            ..layers()
        },
        Layers::default(),
    ] {
        let mut e = FileEngine::new(off, TTL);
        let Action::Send(req, _) = e.on_request(now, open("/r/a", libc::O_RDONLY)) else {
            panic!()
        };
        assert_eq!(req, open("/r/a", libc::O_RDONLY), "{off:?}");
    }
}

#[test]
fn a_write_through_another_handle_of_the_file_drops_its_bytes() {
    let now = Instant::now();
    let mut e = FileEngine::new(layers(), TTL);
    opened(&mut e, now, "/r/a", 1, 10, b"old bytes");
    opened(&mut e, now, "/r/other", 3, 11, b"other file");
    // The same file again, for writing, and a write through it.
    let Action::Send(_, pending) = e.on_request(now, open("/r/a", libc::O_WRONLY)) else {
        panic!()
    };
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::Opened {
            handle: Handle(2),
            stat: regular(10, 9),
        }),
    );
    let write = Request::Write {
        handle: Handle(2),
        data: b"new".to_vec(),
    };
    assert!(matches!(e.on_request(now, write), Action::Answer(Ok(_))));
    // Held writes go first (the read waits for them); then handle 1 asks
    // the server, and the other file is still read locally.
    let mut step = e.on_request(now, read(1, 4096));
    while let Action::Wait(again, _) = step {
        for (request, pending) in e.take_flushes() {
            let Request::Pwrite { data, .. } = request else {
                panic!("{request:?}")
            };
            let n = u64::try_from(data.len()).unwrap();
            let _ = e.on_reply(now, pending, Ok(Reply::Count(n)));
        }
        step = e.on_request(now, again);
    }
    assert!(
        matches!(step, Action::Send(..)),
        "stale bytes of a file rscq wrote"
    );
    assert_eq!(
        e.on_request(now, read(3, 4096)),
        Action::Answer(Ok(Reply::Data(b"other file".to_vec())))
    );
}

#[test]
fn bytes_that_came_with_an_open_answer_for_the_ttl_only() {
    let now = Instant::now();
    let mut e = FileEngine::new(layers(), TTL);
    opened(&mut e, now, "/r/a", 1, 10, b"0123456789");
    assert!(matches!(
        e.on_request(now + TTL * 2, read(1, 4096)),
        Action::Send(Request::Pread { offset: 0, .. }, _)
    ));
}

/// Serves a `pread` of `content`.
fn serve(content: &[u8], req: &Request) -> Response {
    let Request::Pread { len, offset, .. } = *req else {
        panic!("{req:?}")
    };
    let start = usize::try_from(offset).unwrap().min(content.len());
    let end = (start + usize::try_from(len).unwrap()).min(content.len());
    Ok(Reply::Data(content[start..end].to_vec()))
}

#[test]
fn bulk_reads_wait_for_fetches_in_flight_and_wake_on_their_replies() {
    let now = Instant::now();
    let content: Vec<u8> = (0..8 << 20).map(|i: u32| (i % 251) as u8).collect();
    let mut e = FileEngine::new(layers(), TTL);
    opened(&mut e, now, "/r/big", 1, 10, &content);
    let mut got = Vec::new();
    let mut waits = 0;
    let mut flying = std::collections::VecDeque::new();
    loop {
        let action = e.on_request(now, read(1, 131_072));
        flying.extend(e.take_flushes());
        let resp = match action {
            Action::Answer(resp) => resp,
            Action::Send(req, pending) => e.on_reply(now, pending, serve(&content, &req)),
            Action::Wait(_, generation) => {
                waits += 1;
                assert_eq!(generation, e.flush_generation());
                let (req, pending) = flying.pop_front().expect("a fetch in flight");
                assert!(matches!(pending, Pending::Prefetch { .. }), "{pending:?}");
                assert_eq!(pending.background_name(), "read-ahead");
                let _ = e.on_reply(now, pending, serve(&content, &req));
                assert!(e.flush_generation() > generation, "a waiter must wake");
                continue;
            }
        };
        let Ok(Reply::Data(d)) = resp else {
            panic!("{resp:?}")
        };
        if d.is_empty() {
            break;
        }
        got.extend(d);
    }
    assert_eq!(got, content);
    assert!(waits > 0);
}

#[test]
fn without_bulkread_reads_never_wait() {
    let now = Instant::now();
    let content = vec![5u8; 4 << 20];
    let mut e = FileEngine::new(
        Layers {
            bulkread: false,
            ..layers()
        },
        TTL,
    );
    opened(&mut e, now, "/r/big", 1, 10, &content);
    let mut total = 0;
    loop {
        let resp = match e.on_request(now, read(1, 131_072)) {
            Action::Answer(resp) => resp,
            Action::Send(req, pending) => e.on_reply(now, pending, serve(&content, &req)),
            Action::Wait(..) => panic!("a read waited without bulkread"),
        };
        assert_eq!(e.take_flushes(), Vec::new());
        let Ok(Reply::Data(d)) = resp else { panic!() };
        if d.is_empty() {
            break;
        }
        total += d.len();
    }
    assert_eq!(total, content.len());
}
