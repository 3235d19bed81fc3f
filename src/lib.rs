//! rscq runs a program locally while a chosen part of its system calls run
//! on another machine, over QUIC.
//!
//! Pure cores (no I/O): [`proto`], [`errno`], [`config`], [`syscall`].
//! I/O drivers: [`tracer`], [`transport`], [`server`], [`client`].
//! Every `unsafe` block lives in [`sys`].

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
compile_error!(
    "rscq supports only x86_64 Linux: its tracer reads x86_64 registers and syscall numbers"
);

pub mod client;
pub mod config;
pub mod engine;
pub mod errno;
pub mod proto;
pub mod server;
#[allow(unsafe_code)]
pub mod sys;
pub mod syscall;
pub mod tracer;
pub mod transport;
