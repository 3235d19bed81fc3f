//! The optimization layers for remote files, as a state machine that does
//! no I/O: requests go in with the time, and it says whether to answer
//! them locally or what to send instead; replies go in and come out as the
//! replies the program's call expects. The async driver in [`crate::client`]
//! is the only thing that reads the clock or touches the network.
//!
//! Layers (each on or off through [`Layers`]):
//! - **statcache**: a directory listing brings each entry's `lstat`,
//!   symlink target and prefetched xattrs in the same reply
//!   ([`Request::GetdentsPlus`]); the next `stat`/`lstat`/`readlink`/xattr
//!   call on that entry is answered locally, once, within a TTL. Any change
//!   rscq makes to a directory drops what is cached for it.
//! - **compound**: the stat that comes with every `open` reply answers the
//!   program's first `fstat` on that file, and an `open` with `O_DIRECTORY`
//!   brings the directory's whole listing ([`Request::OpenPlus`]), so its
//!   `getdents64` calls are local (a listing opened otherwise comes with
//!   the first `getdents64`).
//! - **readahead**: rscq owns a regular file's offset, reads ahead
//!   ([`readahead`]) and writes behind ([`writebehind`]); every call that
//!   could see a file waits until its held writes are on the server. Bytes
//!   read ahead answer for at most the TTL, and any change rscq makes to a
//!   file's bytes (through any handle of it) drops what every handle of
//!   that file read ahead.
//! - **bulkread** (with readahead): a file read in sequence keeps several
//!   fetches in flight, sent behind the program's back like held writes
//!   ([`FileEngine::take_flushes`]); a read whose bytes are on the way
//!   waits for them ([`Action::Wait`]).
//! - **smallfile** (with readahead): a read-only open asks for the file's
//!   bytes too ([`Request::OpenRead`]); a regular file of at most
//!   [`SMALL_FILE_MAX`] bytes comes whole, so the program's reads to its
//!   end are answered locally.
//! - **openahead** ([`openahead`]): once the program opens entries of a
//!   listed directory in order, the next ones are opened in the background
//!   with its credentials ([`Pending::OpenAhead`]); its later opens of them
//!   take the replies ([`Action::Answer`]) or wait for those on their way.
//!
//! Send coalescing for sockets (the `nagle` layer) is [`coalesce`], and
//! their send-side backpressure [`sendwindow`] (its window measured by
//! [`adaptive_window`]), both driven by the socket pump.
//!
//! Must not read the clock, touch the network or call ptrace; everything it
//! needs comes in as arguments.

pub mod adaptive_window;
pub mod changed;
pub mod coalesce;
pub mod dirmeta;
pub mod openahead;
pub mod readahead;
mod reads;
pub mod reattach;
pub mod sendwindow;
pub mod shadow;
mod statcache;
pub mod writebehind;

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::errno::Errno;
use crate::proto::{
    Credentials, DirEntry, FileLock, Handle, Lookup, RemotePath, Reply, Request, Response, Stat,
};
use crate::syscall::layout;

pub use dirmeta::DirMeta;
pub use statcache::{EntryAnswers, Mirror, StatCache, Taken};

/// Which layers are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layers {
    pub statcache: bool,
    pub compound: bool,
    pub readahead: bool,
    pub dirmeta: bool,
    pub bulkread: bool,
    pub smallfile: bool,
    pub openahead: bool,
}

/// The largest file a smallfile open brings whole.
pub const SMALL_FILE_MAX: u32 = 64 * 1024;

/// How long a prefetched answer stays valid by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(1);

/// What the driver must do with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Answer the program now; nothing goes to the server.
    Answer(Response),
    /// Send this request; give its reply to [`FileEngine::on_reply`]
    /// together with the token.
    Send(Request, Pending),
    /// Held writes must reach the server first, or bytes fetched ahead
    /// must arrive: send the flushes ([`FileEngine::take_flushes`]), wait
    /// until the flush generation is past this one, then submit the request
    /// again.
    Wait(Request, u64),
}

