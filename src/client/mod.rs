//! Wiring of the rscq client: the tracer thread, the engine that carries
//! forwarded calls over the QUIC [`Link`], and the end-of-run summary.
//!
//! Owns the engine task: it feeds [`crate::engine`] with requests and the
//! clock, sends what the layers ask for on the link, and answers the tracer
//! thread through [`Event`]s. One engine per remote of the run: `router`
//! (the [`tracer::Forwarder`] the tracer sees) sends each [`tracer::Call`]
//! to its remote's engine. Split by concern: `seam` (an engine's
//! [`tracer::Forwarder`] impl: each call dispatched by its operation), `files` (file
//! requests, write-behind, mmap and exec reads), `tcp` (connects, binds,
//! listens, options), `pure_io` (`--pure` socket data and UDP), `trace` (where
//! `--trace` lines go), `reconnect` (a lost connection connected again
//! within `--reconnect-grace`), `answers` (the fast path's shared region the
//! statcaches offer their answers in), and here the
//! [`Engine`] itself and [`run`]. Must not call ptrace (only the tracer
//! thread does) nor decide caching or coalescing policy (that is
//! [`crate::engine`]'s).

mod answers;
pub mod coalesce;
pub mod connect;
mod files;
mod held_error;
pub mod hold;
pub mod listeners;
pub mod net;
pub mod pure;
mod pure_io;
mod reconnect;
mod router;
mod seam;
pub mod shadow;
pub mod sock_diag;
pub mod sockopt;
pub mod stats;
mod tcp;
mod trace;
pub mod udp;

use std::ffi::OsString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::runtime::Handle as RuntimeHandle;

use crate::engine::{FileEngine, Layers};
use crate::errno::Errno;
use crate::proto::{Reply, Request, SystemFile};
use crate::syscall::paths::MountTable;
use crate::syscall::plan::Forwarding;
use crate::tracer::{self, Event, ExitStatus, Registry, Tracer, TracerConfig, TracerError};
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
    /// `--net-send-window`: how far a program's sends on a remote TCP
    /// connection may be ahead of the server's socket.
    pub net_send_window: u32,
    pub trace: bool,
    /// `--trace-file`: where trace lines go instead of stderr.
    pub trace_file: Option<std::path::PathBuf>,
    /// `--trace-time`: trace lines start with the time of day.
    pub trace_time: bool,
    pub stats: bool,
    pub program: Vec<OsString>,
    /// rsc.config's `REMOTE` set, if the settings came from one.
    pub only: Option<std::collections::BTreeSet<String>>,
    /// How messages, `--trace` and `--stats` name each remote (index as
    /// in the mounts); with one remote none is named.
    pub remote_names: Vec<String>,
    /// The remote of `--net` and the one of `--uname`.
    pub net_remote: usize,
    pub uname_remote: usize,
    /// `--reconnect-grace`: how long a lost connection is tried again;
    /// zero ends remote calls at the first loss.
    pub reconnect_grace: Duration,
    /// The fast path ([`crate::fastpath`]): local path calls of dynamically
    /// linked programs run with no stop (with mounts; off in `--pure`).
    pub fastpath: bool,
}

impl RunOptions {
    /// The name of remote `index` for messages.
    fn remote_name(&self, index: usize) -> String {
        self.remote_names
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("remote {index}"))
    }
}

/// The environment that turns the fast path on ([`crate::fastpath`]): the
/// library written into the run's private directory, preloaded, and the
/// paths it must leave to the tracer (every mount and system file). Empty,
/// so the run goes without it, when there is no mount or it cannot be set
/// up (said at debug level: the stops still give every answer).
fn fastpath_env(
    dir: Option<&tracer::placeholder::PlaceholderDir>,
    mounts: &MountTable,
    system_files: &[crate::syscall::plan::SystemFileCopy],
) -> Vec<(OsString, OsString)> {
    use std::os::unix::ffi::{OsStrExt, OsStringExt};
    let Some(dir) = dir.filter(|_| !mounts.is_empty()) else {
        return Vec::new();
    };
    let routed = mounts
        .local_paths()
        .chain(system_files.iter().map(|(path, _)| path.as_slice()));
    let Some(config) = crate::fastpath::config_value(routed) else {
        tracing::debug!("too many mounts for the fast path; every path call stops");
        return Vec::new();
    };
    let library = match dir.write_shared(crate::fastpath::LIBRARY_NAME, crate::fastpath::LIBRARY) {
        Ok(path) => path,
        Err(e) => {
            tracing::debug!(%e, "cannot write the fast path's library; every path call stops");
            return Vec::new();
        }
    };
    let existing = std::env::var_os("LD_PRELOAD");
    let preload = crate::fastpath::preload_value(
        library.as_os_str().as_bytes(),
        existing.as_deref().map(OsStrExt::as_bytes),
    );
    vec![
        ("LD_PRELOAD".into(), OsString::from_vec(preload)),
        (crate::fastpath::CONFIG_VAR.into(), config.into()),
    ]
}

