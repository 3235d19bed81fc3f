//! rscq-server: executes forwarded system calls beneath an export root for
//! the clients listed in an authorized clients file.
//!
//! ```text
//! rscq-server --gen-cert DIR
//! rscq-server --cert DIR/cert.pem --key DIR/key.pem --root /srv/export \
//!             --authorized-clients FILE [--listen 0.0.0.0:4433] [--read-only]
//!             [--squash-root[=UID:GID]]
//! ```
//!
//! Run as root, it executes each call with the caller's uid, gids, umask
//! and capabilities (as NFS's AUTH_SYS); run as a user, with that user's.
//!
//! `--root` has no default on purpose: exporting `/` by accident would hand
//! every authorized client the whole machine.
//!
//! Wiring only: flags, identity files, the endpoint (`rscq::transport::server`)
//! and one `rscq::server::Executor` per session. Must not execute requests or
//! speak the protocol itself.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use rscq::server::Executor;
use rscq::server::creds::{Policy, Squash};
use rscq::transport::{AuthorizedClients, Identity, Peer, SessionError, identity, server};

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

    /// The server certificate (PEM), as written by --gen-cert.
    #[arg(long, value_name = "FILE", required_unless_present = "gen_cert")]
    cert: Option<PathBuf>,

    /// The server private key (PEM), as written by --gen-cert.
    #[arg(long, value_name = "FILE", required_unless_present = "gen_cert")]
    key: Option<PathBuf>,

    /// The UDP address to listen on; port 0 picks a free port.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:4433")]
    listen: SocketAddr,

    /// The directory clients see; no path they send can leave it.
    #[arg(long, value_name = "DIR", required_unless_present = "gen_cert")]
    root: Option<PathBuf>,

    /// Fingerprints of the clients allowed to connect, one `sha256:...` per
    /// line (`#` comments and blank lines allowed).
    #[arg(long, value_name = "FILE", required_unless_present = "gen_cert")]
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
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only help a person at a terminal, not a log file.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rscq-server: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if let Some(dir) = &args.gen_cert {
        let fingerprint = identity::write_server_identity(dir)?;
        eprintln!(
            "rscq-server: wrote {} and {}",
            dir.join(identity::SERVER_CERT_FILE).display(),
            dir.join(identity::SERVER_KEY_FILE).display()
        );
        // Alone on stdout, so scripts can capture it.
        println!("{fingerprint}");
        return Ok(());
    }
    // clap enforces these unless --gen-cert, which returned above.
    let (Some(cert), Some(key), Some(root), Some(clients_file)) =
        (args.cert, args.key, args.root, args.authorized_clients)
    else {
        bail!("--cert, --key, --root and --authorized-clients are required");
    };
    let read_only = args.read_only;

    let identity = Identity::load(&cert, &key)?;
    let clients = AuthorizedClients::load(&clients_file)?;
    if clients.is_empty() {
        eprintln!(
            "rscq-server: warning: {} authorizes no clients; every connection will be refused",
            clients_file.display()
        );
    }
    let policy = Policy::of_this_process(args.squash_root);
    check_root(&root, read_only, &policy)?;
    if policy.acts_as_caller() {
        eprintln!("rscq-server: calls run with each caller's uid, groups, umask and capabilities");
    } else {
        eprintln!(
            "rscq-server: not privileged to take other ids: calls run with uid {}'s rights and the caller's umask",
            rustix::process::geteuid().as_raw()
        );
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        // Installed before announcing the address, so a signal sent the
        // moment the address appears is not lost.
        let shutdown = shutdown_signal()?;
        let endpoint = server::endpoint(args.listen, &identity, clients)?;
        let addr = endpoint
            .local_addr()
            .context("cannot read the bound address")?;
        eprintln!("rscq-server: certificate {}", identity.fingerprint());
        eprintln!("rscq-server: listening on {addr}");
        let make_session = move |peer: &Peer| {
            tracing::info!(peer = %peer.addr, client = %peer.fingerprint, "new session");
            Executor::new(&root, read_only, policy.clone()).map_err(SessionError::from)
        };
        server::serve(endpoint, read_only, make_session, shutdown).await;
        anyhow::Ok(())
    });
    // A request stuck in a blocking syscall must not keep the process alive.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result?;
    eprintln!("rscq-server: stopped");
    Ok(())
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
    use tokio::signal::unix::{SignalKind, signal};
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
