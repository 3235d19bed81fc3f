//! The read path of [`FileEngine`]: the cursors of files whose offset rscq
//! owns (readahead, bulkread), the opens that bring a small file's bytes
//! (smallfile), and what drops bytes read ahead when a file changes.
//!
//! Pure, as the rest of the engine: it says what to send and takes the
//! time as an argument; must not fetch anything itself.

use std::time::Instant;

use super::{Action, FileEngine, OpenFile, Pending, SMALL_FILE_MAX, readahead};
use crate::proto::{Handle, RemotePath, Request, Response, Stat};

impl FileEngine {
    /// How a new cursor behaves.
    pub(super) fn cursor_settings(&self) -> readahead::Settings {
        readahead::Settings {
            bulk: self.layers.bulkread,
            ttl: self.ttl,
        }
    }

    /// The bytes of `handle`'s file changed (or may have): what any handle
    /// of the same file read ahead is dropped; of every file when the
    /// file is not known.
    pub(super) fn bytes_changed(&mut self, handle: Option<Handle>) {
        let file = handle.and_then(|h| self.writes.file_of(h));
        for (h, open) in &mut self.files {
            if let Some(cursor) = open.cursor.as_mut()
                && (file.is_none() || self.writes.file_of(*h) == file)
            {
                cursor.drop_ahead();
            }
        }
    }

    /// Whether an open with `flags` asks for the file's bytes too
    /// (smallfile): a read-only open that creates and truncates nothing, of
    /// a file whose offset rscq would own.
    pub(super) fn reads_whole(&self, flags: i32) -> bool {
        let excluded = libc::O_CREAT
            | libc::O_TRUNC
            | libc::O_PATH
            | libc::O_DIRECTORY
            | libc::O_APPEND
            | libc::O_DIRECT;
        self.layers.smallfile
            && self.layers.readahead
            && flags & libc::O_ACCMODE == libc::O_RDONLY
            && flags & excluded == 0
    }

    /// What the cursors other than `handle`'s leave of
    /// [`readahead::BULK_MAX_TOTAL`].
    fn bulk_room(&self, handle: Option<Handle>) -> u64 {
        if !self.layers.bulkread {
            return 0;
        }
        let others: u64 = self
            .files
            .iter()
            .filter(|(h, _)| Some(**h) != handle)
            .filter_map(|(_, f)| f.cursor.as_ref())
            .map(readahead::Cursor::held)
            .sum();
        readahead::BULK_MAX_TOTAL.saturating_sub(others)
    }

    /// A call that reads, writes or moves the offset of a file whose
    /// offset rscq owns, carried out by its cursor; `None`: not one.
    pub(super) fn cursor_step(&mut self, now: Instant, req: &Request) -> Option<Action> {
        match *req {
            Request::Write { handle, .. }
            | Request::Pwrite { handle, .. }
            | Request::Ftruncate { handle, .. }
            | Request::Fallocate { handle, .. } => self.bytes_changed(Some(handle)),
            Request::Truncate { .. } => self.bytes_changed(None),
            _ => {}
        }
        let handle = cursor_handle(req)?;
        let room = self.bulk_room(Some(handle));
        let cursor = self.files.get_mut(&handle)?.cursor.as_mut()?;
        let step = cursor.on_request(now, handle, req, room)?;
        let sent = cursor.take_prefetches();
        self.prefetches.extend(
            sent.into_iter()
                .map(|p| (p.request, Pending::Prefetch { handle, id: p.id })),
        );
        Some(match step {
            readahead::Step::Answer(resp) => Action::Answer(resp),
            readahead::Step::Wait => Action::Wait(req.clone(), self.flush_generation()),
            readahead::Step::Send(req, pending) => {
                let changes = req.changes_files();
                Action::Send(
                    req,
                    Pending::Cursor {
                        handle,
                        pending,
                        changes,
                    },
                )
            }
        })
    }

    /// The reply to a call a cursor carried out.
    pub(super) fn on_cursor_reply(
        &mut self,
        now: Instant,
        handle: Handle,
        pending: readahead::Pending,
        changes: bool,
        resp: Response,
    ) -> Response {
        if changes {
            self.touched_handle(now, handle);
        }
        match self.files.get_mut(&handle).and_then(|f| f.cursor.as_mut()) {
            Some(cursor) => cursor.on_reply(now, pending, resp),
            None => resp,
        }
    }

    /// A pipelined read came back: whoever waits looks again (the flush
    /// generation moves), even when its cursor is gone.
    pub(super) fn on_prefetched(&mut self, now: Instant, handle: Handle, id: u64, resp: &Response) {
        self.prefetched += 1;
        if let Some(cursor) = self.files.get_mut(&handle).and_then(|f| f.cursor.as_mut()) {
            cursor.on_prefetched(now, id, resp.clone());
        }
    }

    /// A file (not a directory listing) was opened as `handle`; `contents`
    /// are the bytes a smallfile open brought.
    pub(super) fn opened_file(
        &mut self,
        now: Instant,
        path: &RemotePath,
        flags: i32,
        handle: Handle,
        stat: &Stat,
        contents: Option<Vec<u8>>,
    ) {
        let regular = stat.mode & libc::S_IFMT == libc::S_IFREG;
        let offset_free = flags & (libc::O_APPEND | libc::O_PATH) == 0;
        let appends = flags & (libc::O_APPEND | libc::O_PATH) == libc::O_APPEND;
        self.writes.opened(
            handle,
            (stat.dev_major, stat.dev_minor, stat.ino),
            path.clone(),
        );
        if self.layers.compound {
            let whole = contents
                .as_ref()
                .is_some_and(|data| u64::try_from(data.len()).is_ok_and(|n| n == stat.size));
            let while_bytes_held = (whole && regular && offset_free).then(|| now + self.ttl);
            self.opened_stats.insert(
                handle,
                super::OpenedStat {
                    stat: *stat,
                    while_bytes_held,
                },
            );
        }
        let settings = self.cursor_settings();
        let cursor = (self.layers.readahead && regular && offset_free).then(|| match contents {
            Some(data) => readahead::Cursor::with_contents(settings, now, data, SMALL_FILE_MAX),
            None => readahead::Cursor::with_settings(settings),
        });
        self.files.insert(
            handle,
            OpenFile {
                path: Some(path.clone()),
                cursor,
                appends: self.layers.readahead && regular && appends,
                ..OpenFile::default()
            },
        );
        if flags & libc::O_TRUNC != 0 {
            self.bytes_changed(Some(handle));
        }
    }
}

/// The handle of a call that reads or moves the file offset.
fn cursor_handle(req: &Request) -> Option<Handle> {
    match req {
        Request::Read { handle, .. }
        | Request::Write { handle, .. }
        | Request::Lseek { handle, .. }
        | Request::Pwrite { handle, .. }
        | Request::Ftruncate { handle, .. }
        | Request::Fallocate { handle, .. } => Some(*handle),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
