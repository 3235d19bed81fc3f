//! Tests of bulkread (pipelined fetches) and of cursors that start with a
//! small file's bytes, on plain values. Tests only.

use super::*;

#[test]
fn a_bulk_reader_gets_the_file_with_the_window_full() {
    let content = file(24 << 20);
    let d = drive(bulk(), &content, 128 * 1024, ROOM);
    assert_eq!(d.out, content);
    // Reads of 1 MiB each once the window is open: few requests in all...
    assert!(d.trips < 50, "{} requests for 24 MiB", d.trips);
    // ...and the window reached its size, never more than it and one read.
    assert!(
        d.max_in_flight >= BULK_MAX_WINDOW - u64::from(MAX_IO),
        "at most {} bytes in flight",
        d.max_in_flight
    );
    assert!(d.max_in_flight <= BULK_MAX_WINDOW, "{}", d.max_in_flight);
}

#[test]
fn bulk_reads_that_do_not_divide_the_chunks_are_never_short() {
    for len in [100_000usize, 1_000_001, 3 * 1024 * 1024 + 17] {
        let content = file(len);
        for chunk in [3000, 65_536, 131_072, MAX_IO] {
            let d = drive(bulk(), &content, chunk, ROOM);
            assert_eq!(d.out, content, "{len} bytes read {chunk} at a time");
        }
    }
}

#[test]
fn the_start_of_a_file_is_read_without_fetching_ahead() {
    let content = file(10 << 20);
    let mut c = bulk();
    for _ in 0..4 {
        let read = Request::Read {
            handle: H,
            len: 4096,
        };
        match c.on_request(t0(), H, &read, ROOM).unwrap() {
            Step::Send(req, pending) => {
                let _ = c.on_reply(t0(), pending, serve(&content, &req));
            }
            Step::Answer(_) => {}
            Step::Wait => panic!("nothing is in flight"),
        }
        assert_eq!(
            c.take_prefetches(),
            Vec::new(),
            "head -c 16k fetches one window"
        );
    }
}

#[test]
fn a_random_bulk_reader_fetches_only_what_it_asks() {
    let content = file(4 << 20);
    let mut c = bulk();
    for at in [3_000_000i64, 10, 2_000_000, 500_000] {
        let seek = Request::Lseek {
            handle: H,
            offset: at,
            whence: libc::SEEK_SET,
        };
        let _ = c.on_request(t0(), H, &seek, ROOM);
        let read = Request::Read {
            handle: H,
            len: 100_000,
        };
        let Some(Step::Send(req, pending)) = c.on_request(t0(), H, &read, ROOM) else {
            panic!("a random read asks the server")
        };
        assert!(
            matches!(req, Request::Pread { len: 100_000, .. }),
            "{req:?}"
        );
        let _ = c.on_reply(t0(), pending, serve(&content, &req));
        assert_eq!(c.take_prefetches(), Vec::new());
    }
}

#[test]
fn the_room_bounds_what_is_in_flight() {
    let content = file(8 << 20);
    let room = 1 << 20;
    let d = drive(bulk(), &content, 128 * 1024, room);
    assert_eq!(d.out, content);
    assert!(
        d.max_in_flight <= room + 128 * 1024,
        "{} bytes in flight with room for {room}",
        d.max_in_flight
    );
}

/// Reads sequentially until fetches are in flight; returns them.
fn pipelining(c: &mut Cursor, content: &[u8]) -> Vec<Prefetch> {
    loop {
        let read = Request::Read {
            handle: H,
            len: 65_536,
        };
        match c.on_request(t0(), H, &read, ROOM).unwrap() {
            Step::Send(req, pending) => {
                let _ = c.on_reply(t0(), pending, serve(content, &req));
            }
            Step::Answer(_) => {}
            Step::Wait => return c.take_prefetches(),
        }
    }
}

#[test]
fn a_failed_fetch_is_asked_again_in_the_foreground() {
    let content = file(4 << 20);
    let mut c = bulk();
    let sent = pipelining(&mut c, &content);
    assert!(sent.len() > 1, "{sent:?}");
    let first = &sent[0];
    c.on_prefetched(t0(), first.id, Err(Errno::EIO));
    // The others come back after: they are not what the read needs.
    for p in &sent[1..] {
        c.on_prefetched(t0(), p.id, serve(&content, &p.request));
    }
    let read = Request::Read {
        handle: H,
        len: 65_536,
    };
    let Some(Step::Send(req, pending)) = c.on_request(t0(), H, &read, ROOM) else {
        panic!("the read must go to the server")
    };
    assert_eq!(
        c.on_reply(t0(), pending, Err(Errno::EIO)),
        Err(Errno::EIO),
        "{req:?}"
    );
}

