//! Write-behind for remote files (part of the `readahead` layer).
//!
//! A `write` to a remote file whose offset rscq owns is answered at once
//! and its bytes held; consecutive writes gather into one run per handle,
//! sent as one `pwrite` when it reaches [`WriteBehindConfig::flush_bytes`]
//! or when something must see the file as written (a barrier). Every
//! `pwrite` sent ahead is a *flush* in flight until the server answers it.
//!
//! Barriers, so that nothing can observe the file before its writes:
//! - a call on a handle (read, fstat, lseek, fsync, ftruncate, futimens,
//!   close, …) waits for every run of the same file (same device and inode,
//!   through any handle);
//! - any other call (paths: open, stat, rename, …) waits for every run;
//! - a write that does not continue its run waits for the flushes of that
//!   file already in flight (the server runs calls concurrently, so
//!   overlapping writes could land in the wrong order);
//! - more than [`WriteBehindConfig::max_behind`] bytes behind makes the
//!   writer wait for a flush to finish.
//!
//! A file opened with `O_APPEND` has no offset rscq could own: its writes
//! ([`WriteBehind::append`]) are held the same way and sent as the
//! server's own `write`, which puts them at the end of the file as it is
//! then. Where they land depends on every other write of the file, so an
//! append run is started only when nothing of the file is in flight, at
//! most one append flush of a handle is in flight at a time, and a write
//! through another handle of the file waits for it.
//!
//! Appends also go after [`APPEND_DELAY`] without any call that needs
//! them ([`WriteBehind::send_appends`], which the driver runs on a timer):
//! a file appended to is usually a log someone follows.
//!
//! A flush the server fails (or writes short and then fails) records the
//! errno on its handle; the next write, `fsync` or `close` on that handle
//! returns it, as the kernel reports a writeback error. An error no call
//! could report any more (the handle was closed implicitly, or the program
//! exited) is kept in [`WriteBehind::take_lost`] for rscq to report.
//!
//! Pure: no clock, no I/O; flushes are values the driver sends.
//!
//! Pure: must not send anything itself; it says which flushes to send and
//! which replies may go.

use std::collections::HashMap;
use std::time::Duration;

use crate::errno::Errno;
use crate::proto::{Handle, MAX_IO, RemotePath, Request};

/// How much may be held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriteBehindConfig {
    /// A run this long is sent at once.
    pub flush_bytes: usize,
    /// Held plus in-flight bytes beyond which writers wait.
    pub max_behind: usize,
}

impl Default for WriteBehindConfig {
    fn default() -> Self {
        let io = usize::try_from(MAX_IO).unwrap_or(1 << 20);
        Self {
            flush_bytes: io,
            max_behind: 8 * io,
        }
    }
}

/// The longest held appends wait for a call that sends them: then they
/// go anyway, so that a log written through rscq can be followed from
/// elsewhere (`tail -f` in another run, or on the server).
pub const APPEND_DELAY: Duration = Duration::from_millis(50);

/// A `pwrite` (or, for `append`, a `write`) to send ahead of the program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flush {
    pub handle: Handle,
    /// Where the bytes go; not looked at for an `append`.
    pub offset: i64,
    pub data: Vec<u8>,
    /// At the end of the file, by the server's `O_APPEND` handle.
    pub append: bool,
}

impl Flush {
    /// The request that carries it: a `pwrite` at its offset, or the
    /// server's `write` of an `O_APPEND` fd.
    pub fn into_request(self) -> Request {
        if self.append {
            Request::Write {
                handle: self.handle,
                data: self.data,
            }
        } else {
            Request::Pwrite {
                handle: self.handle,
                data: self.data,
                offset: self.offset,
            }
        }
    }
}

/// What the driver remembers of a flush in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlushToken {
    pub handle: Handle,
    pub offset: i64,
    /// The bytes, kept to send the rest after a short write.
    pub data: Vec<u8>,
    pub append: bool,
}