/// Carries forwarded calls from the tracer thread to the server.
#[derive(Debug, Clone)]
struct Engine {
    runtime: RuntimeHandle,
    link: Link,
    /// The remote's name in messages and `--stats` when the run has
    /// several remotes; `None` with one (messages stay as they were).
    name: Option<Arc<str>>,
    events: tracer::events::EventSender,
    stats: Stats,
    /// Where `--trace` lines go.
    trace: Arc<trace::TraceSink>,
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
    send_interrupts: Arc<pure_io::SendInterrupts>,
    /// Forwarded calls that wait (locks) and have no reply yet, by wait
    /// number: a signal for the sleeping thread cancels the server's wait.
    waits: Arc<std::sync::Mutex<std::collections::HashSet<u64>>>,
    /// Shadow files of remote files mapped `MAP_SHARED`.
    shadows: Arc<shadow::Shadows>,
    /// Connects whose thread sleeps, by sleep number: the program socket's
    /// inode and the thread, for when a signal ends the sleep.
    sleeping_connects: Arc<std::sync::Mutex<std::collections::HashMap<u64, (u64, i32)>>>,
    /// Connecting again after a lost connection.
    resume: Arc<reconnect::Resume>,
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Engine {
    /// The errno a program sees once the connection is gone, said once.
    fn connection_failed(&self, err: &crate::transport::TransportError) -> Errno {
        // While rscq connects again, the reconnect side speaks.
        if self.loss_is_final() && !self.lost.swap(true, Ordering::SeqCst) {
            // With several remotes only this one's calls fail.
            match &self.name {
                Some(name) => eprintln!(
                    "rscq: {name}: {}; forwarded calls to {name} now fail with EIO",
                    crate::transport::ErrorChain(err)
                ),
                None => eprintln!(
                    "rscq: {}; forwarded calls now fail with EIO",
                    crate::transport::ErrorChain(err)
                ),
            }
        }
        Errno::EIO
    }

    /// What a `connect` through a remote whose connection is gone (or was
    /// never made) gets: `ENETUNREACH`, the network behind that remote
    /// cannot be reached; said once as [`Engine::connection_failed`].
    fn connect_failed(&self, err: &crate::transport::TransportError) -> Errno {
        self.connection_failed(err);
        Errno(libc::ENETUNREACH)
    }
}

impl Engine {
    fn files(&self) -> std::sync::MutexGuard<'_, FileEngine> {
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs a socket operation and replies `Done` or its errno to `to`.
    fn net_call<F, Fut>(&self, to: ReplyTo, name: &'static str, op: F)
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
            let _ = engine
                .events
                .send(Event::reply(to.tid, to.sleep, response, rtt));
        });
    }
}

