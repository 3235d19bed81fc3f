//! The only module allowed to use `unsafe`. Each block says why it is sound
//! in a `SAFETY:` comment; everything outside calls these safe wrappers.
//!
//! Must not hold policy: each wrapper is one syscall or one documented
//! sequence, and callers decide when to use it.

pub mod net;
pub mod server;
pub mod tracer;
