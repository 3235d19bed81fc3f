//! rscq-server: executes forwarded system calls beneath an export root for
//! the clients listed in an authorized clients file.
//!
//! ```text
//! rscq-server --gen-cert DIR
//! rscq-server --print-fingerprint --cert DIR/cert.pem
//! rscq-server --cert DIR/cert.pem --key DIR/key.pem --root /srv/export \
//!             --authorized-clients FILE [--listen 0.0.0.0:4433] [--read-only]
//!             [--squash-root[=UID:GID]]
//! rscq-server --config /etc/rscq/server.toml     # the same settings as TOML
//! ```
//!
//! The authorized clients file is read again on SIGHUP and when it changes
//! (checked every second); a removed client's live sessions end.
//!
//! Run as root, it executes each call with the caller's uid, gids, umask
//! and capabilities (as NFS's AUTH_SYS); run as a user, with that user's.
//!
//! `--root` has no default on purpose: exporting `/` by accident would hand
//! every authorized client the whole machine.
//!
//! Wiring only: flags, identity files, the endpoint (`rscq::transport::server`)
//! and one `rscq::server::ClientSession` per connection. Must not execute requests or
//! speak the protocol itself.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use rscq::config::ServerFileSettings;
use rscq::server::creds::{Policy, Squash};
use rscq::server::live::LiveSessions;
use rscq::server::{ClientSession, Executor};
use rscq::transport::{
    AuthorizedClients, ErrorChain, Identity, LiveClients, Liveness, Peer, SessionError, identity,
    server,
};
use tokio::signal::unix::{SignalKind, signal};

#[derive(Debug, Parser)]
#[command(
    name = "rscq-server",
    version,
    about = "Serve a directory tree to authorized rscq clients over QUIC"
)]
struct Args {
    /// Write a new certificate and key to DIR/cert.pem and DIR/key.pem, print
    /// the certificate's fingerprint (for clients to pin) and exit.
    #[arg(long, value_name = "DIR", exclusive = true)]
    gen_cert: Option<PathBuf>,

    /// Print the fingerprint of the certificate of --cert (or of the config
    /// file's `cert`), for clients to pin, and exit.
    #[arg(long)]
    print_fingerprint: bool,

    /// Settings as TOML: listen, cert, key, root, authorized_clients,
    /// read_only, squash_root (flags win; relative paths are the file's).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,

    /// The server certificate (PEM), as written by --gen-cert. Required.
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,

    /// The server private key (PEM), as written by --gen-cert. Required.
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,

    /// The UDP address to listen on; port 0 picks a free port
    /// [default: 0.0.0.0:4433].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,

    /// The directory clients see; no path they send can leave it. Required.
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Fingerprints of the clients allowed to connect, one `sha256:...` per
    /// line (`#` comments and blank lines allowed). Read again on SIGHUP
    /// and when it changes. Required.
    #[arg(long, value_name = "FILE")]
    authorized_clients: Option<PathBuf>,

    /// Refuse every request that would modify the export.
    #[arg(long)]
    read_only: bool,

    /// Run the calls of a client's root (uid 0) as UID:GID with no
    /// capabilities, as NFS's root_squash (default 65534:65534). Other
    /// callers keep their own ids.
    #[arg(
        long,
        value_name = "UID:GID",
        num_args = 0..=1,
        require_equals = true,
        default_missing_value = "65534:65534",
        value_parser = parse_squash
    )]
    squash_root: Option<Squash>,

    /// How long a client may stay silent (paused, unreachable) before its
    /// session ends (us, ms or s; 1s to 3600s) [default: 60s]. A
    /// connection uses the shorter of the client's and the server's.
    #[arg(long, value_name = "DURATION")]
    idle_timeout: Option<rscq::config::IdleTimeout>,

    /// More log output: -v for each session (info), -vv for debug. RUST_LOG,
    /// when set, decides instead.
    #[arg(short, long, action = clap::ArgAction::Count)]
    verbose: u8,

    /// How log lines are written on stderr: `text`, or `json` with one
    /// object a line, for a log collector [default: text].
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<rscq::config::LogFormat>,
}

/// Starts logging: the level from RUST_LOG if set, else by `-v` count
/// from `quiet`; the format from `--log-format`, else the file's.
fn start_logging(args: &Args, file: &ServerFileSettings, quiet: &str) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directive = rscq::config::log_directive(args.verbose, rust_log.as_deref(), quiet);
    let format = args.log_format.or(file.log_format).unwrap_or_default();
    rscq::logging::start(&directive, format);
}

