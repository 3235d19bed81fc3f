use super::*;
use crate::errno::Errno;
use crate::proto::DirEntry;

fn rp(s: &str) -> RemotePath {
    RemotePath(s.as_bytes().to_vec())
}

fn stat(ino: u64) -> Stat {
    Stat {
        dev_major: 8,
        dev_minor: 1,
        ino,
        ..Stat::default()
    }
}

fn open(book: &mut HandleBook, path: &str, flags: i32, handle: u64) {
    book.observe(
        &Request::Open {
            path: rp(path),
            flags,
            mode: 0o644,
        },
        &Ok(Reply::Opened {
            handle: Handle(handle),
            stat: stat(100 + handle),
        }),
    );
}

fn again(handle: u64, path: Option<&str>, flags: i32, offset: Option<i64>) -> Request {
    Request::Reattach {
        handle: Handle(handle),
        path: path.map(rp),
        flags,
        dev: (8, 1),
        ino: 100 + handle,
        offset,
    }
}

#[test]
fn reads_writes_and_seeks_move_the_offset_given_again() {
    let mut book = HandleBook::default();
    open(
        &mut book,
        "a",
        libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC,
        1,
    );
    let read = Request::Read {
        handle: Handle(1),
        len: 10,
    };
    book.observe(&read, &Ok(Reply::Data(vec![0; 7])));
    // A failed read moves nothing.
    book.observe(&read, &Err(Errno::EIO));
    let write = Request::Write {
        handle: Handle(1),
        data: vec![1; 5],
    };
    book.observe(&write, &Ok(Reply::Count(5)));
    // The flags go as they were; the server leaves out what acts only once.
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC;
    assert_eq!(
        book.reattach_requests(),
        vec![again(1, Some("a"), flags, Some(12))]
    );
    let seek = Request::Lseek {
        handle: Handle(1),
        offset: 0,
        whence: libc::SEEK_END,
    };
    book.observe(&seek, &Ok(Reply::Offset(40)));
    // Positioned calls move nothing.
    book.observe(
        &Request::Pread {
            handle: Handle(1),
            len: 3,
            offset: 0,
        },
        &Ok(Reply::Data(vec![0; 3])),
    );
    assert_eq!(
        book.reattach_requests(),
        vec![again(1, Some("a"), flags, Some(40))]
    );
    book.observe(&Request::Close { handle: Handle(1) }, &Ok(Reply::Done));
    assert!(book.is_empty());
    assert!(book.reattach_requests().is_empty());
}

#[test]
fn appends_go_to_the_end_and_unnamed_files_cannot_be_found() {
    let mut book = HandleBook::default();
    open(&mut book, "log", libc::O_WRONLY | libc::O_APPEND, 1);
    book.observe(
        &Request::Write {
            handle: Handle(1),
            data: vec![1; 5],
        },
        &Ok(Reply::Count(5)),
    );
    open(&mut book, "dir", libc::O_TMPFILE | libc::O_RDWR, 2);
    open(&mut book, "plain", libc::O_RDONLY, 3);
    // F_SETFL turns append on for the plain file too.
    book.observe(
        &Request::SetFlags {
            handle: Handle(3),
            flags: libc::O_APPEND,
        },
        &Ok(Reply::Done),
    );
    book.observe(
        &Request::Write {
            handle: Handle(3),
            data: vec![1; 2],
        },
        &Ok(Reply::Count(2)),
    );
    assert_eq!(
        book.reattach_requests(),
        vec![
            again(1, Some("log"), libc::O_WRONLY | libc::O_APPEND, None),
            again(2, None, libc::O_TMPFILE | libc::O_RDWR, Some(0)),
            again(3, Some("plain"), libc::O_RDONLY | libc::O_APPEND, None),
        ]
    );
}

#[test]
fn only_calls_that_do_the_same_twice_are_sent_again() {
    let mut book = HandleBook::default();
    open(&mut book, "a", libc::O_RDWR, 1);
    open(&mut book, "log", libc::O_WRONLY | libc::O_APPEND, 2);
    let pwrite = |h| Request::Pwrite {
        handle: Handle(h),
        data: b"x".to_vec(),
        offset: 4,
    };
    assert!(book.resendable(&pwrite(1)));
    // pwrite(2) on an O_APPEND file appends.
    assert!(!book.resendable(&pwrite(2)));
    assert!(book.resendable(&Request::Read {
        handle: Handle(1),
        len: 1
    }));
    assert!(book.resendable(&Request::Ftruncate {
        handle: Handle(1),
        len: 0
    }));
    assert!(!book.resendable(&Request::Write {
        handle: Handle(1),
        data: b"x".to_vec()
    }));
    assert!(!book.resendable(&Request::Unlink { path: rp("a") }));
    assert!(!book.resendable(&Request::Open {
        path: rp("b"),
        flags: libc::O_WRONLY | libc::O_CREAT,
        mode: 0o644
    }));
}

#[test]
fn reopened_files_keep_the_path_and_listings_their_place() {
    let mut book = HandleBook::default();
    open(&mut book, "a", libc::O_RDWR, 1);
    book.observe(
        &Request::Reopen {
            handle: Handle(1),
            flags: libc::O_RDONLY,
        },
        &Ok(Reply::Opened {
            handle: Handle(2),
            stat: stat(102),
        }),
    );
    open(&mut book, "d", libc::O_RDONLY | libc::O_DIRECTORY, 3);
    let entry = |off| DirEntry {
        ino: 1,
        off,
        kind: libc::DT_REG,
        name: b"x".to_vec(),
    };
    let list = Request::Getdents {
        handle: Handle(3),
        bytes: 4096,
    };
    book.observe(&list, &Ok(Reply::Dirents(vec![entry(5), entry(9)])));
    let dir = libc::O_RDONLY | libc::O_DIRECTORY;
    assert_eq!(
        book.reattach_requests(),
        vec![
            again(1, Some("a"), libc::O_RDWR, Some(0)),
            again(2, Some("a"), libc::O_RDONLY, Some(0)),
            again(3, Some("d"), dir, Some(9)),
        ]
    );
    book.observe(&list, &Ok(Reply::Dirents(Vec::new())));
    assert_eq!(book.reattach_requests()[2], again(3, Some("d"), dir, None));
}
