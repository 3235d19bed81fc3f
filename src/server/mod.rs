//! rscq-server: executes forwarded requests beneath an export root.
//!
//! [`ClientSession`] is one connection's session: file calls to the
//! [`Executor`], sockets to [`net`] and [`udp`]; [`start_embedded`] runs
//! it in-process for `rscq` without `--remote`. [`Executor`] dispatches
//! file calls; confinement is the private `resolve` module's
//! job, the handle table `handles`'s, whose rights a call runs with
//! [`creds`]'s, and each syscall family has its own private module
//! (`files`, `meta`, `names`, `dirs`, `xattr`, `locks`, `uname`,
//! `reattach` for handles given again after a restart; [`net`],
//! [`udp`] and [`sockopt`] for `--net`). [`live`] counts live sessions,
//! so the server can give memory back when the last one ends.
//!
//! Must not speak QUIC: [`crate::transport::server`] reads requests and
//! writes responses; this module only runs them (and implements its
//! [`Session`](crate::transport::Session)).

pub mod creds;
mod dirs;
pub mod executor;
mod files;
mod handles;
pub mod live;
mod locks;
mod meta;
mod names;
pub mod net;
mod reattach;
mod resolve;
mod session;
pub mod sockopt;
pub mod udp;
mod uname;
mod xattr;

#[cfg(test)]
mod testutil;

pub use executor::Executor;
pub use session::{ClientSession, start_embedded};
