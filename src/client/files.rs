//! The engine's file side: a forwarded file request through the shadows
//! and the file layers ([`crate::engine::FileEngine`]) to its round trip,
//! write-behind flushes and their failures, the close of a remote file once
//! the program's last fd on it is gone, and the reads of `mmap` and
//! `execve` of remote files.
//!
//! Must not call ptrace nor decide caching policy (the file layers').

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStringExt as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::{Engine, lock};
use crate::engine::Action;
use crate::errno::Errno;
use crate::proto::{Handle, MAX_IO, Reply, Request, frame};
use crate::syscall::nr;
use crate::tracer::{self, Event};

/// The credentials of thread `tid` for an open, which may take or start
/// opens made ahead; `None` for every other call (their credentials are
/// read when they are sent).
fn opener(tid: i32, request: &Request) -> Option<crate::proto::Credentials> {
    (tid > 0 && matches!(request, Request::Open { .. })).then(|| tracer::creds::of_thread(tid))
}

impl Engine {
    pub(super) fn answer_locally(
        &self,
        tid: i32,
        nr: i64,
        op: Option<u64>,
        response: crate::proto::Response,
    ) {
        self.stats.record_local(nr::name(nr));
        if tid > 0 {
            let _ = self
                .events
                .send(Event::reply(tid, op, response, Duration::ZERO));
        }
    }

    /// One round trip for thread `tid` (none when `tid` is not positive).
    pub(super) async fn call(
        &self,
        tid: i32,
        nr: i64,
        request: Request,
        pending: crate::engine::Pending,
    ) {
        let op = request.wait_number();
        let sent = frame::encode(&request).len();
        let started = tokio::time::Instant::now();
        // The thread is stopped in its call: its credentials are the call's.
        let caller = (tid > 0).then(|| tracer::creds::of_thread(tid));
        let (response, received) = match self.round_trip(caller.as_ref(), &request).await {
            Ok(r) => {
                let n = frame::encode(&r).len();
                (r, n)
            }
            Err(e) => (Err(self.connection_failed(&e)), 0),
        };
        let rtt = started.elapsed();
        let response = self
            .files()
            .on_reply(std::time::Instant::now(), pending, response);
        // Opens it made ahead of the program go at once.
        self.send_flushes();
        self.stats.record(nr::name(nr), sent, received, rtt);
        let response = match op {
            Some(op) => {
                lock(&self.waits).remove(&op);
                // A wait the program's signal cancelled: restarted after an
                // `SA_RESTART` handler, else EINTR, as the kernel's own.
                match response {
                    Err(e) if e == Errno(libc::EINTR) => Err(Errno(tracer::ERESTARTSYS)),
                    other => other,
                }
            }
            None => response,
        };
        if tid > 0 {
            let _ = self.events.send(Event::reply(tid, op, response, rtt));
        }
    }

    /// Carries out `request` to the end, waiting for write-behind flushes
    /// whenever the file layers ask.
    pub(super) async fn drive(&self, tid: i32, nr: i64, request: Request) {
        let op = request.wait_number();
        let caller = opener(tid, &request);
        let action =
            self.files()
                .on_request_by(std::time::Instant::now(), request, caller.as_ref());
        self.send_flushes();
        match action {
            Action::Answer(response) => self.answer_locally(tid, nr, op, response),
            Action::Send(request, pending) => self.call(tid, nr, request, pending).await,
            Action::Wait(request, generation) => {
                self.after_flushes(tid, nr, request, generation).await;
            }
        }
    }

    pub(super) async fn after_flushes(
        &self,
        tid: i32,
        nr: i64,
        mut request: Request,
        mut generation: u64,
    ) {
        let op = request.wait_number();
        loop {
            let mut changes = self.flushed.subscribe();
            let _ = changes.wait_for(|g| *g != generation).await;
            let caller = opener(tid, &request);
            let action =
                self.files()
                    .on_request_by(std::time::Instant::now(), request, caller.as_ref());
            self.send_flushes();
            match action {
                Action::Answer(response) => return self.answer_locally(tid, nr, op, response),
                Action::Send(request, pending) => {
                    return self.call(tid, nr, request, pending).await;
                }
                Action::Wait(again, g) => {
                    request = again;
                    generation = g;
                }
            }
        }
    }

