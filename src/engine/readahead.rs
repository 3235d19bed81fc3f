//! Read-ahead for remote files read in sequence.
//!
//! Once the layer owns a handle's file offset, `read`, `write` and `lseek`
//! are carried out at that offset (`pread`/`pwrite` on the server), so the
//! server's own offset no longer matters and bytes fetched ahead can be
//! served locally. The window starts at [`FIRST_WINDOW`] and doubles with
//! each read that continues where the last one ended, up to `MAX_IO`. A
//! read anywhere else fetches exactly what it asks for: a random-access
//! reader pays nothing extra.
//!
//! Pure: must not fetch anything itself; it says what to fetch.

use crate::errno::Errno;
use crate::proto::{Handle, MAX_IO, Reply, Request, Response};

/// How much the first read of a sequence fetches.
pub const FIRST_WINDOW: u32 = 64 * 1024;

/// One handle's offset and the bytes fetched past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pos: i64,
    /// Bytes of the file starting at `ahead_at`, fetched but not yet read.
    ahead: Vec<u8>,
    ahead_at: i64,
    /// The next fetch size; grows while reads stay sequential.
    window: u32,
    /// Where the last read ended, to tell sequential reads from random ones.
    last_end: i64,
    /// Whether the last fetch hit the end of the file.
    at_eof: bool,
}

/// What a request becomes under read-ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Answer(Response),
    /// Send this; the reply goes to [`Cursor::on_reply`] with `pending`.
    Send(Request, Pending),
}

/// The request in flight, for [`Cursor::on_reply`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A read of `want` bytes at `at`: `prefix` was already fetched, the
    /// rest was asked for as a `pread` of `fetch` bytes right after it.
    Read {
        want: u32,
        fetch: u32,
        at: i64,
        prefix: Vec<u8>,
    },
    /// A write at `at`: the offset moves by what was written.
    Write { at: i64 },
    /// An `lseek` the server had to answer (`SEEK_END`, `SEEK_DATA`, …).
    Seek,
}

impl Default for Cursor {
    fn default() -> Self {
        Self::new()
    }
}

impl Cursor {
    /// A cursor at offset 0 of a freshly opened file.
    pub fn new() -> Self {
        Self {
            pos: 0,
            ahead: Vec::new(),
            ahead_at: 0,
            window: FIRST_WINDOW,
            last_end: 0,
            at_eof: false,
        }
    }

    /// The file offset rscq keeps for the program.
    pub fn position(&self) -> i64 {
        self.pos
    }

    /// A write of `len` bytes at `at` was taken by write-behind; a plain
    /// `write` (`moves`) advances the offset past it.
    pub fn wrote_behind(&mut self, at: i64, len: usize, moves: bool) {
        self.drop_ahead();
        if moves {
            self.pos = at.saturating_add(i64::try_from(len).unwrap_or(i64::MAX));
            self.last_end = self.pos;
        }
    }

    /// The offset moves by `n`: the server copied that many bytes from or
    /// to it (`copy_file_range`).
    pub fn moved_by(&mut self, n: u64) {
        self.drop_ahead();
        self.advance(usize::try_from(n).unwrap_or(usize::MAX));
    }

    /// Forgets the bytes fetched ahead (the file may have changed).
    pub fn drop_ahead(&mut self) {
        self.ahead.clear();
        self.at_eof = false;
    }

    /// Decides `req`; `None` when it does not touch the offset.
    pub fn on_request(&mut self, handle: Handle, req: &Request) -> Option<Step> {
        match *req {
            Request::Read { len, .. } => Some(self.read(handle, len)),
            Request::Write { ref data, .. } => {
                self.drop_ahead();
                let at = self.pos;
                let data = data.clone();
                Some(Step::Send(
                    Request::Pwrite {
                        handle,
                        data,
                        offset: at,
                    },
                    Pending::Write { at },
                ))
            }
            Request::Lseek { offset, whence, .. } => Some(self.seek(handle, offset, whence)),
            Request::Pwrite { .. } | Request::Ftruncate { .. } | Request::Fallocate { .. } => {
                self.drop_ahead();
                None
            }
            _ => None,
        }
    }

