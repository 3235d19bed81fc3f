//! Wiring of the rscq client: the tracer thread, the engine that carries
//! forwarded calls over the QUIC [`Link`], and the end-of-run summary.
//!
//! Owns the engine task: it feeds [`crate::engine`] with requests and the
//! clock, sends what the layers ask for on the link, and answers the tracer
//! thread through [`Event`]s. Must not call ptrace (only the tracer thread
//! does) nor decide caching or coalescing policy (that is [`crate::engine`]'s).

pub mod coalesce;
pub mod connect;
pub mod hold;
pub mod listeners;
pub mod net;
pub mod pure;
pub mod shadow;
pub mod sock_diag;
pub mod sockopt;
pub mod stats;
pub mod udp;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::runtime::Handle as RuntimeHandle;

use std::os::unix::ffi::OsStringExt as _;

use crate::engine::{Action, FileEngine, Layers};
use crate::errno::Errno;
use crate::proto::{Handle, MAX_IO, Reply, Request, SystemFile, frame};
use crate::sys::fd::dup_fd;
use crate::syscall::nr;
use crate::syscall::paths::MountTable;
use crate::syscall::plan::Forwarding;
use crate::syscall::sockets::{RemoteSocket, SocketRegistry};
use crate::tracer::{
    self, Event, ExitStatus, Forwarder, Registry, Tracer, TracerConfig, TracerError,
};
use crate::transport::Link;

pub use stats::Stats;

/// The signals that belong to the program. rscq blocks them in all of its
/// threads and hands each one sent to rscq itself on to the program.
pub const FORWARDED_SIGNALS: [libc::c_int; 4] =
    [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// Blocks [`FORWARDED_SIGNALS`]; call it first in `main`, before any thread
/// exists, so every thread inherits the mask.
pub fn block_forwarded_signals() -> Result<(), nix::Error> {
    crate::sys::tracer::block_signals(&FORWARDED_SIGNALS)?;
    tracer::events::block_sigchld()
}

/// What one run forwards and reports.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mounts: MountTable,
    pub uname: bool,
    pub net: bool,
    /// The optimization layers for remote files (none with `--pure`).
    pub layers: Layers,
    /// `--pure`: sockets run stop-and-wait too.
    pub pure: bool,
    /// How long prefetched stat answers stay valid.
    pub statcache_ttl: Duration,
    /// The `nagle` layer for sockets: `None` sends at once.
    pub nagle: Option<crate::engine::coalesce::CoalesceConfig>,
    pub trace: bool,
    pub stats: bool,
    pub program: Vec<OsString>,
    /// rsc.config's `REMOTE` set, if the settings came from one.
    pub only: Option<std::collections::BTreeSet<String>>,
}

/// Carries forwarded calls from the tracer thread to the server.
#[derive(Debug, Clone)]
struct Engine {
    runtime: RuntimeHandle,
    link: Link,
    events: tracer::events::EventSender,
    stats: Stats,
    registry: Registry,
    pumps: Arc<net::Pumps>,
    udp: udp::UdpRelays,
    files: Arc<std::sync::Mutex<FileEngine>>,
    /// The flush generation of write-behind, for calls waiting on flushes.
    flushed: Arc<tokio::sync::watch::Sender<u64>>,
    /// Set once a held write failed where no call could report it.
    writes_lost: Arc<AtomicBool>,
    /// A timer runs that sends held appends ([`Engine::arm_append_timer`]).
    append_timer: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    connects: Arc<connect::Connects>,
    options: Arc<sockopt::PendingOptions>,
    send_interrupts: Arc<SendInterrupts>,
    /// Forwarded calls that wait (locks) and have no reply yet, by wait
    /// number: a signal for the sleeping thread cancels the server's wait.
    waits: Arc<std::sync::Mutex<std::collections::HashSet<u64>>>,
    /// Shadow files of remote files mapped `MAP_SHARED`.
    shadows: Arc<shadow::Shadows>,
}