/// What the engine remembers about a request in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// The reply goes to the program unchanged.
    Plain(Request),
    /// An offset-moving call under read-ahead; `changes` when it changes
    /// the file.
    Cursor {
        handle: Handle,
        pending: readahead::Pending,
        changes: bool,
    },
    /// A lookup sent as [`Request::LookupAndList`]: the listing of `dir`,
    /// asked for at the dirmeta `epoch`, is kept; the answer goes on as the
    /// reply to the lookup sent as `inner`.
    Lookup {
        inner: Box<Pending>,
        dir: RemotePath,
        epoch: u64,
    },
    /// A `stat` sent as [`Request::StatPlus`].
    Stat { path: RemotePath },
    /// A `getdents64` of `bytes` sent as [`Request::GetdentsPlus`].
    Listing { handle: Handle, bytes: u32 },
    /// A write sent behind the program's back.
    Flush(writebehind::FlushToken),
    /// A pipelined read of `handle`'s file sent behind the program's back.
    Prefetch { handle: Handle, id: u64 },
    /// An open of the program, which may start opens ahead once it is
    /// done ([`openahead`]).
    Opening {
        inner: Box<Pending>,
        path: RemotePath,
        flags: i32,
        caller: Credentials,
    },
    /// An open made ahead of the program, sent behind its back with its
    /// credentials.
    OpenAhead {
        path: RemotePath,
        caller: Credentials,
    },
    /// A server-side copy whose offsets were these handles' cursors: they
    /// move by what was copied; `touched` is the file copied to.
    Copy {
        from: Option<Handle>,
        to: Option<Handle>,
        touched: Option<RemotePath>,
    },
}

impl Pending {
    /// The `--stats` name of a request sent behind the program's back.
    pub fn background_name(&self) -> &'static str {
        match self {
            Pending::Prefetch { .. } => "read-ahead",
            Pending::OpenAhead { .. } | Pending::Plain(Request::Close { .. }) => "open-ahead",
            _ => "write-behind",
        }
    }

    /// Whose credentials a request sent behind the program's back carries
    /// (`None`: the server's session's own, for calls on handles).
    pub fn caller(&self) -> Option<&Credentials> {
        match self {
            Pending::OpenAhead { caller, .. } => Some(caller),
            _ => None,
        }
    }
}

/// The stat an open brought, for the program's `fstat` of the new fd.
#[derive(Debug, Clone, Copy)]
struct OpenedStat {
    stat: Stat,
    /// Whole small files (smallfile): the stat describes the very bytes
    /// the program's reads are answered with, so it answers every `fstat`
    /// while those bytes may (until then); else it answers once.
    while_bytes_held: Option<Instant>,
}

#[derive(Debug, Default)]
struct OpenFile {
    path: Option<RemotePath>,
    /// Entries fetched ahead of the program's `getdents64` calls.
    listing: VecDeque<DirEntry>,
    /// Whether the listing reached the directory's end.
    listing_complete: bool,
    /// Whether the first `getdents64` has been answered from a prefetch.
    listed: bool,
    /// With read-ahead: the file offset, owned by rscq.
    cursor: Option<readahead::Cursor>,
    /// With read-ahead: a regular file opened with `O_APPEND`, whose
    /// writes are held as appends.
    appends: bool,
}

/// The per-run state of the file layers.
#[derive(Debug)]
pub struct FileEngine {
    layers: Layers,
    files: HashMap<Handle, OpenFile>,
    /// The stat that came with an open, for the file's first `fstat`. Any
    /// change to any file, by path or by handle, drops them all: the file
    /// may be that one under another name (a link, another fd).
    opened_stats: HashMap<Handle, OpenedStat>,
    stats: StatCache,
    dirmeta: DirMeta,
    writes: writebehind::WriteBehind,
    /// How long fetched bytes answer reads (the stat TTL).
    ttl: Duration,
    /// Pipelined reads to send, with their tokens.
    prefetches: Vec<(Request, Pending)>,
    /// Pipelined reads and opens made ahead come back: part of the flush
    /// generation.
    prefetched: u64,
    openahead: openahead::OpenAhead,
}

impl FileEngine {
    pub fn new(layers: Layers, ttl: Duration) -> Self {
        Self {
            layers,
            files: HashMap::new(),
            opened_stats: HashMap::new(),
            stats: StatCache::new(ttl),
            dirmeta: DirMeta::new(ttl),
            writes: writebehind::WriteBehind::new(writebehind::WriteBehindConfig::default()),
            ttl,
            prefetches: Vec::new(),
            prefetched: 0,
            openahead: openahead::OpenAhead::new(ttl),
        }
    }

