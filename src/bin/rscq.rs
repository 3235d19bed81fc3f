//! `rscq`: run a program with some of its syscalls on a remote machine.
//!
//! Wiring only: parses the flags (`rscq::config`), checks that the program
//! can be found as `execvp` would, connects to the server or starts the
//! embedded executor, runs `rscq::client::run`, and turns the outcome into
//! messages on stderr and an exit status; also `keygen`, `fingerprint` and
//! `--generate`. Must not hold syscall,
//! protocol or caching logic; `anyhow` starts and stops in the binaries.

use std::io::IsTerminal;
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use rscq::client::{self, RunOptions};
use rscq::config::{self, ClientArgs, ClientCommand, ClientSettings};
use rscq::syscall::paths::{MountPoint, MountTable};
use rscq::tracer::TracerError;
use rscq::transport::{Embedded, ErrorChain, Link, Liveness, ServerTrust, identity};

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the mask and the
    // program's signals are only ever taken by rscq's signal thread.
    if let Err(e) = client::block_forwarded_signals() {
        eprintln!("rscq: cannot block signals: {e}");
        return ExitCode::from(125);
    }
    let args = ClientArgs::parse();
    match real_main(args) {
        Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
        Err(e) => {
            // Each cause once, even where a message already quotes its source.
            eprintln!("rscq: {}", ErrorChain(e.as_ref()));
            if let Some(hint) = hint(&e) {
                eprintln!("rscq: {hint}");
            }
            ExitCode::from(125)
        }
    }
}

/// `--generate man` and `--generate completions SHELL`, on stdout.
fn generate(what: &[String]) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let mut command = ClientArgs::command();
    let mut out = std::io::stdout().lock();
    match what {
        [w] if w == "man" => clap_mangen::Man::new(command)
            .render(&mut out)
            .context("cannot write the man page")?,
        [w, shell] if w == "completions" => {
            let shell: clap_complete::Shell = shell.parse().map_err(|_| {
                anyhow::anyhow!(
                    "--generate completions: unknown shell `{shell}` (bash, elvish, fish, powershell, zsh)"
                )
            })?;
            clap_complete::generate(shell, &mut command, "rscq", &mut out);
        }
        [w] if w == "completions" => {
            anyhow::bail!(
                "--generate completions needs a shell: bash, elvish, fish, powershell or zsh"
            )
        }
        _ => anyhow::bail!(
            "--generate takes `man` or `completions SHELL`, not `{}`",
            what.join(" ")
        ),
    }
    Ok(())
}

/// A pointer to the README for errors a user can fix only outside rscq.
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    match e.downcast_ref::<client::ClientError>() {
        Some(client::ClientError::Tracer(TracerError::Seize(_))) => Some(
            "see \"Ptrace rights\" in the README: Yama's kernel.yama.ptrace_scope must be 0 or 1 (or rscq needs CAP_SYS_PTRACE), and a container needs CAP_SYS_PTRACE and a seccomp profile that allows ptrace",
        ),
        _ => None,
    }
}

/// Why the program cannot be started, found before anything starts: the
/// exit status and message `env` gives.
#[derive(Debug)]
struct CannotRun {
    program: String,
    errno: rustix::io::Errno,
}

impl CannotRun {
    /// 127 when there is no such program, 126 when it is not executable.
    fn exit_code(&self) -> i32 {
        if self.errno == rustix::io::Errno::NOENT {
            127
        } else {
            126
        }
    }
}

impl std::fmt::Display for CannotRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let text = std::io::Error::from_raw_os_error(self.errno.raw_os_error());
        // `std::io::Error` appends " (os error N)"; env does not.
        let text = text.to_string();
        let text = text.split(" (os error").next().unwrap_or(&text);
        write!(f, "cannot run '{}': {text}", self.program)
    }
}

/// Looks `program` up as `execvp(3)` does: a name with a `/` is the path
/// itself, any other name is searched in `$PATH` (default `/bin:/usr/bin`),
/// where a directory entry that exists but cannot be executed is skipped
/// and reported as EACCES only when nothing later matches. `None` means the
/// exec is left to the traced child: the program is under a mount (so only
/// the server knows), or it is fine locally. Checks only existence and the
/// execute permission: a file of an unknown format is run by `sh` by
/// execvp, and the child reports anything else.
fn check_program(
    program: &std::ffi::OsStr,
    path_var: Option<&std::ffi::OsStr>,
    cwd: &Path,
    mounts: &MountTable,
) -> Option<CannotRun> {
    let bytes = program.as_bytes();
    let fail = |errno| {
        Some(CannotRun {
            program: program.to_string_lossy().into_owned(),
            errno,
        })
    };
    if bytes.is_empty() {
        return fail(rustix::io::Errno::NOENT);
    }
    let under_mount = |candidate: &Path| {
        mounts
            .locate(cwd.as_os_str().as_bytes(), candidate.as_os_str().as_bytes())
            .is_some()
    };
    if bytes.contains(&b'/') {
        let path = Path::new(program);
        if under_mount(path) {
            return None;
        }
        return executable(path).err().and_then(fail);
    }
    let path_var = path_var.unwrap_or(std::ffi::OsStr::new("/bin:/usr/bin"));
    let mut denied = false;
    for dir in path_var.as_bytes().split(|&b| b == b':') {
        // An empty entry is the current directory.
        let dir = if dir.is_empty() { b"." } else { dir };
        let candidate = Path::new(std::ffi::OsStr::from_bytes(dir)).join(program);
        if under_mount(&candidate) {
            return None;
        }
        match executable(&candidate) {
            Ok(()) => return None,
            Err(rustix::io::Errno::ACCESS) => denied = true,
            Err(_) => {}
        }
    }
    fail(if denied {
        rustix::io::Errno::ACCESS
    } else {
        rustix::io::Errno::NOENT
    })
}

