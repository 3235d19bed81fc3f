//! The only module allowed to use `unsafe`. Each block says why it is sound
//! in a `SAFETY:` comment; everything outside calls these safe wrappers.

pub mod net;
pub mod server;
pub mod tracer;