    /// Write-behind: held writes, and the barriers that make every other
    /// call see the file as written. `None`: carry on as without it.
    fn write_behind(&mut self, now: Instant, req: &Request) -> Option<Action> {
        let prefetched = self.prefetched;
        let wait = |w: &writebehind::WriteBehind, req: &Request| {
            Some(Action::Wait(req.clone(), w.generation() + prefetched))
        };
        let handle = handle_of_any(req);
        match *req {
            Request::Write { handle, ref data }
                if self.files.get(&handle).is_some_and(|f| f.appends) =>
            {
                match self.writes.append(handle, data) {
                    writebehind::Write::Held => {
                        self.opened_stats.clear();
                        self.invalidate(now, req);
                        let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
                        Some(Action::Answer(Ok(Reply::Count(n))))
                    }
                    writebehind::Write::Failed(e) => Some(Action::Answer(Err(e))),
                    writebehind::Write::Wait => wait(&self.writes, req),
                }
            }
            Request::Write { handle, ref data }
            | Request::Pwrite {
                handle, ref data, ..
            } if self.layers.readahead && self.files.get(&handle).is_none_or(|f| !f.appends) => {
                let file = self.files.get_mut(&handle)?;
                let cursor = file.cursor.as_mut()?;
                let (at, moves) = match *req {
                    Request::Pwrite { offset, .. } if offset < 0 => {
                        return Some(Action::Answer(Err(Errno::EINVAL)));
                    }
                    Request::Pwrite { offset, .. } => (offset, false),
                    _ => (cursor.position(), true),
                };
                match self.writes.write(handle, at, data) {
                    writebehind::Write::Held => {
                        cursor.wrote_behind(at, data.len(), moves);
                        self.bytes_changed(Some(handle));
                        self.opened_stats.clear();
                        self.invalidate(now, req);
                        let n = u64::try_from(data.len()).unwrap_or(u64::MAX);
                        Some(Action::Answer(Ok(Reply::Count(n))))
                    }
                    writebehind::Write::Failed(e) => Some(Action::Answer(Err(e))),
                    writebehind::Write::Wait => wait(&self.writes, req),
                }
            }
            Request::FlushWrites { handle } => {
                if self.writes.barrier(writebehind::Scope::Handle(handle)) {
                    return wait(&self.writes, req);
                }
                Some(Action::Answer(match self.writes.take_error(handle) {
                    Some(e) => Err(e),
                    None => Ok(Reply::Done),
                }))
            }
            Request::Close { handle } => {
                if self.writes.barrier(writebehind::Scope::Handle(handle)) {
                    return wait(&self.writes, req);
                }
                self.writes.closed(handle);
                None
            }
            Request::Fsync { handle, .. } => {
                if self.writes.barrier(writebehind::Scope::FileOf(handle)) {
                    return wait(&self.writes, req);
                }
                self.writes
                    .take_error(handle)
                    .map(|e| Action::Answer(Err(e)))
            }
            // rscq keeps the offset: asking it needs nothing from the server.
            Request::Lseek { handle, whence, .. }
                if (whence == libc::SEEK_SET || whence == libc::SEEK_CUR)
                    && self.files.get(&handle).is_some_and(|f| f.cursor.is_some()) =>
            {
                None
            }
            _ => {
                let scope = handle.map_or(writebehind::Scope::All, writebehind::Scope::FileOf);
                if self.writes.barrier(scope) {
                    return wait(&self.writes, req);
                }
                None
            }
        }
    }

    /// A lock call, once held writes are sent: another process may have
    /// written the file while it held the lock, so nothing read before
    /// (bytes read ahead, stats) answers for the file after it. A record
    /// lock counted from the file offset (`SEEK_CUR`) is counted from the
    /// offset rscq keeps, which the server's handle does not follow.
    fn coherence_point(&mut self, req: Request) -> Action {
        self.forget_cached_reads();
        let req = match req {
            Request::RecordLock {
                handle,
                owner,
                mut lock,
                set,
                wait,
            } if i32::from(lock.whence) == libc::SEEK_CUR => {
                if let Some(cursor) = self.files.get(&handle).and_then(|f| f.cursor.as_ref()) {
                    let Some(start) = cursor.position().checked_add(lock.start) else {
                        return Action::Answer(Err(Errno::EOVERFLOW));
                    };
                    lock.start = start;
                    lock.whence = FileLock::SEEK_SET;
                }
                Request::RecordLock {
                    handle,
                    owner,
                    lock,
                    set,
                    wait,
                }
            }
            other => other,
        };
        Action::Send(req.clone(), Pending::Plain(req))
    }

    /// The file (server device and inode) an open handle is of, if known.
    pub fn file_of(&self, handle: Handle) -> Option<(u32, u32, u64)> {
        self.writes.file_of(handle)
    }

    /// Forgets everything read before that may now be stale: stats (cached
    /// and those opens brought) and bytes read ahead, of every file.
    pub fn forget_cached_reads(&mut self) {
        self.openahead.drop_all();
        self.forget_cached_stats_and_bytes();
    }

    /// [`FileEngine::forget_cached_reads`] but what was opened ahead.
    fn forget_cached_stats_and_bytes(&mut self) {
        self.stats.clear();
        self.dirmeta.clear();
        self.opened_stats.clear();
        for file in self.files.values_mut() {
            if let Some(cursor) = file.cursor.as_mut() {
                cursor.drop_ahead();
            }
        }
    }

