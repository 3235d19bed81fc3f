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
//! With **bulkread** ([`Settings::bulk`]), once [`BULK_AFTER`] bytes were
//! read in sequence, fetches are pipelined: the cursor keeps several
//! `pread`s in flight ([`Cursor::take_prefetches`]) so that the bytes
//! fetched or asked for past the offset reach a window that grows with the
//! bytes read in sequence, from [`BULK_FIRST_WINDOW`] to
//! [`BULK_MAX_WINDOW`] per open file (and within the room the caller gives,
//! [`BULK_MAX_TOTAL`] over all files in [`super::FileEngine`]). A read whose
//! bytes are still on the way waits for them ([`Step::Wait`]).
//!
//! Fetched bytes answer reads for at most the TTL the cursor was made with
//! (the stat TTL); a cursor can also start with the bytes a small-file open
//! brought ([`Cursor::with_contents`]).
//!
//! Pure: must not fetch anything itself or read the clock; it says what to
//! fetch and takes the time as an argument.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::errno::Errno;
use crate::proto::{Handle, MAX_IO, Reply, Request, Response};

/// How much the first read of a sequence fetches.
pub const FIRST_WINDOW: u32 = 64 * 1024;

/// Bytes read in sequence before bulkread pipelines: `head`, `file` and
/// other readers of a file's start never fetch ahead of the first window.
pub const BULK_AFTER: u64 = FIRST_WINDOW as u64;

/// The bytes a pipelined reader first keeps ahead of its offset.
pub const BULK_FIRST_WINDOW: u64 = 256 * 1024;

/// The most one open file keeps fetched or in flight ahead of its offset:
/// above the bandwidth-delay product of a 1 Gbit/s link at 100 ms.
pub const BULK_MAX_WINDOW: u64 = 16 << 20;

/// The most all open files together keep ahead under bulkread.
pub const BULK_MAX_TOTAL: u64 = 64 << 20;

/// The smallest pipelined fetch.
const BULK_MIN_CHUNK: u64 = 64 * 1024;

/// How a cursor behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// Pipelined fetches (the bulkread layer).
    pub bulk: bool,
    /// How long fetched bytes may answer a read.
    pub ttl: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            bulk: false,
            ttl: super::DEFAULT_TTL,
        }
    }
}

/// Bytes of the file at `at`: fetched, or asked for and on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    at: i64,
    kind: PieceKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum PieceKind {
    Ready { data: Vec<u8>, fetched: Instant },
    InFlight { id: u64, len: u32 },
}

impl Piece {
    fn len(&self) -> u64 {
        match &self.kind {
            PieceKind::Ready { data, .. } => u64::try_from(data.len()).unwrap_or(u64::MAX),
            PieceKind::InFlight { len, .. } => u64::from(*len),
        }
    }

    fn end(&self) -> i64 {
        self.at
            .saturating_add(i64::try_from(self.len()).unwrap_or(i64::MAX))
    }
}

/// A fetch the cursor wants sent behind the program's back; its reply goes
/// to [`Cursor::on_prefetched`] with `id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prefetch {
    pub request: Request,
    pub id: u64,
}

/// One handle's offset and the bytes fetched past it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    pos: i64,
    /// Contiguous pieces of the file in offset order, fetched or in flight,
    /// none wholly before `pos`.
    ahead: VecDeque<Piece>,
    /// The next foreground fetch size; grows while reads stay sequential.
    window: u32,
    /// Where the last read ended, to tell sequential reads from random ones.
    last_end: i64,
    /// Where a fetch found the end of the file, and when.
    eof_at: Option<(i64, Instant)>,
    /// Bytes read in sequence since the last read elsewhere.
    streak: u64,
    next_id: u64,
    /// Pipelined fetches not yet taken by the driver.
    sends: Vec<Prefetch>,
    settings: Settings,
}

