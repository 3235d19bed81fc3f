//! rscq runs a program locally while a chosen part of its system calls run
//! on another machine, over QUIC.
//!
//! Pure cores (no I/O): [`proto`], [`errno`], [`config`], [`syscall`], [`paths`].
//! I/O drivers: [`tracer`], [`transport`], [`server`], [`client`].

pub mod errno;
pub mod proto;