    /// A copy between two remote files, once held writes are sent: a `None`
    /// offset of a handle whose offset rscq keeps becomes that offset (the
    /// server's handle does not follow it), and it moves once the copy is
    /// done; what was read ahead or cached of any file is dropped.
    fn copy_range(
        &mut self,
        from: Handle,
        from_offset: Option<i64>,
        to: Handle,
        to_offset: Option<i64>,
        len: u64,
    ) -> Action {
        // What was opened ahead is dropped where the copy writes (as for a
        // write), not everywhere: `cp -r` copies each file this way.
        self.forget_cached_stats_and_bytes();
        let touched = self.files.get(&to).and_then(|f| f.path.clone());
        self.drop_ahead_touching(touched.as_ref());
        let kept = |handle: Handle, offset: Option<i64>| match offset {
            Some(o) => (Some(o), None),
            None => match self.files.get(&handle).and_then(|f| f.cursor.as_ref()) {
                Some(cursor) => (Some(cursor.position()), Some(handle)),
                None => (None, None),
            },
        };
        let (from_offset, moves_from) = kept(from, from_offset);
        let (to_offset, moves_to) = kept(to, to_offset);
        let req = Request::CopyRange {
            from,
            from_offset,
            to,
            to_offset,
            len,
        };
        Action::Send(
            req,
            Pending::Copy {
                from: moves_from,
                to: moves_to,
                touched,
            },
        )
    }

    /// Requests to send behind the program's back, with their tokens:
    /// held writes let go, and pipelined reads.
    pub fn take_flushes(&mut self) -> Vec<(Request, Pending)> {
        let prefetches = std::mem::take(&mut self.prefetches);
        self.writes
            .take_flushes()
            .into_iter()
            .map(|f| {
                let token = writebehind::WriteBehind::token(&f);
                (f.into_request(), Pending::Flush(token))
            })
            .chain(prefetches)
            .collect()
    }

    /// Counts finished flushes and pipelined reads; a waiter looks again
    /// when it changes.
    pub fn flush_generation(&self) -> u64 {
        self.writes.generation() + self.prefetched
    }

    /// Whether appends are held, to be sent after
    /// [`writebehind::APPEND_DELAY`] by [`FileEngine::flush_appends`].
    pub fn appends_held(&self) -> bool {
        self.writes.appends_held()
    }

    /// Sends the held appends, whose [`writebehind::APPEND_DELAY`] is up;
    /// true while some are still held.
    pub fn flush_appends(&mut self) -> bool {
        self.writes.send_appends()
    }

    /// Sends every held write; true while some are still in flight.
    pub fn flush_all(&mut self) -> bool {
        self.writes.barrier(writebehind::Scope::All)
    }

    /// Deferred write errors no call of the program could report.
    pub fn take_lost_writes(&mut self) -> Vec<writebehind::LostWrite> {
        self.writes.take_lost()
    }

    /// At the end of the run: also the errors of handles still open.
    pub fn finish_writes(&mut self) -> Vec<writebehind::LostWrite> {
        self.writes.finish()
    }

    /// Decides how to carry out `req` at time `now`, for a caller whose
    /// credentials are not known (nothing opened ahead is taken).
    pub fn on_request(&mut self, now: Instant, req: Request) -> Action {
        self.on_request_by(now, req, None)
    }

    /// Decides how to carry out `req` of `caller` at time `now`.
    pub fn on_request_by(
        &mut self,
        now: Instant,
        req: Request,
        caller: Option<&Credentials>,
    ) -> Action {
        let action = self.decide(now, req, caller);
        self.queue_open_ahead();
        action
    }

