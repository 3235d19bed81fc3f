//! Tests of the read-ahead cursor on plain values. Tests only.

use super::*;

mod bulk;

const H: Handle = Handle(9);
const ROOM: u64 = BULK_MAX_TOTAL;

/// One fixed time: these tests are not about the TTL.
fn t0() -> Instant {
    static T0: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *T0.get_or_init(Instant::now)
}

fn file(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect()
}

/// Serves `step` against `content` as the server would.
fn serve(content: &[u8], req: &Request) -> Response {
    match *req {
        Request::Pread { len, offset, .. } => {
            let start = usize::try_from(offset).unwrap().min(content.len());
            let end = (start + usize::try_from(len).unwrap()).min(content.len());
            Ok(Reply::Data(content[start..end].to_vec()))
        }
        _ => panic!("unexpected {req:?}"),
    }
}

/// What [`drive`] saw.
struct Drive {
    out: Vec<u8>,
    /// Requests that reached the server.
    trips: usize,
    /// Reads that waited for a fetch in flight.
    waits: usize,
    /// The most bytes asked for by pipelined fetches at once.
    max_in_flight: u64,
}

/// Reads the whole file through `c`, `chunk` bytes at a time, serving
/// pipelined fetches oldest first whenever a read waits.
fn drive(mut c: Cursor, content: &[u8], chunk: u32, room: u64) -> Drive {
    let mut d = Drive {
        out: Vec::new(),
        trips: 0,
        waits: 0,
        max_in_flight: 0,
    };
    let mut flying: VecDeque<Prefetch> = VecDeque::new();
    loop {
        let read = Request::Read {
            handle: H,
            len: chunk,
        };
        let step = c.on_request(t0(), H, &read, room).unwrap();
        let sent = c.take_prefetches();
        d.trips += sent.len();
        flying.extend(sent);
        d.max_in_flight = d.max_in_flight.max(c.in_flight());
        let resp = match step {
            Step::Answer(r) => r,
            Step::Send(req, pending) => {
                d.trips += 1;
                c.on_reply(t0(), pending, serve(content, &req))
            }
            Step::Wait => {
                d.waits += 1;
                let p = flying
                    .pop_front()
                    .expect("a read waits for a fetch in flight");
                c.on_prefetched(t0(), p.id, serve(content, &p.request));
                continue;
            }
        };
        let Ok(Reply::Data(data)) = resp else {
            panic!("{resp:?}")
        };
        if data.is_empty() {
            return d;
        }
        assert!(data.len() <= usize::try_from(chunk).unwrap());
        let short = data.len() < usize::try_from(chunk).unwrap();
        d.out.extend(data);
        // Only the last read may be short (GNU tar relies on it).
        if short {
            assert_eq!(d.out.len(), content.len(), "short read before the end");
        }
    }
}

/// Reads the whole file `chunk` bytes at a time; returns the bytes and
/// how many requests reached the server.
fn read_all(content: &[u8], chunk: u32) -> (Vec<u8>, usize) {
    let d = drive(Cursor::new(), content, chunk, ROOM);
    (d.out, d.trips)
}

fn bulk() -> Cursor {
    Cursor::with_settings(Settings {
        bulk: true,
        ttl: Duration::from_secs(1),
    })
}

#[test]
fn sequential_reads_get_the_file_in_few_round_trips() {
    let content = file(3 * 1024 * 1024 + 17);
    let (got, trips) = read_all(&content, 4096);
    assert_eq!(got, content);
    assert!(trips < 12, "{trips} round trips for 3 MiB");
}

#[test]
fn reads_that_do_not_divide_the_window_are_never_short() {
    let content = file(102_400);
    let (got, _) = read_all(&content, 10_240);
    assert_eq!(got, content);
    let (got, _) = read_all(&content, 3000);
    assert_eq!(got, content);
}

#[test]
fn empty_and_tiny_files() {
    assert_eq!(read_all(&[], 4096), (Vec::new(), 1));
    let (got, trips) = read_all(b"hello", 4096);
    assert_eq!((got.as_slice(), trips), (b"hello".as_slice(), 1));
}

