//! rscq-server: executes forwarded requests beneath an export root.
//!
//! [`Executor`] dispatches; confinement is the private `resolve` module's
//! job, the handle table `handles`'s, whose rights a call runs with
//! [`creds`]'s, and each syscall family has its own private module
//! (`files`, `meta`, `names`, `dirs`, `xattr`, `locks`, `uname`; [`net`],
//! [`udp`] and [`sockopt`] for `--net`).
//!
//! Must not speak QUIC: [`crate::transport::server`] reads requests and
//! writes responses; this module only runs them.

pub mod creds;
mod dirs;
pub mod executor;
mod files;
mod handles;
mod locks;
mod meta;
mod names;
pub mod net;
mod resolve;
pub mod sockopt;
pub mod udp;
mod uname;
mod xattr;

#[cfg(test)]
mod testutil;

pub use executor::Executor;
