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
use crate::proto::{Handle, MAX_IO, RemotePath};

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
mod tests {
    use super::*;

    const A: Handle = Handle(1);
    const B: Handle = Handle(2);
    const C: Handle = Handle(3);

    fn wb(flush_bytes: usize, max_behind: usize) -> WriteBehind {
        let mut w = WriteBehind::new(WriteBehindConfig {
            flush_bytes,
            max_behind,
        });
        w.opened(A, (0, 1, 10), RemotePath(b"/a".to_vec()));
        w.opened(B, (0, 1, 10), RemotePath(b"/a".to_vec()));
        w.opened(C, (0, 1, 11), RemotePath(b"/c".to_vec()));
        w
    }

    /// Answers every flush in the outbox as a server writing into `file`.
    fn serve(w: &mut WriteBehind, file: &mut Vec<u8>) -> usize {
        let mut sent = 0;
        loop {
            let flushes = w.take_flushes();
            if flushes.is_empty() {
                return sent;
            }
            for f in flushes {
                sent += 1;
                let at = usize::try_from(f.offset).unwrap();
                if file.len() < at + f.data.len() {
                    file.resize(at + f.data.len(), 0);
                }
                file[at..at + f.data.len()].copy_from_slice(&f.data);
                let n = u64::try_from(f.data.len()).unwrap();
                w.on_flushed(WriteBehind::token(&f), Ok(n));
            }
        }
    }

    #[test]
    fn sequential_small_writes_become_few_flushes() {
        let mut w = wb(4096, 1 << 20);
        let mut file = Vec::new();
        let mut expected = Vec::new();
        let mut sent = 0;
        for i in 0..100u8 {
            let block = vec![i; 512];
            let at = i64::try_from(expected.len()).unwrap();
            assert_eq!(w.write(A, at, &block), Write::Held);
            expected.extend_from_slice(&block);
            sent += serve(&mut w, &mut file);
        }
        assert!(w.barrier(Scope::Handle(A)), "the rest is in flight");
        sent += serve(&mut w, &mut file);
        assert_eq!(file, expected);
        assert_eq!(sent, 13, "51200 bytes in runs of 4096");
        assert!(w.is_idle());
    }

    #[test]
    fn a_continuing_write_does_not_wait_for_the_flush_before_it() {
        let mut w = wb(4, 1 << 20);
        let mut file = Vec::new();
        assert_eq!(w.write(A, 0, b"1234"), Write::Held);
        assert_eq!(w.take_flushes().len(), 1);
        assert_eq!(w.write(A, 4, b"5678"), Write::Held);
        let second = w.take_flushes();
        assert_eq!(second.len(), 1);
        assert_eq!(second[0].offset, 4);
        for f in second {
            w.on_flushed(WriteBehind::token(&f), Ok(4));
        }
        let _ = serve(&mut w, &mut file);
        assert!(w.barrier(Scope::All), "the first is still in flight");
    }

    #[test]
    fn calls_on_the_same_file_wait_and_others_do_not() {
        let mut w = wb(1 << 20, 1 << 20);
        assert_eq!(w.write(A, 0, b"abc"), Write::Held);
        // Another file is not held back.
        assert!(!w.barrier(Scope::FileOf(C)));
        assert!(w.take_flushes().is_empty());
        // The same file through another handle: the run goes, then wait.
        assert!(w.barrier(Scope::FileOf(B)));
        let flushes = w.take_flushes();
        assert_eq!(
            flushes,
            vec![Flush {
                handle: A,
                offset: 0,
                data: b"abc".to_vec(),
                append: false,
            }]
        );
        assert!(w.barrier(Scope::All), "still in flight");
        w.on_flushed(WriteBehind::token(&flushes[0]), Ok(3));
        assert!(!w.barrier(Scope::All));
        assert!(w.is_idle());
    }

    #[test]
    fn a_failed_flush_surfaces_once_on_the_next_call() {
        let mut w = wb(1 << 20, 1 << 20);
        assert_eq!(w.write(A, 0, &[7; 100]), Write::Held);
        assert!(w.barrier(Scope::Handle(A)));
        let f = w.take_flushes().remove(0);
        // Short, then no space: the rest is retried and fails.
        w.on_flushed(WriteBehind::token(&f), Ok(60));
        let rest = w.take_flushes().remove(0);
        assert_eq!((rest.offset, rest.data.len()), (60, 40));
        assert!(w.barrier(Scope::Handle(A)));
        w.on_flushed(WriteBehind::token(&rest), Err(Errno(libc::ENOSPC)));
        assert!(!w.barrier(Scope::Handle(A)));
        assert_eq!(w.write(A, 100, b"x"), Write::Failed(Errno(libc::ENOSPC)));
        assert_eq!(w.take_error(A), None);
        assert!(w.is_idle());
    }