#[test]
fn fetches_dropped_while_in_flight_are_ignored() {
    let content = file(4 << 20);
    let mut c = bulk();
    let sent = pipelining(&mut c, &content);
    let at = c.position();
    // The file changes (a write through another handle): all is dropped.
    c.drop_ahead();
    let other = vec![7u8; content.len()];
    for p in &sent {
        c.on_prefetched(t0(), p.id, serve(&content, &p.request));
    }
    let read = Request::Read {
        handle: H,
        len: 65_536,
    };
    let step = c.on_request(t0(), H, &read, ROOM).unwrap();
    let resp = match step {
        Step::Send(req, pending) => c.on_reply(t0(), pending, serve(&other, &req)),
        Step::Wait => {
            let p = c.take_prefetches().remove(0);
            c.on_prefetched(t0(), p.id, serve(&other, &p.request));
            match c.on_request(t0(), H, &read, ROOM) {
                Some(Step::Answer(r)) => r,
                other => panic!("{other:?}"),
            }
        }
        Step::Answer(r) => panic!("answered from dropped bytes: {r:?}"),
    };
    assert_eq!(resp, Ok(Reply::Data(vec![7; 65_536])), "at {at}");
}

#[test]
fn fetched_bytes_older_than_the_ttl_are_fetched_again() {
    let content = file(1 << 20);
    let mut c = Cursor::with_settings(Settings {
        bulk: false,
        ttl: Duration::from_secs(1),
    });
    let read = Request::Read {
        handle: H,
        len: 4096,
    };
    let Some(Step::Send(req, pending)) = c.on_request(t0(), H, &read, ROOM) else {
        panic!()
    };
    let _ = c.on_reply(t0(), pending, serve(&content, &req));
    let soon = t0() + Duration::from_millis(500);
    assert!(matches!(
        c.on_request(soon, H, &read, ROOM),
        Some(Step::Answer(_))
    ));
    let late = t0() + Duration::from_secs(2);
    let Some(Step::Send(req, _)) = c.on_request(late, H, &read, ROOM) else {
        panic!("stale bytes answered a read")
    };
    assert!(
        matches!(req, Request::Pread { offset: 8192, .. }),
        "{req:?}"
    );
}

#[test]
fn a_small_file_that_came_with_its_open_is_read_locally() {
    let mut c = Cursor::with_contents(bulk().settings, t0(), b"hello\n".to_vec(), 65_536);
    let read = Request::Read {
        handle: H,
        len: 131_072,
    };
    assert_eq!(
        c.on_request(t0(), H, &read, ROOM),
        Some(Step::Answer(Ok(Reply::Data(b"hello\n".to_vec()))))
    );
    assert_eq!(
        c.on_request(t0(), H, &read, ROOM),
        Some(Step::Answer(Ok(Reply::Data(Vec::new()))))
    );
    // As after any end of file: the next read asks again.
    assert!(matches!(
        c.on_request(t0(), H, &read, ROOM),
        Some(Step::Send(Request::Pread { offset: 6, .. }, _))
    ));
    assert_eq!(c.take_prefetches(), Vec::new());
}

#[test]
fn an_empty_file_that_came_with_its_open_ends_at_once() {
    let mut c = Cursor::with_contents(Settings::default(), t0(), Vec::new(), 65_536);
    let read = Request::Read {
        handle: H,
        len: 4096,
    };
    assert_eq!(
        c.on_request(t0(), H, &read, ROOM),
        Some(Step::Answer(Ok(Reply::Data(Vec::new()))))
    );
}

#[test]
fn a_file_as_large_as_the_open_asked_for_is_read_on() {
    let content = file(65_536 + 10);
    let mut c = Cursor::with_contents(
        Settings::default(),
        t0(),
        content[..65_536].to_vec(),
        65_536,
    );
    let read = Request::Read {
        handle: H,
        len: 65_536,
    };
    assert_eq!(
        c.on_request(t0(), H, &read, ROOM),
        Some(Step::Answer(Ok(Reply::Data(content[..65_536].to_vec()))))
    );
    let Some(Step::Send(req, pending)) = c.on_request(t0(), H, &read, ROOM) else {
        panic!("the rest is not known yet")
    };
    assert_eq!(
        c.on_reply(t0(), pending, serve(&content, &req)),
        Ok(Reply::Data(content[65_536..].to_vec()))
    );
}
