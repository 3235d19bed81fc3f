//! Shared mappings of remote files: the shadow files and their pushes to
//! and pulls from the server (the I/O half of [`crate::engine::shadow`],
//! whose doc says what a shadow is and when it syncs).
//!
//! A shadow is made when a process first maps its file (shared or
//! private), and lives until the run ends, with a server handle of its own
//! ([`Request::Reopen`]): the program may close its fds and keep writing
//! through the mapping, and the shadow's handle shares no `flock` with
//! the program's. That handle is read-only until a writable shared
//! mapping needs more; a read-only shadow keeps no copy of its bytes in
//! memory (its file is what the server held at the last pull) and never
//! pushes. Across runs and machines the file is close-to-open
//! consistent, as NFS: a new mapping pulls what the server holds, and
//! what mappings wrote reaches the server at `msync`, `munmap`, `fsync`,
//! `close` of an fd of the file, and exit.

use std::collections::HashMap;
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{Engine, lock};
use crate::engine::shadow::{Baseline, SyncPoint, changed_runs, sync_point};
use crate::errno::Errno;
use crate::proto::{Handle, MAX_IO, Reply, Request, Response, Timespec};
use crate::tracer::{self, Event};

/// A remote file, as the server names it: device (major, minor) and inode.
type FileId = (u32, u32, u64);

/// What says a remote file's bytes may have changed: its size, mtime and
/// ctime, as NFS's close-to-open checks them.
type Version = (u64, Timespec, Timespec);

/// The run's shadow files.
#[derive(Debug, Default)]
pub struct Shadows {
    /// rscq's private directory (none without a mount).
    dir: Option<PathBuf>,
    next: AtomicU64,
    files: std::sync::Mutex<HashMap<FileId, Arc<Shadow>>>,
}

impl Shadows {
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self {
            dir,
            ..Self::default()
        }
    }

    fn all(&self) -> Vec<Arc<Shadow>> {
        lock(&self.files).values().cloned().collect()
    }
}

/// One remote file's shadow.
#[derive(Debug)]
pub struct Shadow {
    path: PathBuf,
    file: std::fs::File,
    /// rscq's own handle on the file, and whether it may write.
    remote: std::sync::Mutex<Option<(Handle, bool)>>,
    /// The file's [`Version`] when a read-only shadow was last pulled: a
    /// new mapping of a file that still has it pulls nothing.
    pulled: std::sync::Mutex<Option<Version>>,
    /// What the server holds as far as rscq knows (empty while the
    /// shadow is read-only: the file is that); its lock is held across a
    /// push or a pull, so that they never interleave.
    baseline: tokio::sync::Mutex<Baseline>,
}

impl Shadow {
    fn remote(&self) -> Option<(Handle, bool)> {
        *lock(&self.remote)
    }

    /// Whether a mapping may have written the shadow (a writable shared
    /// one was made).
    fn writable(&self) -> bool {
        matches!(self.remote(), Some((_, true)))
    }

    /// The shadow's bytes now.
    fn read_all(&self) -> Result<Vec<u8>, Errno> {
        let len = self.file.metadata().map_err(|e| Errno::from_io(&e))?.len();
        let mut buf = vec![0u8; usize::try_from(len).map_err(|_| Errno(libc::EFBIG))?];
        let mut at = 0;
        while at < buf.len() {
            match self.file.read_at(&mut buf[at..], at as u64) {
                Ok(0) => {
                    buf.truncate(at);
                    break;
                }
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Errno::from_io(&e)),
            }
        }
        Ok(buf)
    }
}

fn io(e: &std::io::Error) -> Errno {
    Errno::from_io(e)
}

impl Engine {
    /// The shadow of the file `handle` is of, if that file has one.
    fn shadow_of(&self, handle: Handle) -> Option<Arc<Shadow>> {
        let id = self.files().file_of(handle)?;
        lock(&self.shadows.files).get(&id).cloned()
    }