/// Whom an operation's reply goes to: thread `tid`, held in its stop, or
/// asleep with sleep number `sleep`.
#[derive(Debug, Clone, Copy)]
struct ReplyTo {
    tid: i32,
    sleep: Option<u64>,
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
    #[error("cannot write the trace to {}: {source}", path.display())]
    TraceFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
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

/// The server's resolver files, fetched all at once (one round trip before
/// the program starts, not one per file): rscq's copies, to keep open for
/// the run, and for each file the path of its copy (or the server's errno).
fn system_files(
    runtime: &RuntimeHandle,
    link: &Link,
) -> (Vec<OwnedFd>, Vec<crate::syscall::plan::SystemFileCopy>) {
    let mut system_copies = Vec::new();
    let mut system_files = Vec::new();
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
    (system_copies, system_files)
}

/// Connections that remote listeners accepted arrive on streams the server
/// opens: each goes to the program's listener, one queue per listener, so
/// they reach it in the order the server accepted them (as the kernel's
/// accept queue keeps them) and a listener whose queue is full holds up
/// only its own.
async fn accept_incoming(link: Link, pumps: Arc<net::Pumps>) {
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
}

/// Hands each signal someone sent to rscq itself to the program, on a
/// thread of its own; once the program has ended, such a signal ends rscq
/// (`terminate`).
fn forward_signals(
    signal_events: tracer::events::EventSender,
    terminated: Arc<tokio::sync::Notify>,
) -> Result<(), ClientError> {
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
    Ok(())
}

impl Engine {
    /// What the program's shared mappings, held writes and sockets still
    /// hold for this remote, sent.
    async fn drain(&self) {
        // What mappings wrote and nothing pushed yet (a process that
        // exited with the file mapped) goes first.
        self.sync_shadows(-1, Vec::new(), true).await;
        self.drain_writes().await;
        self.pumps.drain_at_exit().await;
    }
}

/// Once the program has ended: what each remote's engine still holds
/// reaches its server (all remotes at once, so a slow one does not hold
/// up the others), unless a signal for rscq (`terminate`) ends the wait.
fn drain_at_exit(runtime: &RuntimeHandle, engines: &[Engine], terminate: &tokio::sync::Notify) {
    runtime.block_on(async {
        let drains: Vec<_> = engines
            .iter()
            .map(|engine| {
                let engine = engine.clone();
                tokio::spawn(async move { engine.drain().await })
            })
            .collect();
        tokio::select! {
            () = async {
                for drain in drains {
                    let _ = drain.await;
                }
            } => {}
            () = terminate.notified() => {
                eprintln!("rscq: ended by a signal while bytes the program wrote were still on their way");
            }
        }
    });
}

/// What every remote's engine shares: the tracer's channel, registry and
/// trace sink, and whether a held write was lost anywhere.
struct Shared {
    runtime: RuntimeHandle,
    events: tracer::events::EventSender,
    registry: Registry,
    trace: Arc<trace::TraceSink>,
    writes_lost: Arc<AtomicBool>,
}

/// One remote's engine: its own link, file layers, pumps and shadows.
/// `sockets` is the tracer's registry for the `--net` remote (the one
/// whose listeners are swept and whose incoming connections are
/// accepted), a registry of its own for the others.
fn start_engine(
    shared: &Shared,
    link: Link,
    name: Option<Arc<str>>,
    shadow_dir: Option<std::path::PathBuf>,
    sockets: &crate::syscall::sockets::SocketRegistry,
    options: &RunOptions,
) -> Result<Engine, ClientError> {
    let runtime = shared.runtime.clone();
    let stats = Stats::default();
    let pumps = Arc::new(
        runtime
            .block_on(net::Pumps::start(
                sockets.clone(),
                options.pure,
                options.nagle.map(|c| (c, link.clone())),
                options.net_send_window,
                stats.streams(),
            ))
            .map_err(ClientError::Pumps)?,
    );
    let engine = Engine {
        trace: shared.trace.clone(),
        udp: udp::UdpRelays::new(runtime.clone(), sockets.clone(), options.pure),
        runtime,
        link,
        name,
        events: shared.events.clone(),
        stats,
        registry: shared.registry.clone(),
        pumps,
        files: Arc::new(std::sync::Mutex::new(FileEngine::new(
            options.layers,
            options.statcache_ttl,
        ))),
        flushed: Arc::new(tokio::sync::watch::channel(0).0),
        writes_lost: shared.writes_lost.clone(),
        append_timer: Arc::new(AtomicBool::new(false)),
        lost: Arc::new(AtomicBool::new(false)),
        connects: Arc::default(),
        options: Arc::default(),
        send_interrupts: Arc::default(),
        waits: Arc::default(),
        shadows: Arc::new(shadow::Shadows::new(shadow_dir)),
        sleeping_connects: Arc::default(),
        resume: Arc::new(reconnect::Resume::new(options.reconnect_grace, options.net)),
    };
    if let Some(loss) = engine.link.start_failure() {
        // Refused at start (said then, naming it): its calls fail as those
        // of a remote whose grace time is over, and it is not tried again.
        engine.resume.refused_at_start(loss);
        engine.lost.store(true, Ordering::SeqCst);
    } else if engine.resume.enabled() {
        // Each remote's connection is watched, and connected again, on its own.
        let done = engine.lost.clone();
        engine
            .runtime
            .spawn(reconnect::supervise(engine.clone(), done));
    }
    Ok(engine)
}

/// Where remote `index`'s shadow files go: the placeholder directory for
/// the default remote, a directory of its own inside it for each other
/// (each engine numbers its shadows from 1, and the router finds a
/// shadow's remote by its directory).
fn shadow_dir(
    placeholders: Option<&std::path::Path>,
    index: usize,
) -> Result<Option<std::path::PathBuf>, ClientError> {
    let Some(dir) = placeholders else {
        return Ok(None);
    };
    if index == 0 {
        return Ok(Some(dir.to_path_buf()));
    }
    let sub = dir.join(format!(
        "{}{index}",
        crate::syscall::mapping::REMOTE_SHADOW_DIR
    ));
    std::fs::DirBuilder::new()
        .mode(0o711)
        .create(&sub)
        .map_err(|source| ClientError::Placeholders {
            dir: sub.clone(),
            source,
        })?;
    Ok(Some(sub))
}

/// One engine per link (`links[i]` is remote `i`), behind the router.
fn start_engines(
    shared: &Shared,
    links: Vec<Link>,
    placeholders: Option<&std::path::Path>,
    net_sockets: &crate::syscall::sockets::SocketRegistry,
    options: &RunOptions,
) -> Result<router::Router, ClientError> {
    let several = links.len() > 1;
    let mut engines = Vec::with_capacity(links.len());
    for (index, link) in links.into_iter().enumerate() {
        let name = several.then(|| Arc::from(options.remote_name(index)));
        let shadows = shadow_dir(placeholders, index)?;
        let dir = shadows.clone();
        let own_sockets;
        let sockets = if index == options.net_remote {
            net_sockets
        } else {
            own_sockets = crate::syscall::sockets::SocketRegistry::default();
            &own_sockets
        };
        let engine = start_engine(shared, link, name, shadows, sockets, options)?;
        engines.push((engine, dir));
    }
    Ok(router::Router::new(
        engines,
        options.net_remote,
        options.uname_remote,
    ))
}

/// Runs the program under the tracer until every traced process is gone;
/// `links[i]` is remote `i` of the mounts ([`MountTable::placed`]) and of
/// `options.remotes`. Must be called outside the runtime whose `runtime`
/// handle it is given.
pub fn run(
    runtime: RuntimeHandle,
    links: Vec<Link>,
    options: RunOptions,
) -> Result<ExitStatus, ClientError> {
    let (events_tx, events_rx) = tracer::events::channel().map_err(ClientError::Thread)?;
    let placeholders = placeholder_dir(&options)?;
    let registry = Registry::new(placeholders.as_ref().map(|d| d.path()));
    let shared = Shared {
        runtime: runtime.clone(),
        events: events_tx.clone(),
        registry: registry.clone(),
        trace: Arc::new(trace_sink(&options)?),
        writes_lost: Arc::new(AtomicBool::new(false)),
    };
    // The `--net` remote's sockets are the tracer's.
    let sockets = crate::syscall::sockets::SocketRegistry::default();
    let placeholder_dir = placeholders.as_ref().map(|d| d.path());
    let router = start_engines(&shared, links, placeholder_dir, &sockets, &options)?;
    let net_engine = router.net_engine().clone();
    // Kept open for the whole run: the program opens them by /proc path.
    let (_system_copies, system_files) = if options.net {
        system_files(&runtime, &net_engine.link)
    } else {
        (Vec::new(), Vec::new())
    };
    if options.net {
        runtime.spawn(listeners::sweep(sockets.clone(), net_engine.link.clone()));
        runtime.spawn(accept_incoming(
            net_engine.link.clone(),
            net_engine.pumps.clone(),
        ));
    }
    let engines = router.engines().to_vec();
    let mut fastpath_env = if options.fastpath {
        fastpath_env(placeholders.as_ref(), &options.mounts, &system_files)
    } else {
        Vec::new()
    };
    let answers_region = offer_answers(&engines, &options, &mut fastpath_env);
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
        fastpath: !fastpath_env.is_empty(),
    };
    let filter = tracer::filter_rules(&config);
    let gate = config.gate();
    let program = options.program;
    let remote_names = options.remote_names;
    let stops = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let tracer_stops = stops.clone();