    /// Carries out `request` for thread `tid` (none when not positive) to
    /// its response, through the file layers (held writes first), without
    /// telling the tracer.
    pub(super) async fn respond(&self, tid: i32, mut request: Request) -> crate::proto::Response {
        loop {
            let caller = opener(tid, &request);
            let action =
                self.files()
                    .on_request_by(std::time::Instant::now(), request, caller.as_ref());
            self.send_flushes();
            match action {
                Action::Answer(response) => return response,
                Action::Send(request, pending) => {
                    let caller = (tid > 0).then(|| tracer::creds::of_thread(tid));
                    let response = match self.round_trip(caller.as_ref(), &request).await {
                        Ok(r) => r,
                        Err(e) => Err(self.connection_failed(&e)),
                    };
                    let response =
                        self.files()
                            .on_reply(std::time::Instant::now(), pending, response);
                    self.send_flushes();
                    return response;
                }
                Action::Wait(again, generation) => {
                    let mut changes = self.flushed.subscribe();
                    let _ = changes.wait_for(|g| *g != generation).await;
                    request = again;
                }
            }
        }
    }

    /// Copies the remote executable `path` into the new file `copy`, with
    /// the kernel's checks first: a regular file the thread may execute
    /// (EACCES otherwise). A symlink with an absolute target is not
    /// followed on the server: its target comes back (`Data`), for the
    /// tracer to exec as the program would name it.
    pub(super) async fn copy_executable(
        &self,
        tid: i32,
        path: crate::proto::RemotePath,
        copy: &std::path::Path,
    ) -> crate::proto::Response {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        // Follow the last component's links here, relative ones on the
        // server's side, until a file or an absolute target.
        let mut path = path;
        for hop in 0..=crate::syscall::paths::MAX_SYMLINKS {
            if hop == crate::syscall::paths::MAX_SYMLINKS {
                return Err(Errno(libc::ELOOP));
            }
            let lstat = Request::Stat {
                path: path.clone(),
                follow: false,
            };
            let Reply::Stat(st) = self.respond(tid, lstat).await? else {
                return Err(Errno::EIO);
            };
            if st.mode & libc::S_IFMT != libc::S_IFLNK {
                break;
            }
            let Reply::Data(target) = self
                .respond(tid, Request::Readlink { path: path.clone() })
                .await?
            else {
                return Err(Errno::EIO);
            };
            if target.first() == Some(&b'/') {
                return Ok(Reply::Data(target));
            }
            let parent = path.0.iter().rposition(|&b| b == b'/').map_or(0, |i| i + 1);
            let mut next = path.0[..parent].to_vec();
            next.extend_from_slice(&target);
            path = crate::proto::RemotePath(next);
        }
        let stat = Request::Stat {
            path: path.clone(),
            follow: true,
        };
        match self.respond(tid, stat).await? {
            Reply::Stat(st) if st.mode & libc::S_IFMT == libc::S_IFREG => {}
            Reply::Stat(_) => return Err(Errno::EACCES),
            _ => return Err(Errno::EIO),
        }
        let access = Request::Access {
            path: path.clone(),
            mode: libc::X_OK,
            flags: libc::AT_EACCESS,
        };
        self.respond(tid, access).await?;
        let open = Request::Open {
            path,
            flags: libc::O_RDONLY | libc::O_CLOEXEC,
            mode: 0,
        };
        let handle = match self.respond(tid, open).await? {
            Reply::Opened { handle, .. } => handle,
            _ => return Err(Errno::EIO),
        };
        let copied = async {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o755)
                .open(copy)
                .map_err(|e| Errno::from_io(&e))?;
            self.read_chunks(tid, handle, 0, u64::MAX, |chunk| {
                file.write_all(chunk).map_err(|e| Errno::from_io(&e))
            })
            .await
            .map(|_| Reply::Done)
        }
        .await;
        let _ = self.respond(tid, Request::Close { handle }).await;
        copied
    }

    /// Reads up to `len` bytes of `handle` from `offset` in `MAX_IO` reads
    /// (through the file layers, held writes first), giving each to `sink`,
    /// until `len` or the end of the file; returns how many came.
    pub(super) async fn read_chunks(
        &self,
        tid: i32,
        handle: Handle,
        offset: i64,
        len: u64,
        mut sink: impl FnMut(&[u8]) -> Result<(), Errno>,
    ) -> Result<u64, Errno> {
        let mut got = 0u64;
        loop {
            let want =
                u32::try_from(len.saturating_sub(got).min(u64::from(MAX_IO))).unwrap_or(MAX_IO);
            if want == 0 {
                return Ok(got);
            }
            let at = i64::try_from(got)
                .ok()
                .and_then(|g| offset.checked_add(g))
                .ok_or(Errno::EOVERFLOW)?;
            let pread = Request::Pread {
                handle,
                len: want,
                offset: at,
            };
            let Reply::Data(chunk) = self.respond(tid, pread).await? else {
                return Err(Errno::EIO);
            };
            sink(&chunk)?;
            got = got.saturating_add(u64::try_from(chunk.len()).unwrap_or(u64::MAX));
            // A short read ends the file.
            if u32::try_from(chunk.len()).map_or(true, |n| n < want) {
                return Ok(got);
            }
        }
    }

    /// Sends the writes the file layers have let go, each as its own call.
    pub(super) fn send_flushes(&self) {
        let flushes = self.files().take_flushes();
        for (request, pending) in flushes {
            let engine = self.clone();
            self.runtime.spawn(async move {
                let sent = frame::encode(&request).len();
                let started = tokio::time::Instant::now();
                let caller = pending.caller().cloned();
                let response = match engine.round_trip(caller.as_ref(), &request).await {
                    Ok(r) => r,
                    Err(e) => Err(engine.connection_failed(&e)),
                };
                let name = pending.background_name();
                engine.stats.record(name, sent, 0, started.elapsed());
                let generation = {
                    let mut files = engine.files();
                    let _ = files.on_reply(std::time::Instant::now(), pending, response);
                    files.flush_generation()
                };
                engine.flushed.send_modify(|g| *g = (*g).max(generation));
                // A short write sends its rest.
                engine.send_flushes();
            });
        }
        self.arm_append_timer();
    }

    /// Held appends go after `APPEND_DELAY` even when no call of the
    /// program needs them: a file appended to is usually a log that
    /// someone follows from elsewhere.
    fn arm_append_timer(&self) {
        use std::sync::atomic::Ordering;
        if !self.files().appends_held() || self.append_timer.swap(true, Ordering::SeqCst) {
            return;
        }
        let engine = self.clone();
        self.runtime.spawn(async move {
            loop {
                tokio::time::sleep(crate::engine::writebehind::APPEND_DELAY).await;
                let held = engine.files().flush_appends();
                engine.send_flushes();
                if !held {
                    break;
                }
            }
            engine.append_timer.store(false, Ordering::SeqCst);
            // Appends held since the last look get a timer of their own.
            engine.arm_append_timer();
        });
    }

    /// Says on stderr which held writes failed where no call of the
    /// program could learn it.
    pub(super) fn report_lost_writes(&self) {
        let lost = self.files().take_lost_writes();
        self.report(lost);
    }

    pub(super) fn report(&self, lost: Vec<crate::engine::writebehind::LostWrite>) {
        for l in lost {
            let path = l
                .path
                .map(|p| String::from_utf8_lossy(&p.0).into_owned())
                .unwrap_or_else(|| "a remote file".into());
            eprintln!(
                "rscq: writing {path} on the server failed after the program's write had \
                 returned, and no later call of the program could report it: {}; that data is lost",
                std::io::Error::from_raw_os_error(l.error.0)
            );
            self.writes_lost.store(true, Ordering::SeqCst);
        }
    }

    /// At exit: every held write reaches the server before rscq ends.
    pub(super) async fn drain_writes(&self) {
        loop {
            let (busy, generation) = {
                let mut files = self.files();
                (files.flush_all(), files.flush_generation())
            };
            self.send_flushes();
            if !busy {
                break;
            }
            let mut changes = self.flushed.subscribe();
            let _ = changes.wait_for(|g| *g != generation).await;
        }
        let lost = self.files().finish_writes();
        self.report(lost);
    }

    /// A file request through the shadows and the file layers (see
    /// [`Forwarder::submit`]).
    pub(super) fn submit_file(
        &self,
        tid: i32,
        nr: i64,
        request: Request,
    ) -> Option<crate::proto::Response> {
        let op = request.wait_number();
        if let Some(op) = op {
            // Its thread sleeps: the reply is an event, even a local one.
            lock(&self.waits).insert(op);
        }
        // A call on an fd of a file mapped shared: the shadow syncs around it.
        let touched = self.shadowed(&request);
        if !touched.is_empty() {
            let engine = self.clone();
            self.runtime.spawn(async move {
                engine.shadowed_call(tid, nr, request, touched).await;
            });
            return None;
        }
        if self.truncates_by_path(&request) {
            let engine = self.clone();
            self.runtime.spawn(async move {
                engine.truncating_call(tid, nr, request).await;
            });
            return None;
        }
        // The only clock the file layers see: they take time as an argument.
        let caller = opener(tid, &request);
        let action =
            self.files()
                .on_request_by(std::time::Instant::now(), request, caller.as_ref());
        self.send_flushes();
        match action {
            Action::Answer(response) if op.is_some() => {
                lock(&self.waits).remove(&op.unwrap_or_default());
                self.answer_locally(tid, nr, op, response);
            }
            Action::Answer(response) => {
                // Answered in the trapping thread itself: no event, no wake-up.
                self.stats.record_local(nr::name(nr));
                return Some(response);
            }
            Action::Send(request, pending) => {
                let engine = self.clone();
                self.runtime.spawn(async move {
                    engine.call(tid, nr, request, pending).await;
                });
            }
            Action::Wait(request, generation) => {
                let engine = self.clone();
                self.runtime.spawn(async move {
                    engine.after_flushes(tid, nr, request, generation).await;
                });
            }
        }
        None
    }

    pub(super) fn close_when_unused(&self, read_end: OwnedFd, key: u64, handle: Handle) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            // The placeholder holds one byte (so the program's poll finds it
            // readable): the last close of the program's fds shows as the
            // read end hanging up, the next edge after that byte.
            if let Ok(pipe) = tokio::net::unix::pipe::Receiver::from_owned_fd(read_end) {
                loop {
                    let Ok(ready) = pipe.ready(tokio::io::Interest::READABLE).await else {
                        break;
                    };
                    if ready.is_read_closed() {
                        break;
                    }
                    // Clears the readiness the byte gave, without reading it.
                    let _ = pipe.try_io(|| Err::<(), _>(std::io::ErrorKind::WouldBlock.into()));
                    // A hang-up that came meanwhile was cleared with it.
                    let mut fds = [rustix::event::PollFd::new(
                        &pipe,
                        rustix::event::PollFlags::IN,
                    )];
                    let now = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 0,
                    };
                    let polled = rustix::event::poll(&mut fds, Some(&now));
                    if polled.is_err() || fds[0].revents().contains(rustix::event::PollFlags::HUP) {
                        break;
                    }
                }
            }
            engine.registry.remove(key);
            // Held writes go first; then the remote handle is closed.
            engine
                .drive(-1, libc::SYS_close, Request::Close { handle })
                .await;
            engine.report_lost_writes();
        });
    }

    pub(super) fn start_map_shadow(&self, tid: i32, handle: Handle, writable: bool) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let response = engine.map_shadow(tid, handle, writable).await;
            let rtt = started.elapsed();
            engine.stats.record("mmap", 0, 0, rtt);
            let _ = engine.events.send(Event::Reply { tid, response, rtt });
        });
    }

    pub(super) fn start_sync_shadows(&self, tid: i32, paths: Vec<Vec<u8>>, report: bool) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            engine.sync_shadows(tid, paths, report).await;
        });
    }

    pub(super) fn fetch_executable(&self, tid: i32, path: crate::proto::RemotePath, copy: Vec<u8>) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let copy = std::path::PathBuf::from(OsString::from_vec(copy));
            let response = engine.copy_executable(tid, path, &copy).await;
            if response.is_err() {
                let _ = std::fs::remove_file(&copy);
            }
            let received = std::fs::metadata(&copy).map_or(0, |m| m.len());
            engine.stats.record(
                "execve",
                0,
                usize::try_from(received).unwrap_or(usize::MAX),
                started.elapsed(),
            );
            let rtt = started.elapsed();
            let _ = engine.events.send(Event::Reply { tid, response, rtt });
        });
    }
}