    /// The shadows a request touches, with what each needs around it.
    pub(super) fn shadowed(&self, req: &Request) -> Vec<(Arc<Shadow>, Handle, SyncPoint)> {
        if lock(&self.shadows.files).is_empty() {
            return Vec::new();
        }
        sync_point(req)
            .into_iter()
            .filter_map(|(h, p)| self.shadow_of(h).map(|s| (s, h, p)))
            .collect()
    }

    /// Whether `req` may truncate a shadowed file by path (`truncate(2)`, an
    /// `open` with `O_TRUNC`, also of `/proc/self/fd/N`): the shadow then
    /// pulls once it is done.
    pub(super) fn truncates_by_path(&self, req: &Request) -> bool {
        let truncating = match req {
            Request::Truncate { .. } => true,
            Request::Open { flags, .. }
            | Request::OpenPlus { flags, .. }
            | Request::OpenRead { flags, .. }
            | Request::Reopen { flags, .. } => flags & libc::O_TRUNC != 0,
            _ => false,
        };
        truncating && !lock(&self.shadows.files).is_empty()
    }

    /// A call that may truncate a shadowed file by path: the shadow of the
    /// file it truncated pulls once it is done (the server's length and
    /// bytes win where the mappings changed nothing), so that pages past
    /// the new end raise SIGBUS in every mapping, as locally.
    pub(super) async fn truncating_call(&self, tid: i32, nr: i64, request: Request) {
        let started = tokio::time::Instant::now();
        let truncated = match &request {
            Request::Truncate { path, .. } => Some(path.clone()),
            _ => None,
        };
        let response = self.respond(tid, request).await;
        let id = match (&response, truncated) {
            (Ok(Reply::Opened { stat, .. } | Reply::OpenedRead { stat, .. }), _) => {
                Some((stat.dev_major, stat.dev_minor, stat.ino))
            }
            // `truncate(2)` follows a last symlink, as this stat does.
            (Ok(_), Some(path)) => match self
                .respond(tid, Request::Stat { path, follow: true })
                .await
            {
                Ok(Reply::Stat(st)) => Some((st.dev_major, st.dev_minor, st.ino)),
                _ => None,
            },
            _ => None,
        };
        let shadows = match id {
            Some(id) => lock(&self.shadows.files)
                .get(&id)
                .cloned()
                .into_iter()
                .collect(),
            // An open whose reply names no file: every shadow, to be sure.
            None if response.is_ok() => self.shadows.all(),
            None => Vec::new(),
        };
        for shadow in shadows {
            if let Err(e) = self.pull(tid, &shadow).await {
                tracing::warn!("cannot update the shadow of a remote file: {e}");
            }
        }
        let rtt = started.elapsed();
        self.stats.record(crate::syscall::nr::name(nr), 0, 0, rtt);
        if tid > 0 {
            let _ = self.events.send(Event::Reply { tid, response, rtt });
        }
    }

    /// A request on an fd of a shadowed file: pushes first, then runs it;
    /// one that changed the file pulls the change into the shadow before
    /// the program goes on.
    pub(super) async fn shadowed_call(
        &self,
        tid: i32,
        nr: i64,
        request: Request,
        touched: Vec<(Arc<Shadow>, Handle, SyncPoint)>,
    ) {
        for (shadow, _, _) in &touched {
            if let Err(e) = self.push(tid, shadow).await {
                match request {
                    // These report write errors: this is one.
                    Request::Fsync { .. } | Request::FlushWrites { .. } => {
                        let _ = self.events.send(Event::Reply {
                            tid,
                            response: Err(e),
                            rtt: std::time::Duration::ZERO,
                        });
                        return;
                    }
                    _ => self.shadow_write_lost(shadow, e),
                }
            }
        }
        let changed: Vec<_> = touched
            .iter()
            .filter(|(_, _, p)| *p == SyncPoint::BeforeAndAfter)
            .collect();
        if changed.is_empty() {
            return self.drive(tid, nr, request).await;
        }
        let started = tokio::time::Instant::now();
        let mut response = self.respond(tid, request).await;
        if response.is_ok() {
            for (shadow, handle, _) in changed {
                // A write held behind is the server's first: its error is
                // the call's.
                if let Err(e) = self
                    .respond(tid, Request::FlushWrites { handle: *handle })
                    .await
                {
                    response = Err(e);
                }
                if let Err(e) = self.pull(tid, shadow).await {
                    tracing::warn!("cannot update the shadow of a remote file: {e}");
                }
            }
        }
        let rtt = started.elapsed();
        self.stats.record(crate::syscall::nr::name(nr), 0, 0, rtt);
        if tid > 0 {
            let _ = self.events.send(Event::Reply { tid, response, rtt });
        }
    }