    #[test]
    fn fsync_or_close_get_the_error_and_an_untold_one_is_lost_loudly() {
        let mut w = wb(1 << 20, 1 << 20);
        let _ = w.write(A, 0, b"x");
        let _ = w.write(C, 0, b"y");
        assert!(w.barrier(Scope::All));
        for f in w.take_flushes() {
            w.on_flushed(WriteBehind::token(&f), Err(Errno(libc::EDQUOT)));
        }
        assert_eq!(w.take_error(A), Some(Errno(libc::EDQUOT)));
        w.closed(A);
        assert!(w.take_lost().is_empty(), "A's error was reported");
        w.closed(C);
        assert_eq!(
            w.take_lost(),
            vec![LostWrite {
                path: Some(RemotePath(b"/c".to_vec())),
                error: Errno(libc::EDQUOT)
            }]
        );
    }

    #[test]
    fn a_jump_waits_for_its_file_in_flight_and_keeps_the_order() {
        let mut w = wb(8, 1 << 20);
        let mut file = Vec::new();
        assert_eq!(w.write(A, 0, b"12345678"), Write::Held);
        // The full run is in flight; a rewrite of its start must wait.
        assert_eq!(w.write(A, 0, b"ab"), Write::Wait);
        let _ = serve(&mut w, &mut file);
        assert_eq!(w.write(A, 0, b"ab"), Write::Held);
        assert!(w.barrier(Scope::FileOf(B)));
        let _ = serve(&mut w, &mut file);
        assert_eq!(file, b"ab345678");
    }

    #[test]
    fn writes_through_two_handles_of_one_file_keep_their_order() {
        let mut w = wb(1 << 20, 1 << 20);
        let mut file = Vec::new();
        assert_eq!(w.write(A, 0, b"aaaa"), Write::Held);
        assert_eq!(w.write(B, 1, b"b"), Write::Wait);
        let _ = serve(&mut w, &mut file);
        assert_eq!(w.write(B, 1, b"b"), Write::Held);
        assert!(w.barrier(Scope::All));
        let _ = serve(&mut w, &mut file);
        assert_eq!(file, b"abaa");
    }

    #[test]
    fn too_much_behind_makes_the_writer_wait() {
        let mut w = wb(1 << 20, 10);
        let mut file = Vec::new();
        assert_eq!(w.write(A, 0, b"123456"), Write::Held);
        assert_eq!(w.write(A, 6, b"789012"), Write::Wait);
        let _ = serve(&mut w, &mut file);
        assert_eq!(w.write(A, 6, b"789012"), Write::Held);
        assert!(w.barrier(Scope::Handle(A)));
        let _ = serve(&mut w, &mut file);
        assert_eq!(file, b"123456789012");
    }

    /// Answers the flushes in the outbox as a server would, appends at the
    /// end of `file`; returns how many there were.
    fn serve_once(w: &mut WriteBehind, file: &mut Vec<u8>) -> usize {
        let flushes = w.take_flushes();
        for f in &flushes {
            let at = if f.append {
                file.len()
            } else {
                usize::try_from(f.offset).unwrap()
            };
            if file.len() < at + f.data.len() {
                file.resize(at + f.data.len(), 0);
            }
            file[at..at + f.data.len()].copy_from_slice(&f.data);
            let n = u64::try_from(f.data.len()).unwrap();
            w.on_flushed(WriteBehind::token(f), Ok(n));
        }
        flushes.len()
    }

    /// Retries `write` as the driver does: after each `Wait`, the flushes
    /// go and are answered.
    fn until_held(
        w: &mut WriteBehind,
        file: &mut Vec<u8>,
        mut write: impl FnMut(&mut WriteBehind) -> Write,
    ) {
        for _ in 0..100 {
            match write(w) {
                Write::Held => return,
                Write::Wait => {
                    let _ = serve_once(w, file);
                }
                Write::Failed(e) => panic!("write failed: {e:?}"),
            }
        }
        panic!("a write waited for ever");
    }

    #[test]
    fn appends_gather_into_one_write_at_the_end() {
        let mut w = wb(1 << 20, 1 << 20);
        let mut file = b"already there\n".to_vec();
        for line in [b"one\n".as_slice(), b"two\n", b"three\n"] {
            assert_eq!(w.append(A, line), Write::Held);
        }
        assert!(w.take_flushes().is_empty(), "held");
        assert!(w.barrier(Scope::FileOf(B)), "a call on the file waits");
        let flushes = w.take_flushes();
        assert_eq!(flushes.len(), 1);
        assert!(flushes[0].append);
        assert_eq!(flushes[0].data, b"one\ntwo\nthree\n");
        w.on_flushed(WriteBehind::token(&flushes[0]), Ok(14));
        file.extend_from_slice(&flushes[0].data);
        assert!(!w.barrier(Scope::All));
        assert!(w.is_idle());
        assert_eq!(file, b"already there\none\ntwo\nthree\n");
    }

