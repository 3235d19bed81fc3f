//! rscq runs a program locally while a chosen part of its system calls run
//! on another machine, over QUIC. `ARCHITECTURE.md` follows one call through
//! the modules below.
//!
//! Pure cores: no I/O, no clock reads (time comes in as `now`), tested on
//! plain values.
//! - [`syscall`]: which calls are trapped ([`syscall::nr`]), how one becomes a
//!   [`proto::Request`] and how its reply is laid out in the program's memory
//!   ([`syscall::plan`]), `--trace` rendering, mount path rules.
//! - [`engine`]: the optimization layers for remote files (statcache,
//!   dirmeta, compound, readahead, write-behind) and send coalescing for sockets.
//! - [`proto`]: the wire messages, the handshake and the framing.
//! - [`config`]: flags, TOML and rsc.config into one resolved configuration.
//! - [`errno`]: `Errno`, the one way a forwarded call fails.
//! - [`fastpath`]: what the tracer and the preload library that answers
//!   local path calls in the program's own thread share, and the layout of
//!   the region in which rscq offers it the statcache's answers.
//!
//! I/O drivers: thin loops around the cores.
//! - [`tracer`]: the ptrace front end; the only ptrace caller.
//! - [`client`]: the engine task, which drives [`engine`] with the clock and
//!   carries forwarded calls, sockets (`--net`) and `--stats` over the link.
//! - [`transport`]: quinn endpoints, TLS identities and pinning, the frame
//!   reader, the loopback server `rscq` embeds, the TCP stream pump; a
//!   [`transport::Session`] runs what it carries.
//! - [`server`]: the session of each client connection
//!   ([`server::ClientSession`]), the executor beneath `--root`, one module
//!   per syscall family, and the server's sockets for `--net`.
//! - [`limits`]: the open-file limit both binaries raise at start, and the
//!   one message said when it runs out.
//! - [`logging`]: the log subscriber both binaries start (`-v`,
//!   `--log-format`).
//! - [`sys`]: every `unsafe` block, as safe wrappers; nothing else may use
//!   `unsafe`.
//!
//! The binaries (`src/bin/`) parse arguments and wire these together; only
//! they use `anyhow`.
//!
//! The cores import no I/O driver, and no two top-level modules import
//! each other, directly or around a loop (a unit test, `layering`, reads
//! the tree and checks both).

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!(
    "rscq supports only x86_64 Linux: its tracer reads x86_64 registers and syscall numbers"
);

pub mod client;
pub mod config;
pub mod engine;
pub mod errno;
pub mod fastpath;
#[cfg(test)]
mod layering;
pub mod limits;
pub mod logging;
pub mod proto;
pub mod server;
#[allow(unsafe_code)]
pub mod sys;
pub mod syscall;
pub mod tracer;
pub mod transport;