fn main() -> ExitCode {
    // A long-running server must give back what finished sessions freed.
    rscq::sys::return_freed_memory();
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rscq-server: error: {}", ErrorChain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = &args.gen_cert {
        return gen_cert(dir);
    }
    let file = match &args.config {
        Some(path) => {
            let src = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read config file {}", path.display()))?;
            rscq::config::parse_server_toml(&src, path)?
        }
        None => ServerFileSettings::default(),
    };
    start_logging(&args, &file, "warn");
    let cert = required(args.cert.clone(), file.cert.clone(), "cert")?;
    if args.print_fingerprint {
        // Alone on stdout, as after --gen-cert.
        println!("{}", identity::cert_file_fingerprint(&cert)?);
        return Ok(());
    }
    let settings = Settings::new(args, file, cert)?;
    // Every remote connection and open file of every client is an fd here.
    match rscq::limits::raise_fd_limit() {
        Ok(limit) => tracing::info!(?limit, "open-file limit"),
        Err(e) => eprintln!("rscq-server: warning: cannot raise the open-file limit: {e}"),
    }
    let identity = Identity::load(&settings.cert, &settings.key)?;
    let clients = AuthorizedClients::load(&settings.clients_file)?;
    if clients.is_empty() {
        eprintln!(
            "rscq-server: warning: {} authorizes no clients; every connection will be refused",
            settings.clients_file.display()
        );
    }
    let policy = Policy::of_this_process(settings.squash_root);
    check_root(&settings.root, settings.read_only, &policy)?;
    if policy.acts_as_caller() {
        eprintln!("rscq-server: calls run with each caller's uid, groups, umask and capabilities");
    } else {
        eprintln!(
            "rscq-server: not privileged to take other ids: calls run with uid {}'s rights and the caller's umask",
            rustix::process::geteuid().as_raw()
        );
    }
    serve(settings, identity, clients, policy)
}

/// `--gen-cert DIR`: writes a new identity and prints its fingerprint.
fn gen_cert(dir: &Path) -> anyhow::Result<()> {
    let fingerprint = identity::write_server_identity(dir)?;
    eprintln!(
        "rscq-server: wrote {} and {}",
        dir.join(identity::SERVER_CERT_FILE).display(),
        dir.join(identity::SERVER_KEY_FILE).display()
    );
    // Alone on stdout, so scripts can capture it.
    println!("{fingerprint}");
    Ok(())
}

/// A setting required from the flags or the config file (flags win).
fn required(
    flag: Option<PathBuf>,
    from_file: Option<PathBuf>,
    name: &str,
) -> anyhow::Result<PathBuf> {
    flag.or(from_file).with_context(|| {
        format!(
            "--{} is required (or `{}` in the --config file)",
            name.replace('_', "-"),
            name
        )
    })
}

/// What the server runs with, flags and config file merged.
struct Settings {
    cert: PathBuf,
    key: PathBuf,
    root: PathBuf,
    clients_file: PathBuf,
    read_only: bool,
    squash_root: Option<Squash>,
    listen: SocketAddr,
    liveness: Liveness,
}

impl Settings {
    /// Merges `args` over `file`; `cert` is already resolved.
    fn new(args: Args, file: ServerFileSettings, cert: PathBuf) -> anyhow::Result<Self> {
        let key = required(args.key, file.key, "key")?;
        let root = required(args.root, file.root, "root")?;
        let clients_file = required(
            args.authorized_clients,
            file.authorized_clients,
            "authorized_clients",
        )?;
        let read_only = args.read_only || file.read_only.unwrap_or(false);
        let squash_root = match (args.squash_root, &file.squash_root) {
            (Some(s), _) => Some(s),
            (None, Some((text, origin))) => Some(
                parse_squash(text)
                    .map_err(|e| anyhow::anyhow!("{origin}: invalid squash_root: {e}"))?,
            ),
            (None, None) => None,
        };
        let listen = args
            .listen
            .or(file.listen)
            .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 4433)));
        let liveness = Liveness::new(
            args.idle_timeout
                .map(|t| t.0)
                .or(file.idle_timeout)
                .unwrap_or(rscq::config::DEFAULT_IDLE_TIMEOUT),
        );
        Ok(Self {
            cert,
            key,
            root,
            clients_file,
            read_only,
            squash_root,
            listen,
            liveness,
        })
    }
}