    #[test]
    fn one_append_flush_of_a_handle_is_in_flight_at_a_time() {
        let mut w = wb(4, 1 << 20);
        let mut file = Vec::new();
        assert_eq!(w.append(A, b"aaaa"), Write::Held);
        let first = w.take_flushes();
        assert_eq!(first.len(), 1, "a full run goes");
        // The next ones are held while it is in flight, even when full.
        assert_eq!(w.append(A, b"bbbb"), Write::Held);
        assert_eq!(w.append(A, b"cc"), Write::Held);
        assert!(w.take_flushes().is_empty());
        assert!(w.barrier(Scope::Handle(A)));
        assert!(w.take_flushes().is_empty(), "still one at a time");
        // Answered: the held run goes at once, whole.
        file.extend_from_slice(&first[0].data);
        w.on_flushed(WriteBehind::token(&first[0]), Ok(4));
        let _ = serve_once(&mut w, &mut file);
        assert!(!w.barrier(Scope::All));
        assert_eq!(file, b"aaaabbbbcc");
        // A short append sends its rest, at the end again.
        assert_eq!(w.append(A, b"dddddd"), Write::Held);
        let f = w.take_flushes().remove(0);
        w.on_flushed(WriteBehind::token(&f), Ok(2));
        let rest = w.take_flushes().remove(0);
        assert!(rest.append);
        assert_eq!(rest.data, b"dddd");
    }

    #[test]
    fn appends_through_two_handles_land_in_program_order() {
        let mut w = wb(1 << 20, 1 << 20);
        let mut file = Vec::new();
        for i in 0..6u8 {
            let (h, byte) = if i % 2 == 0 { (A, b'a') } else { (B, b'b') };
            until_held(&mut w, &mut file, |w| w.append(h, &[byte, b'0' + i]));
        }
        while w.barrier(Scope::All) {
            let _ = serve_once(&mut w, &mut file);
        }
        assert_eq!(file, b"a0b1a2b3a4b5");
    }

    #[test]
    fn writes_at_an_offset_and_appends_to_one_file_keep_their_order() {
        let mut w = wb(1 << 20, 1 << 20);
        let mut file = Vec::new();
        // B writes past the end, then A appends after it, then B again.
        until_held(&mut w, &mut file, |w| w.write(B, 0, b"12345"));
        until_held(&mut w, &mut file, |w| w.append(A, b"end"));
        assert_eq!(w.write(B, 5, b"x"), Write::Wait, "the append goes first");
        until_held(&mut w, &mut file, |w| w.write(B, 5, b"x"));
        while w.barrier(Scope::All) {
            let _ = serve_once(&mut w, &mut file);
        }
        assert_eq!(file, b"12345xnd");
        // A new append run waits for another handle's flush in flight.
        until_held(&mut w, &mut file, |w| w.write(B, 8, &[b'y'; 4]));
        assert!(w.barrier(Scope::Handle(B)));
        assert_eq!(w.append(A, b"!"), Write::Wait);
        let _ = serve_once(&mut w, &mut file);
        assert_eq!(w.append(A, b"!"), Write::Held);
        while w.barrier(Scope::All) {
            let _ = serve_once(&mut w, &mut file);
        }
        assert_eq!(file, b"12345xndyyyy!");
    }

    #[test]
    fn held_appends_go_on_the_timer_one_at_a_time() {
        let mut w = wb(1 << 20, 1 << 20);
        let mut file = Vec::new();
        assert!(!w.send_appends(), "nothing held");
        assert_eq!(w.append(A, b"first\n"), Write::Held);
        assert_eq!(w.write(C, 0, b"not an append"), Write::Held);
        assert!(!w.send_appends(), "sent");
        let sent = w.take_flushes();
        assert_eq!(sent.len(), 1, "only the append goes");
        assert_eq!(w.append(A, b"second\n"), Write::Held);
        assert!(w.send_appends(), "held behind the one in flight");
        assert!(w.take_flushes().is_empty());
        file.extend_from_slice(&sent[0].data);
        w.on_flushed(WriteBehind::token(&sent[0]), Ok(6));
        assert!(!w.send_appends());
        let _ = serve_once(&mut w, &mut file);
        assert_eq!(file, b"first\nsecond\n");
    }

    #[test]
    fn a_failed_append_surfaces_on_the_next_one() {
        let mut w = wb(1 << 20, 1 << 20);
        assert_eq!(w.append(A, b"x"), Write::Held);
        assert!(w.barrier(Scope::Handle(A)));
        let f = w.take_flushes().remove(0);
        w.on_flushed(WriteBehind::token(&f), Err(Errno(libc::EFBIG)));
        assert_eq!(w.append(A, b"y"), Write::Failed(Errno(libc::EFBIG)));
        assert_eq!(w.append(A, b"y"), Write::Held);
    }

    #[test]
    fn the_end_of_the_run_reports_errors_of_open_handles() {
        let mut w = wb(1 << 20, 1 << 20);
        let _ = w.write(C, 0, b"z");
        assert!(w.barrier(Scope::All));
        for f in w.take_flushes() {
            w.on_flushed(WriteBehind::token(&f), Err(Errno::EIO));
        }
        let lost = w.finish();
        assert_eq!(lost.len(), 1);
        assert_eq!(lost[0].error, Errno::EIO);
    }
}