    /// Says that what the mappings wrote to `shadow`'s file could not be
    /// written to the server; the run then exits 1 if the program exits 0.
    fn shadow_write_lost(&self, shadow: &Shadow, e: Errno) {
        eprintln!(
            "rscq: writing back a shared mapping of a remote file ({}) failed: {}",
            shadow.path.display(),
            std::io::Error::from_raw_os_error(e.0)
        );
        self.writes_lost.store(true, Ordering::SeqCst);
    }

    /// `mmap` of the file `handle` is of: its shadow (made and filled on
    /// first use, brought up to the server's content otherwise), with
    /// rscq's own handle writable when the mapping (a shared one) may
    /// write. Replies the shadow's path.
    pub(super) async fn map_shadow(&self, tid: i32, handle: Handle, writable: bool) -> Response {
        let Some(dir) = self.shadows.dir.clone() else {
            return Err(Errno::ENODEV);
        };
        let known = self.files().file_of(handle);
        let id = match known {
            Some(id) => id,
            None => match self.respond(tid, Request::Fstat { handle }).await? {
                Reply::Stat(st) => (st.dev_major, st.dev_minor, st.ino),
                _ => return Err(Errno::EIO),
            },
        };
        // A shadow whose file was removed (its handle's link count is 0)
        // is not this file's, though the server may give the new file the
        // same inode number (sqlite removes and makes `-shm` files anew).
        let existing = lock(&self.shadows.files).get(&id).cloned();
        if let Some(old) = existing {
            let gone = match old.remote() {
                Some((own, _)) => !matches!(
                    self.respond(tid, Request::Fstat { handle: own }).await,
                    Ok(Reply::Stat(st)) if st.nlink > 0
                ),
                None => false,
            };
            if gone {
                let mut files = lock(&self.shadows.files);
                if files.get(&id).is_some_and(|s| Arc::ptr_eq(s, &old)) {
                    files.remove(&id);
                }
            }
        }
        let shadow = {
            let mut files = lock(&self.shadows.files);
            match files.get(&id) {
                Some(s) => s.clone(),
                None => {
                    let n = self.shadows.next.fetch_add(1, Ordering::Relaxed);
                    let path = dir.join(format!("shadow-{n}"));
                    let file = std::fs::OpenOptions::new()
                        .read(true)
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .custom_flags(libc::O_CLOEXEC)
                        .open(&path)
                        .map_err(|e| io(&e))?;
                    // The program opens it with its own rights, as a
                    // placeholder (best effort: an unprivileged rscq
                    // traces its own user's programs only).
                    let caller = tracer::creds::of_thread(tid);
                    let _ =
                        std::os::unix::fs::fchown(&file, Some(caller.fsuid), Some(caller.fsgid));
                    let s = Arc::new(Shadow {
                        path,
                        file,
                        remote: std::sync::Mutex::new(None),
                        pulled: std::sync::Mutex::new(None),
                        baseline: tokio::sync::Mutex::new(Baseline::default()),
                    });
                    files.insert(id, s.clone());
                    s
                }
            }
        };
        self.own_handle(tid, &shadow, handle, writable).await?;
        // A read-only shadow of a file whose size and times are those of
        // the last pull is up to date (close-to-open, as NFS checks it:
        // the run's own writes always pull, so only another machine's
        // change within the server's timestamp granularity and of the same
        // size could go unseen): one stat instead of reading the file.
        let pulled = *lock(&shadow.pulled);
        let unchanged = match shadow.remote() {
            Some((own, false)) if pulled.is_some() => self.version(tid, own).await == pulled,
            _ => false,
        };
        if !unchanged {
            self.pull(tid, &shadow).await?;
        }
        Ok(Reply::Data(
            shadow.path.as_os_str().as_encoded_bytes().to_vec(),
        ))
    }