/// Which held writes a call must wait for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Only this handle's.
    Handle(Handle),
    /// Those of the file behind this handle, through any handle.
    FileOf(Handle),
    /// All.
    All,
}

/// The outcome of [`WriteBehind::write`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// Held (and maybe sent ahead): the program's call succeeded.
    Held,
    /// A deferred error for the program's call.
    Failed(Errno),
    /// Wait for a flush to finish, then try again.
    Wait,
}

#[derive(Debug, Default)]
struct FileWrites {
    /// The file's identity on the server: (device, inode).
    file: Option<(u32, u32, u64)>,
    path: Option<RemotePath>,
    /// Bytes not yet sent: a run starting at `.0`.
    run: Option<(i64, Vec<u8>)>,
    /// Where the last held write ended (its run may be in flight already).
    next: Option<i64>,
    in_flight: usize,
    error: Option<Errno>,
    /// Opened with `O_APPEND`: its runs go to the end of the file.
    appends: bool,
}

/// A deferred error no call of the program can report any more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostWrite {
    pub path: Option<RemotePath>,
    pub error: Errno,
}

/// The write-behind state of one run.
#[derive(Debug, Default)]
pub struct WriteBehind {
    config: WriteBehindConfig,
    files: HashMap<Handle, FileWrites>,
    /// Held plus in-flight bytes.
    behind: usize,
    /// Flushes created and not yet taken by the driver.
    outbox: Vec<Flush>,
    lost: Vec<LostWrite>,
    /// Counts finished flushes, so waiters know when to look again.
    generation: u64,
}

fn end_of(at: i64, len: usize) -> i64 {
    at.saturating_add(i64::try_from(len).unwrap_or(i64::MAX))
}

