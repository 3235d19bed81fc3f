//! The syscall vocabulary: which calls rscq traps, how their arguments map
//! to [`crate::proto::Request`]s, and how replies are laid out in the
//! program's memory. Pure code: memory and fd lookups come in through the
//! [`plan::Tracee`] trait.
//!
//! [`plan`] holds what every family shares (the plan and reply types, the
//! order in which families get a call, the layout of replies); the planners
//! themselves are one file per syscall family, under `fs/` (paths and
//! remote fds), [`locks`], [`mapping`] and [`exec`] (file locks, `mmap` and
//! `execve` of remote files) and `net/` (sockets; [`udp`] and [`unix`] keep
//! their old paths).
//!
//! Must not call ptrace, touch the network or read the clock.

pub mod describe;
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
mod testutil;

// The socket families keep the paths other modules know them by.
pub use net::{udp, unix};
