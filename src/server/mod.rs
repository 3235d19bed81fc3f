//! rscq-server: executes forwarded requests beneath an export root.
//!
//! [`Executor`] dispatches; confinement is [`resolve`]'s job, the handle
//! table [`handles`]'s, and each syscall family has its own module.

pub mod creds;
mod dirs;
pub mod executor;
mod files;
mod handles;
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
