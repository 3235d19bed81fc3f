//! `rscq`: run a program with some of its syscalls on a remote machine.
//!
//! Wiring only: parses the flags (`rscq::config`), connects to the server or
//! starts the embedded executor, runs `rscq::client::run`, and turns the
//! outcome into messages on stderr and an exit status. Must not hold syscall,
//! protocol or caching logic; `anyhow` starts and stops in the binaries.

use std::net::{SocketAddr, ToSocketAddrs};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use rscq::client::{self, RunOptions};
use rscq::config::{self, ClientArgs, ClientCommand, ClientSettings};
use rscq::syscall::paths::{MountPoint, MountTable};
use rscq::transport::{Embedded, Link, ServerTrust, identity};

fn main() -> ExitCode {
    // Before any thread exists, so every thread inherits the mask and the
    // program's signals are only ever taken by rscq's signal thread.
    if let Err(e) = client::block_forwarded_signals() {
        eprintln!("rscq: cannot block signals: {e}");
        return ExitCode::from(125);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match real_main() {
        Ok(code) => ExitCode::from(u8::try_from(code & 0xff).unwrap_or(1)),
        Err(e) => {
            eprintln!("rscq: {e:#}");
            ExitCode::from(125)
        }
    }
}

fn real_main() -> anyhow::Result<i32> {
    let args = ClientArgs::parse();
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
    let options = RunOptions {
        mounts: mount_table(settings),
        uname: settings.uname,
        net: settings.net,
        layers: rscq::engine::Layers {
            statcache: settings.optimizations.statcache,
            compound: settings.optimizations.compound,
            readahead: settings.optimizations.readahead,
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
        stats: settings.stats,
        program: settings.program.clone(),
        only: settings.forwarded_syscalls.clone(),
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
        let embedded = Embedded::start().context("cannot start the embedded executor")?;
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
    let link = Link::connect(addr, &identity, &trust)
        .await
        .with_context(|| format!("cannot connect to rscq-server at {label}"))?;
    Ok((link, None))
}
