//! Appends (`O_APPEND`) under write-behind, through [`FileEngine`]'s
//! public steps. Tests only.

use std::time::Instant;

use super::*;

use super::tests::{all, rp, stat};

/// Opens `/log` `O_WRONLY|O_APPEND` as handle 9, a file of `size` bytes.
fn open_log(e: &mut FileEngine, now: Instant, size: u64) {
    let open = Request::Open {
        path: rp("/log"),
        flags: libc::O_WRONLY | libc::O_APPEND,
        mode: 0,
    };
    let Action::Send(_, pending) = e.on_request(now, open) else {
        panic!()
    };
    let _ = e.on_reply(
        now,
        pending,
        Ok(Reply::Opened {
            handle: Handle(9),
            stat: stat(libc::S_IFREG, size),
        }),
    );
}

#[test]
fn appends_are_held_and_sent_as_one_write_before_fstat_or_seek_to_the_end() {
    let now = Instant::now();
    let mut e = FileEngine::new(all(), DEFAULT_TTL);
    open_log(&mut e, now, 100);
    for line in [&b"one\n"[..], b"two\n"] {
        let write = Request::Write {
            handle: Handle(9),
            data: line.to_vec(),
        };
        assert_eq!(
            e.on_request(now, write),
            Action::Answer(Ok(Reply::Count(4)))
        );
    }
    assert!(e.take_flushes().is_empty());
    // The end of the file, and its size, are the server's to tell once
    // the appends are there (not the stat the open brought).
    let seek_end = Request::Lseek {
        handle: Handle(9),
        offset: 0,
        whence: libc::SEEK_END,
    };
    assert!(matches!(
        e.on_request(now, seek_end.clone()),
        Action::Wait(..)
    ));
    let flushes = e.take_flushes();
    assert_eq!(flushes.len(), 1);
    let (req, pending) = flushes.into_iter().next().unwrap();
    assert_eq!(
        req,
        Request::Write {
            handle: Handle(9),
            data: b"one\ntwo\n".to_vec()
        }
    );
    assert!(matches!(
        e.on_request(now, seek_end.clone()),
        Action::Wait(..)
    ));
    let _ = e.on_reply(now, pending, Ok(Reply::Count(8)));
    assert!(matches!(e.on_request(now, seek_end), Action::Send(..)));
    assert!(matches!(
        e.on_request(now, Request::Fstat { handle: Handle(9) }),
        Action::Send(..)
    ));
    // A `pwrite` on an `O_APPEND` file appends too: it is not held, and
    // waits for the appends before it.
    let write = Request::Write {
        handle: Handle(9),
        data: b"three\n".to_vec(),
    };
    assert_eq!(
        e.on_request(now, write),
        Action::Answer(Ok(Reply::Count(6)))
    );
    let pwrite = Request::Pwrite {
        handle: Handle(9),
        data: b"four\n".to_vec(),
        offset: 0,
    };
    assert!(matches!(e.on_request(now, pwrite), Action::Wait(..)));
    assert_eq!(e.take_flushes().len(), 1);
}

#[test]
fn without_read_ahead_appends_go_one_by_one() {
    let now = Instant::now();
    let layers = Layers {
        readahead: false,
        ..all()
    };
    let mut e = FileEngine::new(layers, DEFAULT_TTL);
    open_log(&mut e, now, 0);
    let write = Request::Write {
        handle: Handle(9),
        data: b"one\n".to_vec(),
    };
    assert!(matches!(e.on_request(now, write), Action::Send(..)));
}