    /// Gives `shadow` a handle of its own on the server (from the
    /// program's `handle`), a writable one if `writable`.
    async fn own_handle(
        &self,
        tid: i32,
        shadow: &Shadow,
        handle: Handle,
        writable: bool,
    ) -> Result<(), Errno> {
        let mut baseline = shadow.baseline.lock().await;
        let old = shadow.remote();
        if old.is_some_and(|(_, w)| w || !writable) {
            return Ok(());
        }
        let flags = if writable {
            libc::O_RDWR
        } else {
            libc::O_RDONLY
        };
        let Reply::Opened { handle: own, .. } =
            self.respond(tid, Request::Reopen { handle, flags }).await?
        else {
            return Err(Errno::EIO);
        };
        if writable {
            // From now on mappings may write it: the bytes the server held
            // at the last pull are kept apart.
            *baseline = Baseline::of(shadow.read_all()?);
        }
        *lock(&shadow.remote) = Some((own, writable));
        if let Some((old, _)) = old {
            // A read-only handle never had anything to write.
            let _ = self.respond(-1, Request::Close { handle: old }).await;
        }
        Ok(())
    }

    /// Writes what the mappings changed in `shadow` to the server; true if
    /// anything was.
    async fn push(&self, tid: i32, shadow: &Shadow) -> Result<bool, Errno> {
        let mut baseline = shadow.baseline.lock().await;
        if !shadow.writable() {
            // Only private and read-only mappings: nothing wrote it.
            return Ok(false);
        }
        let current = shadow.read_all()?;
        let writes = baseline.push(&current);
        if writes.is_empty() {
            return Ok(false);
        }
        let Some((handle, true)) = shadow.remote() else {
            return Err(Errno::EBADF);
        };
        for (at, bytes) in writes {
            let mut sent = 0usize;
            while sent < bytes.len() {
                let end = bytes.len().min(sent + MAX_IO as usize);
                let offset = i64::try_from(at + sent as u64).map_err(|_| Errno::EOVERFLOW)?;
                let pwrite = Request::Pwrite {
                    handle,
                    data: bytes[sent..end].to_vec(),
                    offset,
                };
                match self.respond(tid, pwrite).await? {
                    Reply::Count(n) if n > 0 => {
                        sent += usize::try_from(n).unwrap_or(usize::MAX);
                    }
                    _ => return Err(Errno::EIO),
                }
            }
        }
        baseline.pushed(&current);
        // Bytes read ahead of any fd may predate the mappings' writes.
        self.files().forget_cached_reads();
        Ok(true)
    }

    /// Brings what the server holds into `shadow`, keeping what the
    /// mappings wrote and did not push yet.
    async fn pull(&self, tid: i32, shadow: &Shadow) -> Result<(), Errno> {
        let mut baseline = shadow.baseline.lock().await;
        let Some((handle, writable)) = shadow.remote() else {
            return Err(Errno::EBADF);
        };
        if !writable {
            return self.pull_read_only(tid, shadow, handle).await;
        }
        let mut server = Vec::new();
        self.read_chunks(tid, handle, 0, u64::MAX, |chunk| {
            server.extend_from_slice(chunk);
            Ok(())
        })
        .await?;
        let pull = baseline.pull(&server);
        if let Some(len) = pull.len {
            shadow.file.set_len(len).map_err(|e| io(&e))?;
        }
        for (at, bytes) in pull.writes {
            shadow.file.write_all_at(&bytes, at).map_err(|e| io(&e))?;
        }
        Ok(())
    }