    // Set once a signal for the program came after it had ended: rscq
    // itself is to end, without waiting for bytes still on their way.
    let terminate = Arc::new(tokio::sync::Notify::new());
    forward_signals(events_tx.clone(), terminate.clone())?;

    // Every ptrace call, and the fork that makes the program, happens on
    // this one thread: ptrace links and PTRACE_O_EXITKILL belong to it.
    let tracer_thread = std::thread::Builder::new()
        .name("rscq-tracer".into())
        .spawn(move || -> Result<ExitStatus, TracerError> {
            let root = tracer::spawn(&program, &filter, gate, &fastpath_env)?;
            // rscq holds a socket of its own for each remote connection of
            // the program: its own limit goes as high as allowed, while the
            // program, forked already, keeps the one it was given.
            if let Err(e) = crate::limits::raise_fd_limit() {
                tracing::debug!(%e, "cannot raise the open-file limit");
            }
            let tracer = Tracer::new(config, &router, registry, sockets, events_rx, root)
                .with_remote_names(remote_names)
                .with_stop_counter(tracer_stops);
            Ok(tracer.with_placeholders(placeholders).run())
        })
        .map_err(ClientError::Thread)?;
    let mut status = tracer_thread
        .join()
        .unwrap_or(Err(TracerError::NoProgram))?;
    drain_at_exit(&runtime, &engines, &terminate);
    // Data the program believed written is gone: say so in the status too.
    if shared.writes_lost.load(Ordering::SeqCst) && status == ExitStatus::Code(0) {
        status = ExitStatus::Code(1);
    }
    for engine in &engines {
        // The program is gone; its last closes may still be in flight when
        // the caller closes the link, which is not worth a warning.
        engine.lost.store(true, Ordering::SeqCst);
    }
    if options.stats {
        report_stats(
            &engines,
            stops.load(Ordering::Relaxed),
            answers_region
                .as_ref()
                .map(answers::AnswersRegion::answered),
        );
    }
    Ok(status)
}