/// What `execve` would say about `path` before looking at its contents.
fn executable(path: &Path) -> Result<(), rustix::io::Errno> {
    let meta = rustix::fs::stat(path)?;
    if rustix::fs::FileType::from_raw_mode(meta.st_mode) != rustix::fs::FileType::RegularFile {
        return Err(rustix::io::Errno::ACCESS);
    }
    rustix::fs::access(path, rustix::fs::Access::EXEC_OK)
}

/// Logging on stderr at the level of `-v` (or RUST_LOG), with colours only
/// for a terminal.
fn start_logging(verbose: u8) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directive = config::log_directive(verbose, rust_log.as_deref(), "error");
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(directive))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn real_main(args: ClientArgs) -> anyhow::Result<i32> {
    if let Some(what) = &args.generate {
        generate(what)?;
        return Ok(0);
    }
    if args.command.is_some() {
        start_logging(args.verbose);
    }
    let show = match &args.command {
        Some(ClientCommand::Keygen(k)) if k.show => Some(&k.dir),
        Some(ClientCommand::Fingerprint(f)) => Some(&f.dir),
        _ => None,
    };
    if let Some(dir) = show {
        let dir = match dir {
            Some(d) => d.clone(),
            None => identity::default_config_dir()?,
        };
        let cert = dir.join(identity::CLIENT_CERT_FILE);
        if !cert.exists() {
            anyhow::bail!(
                "{}: no client identity there (run `rscq keygen` first)",
                cert.display()
            );
        }
        let fp = identity::cert_file_fingerprint(&cert)?;
        // As `ssh-keygen -lf`: bits, fingerprint, file, key type. The
        // server's authorized clients file takes this line as it is.
        println!("256 {fp} {} (ECDSA)", cert.display());
        return Ok(0);
    }
    if let Some(ClientCommand::Keygen(k)) = &args.command {
        let dir = match &k.dir {
            Some(d) => d.clone(),
            None => identity::default_config_dir()?,
        };
        let fp = identity::write_client_identity(&dir)?;
        println!("{fp}");
        eprintln!(
            "rscq: client identity written to {}; add the line above to the server's --authorized-clients file",
            dir.display()
        );
        return Ok(0);
    }
    let settings = config::resolve(&args)?;
    start_logging(settings.verbose);
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    if let Some(e) = check_program(
        &settings.program[0],
        std::env::var_os("PATH").as_deref(),
        &cwd,
        &mount_table(&settings),
    ) {
        eprintln!("rscq: {e}");
        return Ok(e.exit_code());
    }
    // One engine thread runs every task (QUIC drivers, calls, pumps, and the
    // embedded executor): a forwarded call then crosses threads only twice
    // (tracer → engine → tracer) instead of bouncing between workers.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let handle = runtime.handle().clone();
    let (stop_engine, engine_stopped) = tokio::sync::oneshot::channel::<()>();
    let engine_thread = std::thread::Builder::new()
        .name("rscq-engine".into())
        .spawn(move || {
            runtime.block_on(async {
                let _ = engine_stopped.await;
            });
        })
        .context("cannot start the engine thread")?;
    let result = run_program(&settings, &handle);
    let _ = stop_engine.send(());
    let _ = engine_thread.join();
    result
}

fn run_program(settings: &ClientSettings, runtime: &tokio::runtime::Handle) -> anyhow::Result<i32> {
    if let Some(window) = settings.readahead_window {
        rscq::transport::set_stream_window(window);
    }
    let (link, embedded) = runtime.block_on(connect(settings))?;
    runtime.block_on(warn_missing_mounts(settings, &link));
    let options = RunOptions {
        mounts: mount_table(settings),
        uname: settings.uname,
        net: settings.net,
        layers: rscq::engine::Layers {
            statcache: settings.optimizations.statcache,
            compound: settings.optimizations.compound,
            readahead: settings.optimizations.readahead,
            dirmeta: settings.optimizations.dirmeta,
            bulkread: settings.optimizations.bulkread,
            smallfile: settings.optimizations.smallfile,
        },
        statcache_ttl: settings.stat_ttl,
        nagle: settings
            .optimizations
            .nagle
            .then_some(rscq::engine::coalesce::CoalesceConfig {
                delay: settings.nagle.delay,
                bytes: settings.nagle.bytes,
            }),
        pure: settings.optimizations.is_pure(),
        trace: settings.trace,
        trace_file: settings.trace_file.clone(),
        trace_time: settings.trace_time,
        stats: settings.stats,
        program: settings.program.clone(),
        only: settings.forwarded_syscalls.clone(),
        reconnect_grace: settings.reconnect_grace,
    };
    let status = client::run(runtime.clone(), link.clone(), options)?;
    runtime.block_on(async {
        link.close().await;
        if let Some(e) = embedded {
            e.shutdown().await;
        }
    });
    Ok(status.code())
}