/// The event that gives thread `tid` its reply: a sleeper's (wait number
/// `op`) only reaches that sleep.
fn reply_event(
    tid: i32,
    op: Option<u64>,
    response: crate::proto::Response,
    rtt: Duration,
) -> Event {
    match op {
        Some(op) => Event::SleeperReply {
            tid,
            op,
            response,
            rtt,
        },
        None => Event::Reply { tid, response, rtt },
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `--pure` sends that may wait for room, by sleep number: a signal for
/// the sleeping thread ends the wait.
#[derive(Debug, Default)]
struct SendInterrupts {
    waiting: std::sync::Mutex<std::collections::HashMap<u64, Arc<tokio::sync::Notify>>>,
}

impl SendInterrupts {
    fn register(&self, op: u64) -> Arc<tokio::sync::Notify> {
        let notify = Arc::new(tokio::sync::Notify::new());
        lock(&self.waiting).insert(op, notify.clone());
        notify
    }

    fn interrupt(&self, op: u64) {
        if let Some(notify) = lock(&self.waiting).get(&op) {
            // Kept as a permit if the send does not wait yet.
            notify.notify_one();
        }
    }

    fn forget(&self, op: u64) {
        lock(&self.waiting).remove(&op);
    }
}

impl Engine {
    /// The errno a program sees once the connection is gone, said once.
    fn connection_failed(&self, err: &crate::transport::TransportError) -> Errno {
        if !self.lost.swap(true, Ordering::SeqCst) {
            eprintln!(
                "rscq: {}; forwarded calls now fail with EIO",
                crate::transport::ErrorChain(err)
            );
        }
        Errno::EIO
    }
}

impl Engine {
    fn files(&self) -> std::sync::MutexGuard<'_, FileEngine> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a socket operation of thread `tid` and replies `Done` or its errno.
    fn net_call<F, Fut>(&self, tid: i32, name: &'static str, op: F)
    where
        F: FnOnce(Engine) -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), Errno>> + Send + 'static,
    {
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let response = op(engine.clone()).await.map(|()| Reply::Done);
            let rtt = started.elapsed();
            engine.stats.record(name, 0, 0, rtt);
            let _ = engine.events.send(Event::Reply { tid, response, rtt });
        });
    }
}

impl Engine {
    fn answer_locally(&self, tid: i32, nr: i64, op: Option<u64>, response: crate::proto::Response) {
        self.stats.record_local(nr::name(nr));
        if tid > 0 {
            let _ = self
                .events
                .send(reply_event(tid, op, response, Duration::ZERO));
        }
    }

    /// One round trip for thread `tid` (none when `tid` is not positive).
    async fn call(&self, tid: i32, nr: i64, request: Request, pending: crate::engine::Pending) {
        let op = request.wait_number();
        let sent = frame::encode(&request).len();
        let started = tokio::time::Instant::now();
        // The thread is stopped in its call: its credentials are the call's.
        let caller = (tid > 0).then(|| tracer::creds::of_thread(tid));
        let (response, received) = match self.link.call_as(caller.as_ref(), &request).await {
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
            let _ = self.events.send(reply_event(tid, op, response, rtt));
        }
    }

    /// Carries out `request` to the end, waiting for write-behind flushes
    /// whenever the file layers ask.
    async fn drive(&self, tid: i32, nr: i64, request: Request) {
        let op = request.wait_number();
        let action = self.files().on_request(std::time::Instant::now(), request);
        self.send_flushes();
        match action {
            Action::Answer(response) => self.answer_locally(tid, nr, op, response),
            Action::Send(request, pending) => self.call(tid, nr, request, pending).await,
            Action::Wait(request, generation) => {
                self.after_flushes(tid, nr, request, generation).await;
            }
        }
    }

