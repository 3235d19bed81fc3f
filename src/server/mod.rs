//! rscq-server: executes forwarded requests beneath an export root.

pub mod executor;

pub use executor::Executor;