#[test]
fn the_end_of_a_file_is_answered_once_then_asked_again() {
    let mut c = Cursor::new();
    let read = Request::Read {
        handle: H,
        len: 4096,
    };
    let Some(Step::Send(req, pending)) = c.on_request(t0(), H, &read, ROOM) else {
        panic!()
    };
    assert_eq!(
        c.on_reply(t0(), pending, serve(b"first\n", &req)),
        Ok(Reply::Data(b"first\n".to_vec()))
    );
    // `cat`'s closing read needs no round trip...
    assert_eq!(
        c.on_request(t0(), H, &read, ROOM),
        Some(Step::Answer(Ok(Reply::Data(Vec::new()))))
    );
    // ...but a later one sees what was appended meanwhile.
    let Some(Step::Send(req, pending)) = c.on_request(t0(), H, &read, ROOM) else {
        panic!("a second read at the end must ask the server")
    };
    assert!(matches!(req, Request::Pread { offset: 6, .. }), "{req:?}");
    assert_eq!(
        c.on_reply(t0(), pending, serve(b"first\nsecond\n", &req)),
        Ok(Reply::Data(b"second\n".to_vec()))
    );
}

#[test]
fn a_random_reader_fetches_only_what_it_asks() {
    let content = file(1 << 20);
    let mut c = Cursor::new();
    for at in [500_000i64, 10, 900_000] {
        let step = c.on_request(
            t0(),
            H,
            &Request::Lseek {
                handle: H,
                offset: at,
                whence: libc::SEEK_SET,
            },
            ROOM,
        );
        assert_eq!(step, Some(Step::Answer(Ok(Reply::Offset(at)))));
        let Some(Step::Send(req, pending)) = c.on_request(
            t0(),
            H,
            &Request::Read {
                handle: H,
                len: 100,
            },
            ROOM,
        ) else {
            panic!()
        };
        assert_eq!(
            req,
            Request::Pread {
                handle: H,
                len: 100,
                offset: at
            }
        );
        let Ok(Reply::Data(d)) = c.on_reply(t0(), pending, serve(&content, &req)) else {
            panic!()
        };
        let start = usize::try_from(at).unwrap();
        assert_eq!(d, content[start..start + 100]);
    }
}

#[test]
fn writes_go_to_the_offset_and_drop_what_was_read_ahead() {
    let mut c = Cursor::new();
    let Some(Step::Send(req, pending)) =
        c.on_request(t0(), H, &Request::Read { handle: H, len: 10 }, ROOM)
    else {
        panic!()
    };
    let _ = c.on_reply(t0(), pending, serve(&file(1000), &req));
    let w = Request::Write {
        handle: H,
        data: vec![1, 2, 3],
    };
    let Some(Step::Send(req, pending)) = c.on_request(t0(), H, &w, ROOM) else {
        panic!()
    };
    assert_eq!(
        req,
        Request::Pwrite {
            handle: H,
            data: vec![1, 2, 3],
            offset: 10
        }
    );
    assert_eq!(
        c.on_reply(t0(), pending, Ok(Reply::Count(3))),
        Ok(Reply::Count(3))
    );
    let cur = c.on_request(
        t0(),
        H,
        &Request::Lseek {
            handle: H,
            offset: 0,
            whence: libc::SEEK_CUR,
        },
        ROOM,
    );
    assert_eq!(cur, Some(Step::Answer(Ok(Reply::Offset(13)))));
    // The next read must not come from the stale read-ahead.
    assert!(matches!(
        c.on_request(t0(), H, &Request::Read { handle: H, len: 5 }, ROOM),
        Some(Step::Send(..))
    ));
}

#[test]
fn seek_end_asks_the_server_and_negative_offsets_fail() {
    let mut c = Cursor::new();
    let end = c.on_request(
        t0(),
        H,
        &Request::Lseek {
            handle: H,
            offset: 0,
            whence: libc::SEEK_END,
        },
        ROOM,
    );
    let Some(Step::Send(_, pending)) = end else {
        panic!()
    };
    assert_eq!(
        c.on_reply(t0(), pending, Ok(Reply::Offset(77))),
        Ok(Reply::Offset(77))
    );
    let back = c.on_request(
        t0(),
        H,
        &Request::Lseek {
            handle: H,
            offset: -100,
            whence: libc::SEEK_CUR,
        },
        ROOM,
    );
    assert_eq!(back, Some(Step::Answer(Err(Errno::EINVAL))));
}