    fn read(&mut self, handle: Handle, len: u32) -> Step {
        let want = usize::try_from(len).unwrap_or(usize::MAX);
        if self.pos >= self.ahead_at {
            let skip = usize::try_from(self.pos - self.ahead_at).unwrap_or(usize::MAX);
            // A read the fetched bytes cover, or one that ends the file the
            // last fetch reached the end of, is answered locally. Never a
            // short read otherwise: GNU tar takes one as a shrunk file.
            let buffered = self.ahead.len().saturating_sub(skip);
            if skip <= self.ahead.len() && (buffered >= want || self.at_eof) {
                let n = want.min(buffered);
                if n == 0 {
                    // The end of the file is told once: the file may grow
                    // (another process appends, `tail -f` polls), so the
                    // next read at the end asks the server again.
                    self.at_eof = false;
                }
                let data = self.ahead[skip..skip + n].to_vec();
                self.advance(n);
                return Step::Answer(Ok(Reply::Data(data)));
            }
            if skip < self.ahead.len() {
                // Part is here: fetch only the rest, right after it.
                let prefix = self.ahead[skip..].to_vec();
                let at = self.pos;
                let after = self
                    .ahead_at
                    .saturating_add(i64::try_from(self.ahead.len()).unwrap_or(0));
                let missing = u32::try_from(want - buffered).unwrap_or(MAX_IO);
                let fetch = missing.max(self.window).min(MAX_IO);
                self.window = self.window.saturating_mul(2).min(MAX_IO);
                self.drop_ahead();
                return Step::Send(
                    Request::Pread {
                        handle,
                        len: fetch,
                        offset: after,
                    },
                    Pending::Read {
                        want: len,
                        fetch,
                        at,
                        prefix,
                    },
                );
            }
        }
        let sequential = self.pos == self.last_end;
        let fetch = if sequential {
            len.max(self.window)
        } else {
            len
        };
        if sequential {
            self.window = self.window.saturating_mul(2).min(MAX_IO);
        } else {
            self.window = FIRST_WINDOW;
        }
        self.drop_ahead();
        let at = self.pos;
        let fetch = fetch.min(MAX_IO);
        Step::Send(
            Request::Pread {
                handle,
                len: fetch,
                offset: at,
            },
            Pending::Read {
                want: len,
                fetch,
                at,
                prefix: Vec::new(),
            },
        )
    }

    fn advance(&mut self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.pos = self.pos.saturating_add(n);
        self.last_end = self.pos;
    }

    fn seek(&mut self, handle: Handle, offset: i64, whence: i32) -> Step {
        let base = match whence {
            libc::SEEK_SET => Some(0),
            libc::SEEK_CUR => Some(self.pos),
            _ => None,
        };
        match base {
            Some(base) => match base.checked_add(offset) {
                Some(to) if to >= 0 => {
                    self.pos = to;
                    Step::Answer(Ok(Reply::Offset(to)))
                }
                Some(_) => Step::Answer(Err(Errno::EINVAL)),
                None => Step::Answer(Err(Errno::EOVERFLOW)),
            },
            None => {
                self.drop_ahead();
                Step::Send(
                    Request::Lseek {
                        handle,
                        offset,
                        whence,
                    },
                    Pending::Seek,
                )
            }
        }
    }