/// The placeholder directory a run with mounts needs (none without).
fn placeholder_dir(
    options: &RunOptions,
) -> Result<Option<tracer::placeholder::PlaceholderDir>, ClientError> {
    if options.mounts.is_empty() {
        return Ok(None);
    }
    let dir = std::env::temp_dir();
    tracer::placeholder::PlaceholderDir::create(&dir)
        .map(Some)
        .map_err(|source| ClientError::Placeholders { dir, source })
}

/// Where `--trace` lines go: the `--trace-file`, else stderr.
fn trace_sink(options: &RunOptions) -> Result<trace::TraceSink, ClientError> {
    match &options.trace_file {
        Some(path) => trace::TraceSink::file(path, options.trace_time).map_err(|source| {
            ClientError::TraceFile {
                path: path.clone(),
                source,
            }
        }),
        None => Ok(trace::TraceSink::stderr(options.trace_time)),
    }
}

/// With the fast path and the statcache: the answers region every
/// engine's statcache offers its entries in, named in the program's
/// environment. `None` (nothing offered, as before) otherwise.
fn offer_answers(
    engines: &[Engine],
    options: &RunOptions,
    fastpath_env: &mut Vec<(OsString, OsString)>,
) -> Option<answers::AnswersRegion> {
    if fastpath_env.is_empty() || !options.layers.statcache {
        return None;
    }
    let region = answers::AnswersRegion::create()?;
    for (remote, engine) in engines.iter().enumerate() {
        lock(&engine.files).set_answers_mirror(region.mirror_for(&options.mounts, remote));
    }
    fastpath_env.push(region.env());
    Some(region)
}

/// `--stats`: each engine's table, then the stops of the whole run, and
/// the calls the program answered itself from the answers region.
fn report_stats(engines: &[Engine], stops: u64, answered_in_program: Option<u64>) {
    for engine in engines {
        eprint!("{}", engine.stats.report_of(engine.name.as_deref()));
        let (made, resumed) = engine.link.connections();
        eprintln!("rscq: connections {made}, resumed with 0-RTT {resumed}");
    }
    // Every call rscq's filters stopped, forwarded or not: what the fast
    // path saves shows here.
    eprintln!("rscq: program stops: {stops}");
    if let Some(n) = answered_in_program {
        eprintln!("rscq: answered in the program from shared memory: {n}");
    }
}