    async fn after_flushes(&self, tid: i32, nr: i64, mut request: Request, mut generation: u64) {
        let op = request.wait_number();
        loop {
            let mut changes = self.flushed.subscribe();
            let _ = changes.wait_for(|g| *g != generation).await;
            let action = self.files().on_request(std::time::Instant::now(), request);
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
    async fn respond(&self, tid: i32, mut request: Request) -> crate::proto::Response {
        loop {
            let action = self.files().on_request(std::time::Instant::now(), request);
            self.send_flushes();
            match action {
                Action::Answer(response) => return response,
                Action::Send(request, pending) => {
                    let caller = (tid > 0).then(|| tracer::creds::of_thread(tid));
                    let response = match self.link.call_as(caller.as_ref(), &request).await {
                        Ok(r) => r,
                        Err(e) => Err(self.connection_failed(&e)),
                    };
                    return self
                        .files()
                        .on_reply(std::time::Instant::now(), pending, response);
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
    async fn copy_executable(
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
    async fn read_chunks(
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
    fn send_flushes(&self) {
        let flushes = self.files().take_flushes();
        for (request, pending) in flushes {
            let engine = self.clone();
            self.runtime.spawn(async move {
                let sent = frame::encode(&request).len();
                let started = tokio::time::Instant::now();
                let response = match engine.link.call(&request).await {
                    Ok(r) => r,
                    Err(e) => Err(engine.connection_failed(&e)),
                };
                engine
                    .stats
                    .record("write-behind", sent, 0, started.elapsed());
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
    fn report_lost_writes(&self) {
        let lost = self.files().take_lost_writes();
        self.report(lost);
    }

    fn report(&self, lost: Vec<crate::engine::writebehind::LostWrite>) {
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
    async fn drain_writes(&self) {
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
    fn connect_reply(&self, tid: i32, op: Option<u64>, result: Result<(), Errno>, rtt: Duration) {
        let response = result.map(|()| Reply::Done);
        let event = match op {
            Some(op) => Event::SleeperReply {
                tid,
                op,
                response,
                rtt,
            },
            None => Event::Reply { tid, response, rtt },
        };
        let _ = self.events.send(event);
    }

    /// One remote connect of program socket `ino` (`dup` is rscq's copy),
    /// answered to every thread that waits for it.
    async fn run_connect(
        &self,
        ino: u64,
        dup: OwnedFd,
        addr: crate::proto::SockAddr,
        interrupted: Arc<tokio::sync::Notify>,
        nonblocking: bool,
        owner: (i32, i32),
    ) {
        let started = tokio::time::Instant::now();
        let pure = self.pumps.pure.is_some();
        let options = self.options.take(ino);
        // A socket the program bound first connects from its bound
        // address: the server's bound socket makes the connection, and the
        // registry forgets it as a listener.
        let bound = self.pumps.sockets().bound_id(ino);
        if bound.is_some() {
            self.pumps.sockets().remove(ino);
        }
        let mut open = std::pin::pin!(self.link.open_tcp(addr, pure, options, bound));
        let first = if nonblocking {
            // As the kernel's, a non-blocking connect answers EINPROGRESS at
            // once; the socket goes on connecting locally (see `hold`), and
            // the result is kept for a later connect.
            self.connects.went_async(ino);
            None
        } else {
            tokio::select! {
                outcome = &mut open => Some(outcome),
                () = interrupted.notified() => None,
            }
        };
        // An interruption may have put the socket in its local connecting
        // state already.
        let held = self.connects.take_held(ino);
        let result = match (first, held) {
            (Some(outcome), None) => self.connected(dup, outcome, owner).await,
            (first, held) => match held.map_or_else(|| self.pumps.hold.start(&dup, ino), Ok) {
                Err(_) => {
                    let outcome = match first {
                        Some(outcome) => outcome,
                        None => open.await,
                    };
                    self.connected(dup, outcome, owner).await
                }
                Ok(held) => {
                    // rscq keeps no copy of the socket meanwhile: the
                    // program's close must really close it.
                    drop(dup);
                    self.pumps
                        .sockets()
                        .insert(ino, RemoteSocket::connecting(held.local.is_ipv6()));
                    // The socket is now connecting locally, as the kernel
                    // would leave it: a non-blocking caller goes on.
                    for waiter in self.connects.take_nonblocking(ino) {
                        self.connect_reply(
                            waiter.tid,
                            waiter.op,
                            waiter.answer(Ok(())),
                            started.elapsed(),
                        );
                    }
                    let outcome = match first {
                        Some(outcome) => Some(outcome),
                        None => self.outcome_while_held(held, &mut open).await,
                    };
                    self.settle_held(held, outcome, owner).await
                }
            },
        };
        let rtt = started.elapsed();
        self.stats.record("connect", 0, 0, rtt);
        for waiter in self.connects.finish(ino, result) {
            self.connect_reply(waiter.tid, waiter.op, waiter.answer(result), rtt);
        }
    }

    /// Waits for the remote connect `open` of a program socket that waits
    /// in the hold listener; `None` if the program closed its socket first.
    async fn outcome_while_held(
        &self,
        held: hold::Held,
        open: &mut std::pin::Pin<
            &mut impl Future<
                Output = Result<
                    crate::transport::client::TcpOutcome,
                    crate::transport::TransportError,
                >,
            >,
        >,
    ) -> Option<Result<crate::transport::client::TcpOutcome, crate::transport::TransportError>>
    {
        loop {
            tokio::select! {
                outcome = open.as_mut() => return Some(outcome),
                () = tokio::time::sleep(listeners::SWEEP_EVERY) => {
                    if hold::still_connecting(&held) == Some(false) {
                        return None;
                    }
                }
            }
        }
    }

    /// Ends the local connect of a held program socket the way its remote
    /// connect ended (see [`hold`]); `None`: the program closed the socket.
    async fn settle_held(
        &self,
        held: hold::Held,
        outcome: Option<
            Result<crate::transport::client::TcpOutcome, crate::transport::TransportError>,
        >,
        owner: (i32, i32),
    ) -> Result<(), Errno> {
        let sockets = self.pumps.sockets();
        let failure = match outcome {
            // The program closed the socket (or died): dropping `open`
            // cancels the connect on the server.
            None => {
                sockets.remove(held.ino);
                return Err(Errno(libc::ECONNABORTED));
            }
            Some(Ok(Ok(streams))) => {
                // The program may look the moment its socket connects.
                let carrier = self.pumps.expect(held.ino, streams, owner);
                return match self.pumps.hold.finish(held).await {
                    Ok(local) => {
                        carrier.start(local);
                        Ok(())
                    }
                    Err(e) => {
                        carrier.abandon();
                        Err(e)
                    }
                };
            }
            Some(Ok(Err(e))) => e,
            Some(Err(e)) => self.connection_failed(&e),
        };
        // Known before the program can see the failure, so that no
        // `SO_ERROR` in between reads 0.
        sockets.set_connect_error(held.ino, failure);
        if !self.pumps.hold.fail(held).await {
            match hold::program_socket(owner.0, owner.1, held.ino) {
                Some(program) => hold::Hold::abort(&program),
                // No process of the program holds it any more.
                None => sockets.remove(held.ino),
            }
        }
        Err(failure)
    }

    /// The end of a remote connect whose program socket is not attached
    /// yet: attach it, or make it fail as the kernel would.
    async fn connected(
        &self,
        dup: OwnedFd,
        outcome: Result<crate::transport::client::TcpOutcome, crate::transport::TransportError>,
        owner: (i32, i32),
    ) -> Result<(), Errno> {
        match outcome {
            // A non-blocking connect reports EINPROGRESS (see
            // `Waiter::answer`), as the kernel does for TCP; the socket is
            // already connected, so the program's poll says writable and
            // SO_ERROR is 0.
            Ok(Ok(streams)) => self.pumps.attach(dup, streams, owner).await,
            Ok(Err(e)) => match self.pumps.refuse(&dup, e) {
                // The refusal is now the socket's own, reported by poll.
                Errno(libc::EINPROGRESS) => Ok(()),
                e => Err(e),
            },
            Err(e) => Err(self.connection_failed(&e)),
        }
    }
}

/// Fetched bytes cross loopback into the program's socket: waits (at most
/// 50 ms) until `arrived`.
async fn until_crossed(arrived: impl Fn() -> bool) {
    for _ in 0..1000 {
        if arrived() {
            return;
        }
        tokio::time::sleep(Duration::from_micros(50)).await;
    }
}

impl Forwarder for Engine {
    fn submit(&self, tid: i32, nr: i64, request: Request) -> Option<crate::proto::Response> {
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
        let action = self.files().on_request(std::time::Instant::now(), request);
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

    fn watch_close(&self, read_end: OwnedFd, key: u64, handle: Handle) {
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

    fn connect_tcp(
        &self,
        tid: i32,
        tgid: i32,
        fd: i32,
        addr: crate::proto::SockAddr,
        op: Option<u64>,
    ) {
        // The program's thread is stopped (or asleep in rscq's ppoll) until
        // the reply, so its fd is still the socket it named.
        let Some(dup) = dup_fd(tgid, fd) else {
            self.connect_reply(tid, op, Err(Errno::EBADF), Duration::ZERO);
            return;
        };
        let ino = match rustix::fs::fstat(&dup) {
            Ok(st) => st.st_ino,
            Err(e) => {
                self.connect_reply(tid, op, Err(e.into()), Duration::ZERO);
                return;
            }
        };
        let nonblocking =
            rustix::fs::fcntl_getfl(&dup).is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK));
        let waiter = connect::Waiter {
            tid,
            op,
            nonblocking,
        };
        match self.connects.join(ino, waiter) {
            connect::Joined::Start(interrupted) => {
                if self.pumps.is_remote(ino) && self.pumps.sockets().bound_id(ino).is_none() {
                    self.connects.finish(ino, Err(Errno(libc::EISCONN)));
                    self.connect_reply(tid, op, Err(Errno(libc::EISCONN)), Duration::ZERO);
                    return;
                }
                if !nonblocking && let Ok(copy) = dup.try_clone() {
                    self.connects.keep_socket(ino, copy);
                }
                let engine = self.clone();
                self.runtime.spawn(async move {
                    engine
                        .run_connect(ino, dup, addr, interrupted, nonblocking, (tgid, fd))
                        .await;
                });
            }
            connect::Joined::Waiting => {}
            connect::Joined::Already => {
                self.connect_reply(tid, op, Err(Errno(libc::EALREADY)), Duration::ZERO);
            }
            connect::Joined::Ended(result) => {
                self.connect_reply(tid, op, result, Duration::ZERO);
            }
        }
    }

    fn connect_interrupted(&self, ino: u64, tid: i32) {
        // The interrupted thread is still stopped: its socket becomes a
        // connecting one before it can look at it (the socket's file flags
        // are changed for a moment, which it must not see).
        self.connects
            .hold(ino, |socket| self.pumps.hold.start(socket, ino).ok());
        self.connects.interrupted(ino, tid);
    }

    fn set_sock_option(
        &self,
        ino: u64,
        target: Option<crate::proto::OptionTarget>,
        option: crate::proto::SockOption,
    ) {
        let Some(target) = target else {
            // Not on the server yet: it goes with the connect or bind.
            self.options.record(ino, option);
            return;
        };
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let request = Request::TcpSetOption { target, option };
            if let Err(e) = engine.link.call(&request).await {
                engine.connection_failed(&e);
            }
            engine.stats.record("setsockopt", 0, 0, started.elapsed());
        });
    }

    fn bind_tcp(&self, tid: i32, tgid: i32, fd: i32, addr: crate::proto::SockAddr) {
        let dup = dup_fd(tgid, fd);
        self.net_call(tid, "bind", move |engine: Engine| async move {
            match dup {
                None => Err(Errno::EBADF),
                Some(dup) => {
                    let options = rustix::fs::fstat(&dup)
                        .map(|st| engine.options.take(st.st_ino))
                        .unwrap_or_default();
                    engine.pumps.bind(&engine.link, dup, addr, options).await
                }
            }
        });
    }

    fn listen_tcp(&self, tid: i32, tgid: i32, fd: i32, listener: u64, backlog: u32) {
        let dup = dup_fd(tgid, fd);
        self.net_call(tid, "listen", move |engine: Engine| async move {
            match dup {
                None => Err(Errno::EBADF),
                Some(dup) => {
                    engine
                        .pumps
                        .listen(&engine.link, dup, listener, backlog)
                        .await
                }
            }
        });
    }

    fn pure_recv(
        &self,
        tid: i32,
        tgid: i32,
        fd: i32,
        pump: u64,
        len: u32,
        wait: crate::syscall::plan::PureWait,
    ) {
        use crate::syscall::plan::PureWait;
        let dup = dup_fd(tgid, fd);
        let pump = self.pumps.pure.as_ref().and_then(|p| p.get(pump));
        self.net_call(tid, "recv", move |_engine: Engine| async move {
            let (Some(dup), Some(pump)) = (dup, pump) else {
                return Ok(());
            };
            let nonblocking = wait == PureWait::DontWait
                || rustix::fs::fcntl_getfl(&dup)
                    .is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK));
            // MSG_WAITALL on a blocking socket runs natively only once all
            // its bytes are in the socket, or the native call would wait
            // for bytes no fetch brings.
            let want = if wait == PureWait::All && !nonblocking {
                u64::from(len.max(1))
            } else {
                1
            };
            let unread = || rustix::io::ioctl_fionread(&dup).unwrap_or(0);
            if wait == PureWait::Available {
                let before = unread();
                if pump.fetch(len, true).await? {
                    until_crossed(|| pump.at_eof() || unread() > before).await;
                }
                return Ok(());
            }
            let ready = || pump.at_eof() || unread() >= want;
            // A blocking call may only run natively once its socket holds
            // bytes or the end of the stream; a non-blocking one after one
            // try, as the kernel would answer EAGAIN.
            while !ready() {
                let missing = want.saturating_sub(unread()).max(1);
                let ask = if want > 1 {
                    u32::try_from(missing).unwrap_or(len)
                } else {
                    len
                };
                let before = unread();
                let came = pump.fetch(ask, nonblocking).await?;
                // Nothing came for a non-blocking try: EAGAIN at once, as
                // the kernel's (waiting for bytes that never cross took
                // about a second).
                if came || !nonblocking {
                    until_crossed(|| ready() || unread() > before).await;
                }
                if nonblocking {
                    break;
                }
            }
            Ok(())
        });
    }

    fn pure_send(&self, tid: i32, tgid: i32, fd: i32, pump: u64, data: Vec<u8>, op: Option<u64>) {
        let engine = self.clone();
        let pump = self.pumps.pure.as_ref().and_then(|p| p.get(pump));
        // Registered now: a signal may come before the task runs.
        let interrupted = op.map(|op| self.send_interrupts.register(op));
        // The program's send timeout, as the kernel keeps it.
        let timeout = op.and_then(|_| dup_fd(tgid, fd)).and_then(|dup| {
            rustix::net::sockopt::socket_timeout(&dup, rustix::net::sockopt::Timeout::Send)
                .ok()
                .flatten()
        });
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let sent = data.len();
            let why = std::sync::Mutex::new(None);
            let stop_waiting = async {
                let Some(interrupted) = &interrupted else {
                    // Non-blocking: only what fits now.
                    *lock(&why) = Some(Errno::EAGAIN);
                    return;
                };
                let limit = async {
                    match timeout {
                        Some(limit) => tokio::time::sleep(limit).await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    () = interrupted.notified() => {
                        // As the kernel: a restart, unless the socket has
                        // a timeout (then EINTR).
                        let e = if timeout.is_some() {
                            Errno(libc::EINTR)
                        } else {
                            Errno(tracer::ERESTARTSYS)
                        };
                        *lock(&why) = Some(e);
                    }
                    () = limit => *lock(&why) = Some(Errno::EAGAIN),
                }
            };
            let response = match pump {
                Some(pump) => match pump.send(data, stop_waiting).await {
                    // Nothing went before the call stopped waiting.
                    Ok(0) if sent > 0 => Err(lock(&why).unwrap_or(Errno::EAGAIN)),
                    other => other.map(Reply::Count),
                },
                None => Err(Errno(libc::EPIPE)),
            };
            if let Some(op) = op {
                engine.send_interrupts.forget(op);
            }
            let rtt = started.elapsed();
            engine.stats.record("send", sent, 0, rtt);
            let event = match op {
                Some(op) => Event::SleeperReply {
                    tid,
                    op,
                    response,
                    rtt,
                },
                None => Event::Reply { tid, response, rtt },
            };
            let _ = engine.events.send(event);
        });
    }

    fn read_range(&self, tid: i32, handle: Handle, offset: i64, len: u64) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            engine.push_before_read(tid, handle).await;
            let mut data = Vec::new();
            let response = engine
                .read_chunks(tid, handle, offset, len, |chunk| {
                    data.extend_from_slice(chunk);
                    Ok(())
                })
                .await
                .map(|_| Reply::Data(data));
            let rtt = started.elapsed();
            let received = match &response {
                Ok(Reply::Data(d)) => d.len(),
                _ => 0,
            };
            engine.stats.record("mmap", 0, received, rtt);
            let _ = engine.events.send(Event::Reply { tid, response, rtt });
        });
    }

    fn map_shadow(&self, tid: i32, handle: Handle, writable: bool) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let response = engine.map_shadow(tid, handle, writable).await;
            let rtt = started.elapsed();
            engine.stats.record("mmap", 0, 0, rtt);
            let _ = engine.events.send(Event::Reply { tid, response, rtt });
        });
    }

    fn sync_shadows(&self, tid: i32, paths: Vec<Vec<u8>>, report: bool) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            engine.sync_shadows(tid, paths, report).await;
        });
    }