/// Runs the server until SIGINT or SIGTERM: one [`ClientSession`] per
/// connection, the authorized clients watched for changes.
fn serve(
    settings: Settings,
    identity: Identity,
    clients: AuthorizedClients,
    policy: Policy,
) -> anyhow::Result<()> {
    let Settings {
        root,
        clients_file,
        read_only,
        listen,
        liveness,
        ..
    } = settings;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        // Installed before announcing the address, so a signal sent the
        // moment the address appears is not lost.
        let shutdown = shutdown_signal()?;
        let clients = LiveClients::new(clients);
        let hangup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(watch_clients(clients_file, clients.clone(), hangup));
        let endpoint = server::endpoint(listen, &identity, clients.clone(), liveness)?;
        let addr = endpoint
            .local_addr()
            .context("cannot read the bound address")?;
        eprintln!("rscq-server: certificate {}", identity.fingerprint());
        eprintln!("rscq-server: listening on {addr}");
        let live = LiveSessions::new(give_back_when_idle());
        let make_session = move |peer: &Peer| {
            tracing::info!(peer = %peer.addr, client = %peer.fingerprint, "new session");
            let files =
                Executor::new(&root, read_only, policy.clone()).map_err(SessionError::from)?;
            Ok(ClientSession::new(files, peer).counted(&live))
        };
        server::serve_live(endpoint, read_only, clients, make_session, shutdown).await;
        anyhow::Ok(())
    });
    // A request stuck in a blocking syscall must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result?;
    eprintln!("rscq-server: stopped");
    Ok(())
}

/// What a burst of sessions freed goes back to the kernel when the last
/// one ends, and again once tokio has let the burst's idle blocking
/// threads go (10 s keep-alive), which frees their caches into the
/// allocator after the first trim; the second only if no session started
/// meanwhile.
fn give_back_when_idle() -> rscq::server::live::OnIdle {
    const AFTER_THREADS_EXIT: Duration = Duration::from_secs(11);
    let runtime = tokio::runtime::Handle::current();
    let pending = Arc::new(AtomicBool::new(false));
    Box::new(move |live: &Arc<LiveSessions>| {
        let trimmed = rscq::sys::trim_freed_memory();
        tracing::debug!(trimmed, "no session left: freed memory given back");
        if pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let (live, pending) = (Arc::clone(live), Arc::clone(&pending));
        runtime.spawn(async move {
            tokio::time::sleep(AFTER_THREADS_EXIT).await;
            pending.store(false, Ordering::Release);
            if live.live() == 0 {
                rscq::sys::trim_freed_memory();
            }
        });
    })
}

/// What identifies a version of a file without reading it.
fn file_version(path: &Path) -> Option<(u64, u64, i64, i64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.mtime(), m.mtime_nsec(), m.size()))
}

/// Reads the authorized clients file again on SIGHUP and when it changes
/// (its inode, size or mtime, checked every second, so a rename over it
/// counts too). A file that cannot be read or parsed keeps the old list.
async fn watch_clients(
    path: PathBuf,
    clients: LiveClients,
    mut hangup: tokio::signal::unix::Signal,
) {
    let mut seen = file_version(&path);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let why = tokio::select! {
            _ = hangup.recv() => "SIGHUP",
            _ = tick.tick() => {
                let now = file_version(&path);
                if now == seen {
                    continue;
                }
                "it changed"
            }
        };
        seen = file_version(&path);
        match AuthorizedClients::load(&path) {
            Ok(new) => {
                let count = new.len();
                let removed = clients.replace(new.clone()).removed_in(&new);
                eprintln!(
                    "rscq-server: re-read {} ({why}): {count} authorized clients",
                    path.display()
                );
                for fp in removed {
                    eprintln!("rscq-server: {fp} is no longer authorized; its sessions end");
                }
            }
            Err(e) => eprintln!(
                "rscq-server: warning: keeping the authorized clients read before: {}",
                ErrorChain(&e)
            ),
        }
    }
}

/// Fails early, with the path, if sessions could not open the root.
fn check_root(root: &Path, read_only: bool, policy: &Policy) -> anyhow::Result<()> {
    let meta =
        std::fs::metadata(root).with_context(|| format!("export root {}", root.display()))?;
    if !meta.is_dir() {
        bail!("export root {}: not a directory", root.display());
    }
    Executor::new(root, read_only, policy.clone())?;
    Ok(())
}

/// `UID:GID` of `--squash-root`.
fn parse_squash(s: &str) -> Result<Squash, String> {
    let (uid, gid) = s
        .split_once(':')
        .ok_or_else(|| format!("`{s}`: expected UID:GID, such as 65534:65534"))?;
    let id = |v: &str| {
        v.parse::<u32>()
            .ok()
            .filter(|&n| n != u32::MAX)
            .ok_or_else(|| format!("`{v}` is not a uid or gid"))
    };
    Ok(Squash {
        uid: id(uid)?,
        gid: id(gid)?,
    })
}

/// Completes on the first SIGINT or SIGTERM.
fn shutdown_signal() -> anyhow::Result<impl Future<Output = ()>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let mut terminate = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        eprintln!("rscq-server: shutting down");
    })
}