/// Says on stderr which mounts name a remote path that does not exist, as
/// sshfs refuses such a mount; the program still runs (it may create it).
/// The stats go out together: one round trip.
async fn warn_missing_mounts(settings: &ClientSettings, link: &Link) {
    let checks: Vec<_> = settings
        .mounts
        .iter()
        .map(|m| {
            let link = link.clone();
            let request = rscq::proto::Request::Stat {
                path: rscq::proto::RemotePath(m.remote.as_os_str().as_bytes().to_vec()),
                follow: true,
            };
            tokio::spawn(async move { link.call(&request).await })
        })
        .collect();
    for (m, check) in settings.mounts.iter().zip(checks) {
        // A transport failure is reported by the run itself.
        if let Ok(Ok(Err(e))) = check.await
            && (e.0 == libc::ENOENT || e.0 == libc::ENOTDIR)
        {
            eprintln!(
                "rscq: warning: --mount {}={}: {} does not exist on the server",
                m.local.display(),
                m.remote.display(),
                m.remote.display()
            );
        }
    }
}

fn mount_table(settings: &ClientSettings) -> MountTable {
    MountTable::new(
        settings
            .mounts
            .iter()
            .map(|m| MountPoint {
                local: m.local.as_os_str().as_bytes().to_vec(),
                remote: m.remote.as_os_str().as_bytes().to_vec(),
            })
            .collect(),
    )
}

async fn connect(settings: &ClientSettings) -> anyhow::Result<(Link, Option<Embedded>)> {
    let Some(remote) = &settings.remote else {
        let embedded =
            rscq::server::start_embedded().context("cannot start the embedded executor")?;
        let link = embedded
            .connect()
            .await
            .context("cannot connect to the embedded executor")?;
        return Ok((link, Some(embedded)));
    };
    let label = remote.to_string();
    let addr: SocketAddr = label
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve server address {label}"))?
        .next()
        .with_context(|| format!("server address {label} resolves to nothing"))?;
    let identity = identity::load_client_identity(&settings.identity_dir).with_context(|| {
        format!(
            "no client identity in {} (run `rscq keygen` first)",
            settings.identity_dir.display()
        )
    })?;
    let trust = match &settings.server_cert {
        Some(cert) => ServerTrust::pinned_from_cert_file(cert)?,
        None => ServerTrust::KnownServers {
            file: settings.known_servers.clone(),
            host_label: label.clone(),
        },
    };
    let liveness = Liveness::new(settings.idle_timeout);
    let link = Link::connect(addr, &identity, &trust, liveness)
        .await
        .with_context(|| format!("cannot connect to rscq-server at {label}"))?;
    Ok((link, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::fs::PermissionsExt;

    fn errno_of(program: &str, path: Option<&str>, mounts: &MountTable) -> Option<i32> {
        check_program(
            OsStr::new(program),
            path.map(OsStr::new),
            Path::new("/"),
            mounts,
        )
        .map(|e| e.exit_code())
    }

    #[test]
    fn program_lookup_as_execvp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let exe = d.join("exe");
        std::fs::write(&exe, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let plain = d.join("plain");
        std::fs::write(&plain, "x").expect("write");
        std::fs::set_permissions(&plain, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let none = MountTable::default();
        let dir_s = d.to_str().expect("utf-8");
        let path = format!("/nonexistent-dir:{dir_s}");
        assert_eq!(errno_of("exe", Some(&path), &none), None);
        assert_eq!(errno_of("nosuch", Some(&path), &none), Some(127));
        assert_eq!(errno_of(&format!("{dir_s}/nosuch"), None, &none), Some(127));
        assert_eq!(errno_of(dir_s, None, &none), Some(126), "a directory");
        assert_eq!(errno_of("", None, &none), Some(127));
        if !rustix::process::geteuid().is_root() {
            assert_eq!(errno_of("plain", Some(&path), &none), Some(126));
        }
        // Under a mount only the server knows.
        let mounts = MountTable::new(vec![MountPoint {
            local: b"/remote".to_vec(),
            remote: b"/".to_vec(),
        }]);
        assert_eq!(errno_of("/remote/bin/x", None, &mounts), None);
        assert_eq!(errno_of("x", Some("/usr/nope:/remote/bin"), &mounts), None);
        assert_eq!(errno_of("x", Some("/usr/nope"), &mounts), Some(127));
        let e = check_program(
            OsStr::new("nosuch"),
            Some(OsStr::new("/x")),
            Path::new("/"),
            &none,
        )
        .expect("error");
        assert_eq!(
            e.to_string(),
            "cannot run 'nosuch': No such file or directory"
        );
    }
}
