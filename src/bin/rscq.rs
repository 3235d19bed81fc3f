//! `rscq`: run a program with some of its syscalls on a remote machine.
//!
//! Wiring only: parses the flags (`rscq::config`), checks that the program
//! can be found as `execvp` would, connects to the server or starts the
//! embedded executor, runs `rscq::client::run`, and turns the outcome into
//! messages on stderr and an exit status; also `keygen`, `fingerprint` and
//! `--generate`. Must not hold syscall,
//! protocol or caching logic; `anyhow` starts and stops in the binaries.

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
use rscq::transport::{EarlyData, Embedded, ErrorChain, Link, Liveness, ServerTrust, identity};

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

/// Logging on stderr at the level of `-v` (or RUST_LOG), in `format`.
fn start_logging(verbose: u8, format: config::LogFormat) {
    let rust_log = std::env::var("RUST_LOG").ok();
    let directive = config::log_directive(verbose, rust_log.as_deref(), "error");
    rscq::logging::start(&directive, format);
}

fn real_main(args: ClientArgs) -> anyhow::Result<i32> {
    if let Some(what) = &args.generate {
        generate(what)?;
        return Ok(0);
    }
    if args.command.is_some() {
        start_logging(args.verbose, args.log_format.unwrap_or_default());
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
    start_logging(settings.verbose, settings.log_format);
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
    let (links, embedded, checks) = runtime.block_on(connect_all(settings))?;
    warn_missing_mounts(settings, &checks);
    let placement = &settings.placement;
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
            openahead: settings.optimizations.openahead,
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
        net_send_window: settings.net_send_window,
        trace: settings.trace,
        trace_file: settings.trace_file.clone(),
        trace_time: settings.trace_time,
        stats: settings.stats,
        program: settings.program.clone(),
        only: settings.forwarded_syscalls.clone(),
        remote_names: placement.remotes.iter().map(|r| r.name.clone()).collect(),
        net_remote: placement.net,
        uname_remote: placement.uname,
        reconnect_grace: settings.reconnect_grace,
        fastpath: settings.optimizations.fastpath,
    };
    let status = client::run(runtime.clone(), links.clone(), options)?;
    runtime.block_on(async {
        close_all(&links).await;
        if let Some(e) = embedded {
            e.shutdown().await;
        }
    });
    Ok(status.code())
}

/// The stat that checks a mount's remote path. It goes in the same flight
/// as its connection's `Hello`, so it costs no round trip of its own.
fn mount_check(mount: &config::Mount) -> rscq::proto::Request {
    rscq::proto::Request::Stat {
        path: rscq::proto::RemotePath(mount.remote.as_os_str().as_bytes().to_vec()),
        follow: true,
    }
}

/// The answers to the mount checks, by mount index (`None`: no answer).
type MountChecks = Vec<(usize, Option<rscq::proto::Response>)>;

/// Says on stderr which mounts name a remote path that does not exist, as
/// sshfs refuses such a mount; the program still runs (it may create it).
fn warn_missing_mounts(settings: &ClientSettings, checks: &MountChecks) {
    let several = settings.placement.remotes.len() > 1;
    let placement = &settings.placement;
    for (i, answer) in checks {
        // A transport failure is reported by the run itself.
        if let Some(Err(e)) = answer
            && (e.0 == libc::ENOENT || e.0 == libc::ENOTDIR)
            && let Some(m) = settings.mounts.get(*i)
        {
            let server = match placement
                .mounts
                .get(*i)
                .and_then(|&r| placement.remotes.get(r))
            {
                Some(remote) if several => remote.name.as_str(),
                _ => "the server",
            };
            eprintln!(
                "rscq: warning: --mount {}: {} does not exist on {server}",
                m,
                m.remote.display(),
            );
        }
    }
}

fn mount_table(settings: &ClientSettings) -> MountTable {
    MountTable::placed(
        settings
            .mounts
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let point = MountPoint {
                    local: m.local.as_os_str().as_bytes().to_vec(),
                    remote: m.remote.as_os_str().as_bytes().to_vec(),
                };
                (
                    point,
                    settings.placement.mounts.get(i).copied().unwrap_or(0),
                )
            })
            .collect(),
    )
}