    /// [`Self::pull`] of a read-only shadow (its baseline lock held): only
    /// pulls write it, so its own bytes are what the server held; the
    /// server's bytes go in where they differ, one read at a time, and
    /// nothing of the file is held in memory.
    async fn pull_read_only(&self, tid: i32, shadow: &Shadow, handle: Handle) -> Result<(), Errno> {
        // Taken before the bytes: a change while they come makes the next
        // mapping pull again.
        let version = self.version(tid, handle).await;
        *lock(&shadow.pulled) = None;
        let file = &shadow.file;
        let mut at = 0u64;
        let mut old = Vec::new();
        let len = self
            .read_chunks(tid, handle, 0, u64::MAX, |chunk| {
                old.resize(chunk.len(), 0);
                let mut have = 0;
                while have < old.len() {
                    match file.read_at(&mut old[have..], at + have as u64) {
                        Ok(0) => break,
                        Ok(n) => have += n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(io(&e)),
                    }
                }
                for (from, n) in changed_runs(&old[..have], chunk, 0) {
                    file.write_all_at(&chunk[from..from + n], at + from as u64)
                        .map_err(|e| io(&e))?;
                }
                at += chunk.len() as u64;
                Ok(())
            })
            .await?;
        if file.metadata().map_err(|e| io(&e))?.len() != len {
            file.set_len(len).map_err(|e| io(&e))?;
        }
        *lock(&shadow.pulled) = version;
        Ok(())
    }

    /// The [`Version`] of the file `handle` is of, as the server has it now.
    async fn version(&self, tid: i32, handle: Handle) -> Option<Version> {
        match self.respond(tid, Request::Fstat { handle }).await {
            Ok(Reply::Stat(st)) => Some((st.size, st.mtime, st.ctime)),
            _ => None,
        }
    }

    /// Pushes the shadows at `paths` (all of them when empty) and replies
    /// to `tid` (none for `tid` -1, the exit). With `report`, a failure is
    /// said on stderr (an `munmap`, an exit: no call can return it) and the
    /// reply is `Done`; else it is the reply.
    pub(super) async fn sync_shadows(&self, tid: i32, paths: Vec<Vec<u8>>, report: bool) {
        let started = tokio::time::Instant::now();
        let response = self.push_shadows(tid, paths, report).await;
        if tid > 0 {
            let rtt = started.elapsed();
            let _ = self.events.send(Event::Reply { tid, response, rtt });
        }
    }

    /// [`Self::sync_shadows`] of a range that maps shadows of several
    /// remotes: each engine pushes its own `paths` at once, and the one
    /// reply to `tid` waits for them all (the first failure, if any, is
    /// it). `parts` is not empty.
    pub(super) fn sync_shadows_across(parts: Vec<(Engine, Vec<Vec<u8>>)>, tid: i32, report: bool) {
        let Some(first) = parts.first().map(|(engine, _)| engine.clone()) else {
            return;
        };
        first.runtime.clone().spawn(async move {
            let started = tokio::time::Instant::now();
            let pushes: Vec<_> = parts
                .into_iter()
                .map(|(engine, paths)| {
                    tokio::spawn(async move { engine.push_shadows(tid, paths, report).await })
                })
                .collect();
            let mut response = Ok(Reply::Done);
            for push in pushes {
                let pushed = push.await.unwrap_or(Err(Errno::EIO));
                if response.is_ok() {
                    response = pushed;
                }
            }
            let rtt = started.elapsed();
            let _ = first.events.send(Event::Reply { tid, response, rtt });
        });
    }

    /// Pushes this engine's shadows at `paths` (all of them when empty);
    /// the reply [`Self::sync_shadows`] gives.
    async fn push_shadows(&self, tid: i32, paths: Vec<Vec<u8>>, report: bool) -> Response {
        let shadows: Vec<_> = self
            .shadows
            .all()
            .into_iter()
            .filter(|s| {
                paths.is_empty()
                    || paths
                        .iter()
                        .any(|p| p.as_slice() == s.path.as_os_str().as_encoded_bytes())
            })
            .collect();
        let mut response = Ok(Reply::Done);
        for shadow in &shadows {
            if let Err(e) = self.push(tid, shadow).await {
                if report {
                    self.shadow_write_lost(shadow, e);
                } else {
                    response = Err(e);
                }
            }
        }
        response
    }
}