    fn fetch_executable(&self, tid: i32, path: crate::proto::RemotePath, copy: Vec<u8>) {
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

    fn interrupted(&self, op: u64) {
        self.send_interrupts.interrupt(op);
        if lock(&self.waits).contains(&op) {
            // The server's wait ends, and the waiting request then replies
            // (EINTR, or its lock if that came first).
            let engine = self.clone();
            self.runtime.spawn(async move {
                if let Err(e) = engine.link.call(&Request::CancelWait { wait: op }).await {
                    engine.connection_failed(&e);
                }
            });
        }
    }

    fn prefetch(&self, pumps: &[u64]) {
        let Some(pure) = &self.pumps.pure else { return };
        let _guard = self.runtime.enter();
        for id in pumps {
            if let Some(pump) = pure.get(*id) {
                pump.prefetch();
            }
        }
    }

    fn bind_udp(&self, tid: i32, tgid: i32, fd: i32, addr: crate::proto::SockAddr) {
        let dup = dup_fd(tgid, fd);
        self.net_call(tid, "bind", move |engine: Engine| async move {
            match dup {
                None => Err(Errno::EBADF),
                Some(dup) => engine.udp.bind(&engine.link, dup, addr).await,
            }
        });
    }

    fn connect_udp(
        &self,
        tid: i32,
        tgid: i32,
        fd: i32,
        id: u64,
        addr: Option<crate::proto::SockAddr>,
    ) {
        let dup = dup_fd(tgid, fd);
        self.net_call(tid, "connect", move |engine: Engine| async move {
            match dup {
                None => Err(Errno::EBADF),
                Some(dup) => engine.udp.connect(dup, id, addr).await,
            }
        });
    }

    fn udp_send(&self, tid: i32, id: u64, peer: Option<crate::proto::SockAddr>, data: Vec<u8>) {
        let engine = self.clone();
        self.runtime.spawn(async move {
            let started = tokio::time::Instant::now();
            let sent = data.len();
            let response = engine.udp.send(id, peer, data).await.map(Reply::Count);
            let rtt = started.elapsed();
            engine.stats.record("send", sent, 0, rtt);
            let _ = engine.events.send(Event::Reply { tid, response, rtt });
        });
    }

    fn udp_recv(&self, tid: i32, tgid: i32, fd: i32, id: u64, dontwait: bool) {
        let dup = dup_fd(tgid, fd);
        self.net_call(tid, "recv", move |engine: Engine| async move {
            let Some(dup) = dup else {
                return Ok(());
            };
            let nonblocking = dontwait
                || rustix::fs::fcntl_getfl(&dup)
                    .is_ok_and(|f| f.contains(rustix::fs::OFlags::NONBLOCK));
            let timeout =
                rustix::net::sockopt::socket_timeout(&dup, rustix::net::sockopt::Timeout::Recv)
                    .ok()
                    .flatten();
            let receive = engine.udp.recv(dup, id, nonblocking);
            match timeout {
                // The program's own receive timeout, as the kernel keeps it.
                Some(limit) if !nonblocking => tokio::time::timeout(limit, receive)
                    .await
                    .unwrap_or(Err(Errno::EAGAIN)),
                _ => receive.await,
            }
        });
    }

    fn udp_prefetch(&self, ids: &[u64]) {
        for id in ids {
            self.udp.prefetch(*id);
        }
    }

    fn udp_relay(&self, v6: bool, peer: crate::proto::SockAddr) -> Option<std::net::SocketAddr> {
        self.udp.relay_addr(v6, peer)
    }

    fn udp_peer_of(&self, relay: std::net::SocketAddr) -> Option<crate::proto::SockAddr> {
        self.udp.peer_of(relay)
    }

    fn trace_line(&self, line: String) {
        eprintln!("rscq: {line}");
    }
}

/// The server's copy of `file`, in a memfd the program can open.
async fn fetch_system_file(link: &Link, file: SystemFile) -> Result<OwnedFd, Errno> {
    let data = match link.call(&Request::ReadSystemFile { file }).await {
        Ok(Ok(Reply::Data(d))) => d,
        Ok(Ok(_)) => return Err(Errno::EIO),
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(Errno::EIO),
    };
    let fd = rustix::fs::memfd_create(file.path(), rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(Errno::from)?;
    let mut f = std::fs::File::from(fd);
    std::io::Write::write_all(&mut f, &data).map_err(|e| Errno::from_io(&e))?;
    Ok(OwnedFd::from(f))
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tracer(#[from] TracerError),
    #[error("cannot start the tracer thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot start the local socket pumps: {0}")]
    Pumps(std::io::Error),
    #[error("cannot make a directory for remote files' placeholders in {dir}: {source}")]
    Placeholders {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Runs the program under the tracer until every traced process is gone.
/// Must be called outside the runtime whose `runtime` handle it is given.
pub fn run(
    runtime: RuntimeHandle,
    link: Link,
    options: RunOptions,
) -> Result<ExitStatus, ClientError> {
    let (events_tx, events_rx) = tracer::events::channel().map_err(ClientError::Thread)?;
    let placeholders = if options.mounts.is_empty() {
        None
    } else {
        let dir = std::env::temp_dir();
        Some(
            tracer::placeholder::PlaceholderDir::create(&dir)
                .map_err(|source| ClientError::Placeholders { dir, source })?,
        )
    };
    let registry = Registry::new(placeholders.as_ref().map(|d| d.path()));
    let shadows = Arc::new(shadow::Shadows::new(
        placeholders.as_ref().map(|d| d.path().to_path_buf()),
    ));
    let stats = Stats::default();
    let lost = Arc::new(AtomicBool::new(false));
    let sockets = SocketRegistry::default();
    let pumps = Arc::new(
        runtime
            .block_on(net::Pumps::start(
                sockets.clone(),
                options.pure,
                options.nagle.map(|c| (c, link.clone())),
            ))
            .map_err(ClientError::Pumps)?,
    );
    // Kept open for the whole run: the program opens them by /proc path.
    let mut system_copies = Vec::new();
    let mut system_files = Vec::new();
    if options.net {
        // All at once: one round trip before the program starts, not one
        // per file.
        let fetched = runtime.block_on(async {
            let fetches: Vec<_> = SystemFile::ALL
                .into_iter()
                .map(|file| {
                    let link = link.clone();
                    tokio::spawn(async move { fetch_system_file(&link, file).await })
                })
                .collect();
            let mut fetched = Vec::new();
            for fetch in fetches {
                fetched.push(fetch.await.unwrap_or(Err(Errno::EIO)));
            }
            fetched
        });
        for (file, copy) in SystemFile::ALL.into_iter().zip(fetched) {
            let copy = copy.map(|fd| {
                let path = format!("/proc/{}/fd/{}", std::process::id(), fd.as_raw_fd());
                system_copies.push(fd);
                path.into_bytes()
            });
            system_files.push((file.path().as_bytes().to_vec(), copy));
        }
    }
    if options.net {
        runtime.spawn(listeners::sweep(sockets.clone(), link.clone()));
        // Connections that remote listeners accepted arrive on streams the
        // server opens.
        let (link, pumps) = (link.clone(), pumps.clone());
        runtime.spawn(async move {
            // One queue per listener: connections reach the program's
            // listener in the order the server accepted them, as the
            // kernel's accept queue keeps them, and a listener whose queue
            // is full holds up only its own.
            let mut queues = std::collections::HashMap::new();
            while let Ok((incoming, send, recv)) = link.accept_incoming().await {
                let queue = queues.entry(incoming.listener).or_insert_with(|| {
                    let (queue, mut arrivals) = tokio::sync::mpsc::unbounded_channel();
                    let (pumps, link) = (pumps.clone(), link.clone());
                    tokio::spawn(async move {
                        while let Some((incoming, send, recv)) = arrivals.recv().await {
                            pumps.deliver_incoming(&link, incoming, send, recv).await;
                        }
                    });
                    queue
                });
                let _ = queue.send((incoming, send, recv));
            }
        });
    }
    let udp = udp::UdpRelays::new(runtime.clone(), sockets.clone(), options.pure);
    let engine = Engine {
        udp,
        runtime,
        link,
        events: events_tx.clone(),
        stats: stats.clone(),
        registry: registry.clone(),
        pumps,
        files: Arc::new(std::sync::Mutex::new(FileEngine::new(
            options.layers,
            options.statcache_ttl,
        ))),
        flushed: Arc::new(tokio::sync::watch::channel(0).0),
        writes_lost: Arc::new(AtomicBool::new(false)),
        append_timer: Arc::new(AtomicBool::new(false)),
        lost: lost.clone(),
        connects: Arc::default(),
        options: Arc::default(),
        send_interrupts: Arc::default(),
        waits: Arc::default(),
        shadows,
    };
    let drainer = engine.clone();
    let config = TracerConfig {
        forwarding: Arc::new(Forwarding {
            mounts: options.mounts,
            uname: options.uname,
            net: options.net,
            pure_net: options.net && options.pure,
            system_files,
            write_behind: options.layers.readahead,
        }),
        trace: options.trace,
        only: options.only,
    };
    let filter = tracer::filter_rules(&config);
    let program = options.program;

    let signal_events = events_tx.clone();
    // Set once a signal for the program came after it had ended: rscq
    // itself is to end, without waiting for bytes still on their way.
    let terminate = Arc::new(tokio::sync::Notify::new());
    let terminated = terminate.clone();
    std::thread::Builder::new()
        .name("rscq-signals".into())
        .spawn(move || {
            while let Ok((sig, sent_by_process)) =
                crate::sys::tracer::wait_signal(&FORWARDED_SIGNALS)
            {
                // A terminal's Ctrl-C already reached the program, which
                // shares rscq's process group; only pass on signals someone
                // sent to rscq itself.
                if sent_by_process && signal_events.send(Event::Signal(sig)).is_err() {
                    terminated.notify_one();
                }
            }
        })
        .map_err(ClientError::Thread)?;

    // Every ptrace call, and the fork that makes the program, happens on
    // this one thread: ptrace links and PTRACE_O_EXITKILL belong to it.
    let tracer_thread = std::thread::Builder::new()
        .name("rscq-tracer".into())
        .spawn(move || -> Result<ExitStatus, TracerError> {
            let root = tracer::spawn(&program, &filter)?;
            // rscq holds a socket of its own for each remote connection of
            // the program: its own limit goes as high as allowed, while the
            // program, forked already, keeps the one it was given.
            if let Err(e) = crate::limits::raise_fd_limit() {
                tracing::debug!(%e, "cannot raise the open-file limit");
            }
            let tracer = Tracer::new(config, &engine, registry, sockets, events_rx, root);
            Ok(tracer.with_placeholders(placeholders).run())
        })
        .map_err(ClientError::Thread)?;
    let mut status = tracer_thread
        .join()
        .unwrap_or(Err(TracerError::NoProgram))?;
    drainer.runtime.block_on(async {
        tokio::select! {
            () = async {
                // What mappings wrote and nothing pushed yet (a process
                // that exited with the file mapped) goes first.
                drainer.sync_shadows(-1, Vec::new(), true).await;
                drainer.drain_writes().await;
                drainer.pumps.drain_at_exit().await;
            } => {}
            () = terminate.notified() => {
                eprintln!("rscq: ended by a signal while bytes the program wrote were still on their way");
            }
        }
    });
    // Data the program believed written is gone: say so in the status too.
    if drainer.writes_lost.load(Ordering::SeqCst) && status == ExitStatus::Code(0) {
        status = ExitStatus::Code(1);
    }
    // The program is gone; its last closes may still be in flight when the
    // caller closes the link, which is not worth a warning.
    lost.store(true, Ordering::SeqCst);
    if options.stats {
        eprint!("{}", stats.report());
    }
    Ok(status)
}