    fn decide(&mut self, now: Instant, req: Request, caller: Option<&Credentials>) -> Action {
        // Anything but reading its bytes (a mapping, which reads the file
        // again through a handle of its own) ends a small file's stat reuse.
        if let Some(handle) = req.open_file()
            && !matches!(
                req,
                Request::Fstat { .. }
                    | Request::Read { .. }
                    | Request::Pread { .. }
                    | Request::Lseek { .. }
            )
            && let Some(opened) = self.opened_stats.get_mut(&handle)
        {
            opened.while_bytes_held = None;
        }
        if !self.openahead.is_empty() {
            self.openahead.expire(now);
        }
        if let Some(action) = self.write_behind(now, &req) {
            return action;
        }
        if req.is_coherence_point() {
            return self.coherence_point(req);
        }
        if let Request::CopyRange {
            from,
            from_offset,
            to,
            to_offset,
            len,
        } = req
        {
            return self.copy_range(from, from_offset, to, to_offset, len);
        }
        if self.layers.statcache
            && let Some(resp) = self.stats.answer(now, &req)
        {
            return Action::Answer(resp);
        }
        if let Some(action) = self.take_open_ahead(now, &req, caller) {
            return action;
        }
        let mut fetch = None;
        if self.layers.dirmeta && !req.changes_files() {
            match self.dirmeta.lookup(now, &req) {
                dirmeta::Lookup::Answer(resp) => return Action::Answer(resp),
                dirmeta::Lookup::Fetch(dir) => fetch = Some(dir),
                dirmeta::Lookup::Pass => {}
            }
        }
        self.invalidate(now, &req);
        let opening = match (&req, caller) {
            (Request::Open { path, flags, .. }, Some(caller)) if self.layers.openahead => {
                Some((path.clone(), *flags, caller.clone()))
            }
            _ => None,
        };
        let action = match (fetch, self.plan(now, req)) {
            (Some(dir), Action::Send(req, pending)) => match Lookup::from_request(req) {
                Ok(lookup) => Action::Send(
                    Request::LookupAndList {
                        dir: dir.clone(),
                        lookup,
                    },
                    Pending::Lookup {
                        inner: Box::new(pending),
                        dir,
                        epoch: self.dirmeta.epoch(),
                    },
                ),
                Err(req) => Action::Send(req, pending),
            },
            (_, action) => action,
        };
        match (action, opening) {
            (Action::Send(req, inner), Some((path, flags, caller))) => Action::Send(
                req,
                Pending::Opening {
                    inner: Box::new(inner),
                    path,
                    flags,
                    caller,
                },
            ),
            (action, _) => action,
        }
    }

    /// Drops what the change `req` may make stale in the stat caches (for
    /// any other request, nothing).
    fn invalidate(&mut self, now: Instant, req: &Request) {
        if self.layers.statcache {
            self.stats
                .invalidate_for(req, |h| self.files.get(&h).and_then(|f| f.path.clone()));
        }
        if req.changes_files() {
            let path_of = |h| self.files.get(&h).and_then(|f| f.path.clone());
            match openahead::touched_paths(req, path_of) {
                Some(paths) => self.openahead.drop_touching(&paths),
                None => self.openahead.drop_all(),
            }
        }
        if self.layers.dirmeta && req.changes_files() {
            self.dirmeta.invalidate(now, req, |h| {
                self.files.get(&h).and_then(|f| f.path.clone())
            });
        }
    }

    /// The rest of [`FileEngine::on_request`], once no cache answered.
    fn plan(&mut self, now: Instant, req: Request) -> Action {
        if req.changes_files() && !self.opened_stats.is_empty() {
            self.opened_stats.clear();
        }
        if let Some(action) = self.cursor_step(now, &req) {
            return action;
        }
        match req {
            Request::Fstat { handle } if self.layers.compound => {
                if let Some(opened) = self.opened_stats.get(&handle).copied() {
                    if opened.while_bytes_held.is_none_or(|until| now > until) {
                        self.opened_stats.remove(&handle);
                    }
                    return Action::Answer(Ok(Reply::Stat(opened.stat)));
                }
                Action::Send(req.clone(), Pending::Plain(req))
            }
            Request::Getdents { handle, bytes }
                if self.layers.compound || self.layers.statcache =>
            {
                // Once listed, later calls are local, unless the prefetch
                // stopped at its size limit short of the end: then fetch on.
                if let Some(file) = self.files.get_mut(&handle)
                    && file.listed
                    && (!file.listing.is_empty() || file.listing_complete)
                {
                    return Action::Answer(take_dirents(file, bytes));
                }
                Action::Send(
                    Request::GetdentsPlus { handle },
                    Pending::Listing { handle, bytes },
                )
            }
            Request::Stat { path, follow } if self.layers.statcache => Action::Send(
                Request::StatPlus {
                    path: path.clone(),
                    follow,
                },
                Pending::Stat { path },
            ),
            Request::Open { path, flags, mode } if self.reads_whole(flags) => {
                let plain = Request::Open {
                    path: path.clone(),
                    flags,
                    mode,
                };
                Action::Send(
                    Request::OpenRead {
                        path,
                        flags,
                        mode,
                        max: SMALL_FILE_MAX,
                    },
                    Pending::Plain(plain),
                )
            }
            Request::Open { path, flags, mode }
                if self.layers.compound
                    && flags & libc::O_DIRECTORY != 0
                    && flags & libc::O_PATH == 0 =>
            {
                let plain = Request::Open {
                    path: path.clone(),
                    flags,
                    mode,
                };
                Action::Send(
                    Request::OpenPlus { path, flags, mode },
                    Pending::Plain(plain),
                )
            }
            Request::Lseek { handle, .. } => {
                // rewinddir/seekdir: the prefetched rest no longer follows.
                if let Some(f) = self.files.get_mut(&handle) {
                    f.listing.clear();
                    f.listing_complete = false;
                    f.listed = false;
                }
                Action::Send(req.clone(), Pending::Plain(req))
            }
            other => Action::Send(other.clone(), Pending::Plain(other)),
        }
    }