/// Connects every remote of the run at once (the set-up costs one
/// handshake, not one per remote in turn): `links[i]` is remote `i`. The
/// embedded executor, when one remote is it, starts first. With several
/// remotes, one that cannot be reached or refuses (its certificate, the
/// protocol, this client) is said on stderr, naming it, and left out: its
/// link is [`Link::not_connected`], whose calls fail. The run fails, with
/// a message naming the remote, when it has one remote or none connects;
/// the others are then closed.
async fn connect_all(
    settings: &ClientSettings,
) -> anyhow::Result<(Vec<Link>, Option<Embedded>, MountChecks)> {
    let remotes = &settings.placement.remotes;
    let embedded = if remotes.iter().any(|r| r.address.is_none()) {
        Some(rscq::server::start_embedded().context("cannot start the embedded executor")?)
    } else {
        None
    };
    let several = remotes.len() > 1;
    // Addresses first, then the identity, as a run of one remote always
    // reported them.
    let mut targets = Vec::with_capacity(remotes.len());
    for remote in remotes {
        targets.push(match &remote.address {
            Some(address) => Some(Target::resolve(
                address.to_string(),
                several.then(|| remote.name.clone()),
            )?),
            None => None,
        });
    }
    let identity = if targets.iter().any(Option::is_some) {
        Some(std::sync::Arc::new(
            identity::load_client_identity(&settings.identity_dir).with_context(|| {
                format!(
                    "no client identity in {} (run `rscq keygen` first)",
                    settings.identity_dir.display()
                )
            })?,
        ))
    } else {
        None
    };
    // Each mount's check goes to its remote (the first, if its placement is
    // out of range, as calls do).
    let on = |i: usize| {
        let r = settings.placement.mounts.get(i).copied().unwrap_or(0);
        if r < remotes.len() { r } else { 0 }
    };
    let mounts_on: Vec<Vec<usize>> = (0..remotes.len())
        .map(|r| (0..settings.mounts.len()).filter(|&i| on(i) == r).collect())
        .collect();
    type Outcome = anyhow::Result<(Link, Vec<Option<rscq::proto::Response>>)>;
    let mut connects = Vec::with_capacity(remotes.len());
    for ((remote, target), mounts) in remotes.iter().zip(targets).zip(&mounts_on) {
        let checks: Vec<_> = mounts
            .iter()
            .map(|&i| mount_check(&settings.mounts[i]))
            .collect();
        let connect: tokio::task::JoinHandle<Outcome> = match (target, &identity) {
            (Some(target), Some(identity)) => {
                let trust = target.trust(remote.server_cert.as_deref(), &settings.known_servers)?;
                // The server keeps the session as long as rscq tries to
                // connect again.
                let liveness =
                    Liveness::new(settings.idle_timeout).keeping_session(settings.reconnect_grace);
                let identity = identity.clone();
                let early = if settings.optimizations.zerortt {
                    EarlyData::Resume
                } else {
                    EarlyData::Off
                };
                tokio::spawn(async move {
                    target
                        .connect(&identity, &trust, liveness, early, &checks)
                        .await
                })
            }
            _ => {
                let link = embedded.as_ref().context("no embedded executor")?.connect();
                let link = link
                    .await
                    .context("cannot connect to the embedded executor");
                // On loopback: the checks are asked once connected.
                tokio::spawn(async move {
                    let link = link?;
                    let mut answers = Vec::with_capacity(checks.len());
                    for check in &checks {
                        answers.push(link.call(check).await.ok());
                    }
                    Ok((link, answers))
                })
            }
        };
        connects.push(connect);
    }
    let mut outcomes = Vec::with_capacity(connects.len());
    let mut checks = MountChecks::new();
    for (connect, mounts) in connects.into_iter().zip(&mounts_on) {
        outcomes.push(match connect.await {
            Ok(Ok((link, answers))) => {
                checks.extend(mounts.iter().copied().zip(answers));
                Ok(link)
            }
            Ok(Err(e)) => Err(e),
            Err(e) => Err(anyhow::Error::new(e).context("a connection task failed")),
        });
    }
    checks.sort_by_key(|(i, _)| *i);
    let names: Vec<&str> = remotes.iter().map(|r| r.name.as_str()).collect();
    match left_out(outcomes, &names) {
        Ok(links) => Ok((links, embedded, checks)),
        Err((e, links)) => {
            close_all(&links).await;
            if let Some(embedded) = embedded {
                embedded.shutdown().await;
            }
            Err(e)
        }
    }
}

