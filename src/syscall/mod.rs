//! The syscall vocabulary: which calls rscq traps, how their arguments map
//! to [`crate::proto::Request`]s, and how replies are laid out in the
//! program's memory. Pure code: memory and fd lookups come in through the
//! [`plan::Tracee`] trait.
//!
//! Must not call ptrace, touch the network or read the clock.

pub mod describe;
mod fs;
pub mod layout;
mod net;
pub mod nr;
pub mod paths;
pub mod plan;
#[cfg(test)]
mod testutil;

// The socket families keep the paths other modules know them by.
pub use net::{udp, unix};