    /// Turns the server's reply into the reply the program's call expects.
    pub fn on_reply(&mut self, now: Instant, pending: Pending, resp: Response) -> Response {
        let resp = self.reply_step(now, pending, resp);
        self.queue_open_ahead();
        resp
    }

    fn reply_step(&mut self, now: Instant, pending: Pending, resp: Response) -> Response {
        match pending {
            Pending::Opening {
                inner,
                path,
                flags,
                caller,
            } => {
                let resp = self.reply_step(now, *inner, resp);
                self.program_opened(&path, flags, &resp, &caller);
                resp
            }
            Pending::OpenAhead { path, .. } => {
                self.prefetched += 1;
                self.openahead.on_reply(now, &path, resp.clone());
                resp
            }
            Pending::Plain(req) => self.on_plain_reply(now, req, resp),
            Pending::Copy { from, to, touched } => {
                self.dirmeta.clear();
                self.drop_ahead_touching(touched.as_ref());
                if let Ok(Reply::Count(n)) = resp {
                    for handle in [from, to].into_iter().flatten() {
                        if let Some(cursor) =
                            self.files.get_mut(&handle).and_then(|f| f.cursor.as_mut())
                        {
                            cursor.moved_by(n);
                        }
                    }
                }
                resp
            }
            Pending::Cursor {
                handle,
                pending,
                changes,
            } => self.on_cursor_reply(now, handle, pending, changes, resp),
            Pending::Prefetch { handle, id } => {
                self.on_prefetched(now, handle, id, &resp);
                resp
            }
            Pending::Flush(token) => {
                self.touched_handle(now, token.handle);
                let written = match &resp {
                    Ok(Reply::Count(n)) => Ok(*n),
                    Ok(_) => Err(Errno::EIO),
                    Err(e) => Err(*e),
                };
                self.writes.on_flushed(token, written);
                resp
            }
            Pending::Stat { path } => match resp {
                Ok(Reply::StatPlus { stat, xattrs }) => {
                    self.stats.insert_xattrs(now, &path, &stat, xattrs);
                    Ok(Reply::Stat(stat))
                }
                Ok(_) => Err(Errno::EIO),
                Err(e) => Err(e),
            },
            Pending::Lookup { inner, dir, epoch } => match resp {
                Ok(Reply::LookedUp(looked)) => {
                    let crate::proto::LookedUp { answer, listing } = *looked;
                    if self.layers.openahead
                        && let crate::proto::DirListing::Complete(entries) = &listing
                    {
                        self.openahead.listed_behind(
                            &dir.0,
                            entries.iter().filter_map(|e| {
                                let stat = e.lstat.as_ref().ok()?;
                                Some((e.name.clone(), openahead::Kind::of(stat, SMALL_FILE_MAX)?))
                            }),
                        );
                    }
                    if self.layers.dirmeta {
                        self.dirmeta.insert(now, &dir, listing, epoch);
                    }
                    self.reply_step(now, *inner, answer.map(Reply::from))
                }
                Ok(_) => {
                    self.dirmeta.fetch_failed(&dir);
                    Err(Errno::EIO)
                }
                Err(e) => {
                    self.dirmeta.fetch_failed(&dir);
                    Err(e)
                }
            },
            Pending::Listing { handle, bytes } => self.on_listing_reply(now, handle, bytes, resp),
        }
    }