impl WriteBehind {
    pub fn new(config: WriteBehindConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// A file was opened: its identity lets calls on other handles of the
    /// same file wait for its writes.
    pub fn opened(&mut self, handle: Handle, file: (u32, u32, u64), path: RemotePath) {
        self.files.insert(
            handle,
            FileWrites {
                file: Some(file),
                path: Some(path),
                ..FileWrites::default()
            },
        );
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Flushes to send now.
    pub fn take_flushes(&mut self) -> Vec<Flush> {
        std::mem::take(&mut self.outbox)
    }

    /// Deferred errors nobody was told of yet.
    pub fn take_lost(&mut self) -> Vec<LostWrite> {
        std::mem::take(&mut self.lost)
    }

    fn in_scope(&self, scope: Scope) -> Vec<Handle> {
        let file_of = |h: Handle| self.files.get(&h).and_then(|f| f.file);
        self.files
            .iter()
            .filter(|(h, f)| match scope {
                Scope::All => true,
                Scope::Handle(want) => **h == want,
                Scope::FileOf(want) => **h == want || (f.file.is_some() && f.file == file_of(want)),
            })
            .map(|(h, _)| *h)
            .collect()
    }

    fn send_run(&mut self, handle: Handle) {
        let Some(f) = self.files.get_mut(&handle) else {
            return;
        };
        if f.appends {
            // One at a time: two appends in flight could land in either
            // order. The rest goes once the server answered.
            if f.in_flight > 0 {
                return;
            }
            let Some((at, mut data)) = f.run.take() else {
                return;
            };
            let max = usize::try_from(MAX_IO).unwrap_or(usize::MAX);
            if data.len() > max {
                f.run = Some((at, data.split_off(max)));
            }
            f.in_flight += 1;
            self.outbox.push(Flush {
                handle,
                offset: at,
                data,
                append: true,
            });
            return;
        }
        let Some((mut at, data)) = f.run.take() else {
            return;
        };
        let max = usize::try_from(MAX_IO).unwrap_or(usize::MAX);
        for chunk in data.chunks(max) {
            f.in_flight += 1;
            self.outbox.push(Flush {
                handle,
                offset: at,
                data: chunk.to_vec(),
                append: false,
            });
            at = end_of(at, chunk.len());
        }
    }

    /// Sends every held run in `scope`; true when the caller must wait
    /// (something in scope is in flight).
    pub fn barrier(&mut self, scope: Scope) -> bool {
        let handles = self.in_scope(scope);
        for h in &handles {
            self.send_run(*h);
        }
        handles
            .iter()
            .any(|h| self.files.get(h).is_some_and(|f| f.in_flight > 0))
    }

    /// Whether appends are held (for the driver's [`APPEND_DELAY`] timer).
    pub fn appends_held(&self) -> bool {
        self.files.values().any(|f| f.appends && f.run.is_some())
    }

    /// Sends the held append runs that may go now ([`APPEND_DELAY`] is
    /// up); true while some are still held (behind one in flight).
    pub fn send_appends(&mut self) -> bool {
        let appending: Vec<Handle> = self
            .files
            .iter()
            .filter(|(_, f)| f.appends && f.run.is_some())
            .map(|(h, _)| *h)
            .collect();
        for h in appending {
            self.send_run(h);
        }
        self.appends_held()
    }

    /// Whether anything at all is held or in flight.
    pub fn is_idle(&self) -> bool {
        self.behind == 0
    }

    /// The program writes `data` at `at` through `handle`.
    pub fn write(&mut self, handle: Handle, at: i64, data: &[u8]) -> Write {
        let f = self.files.entry(handle).or_default();
        if let Some(e) = f.error.take() {
            return Write::Failed(e);
        }
        let continues = f.next == Some(at);
        // Other handles of the file go first, and a jump waits for what of
        // this file is in flight: the server may reorder concurrent calls.
        if self.others_first(handle) {
            return Write::Wait;
        }
        if !continues {
            self.send_run(handle);
            if self.barrier(Scope::FileOf(handle)) {
                return Write::Wait;
            }
        }
        if self.too_far_behind(data.len()) {
            return Write::Wait;
        }
        self.hold(handle, at, data);
        Write::Held
    }

    /// The program appends `data` through `handle`, opened with
    /// `O_APPEND`. Held as [`WriteBehind::write`] holds; a new run starts
    /// only once nothing of the file is held or in flight through another
    /// handle, as the end of the file it lands at depends on all of them
    /// (its own appends in flight go first anyway: see `send_run`).
    pub fn append(&mut self, handle: Handle, data: &[u8]) -> Write {
        let f = self.files.entry(handle).or_default();
        if let Some(e) = f.error.take() {
            return Write::Failed(e);
        }
        f.appends = true;
        let continues = f.run.is_some();
        if self.others_first(handle) {
            return Write::Wait;
        }
        let others_in_flight = self
            .in_scope(Scope::FileOf(handle))
            .into_iter()
            .any(|h| h != handle && self.files.get(&h).is_some_and(|f| f.in_flight > 0));
        if !continues && others_in_flight {
            return Write::Wait;
        }
        if self.too_far_behind(data.len()) {
            return Write::Wait;
        }
        self.hold(handle, 0, data);
        Write::Held
    }

    /// Whether a write through `handle` must wait for other handles of its
    /// file: their held runs are sent first (then it waits), and appends of
    /// theirs in flight land first, since where they land depends on it.
    fn others_first(&mut self, handle: Handle) -> bool {
        let file = self.in_scope(Scope::FileOf(handle));
        let other = |f: &FileWrites| f.run.is_some() || (f.appends && f.in_flight > 0);
        let others = file
            .iter()
            .any(|h| *h != handle && self.files.get(h).is_some_and(other));
        if others {
            for h in file {
                self.send_run(h);
            }
        }
        others
    }

    /// Whether `len` more bytes would be too far behind: then every held
    /// run is sent, and the writer waits.
    fn too_far_behind(&mut self, len: usize) -> bool {
        if self.behind.saturating_add(len) > self.config.max_behind && self.behind > 0 {
            let all = self.in_scope(Scope::All);
            for h in all {
                self.send_run(h);
            }
            return true;
        }
        false
    }

    /// Holds `data` at `at` in the run of `handle`, sent once it is long
    /// enough.
    fn hold(&mut self, handle: Handle, at: i64, data: &[u8]) {
        self.behind = self.behind.saturating_add(data.len());
        let f = self.files.entry(handle).or_default();
        match &mut f.run {
            Some((_, run)) => run.extend_from_slice(data),
            None => f.run = Some((at, data.to_vec())),
        }
        f.next = Some(end_of(at, data.len()));
        if f.run
            .as_ref()
            .is_some_and(|(_, r)| r.len() >= self.config.flush_bytes)
        {
            self.send_run(handle);
        }
    }

    /// The token to keep with `flush` while it is in flight.
    pub fn token(flush: &Flush) -> FlushToken {
        FlushToken {
            handle: flush.handle,
            offset: flush.offset,
            data: flush.data.clone(),
            append: flush.append,
        }
    }

    /// The server answered a flush: `Ok(n)` bytes written, or an errno.
    pub fn on_flushed(&mut self, token: FlushToken, written: Result<u64, Errno>) {
        self.generation = self.generation.wrapping_add(1);
        let len = token.data.len();
        let Some(f) = self.files.get_mut(&token.handle) else {
            self.behind = self.behind.saturating_sub(len);
            return;
        };
        let done = written.map(|n| usize::try_from(n).unwrap_or(usize::MAX).min(len));
        match done {
            Ok(n) if n == len => {
                f.in_flight = f.in_flight.saturating_sub(1);
                self.behind = self.behind.saturating_sub(len);
                // An append run that filled up meanwhile may go now.
                let full = |(_, r): &(i64, Vec<u8>)| r.len() >= self.config.flush_bytes;
                if f.appends && f.run.as_ref().is_some_and(full) {
                    self.send_run(token.handle);
                }
            }
            // Short: the rest goes again, and its error (if any) counts.
            Ok(n) if n > 0 => {
                self.behind = self.behind.saturating_sub(n);
                self.outbox.push(Flush {
                    handle: token.handle,
                    offset: end_of(token.offset, n),
                    data: token.data[n..].to_vec(),
                    append: token.append,
                });
            }
            Ok(_) | Err(_) => {
                let e = done.err().unwrap_or(Errno::EIO);
                f.in_flight = f.in_flight.saturating_sub(1);
                self.behind = self.behind.saturating_sub(len);
                f.error.get_or_insert(e);
            }
        }
    }

    /// The deferred error of `handle`, for the program's fsync or close.
    pub fn take_error(&mut self, handle: Handle) -> Option<Errno> {
        self.files.get_mut(&handle).and_then(|f| f.error.take())
    }

    /// The handle is closed for good (after a barrier on it): an error
    /// still recorded can no longer reach the program.
    /// The file a handle is of, as its open said.
    pub fn file_of(&self, handle: Handle) -> Option<(u32, u32, u64)> {
        self.files.get(&handle).and_then(|f| f.file)
    }

    pub fn closed(&mut self, handle: Handle) {
        if let Some(f) = self.files.remove(&handle)
            && let Some(error) = f.error
        {
            self.lost.push(LostWrite {
                path: f.path,
                error,
            });
        }
    }

    /// The run ends: errors still recorded on open handles are lost too.
    pub fn finish(&mut self) -> Vec<LostWrite> {
        let open: Vec<Handle> = self.files.keys().copied().collect();
        for h in open {
            if let Some(f) = self.files.get_mut(&h)
                && let Some(error) = f.error.take()
            {
                self.lost.push(LostWrite {
                    path: f.path.clone(),
                    error,
                });
            }
        }
        self.take_lost()
    }
}

#[cfg(test)]
mod tests;