/// What a request becomes under read-ahead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Answer(Response),
    /// Send this; the reply goes to [`Cursor::on_reply`] with `pending`.
    Send(Request, Pending),
    /// The bytes are on the way: ask again once a prefetch has come back.
    Wait,
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
    /// A cursor at offset 0 of a freshly opened file, without bulkread.
    pub fn new() -> Self {
        Self::with_settings(Settings::default())
    }

    pub fn with_settings(settings: Settings) -> Self {
        Self {
            pos: 0,
            ahead: VecDeque::new(),
            window: FIRST_WINDOW,
            last_end: 0,
            eof_at: None,
            streak: 0,
            next_id: 0,
            sends: Vec::new(),
            settings,
        }
    }

    /// A cursor whose file's first bytes came with its open at `now`: one
    /// `pread` of `asked` bytes at offset 0 gave `data` (fewer: the file
    /// ends there).
    pub fn with_contents(settings: Settings, now: Instant, data: Vec<u8>, asked: u32) -> Self {
        let mut cursor = Self::with_settings(settings);
        let len = i64::try_from(data.len()).unwrap_or(i64::MAX);
        if data.len() < usize::try_from(asked).unwrap_or(usize::MAX) {
            cursor.eof_at = Some((len, now));
        }
        if !data.is_empty() {
            cursor.ahead.push_back(Piece {
                at: 0,
                kind: PieceKind::Ready { data, fetched: now },
            });
        }
        cursor
    }

    /// The file offset rscq keeps for the program.
    pub fn position(&self) -> i64 {
        self.pos
    }

    /// Bytes asked for and not yet come.
    #[cfg(test)]
    fn in_flight(&self) -> u64 {
        self.ahead
            .iter()
            .filter(|p| matches!(p.kind, PieceKind::InFlight { .. }))
            .map(Piece::len)
            .sum()
    }

    /// Bytes this cursor holds or has asked for ahead: what counts against
    /// [`BULK_MAX_TOTAL`].
    pub fn held(&self) -> u64 {
        self.ahead.iter().map(Piece::len).sum()
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

    /// Forgets the bytes fetched ahead (the file may have changed); replies
    /// to fetches in flight are ignored when they come.
    pub fn drop_ahead(&mut self) {
        self.ahead.clear();
        self.eof_at = None;
    }

    /// The pipelined fetches to send, each to [`Cursor::on_prefetched`].
    pub fn take_prefetches(&mut self) -> Vec<Prefetch> {
        std::mem::take(&mut self.sends)
    }

    /// Decides `req` at `now`; `None` when it does not touch the offset.
    /// `room` is how many bytes this cursor may hold ahead under bulkread
    /// (what the other open files leave of [`BULK_MAX_TOTAL`]); a read
    /// still gets the bytes it asks for beyond it.
    pub fn on_request(
        &mut self,
        now: Instant,
        handle: Handle,
        req: &Request,
        room: u64,
    ) -> Option<Step> {
        match *req {
            Request::Read { len, .. } => Some(self.read(now, handle, len, room)),
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

    /// Where the pieces end (the offset when there are none).
    fn end(&self) -> i64 {
        self.ahead.back().map_or(self.pos, Piece::end)
    }

    /// Bytes fetched from `pos` on, contiguous, and whether a fetch in
    /// flight follows them; `None` when no piece starts at or before `pos`.
    fn coverage(&self) -> Option<(usize, bool)> {
        match self.ahead.front() {
            // All was read: only the end of the file may be known here.
            None => {
                return self
                    .eof_at
                    .filter(|&(at, _)| at == self.pos)
                    .map(|_| (0, false));
            }
            Some(first) if first.at > self.pos || self.end() < self.pos => return None,
            Some(_) => {}
        }
        let mut ready = 0usize;
        for piece in self.ahead.iter().filter(|p| p.end() > self.pos) {
            match &piece.kind {
                PieceKind::Ready { data, .. } => {
                    let skip = usize::try_from(self.pos.saturating_sub(piece.at)).unwrap_or(0);
                    ready = ready.saturating_add(data.len().saturating_sub(skip));
                }
                PieceKind::InFlight { .. } => return Some((ready, true)),
            }
        }
        Some((ready, false))
    }

    /// Drops fetched bytes older than the TTL at the offset, and a stale
    /// end of file.
    fn expire(&mut self, now: Instant) {
        let stale = |fetched: Instant| {
            fetched
                .checked_add(self.settings.ttl)
                .is_some_and(|until| until < now)
        };
        let old_piece =
            self.ahead.iter().find(|p| p.end() > self.pos).is_some_and(
                |p| matches!(p.kind, PieceKind::Ready { fetched, .. } if stale(fetched)),
            );
        let old_eof = self.eof_at.is_some_and(|(_, when)| stale(when));
        if old_piece || old_eof {
            self.drop_ahead();
        }
    }

    /// Takes `n` fetched bytes at the offset, which moves past them.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n);
        for piece in self.ahead.iter().filter(|p| p.end() > self.pos) {
            if out.len() >= n {
                break;
            }
            let PieceKind::Ready { data, .. } = &piece.kind else {
                break;
            };
            let at = self
                .pos
                .saturating_add(i64::try_from(out.len()).unwrap_or(i64::MAX));
            let from = usize::try_from(at.saturating_sub(piece.at))
                .unwrap_or(0)
                .min(data.len());
            let to = from.saturating_add(n - out.len()).min(data.len());
            out.extend_from_slice(&data[from..to]);
        }
        self.advance(out.len());
        while self.ahead.front().is_some_and(|p| p.end() <= self.pos) {
            self.ahead.pop_front();
        }
        out
    }

    fn read(&mut self, now: Instant, handle: Handle, len: u32, room: u64) -> Step {
        self.expire(now);
        let want = usize::try_from(len).unwrap_or(usize::MAX);
        let sequential = self.pos == self.last_end;
        if !sequential {
            self.streak = 0;
        }
        let coverage = self.coverage();
        if let Some((ready, pending)) = coverage {
            // A read the fetched bytes cover, or one that ends the file the
            // fetch found the end of, is answered locally. Never a short
            // read otherwise: GNU tar takes one as a shrunk file.
            let reaches_eof = !pending
                && self.eof_at.is_some_and(|(at, _)| {
                    at == self
                        .pos
                        .saturating_add(i64::try_from(ready).unwrap_or(i64::MAX))
                });
            if ready >= want || reaches_eof {
                let n = want.min(ready);
                if n == 0 {
                    // The end of the file is told once: the file may grow
                    // (another process appends, `tail -f` polls), so the
                    // next read at the end asks the server again, in the
                    // foreground (no window of fetches past the end).
                    self.eof_at = None;
                    self.streak = 0;
                }
                let data = self.take(n);
                self.streak = self.streak.saturating_add(u64::try_from(n).unwrap_or(0));
                self.top_up(handle, 0, room);
                return Step::Answer(Ok(Reply::Data(data)));
            }
            if pending {
                self.top_up(handle, want, room);
                return Step::Wait;
            }
        }
        if self.settings.bulk && sequential && self.streak >= BULK_AFTER {
            if coverage.is_none() {
                self.drop_ahead();
            }
            self.top_up(handle, want, room);
            if self.coverage().is_some_and(|(_, pending)| pending) {
                return Step::Wait;
            }
        }
        if let Some((ready, _)) = coverage.filter(|&(ready, _)| ready > 0) {
            // Part is here: fetch only the rest, right after it.
            let prefix = self.take_prefix(ready);
            let at = self.pos;
            let after = at.saturating_add(i64::try_from(ready).unwrap_or(0));
            let missing = u32::try_from(want - ready).unwrap_or(MAX_IO);
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

    /// A copy of the `n` fetched bytes at the offset, which stays.
    fn take_prefix(&mut self, n: usize) -> Vec<u8> {
        let (pos, last_end) = (self.pos, self.last_end);
        let prefix = self.take(n);
        self.pos = pos;
        self.last_end = last_end;
        prefix
    }

    /// Under bulkread, asks for more so that what is fetched or in flight
    /// past the offset reaches the window (within `room`), and at least
    /// `need` bytes past the offset are covered.
    fn top_up(&mut self, handle: Handle, need: usize, room: u64) {
        if !self.settings.bulk || self.eof_at.is_some() || self.streak < BULK_AFTER {
            return;
        }
        if self.end() < self.pos {
            self.drop_ahead();
        }
        let window = self
            .streak
            .clamp(BULK_FIRST_WINDOW, BULK_MAX_WINDOW)
            .min(room);
        let chunk = (window / 2).clamp(BULK_MIN_CHUNK, u64::from(MAX_IO));
        let need_to = self
            .pos
            .saturating_add(i64::try_from(need).unwrap_or(i64::MAX));
        loop {
            let end = self.end();
            let ahead = u64::try_from(end.saturating_sub(self.pos)).unwrap_or(0);
            let len = if end < need_to {
                u64::try_from(need_to - end).unwrap_or(0).max(chunk)
            } else if ahead.saturating_add(chunk) <= window {
                chunk
            } else {
                break;
            };
            let len = u32::try_from(len.min(u64::from(MAX_IO))).unwrap_or(MAX_IO);
            let id = self.next_id;
            self.next_id += 1;
            self.ahead.push_back(Piece {
                at: end,
                kind: PieceKind::InFlight { id, len },
            });
            self.sends.push(Prefetch {
                request: Request::Pread {
                    handle,
                    len,
                    offset: end,
                },
                id,
            });
        }
    }

    /// The reply to the pipelined fetch `id`, at `now`. A short one is the
    /// end of the file: what was asked past it is forgotten. A failed one
    /// is forgotten with everything after it, and the next read asks in the
    /// foreground, where the program sees the error.
    pub fn on_prefetched(&mut self, now: Instant, id: u64, resp: Response) {
        let Some(i) = self
            .ahead
            .iter()
            .position(|p| matches!(p.kind, PieceKind::InFlight { id: x, .. } if x == id))
        else {
            return;
        };
        let (at, asked) = match self.ahead[i].kind {
            PieceKind::InFlight { len, .. } => (self.ahead[i].at, len),
            PieceKind::Ready { .. } => return,
        };
        match resp {
            Ok(Reply::Data(data)) if data.len() <= usize::try_from(asked).unwrap_or(0) => {
                let short = data.len() < usize::try_from(asked).unwrap_or(0);
                let end = at.saturating_add(i64::try_from(data.len()).unwrap_or(0));
                self.ahead[i].kind = PieceKind::Ready { data, fetched: now };
                if short {
                    self.ahead.truncate(i + 1);
                    self.eof_at = Some((end, now));
                }
            }
            _ => {
                self.ahead.truncate(i);
                self.streak = 0;
            }
        }
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

    /// Turns the server's reply, come at `now`, into the reply the
    /// program's call expects.
    pub fn on_reply(&mut self, now: Instant, pending: Pending, resp: Response) -> Response {
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
                let rest = data.split_off(given);
                let rest_at = at.saturating_add(i64::try_from(given).unwrap_or(0));
                let end = rest_at.saturating_add(i64::try_from(rest.len()).unwrap_or(0));
                self.ahead.clear();
                if !rest.is_empty() {
                    self.ahead.push_back(Piece {
                        at: rest_at,
                        kind: PieceKind::Ready {
                            data: rest,
                            fetched: now,
                        },
                    });
                }
                // A short `pread` of a regular file stops at its end: a read
                // there answers 0 locally instead of asking again.
                self.eof_at =
                    (fetched < usize::try_from(fetch).unwrap_or(usize::MAX)).then_some((end, now));
                self.pos = at;
                self.advance(given);
                self.streak = self
                    .streak
                    .saturating_add(u64::try_from(given).unwrap_or(0));
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
mod tests;