    /// A plain request's reply: what it changed is dropped from the caches,
    /// and what it opened or closed is recorded.
    fn on_plain_reply(&mut self, now: Instant, req: Request, resp: Response) -> Response {
        // No listing taken while it ran may be kept.
        if req.is_coherence_point() {
            self.dirmeta.clear();
        } else {
            self.invalidate(now, &req);
        }
        // A small file's bytes came with its open (smallfile).
        let (resp, contents) = match resp {
            Ok(Reply::OpenedRead { handle, stat, data }) => {
                (Ok(Reply::Opened { handle, stat }), Some(data))
            }
            other => (other, None),
        };
        match (&req, &resp) {
            (Request::Open { path, flags, .. }, Ok(Reply::Opened { handle, stat })) => {
                self.opened_file(now, path, *flags, *handle, stat, contents);
            }
            (Request::Open { path, flags, .. }, Ok(Reply::OpenedDir(dir))) => {
                if self.layers.openahead {
                    self.openahead.listed(&path.0, listed_kinds(&dir.entries));
                }
                if self.layers.statcache {
                    self.stats.insert_listing(now, path, &dir.entries);
                    // The path's own stat, which fts-style walkers (`find`)
                    // ask again right after the open.
                    if flags & libc::O_NOFOLLOW != 0 {
                        self.stats.insert_stat(now, path, &dir.stat);
                    }
                }
                self.opened_stats.insert(
                    dir.handle,
                    OpenedStat {
                        stat: dir.stat,
                        while_bytes_held: None,
                    },
                );
                self.files.insert(
                    dir.handle,
                    OpenFile {
                        path: Some(path.clone()),
                        listing: dir.entries.iter().map(|(e, _)| e.clone()).collect(),
                        listing_complete: dir.complete,
                        listed: true,
                        ..OpenFile::default()
                    },
                );
                return Ok(Reply::Opened {
                    handle: dir.handle,
                    stat: dir.stat,
                });
            }
            // A shadow's own handle, or the program's open of
            // `/proc/self/fd/N`: its file, for the barriers that make its
            // reads see every held write.
            (Request::Reopen { handle: of, flags }, Ok(Reply::Opened { handle, stat })) => {
                let path = self.files.get(of).and_then(|f| f.path.clone());
                self.writes.opened(
                    *handle,
                    (stat.dev_major, stat.dev_minor, stat.ino),
                    path.unwrap_or_else(|| RemotePath(Vec::new())),
                );
                if flags & libc::O_TRUNC != 0 {
                    self.bytes_changed(Some(*handle));
                }
            }
            (Request::Close { handle }, _) => {
                self.files.remove(handle);
                self.opened_stats.remove(handle);
            }
            _ => {}
        }
        resp
    }

    /// A further `getdents` batch of directory `handle`: its entries join the
    /// listing (and the statcache), and the program gets `bytes` of them.
    fn on_listing_reply(
        &mut self,
        now: Instant,
        handle: Handle,
        bytes: u32,
        resp: Response,
    ) -> Response {
        let (entries, complete) = match resp {
            Ok(Reply::DirentsPlus { entries, complete }) => (entries, complete),
            Ok(_) => return Err(Errno::EIO),
            Err(e) => return Err(e),
        };
        let file = self.files.entry(handle).or_default();
        if self.layers.statcache
            && let Some(dir) = &file.path
        {
            self.stats.insert_listing(now, dir, &entries);
        }
        // A listing read in batches is predicted from only when whole.
        if self.layers.openahead
            && complete
            && file.listing.is_empty()
            && !file.listed
            && let Some(dir) = &file.path
        {
            self.openahead.listed(&dir.0, listed_kinds(&entries));
        }
        file.listing.extend(entries.into_iter().map(|(e, _)| e));
        file.listing_complete = complete;
        file.listed = true;
        take_dirents(file, bytes)
    }

    /// The program's open of `path` with `flags`, answered from an open
    /// made ahead if one is there (or on its way: wait for it).
    fn take_open_ahead(
        &mut self,
        now: Instant,
        req: &Request,
        caller: Option<&Credentials>,
    ) -> Option<Action> {
        let (Request::Open { path, flags, .. }, Some(caller)) = (req, caller) else {
            return None;
        };
        if !self.layers.openahead {
            return None;
        }
        match self.openahead.claim(now, path, *flags, caller) {
            openahead::Claim::Ready { fetched, reply } => {
                // As if the reply came when it was fetched: the TTLs of
                // what it brought run from then.
                let resp = self.on_plain_reply(fetched, req.clone(), Ok(*reply));
                self.program_opened(path, *flags, &resp, caller);
                Some(Action::Answer(resp))
            }
            openahead::Claim::OnTheWay => Some(Action::Wait(req.clone(), self.flush_generation())),
            openahead::Claim::Nothing => None,
        }
    }

    /// The program opened `path` with `flags`: entries of its directory
    /// may be opened ahead.
    fn program_opened(
        &mut self,
        path: &RemotePath,
        flags: i32,
        resp: &Response,
        caller: &Credentials,
    ) {
        let Ok(Reply::Opened { stat, .. }) = resp else {
            return;
        };
        let Some(kind) = openahead::Kind::of(stat, SMALL_FILE_MAX) else {
            return;
        };
        let usable = match kind {
            openahead::Kind::Dir => self.layers.compound,
            openahead::Kind::SmallFile => self.reads_whole(flags),
        };
        if usable && openahead::takes(flags, kind) {
            self.openahead.opened(path, kind, caller);
        }
    }

