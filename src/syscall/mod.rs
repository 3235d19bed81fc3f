//! The syscall vocabulary: which calls rscq traps, how their arguments map
//! to [`crate::proto::Request`]s, and how replies are laid out in the
//! program's memory. Pure code: memory and fd lookups come in through the
//! [`plan::Tracee`] trait.
//!
//! Must not call ptrace, touch the network or read the clock.

pub mod describe;
pub mod exec;
pub mod layout;
pub mod locks;
pub mod mapping;
pub mod nr;
pub mod paths;
pub mod plan;
pub mod udp;
pub mod unix;