    /// Turns the server's reply into the reply the program's call expects.
    pub fn on_reply(&mut self, pending: Pending, resp: Response) -> Response {
        match (pending, resp) {
            (
                Pending::Read {
                    want,
                    fetch,
                    at,
                    prefix,
                },
                Ok(Reply::Data(fetched_data)),
            ) => {
                let fetched = fetched_data.len();
                let mut data = prefix;
                data.extend_from_slice(&fetched_data);
                let given = usize::try_from(want).unwrap_or(usize::MAX).min(data.len());
                self.ahead = data.split_off(given);
                self.ahead_at = at.saturating_add(i64::try_from(given).unwrap_or(0));
                // A short `pread` of a regular file stops at its end: a read
                // there answers 0 locally instead of asking again.
                self.at_eof = fetched < usize::try_from(fetch).unwrap_or(usize::MAX);
                self.pos = at;
                self.advance(given);
                Ok(Reply::Data(data))
            }
            (Pending::Write { at }, Ok(Reply::Count(n))) => {
                self.pos = at.saturating_add(i64::try_from(n).unwrap_or(0));
                self.last_end = self.pos;
                Ok(Reply::Count(n))
            }
            (Pending::Seek, Ok(Reply::Offset(o))) => {
                self.pos = o;
                Ok(Reply::Offset(o))
            }
            (_, other) => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Handle = Handle(9);

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

    /// Reads the whole file `chunk` bytes at a time; returns the bytes and
    /// how many requests reached the server.
    fn read_all(content: &[u8], chunk: u32) -> (Vec<u8>, usize) {
        let mut c = Cursor::new();
        let mut out = Vec::new();
        let mut trips = 0;
        loop {
            let resp = match c
                .on_request(
                    H,
                    &Request::Read {
                        handle: H,
                        len: chunk,
                    },
                )
                .unwrap()
            {
                Step::Answer(r) => r,
                Step::Send(req, pending) => {
                    trips += 1;
                    c.on_reply(pending, serve(content, &req))
                }
            };
            let Ok(Reply::Data(d)) = resp else {
                panic!("{resp:?}")
            };
            if d.is_empty() {
                return (out, trips);
            }
            assert!(d.len() <= usize::try_from(chunk).unwrap());
            let short = d.len() < usize::try_from(chunk).unwrap();
            out.extend(d);
            // Only the last read may be short (GNU tar relies on it).
            if short {
                assert_eq!(out.len(), content.len(), "short read before the end");
            }
        }
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
        let Some(Step::Send(req, pending)) = c.on_request(H, &read) else {
            panic!()
        };
        assert_eq!(
            c.on_reply(pending, serve(b"first\n", &req)),
            Ok(Reply::Data(b"first\n".to_vec()))
        );
        // `cat`'s closing read needs no round trip...
        assert_eq!(
            c.on_request(H, &read),
            Some(Step::Answer(Ok(Reply::Data(Vec::new()))))
        );
        // ...but a later one sees what was appended meanwhile.
        let Some(Step::Send(req, pending)) = c.on_request(H, &read) else {
            panic!("a second read at the end must ask the server")
        };
        assert!(matches!(req, Request::Pread { offset: 6, .. }), "{req:?}");
        assert_eq!(
            c.on_reply(pending, serve(b"first\nsecond\n", &req)),
            Ok(Reply::Data(b"second\n".to_vec()))
        );
    }

    #[test]
    fn a_random_reader_fetches_only_what_it_asks() {
        let content = file(1 << 20);
        let mut c = Cursor::new();
        for at in [500_000i64, 10, 900_000] {
            let step = c.on_request(
                H,
                &Request::Lseek {
                    handle: H,
                    offset: at,
                    whence: libc::SEEK_SET,
                },
            );
            assert_eq!(step, Some(Step::Answer(Ok(Reply::Offset(at)))));
            let Some(Step::Send(req, pending)) = c.on_request(
                H,
                &Request::Read {
                    handle: H,
                    len: 100,
                },
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
            let Ok(Reply::Data(d)) = c.on_reply(pending, serve(&content, &req)) else {
                panic!()
            };
            let start = usize::try_from(at).unwrap();
            assert_eq!(d, content[start..start + 100]);
        }
    }

    #[test]
    fn writes_go_to_the_offset_and_drop_what_was_read_ahead() {
        let mut c = Cursor::new();
        let Some(Step::Send(req, pending)) = c.on_request(H, &Request::Read { handle: H, len: 10 })
        else {
            panic!()
        };
        let _ = c.on_reply(pending, serve(&file(1000), &req));
        let w = Request::Write {
            handle: H,
            data: vec![1, 2, 3],
        };
        let Some(Step::Send(req, pending)) = c.on_request(H, &w) else {
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
            c.on_reply(pending, Ok(Reply::Count(3))),
            Ok(Reply::Count(3))
        );
        let cur = c.on_request(
            H,
            &Request::Lseek {
                handle: H,
                offset: 0,
                whence: libc::SEEK_CUR,
            },
        );
        assert_eq!(cur, Some(Step::Answer(Ok(Reply::Offset(13)))));
        // The next read must not come from the stale read-ahead.
        assert!(matches!(
            c.on_request(H, &Request::Read { handle: H, len: 5 }),
            Some(Step::Send(..))
        ));
    }

    #[test]
    fn seek_end_asks_the_server_and_negative_offsets_fail() {
        let mut c = Cursor::new();
        let end = c.on_request(
            H,
            &Request::Lseek {
                handle: H,
                offset: 0,
                whence: libc::SEEK_END,
            },
        );
        let Some(Step::Send(_, pending)) = end else {
            panic!()
        };
        assert_eq!(
            c.on_reply(pending, Ok(Reply::Offset(77))),
            Ok(Reply::Offset(77))
        );
        let back = c.on_request(
            H,
            &Request::Lseek {
                handle: H,
                offset: -100,
                whence: libc::SEEK_CUR,
            },
        );
        assert_eq!(back, Some(Step::Answer(Err(Errno::EINVAL))));
    }
}