    /// Moves the opens to make ahead, and the closes of what nothing took,
    /// to the requests sent behind the program's back.
    fn queue_open_ahead(&mut self) {
        for handle in self.openahead.take_closes() {
            let close = Request::Close { handle };
            self.prefetches.push((close.clone(), Pending::Plain(close)));
        }
        for ahead in self.openahead.take_sends() {
            let flags = openahead::flags_of(ahead.kind);
            let path = ahead.path;
            let request = match ahead.kind {
                openahead::Kind::Dir => Request::OpenPlus {
                    path: path.clone(),
                    flags,
                    mode: 0,
                },
                openahead::Kind::SmallFile => Request::OpenRead {
                    path: path.clone(),
                    flags,
                    mode: 0,
                    max: SMALL_FILE_MAX,
                },
            };
            self.prefetches.push((
                request,
                Pending::OpenAhead {
                    path,
                    caller: ahead.caller,
                },
            ));
        }
    }

    /// Drops what was opened ahead of `path` or of what its change makes
    /// stale (of everything when the path is not known).
    fn drop_ahead_touching(&mut self, path: Option<&RemotePath>) {
        match path {
            Some(p) => self.openahead.drop_touching(std::slice::from_ref(&p.0)),
            None => self.openahead.drop_all(),
        }
    }

    /// Drops everything opened ahead (the connection was lost): held
    /// replies are closed, those on their way are not taken.
    pub fn drop_opened_ahead(&mut self) {
        self.openahead.drop_all();
        self.queue_open_ahead();
    }

    /// How many opens of the program an open made ahead answered.
    pub fn opens_taken_from_ahead(&self) -> u64 {
        self.openahead.taken()
    }

    pub fn stat_cache(&self) -> &StatCache {
        &self.stats
    }

    /// Offers the statcache's entries to the program as well
    /// ([`StatCache::set_mirror`]).
    pub fn set_answers_mirror(&mut self, mirror: Box<dyn Mirror>) {
        self.stats.set_mirror(mirror);
    }

    pub fn dir_meta(&self) -> &DirMeta {
        &self.dirmeta
    }

    /// The file behind `handle` changed on the server (a write sent
    /// behind, or one under read-ahead).
    fn touched_handle(&mut self, now: Instant, handle: Handle) {
        // An open made ahead while these bytes were held or on their way
        // may have read the file without them, whenever its reply came.
        if !self.openahead.is_empty() {
            let path = self.files.get(&handle).and_then(|f| f.path.clone());
            self.drop_ahead_touching(path.as_ref());
        }
        if self.layers.dirmeta {
            let req = Request::Fchmod { handle, mode: 0 };
            self.dirmeta.invalidate(now, &req, |h| {
                self.files.get(&h).and_then(|f| f.path.clone())
            });
        }
    }
}

/// The entries of a listing that may be opened ahead, with their kinds.
fn listed_kinds(
    entries: &[(DirEntry, crate::proto::EntryMeta)],
) -> impl Iterator<Item = (Vec<u8>, openahead::Kind)> + '_ {
    entries.iter().filter_map(|(e, meta)| {
        let stat = meta.lstat.as_ref().ok()?;
        Some((e.name.clone(), openahead::Kind::of(stat, SMALL_FILE_MAX)?))
    })
}

/// As many prefetched entries as fit the program's buffer, like one
/// `getdents64` call; 0 bytes at the end of a complete listing.
fn take_dirents(file: &mut OpenFile, bytes: u32) -> Response {
    let cap = usize::try_from(bytes).unwrap_or(usize::MAX);
    let mut fitted = Vec::new();
    let mut used = 0;
    while let Some(e) = file.listing.front() {
        let len = layout::dirent_reclen(&e.name);
        if used + len > cap {
            break;
        }
        used += len;
        fitted.extend(file.listing.pop_front());
    }
    if fitted.is_empty() && !file.listing.is_empty() {
        return Err(Errno::EINVAL);
    }
    Ok(Reply::Dirents(fitted))
}

/// The open file whose held writes a call must wait for, or `None` for a
/// barrier on every file. Lock calls are coherence points, and a `Reopen`
/// (or a `Reattach` after a restart) opens a new description of the file:
/// they wait for every held write,
/// as before; the rest is [`Request::open_file`].
fn handle_of_any(req: &Request) -> Option<Handle> {
    match req {
        Request::Flock { .. }
        | Request::RecordLock { .. }
        | Request::Reopen { .. }
        | Request::Reattach { .. } => None,
        other => other.open_file(),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod append_tests;

#[cfg(test)]
mod dirmeta_tests;

#[cfg(test)]
mod mirror_tests;

#[cfg(test)]
mod openahead_tests;