/// The run's links from the outcomes of connecting to each remote (named
/// `names[i]`): with several remotes and at least one connected, each
/// failed one is said on stderr, naming it, and becomes a
/// [`Link::not_connected`]; else the first failure, with the links that
/// did connect (to close them).
fn left_out(
    outcomes: Vec<anyhow::Result<Link>>,
    names: &[&str],
) -> Result<Vec<Link>, (anyhow::Error, Vec<Link>)> {
    let several = outcomes.len() > 1;
    let any_connected = outcomes.iter().any(Result::is_ok);
    let mut links = Vec::with_capacity(outcomes.len());
    let mut failure = None;
    for (i, outcome) in outcomes.into_iter().enumerate() {
        match outcome {
            Ok(link) => links.push(link),
            Err(e) if several && any_connected => {
                let why = ErrorChain(e.as_ref()).to_string();
                let name = names.get(i).copied().unwrap_or("?");
                eprintln!(
                    "rscq: {why}; the program runs without remote {name}: its calls fail with EIO, a connect through it with ENETUNREACH"
                );
                links.push(Link::not_connected(why));
            }
            Err(e) => {
                failure.get_or_insert(e);
            }
        }
    }
    match failure {
        None => Ok(links),
        Some(e) => Err((e, links)),
    }
}

/// Closes every link at once: each close waits a moment for its packet
/// to leave, which need not add up.
async fn close_all(links: &[Link]) {
    let closes: Vec<_> = links
        .iter()
        .map(|link| {
            let link = link.clone();
            tokio::spawn(async move { link.close().await })
        })
        .collect();
    for close in closes {
        let _ = close.await;
    }
}

/// One remote server to connect to.
struct Target {
    /// HOST[:PORT] as written: what known_servers pins it under.
    label: String,
    addr: SocketAddr,
    /// ` (remote NAME)` with several remotes, for messages.
    whose: String,
}

impl Target {
    /// Looks `label` up; `name` names it in messages (with several
    /// remotes, when it differs from the address).
    fn resolve(label: String, name: Option<String>) -> anyhow::Result<Self> {
        let whose = match name {
            Some(name) if name != label => format!(" (remote {name})"),
            _ => String::new(),
        };
        let addr: SocketAddr = label
            .to_socket_addrs()
            .with_context(|| format!("cannot resolve server address {label}{whose}"))?
            .next()
            .with_context(|| format!("server address {label}{whose} resolves to nothing"))?;
        Ok(Self { label, addr, whose })
    }

    /// Its pinned certificate, else trust on first use by its label.
    fn trust(
        &self,
        server_cert: Option<&Path>,
        known_servers: &Path,
    ) -> anyhow::Result<ServerTrust> {
        let (label, whose) = (&self.label, &self.whose);
        Ok(match server_cert {
            Some(cert) if whose.is_empty() => ServerTrust::pinned_from_cert_file(cert)?,
            Some(cert) => ServerTrust::pinned_from_cert_file(cert)
                .with_context(|| format!("cannot pin the certificate of {label}{whose}"))?,
            None => ServerTrust::KnownServers {
                file: known_servers.to_path_buf(),
                host_label: label.clone(),
            },
        })
    }

    async fn connect(
        self,
        identity: &identity::Identity,
        trust: &ServerTrust,
        liveness: Liveness,
        early: EarlyData,
        first: &[rscq::proto::Request],
    ) -> anyhow::Result<(Link, Vec<Option<rscq::proto::Response>>)> {
        let (label, whose) = (&self.label, &self.whose);
        Link::connect_asking(self.addr, identity, trust, liveness, early, first)
            .await
            .with_context(|| format!("cannot connect to rscq-server at {label}{whose}"))
    }
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
    fn a_failed_remote_is_left_out_only_beside_a_connected_one() {
        let up = || Ok(Link::not_connected("stands for a connected link".into()));
        let down = |why: &str| Err(anyhow::anyhow!("{why}"));
        let names = ["box", "nas"];
        let links = left_out(vec![up(), down("refused")], &names).expect("runs");
        assert_eq!(links.len(), 2);
        assert!(matches!(
            links[1].start_failure(),
            Some(rscq::transport::Loss::NotConnected(why)) if why == "refused"
        ));
        let (e, _) = left_out(vec![down("first"), down("second")], &names).expect_err("none up");
        assert_eq!(e.to_string(), "first");
        let (e, links) = left_out(vec![down("alone")], &names).expect_err("one remote");
        assert_eq!((e.to_string(), links.len()), ("alone".to_string(), 0));
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
