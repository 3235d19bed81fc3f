//! The syscall vocabulary: which calls rscq traps, how their arguments map
//! to [`crate::proto::Request`]s, and how replies are laid out in the
//! program's memory. Pure code: memory and fd lookups come in through the
//! [`plan::Tracee`] trait.
//!
//! [`nr`] is the one table of trapped calls (filters, dispatch order, names);
//! [`plan`] holds what every family shares (the plan and reply types, the
//! hand-off of a call to its families, the layout of replies); the planners
//! themselves are one file per syscall family, under `fs/` (paths and
//! remote fds), [`locks`], [`mapping`] and [`exec`] (file locks, `mmap` and
//! `execve` of remote files) and `net/` (sockets; [`udp`] and [`unix`] keep
//! their old paths). [`cmsg`] is the layout of control messages and the
//! per-datagram IP fields in them. [`sockets`] is the table of the
//! program's remote sockets that the tracer and the engine share.
//!
//! Must not call ptrace, touch the network or read the clock.

pub mod cmsg;
pub mod describe;
mod dispatch;
pub mod exec;
mod fs;
pub mod layout;
pub mod locks;
pub mod mapping;
mod net;
pub mod nr;
pub mod operation;
pub mod paths;
pub mod plan;
#[cfg(test)]
mod remotes_tests;
pub mod sockets;
#[cfg(test)]
mod testutil;

// The socket families keep the paths other modules know them by.
pub use net::{udp, unix};
